/* libFuzzer target: the WebSocket client-frame reader (transports/src/ws_reader.h) on
 * arbitrary bytes. The first three bytes choose the cap, a frame whose callback stops the
 * feed, and how the rest is cut into chunks; the rest is the client's stream. Fed whole, in
 * chunks and byte by byte, the reader must make the same callbacks and return the same value,
 * and every frame it hands over must keep the header's promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { STOP_RC = 77 };

typedef struct trace {
    uint64_t hash;  /* FNV-1a over every callback's bits, len and payload */
    size_t n;
    size_t cap;
    size_t stop_at; /* the callback returns STOP_RC at this frame (from 1); 0 never */
} trace;

static void mix(trace *t, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 0x100000001b3ull;
}

static int on_frame(void *ud, int bits, char *data, uint64_t len)
{
    trace *t = ud;
    int op = bits & 0x0F;
    if (bits & ~(FY_WSR_FIN | 0x0F))
        abort();
    if ((op >= 3 && op <= 7) || op > 0xA)
        abort();
    if (op >= 8) {
        /* Control frames: whole, at most 125 bytes, delivered whatever the cap. */
        if (!(bits & FY_WSR_FIN) || len > 125 || (len && !data))
            abort();
    } else if (data ? len > t->cap : (len && len <= t->cap)) {
        abort(); /* NULL means over the cap, and only that */
    }
    bool null = len && !data;
    mix(t, &bits, sizeof bits);
    mix(t, &len, sizeof len);
    mix(t, &null, sizeof null);
    if (data)
        mix(t, data, (size_t)len); /* ASan checks every byte is there */
    t->n++;
    return t->stop_at && t->n == t->stop_at ? STOP_RC : 0;
}

/* Feeds the stream in pieces of 1..max_chunk bytes (0: whole), each in a buffer of its own
 * size; returns the first non-zero result, or 0. */
static int run(const uint8_t *s, size_t n, size_t max_chunk, uint32_t seed, trace *t,
               const char **why)
{
    fy_wsr r;
    fy_wsr_init(&r);
    int rc = 0;
    size_t at = 0;
    do {
        size_t k = n - at;
        if (max_chunk) {
            seed = seed * 1103515245u + 12345u;
            size_t want = 1 + (seed >> 16) % max_chunk;
            if (want < k)
                k = want;
        }
        char *c = malloc(k ? k : 1);
        if (!c)
            abort();
        if (k)
            memcpy(c, s + at, k);
        rc = fy_wsr_feed(&r, c, k, t->cap, on_frame, t, why);
        free(c);
        at += k;
    } while (rc == 0 && at < n);
    fy_wsr_free(&r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[] = {0, 1, 2, 5, 125, 126, 200, 4096};
    if (size < 3)
        return 0;
    trace t0 = {.hash = 0xcbf29ce484222325ull, .cap = caps[data[0] & 7],
                .stop_at = data[0] >> 3};
    size_t max_chunk = 1 + data[1];
    uint32_t seed = data[2];
    const uint8_t *s = data + 3;
    size_t n = size - 3;

    trace t[3] = {t0, t0, t0};
    int rc[3];
    const char *why[3] = {NULL, NULL, NULL};
    rc[0] = run(s, n, 0, seed, &t[0], &why[0]);
    rc[1] = run(s, n, max_chunk, seed, &t[1], &why[1]);
    rc[2] = run(s, n, 1, seed, &t[2], &why[2]);
    for (int i = 0; i < 3; i++) {
        if (rc[i] == FY_WSR_NOMEM)
            return 0;
        if (rc[i] != 0 && rc[i] != STOP_RC && rc[i] != FY_WSR_PROTOCOL)
            abort();
        if (rc[i] == FY_WSR_PROTOCOL && (!why[i] || !why[i][0]))
            abort();
        if (rc[i] == STOP_RC && t[i].n != t[i].stop_at)
            abort();
        if (rc[i] != rc[0] || t[i].n != t[0].n || t[i].hash != t[0].hash)
            abort();
    }
    return 0;
}
