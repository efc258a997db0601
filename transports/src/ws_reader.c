#include <string.h>

#include "ws_reader.h"

enum { ST_HEADER = 0, ST_PAYLOAD, ST_SKIP };

void fy_wsr_init(fy_wsr *r)
{
    memset(r, 0, sizeof *r);
}

void fy_wsr_free(fy_wsr *r)
{
    ferry_buf_release(&r->part);
    fy_wsr_init(r);
}

static void unmask(char *p, size_t n, const unsigned char *mask, unsigned phase)
{
    unsigned char *u = (unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        u[i] ^= mask[(phase + i) & 3];
}

/* The header's total size once its first two bytes are in. */
static size_t header_size(const unsigned char *h)
{
    unsigned n = h[1] & 0x7F;
    return 2 + (n == 126 ? 2 : n == 127 ? 8 : 0) + 4;
}

/* What the first two bytes alone break, or NULL: checked as soon as they are in, so that a
 * short bad frame is refused without waiting for bytes that may never come. */
static const char *check_start(const unsigned char *h)
{
    int op = h[0] & 0x0F;
    if (h[0] & 0x70)
        return "reserved bits set";
    if ((op >= 3 && op <= 7) || op >= 0xB)
        return "reserved opcode";
    if (!(h[1] & 0x80))
        return "unmasked client frame";
    if (op & 0x8) {
        if (!(h[0] & 0x80))
            return "fragmented control frame";
        if ((h[1] & 0x7F) > 125)
            return "control frame over 125 bytes";
    }
    return NULL;
}

/* The payload length of a complete header, or why it is refused. */
static const char *read_length(const unsigned char *h, uint64_t *len)
{
    uint64_t n = h[1] & 0x7F;
    if (n == 126) {
        n = (uint64_t)h[2] << 8 | h[3];
        if (n < 126)
            return "length not minimally encoded";
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | h[2 + i];
        if (n >> 63)
            return "length over 2^63";
        if (n <= 0xFFFF)
            return "length not minimally encoded";
    }
    *len = n;
    return NULL;
}

/* Takes header bytes. Returns 0 (more to come, or a frame begun), a frame callback's
 * non-zero answer, or FY_WSR_PROTOCOL. */
static int take_header(fy_wsr *r, char **data, size_t *len, size_t cap,
                       fy_wsr_frame_fn fn, void *ud, const char **why)
{
    size_t need = r->hlen < 2 ? 2 : header_size(r->hdr);
    size_t n = need - r->hlen < *len ? need - r->hlen : *len;
    memcpy(r->hdr + r->hlen, *data, n);
    r->hlen = (unsigned char)(r->hlen + n);
    *data += n;
    *len -= n;
    if (r->hlen == 2 && n > 0 && (*why = check_start(r->hdr)) != NULL)
        return FY_WSR_PROTOCOL;
    if (r->hlen < 2 || r->hlen < header_size(r->hdr))
        return 0;
    uint64_t plen;
    if ((*why = read_length(r->hdr, &plen)) != NULL)
        return FY_WSR_PROTOCOL;
    r->bits = r->hdr[0] & (FY_WSR_FIN | 0x0F);
    r->left = plen;
    r->mpos = 0;
    r->hlen = 0;
    if ((r->bits & 0x0F) <= 2 && plen > cap) {
        r->state = ST_SKIP;
        return fn(ud, r->bits, NULL, plen);
    }
    if (plen == 0)
        return fn(ud, r->bits, (char *)r->hdr, 0);
    r->state = ST_PAYLOAD;
    return 0;
}

/* Takes payload bytes; calls fn once the frame is whole. Returns 0, fn's non-zero answer,
 * or FY_WSR_NOMEM. */
static int take_payload(fy_wsr *r, char **data, size_t *len, fy_wsr_frame_fn fn, void *ud,
                        const char **why)
{
    /* hdr keeps the frame's header until the next one begins */
    const unsigned char *mask = r->hdr + header_size(r->hdr) - 4;
    size_t n = r->left < *len ? (size_t)r->left : *len;
    char *payload = *data;
    if (r->part.len == 0 && n == r->left) {
        unmask(payload, n, mask, 0); /* the whole payload is here: unmask it where it lies */
    } else {
        /* Grown as bytes come: a client that trickles a frame holds only what it sent. */
        if (ferry_buf_reserve(&r->part, n)) {
            *why = "out of memory";
            return FY_WSR_NOMEM;
        }
        memcpy(r->part.data + r->part.len, *data, n);
        unmask(r->part.data + r->part.len, n, mask, r->mpos);
        r->part.len += n;
        r->mpos = (unsigned char)((r->mpos + n) & 3);
        payload = r->part.data;
    }
    *data += n;
    *len -= n;
    r->left -= n;
    if (r->left > 0)
        return 0;
    r->state = ST_HEADER;
    size_t plen = payload == r->part.data ? r->part.len : n;
    int rc = fn(ud, r->bits, payload, plen);
    if (payload == r->part.data)
        ferry_buf_release(&r->part); /* split frames are rare: hold nothing between them */
    return rc;
}

int fy_wsr_feed(fy_wsr *r, char *data, size_t len, size_t cap, fy_wsr_frame_fn fn, void *ud,
                const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    while (len > 0) {
        int rc = 0;
        if (r->state == ST_HEADER) {
            rc = take_header(r, &data, &len, cap, fn, ud, why);
        } else if (r->state == ST_SKIP) {
            size_t n = r->left < len ? (size_t)r->left : len;
            data += n;
            len -= n;
            r->left -= n;
            if (r->left == 0)
                r->state = ST_HEADER;
        } else {
            rc = take_payload(r, &data, &len, fn, ud, why);
        }
        if (rc)
            return rc;
    }
    return 0;
}

bool fy_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0)
                lo = 0xA0; /* overlong below U+0800 */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0)
                lo = 0x90; /* overlong below U+10000 */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return false;
        }
        if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
            return false;
        for (size_t i = 2; i < n; i++)
            if ((p[i] & 0xC0) != 0x80)
                return false;
        p += n;
    }
    return true;
}
