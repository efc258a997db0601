/* The Redis session store (store_redis.h). */
#include "store_redis.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handles.h"
#include "hub.h"
#include "log.h"
#include "session.h"

#define PREFIX_MAX 64
#define KEY_MAX (PREFIX_MAX + 2 + FY_ID_LEN + 1)

typedef struct redis_store {
    fy_store base;
    fy_redis *redis;
    char prefix[PREFIX_MAX + 1];
    unsigned lease_ms;
    int add_script, save_script, cursor_script, remove_script;
    fy_handles handles;   /* this node's */
    _Atomic uint64_t last_refresh; /* the hub's clock at the last lease refresh */
} redis_store;

#define RS(st) ((redis_store *)(st))

/* Writes the record only if no record has the ID. KEYS[1] the key; ARGV: record, TTL ms,
 * cursor, owner. 1 when written, 0 when the ID exists. */
static const char add_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'v', '1', 'r', ARGV[1], 'c', ARGV[3], 'o', ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";

/* The compare-and-set. KEYS[1] the key; ARGV: expected version, new version, record, TTL
 * ms, owner (also in the record; kept beside it for the cursor script), and the
 * subscriptions when they change. 1 when written, 0 when the version moved on (stale), -1
 * when there is no record. */
static const char save_lua[] =
    "local v = redis.call('HGET', KEYS[1], 'v')\n"
    "if not v then return -1 end\n"
    "if v ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'v', ARGV[2], 'r', ARGV[3], 'o', ARGV[5])\n"
    "if #ARGV >= 6 then redis.call('HSET', KEYS[1], 'u', ARGV[6]) end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "return 1\n";

/* Cursors, "seq ms-n", each stored only if its record names the node that sends it as its
 * owner, and it moves the stored one forward (seq, then position). KEYS: the records; ARGV:
 * the owner, then the cursor of each. */
static const char cursor_lua[] =
    "local function parse(c)\n"
    "  local s, ms, n = string.match(c, '^(%d+) (%d+)-(%d+)$')\n"
    "  return tonumber(s), tonumber(ms), tonumber(n)\n"
    "end\n"
    "for i, k in ipairs(KEYS) do\n"
    "  if redis.call('HGET', k, 'o') == ARGV[1] then\n"
    "    local c = redis.call('HGET', k, 'c')\n"
    "    local s, ms, n = parse(ARGV[i + 1])\n"
    "    local os, oms, on = 0, 0, 0\n"
    "    if c then os, oms, on = parse(c) end\n"
    "    if s > os or (s == os and (ms > oms or (ms == oms and n > on))) then\n"
    "      redis.call('HSET', k, 'c', ARGV[i + 1])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* Deletes a record only if it is still the version this node saved (its tombstone), not
 * one another node saved since. KEYS[1] the key; ARGV[1] the version. */
static const char remove_lua[] =
    "if redis.call('HGET', KEYS[1], 'v') == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

#define CURSORS_PER_CALL (FY_REDIS_EVAL_ARGS / 2 - 1)

#define CURSOR_MAX 64

static size_t cursor_str(uint64_t seq, fy_pos pos, char out[CURSOR_MAX])
{
    return (size_t)snprintf(out, CURSOR_MAX, "%" PRIu64 " %" PRIu64 "-%" PRIu64, seq, pos.ms,
                            pos.n);
}

static bool cursor_parse(const char *s, fy_rec *r)
{
    return sscanf(s, "%" SCNu64 " %" SCNu64 "-%" SCNu64, &r->cur_seq, &r->cur_pos.ms,
                  &r->cur_pos.n) == 3;
}

static size_t key_of(const redis_store *rs, const char *id, size_t len, char key[KEY_MAX])
{
    return (size_t)snprintf(key, KEY_MAX, "%ss:%.*s", rs->prefix, (int)len, id);
}

/* A record's time to live: the tombstone time for an end, else the lease. */
static unsigned ttl_of(const redis_store *rs, const fy_rec *r)
{
    return r->end_reason != FERRY_REASON_NONE ? rs->base.hub->opt.tombstone_ms : rs->lease_ms;
}

static int add_record(redis_store *rs, ferry_session *s);
static int find_record(redis_store *rs, const char *id, size_t len, ferry_session **out);
static int remove_record(redis_store *rs, ferry_session *s);
static void let_go(redis_store *rs, ferry_session *s);

/* add, find, remove and each run with no core lock held (store.h): they write the log
 * lines that load and save, under a session's lock, could only queue (redis.h). */
static int rs_add(fy_store *st, ferry_session *s)
{
    int rc = add_record(RS(st), s);
    fy_redis_log_flush(RS(st)->redis);
    return rc;
}

static int rs_find(fy_store *st, const char *id, size_t len, ferry_session **out)
{
    int rc = find_record(RS(st), id, len, out);
    fy_redis_log_flush(RS(st)->redis);
    return rc;
}

static int rs_remove(fy_store *st, ferry_session *s)
{
    int rc = remove_record(RS(st), s);
    fy_redis_log_flush(RS(st)->redis);
    return rc;
}

static int add_record(redis_store *rs, ferry_session *s)
{
    char key[KEY_MAX], ttl[16], cur[CURSOR_MAX];
    unsigned char rec[FY_REC_MAX];
    const char *argv[] = {key, (const char *)rec, ttl, cur, s->rec.owner};
    size_t len[] = {key_of(rs, s->id, strlen(s->id), key), fy_rec_encode(&s->rec, rec),
                    (size_t)snprintf(ttl, sizeof ttl, "%u", ttl_of(rs, &s->rec)),
                    cursor_str(s->rec.cur_seq, s->rec.cur_pos, cur), strlen(s->rec.owner)};
    redisReply *rep;
    int rc = fy_redis_eval(rs->redis, rs->add_script, &rep, 1, 5, argv, len);
    if (rc)
        return rc;
    bool added = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    if (!added) {
        fy_redis_note(rs->redis, FERRY_LOG_ERROR, "redis store: session %s already exists; not added",
                      s->id);
        return FERRY_ESTORE;
    }
    s->rec.version = 1;
    fy_handles_put(&rs->handles, s);
    return 0;
}

/* The optional fields of a record: the cursor, and the subscriptions into *subs when not
 * NULL (none stored: none). */
static bool fetch_extra(const redisReply *c, const redisReply *u, fy_rec *out, fy_subs_rec *subs)
{
    if (c->type == REDIS_REPLY_STRING && !cursor_parse(c->str, out))
        return false;
    if (!subs)
        return true;
    if (u->type != REDIS_REPLY_STRING) {
        memset(subs, 0, sizeof *subs);
        return true;
    }
    return fy_subs_decode(subs, (const unsigned char *)u->str, u->len);
}

/* Reads the record under `key`: 0 with *out (and *subs), FERRY_ENOTFOUND, or FERRY_ESTORE
 * (also for a record this build cannot read, logged). */
static int fetch(redis_store *rs, const char *key, fy_rec *out, fy_subs_rec *subs)
{
    const char *argv[] = {"HMGET", key, "v", "r", "c", "u"};
    redisReply *rep;
    int rc = fy_redis_command(rs->redis, &rep, 6, argv, NULL);
    if (rc)
        return rc;
    rc = FERRY_ESTORE;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 4) {
        redisReply *v = rep->element[0], *r = rep->element[1];
        if (v->type == REDIS_REPLY_NIL && r->type == REDIS_REPLY_NIL)
            rc = FERRY_ENOTFOUND;
        else if (v->type == REDIS_REPLY_STRING && r->type == REDIS_REPLY_STRING &&
                 fy_rec_decode(out, (const unsigned char *)r->str, r->len) &&
                 fetch_extra(rep->element[2], rep->element[3], out, subs))
            rc = sscanf(v->str, "%" SCNu64, &out->version) == 1 ? 0 : FERRY_ESTORE;
    }
    if (rc == FERRY_ESTORE)
        fy_redis_note(rs->redis, FERRY_LOG_ERROR, "redis store: %s holds no record this build can read",
                      key);
    freeReplyObject(rep);
    return rc;
}

/* A handle for a session this node meets for the first time, from its stored record:
 * detached (its resume window starts now), or ended if the record holds an end. */
static ferry_session *handle_from(ferry_hub *hub, const char *id, size_t len, const fy_rec *r,
                                  const fy_subs_rec *subs)
{
    ferry_session *s = fy_session_new(hub);
    if (!s)
        return NULL;
    memcpy(s->id, id, len);
    s->id[len] = '\0';
    memcpy(s->identity, r->identity, sizeof s->identity);
    s->rec = *r;
    if (s->subs_rec) /* a hub of a cluster */
        *s->subs_rec = *subs;
    if (r->end_reason != FERRY_REASON_NONE) {
        s->state = FERRY_STATE_EXPIRED;
        s->end_reason = r->end_reason;
    } else {
        s->state = FERRY_STATE_DETACHED;
        atomic_fetch_add(&hub->live, 1); /* its end takes it back */
    }
    return s;
}

/* What find builds a handle from, the first time this node meets a session. */
struct handle_src {
    ferry_hub *hub;
    const char *id;
    size_t len;
    const fy_rec *rec;
    const fy_subs_rec *subs;
};

static ferry_session *make_handle(void *ud)
{
    const struct handle_src *h = ud;
    return handle_from(h->hub, h->id, h->len, h->rec, h->subs);
}

static int find_record(redis_store *rs, const char *id, size_t len, ferry_session **out)
{
    char key[KEY_MAX];
    fy_rec rec;
    *out = NULL;
    if (len > FY_ID_LEN)
        return FERRY_ENOTFOUND;
    key_of(rs, id, len, key);
    fy_subs_rec *subs = malloc(sizeof *subs);
    if (!subs)
        return FERRY_ENOMEM;
    int rc = fetch(rs, key, &rec, subs);
    if (rc == 0) {
        struct handle_src src = {rs->base.hub, id, len, &rec, subs};
        *out = fy_handles_find(&rs->handles, id, len, make_handle, &src);
        rc = *out ? 0 : FERRY_ENOMEM;
    }
    if (rc == 0) { /* a handle this node does not serve takes what was just read (its
                    * cursor moves without the version) */
        ferry_session *s = *out;
        pthread_mutex_lock(&s->lock);
        if (!s->serving && s->state != FERRY_STATE_EXPIRED && rec.version >= s->rec.version) {
            s->rec = rec;
            if (s->subs_rec)
                *s->subs_rec = *subs;
        }
        pthread_mutex_unlock(&s->lock);
    }
    free(subs);
    return rc;
}

static int rs_load(fy_store *st, ferry_session *s, fy_rec *out)
{
    char key[KEY_MAX];
    key_of(RS(st), s->id, strlen(s->id), key);
    fy_subs_rec *subs = s->subs_rec ? malloc(sizeof *subs) : NULL;
    if (s->subs_rec && !subs)
        return FERRY_ENOMEM;
    int rc = fetch(RS(st), key, out, subs); /* into a copy: an error changes nothing */
    if (rc == 0 && subs)
        *s->subs_rec = *subs;
    free(subs);
    if (rc == FERRY_ENOTFOUND) {
        fy_redis_note(RS(st)->redis, FERRY_LOG_ERROR, "redis store: the record of session %s is gone",
                      s->id);
        rc = FERRY_ESTORE;
    }
    if (rc == 0)
        s->rec = *out;
    return rc;
}

static int save_with(fy_store *st, ferry_session *s, const fy_rec *rec, const fy_subs_rec *subs)
{
    redis_store *rs = RS(st);
    char key[KEY_MAX], from[24], to[24], ttl[16];
    unsigned char buf[FY_REC_MAX], sbuf[FY_SUBS_BYTES_MAX];
    const char *argv[] = {key, from, to, (const char *)buf, ttl, rec->owner, (const char *)sbuf};
    size_t len[] = {key_of(rs, s->id, strlen(s->id), key),
                    (size_t)snprintf(from, sizeof from, "%" PRIu64, rec->version),
                    (size_t)snprintf(to, sizeof to, "%" PRIu64, rec->version + 1),
                    fy_rec_encode(rec, buf),
                    (size_t)snprintf(ttl, sizeof ttl, "%u", ttl_of(rs, rec)),
                    strlen(rec->owner), subs ? fy_subs_encode(subs, sbuf) : 0};
    redisReply *rep;
    int rc = fy_redis_eval(rs->redis, rs->save_script, &rep, 1, subs ? 7 : 6, argv, len);
    if (rc)
        return rc;
    long long answer = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -2;
    freeReplyObject(rep);
    if (answer == 0)
        return FY_STORE_STALE;
    if (answer == -1 && rec->end_reason == FERRY_REASON_NONE) {
        fy_redis_note(rs->redis, FERRY_LOG_ERROR, "redis store: the record of session %s is gone",
                      s->id);
        return FERRY_ESTORE;
    }
    if (answer != 1 && answer != -1)
        return FERRY_ESTORE;
    s->rec = *rec;
    s->rec.version++;
    if (subs)
        *s->subs_rec = *subs;
    return 0;
}

static int rs_save(fy_store *st, ferry_session *s, const fy_rec *rec)
{
    return save_with(st, s, rec, NULL);
}

/* This node lets go of a session another node serves now: the handle only. Every caller
 * has left the session first; one that a resume adopted since (the tick decided to let an
 * idle handle go while a resume of it waited for pub_lock) is served here now, and kept. */
static void rs_forget(fy_store *st, ferry_session *s)
{
    pthread_mutex_lock(&s->lock);
    bool held = !s->serving && !s->forgotten;
    bool counted = held && s->state != FERRY_STATE_EXPIRED;
    if (held)
        s->forgotten = true;
    pthread_mutex_unlock(&s->lock);
    if (counted) /* handle_from and store_new counted it */
        atomic_fetch_sub(&st->hub->live, 1);
    if (held)
        fy_handles_del(&RS(st)->handles, s);
}

static ferry_session *rs_local(fy_store *st, const char *id, size_t len)
{
    return fy_handles_find(&RS(st)->handles, id, len, NULL, NULL);
}

/* The cursors, CURSORS_PER_CALL to a round trip. */
static void rs_cursors(fy_store *st, const fy_cursor *c, size_t n)
{
    redis_store *rs = RS(st);
    enum { K = CURSORS_PER_CALL };
    char (*keys)[KEY_MAX] = malloc(K * sizeof *keys);
    char (*vals)[CURSOR_MAX] = malloc(K * sizeof *vals);
    const char **argv = malloc((2 * K + 1) * sizeof *argv);
    size_t *len = malloc((2 * K + 1) * sizeof *len);
    for (size_t at = 0; keys && vals && argv && len && at < n; at += K) {
        size_t k = n - at < K ? n - at : K;
        argv[k] = c[0].owner; /* every cursor of a round is this node's */
        len[k] = strlen(c[0].owner);
        for (size_t i = 0; i < k; i++) {
            const fy_cursor *x = &c[at + i];
            argv[i] = keys[i];
            len[i] = key_of(rs, x->id, strlen(x->id), keys[i]);
            argv[k + 1 + i] = vals[i];
            len[k + 1 + i] = cursor_str(x->seq, x->pos, vals[i]);
        }
        redisReply *rep;
        if (fy_redis_eval(rs->redis, rs->cursor_script, &rep, (int)k, (int)(2 * k + 1), argv, len))
            break; /* the next round tries again */
        freeReplyObject(rep);
    }
    free(keys);
    free(vals);
    free(argv);
    free(len);
}

/* Stops holding the handle, once: a handle forgotten and removed at once (a `moved` entry
 * and the tick) is dropped by whichever comes first. */
static void let_go(redis_store *rs, ferry_session *s)
{
    pthread_mutex_lock(&s->lock);
    bool held = !s->forgotten;
    s->forgotten = true;
    pthread_mutex_unlock(&s->lock);
    if (held)
        fy_handles_del(&rs->handles, s);
}

static int remove_record(redis_store *rs, ferry_session *s)
{
    char key[KEY_MAX], version[24];
    pthread_mutex_lock(&s->lock);
    snprintf(version, sizeof version, "%" PRIu64, s->rec.version);
    pthread_mutex_unlock(&s->lock);
    const char *argv[] = {key, version};
    size_t len[] = {key_of(rs, s->id, strlen(s->id), key), strlen(version)};
    redisReply *rep;
    int rc = fy_redis_eval(rs->redis, rs->remove_script, &rep, 1, 2, argv, len);
    if (rc)
        return rc;
    freeReplyObject(rep);
    let_go(rs, s);
    return 0;
}

/* The lease refresh's list: the keys of the sessions that have not ended. */
typedef struct refresh {
    redis_store *rs;
    char (*keys)[KEY_MAX];
    const char **argv;
    size_t *len, n, cap;
    char ttl[16];
} refresh;

static void collect(ferry_session *s, void *ud)
{
    refresh *f = ud;
    pthread_mutex_lock(&s->lock);
    bool live = s->state != FERRY_STATE_EXPIRED && s->serving; /* the serving node's lease */
    pthread_mutex_unlock(&s->lock);
    if (!live || f->n == f->cap)
        return;
    size_t i = f->n++;
    const char *a[] = {"PEXPIRE", f->keys[i], f->ttl};
    size_t l[] = {7, key_of(f->rs, s->id, strlen(s->id), f->keys[i]), strlen(f->ttl)};
    memcpy(f->argv + 3 * i, a, sizeof a);
    memcpy(f->len + 3 * i, l, sizeof l);
}

/* Pushes the lease of every live record this node holds forward, every lease_ms / 3, in
 * one pipeline. The keys are listed under the handles' lock, and the round trip runs
 * without it. A failure is retried on the next tick. */
static void rs_tick(fy_store *st)
{
    redis_store *rs = RS(st);
    uint64_t now = fy_hub_now(rs->base.hub); /* the hub's clock, injected ones too */
    fy_redis_log_flush(rs->redis);
    uint64_t last = atomic_load(&rs->last_refresh);
    if (last && now - last < rs->lease_ms / 3)
        return;
    pthread_mutex_lock(&rs->handles.lock);
    refresh f = {.rs = rs, .cap = rs->handles.map.count};
    snprintf(f.ttl, sizeof f.ttl, "%u", rs->lease_ms);
    f.keys = malloc(f.cap * sizeof *f.keys + 1);
    f.argv = malloc(3 * f.cap * sizeof *f.argv + 1);
    f.len = malloc(3 * f.cap * sizeof *f.len + 1);
    bool listed = f.keys && f.argv && f.len;
    if (listed)
        fy_handles_each(&rs->handles, collect, &f);
    pthread_mutex_unlock(&rs->handles.lock);
    if (listed && fy_redis_pipeline(rs->redis, f.n, 3, f.argv, f.len) == 0)
        atomic_store(&rs->last_refresh, now);
    free(f.keys);
    free(f.argv);
    free(f.len);
}

static void rs_each(fy_store *st, void (*fn)(ferry_session *s, void *ud), void *ud)
{
    fy_redis_log_flush(RS(st)->redis);
    fy_handles_each(&RS(st)->handles, fn, ud);
}

static size_t rs_count(fy_store *st)
{
    return fy_handles_count(&RS(st)->handles);
}

/* Drops this node's handles; the records stay in Redis. */
static void rs_free(fy_store *st)
{
    if (!st)
        return;
    fy_handles_destroy(&RS(st)->handles);
    fy_redis_free(RS(st)->redis);
    free(st);
}

static const fy_store_ops redis_ops = {
    .add = rs_add,
    .find = rs_find,
    .load = rs_load,
    .save = rs_save,
    .remove = rs_remove,
    .each = rs_each,
    .count = rs_count,
    .save_subs = save_with,
    .forget = rs_forget,
    .local = rs_local,
    .cursors = rs_cursors,
    .tick = rs_tick,
    .free = rs_free,
};

int fy_store_redis_new(fy_store **out, const fy_store_redis_cfg *cfg)
{
    *out = NULL;
    const char *prefix = cfg->prefix ? cfg->prefix : "ferry:";
    if (strlen(prefix) > PREFIX_MAX) {
        fy_log(FERRY_LOG_ERROR, "redis store: the key prefix is over %d bytes", PREFIX_MAX);
        return FERRY_EINVAL;
    }
    redis_store *rs = calloc(1, sizeof *rs);
    if (!rs)
        return FERRY_ENOMEM;
    int rc = fy_handles_init(&rs->handles);
    if (rc == 0 && (rc = fy_redis_new(&rs->redis, &cfg->redis)))
        fy_handles_destroy(&rs->handles);
    if (rc) {
        free(rs);
        return rc;
    }
    snprintf(rs->prefix, sizeof rs->prefix, "%s", prefix);
    rs->lease_ms = cfg->lease_ms ? cfg->lease_ms : 600000;
    rs->add_script = fy_redis_script(rs->redis, add_lua);
    rs->save_script = fy_redis_script(rs->redis, save_lua);
    rs->cursor_script = fy_redis_script(rs->redis, cursor_lua);
    rs->remove_script = fy_redis_script(rs->redis, remove_lua);
    rs->base.ops = &redis_ops;
    *out = &rs->base;
    return 0;
}
