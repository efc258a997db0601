/* The session handles a node holds, by ID: what every store keeps on this node (store.h,
 * Handles), whether the records live here or elsewhere. Each handle held carries one
 * reference. The lock is recursive, so that an `each` callback may delete the handle it is
 * given; it is the store's own lock in the lock order (locks.h). */
#ifndef FY_HANDLES_H
#define FY_HANDLES_H

#include <pthread.h>
#include <stddef.h>

#include "ferry.h"
#include "map.h"

typedef struct fy_handles {
    pthread_mutex_t lock;
    fy_map map;
} fy_handles;

/* 0 or FERRY_ENOMEM. */
int fy_handles_init(fy_handles *h);
/* Drops every handle's reference. */
void fy_handles_destroy(fy_handles *h);

/* Holds `s` (not already held) under its ID, taking a reference. */
void fy_handles_put(fy_handles *h, ferry_session *s);
/* The handle held for this ID, with a new reference. If none is held and `make` is not NULL,
 * make(ud) is called under the lock for a new session (NULL: none), which is then held and
 * returned the same way. NULL if there is none. */
ferry_session *fy_handles_find(fy_handles *h, const char *id, size_t len,
                               ferry_session *(*make)(void *ud), void *ud);
/* Stops holding `s`, dropping its reference. */
void fy_handles_del(fy_handles *h, ferry_session *s);
/* Calls fn on every handle held, under the lock. */
void fy_handles_each(fy_handles *h, void (*fn)(ferry_session *s, void *ud), void *ud);
size_t fy_handles_count(fy_handles *h);

#endif
