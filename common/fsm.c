/* common/fsm.c: checked state transitions. */
#include "common/fsm.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"

const char *fsm_state_name(const struct fsm *m, int s)
{
	if (s < 0 || (unsigned)s >= m->nstates)
		return "?";
	return m->state_names[s];
}

int fsm_step(const struct fsm *m, int from, int to, const char *id)
{
	if (from < 0 || to < 0 || (unsigned)from >= m->nstates || (unsigned)to >= m->nstates ||
	    (m->legal[from] & FSM_BIT(to)) == 0) {
		fprintf(stderr, "exec-broker: illegal %s transition %s -> %s%s%s\n", m->name,
		        fsm_state_name(m, from), fsm_state_name(m, to), id != NULL ? " of " : "",
		        id != NULL ? id : "");
		abort();
	}
	if (log_enabled(LOG_DEBUG))
		log_kv(LOG_DEBUG, "state", "machine", m->name, "id", id, "from",
		       m->state_names[from], "to", m->state_names[to], NULL);
	return to;
}
