/* admin/admin.h: the administrative subcommands, each a program of its own over the
 * database: migrate, workspace, token, audit, config. argv[0] is the subcommand's name;
 * each returns a CLI_EXIT_* code (config/cli.h). */
#ifndef EB_ADMIN_ADMIN_H
#define EB_ADMIN_ADMIN_H

#include "config/cli.h"

int admin_migrate(struct cli *cli, int argc, char **argv);
int admin_workspace(struct cli *cli, int argc, char **argv);
int admin_token(struct cli *cli, int argc, char **argv);
int admin_audit(struct cli *cli, int argc, char **argv);
int admin_config(struct cli *cli, int argc, char **argv);

#endif
