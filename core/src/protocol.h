/* The session protocol, server side (protocol.c): what a link's inbound frames do. */
#ifndef FY_PROTOCOL_H
#define FY_PROTOCOL_H

#include <stddef.h>

#include "ferry_transport.h"
#include "frame.h"
#include "store.h"

/* The client proved it holds the newest secret: the one it proved before is retired.
 * False if it was already confirmed (nothing changed). */
bool fy_proto_confirm(fy_rec *r);

/* Runs a hello or resume frame on a link with no session: the rate limit, on_auth, the
 * resume's checks, or a new session and its on_open. Returns 0 (the welcome, and a reset if
 * a resume failed, are queued) or an error already queued for the peer. No lock held. */
int fy_proto_handshake(ferry_link *l, const fy_frame *f);

/* Runs a decoded batch on a link bound to `s`: validated first (a bad batch changes nothing
 * and gets an error frame), then applied, messages delivered and subscriptions made in
 * order. Returns 0, FERRY_ECLOSED (the link is no longer s's), or the error queued for the
 * peer. No lock held; may run application callbacks. */
int fy_proto_frames(ferry_link *l, ferry_session *s, fy_frame *fs, size_t n);

#endif
