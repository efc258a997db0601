#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

START_TEST(ws_echo_and_push)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert(!c.resumed);
    ck_assert_uint_eq(strlen(c.sid), 22);
    tc_send(&c, "{\"echo\":true,\"n\":1}");
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c.got, 0), "n")), 1);
    ts_publish(s, "{\"news\":\"kick-off\"}");
    ck_assert(tc_wait_msgs(&c, 2, 5000));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c.got, 1), "news")), "kick-off");
    ck_assert_uint_eq(ts_received(s), 1);
    for (int i = 0; i < 50 && c.acked_out < 1; i++)
        tc_pump(&c, 100); /* the ack may trail the echo: it is queued once on_message returns */
    ck_assert_int_eq(c.acked_out, 1);
    ck_assert_int_eq(c.gaps + c.dups, 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(ws_malformed_frames_get_errors_and_the_connection_stays)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    const char *bad[] = {"{bad", "{\"t\":\"msg\",\"seq\":1}", "{\"t\":\"nope\"}", "[]",
                         "{\"t\":\"msg\",\"seq\":5,\"data\":1}"};
    const char *codes[] = {"bad_json", "bad_field", "unknown_type", "bad_field", "seq_gap"};
    for (int i = 0; i < 5; i++) {
        c.last_error[0] = '\0';
        tc_send_raw(&c, bad[i]);
        for (int k = 0; k < 50 && !c.last_error[0]; k++)
            tc_pump(&c, 100);
        ck_assert_str_eq(c.last_error, codes[i]);
    }
    ck_assert(c.open);
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    ck_assert_uint_eq(ts_received(s), 1);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

static int wait_close(tc *c)
{
    for (int i = 0; i < 100 && c->open; i++)
        tc_pump(c, 100);
    return c->ws_close_code;
}

START_TEST(ws_oversize_message_gets_too_big_and_the_connection_stays)
{
    tserver *s = ts_start(ts_small_frames);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    char *big = malloc(2000);
    memset(big, ' ', 1999);
    big[1999] = '\0';
    fyc_ws_text(&c.ws, big);
    for (int k = 0; k < 50 && !c.last_error[0]; k++)
        tc_pump(&c, 100);
    ck_assert_str_eq(c.last_error, "too_big");
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_FRAME_SIZE), 1);
    /* Fragments are reassembled against the same cap; the rest of the message is dropped. */
    c.last_error[0] = '\0';
    fyc_ws_send(&c.ws, 1, false, big, 800);
    fyc_ws_send(&c.ws, 0, false, big, 800);
    fyc_ws_send(&c.ws, 0, true, big, 800);
    for (int k = 0; k < 50 && !c.last_error[0]; k++)
        tc_pump(&c, 100);
    ck_assert_str_eq(c.last_error, "too_big");
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_FRAME_SIZE), 2);
    /* A fragmented message under the cap goes through, on the same connection. */
    ck_assert(c.open);
    const char *msg = "{\"t\":\"msg\",\"seq\":1,\"data\":{\"echo\":true}}";
    fyc_ws_send(&c.ws, 1, false, msg, 10);
    fyc_ws_send(&c.ws, 0, false, msg + 10, 10);
    fyc_ws_send(&c.ws, 0, true, msg + 20, strlen(msg) - 20);
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    ck_assert_int_eq(c.ws_close_code, 0);
    free(big);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(ws_binary_is_refused_and_pings_are_answered)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    fyc_ws_send(&c.ws, 9, true, "hi", 2);
    int op;
    char *data;
    size_t len;
    ck_assert_int_eq(fyc_ws_recv(&c.ws, &op, &data, &len, 5000), 0);
    ck_assert_int_eq(op, 10);
    ck_assert_str_eq(data, "hi");
    free(data);
    fyc_ws_send(&c.ws, 2, true, "\x01\x02", 2);
    ck_assert_int_eq(wait_close(&c), 1003);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(ws_origin_is_checked_before_the_handshake)
{
    tserver *s = ts_start(ts_good_origin);
    fyc_ws ws;
    int status;
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", "Origin: http://evil.example\r\n", &status), -1);
    ck_assert_int_eq(status, 403);
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_ORIGIN), 1);
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", "Origin: http://good.example\r\n", &status), 0);
    fyc_ws_drop(&ws);
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", NULL, &status), 0); /* no Origin */
    fyc_ws_drop(&ws);
    ts_stop(s);

    s = ts_start(NULL); /* no list: same origin only */
    char same[64];
    snprintf(same, sizeof same, "Origin: http://127.0.0.1:%d\r\n", s->port);
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", same, &status), 0);
    fyc_ws_drop(&ws);
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", "Origin: http://127.0.0.1:1\r\n", &status), -1);
    ck_assert_int_eq(status, 403);
    ts_stop(s);
}
END_TEST

static void two_conns(ferry_mount_options *o)
{
    o->max_connections = 2;
}

START_TEST(ws_capacity_is_refused_at_once_with_503)
{
    tserver *s = ts_start(two_conns);
    fyc_ws a, b, c;
    int status;
    ck_assert_int_eq(fyc_ws_open(&a, s->port, "/ferry/ws", NULL, &status), 0);
    ck_assert_int_eq(fyc_ws_open(&b, s->port, "/ferry/ws", NULL, &status), 0);
    ck_assert_int_eq(fyc_ws_open(&c, s->port, "/ferry/ws", NULL, &status), -1);
    ck_assert_int_eq(status, 503);
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_CONNECTIONS), 1);
    fyc_resp r;
    ck_assert_int_eq(fyc_http(s->port, "GET", "/ferry/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                              NULL, 0, 5000, &r), 0);
    char v[16];
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(fyc_header(&r, "Retry-After", v, sizeof v));
    fyc_resp_free(&r);
    fyc_ws_drop(&a);
    /* The slot frees when civetweb closes the connection. */
    ck_assert(ts_wait_metric(s, "ferry_connections{transport=\"websocket\"}", 1, 5000));
    ck_assert_int_eq(fyc_ws_open(&c, s->port, "/ferry/ws", NULL, &status), 0);
    fyc_ws_drop(&b);
    fyc_ws_drop(&c);
    ts_stop(s);
}
END_TEST

/* The client's view of the published stream must be 1..n, each once. */
static void check_stream(tc *c, int n)
{
    ck_assert_int_eq(c->gaps, 0);
    ck_assert_int_eq(c->dups, 0);
    int i = 0;
    size_t k;
    json_t *d;
    json_array_foreach(c->got, k, d) {
        json_t *v = json_object_get(d, "i");
        if (v)
            ck_assert_int_eq(json_integer_value(v), ++i);
    }
    ck_assert_int_eq(i, n);
}

START_TEST(ws_abrupt_close_then_resume_loses_and_repeats_nothing)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    ts_pub p = {s, 300};
    pthread_t t;
    pthread_create(&t, NULL, ts_publisher, &p);
    for (int round = 0; round < 4; round++) {
        ck_assert(tc_wait_msgs(&c, json_array_size(c.got) + 40, 10000));
        /* Client messages sent but never acked before the drop are resent on resume. */
        for (int i = 0; i < 5; i++) {
            char m[64];
            snprintf(m, sizeof m, "{\"c\":%ld}", c.out_seq + 1);
            tc_send(&c, m);
        }
        tc_drop(&c);
        ck_assert(ts_wait_attached(s, 0, 5000)); /* the server saw the connection go */
        ck_assert_int_eq(tc_connect(&c), 0);
        ck_assert(c.resumed);
    }
    pthread_join(t, NULL);
    if (!tc_wait_msgs(&c, 300, 10000))
        ts_dump(s);
    ck_assert_msg(json_array_size(c.got) >= 300, "got %zu, last seq %ld, gaps %ld, dups %ld, open %d",
                  json_array_size(c.got), c.last_seq, c.gaps, c.dups, c.open);
    check_stream(&c, 300);
    ts_expect_received_c(s, 20);
    ck_assert_int_eq(ts_count(s, &s->opens), 1);
    ck_assert_int_eq(ts_count(s, &s->resets), 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(ws_bad_resumes_get_identical_answers)
{
    tserver *s = ts_start(NULL);
    tc owner;
    tc_init(&owner, s, TC_WS);
    ck_assert_int_eq(tc_connect(&owner), 0);
    char forged[32];
    snprintf(forged, sizeof forged, "%s", owner.sid);
    forged[0] = forged[0] == 'A' ? 'B' : 'A';
    const char *sids[] = {owner.sid, forged, "AAAAAAAAAAAAAAAAAAAAAA", "short"};
    const char *secrets[] = {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", owner.secret, owner.secret, owner.secret};
    for (int i = 0; i < 4; i++) {
        tc c;
        tc_init(&c, s, TC_WS);
        snprintf(c.sid, sizeof c.sid, "%s", sids[i]);
        snprintf(c.secret, sizeof c.secret, "%s", secrets[i]);
        ck_assert_int_eq(tc_connect(&c), 0);
        ck_assert_str_eq(c.last_reset, "unknown");
        ck_assert(!c.resumed);
        ck_assert_str_ne(c.sid, owner.sid);
        /* Frame for frame the same shape: reset, then a fresh welcome. */
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c.frames, 0), "t")), "reset");
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c.frames, 1), "t")), "welcome");
        tc_free(&c);
    }
    /* on_reset runs on the server's thread, maybe after the welcome left */
    ck_assert(ts_wait_count(s, &s->resets, 4, 5000));
    ck_assert_int_eq(ts_count(s, &s->resets), 4);
    /* The owner is untouched. */
    tc_send(&owner, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&owner, 1, 5000));
    tc_free(&owner);
    ts_stop(s);
}
END_TEST

static void fast_stall(ferry_mount_options *o)
{
    ts_core(o)->stall_timeout_ms = 1000;
    ts_core(o)->ack_window_bytes = 16 * 1024;
}

START_TEST(ws_a_client_that_stops_reading_never_stalls_the_others)
{
    tserver *s = ts_start(fast_stall);
    tc slow, fast[3];
    tc_init(&slow, s, TC_WS);
    ck_assert_int_eq(tc_connect(&slow), 0);
    for (int i = 0; i < 3; i++) {
        tc_init(&fast[i], s, TC_WS);
        ck_assert_int_eq(tc_connect(&fast[i]), 0);
    }
    /* 600 messages of ~1 KB: far more than the slow client's socket buffers would take if
     * the server kept writing to it. The slow client reads nothing at all. */
    char *pad = malloc(1001);
    memset(pad, 'x', 1000);
    pad[1000] = '\0';
    const int n = 600;
    for (int i = 1; i <= n; i++) {
        char *m = malloc(1100);
        snprintf(m, 1100, "{\"i\":%d,\"pad\":\"%s\"}", i, pad);
        ts_publish(s, m);
        free(m);
        for (int k = 0; k < 3; k++) /* the others keep reading and acking */
            while (tc_pump(&fast[k], 0) > 0)
                tc_ack(&fast[k]);
    }
    for (int k = 0; k < 3; k++) {
        if (!tc_wait_msgs(&fast[k], (size_t)n, 15000))
            ts_dump(s);
        ck_assert_msg(json_array_size(fast[k].got) >= (size_t)n, "client %d: %zu of %d, close %d",
                      k, json_array_size(fast[k].got), n, fast[k].ws_close_code);
        check_stream(&fast[k], n);
        ck_assert(fast[k].open); /* never cut off */
    }
    /* The slow one is cut off (4002) once its window has stayed full, and can resume. */
    ck_assert_int_eq(wait_close(&slow), 4002);
    ck_assert_int_eq(tc_connect(&slow), 0);
    ck_assert(slow.resumed);
    ck_assert(tc_wait_msgs(&slow, (size_t)n, 30000));
    check_stream(&slow, n);
    free(pad);
    tc_free(&slow);
    for (int k = 0; k < 3; k++)
        tc_free(&fast[k]);
    ts_stop(s);
}
END_TEST

START_TEST(ws_silent_client_is_dropped_then_its_session_expires)
{
    tserver *s = ts_start(ts_fast_heartbeat);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    /* Read without answering: pings arrive, then the close. */
    int code = 0, pings = 0;
    for (int i = 0; i < 100 && !code; i++) {
        int op;
        char *data;
        size_t len;
        int r = fyc_ws_recv(&c.ws, &op, &data, &len, 100);
        if (r == 0 && op == 1 && strstr(data, "\"ping\""))
            pings++;
        if (r == 0 && op == 8)
            code = ((unsigned char)data[0] << 8) | (unsigned char)data[1];
        if (r == 0)
            free(data);
        if (r == -1)
            break;
    }
    ck_assert_int_ge(pings, 1);
    ck_assert_int_eq(code, 4001);
    tc_drop(&c);
    ck_assert(ts_wait_count(s, &s->closes, 1, 5000));
    ck_assert_int_eq(ts_count(s, &s->closes), 1);
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert_str_eq(c.last_reset, "expired");
    tc_free(&c);
    ts_stop(s);
}
END_TEST

static void strict(ferry_mount_options *o)
{
    o->handshake_timeout_ms = 300;
    o->tick_ms = 50;
}

START_TEST(ws_control_frame_flood_and_missing_handshake_close_with_1008)
{
    tserver *s = ts_start(strict);
    /* A ping flood. */
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    for (int i = 0; i < 100; i++)
        fyc_ws_send(&c.ws, 9, true, "x", 1);
    int code = fyc_ws_wait_close(&c.ws, 30000);
    ck_assert_int_eq(code, 1008);
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_CONTROL_RATE), 1);
    tc_free(&c);
    /* A few pings are fine. */
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    for (int i = 0; i < 5; i++)
        fyc_ws_send(&c.ws, 9, true, "x", 1);
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    ck_assert(c.open);
    /* A connection that never says hello is closed after the handshake deadline, while
     * the one that did stays. */
    fyc_ws silent;
    int status;
    ck_assert_int_eq(fyc_ws_open(&silent, s->port, "/ferry/ws", NULL, &status), 0);
    code = fyc_ws_wait_close(&silent, 5000);
    ck_assert_int_eq(code, 1008);
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_HANDSHAKE_TIME), 1);
    fyc_ws_drop(&silent);
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 2, 5000));
    tc_free(&c);
    ts_stop(s);
}
END_TEST

static void skewed(ferry_mount_options *o)
{
    ts_core(o)->clock = ts_skewed_clock;
    o->tick_ms = 50;
}

/* The transport times its deadlines on the hub's clock: an injected clock moves them, and
 * nothing waits for the 10 s default. */
START_TEST(ws_handshake_deadline_runs_on_the_hubs_clock)
{
    atomic_store(&ts_skew_ms, 0);
    tserver *s = ts_start(skewed);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    fyc_ws silent;
    int status;
    ck_assert_int_eq(fyc_ws_open(&silent, s->port, "/ferry/ws", NULL, &status), 0);
    ck_assert_int_eq(fyc_ws_wait_close(&silent, 300), 0); /* open while the clock stands */
    atomic_fetch_add(&ts_skew_ms, 10000);
    ck_assert_int_eq(fyc_ws_wait_close(&silent, 5000), 1008);
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_HANDSHAKE_TIME), 1);
    fyc_ws_drop(&silent);
    tc_send(&c, "{\"echo\":true}"); /* the one that said hello stays */
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    tc_free(&c);
    ts_stop(s);
}
END_TEST

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

START_TEST(ws_connections_claiming_huge_frames_are_cut_off_and_starve_no_one)
{
    tserver *s = ts_start(strict); /* handshake deadline 300 ms */
    long before = rss_kb();
    fyc_ws bad[10];
    int status;
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(fyc_ws_open(&bad[i], s->port, "/ferry/ws", NULL, &status), 0);
        /* A text frame header claiming 2 GiB - 128 KiB, then silence. civetweb allocates
         * the claimed length at once and waits for it without limit. */
        ck_assert_int_eq(fyc_ws_send_header(&bad[i], 1, 0x7FFE0000ull), 0);
    }
    /* Everyone else is served meanwhile. */
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    /* The claims are cut off: past the handshake deadline ferry closes them, and when the
     * reader stays stuck in the frame it shuts the socket down. */
    for (int i = 0; i < 10; i++) {
        int op, r;
        char *data;
        size_t len;
        while ((r = fyc_ws_recv(&bad[i], &op, &data, &len, 10000)) == 0)
            free(data);
        ck_assert_int_eq(r, -1); /* closed by the server, not timed out */
        fyc_ws_drop(&bad[i]);
    }
#ifndef __SANITIZE_ADDRESS__ /* ASan touches shadow memory for every allocation */
    ck_assert_int_lt(rss_kb() - before, 200 * 1024); /* reserved, never touched */
#else
    (void)before;
#endif
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 2, 5000));
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* RFC 6455 section 7.4: the close code a client sends is echoed if a peer may send it; a
 * payload of one byte or a code no peer may send gets 1002, a reason not in UTF-8 1007. */
START_TEST(ws_a_client_close_is_echoed_or_refused_by_its_code)
{
    tserver *s = ts_start(NULL);
    struct {
        const char *payload;
        size_t len;
        int expect;
    } cases[] = {
        {"\x0f\xa0" "bye", 5, 4000}, {"", 0, 1000},       {"\x03", 1, 1002},
        {"\x03\xed", 2, 1002},          {"\x03\xe7", 2, 1002}, {"\x07\xd0", 2, 1002},
        {"\x03\xe8\xc3\x28", 4, 1007},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc c;
        tc_init(&c, s, TC_WS);
        ck_assert_int_eq(tc_connect(&c), 0);
        ck_assert_int_eq(fyc_ws_send(&c.ws, 8, true, cases[i].payload, cases[i].len), 0);
        int code = fyc_ws_wait_close(&c.ws, 5000);
        ck_assert_msg(code == cases[i].expect, "case %zu: close %d, expected %d", i, code,
                      cases[i].expect);
        tc_free(&c);
    }
    ts_stop(s);
}
END_TEST

Suite *ws_suite(void)
{
    Suite *s = suite_create("websocket");
    TCase *tcs = tcase_create("websocket");
    tcase_set_timeout(tcs, 60);
    tcase_add_test(tcs, ws_echo_and_push);
    tcase_add_test(tcs, ws_malformed_frames_get_errors_and_the_connection_stays);
    tcase_add_test(tcs, ws_oversize_message_gets_too_big_and_the_connection_stays);
    tcase_add_test(tcs, ws_binary_is_refused_and_pings_are_answered);
    tcase_add_test(tcs, ws_origin_is_checked_before_the_handshake);
    tcase_add_test(tcs, ws_capacity_is_refused_at_once_with_503);
    tcase_add_test(tcs, ws_abrupt_close_then_resume_loses_and_repeats_nothing);
    tcase_add_test(tcs, ws_bad_resumes_get_identical_answers);
    tcase_add_test(tcs, ws_a_client_that_stops_reading_never_stalls_the_others);
    tcase_add_test(tcs, ws_silent_client_is_dropped_then_its_session_expires);
    tcase_add_test(tcs, ws_control_frame_flood_and_missing_handshake_close_with_1008);
    tcase_add_test(tcs, ws_handshake_deadline_runs_on_the_hubs_clock);
    tcase_add_test(tcs, ws_connections_claiming_huge_frames_are_cut_off_and_starve_no_one);
    tcase_add_test(tcs, ws_a_client_close_is_echoed_or_refused_by_its_code);
    suite_add_tcase(s, tcs);
    return s;
}
