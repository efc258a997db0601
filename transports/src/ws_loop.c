/* WebSockets served by event loops instead of a civetweb worker each (event_threads).
 *
 * civetweb 1.15 has no call that hands a connection's socket over, so ferry takes it. In the
 * ready handler, on the worker (civetweb is not reading the socket then), ferry keeps a
 * duplicate of the descriptor and puts one end of a socketpair under civetweb's number
 * (dup2). That stand-in holds a close frame with a random payload, the marker, then end of
 * file. civetweb first delivers the frames it had read past the handshake (from its buffer:
 * the stand-in is still unread), then the marker. At the marker ferry ends civetweb's read
 * loop and gives the socket to a loop, whose first read therefore comes after every frame
 * civetweb delivered. civetweb then closes the stand-in, and the worker returns to its pool.
 * If civetweb had buffered only part of a frame, it completes it with the stand-in's bytes:
 * FIONREAD on the stand-in tells, and the connection is closed with 1011 for the client to
 * resume, since that frame is lost.
 *
 * Each loop is one thread with an epoll set, edge-triggered both ways. It reads a socket
 * until a short read into ferry's frame reader (ws_reader.c) and writes what the socket did
 * not take earlier. The writers (ws.c) still pull and write, without blocking, and queue
 * the rest here. Only a loop closes a taken socket, after clearing ws->fd under ws->lock,
 * so nothing writes to a descriptor number that was closed and reused. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

#include "ws.h"

#define MARKER_LEN 24
#define LOOP_READ (64 * 1024)
/* What a taken socket may owe its client beyond what the kernel took. The ack window bounds
 * what ferry writes to a client that stops reading; this only guards against the rest. */
#define PEND_MAX (16u * 1024 * 1024)
enum { FEED_STOP = 1 };

struct fy_loop {
    ferry_mount *m;
    pthread_t thread;
    int ep, wake;        /* the epoll set; an eventfd that wakes the loop to stop */
    pthread_mutex_t lock;
    bool stopped;        /* (lock) nothing may be added any more */
    bool started;
};

struct fy_take {
    int standin;                         /* civetweb's descriptor number, now the stand-in */
    struct fy_loop *loop;                /* the loop it will go to */
    unsigned char marker[MARKER_LEN];
};

/* The upgrade request's headers and the peer's address, for on_auth after the worker has
 * moved on (civetweb reuses the connection's buffers). */
struct fy_hdrs {
    const char *peer;
    size_t n;
    struct {
        const char *name, *value;
    } h[];
};

static const char *hdrs_get(void *ctx, const char *name)
{
    const struct fy_hdrs *hs = ctx;
    for (size_t i = 0; i < hs->n; i++)
        if (strcasecmp(hs->h[i].name, name) == 0)
            return hs->h[i].value;
    return NULL;
}

static struct fy_hdrs *hdrs_copy(const ferry_mount *m, const struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *peer = fy_peer_addr(m, conn);
    size_t n = ri->num_headers > 0 ? (size_t)ri->num_headers : 0;
    size_t bytes = sizeof(struct fy_hdrs) + n * sizeof(((struct fy_hdrs *)0)->h[0]) + strlen(peer) + 1;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(ri->http_headers[i].name) + strlen(ri->http_headers[i].value) + 2;
    struct fy_hdrs *hs = malloc(bytes);
    if (!hs)
        return NULL;
    char *p = (char *)&hs->h[n];
    hs->n = n;
    hs->peer = strcpy(p, peer);
    p += strlen(peer) + 1;
    for (size_t i = 0; i < n; i++) {
        hs->h[i].name = strcpy(p, ri->http_headers[i].name);
        p += strlen(p) + 1;
        hs->h[i].value = strcpy(p, ri->http_headers[i].value);
        p += strlen(p) + 1;
    }
    return hs;
}

/* True if `fd` is a TCP socket with this request's peer and local port. */
static bool same_tuple(int fd, const struct mg_request_info *ri)
{
    struct sockaddr_storage peer, self;
    socklen_t pl = sizeof peer, sl = sizeof self;
    char addr[INET6_ADDRSTRLEN];
    int pport, sport;
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
        getsockname(fd, (struct sockaddr *)&self, &sl) != 0 || peer.ss_family != self.ss_family)
        return false;
    if (peer.ss_family == AF_INET) {
        const struct sockaddr_in *p = (const struct sockaddr_in *)&peer;
        inet_ntop(AF_INET, &p->sin_addr, addr, sizeof addr);
        pport = ntohs(p->sin_port);
        sport = ntohs(((const struct sockaddr_in *)&self)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *p = (const struct sockaddr_in6 *)&peer;
        inet_ntop(AF_INET6, &p->sin6_addr, addr, sizeof addr);
        pport = ntohs(p->sin6_port);
        sport = ntohs(((const struct sockaddr_in6 *)&self)->sin6_port);
    } else {
        return false;
    }
    return pport == ri->remote_port && sport == ri->server_port && strcmp(addr, ri->remote_addr) == 0;
}

/* civetweb keeps the connection's descriptor, followed by its local address, at a fixed
 * distance after the request_info that mg_get_request_info points into; the distance
 * depends on the build. It is learnt once, from the first connection, by that signature,
 * and every use is checked against the connection's addresses: a different layout makes
 * the lookup fail (the connection stays on the worker), never find the wrong socket. */
static atomic_long fd_offset = -1;

static int find_fd(const struct mg_request_info *ri)
{
    const unsigned char *base = (const unsigned char *)ri + sizeof *ri;
    long off = atomic_load(&fd_offset);
    int fd;
    if (off >= 0) {
        memcpy(&fd, base + off, sizeof fd);
        return fd > 2 && same_tuple(fd, ri) ? fd : -1;
    }
    for (off = 0; off < 2048; off += (long)sizeof fd) {
        struct sockaddr_storage self;
        socklen_t sl = sizeof self;
        memcpy(&fd, base + off, sizeof fd);
        if (fd <= 2 || getsockname(fd, (struct sockaddr *)&self, &sl) != 0 ||
            sl > sizeof self || memcmp(base + off + sizeof fd, &self, sl) != 0 ||
            !same_tuple(fd, ri))
            continue;
        atomic_store(&fd_offset, off);
        return fd;
    }
    return -1;
}

bool fy_loop_take(ws_conn *ws, struct mg_connection *conn)
{
    ferry_mount *m = ws->m;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    int fd = ri->is_ssl ? -1 : find_fd(ri);
    if (fd < 0) {
        /* A client already gone has no peer address either: only a run of misses before
         * the first success says the layout is not recognised. */
        static atomic_int misses;
        if (!ri->is_ssl && atomic_load(&fd_offset) < 0 && atomic_fetch_add(&misses, 1) == 15)
            ferry_log(FERRY_LOG_WARN, "event_threads: this civetweb build's connection layout "
                                      "is not recognised; WebSockets stay on its workers");
        atomic_fetch_add(&m->handoffs[1], 1);
        return false;
    }
    struct fy_hdrs *hs = hdrs_copy(m, conn);
    struct fy_take *t = malloc(sizeof *t);
    int real = -1, sv[2] = {-1, -1};
    unsigned char marker[2 + MARKER_LEN];
    if (!hs || !t || (real = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    randombytes_buf(t->marker, MARKER_LEN);
    marker[0] = 0x80 | WS_OP_CLOSE;
    marker[1] = MARKER_LEN;
    memcpy(marker + 2, t->marker, MARKER_LEN);
    if (write(sv[1], marker, sizeof marker) != (ssize_t)sizeof marker)
        goto fail;
    close(sv[1]);
    sv[1] = -1;
    /* One atomic step: civetweb's number now names the stand-in. The raw system call, not
     * libc's dup2: sanitizers that model descriptors would record the number as ferry's,
     * and then see its reuse after civetweb closes it (which they do not watch) as a race. */
    if (syscall(SYS_dup3, sv[0], fd, 0) < 0)
        goto fail;
    close(sv[0]);
    /* Only ferry's descriptor refers to the socket now, so the flag is ferry's alone. */
    fcntl(real, F_SETFL, fcntl(real, F_GETFL) | O_NONBLOCK);
    t->standin = fd;
    ws->take = t;
    ws->hdrs = hs;
    ferry_link_set_peer(ws->link, hs->peer, hdrs_get, hs);
    t->loop = &m->loops[atomic_fetch_add(&m->next_loop, 1) % m->opt.event_threads];
    pthread_mutex_lock(&ws->lock);
    ws->fd = real;
    pthread_mutex_unlock(&ws->lock);
    return true;
fail:
    if (real >= 0)
        close(real);
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    free(t);
    free(hs);
    atomic_fetch_add(&m->handoffs[1], 1);
    return false;
}

/* Closes a taken socket and forgets the connection. Its loop's thread only, or before the
 * socket reached a loop. */
static void close_taken(ws_conn *ws, struct fy_loop *lp)
{
    pthread_mutex_lock(&ws->lock);
    int fd = ws->fd;
    ws->fd = -1;
    ws->conn = NULL;
    ferry_buf_release(&ws->pend);
    ws->pend_off = 0;
    pthread_mutex_unlock(&ws->lock);
    if (fd >= 0) {
        if (lp) {
            epoll_ctl(lp->ep, EPOLL_CTL_DEL, fd, NULL);
            atomic_fetch_sub(&ws->m->on_loops, 1);
        }
        close(fd);
    }
    fy_ws_finish(ws);
}

void fy_loop_abandon(ws_conn *ws)
{
    atomic_fetch_add(&ws->m->handoffs[2], 1);
    pthread_mutex_lock(&ws->lock);
    fy_ws_close_locked(ws, WS_CLOSE_INTERNAL, "connection lost on the server; resume");
    pthread_mutex_unlock(&ws->lock);
    free(ws->take);
    ws->take = NULL;
    close_taken(ws, NULL);
}

/* Gives a taken socket to its loop. On the worker, at the marker. */
static void hand_over(ws_conn *ws, struct mg_connection *conn)
{
    struct fy_loop *lp = ws->take->loop;
    mg_set_user_connection_data(conn, NULL); /* civetweb's close handler: not ours any more */
    free(ws->take);
    ws->take = NULL;
    pthread_mutex_lock(&lp->m->wlock);
    ws->loop = lp;
    pthread_mutex_unlock(&lp->m->wlock);
    pthread_mutex_lock(&ws->lock);
    ws->conn = NULL; /* civetweb reuses the connection object */
    int fd = ws->fd;
    pthread_mutex_unlock(&ws->lock);
    fy_ref(&ws->refs); /* the loop's, until it closes the socket */
    pthread_mutex_lock(&lp->lock);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = ws};
    bool added = !lp->stopped && epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev) == 0;
    if (added) {
        atomic_fetch_add(&lp->m->on_loops, 1);
        atomic_fetch_add(&lp->m->handoffs[0], 1);
    }
    pthread_mutex_unlock(&lp->lock);
    if (!added) {
        close_taken(ws, NULL);
        fy_ws_unref(ws);
    }
}

int fy_loop_handoff_frame(ws_conn *ws, struct mg_connection *conn, int bits, char *data,
                          size_t len)
{
    int unread = -1;
    if (ioctl(ws->take->standin, FIONREAD, &unread) != 0)
        unread = -1;
    if (unread == 0 && (bits & 0x0F) == WS_OP_CLOSE && len == MARKER_LEN &&
        memcmp(data, ws->take->marker, MARKER_LEN) == 0) {
        hand_over(ws, conn);
        return 0;
    }
    if (unread != 2 + MARKER_LEN)
        return 0; /* a frame civetweb completed with the stand-in's bytes: the close handler
                   * abandons the connection */
    /* A whole frame civetweb had buffered past the handshake. */
    return fy_ws_frame(ws, bits, data, len);
}

/* Writes what is queued; then, if asked, shuts the socket down. ws->lock held. */
static void send_queued_locked(ws_conn *ws)
{
    while (ws->pend_off < ws->pend.len) {
        ssize_t w = send(ws->fd, ws->pend.data + ws->pend_off, ws->pend.len - ws->pend_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            ws->pend_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            fy_loop_shut_locked(ws, true);
            return;
        }
    }
    ferry_buf_release(&ws->pend);
    ws->pend_off = 0;
    if (ws->shut_when_sent)
        fy_loop_shut_locked(ws, true);
}

bool fy_loop_write_locked(ws_conn *ws, const char *p, size_t len)
{
    if (ws->fd < 0 || ws->let_go)
        return false;
    size_t done = 0;
    if (ws->pend_off == ws->pend.len) {
        for (;;) {
            ssize_t w = send(ws->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w >= 0) {
                done = (size_t)w;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return false;
            break;
        }
        if (done == len)
            return true;
    }
    /* The rest waits for the loop: the kernel signals room with an edge (EPOLLOUT). */
    size_t owed = ws->pend.len - ws->pend_off;
    if (owed + len - done > PEND_MAX)
        return false;
    if (ws->pend_off > 0) {
        memmove(ws->pend.data, ws->pend.data + ws->pend_off, owed);
        ws->pend.len = owed;
        ws->pend_off = 0;
    }
    if (ferry_buf_reserve(&ws->pend, len - done))
        return false;
    memcpy(ws->pend.data + ws->pend.len, p + done, len - done);
    ws->pend.len += len - done;
    return true;
}

void fy_loop_shut_locked(ws_conn *ws, bool force)
{
    if (ws->fd < 0 || ws->let_go)
        return;
    if (!force && ws->pend_off < ws->pend.len) {
        ws->shut_when_sent = true;
        return;
    }
    ws->let_go = true;
    /* The loop sees the end of the stream, and closes the socket. */
    shutdown(ws->fd, SHUT_RDWR);
}

void fy_loop_release(ws_conn *ws)
{
    free(ws->hdrs);
    free(ws->take);
    fy_wsr_free(&ws->rd);
    ferry_buf_release(&ws->pend);
}

static int on_frame(void *ud, int bits, char *data, uint64_t len)
{
    return fy_ws_frame(ud, bits, data, (size_t)len) ? 0 : FEED_STOP;
}

static void feed(ws_conn *ws, char *buf, size_t n)
{
    const char *why = "";
    int rc = fy_wsr_feed(&ws->rd, buf, n, ws->m->core.max_frame_bytes, on_frame, ws, &why);
    if (rc == 0)
        return;
    ws->rd_done = true; /* from now on what arrives is dropped */
    fy_wsr_free(&ws->rd);
    pthread_mutex_lock(&ws->lock);
    if (rc == FY_WSR_PROTOCOL)
        fy_ws_close_locked(ws, WS_CLOSE_PROTOCOL, why);
    else if (rc == FY_WSR_NOMEM)
        fy_ws_close_locked(ws, WS_CLOSE_INTERNAL, "out of memory");
    else
        fy_loop_shut_locked(ws, false); /* the peer's close frame was answered */
    pthread_mutex_unlock(&ws->lock);
}

/* One event for one socket. */
static void serve(struct fy_loop *lp, ws_conn *ws, uint32_t events, char *buf)
{
    pthread_mutex_lock(&ws->lock);
    int fd = ws->fd;
    if (fd >= 0 && (events & EPOLLOUT) && ws->pend_off < ws->pend.len)
        send_queued_locked(ws);
    pthread_mutex_unlock(&ws->lock);
    if (fd < 0 || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    /* A short read emptied the socket; anything later raises a new edge. An end of the
     * stream already signalled raises none, so then read on until it shows. */
    bool to_end = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    for (;;) {
        ssize_t r = recv(fd, buf, LOOP_READ, 0);
        if (r > 0) {
            if (!ws->rd_done)
                feed(ws, buf, (size_t)r);
            if ((size_t)r < LOOP_READ && !to_end)
                return;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close_taken(ws, lp);
        fy_ws_unref(ws); /* the loop's */
        return;
    }
}

/* Closes every socket this loop still serves (the mount is stopping). */
static void close_all(struct fy_loop *lp)
{
    ferry_mount *m = lp->m;
    pthread_mutex_lock(&m->wlock);
    size_t n = 0;
    ws_conn **left = m->nws ? malloc(m->nws * sizeof *left) : NULL;
    for (ws_conn *ws = m->all_ws; ws && left; ws = ws->next) {
        if (ws->loop == lp) {
            fy_ref(&ws->refs);
            left[n++] = ws;
        }
    }
    pthread_mutex_unlock(&m->wlock);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&left[i]->lock);
        bool open = left[i]->fd >= 0;
        pthread_mutex_unlock(&left[i]->lock);
        if (open) {
            close_taken(left[i], lp);
            fy_ws_unref(left[i]); /* the loop's */
        }
        fy_ws_unref(left[i]);
    }
    free(left);
}

static void *loop_main(void *arg)
{
    struct fy_loop *lp = arg;
    char *buf = malloc(LOOP_READ);
    struct epoll_event ev[64];
    for (bool stop = false; !stop && buf;) {
        int n = epoll_wait(lp->ep, ev, 64, -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == lp)
                stop = true;
            else
                serve(lp, ev[i].data.ptr, ev[i].events, buf);
        }
    }
    close_all(lp);
    free(buf);
    return NULL;
}

int fy_loop_start(ferry_mount *m)
{
    unsigned n = m->opt.event_threads;
    if (!n)
        return FERRY_OK;
    m->loops = calloc(n, sizeof *m->loops);
    if (!m->loops)
        return FERRY_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        m->loops[i].ep = m->loops[i].wake = -1;
        pthread_mutex_init(&m->loops[i].lock, NULL);
    }
    for (unsigned i = 0; i < n; i++) {
        struct fy_loop *lp = &m->loops[i];
        lp->m = m;
        lp->ep = epoll_create1(EPOLL_CLOEXEC);
        lp->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = lp};
        if (lp->ep < 0 || lp->wake < 0 || epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->wake, &ev) != 0 ||
            pthread_create(&lp->thread, NULL, loop_main, lp) != 0) {
            fy_loop_stop(m);
            return FERRY_ENOMEM;
        }
        lp->started = true;
    }
    return FERRY_OK;
}

void fy_loop_stop(ferry_mount *m)
{
    if (!m->loops)
        return;
    for (unsigned i = 0; i < m->opt.event_threads; i++) {
        struct fy_loop *lp = &m->loops[i];
        pthread_mutex_lock(&lp->lock);
        lp->stopped = true;
        pthread_mutex_unlock(&lp->lock);
        if (lp->started) {
            uint64_t one = 1;
            if (write(lp->wake, &one, sizeof one) < 0) {
                /* an eventfd at its maximum still wakes the loop */
            }
            pthread_join(lp->thread, NULL);
        }
        if (lp->ep >= 0)
            close(lp->ep);
        if (lp->wake >= 0)
            close(lp->wake);
        pthread_mutex_destroy(&lp->lock);
    }
    free(m->loops);
    m->loops = NULL;
}
