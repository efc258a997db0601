/* The Redis session store: the store seam (core/src/store.h) over a Redis shared by every
 * node, so that any node can load and change any session's durable record. The design,
 * the key names and the measured sizes are in docs/CLUSTER.md.
 *
 * What is in Redis: one hash per session, "<prefix>s:<session ID>", with two fields: "v",
 * the record's version (a decimal integer), and "r", the record (fy_rec) in a compact
 * binary form that starts with its format's version (FY_REC_FORMAT). A live record
 * expires `lease_ms` after the last save or refresh (ferry_hub_tick refreshes the records
 * of the sessions this node holds, every lease_ms / 3), so that a node that dies leaves
 * nothing behind for long; a record that holds an end (a tombstone) expires the hub's
 * tombstone_ms after it was saved.
 *
 * What stays on the node: the live state of each session (store.h), in a handle the store
 * keeps in its own table. find builds one from the stored record the first time this node
 * meets a session (detached, or ended if the record holds an end); each and count see the
 * handles of this node only.
 *
 * Atomicity. add and save are Lua scripts (EVALSHA): add writes only if no record has the
 * ID; save only if the stored version is the one the caller loaded, and bumps it.
 *
 * Errors, as store.h: FERRY_ESTORE when Redis fails or cannot be reached (nothing changed
 * here; the connection reconnects on the next call, redis.h), FERRY_ENOTFOUND from find
 * when Redis holds no record (also after it lost its data: a handle this node still has is
 * not found then). A save whose record is gone from Redis is FERRY_ESTORE, unless it saves
 * an end: the record is gone, which is where a tombstone goes anyway.
 *
 * Threads: as store.h; the table's lock is a recursive mutex taken before session locks
 * (locks.h, "store lock"), and the pool's connection locks come after every core lock.
 */
#ifndef FY_STORE_REDIS_H
#define FY_STORE_REDIS_H

#include "redis.h"
#include "store.h"

/* The first byte of a stored record: its encoding's version. Format 2 (before the
 * rotation key) is still read (rec_codec.c). */
#define FY_REC_FORMAT 3

/* The longest encoded record, and subscription list. */
#define FY_REC_MAX (2 + 8 + 8 + 4 + 1 + 1 + (FERRY_IDENTITY_MAX - 1) + 1 + (FY_NODE_MAX - 1) + \
                    3 * FY_HASH_BYTES + FY_KEY_BYTES + FY_RETIRED * (2 * FY_HASH_BYTES + 1))
#define FY_SUBS_BYTES_MAX (18 + FY_SUBS_MAX * (1 + 128 + 32))

typedef struct fy_store_redis_cfg {
    fy_redis_cfg redis;
    const char *prefix;  /* of every key; NULL: "ferry:" */
    unsigned lease_ms;   /* a live record's time to live without a save or refresh;
                          * 0: 600000 (10 minutes). Keep it above the hub's
                          * resume_window_ms, so that the record of a session whose node
                          * died outlives its resume window. */
} fy_store_redis_cfg;

/* A Redis store for `cfg` (copied). It connects on first use. 0, FERRY_EINVAL (a bad
 * address or a prefix over 64 bytes, logged) or FERRY_ENOMEM. */
int fy_store_redis_new(fy_store **out, const fy_store_redis_cfg *cfg);

/* The record's encoding into buf (FY_REC_MAX bytes), its length returned; and back. The
 * decoder returns false for a record it does not understand (another format, cut short).
 * The version is not part of it (it is the hash's "v"). */
size_t fy_rec_encode(const fy_rec *r, unsigned char *buf);
bool fy_rec_decode(fy_rec *r, const unsigned char *buf, size_t len);
size_t fy_subs_encode(const fy_subs_rec *r, unsigned char *buf);
bool fy_subs_decode(fy_subs_rec *r, const unsigned char *buf, size_t len);

#endif
