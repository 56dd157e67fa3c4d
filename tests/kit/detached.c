/* tests/kit/detached.c: the detached execs a suite starts, written down as they start (from
 * any of its test processes) and ended on the host when the suite is over: a supervisor
 * waits out its exec's retention, which must not outlive the run. */
#include "tests/kit/detached.h"

#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/kit/harness.h"
#include "tests/kit/proc.h"

void kit_detached_remember(const char *id)
{
	char path[256];
	FILE *f;

	th_fmt(path, sizeof(path), "%s/detached-ids", th.basedir);
	f = fopen(path, "a");
	if (f == NULL)
		return;
	fprintf(f, "%s\n", id);
	fclose(f);
}

/* Kills, by the pids their own files name, the groups of the supervisors and commands of
 * the execs this suite started, and removes their directories. */
void kit_detached_end_all(void)
{
	struct passwd *pw = getpwnam(th.user);
	char path[512], id[64];
	FILE *f;

	if (pw == NULL)
		return;
	th_fmt(path, sizeof(path), "%s/detached-ids", th.basedir);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fscanf(f, "%63s", id) == 1) {
		static const char *const files[] = {"pgid", "pid"};
		char dir[400];

		snprintf(dir, sizeof(dir), "%s/.exec-broker/execs/%s", pw->pw_dir, id);
		for (size_t i = 0; i < 2; i++) {
			FILE *p;
			long pid;

			snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
			if ((p = fopen(path, "r")) == NULL)
				continue;
			if (fscanf(p, "%ld", &pid) == 1 && pid > 1)
				kill((pid_t)-pid, SIGKILL); /* the group it leads */
			fclose(p);
		}
		{
			const char *rm[] = {"rm", "-rf", dir, NULL};
			char *out = NULL, *err = NULL;
			int st;
			kit_run(rm, NULL, NULL, &out, &err, &st);
			free(out);
			free(err);
		}
	}
	fclose(f);
}

