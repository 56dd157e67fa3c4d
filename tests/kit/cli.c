/* tests/kit/cli.c: the admin CLI as a setup step (see cli.h). */
#include "tests/kit/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/kit/broker.h"
#include "tests/kit/proc.h"

int kit_cli(const char *db, const char *const args[], char **out, int *status)
{
	const char *argv[32];
	char dburl[600];
	const char *env[] = {"EXEC_BROKER_CONFIG=/dev/null", dburl, NULL};
	char *o = NULL, *e = NULL;
	int n = 0, st = 0, rc = -1;

	argv[n++] = kit_broker_bin();
	for (int i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(dburl, sizeof(dburl), "EXEC_BROKER_DATABASE_URL=%s", db);
	if (kit_run(argv, env, NULL, &o, &e, &st) == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		rc = 0;
	else
		fprintf(stderr, "%s: exec-broker %s %s failed (status %#x): %s%s\n",
		        program_invocation_short_name, args[0], args[1] != NULL ? args[1] : "",
		        (unsigned)st, e != NULL ? e : "", o != NULL ? o : "");
	if (status != NULL)
		*status = st;
	if (out != NULL) {
		*out = o; /* transferred */
		o = NULL;
	}
	free(o);
	free(e);
	return rc;
}

int kit_cli_token(const char *db, const char *const args[], char *tok, size_t len)
{
	char *out = NULL;
	int rc = kit_cli(db, args, &out, NULL);

	if (rc == 0) {
		out[strcspn(out, "\n")] = '\0';
		if (strncmp(out, "ebk_", 4) != 0 || strlen(out) >= len) {
			fprintf(stderr, "%s: token create printed \"%s\"\n",
			        program_invocation_short_name, out);
			rc = -1;
		} else {
			snprintf(tok, len, "%s", out);
		}
	}
	free(out);
	return rc;
}
