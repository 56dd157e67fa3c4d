/* api/batchview.c: batch summaries and target results. */
#include "api/batchview.h"

#include <stdio.h>
#include <string.h>

struct batch_counts batchview_count(const struct batch_result *r, size_t n)
{
	struct batch_counts c = {0};

	for (size_t i = 0; i < n; i++) {
		if (strcmp(r[i].status, "succeeded") == 0)
			c.succeeded++;
		else if (strcmp(r[i].status, "failed") == 0)
			c.failed++;
		else if (strcmp(r[i].status, "not_started") == 0)
			c.not_started++;
		else
			c.running++;
	}
	return c;
}

const char *batchview_status(const struct batch_result *r, size_t n, bool cancelled)
{
	struct batch_counts c = batchview_count(r, n);

	if (cancelled)
		return "cancelled";
	if (c.running > 0)
		return "running";
	if (c.not_started > 0)
		return "stopped";
	if (c.failed == 0)
		return "completed";
	return c.succeeded == 0 ? "failed" : "partial_failure";
}

const char batchview_outcome_sql[] =
    "UPDATE batches SET launched = true, status = $2, succeeded = $3::integer,"
    " failed = $4::integer, not_started = $5::integer,"
    " finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END"
    " WHERE batch_id = $1::uuid AND status = 'running'";

void batchview_outcome_params(const char *batch_id, const char *status,
                              const struct batch_counts *c, char nums[3][24],
                              const char *params[BATCHVIEW_OUTCOME_NPARAMS])
{
	bool running = strcmp(status, "running") == 0;

	snprintf(nums[0], 24, "%zu", c->succeeded);
	snprintf(nums[1], 24, "%zu", c->failed);
	snprintf(nums[2], 24, "%zu", c->not_started);
	params[0] = batch_id;
	params[1] = status;
	for (int i = 0; i < 3; i++)
		params[2 + i] = running ? NULL : nums[i];
}

static json_t *text_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

json_t *batchview_summary(const char *batch_id, const char *status, const struct batch_result *r,
                          size_t n)
{
	json_t *o = json_object(), *results = json_array();
	struct batch_counts c = batchview_count(r, n);

	if (o == NULL || results == NULL) {
		json_decref(o);
		json_decref(results);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_object();

		json_object_set_new(e, "workspace_id", json_string(r[i].workspace_id));
		json_object_set_new(e, "exec_id", text_or_null(r[i].exec_id));
		json_object_set_new(e, "status", json_string(r[i].status));
		json_object_set_new(e, "exit_code",
		                    r[i].exited ? json_integer(r[i].exit_code) : json_null());
		json_object_set_new(e, "signal", text_or_null(r[i].signal));
		json_object_set_new(e, "duration_ms",
		                    r[i].duration_ms >= 0 ? json_integer(r[i].duration_ms)
		                                          : json_null());
		json_object_set_new(
		    e, "error",
		    r[i].error_code != NULL
		        ? json_pack("{s:s, s:s}", "code", r[i].error_code, "message",
		                    r[i].error_message != NULL ? r[i].error_message : "")
		        : json_null());
		if (r[i].output != NULL)
			json_object_update(e, r[i].output);
		json_array_append_new(results, e);
	}
	json_object_set_new(o, "batch_id", json_string(batch_id));
	json_object_set_new(o, "status", json_string(status));
	json_object_set_new(o, "succeeded", json_integer((json_int_t)c.succeeded));
	json_object_set_new(o, "failed", json_integer((json_int_t)c.failed));
	json_object_set_new(o, "not_started", json_integer((json_int_t)c.not_started));
	json_object_set_new(o, "running", json_integer((json_int_t)c.running));
	json_object_set_new(o, "results", results);
	return o;
}

/* Row statuses whose error code is the status itself. */
static const char *const status_codes[] = {
    "timeout:exec_timeout", "cancelled:cancelled", "transport_error:transport_error",
    "shutdown:shutdown",    "abandoned:abandoned", "lost:lost"};

void batchview_result_from_row(json_t *row, struct batch_result *out)
{
	const char *status = json_string_value(json_object_get(row, "status"));
	json_t *exit_code = json_object_get(row, "exit_code");
	json_t *duration = json_object_get(row, "duration_ms");

	memset(out, 0, sizeof(*out));
	out->workspace_id = json_string_value(json_object_get(row, "workspace_id"));
	out->exec_id = json_string_value(json_object_get(row, "exec_id"));
	out->signal = json_string_value(json_object_get(row, "signal"));
	out->error_code = json_string_value(json_object_get(row, "error_code"));
	out->duration_ms = json_is_integer(duration) ? json_integer_value(duration) : -1;
	if (status == NULL)
		status = "failed";
	if (strcmp(status, "running") == 0) {
		out->status = "running";
		out->duration_ms = -1;
		return;
	}
	out->exited = strcmp(status, "exited") == 0 && json_is_integer(exit_code);
	out->exit_code = out->exited ? (int)json_integer_value(exit_code) : 0;
	out->status = out->exited && out->exit_code == 0 ? "succeeded" : "failed";
	for (size_t i = 0;
	     out->error_code == NULL && i < sizeof(status_codes) / sizeof(status_codes[0]); i++) {
		size_t k = strcspn(status_codes[i], ":");

		if (strlen(status) == k && strncmp(status_codes[i], status, k) == 0)
			out->error_code = status_codes[i] + k + 1;
	}
	out->error_message =
	    out->error_code != NULL ? batchview_error_message(out->error_code) : NULL;
}

const char *batchview_error_message(const char *code)
{
	static const struct {
		const char *code, *message;
	} messages[] = {
	    {"not_found", "no workspace with this id that this token can reach"},
	    {"forbidden_tier", "the workspace's tier is below min_exec_tier"},
	    {"workspace_not_running", "the workspace is stopped; start it before running commands"},
	    {"too_many_requests", "the org had as many execs running as it may"},
	    {"missing_scope", "the token lacks the batch scope"},
	    {"break_glass_reason_required", "an admin token needs a break-glass reason"},
	    {"ssh_connect_failed", "cannot connect to the workspace host over SSH; the command was "
	                           "not run"},
	    {"host_key_mismatch", "the workspace host's SSH key does not match its pinned "
	                          "fingerprint; the command was not run"},
	    {"ssh_auth_failed", "the workspace host refused the broker's SSH key; the command was "
	                        "not run"},
	    {"pool_exhausted", "no SSH session to the workspace host became free in time"},
	    {"exec_timeout", "the command ran past its timeout and was killed"},
	    {"cancelled", "the batch was cancelled; the command was killed or never started"},
	    {"transport_error", "the SSH connection broke while the command ran; its outcome is "
	                        "unknown"},
	    {"shutdown", "the broker shut down; the command was killed"},
	    {"abandoned", "the broker running the command died; its outcome is unknown"},
	    {"lost", "the workspace host can no longer say what became of the command"},
	    {"detach_failed", "the detached exec did not start"},
	    {"audit_unavailable", "the audit log could not be written; the command was not run"},
	    {"shutting_down", "the broker was shutting down; the command was not run"},
	};

	for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++)
		if (strcmp(messages[i].code, code) == 0)
			return messages[i].message;
	return "the exec failed";
}
