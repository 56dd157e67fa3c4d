/* pool/pool.c: the SSH session pool: targets, leases, execs and their channels, on the
 * sessions of session.c, driven by libevent. libssh2 1.10 rules this file is built around
 * (see the research notes in docs/pool.md):
 *  - one channel open and one exec request may be in flight per session (s->starter);
 *  - a session has one partly-sent packet at most: the call that returned EAGAIN with
 *    BLOCK_OUTBOUND owns the session (s->owner) and is retried, with the same arguments,
 *    before any other libssh2 call on it;
 *  - the window of a channel only grows when that channel is read, so a paused exec holds
 *    at most its window (channel_buffer_bytes) in libssh2, and reads always use READ_LEN;
 *  - stdout and stderr share the window: both are read on every pass.
 * Nothing is freed inside its own callback: objects whose last reference goes are put on
 * the reclaim list and freed from the pool's kick event, after the loop turn. */
#include "pool/pool.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <libssh2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "common/err.h"
#include "common/fsm.h"
#include "pool/fingerprint.h"
#include "pool/pool_int.h"
#include "pool/session.h"

#define WRITE_LEN    32768
#define PACKET_LEN   32768
#define KILL_SLACK_S 10

static void exec_attach(struct pool_exec *e, struct session *s, bool holds_slot);
static void exec_finish(struct pool_exec *e);
static void pool_kick(struct pool *p);
static void target_dispatch(struct target *t);
static bool exec_step(struct pool_exec *e);
static void exec_lost(struct pool_exec *e, const char *why);

const char *pool_outcome_name(enum pool_outcome_kind k)
{
	switch (k) {
	case POOL_EXITED:
		return "exited";
	case POOL_SIGNALED:
		return "signaled";
	case POOL_TIMEOUT:
		return "timeout";
	case POOL_CANCELLED:
		return "cancelled";
	case POOL_TRANSPORT_ERROR:
		return "transport_error";
	case POOL_FAILED_TO_START:
		return "failed_to_start";
	case POOL_SHUTDOWN:
		return "shutdown";
	default:
		abort();
	}
}

const char *pool_fail_reason_name(enum pool_fail_reason r)
{
	switch (r) {
	case POOL_FAIL_NONE:
		return "none";
	case POOL_FAIL_CONNECT:
		return "connect_failed";
	case POOL_FAIL_HOST_KEY:
		return "host_key_mismatch";
	case POOL_FAIL_AUTH:
		return "auth_failed";
	case POOL_FAIL_EXHAUSTED:
		return "pool_exhausted";
	case POOL_FAIL_CHANNEL:
		return "channel_refused";
	case POOL_FAIL_SHUTDOWN:
		return "shutting_down";
	case POOL_FAIL_INVALID:
		return "invalid_command";
	default:
		abort();
	}
}

void pool_deadline_after_ms(long ms, struct timeval *out)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	out->tv_sec = ts.tv_sec + ms / 1000;
	out->tv_usec = ts.tv_nsec / 1000 + (ms % 1000) * 1000;
	if (out->tv_usec >= 1000000) {
		out->tv_sec++;
		out->tv_usec -= 1000000;
	}
}

/* Arms ev to fire at the absolute monotonic deadline. */
static void timer_at(struct event *ev, const struct timeval *deadline)
{
	struct timeval now, rel;

	pool_deadline_after_ms(0, &now);
	if (timercmp(deadline, &now, >))
		timersub(deadline, &now, &rel);
	else
		rel = (struct timeval){0, 0};
	evtimer_add(ev, &rel);
}

static void timer_in(struct event *ev, int seconds)
{
	struct timeval rel = {seconds, 0};

	evtimer_add(ev, &rel);
}

static const char *const exec_state_names[] = {
    "waiting", "opening", "starting", "running", "closing", "freeing", "done",
};

static const unsigned exec_legal[] = {
    [EXEC_WAITING] = FSM_BIT(EXEC_OPENING) | FSM_BIT(EXEC_DONE),
    [EXEC_OPENING] =
        FSM_BIT(EXEC_STARTING) | FSM_BIT(EXEC_WAITING) | FSM_BIT(EXEC_DONE) | FSM_BIT(EXEC_CLOSING),
    [EXEC_STARTING] =
        FSM_BIT(EXEC_RUNNING) | FSM_BIT(EXEC_CLOSING) | FSM_BIT(EXEC_WAITING) | FSM_BIT(EXEC_DONE),
    [EXEC_RUNNING] = FSM_BIT(EXEC_CLOSING) | FSM_BIT(EXEC_DONE),
    [EXEC_CLOSING] = FSM_BIT(EXEC_FREEING) | FSM_BIT(EXEC_DONE),
    [EXEC_FREEING] = FSM_BIT(EXEC_DONE),
    [EXEC_DONE] = 0,
};

static const struct fsm exec_fsm = {"pool exec", exec_state_names, exec_legal, EXEC_DONE + 1};

static void kick_cb(evutil_socket_t fd, short what, void *arg);

/* The key file's contents, NUL-terminated, in *key (malloc'd). 0 or EB_ERR_IO with err. */
static int read_key(const char *path, char **key, size_t *len, char *err, size_t errlen)
{
	FILE *f = path ? fopen(path, "r") : NULL;
	long n;

	*key = NULL;
	if (f == NULL) {
		snprintf(err, errlen, "cannot read the SSH key %s: %s",
		         path ? path : "(ssh_key is not set)",
		         path ? strerror(errno) : "set ssh_key");
		return EB_ERR_IO;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 || n > 65536 ||
	    fseek(f, 0, SEEK_SET) != 0 || (*key = calloc(1, (size_t)n + 1)) == NULL ||
	    fread(*key, 1, (size_t)n, f) != (size_t)n) {
		snprintf(err, errlen, "cannot read the SSH key %s", path);
		fclose(f);
		free(*key);
		*key = NULL;
		return EB_ERR_IO;
	}
	fclose(f);
	*len = (size_t)n;
	return 0;
}

int pool_new(struct event_base *base, const struct pool_config *cfg, struct pool **out, char *err,
             size_t errlen)
{
	struct pool *p;
	int rc;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return EB_ERR_NOMEM;
	p->base = base;
	p->cfg = *cfg;
	p->cfg.ssh_key_path = NULL;
	TAILQ_INIT(&p->targets);
	TAILQ_INIT(&p->dead_sessions);
	TAILQ_INIT(&p->dead_execs);
	TAILQ_INIT(&p->dead_acquires);
	TAILQ_INIT(&p->reports);
	rc = read_key(cfg->ssh_key_path, &p->key, &p->key_len, err, errlen);
	if (rc != 0) {
		free(p);
		return rc;
	}
	p->kick = event_new(base, -1, 0, kick_cb, p);
	if (p->kick == NULL || libssh2_init(0) != 0) {
		snprintf(err, errlen, "cannot initialise the SSH pool");
		pool_free(p);
		return EB_ERR_NOMEM;
	}
	*out = p;
	return 0;
}

int pool_reconfigure(struct pool *p, const struct pool_config *cfg, char *err, size_t errlen)
{
	struct old_key *old;
	struct target *t;
	struct session *s;
	char *key = NULL;
	size_t len = 0;
	int rc;

	rc = read_key(cfg->ssh_key_path, &key, &len, err, errlen);
	if (rc != 0)
		return rc;
	p->cfg = *cfg;
	p->cfg.ssh_key_path = NULL;
	if (len == p->key_len && memcmp(key, p->key, len) == 0) {
		explicit_bzero(key, len);
		free(key);
		return 0;
	}
	old = calloc(1, sizeof(*old));
	if (old == NULL) {
		explicit_bzero(key, len);
		free(key);
		return EB_ERR_NOMEM;
	}
	old->key = p->key;
	old->len = p->key_len;
	old->next = p->old_keys;
	p->old_keys = old;
	p->key = key;
	p->key_len = len;
	TAILQ_FOREACH(t, &p->targets, link)
	{
		TAILQ_FOREACH(s, &t->sessions, link)
		{
			s->retiring = true;
			session_check_idle(s);
		}
	}
	pool_kick(p); /* waiters get sessions made with the new key */
	return 1;
}

static void pool_kick(struct pool *p)
{
	event_active(p->kick, EV_TIMEOUT, 0);
}

static struct target *target_get(struct pool *p, const struct pool_target *pt)
{
	struct target *t;

	TAILQ_FOREACH(t, &p->targets, link)
	{
		if (t->port == pt->port && strcmp(t->host, pt->host) == 0 &&
		    strcmp(t->user, pt->user) == 0 && strcmp(t->fp_text, pt->host_key_fp) == 0)
			return t;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->p = p;
	t->port = pt->port;
	t->host = strdup(pt->host);
	t->user = strdup(pt->user);
	t->fp_text = strdup(pt->host_key_fp);
	TAILQ_INIT(&t->sessions);
	TAILQ_INIT(&t->waiters);
	if (t->host == NULL || t->user == NULL || t->fp_text == NULL) {
		free(t->host);
		free(t->user);
		free(t->fp_text);
		free(t);
		return NULL;
	}
	/* A malformed pin matches no key: every connect then fails host_key_mismatch. */
	if (fp_parse(pt->host_key_fp, t->fp) != 0)
		memset(t->fp, 0, sizeof(t->fp));
	TAILQ_INSERT_TAIL(&p->targets, t, link);
	return t;
}

static void acquire_free(struct pool_acquire *a)
{
	if (a->timer != NULL)
		event_free(a->timer);
	free(a);
}

/* Takes a off the queue and hands it to the reclaim list (it may be inside its cb). */
static void acquire_retire(struct pool_acquire *a)
{
	if (a->queued) {
		TAILQ_REMOVE(&a->t->waiters, a, link);
		a->queued = false;
		a->p->stats.acquires_waiting--;
	}
	evtimer_del(a->timer);
	TAILQ_INSERT_TAIL(&a->p->dead_acquires, a, link);
	pool_kick(a->p);
}

static void exec_got_lease(struct pool_exec *e, struct pool_lease *l, enum pool_fail_reason why,
                           const char *detail);

static void acquire_complete(struct pool_acquire *a, struct pool_lease *l,
                             enum pool_fail_reason why, const char *detail)
{
	acquire_retire(a);
	if (a->exec != NULL) {
		a->exec->reacquire = NULL;
		exec_got_lease(a->exec, l, why, detail);
	} else {
		a->cb(l, why, detail, a->arg);
	}
}

static void acquire_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_acquire *a = arg;

	(void)fd;
	(void)what;
	acquire_complete(a, NULL, POOL_FAIL_EXHAUSTED,
	                 "no SSH session slot became free before the deadline");
}

static struct pool_acquire *acquire_new(struct pool *p, struct target *t,
                                        const struct timeval *deadline, bool at_front)
{
	struct pool_acquire *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->p = p;
	a->t = t;
	a->deadline = *deadline;
	a->timer = evtimer_new(p->base, acquire_timeout_cb, a);
	if (a->timer == NULL) {
		free(a);
		return NULL;
	}
	timer_at(a->timer, deadline);
	if (at_front)
		TAILQ_INSERT_HEAD(&t->waiters, a, link);
	else
		TAILQ_INSERT_TAIL(&t->waiters, a, link);
	a->queued = true;
	p->stats.acquires_waiting++;
	pool_kick(p);
	return a;
}

struct pool_acquire *pool_lease_acquire(struct pool *p, const struct pool_target *pt,
                                        const struct timeval *deadline, pool_acquire_cb cb,
                                        void *arg)
{
	struct target *t;
	struct pool_acquire *a;

	t = target_get(p, pt);
	if (t == NULL)
		return NULL;
	a = acquire_new(p, t, deadline, false);
	if (a == NULL)
		return NULL;
	a->cb = cb;
	a->arg = arg;
	return a;
}

void pool_acquire_cancel(struct pool_acquire *a)
{
	if (a != NULL && a->queued)
		acquire_retire(a);
}

static void exec_outcome(struct pool_exec *e, enum pool_outcome_kind kind,
                         enum pool_fail_reason why, const char *detail)
{
	e->out.kind =
	    e->cancel_kind != POOL_EXITED && kind != POOL_FAILED_TO_START ? e->cancel_kind : kind;
	e->out.fail_reason = why;
	if (detail != NULL)
		snprintf(e->out.detail, sizeof(e->out.detail), "%s", detail);
}

static void exec_detach(struct pool_exec *e);
static void exec_reacquire(struct pool_exec *e, bool at_front);

/* The session's hooks: what the pool and the execs on it do when it changes. */
static void pool_serve_waiters(struct session *s)
{
	target_dispatch(s->t);
}

static void pool_fail_waiters(struct session *s, enum pool_fail_reason why, const char *detail)
{
	struct target *t = s->t;
	struct session *other;
	bool alive = false;

	/* Waiters wait on while another session may still serve them; otherwise they learn
	 * why now, before the break that follows could open a new session for them. */
	TAILQ_FOREACH(other, &t->sessions, link)
	alive |= other != s;
	if (!alive)
		while (!TAILQ_EMPTY(&t->waiters))
			acquire_complete(TAILQ_FIRST(&t->waiters), NULL, why, detail);
}

static void pool_reclaim_session(struct session *s)
{
	TAILQ_INSERT_TAIL(&s->p->dead_sessions, s, link);
	pool_kick(s->p);
}

static const struct session_hooks pool_session_hooks = {
    .step = exec_step,
    .lost = exec_lost,
    .changed = pool_serve_waiters,
    .connect_failed = pool_fail_waiters,
    .dead = pool_reclaim_session,
};

static struct session *target_free_session(struct target *t, unsigned *connecting_slots)
{
	struct session *s, *best = NULL;

	*connecting_slots = 0;
	TAILQ_FOREACH(s, &t->sessions, link)
	{
		if (s->retiring)
			continue;
		if (s->state == SESS_READY) {
			if (s->slots < s->max_slots && (best == NULL || s->slots > best->slots))
				best = s; /* fill busy sessions first: idle ones can expire */
		} else if (s->state != SESS_BROKEN && s->state != SESS_CLOSED) {
			*connecting_slots += (unsigned)s->max_slots;
		}
	}
	return best;
}

static unsigned target_nsessions(const struct target *t)
{
	const struct session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &t->sessions, link)
	n += !s->retiring; /* draining sessions make way for their replacements */
	return n;
}

/* Makes room under pool_max_sessions_total by closing the least recently used idle
 * session of any target. false if every session is busy. */
static bool pool_evict_one(struct pool *p)
{
	struct target *t;
	struct session *s, *lru = NULL;

	TAILQ_FOREACH(t, &p->targets, link)
	TAILQ_FOREACH(s, &t->sessions, link)
	{
		if (s->state == SESS_READY && s->slots == 0 && TAILQ_EMPTY(&s->execs) &&
		    (lru == NULL || timercmp(&s->idle_since, &lru->idle_since, <)))
			lru = s;
	}
	if (lru == NULL)
		return false;
	session_close(lru, "evicted");
	return true;
}

static void target_dispatch(struct target *t)
{
	struct pool *p = t->p;
	unsigned waiting = 0, connecting_slots;
	struct pool_acquire *a;

	while (!TAILQ_EMPTY(&t->waiters)) {
		struct session *s = target_free_session(t, &connecting_slots);
		struct pool_lease *l;

		if (s == NULL)
			break;
		a = TAILQ_FIRST(&t->waiters);
		l = calloc(1, sizeof(*l));
		if (l == NULL)
			return;
		l->s = s;
		s->slots++;
		session_ref(s);
		evtimer_del(s->timer);
		acquire_complete(a, l, POOL_FAIL_NONE, NULL);
	}
	if (p->shutting_down)
		return;
	TAILQ_FOREACH(a, &t->waiters, link)
	waiting++;
	target_free_session(t, &connecting_slots);
	/* Sessions being set up will take as many waiters as they have slots: open more only
	 * for the rest, and only up to the per-host cap. */
	while (waiting > connecting_slots &&
	       target_nsessions(t) < (unsigned)p->cfg.max_sessions_per_host) {
		if (p->nsessions >= (unsigned)p->cfg.max_sessions_total && !pool_evict_one(p))
			break;
		session_open(t, &pool_session_hooks);
		connecting_slots +=
		    (unsigned)(t->learned_max ? t->learned_max : p->cfg.max_channels_per_session);
	}
}

void pool_lease_release(struct pool_lease *l)
{
	struct session *s;

	if (l == NULL)
		return;
	s = l->s;
	free(l);
	s->slots--;
	session_check_idle(s);
	target_dispatch(s->t);
	session_unref(s);
}

static void exec_unref(struct pool_exec *e)
{
	if (--e->refs > 0)
		return;
	if (e->refs < 0 || e->s != NULL)
		abort();
	TAILQ_INSERT_TAIL(&e->p->dead_execs, e, link);
	pool_kick(e->p);
}

static void exec_free(struct pool_exec *e)
{
	if (e->deadline_ev != NULL)
		event_free(e->deadline_ev);
	if (e->in != NULL)
		explicit_bzero(e->in, e->in_len);
	free(e->in);
	free(e->cmd);
	free(e);
}

static void exec_attach(struct pool_exec *e, struct session *s, bool holds_slot)
{
	e->s = s;
	e->holds_slot = holds_slot;
	session_ref(s);
	TAILQ_INSERT_TAIL(&s->execs, e, link);
	FSM_SET(&exec_fsm, e->state, EXEC_OPENING, e->t->host);
	session_schedule(s);
}

/* Takes e off its session: its slot and reference go. The channel must be gone. */
static void exec_detach(struct pool_exec *e)
{
	struct session *s = e->s;

	if (s == NULL)
		return;
	TAILQ_REMOVE(&s->execs, e, link);
	if (s->owner == e)
		s->owner = NULL;
	if (s->starter == e)
		s->starter = NULL;
	if (e->holds_slot)
		s->slots--;
	e->holds_slot = false;
	e->s = NULL;
	e->ch = NULL;
	if (s->state == SESS_READY) {
		session_check_idle(s);
		target_dispatch(s->t);
		session_schedule(s);
	}
	session_unref(s);
}

/* Reports the outcome (once) and ends the state machine's hold on e. */
static void exec_finish(struct pool_exec *e)
{
	if (e->state != EXEC_DONE)
		FSM_SET(&exec_fsm, e->state, EXEC_DONE, e->t->host);
	if (e->reacquire != NULL) {
		pool_acquire_cancel(e->reacquire);
		e->reacquire = NULL;
	}
	evtimer_del(e->deadline_ev);
	if (!e->reported) {
		e->reported = true;
		if (!e->control)
			e->p->stats.execs_by_outcome[e->out.kind]++;
		if (!e->released && e->cb.finished != NULL)
			e->cb.finished(e, &e->out, e->arg);
	}
	exec_unref(e);
}

static void exec_reacquire(struct pool_exec *e, bool at_front)
{
	FSM_SET(&exec_fsm, e->state, EXEC_WAITING, e->t->host);
	e->reacquire = acquire_new(e->p, e->t, &e->deadline, at_front);
	if (e->reacquire == NULL) {
		exec_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_CONNECT, "out of memory");
		exec_finish(e);
		return;
	}
	e->reacquire->exec = e;
}

/* The transport failed: an exec on it ends transport_error, unless its command cannot have
 * been sent yet: then it retries once on a new session. */
static void exec_lost(struct pool_exec *e, const char *why)
{
	e->ch = NULL; /* freed with the session */
	if (!e->sent && !e->retried && !e->control && e->cancel_kind == POOL_EXITED &&
	    !e->p->shutting_down) {
		e->retried = true;
		e->p->stats.stale_retries++;
		exec_detach(e);
		exec_reacquire(e, true);
		return;
	}
	exec_outcome(e, POOL_TRANSPORT_ERROR, POOL_FAIL_NONE, why);
	exec_detach(e);
	exec_finish(e);
}

static void exec_got_lease(struct pool_exec *e, struct pool_lease *l, enum pool_fail_reason why,
                           const char *detail)
{
	if (l == NULL) {
		exec_outcome(e, POOL_FAILED_TO_START, why, detail);
		exec_finish(e);
		return;
	}
	if (e->cancel_kind != POOL_EXITED) {
		pool_lease_release(l);
		exec_outcome(e, e->cancel_kind, POOL_FAIL_NONE, "cancelled before it started");
		exec_finish(e);
		return;
	}
	struct session *s = l->s;
	free(l);
	exec_attach(e, s, true);
	session_unref(s); /* the lease's reference; the exec holds its own */
}

static void exec_deadline_cb(evutil_socket_t fd, short what, void *arg);

static struct pool_exec *exec_new(struct pool *p, struct target *t)
{
	struct pool_exec *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->p = p;
	e->t = t;
	e->state = EXEC_WAITING;
	e->cancel_kind = POOL_EXITED;
	e->deadline_ev = evtimer_new(p->base, exec_deadline_cb, e);
	if (e->deadline_ev == NULL) {
		free(e);
		return NULL;
	}
	return e;
}

struct pool_exec *pool_exec_start(struct pool_lease *l, const struct command_spec *spec,
                                  const char *stdin_data, size_t stdin_len,
                                  const struct timeval *deadline,
                                  const struct pool_exec_callbacks *cb, void *arg)
{
	struct session *s = l->s;
	struct pool *p = s->p;
	struct command_spec sp = *spec;
	struct pool_exec *e;
	char err[160];
	long remaining;
	struct timeval now;

	e = exec_new(p, s->t);
	if (e == NULL) {
		pool_lease_release(l);
		return NULL;
	}
	e->cb = *cb;
	e->arg = arg;
	e->refs = 2; /* the consumer and the state machine */
	e->deadline = *deadline;
	timer_at(e->deadline_ev, deadline);
	/* The remote timeout(1) outlives the broker's own deadline by the kill grace, so the
	 * broker's kill comes first and timeout(1) only acts if the broker is gone. */
	pool_deadline_after_ms(0, &now);
	remaining = deadline->tv_sec - now.tv_sec + 1;
	sp.timeout_s = (int)(remaining > 1 ? remaining : 1) + p->cfg.kill_grace_s;
	sp.kill_after_s = p->cfg.kill_grace_s;
	if (command_build(&sp, &e->cmd, err, sizeof(err)) != 0) {
		/* Reported from the loop, never inside this call. */
		pool_lease_release(l);
		exec_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_INVALID, err);
		e->in_reports = true;
		TAILQ_INSERT_TAIL(&p->reports, e, link);
		pool_kick(p);
		return e;
	}
	e->cmd_len = strlen(e->cmd);
	if (stdin_len > 0) {
		e->in = malloc(stdin_len);
		if (e->in == NULL) {
			pool_lease_release(l);
			exec_free(e);
			return NULL;
		}
		memcpy(e->in, stdin_data, stdin_len);
		e->in_len = stdin_len;
	}
	free(l);
	exec_attach(e, s, true);
	session_unref(s); /* the lease's reference */
	return e;
}

/* Sends the kill of e's process group on a control channel of the same session. */
static void exec_send_kill(struct pool_exec *e)
{
	struct pool_exec *k;

	if (e->kill_sent || !e->pgid_done || e->pgid <= 1 || e->s == NULL ||
	    e->s->state != SESS_READY)
		return;
	e->kill_sent = true;
	k = exec_new(e->p, e->t);
	if (k == NULL || command_kill_group(e->pgid, e->p->cfg.kill_grace_s, &k->cmd) != 0) {
		if (k != NULL)
			exec_free(k);
		return; /* timeout(1) on the host still ends it */
	}
	k->cmd_len = strlen(k->cmd);
	k->control = true;
	k->released = true;
	k->refs = 1;
	k->deadline = e->deadline;
	exec_attach(k, e->s, false);
}

static void exec_cancel(struct pool_exec *e, enum pool_outcome_kind kind)
{
	if (e->reported || e->cancel_kind != POOL_EXITED || e->control || e->in_reports)
		return;
	e->cancel_kind = kind;
	e->paused = false; /* drain and discard, so the channel can reach its close */
	switch (e->state) {
	case EXEC_WAITING:
		exec_outcome(e, kind, POOL_FAIL_NONE, "cancelled before it started");
		exec_finish(e);
		return;
	case EXEC_OPENING:
		if (e->s->starter != e) {
			exec_outcome(e, kind, POOL_FAIL_NONE, "cancelled before it started");
			exec_detach(e);
			exec_finish(e);
			return;
		}
		break; /* libssh2's open is in flight: the driver closes the new channel */
	case EXEC_STARTING:
	case EXEC_RUNNING:
		exec_send_kill(e);
		break;
	case EXEC_CLOSING:
	case EXEC_FREEING:
	case EXEC_DONE:
		break;
	default:
		abort();
	}
	/* If the host does not let go in time, report anyway; the channel stays until the
	 * server closes it (the remote timeout(1) ends the command at the latest). */
	timer_in(e->deadline_ev, e->p->cfg.kill_grace_s + KILL_SLACK_S);
	if (e->s != NULL)
		session_schedule(e->s);
}

static void exec_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_exec *e = arg;

	(void)fd;
	(void)what;
	if (e->cancel_kind == POOL_EXITED) {
		exec_cancel(e, POOL_TIMEOUT);
		return;
	}
	/* The kill safety net fired: the host has not closed the channel. */
	if (!e->reported) {
		exec_outcome(e, e->cancel_kind, POOL_FAIL_NONE,
		             "the host did not end the command in time after the kill");
		e->reported = true;
		e->p->stats.execs_by_outcome[e->out.kind]++;
		if (!e->released && e->cb.finished != NULL)
			e->cb.finished(e, &e->out, e->arg);
	}
}

void pool_exec_cancel(struct pool_exec *e)
{
	exec_cancel(e, POOL_CANCELLED);
}

void pool_exec_pause(struct pool_exec *e)
{
	if (e->cancel_kind == POOL_EXITED)
		e->paused = true;
}

void pool_exec_resume(struct pool_exec *e)
{
	if (!e->paused)
		return;
	e->paused = false;
	if (e->s != NULL)
		session_schedule(e->s);
}

void pool_exec_release(struct pool_exec *e)
{
	if (e == NULL || e->released)
		return;
	e->released = true;
	if (!e->reported)
		exec_cancel(e, POOL_CANCELLED);
	exec_unref(e);
}

size_t pool_exec_buffered(const struct pool_exec *e)
{
	unsigned long avail = 0;

	if (e->ch == NULL)
		return 0;
	libssh2_channel_window_read_ex(e->ch, &avail, NULL);
	return avail;
}

/* libssh2 errors that concern one channel; every other error breaks the session. */
static bool channel_error(int rc)
{
	return rc <= LIBSSH2_ERROR_CHANNEL_FAILURE && rc >= LIBSSH2_ERROR_CHANNEL_EOF_SENT;
}

/* After a call returned EAGAIN: if its packet is partly sent, it owns the session. */
static bool took_ownership(struct pool_exec *e)
{
	if (libssh2_session_block_directions(e->s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
		e->s->owner = e;
		return true;
	}
	return false;
}

static void exec_deliver(struct pool_exec *e, enum pool_stream st, const char *buf, size_t n)
{
	if (st == POOL_STDOUT && !e->pgid_done) {
		/* The first line is the command's process group, not output. */
		size_t k = 0;
		while (k < n && !e->pgid_done) {
			char c = buf[k++];
			if (c == '\n' || e->pgid_len + 1 >= sizeof(e->pgid_line)) {
				e->pgid_line[e->pgid_len] = '\0';
				e->pgid_done = true;
				if (strncmp(e->pgid_line, COMMAND_PGID_TAG,
				            strlen(COMMAND_PGID_TAG)) == 0)
					e->pgid = atol(e->pgid_line + strlen(COMMAND_PGID_TAG));
				if (e->cancel_kind != POOL_EXITED)
					exec_send_kill(e);
			} else {
				e->pgid_line[e->pgid_len++] = c;
			}
		}
		buf += k;
		n -= k;
		if (n == 0)
			return;
	}
	if (st == POOL_STDOUT)
		e->out.stdout_bytes += n;
	else
		e->out.stderr_bytes += n;
	if (!e->released && e->cancel_kind == POOL_EXITED && e->cb.data != NULL)
		e->cb.data(e, st, buf, n, e->arg);
}

/* Steps one exec as far as it goes without waiting. Returns false when the session
 * broke (the caller must stop using it). */
static bool exec_step(struct pool_exec *e)
{
	struct session *s = e->s;
	struct pool *p = s->p;
	int rc;

	for (;;) {
		switch (e->state) {
		case EXEC_OPENING:
			if (s->starter != NULL && s->starter != e)
				return true; /* one open or exec request at a time per session */
			s->starter = e;
			e->ch = libssh2_channel_open_ex(s->ssh, "session", 7,
			                                (unsigned)p->cfg.channel_buffer_bytes,
			                                PACKET_LEN, NULL, 0);
			if (e->ch == NULL) {
				rc = libssh2_session_last_errno(s->ssh);
				if (rc == LIBSSH2_ERROR_EAGAIN) {
					took_ownership(e);
					return true;
				}
				s->starter = NULL;
				if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE && !e->control) {
					/* Refused on a healthy session: the server allows fewer
					 * channels than we thought. Keep one spare for kills. */
					p->stats.channel_refusals++;
					struct pool_exec *x;
					int open = 0;
					TAILQ_FOREACH(x, &s->execs, link)
					open += x->ch != NULL;
					s->max_slots = open > 1 ? open - 1 : 1;
					s->t->learned_max = s->max_slots;
					if (e->cancel_kind != POOL_EXITED) {
						exec_outcome(e, e->cancel_kind, POOL_FAIL_NONE,
						             NULL);
						exec_detach(e);
						exec_finish(e);
						return true;
					}
					exec_detach(e);
					exec_reacquire(e, true);
					return true;
				}
				if (channel_error(rc)) {
					exec_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_CHANNEL,
					             "the host refused a channel");
					exec_detach(e);
					exec_finish(e);
					return true;
				}
				session_break(s, "the SSH connection failed opening a channel");
				return false;
			}
			libssh2_channel_handle_extended_data2(e->ch,
			                                      LIBSSH2_CHANNEL_EXTENDED_DATA_NORMAL);
			if (e->cancel_kind != POOL_EXITED) {
				s->starter = NULL;
				exec_outcome(e, e->cancel_kind, POOL_FAIL_NONE,
				             "cancelled before it started");
				FSM_SET(&exec_fsm, e->state, EXEC_CLOSING, e->t->host);
				continue;
			}
			FSM_SET(&exec_fsm, e->state, EXEC_STARTING, e->t->host);
			continue;
		case EXEC_STARTING:
			e->sent = true; /* from the first call on, the server may run it */
			rc = libssh2_channel_process_startup(e->ch, "exec", 4, e->cmd,
			                                     (unsigned)e->cmd_len);
			if (rc == LIBSSH2_ERROR_EAGAIN) {
				took_ownership(e);
				return true;
			}
			s->starter = NULL;
			if (rc != 0) {
				/* LIBSSH2_ERROR_INVAL: refused before sending (too large). */
				if (!channel_error(rc) && rc != LIBSSH2_ERROR_INVAL) {
					session_break(
					    s, "the SSH connection failed starting a command");
					return false;
				}
				exec_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_CHANNEL,
				             "the host refused the exec request");
				FSM_SET(&exec_fsm, e->state, EXEC_CLOSING, e->t->host);
				continue;
			}
			FSM_SET(&exec_fsm, e->state, EXEC_RUNNING, e->t->host);
			if (!e->control && !e->started_cb && !e->released) {
				e->started_cb = true;
				if (e->cb.started != NULL)
					e->cb.started(e, e->arg);
			}
			continue;
		case EXEC_RUNNING: {
			bool progress = true;
			while (e->in_off < e->in_len) {
				size_t n = e->in_len - e->in_off;
				ssize_t w = libssh2_channel_write(e->ch, e->in + e->in_off,
				                                  n < WRITE_LEN ? n : WRITE_LEN);
				if (w == LIBSSH2_ERROR_EAGAIN) {
					if (took_ownership(e))
						return true;
					break; /* window full: read meanwhile */
				}
				if (w < 0) {
					if (!channel_error((int)w)) {
						session_break(
						    s, "the SSH connection failed writing stdin");
						return false;
					}
					e->in_off = e->in_len; /* the command closed its stdin */
					break;
				}
				e->in_off += (size_t)w;
			}
			if (e->in_off == e->in_len && !e->eof_sent) {
				rc = libssh2_channel_send_eof(e->ch);
				if (rc == LIBSSH2_ERROR_EAGAIN) {
					if (took_ownership(e))
						return true;
				} else if (rc == 0 || channel_error(rc)) {
					e->eof_sent = true;
				} else {
					session_break(s, "the SSH connection failed sending EOF");
					return false;
				}
			}
			while (progress && (!e->paused || e->cancel_kind != POOL_EXITED)) {
				progress = false;
				for (int stream = 0; stream < 2; stream++) {
					bool *eof = stream ? &e->stderr_eof : &e->stdout_eof;
					ssize_t n;
					if (*eof || (e->paused && e->cancel_kind == POOL_EXITED))
						continue;
					n = libssh2_channel_read_ex(e->ch, stream, p->readbuf,
					                            READ_LEN);
					if (n > 0) {
						progress = true;
						exec_deliver(e, stream ? POOL_STDERR : POOL_STDOUT,
						             p->readbuf, (size_t)n);
						if (e->s != s || s->state != SESS_READY)
							return s->state == SESS_READY;
					} else if (n == 0) {
						*eof = libssh2_channel_eof(e->ch) != 0;
					} else if (n == LIBSSH2_ERROR_EAGAIN) {
						if (took_ownership(e))
							return true;
					} else if (channel_error((int)n)) {
						*eof = true;
					} else {
						session_break(
						    s, "the SSH connection failed reading output");
						return false;
					}
				}
			}
			if (!(e->stdout_eof && e->stderr_eof))
				return true;
			FSM_SET(&exec_fsm, e->state, EXEC_CLOSING, e->t->host);
			continue;
		}
		case EXEC_CLOSING:
			/* After the remote EOF, wait for the server's own CLOSE before sending
			 * ours: sshd sends exit-status between the two, and a CLOSE from us
			 * first can make it drop the channel without one. */
			if (e->stdout_eof && e->stderr_eof && !e->remote_closed) {
				rc = libssh2_channel_wait_closed(e->ch);
				if (rc == LIBSSH2_ERROR_EAGAIN) {
					took_ownership(e);
					return true;
				}
				if (rc != 0 && !channel_error(rc)) {
					session_break(
					    s, "the SSH connection failed closing a channel");
					return false;
				}
				e->remote_closed = true;
			}
			rc = libssh2_channel_close(e->ch);
			if (rc == LIBSSH2_ERROR_EAGAIN) {
				took_ownership(e);
				return true;
			}
			if (rc != 0 && !channel_error(rc)) {
				session_break(s, "the SSH connection failed closing a channel");
				return false;
			}
			if (e->out.kind == POOL_EXITED && e->out.fail_reason == POOL_FAIL_NONE &&
			    e->cancel_kind == POOL_EXITED && e->sent) {
				char *sig = NULL;
				size_t siglen = 0;
				libssh2_channel_get_exit_signal(e->ch, &sig, &siglen, NULL, NULL,
				                                NULL, NULL);
				if (sig != NULL) {
					e->out.kind = POOL_SIGNALED;
					snprintf(e->out.signal, sizeof(e->out.signal), "%.*s",
					         (int)siglen, sig);
					libssh2_free(s->ssh, sig);
				} else {
					/* The server closed after its EOF on a live transport: by
					 * then sshd has sent the exit status. */
					e->out.kind = POOL_EXITED;
					e->out.exit_code = libssh2_channel_get_exit_status(e->ch);
				}
			} else if (e->cancel_kind != POOL_EXITED) {
				e->out.kind = e->cancel_kind;
			}
			FSM_SET(&exec_fsm, e->state, EXEC_FREEING, e->t->host);
			continue;
		case EXEC_FREEING:
			rc = libssh2_channel_free(e->ch);
			if (rc == LIBSSH2_ERROR_EAGAIN) {
				took_ownership(e);
				return true;
			}
			e->ch = NULL;
			exec_detach(e);
			exec_finish(e);
			return true;
		case EXEC_WAITING:
		case EXEC_DONE:
			return true;
		default:
			abort();
		}
	}
}

static void pool_check_shutdown(struct pool *p)
{
	struct target *t;
	struct session *s, *next;

	if (!p->shutting_down || p->shutdown_done == NULL)
		return;
	TAILQ_FOREACH(t, &p->targets, link)
	TAILQ_FOREACH(s, &t->sessions, link)
	{
		if (!TAILQ_EMPTY(&s->execs) || s->slots > 0)
			return;
	}
	TAILQ_FOREACH(t, &p->targets, link)
	TAILQ_FOREACH_SAFE(s, &t->sessions, link, next)
	session_close(s, "shutdown");
	if (!TAILQ_EMPTY(&p->dead_sessions) || !TAILQ_EMPTY(&p->dead_execs))
		return; /* reclaim first; the kick after that finishes */
	void (*done)(void *) = p->shutdown_done;
	p->shutdown_done = NULL;
	done(p->shutdown_arg);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct target *t;
	struct pool_exec *e;
	struct session *s;
	struct pool_acquire *a;

	(void)fd;
	(void)what;
	TAILQ_FOREACH(t, &p->targets, link)
	target_dispatch(t);
	while ((e = TAILQ_FIRST(&p->reports)) != NULL) {
		TAILQ_REMOVE(&p->reports, e, link);
		e->in_reports = false;
		exec_finish(e);
	}
	while ((e = TAILQ_FIRST(&p->dead_execs)) != NULL) {
		TAILQ_REMOVE(&p->dead_execs, e, link);
		exec_free(e);
	}
	while ((a = TAILQ_FIRST(&p->dead_acquires)) != NULL) {
		TAILQ_REMOVE(&p->dead_acquires, a, link);
		acquire_free(a);
	}
	while ((s = TAILQ_FIRST(&p->dead_sessions)) != NULL) {
		TAILQ_REMOVE(&p->dead_sessions, s, link);
		session_free(s);
	}
	pool_check_shutdown(p);
}

void pool_shutdown(struct pool *p, void (*done)(void *arg), void *arg)
{
	struct target *t;
	struct session *s;
	struct pool_exec *e, *next;

	p->shutting_down = true;
	p->shutdown_done = done;
	p->shutdown_arg = arg;
	TAILQ_FOREACH(t, &p->targets, link)
	{
		while (!TAILQ_EMPTY(&t->waiters))
			acquire_complete(TAILQ_FIRST(&t->waiters), NULL, POOL_FAIL_SHUTDOWN,
			                 "the broker is shutting down");
		TAILQ_FOREACH(s, &t->sessions, link)
		TAILQ_FOREACH_SAFE(e, &s->execs, link, next)
		exec_cancel(e, POOL_SHUTDOWN);
	}
	pool_kick(p);
}

void pool_free(struct pool *p)
{
	struct target *t;
	struct session *s;

	if (p == NULL)
		return;
	while ((t = TAILQ_FIRST(&p->targets)) != NULL) {
		TAILQ_REMOVE(&p->targets, t, link);
		while ((s = TAILQ_FIRST(&t->sessions)) != NULL) {
			struct pool_exec *e;
			while ((e = TAILQ_FIRST(&s->execs)) != NULL) {
				TAILQ_REMOVE(&s->execs, e, link);
				exec_free(e);
			}
			TAILQ_REMOVE(&t->sessions, s, link);
			session_free(s);
		}
		while (!TAILQ_EMPTY(&t->waiters)) {
			struct pool_acquire *a = TAILQ_FIRST(&t->waiters);
			TAILQ_REMOVE(&t->waiters, a, link);
			acquire_free(a);
		}
		free(t->host);
		free(t->user);
		free(t->fp_text);
		free(t);
	}
	while (!TAILQ_EMPTY(&p->reports)) {
		struct pool_exec *e = TAILQ_FIRST(&p->reports);
		TAILQ_REMOVE(&p->reports, e, link);
		exec_free(e);
	}
	if (p->kick != NULL)
		kick_cb(-1, 0, p);
	if (p->kick != NULL)
		event_free(p->kick);
	if (p->dns != NULL)
		evdns_base_free(p->dns, 0);
	if (p->key != NULL)
		explicit_bzero(p->key, p->key_len);
	free(p->key);
	while (p->old_keys != NULL) {
		struct old_key *k = p->old_keys;

		p->old_keys = k->next;
		explicit_bzero(k->key, k->len);
		free(k->key);
		free(k);
	}
	libssh2_exit();
	free(p);
}

void pool_get_stats(const struct pool *p, struct pool_stats *st)
{
	const struct target *t;
	const struct session *s;
	const struct pool_exec *e;

	*st = p->stats;
	st->sessions_connecting = st->sessions_ready = st->sessions_idle = 0;
	st->sessions_broken = st->sessions_closing = 0;
	st->channels_in_use = 0;
	TAILQ_FOREACH(t, &p->targets, link)
	TAILQ_FOREACH(s, &t->sessions, link)
	{
		if (s->state == SESS_READY) {
			if (s->slots == 0 && TAILQ_EMPTY(&s->execs))
				st->sessions_idle++;
			else
				st->sessions_ready++;
		} else {
			st->sessions_connecting++;
		}
		TAILQ_FOREACH(e, &s->execs, link)
		st->channels_in_use += e->ch != NULL;
	}
	TAILQ_FOREACH(s, &p->dead_sessions, link)
	st->sessions_broken++;
}
