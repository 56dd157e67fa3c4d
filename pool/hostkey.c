/* pool/hostkey.c: a blocking host-key probe for `exec-broker workspace hostkey`. */
#include "pool/hostkey.h"

#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"

static const char *key_type_name(int t)
{
	switch (t) {
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return "RSA";
	case LIBSSH2_HOSTKEY_TYPE_DSS:
		return "DSA";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return "ECDSA";
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return "ED25519";
	default:
		return "UNKNOWN";
	}
}

/* A TCP connection to the first address of host:port that answers within timeout_ms. */
static int connect_tcp(const char *host, int port, int timeout_ms, int *out, char *err,
                       size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
	struct addrinfo *ai = NULL;
	char service[16];
	int rc, fd = -1, last_errno = 0;

	*out = -1;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return EB_ERR_IO;
	}
	for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
		struct pollfd pfd;
		socklen_t len = sizeof(last_errno);

		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		            a->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		last_errno = errno;
		if (errno == EINPROGRESS) {
			pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
			rc = poll(&pfd, 1, timeout_ms);
			if (rc == 0)
				last_errno = ETIMEDOUT;
			else if (rc > 0 &&
			         getsockopt(fd, SOL_SOCKET, SO_ERROR, &last_errno, &len) == 0 &&
			         last_errno == 0)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s port %d: %s", host, port,
		         strerror(last_errno));
		return last_errno == ETIMEDOUT ? EB_ERR_TIMEOUT : EB_ERR_IO;
	}
	/* libssh2 runs blocking here; the CLI has nothing else to do meanwhile. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*out = fd;
	return 0;
}

int hostkey_set_method_pref(LIBSSH2_SESSION *session)
{
	const char **algs = NULL;
	char pref[sizeof(HOSTKEY_METHODS)] = "";
	const char *p = HOSTKEY_METHODS;
	int n, rc;

	/* libssh2 1.10 removes unsupported names from a preference list with an overlapping
	 * memcpy (undefined behaviour); offer it only names it supports. */
	n = libssh2_session_supported_algs(session, LIBSSH2_METHOD_HOSTKEY, &algs);
	if (n <= 0)
		return EB_ERR_SSH;
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		for (int i = 0; i < n; i++)
			if (strlen(algs[i]) == len && strncmp(algs[i], p, len) == 0) {
				if (pref[0] != '\0')
					strcat(pref, ",");
				strncat(pref, p, len);
			}
		p += len + (p[len] == ',');
	}
	libssh2_free(session, algs);
	if (pref[0] == '\0')
		return EB_ERR_SSH;
	rc = libssh2_session_method_pref(session, LIBSSH2_METHOD_HOSTKEY, pref);
	return rc == 0 ? 0 : EB_ERR_SSH;
}

int hostkey_probe(const char *host, int port, int timeout_ms, char fp[FP_TEXT_LEN + 1],
                  char type[16], char *err, size_t errlen)
{
	LIBSSH2_SESSION *session = NULL;
	const char *hash, *key;
	size_t key_len;
	int key_type, fd, rc;

	rc = connect_tcp(host, port, timeout_ms, &fd, err, errlen);
	if (rc != 0)
		return rc;
	rc = EB_ERR_SSH;
	if (libssh2_init(0) != 0) {
		snprintf(err, errlen, "cannot initialise libssh2");
		goto out;
	}
	session = libssh2_session_init();
	if (session == NULL) {
		snprintf(err, errlen, "cannot create an SSH session");
		goto out;
	}
	libssh2_session_set_blocking(session, 1);
	libssh2_session_set_timeout(session, timeout_ms);
	if (hostkey_set_method_pref(session) != 0) {
		snprintf(err, errlen, "libssh2 supports none of the host key algorithms");
		goto out;
	}
	if (libssh2_session_handshake(session, fd) != 0) {
		char *msg = NULL;
		libssh2_session_last_error(session, &msg, NULL, 0);
		snprintf(err, errlen, "SSH handshake with %s port %d failed: %s", host, port,
		         msg ? msg : "unknown error");
		goto out;
	}
	hash = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256);
	key = libssh2_session_hostkey(session, &key_len, &key_type);
	if (hash == NULL || key == NULL) {
		snprintf(err, errlen, "%s port %d sent no host key", host, port);
		goto out;
	}
	fp_format((const unsigned char *)hash, fp);
	snprintf(type, 16, "%s", key_type_name(key_type));
	rc = 0;
out:
	if (session != NULL) {
		libssh2_session_disconnect(session, "host key probe done");
		libssh2_session_free(session);
	}
	close(fd);
	libssh2_exit();
	return rc;
}
