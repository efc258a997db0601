/* The core's locks and their order: the one place it is written.
 *
 * Take them outermost first; a thread holding one may take only those below it.
 *
 *   1. session in_lock     (ferry_session) inbound delivery: held across on_open, on_reset,
 *                          on_message and on_close, so one session's callbacks run one at a
 *                          time and in order. Callbacks may call any ferry function except
 *                          ferry_hub_free, so everything below may be taken under it.
 *   2. hub pub_lock        one publish fans out at a time, so every subscriber sees
 *                          publishes in one order.
 *   3. hub lock            topics and subscriptions. Held while a publish lists a topic's
 *                          subscribers, never across the fan-out.
 *   4. store lock          the table of the session handles this node holds (handles.h),
 *                          in the in-memory store and the Redis store (cluster/): taken alone by add,
 *                          find, remove and count; held by each across its callback, which
 *                          may take the locks below (and remove, so it is recursive).
 *                          A store's load and save run under the session lock and take
 *                          only leaves.
 *   5. session lock        (ferry_session) the session's state, record and outbox.
 *   6. link lock           (ferry_link) the link's control frames and handshake state. A
 *                          session may take its current link's lock and, while binding a
 *                          new link, the lock of the link it replaces; never two sessions'.
 *   7. leaves              none of these is held while taking another ferry lock:
 *                          hub pend_lock (ended sessions waiting for fy_hub_drain),
 *                          hub ident_lock (sessions per identity),
 *                          hub rate_lock (resume buckets),
 *                          a test store's own state (tests/core/store_faulty.c),
 *                          the Redis pool's connection, script and log-queue locks
 *                          (cluster/src/redis.c; a connection's is held for a round trip).
 *
 * An object found under a later lock whose own lock comes earlier (a pull reads its link's
 * session under the link's lock, but must take the session's lock first) is found again
 * once both are held, in order (link.c, lock_bound).
 *
 * Transports: a transport's wake and kick callbacks run with session and link locks held,
 * so a transport's own locks come after all of these, and a transport must never call into
 * ferry while holding a lock its wake or kick takes. Application callbacks run with no lock
 * held except the session's in_lock.
 */
#ifndef FY_LOCKS_H
#define FY_LOCKS_H
#endif
