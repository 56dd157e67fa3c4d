/* fuzz/fuzz_exec_request.c: the body of POST /v1/workspaces/{id}/exec (api/exec_request.c).
 * Any bytes: an accepted request keeps every documented limit and can be quoted for a host;
 * a refusal has a code, a message and names its field. An accepted request, written back as
 * JSON, is accepted again as the same request. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec_request.h"
#include "common/err.h"
#include "fuzz/fuzz.h"

static json_t *bytes_json(const struct eb_bytes *b)
{
	return json_stringn(b->p, b->len);
}

/* The request as a body again; the timeout as applied (0 would mean the default). */
static char *request_dump(const struct exec_request *req, size_t *len)
{
	json_t *o = json_object(), *argv = json_array(), *env = json_object();
	char *s;

	for (size_t i = 0; i < req->argc; i++)
		json_array_append_new(argv, bytes_json(&req->argv[i]));
	for (size_t i = 0; i < req->nenv; i++)
		json_object_set_new(env, req->env_names[i].p, bytes_json(&req->env_values[i]));
	json_object_set_new(o, "argv", argv);
	json_object_set_new(o, "env", env);
	json_object_set_new(o, "timeout_s", json_integer(req->timeout_s));
	json_object_set_new(o, "detach", json_boolean(req->detach));
	if (req->cwd != NULL)
		json_object_set_new(o, "cwd", json_string(req->cwd));
	if (req->name != NULL)
		json_object_set_new(o, "name", json_string(req->name));
	if (req->stdin_len > 0) {
		/* base64: stdin may be any bytes */
		char *b64 = malloc(4 * ((req->stdin_len + 2) / 3) + 1);

		FUZZ_CHECK(b64 != NULL, "out of memory");
		EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)req->stdin_data,
		                (int)req->stdin_len);
		json_object_set_new(o, "stdin_base64", json_string(b64));
		free(b64);
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	FUZZ_CHECK(s != NULL, "an accepted request does not dump");
	*len = strlen(s);
	return s;
}

static int bytes_eq(const struct eb_bytes *a, const struct eb_bytes *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

static void check_same(const struct exec_request *a, const struct exec_request *b)
{
	FUZZ_CHECK(a->argc == b->argc && a->nenv == b->nenv, "argc or nenv changed");
	for (size_t i = 0; i < a->argc; i++)
		FUZZ_CHECK(bytes_eq(&a->argv[i], &b->argv[i]), "argv[%zu] changed", i);
	for (size_t i = 0; i < a->nenv; i++)
		FUZZ_CHECK(bytes_eq(&a->env_names[i], &b->env_names[i]) &&
		               bytes_eq(&a->env_values[i], &b->env_values[i]),
		           "env %zu changed", i);
	FUZZ_CHECK((a->cwd == NULL) == (b->cwd == NULL) &&
	               (a->cwd == NULL || strcmp(a->cwd, b->cwd) == 0),
	           "cwd changed");
	FUZZ_CHECK((a->name == NULL) == (b->name == NULL) &&
	               (a->name == NULL || strcmp(a->name, b->name) == 0),
	           "name changed");
	FUZZ_CHECK(
	    a->stdin_len == b->stdin_len &&
	        (a->stdin_len == 0 || memcmp(a->stdin_data, b->stdin_data, a->stdin_len) == 0),
	    "stdin changed");
	FUZZ_CHECK(a->detach == b->detach && a->timeout_s == b->timeout_s,
	           "detach or timeout_s changed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct exec_request req, again;
	struct request_error e;
	int rc = request_parse((const char *)data, size, &fuzz_limits, &req, &e);
	char *body;
	size_t len;

	if (rc != 0) {
		fuzz_check_request_error(rc, &e);
		FUZZ_CHECK(req.root == NULL && req.stdin_data == NULL,
		           "a refusal left memory held");
		return 0;
	}
	fuzz_check_exec_request(&req, &fuzz_limits);
	body = request_dump(&req, &len);
	rc = request_parse(body, len, &fuzz_limits, &again, &e);
	FUZZ_CHECK(rc == 0, "the accepted request written back is refused: %s: %s", e.field,
	           e.message);
	check_same(&req, &again);
	request_free(&again);
	request_free(&req);
	free(body);
	return 0;
}
