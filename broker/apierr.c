/* broker/apierr.c: the error code table, error bodies, bearer header parsing. */
#include "broker/apierr.h"

#include <jansson.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "broker/frame.h"
#include "common/err.h"

static const struct {
	const char *code;
	int status;
} table[] = {
    {"invalid_json", 400},
    {"invalid_request", 400},
    {"unauthorized", 401},
    {"forbidden_tier", 403},
    {"break_glass_reason_required", 403},
    {"not_found", 404},
    {"method_not_allowed", 405},
    {"workspace_not_running", 409},
    {"payload_too_large", 413},
    {"unsupported_media_type", 415},
    {"too_many_requests", 429},
    {"ssh_connect_failed", 502},
    {"host_key_mismatch", 502},
    {"ssh_auth_failed", 502},
    {"transport_error", 502},
    {"pool_exhausted", 503},
    {"audit_unavailable", 503},
    {"shutting_down", 503},
    {"exec_timeout", 504},
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
	json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
	char *s;

	if (o == NULL)
		return NULL;
	if (field != NULL && field[0] != '\0')
		json_object_set_new(json_object_get(o, "error"), "field", json_string(field));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

int apierr_parse_bearer(const char *header, const char **token, unsigned long *len)
{
	const char *p;

	if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
		return EB_ERR_INVAL;
	p = header + 7;
	while (*p == ' ')
		p++;
	*len = (unsigned long)strcspn(p, " \t\r\n");
	if (*len == 0 || p[*len] != '\0')
		return EB_ERR_INVAL;
	*token = p;
	return 0;
}

int apierr_reason_valid(const char *reason)
{
	size_t n = strlen(reason), chars = 0;
	bool incomplete;

	if (n == 0 || utf8_valid_prefix((const unsigned char *)reason, n, &incomplete) != n)
		return 0;
	for (const unsigned char *p = (const unsigned char *)reason; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return 0;
		chars += (*p & 0xC0) != 0x80;
	}
	return chars <= 500;
}
