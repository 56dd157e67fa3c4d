/* tests/check_detached_cli.c: the client's detached-exec subcommands run as processes
 * against a real `exec-broker serve` (real PostgreSQL, real sshd): `exec --detach` prints
 * the id, `wait` exits with the command's code (128+N for a signal), `logs` and `logs -f`
 * write stdout and stderr apart and whole, `ps` lists, `kill` signals or cancels, and the
 * API's refusals become the documented exit statuses. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/kit/broker.h"
#include "tests/kit/detached.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

static struct kit_world W;
static struct kit_broker B;
static char URL[64];

struct run {
	int code;
	char *out, *err;
};

/* exec-broker SUBCOMMAND --url URL ARGS..., with the workspace token in the environment. */
static void cli(struct run *r, const char *sub, const char *const args[])
{
	const char *argv[32];
	char tok[128];
	const char *env[] = {tok, NULL};
	int n = 0, st = 0;

	snprintf(tok, sizeof(tok), "EXEC_BROKER_TOKEN=%s", W.tok_ws);
	argv[n++] = kit_broker_bin();
	argv[n++] = sub;
	argv[n++] = "--url";
	argv[n++] = URL;
	for (int i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	r->out = r->err = NULL;
	ck_assert_int_eq(kit_run(argv, env, NULL, &r->out, &r->err, &st), 0);
	r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* exec --detach ... -- argv: the id it printed (static). */
static const char *start(const char *const args[])
{
	static char id[64];
	struct run r;

	cli(&r, "exec", args);
	ck_assert_msg(r.code == 0, "exec --detach: %d %s", r.code, r.err);
	ck_assert_uint_eq(strlen(r.out), 37);
	ck_assert_int_eq(r.out[36], '\n');
	snprintf(id, sizeof(id), "%.36s", r.out);
	kit_detached_remember(id);
	run_free(&r);
	return id;
}

START_TEST(detach_wait_logs_and_ps)
{
	const char *a[] = {"--detach", "--name", "cli-a", "ws-a1", "--", "sh", "-c",
	                   "echo out; echo err >&2; sleep 1; exit 3", NULL};
	char id[64];
	struct run r;

	snprintf(id, sizeof(id), "%s", start(a));
	cli(&r, "wait", (const char *const[]){id, NULL});
	ck_assert_int_eq(r.code, 3);
	run_free(&r);
	cli(&r, "logs", (const char *const[]){id, NULL});
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.out, "out\n");
	ck_assert_str_eq(r.err, "err\n");
	run_free(&r);
	cli(&r, "ps", (const char *const[]){"--json", "--name", "cli-a", "ws-a1", NULL});
	ck_assert_int_eq(r.code, 0);
	ck_assert_ptr_nonnull(strstr(r.out, id));
	run_free(&r);
	cli(&r, "ps", (const char *const[]){"ws-a1", NULL});
	ck_assert_int_eq(r.code, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "cli-a"));
	run_free(&r);
}
END_TEST

START_TEST(logs_follow_writes_everything_to_the_end)
{
	const char *a[] = {"--detach", "ws-a1", "--", "sh", "-c",
	                   "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done", NULL};
	char id[64];
	struct run r;

	snprintf(id, sizeof(id), "%s", start(a));
	cli(&r, "logs", (const char *const[]){"-f", id, NULL});
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.out, "line 1\nline 2\nline 3\nline 4\nline 5\n");
	run_free(&r);
}
END_TEST

START_TEST(kill_signals_and_cancels)
{
	const char *a[] = {"--detach", "ws-a1", "--", "sleep", "300", NULL};
	char id[64];
	struct run r;

	snprintf(id, sizeof(id), "%s", start(a));
	cli(&r, "kill", (const char *const[]){"-s", "KILL", id, NULL});
	ck_assert_msg(r.code == 0, "%d %s", r.code, r.err);
	run_free(&r);
	cli(&r, "wait", (const char *const[]){id, NULL});
	ck_assert_int_eq(r.code, 128 + 9);
	run_free(&r);
	/* Ended: a cancel is refused (206, one line). */
	cli(&r, "kill", (const char *const[]){id, NULL});
	ck_assert_int_eq(r.code, 206);
	ck_assert_ptr_nonnull(strstr(r.err, "exec_finished"));
	run_free(&r);
	snprintf(id, sizeof(id), "%s", start(a));
	cli(&r, "kill", (const char *const[]){id, NULL});
	ck_assert_int_eq(r.code, 0);
	run_free(&r);
	cli(&r, "wait", (const char *const[]){id, NULL});
	ck_assert_int_eq(r.code, 206); /* cancelled */
	run_free(&r);
}
END_TEST

START_TEST(refusals_are_exit_statuses)
{
	const char *unknown = "00000000-0000-4000-8000-000000000000";
	const char *named[] = {"--detach", "--name", "dup", "ws-a1", "--", "sleep", "300", NULL};
	char id[64];
	struct run r;

	cli(&r, "logs", (const char *const[]){unknown, NULL});
	ck_assert_int_eq(r.code, 204);
	run_free(&r);
	cli(&r, "wait", (const char *const[]){unknown, NULL});
	ck_assert_int_eq(r.code, 204);
	run_free(&r);
	snprintf(id, sizeof(id), "%s", start(named));
	cli(&r, "exec", named);
	ck_assert_int_eq(r.code, 206);
	ck_assert_ptr_nonnull(strstr(r.err, "name_in_use"));
	run_free(&r);
	cli(&r, "kill", (const char *const[]){id, NULL});
	ck_assert_int_eq(r.code, 0);
	run_free(&r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("detached_cli");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_broker_start(&B, W.db, "eb-detached-cli", "pool_kill_grace_s = 1\nexec_retain_s = 60\n") != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	snprintf(URL, sizeof(URL), "http://127.0.0.1:%d", B.port);
	SV_ADD_LOOP(s, detach_wait_logs_and_ps, 1, 90);
	SV_ADD_LOOP(s, logs_follow_writes_everything_to_the_end, 1, 90);
	SV_ADD_LOOP(s, kill_signals_and_cancels, 1, 90);
	SV_ADD_LOOP(s, refusals_are_exit_statuses, 1, 90);
	failed = tu_run_suite(s);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	kit_detached_end_all();
	th_teardown();
	return failed;
}
