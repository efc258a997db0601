/* Races between a transport's pull and the handshake on the same link, driven
 * deterministically: the core tests are linked with --wrap=pthread_mutex_lock, and a hook
 * runs a call on this thread just before the library takes a chosen mutex, at the exact
 * point a second thread could have run it. */
#include <pthread.h>
#include <string.h>

#include "helpers.h"
#include "link.h" /* the link's lock and its handshake state, to aim the hook */

int __real_pthread_mutex_lock(pthread_mutex_t *m);
int __wrap_pthread_mutex_lock(pthread_mutex_t *m);

/* The hook: before the `nth` lock of `target` from now (1 = the next), when `when` holds,
 * runs fn once. Core tests run one at a time on one thread, so plain statics suffice. */
static struct {
    pthread_mutex_t *target;
    int nth;
    bool (*when)(void *ctx);
    void (*fn)(void *ctx);
    void *ctx;
    bool running, fired;
} hook;

int __wrap_pthread_mutex_lock(pthread_mutex_t *m)
{
    if (hook.target == m && !hook.running && !hook.fired && --hook.nth <= 0 &&
        (!hook.when || hook.when(hook.ctx))) {
        hook.running = true;
        hook.fn(hook.ctx);
        hook.running = false;
        hook.fired = true;
    }
    return __real_pthread_mutex_lock(m);
}

static void hook_arm(pthread_mutex_t *target, int nth, bool (*when)(void *), void (*fn)(void *),
                     void *ctx)
{
    hook.target = NULL;
    hook.nth = nth;
    hook.when = when;
    hook.fn = fn;
    hook.ctx = ctx;
    hook.running = hook.fired = false;
    hook.target = target;
}

static void hook_disarm(void)
{
    hook.target = NULL;
}

struct race {
    fake_conn *c;
    int pulled;
    ferry_buf b;
};

/* The handshake has marked the link as opening (on_open about to run). */
static bool link_opening(void *ctx)
{
    struct race *r = ctx;
    return r->c->link->opening;
}

static void pull_now(void *ctx)
{
    struct race *r = ctx;
    r->pulled = ferry_link_pull(r->c->link, &r->b, FERRY_PULL_ARRAY);
}

/* A pull that arrives once the handshake has marked the link as opening, before the
 * session is bound to it (the first time the handshake takes the link's lock again). The
 * pull must wait for on_open, with nothing sent and nothing crashed. */
START_TEST(a_pull_while_the_handshake_opens_sends_nothing)
{
    ferry_hub *hub = hub_new(NULL);
    struct race r = {.c = fc_open(hub)};
    hook_arm(&r.c->link->lock, 1, link_opening, pull_now, &r);
    ck_assert_int_eq(fc_send(r.c, "{\"t\":\"hello\",\"v\":1}"), 0);
    hook_disarm();
    ck_assert(hook.fired);
    ck_assert_int_eq(r.pulled, 0);
    ck_assert_int_eq((int)r.b.len, 2);
    ck_assert(memcmp(r.b.data, "[]", 2) == 0);
    ck_assert_int_eq(app.opens, 1);
    /* And the welcome comes afterwards, once. */
    json_t *f = fc_drain(r.c);
    ck_assert_int_eq((int)count_of(f, "welcome"), 1);
    json_decref(f);
    ferry_buf_release(&r.b);
    fc_close(r.c);
    hub_free(hub);
}
END_TEST

static void hello_now(void *ctx)
{
    struct race *r = ctx;
    ck_assert_int_eq(fc_send(r->c, "{\"t\":\"hello\",\"v\":1}"), 0);
}

/* A pull that looked for the link's session before the handshake bound one, and takes the
 * link's lock after the whole handshake ran: it must send the welcome of the session that
 * is bound by then. */
START_TEST(a_pull_that_saw_no_session_sends_the_welcome_bound_since)
{
    ferry_hub *hub = hub_new(NULL);
    struct race r = {.c = fc_open(hub)};
    /* The pull takes the link's lock once to find its session, then to encode. */
    hook_arm(&r.c->link->lock, 2, NULL, hello_now, &r);
    json_t *f = fc_pull(r.c, 0);
    hook_disarm();
    ck_assert(hook.fired);
    ck_assert_int_eq((int)count_of(f, "welcome"), 1);
    json_decref(f);
    ferry_buf_release(&r.b);
    fc_close(r.c);
    hub_free(hub);
}
END_TEST

Suite *race_suite(void)
{
    Suite *s = suite_create("race");
    TCase *tc = tcase_create("pull");
    tcase_add_test(tc, a_pull_while_the_handshake_opens_sends_nothing);
    tcase_add_test(tc, a_pull_that_saw_no_session_sends_the_welcome_bound_since);
    suite_add_tcase(s, tc);
    return s;
}
