/* server/notify.h: what systemd is told (Type=notify): READY=1 once serving, STATUS=
 * lines every few seconds, WATCHDOG=1 from a loop timer when WatchdogSec= is set,
 * RELOADING=1 around a reload, STOPPING=1. Without NOTIFY_SOCKET all of it is a no-op. */
#ifndef EB_SERVER_NOTIFY_H
#define EB_SERVER_NOTIFY_H

#include <stddef.h>

struct server;

/* Starts the STATUS= and WATCHDOG=1 timers and reports READY=1. 0, or EB_ERR_IO with one
 * line in err. */
int notify_start(struct server *s, char *err, size_t errlen);
/* Sends STATUS= (serving/draining/stopping, execs, sessions), after the assignments of
 * also ("READY=1\n", "STOPPING=1\n", or ""). */
void notify_status(struct server *s, const char *also);
/* RELOADING=1 with MONOTONIC_USEC, and a STATUS= saying so. */
void notify_reloading(void);

#endif
