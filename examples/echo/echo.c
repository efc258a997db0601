/* The smallest complete ferry service: every client message comes back to its sender, and
 * every session gets a "tick" once a second from the server.
 *
 *   build/examples/echo [document_root]     PORT=8080 by default; PORT=0 picks a free one
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry_civetweb.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    ferry_session_subscribe(s, "ticks");
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text)
        ferry_session_send(s, text, strlen(text));
    free(text);
}

int main(int argc, char **argv)
{
    const char *port = getenv("PORT") ? getenv("PORT") : "8080";
    char *end;
    long p = strtol(port, &end, 10);
    if (argc > 2 || port[0] < '0' || port[0] > '9' || *end || p > 65535) {
        if (argc > 2)
            fprintf(stderr, "usage: echo [document_root]\n");
        else
            fprintf(stderr, "echo: PORT \"%.40s\" is not a port number (0 to 65535)\n", port);
        return 2;
    }
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%ld", p);

    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = listen;
    so.document_root = argc > 1 ? argv[1] : NULL; /* ferry refuses a missing directory */
    struct mg_context *ctx;
    int rc = ferry_server_start(&ctx, &so);
    if (rc) {
        fprintf(stderr, "echo: not started: %s (ferry says why above)\n", ferry_strerror(rc));
        return 1;
    }

    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open, .on_message = on_message};
    ferry_mount *m;
    rc = ferry_mount_new(&m, ctx, NULL, &cb, NULL);
    if (rc) {
        fprintf(stderr, "echo: %s\n", ferry_strerror(rc));
        ferry_server_stop(ctx);
        return 1;
    }
    printf("echo: listening on http://127.0.0.1:%d/ferry\n", ferry_server_port(ctx));
    fflush(stdout);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (unsigned n = 1; !stop; n++) {
        char tick[64];
        int len = snprintf(tick, sizeof tick, "{\"tick\":%u,\"time\":%ld}", n, (long)time(NULL));
        ferry_hub_publish(ferry_mount_hub(m), "ticks", tick, (size_t)len, NULL);
        sleep(1);
    }
    ferry_mount_free(m);
    ferry_server_stop(ctx);
    return 0;
}
