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

Suite *token_suite(void)
{
    Suite *s = suite_create("token");
    TCase *tc = tcase_create("token");
    tcase_add_test(tc, ids_are_canonical_and_distinct);
    tcase_add_test(tc, forged_and_truncated_ids_are_invalid);
    tcase_add_test(tc, secret_hash_matches_only_its_secret);
    suite_add_tcase(s, tc);
    return s;
}
