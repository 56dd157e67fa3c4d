/* tests/runner.h: the one thing every suite shares, unit tests included: running a Check
 * suite and turning its outcome into main()'s exit status. Apart from the kit, so that a
 * unit test links nothing but the module under test. */
#ifndef EB_TESTS_RUNNER_H
#define EB_TESTS_RUNNER_H

struct Suite;
/* Runs every test of s (fork mode unless CK_FORK says otherwise), frees it, and returns
 * the exit status for main(). */
int tu_run_suite(struct Suite *s);

#endif
