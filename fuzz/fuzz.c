/* fuzz/fuzz.c: the helpers every target links (fuzz/fuzz.h). */
#include "fuzz/fuzz.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"
#include "pool/command.h"

const struct request_limits fuzz_limits = {
    .timeout_default_s = 30,
    .timeout_max_s = 120,
    .detached_default_s = 3600,
    .detached_max_s = 86400,
    .stdin_max = 1024 * 1024,
};

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz: property failed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static bool utf8_whole(const char *s)
{
	bool incomplete;
	size_t n = strlen(s);

	return utf8_valid_prefix((const unsigned char *)s, n, &incomplete) == n;
}

void fuzz_check_exec_request(const struct exec_request *req, const struct request_limits *lim)
{
	size_t total = 0, blen;
	char *body = NULL, err[200] = "";
	int max = req->detach ? lim->detached_max_s : lim->timeout_max_s;

	FUZZ_CHECK(req->argc >= 1 && req->argc <= REQ_MAX_ARGV, "argc %zu", req->argc);
	FUZZ_CHECK(req->argv[0].len > 0, "argv[0] empty");
	for (size_t i = 0; i < req->argc; i++) {
		FUZZ_CHECK(memchr(req->argv[i].p, '\0', req->argv[i].len) == NULL,
		           "argv[%zu] holds a NUL", i);
		FUZZ_CHECK(req->argv[i].len + 1 <= REQ_MAX_ARG_STRLEN, "argv[%zu] is %zu bytes", i,
		           req->argv[i].len);
		total += req->argv[i].len + 1;
	}
	FUZZ_CHECK(total <= REQ_MAX_ARGS_BYTES, "argv is %zu bytes", total);
	FUZZ_CHECK(req->nenv <= REQ_MAX_ENV, "nenv %zu", req->nenv);
	for (size_t i = 0; i < req->nenv; i++) {
		const struct eb_bytes *n = &req->env_names[i], *v = &req->env_values[i];

		FUZZ_CHECK(command_env_name_valid(n->p, n->len), "env name %zu invalid", i);
		FUZZ_CHECK(memchr(v->p, '\0', v->len) == NULL, "env value %zu holds a NUL", i);
		FUZZ_CHECK(n->len + 1 + v->len + 1 <= REQ_MAX_ARG_STRLEN, "env %zu too long", i);
		total += n->len + 1 + v->len + 1;
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(n->len != req->env_names[j].len ||
			               memcmp(n->p, req->env_names[j].p, n->len) != 0,
			           "env name %zu repeated", i);
	}
	FUZZ_CHECK(total <= REQ_MAX_ARGS_BYTES, "argv and env are %zu bytes", total);
	if (req->cwd != NULL)
		FUZZ_CHECK(req->cwd[0] == '/' && strlen(req->cwd) <= REQ_MAX_CWD, "cwd \"%.40s\"",
		           req->cwd);
	FUZZ_CHECK(req->stdin_len <= lim->stdin_max, "stdin %zu bytes", req->stdin_len);
	FUZZ_CHECK(req->stdin_len == 0 || req->stdin_data != NULL, "stdin without data");
	FUZZ_CHECK(req->timeout_s >= 1 && req->timeout_s <= max, "timeout_s %d (max %d)",
	           req->timeout_s, max);
	FUZZ_CHECK(!req->timeout_clamped || req->timeout_s == max, "clamped to %d", req->timeout_s);
	if (req->name != NULL) {
		size_t n = strlen(req->name);

		FUZZ_CHECK(req->detach, "a name without detach");
		FUZZ_CHECK(n >= 1 && n <= REQ_MAX_NAME, "name of %zu bytes", n);
	}
	/* Whatever the request accepts, the pool can quote for the host. */
	struct command_spec spec = {.argv = req->argv,
	                            .argc = req->argc,
	                            .env_names = req->env_names,
	                            .env_values = req->env_values,
	                            .nenv = req->nenv,
	                            .cwd = req->cwd};
	int rc = command_build(&spec, &body, &blen, err, sizeof(err));
	FUZZ_CHECK(rc == 0, "command_build refused an accepted request: %s", err);
	FUZZ_CHECK(blen + 1 <= COMMAND_MAX_LEN && strlen(body) == blen, "command of %zu bytes",
	           blen);
	free(body);
}

void fuzz_check_request_error(int rc, const struct request_error *e)
{
	FUZZ_CHECK(rc == EB_ERR_INVAL, "refusal returned %d", rc);
	FUZZ_CHECK(e->code != NULL, "refusal without a code");
	FUZZ_CHECK(strcmp(e->code, "invalid_json") == 0 || strcmp(e->code, "invalid_request") == 0,
	           "unknown code %s", e->code);
	FUZZ_CHECK(e->message[0] != '\0', "refusal without a message");
	FUZZ_CHECK(utf8_whole(e->field), "field is not UTF-8");
	/* Only a body that is no JSON object, or a member whose name is empty, names no field. */
	if (e->field[0] == '\0')
		FUZZ_CHECK(strcmp(e->code, "invalid_json") == 0 ||
		               strcmp(e->message, "the body must be a JSON object") == 0 ||
		               strncmp(e->message, "unknown field \"\"", 16) == 0 ||
		               strcmp(e->message, "out of memory") == 0,
		           "refusal names no field: %s", e->message);
}
