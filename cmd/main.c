/* cmd/main.c: the exec-broker binary: the global options, and the table of subcommands
 * (the server, the client and the administrative programs) it dispatches to. */
#include <event2/event.h>
#include <libpq-fe.h>
#include <libssh2.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "client/client.h"
#include "config/cli.h"
#include "server/serve.h"

extern char **environ;

static int cmd_version(struct cli *cli, int argc, char **argv);
static int cmd_help(struct cli *cli, int argc, char **argv);

static const struct command {
	const char *name;
	const char *args; /* as the usage shows them after the name */
	const char *help;
	int (*run)(struct cli *cli, int argc, char **argv);
} commands[] = {
    {"serve", "", "serve the HTTP API (foreground)", server_serve},
    {"exec", "WORKSPACE -- ARGV...", "run a command through a broker (exec --help)", client_exec},
    {"ps", "WORKSPACE", "list a workspace's detached execs (exec --detach)", client_ps},
    {"logs", "[-f] EXEC_ID", "write a detached exec's output", client_logs},
    {"kill", "[-s SIGNAL] EXEC_ID", "signal or cancel a detached exec", client_kill},
    {"wait", "EXEC_ID", "wait for a detached exec; exit with its status", client_wait},
    {"migrate", "[--status]", "apply or list schema migrations", admin_migrate},
    {"workspace", "add|set|list|remove|hostkey", "manage workspaces and pin their host keys",
     admin_workspace},
    {"token", "create|list|revoke", "manage API tokens", admin_token},
    {"audit", "[verify]", "review the audit log; check its hash chain", admin_audit},
    {"config", "", "print the effective settings, secrets redacted", admin_config},
    {"version", "", "print the version", cmd_version},
    {"help", NULL, NULL, cmd_help}, /* not listed */
};

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: exec-broker [--config FILE] [--database-url URL] COMMAND [ARGS]\n"
	        "\n"
	        "Runs clients' commands on workspace hosts over pooled SSH sessions, with one\n"
	        "audit row per exec in PostgreSQL.\n"
	        "\n"
	        "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];
		char words[80];

		if (c->help == NULL)
			continue;
		snprintf(words, sizeof(words), "%s%s%s", c->name, c->args[0] != '\0' ? " " : "",
		         c->args);
		if (strlen(words) <= 30)
			fprintf(out, "  %-30s %s\n", words, c->help);
		else
			fprintf(out, "  %s\n  %-30s %s\n", words, "", c->help);
	}
	fprintf(out,
	        "\n"
	        "Every command takes --config FILE (default %s, if it exists),\n"
	        "--database-url URL and --help. Exit status: 0 success, 1 failure, 2 usage error.\n"
	        "\n",
	        CONFIG_DEFAULT_PATH);
	config_print_help(out);
}

static int cmd_version(struct cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	(void)argv;
	printf("exec-broker %s (libssh2 %s, libevent %s, libpq %d)\n", EB_VERSION,
	       libssh2_version(0), event_get_version(), PQlibVersion());
	return CLI_EXIT_OK;
}

static int cmd_help(struct cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	(void)argv;
	usage(stdout);
	return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_COMMON_OPTIONS, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
	struct cli cli = {.envp = environ};
	const struct command *c = NULL;
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
			return cmd_version(&cli, 0, NULL);
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && c == NULL; i++)
		if (strcmp(commands[i].name, argv[optind]) == 0)
			c = &commands[i];
	if (c == NULL) {
		cli_error("unknown command \"%s\" (exec-broker --help lists the commands)",
		          argv[optind]);
		return CLI_EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	optind = 0; /* glibc: a full re-initialisation for the command's own getopt_long */
	rc = c->run(&cli, argc, argv);
	config_free(&cli.cfg);
	return rc;
}
