/* tests/srvutil.c: the world, broker processes, curl and NDJSON parsing for the serve
 * suites (see srvutil.h). The su_* part never uses Check (main() calls it before any test
 * runs); the sv_* part at the end is for tests. */
#include "tests/srvutil.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/tutil.h"

extern char **environ;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("srvutil: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

long long su_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void su_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int su_cli(const char *db, const char *const args[], char **out)
{
	const char *argv[32];
	char dburl[600];
	const char *env[] = {"EXEC_BROKER_CONFIG=/dev/null", dburl, NULL};
	char *o = NULL, *e = NULL;
	int n = 0, st = 0, rc = -1;

	if (out != NULL)
		*out = NULL;
	argv[n++] = tu_bin();
	for (int i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(dburl, sizeof(dburl), "EXEC_BROKER_DATABASE_URL=%s", db);
	if (kit_run(argv, env, NULL, &o, &e, &st) != 0)
		goto out;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		say("exec-broker %s %s failed (status %d): %s", args[0], args[1] ? args[1] : "", st,
		    e);
		goto out;
	}
	rc = 0;
	if (out != NULL) {
		*out = o; /* transferred */
		o = NULL;
	}
out:
	free(o);
	free(e);
	return rc;
}

/* The first value of the first row of sql, malloc'd, or NULL on error. */
static char *sql_value(const char *conninfo, const char *sql)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *res = NULL;
	char *v = NULL;

	if (PQstatus(c) != CONNECTION_OK) {
		say("connect %s: %s", conninfo, PQerrorMessage(c));
		goto out;
	}
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
		say("%s: %s", sql, PQresultErrorMessage(res));
		goto out;
	}
	v = strdup(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 &&
	                   !PQgetisnull(res, 0, 0)
	               ? PQgetvalue(res, 0, 0)
	               : "");
out:
	PQclear(res);
	PQfinish(c);
	return v;
}

int su_sql(const char *conninfo, const char *sql)
{
	char *v = sql_value(conninfo, sql);

	free(v);
	return v != NULL ? 0 : -1;
}

static int add_ws(const struct su_world *w, const char *id, const char *org, int port,
                  const char *user, const char *tier, const char *fp, const char *state)
{
	char p[16];
	const char *args[] = {"workspace", "add",        id, "--org",   org,   "--host",
	                      "127.0.0.1", "--port",     p,  "--user",  user,  "--tier",
	                      tier,        "--host-key", fp, "--state", state, NULL};

	snprintf(p, sizeof(p), "%d", port);
	return su_cli(w->db, args, NULL);
}

static int make_token(const struct su_world *w, const char *const args[], char *tok, size_t len)
{
	char *out = NULL;
	int rc = su_cli(w->db, args, &out);

	if (rc == 0) {
		out[strcspn(out, "\n")] = '\0';
		if (strncmp(out, "ebk_", 4) != 0 || strlen(out) >= len) {
			say("token create printed \"%s\"", out);
			rc = -1;
		} else {
			snprintf(tok, len, "%s", out);
		}
	}
	free(out);
	return rc;
}

int su_world_setup(struct su_world *w)
{
	static const char *const migrate[] = {"migrate", NULL};
	static const char *const t_ws[] = {"token", "create", "--workspace", "ws-a1", NULL};
	static const char *const t_org[] = {"token", "create", "--org", "acme", NULL};
	static const char *const t_other[] = {"token", "create", "--org", "globex", NULL};
	static const char *const t_admin[] = {"token",  "create", "--admin",
	                                      "--name", "oncall", NULL};
	static const char *const t_exp[] = {"token",        "create", "--workspace", "ws-a1",
	                                    "--expires-in", "1s",     NULL};
	static const char *const t_rev[] = {"token", "create", "--org", "acme", NULL};
	const char *revoke[] = {"token", "revoke", NULL, NULL};
	const char *fp = th.sshd.host_key_fp, *u = th.user;
	int p = th.sshd.port;
	char prefix[13];
	long long end;
	char *v;

	memset(w, 0, sizeof(*w));
	if (th_db_create(w->db, sizeof(w->db)) != 0 || su_cli(w->db, migrate, NULL) != 0)
		return -1;
	for (int i = 0; i < 3; i++)
		if (th_sshd_start(&w->conc[i], NULL) != 0)
			return -1;
	if (th_sshd_start(&w->cut, NULL) != 0)
		return -1;
	w->closed_port = su_free_port();
	if (w->closed_port <= 0 || add_ws(w, "ws-a1", "acme", p, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-a2", "acme", p, u, "4", fp, "running") != 0 ||
	    add_ws(w, "ws-low", "acme", p, u, "2", fp, "running") != 0 ||
	    add_ws(w, "ws-stopped", "acme", p, u, "3", fp, "stopped") != 0 ||
	    add_ws(w, "ws-b1", "globex", p, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-badkey", "acme", p, u, "3", SU_WRONG_FP, "running") != 0 ||
	    add_ws(w, "ws-closed", "acme", w->closed_port, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-badauth", "acme", p, "nobody", "3", fp, "running") != 0 ||
	    add_ws(w, "ws-c0", "acme", p, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-c1", "acme", w->conc[0].port, u, "3", w->conc[0].host_key_fp,
	           "running") != 0 ||
	    add_ws(w, "ws-c2", "globex", w->conc[1].port, u, "3", w->conc[1].host_key_fp,
	           "running") != 0 ||
	    add_ws(w, "ws-c3", "globex", w->conc[2].port, u, "3", w->conc[2].host_key_fp,
	           "running") != 0 ||
	    add_ws(w, "ws-cut", "acme", w->cut.port, u, "3", w->cut.host_key_fp, "running") != 0)
		return -1;
	if (make_token(w, t_ws, w->tok_ws, sizeof(w->tok_ws)) != 0 ||
	    make_token(w, t_org, w->tok_org, sizeof(w->tok_org)) != 0 ||
	    make_token(w, t_other, w->tok_other, sizeof(w->tok_other)) != 0 ||
	    make_token(w, t_admin, w->tok_admin, sizeof(w->tok_admin)) != 0 ||
	    make_token(w, t_exp, w->tok_expired, sizeof(w->tok_expired)) != 0 ||
	    make_token(w, t_rev, w->tok_revoked, sizeof(w->tok_revoked)) != 0)
		return -1;
	snprintf(prefix, sizeof(prefix), "%.12s", w->tok_revoked);
	revoke[2] = prefix;
	if (su_cli(w->db, revoke, NULL) != 0)
		return -1;
	/* The expired token was made with the shortest life the CLI allows; wait until the
	 * database itself says it is over. */
	end = su_now_ms() + SU_WAIT_MS;
	for (;;) {
		v = sql_value(w->db, "SELECT count(*) FROM api_tokens "
		                     "WHERE expires_at IS NOT NULL AND expires_at < now()");
		if (v == NULL)
			return -1;
		if (strcmp(v, "1") == 0)
			break;
		free(v);
		if (su_now_ms() > end) {
			say("the 1s token did not expire");
			return -1;
		}
		su_sleep_ms(100);
	}
	free(v);
	return 0;
}

char *su_file_read(const char *path, size_t *len)
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

static bool file_has_from(const char *path, off_t from, const char *needle)
{
	size_t len = 0;
	char *s = su_file_read(path, &len);
	bool found = s != NULL && (size_t)from <= len && strstr(s + from, needle) != NULL;

	free(s);
	return found;
}

int su_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void print_tail(const char *path)
{
	size_t len = 0;
	char *s = su_file_read(path, &len);

	if (s != NULL)
		fprintf(stderr, "--- %s (last 3000 bytes)\n%s\n---\n", path,
		        len > 3000 ? s + len - 3000 : s);
	free(s);
}

int su_broker_start(struct su_broker *b, const char *db, const char *instance,
                    const char *extra_conf)
{
	const char *argv[] = {tu_bin(), "--config", b->conf, "serve", NULL};
	struct stat sb;
	long long end;
	pid_t parent = getpid(), pid;
	off_t from = 0;
	FILE *f;
	int st;

	if (b->port == 0)
		b->port = su_free_port();
	snprintf(b->instance, sizeof(b->instance), "%s", instance);
	snprintf(b->conf, sizeof(b->conf), "%s/broker-%s.conf", th.basedir, instance);
	snprintf(b->log, sizeof(b->log), "%s/broker-%s.log", th.basedir, instance);
	f = fopen(b->conf, "we");
	if (f == NULL) {
		say("%s: %s", b->conf, strerror(errno));
		return -1;
	}
	fprintf(f,
	        "database_url = %s\nlisten = 127.0.0.1:%d\nssh_key = %s\ninstance_name = %s\n"
	        "%s",
	        db, b->port, th.client_key, instance, extra_conf ? extra_conf : "");
	if (fclose(f) != 0)
		return -1;
	if (stat(b->log, &sb) == 0)
		from = sb.st_size;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		sigset_t none;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent || fd < 0 || in < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0 ||
		    dup2(fd, 2) < 0)
			_exit(127);
		/* Only the config file speaks: no EXEC_BROKER_* of the caller's environment. */
		for (char **e = environ; *e != NULL;) {
			if (strncmp(*e, "EXEC_BROKER_", 12) == 0) {
				char name[128];
				snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
				unsetenv(name);
			} else {
				e++;
			}
		}
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	b->pid = pid;
	b->status = 0;
	end = su_now_ms() + SU_WAIT_MS;
	while (!file_has_from(b->log, from, "msg=listening")) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			say("broker %s exited while starting (status %d)", instance, st);
			print_tail(b->log);
			b->pid = 0;
			b->status = st;
			return -1;
		}
		if (su_now_ms() > end) {
			say("broker %s did not log msg=listening within %d ms", instance,
			    SU_WAIT_MS);
			print_tail(b->log);
			su_broker_kill(b);
			return -1;
		}
		su_sleep_ms(20);
	}
	return 0;
}

int su_broker_wait(struct su_broker *b, int ms)
{
	long long end = su_now_ms() + ms;
	int st;

	if (b->pid == 0)
		return 0;
	for (;;) {
		pid_t r = waitpid(b->pid, &st, WNOHANG);
		if (r == b->pid) {
			b->status = st;
			b->pid = 0;
			return 0;
		}
		if (r < 0 && errno != EINTR) {
			b->pid = 0;
			return -1;
		}
		if (su_now_ms() > end)
			return -1;
		su_sleep_ms(20);
	}
}

int su_broker_stop(struct su_broker *b)
{
	if (b->pid == 0)
		return -1;
	kill(b->pid, SIGTERM);
	if (su_broker_wait(b, SU_WAIT_MS) != 0) {
		say("broker %s still runs %d ms after SIGTERM", b->instance, SU_WAIT_MS);
		print_tail(b->log);
		su_broker_kill(b);
		return -1;
	}
	if (!WIFEXITED(b->status) || WEXITSTATUS(b->status) != 0) {
		say("broker %s ended with status %d after SIGTERM", b->instance, b->status);
		print_tail(b->log);
		return -1;
	}
	return 0;
}

void su_broker_kill(struct su_broker *b)
{
	if (b->pid == 0)
		return;
	kill(b->pid, SIGKILL);
	su_broker_wait(b, SU_WAIT_MS);
}

/* --- HTTP through curl --------------------------------------------------------------- */

static unsigned req_counter;

int su_stream_open(struct su_stream *s, int port, const struct su_req *q)
{
	const char *argv[64];
	char url[512], maxt[16], hdr[10][600];
	char databin[100];
	int n = 0, h = 0, pfd[2];
	pid_t parent = getpid(), pid;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (q->rid == NULL)
		snprintf(s->r.rid, sizeof(s->r.rid), "t%d-%u", (int)getpid(), ++req_counter);
	else
		snprintf(s->r.rid, sizeof(s->r.rid), "%s", q->rid);
	if (q->ws != NULL)
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/workspaces/%s/exec", port,
		         q->ws);
	else
		snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, q->path);
	snprintf(maxt, sizeof(maxt), "%d", q->max_time_s > 0 ? q->max_time_s : 90);
	argv[n++] = "curl";
	argv[n++] = "-sS";
	argv[n++] = "-N";
	argv[n++] = "-i";
	argv[n++] = "--noproxy";
	argv[n++] = "*";
	argv[n++] = "--max-time";
	argv[n++] = maxt;
	argv[n++] = "-X";
	argv[n++] = q->method ? q->method : "POST";
	argv[n++] = "-H";
	argv[n++] = "Expect:";
	if (q->auth != NULL || q->token != NULL) {
		if (q->auth != NULL)
			snprintf(hdr[h], sizeof(hdr[h]), "Authorization: %s", q->auth);
		else
			snprintf(hdr[h], sizeof(hdr[h]), "Authorization: Bearer %s", q->token);
		argv[n++] = "-H";
		argv[n++] = hdr[h++];
	}
	if (q->ctype != NULL || q->body != NULL) {
		snprintf(hdr[h], sizeof(hdr[h]), "Content-Type:%s%s",
		         q->ctype && !*q->ctype ? "" : " ",
		         q->ctype ? q->ctype : "application/json");
		argv[n++] = "-H";
		argv[n++] = hdr[h++];
	}
	if (q->accept != NULL) {
		snprintf(hdr[h], sizeof(hdr[h]), "Accept: %s", q->accept);
		argv[n++] = "-H";
		argv[n++] = hdr[h++];
	}
	if (q->reason != NULL) {
		snprintf(hdr[h], sizeof(hdr[h]), "X-Break-Glass-Reason: %s", q->reason);
		argv[n++] = "-H";
		argv[n++] = hdr[h++];
	}
	if (s->r.rid[0] != '\0') {
		snprintf(hdr[h], sizeof(hdr[h]), "X-Request-Id: %s", s->r.rid);
		argv[n++] = "-H";
		argv[n++] = hdr[h++];
	}
	for (int i = 0; i < 6 && q->headers[i] != NULL; i++) {
		argv[n++] = "-H";
		argv[n++] = q->headers[i];
	}
	if (q->body != NULL) {
		size_t len = q->body_len ? q->body_len : strlen(q->body), off = 0;
		int fd;

		snprintf(s->bodyfile, sizeof(s->bodyfile), "%s/body-%d-%u", th.basedir,
		         (int)getpid(), ++req_counter);
		fd = open(s->bodyfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			say("%s: %s", s->bodyfile, strerror(errno));
			return -1;
		}
		while (off < len) {
			ssize_t w = write(fd, q->body + off, len - off);
			if (w <= 0) {
				close(fd);
				return -1;
			}
			off += (size_t)w;
		}
		close(fd);
		snprintf(databin, sizeof(databin), "@%s", s->bodyfile);
		argv[n++] = "--data-binary";
		argv[n++] = databin;
	}
	argv[n++] = url;
	argv[n] = NULL;
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent || nul < 0 || dup2(nul, 0) < 0 || dup2(pfd[1], 1) < 0 ||
		    dup2(nul, 2) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execvp("curl", (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	s->pid = pid;
	s->fd = pfd[0];
	return 0;
}

/* Reads what is there within ms into s->buf: 1 got bytes, 0 timeout, -1 EOF. */
static int stream_fill(struct su_stream *s, int ms)
{
	struct pollfd pf = {.fd = s->fd, .events = POLLIN};
	ssize_t r;
	int pr;

	if (s->eof)
		return -1;
	pr = poll(&pf, 1, ms < 0 ? 0 : ms);
	if (pr < 0 && errno == EINTR)
		return 0;
	if (pr <= 0)
		return 0;
	if (s->cap - s->len < 65537) {
		size_t ncap = s->cap ? s->cap * 2 : 131072;
		char *np;
		while (ncap - s->len < 65537)
			ncap *= 2;
		np = realloc(s->buf, ncap);
		if (np == NULL)
			return -1;
		s->buf = np;
		s->cap = ncap;
	}
	r = read(s->fd, s->buf + s->len, s->cap - s->len - 1);
	if (r < 0 && errno == EINTR)
		return 0;
	if (r <= 0) {
		s->eof = true;
		close(s->fd);
		s->fd = -1;
		return -1;
	}
	s->len += (size_t)r;
	s->buf[s->len] = '\0';
	return 1;
}

/* Takes the head off s->buf once it is complete (skipping 1xx heads). */
static void stream_parse_head(struct su_stream *s)
{
	while (!s->head_done) {
		char *end = s->len ? strstr(s->buf, "\r\n\r\n") : NULL;
		size_t hl;
		int st = 0;

		if (end == NULL)
			return;
		hl = (size_t)(end - s->buf) + 4;
		if (sscanf(s->buf, "HTTP/%*s %d", &st) != 1)
			st = -1;
		if (st >= 100 && st < 200) {
			memmove(s->buf, s->buf + hl, s->len - hl + 1);
			s->len -= hl;
			continue;
		}
		s->r.status = st;
		s->r.head = strndup(s->buf, hl);
		memmove(s->buf, s->buf + hl, s->len - hl + 1);
		s->len -= hl;
		s->head_done = true;
	}
}

int su_stream_head(struct su_stream *s, int ms)
{
	long long end = su_now_ms() + ms;

	for (;;) {
		stream_parse_head(s);
		if (s->head_done)
			return 0;
		if (s->eof || su_now_ms() > end)
			return -1;
		stream_fill(s, (int)(end - su_now_ms()));
	}
}

char *su_stream_line(struct su_stream *s, int ms)
{
	long long end = su_now_ms() + ms;

	if (su_stream_head(s, ms) != 0)
		return NULL;
	for (;;) {
		char *nl = s->consumed < s->len
		               ? memchr(s->buf + s->consumed, '\n', s->len - s->consumed)
		               : NULL;
		if (nl != NULL) {
			size_t start = s->consumed;
			s->consumed = (size_t)(nl - s->buf) + 1;
			return strndup(s->buf + start, (size_t)(nl - s->buf) - start);
		}
		if (s->eof) {
			if (s->consumed < s->len) {
				size_t start = s->consumed;
				s->consumed = s->len;
				return strndup(s->buf + start, s->len - start);
			}
			return NULL;
		}
		if (su_now_ms() > end)
			return NULL;
		stream_fill(s, (int)(end - su_now_ms()));
	}
}

static void stream_reap(struct su_stream *s, int sig)
{
	int st = 0;

	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	if (s->pid > 0) {
		if (sig != 0)
			kill(s->pid, sig);
		while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
			;
		s->r.curl_status = st;
		s->pid = 0;
	}
	if (s->bodyfile[0] != '\0') {
		unlink(s->bodyfile);
		s->bodyfile[0] = '\0';
	}
}

int su_stream_finish(struct su_stream *s, struct su_resp *r)
{
	long long end = su_now_ms() + 120000;

	while (!s->eof && su_now_ms() < end)
		stream_fill(s, 1000);
	if (!s->eof) {
		say("curl did not finish in 120 s");
		stream_reap(s, SIGKILL);
	} else {
		stream_reap(s, 0);
	}
	stream_parse_head(s);
	*r = s->r;
	if (r->head == NULL)
		r->head = strdup("");
	r->body = s->buf ? s->buf : calloc(1, 1);
	r->body_len = s->len;
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	return 0;
}

void su_stream_abort(struct su_stream *s)
{
	stream_reap(s, SIGKILL);
	free(s->buf);
	free(s->r.head);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

int su_http(int port, const struct su_req *q, struct su_resp *r)
{
	struct su_stream s;

	memset(r, 0, sizeof(*r));
	if (su_stream_open(&s, port, q) != 0)
		return -1;
	return su_stream_finish(&s, r);
}

/* Writes a curl config file line: name = "value" with value quoted as curl reads it. */
static void conf_line(FILE *f, const char *name, const char *value)
{
	fprintf(f, "%s = \"", name);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		fputc(*p, f);
	}
	fputs("\"\n", f);
}

int su_http_parallel(int port, const struct su_req *q, size_t n, struct su_resp *r)
{
	char conf[160], path[200], url[512], hdr[600];
	const char *argv[] = {"curl", "-sS", "-K", conf, NULL};
	char *out = NULL, *err = NULL;
	int st = 0, rc = -1;
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/parallel-%d-%u.conf", th.basedir, (int)getpid(),
	         ++req_counter);
	f = fopen(conf, "we");
	if (f == NULL)
		return -1;
	fprintf(f, "parallel\nparallel-max = %zu\nparallel-immediate\nsilent\nshow-error\n",
	        n > 300 ? 300 : n);
	for (size_t i = 0; i < n; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		if (q[i].rid == NULL)
			snprintf(r[i].rid, sizeof(r[i].rid), "t%d-%u", (int)getpid(),
			         ++req_counter);
		else
			snprintf(r[i].rid, sizeof(r[i].rid), "%s", q[i].rid);
		if (i > 0)
			fputs("next\n", f);
		if (q[i].ws != NULL)
			snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/workspaces/%s/exec",
			         port, q[i].ws);
		else
			snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, q[i].path);
		conf_line(f, "url", url);
		conf_line(f, "request", q[i].method ? q[i].method : "POST");
		conf_line(f, "noproxy", "*");
		fprintf(f, "include\nmax-time = %d\n", q[i].max_time_s > 0 ? q[i].max_time_s : 120);
		conf_line(f, "header", "Expect:");
		if (q[i].token != NULL) {
			snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", q[i].token);
			conf_line(f, "header", hdr);
		}
		if (q[i].body != NULL) {
			snprintf(path, sizeof(path), "%s.%zu.body", conf, i);
			FILE *b = fopen(path, "we");
			if (b == NULL ||
			    fwrite(q[i].body, 1, strlen(q[i].body), b) != strlen(q[i].body) ||
			    fclose(b) != 0)
				goto out;
			snprintf(hdr, sizeof(hdr), "@%s", path);
			conf_line(f, "data-binary", hdr);
			conf_line(f, "header", "Content-Type: application/json");
		}
		if (q[i].accept != NULL) {
			snprintf(hdr, sizeof(hdr), "Accept: %s", q[i].accept);
			conf_line(f, "header", hdr);
		}
		if (r[i].rid[0] != '\0') {
			snprintf(hdr, sizeof(hdr), "X-Request-Id: %s", r[i].rid);
			conf_line(f, "header", hdr);
		}
		snprintf(path, sizeof(path), "%s.%zu.out", conf, i);
		conf_line(f, "output", path);
	}
	if (fclose(f) != 0)
		return -1;
	f = NULL;
	if (kit_run(argv, NULL, NULL, &out, &err, &st) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct su_stream s;
		memset(&s, 0, sizeof(s));
		s.fd = -1;
		snprintf(path, sizeof(path), "%s.%zu.out", conf, i);
		s.buf = su_file_read(path, &s.len);
		if (s.buf == NULL) {
			s.buf = calloc(1, 1);
			s.len = 0;
		}
		s.eof = true;
		s.r = r[i];
		s.r.curl_status = st;
		stream_parse_head(&s);
		su_stream_finish(&s, &r[i]);
		unlink(path);
		snprintf(path, sizeof(path), "%s.%zu.body", conf, i);
		unlink(path);
	}
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	if (err != NULL && *err != '\0' && st != 0)
		say("curl --parallel (status %d): %s", st, err);
	free(out);
	free(err);
	unlink(conf);
	return rc;
}

int su_raw_open(int port, int rcvbuf, const struct su_req *q, char rid[80])
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	size_t blen = q->body ? (q->body_len ? q->body_len : strlen(q->body)) : 0, off = 0;
	char *req = NULL;
	int fd, n;

	if (q->rid == NULL)
		snprintf(rid, 80, "t%d-%u", (int)getpid(), ++req_counter);
	else
		snprintf(rid, 80, "%s", q->rid);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Before connect, so that the window the server sees is small from the start. */
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		say("connect 127.0.0.1:%d: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	size_t reqlen = 0;
	FILE *m = open_memstream(&req, &reqlen);
	if (m == NULL) {
		close(fd);
		return -1;
	}
	fprintf(m, "%s /v1/workspaces/%s/exec HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n",
	        q->method ? q->method : "POST", q->ws, port);
	if (q->token != NULL)
		fprintf(m, "Authorization: Bearer %s\r\n", q->token);
	fprintf(m, "Content-Type: application/json\r\n");
	if (q->accept != NULL)
		fprintf(m, "Accept: %s\r\n", q->accept);
	if (q->reason != NULL)
		fprintf(m, "X-Break-Glass-Reason: %s\r\n", q->reason);
	if (rid[0] != '\0')
		fprintf(m, "X-Request-Id: %s\r\n", rid);
	fprintf(m, "Content-Length: %zu\r\n\r\n", blen);
	if (fclose(m) != 0) {
		free(req);
		close(fd);
		return -1;
	}
	n = (int)reqlen;
	for (size_t len = (size_t)n; off < len + blen;) {
		const char *p = off < len ? req + off : q->body + (off - len);
		size_t left = off < len ? len - off : len + blen - off;
		ssize_t w = send(fd, p, left, MSG_NOSIGNAL);
		if (w <= 0) {
			say("send: %s", strerror(errno));
			free(req);
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	free(req);
	return fd;
}

/* Decodes a chunked body: 1 complete (*out, *outlen set), 0 incomplete, -1 malformed. */
static int dechunk(const char *p, size_t n, char **out, size_t *outlen)
{
	size_t i = 0, have = 0;
	char *o = malloc(n + 1);

	if (o == NULL)
		return -1;
	for (;;) {
		const char *eol = memmem(p + i, n - i, "\r\n", 2);
		char *end;
		unsigned long sz;

		if (eol == NULL)
			break;
		sz = strtoul(p + i, &end, 16);
		if (end == p + i) {
			free(o);
			return -1;
		}
		i = (size_t)(eol - p) + 2;
		if (sz == 0) {
			if (n - i >= 2 && memcmp(p + i, "\r\n", 2) == 0) {
				o[have] = '\0';
				*out = o;
				*outlen = have;
				return 1;
			}
			break;
		}
		if (n - i < sz + 2)
			break;
		memcpy(o + have, p + i, sz);
		have += sz;
		i += sz + 2;
	}
	free(o);
	return 0;
}

int su_raw_read(int fd, int idle_ms, struct su_resp *r)
{
	char *buf = NULL, *hend;
	size_t len = 0, cap = 0, hl = 0;
	long clen = -1;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		ssize_t got;

		if (r->head == NULL && buf != NULL && (hend = strstr(buf, "\r\n\r\n")) != NULL) {
			char cl[32];
			hl = (size_t)(hend - buf) + 4;
			r->head = strndup(buf, hl);
			if (sscanf(buf, "HTTP/%*s %d", &r->status) != 1)
				r->status = -1;
			if (su_header(r, "Content-Length", cl, sizeof(cl)) != NULL)
				clen = atol(cl);
		}
		if (r->head != NULL) {
			char *body = NULL;
			size_t blen = 0;
			if (clen >= 0 && len - hl >= (size_t)clen) {
				r->body = strndup(buf + hl, (size_t)clen);
				r->body_len = (size_t)clen;
				rc = 0;
				break;
			}
			/* Decoded only once the last chunk may be there: decoding is linear. */
			if (clen < 0 && len - hl >= 5 &&
			    memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0) {
				int d = dechunk(buf + hl, len - hl, &body, &blen);
				if (d != 0) {
					r->body = body;
					r->body_len = blen;
					rc = d > 0 ? 0 : -1;
					break;
				}
			}
		}
		if (poll(&pf, 1, idle_ms) <= 0)
			break; /* silence */
		if (cap - len < 65537) {
			cap = cap ? cap * 2 : 131072;
			buf = realloc(buf, cap);
			if (buf == NULL)
				abort();
		}
		got = recv(fd, buf + len, cap - len - 1, 0);
		if (got <= 0)
			break; /* closed */
		len += (size_t)got;
		buf[len] = '\0';
	}
	if (r->head == NULL)
		r->head = strdup("");
	if (r->body == NULL) {
		/* what came of the body, raw, to show in a failure */
		r->body = buf && len > hl ? strndup(buf + hl, len - hl) : strdup("");
		r->body_len = strlen(r->body);
	}
	free(buf);
	return rc;
}

void su_resp_free(struct su_resp *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

const char *su_header(const struct su_resp *r, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);

	for (const char *p = r->head; p != NULL && *p != '\0';) {
		const char *eol = strstr(p, "\r\n");
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);

		if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			size_t vl = ll - nl - 1;
			while (vl > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				vl--;
			}
			while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			snprintf(buf, len, "%.*s", (int)vl, v);
			return buf;
		}
		p = eol ? eol + 2 : NULL;
	}
	return NULL;
}

/* --- NDJSON frames ------------------------------------------------------------------- */

void su_frames_init(struct su_frames *f)
{
	memset(f, 0, sizeof(*f));
	f->all = json_array();
	f->out = calloc(1, 1);
	f->err = calloc(1, 1);
	f->out_cap = f->err_cap = 1;
	f->terminal_at = -1;
}

static void append(char **p, size_t *len, size_t *cap, const char *add, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 4096;
		char *np;
		while (c < *len + n + 1)
			c *= 2;
		np = realloc(*p, c);
		if (np == NULL)
			abort();
		*p = np;
		*cap = c;
	}
	memcpy(*p + *len, add, n);
	*len += n;
	(*p)[*len] = '\0';
}

static void frame_bad(struct su_frames *f, const char *line, const char *why)
{
	size_t n = strlen(line);

	if (f->bad++ == 0)
		snprintf(f->bad_line, sizeof(f->bad_line), "%s (%zu bytes): %.80s ... %s", why, n,
		         line, n > 80 ? line + n - (n - 80 > 80 ? 80 : n - 80) : "");
}

void su_frames_add(struct su_frames *f, const char *line)
{
	json_error_t je;
	json_t *o = json_loads(line, JSON_ALLOW_NUL, &je), *stream, *data, *enc, *tr;
	bool is_out;

	if (o == NULL || !json_is_object(o)) {
		frame_bad(f, line, o == NULL ? je.text : "not an object");
		json_decref(o);
		return;
	}
	json_array_append_new(f->all, o);
	if (json_object_get(o, "exit_code") != NULL || json_object_get(o, "error") != NULL) {
		f->terminal++;
		f->terminal_at = (int)json_array_size(f->all) - 1;
	}
	stream = json_object_get(o, "stream");
	if (stream == NULL)
		return;
	if (!json_is_string(stream) || (strcmp(json_string_value(stream), "stdout") != 0 &&
	                                strcmp(json_string_value(stream), "stderr") != 0)) {
		frame_bad(f, line, "bad stream");
		return;
	}
	is_out = strcmp(json_string_value(stream), "stdout") == 0;
	tr = json_object_get(o, "truncated");
	if (tr != NULL) {
		if (json_is_true(tr))
			*(is_out ? &f->out_trunc : &f->err_trunc) += 1;
		else
			frame_bad(f, line, "truncated is not true");
	}
	data = json_object_get(o, "data");
	enc = json_object_get(o, "encoding");
	if (data == NULL)
		return;
	if (!json_is_string(data)) {
		frame_bad(f, line, "data is not a string");
		return;
	}
	if (enc != NULL) {
		size_t n = 0;
		char *raw;
		if (!json_is_string(enc) || strcmp(json_string_value(enc), "base64") != 0 ||
		    (raw = su_b64_decode(json_string_value(data), &n)) == NULL) {
			frame_bad(f, line, "bad base64");
			return;
		}
		f->b64++;
		if (is_out)
			append(&f->out, &f->out_len, &f->out_cap, raw, n);
		else
			append(&f->err, &f->err_len, &f->err_cap, raw, n);
		free(raw);
	} else if (is_out) {
		append(&f->out, &f->out_len, &f->out_cap, json_string_value(data),
		       json_string_length(data));
	} else {
		append(&f->err, &f->err_len, &f->err_cap, json_string_value(data),
		       json_string_length(data));
	}
}

void su_frames_parse(struct su_frames *f, const char *body, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || body[i] == '\n') {
			if (i > start) {
				char *line = strndup(body + start, i - start);
				su_frames_add(f, line);
				free(line);
			}
			start = i + 1;
		}
	}
}

void su_frames_free(struct su_frames *f)
{
	json_decref(f->all);
	free(f->out);
	free(f->err);
	memset(f, 0, sizeof(*f));
}

json_t *su_frame(const struct su_frames *f, size_t i)
{
	return json_array_get(f->all, i);
}

size_t su_nframes(const struct su_frames *f)
{
	return json_array_size(f->all);
}

/* --- base64 ------------------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *su_b64_encode(const void *p, size_t n)
{
	const unsigned char *in = p;
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (out == NULL)
		abort();
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
		             (i + 2 < n ? in[i + 2] : 0);
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

char *su_b64_decode(const char *s, size_t *n)
{
	size_t len = strlen(s), o = 0;
	unsigned char *out;

	if (len % 4 != 0)
		return NULL;
	out = malloc(len / 4 * 3 + 1);
	if (out == NULL)
		abort();
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			const char *c = s[i + k] ? strchr(b64, s[i + k]) : NULL;
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (c == NULL || pad > 0) {
				free(out);
				return NULL;
			} else {
				v[k] = (int)(c - b64);
			}
		}
		unsigned w = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
		out[o++] = (unsigned char)(w >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(w >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)w;
	}
	out[o] = '\0';
	*n = o;
	return (char *)out;
}

/* --- processes and files ------------------------------------------------------------- */

bool su_file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

char *su_tmp_path(const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "/tmp/eb-serve-%d-%s", (int)getpid(), name) < 0)
		abort();
	unlink(p);
	return p;
}

bool su_pid_alive(pid_t pid)
{
	char path[64], buf[512], *rp;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	rp = strrchr(buf, ')');
	return rp != NULL && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

pid_t su_pid_from_file(const char *path)
{
	char *s = su_file_read(path, NULL);
	long v = s ? strtol(s, NULL, 10) : 0;

	free(s);
	return (pid_t)v;
}

/* --- for tests ---------------------------------------------------------------------- */

void sv_http(int port, const struct su_req *q, struct su_resp *r)
{
	ck_assert_msg(su_http(port, q, r) == 0, "could not run curl");
}

/* Request ids the suites send are [A-Za-z0-9._:-] (or checked to be) and safe in SQL. */
static void check_rid(const char *rid)
{
	ck_assert_msg(rid[0] != '\0' &&
	                  strspn(rid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
	                              "vwxyz0123456789._:-") == strlen(rid),
	              "request id \"%s\"", rid);
}

/* One connection per test process (connecting costs tens of milliseconds here); made again
 * when PostgreSQL was restarted under it. Never opened in main(), so that no two processes
 * share it. */
static PGconn *sv_conn;
static char sv_conn_db[512];
static pid_t sv_conn_pid;

static PGresult *sv_exec(const char *db, const char *sql)
{
	PGresult *res = NULL;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (sv_conn != NULL && (sv_conn_pid != getpid() || strcmp(sv_conn_db, db) != 0 ||
		                        PQstatus(sv_conn) != CONNECTION_OK)) {
			if (sv_conn_pid == getpid())
				PQfinish(sv_conn);
			sv_conn = NULL;
		}
		if (sv_conn == NULL) {
			sv_conn = PQconnectdb(db);
			sv_conn_pid = getpid();
			snprintf(sv_conn_db, sizeof(sv_conn_db), "%s", db);
			ck_assert_msg(PQstatus(sv_conn) == CONNECTION_OK, "connect %s: %s", db,
			              PQerrorMessage(sv_conn));
		}
		res = PQexec(sv_conn, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    PQresultStatus(res) == PGRES_COMMAND_OK || PQstatus(sv_conn) == CONNECTION_OK)
			break;
		PQclear(res); /* the server went away under this connection: once more */
		res = NULL;
	}
	ck_assert_msg(res != NULL && (PQresultStatus(res) == PGRES_TUPLES_OK ||
	                              PQresultStatus(res) == PGRES_COMMAND_OK),
	              "%s: %s", sql, res ? PQresultErrorMessage(res) : PQerrorMessage(sv_conn));
	return res;
}

char *sv_query(const char *db, const char *sql)
{
	PGresult *res = sv_exec(db, sql);
	char *v;

	v = tu_first_value(res);
	PQclear(res);
	ck_assert_ptr_nonnull(v);
	return v;
}

long long sv_rows(const char *db, const char *rid)
{
	char sql[300], *v;
	long long n;

	check_rid(rid);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM exec_audit WHERE request_id = '%s'", rid);
	v = sv_query(db, sql);
	n = atoll(v);
	free(v);
	return n;
}

char *sv_row(const char *db, const char *rid, const char *expr)
{
	char *sql = NULL, *v;
	PGresult *res;

	check_rid(rid);
	ck_assert_int_ge(
	    asprintf(&sql, "SELECT %s FROM exec_audit WHERE request_id = '%s'", expr, rid), 0);
	res = sv_exec(db, sql);
	free(sql);
	ck_assert_msg(PQntuples(res) == 1, "%d audit rows for request %s, want 1", PQntuples(res),
	              rid);
	v = strdup(PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
	PQclear(res);
	ck_assert_ptr_nonnull(v);
	return v;
}

char *sv_row_final(const char *db, const char *rid)
{
	long long end = su_now_ms() + SU_WAIT_MS;
	char *st;

	for (;;) {
		st = sv_row(db, rid, "status");
		if (strcmp(st, "running") != 0)
			return st;
		ck_assert_msg(su_now_ms() < end, "audit row of %s still running after %d ms", rid,
		              SU_WAIT_MS);
		free(st);
		su_sleep_ms(100);
	}
}

json_t *sv_json(const struct su_resp *r)
{
	json_error_t je;
	json_t *o = json_loadb(r->body, r->body_len, 0, &je);

	ck_assert_msg(o != NULL && json_is_object(o), "status %d: body is not a JSON object: %s",
	              r->status, r->body);
	return o;
}

const char *sv_str(json_t *o, const char *path)
{
	char key[64];
	const char *dot;
	json_t *v = o;

	while (v != NULL && (dot = strchr(path, '.')) != NULL) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		v = json_object_get(v, key);
		path = dot + 1;
	}
	v = v ? json_object_get(v, path) : NULL;
	return json_is_string(v) ? json_string_value(v) : NULL;
}

void sv_error(const char *db, const struct su_resp *r, int status, const char *code,
              const char *row_status, const char *row_error)
{
	char hv[200], *v;
	const char *xid;

	ck_assert_msg(r->status == status, "request %s: status %d, want %d (%s); body: %s", r->rid,
	              r->status, status, code, r->body);
	if (status != 413) {
		json_t *o = sv_json(r);
		const char *got = sv_str(o, "error.code");

		ck_assert_msg(got != NULL && strcmp(got, code) == 0, "error code %s, want %s: %s",
		              got ? got : "(none)", code, r->body);
		ck_assert_msg(sv_str(o, "error.message") != NULL &&
		                  strlen(sv_str(o, "error.message")) > 0,
		              "no error.message: %s", r->body);
		json_decref(o);
		ck_assert_msg(su_header(r, "Content-Type", hv, sizeof(hv)) != NULL &&
		                  strncmp(hv, "application/json", 16) == 0,
		              "Content-Type of an error: %s", r->head);
	}
	if (r->rid[0] == '\0')
		return;
	xid = su_header(r, "X-Exec-Id", hv, sizeof(hv));
	if (row_status == NULL) {
		long long n = sv_rows(db, r->rid);
		ck_assert_msg(n == 0, "%s (%d) wrote %lld audit row(s)", code, status, n);
		ck_assert_msg(xid == NULL, "X-Exec-Id %s without an audit row", xid);
		return;
	}
	v = sv_row(db, r->rid, "status");
	ck_assert_msg(strcmp(v, row_status) == 0, "%s: audit status %s, want %s", code, v,
	              row_status);
	free(v);
	ck_assert_msg(xid != NULL, "%s: an audit row but no X-Exec-Id header", code);
	v = sv_row(db, r->rid, "exec_id");
	ck_assert_str_eq(v, xid);
	free(v);
	if (row_error != NULL) {
		v = sv_row(db, r->rid, "error_code");
		if (strcmp(row_error, "*") == 0)
			ck_assert_msg(strcmp(v, "<null>") != 0, "%s: row has no error_code", code);
		else
			ck_assert_msg(strcmp(v, row_error) == 0, "%s: row error_code %s, want %s",
			              code, v, row_error);
		free(v);
	}
}

static bool uuid_like(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (strchr("0123456789abcdef", s[i]) == NULL) {
			return false;
		}
	}
	return true;
}

void sv_stream(const struct su_resp *r, struct su_frames *f)
{
	char hv[200];
	json_t *first;
	size_t n;

	ck_assert_msg(r->status == 200, "request %s: status %d, want 200: %s", r->rid, r->status,
	              r->body);
	ck_assert_msg(su_header(r, "Content-Type", hv, sizeof(hv)) != NULL &&
	                  strncmp(hv, "application/x-ndjson", 20) == 0,
	              "Content-Type: %s", r->head);
	ck_assert_msg(WIFEXITED(r->curl_status) && WEXITSTATUS(r->curl_status) == 0,
	              "request %s: curl exit %d after %zu body bytes (18: cut short, 28: stalled)",
	              r->rid, WEXITSTATUS(r->curl_status), r->body_len);
	su_frames_init(f);
	su_frames_parse(f, r->body, r->body_len);
	ck_assert_msg(f->bad == 0, "%d bad frame(s) in %zu bytes (curl status %d), first: %s",
	              f->bad, r->body_len, r->curl_status, f->bad_line);
	ck_assert_msg(r->body_len > 0 && r->body[r->body_len - 1] == '\n',
	              "the stream does not end with a newline: %s", r->body);
	n = su_nframes(f);
	ck_assert_msg(n >= 2, "%zu frames: %s", n, r->body);
	first = su_frame(f, 0);
	ck_assert_msg(uuid_like(sv_str(first, "exec_id")) && sv_str(first, "workspace_id") &&
	                  json_is_integer(json_object_get(first, "timeout_s")) &&
	                  json_object_get(first, "stream") == NULL,
	              "first frame: %s", r->body);
	ck_assert_msg(su_header(r, "X-Exec-Id", hv, sizeof(hv)) != NULL &&
	                  strcmp(hv, sv_str(first, "exec_id")) == 0,
	              "X-Exec-Id is not the first frame's exec_id: %s", r->head);
	ck_assert_msg(f->terminal == 1, "%d last frames: %s", f->terminal, r->body);
	ck_assert_msg(f->terminal_at == (int)n - 1, "the exit/error frame is not last: %s",
	              r->body);
	for (size_t i = 1; i + 1 < n; i++)
		ck_assert_msg(json_object_get(su_frame(f, i), "stream") != NULL,
		              "frame %zu is neither output nor last: %s", i, r->body);
}

json_t *sv_last(const struct su_frames *f)
{
	return su_frame(f, su_nframes(f) - 1);
}

long long sv_int(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	char *dump = json_dumps(o, JSON_COMPACT);

	ck_assert_msg(json_is_integer(v), "no integer \"%s\" in %s", key, dump);
	free(dump);
	return json_integer_value(v);
}

void sv_pid_gone(pid_t pid, const char *what)
{
	long long end = su_now_ms() + SU_WAIT_MS;

	while (su_pid_alive(pid)) {
		ck_assert_msg(su_now_ms() < end, "%s (pid %d) still runs %d ms later", what,
		              (int)pid, SU_WAIT_MS);
		su_sleep_ms(50);
	}
}

pid_t sv_pid_wait(const char *path)
{
	long long end = su_now_ms() + SU_WAIT_MS;
	pid_t pid;

	while ((pid = su_pid_from_file(path)) <= 0) {
		ck_assert_msg(su_now_ms() < end, "no pid in %s after %d ms", path, SU_WAIT_MS);
		su_sleep_ms(20);
	}
	return pid;
}

void sv_stream_until(struct su_stream *s, struct su_frames *f,
                     bool (*pred)(const struct su_frames *f, const void *arg), const void *arg,
                     const char *what)
{
	long long end = su_now_ms() + SU_WAIT_MS;
	char *line;

	while (!pred(f, arg)) {
		long long left = end - su_now_ms();
		ck_assert_msg(left > 0, "no %s after %d ms (status %d)", what, SU_WAIT_MS,
		              s->r.status);
		line = su_stream_line(s, (int)left);
		ck_assert_msg(line != NULL || !s->eof, "the stream ended before %s (status %d): %s",
		              what, s->r.status, s->buf ? s->buf : "");
		if (line != NULL) {
			su_frames_add(f, line);
			free(line);
		}
	}
}

bool sv_out_has(const struct su_frames *f, const void *arg)
{
	return strstr(f->out, arg) != NULL;
}

char *sv_body(const char *const argv[], json_t *extra)
{
	json_t *o = json_object(), *a = json_array();
	char *s;

	for (int i = 0; argv[i] != NULL; i++)
		json_array_append_new(a, json_string(argv[i]));
	json_object_set_new(o, "argv", a);
	if (extra != NULL) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	ck_assert_ptr_nonnull(s);
	return s;
}

double sv_metric(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

char *sv_metrics(int port)
{
	struct su_req q = {.method = "GET", .path = "/metrics", .rid = ""};
	struct su_resp r;
	char *t;

	sv_http(port, &q, &r);
	ck_assert_msg(r.status == 200, "GET /metrics: %d", r.status);
	t = r.body;
	r.body = NULL;
	su_resp_free(&r);
	return t;
}

char *sv_log_request(const char *log, const char *rid)
{
	long long end = su_now_ms() + SU_WAIT_MS;
	char needle[120], *text, *eol, *line = NULL;

	snprintf(needle, sizeof(needle), " request_id=%s ", rid);
	/* The line may be written just after the response ended. */
	while (line == NULL) {
		ck_assert_msg(su_now_ms() < end, "no msg=request line with%sin %s", needle, log);
		text = su_file_read(log, NULL);
		ck_assert_ptr_nonnull(text);
		for (char *bol = text; bol != NULL && *bol != '\0'; bol = eol ? eol + 1 : NULL) {
			eol = strchr(bol, '\n');
			if (eol != NULL)
				*eol = '\0';
			if (strstr(bol, needle) != NULL && strstr(bol, " msg=request ") != NULL) {
				line = strdup(bol);
				break;
			}
		}
		free(text);
		if (line == NULL)
			su_sleep_ms(50);
	}
	return line;
}

void sv_touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	close(fd);
}

void sv_read_pids(const char *path, pid_t pids[2])
{
	char *s;

	sv_pid_wait(path);
	s = su_file_read(path, NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert_msg(sscanf(s, "%d %d", &pids[0], &pids[1]) == 2, "pids: %s", s);
	free(s);
}

void sv_wait_sleeper(struct su_stream *s, const char *pidf, pid_t pids[2])
{
	struct su_frames f;

	su_frames_init(&f);
	sv_stream_until(s, &f, sv_out_has, "ready", "ready");
	su_frames_free(&f);
	sv_read_pids(pidf, pids);
}
