#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "hub.h"
#include "session.h"

START_TEST(hello_gets_a_welcome)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_open(hub);
    ck_assert_ptr_null(ferry_link_session_id(c->link));
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":1}"), 0);
    ck_assert_int_eq(c->wakes, 1);
    json_t *f = fc_drain(c);
    ck_assert_uint_eq(json_array_size(f), 1);
    json_t *w = frame_of(f, "welcome", 0);
    ck_assert_uint_eq(strlen(str_of(w, "sid")), 22);
    ck_assert_uint_eq(strlen(str_of(w, "secret")), 43);
    ck_assert(json_is_false(json_object_get(w, "resumed")));
    ck_assert_int_eq(int_of(w, "ack"), 0);
    ck_assert_int_eq(int_of(w, "v"), 1);
    ck_assert_int_eq(int_of(w, "hb"), 25000);
    ck_assert_int_eq(int_of(w, "window"), 120000);
    ck_assert_str_eq(ferry_link_session_id(c->link), str_of(w, "sid"));
    ck_assert_int_eq(app.opens, 1);
    ck_assert_int_eq(ferry_session_state(app.last_session), FERRY_STATE_ATTACHED);
    json_decref(f);
    fc_close(c);
    ck_assert_int_eq(app.closes, 0); /* detached, not ended */
    hub_free(hub);
    ck_assert_int_eq(app.closes, 1);
    ck_assert_int_eq(app.last_close, FERRY_REASON_SHUTDOWN);
}
END_TEST

START_TEST(nothing_is_pulled_before_on_open_returns)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_open(hub);
    app.pull_in_open = c->link;
    app.pulled_in_open = -1;
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":1}"), 0);
    ck_assert_int_eq(app.pulled_in_open, 0); /* the welcome waited for on_open */
    ck_assert_int_eq(c->wakes, 1);
    json_t *f = fc_drain(c);
    ck_assert_str_eq(str_of(json_array_get(f, 0), "t"), "welcome");
    ck_assert_str_eq(json_string_value(json_object_get(frame_of(f, "msg", 0), "data")), "hello from on_open");
    json_decref(f);
    app.pull_in_open = NULL;
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(client_messages_delivered_once_in_order_and_acked)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":\"a\"},"
                                "{\"t\":\"msg\",\"seq\":2,\"data\":{\"b\":2}}]"),
                     0);
    ck_assert_int_eq(app.messages, 2);
    ck_assert_str_eq(json_string_value(json_array_get(app.received, 0)), "a");
    json_t *f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "ack"), 1);
    ck_assert_int_eq(int_of(frame_of(f, "ack", 0), "ack"), 2);
    json_decref(f);

    /* A replay (the client never saw the ack) is acked again but not delivered again. */
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":2,\"data\":{\"b\":2}},"
                                "{\"t\":\"msg\",\"seq\":3,\"data\":3}]"),
                     0);
    ck_assert_int_eq(app.messages, 3);
    ck_assert_int_eq(json_integer_value(json_array_get(app.received, 2)), 3);
    f = fc_drain(c);
    ck_assert_int_eq(int_of(frame_of(f, "ack", 0), "ack"), 3);
    json_decref(f);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"msg\",\"seq\":1,\"data\":\"a\"}"), 0);
    ck_assert_int_eq(app.messages, 3);
    f = fc_drain(c);
    ck_assert_int_eq(int_of(frame_of(f, "ack", 0), "ack"), 3);
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void expect_error(fake_conn *c, const char *code)
{
    json_t *f = fc_drain(c);
    json_t *e = frame_of(f, "error", 0);
    ck_assert_msg(e != NULL, "no error frame, want %s", code);
    ck_assert_str_eq(str_of(e, "code"), code);
    ck_assert_uint_gt(strlen(str_of(e, "text")), 0);
    json_decref(f);
}

START_TEST(seq_gap_rejects_the_whole_batch)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"msg\",\"seq\":3,"
                                "\"data\":3}]"),
                     FERRY_ESEQ);
    ck_assert_int_eq(app.messages, 0);
    expect_error(c, "seq_gap");
    ck_assert_int_eq(fc_send(c, "{\"t\":\"msg\",\"seq\":2,\"data\":2}"), FERRY_ESEQ);
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"msg\",\"seq\":2,"
                                "\"data\":2}]"),
                     0);
    ck_assert_int_eq(app.messages, 2);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(ack_for_a_seq_never_sent_is_refused)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ack\",\"ack\":1}"), FERRY_EACK);
    expect_error(c, "bad_ack");
    ferry_session *s = app.last_session;
    ck_assert_int_eq(ferry_session_send(s, "1", 1), 0);
    json_t *f = fc_drain(c);
    json_decref(f);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ack\",\"ack\":2}"), FERRY_EACK);
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"ack\",\"ack\":2}]"),
                     FERRY_EACK);
    ck_assert_int_eq(app.messages, 0); /* the batch was refused whole */
    expect_error(c, "bad_ack");
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ack\",\"ack\":1}"), 0);
    ck_assert_uint_eq(s->out.count, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ack\",\"ack\":0}"), 0); /* stale: harmless */
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(bad_frames_get_errors_and_change_nothing)
{
    static const struct {
        const char *text;
        const char *code;
        int rc;
    } cases[] = {
        {"{\"t\":\"msg\",", "bad_json", FERRY_EJSON},
        {"{\"t\":\"msg\",\"seq\":1,\"seq\":2,\"data\":1}", "duplicate_key", FERRY_EDUPKEY},
        {"{\"t\":\"msg\",\"seq\":1,\"data\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}",
         "too_deep", FERRY_EDEPTH},
        {"{\"t\":\"teleport\"}", "unknown_type", FERRY_EFRAMETYPE},
        {"{\"t\":\"msg\",\"seq\":\"one\",\"data\":1}", "bad_field", FERRY_EFIELD},
        {"{\"t\":\"hello\",\"v\":1}", "handshake", FERRY_EHANDSHAKE},
    };
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(fc_send(c, "%s", cases[i].text), cases[i].rc);
        expect_error(c, cases[i].code);
    }
    char *big = malloc(70000);
    memset(big, ' ', 70000);
    ck_assert_int_eq(fc_send_raw(c, big, 70000), FERRY_ETOOBIG);
    free(big);
    expect_error(c, "too_big");
    ck_assert_int_eq(app.messages, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"msg\",\"seq\":1,\"data\":\"fine\"}"), 0);
    ck_assert_int_eq(app.messages, 1);
    ck_assert(!ferry_link_done(c->link));
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(frames_before_the_handshake_are_refused)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_open(hub);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"msg\",\"seq\":1,\"data\":1}"), FERRY_EHANDSHAKE);
    expect_error(c, "handshake");
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"hello\",\"v\":1},{\"t\":\"ping\"}]"), FERRY_EHANDSHAKE);
    expect_error(c, "handshake");
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":9}"), FERRY_EVERSION);
    expect_error(c, "bad_version");
    ck_assert_int_eq(app.opens, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":1}"), 0);
    ck_assert_int_eq(app.opens, 1);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(server_push_is_pulled_in_order_and_released_by_ack)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *s = app.last_session;
    int wakes = c->wakes;
    for (int i = 1; i <= 3; i++) {
        char text[32];
        snprintf(text, sizeof text, "{\"n\":%d}", i);
        ck_assert_int_eq(ferry_session_send(s, text, strlen(text)), 0);
    }
    ck_assert_int_eq(c->wakes, wakes + 1); /* coalesced */
    json_t *f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "msg"), 3);
    for (int i = 0; i < 3; i++) {
        json_t *m = frame_of(f, "msg", (size_t)i);
        ck_assert_int_eq(int_of(m, "seq"), i + 1);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(m, "data"), "n")), i + 1);
    }
    json_decref(f);
    ck_assert_uint_eq(s->out.count, 3);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ack\",\"ack\":2}"), 0);
    ck_assert_uint_eq(s->out.count, 1);
    ck_assert_int_eq(ferry_session_send(s, "{\"a\":", 5), FERRY_EJSON);
    ck_assert_int_eq(ferry_session_send(s, NULL, 0), FERRY_EINVAL);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void small_batches(ferry_options *o)
{
    o->max_batch = 3;
}

START_TEST(pulls_respect_batch_limits)
{
    ferry_hub *hub = hub_new(small_batches);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(ferry_session_send(app.last_session, "0", 1), 0);
    size_t sizes[4];
    for (int i = 0; i < 4; i++) {
        json_t *f = fc_pull(c, 0);
        sizes[i] = json_array_size(f);
        json_decref(f);
    }
    ck_assert_uint_eq(sizes[0], 3);
    ck_assert_uint_eq(sizes[1], 3);
    ck_assert_uint_eq(sizes[2], 1);
    ck_assert_uint_eq(sizes[3], 0);
    int wakes = c->wakes;
    ck_assert_int_eq(ferry_session_send(app.last_session, "0", 1), 0);
    ck_assert_int_eq(c->wakes, wakes + 1);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(long_poll_pulls_replay_until_acked)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    const unsigned lp = FERRY_PULL_ARRAY | FERRY_PULL_REPLAY;
    json_t *f = fc_pull(c, lp);
    ck_assert_uint_eq(json_array_size(f), 0);
    ck_assert_uint_eq(c->buf.len, 2);
    ck_assert_int_eq(memcmp(c->buf.data, "[]", 2), 0);
    json_decref(f);
    ferry_session_send(app.last_session, "1", 1);
    ferry_session_send(app.last_session, "2", 1);
    f = fc_pull(c, lp);
    ck_assert_uint_eq(count_of(f, "msg"), 2);
    json_decref(f);
    /* The response was lost: the next poll (ack 0) gets both again. */
    f = fc_pull(c, lp);
    ck_assert_uint_eq(count_of(f, "msg"), 2);
    ck_assert_int_eq(int_of(frame_of(f, "msg", 0), "seq"), 1);
    json_decref(f);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ack\",\"ack\":1}"), 0);
    f = fc_pull(c, lp);
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    ck_assert_int_eq(int_of(frame_of(f, "msg", 0), "seq"), 2);
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(heartbeat_pings_then_drops_a_silent_link)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *s = app.last_session;
    test_now += 24999;
    ferry_hub_tick(hub);
    json_t *f = fc_drain(c);
    ck_assert_uint_eq(json_array_size(f), 0);
    json_decref(f);
    test_now += 1;
    ferry_hub_tick(hub);
    f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "ping"), 1);
    json_decref(f);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ping\"}"), 0); /* any frame proves life */
    f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "pong"), 1);
    json_decref(f);
    test_now += 59999;
    ferry_hub_tick(hub);
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_ATTACHED);
    test_now += 1;
    ferry_hub_tick(hub);
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_DETACHED);
    ck_assert_int_eq(c->kicks, 1);
    ck_assert(ferry_link_done(c->link));
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_TIMEOUT);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ping\"}"), FERRY_ECLOSED);
    ck_assert_int_eq(app.closes, 0);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void tiny_outbox(ferry_options *o)
{
    o->outbox_max_msgs = 4;
}

START_TEST(overflow_resets_an_attached_session)
{
    ferry_hub *hub = hub_new(tiny_outbox);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *s = ferry_session_ref(app.last_session);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(ferry_session_send(s, "0", 1), 0);
    ck_assert_int_eq(ferry_session_send(s, "0", 1), FERRY_EFULL);
    ck_assert_int_eq(app.closes, 0); /* no callback inside an application call... */
    ferry_hub_tick(hub);
    ck_assert_int_eq(app.closes, 1); /* ...but at the next tick */
    ck_assert_int_eq(app.last_close, FERRY_REASON_OVERFLOW);
    ck_assert_int_eq(c->kicks, 1);
    ck_assert(!ferry_link_done(c->link)); /* the reset frame is still to be pulled */
    json_t *f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "msg"), 0);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "overflow");
    json_decref(f);
    ck_assert(ferry_link_done(c->link));
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_ENDED);
    ck_assert_int_eq(ferry_session_send(s, "0", 1), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_EXPIRED);
    ferry_session_unref(s);
    fc_close(c);
    hub_free(hub);
    ck_assert_int_eq(app.closes, 1); /* on_close exactly once */
}
END_TEST

START_TEST(client_close_and_server_close)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"close\"},"
                                "{\"t\":\"msg\",\"seq\":2,\"data\":2}]"),
                     0);
    ck_assert_int_eq(app.messages, 1);
    ck_assert_int_eq(app.closes, 1);
    ck_assert_int_eq(app.last_close, FERRY_REASON_CLOSED);
    json_t *f = fc_drain(c);
    ck_assert_str_eq(str_of(frame_of(f, "close", 0), "reason"), "closed");
    json_decref(f);
    ck_assert(ferry_link_done(c->link));
    fc_close(c);

    c = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(ferry_session_close(app.last_session), 0);
    ck_assert_int_eq(app.closes, 1); /* not inside the application's own call */
    f = fc_drain(c);
    ck_assert_str_eq(str_of(frame_of(f, "close", 0), "reason"), "server");
    json_decref(f);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ping\"}"), FERRY_ECLOSED);
    ck_assert_int_eq(ferry_session_close(app.last_session), FERRY_ECLOSED);
    fc_close(c); /* a transport call: on_close runs here */
    ck_assert_int_eq(app.closes, 2);
    ck_assert_int_eq(app.last_close, FERRY_REASON_SERVER);
    hub_free(hub);
    ck_assert_int_eq(app.closes, 2);
}
END_TEST

static void two_sessions(ferry_options *o)
{
    o->max_sessions = 2;
}

START_TEST(capacity_is_refused_at_once)
{
    ferry_hub *hub = hub_new(two_sessions);
    fake_conn *a = fc_hello(hub, NULL, NULL), *b = fc_hello(hub, NULL, NULL);
    fake_conn *c = fc_open(hub);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":1}"), FERRY_ECAPACITY);
    expect_error(c, "capacity");
    ck_assert(ferry_link_done(c->link));
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_REFUSED);
    ck_assert_int_eq(app.opens, 2);
    fc_close(c);
    ck_assert_int_eq(fc_send(a, "{\"t\":\"close\"}"), 0);
    c = fc_hello(hub, NULL, NULL); /* a slot is free again */
    ck_assert_int_eq(app.opens, 3);
    fc_close(a);
    fc_close(b);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(callbacks_may_call_back_into_ferry)
{
    ferry_hub *hub = hub_new(tiny_outbox);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    app.echo = 1;
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":{\"x\":1}},"
                                "{\"t\":\"msg\",\"seq\":2,\"data\":[2]}]"),
                     0);
    json_t *f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "msg"), 2);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(frame_of(f, "msg", 1), "data"), 0)), 2);
    json_decref(f);
    /* An echo that overflows its own outbox inside on_message: ends cleanly afterwards. */
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"msg\",\"seq\":3,\"data\":3},{\"t\":\"msg\",\"seq\":4,\"data\":4},"
                                "{\"t\":\"msg\",\"seq\":5,\"data\":5}]"),
                     0);
    ck_assert_int_eq(app.echo_errors, 1);
    ck_assert_int_eq(app.closes, 1);
    ck_assert_int_eq(app.last_close, FERRY_REASON_OVERFLOW);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void small_window(ferry_options *o)
{
    o->ack_window_bytes = 400;
}

START_TEST(ack_window_pauses_sending_and_a_stalled_link_is_dropped)
{
    ferry_hub *hub = hub_new(small_window);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ferry_session *s = app.last_session;
    for (int i = 0; i < 20; i++) /* about 90 bytes each with overhead */
        ck_assert_int_eq(ferry_session_send(s, "\"0123456789012345678901234567890123456789\"", 42), 0);
    json_t *f = fc_drain(c);
    size_t first = count_of(f, "msg");
    json_decref(f);
    ck_assert_uint_gt(first, 0);
    ck_assert_uint_lt(first, 20); /* paused at the window */
    ck_assert_uint_le(s->out.inflight, 400);
    int wakes = c->wakes;
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ack\",\"ack\":%zu}", first), 0);
    ck_assert_int_eq(c->wakes, wakes + 1); /* the ack reopened the window */
    f = fc_drain(c);
    ck_assert_int_eq(int_of(frame_of(f, "msg", 0), "seq"), (json_int_t)first + 1);
    size_t second = count_of(f, "msg");
    json_decref(f);
    ck_assert_uint_lt(first + second, 20);

    /* The client stops acking: after stall_timeout_ms the link is dropped, resumable. */
    test_now += 9999;
    ferry_hub_tick(hub);
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_ATTACHED);
    test_now += 1;
    ferry_hub_tick(hub);
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_DETACHED);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_STALLED);
    ck_assert_int_eq(app.closes, 0);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(control_pulls_and_secret_checks)
{
    char sid[32], secret[64];
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_open(hub);
    ck_assert_int_eq(ferry_link_check_secret(c->link, "x", 1), FERRY_ENOTFOUND);
    fc_close(c);
    c = fc_hello(hub, sid, secret);
    ferry_session_send(app.last_session, "1", 1);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ping\"}"), 0);
    json_t *f = fc_pull(c, FERRY_PULL_ARRAY | FERRY_PULL_CONTROL);
    ck_assert_uint_eq(count_of(f, "pong"), 1);
    ck_assert_uint_eq(count_of(f, "msg"), 0);
    json_decref(f);
    f = fc_pull(c, FERRY_PULL_ARRAY | FERRY_PULL_REPLAY);
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    json_decref(f);
    ck_assert_int_eq(ferry_link_check_secret(c->link, secret, strlen(secret)), 0);
    ck_assert_int_eq(ferry_link_check_secret(c->link, secret, strlen(secret) - 1), FERRY_ENOTFOUND);
    ck_assert_int_eq(ferry_link_check_secret(c->link, sid, strlen(sid)), FERRY_ENOTFOUND);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_OPEN);
    fake_conn *d = fc_open(hub);
    fc_send(d, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0}", sid, secret);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_SUPERSEDED);
    ck_assert_int_eq(ferry_link_check_secret(c->link, secret, strlen(secret)), FERRY_ECLOSED);
    fc_close(c);
    fc_close(d);
    hub_free(hub);
}
END_TEST

/* Builds "[[[[...1...]]]]" n deep, "[0,0,...]" with n items, or an object with n keys. */
static char *bomb(int kind, size_t n)
{
    char *b = malloc(n * 12 + 64), *p = b;
    p += sprintf(p, "{\"t\":\"msg\",\"seq\":1,\"data\":");
    if (kind == 0) {
        for (size_t i = 0; i < n; i++)
            *p++ = '[';
        *p++ = '1';
        for (size_t i = 0; i < n; i++)
            *p++ = ']';
    } else if (kind == 1) {
        *p++ = '[';
        for (size_t i = 0; i < n; i++)
            p += sprintf(p, i ? ",0" : "0");
        *p++ = ']';
    } else {
        *p++ = '{';
        for (size_t i = 0; i < n; i++)
            p += sprintf(p, "%s\"k%zu\":0", i ? "," : "", kind == 3 ? (size_t)0 : i);
        *p++ = '}';
    }
    strcpy(p, "}");
    return b;
}

/* Bytes the allocator has handed out and not had back. ASan replaces malloc, and glibc's
 * mallinfo2 then reads 0; its allocator keeps the count itself. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_UNDER_ASAN 1
#endif
#endif
#ifdef HEAP_UNDER_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
static long heap_in_use(void)
{
    return (long)__sanitizer_get_current_allocated_bytes();
}
#else
static long heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long)(mi.uordblks + mi.hblkhd); /* small chunks, and those mmap'd on their own */
}
#endif

START_TEST(json_bombs_are_refused_without_growing_memory)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    /* depth, array items, object keys, duplicate keys; and one over the size limit */
    const int codes[] = {FERRY_EDEPTH, FERRY_ETOOBIG, FERRY_ETOOBIG, FERRY_EDUPKEY};
    char *bombs[5] = {bomb(0, 5000), bomb(1, 5000), bomb(2, 5000), bomb(3, 100), bomb(1, 40000)};
    long before = 0;
    for (int round = 0; round < 201; round++) {
        if (round == 1) /* after one round has sized the link's buffers */
            before = heap_in_use();
        for (int k = 0; k < 5; k++) {
            int rc = fc_send_raw(c, bombs[k], strlen(bombs[k]));
            ck_assert_int_eq(rc, k < 4 ? codes[k] : FERRY_ETOOBIG);
        }
        json_decref(fc_drain(c)); /* the error frames */
    }
    /* Nothing is kept per refused frame: 1000 of them leave the heap within 4 KiB of where it
     * was, not even 5 bytes each. */
    long grown = heap_in_use() - before;
    ck_assert_int_gt(before, 0); /* the measure works in this build */
    ck_assert_msg(grown < 4096, "the heap grew by %ld bytes over 1000 refused frames", grown);
    ck_assert_int_eq(app.messages, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"msg\",\"seq\":1,\"data\":\"still fine\"}"), 0);
    ck_assert_int_eq(app.messages, 1);
    for (int k = 0; k < 5; k++)
        free(bombs[k]);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void tight(ferry_options *o)
{
    o->max_frame_bytes = 512;
    o->max_depth = 4;
    o->max_elements = 20;
    o->max_batch = 3;
    o->outbox_max_msgs = 2;
    o->max_sessions = 3;
    o->ack_window_bytes = 100;
    o->resume_burst = 1;
}

START_TEST(every_limit_hit_is_counted)
{
    ferry_hub *hub = hub_new(tight);
    for (int l = 0; l < FERRY_LIMIT_COUNT; l++)
        ck_assert_uint_eq(ferry_hub_limit_hits(hub, (ferry_limit)l), 0);
    ck_assert_str_eq(ferry_limit_name(FERRY_LIMIT_RESUME_RATE), "resume_rate");
    ck_assert_str_eq(ferry_limit_name(FERRY_LIMIT_COUNT), "unknown");
    char sid[32], secret[64];
    fake_conn *c = fc_hello(hub, sid, secret);
    char big[600];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fc_send(c, "%s", big);
    fc_send(c, "[[[[[[1]]]]]]");
    fc_send(c, "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22]");
    fc_send(c, "[{\"t\":\"ping\"},{\"t\":\"ping\"},{\"t\":\"ping\"},{\"t\":\"ping\"}]");
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_FRAME_SIZE), 1);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_DEPTH), 1);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_ELEMENTS), 1);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_BATCH), 1);
    /* the ack window fills: a stall */
    ferry_session_send(app.last_session, "\"0123456789012345678901234567890123456789\"", 42);
    ferry_session_send(app.last_session, "\"0123456789012345678901234567890123456789\"", 42);
    json_decref(fc_drain(c));
    test_now += 10000;
    ferry_hub_tick(hub);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_STALL), 1);
    fc_close(c);
    /* a resume, then one too many from the same address */
    fake_conn *r = fc_open(hub);
    ferry_link_set_peer(r->link, "192.0.2.1", NULL, NULL);
    fc_send(r, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0}", sid, secret);
    fake_conn *r2 = fc_open(hub);
    ferry_link_set_peer(r2->link, "192.0.2.1", NULL, NULL);
    ck_assert_int_eq(fc_send(r2, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"x\",\"ack\":0}", sid), FERRY_ERATE);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_RESUME_RATE), 1);
    fc_close(r2);
    /* the outbox overflows */
    for (int i = 0; i < 3; i++)
        ferry_session_send(app.last_session, "1", 1);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_OUTBOX), 1);
    fc_close(r);
    /* refused credentials, then the session cap */
    fake_conn *bad = fc_open(hub);
    fc_send(bad, "{\"t\":\"hello\",\"v\":1,\"token\":\"bad\"}");
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_AUTH), 1);
    fc_close(bad);
    fake_conn *more[4];
    for (int i = 0; i < 4; i++) {
        more[i] = fc_open(hub);
        fc_send(more[i], "{\"t\":\"hello\",\"v\":1}");
    }
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_SESSIONS), 1);
    /* a silent connection */
    test_now += 60000;
    ferry_hub_tick(hub);
    ck_assert_uint_ge(ferry_hub_limit_hits(hub, FERRY_LIMIT_HEARTBEAT), 1);
    for (int i = 0; i < 4; i++)
        fc_close(more[i]);
    hub_free(hub);
}
END_TEST

static void budgets(ferry_options *o)
{
    o->max_sessions_per_identity = 2;
    o->outbox_budget_bytes = 400; /* about four small messages across every outbox */
}

START_TEST(identity_and_memory_budgets)
{
    ferry_hub *hub = hub_new(budgets);
    fake_conn *c[4];
    for (int i = 0; i < 3; i++) {
        c[i] = fc_open(hub);
        fc_send(c[i], "{\"t\":\"hello\",\"v\":1,\"token\":\"carol\"}");
    }
    json_t *f = fc_drain(c[2]);
    ck_assert_str_eq(str_of(frame_of(f, "error", 0), "code"), "capacity");
    json_decref(f);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_IDENTITY), 1);
    fc_close(c[2]);
    c[3] = fc_open(hub); /* other identities are not affected */
    ck_assert_int_eq(fc_send(c[3], "{\"t\":\"hello\",\"v\":1,\"token\":\"dave\"}"), 0);
    ck_assert_int_eq(fc_send(c[0], "{\"t\":\"close\"}"), 0); /* one of carol's ends... */
    c[2] = fc_open(hub);                                          /* ...so carol may open one */
    ck_assert_int_eq(fc_send(c[2], "{\"t\":\"hello\",\"v\":1,\"token\":\"carol\"}"), 0);

    /* All outboxes together: the push that would exceed the budget resets its session. */
    ferry_session *dave = app.last_session; /* carol's new one */
    int full = 0;
    for (int i = 0; i < 10 && !full; i++)
        full = ferry_session_send(dave, "\"0123456789012345678901234567890123456789\"", 42) == FERRY_EFULL;
    ck_assert(full);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_MEMORY), 1);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_OUTBOX), 0);
    /* The budget's accounting follows every push, ack and end back to zero. */
    ck_assert_int_eq(fc_send(c[3], "{\"t\":\"ack\",\"ack\":0}"), 0);
    size_t q;
    ferry_session_subscribe(app.last_session, "t");
    ferry_hub_publish(hub, "t", "1", 1, &q);
    for (int i = 0; i < 4; i++)
        fc_send(c[i], "{\"t\":\"close\"}");
    ck_assert_uint_eq(atomic_load(&hub->outbox_bytes), 0);
    for (int i = 0; i < 4; i++)
        fc_close(c[i]);
    hub_free(hub);
}
END_TEST

Suite *session_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("session");
    tcase_add_test(tc, hello_gets_a_welcome);
    tcase_add_test(tc, nothing_is_pulled_before_on_open_returns);
    tcase_add_test(tc, client_messages_delivered_once_in_order_and_acked);
    tcase_add_test(tc, seq_gap_rejects_the_whole_batch);
    tcase_add_test(tc, ack_for_a_seq_never_sent_is_refused);
    tcase_add_test(tc, bad_frames_get_errors_and_change_nothing);
    tcase_add_test(tc, frames_before_the_handshake_are_refused);
    tcase_add_test(tc, server_push_is_pulled_in_order_and_released_by_ack);
    tcase_add_test(tc, pulls_respect_batch_limits);
    tcase_add_test(tc, long_poll_pulls_replay_until_acked);
    tcase_add_test(tc, heartbeat_pings_then_drops_a_silent_link);
    tcase_add_test(tc, overflow_resets_an_attached_session);
    tcase_add_test(tc, client_close_and_server_close);
    tcase_add_test(tc, capacity_is_refused_at_once);
    tcase_add_test(tc, callbacks_may_call_back_into_ferry);
    tcase_add_test(tc, ack_window_pauses_sending_and_a_stalled_link_is_dropped);
    tcase_add_test(tc, control_pulls_and_secret_checks);
    tcase_add_test(tc, json_bombs_are_refused_without_growing_memory);
    tcase_add_test(tc, every_limit_hit_is_counted);
    tcase_add_test(tc, identity_and_memory_budgets);
    suite_add_tcase(s, tc);
    return s;
}
