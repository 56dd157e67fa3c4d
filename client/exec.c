/* client/exec.c: `exec-broker exec`, the API's client for people and scripts. One
 * POST /v1/workspaces/{id}/exec (client/stream.c); the NDJSON frames are decoded onto this
 * process's stdout and stderr as they arrive, and the outcome (the last frame, or the API
 * error, or how the connection failed) becomes the exit status. */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "client/common.h"
#include "client/detached.h"
#include "client/stream.h"
#include "common/fdio.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: exec-broker exec [--url URL] [--token-file FILE] [--timeout S]\n"
	    "                        [--env NAME=VALUE]... [--cwd DIR] [--stdin-file FILE | -i]\n"
	    "                        [--break-glass-reason TEXT] [--json]\n"
	    "                        [--detach [--name NAME]] WORKSPACE -- ARGV...\n"
	    "\n"
	    "Runs ARGV on WORKSPACE through the broker's HTTP API (POST\n"
	    "/v1/workspaces/WORKSPACE/exec), exactly as given: no shell is added. The remote\n"
	    "stdout and stderr are written to this process's stdout and stderr as they\n"
	    "arrive, byte for byte.\n"
	    "  --url URL            the broker (default " CLIENT_DEFAULT_URL "; http only)\n"
	    "  --token-file FILE    the API token: the file's first line; otherwise the\n"
	    "                       environment variable " CLIENT_TOKEN_ENV "\n"
	    "  --timeout S          seconds the command may run (default: the broker's)\n"
	    "  --env NAME=VALUE     set an environment variable (repeatable)\n"
	    "  --cwd DIR            absolute directory to run in\n"
	    "  --stdin-file FILE    the command's stdin (default: empty)\n"
	    "  -i, --stdin          read this process's stdin to its end and pass it on\n"
	    "  --break-glass-reason TEXT\n"
	    "                       why an admin token is used (audited; required for one)\n"
	    "  --json               print the NDJSON frames, one per line, instead of\n"
	    "                       decoding them (with --detach: the exec object)\n"
	    "  --detach             start the command and return: print its exec_id on\n"
	    "                       stdout and exit 0 once it runs; see exec-broker ps, logs,\n"
	    "                       kill and wait\n"
	    "  --name NAME          with --detach: a name for it, 1 to 64 of A-Z a-z 0-9 . _ -,\n"
	    "                       unique among the workspace's running execs\n"
	    "\n"
	    "Exit status (with --detach: 0 once it started, or one of 201-206):\n"
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

/* Starts a detached exec: the 202 reply's exec_id (or, with --json, the exec object) on
 * stdout. Returns the exit status. */
static int start_detached(struct client_conn *cn, const char *path, const char *body, int timeout_s,
                          bool json)
{
	struct client_reply r;
	const char *id;
	int rc = client_call(cn, EVHTTP_REQ_POST, path, body, timeout_s, &r);

	if (rc != 0)
		goto out;
	id = json_string_value(json_object_get(r.json, "exec_id"));
	if (id == NULL)
		id = detached_id_from_location(r.location);
	if (r.status != 202 || id == NULL) {
		/* A broker without detached execs refuses the field (400); one that took
		 * it for an attached exec would have answered 200 once the command ended. */
		cli_error("exec: the broker answered HTTP %d without a detached exec's id",
		          r.status);
		rc = CLIENT_EXIT_API;
	} else if (json) {
		rc = client_reply_print(&r);
	} else if (fdio_write_all(1, id, strlen(id), -1) != 0 ||
	           fdio_write_all(1, "\n", 1, -1) != 0) {
		rc = 128 + SIGPIPE;
	}
out:
	client_reply_free(&r);
	return rc;
}

/* One exec as it streams: what its frames have said so far. */
struct exec_client {
	struct client_stream st;
	struct client_conn *cn;
	bool json;   /* --json */
	int nframes; /* frames seen */
	bool trunc[2];
	char exec_id[64];
};

/* One output frame {"stream","data","encoding"?}: its bytes to fd 1 or 2. */
static int output_frame(struct exec_client *c, json_t *f, const char *stream)
{
	struct client_output o;
	int rc;

	if (client_output_decode(f, stream, &o) != 0)
		return -1;
	if (o.fd < 0)
		return 0;
	if (o.truncated) {
		c->trunc[o.fd - 1] = true;
		return 0;
	}
	rc = fdio_write_all(o.fd, o.data, o.len, -1);
	client_output_free(&o);
	if (rc != 0) {
		/* Our own stdout or stderr went away (as `| head` does): stop, as SIGPIPE
		 * would have stopped us; the broker then cancels the command. */
		client_stream_stop(&c->st, 128 + SIGPIPE);
	}
	return 0;
}

/* The last frame: the exit code, the signal or the error. */
static void last_frame(struct exec_client *c, json_t *f)
{
	json_t *code = json_object_get(f, "exit_code"), *err = json_object_get(f, "error");
	const char *sig = json_string_value(json_object_get(f, "signal"));
	int exit_status;

	if (!c->json)
		for (int i = 0; i < 2; i++)
			if (c->trunc[i])
				cli_error("the remote %s was cut at the broker's output_cap_bytes; "
				          "the rest was not sent",
				          i == 0 ? "stdout" : "stderr");
	if (json_is_integer(code)) {
		exit_status = (int)(json_integer_value(code) & 0xff);
	} else if (sig != NULL) {
		int n = client_signal_number(sig);
		if (n == 0) {
			cli_error("the remote command was ended by signal %s, unknown here", sig);
			exit_status = CLIENT_EXIT_API;
		} else {
			exit_status = 128 + n;
		}
	} else if (json_is_object(err) && client_print_api_error(err)) {
		exit_status =
		    client_exit_of_error(0, json_string_value(json_object_get(err, "code")));
	} else {
		cli_error("the broker's last frame says neither an exit code, a signal nor an "
		          "error");
		exit_status = CLIENT_EXIT_API;
	}
	client_stream_decide(&c->st, exit_status);
}

static void first_frame(struct exec_client *c, json_t *f)
{
	const char *id = json_string_value(json_object_get(f, "exec_id"));

	if (id != NULL)
		snprintf(c->exec_id, sizeof(c->exec_id), "%s", id);
	client_conn_set_silence(c->cn, json_object_get(f, "timeout_s"));
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
		client_stream_stop(&c->st, 128 + SIGPIPE);
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

static void on_line(void *arg, const char *line, size_t len)
{
	struct exec_client *c = arg;

	if (handle_frame(c, line, len) != 0 && c->st.state == STREAM_LINES) {
		cli_error("the broker sent a line that is not a frame; the outcome of exec %s is "
		          "unknown (see the audit log)",
		          c->exec_id[0] ? c->exec_id : "(no id)");
		client_stream_stop(&c->st, CLIENT_EXIT_NO_LAST_FRAME);
	}
}

/* The exit status of a stream that ended before a last frame or an API error. */
static int exec_ended(struct exec_client *c)
{
	char buf[128];

	if (c->st.state != STREAM_ENDED) {
		/* The loop ran out of events without the request's end. */
		cli_error("cannot reach the broker at %s: the connection ended", c->cn->url);
		return c->st.state == STREAM_LINES ? CLIENT_EXIT_NO_LAST_FRAME
		                                   : CLIENT_EXIT_UNREACHABLE;
	}
	if (c->st.ended_in == STREAM_SENT) {
		client_print_unreachable(c->cn, &c->st.neterr);
		return CLIENT_EXIT_UNREACHABLE;
	}
	cli_error("the stream ended without a last frame (%s); the outcome of exec %s is "
	          "unknown (see the audit log)",
	          client_stream_why(&c->st, buf, sizeof(buf)),
	          c->exec_id[0] ? c->exec_id : "(no id)");
	return CLIENT_EXIT_NO_LAST_FRAME;
}

/* Runs the exec, its output onto ours. Returns the exit status. */
static int run_attached(struct client_conn *cn, const char *path, const char *body, bool json)
{
	struct exec_client c = {.cn = cn, .json = json};
	int rc;

	c.st.id = c.exec_id;
	rc = client_stream_start(&c.st, cn, EVHTTP_REQ_POST, path, body, on_line, &c);
	if (rc == 0) {
		client_stream_run(&c.st);
		rc = c.st.state == STREAM_DECIDED ? c.st.exit : exec_ended(&c);
	}
	client_conn_disconnect(cn); /* before the stream its request points to */
	client_stream_free(&c.st);
	return rc;
}

/* Parsed command line. */
struct exec_args {
	const char *url, *token_file, *timeout, *cwd, *stdin_file, *reason, *ws;
	const char *name; /* --name, with --detach */
	bool stdin_all, json, detach;
	json_t *env; /* object; owned */
	char **argv;
	int argc;
};

enum {
	O_URL = 1,
	O_TOKEN_FILE,
	O_TIMEOUT,
	O_ENV,
	O_CWD,
	O_STDIN_FILE,
	O_REASON,
	O_JSON,
	O_DETACH,
	O_NAME
};

/* --name: only with --detach, and as the API takes it. 0 or CLIENT_EXIT_USAGE. */
static int check_name(const struct exec_args *a)
{
	if (a->name == NULL)
		return 0;
	if (!a->detach) {
		cli_error("exec: --name names a detached exec: give --detach too");
		return CLIENT_EXIT_USAGE;
	}
	if (!detached_name_valid(a->name)) {
		cli_error("exec: --name takes 1 to 64 of A-Z a-z 0-9 . _ - (got \"%s\")", a->name);
		return CLIENT_EXIT_USAGE;
	}
	return 0;
}

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
	    {"detach", no_argument, NULL, O_DETACH},
	    {"name", required_argument, NULL, O_NAME},
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
				return CLIENT_EXIT_USAGE;
			}
			v = client_utf8_string(eq + 1, strlen(eq + 1));
			char *name = strndup(optarg, (size_t)(eq - optarg));
			if (v == NULL || name == NULL ||
			    json_object_set_new(a->env, name, v) != 0) {
				cli_error("exec: --env %s: names and values must be UTF-8 text",
				          name != NULL ? name : "");
				free(name);
				return CLIENT_EXIT_USAGE;
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
		case O_DETACH:
			a->detach = true;
			break;
		case O_NAME:
			a->name = optarg;
			break;
		case CLI_OPT_HELP:
			usage(stdout);
			return CLI_PARSED_HELP;
		default:
			usage(stderr); /* getopt_long has said what it did not know */
			return CLIENT_EXIT_USAGE;
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
		return CLIENT_EXIT_USAGE;
	}
	a->ws = argv[optind];
	if (dd >= argc - 1) {
		cli_error("exec: missing the command: exec-broker exec %s -- ARGV...", a->ws);
		return CLIENT_EXIT_USAGE;
	}
	a->argv = argv + dd + 1;
	a->argc = argc - dd - 1;
	if (a->stdin_file != NULL && a->stdin_all) {
		cli_error("exec: give --stdin-file or -i, not both");
		return CLIENT_EXIT_USAGE;
	}
	return check_name(a);
}

/* The request body (JSON text, malloc'd) from the arguments. 0 or CLIENT_EXIT_USAGE. */
static int build_body(const struct exec_args *a, char **body)
{
	json_t *o = json_object(), *av = json_array();
	char *in = NULL;
	size_t inlen = 0;
	int rc = CLIENT_EXIT_USAGE;

	*body = NULL;
	if (o == NULL || av == NULL)
		goto out;
	for (int i = 0; i < a->argc; i++) {
		json_t *s = client_utf8_string(a->argv[i], strlen(a->argv[i]));
		if (s == NULL) {
			cli_error("exec: argument %d of the command is not UTF-8 (the API carries "
			          "argv as text; pass bytes through stdin)",
			          i + 1);
			goto out;
		}
		json_array_append_new(av, s);
	}
	json_object_set(o, "argv", av);
	if (a->detach)
		json_object_set_new(o, "detach", json_true());
	if (a->name != NULL)
		json_object_set_new(o, "name", json_string(a->name));
	if (a->timeout != NULL) {
		char *end;
		long t;
		errno = 0;
		t = strtol(a->timeout, &end, 10);
		if (a->timeout[0] < '0' || a->timeout[0] > '9' || *end != '\0' || errno != 0 ||
		    t > CLIENT_MAX_TIMEOUT_S) {
			cli_error("exec: --timeout takes whole seconds from 0 to %d (got \"%s\")",
			          CLIENT_MAX_TIMEOUT_S, a->timeout);
			goto out;
		}
		json_object_set_new(o, "timeout_s", json_integer(t));
	}
	if (json_object_size(a->env) > 0)
		json_object_set(o, "env", a->env);
	if (a->cwd != NULL) {
		json_t *s = client_utf8_string(a->cwd, strlen(a->cwd));
		if (s == NULL) {
			cli_error("exec: --cwd is not UTF-8");
			goto out;
		}
		json_object_set_new(o, "cwd", s);
	}
	if (a->stdin_file != NULL || a->stdin_all) {
		int r = a->stdin_all ? client_read_all(0, &in, &inlen)
		                     : client_read_file(a->stdin_file, &in, &inlen);
		if (r != 0) {
			cli_error("exec: cannot read %s: %s",
			          a->stdin_all ? "stdin" : a->stdin_file, strerror(errno));
			goto out;
		}
		json_t *s = memchr(in, '\0', inlen) == NULL ? client_utf8_string(in, inlen) : NULL;
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

int client_exec(struct cli *cli, int argc, char **argv)
{
	struct exec_args a = {.url = CLIENT_DEFAULT_URL};
	struct client_conn cn = {0};
	char *body = NULL, *path = NULL;
	int rc, t;

	a.env = json_object();
	if (a.env == NULL)
		return CLIENT_EXIT_USAGE;
	rc = parse_args(argc, argv, &a);
	if (rc == CLI_PARSED_HELP) {
		rc = CLI_EXIT_OK;
		goto out;
	}
	if (rc != 0)
		goto out;
	rc = client_conn_init(&cn, "exec", a.url);
	if (rc == 0)
		rc = client_conn_auth(&cn, cli, a.token_file, a.reason);
	if (rc == 0)
		rc = build_body(&a, &body);
	if (rc != 0)
		goto out;
	path = client_conn_path(&cn, "/v1/workspaces/", a.ws, "/exec");
	if (path == NULL) {
		cli_error("exec: out of memory");
		rc = CLIENT_EXIT_USAGE;
		goto out;
	}
	t = a.timeout != NULL && atoi(a.timeout) > 0 ? atoi(a.timeout) : CLIENT_MAX_TIMEOUT_S;
	if (a.detach) {
		rc = start_detached(&cn, path, body, t + CLIENT_SLACK_TIMEOUT_S, a.json);
	} else {
		rc = client_conn_connect(&cn, t + CLIENT_SLACK_TIMEOUT_S);
		if (rc == 0)
			rc = run_attached(&cn, path, body, a.json);
	}
out:
	client_conn_free(&cn);
	if (body != NULL)
		explicit_bzero(body, strlen(body));
	free(body);
	free(path);
	json_decref(a.env);
	return rc;
}
