/* db/migrate.h: schema migrations. The SQL of migrations/NNNN_name.sql is compiled into the
 * binary (scripts/embed-migrations); `migrate` applies the pending ones in order, each in its
 * own transaction, under an advisory lock, and records each with its SHA-256 checksum in
 * schema_migrations. The planning is a pure function so its rules are tested from tables. */
#ifndef EB_DB_MIGRATE_H
#define EB_DB_MIGRATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
	size_t len;
};

/* Generated: ascending by version. */
extern const struct migration migrations_embedded[];
extern const size_t migrations_embedded_count;

#define MIGRATE_CHECKSUM_LEN 64

/* One migration as planning sees it: a version, its name, its checksum (hex SHA-256). */
struct migration_ref {
	int version;
	const char *name;
	char checksum[MIGRATE_CHECKSUM_LEN + 1];
};

/* Compares the migrations this binary knows (ascending, unique versions) with those the
 * database has applied (any order). Sets pending[i] for each known migration still to
 * apply. Returns 0, or EB_ERR_CONFLICT with one line in err when the database has a
 * version this binary does not know, an applied checksum differs, or a known version is
 * missing below one already applied; EB_ERR_INVAL if known is not strictly ascending. */
int migrate_plan(const struct migration_ref *known, size_t nknown,
                 const struct migration_ref *applied, size_t napplied, bool *pending, char *err,
                 size_t errlen);

/* Hex SHA-256 of a migration's SQL. */
void migrate_checksum(const struct migration *m, char out[MIGRATE_CHECKSUM_LEN + 1]);

/* The statement that reads what the database has applied: version, checksum. */
extern const char migrate_schema_sql[];
/* Whether a result of migrate_schema_sql is exactly the migrations this binary embeds,
 * with the same checksums; if not, why says what differs. */
bool migrate_schema_current(const PGresult *res, char *why, size_t whylen);

/* Applies the pending embedded migrations. Prints one line per migration applied to log.
 * 0, or a negative EB_ERR_* with one line in err; a failed migration is rolled back. */
int migrate_apply(PGconn *conn, FILE *log, char *err, size_t errlen);

/* Prints a table of every known and applied version and its state to out. Returns 0 when
 * the schema is current, EB_ERR_CONFLICT when it cannot be migrated, 1 when migrations are
 * pending; another negative EB_ERR_* with err set if the database could not be read. */
int migrate_status(PGconn *conn, FILE *out, char *err, size_t errlen);

#endif
