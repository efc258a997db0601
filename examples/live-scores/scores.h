/* live-scores: the matches (matches.c), simulated and published, for the server around them
 * (server.c). */
#ifndef LIVE_SCORES_H
#define LIVE_SCORES_H

#include <stdbool.h>

#include "ferry.h"

#define MATCHES 6

typedef struct scores_cfg {
    ferry_hub *hub;   /* where the events go: the mount's, or a publisher's own */
    double speed;     /* match minutes per second */
    bool history;     /* keep every event, for scores_log (DEMO_CONTROLS) */
    /* A cluster's publisher: a publish that fails is tried again, a snapshot goes to
     * "matches" every second, and the hub's timers run here (no mount runs them). */
    bool cluster;
    const char *run;  /* written into every event and snapshot; "" for none */
} scores_cfg;

/* Sets up the first fixtures and starts the match clock; `c` is copied (run must outlive
 * it). 0, or -1 if the thread or the log could not be made. */
int scores_start(const scores_cfg *c);
/* Stops the clock (the thread ends) and frees the matches. */
void scores_stop(void);
/* One process only: subscribes a new page to "matches" and sends it every match, under the
 * lock the events are published under, so no event falls between them or comes twice. */
void scores_greet(ferry_session *s);
/* Every event published, and every match now, as JSON text (free it); NULL without memory
 * (or, for the log, without cfg.history). */
char *scores_log(void);
char *scores_state(void);
/* The matches stand still from now on (snapshots go on). */
void scores_pause(void);

#endif
