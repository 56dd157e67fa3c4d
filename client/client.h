/* client/client.h: `exec-broker exec`, the API's client for people and scripts: one exec
 * through a broker over HTTP, its output as it arrives, its outcome as the exit status.
 * It needs no settings file and no database. */
#ifndef EB_CLIENT_CLIENT_H
#define EB_CLIENT_CLIENT_H

#include "config/cli.h"

/* argv[0] is "exec". Returns the exit status (see the README's table). */
int client_exec(struct cli *cli, int argc, char **argv);

#endif
