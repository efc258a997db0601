/* An outbound message, encoded once and shared by reference among every outbox that holds
 * it. The body is the tail of a msg frame: `"data":<json>` or `"topic":"t","data":<json>`;
 * each session adds only its `{"t":"msg","seq":N,` prefix and the closing brace. */
#ifndef FY_MSG_H
#define FY_MSG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fy_msg {
    atomic_size_t refs;
    uint64_t pos_ms, pos_n; /* in a cluster, its feed position (cluster.h); else 0 */
    uint64_t born_ns;       /* when the hub took it (fy_mono_ns), for publish_to_write */
    size_t len;
    char body[];
} fy_msg;

/* Validates `json` (one JSON value, at most max_depth deep) and builds the body with refs = 1.
 * Returns 0 or FERRY_EJSON, FERRY_EDEPTH, FERRY_ETOOBIG (body over max_bytes), FERRY_ENOMEM. */
int fy_msg_new(fy_msg **out, const char *topic, const char *json, size_t len, size_t max_depth,
               size_t max_bytes);

static inline void fy_msg_ref_n(fy_msg *m, size_t n)
{
    atomic_fetch_add_explicit(&m->refs, n, memory_order_relaxed);
}

void fy_msg_unref_n(fy_msg *m, size_t n);

/* A message from a body already built by fy_msg_new (a cluster's feed entry), refs = 1.
 * NULL on allocation failure. */
fy_msg *fy_msg_from_body(const char *body, size_t len);

static inline void fy_msg_unref(fy_msg *m)
{
    fy_msg_unref_n(m, 1);
}

#endif
