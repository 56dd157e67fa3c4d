/* tests/kit/broker.c: `exec-broker serve` processes (see broker.h). */
#include "tests/kit/broker.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/clock.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/net.h"
#include "tests/kit/proc.h"

#define TAIL_BYTES 3000

const char *kit_broker_bin(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("EB_BIN");
	char d[PATH_MAX];

	if (env != NULL && *env != '\0')
		return env;
	if (path[0] == '\0') {
		snprintf(d, sizeof(d), "%s", kit_self_dir());
		snprintf(path, sizeof(path), "%s/exec-broker", dirname(d));
	}
	return path;
}

int kit_broker_start(struct kit_broker *b, const char *db, const char *instance,
                     const char *extra_conf)
{
	const char *argv[] = {kit_broker_bin(), "--config", b->conf, "serve", NULL};
	struct kit_spawn sp = {.argv = argv,
	                       .log = b->log,
	                       .unset_prefix = "EXEC_BROKER_",
	                       .die_with_parent = true,
	                       .nofile = b->nofile};
	struct stat sb;
	long long end;
	off_t from = 0;
	FILE *f;
	int st;

	if (b->port == 0)
		b->port = kit_free_port();
	b->pid = 0;
	b->status = 0;
	snprintf(b->instance, sizeof(b->instance), "%s", instance);
	snprintf(b->conf, sizeof(b->conf), "%s/broker-%s.conf", th.basedir, instance);
	snprintf(b->log, sizeof(b->log), "%s/broker-%s.log", th.basedir, instance);
	f = b->port > 0 ? fopen(b->conf, "we") : NULL;
	if (f == NULL) {
		fprintf(stderr, "kit: broker %s: cannot write %s: %s\n", instance, b->conf,
		        strerror(errno));
		return -1;
	}
	fprintf(f,
	        "database_url = %s\nlisten = 127.0.0.1:%d\nssh_key = %s\ninstance_name = %s\n"
	        "%s",
	        db, b->port, th.client_key, instance, extra_conf ? extra_conf : "");
	if (fclose(f) != 0)
		return -1;
	/* A restart appends to the log: only what this broker writes counts. */
	if (stat(b->log, &sb) == 0)
		from = sb.st_size;
	b->pid = kit_spawn(&sp);
	if (b->pid < 0) {
		b->pid = 0;
		return -1;
	}
	end = kit_now_ms() + KIT_WAIT_MS;
	while (!kit_file_contains(b->log, from, "msg=listening")) {
		if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
			fprintf(stderr, "kit: broker %s exited while starting (status %d)\n",
			        instance, st);
			kit_file_print_tail(b->log, TAIL_BYTES);
			b->pid = 0;
			b->status = st;
			return -1;
		}
		if (kit_now_ms() > end) {
			fprintf(stderr, "kit: broker %s did not log msg=listening within %d ms\n",
			        instance, KIT_WAIT_MS);
			kit_file_print_tail(b->log, TAIL_BYTES);
			kit_broker_kill(b);
			return -1;
		}
		kit_sleep_ms(20);
	}
	return 0;
}

int kit_broker_wait(struct kit_broker *b, int ms)
{
	if (b->pid == 0)
		return 0;
	if (kit_wait(b->pid, ms, &b->status) == 0) {
		b->pid = 0;
		return 0;
	}
	if (errno != ETIMEDOUT)
		b->pid = 0; /* not our child (any more): nothing to wait for */
	return -1;
}

int kit_broker_stop(struct kit_broker *b)
{
	if (b->pid == 0)
		return -1;
	kill(b->pid, SIGTERM);
	if (kit_broker_wait(b, KIT_WAIT_MS) != 0) {
		fprintf(stderr, "kit: broker %s still runs %d ms after SIGTERM\n", b->instance,
		        KIT_WAIT_MS);
		kit_file_print_tail(b->log, TAIL_BYTES);
		kit_broker_kill(b);
		return -1;
	}
	if (!WIFEXITED(b->status) || WEXITSTATUS(b->status) != 0) {
		fprintf(stderr, "kit: broker %s ended with status %d after SIGTERM\n", b->instance,
		        b->status);
		kit_file_print_tail(b->log, TAIL_BYTES);
		return -1;
	}
	return 0;
}

void kit_broker_kill(struct kit_broker *b)
{
	if (b->pid == 0)
		return;
	kill(b->pid, SIGKILL);
	kit_broker_wait(b, KIT_WAIT_MS);
}

double kit_metric(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}
