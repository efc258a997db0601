#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

START_TEST(switching_transports_mid_stream_loses_and_repeats_nothing)
{
    tserver *s = ts_start(NULL);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    ts_pub p = {s, 400};
    pthread_t t;
    pthread_create(&t, NULL, ts_publisher, &p);
    tc_kind order[] = {TC_LP, TC_WS, TC_LP, TC_WS};
    for (int k = 0; k < 4; k++) {
        ck_assert(tc_wait_msgs(&c, json_array_size(c.got) + 30, 10000));
        for (int i = 0; i < 5; i++) {
            char m[64];
            snprintf(m, sizeof m, "{\"c\":%ld}", c.out_seq + 1);
            tc_send(&c, m);
        }
        ck_assert_int_eq(tc_switch(&c, order[k]), 0);
        ck_assert(c.resumed);
    }
    pthread_join(t, NULL);
    ck_assert(tc_wait_msgs(&c, 400, 15000));
    ck_assert_int_eq(c.gaps, 0);
    ck_assert_int_eq(c.dups, 0);
    for (size_t i = 0; i < 400; i++)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c.got, i), "i")), (json_int_t)i + 1);
    ts_expect_received_c(s, 20);
    ck_assert_int_eq(ts_count(s, &s->opens), 1);
    ck_assert_int_eq(ts_count(s, &s->resets), 0);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

START_TEST(the_js_client_is_served_by_the_mount)
{
    tserver *s = ts_start(NULL);
    fyc_resp r;
    char v[64];
    ck_assert_int_eq(fyc_http(s->port, "GET", "/ferry/ferry.js", NULL, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(fyc_header(&r, "Content-Type", v, sizeof v), "javascript"));
    FILE *f = fopen("js-client/ferry.js", "rb");
    ck_assert_ptr_nonnull(f);
    char *want = malloc(r.body_len + 2);
    size_t n = fread(want, 1, r.body_len + 1, f);
    fclose(f);
    ck_assert_uint_eq(n, r.body_len);
    ck_assert_int_eq(memcmp(want, r.body, n), 0);
    free(want);
    fyc_resp_free(&r);
    ts_stop(s);
}
END_TEST

START_TEST(unmounting_closes_every_connection)
{
    tserver *s = ts_start(NULL);
    tc w, l;
    tc_init(&w, s, TC_WS);
    tc_init(&l, s, TC_LP);
    ck_assert_int_eq(tc_connect(&w), 0);
    ck_assert_int_eq(tc_connect(&l), 0);
    ts_held h = {&l, {0}, -1};
    pthread_t t;
    pthread_create(&t, NULL, ts_hold_poll, &h);
    ck_assert(ts_wait_held_polls(s, 1, 5000));
    ferry_mount_free(s->m); /* returns only when no connection refers to the mount */
    pthread_join(t, NULL);
    ck_assert_int_eq(h.r.status, 200);
    ck_assert_str_eq(h.r.body, "[{\"t\":\"close\",\"reason\":\"shutdown\",\"ack\":0}]");
    fyc_resp_free(&h.r);
    for (int i = 0; i < 50 && w.open; i++)
        tc_pump(&w, 100);
    ck_assert_str_eq(w.last_close, "shutdown");
    ck_assert_int_eq(w.ws_close_code, 1000);
    ck_assert_int_eq(ts_count(s, &s->closes), 2); /* every session ended: shutdown */
    tc_free(&w);
    tc_free(&l);
    ferry_server_stop(s->ctx);
    json_decref(s->received);
    free(s);
}
END_TEST

START_TEST(dropping_connections_keeps_sessions)
{
    tserver *s = ts_start(NULL);
    tc w, l;
    tc_init(&w, s, TC_WS);
    tc_init(&l, s, TC_LP);
    ck_assert_int_eq(tc_connect(&w), 0);
    ck_assert_int_eq(tc_connect(&l), 0);
    ts_held h = {&l, {0}, -1};
    pthread_t t;
    pthread_create(&t, NULL, ts_hold_poll, &h);
    ck_assert(ts_wait_held_polls(s, 1, 5000));
    ferry_mount_drop_connections(s->m);
    pthread_join(t, NULL);
    ck_assert_int_eq(h.r.status, 200);
    ck_assert_str_eq(h.r.body, "[]");
    fyc_resp_free(&h.r);
    for (int i = 0; i < 50 && w.open; i++)
        tc_pump(&w, 100);
    ck_assert_int_eq(w.ws_close_code, 1012);
    ck_assert_int_lt(tc_pump(&l, 1000), 0); /* the next poll: 404, resume */
    ts_publish(s, "{\"after\":1}");
    ck_assert_int_eq(tc_connect(&w), 0);
    ck_assert_int_eq(tc_connect(&l), 0);
    ck_assert(w.resumed && l.resumed);
    ck_assert(tc_wait_msgs(&w, 1, 5000));
    ck_assert(tc_wait_msgs(&l, 1, 5000));
    ck_assert_int_eq(ts_count(s, &s->closes), 0);
    tc_free(&w);
    tc_free(&l);
    ts_stop(s);
}
END_TEST

START_TEST(websocket_can_be_switched_off_and_on)
{
    tserver *s = ts_start(NULL);
    tc w;
    tc_init(&w, s, TC_WS);
    ck_assert_int_eq(tc_connect(&w), 0);
    ferry_mount_set_websocket(s->m, 0);
    for (int i = 0; i < 50 && w.open; i++)
        tc_pump(&w, 100);
    ck_assert_int_eq(w.ws_close_code, 1012);
    fyc_ws ws;
    int status;
    ck_assert_int_eq(fyc_ws_open(&ws, s->port, "/ferry/ws", NULL, &status), -1);
    ck_assert_int_eq(status, 404);
    ck_assert_int_eq(tc_switch(&w, TC_LP), 0); /* the session carries on over long-polling */
    ck_assert(w.resumed);
    ferry_mount_set_websocket(s->m, 1);
    ck_assert_int_eq(tc_switch(&w, TC_WS), 0);
    ck_assert(w.resumed);
    tc_free(&w);
    ts_stop(s);
}
END_TEST

START_TEST(authentication_on_both_transports)
{
    tserver *s = ts_start(NULL);
    tc_kind kinds[] = {TC_WS, TC_LP};
    for (int k = 0; k < 2; k++) {
        tc c;
        tc_init(&c, s, kinds[k]);
        c.ws_headers = "Cookie: session=kitchen\r\n";
        snprintf(c.token, sizeof c.token, "alice");
        ck_assert_int_eq(tc_connect(&c), 0);
        pthread_mutex_lock(&s->lock);
        ck_assert_str_eq(s->cookie, "session=kitchen");
        ck_assert_str_eq(s->identity, "alice");
        pthread_mutex_unlock(&s->lock);
        tc_free(&c);

        tc_init(&c, s, kinds[k]);
        snprintf(c.token, sizeof c.token, "bad");
        int rc = tc_connect(&c);
        if (kinds[k] == TC_WS) {
            ck_assert_int_eq(rc, -1);
            for (int i = 0; i < 50 && c.open; i++)
                tc_pump(&c, 100);
            ck_assert_int_eq(c.ws_close_code, 4003);
        } else {
            ck_assert_int_eq(rc, -1);
            ck_assert_int_eq(c.http_status, 401);
        }
        ck_assert_str_eq(c.last_error, "unauthorized");
        tc_free(&c);
    }
    ts_stop(s);
}
END_TEST

static void few_resumes(ferry_mount_options *o)
{
    ts_core(o)->resume_burst = 3;
    ts_core(o)->resume_rate = 1;
    o->real_ip_header = "X-Real-IP";
}

START_TEST(resume_floods_from_one_address_are_refused)
{
    tserver *s = ts_start(few_resumes);
    tc owner;
    tc_init(&owner, s, TC_LP);
    ck_assert_int_eq(tc_connect(&owner), 0);
    /* Three resumes go through; the fourth from the same address is refused: 429 on
     * long-polling, error and 1008 on WebSocket. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(tc_switch(&owner, TC_LP), 0);
    ck_assert_int_eq(tc_switch(&owner, TC_LP), -1);
    ck_assert_int_eq(owner.http_status, 429);
    ck_assert_str_eq(owner.last_error, "rate_limited");
    owner.last_error[0] = '\0';
    owner.kind = TC_WS;
    ck_assert_int_eq(tc_connect(&owner), -1);
    for (int i = 0; i < 50 && owner.open; i++)
        tc_pump(&owner, 100);
    ck_assert_int_eq(owner.ws_close_code, 1008);
    ck_assert_str_eq(owner.last_error, "rate_limited");
    /* Another address (as the proxy reports it) is not affected; nor is a new session. */
    tc other;
    tc_init(&other, s, TC_LP);
    ck_assert_int_eq(tc_connect(&other), 0);
    other.ws_headers = "X-Real-IP: 10.1.2.3\r\n";
    ck_assert_int_eq(tc_switch(&other, TC_LP), 0);
    ck_assert(other.resumed);
    tc_free(&other);
    tc_free(&owner);
    ts_stop(s);
}
END_TEST

static void with_metrics(ferry_mount_options *o)
{
    o->metrics_path = "/metrics";
    o->allowed_origins = "http://good.example";
}

/* The value of one sample ("name{labels}") in a Prometheus text body, or -1. */
static long long sample(const char *body, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return atoll(line + n + 1);
    return -1;
}

START_TEST(metrics_in_prometheus_text)
{
    tserver *s = ts_start(with_metrics);
    tc c;
    tc_init(&c, s, TC_WS);
    ck_assert_int_eq(tc_connect(&c), 0);
    tc_send(&c, "{\"echo\":true}");
    ck_assert(tc_wait_msgs(&c, 1, 5000));
    ck_assert_int_eq(tc_switch(&c, TC_LP), 0); /* a fallback */
    ck_assert_int_eq(tc_switch(&c, TC_WS), 0); /* an upgrade */
    fyc_ws evil;
    int status;
    fyc_ws_open(&evil, s->port, "/ferry/ws", "Origin: http://evil.example\r\n", &status);
    ts_publish(s, "{\"i\":1}");
    ck_assert(tc_wait_msgs(&c, 2, 5000));

    fyc_resp r;
    char v[64];
    ck_assert_int_eq(fyc_http(s->port, "GET", "/metrics", NULL, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(fyc_header(&r, "Content-Type", v, sizeof v), "version=0.0.4"));
    /* Every line is a HELP or TYPE comment or a sample of a declared metric. */
    regex_t re;
    ck_assert_int_eq(regcomp(&re, "^([a-z_]+)(\\{[a-z_]+=\"([a-z_]+|[0-9.]+|\\+Inf)\"\\})? [0-9]+(\\.[0-9]+)?$",
                         REG_EXTENDED), 0);
    char *save, *line, declared[4096] = " ";
    size_t samples = 0;
    char *text = strdup(r.body);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128];
        if (sscanf(line, "# TYPE %127s", name) == 1) {
            strncat(declared, name, sizeof declared - strlen(declared) - 2);
            strcat(declared, " ");
            continue;
        }
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        regmatch_t mt[3];
        ck_assert_msg(regexec(&re, line, 3, mt, 0) == 0, "not a sample: %s", line);
        const char *at = line + mt[1].rm_so;
        int len = (int)(mt[1].rm_eo - mt[1].rm_so);
        snprintf(name, sizeof name, " %.*s ", len, at);
        bool ok = strstr(declared, name) != NULL;
        /* a histogram's samples: <name>_bucket, <name>_sum, <name>_count */
        const char *suffix[] = {"_bucket", "_sum", "_count"};
        for (int k = 0; !ok && k < 3; k++) {
            int sl = (int)strlen(suffix[k]);
            if (len > sl && strncmp(at + len - sl, suffix[k], (size_t)sl) == 0) {
                snprintf(name, sizeof name, " %.*s ", len - sl, at);
                ok = strstr(declared, name) != NULL;
            }
        }
        ck_assert_msg(ok, "undeclared metric in: %s", line);
        samples++;
    }
    free(text);
    regfree(&re);
    ck_assert_uint_gt(samples, 30);
    ck_assert_int_eq(sample(r.body, "ferry_sessions{state=\"attached\"}"), 1);
    ck_assert_int_eq(sample(r.body, "ferry_connections{transport=\"websocket\"}"), 1);
    ck_assert_int_ge(sample(r.body, "ferry_messages_total{direction=\"in\"}"), 1);
    ck_assert_int_ge(sample(r.body, "ferry_messages_total{direction=\"out\"}"), 2);
    ck_assert_int_ge(sample(r.body, "ferry_bytes_total{direction=\"out\"}"), 100);
    ck_assert_int_eq(sample(r.body, "ferry_sessions_opened_total"), 1);
    ck_assert_int_eq(sample(r.body, "ferry_resumes_total{outcome=\"resumed\"}"), 2);
    ck_assert_int_eq(sample(r.body, "ferry_resumes_total{outcome=\"unknown\"}"), 0);
    ck_assert_int_eq(sample(r.body, "ferry_fallbacks_total"), 1);
    ck_assert_int_eq(sample(r.body, "ferry_upgrades_total"), 1);
    ck_assert_int_eq(sample(r.body, "ferry_limit_hits_total{limit=\"origin\"}"), 1);
    ck_assert_int_ge(sample(r.body, "ferry_outbox_messages"), 0);
    ck_assert_int_eq(sample(r.body, "ferry_slow_consumers_cut_total"), 0);
    ck_assert_int_eq(sample(r.body, "ferry_resets_total{reason=\"overflow\"}"), 0);
    ck_assert_int_eq(sample(r.body, "ferry_draining"), 0);
    /* A connection's first batch with a new message is always observed (one in 16 after
     * that): the echo's at least, every observation in the +Inf bucket; no Redis without
     * a cluster. */
    long long writes = sample(r.body, "ferry_publish_to_write_seconds_count");
    ck_assert_int_ge(writes, 1);
    ck_assert_int_eq(sample(r.body, "ferry_publish_to_write_seconds_bucket{le=\"+Inf\"}"), writes);
    ck_assert_int_ge(sample(r.body, "ferry_publish_to_write_seconds_bucket{le=\"10\"}"), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE ferry_publish_to_write_seconds histogram\n"));
    ck_assert_ptr_null(strstr(r.body, "ferry_redis_"));
    fyc_resp_free(&r);
    ferry_mount_set_draining(s->m, 1);
    ck_assert_int_eq(fyc_http(s->port, "GET", "/metrics", NULL, NULL, 0, 5000, &r), 0);
    ck_assert_int_eq(sample(r.body, "ferry_draining"), 1);
    ck_assert_int_eq(sample(r.body, "ferry_ready"), 0);
    fyc_resp_free(&r);
    tc_free(&c);
    ts_stop(s);
}
END_TEST

Suite *mixed_suite(void)
{
    Suite *s = suite_create("mixed");
    TCase *tcs = tcase_create("mixed");
    tcase_set_timeout(tcs, 60);
    tcase_add_test(tcs, switching_transports_mid_stream_loses_and_repeats_nothing);
    tcase_add_test(tcs, the_js_client_is_served_by_the_mount);
    tcase_add_test(tcs, unmounting_closes_every_connection);
    tcase_add_test(tcs, dropping_connections_keeps_sessions);
    tcase_add_test(tcs, websocket_can_be_switched_off_and_on);
    tcase_add_test(tcs, authentication_on_both_transports);
    tcase_add_test(tcs, resume_floods_from_one_address_are_refused);
    tcase_add_test(tcs, metrics_in_prometheus_text);
    suite_add_tcase(s, tcs);
    return s;
}
