/* The wire codec: the only code that knows frame field names (docs/PROTOCOL.md). Decoding
 * checks size and nesting before jansson sees the text, rejects duplicate keys, and checks
 * every field's type and range; each failure is a ferry_error plus text for the peer. */
#ifndef FY_FRAME_H
#define FY_FRAME_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ferry_transport.h"
#include "msg.h"

#define FY_SEQ_MAX ((uint64_t)9007199254740991) /* 2^53 - 1: exact in every JSON peer */

typedef enum fy_ftype {
    FY_F_HELLO,
    FY_F_RESUME,
    FY_F_MSG,
    FY_F_ACK,
    FY_F_PING,
    FY_F_PONG,
    FY_F_CLOSE,
    FY_F_SUB,
    FY_F_UNSUB,
} fy_ftype;

/* A decoded client frame. Strings and data are borrowed from the tree they were parsed from. */
typedef struct fy_frame {
    fy_ftype type;
    uint64_t seq;        /* msg */
    uint64_t ack;        /* ack, resume */
    const char *sid;     /* resume */
    size_t sid_len;
    const char *secret;  /* resume */
    size_t secret_len;
    json_t *data;        /* msg */
    const char *topic;   /* sub, unsub */
    const char *token;   /* hello, resume: optional */
    const char *rid;     /* resume: optional attempt ID, NULL if absent */
    size_t rid_len;
} fy_frame;

typedef struct fy_limits {
    size_t max_bytes;
    size_t max_depth;
    size_t max_batch;
    size_t max_elements;
} fy_limits;

typedef struct fy_err {
    int code;        /* a ferry_error */
    int limit;       /* the ferry_limit it hit, or -1 */
    char text[160];  /* for the peer; may quote (escaped) input */
} fy_err;

/* Checks nesting depth and the number of values without parsing: 0, FERRY_EDEPTH, or
 * FERRY_ETOOBIG for more than max_elements separators (commas and colons: an upper bound on
 * keys plus array items). Bytes inside strings are skipped, so it is exact for well-formed
 * JSON and harmless for the rest (jansson rejects it later). */
int fy_json_scan(const char *buf, size_t len, size_t max_depth, size_t max_elements);

/* True if a json_loadb that returned NULL failed for memory. jansson's loader returns NULL
 * without setting `jerr` (text empty, its code byte left as it was) when one of its own
 * allocations fails, so the code alone cannot be trusted. Not every such failure shows:
 * when the lexer cannot allocate a string, jansson reports a syntax error instead. */
bool fy_json_out_of_memory(const json_error_t *jerr);

/* Decodes one frame object or a non-empty array of them. On success returns 0, stores the
 * tree in *root (the caller json_decrefs it) and a malloc'd array of *n frames in *frames
 * (the caller frees it). On failure returns the error, fills *err and owns nothing. */
int fy_frame_decode(const char *buf, size_t len, const fy_limits *lim, json_t **root,
                    fy_frame **frames, size_t *n, fy_err *err);

/* The wire string of an error code ("bad_json", ...); "internal" for codes peers never see. */
const char *fy_wire_code(int err);

/* Encoders: each appends one frame to `b` and returns 0 or FERRY_ENOMEM (then `b` is left as
 * it was). */
int fy_enc_welcome(ferry_buf *b, const char *sid, const char *secret, bool resumed,
                   uint64_t ack, const ferry_options *o);
/* reset, close; `ack` (the last client seq the session delivered) only if has_ack */
int fy_enc_reason(ferry_buf *b, const char *type, ferry_reason why, bool has_ack, uint64_t ack);
int fy_enc_ack(ferry_buf *b, uint64_t ack);
int fy_enc_bare(ferry_buf *b, const char *type);                    /* ping, pong */
int fy_enc_msg(ferry_buf *b, uint64_t seq, const fy_msg *m);
int fy_enc_error(ferry_buf *b, int code, const char *text);

#endif
