/* server/startup.c: the checks before serving: the instance name, the schema, and the rows
 * an earlier life of this broker left running. */
#include "server/startup.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "audit/writer.h"
#include "common/err.h"
#include "common/log.h"
#include "db/db.h"
#include "db/migrate.h"

void startup_instance_name(const struct config *cfg, char *out, size_t len)
{
	char host[200];

	if (cfg->instance_name[0] != '\0') {
		snprintf(out, len, "%s", cfg->instance_name);
		return;
	}
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(out, len, "%.199s:%.50s", host, cfg->listen);
}

int startup_check_database(const struct config *cfg, const char *instance, char *err, size_t errlen)
{
	char why[200];
	const char *params[1] = {instance};
	PGconn *c = NULL;
	PGresult *res = NULL;
	int rc;

	rc = db_connect(cfg->database_url, &c, err, errlen);
	if (rc != 0)
		goto out;
	res = PQexec(c, migrate_schema_sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		db_error_line(PQresultErrorMessage(res), why, sizeof(why));
		snprintf(err, errlen,
		         "cannot read the schema version (run `exec-broker migrate`): %s", why);
		rc = EB_ERR_DB;
		goto out;
	}
	if (!migrate_schema_current(res, why, sizeof(why))) {
		snprintf(err, errlen,
		         "the database schema is not the one this broker knows: %s; run "
		         "`exec-broker migrate` with this version",
		         why);
		rc = EB_ERR_CONFLICT;
		goto out;
	}
	PQclear(res);
	res = PQexecParams(c, audit_abandon_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		db_error_line(PQresultErrorMessage(res), why, sizeof(why));
		snprintf(err, errlen, "cannot mark abandoned audit rows: %s", why);
		rc = EB_ERR_DB;
		goto out;
	}
	if (atoi(PQcmdTuples(res)) > 0)
		log_kv(LOG_WARN, "audit rows left running by an earlier run marked abandoned",
		       "rows", PQcmdTuples(res), "instance", instance, NULL);
	rc = 0;
out:
	PQclear(res);
	PQfinish(c);
	return rc;
}
