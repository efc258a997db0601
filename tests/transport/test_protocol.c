/* The wire rules of docs/PROTOCOL.md as a client sees them over real sockets. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "mount.h"

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Reads WebSocket frames until a text frame containing `needle`; false on close or after
 * timeout_ms. */
static bool ws_expect(fyc_ws *ws, const char *needle, int timeout_ms)
{
    long until = now_ms() + timeout_ms;
    while (now_ms() < until) {
        int op;
        char *data;
        size_t len;
        int r = fyc_ws_recv(ws, &op, &data, &len, 100);
        if (r == -2)
            continue;
        if (r < 0)
            return false;
        bool hit = op == 1 && strstr(data, needle);
        bool closed = op == 8;
        free(data);
        if (hit)
            return true;
        if (closed)
            return false;
    }
    return false;
}

/* The answer to a raw HTTP request, read until the server closes (or timeout). */
static void raw_http(int port, const char *req, char *out, size_t size)
{
    int fd = fyc_connect(port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    size_t n = 0;
    long until = now_ms() + 5000;
    while (n + 1 < size && now_ms() < until) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, out + n, size - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = '\0';
    close(fd);
}

static const char upgrade_headers[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Version: 13\r\n";

START_TEST(a_handshake_in_a_batch_is_refused_on_both_transports)
{
    tserver *s = ts_start(NULL);
    const char *batch = "[{\"t\":\"hello\",\"v\":1}]";
    fyc_resp r;
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/lp", NULL, batch, strlen(batch), 5000, &r), 0);
    ck_assert_int_eq(r.status, 400);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"handshake\""));
    fyc_resp_free(&r);
    fyc_ws ws;
    int status;
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", NULL, &status), 0);
    fyc_ws_text(&ws, batch);
    ck_assert(ws_expect(&ws, "\"code\":\"handshake\"", 5000));
    fyc_ws_text(&ws, "{\"t\":\"hello\",\"v\":1}");
    ck_assert(ws_expect(&ws, "\"t\":\"welcome\"", 5000));
    fyc_ws_drop(&ws);
    ts_stop(s);
}
END_TEST

START_TEST(a_refused_sub_on_long_polling_is_200_and_the_rest_applies)
{
    tserver *s = ts_start(NULL); /* no on_subscribe: every client sub is refused */
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    json_array_append_new(c.pending, json_integer(1));
    c.out_seq = 1;
    int st = tc_send_raw(&c, "[{\"t\":\"msg\",\"seq\":1,\"data\":{\"c\":1}},{\"t\":\"sub\",\"topic\":\"x\"}]");
    ck_assert_int_eq(st, 200);
    ck_assert_str_eq(c.last_error, "forbidden");
    ck_assert_int_eq(c.acked_out, 1);
    ts_expect_received_c(s, 1);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

static void check_json_type(const fyc_resp *r)
{
    char v[64];
    ck_assert_ptr_nonnull(fyc_header(r, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, "application/json");
}

static void one_connection(ferry_mount_options *o)
{
    o->max_connections = 1;
    ts_good_origin(o);
}

START_TEST(long_poll_and_upgrade_answers_are_json)
{
    tserver *s = ts_start(one_connection);
    fyc_resp r;
    const char *good = "Origin: http://good.example\r\n", *evil = "Origin: http://evil.example\r\n";
    ck_assert_int_eq(fyc_http(s->port, "OPTIONS", "/ferry/lp", good, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 204);
    check_json_type(&r);
    fyc_resp_free(&r);
    ck_assert_int_eq(fyc_http(s->port, "OPTIONS", "/ferry/lp", evil, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 403);
    check_json_type(&r);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"origin\""));
    fyc_resp_free(&r);
    ck_assert_int_eq(fyc_http(s->port, "PUT", "/ferry/lp", NULL, "x", 1, 5000, &r), 0);
    ck_assert_int_eq(r.status, 405);
    check_json_type(&r);
    fyc_resp_free(&r);
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/lp", evil, "{}", 2, 5000, &r), 0);
    ck_assert_int_eq(r.status, 403);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"origin\""));
    fyc_resp_free(&r);
    /* Refused upgrades: a bad Origin, then the connection limit. */
    char h[512];
    snprintf(h, sizeof h, "%s%s", upgrade_headers, evil);
    ck_assert_int_eq(fyc_http(s->port, "GET", "/ferry/ws", h, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 403);
    check_json_type(&r);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"origin\""));
    fyc_resp_free(&r);
    fyc_ws held;
    int status;
    ck_assert_int_eq(fyc_ws_open(&held, s->port, "/ferry/ws", NULL, &status), 0);
    ck_assert_int_eq(fyc_http(s->port, "GET", "/ferry/ws", upgrade_headers, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 503);
    check_json_type(&r);
    ck_assert_str_eq(r.body, "[]");
    fyc_resp_free(&r);
    fyc_ws_drop(&held);
    ts_stop(s);
}
END_TEST

START_TEST(unknown_session_and_411_are_as_documented)
{
    tserver *s = ts_start(NULL);
    fyc_resp r;
    ck_assert_int_eq(fyc_http(s->port, "GET", "/ferry/lp?ack=0",
                              "Authorization: Bearer nosuchsession:nosecret\r\n", NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 404);
    check_json_type(&r);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"unknown_session\""));
    fyc_resp_free(&r);
    char out[2048];
    raw_http(s->port, "POST /ferry/lp HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", out,
             sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 411", 12) == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "Content-Type: application/json"));
    ts_stop(s);
}
END_TEST

static void one_per_identity(ferry_mount_options *o)
{
    ts_core(o)->max_sessions_per_identity = 1;
}

START_TEST(the_per_identity_limit_is_capacity_1013_or_503)
{
    tserver *s = ts_start(one_per_identity);
    tc a, b, l;
    tc_init(&a, s, TC_WS);
    tc_init(&b, s, TC_WS);
    tc_init(&l, s, TC_LP);
    snprintf(a.token, sizeof a.token, "alice");
    snprintf(b.token, sizeof b.token, "alice");
    snprintf(l.token, sizeof l.token, "alice");
    ck_assert_int_eq(tc_connect(&a), 0);
    ck_assert_int_ne(tc_connect(&b), 0);
    for (int i = 0; i < 50 && b.open; i++)
        tc_pump(&b, 100);
    ck_assert_str_eq(b.last_error, "capacity");
    ck_assert_int_eq(b.ws_close_code, 1013);
    ck_assert_int_ne(tc_connect(&l), 0);
    ck_assert_int_eq(l.http_status, 503);
    ck_assert_str_eq(l.last_error, "capacity");
    tc_free(&a);
    tc_free(&b);
    tc_free(&l);
    ts_stop(s);
}
END_TEST

static void tiny_outbox(ferry_mount_options *o)
{
    ts_core(o)->outbox_max_msgs = 4;
}

START_TEST(a_long_poll_reset_is_delivered_once_then_404)
{
    tserver *s = ts_start(tiny_outbox);
    tc c;
    tc_init(&c, s, TC_LP);
    ck_assert_int_eq(tc_connect(&c), 0);
    for (int i = 0; i < 6; i++)
        ferry_hub_publish(s->hub, "news", "1", 1, NULL); /* the fifth overflows */
    fyc_resp r;
    /* The session ID is public: without the secret, the final frame stays where it is. */
    char wrong[160];
    snprintf(wrong, sizeof wrong,
             "Authorization: Bearer %s:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", c.sid);
    for (int post = 0; post < 2; post++) {
        ck_assert_int_eq(fyc_http(s->port, post ? "POST" : "GET", post ? "/ferry/lp" : "/ferry/lp?ack=0",
                                  wrong, post ? "{\"t\":\"ping\"}" : NULL, post ? 12 : 0, 5000, &r), 0);
        ck_assert_int_eq(r.status, 404);
        ck_assert_ptr_nonnull(strstr(r.body, "unknown_session"));
        fyc_resp_free(&r);
    }
    ck_assert_int_eq(tc_lp(&c, "GET", "ack=0", NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "[{\"t\":\"reset\",\"reason\":\"overflow\",\"ack\":0}]");
    fyc_resp_free(&r);
    ck_assert_int_eq(tc_lp(&c, "GET", "ack=0", NULL, &r, 5000), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_ptr_nonnull(strstr(r.body, "unknown_session"));
    fyc_resp_free(&r);
    /* A resume says precisely what happened. */
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert_str_eq(c.last_reset, "overflow");
    ck_assert(!c.resumed);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* RFC 6455 section 8.1: text that is not UTF-8 fails the connection (1007), whole or in
 * fragments, on civetweb's workers and on event loops alike. */
START_TEST(invalid_utf8_text_is_closed_with_1007_and_unmasked_frames_are_read_on_workers)
{
    tserver *s = ts_start(NULL);
    for (int fragmented = 0; fragmented < 2; fragmented++) {
        tc c;
        tc_init(&c, s, TC_WS);
        ck_assert_int_eq(tc_connect(&c), 0);
        const char *bad = "{\"t\":\"msg\",\"seq\":1,\"data\":\"\xc3\x28\"}";
        if (fragmented) {
            /* The split falls inside a valid two-byte sequence; the invalid one is later. */
            const char *ok = "{\"t\":\"msg\",\"seq\":1,\"data\":[\"\xc3\xa9\",";
            fyc_ws_send(&c.ws, 1, false, ok, strlen(ok) - 3);
            fyc_ws_send(&c.ws, 0, false, ok + strlen(ok) - 3, 3);
            fyc_ws_send(&c.ws, 0, true, "\"\xe0\x80\xaf\"]}", 7); /* an overlong '/' */
        } else {
            fyc_ws_text(&c.ws, bad);
        }
        ck_assert_int_eq(fyc_ws_wait_close(&c.ws, 5000), 1007);
        tc_free(&c);
    }
    ck_assert_uint_eq(ts_received(s), 0);
    if (ts_event_threads() == 0) {
        /* On a worker an unmasked text frame is read (RFC 6455 says a server must close;
         * civetweb cannot tell). Event loops close it with 1002 (test_loop.c). */
        tc c;
        tc_init(&c, s, TC_WS);
        ck_assert_int_eq(tc_connect(&c), 0);
        ck_assert_int_eq(
            fyc_ws_text_unmasked(&c.ws, "{\"t\":\"msg\",\"seq\":1,\"data\":{\"c\":1,\"echo\":true}}"), 0);
        ck_assert(tc_wait_msgs(&c, 1, 5000));
        ts_expect_received_c(s, 1);
        tc_free(&c);
    }
    ts_stop(s);
}
END_TEST

/* The server's last frames before it closes must reach a client that is still sending:
 * closing with its input unread resets the connection, the client's next write fails, and
 * a client library then drops the connection before reading what came before the reset. */
START_TEST(final_frames_survive_a_client_that_keeps_sending)
{
    tserver *s = ts_start(NULL);
    char pad[1024];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    char msg[1200];
    snprintf(msg, sizeof msg, "{\"t\":\"msg\",\"seq\":1,\"data\":\"%s\"}", pad);
    for (int i = 0; i < 10; i++) {
        fyc_ws ws;
        int status;
        /* A ping flood: policy close 1008. */
        ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", NULL, &status), 0);
        for (int k = 0; k < 2000; k++) /* still being sent when the server closes */
            ck_assert_msg(fyc_ws_send(&ws, 9, true, pad, 100) == 0, "try %d: reset at %d", i, k);
        ck_assert_int_eq(fyc_ws_wait_close(&ws, 5000), 1008);
        fyc_ws_drop(&ws);
        /* Refused credentials, with frames still coming: error unauthorized, then 4003. */
        ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", NULL, &status), 0);
        fyc_ws_text(&ws, "{\"t\":\"hello\",\"v\":1,\"token\":\"bad\"}");
        for (int k = 0; k < 200; k++)
            ck_assert_msg(fyc_ws_text(&ws, msg) == 0, "try %d: reset at %d", i, k);
        ck_assert_msg(ws_expect(&ws, "\"code\":\"unauthorized\"", 5000), "try %d", i);
        ck_assert_int_eq(fyc_ws_wait_close(&ws, 5000), 4003);
        fyc_ws_drop(&ws);
    }
    ts_stop(s);
}
END_TEST

static void two_connections(ferry_mount_options *o)
{
    o->max_connections = 2;
}

/* civetweb 1.15 calls no ready or close handler when its upgrade reply fails, which a
 * Sec-WebSocket-Key over 63 characters makes it do after the connect handler: the slot
 * taken there must come back anyway. */
START_TEST(a_failed_upgrade_gives_its_slot_back)
{
    tserver *s = ts_start(two_connections);
    char key[80], h[512];
    memset(key, 'k', 70);
    key[70] = '\0';
    snprintf(h, sizeof h, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key);
    for (int i = 0; i < 4; i++) {
        fyc_resp r;
        fyc_http(s->port, "GET", "/ferry/ws", h, NULL, 0, 5000, &r); /* any refusal */
        ck_assert_int_ne(r.status, 101);
        fyc_resp_free(&r);
    }
    long until = now_ms() + 5000;
    while (atomic_load(&s->m->conns) > 0 && now_ms() < until)
        usleep(2000);
    ck_assert_uint_eq(atomic_load(&s->m->conns), 0);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

Suite *protocol_suite(void)
{
    Suite *s = suite_create("protocol");
    TCase *w = tcase_create("wire");
    tcase_set_timeout(w, 60);
    tcase_add_test(w, a_handshake_in_a_batch_is_refused_on_both_transports);
    tcase_add_test(w, a_refused_sub_on_long_polling_is_200_and_the_rest_applies);
    tcase_add_test(w, long_poll_and_upgrade_answers_are_json);
    tcase_add_test(w, unknown_session_and_411_are_as_documented);
    tcase_add_test(w, the_per_identity_limit_is_capacity_1013_or_503);
    tcase_add_test(w, a_long_poll_reset_is_delivered_once_then_404);
    tcase_add_test(w, invalid_utf8_text_is_closed_with_1007_and_unmasked_frames_are_read_on_workers);
    tcase_add_test(w, final_frames_survive_a_client_that_keeps_sending);
    tcase_add_test(w, a_failed_upgrade_gives_its_slot_back);
    suite_add_tcase(s, w);
    return s;
}
