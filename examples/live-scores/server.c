/* Live scores: simulated football matches pushed to every page through ferry.
 *
 *   build/examples/live-scores [www-dir]
 *
 * www-dir is the page to serve (default examples/live-scores/www, from the repository's
 * top); it must be a directory. The server listens on 127.0.0.1 only and serves the page at
 * /, ferry at /ferry and Prometheus metrics at /metrics. The environment changes it:
 *
 *   PORT=8080          the port, 0 to 65535 (0: any free port, printed at start)
 *   SPEED=0.5          match minutes per real second, 0.01 to 100 (0.5: a match in about
 *                      three minutes)
 *   NO_WEBSOCKET=1     long-polling only, to show the fallback
 *   DEMO_CONTROLS=1    test-only endpoints under /control/ (drop every connection, the log,
 *                      the matches now, pause the matches)
 *   DRAIN_SPREAD_MS=2000  on SIGTERM the server drains before it exits (ferry_mount_drain):
 *   DRAIN_NOTICE_MS=0     it answers draining on /ferry/health for the notice, then lets
 *                      its pages go over the spread (in a cluster they resume on another
 *                      node; alone they reconnect once it is back), 0 to 600000 each.
 *                      SIGINT (Ctrl-C) stops at once.
 *
 * A value it cannot use (PORT=abc, SPEED=0, a www-dir that is not a directory) stops it at
 * once with a message naming the setting, and exit status 2.
 *
 * Every event gets a per-match number `n`. A new page (and a page whose session was reset)
 * gets a snapshot of every match first, then live events; the snapshot and the subscription
 * are made under the same lock the simulator (matches.c) publishes under, so no event falls
 * between them or is counted twice.
 *
 * In a cluster (built as build/examples/live-scores-cluster, with LIVE_SCORES_CLUSTER;
 * scripts/demo-cluster.sh runs one) the same program plays one of two roles:
 *
 *   REDIS=host:port|/path.sock NODE=n1            a web node: serves the page and ferry,
 *                                                 simulates nothing
 *   REDIS=... NODE=pub ROLE=publisher             the one process that simulates the matches
 *                                                 and publishes them into the cluster; it
 *                                                 has no web clients, and listens on PORT
 *                                                 only with DEMO_CONTROLS=1
 *   PREFIX=ferry:                                 the Redis key prefix of the cluster
 *
 * Exactly one publisher, so every match is simulated once. A web node cannot take the
 * snapshot under the simulator's lock, as one process does: the simulator is elsewhere. So
 * the publisher publishes a full snapshot to "matches" every second, in the same topic as
 * the events: a topic's messages reach every subscriber in one order, so each snapshot
 * holds exactly the events published before it. A web node only subscribes a new (or
 * reset) session to "matches"; the page adopts the first snapshot it receives and then
 * applies the events numbered above it, and checks later snapshots against what it shows.
 * The cost: a new page waits up to a second for its scores, and every page receives a
 * snapshot a second (3 to 8 KB). The alternative, a web node keeping the matches from the
 * feed, would need a second copy of the simulator's state on every node, kept in step
 * through ferry's own topics, which the application cannot read. Snapshots and events
 * carry the publisher's `run` (random at start): a publisher that restarts begins new
 * matches, numbered from 0 again, and the page starts over at the new run's first
 * snapshot. While no publisher runs, the pages stay connected and the scores stand still.
 *
 * Which node serves a page: the page sends {"whoami":k} after every open (a new session, a
 * resume, a move to another transport), and the node that delivers it answers
 * {"type":"node","node":NAME,"ask":k}; the page shows the answer to its latest question
 * only. On WebSocket that is the node holding the connection; on long-polling, the node the
 * question's POST reached (the demo's nginx sends one client's polls and sends to one
 * node). A single node (no REDIS) ignores the question, so the page shows no node. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ferry_civetweb.h"
#include "scores.h"
#ifdef LIVE_SCORES_CLUSTER
#include <sodium.h>

#include "ferry_cluster.h"
#endif

typedef enum role {
    ROLE_SINGLE,    /* no REDIS: one process does everything (make demo) */
    ROLE_WEB,       /* a cluster's web node: the page and ferry, no simulator */
    ROLE_PUBLISHER, /* a cluster's simulator: publishes, serves no page */
} role;


static ferry_mount *mount;
static ferry_hub *hub;  /* the mount's, or the publisher's own */
static role mode;
static char run[17];    /* the publisher's run, in its snapshots and events ("" alone) */

/* A new page, or one whose old session was lost: everything first, then live events. In a
 * cluster the snapshots come from the publisher, in the topic itself. */
static void greet(ferry_session *s)
{
    int rc;
    if (mode != ROLE_WEB)
        scores_greet(s);
    else if ((rc = ferry_session_subscribe(s, "matches")))
        fprintf(stderr, "live-scores: subscribing a page: %s\n", ferry_strerror(rc));
}

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    greet(s);
}

static void on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    (void)why;
    (void)ud;
    greet(s);
}

/* A cluster's web node answers {"whoami":k} with its name (above: why). */
static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    json_t *ask = json_object_get(data, "whoami");
    if (!json_is_integer(ask))
        return;
    json_t *ans = json_pack("{s:s, s:s, s:O}", "type", "node", "node",
                            ferry_hub_node(ferry_session_hub(s)), "ask", ask);
    char *text = json_dumps(ans, JSON_COMPACT);
    int rc = text ? ferry_session_send(s, text, strlen(text)) : FERRY_ENOMEM;
    if (rc)
        fprintf(stderr, "live-scores: answering whoami: %s\n", ferry_strerror(rc));
    free(text);
    json_decref(ans);
}

/* Pages may follow single matches: match/<id>. */
static int on_subscribe(ferry_session *s, const char *topic, void *ud)
{
    (void)s;
    (void)ud;
    return strncmp(topic, "match/", 6) == 0 ? 0 : -1;
}

/* The test endpoints (DEMO_CONTROLS=1): drop on a node that serves pages; log, state and
 * pause where the matches are simulated. */
static int control(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *what = ri->local_uri + strlen("/control/");
    char *body = NULL;
    if (strcmp(what, "drop") == 0 && mount) {
        ferry_mount_drop_connections(mount);
        body = strdup("{}");
    } else if (mode != ROLE_WEB && strcmp(what, "log") == 0) {
        body = scores_log();
    } else if (mode != ROLE_WEB && strcmp(what, "state") == 0) {
        body = scores_state();
    } else if (mode != ROLE_WEB && strcmp(what, "pause") == 0) {
        scores_pause();
        body = strdup("{}");
    } else {
        return 0;
    }
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-store\r\n\r\n%s", strlen(body), body);
    free(body);
    return 200;
}

/* The settings, read from the environment and the command line. */
typedef struct settings {
    long port;
    double speed;
    const char *www;
    const char *redis, *node, *prefix; /* a cluster's (REDIS set) */
    ferry_drain_options drain;         /* on SIGTERM */
} settings;

/* Reads a number from the environment variable `name` into *out, default `def`. False,
 * with a message, if it is not a number from `lo` to `hi`. */
static bool env_number(const char *name, double def, double lo, double hi, bool integer,
                       double *out)
{
    const char *v = getenv(name);
    *out = def;
    if (!v)
        return true;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    bool whole = integer ? strspn(v, "0123456789") == strlen(v) : true;
    if (end == v || *end || errno || !whole || !(d >= lo && d <= hi)) {
        fprintf(stderr, "live-scores: %s=\"%s\" is not %s from %g to %g\n", name, v,
                integer ? "a whole number" : "a number", lo, hi);
        return false;
    }
    *out = d;
    return true;
}

/* REDIS, NODE, ROLE and PREFIX: the role this process plays. */
static bool read_role(settings *st)
{
    const char *r = getenv("ROLE");
    st->redis = getenv("REDIS");
    st->node = getenv("NODE");
    st->prefix = getenv("PREFIX");
    if (!st->redis || !*st->redis) {
        if (r && *r) {
            fprintf(stderr, "live-scores: ROLE=\"%s\" needs REDIS (a cluster)\n", r);
            return false;
        }
        mode = ROLE_SINGLE;
        return true;
    }
#ifndef LIVE_SCORES_CLUSTER
    fprintf(stderr, "live-scores: REDIS is set, but this build has no cluster (make "
                    "demo-cluster builds build/examples/live-scores-cluster)\n");
    return false;
#else
    if (!r || !*r || strcmp(r, "web") == 0) {
        mode = ROLE_WEB;
    } else if (strcmp(r, "publisher") == 0) {
        mode = ROLE_PUBLISHER;
    } else {
        fprintf(stderr, "live-scores: ROLE=\"%s\" is not web or publisher\n", r);
        return false;
    }
    if (!st->node || !*st->node) {
        fprintf(stderr, "live-scores: REDIS is set: NODE must name this node\n");
        return false;
    }
    return true;
#endif
}

static bool read_settings(int argc, char **argv, settings *st)
{
    double port, speed, spread, notice;
    if (!env_number("PORT", 8080, 0, 65535, true, &port) ||
        !env_number("SPEED", 0.5, 0.01, 100, false, &speed) ||
        !env_number("DRAIN_SPREAD_MS", 2000, 0, 600000, true, &spread) ||
        !env_number("DRAIN_NOTICE_MS", 0, 0, 600000, true, &notice) || !read_role(st))
        return false;
    ferry_drain_options_init(&st->drain);
    st->drain.spread_ms = (uint32_t)spread;
    st->drain.notice_ms = (uint32_t)notice;
    /* Clients told to go last have a few seconds to leave. */
    st->drain.deadline_ms = st->drain.notice_ms + st->drain.spread_ms + 5000;
    st->port = (long)port;
    st->speed = speed;
    st->www = argc > 1 ? argv[1] : "examples/live-scores/www";
    struct stat sb;
    if (stat(st->www, &sb) != 0) {
        fprintf(stderr, "live-scores: web root \"%s\": %s (give the www directory as the "
                        "first argument)\n", st->www, strerror(errno));
        return false;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "live-scores: web root \"%s\" is not a directory\n", st->www);
        return false;
    }
    return true;
}

/* A cluster member's hub options (REDIS set); false, with the reason logged, if the
 * settings are refused. Without LIVE_SCORES_CLUSTER there is never one (read_role). */
static bool join_cluster(const settings *st, ferry_options *core, ferry_cluster **c)
{
    *c = NULL;
    ferry_options_init(core);
#ifdef LIVE_SCORES_CLUSTER
    if (mode == ROLE_SINGLE)
        return true;
    ferry_cluster_options co;
    ferry_cluster_options_init(&co);
    co.redis = st->redis;
    co.node = st->node;
    co.prefix = st->prefix;
    if (mode == ROLE_PUBLISHER) { /* this run of the matches, for the pages */
        unsigned char r[8];
        if (sodium_init() < 0)
            return false;
        randombytes_buf(r, sizeof r);
        sodium_bin2hex(run, sizeof run, r, sizeof r);
    }
    if (ferry_cluster_new(c, &co) != FERRY_OK)
        return false;
    core->cluster = *c;
#else
    (void)st;
#endif
    return true;
}

static void free_cluster(ferry_cluster *c)
{
#ifdef LIVE_SCORES_CLUSTER
    ferry_cluster_free(c);
#else
    (void)c;
#endif
}

/* The page's server: ferry mounted on a civetweb context, serving www. */
static int start_web(const settings *st, const ferry_options *core, struct mg_context **ctx)
{
    bool no_ws = getenv("NO_WEBSOCKET") && strcmp(getenv("NO_WEBSOCKET"), "1") == 0;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%ld", st->port);
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = listen;
    so.document_root = st->www;
    if (ferry_server_start(ctx, &so) != FERRY_OK) {
        fprintf(stderr, "live-scores: cannot listen on %s\n", listen);
        return 1;
    }
    ferry_callbacks cb;
    ferry_callbacks_init(&cb);
    cb.on_open = on_open;
    cb.on_reset = on_reset;
    cb.on_subscribe = on_subscribe;
    if (mode == ROLE_WEB)
        cb.on_message = on_message;
    ferry_mount_options mo;
    ferry_mount_options_init(&mo);
    mo.metrics_path = "/metrics";
    mo.core = core;
    if (mode == ROLE_WEB) /* behind the demo's nginx (scripts/demo-cluster.sh), which sets it */
        mo.real_ip_header = "X-Real-IP";
    if (ferry_mount_new(&mount, *ctx, &mo, &cb, NULL) != 0) {
        ferry_server_stop(*ctx);
        return 1;
    }
    hub = ferry_mount_hub(mount);
    if (no_ws)
        ferry_mount_set_websocket(mount, 0);
    return 0;
}

/* The publisher's hub (a cluster member with no transport), and its control endpoints on
 * PORT with DEMO_CONTROLS=1 (ctx stays NULL without). */
static int start_publisher(const settings *st, const ferry_options *core, bool controls,
                           struct mg_context **ctx)
{
    *ctx = NULL;
    if (ferry_hub_new(&hub, core, NULL, NULL) != FERRY_OK)
        return 1;
    if (!controls)
        return 0;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%ld", st->port);
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = listen;
    if (ferry_server_start(ctx, &so) != FERRY_OK) {
        fprintf(stderr, "live-scores: cannot listen on %s\n", listen);
        ferry_hub_free(hub);
        return 1;
    }
    return 0;
}

static void announce(struct mg_context *ctx, const settings *st)
{
    bool no_ws = getenv("NO_WEBSOCKET") && strcmp(getenv("NO_WEBSOCKET"), "1") == 0;
    if (mode == ROLE_PUBLISHER && ctx)
        printf("live-scores: publisher %s (run %s), controls on http://127.0.0.1:%d/control/\n",
               st->node, run, ferry_server_port(ctx));
    else if (mode == ROLE_PUBLISHER)
        printf("live-scores: publisher %s (run %s) simulating %d matches\n", st->node, run,
               MATCHES);
    else if (mode == ROLE_WEB)
        printf("live-scores: node %s on http://127.0.0.1:%d/%s\n", st->node,
               ferry_server_port(ctx), no_ws ? "   (WebSocket is off: long-polling only)" : "");
    else
        printf("live-scores: open http://127.0.0.1:%d/%s\n", ferry_server_port(ctx),
               no_ws ? "   (WebSocket is off: long-polling only)" : "");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    settings st;
    if (!read_settings(argc, argv, &st))
        return 2;
    bool controls = getenv("DEMO_CONTROLS") && strcmp(getenv("DEMO_CONTROLS"), "1") == 0;
    srand((unsigned)time(NULL));
    /* SIGINT and SIGTERM are taken by sigwait below, so they are blocked in every thread,
     * the ones civetweb, ferry and the cluster start included: delivered to one of those,
     * a handler would not wake the main thread. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    ferry_options core;
    ferry_cluster *cluster;
    if (!join_cluster(&st, &core, &cluster))
        return 1;
    struct mg_context *ctx;
    int rc = mode == ROLE_PUBLISHER ? start_publisher(&st, &core, controls, &ctx)
                                    : start_web(&st, &core, &ctx);
    if (rc) {
        free_cluster(cluster);
        return rc;
    }
    if (controls && ctx)
        mg_set_request_handler(ctx, "/control/", control, NULL);
    bool simulating = mode != ROLE_WEB;
    scores_cfg sc = {.hub = hub, .speed = st.speed, .history = controls,
                     .cluster = mode == ROLE_PUBLISHER, .run = run};
    if (simulating && scores_start(&sc)) {
        fprintf(stderr, "live-scores: cannot start the matches\n");
        return 1;
    }
    announce(ctx, &st);
    int sig;
    sigwait(&sigs, &sig);
    if (sig == SIGTERM && mount) {
        /* A deploy's stop: out of the balancer, then the pages go a few at a time. */
        printf("live-scores: draining over %u ms\n", st.drain.notice_ms + st.drain.spread_ms);
        fflush(stdout);
        int drc = ferry_mount_drain(mount, &st.drain);
        printf("live-scores: drained%s\n", drc == FERRY_OK ? "" : " (deadline passed)");
        fflush(stdout);
    }
    if (simulating)
        scores_stop();
    ferry_mount_free(mount);
    ferry_server_stop(ctx);
    if (mode == ROLE_PUBLISHER)
        ferry_hub_free(hub);
    free_cluster(cluster);
    return 0;
}
