/* client/batch.h: exec on many workspaces at once (a batch, issue 14): the question --all
 * asks on a terminal, and the one POST /v1/batches whose frames are written as they arrive
 * (fanout.c renders them), its summary as a table on stderr, its outcome as the exit
 * status. */
#ifndef EB_CLIENT_BATCH_H
#define EB_CLIENT_BATCH_H

#include <stdbool.h>

#include "client/common.h"
#include "client/exec_args.h"

/* For --all without --yes on a terminal: asks on stderr, reads the answer from stdin. 0 to
 * go on, or CLIENT_EXIT_USAGE after a line saying nothing was run. */
int batch_confirm(const struct exec_args *a);

/* Runs the batch (path: POST /v1/batches under the URL's path; body: exec_args_body's) on
 * cn's connection (client_conn_connect made it), json as --json. Returns the exit status. */
int batch_run(struct client_conn *cn, const char *path, const char *body, bool json);

#endif
