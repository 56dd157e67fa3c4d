/* tests/kit/net.h: loopback TCP: a port nothing listens on, whether a port accepts
 * connections, and a connection to one. */
#ifndef EB_TESTS_KIT_NET_H
#define EB_TESTS_KIT_NET_H

#include <stdbool.h>

/* A port the kernel just had free on 127.0.0.1 (a server given it may still lose it to
 * another process, and must then try another), or -1 with a message on stderr. */
int kit_free_port(void);
bool kit_port_accepts(int port);
/* A blocking connection to 127.0.0.1:port whose receive buffer is rcvbuf bytes (0: the
 * system's), set before connecting so that the window the peer sees is small from the
 * start. The socket (close-on-exec), or -1 with errno set. */
int kit_connect(int port, int rcvbuf);

#endif
