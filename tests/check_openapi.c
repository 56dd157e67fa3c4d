/* tests/check_openapi.c: docs/openapi.yaml against the broker: its error code enum is the
 * table of http/apierr.c, its paths are the rows of the route table (api/routes.c) and are
 * served with the same methods, the binary embeds the file byte for byte, and GET /openapi.yaml on
 * a real broker returns it. The YAML is read by a small line reader that knows the file's layout
 * (two-space indents, block lists), not by a YAML library. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/openapi.h"
#include "http/apierr.h"
#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/runner.h"

#define SPEC "docs/openapi.yaml"
#define MAXN 64

static struct kit_broker B;

struct spec_path {
	char path[128];
	char methods[128]; /* as in an Allow header: "GET, HEAD" */
};

static size_t indent_of(const char *line)
{
	return strspn(line, " ");
}

/* The next line of *p (without '\n') into buf; false at the end. */
static bool next_line(const char **p, char *buf, size_t len)
{
	const char *nl;
	size_t n;

	if (**p == '\0')
		return false;
	nl = strchr(*p, '\n');
	n = nl != NULL ? (size_t)(nl - *p) : strlen(*p);
	snprintf(buf, len, "%.*s", (int)n, *p);
	*p += n + (nl != NULL);
	return true;
}

static char *spec_text(size_t *len)
{
	char *s = kit_file_read(SPEC, len);

	ck_assert_msg(s != NULL, "cannot read %s (tests run from the top of the repo)", SPEC);
	return s;
}

/* The items of the block list under `enum:` of components.schemas.ErrorCode. */
static size_t spec_error_codes(const char *spec, char codes[][64])
{
	const char *p = spec;
	char line[512];
	bool in_schema = false, in_enum = false;
	size_t n = 0, ind;

	while (next_line(&p, line, sizeof(line))) {
		ind = indent_of(line);
		if (!in_schema) {
			in_schema = strcmp(line, "    ErrorCode:") == 0;
			continue;
		}
		if (line[ind] == '\0')
			continue;
		if (ind <= 4)
			break; /* the next schema */
		if (!in_enum) {
			in_enum = ind == 6 && strcmp(line + ind, "enum:") == 0;
			continue;
		}
		if (ind != 8 || strncmp(line + ind, "- ", 2) != 0)
			break;
		ck_assert_uint_lt(n, MAXN);
		snprintf(codes[n++], 64, "%.63s", line + ind + 2);
	}
	return n;
}

/* The keys under `paths:` and the HTTP methods under each. */
static size_t spec_paths(const char *spec, struct spec_path *out)
{
	static const char *const methods[] = {"get",     "put",  "post",  "delete",
	                                      "options", "head", "patch", "trace"};
	const char *p = spec;
	char line[512];
	bool in_paths = false;
	size_t n = 0, ind;

	while (next_line(&p, line, sizeof(line))) {
		ind = indent_of(line);
		if (!in_paths) {
			in_paths = strcmp(line, "paths:") == 0;
			continue;
		}
		if (line[0] != '\0' && ind == 0)
			break;
		if (ind == 2 && line[2] == '/' && line[strlen(line) - 1] == ':') {
			ck_assert_uint_lt(n, MAXN);
			snprintf(out[n].path, sizeof(out[n].path), "%.*s", (int)strlen(line) - 3,
			         line + 2);
			out[n++].methods[0] = '\0';
			continue;
		}
		if (ind != 4 || n == 0)
			continue;
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
			size_t ml = strlen(methods[m]);
			char *dst = out[n - 1].methods;
			size_t dl = strlen(dst);

			if (strncmp(line + 4, methods[m], ml) != 0 ||
			    strcmp(line + 4 + ml, ":") != 0)
				continue;
			ck_assert_uint_lt(dl + ml + 2, sizeof(out[n - 1].methods));
			if (dl > 0) {
				memcpy(dst + dl, ", ", 2);
				dl += 2;
			}
			for (size_t k = 0; k < ml; k++)
				dst[dl++] = (char)toupper((unsigned char)methods[m][k]);
			dst[dl] = '\0';
		}
	}
	return n;
}

/* The path with each {parameter} replaced by a value the broker routes. */
static void instantiate(const char *tmpl, char *out, size_t len)
{
	size_t o = 0;

	for (const char *t = tmpl; *t != '\0' && o + 40 < len;) {
		if (*t != '{') {
			out[o++] = *t++;
			continue;
		}
		o += (size_t)snprintf(out + o, len - o, "%s",
		                      strncmp(t, "{exec_id}", 9) == 0
		                          ? "8e0c1f0e-3f0b-4a57-9a63-0cf1a4b8f0a2"
		                          : "ws-1");
		t = strchr(t, '}') + 1;
	}
	out[o] = '\0';
}

START_TEST(every_broker_code_is_in_the_spec)
{
	char *spec = spec_text(NULL);
	char codes[MAXN][64];
	size_t n = spec_error_codes(spec, codes), i;
	const char *c;

	ck_assert_msg(n > 0, "no enum under components.schemas.ErrorCode in %s", SPEC);
	for (i = 0; (c = apierr_code(i)) != NULL; i++) {
		bool found = false;

		for (size_t k = 0; k < n; k++)
			found = found || strcmp(codes[k], c) == 0;
		ck_assert_msg(found, "error code %s is missing from ErrorCode in %s", c, SPEC);
	}
	ck_assert_uint_eq(i, 32);
	free(spec);
}
END_TEST

START_TEST(every_spec_code_is_a_broker_code)
{
	char *spec = spec_text(NULL);
	char codes[MAXN][64];
	size_t n = spec_error_codes(spec, codes);

	ck_assert_uint_gt(n, 0);
	for (size_t k = 0; k < n; k++) {
		ck_assert_msg(apierr_known(codes[k]), "%s lists %s, which the broker does not have",
		              SPEC, codes[k]);
		for (size_t j = 0; j < k; j++)
			ck_assert_msg(strcmp(codes[j], codes[k]) != 0, "%s listed twice", codes[k]);
	}
	free(spec);
}
END_TEST

START_TEST(embedded_bytes_are_the_file)
{
	size_t len;
	char *spec = spec_text(&len);

	ck_assert_uint_eq(openapi_yaml_len, len);
	ck_assert_msg(memcmp(openapi_yaml, spec, len) == 0,
	              "the embedded document differs from %s: rebuild", SPEC);
	ck_assert_int_eq(openapi_yaml[len], 0);
	free(spec);
}
END_TEST

/* Whether two path templates are the same once parameter names are ignored. */
static bool same_template(const char *a, const char *b)
{
	while (*a != '\0' && *b != '\0') {
		if (*a == '{' && *b == '{') {
			a = strchr(a, '}');
			b = strchr(b, '}');
			if (a == NULL || b == NULL)
				return false;
		} else if (*a != *b) {
			return false;
		}
		a++;
		b++;
	}
	return *a == *b;
}

/* Every row of the route table (api/routes.c) is a path of the spec. */
START_TEST(every_route_of_the_server_is_in_the_spec)
{
	struct spec_path paths[MAXN];
	char *spec = spec_text(NULL);
	size_t n = spec_paths(spec, paths);

	ck_assert_uint_gt(n, 0);
	for (size_t r = 0; r < api_nroutes; r++) {
		bool found = false;

		for (size_t i = 0; i < n && !found; i++)
			found = same_template(paths[i].path, api_routes[r].pattern);
		ck_assert_msg(found, "the route table serves %s, which is not a path of %s",
		              api_routes[r].pattern, SPEC);
	}
	ck_assert_uint_ge(api_nroutes, 7); /* five literal paths, two templated */
	free(spec);
}
END_TEST

/* Every path of the spec reaches its handler on a real broker, which allows exactly the
 * spec's methods: PATCH (in no path) is 405 with Allow listing them. */
START_TEST(every_spec_path_is_served_with_its_methods)
{
	struct spec_path paths[MAXN];
	char *spec = spec_text(NULL);
	size_t n = spec_paths(spec, paths);

	ck_assert_uint_ge(n, 7);
	for (size_t i = 0; i < n; i++) {
		char url[200], allow[128];
		struct kit_req q = {.method = "PATCH"};
		struct kit_resp r;
		json_t *o;

		ck_assert_msg(strstr(paths[i].methods, "PATCH") == NULL, "%s", paths[i].path);
		ck_assert_msg(paths[i].methods[0] != '\0', "%s has no operation", paths[i].path);
		instantiate(paths[i].path, url, sizeof(url));
		q.path = url;
		sv_http(B.port, &q, &r);
		ck_assert_msg(r.status == 405, "PATCH %s: %d %s", url, r.status, r.body);
		o = sv_json(&r);
		ck_assert_str_eq(sv_str(o, "error.code"), "method_not_allowed");
		json_decref(o);
		ck_assert_ptr_nonnull(kit_header(&r, "Allow", allow, sizeof(allow)));
		ck_assert_msg(strcmp(allow, paths[i].methods) == 0,
		              "%s: the broker allows %s, the spec describes %s", paths[i].path,
		              allow, paths[i].methods);
		kit_resp_free(&r);
	}
	free(spec);
}
END_TEST

/* The probe above can tell: a path the broker does not serve is 404, not 405. */
START_TEST(path_not_served_is_404)
{
	struct kit_req q = {.method = "DELETE", .path = "/openapi.json"};
	struct kit_resp r;
	json_t *o;

	sv_http(B.port, &q, &r);
	ck_assert_int_eq(r.status, 404);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "error.code"), "not_found");
	json_decref(o);
	kit_resp_free(&r);
}
END_TEST

START_TEST(get_openapi_yaml_is_the_file)
{
	struct kit_req q = {.method = "GET", .path = "/openapi.yaml"};
	struct kit_resp r;
	size_t len;
	char *spec = spec_text(&len), ctype[64];

	sv_http(B.port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(kit_header(&r, "Content-Type", ctype, sizeof(ctype)));
	ck_assert_str_eq(ctype, "application/yaml");
	ck_assert_uint_eq(r.body_len, len);
	ck_assert_msg(memcmp(r.body, spec, len) == 0, "GET /openapi.yaml is not %s", SPEC);
	kit_resp_free(&r);
	free(spec);
}
END_TEST

/* HEAD: the headers of GET, Content-Length included, and no body. Sent raw and read until
 * the broker closes (Connection: close), so that a body sent after the headers would show. */
START_TEST(head_openapi_yaml_is_headers_only)
{
	static const char req[] =
	    "HEAD /openapi.yaml HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
	struct kit_req q = {.raw = req, .raw_len = sizeof(req) - 1};
	struct kit_conn c;
	char want[64], *buf, *end;
	size_t got;

	kit_conn_init(&c, B.port);
	ck_assert_int_eq(kit_conn_send(&c, &q), 0);
	ck_assert_int_eq(kit_conn_read_to_close(&c, KIT_WAIT_MS, &buf, &got), 0);
	kit_conn_free(&c);
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%.300s", buf);
	snprintf(want, sizeof(want), "Content-Length: %zu\r\n", openapi_yaml_len);
	ck_assert_msg(strstr(buf, want) != NULL, "no %s in %.600s", want, buf);
	end = strstr(buf, "\r\n\r\n");
	ck_assert_ptr_nonnull(end);
	ck_assert_msg(end[4] == '\0', "HEAD sent a body: %.200s", end + 4);
	free(buf);
}
END_TEST

START_TEST(post_openapi_yaml_is_405)
{
	struct kit_req q = {.method = "POST", .path = "/openapi.yaml"};
	struct kit_resp r;
	char allow[64];

	sv_http(B.port, &q, &r);
	ck_assert_int_eq(r.status, 405);
	ck_assert_ptr_nonnull(kit_header(&r, "Allow", allow, sizeof(allow)));
	ck_assert_str_eq(allow, "GET, HEAD");
	kit_resp_free(&r);
}
END_TEST

#define ADD(s, fn) SV_ADD_LOOP(s, fn, 1, 60)

int main(void)
{
	static const char *const migrate[] = {"migrate", NULL};
	Suite *s = suite_create("openapi");
	char db[512];
	int failed;

	/* A migrated database and the key the broker loads; no workspace is needed. */
	if (th_setup(TH_PG | TH_SSHD) != 0 || th_db_create(db, sizeof(db)) != 0 ||
	    kit_cli(db, migrate, NULL, NULL) != 0 ||
	    kit_broker_start(&B, db, "eb-openapi", NULL) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, every_broker_code_is_in_the_spec);
	ADD(s, every_spec_code_is_a_broker_code);
	ADD(s, embedded_bytes_are_the_file);
	ADD(s, every_route_of_the_server_is_in_the_spec);
	ADD(s, every_spec_path_is_served_with_its_methods);
	ADD(s, path_not_served_is_404);
	ADD(s, get_openapi_yaml_is_the_file);
	ADD(s, head_openapi_yaml_is_headers_only);
	ADD(s, post_openapi_yaml_is_405);
	failed = tu_run_suite(s);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	th_teardown();
	return failed;
}
