/* tests/kit/file.c: whole files, logs, pid files and scratch paths (see file.h). */
#include "tests/kit/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *kit_file_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *p = NULL, chunk[65536];
	size_t n, have = 0;

	if (f == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		char *np = realloc(p, have + n + 1);
		if (np == NULL) {
			free(p);
			fclose(f);
			return NULL;
		}
		p = np;
		memcpy(p + have, chunk, n);
		have += n;
	}
	fclose(f);
	if (p == NULL)
		p = calloc(1, 1);
	else
		p[have] = '\0';
	if (len != NULL)
		*len = have;
	return p;
}

ssize_t kit_file_read_into(const char *path, char *buf, size_t len)
{
	ssize_t n, got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)got < len - 1) {
		n = read(fd, buf + got, len - 1 - (size_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	buf[got] = '\0';
	return got;
}

int kit_file_write(const char *path, const char *data, mode_t mode)
{
	size_t len = strlen(data), off = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ssize_t n;

	if (fd < 0) {
		fprintf(stderr, "kit: could not create %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (off < len) {
		n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "kit: could not write %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	/* The umask may have taken bits the other accounts (postgres, ebtest) need. */
	if (fchmod(fd, mode) != 0 || close(fd) != 0) {
		fprintf(stderr, "kit: could not write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

bool kit_file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

bool kit_file_contains(const char *path, off_t from, const char *needle)
{
	size_t len = 0;
	char *s = kit_file_read(path, &len);
	bool found = s != NULL && (size_t)from <= len && strstr(s + from, needle) != NULL;

	free(s);
	return found;
}

void kit_file_print_tail(const char *path, size_t max)
{
	size_t len = 0;
	char *s = kit_file_read(path, &len);
	const char *t;

	if (s == NULL || len == 0) {
		free(s);
		return;
	}
	t = len > max ? s + len - max : s;
	fprintf(stderr, "---- end of %s ----\n%s%s----\n", path, t, s[len - 1] == '\n' ? "" : "\n");
	free(s);
}

pid_t kit_file_pid(const char *path)
{
	char buf[64];
	long v;

	if (kit_file_read_into(path, buf, sizeof(buf)) <= 0)
		return 0;
	v = strtol(buf, NULL, 10);
	return v > 1 && v <= INT_MAX ? (pid_t)v : 0;
}

char *kit_tmp_path(const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "/tmp/eb-serve-%d-%s", (int)getpid(), name) < 0)
		abort();
	unlink(p);
	return p;
}
