/* Multi-threaded stress of the core, run under ThreadSanitizer: publishers, clients that
 * drop and resume (sometimes taking over a still-attached link), a reader and a writer per
 * connection, a ticker, and a thread sending by session ID, all at once. Checks that every
 * client sees every published message exactly once and in order, and that the application
 * sees every client message exactly once and in order. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"
#include "ferry_transport.h"

#define CLIENTS 8
#define PUBLISHERS 2
#define PER_PUBLISHER 20000
#define CLIENT_MSGS 400
#define MIN_DROPS 40 /* connections each client drops and resumes, at least */

static ferry_hub *hub;
static atomic_int failures;
static atomic_bool stop_all;
static atomic_int reconnects, takeovers, midstream;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "stress: %s:%d: ", __FILE__, __LINE__);                           \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            atomic_fetch_add(&failures, 1);                                                    \
        }                                                                                      \
    } while (0)

/* ---- the application: checks inbound order per session ---------------------------------- */
typedef struct app_session {
    long next;          /* next client seq number expected in the data */
    atomic_long got;
} app_session;

static app_session app_sessions[CLIENTS];

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    CHECK(ferry_session_subscribe(s, "all") == 0, "subscribe");
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)ud;
    int client = (int)json_integer_value(json_object_get(data, "c"));
    long n = (long)json_integer_value(json_object_get(data, "n"));
    app_session *a = &app_sessions[client];
    CHECK(ferry_session_user(s) == NULL || ferry_session_user(s) == a, "session user");
    ferry_session_set_user(s, a);
    CHECK(n == a->next, "client %d: message %ld delivered, expected %ld", client, n, a->next);
    a->next = n + 1;
    atomic_fetch_add(&a->got, 1);
}

static void on_close(ferry_session *s, ferry_reason why, void *ud)
{
    (void)s;
    (void)ud;
    CHECK(why == FERRY_REASON_SHUTDOWN, "session ended early: %s", ferry_reason_str(why));
}

/* ---- the clients ---------------------------------------------------------------------- */
typedef struct conn {
    ferry_link *link;
    pthread_mutex_t recv_lock; /* a transport has one reader: recv calls never overlap */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    int woken;
} conn;

typedef struct client {
    int id;
    char sid[32];
    char secret[64];
    long last_seq;      /* last server seq received, contiguous */
    long pub_next[PUBLISHERS];
    long published_seen;
    long sent_acked;    /* client messages the server acknowledged */
    long sent;          /* client messages sent on this connection */
    conn *c;
    atomic_bool sender_stop;
    pthread_mutex_t sid_lock;
} client;

static client clients[CLIENTS];
static pthread_barrier_t opened;

static void c_wake(void *ud)
{
    conn *c = ud;
    pthread_mutex_lock(&c->wlock);
    c->woken = 1;
    pthread_cond_signal(&c->wcond);
    pthread_mutex_unlock(&c->wlock);
}

static const ferry_link_ops ops = {sizeof ops, c_wake, c_wake};

static conn *conn_new(void)
{
    conn *c = calloc(1, sizeof *c);
    pthread_mutex_init(&c->recv_lock, NULL);
    pthread_mutex_init(&c->wlock, NULL);
    pthread_cond_init(&c->wcond, NULL);
    CHECK(ferry_link_new(&c->link, hub, &ops, c) == 0, "link_new");
    return c;
}

static void conn_free(conn *c)
{
    ferry_link_free(c->link);
    pthread_mutex_destroy(&c->recv_lock);
    pthread_mutex_destroy(&c->wlock);
    pthread_cond_destroy(&c->wcond);
    free(c);
}

static int conn_send(conn *c, const char *text)
{
    pthread_mutex_lock(&c->recv_lock);
    int rc = ferry_link_recv(c->link, text, strlen(text));
    pthread_mutex_unlock(&c->recv_lock);
    return rc;
}

static void conn_wait(conn *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 2000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->wlock);
    if (!c->woken)
        pthread_cond_timedwait(&c->wcond, &c->wlock, &ts);
    c->woken = 0;
    pthread_mutex_unlock(&c->wlock);
}

/* Pulls once and handles every frame; returns the number of frames. */
static int pull_once(client *cl, ferry_buf *b)
{
    b->len = 0;
    int n = ferry_link_pull(cl->c->link, b, FERRY_PULL_ARRAY);
    CHECK(n >= 0, "pull: %d", n);
    if (n <= 0)
        return 0;
    json_error_t err;
    json_t *arr = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &err);
    CHECK(arr && json_is_array(arr), "pulled bad JSON: %s", err.text);
    size_t i;
    json_t *f;
    json_array_foreach(arr, i, f) {
        const char *t = json_string_value(json_object_get(f, "t"));
        if (strcmp(t, "welcome") == 0) {
            pthread_mutex_lock(&cl->sid_lock);
            snprintf(cl->sid, sizeof cl->sid, "%s", json_string_value(json_object_get(f, "sid")));
            pthread_mutex_unlock(&cl->sid_lock);
            snprintf(cl->secret, sizeof cl->secret, "%s",
                     json_string_value(json_object_get(f, "secret")));
            cl->sent_acked = (long)json_integer_value(json_object_get(f, "ack"));
        } else if (strcmp(t, "msg") == 0) {
            long seq = (long)json_integer_value(json_object_get(f, "seq"));
            CHECK(seq == cl->last_seq + 1, "client %d: seq %ld after %ld", cl->id, seq,
                  cl->last_seq);
            cl->last_seq = seq;
            json_t *d = json_object_get(f, "data");
            json_t *p = json_object_get(d, "p");
            if (p) {
                int pub = (int)json_integer_value(p);
                long k = (long)json_integer_value(json_object_get(d, "k"));
                CHECK(k == cl->pub_next[pub], "client %d: publisher %d message %ld, expected %ld",
                      cl->id, pub, k, cl->pub_next[pub]);
                cl->pub_next[pub] = k + 1;
                cl->published_seen++;
            }
        } else if (strcmp(t, "ack") == 0) {
            long a = (long)json_integer_value(json_object_get(f, "ack"));
            if (a > cl->sent_acked)
                cl->sent_acked = a;
        } else if (strcmp(t, "ping") == 0 || strcmp(t, "pong") == 0) {
        } else {
            CHECK(0, "client %d: unexpected frame %s", cl->id, t);
        }
    }
    json_decref(arr);
    return n;
}

static void *sender_main(void *arg)
{
    client *cl = arg;
    /* Resend whatever the server has not acknowledged, then go on. */
    for (long n = cl->sent_acked + 1; n <= CLIENT_MSGS && !atomic_load(&cl->sender_stop); n++) {
        char text[128];
        snprintf(text, sizeof text, "{\"t\":\"msg\",\"seq\":%ld,\"data\":{\"c\":%d,\"n\":%ld}}", n,
                 cl->id, n);
        int rc = conn_send(cl->c, text);
        if (rc == FERRY_ECLOSED)
            break;
        CHECK(rc == 0, "client %d: send %ld: %s", cl->id, n, ferry_strerror(rc));
        if (n % 16 == 0)
            usleep(200);
    }
    return NULL;
}

static void handshake(client *cl, ferry_buf *b)
{
    char text[256];
    if (cl->sid[0])
        snprintf(text, sizeof text,
                 "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":%ld}", cl->sid,
                 cl->secret, cl->last_seq);
    else
        snprintf(text, sizeof text, "{\"t\":\"hello\",\"v\":1}");
    char sid_before[32];
    snprintf(sid_before, sizeof sid_before, "%s", cl->sid);
    CHECK(conn_send(cl->c, text) == 0, "client %d: handshake", cl->id);
    while (pull_once(cl, b) == 0)
        conn_wait(cl->c);
    CHECK(!sid_before[0] || strcmp(sid_before, cl->sid) == 0, "client %d: resume failed", cl->id);
}

static void *client_main(void *arg)
{
    client *cl = arg;
    ferry_buf b = {0};
    unsigned rnd = (unsigned)cl->id * 2654435761u;
    int drops = 0;

    cl->c = conn_new();
    handshake(cl, &b);
    pthread_barrier_wait(&opened);
    while (!atomic_load(&stop_all)) {
        pthread_t sender;
        atomic_store(&cl->sender_stop, false);
        pthread_create(&sender, NULL, sender_main, cl);
        int budget = 5 + (int)(rand_r(&rnd) % 60);
        long acked_at = cl->last_seq;
        while (budget-- > 0 && !atomic_load(&stop_all)) {
            if (pull_once(cl, &b) == 0)
                conn_wait(cl->c);
            if (cl->last_seq - acked_at >= 32) {
                char text[64];
                snprintf(text, sizeof text, "{\"t\":\"ack\",\"ack\":%ld}", cl->last_seq);
                int rc = conn_send(cl->c, text);
                CHECK(rc == 0, "client %d: ack: %s", cl->id, ferry_strerror(rc));
                acked_at = cl->last_seq;
            }
            if (cl->published_seen == PUBLISHERS * PER_PUBLISHER && cl->sent_acked == CLIENT_MSGS)
                break;
        }
        atomic_store(&cl->sender_stop, true);
        pthread_join(sender, NULL);
        if (cl->published_seen == PUBLISHERS * PER_PUBLISHER && cl->sent_acked == CLIENT_MSGS &&
            drops >= MIN_DROPS)
            break;
        drops++;
        /* Drop the connection. Half the time the new one resumes while the old is still
         * attached (a takeover); otherwise the old one goes first. */
        conn *old = cl->c;
        bool takeover = rand_r(&rnd) % 2;
        atomic_fetch_add(&reconnects, 1);
        atomic_fetch_add(&takeovers, takeover);
        atomic_fetch_add(&midstream, cl->published_seen < PUBLISHERS * PER_PUBLISHER);
        if (!takeover)
            conn_free(old);
        cl->c = conn_new();
        handshake(cl, &b);
        if (takeover) {
            CHECK(ferry_link_done(old->link), "client %d: old link not kicked", cl->id);
            conn_free(old);
        }
    }
    ferry_buf_release(&b);
    return NULL;
}

static void *publisher_main(void *arg)
{
    int id = (int)(long)arg;
    for (long k = 0; k < PER_PUBLISHER; k++) {
        char text[64];
        int n = snprintf(text, sizeof text, "{\"p\":%d,\"k\":%ld}", id, k);
        size_t queued;
        int rc = ferry_hub_publish(hub, "all", text, (size_t)n, &queued);
        CHECK(rc == 0 && queued == CLIENTS, "publish: %s, queued %zu", ferry_strerror(rc), queued);
        if (k % 64 == 0)
            usleep(500);
    }
    return NULL;
}

static void *ticker_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_all)) {
        ferry_hub_tick(hub);
        size_t a, d, e;
        ferry_hub_counts(hub, &a, &d, &e);
        CHECK(a + d == CLIENTS && e == 0, "counts %zu %zu %zu", a, d, e);
        usleep(1000);
    }
    return NULL;
}

static void *direct_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000 && !atomic_load(&stop_all); i++) {
        client *cl = &clients[i % CLIENTS];
        char sid[32];
        pthread_mutex_lock(&cl->sid_lock);
        snprintf(sid, sizeof sid, "%s", cl->sid);
        pthread_mutex_unlock(&cl->sid_lock);
        int rc = ferry_hub_send(hub, sid, "{\"direct\":true}", 15);
        CHECK(rc == 0, "send by id: %s", ferry_strerror(rc));
        if (i % 32 == 0)
            usleep(300);
    }
    return NULL;
}

int main(void)
{
    ferry_options o;
    ferry_options_init(&o);
    o.heartbeat_ms = 5; /* pings flow all the time, queued by the ticker */
    o.heartbeat_timeout_ms = 600000;
    o.outbox_max_msgs = 1000000;
    o.outbox_max_bytes = 1u << 30;
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open, .on_message = on_message,
                          .on_close = on_close};
    if (ferry_hub_new(&hub, &o, &cb, NULL) != 0)
        return 1;
    for (int i = 0; i < CLIENTS; i++) {
        app_sessions[i].next = 1;
        clients[i].id = i;
        pthread_mutex_init(&clients[i].sid_lock, NULL);
    }
    pthread_barrier_init(&opened, NULL, CLIENTS + 1);

    pthread_t cl[CLIENTS], pub[PUBLISHERS], ticker, direct;
    for (int i = 0; i < CLIENTS; i++)
        pthread_create(&cl[i], NULL, client_main, &clients[i]);
    pthread_barrier_wait(&opened); /* every client is subscribed before anything is published */
    pthread_create(&ticker, NULL, ticker_main, NULL);
    pthread_create(&direct, NULL, direct_main, NULL);
    for (long i = 0; i < PUBLISHERS; i++)
        pthread_create(&pub[i], NULL, publisher_main, (void *)i);
    for (int i = 0; i < PUBLISHERS; i++)
        pthread_join(pub[i], NULL);
    pthread_join(direct, NULL);

    /* Clients finish on their own once they have seen everything; bound the wait. */
    for (int i = 0; i < 600 && !atomic_load(&stop_all); i++) {
        int done = 0;
        for (int c = 0; c < CLIENTS; c++)
            done += atomic_load(&app_sessions[c].got) == CLIENT_MSGS;
        if (done == CLIENTS)
            break;
        usleep(100000);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(cl[i], NULL);
    atomic_store(&stop_all, true);
    pthread_join(ticker, NULL);

    for (int i = 0; i < CLIENTS; i++) {
        CHECK(clients[i].published_seen == PUBLISHERS * PER_PUBLISHER,
              "client %d saw %ld of %d published messages", i, clients[i].published_seen,
              PUBLISHERS * PER_PUBLISHER);
        CHECK(atomic_load(&app_sessions[i].got) == CLIENT_MSGS,
              "application got %ld of %d messages from client %d",
              atomic_load(&app_sessions[i].got), CLIENT_MSGS, i);
        if (clients[i].c)
            conn_free(clients[i].c);
    }
    ferry_hub_free(hub);
    int f = atomic_load(&failures);
    printf("stress: %d clients, %d publishers x %d messages, %d client messages each, "
           "%d resumes (%d takeovers, %d mid-stream)\n",
           CLIENTS, PUBLISHERS, PER_PUBLISHER, CLIENT_MSGS, atomic_load(&reconnects),
           atomic_load(&takeovers), atomic_load(&midstream));
    printf("%d passed, %d failed\n", f ? 0 : 1, f ? 1 : 0);
    return f ? 1 : 0;
}
