/* client/common.c: what every client subcommand shares: the token, the broker's URL and the
 * connection to it, requests with their common headers, one-request calls with their
 * errors, signal names, output frames' bytes and local files. No subcommand's own
 * semantics: those stay in its file. */
#include "client/common.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fdio.h"
#include "common/utf8.h"

int client_conn_init(struct client_conn *cn, const char *what, const char *url, const char *cacert)
{
	const char *scheme;

	cn->what = what;
	cn->url = url;
	cn->cacert = cacert;
	cn->uri = evhttp_uri_parse(url);
	cn->host = cn->uri != NULL ? evhttp_uri_get_host(cn->uri) : NULL;
	scheme = cn->uri != NULL ? evhttp_uri_get_scheme(cn->uri) : NULL;
	if (cn->host == NULL || cn->host[0] == '\0' || scheme == NULL ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		cli_error("%s: --url must be http://HOST[:PORT][/PATH] or https://... (got \"%s\")",
		          what, url);
		return CLIENT_EXIT_USAGE;
	}
	cn->tls = strcmp(scheme, "https") == 0;
	if (cacert != NULL && !cn->tls) {
		cli_error("%s: --cacert is for an https:// --url (got \"%s\")", what, url);
		return CLIENT_EXIT_USAGE;
	}
	cn->port = evhttp_uri_get_port(cn->uri) > 0 ? evhttp_uri_get_port(cn->uri)
	           : cn->tls                        ? 443
	                                            : 80;
	snprintf(cn->hostport, sizeof(cn->hostport), strchr(cn->host, ':') ? "[%s]:%d" : "%s:%d",
	         cn->host, cn->port);
	return 0;
}

int client_conn_auth(struct client_conn *cn, struct cli *cli, const char *token_file,
                     const char *reason)
{
	char *token = NULL;
	int rc = 0;

	cn->reason = reason;
	if (client_token_load(cli, cn->what, token_file, &token) != 0)
		return CLIENT_EXIT_USAGE;
	if (asprintf(&cn->auth, "Bearer %s", token) < 0) {
		cn->auth = NULL;
		cli_error("%s: out of memory", cn->what);
		rc = CLIENT_EXIT_USAGE;
	}
	explicit_bzero(token, strlen(token));
	free(token);
	return rc;
}

/* The TLS context of an https broker: TLS 1.2 or 1.3, the peer's certificate verified
 * against --cacert (or the system's CAs). 0, or an exit status after printing why. */
static int tls_context(struct client_conn *cn)
{
	SSL_CTX *ctx;

	if (cn->ssl_ctx != NULL)
		return 0;
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		cli_error("%s: out of memory", cn->what);
		return CLIENT_EXIT_USAGE;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if ((cn->cacert != NULL ? SSL_CTX_load_verify_locations(ctx, cn->cacert, NULL)
	                        : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		ERR_clear_error();
		cli_error("%s: cannot read the CA certificates of --cacert %s", cn->what,
		          cn->cacert != NULL ? cn->cacert : "(the system's)");
		SSL_CTX_free(ctx);
		return CLIENT_EXIT_USAGE;
	}
	cn->ssl_ctx = ctx;
	return 0;
}

/* An https connection: SNI and the name (or address) checked against the certificate. */
static int tls_connection(struct client_conn *cn)
{
	struct bufferevent *bev;
	struct in6_addr a6;
	struct in_addr a4;
	SSL *ssl;
	int rc = tls_context(cn);

	if (rc != 0)
		return rc;
	ssl = SSL_new(cn->ssl_ctx);
	if (ssl == NULL) {
		cli_error("%s: out of memory", cn->what);
		return CLIENT_EXIT_USAGE;
	}
	if (inet_pton(AF_INET, cn->host, &a4) == 1 || inet_pton(AF_INET6, cn->host, &a6) == 1) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), cn->host);
	} else {
		SSL_set_tlsext_host_name(ssl, cn->host);
		SSL_set1_host(ssl, cn->host);
	}
	bev = bufferevent_openssl_socket_new(cn->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		cli_error("%s: out of memory", cn->what);
		return CLIENT_EXIT_USAGE;
	}
	cn->evcon = evhttp_connection_base_bufferevent_new(cn->base, NULL, bev, cn->host,
	                                                   (unsigned short)cn->port);
	return 0;
}

int client_conn_connect(struct client_conn *cn, int timeout_s)
{
	struct sigaction ign = {.sa_handler = SIG_IGN};
	int rc;

	sigaction(SIGPIPE, &ign, NULL);
	if (cn->base == NULL)
		cn->base = event_base_new();
	if (cn->base == NULL) {
		cli_error("%s: out of memory", cn->what);
		return CLIENT_EXIT_USAGE;
	}
	if (cn->tls) {
		rc = tls_connection(cn);
		if (rc != 0)
			return rc;
	} else {
		cn->evcon =
		    evhttp_connection_base_new(cn->base, NULL, cn->host, (unsigned short)cn->port);
	}
	if (cn->evcon == NULL) {
		cli_error("cannot reach the broker at %s: cannot resolve %s", cn->url, cn->host);
		return CLIENT_EXIT_UNREACHABLE;
	}
	evhttp_connection_set_timeout(cn->evcon, timeout_s);
	return 0;
}

int client_conn_setup(struct client_conn *cn, struct cli *cli, const char *what, const char *url,
                      const char *cacert, const char *token_file, const char *reason)
{
	int rc = client_conn_init(cn, what, url, cacert);

	if (rc == 0)
		rc = client_conn_auth(cn, cli, token_file, reason);
	return rc;
}

void client_conn_set_silence(struct client_conn *cn, json_t *timeout_s)
{
	json_int_t t = json_integer_value(timeout_s);

	/* The broker answers within the exec's timeout; beyond it, a silent connection
	 * means a wedged broker. */
	if (json_is_integer(timeout_s) && t > 0 && t <= CLIENT_MAX_TIMEOUT_S) {
		struct timeval tv = {(time_t)t + CLIENT_SLACK_TIMEOUT_S, 0};
		bufferevent_set_timeouts(evhttp_connection_get_bufferevent(cn->evcon), &tv, &tv);
	}
}

void client_conn_disconnect(struct client_conn *cn)
{
	if (cn->evcon != NULL)
		evhttp_connection_free(cn->evcon); /* and the request, if still in flight */
	cn->evcon = NULL;
}

void client_conn_free(struct client_conn *cn)
{
	client_conn_disconnect(cn);
	if (cn->base != NULL)
		event_base_free(cn->base);
	if (cn->auth != NULL)
		explicit_bzero(cn->auth, strlen(cn->auth));
	free(cn->auth);
	if (cn->uri != NULL)
		evhttp_uri_free(cn->uri);
	SSL_CTX_free(cn->ssl_ctx);
	cn->ssl_ctx = NULL;
	cn->base = NULL;
	cn->auth = NULL;
	cn->uri = NULL;
}

char *client_conn_path(const struct client_conn *cn, const char *prefix, const char *id,
                       const char *suffix)
{
	const char *base = evhttp_uri_get_path(cn->uri);
	char *enc = evhttp_uriencode(id, -1, 0), *path = NULL;
	size_t bl = base != NULL ? strlen(base) : 0;

	if (enc == NULL)
		return NULL;
	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	if (asprintf(&path, "%.*s%s%s%s", (int)bl, bl > 0 ? base : "", prefix, enc, suffix) < 0)
		path = NULL;
	free(enc);
	return path;
}

int client_request_send(struct client_conn *cn, struct evhttp_request *req,
                        enum evhttp_cmd_type method, const char *path, const char *accept,
                        const char *body)
{
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	char len[32];

	snprintf(len, sizeof(len), "%zu", body != NULL ? strlen(body) : 0);
	if (evhttp_add_header(hdr, "Host", cn->hostport) != 0 ||
	    evhttp_add_header(hdr, "Authorization", cn->auth) != 0 ||
	    (body != NULL && evhttp_add_header(hdr, "Content-Type", "application/json") != 0) ||
	    evhttp_add_header(hdr, "Accept", accept) != 0 ||
	    (body != NULL && evhttp_add_header(hdr, "Content-Length", len) != 0) ||
	    (cn->reason != NULL &&
	     evhttp_add_header(hdr, "X-Break-Glass-Reason", cn->reason) != 0)) {
		/* The token was checked when loaded: only the reason can hold a newline. */
		cli_error("%s: --break-glass-reason must be one line of text", cn->what);
		evhttp_request_free(req);
		return CLIENT_EXIT_USAGE;
	}
	if (body != NULL)
		evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	if (evhttp_make_request(cn->evcon, req, method, path) != 0) { /* req freed */
		cli_error("cannot reach the broker at %s", cn->url);
		return CLIENT_EXIT_UNREACHABLE;
	}
	return 0;
}

void client_neterr_note(struct client_neterr *e, enum evhttp_request_error err)
{
	e->errnum = errno;
	e->err = err;
	e->have = true;
}

const char *client_neterr_text(const struct client_neterr *e, char *buf, size_t len)
{
	if (!e->have)
		return "the connection was closed";
	switch (e->err) {
	case EVREQ_HTTP_TIMEOUT:
		return "timed out";
	case EVREQ_HTTP_EOF:
		if (e->errnum != 0) {
			snprintf(buf, len, "%s", strerror(e->errnum));
			return buf;
		}
		return "the connection was closed";
	case EVREQ_HTTP_INVALID_HEADER:
		return "the response is not valid HTTP";
	case EVREQ_HTTP_BUFFER_ERROR:
		snprintf(buf, len, "%s", e->errnum ? strerror(e->errnum) : "connection error");
		return buf;
	case EVREQ_HTTP_DATA_TOO_LONG:
		return "the response is too long";
	case EVREQ_HTTP_REQUEST_CANCEL:
	default:
		return "the request was cancelled";
	}
}

void client_print_unreachable(const struct client_conn *cn, const struct client_neterr *e)
{
	char buf[128];

	/* A failed connect comes with no error callback and an errno libevent has overwritten
	 * since: the cause is not known. */
	cli_error("cannot reach the broker at %s: %s", cn->url,
	          e->have ? client_neterr_text(e, buf, sizeof(buf))
	                  : "cannot connect (is it running there?)");
}

/* One call in flight: what its callbacks learn. */
struct call {
	struct client_conn *cn;
	struct client_reply *reply;
	struct client_neterr neterr;
	bool complete; /* the whole reply came */
};

static int call_on_header(struct evhttp_request *req, void *arg)
{
	struct call *k = arg;

	k->reply->status = evhttp_request_get_response_code(req);
	return 0;
}

static void call_on_error(enum evhttp_request_error err, void *arg)
{
	struct call *k = arg;

	client_neterr_note(&k->neterr, err);
}

static void call_on_done(struct evhttp_request *req, void *arg)
{
	struct call *k = arg;
	struct client_reply *r = k->reply;
	const char *loc;
	struct evbuffer *in;

	event_base_loopbreak(k->cn->base);
	/* A failed connect comes with the request and no status; a broken reply with none. */
	if (req == NULL || evhttp_request_get_response_code(req) == 0)
		return;
	r->status = evhttp_request_get_response_code(req);
	in = evhttp_request_get_input_buffer(req);
	r->len = evbuffer_get_length(in);
	r->body = malloc(r->len + 1);
	loc = evhttp_find_header(evhttp_request_get_input_headers(req), "Location");
	r->location = loc != NULL ? strdup(loc) : NULL;
	if (r->body == NULL)
		return;
	evbuffer_remove(in, r->body, r->len);
	r->body[r->len] = '\0';
	k->complete = true;
}

/* The outcome of a call whose loop has ended: 0 for a whole 2xx reply, else its exit. */
static int call_outcome(struct call *k)
{
	struct client_reply *r = k->reply;
	char buf[128];
	json_t *o;

	if (r->status == 0) {
		client_print_unreachable(k->cn, &k->neterr);
		return CLIENT_EXIT_UNREACHABLE;
	}
	if (!k->complete) {
		cli_error("the broker closed the connection in its HTTP %d reply (%s)", r->status,
		          client_neterr_text(&k->neterr, buf, sizeof(buf)));
		return r->status / 100 == 2 ? CLIENT_EXIT_UNREACHABLE
		                            : client_exit_of_error(r->status, NULL);
	}
	if (r->status / 100 != 2)
		return client_error_reply(r->status, r->body, r->len);
	o = json_loadb(r->body, r->len, 0, NULL);
	if (json_is_object(o))
		r->json = o;
	else
		json_decref(o);
	return 0;
}

int client_call(struct client_conn *cn, enum evhttp_cmd_type method, const char *path,
                const char *body, int timeout_s, struct client_reply *reply)
{
	struct call k = {.cn = cn, .reply = reply};
	struct evhttp_request *req;
	int rc;

	memset(reply, 0, sizeof(*reply));
	rc = client_conn_connect(cn, timeout_s);
	if (rc != 0)
		return rc;
	req = evhttp_request_new(call_on_done, &k);
	if (req == NULL) {
		cli_error("%s: out of memory", cn->what);
		rc = CLIENT_EXIT_USAGE;
		goto out;
	}
	evhttp_request_set_header_cb(req, call_on_header);
	evhttp_request_set_error_cb(req, call_on_error);
	rc = client_request_send(cn, req, method, path, "application/json", body);
	if (rc != 0)
		goto out;
	event_base_dispatch(cn->base);
	rc = call_outcome(&k);
out:
	client_conn_disconnect(cn);
	return rc;
}

void client_reply_free(struct client_reply *r)
{
	free(r->body);
	free(r->location);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

int client_reply_print(const struct client_reply *r)
{
	if (fdio_write_all(1, r->body, r->len, -1) != 0 ||
	    ((r->len == 0 || r->body[r->len - 1] != '\n') && fdio_write_all(1, "\n", 1, -1) != 0))
		return 128 + SIGPIPE;
	return 0;
}

int client_exit_of_error(int status, const char *code)
{
	if (code != NULL && strcmp(code, "exec_timeout") == 0)
		return CLIENT_EXIT_TIMEOUT;
	if (status == 401 || status == 403)
		return CLIENT_EXIT_AUTH;
	if (status == 404)
		return CLIENT_EXIT_NOT_FOUND;
	if (status == 502 || (code != NULL && strcmp(code, "transport_error") == 0))
		return CLIENT_EXIT_HOST;
	return CLIENT_EXIT_API;
}

bool client_print_api_error(json_t *err)
{
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *msg = json_string_value(json_object_get(err, "message"));

	if (code == NULL)
		return false;
	cli_error("%s: %s", code, msg != NULL ? msg : "(no message)");
	return true;
}

int client_error_reply(int status, const char *body, size_t len)
{
	json_t *o = json_loadb(body, len, 0, NULL);
	json_t *err = json_object_get(o, "error");
	const char *code = json_string_value(json_object_get(err, "code"));
	int rc;

	if (!client_print_api_error(err)) {
		/* libevent's own replies (413, malformed HTTP) are HTML. */
		cli_error("http_%d: the broker answered HTTP %d without an API error", status,
		          status);
	}
	rc = client_exit_of_error(status, code);
	json_decref(o);
	return rc;
}

static const struct {
	const char *name;
	int num;
} signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},     {"IOT", SIGABRT},  {"BUS", SIGBUS},
    {"FPE", SIGFPE},   {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
    {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},     {"PWR", SIGPWR},       {"SYS", SIGSYS},
};

int client_signal_number(const char *name)
{
	if (strncmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (strcmp(signals[i].name, name) == 0)
			return signals[i].num;
	return 0;
}

const char *client_signal_name(int num)
{
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].num == num)
			return signals[i].name;
	return NULL;
}

int client_output_decode(json_t *f, const char *stream, struct client_output *o)
{
	json_t *data = json_object_get(f, "data");
	const char *enc = json_string_value(json_object_get(f, "encoding"));
	size_t n;

	memset(o, 0, sizeof(*o));
	o->fd = strcmp(stream, "stdout") == 0 ? 1 : strcmp(stream, "stderr") == 0 ? 2 : -1;
	if (o->fd < 0)
		return 0; /* a stream this client does not know: nothing to write it to */
	if (json_is_true(json_object_get(f, "truncated"))) {
		o->truncated = true;
		return 0;
	}
	if (!json_is_string(data))
		return EB_ERR_INVAL;
	if (enc != NULL && strcmp(enc, "base64") == 0) {
		int rc = client_base64_decode(json_string_value(data), json_string_length(data),
		                              &o->owned, &n);
		if (rc != 0)
			return rc;
		o->data = (const char *)o->owned;
		o->len = n;
	} else if (enc == NULL || strcmp(enc, "utf-8") == 0) {
		o->data = json_string_value(data);
		o->len = json_string_length(data);
	} else {
		return EB_ERR_INVAL;
	}
	return 0;
}

void client_output_free(struct client_output *o)
{
	free(o->owned);
	o->owned = NULL;
}

int client_base64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	int n;
	size_t pad = 0;

	*out = NULL;
	if (len % 4 != 0)
		return EB_ERR_INVAL;
	buf = malloc(len / 4 * 3 + 1);
	if (buf == NULL)
		return EB_ERR_NOMEM;
	n = len == 0 ? 0 : EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (n < 0) {
		free(buf);
		return EB_ERR_INVAL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (len > 0 && s[len - 1] == '=')
		pad++;
	if (len > 1 && s[len - 2] == '=')
		pad++;
	*out = buf;
	*outlen = (size_t)n - pad;
	return 0;
}

int client_timeout_parse(const char *what, const char *s, int *out)
{
	char *end;
	long t;

	errno = 0;
	t = strtol(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || t > CLIENT_MAX_TIMEOUT_S) {
		cli_error("%s: --timeout takes whole seconds from 0 to %d (got \"%s\")", what,
		          CLIENT_MAX_TIMEOUT_S, s);
		return CLIENT_EXIT_USAGE;
	}
	*out = (int)t;
	return 0;
}

/* Frees n bytes of buf after wiping them (they may be a token or a secret stdin), keeping
 * errno. */
static void wipe_free(char *buf, size_t n)
{
	int e = errno;

	explicit_bzero(buf, n);
	free(buf);
	errno = e;
}

int client_read_all(int fd, char **out, size_t *outlen)
{
	size_t n = 0, cap = 65536;
	char *buf = malloc(cap), *grown;

	*out = NULL;
	if (buf == NULL)
		return EB_ERR_NOMEM;
	for (;;) {
		ssize_t k;
		if (n == cap) {
			if (cap >= (size_t)CLIENT_MAX_STDIN) {
				wipe_free(buf, n);
				errno = EFBIG;
				return EB_ERR_IO;
			}
			grown = realloc(buf, cap * 2);
			if (grown == NULL) {
				wipe_free(buf, n);
				return EB_ERR_NOMEM;
			}
			buf = grown;
			cap *= 2;
		}
		k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			wipe_free(buf, n);
			return EB_ERR_IO;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

int client_read_file(const char *path, char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc, e;

	*out = NULL;
	if (fd < 0)
		return EB_ERR_IO;
	rc = client_read_all(fd, out, outlen);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* The value of $EXEC_BROKER_TOKEN in cli's environment, or NULL. */
static const char *token_from_env(const struct cli *cli)
{
	const char *src = NULL;
	size_t n = strlen(CLIENT_TOKEN_ENV);

	for (size_t i = 0; cli->envp != NULL && cli->envp[i] != NULL; i++)
		if (strncmp(cli->envp[i], CLIENT_TOKEN_ENV, n) == 0 && cli->envp[i][n] == '=')
			src = cli->envp[i] + n + 1;
	return src;
}

/* The token in src[0..len): its first line, blanks trimmed; NULL when that is empty or
 * holds a byte that cannot go in a header. */
static char *token_from_text(const char *src, size_t len)
{
	size_t a = 0, b = 0;

	while (b < len && src[b] != '\n')
		b++;
	while (a < b && (src[a] == ' ' || src[a] == '\t' || src[a] == '\r'))
		a++;
	while (b > a && (src[b - 1] == ' ' || src[b - 1] == '\t' || src[b - 1] == '\r'))
		b--;
	for (size_t i = a; i < b; i++)
		if ((unsigned char)src[i] <= 0x20 || (unsigned char)src[i] >= 0x7f)
			return NULL; /* never a header with a control character */
	return b > a ? strndup(src + a, b - a) : NULL;
}

int client_token_load(struct cli *cli, const char *what, const char *path, char **tok)
{
	char *buf = NULL;
	size_t len = 0;

	*tok = NULL;
	if (path != NULL) {
		if (client_read_file(path, &buf, &len) != 0) {
			cli_error("%s: cannot read --token-file %s: %s", what, path,
			          strerror(errno));
			return EB_ERR_IO;
		}
		*tok = token_from_text(buf, len);
		wipe_free(buf, len);
	} else {
		const char *src = token_from_env(cli);
		if (src == NULL) {
			cli_error("%s: no token: give --token-file FILE or set " CLIENT_TOKEN_ENV,
			          what);
			return EB_ERR_INVAL;
		}
		*tok = token_from_text(src, strlen(src));
	}
	if (*tok == NULL) {
		cli_error("%s: the token %s is empty or not printable ASCII", what,
		          path != NULL ? "file's first line" : "in " CLIENT_TOKEN_ENV);
		return EB_ERR_INVAL;
	}
	return 0;
}

json_t *client_utf8_string(const char *s, size_t len)
{
	bool incomplete;

	if (utf8_valid_prefix((const unsigned char *)s, len, &incomplete) != len)
		return NULL;
	return json_stringn(s, len);
}
