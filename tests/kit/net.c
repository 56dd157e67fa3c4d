/* tests/kit/net.c: loopback ports and connections (see net.h). */
#include "tests/kit/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int kit_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	else
		fprintf(stderr, "kit: could not find a free port: %s\n", strerror(errno));
	if (fd >= 0)
		close(fd);
	return port;
}

int kit_connect(int port, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e = 0;
	socklen_t el = sizeof(e);
	struct pollfd pf;

	if (fd < 0)
		return -1;
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	e = errno;
	/* Interrupted, the connection goes on: its outcome is in SO_ERROR once writable. */
	if (e == EINTR) {
		pf = (struct pollfd){.fd = fd, .events = POLLOUT};
		while (poll(&pf, 1, -1) < 0 && errno == EINTR)
			;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0)
			return fd;
	}
	close(fd);
	errno = e;
	return -1;
}

bool kit_port_accepts(int port)
{
	int fd = kit_connect(port, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}
