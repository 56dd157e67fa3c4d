/* admin/settings.c: `exec-broker config`: every setting's effective value and where it
 * came from, secrets redacted. */
#include <stdio.h>

#include "admin/admin.h"

int admin_config(struct cli *cli, int argc, char **argv)
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
