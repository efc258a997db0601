/* Prometheus text format (0.0.4) for a mount: the hub's counters, gauges and histograms,
 * plus the transports' own connection gauges and the drain flag. docs/OPERATIONS.md
 * ("Metrics") lists every series. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mount.h"

#define PUT(...)                                                                               \
    do {                                                                                       \
        if (ferry_buf_printf(out, __VA_ARGS__))                                                \
            goto fail;                                                                         \
    } while (0)

static void header(ferry_buf *out, const char *name, const char *type, const char *help,
                   int *rc)
{
    if (!*rc)
        *rc = ferry_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A histogram's _bucket, _sum and _count lines (its HELP and TYPE already written). */
static int put_histogram(ferry_buf *out, const char *name, const ferry_histogram *h)
{
    for (int i = 0; i < FERRY_HISTOGRAM_BUCKETS; i++) {
        int rc = i == FERRY_HISTOGRAM_BUCKETS - 1
                     ? ferry_buf_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->le[i])
                     : ferry_buf_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                                        ferry_histogram_bound(i), h->le[i]);
        if (rc)
            return rc;
    }
    return ferry_buf_printf(out, "%s_sum %.9f\n%s_count %" PRIu64 "\n", name,
                            (double)h->sum_ns / 1e9, name, h->count);
}

/* What an operator alerts on beyond the counters above: resets by reason, the drain flag,
 * publish-to-write latency, and a cluster's Redis. */
static int put_operations(ferry_mount *m, ferry_buf *out, const ferry_stats *st)
{
    int rc = 0;
    header(out, "ferry_resets_total", "counter", "Reset frames sent to clients, by reason: failed resumes, and attached sessions that overflowed, expired or forked.", &rc);
    for (int r = FERRY_REASON_UNKNOWN; !rc && r < FERRY_REASON_COUNT; r++)
        rc = ferry_buf_printf(out, "ferry_resets_total{reason=\"%s\"} %" PRIu64 "\n",
                              ferry_reason_str((ferry_reason)r), st->resets[r]);
    header(out, "ferry_draining", "gauge", "1 while the node drains (ferry_mount_drain) or is marked draining (ferry_mount_set_draining): it asks its load balancer for no new clients.", &rc);
    if (!rc)
        rc = ferry_buf_printf(out, "ferry_draining %d\n",
                              atomic_load(&m->draining) || atomic_load(&m->drain_started));
    header(out, "ferry_publish_to_write_seconds", "histogram", "From the hub taking a message to a transport pulling it to write for the first time; one observation per batch (its oldest new message).", &rc);
    if (!rc)
        rc = put_histogram(out, "ferry_publish_to_write_seconds", &st->publish_to_write);
    if (rc || !ferry_hub_node(m->hub)[0]) /* no cluster: no Redis */
        return rc;
    header(out, "ferry_redis_round_trip_seconds", "histogram", "Round-trip time of each Redis command of this node (the feed's blocking read excluded).", &rc);
    if (!rc)
        rc = put_histogram(out, "ferry_redis_round_trip_seconds", &st->redis_rtt);
    header(out, "ferry_redis_errors_total", "counter", "Redis commands that failed: no connection, an I/O error or timeout, or an error reply.", &rc);
    if (!rc)
        rc = ferry_buf_printf(out, "ferry_redis_errors_total %" PRIu64 "\n", st->redis_errors);
    return rc;
}

/* The event loops' series (event_threads). */
static int put_event_loops(ferry_mount *m, ferry_buf *out)
{
    int rc = 0;
    header(out, "ferry_websockets_on_event_loops", "gauge",
           "WebSockets served by the event loops (event_threads) now.", &rc);
    header(out, "ferry_websocket_handoffs_total", "counter",
           "WebSockets offered to the event loops, by outcome: taken; stayed (TLS, a client "
           "already gone, or an unknown civetweb layout: served by a worker); lost (closed "
           "1011: a frame split across the handoff).", &rc);
    if (rc)
        return rc;
    return ferry_buf_printf(out,
                            "ferry_websockets_on_event_loops %zu\n"
                            "ferry_websocket_handoffs_total{outcome=\"taken\"} %llu\n"
                            "ferry_websocket_handoffs_total{outcome=\"stayed\"} %llu\n"
                            "ferry_websocket_handoffs_total{outcome=\"lost\"} %llu\n",
                            atomic_load(&m->on_loops),
                            atomic_load(&m->handoffs[FY_HANDOFF_TAKEN]),
                            atomic_load(&m->handoffs[FY_HANDOFF_STAYED]),
                            atomic_load(&m->handoffs[FY_HANDOFF_LOST]));
}

int ferry_mount_metrics(ferry_mount *m, ferry_buf *out)
{
    ferry_stats st = {.size = sizeof st};
    if (!m || !out || ferry_hub_stats(m->hub, &st))
        return FERRY_EINVAL;
    size_t start = out->len;
    int rc = 0;

    header(out, "ferry_sessions", "gauge", "Sessions by state.", &rc);
    if (rc)
        goto fail;
    PUT("ferry_sessions{state=\"attached\"} %zu\nferry_sessions{state=\"detached\"} %zu\n"
        "ferry_sessions{state=\"expired\"} %zu\n",
        st.attached, st.detached, st.expired);
    header(out, "ferry_connections", "gauge", "Open connections by transport (long-polling: held polls).", &rc);
    header(out, "ferry_held_polls", "gauge", "Long-poll requests held open now.", &rc);
    if (rc)
        goto fail;
    pthread_mutex_lock(&m->wlock);
    size_t nws = m->nws;
    pthread_mutex_unlock(&m->wlock);
    size_t held = atomic_load(&m->held_polls);
    PUT("ferry_connections{transport=\"websocket\"} %zu\nferry_connections{transport=\"longpoll\"} %zu\n"
        "ferry_held_polls %zu\n",
        nws, held, held);
    if (put_event_loops(m, out))
        goto fail;
    header(out, "ferry_messages_total", "counter", "Messages: in, delivered to the application; out, sent to clients (replays included).", &rc);
    header(out, "ferry_bytes_total", "counter", "Frame bytes received and sent.", &rc);
    if (rc)
        goto fail;
    PUT("ferry_messages_total{direction=\"in\"} %" PRIu64 "\nferry_messages_total{direction=\"out\"} %" PRIu64 "\n"
        "ferry_bytes_total{direction=\"in\"} %" PRIu64 "\nferry_bytes_total{direction=\"out\"} %" PRIu64 "\n",
        st.messages_in, st.messages_out, st.bytes_in, st.bytes_out);
    header(out, "ferry_sessions_opened_total", "counter", "New sessions, replacements after a reset included.", &rc);
    header(out, "ferry_resumes_total", "counter", "Resume attempts by outcome.", &rc);
    if (rc)
        goto fail;
    PUT("ferry_sessions_opened_total %" PRIu64 "\nferry_resumes_total{outcome=\"resumed\"} %" PRIu64 "\n",
        st.sessions_opened, st.resumes);
    for (int r = FERRY_REASON_UNKNOWN; r < FERRY_REASON_COUNT; r++)
        PUT("ferry_resumes_total{outcome=\"%s\"} %" PRIu64 "\n", ferry_reason_str((ferry_reason)r),
            st.resume_failures[r]);
    header(out, "ferry_upgrades_total", "counter", "Resumes that moved a session onto WebSocket.", &rc);
    header(out, "ferry_fallbacks_total", "counter", "Resumes that moved a session onto long-polling.", &rc);
    header(out, "ferry_outbox_messages", "gauge", "Unacknowledged messages in every outbox.", &rc);
    header(out, "ferry_outbox_bytes", "gauge", "Unacknowledged bytes in every outbox.", &rc);
    if (rc)
        goto fail;
    PUT("ferry_upgrades_total %" PRIu64 "\nferry_fallbacks_total %" PRIu64 "\n"
        "ferry_outbox_messages %zu\nferry_outbox_bytes %zu\n",
        st.upgrades, st.fallbacks, st.outbox_messages, st.outbox_bytes);
    header(out, "ferry_limit_hits_total", "counter", "Limits and refusals hit, by kind (docs/SECURITY.md).", &rc);
    if (rc)
        goto fail;
    for (int l = 0; l < FERRY_LIMIT_COUNT; l++)
        PUT("ferry_limit_hits_total{limit=\"%s\"} %" PRIu64 "\n", ferry_limit_name((ferry_limit)l),
            st.limits[l]);
    header(out, "ferry_slow_consumers_cut_total", "counter", "Clients cut off for not keeping up: stalled, or outbox overflowed.", &rc);
    if (rc)
        goto fail;
    PUT("ferry_slow_consumers_cut_total %" PRIu64 "\n",
        st.limits[FERRY_LIMIT_STALL] + st.limits[FERRY_LIMIT_OUTBOX] + st.limits[FERRY_LIMIT_MEMORY]);
    header(out, "ferry_ready", "gauge", "1 when <prefix>/health answers 200: not draining, and the session store is reachable.", &rc);
    header(out, "ferry_store_up", "gauge", "1 when the hub reaches its session store (always without a cluster).", &rc);
    if (rc)
        goto fail;
    int health;
    bool store_up;
    fy_health(m, &health, &store_up);
    PUT("ferry_ready %d\nferry_store_up %d\n", health == 200, store_up);
    if (put_operations(m, out, &st))
        goto fail;
    return 0;
fail:
    out->len = start;
    return FERRY_ENOMEM;
}

int fy_metrics_handler(struct mg_connection *conn, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    ferry_buf b = {0};
    if (ferry_mount_metrics(m, &b) == 0)
        fy_http_reply(conn, m, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    else
        fy_http_reply(conn, m, 503, NULL, "text/plain", "", 0);
    ferry_buf_release(&b);
    fy_mount_leave(m);
    return 200;
}
