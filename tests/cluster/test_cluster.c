/* Hubs in a cluster (ferry_cluster.h) against a real redis-server: publish on one node
 * reaching subscribers on every node, direct sends across nodes, sessions moving between
 * nodes with their outbox, subscriptions and inbound seq, a node that stops dead, and Redis
 * stopped, flushed and back. Every hub here is a node of its own, with its own
 * connections and reader thread; a "client" is a link driven by this thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "cluster_seam.h"
#include "ferry_cluster.h"
#include "helpers.h"
#include "hub.h"
#include "session.h"

/* --- nodes --- */

typedef struct node {
    ferry_cluster *c;
    ferry_hub *hub;
    char prefix[48];
} node;

static atomic_uint clusters;
static char cluster_prefix[48]; /* of the cluster the test's nodes share */

/* What the application saw, from any thread. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *seen;            /* [[seq, repeated, data], ...] in on_message order */
static atomic_int opens, closes;

static void on_open(ferry_session *s, void *ud)
{
    (void)s;
    (void)ud;
    atomic_fetch_add(&opens, 1);
}

static void on_close(ferry_session *s, ferry_reason why, void *ud)
{
    (void)s;
    (void)why;
    (void)ud;
    atomic_fetch_add(&closes, 1);
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&seen_lock);
    json_array_append_new(seen, json_pack("[I,b,O]", (json_int_t)ferry_session_message_seq(s),
                                          ferry_session_message_repeated(s), data));
    pthread_mutex_unlock(&seen_lock);
}

static int on_subscribe(ferry_session *s, const char *topic, void *ud)
{
    (void)s;
    (void)topic;
    (void)ud;
    return 0;
}

static const ferry_callbacks cbs = {sizeof cbs, on_open, NULL, on_message, on_close, on_subscribe,
                                    NULL};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Waits up to 5 s for cond(ud). */
static bool eventually(bool (*cond)(void *ud), void *ud)
{
    for (int i = 0; i < 500; i++) {
        if (cond(ud))
            return true;
        sleep_ms(10);
    }
    return cond(ud);
}

static bool hub_ready(void *ud)
{
    fy_pos p;
    return ferry_hub_health(ud) == FERRY_OK && fy_hub_feed_pos(ud, &p);
}

static void new_cluster_prefix(void)
{
    snprintf(cluster_prefix, sizeof cluster_prefix, "c%d-%u:", (int)getpid(),
             atomic_fetch_add(&clusters, 1));
}

/* A node with the application `cb` (NULL: cbs) and a feed of at most feed_max entries (0:
 * the default). */
static node node_start_with(const char *name, const char *addr, void (*tweak)(ferry_options *o),
                            const ferry_callbacks *cb, size_t feed_max)
{
    node n = {0};
    ferry_cluster_options co;
    ferry_cluster_options_init(&co);
    co.redis = addr ? addr : shared_redis.addr;
    co.node = name;
    co.prefix = cluster_prefix;
    co.connect_timeout_ms = 300;
    if (feed_max)
        co.feed_max = feed_max;
    ck_assert_int_eq(ferry_cluster_new(&n.c, &co), FERRY_OK);
    ferry_options o;
    ferry_options_init(&o);
    o.cluster = n.c;
    o.resume_rate = 0;
    if (tweak)
        tweak(&o);
    ck_assert_int_eq(ferry_hub_new(&n.hub, &o, cb ? cb : &cbs, NULL), FERRY_OK);
    ck_assert_str_eq(ferry_hub_node(n.hub), name);
    ck_assert(eventually(hub_ready, n.hub));
    return n;
}

static node node_start(const char *name, const char *addr, void (*tweak)(ferry_options *o))
{
    return node_start_with(name, addr, tweak, NULL, 0);
}

static void node_stop(node *n)
{
    ferry_hub_free(n->hub);
    ferry_cluster_free(n->c);
    *n = (node){0};
}

static void setup(void)
{
    new_cluster_prefix();
    seen = json_array();
    atomic_store(&opens, 0);
    atomic_store(&closes, 0);
}

static void teardown(void)
{
    json_decref(seen);
    seen = NULL;
}

/* --- clients --- */

typedef struct client {
    ferry_link *link;
    atomic_int wakes, kicks;
    ferry_buf buf;
    char sid[32], secret[64];
    json_int_t last_seq; /* the highest msg seq received */
    json_t *msgs;        /* every msg frame received, in order */
} client;

static void cl_wake(void *ud)
{
    atomic_fetch_add(&((client *)ud)->wakes, 1);
}

static void cl_kick(void *ud)
{
    atomic_fetch_add(&((client *)ud)->kicks, 1);
}

static const ferry_link_ops cl_ops = {sizeof cl_ops, cl_wake, cl_kick};

static client *cl_open(ferry_hub *hub)
{
    client *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ferry_link_new(&c->link, hub, &cl_ops, c), 0);
    c->msgs = json_array();
    return c;
}

static int cl_send(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cl_send(client *c, const char *fmt, ...)
{
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return ferry_link_recv(c->link, text, (size_t)n);
}

/* Pulls everything due; msg frames are kept in c->msgs; returns every frame. */
static json_t *cl_drain(client *c)
{
    json_t *all = json_array();
    for (;;) {
        c->buf.len = 0;
        int n = ferry_link_pull(c->link, &c->buf, 0);
        ck_assert_int_ge(n, 0);
        if (c->buf.len == 0)
            break;
        json_t *v = json_loadb(c->buf.data, c->buf.len, 0, NULL);
        ck_assert_ptr_nonnull(v);
        if (json_is_object(v)) {
            json_t *a = json_array();
            json_array_append_new(a, v);
            v = a;
        }
        size_t i;
        json_t *f;
        json_array_foreach(v, i, f) {
            const char *t = json_string_value(json_object_get(f, "t"));
            if (t && strcmp(t, "msg") == 0) {
                json_array_append(c->msgs, f);
                c->last_seq = json_integer_value(json_object_get(f, "seq"));
            }
            if (t && strcmp(t, "welcome") == 0) {
                snprintf(c->sid, sizeof c->sid, "%s", json_string_value(json_object_get(f, "sid")));
                snprintf(c->secret, sizeof c->secret, "%s",
                         json_string_value(json_object_get(f, "secret")));
            }
        }
        json_array_extend(all, v);
        json_decref(v);
    }
    return all;
}

static void cl_free(client *c)
{
    ferry_link_free(c->link);
    ferry_buf_release(&c->buf);
    json_decref(c->msgs);
    free(c);
}

static client *cl_hello(ferry_hub *hub)
{
    client *c = cl_open(hub);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"hello\",\"v\":1}"), 0);
    json_decref(cl_drain(c));
    ck_assert_int_eq((int)strlen(c->sid), 22);
    return c;
}

/* A new session subscribed to `topic` by its client. */
static client *cl_subscribed(ferry_hub *hub, const char *topic)
{
    client *c = cl_hello(hub);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"sub\",\"topic\":\"%s\"}", topic), 0);
    return c;
}

/* The same client on a new connection to `hub`: resumes with its ack (`ack`, or its last
 * seq when negative); the frames of the answer. */
static json_t *cl_resume(client *c, ferry_hub *hub, long long ack)
{
    ferry_link_free(c->link);
    ck_assert_int_eq(ferry_link_new(&c->link, hub, &cl_ops, c), 0);
    /* a refusal (the store failing) comes back as an error frame */
    cl_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%lld}", c->sid,
            c->secret, ack < 0 ? (long long)c->last_seq : ack);
    return cl_drain(c);
}

struct want {
    client *c;
    size_t n;
};

static bool has_msgs(void *ud)
{
    struct want *w = ud;
    json_decref(cl_drain(w->c));
    return json_array_size(w->c->msgs) >= w->n;
}

/* Waits until c has received n msg frames in all. */
static void wait_msgs(client *c, size_t n)
{
    struct want w = {c, n};
    ck_assert_msg(eventually(has_msgs, &w), "%zu of %zu messages", json_array_size(c->msgs), n);
}

/* Asserts c's messages are seq 1..n in order with data 1..n (or data from `first`). */
static void assert_stream(client *c, json_int_t first_seq, json_int_t first_data, size_t n)
{
    ck_assert_uint_eq(json_array_size(c->msgs), n);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(c->msgs, i);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "seq")), first_seq + (json_int_t)i);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "data")), first_data + (json_int_t)i);
    }
}

static void publish_n(ferry_hub *hub, const char *topic, int from, int to)
{
    for (int i = from; i <= to; i++) {
        char m[16];
        int len = snprintf(m, sizeof m, "%d", i);
        ck_assert_int_eq(ferry_hub_publish(hub, topic, m, (size_t)len, NULL), FERRY_OK);
    }
}

static long long feed_len(void)
{
    fy_redis *r = test_redis_pool(NULL);
    char key[80];
    snprintf(key, sizeof key, "%sfeed", cluster_prefix);
    const char *argv[] = {"XLEN", key};
    redisReply *rep = test_redis_cmd(r, 2, argv);
    long long n = rep->integer;
    freeReplyObject(rep);
    fy_redis_free(r);
    return n;
}

/* --- tests --- */

START_TEST(a_publish_on_one_node_reaches_subscribers_on_every_node_once_and_in_order)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *ca = cl_hello(a.hub), *cb = cl_hello(b.hub);
    ck_assert_int_eq(cl_send(ca, "{\"t\":\"sub\",\"topic\":\"scores\"}"), 0);
    ck_assert_int_eq(cl_send(cb, "{\"t\":\"sub\",\"topic\":\"scores\"}"), 0);
    long long before = feed_len();
    publish_n(a.hub, "scores", 1, 20);
    publish_n(b.hub, "scores", 21, 40);
    /* one stream entry per publish, whatever the number of subscribers and nodes */
    ck_assert_int_eq(feed_len() - before, 40);
    wait_msgs(ca, 40);
    wait_msgs(cb, 40);
    sleep_ms(100);
    json_decref(cl_drain(ca));
    json_decref(cl_drain(cb));
    assert_stream(ca, 1, 1, 40);
    assert_stream(cb, 1, 1, 40);
    cl_free(ca);
    cl_free(cb);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

START_TEST(a_direct_send_reaches_a_session_served_by_another_node)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *c = cl_hello(a.hub);
    ck_assert_int_eq(ferry_hub_send(b.hub, c->sid, "7", 1), FERRY_OK);
    ck_assert_int_eq(ferry_hub_send(b.hub, "AAAAAAAAAAAAAAAAAAAAAA", "7", 1), FERRY_ENOTFOUND);
    wait_msgs(c, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c->msgs, 0), "data")), 7);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* The client had 1..5 and acked 3 when its connection to a went; it resumes on b: 4 and 5
 * come again with the same seqs, and what is published next follows, once, only on b. */
START_TEST(a_session_resumes_on_another_node_with_its_outbox_and_subscriptions)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *c = cl_subscribed(a.hub, "t");
    publish_n(a.hub, "t", 1, 5);
    wait_msgs(c, 5);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ack\",\"ack\":3}"), 0);
    client *old = cl_open(a.hub); /* keeps a's connection object alive to see it kicked */
    ferry_link *a_link = c->link;
    c->link = old->link;
    old->link = a_link;

    json_t *f = cl_resume(c, b.hub, 3);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    wait_msgs(c, 7); /* b's reader may hand some out after the welcome */
    ck_assert_uint_eq(json_array_size(c->msgs), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c->msgs, 5), "seq")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c->msgs, 6), "seq")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c->msgs, 6), "data")), 5);

    /* a lets it go: its old connection is kicked as superseded */
    for (int i = 0; i < 500 && ferry_link_end_reason(old->link) == FERRY_LINK_OPEN; i++)
        sleep_ms(10);
    ck_assert_int_eq(ferry_link_end_reason(old->link), FERRY_LINK_SUPERSEDED);

    publish_n(a.hub, "t", 6, 8);
    wait_msgs(c, 10);
    sleep_ms(100);
    json_decref(cl_drain(c));
    ck_assert_uint_eq(json_array_size(c->msgs), 10);
    for (int i = 7; i < 10; i++) {
        json_t *m = json_array_get(c->msgs, (size_t)i);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "seq")), i - 1);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "data")), i - 1);
    }
    ck_assert_int_eq(atomic_load(&closes), 0);
    cl_free(old);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* A node that stops dead (its reader stopped, nothing saved, its lease left as it was):
 * the session resumes on another node with everything the client had not acked, including
 * what was published while nobody served it, and nothing twice. */
START_TEST(a_session_of_a_dead_node_resumes_elsewhere_without_loss)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *c = cl_hello(a.hub);
    ck_assert_int_eq(ferry_session_subscribe(NULL, "t"), FERRY_EINVAL);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"sub\",\"topic\":\"t\"}"), 0);
    ck_assert_int_eq(ferry_hub_send(a.hub, c->sid, "0", 1), FERRY_OK);
    publish_n(b.hub, "t", 1, 4);
    wait_msgs(c, 5);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ack\",\"ack\":2}"), 0);
    ferry_hub_tick(a.hub); /* a saves a cursor (at ack 2) before it dies */
    a.c->ops->stop(a.c); /* dead: reads nothing more */
    publish_n(b.hub, "t", 5, 6);
    ck_assert_int_eq(ferry_hub_send(b.hub, c->sid, "100", 3), FERRY_OK);

    json_t *f = cl_resume(c, b.hub, 3); /* it had got 3 too */
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    wait_msgs(c, 5 + 5);
    sleep_ms(100);
    json_decref(cl_drain(c));
    /* 4 (data 3), 5 (data 4), then 6, 7 (data 5, 6) and the direct 100 as seq 8 */
    json_int_t want_seq[] = {4, 5, 6, 7, 8}, want_data[] = {3, 4, 5, 6, 100};
    ck_assert_uint_eq(json_array_size(c->msgs), 10);
    for (int i = 0; i < 5; i++) {
        json_t *m = json_array_get(c->msgs, (size_t)(5 + i));
        ck_assert_int_eq(json_integer_value(json_object_get(m, "seq")), want_seq[i]);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "data")), want_data[i]);
    }
    cl_free(c);
    node_stop(&b);
    node_stop(&a);
}
END_TEST

/* The node a session moves to has read less of the feed than the node it comes from (its
 * reader is held back here): it numbers from the feed itself up to everything the record
 * names, and its reader's later copies of those entries are not handed out again. */
START_TEST(a_node_behind_on_the_feed_adopts_without_repeating)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    b.c->ops->stop(b.c);
    client *c = cl_subscribed(a.hub, "t");
    publish_n(a.hub, "t", 1, 2);
    wait_msgs(c, 2);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ack\",\"ack\":2}"), 0);
    ferry_hub_tick(a.hub); /* the cursor: everything up to a's head is numbered */
    json_t *f = cl_resume(c, b.hub, 2);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    ck_assert_int_eq(b.c->ops->start(b.c, b.hub), 0); /* b reads 1 and 2 now */
    publish_n(a.hub, "t", 3, 3);
    wait_msgs(c, 3);
    sleep_ms(200);
    json_decref(cl_drain(c));
    assert_stream(c, 1, 1, 3);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* A secret the session replaced, presented on a node that does not serve it: two parties
 * hold it. The presenter gets what any stranger gets, and the session ends as forked where
 * it is served, its connection told so. */
START_TEST(a_retired_secret_presented_on_another_node_ends_the_session_as_forked)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *c = cl_hello(a.hub);
    char old_secret[64];
    memcpy(old_secret, c->secret, sizeof old_secret);
    json_decref(cl_resume(c, a.hub, 0));
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ping\"}"), 0); /* proves the new secret: the old retires */
    json_decref(cl_drain(c));

    client *thief = cl_open(b.hub);
    memcpy(thief->sid, c->sid, sizeof thief->sid);
    memcpy(thief->secret, old_secret, sizeof thief->secret);
    json_t *f = cl_resume(thief, b.hub, 0);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);

    f = cl_drain(c); /* the final frame comes once the serving node reads of the end */
    for (int i = 0; i < 500 && !frame_of(f, "reset", 0); i++) {
        sleep_ms(10);
        json_t *more = cl_drain(c);
        json_array_extend(f, more);
        json_decref(more);
    }
    ck_assert_ptr_nonnull(frame_of(f, "reset", 0));
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
    json_decref(f);
    ck_assert(ferry_link_done(c->link));
    f = cl_resume(c, b.hub, 0); /* and its newest secret now gets the reason, anywhere */
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "forked");
    json_decref(f);
    cl_free(thief);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

START_TEST(a_subscription_ended_on_one_node_stays_ended_on_the_next)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *c = cl_subscribed(a.hub, "x");
    ck_assert_int_eq(cl_send(c, "{\"t\":\"sub\",\"topic\":\"y\"}"), 0);
    publish_n(a.hub, "x", 1, 2);
    wait_msgs(c, 2);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"unsub\",\"topic\":\"x\"}"), 0);
    publish_n(a.hub, "x", 3, 3);
    publish_n(a.hub, "y", 4, 4);
    wait_msgs(c, 3);
    /* on b from the start (ack 0): 1, 2 while subscribed, not 3, and 4 from y */
    json_t *f = cl_resume(c, b.hub, 0);
    json_decref(f);
    wait_msgs(c, 6);
    ck_assert_uint_eq(json_array_size(c->msgs), 6);
    json_int_t want[] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        json_t *m = json_array_get(c->msgs, (size_t)(3 + i));
        ck_assert_int_eq(json_integer_value(json_object_get(m, "seq")), i + 1);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "data")), want[i]);
    }
    publish_n(a.hub, "x", 5, 5);
    publish_n(a.hub, "y", 6, 6);
    wait_msgs(c, 7);
    sleep_ms(100);
    json_decref(cl_drain(c));
    ck_assert_uint_eq(json_array_size(c->msgs), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c->msgs, 6), "data")), 6);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* Client-to-server across a takeover: what one node recorded as delivered is not delivered
 * again; what it had begun to deliver and not recorded comes again, marked. */
static atomic_int block_in_message;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static void on_message_blocking(ferry_session *s, json_t *data, void *ud)
{
    on_message(s, data, ud);
    if (atomic_load(&block_in_message) && json_integer_value(data) == 3) {
        pthread_mutex_lock(&gate); /* held by the test: this node "hangs" mid-delivery */
        pthread_mutex_unlock(&gate);
    }
}

struct sender {
    client *c;
    int rc;
};

static void *send_batch(void *ud)
{
    struct sender *s = ud;
    s->rc = cl_send(s->c, "[{\"t\":\"msg\",\"seq\":3,\"data\":3},{\"t\":\"msg\",\"seq\":4,\"data\":4}]");
    return NULL;
}

static bool seen_n(void *ud)
{
    pthread_mutex_lock(&seen_lock);
    bool ok = json_array_size(seen) >= (size_t)(intptr_t)ud;
    pthread_mutex_unlock(&seen_lock);
    return ok;
}

START_TEST(inbound_messages_a_node_began_to_deliver_come_again_marked_on_the_next)
{
    ferry_callbacks cb = cbs;
    cb.on_message = on_message_blocking;
    node a = node_start_with("a", NULL, NULL, &cb, 0), b = node_start("b", NULL, NULL);

    client *c = cl_hello(a.hub);
    ck_assert_int_eq(cl_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"msg\",\"seq\":2,\"data\":2}]"), 0);
    json_t *f = cl_drain(c);
    ck_assert_int_eq(int_of(frame_of(f, "ack", 0), "ack"), 2);
    json_decref(f);

    atomic_store(&block_in_message, 1);
    pthread_mutex_lock(&gate);
    struct sender sd = {c, 0};
    pthread_t t;
    pthread_create(&t, NULL, send_batch, &sd);
    ck_assert(eventually(seen_n, (void *)(intptr_t)3)); /* 3 is in a's application */

    /* The client gave up on a and resumes on b with 3 and 4 unacked: b has in_seq 2 and
     * knows a began on up to 4. */
    char sid[32], secret[64];
    memcpy(sid, c->sid, sizeof sid);
    memcpy(secret, c->secret, sizeof secret);
    client *c2 = cl_open(b.hub);
    memcpy(c2->sid, sid, sizeof sid);
    memcpy(c2->secret, secret, sizeof secret);
    f = cl_resume(c2, b.hub, 0);
    ck_assert_int_eq(int_of(frame_of(f, "welcome", 0), "ack"), 2);
    json_decref(f);
    ck_assert_int_eq(cl_send(c2, "[{\"t\":\"msg\",\"seq\":3,\"data\":3},{\"t\":\"msg\",\"seq\":4,\"data\":4},{\"t\":\"msg\",\"seq\":5,\"data\":5}]"), 0);
    f = cl_drain(c2);
    ck_assert_int_eq(int_of(frame_of(f, "ack", 0), "ack"), 5);
    json_decref(f);

    /* a learns of the takeover (its link is let go) while it is still inside on_message */
    for (int i = 0; i < 500 && !ferry_link_done(c->link); i++)
        sleep_ms(10);
    ck_assert(ferry_link_done(c->link));
    pthread_mutex_unlock(&gate);
    pthread_join(t, NULL);
    pthread_mutex_lock(&seen_lock);
    /* a: 1, 2, 3, and not 4 (the session is no longer a's); b: 3 and 4, marked as maybe
     * delivered before, and 5, not marked */
    ck_assert_uint_eq(json_array_size(seen), 6);
    for (size_t i = 3; i < 6; i++) {
        json_t *e = json_array_get(seen, i);
        ck_assert_int_eq(json_integer_value(json_array_get(e, 0)), (json_int_t)i);
        ck_assert_int_eq(json_is_true(json_array_get(e, 1)), i < 5);
    }
    pthread_mutex_unlock(&seen_lock);
    atomic_store(&block_in_message, 0);
    cl_free(c);
    cl_free(c2);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* A node that shuts down while on_message runs for the first message of a batch records
 * only that one as delivered: the rest comes again, marked, on the next node. */
static void *shutdown_batch(void *ud)
{
    struct sender *s = ud;
    s->rc = cl_send(s->c, "[{\"t\":\"msg\",\"seq\":3,\"data\":3},{\"t\":\"msg\",\"seq\":4,\"data\":4}]");
    return NULL;
}

START_TEST(a_node_shutting_down_mid_batch_records_only_what_it_delivered)
{
    ferry_callbacks cb = cbs;
    cb.on_message = on_message_blocking;
    node b = node_start("b", NULL, NULL);
    node a = node_start_with("a", NULL, NULL, &cb, 0);
    client *c = cl_hello(a.hub);
    ck_assert_int_eq(cl_send(c, "[{\"t\":\"msg\",\"seq\":1,\"data\":1},{\"t\":\"msg\",\"seq\":2,\"data\":2}]"), 0);
    json_decref(cl_drain(c));
    atomic_store(&block_in_message, 1);
    pthread_mutex_lock(&gate);
    struct sender sd = {c, 0};
    pthread_t t;
    pthread_create(&t, NULL, shutdown_batch, &sd);
    ck_assert(eventually(seen_n, (void *)(intptr_t)3)); /* 3 is in a's on_message */
    ferry_hub_shutdown(a.hub);                          /* a stops: ends nothing */
    pthread_mutex_unlock(&gate);
    pthread_join(t, NULL);
    atomic_store(&block_in_message, 0);
    /* the client resumes on b and sends 3 and 4 again (never acked) */
    client *c2 = cl_open(b.hub);
    memcpy(c2->sid, c->sid, sizeof c2->sid);
    memcpy(c2->secret, c->secret, sizeof c2->secret);
    json_t *f = cl_resume(c2, b.hub, 0);
    json_decref(f);
    cl_send(c2, "[{\"t\":\"msg\",\"seq\":3,\"data\":3},{\"t\":\"msg\",\"seq\":4,\"data\":4}]");
    json_decref(cl_drain(c2));
    sleep_ms(200);
    pthread_mutex_lock(&seen_lock);
    bool four = false;
    for (size_t i = 0; i < json_array_size(seen); i++)
        four |= json_integer_value(json_array_get(json_array_get(seen, i), 2)) == 4;
    pthread_mutex_unlock(&seen_lock);
    ck_assert_msg(four, "message 4 was never handed to any application");
    cl_free(c);
    cl_free(c2);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* An adoption that fails after its save (the feed could not be read) and is retried on the
 * same node still announces the move: the old node lets go, ends nothing, and never
 * deletes the record the new node serves. */
static _Atomic uint64_t a_clock_off;
static uint64_t a_clock(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + atomic_load(&a_clock_off);
}
static void a_tweak(ferry_options *o)
{
    o->clock = a_clock;
}
static atomic_int range_fail;
static int (*real_range)(ferry_cluster *, fy_pos, fy_pos, int (*)(const fy_feed_entry *, void *), void *);
static int flaky_range(ferry_cluster *c, fy_pos from, fy_pos to,
                       int (*fn)(const fy_feed_entry *e, void *ud), void *ud)
{
    if (atomic_exchange(&range_fail, 0))
        return FERRY_ESTORE; /* as an XRANGE that timed out */
    return real_range(c, from, to, fn, ud);
}
static bool key_exists(const char *sid)
{
    fy_redis *r = test_redis_pool(NULL);
    char key[128];
    snprintf(key, sizeof key, "%ss:%s", cluster_prefix, sid);
    const char *argv[] = {"EXISTS", key};
    redisReply *rep = test_redis_cmd(r, 2, argv);
    bool e = rep->integer == 1;
    freeReplyObject(rep);
    fy_redis_free(r);
    return e;
}

/* Makes a node forget the feed entries it read, as if they had fallen out of memory. */
static void forget_recent(ferry_hub *hub)
{
    pthread_mutex_lock(&hub->pub_lock);
    fy_recent_reset(&hub->recent, hub->feed_pos);
    pthread_mutex_unlock(&hub->pub_lock);
}

static size_t recent_n(ferry_hub *hub)
{
    pthread_mutex_lock(&hub->pub_lock);
    size_t n = hub->recent.n;
    pthread_mutex_unlock(&hub->pub_lock);
    return n;
}

static atomic_int range_calls;
static int counted_range(ferry_cluster *c, fy_pos from, fy_pos to,
                         int (*fn)(const fy_feed_entry *e, void *ud), void *ud)
{
    atomic_fetch_add(&range_calls, 1);
    return real_range(c, from, to, fn, ud);
}

/* An adoption numbers the outbox from the entries the node read itself, without a round
 * trip to Redis, and from Redis what the node no longer holds; both give the same stream. */
START_TEST(an_adoption_numbers_from_memory_what_the_node_read)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    static fy_cluster_ops ops;
    ops = *b.c->ops;
    real_range = ops.range;
    ops.range = counted_range;
    b.c->ops = &ops;
    atomic_store(&range_calls, 0);
    client *c = cl_subscribed(a.hub, "t"), *d = cl_subscribed(a.hub, "u");
    publish_n(a.hub, "t", 1, 4);
    publish_n(a.hub, "u", 1, 4);
    ck_assert_int_eq(ferry_hub_send(a.hub, d->sid, "5", 1), FERRY_OK);
    wait_msgs(c, 4);
    wait_msgs(d, 5);
    for (int i = 0; i < 500 && recent_n(b.hub) < 9; i++)
        sleep_ms(10); /* until b has read all nine entries */
    ck_assert_uint_eq(recent_n(b.hub), 9);

    json_array_clear(c->msgs);
    json_t *f = cl_resume(c, b.hub, 1); /* from memory */
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    ck_assert_int_eq(atomic_load(&range_calls), 0);
    wait_msgs(c, 3);
    assert_stream(c, 2, 2, 3);

    forget_recent(b.hub);
    json_array_clear(d->msgs);
    f = cl_resume(d, b.hub, 2); /* from Redis */
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    ck_assert_int_eq(atomic_load(&range_calls), 1);
    wait_msgs(d, 3);
    ck_assert_uint_eq(json_array_size(d->msgs), 3); /* 3, 4 and the direct 5 */
    for (int i = 0; i < 3; i++) {
        json_t *m = json_array_get(d->msgs, (size_t)i);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "seq")), 3 + i);
        ck_assert_int_eq(json_integer_value(json_object_get(m, "data")), 3 + i);
    }
    cl_free(c);
    cl_free(d);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

static int no_start(ferry_cluster *c, ferry_hub *hub)
{
    (void)c, (void)hub;
    return 0; /* as a node whose reader has not reached Redis yet */
}

/* A node that has just started serves before its reader first reads the feed; a resume that
 * would adopt a session then is refused (the client retries), not numbered from a feed
 * position the reader has not fixed yet, which skipped what the session had missed. */
START_TEST(a_node_not_yet_reading_the_feed_adopts_nothing)
{
    node a = node_start("a", NULL, NULL), b = {0};
    client *c = cl_subscribed(a.hub, "t");
    publish_n(a.hub, "t", 1, 3);
    wait_msgs(c, 3);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ack\",\"ack\":3}"), 0);
    ferry_hub_tick(a.hub); /* the cursor at 3 */
    a.c->ops->stop(a.c);   /* a is gone */

    ferry_cluster_options co;
    ferry_cluster_options_init(&co);
    co.redis = shared_redis.addr;
    co.node = "b";
    co.prefix = cluster_prefix;
    ck_assert_int_eq(ferry_cluster_new(&b.c, &co), FERRY_OK);
    static fy_cluster_ops ops;
    ops = *b.c->ops;
    int (*real_start)(ferry_cluster *, ferry_hub *) = ops.start;
    ops.start = no_start;
    b.c->ops = &ops;
    ferry_options o;
    ferry_options_init(&o);
    o.cluster = b.c;
    o.resume_rate = 0;
    ck_assert_int_eq(ferry_hub_new(&b.hub, &o, &cbs, NULL), FERRY_OK);
    publish_n(a.hub, "t", 4, 6); /* while nobody serves the session */

    json_t *f = cl_resume(c, b.hub, 3);
    ck_assert_ptr_null(frame_of(f, "welcome", 0));
    ck_assert_str_eq(json_string_value(json_object_get(frame_of(f, "error", 0), "code")), "internal");
    json_decref(f);

    ck_assert_int_eq(real_start(b.c, b.hub), 0);
    ck_assert(eventually(hub_ready, b.hub));
    publish_n(b.hub, "t", 7, 7);
    f = cl_resume(c, b.hub, 3); /* the retry, once b reads the feed */
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    wait_msgs(c, 7);
    sleep_ms(100);
    json_decref(cl_drain(c));
    assert_stream(c, 1, 1, 7);
    cl_free(c);
    node_stop(&b);
    node_stop(&a);
}
END_TEST

/* The tick lets go of a handle this node does not serve (its resume window passed) while a
 * resume of it, saved, waits for pub_lock and then adopts it: the handle stays in the store,
 * so that direct sends still find it and its cursor is still written. */
static fy_store_ops rv_ops;
static void (*rv_real_forget)(fy_store *st, ferry_session *s);
static int (*rv_real_save)(fy_store *st, ferry_session *s, const fy_rec *rec);
static atomic_int rv_forget_armed, rv_forget_waiting, rv_forget_open, rv_saved;
static void rv_gated_forget(fy_store *st, ferry_session *s)
{
    if (atomic_exchange(&rv_forget_armed, 0)) {
        atomic_store(&rv_forget_waiting, 1);
        while (!atomic_load(&rv_forget_open))
            sleep_ms(1);
    }
    rv_real_forget(st, s);
}
static int rv_noting_save(fy_store *st, ferry_session *s, const fy_rec *rec)
{
    int rc = rv_real_save(st, s, rec);
    atomic_store(&rv_saved, 1);
    return rc;
}
static bool rv_flag(void *ud)
{
    return atomic_load((atomic_int *)ud) != 0;
}
static void *rv_resume(void *ud)
{
    client *c = ud;
    cl_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%lld}", c->sid,
            c->secret, (long long)c->last_seq);
    return NULL;
}
static void *rv_tick(void *ud)
{
    ferry_hub_tick(ud);
    return NULL;
}
static int rv_resumed = -1;
static bool rv_welcomed(void *ud)
{
    json_t *f = cl_drain(ud);
    json_t *w = frame_of(f, "welcome", 0);
    if (w)
        rv_resumed = json_is_true(json_object_get(w, "resumed"));
    json_decref(f);
    return rv_resumed >= 0;
}

START_TEST(a_handle_the_tick_lets_go_while_it_is_adopted_stays_in_the_store)
{
    atomic_store(&a_clock_off, 0);
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, a_tweak);
    client *c = cl_subscribed(a.hub, "t");
    publish_n(a.hub, "t", 1, 2);
    wait_msgs(c, 2);
    ferry_link_free(c->link); /* the client resumes on b */
    ck_assert_int_eq(ferry_link_new(&c->link, b.hub, &cl_ops, c), 0);
    rv_ops = *b.hub->store->ops;
    rv_real_forget = rv_ops.forget;
    rv_ops.forget = rv_gated_forget;
    rv_real_save = rv_ops.save;
    rv_ops.save = rv_noting_save;
    b.hub->store->ops = &rv_ops;

    pthread_mutex_lock(&b.hub->pub_lock); /* busy a moment (the reader, other adoptions) */
    pthread_t r, t;
    ck_assert_int_eq(pthread_create(&r, NULL, rv_resume, c), 0);
    ck_assert(eventually(rv_flag, &rv_saved)); /* saved; now waits in adopt_lock */
    sleep_ms(50);
    atomic_store(&a_clock_off, 121000);       /* the handle's resume window passes */
    b.hub->cursors_at = ferry_hub_now(b.hub); /* no cursor round this tick */
    atomic_store(&rv_forget_armed, 1);
    ck_assert_int_eq(pthread_create(&t, NULL, rv_tick, b.hub), 0);
    ck_assert(eventually(rv_flag, &rv_forget_waiting)); /* the tick decided: let go */
    pthread_mutex_unlock(&b.hub->pub_lock);
    ck_assert(eventually(rv_welcomed, c)); /* adopted meanwhile */
    ck_assert_int_eq(rv_resumed, 1);
    atomic_store(&rv_forget_open, 1);
    pthread_join(t, NULL);
    pthread_join(r, NULL);

    ck_assert_int_eq(ferry_hub_send(a.hub, c->sid, "100", 3), FERRY_OK);
    publish_n(a.hub, "t", 3, 3);
    sleep_ms(300);
    json_decref(cl_drain(c));
    ck_assert_msg(json_array_size(c->msgs) == 4, "%zu messages, not 4 (the direct send is lost)",
                  json_array_size(c->msgs));
    ferry_session *h = b.hub->store->ops->local(b.hub->store, c->sid, strlen(c->sid));
    ck_assert_msg(h != NULL, "b serves the session, but its store no longer holds the handle");
    ferry_session_unref(h);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

START_TEST(a_retried_adoption_is_announced_and_the_old_node_ends_nothing)
{
    atomic_store(&a_clock_off, 0);
    node a = node_start("a", NULL, a_tweak), b = node_start("b", NULL, NULL);
    static fy_cluster_ops ops;
    ops = *b.c->ops;
    real_range = ops.range;
    ops.range = flaky_range;
    b.c->ops = &ops;
    client *c = cl_subscribed(a.hub, "t");
    publish_n(a.hub, "t", 1, 2);
    wait_msgs(c, 2);
    client *old = cl_open(a.hub); /* keep a's link to watch it */
    ferry_link *a_link = c->link;
    c->link = old->link;
    old->link = a_link;
    forget_recent(b.hub); /* so that the adoption reads the feed from Redis */
    atomic_store(&range_fail, 1);
    json_t *f = cl_resume(c, b.hub, 2);
    ck_assert_ptr_nonnull(frame_of(f, "error", 0)); /* first try: store unavailable */
    json_decref(f);
    f = cl_resume(c, b.hub, 2); /* the client retries on b */
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    /* a learns of the move: its connection is let go */
    for (int i = 0; i < 500 && !ferry_link_done(old->link); i++)
        sleep_ms(10);
    ck_assert_int_eq(ferry_link_end_reason(old->link), FERRY_LINK_SUPERSEDED);
    ferry_link_free(old->link);
    old->link = NULL;
    atomic_store(&a_clock_off, 121000); /* a's resume window passes */
    ferry_hub_tick(a.hub);
    fy_hub_drain(a.hub);
    ck_assert_int_eq(atomic_load(&closes), 0); /* a ended nothing */
    atomic_store(&a_clock_off, 121000 + 121000); /* a's tombstone time passes */
    ferry_hub_tick(a.hub);
    ck_assert(key_exists(c->sid)); /* b's record is there */
    f = cl_resume(c, b.hub, -1);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    cl_free(old); /* its link was freed above */
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* A store whose next save, once armed, waits for the gate: a resume held up with its
 * session's lock (as one waiting on Redis is). */
static fy_store_ops gated_ops;
static int (*real_save)(fy_store *st, ferry_session *s, const fy_rec *rec);
static atomic_int save_armed, save_waiting, save_open;

static int gated_save(fy_store *st, ferry_session *s, const fy_rec *rec)
{
    if (atomic_exchange(&save_armed, 0)) {
        atomic_store(&save_waiting, 1);
        while (!atomic_load(&save_open))
            sleep_ms(1);
    }
    return real_save(st, s, rec);
}

static bool save_is_waiting(void *ud)
{
    (void)ud;
    return atomic_load(&save_waiting);
}

static int cl_resume_rid(client *c, const char *rid, long long ack)
{
    return cl_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%lld,"
                      "\"rid\":\"%s\"}", c->sid, c->secret, ack, rid);
}

static void *send_stale_resume(void *ud)
{
    cl_resume_rid(ud, "a6Vq3m0Xr9Tz1LpK2wYb8Q", 2);
    return NULL;
}

/* A resume that outlives its connection: the client's resume on node a is held up, the
 * client gives up on it and resumes with the same secret and attempt ID on node b, which
 * answers first. The stale resume on a then completes, before the client has sent anything
 * on b: it is handed the secret b gave the client, so that secret still resumes the
 * session, with nothing lost. */
START_TEST(a_resume_completed_after_its_retry_on_another_node_strands_nothing)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *c = cl_subscribed(b.hub, "t");
    publish_n(b.hub, "t", 1, 2);
    wait_msgs(c, 2);
    ferry_link_free(c->link); /* the connection is lost */
    c->link = NULL;

    gated_ops = *a.hub->store->ops;
    real_save = gated_ops.save;
    gated_ops.save = gated_save;
    a.hub->store->ops = &gated_ops;
    atomic_store(&save_waiting, 0);
    atomic_store(&save_open, 0);
    atomic_store(&save_armed, 1);
    client *stale = cl_open(a.hub);
    memcpy(stale->sid, c->sid, sizeof stale->sid);
    memcpy(stale->secret, c->secret, sizeof stale->secret);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, send_stale_resume, stale), 0);
    ck_assert(eventually(save_is_waiting, NULL));

    /* the client's retry on b */
    ck_assert_int_eq(ferry_link_new(&c->link, b.hub, &cl_ops, c), 0);
    ck_assert_int_eq(cl_resume_rid(c, "a6Vq3m0Xr9Tz1LpK2wYb8Q", 2), 0);
    json_t *f = cl_drain(c);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    char s2[64];
    memcpy(s2, c->secret, sizeof s2);

    atomic_store(&save_open, 1); /* the stale resume completes on a */
    pthread_join(t, NULL);
    f = cl_drain(stale);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    ck_assert_str_eq(str_of(frame_of(f, "welcome", 0), "secret"), s2);
    json_decref(f);
    cl_free(stale); /* its connection was already gone */

    /* a took the session over: b lets the client's connection go, and the client resumes
     * with the secret it holds */
    for (int i = 0; i < 500 && ferry_link_end_reason(c->link) == FERRY_LINK_OPEN; i++)
        sleep_ms(10);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_SUPERSEDED);
    ferry_link_free(c->link);
    ck_assert_int_eq(ferry_link_new(&c->link, b.hub, &cl_ops, c), 0);
    ck_assert_int_eq(cl_resume_rid(c, "Zk2Yb8Qa6Vq3m0Xr9Tz1Lp", 2), 0);
    f = cl_drain(c);
    ck_assert_uint_eq(count_of(f, "reset"), 0);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    publish_n(a.hub, "t", 3, 3);
    wait_msgs(c, 3);
    assert_stream(c, 1, 1, 3);
    ck_assert_int_eq(atomic_load(&opens), 1);
    ck_assert_int_eq(atomic_load(&closes), 0);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

/* Ended subscriptions are pruned against the cursor Redis holds, not one the node computed
 * and may not have stored (the cursors call failed, or the node died before it ran). */
static void drop_cursors(fy_store *st, const fy_cursor *c, size_t n)
{
    (void)st, (void)c, (void)n; /* as a cursor script that timed out */
}

START_TEST(ended_subscriptions_are_pruned_only_against_the_stored_cursor)
{
    atomic_store(&a_clock_off, 0);
    node a = node_start("a", NULL, a_tweak), b = node_start("b", NULL, NULL);
    client *c = cl_subscribed(a.hub, "x");
    publish_n(a.hub, "x", 1, 1);
    wait_msgs(c, 1);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ack\",\"ack\":1}"), 0);
    ferry_hub_tick(a.hub); /* cursor (1, pos of x:1) stored */
    publish_n(a.hub, "x", 2, 2);
    wait_msgs(c, 2);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ack\",\"ack\":2}"), 0);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"unsub\",\"topic\":\"x\"}"), 0);
    static fy_store_ops sops;
    sops = *a.hub->store->ops;
    sops.cursors = drop_cursors;
    a.hub->store->ops = &sops;
    atomic_store(&a_clock_off, 2500);
    ferry_hub_tick(a.hub); /* cursor (2, feed_pos) computed, not stored */
    ck_assert_int_eq(cl_send(c, "{\"t\":\"sub\",\"topic\":\"y\"}"), 0); /* prunes x */
    publish_n(a.hub, "y", 3, 3);
    wait_msgs(c, 3);
    a.c->ops->stop(a.c); /* a dies before its next cursor round */
    json_t *f = cl_resume(c, b.hub, 2); /* client had 1..2 acked, 3 not acked */
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    sleep_ms(300);
    json_decref(cl_drain(c));
    ck_assert_msg(json_array_size(c->msgs) == 4, "y:3 (seq 3) was not resent by b");
    cl_free(c);
    node_stop(&b);
    node_stop(&a);
}
END_TEST

/* A cursor collected while the adopting node's reader is behind its replay pairs the
 * replay's seqs with the replay's end, not the reader's position. */
START_TEST(a_cursor_taken_after_an_adoption_that_read_ahead_stays_valid)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL), d = node_start("d", NULL, NULL);
    client *c = cl_subscribed(a.hub, "t");
    b.c->ops->stop(b.c); /* b's reader falls behind */
    publish_n(a.hub, "t", 1, 2);
    wait_msgs(c, 2);
    ck_assert_int_eq(cl_send(c, "{\"t\":\"sub\",\"topic\":\"u\"}"), 0); /* from: after t:2 */
    json_t *f = cl_resume(c, b.hub, 0);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    json_decref(cl_drain(c));
    ck_assert_int_eq(cl_send(c, "{\"t\":\"ack\",\"ack\":2}"), 0);
    ferry_hub_tick(b.hub); /* cursor (2, b's reader position) */
    f = cl_resume(c, d.hub, 2); /* b dies; the client resumes on d */
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    sleep_ms(300);
    json_decref(cl_drain(c));
    ck_assert_msg(json_array_size(c->msgs) == 4, "d sent t:1 and t:2 again under new seqs");
    cl_free(c);
    node_stop(&d);
    node_stop(&b);
    node_stop(&a);
}
END_TEST


/* A reader that falls behind without an error (paused, stalled) and whose unread entries
 * are trimmed meanwhile lets its sessions go rather than read on across the gap. */
START_TEST(a_reader_that_falls_behind_the_trimmed_feed_lets_its_sessions_go)
{
    node b = node_start("b", NULL, NULL);
    node a = node_start_with("a", NULL, NULL, NULL, 10);
    client *c = cl_subscribed(b.hub, "t");
    b.c->ops->stop(b.c); /* b's reader stalls (no Redis error) */
    publish_n(a.hub, "t", 1, 400);
    /* what a's trim does every few seconds with feed_max 10, at once: keep the newest 10
     * and write the floor */
    fy_redis *r = test_redis_pool(NULL);
    char feed[80], floor_key[80];
    snprintf(feed, sizeof feed, "%sfeed", cluster_prefix);
    snprintf(floor_key, sizeof floor_key, "%sfloor", cluster_prefix);
    const char *trim[] = {"XTRIM", feed, "MAXLEN", "10"};
    freeReplyObject(test_redis_cmd(r, 4, trim));
    const char *first[] = {"XRANGE", feed, "-", "+", "COUNT", "1"};
    redisReply *rep = test_redis_cmd(r, 6, first);
    const char *set[] = {"SET", floor_key, rep->element[0]->element[0]->str};
    freeReplyObject(test_redis_cmd(r, 3, set));
    freeReplyObject(rep);
    fy_redis_free(r);
    ck_assert_int_eq(b.c->ops->start(b.c, b.hub), 0); /* b's reader goes on */
    for (int i = 0; i < 200 && !ferry_link_done(c->link); i++)
        sleep_ms(10);
    json_decref(cl_drain(c));
    size_t n = json_array_size(c->msgs);
    /* every message, or the connection let go (the client resumes: a reset, or the
     * messages from the feed if it still has them) */
    ck_assert_msg(n == 400 || ferry_link_done(c->link), "%zu messages and no word: a silent gap", n);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

static rsrv own;

static void own_teardown(void)
{
    rsrv_stop(&own);
    rsrv_cleanup(&own);
    own = (rsrv){0};
    teardown();
}

static bool unhealthy(void *ud)
{
    return ferry_hub_health(ud) == FERRY_ESTORE;
}

START_TEST(redis_down_fails_publishes_and_the_node_recovers_by_itself)
{
    ck_assert_int_eq(rsrv_start(&own), 0);
    node a = node_start("a", own.addr, NULL);
    client *c = cl_subscribed(a.hub, "t");
    publish_n(a.hub, "t", 1, 1);
    wait_msgs(c, 1);
    /* Redis measured (ferry_stats): round trips, each within the 1 s command timeout, and
     * no error yet. */
    ferry_stats st = {.size = sizeof st};
    ck_assert_int_eq(ferry_hub_stats(a.hub, &st), FERRY_OK);
    ck_assert_uint_gt(st.redis_rtt.count, 2);
    ck_assert_uint_eq(st.redis_rtt.le[FERRY_HISTOGRAM_BUCKETS - 1], st.redis_rtt.count);
    ck_assert_uint_eq(st.redis_rtt.le[12], st.redis_rtt.count); /* le 1 s */
    ck_assert_uint_gt(st.redis_rtt.sum_ns, 0);
    ck_assert_uint_eq(st.redis_errors, 0);

    rsrv_stop(&own);
    ck_assert_int_eq(ferry_hub_publish(a.hub, "t", "2", 1, NULL), FERRY_ESTORE);
    ck_assert_int_eq(ferry_hub_send(a.hub, c->sid, "2", 1), FERRY_ESTORE);
    ck_assert(eventually(unhealthy, a.hub));
    ck_assert_int_eq(ferry_hub_stats(a.hub, &st), FERRY_OK);
    ck_assert_uint_ge(st.redis_errors, 2); /* the publish and the send at least */
    ck_assert(!ferry_link_done(c->link)); /* attached sessions keep their connection */

    ck_assert_int_eq(rsrv_start(&own), 0); /* back, empty: it lost its data */
    ck_assert(eventually(hub_ready, a.hub));
    /* the session it served cannot be trusted whole: let go, and its resume is reset */
    for (int i = 0; i < 500 && !ferry_link_done(c->link); i++)
        sleep_ms(10);
    ck_assert(ferry_link_done(c->link));
    /* The first commands after a restart may fail once per pooled connection (each finds
     * its connection gone); a client retries. */
    json_t *f = cl_resume(c, a.hub, -1);
    for (int i = 0; i < 8 && !frame_of(f, "welcome", 0); i++) {
        json_decref(f);
        f = cl_resume(c, a.hub, -1);
    }
    ck_assert_ptr_nonnull(frame_of(f, "reset", 0));
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    json_decref(f);
    publish_n(a.hub, "t", 3, 3);
    cl_free(c);
    node_stop(&a);
}
END_TEST

START_TEST(redis_flushed_lets_every_session_go_with_a_reset)
{
    ck_assert_int_eq(rsrv_start(&own), 0);
    node a = node_start("a", own.addr, NULL);
    client *c = cl_hello(a.hub);
    fy_redis *r = test_redis_pool(own.addr);
    const char *argv[] = {"FLUSHALL"};
    freeReplyObject(test_redis_cmd(r, 1, argv));
    fy_redis_free(r);
    for (int i = 0; i < 500 && !ferry_link_done(c->link); i++)
        sleep_ms(10);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_RESTART);
    json_t *f = cl_resume(c, a.hub, -1);
    ck_assert_str_eq(str_of(frame_of(f, "reset", 0), "reason"), "unknown");
    ck_assert(json_is_false(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    cl_free(c);
    node_stop(&a);
}
END_TEST

/* A node that shuts down ends nothing: its clients are told to reconnect, and resume on
 * another node. */
START_TEST(a_node_that_shuts_down_hands_its_sessions_on)
{
    node a = node_start("a", NULL, NULL), b = node_start("b", NULL, NULL);
    client *c = cl_subscribed(a.hub, "t");
    publish_n(b.hub, "t", 1, 3);
    wait_msgs(c, 3);
    ferry_hub_shutdown(a.hub);
    ck_assert_int_eq(ferry_link_end_reason(c->link), FERRY_LINK_RESTART);
    ck_assert_int_eq(atomic_load(&closes), 0);
    json_t *f = cl_resume(c, b.hub, 1);
    ck_assert(json_is_true(json_object_get(frame_of(f, "welcome", 0), "resumed")));
    json_decref(f);
    wait_msgs(c, 5); /* 2 and 3 again (b's reader may hand them out after the welcome) */
    ck_assert_uint_eq(json_array_size(c->msgs), 5);
    publish_n(b.hub, "t", 4, 4);
    wait_msgs(c, 6);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(c->msgs, 5), "seq")), 4);
    cl_free(c);
    node_stop(&a);
    node_stop(&b);
}
END_TEST

static long long used_memory(const char *addr)
{
    fy_redis *r = test_redis_pool(addr);
    const char *argv[] = {"INFO", "memory"};
    redisReply *rep = test_redis_cmd(r, 2, argv);
    const char *p = strstr(rep->str, "used_memory:");
    long long n = p ? atoll(p + strlen("used_memory:")) : -1;
    freeReplyObject(rep);
    fy_redis_free(r);
    return n;
}

/* What the feed costs Redis per retained message (INFO memory over many entries), for a
 * live-scores event and for a 1 KB message; and a session's record with three
 * subscriptions and a cursor. docs/CLUSTER.md quotes these. */
START_TEST(the_feed_costs_what_docs_cluster_says)
{
    enum { N = 2000 };
    ck_assert_int_eq(rsrv_start(&own), 0);
    node a = node_start("a", own.addr, NULL);
    const char *event = "{\"match\":3,\"n\":41,\"minute\":67,\"kind\":\"goal\","
                        "\"team\":\"home\",\"player\":\"Ruiz\",\"score\":[2,1]}";
    char big[1024];
    memset(big, 'x', sizeof big);
    big[0] = '"';
    big[sizeof big - 1] = '"';
    struct {
        const char *name, *json;
        size_t len;
    } kinds[] = {{"a live-scores event", event, strlen(event)}, {"a 1 KB message", big, sizeof big}};
    for (int k = 0; k < 2; k++) {
        long long before = used_memory(own.addr);
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(ferry_hub_publish(a.hub, "scores", kinds[k].json, kinds[k].len, NULL), 0);
        long long per = (used_memory(own.addr) - before) / N;
        fprintf(stderr, "cluster: the feed keeps %s (%zu bytes) in %lld bytes of used_memory\n",
                kinds[k].name, kinds[k].len, per);
        ck_assert_int_lt(per, (long long)kinds[k].len + 200);
    }
    long long before = used_memory(own.addr);
    enum { S = 1000 };
    static client *c[S];
    for (int i = 0; i < S; i++) {
        c[i] = cl_hello(a.hub);
        ck_assert_int_eq(cl_send(c[i], "[{\"t\":\"sub\",\"topic\":\"scores\"},"
                                       "{\"t\":\"sub\",\"topic\":\"match/3\"},"
                                       "{\"t\":\"sub\",\"topic\":\"news\"}]"), 0);
    }
    long long per = (used_memory(own.addr) - before) / S;
    fprintf(stderr, "cluster: a session with 3 subscriptions and a cursor takes %lld bytes\n", per);
    ck_assert_int_lt(per, 1536);
    for (int i = 0; i < S; i++)
        cl_free(c[i]);
    node_stop(&a);
}
END_TEST

START_TEST(cluster_options_are_checked)
{
    ferry_cluster *c;
    ferry_cluster_options o;
    ferry_cluster_options_init(&o);
    log_capture(1);
    ck_assert_int_eq(ferry_cluster_new(&c, &o), FERRY_EINVAL); /* no node */
    ck_assert_ptr_nonnull(strstr(log_captured(), "node must be"));
    o.node = "bad name";
    ck_assert_int_eq(ferry_cluster_new(&c, &o), FERRY_EINVAL);
    o.node = "ok";
    o.redis = "nope:x";
    ck_assert_int_eq(ferry_cluster_new(&c, &o), FERRY_EINVAL);
    o.redis = NULL;
    o.feed_max = 0;
    ck_assert_int_eq(ferry_cluster_new(&c, &o), FERRY_EINVAL);
    o.feed_max = 10;
    o.size = 0;
    ck_assert_int_eq(ferry_cluster_new(&c, &o), FERRY_EINVAL);
    log_capture(0);
    ck_assert_int_eq(ferry_cluster_new(NULL, &o), FERRY_EINVAL);
    o.size = sizeof o;
    ck_assert_int_eq(ferry_cluster_new(&c, &o), FERRY_OK);
    ferry_cluster_free(c);
    ferry_cluster_free(NULL);
}
END_TEST

Suite *cluster_suite(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("nodes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_publish_on_one_node_reaches_subscribers_on_every_node_once_and_in_order);
    tcase_add_test(tc, a_direct_send_reaches_a_session_served_by_another_node);
    tcase_add_test(tc, a_session_resumes_on_another_node_with_its_outbox_and_subscriptions);
    tcase_add_test(tc, a_session_of_a_dead_node_resumes_elsewhere_without_loss);
    tcase_add_test(tc, a_subscription_ended_on_one_node_stays_ended_on_the_next);
    tcase_add_test(tc, a_node_behind_on_the_feed_adopts_without_repeating);
    tcase_add_test(tc, a_retired_secret_presented_on_another_node_ends_the_session_as_forked);
    tcase_add_test(tc, inbound_messages_a_node_began_to_deliver_come_again_marked_on_the_next);
    tcase_add_test(tc, a_node_that_shuts_down_hands_its_sessions_on);
    tcase_add_test(tc, cluster_options_are_checked);
    tcase_add_test(tc, a_node_shutting_down_mid_batch_records_only_what_it_delivered);
    tcase_add_test(tc, a_retried_adoption_is_announced_and_the_old_node_ends_nothing);
    tcase_add_test(tc, an_adoption_numbers_from_memory_what_the_node_read);
    tcase_add_test(tc, a_node_not_yet_reading_the_feed_adopts_nothing);
    tcase_add_test(tc, a_handle_the_tick_lets_go_while_it_is_adopted_stays_in_the_store);
    tcase_add_test(tc, a_resume_completed_after_its_retry_on_another_node_strands_nothing);
    tcase_add_test(tc, ended_subscriptions_are_pruned_only_against_the_stored_cursor);
    tcase_add_test(tc, a_cursor_taken_after_an_adoption_that_read_ahead_stays_valid);
    tcase_add_test(tc, a_reader_that_falls_behind_the_trimmed_feed_lets_its_sessions_go);
    suite_add_tcase(s, tc);
    TCase *down = tcase_create("redis");
    tcase_add_checked_fixture(down, setup, own_teardown);
    tcase_set_timeout(down, 30);
    tcase_add_test(down, redis_down_fails_publishes_and_the_node_recovers_by_itself);
    tcase_add_test(down, redis_flushed_lets_every_session_go_with_a_reset);
    tcase_add_test(down, the_feed_costs_what_docs_cluster_says);
    suite_add_tcase(s, down);
    return s;
}
