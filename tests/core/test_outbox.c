#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "outbox.h"

static fy_msg *msg(const char *json)
{
    fy_msg *m;
    ck_assert_int_eq(fy_msg_new(&m, NULL, json, strlen(json), 8, 4096), 0);
    return m;
}

START_TEST(push_ack_release_in_order)
{
    fy_outbox o;
    fy_outbox_init(&o, 100, 1 << 20);
    fy_msg *shared = msg("1");
    for (int i = 0; i < 20; i++) {
        fy_msg_ref_n(shared, 1);
        ck_assert_int_eq(fy_outbox_push(&o, shared), 0);
    }
    ck_assert_uint_eq(atomic_load(&shared->refs), 21);
    ck_assert_uint_eq(fy_outbox_end(&o), 21);
    ck_assert_int_eq(fy_outbox_ack(&o, 1), FERRY_EACK); /* nothing sent yet */
    fy_outbox_sent(&o, 10);
    ck_assert_int_eq(fy_outbox_ack(&o, 11), FERRY_EACK);
    ck_assert_int_eq(fy_outbox_ack(&o, 7), 0);
    ck_assert_uint_eq(o.base, 8);
    ck_assert_uint_eq(o.count, 13);
    ck_assert_uint_eq(atomic_load(&shared->refs), 14);
    ck_assert_int_eq(fy_outbox_ack(&o, 3), 0); /* stale ack: ignored */
    ck_assert_uint_eq(o.base, 8);
    ck_assert_ptr_null(fy_outbox_at(&o, 7));
    ck_assert_ptr_eq(fy_outbox_at(&o, 8), shared);
    ck_assert_ptr_null(fy_outbox_at(&o, 21));
    fy_outbox_clear(&o);
    ck_assert_uint_eq(atomic_load(&shared->refs), 1);
    ck_assert_uint_eq(fy_outbox_end(&o), 21); /* seqs carry on */
    fy_msg_unref(shared);
}
END_TEST

START_TEST(bounded_by_count_and_bytes)
{
    fy_outbox o;
    fy_msg *m = msg("\"0123456789\"");
    fy_outbox_init(&o, 3, 1 << 20);
    for (int i = 0; i < 3; i++) {
        fy_msg_ref_n(m, 1);
        ck_assert_int_eq(fy_outbox_push(&o, m), 0);
    }
    ck_assert_int_eq(fy_outbox_push(&o, m), FERRY_EFULL);
    fy_outbox_clear(&o);

    size_t cost = m->len + FY_OUTBOX_OVERHEAD;
    fy_outbox_init(&o, 100, cost * 2 + cost / 2);
    for (int i = 0; i < 2; i++) {
        fy_msg_ref_n(m, 1);
        ck_assert_int_eq(fy_outbox_push(&o, m), 0);
    }
    ck_assert_int_eq(fy_outbox_push(&o, m), FERRY_EFULL);
    ck_assert_uint_eq(o.bytes, cost * 2);
    fy_outbox_sent(&o, 1);
    ck_assert_int_eq(fy_outbox_ack(&o, 1), 0);
    ck_assert_uint_eq(o.bytes, cost);
    fy_msg_ref_n(m, 1);
    ck_assert_int_eq(fy_outbox_push(&o, m), 0);
    fy_outbox_clear(&o);
    fy_msg_unref(m);
}
END_TEST

START_TEST(ring_wraps_and_grows_keeping_order)
{
    fy_outbox o;
    fy_msg *m[64];
    fy_outbox_init(&o, 64, 1 << 20);
    uint64_t acked = 0;
    /* Interleave pushes and acks so head wraps before every growth. */
    for (int i = 0; i < 64; i++) {
        char text[16];
        snprintf(text, sizeof text, "%d", i);
        m[i] = msg(text);
        fy_msg_ref_n(m[i], 1);
        ck_assert_int_eq(fy_outbox_push(&o, m[i]), 0);
        if (i % 3 == 2) {
            fy_outbox_sent(&o, acked + 1);
            ck_assert_int_eq(fy_outbox_ack(&o, ++acked), 0);
        }
    }
    for (uint64_t seq = acked + 1; seq <= 64; seq++)
        ck_assert_ptr_eq(fy_outbox_at(&o, seq), m[seq - 1]);
    fy_outbox_sent(&o, 64);
    ck_assert_int_eq(fy_outbox_rewind(&o, 40), 0);
    ck_assert_uint_eq(o.next_send, 41);
    ck_assert_int_eq(fy_outbox_rewind(&o, 65), FERRY_EACK);
    fy_outbox_clear(&o);
    for (int i = 0; i < 64; i++) {
        ck_assert_uint_eq(atomic_load(&m[i]->refs), 1);
        fy_msg_unref(m[i]);
    }
}
END_TEST

Suite *outbox_suite(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("outbox");
    tcase_add_test(tc, push_ack_release_in_order);
    tcase_add_test(tc, bounded_by_count_and_bytes);
    tcase_add_test(tc, ring_wraps_and_grows_keeping_order);
    suite_add_tcase(s, tc);
    return s;
}
