/* common/fsm.h: checked state transitions, the one way every state machine of exec-broker
 * changes state. A machine is described once (its name, its states' names, and for each
 * state the set of states it may go to); fsm_step() refuses an illegal transition by
 * aborting (a broken invariant, never bad input) and logs every legal one at debug level. */
#ifndef EB_COMMON_FSM_H
#define EB_COMMON_FSM_H

/* The bit of state s in a legal[] mask. */
#define FSM_BIT(s) (1u << (unsigned)(s))

struct fsm {
	const char *name;               /* "session", "exec job", ... (for logs) */
	const char *const *state_names; /* indexed by state */
	const unsigned *legal;          /* legal[from]: FSM_BITs of the states from may go to */
	unsigned nstates;               /* at most 32 */
};

/* Checks that from -> to is a transition m allows, logs it at debug level with id (which
 * names the object: a request id, a host; may be NULL), and returns to. Aborts with one
 * line on stderr naming the machine and both states if it is not allowed. */
int fsm_step(const struct fsm *m, int from, int to, const char *id);

/* The name of state s of m ("?" when out of range). */
const char *fsm_state_name(const struct fsm *m, int s);

/* Sets var (an enum lvalue) to to through fsm_step. */
#define FSM_SET(m, var, to, id) ((var) = fsm_step((m), (int)(var), (int)(to), (id)))

#endif
