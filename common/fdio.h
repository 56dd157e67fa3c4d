/* common/fdio.h: writing all of a buffer to a file descriptor, whatever it is (a socket,
 * a pipe, a terminal) and whether it blocks or not. */
#ifndef EB_COMMON_FDIO_H
#define EB_COMMON_FDIO_H

#include <stddef.h>

/* Writes all n bytes, retrying after EINTR and waiting (poll) while a non-blocking fd is
 * full, at most timeout_ms each time (-1: no limit). Sockets are written with
 * MSG_NOSIGNAL, so a peer that went away is an error return, never SIGPIPE. 0, or
 * EB_ERR_TIMEOUT, or EB_ERR_IO with errno set. */
int fdio_write_all(int fd, const void *buf, size_t n, int timeout_ms);

#endif
