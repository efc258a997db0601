/* The Origin policy, and the log line that makes a refused Origin visible. */
#include <string.h>
#include <strings.h>

#include "mount.h"

/* Is `origin` (scheme://host[:port]) in the comma-separated list? */
static bool in_list(const char *list, const char *origin)
{
    size_t olen = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        if ((size_t)(end - p) == olen && strncasecmp(p, origin, olen) == 0)
            return true;
        p = end;
    }
    return false;
}

static bool origin_ok(const ferry_mount *m, const struct mg_connection *conn)
{
    const char *origin = mg_get_header(conn, "Origin");
    if (!origin)
        return true; /* not a browser: nothing to protect against cross-site use */
    if (m->origins && strcmp(m->origins, "*") == 0)
        return true;
    if (m->origins && *m->origins)
        return in_list(m->origins, origin);
    /* Same origin: the Origin's host[:port] equals the Host header. */
    const char *host = mg_get_header(conn, "Host");
    const char *sep = strstr(origin, "://");
    return host && sep && strcasecmp(sep + 3, host) == 0;
}

bool fy_origin_allowed(const ferry_mount *m, const struct mg_connection *conn)
{
    return origin_ok(m, conn);
}

/* At most one line per FY_ORIGIN_LOG_MS per mount, so a client cannot flood the log; the
 * next line counts the refusals left out. The mount's clock (core.clock) times it. */
static void log_refusal(ferry_mount *m, const struct mg_connection *conn, const char *what,
                        const char *path)
{
    uint64_t now = ferry_hub_now(m->hub), skipped = 0;
    bool log = false;
    pthread_mutex_lock(&m->olog_lock);
    if (!m->olog_any || ferry_hub_since(m->hub, m->olog_at) >= FY_ORIGIN_LOG_MS) {
        log = true;
        skipped = m->olog_skipped;
        m->olog_skipped = 0;
        m->olog_at = now;
        m->olog_any = true;
    } else {
        m->olog_skipped++;
    }
    pthread_mutex_unlock(&m->olog_lock);
    if (!log)
        return;
    char origin[128], other[400], more[96] = "";
    ferry_log_quote(origin, sizeof origin, mg_get_header(conn, "Origin"), 100);
    if (skipped)
        snprintf(more, sizeof more, " (%llu more refused for their Origin and not logged)",
                 (unsigned long long)skipped);
    if (m->origins && *m->origins) {
        ferry_log(FERRY_LOG_WARN, "refused %s on %s: Origin %s is not in allowed_origins %s%s",
                  what, path, origin, ferry_log_quote(other, sizeof other, m->origins, 300), more);
    } else {
        const char *host = mg_get_header(conn, "Host");
        ferry_log(FERRY_LOG_WARN,
                  "refused %s on %s: Origin %s is not the same origin as Host %s "
                  "(allowed_origins is unset: same origin only)%s",
                  what, path, origin,
                  host ? ferry_log_quote(other, sizeof other, host, 100) : "(none)", more);
    }
}

bool fy_origin_check(ferry_mount *m, const struct mg_connection *conn, const char *what,
                     const char *path)
{
    if (origin_ok(m, conn))
        return true;
    ferry_hub_count_limit(m->hub, FERRY_LIMIT_ORIGIN);
    log_refusal(m, conn, what, path);
    return false;
}

void fy_origin_refuse(struct mg_connection *conn, const ferry_mount *m, const char *extra)
{
    fy_http_answer(conn, m, 403, extra, FERRY_ANSWER_ORIGIN, "origin not allowed");
}
