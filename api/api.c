/* api/api.c: the handlers' shared state: holding the broker open while work is under
 * way. */
#include "api/api.h"

#include <event2/event.h>
#include <stdlib.h>

void api_free(struct api *a)
{
	if (a->reap != NULL)
		event_free(a->reap);
	a->reap = NULL;
	free(a->leases);
	a->leases = NULL;
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
