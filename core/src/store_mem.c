/* The in-memory store (store.h): a hash map from ID to session under its own lock, the
 * record kept in the session itself (s->rec), so load and save are copies under the
 * session's lock, and the compare-and-set never loses on one node. */
#include <pthread.h>
#include <stdlib.h>

#include "map.h"
#include "session.h"
#include "store.h"

typedef struct mem_store {
    fy_store base;
    pthread_mutex_t lock; /* the map; recursive, so that each's callback may remove */
    fy_map map;
} mem_store;

#define MS(st) ((mem_store *)(st))

static int mem_add(fy_store *st, ferry_session *s)
{
    s->node.key = s->id;
    s->rec.version = 1;
    pthread_mutex_lock(&MS(st)->lock);
    fy_map_put(&MS(st)->map, &s->node);
    pthread_mutex_unlock(&MS(st)->lock);
    ferry_session_ref(s);
    return 0;
}

static int mem_find(fy_store *st, const char *id, size_t len, ferry_session **out)
{
    pthread_mutex_lock(&MS(st)->lock);
    fy_map_node *n = fy_map_get(&MS(st)->map, id, len);
    ferry_session *s = n ? ferry_session_ref(fy_container_of(n, ferry_session, node)) : NULL;
    pthread_mutex_unlock(&MS(st)->lock);
    *out = s;
    return s ? 0 : FERRY_ENOTFOUND;
}

static int mem_load(fy_store *st, ferry_session *s, fy_rec *out)
{
    (void)st;
    *out = s->rec;
    return 0;
}

static int mem_save(fy_store *st, ferry_session *s, const fy_rec *rec)
{
    (void)st;
    if (rec->version != s->rec.version)
        return FY_STORE_STALE;
    s->rec = *rec;
    s->rec.version++;
    return 0;
}

static int mem_remove(fy_store *st, ferry_session *s)
{
    pthread_mutex_lock(&MS(st)->lock);
    fy_map_del(&MS(st)->map, &s->node);
    pthread_mutex_unlock(&MS(st)->lock);
    ferry_session_unref(s);
    return 0;
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
    pthread_mutex_lock(&MS(st)->lock);
    fy_map_each(&MS(st)->map, each_node, &c);
    pthread_mutex_unlock(&MS(st)->lock);
}

static size_t mem_count(fy_store *st)
{
    pthread_mutex_lock(&MS(st)->lock);
    size_t n = MS(st)->map.count;
    pthread_mutex_unlock(&MS(st)->lock);
    return n;
}

static void drop_node(fy_map_node *n, void *ud)
{
    fy_map_del(ud, n);
    ferry_session_unref(fy_container_of(n, ferry_session, node));
}

/* Drops the references of the sessions still held. */
static void mem_free(fy_store *st)
{
    if (!st)
        return;
    fy_map_each(&MS(st)->map, drop_node, &MS(st)->map);
    fy_map_destroy(&MS(st)->map);
    pthread_mutex_destroy(&MS(st)->lock);
    free(st);
}

static const fy_store_ops mem_ops = {
    .add = mem_add,
    .find = mem_find,
    .load = mem_load,
    .save = mem_save,
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
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&ms->lock, &a);
    pthread_mutexattr_destroy(&a);
    ms->base.ops = &mem_ops;
    return &ms->base;
}
