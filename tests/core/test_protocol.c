/* The wire rules of docs/PROTOCOL.md that the core decides, one test per rule. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

/* Sends `text` on c and returns the code of the error frame it got ("" for none). */
static const char *error_for(fake_conn *c, const char *text)
{
    static char code[32];
    fc_send_raw(c, text, strlen(text));
    json_t *f = fc_drain(c);
    json_t *e = frame_of(f, "error", 0);
    snprintf(code, sizeof code, "%s", e ? str_of(e, "code") : "");
    json_decref(f);
    return code;
}

static fake_conn *resume_rid(ferry_hub *hub, const char *sid, const char *secret,
                             const char *rid, json_t **frames)
{
    fake_conn *c = fc_open(hub);
    char r[96] = "";
    if (rid)
        snprintf(r, sizeof r, ",\"rid\":\"%s\"", rid);
    fc_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0%s}", sid,
            secret, r);
    *frames = fc_drain(c);
    return c;
}

START_TEST(a_handshake_in_a_batch_of_one_is_refused)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_open(hub);
    ck_assert_str_eq(error_for(c, "[{\"t\":\"hello\",\"v\":1}]"), "handshake");
    ck_assert_ptr_null(ferry_link_session_id(c->link));
    ck_assert_int_eq(app.opens, 0);
    /* The same handshake alone still works on that connection. */
    ck_assert_str_eq(error_for(c, "{\"t\":\"hello\",\"v\":1}"), "");
    ck_assert_ptr_nonnull(ferry_link_session_id(c->link));
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(a_refused_sub_refuses_only_itself)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    fc_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"sub\",\"topic\":\"private\"},"
               "{\"t\":\"msg\",\"seq\":2,\"data\":2}]");
    json_t *f = fc_drain(c);
    ck_assert_str_eq(str_of(frame_of(f, "error", 0), "code"), "forbidden");
    ck_assert_int_eq(int_of(frame_of(f, "ack", 0), "ack"), 2);
    ck_assert_int_eq(app.messages, 2);
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(valid_json_the_server_cannot_hold_is_bad_field)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    /* \u0000 in a string is data like any other. */
    ck_assert_str_eq(error_for(c, "{\"t\":\"msg\",\"seq\":1,\"data\":\"a\\u0000b\"}"), "");
    ck_assert_uint_eq(json_string_length(json_array_get(app.received, 0)), 3);
    /* A tiny number underflows to 0: accepted. */
    ck_assert_str_eq(error_for(c, "{\"t\":\"msg\",\"seq\":2,\"data\":1e-400}"), "");
    const char *refused[] = {
        "{\"t\":\"msg\",\"seq\":3,\"data\":{\"a\\u0000\":1}}",
        "{\"t\":\"msg\",\"seq\":3,\"data\":9223372036854775808}",
        "{\"t\":\"msg\",\"seq\":3,\"data\":-9223372036854775809}",
        "{\"t\":\"msg\",\"seq\":3,\"data\":1e400}",
        "{\"t\":\"ack\",\"ack\":18446744073709551616}",
        "{\"t\":\"ack\",\"ack\":9007199254740992}",
        "{\"t\":\"ack\",\"ack\":1.0}",
        "{\"t\":\"msg\",\"seq\":3e0,\"data\":1}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        ck_assert_msg(strcmp(error_for(c, refused[i]), "bad_field") == 0, "%s", refused[i]);
    /* An integer that fits int64 is data too. */
    ck_assert_str_eq(error_for(c, "{\"t\":\"msg\",\"seq\":3,\"data\":9223372036854775807}"), "");
    ck_assert_int_eq(app.messages, 3);
    /* Not well-formed, or not UTF-8: bad_json. */
    ck_assert_str_eq(error_for(c, "{\"t\":\"msg\",\"seq\":4,\"data\":\"\xff\"}"), "bad_json");
    ck_assert_str_eq(error_for(c, "{\"t\":\"msg\",\"seq\":4,\"data\":01}"), "bad_json");
    fc_close(c);
    hub_free(hub);
}
END_TEST

static void few_elements(ferry_options *o)
{
    o->max_elements = 8;
}

START_TEST(too_many_elements_is_too_big)
{
    ferry_hub *hub = hub_new(few_elements);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ck_assert_str_eq(error_for(c, "{\"t\":\"msg\",\"seq\":1,\"data\":[1,2,3,4,5,6,7,8,9]}"),
                     "too_big");
    ck_assert_int_eq(app.messages, 0);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(many_pings_in_one_batch_get_one_pong)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    char batch[128 * 16] = "[";
    for (int i = 0; i < 128; i++)
        strcat(batch, i ? ",{\"t\":\"ping\"}" : "{\"t\":\"ping\"}");
    strcat(batch, "]");
    ck_assert_int_eq(fc_send_raw(c, batch, strlen(batch)), 0);
    json_t *f = fc_drain(c);
    ck_assert_uint_eq(count_of(f, "pong"), 1);
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(a_stale_resume_ack_replays_from_the_oldest_message_kept)
{
    char sid[32], secret[64];
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, secret);
    ferry_session *s = app.last_session;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ferry_session_send(s, "1", 1), 0);
    json_decref(fc_drain(a));
    fc_send(a, "{\"t\":\"ack\",\"ack\":4}"); /* the server releases 1..4 */
    /* A resume that still carries ack 2 (a probe opened before that ack) takes the session
     * over and replays from 5: the client acknowledged 1..4, so it has them. */
    fake_conn *b = fc_open(hub);
    fc_send(b, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":2}", sid, secret);
    json_t *f = fc_drain(b);
    ck_assert_ptr_null(frame_of(f, "error", 0));
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    ck_assert_uint_eq(count_of(f, "msg"), 1);
    ck_assert_int_eq(int_of(frame_of(f, "msg", 0), "seq"), 5);
    json_decref(f);
    f = fc_drain(a); /* the old connection was taken over: nothing more on it */
    ck_assert_uint_eq(count_of(f, "msg"), 0);
    json_decref(f);
    fc_close(a); /* the old link going away must not detach the new one */
    ck_assert_int_eq(ferry_session_state(s), FERRY_STATE_ATTACHED);
    fc_close(b);
    hub_free(hub);
}
END_TEST

/* A client whose first resume was slow retries on a new connection with the same attempt
 * ID, succeeds and sends a frame; the first resume then arrives late. */
START_TEST(a_late_copy_of_a_resume_leaves_the_session_alone)
{
    char sid[32], s0[64];
    const char *rid = "a6Vq3m0Xr9Tz1LpK2wYb8Q";
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, s0);
    fc_close(a);
    fake_conn *b = resume_rid(hub, sid, s0, rid, &f);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    char s1[64];
    snprintf(s1, sizeof s1, "%s", str_of(frame_of(f, "welcome", 0), "secret"));
    json_decref(f);
    ck_assert_int_eq(fc_send(b, "{\"t\":\"msg\",\"seq\":1,\"data\":1}"), 0); /* s0 retired */
    json_decref(fc_drain(b));

    fake_conn *late = resume_rid(hub, sid, s0, rid, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    fc_close(late);
    ck_assert_int_eq(ferry_link_end_reason(b->link), FERRY_LINK_OPEN);
    ck_assert_int_eq(fc_send(b, "{\"t\":\"msg\",\"seq\":2,\"data\":2}"), 0);
    ck_assert_int_eq(app.messages, 2);
    ck_assert_int_eq(app.closes, 0);
    fc_close(b);
    /* And the newest secret still resumes. */
    fake_conn *c = resume_rid(hub, sid, s1, "Zk2Yb8Qa6Vq3m0Xr9T", &f);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

/* A second holder of a retired secret, with another attempt ID or none, still forks. */
START_TEST(a_second_holder_still_forks_the_session)
{
    const char *thieves[] = {NULL, "someone-else-0123456789"};
    for (int t = 0; t < 2; t++) {
        char sid[32], s0[64];
        json_t *f;
        ferry_hub *hub = hub_new(NULL);
        fake_conn *a = fc_hello(hub, sid, s0);
        fc_close(a);
        fake_conn *b = resume_rid(hub, sid, s0, "a6Vq3m0Xr9Tz1LpK2wYb8Q", &f);
        char s1[64];
        snprintf(s1, sizeof s1, "%s", str_of(frame_of(f, "welcome", 0), "secret"));
        json_decref(f);
        ck_assert_int_eq(fc_send(b, "{\"t\":\"ping\"}"), 0);
        json_decref(fc_drain(b));

        fake_conn *thief = resume_rid(hub, sid, s0, thieves[t], &f);
        ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
        json_decref(f);
        f = fc_drain(b);
        ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
        json_decref(f);
        fc_close(thief);
        fc_close(b);
        /* The thief can never resume it, with the secret it had or the owner's newest. */
        fake_conn *c = resume_rid(hub, sid, s0, thieves[t], &f);
        ck_assert_ptr_nonnull(frame_of(f, "reset", 0));
        ck_assert(json_is_false(json_object_get(frame_of(f, "welcome", 0), "resumed")));
        json_decref(f);
        fc_close(c);
        c = resume_rid(hub, sid, s1, NULL, &f);
        ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
        ck_assert(json_is_false(json_object_get(frame_of(f, "welcome", 0), "resumed")));
        json_decref(f);
        fc_close(c);
        hub_free(hub);
    }
}
END_TEST

/* The secret of a welcome, copied into `out`. */
static void welcome_secret(json_t *frames, char out[64])
{
    json_t *w = frame_of(frames, "welcome", 0);
    ck_assert(json_is_true(json_object_get(w, "resumed")));
    snprintf(out, 64, "%s", str_of(w, "secret"));
}

/* Within the rotation grace, a resume with another attempt ID (another holder of the
 * secret, or the client after it gave up on an attempt) gets a secret of its own, and the
 * one issued before, never used, is just wrong; a retry of that attempt gets its secret
 * again. */
START_TEST(a_secret_never_used_and_superseded_is_just_wrong)
{
    char sid[32], s0[64], s1[64], s2[64], again[64];
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, s0);
    fc_close(a);
    fake_conn *b = resume_rid(hub, sid, s0, "attempt-one-0123456789", &f); /* s1; lost */
    welcome_secret(f, s1);
    json_decref(f);
    fc_close(b);
    fake_conn *c = resume_rid(hub, sid, s0, "attempt-two-0123456789", &f);
    welcome_secret(f, s2); /* s2 supersedes the unused s1 */
    json_decref(f);
    ck_assert_str_ne(s2, s1);
    fc_close(c);
    c = resume_rid(hub, sid, s0, "attempt-two-0123456789", &f); /* its welcome lost too */
    welcome_secret(f, again);
    json_decref(f);
    ck_assert_str_eq(again, s2);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"ping\"}"), 0);
    json_decref(fc_drain(c));
    fake_conn *d = resume_rid(hub, sid, s1, NULL, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_OPEN);
    fc_close(d);
    fc_close(c);
    d = resume_rid(hub, sid, s2, "attempt-three-0123456789", &f);
    welcome_secret(f, again);
    json_decref(f);
    ck_assert_int_eq(app.closes, 0);
    fc_close(d);
    hub_free(hub);
}
END_TEST

/* A client's first resume is slow; it gives up on it and retries on a new connection with
 * the same secret and attempt ID, and gets s1. The first resume then completes, before the
 * client has sent anything on the new connection (within the rotation grace): it is handed
 * the same s1, so the secret the client holds still resumes the session. */
START_TEST(a_late_copy_before_any_frame_hands_out_the_same_secret)
{
    char sid[32], s0[64], s1[64], late_secret[64];
    const char *rid = "a6Vq3m0Xr9Tz1LpK2wYb8Q";
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, s0);
    fc_close(a);
    fake_conn *b = resume_rid(hub, sid, s0, rid, &f); /* the retry: the client keeps it */
    welcome_secret(f, s1);
    json_decref(f);
    fake_conn *late = resume_rid(hub, sid, s0, rid, &f); /* the first try, completing */
    welcome_secret(f, late_secret);
    json_decref(f);
    ck_assert_str_eq(late_secret, s1);
    /* It cannot be told from a retry after a lost welcome, so it takes the session over as
     * one would: the client's connection is let go... */
    ck_assert_int_eq(ferry_link_end_reason(b->link), FERRY_LINK_SUPERSEDED);
    fc_close(late);
    fc_close(b);
    /* ...and the client resumes with the secret it holds. */
    fake_conn *c = resume_rid(hub, sid, s1, "Zk2Yb8Qa6Vq3m0Xr9Tz1Lp", &f);
    ck_assert_uint_eq(count_of(f, "reset"), 0);
    welcome_secret(f, late_secret);
    json_decref(f);
    ck_assert_int_eq(app.opens, 1);
    ck_assert_int_eq(app.resets, 0);
    ck_assert_int_eq(app.closes, 0);
    fc_close(c);
    hub_free(hub);
}
END_TEST

/* A retry after a lost welcome gets the secret that welcome carried; once the client has
 * used it, the old secret is retired: a late copy of the attempt (same attempt ID) is
 * answered as a stranger and leaves the session alone, a second holder (another one) ends
 * it as forked. */
START_TEST(after_a_retry_a_late_copy_is_harmless_and_a_second_holder_forks)
{
    char sid[32], s0[64], s1[64], again[64];
    const char *rid = "a6Vq3m0Xr9Tz1LpK2wYb8Q";
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, s0);
    fc_close(a);
    fake_conn *b = resume_rid(hub, sid, s0, rid, &f); /* its welcome is lost */
    welcome_secret(f, s1);
    json_decref(f);
    fc_close(b);
    fake_conn *c = resume_rid(hub, sid, s0, rid, &f);
    welcome_secret(f, again);
    json_decref(f);
    ck_assert_str_eq(again, s1);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"msg\",\"seq\":1,\"data\":1}"), 0); /* s0 retired */
    json_decref(fc_drain(c));

    fake_conn *late = resume_rid(hub, sid, s0, rid, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    fc_close(late);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_OPEN);
    ck_assert_int_eq(app.closes, 0);

    fake_conn *thief = resume_rid(hub, sid, s0, "someone-else-0123456789", &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    fc_close(thief);
    f = fc_drain(c);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
    json_decref(f);
    fc_close(c);
    ck_assert_int_eq(app.last_close, FERRY_REASON_FORKED);
    c = resume_rid(hub, sid, s1, "Zk2Yb8Qa6Vq3m0Xr9Tz1Lp", &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
    json_decref(f);
    fc_close(c);
    hub_free(hub);
}
END_TEST

/* Without attempt IDs a resume's new secret stays random: two holders of one secret must
 * not be handed the same secrets from then on. Here a thief resumes with the owner's
 * secret, the owner resumes with it too before the thief has sent anything, and the
 * thief's secret is then just wrong. */
START_TEST(without_a_rid_a_second_holder_does_not_keep_step_with_the_owner)
{
    char sid[32], s0[64], mine[64], theirs[64];
    json_t *f;
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, s0);
    ck_assert_int_eq(fc_send(a, "{\"t\":\"ping\"}"), 0);
    json_decref(fc_drain(a));
    fake_conn *thief = resume_rid(hub, sid, s0, NULL, &f);
    welcome_secret(f, theirs);
    json_decref(f);
    ck_assert(ferry_link_done(a->link));
    fc_close(a);
    fake_conn *b = resume_rid(hub, sid, s0, NULL, &f); /* the owner, kicked, resumes */
    welcome_secret(f, mine);
    json_decref(f);
    ck_assert_str_ne(mine, theirs);
    fc_close(thief);
    thief = resume_rid(hub, sid, theirs, NULL, &f);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    ck_assert_int_eq(ferry_link_end_reason(b->link), FERRY_LINK_OPEN);
    fc_close(thief);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(a_bad_rid_is_bad_field)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_open(hub);
    ck_assert_str_eq(error_for(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"x\",\"secret\":\"y\","
                                  "\"ack\":0,\"rid\":\"short\"}"),
                     "bad_field");
    ck_assert_str_eq(error_for(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"x\",\"secret\":\"y\","
                                  "\"ack\":0,\"rid\":12345678901234567890}"),
                     "bad_field");
    fc_close(c);
    hub_free(hub);
}
END_TEST

/* The application's reply to message N is queued while N is delivered; the ack of N only
 * once on_message has returned. A transport that pulls in between sends the reply first. */
static ferry_link *pulling;
static int pulled_msgs, pulled_acks;

static void count_pull(void)
{
    ferry_buf b = {0};
    if (ferry_link_pull(pulling, &b, FERRY_PULL_ARRAY) > 0) {
        json_t *v = json_loadb(b.data, b.len, 0, NULL);
        pulled_msgs += (int)count_of(v, "msg");
        pulled_acks += (int)count_of(v, "ack");
        json_decref(v);
    }
    ferry_buf_release(&b);
}

static void reply_then_pull(ferry_session *s, json_t *data, void *ud)
{
    (void)data;
    (void)ud;
    ferry_session_send(s, "\"reply\"", 7);
    count_pull();
}

static void nop_wake(void *ud)
{
    (void)ud;
}

START_TEST(a_reply_can_come_before_the_ack_of_its_message)
{
    static const ferry_link_ops ops = {sizeof ops, nop_wake, NULL};
    ferry_callbacks cb = {.size = sizeof cb, .on_message = reply_then_pull};
    ferry_hub *hub;
    ck_assert_int_eq(ferry_hub_new(&hub, NULL, &cb, NULL), 0);
    ck_assert_int_eq(ferry_link_new(&pulling, hub, &ops, NULL), 0);
    const char *hello = "{\"t\":\"hello\",\"v\":1}", *msg = "{\"t\":\"msg\",\"seq\":1,\"data\":1}";
    ck_assert_int_eq(ferry_link_recv(pulling, hello, strlen(hello)), 0);
    count_pull(); /* the welcome */
    ck_assert_int_eq(ferry_link_recv(pulling, msg, strlen(msg)), 0);
    ck_assert_int_eq(pulled_msgs, 1);
    ck_assert_int_eq(pulled_acks, 0);
    count_pull();
    ck_assert_int_eq(pulled_acks, 1);
    ferry_link_free(pulling);
    ferry_hub_free(hub);
}
END_TEST

Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, a_handshake_in_a_batch_of_one_is_refused);
    tcase_add_test(tc, a_refused_sub_refuses_only_itself);
    tcase_add_test(tc, valid_json_the_server_cannot_hold_is_bad_field);
    tcase_add_test(tc, too_many_elements_is_too_big);
    tcase_add_test(tc, many_pings_in_one_batch_get_one_pong);
    tcase_add_test(tc, a_stale_resume_ack_replays_from_the_oldest_message_kept);
    tcase_add_test(tc, a_late_copy_of_a_resume_leaves_the_session_alone);
    tcase_add_test(tc, a_second_holder_still_forks_the_session);
    tcase_add_test(tc, a_secret_never_used_and_superseded_is_just_wrong);
    tcase_add_test(tc, a_late_copy_before_any_frame_hands_out_the_same_secret);
    tcase_add_test(tc, after_a_retry_a_late_copy_is_harmless_and_a_second_holder_forks);
    tcase_add_test(tc, without_a_rid_a_second_holder_does_not_keep_step_with_the_owner);
    tcase_add_test(tc, a_bad_rid_is_bad_field);
    tcase_add_test(tc, a_reply_can_come_before_the_ack_of_its_message);
    suite_add_tcase(s, tc);
    return s;
}
