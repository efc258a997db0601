/* ferry_mount_drain on one node (no cluster): every client is told to go with a reason it
 * understands (close "shutdown", then WebSocket 1000; a long-poll's poll carries it), spread
 * over the period; new connections are refused meanwhile; and the calls it must refuse. The
 * cluster's drain (sessions kept, clients resume elsewhere) is tested end to end in
 * tests/cluster-e2e/rolling.test.mjs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* One client pumped on a thread of its own until the server lets it go. */
typedef struct drained {
    tc c;
    pthread_t th;
    long deadline;   /* ts_ms() */
    long closed_at;  /* when its close frame arrived, ts_ms(); 0: never */
} drained;

static void *pump_until_close(void *arg)
{
    drained *d = arg;
    while (!d->c.last_close[0] && ts_ms() < d->deadline && d->c.open)
        tc_pump(&d->c, 100);
    if (d->c.last_close[0])
        d->closed_at = ts_ms();
    /* A WebSocket then gets its close code. */
    while (d->c.kind == TC_WS && d->c.open && ts_ms() < d->deadline)
        tc_pump(&d->c, 100);
    return NULL;
}

typedef struct drain_call {
    ferry_mount *m;
    ferry_drain_options o;
    int rc;
    long took;
} drain_call;

static void *run_drain(void *arg)
{
    drain_call *d = arg;
    long t0 = ts_ms();
    d->rc = ferry_mount_drain(d->m, &d->o);
    d->took = ts_ms() - t0;
    return NULL;
}

static int status_of(tserver *s, const char *method, const char *path, const char *headers,
                     const char *body)
{
    fyc_resp r;
    if (fyc_http(s->port, method, path, headers, body, body ? strlen(body) : 0, 5000, &r) != 0)
        return -1;
    int st = r.status;
    fyc_resp_free(&r);
    return st;
}

#define NCLIENTS 8 /* four on each transport */
#define SPREAD_MS 800

START_TEST(drain_closes_every_client_spread_and_refuses_new_ones)
{
    tserver *s = ts_start(NULL);
    drained d[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        memset(&d[i], 0, sizeof d[i]);
        tc_init(&d[i].c, s, i % 2 ? TC_LP : TC_WS);
        ck_assert_int_eq(tc_connect(&d[i].c), 0);
        ck_assert_int_eq(tc_send(&d[i].c, "{\"c\":1}"), 0);
    }
    ts_publish(s, "{\"i\":1}");
    for (int i = 0; i < NCLIENTS; i++)
        ck_assert(tc_wait_msgs(&d[i].c, 1, 5000));
    ck_assert(ts_wait_attached(s, NCLIENTS, 5000));

    drain_call call = {.m = s->m};
    ferry_drain_options_init(&call.o);
    call.o.spread_ms = SPREAD_MS;
    call.o.deadline_ms = 10000;
    long t0 = ts_ms();
    for (int i = 0; i < NCLIENTS; i++) {
        d[i].deadline = t0 + 10000;
        pthread_create(&d[i].th, NULL, pump_until_close, &d[i]);
    }
    pthread_t th;
    pthread_create(&th, NULL, run_drain, &call);

    /* While it drains: health says so, and new connections are refused, on both transports,
     * before any handshake (503 with []). */
    long waited = 0;
    while (status_of(s, "GET", "/ferry/health", NULL, NULL) != 503 && waited++ < 1000)
        usleep(1000);
    ck_assert_int_eq(ts_metric(s, "ferry_draining"), 1);
    ck_assert_int_eq(ts_metric(s, "ferry_ready"), 0);
    ck_assert_int_eq(status_of(s, "POST", "/ferry/lp", NULL, "{\"t\":\"hello\",\"v\":1}"), 503);
    fyc_ws ws;
    int st = 0;
    ck_assert_int_ne(fyc_ws_open(&ws, s->port, "/ferry/ws", NULL, &st), 0);
    ck_assert_int_eq(st, 503);

    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(d[i].th, NULL);
    pthread_join(th, NULL);
    ck_assert_int_eq(call.rc, FERRY_OK);

    long first = 0, last = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        /* The reason the client understands: the server is stopping, the session is over. */
        ck_assert_str_eq(d[i].c.last_close, "shutdown");
        ck_assert_int_eq(d[i].c.gaps, 0);
        ck_assert_int_eq(d[i].c.dups, 0);
        if (d[i].c.kind == TC_WS)
            ck_assert_int_eq(d[i].c.ws_close_code, 1000);
        ck_assert_int_gt(d[i].closed_at, 0);
        if (!first || d[i].closed_at < first)
            first = d[i].closed_at;
        if (d[i].closed_at > last)
            last = d[i].closed_at;
    }
    /* Client k of n goes in the k-th n-th of the spread: the first and the last are at least
     * (n - 2) / n of it apart (600 ms here), whatever the jitter; half of it leaves room for
     * a slow machine delivering the first close late. */
    ck_assert_msg(last - first >= SPREAD_MS / 2, "closes spread over %ld ms only", last - first);
    ck_assert_msg(call.took < 5000, "the drain took %ld ms", call.took);
    /* Every session ended as the process goes; what the application received is all the
     * clients sent (each message was acked before the drain). */
    ck_assert(ts_wait_count(s, &s->closes, NCLIENTS, 5000));
    ck_assert_uint_eq(ts_received(s), NCLIENTS);
    for (int i = 0; i < NCLIENTS; i++)
        tc_free(&d[i].c);
    ts_stop(s);
}
END_TEST

START_TEST(drain_with_zero_spread_tells_everyone_at_once)
{
    tserver *s = ts_start(NULL);
    drained d[4];
    for (int i = 0; i < 4; i++) {
        memset(&d[i], 0, sizeof d[i]);
        tc_init(&d[i].c, s, i % 2 ? TC_LP : TC_WS);
        ck_assert_int_eq(tc_connect(&d[i].c), 0);
        d[i].deadline = ts_ms() + 10000;
    }
    ck_assert(ts_wait_attached(s, 4, 5000));
    for (int i = 0; i < 4; i++)
        pthread_create(&d[i].th, NULL, pump_until_close, &d[i]);
    ferry_drain_options o;
    ferry_drain_options_init(&o);
    o.spread_ms = 0;
    o.deadline_ms = 5000;
    ck_assert_int_eq(ferry_mount_drain(s->m, &o), FERRY_OK);
    for (int i = 0; i < 4; i++) {
        pthread_join(d[i].th, NULL);
        ck_assert_str_eq(d[i].c.last_close, "shutdown");
        tc_free(&d[i].c);
    }
    ts_stop(s);
}
END_TEST

START_TEST(drain_twice_then_free)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert(ts_wait_attached(s, 1, 5000));
    drained pump = {.c = c, .deadline = ts_ms() + 10000};
    pthread_create(&pump.th, NULL, pump_until_close, &pump);
    /* Two at once: one tells the client, both wait for it to leave. */
    drain_call a = {.m = s->m}, b = {.m = s->m};
    ferry_drain_options_init(&a.o);
    a.o.spread_ms = 300;
    a.o.deadline_ms = 5000;
    b.o = a.o;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_drain, &a);
    pthread_create(&tb, NULL, run_drain, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(pump.th, NULL);
    ck_assert_int_eq(a.rc, FERRY_OK);
    ck_assert_int_eq(b.rc, FERRY_OK);
    ck_assert_str_eq(pump.c.last_close, "shutdown");
    ck_assert_int_eq(ts_count(s, &s->closes), 1);
    /* A third, after: nobody left to tell; still draining. */
    ck_assert_int_eq(ferry_mount_drain(s->m, NULL), FERRY_OK);
    ck_assert_int_eq(status_of(s, "GET", "/ferry/health", NULL, NULL), 503);
    ferry_mount_set_draining(s->m, 0); /* the flag alone cannot undo a drain */
    ck_assert_int_eq(status_of(s, "GET", "/ferry/health", NULL, NULL), 503);
    ck_assert_int_eq(status_of(s, "POST", "/ferry/lp", NULL, "{\"t\":\"hello\",\"v\":1}"), 503);
    tc_free(&pump.c);
    ts_stop(s); /* ferry_mount_free after a drain */
}
END_TEST

START_TEST(drain_gives_up_at_its_deadline)
{
    /* A long-polling client that never polls again is never given its close frame: the
     * drain waits for it until the deadline, and the mount is freed anyway. */
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    ferry_drain_options o;
    ferry_drain_options_init(&o);
    o.spread_ms = 0;
    o.deadline_ms = 400;
    long t0 = ts_ms();
    ck_assert_int_eq(ferry_mount_drain(s->m, &o), FERRY_ETIMEDOUT);
    long took = ts_ms() - t0;
    ck_assert_msg(took >= 400 && took < 3000, "returned after %ld ms", took);
    /* The poll that comes now still gets the session's end. */
    ck_assert_int_ge(tc_pump(&c, 1000), 1);
    ck_assert_str_eq(c.last_close, "shutdown");
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(drain_refuses_bad_calls)
{
    ck_assert_int_eq(ferry_mount_drain(NULL, NULL), FERRY_EINVAL);
    ferry_drain_options_init(NULL);
    tserver *s = ts_start(NULL);
    ferry_drain_options o;
    ferry_drain_options_init(&o);
    ck_assert_uint_eq(o.size, sizeof o);
    ck_assert_uint_eq(o.notice_ms, 0);
    ck_assert_uint_eq(o.spread_ms, 10000);
    ck_assert_uint_eq(o.deadline_ms, 30000);
    o.deadline_ms = 1000;
    o.notice_ms = 500;
    o.spread_ms = 501; /* the deadline must leave room for both */
    ck_assert_int_eq(ferry_mount_drain(s->m, &o), FERRY_EINVAL);
    ferry_drain_options_init(&o);
    o.size = 0;
    ck_assert_int_eq(ferry_mount_drain(s->m, &o), FERRY_EINVAL);
    o.size = sizeof o + 8;
    ck_assert_int_eq(ferry_mount_drain(s->m, &o), FERRY_EINVAL);
    /* None of them started a drain. */
    ck_assert_int_eq(status_of(s, "GET", "/ferry/health", NULL, NULL), 200);
    ck_assert_str_eq(ferry_strerror(FERRY_ETIMEDOUT), "the deadline passed first");
    ts_stop(s);
}
END_TEST

Suite *drain_suite(void)
{
    Suite *s = suite_create("drain");
    TCase *t = tcase_create("drain");
    tcase_set_timeout(t, 30);
    tcase_add_test(t, drain_closes_every_client_spread_and_refuses_new_ones);
    tcase_add_test(t, drain_with_zero_spread_tells_everyone_at_once);
    tcase_add_test(t, drain_twice_then_free);
    tcase_add_test(t, drain_gives_up_at_its_deadline);
    tcase_add_test(t, drain_refuses_bad_calls);
    suite_add_tcase(s, t);
    return s;
}
