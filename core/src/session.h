/* A session: identity, secret hashes, state, the outbox to the client and the inbound seq.
 * Fields are protected by `lock` unless noted. */
#ifndef FY_SESSION_H
#define FY_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ferry.h"
#include "map.h"
#include "outbox.h"
#include "token.h"

typedef struct fy_sub fy_sub;

/* A resume's attempt ID ("rid"), kept as a hash; `set` is false when it had none. */
typedef struct fy_rid {
    fy_hash h;
    bool set;
} fy_rid;

#define FY_RETIRED 8
typedef struct ferry_link ferry_link;

struct ferry_session {
    atomic_size_t refs;
    pthread_mutex_t lock;
    pthread_mutex_t in_lock;   /* serializes inbound delivery and the open/close callbacks */
    ferry_hub *hub;            /* immutable */
    char id[FY_ID_LEN + 1];    /* immutable */
    char identity[FERRY_IDENTITY_MAX]; /* from on_auth; immutable once opened */
    fy_map_node node;          /* owned by the store (hub lock) */
    fy_sub *subs;              /* this session's subscriptions (hub lock and lock to change,
                                * either to read) */
    unsigned unsubs;           /* unsubscribes so far (as subs) */
    ferry_session *pend_next;  /* hub pending list (hub pend_lock) */

    fy_hash secret;            /* hash of the newest secret issued */
    fy_hash confirmed;         /* hash of the last secret the client proved it holds */
    fy_rid confirmed_rid;      /* the attempt ID of the resume that presented `confirmed` */
    bool unconfirmed;          /* the newest secret is unproven: `confirmed` still resumes */
    fy_hash retired[FY_RETIRED];  /* secrets replaced by a newer proven one: using one again
                                   * means a copy exists (forked) */
    fy_rid retired_rid[FY_RETIRED]; /* each one's confirmed_rid */
    unsigned nretired;         /* total ever retired; the last FY_RETIRED are kept */
    ferry_state state;
    ferry_reason end_reason;
    bool opened;               /* on_open or on_reset ran, so on_close is owed */
    bool wake_armed;           /* the attached link drained the outbox: wake on next push */
    bool window_blocked;       /* the last pull stopped at the ack window */
    uint64_t blocked_since;    /* clock ms when it did */
    ferry_link *link;          /* the attached link, or NULL */
    int transport;             /* of the last link attached */
    fy_outbox out;
    uint64_t in_seq;           /* last client seq delivered to the application */
    uint64_t last_rx;          /* clock ms of the last frame from the client */
    uint64_t last_ping;        /* clock ms of the last ping queued */
    uint64_t since;            /* clock ms of the last detach or the end */
    void *user;
};

/* A new session with refs = 1, state NEW and a fresh ID. NULL on allocation failure. */
ferry_session *fy_session_new(ferry_hub *hub);

/* Acks or rewinds the outbox, keeping the hub's total of outbox bytes. s->lock held. */
int fy_session_ack_locked(ferry_session *s, uint64_t ack, bool rewind);

/* Queues `m` (the caller's reference passes to the outbox on success). On overflow, or when
 * the outbox cannot grow, the session ends with reason overflow and FERRY_EFULL is returned;
 * FERRY_ECLOSED if it had already ended. `reserved`: the caller already counted m's bytes in
 * the hub's outbox budget (and takes them back if this fails). Call with s->lock held. */
int fy_session_push_locked(ferry_session *s, fy_msg *m, bool reserved);

/* Ends the session: drops its outbox, gives an attached link its final frame, and hands
 * the session to the hub for unsubscribing and on_close. No-op if already ended. Call with
 * s->lock held. */
void fy_session_end_locked(ferry_session *s, ferry_reason why, uint64_t now);

/* The client proved it holds the newest secret: the one it proved before is retired.
 * s->lock held. */
void fy_session_confirm_locked(ferry_session *s);

/* Retires a secret hash, with the attempt ID of the resume that presented it. s->lock held. */
void fy_session_retire_locked(ferry_session *s, const fy_hash *h, const fy_rid *rid);

/* True if `h` is a retired secret of s (constant time over the kept ones). *same_attempt is
 * set if `rid` is the attempt ID that secret was last presented with: a delayed copy of
 * the owner's own resume, not a second holder. s->lock held. */
bool fy_session_is_retired(const ferry_session *s, const fy_hash *h, const fy_rid *rid,
                           bool *same_attempt);

/* Kicks the attached link, if any, for `why`, and marks the session detached. s->lock held. */
void fy_session_detach_locked(ferry_session *s, uint64_t now, int why);

#endif
