#include "token.h"

#include <sodium.h>
#include <string.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

int fy_token_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

static void to_b64(char *out, size_t outlen, const uint8_t *bin, size_t n)
{
    sodium_bin2base64(out, outlen, bin, n, B64);
}

void fy_token_new_id(char out[FY_ID_LEN + 1])
{
    uint8_t raw[FY_ID_BYTES];
    randombytes_buf(raw, sizeof raw);
    to_b64(out, FY_ID_LEN + 1, raw, sizeof raw);
}

static void hash_raw(const uint8_t *raw, size_t n, fy_hash *h)
{
    crypto_generichash(h->b, sizeof h->b, raw, n, NULL, 0);
}

void fy_token_new_secret(char out[FY_SECRET_LEN + 1], fy_hash *h)
{
    uint8_t raw[FY_SECRET_BYTES];
    randombytes_buf(raw, sizeof raw);
    to_b64(out, FY_SECRET_LEN + 1, raw, sizeof raw);
    hash_raw(raw, sizeof raw, h);
    sodium_memzero(raw, sizeof raw);
}

/* Decodes exactly `want` bytes from a canonical spelling of exactly the right length. */
static bool decode_exact(const char *s, size_t len, uint8_t *bin, size_t want, size_t wantlen)
{
    size_t got = 0;
    const char *end = NULL;
    if (len != wantlen)
        return false;
    if (sodium_base642bin(bin, want, s, len, NULL, &got, &end, B64) != 0)
        return false;
    return got == want && end == s + len;
}

void fy_token_new_key(uint8_t key[FY_KEY_BYTES])
{
    randombytes_buf(key, FY_KEY_BYTES);
}

int fy_token_next_secret(const uint8_t key[FY_KEY_BYTES], const char *presented, size_t len,
                         const char *rid, size_t rid_len, char out[FY_SECRET_LEN + 1],
                         fy_hash *h)
{
    uint8_t raw[FY_SECRET_BYTES], next[FY_SECRET_BYTES];
    crypto_generichash_state st;
    if (!presented || !decode_exact(presented, len, raw, sizeof raw, FY_SECRET_LEN))
        return -1;
    /* The presented secret has a fixed length, so secret || rid is unambiguous. */
    crypto_generichash_init(&st, key, FY_KEY_BYTES, sizeof next);
    crypto_generichash_update(&st, raw, sizeof raw);
    if (rid && rid_len)
        crypto_generichash_update(&st, (const unsigned char *)rid, rid_len);
    crypto_generichash_final(&st, next, sizeof next);
    to_b64(out, FY_SECRET_LEN + 1, next, sizeof next);
    hash_raw(next, sizeof next, h);
    sodium_memzero(&st, sizeof st);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(next, sizeof next);
    return 0;
}

bool fy_token_id_valid(const char *s, size_t len)
{
    uint8_t raw[FY_ID_BYTES];
    return s && decode_exact(s, len, raw, sizeof raw, FY_ID_LEN);
}

void fy_token_hash_secret(const char *s, size_t len, fy_hash *h)
{
    uint8_t raw[FY_SECRET_BYTES];
    bool ok = s && decode_exact(s, len, raw, sizeof raw, FY_SECRET_LEN);
    if (!ok)
        randombytes_buf(raw, sizeof raw); /* hashes to a value no stored hash equals */
    hash_raw(raw, sizeof raw, h);
    sodium_memzero(raw, sizeof raw);
}

bool fy_token_hash_eq(const fy_hash *a, const fy_hash *b)
{
    return sodium_memcmp(a->b, b->b, FY_HASH_BYTES) == 0;
}
