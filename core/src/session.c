#include "session.h"

#include <stdlib.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster_seam.h"
#include "hub.h"
#include "link.h"

ferry_session *fy_session_new(ferry_hub *hub)
{
    ferry_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->in_lock, NULL);
    s->hub = hub;
    s->serving = !hub->cluster; /* a cluster's node serves what it opens or adopts */
    if (hub->cluster && !(s->subs_rec = calloc(1, sizeof *s->subs_rec))) {
        free(s);
        return NULL;
    }
    s->state = FERRY_STATE_NEW;
    s->since = fy_hub_now(hub);
    fy_token_new_id(s->id);
    fy_outbox_init(&s->out, hub->opt.outbox_max_msgs, hub->opt.outbox_max_bytes);
    return s;
}

ferry_session *ferry_session_ref(ferry_session *s)
{
    if (!s)
        return NULL;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void ferry_session_unref(ferry_session *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    fy_outbox_clear(&s->out);
    free(s->subs_rec);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->in_lock);
    free(s);
}

static void end_locked(ferry_session *s, ferry_reason why, uint64_t now, bool save)
{
    if (s->state == FERRY_STATE_EXPIRED)
        return;
    s->state = FERRY_STATE_EXPIRED;
    s->end_reason = why;
    s->since = now;
    if (save)
        fy_session_save_end_locked(s);
    else
        s->end_unsaved = true; /* the tick saves it */
    atomic_fetch_sub(&s->hub->outbox_bytes, s->out.bytes);
    fy_outbox_clear(&s->out);
    if (s->opened)
        fy_hub_identity_del(s->hub, s->identity);
    if (s->link) {
        pthread_mutex_lock(&s->link->lock);
        fy_link_finish_locked(s->link, why);
        pthread_mutex_unlock(&s->link->lock);
        s->link = NULL;
    }
    atomic_fetch_sub(&s->hub->live, 1);
    fy_hub_defer_end(s->hub, s);
}

void fy_session_end_locked(ferry_session *s, ferry_reason why, uint64_t now)
{
    end_locked(s, why, now, true);
}

void fy_session_end_unsaved_locked(ferry_session *s, ferry_reason why, uint64_t now)
{
    end_locked(s, why, now, false);
}

static int record_end(fy_rec *r, void *ctx)
{
    ferry_session *s = ctx;
    ferry_reason why = s->end_reason;
    if (r->end_reason == why)
        return 0;
    /* In a cluster, ends (forked, closed by the application) hold wherever they are
     * decided; expiry is decided only by the serving node (the tick asks the record). */
    r->end_reason = why;
    return 1;
}

/* An end decided on a node that does not serve the session: the serving node ends it
 * too, giving its connection the final frame ("<reason> <version>"). */
static void announce_end(ferry_session *s)
{
    char body[48];
    fy_pos pos; /* a control entry (cluster_seam.h): its position is not needed */
    int len = snprintf(body, sizeof body, "%d %" PRIu64, (int)s->end_reason, s->rec.version);
    s->hub->cluster->ops->append(s->hub->cluster, FY_FEED_ENDED, s->id, strlen(s->id), body,
                                 (size_t)len, &pos);
}

void fy_session_save_end_locked(ferry_session *s)
{
    s->end_unsaved = fy_session_update_locked(s, record_end, s) != 0;
    if (!s->end_unsaved && s->hub->cluster && !s->serving && s->end_reason != FERRY_REASON_EXPIRED)
        announce_end(s);
}

int fy_session_update_locked(ferry_session *s, int (*change)(fy_rec *r, void *ctx), void *ctx)
{
    fy_store *st = s->hub->store;
    for (int tries = 0; tries < FY_STORE_TRIES; tries++) {
        /* The record as this node last loaded or saved it is usually still the stored one:
         * it is loaded again only when the save says it moved on. */
        fy_rec r = s->rec;
        int rc = tries || !r.version ? st->ops->load(st, s, &r) : 0;
        if (rc == 0)
            rc = change(&r, ctx);
        if (rc <= 0)
            return rc;
        rc = st->ops->save(st, s, &r);
        if (rc != FY_STORE_STALE)
            return rc;
    }
    return FERRY_ESTORE;
}

static void end_for_shutdown(ferry_session *s, void *ud)
{
    pthread_mutex_lock(&s->lock);
    fy_session_end_locked(s, FERRY_REASON_SHUTDOWN, *(uint64_t *)ud);
    pthread_mutex_unlock(&s->lock);
}

/* In a cluster a node that stops ends nothing: the sessions it served live on in Redis and
 * their clients resume on another node. */
static void leave_for_shutdown(ferry_session *s, void *ud)
{
    (void)ud;
    fy_session_leave(s, FERRY_LINK_RESTART);
}

void ferry_hub_shutdown(ferry_hub *hub)
{
    if (!hub)
        return;
    uint64_t now = fy_hub_now(hub);
    if (hub->cluster) {
        pthread_mutex_lock(&hub->pub_lock);
        pthread_mutex_lock(&hub->lock);
        hub->store->ops->each(hub->store, leave_for_shutdown, NULL);
        pthread_mutex_unlock(&hub->lock);
        pthread_mutex_unlock(&hub->pub_lock);
    } else {
        hub->store->ops->each(hub->store, end_for_shutdown, &now);
    }
    fy_hub_drain(hub);
}

void fy_session_detach_locked(ferry_session *s, uint64_t now, int why)
{
    if (s->link) {
        pthread_mutex_lock(&s->link->lock);
        fy_link_kick_locked(s->link, why);
        pthread_mutex_unlock(&s->link->lock);
        s->link = NULL;
    }
    if (s->state != FERRY_STATE_EXPIRED) {
        s->state = FERRY_STATE_DETACHED;
        s->since = now;
    }
}

int fy_session_ack_locked(ferry_session *s, uint64_t ack, bool rewind)
{
    size_t before = s->out.bytes;
    uint64_t last = ack < fy_outbox_end(&s->out) ? ack : fy_outbox_end(&s->out) - 1;
    fy_msg *m = s->hub->cluster && ack <= s->out.high_sent ? fy_outbox_at(&s->out, last) : NULL;
    if (m)
        s->acked_pos = (fy_pos){m->pos_ms, m->pos_n};
    int rc = rewind ? fy_outbox_rewind(&s->out, ack) : fy_outbox_ack(&s->out, ack);
    atomic_fetch_sub(&s->hub->outbox_bytes, before - s->out.bytes);
    return rc;
}

int fy_session_push_locked(ferry_session *s, fy_msg *m, bool reserved)
{
    if (s->state == FERRY_STATE_EXPIRED)
        return FERRY_ECLOSED;
    ferry_hub *hub = s->hub;
    size_t cost = m->len + FY_OUTBOX_OVERHEAD;
    bool budget = reserved ||
                  atomic_fetch_add(&hub->outbox_bytes, cost) + cost <= hub->opt.outbox_budget_bytes;
    int rc = budget ? fy_outbox_push(&s->out, m) : FERRY_EFULL;
    if (rc) {
        /* Full, or cannot grow, or the hub's memory budget is spent: dropping the message
         * silently would break the promise, so the session is reset and its client told. */
        if (!reserved)
            atomic_fetch_sub(&hub->outbox_bytes, cost);
        /* Publish holds its lock across every subscriber: the store's round trip for the
         * end waits for the tick. */
        fy_session_end_unsaved_locked(s, FERRY_REASON_OVERFLOW, fy_hub_now(hub));
        fy_hub_limit(hub, budget ? FERRY_LIMIT_OUTBOX : FERRY_LIMIT_MEMORY);
        return FERRY_EFULL;
    }
    if (s->link && s->wake_armed) {
        s->wake_armed = false;
        s->link->ops->wake(s->link->ud);
    }
    return 0;
}

/* In a cluster a message to a session is a feed entry, numbered with the rest wherever the
 * session is served. */
static int cluster_send(ferry_session *s, const fy_msg *m)
{
    ferry_hub *hub = s->hub;
    pthread_mutex_lock(&s->lock);
    bool ended = s->state == FERRY_STATE_EXPIRED || s->rec.end_reason != FERRY_REASON_NONE;
    pthread_mutex_unlock(&s->lock);
    if (ended)
        return FERRY_ECLOSED;
    fy_pos pos;
    int rc = hub->cluster->ops->append(hub->cluster, FY_FEED_DIRECT, s->id, strlen(s->id),
                                       m->body, m->len, &pos);
    if (rc == 0)
        fy_hub_feed_appended(hub, pos);
    return rc;
}

int ferry_session_send(ferry_session *s, const char *json, size_t len)
{
    if (!s)
        return FERRY_EINVAL;
    const ferry_options *o = &s->hub->opt;
    fy_msg *m;
    int rc = fy_msg_new(&m, NULL, json, len, o->max_depth, o->max_message_bytes);
    if (rc)
        return rc;
    if (s->hub->cluster) {
        rc = cluster_send(s, m);
        fy_msg_unref(m);
        return rc;
    }
    pthread_mutex_lock(&s->lock);
    rc = fy_session_push_locked(s, m, false);
    pthread_mutex_unlock(&s->lock);
    if (rc)
        fy_msg_unref(m);
    return rc;
}

/* A cluster subscription's change to the stored list (store.h, fy_subs_rec). */
typedef struct sub_change {
    const char *topic;
    bool on;
    fy_pos at;     /* the feed position it takes effect after */
    fy_pos cursor; /* ended subscriptions up to here no longer matter */
} sub_change;

static bool sub_on(const fy_sub_rec *e)
{
    return e->until.ms == 0 && e->until.n == 0;
}

/* Drops ended subscriptions that no cursor can reach any more, and when the list is full,
 * the oldest ended one (moving the horizon past it). */
static void prune_subs(fy_subs_rec *r, fy_pos cursor, bool full)
{
    size_t oldest = r->n;
    for (size_t i = 0; i < r->n;) {
        if (!sub_on(&r->e[i]) && fy_pos_cmp(r->e[i].until, cursor) <= 0) {
            r->e[i] = r->e[--r->n];
            continue;
        }
        if (!sub_on(&r->e[i]) && (oldest == r->n || fy_pos_cmp(r->e[i].until, r->e[oldest].until) < 0))
            oldest = i;
        i++;
    }
    if (full && r->n == FY_SUBS_MAX && oldest < r->n) {
        if (fy_pos_cmp(r->e[oldest].until, r->horizon) > 0)
            r->horizon = r->e[oldest].until;
        r->e[oldest] = r->e[--r->n];
    }
}

/* 1 when the list changed, 0 when there was nothing to do, FERRY_EFULL. */
static int change_subs(fy_subs_rec *r, const sub_change *c)
{
    size_t i = 0;
    while (i < r->n && !(sub_on(&r->e[i]) && strcmp(r->e[i].topic, c->topic) == 0))
        i++;
    prune_subs(r, c->cursor, c->on && i == r->n);
    if (!c->on) {
        if (i == r->n)
            return 0;
        for (i = 0; !(sub_on(&r->e[i]) && strcmp(r->e[i].topic, c->topic) == 0); i++)
            ;
        r->e[i].until = c->at;
        return 1;
    }
    if (i < r->n)
        return 0;
    if (r->n == FY_SUBS_MAX)
        return FERRY_EFULL;
    fy_sub_rec *e = &r->e[r->n++];
    memset(e, 0, sizeof *e);
    strcpy(e->topic, c->topic);
    e->from = c->at;
    return 1;
}

/* Saves a subscription change, as fy_session_update_locked does a record's. 0, FERRY_EFULL,
 * FERRY_ECLOSED (another node serves the session now), FERRY_ESTORE or FERRY_ENOMEM.
 * s->lock held. */
static int save_subs_locked(ferry_session *s, sub_change *c)
{
    fy_store *st = s->hub->store;
    fy_subs_rec *next = malloc(sizeof *next);
    int rc = next ? FERRY_ESTORE : FERRY_ENOMEM;
    for (int tries = 0; next && tries < FY_STORE_TRIES; tries++) {
        fy_rec r;
        /* loaded every time: ended subscriptions are pruned against the cursor Redis holds */
        if ((rc = st->ops->load(st, s, &r)))
            break;
        if (strcmp(r.owner, s->hub->cluster->node) != 0 || r.end_reason != FERRY_REASON_NONE) {
            rc = FERRY_ECLOSED;
            break;
        }
        *next = *s->subs_rec;
        c->cursor = r.cur_pos;
        if ((rc = change_subs(next, c)) <= 0)
            break;
        if ((rc = st->ops->save_subs(st, s, &r, next)) != FY_STORE_STALE)
            break;
        rc = FERRY_ESTORE;
    }
    free(next);
    return rc;
}

/* In a cluster a subscription is part of the session's record, with the feed position it
 * starts after, so that every node matches the same entries to it. The change is saved
 * under pub_lock, at the position the node has handed out, and made locally before any
 * later entry is. */
static int cluster_subscribe(ferry_session *s, const char *topic, bool on)
{
    ferry_hub *hub = s->hub;
    fy_hub_feed_settle_lock(hub);
    pthread_mutex_lock(&s->lock);
    /* After an adoption that read ahead of this node's reader, what it numbered counts as
     * handed out too. */
    sub_change c = {.topic = topic, .on = on, .at = hub->feed_pos};
    if (fy_pos_cmp(s->replayed_to, c.at) > 0)
        c.at = s->replayed_to;
    int rc = s->state == FERRY_STATE_EXPIRED || !s->serving ? FERRY_ECLOSED
             : !hub->feed_ready                            ? FERRY_ESTORE
                                                           : 0;
    if (rc == 0) /* the round trip, without the hub lock (store.h) */
        rc = save_subs_locked(s, &c);
    pthread_mutex_unlock(&s->lock);
    /* Made here as saved, before the reader hands out anything more (pub_lock). A save that
     * failed may have been applied (a timeout): this node cannot know its own record, so it
     * lets the session go, and the next resume takes it from the record. */
    bool leave = rc == FERRY_ESTORE && hub->feed_ready;
    pthread_mutex_lock(&hub->lock);
    pthread_mutex_lock(&s->lock);
    if (rc == 0 && on && !fy_topic_subscribed(s, topic) && fy_topic_subscribe(hub, s, topic))
        leave = true; /* saved, but this node cannot hold it */
    if (rc == 0 && !on)
        fy_topic_unsubscribe(hub, s, topic);
    pthread_mutex_unlock(&s->lock);
    if (leave)
        fy_session_leave(s, FERRY_LINK_RESTART);
    pthread_mutex_unlock(&hub->lock);
    pthread_mutex_unlock(&hub->pub_lock);
    if (leave)
        hub->store->ops->forget(hub->store, s);
    return leave && rc == 0 ? FERRY_ENOMEM : rc;
}

int ferry_session_subscribe(ferry_session *s, const char *topic)
{
    if (!s || !fy_topic_name_ok(topic))
        return FERRY_EINVAL;
    ferry_hub *hub = s->hub;
    if (hub->cluster)
        return cluster_subscribe(s, topic, true);
    pthread_mutex_lock(&hub->lock);
    pthread_mutex_lock(&s->lock);
    /* Checked under both locks: the drain that unsubscribes an ended session needs the hub
     * lock, so no subscription can slip in after it. */
    int rc = s->state == FERRY_STATE_EXPIRED ? FERRY_ECLOSED : 0;
    if (rc == 0)
        rc = fy_topic_subscribe(hub, s, topic);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&hub->lock);
    return rc;
}

int ferry_session_unsubscribe(ferry_session *s, const char *topic)
{
    if (!s || !fy_topic_name_ok(topic))
        return FERRY_EINVAL;
    if (s->hub->cluster)
        return cluster_subscribe(s, topic, false);
    pthread_mutex_lock(&s->hub->lock);
    pthread_mutex_lock(&s->lock);
    fy_topic_unsubscribe(s->hub, s, topic);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->hub->lock);
    return 0;
}

int ferry_session_close(ferry_session *s)
{
    if (!s)
        return FERRY_EINVAL;
    pthread_mutex_lock(&s->lock);
    int rc = s->state == FERRY_STATE_EXPIRED ? FERRY_ECLOSED : 0;
    fy_session_end_locked(s, FERRY_REASON_SERVER, fy_hub_now(s->hub));
    pthread_mutex_unlock(&s->lock);
    return rc;
}

const char *ferry_session_id(const ferry_session *s)
{
    return s ? s->id : NULL;
}

const char *ferry_session_identity(const ferry_session *s)
{
    return s ? s->identity : NULL;
}

ferry_state ferry_session_state(ferry_session *s)
{
    if (!s)
        return FERRY_STATE_EXPIRED;
    pthread_mutex_lock(&s->lock);
    ferry_state st = s->state;
    pthread_mutex_unlock(&s->lock);
    return st;
}

ferry_hub *ferry_session_hub(ferry_session *s)
{
    return s ? s->hub : NULL;
}

void ferry_session_set_user(ferry_session *s, void *user)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->user = user;
    pthread_mutex_unlock(&s->lock);
}

void *ferry_session_user(ferry_session *s)
{
    if (!s)
        return NULL;
    pthread_mutex_lock(&s->lock);
    void *u = s->user;
    pthread_mutex_unlock(&s->lock);
    return u;
}

uint64_t ferry_session_message_seq(ferry_session *s)
{
    return s ? s->in_msg_seq : 0;
}

int ferry_session_message_repeated(ferry_session *s)
{
    return s ? s->in_repeat : 0;
}
