#include "outbox.h"

#include <stdlib.h>

#include "ferry.h"

void fy_outbox_init(fy_outbox *o, size_t max_msgs, size_t max_bytes)
{
    *o = (fy_outbox){.base = 1, .next_send = 1, .max_msgs = max_msgs, .max_bytes = max_bytes};
}

static int grow(fy_outbox *o)
{
    size_t cap = o->cap ? o->cap * 2 : 8;
    fy_msg **ring = malloc(cap * sizeof *ring);
    if (!ring)
        return FERRY_ENOMEM;
    for (size_t i = 0; i < o->count; i++)
        ring[i] = o->ring[(o->head + i) & (o->cap - 1)];
    free(o->ring);
    o->ring = ring;
    o->cap = cap;
    o->head = 0;
    return 0;
}

int fy_outbox_push(fy_outbox *o, fy_msg *m)
{
    size_t cost = m->len + FY_OUTBOX_OVERHEAD;
    if (o->count >= o->max_msgs || o->bytes + cost > o->max_bytes)
        return FERRY_EFULL;
    if (o->count == o->cap && grow(o))
        return FERRY_ENOMEM;
    o->ring[(o->head + o->count) & (o->cap - 1)] = m;
    o->count++;
    o->bytes += cost;
    return 0;
}

int fy_outbox_ack(fy_outbox *o, uint64_t ack)
{
    if (ack > o->high_sent)
        return FERRY_EACK;
    while (o->count && o->base <= ack) {
        fy_msg *m = o->ring[o->head];
        o->bytes -= m->len + FY_OUTBOX_OVERHEAD;
        if (o->base < o->next_send)
            o->inflight -= m->len + FY_OUTBOX_OVERHEAD;
        fy_msg_unref(m);
        o->head = (o->head + 1) & (o->cap - 1);
        o->count--;
        o->base++;
    }
    if (o->next_send < o->base)
        o->next_send = o->base;
    return 0;
}

int fy_outbox_rewind(fy_outbox *o, uint64_t ack)
{
    int rc = fy_outbox_ack(o, ack);
    if (rc == 0) {
        o->next_send = o->base;
        o->inflight = 0;
    }
    return rc;
}

fy_msg *fy_outbox_at(const fy_outbox *o, uint64_t seq)
{
    if (seq < o->base || seq >= o->base + o->count)
        return NULL;
    return o->ring[(o->head + (size_t)(seq - o->base)) & (o->cap - 1)];
}

void fy_outbox_sent(fy_outbox *o, uint64_t seq)
{
    for (; o->next_send <= seq; o->next_send++)
        o->inflight += fy_outbox_at(o, o->next_send)->len + FY_OUTBOX_OVERHEAD;
    if (seq > o->high_sent)
        o->high_sent = seq;
}

void fy_outbox_clear(fy_outbox *o)
{
    for (size_t i = 0; i < o->count; i++)
        fy_msg_unref(o->ring[(o->head + i) & (o->cap - 1)]);
    free(o->ring);
    o->ring = NULL;
    o->base += o->count;
    o->next_send = o->base;
    o->cap = o->head = o->count = o->bytes = o->inflight = 0;
}

void fy_outbox_restart(fy_outbox *o, uint64_t seq)
{
    o->base = o->next_send = seq;
    o->high_sent = seq - 1;
}

void fy_outbox_skip(fy_outbox *o)
{
    o->base = o->next_send = o->base + 1;
    if (o->high_sent < o->base - 1)
        o->high_sent = o->base - 1;
}
