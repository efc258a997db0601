#include "msg.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "frame.h"
#include "hist.h"

int fy_msg_new(fy_msg **out, const char *topic, const char *json, size_t len, size_t max_depth,
               size_t max_bytes)
{
    json_error_t jerr;
    if (!json)
        return FERRY_EINVAL;
    /* Topic names are restricted (hub.c) so they need no escaping here. */
    size_t tlen = topic ? strlen(topic) : 0;
    size_t body = len + sizeof "\"data\":" - 1 + (topic ? tlen + sizeof "\"topic\":\"\"," - 1 : 0);
    if (body > max_bytes)
        return FERRY_ETOOBIG;
    int rc = fy_json_scan(json, len, max_depth, (size_t)-1);
    if (rc)
        return rc;
    json_t *v = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        return fy_json_out_of_memory(&jerr) ? FERRY_ENOMEM : FERRY_EJSON;
    json_decref(v);

    fy_msg *m = malloc(sizeof *m + body);
    if (!m)
        return FERRY_ENOMEM;
    atomic_init(&m->refs, 1);
    m->pos_ms = m->pos_n = 0;
    m->born_ns = fy_mono_ns();
    char *p = m->body;
    if (topic) {
        memcpy(p, "\"topic\":\"", 9);
        memcpy(p + 9, topic, tlen);
        memcpy(p + 9 + tlen, "\",", 2);
        p += 11 + tlen;
    }
    memcpy(p, "\"data\":", 7);
    memcpy(p + 7, json, len);
    m->len = body;
    *out = m;
    return 0;
}

fy_msg *fy_msg_from_body(const char *body, size_t len)
{
    fy_msg *m = malloc(sizeof *m + len);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->pos_ms = m->pos_n = 0;
    m->born_ns = fy_mono_ns();
    memcpy(m->body, body, len);
    m->len = len;
    return m;
}

void fy_msg_unref_n(fy_msg *m, size_t n)
{
    if (n && atomic_fetch_sub_explicit(&m->refs, n, memory_order_acq_rel) == n)
        free(m);
}
