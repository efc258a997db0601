/* The hub's side of a cluster (cluster.h): the feed handed to the sessions this node
 * serves, sessions moving between nodes, subscriptions kept in the session's record, and
 * the cursors that let another node number a session's messages again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_seam.h"
#include "hub.h"
#include "link.h"
#include "log.h"
#include "session.h"

/* How long a subscribe waits for this node to read back its own appends. */
#define SETTLE_MS 1000
/* How often the tick hands the store the cursors that moved (hub clock, ms). */
#define CURSOR_MS 2000
/* An idle session's cursor follows the feed when it is this far behind (ms of feed time),
 * well inside the feed's retention (docs/CLUSTER.md). */
#define CURSOR_AGE_MS 10000

bool fy_hub_feed_pos(ferry_hub *hub, fy_pos *out)
{
    pthread_mutex_lock(&hub->pub_lock);
    *out = hub->feed_pos;
    bool ready = hub->feed_ready;
    pthread_mutex_unlock(&hub->pub_lock);
    return ready;
}

void fy_hub_feed_start(ferry_hub *hub, fy_pos newest)
{
    pthread_mutex_lock(&hub->pub_lock);
    if (!hub->feed_ready) {
        hub->feed_pos = newest;
        fy_recent_reset(&hub->recent, newest);
    }
    hub->feed_ready = true;
    pthread_mutex_unlock(&hub->pub_lock);
}

static void lose(ferry_session *s, void *ud)
{
    ferry_hub *hub = ud;
    fy_session_leave(s, FERRY_LINK_RESTART);
    hub->store->ops->forget(hub->store, s);
}

void fy_hub_feed_lost(ferry_hub *hub, fy_pos newest)
{
    pthread_mutex_lock(&hub->pub_lock);
    pthread_mutex_lock(&hub->lock);
    hub->store->ops->each(hub->store, lose, hub);
    pthread_mutex_unlock(&hub->lock);
    hub->feed_pos = hub->appended = newest;
    fy_recent_reset(&hub->recent, newest);
    pthread_cond_broadcast(&hub->feed_cond);
    pthread_mutex_unlock(&hub->pub_lock);
    fy_hub_drain(hub);
}

void fy_hub_feed_appended(ferry_hub *hub, fy_pos pos)
{
    pthread_mutex_lock(&hub->pub_lock);
    if (fy_pos_cmp(pos, hub->appended) > 0)
        hub->appended = pos;
    pthread_mutex_unlock(&hub->pub_lock);
}

void fy_hub_feed_settle_lock(ferry_hub *hub)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until); /* feed_cond runs on CLOCK_MONOTONIC */
    until.tv_sec += SETTLE_MS / 1000;
    pthread_mutex_lock(&hub->pub_lock);
    fy_pos target = hub->appended; /* what was appended before this call, not after */
    /* Redis unreachable: the reader cannot catch up; the caller's save fails anyway. */
    while (fy_pos_cmp(hub->feed_pos, target) < 0)
        if (pthread_cond_timedwait(&hub->feed_cond, &hub->pub_lock, &until) == ETIMEDOUT)
            break;
}

int fy_hub_feed_push_locked(ferry_session *s, fy_msg *m, bool reserved)
{
    if (!s->serving || s->state == FERRY_STATE_EXPIRED)
        return FERRY_ECLOSED;
    if (m && fy_pos_cmp((fy_pos){m->pos_ms, m->pos_n}, s->replayed_to) <= 0)
        return 1; /* numbered by the adoption's replay already */
    if (!m) { /* the node could not hold a copy: the session cannot go on without a gap */
        fy_session_end_unsaved_locked(s, FERRY_REASON_OVERFLOW, fy_hub_now(s->hub));
        fy_hub_limit(s->hub, FERRY_LIMIT_MEMORY);
        return FERRY_EFULL;
    }
    if (fy_outbox_end(&s->out) <= s->drop_to) {
        /* the client had it from the node that served the session before */
        fy_outbox_skip(&s->out);
        s->acked_pos = (fy_pos){m->pos_ms, m->pos_n};
        return 1;
    }
    return fy_session_push_locked(s, m, reserved); /* reserved: the fan-out's share covers it */
}

/* A topic entry's name as a C string; false for one no node would have appended. */
static bool entry_topic(const fy_feed_entry *e, char topic[129])
{
    if (e->name_len == 0 || e->name_len > 128)
        return false;
    memcpy(topic, e->name, e->name_len);
    topic[e->name_len] = '\0';
    return fy_topic_name_ok(topic);
}

static fy_msg *entry_msg(const fy_feed_entry *e)
{
    fy_msg *m = fy_msg_from_body(e->body, e->body_len);
    if (m) {
        m->pos_ms = e->pos.ms;
        m->pos_n = e->pos.n;
    }
    return m;
}

/* Ends every local subscriber of a topic entry this node cannot hold a copy of. */
static void feed_lost(ferry_hub *hub, const char *topic)
{
    pthread_mutex_lock(&hub->lock);
    fy_topic *t = fy_topic_find(hub, topic);
    size_t n = t ? fy_topic_size(t) : 0;
    for (size_t i = 0; i < n; i++) {
        ferry_session *s = fy_topic_subscriber(t, i);
        pthread_mutex_lock(&s->lock);
        fy_hub_feed_push_locked(s, NULL, false);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&hub->lock);
}

static void feed_topic(ferry_hub *hub, const fy_feed_entry *e, fy_msg *m)
{
    char topic[129];
    size_t queued;
    if (!entry_topic(e, topic))
        return;
    if (!m || fy_hub_fanout(hub, topic, m, true, &queued))
        feed_lost(hub, topic);
}

static void feed_direct(ferry_hub *hub, const fy_feed_entry *e, fy_msg *m)
{
    fy_store *st = hub->store;
    ferry_session *s = st->ops->local(st, e->name, e->name_len);
    if (!s)
        return;
    if (m)
        fy_msg_ref_n(m, 1);
    pthread_mutex_lock(&s->lock);
    if (fy_hub_feed_push_locked(s, m, false) != 0 && m)
        fy_msg_unref(m);
    pthread_mutex_unlock(&s->lock);
    ferry_session_unref(s);
}

/* Another node took a session over ("<node> <version>"): this node lets it go, unless it
 * has since taken it back (its record's version is newer). */
static void feed_moved(ferry_hub *hub, const fy_feed_entry *e)
{
    char body[FY_NODE_MAX + 24];
    unsigned long long version;
    size_t node_len = strlen(hub->cluster->node);
    if (e->body_len >= sizeof body)
        return;
    memcpy(body, e->body, e->body_len);
    body[e->body_len] = '\0';
    char *sp = strchr(body, ' ');
    if (!sp || ((size_t)(sp - body) == node_len && memcmp(body, hub->cluster->node, node_len) == 0))
        return;
    version = strtoull(sp + 1, NULL, 10);
    fy_store *st = hub->store;
    ferry_session *s = st->ops->local(st, e->name, e->name_len);
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    bool stale = s->rec.version < version;
    pthread_mutex_unlock(&s->lock);
    if (stale) {
        pthread_mutex_lock(&hub->lock);
        fy_session_leave(s, FERRY_LINK_SUPERSEDED);
        pthread_mutex_unlock(&hub->lock);
        st->ops->forget(st, s);
    }
    ferry_session_unref(s);
}

/* A session this node serves was ended elsewhere ("<reason> <version>"): it ends here too,
 * its connection given the final frame. */
static void feed_ended(ferry_hub *hub, const fy_feed_entry *e)
{
    char body[48];
    if (e->body_len >= sizeof body)
        return;
    memcpy(body, e->body, e->body_len);
    body[e->body_len] = '\0';
    char *end;
    long why = strtol(body, &end, 10);
    if (why <= FERRY_REASON_NONE || why >= FERRY_REASON_COUNT || *end != ' ')
        return;
    fy_store *st = hub->store;
    ferry_session *s = st->ops->local(st, e->name, e->name_len);
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->serving)
        fy_session_end_locked(s, (ferry_reason)why, fy_hub_now(hub));
    pthread_mutex_unlock(&s->lock);
    ferry_session_unref(s);
}

void fy_hub_feed(ferry_hub *hub, const fy_feed_entry *es, size_t n)
{
    pthread_mutex_lock(&hub->pub_lock);
    for (size_t i = 0; i < n; i++) {
        const fy_feed_entry *e = &es[i];
        if (fy_pos_cmp(e->pos, hub->feed_pos) <= 0)
            continue; /* handed out already */
        if (e->kind == FY_FEED_TOPIC || e->kind == FY_FEED_DIRECT) {
            fy_msg *m = entry_msg(e);
            if (e->kind == FY_FEED_TOPIC)
                feed_topic(hub, e, m);
            else
                feed_direct(hub, e, m);
            if (m) {
                fy_recent_add(&hub->recent, e, m);
                fy_msg_unref(m);
            } else {
                fy_recent_reset(&hub->recent, e->pos); /* what it holds must stay whole */
            }
        }
        hub->feed_pos = e->pos;
    }
    pthread_cond_broadcast(&hub->feed_cond);
    pthread_mutex_unlock(&hub->pub_lock);
    /* No fy_hub_drain here: on_close of a session this hands an end to waits for the
     * session's in_lock (a slow on_message), which must not hold up the whole feed; the
     * tick runs it. */
}

void fy_hub_control(ferry_hub *hub, const fy_feed_entry *es, size_t n)
{
    pthread_mutex_lock(&hub->pub_lock); /* a session let go drops its subscriptions in order */
    for (size_t i = 0; i < n; i++) {
        if (es[i].kind == FY_FEED_MOVED)
            feed_moved(hub, &es[i]);
        else if (es[i].kind == FY_FEED_ENDED)
            feed_ended(hub, &es[i]);
    }
    pthread_mutex_unlock(&hub->pub_lock);
}

void fy_session_leave(ferry_session *s, int why)
{
    ferry_hub *hub = s->hub;
    pthread_mutex_lock(&s->lock);
    if (s->serving && s->state != FERRY_STATE_EXPIRED) {
        fy_topic_unsubscribe_all(hub, s);
        atomic_fetch_sub(&hub->outbox_bytes, s->out.bytes);
        fy_outbox_clear(&s->out);
        fy_session_detach_locked(s, fy_hub_now(hub), why);
        if (s->opened) /* its on_close runs where it ends, not here */
            fy_hub_identity_del(hub, s->identity);
        s->opened = false;
    }
    s->serving = false;
    pthread_mutex_unlock(&s->lock);
}

bool fy_sub_rec_matches(const fy_subs_rec *r, const char *topic, size_t len, fy_pos pos)
{
    for (size_t i = 0; i < r->n; i++) {
        const fy_sub_rec *e = &r->e[i];
        bool on = fy_pos_cmp(pos, e->from) > 0 &&
                  ((e->until.ms == 0 && e->until.n == 0) || fy_pos_cmp(pos, e->until) <= 0);
        if (on && strlen(e->topic) == len && memcmp(e->topic, topic, len) == 0)
            return true;
    }
    return false;
}

static bool entry_matches(const ferry_session *s, int kind, const char *name, size_t len,
                          fy_pos pos)
{
    if (kind == FY_FEED_DIRECT)
        return len == strlen(s->id) && memcmp(name, s->id, len) == 0;
    return kind == FY_FEED_TOPIC && fy_sub_rec_matches(s->subs_rec, name, len, pos);
}

/* Queues one replayed message (a reference the push takes, or dropped here). */
static int replay_push(ferry_session *s, fy_msg *m)
{
    int rc = fy_hub_feed_push_locked(s, m, false);
    if (rc)
        fy_msg_unref(m);
    return rc < 0 ? rc : 0;
}

/* One entry read back from Redis, queued if it matches the session. */
static int replay_one(const fy_feed_entry *e, void *ud)
{
    ferry_session *s = ud;
    if (!entry_matches(s, e->kind, e->name, e->name_len, e->pos))
        return 0;
    fy_msg *m = entry_msg(e);
    return m ? replay_push(s, m) : FERRY_ENOMEM;
}

/* One entry this node read last, the same. */
static int replay_recent(const fy_recent_item *it, void *ud)
{
    ferry_session *s = ud;
    if (!entry_matches(s, it->kind, it->name, it->name_len, it->pos))
        return 0;
    fy_msg_ref_n(it->m, 1);
    return replay_push(s, it->m);
}

/* Numbers the entries after `from` up to `to` into the session's outbox: those this node
 * has read from memory when it still holds them all, the rest (all of them, or those past
 * this node's reader) from Redis. Returns as the seam's range does. pub_lock held. */
static int replay(ferry_session *s, fy_pos from, fy_pos to)
{
    ferry_hub *hub = s->hub;
    if (fy_recent_covers(&hub->recent, from)) {
        bool beyond = fy_pos_cmp(to, hub->feed_pos) > 0;
        int rc = fy_recent_each(&hub->recent, from, beyond ? hub->feed_pos : to, replay_recent, s);
        if (rc || !beyond)
            return rc;
        if (fy_pos_cmp(from, hub->feed_pos) < 0)
            from = hub->feed_pos;
    }
    return hub->cluster->ops->range(hub->cluster, from, to, replay_one, s);
}

/* How far an adoption must number from the feed itself: past this node's reader, and past
 * every position the record names (the cursor, where subscriptions began and ended), which
 * another node's reader may have reached first. Beyond it the local subscriptions match
 * exactly what the record does. */
static fy_pos replay_end(const ferry_session *s)
{
    fy_pos end = s->hub->feed_pos;
    if (fy_pos_cmp(s->rec.cur_pos, end) > 0)
        end = s->rec.cur_pos;
    for (size_t i = 0; i < s->subs_rec->n; i++) {
        if (fy_pos_cmp(s->subs_rec->e[i].from, end) > 0)
            end = s->subs_rec->e[i].from;
        if (fy_pos_cmp(s->subs_rec->e[i].until, end) > 0)
            end = s->subs_rec->e[i].until;
    }
    return end;
}

int fy_session_adopt_locked(ferry_session *s, uint64_t ack)
{
    ferry_hub *hub = s->hub;
    atomic_fetch_sub(&hub->outbox_bytes, s->out.bytes);
    fy_outbox_clear(&s->out);
    fy_outbox_restart(&s->out, s->rec.cur_seq + 1);
    s->drop_to = ack; /* numbered up to the client's ack: it has them */
    s->acked_pos = s->rec.cur_pos;
    s->cur_saved = s->rec.cur_seq;
    s->cur_saved_pos = s->rec.cur_pos;
    s->serving = true;
    s->replayed_to = (fy_pos){0, 0};
    if (fy_pos_cmp(s->rec.cur_pos, s->subs_rec->horizon) < 0)
        return FY_FEED_TRIMMED;
    fy_pos end = replay_end(s);
    int rc = replay(s, s->rec.cur_pos, end);
    s->replayed_to = end;
    if (rc == FERRY_EFULL) /* the replay overflowed the outbox: the session ended so */
        rc = 0;
    if (s->out.high_sent < ack)
        s->out.high_sent = ack; /* the client's ack stands: numbering is the same here */
    return rc;
}

void fy_session_adopt_subs(ferry_session *s)
{
    ferry_hub *hub = s->hub;
    pthread_mutex_lock(&hub->lock);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; s->serving && s->state != FERRY_STATE_EXPIRED && i < s->subs_rec->n; i++) {
        const fy_sub_rec *e = &s->subs_rec->e[i];
        if (e->until.ms || e->until.n)
            continue;
        if (fy_topic_subscribe(hub, s, e->topic)) {
            fy_session_end_unsaved_locked(s, FERRY_REASON_OVERFLOW, fy_hub_now(hub));
            fy_hub_limit(hub, FERRY_LIMIT_MEMORY);
        }
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&hub->lock);
}

/* The cursors to hand the store: collected under pub_lock, so that every entry up to
 * feed_pos has been queued where it matches. */
typedef struct cursor_list {
    fy_pos at;
    fy_cursor *c;
    size_t n, cap;
} cursor_list;

static void collect_cursor(ferry_session *s, void *ud)
{
    cursor_list *l = ud;
    pthread_mutex_lock(&s->lock);
    if (s->serving && s->state != FERRY_STATE_EXPIRED && l->n < l->cap) {
        uint64_t seq = s->out.base - 1;
        /* Nothing unacknowledged: everything matching up to feed_pos (and up to what an
         * adoption numbered ahead of the reader) is numbered, so the cursor may move there,
         * and keeps clear of the feed's trimming. */
        fy_pos pos = s->acked_pos;
        if (s->out.count == 0)
            pos = fy_pos_cmp(s->replayed_to, l->at) > 0 ? s->replayed_to : l->at;
        if (seq > s->cur_saved || pos.ms > s->cur_saved_pos.ms + CURSOR_AGE_MS) {
            fy_cursor *c = &l->c[l->n++];
            memcpy(c->id, s->id, sizeof c->id);
            memcpy(c->owner, s->hub->cluster->node, sizeof c->owner);
            c->seq = seq;
            c->pos = pos;
            /* Not s->rec's cursor: that one is only ever what Redis holds (loaded), which
             * is what pruning subscriptions may rely on. */
            s->cur_saved = seq;
            s->cur_saved_pos = pos;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

void fy_hub_feed_tick(ferry_hub *hub)
{
    fy_store *st = hub->store;
    uint64_t now = fy_hub_now(hub);
    if (hub->cursors_at && now - hub->cursors_at < CURSOR_MS)
        return;
    hub->cursors_at = now;
    cursor_list l = {.cap = st->ops->count(st)};
    l.c = malloc(l.cap * sizeof *l.c + 1);
    if (!l.c)
        return;
    pthread_mutex_lock(&hub->pub_lock);
    l.at = hub->feed_pos;
    st->ops->each(st, collect_cursor, &l);
    pthread_mutex_unlock(&hub->pub_lock);
    if (l.n)
        st->ops->cursors(st, l.c, l.n);
    free(l.c);
}
