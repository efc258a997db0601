#include "hub.h"
#include "ferry_transport.h" /* ferry_bucket, ferry_hub_since */

#include <stddef.h>
#include <stdlib.h>
#include "outbox.h"
#include <string.h>
#include <time.h>

#include "cluster_seam.h"
#include "link.h"
#include "log.h"
#include "session.h"
#include "token.h"

/* Non-zero while this thread runs an application callback: fy_hub_drain must not run there
 * (it could wait on the very session lock the callback is inside). */
static _Thread_local int in_callback;

static uint64_t monotonic_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t fy_hub_now(const ferry_hub *hub)
{
    return hub->opt.clock(hub->opt.clock_ud);
}

/* The cluster an application's options name, read within the size it gave. */
static ferry_cluster *cluster_of(const ferry_options *opt)
{
    size_t end = offsetof(ferry_options, cluster) + sizeof opt->cluster;
    return opt && opt->size >= end ? opt->cluster : NULL;
}

int ferry_hub_new(ferry_hub **out, const ferry_options *opt, const ferry_callbacks *cb,
                  void *ud)
{
    if (!out) {
        fy_log(FERRY_LOG_ERROR, "ferry_hub_new: out is NULL");
        return FERRY_EINVAL;
    }
    ferry_cluster *c = cluster_of(opt);
    if (!c)
        return fy_hub_new_store(out, opt, cb, ud, fy_store_mem_new());
    fy_store *st = NULL;
    int rc = c->ops->store(c, &st);
    if (rc == 0)
        rc = fy_hub_new_store(out, opt, cb, ud, st);
    if (rc)
        return rc;
    (*out)->cluster = c;
    if ((rc = c->ops->start(c, *out))) {
        (*out)->cluster = NULL;
        ferry_hub_free(*out);
        *out = NULL;
    }
    return rc;
}

int ferry_hub_health(ferry_hub *hub)
{
    if (!hub)
        return FERRY_EINVAL;
    return hub->cluster ? hub->cluster->ops->status(hub->cluster) : FERRY_OK;
}

const char *ferry_hub_node(ferry_hub *hub)
{
    if (!hub)
        return NULL;
    return hub->cluster ? hub->cluster->node : "";
}

int fy_hub_new_store(ferry_hub **out, const ferry_options *opt, const ferry_callbacks *cb,
                     void *ud, fy_store *store)
{
    ferry_options o;
    ferry_callbacks c;
    ferry_hub *hub = NULL;
    int rc = FERRY_EINVAL;
    ferry_callbacks_init(&c);
    if (fy_options_load(&o, opt, "ferry_hub_new") ||
        (cb && ferry_sized_copy(&c, sizeof c, cb, "ferry_hub_new", "ferry_callbacks")) ||
        fy_options_check(&o, "ferry_hub_new", ""))
        goto fail;
    if (!o.clock)
        o.clock = monotonic_ms;
    if (fy_token_init()) {
        fy_log(FERRY_LOG_ERROR, "ferry_hub_new: libsodium failed to initialize");
        rc = FERRY_EINTERNAL;
        goto fail;
    }
    rc = FERRY_ENOMEM;
    hub = calloc(1, sizeof *hub);
    if (!hub || !store || fy_map_init(&hub->topics) || fy_map_init(&hub->rates) ||
        fy_map_init(&hub->idents))
        goto fail;
    hub->opt = o;
    hub->cb = c;
    hub->ud = ud;
    hub->store = store;
    store->hub = hub;
    pthread_mutex_init(&hub->ident_lock, NULL);
    pthread_mutex_init(&hub->pub_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&hub->feed_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&hub->lock, NULL);
    pthread_mutex_init(&hub->rate_lock, NULL);
    pthread_mutex_init(&hub->pend_lock, NULL);
    *out = hub;
    return 0;

fail: /* the hub takes the store even when it cannot be made */
    if (store)
        store->ops->free(store);
    if (hub) {
        fy_map_destroy(&hub->topics);
        fy_map_destroy(&hub->rates);
    }
    free(hub);
    return rc;
}

typedef struct fy_ident {
    fy_map_node node;
    size_t sessions;
    char name[];
} fy_ident;

bool fy_hub_identity_add(ferry_hub *hub, const char *identity)
{
    return fy_hub_identity_count(hub, identity, hub->opt.max_sessions_per_identity);
}

bool fy_hub_identity_count(ferry_hub *hub, const char *identity, size_t limit)
{
    if (!hub->opt.max_sessions_per_identity || !identity[0])
        return true;
    if (!limit)
        limit = SIZE_MAX;
    bool ok = false;
    pthread_mutex_lock(&hub->ident_lock);
    fy_map_node *n = fy_map_get(&hub->idents, identity, strlen(identity));
    fy_ident *id = n ? fy_container_of(n, fy_ident, node) : NULL;
    if (!id) {
        size_t len = strlen(identity);
        id = calloc(1, sizeof *id + len + 1);
        if (id) {
            memcpy(id->name, identity, len + 1);
            id->node.key = id->name;
            fy_map_put(&hub->idents, &id->node);
        }
    }
    if (id && id->sessions < limit) {
        id->sessions++;
        ok = true;
    }
    pthread_mutex_unlock(&hub->ident_lock);
    return ok;
}

void fy_hub_identity_del(ferry_hub *hub, const char *identity)
{
    if (!hub->opt.max_sessions_per_identity || !identity[0])
        return;
    pthread_mutex_lock(&hub->ident_lock);
    fy_map_node *n = fy_map_get(&hub->idents, identity, strlen(identity));
    if (n) {
        fy_ident *id = fy_container_of(n, fy_ident, node);
        if (--id->sessions == 0) {
            fy_map_del(&hub->idents, n);
            free(id);
        }
    }
    pthread_mutex_unlock(&hub->ident_lock);
}

typedef struct fy_bucket {
    fy_map_node node;
    ferry_bucket tb;
    char addr[];
} fy_bucket;

static void free_bucket(fy_map_node *n, void *ud)
{
    fy_map_del(ud, n);
    free(fy_container_of(n, fy_bucket, node));
}

bool fy_hub_resume_allowed(ferry_hub *hub, const char *addr)
{
    const ferry_options *o = &hub->opt;
    if (!o->resume_rate || !addr)
        return true;
    uint64_t now = fy_hub_now(hub);
    bool ok = true;
    pthread_mutex_lock(&hub->rate_lock);
    fy_map_node *n = fy_map_get(&hub->rates, addr, strlen(addr));
    fy_bucket *b = n ? fy_container_of(n, fy_bucket, node) : NULL;
    if (!b) {
        size_t len = strlen(addr);
        b = malloc(sizeof *b + len + 1);
        if (b) {
            memcpy(b->addr, addr, len + 1);
            b->node.key = b->addr;
            ferry_bucket_init(&b->tb, o->resume_burst, now);
            fy_map_put(&hub->rates, &b->node);
        }
    }
    if (b)
        ok = ferry_bucket_take(&b->tb, o->resume_burst, o->resume_rate, now);
    pthread_mutex_unlock(&hub->rate_lock);
    return ok;
}

/* Forgets buckets that have refilled: an address that stopped resuming costs nothing. */
static void prune_bucket(fy_map_node *n, void *ud)
{
    ferry_hub *hub = ud;
    fy_bucket *b = fy_container_of(n, fy_bucket, node);
    if (ferry_bucket_full(&b->tb, hub->opt.resume_burst, hub->opt.resume_rate, fy_hub_now(hub)))
        free_bucket(n, &hub->rates);
}

void ferry_hub_free(ferry_hub *hub)
{
    if (!hub)
        return;
    ferry_hub_shutdown(hub);
    if (hub->cluster)
        hub->cluster->ops->stop(hub->cluster);
    hub->store->ops->free(hub->store); /* drops the sessions it holds */
    fy_map_destroy(&hub->topics); /* empty: every session was unsubscribed by the drain */
    fy_map_each(&hub->rates, free_bucket, &hub->rates);
    fy_map_destroy(&hub->rates);
    pthread_mutex_destroy(&hub->rate_lock);
    fy_map_destroy(&hub->idents); /* empty: every session ended */
    pthread_mutex_destroy(&hub->ident_lock);
    pthread_mutex_destroy(&hub->lock);
    pthread_mutex_destroy(&hub->pub_lock);
    pthread_cond_destroy(&hub->feed_cond);
    fy_recent_free(&hub->recent);
    pthread_mutex_destroy(&hub->pend_lock);
    free(hub->fan);
    free(hub);
}

void fy_hub_defer_end(ferry_hub *hub, ferry_session *s)
{
    ferry_session_ref(s);
    pthread_mutex_lock(&hub->pend_lock);
    s->pend_next = NULL;
    if (hub->pend_tail)
        hub->pend_tail->pend_next = s;
    else
        hub->pend_head = s;
    hub->pend_tail = s;
    atomic_store(&hub->pend_any, true);
    pthread_mutex_unlock(&hub->pend_lock);
}

void fy_hub_drain(ferry_hub *hub)
{
    if (in_callback || !atomic_load(&hub->pend_any))
        return;
    for (;;) {
        pthread_mutex_lock(&hub->pend_lock);
        ferry_session *s = hub->pend_head;
        if (s) {
            hub->pend_head = s->pend_next;
            if (!hub->pend_head)
                hub->pend_tail = NULL;
        } else {
            atomic_store(&hub->pend_any, false);
        }
        pthread_mutex_unlock(&hub->pend_lock);
        if (!s)
            return;

        pthread_mutex_lock(&hub->lock);
        pthread_mutex_lock(&s->lock);
        fy_topic_unsubscribe_all(hub, s);
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&hub->lock);

        /* in_lock: on_close never overlaps this session's on_open or on_message. */
        pthread_mutex_lock(&s->in_lock);
        pthread_mutex_lock(&s->lock);
        bool owed = s->opened;
        s->opened = false;
        ferry_reason why = s->end_reason;
        pthread_mutex_unlock(&s->lock);
        if (owed && hub->cb.on_close) {
            in_callback++;
            hub->cb.on_close(s, why, hub->ud);
            in_callback--;
        }
        pthread_mutex_unlock(&s->in_lock);
        ferry_session_unref(s);
    }
}

void fy_hub_call_open(ferry_hub *hub, ferry_session *s, ferry_reason reset_why)
{
    in_callback++;
    if (reset_why != FERRY_REASON_NONE && hub->cb.on_reset)
        hub->cb.on_reset(s, reset_why, hub->ud);
    else if (hub->cb.on_open)
        hub->cb.on_open(s, hub->ud);
    in_callback--;
}

void fy_hub_call_message(ferry_hub *hub, ferry_session *s, json_t *data)
{
    if (!hub->cb.on_message)
        return;
    in_callback++;
    hub->cb.on_message(s, data, hub->ud);
    in_callback--;
}

/* Time since `t`. Saturates: a recv on another thread may stamp a time later than the
 * tick's `now`, read before the locks were taken. */
static uint64_t elapsed(uint64_t now, uint64_t t)
{
    return now > t ? now - t : 0;
}

uint64_t ferry_hub_since(ferry_hub *hub, uint64_t then)
{
    return hub ? elapsed(fy_hub_now(hub), then) : 0;
}

bool fy_hub_allow_subscribe(ferry_hub *hub, ferry_session *s, const char *topic)
{
    if (!hub->cb.on_subscribe)
        return false;
    in_callback++;
    int rc = hub->cb.on_subscribe(s, topic, hub->ud);
    in_callback--;
    return rc == 0;
}

int fy_hub_call_auth(ferry_hub *hub, const ferry_auth *a, char *identity, const char **reason)
{
    in_callback++;
    int rc = hub->cb.on_auth(a, identity, reason, hub->ud);
    in_callback--;
    identity[FERRY_IDENTITY_MAX - 1] = '\0';
    return rc;
}

struct tick_ctx {
    ferry_hub *hub;
    uint64_t now;
    ferry_session **away; /* in a cluster: sessions another node took without this one */
    size_t naway, away_cap; /*   hearing of it, to let go of after the round */
};

/* A session whose resume window passed here. In a cluster it may have moved to another
 * node whose `moved` entry this one missed: the record says whose it is, and only that node
 * expires it. 1: it was let go here (listed in c->away). s->lock held. */
static bool expire_locked(ferry_session *s, struct tick_ctx *c)
{
    fy_rec r;
    fy_store *st = c->hub->store;
    if (!c->hub->cluster) {
        fy_session_end_locked(s, FERRY_REASON_EXPIRED, c->now);
        return false;
    }
    if (st->ops->load(st, s, &r))
        return false; /* the store is failing: the next tick asks again */
    if (strcmp(r.owner, c->hub->cluster->node) == 0) {
        fy_session_end_locked(s, FERRY_REASON_EXPIRED, c->now);
        return false;
    }
    if (c->naway == c->away_cap) {
        size_t cap = c->away_cap ? 2 * c->away_cap : 16;
        ferry_session **a = realloc(c->away, cap * sizeof *a);
        if (!a)
            return false;
        c->away = a;
        c->away_cap = cap;
    }
    c->away[c->naway++] = ferry_session_ref(s);
    return true;
}

static void let_go_away(struct tick_ctx *c)
{
    ferry_hub *hub = c->hub;
    for (size_t i = 0; i < c->naway; i++) {
        pthread_mutex_lock(&hub->pub_lock);
        pthread_mutex_lock(&hub->lock);
        fy_session_leave(c->away[i], FERRY_LINK_SUPERSEDED);
        pthread_mutex_unlock(&hub->lock);
        pthread_mutex_unlock(&hub->pub_lock);
        hub->store->ops->forget(hub->store, c->away[i]);
        ferry_session_unref(c->away[i]);
    }
    free(c->away);
}

static void tick_one(ferry_session *s, void *ud)
{
    struct tick_ctx *c = ud;
    const ferry_options *o = &c->hub->opt;
    bool forget = false, let_go = false;
    pthread_mutex_lock(&s->lock);
    switch (s->state) {
    case FERRY_STATE_ATTACHED:
        if (elapsed(c->now, s->last_rx) >= o->heartbeat_timeout_ms) {
            fy_session_detach_locked(s, c->now, FERRY_LINK_TIMEOUT);
            fy_hub_limit(c->hub, FERRY_LIMIT_HEARTBEAT);
        } else if (s->window_blocked &&
                   elapsed(c->now, s->blocked_since) >= o->stall_timeout_ms) {
            fy_session_detach_locked(s, c->now, FERRY_LINK_STALLED);
            fy_hub_limit(c->hub, FERRY_LIMIT_STALL);
        } else if (elapsed(c->now, s->last_rx) >= o->heartbeat_ms &&
                   elapsed(c->now, s->last_ping) >= o->heartbeat_ms) {
            s->last_ping = c->now;
            pthread_mutex_lock(&s->link->lock);
            fy_link_ctl_locked(s->link, FY_CTL_PING);
            pthread_mutex_unlock(&s->link->lock);
        }
        break;
    case FERRY_STATE_NEW:
    case FERRY_STATE_DETACHED:
        if (elapsed(c->now, s->since) < o->resume_window_ms)
            break;
        if (s->serving)
            expire_locked(s, c);
        else /* a handle a cluster node built for a resume that did not happen here */
            let_go = true;
        break;
    case FERRY_STATE_EXPIRED:
        if (s->end_unsaved)
            fy_session_save_end_locked(s);
        /* a tombstone is forgotten only once the store has its end */
        forget = !s->end_unsaved && elapsed(c->now, s->since) >= o->tombstone_ms;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    if (let_go)
        c->hub->store->ops->forget(c->hub->store, s);
    else if (forget) /* if the store fails, the next tick tries again */
        c->hub->store->ops->remove(c->hub->store, s);
}

int ferry_hub_tick(ferry_hub *hub)
{
    if (!hub)
        return FERRY_EINVAL;
    struct tick_ctx c = {hub, fy_hub_now(hub), NULL, 0, 0};
    if (hub->store->ops->tick)
        hub->store->ops->tick(hub->store);
    if (hub->cluster)
        fy_hub_feed_tick(hub);
    hub->store->ops->each(hub->store, tick_one, &c);
    let_go_away(&c);
    if (hub->opt.resume_rate) {
        pthread_mutex_lock(&hub->rate_lock);
        fy_map_each(&hub->rates, prune_bucket, hub);
        pthread_mutex_unlock(&hub->rate_lock);
    }
    fy_hub_drain(hub);
    return 0;
}

/* Copies the topic's subscribers into hub->fan, each with a reference. Returns how many, or
 * (size_t)-1 if the snapshot cannot grow. Hub lock and pub_lock held. */
static size_t snapshot(ferry_hub *hub, const char *topic)
{
    fy_topic *t = fy_topic_find(hub, topic);
    size_t n = t ? fy_topic_size(t) : 0;
    if (n > hub->fan_cap) {
        size_t cap = n + n / 2;
        fy_fan *fan = cap <= SIZE_MAX / sizeof *fan ? realloc(hub->fan, cap * sizeof *fan) : NULL;
        if (!fan)
            return (size_t)-1;
        hub->fan = fan;
        hub->fan_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        ferry_session *s = fy_topic_subscriber(t, i);
        hub->fan[i] = (fy_fan){ferry_session_ref(s), s->unsubs};
    }
    return n;
}

/* Queues m for every subscriber of `topic` (m's own reference stays the caller's); returns
 * how many took it. `feed`: a cluster's feed entry, pushed by its numbering. pub_lock held.
 *
 * The fan-out runs outside the hub lock: every push may wake a transport thread, and on a
 * busy machine a publisher that wakes thousands of them is descheduled again and again, so
 * one publish to 10,000 long-polls took most of a second. Holding the hub lock that long,
 * back to back, starved every resume (they look their session up under it). Only the
 * snapshot of the subscribers is taken under it. */
int fy_hub_fanout(ferry_hub *hub, const char *topic, fy_msg *m, bool feed, size_t *queued)
{
    size_t done = 0;
    pthread_mutex_lock(&hub->lock);
    size_t n = snapshot(hub, topic);
    pthread_mutex_unlock(&hub->lock);
    if (n == (size_t)-1)
        return FERRY_ENOMEM;
    if (n) {
        /* One reference and one budget share per subscriber, taken up front so the shared
         * counters are touched twice per publish rather than once per subscriber. If the
         * budget cannot cover them all, each push checks it on its own. */
        fy_msg_ref_n(m, n);
        size_t cost = (m->len + FY_OUTBOX_OVERHEAD) * n;
        bool reserved = atomic_fetch_add(&hub->outbox_bytes, cost) + cost <= hub->opt.outbox_budget_bytes;
        if (!reserved)
            atomic_fetch_sub(&hub->outbox_bytes, cost);
        for (size_t i = 0; i < n; i++) {
            ferry_session *s = hub->fan[i].s;
            pthread_mutex_lock(&s->lock);
            /* A session that unsubscribed since the snapshot gets nothing more from the
             * topic once ferry_session_unsubscribe has returned. */
            if (s->unsubs == hub->fan[i].unsubs || fy_topic_subscribed(s, topic))
                done += (feed ? fy_hub_feed_push_locked(s, m, reserved)
                              : fy_session_push_locked(s, m, reserved)) == 0;
            pthread_mutex_unlock(&s->lock);
            ferry_session_unref(s);
        }
        if (reserved) /* give back the shares of subscribers that did not take it */
            atomic_fetch_sub(&hub->outbox_bytes, (m->len + FY_OUTBOX_OVERHEAD) * (n - done));
        fy_msg_unref_n(m, n - done);
    }
    *queued = done;
    return 0;
}

int ferry_hub_publish(ferry_hub *hub, const char *topic, const char *json, size_t len,
                      size_t *queued)
{
    size_t done = 0;
    fy_msg *m;
    if (queued)
        *queued = 0;
    if (!hub || !fy_topic_name_ok(topic))
        return FERRY_EINVAL;
    int rc = fy_msg_new(&m, topic, json, len, hub->opt.max_depth, hub->opt.max_message_bytes);
    if (rc)
        return rc;
    if (hub->cluster) { /* every node's reader queues it: fy_hub_feed */
        fy_pos pos;
        rc = hub->cluster->ops->append(hub->cluster, FY_FEED_TOPIC, topic, strlen(topic),
                                       m->body, m->len, &pos);
        fy_msg_unref(m);
        if (rc == 0)
            fy_hub_feed_appended(hub, pos);
        return rc;
    }
    /* pub_lock: publishes do not overtake each other, so every subscriber sees them in
     * one order. */
    pthread_mutex_lock(&hub->pub_lock);
    rc = fy_hub_fanout(hub, topic, m, false, &done);
    pthread_mutex_unlock(&hub->pub_lock);
    fy_msg_unref(m);
    if (queued)
        *queued = done;
    return rc;
}

int ferry_hub_send(ferry_hub *hub, const char *session_id, const char *json, size_t len)
{
    if (!hub || !session_id)
        return FERRY_EINVAL;
    ferry_session *s;
    int rc = hub->store->ops->find(hub->store, session_id, strlen(session_id), &s);
    if (rc)
        return rc;
    rc = ferry_session_send(s, json, len);
    ferry_session_unref(s);
    return rc;
}
