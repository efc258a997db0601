/* What the applications of the test servers share (tests/chaos/server.c,
 * tests/cluster-e2e/node.c): clients named by their token, a control endpoint's small
 * helpers, the environment's timers, and running until told to stop or until whoever
 * started the server goes away (its stdin closes). Header-only: each server is one file. */
#ifndef TEST_APP_H
#define TEST_APP_H

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_civetweb.h"

/* on_auth: the token is the client's id, and the session's identity; none is refused. */
static inline int test_app_auth(const ferry_auth *a, char identity[FERRY_IDENTITY_MAX],
                                const char **reason, void *ud)
{
    (void)ud;
    if (!a->token || !a->token[0]) {
        *reason = "a client id is required";
        return 1;
    }
    snprintf(identity, FERRY_IDENTITY_MAX, "%s", a->token);
    return 0;
}

/* A number from the query string, or `def`. */
static inline long test_app_qnum(const struct mg_request_info *ri, const char *name, long def)
{
    char v[32];
    const char *q = ri->query_string ? ri->query_string : "";
    return mg_get_var(q, strlen(q), name, v, sizeof v) > 0 ? atol(v) : def;
}

/* Answers 200 with a JSON body, and closes. Returns 200 for civetweb. */
static inline int test_app_reply(struct mg_connection *conn, const char *body)
{
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n%s", strlen(body), body);
    return 200;
}

/* The same with a JSON value, whose reference it takes (NULL: 500). */
static inline int test_app_reply_json(struct mg_connection *conn, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return 500;
    int r = test_app_reply(conn, text);
    free(text);
    return r;
}

/* A number of milliseconds from the environment, or `def`. */
static inline long test_app_env(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? atol(v) : def;
}

/* Starts civetweb on 127.0.0.1 and a free port, for up to 400 connections. */
static inline int test_app_server(struct mg_context **ctx)
{
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = "127.0.0.1:0";
    so.max_connections = 400;
    return ferry_server_start(ctx, &so);
}

/* Fills the hub's and the mount's options as the test servers want them: every client
 * resumes from 127.0.0.1 (no rate limit), no limit per identity, 400 connections, any
 * Origin (they are reached through proxies), and the timers from the environment, in ms:
 * <prefix>HB_MS, TIMEOUT_MS, WINDOW_MS, STALL_MS, TOMBSTONE_MS (ferry's heartbeat, its
 * timeout, the resume window, the stall timeout, how long an ended session is remembered),
 * POLL_MS (the poll hold) and TICK_MS (the mount's tick, 100). */
static inline void test_app_options(ferry_options *core, ferry_mount_options *mo,
                                    const char *prefix)
{
    char name[64];
#define TEST_APP_ENV(field, var)                                                    \
    (snprintf(name, sizeof name, "%s%s", prefix, var),                             \
     field = (uint32_t)test_app_env(name, (long)(field)))
    ferry_options_init(core);
    ferry_mount_options_init(mo);
    mo->core = core;
    mo->max_connections = 400;
    mo->allowed_origins = "*";
    mo->tick_ms = 100;
    core->resume_burst = 100000;
    core->resume_rate = 100000;
    core->max_sessions_per_identity = 0;
    TEST_APP_ENV(core->heartbeat_ms, "HB_MS");
    TEST_APP_ENV(core->heartbeat_timeout_ms, "TIMEOUT_MS");
    TEST_APP_ENV(core->resume_window_ms, "WINDOW_MS");
    TEST_APP_ENV(core->stall_timeout_ms, "STALL_MS");
    TEST_APP_ENV(core->tombstone_ms, "TOMBSTONE_MS");
    TEST_APP_ENV(mo->poll_timeout_ms, "POLL_MS");
    TEST_APP_ENV(mo->tick_ms, "TICK_MS");
#undef TEST_APP_ENV
}

/* Returns once *stopping is set (a control endpoint) or stdin closes (whoever started the
 * server is gone, however it ended); sets *stopping either way. */
static inline void test_app_wait(atomic_int *stopping)
{
    struct pollfd pfd = {.fd = 0, .events = POLLIN};
    while (!atomic_load(stopping)) {
        if (poll(&pfd, 1, 100) > 0) {
            char buf[64];
            if (read(0, buf, sizeof buf) <= 0)
                atomic_store(stopping, 1);
        }
    }
}

#endif
