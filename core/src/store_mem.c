/* The in-memory store (store.h): the node's handle table (handles.h) is the whole store,
 * the record kept in the session itself (s->rec), so load and save are copies under the
 * session's lock, and the compare-and-set never loses on one node. */
#include <stdlib.h>

#include "handles.h"
#include "session.h"
#include "store.h"

typedef struct mem_store {
    fy_store base;
    fy_handles handles;
} mem_store;

#define MS(st) ((mem_store *)(st))

static int mem_add(fy_store *st, ferry_session *s)
{
    s->rec.version = 1;
    fy_handles_put(&MS(st)->handles, s);
    return 0;
}

static int mem_find(fy_store *st, const char *id, size_t len, ferry_session **out)
{
    *out = fy_handles_find(&MS(st)->handles, id, len, NULL, NULL);
    return *out ? 0 : FERRY_ENOTFOUND;
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
    fy_handles_del(&MS(st)->handles, s);
    return 0;
}

static void mem_each(fy_store *st, void (*fn)(ferry_session *s, void *ud), void *ud)
{
    fy_handles_each(&MS(st)->handles, fn, ud);
}

static size_t mem_count(fy_store *st)
{
    return fy_handles_count(&MS(st)->handles);
}

static void mem_free(fy_store *st)
{
    if (!st)
        return;
    fy_handles_destroy(&MS(st)->handles);
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
    if (!ms || fy_handles_init(&ms->handles)) {
        free(ms);
        return NULL;
    }
    ms->base.ops = &mem_ops;
    return &ms->base;
}
