#include <string.h>

#include "helpers.h"
#include "session.h"

START_TEST(publish_encodes_once_and_shares_the_message)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c[3];
    ferry_session *s[3];
    for (int i = 0; i < 3; i++) {
        c[i] = fc_hello(hub, NULL, NULL);
        s[i] = app.last_session;
        ck_assert_int_eq(ferry_session_subscribe(s[i], "match/1"), 0);
        ck_assert_int_eq(ferry_session_subscribe(s[i], "match/1"), 0); /* idempotent */
    }
    size_t queued;
    const char *ev = "{\"goal\":\"home\",\"min\":12}";
    ck_assert_int_eq(ferry_hub_publish(hub, "match/1", ev, strlen(ev), &queued), 0);
    ck_assert_uint_eq(queued, 3);
    fy_msg *m = fy_outbox_at(&s[0]->out, 1);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_eq(fy_outbox_at(&s[1]->out, 1), m);
    ck_assert_ptr_eq(fy_outbox_at(&s[2]->out, 1), m);
    ck_assert_uint_eq(atomic_load(&m->refs), 3);
    for (int i = 0; i < 3; i++) {
        json_t *f = fc_drain(c[i]);
        json_t *msg = frame_of(f, "msg", 0);
        ck_assert_str_eq(str_of(msg, "topic"), "match/1");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(msg, "data"), "min")), 12);
        json_decref(f);
    }
    ck_assert_int_eq(ferry_hub_publish(hub, "match/2", ev, strlen(ev), &queued), 0);
    ck_assert_uint_eq(queued, 0);
    for (int i = 0; i < 3; i++)
        fc_close(c[i]);
    hub_free(hub);
}
END_TEST

START_TEST(unsubscribe_and_ended_sessions_stop_delivery)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, NULL, NULL);
    ferry_session *sa = app.last_session;
    fake_conn *b = fc_hello(hub, NULL, NULL);
    ferry_session *sb = app.last_session;
    ferry_session_subscribe(sa, "t");
    ferry_session_subscribe(sb, "t");
    ferry_session_subscribe(sb, "u");
    ck_assert_int_eq(ferry_session_unsubscribe(sa, "t"), 0);
    ck_assert_int_eq(ferry_session_unsubscribe(sa, "never"), 0);
    size_t queued;
    ck_assert_int_eq(ferry_hub_publish(hub, "t", "1", 1, &queued), 0);
    ck_assert_uint_eq(queued, 1);
    ck_assert_int_eq(fc_send(b, "{\"t\":\"close\"}"), 0);
    ck_assert_int_eq(ferry_hub_publish(hub, "t", "1", 1, &queued), 0);
    ck_assert_uint_eq(queued, 0);
    ck_assert_int_eq(ferry_hub_publish(hub, "u", "1", 1, &queued), 0);
    ck_assert_uint_eq(queued, 0);
    ck_assert_int_eq(ferry_session_subscribe(sb, "t"), FERRY_ECLOSED);
    fc_close(a);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(bad_topics_and_payloads_are_refused)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, NULL, NULL);
    ferry_session *s = app.last_session;
    char long_name[200];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(ferry_session_subscribe(s, ""), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, "a b"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, "a\"b"), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, long_name), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, NULL), FERRY_EINVAL);
    ck_assert_int_eq(ferry_session_subscribe(s, "ok:topic/1.2-x_y"), 0);
    size_t queued = 99;
    ck_assert_int_eq(ferry_hub_publish(hub, "ok:topic/1.2-x_y", "{", 1, &queued), FERRY_EJSON);
    ck_assert_uint_eq(queued, 0);
    ck_assert_int_eq(ferry_hub_publish(hub, "bad topic", "1", 1, NULL), FERRY_EINVAL);
    ck_assert_uint_eq(s->out.count, 0);
    fc_close(a);
    hub_free(hub);
}
END_TEST

START_TEST(send_by_session_id)
{
    char sid[32];
    ferry_hub *hub = hub_new(NULL);
    fake_conn *a = fc_hello(hub, sid, NULL);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "[1,2]", 5), 0);
    ck_assert_int_eq(ferry_hub_send(hub, "AAAAAAAAAAAAAAAAAAAAAA", "1", 1), FERRY_ENOTFOUND);
    ck_assert_int_eq(ferry_hub_send(hub, "", "1", 1), FERRY_ENOTFOUND);
    json_t *f = fc_drain(a);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(frame_of(f, "msg", 0), "data"), 1)), 2);
    json_decref(f);
    ferry_session_close(app.last_session);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "1", 1), FERRY_ECLOSED);
    fc_close(a);
    hub_free(hub);
}
END_TEST

START_TEST(clients_subscribe_where_the_application_allows)
{
    ferry_hub *hub = hub_new(NULL);
    fake_conn *c = fc_hello(hub, NULL, NULL);
    ck_assert_int_eq(fc_send(c, "[{\"t\":\"sub\",\"topic\":\"public/a\"},"
                                "{\"t\":\"msg\",\"seq\":1,\"data\":1},"
                                "{\"t\":\"sub\",\"topic\":\"secret/x\"}]"),
                     0);
    ck_assert_int_eq(app.messages, 1);
    json_t *f = fc_drain(c);
    ck_assert_str_eq(str_of(frame_of(f, "error", 0), "code"), "forbidden");
    json_decref(f);
    size_t q;
    ferry_hub_publish(hub, "public/a", "1", 1, &q);
    ck_assert_uint_eq(q, 1);
    ferry_hub_publish(hub, "secret/x", "1", 1, &q);
    ck_assert_uint_eq(q, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"unsub\",\"topic\":\"public/a\"}"), 0);
    ferry_hub_publish(hub, "public/a", "1", 1, &q);
    ck_assert_uint_eq(q, 0);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"sub\",\"topic\":\"no spaces\"}"), FERRY_EFIELD);
    fc_close(c);
    hub_free(hub);
}
END_TEST

Suite *topic_suite(void)
{
    Suite *s = suite_create("topic");
    TCase *tc = tcase_create("topic");
    tcase_add_test(tc, publish_encodes_once_and_shares_the_message);
    tcase_add_test(tc, unsubscribe_and_ended_sessions_stop_delivery);
    tcase_add_test(tc, bad_topics_and_payloads_are_refused);
    tcase_add_test(tc, send_by_session_id);
    tcase_add_test(tc, clients_subscribe_where_the_application_allows);
    suite_add_tcase(s, tc);
    return s;
}
