/* Every mistake says what it was: refused options, a server that cannot start and refused
 * Origins are logged through ferry_set_log, with the exact reason. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "mount.h" /* FY_ORIGIN_LOG_MS */

#define CAP_MAX 8

/* A log function that keeps every message; civetweb workers log too, hence the lock. */
static pthread_mutex_t cap_lock = PTHREAD_MUTEX_INITIALIZER;
static char cap_msg[CAP_MAX][1024];
static ferry_log_level cap_level[CAP_MAX];
static int cap_n;

static void capture(ferry_log_level level, const char *msg, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&cap_lock);
    if (cap_n < CAP_MAX) {
        cap_level[cap_n] = level;
        snprintf(cap_msg[cap_n], sizeof cap_msg[cap_n], "%s", msg);
    }
    cap_n++;
    pthread_mutex_unlock(&cap_lock);
}

static void cap_start(void)
{
    pthread_mutex_lock(&cap_lock);
    cap_n = 0;
    pthread_mutex_unlock(&cap_lock);
    ferry_set_log(capture, NULL);
}

static void cap_stop(void)
{
    ferry_set_log(NULL, NULL);
}

static int cap_count(void)
{
    pthread_mutex_lock(&cap_lock);
    int n = cap_n;
    pthread_mutex_unlock(&cap_lock);
    return n;
}

/* Asserts that exactly `n` messages were logged and the last one is `want`. */
static void cap_expect(int n, ferry_log_level level, const char *want)
{
    char got[1024];
    ck_assert_int_eq(cap_count(), n);
    pthread_mutex_lock(&cap_lock);
    snprintf(got, sizeof got, "%s", cap_msg[n - 1]);
    ferry_log_level l = cap_level[n - 1];
    pthread_mutex_unlock(&cap_lock);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(l, level);
}

static struct mg_context *bare_server(void)
{
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = "127.0.0.1:0";
    so.max_connections = 8;
    struct mg_context *ctx = NULL;
    ck_assert_int_eq(ferry_server_start(&ctx, &so), FERRY_OK);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static void trailing_slash(ferry_mount_options *o) { o->prefix = "/ferry/"; }
static void no_leading_slash(ferry_mount_options *o) { o->prefix = "ferry"; }
static void double_slash(ferry_mount_options *o) { o->prefix = "/a//b"; }
static void space_in_prefix(ferry_mount_options *o) { o->prefix = "/a b"; }
static void short_heartbeat_timeout(ferry_mount_options *o)
{
    ts_core(o)->heartbeat_timeout_ms = 1000;
}
static void no_sessions(ferry_mount_options *o) { ts_core(o)->max_sessions = 0; }
static void no_connections(ferry_mount_options *o) { o->max_connections = 0; }
static void no_writers(ferry_mount_options *o) { o->writer_threads = 0; }
static void origin_with_slash(ferry_mount_options *o) { o->allowed_origins = "http://good.example/"; }
static void origin_without_scheme(ferry_mount_options *o) { o->allowed_origins = "https://a.example, good.example"; }
static void star_in_list(ferry_mount_options *o) { o->allowed_origins = "*, http://good.example"; }
static void bad_real_ip(ferry_mount_options *o) { o->real_ip_header = "X Real IP"; }
static void relative_metrics(ferry_mount_options *o) { o->metrics_path = "metrics"; }
static void metrics_on_health(ferry_mount_options *o) { o->metrics_path = "/ferry/health"; }

static const struct {
    void (*tweak)(ferry_mount_options *o);
    const char *msg;
} bad_mounts[] = {
    {trailing_slash, "ferry_mount_new: prefix \"/ferry/\" must not end with '/'"},
    {no_leading_slash, "ferry_mount_new: prefix \"ferry\" must start with '/'"},
    {double_slash, "ferry_mount_new: prefix \"/a//b\" must not contain \"//\""},
    {space_in_prefix, "ferry_mount_new: prefix \"/a b\" may contain only letters, digits and "
                      "/-._~ (byte 0x20 at offset 2)"},
    {short_heartbeat_timeout, "ferry_mount_new: core.heartbeat_timeout_ms (1000) must be above "
                              "core.heartbeat_ms (25000)"},
    {no_sessions, "ferry_mount_new: core.max_sessions must be at least 1"},
    {no_connections, "ferry_mount_new: max_connections must be at least 1"},
    {no_writers, "ferry_mount_new: writer_threads must be at least 1"},
    {origin_with_slash, "ferry_mount_new: allowed_origins entry \"http://good.example/\" has a "
                        "path or a trailing '/': an Origin is scheme://host[:port]"},
    {origin_without_scheme, "ferry_mount_new: allowed_origins entry \"good.example\" is not an "
                            "origin: write scheme://host[:port], e.g. \"https://app.example\""},
    {star_in_list, "ferry_mount_new: allowed_origins \"*, http://good.example\": \"*\" allows "
                   "every origin and must be the whole list"},
    {bad_real_ip, "ferry_mount_new: real_ip_header \"X Real IP\" must be a header name: letters, "
                  "digits, '-' and '_' (e.g. \"X-Real-IP\")"},
    {relative_metrics, "ferry_mount_new: metrics_path \"metrics\" must start with '/'"},
    {metrics_on_health, "ferry_mount_new: metrics_path \"/ferry/health\" is one of the mount's "
                        "own endpoints (<prefix>/ws, /lp, /ferry.js, /ferry.mjs, /health)"},
};

START_TEST(mount_names_the_bad_option)
{
    struct mg_context *ctx = bare_server();
    ferry_options core;
    ferry_options_init(&core);
    ferry_mount_options o;
    ferry_mount_options_init(&o);
    o.core = &core;
    bad_mounts[_i].tweak(&o);
    ferry_mount *m = NULL;
    cap_start();
    ck_assert_int_eq(ferry_mount_new(&m, ctx, &o, NULL, NULL), FERRY_EINVAL);
    cap_stop();
    ck_assert_ptr_null(m);
    cap_expect(1, FERRY_LOG_ERROR, bad_mounts[_i].msg);
    ferry_server_stop(ctx);
}
END_TEST

START_TEST(mount_refuses_a_context_that_answers_preflights)
{
    const char *opts[] = {"listening_ports", "127.0.0.1:0", "num_threads", "4",
                          "access_control_allow_methods", "GET", NULL};
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    struct mg_context *ctx = mg_start(&cbs, NULL, opts);
    ck_assert_ptr_nonnull(ctx);
    ferry_mount *m = NULL;
    cap_start();
    ck_assert_int_eq(ferry_mount_new(&m, ctx, NULL, NULL, NULL), FERRY_EINVAL);
    cap_stop();
    cap_expect(1, FERRY_LOG_ERROR,
               "ferry_mount_new: the civetweb context answers CORS preflights itself "
               "(access_control_allow_methods=\"GET\"): set it to \"\"");
    ferry_server_stop(ctx);
}
END_TEST

START_TEST(server_start_says_the_port_is_in_use)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    char listen_on[32], want[128];
    snprintf(listen_on, sizeof listen_on, "127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(want, sizeof want, "ferry_server_start: cannot listen on %s: Address already in use",
             listen_on);
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = listen_on;
    so.max_connections = 8;
    struct mg_context *ctx = NULL;
    cap_start();
    ck_assert_int_eq(ferry_server_start(&ctx, &so), FERRY_ELISTEN);
    cap_stop();
    ck_assert_ptr_null(ctx);
    close(fd);
    cap_expect(1, FERRY_LOG_ERROR, want);
}
END_TEST

START_TEST(server_start_says_the_listen_string_is_bad)
{
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.max_connections = 8;
    so.listen = "127.0.0.1:abc";
    struct mg_context *ctx = NULL;
    cap_start();
    ck_assert_int_eq(ferry_server_start(&ctx, &so), FERRY_ELISTEN);
    ck_assert_int_eq(cap_count(), 1);
    const char *want = "ferry_server_start: civetweb did not start (listen \"127.0.0.1:abc\"): ";
    ck_assert_int_eq(strncmp(cap_msg[0], want, strlen(want)), 0);
    ck_assert_ptr_nonnull(strstr(cap_msg[0], "invalid port spec"));
    so.listen = "";
    ck_assert_int_eq(ferry_server_start(&ctx, &so), FERRY_EINVAL);
    cap_stop();
    ck_assert_ptr_null(ctx);
    cap_expect(2, FERRY_LOG_ERROR, "ferry_server_start: listen must be set, e.g. \"127.0.0.1:8080\"");
}
END_TEST

START_TEST(server_start_says_the_document_root_is_wrong)
{
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = "127.0.0.1:0";
    so.max_connections = 8;
    so.document_root = "/nonexistent/ferry-www";
    struct mg_context *ctx = NULL;
    cap_start();
    ck_assert_int_eq(ferry_server_start(&ctx, &so), FERRY_EINVAL);
    cap_expect(1, FERRY_LOG_ERROR,
               "ferry_server_start: document_root \"/nonexistent/ferry-www\" does not exist");
    char file[] = "/tmp/ferry-root-XXXXXX", want[128];
    int fd = mkstemp(file);
    ck_assert_int_ge(fd, 0);
    close(fd);
    so.document_root = file;
    ck_assert_int_eq(ferry_server_start(&ctx, &so), FERRY_EINVAL);
    ck_assert_ptr_null(ctx);
    unlink(file);
    snprintf(want, sizeof want, "ferry_server_start: document_root \"%s\" is not a directory", file);
    cap_expect(2, FERRY_LOG_ERROR, want);
    so.document_root = "/tmp"; /* a directory is fine, and says nothing */
    ck_assert_int_eq(ferry_server_start(&ctx, &so), FERRY_OK);
    cap_stop();
    ck_assert_ptr_nonnull(ctx);
    ferry_server_stop(ctx);
    ck_assert_int_eq(cap_count(), 2);
}
END_TEST

/* An application built against an older ferry_civetweb.h passes the fields it knew: the
 * mount and the server take the defaults for the rest. */
START_TEST(older_smaller_option_structs_are_accepted)
{
    struct {
        size_t size;
        const char *listen;
    } old_server = {sizeof old_server, "127.0.0.1:0"};
    struct mg_context *ctx = NULL;
    cap_start();
    ck_assert_int_eq(ferry_server_start(&ctx, (const ferry_server_options *)(void *)&old_server),
                     FERRY_OK);
    int port = ferry_server_port(ctx);
    ck_assert_int_gt(port, 0);
    struct {
        size_t size;
        const ferry_options *core;
        const char *prefix;
    } old_mount = {sizeof old_mount, NULL, "/old"};
    ferry_mount *m = NULL;
    ck_assert_int_eq(ferry_mount_new(&m, ctx, (const ferry_mount_options *)(void *)&old_mount,
                                     NULL, NULL),
                     FERRY_OK);
    cap_stop();
    ck_assert_int_eq(cap_count(), 0);
    fyc_resp r;
    ck_assert_int_eq(fyc_http(port, "GET", "/old/ferry.js", NULL, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 200);
    fyc_resp_free(&r);
    ferry_mount_free(m);
    ferry_server_stop(ctx);
}
END_TEST

START_TEST(newer_or_unset_option_sizes_are_refused)
{
    struct mg_context *ctx = bare_server();
    ferry_mount_options o;
    ferry_mount_options_init(&o);
    o.size += 16;
    ferry_mount *m = NULL;
    char want[300];
    cap_start();
    ck_assert_int_eq(ferry_mount_new(&m, ctx, &o, NULL, NULL), FERRY_EINVAL);
    cap_stop();
    ck_assert_ptr_null(m);
    snprintf(want, sizeof want, "ferry_mount_new: ferry_mount_options.size is %zu, but this "
             "library (ferry %s) knows %zu bytes of it: the application was built against a "
             "newer ferry.h, or did not set size", sizeof o + 16, FERRY_VERSION_STRING,
             sizeof o);
    cap_expect(1, FERRY_LOG_ERROR, want);

    ferry_options core = {0}; /* not filled by ferry_options_init */
    ferry_mount_options_init(&o);
    o.core = &core;
    cap_start();
    ck_assert_int_eq(ferry_mount_new(&m, ctx, &o, NULL, NULL), FERRY_EINVAL);
    cap_stop();
    cap_expect(1, FERRY_LOG_ERROR, "ferry_mount_new: ferry_options.size is 0: fill the struct "
               "with its init function, or set .size = sizeof(ferry_options)");

    ferry_server_options so = {.listen = "127.0.0.1:0"};
    struct mg_context *other = NULL;
    cap_start();
    ck_assert_int_eq(ferry_server_start(&other, &so), FERRY_EINVAL);
    cap_stop();
    ck_assert_ptr_null(other);
    ck_assert_int_eq(cap_count(), 1);
    ferry_server_stop(ctx);
}
END_TEST

/* ferry.h's NULL policy for ferry_civetweb.h. */
START_TEST(civetweb_calls_follow_the_null_policy)
{
    struct mg_context *ctx = bare_server();
    ferry_mount *m = NULL;
    cap_start();
    ck_assert_int_eq(ferry_mount_new(NULL, ctx, NULL, NULL, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_mount_new(&m, NULL, NULL, NULL, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_server_start(NULL, NULL), FERRY_EINVAL);
    cap_stop();
    ck_assert_int_eq(cap_count(), 3);
    ck_assert_ptr_null(m);
    ferry_mount_options_init(NULL);
    ferry_server_options_init(NULL);
    ck_assert_ptr_null(ferry_mount_hub(NULL));
    ck_assert_int_eq(ferry_mount_metrics(NULL, NULL), FERRY_EINVAL);
    ferry_mount_set_websocket(NULL, 1);
    ferry_mount_set_draining(NULL, 1);
    ferry_mount_drop_connections(NULL);
    ferry_mount_free(NULL);
    ck_assert_int_eq(ferry_server_port(NULL), -1);
    ferry_server_stop(NULL);
    ferry_server_stop(ctx);
}
END_TEST

static void good_origin_skewed(ferry_mount_options *o)
{
    ts_good_origin(o);
    ts_core(o)->clock = ts_skewed_clock;
}

static void ws_evil(tserver *s, const char *origin_header)
{
    fyc_ws ws;
    int status;
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", origin_header, &status), -1);
    ck_assert_int_eq(status, 403);
}

START_TEST(ws_refused_origin_is_logged_at_a_limited_rate)
{
    atomic_store(&ts_skew_ms, 0);
    tserver *s = ts_start(good_origin_skewed);
    cap_start();
    ws_evil(s, "Origin: http://evil.example\r\n");
    const char *want = "refused a WebSocket upgrade on /ferry/ws: Origin \"http://evil.example\" is "
                       "not in allowed_origins \"http://good.example, https://also.example\"";
    cap_expect(1, FERRY_LOG_WARN, want);
    ws_evil(s, "Origin: http://evil.example\r\n"); /* within 10 s: counted, not logged */
    ws_evil(s, "Origin: http://other.example\r\n");
    ck_assert_int_eq(cap_count(), 1);
    atomic_fetch_add(&ts_skew_ms, FY_ORIGIN_LOG_MS);
    ws_evil(s, "Origin: http://good.example.evil\r\n");
    cap_expect(2, FERRY_LOG_WARN,
               "refused a WebSocket upgrade on /ferry/ws: Origin \"http://good.example.evil\" is "
               "not in allowed_origins \"http://good.example, https://also.example\" "
               "(2 more refused for their Origin and not logged)");
    ck_assert_uint_eq(ferry_hub_limit_hits(s->hub, FERRY_LIMIT_ORIGIN), 4);
    cap_stop();
    ts_stop(s);
}
END_TEST

START_TEST(lp_refused_origin_is_logged_escaped_and_cut)
{
    tserver *s = ts_start(ts_good_origin);
    const char *hello = "{\"t\":\"hello\",\"v\":1}";
    char origin[400] = "Origin: http://\xff\"x";
    size_t n = strlen(origin);
    memset(origin + n, 'a', 300);
    strcpy(origin + n + 300, "\r\n");
    fyc_resp r;
    cap_start();
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/lp", origin, hello, strlen(hello), 5000, &r), 0);
    ck_assert_int_eq(r.status, 403);
    fyc_resp_free(&r);
    char want[512];
    snprintf(want, sizeof want,
             "refused a long-poll request on /ferry/lp: Origin \"http://\\xff\\\"x%.*s\"... is not "
             "in allowed_origins \"http://good.example, https://also.example\"",
             100 - 10, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    cap_expect(1, FERRY_LOG_WARN, want);
    cap_stop();
    ts_stop(s);
}
END_TEST

START_TEST(lp_refused_origin_names_the_host_when_same_origin_only)
{
    tserver *s = ts_start(NULL);
    const char *hello = "{\"t\":\"hello\",\"v\":1}";
    fyc_resp r;
    cap_start();
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/lp", "Origin: http://127.0.0.1:1\r\n", hello,
                              strlen(hello), 5000, &r), 0);
    ck_assert_int_eq(r.status, 403);
    fyc_resp_free(&r);
    char want[256];
    snprintf(want, sizeof want,
             "refused a long-poll request on /ferry/lp: Origin \"http://127.0.0.1:1\" is not the "
             "same origin as Host \"127.0.0.1:%d\" (allowed_origins is unset: same origin only)",
             s->port);
    cap_expect(1, FERRY_LOG_WARN, want);
    cap_stop();
    ts_stop(s);
}
END_TEST

Suite *diag_suite(void)
{
    Suite *s = suite_create("diagnostics");
    TCase *t = tcase_create("diagnostics");
    tcase_set_timeout(t, 30);
    tcase_add_checked_fixture(t, NULL, cap_stop);
    tcase_add_loop_test(t, mount_names_the_bad_option, 0,
                        (int)(sizeof bad_mounts / sizeof bad_mounts[0]));
    tcase_add_test(t, mount_refuses_a_context_that_answers_preflights);
    tcase_add_test(t, server_start_says_the_port_is_in_use);
    tcase_add_test(t, server_start_says_the_listen_string_is_bad);
    tcase_add_test(t, server_start_says_the_document_root_is_wrong);
    tcase_add_test(t, older_smaller_option_structs_are_accepted);
    tcase_add_test(t, newer_or_unset_option_sizes_are_refused);
    tcase_add_test(t, civetweb_calls_follow_the_null_policy);
    tcase_add_test(t, ws_refused_origin_is_logged_at_a_limited_rate);
    tcase_add_test(t, lp_refused_origin_is_logged_escaped_and_cut);
    tcase_add_test(t, lp_refused_origin_names_the_host_when_same_origin_only);
    suite_add_tcase(s, t);
    return s;
}
