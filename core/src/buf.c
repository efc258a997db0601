#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int ferry_buf_reserve(ferry_buf *b, size_t extra)
{
    if (!b || b->len > b->cap)
        return FERRY_EINVAL; /* len set past the allocation */
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return FERRY_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return FERRY_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ferry_buf_printf(ferry_buf *b, const char *fmt, ...)
{
    if (!b || !fmt)
        return FERRY_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0 || ferry_buf_reserve(b, (size_t)need + 1))
        return FERRY_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
    return 0;
}

void ferry_buf_release(ferry_buf *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof *b);
}
