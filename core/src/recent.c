/* The feed entries a node read last (recent.h). */
#include <stdlib.h>
#include <string.h>

#include "recent.h"

/* The bounds. Cursors reach Redis every 2 s and an idle session's follows the feed within
 * 10 s (feed.c), so an adoption nearly always starts inside the last 30 s of feed time. */
#define RECENT_MAX 65536
#define RECENT_BYTES (32u << 20)
#define RECENT_MS 30000

static size_t item_bytes(const fy_recent_item *it)
{
    return sizeof *it + it->name_len + sizeof *it->m + it->m->len;
}

static void drop_oldest(fy_recent *r)
{
    fy_recent_item *it = r->ring[r->head];
    r->from = it->pos;
    r->bytes -= item_bytes(it);
    fy_msg_unref(it->m);
    free(it);
    r->head = (r->head + 1) % r->cap;
    r->n--;
}

void fy_recent_reset(fy_recent *r, fy_pos from)
{
    while (r->n)
        drop_oldest(r);
    r->head = 0;
    r->from = from;
}

static bool grow(fy_recent *r)
{
    size_t cap = r->cap ? r->cap * 2 : 1024;
    fy_recent_item **ring = malloc(cap * sizeof *ring);
    if (!ring)
        return false;
    for (size_t i = 0; i < r->n; i++)
        ring[i] = r->ring[(r->head + i) % r->cap];
    free(r->ring);
    r->ring = ring;
    r->cap = cap;
    r->head = 0;
    return true;
}

void fy_recent_add(fy_recent *r, const fy_feed_entry *e, fy_msg *m)
{
    if (r->n == RECENT_MAX)
        drop_oldest(r);
    fy_recent_item *it = malloc(sizeof *it + e->name_len);
    if (!it || (r->n == r->cap && !grow(r))) {
        free(it);
        fy_recent_reset(r, e->pos);
        return;
    }
    it->pos = e->pos;
    it->kind = e->kind;
    it->m = m;
    fy_msg_ref_n(m, 1);
    it->name_len = e->name_len;
    memcpy(it->name, e->name, e->name_len);
    r->ring[(r->head + r->n++) % r->cap] = it;
    r->bytes += item_bytes(it);
    while (r->n > 1 && (r->bytes > RECENT_BYTES || r->ring[r->head]->pos.ms + RECENT_MS < e->pos.ms))
        drop_oldest(r);
}

bool fy_recent_covers(const fy_recent *r, fy_pos from)
{
    return fy_pos_cmp(from, r->from) >= 0;
}

/* The index (from the oldest) of the first entry after `from`. */
static size_t first_after(const fy_recent *r, fy_pos from)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fy_pos_cmp(r->ring[(r->head + mid) % r->cap]->pos, from) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int fy_recent_each(const fy_recent *r, fy_pos from, fy_pos to,
                   int (*fn)(const fy_recent_item *it, void *ud), void *ud)
{
    for (size_t i = first_after(r, from); i < r->n; i++) {
        const fy_recent_item *it = r->ring[(r->head + i) % r->cap];
        if (fy_pos_cmp(it->pos, to) > 0)
            break;
        int rc = fn(it, ud);
        if (rc)
            return rc;
    }
    return 0;
}

void fy_recent_free(fy_recent *r)
{
    fy_recent_reset(r, (fy_pos){0, 0});
    free(r->ring);
    r->ring = NULL;
    r->cap = 0;
}
