/* pool/channel.h: one exec on a session, as a state machine over its libssh2 channel
 * (opening, starting, running with stdin, output and the pgid line, closing, freeing), its
 * cancel through the session's watcher, pause and resume, its deadline and its outcome; and
 * the watcher itself, a control exec run by the same machine. */
#ifndef EB_POOL_CHANNEL_H
#define EB_POOL_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "pool/pool_int.h"

/* What an exec asks of the pool above it, which it never calls by name. */
struct channel_hooks {
	/* e lost its session before its command could have been sent: ask for a slot again,
	 * ahead of every waiter if at_front. 0 with e->reacquire set, or EB_ERR_NOMEM. */
	int (*requeue)(struct pool_exec *e, bool at_front);
	/* e ended while waiting for that slot: the request a is withdrawn. */
	void (*requeue_cancel)(struct pool_acquire *a);
	/* e gave its slot on s back and s is still ready: the target's waiters may take it. */
	void (*slot_freed)(struct session *s);
	/* The last reference went: e is to be freed after the loop turn (channel_free). */
	void (*dead)(struct pool_exec *e);
};

/* An exec to t with no session yet (EXEC_WAITING) and no holder: the caller sets refs. */
struct pool_exec *channel_new(struct pool *p, struct target *t, const struct channel_hooks *hooks);
/* Only for one that never ran, after the dead hook, or when the whole pool goes. */
void channel_free(struct pool_exec *e);
/* Puts e on s to open its channel; it holds a reference to s, and a slot if holds_slot. */
void channel_attach(struct pool_exec *e, struct session *s, bool holds_slot);
/* Puts w, made by channel_new with its cmd set to the watcher script, on s as its watcher
 * (s->watch): a control exec, beating every COMMAND_WATCH_BEAT_S once it runs. */
void channel_attach_watcher(struct pool_exec *w, struct session *s);
/* Writes a line (printf-style, short) to s's watcher. EB_ERR_INVAL when s has no watcher
 * listening, EB_ERR_NOMEM. */
int channel_watcher_say(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sets the outcome finished will report; a cancel's kind wins over kind unless e never
 * started. detail may be NULL. */
void channel_set_outcome(struct pool_exec *e, enum pool_outcome_kind kind,
                         enum pool_fail_reason why, const char *detail);
/* Reports the outcome (once) and ends the state machine's hold on e. */
void channel_finish(struct pool_exec *e);
/* Steps e as far as it goes without waiting. Returns false when the session broke (the
 * caller must stop using it). */
bool channel_step(struct pool_exec *e);
/* The transport failed under e (e->s is breaking). */
void channel_lost(struct pool_exec *e, const char *why);
/* Kills the command (outcome kind) unless it already ended or was cancelled. */
void channel_cancel(struct pool_exec *e, enum pool_outcome_kind kind);
void channel_pause(struct pool_exec *e);
void channel_resume(struct pool_exec *e);
/* The consumer let go: no callback runs after this; a running command is cancelled. */
void channel_release(struct pool_exec *e);
/* Output held by libssh2 for e, not yet read. */
size_t channel_buffered(const struct pool_exec *e);

#endif
