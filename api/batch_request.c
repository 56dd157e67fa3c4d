/* api/batch_request.c: batch request validation. The first problem found is reported,
 * naming the field ("target.labels.role", "max_errors", "argv[2]"...). */
#include "api/batch_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/ids.h"
#include "common/labels.h"
#include "common/utf8.h"

static char *dump(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);

	json_decref(o);
	return s;
}

static int parse_labels(json_t *v, struct batch_request *req, struct request_error *e)
{
	json_t *keys = json_array(), *values = json_array(), *val;
	const char *key;
	char field[96];
	int rc = 0;

	if (!json_is_object(v)) {
		rc = request_error_set(
		    e, "invalid_request", "target.labels",
		    "target.labels must be an object of label keys and values, e.g. "
		    "{\"role\": \"web\"}");
		goto out;
	}
	if (json_object_size(v) == 0) {
		rc =
		    request_error_set(e, "invalid_request", "target.labels",
		                      "target.labels is empty: a whole org is only ever named with "
		                      "{\"org\": ..., \"all\": true}");
		goto out;
	}
	if (json_object_size(v) > BATCH_MAX_LABELS) {
		rc = request_error_set(e, "invalid_request", "target.labels",
		                       "target.labels has %zu labels; at most %d are allowed",
		                       json_object_size(v), BATCH_MAX_LABELS);
		goto out;
	}
	json_object_foreach(v, key, val)
	{
		snprintf(field, sizeof(field), "target.labels.%.*s",
		         (int)utf8_cut(key, strlen(key), 63), key);
		if (!labels_key_valid(key, strlen(key))) {
			rc = request_error_set(
			    e, "invalid_request", field,
			    "label key \"%.*s\" is invalid: use 1-63 of a-z 0-9 . _ / -, "
			    "starting with a letter or digit",
			    (int)utf8_cut(key, strlen(key), 63), key);
			goto out;
		}
		if (!json_is_string(val) ||
		    !labels_value_valid(json_string_value(val), json_string_length(val))) {
			rc = request_error_set(e, "invalid_request", field,
			                       "%s must be a string of 0-63 of A-Z a-z 0-9 . _ -",
			                       field);
			goto out;
		}
		json_array_append_new(keys, json_string(key));
		json_array_append(values, val);
	}
	req->nlabels = json_object_size(v);
	req->label_keys = dump(keys);
	req->label_values = dump(values);
	keys = values = NULL;
	if (req->label_keys == NULL || req->label_values == NULL)
		rc = request_error_set(e, "invalid_request", "", "out of memory");
out:
	json_decref(keys);
	json_decref(values);
	return rc;
}

static int parse_workspaces(json_t *v, struct batch_request *req, struct request_error *e)
{
	json_t *ids = json_array(), *item;
	char field[48];
	size_t i;
	int rc = 0;

	if (!json_is_array(v) || json_array_size(v) == 0 ||
	    json_array_size(v) > BATCH_MAX_TARGETS) {
		rc =
		    request_error_set(e, "invalid_request", "target.workspaces",
		                      "target.workspaces must be an array of 1 to %d workspace ids",
		                      BATCH_MAX_TARGETS);
		goto out;
	}
	json_array_foreach(v, i, item)
	{
		bool seen = false;
		size_t k;
		json_t *prev;

		snprintf(field, sizeof(field), "target.workspaces[%zu]", i);
		if (!json_is_string(item) ||
		    strlen(json_string_value(item)) != json_string_length(item) ||
		    !ids_valid_name(json_string_value(item))) {
			rc = request_error_set(
			    e, "invalid_request", field,
			    "%s is not a workspace id (1-64 of A-Z a-z 0-9 . _ -, starting "
			    "with a letter or digit)",
			    field);
			goto out;
		}
		json_array_foreach(ids, k, prev) seen |= json_equal(prev, item);
		if (!seen)
			json_array_append(ids, item);
	}
	req->nworkspaces = json_array_size(ids);
	req->workspaces = dump(ids);
	ids = NULL;
	if (req->workspaces == NULL)
		rc = request_error_set(e, "invalid_request", "", "out of memory");
out:
	json_decref(ids);
	return rc;
}

static int parse_target(json_t *t, struct batch_request *req, struct request_error *e)
{
	json_t *org, *labels, *all, *ws, *val;
	const char *key;

	if (t == NULL)
		return request_error_set(
		    e, "invalid_request", "target",
		    "target is required: {\"org\": ..., \"labels\": {...}}, {\"org\": ..., "
		    "\"all\": true} or {\"workspaces\": [...]}");
	if (!json_is_object(t))
		return request_error_set(e, "invalid_request", "target",
		                         "target must be an object");
	json_object_foreach(t, key, val)
	{
		if (strcmp(key, "org") != 0 && strcmp(key, "labels") != 0 &&
		    strcmp(key, "all") != 0 && strcmp(key, "workspaces") != 0)
			return request_error_set(
			    e, "invalid_request", "target",
			    "unknown field \"target.%.*s\" (known: org, labels, all, "
			    "workspaces)",
			    (int)utf8_cut(key, strlen(key), 60), key);
	}
	org = json_object_get(t, "org");
	labels = json_object_get(t, "labels");
	all = json_object_get(t, "all");
	ws = json_object_get(t, "workspaces");
	if (ws != NULL) {
		if (org != NULL || labels != NULL || all != NULL)
			return request_error_set(
			    e, "invalid_request", "target",
			    "target.workspaces names the workspaces alone: give no org, "
			    "labels or all with it");
		req->kind = BATCH_TARGET_WORKSPACES;
		return parse_workspaces(ws, req, e);
	}
	if (org == NULL)
		return request_error_set(e, "invalid_request", "target.org",
		                         "target.org is required with labels or all");
	if (!json_is_string(org) || strlen(json_string_value(org)) != json_string_length(org) ||
	    !ids_valid_name(json_string_value(org)))
		return request_error_set(
		    e, "invalid_request", "target.org",
		    "target.org is not an org id (1-64 of A-Z a-z 0-9 . _ -, starting with "
		    "a letter or digit)");
	req->org = json_string_value(org);
	if ((labels != NULL) == (all != NULL))
		return request_error_set(
		    e, "invalid_request", "target",
		    "target needs exactly one of labels (the workspaces that have them all) "
		    "and \"all\": true (every workspace of the org)");
	if (all != NULL) {
		if (!json_is_true(all))
			return request_error_set(
			    e, "invalid_request", "target.all",
			    "target.all can only be true; to select by labels, give "
			    "target.labels instead");
		req->kind = BATCH_TARGET_ALL;
		return 0;
	}
	req->kind = BATCH_TARGET_LABELS;
	return parse_labels(labels, req, e);
}

/* A number from min to max, or a string "N%" with N from pmin to 100. */
static int parse_budget(json_t *v, const char *field, int min, int max, int pmin, int dflt,
                        struct batch_budget *b, struct request_error *e)
{
	const char *s;
	char *end;
	long n;

	b->percent = false;
	b->value = dflt;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < min || json_integer_value(v) > max)
			return request_error_set(e, "invalid_request", field,
			                         "%s must be from %d to %d", field, min, max);
		b->value = (int)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		s = json_string_value(v);
		n = strtol(s, &end, 10);
		if (s[0] >= '0' && s[0] <= '9' && end[0] == '%' && end[1] == '\0' &&
		    strlen(s) == json_string_length(v) && n >= pmin && n <= 100) {
			b->value = (int)n;
			b->percent = true;
			return 0;
		}
	}
	return request_error_set(
	    e, "invalid_request", field,
	    "%s must be a whole number from %d to %d or a percentage of the targets "
	    "from \"%d%%\" to \"100%%\"",
	    field, min, max, pmin);
}

int batch_request_parse(const char *body, size_t len, const struct request_limits *lim,
                        struct batch_request *req, struct request_error *e)
{
	static const char *const known[] = {
	    "target", "max_concurrency", "max_errors", "argv", "timeout_s",
	    "stdin",  "stdin_base64",    "env",        "cwd",  "detach",
	    NULL};
	json_error_t jerr;
	json_t *root, *command;
	const char *key;
	int rc;

	memset(req, 0, sizeof(*req));
	memset(e, 0, sizeof(*e));
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (root == NULL)
		return request_error_set(e, "invalid_json", "",
		                         "the body is not valid JSON: %s (line %d, column %d)",
		                         jerr.text, jerr.line, jerr.column);
	req->root = root;
	if (!json_is_object(root)) {
		rc = request_error_set(e, "invalid_request", "", "the body must be a JSON object");
		goto out;
	}
	key = request_unknown_field(root, known);
	if (key != NULL) {
		if (strcmp(key, "name") == 0)
			rc = request_error_set(
			    e, "invalid_request", key,
			    "a batch's execs cannot be named: a name is unique on its "
			    "workspace; find them by the batch_id");
		else
			rc = request_error_set(
			    e, "invalid_request", key,
			    "unknown field \"%.*s\" (known: target, max_concurrency, "
			    "max_errors, argv, timeout_s, stdin, stdin_base64, env, cwd, "
			    "detach)",
			    (int)utf8_cut(key, strlen(key), 60), key);
		goto out;
	}
	rc = parse_target(json_object_get(root, "target"), req, e);
	if (rc == 0)
		rc = parse_budget(json_object_get(root, "max_concurrency"), "max_concurrency", 1,
		                  BATCH_MAX_TARGETS, 1, BATCH_DEFAULT_CONCURRENCY,
		                  &req->concurrency, e);
	if (rc == 0)
		rc = parse_budget(json_object_get(root, "max_errors"), "max_errors", 0,
		                  BATCH_MAX_TARGETS, 0, 0, &req->errors, e);
	if (rc != 0)
		goto out;
	req->target_json =
	    json_dumps(json_object_get(root, "target"), JSON_COMPACT | JSON_SORT_KEYS);
	command = json_deep_copy(root);
	if (req->target_json == NULL || command == NULL) {
		json_decref(command);
		rc = request_error_set(e, "invalid_request", "", "out of memory");
		goto out;
	}
	json_object_del(command, "target");
	json_object_del(command, "max_concurrency");
	json_object_del(command, "max_errors");
	/* The command, checked as a single exec's (command taken over). */
	rc = request_from_json(command, lim, &req->cmd, e);
out:
	if (rc != 0)
		batch_request_free(req);
	return rc;
}

void batch_request_free(struct batch_request *req)
{
	if (req == NULL)
		return;
	free(req->label_keys);
	free(req->label_values);
	free(req->workspaces);
	free(req->target_json);
	request_free(&req->cmd);
	json_decref(req->root);
	memset(req, 0, sizeof(*req));
}

int batch_budget_concurrency(const struct batch_budget *b, size_t n)
{
	long long v;

	if (!b->percent)
		return b->value;
	v = ((long long)n * b->value + 99) / 100;
	return v < 1 ? 1 : (int)v;
}

int batch_budget_errors(const struct batch_budget *b, size_t n)
{
	if (!b->percent)
		return b->value;
	return (int)((long long)n * b->value / 100);
}
