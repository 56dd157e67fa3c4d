/* db/db.h: PostgreSQL glue for the administrative subcommands (blocking libpq; the server's
 * event loop never uses these): connecting with one-line errors, running parameterized
 * statements, and showing a connection string without its password. */
#ifndef EB_DB_DB_H
#define EB_DB_DB_H

#include <libpq-fe.h>
#include <stddef.h>

/* Connects with a 10 s connect timeout (unless conninfo sets one). *out is NULL unless
 * 0 is returned; on failure err holds one line. */
int db_connect(const char *conninfo, PGconn **out, char *err, size_t errlen);

/* Runs sql with text parameters. Returns the result when it is PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK (the caller PQclear()s it); otherwise NULL, with one line in err and the
 * SQLSTATE (or "") in sqlstate. */
PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
                  size_t errlen, char sqlstate[6]);

/* The same for a script of one or more statements without parameters (simple query). */
PGresult *db_exec_script(PGconn *conn, const char *sql, char *err, size_t errlen, char sqlstate[6]);

/* Takes over res: returns it if it succeeded, else clears it and fills err and sqlstate
 * as db_exec does. */
PGresult *db_check(PGconn *conn, PGresult *res, char *err, size_t errlen, char sqlstate[6]);

/* Copies a libpq message into err as one line: newlines folded, trailing ones dropped. */
void db_error_line(const char *msg, char *err, size_t errlen);

/* A malloc'd copy of conninfo safe to print: any password replaced by "********". NULL if
 * conninfo does not parse or memory runs out. */
char *db_conninfo_redact(const char *conninfo);

#endif
