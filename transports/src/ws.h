/* The WebSocket transport's connection, shared by ws.c (connecting, reading, writing) and
 * ws_close.c (closing them all, the reaper, stopping). */
#ifndef FY_WS_H
#define FY_WS_H

#include "mount.h"
#include "ws_reader.h"

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
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_INTERNAL = 1011,
};

struct ws_conn {
    ferry_mount *m;
    atomic_int refs;
    pthread_mutex_t lock;         /* conn, closing, let_go, forced, and the taken socket's
                                   * fields below marked so */
    struct mg_connection *conn;   /* NULL once civetweb has closed it */
    ferry_link *link;
    atomic_bool closing;          /* our close frame is out (read by the reaper unlocked) */
    uint64_t closing_at;          /* when, ms */
    bool forced;                  /* its socket was shut down (find_socket_locked) */
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

    /* Taken off civetweb's worker and served by an event loop (ws_loop.c). */
    int fd;                       /* ferry's own descriptor for the socket, or -1: civetweb's
                                   * (set on the worker before the loop has it; cleared by
                                   * the loop, under ws->lock) */
    struct fy_take *take;         /* while civetweb still reads the stand-in (worker thread) */
    struct fy_loop *loop;         /* the loop serving it; immutable once set */
    struct fy_hdrs *hdrs;         /* the upgrade request's headers, copied for on_auth */
    fy_wsr rd;                    /* the frame reader (loop thread) */
    bool rd_done;                 /* stop reading frames: drop the rest (loop thread) */
    bool deferred;                /* has input left for its loop's next turn (loop thread) */
    bool on_loop;                 /* registered with its loop, until closed (ws->lock, set
                                   * under the loop's lock) */
    bool shut;                    /* the taken socket was shut down (ws->lock) */
    ferry_buf pend;               /* frames the socket has not taken yet, from pend_off */
    size_t pend_off;              /*   (ws->lock) */
    bool shut_when_sent;          /* shut the socket down once pend is out (ws->lock) */
};

/* The socket is open: civetweb's (conn) or ferry's own (fd). ws->lock held. */
static inline bool fy_ws_live_locked(const ws_conn *ws)
{
    return ws->conn || ws->fd >= 0;
}

/* Drops a reference (fy_unref); the last frees the connection and its link. No mount lock
 * held. */
void fy_ws_unref(ws_conn *ws);

/* Sends a close frame; civetweb is told to end the connection after WS_LINGER_MS (the
 * reaper). ws->lock held. */
void fy_ws_close_locked(ws_conn *ws, int code, const char *why);

/* Tells civetweb to end the connection now (mg_close_connection). ws->lock held. */
void fy_ws_let_go_locked(ws_conn *ws);

/* civetweb is done with the connection: forget it, once. No lock held. */
void fy_ws_finish(ws_conn *ws);

/* One frame from the client (bits: FIN | opcode; data NULL for a data frame claiming more
 * than max_frame_bytes, len then the claimed length), from civetweb's worker or the event
 * loop. Returns 0 when the connection is done reading (the peer's close frame was
 * answered), else 1. No lock held. */
int fy_ws_frame(ws_conn *ws, int bits, char *data, size_t len);

/* The marker that ends civetweb's read loop at the handoff (ws_take.c). */
#define FY_MARKER_LEN 24
struct fy_take {
    int standin;                         /* civetweb's descriptor number, now the stand-in */
    struct fy_loop *loop;                /* the loop it will go to */
    unsigned char marker[FY_MARKER_LEN];
};

/* ws_loop.c: the loop the next taken connection goes to; NULL if every loop has stopped. */
struct fy_loop *fy_loop_pick(ferry_mount *m);

/* ws_loop.c: registers a taken socket with ws->take->loop, at the marker, on the worker;
 * frees ws->take. */
void fy_loop_hand_over(ws_conn *ws, struct mg_connection *conn);

/* ws_loop.c: the event loops. fy_loop_start starts opt.event_threads of them (none for 0);
 * fy_loop_stop closes what they still serve and joins them, after which no connection can
 * be handed to them; fy_loop_free (mount.h) frees them, once no civetweb callback can
 * come. */
int fy_loop_start(ferry_mount *m);
void fy_loop_stop(ferry_mount *m);

/* ws_take.c: true if `fd` is a TCP socket (IPv4 or IPv6) whose peer address and port and
 * local port are this request's. */
bool fy_same_tuple(int fd, const struct mg_request_info *ri);

/* ws_take.c, on civetweb's worker in the ready handler: takes the socket over (a plain TCP
 * connection only) and returns true, or leaves it to civetweb and returns false. Either way
 * it tells the link the peer's address and headers. ws->conn set, no lock held. */
bool fy_loop_take(ws_conn *ws, struct mg_connection *conn);

/* ws_take.c, on civetweb's worker for each frame of a taken connection that civetweb still
 * reads (what it had buffered past the handshake, then the marker that ends its read loop).
 * Returns what civetweb's data handler returns. */
int fy_loop_handoff_frame(ws_conn *ws, struct mg_connection *conn, int bits, char *data,
                          size_t len);

/* ws_loop.c: civetweb closed a taken connection before handing it over: close the socket.
 * No lock held. */
void fy_loop_abandon(ws_conn *ws);

/* ws_loop.c: writes a whole frame to a taken socket, or queues what it does not take for
 * the loop; false if the connection cannot take it (gone, or too far behind). ws->lock
 * held. */
bool fy_loop_write_locked(ws_conn *ws, const char *p, size_t len);

/* ws_loop.c: ends a taken connection: shuts its socket down, now (force) or once what is
 * queued is out; the loop then closes it and finishes it. ws->lock held. */
void fy_loop_shut_locked(ws_conn *ws, bool force);

/* ws_loop.c: frees what a taken connection held (the copied headers, the reader). */
void fy_loop_release(ws_conn *ws);

#endif
