/* pool/session.h: one SSH session to a target, as a state machine (resolve, connect,
 * handshake, host-key pin, auth, watcher, ready; broken or closed), its keepalive and idle
 * TTL, and the socket driver that steps the channels it carries. */
#ifndef EB_POOL_SESSION_H
#define EB_POOL_SESSION_H

#include <stdbool.h>

#include "pool/pool_int.h"

/* What a session tells the layers above it, which it never calls by name (as libevent
 * calls a bufferevent's owner back). Each hook runs from inside the session's own work, on
 * the loop. */
struct session_hooks {
	/* Steps exec e of the session as far as it goes without waiting; false when the
	 * session broke meanwhile (the driver stops using it). */
	bool (*step)(struct pool_exec *e);
	/* The transport failed under e, which is still attached: its channel is gone with
	 * the session; why is a line for logs. */
	void (*lost)(struct pool_exec *e, const char *why);
	/* The session became ready, or broke: its target's waiters may be served now, or need
	 * another session. */
	void (*changed)(struct session *s);
	/* Connecting failed (why, detail), just before the session breaks. */
	void (*connect_failed)(struct session *s, enum pool_fail_reason why, const char *detail);
	/* The last reference went: s is to be freed after the loop turn (session_free). */
	void (*dead)(struct session *s);
	/* s authenticated: start its watcher (s->watch). Non-zero if it cannot be. */
	int (*authenticated)(struct session *s);
};

/* Opens a new session to t; it joins t->sessions at once so that concurrent acquires
 * count on it instead of opening their own. Failures are reported through the hooks,
 * possibly before this returns. */
void session_open(struct target *t, const struct session_hooks *hooks);
void session_ref(struct session *s);
/* Drops a reference; at the last one the dead hook takes s. */
void session_unref(struct session *s);
/* Only after the dead hook, or when the whole pool goes. */
void session_free(struct session *s);
/* Closes an idle session on purpose (TTL, eviction, shutdown). */
void session_close(struct session *s, const char *why);
/* The transport failed: every exec on it is handed to the lost hook. */
void session_break(struct session *s, const char *why);
/* Whether a ready session's connection still stands as far as the kernel knows: not
 * closed or reset by the server. An idle session is not watched, so this is asked before
 * one is leased. A server that vanished without a word (a silent network) still looks
 * alive here. */
bool session_alive(const struct session *s);
/* Whether its channels may be stepped: ready, or starting its watcher. */
static inline bool session_usable(const struct session *s)
{
	return s->state == SESS_READY || s->state == SESS_WATCHING;
}
/* The watcher printed where it listens (s->fifo): the session becomes ready. */
void session_watcher_ready(struct session *s);
/* On a one-channel host, s (authenticated) uses lender's watcher instead of its own, and is
 * ready at once. */
void session_borrow_watcher(struct session *s, struct session *lender);
/* The watcher's channel ended (why, for logs): a session starting it fails to connect
 * (POOL_FAIL_CHANNEL); a ready one takes no new lease and closes once idle, since nothing
 * would end its commands at their deadlines if the broker went. */
void session_watcher_gone(struct session *s, const char *why);
/* Arms the idle TTL and keepalive if s is ready and carries nothing. */
void session_check_idle(struct session *s);
/* Runs the driver on the next loop turn, never from inside a caller's call. */
void session_schedule(struct session *s);

#endif
