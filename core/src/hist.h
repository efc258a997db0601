/* Latency histograms for metrics (ferry_histogram in ferry.h): fixed buckets, one atomic
 * counter per bucket and one for the sum, so that an observation takes no lock and costs
 * two relaxed atomic adds. Header-only, so that cluster/ uses it without new symbols.
 *
 * Buckets are counted apart (an observation adds to one) and made cumulative when read,
 * so a reader sees count == le[last] even while observations go on; the sum is read after
 * the buckets and may include a few observations they do not. */
#ifndef FY_HIST_H
#define FY_HIST_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "ferry.h"

/* The bounds of ferry_histogram_bound, in ns; the last bucket (+Inf) has none. */
#define FY_HIST_BOUNDS_NS                                                                      \
    {100000u, 250000u, 500000u, 1000000u, 2500000u, 5000000u, 10000000u, 25000000u,          \
     50000000u, 100000000u, 250000000u, 500000000u, 1000000000u, 2500000000u, 5000000000u,   \
     10000000000u}

typedef struct fy_hist {
    atomic_uint_fast64_t n[FERRY_HISTOGRAM_BUCKETS]; /* per bucket, not cumulative */
    atomic_uint_fast64_t sum_ns;
} fy_hist;

/* CLOCK_MONOTONIC in ns: latencies are measured on the real clock, not the hub's injected
 * one (ms, too coarse for 100 µs buckets; a test's clock stands still). */
static inline uint64_t fy_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Counts one observation of `ns`. Any thread, any lock. */
static inline void fy_hist_observe(fy_hist *h, uint64_t ns)
{
    static const uint64_t bound[FERRY_HISTOGRAM_BUCKETS - 1] = FY_HIST_BOUNDS_NS;
    int i = 0;
    while (i < FERRY_HISTOGRAM_BUCKETS - 1 && ns > bound[i])
        i++;
    atomic_fetch_add_explicit(&h->n[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* The histogram as ferry_histogram (cumulative buckets). Any thread. */
static inline void fy_hist_read(fy_hist *h, ferry_histogram *out)
{
    uint64_t total = 0;
    for (int i = 0; i < FERRY_HISTOGRAM_BUCKETS; i++) {
        total += atomic_load_explicit(&h->n[i], memory_order_relaxed);
        out->le[i] = total;
    }
    out->count = total;
    out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}

#endif
