#include <stdlib.h>

#include "map.h"
#include "session.h"
#include "store.h"

typedef struct mem_store {
    fy_store base;
    fy_map map;
} mem_store;

#define MS(st) ((mem_store *)(st))

static int mem_add(fy_store *st, ferry_session *s)
{
    s->node.key = s->id;
    fy_map_put(&MS(st)->map, &s->node);
    ferry_session_ref(s);
    return 0;
}

static ferry_session *mem_find(fy_store *st, const char *id, size_t len)
{
    fy_map_node *n = fy_map_get(&MS(st)->map, id, len);
    return n ? fy_container_of(n, ferry_session, node) : NULL;
}

static void mem_remove(fy_store *st, ferry_session *s)
{
    fy_map_del(&MS(st)->map, &s->node);
    ferry_session_unref(s);
}

struct each_ctx {
    void (*fn)(ferry_session *s, void *ud);
    void *ud;
};

static void each_node(fy_map_node *n, void *ud)
{
    struct each_ctx *c = ud;
    c->fn(fy_container_of(n, ferry_session, node), c->ud);
}

static void mem_each(fy_store *st, void (*fn)(ferry_session *s, void *ud), void *ud)
{
    struct each_ctx c = {fn, ud};
    fy_map_each(&MS(st)->map, each_node, &c);
}

static size_t mem_count(fy_store *st)
{
    return MS(st)->map.count;
}

static void mem_free(fy_store *st)
{
    if (!st)
        return;
    fy_map_destroy(&MS(st)->map);
    free(st);
}

static const fy_store_ops mem_ops = {
    .add = mem_add,
    .find = mem_find,
    .remove = mem_remove,
    .each = mem_each,
    .count = mem_count,
    .free = mem_free,
};

fy_store *fy_store_mem_new(void)
{
    mem_store *ms = calloc(1, sizeof *ms);
    if (!ms)
        return NULL;
    if (fy_map_init(&ms->map)) {
        free(ms);
        return NULL;
    }
    ms->base.ops = &mem_ops;
    return &ms->base;
}
