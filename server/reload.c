/* server/reload.c: applying reloaded settings to a running broker. */
#include "server/reload.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "http/server.h"
#include "http/tls.h"
#include "server/notify.h"
#include "server/serve.h"

void reload_pool_config(const struct config *cfg, struct pool_config *pc)
{
	*pc = (struct pool_config){
	    .ssh_key_path = cfg->ssh_key,
	    .max_channels_per_session = cfg->pool_max_channels_per_session,
	    .max_sessions_per_host = cfg->pool_max_sessions_per_host,
	    .max_sessions_total = cfg->pool_max_sessions_total,
	    .idle_ttl_s = cfg->pool_idle_ttl_s,
	    .keepalive_s = cfg->pool_keepalive_s,
	    .connect_timeout_s = cfg->pool_connect_timeout_s,
	    .channel_buffer_bytes = cfg->pool_channel_buffer_bytes,
	    .kill_grace_s = cfg->pool_kill_grace_s,
	};
}

/* Settings a reload cannot change: they shaped the listener, the database pool or the
 * rows already written. */
static void warn_restart_only(const struct config *old, const struct config *n)
{
	const struct {
		const char *name;
		bool changed;
	} fixed[] = {
	    {"listen", strcmp(old->listen, n->listen) != 0},
	    {"database_url", strcmp(old->database_url, n->database_url) != 0},
	    {"db_connections", old->db_connections != n->db_connections},
	    {"instance_name", strcmp(old->instance_name, n->instance_name) != 0},
	    /* HTTP or HTTPS: a renewed certificate is reloaded (reload_tls), not the choice */
	    {"tls_cert_file", old->tls_cert_file[0] == '\0' && n->tls_cert_file[0] != '\0'},
	};

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (fixed[i].changed)
			log_kv(LOG_WARN, "setting changed: it takes effect at the next start",
			       "setting", fixed[i].name, NULL);
}

/* A renewed certificate: new connections get it, open ones keep theirs. Turning HTTPS on
 * or off takes a restart (warn_restart_only). 0, or -1 after logging why. */
static int reload_tls(struct server *s, const struct config *n)
{
	char err[512];
	void *tls;

	if (n->tls_cert_file[0] == '\0' || n->tls_key_file[0] == '\0') {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       "listen is HTTPS: tls_cert_file and tls_key_file must stay set (turning TLS "
		       "off takes a restart)",
		       NULL);
		return -1;
	}
	if (http_tls_new(n->tls_cert_file, n->tls_key_file, &tls, err, sizeof(err)) != 0) {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       err, NULL);
		return -1;
	}
	http_server_set_tls(s->http, tls);
	http_tls_free(tls);
	return 0;
}

void reload_settings(struct server *s)
{
	struct config *n = calloc(1, sizeof(*n)), **olds;
	struct http_limits lim;
	struct pool_config pc;
	char err[512];
	int rc;

	/* systemd heard STOPPING=1 when the broker began leaving: no RELOADING/READY after. */
	if (s->state == SERVER_SERVING)
		notify_reloading();
	olds = realloc(s->old_cfgs, (s->nold_cfgs + 1) * sizeof(*olds));
	if (n == NULL || olds == NULL) {
		free(n);
		log_kv(LOG_ERROR, "configuration not reloaded: out of memory", NULL);
		goto out;
	}
	s->old_cfgs = olds;
	if (config_load(n, s->cfg_flags, s->envp, err, sizeof(err)) != 0) {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       err, NULL);
		free(n);
		goto out;
	}
	if (n->ssh_key[0] == '\0') {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       "ssh_key is not set", NULL);
		goto fail;
	}
	if (s->tls && reload_tls(s, n) != 0)
		goto fail;
	reload_pool_config(n, &pc);
	rc = pool_reconfigure(s->api.pool, &pc, err, sizeof(err));
	if (rc < 0) {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       err, NULL);
		goto fail;
	}
	warn_restart_only(s->cfg, n);
	log_set_level((enum log_level)log_level_parse(n->log_level));
	lim = (struct http_limits){(size_t)n->max_body_bytes, n->http_idle_timeout_s,
	                           (unsigned)n->max_connections};
	http_server_set_limits(s->http, &lim);
	s->old_cfgs[s->nold_cfgs++] = n; /* freed when the server ends */
	s->cfg = n;
	s->api.cfg = n;
	log_kv(LOG_INFO, "configuration reloaded", "ssh_key_changed", rc == 1 ? "yes" : "no", NULL);
	goto out;
fail:
	config_free(n);
	free(n);
out:
	if (s->state == SERVER_SERVING)
		notify_status(s, "READY=1\n");
}
