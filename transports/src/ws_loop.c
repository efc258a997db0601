/* WebSockets served by event loops instead of a civetweb worker each (event_threads); how a
 * socket is taken off its worker is in ws_take.c.
 *
 * Each loop is one thread with an epoll set, edge-triggered both ways. It reads a socket
 * until a short read into ferry's frame reader (ws_reader.c), at most LOOP_TURN reads before
 * the other sockets get theirs, and writes what the socket did not take earlier. The writers
 * (ws.c) still pull and write, without blocking, and queue the rest here. A registered socket
 * is closed only by its loop, after clearing ws->fd under ws->lock, so nothing writes to a
 * descriptor number that was closed and reused; one never registered is closed where it
 * failed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws.h"

#define LOOP_READ (64 * 1024)
#define LOOP_TURN 4      /* reads of one socket before the others on its loop get theirs */
#define LOOP_EVENTS 64
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
    char *buf;           /* what the loop reads into */
};

/* Closes a taken socket and forgets the connection. Its loop's thread only, or before the
 * socket reached a loop. */
static void close_taken(ws_conn *ws, struct fy_loop *lp)
{
    pthread_mutex_lock(&ws->lock);
    int fd = ws->fd;
    ws->fd = -1;
    ws->conn = NULL;
    ws->on_loop = false;
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
    /* Unless a close frame went out (the client's was answered), civetweb ended its read
     * loop without the marker: a frame split across the handoff. */
    pthread_mutex_lock(&ws->lock);
    bool lost = !ws->closing;
    fy_ws_close_locked(ws, WS_CLOSE_INTERNAL, "connection lost on the server; resume");
    pthread_mutex_unlock(&ws->lock);
    if (lost)
        atomic_fetch_add(&ws->m->handoffs[FY_HANDOFF_LOST], 1);
    free(ws->take);
    ws->take = NULL;
    close_taken(ws, NULL);
}

struct fy_loop *fy_loop_pick(ferry_mount *m)
{
    for (unsigned i = 0; i < m->opt.event_threads; i++) {
        struct fy_loop *lp = &m->loops[atomic_fetch_add(&m->next_loop, 1) % m->opt.event_threads];
        pthread_mutex_lock(&lp->lock);
        bool stopped = lp->stopped;
        pthread_mutex_unlock(&lp->lock);
        if (!stopped)
            return lp;
    }
    return NULL; /* every loop has stopped (or failed) */
}

void fy_loop_hand_over(ws_conn *ws, struct mg_connection *conn)
{
    struct fy_loop *lp = ws->take->loop;
    free(ws->take);
    ws->take = NULL;
    pthread_mutex_lock(&lp->m->wlock);
    ws->loop = lp;
    pthread_mutex_unlock(&lp->m->wlock);
    /* Together, under the lock the reaper holds when it asks civetweb whose connection
     * this is: civetweb's close handler finds nothing of ours, and it reuses the object. */
    pthread_mutex_lock(&ws->lock);
    mg_set_user_connection_data(conn, NULL);
    ws->conn = NULL;
    int fd = ws->fd;
    pthread_mutex_unlock(&ws->lock);
    fy_ref(&ws->refs); /* the loop's, until it closes the socket */
    /* Registered and marked in one step, under the loop's lock (its last sweep, close_all,
     * sees on_loop set) and the connection's (the loop serves an event only after taking
     * it, so it cannot close the socket before it is marked). */
    pthread_mutex_lock(&lp->lock);
    pthread_mutex_lock(&ws->lock);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = ws};
    bool added = !lp->stopped && ws->fd == fd && fd >= 0 &&
                 epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev) == 0;
    if (added) {
        ws->on_loop = true;
        atomic_fetch_add(&lp->m->on_loops, 1);
        atomic_fetch_add(&lp->m->handoffs[FY_HANDOFF_TAKEN], 1);
    }
    pthread_mutex_unlock(&ws->lock);
    pthread_mutex_unlock(&lp->lock);
    if (!added) {
        close_taken(ws, NULL);
        fy_ws_unref(ws);
    }
}

/* Sends what the socket takes now: the bytes sent (0 when it has no room), or -1 when the
 * connection failed. */
static ssize_t send_some(int fd, const char *p, size_t len)
{
    for (;;) {
        ssize_t w = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
}

/* Writes what is queued; then, if asked, shuts the socket down. ws->lock held. */
static void send_queued_locked(ws_conn *ws)
{
    while (ws->pend_off < ws->pend.len) {
        ssize_t w = send_some(ws->fd, ws->pend.data + ws->pend_off, ws->pend.len - ws->pend_off);
        if (w == 0)
            return;
        if (w < 0) {
            fy_loop_shut_locked(ws, true);
            return;
        }
        ws->pend_off += (size_t)w;
    }
    ferry_buf_release(&ws->pend);
    ws->pend_off = 0;
    if (ws->shut_when_sent)
        fy_loop_shut_locked(ws, true);
}

bool fy_loop_write_locked(ws_conn *ws, const char *p, size_t len)
{
    if (ws->fd < 0 || ws->shut)
        return false;
    size_t done = 0;
    if (ws->pend_off == ws->pend.len) {
        ssize_t w = send_some(ws->fd, p, len);
        if (w < 0)
            return false;
        done = (size_t)w;
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
    if (ws->fd < 0 || ws->shut)
        return;
    if (!force && ws->pend_off < ws->pend.len) {
        ws->shut_when_sent = true;
        return;
    }
    ws->shut = true;
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
    return fy_ws_frame(ud, bits, data, len > SIZE_MAX ? SIZE_MAX : (size_t)len) ? 0 : FEED_STOP;
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

/* One event for one socket. If `may_defer`, returns true when it must read on: it had more
 * input than one turn takes (LOOP_TURN), and the edge that said so will not come again. */
static bool serve(struct fy_loop *lp, ws_conn *ws, uint32_t events, char *buf, bool may_defer)
{
    pthread_mutex_lock(&ws->lock);
    int fd = ws->fd;
    if (fd >= 0 && (events & EPOLLOUT) && ws->pend_off < ws->pend.len)
        send_queued_locked(ws);
    pthread_mutex_unlock(&ws->lock);
    if (fd < 0 || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return false;
    /* A short read emptied the socket; anything later raises a new edge. An end of the
     * stream already signalled raises none, so then read on until it shows. */
    bool to_end = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    for (int turn = 0;; turn++) {
        if (turn == LOOP_TURN && may_defer)
            return true; /* the others on this loop first */
        ssize_t r = recv(fd, buf, LOOP_READ, 0);
        if (r > 0) {
            if (!ws->rd_done)
                feed(ws, buf, (size_t)r);
            if ((size_t)r < LOOP_READ && !to_end)
                return false;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        close_taken(ws, lp);
        fy_ws_unref(ws); /* the loop's */
        return false;
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
        bool open = left[i]->on_loop;
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
    struct epoll_event ev[LOOP_EVENTS];
    /* Sockets with input left after their turn, each with a reference, and the events
     * they were served for. */
    ws_conn *again[LOOP_EVENTS];
    uint32_t again_ev[LOOP_EVENTS];
    int nagain = 0;
    for (bool stop = false; !stop;) {
        int n = epoll_wait(lp->ep, ev, LOOP_EVENTS, nagain ? 0 : -1);
        if (n < 0 && errno != EINTR)
            break;
        ws_conn *more[LOOP_EVENTS];
        uint32_t more_ev[LOOP_EVENTS];
        int nmore = 0;
        /* The new events first: a socket they close may be waiting in `again` too, which
         * holds a reference, so it is found closed there rather than freed. A socket
         * already waiting there is served there, once, with the new events added. */
        for (int i = 0; i < n; i++) {
            ws_conn *ws = ev[i].data.ptr;
            if (ev[i].data.ptr == lp) {
                stop = true;
            } else if (ws->deferred) {
                for (int k = 0; k < nagain; k++)
                    if (again[k] == ws)
                        again_ev[k] |= ev[i].events;
            } else if (serve(lp, ws, ev[i].events, lp->buf, nmore < LOOP_EVENTS / 2)) {
                fy_ref(&ws->refs);
                ws->deferred = true;
                more[nmore] = ws;
                more_ev[nmore++] = ev[i].events & ~EPOLLOUT;
            }
        }
        for (int i = 0; i < nagain; i++) {
            if (serve(lp, again[i], again_ev[i], lp->buf, nmore < LOOP_EVENTS)) {
                more[nmore] = again[i];
                more_ev[nmore++] = again_ev[i] & ~EPOLLOUT;
            } else {
                again[i]->deferred = false;
                fy_ws_unref(again[i]);
            }
        }
        memcpy(again, more, (size_t)nmore * sizeof *more);
        memcpy(again_ev, more_ev, (size_t)nmore * sizeof *more_ev);
        nagain = nmore;
    }
    for (int i = 0; i < nagain; i++) {
        again[i]->deferred = false;
        fy_ws_unref(again[i]);
    }
    pthread_mutex_lock(&lp->lock);
    lp->stopped = true; /* also when the loop failed: nothing may be added any more */
    pthread_mutex_unlock(&lp->lock);
    close_all(lp);
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
        lp->buf = malloc(LOOP_READ);
        lp->ep = epoll_create1(EPOLL_CLOEXEC);
        lp->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = lp};
        if (!lp->buf || lp->ep < 0 || lp->wake < 0 ||
            epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->wake, &ev) != 0 ||
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
    for (unsigned i = 0; m->loops && i < m->opt.event_threads; i++) {
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
            lp->started = false;
        }
    }
}

void fy_loop_free(ferry_mount *m)
{
    for (unsigned i = 0; m->loops && i < m->opt.event_threads; i++) {
        struct fy_loop *lp = &m->loops[i];
        if (lp->ep >= 0)
            close(lp->ep);
        if (lp->wake >= 0)
            close(lp->wake);
        free(lp->buf);
        pthread_mutex_destroy(&lp->lock);
    }
    free(m->loops);
    m->loops = NULL;
}
