/* config/cli.h: what every subcommand of the exec-broker binary shares: the common options
 * (--config, --database-url, --listen), loading the settings, connecting to the database,
 * one-line errors and the exit codes. */
#ifndef EB_CONFIG_CLI_H
#define EB_CONFIG_CLI_H

#include <getopt.h>
#include <libpq-fe.h>

#include "config/config.h"

/* Exit codes of every subcommand. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,  /* the operation failed (database, network, not found, ...) */
	CLI_EXIT_USAGE = 2, /* the command line is wrong */
};

struct cli {
	struct config_flags flags;
	char *const *envp;
	struct config cfg;
	int cfg_loaded;
};

/* Long options every subcommand accepts; option values from CLI_OPT_BASE upwards. */
enum { CLI_OPT_CONFIG = 0x1000, CLI_OPT_DATABASE_URL, CLI_OPT_LISTEN, CLI_OPT_HELP };
#define CLI_COMMON_OPTIONS                                                                         \
	{"config", required_argument, NULL, CLI_OPT_CONFIG},                                       \
	    {"database-url", required_argument, NULL, CLI_OPT_DATABASE_URL},                       \
	    {"listen", required_argument, NULL, CLI_OPT_LISTEN},                                   \
	{                                                                                          \
		"help", no_argument, NULL, CLI_OPT_HELP                                            \
	}

/* Handles a common option returned by getopt_long. 1 if it was one, 0 otherwise. */
int cli_common_option(struct cli *cli, int opt);

/* cli_parse() printed --help: the subcommand exits 0 without doing anything. */
#define CLI_PARSED_HELP (-1)

/* Parses a subcommand's argv (argv[0] is its name, what the command group, e.g. "token"):
 * the common options, and of the subcommand's own opts (values 1..nvals-1, followed by
 * CLI_COMMON_OPTIONS) only those in allowed. Each one given leaves its argument, or "" for a
 * flag, in vals[value] (vals has nvals slots, cleared here). Exactly npos positional
 * arguments must follow (pos_name says what is missing); they go to pos. Returns 0,
 * CLI_PARSED_HELP after printing usage, or CLI_EXIT_USAGE after one line on stderr. */
int cli_parse(struct cli *cli, int argc, char **argv, const char *what, const struct option *opts,
              const char *allowed, const char **vals, int nvals, int npos, const char *pos_name,
              const char **pos, void (*usage)(FILE *out));

/* An option a subcommand takes more than once, such as --label. */
struct cli_many {
	int opt;           /* its value in opts */
	const char **vals; /* room for max values: each one given, in order */
	size_t max, n;
};

/* cli_parse() for a subcommand with a repeatable option (many may be NULL): its values go to
 * many->vals rather than vals; more than many->max of them is a usage error. */
int cli_parse_many(struct cli *cli, int argc, char **argv, const char *what,
                   const struct option *opts, const char *allowed, const char **vals, int nvals,
                   int npos, const char *pos_name, const char **pos, void (*usage)(FILE *out),
                   struct cli_many *many);

/* Prints "exec-broker: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Loads the configuration once (printing the error). 0 or CLI_EXIT_USAGE. */
int cli_load_config(struct cli *cli);
/* Loads the configuration and connects. 0, or a CLI_EXIT_* after printing the error. */
int cli_connect(struct cli *cli, PGconn **conn);

#endif
