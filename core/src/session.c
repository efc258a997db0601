#include "session.h"

#include <stdlib.h>

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
    ferry_reason why = *(ferry_reason *)ctx;
    if (r->end_reason == why)
        return 0;
    r->end_reason = why;
    return 1;
}

void fy_session_save_end_locked(ferry_session *s)
{
    s->end_unsaved = fy_session_update_locked(s, record_end, &s->end_reason) != 0;
}

int fy_session_update_locked(ferry_session *s, int (*change)(fy_rec *r, void *ctx), void *ctx)
{
    fy_store *st = s->hub->store;
    for (int tries = 0; tries < FY_STORE_TRIES; tries++) {
        fy_rec r;
        int rc = st->ops->load(st, s, &r);
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

void ferry_hub_shutdown(ferry_hub *hub)
{
    if (!hub)
        return;
    uint64_t now = fy_hub_now(hub);
    hub->store->ops->each(hub->store, end_for_shutdown, &now);
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

int ferry_session_send(ferry_session *s, const char *json, size_t len)
{
    if (!s)
        return FERRY_EINVAL;
    const ferry_options *o = &s->hub->opt;
    fy_msg *m;
    int rc = fy_msg_new(&m, NULL, json, len, o->max_depth, o->max_message_bytes);
    if (rc)
        return rc;
    pthread_mutex_lock(&s->lock);
    rc = fy_session_push_locked(s, m, false);
    pthread_mutex_unlock(&s->lock);
    if (rc)
        fy_msg_unref(m);
    return rc;
}

int ferry_session_subscribe(ferry_session *s, const char *topic)
{
    if (!s || !fy_topic_name_ok(topic))
        return FERRY_EINVAL;
    ferry_hub *hub = s->hub;
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
