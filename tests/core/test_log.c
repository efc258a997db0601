#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "log.h"

/* A log function that keeps every message. */
static char logged[8][FY_LOG_MAX];
static ferry_log_level logged_level[8];
static int nlogged;

static void capture(ferry_log_level level, const char *msg, void *ud)
{
    ck_assert_ptr_eq(ud, &nlogged);
    if (nlogged < 8) {
        logged_level[nlogged] = level;
        snprintf(logged[nlogged], sizeof logged[nlogged], "%s", msg);
    }
    nlogged++;
}

static void capture_start(void)
{
    nlogged = 0;
    ferry_set_log(capture, &nlogged);
}

static void capture_stop(void)
{
    ferry_set_log(NULL, NULL);
}

static void zero_frame(ferry_options *o) { o->max_frame_bytes = 0; }
static void zero_batch(ferry_options *o) { o->max_batch = 0; }
static void zero_sessions(ferry_options *o) { o->max_sessions = 0; }
static void zero_heartbeat(ferry_options *o) { o->heartbeat_ms = 0; }
static void zero_window(ferry_options *o) { o->resume_window_ms = 0; }
static void short_timeout(ferry_options *o) { o->heartbeat_timeout_ms = 1000; }
static void equal_timeout(ferry_options *o) { o->heartbeat_timeout_ms = o->heartbeat_ms; }
static void zero_burst(ferry_options *o) { o->resume_burst = 0; }

static const struct {
    void (*tweak)(ferry_options *o);
    const char *msg;
} bad_options[] = {
    {zero_frame, "ferry_hub_new: max_frame_bytes must be at least 1"},
    {zero_batch, "ferry_hub_new: max_batch must be at least 1"},
    {zero_sessions, "ferry_hub_new: max_sessions must be at least 1"},
    {zero_heartbeat, "ferry_hub_new: heartbeat_ms must be at least 1"},
    {zero_window, "ferry_hub_new: resume_window_ms must be at least 1"},
    {short_timeout, "ferry_hub_new: heartbeat_timeout_ms (1000) must be above heartbeat_ms (25000)"},
    {equal_timeout, "ferry_hub_new: heartbeat_timeout_ms (25000) must be above heartbeat_ms (25000)"},
    {zero_burst, "ferry_hub_new: resume_burst must be at least 1 while resume_rate is set (5); "
                 "set resume_rate to 0 to turn the limit off"},
};

START_TEST(hub_new_names_the_bad_option)
{
    ferry_options o;
    ferry_options_init(&o);
    bad_options[_i].tweak(&o);
    ferry_hub *hub = NULL;
    capture_start();
    ck_assert_int_eq(ferry_hub_new(&hub, &o, NULL, NULL), FERRY_EINVAL);
    capture_stop();
    ck_assert_ptr_null(hub);
    ck_assert_int_eq(nlogged, 1);
    ck_assert_int_eq(logged_level[0], FERRY_LOG_ERROR);
    ck_assert_str_eq(logged[0], bad_options[_i].msg);
}
END_TEST

START_TEST(hub_new_logs_a_null_out_and_nothing_on_success)
{
    capture_start();
    ck_assert_int_eq(ferry_hub_new(NULL, NULL, NULL, NULL), FERRY_EINVAL);
    ck_assert_int_eq(nlogged, 1);
    ck_assert_str_eq(logged[0], "ferry_hub_new: out is NULL");
    ferry_options o;
    ferry_options_init(&o);
    o.resume_burst = 0;
    o.resume_rate = 0; /* the limit is off: a zero burst is fine */
    ferry_hub *hub;
    ck_assert_int_eq(ferry_hub_new(&hub, &o, NULL, NULL), 0);
    ferry_hub_free(hub);
    capture_stop();
    ck_assert_int_eq(nlogged, 1);
}
END_TEST

/* Runs fy_log with stderr on a pipe and returns what was written. */
static void stderr_of_log(const char *text, char *out, size_t cap)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(p[1], 2);
    close(p[1]);
    fy_log(FERRY_LOG_WARN, "%s", text);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = read(p[0], out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(p[0]);
}

START_TEST(default_log_writes_one_line_to_stderr)
{
    char out[256];
    stderr_of_log("something was refused", out, sizeof out);
    ck_assert_str_eq(out, "ferry: something was refused\n");
    /* A function replaces it; NULL brings it back. */
    capture_start();
    stderr_of_log("to the function", out, sizeof out);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(nlogged, 1);
    ck_assert_str_eq(logged[0], "to the function");
    ck_assert_int_eq(logged_level[0], FERRY_LOG_WARN);
    capture_stop();
    stderr_of_log("back to stderr", out, sizeof out);
    ck_assert_str_eq(out, "ferry: back to stderr\n");
    ck_assert_int_eq(nlogged, 1);
}
END_TEST

START_TEST(long_messages_are_cut)
{
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    capture_start();
    fy_log(FERRY_LOG_WARN, "%s", big);
    capture_stop();
    ck_assert_int_eq(nlogged, 1);
    ck_assert_uint_eq(strlen(logged[0]), FY_LOG_MAX - 1);
    ck_assert_str_eq(logged[0] + FY_LOG_MAX - 4, "...");
}
END_TEST

START_TEST(quote_escapes_and_cuts)
{
    char q[64];
    ck_assert_str_eq(fy_log_quote(q, sizeof q, "http://a.example", 100), "\"http://a.example\"");
    ck_assert_str_eq(fy_log_quote(q, sizeof q, "a\"b\\c\r\n\x1b\xc3\xa9", 100),
                     "\"a\\\"b\\\\c\\x0d\\x0a\\x1b\\xc3\\xa9\"");
    ck_assert_str_eq(fy_log_quote(q, sizeof q, "abcdefgh", 4), "\"abcd\"...");
    ck_assert_str_eq(fy_log_quote(q, sizeof q, NULL, 4), "(null)");
    char big[200];
    memset(big, '\n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fy_log_quote(q, sizeof q, big, sizeof big);
    ck_assert_uint_lt(strlen(q), sizeof q);
    ck_assert_str_eq(q + strlen(q) - 4, "\"...");
}
END_TEST

/* ferry_session_hub: a message handler publishes to everyone without a global. */
static void room_open(ferry_session *s, void *ud)
{
    (void)ud;
    ferry_session_subscribe(s, "room");
}

static void room_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    ferry_hub_publish(ferry_session_hub(s), "room", text, strlen(text), NULL);
    free(text);
}

START_TEST(session_hub_publishes_from_a_callback)
{
    ferry_callbacks cb = {.size = sizeof cb, .on_open = room_open, .on_message = room_message};
    ferry_hub *hub;
    ck_assert_int_eq(ferry_hub_new(&hub, NULL, &cb, NULL), 0);
    ck_assert_ptr_null(ferry_session_hub(NULL));
    fake_conn *a = fc_hello(hub, NULL, NULL);
    fake_conn *b = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(fc_send(a, "{\"t\":\"msg\",\"seq\":1,\"data\":{\"hi\":1}}"), 0);
    json_t *f = fc_drain(b);
    json_t *m = frame_of(f, "msg", 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(str_of(m, "topic"), "room");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(m, "data"), "hi")), 1);
    json_decref(f);
    fc_close(a);
    fc_close(b);
    ferry_hub_free(hub);
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *t = tcase_create("log");
    tcase_add_checked_fixture(t, NULL, capture_stop);
    tcase_add_loop_test(t, hub_new_names_the_bad_option, 0,
                        (int)(sizeof bad_options / sizeof bad_options[0]));
    tcase_add_test(t, hub_new_logs_a_null_out_and_nothing_on_success);
    tcase_add_test(t, default_log_writes_one_line_to_stderr);
    tcase_add_test(t, long_messages_are_cut);
    tcase_add_test(t, quote_escapes_and_cuts);
    tcase_add_test(t, session_hub_publishes_from_a_callback);
    suite_add_tcase(s, t);
    return s;
}
