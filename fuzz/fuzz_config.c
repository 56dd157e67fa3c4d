/* fuzz/fuzz_config.c: the config file and the EXEC_BROKER_* environment (config/config.c).
 * A refusal says where the bad value came from (the file and line, or the variable); an
 * accepted configuration, printed by `exec-broker config` and given back as the environment,
 * is accepted again as the same configuration.
 * Input: the file, then a line "%%", then one variable NAME=value a line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz/fuzz.h"

#define MAX_ENV 64

static char *print(const struct config *cfg)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	FUZZ_CHECK(f != NULL, "open_memstream");
	config_print(cfg, f);
	fclose(f);
	return s;
}

/* The printed settings as EXEC_BROKER_* variables; database_url is printed redacted, so it
 * is given as it was set. "name = value  # origin", the origin last. */
static size_t printed_env(char *text, const struct config *cfg, char **env, size_t max)
{
	size_t n = 0;

	for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL && n < max; line = nl + 1) {
		char *eq = strstr(line, " = "), *hash, *v;

		*nl = '\0';
		FUZZ_CHECK(eq != NULL, "printed line \"%s\"", line);
		for (hash = NULL, v = eq; (v = strstr(v, "  # ")) != NULL; v++)
			hash = v;
		FUZZ_CHECK(hash != NULL, "printed line without its origin");
		*eq = *hash = '\0';
		v = eq + 3;
		if (strcmp(line, "database_url") == 0)
			v = cfg->database_url;
		char *e = NULL;
		FUZZ_CHECK(asprintf(&e, "EXEC_BROKER_%s=%s", line, v) > 0, "out of memory");
		for (char *p = e + 12; *p != '='; p++)
			*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		env[n++] = e;
	}
	env[n] = NULL;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct config cfg, again;
	struct config_flags flags = {0};
	char *copy, *sep, *env[MAX_ENV + 1], *penv[CONFIG_MAX_SETTINGS + 1], err[512] = "";
	size_t nenv = 0, file_len;
	int rc;

	if (fd < 0) {
		fd = memfd_create("exec-broker.conf", 0);
		FUZZ_CHECK(fd >= 0, "memfd_create");
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	copy = malloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = '\0';
	sep = memmem(copy, size, "\n%%\n", 4);
	file_len = sep != NULL ? (size_t)(sep - copy) + 1 : size;
	if (sep != NULL) {
		for (char *p = sep + 4, *nl; *p != '\0' && nenv < MAX_ENV; p = nl + 1) {
			nl = strchr(p, '\n');
			if (nl != NULL)
				*nl = '\0';
			env[nenv++] = p;
			if (nl == NULL)
				break;
		}
	}
	env[nenv] = NULL;
	FUZZ_CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, copy, file_len, 0) == (ssize_t)file_len,
	           "writing the file");
	/* The file always by flag: EXEC_BROKER_CONFIG in the input must not open another. */
	flags.config_path = path;
	rc = config_load(&cfg, &flags, env, err, sizeof(err));
	if (rc != 0) {
		FUZZ_CHECK(err[0] != '\0', "refused (%d) without a message", rc);
		FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0 ||
		               strncmp(err, "environment ", 12) == 0 ||
		               strncmp(err, "credential ", 11) == 0,
		           "the refusal does not say where: %s", err);
		FUZZ_CHECK(cfg.database_url == NULL && cfg.path == NULL, "a refusal left memory");
		free(copy);
		return 0;
	}
	char *text = print(&cfg), *text2;
	size_t np = printed_env(text, &cfg, penv, CONFIG_MAX_SETTINGS);
	FUZZ_CHECK(np > 0, "nothing printed");
	FUZZ_CHECK(ftruncate(fd, 0) == 0, "truncating the file");
	rc = config_load(&again, &flags, penv, err, sizeof(err));
	FUZZ_CHECK(rc == 0, "the printed configuration is refused: %s", err);
	FUZZ_CHECK(strcmp(again.database_url, cfg.database_url) == 0, "database_url changed");
	text2 = print(&again);
	free(text);
	text = print(&cfg);
	/* The same settings; only the origins differ. */
	for (char *a = text, *b = text2, *na, *nb; *a != '\0' && *b != '\0';
	     a = na + 1, b = nb + 1) {
		na = strchr(a, '\n');
		nb = strchr(b, '\n');
		char *ha = NULL, *hb = NULL;
		for (char *v = a; (v = strstr(v, "  # ")) != NULL && v < na; v++)
			ha = v;
		for (char *v = b; (v = strstr(v, "  # ")) != NULL && v < nb; v++)
			hb = v;
		FUZZ_CHECK(ha - a == hb - b && memcmp(a, b, (size_t)(ha - a)) == 0,
		           "read back, \"%.*s\" is \"%.*s\"", (int)(ha - a), a, (int)(hb - b), b);
	}
	for (size_t i = 0; i < np; i++)
		free(penv[i]);
	free(text);
	free(text2);
	config_free(&again);
	config_free(&cfg);
	free(copy);
	return 0;
}
