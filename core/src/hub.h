/* The hub's internals: the session store, topics, and the list of ended sessions whose
 * cleanup and on_close run outside every lock. */
#ifndef FY_HUB_H
#define FY_HUB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ferry.h"
#include "hist.h"
#include "locks.h" /* the lock order */
#include "map.h"
#include "msg.h"
#include "recent.h"
#include "store.h"

/* One subscriber in a publish's snapshot: a reference, and its unsubscribe count then. */
typedef struct fy_fan {
    ferry_session *s;
    unsigned unsubs;
} fy_fan;

struct ferry_hub {
    pthread_mutex_t pub_lock;  /* one publish fans out at a time; outside `lock` */
    fy_fan *fan;               /* the subscribers of the publish under way (pub_lock) */
    size_t fan_cap;
    pthread_mutex_t lock;      /* topics, subscriptions; never held across a fan-out */
    ferry_options opt;         /* immutable */
    ferry_callbacks cb;        /* immutable */
    void *ud;
    fy_store *store;
    ferry_cluster *cluster;    /* NULL on one node (cluster.h) */
    fy_pos feed_pos;           /* the last feed entry handed out (pub_lock) */
    fy_pos appended;           /* the last entry this node appended (pub_lock) */
    bool feed_ready;           /* fy_hub_feed_start has run (pub_lock) */
    pthread_cond_t feed_cond;  /* feed_pos moved (with pub_lock) */
    fy_recent recent;          /* the feed entries read last, for adoptions (pub_lock) */
    uint64_t cursors_at;       /* hub clock of the last cursor round (the tick's thread) */
    fy_map topics;
    atomic_size_t live;        /* sessions not yet ended */
    pthread_mutex_t pend_lock; /* a leaf lock: the pending list */
    ferry_session *pend_head;
    ferry_session *pend_tail;
    atomic_bool pend_any;
    atomic_uint_fast64_t limits[FERRY_LIMIT_COUNT];
    atomic_size_t outbox_bytes;  /* in every outbox together */
    atomic_uint_fast64_t opened, resumes, resume_failures[FERRY_REASON_COUNT];
    atomic_uint_fast64_t msgs_in, bytes_in, msgs_out, bytes_out, upgrades, fallbacks;
    atomic_uint_fast64_t resets[FERRY_REASON_COUNT]; /* reset frames pulled, by reason */
    fy_hist pub_write;           /* taken to first pulled (ferry_stats.publish_to_write) */
    pthread_mutex_t ident_lock;  /* a leaf lock: the per-identity counts */
    fy_map idents;               /* identity -> live sessions */
    pthread_mutex_t rate_lock; /* a leaf lock: the resume buckets */
    fy_map rates;              /* peer address -> fy_bucket */
};

/* ferry_hub_new with `store` for the sessions (store.h); the hub owns it from here on, and
 * frees it if this fails. FERRY_ENOMEM also for a NULL store (its constructor failed). */
int fy_hub_new_store(ferry_hub **out, const ferry_options *opt, const ferry_callbacks *cb,
                     void *ud, fy_store *store);

/* Counts a live session for an identity; false (nothing counted) at the limit. */
bool fy_hub_identity_add(ferry_hub *hub, const char *identity);
/* The same against `limit` (0: none), for a session a cluster node adopts: it was counted
 * where it opened, and is counted here whatever the count. */
bool fy_hub_identity_count(ferry_hub *hub, const char *identity, size_t limit);
void fy_hub_identity_del(ferry_hub *hub, const char *identity);

/* Takes one resume attempt from `addr`'s bucket; false when it is empty. */
bool fy_hub_resume_allowed(ferry_hub *hub, const char *addr);

uint64_t fy_hub_now(const ferry_hub *hub);

/* Checks options as ferry_hub_new does (options.c). On the first bad one logs
 * "<caller>: <prefix><option> ..." with the value and the rule, and returns FERRY_EINVAL;
 * else FERRY_OK. `prefix` names where the options sit ("core." in a mount's options). */
int fy_options_check(const ferry_options *o, const char *caller, const char *prefix);

/* Fills *dst with the defaults, then copies `src` over them under the sized-struct rule
 * (ferry_sized_copy); NULL `src` leaves the defaults. FERRY_OK, or FERRY_EINVAL (logged). */
int fy_options_load(ferry_options *dst, const ferry_options *src, const char *caller);

/* The sized-struct rule's check (ferry.h, "Sized structs"): `size`, a struct's size field,
 * against `known`, this library's sizeof it. FERRY_OK, or FERRY_EINVAL with a log line
 * "<caller>: <type>.size is ...". */
int fy_size_check(size_t size, size_t known, const char *caller, const char *type);

/* Counts one hit of a limit. Any thread, any lock. */
static inline void fy_hub_limit(ferry_hub *hub, ferry_limit l)
{
    atomic_fetch_add_explicit(&hub->limits[l], 1, memory_order_relaxed);
}

/* Queues an ended session for fy_hub_drain (takes a reference). Any lock may be held. */
void fy_hub_defer_end(ferry_hub *hub, ferry_session *s);

/* Unsubscribes ended sessions and runs their on_close. Called only from transport calls,
 * ferry_hub_tick and ferry_hub_free, never from a call the application makes, so that an
 * application thread never runs callbacks or waits on a session's inbound lock. Call with
 * no lock held; does nothing inside an application callback (the outermost call drains). */
void fy_hub_drain(ferry_hub *hub);

/* Runs application callbacks with the guard that keeps fy_hub_drain out of them. */
void fy_hub_call_open(ferry_hub *hub, ferry_session *s, ferry_reason reset_why);
void fy_hub_call_message(ferry_hub *hub, ferry_session *s, json_t *data);
bool fy_hub_allow_subscribe(ferry_hub *hub, ferry_session *s, const char *topic);
int fy_hub_call_auth(ferry_hub *hub, const ferry_auth *a, char *identity, const char **reason);

/* In a cluster: pushes m (a feed entry's message, one reference per push taken here) to s
 * if the entry is the next one its numbering expects. pub_lock and s->lock held. */
int fy_hub_feed_push_locked(ferry_session *s, fy_msg *m, bool reserved);

/* Queues m for every subscriber of `topic` on this node (m's own reference stays the
 * caller's), through fy_hub_feed_push_locked when `feed`; *queued: how many took it.
 * 0 or FERRY_ENOMEM. pub_lock held. */
int fy_hub_fanout(ferry_hub *hub, const char *topic, fy_msg *m, bool feed, size_t *queued);

/* In a cluster (feed.c): */
/* The feed position a new session's cursor starts at: false until the node has reached
 * Redis once (fy_hub_feed_start). No lock held. */
bool fy_hub_feed_pos(ferry_hub *hub, fy_pos *out);
/* Waits (at most about a second) until this node has read back everything it appended,
 * then takes pub_lock: what a session was sent before it subscribes precedes what the
 * subscription brings, as on one node. */
void fy_hub_feed_settle_lock(ferry_hub *hub);
/* Notes the position of an entry this node appended. No lock held. */
void fy_hub_feed_appended(ferry_hub *hub, fy_pos pos);
/* Rebuilds the live state of a session this node takes over, from its record just saved:
 * the outbox from the feed after its cursor, the client's `ack` applied. 0, FY_FEED_TRIMMED
 * (messages it needs are gone: the session cannot go on), FERRY_ESTORE or FERRY_ENOMEM.
 * pub_lock and s->lock held; the subscriptions are made by fy_session_adopt_subs. */
int fy_session_adopt_locked(ferry_session *s, uint64_t ack);
/* Makes the local subscriptions of an adopted session. pub_lock held, no other. */
void fy_session_adopt_subs(ferry_session *s);
/* The tick's part in a cluster: hands the store the cursors that moved. No lock held. */
void fy_hub_feed_tick(ferry_hub *hub);

/* Topics (topic.c); all with the hub lock held. Subscribing and unsubscribing also need the
 * session's lock, so that fy_topic_subscribed can be asked under either. */
typedef struct fy_topic fy_topic;
bool fy_topic_name_ok(const char *name);
fy_topic *fy_topic_find(ferry_hub *hub, const char *name);
int fy_topic_subscribe(ferry_hub *hub, ferry_session *s, const char *name);
/* Whether a cluster subscription record (store.h) matches a feed entry of `topic` at `pos`. */
bool fy_sub_rec_matches(const fy_subs_rec *r, const char *topic, size_t len, fy_pos pos);
void fy_topic_unsubscribe(ferry_hub *hub, ferry_session *s, const char *name);
void fy_topic_unsubscribe_all(ferry_hub *hub, ferry_session *s);
/* Whether s is subscribed to `name`; the hub lock or s->lock held. */
bool fy_topic_subscribed(const ferry_session *s, const char *name);
/* Subscribers of t, and their count. */
ferry_session *fy_topic_subscriber(const fy_topic *t, size_t i);
size_t fy_topic_size(const fy_topic *t);

#endif
