/* The cluster suite: the Redis connection, the Redis store, and the store contract suite
 * (tests/core/test_store.c) over Redis, against real redis-servers the tests start. */
#ifndef TEST_CLUSTER_H
#define TEST_CLUSTER_H

#include <check.h>

#include "redis.h"
#include "redis_server.h"
#include "store_redis.h"

/* The server every test may use; started by main, killed when the run ends. */
extern rsrv shared_redis;

/* A Redis store on `addr` (NULL: the shared server) under a key prefix of its own. */
fy_store *test_redis_store(const char *addr, unsigned lease_ms);
/* Its prefix: the prefix of the last store test_redis_store made. */
const char *test_redis_prefix(void);

/* A pool on the shared server for looking at keys; freed by the caller. */
fy_redis *test_redis_pool(const char *addr);

/* One command with printf-free arguments, its reply (asserted not an error). */
redisReply *test_redis_cmd(fy_redis *r, int argc, const char **argv);

/* Captures log lines (ferry_set_log) into one buffer while on. */
void log_capture(int on);
const char *log_captured(void);

Suite *redis_suite(void);
Suite *store_redis_suite(void);
Suite *cluster_suite(void);

#endif
