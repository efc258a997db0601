/* One direction's outbox: sequence-numbered references to shared messages, kept until the
 * peer acknowledges them, bounded by count and bytes. Seqs start at 1. Not locked: the
 * owning session's lock protects it. */
#ifndef FY_OUTBOX_H
#define FY_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* Bytes an entry counts for: its body plus the per-session frame around it. */
#define FY_OUTBOX_OVERHEAD 40

typedef struct fy_outbox {
    fy_msg **ring;       /* allocated on first push, grown by doubling */
    size_t cap;          /* slots in ring (a power of two) */
    size_t head;         /* slot of the oldest entry, seq `base` */
    size_t count;
    size_t bytes;
    uint64_t base;       /* seq of the oldest unacknowledged entry */
    uint64_t next_send;  /* seq of the next entry to send: base <= next_send <= base + count */
    uint64_t high_sent;  /* highest seq ever handed out for sending */
    size_t inflight;     /* bytes of entries in [base, next_send): sent, not yet acked */
    size_t max_msgs;
    size_t max_bytes;
} fy_outbox;

void fy_outbox_init(fy_outbox *o, size_t max_msgs, size_t max_bytes);

/* Appends `m`, taking over one reference the caller holds. Returns 0, FERRY_EFULL (over a
 * limit: nothing changed) or FERRY_ENOMEM. */
int fy_outbox_push(fy_outbox *o, fy_msg *m);

/* Releases every entry with seq <= ack. An ack below base is stale and ignored. Returns 0 or
 * FERRY_EACK (ack beyond anything sent: nothing changed). */
int fy_outbox_ack(fy_outbox *o, uint64_t ack);

/* For a new connection: apply the peer's ack, then send again from the oldest entry. */
int fy_outbox_rewind(fy_outbox *o, uint64_t ack);

/* The entry with this seq, or NULL if it is not held. */
fy_msg *fy_outbox_at(const fy_outbox *o, uint64_t seq);

/* Marks everything from next_send up to `seq` as handed out for sending. */
void fy_outbox_sent(fy_outbox *o, uint64_t seq);

static inline uint64_t fy_outbox_end(const fy_outbox *o)
{
    return o->base + o->count; /* the seq the next push gets */
}

/* Drops every entry and frees the ring; seqs continue where they were. */
void fy_outbox_clear(fy_outbox *o);

/* An empty outbox whose next push gets `seq`, everything before it counted as sent and
 * acknowledged (a session moving between cluster nodes). Call on an empty outbox. */
void fy_outbox_restart(fy_outbox *o, uint64_t seq);

/* Counts the next seq as pushed, sent and acknowledged without holding a message: the peer
 * had it from elsewhere. Call on an empty outbox. */
void fy_outbox_skip(fy_outbox *o);

#endif
