/* The long-polling transport. A session's long-poll link lives across requests:
 *   POST <prefix>/lp                    a handshake (hello or resume) in the body
 *   GET  <prefix>/lp?ack=N              a poll, held until something is due
 *   POST <prefix>/lp                    client frames in the body
 * Polls and sends carry "Authorization: Bearer <sid>:<secret>": neither the session ID nor
 * the secret is ever in a URL, where proxies and logs would keep it.
 * Every poll replays from the client's ack, so a response lost in flight is sent again. */
#include <errno.h>
#include <search.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mount.h"

struct lp_sess {
    char sid[32];             /* first: the table's key (lp_cmp) */
    ferry_mount *m;
    ferry_link *link;
    atomic_int refs;          /* the table's and each request's (fy_ref) */
    bool in_table;            /* (m->lp_lock) */
    lp_sess *prev, *next;     /* m->lp_all (m->lp_lock) */
    lp_sess *next_drop;       /* on a lp_drops list (m->lp_lock) */
    pthread_mutex_t rlock;    /* serializes ferry_link_recv, as one reader would */
    pthread_mutex_t slock;    /* the fields below */
    pthread_cond_t cond;
    unsigned poll_gen;        /* bumped by each poll: an older held poll ends */
    bool woken;
    bool dead;                /* ferry kicked the link, */
    uint64_t dead_since;      /* at this time (hub clock) */
    bool dropped;             /* ferry_mount_drop_connections: end held polls with [] */
    bool holding;             /* a poll is held now */
};

_Static_assert(offsetof(lp_sess, sid) == 0, "an entry's address is its key's");

static void lp_wake(void *ud)
{
    lp_sess *lp = ud;
    pthread_mutex_lock(&lp->slock);
    lp->woken = true;
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->slock);
}

static void lp_kick(void *ud)
{
    lp_sess *lp = ud;
    pthread_mutex_lock(&lp->slock);
    if (!lp->dead) {
        lp->dead = true;
        lp->dead_since = ferry_hub_now(lp->m->hub);
    }
    lp->woken = true;
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->slock);
}

static const ferry_link_ops lp_ops = {sizeof lp_ops, lp_wake, lp_kick};

static lp_sess *lp_new(ferry_mount *m)
{
    lp_sess *lp = calloc(1, sizeof *lp);
    if (!lp)
        return NULL;
    if (ferry_link_new(&lp->link, m->hub, &lp_ops, lp) != 0) {
        free(lp);
        return NULL;
    }
    ferry_link_set_transport(lp->link, FERRY_TRANSPORT_LONGPOLL);
    lp->m = m;
    atomic_init(&lp->refs, 1);
    pthread_mutex_init(&lp->rlock, NULL);
    pthread_mutex_init(&lp->slock, NULL);
    pthread_cond_init(&lp->cond, NULL);
    return lp;
}

static void lp_free(lp_sess *lp)
{
    ferry_link_free(lp->link);
    pthread_mutex_destroy(&lp->rlock);
    pthread_mutex_destroy(&lp->slock);
    pthread_cond_destroy(&lp->cond);
    free(lp);
}

static void lp_unref(lp_sess *lp)
{
    if (fy_unref(&lp->refs))
        lp_free(lp);
}

/* References the table gave up while m->lp_lock was held, dropped once it is released
 * (fy_unref). */
typedef struct lp_drops {
    lp_sess *head;
} lp_drops;

static void lp_drop_all(lp_drops *d)
{
    while (d->head) {
        lp_sess *lp = d->head;
        d->head = lp->next_drop;
        lp_unref(lp);
    }
}

/* The table: entries by session ID in a tree (every entry's address is its ID's), and in a
 * list for walking them. All with m->lp_lock held. */
static int lp_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static lp_sess *lp_get_locked(ferry_mount *m, const char *sid)
{
    void *n = tfind(sid, &m->lp_tree, lp_cmp);
    return n ? *(lp_sess **)n : NULL;
}

/* False, and nothing changed, if the tree cannot grow. */
static bool lp_put_locked(ferry_mount *m, lp_sess *lp)
{
    if (!tsearch(lp, &m->lp_tree, lp_cmp))
        return false;
    lp->in_table = true;
    lp->prev = NULL;
    lp->next = m->lp_all;
    if (m->lp_all)
        m->lp_all->prev = lp;
    m->lp_all = lp;
    return true;
}

static void lp_remove_locked(ferry_mount *m, lp_sess *lp, lp_drops *d)
{
    if (!lp->in_table)
        return;
    tdelete(lp, &m->lp_tree, lp_cmp);
    if (lp->prev)
        lp->prev->next = lp->next;
    else
        m->lp_all = lp->next;
    if (lp->next)
        lp->next->prev = lp->prev;
    lp->in_table = false;
    lp->next_drop = d->head;
    d->head = lp;
}

static lp_sess *lp_find(ferry_mount *m, const char *sid)
{
    pthread_mutex_lock(&m->lp_lock);
    lp_sess *lp = lp_get_locked(m, sid);
    if (lp)
        fy_ref(&lp->refs);
    pthread_mutex_unlock(&m->lp_lock);
    return lp;
}

/* Reads the request body into b. Returns 0, or the HTTP status to answer with. */
static int read_body(struct mg_connection *conn, ferry_mount *m, ferry_buf *b)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri->content_length < 0)
        return 411;
    if ((uint64_t)ri->content_length > m->core.max_frame_bytes) {
        ferry_hub_count_limit(m->hub, FERRY_LIMIT_FRAME_SIZE);
        return 413;
    }
    size_t want = (size_t)ri->content_length;
    if (ferry_buf_reserve(b, want + 1))
        return 503;
    while (b->len < want) {
        int n = mg_read(conn, b->data + b->len, want - b->len);
        if (n <= 0)
            return 400;
        b->len += (size_t)n;
    }
    return 0;
}

#define LP_NOT_FOUND "no long-poll session with these credentials; resume"

bool fy_lp_credentials(const char *h, char sid[32], const char **secret)
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *colon = strchr(h + 7, ':');
    if (!colon || colon - (h + 7) >= 32)
        return false;
    memcpy(sid, h + 7, (size_t)(colon - (h + 7)));
    sid[colon - (h + 7)] = '\0';
    *secret = colon + 1;
    return true;
}

/* Answers a request whose body read_body refused with `status`. */
static void refuse_body(struct mg_connection *conn, ferry_mount *m, int status)
{
    fy_http_answer(conn, m, status, NULL,
                   status == 413 ? FERRY_ETOOBIG : status == 503 ? FERRY_ENOMEM : FERRY_OK,
                   status == 413 ? "request body over the frame limit" : NULL);
}

/* The status of a send's or poll's answer, from what ferry made of it: a frame the server
 * could not take for now (memory, the store) changed nothing and may be sent again (503,
 * which a client retries), unlike one it got wrong (400). */
static int lp_status(int rc)
{
    return rc == 0 || rc == FERRY_ECLOSED ? 200 : rc == FERRY_ENOMEM || rc == FERRY_ESTORE ? 503 : 400;
}

static void handshake(struct mg_connection *conn, ferry_mount *m)
{
    ferry_buf body = {0}, out = {0};
    int status = read_body(conn, m, &body);
    if (status) {
        refuse_body(conn, m, status);
        ferry_buf_release(&body);
        return;
    }
    lp_sess *lp = lp_new(m);
    if (!lp) {
        fy_http_answer(conn, m, 503, NULL, FERRY_ENOMEM, NULL);
        ferry_buf_release(&body);
        return;
    }
    ferry_link_set_peer(lp->link, fy_peer_addr(m, conn), fy_conn_header, conn);
    int rc = ferry_link_recv(lp->link, body.data, body.len);
    ferry_link_set_peer(lp->link, NULL, NULL, NULL); /* the request ends; no handshake follows */
    const char *sid = ferry_link_session_id(lp->link);
    if (ferry_link_pull(lp->link, &out, FERRY_PULL_ARRAY | FERRY_PULL_REPLAY) < 0)
        rc = FERRY_ENOMEM;
    bool listed = false;
    if (sid && rc != FERRY_ENOMEM) {
        snprintf(lp->sid, sizeof lp->sid, "%s", sid);
        lp_drops d = {NULL};
        pthread_mutex_lock(&m->lp_lock);
        /* A re-handshake on long-polling replaces the session's previous link, which
         * ferry has already kicked. */
        lp_sess *old = lp_get_locked(m, lp->sid);
        if (old)
            lp_remove_locked(m, old, &d);
        listed = lp_put_locked(m, lp);
        pthread_mutex_unlock(&m->lp_lock);
        lp_drop_all(&d);
        if (!listed)
            rc = FERRY_ENOMEM; /* the session stays resumable */
    }
    if (listed) {
        fy_http_json(conn, m, 200, NULL, &out);
    } else if (rc == FERRY_ENOMEM) {
        fy_http_answer(conn, m, 503, NULL, FERRY_ENOMEM, NULL);
        lp_unref(lp);
    } else if (rc == FERRY_ESTORE) { /* the error frame says internal; a retry may work */
        fy_http_json(conn, m, 503, NULL, &out);
        lp_unref(lp);
    } else {
        fy_http_json(conn, m, fy_refusal_of(ferry_link_end_reason(lp->link))->http_status,
                     NULL, &out);
        lp_unref(lp);
    }
    ferry_buf_release(&body);
    ferry_buf_release(&out);
}

/* Finds the session a poll or send names and checks its secret. Answers the request itself
 * and returns NULL when it cannot go on: every failure looks the same from outside, except
 * that an ended session's final reset or close frame is still delivered to its owner. */
static lp_sess *authorize(struct mg_connection *conn, ferry_mount *m)
{
    char sid[32];
    const char *secret = "";
    lp_sess *lp = NULL;
    if (fy_lp_credentials(mg_get_header(conn, "Authorization"), sid, &secret))
        lp = lp_find(m, sid);
    int rc = FERRY_ENOTFOUND;
    if (lp)
        rc = ferry_link_check_secret(lp->link, secret, strlen(secret));
    if (rc == 0)
        return lp;
    if (rc == FERRY_ECLOSED) {
        ferry_buf out = {0};
        if (ferry_link_pull(lp->link, &out, FERRY_PULL_ARRAY) > 0) {
            fy_http_json(conn, m, 200, NULL, &out);
            ferry_buf_release(&out);
            lp_unref(lp);
            return NULL;
        }
        ferry_buf_release(&out);
    }
    if (rc == FERRY_ENOTFOUND && atomic_load(&m->drain_started)) {
        /* A draining node holds no session it does not know already: the request was meant
         * for another node (a balancer's hash), and 503 makes the balancer pass it on there
         * (nginx proxy_next_upstream http_503); the client, alone, retries later. */
        fy_http_answer(conn, m, 503, NULL, FERRY_OK, NULL);
        if (lp)
            lp_unref(lp);
        return NULL;
    }
    fy_http_answer(conn, m, 404, NULL, FERRY_ENOTFOUND, LP_NOT_FOUND);
    if (lp)
        lp_unref(lp);
    return NULL;
}

bool fy_lp_parse_ack(const char *q, uint64_t *ack)
{
    char v[24];
    if (mg_get_var(q, strlen(q), "ack", v, sizeof v) <= 0)
        return false;
    char *end;
    errno = 0;
    unsigned long long a = strtoull(v, &end, 10);
    if (errno || *end || end == v || v[0] == '-' || a > 9007199254740991ull)
        return false;
    *ack = a;
    return true;
}

/* A held poll carries messages and control frames but not errors: every error answers a
 * send or handshake, and goes back on that request's own response. */
#define LP_POLL_PULL (FERRY_PULL_ARRAY | FERRY_PULL_REPLAY | FERRY_PULL_NO_ERRORS)

/* Holds poll `gen` until something is due, a newer poll or a drop supersedes it, the mount
 * stops, or the poll timeout passes; leaves the answer in `out`. */
static void hold_poll(ferry_mount *m, lp_sess *lp, unsigned gen, ferry_buf *out)
{
    uint64_t deadline = ferry_hub_now(m->hub) + m->opt.poll_timeout_ms;
    for (;;) {
        out->len = 0;
        int n = ferry_link_pull(lp->link, out, LP_POLL_PULL);
        if (n != 0 || ferry_link_done(lp->link))
            break;
        bool stop = false;
        pthread_mutex_lock(&lp->slock);
        while (!lp->woken && gen == lp->poll_gen && !lp->dropped &&
               !atomic_load(&m->stopping)) {
            uint64_t now = ferry_hub_now(m->hub);
            if (now >= deadline) {
                stop = true;
                break;
            }
            struct timespec ts;
            fy_deadline(&ts, deadline - now);
            pthread_cond_timedwait(&lp->cond, &lp->slock, &ts);
        }
        lp->woken = false;
        bool superseded = gen != lp->poll_gen || lp->dropped;
        pthread_mutex_unlock(&lp->slock);
        if (superseded) {
            out->len = 0; /* the newer poll (or a reconnect) gets everything */
            ferry_answer_encode(out, FERRY_OK, NULL);
            break;
        }
        if (stop || atomic_load(&m->stopping)) {
            /* timed out, or the mount is stopping: whatever is due (a final close
             * "shutdown" frame), or [] */
            out->len = 0;
            ferry_link_pull(lp->link, out, LP_POLL_PULL);
            break;
        }
    }
}

static void poll_req(struct mg_connection *conn, ferry_mount *m)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *q = ri->query_string ? ri->query_string : "";
    uint64_t ack;
    if (!fy_lp_parse_ack(q, &ack)) {
        fy_http_answer(conn, m, 400, NULL, FERRY_EFIELD, "ack must be an integer from 0 to 2^53-1");
        return;
    }
    lp_sess *lp = authorize(conn, m);
    if (!lp)
        return;
    if (!fy_conn_acquire(m)) {
        fy_http_answer(conn, m, 503, NULL, FERRY_OK, NULL);
        lp_unref(lp);
        return;
    }
    /* One held poll per session: this one ends any earlier one. */
    pthread_mutex_lock(&lp->slock);
    if (lp->holding)
        ferry_hub_count_limit(m->hub, FERRY_LIMIT_POLLS);
    lp->holding = true;
    unsigned gen = ++lp->poll_gen;
    lp->woken = false;
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->slock);

    atomic_fetch_add(&m->held_polls, 1);
    ferry_buf out = {0};
    pthread_mutex_lock(&lp->rlock);
    int rc = ferry_link_ack(lp->link, ack);
    int status = 200;
    if (rc && rc != FERRY_ECLOSED) { /* its error, pulled before another request can */
        status = lp_status(rc);
        ferry_link_pull(lp->link, &out, FERRY_PULL_ARRAY | FERRY_PULL_CONTROL);
    }
    pthread_mutex_unlock(&lp->rlock);
    if (status == 200)
        hold_poll(m, lp, gen, &out);
    pthread_mutex_lock(&lp->slock);
    if (gen == lp->poll_gen)
        lp->holding = false;
    pthread_mutex_unlock(&lp->slock);
    atomic_fetch_sub(&m->held_polls, 1);
    fy_http_json(conn, m, status, NULL, &out);
    ferry_buf_release(&out);
    fy_conn_release(m);
    lp_unref(lp);
}

static void send_req(struct mg_connection *conn, ferry_mount *m)
{
    ferry_buf body = {0}, out = {0};
    int status = read_body(conn, m, &body);
    if (status) {
        refuse_body(conn, m, status);
        ferry_buf_release(&body);
        return;
    }
    lp_sess *lp = authorize(conn, m);
    if (lp) {
        /* The pull under rlock as well: a concurrent send must not take this one's error. */
        pthread_mutex_lock(&lp->rlock);
        int rc = ferry_link_recv(lp->link, body.data, body.len);
        int n = ferry_link_pull(lp->link, &out, FERRY_PULL_ARRAY | FERRY_PULL_CONTROL);
        pthread_mutex_unlock(&lp->rlock);
        if (rc == FERRY_ECLOSED && n == 0) /* taken over since authorize: not applied */
            fy_http_answer(conn, m, 404, NULL, FERRY_ENOTFOUND, LP_NOT_FOUND);
        else
            fy_http_json(conn, m, lp_status(rc), NULL, &out);
        lp_unref(lp);
    }
    ferry_buf_release(&body);
    ferry_buf_release(&out);
}

static void preflight(struct mg_connection *conn, ferry_mount *m)
{
    if (!fy_origin_check(m, conn, "a CORS preflight", m->lp_path)) {
        fy_origin_refuse(conn, m, NULL);
        return;
    }
    fy_http_reply(conn, m, 204,
                  "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                  "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
                  "Access-Control-Max-Age: 600\r\n",
                  "application/json", "", 0);
}

static void lp_dispatch(struct mg_connection *conn, ferry_mount *m)
{
    pthread_mutex_lock(&m->lp_lock);
    bool stopping = atomic_load(&m->stopping);
    if (!stopping)
        m->lp_active++;
    pthread_mutex_unlock(&m->lp_lock);
    if (stopping) {
        fy_http_answer(conn, m, 503, NULL, FERRY_OK, NULL);
        return;
    }

    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *method = ri->request_method;
    bool has_creds = mg_get_header(conn, "Authorization") != NULL;
    if (strcmp(method, "OPTIONS") == 0)
        preflight(conn, m);
    else if (!fy_origin_check(m, conn, "a long-poll request", m->lp_path))
        fy_origin_refuse(conn, m, NULL);
    else if (strcmp(method, "POST") == 0 && !has_creds && atomic_load(&m->drain_started))
        fy_http_answer(conn, m, 503, NULL, FERRY_OK, NULL); /* draining: elsewhere, please */
    else if (strcmp(method, "POST") == 0 && !has_creds)
        handshake(conn, m);
    else if (strcmp(method, "GET") == 0)
        poll_req(conn, m);
    else if (strcmp(method, "POST") == 0)
        send_req(conn, m);
    else
        fy_http_answer(conn, m, 405, "Allow: GET, POST, OPTIONS\r\n", FERRY_OK, NULL);

    pthread_mutex_lock(&m->lp_lock);
    if (--m->lp_active == 0)
        pthread_cond_broadcast(&m->lp_idle);
    pthread_mutex_unlock(&m->lp_lock);
}

static int lp_handler(struct mg_connection *conn, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    lp_dispatch(conn, m);
    fy_mount_leave(m);
    return 200; /* the status was written; any non-zero says "handled" */
}

int fy_lp_start(ferry_mount *m)
{
    mg_set_request_handler(m->ctx, m->lp_path, lp_handler, m);
    return 0;
}

/* Takes every entry ferry is done with (dead for a poll period, so that its owner could
 * still fetch a final frame) out of the table; every entry if `all`, and if `drop` ends
 * their held polls too (with []). */
static void lp_sweep(ferry_mount *m, bool all, bool drop)
{
    lp_drops d = {NULL};
    pthread_mutex_lock(&m->lp_lock);
    lp_sess *next;
    for (lp_sess *lp = m->lp_all; lp; lp = next) {
        next = lp->next;
        pthread_mutex_lock(&lp->slock);
        bool gone = lp->dead && ferry_hub_since(m->hub, lp->dead_since) >= m->opt.poll_timeout_ms;
        if (drop) {
            lp->dropped = true;
            pthread_cond_broadcast(&lp->cond);
        }
        pthread_mutex_unlock(&lp->slock);
        if (all || gone)
            lp_remove_locked(m, lp, &d);
    }
    pthread_mutex_unlock(&m->lp_lock);
    lp_drop_all(&d); /* frees links not held by a request: their sessions detach */
}

void fy_lp_reap(ferry_mount *m)
{
    lp_sweep(m, false, false);
}

void fy_lp_drop_all(ferry_mount *m)
{
    lp_sweep(m, true, true);
}

void fy_lp_stop(ferry_mount *m)
{
    pthread_mutex_lock(&m->lp_lock);
    /* `stopping` is set: wake every held poll and wait for every request to leave. */
    while (m->lp_active) {
        for (lp_sess *lp = m->lp_all; lp; lp = lp->next)
            lp_wake(lp);
        struct timespec ts;
        fy_deadline(&ts, 100);
        pthread_cond_timedwait(&m->lp_idle, &m->lp_lock, &ts);
    }
    /* civetweb waits for requests still inside the handler before removing it (new ones
     * are answered 503 at once), so the held polls had to end first. */
    pthread_mutex_unlock(&m->lp_lock);
    mg_set_request_handler(m->ctx, m->lp_path, NULL, NULL);
    lp_sweep(m, true, false);
}

/* Every entry of the table, a reference taken on each, into *list; false if out of
 * memory (those appended stay). The links are asked about outside lp_lock, which comes
 * after ferry's locks nowhere and before them nowhere either. */
static bool lp_collect_all(ferry_mount *m, fy_client **list, size_t *n, size_t *cap)
{
    bool ok = true;
    pthread_mutex_lock(&m->lp_lock);
    for (lp_sess *lp = m->lp_all; lp && ok; lp = lp->next) {
        if ((ok = fy_client_room(list, n, cap))) {
            fy_ref(&lp->refs);
            (*list)[(*n)++] = (fy_client){.lp = lp};
        }
    }
    pthread_mutex_unlock(&m->lp_lock);
    return ok;
}

bool fy_lp_collect(ferry_mount *m, fy_client **list, size_t *n, size_t *cap)
{
    size_t from = *n;
    bool ok = lp_collect_all(m, list, n, cap);
    size_t kept = from;
    for (size_t i = from; i < *n; i++) {
        if (ferry_link_done((*list)[i].lp->link))
            lp_unref((*list)[i].lp);
        else
            (*list)[kept++] = (*list)[i];
    }
    *n = kept;
    return ok;
}

void fy_lp_let_go(lp_sess *lp)
{
    /* Kicks the link: a held poll ends at once, with the session's close "shutdown" frame
     * (one node) or [] (a cluster: the next request gets 404, and the client resumes). */
    ferry_link_shutdown(lp->link);
    lp_unref(lp);
}

size_t fy_lp_live(ferry_mount *m)
{
    fy_client *list = NULL;
    size_t n = 0, cap = 0;
    bool ok = fy_lp_collect(m, &list, &n, &cap);
    for (size_t i = 0; i < n; i++)
        lp_unref(list[i].lp);
    free(list);
    /* Out of memory: not known to be none. */
    return n + atomic_load(&m->held_polls) + !ok;
}
