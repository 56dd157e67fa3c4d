/* api/orgs.h: per-org admission: how many execs each org has running on this broker,
 * against org_max_concurrent_execs. */
#ifndef EB_API_ORGS_H
#define EB_API_ORGS_H

#include <stdbool.h>

struct org_slot;

struct org_slots {
	struct org_slot *head; /* orgs with at least one exec running */
};

/* true and one more running exec counted for org, or false when org already has max
 * (or memory ran out). */
bool orgs_enter(struct org_slots *s, const char *org, int max);
/* One exec of org ended; aborts when org has none counted (a broken invariant). */
void orgs_leave(struct org_slots *s, const char *org);
/* Execs org has running. */
unsigned orgs_running(const struct org_slots *s, const char *org);

#endif
