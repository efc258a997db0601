/* The Redis store (cluster/src/store_redis.h) against real servers: the record's
 * encoding, compare-and-set between nodes, Redis stopped and flushed, expiry, and a
 * session that moves from one node to another. A "node" here is a hub with a store of its
 * own (its own connections), both on one Redis. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "helpers.h"
#include "hub.h"
#include "session.h"

static rsrv own; /* a test's private server, for the tests that stop or flush it */

static void own_teardown(void)
{
    rsrv_stop(&own);
    rsrv_cleanup(&own);
    own = (rsrv){0};
}

static ferry_session *find_ok(ferry_hub *hub, const char *sid)
{
    ferry_session *s = NULL;
    ck_assert_int_eq(hub->store->ops->find(hub->store, sid, strlen(sid), &s), 0);
    return s;
}

static int find_rc(ferry_hub *hub, const char *sid)
{
    ferry_session *s = NULL;
    int rc = hub->store->ops->find(hub->store, sid, strlen(sid), &s);
    ferry_session_unref(s);
    return rc;
}

static void fill_hash(fy_hash *h, unsigned char seed)
{
    for (int i = 0; i < FY_HASH_BYTES; i++)
        h->b[i] = (unsigned char)(seed * 31 + i);
}

/* A record with every field set to something its neighbours are not. */
static void fill_rec(fy_rec *r, unsigned nretired)
{
    uint64_t version = r->version;
    memset(r, 0, sizeof *r);
    r->version = version;
    memset(r->identity, 'i', FERRY_IDENTITY_MAX - 1); /* the longest identity */
    fill_hash(&r->secret, 1);
    fill_hash(&r->confirmed, 2);
    fill_hash(&r->confirmed_rid.h, 3);
    r->confirmed_rid.set = true;
    r->unconfirmed = true;
    for (int i = 0; i < FY_KEY_BYTES; i++)
        r->key[i] = (uint8_t)(4 * 31 + i);
    r->has_key = true;
    r->nretired = nretired;
    for (unsigned i = 0; i < FY_RETIRED && i < nretired; i++) {
        fill_hash(&r->retired[i], (unsigned char)(10 + i));
        fill_hash(&r->retired_rid[i].h, (unsigned char)(20 + i));
        r->retired_rid[i].set = i % 2;
    }
    r->in_seq = 0x0123456789abcdefu;
    r->end_reason = FERRY_REASON_FORKED;
}

static void assert_rec_eq(const fy_rec *a, const fy_rec *b)
{
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_str_eq(a->identity, b->identity);
    ck_assert(memcmp(&a->secret, &b->secret, sizeof a->secret) == 0);
    ck_assert(memcmp(&a->confirmed, &b->confirmed, sizeof a->confirmed) == 0);
    ck_assert(memcmp(&a->confirmed_rid.h, &b->confirmed_rid.h, sizeof(fy_hash)) == 0);
    ck_assert_int_eq(a->confirmed_rid.set, b->confirmed_rid.set);
    ck_assert_int_eq(a->unconfirmed, b->unconfirmed);
    ck_assert_int_eq(a->has_key, b->has_key);
    ck_assert(memcmp(a->key, b->key, sizeof a->key) == 0);
    ck_assert_uint_eq(a->nretired, b->nretired);
    for (unsigned i = 0; i < FY_RETIRED && i < a->nretired; i++) {
        ck_assert(memcmp(&a->retired[i], &b->retired[i], sizeof(fy_hash)) == 0);
        ck_assert(memcmp(&a->retired_rid[i].h, &b->retired_rid[i].h, sizeof(fy_hash)) == 0);
        ck_assert_int_eq(a->retired_rid[i].set, b->retired_rid[i].set);
    }
    ck_assert_uint_eq(a->in_seq, b->in_seq);
    ck_assert_int_eq(a->end_reason, b->end_reason);
}

START_TEST(the_encoding_keeps_every_field_and_refuses_what_it_cannot_read)
{
    for (unsigned n = 0; n <= FY_RETIRED + 3; n++) {
        fy_rec a = {0}, b;
        fill_rec(&a, n);
        unsigned char buf[FY_REC_MAX];
        size_t len = fy_rec_encode(&a, buf);
        ck_assert_uint_le(len, FY_REC_MAX);
        ck_assert(fy_rec_decode(&b, buf, len));
        assert_rec_eq(&a, &b);
        ck_assert(!fy_rec_decode(&b, buf, len - 1));
        buf[0] = FY_REC_FORMAT + 1;
        ck_assert(!fy_rec_decode(&b, buf, len));
    }
}
END_TEST

/* A record stored in format 2, before sessions had a rotation key, reads as one without a
 * key (its next rotation makes one); a record without a key is written with flag 4 clear. */
START_TEST(a_format_2_record_reads_without_a_key)
{
    for (unsigned n = 0; n <= FY_RETIRED + 1; n += FY_RETIRED / 2) {
        fy_rec a = {0}, b;
        fill_rec(&a, n);
        unsigned char buf[FY_REC_MAX];
        size_t len = fy_rec_encode(&a, buf);
        /* format 2: the same without the key and its flag */
        size_t key_at = 24 + strlen(a.identity) + 1 + strlen(a.owner) + 3 * FY_HASH_BYTES;
        memmove(buf + key_at, buf + key_at + FY_KEY_BYTES, len - key_at - FY_KEY_BYTES);
        len -= FY_KEY_BYTES;
        buf[0] = 2;
        buf[1] &= (unsigned char)~4u;
        ck_assert(fy_rec_decode(&b, buf, len));
        ck_assert(!b.has_key);
        a.has_key = false;
        memset(a.key, 0, sizeof a.key);
        assert_rec_eq(&a, &b);
        buf[1] |= 4; /* format 2 has no such flag */
        ck_assert(!fy_rec_decode(&b, buf, len));
        /* and back in format 3, still without one */
        len = fy_rec_encode(&a, buf);
        ck_assert_uint_eq(buf[0], FY_REC_FORMAT);
        ck_assert(fy_rec_decode(&b, buf, len));
        assert_rec_eq(&a, &b);
    }
}
END_TEST

/* Two nodes on one Redis, each with its own connections. */
typedef struct nodes {
    ferry_hub *a, *b;
} nodes;

static nodes two_nodes(void (*tweak)(ferry_options *o), const char *addr, unsigned lease_ms)
{
    nodes n;
    n.a = hub_new_store(tweak, test_redis_store(addr, lease_ms));
    /* the same prefix: both are members of one cluster */
    fy_store_redis_cfg cfg = {.redis = {.addr = addr ? addr : shared_redis.addr,
                                        .connect_timeout_ms = 300, .pool = 2},
                              .prefix = test_redis_prefix(), .lease_ms = lease_ms};
    fy_store *st;
    ck_assert_int_eq(fy_store_redis_new(&st, &cfg), 0);
    n.b = hub_new_store(tweak, st);
    return n;
}

static void free_nodes(nodes *n)
{
    hub_free(n->a);
    ferry_hub_free(n->b);
}

START_TEST(a_record_saved_on_one_node_is_read_whole_on_another)
{
    nodes n = two_nodes(NULL, NULL, 0);
    char sid[32];
    fake_conn *c = fc_hello(n.a, sid, NULL);
    ferry_session *s = find_ok(n.a, sid);
    pthread_mutex_lock(&s->lock);
    fy_rec r;
    ck_assert_int_eq(n.a->store->ops->load(n.a->store, s, &r), 0);
    ck_assert_uint_eq(r.version, 1);
    fill_rec(&r, FY_RETIRED + 1);
    r.end_reason = FERRY_REASON_NONE;
    ck_assert_int_eq(n.a->store->ops->save(n.a->store, s, &r), 0);
    fy_rec saved = s->rec;
    pthread_mutex_unlock(&s->lock);

    ferry_session *t = find_ok(n.b, sid);
    ck_assert_ptr_ne(s, t);
    ck_assert_str_eq(t->id, sid);
    ck_assert_str_eq(t->identity, saved.identity);
    ck_assert_int_eq(ferry_session_state(t), FERRY_STATE_DETACHED);
    assert_rec_eq(&t->rec, &saved);
    ck_assert_uint_eq(n.b->store->ops->count(n.b->store), 1);
    /* found again: the same handle */
    ferry_session *t2 = find_ok(n.b, sid);
    ck_assert_ptr_eq(t, t2);
    ferry_session_unref(t2);
    ferry_session_unref(t);
    ferry_session_unref(s);
    fc_close(c);
    free_nodes(&n);
}
END_TEST

START_TEST(of_two_saves_from_one_version_on_two_nodes_exactly_one_wins)
{
    nodes n = two_nodes(NULL, NULL, 0);
    char sid[32];
    fake_conn *c = fc_hello(n.a, sid, NULL);
    ferry_session *sa = find_ok(n.a, sid), *sb = find_ok(n.b, sid);
    fy_store *A = n.a->store, *B = n.b->store;
    fy_rec ra, rb;
    pthread_mutex_lock(&sa->lock);
    pthread_mutex_lock(&sb->lock);
    ck_assert_int_eq(A->ops->load(A, sa, &ra), 0);
    ck_assert_int_eq(B->ops->load(B, sb, &rb), 0);
    ck_assert_uint_eq(ra.version, rb.version);
    ra.in_seq = 7;
    rb.in_seq = 9;
    ck_assert_int_eq(B->ops->save(B, sb, &rb), 0);
    ck_assert_int_eq(A->ops->save(A, sa, &ra), FY_STORE_STALE);
    ck_assert_uint_eq(sa->rec.in_seq, 0); /* the loser's handle is as it was */
    /* The loser loads again and sees the winner's change. */
    ck_assert_int_eq(A->ops->load(A, sa, &ra), 0);
    ck_assert_uint_eq(ra.in_seq, 9);
    ck_assert_uint_eq(ra.version, rb.version + 1);
    ra.in_seq = 10;
    ck_assert_int_eq(A->ops->save(A, sa, &ra), 0);
    ck_assert_int_eq(B->ops->save(B, sb, &rb), FY_STORE_STALE);
    pthread_mutex_unlock(&sb->lock);
    pthread_mutex_unlock(&sa->lock);
    ferry_session_unref(sa);
    ferry_session_unref(sb);
    fc_close(c);
    free_nodes(&n);
}
END_TEST

/* Many nodes save from the same version at once: one save wins. */
enum { RACERS = 6 };

typedef struct racer {
    ferry_hub *hub;
    ferry_session *s;
    fy_rec r;
    pthread_barrier_t *go;
    int rc;
} racer;

static void *race_save(void *ud)
{
    racer *x = ud;
    pthread_barrier_wait(x->go);
    pthread_mutex_lock(&x->s->lock);
    x->rc = x->hub->store->ops->save(x->hub->store, x->s, &x->r);
    pthread_mutex_unlock(&x->s->lock);
    return NULL;
}

START_TEST(of_many_nodes_racing_to_save_one_wins)
{
    ferry_hub *hubs[RACERS];
    racer x[RACERS];
    pthread_t t[RACERS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    char sid[32];
    hubs[0] = hub_new_store(NULL, test_redis_store(NULL, 0));
    fake_conn *c = fc_hello(hubs[0], sid, NULL);
    for (int i = 1; i < RACERS; i++) {
        fy_store_redis_cfg cfg = {.redis = {.addr = shared_redis.addr, .pool = 1},
                                  .prefix = test_redis_prefix()};
        fy_store *st;
        ck_assert_int_eq(fy_store_redis_new(&st, &cfg), 0);
        hubs[i] = hub_new_store(NULL, st);
    }
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < RACERS; i++) {
            x[i] = (racer){.hub = hubs[i], .s = find_ok(hubs[i], sid), .go = &go};
            pthread_mutex_lock(&x[i].s->lock);
            ck_assert_int_eq(hubs[i]->store->ops->load(hubs[i]->store, x[i].s, &x[i].r), 0);
            pthread_mutex_unlock(&x[i].s->lock);
            x[i].r.in_seq = (uint64_t)(round * RACERS + i);
        }
        for (int i = 0; i < RACERS; i++)
            pthread_create(&t[i], NULL, race_save, &x[i]);
        int wins = 0, winner = -1;
        for (int i = 0; i < RACERS; i++) {
            pthread_join(t[i], NULL);
            ck_assert(x[i].rc == 0 || x[i].rc == FY_STORE_STALE);
            if (x[i].rc == 0)
                wins++, winner = i;
        }
        ck_assert_int_eq(wins, 1);
        fy_rec now;
        pthread_mutex_lock(&x[0].s->lock);
        ck_assert_int_eq(hubs[0]->store->ops->load(hubs[0]->store, x[0].s, &now), 0);
        pthread_mutex_unlock(&x[0].s->lock);
        ck_assert_uint_eq(now.in_seq, (uint64_t)(round * RACERS + winner));
        ck_assert_uint_eq(now.version, x[0].r.version + 1);
        for (int i = 0; i < RACERS; i++)
            ferry_session_unref(x[i].s);
    }
    pthread_barrier_destroy(&go);
    fc_close(c);
    hub_free(hubs[0]);
    for (int i = 1; i < RACERS; i++)
        ferry_hub_free(hubs[i]);
}
END_TEST

START_TEST(adding_an_id_that_exists_fails_and_changes_nothing)
{
    nodes n = two_nodes(NULL, NULL, 0);
    char sid[32];
    fake_conn *c = fc_hello(n.a, sid, NULL);
    ferry_session *s = find_ok(n.a, sid);
    fy_rec before = s->rec;

    ferry_session *twin = fy_session_new(n.b);
    memcpy(twin->id, sid, sizeof twin->id);
    fill_rec(&twin->rec, 2);
    ck_assert_int_eq(n.b->store->ops->add(n.b->store, twin), FERRY_ESTORE);
    ck_assert_uint_eq(n.b->store->ops->count(n.b->store), 0);
    ferry_session_unref(twin);

    fy_rec after;
    pthread_mutex_lock(&s->lock);
    ck_assert_int_eq(n.a->store->ops->load(n.a->store, s, &after), 0);
    pthread_mutex_unlock(&s->lock);
    assert_rec_eq(&before, &after);
    ferry_session_unref(s);
    fc_close(c);
    free_nodes(&n);
}
END_TEST

static json_t *hello_frames(ferry_hub *hub, fake_conn **c, int *rc)
{
    *c = fc_open(hub);
    *rc = fc_send(*c, "{\"t\":\"hello\",\"v\":1}");
    return fc_drain(*c);
}

START_TEST(with_redis_stopped_everything_fails_changes_nothing_and_then_recovers)
{
    ck_assert_int_eq(rsrv_start(&own), 0);
    ferry_hub *hub = hub_new_store(NULL, test_redis_store(own.addr, 0));
    fy_store *st = hub->store;
    char sid[32];
    fake_conn *a = fc_hello(hub, sid, NULL);
    ferry_session *s = find_ok(hub, sid);
    fy_rec before = s->rec, r;

    rsrv_stop(&own);
    ck_assert_int_eq(find_rc(hub, sid), FERRY_ESTORE);
    pthread_mutex_lock(&s->lock);
    ck_assert_int_eq(st->ops->load(st, s, &r), FERRY_ESTORE);
    r = before;
    r.in_seq = 5;
    ck_assert_int_eq(st->ops->save(st, s, &r), FERRY_ESTORE);
    assert_rec_eq(&s->rec, &before);
    pthread_mutex_unlock(&s->lock);
    ck_assert_int_eq(st->ops->remove(st, s), FERRY_ESTORE);
    ck_assert_uint_eq(st->ops->count(st), 1);
    ck_assert_int_eq(ferry_hub_send(hub, sid, "1", 1), FERRY_ESTORE);
    fake_conn *b;
    int rc;
    json_t *f = hello_frames(hub, &b, &rc);
    ck_assert_int_eq(rc, FERRY_ESTORE);
    ck_assert_ptr_null(frame_of(f, "welcome", 0));
    json_decref(f);
    fc_close(b);
    ck_assert_uint_eq(st->ops->count(st), 1);
    ck_assert_int_eq(ferry_hub_tick(hub), 0); /* the lease refresh fails quietly */

    /* Back, empty (no persistence): the same store works again by itself. */
    ck_assert_int_eq(rsrv_start(&own), 0);
    f = hello_frames(hub, &b, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(frame_of(f, "welcome", 0));
    json_decref(f);
    ck_assert_uint_eq(st->ops->count(st), 2);
    ck_assert_int_eq(find_rc(hub, sid), FERRY_ENOTFOUND); /* its data went with it */
    ferry_session_unref(s);
    fc_close(a);
    fc_close(b);
    hub_free(hub);
}
END_TEST

START_TEST(after_flushall_a_session_is_not_found)
{
    ck_assert_int_eq(rsrv_start(&own), 0);
    nodes n = two_nodes(NULL, own.addr, 0);
    char sid[32];
    fake_conn *c = fc_hello(n.a, sid, NULL);
    ferry_session *s = find_ok(n.a, sid);
    fy_redis *r = test_redis_pool(own.addr);
    const char *flush[] = {"FLUSHALL"};
    freeReplyObject(test_redis_cmd(r, 1, flush));
    ck_assert_int_eq(find_rc(n.a, sid), FERRY_ENOTFOUND); /* though node a has a handle */
    ck_assert_int_eq(find_rc(n.b, sid), FERRY_ENOTFOUND);
    ck_assert_int_eq(ferry_hub_send(n.a, sid, "1", 1), FERRY_ENOTFOUND);

    /* The orphaned handle cannot save a change; its end it can (nothing to keep). */
    fy_store *st = n.a->store;
    fy_rec rec;
    pthread_mutex_lock(&s->lock);
    rec = s->rec;
    rec.in_seq = 3;
    ck_assert_int_eq(st->ops->load(st, s, &rec), FERRY_ESTORE);
    ck_assert_int_eq(st->ops->save(st, s, &rec), FERRY_ESTORE);
    rec.end_reason = FERRY_REASON_SERVER;
    ck_assert_int_eq(st->ops->save(st, s, &rec), 0);
    pthread_mutex_unlock(&s->lock);
    fy_redis_free(r);
    ferry_session_unref(s);
    fc_close(c);
    free_nodes(&n);
}
END_TEST

static long long pttl(fy_redis *r, const char *sid)
{
    char key[160];
    snprintf(key, sizeof key, "%ss:%s", test_redis_prefix(), sid);
    const char *argv[] = {"PTTL", key};
    redisReply *rep = test_redis_cmd(r, 2, argv);
    long long ms = rep->integer;
    freeReplyObject(rep);
    return ms;
}

static void short_tombstones(ferry_options *o)
{
    o->tombstone_ms = 5000;
}

START_TEST(records_expire_a_lease_after_the_last_refresh_and_tombstones_sooner)
{
    ferry_hub *hub = hub_new_store(short_tombstones, test_redis_store(NULL, 60000));
    fy_redis *r = test_redis_pool(NULL);
    char sid[32];
    fake_conn *c = fc_hello(hub, sid, NULL);
    long long ms = pttl(r, sid); /* the key has the documented name, and the lease */
    ck_assert_int_gt(ms, 50000);
    ck_assert_int_le(ms, 60000);

    /* The tick pushes the lease forward. */
    char key[160];
    snprintf(key, sizeof key, "%ss:%s", test_redis_prefix(), sid);
    const char *shorten[] = {"PEXPIRE", key, "1000"};
    freeReplyObject(test_redis_cmd(r, 3, shorten));
    ck_assert_int_le(pttl(r, sid), 1000);
    ck_assert_int_eq(ferry_hub_tick(hub), 0);
    ck_assert_int_gt(pttl(r, sid), 50000);

    /* Ended: a tombstone, kept for tombstone_ms. */
    ck_assert_int_eq(fc_send(c, "{\"t\":\"close\"}"), 0);
    ms = pttl(r, sid);
    ck_assert_int_gt(ms, 0);
    ck_assert_int_le(ms, 5000);
    fy_redis_free(r);
    fc_close(c);
    hub_free(hub);
}
END_TEST

START_TEST(a_record_its_node_abandoned_expires)
{
    nodes n = two_nodes(NULL, NULL, 300);
    char sid[32];
    fake_conn *c = fc_hello(n.a, sid, NULL);
    ck_assert_int_eq(find_rc(n.b, sid), 0);
    /* Node a stops refreshing (as if killed): the record goes after the lease. */
    usleep(400 * 1000);
    fy_store *B = n.b->store;
    ferry_session *none = NULL;
    ck_assert_int_eq(B->ops->find(B, sid, strlen(sid), &none), FERRY_ENOTFOUND);
    fc_close(c);
    free_nodes(&n);
}
END_TEST

/* A session opened on node a, its connection gone, resumes on node b: the record moved
 * through Redis, the secret rotated there, and node a sees the rotation. */
START_TEST(a_session_resumes_on_another_node)
{
    nodes n = two_nodes(NULL, NULL, 0);
    char sid[32], secret[64];
    fake_conn *a = fc_hello(n.a, sid, secret);
    fc_close(a);
    fake_conn *b = fc_open(n.b);
    ck_assert_int_eq(fc_send(b, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\","
                                "\"ack\":0}", sid, secret), 0);
    json_t *f = fc_drain(b);
    json_t *w = frame_of(f, "welcome", 0);
    ck_assert_ptr_nonnull(w);
    ck_assert(json_is_true(json_object_get(w, "resumed")));
    ck_assert_str_ne(str_of(w, "secret"), secret);
    json_decref(f);

    ferry_session *s = find_ok(n.a, sid);
    fy_rec r;
    pthread_mutex_lock(&s->lock);
    uint64_t was = s->rec.version;
    ck_assert_int_eq(n.a->store->ops->load(n.a->store, s, &r), 0);
    pthread_mutex_unlock(&s->lock);
    ck_assert_uint_eq(r.version, was + 1);
    ck_assert(r.unconfirmed);
    ferry_session_unref(s);
    fc_close(b);
    free_nodes(&n);
}
END_TEST

/* The stored record of `sid` (test_redis_prefix), its bytes into buf; the length. */
static size_t stored_rec(fy_redis *r, const char *sid, unsigned char buf[FY_REC_MAX])
{
    char key[160];
    snprintf(key, sizeof key, "%ss:%s", test_redis_prefix(), sid);
    const char *argv[] = {"HGET", key, "r"};
    redisReply *rep = test_redis_cmd(r, 3, argv);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    ck_assert_uint_le(rep->len, FY_REC_MAX);
    size_t len = rep->len;
    memcpy(buf, rep->str, len);
    freeReplyObject(rep);
    return len;
}

static json_t *resume_with_rid(fake_conn *c, const char *sid, const char *secret)
{
    ck_assert_int_eq(fc_send(c, "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\","
                                "\"ack\":0,\"rid\":\"a6Vq3m0Xr9Tz1LpK2wYb8Q\"}", sid, secret), 0);
    return fc_drain(c);
}

/* A record stored in format 2 (before the rotation key) is resumed: its first rotation
 * makes the key and saves it in the same compare-and-set, so a retry of that resume on
 * another node derives the same secret from the stored key. */
START_TEST(a_record_stored_without_a_key_gets_one_with_its_next_rotation)
{
    nodes n = two_nodes(NULL, NULL, 0);
    fy_redis *r = test_redis_pool(NULL);
    char sid[32], secret[64], key[160];
    fake_conn *a = fc_hello(n.a, sid, secret);
    fc_close(a);
    unsigned char buf[FY_REC_MAX];
    size_t len = stored_rec(r, sid, buf);
    ck_assert_uint_eq(buf[0], FY_REC_FORMAT);
    ck_assert(buf[1] & 4);
    /* rewritten as format 2: no key, no flag */
    size_t key_at = 24 + 0 + 1 + 0 + 3 * FY_HASH_BYTES; /* no identity, no owner */
    memmove(buf + key_at, buf + key_at + FY_KEY_BYTES, len - key_at - FY_KEY_BYTES);
    len -= FY_KEY_BYTES;
    buf[0] = 2;
    buf[1] &= (unsigned char)~4u;
    snprintf(key, sizeof key, "%ss:%s", test_redis_prefix(), sid);
    const char *hset[] = {"HSET", key, "r", (const char *)buf};
    size_t lens[] = {4, strlen(key), 1, len};
    redisReply *rep;
    ck_assert_int_eq(fy_redis_command(r, &rep, 4, hset, lens), 0);
    freeReplyObject(rep);

    fake_conn *b = fc_open(n.b);
    json_t *f = resume_with_rid(b, sid, secret);
    json_t *w = frame_of(f, "welcome", 0);
    ck_assert(json_is_true(json_object_get(w, "resumed")));
    char s1[64];
    snprintf(s1, sizeof s1, "%s", str_of(w, "secret"));
    json_decref(f);
    len = stored_rec(r, sid, buf);
    ck_assert_uint_eq(buf[0], FY_REC_FORMAT);
    ck_assert(buf[1] & 4);
    fc_close(b);
    a = fc_open(n.a); /* the welcome was lost: the retry goes to the other node */
    f = resume_with_rid(a, sid, secret);
    w = frame_of(f, "welcome", 0);
    ck_assert(json_is_true(json_object_get(w, "resumed")));
    ck_assert_str_eq(str_of(w, "secret"), s1);
    json_decref(f);
    fc_close(a);
    fy_redis_free(r);
    free_nodes(&n);
}
END_TEST

/* The bytes one session's record takes in Redis (docs/CLUSTER.md), printed, and bounded. */
START_TEST(a_record_takes_under_a_kilobyte)
{
    ferry_hub *hub = hub_new_store(NULL, test_redis_store(NULL, 0));
    fy_redis *r = test_redis_pool(NULL);
    char sid[32];
    fake_conn *c = fc_hello(hub, sid, NULL);
    ferry_session *s = find_ok(hub, sid);
    char key[160];
    snprintf(key, sizeof key, "%ss:%s", test_redis_prefix(), sid);
    const char *usage[] = {"MEMORY", "USAGE", key, "SAMPLES", "0"};
    long long fresh, full;
    redisReply *rep = test_redis_cmd(r, 5, usage);
    fresh = rep->integer;
    freeReplyObject(rep);
    /* the largest record: a 127-byte identity and a full ring of retired secrets */
    pthread_mutex_lock(&s->lock);
    fy_rec rec = s->rec;
    fill_rec(&rec, FY_RETIRED);
    rec.end_reason = FERRY_REASON_NONE;
    ck_assert_int_eq(hub->store->ops->save(hub->store, s, &rec), 0);
    pthread_mutex_unlock(&s->lock);
    rep = test_redis_cmd(r, 5, usage);
    full = rep->integer;
    freeReplyObject(rep);
    fprintf(stderr, "redis store: MEMORY USAGE of a record: %lld bytes new, %lld at most "
                    "(key %zu bytes)\n", fresh, full, strlen(key));
    ck_assert_int_lt(fresh, 1024);
    ck_assert_int_lt(full, 1536);
    ferry_session_unref(s);
    fy_redis_free(r);
    fc_close(c);
    hub_free(hub);
}
END_TEST

static long long used_memory(fy_redis *r)
{
    const char *argv[] = {"INFO", "memory"};
    redisReply *rep = test_redis_cmd(r, 2, argv);
    const char *p = strstr(rep->str, "used_memory:");
    long long n = p ? atoll(p + strlen("used_memory:")) : -1;
    freeReplyObject(rep);
    return n;
}

/* What Redis as a whole spends per session (INFO memory, over many records with an
 * identity and a lease): key, hash, expiry entry and the table's share. */
START_TEST(many_records_cost_what_docs_cluster_says)
{
    enum { N = 2000 };
    ck_assert_int_eq(rsrv_start(&own), 0);
    ferry_hub *hub = hub_new_store(NULL, test_redis_store(own.addr, 0));
    fy_store *st = hub->store;
    fy_redis *r = test_redis_pool(own.addr);
    static ferry_session *s[N];
    long long before = used_memory(r);
    for (int i = 0; i < N; i++) {
        s[i] = fy_session_new(hub);
        snprintf(s[i]->rec.identity, sizeof s[i]->rec.identity, "user-%06d", i);
        fill_hash(&s[i]->rec.secret, (unsigned char)i);
        ck_assert_int_eq(st->ops->add(st, s[i]), 0);
    }
    long long after = used_memory(r);
    fprintf(stderr, "redis store: %d records take %lld bytes of used_memory, %lld each\n", N,
            after - before, (after - before) / N);
    ck_assert_int_lt((after - before) / N, 1024);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(st->ops->remove(st, s[i]), 0);
        ferry_session_unref(s[i]);
    }
    fy_redis_free(r);
    hub_free(hub);
}
END_TEST

Suite *store_redis_suite(void)
{
    Suite *s = suite_create("store_redis");
    TCase *tc = tcase_create("store_redis");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, NULL, own_teardown);
    tcase_add_test(tc, the_encoding_keeps_every_field_and_refuses_what_it_cannot_read);
    tcase_add_test(tc, a_format_2_record_reads_without_a_key);
    tcase_add_test(tc, a_record_saved_on_one_node_is_read_whole_on_another);
    tcase_add_test(tc, of_two_saves_from_one_version_on_two_nodes_exactly_one_wins);
    tcase_add_test(tc, of_many_nodes_racing_to_save_one_wins);
    tcase_add_test(tc, adding_an_id_that_exists_fails_and_changes_nothing);
    tcase_add_test(tc, with_redis_stopped_everything_fails_changes_nothing_and_then_recovers);
    tcase_add_test(tc, after_flushall_a_session_is_not_found);
    tcase_add_test(tc, records_expire_a_lease_after_the_last_refresh_and_tombstones_sooner);
    tcase_add_test(tc, a_record_its_node_abandoned_expires);
    tcase_add_test(tc, a_session_resumes_on_another_node);
    tcase_add_test(tc, a_record_stored_without_a_key_gets_one_with_its_next_rotation);
    tcase_add_test(tc, a_record_takes_under_a_kilobyte);
    tcase_add_test(tc, many_records_cost_what_docs_cluster_says);
    suite_add_tcase(s, tc);
    return s;
}
