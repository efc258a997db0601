/* The session protocol of docs/PROTOCOL.md, server side: the handshake (hello, or resume
 * with its secret checks, rotation and forks), and the frames of a bound link (validated as
 * a batch, then applied: inbound seq, acks, pings, subscriptions, close). The link object
 * and the pull encoder are in link.c; the session's state in session.c. */
#include "protocol.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cluster_seam.h"
#include "hub.h"
#include "link.h"
#include "session.h"


/* Secret rotation, on the durable record (store.h). */

/* Keeps a replaced secret hash, with the attempt ID of the resume that presented it. */
static void retire(fy_rec *r, const fy_hash *h, const fy_rid *rid)
{
    unsigned i = r->nretired++ % FY_RETIRED;
    r->retired[i] = *h;
    r->retired_rid[i] = *rid;
}

bool fy_proto_confirm(fy_rec *r)
{
    if (!r->unconfirmed)
        return false;
    retire(r, &r->confirmed, &r->confirmed_rid);
    r->confirmed = r->secret;
    r->confirmed_rid = (fy_rid){0};
    r->unconfirmed = false;
    return true;
}

/* True if `h` is a retired secret (constant time over the kept ones). *same_attempt is set
 * if `rid` is the attempt ID that secret was last presented with: a delayed copy of the
 * owner's own resume, not a second holder. */
static bool is_retired(const fy_rec *r, const fy_hash *h, const fy_rid *rid, bool *same_attempt)
{
    bool hit = false, same = false;
    unsigned n = r->nretired < FY_RETIRED ? r->nretired : FY_RETIRED;
    for (unsigned i = 0; i < n; i++) {
        bool eq = fy_token_hash_eq(h, &r->retired[i]);
        bool rid_eq = fy_token_hash_eq(&rid->h, &r->retired_rid[i].h);
        hit |= eq;
        same |= eq & rid->set & r->retired_rid[i].set & rid_eq;
    }
    *same_attempt = same;
    return hit;
}

/* Issues the next secret (its plaintext into `secret`). Until the client uses it (any
 * frame on the new link), the one it presented keeps working: a welcome lost in flight must
 * not strand the session. For a new session (`f`, `presented` and `rid` NULL) it is random,
 * and so is the session's rotation key, made with it. For a resume with an attempt ID (`f`
 * the frame, with the secret presented and its rid) it is derived from both with that key,
 * so a retry of the same attempt, or a late copy of it, is handed the same secret again
 * instead of one that would strand the secret the client already holds. Without an attempt
 * ID it is random, as for a new session: two holders of one secret without rids would
 * otherwise be handed the same secrets from then on, and never be told apart (forked). */
static void rotate(fy_rec *r, const fy_frame *f, const fy_hash *presented, const fy_rid *rid,
                   char secret[FY_SECRET_LEN + 1])
{
    fy_hash next;
    if (!r->has_key) { /* a new session, or a record stored before it had one */
        fy_token_new_key(r->key);
        r->has_key = true;
    }
    /* a presented secret that matched is well formed: it derives */
    bool derived = f && f->rid &&
                   fy_token_next_secret(r->key, f->secret, f->secret_len, f->rid, f->rid_len,
                                        secret, &next) == 0;
    if (!derived)
        fy_token_new_secret(secret, &next);
    if (presented && r->unconfirmed && fy_token_hash_eq(presented, &r->secret))
        retire(r, &r->confirmed, &r->confirmed_rid); /* proven now */
    r->confirmed = presented ? *presented : next;
    r->confirmed_rid = rid ? *rid : (fy_rid){0};
    r->secret = next;
    r->unconfirmed = presented != NULL;
}

/* The live half of binding `l` to `s`, once the record is saved: the previous link, if any,
 * is kicked (one connection per session), and the welcome queued with `secret`, which is
 * wiped here. s->lock held. */
static void bind_locked(ferry_link *l, ferry_session *s, char secret[FY_SECRET_LEN + 1],
                        bool resumed, const fy_reset *reset, uint64_t now)
{
    if (s->link && s->link != l) {
        pthread_mutex_lock(&s->link->lock);
        fy_link_kick_locked(s->link, FERRY_LINK_SUPERSEDED);
        pthread_mutex_unlock(&s->link->lock);
    }
    if (resumed && s->transport && l->transport && s->transport != l->transport) {
        if (l->transport == FERRY_TRANSPORT_WEBSOCKET)
            atomic_fetch_add(&s->hub->upgrades, 1);
        else if (l->transport == FERRY_TRANSPORT_LONGPOLL)
            atomic_fetch_add(&s->hub->fallbacks, 1);
    }
    s->transport = l->transport;
    s->link = l;
    s->state = FERRY_STATE_ATTACHED;
    s->last_rx = s->last_ping = now;
    s->wake_armed = false; /* the welcome wakes the transport; its pull re-arms */
    s->window_blocked = false;

    pthread_mutex_lock(&l->lock);
    l->s = ferry_session_ref(s);
    memcpy(l->secret, secret, sizeof l->secret);
    l->resumed = resumed;
    l->welcome_ack = s->rec.in_seq;
    l->reset = reset ? *reset : (fy_reset){.why = FERRY_REASON_NONE};
    fy_link_ctl_locked(l, FY_CTL_WELCOME | (l->reset.why ? FY_CTL_RESET : 0));
    pthread_mutex_unlock(&l->lock);
    sodium_memzero(secret, FY_SECRET_LEN + 1);
}

/* A resume's ack may not lie beyond the last message sent. One below what the session
 * already released is a stale copy of the client's own: the server releases only what the
 * secret's holder acknowledged, so the client has those, and the replay starts from the
 * oldest message kept (a long-polling client's WebSocket probe carries the ack it had when
 * it opened, while its polls go on acknowledging). Returns false, or true with the text of
 * the bad_ack. s->lock held. */
static bool resume_ack_bad(const ferry_session *s, uint64_t ack, char *text, size_t tlen)
{
    if (ack <= s->out.high_sent)
        return false;
    snprintf(text, tlen, "resume ack %" PRIu64 " is beyond the last message sent (%" PRIu64 ")",
             ack, s->out.high_sent);
    return true;
}

/* What a resume decided, from the record as loaded. */
/* RESUME_AWAY: in a cluster, this node still serves the session but another took it over
 * (its `moved` entry is on its way); the resume lets go here and adopts it again. */
typedef enum {
    RESUME_STRANGER,
    RESUME_FORKED,
    RESUME_ENDED,
    RESUME_BAD_ACK,
    RESUME_OK,
    RESUME_AWAY
} fy_verdict;

typedef struct {
    ferry_session *s;
    const fy_frame *f;
    const char *identity;
    fy_hash presented;
    fy_rid rid;
    fy_verdict verdict;
    fy_reset reset;                 /* RESUME_ENDED */
    char text[160];                 /* RESUME_BAD_ACK */
    char secret[FY_SECRET_LEN + 1]; /* RESUME_OK: the fresh secret */
} fy_resume;

/* The resume's decision, as a change to the record (fy_session_update_locked): only a
 * resume that succeeds changes it (the secret rotates). s->lock held. */
static int decide_resume(fy_rec *r, void *ctx)
{
    fy_resume *c = ctx;
    ferry_session *s = c->s;
    bool now_ok = fy_token_hash_eq(&c->presented, &r->secret);
    bool prev_ok = fy_token_hash_eq(&c->presented, &r->confirmed) && r->unconfirmed;
    bool same_attempt = false, mine = strcmp(c->identity, r->identity) == 0;
    bool ended = s->state == FERRY_STATE_EXPIRED || r->end_reason != FERRY_REASON_NONE;
    if (s->hub->cluster && s->serving && !ended && strcmp(r->owner, s->hub->cluster->node) != 0) {
        c->verdict = RESUME_AWAY;
        return 0;
    }
    if (!now_ok && !prev_ok && is_retired(r, &c->presented, &c->rid, &same_attempt) &&
        !same_attempt && mine) {
        /* A secret this session had already replaced: two parties hold it. The session ends
         * as forked (its connection, and any later resume with its newest secret, are told
         * so), while this presenter gets the answer any stranger gets. */
        c->verdict = RESUME_FORKED;
    } else if ((!now_ok && !prev_ok) || !mine) {
        /* same answer as an unknown session: so is a resume under another identity, and a
         * late copy of the resume that retired this secret (same attempt ID: path delay,
         * not a second holder), which leaves the session alone */
        c->verdict = RESUME_STRANGER;
    } else if (ended) {
        c->verdict = RESUME_ENDED;
        c->reset = (fy_reset){.why = s->state == FERRY_STATE_EXPIRED ? s->end_reason
                                                                    : r->end_reason,
                              .has_ack = true,
                              .ack = r->in_seq};
    } else if (s->serving && resume_ack_bad(s, c->f->ack, c->text, sizeof c->text)) {
        c->verdict = RESUME_BAD_ACK;
    } else {
        c->verdict = RESUME_OK;
        rotate(r, c->f, &c->presented, &c->rid, c->secret);
        if (s->hub->cluster) /* this node serves it from now on */
            strcpy(r->owner, s->hub->cluster->node);
        return 1;
    }
    return 0;
}

/* Acts on a resume's verdict, its record saved. Returns 0 or an error queued for the
 * peer. s->lock held. */
static int resume_verdict(ferry_link *l, fy_resume *c, uint64_t now, bool *resumed,
                          fy_reset *why)
{
    ferry_session *s = c->s;
    switch (c->verdict) {
    case RESUME_FORKED:
        fy_session_end_locked(s, FERRY_REASON_FORKED, now);
        break;
    case RESUME_STRANGER:
    case RESUME_AWAY:
        break;
    case RESUME_ENDED:
        *why = c->reset;
        break;
    case RESUME_BAD_ACK:
        return fy_link_peer_error(l, FERRY_EACK, c->text, 0);
    case RESUME_OK:
        if (!s->serving) {
            int rc = fy_session_adopt_locked(s, c->f->ack);
            if (rc == FY_FEED_TRIMMED || (rc == 0 && s->state == FERRY_STATE_EXPIRED)) {
                /* its messages are gone from the feed, or did not fit its outbox */
                fy_session_end_locked(s, rc ? FERRY_REASON_EXPIRED : s->end_reason, now);
                *why = (fy_reset){.why = s->end_reason, .has_ack = true, .ack = s->rec.in_seq};
                return 0;
            }
            if (rc) { /* it stays where the record says, unserved until the next resume */
                atomic_fetch_sub(&s->hub->outbox_bytes, s->out.bytes);
                fy_outbox_clear(&s->out);
                s->serving = false;
                return fy_link_peer_error(l, rc, "session store unavailable", 0);
            }
            if (!s->opened) /* its on_close runs where it ends */
                fy_hub_identity_count(s->hub, s->identity, 0);
            s->opened = true;
        }
        fy_session_ack_locked(s, c->f->ack, true); /* cannot fail: the ack was checked */
        bind_locked(l, s, c->secret, true, NULL, now);
        atomic_fetch_add(&l->hub->resumes, 1);
        *resumed = true;
        why->why = FERRY_REASON_NONE;
        break;
    }
    return 0;
}

/* Finds the session a resume names. Returns 0 with *out (a reference, or NULL for an
 * unknown or malformed ID), or the store's error, queued for the peer. */
static int resume_find(ferry_link *l, const fy_frame *f, ferry_session **out)
{
    fy_store *st = l->hub->store;
    *out = NULL;
    if (!fy_token_id_valid(f->sid, f->sid_len))
        return 0;
    int rc = st->ops->find(st, f->sid, f->sid_len, out);
    if (rc == FERRY_ENOTFOUND)
        return 0;
    return rc ? fy_link_peer_error(l, rc, "session store unavailable", 0) : 0;
}

/* Finds the session a resume names and takes its lock. A handle this node let go of while
 * the lookup ran is looked up again. Returns 0 with *out locked (NULL for an unknown ID), or
 * an error queued for the peer. */
static int resume_lock(ferry_link *l, const fy_frame *f, ferry_session **out)
{
    for (int tries = 0; tries < 4; tries++) {
        int rc = resume_find(l, f, out);
        if (rc || !*out)
            return rc;
        ferry_session *s = *out;
        pthread_mutex_lock(&s->lock);
        if (!s->forgotten)
            return 0;
        pthread_mutex_unlock(&s->lock);
        ferry_session_unref(s);
    }
    *out = NULL;
    return fy_link_peer_error(l, FERRY_ESTORE, "session store unavailable", 0);
}

/* A resume that made this node the session's owner (its record saved) adopts it: its outbox
 * rebuilt from the feed and its subscriptions made with no entry handed out meanwhile, so
 * under pub_lock, which comes before the session's lock (locks.h). The round trip of the
 * save is behind it: when a node dies, thousands of adoptions queue here. Returns whether
 * the session is as the save left it, and the node reads the feed (a node that has just
 * started serves before its reader's first contact with Redis, and the feed position it
 * then starts from would skip what the session missed); else nothing is adopted and the
 * client retries. Called and returns with s->lock held, and pub_lock too when true. */
static bool adopt_lock(ferry_session *s)
{
    uint64_t version = s->rec.version;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&s->hub->pub_lock);
    pthread_mutex_lock(&s->lock);
    if (s->hub->feed_ready && !s->forgotten && !s->serving &&
        s->state != FERRY_STATE_EXPIRED && s->rec.version == version)
        return true;
    pthread_mutex_unlock(&s->hub->pub_lock);
    return false;
}

/* Tells the node that served the session before to let it go (its connection, outbox and
 * subscriptions). If the entry is lost, that node's own saves find the record moved on. */
static void announce_move(ferry_hub *hub, ferry_session *s, uint64_t version)
{
    char body[FY_NODE_MAX + 24];
    fy_pos pos;
    int len = snprintf(body, sizeof body, "%s %" PRIu64, hub->cluster->node, version);
    hub->cluster->ops->append(hub->cluster, FY_FEED_MOVED, s->id, strlen(s->id), body,
                              (size_t)len, &pos); /* a control entry: not in the feed */
}

/* Tries to resume. Returns 0 with *resumed set (and *why, the reset a new session gets
 * when it did not), or an error already queued for the peer: then nothing has changed. */
static int try_resume(ferry_link *l, const fy_frame *f, const char *identity, uint64_t now,
                      bool *resumed, fy_reset *why)
{
    fy_resume c = {.f = f, .identity = identity, .rid = {.set = f->rid != NULL}};
    *resumed = false;
    *why = (fy_reset){.why = FERRY_REASON_UNKNOWN};
    fy_token_hash_secret(f->secret, f->secret_len, &c.presented);
    if (c.rid.set)
        crypto_generichash(c.rid.h.b, sizeof c.rid.h.b, (const unsigned char *)f->rid,
                           f->rid_len, NULL, 0);
    ferry_hub *hub = l->hub;
    bool adopting = false;
    int rc;
    for (int tries = 0; tries < 4; tries++) {
        if ((rc = resume_lock(l, f, &c.s)) || !c.s)
            return rc;
        rc = fy_session_update_locked(c.s, decide_resume, &c);
        if (rc || c.verdict != RESUME_AWAY)
            break;
        /* This node still served it, but another took it over: let it go, then adopt it. */
        pthread_mutex_unlock(&c.s->lock);
        pthread_mutex_lock(&hub->pub_lock);
        pthread_mutex_lock(&hub->lock);
        fy_session_leave(c.s, FERRY_LINK_SUPERSEDED);
        pthread_mutex_unlock(&hub->lock);
        pthread_mutex_unlock(&hub->pub_lock);
        ferry_session_unref(c.s);
        c.s = NULL;
    }
    if (!c.s)
        return fy_link_peer_error(l, FERRY_ESTORE, "session store unavailable", 0);
    if (rc == 0 && c.verdict == RESUME_OK && hub->cluster && !c.s->serving) {
        adopting = adopt_lock(c.s);
        if (!adopting) /* not reading the feed yet, or the record moved on meanwhile */
            rc = FERRY_ESTORE;
    }
    if (rc)
        rc = fy_link_peer_error(l, rc, "session store unavailable", 0);
    else
        rc = resume_verdict(l, &c, now, resumed, why);
    uint64_t version = c.s->rec.version;
    pthread_mutex_unlock(&c.s->lock);
    if (adopting) {
        if (*resumed)
            fy_session_adopt_subs(c.s);
        pthread_mutex_unlock(&hub->pub_lock);
    }
    /* Every adoption, even one of a record that already names this node (a retry after a
     * failed adoption, a save that timed out but was applied), so that no node goes on
     * serving a session another one took. */
    if (*resumed && adopting)
        announce_move(hub, c.s, version);
    sodium_memzero(c.secret, sizeof c.secret);
    ferry_session_unref(c.s);
    return rc;
}

static const char *auth_header(const ferry_auth *a, const char *name)
{
    ferry_link *l = a->transport_ctx;
    return l->header ? l->header(l->header_ctx, name) : NULL;
}

/* Runs on_auth for a handshake. Returns 0 with the identity, or the refusal (queued). */
static int authenticate(ferry_link *l, const fy_frame *f, char identity[FERRY_IDENTITY_MAX])
{
    identity[0] = '\0';
    if (!l->hub->cb.on_auth)
        return 0;
    ferry_auth a = {.token = f->token,
                    .session_id = f->type == FY_F_RESUME ? f->sid : NULL,
                    .peer_addr = l->peer_addr,
                    .header = auth_header,
                    .transport_ctx = l};
    const char *reason = NULL;
    if (fy_hub_call_auth(l->hub, &a, identity, &reason) == 0)
        return 0;
    fy_hub_limit(l->hub, FERRY_LIMIT_AUTH);
    return fy_link_peer_error(l, FERRY_EAUTH, reason ? reason : "credentials refused",
                      FERRY_LINK_UNAUTHORIZED);
}

/* A resume costs a token from its address's bucket. Returns 0, or FERRY_ERATE (queued). */
static int resume_rate(ferry_link *l)
{
    pthread_mutex_lock(&l->lock);
    const char *addr = l->peer_addr;
    pthread_mutex_unlock(&l->lock);
    if (fy_hub_resume_allowed(l->hub, addr))
        return 0;
    fy_hub_limit(l->hub, FERRY_LIMIT_RESUME_RATE);
    return fy_link_peer_error(l, FERRY_ERATE, "too many resume attempts from this address",
                              FERRY_LINK_THROTTLED);
}

/* Stores a new session, within the session limit. 0, or FERRY_ECAPACITY, or the store's
 * error; then nothing is counted. */
static int store_new(ferry_hub *hub, ferry_session *s)
{
    if (atomic_fetch_add(&hub->live, 1) >= hub->opt.max_sessions) {
        atomic_fetch_sub(&hub->live, 1);
        fy_hub_limit(hub, FERRY_LIMIT_SESSIONS);
        return FERRY_ECAPACITY;
    }
    int rc = hub->store->ops->add(hub->store, s);
    if (rc)
        atomic_fetch_sub(&hub->live, 1);
    return rc;
}

/* A new session with its record (identity, a fresh secret into `secret`), counted against
 * the identity and session limits, and stored. Returns 0 with *out (one reference for the
 * caller), or an error already queued for the peer. A resume that failed for `why` asked
 * for it (`resume_failed`): counted, unless the session could not be allocated or stored,
 * which leaves everything as it was. */
static int new_session(ferry_link *l, const char *identity, bool resume_failed,
                       ferry_reason why, char secret[FY_SECRET_LEN + 1], ferry_session **out)
{
    ferry_hub *hub = l->hub;
    ferry_session *s = fy_session_new(hub);
    if (!s)
        return fy_link_peer_error(l, FERRY_ENOMEM, "out of memory", 0);
    memcpy(s->identity, identity, sizeof s->identity);
    memcpy(s->rec.identity, identity, sizeof s->rec.identity);
    rotate(&s->rec, NULL, NULL, NULL, secret);
    if (hub->cluster) { /* nothing before the feed's position now can be for it */
        strcpy(s->rec.owner, hub->cluster->node);
        if (!fy_hub_feed_pos(hub, &s->rec.cur_pos)) {
            ferry_session_unref(s);
            return fy_link_peer_error(l, FERRY_ESTORE, "session store unavailable", 0);
        }
        s->acked_pos = s->cur_saved_pos = s->rec.cur_pos;
        s->serving = true;
    }
    bool ident_ok = fy_hub_identity_add(hub, identity);
    int rc = ident_ok ? store_new(hub, s) : FERRY_ECAPACITY;
    if (resume_failed && (rc == 0 || rc == FERRY_ECAPACITY))
        atomic_fetch_add(&hub->resume_failures[why], 1);
    if (rc == 0) {
        *out = s;
        return 0;
    }
    ferry_session_unref(s);
    sodium_memzero(secret, FY_SECRET_LEN + 1);
    if (!ident_ok) {
        fy_hub_limit(hub, FERRY_LIMIT_IDENTITY);
        return fy_link_peer_error(l, rc, "too many sessions for this identity",
                                  FERRY_LINK_REFUSED);
    }
    fy_hub_identity_del(hub, identity);
    if (rc == FERRY_ECAPACITY)
        return fy_link_peer_error(l, rc, "server at session capacity", FERRY_LINK_REFUSED);
    return fy_link_peer_error(l, rc, rc == FERRY_ENOMEM ? "out of memory"
                                                        : "session store unavailable", 0);
}

/* Binds a new session to `l` and runs on_open (or on_reset, for `why`). in_lock: on_open
 * finishes before any message or on_close of this session. And the link sends nothing
 * until it has returned, so a client that has its welcome knows that on_open's
 * subscriptions and messages are in place. Takes over the caller's reference to s. */
static void open_session(ferry_link *l, ferry_session *s, char secret[FY_SECRET_LEN + 1],
                         const fy_reset *why, uint64_t now)
{
    ferry_hub *hub = l->hub;
    pthread_mutex_lock(&s->in_lock);
    pthread_mutex_lock(&s->lock);
    s->opened = true;
    atomic_fetch_add(&hub->opened, 1);
    pthread_mutex_lock(&l->lock);
    l->opening = true;
    l->armed = false; /* one wake, below */
    pthread_mutex_unlock(&l->lock);
    bind_locked(l, s, secret, false, why, now);
    pthread_mutex_unlock(&s->lock);
    fy_hub_call_open(hub, s, why->why);
    pthread_mutex_lock(&l->lock);
    l->opening = false;
    l->ops->wake(l->ud);
    pthread_mutex_unlock(&l->lock);
    pthread_mutex_unlock(&s->in_lock);
    ferry_session_unref(s); /* the store and the link hold theirs */
}

int fy_proto_handshake(ferry_link *l, const fy_frame *f)
{
    uint64_t now = fy_hub_now(l->hub);
    fy_reset why = {.why = FERRY_REASON_NONE};
    char identity[FERRY_IDENTITY_MAX];
    bool resume = f->type == FY_F_RESUME;
    int rc;

    if (resume && (rc = resume_rate(l)))
        return rc;
    if ((rc = authenticate(l, f, identity)))
        return rc;
    if (resume) {
        bool resumed;
        rc = try_resume(l, f, identity, now, &resumed, &why);
        if (rc || resumed)
            return rc;
    }
    ferry_session *s = NULL;
    char secret[FY_SECRET_LEN + 1];
    if ((rc = new_session(l, identity, resume, why.why, secret, &s)))
        return rc;
    open_session(l, s, secret, &why, now);
    return 0;
}

/* Checks a batch against the session before anything is applied, so that a bad batch
 * changes nothing. Returns 0 with *in_seq, the inbound seq once the batch is applied, or
 * an error with text for the peer. s->lock held. */
static int validate(const ferry_session *s, const fy_frame *fs, size_t n, uint64_t *in_seq,
                    char *text, size_t tlen)
{
    uint64_t expect = s->rec.in_seq;
    for (size_t i = 0; i < n; i++) {
        const fy_frame *f = &fs[i];
        switch (f->type) {
        case FY_F_HELLO:
        case FY_F_RESUME:
            snprintf(text, tlen, "frame %zu: the handshake is already done", i);
            return FERRY_EHANDSHAKE;
        case FY_F_MSG:
            if (f->seq > expect + 1) {
                snprintf(text, tlen, "frame %zu: seq %" PRIu64 " skips ahead; expected %" PRIu64,
                         i, f->seq, expect + 1);
                return FERRY_ESEQ;
            }
            if (f->seq == expect + 1)
                expect++;
            break;
        case FY_F_ACK:
            if (f->ack > s->out.high_sent) {
                snprintf(text, tlen, "frame %zu: ack %" PRIu64 " but the last seq sent is %" PRIu64,
                         i, f->ack, s->out.high_sent);
                return FERRY_EACK;
            }
            break;
        case FY_F_CLOSE:
            *in_seq = expect;
            return 0; /* frames after a close are ignored */
        default:
            break;
        }
    }
    *in_seq = expect;
    return 0;
}

/* What applying a batch left to do outside the session's lock. */
typedef struct {
    size_t count;  /* fs[0..count): the messages to deliver and the subs to apply, in order */
    bool closing;  /* a close frame: the session ends after them */
    bool got_msg;  /* a msg frame, new or a copy: the client is owed an ack */
} fy_applied;

/* Applies a validated batch, its record saved, to the session's live state: acks, pings.
 * Compacts the messages new since `in_seq` and the subscriptions, still to deliver, into
 * fs[0..count). s->lock held. */
static void apply_locked(ferry_link *l, ferry_session *s, fy_frame *fs, size_t n,
                         uint64_t in_seq, fy_applied *a)
{
    unsigned ctl = 0;
    *a = (fy_applied){0};
    for (size_t i = 0; i < n && !a->closing; i++) {
        fy_frame *f = &fs[i];
        switch (f->type) {
        case FY_F_MSG:
            a->got_msg = true;
            if (f->seq == in_seq + 1) {
                in_seq++;
                fs[a->count++] = *f; /* i >= count: compacting in place is safe */
            }
            break;
        case FY_F_SUB:
        case FY_F_UNSUB:
            fs[a->count++] = *f; /* applied below, in order with the messages */
            break;
        case FY_F_ACK:
            fy_session_ack_locked(s, f->ack, false);
            if (s->window_blocked && s->out.inflight < s->hub->opt.ack_window_bytes) {
                s->window_blocked = false;
                s->link->ops->wake(s->link->ud);
            }
            break;
        case FY_F_PING:
            ctl |= FY_CTL_PONG;
            break;
        case FY_F_CLOSE:
            a->closing = true;
            break;
        default:
            break;
        }
    }
    if (ctl) {
        pthread_mutex_lock(&l->lock);
        fy_link_ctl_locked(l, ctl);
        pthread_mutex_unlock(&l->lock);
    }
}

static bool still_serving(ferry_session *s)
{
    pthread_mutex_lock(&s->lock);
    bool serving = s->serving;
    pthread_mutex_unlock(&s->lock);
    return serving;
}

/* Hands the batch's new messages to on_message and applies its subscriptions, in order;
 * messages up to repeat_to are marked as maybe delivered before. Returns the seq of the
 * last message handed over (`from` if none): in a cluster it stops when this node lets the
 * session go. s->in_lock held, s->lock not. */
static uint64_t deliver(ferry_link *l, ferry_session *s, const fy_frame *fs, size_t count,
                        uint64_t from, uint64_t repeat_to)
{
    ferry_hub *hub = l->hub;
    uint64_t done = from;
    for (size_t i = 0; i < count; i++) {
        if (hub->cluster && !still_serving(s))
            return done; /* this node let the session go: the rest comes again elsewhere */
        if (fs[i].type == FY_F_MSG) {
            done = fs[i].seq;
            atomic_fetch_add_explicit(&hub->msgs_in, 1, memory_order_relaxed);
            s->in_msg_seq = fs[i].seq;
            s->in_repeat = fs[i].seq <= repeat_to;
            fy_hub_call_message(hub, s, fs[i].data);
            s->in_msg_seq = 0;
            s->in_repeat = false;
        } else if (fs[i].type == FY_F_UNSUB) {
            ferry_session_unsubscribe(s, fs[i].topic);
        } else if (!fy_hub_allow_subscribe(hub, s, fs[i].topic) ||
                   ferry_session_subscribe(s, fs[i].topic) != 0) {
            char why[160];
            snprintf(why, sizeof why, "subscription to %.128s refused", fs[i].topic);
            fy_link_peer_error(l, FERRY_EFORBIDDEN, why, 0);
        }
    }
    return done;
}

/* The inbound seq a batch moves, from and to; in a cluster (node set), also the messages a
 * node before may have delivered already (up to repeat_to). */
typedef struct {
    uint64_t from, to, repeat_to;
    const char *node;
} fy_seq_move;

/* A batch's change to the record before its messages are delivered: the inbound seq (on
 * one node) or the intent to deliver up to it (in a cluster; record_delivered then moves
 * the seq), and the client's first use of its newest secret (fy_session_update_locked). */
static int record_batch(fy_rec *r, void *ctx)
{
    fy_seq_move *m = ctx;
    if (r->in_seq != m->from || (m->node && strcmp(r->owner, m->node) != 0))
        return FERRY_ECLOSED; /* the session moved on without this link */
    bool confirmed = fy_proto_confirm(r);
    if (m->node) {
        /* A crash between a node's intent and its record of delivery leaves in_pend above
         * in_seq: those messages may have reached the application already. */
        m->repeat_to = r->in_pend > r->in_seq ? r->in_pend : 0;
        bool grow = m->to > r->in_pend;
        if (grow)
            r->in_pend = m->to;
        return confirmed || grow;
    }
    if (!confirmed && m->to == m->from)
        return 0;
    r->in_seq = m->to;
    return 1;
}

/* In a cluster, the batch's messages delivered: the inbound seq moves. */
static int record_delivered(fy_rec *r, void *ctx)
{
    const fy_seq_move *m = ctx;
    if (r->in_seq != m->from || strcmp(r->owner, m->node) != 0)
        return FERRY_ECLOSED;
    r->in_seq = m->to;
    return 1;
}

int fy_proto_frames(ferry_link *l, ferry_session *s, fy_frame *fs, size_t n)
{
    uint64_t now = fy_hub_now(l->hub);
    char text[160] = "session store unavailable";
    fy_seq_move m;
    fy_applied a;

    pthread_mutex_lock(&s->in_lock);
    pthread_mutex_lock(&s->lock);
    m.from = s->rec.in_seq;
    m.repeat_to = 0;
    m.node = l->hub->cluster ? l->hub->cluster->node : NULL;
    int rc = s->link != l ? FERRY_ECLOSED : validate(s, fs, n, &m.to, text, sizeof text);
    if (rc == 0 && (s->rec.unconfirmed || m.to != m.from)) {
        rc = fy_session_update_locked(s, record_batch, &m);
        /* The stored session moved on without this link (another node took it over): let
         * the connection go, so the client resumes where the session is now. */
        if (rc == FERRY_ECLOSED)
            fy_session_detach_locked(s, now, FERRY_LINK_SUPERSEDED);
    }
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->in_lock);
        return rc == FERRY_ECLOSED ? rc : fy_link_peer_error(l, rc, text, 0);
    }
    s->last_rx = now;
    apply_locked(l, s, fs, n, m.from, &a);
    pthread_mutex_unlock(&s->lock);

    /* Only what was handed over is recorded; the rest (a node letting go mid-batch) stays
     * above in_seq, below in_pend: it comes again, marked, wherever the client resumes. */
    m.to = deliver(l, s, fs, a.count, m.from, m.repeat_to);

    pthread_mutex_lock(&s->lock);
    if (m.node && m.to != m.from && (rc = fy_session_update_locked(s, record_delivered, &m))) {
        /* Not recorded: the client is not acked, and resumes (here or elsewhere) to find
         * those messages marked as maybe repeated. */
        fy_session_detach_locked(s, now, rc == FERRY_ECLOSED ? FERRY_LINK_SUPERSEDED
                                                             : FERRY_LINK_RESTART);
        a.closing = false;
    }
    if (a.got_msg && s->link == l) {
        pthread_mutex_lock(&l->lock);
        fy_link_ctl_locked(l, FY_CTL_ACK);
        pthread_mutex_unlock(&l->lock);
    }
    if (a.closing)
        fy_session_end_locked(s, FERRY_REASON_CLOSED, now);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->in_lock);
    return 0;
}
