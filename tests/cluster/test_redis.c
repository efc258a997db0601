/* The Redis connection (cluster/src/redis.h) against real servers: addresses, AUTH,
 * SELECT, scripts, and recovery after the server goes away and comes back. */
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "ferry.h"

static rsrv own; /* a test's private server: one it may stop, or one with a password */

static void own_teardown(void)
{
    rsrv_stop(&own);
    rsrv_cleanup(&own);
    own = (rsrv){0};
}

static fy_redis *pool(const char *addr, const char *password, int db)
{
    fy_redis_cfg cfg = {.addr = addr, .password = password, .db = db,
                        .connect_timeout_ms = 300, .command_timeout_ms = 500, .pool = 2};
    fy_redis *r;
    ck_assert_int_eq(fy_redis_new(&r, &cfg), 0);
    return r;
}

static int ping(fy_redis *r)
{
    const char *argv[] = {"PING"};
    redisReply *rep;
    int rc = fy_redis_command(r, &rep, 1, argv, NULL);
    if (rc == 0) {
        ck_assert_int_eq(rep->type, REDIS_REPLY_STATUS);
        ck_assert_str_eq(rep->str, "PONG");
        freeReplyObject(rep);
    }
    return rc;
}

START_TEST(a_password_is_sent_and_never_logged)
{
    own.password = "correct horse battery staple";
    ck_assert_int_eq(rsrv_start(&own), 0);
    log_capture(1);
    fy_redis *none = pool(own.addr, NULL, 0), *wrong = pool(own.addr, "wrong secret", 0),
             *right = pool(own.addr, own.password, 0);
    ck_assert_int_eq(ping(none), FERRY_ESTORE);
    ck_assert_int_eq(ping(wrong), FERRY_ESTORE);
    ck_assert_int_eq(ping(right), 0);
    ck_assert_int_eq(ping(right), 0); /* the pool's second connection authenticates too */
    fy_redis_log_flush(none);
    fy_redis_log_flush(wrong);
    fy_redis_log_flush(right);
    ck_assert_ptr_nonnull(strstr(log_captured(), "redis:"));
    ck_assert_ptr_null(strstr(log_captured(), "horse"));
    ck_assert_ptr_null(strstr(log_captured(), "wrong secret"));
    log_capture(0);
    fy_redis_free(none);
    fy_redis_free(wrong);
    fy_redis_free(right);
}
END_TEST

START_TEST(a_database_is_selected_on_every_connection)
{
    fy_redis *d0 = pool(shared_redis.addr, NULL, 0), *d3 = pool(shared_redis.addr, NULL, 3);
    const char *set[] = {"SET", "ferry-db-test", "three"}, *get[] = {"GET", "ferry-db-test"},
               *del[] = {"DEL", "ferry-db-test"};
    freeReplyObject(test_redis_cmd(d3, 3, set));
    for (int i = 0; i < 2; i++) { /* both connections of each pool */
        redisReply *a = test_redis_cmd(d0, 2, get), *b = test_redis_cmd(d3, 2, get);
        ck_assert_int_eq(a->type, REDIS_REPLY_NIL);
        ck_assert_str_eq(b->str, "three");
        freeReplyObject(a);
        freeReplyObject(b);
    }
    freeReplyObject(test_redis_cmd(d3, 2, del));
    fy_redis_free(d0);
    fy_redis_free(d3);
}
END_TEST

START_TEST(a_unix_socket_is_an_address)
{
    own.unix_socket = 1;
    ck_assert_int_eq(rsrv_start(&own), 0);
    fy_redis *r = pool(own.sock, NULL, 0);
    ck_assert_int_eq(ping(r), 0);
    fy_redis_free(r);
}
END_TEST

START_TEST(a_malformed_address_is_refused)
{
    const char *bad[] = {"localhost:", "localhost:0", "localhost:99999", ":6379", "h:12x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fy_redis_cfg cfg = {.addr = bad[i]};
        fy_redis *r = (fy_redis *)1;
        ck_assert_int_eq(fy_redis_new(&r, &cfg), FERRY_EINVAL);
        ck_assert_ptr_null(r);
    }
}
END_TEST

START_TEST(the_pool_recovers_by_itself_when_redis_returns)
{
    ck_assert_int_eq(rsrv_start(&own), 0);
    fy_redis *r = pool(own.addr, NULL, 0);
    ck_assert_int_eq(ping(r), 0);
    ck_assert_int_eq(ping(r), 0);
    rsrv_stop(&own);
    /* Both connections were open: each fails once on its dead socket (no SIGPIPE kills
     * the process), then fails to connect. */
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(ping(r), FERRY_ESTORE);
    ck_assert_int_eq(rsrv_start(&own), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(ping(r), 0);
    fy_redis_free(r);
}
END_TEST

/* A command Redis does not answer in time fails, and the next one runs on a new
 * connection (the old one may still get the late answer, so it is not reused). */
START_TEST(a_command_that_times_out_fails_and_the_next_reconnects)
{
    fy_redis_cfg cfg = {.addr = shared_redis.addr, .command_timeout_ms = 200, .pool = 1};
    fy_redis *r;
    ck_assert_int_eq(fy_redis_new(&r, &cfg), 0);
    const char *block[] = {"BLPOP", "ferry-nothing-here", "2"};
    redisReply *rep;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(fy_redis_command(r, &rep, 3, block, NULL), FERRY_ESTORE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    ck_assert_int_ge(ms, 150);
    ck_assert_int_lt(ms, 1500);
    ck_assert_int_eq(ping(r), 0);
    fy_redis_free(r);
}
END_TEST

START_TEST(a_script_runs_again_after_redis_forgets_it)
{
    fy_redis *r = pool(shared_redis.addr, NULL, 0);
    int add = fy_redis_script(r, "return tonumber(ARGV[1]) + tonumber(ARGV[2])");
    ck_assert_int_ge(add, 0);
    const char *argv[] = {"40", "2"}, *flush[] = {"SCRIPT", "FLUSH"};
    for (int i = 0; i < 3; i++) {
        redisReply *rep;
        ck_assert_int_eq(fy_redis_eval(r, add, &rep, 0, 2, argv, NULL), 0);
        ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
        ck_assert_int_eq(rep->integer, 42);
        freeReplyObject(rep);
        freeReplyObject(test_redis_cmd(r, 2, flush)); /* NOSCRIPT next time: EVAL */
    }
    fy_redis_free(r);
}
END_TEST

START_TEST(an_error_reply_keeps_the_connection)
{
    fy_redis *r = pool(shared_redis.addr, NULL, 0);
    const char *bad[] = {"NOSUCHCOMMAND"};
    redisReply *rep;
    log_capture(1);
    ck_assert_int_eq(fy_redis_command(r, &rep, 1, bad, NULL), FERRY_ESTORE);
    ck_assert_ptr_null(rep);
    ck_assert_str_eq(log_captured(), "");
    fy_redis_log_flush(r); /* commands only queue their lines */
    ck_assert_ptr_nonnull(strstr(log_captured(), "error reply"));
    log_capture(0);
    ck_assert_int_eq(ping(r), 0);
    fy_redis_free(r);
}
END_TEST

Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, NULL, own_teardown);
    tcase_add_test(tc, a_password_is_sent_and_never_logged);
    tcase_add_test(tc, a_database_is_selected_on_every_connection);
    tcase_add_test(tc, a_unix_socket_is_an_address);
    tcase_add_test(tc, a_malformed_address_is_refused);
    tcase_add_test(tc, the_pool_recovers_by_itself_when_redis_returns);
    tcase_add_test(tc, a_command_that_times_out_fails_and_the_next_reconnects);
    tcase_add_test(tc, a_script_runs_again_after_redis_forgets_it);
    tcase_add_test(tc, an_error_reply_keeps_the_connection);
    suite_add_tcase(s, tc);
    return s;
}
