/* A slow, fallible session store for the tests: a real store (the in-memory one, or the
 * one faulty_inner_new makes: the cluster suite runs the store suite over Redis) behind a
 * seeded die.
 * Before each operation it may sleep (up to max_delay_us) and, for add, find, load, save
 * and remove, fail with FERRY_ESTORE having done nothing; save may also answer
 * FY_STORE_STALE (another node saved first) having done nothing. each and count never
 * fail. Thread-safe. */
#ifndef TEST_STORE_FAULTY_H
#define TEST_STORE_FAULTY_H

#include <stdint.h>

#include "store.h"

typedef enum {
    FAULTY_ADD,
    FAULTY_FIND,
    FAULTY_LOAD,
    FAULTY_SAVE,
    FAULTY_REMOVE,
    FAULTY_OPS
} faulty_op;

typedef struct faulty_cfg {
    uint64_t seed;
    unsigned fail_pct;     /* chance in 100 that an operation fails with FERRY_ESTORE */
    unsigned stale_pct;    /* chance in 100 that a save answers FY_STORE_STALE */
    unsigned delay_pct;    /* chance in 100 of a delay before an operation */
    unsigned max_delay_us;
} faulty_cfg;

/* Makes the store behind the die; fy_store_mem_new unless a suite sets another. */
extern fy_store *(*faulty_inner_new)(void);

/* NULL on allocation failure. */
fy_store *faulty_store_new(const faulty_cfg *cfg);

/* Changes the odds from now on (the seed's sequence goes on). */
void faulty_store_set(fy_store *st, const faulty_cfg *cfg);

/* Makes the next `n` calls of `op` fail with FERRY_ESTORE (or, for save with `stale`,
 * answer FY_STORE_STALE), whatever the odds. */
void faulty_store_fail_next(fy_store *st, faulty_op op, unsigned n, int stale);

/* Makes the next load find the record moved on, as another node's save would leave it:
 * its inbound seq one further and its version one newer. */
void faulty_store_move_next(fy_store *st);

/* Failures (FERRY_ESTORE and STALE) injected so far into `op`, and calls of it. */
unsigned faulty_store_failures(fy_store *st, faulty_op op);
unsigned faulty_store_calls(fy_store *st, faulty_op op);

#endif
