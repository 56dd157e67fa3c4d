/* api/api.c: the handlers' shared state: holding the broker open while work is under
 * way. */
#include "api/api.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void api_free(struct api *a)
{
	if (a->reap != NULL)
		event_free(a->reap);
	a->reap = NULL;
	free(a->leases);
	a->leases = NULL;
	free(a->doubts);
	a->doubts = NULL;
}

void api_exec_doubt(struct api *a, const char *exec_id)
{
	if (a->doubts == NULL)
		a->doubts = calloc(API_DOUBTS, sizeof(*a->doubts));
	if (a->doubts == NULL)
		return;
	snprintf(a->doubts[a->doubts_next], sizeof(*a->doubts), "%s", exec_id);
	a->doubts_next = (a->doubts_next + 1) % API_DOUBTS;
}

bool api_exec_doubtful(const struct api *a, const char *exec_id)
{
	if (a->doubts == NULL)
		return false;
	for (unsigned i = 0; i < API_DOUBTS; i++)
		if (strcmp(a->doubts[i], exec_id) == 0)
			return true;
	return false;
}

bool api_completions_given_up(const struct api *a)
{
	struct timespec now;

	if (a->completions_until_ms == 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 >= a->completions_until_ms;
}

void api_hold(struct api *a)
{
	a->busy++;
}

void api_release(struct api *a)
{
	if (a->busy == 0)
		abort(); /* more releases than holds */
	if (--a->busy == 0 && a->on_idle != NULL)
		a->on_idle(a->idle_arg);
}

const char *api_fail_code(enum pool_fail_reason r)
{
	switch (r) {
	case POOL_FAIL_HOST_KEY:
		return "host_key_mismatch";
	case POOL_FAIL_AUTH:
		return "ssh_auth_failed";
	case POOL_FAIL_EXHAUSTED:
		return "pool_exhausted";
	case POOL_FAIL_SHUTDOWN:
		return "shutting_down";
	case POOL_FAIL_CHANNEL:
		return "transport_error";
	case POOL_FAIL_CONNECT:
	case POOL_FAIL_INVALID:
	case POOL_FAIL_NONE:
	default:
		return "ssh_connect_failed";
	}
}
