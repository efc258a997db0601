/* Test support: an injected clock, a recording application, and a fake transport that drives
 * links the way a real one would (recv frames in, pull batches out, parse what came out). */
#ifndef TEST_HELPERS_H
#define TEST_HELPERS_H

#include <check.h>
#include <jansson.h>

#include "ferry.h"
#include "ferry_transport.h"

extern uint64_t test_now; /* the injected clock, in ms */

typedef struct app_log {
    int opens, resets, closes, messages;
    ferry_reason last_reset, last_close;
    json_t *received;          /* array of message data, in delivery order */
    ferry_session *last_session;
    int echo;                  /* on_message sends the data back */
    int echo_errors;
    int auths;                 /* on_auth calls */
    char auth_sid[32];         /* the session_id on_auth saw last ("" for a new session) */
    char auth_cookie[64];      /* the Cookie header on_auth saw last */
    ferry_link *pull_in_open;  /* on_open pulls from this link and records the result */
    int pulled_in_open;
} app_log;

extern app_log app;

/* A hub with the test clock and app callbacks; `tweak` may adjust the defaults first. */
ferry_hub *hub_new(void (*tweak)(ferry_options *o));
void hub_free(ferry_hub *hub);
/* hub_new with `store` for its sessions (the hub owns it). */
struct fy_store;
ferry_hub *hub_new_store(void (*tweak)(ferry_options *o), struct fy_store *store);

typedef struct fake_conn {
    ferry_link *link;
    int wakes, kicks;
    ferry_buf buf;
} fake_conn;

fake_conn *fc_open(ferry_hub *hub);
int fc_send(fake_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fc_send_raw(fake_conn *c, const char *data, size_t len);
/* Pulls once and returns the frames as an array (empty if nothing was due). */
json_t *fc_pull(fake_conn *c, unsigned flags);
/* Pulls until nothing is due; returns all frames. */
json_t *fc_drain(fake_conn *c);
void fc_close(fake_conn *c);

/* hello on a new conn; returns it, with the welcome consumed; sid and secret (if not NULL) receive its fields. */
fake_conn *fc_hello(ferry_hub *hub, char sid[32], char secret[64]);

/* Helpers over pulled frame arrays. */
json_t *frame_of(json_t *frames, const char *type, size_t nth);
size_t count_of(json_t *frames, const char *type);
const char *str_of(json_t *frame, const char *key);
json_int_t int_of(json_t *frame, const char *key);

Suite *token_suite(void);
Suite *frame_suite(void);
Suite *outbox_suite(void);
Suite *session_suite(void);
Suite *resume_suite(void);
Suite *topic_suite(void);
Suite *log_suite(void);
Suite *wire_suite(void);
Suite *race_suite(void);
Suite *store_suite(void);
Suite *abi_suite(void);
Suite *stats_suite(void);

#endif
