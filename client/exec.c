/* client/exec.c: `exec-broker exec`, the API's client for people and scripts. One
 * POST /v1/workspaces/{id}/exec over libevent's HTTP client; the NDJSON frames are decoded
 * onto this process's stdout and stderr as they arrive, and the outcome (the last frame,
 * or the API error, or how the connection failed) becomes the exit status. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client.h"
#include "common/fdio.h"
#include "common/fsm.h"
#include "common/utf8.h"

/* Exit codes of `exec`. The remote exit code (0-255) and 128+N for a remote signal N come
 * first; the client's own outcomes are above 200, clear of 128+N for every signal (at
 * most 128+64), except the timeout, which says 124 as timeout(1) does. */
enum {
	EXEC_EXIT_TIMEOUT = 124,       /* exec_timeout: in the last frame, or 504 before start */
	EXEC_EXIT_USAGE = 201,         /* the command line or a local file is wrong */
	EXEC_EXIT_UNREACHABLE = 202,   /* no HTTP response from the broker */
	EXEC_EXIT_AUTH = 203,          /* 401 or 403 */
	EXEC_EXIT_NOT_FOUND = 204,     /* 404 */
	EXEC_EXIT_HOST = 205,          /* 502, or transport_error in the last frame */
	EXEC_EXIT_API = 206,           /* any other API error */
	EXEC_EXIT_NO_LAST_FRAME = 207, /* the stream broke off: the outcome is unknown */
};

#define DEFAULT_URL     "http://127.0.0.1:8080"
#define TOKEN_ENV       "EXEC_BROKER_TOKEN"
#define MAX_STDIN       (1024L * 1024 * 1024) /* max_body_bytes can be at most 1 GiB */
#define MAX_ERROR_BODY  (64 * 1024)
#define MAX_TIMEOUT_S   86400 /* the largest exec_timeout_max_s a broker may have */
#define SLACK_TIMEOUT_S 60    /* beyond the exec's timeout before the client gives up */

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: exec-broker exec [--url URL] [--token-file FILE] [--timeout S]\n"
	    "                        [--env NAME=VALUE]... [--cwd DIR] [--stdin-file FILE | -i]\n"
	    "                        [--break-glass-reason TEXT] [--json] WORKSPACE -- ARGV...\n"
	    "\n"
	    "Runs ARGV on WORKSPACE through the broker's HTTP API (POST\n"
	    "/v1/workspaces/WORKSPACE/exec), exactly as given: no shell is added. The remote\n"
	    "stdout and stderr are written to this process's stdout and stderr as they\n"
	    "arrive, byte for byte.\n"
	    "  --url URL            the broker (default " DEFAULT_URL "; http only)\n"
	    "  --token-file FILE    the API token: the file's first line; otherwise the\n"
	    "                       environment variable " TOKEN_ENV "\n"
	    "  --timeout S          seconds the command may run (default: the broker's)\n"
	    "  --env NAME=VALUE     set an environment variable (repeatable)\n"
	    "  --cwd DIR            absolute directory to run in\n"
	    "  --stdin-file FILE    the command's stdin (default: empty)\n"
	    "  -i, --stdin          read this process's stdin to its end and pass it on\n"
	    "  --break-glass-reason TEXT\n"
	    "                       why an admin token is used (audited; required for one)\n"
	    "  --json               print the NDJSON frames, one per line, instead of\n"
	    "                       decoding them\n"
	    "\n"
	    "Exit status:\n"
	    "  0-255   the remote command's exit code\n"
	    "  128+N   the remote command was killed by signal N (e.g. 137 for KILL)\n"
	    "  124     the command ran past its timeout (exec_timeout)\n"
	    "  201     the command line is wrong, or a local file cannot be read\n"
	    "  202     the broker cannot be reached (no HTTP response)\n"
	    "  203     the token was refused (401) or may not run this (403)\n"
	    "  204     no such workspace, or not one this token reaches (404)\n"
	    "  205     the workspace host could not be reached or its SSH connection broke\n"
	    "          (502, or transport_error during the run)\n"
	    "  206     any other API error (its code and message are printed)\n"
	    "  207     the stream ended without a last frame (the broker died); the\n"
	    "          command's outcome is unknown\n"
	    "API errors are printed as one line on stderr: exec-broker: CODE: MESSAGE.\n");
}

/* The states of the one request, in order; each callback checks where it is. */
enum exc_state {
	EXC_SENT,        /* the request is on its way; no response yet */
	EXC_STREAMING,   /* 200: NDJSON frames arrive */
	EXC_ERROR_REPLY, /* another status: its JSON error body arrives */
	EXC_DONE,        /* the exit status is decided; the loop stops */
};

struct exec_client {
	enum exc_state state;
	bool json;   /* --json */
	int status;  /* HTTP status once the head arrived */
	int exit;    /* the exit status once EXC_DONE */
	int nframes; /* frames seen */
	bool last;   /* the last frame was seen */
	bool trunc[2];
	char exec_id[64];
	const char *url;
	struct event_base *base;
	struct evhttp_connection *evcon;
	struct evbuffer *lines; /* bytes of the body not yet split into frames */
	enum evhttp_request_error neterr;
	int neterrno;
	bool have_neterr;
};

static const char *const exc_state_names[] = {"sent", "streaming", "error reply", "done"};
static const unsigned exc_legal[] = {
    [EXC_SENT] = FSM_BIT(EXC_STREAMING) | FSM_BIT(EXC_ERROR_REPLY) | FSM_BIT(EXC_DONE),
    [EXC_STREAMING] = FSM_BIT(EXC_DONE),
    [EXC_ERROR_REPLY] = FSM_BIT(EXC_DONE),
    [EXC_DONE] = 0,
};
static const struct fsm exc_fsm = {"exec client", exc_state_names, exc_legal, 4};

static void exc_set_state(struct exec_client *c, enum exc_state to)
{
	FSM_SET(&exc_fsm, c->state, to, c->exec_id[0] != '\0' ? c->exec_id : NULL);
}

/* Decides the exit status. The loop runs on until the reply is complete (on_done), so
 * that the broker sees a reply read to its end rather than a client gone; stop() is for
 * when nothing more is worth reading. */
static void exc_finish(struct exec_client *c, int exit_status)
{
	exc_set_state(c, EXC_DONE);
	c->exit = exit_status;
}

static void exc_stop(struct exec_client *c, int exit_status)
{
	exc_finish(c, exit_status);
	event_base_loopbreak(c->base);
}

/* The local number of a signal named as the broker names it ("KILL"; "SIGKILL" too);
 * 0 if unknown. */
static int signal_number(const char *name)
{
	static const struct {
		const char *name;
		int num;
	} sigs[] = {
	    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT}, {"ILL", SIGILL},
	    {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},     {"IOT", SIGABRT},  {"BUS", SIGBUS},
	    {"FPE", SIGFPE},   {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
	    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},
	    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
	    {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},
	    {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
	    {"IO", SIGIO},     {"PWR", SIGPWR},       {"SYS", SIGSYS},
	};

	if (strncmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (strcmp(sigs[i].name, name) == 0)
			return sigs[i].num;
	return 0;
}

/* The exit status of an API error, from its HTTP status (0 in a last frame) and code. */
static int exit_of_error(int status, const char *code)
{
	if (code != NULL && strcmp(code, "exec_timeout") == 0)
		return EXEC_EXIT_TIMEOUT;
	if (status == 401 || status == 403)
		return EXEC_EXIT_AUTH;
	if (status == 404)
		return EXEC_EXIT_NOT_FOUND;
	if (status == 502 || (code != NULL && strcmp(code, "transport_error") == 0))
		return EXEC_EXIT_HOST;
	return EXEC_EXIT_API;
}

/* "exec-broker: CODE: MESSAGE" from an error object {"code","message"}; false if o is
 * not one. */
static bool print_api_error(json_t *err)
{
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *msg = json_string_value(json_object_get(err, "message"));

	if (code == NULL)
		return false;
	cli_error("%s: %s", code, msg != NULL ? msg : "(no message)");
	return true;
}

/* Decodes standard padded base64 into a malloc'd buffer. 0, or -1 if malformed. */
static int b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	int n;
	size_t pad = 0;

	*out = NULL;
	if (len % 4 != 0)
		return -1;
	buf = malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return -1;
	n = len == 0 ? 0 : EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (n < 0) {
		free(buf);
		return -1;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (len > 0 && s[len - 1] == '=')
		pad++;
	if (len > 1 && s[len - 2] == '=')
		pad++;
	*out = buf;
	*outlen = (size_t)n - pad;
	return 0;
}

/* One output frame {"stream","data","encoding"?}: its bytes to fd 1 or 2. */
static int output_frame(struct exec_client *c, json_t *f, const char *stream)
{
	json_t *data = json_object_get(f, "data");
	const char *enc = json_string_value(json_object_get(f, "encoding"));
	int fd = strcmp(stream, "stdout") == 0 ? 1 : strcmp(stream, "stderr") == 0 ? 2 : -1;
	unsigned char *bytes = NULL;
	size_t n;
	int rc = 0;

	if (fd < 0)
		return 0; /* a stream this client does not know: nothing to write it to */
	if (json_is_true(json_object_get(f, "truncated"))) {
		c->trunc[fd - 1] = true;
		return 0;
	}
	if (!json_is_string(data))
		return -1;
	if (enc != NULL && strcmp(enc, "base64") == 0) {
		if (b64_decode(json_string_value(data), json_string_length(data), &bytes, &n) != 0)
			return -1;
		rc = fdio_write_all(fd, bytes, n, -1);
		free(bytes);
	} else if (enc == NULL || strcmp(enc, "utf-8") == 0) {
		rc = fdio_write_all(fd, json_string_value(data), json_string_length(data), -1);
	} else {
		return -1;
	}
	if (rc != 0) {
		/* Our own stdout or stderr went away (as `| head` does): stop, as SIGPIPE
		 * would have stopped us; the broker then cancels the command. */
		exc_stop(c, 128 + SIGPIPE);
	}
	return 0;
}

/* The last frame: the exit code, the signal or the error. */
static void last_frame(struct exec_client *c, json_t *f)
{
	json_t *code = json_object_get(f, "exit_code"), *err = json_object_get(f, "error");
	const char *sig = json_string_value(json_object_get(f, "signal"));
	int exit_status;

	c->last = true;
	if (!c->json)
		for (int i = 0; i < 2; i++)
			if (c->trunc[i])
				cli_error("the remote %s was cut at the broker's output_cap_bytes; "
				          "the rest was not sent",
				          i == 0 ? "stdout" : "stderr");
	if (json_is_integer(code)) {
		exit_status = (int)(json_integer_value(code) & 0xff);
	} else if (sig != NULL) {
		int n = signal_number(sig);
		if (n == 0) {
			cli_error("the remote command was ended by signal %s, unknown here", sig);
			exit_status = EXEC_EXIT_API;
		} else {
			exit_status = 128 + n;
		}
	} else if (json_is_object(err) && print_api_error(err)) {
		exit_status = exit_of_error(0, json_string_value(json_object_get(err, "code")));
	} else {
		cli_error("the broker's last frame says neither an exit code, a signal nor an "
		          "error");
		exit_status = EXEC_EXIT_API;
	}
	exc_finish(c, exit_status);
}

static void first_frame(struct exec_client *c, json_t *f)
{
	const char *id = json_string_value(json_object_get(f, "exec_id"));
	json_t *t = json_object_get(f, "timeout_s");

	if (id != NULL)
		snprintf(c->exec_id, sizeof(c->exec_id), "%s", id);
	/* The broker answers within the exec's timeout; beyond it, a silent connection
	 * means a wedged broker. */
	if (json_is_integer(t) && json_integer_value(t) > 0 &&
	    json_integer_value(t) <= MAX_TIMEOUT_S) {
		struct timeval tv = {(time_t)json_integer_value(t) + SLACK_TIMEOUT_S, 0};
		bufferevent_set_timeouts(evhttp_connection_get_bufferevent(c->evcon), &tv, &tv);
	}
}

/* One NDJSON line. -1 if it is not a frame. */
static int handle_frame(struct exec_client *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *f = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
	const char *stream;
	int rc = 0;

	if (!json_is_object(f)) {
		json_decref(f);
		return -1;
	}
	if (c->json &&
	    (fdio_write_all(1, line, len, -1) != 0 || fdio_write_all(1, "\n", 1, -1) != 0)) {
		json_decref(f);
		exc_stop(c, 128 + SIGPIPE);
		return 0;
	}
	c->nframes++;
	stream = json_string_value(json_object_get(f, "stream"));
	if (stream != NULL) {
		if (!c->json)
			rc = output_frame(c, f, stream);
		else if (json_is_true(json_object_get(f, "truncated")))
			c->trunc[strcmp(stream, "stdout") == 0 ? 0 : 1] = true;
	} else if (json_object_get(f, "exit_code") != NULL || json_object_get(f, "error") != NULL) {
		last_frame(c, f);
	} else if (c->nframes == 1) {
		first_frame(c, f);
	}
	/* Anything else is a frame of a newer broker: ignored. */
	json_decref(f);
	return rc;
}

static void split_frames(struct exec_client *c)
{
	char *line;
	size_t len;

	while (c->state == EXC_STREAMING &&
	       (line = evbuffer_readln(c->lines, &len, EVBUFFER_EOL_LF)) != NULL) {
		int rc = handle_frame(c, line, len);
		free(line);
		if (rc != 0 && c->state == EXC_STREAMING) {
			cli_error("the broker sent a line that is not a frame; the outcome of exec "
			          "%s is unknown (see the audit log)",
			          c->exec_id[0] ? c->exec_id : "(no id)");
			exc_stop(c, EXEC_EXIT_NO_LAST_FRAME);
		}
	}
}

static int on_header(struct evhttp_request *req, void *arg)
{
	struct exec_client *c = arg;

	c->status = evhttp_request_get_response_code(req);
	exc_set_state(c, c->status == 200 ? EXC_STREAMING : EXC_ERROR_REPLY);
	return 0;
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
	struct exec_client *c = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);

	switch (c->state) {
	case EXC_STREAMING:
		evbuffer_add_buffer(c->lines, in);
		split_frames(c);
		break;
	case EXC_ERROR_REPLY:
		if (evbuffer_get_length(c->lines) < MAX_ERROR_BODY)
			evbuffer_add_buffer(c->lines, in);
		break;
	case EXC_DONE:
		break; /* decided already (e.g. after the last frame): nothing more to do */
	case EXC_SENT:
	default:
		abort();
	}
}

static void on_error(enum evhttp_request_error err, void *arg)
{
	struct exec_client *c = arg;

	c->neterr = err;
	c->neterrno = errno;
	c->have_neterr = true;
}

static const char *neterr_text(const struct exec_client *c, char *buf, size_t len)
{
	if (!c->have_neterr)
		return "the connection was closed";
	switch (c->neterr) {
	case EVREQ_HTTP_TIMEOUT:
		return "timed out";
	case EVREQ_HTTP_EOF:
		if (c->neterrno != 0) {
			snprintf(buf, len, "%s", strerror(c->neterrno));
			return buf;
		}
		return "the connection was closed";
	case EVREQ_HTTP_INVALID_HEADER:
		return "the response is not valid HTTP";
	case EVREQ_HTTP_BUFFER_ERROR:
		snprintf(buf, len, "%s", c->neterrno ? strerror(c->neterrno) : "connection error");
		return buf;
	case EVREQ_HTTP_DATA_TOO_LONG:
		return "the response is too long";
	case EVREQ_HTTP_REQUEST_CANCEL:
	default:
		return "the request was cancelled";
	}
}

/* The reply of a status other than 200. */
static void error_reply(struct exec_client *c)
{
	size_t len = evbuffer_get_length(c->lines);
	json_t *o = json_loadb((const char *)evbuffer_pullup(c->lines, -1), len, 0, NULL);
	json_t *err = json_object_get(o, "error");
	const char *code = json_string_value(json_object_get(err, "code"));

	if (!print_api_error(err)) {
		/* libevent's own replies (413, malformed HTTP) are HTML. */
		cli_error("http_%d: the broker answered HTTP %d without an API error", c->status,
		          c->status);
	}
	exc_finish(c, exit_of_error(c->status, code));
	json_decref(o);
}

static void on_done(struct evhttp_request *req, void *arg)
{
	struct exec_client *c = arg;
	char buf[128];

	event_base_loopbreak(c->base);
	switch (c->state) {
	case EXC_DONE:
		break;
	case EXC_SENT:
		/* A failed connect comes here with no error_cb and an errno libevent has
		 * overwritten since: the cause is not known. */
		cli_error("cannot reach the broker at %s: %s", c->url,
		          c->have_neterr ? neterr_text(c, buf, sizeof(buf))
		                         : "cannot connect (is it running there?)");
		exc_finish(c, EXEC_EXIT_UNREACHABLE);
		break;
	case EXC_STREAMING:
		cli_error("the stream ended without a last frame (%s); the outcome of exec %s is "
		          "unknown (see the audit log)",
		          req == NULL                         ? neterr_text(c, buf, sizeof(buf))
		          : evbuffer_get_length(c->lines) > 0 ? "it ends in a partial line"
		                                              : "the reply ended",
		          c->exec_id[0] ? c->exec_id : "(no id)");
		exc_finish(c, EXEC_EXIT_NO_LAST_FRAME);
		break;
	case EXC_ERROR_REPLY:
		if (req == NULL) {
			cli_error("the broker closed the connection in its HTTP %d reply (%s)",
			          c->status, neterr_text(c, buf, sizeof(buf)));
			exc_finish(c, exit_of_error(c->status, NULL));
		} else {
			if (evbuffer_get_length(c->lines) < MAX_ERROR_BODY)
				evbuffer_add_buffer(c->lines, evhttp_request_get_input_buffer(req));
			error_reply(c);
		}
		break;
	default:
		abort();
	}
}

/* The whole of fd, at most MAX_STDIN bytes, malloc'd into *out. 0 or -1 (errno). */
static int read_all(int fd, char **out, size_t *outlen)
{
	size_t n = 0, cap = 65536;
	char *buf = malloc(cap), *grown;

	*out = NULL;
	if (buf == NULL)
		return -1;
	for (;;) {
		ssize_t k;
		if (n == cap) {
			if (cap >= (size_t)MAX_STDIN) {
				explicit_bzero(buf, n);
				free(buf);
				errno = EFBIG;
				return -1;
			}
			grown = realloc(buf, cap * 2);
			if (grown == NULL) {
				explicit_bzero(buf, n);
				free(buf);
				return -1;
			}
			buf = grown;
			cap *= 2;
		}
		k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			explicit_bzero(buf, n);
			free(buf);
			errno = e;
			return -1;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

static int read_file(const char *path, char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc, e;

	if (fd < 0)
		return -1;
	rc = read_all(fd, out, outlen);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* The token: the first line of path, or $EXEC_BROKER_TOKEN. 0, or CLI_EXIT_USAGE-like
 * failure (-1) after printing why. */
static int load_token(struct cli *cli, const char *path, char **tok)
{
	const char *src = NULL;
	char *buf = NULL;
	size_t len = 0, a, b;

	*tok = NULL;
	if (path != NULL) {
		if (read_file(path, &buf, &len) != 0) {
			cli_error("exec: cannot read --token-file %s: %s", path, strerror(errno));
			return -1;
		}
		src = buf;
	} else {
		size_t n = strlen(TOKEN_ENV);
		for (size_t i = 0; cli->envp != NULL && cli->envp[i] != NULL; i++)
			if (strncmp(cli->envp[i], TOKEN_ENV, n) == 0 && cli->envp[i][n] == '=')
				src = cli->envp[i] + n + 1;
		if (src == NULL) {
			cli_error("exec: no token: give --token-file FILE or set " TOKEN_ENV);
			return -1;
		}
		len = strlen(src);
	}
	b = 0;
	while (b < len && src[b] != '\n')
		b++;
	a = 0;
	while (a < b && (src[a] == ' ' || src[a] == '\t' || src[a] == '\r'))
		a++;
	while (b > a && (src[b - 1] == ' ' || src[b - 1] == '\t' || src[b - 1] == '\r'))
		b--;
	for (size_t i = a; i < b; i++)
		if ((unsigned char)src[i] <= 0x20 || (unsigned char)src[i] >= 0x7f)
			b = a; /* never a header with a control character; refused below */
	if (b > a)
		*tok = strndup(src + a, b - a);
	if (buf != NULL) {
		explicit_bzero(buf, len);
		free(buf);
	}
	if (*tok == NULL) {
		cli_error("exec: the token %s is empty or not printable ASCII",
		          path != NULL ? "file's first line" : "in " TOKEN_ENV);
		return -1;
	}
	return 0;
}

static json_t *utf8_string(const char *s, size_t len)
{
	bool incomplete;

	if (utf8_valid_prefix((const unsigned char *)s, len, &incomplete) != len)
		return NULL;
	return json_stringn(s, len);
}

/* Parsed command line. */
struct exec_args {
	const char *url, *token_file, *timeout, *cwd, *stdin_file, *reason, *ws;
	bool stdin_all, json;
	json_t *env; /* object; owned */
	char **argv;
	int argc;
};

enum { O_URL = 1, O_TOKEN_FILE, O_TIMEOUT, O_ENV, O_CWD, O_STDIN_FILE, O_REASON, O_JSON };

static int parse_args(int argc, char **argv, struct exec_args *a)
{
	static const struct option opts[] = {
	    {"url", required_argument, NULL, O_URL},
	    {"token-file", required_argument, NULL, O_TOKEN_FILE},
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"env", required_argument, NULL, O_ENV},
	    {"cwd", required_argument, NULL, O_CWD},
	    {"stdin-file", required_argument, NULL, O_STDIN_FILE},
	    {"stdin", no_argument, NULL, 'i'},
	    {"break-glass-reason", required_argument, NULL, O_REASON},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, CLI_OPT_HELP},
	    {NULL, 0, NULL, 0}};
	int dd, opt;

	/* Options end at "--": what follows is the remote argv, whatever it looks like. */
	for (dd = 1; dd < argc && strcmp(argv[dd], "--") != 0; dd++)
		;
	while ((opt = getopt_long(dd, argv, "i", opts, NULL)) != -1) {
		switch (opt) {
		case O_URL:
			a->url = optarg;
			break;
		case O_TOKEN_FILE:
			a->token_file = optarg;
			break;
		case O_TIMEOUT:
			a->timeout = optarg;
			break;
		case O_ENV: {
			const char *eq = strchr(optarg, '=');
			json_t *v;
			if (eq == NULL || eq == optarg) {
				cli_error("exec: --env takes NAME=VALUE (got \"%s\")", optarg);
				return EXEC_EXIT_USAGE;
			}
			v = utf8_string(eq + 1, strlen(eq + 1));
			char *name = strndup(optarg, (size_t)(eq - optarg));
			if (v == NULL || name == NULL ||
			    json_object_set_new(a->env, name, v) != 0) {
				cli_error("exec: --env %s: names and values must be UTF-8 text",
				          name != NULL ? name : "");
				free(name);
				return EXEC_EXIT_USAGE;
			}
			free(name);
			break;
		}
		case O_CWD:
			a->cwd = optarg;
			break;
		case O_STDIN_FILE:
			a->stdin_file = optarg;
			break;
		case 'i':
			a->stdin_all = true;
			break;
		case O_REASON:
			a->reason = optarg;
			break;
		case O_JSON:
			a->json = true;
			break;
		case CLI_OPT_HELP:
			usage(stdout);
			return CLI_PARSED_HELP;
		default:
			usage(stderr); /* getopt_long has said what it did not know */
			return EXEC_EXIT_USAGE;
		}
	}
	if (dd - optind != 1) {
		if (dd - optind == 0)
			cli_error("exec: missing the workspace (exec-broker exec WORKSPACE -- "
			          "ARGV...)");
		else
			cli_error("exec: unexpected argument \"%s\" before -- (exec-broker exec "
			          "WORKSPACE -- ARGV...)",
			          argv[optind + 1]);
		return EXEC_EXIT_USAGE;
	}
	a->ws = argv[optind];
	if (dd >= argc - 1) {
		cli_error("exec: missing the command: exec-broker exec %s -- ARGV...", a->ws);
		return EXEC_EXIT_USAGE;
	}
	a->argv = argv + dd + 1;
	a->argc = argc - dd - 1;
	if (a->stdin_file != NULL && a->stdin_all) {
		cli_error("exec: give --stdin-file or -i, not both");
		return EXEC_EXIT_USAGE;
	}
	return 0;
}

/* The request body (JSON text, malloc'd) from the arguments. 0 or EXEC_EXIT_USAGE. */
static int build_body(const struct exec_args *a, char **body)
{
	json_t *o = json_object(), *av = json_array();
	char *in = NULL;
	size_t inlen = 0;
	int rc = EXEC_EXIT_USAGE;

	*body = NULL;
	if (o == NULL || av == NULL)
		goto out;
	for (int i = 0; i < a->argc; i++) {
		json_t *s = utf8_string(a->argv[i], strlen(a->argv[i]));
		if (s == NULL) {
			cli_error("exec: argument %d of the command is not UTF-8 (the API carries "
			          "argv as text; pass bytes through stdin)",
			          i + 1);
			goto out;
		}
		json_array_append_new(av, s);
	}
	json_object_set(o, "argv", av);
	if (a->timeout != NULL) {
		char *end;
		long t;
		errno = 0;
		t = strtol(a->timeout, &end, 10);
		if (a->timeout[0] < '0' || a->timeout[0] > '9' || *end != '\0' || errno != 0 ||
		    t > MAX_TIMEOUT_S) {
			cli_error("exec: --timeout takes whole seconds from 0 to %d (got \"%s\")",
			          MAX_TIMEOUT_S, a->timeout);
			goto out;
		}
		json_object_set_new(o, "timeout_s", json_integer(t));
	}
	if (json_object_size(a->env) > 0)
		json_object_set(o, "env", a->env);
	if (a->cwd != NULL) {
		json_t *s = utf8_string(a->cwd, strlen(a->cwd));
		if (s == NULL) {
			cli_error("exec: --cwd is not UTF-8");
			goto out;
		}
		json_object_set_new(o, "cwd", s);
	}
	if (a->stdin_file != NULL || a->stdin_all) {
		int r =
		    a->stdin_all ? read_all(0, &in, &inlen) : read_file(a->stdin_file, &in, &inlen);
		if (r != 0) {
			cli_error("exec: cannot read %s: %s",
			          a->stdin_all ? "stdin" : a->stdin_file, strerror(errno));
			goto out;
		}
		json_t *s = memchr(in, '\0', inlen) == NULL ? utf8_string(in, inlen) : NULL;
		if (s != NULL) {
			json_object_set_new(o, "stdin", s);
		} else {
			char *b64 = malloc(4 * ((inlen + 2) / 3) + 1);
			if (b64 == NULL)
				goto out;
			EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)in,
			                (int)inlen);
			json_object_set_new(o, "stdin_base64", json_string(b64));
			explicit_bzero(b64, strlen(b64));
			free(b64);
		}
	}
	*body = json_dumps(o, JSON_COMPACT);
	if (*body == NULL) {
		cli_error("exec: out of memory");
		goto out;
	}
	rc = 0;
out:
	if (in != NULL) {
		explicit_bzero(in, inlen);
		free(in);
	}
	json_decref(av);
	json_decref(o);
	return rc;
}

/* The request path: the URL's path, then /v1/workspaces/{ws}/exec. malloc'd. */
static char *request_path(const struct evhttp_uri *uri, const char *ws)
{
	const char *base = evhttp_uri_get_path(uri);
	char *enc = evhttp_uriencode(ws, -1, 0), *path = NULL;
	size_t bl = base != NULL ? strlen(base) : 0;

	if (enc == NULL)
		return NULL;
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	if (asprintf(&path, "%.*s/v1/workspaces/%s/exec", (int)bl, bl > 0 ? base : "", enc) < 0)
		path = NULL;
	free(enc);
	return path;
}

int client_exec(struct cli *cli, int argc, char **argv)
{
	struct exec_args a = {.url = DEFAULT_URL};
	struct exec_client c = {.state = EXC_SENT, .exit = EXEC_EXIT_UNREACHABLE};
	struct evhttp_uri *uri = NULL;
	struct evhttp_request *req;
	struct evkeyvalq *hdr;
	char *token = NULL, *body = NULL, *path = NULL, *auth = NULL, hostport[300], len[32];
	const char *host;
	int port, rc, t;
	struct sigaction ign = {.sa_handler = SIG_IGN};

	a.env = json_object();
	if (a.env == NULL)
		return EXEC_EXIT_USAGE;
	rc = parse_args(argc, argv, &a);
	if (rc == CLI_PARSED_HELP) {
		rc = CLI_EXIT_OK;
		goto out;
	}
	if (rc != 0)
		goto out;
	rc = EXEC_EXIT_USAGE;
	uri = evhttp_uri_parse(a.url);
	host = uri != NULL ? evhttp_uri_get_host(uri) : NULL;
	if (uri == NULL || host == NULL || host[0] == '\0' || evhttp_uri_get_scheme(uri) == NULL ||
	    strcmp(evhttp_uri_get_scheme(uri), "http") != 0) {
		cli_error("exec: --url must be http://HOST[:PORT][/PATH] (got \"%s\")", a.url);
		goto out;
	}
	port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
	snprintf(hostport, sizeof(hostport), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	if (load_token(cli, a.token_file, &token) != 0)
		goto out;
	if (build_body(&a, &body) != 0)
		goto out;
	path = request_path(uri, a.ws);
	if (path == NULL || asprintf(&auth, "Bearer %s", token) < 0) {
		auth = NULL;
		cli_error("exec: out of memory");
		goto out;
	}

	/* The socket to the broker may close under a write: that is an outcome to report,
	 * not a reason to die of SIGPIPE. Our own stdout closing is handled the same way. */
	sigaction(SIGPIPE, &ign, NULL);
	c.json = a.json;
	c.url = a.url;
	c.base = event_base_new();
	c.lines = evbuffer_new();
	if (c.base == NULL || c.lines == NULL)
		goto out;
	c.evcon = evhttp_connection_base_new(c.base, NULL, host, (unsigned short)port);
	if (c.evcon == NULL) {
		cli_error("cannot reach the broker at %s: cannot resolve %s", a.url, host);
		rc = EXEC_EXIT_UNREACHABLE;
		goto out;
	}
	t = a.timeout != NULL && atoi(a.timeout) > 0 ? atoi(a.timeout) : MAX_TIMEOUT_S;
	evhttp_connection_set_timeout(c.evcon, t + SLACK_TIMEOUT_S);
	req = evhttp_request_new(on_done, &c);
	if (req == NULL)
		goto out;
	evhttp_request_set_header_cb(req, on_header);
	evhttp_request_set_chunked_cb(req, on_chunk);
	evhttp_request_set_error_cb(req, on_error);
	hdr = evhttp_request_get_output_headers(req);
	snprintf(len, sizeof(len), "%zu", strlen(body));
	if (evhttp_add_header(hdr, "Host", hostport) != 0 ||
	    evhttp_add_header(hdr, "Authorization", auth) != 0 ||
	    evhttp_add_header(hdr, "Content-Type", "application/json") != 0 ||
	    evhttp_add_header(hdr, "Accept", "application/x-ndjson") != 0 ||
	    evhttp_add_header(hdr, "Content-Length", len) != 0 ||
	    (a.reason != NULL && evhttp_add_header(hdr, "X-Break-Glass-Reason", a.reason) != 0)) {
		cli_error("exec: --break-glass-reason must be one line of text");
		evhttp_request_free(req);
		goto out;
	}
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	if (evhttp_make_request(c.evcon, req, EVHTTP_REQ_POST, path) != 0) { /* req freed */
		cli_error("cannot reach the broker at %s", a.url);
		rc = EXEC_EXIT_UNREACHABLE;
		goto out;
	}
	event_base_dispatch(c.base);
	if (c.state != EXC_DONE) {
		cli_error("cannot reach the broker at %s: the connection ended", a.url);
		c.exit = c.state == EXC_STREAMING ? EXEC_EXIT_NO_LAST_FRAME : EXEC_EXIT_UNREACHABLE;
	}
	rc = c.exit;
out:
	if (c.evcon != NULL)
		evhttp_connection_free(c.evcon); /* and the request, if still in flight */
	if (c.lines != NULL)
		evbuffer_free(c.lines);
	if (c.base != NULL)
		event_base_free(c.base);
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	if (auth != NULL)
		explicit_bzero(auth, strlen(auth));
	if (body != NULL)
		explicit_bzero(body, strlen(body));
	free(token);
	free(auth);
	free(body);
	free(path);
	if (uri != NULL)
		evhttp_uri_free(uri);
	json_decref(a.env);
	return rc;
}
