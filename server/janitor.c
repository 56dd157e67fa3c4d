/* server/janitor.c: heartbeats, the sweep of rows left running by brokers that are gone,
 * the linking of rows they finished but never linked, and the check of running detached
 * execs on their hosts, on the loop, one statement at a time. */
#include "server/janitor.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "audit/writer.h"
#include "common/err.h"
#include "common/log.h"
#include "db/pgasync.h"

/* A broker silent for this many heartbeats, and this long more, is gone. The margin covers
 * the database connection's own reconnect (db/pgasync backs off up to 5 s): after an outage a
 * live broker may take that long to be heard again. */

static void arm(struct janitor *j, int seconds)
{
	struct timeval t = {seconds, 0};

	evtimer_add(j->timer, &t);
}

/* Running detached execs, DETACHED_BATCH at a time in the order they started, from where
 * the last turn stopped (and from the start again once the list is through): every broker
 * asks their hosts, so each row is checked every few turns and completes even when nobody
 * reads it, well before its host removes the outcome (exec_retain_s). */
#define DETACHED_BATCH 32
#define STR_(x)        #x
#define STR(x)         STR_(x)
static const char detached_sweep_sql[] =
    "SELECT exec_id, started_at::text FROM exec_audit WHERE detached AND status = 'running'"
    " AND started_at < now() - interval '2 seconds'"
    " AND (started_at, exec_id) > ($1::timestamptz, $2::uuid)"
    " ORDER BY started_at, exec_id LIMIT " STR(DETACHED_BATCH);
#define CURSOR_START_AT "-infinity"
#define CURSOR_START_ID "00000000-0000-0000-0000-000000000000"

static void on_strays_ended(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct janitor *j = arg;

	(void)sqlstate;
	j->q = NULL;
	if (error != NULL)
		log_kv(LOG_WARN, "could not end this broker's stray audit rows", "error", error,
		       NULL);
	else if (atoi(PQcmdTuples((PGresult *)res)) > 0)
		log_kv(LOG_WARN,
		       "audit rows inserted after their exec was refused ended as failed_to_start",
		       "rows", PQcmdTuples((PGresult *)res), NULL);
	arm(j, j->api->cfg->broker_heartbeat_s);
}

/* The uuid[] literal of the rows of res that are strays: refused with their insert's
 * answer lost (api_exec_doubt), and with no job now; NULL if none (or out of memory: the
 * next turn tries again). */
static char *strays_of(const struct api *api, const PGresult *res)
{
	int n = PQntuples(res), k = 0;
	char *list = malloc((size_t)n * (AUDIT_EXEC_ID_LEN + 1) + 3), *p = list;

	if (list == NULL)
		return NULL;
	*p++ = '{';
	for (int i = 0; i < n; i++) {
		const char *id = PQgetvalue(res, i, 0);

		if (strlen(id) != AUDIT_EXEC_ID_LEN || !api_exec_doubtful(api, id) ||
		    api_exec_known(api, id))
			continue;
		p += sprintf(p, "%s%s", k++ ? "," : "", id);
	}
	*p++ = '}';
	*p = '\0';
	if (k == 0) {
		free(list);
		return NULL;
	}
	return list;
}

static void on_strays(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct janitor *j = arg;
	char *list;

	(void)sqlstate;
	j->q = NULL;
	if (error != NULL) {
		log_kv(LOG_WARN, "could not list this broker's running audit rows", "error", error,
		       NULL);
	} else if ((list = strays_of(j->api, res)) != NULL) {
		const char *params[2] = {list, j->api->instance};

		j->q = pgasync_query_static(j->api->db, audit_stray_end_sql, 2, params,
		                            j->api->cfg->broker_heartbeat_s * 1000L,
		                            on_strays_ended, j);
		free(list);
	}
	if (j->q == NULL)
		arm(j, j->api->cfg->broker_heartbeat_s);
}

/* The next step: this broker's own strays (audit_strays_sql), while it serves. */
static void strays_next(struct janitor *j)
{
	const char *params[1] = {j->api->instance};

	if (j->api->phase == API_SERVING)
		j->q = pgasync_query_static(j->api->db, audit_strays_sql, 1, params,
		                            j->api->cfg->broker_heartbeat_s * 1000L, on_strays, j);
	if (j->q == NULL)
		arm(j, j->api->cfg->broker_heartbeat_s);
}

static void on_detached(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct janitor *j = arg;

	(void)sqlstate;
	j->q = NULL;
	if (error != NULL) {
		log_kv(LOG_WARN, "could not list running detached execs", "error", error, NULL);
	} else {
		int n = PQntuples(res);

		for (int i = 0; i < n; i++)
			api_execs_check(j->api, PQgetvalue(res, i, 0));
		if (n == DETACHED_BATCH) {
			snprintf(j->cursor_at, sizeof(j->cursor_at), "%s",
			         PQgetvalue(res, n - 1, 1));
			snprintf(j->cursor_id, sizeof(j->cursor_id), "%s",
			         PQgetvalue(res, n - 1, 0));
		} else {
			snprintf(j->cursor_at, sizeof(j->cursor_at), CURSOR_START_AT);
			snprintf(j->cursor_id, sizeof(j->cursor_id), CURSOR_START_ID);
		}
	}
	strays_next(j);
}

static void on_sealed(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct janitor *j = arg;

	(void)sqlstate;
	j->q = NULL;
	if (error != NULL)
		log_kv(LOG_WARN, "could not link audit rows waiting for the chain", "error", error,
		       NULL);
	else if (PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) > 0)
		log_kv(LOG_WARN,
		       "audit rows finished by brokers that are gone linked into the chain", "rows",
		       PQgetvalue(res, 0, 0), NULL);
	if (j->api->phase == API_SERVING) {
		const char *params[2] = {j->cursor_at, j->cursor_id};

		if (j->cursor_at[0] == '\0') {
			snprintf(j->cursor_at, sizeof(j->cursor_at), CURSOR_START_AT);
			snprintf(j->cursor_id, sizeof(j->cursor_id), CURSOR_START_ID);
		}
		j->q =
		    pgasync_query_static(j->api->db, detached_sweep_sql, 2, params,
		                         j->api->cfg->broker_heartbeat_s * 1000L, on_detached, j);
	}
	if (j->q == NULL)
		strays_next(j);
}

static void on_swept(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct janitor *j = arg;
	char stale[16];
	const char *params[AUDIT_SEAL_NPARAMS] = {"{}", stale};

	(void)sqlstate;
	j->q = NULL;
	if (error != NULL)
		log_kv(LOG_WARN, "could not sweep rows of brokers that are gone", "error", error,
		       NULL);
	else if (atoi(PQcmdTuples((PGresult *)res)) > 0)
		log_kv(LOG_WARN,
		       "audit rows left running by brokers that are gone marked abandoned", "rows",
		       PQcmdTuples((PGresult *)res), NULL);
	/* Rows their broker finished but never linked (api/seal.h). */
	snprintf(stale, sizeof(stale), "%d", SEAL_STALE_S);
	j->q = pgasync_query_static(j->api->db, audit_seal_sql, AUDIT_SEAL_NPARAMS, params,
	                            j->api->cfg->broker_heartbeat_s * 1000L, on_sealed, j);
	if (j->q == NULL)
		arm(j, j->api->cfg->broker_heartbeat_s);
}

static void on_beat(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct janitor *j = arg;
	const struct config *cfg = j->api->cfg;
	char grace[16], dead[16];
	const char *params[3] = {j->api->instance, grace, dead};

	(void)res;
	(void)sqlstate;
	j->q = NULL;
	if (error != NULL) {
		log_kv(LOG_WARN, "could not write this broker's heartbeat", "error", error, NULL);
		arm(j, cfg->broker_heartbeat_s);
		return;
	}
	snprintf(grace, sizeof(grace), "%d", cfg->pool_kill_grace_s);
	snprintf(dead, sizeof(dead), "%d", audit_dead_after_s(cfg->broker_heartbeat_s));
	j->q = pgasync_query_static(j->api->db, audit_sweep_sql, 3, params,
	                            cfg->broker_heartbeat_s * 1000L, on_swept, j);
	if (j->q == NULL)
		arm(j, cfg->broker_heartbeat_s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct janitor *j = arg;
	const struct config *cfg = j->api->cfg;
	char gap[16];
	const char *params[2] = {j->api->instance, gap};

	(void)fd;
	(void)what;
	/* More than two beats missed: this broker was cut off, and starts anew. */
	snprintf(gap, sizeof(gap), "%d", 2 * cfg->broker_heartbeat_s);
	j->q = pgasync_query_static(j->api->db, audit_heartbeat_sql, 2, params,
	                            cfg->broker_heartbeat_s * 1000L, on_beat, j);
	if (j->q == NULL)
		arm(j, cfg->broker_heartbeat_s);
}

int janitor_start(struct janitor *j, struct api *api)
{
	j->api = api;
	j->timer = evtimer_new(api->base, on_timer, j);
	if (j->timer == NULL)
		return EB_ERR_NOMEM;
	arm(j, 0);
	return 0;
}

void janitor_stop(struct janitor *j)
{
	pgasync_cancel(j->q);
	j->q = NULL;
	if (j->timer != NULL)
		event_free(j->timer);
	j->timer = NULL;
}
