/* A ferry node for the load-balancer tests (tests/lb): ferry on 127.0.0.1 and a free port
 * (printed as "port N"), behind nginx or HAProxy, with a page at "/" and a few controls.
 *
 * Every session is subscribed to "lb". on_auth keeps, for each token, the client address
 * it saw (the mount's real_ip_header is X-Real-IP), and civetweb's begin_request counts,
 * per session ID, the long-poll requests that carry credentials, before ferry sees them.
 *
 *   GET  /                       an HTML page naming the node
 *   GET  /control/info           {"node":N,"peers":{token:addr},"lp":{sid:count},
 *                                 "opened":K,"resumes":R,"attached":A}
 *   POST /control/publish?n=K    publishes {"node":N,"i":1..K} to "lb"
 *   POST /control/drain?on=0|1   ferry_mount_set_draining
 *   POST /control/shutdown?spread=MS  ferry_mount_drain on a thread of its own (deadline 30 s)
 *
 * It exits when its stdin closes.
 *
 * Environment: LB_NODE (the node's name, "node"), LB_HB_MS, LB_TIMEOUT_MS and LB_POLL_MS
 * (ferry's heartbeat, heartbeat timeout and poll hold, in milliseconds), and LB_REDIS: a
 * Redis address that makes the node a cluster member named LB_NODE (ferry_cluster.h), with
 * LB_REDIS_PREFIX its keys' prefix. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_civetweb.h"
#include "ferry_cluster.h"

static ferry_mount *mount;
static const char *node = "node";

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *peers; /* token -> the address on_auth saw */
static json_t *lp;    /* session ID -> long-poll requests with credentials */
static long long published;
static pthread_t drainer;
static bool draining;

static void *drain_main(void *arg)
{
    ferry_drain_options *o = arg;
    ferry_mount_drain(mount, o);
    return NULL;
}

static int on_auth(const ferry_auth *a, char identity[FERRY_IDENTITY_MAX], const char **reason,
                   void *ud)
{
    (void)reason;
    (void)ud;
    const char *token = a->token ? a->token : "";
    pthread_mutex_lock(&log_lock);
    json_object_set_new(peers, token, json_string(a->peer_addr ? a->peer_addr : ""));
    pthread_mutex_unlock(&log_lock);
    snprintf(identity, FERRY_IDENTITY_MAX, "%s", token);
    return 0;
}

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    ferry_session_subscribe(s, "lb");
}

static void on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    (void)why;
    on_open(s, ud);
}

/* Counts a long-poll request that names its session: a poll or send ("Authorization:
 * Bearer <sid>:<secret>") or a resume handshake ("?sid=<sid>"). */
static int count_request(struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *auth = mg_get_header(conn, "Authorization");
    const char *q = ri->query_string ? ri->query_string : "";
    char sid[64];
    if (strcmp(ri->local_uri, "/ferry/lp") != 0)
        return 0;
    if (auth && strncmp(auth, "Bearer ", 7) == 0) {
        size_t n = strcspn(auth + 7, ":");
        snprintf(sid, sizeof sid, "%.*s", (int)(n < sizeof sid ? n : sizeof sid - 1), auth + 7);
    } else if (mg_get_var(q, strlen(q), "sid", sid, sizeof sid) <= 0) {
        return 0;
    }
    pthread_mutex_lock(&log_lock);
    json_t *c = json_object_get(lp, sid);
    json_object_set_new(lp, sid, json_integer(c ? json_integer_value(c) + 1 : 1));
    pthread_mutex_unlock(&log_lock);
    return 0; /* on to ferry */
}

static int reply(struct mg_connection *conn, const char *ctype, const char *body)
{
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-store\r\n\r\n%s", ctype, strlen(body), body);
    return 200;
}

static int page(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    if (strcmp(mg_get_request_info(conn)->local_uri, "/") != 0)
        return 0;
    char html[256];
    snprintf(html, sizeof html, "<!doctype html><title>ferry %s</title><p>node %s</p>\n", node,
             node);
    return reply(conn, "text/html", html);
}

static long qnum(const struct mg_request_info *ri, const char *name, long def)
{
    char v[32];
    const char *q = ri->query_string ? ri->query_string : "";
    return mg_get_var(q, strlen(q), name, v, sizeof v) > 0 ? atol(v) : def;
}

static int info(struct mg_connection *conn)
{
    ferry_stats st = {.size = sizeof st};
    ferry_hub_stats(ferry_mount_hub(mount), &st);
    pthread_mutex_lock(&log_lock);
    json_t *o = json_pack("{sssOsOsIsIsI}", "node", node, "peers", peers, "lp", lp, "opened",
                          (json_int_t)st.sessions_opened, "resumes", (json_int_t)st.resumes,
                          "attached", (json_int_t)st.attached);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL; /* under the lock: shared objects */
    pthread_mutex_unlock(&log_lock);
    json_decref(o);
    if (!text)
        return 500;
    int r = reply(conn, "application/json", text);
    free(text);
    return r;
}

static void publish(long n)
{
    for (long k = 0; k < n; k++) {
        char m[160];
        int len = snprintf(m, sizeof m, "{\"node\":\"%s\",\"i\":%lld}", node, ++published);
        ferry_hub_publish(ferry_mount_hub(mount), "lb", m, (size_t)len, NULL);
    }
}

static int control(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *what = ri->local_uri + strlen("/control/");
    if (strcmp(what, "info") == 0)
        return info(conn);
    if (strcmp(what, "publish") == 0)
        publish(qnum(ri, "n", 1));
    else if (strcmp(what, "drain") == 0)
        ferry_mount_set_draining(mount, (int)qnum(ri, "on", 1));
    else if (strcmp(what, "shutdown") == 0 && !draining) {
        static ferry_drain_options o;
        ferry_drain_options_init(&o);
        o.spread_ms = (uint32_t)qnum(ri, "spread", 0);
        draining = pthread_create(&drainer, NULL, drain_main, &o) == 0;
    }
    else
        return 0;
    return reply(conn, "application/json", "{}");
}

static long env_ms(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? atol(v) : def;
}

/* A context with ferry_server_start's settings, and begin_request counting long-polls. */
static struct mg_context *start(void)
{
    const char *opts[] = {"listening_ports", "127.0.0.1:0", "num_threads", "100",
                          "tcp_nodelay", "1", "enable_keep_alive", "yes",
                          "keep_alive_timeout_ms", "5000", "request_timeout_ms", "10000",
                          "websocket_timeout_ms", "1000", "access_control_allow_methods", "",
                          "access_control_allow_origin", "", NULL};
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    cbs.begin_request = count_request;
    mg_init_library(0);
    return mg_start(&cbs, NULL, opts);
}

/* With LB_REDIS, a cluster member named after the node; NULL without. Exits on failure. */
static ferry_cluster *cluster(void)
{
    if (!getenv("LB_REDIS"))
        return NULL;
    ferry_cluster_options co;
    ferry_cluster_options_init(&co);
    co.redis = getenv("LB_REDIS");
    co.node = node;
    if (getenv("LB_REDIS_PREFIX"))
        co.prefix = getenv("LB_REDIS_PREFIX");
    ferry_cluster *c;
    if (ferry_cluster_new(&c, &co) != FERRY_OK)
        exit(1);
    return c;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("LB_NODE"))
        node = getenv("LB_NODE");
    peers = json_object();
    lp = json_object();
    struct mg_context *ctx = start();
    if (!ctx)
        return 1;
    ferry_options core;
    ferry_options_init(&core);
    core.cluster = cluster();
    core.heartbeat_ms = (uint32_t)env_ms("LB_HB_MS", core.heartbeat_ms);
    core.heartbeat_timeout_ms = (uint32_t)env_ms("LB_TIMEOUT_MS", core.heartbeat_timeout_ms);
    core.resume_burst = 100000; /* every client comes from one address */
    core.resume_rate = 100000;
    core.max_sessions_per_identity = 0;
    ferry_mount_options mo;
    ferry_mount_options_init(&mo);
    mo.core = &core;
    mo.max_connections = 64;
    mo.tick_ms = 100;
    mo.poll_timeout_ms = (uint32_t)env_ms("LB_POLL_MS", mo.poll_timeout_ms);
    mo.real_ip_header = "X-Real-IP";
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open, .on_reset = on_reset,
                          .on_auth = on_auth};
    int rc = ferry_mount_new(&mount, ctx, &mo, &cb, NULL);
    if (rc != FERRY_OK) {
        fprintf(stderr, "lb server: %s\n", ferry_strerror(rc));
        ferry_server_stop(ctx);
        return 1;
    }
    mg_set_request_handler(ctx, "/control/", control, NULL);
    mg_set_request_handler(ctx, "/", page, NULL);
    printf("port %d\n", ferry_server_port(ctx));
    fflush(stdout);

    /* Runs until stdin closes: whoever started it is done with it, or gone. */
    char buf[64];
    while (read(0, buf, sizeof buf) > 0)
        continue;
    if (draining)
        pthread_join(drainer, NULL);
    ferry_mount_free(mount);
    ferry_cluster_free(core.cluster);
    ferry_server_stop(ctx);
    json_decref(peers);
    json_decref(lp);
    return 0;
}
