/* Transport tests: a real civetweb server in this process on 127.0.0.1 and a free port,
 * and a protocol client speaking ferry over real sockets, on WebSocket or long-polling. */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ferry_civetweb.h"
#include "fyc.h"

typedef struct tserver {
    struct mg_context *ctx;
    ferry_mount *m;
    ferry_hub *hub;
    int port;
    pthread_mutex_t lock;
    json_t *received;   /* data of every client message delivered, in order */
    int opens, resets, closes;
    ferry_reason last_reset;
    char cookie[64];    /* the Cookie header on_auth saw last */
    char identity[64];  /* the identity on_open saw last */
    json_t *requests;   /* ts_start_recording: [{"method","uri","query","auth"}] as received */
} tserver;

/* Starts a server; `tweak` may change the mount options (short timeouts, limits). */
tserver *ts_start(void (*tweak)(ferry_mount_options *o));
/* The same on a context with `workers` civetweb worker threads (worker_threads). */
tserver *ts_start_workers(void (*tweak)(ferry_mount_options *o), size_t workers);
/* The same on a civetweb context of its own that records every request it receives (method,
 * URI and query string as civetweb parsed them, and the Authorization header) in
 * s->requests, under s->lock, before ferry sees it. */
tserver *ts_start_recording(void (*tweak)(ferry_mount_options *o));
void ts_stop(tserver *s);
/* The event_threads every server of the run starts with: FERRY_TEST_EVENT_THREADS, else the
 * default. */
unsigned ts_event_threads(void);
size_t ts_received(tserver *s);
/* Waits for the application to have received n client messages and checks they are
 * {"c":1}..{"c":n}, in order, once each. */
void ts_expect_received_c(tserver *s, size_t n);
/* The mount's metrics to stderr, for diagnosing a failure. */
void ts_dump(tserver *s);
/* Reads one of the counters above under the server's lock. */
int ts_count(tserver *s, const int *counter);
void ts_publish(tserver *s, const char *json);

/* Milliseconds on a monotonic clock. */
long ts_ms(void);
/* Polls cond(ud) every millisecond until it is true or timeout_ms have passed; returns its
 * last value. For waiting on server state the test cannot be told about. */
bool ts_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms);
/* Waits until *counter (read as ts_count does) reaches n; returns whether it did. */
bool ts_wait_count(tserver *s, const int *counter, int n, int timeout_ms);
/* One sample of the mount's metrics (ferry_mount_metrics), e.g. "ferry_held_polls" or
 * "ferry_connections{transport=\"websocket\"}". */
long ts_metric(tserver *s, const char *series);
/* Waits until the sample equals n; returns whether it did. */
bool ts_wait_metric(tserver *s, const char *series, long n, int timeout_ms);
/* Waits until exactly n long-poll requests are held open (ferry_held_polls). */
bool ts_wait_held_polls(tserver *s, long n, int timeout_ms);
/* Waits until the hub has `attached` attached sessions; returns whether it did. */
bool ts_wait_attached(tserver *s, size_t attached, int timeout_ms);

typedef enum { TC_WS, TC_LP } tc_kind;

typedef struct tc {
    tserver *srv;
    tc_kind kind;
    fyc_ws ws;
    bool open;            /* a connection is up (WS) or a handshake succeeded (LP) */
    char sid[32], secret[64];
    long last_seq;        /* highest server seq received, contiguous */
    long acked_in;        /* the last ack the client sent (WS) */
    long gaps, dups;      /* sequence faults seen: must stay 0 */
    long out_seq;         /* last client seq sent */
    long acked_out;       /* the server's ack of client messages */
    json_t *got;          /* data of every server message, in order */
    json_t *pending;      /* client messages sent but not acked: [data...] from acked_out+1 */
    json_t *frames;       /* every frame received, for inspection */
    char last_error[32];
    char last_reset[32];
    char last_close[32];
    int ws_close_code;    /* close code of the last WebSocket close frame from the server */
    bool resumed;
    char token[64];       /* sent with every handshake if set */
    const char *ws_headers; /* extra request headers for handshakes (a Cookie) */
    int http_status;      /* of the last long-poll handshake */
} tc;

void tc_init(tc *c, tserver *s, tc_kind kind);
void tc_free(tc *c);
/* Handshake: hello if the client has no session yet, else resume. Returns 0 on welcome. */
int tc_connect(tc *c);
/* Sends one client message (kept until acked; resent by tc_connect after a resume). */
int tc_send(tc *c, const char *json);
/* Sends raw text as one frame (WS message or LP send body); returns the HTTP status on LP
 * or 0/-1 on WS. */
int tc_send_raw(tc *c, const char *text);
/* Receives what is due (one WS frame, or one poll); returns the number of frames, 0 on
 * nothing, -1 if the connection is gone. */
int tc_pump(tc *c, int timeout_ms);
/* Pumps until `n` server messages have arrived in total, or timeout. */
bool tc_wait_msgs(tc *c, size_t n, int timeout_ms);
/* Sends an ack for everything received (WS); LP acks with each poll. */
int tc_ack(tc *c);
/* Drops the connection abruptly. */
void tc_drop(tc *c);
/* Switches transport: drops the current one and resumes on `kind`. */
int tc_switch(tc *c, tc_kind kind);

/* An LP request with the client's credentials. */
int tc_lp(tc *c, const char *method, const char *query, const char *body, fyc_resp *r,
          int timeout_ms);

/* Publishes {"i":1..n} to "news", 2 ms apart: run it on a thread. */
typedef struct ts_pub {
    tserver *s;
    int n;
} ts_pub;
void *ts_publisher(void *arg);

/* Holds one long-poll poll for c (with its current ack) until answered: run on a thread. */
typedef struct ts_held {
    tc *c;
    fyc_resp r;
    int rc;
} ts_held;
void *ts_hold_poll(void *arg);

/* A clock for core.clock: real time plus ts_skew_ms, which a test moves forward to take the
 * hub and the transports past a timeout without waiting for it. */
extern atomic_ullong ts_skew_ms;
uint64_t ts_skewed_clock(void *ud);

/* Option tweaks shared by the suites. */
/* The core options a tweak may change (the harness points o->core at its own). */
ferry_options *ts_core(ferry_mount_options *o);
void ts_small_frames(ferry_mount_options *o);   /* max_frame_bytes 1024 */
void ts_good_origin(ferry_mount_options *o);    /* allow http://good.example and one more */
void ts_fast_heartbeat(ferry_mount_options *o); /* 100 ms pings, 400 ms timeout, 600 ms window */

Suite *ws_suite(void);
Suite *lp_suite(void);
Suite *mixed_suite(void);
Suite *diag_suite(void);
Suite *protocol_suite(void);
Suite *api_suite(void);
Suite *health_suite(void);
Suite *drain_suite(void);
Suite *loop_suite(void);
Suite *wsreader_suite(void);

#endif
