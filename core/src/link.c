#include "link.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "hub.h"
#include "session.h"

int ferry_link_new(ferry_hub *hub, const ferry_link_ops *ops, void *ud, ferry_link **out)
{
    if (!hub || !ops || !ops->wake || !out)
        return FERRY_EINVAL;
    ferry_link *l = calloc(1, sizeof *l);
    if (!l)
        return FERRY_ENOMEM;
    l->hub = hub;
    l->ops = ops;
    l->ud = ud;
    l->armed = true;
    pthread_mutex_init(&l->lock, NULL);
    *out = l;
    return 0;
}

void fy_link_ctl_locked(ferry_link *l, unsigned ctl)
{
    l->ctl |= ctl;
    if (l->armed) {
        l->armed = false;
        l->ops->wake(l->ud);
    }
}

void fy_link_kick_locked(ferry_link *l, int why)
{
    if (l->done)
        return;
    l->done = true;
    l->end = why;
    l->ctl = 0; /* nothing more is owed to a connection that is being dropped */
    l->nerr = 0;
    if (l->ops->kick)
        l->ops->kick(l->ud);
}

void fy_link_finish_locked(ferry_link *l, ferry_reason why)
{
    fy_link_kick_locked(l, FERRY_LINK_ENDED);
    l->final_why = why;
    fy_link_ctl_locked(l, FY_CTL_FINAL);
}

static ferry_session *bound(ferry_link *l)
{
    pthread_mutex_lock(&l->lock);
    ferry_session *s = l->s;
    pthread_mutex_unlock(&l->lock);
    return s;
}

/* Queues an error frame for the peer; returns `code`. A non-zero `end` (a ferry_link_end)
 * also ends the link after the frame. */
static int peer_error(ferry_link *l, int code, const char *text, int end)
{
    pthread_mutex_lock(&l->lock);
    if (end)
        fy_link_kick_locked(l, end); /* first: a kick drops what is queued */
    if (l->nerr < FY_LINK_MAX_ERRORS) {
        l->err[l->nerr].code = code;
        snprintf(l->err[l->nerr].text, sizeof l->err[0].text, "%s", text);
        l->nerr++;
    }
    fy_link_ctl_locked(l, FY_CTL_ERROR);
    pthread_mutex_unlock(&l->lock);
    return code;
}

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
        return peer_error(l, rc, text, 0);
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
    return peer_error(l, FERRY_EAUTH, reason ? reason : "credentials refused",
                      FERRY_LINK_UNAUTHORIZED);
}

static int handshake(ferry_link *l, const fy_frame *f)
{
    ferry_hub *hub = l->hub;
    uint64_t now = fy_hub_now(hub);
    fy_reset why = {.why = FERRY_REASON_NONE};
    char identity[FERRY_IDENTITY_MAX];

    if (f->type == FY_F_RESUME) {
        pthread_mutex_lock(&l->lock);
        const char *addr = l->peer_addr;
        pthread_mutex_unlock(&l->lock);
        if (!fy_hub_resume_allowed(hub, addr)) {
            fy_hub_limit(hub, FERRY_LIMIT_RESUME_RATE);
            return peer_error(l, FERRY_ERATE, "too many resume attempts from this address",
                              FERRY_LINK_THROTTLED);
        }
    }
    int arc = authenticate(l, f, identity);
    if (arc)
        return arc;
    if (f->type == FY_F_RESUME) {
        bool resumed;
        int rc = try_resume(l, f, identity, now, &resumed, &why);
        if (rc || resumed)
            return rc;
    }

    /* The new session first: if it cannot be allocated, nothing has been counted. */
    ferry_session *s = fy_session_new(hub);
    if (!s)
        return peer_error(l, FERRY_ENOMEM, "out of memory", 0);
    if (f->type == FY_F_RESUME)
        atomic_fetch_add(&hub->resume_failures[why.why], 1);
    if (!fy_hub_identity_add(hub, identity)) {
        ferry_session_unref(s);
        fy_hub_limit(hub, FERRY_LIMIT_IDENTITY);
        return peer_error(l, FERRY_ECAPACITY, "too many sessions for this identity",
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
        return peer_error(l, rc, full ? "server at session capacity" : "out of memory",
                          full ? FERRY_LINK_REFUSED : 0);
    }

    /* in_lock: on_open finishes before any message or on_close of this session. And the
     * link sends nothing until it has returned, so a client that has its welcome knows that
     * on_open's subscriptions and messages are in place. */
    pthread_mutex_lock(&s->in_lock);
    pthread_mutex_lock(&s->lock);
    memcpy(s->identity, identity, sizeof s->identity);
    s->opened = true;
    atomic_fetch_add(&hub->opened, 1);
    pthread_mutex_lock(&l->lock);
    l->opening = true;
    l->armed = false; /* one wake, below */
    pthread_mutex_unlock(&l->lock);
    attach_locked(l, s, NULL, NULL, &why, now);
    pthread_mutex_unlock(&s->lock);
    fy_hub_call_open(hub, s, why.why);
    pthread_mutex_lock(&l->lock);
    l->opening = false;
    l->ops->wake(l->ud);
    pthread_mutex_unlock(&l->lock);
    pthread_mutex_unlock(&s->in_lock);
    ferry_session_unref(s); /* the store and the link hold theirs */
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

static int session_frames(ferry_link *l, ferry_session *s, fy_frame *fs, size_t n)
{
    ferry_hub *hub = l->hub;
    uint64_t now = fy_hub_now(hub);
    char text[160];
    size_t count = 0; /* fs[0..count) becomes the messages to deliver */
    bool closing = false, got_msg = false;

    pthread_mutex_lock(&s->in_lock);
    pthread_mutex_lock(&s->lock);
    if (s->link != l) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->in_lock);
        return FERRY_ECLOSED;
    }
    int rc = validate(s, fs, n, text, sizeof text);
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->in_lock);
        return peer_error(l, rc, text, 0);
    }
    s->last_rx = now;
    fy_session_confirm_locked(s);
    unsigned ctl = 0;
    for (size_t i = 0; i < n && !closing; i++) {
        fy_frame *f = &fs[i];
        switch (f->type) {
        case FY_F_MSG:
            got_msg = true;
            if (f->seq == s->in_seq + 1) {
                s->in_seq++;
                fs[count++] = *f; /* i >= count: compacting in place is safe */
            }
            break;
        case FY_F_SUB:
        case FY_F_UNSUB:
            fs[count++] = *f; /* applied below, in order with the messages */
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
            closing = true;
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
    pthread_mutex_unlock(&s->lock);

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
            peer_error(l, FERRY_EFORBIDDEN, why, 0);
        }
    }

    pthread_mutex_lock(&s->lock);
    if (got_msg && s->link == l) {
        pthread_mutex_lock(&l->lock);
        fy_link_ctl_locked(l, FY_CTL_ACK);
        pthread_mutex_unlock(&l->lock);
    }
    if (closing)
        fy_session_end_locked(s, FERRY_REASON_CLOSED, now);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->in_lock);
    return 0;
}

int ferry_link_recv(ferry_link *l, const char *data, size_t len)
{
    if (!l || (!data && len))
        return FERRY_EINVAL;
    const ferry_options *o = &l->hub->opt;
    fy_limits lim = {o->max_frame_bytes, o->max_depth, o->max_batch, o->max_elements};
    json_t *root;
    fy_frame *fs;
    size_t n;
    fy_err err;

    pthread_mutex_lock(&l->lock);
    bool done = l->done;
    ferry_session *s = l->s;
    pthread_mutex_unlock(&l->lock);
    if (done)
        return FERRY_ECLOSED;

    atomic_fetch_add_explicit(&l->hub->bytes_in, len, memory_order_relaxed);
    int rc = fy_frame_decode(data ? data : "", len, &lim, &root, &fs, &n, &err);
    if (rc) {
        if (err.limit >= 0)
            fy_hub_limit(l->hub, err.limit);
        return peer_error(l, rc, err.text, 0);
    }
    if (!s) {
        /* Alone: not even in a batch of one (docs/PROTOCOL.md, Handshake). */
        if (json_is_array(root) || (fs[0].type != FY_F_HELLO && fs[0].type != FY_F_RESUME))
            rc = peer_error(l, FERRY_EHANDSHAKE,
                            "the first frame must be a hello or resume, alone, not in a batch",
                            0);
        else
            rc = handshake(l, &fs[0]);
    } else {
        rc = session_frames(l, s, fs, n);
    }
    free(fs);
    json_decref(root);
    fy_hub_drain(l->hub);
    return rc;
}

int ferry_link_too_big(ferry_link *l, size_t len)
{
    if (!l)
        return FERRY_EINVAL;
    pthread_mutex_lock(&l->lock);
    bool done = l->done;
    pthread_mutex_unlock(&l->lock);
    if (done)
        return FERRY_ECLOSED;
    char text[120];
    snprintf(text, sizeof text, "message of %zu bytes or more; the limit is %zu", len,
             l->hub->opt.max_frame_bytes);
    fy_hub_limit(l->hub, FERRY_LIMIT_FRAME_SIZE);
    return peer_error(l, FERRY_ETOOBIG, text, 0);
}

/* Takes the bound session's lock (if one is bound) and then the link's, and returns that
 * session. The session is read before its lock is taken (the lock order), so a handshake
 * may bind one in between: then it starts again. l->s changes once, from NULL. */
static ferry_session *lock_bound(ferry_link *l)
{
    for (;;) {
        ferry_session *s = bound(l);
        if (s)
            pthread_mutex_lock(&s->lock);
        pthread_mutex_lock(&l->lock);
        if (l->s == s)
            return s;
        pthread_mutex_unlock(&l->lock);
        if (s)
            pthread_mutex_unlock(&s->lock);
    }
}

static int put_char(ferry_buf *b, char c)
{
    if (ferry_buf_reserve(b, 1))
        return FERRY_ENOMEM;
    b->data[b->len++] = c;
    return 0;
}

int ferry_link_pull(ferry_link *l, ferry_buf *b, unsigned flags)
{
    if (!l || !b)
        return FERRY_EINVAL;
    const ferry_options *o = &l->hub->opt;
    size_t start = b->len, n = 0;
    uint64_t seq = 0, seq0 = 0, end = 0;
    int rc = 0;

    ferry_session *s = lock_bound(l);
    if (l->opening) { /* the handshake wakes the transport once on_open has returned */
        pthread_mutex_unlock(&l->lock);
        if (s)
            pthread_mutex_unlock(&s->lock);
        if (flags & FERRY_PULL_ARRAY) {
            if (ferry_buf_reserve(b, 2))
                return FERRY_ENOMEM;
            memcpy(b->data + b->len, "[]", 2);
            b->len += 2;
        }
        return 0;
    }
    bool live = s && s->link == l;
    unsigned ctl = l->ctl;

#define EMIT(expr)                                                                             \
    do {                                                                                       \
        if ((rc = put_char(b, n ? ',' : '[')) || (rc = (expr)))                                \
            goto fail;                                                                         \
        n++;                                                                                   \
    } while (0)

    if (ctl & FY_CTL_RESET)
        EMIT(fy_enc_reason(b, "reset", l->reset_why, l->reset_has_ack, l->reset_ack));
    if (ctl & FY_CTL_WELCOME)
        EMIT(fy_enc_welcome(b, s->id, l->secret, l->resumed, l->welcome_ack, o));
    for (size_t i = 0; (ctl & FY_CTL_ERROR) && i < l->nerr; i++)
        EMIT(fy_enc_error(b, l->err[i].code, l->err[i].text));
    if (ctl & FY_CTL_PONG)
        EMIT(fy_enc_bare(b, "pong"));
    if (ctl & FY_CTL_PING)
        EMIT(fy_enc_bare(b, "ping"));
    if ((ctl & FY_CTL_ACK) && s)
        EMIT(fy_enc_ack(b, s->in_seq));
    bool blocked = false;
    if (live && !(flags & FERRY_PULL_CONTROL)) {
        bool replay = flags & FERRY_PULL_REPLAY;
        size_t inflight = s->out.inflight;
        seq = seq0 = replay ? s->out.base : s->out.next_send;
        end = fy_outbox_end(&s->out);
        while (seq < end && n < o->max_batch && b->len - start < o->max_batch_bytes) {
            const fy_msg *m = fy_outbox_at(&s->out, seq);
            /* The ack window: stop before the client holds too much it has not acked, so
             * that a client that stops reading never fills the socket and blocks a write.
             * Replays start from the last ack, so only fresh sends count. */
            if (!replay && inflight && inflight + m->len + FY_OUTBOX_OVERHEAD > o->ack_window_bytes) {
                blocked = true;
                break;
            }
            EMIT(fy_enc_msg(b, seq, m));
            inflight += m->len + FY_OUTBOX_OVERHEAD;
            seq++;
        }
    }
    if (ctl & FY_CTL_FINAL)
        EMIT(fy_enc_reason(b, l->final_why == FERRY_REASON_OVERFLOW ||
                                      l->final_why == FERRY_REASON_EXPIRED ||
                                      l->final_why == FERRY_REASON_FORKED
                                  ? "reset"
                                  : "close",
                           l->final_why, s != NULL, s ? s->in_seq : 0));
#undef EMIT
    if ((rc = ferry_buf_reserve(b, 2))) /* room for "]" or "[]" below */
        goto fail;

    /* Everything encoded: now consume it. */
    if (ctl & FY_CTL_WELCOME)
        sodium_memzero(l->secret, sizeof l->secret);
    l->ctl = 0;
    l->nerr = 0;
    l->armed = true;
    if (live && !(flags & FERRY_PULL_CONTROL)) {
        if (seq > seq0) {
            fy_outbox_sent(&s->out, seq - 1);
            atomic_fetch_add_explicit(&l->hub->msgs_out, seq - seq0, memory_order_relaxed);
        }
        s->wake_armed = seq == end;
        if (blocked && !s->window_blocked)
            s->blocked_since = fy_hub_now(l->hub);
        s->window_blocked = blocked;
    }
    pthread_mutex_unlock(&l->lock);
    if (s)
        pthread_mutex_unlock(&s->lock);

    atomic_fetch_add_explicit(&l->hub->bytes_out, b->len - start, memory_order_relaxed);
    if (n == 0 && !(flags & FERRY_PULL_ARRAY)) {
        b->len = start;
    } else if (n == 1 && !(flags & FERRY_PULL_ARRAY)) {
        memmove(b->data + start, b->data + start + 1, b->len - start - 1);
        b->len--;
    } else if (n == 0) {
        memcpy(b->data + b->len, "[]", 2);
        b->len += 2;
    } else {
        b->data[b->len++] = ']';
    }
    return (int)n;

fail:
    pthread_mutex_unlock(&l->lock);
    if (s)
        pthread_mutex_unlock(&s->lock);
    b->len = start;
    return rc;
}

int ferry_link_done(ferry_link *l)
{
    pthread_mutex_lock(&l->lock);
    int d = l->done && l->ctl == 0;
    pthread_mutex_unlock(&l->lock);
    return d;
}

void ferry_link_set_transport(ferry_link *l, int transport)
{
    pthread_mutex_lock(&l->lock);
    l->transport = transport;
    pthread_mutex_unlock(&l->lock);
}

void ferry_link_set_peer(ferry_link *l, const char *peer_addr,
                         const char *(*header)(void *ctx, const char *name), void *ctx)
{
    pthread_mutex_lock(&l->lock);
    l->peer_addr = peer_addr;
    l->header = header;
    l->header_ctx = ctx;
    pthread_mutex_unlock(&l->lock);
}

ferry_link_end ferry_link_end_reason(ferry_link *l)
{
    pthread_mutex_lock(&l->lock);
    ferry_link_end e = l->done ? (ferry_link_end)l->end : FERRY_LINK_OPEN;
    pthread_mutex_unlock(&l->lock);
    return e;
}

int ferry_link_check_secret(ferry_link *l, const char *secret, size_t len)
{
    fy_hash presented;
    fy_token_hash_secret(secret, len, &presented);
    ferry_session *s = bound(l);
    if (!s)
        return FERRY_ENOTFOUND;
    int rc = FERRY_ENOTFOUND;
    pthread_mutex_lock(&s->lock);
    if (s->link != l) {
        rc = FERRY_ECLOSED;
    } else if (fy_token_hash_eq(&presented, &s->secret)) {
        fy_session_confirm_locked(s);
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

const char *ferry_link_session_id(ferry_link *l)
{
    ferry_session *s = bound(l);
    return s ? s->id : NULL;
}

void ferry_link_free(ferry_link *l)
{
    if (!l)
        return;
    ferry_hub *hub = l->hub;
    ferry_session *s = bound(l);
    if (s) {
        pthread_mutex_lock(&s->lock);
        if (s->link == l) {
            s->link = NULL;
            if (s->state != FERRY_STATE_EXPIRED) {
                s->state = FERRY_STATE_DETACHED;
                s->since = fy_hub_now(hub);
            }
        }
        pthread_mutex_unlock(&s->lock);
        ferry_session_unref(s);
    }
    sodium_memzero(l->secret, sizeof l->secret);
    pthread_mutex_destroy(&l->lock);
    free(l);
    fy_hub_drain(hub);
}
