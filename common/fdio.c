/* common/fdio.c: writing all of a buffer. */
#include "common/fdio.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"

int fdio_write_all(int fd, const void *buf, size_t n, int timeout_ms)
{
	const char *p = buf;
	bool sock = true;

	while (n > 0) {
		ssize_t k = sock ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);

		if (k < 0 && sock && errno == ENOTSOCK) {
			sock = false; /* a pipe, a file, a terminal */
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};

			if (poll(&pfd, 1, timeout_ms) == 0) {
				errno = ETIMEDOUT;
				return EB_ERR_TIMEOUT;
			}
			continue;
		}
		if (k < 0)
			return EB_ERR_IO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}
