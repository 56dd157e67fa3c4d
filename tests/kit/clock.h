/* tests/kit/clock.h: time as the tests and benchmarks need it: the monotonic clock, sleeping
 * through signals, and the longest any one wait of the kit or a suite may take. */
#ifndef EB_TESTS_KIT_CLOCK_H
#define EB_TESTS_KIT_CLOCK_H

#include <stdint.h>

/* Long enough for a loaded 2-core machine running an ASan build; short enough that a hang
 * fails within a test case's timeout. */
#define KIT_WAIT_MS 30000

/* CLOCK_MONOTONIC. */
long long kit_now_ms(void);
uint64_t kit_now_ns(void);
void kit_sleep_ms(int ms);

#endif
