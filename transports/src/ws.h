/* The WebSocket transport's connection, shared by ws.c (connecting, reading, writing) and
 * ws_close.c (closing them all, the reaper, stopping). */
#ifndef FY_WS_H
#define FY_WS_H

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
    bool forced;                  /* its socket was shut down (find_socket_locked) */
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

#endif
