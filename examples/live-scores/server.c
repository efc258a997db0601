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
 *   DEMO_CONTROLS=1    test-only endpoints under /control/ (drop every connection, the log)
 *
 * A value it cannot use (PORT=abc, SPEED=0, a www-dir that is not a directory) stops it at
 * once with a message naming the setting, and exit status 2.
 *
 * Every event gets a per-match number `n`. A new page (and a page whose session was reset)
 * gets a snapshot of every match first, then live events; the snapshot and the subscription
 * are made under the same lock the simulator publishes under, so no event falls between
 * them or is counted twice. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry_civetweb.h"

#define MATCHES 6
#define FEED 8

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

static const char *teams[] = {"Rovers", "United", "Athletic", "City", "Wanderers", "Albion",
                              "Harbour", "Rangers", "Olympic", "Dynamo", "Thistle", "Forest",
                              "Borough", "Villa", "Sporting", "Town"};
static const char *players[] = {"Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak",
                                "Haddad", "O'Brien", "Kowalski", "Mensah", "Rossi", "Berg"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the matches, and publishing */
static match matches[MATCHES];
static ferry_mount *mount;
static json_t *history; /* every event ever published, for the tests (DEMO_CONTROLS) */
static volatile sig_atomic_t stop;

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

/* Publishes one event of match m to "matches" and "match/<id>". Lock held. */
static void event(match *m, const char *type, int team, const char *player)
{
    json_t *ev = json_pack("{s:s, s:i, s:i, s:s, s:i, s:[i,i], s:s}", "type", "event", "match",
                           m->id, "n", ++m->n, "kind", type, "minute", m->minute, "score",
                           m->score[0], m->score[1], "status", m->status);
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
    char *text = json_dumps(ev, JSON_COMPACT);
    char topic[32];
    snprintf(topic, sizeof topic, "match/%d", m->id);
    ferry_hub *hub = ferry_mount_hub(mount);
    ferry_hub_publish(hub, "matches", text, strlen(text), NULL);
    ferry_hub_publish(hub, topic, text, strlen(text), NULL);
    free(text);
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

static void *simulate(void *arg)
{
    double speed = *(double *)arg;
    useconds_t step = (useconds_t)(1e6 / speed);
    while (!stop) {
        pthread_mutex_lock(&lock);
        for (int i = 0; i < MATCHES; i++)
            tick(&matches[i]);
        pthread_mutex_unlock(&lock);
        usleep(step);
    }
    return NULL;
}

/* A new page, or one whose old session was lost: everything first, then live events. */
static void greet(ferry_session *s)
{
    pthread_mutex_lock(&lock);
    ferry_session_subscribe(s, "matches");
    json_t *all = json_array();
    for (int i = 0; i < MATCHES; i++)
        json_array_append_new(all, match_json(&matches[i]));
    json_t *snap = json_pack("{s:s, s:o}", "type", "snapshot", "matches", all);
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

/* Pages may follow single matches: match/<id>. */
static int on_subscribe(ferry_session *s, const char *topic, void *ud)
{
    (void)s;
    (void)ud;
    return strncmp(topic, "match/", 6) == 0 ? 0 : -1;
}

static int control(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    char *body = NULL;
    if (strcmp(ri->local_uri, "/control/drop") == 0) {
        ferry_mount_drop_connections(mount);
        body = strdup("{}");
    } else if (strcmp(ri->local_uri, "/control/log") == 0) {
        pthread_mutex_lock(&lock);
        body = json_dumps(history, JSON_COMPACT);
        pthread_mutex_unlock(&lock);
    } else {
        return 0;
    }
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-store\r\n\r\n%s", strlen(body), body);
    free(body);
    return 200;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* The settings, read from the environment and the command line. */
typedef struct settings {
    long port;
    double speed;
    const char *www;
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

static bool read_settings(int argc, char **argv, settings *st)
{
    double port, speed;
    if (!env_number("PORT", 8080, 0, 65535, true, &port) ||
        !env_number("SPEED", 0.5, 0.01, 100, false, &speed))
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

int main(int argc, char **argv)
{
    settings st;
    if (!read_settings(argc, argv, &st))
        return 2;
    bool no_ws = getenv("NO_WEBSOCKET") && strcmp(getenv("NO_WEBSOCKET"), "1") == 0;
    bool controls = getenv("DEMO_CONTROLS") && strcmp(getenv("DEMO_CONTROLS"), "1") == 0;
    double speed = st.speed;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%ld", st.port);
    srand((unsigned)time(NULL));

    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = listen;
    so.document_root = st.www;
    struct mg_context *ctx;
    if (ferry_server_start(&ctx, &so) != FERRY_OK) {
        fprintf(stderr, "live-scores: cannot listen on %s\n", listen);
        return 1;
    }
    ferry_callbacks cb;
    ferry_callbacks_init(&cb);
    cb.on_open = on_open;
    cb.on_reset = on_reset;
    cb.on_subscribe = on_subscribe;
    ferry_mount_options mo;
    ferry_mount_options_init(&mo);
    mo.metrics_path = "/metrics";
    if (ferry_mount_new(&mount, ctx, &mo, &cb, NULL) != 0) {
        ferry_server_stop(ctx);
        return 1;
    }
    if (no_ws)
        ferry_mount_set_websocket(mount, 0);
    if (controls) {
        history = json_array();
        mg_set_request_handler(ctx, "/control/", control, NULL);
    }
    for (int i = 0; i < MATCHES; i++) {
        matches[i].id = i + 1;
        matches[i].feed = json_array();
        fixture(&matches[i]);
        matches[i].rest = i * 2; /* staggered kick-offs */
    }

    pthread_t sim;
    pthread_create(&sim, NULL, simulate, &speed);
    printf("live-scores: open http://127.0.0.1:%d/%s\n", ferry_server_port(ctx),
           no_ws ? "   (WebSocket is off: long-polling only)" : "");
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!stop)
        pause();
    pthread_join(sim, NULL);
    ferry_mount_free(mount);
    ferry_server_stop(ctx);
    for (int i = 0; i < MATCHES; i++)
        json_decref(matches[i].feed);
    json_decref(history);
    return 0;
}
