/* broker/server.c: the HTTP side of `exec-broker serve`: startup checks, the evhttp
 * listener and its limits, routing, the small endpoints, replies and request logs,
 * per-org admission, and the SIGTERM/SIGINT shutdown. */
#include "broker/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <systemd/sd-daemon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "audit/writer.h"
#include "broker/apierr.h"
#include "broker/openapi.h"
#include "common/err.h"
#include "common/log.h"
#include "db/db.h"
#include "db/migrate.h"
#include "db/pgasync.h"
#include "pool/pool.h"

#define MAX_HEADERS_BYTES  (16 * 1024)
#define READYZ_DEADLINE_MS 2000
#define FLUSH_WAIT_S       5
#define SERVER_STATUS_S    5

struct org_slot {
	struct org_slot *next;
	unsigned running;
	char org[];
};

struct org_slots {
	struct org_slot *head;
};

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

long long server_elapsed_ms(const struct http_ctx *h)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - h->t0.tv_sec) * 1000 +
	       (now.tv_nsec - h->t0.tv_nsec) / 1000000;
}

void server_log_request(struct server *s, struct http_ctx *h)
{
	char status[8], ms[24];

	(void)s;
	snprintf(status, sizeof(status), "%d", h->status);
	snprintf(ms, sizeof(ms), "%lld", server_elapsed_ms(h));
	log_kv(h->status >= 500 ? LOG_WARN : LOG_INFO, "request", "method", h->method, "path",
	       h->path, "status", status, "request_id", h->request_id, "client", h->client,
	       "duration_ms", ms, "workspace_id", h->workspace_id, "actor", h->actor, "exec_id",
	       h->exec_id, "outcome", h->outcome, "error", h->error, NULL);
}

static void add_common_headers(struct server *s, struct http_ctx *h, const char *content_type)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(h->req);

	evhttp_add_header(out, "Content-Type", content_type);
	evhttp_add_header(out, "X-Request-Id", h->request_id);
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (h->exec_id != NULL)
		evhttp_add_header(out, "X-Exec-Id", h->exec_id);
	if (h->close || s->state != SERVER_SERVING)
		evhttp_add_header(out, "Connection", "close");
}

static void maybe_exit(struct server *s);
static void notify_status(struct server *s, const char *also);

static void on_flushed(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;

	(void)req;
	s->flushing--;
	maybe_exit(s);
}

/* Counts a reply until evhttp has written all of it, so that shutdown does not cut it
 * off. (A reply whose connection fails instead is never reported: shutdown waits for
 * those at most FLUSH_WAIT_S.) */
static void track_flush(struct server *s, struct evhttp_request *req)
{
	if (evhttp_request_get_connection(req) == NULL)
		return;
	evhttp_request_set_on_complete_cb(req, on_flushed, s);
	s->flushing++;
}

void server_reply(struct server *s, struct http_ctx *h, int status, const char *content_type,
                  const char *body, size_t len)
{
	struct evbuffer *b = evbuffer_new();

	add_common_headers(s, h, content_type);
	/* libevent 2.1 would write a HEAD reply's body and leave out its length, which breaks
	 * the next reply on a kept-alive connection: send the length a GET would have, and no
	 * body. */
	if (evhttp_request_get_command(h->req) == EVHTTP_REQ_HEAD) {
		char n[24];

		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(evhttp_request_get_output_headers(h->req), "Content-Length", n);
		len = 0;
	}
	track_flush(s, h->req);
	if (b != NULL && len > 0)
		evbuffer_add(b, body, len);
	evhttp_send_reply(h->req, status, NULL, b);
	evbuffer_free(b);
	h->req = NULL;
	h->status = status;
	metrics_count_http(&s->metrics, status);
	server_log_request(s, h);
}

void server_reply_end(struct server *s, struct http_ctx *h)
{
	track_flush(s, h->req);
	evhttp_send_reply_end(h->req);
	h->req = NULL;
	server_log_request(s, h);
}

void server_reply_start(struct server *s, struct http_ctx *h, const char *content_type)
{
	add_common_headers(s, h, content_type);
	evhttp_send_reply_start(h->req, 200, NULL);
	h->status = 200;
	metrics_count_http(&s->metrics, 200);
}

void server_reply_error(struct server *s, struct http_ctx *h, const char *code, const char *message,
                        const char *field)
{
	char *body = apierr_body(code, message, field);
	int status = apierr_status(code);

	if (status == 401)
		evhttp_add_header(evhttp_request_get_output_headers(h->req), "WWW-Authenticate",
		                  "Bearer realm=\"exec-broker\"");
	if (h->error == NULL)
		h->error = code;
	if (body == NULL)
		server_reply(s, h, status, "application/json", "", 0);
	else
		server_reply(s, h, status, "application/json", body, strlen(body));
	free(body);
}

bool server_org_enter(struct server *s, const char *org)
{
	struct org_slot *o;

	for (o = s->orgs->head; o != NULL; o = o->next)
		if (strcmp(o->org, org) == 0)
			break;
	if (o == NULL) {
		o = calloc(1, sizeof(*o) + strlen(org) + 1);
		if (o == NULL)
			return false;
		strcpy(o->org, org);
		o->next = s->orgs->head;
		s->orgs->head = o;
	}
	if (o->running >= (unsigned)s->cfg->org_max_concurrent_execs)
		return false;
	o->running++;
	return true;
}

void server_org_leave(struct server *s, const char *org)
{
	struct org_slot **pp, *o;

	for (pp = &s->orgs->head; (o = *pp) != NULL; pp = &o->next) {
		if (strcmp(o->org, org) != 0)
			continue;
		if (o->running == 0)
			abort(); /* more leaves than enters */
		if (--o->running == 0) {
			*pp = o->next;
			free(o);
		}
		return;
	}
	abort();
}

static void on_flush_wait_over(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	char n[16];

	(void)fd;
	(void)what;
	snprintf(n, sizeof(n), "%u", s->flushing);
	log_kv(LOG_WARN, "stopping with replies not fully sent", "replies", n, NULL);
	event_base_loopexit(s->base, NULL);
}

/* The loop ends once every exec has ended, the pool is closed and every reply has been
 * written (or FLUSH_WAIT_S have passed since the rest was done). */
static void maybe_exit(struct server *s)
{
	struct timeval wait = {FLUSH_WAIT_S, 0};

	if (s->state != SERVER_STOPPING || !s->pool_down || s->njobs != 0 || s->pending != 0)
		return;
	if (s->flushing == 0) {
		event_base_loopexit(s->base, NULL);
		return;
	}
	if (s->ev_flush == NULL) {
		s->ev_flush = evtimer_new(s->base, on_flush_wait_over, s);
		if (s->ev_flush == NULL || evtimer_add(s->ev_flush, &wait) != 0)
			event_base_loopexit(s->base, NULL);
	}
}

void server_pending_add(struct server *s)
{
	s->pending++;
}

void server_pending_done(struct server *s)
{
	s->pending--;
	maybe_exit(s);
}

static void on_pool_down(void *arg)
{
	struct server *s = arg;

	s->pool_down = true;
	log_kv(LOG_INFO, "ssh pool closed", NULL);
	maybe_exit(s);
}

/* Grace is over (or there was nothing to wait for): the pool kills what still runs, and
 * each exec completes its audit row as 'shutdown' before its last frame. */
static void begin_stop(struct server *s)
{
	char n[16];

	if (s->state == SERVER_STOPPING)
		return;
	s->state = SERVER_STOPPING;
	snprintf(n, sizeof(n), "%u", s->njobs);
	log_kv(LOG_INFO, "stopping: cancelling running execs", "execs", n, NULL);
	pool_shutdown(s->pool, on_pool_down, s);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	begin_stop(arg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	struct timeval grace = {s->cfg->shutdown_grace_s, 0};
	char n[16];

	(void)what;
	if (s->state != SERVER_SERVING) {
		log_kv(LOG_INFO, "second signal: stopping now", NULL);
		begin_stop(s);
		return;
	}
	s->state = SERVER_DRAINING;
	notify_status(s, "STOPPING=1\n");
	if (s->listener != NULL) {
		evhttp_del_accept_socket(s->http, s->listener);
		s->listener = NULL;
	}
	snprintf(n, sizeof(n), "%u", s->njobs);
	log_kv(LOG_INFO, "shutting down: no new requests, waiting for running execs", "signal",
	       sig == SIGTERM ? "TERM" : "INT", "execs", n, NULL);
	if (s->njobs == 0 || s->cfg->shutdown_grace_s == 0)
		begin_stop(s);
	else
		evtimer_add(s->ev_grace, &grace);
}

void server_schedule_reap(struct server *s)
{
	event_active(s->ev_reap, 0, 0);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	exec_reap(s);
	if (s->state == SERVER_DRAINING && s->njobs == 0)
		begin_stop(s);
	maybe_exit(s);
}

/* X-Request-Id: a client's own id when it is reasonable, else a new UUID. */
static void request_id(struct evhttp_request *req, char out[SERVER_REQUEST_ID_MAX + 1])
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
	uuid_t u;
	size_t n;

	if (v != NULL && (n = strlen(v)) >= 1 && n <= SERVER_REQUEST_ID_MAX &&
	    strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n) {
		memcpy(out, v, n + 1);
		return;
	}
	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

static const char *method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "?";
	}
}

static void reply_json_obj(struct server *s, struct http_ctx *h, int status, json_t *o)
{
	char *body = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	if (body == NULL) {
		server_reply(s, h, 500, "application/json", "", 0);
		return;
	}
	server_reply(s, h, status, "application/json", body, strlen(body));
	free(body);
}

static void method_not_allowed(struct server *s, struct http_ctx *h, const char *allow)
{
	char msg[96];

	evhttp_add_header(evhttp_request_get_output_headers(h->req), "Allow", allow);
	snprintf(msg, sizeof(msg), "%s is not allowed here; use %s", h->method, allow);
	server_reply_error(s, h, "method_not_allowed", msg, NULL);
}

struct readyz {
	struct server *s;
	struct http_ctx h;
};

/* The schema is current when schema_migrations holds exactly the migrations this binary
 * embeds, with the same checksums. */
static bool schema_current(const PGresult *res, char *why, size_t whylen)
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

static const char schema_sql[] = "SELECT version, checksum FROM schema_migrations ORDER BY version";

static void on_readyz(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct readyz *r = arg;
	char why[160];

	(void)sqlstate;
	if (res == NULL) {
		snprintf(why, sizeof(why), "database: %s", error);
		reply_json_obj(r->s, &r->h, 503,
		               json_pack("{s:s, s:s}", "status", "not_ready", "reason", why));
	} else if (!schema_current(res, why, sizeof(why))) {
		reply_json_obj(r->s, &r->h, 503,
		               json_pack("{s:s, s:s}", "status", "not_ready", "reason", why));
	} else if (r->s->state != SERVER_SERVING) {
		reply_json_obj(
		    r->s, &r->h, 503,
		    json_pack("{s:s, s:s}", "status", "not_ready", "reason", "shutting down"));
	} else {
		reply_json_obj(r->s, &r->h, 200, json_pack("{s:s}", "status", "ready"));
	}
	server_pending_done(r->s);
	free(r);
}

static void handle_readyz(struct server *s, struct http_ctx *h)
{
	struct readyz *r = malloc(sizeof(*r));

	if (r == NULL) {
		server_reply(s, h, 500, "application/json", "", 0);
		return;
	}
	r->s = s;
	r->h = *h;
	if (pgasync_query(s->db, schema_sql, 0, NULL, READYZ_DEADLINE_MS, on_readyz, r) == NULL) {
		*h = r->h;
		free(r);
		server_reply(s, h, 500, "application/json", "", 0);
		return;
	}
	server_pending_add(s);
}

static void handle_metrics(struct server *s, struct http_ctx *h)
{
	struct pool_stats st;
	char *text;

	pool_get_stats(s->pool, &st);
	text = metrics_render(&s->metrics, &st);
	if (text == NULL) {
		server_reply(s, h, 500, "text/plain", "", 0);
		return;
	}
	server_reply(s, h, 200, "text/plain; version=0.0.4", text, strlen(text));
	free(text);
}

/* "/v1/workspaces/{id}/exec": the id, or NULL. */
static const char *exec_route(const char *path, char *id, size_t idlen)
{
	static const char pre[] = "/v1/workspaces/", suf[] = "/exec";
	size_t n = strlen(path), idn;

	if (n <= sizeof(pre) - 1 + sizeof(suf) - 1 || strncmp(path, pre, sizeof(pre) - 1) != 0 ||
	    strcmp(path + n - (sizeof(suf) - 1), suf) != 0)
		return NULL;
	idn = n - (sizeof(pre) - 1) - (sizeof(suf) - 1);
	if (idn >= idlen || memchr(path + sizeof(pre) - 1, '/', idn) != NULL)
		return NULL;
	memcpy(id, path + sizeof(pre) - 1, idn);
	id[idn] = '\0';
	return id;
}

/* "/v1/audit/{exec_id}": the id (one non-empty path segment, checked by auditapi.c), or
 * NULL. */
static const char *audit_route(const char *path)
{
	static const char pre[] = "/v1/audit/";
	const char *id = path + sizeof(pre) - 1;

	if (strncmp(path, pre, sizeof(pre) - 1) != 0 || *id == '\0' || strchr(id, '/') != NULL)
		return NULL;
	return id;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;
	struct http_ctx h = {.req = req};
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const char *exec_id = NULL; /* GET /v1/audit/{exec_id} */
	char wsid[80], *peer = NULL;
	ev_uint16_t port;

	clock_gettime(CLOCK_MONOTONIC, &h.t0);
	request_id(req, h.request_id);
	h.method = method_name(m);
	if (conn != NULL) {
		struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
		int one = 1;

		/* Frames are small and written as they come: without this, a last frame waits
		 * for the client's delayed ACK (about 40 ms). */
		if (bev != NULL)
			setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
			           sizeof(one));
		evhttp_connection_get_peer(conn, &peer, &port);
		snprintf(h.client, sizeof(h.client), "%s", peer != NULL ? peer : "");
	}
	if (path == NULL || path[0] == '\0')
		path = "/";
	snprintf(h.path, sizeof(h.path), "%s", path);

	if (strcmp(path, "/healthz") == 0) {
		if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD)
			method_not_allowed(s, &h, "GET, HEAD");
		else
			reply_json_obj(s, &h, 200, json_pack("{s:s}", "status", "ok"));
	} else if (strcmp(path, "/readyz") == 0) {
		if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD)
			method_not_allowed(s, &h, "GET, HEAD");
		else
			handle_readyz(s, &h);
	} else if (strcmp(path, "/metrics") == 0) {
		if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD)
			method_not_allowed(s, &h, "GET, HEAD");
		else
			handle_metrics(s, &h);
	} else if (strcmp(path, "/openapi.yaml") == 0) {
		if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD)
			method_not_allowed(s, &h, "GET, HEAD");
		else
			openapi_handle(s, &h);
	} else if (strcmp(path, "/v1/audit") == 0 || (exec_id = audit_route(path)) != NULL) {
		if (m != EVHTTP_REQ_GET)
			method_not_allowed(s, &h, "GET");
		else
			auditapi_handle(s, &h, exec_id);
	} else if (exec_route(path, wsid, sizeof(wsid)) != NULL) {
		if (m != EVHTTP_REQ_POST)
			method_not_allowed(s, &h, "POST");
		else if (s->state != SERVER_SERVING)
			server_reply_error(s, &h, "shutting_down",
			                   "the broker is shutting down; retry on another instance "
			                   "or after it restarts",
			                   NULL);
		else
			exec_handle(s, &h, wsid);
	} else {
		server_reply_error(s, &h, "not_found", "no such endpoint", NULL);
	}
}

/* Startup, blocking (nothing is served yet): the schema must be exactly the one this
 * binary knows, and rows this broker left running are marked abandoned. */
static int check_database(struct server *s, char *err, size_t errlen)
{
	char margin[16], why[200];
	const char *params[2] = {s->instance, margin};
	PGconn *c = NULL;
	PGresult *res = NULL;
	int rc;

	rc = db_connect(s->cfg->database_url, &c, err, errlen);
	if (rc != 0)
		goto out;
	res = PQexec(c, schema_sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		db_error_line(PQresultErrorMessage(res), why, sizeof(why));
		errf(err, errlen, "cannot read the schema version (run `exec-broker migrate`): %s",
		     why);
		rc = EB_ERR_DB;
		goto out;
	}
	if (!schema_current(res, why, sizeof(why))) {
		errf(err, errlen,
		     "the database schema is not the one this broker knows: %s; run `exec-broker "
		     "migrate` with this version",
		     why);
		rc = EB_ERR_CONFLICT;
		goto out;
	}
	PQclear(res);
	snprintf(margin, sizeof(margin), "%d", AUDIT_ABANDON_MARGIN_S);
	res = PQexecParams(c, audit_abandon_sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		db_error_line(PQresultErrorMessage(res), why, sizeof(why));
		errf(err, errlen, "cannot mark abandoned audit rows: %s", why);
		rc = EB_ERR_DB;
		goto out;
	}
	if (atoi(PQcmdTuples(res)) > 0)
		log_kv(LOG_WARN, "audit rows left running by an earlier run marked abandoned",
		       "rows", PQcmdTuples(res), "instance", s->instance, NULL);
	rc = 0;
out:
	PQclear(res);
	PQfinish(c);
	return rc;
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	if (s->listener != NULL)
		evconnlistener_enable(evhttp_bound_socket_get_listener(s->listener));
}

/* accept() failed, typically EMFILE: out of file descriptors (LimitNOFILE). The listening
 * socket stays readable, so libevent would retry at once, forever; pause accepting for a
 * second instead, while open connections finish and free descriptors. */
static struct server *the_server; /* the listener's error callback gets evhttp's argument */

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct server *s = the_server;
	struct timeval pause = {1, 0};
	int e = EVUTIL_SOCKET_ERROR();

	(void)arg;
	log_kv(LOG_WARN, "cannot accept connections; pausing for 1 s", "error", strerror(e), NULL);
	evconnlistener_disable(l);
	event_base_once(s->base, -1, EV_TIMEOUT, on_accept_resume, s, &pause);
}

static int setup_http(struct server *s, char *err, size_t errlen)
{
	char host[256];
	int port;

	if (config_parse_listen(s->cfg->listen, host, sizeof(host), &port) != 0) {
		errf(err, errlen, "listen: cannot parse \"%s\"", s->cfg->listen);
		return EB_ERR_INVAL;
	}
	s->http = evhttp_new(s->base);
	if (s->http == NULL) {
		errf(err, errlen, "out of memory");
		return EB_ERR_NOMEM;
	}
	evhttp_set_max_headers_size(s->http, MAX_HEADERS_BYTES);
	evhttp_set_max_body_size(s->http, s->cfg->max_body_bytes);
	/* Over the limit, read (and drop) the rest of the body before the 413: a client still
	 * sending when the connection closed would get a reset instead of the answer. */
	evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_timeout(s->http, s->cfg->http_idle_timeout_s);
	/* Every method evhttp parses reaches on_request, which answers 405 with Allow in the
	 * API's error format rather than evhttp's 501 page. */
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                        EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                                        EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(s->http, on_request, s);
	s->listener = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
	if (s->listener == NULL) {
		errf(err, errlen, "cannot listen on %s: %s", s->cfg->listen, strerror(errno));
		return EB_ERR_IO;
	}
	the_server = s;
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(s->listener), on_accept_error);
	return 0;
}

static void instance_name(struct server *s)
{
	char host[200];

	if (s->cfg->instance_name[0] != '\0') {
		snprintf(s->instance, sizeof(s->instance), "%s", s->cfg->instance_name);
		return;
	}
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(s->instance, sizeof(s->instance), "%.199s:%.50s", host, s->cfg->listen);
}

/* --- systemd and reload ---------------------------------------------------------------- */

static void pool_config_of(const struct config *cfg, struct pool_config *pc)
{
	*pc = (struct pool_config){
	    .ssh_key_path = cfg->ssh_key,
	    .max_channels_per_session = cfg->pool_max_channels_per_session,
	    .max_sessions_per_host = cfg->pool_max_sessions_per_host,
	    .max_sessions_total = cfg->pool_max_sessions_total,
	    .idle_ttl_s = cfg->pool_idle_ttl_s,
	    .keepalive_s = cfg->pool_keepalive_s,
	    .connect_timeout_s = cfg->pool_connect_timeout_s,
	    .channel_buffer_bytes = cfg->pool_channel_buffer_bytes,
	    .kill_grace_s = cfg->pool_kill_grace_s,
	};
}

/* STATUS= for `systemctl status`, plus any other assignments (READY=1, ...) before it. */
static void notify_status(struct server *s, const char *also)
{
	static const char *const names[] = {"serving", "draining", "stopping"};
	struct pool_stats st;

	pool_get_stats(s->pool, &st);
	sd_notifyf(0, "%sSTATUS=%s, %u execs running, %u sessions pooled", also, names[s->state],
	           s->njobs, st.sessions_ready + st.sessions_idle);
}

static void on_status(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	notify_status(arg, "");
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

/* Settings a reload cannot change: they shaped the listener, the database pool or the
 * rows already written. */
static void warn_restart_only(const struct config *old, const struct config *n)
{
	const struct {
		const char *name;
		bool changed;
	} fixed[] = {
	    {"listen", strcmp(old->listen, n->listen) != 0},
	    {"database_url", strcmp(old->database_url, n->database_url) != 0},
	    {"db_connections", old->db_connections != n->db_connections},
	    {"instance_name", strcmp(old->instance_name, n->instance_name) != 0},
	};

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (fixed[i].changed)
			log_kv(LOG_WARN, "setting changed: it takes effect at the next start",
			       "setting", fixed[i].name, NULL);
}

/* SIGHUP: the settings are loaded again; new execs get the new limits, timeouts, caps,
 * log level and SSH key; running execs and busy sessions go on as they were. A config
 * that does not load changes nothing. */
static void reload(struct server *s)
{
	struct config *n = calloc(1, sizeof(*n)), **olds;
	struct pool_config pc;
	struct timespec now;
	char err[512], mono[64];
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &now);
	snprintf(mono, sizeof(mono), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
	         (unsigned long long)now.tv_sec * 1000000ULL +
	             (unsigned long long)now.tv_nsec / 1000);
	sd_notifyf(0, "%sSTATUS=reloading the configuration", mono);
	olds = realloc(s->old_cfgs, (s->nold_cfgs + 1) * sizeof(*olds));
	if (n == NULL || olds == NULL) {
		free(n);
		log_kv(LOG_ERROR, "configuration not reloaded: out of memory", NULL);
		goto out;
	}
	s->old_cfgs = olds;
	if (config_load(n, s->cfg_flags, s->envp, err, sizeof(err)) != 0) {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       err, NULL);
		free(n);
		goto out;
	}
	if (n->ssh_key[0] == '\0') {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       "ssh_key is not set", NULL);
		goto fail;
	}
	pool_config_of(n, &pc);
	rc = pool_reconfigure(s->pool, &pc, err, sizeof(err));
	if (rc < 0) {
		log_kv(LOG_ERROR, "configuration not reloaded; the settings in force stay", "error",
		       err, NULL);
		goto fail;
	}
	warn_restart_only(s->cfg, n);
	log_set_level((enum log_level)log_level_parse(n->log_level));
	evhttp_set_max_body_size(s->http, n->max_body_bytes);
	evhttp_set_timeout(s->http, n->http_idle_timeout_s);
	s->old_cfgs[s->nold_cfgs++] = n; /* freed when the server ends */
	s->cfg = n;
	log_kv(LOG_INFO, "configuration reloaded", "ssh_key_changed", rc == 1 ? "yes" : "no", NULL);
	goto out;
fail:
	config_free(n);
	free(n);
out:
	notify_status(s, "READY=1\n");
}

static void on_hup(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	(void)fd;
	(void)what;
	if (s->state == SERVER_SERVING)
		reload(s);
}

/* Tells systemd the broker serves, and keeps it informed from timers. */
static int start_notifying(struct server *s, char *err, size_t errlen)
{
	struct timeval status = {SERVER_STATUS_S, 0};
	uint64_t usec = 0;

	s->ev_hup = evsignal_new(s->base, SIGHUP, on_hup, s);
	s->ev_status = event_new(s->base, -1, EV_PERSIST, on_status, s);
	if (s->ev_hup == NULL || s->ev_status == NULL || evsignal_add(s->ev_hup, NULL) != 0 ||
	    event_add(s->ev_status, &status) != 0) {
		errf(err, errlen, "cannot set up SIGHUP and status reports");
		return EB_ERR_IO;
	}
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		struct timeval half = {(time_t)(usec / 2 / 1000000),
		                       (suseconds_t)(usec / 2 % 1000000)};

		s->ev_watchdog = event_new(s->base, -1, EV_PERSIST, on_watchdog, s);
		if (s->ev_watchdog == NULL || event_add(s->ev_watchdog, &half) != 0) {
			errf(err, errlen, "cannot set up the watchdog timer");
			return EB_ERR_IO;
		}
	}
	notify_status(s, "READY=1\n");
	return 0;
}

int server_run(const struct config *cfg, const struct config_flags *flags, char *const envp[],
               char *err, size_t errlen)
{
	struct org_slots orgs = {NULL};
	struct server srv = {.cfg = cfg, .cfg_flags = flags, .envp = envp, .orgs = &orgs};
	struct server *s = &srv;
	struct pool_config pc;
	int rc;

	pool_config_of(cfg, &pc);
	/* A client that goes away mid-reply must be an error return, not a fatal signal. */
	signal(SIGPIPE, SIG_IGN);
	log_set_level((enum log_level)log_level_parse(cfg->log_level));
	instance_name(s);
	if (cfg->ssh_key[0] == '\0') {
		errf(err, errlen, "ssh_key is not set: the broker needs its SSH private key");
		return EB_ERR_INVAL;
	}
	rc = check_database(s, err, errlen);
	if (rc != 0)
		return rc;
	s->base = event_base_new();
	if (s->base == NULL) {
		errf(err, errlen, "cannot create the event loop");
		return EB_ERR_NOMEM;
	}
	rc = pool_new(s->base, &pc, &s->pool, err, errlen);
	if (rc != 0)
		goto out;
	s->pool_down = false;
	rc = pgasync_new(s->base, cfg->database_url, cfg->db_connections, &s->db, err, errlen);
	if (rc != 0)
		goto out;
	s->ev_term = evsignal_new(s->base, SIGTERM, on_signal, s);
	s->ev_int = evsignal_new(s->base, SIGINT, on_signal, s);
	s->ev_grace = evtimer_new(s->base, on_grace_over, s);
	s->ev_reap = event_new(s->base, -1, 0, on_reap, s);
	if (s->ev_term == NULL || s->ev_int == NULL || s->ev_grace == NULL || s->ev_reap == NULL ||
	    evsignal_add(s->ev_term, NULL) != 0 || evsignal_add(s->ev_int, NULL) != 0) {
		errf(err, errlen, "cannot set up signal handling");
		rc = EB_ERR_IO;
		goto out;
	}
	rc = setup_http(s, err, errlen);
	if (rc != 0)
		goto out;
	log_kv(LOG_INFO, "listening", "listen", cfg->listen, "instance", s->instance, "version",
	       EB_VERSION, NULL);
	rc = start_notifying(s, err, errlen);
	if (rc != 0)
		goto out;
	event_base_dispatch(s->base);
	log_kv(LOG_INFO, "stopped", NULL);
	rc = 0;
out:
	if (s->http != NULL)
		evhttp_free(s->http);
	if (s->pool != NULL && !s->pool_down) {
		/* Startup failed after the pool existed: nothing ran on it. */
		pool_shutdown(s->pool, on_pool_down, s);
		while (!s->pool_down && event_base_loop(s->base, EVLOOP_ONCE) == 0)
			;
	}
	pgasync_free(s->db);
	pool_free(s->pool);
	if (s->ev_term != NULL)
		event_free(s->ev_term);
	if (s->ev_int != NULL)
		event_free(s->ev_int);
	if (s->ev_grace != NULL)
		event_free(s->ev_grace);
	if (s->ev_reap != NULL)
		event_free(s->ev_reap);
	if (s->ev_flush != NULL)
		event_free(s->ev_flush);
	if (s->ev_hup != NULL)
		event_free(s->ev_hup);
	if (s->ev_status != NULL)
		event_free(s->ev_status);
	if (s->ev_watchdog != NULL)
		event_free(s->ev_watchdog);
	for (size_t i = 0; i < s->nold_cfgs; i++) {
		config_free(s->old_cfgs[i]);
		free(s->old_cfgs[i]);
	}
	free(s->old_cfgs);
	if (s->base != NULL)
		event_base_free(s->base);
	return rc;
}
