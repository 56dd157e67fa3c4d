/* server/serve.h: the `exec-broker serve` process: one libevent loop carrying the HTTP
 * server, the API's handlers, the asynchronous PostgreSQL pool and the SSH pool. This
 * folder owns the process's life: the checks before serving, signals, draining and
 * stopping, reloads, and what systemd is told. Handlers never include it. */
#ifndef EB_SERVER_SERVE_H
#define EB_SERVER_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "api/api.h"
#include "config/cli.h"
#include "config/config.h"
#include "server/janitor.h"

struct event;
struct http_server;

enum server_state {
	SERVER_SERVING,  /* accepting requests */
	SERVER_LEAVING,  /* SIGTERM: /readyz says 503, requests still served (shutdown_delay_s) */
	SERVER_DRAINING, /* no new requests, running execs may finish (grace) */
	SERVER_STOPPING, /* grace over: the pool kills what runs; waiting for the last rows */
};

struct server {
	struct event_base *base;
	const struct config *cfg;             /* in force; replaced by a reload (SIGHUP) */
	const struct config_flags *cfg_flags; /* what a reload loads the settings from */
	char *const *envp;
	struct config **old_cfgs; /* replaced settings, kept to the end: requests hold pointers */
	size_t nold_cfgs;
	char instance[256]; /* instance_name, or host:listen */
	struct http_server *http;
	bool tls; /* listen is HTTPS (tls_cert_file and tls_key_file at the start) */
	struct api api;
	struct janitor janitor;
	enum server_state state;
	bool pool_down;
	struct event *ev_term, *ev_int, *ev_delay, *ev_grace, *ev_flush;
	const char *leave_signal; /* "TERM" or "INT": the signal that began the leaving */
	struct event *ev_hup;      /* SIGHUP: reload the settings */
	struct event *ev_status;   /* STATUS= for systemd, every SERVER_STATUS_S */
	struct event *ev_watchdog; /* WATCHDOG=1 at half of WATCHDOG_USEC, when systemd asks */
};

/* `exec-broker serve`: parses its options, loads the settings and runs the server until a
 * clean shutdown. A CLI_EXIT_* code. */
int server_serve(struct cli *cli, int argc, char **argv);

/* Runs the server until SIGTERM/SIGINT and a clean shutdown: 0, or a negative EB_ERR_*
 * with one line in err if it could not start (schema not current, listen failed, ...).
 * cfg was loaded from flags and envp, which SIGHUP loads again; cfg stays the caller's. */
int server_run(const struct config *cfg, const struct config_flags *flags, char *const envp[],
               char *err, size_t errlen);

#endif
