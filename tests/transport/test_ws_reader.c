/* The incremental client-frame reader (transports/src/ws_reader.h) on bytes built here: no
 * server, no sockets. Every feed gets a buffer of its own of exactly its size, so that ASan
 * sees a read past it. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ws_reader.h"

/* A seeded generator: mask keys, payloads and chunk sizes are random but reproducible. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
}

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

typedef struct bytes {
    unsigned char *d;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
        ck_assert_ptr_nonnull(b->d);
    }
    if (n)
        memcpy(b->d + b->len, p, n);
    b->len += n;
}

static void put_byte(bytes *b, int c)
{
    unsigned char u = (unsigned char)c;
    put(b, &u, 1);
}

enum { LEN_MINIMAL, LEN_7, LEN_16, LEN_64 };

/* A frame's header: first byte b0, the mask bit if `masked`, `claimed` in the given length
 * form, and (if masked) a random key, stored in key[4]. */
static void put_header(bytes *b, int b0, bool masked, int form, uint64_t claimed,
                       unsigned char key[4])
{
    int m = masked ? 0x80 : 0;
    if (form == LEN_MINIMAL)
        form = claimed < 126 ? LEN_7 : claimed <= 0xFFFF ? LEN_16 : LEN_64;
    put_byte(b, b0);
    if (form == LEN_7) {
        put_byte(b, m | (int)claimed);
    } else if (form == LEN_16) {
        put_byte(b, m | 126);
        put_byte(b, (int)(claimed >> 8));
        put_byte(b, (int)(claimed & 0xFF));
    } else {
        put_byte(b, m | 127);
        for (int i = 7; i >= 0; i--)
            put_byte(b, (int)((claimed >> (8 * i)) & 0xFF));
    }
    if (masked) {
        uint32_t k = rng();
        for (int i = 0; i < 4; i++)
            key[i] = (unsigned char)(k >> (8 * i));
        put(b, key, 4);
    }
}

static void put_masked(bytes *b, const unsigned char key[4], const void *payload, size_t len)
{
    size_t at = b->len;
    put(b, payload, len);
    for (size_t i = 0; i < len; i++)
        b->d[at + i] ^= key[i % 4];
}

/* A masked client frame with a random key and the minimal length encoding. */
static void frame(bytes *b, int b0, const void *payload, size_t len)
{
    unsigned char key[4];
    put_header(b, b0, true, LEN_MINIMAL, len, key);
    put_masked(b, key, payload, len);
}

static void frame_str(bytes *b, int b0, const char *s)
{
    frame(b, b0, s, strlen(s));
}

static unsigned char *random_payload(size_t len)
{
    unsigned char *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)rng();
    return p;
}

/* Every callback, in order. */
typedef struct seen {
    int bits;
    uint64_t len;
    bool null;
    const char *at;      /* where data was */
    unsigned char *data; /* a copy, when data was not NULL */
} seen;

typedef struct record {
    seen *f;
    size_t n, cap;
    size_t stop_at;  /* the callback returns stop_rc for frame number stop_at (from 1) */
    int stop_rc;
} record;

static int on_frame(void *ud, int bits, char *data, uint64_t len)
{
    record *r = ud;
    if (r->n == r->cap) {
        r->cap = r->cap * 2 + 8;
        r->f = realloc(r->f, r->cap * sizeof *r->f);
        if (!r->f)
            ck_abort_msg("out of memory");
    }
    seen *s = &r->f[r->n++];
    s->bits = bits;
    s->len = len;
    s->null = data == NULL;
    s->at = data;
    s->data = NULL;
    if (data) {
        s->data = malloc(len ? len : 1);
        if (!s->data)
            ck_abort_msg("out of memory");
        if (len)
            memcpy(s->data, data, len);
    }
    return r->stop_at && r->n == r->stop_at ? r->stop_rc : 0;
}

static void record_free(record *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->f[i].data);
    free(r->f);
    memset(r, 0, sizeof *r);
}

static void expect_frame(const record *r, size_t i, int bits, const void *payload, uint64_t len)
{
    ck_assert_uint_gt(r->n, i);
    ck_assert_int_eq(r->f[i].bits, bits);
    ck_assert_uint_eq(r->f[i].len, len);
    if (len) {
        ck_assert(!r->f[i].null);
        ck_assert(memcmp(r->f[i].data, payload, len) == 0);
    }
}

static void expect_announced(const record *r, size_t i, int bits, uint64_t len)
{
    ck_assert_uint_gt(r->n, i);
    ck_assert_int_eq(r->f[i].bits, bits);
    ck_assert_uint_eq(r->f[i].len, len);
    ck_assert(r->f[i].null);
}

/* One feed of n bytes from p, copied into a buffer of exactly that size. */
static int feed(fy_wsr *w, const void *p, size_t n, size_t cap, record *r, const char **why)
{
    char *c = malloc(n ? n : 1);
    if (!c) /* not ck_assert: Check records every assertion that passes, once per feed here */
        ck_abort_msg("out of memory");
    if (n)
        memcpy(c, p, n);
    int rc = fy_wsr_feed(w, c, n, cap, on_frame, r, why);
    free(c);
    return rc;
}

/* Feeds a whole stream to a fresh reader in chunks: max_chunk 0 is one feed, 1 byte by byte,
 * else random sizes from 1 to max_chunk drawn from `seed`. Stops at the first non-zero
 * return, which it returns. */
static int feed_stream(const bytes *b, size_t cap, size_t max_chunk, uint64_t seed, record *r,
                       const char **why)
{
    fy_wsr w;
    fy_wsr_init(&w);
    uint64_t saved = rng_state;
    rng_seed(seed);
    int rc = 0;
    size_t at = 0;
    if (max_chunk == 0)
        rc = feed(&w, b->d, b->len, cap, r, why);
    while (max_chunk && at < b->len && rc == 0) {
        size_t n = max_chunk == 1 ? 1 : 1 + rng() % max_chunk;
        if (n > b->len - at)
            n = b->len - at;
        rc = feed(&w, b->d + at, n, cap, r, why);
        at += n;
    }
    rng_state = saved;
    fy_wsr_free(&w);
    return rc;
}

static void expect_same_records(const record *a, const record *b)
{
    ck_assert_uint_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        ck_assert_int_eq(a->f[i].bits, b->f[i].bits);
        ck_assert_uint_eq(a->f[i].len, b->f[i].len);
        if (!a->f[i].len)
            continue; /* data may or may not be NULL for an empty payload */
        ck_assert_int_eq(a->f[i].null, b->f[i].null);
        if (!a->f[i].null)
            ck_assert(memcmp(a->f[i].data, b->f[i].data, a->f[i].len) == 0);
    }
}

/* A stream that must be refused: no frame reaches the callback, *why says something. */
static void expect_protocol_error(const bytes *b, size_t cap)
{
    size_t chunks[] = {0, 1, 3};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        record r = {0};
        const char *why = NULL;
        ck_assert_int_eq(feed_stream(b, cap, chunks[i], 7, &r, &why), FY_WSR_PROTOCOL);
        ck_assert_ptr_nonnull(why);
        ck_assert_uint_gt(strlen(why), 0);
        ck_assert_uint_eq(r.n, 0);
        record_free(&r);
    }
}

START_TEST(wsr_a_masked_text_frame_is_unmasked_for_the_callback_at_every_length_encoding)
{
    rng_seed(1);
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70001};
    static const int len7[] = {0, 1, 125, 126, 126, 126, 127, 127};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        unsigned char *p = random_payload(lens[i]);
        bytes b = {0};
        frame(&b, 0x81, p, lens[i]);
        ck_assert_int_eq(b.d[1] & 0x7F, len7[i]);
        record r = {0};
        const char *why = NULL;
        ck_assert_int_eq(feed_stream(&b, 1 << 20, 0, 0, &r, &why), 0);
        ck_assert_uint_eq(r.n, 1);
        expect_frame(&r, 0, 0x81, p, lens[i]);
        record_free(&r);
        free(b.d);
        free(p);
    }
}
END_TEST

START_TEST(wsr_a_payload_whole_in_one_feed_is_unmasked_in_place_without_a_copy)
{
    rng_seed(2);
    bytes b = {0};
    frame_str(&b, 0x81, "hello, reader");
    record r = {0};
    fy_wsr w;
    fy_wsr_init(&w);
    ck_assert_int_eq(fy_wsr_feed(&w, (char *)b.d, b.len, 1024, on_frame, &r, NULL), 0);
    ck_assert_uint_eq(r.n, 1);
    expect_frame(&r, 0, 0x81, "hello, reader", 13);
    ck_assert_ptr_eq(r.f[0].at, (char *)b.d + 6);
    ck_assert(memcmp(b.d + 6, "hello, reader", 13) == 0);
    fy_wsr_free(&w);
    record_free(&r);
    free(b.d);
}
END_TEST

/* A stream with every kind of frame the reader passes: data of many sizes across the length
 * encodings, fragments, control frames between them, and one over the cap. */
static void mixed_stream(bytes *b, size_t cap, record *expected)
{
    static const size_t lens[] = {0, 3, 125, 126, 127, 300, 65535, 65536, 5};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        unsigned char *p = random_payload(lens[i]);
        int b0 = i % 2 ? 0x82 : 0x81;
        frame(b, b0, p, lens[i]);
        on_frame(expected, b0, (char *)p, lens[i]);
        free(p);
    }
    frame_str(b, 0x01, "frag");
    on_frame(expected, 0x01, "frag", 4);
    frame_str(b, 0x89, "ping!");
    on_frame(expected, 0x89, "ping!", 5);
    frame_str(b, 0x00, "ment");
    on_frame(expected, 0x00, "ment", 4);
    frame_str(b, 0x8A, "");
    on_frame(expected, 0x8A, "", 0);
    frame_str(b, 0x80, "ed");
    on_frame(expected, 0x80, "ed", 2);
    unsigned char *big = random_payload(cap + 1000);
    frame(b, 0x81, big, cap + 1000);
    on_frame(expected, 0x81, NULL, cap + 1000);
    free(big);
    unsigned char *p = random_payload(125);
    frame(b, 0x89, p, 125);
    on_frame(expected, 0x89, (char *)p, 125);
    free(p);
    frame_str(b, 0x88, "\x03\xe8" "bye");
    on_frame(expected, 0x88, "\x03\xe8" "bye", 5);
}

START_TEST(wsr_a_stream_fed_byte_by_byte_or_in_random_chunks_gives_the_same_frames)
{
    rng_seed(3);
    const size_t cap = 70000;
    bytes b = {0};
    record expected = {0};
    mixed_stream(&b, cap, &expected);

    record whole = {0};
    const char *why = NULL;
    ck_assert_int_eq(feed_stream(&b, cap, 0, 0, &whole, &why), 0);
    expect_same_records(&whole, &expected);

    record bytewise = {0};
    ck_assert_int_eq(feed_stream(&b, cap, 1, 0, &bytewise, &why), 0);
    expect_same_records(&bytewise, &expected);

    static const size_t max_chunk[] = {2, 7, 16, 130, 1000, 70000};
    for (uint64_t seed = 1; seed <= 6; seed++) {
        for (size_t k = 0; k < sizeof max_chunk / sizeof *max_chunk; k++) {
            record chunked = {0};
            ck_assert_int_eq(feed_stream(&b, cap, max_chunk[k], seed, &chunked, &why), 0);
            expect_same_records(&chunked, &expected);
            record_free(&chunked);
        }
    }
    record_free(&bytewise);
    record_free(&whole);
    record_free(&expected);
    free(b.d);
}
END_TEST

START_TEST(wsr_several_frames_in_one_feed_are_delivered_in_order)
{
    rng_seed(4);
    bytes b = {0};
    frame_str(&b, 0x81, "one");
    frame_str(&b, 0x82, "two");
    frame_str(&b, 0x89, "three");
    frame_str(&b, 0x81, "");
    frame_str(&b, 0x81, "five");
    record r = {0};
    const char *why = NULL;
    ck_assert_int_eq(feed_stream(&b, 100, 0, 0, &r, &why), 0);
    ck_assert_uint_eq(r.n, 5);
    expect_frame(&r, 0, 0x81, "one", 3);
    expect_frame(&r, 1, 0x82, "two", 3);
    expect_frame(&r, 2, 0x89, "three", 5);
    expect_frame(&r, 3, 0x81, "", 0);
    expect_frame(&r, 4, 0x81, "five", 4);
    record_free(&r);
    free(b.d);
}
END_TEST

START_TEST(wsr_a_callback_returning_non_zero_stops_the_feed_which_returns_it)
{
    rng_seed(5);
    bytes b = {0};
    frame_str(&b, 0x81, "one");
    frame_str(&b, 0x81, "two");
    frame_str(&b, 0x81, "three");
    size_t chunks[] = {0, 1, 4};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        record r = {.stop_at = 2, .stop_rc = 42};
        const char *why = NULL;
        ck_assert_int_eq(feed_stream(&b, 100, chunks[i], 9, &r, &why), 42);
        ck_assert_uint_eq(r.n, 2);
        expect_frame(&r, 0, 0x81, "one", 3);
        expect_frame(&r, 1, 0x81, "two", 3);
        record_free(&r);
    }
    /* The value is handed back as it is, negative ones too. */
    record r = {.stop_at = 1, .stop_rc = -7};
    const char *why = NULL;
    ck_assert_int_eq(feed_stream(&b, 100, 0, 0, &r, &why), -7);
    ck_assert_uint_eq(r.n, 1);
    record_free(&r);
    free(b.d);
}
END_TEST

START_TEST(wsr_an_unmasked_client_frame_is_a_protocol_error)
{
    rng_seed(6);
    bytes b = {0};
    unsigned char key[4];
    put_header(&b, 0x81, false, LEN_MINIMAL, 5, key);
    put(&b, "hello", 5);
    expect_protocol_error(&b, 100);
    /* why may be NULL. */
    fy_wsr w;
    fy_wsr_init(&w);
    record r = {0};
    ck_assert_int_eq(feed(&w, b.d, b.len, 100, &r, NULL), FY_WSR_PROTOCOL);
    ck_assert_uint_eq(r.n, 0);
    fy_wsr_free(&w);
    /* After a good frame, too. */
    b.len = 0;
    frame_str(&b, 0x81, "ok");
    put_header(&b, 0x89, false, LEN_MINIMAL, 5, key);
    put(&b, "ping!", 5);
    record r2 = {0};
    const char *why = NULL;
    ck_assert_int_eq(feed_stream(&b, 100, 0, 0, &r2, &why), FY_WSR_PROTOCOL);
    ck_assert_ptr_nonnull(why);
    ck_assert_uint_eq(r2.n, 1);
    expect_frame(&r2, 0, 0x81, "ok", 2);
    record_free(&r2);
    free(b.d);
}
END_TEST

/* An unmasked header has no mask key: its second byte tells all, and the reader must not
 * wait for four more bytes that a client sending a short frame may never send. */
START_TEST(wsr_a_short_unmasked_frame_is_refused_without_waiting_for_more_bytes)
{
    static const unsigned char empty_text[] = {0x81, 0x00};
    static const unsigned char ping_hi[] = {0x89, 0x02, 'h', 'i'};
    static const unsigned char bin_3[] = {0x82, 0x03, 1, 2, 3};
    const struct { const unsigned char *d; size_t n; } cases[] = {
        {empty_text, sizeof empty_text}, {ping_hi, sizeof ping_hi}, {bin_3, sizeof bin_3}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bytes b = {0};
        put(&b, cases[i].d, cases[i].n);
        expect_protocol_error(&b, 100);
        free(b.d);
    }
}
END_TEST

START_TEST(wsr_any_rsv_bit_is_a_protocol_error)
{
    rng_seed(7);
    static const int rsv[] = {0x40, 0x20, 0x10, 0x70};
    static const int ops[] = {0x1, 0x2, 0x0, 0x8, 0x9, 0xA};
    for (size_t i = 0; i < sizeof rsv / sizeof *rsv; i++) {
        for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
            bytes b = {0};
            frame_str(&b, 0x80 | rsv[i] | ops[k], "x");
            expect_protocol_error(&b, 100);
            free(b.d);
        }
    }
}
END_TEST

START_TEST(wsr_reserved_opcodes_are_protocol_errors)
{
    rng_seed(8);
    static const int ops[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        for (int fin = 0; fin <= 0x80; fin += 0x80) {
            bytes b = {0};
            frame_str(&b, fin | ops[k], "");
            expect_protocol_error(&b, 100);
            free(b.d);
        }
    }
}
END_TEST

START_TEST(wsr_control_frames_carry_up_to_125_bytes_whatever_the_cap)
{
    rng_seed(9);
    static const int ops[] = {0x88, 0x89, 0x8A};
    static const size_t caps[] = {0, 10, 125, 1 << 16};
    unsigned char *p = random_payload(125);
    p[0] = 0x03; /* a close code of 1000 */
    p[1] = 0xE8;
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
            bytes b = {0};
            frame(&b, ops[k], p, 125);
            frame(&b, ops[k], p, 2);
            for (size_t chunk = 0; chunk <= 1; chunk++) {
                record r = {0};
                const char *why = NULL;
                ck_assert_int_eq(feed_stream(&b, caps[c], chunk, 0, &r, &why), 0);
                ck_assert_uint_eq(r.n, 2);
                expect_frame(&r, 0, ops[k], p, 125);
                expect_frame(&r, 1, ops[k], p, 2);
                record_free(&r);
            }
            free(b.d);
        }
    }
    free(p);
}
END_TEST

START_TEST(wsr_a_control_frame_over_125_bytes_is_refused_at_its_header)
{
    rng_seed(10);
    static const int ops[] = {0x88, 0x89, 0x8A};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        /* The header alone is enough to refuse it: no payload follows. */
        bytes b = {0};
        unsigned char key[4];
        put_header(&b, ops[k], true, LEN_MINIMAL, 126, key);
        expect_protocol_error(&b, 1 << 16);
        b.len = 0;
        put_header(&b, ops[k], true, LEN_MINIMAL, 70000, key);
        expect_protocol_error(&b, 1 << 20);
        /* And whole. */
        b.len = 0;
        unsigned char *p = random_payload(126);
        frame(&b, ops[k], p, 126);
        expect_protocol_error(&b, 1 << 16);
        free(p);
        free(b.d);
    }
}
END_TEST

START_TEST(wsr_a_fragmented_control_frame_is_a_protocol_error)
{
    rng_seed(11);
    static const int ops[] = {0x08, 0x09, 0x0A};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        bytes b = {0};
        frame_str(&b, ops[k], "");
        expect_protocol_error(&b, 100);
        b.len = 0;
        frame_str(&b, ops[k], "abc");
        expect_protocol_error(&b, 100);
        free(b.d);
    }
}
END_TEST

START_TEST(wsr_a_64_bit_length_with_the_top_bit_set_is_a_protocol_error)
{
    rng_seed(12);
    static const uint64_t claims[] = {1ull << 63, ~0ull, (1ull << 63) | 5};
    for (size_t i = 0; i < sizeof claims / sizeof *claims; i++) {
        bytes b = {0};
        unsigned char key[4];
        put_header(&b, 0x82, true, LEN_64, claims[i], key);
        put(&b, "abcdef", 6);
        expect_protocol_error(&b, 100);
        expect_protocol_error(&b, SIZE_MAX);
        free(b.d);
    }
}
END_TEST

/* The header documents the length as minimally encoded (RFC 6455 5.2). */
START_TEST(wsr_a_length_not_minimally_encoded_is_a_protocol_error)
{
    rng_seed(21);
    static const struct { int form; uint64_t len; } bad[] = {
        {LEN_16, 0}, {LEN_16, 5}, {LEN_16, 125}, {LEN_64, 0}, {LEN_64, 125}, {LEN_64, 126},
        {LEN_64, 0xFFFF}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        for (int op = 0x80; op <= 0x82; op++) {
            bytes b = {0};
            unsigned char key[4];
            unsigned char *p = random_payload((size_t)bad[i].len);
            put_header(&b, op, true, bad[i].form, bad[i].len, key);
            put_masked(&b, key, p, (size_t)bad[i].len);
            expect_protocol_error(&b, 1 << 20);
            free(p);
            free(b.d);
        }
    }
    /* The smallest of each form is fine. */
    rng_seed(22);
    unsigned char *p = random_payload(65536);
    bytes b = {0};
    unsigned char key[4];
    put_header(&b, 0x82, true, LEN_16, 126, key);
    put_masked(&b, key, p, 126);
    put_header(&b, 0x82, true, LEN_64, 65536, key);
    put_masked(&b, key, p, 65536);
    record r = {0};
    const char *why = NULL;
    ck_assert_int_eq(feed_stream(&b, 1 << 20, 0, 0, &r, &why), 0);
    ck_assert_uint_eq(r.n, 2);
    expect_frame(&r, 0, 0x82, p, 126);
    expect_frame(&r, 1, 0x82, p, 65536);
    record_free(&r);
    free(b.d);
    free(p);
}
END_TEST

START_TEST(wsr_a_data_frame_over_the_cap_is_announced_at_its_header_then_skipped)
{
    rng_seed(13);
    static const int ops[] = {0x81, 0x82, 0x01, 0x00, 0x80};
    static const size_t lens[] = {101, 126, 1000, 65536};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            fy_wsr w;
            fy_wsr_init(&w);
            record r = {0};
            const char *why = NULL;
            bytes h = {0};
            unsigned char key[4];
            put_header(&h, ops[k], true, LEN_MINIMAL, lens[l], key);
            ck_assert_int_eq(feed(&w, h.d, h.len, 100, &r, &why), 0);
            ck_assert_uint_eq(r.n, 1);
            expect_announced(&r, 0, ops[k], lens[l]);
            /* The payload, in pieces: nothing more is said about it. */
            unsigned char *p = random_payload(lens[l]);
            bytes rest = {0};
            put_masked(&rest, key, p, lens[l]);
            frame_str(&rest, 0x81, "next");
            size_t at = 0;
            while (at < lens[l]) {
                size_t n = 1 + rng() % 40;
                if (n > lens[l] - at)
                    n = lens[l] - at;
                ck_assert_int_eq(feed(&w, rest.d + at, n, 100, &r, &why), 0);
                ck_assert_uint_eq(r.n, 1);
                at += n;
            }
            ck_assert_int_eq(feed(&w, rest.d + at, rest.len - at, 100, &r, &why), 0);
            ck_assert_uint_eq(r.n, 2);
            expect_frame(&r, 1, 0x81, "next", 4);
            record_free(&r);
            fy_wsr_free(&w);
            free(rest.d);
            free(p);
            free(h.d);
        }
    }
}
END_TEST

START_TEST(wsr_an_over_cap_frame_in_the_middle_of_one_feed_is_skipped_exactly)
{
    rng_seed(14);
    bytes b = {0};
    unsigned char *p = random_payload(500);
    frame_str(&b, 0x81, "before");
    frame(&b, 0x82, p, 500);
    frame_str(&b, 0x81, "after");
    frame(&b, 0x82, p, 499);
    for (size_t chunk = 0; chunk <= 1; chunk++) {
        record r = {0};
        const char *why = NULL;
        ck_assert_int_eq(feed_stream(&b, 499, chunk, 0, &r, &why), 0);
        ck_assert_uint_eq(r.n, 4);
        expect_frame(&r, 0, 0x81, "before", 6);
        expect_announced(&r, 1, 0x82, 500);
        expect_frame(&r, 2, 0x81, "after", 5);
        expect_frame(&r, 3, 0x82, p, 499);
        record_free(&r);
    }
    free(p);
    free(b.d);
}
END_TEST

START_TEST(wsr_a_huge_claimed_length_is_announced_and_skipped_without_allocating)
{
    rng_seed(15);
    fy_wsr w;
    fy_wsr_init(&w);
    record r = {0};
    const char *why = NULL;
    bytes b = {0};
    unsigned char key[4];
    put_header(&b, 0x82, true, LEN_64, 1ull << 62, key);
    ck_assert_int_eq(feed(&w, b.d, b.len, 1 << 20, &r, &why), 0);
    ck_assert_uint_eq(r.n, 1);
    expect_announced(&r, 0, 0x82, 1ull << 62);
    /* A megabyte of it (frame headers among it are payload, never frames). */
    b.len = 0;
    for (int i = 0; i < 4096; i++)
        frame_str(&b, 0x81, "not a frame");
    char *chunk = malloc(65536);
    for (int i = 0; i < 16; i++) {
        memset(chunk, i, 65536);
        memcpy(chunk, b.d, b.len < 65536 ? b.len : 65536);
        ck_assert_int_eq(fy_wsr_feed(&w, chunk, 65536, 1 << 20, on_frame, &r, &why), 0);
    }
    ck_assert_uint_eq(r.n, 1);
    free(chunk);
    fy_wsr_free(&w);
    record_free(&r);
    free(b.d);
}
END_TEST

START_TEST(wsr_a_data_frame_exactly_at_the_cap_is_delivered_with_its_data)
{
    rng_seed(16);
    static const size_t caps[] = {0, 1, 125, 126, 1000, 65536};
    for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
        unsigned char *p = random_payload(caps[c] + 1);
        bytes b = {0};
        frame(&b, 0x81, p, caps[c]);
        frame(&b, 0x82, p, caps[c] + 1);
        frame(&b, 0x80, p, caps[c]);
        static const size_t chunks[] = {0, 1, 50};
        for (size_t k = 0; k < sizeof chunks / sizeof *chunks; k++) {
            record r = {0};
            const char *why = NULL;
            ck_assert_int_eq(feed_stream(&b, caps[c], chunks[k], 3, &r, &why), 0);
            ck_assert_uint_eq(r.n, 3);
            expect_frame(&r, 0, 0x81, p, caps[c]);
            expect_announced(&r, 1, 0x82, caps[c] + 1);
            expect_frame(&r, 2, 0x80, p, caps[c]);
            record_free(&r);
        }
        free(b.d);
        free(p);
    }
}
END_TEST

START_TEST(wsr_fragments_are_separate_frames_and_their_order_is_the_callers)
{
    rng_seed(17);
    bytes b = {0};
    frame_str(&b, 0x01, "Hel");
    frame_str(&b, 0x00, "lo, ");
    frame_str(&b, 0x80, "world");
    /* Out of order for RFC 6455, but the reader passes them: the caller judges. */
    frame_str(&b, 0x80, "stray");
    frame_str(&b, 0x02, "a");
    frame_str(&b, 0x01, "b");
    frame_str(&b, 0x81, "c");
    for (size_t chunk = 0; chunk <= 1; chunk++) {
        record r = {0};
        const char *why = NULL;
        ck_assert_int_eq(feed_stream(&b, 100, chunk, 0, &r, &why), 0);
        ck_assert_uint_eq(r.n, 7);
        expect_frame(&r, 0, 0x01, "Hel", 3);
        expect_frame(&r, 1, 0x00, "lo, ", 4);
        expect_frame(&r, 2, 0x80, "world", 5);
        expect_frame(&r, 3, 0x80, "stray", 5);
        expect_frame(&r, 4, 0x02, "a", 1);
        expect_frame(&r, 5, 0x01, "b", 1);
        expect_frame(&r, 6, 0x81, "c", 1);
        record_free(&r);
    }
    free(b.d);
}
END_TEST

START_TEST(wsr_a_ping_between_fragments_is_delivered_in_order)
{
    rng_seed(18);
    bytes b = {0};
    frame_str(&b, 0x01, "first half, ");
    frame_str(&b, 0x89, "are you there");
    frame_str(&b, 0x80, "second half");
    for (size_t chunk = 0; chunk <= 1; chunk++) {
        record r = {0};
        const char *why = NULL;
        ck_assert_int_eq(feed_stream(&b, 100, chunk, 0, &r, &why), 0);
        ck_assert_uint_eq(r.n, 3);
        expect_frame(&r, 0, 0x01, "first half, ", 12);
        expect_frame(&r, 1, 0x89, "are you there", 13);
        expect_frame(&r, 2, 0x80, "second half", 11);
        record_free(&r);
    }
    free(b.d);
}
END_TEST

START_TEST(wsr_free_releases_a_partial_frame_and_the_reader_can_be_used_again)
{
    rng_seed(19);
    unsigned char *p = random_payload(5000);
    bytes b = {0};
    frame(&b, 0x82, p, 5000);
    fy_wsr w;
    fy_wsr_init(&w);
    record r = {0};
    const char *why = NULL;
    /* Header and a third of the payload, then another third: gathered, not yet delivered. */
    ck_assert_int_eq(feed(&w, b.d, b.len - 3334, 8192, &r, &why), 0);
    ck_assert_int_eq(feed(&w, b.d + b.len - 3334, 1667, 8192, &r, &why), 0);
    ck_assert_uint_eq(r.n, 0);
    fy_wsr_free(&w); /* LeakSanitizer would see the gathered third otherwise */

    /* Empty again: a whole frame reads from its start. */
    ck_assert_int_eq(feed(&w, b.d, b.len, 8192, &r, &why), 0);
    ck_assert_uint_eq(r.n, 1);
    expect_frame(&r, 0, 0x82, p, 5000);

    /* A partial header, then init after free. */
    ck_assert_int_eq(feed(&w, b.d, 5, 8192, &r, &why), 0);
    fy_wsr_free(&w);
    fy_wsr_init(&w);
    ck_assert_int_eq(feed(&w, b.d, b.len - 10, 8192, &r, &why), 0);
    fy_wsr_free(&w);
    fy_wsr_free(&w); /* twice is harmless: it is empty */
    fy_wsr_init(&w);
    bytes c = {0};
    frame_str(&c, 0x81, "fresh");
    ck_assert_int_eq(feed(&w, c.d, c.len, 8192, &r, &why), 0);
    ck_assert_uint_eq(r.n, 2);
    expect_frame(&r, 1, 0x81, "fresh", 5);
    fy_wsr_free(&w);

    /* A zeroed reader is an empty one. */
    fy_wsr z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(feed(&z, c.d, c.len, 8192, &r, &why), 0);
    ck_assert_uint_eq(r.n, 3);
    expect_frame(&r, 2, 0x81, "fresh", 5);
    fy_wsr_free(&z);

    record_free(&r);
    free(c.d);
    free(b.d);
    free(p);
}
END_TEST

START_TEST(wsr_an_empty_feed_consumes_nothing_and_delivers_nothing)
{
    rng_seed(20);
    fy_wsr w;
    fy_wsr_init(&w);
    record r = {0};
    const char *why = NULL;
    char one;
    ck_assert_int_eq(fy_wsr_feed(&w, &one, 0, 100, on_frame, &r, &why), 0);
    bytes b = {0};
    frame_str(&b, 0x81, "abc");
    ck_assert_int_eq(feed(&w, b.d, 4, 100, &r, &why), 0);
    ck_assert_int_eq(fy_wsr_feed(&w, &one, 0, 100, on_frame, &r, &why), 0);
    ck_assert_int_eq(feed(&w, b.d + 4, b.len - 4, 100, &r, &why), 0);
    ck_assert_uint_eq(r.n, 1);
    expect_frame(&r, 0, 0x81, "abc", 3);
    fy_wsr_free(&w);
    record_free(&r);
    free(b.d);
}
END_TEST

/* ---- fy_utf8_valid --------------------------------------------------------------------- */

/* Checks s (of len bytes, copied into a buffer of exactly that size). */
static bool utf8(const char *s, size_t len)
{
    char *c = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(c);
    if (len)
        memcpy(c, s, len);
    bool ok = fy_utf8_valid(c, len);
    free(c);
    return ok;
}

#define U8(lit) utf8(lit, sizeof(lit) - 1)

START_TEST(utf8_ascii_and_two_three_and_four_byte_sequences_are_valid)
{
    ck_assert(U8("hello, world"));
    ck_assert(U8("\x00"));
    ck_assert(U8("a\x00z"));
    ck_assert(U8("\xc3\xa9t\xc3\xa9"));             /* été */
    ck_assert(U8("\xe2\x82\xac 5"));                /* € */
    ck_assert(U8("\xf0\x9f\x98\x80"));              /* U+1F600 */
    ck_assert(U8("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"));
    ck_assert(U8("\xed\x9f\xbf"));                  /* U+D7FF, just below the surrogates */
    ck_assert(U8("\xee\x80\x80"));                  /* U+E000, just above them */
}
END_TEST

START_TEST(utf8_empty_is_valid)
{
    ck_assert(utf8("", 0));
    ck_assert(fy_utf8_valid("\xff", 0));
}
END_TEST

START_TEST(utf8_the_rfc_3629_boundaries_are_valid)
{
    ck_assert(U8("\x7f"));             /* U+007F */
    ck_assert(U8("\xc2\x80"));         /* U+0080 */
    ck_assert(U8("\xdf\xbf"));         /* U+07FF */
    ck_assert(U8("\xe0\xa0\x80"));     /* U+0800 */
    ck_assert(U8("\xef\xbf\xbf"));     /* U+FFFF */
    ck_assert(U8("\xf0\x90\x80\x80")); /* U+10000 */
    ck_assert(U8("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
}
END_TEST

START_TEST(utf8_overlong_forms_are_invalid)
{
    ck_assert(!U8("\xc0\x80"));
    ck_assert(!U8("\xc1\xbf"));
    ck_assert(!U8("\xe0\x80\x80"));
    ck_assert(!U8("\xe0\x9f\xbf"));
    ck_assert(!U8("\xf0\x80\x80\x80"));
    ck_assert(!U8("\xf0\x8f\xbf\xbf"));
    ck_assert(!U8("a\xc0\xafz"));
}
END_TEST

START_TEST(utf8_surrogates_and_code_points_above_u10ffff_are_invalid)
{
    ck_assert(!U8("\xed\xa0\x80"));             /* U+D800 */
    ck_assert(!U8("\xed\xbf\xbf"));             /* U+DFFF */
    ck_assert(!U8("\xed\xa0\xbd\xed\xb8\x80")); /* a CESU-8 pair */
    ck_assert(!U8("\xf4\x90\x80\x80"));         /* U+110000 */
    ck_assert(!U8("\xf4\xbf\xbf\xbf"));
}
END_TEST

START_TEST(utf8_stray_continuation_bytes_and_truncated_sequences_are_invalid)
{
    ck_assert(!U8("\x80"));
    ck_assert(!U8("\xbf"));
    ck_assert(!U8("a\x80z"));
    ck_assert(!U8("\xc3\xa9\xa9"));
    ck_assert(!U8("\xc3"));             /* truncated at the end */
    ck_assert(!U8("ab\xe2\x82"));
    ck_assert(!U8("ab\xe2"));
    ck_assert(!U8("\xf0\x9f\x98"));
    ck_assert(!U8("\xf0\x9f"));
    ck_assert(!U8("\xf0"));
    ck_assert(!U8("\xc3z"));            /* a lead byte followed by no continuation */
    ck_assert(!U8("\xe2\x82z"));
    ck_assert(!U8("\xf0\x9f\x98z"));
    /* The length is what counts: a valid sequence cut by len is invalid. */
    ck_assert(!utf8("\xe2\x82\xac", 2));
    ck_assert(utf8("ab\xe2\x82\xac", 2));
}
END_TEST

START_TEST(utf8_bytes_f5_to_ff_are_invalid)
{
    for (int c = 0xF5; c <= 0xFF; c++) {
        char s[4] = {(char)c, (char)0x80, (char)0x80, (char)0x80};
        ck_assert_msg(!utf8(s, 1), "byte %02x alone", c);
        ck_assert_msg(!utf8(s, 4), "byte %02x then continuations", c);
    }
}
END_TEST

Suite *wsreader_suite(void)
{
    Suite *s = suite_create("wsreader");
    TCase *t = tcase_create("frames");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, wsr_a_masked_text_frame_is_unmasked_for_the_callback_at_every_length_encoding);
    tcase_add_test(t, wsr_a_payload_whole_in_one_feed_is_unmasked_in_place_without_a_copy);
    tcase_add_test(t, wsr_a_stream_fed_byte_by_byte_or_in_random_chunks_gives_the_same_frames);
    tcase_add_test(t, wsr_several_frames_in_one_feed_are_delivered_in_order);
    tcase_add_test(t, wsr_a_callback_returning_non_zero_stops_the_feed_which_returns_it);
    tcase_add_test(t, wsr_an_unmasked_client_frame_is_a_protocol_error);
    tcase_add_test(t, wsr_a_short_unmasked_frame_is_refused_without_waiting_for_more_bytes);
    tcase_add_test(t, wsr_any_rsv_bit_is_a_protocol_error);
    tcase_add_test(t, wsr_reserved_opcodes_are_protocol_errors);
    tcase_add_test(t, wsr_control_frames_carry_up_to_125_bytes_whatever_the_cap);
    tcase_add_test(t, wsr_a_control_frame_over_125_bytes_is_refused_at_its_header);
    tcase_add_test(t, wsr_a_fragmented_control_frame_is_a_protocol_error);
    tcase_add_test(t, wsr_a_64_bit_length_with_the_top_bit_set_is_a_protocol_error);
    tcase_add_test(t, wsr_a_length_not_minimally_encoded_is_a_protocol_error);
    tcase_add_test(t, wsr_a_data_frame_over_the_cap_is_announced_at_its_header_then_skipped);
    tcase_add_test(t, wsr_an_over_cap_frame_in_the_middle_of_one_feed_is_skipped_exactly);
    tcase_add_test(t, wsr_a_huge_claimed_length_is_announced_and_skipped_without_allocating);
    tcase_add_test(t, wsr_a_data_frame_exactly_at_the_cap_is_delivered_with_its_data);
    tcase_add_test(t, wsr_fragments_are_separate_frames_and_their_order_is_the_callers);
    tcase_add_test(t, wsr_a_ping_between_fragments_is_delivered_in_order);
    tcase_add_test(t, wsr_free_releases_a_partial_frame_and_the_reader_can_be_used_again);
    tcase_add_test(t, wsr_an_empty_feed_consumes_nothing_and_delivers_nothing);
    suite_add_tcase(s, t);
    TCase *u = tcase_create("utf8");
    tcase_add_test(u, utf8_ascii_and_two_three_and_four_byte_sequences_are_valid);
    tcase_add_test(u, utf8_empty_is_valid);
    tcase_add_test(u, utf8_the_rfc_3629_boundaries_are_valid);
    tcase_add_test(u, utf8_overlong_forms_are_invalid);
    tcase_add_test(u, utf8_surrogates_and_code_points_above_u10ffff_are_invalid);
    tcase_add_test(u, utf8_stray_continuation_bytes_and_truncated_sequences_are_invalid);
    tcase_add_test(u, utf8_bytes_f5_to_ff_are_invalid);
    suite_add_tcase(s, u);
    return s;
}
