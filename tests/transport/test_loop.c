/* WebSockets served by event loops (event_threads): the handoff from civetweb's worker, and
 * what ferry's own frame reader refuses. Every suite runs on event loops, the default; the
 * Makefile runs the websocket, protocol and drain suites again on civetweb's workers
 * (FERRY_TEST_EVENT_THREADS=0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static void on_loops(ferry_mount_options *o)
{
    o->event_threads = 1;
}

static void on_loops_wide(ferry_mount_options *o)
{
    o->event_threads = 2;
    o->max_connections = 200;
}

static void on_loops_small_frames(ferry_mount_options *o)
{
    o->event_threads = 1;
    ts_small_frames(o);
}

/* Reads frames until the server's close frame (its code) or the end of the stream (-1). */
static int close_code(fyc_ws *ws)
{
    return fyc_ws_wait_close(ws, 5000);
}

/* True if the server ends the TCP connection within `ms`, after whatever frames. */
static bool ends(fyc_ws *ws, int ms)
{
    long until = ts_ms() + ms;
    int op, r;
    char *data;
    size_t len;
    while ((r = fyc_ws_recv(ws, &op, &data, &len, (int)(until - ts_ms()))) == 0)
        free(data);
    return r == -1;
}

/* civetweb has 8 workers here (worker_threads): on them, the 9th WebSocket would wait for a
 * worker. On an event loop each one's worker is back in the pool once the handshake is
 * done. */
START_TEST(more_websockets_than_civetweb_has_workers_are_all_served)
{
    tserver *s = ts_start_workers(on_loops_wide, 8);
    enum { N = 120 };
    tc *c = calloc(N, sizeof *c);
    for (int i = 0; i < N; i++) {
        tc_init(&c[i], s, TC_WS);
        ck_assert_int_eq(tc_connect(&c[i]), 0);
    }
    ck_assert(ts_wait_metric(s, "ferry_websockets_on_event_loops", N, 5000));
    ck_assert_int_eq(ts_metric(s, "ferry_websocket_handoffs_total{outcome=\"taken\"}"), N);
    ts_publish(s, "{\"goal\":1}");
    for (int i = 0; i < N; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "{\"c\":%d}", i + 1);
        ck_assert_int_eq(tc_send(&c[i], msg), 0);
        ck_assert(tc_wait_msgs(&c[i], 1, 5000));
    }
    for (int k = 0; k < 500 && ts_received(s) < N; k++)
        usleep(10 * 1000);
    ck_assert_uint_eq(ts_received(s), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(c[i].gaps + c[i].dups, 0);
        tc_free(&c[i]);
    }
    ck_assert(ts_wait_metric(s, "ferry_websockets_on_event_loops", 0, 5000));
    free(c);
    ts_stop(s);
}
END_TEST

/* Frames a client sent with its upgrade request reach civetweb's buffer, not the socket
 * the loop reads: they must come first, in order. */
START_TEST(frames_sent_with_the_upgrade_request_come_first_and_in_order)
{
    tserver *s = ts_start(on_loops);
    unsigned char after[512];
    size_t n = 0;
    const char *hello = "{\"t\":\"hello\",\"v\":1}";
    n += fyc_ws_frame(after + n, 1, true, hello, strlen(hello));
    for (int i = 1; i <= 3; i++) {
        char msg[80];
        snprintf(msg, sizeof msg, "{\"t\":\"msg\",\"seq\":%d,\"data\":{\"c\":%d}}", i, i);
        n += fyc_ws_frame(after + n, 1, true, msg, strlen(msg));
    }
    fyc_ws ws;
    int status;
    ck_assert_int_eq(fyc_ws_open_pipelined(&ws, s->port, "/ferry/ws", after, n, &status), 0);
    int op;
    char *data;
    size_t len;
    ck_assert_int_eq(fyc_ws_recv(&ws, &op, &data, &len, 5000), 0);
    ck_assert_ptr_nonnull(strstr(data, "\"welcome\""));
    free(data);
    ts_expect_received_c(s, 3);
    /* Then the loop reads what follows. */
    const char *m4 = "{\"t\":\"msg\",\"seq\":4,\"data\":{\"c\":4}}";
    ck_assert_int_eq(fyc_ws_text(&ws, m4), 0);
    ts_expect_received_c(s, 4);
    ck_assert_int_eq(ts_metric(s, "ferry_websockets_on_event_loops"), 1);
    fyc_ws_drop(&ws);
    ts_stop(s);
}
END_TEST

/* Part of a frame sent with the upgrade request: civetweb completes it with the stand-in's
 * bytes, so the frame is lost. The connection is closed with 1011 (the client resumes),
 * counted as lost, and nothing else is touched. */
START_TEST(a_frame_split_across_the_handoff_is_closed_with_1011)
{
    tserver *s = ts_start(on_loops);
    unsigned char after[64];
    const char *hello = "{\"t\":\"hello\",\"v\":1}";
    size_t n = fyc_ws_frame(after, 1, true, hello, strlen(hello));
    fyc_ws ws;
    int status;
    ck_assert_int_eq(fyc_ws_open_pipelined(&ws, s->port, "/ferry/ws", after, n / 2, &status), 0);
    ck_assert_int_eq(close_code(&ws), 1011);
    fyc_ws_drop(&ws);
    ck_assert(ts_wait_metric(s, "ferry_websocket_handoffs_total{outcome=\"lost\"}", 1, 5000));
    ck_assert(ts_wait_metric(s, "ferry_connections{transport=\"websocket\"}", 0, 5000));
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* RFC 6455 section 5.1: a server closes the connection on an unmasked client frame. */
START_TEST(an_unmasked_client_frame_is_closed_with_1002)
{
    tserver *s = ts_start(on_loops);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert_int_eq(fyc_ws_text_unmasked(&c.ws, "{\"t\":\"msg\",\"seq\":1,\"data\":{\"c\":1}}"), 0);
    ck_assert_int_eq(close_code(&c.ws), 1002);
    ck_assert_uint_eq(ts_received(s), 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* Reserved bits (no extension is negotiated), reserved opcodes, and control frames that are
 * long or fragmented: each closes with 1002. */
START_TEST(reserved_bits_opcodes_and_bad_control_frames_are_closed_with_1002)
{
    tserver *s = ts_start(on_loops);
    char big[126];
    memset(big, 'x', sizeof big);
    struct {
        int first; /* the frame's first byte */
        size_t len;
    } bad[] = {
        {0xC1, 2},   /* RSV1 on a text frame */
        {0x83, 2},   /* opcode 3 */
        {0x8B, 2},   /* opcode 0xB */
        {0x89, 126}, /* a ping of 126 bytes */
        {0x09, 2},   /* a ping without FIN */
    };
    enum { N = sizeof bad / sizeof bad[0] };
    tc c[N];
    for (size_t i = 0; i < N; i++) {
        tc_init(&c[i], s, TC_WS);
        ck_assert_int_eq(tc_connect(&c[i]), 0);
        unsigned char f[256];
        size_t n = fyc_ws_frame(f, bad[i].first & 0x0F, bad[i].first & 0x80, big, bad[i].len);
        f[0] = (unsigned char)bad[i].first;
        ck_assert_int_eq(fyc_ws_raw(&c[i].ws, f, n), 0);
    }
    /* Each is closed on its own: the server's linger runs for all of them at once. */
    for (size_t i = 0; i < N; i++) {
        ck_assert_msg(close_code(&c[i].ws) == 1002, "frame %zu", i);
        ck_assert_msg(ends(&c[i].ws, 5000), "frame %zu", i);
        tc_free(&c[i]);
    }
    /* and the loops serve the next one. */
    tc ok;
    tc_init(&ok, s, TC_WS);
    ck_assert_int_eq(tc_connect(&ok), 0);
    tc_send(&ok, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&ok, 1, 5000));
    tc_free(&ok);
    ts_stop(s);
}
END_TEST

/* A frame claiming more than max_frame_bytes is refused as soon as its header is read:
 * nothing of it is buffered, the connection stays, and what follows the payload is read. */
START_TEST(a_frame_over_the_cap_is_refused_at_its_header)
{
    tserver *s = ts_start(on_loops_small_frames); /* 1024 bytes */
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    unsigned char h[14] = {0x81, 0x80 | 126, 5000 >> 8, 5000 & 0xFF, 0, 0, 0, 0};
    ck_assert_int_eq(fyc_ws_raw(&c.ws, h, 8), 0);
    for (int k = 0; k < 50 && !c.last_error[0]; k++)
        tc_pump(&c, 100); /* no byte of the payload has been sent */
    ck_assert_str_eq(c.last_error, "too_big");
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_FRAME_SIZE), 1);
    char *junk = calloc(1, 5000);
    ck_assert_int_eq(fyc_ws_raw(&c.ws, junk, 2500), 0);
    ck_assert_int_eq(fyc_ws_raw(&c.ws, junk, 2500), 0);
    free(junk);
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    ck_assert(c.open);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* The client's close frame is answered with its code, and the server then ends the TCP
 * connection itself. */
START_TEST(a_client_close_is_answered_and_the_connection_ends)
{
    tserver *s = ts_start(on_loops);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    ck_assert_int_eq(fyc_ws_send(&c.ws, 8, true, "\x03\xe8", 2), 0);
    ck_assert_int_eq(close_code(&c.ws), 1000);
    ck_assert(ends(&c.ws, 3000));
    ck_assert(ts_wait_metric(s, "ferry_websockets_on_event_loops", 0, 5000));
    ck_assert(ts_wait_attached(s, 0, 5000)); /* the session is kept, detached */
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* A client that reads nothing for a while, with an ack window larger than the socket
 * buffers: what the socket cannot take waits in ferry's queue, and then arrives whole, in
 * order. */
static void wide_window(ferry_mount_options *o)
{
    o->event_threads = 1;
    ts_core(o)->ack_window_bytes = 64u << 20;
    ts_core(o)->outbox_max_bytes = 64u << 20;
}

START_TEST(a_client_that_reads_late_gets_everything_in_order)
{
    tserver *s = ts_start(wide_window);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    int small = 65536; /* the server's socket fills sooner; much smaller crawls */
    setsockopt(c.ws.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    enum { N = 300, PAD = 50000 };
    char *msg = malloc(PAD + 64);
    for (int i = 1; i <= N; i++) {
        int n = snprintf(msg, 64, "{\"i\":%d,\"pad\":\"", i);
        memset(msg + n, 'p', PAD);
        strcpy(msg + n + PAD, "\"}");
        ts_publish(s, msg);
    }
    free(msg);
    usleep(300 * 1000);
    ck_assert(tc_wait_msgs(&c, N, 30000));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c.got, (size_t)i), "i")),
                         i + 1);
    ck_assert_int_eq(c.gaps + c.dups, 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

/* Unmounting closes what the loops serve (1001), and stops them. */
START_TEST(unmounting_closes_websockets_on_event_loops)
{
    tserver *s = ts_start(on_loops);
    tc c[3];
    for (int i = 0; i < 3; i++) {
        tc_init(&c[i], s, TC_WS);
        ck_assert_int_eq(tc_connect(&c[i]), 0);
    }
    long t0 = ts_ms();
    ferry_mount_free(s->m);
    s->m = NULL;
    ck_assert_int_lt(ts_ms() - t0, 5000);
    for (int i = 0; i < 3; i++) {
        int code = close_code(&c[i].ws);
        ck_assert(code == 1000 || code == 1001); /* "shutdown" first, for a session */
        tc_free(&c[i]);
    }
    ts_stop(s);
}
END_TEST

Suite *loop_suite(void)
{
    Suite *s = suite_create("event_loop");
    TCase *tcs = tcase_create("event_loop");
    tcase_set_timeout(tcs, 60);
    tcase_add_test(tcs, more_websockets_than_civetweb_has_workers_are_all_served);
    tcase_add_test(tcs, frames_sent_with_the_upgrade_request_come_first_and_in_order);
    tcase_add_test(tcs, a_frame_split_across_the_handoff_is_closed_with_1011);
    tcase_add_test(tcs, an_unmasked_client_frame_is_closed_with_1002);
    tcase_add_test(tcs, reserved_bits_opcodes_and_bad_control_frames_are_closed_with_1002);
    tcase_add_test(tcs, a_frame_over_the_cap_is_refused_at_its_header);
    tcase_add_test(tcs, a_client_close_is_answered_and_the_connection_ends);
    tcase_add_test(tcs, a_client_that_reads_late_gets_everything_in_order);
    tcase_add_test(tcs, unmounting_closes_websockets_on_event_loops);
    suite_add_tcase(s, tcs);
    return s;
}
