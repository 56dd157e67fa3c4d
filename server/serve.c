/* server/serve.c: the life of the `exec-broker serve` process: it starts (checks, the
 * loop, the pools, the listener), serves, drains on SIGTERM/SIGINT while running execs
 * finish within the grace, stops (the pool kills what is left and every row is completed)
 * and exits once every reply is written. */
#include "server/serve.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/seal.h"
#include "common/err.h"
#include "common/fsm.h"
#include "common/log.h"
#include "db/pgasync.h"
#include "http/server.h"
#include "http/tls.h"
#include "pool/pool.h"
#include "server/notify.h"
#include "server/reload.h"
#include "server/startup.h"

#define FLUSH_WAIT_S 5
/* After SIGTERM, completions of audit rows are retried for the grace, the kill grace and
 * this long more, then given up (the rows are left to the sweep of a live broker). */
#define COMPLETION_EXTRA_S 10

static const char *const state_names[] = {"serving", "leaving", "draining", "stopping"};
static const unsigned state_legal[] = {
    [SERVER_SERVING] = FSM_BIT(SERVER_LEAVING) | FSM_BIT(SERVER_DRAINING),
    [SERVER_LEAVING] = FSM_BIT(SERVER_DRAINING),
    [SERVER_DRAINING] = FSM_BIT(SERVER_STOPPING),
    [SERVER_STOPPING] = 0,
};
static const struct fsm server_fsm = {"server", state_names, state_legal, 4};

static void on_flush_wait_over(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	char n[16];

	(void)fd;
	(void)what;
	snprintf(n, sizeof(n), "%u", http_server_flushing(s->http));
	log_kv(LOG_WARN, "stopping with replies not fully sent", "replies", n, NULL);
	event_base_loopexit(s->base, NULL);
}

/* The loop ends once every exec has ended, the pool is closed and every reply has been
 * written (or FLUSH_WAIT_S have passed since the rest was done). */
static void maybe_exit(struct server *s)
{
	struct timeval wait = {FLUSH_WAIT_S, 0};

	if (s->state != SERVER_STOPPING || !s->pool_down || s->api.busy != 0)
		return;
	if (http_server_flushing(s->http) == 0) {
		event_base_loopexit(s->base, NULL);
		return;
	}
	if (s->ev_flush == NULL) {
		s->ev_flush = evtimer_new(s->base, on_flush_wait_over, s);
		if (s->ev_flush == NULL || evtimer_add(s->ev_flush, &wait) != 0)
			event_base_loopexit(s->base, NULL);
	}
}

static void on_flushed(void *arg)
{
	maybe_exit(arg);
}

static void on_reply(int status, void *arg)
{
	struct server *s = arg;

	metrics_count_http(&s->api.metrics, status);
}

static void on_pool_down(void *arg)
{
	struct server *s = arg;

	s->pool_down = true;
	log_kv(LOG_INFO, "ssh pool closed", NULL);
	maybe_exit(s);
}

/* Grace is over (or there was nothing to wait for): the pool kills what still runs, and
 * each exec completes its audit row as 'shutdown' before its last frame. */
static void begin_stop(struct server *s)
{
	char n[16];

	if (s->state == SERVER_STOPPING)
		return;
	FSM_SET(&server_fsm, s->state, SERVER_STOPPING, s->instance);
	s->api.phase = API_STOPPING;
	snprintf(n, sizeof(n), "%u", s->api.njobs);
	log_kv(LOG_INFO, "stopping: cancelling running execs", "execs", n, NULL);
	pool_shutdown(s->api.pool, on_pool_down, s);
}

/* Every exec has been reclaimed and no request waits for the database. */
static void on_idle(void *arg)
{
	struct server *s = arg;

	if (s->state == SERVER_DRAINING)
		begin_stop(s);
	maybe_exit(s);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	begin_stop(arg);
}

/* No new requests: the listener closes, requests on open connections get 503
 * shutting_down, running execs have the grace. */
static void begin_drain(struct server *s, const char *why)
{
	struct timeval grace = {s->cfg->shutdown_grace_s, 0};
	struct timespec now;
	char n[16];

	FSM_SET(&server_fsm, s->state, SERVER_DRAINING, s->instance);
	s->api.phase = API_DRAINING;
	clock_gettime(CLOCK_MONOTONIC, &now);
	s->api.completions_until_ms =
	    (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 +
	    1000LL * (s->cfg->shutdown_grace_s + s->cfg->pool_kill_grace_s + COMPLETION_EXTRA_S);
	http_server_stop_listening(s->http);
	snprintf(n, sizeof(n), "%u", s->api.njobs);
	log_kv(LOG_INFO, "shutting down: no new requests, waiting for running execs", "signal",
	       why, "execs", n, NULL);
	if (s->api.njobs == 0 || s->cfg->shutdown_grace_s == 0)
		begin_stop(s);
	else
		evtimer_add(s->ev_grace, &grace);
}

static void on_delay_over(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SERVER_LEAVING)
		begin_drain(s, s->leave_signal);
}

/* SIGTERM/SIGINT. With shutdown_delay_s, the broker first only stops being ready (load
 * balancers' health checks take it out) and serves on for the delay; then it drains. A
 * second signal skips what is left of the delay and the grace. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	struct timeval delay = {s->cfg->shutdown_delay_s, 0};
	char n[16];

	(void)what;
	if (s->state != SERVER_SERVING) {
		log_kv(LOG_INFO, "second signal: stopping now", NULL);
		if (s->state == SERVER_LEAVING)
			begin_drain(s, sig == SIGTERM ? "TERM" : "INT");
		begin_stop(s);
		return;
	}
	notify_status(s, "STOPPING=1\n");
	if (s->cfg->shutdown_delay_s == 0) {
		begin_drain(s, sig == SIGTERM ? "TERM" : "INT");
		return;
	}
	FSM_SET(&server_fsm, s->state, SERVER_LEAVING, s->instance);
	s->api.leaving = true;
	s->leave_signal = sig == SIGTERM ? "TERM" : "INT";
	snprintf(n, sizeof(n), "%d", s->cfg->shutdown_delay_s);
	log_kv(LOG_INFO, "leaving: not ready, still serving until the delay is over", "signal",
	       s->leave_signal, "delay_s", n, NULL);
	evtimer_add(s->ev_delay, &delay);
}

static void on_hup(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	/* Leaving still serves (a renewed certificate, say, is wanted until the listener
	 * closes); draining and stopping keep what they have. */
	if (s->state == SERVER_SERVING || s->state == SERVER_LEAVING)
		reload_settings(s);
	else
		log_kv(LOG_WARN, "reload ignored: the broker is stopping", NULL);
}

static int setup_signals(struct server *s, char *err, size_t errlen)
{
	s->ev_term = evsignal_new(s->base, SIGTERM, on_signal, s);
	s->ev_int = evsignal_new(s->base, SIGINT, on_signal, s);
	s->ev_hup = evsignal_new(s->base, SIGHUP, on_hup, s);
	s->ev_grace = evtimer_new(s->base, on_grace_over, s);
	s->ev_delay = evtimer_new(s->base, on_delay_over, s);
	if (s->ev_term == NULL || s->ev_int == NULL || s->ev_hup == NULL || s->ev_grace == NULL ||
	    s->ev_delay == NULL ||
	    evsignal_add(s->ev_term, NULL) != 0 || evsignal_add(s->ev_int, NULL) != 0 ||
	    evsignal_add(s->ev_hup, NULL) != 0) {
		snprintf(err, errlen, "cannot set up signal handling");
		return EB_ERR_IO;
	}
	return 0;
}

static int setup_http(struct server *s, char *err, size_t errlen)
{
	const struct http_limits lim = {(size_t)s->cfg->max_body_bytes, s->cfg->http_idle_timeout_s,
	                                (unsigned)s->cfg->max_connections};
	const struct http_server_hooks hooks = {on_reply, on_flushed, s};
	char host[256];
	int port, rc;

	if (config_parse_listen(s->cfg->listen, host, sizeof(host), &port) != 0) {
		snprintf(err, errlen, "listen: cannot parse \"%s\"", s->cfg->listen);
		return EB_ERR_INVAL;
	}
	rc = http_server_new(s->base, api_routes, api_nroutes, &s->api, &lim, &hooks, &s->http, err,
	                     errlen);
	if (rc != 0)
		return rc;
	http_server_set_instance(s->http, s->instance);
	if (s->cfg->tls_cert_file[0] != '\0' || s->cfg->tls_key_file[0] != '\0') {
		void *tls;

		if (s->cfg->tls_cert_file[0] == '\0' || s->cfg->tls_key_file[0] == '\0') {
			snprintf(err, errlen,
			         "tls_cert_file and tls_key_file go together: set both "
			         "(HTTPS) or neither (HTTP)");
			return EB_ERR_INVAL;
		}
		rc = http_tls_new(s->cfg->tls_cert_file, s->cfg->tls_key_file, &tls, err, errlen);
		if (rc != 0)
			return rc;
		http_server_set_tls(s->http, tls);
		http_tls_free(tls);
		s->tls = true;
	}
	return http_server_listen(s->http, host, port, err, errlen);
}

static void free_event(struct event *ev)
{
	if (ev != NULL)
		event_free(ev);
}

int server_run(const struct config *cfg, const struct config_flags *flags, char *const envp[],
               char *err, size_t errlen)
{
	struct server srv = {.cfg = cfg, .cfg_flags = flags, .envp = envp};
	struct server *s = &srv;
	struct pool_config pc;
	int rc;

	/* A client that goes away mid-reply must be an error return, not a fatal signal. */
	signal(SIGPIPE, SIG_IGN);
	log_set_level((enum log_level)log_level_parse(cfg->log_level));
	startup_instance_name(cfg, s->instance, sizeof(s->instance));
	log_set_instance(s->instance);
	if (cfg->ssh_key[0] == '\0') {
		snprintf(err, errlen, "ssh_key is not set: the broker needs its SSH private key");
		return EB_ERR_INVAL;
	}
	rc = startup_check_database(cfg, s->instance, err, errlen);
	if (rc != 0)
		return rc;
	s->base = event_base_new();
	if (s->base == NULL) {
		snprintf(err, errlen, "cannot create the event loop");
		return EB_ERR_NOMEM;
	}
	s->api = (struct api){.base = s->base,
	                      .cfg = cfg,
	                      .instance = s->instance,
	                      .phase = API_SERVING,
	                      .on_idle = on_idle,
	                      .idle_arg = s};
	reload_pool_config(cfg, &pc);
	rc = pool_new(s->base, &pc, &s->api.pool, err, errlen);
	if (rc != 0)
		goto out;
	rc = pgasync_new(s->base, cfg->database_url, cfg->db_connections, &s->api.db, err, errlen);
	if (rc != 0)
		goto out;
	if (pgasync_hosts_whole(s->api.db))
		log_kv(LOG_WARN,
		       "database_url lists several hosts that cannot be tried one at a time (an empty "
		       "hostaddr entry, lists of different lengths, or an empty host with no "
		       "default): a first host that takes connections and never answers will hold "
		       "every attempt",
		       NULL);
	rc = setup_signals(s, err, errlen);
	if (rc != 0)
		goto out;
	rc = setup_http(s, err, errlen);
	if (rc != 0)
		goto out;
	log_kv(LOG_INFO, "listening", "listen", cfg->listen, "instance", s->instance, "version",
	       EB_VERSION, NULL);
	rc = janitor_start(&s->janitor, &s->api);
	if (rc != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = notify_start(s, err, errlen);
	if (rc != 0)
		goto out;
	event_base_dispatch(s->base);
	log_kv(LOG_INFO, "stopped", NULL);
	rc = 0;
out:
	http_server_free(s->http);
	if (s->api.pool != NULL && !s->pool_down) {
		/* Startup failed after the pool existed: nothing ran on it. */
		pool_shutdown(s->api.pool, on_pool_down, s);
		while (!s->pool_down && event_base_loop(s->base, EVLOOP_ONCE) == 0)
			;
	}
	janitor_stop(&s->janitor);
	seal_free(&s->api); /* its statement, if one is in flight, before the database goes */
	pgasync_free(s->api.db);
	pool_free(s->api.pool);
	api_free(&s->api);
	free_event(s->ev_term);
	free_event(s->ev_int);
	free_event(s->ev_grace);
	free_event(s->ev_delay);
	free_event(s->ev_flush);
	free_event(s->ev_hup);
	free_event(s->ev_status);
	free_event(s->ev_watchdog);
	for (size_t i = 0; i < s->nold_cfgs; i++) {
		config_free(s->old_cfgs[i]);
		free(s->old_cfgs[i]);
	}
	free(s->old_cfgs);
	if (s->base != NULL)
		event_base_free(s->base);
	return rc;
}

int server_serve(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
	char err[512];
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_common_option(cli, opt))
			continue;
		if (opt == CLI_OPT_HELP) {
			printf("usage: exec-broker serve [--config FILE] [--database-url URL] "
			       "[--listen HOST:PORT]\n\n"
			       "Serves the HTTP API in the foreground until SIGTERM or SIGINT. "
			       "Logs go "
			       "to stderr.\nThe database schema must be current (exec-broker "
			       "migrate).\n\n");
			config_print_help(stdout);
			return CLI_EXIT_OK;
		}
		return CLI_EXIT_USAGE;
	}
	if (optind != argc) {
		cli_error("serve takes no arguments (got \"%s\")", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	rc = cli_load_config(cli);
	if (rc != 0)
		return rc;
	rc = server_run(&cli->cfg, &cli->flags, cli->envp, err, sizeof(err));
	if (rc != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}
