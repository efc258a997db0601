#include "link.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "hub.h"
#include "protocol.h"
#include "session.h"

int ferry_link_new(ferry_link **out, ferry_hub *hub, const ferry_link_ops *ops, void *ud)
{
    if (!out || !hub || !ops)
        return FERRY_EINVAL;
    if (fy_size_check(ops->size, sizeof *ops, "ferry_link_new", "ferry_link_ops") || !ops->wake)
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

int fy_link_peer_error(ferry_link *l, int code, const char *text, int end)
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

#define NOT_A_HANDSHAKE "the first frame must be a hello or resume, alone, not in a batch"

/* The link's session (NULL before the handshake); false once the link is done. */
static bool open_link(ferry_link *l, ferry_session **s)
{
    pthread_mutex_lock(&l->lock);
    bool done = l->done;
    *s = l->s;
    pthread_mutex_unlock(&l->lock);
    return !done;
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
    ferry_session *s;

    if (!open_link(l, &s))
        return FERRY_ECLOSED;

    atomic_fetch_add_explicit(&l->hub->bytes_in, len, memory_order_relaxed);
    int rc = fy_frame_decode(data ? data : "", len, &lim, &root, &fs, &n, &err);
    if (rc) {
        if (err.limit >= 0)
            fy_hub_limit(l->hub, err.limit);
        return fy_link_peer_error(l, rc, err.text, 0);
    }
    if (!s) {
        /* Alone: not even in a batch of one (docs/PROTOCOL.md, Handshake). */
        if (json_is_array(root) || (fs[0].type != FY_F_HELLO && fs[0].type != FY_F_RESUME))
            rc = fy_link_peer_error(l, FERRY_EHANDSHAKE, NOT_A_HANDSHAKE, 0);
        else
            rc = fy_proto_handshake(l, &fs[0]);
    } else {
        rc = fy_proto_frames(l, s, fs, n);
    }
    free(fs);
    json_decref(root);
    fy_hub_drain(l->hub);
    return rc;
}

int ferry_link_ack(ferry_link *l, uint64_t ack)
{
    if (!l || ack > FY_SEQ_MAX)
        return FERRY_EINVAL;
    ferry_session *s;
    if (!open_link(l, &s))
        return FERRY_ECLOSED;
    if (!s)
        return fy_link_peer_error(l, FERRY_EHANDSHAKE, NOT_A_HANDSHAKE, 0);
    /* The frame the client would have sent, down the same path as a received one: its
     * checks, its error frame and its heartbeat, without encoding and parsing it. */
    fy_frame f = {.type = FY_F_ACK, .ack = ack};
    int rc = fy_proto_frames(l, s, &f, 1);
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
    return fy_link_peer_error(l, FERRY_ETOOBIG, text, 0);
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

/* One pull under way: the frames are written as a JSON array from `start`, and nothing is
 * consumed from the link or the outbox until they all fit (pull_commit). */
typedef struct fy_pull {
    ferry_link *l;
    ferry_session *s;      /* bound session, or NULL */
    ferry_buf *b;
    unsigned flags;
    unsigned ctl;          /* the control frames this pull writes */
    bool live;             /* s's messages may be sent: the link is still s's */
    size_t start, n;       /* where the batch starts in b; frames in it */
    uint64_t seq0, seq, end; /* the messages written: [seq0, seq); the outbox's end */
    bool blocked;          /* stopped at the ack window */
    uint64_t first_born;   /* born_ns of the first message sent for the first time, or 0 */
} fy_pull;

/* Opens the array (or adds a comma) and writes one frame with `rc`. */
#define EMIT(p, expr)                                                                          \
    do {                                                                                       \
        int emit_rc_ = put_char((p)->b, (p)->n ? ',' : '[');                                   \
        if (emit_rc_ || (emit_rc_ = (expr)))                                                   \
            return emit_rc_;                                                                   \
        (p)->n++;                                                                              \
    } while (0)

/* The link's queued control frames, in their order on the wire. Both locks held. */
static int pull_control(fy_pull *p)
{
    ferry_link *l = p->l;
    if (p->ctl & FY_CTL_RESET)
        EMIT(p, fy_enc_reason(p->b, "reset", l->reset.why, l->reset.has_ack, l->reset.ack));
    if (p->ctl & FY_CTL_WELCOME)
        EMIT(p, fy_enc_welcome(p->b, p->s->id, l->secret, l->resumed, l->welcome_ack,
                               &l->hub->opt));
    for (size_t i = 0; (p->ctl & FY_CTL_ERROR) && i < l->nerr; i++)
        EMIT(p, fy_enc_error(p->b, l->err[i].code, l->err[i].text));
    if (p->ctl & FY_CTL_PONG)
        EMIT(p, fy_enc_bare(p->b, "pong"));
    if (p->ctl & FY_CTL_PING)
        EMIT(p, fy_enc_bare(p->b, "ping"));
    if ((p->ctl & FY_CTL_ACK) && p->s)
        EMIT(p, fy_enc_ack(p->b, p->s->rec.in_seq));
    return 0;
}

/* The outbox's messages from the next to send (or, for a replay, from the oldest kept), up
 * to the batch limits and the ack window. Both locks held. */
static int pull_messages(fy_pull *p)
{
    const ferry_options *o = &p->l->hub->opt;
    fy_outbox *out = &p->s->out;
    bool replay = p->flags & FERRY_PULL_REPLAY;
    size_t inflight = out->inflight;
    p->seq = p->seq0 = replay ? out->base : out->next_send;
    p->end = fy_outbox_end(out);
    while (p->seq < p->end && p->n < o->max_batch && p->b->len - p->start < o->max_batch_bytes) {
        const fy_msg *m = fy_outbox_at(out, p->seq);
        /* The ack window: stop before the client holds too much it has not acked, so that
         * a client that stops reading never fills the socket and blocks a write. Replays
         * start from the last ack, so only fresh sends count. */
        if (!replay && inflight && inflight + m->len + FY_OUTBOX_OVERHEAD > o->ack_window_bytes) {
            p->blocked = true;
            break;
        }
        EMIT(p, fy_enc_msg(p->b, p->seq, m));
        if (!p->first_born && p->seq > out->high_sent)
            p->first_born = m->born_ns;
        inflight += m->len + FY_OUTBOX_OVERHEAD;
        p->seq++;
    }
    return 0;
}

/* Whether a session's final frame for `why` is a reset (the client must resync), not a
 * close. */
static bool final_is_reset(ferry_reason why)
{
    return why == FERRY_REASON_OVERFLOW || why == FERRY_REASON_EXPIRED ||
           why == FERRY_REASON_FORKED;
}

/* The session's final frame: reset for an end the client must resync from, else close. */
static int pull_final(fy_pull *p)
{
    ferry_reason why = p->l->final_why;
    bool reset = final_is_reset(why);
    EMIT(p, fy_enc_reason(p->b, reset ? "reset" : "close", why, p->s != NULL,
                          p->s ? p->s->rec.in_seq : 0));
    return 0;
}
#undef EMIT

/* publish_to_write (ferry_stats) observes one pulled batch in this many, per link. */
#define FY_PULL_SAMPLE 16

/* Everything was encoded: consume it from the link and the outbox. Both locks held. */
static void pull_commit(fy_pull *p)
{
    ferry_link *l = p->l;
    ferry_session *s = p->s;
    ferry_hub *hub = l->hub;
    if (p->ctl & FY_CTL_WELCOME)
        sodium_memzero(l->secret, sizeof l->secret);
    if (p->ctl & FY_CTL_RESET)
        atomic_fetch_add_explicit(&hub->resets[l->reset.why], 1, memory_order_relaxed);
    if ((p->ctl & FY_CTL_FINAL) && final_is_reset(l->final_why))
        atomic_fetch_add_explicit(&hub->resets[l->final_why], 1, memory_order_relaxed);
    l->ctl &= ~p->ctl;
    if (p->ctl & FY_CTL_ERROR)
        l->nerr = 0;
    l->armed = true;
    if (p->live && !(p->flags & FERRY_PULL_CONTROL)) {
        if (p->seq > p->seq0) {
            fy_outbox_sent(&s->out, p->seq - 1);
            atomic_fetch_add_explicit(&hub->msgs_out, p->seq - p->seq0, memory_order_relaxed);
        }
        /* Sampled: the first of every FY_PULL_SAMPLE batches with new messages that a
         * link pulls, its oldest new message's wait. A clock read per pull costs as much
         * as a fifth of a one-message pull; this costs an increment. */
        if (p->first_born && l->new_batches++ % FY_PULL_SAMPLE == 0) {
            uint64_t now = fy_mono_ns();
            fy_hist_observe(&hub->pub_write, now > p->first_born ? now - p->first_born : 0);
        }
        s->wake_armed = p->seq == p->end;
        if (p->blocked && !s->window_blocked)
            s->blocked_since = fy_hub_now(l->hub);
        s->window_blocked = p->blocked;
    }
}

/* Closes the batch: "]" after frames, "[]" for none when an array was asked for, and a
 * lone frame without its brackets when not. Room for two bytes was reserved. */
static void pull_close_array(fy_pull *p)
{
    ferry_buf *b = p->b;
    bool array = p->flags & FERRY_PULL_ARRAY;
    if (p->n == 0 && !array) {
        b->len = p->start;
    } else if (p->n == 1 && !array) {
        memmove(b->data + p->start, b->data + p->start + 1, b->len - p->start - 1);
        b->len--;
    } else if (p->n == 0) {
        memcpy(b->data + b->len, "[]", 2);
        b->len += 2;
    } else {
        b->data[b->len++] = ']';
    }
}

/* Writes the batch and commits it, or leaves everything as it was. Both locks held. */
static int pull_locked(fy_pull *p)
{
    int rc;
    if ((rc = pull_control(p)))
        return rc;
    if (p->live && !(p->flags & FERRY_PULL_CONTROL) && (rc = pull_messages(p)))
        return rc;
    if ((p->ctl & FY_CTL_FINAL) && (rc = pull_final(p)))
        return rc;
    if ((rc = ferry_buf_reserve(p->b, 2))) /* room for "]" or "[]" */
        return rc;
    pull_commit(p);
    return 0;
}

int ferry_link_pull(ferry_link *l, ferry_buf *b, unsigned flags)
{
    if (!l || !b)
        return FERRY_EINVAL;
    fy_pull p = {.l = l, .b = b, .flags = flags, .start = b->len};
    p.s = lock_bound(l);
    int rc = 0;
    if (l->opening) {
        /* the handshake wakes the transport once on_open has returned: nothing yet */
        rc = (flags & FERRY_PULL_ARRAY) ? ferry_buf_reserve(b, 2) : 0;
    } else {
        p.live = p.s && p.s->link == l;
        p.ctl = l->ctl & ((flags & FERRY_PULL_NO_ERRORS) ? ~(unsigned)FY_CTL_ERROR : ~0u);
        rc = pull_locked(&p);
    }
    pthread_mutex_unlock(&l->lock);
    if (p.s)
        pthread_mutex_unlock(&p.s->lock);
    if (rc) {
        b->len = p.start;
        return rc;
    }
    atomic_fetch_add_explicit(&l->hub->bytes_out, b->len - p.start, memory_order_relaxed);
    pull_close_array(&p);
    return (int)p.n;
}

int ferry_link_done(ferry_link *l)
{
    if (!l)
        return 1;
    pthread_mutex_lock(&l->lock);
    int d = l->done && l->ctl == 0;
    pthread_mutex_unlock(&l->lock);
    return d;
}

void ferry_link_set_transport(ferry_link *l, int transport)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->transport = transport;
    pthread_mutex_unlock(&l->lock);
}

void ferry_link_set_peer(ferry_link *l, const char *peer_addr,
                         const char *(*header)(void *ctx, const char *name), void *ctx)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->peer_addr = peer_addr;
    l->header = header;
    l->header_ctx = ctx;
    pthread_mutex_unlock(&l->lock);
}

ferry_link_end ferry_link_end_reason(ferry_link *l)
{
    if (!l)
        return FERRY_LINK_ENDED;
    pthread_mutex_lock(&l->lock);
    ferry_link_end e = l->done ? (ferry_link_end)l->end : FERRY_LINK_OPEN;
    pthread_mutex_unlock(&l->lock);
    return e;
}

static int record_confirm(fy_rec *r, void *ctx)
{
    (void)ctx;
    return fy_proto_confirm(r);
}

int ferry_link_check_secret(ferry_link *l, const char *secret, size_t len)
{
    if (!l || (!secret && len))
        return FERRY_EINVAL;
    fy_hash presented;
    fy_token_hash_secret(secret, len, &presented);
    ferry_session *s = bound(l);
    if (!s)
        return FERRY_ENOTFOUND;
    int rc = FERRY_ENOTFOUND;
    pthread_mutex_lock(&s->lock);
    if (s->link != l) {
        /* No longer the session's link: it may hold the final frame of a session that
         * ended, which goes only to the holder of the session's secret. */
        bool holder = fy_token_hash_eq(&presented, &s->rec.secret) ||
                      (s->rec.unconfirmed && fy_token_hash_eq(&presented, &s->rec.confirmed));
        rc = holder ? FERRY_ECLOSED : FERRY_ENOTFOUND;
    } else if (fy_token_hash_eq(&presented, &s->rec.secret)) {
        /* The secret is right. If the store cannot record that the client now uses it, the
         * one before keeps working a little longer: the next frame confirms it. */
        if (s->rec.unconfirmed)
            fy_session_update_locked(s, record_confirm, NULL);
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int ferry_link_shutdown(ferry_link *l)
{
    if (!l)
        return FERRY_EINVAL;
    ferry_hub *hub = l->hub;
    ferry_session *s = lock_bound(l);
    bool done = l->done;
    if (!done && (!s || s->link != l)) /* no session, or no longer its session's */
        fy_link_kick_locked(l, FERRY_LINK_RESTART);
    pthread_mutex_unlock(&l->lock);
    if (!done && s && s->link == l) {
        uint64_t now = fy_hub_now(hub);
        if (hub->cluster) /* kept: the client resumes it on another node */
            fy_session_detach_locked(s, now, FERRY_LINK_RESTART);
        else /* the session goes with the process: its close "shutdown" frame is the last */
            fy_session_end_locked(s, FERRY_REASON_SHUTDOWN, now);
    }
    if (s)
        pthread_mutex_unlock(&s->lock);
    fy_hub_drain(hub);
    return done ? FERRY_ECLOSED : FERRY_OK;
}

const char *ferry_link_session_id(ferry_link *l)
{
    if (!l)
        return NULL;
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
