#include <string.h>

#include "helpers.h"
#include "token.h"

START_TEST(ids_are_canonical_and_distinct)
{
    char a[FY_ID_LEN + 1], b[FY_ID_LEN + 1];
    ck_assert_int_eq(fy_token_init(), 0);
    fy_token_new_id(a);
    fy_token_new_id(b);
    ck_assert_uint_eq(strlen(a), FY_ID_LEN);
    ck_assert_str_ne(a, b);
    ck_assert(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
              FY_ID_LEN);
    ck_assert(fy_token_id_valid(a, strlen(a)));
}
END_TEST

START_TEST(forged_and_truncated_ids_are_invalid)
{
    char id[FY_ID_LEN + 1], bad[FY_ID_LEN + 2];
    fy_token_init();
    fy_token_new_id(id);
    ck_assert(!fy_token_id_valid(id, FY_ID_LEN - 1));        /* truncated */
    ck_assert(!fy_token_id_valid("", 0));
    ck_assert(!fy_token_id_valid(NULL, 0));
    memcpy(bad, id, FY_ID_LEN + 1);
    bad[5] = '+';                                              /* not base64url */
    ck_assert(!fy_token_id_valid(bad, FY_ID_LEN));
    memcpy(bad, id, FY_ID_LEN);
    bad[FY_ID_LEN] = 'A';                                      /* too long */
    ck_assert(!fy_token_id_valid(bad, FY_ID_LEN + 1));
    /* 16 bytes leave 4 unused bits in the last character; only zero bits are canonical. */
    memcpy(bad, id, FY_ID_LEN + 1);
    bad[FY_ID_LEN - 1] = 'B';
    ck_assert(!fy_token_id_valid(bad, FY_ID_LEN));
}
END_TEST

START_TEST(secret_hash_matches_only_its_secret)
{
    char s1[FY_SECRET_LEN + 1], s2[FY_SECRET_LEN + 1];
    fy_hash h1, h2, p;
    fy_token_init();
    fy_token_new_secret(s1, &h1);
    fy_token_new_secret(s2, &h2);
    ck_assert_uint_eq(strlen(s1), FY_SECRET_LEN);
    fy_token_hash_secret(s1, strlen(s1), &p);
    ck_assert(fy_token_hash_eq(&p, &h1));
    ck_assert(!fy_token_hash_eq(&p, &h2));
    fy_token_hash_secret(s1, strlen(s1) - 1, &p);             /* truncated */
    ck_assert(!fy_token_hash_eq(&p, &h1));
    s1[0] = s1[0] == 'A' ? 'B' : 'A';                          /* one character off */
    fy_token_hash_secret(s1, strlen(s1), &p);
    ck_assert(!fy_token_hash_eq(&p, &h1));
    fy_token_hash_secret(NULL, 0, &p);
    ck_assert(!fy_token_hash_eq(&p, &h1));
}
END_TEST

/* A resume's next secret: spelled like a random one, the same for the same secret, attempt
 * ID and key, and different when any of them differs. */
START_TEST(a_next_secret_is_derived_from_the_secret_the_rid_and_the_key)
{
    uint8_t k1[FY_KEY_BYTES], k2[FY_KEY_BYTES];
    char s[FY_SECRET_LEN + 1], a[FY_SECRET_LEN + 1], b[FY_SECRET_LEN + 1];
    fy_hash h, ha, hb, p;
    const char *rid = "a6Vq3m0Xr9Tz1LpK2wYb8Q";
    fy_token_init();
    fy_token_new_key(k1);
    fy_token_new_key(k2);
    ck_assert(memcmp(k1, k2, FY_KEY_BYTES) != 0);
    fy_token_new_secret(s, &h);
    ck_assert_int_eq(fy_token_next_secret(k1, s, strlen(s), rid, strlen(rid), a, &ha), 0);
    ck_assert_uint_eq(strlen(a), FY_SECRET_LEN);
    ck_assert(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
              FY_SECRET_LEN);
    fy_token_hash_secret(a, strlen(a), &p); /* canonical: the server can check it later */
    ck_assert(fy_token_hash_eq(&p, &ha));
    ck_assert_str_ne(a, s);
    ck_assert_int_eq(fy_token_next_secret(k1, s, strlen(s), rid, strlen(rid), b, &hb), 0);
    ck_assert_str_eq(a, b); /* the same attempt: the same secret */
    ck_assert(fy_token_hash_eq(&ha, &hb));
    ck_assert_int_eq(fy_token_next_secret(k1, s, strlen(s), rid, strlen(rid) - 1, b, &hb), 0);
    ck_assert_str_ne(a, b); /* another attempt ID */
    ck_assert_int_eq(fy_token_next_secret(k1, s, strlen(s), NULL, 0, b, &hb), 0);
    ck_assert_str_ne(a, b); /* none */
    ck_assert_int_eq(fy_token_next_secret(k2, s, strlen(s), rid, strlen(rid), b, &hb), 0);
    ck_assert_str_ne(a, b); /* another session's key */
    char t[FY_SECRET_LEN + 1];
    memcpy(t, s, sizeof t);
    t[0] = t[0] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(fy_token_next_secret(k1, t, strlen(t), rid, strlen(rid), b, &hb), 0);
    ck_assert_str_ne(a, b); /* another secret */
    ck_assert_int_eq(fy_token_next_secret(k1, s, strlen(s) - 1, rid, strlen(rid), b, &hb), -1);
    ck_assert_int_eq(fy_token_next_secret(k1, NULL, 0, rid, strlen(rid), b, &hb), -1);
}
END_TEST

Suite *token_suite(void)
{
    Suite *s = suite_create("token");
    TCase *tc = tcase_create("token");
    tcase_add_test(tc, ids_are_canonical_and_distinct);
    tcase_add_test(tc, forged_and_truncated_ids_are_invalid);
    tcase_add_test(tc, secret_hash_matches_only_its_secret);
    tcase_add_test(tc, a_next_secret_is_derived_from_the_secret_the_rid_and_the_key);
    suite_add_tcase(s, tc);
    return s;
}
