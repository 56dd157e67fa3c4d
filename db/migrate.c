/* db/migrate.c: migration planning and application. */
#include "db/migrate.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/table.h"
#include "db/db.h"

/* pg_advisory_lock key shared by every migrator: the bytes "ebmigrat". */
#define MIGRATE_LOCK_KEY "7305521845022908788"

static const struct migration_ref *find_ref(const struct migration_ref *refs, size_t n, int version)
{
	for (size_t i = 0; i < n; i++)
		if (refs[i].version == version)
			return &refs[i];
	return NULL;
}

int migrate_plan(const struct migration_ref *known, size_t nknown,
                 const struct migration_ref *applied, size_t napplied, bool *pending, char *err,
                 size_t errlen)
{
	int max_applied = 0;

	for (size_t i = 0; i < nknown; i++) {
		if (known[i].version <= 0 || (i > 0 && known[i].version <= known[i - 1].version)) {
			snprintf(err, errlen, "embedded migrations are not in ascending order");
			return EB_ERR_INVAL;
		}
	}
	for (size_t i = 0; i < napplied; i++) {
		const struct migration_ref *k = find_ref(known, nknown, applied[i].version);
		if (k == NULL) {
			snprintf(
			    err, errlen,
			    "the database has migration %04d (%s), which this exec-broker does "
			    "not know: it was migrated by a newer version; upgrade exec-broker",
			    applied[i].version, applied[i].name ? applied[i].name : "?");
			return EB_ERR_CONFLICT;
		}
		if (strcmp(k->checksum, applied[i].checksum) != 0) {
			snprintf(
			    err, errlen,
			    "migration %04d_%s was changed after it was applied (checksum %.12s "
			    "in the database, %.12s here); restore the original file",
			    k->version, k->name, applied[i].checksum, k->checksum);
			return EB_ERR_CONFLICT;
		}
		if (applied[i].version > max_applied)
			max_applied = applied[i].version;
	}
	for (size_t i = 0; i < nknown; i++) {
		pending[i] = find_ref(applied, napplied, known[i].version) == NULL;
		if (pending[i] && known[i].version < max_applied) {
			snprintf(err, errlen,
			         "migration %04d_%s is missing below %04d, which is applied; "
			         "the database's history does not match this exec-broker",
			         known[i].version, known[i].name, max_applied);
			return EB_ERR_CONFLICT;
		}
	}
	return 0;
}

void migrate_checksum(const struct migration *m, char out[MIGRATE_CHECKSUM_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)m->sql, m->len, md);
	for (size_t i = 0; i < sizeof(md); i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[MIGRATE_CHECKSUM_LEN] = '\0';
}

static int simple(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	char state[6];
	PGresult *res = db_exec_script(conn, sql, err, errlen, state);

	if (res == NULL)
		return EB_ERR_DB;
	PQclear(res);
	return 0;
}

/* The known refs, and the applied ones read from the database (*applied_res owns the
 * strings). Caller frees *known, *applied and PQclear()s *applied_res. */
static int load_refs(PGconn *conn, struct migration_ref **known, struct migration_ref **applied,
                     size_t *napplied, PGresult **applied_res, char *err, size_t errlen)
{
	char state[6];
	PGresult *res;
	int n;

	*known = NULL;
	*applied = NULL;
	*applied_res = NULL;
	*napplied = 0;
	*known = calloc(migrations_embedded_count + 1, sizeof(**known));
	if (*known == NULL)
		return EB_ERR_NOMEM;
	for (size_t i = 0; i < migrations_embedded_count; i++) {
		(*known)[i].version = migrations_embedded[i].version;
		(*known)[i].name = migrations_embedded[i].name;
		migrate_checksum(&migrations_embedded[i], (*known)[i].checksum);
	}
	res = db_exec(conn,
	              "SELECT version, name, checksum, "
	              "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || 'Z' "
	              "FROM schema_migrations ORDER BY version",
	              0, NULL, err, errlen, state);
	if (res == NULL) {
		/* A database never migrated has no table yet: nothing applied. */
		return strcmp(state, "42P01") == 0 ? 0 : EB_ERR_DB;
	}
	n = PQntuples(res);
	*applied = calloc((size_t)n + 1, sizeof(**applied));
	if (*applied == NULL) {
		PQclear(res);
		return EB_ERR_NOMEM;
	}
	for (int i = 0; i < n; i++) {
		(*applied)[i].version = atoi(PQgetvalue(res, i, 0));
		(*applied)[i].name = PQgetvalue(res, i, 1);
		snprintf((*applied)[i].checksum, sizeof((*applied)[i].checksum), "%s",
		         PQgetvalue(res, i, 2));
	}
	*napplied = (size_t)n;
	*applied_res = res;
	return 0;
}

int migrate_apply(PGconn *conn, FILE *log, char *err, size_t errlen)
{
	struct migration_ref *known = NULL, *applied = NULL;
	PGresult *applied_res = NULL;
	bool *pending = NULL;
	size_t napplied = 0, done = 0;
	char state[6];
	int rc;

	/* Held for the whole run: a second migrator waits here, then finds nothing to do. */
	rc = simple(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen);
	if (rc != 0)
		return rc;
	rc = simple(conn,
	            "CREATE TABLE IF NOT EXISTS schema_migrations ("
	            " version integer PRIMARY KEY CHECK (version > 0),"
	            " name text NOT NULL,"
	            " checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),"
	            " applied_at timestamptz NOT NULL DEFAULT now())",
	            err, errlen);
	if (rc != 0)
		goto out;
	rc = load_refs(conn, &known, &applied, &napplied, &applied_res, err, errlen);
	if (rc != 0)
		goto out;
	pending = calloc(migrations_embedded_count + 1, sizeof(*pending));
	if (pending == NULL) {
		rc = EB_ERR_NOMEM;
		goto out;
	}
	rc =
	    migrate_plan(known, migrations_embedded_count, applied, napplied, pending, err, errlen);
	if (rc != 0)
		goto out;
	for (size_t i = 0; i < migrations_embedded_count; i++) {
		const struct migration *m = &migrations_embedded[i];
		char version[16], msg[768];
		const char *params[3] = {version, m->name, known[i].checksum};
		PGresult *res;

		if (!pending[i])
			continue;
		snprintf(version, sizeof(version), "%d", m->version);
		rc = simple(conn, "BEGIN", err, errlen);
		if (rc != 0)
			goto out;
		rc = simple(conn, m->sql, msg, sizeof(msg));
		if (rc == 0) {
			res = db_exec(conn,
			              "INSERT INTO schema_migrations (version, name, checksum) "
			              "VALUES ($1, $2, $3)",
			              3, params, msg, sizeof(msg), state);
			rc = res ? 0 : EB_ERR_DB;
			PQclear(res);
		}
		if (rc == 0)
			rc = simple(conn, "COMMIT", msg, sizeof(msg));
		if (rc != 0) {
			char ignored[256];
			simple(conn, "ROLLBACK", ignored, sizeof(ignored));
			snprintf(err, errlen, "migration %04d_%s failed and was rolled back: %s",
			         m->version, m->name, msg);
			goto out;
		}
		fprintf(log, "applied %04d_%s\n", m->version, m->name);
		done++;
	}
	if (done == 0)
		fprintf(log, "schema is current (version %04d); nothing to apply\n",
		        migrations_embedded_count
		            ? migrations_embedded[migrations_embedded_count - 1].version
		            : 0);
out:
	if (PQstatus(conn) == CONNECTION_OK) {
		char ignored[256];
		simple(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignored,
		       sizeof(ignored));
	}
	free(pending);
	free(known);
	free(applied);
	PQclear(applied_res);
	return rc;
}

int migrate_status(PGconn *conn, FILE *out, char *err, size_t errlen)
{
	static const char *const headers[] = {"VERSION", "NAME", "STATE", "APPLIED AT (UTC)"};
	struct migration_ref *known = NULL, *applied = NULL;
	PGresult *applied_res = NULL;
	struct table *t = NULL;
	bool *pending = NULL;
	size_t napplied = 0, npending = 0;
	char problem[512] = "";
	int rc, plan;

	rc = load_refs(conn, &known, &applied, &napplied, &applied_res, err, errlen);
	if (rc != 0)
		goto out;
	pending = calloc(migrations_embedded_count + 1, sizeof(*pending));
	t = table_new(4, headers);
	if (pending == NULL || t == NULL) {
		rc = EB_ERR_NOMEM;
		goto out;
	}
	plan = migrate_plan(known, migrations_embedded_count, applied, napplied, pending, problem,
	                    sizeof(problem));
	for (size_t i = 0; i < migrations_embedded_count; i++) {
		char version[16];
		const struct migration_ref *a = find_ref(applied, napplied, known[i].version);
		const char *when = a ? PQgetvalue(applied_res, (int)(a - applied), 3) : "";
		const char *st = !a ? "pending"
		                 : strcmp(a->checksum, known[i].checksum) != 0
		                     ? "changed since applied"
		                     : "applied";
		snprintf(version, sizeof(version), "%04d", known[i].version);
		const char *row[] = {version, known[i].name, st, when};
		npending += a == NULL;
		if (table_add_row(t, row) != 0) {
			rc = EB_ERR_NOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < napplied; i++) {
		char version[16];
		if (find_ref(known, migrations_embedded_count, applied[i].version) != NULL)
			continue;
		snprintf(version, sizeof(version), "%04d", applied[i].version);
		const char *row[] = {version, applied[i].name, "unknown to this exec-broker",
		                     PQgetvalue(applied_res, (int)i, 3)};
		if (table_add_row(t, row) != 0) {
			rc = EB_ERR_NOMEM;
			goto out;
		}
	}
	table_print(t, out);
	if (plan != 0) {
		snprintf(err, errlen, "%s", problem);
		rc = EB_ERR_CONFLICT;
	} else {
		rc = npending ? 1 : 0;
	}
out:
	table_free(t);
	free(pending);
	free(known);
	free(applied);
	PQclear(applied_res);
	return rc;
}

const char migrate_schema_sql[] =
    "SELECT version, checksum FROM schema_migrations ORDER BY version";

bool migrate_schema_current(const PGresult *res, char *why, size_t whylen)
{
	int n = PQntuples(res);

	if ((size_t)n != migrations_embedded_count) {
		snprintf(why, whylen, "the database has %d migrations, this broker knows %zu", n,
		         migrations_embedded_count);
		return false;
	}
	for (int i = 0; i < n; i++) {
		char sum[MIGRATE_CHECKSUM_LEN + 1];

		migrate_checksum(&migrations_embedded[i], sum);
		if (atoi(PQgetvalue(res, i, 0)) != migrations_embedded[i].version ||
		    strcmp(PQgetvalue(res, i, 1), sum) != 0) {
			snprintf(why, whylen, "migration %d differs from this broker's",
			         migrations_embedded[i].version);
			return false;
		}
	}
	return true;
}
