/* ferry under load: every session is subscribed to "bench"; the publisher sends each
 * payload to it as a JSON string. Both transports (WebSocket and long-polling) are mounted.
 *
 *   ferry_bench [max_connections]      prints "port N" once listening on 127.0.0.1 (PORT, 0)
 *                                      WRITERS=n sets the mount's writer_threads
 *                                      HANDSHAKE_MS=n its handshake_timeout_ms
 *                                      DRAIN_SPREAD_MS=n: SIGTERM drains it first
 *                                      (ferry_mount_drain over n ms, deadline n + 30 s)
 *
 * With REDIS=host:port in the environment the hub is a cluster member (ferry_cluster.h):
 * NODE names it (required then), PREFIX is the key prefix ("ferry:"). Without REDIS it is
 * the single-node library, as before.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "bench_ctl.h"
#include "ferry_civetweb.h"
#include "ferry_cluster.h"

static atomic_ulong publish_failed; /* publishes that returned an error: their n never arrives */

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    ferry_session_subscribe(s, "bench");
}

static void publish(const char *payload, size_t len, void *ud)
{
    char json[4200];
    json[0] = '"';
    memcpy(json + 1, payload, len);
    json[len + 1] = '"';
    int rc = ferry_hub_publish(ferry_mount_hub(ud), "bench", json, len + 2, NULL);
    if (rc && atomic_fetch_add(&publish_failed, 1) < 5)
        fprintf(stderr, "ferry_bench: publish: %s\n", ferry_strerror(rc));
}

/* The cluster member REDIS and NODE ask for, or NULL (and *ok false on a bad setting). */
static ferry_cluster *cluster_from_env(bool *ok)
{
    *ok = true;
    if (!getenv("REDIS"))
        return NULL;
    ferry_cluster_options co;
    ferry_cluster_options_init(&co);
    co.redis = getenv("REDIS");
    co.node = getenv("NODE");
    if (getenv("PREFIX"))
        co.prefix = getenv("PREFIX");
    ferry_cluster *c = NULL;
    int rc = ferry_cluster_new(&c, &co);
    if (rc) {
        fprintf(stderr, "ferry_bench: cluster: %s\n", ferry_strerror(rc));
        *ok = false;
    }
    return c;
}

int main(int argc, char **argv)
{
    /* Blocked in every thread (civetweb's and ferry's inherit the mask) and taken by
     * sigwait: delivered to one of thousands of other threads, a handler would not wake
     * the main thread. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    size_t max = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%s", getenv("PORT") ? getenv("PORT") : "0");
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = listen;
    so.max_connections = max + 64;
    /* With every client on a WebSocket served by event loops, civetweb's workers only do
     * handshakes: SERVER_WORKERS of them are enough. */
    if (getenv("SERVER_WORKERS"))
        so.worker_threads = strtoul(getenv("SERVER_WORKERS"), NULL, 10);
    struct mg_context *ctx;
    if (ferry_server_start(&ctx, &so) != FERRY_OK) {
        fprintf(stderr, "ferry_bench: cannot listen on %s\n", listen);
        return 1;
    }
    bool ok;
    ferry_cluster *cluster = cluster_from_env(&ok);
    if (!ok) {
        ferry_server_stop(ctx);
        return 1;
    }
    ferry_options core;
    ferry_options_init(&core);
    core.resume_rate = 0;          /* every client comes from 127.0.0.1 */
    core.cluster = cluster;
    ferry_mount_options mo;
    ferry_mount_options_init(&mo);
    mo.max_connections = max + 32;
    mo.core = &core;
    mo.metrics_path = "/metrics";
    if (getenv("WRITERS")) /* for experiments: the mount's writer threads */
        mo.writer_threads = (unsigned)atoi(getenv("WRITERS"));
    if (getenv("EVENT_THREADS")) /* 0: every WebSocket on a civetweb worker */
        mo.event_threads = (unsigned)atoi(getenv("EVENT_THREADS"));
    if (getenv("HANDSHAKE_MS")) /* for reproductions: how long a WebSocket may take to resume */
        mo.handshake_timeout_ms = (uint32_t)atoi(getenv("HANDSHAKE_MS"));
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open};
    ferry_mount *m;
    int rc = ferry_mount_new(&m, ctx, &mo, &cb, NULL);
    if (rc) {
        fprintf(stderr, "ferry_bench: %s\n", ferry_strerror(rc));
        ferry_server_stop(ctx);
        ferry_cluster_free(cluster);
        return 1;
    }
    bench_ctl_mount(ctx, publish, m);
    for (int i = 0; cluster && ferry_hub_health(ferry_mount_hub(m)) != FERRY_OK; i++) {
        if (i == 100) { /* 10 s */
            fprintf(stderr, "ferry_bench: no Redis at %s\n", getenv("REDIS"));
            ferry_mount_free(m);
            ferry_server_stop(ctx);
            ferry_cluster_free(cluster);
            return 1;
        }
        usleep(100000);
    }
    printf("port %d\n", ferry_server_port(ctx));
    fflush(stdout);
    int quit;
    sigwait(&sigs, &quit);
    if (quit == SIGTERM && getenv("DRAIN_SPREAD_MS")) {
        ferry_drain_options d;
        ferry_drain_options_init(&d);
        d.spread_ms = (uint32_t)atoi(getenv("DRAIN_SPREAD_MS"));
        d.deadline_ms = d.spread_ms + 30000;
        int drc = ferry_mount_drain(m, &d);
        if (drc != FERRY_OK)
            fprintf(stderr, "ferry_bench: drain: %s\n", ferry_strerror(drc));
    }
    bench_ctl_stop();
    ferry_mount_free(m);
    ferry_server_stop(ctx);
    ferry_cluster_free(cluster);
    if (atomic_load(&publish_failed))
        fprintf(stderr, "ferry_bench: %lu publishes failed\n", atomic_load(&publish_failed));
    return 0;
}
