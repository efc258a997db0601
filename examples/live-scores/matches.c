/* The matches: a simulator of MATCHES football matches, a minute at a time, publishing every
 * event (scores.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scores.h"

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

static const char *teams[] = {"Rovers", "United", "Athletic", "City", "Wanderers", "Albion",
                              "Harbour", "Rangers", "Olympic", "Dynamo", "Thistle", "Forest",
                              "Borough", "Villa", "Sporting", "Town"};
static const char *players[] = {"Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak",
                                "Haddad", "O'Brien", "Kowalski", "Mensah", "Rossi", "Berg"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the matches, and publishing */
static match matches[MATCHES];
static scores_cfg cfg;
static json_t *history; /* every event ever published, for the tests (cfg.history) */
static bool paused;     /* the matches stand still (snapshots go on) */
static atomic_bool stop;
static pthread_t thread;
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
    if (cfg.run[0])
        json_object_set_new(snap, "run", json_string(cfg.run));
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
        rc = text ? ferry_hub_publish(cfg.hub, topic, text, strlen(text), NULL) : FERRY_ENOMEM;
        if (rc != FERRY_ESTORE || !cfg.cluster || stop)
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
    if (cfg.run[0])
        json_object_set_new(ev, "run", json_string(cfg.run));
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

/* A snapshot into the cluster (server.c says why). Lock held. */
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
    (void)arg;
    double speed = cfg.speed;
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
        if (cfg.cluster && now >= next_snap) {
            pthread_mutex_lock(&lock);
            publish_snapshot();
            pthread_mutex_unlock(&lock);
            next_snap = now + SNAPSHOT_MS;
        }
        if (cfg.cluster && now >= next_timers) {
            ferry_hub_tick(cfg.hub);
            next_timers = now + 1000;
        }
        uint64_t next = next_tick;
        if (cfg.cluster)
            next = next < next_snap ? next : next_snap;
        now = now_ms();
        if (next > now)
            usleep((useconds_t)((next - now) * 1000));
    }
    return NULL;
}

int scores_start(const scores_cfg *c)
{
    cfg = *c;
    if (cfg.history && !(history = json_array()))
        return -1;
    for (int i = 0; i < MATCHES; i++) {
        matches[i].id = i + 1;
        matches[i].feed = json_array();
        fixture(&matches[i]);
        matches[i].rest = i * 2; /* staggered kick-offs */
    }
    return pthread_create(&thread, NULL, simulate, NULL) ? -1 : 0;
}

void scores_stop(void)
{
    stop = true;
    pthread_join(thread, NULL);
    for (int i = 0; i < MATCHES; i++)
        json_decref(matches[i].feed);
    json_decref(history);
}

void scores_greet(ferry_session *s)
{
    pthread_mutex_lock(&lock);
    ferry_session_subscribe(s, "matches");
    json_t *snap = snapshot_json();
    char *text = json_dumps(snap, JSON_COMPACT);
    if (text)
        ferry_session_send(s, text, strlen(text));
    pthread_mutex_unlock(&lock);
    free(text);
    json_decref(snap);
}

char *scores_log(void)
{
    pthread_mutex_lock(&lock);
    char *text = history ? json_dumps(history, JSON_COMPACT) : NULL;
    pthread_mutex_unlock(&lock);
    return text;
}

char *scores_state(void)
{
    pthread_mutex_lock(&lock);
    json_t *snap = snapshot_json();
    pthread_mutex_unlock(&lock);
    char *text = json_dumps(snap, JSON_COMPACT);
    json_decref(snap);
    return text;
}

void scores_pause(void)
{
    pthread_mutex_lock(&lock);
    paused = true;
    pthread_mutex_unlock(&lock);
}
