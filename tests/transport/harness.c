#include "harness.h"

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

/* civetweb's begin_request: records the request as the server received it and lets it go
 * on to its handler. */
static int record_request(struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    tserver *t = mg_get_user_data(mg_get_context(conn));
    const char *auth = mg_get_header(conn, "Authorization");
    json_t *r = json_pack("{s:s, s:s, s:s, s:s}",
                          "method", ri->request_method ? ri->request_method : "",
                          "uri", ri->request_uri ? ri->request_uri : "",
                          "query", ri->query_string ? ri->query_string : "",
                          "auth", auth ? auth : "");
    pthread_mutex_lock(&t->lock);
    json_array_append_new(t->requests, r);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* A context like ferry_server_start's, with begin_request recording into t->requests. */
static struct mg_context *start_recording(tserver *t)
{
    const char *opts[] = {"listening_ports", "127.0.0.1:0", "num_threads", "100",
                          "tcp_nodelay", "1", "websocket_timeout_ms", "1000",
                          "access_control_allow_methods", "", NULL};
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    cbs.begin_request = record_request;
    t->requests = json_array();
    mg_init_library(0);
    return mg_start(&cbs, t, opts);
}

unsigned ts_event_threads(void)
{
    const char *v = getenv("FERRY_TEST_EVENT_THREADS");
    ferry_mount_options d;
    ferry_mount_options_init(&d);
    return v ? (unsigned)atoi(v) : d.event_threads;
}

static tserver *start(void (*tweak)(ferry_mount_options *o), bool recording, size_t workers)
{
    tserver *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    t->received = json_array();
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.listen = "127.0.0.1:0";
    so.max_connections = 64;
    so.worker_threads = workers;
    if (recording)
        t->ctx = start_recording(t);
    else
        ck_assert_int_eq(ferry_server_start(&t->ctx, &so), FERRY_OK);
    ck_assert_ptr_nonnull(t->ctx);
    t->port = ferry_server_port(t->ctx);
    ck_assert_int_gt(t->port, 0);
    ferry_options core;
    ferry_options_init(&core);
    ferry_mount_options mo;
    ferry_mount_options_init(&mo);
    mo.core = &core; /* tweaks change it through ts_core */
    mo.max_connections = 32;
    mo.tick_ms = 50;
    /* The suites run once on civetweb's workers and once on event loops. */
    mo.event_threads = ts_event_threads();
    if (tweak)
        tweak(&mo);
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open, .on_reset = on_reset,
                          .on_message = on_message, .on_close = on_close, .on_auth = on_auth};
    ck_assert_int_eq(ferry_mount_new(&t->m, t->ctx, &mo, &cb, t), 0);
    t->hub = ferry_mount_hub(t->m);
    return t;
}

tserver *ts_start(void (*tweak)(ferry_mount_options *o))
{
    return start(tweak, false, 0);
}

tserver *ts_start_workers(void (*tweak)(ferry_mount_options *o), size_t workers)
{
    return start(tweak, false, workers);
}

tserver *ts_start_recording(void (*tweak)(ferry_mount_options *o))
{
    return start(tweak, true, 0);
}

void ts_stop(tserver *t)
{
    ferry_mount_free(t->m);
    ferry_server_stop(t->ctx);
    json_decref(t->received);
    json_decref(t->requests);
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

void ts_dump(tserver *t)
{
    ferry_buf b = {0};
    if (ferry_mount_metrics(t->m, &b) == 0)
        fprintf(stderr, "%.*s", (int)b.len, b.data);
    ferry_buf_release(&b);
}

long ts_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool ts_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms)
{
    long end = ts_ms() + timeout_ms;
    bool ok;
    while (!(ok = cond(ud)) && ts_ms() < end)
        usleep(1000);
    return ok;
}

struct count_wait {
    tserver *t;
    const int *counter;
    int n;
};

static bool count_reached(void *ud)
{
    struct count_wait *w = ud;
    return ts_count(w->t, w->counter) >= w->n;
}

bool ts_wait_count(tserver *t, const int *counter, int n, int timeout_ms)
{
    struct count_wait w = {t, counter, n};
    return ts_wait_until(count_reached, &w, timeout_ms);
}

long ts_metric(tserver *t, const char *series)
{
    ferry_buf b = {0};
    char key[160];
    int n = snprintf(key, sizeof key, "\n%s ", series);
    ck_assert_int_eq(ferry_mount_metrics(t->m, &b), 0);
    ck_assert_int_eq(ferry_buf_reserve(&b, 1), 0);
    b.data[b.len] = '\0';
    const char *p = strstr(b.data, key);
    ck_assert_msg(p != NULL, "no %s in the metrics", series);
    long v = strtol(p + n, NULL, 10);
    ferry_buf_release(&b);
    return v;
}

struct metric_wait {
    tserver *t;
    const char *series;
    long n;
};

static bool metric_reached(void *ud)
{
    struct metric_wait *w = ud;
    return ts_metric(w->t, w->series) == w->n;
}

bool ts_wait_metric(tserver *t, const char *series, long n, int timeout_ms)
{
    struct metric_wait w = {t, series, n};
    return ts_wait_until(metric_reached, &w, timeout_ms);
}

bool ts_wait_held_polls(tserver *t, long n, int timeout_ms)
{
    return ts_wait_metric(t, "ferry_held_polls", n, timeout_ms);
}

struct attached_wait {
    tserver *t;
    size_t n;
};

static bool attached_reached(void *ud)
{
    struct attached_wait *w = ud;
    size_t att;
    ferry_hub_counts(w->t->hub, &att, NULL, NULL);
    return att == w->n;
}

bool ts_wait_attached(tserver *t, size_t attached, int timeout_ms)
{
    struct attached_wait w = {t, attached};
    return ts_wait_until(attached_reached, &w, timeout_ms);
}

struct received_wait {
    tserver *t;
    size_t n;
};

static bool received_reached(void *ud)
{
    struct received_wait *w = ud;
    return ts_received(w->t) >= w->n;
}

void ts_expect_received_c(tserver *t, size_t n)
{
    struct received_wait w = {t, n};
    ts_wait_until(received_reached, &w, 2500);
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

ferry_options *ts_core(ferry_mount_options *o)
{
    return (ferry_options *)o->core; /* the harness's own, not const */
}

void ts_small_frames(ferry_mount_options *o)
{
    ts_core(o)->max_frame_bytes = 1024;
}

void ts_good_origin(ferry_mount_options *o)
{
    o->allowed_origins = "http://good.example, https://also.example";
}

atomic_ullong ts_skew_ms;

uint64_t ts_skewed_clock(void *ud)
{
    (void)ud;
    return (uint64_t)ts_ms() + atomic_load(&ts_skew_ms);
}

void ts_fast_heartbeat(ferry_mount_options *o)
{
    ts_core(o)->heartbeat_ms = 100;
    ts_core(o)->heartbeat_timeout_ms = 400;
    ts_core(o)->resume_window_ms = 600;
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
