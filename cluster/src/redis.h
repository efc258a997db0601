/* A Redis connection for the cluster layer: a small pool of hiredis connections, each under
 * its own mutex, that reconnects by itself.
 *
 * Address. "host:port" (IPv4 or a name; port 6379 when left out) or an absolute path to a
 * unix socket ("/run/redis/redis.sock"). Optional password (AUTH) and database (SELECT),
 * sent on every connect. The password is never logged, nor any command's arguments.
 *
 * Measuring. With a meter (fy_redis_cfg.meter), each command's round trip (from sending it
 * to its last reply, once connected: not the wait for a pooled connection, nor a connect)
 * goes into the meter's histogram, and each command that returns FERRY_ESTORE counts one
 * error.
 *
 * Failure. A command whose connection fails (refused, reset, timed out, a protocol error)
 * returns FERRY_ESTORE, and that connection is dropped; the next command on it connects
 * again (once, bounded by connect_timeout_ms) before it runs. A command never retries by
 * itself: after a timeout nobody knows whether Redis applied it, so the caller decides. An
 * error reply from Redis (WRONGTYPE, LOADING, READONLY, ...) is FERRY_ESTORE too, but the
 * connection stays. State changes (lost, back) are logged once each, not per command.
 *
 * Logging. Commands run with a session's lock held (a store's load and save), and a log
 * function may call into ferry, so commands never log: they queue their lines (at most
 * FY_REDIS_NOTES; beyond that one line says how many were dropped), and fy_redis_log_flush
 * writes them from a caller that holds no ferry lock.
 *
 * Threads. Any thread may call any function except fy_redis_free, concurrently: a command
 * takes one connection of the pool (round robin) and holds its mutex for the round trip, so
 * at most `pool` commands are in flight and the rest wait. The mutexes are leaves: nothing
 * else is locked while one is held (they come after every core lock, locks.h).
 *
 * Signals. hiredis writes with write(2); a write to a connection Redis closed raises
 * SIGPIPE. The calling thread blocks SIGPIPE for the duration of a command and consumes one
 * it caused, so the process's disposition is never changed and never matters.
 */
#ifndef FY_REDIS_H
#define FY_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "cluster_seam.h" /* fy_redis_meter */
#include "ferry.h"

typedef struct fy_redis fy_redis;

typedef struct fy_redis_cfg {
    const char *addr;            /* "host:port" or "/path/to/socket"; NULL: 127.0.0.1:6379 */
    const char *password;        /* NULL or "": no AUTH */
    int db;                      /* SELECT this database when not 0 */
    unsigned connect_timeout_ms; /* 0: 1000 */
    unsigned command_timeout_ms; /* 0: 1000 */
    unsigned pool;               /* connections; 0: 4 */
    /* Where every command's round trip and failure is counted (several pools may share
     * one); NULL: nowhere. Must outlive the pool. */
    fy_redis_meter *meter;
} fy_redis_cfg;

/* A pool for `cfg` (copied). It does not connect yet: the first command does, so a node
 * starts while Redis is down. 0, FERRY_EINVAL (a malformed address, logged) or
 * FERRY_ENOMEM. */
int fy_redis_new(fy_redis **out, const fy_redis_cfg *cfg);

/* Closes every connection. No command may be running. NULL is a no-op. */
void fy_redis_free(fy_redis *r);

/* Runs one command (argv with lengths, binary safe). 0 with *reply (the caller frees it
 * with freeReplyObject; it is never an error reply), or FERRY_ESTORE (*reply NULL), or
 * FERRY_ENOMEM. */
int fy_redis_command(fy_redis *r, redisReply **reply, int argc, const char **argv,
                     const size_t *argvlen);

/* fy_redis_command for a command that waits on the server for something to happen (XREAD
 * BLOCK): its time is not a round trip, so it is not counted in the meter's rtt; a failure
 * is counted as an error all the same. */
int fy_redis_command_blocking(fy_redis *r, redisReply **reply, int argc, const char **argv,
                              const size_t *argvlen);

/* Lua scripts run by EVALSHA, so that a round trip carries the script's SHA1, not its
 * text. A pool registers up to FY_REDIS_SCRIPTS of them; the first use of one loads it
 * (SCRIPT LOAD, which also gives its SHA1), and a NOSCRIPT answer (Redis restarted or
 * flushed its scripts) runs it by EVAL, which loads it again. */
#define FY_REDIS_SCRIPTS 8
#define FY_REDIS_EVAL_ARGS 400

/* Registers `src` (kept by pointer: a string literal) and returns its number, or -1 when
 * the table is full. Call before the pool is shared between threads. */
int fy_redis_script(fy_redis *r, const char *src);

/* Runs script number `script` with `nkeys` keys then the other arguments, all in argv
 * (argc of them, at most FY_REDIS_EVAL_ARGS). Answers as fy_redis_command. */
int fy_redis_eval(fy_redis *r, int script, redisReply **reply, int nkeys, int argc,
                  const char **argv, const size_t *argvlen);

/* Sends `n` commands of `argc` arguments each (argv and argvlen hold n * argc entries, the
 * commands one after another) in one round trip on one connection, and discards their
 * replies. 0 if every one ran, else FERRY_ESTORE (some may have run). */
int fy_redis_pipeline(fy_redis *r, size_t n, int argc, const char **argv,
                      const size_t *argvlen);

/* Queues a log line (redis.h, Logging). Any thread, any lock. */
#define FY_REDIS_NOTES 8
void fy_redis_note(fy_redis *r, ferry_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the queued lines to the ferry log. Call with no ferry lock held. */
void fy_redis_log_flush(fy_redis *r);

#endif
