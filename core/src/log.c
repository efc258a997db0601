#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Readers are the threads logging; ferry_set_log writes, so it waits out every call to the
 * function it replaces. */
static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static ferry_log_fn log_fn; /* NULL: default_log */
static void *log_ud;

static void default_log(ferry_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    char line[FY_LOG_MAX + 16];
    int n = snprintf(line, sizeof line, "ferry: %s\n", msg);
    if (n > 0)
        fwrite(line, 1, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, stderr);
}

void ferry_set_log(ferry_log_fn fn, void *ud)
{
    pthread_rwlock_wrlock(&log_lock);
    log_fn = fn;
    log_ud = fn ? ud : NULL;
    pthread_rwlock_unlock(&log_lock);
}

void fy_log(ferry_log_level level, const char *fmt, ...)
{
    char msg[FY_LOG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof msg)
        memcpy(msg + sizeof msg - 4, "...", 4);
    pthread_rwlock_rdlock(&log_lock);
    if (log_fn)
        log_fn(level, msg, log_ud);
    else
        default_log(level, msg, NULL);
    pthread_rwlock_unlock(&log_lock);
}

const char *fy_log_quote(char *dst, size_t cap, const char *s, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return dst;
    if (!s) {
        snprintf(dst, cap, "(null)");
        return dst;
    }
    /* Room for the closing quote, "..." and the NUL after any one escaped byte. */
    if (cap < 10) {
        dst[0] = '\0';
        return dst;
    }
    size_t room = cap - 5;
    dst[o++] = '"';
    size_t i = 0;
    for (; s[i] && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c == '"' || c == '\\') ? 2 : (c < 0x20 || c > 0x7e) ? 4 : 1;
        if (o + need > room)
            break;
        if (need == 2) {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (need == 4) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o++] = '"';
    if (s[i]) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}
