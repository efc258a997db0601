#include "store_faulty.h"

#include "session.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

fy_store *(*faulty_inner_new)(void) = fy_store_mem_new;

typedef struct faulty {
    fy_store base;
    fy_store *mem;
    pthread_mutex_t lock; /* a leaf: the die, the odds and the counts */
    faulty_cfg cfg;
    uint64_t state;
    unsigned forced[FAULTY_OPS];
    int forced_stale;
    bool move_next;
    unsigned failures[FAULTY_OPS], calls[FAULTY_OPS];
} faulty;

#define F(st) ((faulty *)(st))

static uint64_t next_rand(faulty *f) /* splitmix64 */
{
    uint64_t z = (f->state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Rolls for one operation: sleeps if the die says so, and returns 0, FERRY_ESTORE or
 * FY_STORE_STALE. op < 0: never fails (each, count). */
static int roll(faulty *f, int op)
{
    pthread_mutex_lock(&f->lock);
    if (f->mem->hub != f->base.hub) /* once: the hub the inner store builds handles for */
        f->mem->hub = f->base.hub;
    unsigned delay = 0;
    int rc = 0;
    if (f->cfg.delay_pct && next_rand(f) % 100 < f->cfg.delay_pct && f->cfg.max_delay_us)
        delay = (unsigned)(next_rand(f) % f->cfg.max_delay_us);
    if (op >= 0) {
        f->calls[op]++;
        if (f->forced[op]) {
            f->forced[op]--;
            rc = op == FAULTY_SAVE && f->forced_stale ? FY_STORE_STALE : FERRY_ESTORE;
        } else if (next_rand(f) % 100 < f->cfg.fail_pct) {
            rc = FERRY_ESTORE;
        } else if (op == FAULTY_SAVE && next_rand(f) % 100 < f->cfg.stale_pct) {
            rc = FY_STORE_STALE;
        }
        if (rc)
            f->failures[op]++;
    }
    pthread_mutex_unlock(&f->lock);
    if (delay) {
        struct timespec ts = {0, (long)delay * 1000};
        nanosleep(&ts, NULL);
    }
    return rc;
}

static int f_add(fy_store *st, ferry_session *s)
{
    int rc = roll(F(st), FAULTY_ADD);
    return rc ? rc : F(st)->mem->ops->add(F(st)->mem, s);
}

static int f_find(fy_store *st, const char *id, size_t len, ferry_session **out)
{
    int rc = roll(F(st), FAULTY_FIND);
    if (rc) {
        *out = NULL;
        return rc;
    }
    return F(st)->mem->ops->find(F(st)->mem, id, len, out);
}

/* Another node's save, through the store behind the die, if one is due: before the next
 * load or save, whichever comes first. */
static int apply_move(fy_store *st, ferry_session *s)
{
    pthread_mutex_lock(&F(st)->lock);
    bool move = F(st)->move_next;
    F(st)->move_next = false;
    pthread_mutex_unlock(&F(st)->lock);
    fy_store *in = F(st)->mem;
    fy_rec r;
    if (move && (in->ops->load(in, s, &r) || (r.in_seq++, in->ops->save(in, s, &r))))
        return FERRY_ESTORE;
    return 0;
}

static int f_load(fy_store *st, ferry_session *s, fy_rec *out)
{
    int rc = roll(F(st), FAULTY_LOAD);
    if (rc || (rc = apply_move(st, s)))
        return rc;
    return F(st)->mem->ops->load(F(st)->mem, s, out);
}

void faulty_store_move_next(fy_store *st)
{
    pthread_mutex_lock(&F(st)->lock);
    F(st)->move_next = true;
    pthread_mutex_unlock(&F(st)->lock);
}

static int f_save(fy_store *st, ferry_session *s, const fy_rec *rec)
{
    int rc = roll(F(st), FAULTY_SAVE);
    if (rc || (rc = apply_move(st, s)))
        return rc;
    return F(st)->mem->ops->save(F(st)->mem, s, rec);
}

static int f_remove(fy_store *st, ferry_session *s)
{
    int rc = roll(F(st), FAULTY_REMOVE);
    return rc ? rc : F(st)->mem->ops->remove(F(st)->mem, s);
}

static void f_each(fy_store *st, void (*fn)(ferry_session *s, void *ud), void *ud)
{
    roll(F(st), -1);
    F(st)->mem->ops->each(F(st)->mem, fn, ud);
}

static size_t f_count(fy_store *st)
{
    return F(st)->mem->ops->count(F(st)->mem);
}

static void f_tick(fy_store *st)
{
    fy_store *in = F(st)->mem;
    if (in->ops->tick)
        in->ops->tick(in);
}

static void f_free(fy_store *st)
{
    if (!st)
        return;
    F(st)->mem->ops->free(F(st)->mem);
    pthread_mutex_destroy(&F(st)->lock);
    free(st);
}

static const fy_store_ops faulty_ops = {
    .add = f_add,
    .find = f_find,
    .load = f_load,
    .save = f_save,
    .remove = f_remove,
    .each = f_each,
    .count = f_count,
    .tick = f_tick,
    .free = f_free,
};

fy_store *faulty_store_new(const faulty_cfg *cfg)
{
    faulty *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->mem = faulty_inner_new();
    if (!f->mem) {
        free(f);
        return NULL;
    }
    f->base.ops = &faulty_ops;
    f->cfg = *cfg;
    f->state = cfg->seed;
    pthread_mutex_init(&f->lock, NULL);
    return &f->base;
}

void faulty_store_set(fy_store *st, const faulty_cfg *cfg)
{
    pthread_mutex_lock(&F(st)->lock);
    uint64_t seed = F(st)->cfg.seed;
    F(st)->cfg = *cfg;
    F(st)->cfg.seed = seed;
    pthread_mutex_unlock(&F(st)->lock);
}

void faulty_store_fail_next(fy_store *st, faulty_op op, unsigned n, int stale)
{
    pthread_mutex_lock(&F(st)->lock);
    F(st)->forced[op] = n;
    F(st)->forced_stale = stale;
    pthread_mutex_unlock(&F(st)->lock);
}

unsigned faulty_store_failures(fy_store *st, faulty_op op)
{
    pthread_mutex_lock(&F(st)->lock);
    unsigned n = F(st)->failures[op];
    pthread_mutex_unlock(&F(st)->lock);
    return n;
}

unsigned faulty_store_calls(fy_store *st, faulty_op op)
{
    pthread_mutex_lock(&F(st)->lock);
    unsigned n = F(st)->calls[op];
    pthread_mutex_unlock(&F(st)->lock);
    return n;
}
