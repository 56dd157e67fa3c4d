/* pool/pool.c: the pool proper, and pool.h's whole contract: targets, the FIFO of waiting
 * acquires, leases, dispatch and eviction, reclaim after the loop turn, shutdown,
 * reconfigure and stats. It opens sessions and starts execs, and wires their hooks. */
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
#include "pool/channel.h"
#include "pool/fingerprint.h"
#include "pool/pool_int.h"
#include "pool/session.h"

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

/* A watcher whose broker has not beaten for this long, holding no command, exits: its
 * session is gone without a word (a silent network). */
#define WATCH_IDLE_EXIT_S (6 * COMMAND_WATCH_BEAT_S)

/* How long a target opens no new session after one failed to connect while others live. */
#define TARGET_RETRY_S 1

static void kick_cb(evutil_socket_t fd, short what, void *arg);
static void target_dispatch(struct target *t);

static void pool_kick(struct pool *p)
{
	event_active(p->kick, EV_TIMEOUT, 0);
}

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

/* The pause after a failed connect is over: waiters still waiting may get new sessions. */
static void target_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct target *t = arg;

	(void)fd;
	(void)what;
	t->backoff = false;
	target_dispatch(t);
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
	t->retry = evtimer_new(p->base, target_retry_cb, t);
	TAILQ_INIT(&t->sessions);
	TAILQ_INIT(&t->waiters);
	if (t->host == NULL || t->user == NULL || t->fp_text == NULL || t->retry == NULL) {
		if (t->retry != NULL)
			event_free(t->retry);
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

static void lease_hand_to_exec(struct pool_exec *e, struct pool_lease *l, enum pool_fail_reason why,
                               const char *detail);

static void acquire_complete(struct pool_acquire *a, struct pool_lease *l,
                             enum pool_fail_reason why, const char *detail)
{
	acquire_retire(a);
	if (a->exec != NULL) {
		a->exec->reacquire = NULL;
		lease_hand_to_exec(a->exec, l, why, detail);
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
	if (!alive) {
		while (!TAILQ_EMPTY(&t->waiters))
			acquire_complete(TAILQ_FIRST(&t->waiters), NULL, why, detail);
	} else if (!t->backoff) {
		struct timeval pause = {TARGET_RETRY_S, 0};

		t->backoff = true;
		evtimer_add(t->retry, &pause);
	}
}

static void pool_reclaim_session(struct session *s)
{
	TAILQ_INSERT_TAIL(&s->p->dead_sessions, s, link);
	pool_kick(s->p);
}

static const struct channel_hooks pool_channel_hooks;

/* A session of a one-channel host whose watcher others may use: ready, with its watcher,
 * and no room for execs of its own. */
static struct session *target_lender(struct target *t)
{
	struct session *s;

	TAILQ_FOREACH(s, &t->sessions, link)
	if (s->state == SESS_READY && s->watch_ready && !s->retiring && s->lender == NULL &&
	    s->max_slots == 0 && session_alive(s))
		return s; /* idle, so asked the kernel: sshd may have closed it */
	return NULL;
}

/* Every session runs one watcher, so that no command outlives its deadline (command.h);
 * on a host that allows one channel per connection, one session's watcher serves the
 * others. */
static int pool_start_watcher(struct session *s)
{
	struct session *l = s->t->one_channel ? target_lender(s->t) : NULL;
	struct pool_exec *w;

	if (l != NULL) {
		session_borrow_watcher(s, l);
		return 0;
	}
	w = channel_new(s->p, s->t, &pool_channel_hooks);
	if (w == NULL)
		return EB_ERR_NOMEM;
	if (command_watcher(s->p->cfg.kill_grace_s, WATCH_IDLE_EXIT_S, &w->cmd) != 0) {
		channel_free(w);
		return EB_ERR_NOMEM;
	}
	w->cmd_len = strlen(w->cmd);
	w->refs = 1; /* the state machine's */
	channel_attach_watcher(w, s);
	return 0;
}

static const struct session_hooks pool_session_hooks = {
    .step = channel_step,
    .lost = channel_lost,
    .changed = pool_serve_waiters,
    .connect_failed = pool_fail_waiters,
    .dead = pool_reclaim_session,
    .authenticated = pool_start_watcher,
};

/* The execs' hooks. */
static int pool_requeue_exec(struct pool_exec *e, bool at_front)
{
	e->reacquire = acquire_new(e->p, e->t, &e->deadline, at_front);
	if (e->reacquire == NULL)
		return EB_ERR_NOMEM;
	e->reacquire->exec = e;
	return 0;
}

static void pool_reclaim_exec(struct pool_exec *e)
{
	TAILQ_INSERT_TAIL(&e->p->dead_execs, e, link);
	pool_kick(e->p);
}

static const struct channel_hooks pool_channel_hooks = {
    .requeue = pool_requeue_exec,
    .requeue_cancel = pool_acquire_cancel,
    .slot_freed = pool_serve_waiters,
    .dead = pool_reclaim_exec,
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
		    s->borrowers == 0 &&
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
		if (s->slots == 0 && TAILQ_EMPTY(&s->execs) && !session_alive(s)) {
			/* Died while idle: never leased. Its break serves the waiters anew. */
			session_break(s, "the SSH connection was closed while it was idle");
			continue;
		}
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
	while (waiting > connecting_slots && !t->backoff &&
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

static void lease_hand_to_exec(struct pool_exec *e, struct pool_lease *l, enum pool_fail_reason why,
                               const char *detail)
{
	if (l == NULL) {
		channel_set_outcome(e, POOL_FAILED_TO_START, why, detail);
		channel_finish(e);
		return;
	}
	if (e->cancel_kind != POOL_EXITED) {
		pool_lease_release(l);
		channel_set_outcome(e, e->cancel_kind, POOL_FAIL_NONE,
		                    "cancelled before it started");
		channel_finish(e);
		return;
	}
	struct session *s = l->s;
	free(l);
	channel_attach(e, s, true);
	session_unref(s); /* the lease's reference; the exec holds its own */
}

/* pool_exec_start and pool_exec_prepare (held). */
static struct pool_exec *exec_start(struct pool_lease *l, const struct command_spec *spec,
                                    const char *stdin_data, size_t stdin_len,
                                    const struct timeval *deadline,
                                    const struct pool_exec_callbacks *cb, void *arg, bool held)
{
	struct session *s = l->s;
	struct pool *p = s->p;
	struct pool_exec *e;
	char err[160];

	e = channel_new(p, s->t, &pool_channel_hooks);
	if (e == NULL) {
		pool_lease_release(l);
		return NULL;
	}
	e->held = held;
	e->noise_dropped = spec->broker_script;
	e->cb = *cb;
	e->arg = arg;
	e->refs = 2; /* the consumer and the state machine */
	e->deadline = *deadline;
	timer_at(e->deadline_ev, deadline);
	/* The body now; it is framed for the session that runs it, with the deadline then
	 * left, once its channel is open (channel_frame). */
	if (command_build(spec, &e->cmd, &e->cmd_len, err, sizeof(err)) != 0) {
		/* Reported from the loop, never inside this call. */
		pool_lease_release(l);
		channel_set_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_INVALID, err);
		e->in_reports = true;
		TAILQ_INSERT_TAIL(&p->reports, e, link);
		pool_kick(p);
		return e;
	}
	if (stdin_len > 0) {
		e->in = malloc(stdin_len);
		if (e->in == NULL) {
			pool_lease_release(l);
			channel_free(e);
			return NULL;
		}
		memcpy(e->in, stdin_data, stdin_len);
		e->in_len = stdin_len;
	}
	if (s->state != SESS_READY || !s->watch_ready) {
		/* The session broke, or lost its watcher, after this lease was given (another
		 * exec on it found out): nothing was sent on it, so this exec waits for
		 * another at once. */
		pool_lease_release(l);
		if (pool_requeue_exec(e, true) != 0) {
			channel_set_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_CONNECT,
			                    "out of memory");
			e->in_reports = true;
			TAILQ_INSERT_TAIL(&p->reports, e, link);
			pool_kick(p);
		}
		return e;
	}
	free(l);
	channel_attach(e, s, true);
	session_unref(s); /* the lease's reference */
	return e;
}

struct pool_exec *pool_exec_start(struct pool_lease *l, const struct command_spec *spec,
                                  const char *stdin_data, size_t stdin_len,
                                  const struct timeval *deadline,
                                  const struct pool_exec_callbacks *cb, void *arg)
{
	return exec_start(l, spec, stdin_data, stdin_len, deadline, cb, arg, false);
}

struct pool_exec *pool_exec_prepare(struct pool_lease *l, const struct command_spec *spec,
                                    const char *stdin_data, size_t stdin_len,
                                    const struct timeval *deadline,
                                    const struct pool_exec_callbacks *cb, void *arg)
{
	return exec_start(l, spec, stdin_data, stdin_len, deadline, cb, arg, true);
}

void pool_exec_go(struct pool_exec *e)
{
	if (!e->held)
		return;
	e->held = false;
	if (e->s != NULL)
		session_schedule(e->s);
}

void pool_exec_cancel(struct pool_exec *e)
{
	channel_cancel(e, POOL_CANCELLED);
}

void pool_exec_pause(struct pool_exec *e)
{
	channel_pause(e);
}

void pool_exec_resume(struct pool_exec *e)
{
	channel_resume(e);
}

void pool_exec_release(struct pool_exec *e)
{
	channel_release(e);
}

size_t pool_exec_buffered(const struct pool_exec *e)
{
	return channel_buffered(e);
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

/* Nothing is freed inside its own callback: objects whose last reference goes are put on
 * the reclaim list and freed from here, the pool's kick event, after the loop turn. */
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
		channel_finish(e);
	}
	while ((e = TAILQ_FIRST(&p->dead_execs)) != NULL) {
		TAILQ_REMOVE(&p->dead_execs, e, link);
		channel_free(e);
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
		channel_cancel(e, POOL_SHUTDOWN);
	}
	pool_kick(p);
}

void pool_free(struct pool *p)
{
	struct target *t;
	struct session *s;

	if (p == NULL)
		return;
	/* Every session goes, in list order, where a lender may come before its borrowers:
	 * their references to it are not dropped, the lender is freed with the rest. */
	TAILQ_FOREACH(t, &p->targets, link)
	TAILQ_FOREACH(s, &t->sessions, link)
	s->lender = NULL;
	TAILQ_FOREACH(s, &p->dead_sessions, link)
	s->lender = NULL;
	while ((t = TAILQ_FIRST(&p->targets)) != NULL) {
		TAILQ_REMOVE(&p->targets, t, link);
		while ((s = TAILQ_FIRST(&t->sessions)) != NULL) {
			struct pool_exec *e;
			if (s->watch != NULL)
				channel_free(s->watch);
			while ((e = TAILQ_FIRST(&s->execs)) != NULL) {
				TAILQ_REMOVE(&s->execs, e, link);
				channel_free(e);
			}
			TAILQ_REMOVE(&t->sessions, s, link);
			session_free(s);
		}
		while (!TAILQ_EMPTY(&t->waiters)) {
			struct pool_acquire *a = TAILQ_FIRST(&t->waiters);
			TAILQ_REMOVE(&t->waiters, a, link);
			acquire_free(a);
		}
		event_free(t->retry);
		free(t->host);
		free(t->user);
		free(t->fp_text);
		free(t);
	}
	while (!TAILQ_EMPTY(&p->reports)) {
		struct pool_exec *e = TAILQ_FIRST(&p->reports);
		TAILQ_REMOVE(&p->reports, e, link);
		channel_free(e);
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
	st->channel_limit_learned = 0;
	TAILQ_FOREACH(t, &p->targets, link)
	if (t->learned_max > 0 && (st->channel_limit_learned == 0 ||
	                           (unsigned)t->learned_max < st->channel_limit_learned))
		st->channel_limit_learned = (unsigned)t->learned_max;
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
