/* server/janitor.h: the broker's periodic work in the database: a heartbeat every
 * broker_heartbeat_s that says this broker is alive, and after it a sweep that marks
 * 'abandoned' the rows left running by brokers that are gone, once past their deadline. */
#ifndef EB_SERVER_JANITOR_H
#define EB_SERVER_JANITOR_H

struct api;
struct event;
struct pgasync_query;

struct janitor {
	struct api *api;
	struct event *timer;
	struct pgasync_query *q; /* the heartbeat or the sweep in flight, or NULL */
	/* Where the check of running detached execs goes on: the last row checked. */
	char cursor_at[64], cursor_id[40];
};

/* Starts the heartbeats (the first one now). 0 or EB_ERR_NOMEM. */
int janitor_start(struct janitor *j, struct api *api);
/* Stops them; a statement in flight is dropped. */
void janitor_stop(struct janitor *j);

#endif
