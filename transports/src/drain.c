/* Draining a node before it stops: refuse new connections, tell the attached clients to go,
 * spread over a period with jitter, and wait for them to leave (ferry_civetweb.h,
 * ferry_mount_drain). The caller's thread does it all; the timer thread is not involved, so
 * the spread is not rounded to its tick. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mount.h"

/* How often the wait for departures looks again, and the longest single sleep. */
#define DRAIN_STEP_MS 20
#define DRAIN_LOOK_MS 50

void ferry_drain_options_init(ferry_drain_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->notice_ms = 0;
    o->spread_ms = 10000;
    o->deadline_ms = 30000;
}

bool fy_client_room(fy_client **list, size_t *n, size_t *cap)
{
    if (*n < *cap)
        return true;
    size_t want = *cap ? 2 * *cap : 64;
    fy_client *p = realloc(*list, want * sizeof *p);
    if (!p)
        return false;
    *list = p;
    *cap = want;
    return true;
}

/* splitmix64: the order and the jitter need to be unpredictable to nobody, only spread. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform value in [0, n), n > 0. */
static uint64_t below(uint64_t *state, uint64_t n)
{
    return next_random(state) % n;
}

/* Sleeps until `until` on the hub's clock, in steps of at most DRAIN_STEP_MS. */
static void sleep_until(ferry_mount *m, uint64_t until)
{
    for (;;) {
        uint64_t now = ferry_hub_now(m->hub);
        if (now >= until)
            return;
        uint64_t ms = until - now < DRAIN_STEP_MS ? until - now : DRAIN_STEP_MS;
        struct timespec ts = {0, (long)ms * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void let_go(fy_client c)
{
    if (c.ws)
        fy_ws_let_go(c.ws);
    else
        fy_lp_let_go(c.lp);
}

/* Every client attached now (WebSockets, long-poll sessions not yet done), with a
 * reference each; NULL with *n 0 when there are none. Out of memory, those it could list. */
static fy_client *collect(ferry_mount *m, size_t *n)
{
    fy_client *list = NULL;
    size_t cap = 0;
    *n = 0;
    if (fy_ws_collect(m, &list, n, &cap))
        fy_lp_collect(m, &list, n, &cap);
    return list;
}

/* Tells every attached client to go, now. */
static void let_all_go(ferry_mount *m)
{
    size_t n;
    fy_client *list = collect(m, &n);
    for (size_t i = 0; i < n; i++)
        let_go(list[i]);
    free(list);
}

/* The clients attached when the notice ends, in a random order; client k of n goes at a
 * random moment of the k-th n-th of the spread. */
static void spread_departures(ferry_mount *m, uint64_t start, uint32_t spread_ms, uint64_t *rnd)
{
    size_t n;
    fy_client *list = collect(m, &n);
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)below(rnd, i);
        fy_client t = list[i - 1];
        list[i - 1] = list[j];
        list[j] = t;
    }
    for (size_t k = 0; k < n; k++) {
        uint64_t slot = (uint64_t)spread_ms * 1000; /* microseconds of the whole spread */
        uint64_t at_us = slot ? (slot * k + below(rnd, slot)) / n : 0;
        sleep_until(m, start + at_us / 1000);
        let_go(list[k]);
    }
    free(list);
}

static bool everyone_left(ferry_mount *m)
{
    return fy_ws_open(m) == 0 && fy_lp_live(m) == 0;
}

int ferry_mount_drain(ferry_mount *m, const ferry_drain_options *opt)
{
    if (!m) {
        ferry_log(FERRY_LOG_ERROR, "ferry_mount_drain: the mount is NULL");
        return FERRY_EINVAL;
    }
    ferry_drain_options o;
    ferry_drain_options_init(&o);
    if (opt && ferry_sized_copy(&o, sizeof o, opt, "ferry_mount_drain", "ferry_drain_options"))
        return FERRY_EINVAL;
    if ((uint64_t)o.deadline_ms < (uint64_t)o.notice_ms + o.spread_ms) {
        ferry_log(FERRY_LOG_ERROR,
                  "ferry_mount_drain: deadline_ms %u is below notice_ms %u + spread_ms %u",
                  o.deadline_ms, o.notice_ms, o.spread_ms);
        return FERRY_EINVAL;
    }
    uint64_t start = ferry_hub_now(m->hub);
    uint64_t deadline = start + o.deadline_ms;
    /* From here new connections are refused and health says draining. Only the first call
     * tells anyone to go; a later one waits with it. */
    if (!atomic_exchange(&m->drain_started, true)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t rnd = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)m ^
                       (uint64_t)getpid();
        sleep_until(m, start + o.notice_ms);
        spread_departures(m, start + o.notice_ms, o.spread_ms, &rnd);
        atomic_store(&m->drain_spread, true);
    }
    for (;;) {
        /* Stragglers, once the spread is over: a connection that was being accepted as the
         * drain began, or a long-poll session whose handshake was under way, go at once. */
        if (atomic_load(&m->drain_spread))
            let_all_go(m);
        if (everyone_left(m))
            return FERRY_OK;
        if (ferry_hub_now(m->hub) >= deadline)
            return FERRY_ETIMEDOUT;
        uint64_t now = ferry_hub_now(m->hub);
        sleep_until(m, now + DRAIN_LOOK_MS < deadline ? now + DRAIN_LOOK_MS : deadline);
    }
}
