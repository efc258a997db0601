/* A transport connection's link: its handshake state, its pending control frames, and the
 * session it is bound to. Fields are protected by `lock`; `s` is written once, at the
 * handshake. */
#ifndef FY_LINK_H
#define FY_LINK_H

#include <pthread.h>
#include <stdbool.h>

#include "ferry_transport.h"
#include "token.h"

enum {
    FY_CTL_RESET = 1u << 0,   /* a resume failed: reset frame, then the new session's welcome */
    FY_CTL_WELCOME = 1u << 1,
    FY_CTL_PONG = 1u << 2,
    FY_CTL_PING = 1u << 3,
    FY_CTL_ACK = 1u << 4,
    FY_CTL_ERROR = 1u << 5,   /* err[0..nerr) */
    FY_CTL_FINAL = 1u << 6,   /* the session ended: reset or close frame, then done */
};

/* Why a new session replaces the one a resume named, and (when the server still remembers
 * that one and the resume proved its secret) the last client seq it delivered. */
typedef struct {
    ferry_reason why;
    bool has_ack;
    uint64_t ack;
} fy_reset;

#define FY_LINK_MAX_ERRORS 4

struct ferry_link {
    ferry_hub *hub;
    const ferry_link_ops *ops;
    void *ud;
    pthread_mutex_t lock;
    ferry_session *s;          /* bound at the handshake; the link holds a reference */
    bool done;                 /* the transport should close after writing what it pulled */
    int end;                   /* why it is done: a ferry_link_end */
    bool armed;                /* pulled everything: wake on the next control frame */
    bool opening;              /* on_open/on_reset is running: pull nothing until it returns */
    unsigned ctl;
    fy_reset reset;            /* FY_CTL_RESET */
    ferry_reason final_why;    /* FY_CTL_FINAL */
    bool resumed;              /* FY_CTL_WELCOME */
    uint64_t welcome_ack;
    char secret[FY_SECRET_LEN + 1]; /* plaintext until the welcome is pulled, then wiped */
    int transport;             /* FERRY_TRANSPORT_* */
    unsigned new_batches;      /* pulled batches with new messages (publish_to_write) */
    const char *peer_addr;     /* ferry_link_set_peer */
    const char *(*header)(void *ctx, const char *name);
    void *header_ctx;
    size_t nerr;
    struct {
        int code;
        char text[160];
    } err[FY_LINK_MAX_ERRORS];
};

/* Queues an error frame for the peer; returns `code`. A non-zero `end` (a ferry_link_end)
 * also ends the link after the frame. No lock held. */
int fy_link_peer_error(ferry_link *l, int code, const char *text, int end);

/* Queues control frames and wakes the transport if it was idle. l->lock held. */
void fy_link_ctl_locked(ferry_link *l, unsigned ctl);

/* Gives the link its final frame and marks it done; kicks the transport. l->lock held. */
void fy_link_finish_locked(ferry_link *l, ferry_reason why);

/* Marks the link done for `why` (a ferry_link_end), drops its pending control frames and
 * kicks the transport. No-op if already done. l->lock held. */
void fy_link_kick_locked(ferry_link *l, int why);

#endif
