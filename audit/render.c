/* audit/render.c: the API's JSON of audit rows: each item's keys in order and how each is
 * made from its column, and a page with the cursor of the page after it. */
#include "audit/render.h"

#include <stdlib.h>

#include "audit/query.h"

static json_t *j_text(const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);

	return v != NULL ? json_string(v) : json_null();
}

static json_t *j_int(const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);

	return v != NULL ? json_integer(strtoll(v, NULL, 10)) : json_null();
}

static json_t *j_bool(const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);

	return v != NULL ? json_boolean(v[0] == 't') : json_null();
}

static json_t *j_time(const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);
	char t[32];

	if (v == NULL)
		return json_null();
	audit_time_format(strtoll(v, NULL, 10), t);
	return json_string(t);
}

static json_t *j_array(const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);
	json_t *a;

	if (v == NULL)
		return json_array();
	a = json_loads(v, JSON_DECODE_ANY, NULL);
	return a != NULL ? a : json_null();
}

/* The item's keys, in order, and how each is made from its column. */
static const struct {
	const char *key;
	int col;
	json_t *(*conv)(const PGresult *res, int i, int c);
} fields[] = {
    {"exec_id", AUDIT_COL_EXEC_ID, j_text},
    {"chain_seq", AUDIT_COL_CHAIN_SEQ, j_int},
    {"chain_hash", AUDIT_COL_CHAIN_HASH, j_text},
    {"workspace_id", AUDIT_COL_WORKSPACE_ID, j_text},
    {"org_id", AUDIT_COL_ORG_ID, j_text},
    {"actor", AUDIT_COL_ACTOR, j_text},
    {"actor_kind", AUDIT_COL_ACTOR_KIND, j_text},
    {"break_glass_reason", AUDIT_COL_REASON, j_text},
    {"argv", AUDIT_COL_ARGV, j_array},
    {"cwd", AUDIT_COL_CWD, j_text},
    {"env_keys", AUDIT_COL_ENV_KEYS, j_array},
    {"stdin_bytes", AUDIT_COL_STDIN_BYTES, j_int},
    {"client_addr", AUDIT_COL_CLIENT_HOST, j_text},
    {"request_id", AUDIT_COL_REQUEST_ID, j_text},
    {"timeout_s", AUDIT_COL_TIMEOUT_S, j_int},
    {"status", AUDIT_COL_STATUS, j_text},
    {"error_code", AUDIT_COL_ERROR_CODE, j_text},
    {"exit_code", AUDIT_COL_EXIT_CODE, j_int},
    {"exit_signal", AUDIT_COL_EXIT_SIGNAL, j_text},
    {"started_at", AUDIT_COL_STARTED_US, j_time},
    {"finished_at", AUDIT_COL_FINISHED_US, j_time},
    {"duration_ms", AUDIT_COL_DURATION_MS, j_int},
    {"stdout_bytes", AUDIT_COL_STDOUT_BYTES, j_int},
    {"stderr_bytes", AUDIT_COL_STDERR_BYTES, j_int},
    {"stdout_truncated", AUDIT_COL_STDOUT_TRUNC, j_bool},
    {"stderr_truncated", AUDIT_COL_STDERR_TRUNC, j_bool},
    {"broker_instance", AUDIT_COL_BROKER_INSTANCE, j_text},
    {"detached", AUDIT_COL_DETACHED, j_bool},
    {"name", AUDIT_COL_NAME, j_text},
    {"batch_id", AUDIT_COL_BATCH_ID, j_text},
};

const char *audit_item_key(unsigned long i)
{
	return i < sizeof(fields) / sizeof(fields[0]) ? fields[i].key : NULL;
}

json_t *audit_item_json(const PGresult *res, int i)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		json_t *v = fields[k].conv(res, i, fields[k].col);

		if (v == NULL || json_object_set_new(o, fields[k].key, v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

json_t *audit_page_json(const PGresult *res, const struct audit_filter *f)
{
	int n = PQntuples(res), shown = n > f->limit ? f->limit : n;
	json_t *page = json_object(), *items = json_array(), *next = json_null();

	if (page == NULL || items == NULL)
		goto fail;
	for (int i = 0; i < shown; i++)
		if (json_array_append_new(items, audit_item_json(res, i)) != 0)
			goto fail;
	if (n > f->limit) {
		char c[AUDIT_CURSOR_MAX];

		audit_cursor_encode(f, audit_row_started_us(res, shown - 1),
		                    PQgetvalue(res, shown - 1, AUDIT_COL_EXEC_ID), c);
		next = json_string(c);
	}
	if (json_object_set_new(page, "items", items) != 0) {
		items = NULL;
		goto fail;
	}
	if (json_object_set_new(page, "next_cursor", next) != 0)
		goto fail_page;
	return page;
fail:
	json_decref(items);
	json_decref(next);
fail_page:
	json_decref(page);
	return NULL;
}
