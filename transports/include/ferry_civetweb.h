/*
 * ferry_civetweb.h: ferry's WebSocket and long-polling transports on civetweb.
 *
 * One call mounts ferry under a path prefix of a running civetweb context:
 *
 *   <prefix>/ws        WebSocket endpoint
 *   <prefix>/lp        long-polling: POST a handshake, GET to poll, POST to send
 *   <prefix>/ferry.js  the bundled JavaScript client
 *   <prefix>/health    for load balancers: 200 ready, or 503 draining or store unavailable
 *
 * docs/PROTOCOL.md describes the requests and answers. The mount owns a ferry hub (reach it
 * with ferry_mount_hub to publish and send), a few writer threads and a timer thread.
 *
 * Threads. ferry_mount_new and ferry_mount_free must not race each other or mg_stop; everything
 * else in ferry.h may be called from any thread. Callbacks run on civetweb worker threads
 * and on the mount's timer thread.
 *
 * civetweb facts this relies on (see docs/TRANSPORTS.md): one worker thread per connection,
 * so capacity is bounded by num_threads; CORS preflights reach ferry only when the context
 * has access_control_allow_methods set to "" (ferry_server_start does this).
 */
#ifndef FERRY_CIVETWEB_H
#define FERRY_CIVETWEB_H

#include <civetweb.h>

#include "ferry.h"
#include "ferry_transport.h" /* ferry_buf */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_mount ferry_mount;

/* A sized struct (ferry.h, "Sized structs"): fill it with ferry_mount_options_init. The hub's
 * options are a pointer, not a member, so that either struct can grow on its own. */
typedef struct ferry_mount_options {
    size_t size;                 /* sizeof(ferry_mount_options) of the header built against */
    /* Limits, heartbeat, resume window (a ferry_options filled by ferry_options_init), read
     * during ferry_mount_new only; NULL: the defaults. */
    const ferry_options *core;
    /* Path prefix ("/ferry"): starts with '/', does not end with one, no "//", only letters,
     * digits and /-._~ (civetweb reads others as patterns). */
    const char *prefix;
    /* Origins allowed to connect, comma-separated ("https://a.example, http://localhost:8080"),
     * each scheme://host[:port] with no path or trailing '/', as browsers send it.
     * NULL or "": only requests without an Origin header, and requests whose Origin is the
     * request's own Host (same origin). "*" alone allows any origin (development only).
     * A request refused for its Origin gets 403 and is logged (ferry_set_log): at most one
     * line per 10 s per mount, naming the Origin and this list. */
    const char *allowed_origins;
    /* Concurrent WebSockets plus held polls. Above it, new ones get 503 with Retry-After at
     * once. Leave headroom below civetweb's num_threads for plain HTTP requests. (1000) */
    size_t max_connections;
    uint32_t poll_timeout_ms;    /* how long a poll is held with nothing to send (25000) */
    unsigned writer_threads;     /* threads writing WebSocket frames (2) */
    uint32_t tick_ms;            /* timer period for heartbeats and expiry (500) */
    uint32_t handshake_timeout_ms; /* a WebSocket that sends no handshake this long is closed
                                    * with 1008 (10000) */
    unsigned control_burst;      /* WebSocket control frames (ping, pong) a client may send at
                                  * once (20), refilled at control_rate per second (5); beyond
                                  * it the connection is closed with 1008 */
    unsigned control_rate;
    /* Behind a reverse proxy every client has the proxy's address. Name the header the
     * proxy sets to the client's address ("X-Real-IP") and ferry uses it for on_auth and the
     * per-address resume limit. Only set it when every request comes through that proxy.
     * NULL: the TCP peer address. */
    const char *real_ip_header;
    /* Where to serve Prometheus metrics (ferry_mount_metrics), e.g. "/metrics", with the
     * rules of prefix, and not one of the mount's own endpoints (<prefix>/health, ...);
     * NULL: not served (the application can render them itself). */
    const char *metrics_path;
    /* WebSockets are served by this many event-loop threads (at most 64), not by a civetweb
     * worker thread each. After civetweb's handshake the connection's socket is taken off
     * the worker, which returns to civetweb's pool, and read and written by ferry's own
     * RFC 6455 reader and writer (which, unlike civetweb's, closes unmasked client frames
     * with 1002 and refuses an over-cap frame at its header). The application's callbacks
     * for those connections (on_auth, on_open, on_message, ...) run on a loop thread: one
     * that blocks delays every WebSocket on its loop, so keep them short or hand slow work
     * to threads of your own (or set 0). TLS connections stay on the workers (terminate TLS
     * in front, at nginx or HAProxy). 0: every WebSocket on a worker, as civetweb serves
     * them. max_connections still bounds them. docs/TRANSPORTS.md has the costs and
     * limits. (2) */
    unsigned event_threads;
} ferry_mount_options;

/* Fills `o` with the defaults above (core NULL: ferry_options_init's) and sets its size.
 * NULL: nothing. */
FERRY_API void ferry_mount_options_init(ferry_mount_options *o);

/* Mounts ferry on `ctx` and writes the mount to *out. `o` may be NULL (defaults); it is
 * copied, allowed_origins, prefix and *core included. `cb` (may be NULL) and `ud` are the
 * application callbacks (ferry.h). The mount runs ferry_hub_tick itself. Returns FERRY_OK,
 * or, having logged why (ferry_set_log):
 *   FERRY_EINVAL    `out` or `ctx` is NULL; `o`, o->core or `cb` has a size of 0 or larger
 *                   than this library's; prefix or metrics_path breaks the rules above;
 *                   max_connections, poll_timeout_ms, writer_threads, tick_ms,
 *                   handshake_timeout_ms or control_burst is 0; event_threads is over 64;
 *                   `core` is refused as by ferry_hub_new; an allowed_origins entry is not
 *                   scheme://host[:port], or "*" is not alone; real_ip_header is not a
 *                   header name; or the context answers CORS preflights itself (set its
 *                   access_control_allow_methods to "")
 *   FERRY_EINTERNAL libsodium failed to initialize
 *   FERRY_ENOMEM    out of memory, or a thread could not be started
 * Process-wide effect: on Linux 6.17 and later it enlarges the process's private futex
 * hash to about two slots per max_connections (never shrinks it), because every held poll
 * is a thread asleep on a futex (docs/TRANSPORTS.md). */
FERRY_API int ferry_mount_new(ferry_mount **out, struct mg_context *ctx,
                              const ferry_mount_options *o, const ferry_callbacks *cb, void *ud);

/* The mount's hub: publish, send, counts. Valid until ferry_mount_free. NULL for NULL. */
FERRY_API ferry_hub *ferry_mount_hub(ferry_mount *m);

/* Appends the mount's metrics to `out` (the caller's buffer; on failure it is left as it
 * was) in the Prometheus text format (version 0.0.4): sessions by state, connections by
 * transport, held polls, messages and bytes in and out, sessions opened, resumes by
 * outcome, reset frames by reason (ferry_resets_total), upgrades and fallbacks, outbox
 * depth, limits hit by kind, slow consumers cut, whether the node is ready (ferry_ready: 1
 * when <prefix>/health answers 200), reaches its session store (ferry_store_up) and is
 * draining (ferry_draining), the publish-to-write latency histogram
 * (ferry_publish_to_write_seconds), and for a cluster member its Redis round-trip
 * histogram and failed commands (ferry_redis_round_trip_seconds, ferry_redis_errors_total).
 * docs/OPERATIONS.md ("Metrics") describes every series. Walks the node's session table
 * once (ferry_hub_stats): call it at scrape rate. Any thread. Returns FERRY_OK,
 * FERRY_ENOMEM or FERRY_EINVAL (NULL). */
FERRY_API int ferry_mount_metrics(ferry_mount *m, ferry_buf *out);

/* Turns WebSocket off or on at run time. Off: upgrades are answered 404, as by a server
 * without WebSocket, and open WebSockets are closed (1012); clients fall back to
 * long-polling with their sessions intact. On by default. NULL: nothing. */
FERRY_API void ferry_mount_set_websocket(ferry_mount *m, int on);

/* Health, for a load balancer's checks. Every mount answers GET and HEAD on
 * <prefix>/health (any other method: 405), always, with Content-Type application/json and
 * Cache-Control: no-store, and no Origin check:
 *   200 {"status":"ready","node":"<name>"}
 *   503 {"status":"draining","node":"<name>"}           after ferry_mount_set_draining(m, 1)
 *   503 {"status":"store_unavailable","node":"<name>"}  while ferry_hub_health is FERRY_ESTORE
 * draining wins when both hold. <name> is ferry_hub_node ("" without a cluster).
 *
 * ferry_mount_set_draining marks the node as draining (on != 0) or ready again (0). It is
 * only that flag: it changes what <prefix>/health answers, so that a load balancer's health
 * check stops sending this node new clients, and nothing else. Sessions, connections,
 * resumes and new handshakes (hello) are all served as before; a client that reaches the
 * node anyway is welcome. To take a node out for a restart, ferry_mount_drain does the rest
 * (it answers draining from its start whatever this flag says, and for good). Any thread;
 * takes no lock. NULL: nothing. The metric ferry_draining shows the node draining, by
 * this flag or by ferry_mount_drain. */
FERRY_API void ferry_mount_set_draining(ferry_mount *m, int on);

/* How ferry_mount_drain spreads its clients' departure. A sized struct (ferry.h, "Sized
 * structs"): fill it with ferry_drain_options_init. */
typedef struct ferry_drain_options {
    size_t size;          /* sizeof(ferry_drain_options) of the header built against */
    /* How long <prefix>/health answers draining before the first client is told to go, so
     * that a balancer's active health check has taken the node out by then and sends the
     * clients that reconnect elsewhere: HAProxy with the shipped configuration (inter 1s,
     * fall 2) needs 3000. Balancers without active checks (nginx open source) do not need
     * it. (0) */
    uint32_t notice_ms;
    /* The attached clients are told to go over this period after the notice, one by one,
     * in a random order, evenly with jitter (client k of n in the k-th n-th of the period,
     * at a random point of it): the rest of the cluster sees about n / spread_ms * 1000
     * reconnects a second from this node, never all at once. 0: all at once. (10000) */
    uint32_t spread_ms;
    /* ferry_mount_drain returns at the latest this long after it was called, whether every
     * client has left or not; at least notice_ms + spread_ms. (30000) */
    uint32_t deadline_ms;
} ferry_drain_options;

/* Fills `o` with the defaults above and sets its size. NULL: nothing. */
FERRY_API void ferry_drain_options_init(ferry_drain_options *o);

/* Drains the node before it stops (a rolling deploy, SIGTERM), and blocks until its clients
 * have left or the deadline passes. Then the caller frees the mount (ferry_mount_free).
 *   1. From the start <prefix>/health answers 503 draining, and the node refuses new
 *      connections: WebSocket upgrades and long-poll handshakes (hello and resume) get 503
 *      with Retry-After and [], before any session is touched. A client retries after a
 *      backoff, and a balancer passes the request on (nginx: proxy_next_upstream http_503)
 *      or, once its health check has run, sends it elsewhere. Polls and sends of the
 *      node's long-polling sessions go on until those are told to go.
 *   2. After notice_ms, every attached client is told to go, spread over spread_ms. In a
 *      cluster its session is kept: a WebSocket is closed with 1012 "service restart", a
 *      long-polling client's held poll ends ([]) and its next request gets 404; each
 *      resumes on another node with nothing lost or repeated. Without a cluster the
 *      process takes its sessions with it: each ends with reason shutdown (on_close runs),
 *      its client gets `close` `shutdown` (then WebSocket 1000, or on the poll that
 *      fetches it), and reconnects after a backoff to start a new session.
 *   3. It waits until no WebSocket is open, no poll is held and every long-poll client has
 *      been given what it was owed (its final frame), or until deadline_ms after the call.
 * Detached sessions are left as they are (ferry_mount_free ends or leaves them). The node
 * stays draining: it cannot be made ready again (free it and mount anew).
 * `o` may be NULL (the defaults); it is copied. Any thread but a civetweb worker's or a
 * ferry callback's (it waits for connections those threads serve, and may run on_close),
 * and never at the same time as ferry_mount_free. A second call, from another thread while
 * the first runs or after it, tells nobody anything more: it waits for the same departure
 * until its own deadline. Returns:
 *   FERRY_OK         every client left
 *   FERRY_ETIMEDOUT  the deadline passed first (some clients are still connected;
 *                    ferry_mount_free closes them all at once)
 *   FERRY_EINVAL     `m` is NULL; `o` has a size of 0 or larger than this library's;
 *                    deadline_ms is below notice_ms + spread_ms (logged) */
FERRY_API int ferry_mount_drain(ferry_mount *m, const ferry_drain_options *o);

/* Closes every connection, WebSocket (1012) and long-poll alike, and keeps every session:
 * clients reconnect and resume. For shedding load before a restart, and for tests. NULL:
 * nothing. */
FERRY_API void ferry_mount_drop_connections(ferry_mount *m);

/* Removes the handlers, closes every connection ferry holds (clients see close code 1001 or
 * an empty poll), stops the threads, ends every session (on_close with
 * FERRY_REASON_SHUTDOWN; in a cluster none ends: clients see 1012 and resume elsewhere) and
 * frees the mount. Call it before mg_stop, after ferry_mount_drain for a stop that spreads
 * its clients' departure. NULL is a no-op. */
FERRY_API void ferry_mount_free(ferry_mount *m);

/* For applications without a civetweb context yet. A sized struct (ferry.h, "Sized
 * structs"): fill it with ferry_server_options_init. */
typedef struct ferry_server_options {
    size_t size;                 /* sizeof(ferry_server_options) of the header built against */
    const char *listen;          /* civetweb listening_ports ("127.0.0.1:8080") */
    const char *document_root;   /* a directory of static files to serve, or NULL */
    size_t max_connections;      /* as in ferry_mount_options; sizes num_threads (1000) */
    uint32_t request_timeout_ms; /* bounds header reads and blocked writes (10000) */
    /* civetweb's worker threads, all started at once. 0: max_connections + 1/8 + 16, enough
     * for every connection to hold one (a held poll, a TLS WebSocket, or any WebSocket with
     * event_threads 0). WebSockets on event loops hold one only during their handshake: when
     * most clients use WebSocket, size this for the polls you expect plus headroom (each
     * idle worker costs about 20 KB resident). (0) */
    size_t worker_threads;
} ferry_server_options;

/* Fills `o` with the defaults above and sets its size. NULL: nothing. */
FERRY_API void ferry_server_options_init(ferry_server_options *o);

/* Starts a civetweb context with settings ferry needs: tcp_nodelay, keep-alive, timeouts,
 * num_threads sized from max_connections, CORS preflights handed to ferry, and writes it
 * to *out. `o` may be NULL (defaults). Returns FERRY_OK, or, having logged why
 * (ferry_set_log):
 *   FERRY_EINVAL    `out` is NULL; `o` has a size of 0 or larger than this library's;
 *                   listen is unset; document_root does not exist or is not a directory
 *   FERRY_ELISTEN   civetweb did not start: a listen string it rejects, or an address it
 *                   cannot listen on ("cannot listen on 127.0.0.1:8080: Address already in
 *                   use"); the log line gives civetweb's reason
 * Stop it with ferry_server_stop (or mg_stop) after ferry_mount_free. */
FERRY_API int ferry_server_start(struct mg_context **out, const ferry_server_options *o);

/* mg_stop, without its wait of up to 2 s: civetweb's listener notices the stop only when
 * its poll() returns, so this connects to the listening port while mg_stop runs. Any
 * context is fine; NULL is a no-op. */
FERRY_API void ferry_server_stop(struct mg_context *ctx);

/* The port the context listens on (its first listener), or -1 (also for NULL). */
FERRY_API int ferry_server_port(struct mg_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_CIVETWEB_H */
