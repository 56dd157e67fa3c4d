/* config/cli.c: what every subcommand shares: the common options, loading the settings,
 * connecting to the database, and one-line errors. */
#include "config/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "db/db.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("exec-broker: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_common_option(struct cli *cli, int opt)
{
	switch (opt) {
	case CLI_OPT_CONFIG:
		cli->flags.config_path = optarg;
		return 1;
	case CLI_OPT_DATABASE_URL:
		cli->flags.database_url = optarg;
		return 1;
	case CLI_OPT_LISTEN:
		cli->flags.listen = optarg;
		return 1;
	default:
		return 0;
	}
}

int cli_load_config(struct cli *cli)
{
	char err[1024];

	if (cli->cfg_loaded)
		return 0;
	if (config_load(&cli->cfg, &cli->flags, cli->envp, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		return CLI_EXIT_USAGE;
	}
	cli->cfg_loaded = 1;
	return 0;
}

int cli_connect(struct cli *cli, PGconn **conn)
{
	char err[1024];
	int rc;

	*conn = NULL;
	rc = cli_load_config(cli);
	if (rc != 0)
		return rc;
	if (db_connect(cli->cfg.database_url, conn, err, sizeof(err)) != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

static const char *opt_name(const struct option *opts, int opt)
{
	for (const struct option *o = opts; o->name != NULL; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

int cli_parse(struct cli *cli, int argc, char **argv, const char *what, const struct option *opts,
              const char *allowed, const char **vals, int nvals, int npos, const char *pos_name,
              const char **pos, void (*usage)(FILE *out))
{
	return cli_parse_many(cli, argc, argv, what, opts, allowed, vals, nvals, npos, pos_name,
	                      pos, usage, NULL);
}

int cli_parse_many(struct cli *cli, int argc, char **argv, const char *what,
                   const struct option *opts, const char *allowed, const char **vals, int nvals,
                   int npos, const char *pos_name, const char **pos, void (*usage)(FILE *out),
                   struct cli_many *many)
{
	int opt;

	for (int i = 0; i < nvals; i++)
		vals[i] = NULL;
	if (many != NULL)
		many->n = 0;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_common_option(cli, opt))
			continue;
		if (opt == CLI_OPT_HELP) {
			usage(stdout);
			return CLI_PARSED_HELP;
		}
		if (opt <= 0 || opt >= nvals) {
			usage(stderr); /* getopt_long has said what it did not know */
			return CLI_EXIT_USAGE;
		}
		if (strchr(allowed, opt) == NULL) {
			cli_error("%s %s does not take --%s", what, argv[0], opt_name(opts, opt));
			return CLI_EXIT_USAGE;
		}
		if (many != NULL && opt == many->opt) {
			if (many->n == many->max) {
				cli_error("%s %s: --%s given more than %zu times", what, argv[0],
				          opt_name(opts, opt), many->max);
				return CLI_EXIT_USAGE;
			}
			many->vals[many->n++] = optarg;
			continue;
		}
		vals[opt] = optarg ? optarg : "";
	}
	if (argc - optind != npos) {
		if (argc - optind < npos)
			cli_error("%s %s: missing %s", what, argv[0], pos_name);
		else
			cli_error("%s %s: unexpected argument \"%s\"", what, argv[0],
			          argv[optind + npos]);
		return CLI_EXIT_USAGE;
	}
	for (int i = 0; i < npos; i++)
		pos[i] = argv[optind + i];
	return 0;
}
