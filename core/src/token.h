/* Session IDs and resume secrets, spelled base64url without padding. IDs and secrets are
 * random bytes from libsodium, but for a resume with an attempt ID, whose secret is derived
 * from the one presented (fy_token_next_secret). The server keeps only a BLAKE2b hash of
 * each secret. */
#ifndef FY_TOKEN_H
#define FY_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FY_ID_BYTES 16      /* 128-bit session ID */
#define FY_ID_LEN 22        /* its base64url spelling */
#define FY_SECRET_BYTES 32  /* 256-bit resume secret */
#define FY_SECRET_LEN 43
#define FY_HASH_BYTES 32
#define FY_KEY_BYTES 32     /* a session's rotation key */

typedef struct fy_hash {
    uint8_t b[FY_HASH_BYTES];
} fy_hash;

/* Initializes libsodium; safe to call repeatedly. Returns 0, or -1 if it cannot start. */
int fy_token_init(void);

void fy_token_new_id(char out[FY_ID_LEN + 1]);

/* A fresh secret for the client, and the hash the server keeps of it. */
void fy_token_new_secret(char out[FY_SECRET_LEN + 1], fy_hash *h);

/* A session's rotation key: random, kept with its record, never sent or logged. */
void fy_token_new_key(uint8_t key[FY_KEY_BYTES]);

/* The secret that follows `presented` (`len` bytes, a well-formed secret) for the attempt
 * ID `rid` (`rid_len` bytes; NULL or empty for none): BLAKE2b keyed with
 * the session's rotation key over the presented secret's bytes and the attempt ID, spelled
 * like fy_token_new_secret's, and the hash the server keeps of it. The same inputs give
 * the same secret, so a retry of one attempt is handed the secret its first try was; one
 * who lacks the key cannot compute it. Returns 0, or -1 (nothing written) if `presented`
 * is not a well-formed secret. */
int fy_token_next_secret(const uint8_t key[FY_KEY_BYTES], const char *presented, size_t len,
                         const char *rid, size_t rid_len, char out[FY_SECRET_LEN + 1],
                         fy_hash *h);

/* True if `s` (`len` bytes) is the canonical spelling of a session ID. */
bool fy_token_id_valid(const char *s, size_t len);

/* Hashes a presented secret. A malformed one (wrong length, bad characters, non-canonical)
 * still takes the same path and yields a hash that matches nothing, so callers answer a
 * bad secret and a wrong one identically. */
void fy_token_hash_secret(const char *s, size_t len, fy_hash *h);

/* Constant-time comparison. */
bool fy_token_hash_eq(const fy_hash *a, const fy_hash *b);

#endif
