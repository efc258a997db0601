/* ferry_server_start and its companions: a civetweb context with the settings ferry needs,
 * and a reason in the log when it cannot start. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount.h"

void ferry_server_options_init(ferry_server_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->listen = "127.0.0.1:8080";
    o->max_connections = 1000;
    o->request_timeout_ms = 10000;
}

/* civetweb reports why it cannot start through log_message, on the thread in mg_start2;
 * start_log keeps the first report made there. Reports from other threads, and any after
 * the start, get civetweb's usual handling, as if there were no callback. */
#define REASON_MAX 256
static _Thread_local char *start_reason; /* REASON_MAX bytes */

static int start_log(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    if (!start_reason)
        return 0;
    if (!start_reason[0])
        snprintf(start_reason, REASON_MAX, "%s", message);
    return 1;
}

/* Logs why civetweb did not start. A bind failure, "cannot bind to <addr>: <errno>
 * (<text>)", becomes "cannot listen on <addr>: <text>"; other reports are given whole. */
static void say_why(const char *listen, const char *reason)
{
    static const char bind_fail[] = "cannot bind to ";
    size_t len = strlen(reason);
    if (strncmp(reason, bind_fail, sizeof bind_fail - 1) == 0 && reason[len - 1] == ')') {
        const char *addr = reason + sizeof bind_fail - 1;
        const char *colon = strstr(addr, ": ");
        const char *paren = colon ? strchr(colon, '(') : NULL;
        if (paren) {
            ferry_log(FERRY_LOG_ERROR, "ferry_server_start: cannot listen on %.*s: %.*s",
                      (int)(colon - addr), addr, (int)(reason + len - 1 - (paren + 1)), paren + 1);
            return;
        }
    }
    char q[200];
    ferry_log(FERRY_LOG_ERROR, "ferry_server_start: civetweb did not start (listen %s): %s",
              ferry_log_quote(q, sizeof q, listen, 150), reason);
}

/* civetweb serves nothing, and says nothing, from a document_root that is not a directory. */
static bool root_ok(const char *root)
{
    struct stat st;
    char q[300];
    if (stat(root, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            ferry_log(FERRY_LOG_ERROR, "ferry_server_start: document_root %s does not exist",
                      ferry_log_quote(q, sizeof q, root, 250));
        else
            ferry_log(FERRY_LOG_ERROR, "ferry_server_start: document_root %s: %s",
                      ferry_log_quote(q, sizeof q, root, 250), strerror(e));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        ferry_log(FERRY_LOG_ERROR, "ferry_server_start: document_root %s is not a directory",
                  ferry_log_quote(q, sizeof q, root, 250));
        return false;
    }
    return true;
}

int ferry_server_start(struct mg_context **out, const ferry_server_options *opt)
{
    if (!out) {
        ferry_log(FERRY_LOG_ERROR, "ferry_server_start: out is NULL");
        return FERRY_EINVAL;
    }
    ferry_server_options full;
    ferry_server_options_init(&full);
    if (opt && ferry_sized_copy(&full, sizeof full, opt, "ferry_server_start",
                                "ferry_server_options"))
        return FERRY_EINVAL;
    const ferry_server_options *o = &full;
    if (!o->listen || !o->listen[0]) {
        ferry_log(FERRY_LOG_ERROR,
                  "ferry_server_start: listen must be set, e.g. \"127.0.0.1:8080\"");
        return FERRY_EINVAL;
    }
    if (o->document_root && !root_ok(o->document_root))
        return FERRY_EINVAL;
    char threads[32], timeout[32], backlog[32];
    /* A worker per held poll or WebSocket on a worker, plus headroom for sends, handshakes,
     * files; or as many as the application asked for. */
    size_t workers = o->worker_threads ? o->worker_threads
                                       : o->max_connections + o->max_connections / 8 + 16;
    snprintf(threads, sizeof threads, "%zu", workers);
    /* When every client reconnects at once (a restart, a network blip) civetweb's one
     * accepting thread falls behind; with its default backlog of 200 the kernel drops the
     * SYNs beyond it and those clients wait a full second to retry. The kernel caps this at
     * net.core.somaxconn. */
    size_t bl = o->max_connections < 200 ? 200 : o->max_connections > 4096 ? 4096 : o->max_connections;
    snprintf(backlog, sizeof backlog, "%zu", bl);
    snprintf(timeout, sizeof timeout, "%u", (unsigned)o->request_timeout_ms);
    const char *opts[32];
    int i = 0;
    opts[i++] = "listening_ports";
    opts[i++] = o->listen;
    opts[i++] = "num_threads";
    opts[i++] = threads;
    opts[i++] = "listen_backlog";
    opts[i++] = backlog;
    opts[i++] = "tcp_nodelay";
    opts[i++] = "1";
    opts[i++] = "enable_keep_alive";
    opts[i++] = "yes";
    opts[i++] = "keep_alive_timeout_ms";
    opts[i++] = "5000";
    opts[i++] = "request_timeout_ms";
    opts[i++] = timeout;
    /* The WebSocket read loop's poll interval: how soon a server-side close takes effect
     * when the peer does not answer it. */
    opts[i++] = "websocket_timeout_ms";
    opts[i++] = "1000";
    opts[i++] = "access_control_allow_methods";
    opts[i++] = "";
    opts[i++] = "access_control_allow_origin";
    opts[i++] = "";
    if (o->document_root) {
        opts[i++] = "document_root";
        opts[i++] = o->document_root;
    }
    opts[i] = NULL;
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    cbs.log_message = start_log;
    mg_init_library(0);
    char reason[REASON_MAX] = "", text[256] = "";
    unsigned code = 0;
    struct mg_init_data init = {&cbs, NULL, opts};
    struct mg_error_data err = {&code, text, sizeof text};
    start_reason = reason;
    struct mg_context *ctx = mg_start2(&init, &err);
    start_reason = NULL;
    if (!ctx) {
        say_why(o->listen, reason[0] ? reason : text[0] ? text : "no reason given");
        return FERRY_ELISTEN;
    }
    *out = ctx;
    return FERRY_OK;
}

struct nudge {
    int port;
    atomic_bool done;
};

static void *nudge_main(void *arg)
{
    struct nudge *n = arg;
    for (int i = 0; i < 150 && !atomic_load(&n->done); i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n->port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0) {
            connect(fd, (struct sockaddr *)&a, sizeof a);
            close(fd);
        }
        usleep(20000);
    }
    return NULL;
}

void ferry_server_stop(struct mg_context *ctx)
{
    if (!ctx)
        return;
    struct nudge n = {ferry_server_port(ctx), false};
    pthread_t t;
    bool started = n.port > 0 && pthread_create(&t, NULL, nudge_main, &n) == 0;
    mg_stop(ctx);
    if (started) {
        atomic_store(&n.done, true);
        pthread_join(t, NULL);
    }
}

int ferry_server_port(struct mg_context *ctx)
{
    if (!ctx)
        return -1;
    struct mg_server_port ports[4];
    int n = mg_get_server_ports(ctx, 4, ports);
    return n > 0 ? ports[0].port : -1;
}
