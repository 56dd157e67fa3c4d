/* api/exec_request.c: exec request validation. Every field is checked; the first problem
 * found is reported, naming the field. */
#include "api/exec_request.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"

int request_error_set(struct request_error *e, const char *code, const char *field, const char *fmt,
                      ...)
{
	va_list ap;

	e->code = code;
	snprintf(e->field, sizeof(e->field), "%.*s",
	         (int)utf8_cut(field, strlen(field), sizeof(e->field) - 1), field);
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return EB_ERR_INVAL;
}

static int parse_argv(json_t *v, struct exec_request *req, struct request_error *e)
{
	size_t total = 0, i;
	json_t *item;
	char field[32];

	if (v == NULL)
		return request_error_set(
		    e, "invalid_request", "argv",
		    "argv is required: an array of strings, e.g. [\"ls\", \"-l\"]");
	if (json_is_string(v))
		return request_error_set(
		    e, "invalid_request", "argv",
		    "argv must be an array of strings, not one string: the broker never "
		    "adds a shell; to use one, pass [\"sh\", \"-c\", \"...\"]");
	if (!json_is_array(v))
		return request_error_set(e, "invalid_request", "argv",
		                         "argv must be an array of strings");
	if (json_array_size(v) == 0 || json_array_size(v) > REQ_MAX_ARGV)
		return request_error_set(e, "invalid_request", "argv",
		                         "argv must have 1 to %d elements (has %zu)", REQ_MAX_ARGV,
		                         json_array_size(v));
	json_array_foreach(v, i, item)
	{
		snprintf(field, sizeof(field), "argv[%zu]", i);
		if (!json_is_string(item))
			return request_error_set(e, "invalid_request", field, "%s must be a string",
			                         field);
		const char *s = json_string_value(item);
		size_t len = json_string_length(item);
		if (memchr(s, '\0', len) != NULL)
			return request_error_set(e, "invalid_request", field,
			                         "%s contains a NUL character", field);
		if (i == 0 && len == 0)
			return request_error_set(e, "invalid_request", field,
			                         "argv[0] must name the program to run");
		if (len + 1 > REQ_MAX_ARG_STRLEN)
			return request_error_set(
			    e, "invalid_request", field,
			    "%s is %zu bytes; Linux runs no program given one argument of "
			    "more than %d bytes: pass large data through stdin",
			    field, len, REQ_MAX_ARG_STRLEN - 1);
		total += len + 1;
		req->argv[i] = (struct eb_bytes){s, len};
	}
	if (total > REQ_MAX_ARGS_BYTES)
		return request_error_set(
		    e, "invalid_request", "argv",
		    "argv is %zu bytes in all; at most %d are allowed (pass large data "
		    "through stdin)",
		    total, REQ_MAX_ARGS_BYTES);
	req->argc = json_array_size(v);
	return 0;
}

/* "detach": true, and a name only with it. */
static int parse_detach(json_t *d, json_t *n, struct exec_request *req, struct request_error *e)
{
	const char *s;
	size_t len;

	if (d != NULL && !json_is_boolean(d))
		return request_error_set(e, "invalid_request", "detach",
		                         "detach must be true or false");
	req->detach = d != NULL && json_is_true(d);
	if (n == NULL || json_is_null(n))
		return 0;
	if (!req->detach)
		return request_error_set(e, "invalid_request", "name",
		                         "only a detached exec has a name: add \"detach\": true");
	if (!json_is_string(n))
		return request_error_set(e, "invalid_request", "name", "name must be a string");
	s = json_string_value(n);
	len = json_string_length(n);
	if (len < 1 || len > REQ_MAX_NAME ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	              "0123456789._-") != len)
		return request_error_set(e, "invalid_request", "name",
		                         "name must be 1-%d characters of A-Z a-z 0-9 . _ -",
		                         REQ_MAX_NAME);
	req->name = s;
	return 0;
}

static int parse_timeout(json_t *v, const struct request_limits *lim, struct exec_request *req,
                         struct request_error *e)
{
	int def = req->detach ? lim->detached_default_s : lim->timeout_default_s;
	int max = req->detach ? lim->detached_max_s : lim->timeout_max_s;
	json_int_t t;

	req->timeout_s = def;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return request_error_set(e, "invalid_request", "timeout_s",
		                         "timeout_s must be a whole number of seconds");
	t = json_integer_value(v);
	if (t < 0)
		return request_error_set(
		    e, "invalid_request", "timeout_s",
		    "timeout_s must not be negative (0 means the default, %d s)", def);
	if (t > max) {
		req->timeout_s = max;
		req->timeout_clamped = 1;
	} else if (t > 0) {
		req->timeout_s = (int)t;
	}
	return 0;
}

static int decode_base64(const char *s, size_t len, char **out, size_t *outlen)
{
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	unsigned char *buf = malloc(len / 4 * 3 + 4);
	int n1 = 0, n2 = 0, rc = EB_ERR_INVAL;

	if (ctx == NULL || buf == NULL)
		goto out;
	/* Strict: only the standard alphabet and padding, length a multiple of 4. */
	if (len % 4 != 0 || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                              "0123456789+/=") != len)
		goto out;
	EVP_DecodeInit(ctx);
	if (EVP_DecodeUpdate(ctx, buf, &n1, (const unsigned char *)s, (int)len) < 0 ||
	    EVP_DecodeFinal(ctx, buf + n1, &n2) < 0)
		goto out;
	*out = (char *)buf;
	*outlen = (size_t)(n1 + n2);
	buf = NULL;
	rc = 0;
out:
	free(buf);
	EVP_ENCODE_CTX_free(ctx);
	return rc;
}

static int parse_stdin(json_t *text, json_t *b64, const struct request_limits *lim,
                       struct exec_request *req, struct request_error *e)
{
	if (text != NULL && b64 != NULL)
		return request_error_set(e, "invalid_request", "stdin",
		                         "give stdin or stdin_base64, not both");
	if (text != NULL) {
		if (!json_is_string(text))
			return request_error_set(
			    e, "invalid_request", "stdin",
			    "stdin must be a string (binary data goes in stdin_base64)");
		req->stdin_len = json_string_length(text);
		req->stdin_data = malloc(req->stdin_len + 1);
		if (req->stdin_data == NULL)
			return EB_ERR_NOMEM;
		memcpy(req->stdin_data, json_string_value(text), req->stdin_len);
	} else if (b64 != NULL) {
		if (!json_is_string(b64) ||
		    decode_base64(json_string_value(b64), json_string_length(b64), &req->stdin_data,
		                  &req->stdin_len) != 0)
			return request_error_set(
			    e, "invalid_request", "stdin_base64",
			    "stdin_base64 must be a string of standard base64 (RFC 4648, "
			    "with padding)");
	}
	if (req->stdin_len > lim->stdin_max)
		return request_error_set(e, "invalid_request", text ? "stdin" : "stdin_base64",
		                         "stdin is %zu bytes; at most %zu are allowed",
		                         req->stdin_len, lim->stdin_max);
	return 0;
}

static int parse_env(json_t *v, struct exec_request *req, struct request_error *e)
{
	const char *name;
	json_t *val;
	size_t total = 0;
	char field[80];

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return request_error_set(
		    e, "invalid_request", "env",
		    "env must be an object of strings, e.g. {\"LANG\": \"C\"}");
	if (json_object_size(v) > REQ_MAX_ENV)
		return request_error_set(e, "invalid_request", "env",
		                         "env has %zu variables; at most %d", json_object_size(v),
		                         REQ_MAX_ENV);
	json_object_foreach(v, name, val)
	{
		size_t nlen = strlen(name);
		snprintf(field, sizeof(field), "env.%.*s", (int)utf8_cut(name, nlen, 60), name);
		/* jansson keys are NUL-terminated: a key with a NUL in it is cut there, so
		 * the length check below refuses it along with every other bad name. */
		if (!command_env_name_valid(name, nlen))
			return request_error_set(
			    e, "invalid_request", field,
			    "environment variable names must match [A-Za-z_][A-Za-z0-9_]*");
		if (!json_is_string(val))
			return request_error_set(e, "invalid_request", field, "%s must be a string",
			                         field);
		if (memchr(json_string_value(val), '\0', json_string_length(val)) != NULL)
			return request_error_set(e, "invalid_request", field,
			                         "%s contains a NUL character", field);
		if (nlen + 1 + json_string_length(val) + 1 > REQ_MAX_ARG_STRLEN)
			return request_error_set(
			    e, "invalid_request", field,
			    "%s is %zu bytes as NAME=value; Linux runs no program given one "
			    "variable of more than %d bytes",
			    field, nlen + 1 + json_string_length(val), REQ_MAX_ARG_STRLEN - 1);
		total += nlen + 1 + json_string_length(val) + 1;
		req->env_names[req->nenv] = (struct eb_bytes){name, nlen};
		req->env_values[req->nenv] =
		    (struct eb_bytes){json_string_value(val), json_string_length(val)};
		req->nenv++;
	}
	/* argv came first: together they are what the program is given. */
	for (size_t i = 0; i < req->argc; i++)
		total += req->argv[i].len + 1;
	if (total > REQ_MAX_ARGS_BYTES)
		return request_error_set(
		    e, "invalid_request", "env",
		    "argv and env are %zu bytes in all; at most %d are allowed", total,
		    REQ_MAX_ARGS_BYTES);
	return 0;
}

static int parse_cwd(json_t *v, struct exec_request *req, struct request_error *e)
{
	const char *s;
	size_t len;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return request_error_set(e, "invalid_request", "cwd", "cwd must be a string");
	s = json_string_value(v);
	len = json_string_length(v);
	if (len == 0 || s[0] != '/' || memchr(s, '\0', len) != NULL || len > REQ_MAX_CWD)
		return request_error_set(
		    e, "invalid_request", "cwd",
		    "cwd must be an absolute path (starting with /, at most %d bytes)",
		    REQ_MAX_CWD);
	req->cwd = s;
	return 0;
}

int request_parse(const char *body, size_t len, const struct request_limits *lim,
                  struct exec_request *req, struct request_error *e)
{
	json_error_t jerr;
	json_t *root;

	memset(req, 0, sizeof(*req));
	memset(e, 0, sizeof(*e));
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (root == NULL)
		return request_error_set(e, "invalid_json", "",
		                         "the body is not valid JSON: %s (line %d, column %d)",
		                         jerr.text, jerr.line, jerr.column);
	return request_from_json(root, lim, req, e);
}

const char *request_unknown_field(json_t *root, const char *const *known)
{
	const char *key;
	json_t *val;

	json_object_foreach(root, key, val)
	{
		size_t i = 0;

		while (known[i] != NULL && strcmp(key, known[i]) != 0)
			i++;
		if (known[i] == NULL)
			return key;
	}
	return NULL;
}

int request_from_json(json_t *root, const struct request_limits *lim, struct exec_request *req,
                      struct request_error *e)
{
	static const char *const known[] = {
	    "argv", "timeout_s", "stdin", "stdin_base64", "env", "cwd", "detach", "name", NULL};
	const char *key;
	int rc;

	memset(req, 0, sizeof(*req));
	memset(e, 0, sizeof(*e));
	req->root = root;
	if (!json_is_object(root)) {
		rc = request_error_set(e, "invalid_request", "", "the body must be a JSON object");
		goto out;
	}
	key = request_unknown_field(root, known);
	if (key != NULL) {
		if (strcmp(key, "cmd") == 0 || strcmp(key, "command") == 0)
			rc = request_error_set(
			    e, "invalid_request", key,
			    "unknown field \"%s\": give the command as \"argv\", an array of "
			    "strings",
			    key);
		else
			rc = request_error_set(
			    e, "invalid_request", key,
			    "unknown field \"%.*s\" (known: argv, timeout_s, stdin, "
			    "stdin_base64, env, cwd, detach, name)",
			    (int)utf8_cut(key, strlen(key), 60), key);
		goto out;
	}
	rc = parse_argv(json_object_get(root, "argv"), req, e);
	if (rc == 0)
		rc = parse_detach(json_object_get(root, "detach"), json_object_get(root, "name"),
		                  req, e);
	if (rc == 0)
		rc = parse_timeout(json_object_get(root, "timeout_s"), lim, req, e);
	if (rc == 0)
		rc = parse_stdin(json_object_get(root, "stdin"),
		                 json_object_get(root, "stdin_base64"), lim, req, e);
	if (rc == 0)
		rc = parse_env(json_object_get(root, "env"), req, e);
	if (rc == 0)
		rc = parse_cwd(json_object_get(root, "cwd"), req, e);
out:
	if (rc != 0)
		request_free(req);
	return rc;
}

void request_free(struct exec_request *req)
{
	if (req == NULL)
		return;
	if (req->stdin_data != NULL && !req->stdin_borrowed) {
		explicit_bzero(req->stdin_data, req->stdin_len);
		free(req->stdin_data);
	}
	json_decref(req->root);
	memset(req, 0, sizeof(*req));
}
