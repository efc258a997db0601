#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "helpers.h"
#include "store_faulty.h"

Suite *store_suite(void);

rsrv shared_redis;
static atomic_uint stores;
static char last_prefix[64];

fy_store *test_redis_store(const char *addr, unsigned lease_ms)
{
    fy_store_redis_cfg cfg = {.redis = {.addr = addr ? addr : shared_redis.addr,
                                        .connect_timeout_ms = 300,
                                        .command_timeout_ms = 1000,
                                        .pool = 2},
                              .prefix = last_prefix,
                              .lease_ms = lease_ms};
    snprintf(last_prefix, sizeof last_prefix, "t%d-%u:", (int)getpid(),
             atomic_fetch_add(&stores, 1));
    fy_store *st;
    ck_assert_int_eq(fy_store_redis_new(&st, &cfg), 0);
    return st;
}

const char *test_redis_prefix(void)
{
    return last_prefix;
}

fy_redis *test_redis_pool(const char *addr)
{
    fy_redis_cfg cfg = {.addr = addr ? addr : shared_redis.addr, .pool = 1};
    fy_redis *r;
    ck_assert_int_eq(fy_redis_new(&r, &cfg), 0);
    return r;
}

redisReply *test_redis_cmd(fy_redis *r, int argc, const char **argv)
{
    redisReply *rep;
    ck_assert_int_eq(fy_redis_command(r, &rep, argc, argv, NULL), 0);
    return rep;
}

static char captured[16384];
static size_t ncaptured;

static void capture(ferry_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    size_t n = strlen(msg);
    if (ncaptured + n + 2 < sizeof captured) {
        memcpy(captured + ncaptured, msg, n);
        ncaptured += n;
        captured[ncaptured++] = '\n';
        captured[ncaptured] = '\0';
    }
}

void log_capture(int on)
{
    ncaptured = 0;
    captured[0] = '\0';
    ferry_set_log(on ? capture : NULL, NULL);
}

const char *log_captured(void)
{
    return captured;
}

/* The contract suite's stores: the Redis store behind the die. */
static fy_store *redis_inner(void)
{
    return test_redis_store(NULL, 0);
}

int main(void)
{
    if (rsrv_start(&shared_redis)) {
        fprintf(stderr, "cluster tests: cannot start redis-server (make deps installs it)\n");
        return EXIT_FAILURE;
    }
    faulty_inner_new = redis_inner;
    SRunner *sr = srunner_create(redis_suite());
    srunner_add_suite(sr, store_redis_suite());
    srunner_add_suite(sr, store_suite());
    srunner_add_suite(sr, cluster_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rsrv_stop(&shared_redis);
    rsrv_cleanup(&shared_redis);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
