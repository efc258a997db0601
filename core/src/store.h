/* The session store: where a session's durable state lives, so that a store shared by
 * several nodes can replace the in-memory one without touching the protocol or transports.
 *
 * Durable and live state. A session is two things:
 *   - its durable record (fy_rec below): what a resume needs wherever it lands. The secret
 *     hashes and their rotation (the newest, the confirmed one and its attempt ID, the
 *     retired ones with theirs, the key new secrets are derived with), the identity, the
 *     inbound seq, and the end (tombstone) reason. It changes only through `save`, a
 *     compare-and-set on its version.
 *   - its live state (ferry_session, session.h): the attached link, wake and ack-window
 *     flags, timers, the in-process locks. It is this node's alone and never stored.
 * The session's ID is the store's key; it never changes.
 *
 * Not yet behind this interface (the in-memory store keeps them in the session object, as
 * before): the unacknowledged outbox and the subscriptions. The outbox holds refcounted
 * messages shared by every subscriber, and a shared store must keep publish at one write
 * whatever the subscriber count (DESIGN.md), so it needs per-topic streams and per-session
 * positions in fy_rec, not a copy per session; subscriptions are changed under the hub
 * lock together with the topic table (topic.c), which a blocking store must not hold.
 * Both are the next step of this seam.
 *
 * Handles. find and add deal in ferry_session handles: the node's in-memory object for a
 * session, with the live state and the last record loaded or saved (s->rec). A shared
 * store's find builds the handle from the stored record on first use on this node.
 *
 * Errors. Every operation returns 0 or a negative ferry_error, and on an error has changed
 * nothing:
 *   FERRY_ESTORE     the store failed or could not be reached; the caller may try again.
 *   FERRY_ENOMEM     the store could not allocate.
 *   FERRY_ENOTFOUND  find: the store holds no session with that ID.
 * `save` has one more answer, FY_STORE_STALE (positive, never reaches an application): the
 * record changed since `rec->version` was loaded (another node saved first). The caller
 * loads again and decides again; its change was not applied.
 *
 * Atomicity. `save` replaces the whole record if and only if the stored version is still
 * `rec->version`, and then the version becomes rec->version + 1 (in s->rec too). Two
 * nodes racing to resume one session both load version v and both save: exactly one
 * succeeds, the other gets FY_STORE_STALE, reloads, and sees the winner's rotated secret.
 * A shared store implements it as one atomic step (a Lua script, MULTI/WATCH).
 *
 * Threads. Every operation may be called from any thread. load and save are called with
 * the session's lock held (which serializes them on this node); add, find, remove and count
 * with no core lock held; each holds the store's own lock across its callbacks (the lock
 * order, locks.h). An operation may block (a shared store's round trip, the test store's
 * delays); the hub never calls one with the hub lock held.
 */
#ifndef FY_STORE_H
#define FY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "token.h"

/* A position in a cluster's feed (cluster.h): a Redis stream entry ID, "ms-n". {0, 0} is
 * before every entry. */
typedef struct fy_pos {
    uint64_t ms, n;
} fy_pos;

static inline int fy_pos_cmp(fy_pos a, fy_pos b)
{
    return a.ms != b.ms ? (a.ms < b.ms ? -1 : 1) : a.n != b.n ? (a.n < b.n ? -1 : 1) : 0;
}

/* A cluster node's name: 1 to 64 of [A-Za-z0-9_.-]. */
#define FY_NODE_MAX 65

/* A resume's attempt ID ("rid"), kept as a hash; `set` is false when it had none. */
typedef struct fy_rid {
    fy_hash h;
    bool set;
} fy_rid;

#define FY_RETIRED 8

/* A session's durable record. Plain data: copied by value, no pointers. */
typedef struct fy_rec {
    uint64_t version;          /* of the stored record this was loaded from (0: never stored) */
    char identity[FERRY_IDENTITY_MAX]; /* from on_auth; fixed when the session opens */
    fy_hash secret;            /* hash of the newest secret issued */
    fy_hash confirmed;         /* hash of the last secret the client proved it holds */
    fy_rid confirmed_rid;      /* the attempt ID of the resume that presented `confirmed` */
    uint8_t key[FY_KEY_BYTES]; /* the rotation key a resume's new secret is derived with
                                * (fy_token_next_secret): as secret as the record, never
                                * sent or logged */
    bool has_key;              /* false only for a record stored before it had one: the
                                * next rotation makes it */
    bool unconfirmed;          /* the newest secret is unproven: `confirmed` still resumes */
    fy_hash retired[FY_RETIRED];  /* secrets replaced by a newer proven one: using one again
                                   * means a copy exists (forked) */
    fy_rid retired_rid[FY_RETIRED]; /* each one's confirmed_rid */
    unsigned nretired;         /* total ever retired; the last FY_RETIRED are kept */
    uint64_t in_seq;           /* last client seq delivered to the application */
    ferry_reason end_reason;   /* FERRY_REASON_NONE while the session lives; else why it
                                * ended (a tombstone: a resume gets a reset with it) */
    /* In a cluster only (cluster.h); zero on one node: */
    char owner[FY_NODE_MAX];   /* the node serving the session */
    uint64_t in_pend;          /* the last client seq whose delivery to the application
                                * began; above in_seq only while a batch is being delivered,
                                * or after the node delivering it died */
    uint64_t cur_seq;          /* the cursor: outbox seqs up to cur_seq number the matching */
    fy_pos cur_pos;            /* feed entries up to cur_pos, and no others. Saved apart,
                                * moving only forward (a store's `cursors`) */
} fy_rec;

/* A session's subscriptions in a cluster, as stored: each topic with the feed position it
 * began after and, once given up, the one it ended at (until {0, 0}: still on). Ended ones
 * are kept while a cursor may lie before their end; `horizon`: ended ones before it were
 * dropped, so a cursor before it can no longer be numbered from (the session is reset). */
#define FY_SUBS_MAX 64
typedef struct fy_sub_rec {
    char topic[129];
    fy_pos from, until;
} fy_sub_rec;

typedef struct fy_subs_rec {
    fy_pos horizon;
    size_t n;
    fy_sub_rec e[FY_SUBS_MAX];
} fy_subs_rec;

/* save's answer when the record changed since it was loaded. */
#define FY_STORE_STALE 1

typedef struct fy_store fy_store;

/* A session's cursor, for a store's `cursors`. */
typedef struct fy_cursor {
    char id[23];
    char owner[FY_NODE_MAX];   /* the node that serves it: a cursor from another is refused */
    uint64_t seq;
    fy_pos pos;
} fy_cursor;

typedef struct fy_store_ops {
    /* Stores a new session under s->id with s->rec as its record (version 0; s->rec.version
     * becomes 1). The store takes a reference to s. 0, FERRY_ESTORE or FERRY_ENOMEM. */
    int (*add)(fy_store *st, ferry_session *s);
    /* The session with this ID: *out gets a new reference. 0, FERRY_ENOTFOUND or
     * FERRY_ESTORE. */
    int (*find)(fy_store *st, const char *id, size_t len, ferry_session **out);
    /* The session's stored record into *out (and s->rec). 0 or FERRY_ESTORE. s->lock held. */
    int (*load)(fy_store *st, ferry_session *s, fy_rec *out);
    /* Replaces the record with *rec if the stored version is rec->version (see Atomicity).
     * 0, FY_STORE_STALE or FERRY_ESTORE. s->lock held. */
    int (*save)(fy_store *st, ferry_session *s, const fy_rec *rec);
    /* Forgets the session and drops the store's reference. 0 or FERRY_ESTORE (it stays). */
    int (*remove)(fy_store *st, ferry_session *s);
    /* Calls fn on every session this node holds; fn may remove the session it is given,
     * and may take session and link locks, but not call add, find or each. */
    void (*each)(fy_store *st, void (*fn)(ferry_session *s, void *ud), void *ud);
    /* Sessions this node holds. */
    size_t (*count)(fy_store *st);
    /* In a cluster: `load` also reads the subscriptions into *s->subs (allocated by the
     * caller), and this saves them with the record, as `save` does. NULL on one node. */
    int (*save_subs)(fy_store *st, ferry_session *s, const fy_rec *rec, const fy_subs_rec *subs);
    /* In a cluster: forgets this node's handle without touching the stored session (it has
     * moved to another node). NULL on one node. */
    void (*forget)(fy_store *st, ferry_session *s);
    /* In a cluster: the handle this node holds for the ID, with a new reference, without a
     * round trip; NULL if none. NULL on one node. */
    ferry_session *(*local)(fy_store *st, const char *id, size_t len);
    /* In a cluster: stores these sessions' cursors (fy_rec.cur_seq, cur_pos), each only if
     * it moves the stored one forward. No lock held; failures are left to the next round.
     * NULL on one node. */
    void (*cursors)(fy_store *st, const fy_cursor *c, size_t n);
    /* The store's own periodic work (a shared store's leases), from ferry_hub_tick with no
     * core lock held; it may block. NULL: none. */
    void (*tick)(fy_store *st);
    void (*free)(fy_store *st);
} fy_store_ops;

struct fy_store {
    const fy_store_ops *ops;
    ferry_hub *hub; /* set by fy_hub_new_store: a shared store's find builds handles for it */
};

/* The in-memory store: a hash map from ID to session, the record kept in the session.
 * NULL on allocation failure. */
fy_store *fy_store_mem_new(void);

#endif
