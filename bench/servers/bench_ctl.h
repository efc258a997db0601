/* The control side every benchmarked C server shares: GET /bench/start?rate=R&size=B starts a
 * publisher thread, GET /bench/stop stops it and answers {"first":F,"last":L}. Message n is
 * due at start + (n - first) / R; it carries that scheduled time, not the time it was
 * actually sent, so a server that falls behind shows it as latency. */
#ifndef BENCH_CTL_H
#define BENCH_CTL_H

#include <civetweb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*bench_publish_fn)(const char *payload, size_t len, void *ud);

static struct {
    pthread_mutex_t lock;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    double rate;
    int size;
    uint64_t first, last;
    bench_publish_fn publish;
    void *ud;
} bench = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *bench_main(void *arg)
{
    (void)arg;
    char payload[4096];
    uint64_t start = bench_now_ns(), sent = 0;
    double gap_ns = 1e9 / bench.rate;
    while (!atomic_load(&bench.stop)) {
        uint64_t due_at = start + (uint64_t)((double)sent * gap_ns);
        uint64_t now = bench_now_ns();
        if (now < due_at) {
            uint64_t wait = due_at - now;
            if (wait > 5000000)
                wait = 5000000; /* notice a stop within 5 ms */
            struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
            nanosleep(&ts, NULL);
            continue;
        }
        uint64_t n = bench.first + sent;
        int len = snprintf(payload, sizeof payload, "%llu %llu ", (unsigned long long)n,
                           (unsigned long long)(due_at / 1000u));
        memset(payload + len, 'x', (size_t)(bench.size - len));
        payload[bench.size] = '\0';
        bench.publish(payload, (size_t)bench.size, bench.ud);
        pthread_mutex_lock(&bench.lock);
        bench.last = n;
        pthread_mutex_unlock(&bench.lock);
        sent++;
    }
    return NULL;
}

static void bench_stop_locked(void)
{
    if (!bench.running)
        return;
    atomic_store(&bench.stop, true);
    pthread_mutex_unlock(&bench.lock);
    pthread_join(bench.thread, NULL);
    pthread_mutex_lock(&bench.lock);
    bench.running = false;
}

static int bench_handler(struct mg_connection *c, void *ud)
{
    (void)ud;
    const struct mg_request_info *ri = mg_get_request_info(c);
    char body[128], v[32];
    int status = 200;
    pthread_mutex_lock(&bench.lock);
    if (!strcmp(ri->local_uri, "/bench/start")) {
        const char *q = ri->query_string ? ri->query_string : "";
        double rate = mg_get_var(q, strlen(q), "rate", v, sizeof v) > 0 ? atof(v) : 0;
        int size = mg_get_var(q, strlen(q), "size", v, sizeof v) > 0 ? atoi(v) : 100;
        if (rate <= 0 || size < 40 || size > 4000) {
            status = 400;
            snprintf(body, sizeof body, "{\"error\":\"rate > 0, 40 <= size <= 4000\"}");
        } else {
            bench_stop_locked();
            bench.rate = rate;
            bench.size = size;
            bench.first = bench.last + 1;
            atomic_store(&bench.stop, false);
            bench.running = pthread_create(&bench.thread, NULL, bench_main, NULL) == 0;
            snprintf(body, sizeof body, "{\"first\":%llu}", (unsigned long long)bench.first);
        }
    } else if (!strcmp(ri->local_uri, "/bench/stop")) {
        bench_stop_locked();
        snprintf(body, sizeof body, "{\"first\":%llu,\"last\":%llu}",
                 (unsigned long long)bench.first, (unsigned long long)bench.last);
    } else {
        status = 404;
        snprintf(body, sizeof body, "{}");
    }
    pthread_mutex_unlock(&bench.lock);
    mg_printf(c,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
              "Connection: close\r\n\r\n%s",
              status, status == 200 ? "OK" : "Error", strlen(body), body);
    return status;
}

static void bench_ctl_mount(struct mg_context *ctx, bench_publish_fn fn, void *ud)
{
    bench.publish = fn;
    bench.ud = ud;
    mg_set_request_handler(ctx, "/bench/", bench_handler, NULL);
}

static void bench_ctl_stop(void)
{
    pthread_mutex_lock(&bench.lock);
    bench_stop_locked();
    pthread_mutex_unlock(&bench.lock);
}

#endif
