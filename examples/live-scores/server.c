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
 *
 * A value it cannot use (PORT=abc, SPEED=0, a www-dir that is not a directory) stops it at
 * once with a message naming the setting, and exit status 2.
 *
 * Every event gets a per-match number `n`. A new page (and a page whose session was reset)
 * gets a snapshot of every match first, then live events; the snapshot and the subscription
 * are made under the same lock the simulator publishes under, so no event falls between
 * them or is counted twice.
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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry_civetweb.h"
#ifdef LIVE_SCORES_CLUSTER
#include <sodium.h>

#include "ferry_cluster.h"
#endif

#define MATCHES 6
#define FEED 8
#define SNAPSHOT_MS 1000 /* how often a cluster's publisher publishes a snapshot */

typedef struct match {
    int id;
    const char *home, *away;
    int score[2];
    int minute;
    const char *status;  /* "scheduled", "live", "half-time", "full-time" */
    int n;               /* events so far */
    json_t *feed;        /* the last FEED events */
    int rest;            /* ticks to wait (half time, between fixtures) */
} match;

typedef enum role {
    ROLE_SINGLE,    /* no REDIS: one process does everything (make demo) */
    ROLE_WEB,       /* a cluster's web node: the page and ferry, no simulator */
    ROLE_PUBLISHER, /* a cluster's simulator: publishes, serves no page */
} role;

static const char *teams[] = {"Rovers", "United", "Athletic", "City", "Wanderers", "Albion",
                              "Harbour", "Rangers", "Olympic", "Dynamo", "Thistle", "Forest",
                              "Borough", "Villa", "Sporting", "Town"};
static const char *players[] = {"Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak",
                                "Haddad", "O'Brien", "Kowalski", "Mensah", "Rossi", "Berg"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the matches, and publishing */
static match matches[MATCHES];
static ferry_mount *mount;
static ferry_hub *hub;  /* the mount's, or the publisher's own */
static role mode;
static char run[17];    /* the publisher's run, in its snapshots and events ("" alone) */
static bool paused;     /* DEMO_CONTROLS: the matches stand still (snapshots go on) */
static json_t *history; /* every event ever published, for the tests (DEMO_CONTROLS) */
static atomic_bool stop;    /* set by the main thread on SIGINT or SIGTERM */

static const char *pick(const char **list, size_t n)
{
    return list[(size_t)rand() % n];
}

/* A team not playing in any match now. Lock held. */
static const char *free_team(void)
{
    for (;;) {
        const char *t = pick(teams, 16);
        bool busy = false;
        for (int i = 0; i < MATCHES; i++)
            busy |= matches[i].home == t || matches[i].away == t;
        if (!busy)
            return t;
    }
}

static void fixture(match *m)
{
    m->home = m->away = NULL;
    m->home = free_team();
    m->away = free_team();
    m->score[0] = m->score[1] = 0;
    m->minute = 0;
    m->status = "scheduled";
}

static json_t *match_json(const match *m)
{
    return json_pack("{s:i, s:s, s:s, s:[i,i], s:i, s:s, s:i, s:O}", "id", m->id, "home",
                     m->home, "away", m->away, "score", m->score[0], m->score[1], "minute",
                     m->minute, "status", m->status, "n", m->n, "feed", m->feed);
}

/* Every match now, as {"type":"snapshot", "matches":[...]} (and the run in a cluster).
 * Lock held. */
static json_t *snapshot_json(void)
{
    json_t *all = json_array();
    for (int i = 0; i < MATCHES; i++)
        json_array_append_new(all, match_json(&matches[i]));
    json_t *snap = json_pack("{s:s, s:o}", "type", "snapshot", "matches", all);
    if (run[0])
        json_object_set_new(snap, "run", json_string(run));
    return snap;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Publishes one message. The publisher tries again until Redis has it: a lost event would
 * be a gap on every page. A try that failed (a timeout, a connection lost) may have been
 * appended after all, so a retry can deliver a message twice: the retry's copy says
 * "again":true, and a page that meets an event it has already applied tells such a repeat
 * from one that ferry would have delivered twice. */
static void publish(const char *topic, json_t *msg)
{
    json_t *again = NULL;
    char *text = json_dumps(msg, JSON_COMPACT);
    int rc = FERRY_ENOMEM;
    for (;;) {
        uint64_t t0 = now_ms();
        rc = text ? ferry_hub_publish(hub, topic, text, strlen(text), NULL) : FERRY_ENOMEM;
        if (rc != FERRY_ESTORE || mode != ROLE_PUBLISHER || stop)
            break;
        fprintf(stderr, "live-scores: publish to %s: %s after %llu ms; trying again\n", topic,
                ferry_strerror(rc), (unsigned long long)(now_ms() - t0));
        if (!again && (again = json_copy(msg))) {
            json_object_set_new(again, "again", json_true());
            free(text);
            text = json_dumps(again, JSON_COMPACT);
        }
        usleep(200000);
    }
    if (rc && rc != FERRY_ESTORE)
        fprintf(stderr, "live-scores: publish to %s: %s\n", topic, ferry_strerror(rc));
    free(text);
    json_decref(again);
}

/* Publishes one event of match m to "matches" and "match/<id>". Lock held. */
static void event(match *m, const char *type, int team, const char *player)
{
    json_t *ev = json_pack("{s:s, s:i, s:i, s:s, s:i, s:[i,i], s:s}", "type", "event", "match",
                           m->id, "n", ++m->n, "kind", type, "minute", m->minute, "score",
                           m->score[0], m->score[1], "status", m->status);
    if (run[0])
        json_object_set_new(ev, "run", json_string(run));
    if (team >= 0)
        json_object_set_new(ev, "team", json_string(team ? "away" : "home"));
    if (player)
        json_object_set_new(ev, "player", json_string(player));
    if (strcmp(type, "kickoff") == 0 || strcmp(type, "fixture") == 0) {
        json_object_set_new(ev, "home", json_string(m->home));
        json_object_set_new(ev, "away", json_string(m->away));
    }
    if (strcmp(type, "minute") != 0) {
        json_array_append(m->feed, ev);
        if (json_array_size(m->feed) > FEED)
            json_array_remove(m->feed, 0);
    }
    if (history)
        json_array_append(history, ev);
    char topic[32];
    snprintf(topic, sizeof topic, "match/%d", m->id);
    publish("matches", ev);
    publish(topic, ev);
    json_decref(ev);
}
/* One match minute. Lock held. */
static void tick(match *m)
{
    if (m->rest > 0) {
        m->rest--;
        return;
    }
    if (strcmp(m->status, "full-time") == 0) {
        json_array_clear(m->feed);
        fixture(m);
        event(m, "fixture", -1, NULL);
        m->rest = 3;
        return;
    }
    if (strcmp(m->status, "scheduled") == 0 || strcmp(m->status, "half-time") == 0) {
        bool second = strcmp(m->status, "half-time") == 0;
        m->status = "live";
        event(m, second ? "second-half" : "kickoff", -1, NULL);
        return;
    }
    m->minute++;
    for (int team = 0; team < 2; team++) {
        int r = rand() % 1000;
        if (r < 16) {
            m->score[team]++;
            event(m, "goal", team, pick(players, 12));
        } else if (r < 38) {
            event(m, "yellow", team, pick(players, 12));
        } else if (r < 40) {
            event(m, "red", team, pick(players, 12));
        }
    }
    if (m->minute == 45) {
        m->status = "half-time";
        m->rest = 6;
        event(m, "half-time", -1, NULL);
    } else if (m->minute >= 90) {
        m->status = "full-time";
        m->rest = 12;
        event(m, "full-time", -1, NULL);
    } else {
        event(m, "minute", -1, NULL);
    }
}

/* A snapshot into the cluster (the top of this file says why). Lock held. */
static void publish_snapshot(void)
{
    json_t *snap = snapshot_json();
    publish("matches", snap);
    json_decref(snap);
}

/* The match clock, and in a cluster's publisher the snapshots and the hub's timers (no
 * mount runs them there). */
static void *simulate(void *arg)
{
    double speed = *(double *)arg;
    uint64_t step = (uint64_t)(1000 / speed), now = now_ms();
    uint64_t next_tick = now, next_snap = now, next_timers = now;
    while (!stop) {
        now = now_ms();
        if (now >= next_tick) {
            pthread_mutex_lock(&lock);
            for (int i = 0; i < MATCHES && !paused; i++)
                tick(&matches[i]);
            pthread_mutex_unlock(&lock);
            next_tick = now - next_tick > step ? now + step : next_tick + step;
        }
        if (mode == ROLE_PUBLISHER && now >= next_snap) {
            pthread_mutex_lock(&lock);
            publish_snapshot();
            pthread_mutex_unlock(&lock);
            next_snap = now + SNAPSHOT_MS;
        }
        if (mode == ROLE_PUBLISHER && now >= next_timers) {
            ferry_hub_tick(hub);
            next_timers = now + 1000;
        }
        uint64_t next = next_tick;
        if (mode == ROLE_PUBLISHER)
            next = next < next_snap ? next : next_snap;
        now = now_ms();
        if (next > now)
            usleep((useconds_t)((next - now) * 1000));
    }
    return NULL;
}

/* A new page, or one whose old session was lost: everything first, then live events. In a
 * cluster the snapshots come from the publisher, in the topic itself. */
static void greet(ferry_session *s)
{
    int rc;
    if (mode == ROLE_WEB) {
        if ((rc = ferry_session_subscribe(s, "matches")))
            fprintf(stderr, "live-scores: subscribing a page: %s\n", ferry_strerror(rc));
        return;
    }
    pthread_mutex_lock(&lock);
    ferry_session_subscribe(s, "matches");
    json_t *snap = snapshot_json();
    char *text = json_dumps(snap, JSON_COMPACT);
    ferry_session_send(s, text, strlen(text));
    pthread_mutex_unlock(&lock);
    free(text);
    json_decref(snap);
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
        pthread_mutex_lock(&lock);
        body = json_dumps(history, JSON_COMPACT);
        pthread_mutex_unlock(&lock);
    } else if (mode != ROLE_WEB && strcmp(what, "state") == 0) {
        pthread_mutex_lock(&lock);
        json_t *snap = snapshot_json();
        pthread_mutex_unlock(&lock);
        body = json_dumps(snap, JSON_COMPACT);
        json_decref(snap);
    } else if (mode != ROLE_WEB && strcmp(what, "pause") == 0) {
        pthread_mutex_lock(&lock);
        paused = true;
        pthread_mutex_unlock(&lock);
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
    double port, speed;
    if (!env_number("PORT", 8080, 0, 65535, true, &port) ||
        !env_number("SPEED", 0.5, 0.01, 100, false, &speed) || !read_role(st))
        return false;
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
    double speed = st.speed;
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
    if (controls) {
        history = json_array();
        if (ctx)
            mg_set_request_handler(ctx, "/control/", control, NULL);
    }
    for (int i = 0; i < MATCHES; i++) {
        matches[i].id = i + 1;
        matches[i].feed = json_array();
        fixture(&matches[i]);
        matches[i].rest = i * 2; /* staggered kick-offs */
    }

    pthread_t sim;
    bool simulating = mode != ROLE_WEB;
    if (simulating)
        pthread_create(&sim, NULL, simulate, &speed);
    announce(ctx, &st);
    int sig;
    sigwait(&sigs, &sig);
    stop = 1;
    if (simulating)
        pthread_join(sim, NULL);
    ferry_mount_free(mount);
    ferry_server_stop(ctx);
    if (mode == ROLE_PUBLISHER)
        ferry_hub_free(hub);
    free_cluster(cluster);
    for (int i = 0; i < MATCHES; i++)
        json_decref(matches[i].feed);
    json_decref(history);
    return 0;
}
