/* The seam between the hub and a cluster (ferry_options.cluster): what the core asks of
 * the shared medium, implemented over Redis in cluster/ (docs/CLUSTER.md).
 *
 * The feed. Every message to a session, published to a topic or sent to one session, is
 * one entry appended to one totally ordered log shared by every node (a Redis stream). Each
 * node reads the whole feed in order and hands each entry to fy_hub_feed, which queues it
 * in the outboxes of the sessions this node serves that it matches: a topic entry matches
 * a session subscribed to the topic at that position, a direct entry the session it names.
 *
 * Numbering. A session's outbox seqs number the entries that match it, in feed order. The
 * subscriptions, with the feed position each began (and, for one given up, ended) at, are
 * in the session's record, so which entries match a session is a function of the feed and
 * the record alone: any node can number them again from a cursor (a seq and the position
 * it had; store.h), and so rebuild the outbox exactly, which is how a session moves.
 *
 * Threads. The reader thread calls fy_hub_feed; every op may be called from any thread.
 * `append`, `range` and `status` may block for a round trip and are called with no core lock
 * held except pub_lock (range, by a resume that rebuilds an outbox).
 */
#ifndef FY_CLUSTER_SEAM_H
#define FY_CLUSTER_SEAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"
#include "hist.h"
#include "store.h"

/* An entry's kind. */
enum {
    FY_FEED_TOPIC = 't',  /* name: the topic; body: the message */
    FY_FEED_DIRECT = 'd', /* name: the session ID; body: the message */
    /* Control entries, in a stream apart from the feed (fy_hub_control): */
    FY_FEED_MOVED = 'm',  /* name: the session ID; body: the node that took the session over
                           * and the record's version then */
    FY_FEED_ENDED = 'e',  /* name: the session ID; body: the reason it ended, decided on a
                           * node that did not serve it, and the record's version then */
};

/* range's answer when the feed no longer holds everything after `from`. */
#define FY_FEED_TRIMMED 2

typedef struct fy_feed_entry {
    fy_pos pos;
    int kind;
    const char *name;
    size_t name_len;
    const char *body;
    size_t body_len;
} fy_feed_entry;

/* What a cluster measures of its Redis, for ferry_stats (redis_rtt, redis_errors): updated
 * by the cluster's connections with atomics, read by ferry_hub_stats. */
typedef struct fy_redis_meter {
    fy_hist rtt;                 /* each command's round trip */
    atomic_uint_fast64_t errors; /* commands that failed */
} fy_redis_meter;

typedef struct fy_cluster_ops {
    /* The hub's session store (store.h), which the hub then owns. 0 or FERRY_ENOMEM. */
    int (*store)(ferry_cluster *c, fy_store **out);
    /* Starts reading the feed into fy_hub_feed, from the entries appended from now on. 0 or
     * FERRY_ENOMEM. */
    int (*start)(ferry_cluster *c, ferry_hub *hub);
    /* Stops the reader; nothing calls fy_hub_feed once it returns. */
    void (*stop)(ferry_cluster *c);
    /* Appends one entry. 0 once the feed holds it (*pos: where), else FERRY_ESTORE (it may or may not
     * have been appended: the caller cannot know, and says so). */
    int (*append)(ferry_cluster *c, int kind, const char *name, size_t name_len,
                  const char *body, size_t body_len, fy_pos *pos);
    /* Calls fn on the entries after `from` up to and including `to`, in order, stopping at
     * the first non-zero answer (returned). FY_FEED_TRIMMED when entries after `from` may
     * have been trimmed from the feed already; FERRY_ESTORE when it cannot be read. */
    int (*range)(ferry_cluster *c, fy_pos from, fy_pos to,
                 int (*fn)(const fy_feed_entry *e, void *ud), void *ud);
    /* FERRY_OK while the node reaches Redis, else FERRY_ESTORE. Never blocks. */
    int (*status)(ferry_cluster *c);
    /* The cluster's Redis measurements, valid while it lives; NULL if it keeps none. May be
     * NULL (a cluster that measures nothing). Never blocks. */
    fy_redis_meter *(*meter)(ferry_cluster *c);
} fy_cluster_ops;

struct ferry_cluster {
    const fy_cluster_ops *ops;
    char node[FY_NODE_MAX];
};

/* Hands feed entries, in feed order, to the sessions of this node they match (cluster.h,
 * The feed). Called by the cluster's reader thread, with no lock held. */
void fy_hub_feed(ferry_hub *hub, const fy_feed_entry *es, size_t n);

/* Hands control entries (FY_FEED_MOVED, FY_FEED_ENDED), read from a stream of their own,
 * to this node: sessions it must let go of or end. Called by the reader thread, with no lock
 * held. */
void fy_hub_control(ferry_hub *hub, const fy_feed_entry *es, size_t n);

/* The reader's first contact with Redis: the feed's newest entry, after which everything
 * this node opens starts. Until then the hub opens no session. */
void fy_hub_feed_start(ferry_hub *hub, fy_pos newest);

/* Redis lost data (cluster.c): this node lets every session go, and reads on from `newest`. */
void fy_hub_feed_lost(ferry_hub *hub, fy_pos newest);

#endif
