/* tests/kit/detached.h: ending what a suite's detached execs leave on the host. */
#ifndef EB_TESTS_KIT_DETACHED_H
#define EB_TESTS_KIT_DETACHED_H

/* Writes exec_id down in the run's directory. */
void kit_detached_remember(const char *exec_id);
/* Kills, by the pids their own files name, the process groups of the supervisors and
 * commands of every exec written down, and removes their directories (main(), after the
 * suite, before th_teardown). */
void kit_detached_end_all(void);

#endif
