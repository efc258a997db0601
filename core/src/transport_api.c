/* The hooks ferry_transport.h gives transports beyond links: the hub's clock, limit
 * counting, token buckets, answers without a link, logging. Transports reach the core only
 * through these and the link calls, never through core/src headers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "hub.h"
#include "log.h"

uint64_t ferry_hub_now(ferry_hub *hub)
{
    return hub ? fy_hub_now(hub) : 0;
}

void ferry_hub_count_limit(ferry_hub *hub, ferry_limit l)
{
    if (hub && (unsigned)l < FERRY_LIMIT_COUNT)
        fy_hub_limit(hub, l);
}

/* The tokens `b` holds at `now`, capped at `burst`. */
static double bucket_level(const ferry_bucket *b, unsigned burst, unsigned rate, uint64_t now)
{
    double t = b->tokens + (double)(now > b->at ? now - b->at : 0) * rate / 1000.0;
    return t > burst ? burst : t;
}

void ferry_bucket_init(ferry_bucket *b, unsigned burst, uint64_t now)
{
    if (!b)
        return;
    b->tokens = burst;
    b->at = now;
}

int ferry_bucket_take(ferry_bucket *b, unsigned burst, unsigned rate, uint64_t now)
{
    if (!b)
        return 0;
    b->tokens = bucket_level(b, burst, rate, now);
    b->at = now;
    if (b->tokens < 1.0)
        return 0;
    b->tokens -= 1.0;
    return 1;
}

int ferry_bucket_full(const ferry_bucket *b, unsigned burst, unsigned rate, uint64_t now)
{
    if (!b)
        return 1;
    return bucket_level(b, burst, rate, now) >= burst;
}

int ferry_answer_encode(ferry_buf *b, int code, const char *text)
{
    bool wire = code == FERRY_OK || code == FERRY_ENOMEM ||
                strcmp(fy_wire_code(code), "internal") != 0;
    if (!b || !wire)
        return FERRY_EINVAL;
    if (code == FERRY_OK)
        return ferry_buf_printf(b, "[]");
    size_t start = b->len;
    int rc = ferry_buf_printf(b, "[");
    if (rc == 0)
        rc = fy_enc_error(b, code, text ? text : ferry_strerror(code));
    if (rc == 0)
        rc = ferry_buf_printf(b, "]");
    if (rc)
        b->len = start;
    return rc;
}

void ferry_log(ferry_log_level level, const char *fmt, ...)
{
    /* One byte over fy_log's limit, so that it sees a cut line as too long and marks it. */
    char msg[FY_LOG_MAX + 1];
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n >= 0)
        fy_log(level, "%s", msg);
}

const char *ferry_log_quote(char *dst, size_t cap, const char *s, size_t max)
{
    if (!dst)
        return NULL;
    return fy_log_quote(dst, cap, s, max);
}

int ferry_options_check(const ferry_options *o, const char *caller, const char *prefix)
{
    if (!o || !caller || !prefix)
        return FERRY_EINVAL;
    ferry_options full;
    if (fy_options_load(&full, o, caller))
        return FERRY_EINVAL;
    return fy_options_check(&full, caller, prefix);
}
