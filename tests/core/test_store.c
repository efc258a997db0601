/* The session store's contract (store.h), and the hub over a slow, fallible store: every
 * call either succeeds or reports an error and leaves the session as it was, and messages
 * stay exactly-once in both directions whatever the store does. The store behind the die
 * is the in-memory one here; the cluster suite runs these same tests over Redis. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "hub.h"
#include "session.h"
#include "store_faulty.h"

static const faulty_cfg calm = {.seed = 1};

static ferry_session *find(ferry_hub *hub, const char *sid)
{
    ferry_session *s = NULL;
    ck_assert_int_eq(hub->store->ops->find(hub->store, sid, strlen(sid), &s), 0);
    return s;
}

/* The code of the first error frame in `f`, or "". */
static const char *error_code(json_t *f)
{
    json_t *e = frame_of(f, "error", 0);
    return e ? str_of(e, "code") : "";
}

START_TEST(the_store_saves_by_compare_and_set)
{
    ferry_hub *hub = hub_new_store(NULL, faulty_store_new(&calm));
    char sid[32];
    fake_conn *c = fc_hello(hub, sid, NULL);
    ferry_session *s = find(hub, sid), *none = s;
    fy_store *st = hub->store;
    fy_rec a, b;

    pthread_mutex_lock(&s->lock);
    uint64_t v = s->rec.version;
    ck_assert_int_eq(st->ops->load(st, s, &a), 0);
    ck_assert_int_eq(st->ops->load(st, s, &b), 0);
    a.in_seq = 7;
    b.in_seq = 9;
    /* Two writers from the same version: exactly one wins. */
    ck_assert_int_eq(st->ops->save(st, s, &a), 0);
    ck_assert_int_eq(st->ops->save(st, s, &b), FY_STORE_STALE);
    ck_assert_uint_eq(s->rec.in_seq, 7);
    ck_assert_uint_eq(s->rec.version, v + 1);
    /* The loser loads again and decides again. */
    ck_assert_int_eq(st->ops->load(st, s, &b), 0);
    b.in_seq = 0;
    ck_assert_int_eq(st->ops->save(st, s, &b), 0);
    ck_assert_uint_eq(s->rec.version, v + 2);
    pthread_mutex_unlock(&s->lock);
    ferry_session_unref(s);

    ck_assert_int_eq(st->ops->find(st, "AAAAAAAAAAAAAAAAAAAAAA", 22, &none), FERRY_ENOTFOUND);
    ck_assert_ptr_null(none);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void one_per_identity(ferry_options *o)
{
    o->max_sessions_per_identity = 1;
}

START_TEST(a_hello_the_store_refuses_leaves_nothing_behind)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(one_per_identity, st);
    fake_conn *c = fc_open(hub);
    faulty_store_fail_next(st, FAULTY_ADD, 1, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":1,\"token\":\"ann\"}"), FERRY_ESTORE);
    json_t *f = fc_drain(c);
    ck_assert_str_eq(error_code(f), "internal");
    ck_assert_ptr_null(frame_of(f, "welcome", 0));
    json_decref(f);
    ck_assert_ptr_null(ferry_link_session_id(c->link));
    ck_assert_int_eq(app.opens, 0);
    ck_assert_uint_eq(st->ops->count(st), 0);
    ferry_stats stats = {.size = sizeof stats};
    ferry_hub_stats(hub, &stats);
    ck_assert_uint_eq(stats.sessions_opened, 0);
    ck_assert_uint_eq(stats.limits[FERRY_LIMIT_IDENTITY], 0);

    /* The identity's one session was not taken: the same hello works now. */
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":1,\"token\":\"ann\"}"), 0);
    f = fc_drain(c);
    ck_assert_ptr_nonnull(frame_of(f, "welcome", 0));
    json_decref(f);
    ck_assert_int_eq(app.opens, 1);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static fake_conn *resume(ferry_hub *hub, const char *sid, const char *secret, int *rc,
                         json_t **frames)
{
    fake_conn *c = fc_open(hub);
    *rc = fc_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0}", sid,
                  secret);
    *frames = fc_drain(c);
    return c;
}

START_TEST(a_resume_the_store_fails_changes_nothing)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(NULL, st);
    char sid[32], secret[64];
    fake_conn *a = fc_hello(hub, sid, secret);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "1", 1), 0);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "2", 1), 0);
    json_t *f = fc_drain(a);
    ck_assert_int_eq((int)count_of(f, "msg"), 2);
    json_decref(f);

    /* A change is saved over the record as last loaded, and loaded again only when the save
     * finds it stale: so a failing load is reached through one stale save. */
    const faulty_op ops[] = {FAULTY_FIND, FAULTY_LOAD, FAULTY_SAVE};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        ferry_session *s = find(hub, sid);
        uint64_t version = s->rec.version;
        if (ops[i] == FAULTY_LOAD)
            faulty_store_fail_next(st, FAULTY_SAVE, 1, 1);
        faulty_store_fail_next(st, ops[i], 1, 0);
        int rc;
        fake_conn *b = resume(hub, sid, secret, &rc, &f);
        ck_assert_int_eq(rc, FERRY_ESTORE);
        ck_assert_str_eq(error_code(f), "internal");
        ck_assert_ptr_null(frame_of(f, "welcome", 0));
        ck_assert_ptr_null(frame_of(f, "reset", 0));
        json_decref(f);
        /* The session is as it was: still on the first connection, record unchanged, no
         * new session, nothing counted. */
        ck_assert_int_eq(ferry_link_end_reason(a->link), FERRY_LINK_OPEN);
        ck_assert_ptr_eq(s->link, a->link);
        ck_assert_uint_eq(s->rec.version, version);
        ck_assert_uint_eq(s->out.count, 2);
        ferry_session_unref(s);
        ferry_stats stats = {.size = sizeof stats};
        ferry_hub_stats(hub, &stats);
        ck_assert_uint_eq(stats.resumes, 0);
        for (int r = 0; r < FERRY_REASON_COUNT; r++)
            ck_assert_uint_eq(stats.resume_failures[r], 0);
        ck_assert_int_eq(app.opens, 1);
        ck_assert_int_eq(app.resets, 0);
        fc_close(b);
    }

    /* The same secret resumes once the store answers, and the two messages come again. */
    int rc;
    fake_conn *b = resume(hub, sid, secret, &rc, &f);
    ck_assert_int_eq(rc, 0);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    ck_assert_int_eq((int)count_of(f, "msg"), 2);
    ck_assert_int_eq(int_of(frame_of(f, "msg", 0), "seq"), 1);
    ck_assert_int_eq(int_of(frame_of(f, "msg", 1), "seq"), 2);
    json_decref(f);
    ck_assert_int_eq(ferry_link_end_reason(a->link), FERRY_LINK_SUPERSEDED);
    fc_close(a);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(a_stale_save_is_decided_again)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(NULL, st);
    char sid[32], secret[64];
    fake_conn *a = fc_hello(hub, sid, secret);
    int rc;
    json_t *f;

    /* Another node saved first, FY_STORE_TRIES times: the resume gives up, changing
     * nothing. */
    faulty_store_fail_next(st, FAULTY_SAVE, 8, 1);
    fake_conn *b = resume(hub, sid, secret, &rc, &f);
    ck_assert_int_eq(rc, FERRY_ESTORE);
    ck_assert_str_eq(error_code(f), "internal");
    json_decref(f);
    ck_assert_int_eq(ferry_link_end_reason(a->link), FERRY_LINK_OPEN);
    fc_close(b);

    /* Three times: loaded and decided again, and the fourth save wins. The first attempt
     * decides on the record as last saved, without a load. */
    unsigned loads = faulty_store_calls(st, FAULTY_LOAD);
    faulty_store_fail_next(st, FAULTY_SAVE, 3, 1);
    b = resume(hub, sid, secret, &rc, &f);
    ck_assert_int_eq(rc, 0);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    ck_assert_uint_eq(faulty_store_calls(st, FAULTY_LOAD) - loads, 3);
    fc_close(a);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(a_batch_the_store_refuses_is_not_delivered)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(NULL, st);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    const char *batch = "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"msg\",\"seq\":2,\"data\":2}]";

    faulty_store_fail_next(st, FAULTY_SAVE, 1, 0);
    ck_assert_int_eq(fc_send_raw(c, batch, strlen(batch)), FERRY_ESTORE);
    json_t *f = fc_drain(c);
    ck_assert_str_eq(error_code(f), "internal");
    ck_assert_ptr_null(frame_of(f, "ack", 0));
    json_decref(f);
    ck_assert_int_eq(app.messages, 0);

    /* The client still holds them (nothing was acked) and sends them again: once each. */
    ck_assert_int_eq(fc_send_raw(c, batch, strlen(batch)), 0);
    ck_assert_int_eq(fc_send_raw(c, batch, strlen(batch)), 0);
    f = fc_drain(c);
    ck_assert_int_eq(int_of(frame_of(f, "ack", 0), "ack"), 2);
    json_decref(f);
    ck_assert_int_eq(app.messages, 2);
    ck_assert_int_eq(json_integer_value(json_array_get(app.received, 0)), 1);
    ck_assert_int_eq(json_integer_value(json_array_get(app.received, 1)), 2);
    fc_close(c);
    hub_free(hub);
}
END_TEST

/* A batch that finds the stored record moved on (another node took the session and
 * delivered from it) is not applied, and its connection is let go, so that the client
 * resumes where the session is now instead of waiting for an ack that never comes. */
START_TEST(a_batch_that_finds_the_record_moved_on_lets_its_connection_go)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(NULL, st);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    json_decref(fc_drain(c));
    faulty_store_move_next(st);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"msg\",\"seq\":1,\"data\":1}"), FERRY_ECLOSED);
    ck_assert_int_eq(app.messages, 0);
    ck_assert(ferry_link_done(c->link));
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_SUPERSEDED);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void tiny_outbox(ferry_options *o)
{
    o->outbox_max_msgs = 2;
}

/* A publish holds its lock across every subscriber, so an overflow it causes must not wait
 * on the store: the end is saved by the next tick. */
START_TEST(an_overflow_in_a_publish_leaves_the_store_to_the_tick)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(tiny_outbox, st);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    json_decref(fc_drain(c));
    ferry_session *s = ferry_session_ref(app.last_session);
    ck_assert_int_eq(ferry_session_subscribe(s, "news"), 0);
    unsigned saves = faulty_store_calls(st, FAULTY_SAVE);
    for (int i = 0; i < 3; i++)
        ferry_hub_publish(hub, "news", "1", 1, NULL); /* the third overflows */
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_EXPIRED);
    ck_assert_uint_eq(faulty_store_calls(st, FAULTY_SAVE), saves);
    ferry_hub_tick(hub);
    ck_assert_uint_eq(faulty_store_calls(st, FAULTY_SAVE), saves + 1);
    ck_assert_int_eq(s->rec.end_reason, FERRY_REASON_OVERFLOW);
    ferry_session_unref(s);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(an_end_the_store_missed_is_saved_by_the_tick)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(NULL, st);
    char sid[32];
    fake_conn *c = fc_hello(hub, sid, NULL);
    ferry_session *s = find(hub, sid);

    faulty_store_fail_next(st, FAULTY_SAVE, 1, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"close\"}"), 0);
    ck_assert_int_eq(app.closes, 1);
    pthread_mutex_lock(&s->lock);
    ck_assert_int_eq(s->state, FERRY_STATE_EXPIRED);
    ck_assert(s->end_unsaved);
    ck_assert_int_eq(s->rec.end_reason, FERRY_REASON_NONE);
    pthread_mutex_unlock(&s->lock);

    ferry_hub_tick(hub);
    pthread_mutex_lock(&s->lock);
    ck_assert(!s->end_unsaved);
    ck_assert_int_eq(s->rec.end_reason, FERRY_REASON_CLOSED);
    pthread_mutex_unlock(&s->lock);

    /* The tombstone goes once its time is up and the store lets it. */
    test_now += 24u * 3600 * 1000;
    faulty_store_fail_next(st, FAULTY_REMOVE, 1, 0);
    ferry_hub_tick(hub);
    ck_assert_uint_eq(st->ops->count(st), 1);
    ferry_hub_tick(hub);
    ck_assert_uint_eq(st->ops->count(st), 0);
    ferry_session_unref(s);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(a_send_the_store_cannot_look_up_queues_nothing)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(NULL, st);
    char sid[32];
    fake_conn *c = fc_hello(hub, sid, NULL);
    faulty_store_fail_next(st, FAULTY_FIND, 1, 0);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "1", 1), FERRY_ESTORE);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "2", 1), 0);
    json_t *f = fc_drain(c);
    ck_assert_int_eq((int)count_of(f, "msg"), 1);
    ck_assert_int_eq(int_of(frame_of(f, "msg", 0), "seq"), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(frame_of(f, "msg", 0), "data")), 2);
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

/* A long-poll proves its secret on every request (ferry_link_check_secret). The secret is
 * right whatever the store says; if the store cannot record that the client now uses it,
 * the session stays unconfirmed (as it was) and the next check records it. */
START_TEST(a_secret_check_the_store_cannot_record_still_passes)
{
    fy_store *st = faulty_store_new(&calm);
    ferry_hub *hub = hub_new_store(NULL, st);
    char sid[32], old[64], fresh[64];
    fake_conn *a = fc_hello(hub, sid, old);
    int rc;
    json_t *f;
    fake_conn *b = resume(hub, sid, old, &rc, &f);
    ck_assert_int_eq(rc, 0);
    snprintf(fresh, sizeof fresh, "%s", str_of(frame_of(f, "welcome", 0), "secret"));
    json_decref(f);
    ferry_session *s = find(hub, sid);
    ck_assert(s->rec.unconfirmed);

    faulty_store_fail_next(st, FAULTY_SAVE, 1, 0);
    ck_assert_int_eq(ferry_link_check_secret(b->link, fresh, strlen(fresh)), 0);
    ck_assert(s->rec.unconfirmed);
    ck_assert_int_eq(ferry_link_check_secret(b->link, fresh, strlen(fresh)), 0);
    ck_assert(!s->rec.unconfirmed);
    ferry_session_unref(s);
    fc_close(a);
    fc_close(b);
    hub_free(hub);
}
END_TEST

/* A client over a flaky store: it sends numbered messages and keeps each until acked,
 * drops its connection and resumes at random, and checks what it receives: in order, no
 * gap, a copy only of what it already has. */
typedef struct client {
    ferry_hub *hub;
    fake_conn *c;          /* NULL while disconnected */
    char sid[32], secret[64];
    int64_t sent, acked;   /* messages sent (data 1..sent), acknowledged by the server */
    int64_t in;            /* last server seq received */
    int64_t expect_next;   /* the data the next new server message must carry */
} client;

static void client_send_pending(client *k)
{
    for (int64_t i = k->acked + 1; i <= k->sent; i++)
        fc_send(k->c, "{\"t\":\"msg\",\"seq\":%lld,\"data\":%lld}", (long long)i, (long long)i);
}

static void client_take(client *k, json_t *frames)
{
    size_t i;
    json_t *f;
    bool got = false;
    json_array_foreach(frames, i, f) {
        const char *t = str_of(f, "t");
        ck_assert_msg(strcmp(t, "reset") != 0, "the session was reset");
        if (strcmp(t, "welcome") == 0) {
            snprintf(k->secret, sizeof k->secret, "%s", str_of(f, "secret"));
        } else if (strcmp(t, "ack") == 0) {
            if (int_of(f, "ack") > k->acked)
                k->acked = int_of(f, "ack");
        } else if (strcmp(t, "msg") == 0) {
            int64_t seq = int_of(f, "seq");
            ck_assert_msg(seq <= k->in + 1, "gap: seq %lld after %lld", (long long)seq,
                          (long long)k->in);
            if (seq == k->in + 1) {
                ck_assert_int_eq(int_of(f, "data"), k->expect_next);
                k->expect_next++;
                k->in = seq;
                got = true;
            }
        }
    }
    if (got)
        fc_send(k->c, "{\"t\":\"ack\",\"ack\":%lld}", (long long)k->in);
}

static void client_resume(client *k)
{
    k->c = fc_open(k->hub);
    int rc = fc_send(k->c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%lld}",
                     k->sid, k->secret, (long long)k->in);
    json_t *f = fc_drain(k->c);
    if (rc != 0) { /* the store failed: try again later */
        ck_assert_int_eq(rc, FERRY_ESTORE);
        ck_assert_str_eq(error_code(f), "internal");
        json_decref(f);
        fc_close(k->c);
        k->c = NULL;
        return;
    }
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    client_take(k, f);
    json_decref(f);
    client_send_pending(k);
}

static void client_step(client *k, fy_store *st, uint64_t *rnd, int64_t *published)
{
    *rnd = *rnd * 6364136223846793005u + 1442695040888963407u;
    unsigned r = (unsigned)(*rnd >> 33) % 100;
    if (!k->c) {
        client_resume(k);
    } else if (r < 30) {
        k->sent++;
        fc_send(k->c, "{\"t\":\"msg\",\"seq\":%lld,\"data\":%lld}", (long long)k->sent,
                (long long)k->sent);
    } else if (r < 55) {
        char data[32];
        int n = snprintf(data, sizeof data, "%lld", (long long)(*published + 1));
        int rc = ferry_hub_send(k->hub, k->sid, data, (size_t)n);
        ck_assert(rc == 0 || rc == FERRY_ESTORE);
        *published += rc == 0;
    } else if (r < 85) {
        json_t *f = fc_pull(k->c, 0);
        client_take(k, f);
        json_decref(f);
    } else if (r < 92) {
        fc_close(k->c);
        k->c = NULL;
    } else {
        ferry_hub_tick(k->hub);
    }
    (void)st;
}

START_TEST(messages_stay_exactly_once_over_a_failing_store)
{
    for (uint64_t seed = 1; seed <= 40; seed++) {
        faulty_cfg cfg = {.seed = seed, .fail_pct = 15, .stale_pct = 10};
        fy_store *st = faulty_store_new(&cfg);
        ferry_hub *hub = hub_new_store(NULL, st);
        client k = {.hub = hub, .expect_next = 1};
        faulty_store_set(st, &calm);
        k.c = fc_hello(hub, k.sid, k.secret);
        faulty_store_set(st, &cfg);
        uint64_t rnd = seed;
        int64_t published = 0;
        for (int i = 0; i < 300; i++)
            client_step(&k, st, &rnd, &published);

        /* The store recovers: everything arrives, once. */
        faulty_store_set(st, &calm);
        if (k.c)
            fc_close(k.c);
        client_resume(&k);
        ck_assert_ptr_nonnull(k.c);
        for (int i = 0; i < 4; i++) {
            json_t *f = fc_drain(k.c);
            client_take(&k, f);
            json_decref(f);
        }
        ck_assert_int_eq(k.in, published);
        ck_assert_int_eq(k.acked, k.sent);
        ck_assert_int_eq((int64_t)json_array_size(app.received), k.sent);
        for (int64_t i = 0; i < k.sent; i++)
            ck_assert_int_eq(json_integer_value(json_array_get(app.received, (size_t)i)), i + 1);
        ck_assert_int_eq(app.resets, 0);
        ck_assert_int_eq(app.opens, 1);
        ck_assert_uint_gt(faulty_store_failures(st, FAULTY_SAVE) +
                              faulty_store_failures(st, FAULTY_FIND), 0);
        fc_close(k.c);
        hub_free(hub);
    }
}
END_TEST

/* Several connections resume one session at once over a slow, failing store while the
 * application sends to it: one connection ends up holding the session, and it receives
 * every message the application was told was queued, once, in order. */
typedef struct racer {
    ferry_hub *hub;
    const char *sid, *secret;
    ferry_link *link;
    atomic_int wakes;
    int rc;
} racer;

static void racer_wake(void *ud)
{
    atomic_fetch_add(&((racer *)ud)->wakes, 1);
}

static const ferry_link_ops racer_ops = {sizeof racer_ops, racer_wake, NULL};

static void *race_resume(void *ud)
{
    racer *r = ud;
    char text[256];
    int n = snprintf(text, sizeof text,
                     "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0}",
                     r->sid, r->secret);
    r->rc = ferry_link_recv(r->link, text, (size_t)n);
    return NULL;
}

typedef struct sender {
    ferry_hub *hub;
    const char *sid;
    int sent[200];
    int nsent;
} sender;

static void *race_send(void *ud)
{
    sender *p = ud;
    for (int i = 1; i <= 200; i++) {
        char data[16];
        int n = snprintf(data, sizeof data, "%d", i);
        if (ferry_hub_send(p->hub, p->sid, data, (size_t)n) == 0)
            p->sent[p->nsent++] = i;
    }
    return NULL;
}

/* The race's application: counts opens and resets from any thread. */
static atomic_int race_opens, race_resets;

static void race_on_open(ferry_session *s, void *ud)
{
    (void)s;
    (void)ud;
    atomic_fetch_add(&race_opens, 1);
}

static void race_on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    (void)s;
    (void)why;
    (void)ud;
    atomic_fetch_add(&race_resets, 1);
}

START_TEST(racing_resumes_over_a_slow_store_leave_one_holder)
{
    faulty_cfg cfg = {.seed = 7, .fail_pct = 10, .stale_pct = 10, .delay_pct = 50,
                      .max_delay_us = 200};
    fy_store *st = faulty_store_new(&calm);
    ferry_options o;
    ferry_options_init(&o);
    ferry_callbacks cb = {.size = sizeof cb, .on_open = race_on_open, .on_reset = race_on_reset};
    ferry_hub *hub;
    atomic_store(&race_opens, 0);
    atomic_store(&race_resets, 0);
    ck_assert_int_eq(fy_hub_new_store(&hub, &o, &cb, NULL, st), 0);
    char sid[32], secret[64];
    fake_conn *a = fc_hello(hub, sid, secret);
    faulty_store_set(st, &cfg);

    enum { N = 4 };
    racer r[N];
    pthread_t t[N + 1];
    sender p = {.hub = hub, .sid = sid};
    for (int i = 0; i < N; i++) {
        r[i] = (racer){.hub = hub, .sid = sid, .secret = secret};
        ck_assert_int_eq(ferry_link_new(&r[i].link, hub, &racer_ops, &r[i]), 0);
    }
    pthread_create(&t[N], NULL, race_send, &p);
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, race_resume, &r[i]);
    for (int i = 0; i <= N; i++)
        pthread_join(t[i], NULL);
    faulty_store_set(st, &calm);

    ferry_session *s = find(hub, sid);
    int holders = 0, holder = -1;
    for (int i = 0; i < N; i++) {
        ck_assert(r[i].rc == 0 || r[i].rc == FERRY_ESTORE);
        if (s->link == r[i].link) {
            holders++;
            holder = i;
        }
    }
    ck_assert_int_eq(atomic_load(&race_resets), 0);
    ck_assert_int_eq(atomic_load(&race_opens), 1);
    if (holder < 0) /* every resume met a store failure: the first connection keeps it */
        ck_assert_ptr_eq(s->link, a->link);
    else
        ck_assert_int_eq(holders, 1);
    /* Every other connection was let go (taken over) or never bound: none still thinks it
     * holds the session. */
    for (int i = 0; i < N; i++) {
        if (i == holder)
            continue;
        bool bound = ferry_link_session_id(r[i].link) != NULL;
        ck_assert_msg(!bound || (ferry_link_done(r[i].link) &&
                                 ferry_link_end_reason(r[i].link) == FERRY_LINK_SUPERSEDED),
                      "racer %d is bound and not let go", i);
    }
    if (holder >= 0) {
        ck_assert(ferry_link_done(a->link));
        ck_assert_int_eq(ferry_link_end_reason(a->link), FERRY_LINK_SUPERSEDED);
    }
    ferry_session_unref(s);

    /* The holder pulls everything from the start: each message once, in order. */
    ferry_link *hl = holder < 0 ? a->link : r[holder].link;
    ferry_buf b = {0};
    json_t *all = json_array();
    for (;;) {
        b.len = 0;
        int n = ferry_link_pull(hl, &b, FERRY_PULL_ARRAY | (json_array_size(all) ? 0 : FERRY_PULL_REPLAY));
        ck_assert_int_ge(n, 0);
        json_t *v = json_loadb(b.data, b.len, 0, NULL);
        ck_assert_ptr_nonnull(v);
        size_t got = json_array_size(v);
        json_array_extend(all, v);
        json_decref(v);
        if (!got)
            break;
    }
    int k = 0;
    size_t i;
    json_t *f;
    json_array_foreach(all, i, f) {
        if (strcmp(str_of(f, "t"), "msg") != 0)
            continue;
        ck_assert_int_lt(k, p.nsent);
        ck_assert_int_eq(int_of(f, "seq"), k + 1);
        ck_assert_int_eq(int_of(f, "data"), p.sent[k]);
        k++;
    }
    ck_assert_int_eq(k, p.nsent);
    json_decref(all);
    ferry_buf_release(&b);
    for (int j = 0; j < N; j++)
        ferry_link_free(r[j].link);
    fc_close(a);
    ferry_hub_free(hub);
}
END_TEST

Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, the_store_saves_by_compare_and_set);
    tcase_add_test(tc, a_hello_the_store_refuses_leaves_nothing_behind);
    tcase_add_test(tc, a_resume_the_store_fails_changes_nothing);
    tcase_add_test(tc, a_stale_save_is_decided_again);
    tcase_add_test(tc, a_batch_the_store_refuses_is_not_delivered);
    tcase_add_test(tc, a_batch_that_finds_the_record_moved_on_lets_its_connection_go);
    tcase_add_test(tc, an_overflow_in_a_publish_leaves_the_store_to_the_tick);
    tcase_add_test(tc, an_end_the_store_missed_is_saved_by_the_tick);
    tcase_add_test(tc, a_send_the_store_cannot_look_up_queues_nothing);
    tcase_add_test(tc, a_secret_check_the_store_cannot_record_still_passes);
    tcase_add_test(tc, messages_stay_exactly_once_over_a_failing_store);
    tcase_add_test(tc, racing_resumes_over_a_slow_store_leave_one_holder);
    suite_add_tcase(s, tc);
    return s;
}
