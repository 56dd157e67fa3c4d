/* api/orgs.c: per-org admission counts, a short list of the orgs with execs running. */
#include "api/orgs.h"

#include <stdlib.h>
#include <string.h>

struct org_slot {
	struct org_slot *next;
	unsigned running;
	char org[];
};

static struct org_slot *find(const struct org_slots *s, const char *org)
{
	struct org_slot *o;

	for (o = s->head; o != NULL; o = o->next)
		if (strcmp(o->org, org) == 0)
			return o;
	return NULL;
}

bool orgs_enter(struct org_slots *s, const char *org, int max)
{
	struct org_slot *o = find(s, org);

	if (o == NULL) {
		o = calloc(1, sizeof(*o) + strlen(org) + 1);
		if (o == NULL)
			return false;
		strcpy(o->org, org);
		o->next = s->head;
		s->head = o;
	}
	if (o->running >= (unsigned)max)
		return false;
	o->running++;
	return true;
}

void orgs_leave(struct org_slots *s, const char *org)
{
	struct org_slot **pp, *o;

	for (pp = &s->head; (o = *pp) != NULL; pp = &o->next) {
		if (strcmp(o->org, org) != 0)
			continue;
		if (o->running == 0)
			abort(); /* more leaves than enters */
		if (--o->running == 0) {
			*pp = o->next;
			free(o);
		}
		return;
	}
	abort();
}

unsigned orgs_running(const struct org_slots *s, const char *org)
{
	const struct org_slot *o = find(s, org);

	return o != NULL ? o->running : 0;
}
