/* ferry_hub_stats beyond the counters: reset frames by reason, and the publish-to-write
 * histogram (ferry_histogram). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "helpers.h"

static ferry_stats stats_of(ferry_hub *hub)
{
    ferry_stats st = {.size = sizeof st};
    ck_assert_int_eq(ferry_hub_stats(hub, &st), FERRY_OK);
    return st;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The index of the first bucket whose bound is at least `s` seconds. */
static int bucket_at(double s)
{
    int i = 0;
    while (ferry_histogram_bound(i) < s)
        i++;
    return i;
}

START_TEST(histogram_bounds_are_fixed)
{
    const double want[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                           0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    for (int i = 0; i < FERRY_HISTOGRAM_BUCKETS - 1; i++)
        ck_assert_double_eq_tol(ferry_histogram_bound(i), want[i], 1e-12);
    ck_assert(isinf(ferry_histogram_bound(FERRY_HISTOGRAM_BUCKETS - 1)));
    ck_assert_double_eq(ferry_histogram_bound(-1), -1);
    ck_assert_double_eq(ferry_histogram_bound(FERRY_HISTOGRAM_BUCKETS), -1);
}
END_TEST

/* Sends one message to `s`, waits `wait_ms`, and pulls it: one batch with a new message. */
static void one_batch(fake_conn *c, ferry_session *s, long wait_ms)
{
    ck_assert_int_eq(ferry_session_send(s, "1", 1), 0);
    if (wait_ms)
        sleep_ms(wait_ms);
    json_t *f = fc_pull(c, 0);
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    json_decref(f);
}

/* One observation per 16 pulled batches with new messages per link, the first included,
 * its value the oldest new message's wait; replays and pulls with nothing new add none. */
START_TEST(publish_to_write_samples_batches_at_first_send)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *s = ferry_session_ref(app.last_session);
    ferry_stats st = stats_of(hub);
    ck_assert_uint_eq(st.publish_to_write.count, 0);
    ck_assert_uint_eq(st.publish_to_write.le[FERRY_HISTOGRAM_BUCKETS - 1], 0);

    /* The link's first batch: three messages, the first of which waited 30 ms. */
    ck_assert_int_eq(ferry_session_send(s, "1", 1), 0);
    sleep_ms(30);
    ck_assert_int_eq(ferry_session_send(s, "2", 1), 0);
    ck_assert_int_eq(ferry_session_send(s, "3", 1), 0);
    json_t *f = fc_pull(c, 0);
    ck_assert_uint_eq(count_of(f, "msg"), 3);
    json_decref(f);
    st = stats_of(hub);
    ck_assert_uint_eq(st.publish_to_write.count, 1);
    ck_assert_uint_eq(st.publish_to_write.le[FERRY_HISTOGRAM_BUCKETS - 1], 1);
    ck_assert_uint_eq(st.publish_to_write.le[bucket_at(0.025)], 0);
    ck_assert_uint_eq(st.publish_to_write.le[bucket_at(10)], 1);
    ck_assert_uint_ge(st.publish_to_write.sum_ns, 30000000u);
    ck_assert_uint_lt(st.publish_to_write.sum_ns, 10000000000u);

    /* Replays of what was sent, and pulls with nothing due, are not first writes. */
    for (int i = 0; i < 32; i++) {
        f = fc_pull(c, FERRY_PULL_REPLAY);
        ck_assert_uint_eq(count_of(f, "msg"), 3);
        json_decref(f);
        json_decref(fc_pull(c, 0));
    }
    ck_assert_uint_eq(stats_of(hub).publish_to_write.count, 1);

    /* Batches 2 to 16 are not observed; the 17th is, at once: under 5 ms. */
    for (int i = 2; i <= 16; i++)
        one_batch(c, s, 0);
    ck_assert_uint_eq(stats_of(hub).publish_to_write.count, 1);
    one_batch(c, s, 0);
    st = stats_of(hub);
    ck_assert_uint_eq(st.publish_to_write.count, 2);
    ck_assert_uint_eq(st.publish_to_write.le[bucket_at(0.005)], 1);

    /* A publish to a topic pulled by two new connections: each one's first batch counts. */
    fake_conn *d1 = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(ferry_session_subscribe(app.last_session, "t"), 0);
    fake_conn *d2 = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(ferry_session_subscribe(app.last_session, "t"), 0);
    ck_assert_int_eq(ferry_hub_publish(hub, "t", "5", 1, NULL), 0);
    json_decref(fc_drain(d1));
    json_decref(fc_drain(d2));
    ck_assert_uint_eq(stats_of(hub).publish_to_write.count, 4);
    ferry_session_unref(s);
    fc_close(c);
    fc_close(d1);
    fc_close(d2);
    hub_free(hub);
}
END_TEST

/* What a resume sends again is not a first write: it would add the whole time the client
 * was away, once per resumed connection. */
START_TEST(a_resumes_resend_is_not_a_first_write)
{
    char sid[32], secret[64];
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, secret);
    ferry_session *s = ferry_session_ref(app.last_session);
    ck_assert_int_eq(ferry_session_send(s, "1", 1), 0);
    json_t *f = fc_pull(a, 0);
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    json_decref(f);
    ck_assert_uint_eq(stats_of(hub).publish_to_write.count, 1);
    fc_close(a);
    sleep_ms(300);
    fake_conn *b = fc_open(hub);
    fc_send(b, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0}", sid, secret);
    f = fc_drain(b);
    ck_assert_uint_eq(count_of(f, "msg"), 1); /* sent again */
    json_decref(f);
    ferry_stats st = stats_of(hub);
    ck_assert_uint_eq(st.publish_to_write.count, 1);
    ck_assert_uint_lt(st.publish_to_write.sum_ns, 250000000u);
    ferry_session_unref(s);
    fc_close(b);
    hub_free(hub);
}
END_TEST

static void tiny_outbox(ferry_options *o)
{
    o->outbox_max_msgs = 2;
}

/* Resets are counted when their frame is pulled: a failed resume's, and an attached
 * session's final one; a close is not a reset. */
START_TEST(resets_are_counted_by_reason)
{
    ferry_hub *hub = hub_new(tiny_outbox);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *s = ferry_session_ref(app.last_session);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(ferry_session_send(s, "0", 1), 0);
    ck_assert_int_eq(ferry_session_send(s, "0", 1), FERRY_EFULL);
    ferry_hub_tick(hub);
    ck_assert_uint_eq(stats_of(hub).resets[FERRY_REASON_OVERFLOW], 0); /* not pulled yet */
    json_t *f = fc_drain(c);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "overflow");
    json_decref(f);
    ferry_stats st = stats_of(hub);
    ck_assert_uint_eq(st.resets[FERRY_REASON_OVERFLOW], 1);
    ck_assert_uint_eq(st.resets[FERRY_REASON_UNKNOWN], 0);
    ferry_session_unref(s);
    fc_close(c);

    /* A resume of a session nobody knows: reset unknown, then a new welcome. */
    fake_conn *r = fc_open(hub);
    ck_assert_int_eq(fc_send(r, "{\"t\":\"resume\",\"v\":1,\"sid\":\"AAAAAAAAAAAAAAAAAAAAAA\","
                                "\"secret\":\"x\",\"ack\":0}"), 0);
    f = fc_drain(r);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    st = stats_of(hub);
    ck_assert_uint_eq(st.resets[FERRY_REASON_UNKNOWN], 1);
    ck_assert_uint_eq(st.resets[FERRY_REASON_OVERFLOW], 1);

    /* The application closing a session sends close, not reset. */
    ck_assert_int_eq(ferry_session_close(app.last_session), 0);
    ferry_hub_tick(hub);
    f = fc_drain(r);
    ck_assert_uint_eq(count_of(f, "close"), 1);
    json_decref(f);
    st = stats_of(hub);
    ck_assert_uint_eq(st.resets[FERRY_REASON_SERVER], 0);
    ck_assert_uint_eq(st.resets[FERRY_REASON_UNKNOWN] + st.resets[FERRY_REASON_OVERFLOW], 2);
    /* A ferry_stats from a header before these fields is filled up to its size only. */
    struct {
        ferry_stats st;
        uint64_t canary;
    } old = {.st = {.size = offsetof(ferry_stats, resets)}, .canary = 0x5a5a};
    memset(old.st.resets, 0x77, sizeof old.st - offsetof(ferry_stats, resets));
    ck_assert_int_eq(ferry_hub_stats(hub, &old.st), FERRY_OK);
    ck_assert_uint_eq(old.st.limits[FERRY_LIMIT_OUTBOX], 1);
    ck_assert_uint_eq(old.st.resets[FERRY_REASON_UNKNOWN], 0x7777777777777777u);
    ck_assert_uint_eq(old.canary, 0x5a5a);
    /* No cluster: no Redis measured. */
    ck_assert_uint_eq(st.redis_rtt.count, 0);
    ck_assert_uint_eq(st.redis_errors, 0);
    fc_close(r);
    hub_free(hub);
}
END_TEST

Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("stats");
    tcase_add_test(tc, histogram_bounds_are_fixed);
    tcase_add_test(tc, publish_to_write_samples_batches_at_first_send);
    tcase_add_test(tc, resets_are_counted_by_reason);
    tcase_add_test(tc, a_resumes_resend_is_not_a_first_write);
    suite_add_tcase(s, tc);
    return s;
}
