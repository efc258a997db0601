/* ferry_mount_options: the defaults, and checks that say which option is wrong and why. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "mount.h"

#define WHO "ferry_mount_new: "

void ferry_mount_options_init(ferry_mount_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->prefix = "/ferry";
    o->max_connections = 1000;
    o->poll_timeout_ms = 25000;
    o->writer_threads = 2;
    o->tick_ms = 500;
    o->handshake_timeout_ms = 10000;
    o->control_burst = 20;
    o->control_rate = 5;
    o->event_threads = 2;
}

/* A path civetweb matches literally: "/a/b", no trailing '/', no "//", and none of the
 * characters civetweb's handler patterns give a meaning to ('*', '?', '|', '$'). */
static bool path_ok(const char *name, const char *v)
{
    char q[160];
    size_t len = strlen(v);
    ferry_log_quote(q, sizeof q, v, 120);
    if (v[0] != '/') {
        ferry_log(FERRY_LOG_ERROR, WHO "%s %s must start with '/'", name, q);
        return false;
    }
    if (v[len - 1] == '/') {
        ferry_log(FERRY_LOG_ERROR, WHO "%s %s must not end with '/'", name, q);
        return false;
    }
    if (strstr(v, "//")) {
        ferry_log(FERRY_LOG_ERROR, WHO "%s %s must not contain \"//\"", name, q);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!isalnum(c) && !strchr("/-._~", c)) {
            ferry_log(FERRY_LOG_ERROR,
                      WHO "%s %s may contain only letters, digits and /-._~ (byte 0x%02x at offset %zu)",
                      name, q, c, i);
            return false;
        }
    }
    return true;
}

/* One entry of allowed_origins, `len` bytes at `e`: scheme://host[:port], as browsers send
 * it. An entry with a path or a trailing '/' would never match. */
static bool origin_entry_ok(const char *e, size_t len)
{
    char q[160];
    ferry_log_quote(q, sizeof q, e, len < 120 ? len : 120);
    const char *sep = strstr(e, "://");
    size_t scheme = sep ? (size_t)(sep - e) : len;
    bool ok = sep && scheme > 0 && scheme + 3 < len;
    for (size_t i = 0; ok && i < scheme; i++)
        ok = isalnum((unsigned char)e[i]) || strchr("+-.", e[i]);
    const char *slash = ok ? memchr(sep + 3, '/', len - scheme - 3) : NULL;
    if (slash) {
        ferry_log(FERRY_LOG_ERROR,
                  WHO "allowed_origins entry %s has a path or a trailing '/': an Origin is "
                   "scheme://host[:port]",
                  q);
        return false;
    }
    for (size_t i = scheme + 3; ok && i < len; i++)
        ok = isalnum((unsigned char)e[i]) || strchr(".-_:[]", e[i]);
    if (!ok) {
        ferry_log(FERRY_LOG_ERROR,
                  WHO "allowed_origins entry %s is not an origin: write scheme://host[:port], "
                   "e.g. \"https://app.example\"",
                  q);
        return false;
    }
    return true;
}

static bool origins_ok(const char *list)
{
    if (strcmp(list, "*") == 0)
        return true;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == 1 && *p == '*') {
            char q[340];
            ferry_log(FERRY_LOG_ERROR,
                      WHO "allowed_origins %s: \"*\" allows every origin and must be the whole list",
                      ferry_log_quote(q, sizeof q, list, 300));
            return false;
        }
        if (len && !origin_entry_ok(p, len))
            return false;
        p += len;
    }
    return true;
}

static bool header_name_ok(const char *v)
{
    bool ok = *v != '\0';
    for (const char *c = v; ok && *c; c++)
        ok = isalnum((unsigned char)*c) || *c == '-' || *c == '_';
    if (!ok) {
        char q[160];
        ferry_log(FERRY_LOG_ERROR,
                  WHO "real_ip_header %s must be a header name: letters, digits, '-' and '_' "
                   "(e.g. \"X-Real-IP\")",
                  ferry_log_quote(q, sizeof q, v, 120));
    }
    return ok;
}

/* metrics_path must not take the place of one of the mount's own endpoints: civetweb would
 * give that path to whichever handler came last. */
static bool metrics_path_free(const char *prefix, const char *path)
{
    static const char *const own[] = {"/ws", "/lp", "/ferry.js", "/ferry.mjs", "/health"};
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        if (strncmp(path, prefix, pl) == 0 && strcmp(path + pl, own[i]) == 0) {
            char q[160];
            ferry_log(FERRY_LOG_ERROR,
                      WHO "metrics_path %s is one of the mount's own endpoints "
                       "(<prefix>/ws, /lp, /ferry.js, /ferry.mjs, /health)",
                      ferry_log_quote(q, sizeof q, path, 120));
            return false;
        }
    }
    return true;
}

int fy_mount_options_load(ferry_mount_options *o, ferry_options *core,
                          const ferry_mount_options *src)
{
    ferry_mount_options_init(o);
    ferry_options_init(core);
    if (src && ferry_sized_copy(o, sizeof *o, src, "ferry_mount_new", "ferry_mount_options"))
        return FERRY_EINVAL;
    if (o->core && ferry_sized_copy(core, sizeof *core, o->core, "ferry_mount_new",
                                    "ferry_options"))
        return FERRY_EINVAL;
    o->core = core;
    return FERRY_OK;
}

int fy_mount_options_check(struct mg_context *ctx, const ferry_mount_options *o)
{
    if (!ctx) {
        ferry_log(FERRY_LOG_ERROR, WHO "ctx is NULL");
        return FERRY_EINVAL;
    }
    if (!o->prefix) {
        ferry_log(FERRY_LOG_ERROR, WHO "prefix is NULL (the default is \"/ferry\")");
        return FERRY_EINVAL;
    }
    if (!path_ok("prefix", o->prefix))
        return FERRY_EINVAL;
    const struct {
        const char *name;
        unsigned long long value;
    } nonzero[] = {
        {"max_connections", o->max_connections},
        {"poll_timeout_ms", o->poll_timeout_ms},
        {"writer_threads", o->writer_threads},
        {"tick_ms", o->tick_ms},
        {"handshake_timeout_ms", o->handshake_timeout_ms},
        {"control_burst", o->control_burst},
    };
    for (size_t i = 0; i < sizeof nonzero / sizeof nonzero[0]; i++) {
        if (!nonzero[i].value) {
            ferry_log(FERRY_LOG_ERROR, WHO "%s must be at least 1", nonzero[i].name);
            return FERRY_EINVAL;
        }
    }
    if (o->event_threads > 64) {
        ferry_log(FERRY_LOG_ERROR, WHO "event_threads %u is over 64", o->event_threads);
        return FERRY_EINVAL;
    }
    if (ferry_options_check(o->core, "ferry_mount_new", "core."))
        return FERRY_EINVAL;
    if (o->allowed_origins && !origins_ok(o->allowed_origins))
        return FERRY_EINVAL;
    if (o->real_ip_header && !header_name_ok(o->real_ip_header))
        return FERRY_EINVAL;
    if (o->metrics_path && (!path_ok("metrics_path", o->metrics_path) ||
                            !metrics_path_free(o->prefix, o->metrics_path)))
        return FERRY_EINVAL;
    /* civetweb answers OPTIONS itself (with CORS "*") unless this is empty. */
    const char *acam = mg_get_option(ctx, "access_control_allow_methods");
    if (acam && *acam) {
        char q[160];
        ferry_log(FERRY_LOG_ERROR,
                  WHO "the civetweb context answers CORS preflights itself "
                   "(access_control_allow_methods=%s): set it to \"\"",
                  ferry_log_quote(q, sizeof q, acam, 120));
        return FERRY_EINVAL;
    }
    return FERRY_OK;
}
