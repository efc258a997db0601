/* The session protocol of docs/PROTOCOL.md, server side: the handshake (hello, or resume
 * with its secret checks, rotation and forks), and the frames of a bound link (validated as
 * a batch, then applied: inbound seq, acks, pings, subscriptions, close). The link object
 * and the pull encoder are in link.c; the session's state in session.c. */
#include "protocol.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "hub.h"
#include "link.h"
#include "session.h"

/* Why a new session replaces the one a resume named, and (when the server still remembers
 * that one and the resume proved its secret) the last client seq it delivered. */
typedef struct {
    ferry_reason why;
    bool has_ack;
    uint64_t ack;
} fy_reset;

/* Binds `l` to `s` and queues the welcome with a fresh secret. The previous link, if any,
 * is kicked: one connection per session. `rid`: the resume's attempt ID (NULL for a new
 * session). s->lock held. */
static void attach_locked(ferry_link *l, ferry_session *s, const fy_hash *presented,
                          const fy_rid *rid, const fy_reset *reset, uint64_t now)
{
    if (s->link && s->link != l) {
        pthread_mutex_lock(&s->link->lock);
        fy_link_kick_locked(s->link, FERRY_LINK_SUPERSEDED);
        pthread_mutex_unlock(&s->link->lock);
    }
    if (presented && s->transport && l->transport && s->transport != l->transport) {
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

    fy_hash fresh;
    pthread_mutex_lock(&l->lock);
    l->s = ferry_session_ref(s);
    fy_token_new_secret(l->secret, &fresh);
    /* Until the client uses the new secret (any frame on this link), the one it presented
     * keeps working: a welcome lost in flight must not strand the session. */
    if (presented && s->unconfirmed && fy_token_hash_eq(presented, &s->secret))
        fy_session_retire_locked(s, &s->confirmed, &s->confirmed_rid); /* proven now */
    s->confirmed = presented ? *presented : fresh;
    s->confirmed_rid = rid ? *rid : (fy_rid){0};
    s->secret = fresh;
    s->unconfirmed = presented != NULL;
    l->resumed = presented != NULL;
    l->welcome_ack = s->in_seq;
    l->reset_why = reset ? reset->why : FERRY_REASON_NONE;
    l->reset_has_ack = reset && reset->has_ack;
    l->reset_ack = reset ? reset->ack : 0;
    fy_link_ctl_locked(l, FY_CTL_WELCOME | (l->reset_why ? FY_CTL_RESET : 0));
    pthread_mutex_unlock(&l->lock);
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

/* Tries to resume. Returns 0 with *resumed set, or an error already queued for the peer. */
static int try_resume(ferry_link *l, const fy_frame *f, const char *identity, uint64_t now,
                      bool *resumed, fy_reset *why)
{
    ferry_hub *hub = l->hub;
    fy_hash presented;
    ferry_session *s = NULL;
    int rc = 0;
    char text[160];

    *resumed = false;
    *why = (fy_reset){.why = FERRY_REASON_UNKNOWN};
    fy_token_hash_secret(f->secret, f->secret_len, &presented);
    fy_rid rid = {.set = f->rid != NULL};
    if (rid.set)
        crypto_generichash(rid.h.b, sizeof rid.h.b, (const unsigned char *)f->rid, f->rid_len,
                           NULL, 0);
    if (fy_token_id_valid(f->sid, f->sid_len)) {
        pthread_mutex_lock(&hub->lock);
        s = hub->store->ops->find(hub->store, f->sid, f->sid_len);
        if (s)
            ferry_session_ref(s);
        pthread_mutex_unlock(&hub->lock);
    }
    if (!s)
        return 0;

    pthread_mutex_lock(&s->lock);
    bool now_ok = fy_token_hash_eq(&presented, &s->secret);
    bool prev_ok = fy_token_hash_eq(&presented, &s->confirmed) && s->unconfirmed;
    bool same_attempt = false;
    if (!now_ok && !prev_ok && fy_session_is_retired(s, &presented, &rid, &same_attempt) &&
        !same_attempt && strcmp(identity, s->identity) == 0) {
        /* A secret this session had already replaced: two parties hold it. The session ends
         * as forked (its connection, and any later resume with its newest secret, are told
         * so), while this presenter gets the answer any stranger gets. */
        fy_session_end_locked(s, FERRY_REASON_FORKED, now);
    } else if ((!now_ok && !prev_ok) || strcmp(identity, s->identity) != 0) {
        /* same answer as an unknown session: so is a resume under another identity, and a
         * late copy of the resume that retired this secret (same attempt ID: path delay,
         * not a second holder), which leaves the session alone */
    } else if (s->state == FERRY_STATE_EXPIRED) {
        *why = (fy_reset){.why = s->end_reason, .has_ack = true, .ack = s->in_seq};
    } else if (resume_ack_bad(s, f->ack, text, sizeof text) ||
               fy_session_ack_locked(s, f->ack, true) != 0) {
        rc = FERRY_EACK;
        pthread_mutex_unlock(&s->lock);
        ferry_session_unref(s);
        return fy_link_peer_error(l, rc, text, 0);
    } else {
        attach_locked(l, s, &presented, &rid, NULL, now);
        atomic_fetch_add(&hub->resumes, 1);
        *resumed = true;
        why->why = FERRY_REASON_NONE;
    }
    pthread_mutex_unlock(&s->lock);
    ferry_session_unref(s);
    return 0;
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

/* A new session, counted against the identity and session limits and stored. Returns 0
 * with *out (one reference for the caller), or an error already queued for the peer with
 * nothing counted. `resumed_failed`: a resume that failed for `why` asked for it. */
static int new_session(ferry_link *l, const char *identity, bool resume_failed,
                       ferry_reason why, ferry_session **out)
{
    ferry_hub *hub = l->hub;
    /* The new session first: if it cannot be allocated, nothing has been counted. */
    ferry_session *s = fy_session_new(hub);
    if (!s)
        return fy_link_peer_error(l, FERRY_ENOMEM, "out of memory", 0);
    if (resume_failed)
        atomic_fetch_add(&hub->resume_failures[why], 1);
    if (!fy_hub_identity_add(hub, identity)) {
        ferry_session_unref(s);
        fy_hub_limit(hub, FERRY_LIMIT_IDENTITY);
        return fy_link_peer_error(l, FERRY_ECAPACITY, "too many sessions for this identity",
                                  FERRY_LINK_REFUSED);
    }
    pthread_mutex_lock(&hub->lock);
    bool full = atomic_load(&hub->live) >= hub->opt.max_sessions;
    int rc = full ? FERRY_ECAPACITY : hub->store->ops->add(hub->store, s);
    if (rc == 0)
        atomic_fetch_add(&hub->live, 1);
    pthread_mutex_unlock(&hub->lock);
    if (rc) {
        ferry_session_unref(s);
        fy_hub_identity_del(hub, identity);
        if (full)
            fy_hub_limit(hub, FERRY_LIMIT_SESSIONS);
        return fy_link_peer_error(l, rc, full ? "server at session capacity" : "out of memory",
                                  full ? FERRY_LINK_REFUSED : 0);
    }
    *out = s;
    return 0;
}

/* Binds a new session to `l` and runs on_open (or on_reset, for `why`). in_lock: on_open
 * finishes before any message or on_close of this session. And the link sends nothing
 * until it has returned, so a client that has its welcome knows that on_open's
 * subscriptions and messages are in place. Takes over the caller's reference to s. */
static void open_session(ferry_link *l, ferry_session *s, const char *identity,
                         const fy_reset *why, uint64_t now)
{
    ferry_hub *hub = l->hub;
    pthread_mutex_lock(&s->in_lock);
    pthread_mutex_lock(&s->lock);
    memcpy(s->identity, identity, sizeof s->identity);
    s->opened = true;
    atomic_fetch_add(&hub->opened, 1);
    pthread_mutex_lock(&l->lock);
    l->opening = true;
    l->armed = false; /* one wake, below */
    pthread_mutex_unlock(&l->lock);
    attach_locked(l, s, NULL, NULL, why, now);
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
    if ((rc = new_session(l, identity, resume, why.why, &s)))
        return rc;
    open_session(l, s, identity, &why, now);
    return 0;
}

/* Checks a batch against the session before anything is applied, so that a bad batch
 * changes nothing. Returns 0 or an error with text for the peer. s->lock held. */
static int validate(const ferry_session *s, const fy_frame *fs, size_t n, char *text,
                    size_t tlen)
{
    uint64_t expect = s->in_seq;
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
            return 0; /* frames after a close are ignored */
        default:
            break;
        }
    }
    return 0;
}

/* What applying a batch left to do outside the session's lock. */
typedef struct {
    size_t count;  /* fs[0..count): the messages to deliver and the subs to apply, in order */
    bool closing;  /* a close frame: the session ends after them */
    bool got_msg;  /* a msg frame, new or a copy: the client is owed an ack */
} fy_applied;

/* Applies a validated batch to the session: the inbound seq, acks, pings. Compacts the
 * messages and subscriptions still to deliver into fs[0..count). s->lock held. */
static void apply_locked(ferry_link *l, ferry_session *s, fy_frame *fs, size_t n,
                         fy_applied *a)
{
    unsigned ctl = 0;
    *a = (fy_applied){0};
    for (size_t i = 0; i < n && !a->closing; i++) {
        fy_frame *f = &fs[i];
        switch (f->type) {
        case FY_F_MSG:
            a->got_msg = true;
            if (f->seq == s->in_seq + 1) {
                s->in_seq++;
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

/* Hands the batch's new messages to on_message and applies its subscriptions, in order.
 * s->in_lock held, s->lock not. */
static void deliver(ferry_link *l, ferry_session *s, const fy_frame *fs, size_t count)
{
    ferry_hub *hub = l->hub;
    for (size_t i = 0; i < count; i++) {
        if (fs[i].type == FY_F_MSG) {
            atomic_fetch_add_explicit(&hub->msgs_in, 1, memory_order_relaxed);
            fy_hub_call_message(hub, s, fs[i].data);
        } else if (fs[i].type == FY_F_UNSUB) {
            ferry_session_unsubscribe(s, fs[i].topic);
        } else if (!fy_hub_allow_subscribe(hub, s, fs[i].topic) ||
                   ferry_session_subscribe(s, fs[i].topic) != 0) {
            char why[160];
            snprintf(why, sizeof why, "subscription to %.128s refused", fs[i].topic);
            fy_link_peer_error(l, FERRY_EFORBIDDEN, why, 0);
        }
    }
}

int fy_proto_frames(ferry_link *l, ferry_session *s, fy_frame *fs, size_t n)
{
    uint64_t now = fy_hub_now(l->hub);
    char text[160];
    fy_applied a;

    pthread_mutex_lock(&s->in_lock);
    pthread_mutex_lock(&s->lock);
    int rc = s->link != l ? FERRY_ECLOSED : validate(s, fs, n, text, sizeof text);
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->in_lock);
        return rc == FERRY_ECLOSED ? rc : fy_link_peer_error(l, rc, text, 0);
    }
    s->last_rx = now;
    fy_session_confirm_locked(s);
    apply_locked(l, s, fs, n, &a);
    pthread_mutex_unlock(&s->lock);

    deliver(l, s, fs, a.count);

    pthread_mutex_lock(&s->lock);
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
