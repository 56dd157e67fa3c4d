/* tests/kit/cli.h: the binary under test's admin commands as steps of a suite's or a
 * benchmark's setup: `exec-broker ARGS` on a database with no config file, and the tokens
 * `token create` prints. */
#ifndef EB_TESTS_KIT_CLI_H
#define EB_TESTS_KIT_CLI_H

#include <stddef.h>

/* Runs `exec-broker args...` (NULL-terminated) with EXEC_BROKER_DATABASE_URL=db and
 * EXEC_BROKER_CONFIG=/dev/null; out (may be NULL) receives its stdout (NULL if it could
 * not run; the caller frees it), status (may be NULL) its wait status. 0 if it exited 0;
 * otherwise -1, and what it printed is on stderr. */
int kit_cli(const char *db, const char *const args[], char **out, int *status);
/* Runs `exec-broker token create ...` (args) and copies the token it prints into tok. */
int kit_cli_token(const char *db, const char *const args[], char *tok, size_t len);

#endif
