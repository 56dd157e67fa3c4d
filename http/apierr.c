/* http/apierr.c: the error code table and error bodies. */
#include "http/apierr.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

static const struct {
	const char *code;
	int status;
} table[] = {
    {"invalid_json", 400},
    {"invalid_request", 400},
    {"malformed_request", 400},
    {"unauthorized", 401},
    {"forbidden_tier", 403},
    {"break_glass_reason_required", 403},
    {"missing_scope", 403},
    {"not_found", 404},
    {"method_not_allowed", 405},
    {"request_timeout", 408},
    {"workspace_not_running", 409},
    {"name_in_use", 409},
    {"exec_finished", 409},
    {"not_detached", 409},
    {"payload_too_large", 413},
    {"uri_too_long", 414},
    {"unsupported_media_type", 415},
    {"expectation_failed", 417},
    {"too_many_requests", 429},
    {"headers_too_large", 431},
    {"not_implemented", 501},
    {"ssh_connect_failed", 502},
    {"host_key_mismatch", 502},
    {"ssh_auth_failed", 502},
    {"transport_error", 502},
    {"detach_failed", 502},
    {"shutdown", 502},
    {"pool_exhausted", 503},
    {"audit_unavailable", 503},
    {"shutting_down", 503},
    {"exec_timeout", 504},
    {"http_version_not_supported", 505},
};

#define NCODES (sizeof(table) / sizeof(table[0]))

const char *apierr_code(unsigned long i)
{
	return i < NCODES ? table[i].code : NULL;
}

int apierr_status(const char *code)
{
	for (size_t i = 0; i < NCODES; i++)
		if (strcmp(table[i].code, code) == 0)
			return table[i].status;
	return 500;
}

int apierr_known(const char *code)
{
	return apierr_status(code) != 500;
}

char *apierr_body(const char *code, const char *message, const char *field)
{
	char *msg = utf8_sanitize(message, strlen(message));
	char *fld = field != NULL && field[0] != '\0' ? utf8_sanitize(field, strlen(field)) : NULL;
	json_t *o =
	    msg != NULL ? json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg) : NULL;
	char *s = NULL;

	if (o == NULL)
		goto out;
	if (fld != NULL)
		json_object_set_new(json_object_get(o, "error"), "field", json_string(fld));
	s = json_dumps(o, JSON_COMPACT);
out:
	json_decref(o);
	free(msg);
	free(fld);
	return s;
}
