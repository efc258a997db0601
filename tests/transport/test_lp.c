#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

START_TEST(lp_echo_and_push)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert_uint_eq(strlen(c.sid), 22);
    ck_assert_int_eq(tc_send(&c, "{\"echo\":true,\"n\":7}"), 0);
    ck_assert_int_eq(c.acked_out, 1); /* the send's response carries the ack */
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    ts_publish(s, "{\"news\":1}");
    ck_assert(tc_wait_msgs(&c, 2, 5000));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c.got, 1), "news")), 1);
    ck_assert_uint_eq(ts_received(s), 1);
    ck_assert_int_eq(c.gaps + c.dups, 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* What the server received decides: no request of a client's session may carry its ID or
 * secret in the URL (they end up in access logs, proxies and browser history); every request
 * after the handshake carries both in its Authorization header. */
START_TEST(lp_headers_and_methods)
{
    tserver *s = ts_start_recording(NULL);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    fyc_resp r;
    char v[64];
    ts_publish(s, "1");
    ck_assert_int_eq(tc_lp(&c, "GET", "ack=0", NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(fyc_header(&r, "Cache-Control", v, sizeof v), "no-store");
    ck_assert_str_eq(fyc_header(&r, "Content-Type", v, sizeof v), "application/json");
    fyc_resp_free(&r);
    ck_assert(tc_wait_msgs(&c, 1, 5000));           /* the client's own polls */
    ck_assert_int_eq(tc_send(&c, "{\"n\":1}"), 0); /* and its own send */
    ck_assert_int_eq(tc_lp(&c, "PUT", NULL, NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 405);
    fyc_resp_free(&r);
    ck_assert_int_eq(tc_lp(&c, "GET", "ack=banana", NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 400);
    fyc_resp_free(&r);

    char auth[160];
    snprintf(auth, sizeof auth, "Bearer %s:%s", c.sid, c.secret);
    size_t i, polls = 0, sends = 0;
    json_t *q;
    pthread_mutex_lock(&s->lock);
    ck_assert_uint_ge(json_array_size(s->requests), 5);
    json_array_foreach(s->requests, i, q) {
        const char *method = json_string_value(json_object_get(q, "method"));
        const char *uri = json_string_value(json_object_get(q, "uri"));
        const char *query = json_string_value(json_object_get(q, "query"));
        const char *got = json_string_value(json_object_get(q, "auth"));
        ck_assert_msg(!strstr(uri, c.secret) && !strstr(query, c.secret),
                      "request %zu has the secret in its URL: %s %s?%s", i, method, uri, query);
        ck_assert_msg(!strstr(uri, c.sid) && !strstr(query, c.sid),
                      "request %zu has the session ID in its URL: %s %s?%s", i, method, uri, query);
        if (i == 0) { /* the handshake: no session yet */
            ck_assert_str_eq(method, "POST");
            ck_assert_str_eq(got, "");
            continue;
        }
        ck_assert_msg(strcmp(got, auth) == 0, "request %zu (%s %s) has Authorization \"%s\"", i,
                      method, uri, got);
        polls += strcmp(method, "GET") == 0;
        sends += strcmp(method, "POST") == 0;
    }
    pthread_mutex_unlock(&s->lock);
    ck_assert_uint_ge(polls, 3);
    ck_assert_uint_eq(sends, 1);

    /* Nor does the server take credentials from a URL. */
    char target[192];
    snprintf(target, sizeof target, "/ferry/lp?ack=0&sid=%s&secret=%s", c.sid, c.secret);
    ck_assert_int_eq(fyc_http(s->port, "GET", target, NULL, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 404);
    fyc_resp_free(&r);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(lp_a_response_lost_in_flight_is_sent_again)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    ts_publish(s, "{\"i\":1}");
    ts_publish(s, "{\"i\":2}");
    fyc_resp r;
    char q[96];
    snprintf(q, sizeof q, "ack=0");
    ck_assert_int_eq(tc_lp(&c, "GET", q, NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"seq\":2"));
    fyc_resp_free(&r); /* "lost": the client never saw it, so its next poll still says ack=0 */
    ck_assert_int_eq(tc_pump(&c, 5000), 2);
    ck_assert_int_eq(json_array_size(c.got), 2);
    ts_publish(s, "{\"i\":3}");
    ck_assert(tc_wait_msgs(&c, 3, 5000)); /* ack=2 now: only seq 3 comes */
    ck_assert_int_eq(c.gaps + c.dups, 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(lp_a_second_poll_ends_the_first)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    ts_held first = {&c, {0}, -1}, second = {&c, {0}, -1};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, ts_hold_poll, &first);
    ck_assert(ts_wait_held_polls(s, 1, 5000)); /* the first is held */
    pthread_create(&t2, NULL, ts_hold_poll, &second);
    pthread_join(t1, NULL); /* returns because the second one arrived */
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_POLLS), 1);
    ck_assert_int_eq(first.rc, 0);
    ck_assert_int_eq(first.r.status, 200);
    ck_assert_str_eq(first.r.body, "[]");
    ts_publish(s, "{\"i\":1}");
    pthread_join(t2, NULL);
    ck_assert_int_eq(second.r.status, 200);
    ck_assert_ptr_nonnull(strstr(second.r.body, "\"i\":1"));
    fyc_resp_free(&first.r);
    fyc_resp_free(&second.r);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* Every error answers the request that caused it: a held poll never takes a send's error,
 * so a client can tell which of its sends was refused. */
START_TEST(lp_a_send_error_is_answered_on_the_send_not_the_held_poll)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    ts_held held = {&c, {0}, -1};
    pthread_t t;
    pthread_create(&t, NULL, ts_hold_poll, &held);
    ck_assert(ts_wait_held_polls(s, 1, 5000));
    for (int i = 0; i < 20; i++) { /* a race would show within a few */
        fyc_resp r = {0};
        ck_assert_int_eq(tc_lp(&c, "POST", NULL, "{\"t\":\"msg\",\"seq\":9,\"data\":1}", &r, 5000), 0);
        ck_assert_int_eq(r.status, 400);
        ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"seq_gap\""));
        fyc_resp_free(&r);
    }
    ts_publish(s, "{\"i\":1}");
    pthread_join(t, NULL);
    ck_assert_int_eq(held.r.status, 200);
    ck_assert_ptr_null(strstr(held.r.body, "error"));
    ck_assert_ptr_nonnull(strstr(held.r.body, "\"i\":1"));
    fyc_resp_free(&held.r);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(lp_bad_credentials_get_identical_answers)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    char forged[32];
    snprintf(forged, sizeof forged, "%s", c.sid);
    forged[1] = forged[1] == 'A' ? 'B' : 'A';
    char h[5][160];
    snprintf(h[0], 160, "Authorization: Bearer %s:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", c.sid); /* wrong secret */
    snprintf(h[1], 160, "Authorization: Bearer %s:%s\r\n", forged, c.secret);  /* forged ID */
    snprintf(h[2], 160, "Authorization: Bearer AAAAAAAAAAAAAAAAAAAAAA:%s\r\n", c.secret); /* unknown */
    snprintf(h[3], 160, "Authorization: Bearer %s\r\n", c.secret);             /* malformed */
    h[4][0] = '\0';                                                            /* none */
    char *first = NULL;
    for (int i = 0; i < 5; i++) {
        for (int post = 0; post < 2; post++) {
            if (post && i == 4)
                continue; /* a POST without credentials is a handshake */
            fyc_resp r;
            ck_assert_int_eq(fyc_http(s->port, post ? "POST" : "GET", post ? "/ferry/lp" : "/ferry/lp?ack=0",
                                      h[i], post ? "{\"t\":\"ping\"}" : NULL, post ? 12 : 0, 5000, &r), 0);
            ck_assert_int_eq(r.status, 404);
            if (!first)
                first = strdup(r.body);
            ck_assert_str_eq(r.body, first);
            fyc_resp_free(&r);
        }
    }
    free(first);
    ts_publish(s, "1"); /* the real owner still polls fine */
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* The value of the last ack frame the client received from frame `from` on, or -1. */
static long ack_since(tc *c, size_t from)
{
    long ack = -1;
    for (size_t i = from; i < json_array_size(c->frames); i++) {
        json_t *f = json_array_get(c->frames, i);
        if (strcmp(json_string_value(json_object_get(f, "t")), "ack") == 0)
            ack = (long)json_integer_value(json_object_get(f, "ack"));
    }
    return ack;
}

START_TEST(lp_bad_bodies)
{
    tserver *s = ts_start(ts_small_frames);
    tc c;
    ferry_stats st = {.size = sizeof st};
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    char *big = malloc(2000);
    memset(big, ' ', 1999);
    big[1999] = '\0';
    ck_assert_int_eq(tc_send_raw(&c, big), 413);
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_FRAME_SIZE), 1);
    free(big);
    ck_assert_int_eq(tc_send_raw(&c, "{nope"), 400);
    ck_assert_str_eq(c.last_error, "bad_json");
    ck_assert_int_eq(tc_send_raw(&c, "{\"t\":\"msg\",\"seq\":3,\"data\":1}"), 400);
    ck_assert_str_eq(c.last_error, "seq_gap");
    fyc_resp r;
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/lp", NULL, "{\"t\":\"msg\"}", 11, 5000, &r), 0);
    ck_assert_int_eq(r.status, 400); /* a handshake that is not one */
    ck_assert_ptr_nonnull(strstr(r.body, "bad_field"));
    fyc_resp_free(&r);
    /* None of it reached the application, opened a session or moved the inbound seq. */
    ferry_hub_stats(s->hub, &st);
    ck_assert_uint_eq(st.messages_in, 0);
    ck_assert_uint_eq(st.sessions_opened, 1);
    ck_assert_uint_eq(st.attached + st.detached, 1);
    ck_assert_uint_eq(ts_received(s), 0);

    /* Sending the same message twice delivers it once; both answers ack seq 1, and seq 1 is
     * what the server expected, so the refused seq 3 left no trace. */
    const char *m = "{\"t\":\"msg\",\"seq\":1,\"data\":{\"once\":1}}";
    size_t from = json_array_size(c.frames);
    ck_assert_int_eq(tc_send_raw(&c, m), 200);
    ck_assert_int_eq(ack_since(&c, from), 1);
    from = json_array_size(c.frames);
    ck_assert_int_eq(tc_send_raw(&c, m), 200);
    ck_assert_int_eq(ack_since(&c, from), 1);
    ferry_hub_stats(s->hub, &st);
    ck_assert_uint_eq(st.messages_in, 1);
    ck_assert_uint_eq(ts_received(s), 1);
    pthread_mutex_lock(&s->lock);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(s->received, 0), "once")), 1);
    pthread_mutex_unlock(&s->lock);
    from = json_array_size(c.frames);
    ck_assert_int_eq(tc_send_raw(&c, "{\"t\":\"msg\",\"seq\":2,\"data\":{\"twice\":0}}"), 200);
    ck_assert_int_eq(ack_since(&c, from), 2);
    ck_assert_uint_eq(ts_received(s), 2);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(lp_origin_and_cors)
{
    tserver *s = ts_start(ts_good_origin);
    fyc_resp r;
    char v[128];
    const char *hello = "{\"t\":\"hello\",\"v\":1}";
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/lp", "Origin: http://evil.example\r\n", hello, strlen(hello), 5000, &r), 0);
    ck_assert_int_eq(r.status, 403);
    ck_assert_ptr_null(fyc_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    fyc_resp_free(&r);
    ck_assert_int_eq(fyc_http(s->port, "OPTIONS", "/ferry/lp", "Origin: http://evil.example\r\n", NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 403);
    fyc_resp_free(&r);
    ck_assert_int_eq(fyc_http(s->port, "OPTIONS", "/ferry/lp",
                              "Origin: http://good.example\r\nAccess-Control-Request-Method: GET\r\n"
                              "Access-Control-Request-Headers: authorization\r\n", NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(fyc_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "http://good.example");
    ck_assert_str_eq(fyc_header(&r, "Vary", v, sizeof v), "Origin");
    ck_assert_ptr_nonnull(strstr(fyc_header(&r, "Access-Control-Allow-Headers", v, sizeof v), "Authorization"));
    fyc_resp_free(&r);
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/lp", "Origin: http://good.example\r\n", hello, strlen(hello), 5000, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(fyc_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "http://good.example");
    ck_assert_ptr_null(strstr(r.head, "Access-Control-Allow-Origin: *"));
    fyc_resp_free(&r);
    ts_stop(s);
}
END_TEST

static void one_conn(ferry_mount_options *o)
{
    o->max_connections = 1;
}

START_TEST(lp_capacity_is_refused_at_once_with_503)
{
    tserver *s = ts_start(one_conn);
    tc a, b;
    tc_init(&a, s, TC_LP);
    tc_init(&b, s, TC_LP);
    ck_assert_int_eq(tc_connect(&a), 0);
    ck_assert_int_eq(tc_connect(&b), 0);
    ts_held h = {&a, {0}, -1};
    pthread_t t;
    pthread_create(&t, NULL, ts_hold_poll, &h);
    ck_assert(ts_wait_held_polls(s, 1, 5000)); /* a's poll holds the only slot */
    fyc_resp r;
    char q[96], v[16];
    snprintf(q, sizeof q, "ack=0");
    ck_assert_int_eq(tc_lp(&b, "GET", q, NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(fyc_header(&r, "Retry-After", v, sizeof v), "1");
    fyc_resp_free(&r);
    ts_publish(s, "1"); /* releases the held poll */
    pthread_join(t, NULL);
    fyc_resp_free(&h.r);
    tc_free(&a);
    tc_free(&b);
    ts_stop(s);
}
END_TEST

START_TEST(lp_a_client_that_stops_polling_is_detached_then_expires)
{
    tserver *s = ts_start(ts_fast_heartbeat);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    /* While it polls it stays attached, pings included. */
    for (int i = 0; i < 5; i++)
        ck_assert_int_ge(tc_pump(&c, 1000), 0);
    size_t att, det, exp;
    ferry_hub_counts(s->hub, &att, &det, &exp);
    ck_assert_uint_eq(att, 1);
    /* It stops: detached after the heartbeat timeout, ended after the resume window. */
    ck_assert(ts_wait_count(s, &s->closes, 1, 5000));
    ck_assert_int_eq(ts_count(s, &s->closes), 1);
    fyc_resp r;
    char q[96];
    snprintf(q, sizeof q, "ack=%ld", c.last_seq);
    ck_assert_int_eq(tc_lp(&c, "GET", q, NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 404); /* its long-poll link is gone */
    fyc_resp_free(&r);
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert_str_eq(c.last_reset, "expired");
    tc_free(&c);
    ts_stop(s);
}
END_TEST

Suite *lp_suite(void)
{
    Suite *s = suite_create("longpoll");
    TCase *tcs = tcase_create("longpoll");
    tcase_set_timeout(tcs, 60);
    tcase_add_test(tcs, lp_echo_and_push);
    tcase_add_test(tcs, lp_headers_and_methods);
    tcase_add_test(tcs, lp_a_response_lost_in_flight_is_sent_again);
    tcase_add_test(tcs, lp_a_second_poll_ends_the_first);
    tcase_add_test(tcs, lp_a_send_error_is_answered_on_the_send_not_the_held_poll);
    tcase_add_test(tcs, lp_bad_credentials_get_identical_answers);
    tcase_add_test(tcs, lp_bad_bodies);
    tcase_add_test(tcs, lp_origin_and_cors);
    tcase_add_test(tcs, lp_capacity_is_refused_at_once_with_503);
    tcase_add_test(tcs, lp_a_client_that_stops_polling_is_detached_then_expires);
    suite_add_tcase(s, tcs);
    return s;
}
