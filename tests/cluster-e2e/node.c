/* A ferry cluster node for the end-to-end cluster tests (tests/cluster-e2e): civetweb on
 * 127.0.0.1 (a free port, printed as "port N"), a mount whose hub is a cluster member, and
 * an application that keeps what it saw durably in Redis, because a node killed with
 * kill -9 takes its memory with it.
 *
 *   a node (the default) serves clients: every new session (on_open, on_reset) first gets
 *       {"start":K} on its own, K being one more than the last stream number published
 *       when the session subscribed, then the stream topic "stream"; every client message
 *       {"c":id,"n":N} is appended to the Redis list <prefix>app:log:<id> as "N", or "N!"
 *       when ferry says it may have been handed over before
 *       (ferry_session_message_repeated); with "slow":ms the application then takes that
 *       long over it
 *   the publisher (E2E_ROLE=publisher) serves no clients: it publishes {"i":k} to "stream",
 *       k = 1, 2, ... counting only publishes that returned FERRY_OK, and writes k to
 *       <prefix>app:published after each
 *
 * The start marker is a lower bound: K - 1 is read before the subscription, so nothing up to
 * it can arrive, but a publish that lands between the read and the subscription is not
 * delivered either. The tests take a session's first stream number as its start, and check
 * that it is at most a few publishes past K.
 *
 *   GET  /control/log             {"published":k,"failed":F,"clients":{id:["N","N!",...]},
 *                                  "resets":{id:[reason,...]},"app_errors":E} (any node:
 *                                  it reads Redis)
 *   GET  /control/stats           this node's name, sessions by state, sessions opened,
 *                                 resumes, messages in, resumes answered unknown or forked
 *   POST /control/publish?on=0|1  pause or resume the stream (publisher)
 *   POST /control/stop            exit (so does closing stdin)
 *
 * SIGTERM drains the node (ferry_mount_drain with E2E_DRAIN_NOTICE_MS, E2E_DRAIN_SPREAD_MS
 * and E2E_DRAIN_DEADLINE_MS: 0, 1000 and 10000), then it exits as on stop. E2E_PORT: the
 * port to listen on (0, the default: any free one), so that a node restarts where it was.
 *
 * Environment: E2E_REDIS (host:port, required), E2E_NODE (the node name, required),
 * E2E_PREFIX (the key prefix, "e2e:"), E2E_PUB_MS (5, ms between stream messages), and
 * E2E_HB_MS, E2E_TIMEOUT_MS, E2E_WINDOW_MS, E2E_STALL_MS, E2E_TOMBSTONE_MS, E2E_POLL_MS,
 * E2E_TICK_MS for ferry's timers (tests/lib/test_app.h, test_app_options). */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry_civetweb.h"
#include "ferry_cluster.h"
#include "test_app.h"

/* The mount, set once it exists and cleared before it is freed, under control_lock for the
 * control endpoint (civetweb's threads, which outlive the mount); the publisher thread
 * starts after it is set and is joined before it is cleared. */
static pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;
static ferry_mount *mount;
static const char *prefix;
/* Held across a publish and the write of its k, so that pausing waits for one under way. */
static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int publishing = 1;
static atomic_int stopping;
static atomic_int terminated;     /* SIGTERM: drain, then stop */
static atomic_llong published;    /* the publisher's last k published OK */
static atomic_llong publish_failed;
static atomic_llong app_errors;   /* Redis commands of the application that failed */

/* The application's own Redis connection (not ferry's), one for the process. */
static pthread_mutex_t app_lock = PTHREAD_MUTEX_INITIALIZER;
static redisContext *app_redis;
static const char *redis_host;
static int redis_port;

/* One command, under the lock, reconnecting once if the connection failed. The reply is
 * the caller's; NULL (counted) when Redis could not be reached or answered an error. */
static redisReply *app_cmd(int argc, const char **argv)
{
    pthread_mutex_lock(&app_lock);
    redisReply *r = NULL;
    for (int attempt = 0; attempt < 2 && !r; attempt++) {
        if (!app_redis || app_redis->err) {
            if (app_redis)
                redisFree(app_redis);
            struct timeval tv = {1, 0};
            app_redis = redisConnectWithTimeout(redis_host, redis_port, tv);
            if (!app_redis || app_redis->err)
                continue;
            redisSetTimeout(app_redis, tv);
        }
        r = redisCommandArgv(app_redis, argc, argv, NULL);
    }
    pthread_mutex_unlock(&app_lock);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&app_errors, 1);
        if (r)
            fprintf(stderr, "e2e node: redis: %s\n", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static void app_key(char *key, size_t size, const char *what, const char *id)
{
    snprintf(key, size, "%sapp:%s%s", prefix, what, id ? id : "");
}

static void app_push(const char *what, const char *id, const char *value)
{
    char key[256];
    app_key(key, sizeof key, what, id);
    const char *argv[] = {"RPUSH", key, value};
    freeReplyObject(app_cmd(3, argv));
}

static long long app_published(void)
{
    char key[128];
    app_key(key, sizeof key, "published", NULL);
    const char *argv[] = {"GET", key};
    redisReply *r = app_cmd(2, argv);
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static void start_stream(ferry_session *s)
{
    char m[64];
    int len = snprintf(m, sizeof m, "{\"start\":%lld}", app_published() + 1);
    int rc = ferry_session_send(s, m, (size_t)len);
    if (rc == FERRY_OK)
        rc = ferry_session_subscribe(s, "stream");
    if (rc != FERRY_OK) {
        /* The client would see a session without its stream: the check fails on it. */
        fprintf(stderr, "e2e node: starting a session's stream: %s\n", ferry_strerror(rc));
        atomic_fetch_add(&app_errors, 1);
    }
}

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    start_stream(s);
}

static void on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    (void)ud;
    app_push("resets:", ferry_session_identity(s), ferry_reason_str(why));
    start_stream(s);
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(data, "c"));
    json_t *n = json_object_get(data, "n");
    char v[32];
    if (!id || !json_is_integer(n) || strcmp(id, ferry_session_identity(s)) != 0) {
        app_push("mismatch", NULL, "1");
        return;
    }
    snprintf(v, sizeof v, "%lld%s", (long long)json_integer_value(n),
             ferry_session_message_repeated(s) ? "!" : "");
    app_push("log:", id, v);
    /* {"slow":ms}: the application takes that long over the message, after logging it. */
    json_int_t slow = json_integer_value(json_object_get(data, "slow"));
    if (slow > 0 && slow <= 5000) {
        struct timespec ts = {(time_t)(slow / 1000), (long)(slow % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *publisher(void *arg)
{
    long ms = *(long *)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    char key[128];
    app_key(key, sizeof key, "published", NULL);
    while (!stopping) {
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&pub_lock);
        if (publishing) {
            long long k = published + 1;
            char m[64], v[32];
            int len = snprintf(m, sizeof m, "{\"i\":%lld}", k);
            if (ferry_hub_publish(ferry_mount_hub(mount), "stream", m, (size_t)len, NULL) ==
                FERRY_OK) {
                snprintf(v, sizeof v, "%lld", k);
                const char *argv[] = {"SET", key, v};
                freeReplyObject(app_cmd(3, argv));
                published = k;
            } else {
                atomic_fetch_add(&publish_failed, 1);
            }
        }
        pthread_mutex_unlock(&pub_lock);
    }
    return NULL;
}

/* Every list under <prefix>app:<what>*, as {id: [values]}. */
static json_t *app_lists(const char *what)
{
    char pattern[256];
    app_key(pattern, sizeof pattern, what, "*");
    size_t skip = strlen(pattern) - 1;
    json_t *out = json_object();
    const char *keys_argv[] = {"KEYS", pattern};
    redisReply *keys = app_cmd(2, keys_argv);
    for (size_t k = 0; keys && k < keys->elements; k++) {
        const char *key = keys->element[k]->str;
        const char *argv[] = {"LRANGE", key, "0", "-1"};
        redisReply *list = app_cmd(4, argv);
        json_t *values = json_array();
        for (size_t j = 0; list && j < list->elements; j++)
            json_array_append_new(values, json_string(list->element[j]->str));
        freeReplyObject(list);
        json_object_set_new(out, key + skip, values);
    }
    freeReplyObject(keys);
    return out;
}

static int control_log(struct mg_connection *conn)
{
    char key[128];
    app_key(key, sizeof key, "mismatch", NULL);
    const char *argv[] = {"LLEN", key};
    redisReply *r = app_cmd(2, argv);
    long long mismatch = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    json_t *body = json_pack(
        "{sIsIsosososIsI}", "published", (json_int_t)app_published(), "failed",
        (json_int_t)publish_failed, "clients", app_lists("log:"), "resets", app_lists("resets:"),
        "node", json_string(ferry_hub_node(ferry_mount_hub(mount))), "mismatch",
        (json_int_t)mismatch, "app_errors", (json_int_t)app_errors);
    return test_app_reply_json(conn, body);
}

static int control_locked(struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *what = ri->local_uri + strlen("/control/");
    ferry_hub *hub = ferry_mount_hub(mount);
    if (strcmp(what, "log") == 0)
        return control_log(conn);
    if (strcmp(what, "stats") == 0) {
        ferry_stats st = {.size = sizeof st};
        ferry_hub_stats(hub, &st);
        json_t *body = json_pack(
            "{sssIsIsIsIsIsIsIsIsIsIsi}", "node", ferry_hub_node(hub), "attached",
            (json_int_t)st.attached, "detached", (json_int_t)st.detached, "expired",
            (json_int_t)st.expired, "opened", (json_int_t)st.sessions_opened, "resumes",
            (json_int_t)st.resumes, "messages_in", (json_int_t)st.messages_in, "messages_out",
            (json_int_t)st.messages_out, "unknown",
            (json_int_t)st.resume_failures[FERRY_REASON_UNKNOWN], "forked",
            (json_int_t)st.resume_failures[FERRY_REASON_FORKED], "app_errors",
            (json_int_t)app_errors, "health", ferry_hub_health(hub));
        return test_app_reply_json(conn, body);
    }
    if (strcmp(what, "publish") == 0) {
        pthread_mutex_lock(&pub_lock);
        publishing = (int)test_app_qnum(ri, "on", 1);
        pthread_mutex_unlock(&pub_lock);
        return control_log(conn);
    }
    if (strcmp(what, "stop") == 0) {
        stopping = 1;
        return test_app_reply_json(conn, json_object());
    }
    return 0;
}

static int control(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    pthread_mutex_lock(&control_lock);
    int r = mount ? control_locked(conn) : 0;
    pthread_mutex_unlock(&control_lock);
    return r;
}

static void on_term(int sig)
{
    (void)sig;
    atomic_store(&terminated, 1);
    atomic_store(&stopping, 1);
}

/* test_app_server's settings on E2E_PORT. */
static int start_server(struct mg_context **ctx)
{
    ferry_server_options so;
    ferry_server_options_init(&so);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%ld", test_app_env("E2E_PORT", 0));
    so.listen = listen;
    so.max_connections = 400;
    return ferry_server_start(ctx, &so);
}

static void drain(ferry_mount *m)
{
    ferry_drain_options o;
    ferry_drain_options_init(&o);
    o.notice_ms = (uint32_t)test_app_env("E2E_DRAIN_NOTICE_MS", 0);
    o.spread_ms = (uint32_t)test_app_env("E2E_DRAIN_SPREAD_MS", 1000);
    o.deadline_ms = (uint32_t)test_app_env("E2E_DRAIN_DEADLINE_MS", 10000);
    int rc = ferry_mount_drain(m, &o);
    if (rc != FERRY_OK)
        fprintf(stderr, "e2e node: drain: %s\n", ferry_strerror(rc));
}

int main(void)
{
    const char *role = getenv("E2E_ROLE");
    int is_publisher = role && strcmp(role, "publisher") == 0;
    const char *redis = getenv("E2E_REDIS"), *name = getenv("E2E_NODE");
    prefix = getenv("E2E_PREFIX") && *getenv("E2E_PREFIX") ? getenv("E2E_PREFIX") : "e2e:";
    if (!redis || !name || !strchr(redis, ':')) {
        fprintf(stderr, "e2e node: E2E_REDIS (host:port) and E2E_NODE are required\n");
        return 2;
    }
    static char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(strchr(redis, ':') - redis), redis);
    redis_host = host;
    redis_port = atoi(strchr(redis, ':') + 1);
    signal(SIGPIPE, SIG_IGN);

    ferry_cluster_options co;
    ferry_cluster_options_init(&co);
    co.redis = redis;
    co.node = name;
    co.prefix = prefix;
    ferry_cluster *cluster;
    if (ferry_cluster_new(&cluster, &co) != FERRY_OK)
        return 1;
    struct mg_context *ctx;
    if (start_server(&ctx) != FERRY_OK)
        return 1;
    ferry_options core;
    ferry_mount_options mo;
    test_app_options(&core, &mo, "E2E_");
    core.cluster = cluster;
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open, .on_reset = on_reset,
                          .on_message = on_message, .on_auth = test_app_auth};
    ferry_mount *m;
    int rc = ferry_mount_new(&m, ctx, &mo, &cb, NULL);
    if (rc != FERRY_OK) {
        fprintf(stderr, "e2e node: %s\n", ferry_strerror(rc));
        ferry_server_stop(ctx);
        ferry_cluster_free(cluster);
        return 1;
    }
    pthread_mutex_lock(&control_lock);
    mount = m;
    pthread_mutex_unlock(&control_lock);
    mg_set_request_handler(ctx, "/control/", control, NULL);
    long pub_ms = test_app_env("E2E_PUB_MS", 5);
    pthread_t pub;
    if (is_publisher)
        pthread_create(&pub, NULL, publisher, &pub_ms);
    printf("port %d\n", ferry_server_port(ctx));
    fflush(stdout);

    /* Runs until /control/stop or until stdin closes (whoever started it is gone). */
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    test_app_wait(&stopping);
    if (atomic_load(&terminated) && !is_publisher)
        drain(m);
    if (is_publisher)
        pthread_join(pub, NULL);
    pthread_mutex_lock(&control_lock);
    mount = NULL;
    pthread_mutex_unlock(&control_lock);
    ferry_mount_free(m);
    ferry_server_stop(ctx);
    ferry_cluster_free(cluster);
    if (app_redis)
        redisFree(app_redis);
    return 0;
}
