/* fy_rec's stored form (store_redis.h), format 1, integers little-endian:
 *   u8  format (1)
 *   u8  flags: 1 unconfirmed, 2 confirmed_rid set
 *   u64 in_seq
 *   u32 nretired (total ever retired)
 *   u8  end_reason
 *   u8  identity length L, then L bytes (no NUL)
 *   32  secret, 32 confirmed, 32 confirmed_rid
 *   then min(nretired, FY_RETIRED) slots of the retired ring, in slot order:
 *   32  retired hash, u8 rid set, 32 rid hash
 * The version is kept beside it, not in it. */
#include <string.h>

#include "store_redis.h"

static unsigned char *put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static unsigned kept(unsigned nretired)
{
    return nretired < FY_RETIRED ? nretired : FY_RETIRED;
}

size_t fy_rec_encode(const fy_rec *r, unsigned char *buf)
{
    unsigned char *p = buf;
    size_t ilen = strnlen(r->identity, FERRY_IDENTITY_MAX - 1);
    *p++ = FY_REC_FORMAT;
    *p++ = (unsigned char)((r->unconfirmed ? 1 : 0) | (r->confirmed_rid.set ? 2 : 0));
    p = put_le(p, r->in_seq, 8);
    p = put_le(p, r->nretired, 4);
    *p++ = (unsigned char)r->end_reason;
    *p++ = (unsigned char)ilen;
    memcpy(p, r->identity, ilen);
    p += ilen;
    const fy_hash *h[] = {&r->secret, &r->confirmed, &r->confirmed_rid.h};
    for (int i = 0; i < 3; i++, p += FY_HASH_BYTES)
        memcpy(p, h[i]->b, FY_HASH_BYTES);
    for (unsigned i = 0; i < kept(r->nretired); i++) {
        memcpy(p, r->retired[i].b, FY_HASH_BYTES);
        p += FY_HASH_BYTES;
        *p++ = r->retired_rid[i].set;
        memcpy(p, r->retired_rid[i].h.b, FY_HASH_BYTES);
        p += FY_HASH_BYTES;
    }
    return (size_t)(p - buf);
}

bool fy_rec_decode(fy_rec *r, const unsigned char *buf, size_t len)
{
    const size_t head = 2 + 8 + 4 + 1 + 1;
    if (len < head || buf[0] != FY_REC_FORMAT || buf[1] > 3)
        return false;
    memset(r, 0, sizeof *r);
    r->unconfirmed = buf[1] & 1;
    r->confirmed_rid.set = (buf[1] & 2) != 0;
    r->in_seq = get_le(buf + 2, 8);
    r->nretired = (unsigned)get_le(buf + 10, 4);
    r->end_reason = (ferry_reason)buf[14];
    size_t ilen = buf[15];
    if (r->end_reason >= FERRY_REASON_COUNT || ilen >= FERRY_IDENTITY_MAX ||
        len != head + ilen + 3 * FY_HASH_BYTES + kept(r->nretired) * (2 * FY_HASH_BYTES + 1))
        return false;
    const unsigned char *p = buf + head;
    memcpy(r->identity, p, ilen);
    p += ilen;
    fy_hash *h[] = {&r->secret, &r->confirmed, &r->confirmed_rid.h};
    for (int i = 0; i < 3; i++, p += FY_HASH_BYTES)
        memcpy(h[i]->b, p, FY_HASH_BYTES);
    for (unsigned i = 0; i < kept(r->nretired); i++) {
        memcpy(r->retired[i].b, p, FY_HASH_BYTES);
        p += FY_HASH_BYTES;
        if (*p > 1)
            return false;
        r->retired_rid[i].set = *p++;
        memcpy(r->retired_rid[i].h.b, p, FY_HASH_BYTES);
        p += FY_HASH_BYTES;
    }
    return true;
}
