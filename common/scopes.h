/* common/scopes.h: what a token may do (migrations/0008_token_scopes.sql), apart from where
 * it reaches. A set of scopes is a bit mask; its text forms are the CLI's list
 * ("exec,audit:read") and PostgreSQL's array ("{exec,audit:read}"). */
#ifndef EB_COMMON_SCOPES_H
#define EB_COMMON_SCOPES_H

#include <stddef.h>

enum scope {
	SCOPE_EXEC = 1 << 0,       /* "exec": run commands where the token reaches */
	SCOPE_BATCH = 1 << 1,      /* "batch": fan out (POST /v1/batches) */
	SCOPE_AUDIT_READ = 1 << 2, /* "audit:read": read the audit log where it reaches */
};
#define SCOPES_ALL (SCOPE_EXEC | SCOPE_BATCH | SCOPE_AUDIT_READ)

/* The name of one scope ("exec"...); NULL if s is not exactly one. */
const char *scope_name(unsigned s);

/* A comma-separated list of scope names: 0 and the set in *out; EB_ERR_INVAL (and the
 * first unknown or empty item in bad, as text) if any item is not a scope. Duplicates are
 * allowed. An empty list is invalid. */
int scopes_parse_list(const char *list, unsigned *out, char *bad, size_t badcap);

/* A PostgreSQL text[] literal as libpq returns it ("{exec,audit:read}"): the set of the
 * scopes it names (unknown names are ignored: they grant nothing). */
unsigned scopes_from_pg_array(const char *text);

/* The set as a comma-separated list in the canonical order (exec,batch,audit:read) into
 * buf; "" for none. */
void scopes_format(unsigned set, char *buf, size_t cap);

#endif
