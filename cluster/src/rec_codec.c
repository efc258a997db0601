/* fy_rec's stored form (store_redis.h), format 3, integers little-endian:
 *   u8  format (3)
 *   u8  flags: 1 unconfirmed, 2 confirmed_rid set, 4 has_key
 *   u64 in_seq, u64 in_pend
 *   u32 nretired (total ever retired)
 *   u8  end_reason
 *   u8  identity length L, then L bytes (no NUL)
 *   u8  owner length O, then O bytes (no NUL)
 *   32  secret, 32 confirmed, 32 confirmed_rid, 32 key (zeros when it has none)
 *   then min(nretired, FY_RETIRED) slots of the retired ring, in slot order:
 *   32  retired hash, u8 rid set, 32 rid hash
 * The version and the cursor are kept beside it, not in it.
 *
 * Format 2 is format 3 without the key (and without flag 4), as stored before sessions had
 * a rotation key. It is still read, as a record with no key: the key is made by the
 * session's next rotation and saved with it, in the same compare-and-set, so every node
 * derives with the one that won. Records are always written in format 3.
 *
 * The subscriptions' stored form (fy_subs_rec), format 1:
 *   u8 format (1), u64 horizon ms, u64 horizon n, u8 count, then per subscription:
 *   u8 topic length T, T bytes, u64 from ms, u64 from n, u64 until ms, u64 until n */
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
    *p++ = (unsigned char)((r->unconfirmed ? 1 : 0) | (r->confirmed_rid.set ? 2 : 0) |
                           (r->has_key ? 4 : 0));
    p = put_le(p, r->in_seq, 8);
    p = put_le(p, r->in_pend, 8);
    p = put_le(p, r->nretired, 4);
    *p++ = (unsigned char)r->end_reason;
    *p++ = (unsigned char)ilen;
    memcpy(p, r->identity, ilen);
    p += ilen;
    size_t olen = strnlen(r->owner, FY_NODE_MAX - 1);
    *p++ = (unsigned char)olen;
    memcpy(p, r->owner, olen);
    p += olen;
    const fy_hash *h[] = {&r->secret, &r->confirmed, &r->confirmed_rid.h};
    for (int i = 0; i < 3; i++, p += FY_HASH_BYTES)
        memcpy(p, h[i]->b, FY_HASH_BYTES);
    if (r->has_key)
        memcpy(p, r->key, FY_KEY_BYTES);
    else
        memset(p, 0, FY_KEY_BYTES);
    p += FY_KEY_BYTES;
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
    const size_t head = 2 + 8 + 8 + 4 + 1 + 1;
    if (len < head || (buf[0] != FY_REC_FORMAT && buf[0] != 2))
        return false;
    bool keyed = buf[0] == FY_REC_FORMAT; /* format 2 has no key (see above) */
    size_t keylen = keyed ? FY_KEY_BYTES : 0;
    if (buf[1] > (keyed ? 7 : 3))
        return false;
    memset(r, 0, sizeof *r);
    r->unconfirmed = buf[1] & 1;
    r->confirmed_rid.set = (buf[1] & 2) != 0;
    r->has_key = (buf[1] & 4) != 0;
    r->in_seq = get_le(buf + 2, 8);
    r->in_pend = get_le(buf + 10, 8);
    r->nretired = (unsigned)get_le(buf + 18, 4);
    r->end_reason = (ferry_reason)buf[22];
    size_t ilen = buf[23];
    if (r->end_reason >= FERRY_REASON_COUNT || ilen >= FERRY_IDENTITY_MAX || len < head + ilen + 1)
        return false;
    size_t olen = buf[head + ilen];
    if (olen >= FY_NODE_MAX ||
        len != head + ilen + 1 + olen + 3 * FY_HASH_BYTES + keylen +
                   kept(r->nretired) * (2 * FY_HASH_BYTES + 1))
        return false;
    const unsigned char *p = buf + head;
    memcpy(r->identity, p, ilen);
    p += ilen + 1;
    memcpy(r->owner, p, olen);
    p += olen;
    fy_hash *h[] = {&r->secret, &r->confirmed, &r->confirmed_rid.h};
    for (int i = 0; i < 3; i++, p += FY_HASH_BYTES)
        memcpy(h[i]->b, p, FY_HASH_BYTES);
    if (r->has_key)
        memcpy(r->key, p, FY_KEY_BYTES);
    p += keylen;
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

size_t fy_subs_encode(const fy_subs_rec *r, unsigned char *buf)
{
    unsigned char *p = buf;
    *p++ = 1;
    p = put_le(p, r->horizon.ms, 8);
    p = put_le(p, r->horizon.n, 8);
    *p++ = (unsigned char)r->n;
    for (size_t i = 0; i < r->n; i++) {
        const fy_sub_rec *e = &r->e[i];
        size_t tlen = strnlen(e->topic, sizeof e->topic - 1);
        *p++ = (unsigned char)tlen;
        memcpy(p, e->topic, tlen);
        p += tlen;
        const uint64_t v[] = {e->from.ms, e->from.n, e->until.ms, e->until.n};
        for (int j = 0; j < 4; j++)
            p = put_le(p, v[j], 8);
    }
    return (size_t)(p - buf);
}

bool fy_subs_decode(fy_subs_rec *r, const unsigned char *buf, size_t len)
{
    memset(r, 0, sizeof *r);
    if (len < 18 || buf[0] != 1 || buf[17] > FY_SUBS_MAX)
        return false;
    r->horizon = (fy_pos){get_le(buf + 1, 8), get_le(buf + 9, 8)};
    r->n = buf[17];
    const unsigned char *p = buf + 18, *end = buf + len;
    for (size_t i = 0; i < r->n; i++) {
        fy_sub_rec *e = &r->e[i];
        size_t tlen = p < end ? *p++ : 0;
        if (tlen == 0 || tlen >= sizeof e->topic || (size_t)(end - p) < tlen + 32)
            return false;
        memcpy(e->topic, p, tlen);
        p += tlen;
        e->from = (fy_pos){get_le(p, 8), get_le(p + 8, 8)};
        e->until = (fy_pos){get_le(p + 16, 8), get_le(p + 24, 8)};
        p += 32;
    }
    return p == end;
}
