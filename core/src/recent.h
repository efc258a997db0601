/* The feed entries a cluster node read last, kept in memory so that a session adopted
 * here numbers its outbox again from them (feed.c) instead of from Redis: when a node
 * dies, the others adopt its sessions by the thousand, and each adoption then costs no
 * round trip for the feed. The entries are exactly the feed's, read in order by this node's
 * reader: `from` is the position just before the oldest, and every entry after it up to the
 * hub's feed_pos is here. Bounded by count, bytes and feed time (recent.c); what falls out
 * is read from Redis as before.
 *
 * Not thread-safe: the hub's pub_lock guards it. */
#ifndef FY_RECENT_H
#define FY_RECENT_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster_seam.h"
#include "msg.h"

typedef struct fy_recent_item {
    fy_pos pos;
    int kind;     /* FY_FEED_TOPIC or FY_FEED_DIRECT */
    fy_msg *m;    /* a reference */
    size_t name_len;
    char name[];
} fy_recent_item;

typedef struct fy_recent {
    fy_recent_item **ring;
    size_t cap, head, n;  /* ring[head] is the oldest of n */
    size_t bytes;
    fy_pos from;          /* everything after it (up to what was added last) is here */
} fy_recent;

/* Forgets every entry; from now on it holds the entries after `from`. */
void fy_recent_reset(fy_recent *r, fy_pos from);

/* Adds the entry at e->pos, which follows the last one added, with its message `m` (a
 * reference is taken), and drops the oldest beyond the bounds. On allocation failure it
 * forgets everything up to e->pos, so that what it holds stays whole. */
void fy_recent_add(fy_recent *r, const fy_feed_entry *e, fy_msg *m);

/* Whether every entry after `from` (up to the last added) is here. */
bool fy_recent_covers(const fy_recent *r, fy_pos from);

/* Calls fn on the entries after `from` up to and including `to`, in order, stopping at the
 * first non-zero answer (returned). fy_recent_covers(r, from) must hold. */
int fy_recent_each(const fy_recent *r, fy_pos from, fy_pos to,
                   int (*fn)(const fy_recent_item *it, void *ud), void *ud);

void fy_recent_free(fy_recent *r);

#endif
