/* libFuzzer target: a whole connection. The input is split at newlines into frames fed to
 * one link (the first few are usually handshakes: hello, resume with real or forged IDs and
 * secrets), with pulls, application sends and clock ticks in between. "@S" and "@K" in a
 * frame stand for the sid and secret of the last welcome, so resumes can succeed. Checks
 * that every pulled batch is valid JSON and that server seqs never repeat or skip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t now;
static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return now;
}

static void on_message(ferry_session *s, json_t *d, void *ud)
{
    (void)d;
    (void)ud;
    ferry_session_send(s, "{\"echo\":1}", 10);
}

static int on_subscribe(ferry_session *s, const char *t, void *ud)
{
    (void)s;
    (void)ud;
    return t[0] == 'p' ? 0 : -1;
}

static void wake(void *ud)
{
    (void)ud;
}

static const ferry_link_ops ops = {sizeof ops, wake, wake};

static char sid[64], secret[64];

/* Replaces @S and @K by the last welcome's sid and secret. */
static size_t substitute(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 64 < cap; i++) {
        if (in[i] == '@' && i + 1 < len && (in[i + 1] == 'S' || in[i + 1] == 'K')) {
            const char *v = in[i + 1] == 'S' ? sid : secret;
            memcpy(out + o, v, strlen(v));
            o += strlen(v);
            i++;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

static void copy_field(char *dst, json_t *v)
{
    const char *s = json_string_value(v);
    if (s && strlen(s) < 64)
        strcpy(dst, s);
}

static void pull_check(ferry_link *l, long *last_seq)
{
    ferry_buf b = {0};
    json_error_t err;
    while (ferry_link_pull(l, &b, FERRY_PULL_ARRAY) > 0) {
        json_t *v = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &err);
        if (!v || !json_is_array(v))
            abort();
        size_t i;
        json_t *f;
        json_array_foreach(v, i, f) {
            const char *t = json_string_value(json_object_get(f, "t"));
            if (!t)
                abort();
            if (strcmp(t, "welcome") == 0) {
                *last_seq = 0; /* a (re)start: seqs follow the session's outbox */
                copy_field(sid, json_object_get(f, "sid"));
                copy_field(secret, json_object_get(f, "secret"));
            }
            if (strcmp(t, "msg") == 0) {
                long seq = (long)json_integer_value(json_object_get(f, "seq"));
                if (*last_seq && seq != *last_seq + 1)
                    abort();
                *last_seq = seq;
            }
        }
        json_decref(v);
        b.len = 0;
    }
    ferry_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ferry_options o;
    ferry_options_init(&o);
    o.clock = fake_clock;
    o.max_frame_bytes = 2048;
    o.outbox_max_msgs = 16;
    o.max_sessions = 4;
    o.heartbeat_ms = 1000;
    o.heartbeat_timeout_ms = 3000;
    o.resume_window_ms = 5000;
    now = 1;
    ferry_callbacks cb = {.size = sizeof cb, .on_message = on_message,
                          .on_subscribe = on_subscribe};
    ferry_hub *hub;
    if (ferry_hub_new(&hub, &o, &cb, NULL))
        abort();
    ferry_link *links[2];
    ferry_link_new(&links[0], hub, &ops, NULL);
    ferry_link_new(&links[1], hub, &ops, NULL);
    long last[2] = {0, 0};
    sid[0] = secret[0] = '\0';
    const char *p = (const char *)data, *end = p + size;
    for (int k = 0; p < end; k++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        int which = len && (p[0] & 1); /* frames alternate between two connections */
        char frame[4096];
        size_t flen = substitute(p, len, frame, sizeof frame);
        ferry_link_recv(links[which], frame, flen);
        if (k % 3 == 0)
            ferry_hub_publish(hub, "public", "[1,2,3]", 7, NULL);
        pull_check(links[which], &last[which]);
        if (k % 5 == 4) {
            now += 1500;
            ferry_hub_tick(hub);
        }
        p += len + 1;
    }
    ferry_link_free(links[0]);
    ferry_link_free(links[1]);
    ferry_hub_free(hub);
    return 0;
}
