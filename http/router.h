/* http/router.h: the route table's rows and the matching of a request's method and path
 * against them: a path pattern is literal segments and {name} parameters, each route lists
 * the methods it serves, and what no row serves is a 404, or a 405 with the Allow header
 * that the rows for that path add up to. Pure. */
#ifndef EB_HTTP_ROUTER_H
#define EB_HTTP_ROUTER_H

#include <stddef.h>

#include "http/http.h"

struct http_route {
	const char *pattern; /* "/v1/workspaces/{id}/exec" */
	unsigned methods;    /* HTTP_M(HTTP_VERB_GET) | ... */
	void (*handler)(struct http_request *r, void *arg);
};

/* Longest path a route may match, and longest Allow value. */
#define HTTP_ROUTE_PATH_MAX 2048
#define HTTP_ALLOW_MAX      80

enum http_route_result {
	HTTP_ROUTE_FOUND,     /* *route and params are set */
	HTTP_ROUTE_NOT_FOUND, /* no pattern matches the path */
	HTTP_ROUTE_NO_METHOD, /* patterns match but none serves the method: allow is set */
};

/* Matches path (without the query) and method against routes[0..n). On FOUND, params[i]
 * points to a NUL-terminated copy of the i-th parameter inside buf (at least
 * strlen(path) + 1 bytes), nparams is their number. On NO_METHOD, allow receives the
 * methods the matching patterns serve ("GET, HEAD"). */
enum http_route_result http_route_match(const struct http_route *routes, size_t n,
                                        enum http_verb method, const char *path,
                                        const struct http_route **route, char *buf,
                                        const char *params[HTTP_MAX_PARAMS], unsigned *nparams,
                                        char allow[HTTP_ALLOW_MAX]);

/* Checks a table once at start: every pattern starts with '/', has at most
 * HTTP_MAX_PARAMS parameters, and no two rows serve the same method on the same pattern.
 * 0, or -1 with the offending pattern in *bad. */
int http_routes_check(const struct http_route *routes, size_t n, const char **bad);

#endif
