/* api/batch_request.h: validation of the body of POST /v1/batches, a pure function like
 * api/exec_request.h: the target selector and the budgets are checked here, and the command
 * (argv, env, cwd, stdin, timeout_s, detach) is checked by request_from_json exactly as a
 * single exec's, so a batch accepts what an exec accepts and says so in the same words. */
#ifndef EB_API_BATCH_REQUEST_H
#define EB_API_BATCH_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/exec_request.h"

#define BATCH_MAX_TARGETS         1000
#define BATCH_MAX_LABELS          16 /* labels in one selector */
#define BATCH_DEFAULT_CONCURRENCY 10

enum batch_target_kind {
	BATCH_TARGET_LABELS,     /* {"org": O, "labels": {...}}: every label must match */
	BATCH_TARGET_ALL,        /* {"org": O, "all": true} */
	BATCH_TARGET_WORKSPACES, /* {"workspaces": [ids]} */
};

/* A number, or a percentage of the targets. */
struct batch_budget {
	int value;
	bool percent;
};

struct batch_request {
	enum batch_target_kind kind;
	const char *org; /* LABELS, ALL */
	/* LABELS: keys and values, as JSON arrays of strings (the statement's parameters) */
	char *label_keys, *label_values;
	size_t nlabels;
	/* WORKSPACES: the ids, duplicates removed, in their first order, as a JSON array */
	char *workspaces;
	size_t nworkspaces;
	struct batch_budget concurrency, errors;
	char *target_json; /* the selector as given, compact (kept in the batch row) */
	/* What each target runs, validated as a single exec's request (its root is a copy of
	 * the body without the batch's own members); the targets share it. */
	struct exec_request cmd;
	json_t *root; /* owns the strings above point into */
};

/* Parses and validates body[0..len). 0 and *req filled (batch_request_free it), or
 * EB_ERR_INVAL with *e filled and *req empty. */
int batch_request_parse(const char *body, size_t len, const struct request_limits *lim,
                        struct batch_request *req, struct request_error *e);
void batch_request_free(struct batch_request *req);

/* A budget resolved against n targets: a percentage of n rounded up for the concurrency (at
 * least 1), down for the errors. */
int batch_budget_concurrency(const struct batch_budget *b, size_t n);
int batch_budget_errors(const struct batch_budget *b, size_t n);

#endif
