/* The WebSocket transport. civetweb's worker thread reads each connection; a small pool of
 * writer threads writes. A connection has something to write when ferry wakes it; a writer
 * then pulls batches and writes each as one pre-framed WebSocket message in one mg_write.
 * Core's ack window keeps a client that stops reading from ever filling the socket, so a
 * write does not block; core's stall timeout then drops it, resumable. Closing them all,
 * and the reaper for what civetweb leaves behind, are in ws_close.c. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ws.h"

/* Spends one control frame from the connection's budget; false when it is exhausted. */
static bool control_allowed(ws_conn *ws)
{
    const ferry_mount_options *o = &ws->m->opt;
    return ferry_bucket_take(&ws->ctl, o->control_burst, o->control_rate,
                             ferry_hub_now(ws->m->hub));
}

void fy_ws_unref(ws_conn *ws)
{
    if (!fy_unref(&ws->refs))
        return;
    ferry_link_free(ws->link);
    ferry_buf_release(&ws->msg);
    fy_loop_release(ws);
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

static const ferry_link_ops ws_ops = {sizeof ws_ops, ws_wake, ws_wake};

/* Writes one whole frame; false if it did not all go out (then the connection is useless:
 * a short write leaves half a frame on the wire). ws->lock held. */
static bool write_frame(ws_conn *ws, const char *p, size_t len)
{
    if (ws->fd >= 0)
        return fy_loop_write_locked(ws, p, len);
    if (!ws->conn)
        return false;
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

/* The connection is closing from now: the reaper watches it (linger, let go). ws->lock held,
 * and it was not closing. */
static void mark_closing_locked(ws_conn *ws)
{
    ws->closing = true;
    atomic_fetch_add(&ws->m->ws_watch, 1);
    ws->closing_at = ferry_hub_now(ws->m->hub);
}

/* Sends a close frame and tells civetweb to end the connection. ws->lock held. */
void fy_ws_close_locked(ws_conn *ws, int code, const char *why)
{
    if (!fy_ws_live_locked(ws) || ws->closing)
        return;
    char buf[WS_HEADROOM + 125];
    size_t wl = strlen(why) > 120 ? 120 : strlen(why);
    char *payload = buf + WS_HEADROOM;
    payload[0] = (char)(code >> 8);
    payload[1] = (char)(code & 0xFF);
    memcpy(payload + 2, why, wl);
    char *f = frame_header(payload, wl + 2, WS_OP_CLOSE);
    write_frame(ws, f, (size_t)(payload + wl + 2 - f));
    mark_closing_locked(ws);
    /* The read loop goes on, dropping what arrives, until the peer answers the close frame
     * (then civetweb closes the socket with nothing unread) or, after WS_LINGER_MS, the
     * reaper lets it go. Ending it now would close a socket with unread input: the kernel
     * then sends a reset, and the peer may lose the frames just written. */
}

/* Tells civetweb to end the connection. For a server WebSocket this only flags the read
 * loop, which ends after the frame it is reading or at its next poll timeout. A socket an
 * event loop serves is shut down instead. ws->lock held. */
void fy_ws_let_go_locked(ws_conn *ws)
{
    if (ws->fd >= 0) {
        /* Taken (its loop sees the end; during the handoff civetweb's read loop ends at the
         * marker, and the loop then does) */
        fy_loop_shut_locked(ws, true);
    } else if (ws->conn && !ws->let_go) {
        ws->let_go = true;
        mg_close_connection(ws->conn);
    }
}

static void close_from_reader(ws_conn *ws, int code, const char *why)
{
    pthread_mutex_lock(&ws->lock);
    fy_ws_close_locked(ws, code, why);
    pthread_mutex_unlock(&ws->lock);
}

/* Writes everything due, then closes if ferry is done with the link. `out` is the writer's
 * buffer. */
static void flush(ws_conn *ws, ferry_buf *out)
{
    pthread_mutex_lock(&ws->lock);
    while (fy_ws_live_locked(ws) && !ws->closing) {
        out->len = 0;
        if (ferry_buf_reserve(out, WS_HEADROOM)) {
            fy_ws_close_locked(ws, WS_CLOSE_INTERNAL, "out of memory");
            break;
        }
        out->len = WS_HEADROOM;
        int n = ferry_link_pull(ws->link, out, 0);
        if (n < 0) {
            fy_ws_close_locked(ws, WS_CLOSE_INTERNAL, "out of memory");
            break;
        }
        if (n == 0) {
            if (ferry_link_done(ws->link)) {
                const fy_refusal *r = fy_refusal_of(ferry_link_end_reason(ws->link));
                fy_ws_close_locked(ws, r->close_code, r->why);
            }
            break;
        }
        size_t plen = out->len - WS_HEADROOM;
        char *f = frame_header(out->data + WS_HEADROOM, plen, WS_OP_TEXT);
        if (!write_frame(ws, f, (size_t)(out->data + out->len - f))) {
            mark_closing_locked(ws); /* unacked messages stay in the outbox for a resume */
            fy_ws_let_go_locked(ws);
        }
    }
    pthread_mutex_unlock(&ws->lock);
}

static void *writer_main(void *arg)
{
    ferry_mount *m = arg;
    ferry_buf out = {0}; /* one buffer for every connection this writer writes */
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
        flush(ws, &out);
        pthread_mutex_lock(&m->wlock);
        ws->flushing = false;
        pthread_mutex_unlock(&m->wlock);
        fy_ws_unref(ws);
        pthread_mutex_lock(&m->wlock);
    }
    pthread_mutex_unlock(&m->wlock);
    ferry_buf_release(&out);
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
    if (atomic_load(&m->stopping) || atomic_load(&m->drain_started)) {
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
    if (!ws || ferry_link_new(&ws->link, m->hub, &ws_ops, ws) != 0) {
        free(ws);
        fy_conn_release(m);
        refuse(conn, m, 503);
        return 1;
    }
    ferry_link_set_transport(ws->link, FERRY_TRANSPORT_WEBSOCKET);
    ws->m = m;
    ws->fd = -1;
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
    atomic_fetch_add(&m->ws_watch, 1); /* until settled */
    pthread_mutex_unlock(&m->wlock);
    return 0;
}

static void ready_impl(struct mg_connection *conn, ferry_mount *m)
{
    ws_conn *ws = mg_get_user_connection_data(conn);
    pthread_mutex_lock(&ws->lock);
    ws->conn = conn;
    pthread_mutex_unlock(&ws->lock);
    /* The upgrade request's headers stay readable for the connection's life, unless an
     * event loop takes it (which copies them). */
    if (!m->loops || !fy_loop_take(ws, conn))
        ferry_link_set_peer(ws->link, fy_peer_addr(m, conn), fy_conn_header, conn);
    pthread_mutex_lock(&m->wlock);
    ws->ready = true;
    pthread_mutex_unlock(&m->wlock);
}

/* A text frame or a continuation: reassembled within the cap, checked for UTF-8, given to
 * the link whole. Always 1: the connection reads on. */
static int text_frame(ws_conn *ws, int op, bool fin, char *data, size_t len)
{
    size_t limit = ws->m->core.max_frame_bytes;
    if ((op == WS_OP_TEXT) == ws->in_msg) {
        close_from_reader(ws, WS_CLOSE_PROTOCOL, "bad fragmentation");
        return 1;
    }
    if (ws->discarding || len > limit || ws->msg.len + len > limit) {
        /* Refused with error too_big once (the link counts it); the connection stays, and
         * the rest of a fragmented message is dropped unread. */
        if (!ws->discarding && ferry_link_too_big(ws->link, ws->msg.len + len) == FERRY_ECLOSED)
            ws_wake(ws);
        ws->msg.len = 0;
        ws->in_msg = ws->discarding = !fin;
        return 1;
    }
    if (!(op == WS_OP_TEXT && fin)) {
        if (ferry_buf_reserve(&ws->msg, len)) {
            close_from_reader(ws, WS_CLOSE_INTERNAL, "out of memory");
            return 1;
        }
        if (len)
            memcpy(ws->msg.data + ws->msg.len, data, len);
        ws->msg.len += len;
        ws->in_msg = !fin;
        if (!fin)
            return 1;
        data = ws->msg.data;
        len = ws->msg.len;
    }
    int rc = FERRY_OK;
    if (fy_utf8_valid(data, len))
        rc = ferry_link_recv(ws->link, data, len);
    else
        close_from_reader(ws, WS_CLOSE_INVALID_DATA, "text is not UTF-8");
    if (data == ws->msg.data)
        ferry_buf_release(&ws->msg); /* fragmented messages are rare: hold nothing */
    if (rc == FERRY_ECLOSED)
        ws_wake(ws); /* ferry is done with the link: let a writer close it */
    return 1;
}

/* A close code a peer may send (RFC 6455 section 7.4): 1000-1003, 1007-1014 (those after
 * 1011 registered since), or 3000-4999 for libraries and applications. */
static bool close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int fy_ws_frame(ws_conn *ws, int bits, char *data, size_t len)
{
    ferry_mount *m = ws->m;
    int op = bits & 0xF;

    /* Our close frame is out: drop everything but the peer's answer (see close_locked). */
    if (atomic_load(&ws->closing) && op != WS_OP_CLOSE)
        return 1;
    switch (op) {
    case WS_OP_TEXT:
    case WS_OP_CONT:
        return text_frame(ws, op, bits & 0x80, data, len);
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
        if (fy_ws_live_locked(ws) && !ws->closing)
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
    case WS_OP_CLOSE: {
        /* Answer with the same code, as RFC 6455 asks (1002 for a code a peer may not send,
         * 1007 for a reason that is not UTF-8); then the connection ends. */
        int code = len >= 2 ? ((unsigned char)data[0] << 8) | (unsigned char)data[1] : 0;
        if (len == 1 || (len >= 2 && !close_code_ok(code)))
            close_from_reader(ws, WS_CLOSE_PROTOCOL, "bad close frame");
        else if (len > 2 && !fy_utf8_valid(data + 2, len - 2))
            close_from_reader(ws, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
        else
            close_from_reader(ws, len >= 2 ? code : WS_CLOSE_NORMAL, "");
        return 0;
    }
    default:
        close_from_reader(ws, WS_CLOSE_UNSUPPORTED, "only text messages are used");
        return 1;
    }
}

/* civetweb is done with the connection: forget it. Runs once per WebSocket, from its close
 * handler or, if civetweb never calls that (see fy_ws_reap), from the timer. */
void fy_ws_finish(ws_conn *ws)
{
    ferry_mount *m = ws->m;
    pthread_mutex_lock(&ws->lock);
    ws->conn = NULL; /* civetweb reuses the connection object: never touch it again */
    bool was_closing = ws->closing; /* and it cannot start closing any more */
    /* A socket taken but not yet on a loop (civetweb dropped the connection mid-handoff
     * without a close handler): nobody else will close it. */
    int orphan = ws->on_loop ? -1 : ws->fd;
    if (orphan >= 0)
        ws->fd = -1;
    pthread_mutex_unlock(&ws->lock);
    if (orphan >= 0)
        close(orphan);
    pthread_mutex_lock(&m->wlock);
    if (ws->gone) {
        pthread_mutex_unlock(&m->wlock);
        return;
    }
    ws->gone = true;
    atomic_fetch_sub(&m->ws_watch, (size_t)was_closing + !ws->settled);
    ws->settled = true;
    if (ws->prev)
        ws->prev->next = ws->next;
    else if (m->all_ws == ws)
        m->all_ws = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    pthread_mutex_unlock(&m->wlock);
    fy_conn_release(m);
    fy_ws_unref(ws); /* may free the link, which uses the hub: count it gone only after */
    pthread_mutex_lock(&m->wlock);
    m->nws--;
    pthread_cond_broadcast(&m->ws_gone);
    pthread_mutex_unlock(&m->wlock);
}

static void close_impl(const struct mg_connection *conn, ferry_mount *m)
{
    (void)m;
    ws_conn *ws = mg_get_user_connection_data(conn);
    if (ws && ws->take)
        fy_loop_abandon(ws); /* civetweb ended it before handing it over */
    else if (ws)
        fy_ws_finish(ws);
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
    /* A reference for the call: if the reaper finishes this connection (civetweb dropped it
     * without a close handler), its last unref is ordered after everything read here. */
    ws_conn *ws = mg_get_user_connection_data(conn);
    fy_ref(&ws->refs);
    int r = ws->take ? fy_loop_handoff_frame(ws, conn, bits, data, len)
                     : fy_ws_frame(ws, bits, data, len);
    fy_ws_unref(ws);
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
    if (fy_loop_start(m) != FERRY_OK)
        return FERRY_ENOMEM;
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

