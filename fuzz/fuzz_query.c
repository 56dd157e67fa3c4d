/* fuzz/fuzz_query.c: a request's target as the HTTP layer reads it (http/request.c) and the
 * route table matches it (http/router.c, api/routes.c): the path and its parameters, the
 * query string as decoded pairs, and for GET /v1/audit those pairs as the audit filter.
 * A matched route serves the method, its parameters are whole non-empty segments and put
 * back into its pattern give the path; a 405's Allow lists what the path serves and not
 * the method; the pairs come the same on every call, at most the handler's number of them.
 * Input: a method selector, then the target (any bytes; what the head refuses stops there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "fuzz/audit_check.h"
#include "fuzz/fuzz.h"
#include "http/internal.h"
#include "http/router.h"

#define MAX_PAIRS 32 /* as api/audit.c's AUDIT_MAX_PARAMS */

static void check_route(const struct http_route *route, const char *path, const char *const *params,
                        unsigned np)
{
	char rebuilt[HTTP_ROUTE_PATH_MAX + 2];
	size_t o = 0;
	unsigned k = 0;

	for (const char *p = route->pattern; *p != '\0';) {
		if (*p == '{') {
			FUZZ_CHECK(k < np, "fewer parameters than the pattern %s has",
			           route->pattern);
			FUZZ_CHECK(params[k][0] != '\0' && strchr(params[k], '/') == NULL,
			           "parameter \"%s\" is not one segment", params[k]);
			o += (size_t)snprintf(rebuilt + o, sizeof(rebuilt) - o, "%s", params[k++]);
			p = strchr(p, '}') + 1;
		} else {
			FUZZ_CHECK(o + 1 < sizeof(rebuilt), "the path is too long");
			rebuilt[o++] = *p++;
		}
		FUZZ_CHECK(o < sizeof(rebuilt), "the path is too long");
	}
	rebuilt[o] = '\0';
	FUZZ_CHECK(k == np, "%u parameters for %s", np, route->pattern);
	FUZZ_CHECK(strcmp(rebuilt, path) == 0, "%s with its parameters is %s, not the path %s",
	           route->pattern, rebuilt, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_conn conn = {0};
	struct http_request *r;
	struct framing_head *h;
	struct framing_error e;
	struct framing_scan s;
	const struct http_route *route;
	const char *names[MAX_PAIRS], *values[MAX_PAIRS], *names2[MAX_PAIRS], *values2[MAX_PAIRS];
	char allow[HTTP_ALLOW_MAX], *head;
	enum http_verb verb;
	size_t head_len, n, n2;
	unsigned np;
	int len;

	if (size < 1)
		return 0;
	verb = (enum http_verb)(data[0] % HTTP_NVERBS);
	static const char tail[] = " HTTP/1.1\r\nHost: fuzz\r\n\r\n";
	const char *m = http_verb_name(verb);
	size_t o = strlen(m) + 1;

	len = (int)(o + size - 1 + strlen(tail));
	head = malloc((size_t)len + 1);
	h = calloc(1, sizeof(*h));
	FUZZ_CHECK(head != NULL && h != NULL, "out of memory");
	/* The target's bytes as they are (a NUL among them is refused by the scan). */
	memcpy(head, m, o - 1);
	head[o - 1] = ' ';
	memcpy(head + o, data + 1, size - 1);
	memcpy(head + o + size - 1, tail, sizeof(tail));
	framing_scan_init(&s);
	if (framing_scan(&s, head, (size_t)len, &head_len, &e) != 1 || s.skip != 0 ||
	    head_len != (size_t)len || framing_parse_head(head, head_len, h, &e) != 0 ||
	    framing_check(h, 1024, &e) != 0) {
		free(head);
		free(h);
		return 0;
	}
	snprintf(conn.peer, sizeof(conn.peer), "fuzz");
	r = http_request_new(&conn);
	FUZZ_CHECK(r != NULL, "out of memory");
	FUZZ_CHECK(http_request_set_head(r, head, h) == 0, "set_head failed"); /* transferred */

	const char *path = http_request_path(r);
	/* Not always '/' first (http-parser takes "*:/x" for a URL): such a path matches no
	 * route, which check_route confirms for those that do. */
	FUZZ_CHECK(path != NULL && path[0] != '\0', "an empty path");
	switch (http_route_match(api_routes, api_nroutes, verb, path, &route, r->param_buf,
	                         r->params, &np, allow)) {
	case HTTP_ROUTE_FOUND:
		FUZZ_CHECK(route->methods & HTTP_M(verb), "%s does not serve %s", route->pattern,
		           http_verb_name(verb));
		check_route(route, path, r->params, np);
		for (unsigned i = 0; i < HTTP_MAX_PARAMS; i++)
			FUZZ_CHECK((http_request_param(r, i) != NULL) == (i < np), "parameter %u",
			           i);
		break;
	case HTTP_ROUTE_NO_METHOD:
		FUZZ_CHECK(allow[0] != '\0', "a 405 with an empty Allow");
		for (char *t = allow; *t != '\0';) {
			size_t tl = strcspn(t, ",");

			FUZZ_CHECK(tl != strlen(http_verb_name(verb)) ||
			               strncmp(t, http_verb_name(verb), tl) != 0,
			           "Allow: %s lists %s", allow, http_verb_name(verb));
			t += tl;
			t += strspn(t, ", ");
		}
		break;
	case HTTP_ROUTE_NOT_FOUND:
		break;
	default:
		fuzz_fail("route result");
	}

	int rc = http_request_query_pairs(r, names, values, MAX_PAIRS, &n);
	int rc2 = http_request_query_pairs(r, names2, values2, MAX_PAIRS, &n2);
	/* A second call answers as the first, a malformed query included. */
	FUZZ_CHECK(rc2 == rc && n2 == n,
	           "the second call gives %d and %zu pairs, the first %d and %zu", rc2, n2, rc, n);
	if (http_request_query(r) == NULL)
		FUZZ_CHECK(rc == 0 && n == 0, "pairs without a query");
	if (rc != 0) {
		FUZZ_CHECK(n == 0 || n == MAX_PAIRS + 1, "a refused query gives %zu pairs", n);
	} else {
		FUZZ_CHECK(n <= MAX_PAIRS, "%zu pairs", n);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(names[i] == names2[i] && values[i] == values2[i] &&
			               names[i] != NULL && values[i] != NULL,
			           "pair %zu", i);
		if (strcmp(path, "/v1/audit") == 0) {
			struct audit_filter f;
			char field[64], err[300];

			rc = audit_filter_parse(&f, names, values, n, field, sizeof(field), err,
			                        sizeof(err));
			fuzz_check_audit_filter(rc, &f, names, n, field, err);
		}
	}
	http_request_free(r);
	return 0;
}
