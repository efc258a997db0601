/* ferry in a cluster: several ferry nodes, each with its own hub, sharing sessions and
 * messages through Redis, so that any node serves any session and a node that dies loses
 * nothing (docs/CLUSTER.md).
 *
 * Use: fill ferry_cluster_options, create the cluster, and give it to the hub in
 * ferry_options.cluster (through ferry_mount_options.core with the civetweb transports):
 *
 *     ferry_cluster_options co;
 *     ferry_cluster_options_init(&co);
 *     co.redis = "127.0.0.1:6379";
 *     co.node = "node-a";
 *     ferry_cluster *c;
 *     if (ferry_cluster_new(&c, &co) != FERRY_OK) ...
 *     ferry_options o;
 *     ferry_options_init(&o);
 *     o.cluster = c;
 *     ... ferry_hub_new(&hub, &o, ...) or ferry_mount_new with mount_options.core = &o ...
 *     ... ferry_mount_free or ferry_hub_free first, then ferry_cluster_free(c).
 *
 * Link: libferry-cluster.a, then libferry (either form), then -lhiredis (pkg-config
 * ferry-cluster). A service that does not cluster needs none of it.
 */
#ifndef FERRY_CLUSTER_H
#define FERRY_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A sized struct (ferry.h, "Sized structs"): fill it with ferry_cluster_options_init. */
typedef struct ferry_cluster_options {
    size_t size;
    /* Redis: "host:port" (port 6379 when left out) or an absolute path to a unix socket.
     * NULL: "127.0.0.1:6379". */
    const char *redis;
    const char *password;   /* AUTH on every connection; NULL or "": none. Never logged. */
    int database;           /* SELECT on every connection when not 0 */
    /* This node's name: 1 to 64 of [A-Za-z0-9_.-], different on every node of the cluster
     * (two nodes with one name would each take the other's sessions for its own). */
    const char *node;
    const char *prefix;     /* of every Redis key, at most 64 bytes ("ferry:"): clusters
                             * sharing one Redis need different prefixes */
    uint32_t connect_timeout_ms; /* (1000) */
    uint32_t command_timeout_ms; /* (1000) */
    /* A session's record lives this long in Redis after its node last refreshed it
     * (600000). Keep it above the hub's resume_window_ms: when a node dies, its detached
     * sessions must outlive their resume window. */
    uint32_t lease_ms;
    /* Messages stay in the feed at least this long (300000): a session can move to another
     * node while what it has not acknowledged is younger than this. Keep it above the hub's
     * resume_window_ms. */
    uint32_t feed_keep_ms;
    size_t feed_max;        /* and at most this many messages of all topics (1000000) */
} ferry_cluster_options;

/* Fills `o` with the defaults above (node NULL: it must be set) and sets its size. NULL:
 * nothing. */
FERRY_API void ferry_cluster_options_init(ferry_cluster_options *o);

/* Creates a cluster member for one hub; it connects when the hub starts, and a node starts
 * while Redis is down (ferry_hub_health says so until it is back). `o` is copied, strings
 * included. Returns FERRY_OK and writes *out, or, having logged why (ferry_set_log):
 *   FERRY_EINVAL  `out` or `o` is NULL; o->size is 0 or larger than this library's; node
 *                 is missing or breaks the rule above; redis is not host:port or an absolute
 *                 path; prefix is over 64 bytes; a timeout, lease_ms, feed_keep_ms or
 *                 feed_max is 0
 *   FERRY_ENOMEM
 * Threads: any. The cluster is used by exactly one hub, from ferry_hub_new to
 * ferry_hub_free. */
FERRY_API int ferry_cluster_new(ferry_cluster **out, const ferry_cluster_options *o);

/* Frees the cluster. Call it after the hub that used it is freed. NULL: nothing. */
FERRY_API void ferry_cluster_free(ferry_cluster *c);

#ifdef __cplusplus
}
#endif

#endif
