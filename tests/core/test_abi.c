/* The ABI and the contracts every function shares (ferry.h): the version, stable error
 * numbers, sized structs from older and newer builds, the NULL policy, and libsodium
 * failing to start. */
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "hub.h"
#include "log.h"

/* sodium_init is wrapped at link time (Makefile, TEST_WRAP) so that a test can make it
 * fail. */
int __real_sodium_init(void);
int __wrap_sodium_init(void);
static int sodium_fails;

int __wrap_sodium_init(void)
{
    return sodium_fails ? -1 : __real_sodium_init();
}

static char logged[4][FY_LOG_MAX];
static int nlogged;

static void capture(ferry_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    if (nlogged < 4)
        snprintf(logged[nlogged], sizeof logged[0], "%s", msg);
    nlogged++;
}

static void capture_start(void)
{
    nlogged = 0;
    ferry_set_log(capture, NULL);
}

static void capture_stop(void)
{
    ferry_set_log(NULL, NULL);
}

START_TEST(version_macros_and_runtime_agree)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FERRY_VERSION_MAJOR, FERRY_VERSION_MINOR,
             FERRY_VERSION_PATCH);
    ck_assert_str_eq(FERRY_VERSION_STRING, want);
    ck_assert_str_eq(ferry_version_string(), want);
    ck_assert_uint_eq(ferry_version(), FERRY_VERSION_NUMBER);
    ck_assert_uint_eq(FERRY_VERSION_NUMBER, ((unsigned long)FERRY_VERSION_MAJOR << 16) |
                                                (FERRY_VERSION_MINOR << 8) | FERRY_VERSION_PATCH);
}
END_TEST

/* Every code with the number it was published with: a renumbered code breaks this test,
 * and a new one must be added here with the next number down. */
static const struct {
    int code, number;
} codes[] = {
    {FERRY_OK, 0},           {FERRY_ENOMEM, -1},     {FERRY_EINVAL, -2},
    {FERRY_ETOOBIG, -3},     {FERRY_EJSON, -4},      {FERRY_EDEPTH, -5},
    {FERRY_EDUPKEY, -6},     {FERRY_EFIELD, -7},     {FERRY_EFRAMETYPE, -8},
    {FERRY_EVERSION, -9},    {FERRY_EHANDSHAKE, -10}, {FERRY_EACK, -11},
    {FERRY_ESEQ, -12},       {FERRY_ECAPACITY, -13}, {FERRY_ECLOSED, -14},
    {FERRY_ENOTFOUND, -15},  {FERRY_EFULL, -16},     {FERRY_EFORBIDDEN, -17},
    {FERRY_EAUTH, -18},      {FERRY_ERATE, -19},     {FERRY_ESTORE, -20},
    {FERRY_EINTERNAL, -21},  {FERRY_ELISTEN, -22},
    {FERRY_ETIMEDOUT, -23},
};

START_TEST(error_numbers_are_stable_unique_and_named)
{
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(codes[i].code, codes[i].number);
        ck_assert_int_eq(codes[i].number, -(int)i); /* dense: no gap, no reuse */
        ck_assert_str_ne(ferry_strerror(codes[i].code), "unknown error");
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(ferry_strerror(codes[i].code), ferry_strerror(codes[j].code));
    }
    ck_assert_str_eq(ferry_strerror(-(int)n), "unknown error"); /* the next one is free */
}
END_TEST

/* What an application built against an older ferry.h passes: the fields it knew. */
struct old_options {
    size_t size;
    size_t max_frame_bytes;
    size_t max_message_bytes;
};

struct old_callbacks {
    size_t size;
    void (*on_open)(ferry_session *s, void *ud);
};

static void nop_open(ferry_session *s, void *ud)
{
    (void)s;
    (void)ud;
}

START_TEST(older_smaller_structs_get_defaults_for_what_they_lack)
{
    struct old_options oo = {sizeof oo, 2048, 1024};
    struct old_callbacks oc = {sizeof oc, nop_open};
    ferry_hub *hub = NULL;
    capture_start();
    ck_assert_int_eq(ferry_hub_new(&hub, (const ferry_options *)(void *)&oo,
                                   (const ferry_callbacks *)(void *)&oc, NULL),
                     FERRY_OK);
    capture_stop();
    ck_assert_int_eq(nlogged, 0);
    ferry_options def;
    ferry_options_init(&def);
    ck_assert_uint_eq(hub->opt.size, sizeof(ferry_options));
    ck_assert_uint_eq(hub->opt.max_frame_bytes, 2048);
    ck_assert_uint_eq(hub->opt.max_message_bytes, 1024);
    ck_assert_uint_eq(hub->opt.max_depth, def.max_depth);
    ck_assert_uint_eq(hub->opt.heartbeat_ms, def.heartbeat_ms);
    ck_assert_uint_eq(hub->opt.resume_window_ms, def.resume_window_ms);
    ck_assert_ptr_nonnull(hub->opt.clock); /* NULL in the defaults: CLOCK_MONOTONIC */
    ck_assert_ptr_eq(hub->cb.on_open, nop_open);
    ck_assert_ptr_null(hub->cb.on_message);
    ck_assert_ptr_null(hub->cb.on_auth);

    /* ferry_stats: an older, smaller one is filled only as far as its size. */
    struct {
        size_t size;
        uint64_t sessions_opened;
        uint64_t canary;
    } os = {offsetof(ferry_stats, resumes), 99, 0x5a5a};
    ck_assert_int_eq(ferry_hub_stats(hub, (ferry_stats *)(void *)&os), FERRY_OK);
    ck_assert_uint_eq(os.size, offsetof(ferry_stats, resumes));
    ck_assert_uint_eq(os.sessions_opened, 0);
    ck_assert_uint_eq(os.canary, 0x5a5a);
    ferry_hub_free(hub);
}
END_TEST

START_TEST(unknown_or_unset_sizes_are_refused_and_logged)
{
    ferry_options o;
    ferry_options_init(&o);
    ferry_hub *hub = NULL;
    char want[FY_LOG_MAX];

    o.size = sizeof o + 8; /* from a newer ferry.h */
    capture_start();
    ck_assert_int_eq(ferry_hub_new(&hub, &o, NULL, NULL), FERRY_EINVAL);
    capture_stop();
    ck_assert_ptr_null(hub);
    ck_assert_int_eq(nlogged, 1);
    snprintf(want, sizeof want, "ferry_hub_new: ferry_options.size is %zu, but this library "
             "(ferry %s) knows %zu bytes of it: the application was built against a newer "
             "ferry.h, or did not set size", sizeof o + 8, FERRY_VERSION_STRING, sizeof o);
    ck_assert_str_eq(logged[0], want);

    ferry_callbacks cb = {.on_open = nop_open}; /* size forgotten */
    capture_start();
    ck_assert_int_eq(ferry_hub_new(&hub, NULL, &cb, NULL), FERRY_EINVAL);
    capture_stop();
    ck_assert_int_eq(nlogged, 1);
    ck_assert_str_eq(logged[0], "ferry_hub_new: ferry_callbacks.size is 0: fill the struct with "
                                "its init function, or set .size = sizeof(ferry_callbacks)");

    ferry_options_init(&o);
    o.size = 0;
    capture_start();
    ck_assert_int_eq(ferry_options_check(&o, "mine", ""), FERRY_EINVAL);
    capture_stop();
    ck_assert_int_eq(nlogged, 1);

    ck_assert_int_eq(ferry_hub_new(&hub, NULL, NULL, NULL), FERRY_OK);
    ferry_stats st = {.size = sizeof st + 1};
    capture_start();
    ck_assert_int_eq(ferry_hub_stats(hub, &st), FERRY_EINVAL);
    st.size = 0;
    ck_assert_int_eq(ferry_hub_stats(hub, &st), FERRY_EINVAL);
    capture_stop();
    ck_assert_int_eq(nlogged, 2);

    ferry_link *l = NULL;
    static const ferry_link_ops unsized = {0, NULL, NULL};
    capture_start();
    ck_assert_int_eq(ferry_link_new(&l, hub, &unsized, NULL), FERRY_EINVAL);
    capture_stop();
    ck_assert_ptr_null(l);
    ck_assert_int_eq(nlogged, 1);
    ferry_hub_free(hub);
}
END_TEST

START_TEST(sized_copy_keeps_defaults_past_the_size)
{
    struct two {
        size_t size;
        int a, b;
    } dst = {0, 1, 2}, src = {offsetof(struct two, b), 10, 20};
    ck_assert_int_eq(ferry_sized_copy(&dst, sizeof dst, &src, "t", "two"), FERRY_OK);
    ck_assert_uint_eq(dst.size, sizeof dst);
    ck_assert_int_eq(dst.a, 10);
    ck_assert_int_eq(dst.b, 2);
    ck_assert_int_eq(ferry_sized_copy(NULL, sizeof dst, &src, "t", "two"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_sized_copy(&dst, sizeof dst, NULL, "t", "two"), FERRY_EINVAL);
}
END_TEST

START_TEST(libsodium_failing_is_internal_not_memory)
{
    ferry_hub *hub = NULL;
    sodium_fails = 1;
    capture_start();
    int rc = ferry_hub_new(&hub, NULL, NULL, NULL);
    capture_stop();
    sodium_fails = 0;
    ck_assert_int_eq(rc, FERRY_EINTERNAL);
    ck_assert_ptr_null(hub);
    ck_assert_int_eq(nlogged, 1);
    ck_assert_str_eq(logged[0], "ferry_hub_new: libsodium failed to initialize");
}
END_TEST

/* ferry.h's NULL policy, function by function: no crash, and the documented answer. */
START_TEST(null_arguments_follow_the_policy)
{
    ferry_hub *hub = NULL;
    ck_assert_int_eq(ferry_hub_new(NULL, NULL, NULL, NULL), FERRY_EINVAL);
    ferry_options_init(NULL);
    ferry_callbacks_init(NULL);
    ck_assert_int_eq(ferry_options_check(NULL, "x", ""), FERRY_EINVAL);
    ferry_hub_shutdown(NULL);
    ferry_hub_free(NULL);
    ck_assert_int_eq(ferry_hub_tick(NULL), FERRY_EINVAL);
    size_t q = 7;
    ck_assert_int_eq(ferry_hub_publish(NULL, "t", "1", 1, &q), FERRY_EINVAL);
    ck_assert_uint_eq(q, 0);
    ck_assert_int_eq(ferry_hub_send(NULL, "x", "1", 1), FERRY_EINVAL);
    ck_assert_uint_eq(ferry_hub_limit_hits(NULL, FERRY_LIMIT_DEPTH), 0);
    ck_assert_int_eq(ferry_hub_stats(NULL, NULL), FERRY_EINVAL);
    size_t a = 5;
    ferry_hub_counts(NULL, &a, NULL, NULL);
    ck_assert_uint_eq(a, 0);
    ck_assert_uint_eq(ferry_hub_now(NULL), 0);
    ck_assert_uint_eq(ferry_hub_since(NULL, 0), 0);
    ferry_hub_count_limit(NULL, FERRY_LIMIT_DEPTH);

    ck_assert_int_eq(ferry_session_send(NULL, "1", 1), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(NULL, "t"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_unsubscribe(NULL, "t"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_close(NULL), FERRY_EINVAL);
    ck_assert_ptr_null(ferry_session_id(NULL));
    ck_assert_ptr_null(ferry_session_identity(NULL));
    ck_assert_int_eq(ferry_session_state(NULL), FERRY_STATE_EXPIRED);
    ck_assert_ptr_null(ferry_session_hub(NULL));
    ferry_session_set_user(NULL, &a);
    ck_assert_ptr_null(ferry_session_user(NULL));
    ck_assert_ptr_null(ferry_session_ref(NULL));
    ferry_session_unref(NULL);

    ck_assert_int_eq(ferry_link_new(NULL, NULL, NULL, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_link_recv(NULL, "{}", 2), FERRY_EINVAL);
    ck_assert_int_eq(ferry_link_too_big(NULL, 1), FERRY_EINVAL);
    ck_assert_int_eq(ferry_link_pull(NULL, NULL, 0), FERRY_EINVAL);
    ferry_link_set_transport(NULL, FERRY_TRANSPORT_OTHER);
    ferry_link_set_peer(NULL, NULL, NULL, NULL);
    ck_assert_int_ne(ferry_link_done(NULL), 0);
    ck_assert_int_eq(ferry_link_end_reason(NULL), FERRY_LINK_ENDED);
    ck_assert_int_eq(ferry_link_check_secret(NULL, NULL, 0), FERRY_EINVAL);
    ck_assert_ptr_null(ferry_link_session_id(NULL));
    ck_assert_int_eq(ferry_link_ack(NULL, 1), FERRY_EINVAL);
    ferry_link_free(NULL);

    ck_assert_int_eq(ferry_buf_reserve(NULL, 1), FERRY_EINVAL);
    ferry_buf_release(NULL);
    ck_assert_int_eq(ferry_buf_printf(NULL, "x"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_answer_encode(NULL, FERRY_OK, NULL), FERRY_EINVAL);
    ferry_bucket_init(NULL, 1, 0);
    ck_assert_int_eq(ferry_bucket_take(NULL, 1, 1, 0), 0);
    ck_assert_int_ne(ferry_bucket_full(NULL, 1, 1, 0), 0);
    ck_assert_ptr_null(ferry_log_quote(NULL, 10, "x", 1));
    ferry_log(FERRY_LOG_WARN, NULL);

    /* And a live hub and link given NULL for what they need. */
    ck_assert_int_eq(ferry_hub_new(&hub, NULL, NULL, NULL), FERRY_OK);
    ck_assert_int_eq(ferry_hub_publish(hub, NULL, "1", 1, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_hub_publish(hub, "t", NULL, 1, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_hub_send(hub, NULL, "1", 1), FERRY_EINVAL);
    ck_assert_int_eq(ferry_link_new(NULL, hub, NULL, NULL), FERRY_EINVAL);
    ferry_link *l = NULL;
    ck_assert_int_eq(ferry_link_new(&l, hub, NULL, NULL), FERRY_EINVAL);
    ck_assert_ptr_null(l);
    ferry_hub_free(hub);
}
END_TEST

Suite *abi_suite(void)
{
    Suite *s = suite_create("abi");
    TCase *t = tcase_create("abi");
    tcase_add_test(t, version_macros_and_runtime_agree);
    tcase_add_test(t, error_numbers_are_stable_unique_and_named);
    tcase_add_test(t, older_smaller_structs_get_defaults_for_what_they_lack);
    tcase_add_test(t, unknown_or_unset_sizes_are_refused_and_logged);
    tcase_add_test(t, sized_copy_keeps_defaults_past_the_size);
    tcase_add_test(t, libsodium_failing_is_internal_not_memory);
    tcase_add_test(t, null_arguments_follow_the_policy);
    suite_add_tcase(s, t);
    return s;
}
