/*
 * ferry_transport.h: the API for transport authors (WebSocket, long-polling, ...).
 *
 * A transport owns client connections; ferry owns sessions. For each connection the
 * transport makes a link, feeds it every inbound text frame (or long-poll request body) with
 * ferry_link_recv, and writes out whatever ferry_link_pull gives it. A link binds to one
 * session when its handshake frame (hello or resume) arrives. ferry never does I/O: when a
 * link has something to send it calls the transport's wake; when ferry gives up on a link
 * (superseded by a resume on another connection, heartbeat timeout, session ended) it calls
 * kick. After kick, or when ferry_link_done says so, the transport writes what it has pulled
 * and closes the connection.
 *
 * Threads. Calls to recv on one link must not overlap (one reader), but recv, pull and done
 * may run on different threads at once (a reader and a writer). ferry_link_free must be the
 * last call on a link and must not race any other call on it. See ferry.h for what a
 * caller must know of ferry's locks, the NULL policy, the sized-struct rule and the ABI
 * policy: they hold here too.
 *
 * Beyond links, the second half of this header gives a transport what it needs for its own
 * work: the hub's clock (time everything through it, so a test's injected clock drives the
 * transport too), counting the limits it enforces, a token bucket, the bodies of answers it
 * gives without a link, logging with ferry's promises. A transport needs nothing else from
 * ferry; docs/TRANSPORTS.md ("Writing a transport") walks through one.
 */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include "ferry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_link ferry_link;

/* A sized struct (ferry.h, "Sized structs"): set .size = sizeof(ferry_link_ops). The link
 * keeps a pointer to it, not a copy. */
typedef struct ferry_link_ops {
    size_t size;
    /* The link has frames to pull. Called from any thread, possibly with ferry locks held:
     * it must only signal (a condition variable, an eventfd) and must not call ferry, but
     * for ferry_hub_now. Calls are coalesced: expect one per transition from "nothing to
     * send" to "something". */
    void (*wake)(void *ud);
    /* ferry is done with this link: pull once more (a final reset or close frame may be
     * waiting), write it, then close the connection. Same rules as wake. May be NULL. */
    void (*kick)(void *ud);
} ferry_link_ops;

/* A growable byte buffer that ferry_link_pull appends to. Zero-initialize it; reuse it
 * across pulls; free its data with ferry_buf_release. A transport may put its own header
 * bytes in front by setting len before the pull. */
typedef struct ferry_buf {
    char *data;
    size_t len;
    size_t cap;
} ferry_buf;

/* Makes room for `extra` more bytes after len. Returns FERRY_OK, FERRY_ENOMEM, or
 * FERRY_EINVAL (NULL, or len beyond cap: reserve before setting len). */
FERRY_API int ferry_buf_reserve(ferry_buf *b, size_t extra);
/* Frees the buffer's memory and zeroes it. NULL: nothing. */
FERRY_API void ferry_buf_release(ferry_buf *b);

/* Creates a link for a new connection and writes it to *out. `ops` must outlive the link;
 * `ud` is passed to its callbacks. Returns FERRY_OK, FERRY_EINVAL (`out`, `hub`, `ops` or
 * ops->wake NULL, or ops->size 0 or larger than this library's, logged) or FERRY_ENOMEM. */
FERRY_API int ferry_link_new(ferry_link **out, ferry_hub *hub, const ferry_link_ops *ops,
                             void *ud);

/* Feeds one inbound frame or batch (`len` bytes of JSON text). The first frame must be a
 * handshake. Valid client messages are delivered to the application before this returns.
 * Any error is also queued as an error frame for the peer, and the frame or batch that
 * caused it changes nothing (a batch is all or nothing); the link stays usable.
 * Returns FERRY_OK or:
 *   FERRY_ETOOBIG .. FERRY_ESEQ  the frame was malformed, too big, or out of place
 *   FERRY_ECAPACITY   a new session was refused: the hub, or the client's identity, holds
 *                     its maximum (the link is then done)
 *   FERRY_EAUTH       on_auth refused the handshake (the link is then done)
 *   FERRY_ERATE       a resume refused: too many from the peer's address (link done)
 *   FERRY_ESTORE      the session store failed; nothing changed, the client may retry
 *   FERRY_ECLOSED     the link is done: pull, write, close
 *   FERRY_ENOMEM
 *   FERRY_EINVAL      `l` NULL, or `data` NULL with `len` not 0 (nothing is queued)
 * Every error but FERRY_ECLOSED and FERRY_EINVAL is also queued for the peer. */
FERRY_API int ferry_link_recv(ferry_link *l, const char *data, size_t len);

/* The transport read a message of at least `len` bytes, over max_frame_bytes, and dropped
 * it unread (a WebSocket message, or the rest of one being reassembled). Counts the limit
 * and queues `error too_big` for the peer, as ferry_link_recv would for a frame it was given;
 * the link stays usable. Returns FERRY_ETOOBIG, FERRY_ECLOSED if the link is done, or
 * FERRY_EINVAL for NULL. */
FERRY_API int ferry_link_too_big(ferry_link *l, size_t len);

/* Flags for ferry_link_pull. */
enum {
    /* Always emit a JSON array, even for zero or one frame (long-poll responses). Without
     * it a single frame is emitted as a bare object and nothing at all when none is due. */
    FERRY_PULL_ARRAY = 1u << 0,
    /* Start from the oldest unacknowledged message instead of the first unsent one. A
     * long-poll transport pulls this way after feeding the poll's ack, so a response lost
     * in flight is sent again. */
    FERRY_PULL_REPLAY = 1u << 1,
    /* Control frames only (acks, errors, pings...), no messages: for the response to a
     * long-poll send, so that messages go out only in poll responses. */
    FERRY_PULL_CONTROL = 1u << 2,
    /* Leave queued error frames for a later pull: for a held long-poll, so that the error a
     * send caused is answered on that send, not on whichever request pulls first. */
    FERRY_PULL_NO_ERRORS = 1u << 3,
};

/* Appends the frames that are due (control frames first, then messages in seq order), up to
 * max_batch frames and about max_batch_bytes, to `out` as one JSON text. Returns the number
 * of frames appended (0 when nothing is due), FERRY_ENOMEM (nothing appended, nothing lost)
 * or FERRY_EINVAL (`l` or `out` NULL). Messages stay in the outbox until the client acks
 * them. wake is armed only by a pull that leaves nothing due, so pull until it returns 0
 * before waiting. */
FERRY_API int ferry_link_pull(ferry_link *l, ferry_buf *out, unsigned flags);

/* Which transport a link belongs to, so that the session layer can count moves between
 * them (upgrades to WebSocket, fallbacks to long-polling). Set it before the first recv. */
enum { FERRY_TRANSPORT_OTHER = 0, FERRY_TRANSPORT_WEBSOCKET, FERRY_TRANSPORT_LONGPOLL };
FERRY_API void ferry_link_set_transport(ferry_link *l, int transport);

/* Tells the link what on_auth may ask about the connection: the peer's address and a header
 * lookup. `ctx` is passed back to header(). Everything must stay valid for every later
 * ferry_link_recv on this link (or call this again before each). Optional. */
FERRY_API void ferry_link_set_peer(ferry_link *l, const char *peer_addr,
                                   const char *(*header)(void *ctx, const char *name),
                                   void *ctx);

/* Non-zero when the transport should close the connection once it has written everything
 * pulled so far (after a kick, a reset or close frame, a refused handshake). 1 for NULL. */
FERRY_API int ferry_link_done(ferry_link *l);

/* Why a link is done, for the transport's close code. */
typedef enum ferry_link_end {
    FERRY_LINK_OPEN = 0,      /* not done */
    FERRY_LINK_ENDED,         /* the session ended; its reset or close frame was the last */
    FERRY_LINK_SUPERSEDED,    /* the session was resumed on another connection */
    FERRY_LINK_TIMEOUT,       /* nothing heard from the client for heartbeat_timeout_ms */
    FERRY_LINK_STALLED,       /* the ack window stayed full for stall_timeout_ms */
    FERRY_LINK_REFUSED,       /* the handshake was refused (capacity) */
    FERRY_LINK_UNAUTHORIZED,  /* on_auth refused the client */
    FERRY_LINK_THROTTLED,     /* too many resume attempts from the peer's address */
    FERRY_LINK_RESTART,       /* this node stopped serving the session (it is shutting down):
                               * the client reconnects and resumes on another node */
} ferry_link_end;

/* FERRY_LINK_ENDED for NULL. */
FERRY_API ferry_link_end ferry_link_end_reason(ferry_link *l);

/* Checks a resume secret presented with a request that is not a handshake (a long-poll
 * poll or send), in constant time, against the secret this link's session issued last.
 * Using it proves the client has it, as any frame on a connection does. Returns FERRY_OK,
 * FERRY_ENOTFOUND (wrong secret, or no handshake yet), FERRY_ECLOSED (the link is no longer
 * its session's and the secret is the session's: a final frame the link holds is this
 * client's to pull) or FERRY_EINVAL (`l` NULL, or `secret` NULL with `len` not 0). */
FERRY_API int ferry_link_check_secret(ferry_link *l, const char *secret, size_t len);

/* This node is going away (a drain, ferry_civetweb.h's ferry_mount_drain): lets the link's
 * client go. In a cluster the session is kept (in the store) and detached here, and the link
 * is done with FERRY_LINK_RESTART: the client resumes on another node with nothing lost.
 * Without a cluster the session ends with reason shutdown (on_close runs) and its `close`
 * `shutdown` frame is the link's last, then it is done with FERRY_LINK_ENDED. A link without
 * a session yet is done with FERRY_LINK_RESTART. Either way the transport is kicked, and
 * closes once it has written what it pulls. Any thread but inside a ferry callback (it may
 * run on_close). Returns FERRY_OK, FERRY_ECLOSED (the link was already done; nothing
 * changed) or FERRY_EINVAL (NULL). */
FERRY_API int ferry_link_shutdown(ferry_link *l);

/* The ID of the link's session (NUL-terminated, 22 characters), or NULL before a handshake.
 * Valid until ferry_link_free. NULL for NULL. */
FERRY_API const char *ferry_link_session_id(ferry_link *l);

/* The connection is gone. Detaches the link from its session, which stays resumable for the
 * resume window, and frees the link. NULL is a no-op. */
FERRY_API void ferry_link_free(ferry_link *l);

/* Acknowledges the link's messages up to seq `ack`, as an ack frame from the client would,
 * for a transport that carries acks outside frames (a long-poll GET carries one in its
 * query string). Messages up to `ack` leave the outbox; a pull with FERRY_PULL_REPLAY then
 * starts after them. Counts as hearing from the client (heartbeat). Same threads as
 * ferry_link_recv: it counts as one. Returns FERRY_OK, FERRY_EACK (beyond the last seq sent;
 * `error bad_ack` is queued for the peer and nothing changes), FERRY_EHANDSHAKE (no
 * handshake yet; also queued), FERRY_ESTORE (the session store could not record that the
 * client uses its newest secret; queued, nothing changed), FERRY_ECLOSED (the link is
 * done), FERRY_EINVAL (NULL, or `ack` over 2^53-1) or FERRY_ENOMEM. */
FERRY_API int ferry_link_ack(ferry_link *l, uint64_t ack);

/* ---- For the transport's own work: time, limits, answers, logging --------------------- */

/* The hub's clock (ferry_options.clock, CLOCK_MONOTONIC by default), in ms. A transport
 * times everything through it (linger, handshake deadlines, rate limits), so that a test
 * that injects a clock controls the transport's timeouts too. Any thread, any lock: it
 * calls the clock function and nothing else. NULL: 0. */
FERRY_API uint64_t ferry_hub_now(ferry_hub *hub);

/* ms on the hub's clock since `then` (a ferry_hub_now value), 0 if `then` is later: a time
 * stamped by another thread after this one read the clock must not look like "a very long
 * time ago". Any thread, any lock. NULL: 0. */
FERRY_API uint64_t ferry_hub_since(ferry_hub *hub, uint64_t then);

/* Counts one hit of a limit (ferry_hub_limit_hits, ferry_hub_stats) that the transport
 * enforced itself: FERRY_LIMIT_CONNECTIONS, _HANDSHAKE_TIME, _CONTROL_RATE, _POLLS,
 * _ORIGIN, or _FRAME_SIZE for a request body refused unread. Out-of-range values are
 * ignored. Any thread, any lock (an atomic add). */
FERRY_API void ferry_hub_count_limit(ferry_hub *hub, ferry_limit l);

/* A token bucket: up to `burst` tokens, refilled at `rate` per second; times are ms on one
 * clock (the hub's: ferry_hub_now). The hub limits resumes per address with the same one.
 * The caller owns it and serializes calls on one bucket; nothing is allocated. */
typedef struct ferry_bucket {
    double tokens;
    uint64_t at; /* when it was last refilled, ms */
} ferry_bucket;

/* Starts `b` full at `now`. NULL: nothing. */
FERRY_API void ferry_bucket_init(ferry_bucket *b, unsigned burst, uint64_t now);
/* Refills `b` for the time since its last use, then takes one token. Returns 1 if it took
 * one, 0 if the bucket is empty (the caller refuses whatever asked) or NULL. */
FERRY_API int ferry_bucket_take(ferry_bucket *b, unsigned burst, unsigned rate, uint64_t now);
/* 1 if `b` would be full at `now` (nothing taken from it still counts): it can be
 * forgotten, and a new full one made when it is needed again. Does not change `b`. 1 for
 * NULL. */
FERRY_API int ferry_bucket_full(const ferry_bucket *b, unsigned burst, unsigned rate,
                                uint64_t now);

/* A wire error code that only a transport's own HTTP answers carry: "origin", the
 * request's Origin is not allowed (docs/PROTOCOL.md, Errors). Never returned by a call. */
#define FERRY_ANSWER_ORIGIN (-64)

/* Appends the body of an answer the transport gives without a link (a refused request, an
 * unknown long-poll session, a poll ended by a newer one): a JSON array, "[]" for FERRY_OK,
 * otherwise one error frame with the wire code of `code` (a wire error from ferry.h,
 * FERRY_ENOMEM for "internal", FERRY_ENOTFOUND for "unknown_session", FERRY_ANSWER_ORIGIN)
 * and `text` (NULL: ferry_strerror's; bytes outside printable ASCII become '?').
 * docs/PROTOCOL.md lists which answer goes with which status. Any thread (one buffer, one thread at a time). Returns
 * FERRY_OK, FERRY_ENOMEM (`b` unchanged) or FERRY_EINVAL (NULL `b`, or a code with no wire
 * code). */
FERRY_API int ferry_answer_encode(ferry_buf *b, int code, const char *text);

/* Appends printf output to `b`, for text a transport renders (metrics). Any thread (one
 * buffer, one thread at a time). Returns FERRY_OK, FERRY_ENOMEM (`b` unchanged) or
 * FERRY_EINVAL (`b` or `fmt` NULL). */
FERRY_API int ferry_buf_printf(ferry_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Logs one line through the function ferry_set_log installed, with ferry's promises (see
 * ferry.h): never a token, secret, session ID, Authorization or Cookie value, and text from
 * a client only through ferry_log_quote. Lines over 1023 bytes are cut, ending in "...".
 * Any thread, with no ferry lock held (the log function may call ferry). NULL fmt: nothing. */
FERRY_API void ferry_log(ferry_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Writes `s` in double quotes to `dst` (`cap` bytes, NUL included), for a log line: at most
 * `max` bytes of it, '"' and '\' escaped with a backslash, bytes outside printable ASCII as
 * \xNN, "..." after the closing quote when it was cut, (null) for NULL; "" when cap is under
 * 10. Returns dst (NULL for NULL dst). Any thread; no allocation. */
FERRY_API const char *ferry_log_quote(char *dst, size_t cap, const char *s, size_t max);

/* Checks `o` as ferry_hub_new does, for a transport that takes ferry_options inside its own
 * and refuses bad ones before it builds anything: on the first bad option (or a bad size)
 * logs "<caller>: <prefix><option> ..." with the value and the rule (prefix: where the
 * options sit, e.g. "core."; may be "") and returns FERRY_EINVAL; else FERRY_OK. Any
 * thread; log as ferry_log. FERRY_EINVAL without a log line if an argument is NULL. */
FERRY_API int ferry_options_check(const ferry_options *o, const char *caller, const char *prefix);

/* The sized-struct rule (ferry.h, "Sized structs") for a transport's own option structs,
 * as ferry applies it to its own: `dst` (dst_size bytes, a struct beginning with
 * `size_t size`) already holds the defaults; copies the first src->size bytes of `src`
 * over them and sets dst's size to dst_size. A size of 0 or above dst_size is refused: logs
 * "<caller>: <type>.size is ..." and returns FERRY_EINVAL with `dst` unchanged. Returns
 * FERRY_OK, or FERRY_EINVAL without a log line if a pointer is NULL. Any thread. */
FERRY_API int ferry_sized_copy(void *dst, size_t dst_size, const void *src, const char *caller,
                               const char *type);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_TRANSPORT_H */
