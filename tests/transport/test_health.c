/* <prefix>/health and ferry_mount_set_draining: what a load balancer's health check sees. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mount.h" /* fy_health_of: the status for a store this build cannot make fail */

#define READY "{\"status\":\"ready\",\"node\":\"\"}"
#define DRAINING "{\"status\":\"draining\",\"node\":\"\"}"

/* One request to `path`; checks the status, the body (unless NULL) and the headers every
 * health answer carries. */
static void expect_health(tserver *s, const char *method, const char *path, int status,
                          const char *body)
{
    fyc_resp r;
    char v[64];
    ck_assert_int_eq(fyc_http(s->port, method, path, NULL, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, status);
    ck_assert_str_eq(fyc_header(&r, "Cache-Control", v, sizeof v), "no-store");
    ck_assert_str_eq(fyc_header(&r, "Content-Type", v, sizeof v), "application/json");
    if (body && strcmp(method, "HEAD") == 0) {
        /* The GET's length, and no body. */
        ck_assert_uint_eq(strtoul(fyc_header(&r, "Content-Length", v, sizeof v), NULL, 10),
                          strlen(body));
        ck_assert_uint_eq(r.body_len, 0);
    } else if (body) {
        ck_assert_str_eq(r.body, body);
    }
    fyc_resp_free(&r);
}

START_TEST(health_answers_ready)
{
    tserver *s = ts_start(NULL);
    expect_health(s, "GET", "/ferry/health", 200, READY);
    ck_assert_int_eq(ts_metric(s, "ferry_ready"), 1);
    ck_assert_int_eq(ts_metric(s, "ferry_store_up"), 1);
    ts_stop(s);
}
END_TEST

START_TEST(draining_answers_503_and_back)
{
    tserver *s = ts_start(NULL);
    ferry_mount_set_draining(s->m, 1);
    expect_health(s, "GET", "/ferry/health", 503, DRAINING);
    ck_assert_int_eq(ts_metric(s, "ferry_ready"), 0);
    ck_assert_int_eq(ts_metric(s, "ferry_store_up"), 1);

    /* Only the health changes: new sessions are still served, on both transports. */
    tc ws, lp;
    tc_init(&ws, s, TC_WS);
    tc_init(&lp, s, TC_LP);
    ck_assert_int_eq(tc_connect(&ws), 0);
    ck_assert_int_eq(tc_connect(&lp), 0);
    ts_publish(s, "{\"i\":1}");
    ck_assert(tc_wait_msgs(&ws, 1, 5000));
    ck_assert(tc_wait_msgs(&lp, 1, 5000));

    ferry_mount_set_draining(s->m, 0);
    expect_health(s, "GET", "/ferry/health", 200, READY);
    ck_assert_int_eq(ts_metric(s, "ferry_ready"), 1);
    tc_free(&ws);
    tc_free(&lp);
    ts_stop(s);
}
END_TEST

START_TEST(head_answers_the_headers_only)
{
    tserver *s = ts_start(NULL);
    expect_health(s, "HEAD", "/ferry/health", 200, READY);
    ferry_mount_set_draining(s->m, 1);
    expect_health(s, "HEAD", "/ferry/health", 503, DRAINING);
    ts_stop(s);
}
END_TEST

START_TEST(other_methods_are_refused)
{
    tserver *s = ts_start(NULL);
    fyc_resp r;
    char v[64];
    ck_assert_int_eq(fyc_http(s->port, "POST", "/ferry/health", NULL, "{}", 2, 5000, &r), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(fyc_header(&r, "Allow", v, sizeof v), "GET, HEAD");
    fyc_resp_free(&r);
    ts_stop(s);
}
END_TEST

static void prefix_rt(ferry_mount_options *o)
{
    o->prefix = "/rt";
}

START_TEST(health_follows_the_prefix)
{
    tserver *s = ts_start(prefix_rt);
    expect_health(s, "GET", "/rt/health", 200, READY);
    fyc_resp r;
    ck_assert_int_eq(fyc_http(s->port, "GET", "/ferry/health", NULL, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 404);
    fyc_resp_free(&r);
    ts_stop(s);
}
END_TEST

/* A store that cannot be reached needs a cluster; the mapping is checked here, the endpoint
 * with a real Redis by the cluster's tests. */
START_TEST(status_by_precedence)
{
    int status;
    ck_assert_str_eq(fy_health_of(false, FERRY_OK, &status), "ready");
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(fy_health_of(false, FERRY_ESTORE, &status), "store_unavailable");
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(fy_health_of(true, FERRY_OK, &status), "draining");
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(fy_health_of(true, FERRY_ESTORE, &status), "draining");
    ck_assert_int_eq(status, 503);
}
END_TEST

Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *t = tcase_create("health");
    tcase_set_timeout(t, 30);
    tcase_add_test(t, health_answers_ready);
    tcase_add_test(t, draining_answers_503_and_back);
    tcase_add_test(t, head_answers_the_headers_only);
    tcase_add_test(t, other_methods_are_refused);
    tcase_add_test(t, health_follows_the_prefix);
    tcase_add_test(t, status_by_precedence);
    suite_add_tcase(s, t);
    return s;
}
