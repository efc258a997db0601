/* Closing WebSockets: all of them (drop, unmount), the reaper that ends connections past
 * their deadlines or that civetweb left behind, and stopping the transport. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "ws.h"

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
        fy_ws_close_locked(open[i], code, why);
        pthread_mutex_unlock(&open[i]->lock);
        fy_ws_unref(open[i]);
    }
    free(open);
}

/* Shuts down the connection's socket. civetweb 1.15 reads a frame's payload in a loop that
 * never gives up on a silent peer, after allocating whatever length the header claimed, so a
 * peer that claims a huge frame and then sends nothing would hold its worker (and the
 * allocation) for ever; neither our close frame nor mg_close_connection reaches that loop.
 * civetweb does not expose the socket, so find it: the one socket whose peer and local
 * addresses are this connection's. Called with ws->lock held and ws->conn set, so civetweb
 * has not closed it yet and the descriptor cannot have been reused. Returns false if no
 * such socket is open any more; shuts it down only if `shut`. */
static bool find_socket_locked(ws_conn *ws, bool shut)
{
    const struct mg_request_info *ri = mg_get_request_info(ws->conn);
    struct rlimit rl;
    int maxfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1u << 20 ? (int)rl.rlim_cur : 65536;
    for (int fd = 0; fd < maxfd; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || !fy_same_tuple(fd, ri))
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
    if (!ws->closing || !fy_ws_live_locked(ws))
        return false;
    uint64_t waited = ferry_hub_since(ws->m->hub, ws->closing_at);
    if (waited >= WS_LINGER_MS)
        fy_ws_let_go_locked(ws);
    /* A socket an event loop serves is shut down by then, and closed by the loop. */
    if (waited < WS_LINGER_MS + 2000 || !ws->conn)
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
    /* civetweb's user data first, under the lock the handoff clears it under: the handoff
     * comes after the ready handler, so if it was the handoff, ready reads true below. */
    pthread_mutex_lock(&ws->lock);
    bool ours = mg_get_user_connection_data(ws->upgrading) == ws;
    bool taken = ws->fd >= 0;
    pthread_mutex_unlock(&ws->lock);
    pthread_mutex_lock(&m->wlock);
    bool ready = ws->ready;
    pthread_mutex_unlock(&m->wlock);
    return !ready && !ours && !taken;
}

void fy_ws_reap(ferry_mount *m)
{
    if (atomic_load(&m->ws_watch) == 0)
        return; /* every WebSocket settled and open: nothing to walk */
    pthread_mutex_lock(&m->wlock);
    size_t n = 0;
    /* Every one not yet settled (settled as soon as it has a session, so that an idle node
     * walks nothing), and those due a decision: past the handshake deadline, not ready
     * 200 ms after connecting, or closing. */
    struct {
        ws_conn *ws;
        bool due;
    } *late = m->nws ? malloc(m->nws * sizeof *late) : NULL;
    for (ws_conn *ws = m->all_ws; ws && late; ws = ws->next) {
        uint64_t age = ferry_hub_since(m->hub, ws->opened_ms);
        bool due = (!ws->settled && age >= m->opt.handshake_timeout_ms) ||
                   (!ws->ready && age >= 200) || atomic_load(&ws->closing);
        if (due || !ws->settled) {
            fy_ref(&ws->refs);
            late[n].ws = ws;
            late[n++].due = due;
        }
    }
    pthread_mutex_unlock(&m->wlock);
    /* Outside wlock: asking the link takes its lock, which comes before wlock. */
    for (size_t i = 0; i < n; i++) {
        ws_conn *ws = late[i].ws;
        if (late[i].due && reap_abandoned(m, ws)) {
            fy_ws_finish(ws);
            fy_ws_unref(ws);
            continue;
        }
        pthread_mutex_lock(&ws->lock);
        bool orphan = reap_closing_locked(ws);
        bool closing = ws->closing;
        pthread_mutex_unlock(&ws->lock);
        if (orphan)
            fy_ws_finish(ws);
        if (closing) {
            fy_ws_unref(ws);
            continue;
        }
        if (ferry_link_session_id(ws->link)) {
            pthread_mutex_lock(&m->wlock);
            if (!ws->settled && !ws->gone)
                atomic_fetch_sub(&m->ws_watch, 1);
            ws->settled = true;
            pthread_mutex_unlock(&m->wlock);
        } else if (late[i].due && !ferry_link_done(ws->link)) {
            ferry_hub_count_limit(m->hub, FERRY_LIMIT_HANDSHAKE_TIME);
            pthread_mutex_lock(&ws->lock);
            fy_ws_close_locked(ws, WS_CLOSE_POLICY, "no handshake");
            pthread_mutex_unlock(&ws->lock);
        }
        fy_ws_unref(ws);
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
    fy_loop_stop(m); /* closes what the loops still serve */
    pthread_mutex_lock(&m->wlock);
    all_gone = m->nws == 0;
    pthread_mutex_unlock(&m->wlock);
    return all_gone;
}

bool fy_ws_collect(ferry_mount *m, fy_client **list, size_t *n, size_t *cap)
{
    bool ok = true;
    pthread_mutex_lock(&m->wlock);
    for (ws_conn *ws = m->all_ws; ws && ok; ws = ws->next) {
        if ((ok = fy_client_room(list, n, cap))) {
            fy_ref(&ws->refs);
            (*list)[(*n)++] = (fy_client){.ws = ws};
        }
    }
    pthread_mutex_unlock(&m->wlock);
    return ok;
}

void fy_ws_let_go(ws_conn *ws)
{
    /* Its session's end or its restart kicks the link, which wakes a writer: the writer
     * sends what is due (a close "shutdown" frame) and the close code. */
    ferry_link_shutdown(ws->link);
    fy_ws_unref(ws);
}

size_t fy_ws_open(ferry_mount *m)
{
    pthread_mutex_lock(&m->wlock);
    size_t n = m->nws;
    pthread_mutex_unlock(&m->wlock);
    return n;
}
