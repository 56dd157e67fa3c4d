/* api/authz.c: the bearer token, the break-glass reason, and the token + workspace
 * decision. */
#include "api/authz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/utf8.h"

const char authz_token_sql[] =
    "UPDATE api_tokens t SET last_used_at = now()"
    " WHERE secret_sha256 = decode($1, 'hex')"
    " RETURNING kind, expires_at <= now(), revoked_at IS NOT NULL,"
    "  coalesce(org_id, (SELECT w.org_id FROM workspaces w WHERE w.id = t.workspace_id)),"
    "  workspace_id, scopes";

const char *authz_bearer(const char *authorization, char hash[TOKEN_HASH_HEX_LEN + 1],
                         char actor[AUTHZ_ACTOR_LEN + 1])
{
	char buf[TOKEN_LEN + 1];
	const char *token;
	unsigned long len;

	if (authorization == NULL)
		return "an Authorization: Bearer <token> header is required";
	if (authz_parse_bearer(authorization, &token, &len) != 0 || len > TOKEN_LEN ||
	    token_check_format(token, len) != 0)
		return "the Authorization header must be \"Bearer ebk_...\" with a token made by "
		       "`exec-broker token create`";
	memcpy(buf, token, len);
	buf[len] = '\0';
	token_hash_hex(buf, len, hash);
	memcpy(actor, "token:", 6);
	token_public_prefix(buf, actor + 6);
	explicit_bzero(buf, sizeof(buf));
	return NULL;
}

void authz_row_from_columns(const PGresult *res, int c, struct authz_row *r)
{
	memset(r, 0, sizeof(*r));
	if (PQntuples(res) != 1)
		return;
	r->token_found = true;
	r->kind = PQgetvalue(res, 0, c);
	r->token_org = PQgetisnull(res, 0, c + 1) ? NULL : PQgetvalue(res, 0, c + 1);
	r->token_ws = PQgetisnull(res, 0, c + 2) ? NULL : PQgetvalue(res, 0, c + 2);
	r->expired = strcmp(PQgetvalue(res, 0, c + 3), "t") == 0;
	r->revoked = strcmp(PQgetvalue(res, 0, c + 4), "t") == 0;
	r->ws_found = !PQgetisnull(res, 0, c + 5);
	r->ws_id = PQgetvalue(res, 0, c + 5);
	r->ws_org = PQgetvalue(res, 0, c + 6);
	r->ws_state = PQgetvalue(res, 0, c + 7);
	r->ws_tier = atoi(PQgetvalue(res, 0, c + 8));
	r->scopes = scopes_from_pg_array(PQgetvalue(res, 0, c + 9));
}

void authz_row_from_result(const PGresult *res, struct authz_row *r)
{
	authz_row_from_columns(res, 0, r);
}

static bool reaches(const struct authz_row *r)
{
	if (strcmp(r->kind, "admin") == 0)
		return true;
	if (strcmp(r->kind, "org") == 0)
		return r->token_org != NULL && strcmp(r->token_org, r->ws_org) == 0;
	if (strcmp(r->kind, "workspace") == 0)
		return r->token_ws != NULL && strcmp(r->token_ws, r->ws_id) == 0;
	return false;
}

enum authz_verdict authz_decide(const struct authz_row *r, unsigned needed, int min_exec_tier,
                                bool has_reason)
{
	if (!r->token_found || r->expired || r->revoked)
		return AUTHZ_UNAUTHORIZED;
	if ((r->scopes & needed) != needed)
		return AUTHZ_MISSING_SCOPE;
	/* Missing and unreachable look the same, and are decided before anything else about
	 * the workspace, so that no other answer reveals it exists. */
	if (!r->ws_found || !reaches(r))
		return AUTHZ_NOT_FOUND;
	if (strcmp(r->kind, "admin") == 0) {
		if (!has_reason)
			return AUTHZ_REASON_REQUIRED;
	} else if (r->ws_tier < min_exec_tier) {
		return AUTHZ_FORBIDDEN_TIER;
	}
	if (strcmp(r->ws_state, "running") != 0)
		return AUTHZ_NOT_RUNNING;
	return AUTHZ_OK;
}

const char *authz_code(enum authz_verdict v)
{
	switch (v) {
	case AUTHZ_OK:
		return NULL;
	case AUTHZ_UNAUTHORIZED:
		return "unauthorized";
	case AUTHZ_NOT_FOUND:
		return "not_found";
	case AUTHZ_FORBIDDEN_TIER:
		return "forbidden_tier";
	case AUTHZ_REASON_REQUIRED:
		return "break_glass_reason_required";
	case AUTHZ_NOT_RUNNING:
		return "workspace_not_running";
	case AUTHZ_MISSING_SCOPE:
		return "missing_scope";
	default:
		abort();
	}
}

void authz_missing_scope_message(unsigned needed, char *buf, size_t cap)
{
	const char *name = scope_name(needed);

	snprintf(buf, cap,
	         "this token lacks the \"%s\" scope; ask an administrator for a token made with "
	         "`exec-broker token create --scope %s`",
	         name != NULL ? name : "?", name != NULL ? name : "?");
}

int authz_parse_bearer(const char *header, const char **token, unsigned long *len)
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

int authz_reason_valid(const char *reason)
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
