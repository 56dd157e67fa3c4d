/* broker/main.c: the exec-broker binary: global options and dispatch to subcommands. */
#include <libssh2.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "broker/cli.h"
#include "broker/server.h"

extern char **environ;

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: exec-broker [--config FILE] [--database-url URL] COMMAND [ARGS]\n"
	        "\n"
	        "Runs clients' commands on workspace hosts over pooled SSH sessions, with one\n"
	        "audit row per exec in PostgreSQL.\n"
	        "\n"
	        "Commands:\n"
	        "  serve                          serve the HTTP API (foreground)\n"
	        "  exec WORKSPACE -- ARGV...      run a command through a broker (exec --help)\n"
	        "  migrate [--status]             apply or list schema migrations\n"
	        "  workspace add|set|list|remove|hostkey\n"
	        "                                 manage workspaces and pin their host keys\n"
	        "  token create|list|revoke       manage API tokens\n"
	        "  audit [verify]                 review the audit log; check its hash chain\n"
	        "  config                         print the effective settings, secrets redacted\n"
	        "  version                        print the version\n"
	        "\n"
	        "Every command takes --config FILE (default %s, if it exists),\n"
	        "--database-url URL and --help. Exit status: 0 success, 1 failure, 2 usage error.\n"
	        "\n",
	        CONFIG_DEFAULT_PATH);
	config_print_help(out);
}

static int cmd_config(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_common_option(cli, opt))
			continue;
		if (opt == CLI_OPT_HELP) {
			printf(
			    "usage: exec-broker config [--config FILE]\n\n"
			    "Prints every setting's effective value and where it came from.\n\n");
			config_print_help(stdout);
			return CLI_EXIT_OK;
		}
		return CLI_EXIT_USAGE;
	}
	if (optind != argc) {
		cli_error("config takes no arguments (got \"%s\")", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	rc = cli_load_config(cli);
	if (rc != 0)
		return rc;
	if (cli->cfg.path)
		printf("# config file: %s\n", cli->cfg.path);
	else
		printf("# no config file (%s does not exist)\n", CONFIG_DEFAULT_PATH);
	config_print(&cli->cfg, stdout);
	return CLI_EXIT_OK;
}

static int cmd_serve(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
	char err[512];
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_common_option(cli, opt))
			continue;
		if (opt == CLI_OPT_HELP) {
			printf("usage: exec-broker serve [--config FILE] [--database-url URL] "
			       "[--listen HOST:PORT]\n\n"
			       "Serves the HTTP API in the foreground until SIGTERM or SIGINT. "
			       "Logs go "
			       "to stderr.\nThe database schema must be current (exec-broker "
			       "migrate).\n\n");
			config_print_help(stdout);
			return CLI_EXIT_OK;
		}
		return CLI_EXIT_USAGE;
	}
	if (optind != argc) {
		cli_error("serve takes no arguments (got \"%s\")", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	rc = cli_load_config(cli);
	if (rc != 0)
		return rc;
	rc = server_run(&cli->cfg, &cli->flags, cli->envp, err, sizeof(err));
	if (rc != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

static int cmd_version(void)
{
	printf("exec-broker %s (libssh2 %s, libevent %s, libpq %d)\n", EB_VERSION,
	       libssh2_version(0), event_get_version(), PQlibVersion());
	return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_COMMON_OPTIONS, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
	struct cli cli = {.envp = environ};
	const char *cmd;
	int opt, rc;

	/* Global options stop at the command ("+"): the command parses its own. */
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (cli_common_option(&cli, opt))
			continue;
		switch (opt) {
		case CLI_OPT_HELP:
			usage(stdout);
			return CLI_EXIT_OK;
		case 'V':
			return cmd_version();
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	optind = 0; /* glibc: a full re-initialisation for the command's own getopt_long */

	if (strcmp(cmd, "migrate") == 0)
		rc = cli_migrate(&cli, argc, argv);
	else if (strcmp(cmd, "workspace") == 0)
		rc = cli_workspace(&cli, argc, argv);
	else if (strcmp(cmd, "token") == 0)
		rc = cli_token(&cli, argc, argv);
	else if (strcmp(cmd, "audit") == 0)
		rc = cli_audit(&cli, argc, argv);
	else if (strcmp(cmd, "exec") == 0)
		rc = cli_exec(&cli, argc, argv);
	else if (strcmp(cmd, "config") == 0)
		rc = cmd_config(&cli, argc, argv);
	else if (strcmp(cmd, "serve") == 0)
		rc = cmd_serve(&cli, argc, argv);
	else if (strcmp(cmd, "version") == 0)
		rc = cmd_version();
	else if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		rc = CLI_EXIT_OK;
	} else {
		cli_error("unknown command \"%s\" (exec-broker --help lists the commands)", cmd);
		rc = CLI_EXIT_USAGE;
	}
	config_free(&cli.cfg);
	return rc;
}
