/* server/notify.c: sd_notify from the loop: readiness, status, watchdog, reloads. */
#include "server/notify.h"

#include <event2/event.h>
#include <stdint.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "common/err.h"
#include "pool/pool.h"
#include "server/serve.h"

#define SERVER_STATUS_S 5

void notify_status(struct server *s, const char *also)
{
	static const char *const names[] = {"serving", "leaving", "draining", "stopping"};
	struct pool_stats st;

	pool_get_stats(s->api.pool, &st);
	sd_notifyf(0, "%sSTATUS=%s, %u execs running, %u sessions pooled", also, names[s->state],
	           s->api.njobs, st.sessions_ready + st.sessions_idle);
}

void notify_reloading(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
	           (unsigned long long)now.tv_sec * 1000000ULL +
	               (unsigned long long)now.tv_nsec / 1000);
}

static void on_status(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	notify_status(arg, "");
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

int notify_start(struct server *s, char *err, size_t errlen)
{
	struct timeval status = {SERVER_STATUS_S, 0};
	uint64_t usec = 0;

	s->ev_status = event_new(s->base, -1, EV_PERSIST, on_status, s);
	if (s->ev_status == NULL || event_add(s->ev_status, &status) != 0) {
		snprintf(err, errlen, "cannot set up status reports");
		return EB_ERR_IO;
	}
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		struct timeval half = {(time_t)(usec / 2 / 1000000),
		                       (suseconds_t)(usec / 2 % 1000000)};

		s->ev_watchdog = event_new(s->base, -1, EV_PERSIST, on_watchdog, s);
		if (s->ev_watchdog == NULL || event_add(s->ev_watchdog, &half) != 0) {
			snprintf(err, errlen, "cannot set up the watchdog timer");
			return EB_ERR_IO;
		}
	}
	notify_status(s, "READY=1\n");
	return 0;
}
