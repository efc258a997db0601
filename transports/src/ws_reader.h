/* RFC 6455 frames from a client, read incrementally: bytes in, frames out. No I/O, no locks,
 * no civetweb; one reader per connection, used by one thread at a time.
 *
 * The reader checks what a frame's header alone can tell: masking (a client's frames must be
 * masked), reserved bits (no extension is negotiated), reserved opcodes, control frames
 * (at most 125 bytes, never fragmented) and the length (minimally encoded, below 2^63). A data frame whose claimed
 * length is over the cap is announced at its header and its payload skipped unread, never
 * buffered. What needs more than one frame (fragment order, reassembly, UTF-8 of a whole
 * message) is the caller's. */
#ifndef FY_WS_READER_H
#define FY_WS_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry_transport.h" /* ferry_buf */

#define FY_WSR_FIN 0x80

typedef struct fy_wsr {
    ferry_buf part;          /* payload of a frame split across feeds, unmasked so far */
    uint64_t left;           /* payload bytes of the current frame still to come */
    unsigned char hdr[14];   /* the current frame's header (its mask included) */
    unsigned char hlen;      /* bytes in hdr */
    unsigned char bits;      /* the current frame's FIN bit and opcode */
    unsigned char state;     /* internal */
    unsigned char mpos;      /* the mask's phase at the next payload byte */
} fy_wsr;

/* One frame. `bits` is FY_WSR_FIN | opcode; `data` the unmasked payload of `len` bytes,
 * valid and writable during the call only. For a data frame (opcode 0, 1 or 2) claiming
 * more than the cap, `data` is NULL and `len` the claimed length; it is called at the
 * header, and the payload is then skipped. Returns 0 to go on; anything else stops the
 * feed, which returns it. */
typedef int (*fy_wsr_frame_fn)(void *ud, int bits, char *data, uint64_t len);

/* An empty reader (zeroing it does the same). */
void fy_wsr_init(fy_wsr *r);

/* Frees what the reader holds; it is empty again. */
void fy_wsr_free(fy_wsr *r);

/* Reads `len` bytes of the client's stream, which it unmasks in place, and calls `fn` for
 * each complete frame, in order. A frame's payload is handed over without a copy when the
 * whole of it is in one feed, else gathered (at most `cap` bytes, or 125 for a control
 * frame). Returns:
 *   0                   every byte was consumed (the last frame may be incomplete)
 *   what `fn` returned  when it returned non-zero: the bytes after that frame are unread
 *   FY_WSR_PROTOCOL     the stream breaks RFC 6455 (*why says how; close with 1002)
 *   FY_WSR_NOMEM        out of memory gathering a split frame (close with 1011)
 * After a non-zero return the reader must not be fed again. `why` may be NULL. */
enum { FY_WSR_PROTOCOL = -1002, FY_WSR_NOMEM = -1011 };
int fy_wsr_feed(fy_wsr *r, char *data, size_t len, size_t cap, fy_wsr_frame_fn fn, void *ud,
                const char **why);

/* True if `len` bytes at `s` are well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
bool fy_utf8_valid(const char *s, size_t len);

#endif
