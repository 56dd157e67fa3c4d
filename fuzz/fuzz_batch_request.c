/* fuzz/fuzz_batch_request.c: the body of POST /v1/batches (api/batch_request.c). An accepted
 * batch names its targets within the limits (org and workspace ids, label keys and values,
 * budgets), its strings for the statement are JSON arrays of what it checked, and its command
 * passes every check of a single exec's; a refusal names its field. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/batch_request.h"
#include "common/ids.h"
#include "common/labels.h"
#include "fuzz/fuzz.h"

/* s as a JSON array of n strings, each passing valid. */
static void check_array(const char *what, const char *s, size_t n,
                        bool (*valid)(const char *, size_t))
{
	json_error_t jerr;
	json_t *a = json_loads(s, JSON_REJECT_DUPLICATES, &jerr), *v;
	size_t i;

	FUZZ_CHECK(json_is_array(a) && json_array_size(a) == n, "%s is not an array of %zu", what,
	           n);
	json_array_foreach(a, i, v)
	{
		FUZZ_CHECK(json_is_string(v), "%s[%zu] is not a string", what, i);
		FUZZ_CHECK(valid(json_string_value(v), json_string_length(v)), "%s[%zu] is invalid",
		           what, i);
	}
	json_decref(a);
}

static bool id_valid(const char *s, size_t len)
{
	return strlen(s) == len && ids_valid_name(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct batch_request req;
	struct request_error e;
	int rc = batch_request_parse((const char *)data, size, &fuzz_limits, &req, &e);

	if (rc != 0) {
		fuzz_check_request_error(rc, &e);
		FUZZ_CHECK(req.root == NULL && req.target_json == NULL,
		           "a refusal left memory held");
		return 0;
	}
	switch (req.kind) {
	case BATCH_TARGET_LABELS:
		FUZZ_CHECK(req.org != NULL && ids_valid_name(req.org), "org invalid");
		FUZZ_CHECK(req.nlabels >= 1 && req.nlabels <= BATCH_MAX_LABELS, "%zu labels",
		           req.nlabels);
		check_array("label_keys", req.label_keys, req.nlabels, labels_key_valid);
		check_array("label_values", req.label_values, req.nlabels, labels_value_valid);
		FUZZ_CHECK(req.workspaces == NULL, "labels with workspaces");
		break;
	case BATCH_TARGET_ALL:
		FUZZ_CHECK(req.org != NULL && ids_valid_name(req.org), "org invalid");
		FUZZ_CHECK(req.label_keys == NULL && req.workspaces == NULL, "all with a list");
		break;
	case BATCH_TARGET_WORKSPACES: {
		json_t *a;

		FUZZ_CHECK(req.org == NULL && req.label_keys == NULL,
		           "workspaces with org or labels");
		FUZZ_CHECK(req.nworkspaces >= 1 && req.nworkspaces <= BATCH_MAX_TARGETS,
		           "%zu workspaces", req.nworkspaces);
		check_array("workspaces", req.workspaces, req.nworkspaces, id_valid);
		a = json_loads(req.workspaces, 0, NULL);
		for (size_t i = 0; i < req.nworkspaces; i++)
			for (size_t j = 0; j < i; j++)
				FUZZ_CHECK(!json_equal(json_array_get(a, i), json_array_get(a, j)),
				           "workspace %zu repeated", i);
		json_decref(a);
		break;
	}
	default:
		fuzz_fail("kind %d", (int)req.kind);
	}
	FUZZ_CHECK(req.concurrency.percent
	               ? req.concurrency.value >= 1 && req.concurrency.value <= 100
	               : req.concurrency.value >= 1 && req.concurrency.value <= BATCH_MAX_TARGETS,
	           "max_concurrency %d", req.concurrency.value);
	FUZZ_CHECK(req.errors.percent
	               ? req.errors.value >= 0 && req.errors.value <= 100
	               : req.errors.value >= 0 && req.errors.value <= BATCH_MAX_TARGETS,
	           "max_errors %d", req.errors.value);
	for (size_t n = 1; n <= BATCH_MAX_TARGETS; n = n * 3 + 1) {
		int c = batch_budget_concurrency(&req.concurrency, n);
		int x = batch_budget_errors(&req.errors, n);

		FUZZ_CHECK(c >= 1 && (!req.concurrency.percent || (size_t)c <= n),
		           "concurrency %d of %zu targets", c, n);
		FUZZ_CHECK(x >= 0 && (!req.errors.percent || (size_t)x <= n), "errors %d of %zu", x,
		           n);
	}
	json_t *t = json_loads(req.target_json, 0, NULL);
	FUZZ_CHECK(json_is_object(t), "target_json is not an object");
	json_decref(t);
	FUZZ_CHECK(req.cmd.name == NULL, "a batch's command has a name");
	fuzz_check_exec_request(&req.cmd, &fuzz_limits);
	batch_request_free(&req);
	return 0;
}
