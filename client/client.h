/* client/client.h: the API's client for people and scripts, the subcommands of the
 * exec-broker binary that talk to a broker over HTTP: `exec` (one exec, its output as it
 * arrives, its outcome as the exit status; --detach starts it and returns) and, for
 * detached execs, `ps`, `logs`, `kill` and `wait`. They need no settings file and no
 * database. */
#ifndef EB_CLIENT_CLIENT_H
#define EB_CLIENT_CLIENT_H

#include "config/cli.h"

/* argv[0] is the subcommand's name. Each returns the exit status (see its --help and the
 * README's tables). */
int client_exec(struct cli *cli, int argc, char **argv);
int client_ps(struct cli *cli, int argc, char **argv);
int client_logs(struct cli *cli, int argc, char **argv);
int client_kill(struct cli *cli, int argc, char **argv);
int client_wait(struct cli *cli, int argc, char **argv);

#endif
