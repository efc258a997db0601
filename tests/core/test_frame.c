#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "helpers.h"

static const fy_limits lim = {.max_bytes = 1024, .max_depth = 8, .max_batch = 4, .max_elements = 64};

static int decode(const char *text, fy_err *err)
{
    json_t *root;
    fy_frame *fs;
    size_t n;
    int rc = fy_frame_decode(text, strlen(text), &lim, &root, &fs, &n, err);
    if (rc == 0) {
        free(fs);
        json_decref(root);
    }
    return rc;
}

START_TEST(decodes_every_frame_type)
{
    json_t *root;
    fy_frame *fs;
    size_t n;
    fy_err err;
    const char *text = "[{\"t\":\"msg\",\"seq\":7,\"data\":{\"a\":[1,2]}},{\"t\":\"ack\",\"ack\":3},"
                       "{\"t\":\"ping\"},{\"t\":\"close\"}]";
    ck_assert_int_eq(fy_frame_decode(text, strlen(text), &lim, &root, &fs, &n, &err), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(fs[0].type, FY_F_MSG);
    ck_assert_uint_eq(fs[0].seq, 7);
    ck_assert(json_is_object(fs[0].data));
    ck_assert_int_eq(fs[1].type, FY_F_ACK);
    ck_assert_uint_eq(fs[1].ack, 3);
    ck_assert_int_eq(fs[2].type, FY_F_PING);
    ck_assert_int_eq(fs[3].type, FY_F_CLOSE);
    free(fs);
    json_decref(root);

    text = "{\"t\":\"resume\",\"v\":1,\"sid\":\"abc\",\"secret\":\"xyz\",\"ack\":0,\"extra\":true}";
    ck_assert_int_eq(fy_frame_decode(text, strlen(text), &lim, &root, &fs, &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fs[0].type, FY_F_RESUME);
    ck_assert_str_eq(fs[0].sid, "abc");
    ck_assert_uint_eq(fs[0].secret_len, 3);
    free(fs);
    json_decref(root);
}
END_TEST

static const struct {
    const char *text;
    int code;
} bad[] = {
    {"", FERRY_EJSON},
    {"{\"t\":\"ping\"", FERRY_EJSON},
    {"{\"t\":\"ping\"} x", FERRY_EJSON},
    {"\"ping\"", FERRY_EJSON},
    {"42", FERRY_EJSON},
    {"{\"t\":\"ping\",\"t\":\"pong\"}", FERRY_EDUPKEY},
    {"{\"t\":\"msg\",\"seq\":1,\"data\":{\"k\":1,\"k\":2}}", FERRY_EDUPKEY},
    {"{\"t\":\"msg\",\"seq\":1,\"data\":[[[[[[[[1]]]]]]]]}", FERRY_EDEPTH},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", FERRY_EDEPTH},
    {"{\"t\":\"msg\",\"seq\":1,\"data\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
     "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}", FERRY_ETOOBIG},
    {"{\"t\":\"fly\"}", FERRY_EFRAMETYPE},
    {"{\"t\":\"pi\\u0000ng\"}", FERRY_EFRAMETYPE},
    {"{\"t\":7}", FERRY_EFIELD},
    {"{}", FERRY_EFIELD},
    {"[]", FERRY_EFIELD},
    {"[{\"t\":\"ping\"},{\"t\":\"ping\"},{\"t\":\"ping\"},{\"t\":\"ping\"},{\"t\":\"ping\"}]",
     FERRY_ETOOBIG},
    {"[{\"t\":\"ping\"},3]", FERRY_EFIELD},
    {"{\"t\":\"hello\"}", FERRY_EFIELD},
    {"{\"t\":\"hello\",\"v\":2}", FERRY_EVERSION},
    {"{\"t\":\"hello\",\"v\":\"1\"}", FERRY_EFIELD},
    {"{\"t\":\"msg\",\"seq\":0,\"data\":1}", FERRY_EFIELD},
    {"{\"t\":\"msg\",\"seq\":-3,\"data\":1}", FERRY_EFIELD},
    {"{\"t\":\"msg\",\"seq\":1.5,\"data\":1}", FERRY_EFIELD},
    {"{\"t\":\"msg\",\"seq\":\"1\",\"data\":1}", FERRY_EFIELD},
    {"{\"t\":\"msg\",\"seq\":9007199254740992,\"data\":1}", FERRY_EFIELD},
    {"{\"t\":\"msg\",\"seq\":99999999999999999999999,\"data\":1}", FERRY_EFIELD},
    {"{\"t\":\"msg\",\"seq\":1}", FERRY_EFIELD},
    {"{\"t\":\"ack\",\"ack\":null}", FERRY_EFIELD},
    {"{\"t\":\"ack\"}", FERRY_EFIELD},
    {"{\"t\":\"resume\",\"v\":1,\"sid\":5,\"secret\":\"x\",\"ack\":0}", FERRY_EFIELD},
    {"{\"t\":\"resume\",\"v\":1,\"sid\":\"a\",\"ack\":0}", FERRY_EFIELD},
    {"{\"t\":\"resume\",\"v\":1,\"sid\":\"a\",\"secret\":\"b\"}", FERRY_EFIELD},
    {"{\"t\":\"ping\",\"x\":\"\xff\xfe\"}", FERRY_EJSON},
    {"{\"t\":\"sub\"}", FERRY_EFIELD},
    {"{\"t\":\"hello\",\"v\":1,\"token\":7}", FERRY_EFIELD},
    {"{\"t\":\"hello\",\"v\":1,\"token\":\"a\\u0000b\"}", FERRY_EFIELD},
    {"{\"t\":\"sub\",\"topic\":\"a b\"}", FERRY_EFIELD},
    {"{\"t\":\"unsub\",\"topic\":\"\"}", FERRY_EFIELD},
    {"{\"t\":\"sub\",\"topic\":\"a\\u0000b\"}", FERRY_EFIELD},
};

START_TEST(rejects_bad_input_with_its_code)
{
    fy_err err;
    int rc = decode(bad[_i].text, &err);
    ck_assert_msg(rc == bad[_i].code, "case %d <%s>: got %d (%s), want %d", _i, bad[_i].text, rc,
                  err.text, bad[_i].code);
    ck_assert_int_eq(err.code, rc);
    ck_assert_uint_gt(strlen(err.text), 0);
}
END_TEST

START_TEST(size_is_checked_before_parsing)
{
    fy_err err;
    char *big = malloc(lim.max_bytes + 2);
    memset(big, ' ', lim.max_bytes + 1);
    big[lim.max_bytes + 1] = '\0';
    ck_assert_int_eq(decode(big, &err), FERRY_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.text, "limit"));
    free(big);
}
END_TEST

START_TEST(depth_scan_ignores_brackets_in_strings)
{
    ck_assert_int_eq(fy_json_scan("[\"[[[[[[[[[[[\\\"[[[[\"]", 20, 2, 10), 0);
    ck_assert_int_eq(fy_json_scan("[[[", 3, 2, 10), FERRY_EDEPTH);
    ck_assert_int_eq(fy_json_scan("[\",,,,:::\",1]", 14, 2, 1), 0); /* inside a string */
    ck_assert_int_eq(fy_json_scan("[1,2,3]", 7, 2, 1), FERRY_ETOOBIG);
}
END_TEST

START_TEST(error_frames_escape_peer_text)
{
    ferry_buf b = {0};
    json_error_t jerr;
    ck_assert_int_eq(fy_enc_error(&b, FERRY_EJSON, "near '\"}\\\x01\xff'"), 0);
    json_t *v = json_loadb(b.data, b.len, 0, &jerr);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(json_string_value(json_object_get(v, "code")), "bad_json");
    ck_assert_str_eq(json_string_value(json_object_get(v, "text")), "near '\"}\\?" "?'");
    json_decref(v);
    ferry_buf_release(&b);
}
END_TEST

START_TEST(every_wire_error_has_a_code_and_text)
{
    for (int e = FERRY_ETOOBIG; e >= FERRY_EAUTH; e--) {
        if (e == FERRY_ECLOSED || e == FERRY_ENOTFOUND || e == FERRY_EFULL)
            continue; /* not wire errors */
        ck_assert_str_ne(fy_wire_code(e), "internal");
        ck_assert_str_ne(ferry_strerror(e), "unknown error");
    }
    ck_assert_str_eq(fy_wire_code(FERRY_ENOMEM), "internal");
    ck_assert_str_eq(ferry_strerror(12345), "unknown error");
}
END_TEST

/* jansson leaves json_error_t unset when one of its allocations fails: an empty text is
 * that, whatever its code byte holds; a set error is what it says, even numeric overflow. */
START_TEST(a_jansson_error_without_text_is_out_of_memory)
{
    json_error_t e;
    memset(&e, json_error_numeric_overflow, sizeof e);
    e.text[0] = '\0';
    ck_assert(fy_json_out_of_memory(&e));

    const char *texts[] = {"{", "[1e999]", "", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        memset(&e, 0, sizeof e);
        json_t *v = json_loadb(texts[i], strlen(texts[i]), JSON_REJECT_DUPLICATES, &e);
        ck_assert_ptr_null(v);
        ck_assert_msg(!fy_json_out_of_memory(&e), "%s", texts[i]);
    }
}
END_TEST

START_TEST(message_bodies_are_encoded_once_with_topic)
{
    fy_msg *m;
    ferry_buf b = {0};
    json_error_t jerr;
    ck_assert_int_eq(fy_msg_new(&m, "scores/1", "{\"goal\":2}", 10, 8, 1024), 0);
    ck_assert_int_eq(fy_enc_msg(&b, 42, m), 0);
    json_t *v = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(int_of(v, "seq"), 42);
    ck_assert_str_eq(str_of(v, "topic"), "scores/1");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(v, "data"), "goal")), 2);
    json_decref(v);
    fy_msg_unref(m);
    ferry_buf_release(&b);

    ck_assert_int_eq(fy_msg_new(&m, NULL, "{\"a\":1", 6, 8, 1024), FERRY_EJSON);
    ck_assert_int_eq(fy_msg_new(&m, NULL, "[[[1]]]", 7, 2, 1024), FERRY_EDEPTH);
    ck_assert_int_eq(fy_msg_new(&m, NULL, "\"0123456789\"", 12, 2, 8), FERRY_ETOOBIG);
    ck_assert_int_eq(fy_msg_new(&m, NULL, "{\"a\":1,\"a\":2}", 13, 2, 1024), FERRY_EJSON);
}
END_TEST

Suite *frame_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("frame");
    tcase_add_test(tc, decodes_every_frame_type);
    tcase_add_loop_test(tc, rejects_bad_input_with_its_code, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, size_is_checked_before_parsing);
    tcase_add_test(tc, depth_scan_ignores_brackets_in_strings);
    tcase_add_test(tc, error_frames_escape_peer_text);
    tcase_add_test(tc, every_wire_error_has_a_code_and_text);
    tcase_add_test(tc, message_bodies_are_encoded_once_with_topic);
    tcase_add_test(tc, a_jansson_error_without_text_is_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}
