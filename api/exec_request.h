/* api/exec_request.h: validation of the body of POST /v1/workspaces/{id}/exec. A pure
 * function: JSON text in, either a validated request or one error (a stable code, the
 * field, and a message a person can act on) out. Nothing here touches a host. */
#ifndef EB_API_EXEC_REQUEST_H
#define EB_API_EXEC_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "pool/command.h"

#define REQ_MAX_ARGV 256
#define REQ_MAX_ENV  64
/* argv and env together, as the program receives them: the default request body. Linux
 * gives a new program at least 2 MiB of them (a quarter of the stack limit), so this leaves
 * room for the host's own environment. */
#define REQ_MAX_ARGS_BYTES (1024 * 1024)
/* One argv element, or one env NAME=value, with its NUL: Linux's MAX_ARG_STRLEN (32 pages),
 * past which the host's kernel refuses to run the program (E2BIG). */
#define REQ_MAX_ARG_STRLEN (128 * 1024)
#define REQ_MAX_CWD        4096
#define REQ_MAX_NAME       64 /* a detached exec's name */

struct exec_request {
	struct eb_bytes argv[REQ_MAX_ARGV];
	size_t argc;
	struct eb_bytes env_names[REQ_MAX_ENV], env_values[REQ_MAX_ENV];
	size_t nenv;
	const char *cwd;  /* NULL if not given */
	char *stdin_data; /* malloc'd (decoded when stdin_base64), or NULL */
	size_t stdin_len;
	bool stdin_borrowed; /* stdin_data belongs to another request (a batch's) */
	bool detach;         /* "detach": true */
	const char *name;    /* a detached exec's name, or NULL */
	int timeout_s;       /* after defaulting and clamping (the detached limits if detach) */
	int timeout_clamped;
	json_t *root; /* owns the strings argv, env and cwd point into */
};

struct request_error {
	const char *code; /* "invalid_json" or "invalid_request" */
	char field[64];   /* "argv", "argv[3]", "env.LANG", ... or "" */
	char message[256];
};

struct request_limits {
	int timeout_default_s;                  /* exec_timeout_default_s */
	int timeout_max_s;                      /* exec_timeout_max_s */
	int detached_default_s, detached_max_s; /* exec_detached_timeout_default_s, _max_s */
	size_t stdin_max;                       /* bytes, after decoding */
};

/* Parses and validates body[0..len). On success 0 and *req filled (request_free it);
 * otherwise EB_ERR_INVAL with *e filled and *req empty. */
int request_parse(const char *body, size_t len, const struct request_limits *lim,
                  struct exec_request *req, struct request_error *e);
/* The same for a parsed body: root (an object or not; taken over, freed by request_free or
 * on failure). */
int request_from_json(json_t *root, const struct request_limits *lim, struct exec_request *req,
                      struct request_error *e);
void request_free(struct exec_request *req);

/* The first member of the object root whose name is not in known (NULL-terminated), or
 * NULL when there is none. */
const char *request_unknown_field(json_t *root, const char *const *known);

/* Fills *e (code, field, message) and returns EB_ERR_INVAL: a validator's one failure. */
int request_error_set(struct request_error *e, const char *code, const char *field, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

#endif
