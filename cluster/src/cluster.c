/* A cluster member over Redis (ferry_cluster.h, core/src/cluster.h): the session store of
 * store_redis.c, and the feed, one Redis stream read by every node.
 *
 * The feed is "<prefix>feed": an entry per message to a session, published or sent, with
 * fields k (kind), n (topic or session ID) and b (the message's encoded body), appended
 * with XADD (one write whatever the number of subscribers) and trimmed every few seconds,
 * by age (MINID, feed_keep_ms behind the newest entry) and by length (feed_max). The trim
 * writes "<prefix>floor", the first entry it kept when it removed any: entries after a
 * position below the floor may be gone, so an outbox cannot be rebuilt from there. Each node's reader thread
 * follows the feed with XREAD BLOCK on a connection of its own and hands what it reads to
 * fy_hub_feed.
 *
 * "<prefix>epoch" holds a random value the first node writes. A node that finds it changed
 * or gone knows Redis lost its data (a restart without persistence, a flush, a failover to
 * a replica that was behind): the sessions it serves may have lost messages, so it lets
 * them all go, and their clients' resumes find no record and get a reset. The same happens
 * when the reader finds that the feed lost entries it had not read yet. */
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_seam.h"
#include "ferry_cluster.h"
#include "ferry_transport.h" /* ferry_sized_copy */
#include "hub.h"
#include "log.h"
#include "redis.h"
#include "store_redis.h"

#define PREFIX_MAX 64
#define KEY_MAX (PREFIX_MAX + 16)
#define READ_COUNT 512   /* entries per XREAD */
#define BLOCK_MS 100     /* how long an XREAD waits for entries (and a stop for the reader) */
#define LOST_MS 1000     /* how often the reader asks whether the feed lost unread entries */
#define RETRY_MS 200     /* between attempts while Redis is unreachable */
#define EPOCH_MS 1000    /* how often the reader checks the epoch */
#define TRIM_MS 5000     /* how often the reader trims the feed */
#define CTL_MAX "100000" /* control entries (moves, ends) kept, about */

typedef struct rcluster {
    ferry_cluster base;
    ferry_cluster_options o;
    char *redis, *password, *prefix;   /* copies of the options' strings */
    fy_redis *cmd;                     /* appends, ranges */
    fy_redis *rd;                      /* the reader's own connection */
    char feed[KEY_MAX], ctl[KEY_MAX], epoch_key[KEY_MAX], floor_key[KEY_MAX];
    int trim_script;
    char epoch[33];                    /* the epoch this node joined ("" before) */
    ferry_hub *hub;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    atomic_int status;                 /* FERRY_OK or FERRY_ESTORE */
    fy_redis_meter meter;              /* every pool's commands, the store's included */
    fy_pos last;                       /* the reader's: the last entry read */
    fy_pos ctl_last;                   /* the reader's: the last control entry read */
    bool ready;                        /* the reader's: last is set */
} rcluster;

#define RC(c) ((rcluster *)(c))

void ferry_cluster_options_init(ferry_cluster_options *o)
{
    if (!o)
        return;
    *o = (ferry_cluster_options){.size = sizeof *o,
                                 .connect_timeout_ms = 1000,
                                 .command_timeout_ms = 1000,
                                 .lease_ms = 600000,
                                 .feed_keep_ms = 300000,
                                 .feed_max = 1000000};
}

static bool pos_parse(const char *s, size_t len, fy_pos *p)
{
    char buf[48];
    if (len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return sscanf(buf, "%" SCNu64 "-%" SCNu64, &p->ms, &p->n) == 2;
}

static int pos_str(fy_pos p, char out[48])
{
    return snprintf(out, 48, "%" PRIu64 "-%" PRIu64, p.ms, p.n);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* One stream entry ([id, [field, value, ...]]) as a feed entry pointing into the reply. */
static bool entry_of(const redisReply *x, fy_feed_entry *e)
{
    *e = (fy_feed_entry){0};
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
        x->element[0]->type != REDIS_REPLY_STRING || x->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    if (!pos_parse(x->element[0]->str, x->element[0]->len, &e->pos))
        return false;
    const redisReply *f = x->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
            continue;
        if (k->str[0] == 'k' && v->len == 1)
            e->kind = v->str[0];
        else if (k->str[0] == 'n')
            e->name = v->str, e->name_len = v->len;
        else if (k->str[0] == 'b')
            e->body = v->str, e->body_len = v->len;
    }
    return e->kind && e->name && e->body;
}

/* Hands a list of stream entries to fn, in order; stops at fn's first non-zero answer. */
static int each_entry(const redisReply *list, fy_pos *last,
                      int (*fn)(const fy_feed_entry *e, size_t n, void *ud), void *ud)
{
    fy_feed_entry *es = malloc((list->elements + 1) * sizeof *es);
    if (!es)
        return FERRY_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < list->elements; i++) {
        fy_feed_entry e;
        bool ours = entry_of(list->element[i], &e);
        if (fy_pos_cmp(e.pos, *last) > 0) /* one that is not ours still moves the reader on */
            *last = e.pos;
        if (ours)
            es[n++] = e;
    }
    int rc = n ? fn(es, n, ud) : 0;
    free(es);
    return rc;
}

/* The newest (or first) entry's position of a stream ({0, 0} for an empty one). 0 or
 * FERRY_ESTORE. */
static int stream_edge(fy_redis *r, const char *key, bool newest, fy_pos *out)
{
    const char *argv[] = {newest ? "XREVRANGE" : "XRANGE", key, newest ? "+" : "-",
                          newest ? "-" : "+", "COUNT", "1"};
    redisReply *rep;
    int rc = fy_redis_command(r, &rep, 6, argv, NULL);
    if (rc)
        return rc;
    *out = (fy_pos){0, 0};
    if (rep->type != REDIS_REPLY_ARRAY)
        rc = FERRY_ESTORE;
    else if (rep->elements == 1) {
        const redisReply *x = rep->element[0];
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
            x->element[0]->type == REDIS_REPLY_STRING &&
            !pos_parse(x->element[0]->str, x->element[0]->len, out))
            rc = FERRY_ESTORE;
    }
    freeReplyObject(rep);
    return rc;
}

/* Joins the epoch (writing one if there is none): 0 with *changed when it differs from
 * the one this node knew, or FERRY_ESTORE. */
static int epoch_check(rcluster *c, bool *changed)
{
    char fresh[33];
    unsigned char rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(fresh, sizeof fresh, rnd, sizeof rnd);
    const char *set[] = {"SET", c->epoch_key, fresh, "NX"};
    const char *get[] = {"GET", c->epoch_key};
    redisReply *rep;
    int rc = fy_redis_command(c->rd, &rep, 4, set, NULL);
    if (rc)
        return rc;
    freeReplyObject(rep);
    if ((rc = fy_redis_command(c->rd, &rep, 2, get, NULL)))
        return rc;
    rc = rep->type == REDIS_REPLY_STRING && rep->len == 32 ? 0 : FERRY_ESTORE;
    if (rc == 0) {
        *changed = c->epoch[0] && memcmp(c->epoch, rep->str, 32) != 0;
        memcpy(c->epoch, rep->str, 32);
        c->epoch[32] = '\0';
    }
    freeReplyObject(rep);
    return rc;
}

static int feed_to_hub(const fy_feed_entry *es, size_t n, void *ud)
{
    fy_hub_feed(ud, es, n);
    return 0;
}

static int control_to_hub(const fy_feed_entry *es, size_t n, void *ud)
{
    fy_hub_control(ud, es, n);
    return 0;
}

/* One XREAD: 0 (entries handed to the hub, or none came) or FERRY_ESTORE. */
static int read_once(rcluster *c)
{
    char from[48], ctl_from[48], count[16], block[16];
    pos_str(c->last, from);
    pos_str(c->ctl_last, ctl_from);
    snprintf(count, sizeof count, "%d", READ_COUNT);
    snprintf(block, sizeof block, "%d", BLOCK_MS);
    const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", c->feed, c->ctl,
                          from, ctl_from};
    redisReply *rep;
    int rc = fy_redis_command_blocking(c->rd, &rep, 10, argv, NULL);
    if (rc)
        return rc;
    /* [[key, entries], ...] for the streams that had some */
    for (size_t i = 0; rc == 0 && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const redisReply *s = rep->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
            s->element[0]->type != REDIS_REPLY_STRING || s->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        bool feed = strcmp(s->element[0]->str, c->feed) == 0;
        rc = each_entry(s->element[1], feed ? &c->last : &c->ctl_last,
                        feed ? feed_to_hub : control_to_hub, c->hub);
    }
    freeReplyObject(rep);
    return rc;
}

/* After Redis was unreachable, or when it lost its data: whether the feed may have lost
 * entries this node had not read. */

/* KEYS: the feed, the floor; ARGV: the oldest ms to keep, the most entries to keep. */
static const char trim_lua[] =
    "local gone = redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[1])\n"
    "if redis.call('XLEN', KEYS[1]) > tonumber(ARGV[2]) then\n"
    "  gone = gone + redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])\n"
    "end\n"
    "if gone == 0 then return 0 end\n"
    "local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "if first[1] then redis.call('SET', KEYS[2], first[1][1]) end\n"
    "return gone\n";

static void trim(rcluster *c)
{
    char minid[32], max[24];
    snprintf(minid, sizeof minid, "%" PRIu64,
             c->last.ms > c->o.feed_keep_ms ? c->last.ms - c->o.feed_keep_ms : 0);
    snprintf(max, sizeof max, "%zu", c->o.feed_max);
    const char *argv[] = {c->feed, c->floor_key, minid, max};
    redisReply *rep;
    if (fy_redis_eval(c->cmd, c->trim_script, &rep, 2, 4, argv, NULL) == 0)
        freeReplyObject(rep);
}

/* The floor (the first entry the last trim kept; {0, 0} if nothing was ever trimmed). */
static int feed_floor(rcluster *c, fy_pos *out)
{
    const char *argv[] = {"GET", c->floor_key};
    redisReply *rep;
    int rc = fy_redis_command(c->cmd, &rep, 2, argv, NULL);
    if (rc)
        return rc;
    *out = (fy_pos){0, 0};
    if (rep->type == REDIS_REPLY_STRING && !pos_parse(rep->str, rep->len, out))
        rc = FERRY_ESTORE;
    freeReplyObject(rep);
    return rc;
}

/* Sets where the reader starts: the feed's newest entry, when this node first reaches
 * Redis; every session it opens starts after it. */
static int reader_start(rcluster *c)
{
    bool changed;
    int rc = epoch_check(c, &changed);
    if (rc == 0 && (rc = stream_edge(c->rd, c->feed, true, &c->last)) == 0 &&
        (rc = stream_edge(c->rd, c->ctl, true, &c->ctl_last)) == 0) {
        fy_hub_feed_start(c->hub, c->last);
        c->ready = true;
    }
    return rc;
}

/* Whether the feed may have lost entries this node has not read: trimmed past it (a reader
 * that stalled or was cut off longer than the feed keeps), or gone backwards (a failover to
 * a replica that was behind). 0 with *lost, or FERRY_ESTORE. */
static int feed_lost_entries(rcluster *c, bool *lost)
{
    fy_pos floor, newest;
    int rc = feed_floor(c, &floor);
    if (rc == 0)
        rc = stream_edge(c->rd, c->feed, true, &newest);
    if (rc == 0)
        *lost = fy_pos_cmp(floor, c->last) > 0 || fy_pos_cmp(newest, c->last) < 0;
    return rc;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *reader(void *arg)
{
    rcluster *c = arg;
    uint64_t epoch_at = 0, trim_at = 0, lost_at = 0;
    bool down = false;
    while (!atomic_load(&c->stop)) {
        int rc = c->ready ? 0 : reader_start(c);
        uint64_t now = mono_ms();
        bool changed = false;
        if (rc == 0 && (down || now - epoch_at >= EPOCH_MS)) {
            rc = epoch_check(c, &changed);
            epoch_at = now;
        }
        /* Entries it has not read yet are read now, unless the feed lost some (a restart,
         * a flush, a failover, trimming past this reader): then nothing this node serves
         * can be trusted to be whole. Asked every second, and after every error. */
        bool lost = false;
        if (rc == 0 && (down || now - lost_at >= LOST_MS)) {
            rc = feed_lost_entries(c, &lost);
            lost_at = now;
        }
        if (rc == 0 && (changed || lost)) {
            fy_log(FERRY_LOG_WARN, "cluster %s: the feed lost entries this node had not read; "
                   "letting every session go", c->base.node);
            if (stream_edge(c->rd, c->feed, true, &c->last) == 0)
                fy_hub_feed_lost(c->hub, c->last);
        }
        if (rc == 0) {
            atomic_store(&c->status, FERRY_OK); /* Redis answers; the read may wait a while */
            rc = read_once(c);
        }
        fy_redis_log_flush(c->rd);
        fy_redis_log_flush(c->cmd);
        down = rc != 0;
        atomic_store(&c->status, down ? FERRY_ESTORE : FERRY_OK);
        if (down) {
            sleep_ms(RETRY_MS);
        } else if (now - trim_at >= TRIM_MS) {
            trim(c);
            trim_at = now;
        }
    }
    return NULL;
}

static int c_store(ferry_cluster *base, fy_store **out)
{
    rcluster *c = RC(base);
    fy_store_redis_cfg cfg = {
        .redis = {.addr = c->redis, .password = c->password, .db = c->o.database,
                  .connect_timeout_ms = c->o.connect_timeout_ms,
                  .command_timeout_ms = c->o.command_timeout_ms, .meter = &c->meter},
        .prefix = c->prefix,
        .lease_ms = c->o.lease_ms};
    return fy_store_redis_new(out, &cfg);
}

static int c_start(ferry_cluster *base, ferry_hub *hub)
{
    rcluster *c = RC(base);
    c->hub = hub;
    atomic_store(&c->stop, false);
    if (pthread_create(&c->thread, NULL, reader, c))
        return FERRY_ENOMEM;
    c->running = true;
    return 0;
}

static void c_stop(ferry_cluster *base)
{
    rcluster *c = RC(base);
    if (!c->running)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    c->running = false;
}

static int c_append(ferry_cluster *base, int kind, const char *name, size_t name_len,
                    const char *body, size_t body_len, fy_pos *pos)
{
    rcluster *c = RC(base);
    char k = (char)kind;
    /* Sessions moving and ending go to a stream of their own: a node rebuilding an outbox
     * reads the feed's messages only, not one entry for every session that moved. */
    bool ctl = kind == FY_FEED_MOVED || kind == FY_FEED_ENDED;
    /* the feed is trimmed by the reader's trim (it keeps the floor); the control stream by
     * its length, here */
    const char *feed_argv[] = {"XADD", c->feed, "*", "k", &k, "n", name, "b", body};
    size_t feed_len[] = {4, strlen(c->feed), 1, 1, 1, 1, name_len, 1, body_len};
    const char *ctl_argv[] = {"XADD", c->ctl, "MAXLEN", "~", CTL_MAX, "*", "k", &k, "n", name,
                              "b", body};
    size_t ctl_len[] = {4, strlen(c->ctl), 6, 1, strlen(CTL_MAX), 1, 1, 1, 1, name_len, 1,
                        body_len};
    redisReply *rep;
    int rc = ctl ? fy_redis_command(c->cmd, &rep, 12, ctl_argv, ctl_len)
                 : fy_redis_command(c->cmd, &rep, 9, feed_argv, feed_len);
    if (rc) {
        atomic_store(&c->status, FERRY_ESTORE);
        return rc;
    }
    rc = rep->type == REDIS_REPLY_STRING && pos_parse(rep->str, rep->len, pos) ? 0 : FERRY_ESTORE;
    freeReplyObject(rep);
    return rc;
}

struct range_ctx {
    int (*fn)(const fy_feed_entry *e, void *ud);
    void *ud;
    fy_pos to;
    bool done;
};

static int range_each(const fy_feed_entry *es, size_t n, void *ud)
{
    struct range_ctx *r = ud;
    for (size_t i = 0; i < n; i++) {
        if (fy_pos_cmp(es[i].pos, r->to) > 0) {
            r->done = true;
            return 0;
        }
        int rc = r->fn(&es[i], r->ud);
        if (rc)
            return rc;
    }
    return 0;
}

static int c_range(ferry_cluster *base, fy_pos from, fy_pos to,
                   int (*fn)(const fy_feed_entry *e, void *ud), void *ud)
{
    rcluster *c = RC(base);
    fy_pos floor, first = from;
    if (fy_pos_cmp(from, to) >= 0)
        return 0;
    int rc;
    struct range_ctx r = {fn, ud, to, false};
    while (!r.done) {
        char start[49], end[48], count[16];
        start[0] = '(';
        pos_str(from, start + 1);
        pos_str(to, end);
        snprintf(count, sizeof count, "%d", READ_COUNT);
        const char *argv[] = {"XRANGE", c->feed, start, end, "COUNT", count};
        redisReply *rep;
        if ((rc = fy_redis_command(c->cmd, &rep, 6, argv, NULL)))
            return rc;
        fy_pos last = from;
        if (rep->type != REDIS_REPLY_ARRAY)
            rc = FERRY_ESTORE;
        else if (rep->elements < READ_COUNT)
            r.done = true;
        if (rc == 0)
            rc = each_entry(rep, &last, range_each, &r);
        freeReplyObject(rep);
        if (rc)
            return rc;
        if (fy_pos_cmp(last, from) == 0)
            break;
        from = last;
    }
    /* Read after the entries: the floor only rises, so if it is not above the first
     * `from` now, nothing after it had been trimmed when they were read. */
    if ((rc = feed_floor(c, &floor)))
        return rc;
    return fy_pos_cmp(floor, first) > 0 ? FY_FEED_TRIMMED : 0;
}

static int c_status(ferry_cluster *base)
{
    return atomic_load(&RC(base)->status);
}

static fy_redis_meter *c_meter(ferry_cluster *base)
{
    return &RC(base)->meter;
}

static const fy_cluster_ops redis_cluster_ops = {
    .store = c_store,
    .start = c_start,
    .stop = c_stop,
    .append = c_append,
    .range = c_range,
    .status = c_status,
    .meter = c_meter,
};

static bool node_ok(const char *node)
{
    size_t len = node ? strlen(node) : 0;
    if (len == 0 || len >= FY_NODE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = node[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* The options' rules (ferry_cluster.h); FERRY_EINVAL with a log line for the first broken. */
static int check(const ferry_cluster_options *o)
{
    const char *bad = NULL;
    if (!node_ok(o->node))
        bad = "node must be 1 to 64 of [A-Za-z0-9_.-]";
    else if (o->prefix && strlen(o->prefix) > PREFIX_MAX)
        bad = "prefix is over 64 bytes";
    else if (!o->connect_timeout_ms || !o->command_timeout_ms || !o->lease_ms ||
             !o->feed_keep_ms || !o->feed_max)
        bad = "a timeout, lease_ms, feed_keep_ms or feed_max is 0";
    if (bad)
        fy_log(FERRY_LOG_ERROR, "ferry_cluster_new: %s", bad);
    return bad ? FERRY_EINVAL : 0;
}

static char *dup_or_null(const char *s, bool *fail)
{
    char *d = s ? strdup(s) : NULL;
    *fail |= s && !d;
    return d;
}

int ferry_cluster_new(ferry_cluster **out, const ferry_cluster_options *o)
{
    if (!out || !o) {
        fy_log(FERRY_LOG_ERROR, "ferry_cluster_new: %s is NULL", out ? "o" : "out");
        return FERRY_EINVAL;
    }
    *out = NULL;
    rcluster *c = calloc(1, sizeof *c);
    if (!c)
        return FERRY_ENOMEM;
    ferry_cluster_options_init(&c->o);
    int rc = ferry_sized_copy(&c->o, sizeof c->o, o, "ferry_cluster_new", "ferry_cluster_options");
    if (rc == 0)
        rc = check(&c->o);
    if (rc) {
        free(c);
        return rc;
    }
    bool fail = false;
    c->redis = dup_or_null(c->o.redis, &fail);
    c->password = dup_or_null(c->o.password, &fail);
    c->prefix = dup_or_null(c->o.prefix ? c->o.prefix : "ferry:", &fail);
    fy_redis_cfg cmd = {.addr = c->redis, .password = c->password, .db = c->o.database,
                        .connect_timeout_ms = c->o.connect_timeout_ms,
                        .command_timeout_ms = c->o.command_timeout_ms, .meter = &c->meter};
    fy_redis_cfg rd = cmd;
    rd.pool = 1;
    rd.command_timeout_ms = c->o.command_timeout_ms + BLOCK_MS;
    rc = fail ? FERRY_ENOMEM : fy_redis_new(&c->cmd, &cmd);
    if (rc == 0)
        rc = fy_redis_new(&c->rd, &rd);
    if (rc) {
        c->running = false;
        ferry_cluster_free(&c->base);
        return rc;
    }
    c->o.redis = c->o.password = c->o.prefix = c->o.node = NULL; /* the copies are used */
    snprintf(c->base.node, sizeof c->base.node, "%s", o->node);
    snprintf(c->feed, sizeof c->feed, "%sfeed", c->prefix);
    snprintf(c->ctl, sizeof c->ctl, "%sctl", c->prefix);
    snprintf(c->epoch_key, sizeof c->epoch_key, "%sepoch", c->prefix);
    snprintf(c->floor_key, sizeof c->floor_key, "%sfloor", c->prefix);
    c->trim_script = fy_redis_script(c->cmd, trim_lua);
    c->base.ops = &redis_cluster_ops;
    atomic_init(&c->status, FERRY_ESTORE);
    *out = &c->base;
    return 0;
}

void ferry_cluster_free(ferry_cluster *base)
{
    if (!base)
        return;
    rcluster *c = RC(base);
    c_stop(base);
    fy_redis_free(c->cmd);
    fy_redis_free(c->rd);
    if (c->password)
        sodium_memzero(c->password, strlen(c->password));
    free(c->redis);
    free(c->password);
    free(c->prefix);
    free(c);
}
