/* Publishes to N in-memory sessions and reports enqueues per second, bytes encoded per
 * publish and distinct encoded messages per publish. One thread, attached sessions with a
 * transport that only counts wakes. Between timed rounds every session pulls and acks, as a
 * transport would, so outboxes start each round empty; the pull is timed separately.
 *   build/bench/core_publish [sessions ...]     (default: 1 100 1000 10000)
 * PER_ROUND=n in the environment publishes n messages per round (50), so each pull takes n:
 * PER_ROUND=1 is a fan-out where every pull writes one message (the per-batch costs show). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry.h"
#include "ferry_transport.h"
#include "session.h" /* to show that every outbox holds the same encoded message */

#define ROUNDS 20
static int per_round = 50; /* PER_ROUND */

static size_t wakes;

static void on_wake(void *ud)
{
    (void)ud;
    wakes++;
}

static const ferry_link_ops ops = {sizeof ops, on_wake, NULL};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct opened {
    ferry_session **sessions;
    size_t n;
};

/* The application subscribes each new session, as it would in a real service. */
static void on_open(ferry_session *s, void *ud)
{
    struct opened *o = ud;
    ferry_session_subscribe(s, "scores");
    o->sessions[o->n++] = s;
}

static void run(size_t n)
{
    ferry_options o;
    ferry_options_init(&o);
    o.max_sessions = n;
    o.outbox_max_msgs = (size_t)per_round;
    ferry_hub *hub;
    ferry_link **links = calloc(n, sizeof *links);
    ferry_session **sessions = calloc(n, sizeof *sessions);
    struct opened opened = {sessions, 0};
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open};
    if (!links || !sessions || ferry_hub_new(&hub, &o, &cb, &opened))
        exit(1);
    ferry_buf b = {0};
    const char hello[] = "{\"t\":\"hello\",\"v\":1}";
    for (size_t i = 0; i < n; i++) {
        ferry_link_new(&links[i], hub, &ops, NULL);
        ferry_link_recv(links[i], hello, sizeof hello - 1);
        b.len = 0;
        ferry_link_pull(links[i], &b, 0); /* the welcome */
    }
    if (opened.n != n)
        exit(1);

    const char payload[] = "{\"match\":7,\"minute\":63,\"event\":\"goal\",\"team\":\"home\","
                           "\"score\":[2,1],\"pad\":\"xxxxxxxxxxxxxxx\"}";
    double pub_time = 0, pull_time = 0;
    size_t enqueued = 0, pulled = 0, distinct = 0, body = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_s();
        for (int k = 0; k < per_round; k++) {
            size_t q;
            ferry_hub_publish(hub, "scores", payload, sizeof payload - 1, &q);
            enqueued += q;
        }
        pub_time += now_s() - t0;
        if (r == 0) {
            /* Every outbox's last entry is the same encoded message. */
            fy_msg *first = fy_outbox_at(&sessions[0]->out, fy_outbox_end(&sessions[0]->out) - 1);
            distinct = 1;
            for (size_t i = 1; i < n; i++)
                if (fy_outbox_at(&sessions[i]->out, fy_outbox_end(&sessions[i]->out) - 1) != first)
                    distinct++;
            body = first->len;
        }
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            b.len = 0;
            int got = ferry_link_pull(links[i], &b, 0);
            pulled += (size_t)(got > 0 ? got : 0);
        }
        pull_time += now_s() - t0;
        for (size_t i = 0; i < n; i++) {
            char ack[64];
            int len = snprintf(ack, sizeof ack, "{\"t\":\"ack\",\"ack\":%llu}",
                               (unsigned long long)(fy_outbox_end(&sessions[i]->out) - 1));
            ferry_link_recv(links[i], ack, (size_t)len);
        }
    }
    size_t publishes = (size_t)ROUNDS * (size_t)per_round;
    printf("{\"sessions\":%zu,\"publishes\":%zu,\"enqueues\":%zu,\"enqueues_per_s\":%.0f,"
           "\"ns_per_enqueue\":%.1f,\"encoded_bytes_per_publish\":%zu,"
           "\"distinct_messages_per_publish\":%zu,\"pulled_frames\":%zu,\"ns_per_pulled_frame\":%.1f}\n",
           n, publishes, enqueued, (double)enqueued / pub_time, pub_time * 1e9 / (double)enqueued,
           body, distinct, pulled, pull_time * 1e9 / (double)pulled);
    fflush(stdout);
    for (size_t i = 0; i < n; i++)
        ferry_link_free(links[i]);
    ferry_hub_free(hub);
    ferry_buf_release(&b);
    free(links);
    free(sessions);
}

int main(int argc, char **argv)
{
    const char *pr = getenv("PER_ROUND");
    if (pr && atoi(pr) > 0)
        per_round = atoi(pr);
    size_t def[] = {1, 100, 1000, 10000};
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            run((size_t)strtoul(argv[i], NULL, 10));
    } else {
        for (size_t i = 0; i < sizeof def / sizeof def[0]; i++)
            run(def[i]);
    }
    return 0;
}
