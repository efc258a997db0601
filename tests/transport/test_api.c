/* The hooks ferry_transport.h gives transports, driven without civetweb: a fake transport
 * and an injected clock, through the public headers only. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static atomic_ullong fake_ms;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&fake_ms);
}

static ferry_hub *fake_hub(void)
{
    ferry_options o;
    ferry_options_init(&o);
    o.clock = fake_clock;
    atomic_store(&fake_ms, 1000);
    ferry_hub *hub = NULL;
    ck_assert_int_eq(ferry_hub_new(&hub, &o, NULL, NULL), FERRY_OK);
    return hub;
}

static void nop_wake(void *ud)
{
    (void)ud;
}

static const ferry_link_ops nop_ops = {sizeof nop_ops, nop_wake, NULL};

/* A link with a session and `n` messages sent to it (pulled once). */
static ferry_link *attached(ferry_hub *hub, int n)
{
    ferry_link *l = NULL;
    ck_assert_int_eq(ferry_link_new(&l, hub, &nop_ops, NULL), FERRY_OK);
    const char hello[] = "{\"t\":\"hello\",\"v\":1}";
    ck_assert_int_eq(ferry_link_recv(l, hello, sizeof hello - 1), FERRY_OK);
    ferry_buf b = {0};
    ck_assert_int_gt(ferry_link_pull(l, &b, 0), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(ferry_hub_send(hub, ferry_link_session_id(l), "{}", 2), FERRY_OK);
    b.len = 0;
    if (n)
        ck_assert_int_eq(ferry_link_pull(l, &b, 0), n);
    ferry_buf_release(&b);
    return l;
}

START_TEST(api_clock_is_the_hubs)
{
    ferry_hub *hub = fake_hub();
    ck_assert_uint_eq(ferry_hub_now(hub), 1000);
    atomic_store(&fake_ms, 1500);
    ck_assert_uint_eq(ferry_hub_now(hub), 1500);
    ck_assert_uint_eq(ferry_hub_since(hub, 1200), 300);
    ck_assert_uint_eq(ferry_hub_since(hub, 2000), 0); /* stamped later: not "long ago" */
    ck_assert_uint_eq(ferry_hub_now(NULL), 0);
    ferry_hub_free(hub);
}
END_TEST

START_TEST(api_count_limit)
{
    ferry_hub *hub = fake_hub();
    ferry_hub_count_limit(hub, FERRY_LIMIT_POLLS);
    ferry_hub_count_limit(hub, FERRY_LIMIT_POLLS);
    ferry_hub_count_limit(hub, FERRY_LIMIT_COUNT); /* ignored */
    ferry_hub_count_limit(NULL, FERRY_LIMIT_POLLS);
    ck_assert_uint_eq(ferry_hub_limit_hits(hub, FERRY_LIMIT_POLLS), 2);
    ferry_hub_free(hub);
}
END_TEST

START_TEST(api_bucket)
{
    ferry_bucket b;
    ferry_bucket_init(&b, 2, 1000);
    ck_assert(ferry_bucket_full(&b, 2, 5, 1000));
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 1000), 1);
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 1000), 1);
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 1000), 0);
    ck_assert(!ferry_bucket_full(&b, 2, 5, 1000));
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 1100), 0); /* half a token */
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 1200), 1); /* 5 per second */
    ck_assert(!ferry_bucket_full(&b, 2, 5, 1500));
    ck_assert(ferry_bucket_full(&b, 2, 5, 1600));
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 900), 0); /* a clock read earlier: no refill */
    ck_assert(ferry_bucket_full(&b, 2, 5, 100000));        /* capped at the burst */
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 100000), 1);
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 100000), 1);
    ck_assert_int_eq(ferry_bucket_take(&b, 2, 5, 100000), 0);
}
END_TEST

static void expect_answer(int code, const char *text, const char *want)
{
    ferry_buf b = {0};
    ck_assert_int_eq(ferry_answer_encode(&b, code, text), FERRY_OK);
    ck_assert_uint_eq(b.len, strlen(want));
    ck_assert(memcmp(b.data, want, b.len) == 0);
    ferry_buf_release(&b);
}

START_TEST(api_answers)
{
    expect_answer(FERRY_OK, NULL, "[]");
    expect_answer(FERRY_ANSWER_ORIGIN, "origin not allowed",
                  "[{\"t\":\"error\",\"code\":\"origin\",\"text\":\"origin not allowed\"}]");
    expect_answer(FERRY_ENOTFOUND, "resume",
                  "[{\"t\":\"error\",\"code\":\"unknown_session\",\"text\":\"resume\"}]");
    expect_answer(FERRY_ETOOBIG, "a \"big\"\x01 one",
                  "[{\"t\":\"error\",\"code\":\"too_big\",\"text\":\"a \\\"big\\\"? one\"}]");
    expect_answer(FERRY_ENOMEM, NULL,
                  "[{\"t\":\"error\",\"code\":\"internal\",\"text\":\"out of memory\"}]");
    ferry_buf b = {0};
    ck_assert_int_eq(ferry_answer_encode(&b, FERRY_ECLOSED, "x"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_answer_encode(&b, FERRY_EINVAL, "x"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_answer_encode(NULL, FERRY_OK, NULL), FERRY_EINVAL);
    ck_assert_uint_eq(b.len, 0);
    ferry_buf_release(&b);
}
END_TEST

/* An ack through ferry_link_ack is the ack frame: it releases messages, so a replay starts
 * after them, and a bad one is answered bad_ack and changes nothing. */
START_TEST(api_link_ack)
{
    ferry_hub *hub = fake_hub();
    ferry_link *l = attached(hub, 3);
    ferry_buf b = {0};
    ck_assert_int_eq(ferry_link_ack(l, 2), FERRY_OK);
    ck_assert_int_eq(ferry_link_pull(l, &b, FERRY_PULL_ARRAY | FERRY_PULL_REPLAY), 1);
    ck_assert_ptr_nonnull(strstr(b.data, "\"seq\":3"));
    ck_assert_int_eq(ferry_link_ack(l, 4), FERRY_EACK);
    b.len = 0;
    ck_assert_int_eq(ferry_link_pull(l, &b, FERRY_PULL_ARRAY | FERRY_PULL_CONTROL), 1);
    ck_assert_ptr_nonnull(strstr(b.data, "\"code\":\"bad_ack\""));
    ck_assert_int_eq(ferry_link_ack(l, 9007199254740992ull), FERRY_EINVAL);
    ck_assert_int_eq(ferry_link_ack(NULL, 0), FERRY_EINVAL);
    ferry_buf_release(&b);
    ferry_link_free(l);

    ck_assert_int_eq(ferry_link_new(&l, hub, &nop_ops, NULL), FERRY_OK);
    ck_assert_int_eq(ferry_link_ack(l, 0), FERRY_EHANDSHAKE);
    ferry_link_free(l);
    ferry_hub_free(hub);
}
END_TEST

static char logged[2048];

static void capture(ferry_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    snprintf(logged, sizeof logged, "%s", msg);
}

START_TEST(api_log)
{
    ferry_set_log(capture, NULL);
    char q[32];
    ferry_log(FERRY_LOG_WARN, "refused %s", ferry_log_quote(q, sizeof q, "a\"b\n", 100));
    ck_assert_str_eq(logged, "refused \"a\\\"b\\x0a\"");
    char big[1500];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ferry_log(FERRY_LOG_WARN, "%s", big);
    ck_assert_uint_eq(strlen(logged), 1023);
    ck_assert_str_eq(logged + 1020, "...");

    ferry_options o;
    ferry_options_init(&o);
    ck_assert_int_eq(ferry_options_check(&o, "t", "core."), FERRY_OK);
    o.max_batch = 0;
    ck_assert_int_eq(ferry_options_check(&o, "t", "core."), FERRY_EINVAL);
    ck_assert_str_eq(logged, "t: core.max_batch must be at least 1");
    ferry_set_log(NULL, NULL);
}
END_TEST

Suite *api_suite(void)
{
    Suite *s = suite_create("transport_api");
    TCase *hooks = tcase_create("hooks");
    tcase_add_test(hooks, api_clock_is_the_hubs);
    tcase_add_test(hooks, api_count_limit);
    tcase_add_test(hooks, api_bucket);
    tcase_add_test(hooks, api_answers);
    tcase_add_test(hooks, api_link_ack);
    tcase_add_test(hooks, api_log);
    suite_add_tcase(s, hooks);
    return s;
}
