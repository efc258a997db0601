#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "session.h"

static fake_conn *resume(ferry_hub *hub, const char *sid, const char *secret, long ack,
                         json_t **frames)
{
    fake_conn *c = fc_open(hub);
    fc_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%ld}", sid,
            secret, ack);
    *frames = fc_drain(c);
    return c;
}

static void send_n(ferry_session *s, int from, int to)
{
    for (int i = from; i <= to; i++) {
        char text[32];
        snprintf(text, sizeof text, "%d", i);
        ck_assert_int_eq(ferry_session_send(s, text, strlen(text)), 0);
    }
}

START_TEST(resume_replays_exactly_what_was_missed)
{
    char sid[32], secret[64];
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, secret);
    ferry_session *s = app.last_session;
    send_n(s, 1, 5);
    json_t *f = fc_drain(a);
    ck_assert_uint_eq(count_of(f, "msg"), 5);
    json_decref(f);
    fc_send(a, "[{\"t\":\"msg\",\"seq\":1,\"data\":\"c1\"},{\"t\":\"msg\",\"seq\":2,\"data\":\"c2\"}]");
    fc_close(a); /* dropped: the client got server msgs 1..3 only, and no ack for c1, c2 */
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_DETACHED);
    send_n(s, 6, 6); /* queued while detached */

    fake_conn *b = resume(hub, sid, secret, 3, &f);
    json_t *w = frame_of(f, "welcome", 0);
    ck_assert(json_is_true(json_object_get(w, "resumed")));
    ck_assert_str_eq(str_of(w, "sid"), sid);
    ck_assert_str_ne(str_of(w, "secret"), secret); /* rotated */
    ck_assert_int_eq(int_of(w, "ack"), 2);          /* c1, c2 arrived: do not resend */
    ck_assert_uint_eq(count_of(f, "reset"), 0);
    ck_assert_uint_eq(count_of(f, "msg"), 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(int_of(frame_of(f, "msg", (size_t)i), "seq"), 4 + i);
    json_decref(f);
    /* The client resends c2 anyway: acked, not delivered twice. */
    fc_send(b, "[{\"t\":\"msg\",\"seq\":2,\"data\":\"c2\"},{\"t\":\"msg\",\"seq\":3,\"data\":\"c3\"}]");
    ck_assert_int_eq(app.messages, 3);
    ck_assert_str_eq(json_string_value(json_array_get(app.received, 2)), "c3");
    ck_assert_int_eq(app.opens, 1);
    ck_assert_int_eq(app.resets, 0);
    fc_close(b);
    hub_free(hub);
}
END_TEST

/* Every way of not holding the session looks the same from outside. */
START_TEST(bad_resumes_are_indistinguishable)
{
    char sid[32], secret[64], other_sid[32], other_secret[64], forged[32], cut[32];
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, secret);
    fake_conn *o = fc_hello(hub, other_sid, other_secret);
    send_n(app.last_session, 1, 2);
    snprintf(forged, sizeof forged, "%s", sid);
    forged[3] = forged[3] == 'Q' ? 'R' : 'Q';
    snprintf(cut, sizeof cut, "%.21s", sid);
    char wrong[64];
    snprintf(wrong, sizeof wrong, "%s", secret);
    wrong[10] = wrong[10] == 'x' ? 'y' : 'x';
    const char *attempts[][2] = {
        {sid, wrong},            /* wrong secret */
        {sid, other_secret},     /* another session's secret */
        {sid, ""},               /* no secret */
        {forged, secret},        /* forged ID */
        {cut, secret},           /* truncated ID */
        {"", secret},
        {"AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        json_t *f;
        fake_conn *c = resume(hub, attempts[i][0], attempts[i][1], 0, &f);
        ck_assert_uint_eq(json_array_size(f), 2);
        ck_assert_str_eq(str_of(json_array_get(f, 0), "t"), "reset");
        ck_assert_str_eq(str_of(json_array_get(f, 0), "reason"), "unknown");
        json_t *w = json_array_get(f, 1);
        ck_assert_str_eq(str_of(w, "t"), "welcome");
        ck_assert(json_is_false(json_object_get(w, "resumed")));
        ck_assert_str_ne(str_of(w, "sid"), sid);
        json_decref(f);
        fc_close(c);
    }
    ck_assert_int_eq(app.resets, 7);
    ck_assert_int_eq(app.last_reset, FERRY_REASON_UNKNOWN);
    /* The real owner is untouched and still resumes. */
    fc_close(a);
    json_t *f;
    fake_conn *b = resume(hub, sid, secret, 0, &f);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    fc_close(b);
    fc_close(o);
    hub_free(hub);
}
END_TEST

START_TEST(secret_rotates_and_a_retired_secret_forks_the_session)
{
    char sid[32], s1[64], s2[64];
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, s1);
    fc_close(a);

    /* The welcome carrying s2 is lost: s1 must still work. */
    fake_conn *b = resume(hub, sid, s1, 0, &f);
    snprintf(s2, sizeof s2, "%s", str_of(frame_of(f, "welcome", 0), "secret"));
    json_decref(f);
    fc_close(b);
    fake_conn *c = resume(hub, sid, s1, 0, &f);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    char s3[64];
    snprintf(s3, sizeof s3, "%s", str_of(frame_of(f, "welcome", 0), "secret"));
    json_decref(f);
    ck_assert_str_ne(s3, s2); /* without an attempt ID, a fresh secret every time */
    /* The client uses the link (proving it has s3): s1 is retired. s2 was never used. */
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ping\"}"), 0);
    json_decref(fc_drain(c));
    fake_conn *d = resume(hub, sid, s2, 0, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    fc_close(d);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_OPEN);

    /* Someone presents the retired s1: a copy exists. The session ends for everyone; the
     * presenter is answered like any stranger. */
    d = resume(hub, sid, s1, 0, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    ck_assert(json_is_false(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    f = fc_drain(c); /* the live connection is told too */
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
    json_decref(f);
    ck_assert(ferry_link_done(c->link));
    fc_close(d);
    fc_close(c);
    ck_assert_int_eq(app.last_close, FERRY_REASON_FORKED);
    /* Even the newest secret gets the reason now. */
    d = resume(hub, sid, s3, 0, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
    json_decref(f);
    fc_close(d);
    hub_free(hub);
}
END_TEST

START_TEST(a_resume_takes_over_from_the_old_connection)
{
    char sid[32], secret[64];
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, secret);
    ferry_session *s = app.last_session;
    fake_conn *b = resume(hub, sid, secret, 0, &f);
    json_decref(f);
    ck_assert_int_eq(a->kicks, 1);
    ck_assert(ferry_link_done(a->link));
    ck_assert_int_eq(fc_send(a, "{\"t\":\"msg\",\"seq\":1,\"data\":1}"), FERRY_ECLOSED);
    send_n(s, 1, 1);
    f = fc_drain(a);
    ck_assert_uint_eq(json_array_size(f), 0);
    json_decref(f);
    f = fc_drain(b);
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    json_decref(f);
    fc_close(a); /* the old link going away must not detach the new one */
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_ATTACHED);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(resume_ack_beyond_sent_is_refused)
{
    char sid[32], secret[64];
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, secret);
    send_n(app.last_session, 1, 2);
    json_decref(fc_drain(a));
    fc_close(a);
    fake_conn *b = resume(hub, sid, secret, 3, &f);
    ck_assert_str_eq(str_of(frame_of(f, "error", 0), "code"), "bad_ack");
    ck_assert_ptr_null(ferry_link_session_id(b->link));
    json_decref(f);
    fc_send(b, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":2}", sid, secret);
    f = fc_drain(b);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    ck_assert_uint_eq(count_of(f, "msg"), 0);
    json_decref(f);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(expired_and_overflowed_sessions_are_reset_with_their_reason)
{
    char sid[32], secret[64], sid2[32], secret2[64];
    json_t *f;
    ferry_options o;
    ferry_hub *hub = hub_new(NULL);
    ferry_options_init(&o);

    fake_conn *a = fc_hello(hub, sid, secret);
    fc_close(a);
    test_now += o.resume_window_ms - 1;
    ferry_hub_tick(hub);
    ck_assert_int_eq(app.closes, 0);
    test_now += 1;
    ferry_hub_tick(hub);
    ck_assert_int_eq(app.closes, 1);
    ck_assert_int_eq(app.last_close, FERRY_REASON_EXPIRED);
    fake_conn *b = resume(hub, sid, secret, 0, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "expired");
    ck_assert(json_is_false(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    ck_assert_int_eq(app.resets, 1);
    ck_assert_int_eq(app.last_reset, FERRY_REASON_EXPIRED);
    fc_close(b);

    /* Overflow while detached. */
    a = fc_hello(hub, sid2, secret2);
    ferry_session *s = app.last_session;
    fc_close(a);
    for (size_t i = 0; i < o.outbox_max_msgs; i++)
        ck_assert_int_eq(ferry_session_send(s, "0", 1), 0);
    ck_assert_int_eq(ferry_session_send(s, "0", 1), FERRY_EFULL);
    b = resume(hub, sid2, secret2, 0, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "overflow");
    json_decref(f);
    fc_close(b);

    /* Tombstones are forgotten after tombstone_ms: then the answer is "unknown". */
    test_now += o.resume_window_ms; /* the sessions the resets opened expire */
    ferry_hub_tick(hub);
    test_now += o.tombstone_ms;
    ferry_hub_tick(hub);
    size_t att, det, exp;
    ferry_hub_counts(hub, &att, &det, &exp);
    ck_assert_uint_eq(att + det + exp, 0);
    b = resume(hub, sid, secret, 0, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    fc_close(b);
    hub_free(hub);
}
END_TEST

static const char *cookie_of(void *ctx, const char *name)
{
    return strcmp(name, "Cookie") == 0 ? ctx : NULL;
}

START_TEST(authentication_runs_on_every_handshake_and_binds_the_identity)
{
    char sid[32], secret[64];
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_open(hub);
    ferry_link_set_peer(a->link, "127.0.0.1", cookie_of, "sid=abc");
    ck_assert_int_eq(fc_send(a, "{\"t\":\"hello\",\"v\":1,\"token\":\"alice\"}"), 0);
    f = fc_drain(a);
    snprintf(sid, sizeof sid, "%s", str_of(frame_of(f, "welcome", 0), "sid"));
    snprintf(secret, sizeof secret, "%s", str_of(frame_of(f, "welcome", 0), "secret"));
    json_decref(f);
    ck_assert_str_eq(ferry_session_identity(app.last_session), "alice");
    ck_assert_str_eq(app.auth_cookie, "sid=abc");
    ck_assert_str_eq(app.auth_sid, "");
    fc_close(a);

    /* Resumed under another identity: answered like an unknown session. */
    fake_conn *b = fc_open(hub);
    fc_send(b, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0,\"token\":\"mallory\"}",
            sid, secret);
    f = fc_drain(b);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    ck_assert_str_eq(app.auth_sid, sid);
    ck_assert_str_eq(ferry_session_identity(app.last_session), "mallory");
    fc_close(b);

    /* The owner, with a fresh token for the same identity, resumes. */
    fake_conn *c = fc_open(hub);
    fc_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0,\"token\":\"alice\"}",
            sid, secret);
    f = fc_drain(c);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    fc_close(c);

    /* Refused credentials: an error with the reason, no session, the link ends. */
    int opens = app.opens + app.resets;
    fake_conn *d = fc_open(hub);
    ck_assert_int_eq(fc_send(d, "{\"t\":\"hello\",\"v\":1,\"token\":\"bad\"}"), FERRY_EAUTH);
    f = fc_drain(d);
    ck_assert_str_eq(str_of(frame_of(f, "error", 0), "code"), "unauthorized");
    ck_assert_str_eq(str_of(frame_of(f, "error", 0), "text"), "bad token");
    ck_assert_uint_eq(count_of(f, "welcome"), 0);
    json_decref(f);
    ck_assert(ferry_link_done(d->link));
    ck_assert_int_eq(ferry_link_end_reason(d->link), FERRY_LINK_UNAUTHORIZED);
    ck_assert_int_eq(app.opens + app.resets, opens);
    ck_assert_int_eq(fc_send(d, "{\"t\":\"hello\",\"v\":1}"), FERRY_ECLOSED);
    fc_close(d);
    hub_free(hub);
}
END_TEST

/* A client's outbox holds what the server has not acknowledged, not what it has not
 * delivered: an ack lost with the connection leaves delivered messages there. So every frame
 * that ends a session names the last client seq it delivered, and a client counts as
 * dropped only what lies beyond it. */
START_TEST(a_reset_names_the_last_client_message_the_old_session_delivered)
{
    char sid[32], secret[64];
    json_t *f;
    ferry_options o;
    ferry_options_init(&o);
    ferry_hub *hub = hub_new(NULL);

    fake_conn *a = fc_hello(hub, sid, secret);
    fc_send(a, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"msg\",\"seq\":2,\"data\":2}]");
    fc_close(a); /* the ack of 2 never reaches the client */
    test_now += o.resume_window_ms;
    ferry_hub_tick(hub);
    fake_conn *b = resume(hub, sid, secret, 0, &f);
    json_t *r = frame_of(f, "reset", 0);
    ck_assert_str_eq(str_of(r, "reason"), "expired");
    ck_assert_int_eq(int_of(r, "ack"), 2);
    ck_assert_int_eq(int_of(frame_of(f, "welcome", 0), "ack"), 0); /* the new session's */
    json_decref(f);
    fc_close(b);

    /* A wrong secret learns nothing about the session: no ack. */
    b = resume(hub, sid, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, &f);
    r = frame_of(f, "reset", 0);
    ck_assert_str_eq(str_of(r, "reason"), "unknown");
    ck_assert_ptr_null(json_object_get(r, "ack"));
    json_decref(f);
    fc_close(b);

    /* The final frame on a session's own connection carries it too: a close... */
    fake_conn *c = fc_hello(hub, NULL, NULL);
    fc_send(c, "{\"t\":\"msg\",\"seq\":1,\"data\":1}");
    json_decref(fc_drain(c));
    ferry_hub_shutdown(hub);
    f = fc_drain(c);
    r = frame_of(f, "close", 0);
    ck_assert_str_eq(str_of(r, "reason"), "shutdown");
    ck_assert_int_eq(int_of(r, "ack"), 1);
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void tiny_outbox(ferry_options *o)
{
    o->outbox_max_msgs = 2;
}

START_TEST(a_live_overflow_reset_names_the_last_client_message_delivered)
{
    ferry_hub *hub = hub_new(tiny_outbox);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *s = ferry_session_ref(app.last_session);
    fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"msg\",\"seq\":2,\"data\":2},"
               "{\"t\":\"msg\",\"seq\":3,\"data\":3}]");
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(ferry_session_send(s, "0", 1), 0);
    ck_assert_int_eq(ferry_session_send(s, "0", 1), FERRY_EFULL);
    json_t *f = fc_drain(c);
    json_t *r = frame_of(f, "reset", 0);
    ck_assert_str_eq(str_of(r, "reason"), "overflow");
    ck_assert_int_eq(int_of(r, "ack"), 3);
    json_decref(f);
    ferry_session_unref(s);
    fc_close(c);
    hub_free(hub);
}
END_TEST

Suite *resume_suite(void)
{
    Suite *s = suite_create("resume");
    TCase *tc = tcase_create("resume");
    tcase_add_test(tc, resume_replays_exactly_what_was_missed);
    tcase_add_test(tc, bad_resumes_are_indistinguishable);
    tcase_add_test(tc, secret_rotates_and_a_retired_secret_forks_the_session);
    tcase_add_test(tc, a_resume_takes_over_from_the_old_connection);
    tcase_add_test(tc, resume_ack_beyond_sent_is_refused);
    tcase_add_test(tc, expired_and_overflowed_sessions_are_reset_with_their_reason);
    tcase_add_test(tc, a_reset_names_the_last_client_message_the_old_session_delivered);
    tcase_add_test(tc, a_live_overflow_reset_names_the_last_client_message_delivered);
    tcase_add_test(tc, authentication_runs_on_every_handshake_and_binds_the_identity);
    suite_add_tcase(s, tc);
    return s;
}
