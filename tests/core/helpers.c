#include "helpers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h" /* fy_hub_new_store */

uint64_t test_now = 1000;
app_log app;

static uint64_t test_clock(void *ud)
{
    (void)ud;
    return test_now;
}

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    app.opens++;
    app.last_session = s;
    if (app.pull_in_open) {
        ferry_buf b = {0};
        app.pulled_in_open = ferry_link_pull(app.pull_in_open, &b, 0);
        ferry_buf_release(&b);
        ferry_session_send(s, "\"hello from on_open\"", 20);
    }
}

static void on_reset(ferry_session *s, ferry_reason why, void *ud)
{
    (void)ud;
    app.resets++;
    app.last_reset = why;
    app.last_session = s;
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    app.messages++;
    json_array_append(app.received, data);
    if (app.echo) {
        char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        if (ferry_session_send(s, text, strlen(text)) != 0)
            app.echo_errors++;
        free(text);
    }
}

static void on_close(ferry_session *s, ferry_reason why, void *ud)
{
    (void)s;
    (void)ud;
    app.closes++;
    app.last_close = why;
}

/* Clients may subscribe to public/ topics only. */
static int on_subscribe(ferry_session *s, const char *topic, void *ud)
{
    (void)s;
    (void)ud;
    return strncmp(topic, "public/", 7) == 0 ? 0 : -1;
}

/* The identity is the token; the token "bad" is refused. */
static int on_auth(const ferry_auth *a, char identity[FERRY_IDENTITY_MAX], const char **reason,
                   void *ud)
{
    (void)ud;
    app.auths++;
    snprintf(app.auth_sid, sizeof app.auth_sid, "%s", a->session_id ? a->session_id : "");
    const char *cookie = a->header(a, "Cookie");
    snprintf(app.auth_cookie, sizeof app.auth_cookie, "%s", cookie ? cookie : "");
    if (a->token && strcmp(a->token, "bad") == 0) {
        *reason = "bad token";
        return -1;
    }
    snprintf(identity, FERRY_IDENTITY_MAX, "%s", a->token ? a->token : "");
    return 0;
}

static const ferry_callbacks callbacks = {sizeof callbacks, on_open, on_reset, on_message,
                                          on_close, on_subscribe, on_auth};

ferry_hub *hub_new(void (*tweak)(ferry_options *o))
{
    return hub_new_store(tweak, fy_store_mem_new());
}

ferry_hub *hub_new_store(void (*tweak)(ferry_options *o), struct fy_store *store)
{
    ferry_options o;
    ferry_hub *hub;
    ferry_options_init(&o);
    o.clock = test_clock;
    if (tweak)
        tweak(&o);
    json_decref(app.received);
    memset(&app, 0, sizeof app);
    app.received = json_array();
    test_now = 1000;
    ck_assert_int_eq(fy_hub_new_store(&hub, &o, &callbacks, NULL, store), 0);
    return hub;
}

void hub_free(ferry_hub *hub)
{
    ferry_hub_free(hub);
    json_decref(app.received);
    app.received = NULL;
}

static void fc_wake(void *ud)
{
    ((fake_conn *)ud)->wakes++;
}

static void fc_kick(void *ud)
{
    ((fake_conn *)ud)->kicks++;
}

static const ferry_link_ops fc_ops = {sizeof fc_ops, fc_wake, fc_kick};

fake_conn *fc_open(ferry_hub *hub)
{
    fake_conn *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ferry_link_new(&c->link, hub, &fc_ops, c), 0);
    return c;
}

int fc_send_raw(fake_conn *c, const char *data, size_t len)
{
    return ferry_link_recv(c->link, data, len);
}

int fc_send(fake_conn *c, const char *fmt, ...)
{
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof text);
    return fc_send_raw(c, text, (size_t)n);
}

json_t *fc_pull(fake_conn *c, unsigned flags)
{
    json_error_t err;
    c->buf.len = 0;
    int n = ferry_link_pull(c->link, &c->buf, flags);
    ck_assert_int_ge(n, 0);
    if (c->buf.len == 0)
        return json_array();
    json_t *v = json_loadb(c->buf.data, c->buf.len, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(v != NULL, "pulled text is not JSON: %s (%.*s)", err.text, (int)c->buf.len,
                  c->buf.data);
    if (json_is_object(v)) {
        ck_assert_int_eq(n, 1);
        json_t *a = json_array();
        json_array_append_new(a, v);
        return a;
    }
    ck_assert_int_eq((int)json_array_size(v), n);
    return v;
}

json_t *fc_drain(fake_conn *c)
{
    json_t *all = json_array();
    for (;;) {
        json_t *f = fc_pull(c, 0);
        size_t n = json_array_size(f);
        json_array_extend(all, f);
        json_decref(f);
        if (n == 0)
            return all;
    }
}

void fc_close(fake_conn *c)
{
    ferry_link_free(c->link);
    ferry_buf_release(&c->buf);
    free(c);
}

fake_conn *fc_hello(ferry_hub *hub, char sid[32], char secret[64])
{
    fake_conn *c = fc_open(hub);
    ck_assert_int_eq(fc_send(c, "{\"t\":\"hello\",\"v\":1}"), 0);
    json_t *f = fc_drain(c);
    json_t *w = frame_of(f, "welcome", 0);
    ck_assert_ptr_nonnull(w);
    if (sid)
        snprintf(sid, 32, "%s", str_of(w, "sid"));
    if (secret)
        snprintf(secret, 64, "%s", str_of(w, "secret"));
    json_decref(f);
    return c;
}

json_t *frame_of(json_t *frames, const char *type, size_t nth)
{
    size_t i;
    json_t *f;
    json_array_foreach(frames, i, f) {
        if (strcmp(json_string_value(json_object_get(f, "t")), type) == 0 && nth-- == 0)
            return f;
    }
    return NULL;
}

size_t count_of(json_t *frames, const char *type)
{
    size_t i, n = 0;
    json_t *f;
    json_array_foreach(frames, i, f) n += strcmp(json_string_value(json_object_get(f, "t")), type) == 0;
    return n;
}

const char *str_of(json_t *frame, const char *key)
{
    ck_assert_ptr_nonnull(frame);
    json_t *v = json_object_get(frame, key);
    ck_assert_msg(json_is_string(v), "field %s is not a string", key);
    return json_string_value(v);
}

json_int_t int_of(json_t *frame, const char *key)
{
    ck_assert_ptr_nonnull(frame);
    json_t *v = json_object_get(frame, key);
    ck_assert_msg(json_is_integer(v), "field %s is not an integer", key);
    return json_integer_value(v);
}
