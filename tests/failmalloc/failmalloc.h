/* Allocation-failure injection for the sweep. The program is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=free, so every
 * allocation made by code linked into it (ferry's core, the test code) goes through the
 * wrappers here, and jansson is pointed at them with json_set_alloc_funcs. Nothing in the
 * library changes. Single-threaded: the core under test runs on the test's thread. */
#ifndef FAILMALLOC_H
#define FAILMALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* Routes jansson's allocations through the wrappers. Call first in main, before any JSON
 * value exists. */
void fm_init(void);

/* From now on, the n-th allocation (n >= 1) fails; the others succeed. */
void fm_arm(unsigned long n);

/* Stops injecting. Returns true if the armed allocation was reached (and failed). */
bool fm_disarm(void);

/* True if the allocation that failed was jansson's (made through json_set_alloc_funcs). */
bool fm_failed_in_jansson(void);

/* Allocations made and not yet freed, counted over the whole program. */
long fm_live(void);

#endif
