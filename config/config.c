/* config/config.c: the settings table and the loaders for each source (defaults, INI file,
 * environment, flags). Every value, whatever its source, goes through the one parser of its
 * type, so an error reads the same wherever the value came from. */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "db/db.h"

#define ENV_PREFIX "EXEC_BROKER_"

enum setting_type {
	SETTING_STRING,
	SETTING_INT,
	SETTING_ENUM,
	SETTING_LISTEN,
};

struct setting {
	const char *name;
	enum setting_type type;
	const char *def;                    /* default, parsed like any other value */
	long long min, max;                 /* SETTING_INT bounds */
	const char *choices;                /* SETTING_ENUM: "a|b|c" */
	size_t offset;                      /* of the char * or int field in struct config */
	const char *flag;                   /* command-line flag, or NULL */
	char *(*redact)(const char *value); /* for `config` output; NULL: shown as is */
	const char *help;
};

#define FIELD(f) offsetof(struct config, f)

static const struct setting settings[] = {
    {"database_url", SETTING_STRING, "dbname=exec_broker", 0, 0, NULL, FIELD(database_url),
     "--database-url", db_conninfo_redact,
     "PostgreSQL connection: libpq key=value string or postgresql:// URI"},
    {"listen", SETTING_LISTEN, "127.0.0.1:8080", 0, 0, NULL, FIELD(listen), "--listen", NULL,
     "address the HTTP API listens on: host:port or [ipv6]:port"},
    {"ssh_key", SETTING_STRING, "", 0, 0, NULL, FIELD(ssh_key), NULL, NULL,
     "path of the broker's SSH private key, used to log in to every workspace host"},
    {"tls_cert_file", SETTING_STRING, "", 0, 0, NULL, FIELD(tls_cert_file), NULL, NULL,
     "PEM certificate chain (the server's first) that makes listen HTTPS, with "
     "tls_key_file; read again on reload"},
    {"tls_key_file", SETTING_STRING, "", 0, 0, NULL, FIELD(tls_key_file), NULL, NULL,
     "PEM private key of tls_cert_file"},
    {"log_level", SETTING_ENUM, "info", 0, 0, "debug|info|warn|error", FIELD(log_level), NULL, NULL,
     "least severe log level written: debug, info, warn or error"},
    {"pool_max_channels_per_session", SETTING_INT, "8", 1, 64, NULL,
     FIELD(pool_max_channels_per_session), NULL, NULL,
     "execs one SSH session carries at once; keep it below the hosts' sshd MaxSessions "
     "(default 10) so that a slot stays free for cancelling"},
    {"pool_max_sessions_per_host", SETTING_INT, "4", 1, 64, NULL, FIELD(pool_max_sessions_per_host),
     NULL, NULL, "SSH sessions the pool opens to one workspace host; beyond them execs wait"},
    {"pool_max_sessions_total", SETTING_INT, "1024", 1, 100000, NULL,
     FIELD(pool_max_sessions_total), NULL, NULL,
     "SSH sessions in all; the least recently used idle ones are closed first"},
    {"pool_idle_ttl_s", SETTING_INT, "300", 1, 86400, NULL, FIELD(pool_idle_ttl_s), NULL, NULL,
     "seconds an idle SSH session is kept before it is closed"},
    {"pool_keepalive_s", SETTING_INT, "30", 1, 3600, NULL, FIELD(pool_keepalive_s), NULL, NULL,
     "seconds between SSH keepalives on an idle session"},
    {"pool_connect_timeout_s", SETTING_INT, "10", 1, 300, NULL, FIELD(pool_connect_timeout_s), NULL,
     NULL, "seconds allowed for TCP connect, key exchange and authentication"},
    {"pool_channel_buffer_bytes", SETTING_INT, "262144", 16384, 16777216, NULL,
     FIELD(pool_channel_buffer_bytes), NULL, NULL,
     "output bytes buffered per exec before its reading pauses (and the SSH window closes)"},
    {"pool_kill_grace_s", SETTING_INT, "5", 1, 60, NULL, FIELD(pool_kill_grace_s), NULL, NULL,
     "seconds between TERM and KILL when a command is cancelled"},
    {"exec_timeout_default_s", SETTING_INT, "30", 1, 86400, NULL, FIELD(exec_timeout_default_s),
     NULL, NULL, "timeout of an exec whose request gives none (or 0)"},
    {"exec_timeout_max_s", SETTING_INT, "120", 1, 86400, NULL, FIELD(exec_timeout_max_s), NULL,
     NULL, "longest timeout an exec may have; longer requests are clamped to it"},
    {"exec_detached_timeout_default_s", SETTING_INT, "3600", 1, 31536000, NULL,
     FIELD(exec_detached_timeout_default_s), NULL, NULL,
     "timeout of a detached exec whose request gives none (or 0); enforced on the host"},
    {"exec_detached_timeout_max_s", SETTING_INT, "86400", 1, 31536000, NULL,
     FIELD(exec_detached_timeout_max_s), NULL, NULL,
     "longest timeout a detached exec may have; longer requests are clamped to it"},
    {"exec_detached_output_cap_bytes", SETTING_INT, "16777216", 65536, 1073741824, NULL,
     FIELD(exec_detached_output_cap_bytes), NULL, NULL,
     "output of each stream of a detached exec kept on its host; past it the oldest goes"},
    {"exec_retain_s", SETTING_INT, "3600", 1, 31536000, NULL, FIELD(exec_retain_s), NULL, NULL,
     "seconds a detached exec's output stays on its host after the exec ended"},
    {"workspace_max_detached_execs", SETTING_INT, "16", 1, 10000, NULL,
     FIELD(workspace_max_detached_execs), NULL, NULL,
     "detached execs one workspace may have running at once; beyond it requests get 429"},
    {"min_exec_tier", SETTING_INT, "3", 1, 4, NULL, FIELD(min_exec_tier), NULL, NULL,
     "lowest workspace tier that workspace and org tokens may exec on (admins: any tier)"},
    {"org_max_concurrent_execs", SETTING_INT, "32", 1, 1000000, NULL,
     FIELD(org_max_concurrent_execs), NULL, NULL,
     "execs one org may have running at once on all the brokers sharing the database "
     "(followers of detached output count on their broker); beyond it requests get 429"},
    {"max_body_bytes", SETTING_INT, "1048576", 1024, 1073741824, NULL, FIELD(max_body_bytes), NULL,
     NULL, "largest request body accepted; larger ones get 413"},
    {"output_cap_bytes", SETTING_INT, "1048576", 0, 2147483647, NULL, FIELD(output_cap_bytes), NULL,
     NULL, "bytes of each output stream sent to the client; the rest is counted, not sent"},
    {"shutdown_delay_s", SETTING_INT, "0", 0, 3600, NULL, FIELD(shutdown_delay_s), NULL, NULL,
     "seconds after SIGTERM during which /readyz answers 503 while requests are still "
     "served, so that a load balancer's health checks take the broker out before it stops "
     "listening (0: stop listening at once)"},
    {"shutdown_grace_s", SETTING_INT, "30", 0, 86400, NULL, FIELD(shutdown_grace_s), NULL, NULL,
     "seconds running execs may finish after SIGTERM before they are killed"},
    {"http_idle_timeout_s", SETTING_INT, "60", 1, 86400, NULL, FIELD(http_idle_timeout_s), NULL,
     NULL,
     "seconds a client may stay silent while sending a request, idle between requests, or "
     "not reading a response, before its connection is closed; a request's head must also "
     "arrive whole within this time of its first byte"},
    {"max_connections", SETTING_INT, "0", 0, 1000000, NULL, FIELD(max_connections), NULL, NULL,
     "client connections open at once; at the cap the broker accepts no more until one "
     "closes (new ones wait in the listen queue), so that PostgreSQL, SSH sessions and files "
     "still get descriptors (0: the open-files limit less a quarter of it, at least 64, kept "
     "for those)"},
    {"db_connections", SETTING_INT, "4", 1, 64, NULL, FIELD(db_connections), NULL, NULL,
     "PostgreSQL connections the server keeps for tokens and audit rows"},
    {"instance_name", SETTING_STRING, "", 0, 0, NULL, FIELD(instance_name), NULL, NULL,
     "this broker's name in audit rows (default: host name and listen address); a "
     "restarting broker marks the rows it left running as abandoned by this name"},
    {"broker_heartbeat_s", SETTING_INT, "10", 1, 300, NULL, FIELD(broker_heartbeat_s), NULL, NULL,
     "seconds between this broker's heartbeats in the database; a broker not heard from for "
     "three of them and 10 s more is gone, and any other marks the rows it left running "
     "abandoned once they are past their deadline"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))
_Static_assert(NSETTINGS <= CONFIG_MAX_SETTINGS, "raise CONFIG_MAX_SETTINGS");

/* Variables with the prefix that are not settings but are still ours. */
static const char *const env_not_settings[] = {ENV_PREFIX "CONFIG", ENV_PREFIX "TOKEN", NULL};

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const struct setting *setting_find(const char *name)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

static char **field_str(struct config *cfg, const struct setting *s)
{
	return (char **)((char *)cfg + s->offset);
}

static int *field_int(struct config *cfg, const struct setting *s)
{
	return (int *)((char *)cfg + s->offset);
}

int config_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon, *h = s;
	size_t n;
	char *end;
	long p;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return EB_ERR_INVAL;
		h = s + 1;
		n = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return EB_ERR_INVAL;
		n = (size_t)(colon - s);
		if (memchr(s, ':', n) != NULL) /* an IPv6 address needs brackets */
			return EB_ERR_INVAL;
	}
	if (n == 0 || n >= hostlen)
		return EB_ERR_INVAL;
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)h[i]) || h[i] == '[' || h[i] == ']' || h[i] == '/')
			return EB_ERR_INVAL;
	if (!isdigit((unsigned char)colon[1]))
		return EB_ERR_INVAL;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return EB_ERR_INVAL;
	if (p < 1 || p > 65535)
		return EB_ERR_RANGE;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (int)p;
	return 0;
}

static bool enum_has(const char *choices, const char *v)
{
	size_t n = strlen(v);
	const char *p = choices;

	if (n == 0)
		return false;
	while (p != NULL) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && strncmp(p, v, n) == 0)
			return true;
		p = bar ? bar + 1 : NULL;
	}
	return false;
}

/* Parses and stores one value; origin is taken over (freed on error). */
static int setting_set(struct config *cfg, const struct setting *s, const char *value, char *origin,
                       char *err, size_t errlen)
{
	size_t idx = (size_t)(s - settings);
	int rc = 0;

	if (origin == NULL)
		return EB_ERR_NOMEM;
	if (strlen(value) > 4096) {
		errf(err, errlen, "%s: %s: value longer than 4096 characters", origin, s->name);
		rc = EB_ERR_RANGE;
		goto out;
	}
	switch (s->type) {
	case SETTING_STRING:
	case SETTING_LISTEN:
	case SETTING_ENUM: {
		if (s->type == SETTING_LISTEN) {
			char host[256];
			int port;
			rc = config_parse_listen(value, host, sizeof(host), &port);
			if (rc != 0) {
				errf(err, errlen,
				     "%s: %s: \"%s\" is not host:port or [ipv6]:port with a port "
				     "from 1 to 65535",
				     origin, s->name, value);
				goto out;
			}
		}
		if (s->type == SETTING_ENUM && !enum_has(s->choices, value)) {
			errf(err, errlen, "%s: %s: \"%s\" is not one of %s", origin, s->name, value,
			     s->choices);
			rc = EB_ERR_INVAL;
			goto out;
		}
		char *copy = strdup(value);
		if (copy == NULL) {
			rc = EB_ERR_NOMEM;
			goto out;
		}
		char **f = field_str(cfg, s);
		free(*f);
		*f = copy;
		break;
	}
	case SETTING_INT: {
		char *end;
		long long v;
		errno = 0;
		v = strtoll(value, &end, 10);
		if (value[0] == '\0' || *end != '\0' || isspace((unsigned char)value[0]) ||
		    errno == ERANGE) {
			errf(err, errlen, "%s: %s: \"%s\" is not a whole number", origin, s->name,
			     value);
			rc = EB_ERR_INVAL;
			goto out;
		}
		if (v < s->min || v > s->max) {
			errf(err, errlen, "%s: %s: %lld is out of range (%lld to %lld)", origin,
			     s->name, v, s->min, s->max);
			rc = EB_ERR_RANGE;
			goto out;
		}
		*field_int(cfg, s) = (int)v;
		break;
	}
	default:
		abort();
	}
	free(cfg->origin[idx]);
	cfg->origin[idx] = origin;
	origin = NULL;
out:
	free(origin);
	return rc;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

/* State of one config file read: inih calls the reader once per line, which is how the
 * handler learns the line number (inih's handler is not given it). */
struct file_parse {
	struct config *cfg;
	FILE *fp;
	const char *path;
	int line;
	bool line_too_long;
	char *err;
	size_t errlen;
	int rc;
	bool seen[NSETTINGS];
	int seen_line[NSETTINGS];
};

static char *file_reader(char *buf, int size, void *stream)
{
	struct file_parse *fpz = stream;
	char *r = fgets(buf, size, fpz->fp);
	size_t n;

	if (r == NULL)
		return NULL;
	fpz->line++;
	n = strlen(buf);
	if (n == (size_t)size - 1 && buf[n - 1] != '\n' && !feof(fpz->fp) && fpz->rc == 0) {
		fpz->line_too_long = true;
		errf(fpz->err, fpz->errlen, "%s:%d: line longer than %d characters", fpz->path,
		     fpz->line, size - 2);
		fpz->rc = EB_ERR_RANGE;
		return NULL;
	}
	return r;
}

static int file_handler(void *user, const char *section, const char *name, const char *value)
{
	struct file_parse *fpz = user;
	const struct setting *s;

	if (fpz->rc != 0)
		return 0;
	if (section[0] != '\0') {
		errf(fpz->err, fpz->errlen,
		     "%s:%d: settings go at the top of the file, not in section [%s]", fpz->path,
		     fpz->line, section);
		fpz->rc = EB_ERR_INVAL;
		return 0;
	}
	s = setting_find(name);
	if (s == NULL) {
		errf(fpz->err, fpz->errlen,
		     "%s:%d: unknown setting \"%s\" (exec-broker --help lists the settings)",
		     fpz->path, fpz->line, name);
		fpz->rc = EB_ERR_INVAL;
		return 0;
	}
	size_t idx = (size_t)(s - settings);
	if (fpz->seen[idx]) {
		errf(fpz->err, fpz->errlen, "%s:%d: %s is set twice (first on line %d)", fpz->path,
		     fpz->line, name, fpz->seen_line[idx]);
		fpz->rc = EB_ERR_INVAL;
		return 0;
	}
	fpz->seen[idx] = true;
	fpz->seen_line[idx] = fpz->line;
	fpz->rc = setting_set(fpz->cfg, s, value, xasprintf("%s:%d", fpz->path, fpz->line),
	                      fpz->err, fpz->errlen);
	return fpz->rc == 0;
}

static int load_file(struct config *cfg, const char *path, bool must_exist, char *err,
                     size_t errlen)
{
	struct file_parse fpz = {.cfg = cfg, .path = path, .err = err, .errlen = errlen};
	int r;

	fpz.fp = fopen(path, "r");
	if (fpz.fp == NULL) {
		if (errno == ENOENT && !must_exist)
			return 0;
		errf(err, errlen, "%s: cannot read config file: %s", path, strerror(errno));
		return EB_ERR_IO;
	}
	cfg->path = strdup(path);
	r = ini_parse_stream(file_reader, &fpz, file_handler, &fpz);
	fclose(fpz.fp);
	if (cfg->path == NULL)
		return EB_ERR_NOMEM;
	if (fpz.rc != 0)
		return fpz.rc;
	if (r > 0) {
		errf(err, errlen, "%s:%d: syntax error: expected \"name = value\" or a comment",
		     path, r);
		return EB_ERR_INVAL;
	}
	if (r < 0)
		return EB_ERR_NOMEM;
	return 0;
}

static const char *env_lookup(char *const envp[], const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
		if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
			return envp[i] + n + 1;
	return NULL;
}

static int load_env(struct config *cfg, char *const envp[], char *err, size_t errlen)
{
	const size_t plen = strlen(ENV_PREFIX);

	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
		const char *var = envp[i], *eq = strchr(var, '=');
		char name[128];
		size_t n;
		bool ours = false;

		if (eq == NULL || strncmp(var, ENV_PREFIX, plen) != 0)
			continue;
		for (size_t k = 0; env_not_settings[k] != NULL; k++) {
			size_t kl = strlen(env_not_settings[k]);
			if ((size_t)(eq - var) == kl && strncmp(var, env_not_settings[k], kl) == 0)
				ours = true;
		}
		if (ours)
			continue;
		n = (size_t)(eq - var) - plen;
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		for (size_t k = 0; k < n; k++)
			name[k] = (char)tolower((unsigned char)var[plen + k]);
		name[n] = '\0';
		const struct setting *s = setting_find(name);
		if (s == NULL) {
			errf(err, errlen,
			     "environment %.*s: unknown setting \"%s\" (exec-broker --help lists "
			     "the settings)",
			     (int)(eq - var), var, name);
			return EB_ERR_INVAL;
		}
		int rc =
		    setting_set(cfg, s, eq + 1, xasprintf("environment %.*s", (int)(eq - var), var),
		                err, errlen);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int config_load(struct config *cfg, const struct config_flags *flags, char *const envp[], char *err,
                size_t errlen)
{
	static const struct config_flags no_flags;
	const char *path;
	bool must_exist = true;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if (flags == NULL)
		flags = &no_flags;
	for (size_t i = 0; i < NSETTINGS; i++) {
		rc =
		    setting_set(cfg, &settings[i], settings[i].def, strdup("default"), err, errlen);
		if (rc != 0)
			abort(); /* a default that does not parse is a bug in the table */
	}

	path = flags->config_path;
	if (path == NULL)
		path = env_lookup(envp, ENV_PREFIX "CONFIG");
	if (path == NULL) {
		path = CONFIG_DEFAULT_PATH;
		must_exist = false;
	}
	rc = load_file(cfg, path, must_exist, err, errlen);
	if (rc != 0)
		goto out;
	rc = load_env(cfg, envp, err, errlen);
	if (rc != 0)
		goto out;

	const struct {
		const char *name, *value;
	} from_flags[] = {{"database_url", flags->database_url}, {"listen", flags->listen}};
	for (size_t i = 0; i < sizeof(from_flags) / sizeof(from_flags[0]); i++) {
		const struct setting *s = setting_find(from_flags[i].name);
		if (from_flags[i].value == NULL)
			continue;
		rc = setting_set(cfg, s, from_flags[i].value, xasprintf("flag %s", s->flag), err,
		                 errlen);
		if (rc != 0)
			goto out;
	}
	/* Under systemd the key arrives as a credential (LoadCredential=ssh_key:...): used
	 * when nothing else set ssh_key. */
	path = env_lookup(envp, "CREDENTIALS_DIRECTORY");
	if (cfg->ssh_key[0] == '\0' && path != NULL && path[0] != '\0') {
		char *key = xasprintf("%s/" CONFIG_CREDENTIAL_SSH_KEY, path);

		rc = setting_set(cfg, setting_find("ssh_key"), key,
		                 strdup("credential " CONFIG_CREDENTIAL_SSH_KEY), err, errlen);
		free(key);
		if (rc != 0)
			goto out;
	}
out:
	if (rc != 0)
		config_free(cfg);
	return rc;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < NSETTINGS; i++) {
		if (settings[i].type != SETTING_INT) {
			char **f = field_str(cfg, &settings[i]);
			free(*f);
			*f = NULL;
		}
		free(cfg->origin[i]);
		cfg->origin[i] = NULL;
	}
	free(cfg->path);
	cfg->path = NULL;
}

void config_print(const struct config *cfg, FILE *out)
{
	struct config *c = (struct config *)cfg; /* the accessors only read through it here */

	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		if (s->type == SETTING_INT) {
			fprintf(out, "%s = %d", s->name, *field_int(c, s));
		} else {
			const char *v = *field_str(c, s);
			char *shown = s->redact && v[0] ? s->redact(v) : NULL;
			fprintf(out, "%s = %s", s->name, shown ? shown : v);
			free(shown);
		}
		fprintf(out, "  # %s\n", cfg->origin[i] ? cfg->origin[i] : "default");
	}
}

void config_print_help(FILE *out)
{
	char env[128];

	fprintf(out, "Settings (config file key; environment variable; default):\n");
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *s = &settings[i];
		size_t k = 0;
		for (const char *p = ENV_PREFIX; *p && k < sizeof(env) - 1; p++)
			env[k++] = *p;
		for (const char *p = s->name; *p && k < sizeof(env) - 1; p++)
			env[k++] = (char)toupper((unsigned char)*p);
		env[k] = '\0';
		fprintf(out, "  %-16s %s%s%s; default \"%s\"\n      %s\n", s->name, env,
		        s->flag ? ", " : "", s->flag ? s->flag : "", s->def, s->help);
	}
}
