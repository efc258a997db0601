/* The chaos suite's server: ferry on 127.0.0.1 (a free port, printed as "port N"), a
 * numbered stream published to the topic "chaos", and a log of what the application saw of
 * every client's messages, for tests/chaos/check.mjs.
 *
 * Every new session (on_open, on_reset) first gets {"start":K} on its own, then the stream
 * from {"i":K} on: the two happen under the publisher's lock, so a client can tell exactly
 * where its session's stream begins. Clients name themselves with their token (the session
 * identity) and put {"c":id,"n":N} in their messages; the log keeps the N of each message in
 * the order on_message saw them, per id.
 *
 *   GET  /control/log[?clear=1]   {"published":I,"clients":{id:[N,...]},"resets":{id:[why]},
 *                                  "mismatch":M}; clear=1 forgets what it returned
 *   GET  /control/stats           session counts, resumes, resumes answered unknown, and the
 *                                 heap in use (mallinfo2)
 *   POST /control/publish?on=0|1  pause or resume the stream
 *   POST /control/ws?on=0|1       refuse WebSocket upgrades (404) or accept them
 *   POST /control/stop            exit (so does closing stdin)
 *
 * Environment (milliseconds): CHAOS_PUB_MS (5) between stream messages, CHAOS_HB_MS,
 * CHAOS_TIMEOUT_MS, CHAOS_WINDOW_MS, CHAOS_POLL_MS, CHAOS_STALL_MS, CHAOS_TOMBSTONE_MS and
 * CHAOS_TICK_MS override ferry's heartbeat, heartbeat timeout, resume window, poll hold, stall
 * timeout, how long an ended session is remembered, and the mount's tick. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry_civetweb.h"
#include "test_app.h"

static ferry_mount *mount;

/* The stream: `published` is the last i sent to the topic. Held across a publish and across
 * a new session's start message plus subscription. */
static pthread_mutex_t stream_lock = PTHREAD_MUTEX_INITIALIZER;
static long long published;
static atomic_int publishing = 1;
static atomic_int stopping;

/* The log, under its own lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *clients;  /* id -> [n, ...] */
static json_t *resets;   /* id -> [reason, ...] as on_reset saw them */
static long long mismatch; /* messages whose "c" was not the session's identity */

static void start_stream(ferry_session *s)
{
    pthread_mutex_lock(&stream_lock);
    char m[64];
    int len = snprintf(m, sizeof m, "{\"start\":%lld}", published + 1);
    ferry_session_send(s, m, (size_t)len);
    ferry_session_subscribe(s, "chaos");
    pthread_mutex_unlock(&stream_lock);
}

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    start_stream(s);
}

static json_t *log_list(json_t *obj, const char *id)
{
    json_t *list = json_object_get(obj, id);
    if (!list) {
        list = json_array();
        json_object_set_new(obj, id, list);
    }
    return list;
}

static void on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&log_lock);
    json_array_append_new(log_list(resets, ferry_session_identity(s)),
                          json_string(ferry_reason_str(why)));
    pthread_mutex_unlock(&log_lock);
    start_stream(s);
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(data, "c"));
    json_t *n = json_object_get(data, "n");
    pthread_mutex_lock(&log_lock);
    if (!id || !json_is_integer(n) || strcmp(id, ferry_session_identity(s)) != 0)
        mismatch++;
    else
        json_array_append(log_list(clients, id), n);
    pthread_mutex_unlock(&log_lock);
}

static void *publisher(void *arg)
{
    long ms = *(long *)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (!stopping) {
        nanosleep(&ts, NULL);
        if (!publishing)
            continue;
        pthread_mutex_lock(&stream_lock);
        char m[64];
        int len = snprintf(m, sizeof m, "{\"i\":%lld}", published + 1);
        if (ferry_hub_publish(ferry_mount_hub(mount), "chaos", m, (size_t)len, NULL) == FERRY_OK)
            published++;
        pthread_mutex_unlock(&stream_lock);
    }
    return NULL;
}

static int control_log(struct mg_connection *conn, int clear)
{
    pthread_mutex_lock(&stream_lock);
    long long last = published;
    pthread_mutex_unlock(&stream_lock);
    pthread_mutex_lock(&log_lock);
    json_t *body = json_pack("{sIsOsOsI}", "published", (json_int_t)last, "clients", clients,
                             "resets", resets, "mismatch", (json_int_t)mismatch);
    if (clear) {
        json_decref(clients);
        json_decref(resets);
        clients = json_object();
        resets = json_object();
    }
    /* Serialized under the lock: the arrays are shared until then. */
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    pthread_mutex_unlock(&log_lock);
    json_decref(body);
    if (!text)
        return 500;
    int r = test_app_reply(conn, text);
    free(text);
    return r;
}

static int control(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *what = ri->local_uri + strlen("/control/");
    if (strcmp(what, "log") == 0)
        return control_log(conn, (int)test_app_qnum(ri, "clear", 0));
    if (strcmp(what, "stats") == 0) {
        size_t attached, detached, expired;
        ferry_hub_counts(ferry_mount_hub(mount), &attached, &detached, &expired);
        ferry_stats st = {.size = sizeof st};
        ferry_hub_stats(ferry_mount_hub(mount), &st);
        /* Heap in use, to tell a leak (it grows) from memory the allocator keeps (RSS
         * grows, this does not). */
        struct mallinfo2 mi = mallinfo2();
        json_t *body = json_pack(
            "{sIsIsIsIsIsIsI}", "attached", (json_int_t)attached, "detached",
            (json_int_t)detached, "expired", (json_int_t)expired, "opened",
            (json_int_t)st.sessions_opened, "resumes", (json_int_t)st.resumes, "unknown",
            (json_int_t)st.resume_failures[FERRY_REASON_UNKNOWN], "heap_kb",
            (json_int_t)((mi.uordblks + mi.hblkhd) / 1024));
        return test_app_reply_json(conn, body);
    }
    if (strcmp(what, "publish") == 0) {
        publishing = (int)test_app_qnum(ri, "on", 1);
        return control_log(conn, 0);
    }
    if (strcmp(what, "ws") == 0) {
        ferry_mount_set_websocket(mount, (int)test_app_qnum(ri, "on", 1));
        return test_app_reply(conn, "{}");
    }
    if (strcmp(what, "stop") == 0) {
        stopping = 1;
        return test_app_reply(conn, "{}");
    }
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    clients = json_object();
    resets = json_object();
    struct mg_context *ctx;
    if (test_app_server(&ctx) != FERRY_OK)
        return 1;
    ferry_options core;
    ferry_mount_options mo;
    test_app_options(&core, &mo, "CHAOS_");
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open, .on_reset = on_reset,
                          .on_message = on_message, .on_auth = test_app_auth};
    int rc = ferry_mount_new(&mount, ctx, &mo, &cb, NULL);
    if (rc != FERRY_OK) {
        fprintf(stderr, "chaos server: %s\n", ferry_strerror(rc));
        ferry_server_stop(ctx);
        return 1;
    }
    mg_set_request_handler(ctx, "/control/", control, NULL);
    long pub_ms = test_app_env("CHAOS_PUB_MS", 5);
    pthread_t pub;
    pthread_create(&pub, NULL, publisher, &pub_ms);
    printf("port %d\n", ferry_server_port(ctx));
    fflush(stdout);

    /* Runs until /control/stop or until stdin closes (whoever started it is gone). */
    test_app_wait(&stopping);
    pthread_join(pub, NULL);
    ferry_mount_free(mount);
    ferry_server_stop(ctx);
    json_decref(clients);
    json_decref(resets);
    return 0;
}
