/* The server the JavaScript tests run against: ferry mounted at /ferry, static files from
 * argv[1], and test-only controls. Prints "port N" once it listens.
 *   POST /control/publish?n=N&from=K&ms=D   publish {"i":K..K+N-1} to "news", D ms apart
 *   POST /control/drop                      close every connection, keep the sessions
 *   POST /control/ws?on=0|1                 WebSocket off or on
 *   GET  /control/received                  the client messages the application got
 *   GET  /control/refused                   {"origin": N, "auth": N}: requests refused so far
 *   GET  /control/sessions                  {"attached": N, "detached": N, "ended": N}
 *                                           for their Origin, handshakes for their token
 *   POST /control/drain?spread=MS           ferry_mount_drain on a thread (deadline MS +
 *                                           10 s), then the mount freed and mounted anew,
 *                                           as a server that stops and starts again
 *   GET  /control/drained                   {"rc": the drain's result, or null before}
 * Environment: FERRY_WINDOW_MS, FERRY_HB_MS, FERRY_TIMEOUT_MS override those options;
 * FERRY_ORIGINS sets allowed_origins (default "*"). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_civetweb.h"

static ferry_mount *mount;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *received;
/* The mount is replaced after a drain: controls use it under mount_lock. */
static pthread_mutex_t mount_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mg_context *ctx;
static ferry_mount_options mo;
static ferry_callbacks cb;
static pthread_t drainer;
static bool drain_begun;
static int drain_rc = 1; /* 1: not done */

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    ferry_session_subscribe(s, "news");
}

static void on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    (void)why;
    on_open(s, ud);
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&lock);
    json_array_append(received, data);
    pthread_mutex_unlock(&lock);
    if (json_is_true(json_object_get(data, "echo"))) {
        char *text = json_dumps(data, JSON_COMPACT);
        ferry_session_send(s, text, strlen(text));
        free(text);
    }
}

static int on_subscribe(ferry_session *s, const char *topic, void *ud)
{
    (void)s;
    (void)ud;
    return strncmp(topic, "public/", 7) == 0 ? 0 : -1;
}

/* The token "bad" is refused; any other token is the identity. */
static int on_auth(const ferry_auth *a, char identity[FERRY_IDENTITY_MAX], const char **reason,
                   void *ud)
{
    (void)ud;
    if (a->token && strcmp(a->token, "bad") == 0) {
        *reason = "bad token";
        return 1;
    }
    snprintf(identity, FERRY_IDENTITY_MAX, "%s", a->token ? a->token : "");
    return 0;
}

static long qnum(const struct mg_request_info *ri, const char *name, long def)
{
    char v[32];
    const char *q = ri->query_string ? ri->query_string : "";
    return mg_get_var(q, strlen(q), name, v, sizeof v) > 0 ? atol(v) : def;
}

static int reply(struct mg_connection *conn, const char *body)
{
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n%s", strlen(body), body);
    return 200;
}

static void *drain_main(void *arg)
{
    ferry_drain_options *o = arg;
    int rc = ferry_mount_drain(mount, o);
    pthread_mutex_lock(&mount_lock);
    ferry_mount_free(mount);
    if (ferry_mount_new(&mount, ctx, &mo, &cb, NULL) != 0)
        exit(1);
    drain_rc = rc;
    pthread_mutex_unlock(&mount_lock);
    return NULL;
}

static int control_locked(struct mg_connection *conn, const struct mg_request_info *ri,
                          const char *what);

static int control(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *what = ri->local_uri + strlen("/control/");
    if (strcmp(what, "drain") == 0) {
        static ferry_drain_options o;
        if (!drain_begun) {
            ferry_drain_options_init(&o);
            o.spread_ms = (uint32_t)qnum(ri, "spread", 0);
            o.deadline_ms = o.spread_ms + 10000;
            drain_begun = pthread_create(&drainer, NULL, drain_main, &o) == 0;
        }
        return reply(conn, "{}");
    }
    pthread_mutex_lock(&mount_lock);
    int r = control_locked(conn, ri, what);
    pthread_mutex_unlock(&mount_lock);
    return r;
}

static int control_locked(struct mg_connection *conn, const struct mg_request_info *ri,
                          const char *what)
{
    if (strcmp(what, "drained") == 0) {
        char body[32];
        if (drain_rc == 1)
            snprintf(body, sizeof body, "{\"rc\":null}");
        else
            snprintf(body, sizeof body, "{\"rc\":%d}", drain_rc);
        return reply(conn, body);
    }
    if (strcmp(what, "publish") == 0) {
        long n = qnum(ri, "n", 1), from = qnum(ri, "from", 1), ms = qnum(ri, "ms", 0);
        for (long i = from; i < from + n; i++) {
            char m[64];
            int len = snprintf(m, sizeof m, "{\"i\":%ld}", i);
            ferry_hub_publish(ferry_mount_hub(mount), "news", m, (size_t)len, NULL);
            if (ms)
                usleep((useconds_t)ms * 1000);
        }
        return reply(conn, "{}");
    }
    if (strcmp(what, "drop") == 0) {
        ferry_mount_drop_connections(mount);
        return reply(conn, "{}");
    }
    if (strcmp(what, "ws") == 0) {
        ferry_mount_set_websocket(mount, (int)qnum(ri, "on", 1));
        return reply(conn, "{}");
    }
    if (strcmp(what, "refused") == 0) {
        char body[96];
        ferry_hub *hub = ferry_mount_hub(mount);
        snprintf(body, sizeof body, "{\"origin\":%llu,\"auth\":%llu}",
                 (unsigned long long)ferry_hub_limit_hits(hub, FERRY_LIMIT_ORIGIN),
                 (unsigned long long)ferry_hub_limit_hits(hub, FERRY_LIMIT_AUTH));
        return reply(conn, body);
    }
    if (strcmp(what, "sessions") == 0) {
        char body[96];
        size_t att, det, ended;
        ferry_hub_counts(ferry_mount_hub(mount), &att, &det, &ended);
        snprintf(body, sizeof body, "{\"attached\":%zu,\"detached\":%zu,\"ended\":%zu}", att, det,
                 ended);
        return reply(conn, body);
    }
    if (strcmp(what, "received") == 0) {
        pthread_mutex_lock(&lock);
        char *text = json_dumps(received, JSON_COMPACT);
        pthread_mutex_unlock(&lock);
        int r = reply(conn, text);
        free(text);
        return r;
    }
    return 0;
}

static uint32_t env_ms(const char *name, uint32_t def)
{
    const char *v = getenv(name);
    return v ? (uint32_t)atol(v) : def;
}

int main(int argc, char **argv)
{
    received = json_array();
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = "127.0.0.1:0";
    so.max_connections = 200;
    so.document_root = argc > 1 ? argv[1] : NULL;
    if (ferry_server_start(&ctx, &so) != FERRY_OK)
        return 1;
    static ferry_options core;
    ferry_options_init(&core);
    ferry_mount_options_init(&mo);
    mo.core = &core;
    mo.max_connections = 200;
    mo.tick_ms = 100;
    /* The tests reach it through proxies too; FERRY_ORIGINS tests a refused Origin. */
    mo.allowed_origins = getenv("FERRY_ORIGINS") ? getenv("FERRY_ORIGINS") : "*";
    core.resume_burst = 1000; /* every test client resumes from 127.0.0.1 */
    core.resume_window_ms = env_ms("FERRY_WINDOW_MS", core.resume_window_ms);
    core.heartbeat_ms = env_ms("FERRY_HB_MS", core.heartbeat_ms);
    core.heartbeat_timeout_ms = env_ms("FERRY_TIMEOUT_MS", core.heartbeat_timeout_ms);
    cb = (ferry_callbacks){.size = sizeof cb, .on_open = on_open, .on_reset = on_reset,
                           .on_message = on_message, .on_subscribe = on_subscribe,
                           .on_auth = on_auth};
    if (ferry_mount_new(&mount, ctx, &mo, &cb, NULL) != 0)
        return 1;
    mg_set_request_handler(ctx, "/control/", control, NULL);
    printf("port %d\n", ferry_server_port(ctx));
    fflush(stdout);
    /* Runs until stdin closes: the test that started it is gone. */
    char buf[64];
    while (fread(buf, 1, sizeof buf, stdin) > 0)
        ;
    if (drain_begun)
        pthread_join(drainer, NULL);
    ferry_mount_free(mount);
    ferry_server_stop(ctx);
    json_decref(received);
    return 0;
}
