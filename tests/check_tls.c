/* tests/check_tls.c: HTTPS on the listener, with certificates the test makes with the
 * openssl command: the client over https with --cacert runs a command; it refuses a broker
 * whose certificate does not chain to the CAs it trusts; plain HTTP to the TLS port gets
 * no HTTP answer; TLS 1.1 is refused and 1.2 and 1.3 accepted; a renewed certificate is
 * served after SIGHUP without a restart, and a broken one keeps the one in force; only one
 * of the two files is refused at the start. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

static struct kit_world W;
static struct kit_broker B;
static char dir[200];

/* Runs a shell command line in dir: its output (stdout and stderr, malloc'd; NULL if it
 * could not run) and exit status. No Check: main() uses it too. */
static char *sh(const char *cmd, int *status)
{
	char line[2048], *out;
	size_t n, cap = 65536;
	FILE *p;
	int st;

	*status = 1000;
	snprintf(line, sizeof(line), "cd '%s' && { %s; } 2>&1", dir, cmd);
	p = popen(line, "r");
	out = p != NULL ? malloc(cap) : NULL;
	if (out == NULL) {
		if (p != NULL)
			pclose(p);
		return NULL;
	}
	n = fread(out, 1, cap - 1, p);
	out[n] = '\0';
	st = pclose(p);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 1000;
	return out;
}

/* A certificate for 127.0.0.1 and localhost signed by the test's CA, as name.pem/.key. */
#define MAKE_CERT(name, cn)                                                                        \
	"openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " name        \
	".key -out " name ".csr -subj /CN=" cn " && "                                              \
	"printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' >" name ".ext && "                  \
	"openssl x509 -req -in " name ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out " name   \
	".pem -days 2 -extfile " name ".ext"

/* The subject of the certificate the broker presents now. */
static char *presented_subject(void)
{
	char cmd[400], *out;
	int st;

	snprintf(cmd, sizeof(cmd),
	         "openssl s_client -connect 127.0.0.1:%d -CAfile ca.pem </dev/null 2>/dev/null | "
	         "openssl x509 -noout -subject",
	         B.port);
	out = sh(cmd, &st);
	ck_assert_msg(st == 0, "%s", out);
	return out;
}

/* `exec-broker exec --url https://127.0.0.1:PORT [--cacert ca.pem] ws-a1 -- echo hi`. */
static char *client(bool cacert, int *status)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd),
	         "EXEC_BROKER_TOKEN=%s '%s' exec --url https://127.0.0.1:%d %s ws-a1 -- echo hi",
	         W.tok_ws, kit_broker_bin(), B.port, cacert ? "--cacert ca.pem" : "");
	return sh(cmd, status);
}

START_TEST(the_client_runs_a_command_over_https)
{
	int st;
	char *out = client(true, &st);

	ck_assert_msg(st == 0, "exit %d: %s", st, out);
	ck_assert_str_eq(out, "hi\n");
	free(out);
}
END_TEST

START_TEST(a_certificate_the_client_does_not_trust_is_refused)
{
	int st;
	char *out = client(false, &st); /* the system's CAs: the test's CA is not one of them */

	ck_assert_msg(st == 202, "exit %d: %s", st, out);
	ck_assert_ptr_null(strstr(out, "hi\n"));
	free(out);
}
END_TEST

START_TEST(plain_http_to_the_tls_port_gets_no_http_answer)
{
	struct kit_resp r;

	kit_http(B.port, &(struct kit_req){.method = "GET", .path = "/healthz", .max_time_s = 10},
	         &r);
	ck_assert_int_eq(r.status, 0);
	kit_resp_free(&r);
}
END_TEST

START_TEST(only_tls_1_2_and_1_3_are_spoken)
{
	static const struct {
		const char *flag;
		bool ok;
	} v[] = {/* the client willing: OpenSSL 3 itself refuses TLS 1.1 at its default level */
	         {"-tls1_1 -cipher DEFAULT@SECLEVEL=0", false},
	         {"-tls1_2", true},
	         {"-tls1_3", true}};
	char cmd[300], *out;
	int st;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		snprintf(cmd, sizeof(cmd),
		         "openssl s_client -connect 127.0.0.1:%d -CAfile ca.pem %s </dev/null",
		         B.port, v[i].flag);
		out = sh(cmd, &st);
		ck_assert_msg((st == 0) == v[i].ok, "%s: exit %d: %.600s", v[i].flag, st, out);
		free(out);
	}
}
END_TEST

START_TEST(a_renewed_certificate_is_served_after_sighup)
{
	long long end;
	char *subj = presented_subject(), *out;
	int st;

	ck_assert_msg(strstr(subj, "CN = first") != NULL, "%s", subj);
	free(subj);
	/* A broken file first: the reload is refused and the certificate in force stays. */
	out = sh("cp srv.pem srv.pem.good && echo broken >srv.pem", &st);
	ck_assert_int_eq(st, 0);
	free(out);
	ck_assert_int_eq(kill(B.pid, SIGHUP), 0);
	end = kit_now_ms() + KIT_WAIT_MS;
	while (!kit_file_contains(B.log, 0, "configuration not reloaded"))
		ck_assert_msg(kit_now_ms() < end, "no refusal of the reload in the log"),
		    kit_sleep_ms(50);
	subj = presented_subject();
	ck_assert_msg(strstr(subj, "CN = first") != NULL, "%s", subj);
	free(subj);
	/* The renewed pair: new connections get it, without a restart. */
	out = sh(MAKE_CERT("new", "second") " && mv new.key srv.key && mv new.pem srv.pem", &st);
	ck_assert_msg(st == 0, "%s", out);
	free(out);
	ck_assert_int_eq(kill(B.pid, SIGHUP), 0);
	end = kit_now_ms() + KIT_WAIT_MS;
	while (!kit_file_contains(B.log, 0, "configuration reloaded"))
		ck_assert_msg(kit_now_ms() < end, "no reload in the log"), kit_sleep_ms(50);
	subj = presented_subject();
	ck_assert_msg(strstr(subj, "CN = second") != NULL, "%s", subj);
	free(subj);
	out = client(true, &st);
	ck_assert_msg(st == 0, "exit %d: %s", st, out);
	free(out);
}
END_TEST

START_TEST(one_file_without_the_other_is_refused_at_the_start)
{
	struct kit_broker b = {0};
	char conf[300];

	snprintf(conf, sizeof(conf), "tls_cert_file = %s/srv.pem\n", dir);
	ck_assert_int_ne(kit_broker_start(&b, W.db, "eb-tls-half", conf), 0);
	ck_assert(kit_file_contains(b.log, 0, "tls_cert_file and tls_key_file go together"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tls");
	char conf[600], *out;
	int failed, st;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0)
		goto fail;
	snprintf(dir, sizeof(dir), "%s/tls", th.basedir);
	if (th_make_dir(dir, 0755) != 0)
		goto fail;
	out = sh(
	    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
	    "-keyout ca.key -out ca.pem -days 2 -subj /CN=eb-test-ca && " MAKE_CERT("srv", "first"),
	    &st);
	if (st != 0) {
		fprintf(stderr, "check_tls: cannot make the certificates: %s\n", out ? out : "");
		free(out);
		goto fail;
	}
	free(out);
	snprintf(conf, sizeof(conf), "tls_cert_file = %s/srv.pem\ntls_key_file = %s/srv.key\n", dir,
	         dir);
	if (kit_broker_start(&B, W.db, "eb-tls", conf) != 0)
		goto fail;
	SV_ADD_LOOP(s, the_client_runs_a_command_over_https, 1, 60);
	SV_ADD_LOOP(s, a_certificate_the_client_does_not_trust_is_refused, 1, 60);
	SV_ADD_LOOP(s, plain_http_to_the_tls_port_gets_no_http_answer, 1, 60);
	SV_ADD_LOOP(s, only_tls_1_2_and_1_3_are_spoken, 1, 60);
	SV_ADD_LOOP(s, one_file_without_the_other_is_refused_at_the_start, 1, 60);
	SV_ADD_LOOP(s, a_renewed_certificate_is_served_after_sighup, 1, 60);
	failed = tu_run_suite(s);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	th_teardown();
	return failed;
fail:
	th_teardown();
	return EXIT_FAILURE;
}
