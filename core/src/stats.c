/* The hub's counters and gauges for metrics (ferry_hub_stats), and the bounds of the
 * latency histograms' buckets (hist.h). */
#include <math.h>
#include <string.h>

#include "cluster_seam.h"
#include "hist.h"
#include "hub.h"
#include "session.h"

uint64_t ferry_hub_limit_hits(ferry_hub *hub, ferry_limit l)
{
    if (!hub || (unsigned)l >= FERRY_LIMIT_COUNT)
        return 0;
    return atomic_load_explicit(&hub->limits[l], memory_order_relaxed);
}

struct count_ctx {
    size_t by_state[4];
    size_t outbox_messages;
};

static void count_one(ferry_session *s, void *ud)
{
    struct count_ctx *c = ud;
    pthread_mutex_lock(&s->lock);
    c->by_state[s->state]++;
    c->outbox_messages += s->out.count;
    pthread_mutex_unlock(&s->lock);
}

/* ferry_stats keeps fixed room for these, so that a new limit or reason keeps its layout. */
_Static_assert(FERRY_LIMIT_COUNT <= FERRY_STATS_LIMITS, "ferry_stats.limits is too small");
_Static_assert(FERRY_REASON_COUNT <= FERRY_STATS_REASONS, "ferry_stats.resume_failures is too small");

int ferry_hub_stats(ferry_hub *hub, ferry_stats *out)
{
    if (!hub || !out)
        return FERRY_EINVAL;
    if (fy_size_check(out->size, sizeof *out, "ferry_hub_stats", "ferry_stats"))
        return FERRY_EINVAL;
    ferry_stats full;
    struct count_ctx c = {{0}, 0};
    size_t size = out->size;
    memset(&full, 0, sizeof full);
    ferry_stats *st = &full;
    hub->store->ops->each(hub->store, count_one, &c);
    st->attached = c.by_state[FERRY_STATE_ATTACHED];
    st->detached = c.by_state[FERRY_STATE_DETACHED] + c.by_state[FERRY_STATE_NEW];
    st->expired = c.by_state[FERRY_STATE_EXPIRED];
    st->outbox_messages = c.outbox_messages;
    st->outbox_bytes = atomic_load(&hub->outbox_bytes);
    st->sessions_opened = atomic_load(&hub->opened);
    st->resumes = atomic_load(&hub->resumes);
    for (int r = 0; r < FERRY_REASON_COUNT; r++)
        st->resume_failures[r] = atomic_load(&hub->resume_failures[r]);
    st->messages_in = atomic_load(&hub->msgs_in);
    st->bytes_in = atomic_load(&hub->bytes_in);
    st->messages_out = atomic_load(&hub->msgs_out);
    st->bytes_out = atomic_load(&hub->bytes_out);
    st->upgrades = atomic_load(&hub->upgrades);
    st->fallbacks = atomic_load(&hub->fallbacks);
    for (int l = 0; l < FERRY_LIMIT_COUNT; l++)
        st->limits[l] = atomic_load(&hub->limits[l]);
    for (int r = 0; r < FERRY_REASON_COUNT; r++)
        st->resets[r] = atomic_load_explicit(&hub->resets[r], memory_order_relaxed);
    fy_hist_read(&hub->pub_write, &st->publish_to_write);
    if (hub->cluster && hub->cluster->ops->meter) {
        fy_redis_meter *rm = hub->cluster->ops->meter(hub->cluster);
        fy_hist_read(&rm->rtt, &st->redis_rtt);
        st->redis_errors = atomic_load_explicit(&rm->errors, memory_order_relaxed);
    }
    full.size = size;
    memcpy(out, &full, size);
    return FERRY_OK;
}

void ferry_hub_counts(ferry_hub *hub, size_t *attached, size_t *detached, size_t *expired)
{
    struct count_ctx c = {{0}, 0};
    if (hub)
        hub->store->ops->each(hub->store, count_one, &c);
    if (attached)
        *attached = c.by_state[FERRY_STATE_ATTACHED];
    if (detached)
        *detached = c.by_state[FERRY_STATE_DETACHED] + c.by_state[FERRY_STATE_NEW];
    if (expired)
        *expired = c.by_state[FERRY_STATE_EXPIRED];
}

double ferry_histogram_bound(int i)
{
    static const uint64_t bound[FERRY_HISTOGRAM_BUCKETS - 1] = FY_HIST_BOUNDS_NS;
    if (i < 0 || i >= FERRY_HISTOGRAM_BUCKETS)
        return -1;
    return i == FERRY_HISTOGRAM_BUCKETS - 1 ? INFINITY : (double)bound[i] / 1e9;
}
