/* admin/migrate.c: `exec-broker migrate [--status]`: applies the schema migrations this
 * binary embeds, or lists them. */
#include <stdio.h>

#include "admin/admin.h"
#include "db/migrate.h"

static void migrate_usage(FILE *out)
{
	fprintf(out,
	        "usage: exec-broker migrate [--status] [--config FILE] [--database-url URL]\n"
	        "\n"
	        "Applies the pending schema migrations in order, each in its own transaction,\n"
	        "under an advisory lock (concurrent migrators are safe; running it twice is a\n"
	        "no-op). Refuses when an applied migration was changed or the database has a\n"
	        "version this exec-broker does not know.\n"
	        "  --status   list applied and pending versions; exit 0 when current, 1 when\n"
	        "             migrations are pending or the schema cannot be migrated\n");
}

int admin_migrate(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"status", no_argument, NULL, 's'}, CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
	int status = 0, opt, rc;
	PGconn *conn = NULL;
	char err[1024];

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_common_option(cli, opt))
			continue;
		switch (opt) {
		case 's':
			status = 1;
			break;
		case CLI_OPT_HELP:
			migrate_usage(stdout);
			return CLI_EXIT_OK;
		default:
			migrate_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_error("migrate takes no arguments (got \"%s\")", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		return rc;
	if (status) {
		rc = migrate_status(conn, stdout, err, sizeof(err));
		if (rc < 0)
			cli_error("%s", err);
		rc = rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
	} else {
		rc = migrate_apply(conn, stdout, err, sizeof(err));
		if (rc != 0)
			cli_error("%s", err);
		rc = rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
	}
	PQfinish(conn);
	return rc;
}
