/* A session on this node: its handle in the store, its durable record as last loaded or
 * saved (store.h), and its live state: the attached link, the outbox to the client, timers.
 * Fields are protected by `lock` unless noted. */
#ifndef FY_SESSION_H
#define FY_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ferry.h"
#include "map.h"
#include "outbox.h"
#include "store.h"
#include "token.h"

typedef struct fy_sub fy_sub;

typedef struct ferry_link ferry_link;

struct ferry_session {
    atomic_size_t refs;
    pthread_mutex_t lock;
    pthread_mutex_t in_lock;   /* serializes inbound delivery and the open/close callbacks */
    ferry_hub *hub;            /* immutable */
    char id[FY_ID_LEN + 1];    /* immutable; the store's key */
    char identity[FERRY_IDENTITY_MAX]; /* rec.identity, immutable once stored: read without
                                        * the lock */
    fy_map_node node;          /* owned by the in-memory store (its lock) */
    fy_sub *subs;              /* this session's subscriptions (hub lock and lock to change,
                                * either to read) */
    unsigned unsubs;           /* unsubscribes so far (as subs) */
    ferry_session *pend_next;  /* hub pending list (hub pend_lock) */

    fy_rec rec;                /* the durable record, as last loaded or saved (store.h) */
    ferry_state state;
    ferry_reason end_reason;   /* why it ended here; rec.end_reason once that is saved */
    bool end_unsaved;          /* ended, but saving the end failed: the tick tries again */
    bool opened;               /* on_open or on_reset ran, so on_close is owed */
    bool wake_armed;           /* the attached link drained the outbox: wake on next push */
    bool window_blocked;       /* the last pull stopped at the ack window */
    uint64_t blocked_since;    /* clock ms when it did */
    ferry_link *link;          /* the attached link, or NULL */
    int transport;             /* of the last link attached */
    fy_outbox out;
    /* In a cluster only (cluster.h): */
    bool serving;              /* this node serves the session: its outbox and subscriptions
                                * here are current (it opened or adopted it). On one node,
                                * always true. */
    fy_subs_rec *subs_rec;     /* the subscriptions as last loaded or saved (store.h) */
    uint64_t drop_to;          /* feed messages numbered up to this had been delivered by the
                                * node before: counted, not kept */
    fy_pos acked_pos;          /* the feed position of the last message released */
    fy_pos replayed_to;        /* an adoption numbered the feed up to here: the reader's
                                * copies of those entries are not this session's */
    uint64_t cur_saved;        /* the cursor last handed to the store */
    fy_pos cur_saved_pos;
    uint64_t in_msg_seq;       /* the client seq of the message on_message has (in_lock) */
    bool in_repeat;            /* and whether a node before may have delivered it (in_lock) */
    bool forgotten;            /* the store let go of this handle (it moved to another node) */
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
/* The same, but leaves saving the end to the store to the next tick (s->end_unsaved), for
 * a caller that must not wait on the store (a publish, under its lock). */
void fy_session_end_unsaved_locked(ferry_session *s, ferry_reason why, uint64_t now);

/* Tries to save a change to the session's record (store.h) at most this many times when
 * another node keeps saving first. */
#define FY_STORE_TRIES 8

/* Loads the record, lets `change` edit it, and saves it: again from the load when the store
 * answers FY_STORE_STALE. `change` returns 1 to save, 0 when there is nothing to save
 * (returned as is), or a negative error (returned as is, nothing saved). Returns 0 or
 * `change`'s answer once saved, FERRY_ESTORE or FERRY_ENOMEM (nothing saved), or
 * FERRY_ESTORE after FY_STORE_TRIES stale answers. s->lock held. */
int fy_session_update_locked(ferry_session *s, int (*change)(fy_rec *r, void *ctx), void *ctx);

/* Saves the end of an ended session into its record; if the store fails, leaves
 * end_unsaved set for the next tick. s->lock held. */
void fy_session_save_end_locked(ferry_session *s);

/* In a cluster: this node stops serving s (another node took it over, or this one shuts
 * down): the link is kicked for `why`, the local subscriptions and outbox dropped, and
 * nothing is saved; the caller then forgets the handle. pub_lock (to drop the subscriptions
 * in feed order) and the hub lock held, s->lock not. */
void fy_session_leave(ferry_session *s, int why);

/* Kicks the attached link, if any, for `why`, and marks the session detached. s->lock held. */
void fy_session_detach_locked(ferry_session *s, uint64_t now, int why);

#endif
