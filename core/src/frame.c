#include "frame.h"

#include "hub.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fy_json_scan(const char *buf, size_t len, size_t max_depth, size_t max_elements)
{
    size_t depth = 0, seps = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return FERRY_EDEPTH;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        } else if ((c == ',' || c == ':') && ++seps > max_elements) {
            return FERRY_ETOOBIG;
        }
    }
    return 0;
}

static int fail(fy_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    err->limit = -1;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

/* The field must be an integer in [min, FY_SEQ_MAX]. */
static int get_uint(json_t *obj, const char *key, uint64_t min, uint64_t *out, size_t idx,
                    fy_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
        (uint64_t)json_integer_value(v) > FY_SEQ_MAX)
        return fail(err, FERRY_EFIELD,
                    "frame %zu: \"%s\" must be an integer from %" PRIu64 " to 2^53-1", idx,
                    key, min);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_str(json_t *obj, const char *key, const char **s, size_t *len, size_t idx,
                   fy_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return fail(err, FERRY_EFIELD, "frame %zu: \"%s\" must be a string", idx, key);
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

/* The optional credential of a handshake. */
static int get_token(json_t *obj, const char **token, size_t idx, fy_err *err)
{
    json_t *v = json_object_get(obj, "token");
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) != strlen(json_string_value(v)))
        return fail(err, FERRY_EFIELD, "frame %zu: \"token\" must be a string", idx);
    *token = json_string_value(v);
    return 0;
}

/* The optional attempt ID of a resume: 16 to 64 printable ASCII characters. */
static int get_rid(json_t *obj, fy_frame *f, size_t idx, fy_err *err)
{
    json_t *v = json_object_get(obj, "rid");
    if (!v)
        return 0;
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    size_t len = json_is_string(v) ? json_string_length(v) : 0;
    bool ok = len >= 16 && len <= 64;
    for (size_t i = 0; ok && i < len; i++)
        ok = s[i] > 0x20 && s[i] < 0x7f;
    if (!ok)
        return fail(err, FERRY_EFIELD,
                    "frame %zu: \"rid\" must be 16 to 64 printable ASCII characters", idx);
    f->rid = s;
    f->rid_len = len;
    return 0;
}

static int check_version(json_t *obj, size_t idx, fy_err *err)
{
    uint64_t v = 0;
    int rc = get_uint(obj, "v", 1, &v, idx, err);
    if (rc)
        return rc;
    if (v != FERRY_PROTOCOL_VERSION)
        return fail(err, FERRY_EVERSION, "protocol version %" PRIu64 " not supported (1 is)",
                    v);
    return 0;
}

static const struct {
    const char *name;
    fy_ftype type;
} frame_types[] = {
    {"hello", FY_F_HELLO}, {"resume", FY_F_RESUME}, {"msg", FY_F_MSG},   {"ack", FY_F_ACK},
    {"ping", FY_F_PING},   {"pong", FY_F_PONG},     {"close", FY_F_CLOSE},
    {"sub", FY_F_SUB},     {"unsub", FY_F_UNSUB},
};

static int decode_one(json_t *obj, size_t idx, fy_frame *f, fy_err *err)
{
    if (!json_is_object(obj))
        return fail(err, FERRY_EFIELD, "frame %zu: not an object", idx);
    json_t *t = json_object_get(obj, "t");
    if (!json_is_string(t))
        return fail(err, FERRY_EFIELD, "frame %zu: \"t\" must be a string", idx);
    const char *name = json_string_value(t);
    size_t i = 0, ntypes = sizeof frame_types / sizeof frame_types[0];
    while (i < ntypes && strcmp(frame_types[i].name, name) != 0)
        i++;
    if (i == ntypes || strlen(name) != json_string_length(t))
        return fail(err, FERRY_EFRAMETYPE, "frame %zu: unknown type \"%.32s\"", idx, name);

    memset(f, 0, sizeof *f);
    f->type = frame_types[i].type;
    int rc = 0;
    switch (f->type) {
    case FY_F_HELLO:
        if ((rc = check_version(obj, idx, err)) == 0)
            rc = get_token(obj, &f->token, idx, err);
        break;
    case FY_F_RESUME:
        if ((rc = check_version(obj, idx, err)) || (rc = get_token(obj, &f->token, idx, err)) ||
            (rc = get_str(obj, "sid", &f->sid, &f->sid_len, idx, err)) ||
            (rc = get_str(obj, "secret", &f->secret, &f->secret_len, idx, err)) ||
            (rc = get_rid(obj, f, idx, err)))
            break;
        rc = get_uint(obj, "ack", 0, &f->ack, idx, err);
        break;
    case FY_F_MSG:
        if ((rc = get_uint(obj, "seq", 1, &f->seq, idx, err)))
            break;
        f->data = json_object_get(obj, "data");
        if (!f->data)
            rc = fail(err, FERRY_EFIELD, "frame %zu: \"data\" is missing", idx);
        break;
    case FY_F_ACK:
        rc = get_uint(obj, "ack", 0, &f->ack, idx, err);
        break;
    case FY_F_SUB:
    case FY_F_UNSUB: {
        size_t tl;
        if ((rc = get_str(obj, "topic", &f->topic, &tl, idx, err)))
            break;
        if (!fy_topic_name_ok(f->topic) || strlen(f->topic) != tl)
            rc = fail(err, FERRY_EFIELD,
                      "frame %zu: \"topic\" must be 1 to 128 of [A-Za-z0-9_.:/-]", idx);
        break;
    }
    case FY_F_PING:
    case FY_F_PONG:
    case FY_F_CLOSE:
        break;
    }
    return rc;
}

bool fy_json_out_of_memory(const json_error_t *jerr)
{
    return jerr->text[0] == '\0' || json_error_code(jerr) == json_error_out_of_memory;
}

/* Maps a jansson failure to a wire error. Well-formed JSON that jansson cannot hold (an
 * integer outside int64, a number beyond a double, \u0000 in a key) is a value out of
 * range, bad_field, not bad_json (docs/PROTOCOL.md, Encoding). */
static int parse_error(const json_error_t *jerr, fy_err *err)
{
    if (fy_json_out_of_memory(jerr))
        return fail(err, FERRY_ENOMEM, "out of memory");
    switch (json_error_code(jerr)) {
    case json_error_duplicate_key:
        return fail(err, FERRY_EDUPKEY, "%s at byte %d", jerr->text, jerr->position);
    case json_error_numeric_overflow:
        return fail(err, FERRY_EFIELD, "number out of range at byte %d", jerr->position);
    case json_error_null_byte_in_key:
        return fail(err, FERRY_EFIELD, "object key with \\u0000 at byte %d", jerr->position);
    default:
        return fail(err, FERRY_EJSON, "%s at byte %d", jerr->text, jerr->position);
    }
}

int fy_frame_decode(const char *buf, size_t len, const fy_limits *lim, json_t **root,
                    fy_frame **frames, size_t *n, fy_err *err)
{
    int rc;
    json_error_t jerr;
    *root = NULL;
    *frames = NULL;
    *n = 0;
    if (len > lim->max_bytes) {
        fail(err, FERRY_ETOOBIG, "frame is %zu bytes; the limit is %zu", len, lim->max_bytes);
        err->limit = FERRY_LIMIT_FRAME_SIZE;
        return err->code;
    }
    rc = fy_json_scan(buf, len, lim->max_depth, lim->max_elements);
    if (rc) {
        if (rc == FERRY_EDEPTH)
            fail(err, rc, "JSON nested deeper than %zu", lim->max_depth);
        else
            fail(err, rc, "more than %zu keys and values", lim->max_elements);
        err->limit = rc == FERRY_EDEPTH ? FERRY_LIMIT_DEPTH : FERRY_LIMIT_ELEMENTS;
        return rc;
    }

    /* \u0000 is allowed in strings (protocol string fields refuse it one by one). */
    json_t *tree = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!tree)
        return parse_error(&jerr, err);

    size_t count = 1;
    if (json_is_array(tree)) {
        count = json_array_size(tree);
        if (count == 0) {
            json_decref(tree);
            return fail(err, FERRY_EFIELD, "empty batch");
        }
        if (count > lim->max_batch) {
            json_decref(tree);
            fail(err, FERRY_ETOOBIG, "batch of %zu frames; the limit is %zu", count,
                 lim->max_batch);
            err->limit = FERRY_LIMIT_BATCH;
            return err->code;
        }
    }
    fy_frame *fs = calloc(count, sizeof *fs);
    if (!fs) {
        json_decref(tree);
        return fail(err, FERRY_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        json_t *obj = json_is_array(tree) ? json_array_get(tree, i) : tree;
        rc = decode_one(obj, i, &fs[i], err);
        if (rc) {
            free(fs);
            json_decref(tree);
            return rc;
        }
    }
    *root = tree;
    *frames = fs;
    *n = count;
    return 0;
}

const char *fy_wire_code(int err)
{
    switch (err) {
    case FERRY_ETOOBIG: return "too_big";
    case FERRY_EJSON: return "bad_json";
    case FERRY_EDEPTH: return "too_deep";
    case FERRY_EDUPKEY: return "duplicate_key";
    case FERRY_EFIELD: return "bad_field";
    case FERRY_EFRAMETYPE: return "unknown_type";
    case FERRY_EVERSION: return "bad_version";
    case FERRY_EHANDSHAKE: return "handshake";
    case FERRY_EACK: return "bad_ack";
    case FERRY_ESEQ: return "seq_gap";
    case FERRY_ECAPACITY: return "capacity";
    case FERRY_EFORBIDDEN: return "forbidden";
    case FERRY_EAUTH: return "unauthorized";
    case FERRY_ERATE: return "rate_limited";
    /* only in a transport's own HTTP answers (ferry_answer_encode) */
    case FERRY_ENOTFOUND: return "unknown_session";
    case FERRY_ANSWER_ORIGIN: return "origin";
    default: return "internal";
    }
}

int fy_enc_welcome(ferry_buf *b, const char *sid, const char *secret, bool resumed,
                   uint64_t ack, const ferry_options *o)
{
    return ferry_buf_printf(b,
                   "{\"t\":\"welcome\",\"v\":%d,\"sid\":\"%s\",\"secret\":\"%s\","
                   "\"resumed\":%s,\"ack\":%" PRIu64 ",\"hb\":%" PRIu32 ",\"timeout\":%" PRIu32
                   ",\"window\":%" PRIu32 ",\"max_frame\":%zu,\"max_batch\":%zu,"
                   "\"ack_bytes\":%zu}",
                   FERRY_PROTOCOL_VERSION, sid, secret, resumed ? "true" : "false", ack,
                   o->heartbeat_ms, o->heartbeat_timeout_ms, o->resume_window_ms,
                   o->max_frame_bytes, o->max_batch, o->ack_window_bytes);
}

int fy_enc_reason(ferry_buf *b, const char *type, ferry_reason why, bool has_ack, uint64_t ack)
{
    if (!has_ack)
        return ferry_buf_printf(b, "{\"t\":\"%s\",\"reason\":\"%s\"}", type, ferry_reason_str(why));
    return ferry_buf_printf(b, "{\"t\":\"%s\",\"reason\":\"%s\",\"ack\":%" PRIu64 "}", type,
                         ferry_reason_str(why), ack);
}

int fy_enc_ack(ferry_buf *b, uint64_t ack)
{
    return ferry_buf_printf(b, "{\"t\":\"ack\",\"ack\":%" PRIu64 "}", ack);
}

int fy_enc_bare(ferry_buf *b, const char *type)
{
    return ferry_buf_printf(b, "{\"t\":\"%s\"}", type);
}

int fy_enc_msg(ferry_buf *b, uint64_t seq, const fy_msg *m)
{
    char head[48];
    int hl = snprintf(head, sizeof head, "{\"t\":\"msg\",\"seq\":%" PRIu64 ",", seq);
    if (ferry_buf_reserve(b, (size_t)hl + m->len + 1))
        return FERRY_ENOMEM;
    memcpy(b->data + b->len, head, (size_t)hl);
    memcpy(b->data + b->len + hl, m->body, m->len);
    b->len += (size_t)hl + m->len;
    b->data[b->len++] = '}';
    return 0;
}

int fy_enc_error(ferry_buf *b, int code, const char *text)
{
    /* The text may quote peer input: keep printable ASCII and let jansson escape it. */
    char clean[sizeof ((fy_err *)0)->text];
    size_t i = 0;
    for (; text && text[i] && i < sizeof clean - 1; i++)
        clean[i] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
    clean[i] = '\0';
    json_t *o = json_pack("{s:s, s:s, s:s}", "t", "error", "code", fy_wire_code(code), "text",
                          clean);
    if (!o)
        return FERRY_ENOMEM;
    size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT);
    int rc = FERRY_ENOMEM;
    /* Each dump allocates (jansson's loop check): the second can fail where the first did
     * not, and then writes nothing. */
    if (need && ferry_buf_reserve(b, need) == 0 &&
        json_dumpb(o, b->data + b->len, need, JSON_COMPACT) == need) {
        b->len += need;
        rc = 0;
    }
    json_decref(o);
    return rc;
}
