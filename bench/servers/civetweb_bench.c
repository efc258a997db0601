/* The floor ferry builds on: civetweb alone, a WebSocket endpoint at /ws, and each payload
 * written to every connection with mg_websocket_write from the publisher thread. No
 * sessions, no acknowledgements, no replay; a connection that drops loses what was sent.
 *
 *   civetweb_bench [max_connections]   prints "port N" once listening on 127.0.0.1 (PORT, 0)
 */
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "bench_ctl.h"


/* Open connections; writers and the close handler hold `lock`, so a connection is never
 * written after civetweb has started to reuse its slot. */
static struct {
    pthread_mutex_t lock;
    struct mg_connection **c;
    size_t n, cap;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_ready(struct mg_connection *c, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&reg.lock);
    if (reg.n == reg.cap) {
        size_t cap = reg.cap ? reg.cap * 2 : 1024;
        void *p = realloc(reg.c, cap * sizeof *reg.c);
        if (p) {
            reg.c = p;
            reg.cap = cap;
        }
    }
    if (reg.n < reg.cap)
        reg.c[reg.n++] = c;
    pthread_mutex_unlock(&reg.lock);
}

static void on_close(const struct mg_connection *c, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.n; i++)
        if (reg.c[i] == c) {
            reg.c[i] = reg.c[--reg.n];
            break;
        }
    pthread_mutex_unlock(&reg.lock);
}

static int on_data(struct mg_connection *c, int bits, char *data, size_t len, void *ud)
{
    (void)c, (void)data, (void)len, (void)ud;
    return (bits & 0x0f) != MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE;
}

static void publish(const char *payload, size_t len, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.n; i++)
        mg_websocket_write(reg.c[i], MG_WEBSOCKET_OPCODE_TEXT, payload, len);
    pthread_mutex_unlock(&reg.lock);
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
    char listen[64], threads[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%s", getenv("PORT") ? getenv("PORT") : "0");
    snprintf(threads, sizeof threads, "%zu", max + max / 8 + 16); /* as ferry_server_start */
    const char *opts[] = {"listening_ports", listen, "num_threads", threads, "tcp_nodelay", "1",
                          "enable_keep_alive", "yes", "websocket_timeout_ms", "1000",
                          "request_timeout_ms", "10000", NULL};
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&cbs, NULL, opts);
    if (!ctx) {
        fprintf(stderr, "civetweb_bench: cannot listen on %s\n", listen);
        return 1;
    }
    mg_set_websocket_handler(ctx, "/ws", NULL, on_ready, on_data, on_close, NULL);
    bench_ctl_mount(ctx, publish, NULL);
    struct mg_server_port ports[1];
    printf("port %d\n", mg_get_server_ports(ctx, 1, ports) > 0 ? ports[0].port : -1);
    fflush(stdout);
    int quit;
    sigwait(&sigs, &quit);
    bench_ctl_stop();
    mg_stop(ctx);
    free(reg.c);
    return 0;
}
