#include "failmalloc.h"

#include <jansson.h>
#include <string.h>

/* The linker sends calls to malloc and friends here, and __real_* to the C library (or to
 * AddressSanitizer's allocator in that build). */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void __wrap_free(void *p);

static unsigned long fail_at; /* 0: not armed */
static unsigned long seen;    /* allocations since fm_arm */
static bool injected;
static bool in_jansson; /* the failed allocation was jansson's */
static long live;

/* True for the allocation that is to fail. */
static bool fail_now(void)
{
    if (!fail_at || ++seen != fail_at)
        return false;
    injected = true;
    return true;
}

void *__wrap_malloc(size_t n)
{
    if (fail_now())
        return NULL;
    void *p = __real_malloc(n);
    live += p != NULL;
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_now())
        return NULL;
    void *p = __real_calloc(n, size);
    live += p != NULL;
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_now())
        return NULL;
    void *q = __real_realloc(p, n);
    if (!p && q)
        live++;
    else if (p && !n)
        live--;
    return q;
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = __wrap_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void __wrap_free(void *p)
{
    live -= p != NULL;
    __real_free(p);
}

static void *json_malloc(size_t n)
{
    bool before = injected;
    void *p = __wrap_malloc(n);
    if (injected && !before)
        in_jansson = true;
    return p;
}

static void json_free(void *p)
{
    __wrap_free(p);
}

void fm_init(void)
{
    json_set_alloc_funcs(json_malloc, json_free);
}

void fm_arm(unsigned long n)
{
    fail_at = n;
    seen = 0;
    injected = false;
    in_jansson = false;
}

bool fm_disarm(void)
{
    fail_at = 0;
    return injected;
}

bool fm_failed_in_jansson(void)
{
    return in_jansson;
}

long fm_live(void)
{
    return live;
}
