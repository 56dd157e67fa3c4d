/* api/authz.h: who may run what. One SQL statement fetches the token (by the hash of
 * the presented secret) and the workspace together; a pure function turns that row into a
 * decision. A tenant cannot tell another org's workspace from a missing one: both are
 * not_found. */
#ifndef EB_API_AUTHZ_H
#define EB_API_AUTHZ_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "common/scopes.h"
#include "common/token.h"

#define AUTHZ_ACTOR_LEN (6 + TOKEN_PUBLIC_LEN) /* "token:" and the public prefix */

/* Authorization header: 0 and the token's start and length if it is "Bearer <token>"
 * (scheme case-insensitive, one or more spaces); EB_ERR_INVAL otherwise. The token's
 * format is checked by the caller (token_check_format). */
int authz_parse_bearer(const char *header, const char **token, unsigned long *len);

/* The message of every 403 break_glass_reason_required. */
#define AUTHZ_REASON_REQUIRED_MESSAGE                                                              \
	"an admin token needs an X-Break-Glass-Reason header (1-500 printable characters) saying " \
	"why"

/* A break-glass reason is 1-500 printable characters (UTF-8 allowed, no control
 * characters). */
int authz_reason_valid(const char *reason);

/* The token of an Authorization header: NULL, its hex SHA-256 in hash and the audit actor
 * ("token:<public prefix>") in actor; or, when the header is missing or not
 * "Bearer <token>" with a well-formed token, the message of the 401. The token itself is
 * wiped from the stack before returning. */
const char *authz_bearer(const char *authorization, char hash[TOKEN_HASH_HEX_LEN + 1],
                         char actor[AUTHZ_ACTOR_LEN + 1]);

/* $1: hex SHA-256 of the token. At most one row: kind, expired, revoked, the token's org
 * (for a workspace token, its workspace's org), its workspace, its scopes. Stamps
 * last_used_at. */
extern const char authz_token_sql[];

/* What the lookup row says, as text columns parsed. */
struct authz_row {
	bool token_found;
	const char *kind;      /* "workspace", "org", "admin" */
	const char *token_org; /* org tokens */
	const char *token_ws;  /* workspace tokens */
	bool expired, revoked;
	bool ws_found;
	const char *ws_id, *ws_org, *ws_state;
	int ws_tier;
	unsigned scopes; /* enum scope bits */
};

/* The columns authz_row_from_columns reads: the token's kind, org, workspace, expired,
 * revoked; the workspace's id, org, state, tier; the token's scopes. */
#define AUTHZ_NCOLS 10

/* Fills *r from the result of audit_authz_begin_sql (0 or 1 row); r's strings point into
 * res. */
void authz_row_from_result(const PGresult *res, struct authz_row *r);
/* The same columns starting at column c of a one-row result. */
void authz_row_from_columns(const PGresult *res, int c, struct authz_row *r);

enum authz_verdict {
	AUTHZ_OK,
	AUTHZ_UNAUTHORIZED,    /* 401 unauthorized: no such token, expired, revoked */
	AUTHZ_NOT_FOUND,       /* 404 not_found: missing, or out of the token's reach */
	AUTHZ_FORBIDDEN_TIER,  /* 403 forbidden_tier */
	AUTHZ_REASON_REQUIRED, /* 403 break_glass_reason_required */
	AUTHZ_NOT_RUNNING,     /* 409 workspace_not_running */
	AUTHZ_MISSING_SCOPE,   /* 403 missing_scope */
};

/* needed: the scope (enum scope) the endpoint needs. It is decided before anything about
 * the workspace: a token's scopes are its own, and the answer reveals nothing else.
 * has_reason: a valid X-Break-Glass-Reason came with the request. Admins reach every
 * workspace of every tier, but only with a reason. */
enum authz_verdict authz_decide(const struct authz_row *r, unsigned needed, int min_exec_tier,
                                bool has_reason);

/* The message of a 403 missing_scope for the scope needed, into buf. */
void authz_missing_scope_message(unsigned needed, char *buf, size_t cap);

/* The API error code of a verdict ("unauthorized", ...); NULL for AUTHZ_OK. */
const char *authz_code(enum authz_verdict v);

#endif
