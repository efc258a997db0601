/*
 * fyload: a load generator for broadcast servers. It holds many connections cheaply (epoll,
 * one thread per process, several processes), checks every connection's sequence of
 * messages for loss, duplicates and reordering, and records latency from the scheduled send
 * time the server writes into each message, so a server that falls behind cannot hide it.
 *
 * Protocols: ferry over WebSocket (ferry-ws) and long-polling (ferry-lp), Socket.IO v5 on
 * Engine.IO v4 over WebSocket (sio-ws) and polling (sio-poll), and plain WebSocket (ws).
 *
 * Every server under test implements the same control requests (bench/README.md):
 *   GET /bench/start?rate=R&size=B  start publishing R messages/s of B bytes to everyone
 *   GET /bench/stop                 stop; answers {"first":F,"last":L}
 * Each message's payload is "<n> <scheduled send time, CLOCK_MONOTONIC us> xxxx...".
 *
 *   fyload --port P --proto ferry-ws --conns N [--procs K] [--pid SERVER_PID[,PID..]]
 *          [--hold S] [--rates r1,r2,..] [--step S] [--storm R] [--lp-rate R]
 *          [--label NAME] [--size B] [--ports P1,P2,.. [--spread K]]
 *          [--failover R --kill PID[,PID..] [--drain 1]]
 *
 * Several servers (a cluster): --ports lists them; connection i starts on the (i mod K)-th
 * of the first K (--spread, all by default), and --port is the one the control requests go
 * to. A connection that loses its server (not one a storm drops on purpose) moves to
 * another port of the list, the next ones in turn by connection index so that the moved
 * connections spread over the others as a load balancer would, and resumes its session
 * there (ferry-ws, ferry-lp; sio-ws with whatever recovery the server offers). Its sequence
 * checks go on across the move. --failover R --kill PID: a step that publishes R messages/s,
 * kills PID with SIGKILL a third of the way in, waits until every connection is back and
 * publishes another third; it reports the time from the kill until all were back and each
 * moved connection's time from losing its server to being resumed. --kill PID1,PID2,..
 * kills them one after another, each once every connection is back from the one before.
 * --drain 1: a rolling restart instead: SIGTERM (a server that drains, ferry_mount_drain,
 * lets its connections go over its spread, then exits), and before the next one, every
 * port of --ports accepting connections again (whoever runs the servers restarts the one
 * that exited on its port). Each kill's record in "drains": when its server was gone, when
 * every connection was back, and the most connections back within one second.
 *
 * A ferry connection acknowledges as the bundled JS client does: after --ack-ms (2000, its
 * ackDelay) or once half the server's 64 KiB send window is unacknowledged.
 *
 * Progress goes to stderr; one JSON object per step to stdout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram: log-linear, 32 sub-buckets per power of two (about 3 % resolution) ---- */
#define H_SUB 32
#define H_BUCKETS (64 * H_SUB)

typedef struct hist {
    uint64_t count, max;
    uint64_t b[H_BUCKETS];
} hist;

static unsigned h_index(uint64_t v)
{
    if (v < 2 * H_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 5;
    return (shift + 1) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

static uint64_t h_value(unsigned i) /* the middle of bucket i */
{
    if (i < 2 * H_SUB)
        return i;
    unsigned shift = i / H_SUB - 1;
    uint64_t low = (uint64_t)(i % H_SUB + H_SUB) << shift;
    return low + ((1ull << shift) >> 1);
}

static void h_add(hist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

static void h_merge(hist *to, const hist *from)
{
    for (unsigned i = 0; i < H_BUCKETS; i++)
        to->b[i] += from->b[i];
    to->count += from->count;
    if (from->max > to->max)
        to->max = from->max;
}

static double h_pct(const hist *h, double p) /* in ms */
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->count + 0.5), seen = 0;
    if (want < 1)
        want = 1;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = h_value(i);
            return (double)(v > h->max ? h->max : v) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- options ---------------------------------------------------------------------------- */
enum proto { P_FWS, P_FLP, P_SWS, P_SPOLL, P_WS };
static const char *proto_names[] = {"ferry-ws", "ferry-lp", "sio-ws", "sio-poll", "ws"};

static struct {
    int port;
    enum proto proto;
    int conns, procs;
    double hold, step, storm, lp_rate;
    double rates[32];
    int nrates;
    int ports[16], nports, spread; /* the servers connections use (ports[0] = port) */
    int pids[16], npids;           /* the servers whose CPU, RSS and threads are read */
    double failover;               /* the failover step's rate */
    int kill_pid;                  /* the process it kills (kill_pids[0]) */
    int kill_pids[16], nkill;      /* --kill: each in turn */
    bool drain;                    /* --drain: SIGTERM, and each node comes back between */
    int size;
    const char *label;
    const char *path;
    int concurrency;
    int ack_ms;
} opt = {.procs = 1, .step = 5, .size = 100, .concurrency = 256, .ack_ms = 2000};

/* ---- per-connection state ------------------------------------------------------------- */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

typedef struct sock {
    int fd;
    bool wout; /* registered for EPOLLOUT */
    buf in, out;
} sock;

enum state { C_IDLE, C_TCP, C_UPGRADE, C_HANDSHAKE, C_READY, C_FAILED };

typedef struct conn {
    sock s[2];            /* s[1]: sio-poll's short-lived POST connection */
    uint8_t state;
    bool poll_out;        /* a poll (ferry-lp, sio-poll GET) is outstanding */
    bool post_busy;       /* sio-poll: a POST is outstanding */
    bool ever;            /* reached C_READY at least once */
    bool fresh;           /* first connected during a storm: its sequence starts there */
    uint64_t last_n;      /* last application sequence number received */
    uint64_t fseq, facked;/* ferry: highest seq received, highest acked */
    uint32_t unacked;     /* ferry-ws: bytes received since the last ack */
    uint64_t ready_at;    /* after a drop: when this connection was ready again (us) */
    uint64_t lost_at;     /* when it lost its server, until it is ready on another (us) */
    uint8_t port_i;       /* which of opt.ports it uses */
    uint8_t tries;        /* ports tried since it lost its server */
    uint8_t moves_ok;     /* times it moved and was ready again */
    char sid[48], secret[64];
    char rid[24], rid_for[64]; /* ferry: the resume attempt ID, made for the secret rid_for */
    char pid[48], offset[48]; /* Socket.IO connection state recovery */
    buf post_q;           /* sio-poll: packets waiting for the POST connection */
} conn;

typedef struct stats {
    uint64_t received, lost, dup, ooo, responses, resumed, reset, failed, errors;
    uint64_t rehandshakes; /* ferry-lp: polls answered 404, then resumed */
    uint64_t recovered;   /* messages that arrived in a resume's first batch */
    uint64_t losses;      /* connections that lost their server (each time) */
    uint64_t moved;       /* of those, back on another server */
    int moving;           /* connections between losing their server and ready again */
    double ready_s;       /* seconds from the start of a connect/reconnect until all ready */
    double cpu_s;
    int ready;
} stats;

/* ---- worker ------------------------------------------------------------------------------ */
static conn *conns;
static int nconns, ep, ctl;
static int next_connect, inflight, nready;
static uint64_t phase_start;
static bool phase_done_sent, phase_active, dropping;
static stats st;
static hist hi;
static uint32_t mask_state = 2463534242u;
static struct sockaddr_in server;
static int conn_base;          /* the global index of this worker's first connection */
static int *moveq;             /* connections waiting to reconnect to another server (a ring) */
static int moveq_head, moveq_len;
static hist rh;                /* per moved connection: from losing its server to resumed */

static int buf_put(buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    return 0;
}

static void buf_drop(buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static uint64_t tag(conn *c, int which)
{
    return ((uint64_t)(c - conns) << 1) | (uint64_t)which;
}

static int sock_flush(conn *c, int which)
{
    sock *s = &c->s[which];
    while (s->out.len) {
        ssize_t n = send(s->fd, s->out.p, s->out.len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN))
            break; /* ENOTCONN: still connecting; EPOLLOUT says when */
        if (n <= 0)
            return -1;
        buf_drop(&s->out, (size_t)n);
    }
    bool want = s->out.len > 0 || (c->state == C_TCP && which == 0);
    if (want != s->wout) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                                 .data.u64 = tag(c, which)};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        s->wout = want;
    }
    return 0;
}

static int sock_send(conn *c, int which, const void *d, size_t n)
{
    if (buf_put(&c->s[which].out, d, n))
        return -1;
    return sock_flush(c, which);
}

static void sock_close(sock *s)
{
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->fd = -1;
    s->in.len = s->out.len = 0;
}

static int sock_open(conn *c, int which)
{
    sock *s = &c->s[which];
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in to = server;
    to.sin_port = htons((uint16_t)opt.ports[c->port_i]);
    if (connect(s->fd, (struct sockaddr *)&to, sizeof to) && errno != EINPROGRESS) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = tag(c, which)};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    s->wout = true;
    return 0;
}

/* WebSocket client frame: always masked. */
static int ws_send(conn *c, int op, const char *d, size_t n)
{
    unsigned char h[14];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | op);
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    mask_state ^= mask_state << 13;
    mask_state ^= mask_state >> 17;
    mask_state ^= mask_state << 5;
    unsigned char m[4];
    memcpy(m, &mask_state, 4);
    memcpy(h + hl, m, 4);
    hl += 4;
    buf *o = &c->s[0].out;
    if (buf_put(o, h, hl) || buf_put(o, d, n))
        return -1;
    unsigned char *p = (unsigned char *)o->p + o->len - n;
    for (size_t i = 0; i < n; i++)
        p[i] ^= m[i & 3];
    return sock_flush(c, 0);
}

static const char ws_key_req[] = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
static const char ws_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static int send_upgrade(conn *c)
{
    char req[512];
    const char *path = opt.path;
    if (!path)
        path = opt.proto == P_FWS   ? "/ferry/ws"
               : opt.proto == P_SWS ? "/socket.io/?EIO=4&transport=websocket"
                                    : "/ws";
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n%sSec-WebSocket-Version: 13\r\n\r\n",
                     path, opt.port, ws_key_req);
    return sock_send(c, 0, req, (size_t)n);
}

static int send_http(conn *c, int which, const char *method, const char *target,
                     const char *extra, const char *body, size_t blen)
{
    char head[640];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s%s", method, target,
                     opt.port, extra ? extra : "", body ? "Content-Type: text/plain\r\n" : "",
                     body ? "" : "\r\n");
    if (body) {
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n\r\n", blen);
    }
    if (buf_put(&c->s[which].out, head, (size_t)n) ||
        (body && buf_put(&c->s[which].out, body, blen)))
        return -1;
    return sock_flush(c, which);
}

/* ---- handshakes per protocol ------------------------------------------------------------ */
/* As the bundled client does (docs/PROTOCOL.md, "Attempt IDs"): every retry with one secret
 * carries the same random attempt ID, a newer secret a new one. */
static void ferry_rid(conn *c)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (c->rid[0] && !strcmp(c->rid_for, c->secret))
        return;
    unsigned char r[22];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)rand();
    for (size_t i = 0; i < sizeof r; i++)
        c->rid[i] = b64[r[i] & 63];
    c->rid[sizeof r] = '\0';
    snprintf(c->rid_for, sizeof c->rid_for, "%s", c->secret);
}

static int ferry_handshake_text(conn *c, char *out, size_t size)
{
    if (c->sid[0]) {
        ferry_rid(c);
        return snprintf(out, size,
                        "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%" PRIu64
                        ",\"rid\":\"%s\"}",
                        c->sid, c->secret, c->fseq, c->rid);
    }
    return snprintf(out, size, "{\"t\":\"hello\",\"v\":1}");
}

/* ferry-lp: POST the handshake (hello, or resume once the connection has a session). */
static int lp_handshake(conn *c)
{
    char hs[256];
    int hl = ferry_handshake_text(c, hs, sizeof hs);
    c->poll_out = true;
    return send_http(c, 0, "POST", opt.path ? opt.path : "/ferry/lp", NULL, hs, (size_t)hl);
}

static int lp_poll(conn *c)
{
    char target[64], auth[160];
    snprintf(target, sizeof target, "%s?ack=%" PRIu64, opt.path ? opt.path : "/ferry/lp",
             c->fseq);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s:%s\r\n", c->sid, c->secret);
    c->poll_out = true;
    c->facked = c->fseq;
    return send_http(c, 0, "GET", target, auth, NULL, 0);
}

static int sio_poll(conn *c)
{
    char target[128];
    snprintf(target, sizeof target, "/socket.io/?EIO=4&transport=polling%s%s",
             c->sid[0] ? "&sid=" : "", c->sid);
    c->poll_out = true;
    return send_http(c, 0, "GET", target, NULL, NULL, 0);
}

static int sio_post(conn *c, const char *pkt)
{
    if (c->post_q.len && buf_put(&c->post_q, "\x1e", 1))
        return -1;
    if (buf_put(&c->post_q, pkt, strlen(pkt)))
        return -1;
    if (c->post_busy)
        return 0;
    if (sock_open(c, 1))
        return -1;
    char target[128];
    snprintf(target, sizeof target, "/socket.io/?EIO=4&transport=polling&sid=%s", c->sid);
    c->post_busy = true;
    int rc = send_http(c, 1, "POST", target, "Connection: close\r\n", c->post_q.p, c->post_q.len);
    c->post_q.len = 0;
    return rc;
}

static void conn_start(conn *c)
{
    c->state = C_TCP;
    c->poll_out = false;
    inflight++;
    if (sock_open(c, 0)) {
        c->state = C_FAILED;
        inflight--;
        st.failed++;
    }
}

static void became_ready(conn *c)
{
    if (c->state == C_READY)
        return;
    if (c->lost_at) { /* back, on another server */
        h_add(&rh, now_us() - c->lost_at);
        st.moved++;
        st.moving--;
        if (c->moves_ok < 255)
            c->moves_ok++;
        c->lost_at = 0;
        c->tries = 0;
    }
    c->state = C_READY;
    if (!c->ever && dropping)
        c->fresh = true; /* it failed to connect at first: nothing before now is its loss */
    c->ever = true;
    c->ready_at = now_us();
    inflight--;
    nready++;
}

/* Failed, or (with several servers) waiting to reconnect to another: nothing more to do on
 * its old socket. */
static bool gone(const conn *c)
{
    return c->state == C_FAILED || c->state == C_IDLE;
}

static const char *state_names[] = {"idle", "tcp", "upgrade", "handshake", "ready", "failed"};

/* With several servers (--ports), a connection that had been ready and lost its server goes
 * to another: the first try spreads the moved connections over the other ports by index,
 * later tries take the next port in turn, 2 rounds of the list at most. Returns false when
 * it does not move (then it fails). */
static bool conn_move(conn *c)
{
    if (opt.nports < 2 || !c->ever || c->tries >= 2 * opt.nports)
        return false;
    if (c->state == C_READY)
        nready--;
    else if (c->state != C_IDLE && c->state != C_FAILED)
        inflight--;
    if (!c->lost_at) {
        c->lost_at = now_us();
        st.losses++;
        st.moving++;
    }
    int g = conn_base + (int)(c - conns);
    int step = c->tries ? 1 : 1 + g % (opt.nports - 1);
    c->port_i = (uint8_t)((c->port_i + step) % opt.nports);
    c->tries++;
    sock_close(&c->s[0]);
    sock_close(&c->s[1]);
    c->post_busy = c->poll_out = false;
    c->post_q.len = 0;
    c->unacked = 0;
    c->facked = 0;
    c->state = C_IDLE;
    moveq[(moveq_head + moveq_len++) % nconns] = (int)(c - conns);
    return true;
}

static void conn_fail_at(conn *c, const char *why, int line)
{
    static int shown, again;
    bool was_moving = c->lost_at != 0, ready = c->state == C_READY;
    if (conn_move(c)) {
        /* Losing the first server is the expected part; say why a connection had to move
         * again (its new server closed it or refused it). */
        if ((was_moving || c->moves_ok) && again++ < 5)
            fprintf(stderr, "fyload: connection %d moves again from state %s: %s (fyload.c:%d)\n",
                    (int)(c - conns), ready ? "ready" : "connecting", why, line);
        return;
    }
    if (c->lost_at) { /* it ran out of ports to try */
        st.moving--;
        c->lost_at = 0;
    }
    if (shown++ < 5)
        fprintf(stderr, "fyload: connection %d failed in state %s: %s (fyload.c:%d)\n",
                (int)(c - conns), state_names[c->state], why, line);
    if (c->state != C_READY && c->state != C_FAILED) {
        inflight--;
        st.failed++;
    }
    if (c->state == C_READY)
        nready--;
    c->state = C_FAILED;
    st.errors++;
    sock_close(&c->s[0]);
    sock_close(&c->s[1]);
}
#define conn_fail(c) conn_fail_at(c, errno ? strerror(errno) : "protocol", __LINE__)

/* ---- messages --------------------------------------------------------------------------- */
/* "<n> <t_us> xxx": checks the sequence and records the latency. */
static void app_payload(conn *c, const char *p, const char *end, uint64_t now)
{
    char *e;
    uint64_t n = strtoull(p, &e, 10);
    if (e == p || e >= end)
        return;
    uint64_t t = strtoull(e + 1, NULL, 10);
    st.received++;
    if (c->fresh) {
        c->fresh = false;
        c->last_n = n - 1;
    }
    if (n == c->last_n + 1) {
        c->last_n = n;
    } else if (n > c->last_n + 1) {
        static int shown;
        if (shown++ < 5) /* the evidence of a gap: which session, which messages */
            fprintf(stderr, "fyload: connection %d, session %s: messages %" PRIu64 " to %" PRIu64
                    " missing (port %d, seq %" PRIu64 ")\n", (int)(c - conns), c->sid,
                    c->last_n + 1, n - 1, opt.ports[c->port_i], c->fseq);
        st.lost += n - c->last_n - 1;
        c->last_n = n;
    } else if (n == c->last_n) {
        st.dup++;
    } else {
        st.ooo++;
    }
    if (t < c->ready_at)
        st.recovered++; /* published while this connection was down */
    h_add(&hi, now > t ? now - t : 0);
}

static const char *obj_end(const char *p, const char *end) /* p at '{' */
{
    int depth = 0;
    for (; p < end; p++) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0)
                return p + 1;
        }
    }
    return NULL;
}

static void ferry_ack(conn *c)
{
    if (c->fseq <= c->facked || c->state != C_READY || opt.proto != P_FWS)
        return;
    char t[64];
    int n = snprintf(t, sizeof t, "{\"t\":\"ack\",\"ack\":%" PRIu64 "}", c->fseq);
    c->facked = c->fseq;
    c->unacked = 0;
    if (ws_send(c, 1, t, (size_t)n))
        conn_fail(c);
}

static void ferry_slow_frame(conn *c, const char *p, size_t n, uint64_t now)
{
    json_error_t err;
    json_t *o = json_loadb(p, n, 0, &err);
    const char *t = json_string_value(json_object_get(o, "t"));
    if (!t) {
        st.errors++;
    } else if (!strcmp(t, "welcome")) {
        snprintf(c->sid, sizeof c->sid, "%s", json_string_value(json_object_get(o, "sid")));
        snprintf(c->secret, sizeof c->secret, "%s",
                 json_string_value(json_object_get(o, "secret")));
        if (json_is_true(json_object_get(o, "resumed")))
            st.resumed++;
        became_ready(c);
        /* A frame at once retires the secret the handshake presented, so that a late copy
         * of the handshake cannot take the session over (the bundled client does the
         * same; a poll does it on long-polling). */
        if (opt.proto == P_FWS) {
            char ackf[64];
            int k = snprintf(ackf, sizeof ackf, "{\"t\":\"ack\",\"ack\":%" PRIu64 "}", c->fseq);
            c->facked = c->fseq;
            c->unacked = 0;
            if (ws_send(c, 1, ackf, (size_t)k))
                conn_fail(c);
        }
    } else if (!strcmp(t, "reset")) {
        static int shown;
        if (shown++ < 5)
            fprintf(stderr, "fyload: connection %d session %s: %.*s\n", (int)(c - conns), c->sid,
                    (int)(n < 200 ? n : 200), p);
        st.reset++;
        c->fseq = c->facked = 0;
    } else if (!strcmp(t, "ping")) {
        if (opt.proto == P_FWS)
            ws_send(c, 1, "{\"t\":\"pong\"}", 12);
    } else if (!strcmp(t, "msg")) { /* a msg whose fields came in another order */
        const char *d = json_string_value(json_object_get(o, "data"));
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(o, "seq"));
        if (d)
            app_payload(c, d, d + strlen(d), now);
        if (seq > c->fseq)
            c->fseq = seq;
    } else if (strcmp(t, "pong") && strcmp(t, "ack")) {
        st.errors++;
        fprintf(stderr, "fyload: %.*s\n", (int)(n < 200 ? n : 200), p);
    }
    json_decref(o);
}

/* One ferry frame or batch (WebSocket message or long-poll body). */
static void ferry_text(conn *c, const char *p, size_t n, uint64_t now)
{
    const char *end = p + n, *q = p;
    if (*q == '[')
        q++;
    while (q < end) {
        while (q < end && *q != '{')
            q++;
        if (q >= end)
            break;
        const char *e = obj_end(q, end);
        if (!e) {
            st.errors++;
            break;
        }
        static const char msgp[] = "{\"t\":\"msg\",\"seq\":";
        if ((size_t)(e - q) > sizeof msgp && !memcmp(q, msgp, sizeof msgp - 1)) {
            uint64_t seq = strtoull(q + sizeof msgp - 1, NULL, 10);
            const char *d = memmem(q, (size_t)(e - q), "\"data\":\"", 8);
            if (seq > c->fseq)
                c->fseq = seq;
            if (d)
                app_payload(c, d + 8, e, now);
        } else {
            ferry_slow_frame(c, q, (size_t)(e - q), now);
        }
        q = e;
    }
    if (opt.proto == P_FWS) {
        c->unacked += (uint32_t)n;
        if (c->unacked >= 32768) /* half the default ack_bytes window, as the JS client */
            ferry_ack(c);
    }
}

static void sio_packet(conn *c, const char *p, size_t n, uint64_t now)
{
    if (!n)
        return;
    if (p[0] == '2' && n == 1) {
        if (opt.proto == P_SWS)
            ws_send(c, 1, "3", 1);
        else
            sio_post(c, "3");
    } else if (p[0] == '0') {
        json_t *o = json_loadb(p + 1, n - 1, 0, NULL);
        const char *sid = json_string_value(json_object_get(o, "sid"));
        snprintf(c->sid, sizeof c->sid, "%s", sid ? sid : "");
        json_decref(o);
        char pkt[160] = "40";
        if (c->pid[0])
            snprintf(pkt, sizeof pkt, "40{\"pid\":\"%s\",\"offset\":\"%s\"}", c->pid, c->offset);
        if (opt.proto == P_SWS)
            ws_send(c, 1, pkt, strlen(pkt));
        else
            sio_post(c, pkt);
    } else if (n >= 2 && p[0] == '4' && p[1] == '0') {
        json_t *o = json_loadb(p + 2, n - 2, 0, NULL);
        const char *pid = json_string_value(json_object_get(o, "pid"));
        if (c->pid[0] && pid && !strcmp(pid, c->pid)) {
            st.resumed++; /* the server recovered the connection's state */
        } else if (c->pid[0]) {
            st.reset++;
        }
        snprintf(c->pid, sizeof c->pid, "%s", pid ? pid : "");
        json_decref(o);
        became_ready(c);
    } else if (n > 8 && !memcmp(p, "42[\"m\",\"", 8)) {
        const char *end = p + n;
        app_payload(c, p + 8, end, now);
        /* With connection state recovery the packet ends with ,"<offset>"] */
        const char *q = memchr(p + 8, '"', (size_t)(end - p - 8));
        if (q && q + 3 < end && q[1] == ',' && q[2] == '"') {
            const char *oe = memchr(q + 3, '"', (size_t)(end - q - 3));
            if (oe && (size_t)(oe - q - 3) < sizeof c->offset) {
                memcpy(c->offset, q + 3, (size_t)(oe - q - 3));
                c->offset[oe - q - 3] = '\0';
            }
        }
    } else if (p[0] != '3' && p[0] != '6') {
        st.errors++;
        fprintf(stderr, "fyload: sio packet %.*s\n", (int)(n < 200 ? n : 200), p);
    }
}

/* ---- input parsing ---------------------------------------------------------------------- */
/* A complete HTTP response at the front of `in`: 1 with status and body, 0 if incomplete,
 * -1 if malformed. Chunked bodies are decoded into `tmp`. */
static int http_take(buf *in, int *status, const char **body, size_t *blen, size_t *used,
                     bool *closing, buf *tmp)
{
    char *he = memmem(in->p, in->len, "\r\n\r\n", 4);
    if (!he)
        return in->len > 16384 ? -1 : 0;
    size_t hlen = (size_t)(he - in->p) + 4;
    if (in->len < 12 || memcmp(in->p, "HTTP/1.1 ", 9))
        return -1;
    *status = atoi(in->p + 9);
    *closing = false;
    long clen = -1;
    bool chunked = false;
    for (char *l = memchr(in->p, '\n', hlen); l && l < he; l = memchr(l, '\n', (size_t)(he - l))) {
        l++;
        if (!strncasecmp(l, "content-length:", 15))
            clen = atol(l + 15);
        else if (!strncasecmp(l, "transfer-encoding:", 18) && memmem(l, 40, "chunked", 7))
            chunked = true;
        else if (!strncasecmp(l, "connection:", 11) && !strncasecmp(l + 11, " close", 6))
            *closing = true;
    }
    if (*status == 101) {
        *body = NULL;
        *blen = 0;
        *used = hlen;
        return 1;
    }
    if (chunked) {
        tmp->len = 0;
        size_t off = hlen;
        for (;;) {
            char *crlf = memmem(in->p + off, in->len - off, "\r\n", 2);
            if (!crlf)
                return 0;
            size_t sz = strtoul(in->p + off, NULL, 16);
            off = (size_t)(crlf - in->p) + 2;
            if (in->len < off + sz + 2)
                return 0;
            if (!sz) {
                *used = off + 2;
                break;
            }
            buf_put(tmp, in->p + off, sz);
            off += sz + 2;
        }
        buf_put(tmp, "", 1);
        tmp->len--;
        *body = tmp->p;
        *blen = tmp->len;
        return 1;
    }
    if (clen < 0)
        clen = 0;
    if (in->len < hlen + (size_t)clen)
        return 0;
    *body = in->p + hlen;
    *blen = (size_t)clen;
    *used = hlen + (size_t)clen;
    return 1;
}

static buf chunk_tmp;

static void on_ws_message(conn *c, int op, char *p, size_t n, uint64_t now)
{
    if (op == 9) { /* ping */
        ws_send(c, 10, p, n);
        return;
    }
    if (op == 8) {
        char why[160];
        snprintf(why, sizeof why, "close frame %d %.*s", n >= 2 ? ((unsigned char)p[0] << 8) | (unsigned char)p[1] : 1005,
                 n > 2 ? (int)(n - 2 < 120 ? n - 2 : 120) : 0, n > 2 ? p + 2 : "");
        conn_fail_at(c, why, __LINE__);
        return;
    }
    if (op != 1 || !n)
        return;
    switch (opt.proto) {
    case P_FWS:
        ferry_text(c, p, n, now);
        break;
    case P_SWS:
        sio_packet(c, p, n, now);
        break;
    case P_WS:
        app_payload(c, p, p + n, now);
        break;
    default:
        break;
    }
}

/* Parses what came in on the main connection; returns -1 to drop it. */
static int parse_main(conn *c, uint64_t now)
{
    buf *in = &c->s[0].in;
    size_t off = 0;
    int rc = 0;
    while (rc == 0 && off < in->len) {
        if (c->state == C_UPGRADE || opt.proto == P_FLP || opt.proto == P_SPOLL) {
            buf view = {in->p + off, in->len - off, 0};
            int status;
            const char *body;
            size_t blen, used;
            bool closing;
            int r = http_take(&view, &status, &body, &blen, &used, &closing, &chunk_tmp);
            if (r == 0)
                break;
            if (r < 0) {
                rc = -1;
                break;
            }
            off += used;
            if (c->state == C_UPGRADE) {
                if (status != 101 || !memmem(in->p, used, ws_accept, sizeof ws_accept - 1)) {
                    rc = -1;
                    break;
                }
                c->state = C_HANDSHAKE;
                if (opt.proto == P_FWS) {
                    char hs[256];
                    int hl = ferry_handshake_text(c, hs, sizeof hs);
                    if (ws_send(c, 1, hs, (size_t)hl))
                        rc = -1;
                } else if (opt.proto == P_WS) {
                    became_ready(c);
                }
                continue;
            }
            if (status == 404 && opt.proto == P_FLP && c->state == C_READY) {
                /* The poll lost its session (it was resumed elsewhere, or the secret moved
                 * on): as the protocol says, resume with a handshake. */
                st.rehandshakes++;
                if (lp_handshake(c))
                    rc = -1;
                continue;
            }
            if (status != 200) {
                fprintf(stderr, "fyload: HTTP %d: %.*s\n", status, (int)(blen < 200 ? blen : 200),
                        body);
                rc = -1;
                break;
            }
            c->poll_out = false;
            if (opt.proto == P_FLP) {
                st.responses++;
                ferry_text(c, body, blen, now);
            } else {
                st.responses++;
                const char *q = body, *end = body + blen;
                while (q < end) {
                    const char *sep = memchr(q, 0x1e, (size_t)(end - q));
                    if (!sep)
                        sep = end;
                    sio_packet(c, q, (size_t)(sep - q), now);
                    q = sep + 1;
                }
            }
            if (closing)
                rc = 1; /* the server ends this connection: poll again on a new one */
            continue;
        }
        /* WebSocket frames from the server: never masked. */
        unsigned char *h = (unsigned char *)in->p + off;
        size_t avail = in->len - off;
        if (avail < 2)
            break;
        size_t len = h[1] & 0x7f, hl = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (size_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (avail < hl + len)
            break;
        if (!(h[0] & 0x80)) {
            fprintf(stderr, "fyload: fragmented frame\n");
            rc = -1;
            break;
        }
        off += hl + len;
        on_ws_message(c, h[0] & 0x0f, (char *)h + hl, len, now);
        if (gone(c))
            return 0;
    }
    if (!gone(c) && c->s[0].fd >= 0)
        buf_drop(in, off);
    return rc;
}

/* After a long-poll response: issue the next poll. */
static void poll_again(conn *c)
{
    if (gone(c) || c->poll_out)
        return;
    int rc = opt.proto == P_FLP ? lp_poll(c) : sio_poll(c);
    if (rc)
        conn_fail(c);
}

/* The server ended a keep-alive connection between polls: poll again on a new one. */
static void reopen_poll(conn *c)
{
    sock_close(&c->s[0]);
    c->poll_out = false;
    if (sock_open(c, 0)) {
        conn_fail(c);
        return;
    }
    poll_again(c);
}

static void on_event(conn *c, int which, uint32_t events)
{
    sock *s = &c->s[which];
    uint64_t now = now_us();
    if (s->fd < 0)
        return;
    if (events & EPOLLOUT) {
        if (c->state == C_TCP && which == 0) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err) {
                conn_fail(c);
                return;
            }
            if (opt.proto == P_FWS || opt.proto == P_SWS || opt.proto == P_WS) {
                c->state = C_UPGRADE;
                if (send_upgrade(c))
                    conn_fail(c);
            } else if (opt.proto == P_FLP) {
                c->state = C_HANDSHAKE;
                if (lp_handshake(c))
                    conn_fail(c);
            } else {
                c->state = C_HANDSHAKE;
                c->sid[0] = '\0';
                if (sio_poll(c))
                    conn_fail(c);
            }
            return;
        }
        if (sock_flush(c, which)) {
            conn_fail(c);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        if (s->in.cap - s->in.len < 8192) {
            size_t cap = s->in.cap ? s->in.cap * 2 : 16384;
            char *p = realloc(s->in.p, cap);
            if (!p) {
                conn_fail(c);
                return;
            }
            s->in.p = p;
            s->in.cap = cap;
        }
        size_t room = s->in.cap - s->in.len - 1;
        ssize_t n = recv(s->fd, s->in.p + s->in.len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            if (which == 1) { /* sio-poll POST connection closed after its answer */
                sock_close(s);
                c->post_busy = false;
                if (c->post_q.len) {
                    char pk[256];
                    size_t l = c->post_q.len < sizeof pk - 1 ? c->post_q.len : sizeof pk - 1;
                    memcpy(pk, c->post_q.p, l);
                    pk[l] = '\0';
                    c->post_q.len = 0;
                    sio_post(c, pk);
                }
                return;
            }
            if ((opt.proto == P_FLP || opt.proto == P_SPOLL) && c->state == C_READY &&
                !c->poll_out) {
                reopen_poll(c); /* keep-alive ended between polls */
                return;
            }
            conn_fail(c);
            return;
        }
        s->in.len += (size_t)n;
        if ((size_t)n < room)
            break; /* drained; epoll is level-triggered, so more data wakes us again */
    }
    if (which == 1) { /* answers to POSTs: only their status matters */
        int status;
        const char *body;
        size_t blen, used;
        bool closing;
        int r = http_take(&s->in, &status, &body, &blen, &used, &closing, &chunk_tmp);
        if (r < 0 || (r > 0 && status != 200)) {
            conn_fail(c);
            return;
        }
        if (r > 0)
            buf_drop(&s->in, used);
        return;
    }
    int rc = parse_main(c, now);
    if (gone(c))
        return;
    if (rc < 0) {
        conn_fail(c);
        return;
    }
    if (opt.proto == P_FLP || opt.proto == P_SPOLL) {
        if (rc == 1)
            reopen_poll(c);
        else if (c->state == C_READY || opt.proto == P_SPOLL)
            poll_again(c);
    }
}

/* ---- the worker's loop and its control channel ------------------------------------------- */
enum { CMD_CONNECT = 1, CMD_STATUS, CMD_RESET, CMD_REPORT, CMD_DROP, CMD_QUIT };

typedef struct cmd {
    int op;
    uint64_t last;
} cmd;

typedef struct report {
    stats st;
    hist h, rh;
} report;

static struct rusage ru0;

static double ru_s(const struct rusage *r)
{
    return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
           (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

static void ramp(void)
{
    while (moveq_len && inflight < opt.concurrency) {
        conn *c = &conns[moveq[moveq_head]];
        moveq_head = (moveq_head + 1) % nconns;
        moveq_len--;
        if (c->state == C_IDLE)
            conn_start(c);
    }
    while (phase_active && inflight < opt.concurrency && next_connect < nconns) {
        conn *c = &conns[next_connect++];
        if (c->state != C_READY)
            conn_start(c);
    }
    if (phase_active && !phase_done_sent && next_connect >= nconns && inflight <= 0) {
        st.ready_s = (double)(now_us() - phase_start) / 1e6;
        st.ready = nready;
        phase_done_sent = true;
        phase_active = false;
        send(ctl, &st, sizeof st, 0);
    }
}

static void worker(int count, int base)
{
    nconns = count;
    conn_base = base;
    conns = calloc((size_t)count, sizeof *conns);
    moveq = calloc((size_t)count, sizeof *moveq);
    for (int i = 0; i < count; i++) {
        conns[i].s[0].fd = conns[i].s[1].fd = -1;
        conns[i].port_i = (uint8_t)((base + i) % opt.spread);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev);
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t last_sweep = now_us();
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, 20);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == UINT64_MAX) {
                cmd k;
                if (recv(ctl, &k, sizeof k, 0) != sizeof k)
                    _exit(0);
                if (k.op == CMD_QUIT)
                    _exit(0);
                if (k.op == CMD_CONNECT || k.op == CMD_DROP) {
                    dropping = k.op == CMD_DROP;
                    if (k.op == CMD_DROP) {
                        for (int j = 0; j < nconns; j++) {
                            conn *c = &conns[j];
                            sock_close(&c->s[0]);
                            sock_close(&c->s[1]);
                            c->post_busy = c->poll_out = false;
                            c->post_q.len = 0;
                            c->unacked = 0;
                            c->facked = 0;
                            c->lost_at = 0;
                            c->tries = 0;
                            if (c->state == C_READY)
                                nready--;
                            c->state = C_IDLE;
                        }
                        inflight = 0;
                        moveq_len = 0;
                        st.moving = 0;
                    }
                    if (k.op == CMD_CONNECT)
                        for (int j = 0; j < nconns; j++)
                            conns[j].last_n = k.last;
                    for (int j = 0; j < nconns; j++)
                        conns[j].ready_at = 0;
                    next_connect = 0;
                    phase_start = now_us();
                    phase_done_sent = false;
                    phase_active = true;
                    st.failed = 0;
                } else if (k.op == CMD_STATUS) {
                    stats s = st;
                    s.ready = nready;
                    send(ctl, &s, sizeof s, 0);
                } else if (k.op == CMD_RESET) {
                    memset(&hi, 0, sizeof hi);
                    memset(&rh, 0, sizeof rh);
                    uint64_t keep_failed = st.failed;
                    int keep_moving = st.moving;
                    memset(&st, 0, sizeof st);
                    st.failed = keep_failed;
                    st.moving = keep_moving;
                    getrusage(RUSAGE_SELF, &ru0);
                } else if (k.op == CMD_REPORT) {
                    for (int j = 0; j < nconns; j++) {
                        conn *c = &conns[j];
                        if (c->ever && c->last_n < k.last) {
                            st.lost += k.last - c->last_n;
                            c->last_n = k.last; /* counted once */
                        }
                    }
                    struct rusage ru;
                    getrusage(RUSAGE_SELF, &ru);
                    static report r;
                    r.st = st;
                    r.st.ready = nready;
                    r.st.cpu_s = ru_s(&ru) - ru_s(&ru0);
                    r.h = hi;
                    r.rh = rh;
                    send(ctl, &r, sizeof r, 0);
                }
                continue;
            }
            conn *c = &conns[evs[i].data.u64 >> 1];
            on_event(c, (int)(evs[i].data.u64 & 1), evs[i].events);
        }
        ramp();
        uint64_t now = now_us();
        if (now - last_sweep >= (uint64_t)opt.ack_ms * 1000) {
            last_sweep = now;
            if (opt.proto == P_FWS)
                for (int j = 0; j < nconns; j++)
                    ferry_ack(&conns[j]);
        }
    }
}

/* ---- the parent: server control, steps, JSON ------------------------------------------- */
static int nworkers;
static int wfd[64];
static pid_t wpid[64];

static void to_all(int op, uint64_t last)
{
    cmd k = {op, last};
    for (int i = 0; i < nworkers; i++)
        send(wfd[i], &k, sizeof k, 0);
}

static stats status_sum(void)
{
    stats sum = {0};
    to_all(CMD_STATUS, 0);
    for (int i = 0; i < nworkers; i++) {
        stats s;
        if (recv(wfd[i], &s, sizeof s, 0) != sizeof s) {
            fprintf(stderr, "fyload: worker %d died\n", i);
            exit(2);
        }
        sum.received += s.received;
        sum.ready += s.ready;
        sum.failed += s.failed;
        sum.resumed += s.resumed;
        sum.lost += s.lost;
        sum.losses += s.losses;
        sum.moved += s.moved;
        sum.moving += s.moving;
    }
    return sum;
}

static int connected_total;
static void emit_common(const char *step);

/* After wait_ready gave up: asks every worker how many of its connections are ready and
 * prints the step's JSON line with "finished":false and what is known ("connected" at the
 * first connect, "reconnected" after a storm's drop), so the report can show the step
 * instead of leaving it out. A worker still connecting may answer with its
 * late "all connected" message instead; both carry its ready count. */
static void gave_up(const char *step, int done, uint64_t waited_us)
{
    to_all(CMD_STATUS, 0);
    int ready = 0, answered = 0;
    for (int i = 0; i < nworkers; i++) {
        struct pollfd pf = {.fd = wfd[i], .events = POLLIN};
        stats s;
        if (poll(&pf, 1, 2000) == 1 && recv(wfd[i], &s, sizeof s, 0) == sizeof s) {
            ready += s.ready;
            answered++;
        }
    }
    bool first = !strcmp(step, "connect");
    if (first)
        connected_total = ready;
    emit_common(step);
    printf(",\"finished\":false,\"waited_s\":%.1f,\"workers_done\":%d,"
           "\"workers_answered\":%d",
           (double)waited_us / 1e6, done, answered);
    if (!first)
        printf(",\"reconnected\":%d", ready);
    printf("}\n");
    fflush(stdout);
    fprintf(stderr, "fyload: %s %s: %d of %d ready when it gave up, %d of %d workers done\n",
            opt.label, step, ready, opt.conns, done, nworkers);
}

/* Waits for every worker's "all connected" answer, printing progress; gives up after 120 s
 * (exit 2), saying first how far it got. */
static stats wait_ready(const char *what, const char *step)
{
    stats sum = {0};
    int done = 0;
    bool got[64] = {0};
    uint64_t t0 = now_us(), last_print = t0;
    while (done < nworkers) {
        for (int i = 0; i < nworkers; i++) {
            if (got[i])
                continue;
            stats s;
            ssize_t r = recv(wfd[i], &s, sizeof s, MSG_DONTWAIT);
            if (r == sizeof s) {
                got[i] = true;
                done++;
                sum.ready += s.ready;
                sum.failed += s.failed;
                if (s.ready_s > sum.ready_s)
                    sum.ready_s = s.ready_s;
            } else if (r == 0) {
                fprintf(stderr, "fyload: worker %d died\n", i);
                exit(2);
            }
        }
        usleep(10000);
        if (now_us() - last_print > 1000000) {
            last_print = now_us();
            fprintf(stderr, "fyload: %s %s: %d of %d workers done after %.0f s\n", opt.label,
                    what, done, nworkers, (double)(now_us() - t0) / 1e6);
        }
        if (now_us() - t0 > 120000000u) {
            fprintf(stderr, "fyload: %s: gave up after 120 s\n", what);
            gave_up(step, done, now_us() - t0);
            exit(2);
        }
    }
    return sum;
}

/* A blocking HTTP GET to the server under test; returns the body (static) or NULL. */
static const char *control(const char *target)
{
    static char resp[4096];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&server, sizeof server)) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", target);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t len = 0;
    ssize_t r;
    while (len < sizeof resp - 1 && (r = read(fd, resp + len, sizeof resp - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    resp[len] = '\0';
    char *b = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.1 200", 12) || !b)
        return NULL;
    return b + 4;
}

static uint64_t json_u64(const char *text, const char *key)
{
    const char *p = text ? strstr(text, key) : NULL;
    return p ? strtoull(p + strlen(key) + 1, NULL, 10) : 0; /* past the key and ':' */
}

/* The servers' CPU time, RSS and threads, summed over --pid's processes. */
typedef struct proc_sample {
    double user_s, sys_s;
    long rss_kb, threads;
    double pid_user_s[16], pid_sys_s[16];
    bool alive[16];
} proc_sample;

/* One process's state letter from /proc/PID/stat ('Z' a zombie), 0 if it is gone. */
static char proc_state(int pid, double *user_s, double *sys_s)
{
    char path[64], line[1024], state = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (fgets(line, sizeof line, f)) {
        char *q = strrchr(line, ')');
        unsigned long ut = 0, stt = 0;
        /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt
         * cmajflt utime stime */
        if (q && sscanf(q + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &state,
                        &ut, &stt) == 3 && user_s) {
            long hz = sysconf(_SC_CLK_TCK);
            *user_s = (double)ut / (double)hz;
            *sys_s = (double)stt / (double)hz;
        }
    }
    fclose(f);
    return state;
}

static proc_sample proc_read(void)
{
    proc_sample p = {0};
    for (int i = 0; i < opt.npids; i++) {
        char st_ = proc_state(opt.pids[i], &p.pid_user_s[i], &p.pid_sys_s[i]);
        p.alive[i] = st_ && st_ != 'Z';
        if (!p.alive[i])
            continue;
        p.user_s += p.pid_user_s[i];
        p.sys_s += p.pid_sys_s[i];
        char path[64], line[1024];
        snprintf(path, sizeof path, "/proc/%d/status", opt.pids[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            while (fgets(line, sizeof line, f)) {
                if (!strncmp(line, "VmRSS:", 6))
                    p.rss_kb += atol(line + 6);
                else if (!strncmp(line, "Threads:", 8))
                    p.threads += atol(line + 8);
            }
            fclose(f);
        }
    }
    return p;
}

/* CPU seconds between two samples (user, system) over the processes alive in both. */
static void proc_delta(const proc_sample *a, const proc_sample *b, double *user_s, double *sys_s)
{
    *user_s = *sys_s = 0;
    for (int i = 0; i < opt.npids; i++)
        if (a->alive[i] && b->alive[i]) {
            *user_s += b->pid_user_s[i] - a->pid_user_s[i];
            *sys_s += b->pid_sys_s[i] - a->pid_sys_s[i];
        }
}

static void emit_common(const char *step)
{
    printf("{\"label\":\"%s\",\"proto\":\"%s\",\"conns\":%d,\"connected\":%d,\"procs\":%d,"
           "\"step\":\"%s\"",
           opt.label, proto_names[opt.proto], opt.conns, connected_total, nworkers, step);
}

/* The start time of process `pid` (clock ticks after boot, /proc/PID/stat), 0 if there is
 * none. Its threads hold PIDs too: a server with thousands of threads that exits gives
 * its PID back, and a server started next may take it for a thread, whose /proc entry
 * then answers for it. The start time tells them apart. */
static unsigned long long proc_start(int pid)
{
    char path[64], line[1024];
    unsigned long long start = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (fgets(line, sizeof line, f)) {
        char *q = strrchr(line, ')');
        char state = 0;
        /* after ")": fields 3 to 22, the last one starttime */
        if (!q || sscanf(q + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
                                "%*d %*d %*d %*d %llu", &state, &start) != 2 || state == 'Z')
            start = 0;
    }
    fclose(f);
    return start;
}

/* One kill of the failover step (docs in the header). */
typedef struct kill_rec {
    int pid;
    double gone_s, back_s, peak_per_s;
    uint64_t moved;
} kill_rec;

/* The most of `moved` gained within any second, from samples (t us, moved) in order. */
static double peak_per_s(const uint64_t *t, const uint64_t *moved, int n)
{
    uint64_t best = 0;
    for (int i = 0, j = 0; i < n; i++) {
        while (t[i] - t[j] > 1000000u)
            j++;
        if (moved[i] - moved[j] > best)
            best = moved[i] - moved[j];
    }
    return (double)best;
}

/* After the signal to `pid` at t_kill (`base`: the counts just before it): waits until its
 * server is gone (its sockets closed; 10 s for SIGKILL, 120 s for a drain), then until
 * every connection that lost it is ready on another; fills *k. Samples the connections back every 10 ms meanwhile, from the
 * signal on (a drain lets them go before it exits). Gives up after 300 s (exit 2). */
static stats wait_moved(const char *name, int pid, unsigned long long started, uint64_t t_kill,
                        stats base, kill_rec *k)
{
    enum { NSAMPLES = 30000 };
    static uint64_t ts[NSAMPLES], mv[NSAMPLES];
    int ns = 0;
    uint64_t losses0 = base.losses, moved0 = base.moved;
    uint64_t gone_limit = opt.drain ? 120000000u : 10000000u;
    uint64_t dead = 0, back_at = 0, last_print = t_kill;
    k->pid = pid;
    for (;;) {
        stats s = status_sum();
        uint64_t now = now_us();
        if (ns < NSAMPLES) {
            ts[ns] = now;
            mv[ns++] = s.moved - moved0;
        }
        if (!dead) {
            if (proc_start(pid) != started || now - t_kill >= gone_limit) {
                dead = now;
                fprintf(stderr, "fyload: %s: %d gone after %.3f s\n", opt.label, pid,
                        (double)(dead - t_kill) / 1e6);
            }
        } else if (s.losses > losses0 && s.moving == 0) {
            if (!back_at)
                back_at = now;
            if (now - dead >= 200000) { /* every connection had time to see its loss */
                k->gone_s = (double)(dead - t_kill) / 1e6;
                k->back_s = (double)(back_at - t_kill) / 1e6;
                k->moved = s.moved - moved0;
                k->peak_per_s = peak_per_s(ts, mv, ns);
                return s;
            }
        } else {
            back_at = 0;
        }
        if (now - last_print >= 1000000) {
            last_print = now;
            fprintf(stderr, "fyload: %s %s: %" PRIu64 " lost their server, %" PRIu64
                    " back, %d moving, after %.1f s\n", opt.label, name, s.losses - losses0,
                    s.moved - moved0, s.moving, (double)(now - t_kill) / 1e6);
        }
        if (now - t_kill > 300000000u) {
            fprintf(stderr, "fyload: %s: gave up after 300 s\n", name);
            gave_up(name, 0, now - t_kill);
            exit(2);
        }
        usleep(10000);
    }
}

/* Until every port of --ports accepts a connection again (a drained server restarted),
 * 60 s at most. */
static void wait_ports_up(void)
{
    uint64_t t0 = now_us();
    for (int i = 0; i < opt.nports; i++) {
        for (;;) {
            struct sockaddr_in a = server;
            a.sin_port = htons((uint16_t)opt.ports[i]);
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            bool up = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
            if (fd >= 0)
                close(fd);
            if (up)
                break;
            if (now_us() - t0 > 60000000u) {
                fprintf(stderr, "fyload: %s: port %d still closed after 60 s\n", opt.label,
                        opt.ports[i]);
                exit(2);
            }
            usleep(50000);
        }
    }
}

enum step_kind { STEP_PLAIN, STEP_STORM, STEP_FAILOVER };

/* Runs one publishing step: start at `rate`, run `secs`, stop, drain, report. Returns
 * false once the server is saturated (loss, p99 over a second, or under 80 % delivered). */
static bool run_step(const char *name, double rate, double secs, enum step_kind kind)
{
    bool storm = kind == STEP_STORM, failover = kind == STEP_FAILOVER;
    to_all(CMD_RESET, 0);
    status_sum(); /* every worker has reset before the clock starts */
    proc_sample p0 = proc_read();
    uint64_t t0 = now_us();
    char target[128];
    snprintf(target, sizeof target, "/bench/start?rate=%.3f&size=%d", rate, opt.size);
    if (!control(target)) {
        fprintf(stderr, "fyload: %s: server refused %s\n", opt.label, target);
        exit(2);
    }
    double storm_ready_s = 0;
    stats storm_sum = {0};
    uint64_t end = t0 + (uint64_t)(secs * 1e6);
    if (storm) {
        usleep((useconds_t)(secs * 1e6 / 3));
        fprintf(stderr, "fyload: %s: dropping all %d connections\n", opt.label, connected_total);
        to_all(CMD_DROP, 0);
        storm_sum = wait_ready("reconnect", name);
        storm_ready_s = storm_sum.ready_s;
        end = now_us() + (uint64_t)(secs * 1e6 / 3);
    }
    double back_s = 0;
    static kill_rec kills[16];
    if (failover) {
        usleep((useconds_t)(secs * 1e6 / 3));
        for (int k = 0; k < opt.nkill; k++) {
            if (k && opt.drain) {
                wait_ports_up();
                usleep(1000000); /* the restarted server settles, as a deploy waits */
            }
            int pid = opt.kill_pids[k];
            unsigned long long started = proc_start(pid);
            fprintf(stderr, "fyload: %s: kill -%s %d\n", opt.label, opt.drain ? "TERM" : "9", pid);
            /* counted before the signal: connections may see the loss before wait_moved runs */
            stats base = status_sum();
            uint64_t t_kill = now_us();
            if (kill(pid, opt.drain ? SIGTERM : SIGKILL)) {
                perror("fyload: kill");
                exit(2);
            }
            wait_moved(name, pid, started, t_kill, base, &kills[k]);
            if (kills[k].back_s > back_s)
                back_s = kills[k].back_s;
            fprintf(stderr, "fyload: %s: %" PRIu64 " connections back on other servers after %.3f s "
                    "(gone after %.3f s, at most %.0f back in a second)\n", opt.label,
                    kills[k].moved, kills[k].back_s, kills[k].gone_s, kills[k].peak_per_s);
        }
        end = now_us() + (uint64_t)(secs * 1e6 / 3);
    }
    uint64_t last_print = now_us();
    while (now_us() < end) {
        usleep(100000);
        if (now_us() - last_print >= 1000000) {
            stats s = status_sum();
            last_print = now_us();
            fprintf(stderr, "fyload: %s %s: %.1f s, %" PRIu64 " received, %" PRIu64 " lost\n",
                    opt.label, name, (double)(now_us() - t0) / 1e6, s.received, s.lost);
        }
    }
    const char *r = control("/bench/stop");
    uint64_t pub_secs_end = now_us();
    if (!r) {
        fprintf(stderr, "fyload: %s: /bench/stop failed\n", opt.label);
        exit(2);
    }
    uint64_t first = json_u64(r, "\"first\""), last = json_u64(r, "\"last\"");
    uint64_t published = last >= first && last ? last - first + 1 : 0;
    int ready_now = status_sum().ready;
    uint64_t expected = published * (uint64_t)(storm || failover ? connected_total : ready_now);
    /* Drain: until everything arrived or nothing more arrives for 3 s (at most 30 s). */
    uint64_t seen = 0, since = now_us();
    for (;;) {
        stats s = status_sum();
        if (s.received >= expected)
            break;
        if (s.received != seen) {
            seen = s.received;
            since = now_us();
        }
        if (now_us() - since > 3000000 || now_us() - pub_secs_end > 30000000)
            break;
        usleep(50000);
    }
    double dur = (double)(pub_secs_end - t0) / 1e6;
    proc_sample p1 = proc_read();
    to_all(CMD_REPORT, last);
    static report sum, one;
    memset(&sum, 0, sizeof sum);
    for (int i = 0; i < nworkers; i++) {
        if (recv(wfd[i], &one, sizeof one, MSG_WAITALL) != sizeof one) {
            fprintf(stderr, "fyload: worker %d died\n", i);
            exit(2);
        }
        sum.st.received += one.st.received;
        sum.st.lost += one.st.lost;
        sum.st.dup += one.st.dup;
        sum.st.ooo += one.st.ooo;
        sum.st.responses += one.st.responses;
        sum.st.resumed += one.st.resumed;
        sum.st.reset += one.st.reset;
        sum.st.recovered += one.st.recovered;
        sum.st.errors += one.st.errors;
        sum.st.rehandshakes += one.st.rehandshakes;
        sum.st.failed += one.st.failed;
        sum.st.ready += one.st.ready;
        sum.st.cpu_s += one.st.cpu_s;
        sum.st.losses += one.st.losses;
        sum.st.moved += one.st.moved;
        h_merge(&sum.h, &one.h);
        h_merge(&sum.rh, &one.rh);
    }
    double cpu_user, cpu_sys;
    proc_delta(&p0, &p1, &cpu_user, &cpu_sys);
    double scpu = cpu_user + cpu_sys;
    double rcv = (double)sum.st.received;
    emit_common(name);
    printf(",\"rate\":%.3f,\"target\":%.0f,\"secs\":%.2f,\"published\":%" PRIu64
           ",\"expected\":%" PRIu64 ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64
           ",\"dup\":%" PRIu64 ",\"ooo\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"delivered_per_s\":%.0f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"server_cpu_s\":%.3f,\"server_user_s\":%.3f,"
           "\"server_sys_s\":%.3f,\"server_us_per_msg\":%.3f,\"server_rss_kb\":%ld,"
           "\"server_threads\":%ld,\"gen_cpu_s\":%.3f,\"gen_us_per_msg\":%.3f",
           rate, rate * connected_total, dur, published, expected, sum.st.received,
           sum.st.lost, sum.st.dup, sum.st.ooo, sum.st.errors, rcv / dur, h_pct(&sum.h, 50),
           h_pct(&sum.h, 90), h_pct(&sum.h, 99), h_pct(&sum.h, 99.9),
           (double)sum.h.max / 1000.0, scpu, cpu_user, cpu_sys,
           rcv > 0 ? scpu * 1e6 / rcv : 0, p1.rss_kb, p1.threads, sum.st.cpu_s,
           rcv > 0 ? sum.st.cpu_s * 1e6 / rcv : 0);
    if (opt.npids > 1) { /* each process's share (null: not alive at both ends) */
        printf(",\"cpu_s_by_pid\":[");
        for (int i = 0; i < opt.npids; i++) {
            if (p0.alive[i] && p1.alive[i])
                printf("%s%.3f", i ? "," : "",
                       p1.pid_user_s[i] + p1.pid_sys_s[i] - p0.pid_user_s[i] - p0.pid_sys_s[i]);
            else
                printf("%snull", i ? "," : "");
        }
        printf("]");
    }
    if (sum.st.responses)
        printf(",\"responses\":%" PRIu64 ",\"msgs_per_response\":%.2f,\"rehandshakes\":%" PRIu64,
               sum.st.responses, rcv / (double)sum.st.responses, sum.st.rehandshakes);
    if (storm)
        printf(",\"reconnect_s\":%.3f,\"reconnected\":%d,\"resumed\":%" PRIu64
               ",\"reset\":%" PRIu64 ",\"recovered\":%" PRIu64 ",\"failed\":%" PRIu64,
               storm_ready_s, storm_sum.ready, sum.st.resumed, sum.st.reset, sum.st.recovered,
               sum.st.failed);
    if (failover)
        printf(",\"killed\":%d,\"back_s\":%.3f,\"losses\":%" PRIu64 ",\"moved\":%" PRIu64
               ",\"resume_p50_ms\":%.3f,\"resume_p99_ms\":%.3f,\"resume_max_ms\":%.3f"
               ",\"resumed\":%" PRIu64 ",\"reset\":%" PRIu64 ",\"recovered\":%" PRIu64
               ",\"failed\":%" PRIu64,
               opt.kill_pid, back_s, sum.st.losses, sum.st.moved, h_pct(&sum.rh, 50),
               h_pct(&sum.rh, 99), (double)sum.rh.max / 1000.0, sum.st.resumed, sum.st.reset,
               sum.st.recovered, sum.st.failed);
    for (int k = 0; failover && k < opt.nkill; k++)
        printf("%s{\"pid\":%d,\"gone_s\":%.3f,\"back_s\":%.3f,\"peak_per_s\":%.0f,"
               "\"moved\":%" PRIu64 "}%s", k ? "," : ",\"drains\":[", kills[k].pid,
               kills[k].gone_s, kills[k].back_s, kills[k].peak_per_s, kills[k].moved,
               k == opt.nkill - 1 ? "]" : "");
    printf("}\n");
    fflush(stdout);
    fprintf(stderr,
            "fyload: %s %s rate %.2f/s: %.0f msgs/s, p50 %.1f ms p99 %.1f ms, lost %" PRIu64
            " dup %" PRIu64 ", server %.2f us/msg, generator %.2f us/msg\n",
            opt.label, name, rate, rcv / dur, h_pct(&sum.h, 50), h_pct(&sum.h, 99),
            sum.st.lost, sum.st.dup, rcv > 0 ? scpu * 1e6 / rcv : 0,
            rcv > 0 ? sum.st.cpu_s * 1e6 / rcv : 0);
    return sum.st.lost == 0 && h_pct(&sum.h, 99) < 1000 && dur > 0 &&
           rcv / dur >= 0.8 * rate * connected_total;
}

static void usage(void)
{
    fprintf(stderr, "usage: fyload --port P --proto ferry-ws|ferry-lp|sio-ws|sio-poll|ws "
                    "--conns N [--procs K] [--pid PID] [--hold S] [--rates r1,r2] [--step S] "
                    "[--storm R] [--lp-rate R] [--size B] [--label NAME] [--path P] "
                    "[--ack-ms MS] [--concurrency C] [--ports P1,P2,.. [--spread K]] "
                    "[--failover R --kill PID[,PID..] [--drain 1]]\n"
                    "  --pid PID[,PID..]  servers whose CPU time, RSS and threads are summed\n"
                    "  --ports LIST       servers the connections use (--port: the control one);\n"
                    "                     a connection that loses its server resumes on another\n"
                    "  --spread K         connections start on the first K ports (all)\n"
                    "  --failover R       a step at R msgs/s that kills --kill PID (SIGKILL) a\n"
                    "                     third in and times the connections' moves; several\n"
                    "                     PIDs one after another\n"
                    "  --drain 1          SIGTERM instead (a drain), each server back on its\n"
                    "                     port before the next\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--port"))
            opt.port = atoi(v);
        else if (!strcmp(a, "--proto")) {
            int k = 0;
            while (k < 5 && strcmp(proto_names[k], v))
                k++;
            if (k == 5)
                usage();
            opt.proto = (enum proto)k;
        } else if (!strcmp(a, "--conns"))
            opt.conns = atoi(v);
        else if (!strcmp(a, "--procs"))
            opt.procs = atoi(v);
        else if (!strcmp(a, "--pid") || !strcmp(a, "--ports") || !strcmp(a, "--kill")) {
            bool pids = !strcmp(a, "--pid"), kills = !strcmp(a, "--kill");
            int *to = pids ? opt.pids : kills ? opt.kill_pids : opt.ports;
            int *n = pids ? &opt.npids : kills ? &opt.nkill : &opt.nports;
            char *dup = strdup(v), *save = NULL;
            for (char *t = strtok_r(dup, ",", &save); t && *n < 16; t = strtok_r(NULL, ",", &save))
                to[(*n)++] = atoi(t);
            free(dup);
        } else if (!strcmp(a, "--spread"))
            opt.spread = atoi(v);
        else if (!strcmp(a, "--failover"))
            opt.failover = atof(v);
        else if (!strcmp(a, "--drain"))
            opt.drain = atoi(v) != 0;
        else if (!strcmp(a, "--hold"))
            opt.hold = atof(v);
        else if (!strcmp(a, "--step"))
            opt.step = atof(v);
        else if (!strcmp(a, "--storm"))
            opt.storm = atof(v);
        else if (!strcmp(a, "--lp-rate"))
            opt.lp_rate = atof(v);
        else if (!strcmp(a, "--size"))
            opt.size = atoi(v);
        else if (!strcmp(a, "--label"))
            opt.label = v;
        else if (!strcmp(a, "--path"))
            opt.path = v;
        else if (!strcmp(a, "--ack-ms"))
            opt.ack_ms = atoi(v);
        else if (!strcmp(a, "--concurrency"))
            opt.concurrency = atoi(v);
        else if (!strcmp(a, "--rates")) {
            char *dup = strdup(v), *save = NULL;
            for (char *t = strtok_r(dup, ",", &save); t && opt.nrates < 32;
                 t = strtok_r(NULL, ",", &save))
                opt.rates[opt.nrates++] = atof(t);
            free(dup);
        } else
            usage();
    }
    if (opt.port <= 0 && opt.nports > 0)
        opt.port = opt.ports[0];
    opt.kill_pid = opt.nkill ? opt.kill_pids[0] : 0;
    if (opt.nports == 0)
        opt.ports[opt.nports++] = opt.port;
    if (opt.spread <= 0 || opt.spread > opt.nports)
        opt.spread = opt.nports;
    if (opt.port <= 0 || opt.conns <= 0 || opt.procs < 1 || opt.procs > 64 || opt.size < 40 ||
        (opt.failover > 0 && (opt.kill_pid <= 0 || opt.nports < 2)))
        usage();
    if (!opt.label)
        opt.label = proto_names[opt.proto];
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)opt.port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    signal(SIGPIPE, SIG_IGN);

    nworkers = opt.procs < opt.conns ? opt.procs : opt.conns;
    for (int i = 0; i < nworkers; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
            perror("socketpair");
            return 2;
        }
        int share = opt.conns / nworkers + (i < opt.conns % nworkers);
        int base = i * (opt.conns / nworkers) + (i < opt.conns % nworkers ? i : opt.conns % nworkers);
        int sz = (int)sizeof(report) + 4096;
        for (int j = 0; j < 2; j++) {
            setsockopt(sv[j], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
            setsockopt(sv[j], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        }
        pid_t p = fork();
        if (p == 0) {
            close(sv[0]);
            ctl = sv[1];
            worker(share, base);
            _exit(0);
        }
        close(sv[1]);
        wfd[i] = sv[0];
        wpid[i] = p;
    }

    proc_sample idle0 = proc_read();
    fprintf(stderr, "fyload: %s: connecting %d %s connections from %d processes\n", opt.label,
            opt.conns, proto_names[opt.proto], nworkers);
    /* Sequence numbers continue from whatever the server published before. */
    const char *r0 = control("/bench/stop");
    if (!r0) {
        fprintf(stderr, "fyload: no bench control at 127.0.0.1:%d\n", opt.port);
        return 2;
    }
    to_all(CMD_CONNECT, json_u64(r0, "\"last\""));
    stats c = wait_ready("connect", "connect");
    connected_total = c.ready;
    proc_sample held = proc_read();
    emit_common("connect");
    printf(",\"connect_s\":%.3f,\"failed\":%" PRIu64 ",\"server_rss_kb_before\":%ld,"
           "\"server_rss_kb\":%ld,\"server_threads\":%ld}\n",
           c.ready_s, c.failed, idle0.rss_kb, held.rss_kb, held.threads);
    fflush(stdout);
    fprintf(stderr, "fyload: %s: %d connected in %.2f s (%" PRIu64 " failed)\n", opt.label,
            connected_total, c.ready_s, c.failed);
    int rc = connected_total == opt.conns ? 0 : 1;

    if (opt.hold > 0) {
        proc_sample a = proc_read();
        to_all(CMD_RESET, 0);
        usleep((useconds_t)(opt.hold * 1e6));
        proc_sample b = proc_read();
        stats s = status_sum();
        double cu, cs;
        proc_delta(&a, &b, &cu, &cs);
        double cpu = cu + cs;
        emit_common("hold");
        printf(",\"secs\":%.1f,\"server_rss_kb_before\":%ld,\"server_rss_kb\":%ld,"
               "\"rss_per_conn_kb\":%.2f,\"rss_total_per_conn_kb\":%.2f,"
               "\"server_threads\":%ld,\"idle_cpu_pct\":%.2f,\"still_connected\":%d}\n",
               opt.hold, idle0.rss_kb, b.rss_kb,
               connected_total ? (double)(b.rss_kb - idle0.rss_kb) / connected_total : 0,
               connected_total ? (double)b.rss_kb / connected_total : 0, b.threads,
               100.0 * cpu / opt.hold, s.ready);
        fflush(stdout);
        fprintf(stderr, "fyload: %s hold: RSS %ld -> %ld KB, %ld threads, idle CPU %.1f%%\n",
                opt.label, idle0.rss_kb, b.rss_kb, b.threads, 100.0 * cpu / opt.hold);
    }
    for (int i = 0; i < opt.nrates; i++)
        if (!run_step("rate", opt.rates[i], opt.step, STEP_PLAIN))
            break; /* saturated: higher rates only take longer to say the same */
    if (opt.lp_rate > 0)
        run_step("steady", opt.lp_rate, opt.step, STEP_PLAIN);
    if (opt.storm > 0)
        run_step("storm", opt.storm, opt.step * 3, STEP_STORM);
    if (opt.failover > 0)
        run_step("failover", opt.failover, opt.step * 3, STEP_FAILOVER);

    to_all(CMD_QUIT, 0);
    for (int i = 0; i < nworkers; i++)
        waitpid(wpid[i], NULL, 0);
    return rc;
}
