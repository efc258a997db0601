/*
 * ferry.h: resumable real-time sessions for C services. The application API.
 *
 * A hub holds sessions. Each session has a public ID, a sequence-numbered outbox of messages
 * to its client and an inbound sequence that delivers every client message to the
 * application once, in order. Transports (see ferry_transport.h) attach client connections
 * to sessions; a session outlives its connection for the resume window.
 *
 * Threads. Every function here may be called from any thread unless its comment says
 * otherwise. Callbacks run only inside a transport's calls (on its threads: with civetweb, a
 * worker, or for a WebSocket on an event loop a loop thread that serves many connections,
 * so a callback that blocks delays all of them), in ferry_hub_tick and in ferry_hub_free; never inside send, publish, subscribe or close, so
 * the application may hold its own locks across those. They never run with a ferry lock
 * held, so a callback may call any ferry function except ferry_hub_free. A session that ends
 * inside an application call (ferry_session_close, an overflow on send) gets its on_close
 * from the next transport call or tick.
 *
 * Locks. ferry's own locks are internal (their order is written in core/src/locks.h). What
 * an application and a transport need of them: an application callback holds only its
 * session's inbound lock, which no call it may make waits on; a transport's wake/kick
 * callbacks run with session or link locks held, so they must not call into ferry.
 *
 * Errors are negative ferry_error values; 0 is success. ferry_strerror names each one.
 * Every function's comment lists every error it can return.
 *
 * NULL, for every function in ferry.h, ferry_transport.h and ferry_civetweb.h. Destructors
 * and releases (_free, _unref, _release, _shutdown, ferry_server_stop) do nothing with NULL.
 * A pointer a comment calls optional ("may be NULL") means what that comment says. Any
 * other NULL pointer argument is a caller's mistake that never crashes: a function that
 * returns an error code returns FERRY_EINVAL and changes nothing; one that returns a
 * pointer returns NULL; one that returns a count, a time or a flag returns 0 (or the
 * value its comment gives); a void one does nothing. Constructors (ferry_x_new, and
 * ferry_server_start) take their out-pointer first, write it only on success, and return
 * an error code; the reason for a refusal goes to the log (ferry_set_log).
 *
 * Versions and ABI. FERRY_VERSION_MAJOR, _MINOR and _PATCH are the version of this header;
 * ferry_version() is the version of the library actually loaded, so an application can
 * check that it is at least the one it was built against. The soname follows the ABI:
 *   - From 1.0: MAJOR changes when a binary built against an older release could break
 *     (a function removed or changed, a struct layout changed, an enum value renumbered);
 *     the soname is libferry.so.MAJOR. MINOR changes when something is only added (a
 *     function, an enum value, a field at the end of a sized struct, a new error a call
 *     may return); PATCH for fixes that change no interface.
 *   - Before 1.0 (now): 0.MINOR plays the part of MAJOR: any MINOR may break the ABI, so
 *     the soname is libferry.so.0.MINOR. PATCH releases keep the ABI and only add or fix.
 * What stays fixed within one soname: every function's signature, every enum value's
 * number (ferry_error's numbers are never reused, even across sonames), and the layout of
 * every struct an application allocates. Sized structs (ferry_options, ferry_callbacks,
 * ferry_stats, ferry_link_ops, ferry_mount_options, ferry_server_options) grow only at
 * their end: see "Sized structs" below. ferry_auth is allocated by ferry and only read by
 * callbacks, so it too may grow at its end. ferry_histogram, and ferry_buf and ferry_bucket
 * (ferry_transport.h), are fixed.
 *
 * Sized structs. Each option or callback struct begins with `size_t size`, which its init
 * function (ferry_options_init, ferry_callbacks_init, ...) sets to sizeof the struct this
 * header declares; a designated initializer must set it too (.size = sizeof(ferry_callbacks)).
 * ferry_stats, which ferry fills, is sized the same way by its caller. A function given
 * one reads (or fills) only `size` bytes of it: a struct from an application built
 * against an older, smaller header is accepted, and the fields it lacks take their
 * defaults. A size of 0, or one larger than this library knows (an application built
 * against a newer header than the library it runs with), is refused with FERRY_EINVAL and
 * a log line naming the struct and both sizes. This was chosen over opaque option objects
 * with setters (nghttp2's way) because the structs stay plain to read and fill, on the
 * stack, with no allocation and no failure path, while a newer field is still a compile
 * error against an old header rather than a runtime one.
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_PROTOCOL_VERSION 1

/* The version of this header (see "Versions and ABI" above); the Makefile reads the soname
 * and the pkg-config version from these lines. */
#define FERRY_VERSION_MAJOR 0
#define FERRY_VERSION_MINOR 2
#define FERRY_VERSION_PATCH 3
#define FERRY_VERSION_STRING "0.2.3"
/* One number, 0xMMmmpp, that compares in version order. */
#define FERRY_VERSION_NUMBER \
    ((FERRY_VERSION_MAJOR << 16) | (FERRY_VERSION_MINOR << 8) | FERRY_VERSION_PATCH)

#if defined(FERRY_BUILD) && defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

typedef struct ferry_hub ferry_hub;
typedef struct ferry_session ferry_session;
typedef struct ferry_cluster ferry_cluster; /* ferry_cluster.h */

/* Every error a ferry function can return. Codes from -3 to -13 and from -17 to -19 are also
 * sent to peers as error frames; docs/PROTOCOL.md names their wire strings. */
typedef enum ferry_error {
    FERRY_OK = 0,
    FERRY_ENOMEM = -1,       /* allocation failed; nothing was changed */
    FERRY_EINVAL = -2,       /* bad argument from the caller (NULL, bad topic name, ...) */
    FERRY_ETOOBIG = -3,      /* frame, message or batch over its configured limit */
    FERRY_EJSON = -4,        /* not well-formed JSON (or not UTF-8) */
    FERRY_EDEPTH = -5,       /* JSON nested deeper than the configured limit */
    FERRY_EDUPKEY = -6,      /* an object repeats a key */
    FERRY_EFIELD = -7,       /* a field is missing, has the wrong type or is out of range */
    FERRY_EFRAMETYPE = -8,   /* frame type not known to this protocol version */
    FERRY_EVERSION = -9,     /* protocol version not supported */
    FERRY_EHANDSHAKE = -10,  /* frame out of place: data before the handshake, or a second one */
    FERRY_EACK = -11,        /* ack for a seq that was never sent */
    FERRY_ESEQ = -12,        /* message seq skips ahead: an earlier message is missing */
    FERRY_ECAPACITY = -13,   /* the hub holds its maximum number of sessions */
    FERRY_ECLOSED = -14,     /* the session or link has ended; nothing more is accepted */
    FERRY_ENOTFOUND = -15,   /* no live session with that ID */
    FERRY_EFULL = -16,       /* the outbox overflowed: the session was reset (reason overflow) */
    FERRY_EFORBIDDEN = -17,  /* the application refused a client's subscription (wire error) */
    FERRY_EAUTH = -18,       /* the application refused the client's credentials (wire error) */
    FERRY_ERATE = -19,       /* too many resume attempts from this address (wire error) */
    FERRY_ESTORE = -20,      /* the session store failed or could not be reached; nothing was
                              * changed, so trying again is safe ("internal" on the wire) */
    FERRY_EINTERNAL = -21,   /* something ferry depends on failed to start (libsodium's
                              * initialization); nothing was changed; the log says what */
    FERRY_ELISTEN = -22,     /* ferry_server_start: civetweb did not start listening (address
                              * in use, a listen string it rejects); the log says why */
    FERRY_ETIMEDOUT = -23,   /* ferry_mount_drain: its deadline passed with clients still
                              * connected */
} ferry_error;
/* Numbers are stable: a code keeps its number for ever, and a retired number is never
 * given to another code. New codes take the next number down. */

/* The version of the library loaded at run time, as FERRY_VERSION_NUMBER (0xMMmmpp) is for
 * the header. An application built against MAJOR.MINOR.PATCH needs a library with the same
 * soname and a number at least FERRY_VERSION_NUMBER:
 *     if (ferry_version() < FERRY_VERSION_NUMBER) ... older than the header
 * Any thread; never fails. */
FERRY_API unsigned long ferry_version(void);
/* The same version as text ("0.2.0"): static, never NULL. Any thread. */
FERRY_API const char *ferry_version_string(void);

/* A static, human-readable description of an error code; never NULL. */
FERRY_API const char *ferry_strerror(int err);

/* Logging. ferry says why something failed or was refused in one line of text: every
 * error from ferry_hub_new, ferry_mount_new and ferry_server_start but FERRY_ENOMEM, every
 * struct refused for its size, and requests refused for their Origin (at most one line per
 * 10 s per mount, with a count of those not logged). Messages never contain tokens, resume secrets, session IDs,
 * Authorization or Cookie values; text that came from a client is cut short and its
 * non-printable bytes are escaped. */
typedef enum ferry_log_level {
    FERRY_LOG_ERROR = 0, /* a call failed; the message says why */
    FERRY_LOG_WARN,      /* ferry refused a request or carries on in a degraded way */
} ferry_log_level;

/* Receives one message without a trailing newline. `msg` is valid only during the call.
 * Called from any thread (the caller's, civetweb workers, the mount's threads), possibly
 * from several at once, with no ferry lock held. It must not call ferry_set_log. */
typedef void (*ferry_log_fn)(ferry_log_level level, const char *msg, void *ud);

/* Sets the process-wide log function; `ud` is passed to it. NULL restores the default,
 * which writes "ferry: <msg>\n" to stderr. Any thread: once this returns, no call to the
 * previous function is running or will start, so its `ud` may be freed. */
FERRY_API void ferry_set_log(ferry_log_fn fn, void *ud);

/* Why a session ended or could not be resumed. Sent to clients as lowercase strings
 * (ferry_reason_str). */
typedef enum ferry_reason {
    FERRY_REASON_NONE = 0,
    FERRY_REASON_UNKNOWN,   /* resume named no session we know, or the secret was wrong */
    FERRY_REASON_EXPIRED,   /* detached for longer than the resume window */
    FERRY_REASON_OVERFLOW,  /* the outbox hit its count or byte limit (slow consumer) */
    FERRY_REASON_CLOSED,    /* the client closed the session */
    FERRY_REASON_SERVER,    /* the application closed the session (ferry_session_close) */
    FERRY_REASON_SHUTDOWN,  /* the hub was freed */
    FERRY_REASON_FORKED,    /* a secret the session had retired was used again: someone else
                             * holds a copy, so the session ended for everyone */
} ferry_reason;

/* "unknown", "expired", "overflow", "closed", "server", "shutdown", "forked" or "none". */
FERRY_API const char *ferry_reason_str(ferry_reason r);

typedef enum ferry_state {
    FERRY_STATE_NEW = 0,    /* created, no connection attached yet */
    FERRY_STATE_ATTACHED,   /* a connection is attached */
    FERRY_STATE_DETACHED,   /* no connection; resumable until the resume window ends */
    FERRY_STATE_EXPIRED,    /* ended (see the reason); only the ID is remembered, for a while */
} ferry_state;

#define FERRY_IDENTITY_MAX 128 /* bytes of an identity, NUL included */

/* What a client presented with its handshake, for on_auth. Every pointer is valid only
 * during the call. */
typedef struct ferry_auth {
    const char *token;       /* the handshake's "token" field, or NULL */
    const char *session_id;  /* the session a resume names, or NULL for a new session */
    const char *peer_addr;   /* the client's address as the transport saw it, or NULL */
    /* A request header of the connection (case-insensitive name), or NULL: the Cookie,
     * Origin or Authorization of the WebSocket upgrade or long-poll request. */
    const char *(*header)(const struct ferry_auth *a, const char *name);
    void *transport_ctx;     /* for header() */
} ferry_auth;

/* A monotonic clock in milliseconds. Must never go backwards. */
typedef uint64_t (*ferry_clock_fn)(void *ud);

/* Application callbacks. Any may be NULL. `ud` is the pointer given to ferry_hub_new.
 * The session pointer is valid for the duration of the call; keep it longer with
 * ferry_session_ref. A sized struct: fill it with ferry_callbacks_init, or write
 * .size = sizeof(ferry_callbacks) in its initializer. */
typedef struct ferry_callbacks {
    size_t size;               /* sizeof(ferry_callbacks) of the header built against */
    /* A new session started. Subscribe it and send it whatever initial state it needs: the
     * client gets its welcome only after this returns, so anything published once the
     * client holds its welcome reaches it. */
    void (*on_open)(ferry_session *s, void *ud);
    /* A new session started for a client whose previous session could not be resumed
     * (reason UNKNOWN, EXPIRED or OVERFLOW): the client saw a gap and must be resynced.
     * If NULL, on_open is called instead. */
    void (*on_reset)(ferry_session *s, ferry_reason why, void *ud);
    /* A client message, delivered once and in order per session. `data` is borrowed: valid
     * only during the call (json_incref to keep it). */
    void (*on_message)(ferry_session *s, json_t *data, void *ud);
    /* The session ended and will never deliver again. Called exactly once per session that
     * had on_open or on_reset called. */
    void (*on_close)(ferry_session *s, ferry_reason why, void *ud);
    /* The client asks to subscribe to `topic` (a valid name). Return 0 to allow it; anything
     * else refuses it, and the client gets an error frame "forbidden". If NULL, every client
     * subscription is refused (the application subscribes sessions itself). Runs in order
     * with the session's messages. Unsubscribing needs no permission. */
    int (*on_subscribe)(ferry_session *s, const char *topic, void *ud);
    /* Decides who a client is, on every handshake: a new session and every resume, before
     * anything else happens. Return 0 and write a NUL-terminated identity (an account ID,
     * or "" for anonymous) to accept; return anything else to refuse, with *reason a static
     * text for the client (it gets an "unauthorized" error and the connection closes).
     * A session is bound to the identity it was opened with: a resume accepted under
     * another identity is answered like an unknown session. If NULL, every client is
     * accepted with the identity "". Runs on a transport thread with no lock held. */
    int (*on_auth)(const ferry_auth *a, char identity[FERRY_IDENTITY_MAX], const char **reason,
                   void *ud);
} ferry_callbacks;

/* Zeroes `cb` (every callback NULL) and sets its size. NULL: nothing. */
FERRY_API void ferry_callbacks_init(ferry_callbacks *cb);

/* The hub's limits and timers. A sized struct: fill it with ferry_options_init, then change
 * what you need. */
typedef struct ferry_options {
    size_t size;               /* sizeof(ferry_options) of the header built against */
    size_t max_frame_bytes;    /* largest inbound frame or batch, bytes (64 KiB) */
    size_t max_message_bytes;  /* largest encoded outbound message, bytes (60 KiB) */
    size_t max_depth;          /* JSON nesting limit for inbound frames (16) */
    size_t max_elements;       /* keys plus array items in an inbound frame (4096) */
    size_t max_batch;          /* frames per inbound batch, and per pulled batch (128) */
    size_t max_batch_bytes;    /* pulled batch size target, bytes (64 KiB) */
    size_t ack_window_bytes;   /* sent-but-unacked bytes per connection before sending pauses
                                * until the client acks (64 KiB); keeps writes from blocking */
    size_t outbox_max_msgs;    /* unacknowledged messages per session (1024) */
    size_t outbox_max_bytes;   /* unacknowledged bytes per session (1 MiB) */
    size_t max_sessions;       /* live sessions per hub (100000) */
    size_t max_sessions_per_identity; /* live sessions one on_auth identity may hold (100);
                                       * 0 for no limit; the identity "" is never limited */
    size_t outbox_budget_bytes; /* unacknowledged bytes in all outboxes together (512 MiB);
                                 * a push beyond it resets that session (overflow) */
    uint32_t heartbeat_ms;     /* ping a connection silent for this long (25000) */
    uint32_t heartbeat_timeout_ms; /* drop a connection silent for this long (60000) */
    uint32_t stall_timeout_ms; /* drop a connection whose ack window stayed full this long
                                * (10000): a client that stopped reading; it can resume */
    uint32_t resume_window_ms; /* keep a detached session resumable this long (120000) */
    uint32_t tombstone_ms;     /* remember an ended session's ID and reason this long (120000) */
    unsigned resume_burst;     /* resume attempts one peer address may make at once (20), */
    unsigned resume_rate;      /*   then per second (5); 0 turns the limit off */
    ferry_clock_fn clock;      /* NULL: CLOCK_MONOTONIC */
    void *clock_ud;
    /* Makes the hub a member of a cluster (ferry_cluster.h, docs/CLUSTER.md): sessions,
     * subscriptions and every message to a session live in Redis, and any member resumes
     * any session. Created by ferry_cluster_new, used by one hub, freed after it. NULL: one
     * node, nothing shared (the default). */
    ferry_cluster *cluster;
} ferry_options;

/* Fills `o` with the defaults shown above and sets its size. NULL: nothing. */
FERRY_API void ferry_options_init(ferry_options *o);

/* Creates a hub. `opt` may be NULL (defaults) and is copied; `cb` may be NULL (no
 * callbacks) and is copied. Initializes libsodium. Returns FERRY_OK and writes *out, or:
 *   FERRY_EINVAL    `out` is NULL; `opt` or `cb` has a size of 0 or one larger than this
 *                   library's (see "Sized structs"); a limit or timeout other than
 *                   max_sessions_per_identity and tombstone_ms is 0; heartbeat_timeout_ms
 *                   is not above heartbeat_ms; or resume_burst is 0 while resume_rate is not
 *   FERRY_EINTERNAL libsodium failed to initialize
 *   FERRY_ENOMEM
 * and, for every error but FERRY_ENOMEM, logs why (ferry_set_log). */
FERRY_API int ferry_hub_new(ferry_hub **out, const ferry_options *opt, const ferry_callbacks *cb,
                  void *ud);

/* Ends every live session with reason shutdown, so that each attached connection is given
 * its final `close` `shutdown` frame (and is kicked, then done). A transport that is
 * stopping calls this while its connections are still open, writes what its links give
 * it, then closes them; the hub stays usable. Runs on_close for each ended session (so not
 * from inside a callback). NULL is a no-op. Cannot fail. */
FERRY_API void ferry_hub_shutdown(ferry_hub *hub);

/* Ends every session (on_close with FERRY_REASON_SHUTDOWN) and frees the hub. Every link
 * must have been freed first (stop the transports), and no other thread may be using the
 * hub. NULL is a no-op. */
FERRY_API void ferry_hub_free(ferry_hub *hub);

/* Runs timers: pings quiet connections, drops dead ones (heartbeat timeout), expires
 * detached sessions after the resume window, forgets tombstones, and runs on_close for
 * sessions that ended since the last call. Call it about once a second from any one thread.
 * A mount (ferry_mount_new) runs it itself: applications using the civetweb transports
 * never call it. Returns FERRY_OK, or FERRY_EINVAL for a NULL hub. */
FERRY_API int ferry_hub_tick(ferry_hub *hub);

/* Publishes one message to every session subscribed to `topic` when the call begins, less
 * any that unsubscribe before it reaches them. Publishes never overtake each other: every
 * subscriber gets concurrent publishes in the same order. `json` (`len` bytes, need
 * not be NUL-terminated) must be one JSON value; it is validated and stored once, shared by
 * every subscriber's outbox. Writes the number of sessions that queued it to *queued if not
 * NULL. A subscriber whose outbox overflows is reset (reason overflow); that is not an error
 * of the publish. Returns FERRY_OK, FERRY_EINVAL (NULL hub, topic or json, or a bad topic
 * name), FERRY_EJSON, FERRY_EDEPTH, FERRY_ETOOBIG (over max_message_bytes) or
 * FERRY_ENOMEM. */
FERRY_API int ferry_hub_publish(ferry_hub *hub, const char *topic, const char *json, size_t len,
                      size_t *queued);

/* Sends one message to the session with this ID (NUL-terminated). Returns FERRY_OK,
 * FERRY_EINVAL (NULL hub, session_id or json), FERRY_ENOTFOUND, FERRY_ESTORE (the session
 * store could not look it up; nothing was sent), FERRY_ECLOSED, FERRY_EFULL (the session
 * was reset), FERRY_EJSON, FERRY_EDEPTH, FERRY_ETOOBIG or FERRY_ENOMEM. */
FERRY_API int ferry_hub_send(ferry_hub *hub, const char *session_id, const char *json, size_t len);

/* Whether the hub can serve: FERRY_OK, or FERRY_ESTORE while its cluster cannot reach
 * Redis (publishes, sends, new sessions and resumes fail meanwhile; attached sessions keep
 * their connections). A hub without a cluster is always FERRY_OK. FERRY_EINVAL for NULL.
 * Any thread; it does not block. */
FERRY_API int ferry_hub_health(ferry_hub *hub);

/* The cluster node name this hub was given (ferry_cluster_options.node), or "" without a
 * cluster; NULL for NULL. Valid while the hub lives. */
FERRY_API const char *ferry_hub_node(ferry_hub *hub);

/* Limits and refusals, counted each time one is hit (by the session layer or a transport). */
typedef enum ferry_limit {
    FERRY_LIMIT_FRAME_SIZE = 0, /* a frame, batch, reassembled message or request body too big */
    FERRY_LIMIT_DEPTH,          /* JSON nested too deeply */
    FERRY_LIMIT_ELEMENTS,       /* too many keys and values in a frame */
    FERRY_LIMIT_BATCH,          /* too many frames in a batch */
    FERRY_LIMIT_OUTBOX,         /* a session's outbox overflowed (reset, reason overflow) */
    FERRY_LIMIT_SESSIONS,       /* a handshake refused at max_sessions */
    FERRY_LIMIT_CONNECTIONS,    /* a WebSocket or poll refused at max_connections (503) */
    FERRY_LIMIT_STALL,          /* a connection dropped: its ack window stayed full */
    FERRY_LIMIT_HEARTBEAT,      /* a connection dropped: silent past the heartbeat timeout */
    FERRY_LIMIT_HANDSHAKE_TIME, /* a WebSocket closed: no handshake in time */
    FERRY_LIMIT_CONTROL_RATE,   /* a WebSocket closed: control-frame flood */
    FERRY_LIMIT_RESUME_RATE,    /* a resume refused: too many from the address */
    FERRY_LIMIT_POLLS,          /* a held poll ended by a newer one for the same session */
    FERRY_LIMIT_ORIGIN,         /* a request refused: Origin not allowed */
    FERRY_LIMIT_AUTH,           /* a handshake refused by on_auth */
    FERRY_LIMIT_IDENTITY,       /* a new session refused: its identity holds too many */
    FERRY_LIMIT_MEMORY,         /* a session reset: all outboxes together at their budget */
    FERRY_LIMIT_COUNT
} ferry_limit;

/* "frame_size", "depth", ...: the name of a limit, for metrics; "unknown" out of range. */
FERRY_API const char *ferry_limit_name(ferry_limit l);

/* How many times a limit has been hit since the hub was made; 0 for NULL or a limit out of
 * range. */
FERRY_API uint64_t ferry_hub_limit_hits(ferry_hub *hub, ferry_limit l);

#define FERRY_REASON_COUNT (FERRY_REASON_FORKED + 1)

/* Room in ferry_stats for limits and reasons added later, so that adding one keeps the
 * struct's layout. */
#define FERRY_STATS_LIMITS 32
#define FERRY_STATS_REASONS 16

/* A latency histogram, as ferry_stats carries them: fixed buckets whose upper bounds are
 * ferry_histogram_bound(0 .. FERRY_HISTOGRAM_BUCKETS - 1): 100 µs, 250 µs, 500 µs, 1 ms,
 * 2.5 ms, 5 ms, 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 500 ms, 1 s, 2.5 s, 5 s, 10 s, and +Inf
 * last. Its layout and the bounds are fixed within a soname. */
#define FERRY_HISTOGRAM_BUCKETS 17
typedef struct ferry_histogram {
    uint64_t count;  /* observations */
    uint64_t sum_ns; /* their sum, in nanoseconds */
    /* Cumulative, as Prometheus's `le` buckets: le[i] counts the observations of at most
     * ferry_histogram_bound(i) seconds; le[FERRY_HISTOGRAM_BUCKETS - 1] == count. */
    uint64_t le[FERRY_HISTOGRAM_BUCKETS];
} ferry_histogram;

/* The upper bound of bucket `i` in seconds (INFINITY for the last), or -1 for an `i` out of
 * range. Any thread; never fails. */
FERRY_API double ferry_histogram_bound(int i);

/* A snapshot of the hub's counters and gauges, for metrics. A sized struct the caller
 * allocates: set size (ferry_stats st = {.size = sizeof st}); ferry fills only that many
 * bytes, so an application built against an older header gets the fields it knows. */
typedef struct ferry_stats {
    size_t size;                                  /* sizeof(ferry_stats), set by the caller */
    uint64_t sessions_opened;                     /* new sessions, replacements included */
    uint64_t resumes;                             /* resumes that continued their session */
    uint64_t resume_failures[FERRY_STATS_REASONS]; /* by the reason the client was given
                                                    * (FERRY_REASON_COUNT used) */
    uint64_t messages_in, bytes_in;   /* client messages delivered to the application */
    uint64_t messages_out, bytes_out; /* message frames handed to transports, replays too */
    uint64_t upgrades;                /* resumes that moved a session onto WebSocket */
    uint64_t fallbacks;               /* resumes that moved a session onto long-polling */
    size_t attached, detached, expired;           /* sessions by state now */
    size_t outbox_messages, outbox_bytes;         /* unacknowledged, in every outbox now */
    uint64_t limits[FERRY_STATS_LIMITS];          /* as ferry_hub_limit_hits
                                                   * (FERRY_LIMIT_COUNT used) */
    /* reset frames handed to transports, by reason (FERRY_REASON_COUNT used): the answers
     * to resumes that failed (as resume_failures, when the reset went out) and the final
     * frames of attached sessions that ended for overflow, expired or forked */
    uint64_t resets[FERRY_STATS_REASONS];
    /* From when the hub took a message (ferry_hub_publish, ferry_hub_send,
     * ferry_session_send; in a cluster, when the feed reader handed it to this node) to
     * when a transport pulled it to write it to a connection for the first time (replays
     * not counted). Sampled: each connection (link) observes the first of every 16
     * batches pulled from it that hold a message sent for the first time, as the age of
     * the oldest such message in it; so count is about a sixteenth of those batches, not
     * a count of messages. */
    ferry_histogram publish_to_write;
    /* In a cluster: the round-trip time of each Redis command (from sending it to its
     * reply; the feed reader's blocking read is not one), and the commands that failed
     * (no connection, an I/O error or timeout, or an error reply). All 0 without one. */
    ferry_histogram redis_rtt;
    uint64_t redis_errors;
} ferry_stats;

/* Fills the first out->size bytes of *out (the size field is left as it is). Walks every
 * session this node holds (for the gauges): call it at scrape rate, not per message. Returns FERRY_OK, or FERRY_EINVAL (NULL, or a size of 0 or larger than this
 * library's, logged) with *out unchanged. */
FERRY_API int ferry_hub_stats(ferry_hub *hub, ferry_stats *out);

/* Sessions by state, counted over every session this node holds; any pointer may be NULL
 * (a NULL hub: all 0). */
FERRY_API void ferry_hub_counts(ferry_hub *hub, size_t *attached, size_t *detached, size_t *expired);

/* Queues one message for this session's client; see ferry_hub_publish for `json`. Returns
 * FERRY_OK, FERRY_ECLOSED (the session has ended), FERRY_EFULL (the outbox overflowed and
 * the session was reset), FERRY_EINVAL (NULL), FERRY_EJSON, FERRY_EDEPTH, FERRY_ETOOBIG or
 * FERRY_ENOMEM. */
FERRY_API int ferry_session_send(ferry_session *s, const char *json, size_t len);

/* Topic names are 1 to 128 characters from [A-Za-z0-9_.:/-]. Subscribing twice is a
 * no-op. Returns FERRY_OK, FERRY_EINVAL (NULL, or a bad topic name), FERRY_ECLOSED or
 * FERRY_ENOMEM. In a cluster the subscription is saved with the session (one round trip
 * to Redis), and it may also return FERRY_ECLOSED when another node serves the session
 * now, FERRY_EFULL beyond 64 subscriptions, or FERRY_ESTORE (Redis failed: not
 * subscribed). */
FERRY_API int ferry_session_subscribe(ferry_session *s, const char *topic);
/* Returns FERRY_OK (also when not subscribed) or FERRY_EINVAL (NULL, or a bad topic name);
 * in a cluster also FERRY_ECLOSED or FERRY_ESTORE (still subscribed), as subscribe. */
FERRY_API int ferry_session_unsubscribe(ferry_session *s, const char *topic);

/* Inside on_message: the client's seq of the message being handed over (docs/PROTOCOL.md),
 * and whether it may have been handed to the application before. That happens only in a
 * cluster, to the messages of one batch whose delivery was cut short: the node delivering
 * it died, lost Redis, or let the session go to another node, before it could record how
 * far it got. The client sends them again, and the next node hands each over with the same
 * seq and this flag set, whether or not the first node had reached it. An application that
 * must act exactly once keys its effects on the session ID and seq. Outside on_message, or
 * for NULL: 0. */
FERRY_API uint64_t ferry_session_message_seq(ferry_session *s);
FERRY_API int ferry_session_message_repeated(ferry_session *s);

/* Ends the session: its client gets a close frame with reason "server" and must not
 * resume; on_close runs with FERRY_REASON_SERVER. Returns FERRY_OK, FERRY_ECLOSED (it had
 * ended already) or FERRY_EINVAL (NULL). */
FERRY_API int ferry_session_close(ferry_session *s);

/* The public session ID (22 characters, base64url). Owned by the session; valid as long as
 * the caller holds a reference or is inside a callback for it. It is routing data, not a
 * secret. NULL for NULL. */
FERRY_API const char *ferry_session_id(const ferry_session *s);
/* The session's state; FERRY_STATE_EXPIRED for NULL. */
FERRY_API ferry_state ferry_session_state(ferry_session *s);
/* The identity on_auth gave the session ("" without on_auth). Valid like ferry_session_id.
 * NULL for NULL. */
FERRY_API const char *ferry_session_identity(const ferry_session *s);

/* The hub the session belongs to, so a callback can publish without a global. Valid as
 * long as the hub is: inside every callback for the session, and until ferry_hub_free (or
 * ferry_mount_free) for a session the application holds a reference to. NULL for NULL. */
FERRY_API ferry_hub *ferry_session_hub(ferry_session *s);

/* One application pointer per session, never read by ferry. NULL session: set does
 * nothing, get returns NULL. */
FERRY_API void ferry_session_set_user(ferry_session *s, void *user);
FERRY_API void *ferry_session_user(ferry_session *s);

/* Reference counting: ref returns `s` (NULL for NULL); unref releases it (NULL: nothing).
 * A referenced session's memory stays valid after it ends; its functions then return
 * FERRY_ECLOSED. */
FERRY_API ferry_session *ferry_session_ref(ferry_session *s);
FERRY_API void ferry_session_unref(ferry_session *s);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_H */
