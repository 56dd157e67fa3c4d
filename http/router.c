/* http/router.c: matching a method and a path against the route table. */
#include "http/router.h"

#include <string.h>

/* Matches one pattern against path segment by segment; parameters are copied into buf. */
static bool pattern_matches(const char *pattern, const char *path, char *buf,
                            const char *params[HTTP_MAX_PARAMS], unsigned *nparams)
{
	const char *p = pattern, *s = path;

	*nparams = 0;
	while (*p != '\0' && *s != '\0') {
		size_t plen = strcspn(p + 1, "/") + 1, slen = strcspn(s + 1, "/") + 1;

		if (*p != '/' || *s != '/')
			return false;
		if (p[1] == '{') {
			/* A parameter is one whole segment, never empty. */
			if (slen == 1 || *nparams == HTTP_MAX_PARAMS)
				return false;
			memcpy(buf, s + 1, slen - 1);
			buf[slen - 1] = '\0';
			params[(*nparams)++] = buf;
			buf += slen;
		} else if (plen != slen || memcmp(p, s, plen) != 0) {
			return false;
		}
		p += plen;
		s += slen;
	}
	return *p == '\0' && *s == '\0';
}

static void allow_add(char allow[HTTP_ALLOW_MAX], unsigned methods)
{
	size_t len = 0;

	allow[0] = '\0';
	for (int m = 0; m < HTTP_NVERBS; m++) {
		const char *name = http_verb_name((enum http_verb)m);

		if ((methods & HTTP_M(m)) == 0 || len + strlen(name) + 3 > HTTP_ALLOW_MAX)
			continue;
		if (len > 0) {
			memcpy(allow + len, ", ", 2);
			len += 2;
		}
		memcpy(allow + len, name, strlen(name) + 1);
		len += strlen(name);
	}
}

enum http_route_result http_route_match(const struct http_route *routes, size_t n,
                                        enum http_verb method, const char *path,
                                        const struct http_route **route, char *buf,
                                        const char *params[HTTP_MAX_PARAMS], unsigned *nparams,
                                        char allow[HTTP_ALLOW_MAX])
{
	unsigned methods = 0;

	*route = NULL;
	*nparams = 0;
	if (strlen(path) > HTTP_ROUTE_PATH_MAX)
		return HTTP_ROUTE_NOT_FOUND;
	for (size_t i = 0; i < n; i++) {
		unsigned np;

		if (!pattern_matches(routes[i].pattern, path, buf, params, &np))
			continue;
		if (routes[i].methods & HTTP_M(method)) {
			*route = &routes[i];
			*nparams = np;
			return HTTP_ROUTE_FOUND;
		}
		methods |= routes[i].methods;
	}
	if (methods == 0)
		return HTTP_ROUTE_NOT_FOUND;
	allow_add(allow, methods);
	return HTTP_ROUTE_NO_METHOD;
}

int http_routes_check(const struct http_route *routes, size_t n, const char **bad)
{
	for (size_t i = 0; i < n; i++) {
		unsigned nparams = 0;

		*bad = routes[i].pattern;
		if (routes[i].pattern[0] != '/' || routes[i].handler == NULL ||
		    routes[i].methods == 0)
			return -1;
		for (const char *p = routes[i].pattern; (p = strchr(p, '{')) != NULL; p++)
			nparams++;
		if (nparams > HTTP_MAX_PARAMS)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(routes[j].pattern, routes[i].pattern) == 0 &&
			    (routes[j].methods & routes[i].methods) != 0)
				return -1;
	}
	*bad = NULL;
	return 0;
}
