/* api/execview.c: the exec object and the frames of a replay, as pure functions of an
 * audit row and of what the host said. */
#include "api/execview.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/filter.h"
#include "audit/query.h"
#include "audit/render.h"

static const char *const stream_names[] = {"", "stdout", "stderr"};

/* The keys of the exec object taken from the audit item, with their names there. */
static const struct {
	const char *key, *item_key;
} kept_keys[] = {
    {"exec_id", "exec_id"},
    {"workspace_id", "workspace_id"},
    {"name", "name"},
    {"argv", "argv"},
    {"detached", "detached"},
    {"status", "status"},
    {"exit_code", "exit_code"},
    {"signal", "exit_signal"},
    {"error_code", "error_code"},
    {"started_at", "started_at"},
    {"finished_at", "finished_at"},
    {"duration_ms", "duration_ms"},
    {"stdout_bytes", "stdout_bytes"},
    {"stderr_bytes", "stderr_bytes"},
    {"timeout_s", "timeout_s"},
};

static json_t *output_json(const PGresult *res, int i, const struct execs_output *out, int retain_s)
{
	const char *fin = audit_row_text(res, i, AUDIT_COL_FINISHED_US);
	json_t *o = json_object();
	char t[32];

	if (fin != NULL) {
		audit_time_format(strtoll(fin, NULL, 10) + (long long)retain_s * 1000000, t);
		json_object_set_new(o, "expires_at", json_string(t));
	} else {
		json_object_set_new(o, "expires_at", json_null());
	}
	if (!out->known) {
		json_object_set_new(o, "retained", json_null());
		return o;
	}
	json_object_set_new(o, "retained", json_boolean(out->retained));
	for (int s = 1; s <= 2 && out->retained; s++)
		json_object_set_new(o, stream_names[s],
		                    json_pack("{s:I, s:I}", "from", (json_int_t)out->from[s], "to",
		                              (json_int_t)out->to[s]));
	return o;
}

json_t *execs_object(const PGresult *res, int i, const struct execs_output *out, int retain_s,
                     json_t *admin_access)
{
	json_t *item = audit_item_json(res, i), *o = json_object();
	const char *detached = audit_row_text(res, i, AUDIT_COL_DETACHED);

	if (item == NULL || o == NULL) {
		json_decref(item);
		json_decref(o);
		json_decref(admin_access);
		return NULL;
	}
	for (size_t k = 0; k < sizeof(kept_keys) / sizeof(kept_keys[0]); k++) {
		json_t *v = json_object_get(item, kept_keys[k].item_key);
		json_object_set(o, kept_keys[k].key, v != NULL ? v : json_null());
	}
	json_decref(item);
	if (detached != NULL && detached[0] == 't')
		json_object_set_new(o, "output", output_json(res, i, out, retain_s));
	else
		json_object_set_new(o, "output", json_null());
	if (json_array_size(admin_access) > 0)
		json_object_set(o, "admin_access", admin_access);
	json_decref(admin_access);
	return o;
}

const char *execs_status_of(const struct detached_status *st)
{
	return detached_status_name(st->kind);
}

char *execs_output_frame(int s, struct utf8_carry *carry, uint64_t offset, const char *data,
                         size_t len, bool final)
{
	char *f = NULL, *out, tail[40];
	size_t n;
	int k;

	if (frame_output(stream_names[s], carry, data, len, final, &f) != 0 || f == NULL)
		return NULL;
	/* frame_output ends its object with "}\n": the offset goes before the brace. */
	n = strlen(f);
	if (n < 2 || f[n - 2] != '}') {
		free(f);
		return NULL;
	}
	k = snprintf(tail, sizeof(tail), ",\"offset\":%" PRIu64 "}\n", offset);
	out = realloc(f, n - 2 + (size_t)k + 1);
	if (out == NULL) {
		free(f);
		return NULL;
	}
	memcpy(out + n - 2, tail, (size_t)k + 1);
	return out;
}
