/* Process-wide logging: the function ferry_set_log installs, and the helpers that format
 * for it. */
#ifndef FY_LOG_H
#define FY_LOG_H

#include <stddef.h>

#include "ferry.h"

#define FY_LOG_MAX 1024 /* longest message, NUL included; longer ones are cut */

/* Formats one message and hands it to the log function. Any thread; call it with no ferry
 * lock held, since the application's function may call into ferry. */
void fy_log(ferry_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes `s` to dst (`cap` bytes) in double quotes, for a message: at most `max` bytes of
 * it, '"' and '\' escaped with a backslash, bytes outside printable ASCII as \xNN, and
 * "..." after the closing quote when it was cut. NULL is written as (null). Returns dst. */
const char *fy_log_quote(char *dst, size_t cap, const char *s, size_t max);

#endif
