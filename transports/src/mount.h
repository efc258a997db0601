/* The mount's internals, shared by the WebSocket and long-poll transports. They use ferry
 * through its public headers only (ferry.h, ferry_transport.h): a transport is an adapter.
 *
 * Lock order, outermost first, with ferry's own locks (core/src/locks.h) as one step: ferry is
 * called with the outer ones held, and runs wake and kick, which take the inner ones, with
 * its locks held.
 *   ws_conn lock   ->  ferry's locks  ->  m->wlock (ws_wake)
 *   lp_sess rlock  ->  ferry's locks  ->  lp_sess slock (lp_wake, lp_kick)
 *   m->lp_lock     ->  lp_sess slock
 *   an event loop's lock  ->  ws_conn lock (ws_loop.c, registering a connection)
 *   m->olog_lock, m->tlock: nothing is taken under them. */
#ifndef FY_MOUNT_H
#define FY_MOUNT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ferry_civetweb.h"
#include "ferry_transport.h"

typedef struct ws_conn ws_conn;

/* What became of a WebSocket offered to the event loops (ferry_websocket_handoffs_total):
 * taken; stayed on its worker (TLS, a layout not recognised, a client already gone); lost
 * (closed 1011: a frame split across the handoff). */
enum { FY_HANDOFF_TAKEN, FY_HANDOFF_STAYED, FY_HANDOFF_LOST };
typedef struct lp_sess lp_sess;

struct ferry_mount {
    struct mg_context *ctx;
    ferry_hub *hub;
    ferry_mount_options opt; /* opt.core points at core */
    ferry_options core;
    char *prefix, *origins, *real_ip; /* owned copies of the options' strings */
    char *ws_path, *lp_path, *js_path, *mjs_path, *health_path;
    char *mjs;                   /* the client as an ES module: ferry.js plus exports */
    size_t mjs_len;
    atomic_size_t conns;         /* open WebSockets plus held polls */
    atomic_size_t held_polls;
    char *metrics_path;
    atomic_bool stopping;
    atomic_bool ws_off;          /* ferry_mount_set_websocket(m, 0) */
    atomic_bool draining;        /* ferry_mount_set_draining(m, 1) */
    atomic_bool drain_started;   /* ferry_mount_drain: new connections refused, for good */
    atomic_bool drain_spread;    /* and every client attached then was told to go */
    atomic_bool published;       /* see fy_mount_enter */
    atomic_int busy;             /* civetweb callbacks running now */

    /* WebSocket writers: a queue of connections with something to write. */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    ws_conn *ready_head, *ready_tail;
    pthread_t *writers;
    unsigned nwriters;
    ws_conn *all_ws;             /* every open WebSocket, for unmount (wlock) */
    size_t nws;                  /* (wlock) */
    pthread_cond_t ws_gone;      /* signalled when nws drops (wlock) */
    atomic_size_t ws_watch;      /* WebSockets the reaper must look at: not yet settled, or
                                  * closing; none, and it walks nothing */
    struct fy_loop *loops;       /* opt.event_threads event loops (ws_loop.c), or NULL */
    atomic_uint next_loop;       /* round robin over them */
    atomic_size_t on_loops;      /* WebSockets an event loop serves now */
    atomic_ullong handoffs[3];   /* by outcome: FY_HANDOFF_TAKEN, _STAYED, _LOST */

    /* Long-poll sessions by session ID: a tree (tsearch) and a list of the same entries. */
    pthread_mutex_t lp_lock;
    void *lp_tree;               /* (lp_lock) */
    lp_sess *lp_all;             /* (lp_lock) */
    size_t lp_active;            /* requests running in the long-poll handler (lp_lock) */
    pthread_cond_t lp_idle;      /* signalled when lp_active drops to 0 (lp_lock) */

    pthread_mutex_t olog_lock;   /* the refused-Origin log's rate limit: */
    bool olog_any;               /* a line was logged, */
    uint64_t olog_at;            /* at this time (hub clock), */
    uint64_t olog_skipped;       /* and this many refusals were not logged since */

    pthread_t timer;
    pthread_mutex_t tlock;
    pthread_cond_t tcond;
};

/* Called first in every civetweb callback. civetweb hands `m` to its worker threads through
 * synchronization that ThreadSanitizer cannot see (civetweb is not instrumented); this
 * acquire pairs with the release in ferry_mount_new, after which the mount and its hub are
 * fully built. On x86 it costs nothing. */
static inline ferry_mount *fy_mount_enter(void *cbdata)
{
    ferry_mount *m = cbdata;
    (void)atomic_load_explicit(&m->published, memory_order_acquire);
    atomic_fetch_add(&m->busy, 1);
    return m;
}

/* Called last in every civetweb callback: ferry_mount_free waits until none is running. */
static inline void fy_mount_leave(ferry_mount *m)
{
    atomic_fetch_sub(&m->busy, 1);
}

/* origin.c: the Origin policy. True if the request may proceed. fy_origin_check also
 * counts a refusal and logs it (rate-limited) as "refused <what> on <path>: ...". */
bool fy_origin_allowed(const ferry_mount *m, const struct mg_connection *conn);
bool fy_origin_check(ferry_mount *m, const struct mg_connection *conn, const char *what,
                     const char *path);
#define FY_ORIGIN_LOG_MS 10000 /* at most one refused-Origin line per mount this often */
/* Answers 403 with [{"t":"error","code":"origin",...}]; `extra` as for fy_http_reply. */
void fy_origin_refuse(struct mg_connection *conn, const ferry_mount *m, const char *extra);

/* mount_options.c: checks the options as ferry_mount_new does; on the first bad one logs
 * "ferry_mount_new: ..." with the option, its value and the rule, and returns FERRY_EINVAL. */
int fy_mount_options_check(struct mg_context *ctx, const ferry_mount_options *o);

/* mount_options.c: the defaults, with `src` (NULL: none) copied over them under the
 * sized-struct rule, into *o, and its core options (src->core, or the defaults) into *core,
 * which o->core then points at. FERRY_OK or FERRY_EINVAL (logged). */
int fy_mount_options_load(ferry_mount_options *o, ferry_options *core,
                          const ferry_mount_options *src);

/* Header lookup for on_auth: ctx is the request's mg_connection. */
const char *fy_conn_header(void *ctx, const char *name);

/* The client's address: the real_ip_header if configured and present, else the TCP peer. */
const char *fy_peer_addr(const ferry_mount *m, const struct mg_connection *conn);

/* A CLOCK_REALTIME deadline `ms` from now, for pthread_cond_timedwait. What the transports
 * time themselves (linger, deadlines, rate limits) is on the hub's clock (ferry_hub_now);
 * waits that only bound a shutdown count their rounds instead. */
void fy_deadline(struct timespec *ts, uint64_t ms);

/* WebSockets and long-poll sessions are reference counted alike: an atomic count, and
 * whoever drops the last reference frees the object. Freeing it frees its link, which can
 * run application callbacks, so a reference is never dropped under a mount lock (wlock,
 * lp_lock): take references under the lock, drop them after. */
static inline void fy_ref(atomic_int *refs)
{
    atomic_fetch_add_explicit(refs, 1, memory_order_relaxed);
}

/* True when this was the last reference: the caller frees. */
static inline bool fy_unref(atomic_int *refs)
{
    return atomic_fetch_sub_explicit(refs, 1, memory_order_acq_rel) == 1;
}

/* How ferry's end of a link is told to the client (docs/PROTOCOL.md): a WebSocket's close
 * code and reason, and the HTTP status of a long-poll handshake it refused (400 for a
 * refusal of the handshake's content, when the link is not done). */
typedef struct fy_refusal {
    int close_code;
    const char *why;
    int http_status;
} fy_refusal;
const fy_refusal *fy_refusal_of(ferry_link_end e);

/* Takes one connection slot (WebSocket or held poll); false at capacity. */
bool fy_conn_acquire(ferry_mount *m);
void fy_conn_release(ferry_mount *m);

/* Writes a complete response with ferry's common headers (Cache-Control: no-store, CORS for
 * an allowed Origin with Vary: Origin, and Retry-After: 1 with 503 and 429). `extra` is
 * more header lines ending in \r\n, or NULL. A NULL body sends the headers only, with
 * Content-Length `len` (HEAD). Returns false if the write failed. */
bool fy_http_reply(struct mg_connection *conn, const ferry_mount *m, int status,
                   const char *extra, const char *ctype, const char *body, size_t len);
/* The same with a JSON body: `b`'s bytes, or an answer (ferry_answer_encode: "[]" for
 * FERRY_OK, else one error frame with `text`). Out of memory for the answer, the body is
 * empty. */
bool fy_http_json(struct mg_connection *conn, const ferry_mount *m, int status,
                  const char *extra, const ferry_buf *b);
bool fy_http_answer(struct mg_connection *conn, const ferry_mount *m, int status,
                    const char *extra, int code, const char *text);

/* ws.c, ws_close.c */
int fy_ws_start(ferry_mount *m);
/* Closes every WebSocket and waits for civetweb to be done with each, until 30 s pass with
 * none done; false if some never were, and the mount must then not be freed. */
bool fy_ws_stop(ferry_mount *m);
void fy_ws_close_all(ferry_mount *m, int code, const char *why);
void fy_ws_reap(ferry_mount *m); /* closes WebSockets past the handshake deadline (timer) */
void fy_loop_free(ferry_mount *m); /* ws_loop.c: frees the stopped event loops */

/* A client a drain tells to go: a WebSocket or a long-poll session, with a reference. */
typedef struct fy_client {
    ws_conn *ws;
    lp_sess *lp;
} fy_client;

/* drain.c: makes room for one more client in such a list; false if out of memory. */
bool fy_client_room(fy_client **list, size_t *n, size_t *cap);

/* ws_close.c: appends every open WebSocket to *list (growing it; *n its length, *cap its
 * room), a reference taken on each; false if out of memory (those appended stay). */
bool fy_ws_collect(ferry_mount *m, fy_client **list, size_t *n, size_t *cap);
/* Tells a WebSocket's client to go (ferry_link_shutdown) and drops the reference. */
void fy_ws_let_go(ws_conn *ws);
/* Open WebSockets, closing ones included. */
size_t fy_ws_open(ferry_mount *m);

/* longpoll.c */
/* The same for long-poll sessions whose link is not done; fy_lp_let_go drops the reference
 * too. */
bool fy_lp_collect(ferry_mount *m, fy_client **list, size_t *n, size_t *cap);
void fy_lp_let_go(lp_sess *lp);

/* Long-poll sessions still owed something (their link is not done) plus held polls. */
size_t fy_lp_live(ferry_mount *m);

int fy_lp_start(ferry_mount *m);
void fy_lp_stop(ferry_mount *m);
void fy_lp_reap(ferry_mount *m); /* frees long-poll sessions ferry is done with (timer) */
void fy_lp_drop_all(ferry_mount *m); /* forgets every long-poll link; held polls end */

/* The long-poll request parsers (fuzzed by tests/fuzz/fuzz_lp.c). The ack from a query
 * string: true with an integer from 0 to 2^53-1. The credentials from an Authorization value
 * "Bearer <sid>:<secret>": true with sid (NUL-terminated, under 32 bytes) and *secret
 * pointing into h. */
bool fy_lp_parse_ack(const char *query, uint64_t *ack);
bool fy_lp_credentials(const char *h, char sid[32], const char **secret);

/* Answers 405 with Allow: GET, HEAD and returns false unless the request is a GET or a HEAD;
 * *head tells which. */
bool fy_http_get_or_head(struct mg_connection *conn, const ferry_mount *m, bool *head);

/* health.c: <prefix>/health. The node's state by precedence: "draining" while
 * ferry_mount_set_draining is on or since ferry_mount_drain began, else "store_unavailable" while the hub's store_rc
 * (ferry_hub_health) is not FERRY_OK, else "ready"; *status is 503, 503 or 200. */
const char *fy_health_of(bool draining, int store_rc, int *status);
/* The same for the mount now; *store_up tells whether the hub reaches its store. */
const char *fy_health(ferry_mount *m, int *status, bool *store_up);
int fy_health_handler(struct mg_connection *conn, void *cbdata);

/* metrics.c: the civetweb handler for metrics_path. */
int fy_metrics_handler(struct mg_connection *conn, void *cbdata);

/* The bundled client, embedded at build time (ferry_js.S). */
extern const char fy_ferry_js[];
extern const char fy_ferry_js_end[];

#endif
