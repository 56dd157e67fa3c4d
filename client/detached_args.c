/* client/detached_args.c: the command lines of ps, logs, kill and wait: one table row per
 * subcommand (its options, its one positional argument, its --help), one parser for all. */
#include "client/detached_args.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/common.h"
#include "client/detached.h"

static void usage_common(FILE *out)
{
	fprintf(out,
	        "  --url URL            the broker (default " CLIENT_DEFAULT_URL "), http:// or\n"
	        "                       https://\n"
	        "  --cacert FILE        https: the CA certificates (PEM) the broker's must chain\n"
	        "                       to (default: the system's)\n"
	        "  --token-file FILE    the API token: the file's first line; otherwise the\n"
	        "                       environment variable " CLIENT_TOKEN_ENV "\n"
	        "  --break-glass-reason TEXT\n"
	        "                       why an admin token is used (audited; required for one)\n");
}

/* The exit statuses of a request that failed, which every one of them shares. */
static void usage_exits_201_204(FILE *out)
{
	fprintf(out, "  201     the command line is wrong, or a local file cannot be read\n"
	             "  202     the broker cannot be reached (no HTTP response)\n"
	             "  203     the token was refused (401) or may not do this (403)\n"
	             "  204     no such workspace or exec, or not one this token reaches (404)\n");
}

static void usage_exits_205_206(FILE *out)
{
	fprintf(out, "  205     the workspace host could not be reached (502)\n"
	             "  206     any other API error\n");
}

static void usage_api_errors(FILE *out)
{
	fprintf(out, "API errors are printed as one line on stderr: exec-broker: CODE: MESSAGE.\n");
}

static void usage_ps(FILE *out)
{
	fprintf(out, "usage: exec-broker ps [--url URL] [--token-file FILE] [--break-glass-reason "
	             "TEXT]\n"
	             "                      [--status STATUS] [--name NAME] [--json] WORKSPACE\n"
	             "\n"
	             "Lists the detached execs of WORKSPACE, newest first (GET\n"
	             "/v1/workspaces/WORKSPACE/execs): EXEC_ID NAME STATUS EXIT STARTED ARGV.\n");
	usage_common(out);
	fprintf(out, "  --status STATUS      only execs in this status (running, exited, ...)\n"
	             "  --name NAME          only execs of this name\n"
	             "  --json               print the broker's JSON document instead\n"
	             "\n"
	             "Exit status:\n"
	             "  0       the list was printed\n");
	usage_exits_201_204(out);
	usage_exits_205_206(out);
	usage_api_errors(out);
}

static void usage_logs(FILE *out)
{
	fprintf(out, "usage: exec-broker logs [--url URL] [--token-file FILE] "
	             "[--break-glass-reason TEXT]\n"
	             "                        [-f | --follow] [--json] EXEC_ID\n"
	             "\n"
	             "Writes what the host keeps of the output of detached exec EXEC_ID (GET\n"
	             "/v1/execs/EXEC_ID/output): its stdout to stdout and its stderr to stderr,\n"
	             "byte for byte. Bytes the host no longer keeps are counted in one line on\n"
	             "stderr.\n");
	usage_common(out);
	fprintf(out, "  -f, --follow         go on until the exec ends; if the connection breaks,\n"
	             "                       reconnect (10 times in a row at most) and resume\n"
	             "                       where it broke, without repeating a byte\n"
	             "  --json               print the NDJSON frames, one per line, instead of\n"
	             "                       decoding them\n"
	             "\n"
	             "Exit status:\n"
	             "  0       the output was written up to its end (with -f, the exec's end);\n"
	             "          logs does not pass on the exec's own status (wait does)\n"
	             "  141     our own stdout or stderr was closed\n");
	usage_exits_201_204(out);
	usage_exits_205_206(out);
	fprintf(out, "  207     the stream broke off (with -f: and could not be resumed)\n");
	usage_api_errors(out);
}

static void usage_kill(FILE *out)
{
	fprintf(out, "usage: exec-broker kill [--url URL] [--token-file FILE] "
	             "[--break-glass-reason TEXT]\n"
	             "                        [-s SIGNAL] EXEC_ID\n"
	             "\n"
	             "Without -s, cancels detached exec EXEC_ID (DELETE /v1/execs/EXEC_ID): TERM,\n"
	             "a grace period, then KILL; it ends cancelled. With -s, sends SIGNAL to its\n"
	             "processes (POST /v1/execs/EXEC_ID/signal). Prints nothing on success.\n");
	usage_common(out);
	fprintf(out, "  -s, --signal SIGNAL  one of " DETACHED_SIGNALS ",\n"
	             "                       by name (TERM, SIGTERM, term) or number (15)\n"
	             "\n"
	             "Exit status:\n"
	             "  0       the broker took the signal or the cancel\n");
	usage_exits_201_204(out);
	fprintf(out, "  205     the workspace host could not be reached (502)\n"
	             "  206     any other API error, such as exec_finished (409): the exec has\n"
	             "          ended already\n");
	usage_api_errors(out);
}

static void usage_wait(FILE *out)
{
	fprintf(out, "usage: exec-broker wait [--url URL] [--token-file FILE] "
	             "[--break-glass-reason TEXT]\n"
	             "                        [--timeout S] EXEC_ID\n"
	             "\n"
	             "Waits until detached exec EXEC_ID no longer runs (GET\n"
	             "/v1/execs/EXEC_ID?wait_s=60, repeated), then exits as exec would have.\n");
	usage_common(out);
	fprintf(out, "  --timeout S          give up after S seconds (0: look once)\n"
	             "\n"
	             "Exit status:\n"
	             "  0-255   the command's exit code\n"
	             "  128+N   the command was killed by signal N (e.g. 137 for KILL)\n"
	             "  124     the command ran past its timeout\n");
	usage_exits_201_204(out);
	fprintf(out, "  205     the exec's SSH connection broke, or the exec was lost or\n"
	             "          abandoned (transport_error, lost, abandoned), or 502\n"
	             "  206     the exec was cancelled or did not run (failed_to_start, denied,\n"
	             "          shutdown, ...), or any other API error\n"
	             "  208     the exec was still running when --timeout passed\n");
	usage_api_errors(out);
}

enum { O_URL = 1, O_CACERT, O_TOKEN_FILE, O_REASON, O_STATUS, O_NAME, O_JSON, O_TIMEOUT, O_HELP };

#define COMMON_OPTIONS                                                                             \
	{"url", required_argument, NULL, O_URL}, {"cacert", required_argument, NULL, O_CACERT},    \
	    {"token-file", required_argument, NULL, O_TOKEN_FILE},                                 \
	    {"break-glass-reason", required_argument, NULL, O_REASON},                             \
	{                                                                                          \
		"help", no_argument, NULL, O_HELP                                                  \
	}

static const struct option ps_opts[] = {COMMON_OPTIONS,
                                        {"status", required_argument, NULL, O_STATUS},
                                        {"name", required_argument, NULL, O_NAME},
                                        {"json", no_argument, NULL, O_JSON},
                                        {NULL, 0, NULL, 0}};
static const struct option logs_opts[] = {COMMON_OPTIONS,
                                          {"follow", no_argument, NULL, 'f'},
                                          {"json", no_argument, NULL, O_JSON},
                                          {NULL, 0, NULL, 0}};
static const struct option kill_opts[] = {
    COMMON_OPTIONS, {"signal", required_argument, NULL, 's'}, {NULL, 0, NULL, 0}};
static const struct option wait_opts[] = {
    COMMON_OPTIONS, {"timeout", required_argument, NULL, O_TIMEOUT}, {NULL, 0, NULL, 0}};

static const struct dcmd {
	const char *name;
	const char *shortopts;
	const struct option *opts;
	const char *pos;      /* its one positional argument, as the usage names it */
	const char *pos_what; /* and as an error names it */
	void (*usage)(FILE *out);
} dcmds[] = {
    [DETACHED_PS] = {"ps", "", ps_opts, "WORKSPACE", "workspace", usage_ps},
    [DETACHED_LOGS] = {"logs", "f", logs_opts, "EXEC_ID", "exec_id", usage_logs},
    [DETACHED_KILL] = {"kill", "s:", kill_opts, "EXEC_ID", "exec_id", usage_kill},
    [DETACHED_WAIT] = {"wait", "", wait_opts, "EXEC_ID", "exec_id", usage_wait},
};

/* One option of a's subcommand (getopt_long said it is one). 0 or CLIENT_EXIT_USAGE. */
static int take_option(const struct dcmd *d, int opt, const char *arg, struct detached_args *a)
{
	switch (opt) {
	case O_URL:
		a->url = arg;
		return 0;
	case O_CACERT:
		a->cacert = arg;
		return 0;
	case O_TOKEN_FILE:
		a->token_file = arg;
		return 0;
	case O_REASON:
		a->reason = arg;
		return 0;
	case O_STATUS:
		a->status = arg;
		return 0;
	case O_NAME:
		a->name = arg;
		if (detached_name_valid(arg))
			return 0;
		cli_error("%s: --name takes 1 to 64 of A-Z a-z 0-9 . _ - (got \"%s\")", d->name,
		          arg);
		return CLIENT_EXIT_USAGE;
	case O_JSON:
		a->json = true;
		return 0;
	case 'f':
		a->follow = true;
		return 0;
	case 's':
		a->signal = detached_signal_name(arg);
		if (a->signal != NULL)
			return 0;
		cli_error("kill: -s takes one of " DETACHED_SIGNALS
		          ", by name or number (got \"%s\")",
		          arg);
		return CLIENT_EXIT_USAGE;
	case O_TIMEOUT:
		return client_timeout_parse(d->name, arg, &a->timeout_s);
	default:
		abort(); /* an option of the table that this switch does not know */
	}
}

/* The one positional argument. 0 or CLIENT_EXIT_USAGE. */
static int take_positional(const struct dcmd *d, int argc, char **argv, const char **pos)
{
	if (argc - optind == 1 && argv[optind][0] != '\0') {
		*pos = argv[optind];
		return 0;
	}
	if (argc - optind > 1)
		cli_error("%s: unexpected argument \"%s\" (exec-broker %s %s)", d->name,
		          argv[optind + 1], d->name, d->pos);
	else
		cli_error("%s: missing the %s (exec-broker %s %s)", d->name, d->pos_what, d->name,
		          d->pos);
	return CLIENT_EXIT_USAGE;
}

int detached_args_parse(enum detached_cmd cmd, int argc, char **argv, struct detached_args *a)
{
	const struct dcmd *d = &dcmds[cmd];
	int opt, rc;

	memset(a, 0, sizeof(*a));
	a->url = CLIENT_DEFAULT_URL;
	a->timeout_s = -1;
	optind = 0; /* glibc: a full re-initialisation, whoever parsed before */
	while ((opt = getopt_long(argc, argv, d->shortopts, d->opts, NULL)) != -1) {
		if (opt == O_HELP) {
			d->usage(stdout);
			return CLI_PARSED_HELP;
		}
		if (opt == '?' || opt == ':') {
			d->usage(stderr); /* getopt_long has said what it did not know */
			return CLIENT_EXIT_USAGE;
		}
		rc = take_option(d, opt, optarg, a);
		if (rc != 0)
			return rc;
	}
	return take_positional(d, argc, argv, cmd == DETACHED_PS ? &a->ws : &a->exec_id);
}
