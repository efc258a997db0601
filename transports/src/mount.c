#include "mount.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

const char *fy_conn_header(void *ctx, const char *name)
{
    return mg_get_header(ctx, name);
}

const char *fy_peer_addr(const ferry_mount *m, const struct mg_connection *conn)
{
    const char *ip = m->real_ip ? mg_get_header(conn, m->real_ip) : NULL;
    return ip ? ip : mg_get_request_info(conn)->remote_addr;
}

void fy_deadline(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

bool fy_conn_acquire(ferry_mount *m)
{
    size_t n = atomic_fetch_add(&m->conns, 1);
    if (n < m->opt.max_connections)
        return true;
    atomic_fetch_sub(&m->conns, 1);
    ferry_hub_count_limit(m->hub, FERRY_LIMIT_CONNECTIONS);
    return false;
}

void fy_conn_release(ferry_mount *m)
{
    atomic_fetch_sub(&m->conns, 1);
}

const fy_refusal *fy_refusal_of(ferry_link_end e)
{
    static const fy_refusal ended = {1000, "session ended", 400};
    static const fy_refusal table[] = {
        [FERRY_LINK_SUPERSEDED] = {4000, "session resumed elsewhere", 400},
        [FERRY_LINK_TIMEOUT] = {4001, "heartbeat timeout", 400},
        [FERRY_LINK_STALLED] = {4002, "not reading", 400},
        [FERRY_LINK_REFUSED] = {1013, "at capacity", 503},
        [FERRY_LINK_UNAUTHORIZED] = {4003, "unauthorized", 401},
        [FERRY_LINK_THROTTLED] = {1008, "too many resumes", 429},
        [FERRY_LINK_RESTART] = {1012, "service restart", 503},
    };
    bool known = (size_t)e < sizeof table / sizeof table[0] && table[e].close_code;
    return known ? &table[e] : &ended;
}

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

bool fy_http_reply(struct mg_connection *conn, const ferry_mount *m, int status,
                   const char *extra, const char *ctype, const char *body, size_t len)
{
    char cors[512] = "";
    const char *origin = mg_get_header(conn, "Origin");
    if (origin && strlen(origin) < 400 && fy_origin_allowed(m, conn))
        snprintf(cors, sizeof cors, "Access-Control-Allow-Origin: %s\r\n", origin);
    /* One write for headers and body: a response is never split by a concurrent writer. */
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "Cache-Control: no-store\r\n"
                      "Vary: Origin\r\n"
                      "%s%s%s\r\n",
                      status, status_text(status), ctype, len, cors,
                      status == 503 || status == 429 ? "Retry-After: 1\r\n" : "",
                      extra ? extra : "");
    if (hl < 0 || (size_t)hl >= sizeof head)
        return false;
    size_t blen = body ? len : 0;
    char *msg = malloc((size_t)hl + blen);
    if (!msg)
        return false;
    memcpy(msg, head, (size_t)hl);
    if (blen)
        memcpy(msg + hl, body, blen);
    int w = mg_write(conn, msg, (size_t)hl + blen);
    free(msg);
    return w == (int)((size_t)hl + blen);
}

bool fy_http_json(struct mg_connection *conn, const ferry_mount *m, int status,
                  const char *extra, const ferry_buf *b)
{
    return fy_http_reply(conn, m, status, extra, "application/json", b->data ? b->data : "",
                         b->len);
}

bool fy_http_answer(struct mg_connection *conn, const ferry_mount *m, int status,
                    const char *extra, int code, const char *text)
{
    ferry_buf b = {0};
    ferry_answer_encode(&b, code, text);
    bool ok = fy_http_json(conn, m, status, extra, &b);
    ferry_buf_release(&b);
    return ok;
}

bool fy_http_get_or_head(struct mg_connection *conn, const ferry_mount *m, bool *head)
{
    const char *method = mg_get_request_info(conn)->request_method;
    *head = strcmp(method, "HEAD") == 0;
    if (*head || strcmp(method, "GET") == 0)
        return true;
    fy_http_reply(conn, m, 405, "Allow: GET, HEAD\r\n", "text/plain", "", 0);
    return false;
}

static int js_handler(struct mg_connection *conn, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    bool head;
    int status = 405;
    if (fy_http_get_or_head(conn, m, &head)) {
        status = 200;
        bool mjs = strcmp(mg_get_request_info(conn)->local_uri, m->mjs_path) == 0;
        const char *body = mjs ? m->mjs : fy_ferry_js;
        size_t len = mjs ? m->mjs_len : (size_t)(fy_ferry_js_end - fy_ferry_js);
        fy_http_reply(conn, m, 200, NULL, "application/javascript; charset=utf-8",
                      head ? NULL : body, len);
    }
    fy_mount_leave(m);
    return status;
}

static void *timer_main(void *arg)
{
    ferry_mount *m = arg;
    pthread_mutex_lock(&m->tlock);
    while (!atomic_load(&m->stopping)) {
        struct timespec ts;
        fy_deadline(&ts, m->opt.tick_ms);
        pthread_cond_timedwait(&m->tcond, &m->tlock, &ts);
        if (atomic_load(&m->stopping))
            break;
        pthread_mutex_unlock(&m->tlock);
        ferry_hub_tick(m->hub);
        fy_lp_reap(m);
        fy_ws_reap(m);
        pthread_mutex_lock(&m->tlock);
    }
    pthread_mutex_unlock(&m->tlock);
    return NULL;
}

static void mount_free(ferry_mount *m)
{
    ferry_hub_free(m->hub);
    fy_loop_free(m);
    pthread_mutex_destroy(&m->wlock);
    pthread_cond_destroy(&m->wcond);
    pthread_cond_destroy(&m->ws_gone);
    pthread_mutex_destroy(&m->lp_lock);
    pthread_cond_destroy(&m->lp_idle);
    pthread_mutex_destroy(&m->tlock);
    pthread_cond_destroy(&m->tcond);
    pthread_mutex_destroy(&m->olog_lock);
    free(m->writers);
    free(m->prefix);
    free(m->origins);
    free(m->real_ip);
    free(m->metrics_path);
    free(m->ws_path);
    free(m->lp_path);
    free(m->js_path);
    free(m->mjs_path);
    free(m->health_path);
    free(m->mjs);
    free(m);
}

#ifndef PR_FUTEX_HASH
#define PR_FUTEX_HASH 78
#define PR_FUTEX_HASH_SET_SLOTS 1
#define PR_FUTEX_HASH_GET_SLOTS 2
#endif

/* Every held poll is a civetweb thread asleep on its own condition variable. Since Linux
 * 6.17 a process gets a private futex hash sized by CPUs, not threads (16 slots on two
 * CPUs), so 10,000 sleepers share 16 chains and every wake walks hundreds of entries: at
 * 10,000 long-poll sessions that cost 81 % of the server's CPU (docs/BENCHMARKS.md). Grow
 * it to about two slots per connection; never shrink it, and leave a process that chose
 * the global hash alone. Older kernels refuse the call, which changes nothing. */
static void size_futex_hash(size_t connections)
{
    int now = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, 0, 0, 0);
    if (now <= 0)
        return;
    unsigned long want = 16;
    while (want < 2 * connections && want < 65536)
        want *= 2;
    if (want > (unsigned long)now)
        prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, want, 0, 0);
}

/* The mount's own copies of its paths and settings, and the module form of the client.
 * False if any allocation failed (mount_free releases what was made). */
static bool mount_copy_settings(ferry_mount *m, const ferry_mount_options *o)
{
    m->prefix = strdup(o->prefix);
    m->origins = o->allowed_origins ? strdup(o->allowed_origins) : NULL;
    m->real_ip = o->real_ip_header ? strdup(o->real_ip_header) : NULL;
    m->metrics_path = o->metrics_path ? strdup(o->metrics_path) : NULL;
    m->ws_path = m->prefix ? join(m->prefix, "/ws") : NULL;
    m->lp_path = m->prefix ? join(m->prefix, "/lp") : NULL;
    m->js_path = m->prefix ? join(m->prefix, "/ferry.js") : NULL;
    m->mjs_path = m->prefix ? join(m->prefix, "/ferry.mjs") : NULL;
    m->health_path = m->prefix ? join(m->prefix, "/health") : NULL;
    /* The module is the same source: as a module it sets globalThis.ferry, then exports it. */
    static const char exports[] = "\nexport default globalThis.ferry;\n"
                                  "export const connect = globalThis.ferry.connect;\n";
    size_t jl = (size_t)(fy_ferry_js_end - fy_ferry_js);
    m->mjs = malloc(jl + sizeof exports);
    if (m->mjs) {
        memcpy(m->mjs, fy_ferry_js, jl);
        memcpy(m->mjs + jl, exports, sizeof exports);
        m->mjs_len = jl + sizeof exports - 1;
    }
    m->writers = calloc(o->writer_threads, sizeof *m->writers);
    return m->prefix && (!o->allowed_origins || m->origins) && (!o->real_ip_header || m->real_ip) &&
           (!o->metrics_path || m->metrics_path) && m->ws_path && m->lp_path && m->js_path &&
           m->mjs_path && m->health_path && m->mjs && m->writers;
}

static void mount_init_locks(ferry_mount *m)
{
    pthread_mutex_init(&m->wlock, NULL);
    pthread_cond_init(&m->wcond, NULL);
    pthread_cond_init(&m->ws_gone, NULL);
    pthread_mutex_init(&m->lp_lock, NULL);
    pthread_cond_init(&m->lp_idle, NULL);
    pthread_mutex_init(&m->tlock, NULL);
    pthread_cond_init(&m->tcond, NULL);
    pthread_mutex_init(&m->olog_lock, NULL);
}

int ferry_mount_new(ferry_mount **out, struct mg_context *ctx, const ferry_mount_options *opt,
                    const ferry_callbacks *cb, void *ud)
{
    if (!out) {
        ferry_log(FERRY_LOG_ERROR, "ferry_mount_new: out is NULL");
        return FERRY_EINVAL;
    }
    ferry_mount_options full;
    ferry_options core;
    if (fy_mount_options_load(&full, &core, opt) || fy_mount_options_check(ctx, &full))
        return FERRY_EINVAL;
    const ferry_mount_options *o = &full;

    ferry_mount *m = calloc(1, sizeof *m);
    if (!m) {
        ferry_log(FERRY_LOG_ERROR, "ferry_mount_new: out of memory");
        return FERRY_ENOMEM;
    }
    size_futex_hash(o->max_connections);
    m->ctx = ctx;
    m->opt = *o;
    m->core = core;
    m->opt.core = &m->core;
    bool copied = mount_copy_settings(m, o);
    mount_init_locks(m);
    int rc = FERRY_ENOMEM;
    if (!copied || (rc = ferry_hub_new(&m->hub, &m->core, cb, ud)) != 0) {
        mount_free(m);
        if (rc == 0 || rc == FERRY_ENOMEM)
            ferry_log(FERRY_LOG_ERROR, "ferry_mount_new: out of memory");
        return rc ? rc : FERRY_ENOMEM;
    }
    atomic_store_explicit(&m->published, true, memory_order_release);
    if ((rc = fy_ws_start(m)) != 0) {
        mount_free(m);
        ferry_log(FERRY_LOG_ERROR, "ferry_mount_new: cannot start its writer threads");
        return rc;
    }
    if (pthread_create(&m->timer, NULL, timer_main, m) != 0) {
        atomic_store(&m->stopping, true);
        fy_ws_stop(m);
        mount_free(m);
        ferry_log(FERRY_LOG_ERROR, "ferry_mount_new: cannot start its timer thread");
        return FERRY_ENOMEM;
    }
    fy_lp_start(m);
    mg_set_request_handler(ctx, m->js_path, js_handler, m);
    mg_set_request_handler(ctx, m->mjs_path, js_handler, m);
    mg_set_request_handler(ctx, m->health_path, fy_health_handler, m);
    if (m->metrics_path)
        mg_set_request_handler(ctx, m->metrics_path, fy_metrics_handler, m);
    *out = m;
    return 0;
}

ferry_hub *ferry_mount_hub(ferry_mount *m)
{
    return m ? m->hub : NULL;
}

void ferry_mount_set_websocket(ferry_mount *m, int on)
{
    if (!m)
        return;
    atomic_store(&m->ws_off, !on);
    if (!on)
        fy_ws_close_all(m, 1012, "websocket disabled");
}

void ferry_mount_set_draining(ferry_mount *m, int on)
{
    if (m)
        atomic_store(&m->draining, on != 0);
}

void ferry_mount_drop_connections(ferry_mount *m)
{
    if (!m)
        return;
    fy_ws_close_all(m, 1012, "service restart");
    fy_lp_drop_all(m);
}

void ferry_mount_free(ferry_mount *m)
{
    if (!m)
        return;
    mg_set_request_handler(m->ctx, m->js_path, NULL, NULL);
    mg_set_request_handler(m->ctx, m->mjs_path, NULL, NULL);
    mg_set_request_handler(m->ctx, m->health_path, NULL, NULL);
    if (m->metrics_path)
        mg_set_request_handler(m->ctx, m->metrics_path, NULL, NULL);
    atomic_store(&m->stopping, true);
    /* Sessions end first, while their connections are open: each client is given its
     * close "shutdown" frame (a held poll answers with it; a WebSocket gets it, then 1000). */
    ferry_hub_shutdown(m->hub);
    fy_lp_stop(m);  /* ends held polls, waits for the handler to be idle, frees links */
    bool ws_done = fy_ws_stop(m); /* closes WebSockets, waits for their close handlers */
    pthread_mutex_lock(&m->tlock);
    pthread_cond_signal(&m->tcond);
    pthread_mutex_unlock(&m->tlock);
    pthread_join(m->timer, NULL);
    /* A refused upgrade gets no close handler: wait out callbacks still running. A worker
     * that looked the handler up before it was removed but has not yet entered it is the
     * one case civetweb 1.15 gives no way to wait for (see docs/TRANSPORTS.md). */
    while (atomic_load(&m->busy))
        usleep(1000);
    if (!ws_done) {
        /* civetweb may still call back into a connection it never closed: keep the mount's
         * memory valid rather than risk a use after free. */
        ferry_log(FERRY_LOG_ERROR, "ferry_mount_free: WebSockets still open 30 s after unmount; "
                                "the mount is not freed");
        return;
    }
    mount_free(m);
}
