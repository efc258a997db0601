#include "harness.h"

#include "hub.h"
#include "link.h"
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Identity = token; the token "bad" is refused. */
static int on_auth(const ferry_auth *a, char identity[FERRY_IDENTITY_MAX], const char **reason,
                   void *ud)
{
    tserver *t = ud;
    const char *cookie = a->header(a, "Cookie");
    pthread_mutex_lock(&t->lock);
    snprintf(t->cookie, sizeof t->cookie, "%s", cookie ? cookie : "");
    pthread_mutex_unlock(&t->lock);
    if (a->token && strcmp(a->token, "bad") == 0) {
        *reason = "bad token";
        return 1;
    }
    snprintf(identity, FERRY_IDENTITY_MAX, "%s", a->token ? a->token : "");
    return 0;
}

static void on_open(ferry_session *s, void *ud)
{
    tserver *t = ud;
    ferry_session_subscribe(s, "news");
    pthread_mutex_lock(&t->lock);
    snprintf(t->identity, sizeof t->identity, "%s", ferry_session_identity(s));
    t->opens++;
    pthread_mutex_unlock(&t->lock);
}

static void on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    tserver *t = ud;
    ferry_session_subscribe(s, "news");
    pthread_mutex_lock(&t->lock);
    t->resets++;
    t->last_reset = why;
    pthread_mutex_unlock(&t->lock);
}

/* Records every message; echoes those that ask for it. */
static void on_message(ferry_session *s, json_t *data, void *ud)
{
    tserver *t = ud;
    pthread_mutex_lock(&t->lock);
    json_array_append(t->received, data);
    pthread_mutex_unlock(&t->lock);
    if (json_is_true(json_object_get(data, "echo"))) {
        char *text = json_dumps(data, JSON_COMPACT);
        ferry_session_send(s, text, strlen(text));
        free(text);
    }
}

static void on_close(ferry_session *s, ferry_reason why, void *ud)
{
    (void)s;
    (void)why;
    tserver *t = ud;
    pthread_mutex_lock(&t->lock);
    t->closes++;
    pthread_mutex_unlock(&t->lock);
}

tserver *ts_start(void (*tweak)(ferry_mount_options *o))
{
    tserver *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    t->received = json_array();
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = "127.0.0.1:0";
    so.max_connections = 64;
    t->ctx = ferry_server_start(&so);
    ck_assert_ptr_nonnull(t->ctx);
    t->port = ferry_server_port(t->ctx);
    ck_assert_int_gt(t->port, 0);
    ferry_mount_options mo;
    ferry_mount_options_init(&mo);
    mo.max_connections = 32;
    mo.tick_ms = 50;
    if (tweak)
        tweak(&mo);
    ferry_callbacks cb = {.on_open = on_open, .on_reset = on_reset, .on_message = on_message,
                          .on_close = on_close, .on_auth = on_auth};
    ck_assert_int_eq(ferry_mount_new(t->ctx, &mo, &cb, t, &t->m), 0);
    t->hub = ferry_mount_hub(t->m);
    return t;
}

void ts_stop(tserver *t)
{
    ferry_mount_free(t->m);
    ferry_server_stop(t->ctx);
    json_decref(t->received);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

size_t ts_received(tserver *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = json_array_size(t->received);
    pthread_mutex_unlock(&t->lock);
    return n;
}

static void dump_one(ferry_session *s, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&s->lock);
    fprintf(stderr, "  session %.6s state %d base %lu next %lu end %lu inflight %zu blocked %d armed %d",
            s->id, s->state, (unsigned long)s->out.base, (unsigned long)s->out.next_send,
            (unsigned long)fy_outbox_end(&s->out), s->out.inflight, s->window_blocked, s->wake_armed);
    if (s->link) {
        pthread_mutex_lock(&s->link->lock);
        fprintf(stderr, " link armed %d ctl %u done %d", s->link->armed, s->link->ctl, s->link->done);
        pthread_mutex_unlock(&s->link->lock);
    }
    fprintf(stderr, "\n");
    pthread_mutex_unlock(&s->lock);
}

void ts_dump(tserver *t)
{
    pthread_mutex_lock(&t->hub->lock);
    t->hub->store->ops->each(t->hub->store, dump_one, NULL);
    pthread_mutex_unlock(&t->hub->lock);
}

void ts_expect_received_c(tserver *t, size_t n)
{
    for (int i = 0; i < 50 && ts_received(t) < n; i++)
        usleep(50000);
    ck_assert_uint_eq(ts_received(t), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(t->received, i), "c")),
                         (json_int_t)i + 1);
}

int ts_count(tserver *t, const int *counter)
{
    pthread_mutex_lock(&t->lock);
    int n = *counter;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void ts_publish(tserver *t, const char *json)
{
    ck_assert_int_eq(ferry_hub_publish(t->hub, "news", json, strlen(json), NULL), 0);
}

void *ts_publisher(void *arg)
{
    ts_pub *p = arg;
    for (int i = 1; i <= p->n; i++) {
        char m[64];
        snprintf(m, sizeof m, "{\"i\":%d}", i);
        ts_publish(p->s, m);
        usleep(2000);
    }
    return NULL;
}

void *ts_hold_poll(void *arg)
{
    ts_held *h = arg;
    char q[96];
    snprintf(q, sizeof q, "ack=%ld", h->c->last_seq);
    h->rc = tc_lp(h->c, "GET", q, NULL, &h->r, 30000);
    return NULL;
}

void ts_small_frames(ferry_mount_options *o)
{
    o->core.max_frame_bytes = 1024;
}

void ts_good_origin(ferry_mount_options *o)
{
    o->allowed_origins = "http://good.example, https://also.example";
}

void ts_fast_heartbeat(ferry_mount_options *o)
{
    o->core.heartbeat_ms = 100;
    o->core.heartbeat_timeout_ms = 400;
    o->core.resume_window_ms = 600;
    o->poll_timeout_ms = 300;
}

void tc_init(tc *c, tserver *s, tc_kind kind)
{
    memset(c, 0, sizeof *c);
    c->srv = s;
    c->kind = kind;
    c->ws.fd = -1;
    c->got = json_array();
    c->pending = json_array();
    c->frames = json_array();
}

void tc_free(tc *c)
{
    tc_drop(c);
    json_decref(c->got);
    json_decref(c->pending);
    json_decref(c->frames);
}

static void copy(char *dst, size_t n, json_t *v)
{
    snprintf(dst, n, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* Applies one server frame to the client state. */
static void handle(tc *c, json_t *f)
{
    json_array_append(c->frames, f);
    const char *t = json_string_value(json_object_get(f, "t"));
    if (!t)
        return;
    if (strcmp(t, "welcome") == 0) {
        copy(c->sid, sizeof c->sid, json_object_get(f, "sid"));
        copy(c->secret, sizeof c->secret, json_object_get(f, "secret"));
        c->resumed = json_is_true(json_object_get(f, "resumed"));
        if (!c->resumed) { /* a new session: both sequences start again */
            c->last_seq = 0;
            c->out_seq = 0;
            c->acked_out = 0;
            json_array_clear(c->pending);
        }
        long a = (long)json_integer_value(json_object_get(f, "ack"));
        while (c->acked_out < a && json_array_size(c->pending)) {
            json_array_remove(c->pending, 0);
            c->acked_out++;
        }
    } else if (strcmp(t, "msg") == 0) {
        long seq = (long)json_integer_value(json_object_get(f, "seq"));
        if (seq <= c->last_seq) {
            c->dups++;
        } else {
            if (seq != c->last_seq + 1)
                c->gaps++;
            c->last_seq = seq;
            json_array_append(c->got, json_object_get(f, "data"));
        }
    } else if (strcmp(t, "ack") == 0) {
        long a = (long)json_integer_value(json_object_get(f, "ack"));
        while (c->acked_out < a && json_array_size(c->pending)) {
            json_array_remove(c->pending, 0);
            c->acked_out++;
        }
    } else if (strcmp(t, "error") == 0) {
        copy(c->last_error, sizeof c->last_error, json_object_get(f, "code"));
    } else if (strcmp(t, "reset") == 0) {
        copy(c->last_reset, sizeof c->last_reset, json_object_get(f, "reason"));
    } else if (strcmp(t, "close") == 0) {
        copy(c->last_close, sizeof c->last_close, json_object_get(f, "reason"));
    }
}

static int handle_text(tc *c, const char *text, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(v != NULL, "server sent bad JSON: %s: %.*s", err.text, (int)len, text);
    int n = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *f;
        json_array_foreach(v, i, f) {
            handle(c, f);
            n++;
        }
    } else {
        handle(c, v);
        n = 1;
    }
    json_decref(v);
    return n;
}

int tc_lp(tc *c, const char *method, const char *query, const char *body, fyc_resp *r,
          int timeout_ms)
{
    char target[256], auth[160];
    snprintf(target, sizeof target, "/ferry/lp%s%s", query ? "?" : "", query ? query : "");
    snprintf(auth, sizeof auth, "Authorization: Bearer %s:%s\r\n", c->sid, c->secret);
    return fyc_http(c->srv->port, method, target, auth, body, body ? strlen(body) : 0,
                    timeout_ms, r);
}

static int ws_recv_frames(tc *c, int timeout_ms)
{
    int op;
    char *data;
    size_t len;
    int r = fyc_ws_recv(&c->ws, &op, &data, &len, timeout_ms);
    if (r == -2)
        return 0;
    if (r < 0) {
        c->open = false;
        return -1;
    }
    int n = 0;
    if (op == 1) {
        n = handle_text(c, data, len);
    } else if (op == 8) {
        c->ws_close_code = len >= 2 ? ((unsigned char)data[0] << 8) | (unsigned char)data[1] : 1005;
        c->open = false;
        fyc_ws_drop(&c->ws);
        n = -1;
    } else if (op == 9) {
        fyc_ws_send(&c->ws, 10, true, data, len);
    }
    free(data);
    return n;
}

int tc_connect(tc *c)
{
    char hs[320], tok[96] = "";
    if (c->token[0])
        snprintf(tok, sizeof tok, ",\"token\":\"%s\"", c->token);
    if (c->sid[0])
        snprintf(hs, sizeof hs,
                 "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%ld%s}",
                 c->sid, c->secret, c->last_seq, tok);
    else
        snprintf(hs, sizeof hs, "{\"t\":\"hello\",\"v\":1%s}", tok);
    size_t before = json_array_size(c->frames);
    if (c->kind == TC_WS) {
        int status;
        if (fyc_ws_open(&c->ws, c->srv->port, "/ferry/ws", c->ws_headers, &status) != 0)
            return -1;
        c->open = true;
        fyc_ws_text(&c->ws, hs);
        for (int i = 0; i < 50 && c->open; i++) {
            ws_recv_frames(c, 100);
            for (size_t k = before; k < json_array_size(c->frames); k++)
                if (strcmp(json_string_value(json_object_get(json_array_get(c->frames, k), "t")),
                           "welcome") == 0)
                    goto welcomed;
        }
        return -1;
    } else {
        fyc_resp r;
        if (fyc_http(c->srv->port, "POST", "/ferry/lp", c->ws_headers, hs, strlen(hs), 5000, &r) != 0)
            return -1;
        c->http_status = r.status;
        if (r.body_len)
            handle_text(c, r.body, r.body_len);
        int status = r.status;
        fyc_resp_free(&r);
        if (status != 200)
            return -1;
        c->open = true;
    }
welcomed:
    /* Resend what the server has not acknowledged, in order, with the same seqs. */
    for (size_t i = 0; i < json_array_size(c->pending); i++) {
        char *d = json_dumps(json_array_get(c->pending, i), JSON_COMPACT | JSON_ENCODE_ANY);
        char msg[4096];
        snprintf(msg, sizeof msg, "{\"t\":\"msg\",\"seq\":%ld,\"data\":%s}",
                 c->acked_out + 1 + (long)i, d);
        free(d);
        tc_send_raw(c, msg);
    }
    return 0;
}

int tc_send_raw(tc *c, const char *text)
{
    if (c->kind == TC_WS)
        return fyc_ws_text(&c->ws, text);
    fyc_resp r;
    if (tc_lp(c, "POST", NULL, text, &r, 5000) != 0)
        return -1;
    if (r.body_len)
        handle_text(c, r.body, r.body_len);
    int status = r.status;
    fyc_resp_free(&r);
    return status;
}

int tc_send(tc *c, const char *json)
{
    json_t *d = json_loads(json, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(d);
    json_array_append_new(c->pending, d);
    char msg[4096];
    snprintf(msg, sizeof msg, "{\"t\":\"msg\",\"seq\":%ld,\"data\":%s}", ++c->out_seq, json);
    int rc = tc_send_raw(c, msg);
    return c->kind == TC_WS ? rc : (rc == 200 ? 0 : -1);
}

int tc_pump(tc *c, int timeout_ms)
{
    if (!c->open)
        return -1;
    if (c->kind == TC_WS)
        return ws_recv_frames(c, timeout_ms);
    char q[96];
    fyc_resp r;
    snprintf(q, sizeof q, "ack=%ld", c->last_seq);
    if (tc_lp(c, "GET", q, NULL, &r, timeout_ms + 30000) != 0)
        return -1;
    int n = r.status == 200 ? handle_text(c, r.body, r.body_len) : -1;
    if (r.status != 200) {
        if (r.body_len)
            handle_text(c, r.body, r.body_len);
        c->open = false;
    }
    fyc_resp_free(&r);
    return n;
}

bool tc_wait_msgs(tc *c, size_t n, int timeout_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long waited = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (json_array_size(c->got) >= n || waited >= timeout_ms)
            break;
        int r = tc_pump(c, 100);
        if (r < 0)
            return json_array_size(c->got) >= n;
        /* Like a real client: ack every few messages, and whenever the line goes quiet. */
        if (c->last_seq - c->acked_in >= 8 || (r == 0 && c->last_seq > c->acked_in))
            tc_ack(c);
    }
    return json_array_size(c->got) >= n;
}

int tc_ack(tc *c)
{
    if (c->kind != TC_WS || !c->open)
        return 0;
    char a[64];
    snprintf(a, sizeof a, "{\"t\":\"ack\",\"ack\":%ld}", c->last_seq);
    c->acked_in = c->last_seq;
    return fyc_ws_text(&c->ws, a);
}

void tc_drop(tc *c)
{
    fyc_ws_drop(&c->ws);
    c->open = false;
}

int tc_switch(tc *c, tc_kind kind)
{
    tc_drop(c);
    c->kind = kind;
    return tc_connect(c);
}
