#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "session.h"

START_TEST(publish_encodes_once_and_shares_the_message)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c[3];
    ferry_session *s[3];
    for (int i = 0; i < 3; i++) {
        c[i] = fc_hello(hub, NULL, NULL);
        s[i] = app.last_session;
        ck_assert_int_eq(ferry_session_subscribe(s[i], "match/1"), 0);
        ck_assert_int_eq(ferry_session_subscribe(s[i], "match/1"), 0); /* idempotent */
    }
    size_t queued;
    const char *ev = "{\"goal\":\"home\",\"min\":12}";
    ck_assert_int_eq(ferry_hub_publish(hub, "match/1", ev, strlen(ev), &queued), 0);
    ck_assert_uint_eq(queued, 3);
    fy_msg *m = fy_outbox_at(&s[0]->out, 1);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_eq(fy_outbox_at(&s[1]->out, 1), m);
    ck_assert_ptr_eq(fy_outbox_at(&s[2]->out, 1), m);
    ck_assert_uint_eq(atomic_load(&m->refs), 3);
    for (int i = 0; i < 3; i++) {
        json_t *f = fc_drain(c[i]);
        json_t *msg = frame_of(f, "msg", 0);
        ck_assert_str_eq(str_of(msg, "topic"), "match/1");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(msg, "data"), "min")), 12);
        json_decref(f);
    }
    ck_assert_int_eq(ferry_hub_publish(hub, "match/2", ev, strlen(ev), &queued), 0);
    ck_assert_uint_eq(queued, 0);
    for (int i = 0; i < 3; i++)
        fc_close(c[i]);
    hub_free(hub);
}
END_TEST

START_TEST(unsubscribe_and_ended_sessions_stop_delivery)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, NULL, NULL);
    ferry_session *sa = app.last_session;
    fake_conn *b = fc_hello(hub, NULL, NULL);
    ferry_session *sb = app.last_session;
    ferry_session_subscribe(sa, "t");
    ferry_session_subscribe(sb, "t");
    ferry_session_subscribe(sb, "u");
    ck_assert_int_eq(ferry_session_unsubscribe(sa, "t"), 0);
    ck_assert_int_eq(ferry_session_unsubscribe(sa, "never"), 0);
    size_t queued;
    ck_assert_int_eq(ferry_hub_publish(hub, "t", "1", 1, &queued), 0);
    ck_assert_uint_eq(queued, 1);
    ck_assert_int_eq(fc_send(b, "{\"t\":\"close\"}"), 0);
    ck_assert_int_eq(ferry_hub_publish(hub, "t", "1", 1, &queued), 0);
    ck_assert_uint_eq(queued, 0);
    ck_assert_int_eq(ferry_hub_publish(hub, "u", "1", 1, &queued), 0);
    ck_assert_uint_eq(queued, 0);
    ck_assert_int_eq(ferry_session_subscribe(sb, "t"), FERRY_ECLOSED);
    fc_close(a);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(bad_topics_and_payloads_are_refused)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, NULL, NULL);
    ferry_session *s = app.last_session;
    char long_name[200];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(ferry_session_subscribe(s, ""), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, "a b"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, "a\"b"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, long_name), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, "ok:topic/1.2-x_y"), 0);
    size_t queued = 99;
    ck_assert_int_eq(ferry_hub_publish(hub, "ok:topic/1.2-x_y", "{", 1, &queued), FERRY_EJSON);
    ck_assert_uint_eq(queued, 0);
    ck_assert_int_eq(ferry_hub_publish(hub, "bad topic", "1", 1, NULL), FERRY_EINVAL);
    ck_assert_uint_eq(s->out.count, 0);
    fc_close(a);
    hub_free(hub);
}
END_TEST

START_TEST(send_by_session_id)
{
    char sid[32];
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, NULL);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "[1,2]", 5), 0);
    ck_assert_int_eq(ferry_hub_send(hub, "AAAAAAAAAAAAAAAAAAAAAA", "1", 1), FERRY_ENOTFOUND);
    ck_assert_int_eq(ferry_hub_send(hub, "", "1", 1), FERRY_ENOTFOUND);
    json_t *f = fc_drain(a);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(frame_of(f, "msg", 0), "data"), 1)), 2);
    json_decref(f);
    ferry_session_close(app.last_session);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "1", 1), FERRY_ECLOSED);
    fc_close(a);
    hub_free(hub);
}
END_TEST

START_TEST(clients_subscribe_where_the_application_allows)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"sub\",\"topic\":\"public/a\"},"
                                "{\"t\":\"msg\",\"seq\":1,\"data\":1},"
                                "{\"t\":\"sub\",\"topic\":\"secret/x\"}]"),
                     0);
    ck_assert_int_eq(app.messages, 1);
    json_t *f = fc_drain(c);
    ck_assert_str_eq(str_of(frame_of(f, "error", 0), "code"), "forbidden");
    json_decref(f);
    size_t q;
    ferry_hub_publish(hub, "public/a", "1", 1, &q);
    ck_assert_uint_eq(q, 1);
    ferry_hub_publish(hub, "secret/x", "1", 1, &q);
    ck_assert_uint_eq(q, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"unsub\",\"topic\":\"public/a\"}"), 0);
    ferry_hub_publish(hub, "public/a", "1", 1, &q);
    ck_assert_uint_eq(q, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"sub\",\"topic\":\"no spaces\"}"), FERRY_EFIELD);
    fc_close(c);
    hub_free(hub);
}
END_TEST

/* A connection whose wake can be parked: it stands for a publisher that is descheduled in
 * the middle of its fan-out, as happens when every push wakes a sleeping poll thread on a
 * busy machine. A parked wake waits (at most PARK_MS) for the test to release it; it runs
 * with that one session's lock held. */
#define PARK_MS 1000

typedef struct parked_conn {
    ferry_link *link;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool park;      /* the next wake parks */
    bool parked;    /* a wake is parked now */
    bool released;
    bool timed_out; /* a parked wake gave up waiting for the release */
} parked_conn;

static void parked_wake(void *ud)
{
    parked_conn *p = ud;
    pthread_mutex_lock(&p->lock);
    if (p->park) {
        p->park = false;
        p->parked = true;
        pthread_cond_broadcast(&p->cond);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += PARK_MS / 1000;
        while (!p->released && !p->timed_out)
            if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
                p->timed_out = true;
        p->parked = false;
    }
    pthread_mutex_unlock(&p->lock);
}

static const ferry_link_ops parked_ops = {sizeof parked_ops, parked_wake, NULL};

/* A new session on a parked connection, its welcome pulled so that the next push wakes it. */
static ferry_session *parked_hello(ferry_hub *hub, parked_conn *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    ck_assert_int_eq(ferry_link_new(&p->link, hub, &parked_ops, p), 0);
    const char *hello = "{\"t\":\"hello\",\"v\":1}";
    ck_assert_int_eq(ferry_link_recv(p->link, hello, strlen(hello)), 0);
    ferry_buf b = {0};
    ck_assert_int_eq(ferry_link_pull(p->link, &b, 0), 1);
    ferry_buf_release(&b);
    return app.last_session;
}

static void parked_free(parked_conn *p)
{
    ferry_link_free(p->link);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

/* Waits until a wake of p is parked; false after PARK_MS. */
static bool wait_parked(parked_conn *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += PARK_MS / 1000;
    pthread_mutex_lock(&p->lock);
    while (!p->parked && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
        ;
    bool parked = p->parked;
    pthread_mutex_unlock(&p->lock);
    return parked;
}

/* Releases the parked wake; true if it was still waiting (nothing the test did meanwhile
 * had to wait for the publish). */
static bool release(parked_conn *p)
{
    pthread_mutex_lock(&p->lock);
    p->released = true;
    bool in_time = !p->timed_out;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return in_time;
}

typedef struct pub_job {
    ferry_hub *hub;
    const char *topic, *json;
    size_t queued;
    int rc;
} pub_job;

static void *publish_main(void *arg)
{
    pub_job *j = arg;
    j->rc = ferry_hub_publish(j->hub, j->topic, j->json, strlen(j->json), &j->queued);
    return NULL;
}

/* The seqs of the msg frames in `frames` whose data is `data`. */
static json_int_t seq_of_data(json_t *frames, json_int_t data)
{
    for (size_t i = 0; i < count_of(frames, "msg"); i++) {
        json_t *m = frame_of(frames, "msg", i);
        if (json_integer_value(json_object_get(m, "data")) == data)
            return int_of(m, "seq");
    }
    return -1;
}

/* The last character of the message at `seq` in s's outbox: its one-digit data. */
static char data_digit(ferry_session *s, uint64_t seq)
{
    const fy_msg *m = fy_outbox_at(&s->out, seq);
    ck_assert_ptr_nonnull(m);
    return m->body[m->len - 1];
}

/* While one publish is part-way through its fan-out, everything else that needs the hub's
 * session table or topics goes ahead: a resume, a new session and its subscription, an
 * unsubscribe and a send by ID. (They used to wait for the whole fan-out, and a publisher
 * that fanned out back to back to 10,000 long-polls starved a resume storm of that lock.) */
START_TEST(a_publish_does_not_hold_up_resumes_during_its_fan_out)
{
    char sid_b[32], secret_b[64], sid_c[32];
    ferry_hub *hub = hub_new(NULL);
    parked_conn a;
    ferry_session *sa = parked_hello(hub, &a);
    fake_conn *b = fc_hello(hub, sid_b, secret_b);
    ferry_session *sb = app.last_session;
    fake_conn *c = fc_hello(hub, sid_c, NULL);
    ferry_session *sc = app.last_session;
    ck_assert_int_eq(ferry_session_subscribe(sa, "t"), 0);
    ck_assert_int_eq(ferry_session_subscribe(sb, "t"), 0);
    ck_assert_int_eq(ferry_session_subscribe(sc, "t"), 0);
    fc_close(b); /* b's client dropped: it will resume while the publish is under way */

    a.park = true;
    pub_job j = {hub, "t", "7", 0, -1};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, publish_main, &j), 0);
    ck_assert_msg(wait_parked(&a), "the publish never reached the first subscriber");

    fake_conn *b2 = fc_open(hub);
    ck_assert_int_eq(fc_send(b2, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0}",
                             sid_b, secret_b),
                     0);
    fake_conn *d = fc_hello(hub, NULL, NULL);
    ferry_session *sd = app.last_session;
    ck_assert_int_eq(ferry_session_subscribe(sd, "t"), 0);
    ck_assert_int_eq(ferry_session_unsubscribe(sc, "t"), 0);
    ck_assert_int_eq(ferry_hub_send(hub, sid_c, "8", 1), 0);
    bool in_time = release(&a);
    pthread_join(t, NULL);
    ck_assert_msg(in_time, "a resume, a hello, a subscription, an unsubscribe or a send waited "
                           "for another publish's fan-out");

    /* The publish reached the sessions subscribed when it began, less c, which unsubscribed
     * before its turn; d subscribed after it began. */
    ck_assert_int_eq(j.rc, 0);
    ck_assert_uint_eq(j.queued, 2);
    ck_assert_uint_eq(sa->out.count, 1);
    json_t *f = fc_drain(b2);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    ck_assert_int_eq(seq_of_data(f, 7), 1);
    json_decref(f);
    f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    ck_assert_int_eq(seq_of_data(f, 8), 1);
    json_decref(f);
    f = fc_drain(d);
    ck_assert_uint_eq(count_of(f, "msg"), 0);
    json_decref(f);
    fc_close(b2);
    fc_close(c);
    fc_close(d);
    parked_free(&a);
    hub_free(hub);
}
END_TEST

/* Two publishes to one topic at once reach every subscriber in the same order, even when
 * the subscriber list changes between them (which reorders it). */
START_TEST(concurrent_publishes_reach_every_subscriber_in_one_order)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, NULL, NULL);
    ferry_session *sa = app.last_session;
    parked_conn b;
    ferry_session *sb = parked_hello(hub, &b);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *sc = app.last_session;
    ck_assert_int_eq(ferry_session_subscribe(sa, "t"), 0);
    ck_assert_int_eq(ferry_session_subscribe(sb, "t"), 0);
    ck_assert_int_eq(ferry_session_subscribe(sc, "t"), 0);

    b.park = true;
    pub_job j1 = {hub, "t", "1", 0, -1}, j2 = {hub, "t", "2", 0, -1};
    pthread_t t1, t2;
    ck_assert_int_eq(pthread_create(&t1, NULL, publish_main, &j1), 0);
    ck_assert_msg(wait_parked(&b), "the first publish never reached b");
    /* a leaves and comes back: the topic now lists c first. */
    ck_assert_int_eq(ferry_session_unsubscribe(sa, "t"), 0);
    ck_assert_int_eq(ferry_session_subscribe(sa, "t"), 0);
    ck_assert_int_eq(pthread_create(&t2, NULL, publish_main, &j2), 0);
    struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL); /* time for the second publish to overtake, if it could */
    bool in_time = release(&b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    ck_assert_msg(in_time, "an unsubscribe or a subscribe waited for a publish's fan-out");
    ck_assert_int_eq(j1.rc, 0);
    ck_assert_int_eq(j2.rc, 0);
    ck_assert_uint_eq(j1.queued, 3);
    ck_assert_uint_eq(j2.queued, 3);

    ferry_session *all[3] = {sa, sb, sc};
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(all[i]->out.count, 2);
        ck_assert_int_eq(data_digit(all[i], 1), '1');
        ck_assert_int_eq(data_digit(all[i], 2), '2');
    }
    fc_close(a);
    fc_close(c);
    parked_free(&b);
    hub_free(hub);
}
END_TEST

Suite *topic_suite(void)
{
    Suite *s = suite_create("topic");
    TCase *tc = tcase_create("topic");
    tcase_add_test(tc, publish_encodes_once_and_shares_the_message);
    tcase_add_test(tc, unsubscribe_and_ended_sessions_stop_delivery);
    tcase_add_test(tc, bad_topics_and_payloads_are_refused);
    tcase_add_test(tc, send_by_session_id);
    tcase_add_test(tc, clients_subscribe_where_the_application_allows);
    tcase_add_test(tc, a_publish_does_not_hold_up_resumes_during_its_fan_out);
    tcase_add_test(tc, concurrent_publishes_reach_every_subscriber_in_one_order);
    suite_add_tcase(s, tc);
    return s;
}
