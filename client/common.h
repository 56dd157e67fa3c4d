/* client/common.h: what every client subcommand (exec, ps, logs, kill, wait) shares: the
 * exit statuses, the token, the broker's URL and the HTTP connection to it, requests with
 * the headers every call carries, one-request calls, API and network errors, signal names,
 * the bytes of output frames, local files. */
#ifndef EB_CLIENT_COMMON_H
#define EB_CLIENT_COMMON_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/cli.h"

/* Exit statuses of the client. The remote exit code (0-255) and 128+N for a remote signal
 * N come first; the client's own outcomes are above 200, clear of 128+N for every signal
 * (at most 128+64), except the timeout, which says 124 as timeout(1) does. A batch, which
 * has many remote exit codes, says 0 or 1 for them. */
enum {
	CLIENT_EXIT_BATCH = 1,           /* a batch: the command did not exit 0 on every target */
	CLIENT_EXIT_TIMEOUT = 124,       /* exec_timeout: in the last frame, or 504 before start */
	CLIENT_EXIT_USAGE = 201,         /* the command line or a local file is wrong */
	CLIENT_EXIT_UNREACHABLE = 202,   /* no HTTP response from the broker */
	CLIENT_EXIT_AUTH = 203,          /* 401 or 403 */
	CLIENT_EXIT_NOT_FOUND = 204,     /* 404 */
	CLIENT_EXIT_HOST = 205,          /* 502, or transport_error in the last frame */
	CLIENT_EXIT_API = 206,           /* any other API error */
	CLIENT_EXIT_NO_LAST_FRAME = 207, /* the stream broke off: the outcome is unknown */
	CLIENT_EXIT_STILL_RUNNING = 208, /* wait: the exec still ran when --timeout passed */
};

#define CLIENT_DEFAULT_URL     "http://127.0.0.1:8080"
#define CLIENT_TOKEN_ENV       "EXEC_BROKER_TOKEN"
#define CLIENT_MAX_STDIN       (1024L * 1024 * 1024) /* max_body_bytes is at most 1 GiB */
#define CLIENT_MAX_ERROR_BODY  (64 * 1024)
#define CLIENT_MAX_TIMEOUT_S   86400 /* the largest exec_timeout_max_s a broker may have */
#define CLIENT_SLACK_TIMEOUT_S 60    /* beyond what the broker may take, before giving up */

/* One broker, as the command line names it, and the connection to it. Filled in steps
 * (client_conn_init, _auth, _connect) so that each step's error comes in the order a
 * subcommand checks its arguments; client_conn_free undoes whatever was done. */
struct client_conn {
	const char *what;   /* the subcommand, for messages ("exec") */
	const char *url;    /* --url as given */
	const char *cacert; /* --cacert: the CAs an https broker's certificate must chain to */
	bool tls;           /* https */
	struct ssl_ctx_st *ssl_ctx; /* made by the first https client_conn_connect */
	struct evhttp_uri *uri;
	const char *host; /* in uri */
	int port;
	char hostport[300];              /* the Host header */
	char *auth;                      /* "Bearer TOKEN": wiped when freed */
	const char *reason;              /* --break-glass-reason, or NULL */
	struct event_base *base;         /* made by the first client_conn_connect */
	struct evhttp_connection *evcon; /* between _connect and _disconnect */
};

/* Parses --url (http:// or https://) and keeps cacert (--cacert, or NULL: the system's
 * CAs, for https). 0, or CLIENT_EXIT_USAGE after printing why. */
int client_conn_init(struct client_conn *cn, const char *what, const char *url, const char *cacert);
/* Loads the token (client_token_load) into the Authorization header, and keeps reason
 * (may be NULL) for X-Break-Glass-Reason. 0, or CLIENT_EXIT_USAGE after printing why. */
int client_conn_auth(struct client_conn *cn, struct cli *cli, const char *token_file,
                     const char *reason);
/* A new HTTP connection (nothing is sent yet) whose reads and writes may each stay silent
 * timeout_s seconds. Also ignores SIGPIPE: a socket or stdout closing under a write is an
 * outcome to report, not a reason to die. 0, or an exit status after printing why. */
int client_conn_connect(struct client_conn *cn, int timeout_s);
/* client_conn_init and _auth in one, for a subcommand with nothing to check between them.
 * 0, or an exit status after printing why. */
int client_conn_setup(struct client_conn *cn, struct cli *cli, const char *what, const char *url,
                      const char *cacert, const char *token_file, const char *reason);
/* Lets the connection's socket stay silent that long, once the broker said how long the
 * exec may take (timeout_s of a first frame; ignored unless 1..CLIENT_MAX_TIMEOUT_S). */
void client_conn_set_silence(struct client_conn *cn, json_t *timeout_s);
/* Frees the connection (and a request still in flight on it); keeps the rest. */
void client_conn_disconnect(struct client_conn *cn);
void client_conn_free(struct client_conn *cn);
/* The URL's path, then prefix, id (percent-encoded), suffix. malloc'd; NULL if out of
 * memory. */
char *client_conn_path(const struct client_conn *cn, const char *prefix, const char *id,
                       const char *suffix);

/* Sends req (transferred: freed on every path) on cn's connection with the headers every
 * request carries (Host, Authorization, Accept, X-Break-Glass-Reason) and a JSON body
 * when body is not NULL. 0, or an exit status after printing why. */
int client_request_send(struct client_conn *cn, struct evhttp_request *req,
                        enum evhttp_cmd_type method, const char *path, const char *accept,
                        const char *body);

/* How a request failed before its reply was complete, as libevent's error callback said. */
struct client_neterr {
	bool have;
	enum evhttp_request_error err;
	int errnum;
};
/* Keeps err and errno (call it first thing in the error callback). */
void client_neterr_note(struct client_neterr *e, enum evhttp_request_error err);
/* Why the connection ended, in words; buf is used for an errno. */
const char *client_neterr_text(const struct client_neterr *e, char *buf, size_t len);
/* "cannot reach the broker at URL: WHY". */
void client_print_unreachable(const struct client_conn *cn, const struct client_neterr *e);

/* A whole reply to one call. */
struct client_reply {
	int status;     /* the HTTP status */
	char *body;     /* NUL-terminated, malloc'd ("" when none) */
	size_t len;     /* without the NUL */
	json_t *json;   /* the body when it is a JSON object, else NULL */
	char *location; /* the Location header, malloc'd, or NULL */
};
/* Sends one request (body: JSON text or NULL) on a connection of its own, and runs the
 * loop until its whole reply came or timeout_s of silence passed. 0 with reply filled when
 * the status is 2xx; otherwise an exit status after printing why (the API error, an
 * unreachable broker). A connection is not kept for the next call: a broker may close an
 * idle one just as the next request goes out, which would look like an unreachable broker. */
int client_call(struct client_conn *cn, enum evhttp_cmd_type method, const char *path,
                const char *body, int timeout_s, struct client_reply *reply);
void client_reply_free(struct client_reply *r);
/* Writes r's body to stdout as it came, then a newline if it has none. 0, or 128+SIGPIPE
 * when stdout is gone. */
int client_reply_print(const struct client_reply *r);

/* The exit status of an API error, from its HTTP status (0 in a last frame) and code
 * (may be NULL). */
int client_exit_of_error(int status, const char *code);
/* Prints "exec-broker: CODE: MESSAGE" from an error object {"code","message"}; false (and
 * prints nothing) if err is not one. */
bool client_print_api_error(json_t *err);
/* The API error in a reply body of this status, printed; returns its exit status. A body
 * that is not an API error (libevent's own HTML replies) is named by its status. */
int client_error_reply(int status, const char *body, size_t len);

/* The local number of a signal named as the broker names it ("KILL"; "SIGKILL" too); 0 if
 * unknown. */
int client_signal_number(const char *name);
/* The broker's name of local signal number num ("KILL"); NULL if unknown. */
const char *client_signal_name(int num);

/* The bytes of one output frame {"stream","data","encoding"?}. */
struct client_output {
	int fd;           /* 1 for stdout, 2 for stderr; -1: a stream this client does not know */
	bool truncated;   /* a {"truncated":true} frame: no data */
	const char *data; /* the bytes: in the frame, or in owned */
	size_t len;
	unsigned char *owned; /* decoded base64; freed by client_output_free */
};
/* Decodes frame f of this stream (base64 too). 0 (o->fd < 0 for an unknown stream, which
 * has nothing else filled), or EB_ERR_INVAL if the data is malformed, EB_ERR_NOMEM. */
int client_output_decode(json_t *f, const char *stream, struct client_output *o);
void client_output_free(struct client_output *o);
/* Standard padded base64 into a malloc'd buffer. 0, EB_ERR_INVAL or EB_ERR_NOMEM. */
int client_base64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* --timeout S: whole seconds from 0 to CLIENT_MAX_TIMEOUT_S into *out. 0, or
 * CLIENT_EXIT_USAGE after printing why (what: the subcommand). */
int client_timeout_parse(const char *what, const char *s, int *out);

/* The token: the first line of path, or $EXEC_BROKER_TOKEN, blanks trimmed; printable
 * ASCII only (it becomes a header). 0 with *tok malloc'd (the caller wipes and frees it),
 * or EB_ERR_IO or EB_ERR_INVAL after printing why. */
int client_token_load(struct cli *cli, const char *what, const char *path, char **tok);
/* The whole of fd (at most CLIENT_MAX_STDIN bytes), malloc'd into *out. 0, or EB_ERR_IO
 * or EB_ERR_NOMEM with errno set (EFBIG when it is longer). */
int client_read_all(int fd, char **out, size_t *outlen);
int client_read_file(const char *path, char **out, size_t *outlen);
/* A JSON string of s[0..len), or NULL if it is not UTF-8. */
json_t *client_utf8_string(const char *s, size_t len);

#endif
