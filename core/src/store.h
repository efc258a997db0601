/* Where sessions live. The hub reaches session state and outboxes only through this
 * interface, so a shared store (several nodes) can replace the in-memory one without
 * touching transports. Every operation is called with the hub lock held. */
#ifndef FY_STORE_H
#define FY_STORE_H

#include <stddef.h>

#include "ferry.h"

typedef struct fy_store fy_store;

typedef struct fy_store_ops {
    /* Adds a session under its ID; the store takes a reference. Returns 0 or FERRY_ENOMEM. */
    int (*add)(fy_store *st, ferry_session *s);
    /* The session with this ID, borrowed (valid while the hub lock is held), or NULL. */
    ferry_session *(*find)(fy_store *st, const char *id, size_t len);
    /* Removes the session and drops the store's reference. */
    void (*remove)(fy_store *st, ferry_session *s);
    /* Calls fn on every session; fn may remove the session it is given. */
    void (*each)(fy_store *st, void (*fn)(ferry_session *s, void *ud), void *ud);
    size_t (*count)(fy_store *st);
    void (*free)(fy_store *st);
} fy_store_ops;

struct fy_store {
    const fy_store_ops *ops;
};

/* The in-memory store: a hash map from ID to session. NULL on allocation failure. */
fy_store *fy_store_mem_new(void);

#endif
