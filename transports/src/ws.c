/* The WebSocket transport. civetweb's worker thread reads each connection; a small pool of
 * writer threads writes. A connection has something to write when ferry wakes it; a writer
 * then pulls batches and writes each as one pre-framed WebSocket message in one mg_write.
 * Core's ack window keeps a client that stops reading from ever filling the socket, so a
 * write does not block; core's stall timeout then drops it, resumable. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "mount.h"

#define WS_HEADROOM 10 /* the largest server frame header: 2 + 8 length bytes */
/* After our close frame, how long the peer has to answer it before civetweb is told to end
 * the connection; until then what the peer sends is read and dropped. */
#define WS_LINGER_MS 1000

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* The close codes the transport chooses itself (RFC 6455); those for ferry's end of a link
 * come from fy_refusal_of (docs/PROTOCOL.md). */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_INTERNAL = 1011,
};

struct ws_conn {
    ferry_mount *m;
    atomic_int refs;
    pthread_mutex_t lock;         /* conn, closing, out */
    struct mg_connection *conn;   /* NULL once civetweb has closed it */
    ferry_link *link;
    atomic_bool closing;          /* our close frame is out (read by the reaper unlocked) */
    uint64_t closing_at;          /* when, ms */
    bool forced;                  /* its socket was shut down (force_close_locked) */
    ferry_buf out;
    bool queued;                  /* in the writers' queue (m->wlock) */
    bool flushing;                /* a writer took it from the queue (m->wlock) */
    bool let_go;                  /* civetweb was told to end it (mg_close_connection) */
    bool gone;                    /* civetweb closed it: never queue it again (m->wlock) */
    bool settled;                 /* handshake seen: out of the deadline check (m->wlock) */
    bool ready;                   /* civetweb's upgrade reply went out (m->wlock) */
    const struct mg_connection *upgrading; /* from connect until ready; immutable */
    ws_conn *next_ready;          /* (m->wlock) */
    ws_conn *prev, *next;         /* every open WebSocket (m->wlock) */
    ferry_buf msg;                /* fragments being reassembled (reader thread only) */
    bool in_msg;
    bool discarding;              /* in_msg, but over the size limit: drop the rest */
    ferry_bucket ctl;             /* control-frame budget (reader thread only) */
    uint64_t opened_ms;           /* for the handshake deadline (hub clock); immutable */
};

/* Spends one control frame from the connection's budget; false when it is exhausted. */
static bool control_allowed(ws_conn *ws)
{
    const ferry_mount_options *o = &ws->m->opt;
    return ferry_bucket_take(&ws->ctl, o->control_burst, o->control_rate,
                             ferry_hub_now(ws->m->hub));
}

static void ws_unref(ws_conn *ws)
{
    if (!fy_unref(&ws->refs))
        return;
    ferry_link_free(ws->link);
    ferry_buf_release(&ws->out);
    ferry_buf_release(&ws->msg);
    pthread_mutex_destroy(&ws->lock);
    free(ws);
}

static void ws_wake(void *ud)
{
    ws_conn *ws = ud;
    ferry_mount *m = ws->m;
    pthread_mutex_lock(&m->wlock);
    /* ferry may still wake a closed connection until its link is freed, at the last
     * reference; queueing it then would bring it back from zero references. */
    if (!ws->queued && !ws->gone) {
        ws->queued = true;
        fy_ref(&ws->refs);
        ws->next_ready = NULL;
        if (m->ready_tail)
            m->ready_tail->next_ready = ws;
        else
            m->ready_head = ws;
        m->ready_tail = ws;
        pthread_cond_signal(&m->wcond);
    }
    pthread_mutex_unlock(&m->wlock);
}

static const ferry_link_ops ws_ops = {ws_wake, ws_wake};

/* Writes one whole frame; false if it did not all go out (then the connection is useless:
 * a short write leaves half a frame on the wire). ws->lock held. */
static bool write_frame(ws_conn *ws, const char *p, size_t len)
{
    mg_lock_connection(ws->conn);
    int w = mg_write(ws->conn, p, len);
    mg_unlock_connection(ws->conn);
    return w == (int)len;
}

/* Puts a frame header for `len` payload bytes just before `payload`; returns its start. */
static char *frame_header(char *payload, size_t len, int opcode)
{
    unsigned char *h;
    if (len < 126) {
        h = (unsigned char *)payload - 2;
        h[1] = (unsigned char)len;
    } else if (len <= 0xFFFF) {
        h = (unsigned char *)payload - 4;
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
    } else {
        h = (unsigned char *)payload - 10;
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    h[0] = (unsigned char)(0x80 | opcode);
    return (char *)h;
}

/* Sends a close frame and tells civetweb to end the connection. ws->lock held. */
static void close_locked(ws_conn *ws, int code, const char *why)
{
    if (!ws->conn || ws->closing)
        return;
    char buf[WS_HEADROOM + 125];
    size_t wl = strlen(why) > 120 ? 120 : strlen(why);
    char *payload = buf + WS_HEADROOM;
    payload[0] = (char)(code >> 8);
    payload[1] = (char)(code & 0xFF);
    memcpy(payload + 2, why, wl);
    char *f = frame_header(payload, wl + 2, WS_OP_CLOSE);
    write_frame(ws, f, (size_t)(payload + wl + 2 - f));
    ws->closing = true;
    ws->closing_at = ferry_hub_now(ws->m->hub);
    /* The read loop goes on, dropping what arrives, until the peer answers the close frame
     * (then civetweb closes the socket with nothing unread) or, after WS_LINGER_MS, the
     * reaper lets it go. Ending it now would close a socket with unread input: the kernel
     * then sends a reset, and the peer may lose the frames just written. */
}

/* Tells civetweb to end the connection. For a server WebSocket this only flags the read
 * loop, which ends after the frame it is reading or at its next poll timeout. ws->lock
 * held. */
static void let_go_locked(ws_conn *ws)
{
    if (ws->conn && !ws->let_go) {
        ws->let_go = true;
        mg_close_connection(ws->conn);
    }
}

static void close_from_reader(ws_conn *ws, int code, const char *why)
{
    pthread_mutex_lock(&ws->lock);
    close_locked(ws, code, why);
    pthread_mutex_unlock(&ws->lock);
}

/* Writes everything due, then closes if ferry is done with the link. */
static void flush(ws_conn *ws)
{
    pthread_mutex_lock(&ws->lock);
    while (ws->conn && !ws->closing) {
        ws->out.len = 0;
        if (ferry_buf_reserve(&ws->out, WS_HEADROOM)) {
            close_locked(ws, WS_CLOSE_INTERNAL, "out of memory");
            break;
        }
        ws->out.len = WS_HEADROOM;
        int n = ferry_link_pull(ws->link, &ws->out, 0);
        if (n < 0) {
            close_locked(ws, WS_CLOSE_INTERNAL, "out of memory");
            break;
        }
        if (n == 0) {
            if (ferry_link_done(ws->link)) {
                const fy_refusal *r = fy_refusal_of(ferry_link_end_reason(ws->link));
                close_locked(ws, r->close_code, r->why);
            }
            break;
        }
        size_t plen = ws->out.len - WS_HEADROOM;
        char *f = frame_header(ws->out.data + WS_HEADROOM, plen, WS_OP_TEXT);
        if (!write_frame(ws, f, (size_t)(ws->out.data + ws->out.len - f))) {
            ws->closing = true; /* unacked messages stay in the outbox for a resume */
            ws->closing_at = ferry_hub_now(ws->m->hub);
            let_go_locked(ws);
        }
    }
    pthread_mutex_unlock(&ws->lock);
}

static void *writer_main(void *arg)
{
    ferry_mount *m = arg;
    pthread_mutex_lock(&m->wlock);
    for (;;) {
        while (!m->ready_head && m->writers)
            pthread_cond_wait(&m->wcond, &m->wlock);
        ws_conn *ws = m->ready_head;
        if (!ws)
            break; /* stopping, and nothing left to write */
        m->ready_head = ws->next_ready;
        if (!m->ready_head)
            m->ready_tail = NULL;
        ws->queued = false;
        ws->flushing = true;
        pthread_mutex_unlock(&m->wlock);
        flush(ws);
        pthread_mutex_lock(&m->wlock);
        ws->flushing = false;
        pthread_mutex_unlock(&m->wlock);
        ws_unref(ws);
        pthread_mutex_lock(&m->wlock);
    }
    pthread_mutex_unlock(&m->wlock);
    return NULL;
}

/* A complete HTTP answer to a refused upgrade (civetweb sends nothing itself): JSON, as
 * every answer under the prefix is. */
static void refuse(struct mg_connection *conn, ferry_mount *m, int status)
{
    fy_http_answer(conn, m, status, "Connection: close\r\n", FERRY_OK, NULL);
}

static int connect_impl(const struct mg_connection *c, ferry_mount *m)
{
    struct mg_connection *conn = (struct mg_connection *)c;
    if (atomic_load(&m->stopping)) {
        refuse(conn, m, 503);
        return 1;
    }
    if (atomic_load(&m->ws_off)) {
        refuse(conn, m, 404);
        return 1;
    }
    /* civetweb 1.15 builds its reply from the key in a 100-byte buffer; a longer key fails
     * the upgrade after this handler, with neither ready nor close handler (RFC 6455 keys
     * are 24 characters). */
    const char *key = mg_get_header(c, "Sec-WebSocket-Key");
    if (key && strlen(key) > 60) {
        refuse(conn, m, 400);
        return 1;
    }
    if (!fy_origin_check(m, c, "a WebSocket upgrade", m->ws_path)) {
        fy_origin_refuse(conn, m, "Connection: close\r\n");
        return 1;
    }
    /* Refused here, before the handshake, rather than left to queue for a worker. */
    if (!fy_conn_acquire(m)) {
        refuse(conn, m, 503);
        return 1;
    }
    ws_conn *ws = calloc(1, sizeof *ws);
    if (!ws || ferry_link_new(m->hub, &ws_ops, ws, &ws->link) != 0) {
        free(ws);
        fy_conn_release(m);
        refuse(conn, m, 503);
        return 1;
    }
    ferry_link_set_transport(ws->link, FERRY_TRANSPORT_WEBSOCKET);
    ws->m = m;
    ws->opened_ms = ferry_hub_now(m->hub);
    ferry_bucket_init(&ws->ctl, m->opt.control_burst, ws->opened_ms);
    atomic_init(&ws->refs, 1);
    pthread_mutex_init(&ws->lock, NULL);
    ws->upgrading = c;
    mg_set_user_connection_data(c, ws);
    /* Listed from now, not from ready: if civetweb's upgrade reply fails, no ready or close
     * handler ever comes, and only the reaper can give the slot back (reap_abandoned). */
    pthread_mutex_lock(&m->wlock);
    ws->next = m->all_ws;
    if (m->all_ws)
        m->all_ws->prev = ws;
    m->all_ws = ws;
    m->nws++;
    pthread_mutex_unlock(&m->wlock);
    return 0;
}

static void ready_impl(struct mg_connection *conn, ferry_mount *m)
{
    ws_conn *ws = mg_get_user_connection_data(conn);
    pthread_mutex_lock(&ws->lock);
    ws->conn = conn;
    pthread_mutex_unlock(&ws->lock);
    /* The upgrade request's headers stay readable for the connection's life. */
    ferry_link_set_peer(ws->link, fy_peer_addr(m, conn), fy_conn_header, conn);
    pthread_mutex_lock(&m->wlock);
    ws->ready = true;
    pthread_mutex_unlock(&m->wlock);
}

static int data_impl(struct mg_connection *conn, int bits, char *data, size_t len, ferry_mount *m)
{
    ws_conn *ws = mg_get_user_connection_data(conn);
    size_t limit = m->opt.core.max_frame_bytes;
    int op = bits & 0xF;
    bool fin = bits & 0x80;

    /* Our close frame is out: drop everything but the peer's answer (see close_locked). */
    if (atomic_load(&ws->closing) && op != WS_OP_CLOSE)
        return 1;
    switch (op) {
    case WS_OP_TEXT:
    case WS_OP_CONT:
        if ((op == WS_OP_TEXT) == ws->in_msg) {
            close_from_reader(ws, WS_CLOSE_PROTOCOL, "bad fragmentation");
            return 1;
        }
        if (ws->discarding || len > limit || ws->msg.len + len > limit) {
            /* Refused with error too_big once (the link counts it); the connection stays,
             * and the rest of a fragmented message is dropped unread. */
            if (!ws->discarding && ferry_link_too_big(ws->link, ws->msg.len + len) == FERRY_ECLOSED)
                ws_wake(ws);
            ws->msg.len = 0;
            ws->in_msg = ws->discarding = !fin;
            return 1;
        }
        int rc;
        if (op == WS_OP_TEXT && fin) {
            rc = ferry_link_recv(ws->link, data, len);
        } else {
            if (ferry_buf_reserve(&ws->msg, len)) {
                close_from_reader(ws, WS_CLOSE_INTERNAL, "out of memory");
                return 1;
            }
            memcpy(ws->msg.data + ws->msg.len, data, len);
            ws->msg.len += len;
            ws->in_msg = !fin;
            if (!fin)
                return 1;
            rc = ferry_link_recv(ws->link, ws->msg.data, ws->msg.len);
            ws->msg.len = 0;
        }
        if (rc == FERRY_ECLOSED)
            ws_wake(ws); /* ferry is done with the link: let a writer close it */
        return 1;
    case WS_OP_PING: {
        if (!control_allowed(ws)) {
            ferry_hub_count_limit(m->hub, FERRY_LIMIT_CONTROL_RATE);
            close_from_reader(ws, WS_CLOSE_POLICY, "control frame flood");
            return 1;
        }
        char buf[WS_HEADROOM + 125];
        size_t n = len > 125 ? 125 : len;
        memcpy(buf + WS_HEADROOM, data, n);
        char *f = frame_header(buf + WS_HEADROOM, n, WS_OP_PONG);
        pthread_mutex_lock(&ws->lock);
        if (ws->conn && !ws->closing)
            write_frame(ws, f, (size_t)(buf + WS_HEADROOM + n - f));
        pthread_mutex_unlock(&ws->lock);
        return 1;
    }
    case WS_OP_PONG:
        if (!control_allowed(ws)) {
            ferry_hub_count_limit(m->hub, FERRY_LIMIT_CONTROL_RATE);
            close_from_reader(ws, WS_CLOSE_POLICY, "control frame flood");
            return 1;
        }
        return 1;
    case WS_OP_CLOSE:
        /* Answer with the same code, as RFC 6455 asks; civetweb then ends the loop. */
        close_from_reader(ws, len >= 2 ? ((unsigned char)data[0] << 8) | (unsigned char)data[1]
                                       : WS_CLOSE_NORMAL,
                          "");
        return 0;
    default:
        close_from_reader(ws, WS_CLOSE_UNSUPPORTED, "only text messages are used");
        return 1;
    }
}

/* civetweb is done with the connection: forget it. Runs once per WebSocket, from its close
 * handler or, if civetweb never calls that (see fy_ws_reap), from the timer. */
static void ws_finish(ws_conn *ws)
{
    ferry_mount *m = ws->m;
    pthread_mutex_lock(&ws->lock);
    ws->conn = NULL; /* civetweb reuses the connection object: never touch it again */
    pthread_mutex_unlock(&ws->lock);
    pthread_mutex_lock(&m->wlock);
    if (ws->gone) {
        pthread_mutex_unlock(&m->wlock);
        return;
    }
    ws->gone = true;
    if (ws->prev)
        ws->prev->next = ws->next;
    else if (m->all_ws == ws)
        m->all_ws = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    pthread_mutex_unlock(&m->wlock);
    fy_conn_release(m);
    ws_unref(ws); /* may free the link, which uses the hub: count it gone only after */
    pthread_mutex_lock(&m->wlock);
    m->nws--;
    pthread_cond_broadcast(&m->ws_gone);
    pthread_mutex_unlock(&m->wlock);
}

static void close_impl(const struct mg_connection *conn, ferry_mount *m)
{
    (void)m;
    ws_conn *ws = mg_get_user_connection_data(conn);
    if (ws)
        ws_finish(ws);
}

/* civetweb's entry points: each brackets its work with fy_mount_enter/leave. */
static int on_connect(const struct mg_connection *c, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    int r = connect_impl(c, m);
    fy_mount_leave(m);
    return r;
}

static void on_ready(struct mg_connection *conn, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    ready_impl(conn, m);
    fy_mount_leave(m);
}

static int on_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    int r = data_impl(conn, bits, data, len, m);
    fy_mount_leave(m);
    return r;
}

static void on_close(const struct mg_connection *conn, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    close_impl(conn, m);
    fy_mount_leave(m);
}

int fy_ws_start(ferry_mount *m)
{
    for (unsigned i = 0; i < m->opt.writer_threads; i++) {
        if (pthread_create(&m->writers[i], NULL, writer_main, m) != 0) {
            m->nwriters = i;
            fy_ws_stop(m);
            return FERRY_ENOMEM;
        }
    }
    m->nwriters = m->opt.writer_threads;
    mg_set_websocket_handler(m->ctx, m->ws_path, on_connect, on_ready, on_data, on_close, m);
    return 0;
}

void fy_ws_close_all(ferry_mount *m, int code, const char *why)
{
    pthread_mutex_lock(&m->wlock);
    size_t n = 0;
    ws_conn **open = m->nws ? malloc(m->nws * sizeof *open) : NULL;
    for (ws_conn *ws = m->all_ws; ws && open; ws = ws->next) {
        fy_ref(&ws->refs);
        open[n++] = ws;
    }
    pthread_mutex_unlock(&m->wlock);
    /* Not under wlock: ws->lock comes first (a writer holds it while ferry may wake). */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&open[i]->lock);
        close_locked(open[i], code, why);
        pthread_mutex_unlock(&open[i]->lock);
        ws_unref(open[i]);
    }
    free(open);
}

/* Shuts down the connection's socket. civetweb 1.15 reads a frame's payload in a loop that
 * never gives up on a silent peer, after allocating whatever length the header claimed, so a
 * peer that claims a huge frame and then sends nothing would hold its worker (and the
 * allocation) for ever; neither our close frame nor mg_close_connection reaches that loop.
 * civetweb does not expose the socket, so find it: the one socket whose peer and local
 * addresses are this connection's. Called with ws->lock held and ws->conn set, so civetweb
 * has not closed it yet and the descriptor cannot have been reused. */
/* Finds the socket of ws->conn among the process's descriptors and, if `shut`, shuts it
 * down. Returns false if no such socket is open any more. ws->lock held. */
static bool find_socket_locked(ws_conn *ws, bool shut)
{
    const struct mg_request_info *ri = mg_get_request_info(ws->conn);
    struct rlimit rl;
    int maxfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1u << 20 ? (int)rl.rlim_cur : 65536;
    for (int fd = 0; fd < maxfd; fd++) {
        struct stat st;
        struct sockaddr_in peer, local;
        socklen_t pl = sizeof peer, ll = sizeof local;
        char addr[INET_ADDRSTRLEN];
        if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
            getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 || peer.sin_family != AF_INET ||
            ntohs(peer.sin_port) != ri->remote_port ||
            getsockname(fd, (struct sockaddr *)&local, &ll) != 0 ||
            ntohs(local.sin_port) != ri->server_port ||
            !inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof addr) ||
            strcmp(addr, ri->remote_addr) != 0)
            continue;
        if (shut) {
            shutdown(fd, SHUT_RDWR);
            ws->forced = true;
        }
        return true;
    }
    return false;
}

/* A connection we closed: after WS_LINGER_MS civetweb is told to end it. Still open two
 * read-loop intervals after that, its reader is stuck inside a frame, so its socket is shut
 * down. Rarely, under load, civetweb ends a WebSocket without calling its close handler;
 * once its connection object serves another client (its user data changed), no callback
 * will ever come: returns true, to finish it here. (A missing socket proves nothing: a
 * shut-down socket has no peer name.) ws->lock held. */
static bool reap_closing_locked(ws_conn *ws)
{
    if (!ws->closing || !ws->conn)
        return false;
    uint64_t waited = ferry_hub_since(ws->m->hub, ws->closing_at);
    if (waited >= WS_LINGER_MS)
        let_go_locked(ws);
    if (waited < WS_LINGER_MS + 2000)
        return false;
    if (mg_get_user_connection_data(ws->conn) != ws)
        return true;
    if (!ws->forced)
        find_socket_locked(ws, true);
    return false;
}

/* True if civetweb gave up on the connection during its upgrade reply: it never called
 * ready, and it has closed the connection (which clears the user data) or reused the
 * object. The connection object stays valid memory while the server runs. */
static bool reap_abandoned(ferry_mount *m, ws_conn *ws)
{
    pthread_mutex_lock(&m->wlock);
    bool ready = ws->ready;
    pthread_mutex_unlock(&m->wlock);
    return !ready && mg_get_user_connection_data(ws->upgrading) != ws;
}

void fy_ws_reap(ferry_mount *m)
{
    pthread_mutex_lock(&m->wlock);
    size_t n = 0;
    ws_conn **late = m->nws ? malloc(m->nws * sizeof *late) : NULL;
    for (ws_conn *ws = m->all_ws; ws && late; ws = ws->next) {
        uint64_t age = ferry_hub_since(m->hub, ws->opened_ms);
        if ((!ws->settled && age >= m->opt.handshake_timeout_ms) || (!ws->ready && age >= 200) ||
            atomic_load(&ws->closing)) {
            fy_ref(&ws->refs);
            late[n++] = ws;
        }
    }
    pthread_mutex_unlock(&m->wlock);
    /* Outside wlock: asking the link takes its lock, which comes before wlock. */
    for (size_t i = 0; i < n; i++) {
        if (reap_abandoned(m, late[i])) {
            ws_finish(late[i]);
            ws_unref(late[i]);
            continue;
        }
        pthread_mutex_lock(&late[i]->lock);
        bool orphan = reap_closing_locked(late[i]);
        bool closing = late[i]->closing;
        pthread_mutex_unlock(&late[i]->lock);
        if (orphan)
            ws_finish(late[i]);
        if (closing) {
            ws_unref(late[i]);
            continue;
        }
        if (ferry_link_session_id(late[i]->link)) {
            pthread_mutex_lock(&m->wlock);
            late[i]->settled = true;
            pthread_mutex_unlock(&m->wlock);
        } else if (!ferry_link_done(late[i]->link)) {
            ferry_hub_count_limit(m->hub, FERRY_LIMIT_HANDSHAKE_TIME);
            pthread_mutex_lock(&late[i]->lock);
            close_locked(late[i], WS_CLOSE_POLICY, "no handshake");
            pthread_mutex_unlock(&late[i]->lock);
        }
        ws_unref(late[i]);
    }
    free(late);
}

/* Waits, about `ms` at most, until no WebSocket is queued for a writer or being written:
 * the final frames ferry_hub_shutdown gave them are then out. */
static void wait_writers(ferry_mount *m, uint64_t ms)
{
    for (uint64_t round = 0;; round++) {
        bool busy = false;
        pthread_mutex_lock(&m->wlock);
        for (ws_conn *ws = m->all_ws; ws && !busy; ws = ws->next)
            busy = ws->queued || ws->flushing;
        pthread_mutex_unlock(&m->wlock);
        if (!busy || round >= ms / 2)
            return;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

bool fy_ws_stop(ferry_mount *m)
{
    mg_set_websocket_handler(m->ctx, m->ws_path, NULL, NULL, NULL, NULL, NULL);
    /* Close every open WebSocket and wait for civetweb's close handlers: they still point
     * at this mount. Those with a session were given their close "shutdown" frame; let the
     * writers send it (then code 1000) before the rest get 1001. */
    wait_writers(m, 2000);
    fy_ws_close_all(m, WS_CLOSE_GOING_AWAY, "server shutting down");
    pthread_mutex_lock(&m->wlock);
    /* Real time, whatever the hub's clock does: 60 rounds of 500 ms with none gone. */
    for (int idle = 0; m->nws && idle < 60;) {
        /* The timer has stopped; reap here what it would have. */
        struct timespec ts;
        fy_deadline(&ts, 500);
        if (pthread_cond_timedwait(&m->ws_gone, &m->wlock, &ts) == ETIMEDOUT) {
            idle++;
            pthread_mutex_unlock(&m->wlock);
            fy_ws_reap(m);
            pthread_mutex_lock(&m->wlock);
        }
    }
    bool all_gone = m->nws == 0;
    pthread_t *writers = m->writers;
    m->writers = NULL; /* tells writers to finish the queue and exit */
    pthread_cond_broadcast(&m->wcond);
    pthread_mutex_unlock(&m->wlock);
    for (unsigned i = 0; i < m->nwriters; i++)
        pthread_join(writers[i], NULL);
    m->writers = writers;
    return all_gone;
}
