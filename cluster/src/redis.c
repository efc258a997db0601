/* The Redis connection pool (redis.h). */
#include "redis.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry.h"
#include "hist.h"
#include "log.h"

typedef struct conn {
    pthread_mutex_t lock;
    redisContext *c; /* NULL: not connected; the next command connects */
} conn;

struct fy_redis {
    char *host;          /* NULL for a unix socket */
    char *path;          /* the socket's path, or NULL */
    int port;
    char *password;
    int db;
    struct timeval connect_tv, command_tv;
    fy_redis_meter *meter; /* or NULL */
    unsigned n;
    atomic_uint next;    /* round robin over conns */
    atomic_bool down;    /* the last connect or command failed: "lost" was logged */
    pthread_mutex_t note_lock;   /* a leaf: the queued log lines */
    struct {
        ferry_log_level level;
        char msg[200];
    } notes[FY_REDIS_NOTES];
    unsigned nnotes, dropped;
    pthread_mutex_t script_lock; /* a leaf: the script table's SHA1s */
    const char *script_src[FY_REDIS_SCRIPTS];
    char script_sha[FY_REDIS_SCRIPTS][41];
    int nscripts;
    conn conns[];
};

static struct timeval tv_ms(unsigned ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
}

/* Splits "host:port" or takes "/path". 0 or FERRY_EINVAL / FERRY_ENOMEM. */
static int parse_addr(fy_redis *r, const char *addr)
{
    if (!addr || !*addr)
        addr = "127.0.0.1:6379";
    if (addr[0] == '/') {
        r->path = strdup(addr);
        return r->path ? 0 : FERRY_ENOMEM;
    }
    const char *colon = strrchr(addr, ':');
    size_t hlen = colon ? (size_t)(colon - addr) : strlen(addr);
    long port = 6379;
    if (colon) {
        char *end;
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        if (errno || *end || end == colon + 1 || port < 1 || port > 65535)
            hlen = 0;
    }
    if (hlen == 0) {
        char q[96];
        fy_log(FERRY_LOG_ERROR, "redis: address %s is neither host:port nor /path/to/socket",
               fy_log_quote(q, sizeof q, addr, 64));
        return FERRY_EINVAL;
    }
    r->host = strndup(addr, hlen);
    r->port = (int)port;
    return r->host ? 0 : FERRY_ENOMEM;
}

int fy_redis_new(fy_redis **out, const fy_redis_cfg *cfg)
{
    *out = NULL;
    unsigned n = cfg->pool ? cfg->pool : 4;
    fy_redis *r = calloc(1, sizeof *r + n * sizeof r->conns[0]);
    if (!r)
        return FERRY_ENOMEM;
    int rc = parse_addr(r, cfg->addr);
    if (rc == 0 && cfg->password && *cfg->password && !(r->password = strdup(cfg->password)))
        rc = FERRY_ENOMEM;
    if (rc) {
        free(r->host);
        free(r->path);
        free(r);
        return rc;
    }
    r->db = cfg->db;
    r->meter = cfg->meter;
    r->connect_tv = tv_ms(cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1000);
    r->command_tv = tv_ms(cfg->command_timeout_ms ? cfg->command_timeout_ms : 1000);
    r->n = n;
    pthread_mutex_init(&r->script_lock, NULL);
    pthread_mutex_init(&r->note_lock, NULL);
    for (unsigned i = 0; i < n; i++)
        pthread_mutex_init(&r->conns[i].lock, NULL);
    *out = r;
    return 0;
}

void fy_redis_free(fy_redis *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->n; i++) {
        if (r->conns[i].c)
            redisFree(r->conns[i].c);
        pthread_mutex_destroy(&r->conns[i].lock);
    }
    pthread_mutex_destroy(&r->script_lock);
    pthread_mutex_destroy(&r->note_lock);
    if (r->password) {
        memset(r->password, 0, strlen(r->password));
        free(r->password);
    }
    free(r->host);
    free(r->path);
    free(r);
}

void fy_redis_note(fy_redis *r, ferry_log_level level, const char *fmt, ...)
{
    pthread_mutex_lock(&r->note_lock);
    if (r->nnotes < FY_REDIS_NOTES) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->notes[r->nnotes].msg, sizeof r->notes[0].msg, fmt, ap);
        va_end(ap);
        r->notes[r->nnotes++].level = level;
    } else {
        r->dropped++;
    }
    pthread_mutex_unlock(&r->note_lock);
}

void fy_redis_log_flush(fy_redis *r)
{
    pthread_mutex_lock(&r->note_lock);
    unsigned n = r->nnotes, dropped = r->dropped;
    __typeof__(r->notes) notes;
    memcpy(notes, r->notes, n * sizeof notes[0]);
    r->nnotes = r->dropped = 0;
    pthread_mutex_unlock(&r->note_lock);
    for (unsigned i = 0; i < n; i++)
        fy_log(notes[i].level, "%s", notes[i].msg);
    if (dropped)
        fy_log(FERRY_LOG_WARN, "redis: %u more log lines dropped", dropped);
}

/* Logs the loss of Redis once per outage; `what` never holds arguments or the password. */
static void went_down(fy_redis *r, const char *what)
{
    if (!atomic_exchange(&r->down, true))
        fy_redis_note(r, FERRY_LOG_ERROR, "redis: %s: %s (commands fail with FERRY_ESTORE until it "
                                "answers again)", r->path ? r->path : r->host, what);
}

/* Drops a connection that failed (`what`, as went_down); the next command reconnects. */
static void drop(fy_redis *r, conn *k, const char *what)
{
    went_down(r, what);
    if (k->c)
        redisFree(k->c);
    k->c = NULL;
}

static void came_back(fy_redis *r)
{
    if (atomic_exchange(&r->down, false))
        fy_redis_note(r, FERRY_LOG_WARN, "redis: %s answers again", r->path ? r->path : r->host);
}

/* One command on a connected context; drops the connection on an I/O or protocol error.
 * Returns the reply (maybe an error reply) or NULL. */
static redisReply *run(fy_redis *r, conn *k, int argc, const char **argv, const size_t *len)
{
    redisReply *rep = redisCommandArgv(k->c, argc, argv, len);
    if (!rep)
        drop(r, k, k->c->errstr[0] ? k->c->errstr : "connection lost");
    return rep;
}

/* Sends AUTH and SELECT on a fresh connection. false (and the connection dropped) if
 * either fails. */
static bool handshake(fy_redis *r, conn *k)
{
    char db[16];
    const char *auth[] = {"AUTH", r->password}, *sel[] = {"SELECT", db};
    const char *step[2] = {NULL, NULL};
    if (r->password)
        step[0] = "AUTH";
    if (r->db) {
        snprintf(db, sizeof db, "%d", r->db);
        step[1] = "SELECT";
    }
    for (int i = 0; i < 2; i++) {
        if (!step[i])
            continue;
        redisReply *rep = run(r, k, 2, i ? sel : auth, NULL);
        if (!rep)
            return false;
        bool ok = rep->type != REDIS_REPLY_ERROR;
        if (!ok) /* Redis's own message: it names no argument */
            drop(r, k, rep->str);
        freeReplyObject(rep);
        if (!ok)
            return false;
    }
    return true;
}

static bool connect_conn(fy_redis *r, conn *k)
{
    k->c = r->path ? redisConnectUnixWithTimeout(r->path, r->connect_tv)
                   : redisConnectWithTimeout(r->host, r->port, r->connect_tv);
    if (!k->c || k->c->err) {
        drop(r, k, k->c ? k->c->errstr : "out of memory");
        return false;
    }
    if (redisSetTimeout(k->c, r->command_tv) != REDIS_OK) {
        drop(r, k, "cannot set the command timeout");
        return false;
    }
    return handshake(r, k);
}

/* SIGPIPE blocked in this thread for a command, and one it raised consumed (redis.h). */
typedef struct {
    sigset_t old;
    bool was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g)
{
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
}

static void sigpipe_restore(sigpipe_guard *g)
{
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe, NULL, &zero) == -1 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Takes a connection, connected, with SIGPIPE blocked for the command; NULL (its lock
 * released) if it cannot connect. Every take is followed by a give. */
static conn *take(fy_redis *r, sigpipe_guard *g)
{
    sigpipe_block(g);
    conn *k = &r->conns[atomic_fetch_add(&r->next, 1) % r->n];
    pthread_mutex_lock(&k->lock);
    if (!k->c && !connect_conn(r, k)) {
        pthread_mutex_unlock(&k->lock);
        return NULL;
    }
    return k;
}

static void give(conn *k, sigpipe_guard *g)
{
    if (k)
        pthread_mutex_unlock(&k->lock);
    sigpipe_restore(g);
}

static void count_error(fy_redis *r)
{
    if (r->meter)
        atomic_fetch_add_explicit(&r->meter->errors, 1, memory_order_relaxed);
}

/* The time since `t0` (fy_mono_ns) as one round trip, when a command got its reply. */
static void count_rtt(fy_redis *r, uint64_t t0, bool replied)
{
    if (r->meter && replied) {
        uint64_t now = fy_mono_ns();
        fy_hist_observe(&r->meter->rtt, now > t0 ? now - t0 : 0);
    }
}

/* The answer for a reply: an error reply is freed and FERRY_ESTORE. */
static int answer(fy_redis *r, redisReply *rep, redisReply **out)
{
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        count_error(r);
    if (!rep)
        return FERRY_ESTORE;
    if (rep->type == REDIS_REPLY_ERROR) {
        char q[160];
        fy_redis_note(r, FERRY_LOG_WARN, "redis: error reply %s", fy_log_quote(q, sizeof q, rep->str, 120));
        freeReplyObject(rep);
        return FERRY_ESTORE;
    }
    came_back(r);
    *out = rep;
    return 0;
}

/* One command; `timed`: its round trip goes into the meter. */
static int command(fy_redis *r, bool timed, redisReply **reply, int argc, const char **argv,
                   const size_t *argvlen)
{
    *reply = NULL;
    sigpipe_guard g;
    conn *k = take(r, &g);
    uint64_t t0 = timed && r->meter ? fy_mono_ns() : 0;
    redisReply *rep = k ? run(r, k, argc, argv, argvlen) : NULL;
    if (timed)
        count_rtt(r, t0, rep != NULL);
    give(k, &g);
    return answer(r, rep, reply);
}

int fy_redis_command(fy_redis *r, redisReply **reply, int argc, const char **argv,
                     const size_t *argvlen)
{
    return command(r, true, reply, argc, argv, argvlen);
}

int fy_redis_command_blocking(fy_redis *r, redisReply **reply, int argc, const char **argv,
                              const size_t *argvlen)
{
    return command(r, false, reply, argc, argv, argvlen);
}

int fy_redis_script(fy_redis *r, const char *src)
{
    if (r->nscripts == FY_REDIS_SCRIPTS)
        return -1;
    r->script_src[r->nscripts] = src;
    return r->nscripts++;
}

/* The script's SHA1 into sha, loading it if this pool has not yet. false on failure. */
static bool script_sha(fy_redis *r, conn *k, int script, char sha[41])
{
    pthread_mutex_lock(&r->script_lock);
    memcpy(sha, r->script_sha[script], 41);
    pthread_mutex_unlock(&r->script_lock);
    if (sha[0])
        return true;
    const char *argv[] = {"SCRIPT", "LOAD", r->script_src[script]};
    redisReply *rep = run(r, k, 3, argv, NULL);
    bool ok = rep && rep->type == REDIS_REPLY_STRING && rep->len == 40;
    if (ok) {
        memcpy(sha, rep->str, 41);
        pthread_mutex_lock(&r->script_lock);
        memcpy(r->script_sha[script], sha, 41);
        pthread_mutex_unlock(&r->script_lock);
    }
    if (rep)
        freeReplyObject(rep);
    return ok;
}

/* EVALSHA, then EVAL on NOSCRIPT, on a taken connection. */
static redisReply *eval_on(fy_redis *r, conn *k, int script, int nkeys, int argc,
                           const char **argv, const size_t *argvlen)
{
    enum { MAX_ARGS = FY_REDIS_EVAL_ARGS };
    const char *a[MAX_ARGS + 3];
    size_t l[MAX_ARGS + 3];
    char sha[41], nk[16];
    if (argc > MAX_ARGS || !script_sha(r, k, script, sha))
        return NULL;
    snprintf(nk, sizeof nk, "%d", nkeys);
    a[0] = "EVALSHA", l[0] = 7;
    a[1] = sha, l[1] = 40;
    a[2] = nk, l[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        a[i + 3] = argv[i];
        l[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    redisReply *rep = run(r, k, argc + 3, a, l);
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(rep);
        a[0] = "EVAL", l[0] = 4;
        a[1] = r->script_src[script], l[1] = strlen(a[1]);
        rep = run(r, k, argc + 3, a, l);
    }
    return rep;
}

int fy_redis_eval(fy_redis *r, int script, redisReply **reply, int nkeys, int argc,
                  const char **argv, const size_t *argvlen)
{
    *reply = NULL;
    sigpipe_guard g;
    conn *k = take(r, &g);
    uint64_t t0 = r->meter ? fy_mono_ns() : 0;
    redisReply *rep = k ? eval_on(r, k, script, nkeys, argc, argv, argvlen) : NULL;
    count_rtt(r, t0, rep != NULL);
    give(k, &g);
    return answer(r, rep, reply);
}

/* Appends the n commands and reads their n replies. false on a connection failure or an
 * error reply (the connection is dropped then: replies may still be in flight). */
static bool pipeline_on(fy_redis *r, conn *k, size_t n, int argc, const char **argv,
                        const size_t *argvlen)
{
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommandArgv(k->c, argc, argv + i * (size_t)argc,
                                   argvlen ? argvlen + i * (size_t)argc : NULL) != REDIS_OK)
            goto fail;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        void *rep;
        if (redisGetReply(k->c, &rep) != REDIS_OK)
            goto fail;
        ok &= ((redisReply *)rep)->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
    }
    return ok;
fail:
    drop(r, k, k->c->errstr[0] ? k->c->errstr : "connection lost");
    return false;
}

int fy_redis_pipeline(fy_redis *r, size_t n, int argc, const char **argv,
                      const size_t *argvlen)
{
    if (n == 0)
        return 0;
    sigpipe_guard g;
    conn *k = take(r, &g);
    uint64_t t0 = r->meter ? fy_mono_ns() : 0;
    bool ok = k && pipeline_on(r, k, n, argc, argv, argvlen);
    count_rtt(r, t0, ok);
    give(k, &g);
    if (ok)
        came_back(r);
    else
        count_error(r);
    return ok ? 0 : FERRY_ESTORE;
}
