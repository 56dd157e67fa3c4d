/* http/request.c: one request's context as handlers read it (method, path parameters,
 * query, headers, body, id, client, clock) and its log line. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "common/log.h"
#include "http/internal.h"

const char *http_verb_name(enum http_verb v)
{
	static const char *const names[] = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
	                                    "PATCH", "OPTIONS", "TRACE", "CONNECT"};

	if ((unsigned)v >= HTTP_NVERBS)
		abort();
	return names[v];
}

struct http_request *http_request_new(struct http_conn *c)
{
	struct http_request *r = calloc(1, sizeof(*r));
	uuid_t u;

	if (r == NULL)
		return NULL;
	r->body = evbuffer_new();
	if (r->body == NULL) {
		free(r);
		return NULL;
	}
	r->srv = c->srv;
	r->conn = c;
	r->method = "-";
	r->query_pairs.tqh_first = NULL;
	r->query_pairs.tqh_last = &r->query_pairs.tqh_first;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	snprintf(r->client, sizeof(r->client), "%s", c->peer);
	snprintf(r->path, sizeof(r->path), "-");
	/* Until the head says otherwise (a refusal may come before it is read). */
	uuid_generate_random(u);
	uuid_unparse_lower(u, r->id);
	return r;
}

/* X-Request-Id: a client's own id when it is reasonable, else the new UUID stays. */
static void take_request_id(struct http_request *r)
{
	const char *v = framing_field(r->fields, "X-Request-Id");
	size_t n;

	if (v != NULL && (n = strlen(v)) >= 1 && n <= HTTP_REQUEST_ID_MAX &&
	    strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n)
		memcpy(r->id, v, n + 1);
}

int http_request_set_head(struct http_request *r, char *head, struct framing_head *h)
{
	struct http_parser_url u;
	size_t tlen = strlen(h->target);

	r->head = head;
	r->fields = h;
	r->verb = h->verb;
	r->method = h->method;
	r->minor = h->minor;
	r->target = h->target;
	take_request_id(r);
	http_parser_url_init(&u);
	if (strcmp(h->target, "*") != 0 && h->verb != HTTP_VERB_CONNECT &&
	    http_parser_parse_url(h->target, tlen, 0, &u) == 0 && (u.field_set & (1 << UF_PATH))) {
		r->full_path =
		    strndup(h->target + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
		if (u.field_set & (1 << UF_QUERY)) {
			/* The query is the rest of the target after '?': NUL-terminate it there. */
			char *q = (char *)h->target + u.field_data[UF_QUERY].off;

			q[u.field_data[UF_QUERY].len] = '\0';
			r->query = q;
		}
	} else {
		r->full_path = strdup("/");
	}
	if (r->full_path == NULL)
		return -1;
	if (r->full_path[0] == '\0') {
		free(r->full_path);
		r->full_path = strdup("/");
		if (r->full_path == NULL)
			return -1;
	}
	r->param_buf = malloc(strlen(r->full_path) + 1);
	if (r->param_buf == NULL)
		return -1;
	snprintf(r->path, sizeof(r->path), "%s", r->full_path);
	return 0;
}

enum http_verb http_request_verb(const struct http_request *r)
{
	return r->verb;
}

const char *http_request_path(const struct http_request *r)
{
	return r->full_path;
}

const char *http_request_query(const struct http_request *r)
{
	return r->query;
}

const char *http_request_param(const struct http_request *r, unsigned i)
{
	return i < HTTP_MAX_PARAMS ? r->params[i] : NULL;
}

const char *http_request_header(const struct http_request *r, const char *name)
{
	return r->fields != NULL ? framing_field(r->fields, name) : NULL;
}

const char *http_request_body(struct http_request *r, size_t *len)
{
	*len = evbuffer_get_length(r->body);
	return (const char *)evbuffer_pullup(r->body, -1);
}

const char *http_request_id(const struct http_request *r)
{
	return r->id;
}

const char *http_request_client(const struct http_request *r)
{
	return r->client;
}

long long http_request_elapsed_ms(const struct http_request *r)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - r->t0.tv_sec) * 1000 +
	       (now.tv_nsec - r->t0.tv_nsec) / 1000000;
}

int http_request_query_pairs(struct http_request *r, const char **names, const char **values,
                             size_t max, size_t *n)
{
	struct evkeyval *kv;

	*n = 0;
	if (!r->query_parsed) {
		r->query_parsed = true;
		r->query_bad =
		    r->query != NULL && evhttp_parse_query_str(r->query, &r->query_pairs) != 0;
	}
	if (r->query_bad)
		return -1;
	for (kv = r->query_pairs.tqh_first; kv != NULL; kv = kv->next.tqe_next) {
		if (*n == max) {
			*n = max + 1;
			return -1;
		}
		names[*n] = kv->key;
		values[(*n)++] = kv->value;
	}
	return 0;
}

struct http_log_fields *http_request_log(struct http_request *r)
{
	return &r->log;
}

void http_request_log_line(struct http_request *r)
{
	char status[8], ms[24], method[24];

	snprintf(status, sizeof(status), "%d", r->status);
	snprintf(ms, sizeof(ms), "%lld", http_request_elapsed_ms(r));
	snprintf(method, sizeof(method), "%s", r->method);
	log_kv(r->status >= 500                       ? LOG_WARN
	       : r->log.probe && r->status / 100 == 2 ? LOG_DEBUG
	                                              : LOG_INFO,
	       "request", "method", method, "path", r->path, "status", status, "request_id", r->id,
	       "client", r->client, "duration_ms", ms, "workspace_id", r->log.workspace_id, "actor",
	       r->log.actor, "exec_id", r->log.exec_id, "outcome", r->log.outcome, "error",
	       r->log.error, NULL);
}

void http_request_free(struct http_request *r)
{
	if (r == NULL)
		return;
	evhttp_clear_headers(&r->query_pairs);
	if (r->body != NULL)
		evbuffer_free(r->body);
	for (unsigned i = 0; i < r->nout; i++) {
		free((char *)r->out_headers[i].name);
		free((char *)r->out_headers[i].value);
	}
	free(r->fields);
	free(r->head);
	free(r->full_path);
	free(r->param_buf);
	free(r);
}

bool http_request_client_gone(const struct http_request *r)
{
	return r->gone;
}

void http_request_gone(struct http_request *r)
{
	if (r->gone)
		return;
	r->gone = true;
	if (r->on_close != NULL)
		r->on_close(r, r->on_close_arg);
}

void http_request_on_close(struct http_request *r, void (*cb)(struct http_request *r, void *arg),
                           void *arg)
{
	r->on_close = cb;
	r->on_close_arg = arg;
}
