/* tests/check_config.c: the settings table: defaults, the INI file, the environment,
 * flags, their precedence, and the errors for bad input naming key and source. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "common/err.h"
#include "tests/runner.h"

static char cfg_path[64];

/* Writes text to a fresh temporary config file; returns its path. */
static const char *write_file(const char *text)
{
	int fd;
	FILE *f;

	snprintf(cfg_path, sizeof(cfg_path), "/tmp/eb-config-XXXXXX");
	fd = mkstemp(cfg_path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return cfg_path;
}

static void teardown(void)
{
	if (cfg_path[0])
		unlink(cfg_path);
	cfg_path[0] = '\0';
}

static char *const env_no_file[] = {"EXEC_BROKER_CONFIG=/nonexistent/eb.conf", NULL};

START_TEST(defaults_apply_without_any_source)
{
	struct config cfg;
	char err[256];
	static char *const env[] = {NULL};
	struct config_flags fl = {.config_path = write_file("")};

	ck_assert_int_eq(config_load(&cfg, &fl, env, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.database_url, "dbname=exec_broker");
	ck_assert_str_eq(cfg.listen, "127.0.0.1:8080");
	ck_assert_str_eq(cfg.log_level, "info");
	ck_assert_str_eq(cfg.origin[0], "default");
	ck_assert_int_eq(cfg.pool_max_channels_per_session, 8);
	ck_assert_int_eq(cfg.pool_max_sessions_per_host, 4);
	ck_assert_int_eq(cfg.pool_channel_buffer_bytes, 262144);
	config_free(&cfg);
}
END_TEST

START_TEST(missing_explicit_file_is_an_error)
{
	struct config cfg;
	char err[256];

	ck_assert_int_eq(config_load(&cfg, NULL, env_no_file, err, sizeof(err)), EB_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/eb.conf"));
}
END_TEST

START_TEST(file_values_and_comments)
{
	struct config cfg;
	char err[256];
	static char *const env[] = {NULL};
	struct config_flags fl = {.config_path =
	                              write_file("# a comment\n"
	                                         "; another\n"
	                                         "\n"
	                                         "database_url = host=/run/pg dbname=eb\n"
	                                         "listen=[::1]:9000\n"
	                                         "log_level = debug\n")};

	ck_assert_int_eq(config_load(&cfg, &fl, env, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.database_url, "host=/run/pg dbname=eb");
	ck_assert_str_eq(cfg.listen, "[::1]:9000");
	ck_assert_str_eq(cfg.log_level, "debug");
	ck_assert_int_eq(cfg.pool_idle_ttl_s, 300);
	ck_assert_ptr_nonnull(strstr(cfg.origin[0], ":4"));
	ck_assert_str_eq(cfg.path, cfg_path);
	config_free(&cfg);
}
END_TEST

START_TEST(precedence_flag_over_env_over_file_over_default)
{
	struct config cfg;
	char err[256];
	struct config_flags fl = {.config_path = write_file("database_url = from-file\n"
	                                                    "listen = 127.0.0.1:1\n"
	                                                    "log_level = warn\n")};
	char *env[] = {"EXEC_BROKER_DATABASE_URL=from-env", "EXEC_BROKER_LISTEN=127.0.0.1:2",
	               "EXEC_BROKER_POOL_IDLE_TTL_S=60", "PATH=/bin", NULL};

	fl.database_url = "from-flag";
	ck_assert_int_eq(config_load(&cfg, &fl, env, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.database_url, "from-flag"); /* flag beats env and file */
	ck_assert_str_eq(cfg.origin[0], "flag --database-url");
	ck_assert_str_eq(cfg.listen, "127.0.0.1:2"); /* env beats file */
	ck_assert_str_eq(cfg.origin[1], "environment EXEC_BROKER_LISTEN");
	ck_assert_str_eq(cfg.log_level, "warn");   /* file beats default */
	ck_assert_str_eq(cfg.ssh_key, "");         /* default */
	ck_assert_int_eq(cfg.pool_idle_ttl_s, 60); /* an integer from the environment */
	config_free(&cfg);
}
END_TEST

START_TEST(config_path_from_environment)
{
	struct config cfg;
	char err[256];
	char var[128];
	const char *path = write_file("log_level = error\n");
	char *env[] = {var, NULL};

	snprintf(var, sizeof(var), "EXEC_BROKER_CONFIG=%s", path);
	ck_assert_int_eq(config_load(&cfg, NULL, env, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.log_level, "error");
	config_free(&cfg);
}
END_TEST

/* Each bad file must fail with the error naming the file, the line and the problem. */
static const struct {
	const char *text;
	const char *want[3];
} bad_files[] = {
    {"listen = 127.0.0.1:8080\ndatabse_url = x\n", {":2:", "unknown setting", "databse_url"}},
    {"log_level = loud\n", {":1:", "log_level", "debug|info|warn|error"}},
    {"\n\nlisten = localhost\n", {":3:", "listen", "localhost"}},
    {"listen = 127.0.0.1:0\n", {":1:", "listen", "port"}},
    {"listen = 127.0.0.1:65536\n", {":1:", "listen", ""}},
    {"listen = ::1:80\n", {":1:", "listen", ""}},
    {"[server]\nlisten = 127.0.0.1:1\n", {":2:", "section [server]", ""}},
    {"log_level = info\nlog_level = warn\n", {":2:", "set twice", "line 1"}},
    {"this line has no equals sign\n", {":1:", "syntax error", ""}},
    {"pool_max_sessions_per_host = 0\n", {":1:", "pool_max_sessions_per_host", "1 to 64"}},
    {"pool_idle_ttl_s = 10m\n", {":1:", "pool_idle_ttl_s", "not a whole number"}},
    {"pool_idle_ttl_s = \n", {":1:", "pool_idle_ttl_s", "not a whole number"}},
    {"pool_kill_grace_s = 99999999999999999999\n", {":1:", "pool_kill_grace_s", ""}},
};

START_TEST(bad_file_names_key_and_line)
{
	struct config cfg;
	char err[512] = "";
	static char *const env[] = {NULL};
	struct config_flags fl = {.config_path = write_file(bad_files[_i].text)};
	int rc = config_load(&cfg, &fl, env, err, sizeof(err));

	ck_assert_int_lt(rc, 0);
	ck_assert_msg(strstr(err, cfg_path) != NULL, "no path in \"%s\"", err);
	for (int k = 0; k < 3; k++)
		ck_assert_msg(strstr(err, bad_files[_i].want[k]) != NULL,
		              "case %d: \"%s\" lacks \"%s\"", _i, err, bad_files[_i].want[k]);
	ck_assert_ptr_null(cfg.database_url); /* nothing half-loaded */
}
END_TEST

START_TEST(overlong_line_is_refused)
{
	struct config cfg;
	char err[512] = "";
	static char *const env[] = {NULL};
	char text[1200];
	struct config_flags fl;

	memset(text, 'x', sizeof(text));
	memcpy(text, "database_url = ", 15);
	text[sizeof(text) - 2] = '\n';
	text[sizeof(text) - 1] = '\0';
	fl = (struct config_flags){.config_path = write_file(text)};
	ck_assert_int_lt(config_load(&cfg, &fl, env, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, ":1: line longer than") != NULL, "%s", err);
}
END_TEST

START_TEST(bad_environment_names_variable)
{
	struct config cfg;
	char err[512] = "";
	char *env1[] = {"EXEC_BROKER_CONFIG=/nonexistent-ok", "EXEC_BROKER_LISTN=1", NULL};
	char *env2[] = {"EXEC_BROKER_LOG_LEVEL=verbose", NULL};
	struct config_flags fl = {.config_path = write_file("")};

	ck_assert_int_eq(config_load(&cfg, &fl, env1, err, sizeof(err)), EB_ERR_INVAL);
	ck_assert_msg(strstr(err, "environment EXEC_BROKER_LISTN") != NULL, "%s", err);
	ck_assert_int_eq(config_load(&cfg, &fl, env2, err, sizeof(err)), EB_ERR_INVAL);
	ck_assert_msg(strstr(err, "environment EXEC_BROKER_LOG_LEVEL: log_level") != NULL, "%s",
	              err);
}
END_TEST

START_TEST(bad_flag_names_flag)
{
	struct config cfg;
	char err[512] = "";
	static char *const env[] = {NULL};
	struct config_flags fl = {.config_path = write_file(""), .listen = "nohost"};

	ck_assert_int_eq(config_load(&cfg, &fl, env, err, sizeof(err)), EB_ERR_INVAL);
	ck_assert_msg(strstr(err, "flag --listen: listen") != NULL, "%s", err);
}
END_TEST

START_TEST(print_redacts_password)
{
	struct config cfg;
	char err[256], *buf = NULL;
	size_t len = 0;
	static char *const env[] = {NULL};
	struct config_flags fl = {.config_path = write_file(""),
	                          .database_url =
	                              "postgresql://eb:s3cr3t-pw@db.example:5433/exec_broker"};
	FILE *out;

	ck_assert_int_eq(config_load(&cfg, &fl, env, err, sizeof(err)), 0);
	out = open_memstream(&buf, &len);
	config_print(&cfg, out);
	fclose(out);
	ck_assert_ptr_null(strstr(buf, "s3cr3t-pw"));
	ck_assert_ptr_nonnull(strstr(buf, "password='********'"));
	ck_assert_ptr_nonnull(strstr(buf, "host='db.example'"));
	ck_assert_ptr_nonnull(strstr(buf, "# flag --database-url"));
	free(buf);
	config_free(&cfg);
}
END_TEST

static const struct {
	const char *in;
	int rc;
	const char *host;
	int port;
} listens[] = {
    {"127.0.0.1:8080", 0, "127.0.0.1", 8080},   {"[::1]:1", 0, "::1", 1},
    {"localhost:65535", 0, "localhost", 65535}, {"0.0.0.0:443", 0, "0.0.0.0", 443},
    {"127.0.0.1", EB_ERR_INVAL, NULL, 0},       {":8080", EB_ERR_INVAL, NULL, 0},
    {"[::1]8080", EB_ERR_INVAL, NULL, 0},       {"::1:8080", EB_ERR_INVAL, NULL, 0},
    {"host:0", EB_ERR_RANGE, NULL, 0},          {"host:99999", EB_ERR_RANGE, NULL, 0},
    {"host:80x", EB_ERR_INVAL, NULL, 0},        {"host:-1", EB_ERR_INVAL, NULL, 0},
    {"ho st:80", EB_ERR_INVAL, NULL, 0},
};

START_TEST(listen_parsing)
{
	char host[64] = "";
	int port = -1;
	int rc = config_parse_listen(listens[_i].in, host, sizeof(host), &port);

	ck_assert_msg(rc == listens[_i].rc, "\"%s\": rc %d", listens[_i].in, rc);
	if (rc == 0) {
		ck_assert_str_eq(host, listens[_i].host);
		ck_assert_int_eq(port, listens[_i].port);
	}
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, defaults_apply_without_any_source);
	tcase_add_test(tc, missing_explicit_file_is_an_error);
	tcase_add_test(tc, file_values_and_comments);
	tcase_add_test(tc, precedence_flag_over_env_over_file_over_default);
	tcase_add_test(tc, config_path_from_environment);
	tcase_add_loop_test(tc, bad_file_names_key_and_line, 0,
	                    sizeof(bad_files) / sizeof(bad_files[0]));
	tcase_add_test(tc, overlong_line_is_refused);
	tcase_add_test(tc, bad_environment_names_variable);
	tcase_add_test(tc, bad_flag_names_flag);
	tcase_add_test(tc, print_redacts_password);
	tcase_add_loop_test(tc, listen_parsing, 0, sizeof(listens) / sizeof(listens[0]));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(config_suite());
}
