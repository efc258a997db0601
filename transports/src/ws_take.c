/* Taking a WebSocket's socket off civetweb's worker, for an event loop (ws_loop.c).
 *
 * civetweb 1.15 has no call that hands a connection's socket over, so ferry takes it. In the
 * ready handler, on the worker (civetweb is not reading the socket then), ferry keeps a
 * duplicate of the descriptor and puts one end of a socketpair under civetweb's number
 * (dup3). That stand-in holds a close frame with a random payload, the marker, then end of
 * file. civetweb first delivers the frames it had read past the handshake (from its buffer:
 * the stand-in is still unread), then the marker. At the marker ferry ends civetweb's read
 * loop and gives the socket to a loop, whose first read therefore comes after every frame
 * civetweb delivered. civetweb then closes the stand-in, and the worker returns to its pool.
 * If civetweb had buffered only part of a frame, it completes it with the stand-in's bytes:
 * FIONREAD on the stand-in tells, and the connection is closed with 1011 for the client to
 * resume, since that frame is lost. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

#include "ws.h"

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

bool fy_same_tuple(int fd, const struct mg_request_info *ri)
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
        return fd > 2 && fy_same_tuple(fd, ri) ? fd : -1;
    }
    for (off = 0; off < 2048; off += (long)sizeof fd) {
        struct sockaddr_storage self;
        socklen_t sl = sizeof self;
        memcpy(&fd, base + off, sizeof fd);
        if (fd <= 2 || getsockname(fd, (struct sockaddr *)&self, &sl) != 0 ||
            sl > sizeof self || memcmp(base + off + sizeof fd, &self, sl) != 0 ||
            !fy_same_tuple(fd, ri))
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
    struct fy_loop *lp = fd >= 0 ? fy_loop_pick(m) : NULL;
    if (fd >= 0 && !lp) {
        atomic_fetch_add(&m->handoffs[FY_HANDOFF_STAYED], 1); /* every loop has failed */
        return false;
    }
    if (fd < 0) {
        /* A client already gone has no peer address either: only a run of misses before
         * the first success says the layout is not recognised. */
        static atomic_int misses;
        if (!ri->is_ssl && atomic_load(&fd_offset) < 0 && atomic_fetch_add(&misses, 1) == 15)
            ferry_log(FERRY_LOG_WARN, "event_threads: this civetweb build's connection layout "
                                      "is not recognised; WebSockets stay on its workers");
        atomic_fetch_add(&m->handoffs[FY_HANDOFF_STAYED], 1);
        return false;
    }
    struct fy_hdrs *hs = hdrs_copy(m, conn);
    struct fy_take *t = malloc(sizeof *t);
    int real = -1, sv[2] = {-1, -1};
    unsigned char marker[2 + FY_MARKER_LEN];
    if (!hs || !t || (real = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    randombytes_buf(t->marker, FY_MARKER_LEN);
    marker[0] = 0x80 | WS_OP_CLOSE;
    marker[1] = FY_MARKER_LEN;
    memcpy(marker + 2, t->marker, FY_MARKER_LEN);
    if (write(sv[1], marker, sizeof marker) != (ssize_t)sizeof marker)
        goto fail;
    close(sv[1]);
    sv[1] = -1;
    /* Under the lock, so that no writer is inside mg_write across the swap and every write
     * after it goes to ferry's descriptor. One atomic step: civetweb's number now names the
     * stand-in. The raw system call, not libc's dup3: sanitizers that model descriptors
     * would record the number as ferry's, and then see its reuse after civetweb closes it
     * (which they do not watch) as a race. */
    pthread_mutex_lock(&ws->lock);
    if (syscall(SYS_dup3, sv[0], fd, O_CLOEXEC) < 0) {
        pthread_mutex_unlock(&ws->lock);
        goto fail;
    }
    ws->fd = real;
    /* Only ferry's descriptor refers to the socket now, so the flag is ferry's alone. */
    fcntl(real, F_SETFL, fcntl(real, F_GETFL) | O_NONBLOCK);
    pthread_mutex_unlock(&ws->lock);
    close(sv[0]);
    t->standin = fd;
    t->loop = lp;
    ws->take = t;
    ws->hdrs = hs;
    ferry_link_set_peer(ws->link, hs->peer, hdrs_get, hs);
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
    atomic_fetch_add(&m->handoffs[FY_HANDOFF_STAYED], 1);
    return false;
}

int fy_loop_handoff_frame(ws_conn *ws, struct mg_connection *conn, int bits, char *data,
                          size_t len)
{
    int unread = -1;
    if (ioctl(ws->take->standin, FIONREAD, &unread) != 0)
        unread = -1;
    if (unread == 0 && (bits & 0x0F) == WS_OP_CLOSE && len == FY_MARKER_LEN &&
        memcmp(data, ws->take->marker, FY_MARKER_LEN) == 0) {
        fy_loop_hand_over(ws, conn);
        return 0;
    }
    if (unread != 2 + FY_MARKER_LEN)
        return 0; /* a frame civetweb completed with the stand-in's bytes: the close handler
                   * abandons the connection */
    /* A whole frame civetweb had buffered past the handshake. */
    return fy_ws_frame(ws, bits, data, len);
}
