/* api/seal.c: the queue of rows to link into the audit chain (see seal.h). */
#include "api/seal.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "common/log.h"
#include "db/pgasync.h"

#define SEAL_DEADLINE_MS 5000
/* The first row waits this long for others to join its batch: one statement (and one
 * commit) per SEAL_DELAY_MS however many execs end meanwhile, never in an exec's way. */
#define SEAL_DELAY_MS     20
#define SEAL_RETRY_MIN_MS 100
#define SEAL_RETRY_MAX_MS 2000

static void seal_send(struct api *a);
static void on_retry(evutil_socket_t fd, short what, void *arg);

/* Sends what waits in delay_ms, unless a statement is in flight or a send is due already. */
static void seal_later(struct api *a, long delay_ms)
{
	struct seal_queue *s = &a->seal;
	struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};

	if (s->q != NULL || (s->retry != NULL && evtimer_pending(s->retry, NULL)))
		return;
	if (s->retry == NULL)
		s->retry = evtimer_new(a->base, on_retry, a);
	if (s->retry == NULL || evtimer_add(s->retry, &tv) != 0)
		seal_send(a); /* no timer: at once */
}

static void seal_hold(struct api *a, bool on)
{
	struct seal_queue *s = &a->seal;

	if (on && !s->held) {
		s->held = true;
		api_hold(a);
	} else if (!on && s->held) {
		s->held = false;
		api_release(a);
	}
}

static bool seal_given_up(const struct api *a)
{
	struct timespec now;

	if (a->completions_until_ms == 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 >= a->completions_until_ms;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	seal_send(arg);
}

static void on_sealed(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct api *a = arg;
	struct seal_queue *s = &a->seal;
	struct timeval tv;

	(void)res;
	(void)sqlstate;
	s->q = NULL;
	if (error == NULL) {
		s->sealed += s->sending;
		memmove(s->ids, s->ids + s->sending, (s->n - s->sending) * sizeof(*s->ids));
		s->n -= s->sending;
		s->sending = 0;
		s->delay_ms = SEAL_RETRY_MIN_MS;
		if (s->n == 0)
			seal_hold(a, false);
		else
			seal_later(a, SEAL_DELAY_MS);
		return;
	}
	s->sending = 0;
	s->failures++;
	if (seal_given_up(a)) {
		log_kv(LOG_ERROR,
		       "gave up linking audit rows into the chain; another broker's janitor links "
		       "them",
		       "error", error, NULL);
		s->n = 0;
		seal_hold(a, false);
		return;
	}
	log_kv(s->failures == 1 ? LOG_WARN : LOG_DEBUG,
	       "could not link audit rows into the chain; retrying", "error", error, NULL);
	if (s->retry == NULL)
		s->retry = evtimer_new(a->base, on_retry, a);
	tv.tv_sec = s->delay_ms / 1000;
	tv.tv_usec = (s->delay_ms % 1000) * 1000;
	s->delay_ms = s->delay_ms * 2 > SEAL_RETRY_MAX_MS ? SEAL_RETRY_MAX_MS : s->delay_ms * 2;
	if (s->retry == NULL || evtimer_add(s->retry, &tv) != 0) {
		s->n = 0; /* out of memory: the janitors link them */
		seal_hold(a, false);
	}
}

static void seal_send(struct api *a)
{
	struct seal_queue *s = &a->seal;
	char stale[16], *list, *p;
	const char *params[AUDIT_SEAL_NPARAMS];

	if (s->q != NULL || (s->retry != NULL && evtimer_pending(s->retry, NULL)))
		return;
	if (s->n == 0) {
		seal_hold(a, false);
		return;
	}
	s->sending = s->n < SEAL_BATCH ? s->n : SEAL_BATCH;
	list = malloc(s->sending * (AUDIT_EXEC_ID_LEN + 1) + 3);
	if (list == NULL) {
		s->sending = 0;
		return; /* tried again with the next row */
	}
	p = list;
	*p++ = '{';
	for (size_t i = 0; i < s->sending; i++) {
		if (i > 0)
			*p++ = ',';
		memcpy(p, s->ids[i], AUDIT_EXEC_ID_LEN);
		p += AUDIT_EXEC_ID_LEN;
	}
	*p++ = '}';
	*p = '\0';
	snprintf(stale, sizeof(stale), "%d", SEAL_STALE_S);
	params[0] = list;
	params[1] = stale;
	s->q = pgasync_query_static(a->db, audit_seal_sql, AUDIT_SEAL_NPARAMS, params,
	                            SEAL_DEADLINE_MS, on_sealed, a);
	free(list);
	if (s->q == NULL)
		s->sending = 0;
}

void seal_add(struct api *a, const char *exec_id)
{
	struct seal_queue *s = &a->seal;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		void *ids = realloc(s->ids, cap * sizeof(*s->ids));
		if (ids == NULL)
			return; /* the janitors link it */
		s->ids = ids;
		s->cap = cap;
	}
	if (s->delay_ms == 0)
		s->delay_ms = SEAL_RETRY_MIN_MS;
	snprintf(s->ids[s->n++], sizeof(*s->ids), "%s", exec_id);
	seal_hold(a, true);
	seal_later(a, SEAL_DELAY_MS);
}

void seal_free(struct api *a)
{
	struct seal_queue *s = &a->seal;

	if (s->q != NULL)
		pgasync_cancel(s->q);
	if (s->retry != NULL)
		event_free(s->retry);
	free(s->ids);
	memset(s, 0, sizeof(*s));
}
