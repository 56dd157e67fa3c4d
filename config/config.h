/* config/config.h: exec-broker's settings. One declarative table (config.c) drives the INI
 * config file, the EXEC_BROKER_* environment, the command-line flags, `exec-broker config`
 * and the settings part of --help. Precedence: flag > environment > file > default. */
#ifndef EB_CONFIG_CONFIG_H
#define EB_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH "/etc/exec-broker/exec-broker.conf"
#define CONFIG_MAX_SETTINGS 64

/* Field names are the setting names. Strings are owned by the struct (config_free). */
struct config {
	char *database_url;
	char *listen;
	char *ssh_key;
	char *tls_cert_file;
	char *tls_key_file;
	char *log_level;
	int pool_max_channels_per_session;
	int pool_max_sessions_per_host;
	int pool_max_sessions_total;
	int pool_idle_ttl_s;
	int pool_keepalive_s;
	int pool_connect_timeout_s;
	int pool_channel_buffer_bytes;
	int pool_kill_grace_s;
	int exec_timeout_default_s;
	int exec_timeout_max_s;
	int exec_detached_timeout_default_s;
	int exec_detached_timeout_max_s;
	int exec_detached_output_cap_bytes;
	int exec_retain_s;
	int workspace_max_detached_execs;
	int min_exec_tier;
	int org_max_concurrent_execs;
	int max_body_bytes;
	int output_cap_bytes;
	int shutdown_delay_s;
	int shutdown_grace_s;
	int http_idle_timeout_s;
	int max_connections;
	int db_connections;
	char *instance_name;
	int broker_heartbeat_s;
	/* Where each setting's value came from ("default", "FILE:LINE", "environment NAME",
	 * "flag --NAME"), indexed like the table; owned. */
	char *origin[CONFIG_MAX_SETTINGS];
	char *path; /* the config file read, or NULL; owned */
};

/* The few settings that make sense on the command line; NULL when not given. */
struct config_flags {
	const char *config_path;
	const char *database_url;
	const char *listen;
};

/* The name of the systemd credential that holds the SSH key. */
#define CONFIG_CREDENTIAL_SSH_KEY "ssh_key"

/* Fills *cfg from defaults, then the config file (flags->config_path, else
 * $EXEC_BROKER_CONFIG, else CONFIG_DEFAULT_PATH if it exists), then the EXEC_BROKER_*
 * variables of envp, then flags; last, an empty ssh_key becomes
 * $CREDENTIALS_DIRECTORY/ssh_key when systemd passed credentials. Returns 0, or a negative EB_ERR_*
 * with one line in err naming the setting and where the bad value came from; *cfg is then left
 * empty. */
int config_load(struct config *cfg, const struct config_flags *flags, char *const envp[], char *err,
                size_t errlen);
void config_free(struct config *cfg);

/* Prints "name = value  # origin" for every setting, secrets redacted. */
void config_print(const struct config *cfg, FILE *out);
/* Prints the settings table (name, default, environment variable, help) for --help. */
void config_print_help(FILE *out);

/* "host:port", "[v6addr]:port". On success fills host (without brackets) and port. */
int config_parse_listen(const char *s, char *host, size_t hostlen, int *port);

#endif
