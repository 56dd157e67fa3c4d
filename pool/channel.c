/* pool/channel.c: an exec's state machine over its libssh2 channel (open, exec request, stdin,
 * output and the pgid line, close, free), its cancel through the session's watcher, pause,
 * deadline and outcome; and the watcher's own channel, which runs the same machine. It calls
 * the session below it, and the pool above only through its hooks. */
#include "pool/channel.h"

#include <event2/event.h>
#include <libssh2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/fsm.h"
#include "pool/command.h"
#include "pool/session.h"

/* libssh2 1.10 rules the channel is built around (see the research notes in docs/pool.md):
 *  - the window of a channel only grows when that channel is read, so a paused exec holds
 *    at most its window (channel_buffer_bytes) in libssh2, and reads always use READ_LEN;
 *  - stdout and stderr share the window: both are read on every pass. */

#define WRITE_LEN    32768
#define PACKET_LEN   32768
#define KILL_SLACK_S 10
/* Output the login shell may print before the watcher says where it listens. */
#define WATCH_NOISE_MAX 8192

static const char *const exec_state_names[] = {
    "waiting", "opening", "held", "starting", "running", "closing", "freeing", "done",
};

static const unsigned exec_legal[] = {
    [EXEC_WAITING] = FSM_BIT(EXEC_OPENING) | FSM_BIT(EXEC_DONE),
    [EXEC_OPENING] = FSM_BIT(EXEC_HELD) | FSM_BIT(EXEC_STARTING) | FSM_BIT(EXEC_WAITING) |
                     FSM_BIT(EXEC_DONE) | FSM_BIT(EXEC_CLOSING),
    [EXEC_HELD] =
        FSM_BIT(EXEC_STARTING) | FSM_BIT(EXEC_WAITING) | FSM_BIT(EXEC_DONE) | FSM_BIT(EXEC_CLOSING),
    [EXEC_STARTING] =
        FSM_BIT(EXEC_RUNNING) | FSM_BIT(EXEC_CLOSING) | FSM_BIT(EXEC_WAITING) | FSM_BIT(EXEC_DONE),
    [EXEC_RUNNING] = FSM_BIT(EXEC_CLOSING) | FSM_BIT(EXEC_DONE),
    [EXEC_CLOSING] = FSM_BIT(EXEC_FREEING) | FSM_BIT(EXEC_DONE),
    [EXEC_FREEING] = FSM_BIT(EXEC_DONE),
    [EXEC_DONE] = 0,
};

static const struct fsm exec_fsm = {"pool exec", exec_state_names, exec_legal, EXEC_DONE + 1};

static void channel_unref(struct pool_exec *e)
{
	if (--e->refs > 0)
		return;
	if (e->refs < 0 || e->s != NULL)
		abort();
	e->hooks->dead(e);
}

/* The exec channels (not the watcher's) open on s. */
static int channel_open_count(const struct session *s)
{
	const struct pool_exec *x;
	int open = 0;

	TAILQ_FOREACH(x, &s->execs, link)
	open += x->ch != NULL && !x->control;
	return open;
}

/* Whether another session of s's target lends its watcher (target one_channel). */
static bool channel_other_lender(const struct session *s)
{
	const struct session *x;

	if (!s->t->one_channel)
		return false;
	TAILQ_FOREACH(x, &s->t->sessions, link)
	if (x != s && x->lender == NULL && x->max_slots == 0 && !x->retiring && x->watch_ready &&
	    x->state == SESS_READY)
		return true;
	return false;
}

void channel_free(struct pool_exec *e)
{
	if (e->deadline_ev != NULL)
		event_free(e->deadline_ev);
	if (e->in != NULL)
		explicit_bzero(e->in, e->in_len);
	free(e->in);
	free(e->cmd);
	free(e->pg.noise);
	free(e);
}

void channel_attach(struct pool_exec *e, struct session *s, bool holds_slot)
{
	e->s = s;
	e->holds_slot = holds_slot;
	session_ref(s);
	TAILQ_INSERT_TAIL(&s->execs, e, link);
	FSM_SET(&exec_fsm, e->state, EXEC_OPENING, e->t->host);
	session_schedule(s);
}

void channel_attach_watcher(struct pool_exec *w, struct session *s)
{
	struct timeval beat = {COMMAND_WATCH_BEAT_S, 0};

	w->s = s;
	w->control = w->watcher = w->released = true;
	s->watch = w;
	session_ref(s);
	FSM_SET(&exec_fsm, w->state, EXEC_OPENING, w->t->host);
	evtimer_add(w->deadline_ev, &beat);
}

int channel_watcher_say(struct session *s, const char *fmt, ...)
{
	struct pool_exec *w;
	va_list ap;
	int n;

	if (s->lender != NULL) {
		if (!s->watch_ready)
			return EB_ERR_INVAL;
		s = s->lender; /* the watcher its commands registered with */
	}
	w = s->watch;
	if (w == NULL || !s->watch_ready || w->state != EXEC_RUNNING)
		return EB_ERR_INVAL;
	if (w->in_off == w->in_len)
		w->in_off = w->in_len = 0; /* all written: reuse the buffer */
	if (w->in_cap - w->in_len < 64) {
		size_t cap = w->in_cap ? w->in_cap * 2 : 256;
		char *b = realloc(w->in, cap);
		if (b == NULL)
			return EB_ERR_NOMEM;
		w->in = b;
		w->in_cap = cap;
	}
	va_start(ap, fmt);
	n = vsnprintf(w->in + w->in_len, w->in_cap - w->in_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= w->in_cap - w->in_len)
		return EB_ERR_INVAL; /* every line is short */
	w->in_len += (size_t)n;
	session_schedule(s);
	return 0;
}

/* Takes e off its session: its slot and reference go. The channel must be gone. */
static void channel_detach(struct pool_exec *e)
{
	struct session *s = e->s;

	if (s == NULL)
		return;
	if (e->watcher) {
		char why[160];
		s->watch = NULL;
		if (s->owner == e)
			s->owner = NULL;
		if (s->starter == e)
			s->starter = NULL;
		e->s = NULL;
		e->ch = NULL;
		snprintf(why, sizeof(why), "%s",
		         e->out.detail[0] ? e->out.detail : "its channel closed");
		session_watcher_gone(s, why);
		session_unref(s);
		return;
	}
	if (!e->control && e->pgid > 1)
		channel_watcher_say(s, "d %ld\n", e->pgid); /* unless the session went too */
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
		e->hooks->slot_freed(s);
		session_schedule(s);
	}
	session_unref(s);
}

void channel_set_outcome(struct pool_exec *e, enum pool_outcome_kind kind,
                         enum pool_fail_reason why, const char *detail)
{
	e->out.kind =
	    e->cancel_kind != POOL_EXITED && kind != POOL_FAILED_TO_START ? e->cancel_kind : kind;
	e->out.fail_reason = why;
	if (detail != NULL)
		snprintf(e->out.detail, sizeof(e->out.detail), "%s", detail);
}

void channel_finish(struct pool_exec *e)
{
	if (e->state != EXEC_DONE)
		FSM_SET(&exec_fsm, e->state, EXEC_DONE, e->t->host);
	if (e->reacquire != NULL) {
		e->hooks->requeue_cancel(e->reacquire);
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
	channel_unref(e);
}

static void channel_reacquire(struct pool_exec *e, bool at_front)
{
	FSM_SET(&exec_fsm, e->state, EXEC_WAITING, e->t->host);
	if (e->hooks->requeue(e, at_front) != 0) {
		channel_set_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_CONNECT, "out of memory");
		channel_finish(e);
	}
}

static void channel_deadline_cb(evutil_socket_t fd, short what, void *arg);

struct pool_exec *channel_new(struct pool *p, struct target *t, const struct channel_hooks *hooks)
{
	struct pool_exec *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->p = p;
	e->t = t;
	e->hooks = hooks;
	e->state = EXEC_WAITING;
	e->cancel_kind = POOL_EXITED;
	e->deadline_ev = evtimer_new(p->base, channel_deadline_cb, e);
	if (e->deadline_ev == NULL) {
		free(e);
		return NULL;
	}
	return e;
}

/* Kills e's process group: the session's watcher signals it (TERM, KILL after the grace).
 * Only a session whose watcher is gone opens a control channel for it instead. */
static void channel_send_kill(struct pool_exec *e)
{
	struct pool_exec *k;

	if (e->kill_sent || !e->pgid_done || e->pgid <= 1 || e->s == NULL ||
	    e->s->state != SESS_READY)
		return;
	e->kill_sent = true;
	if (channel_watcher_say(e->s, "term %ld %d\n", e->pgid, e->p->cfg.kill_grace_s) == 0)
		return;
	k = channel_new(e->p, e->t, e->hooks);
	if (k == NULL || command_kill_group(e->pgid, e->p->cfg.kill_grace_s, &k->cmd) != 0) {
		if (k != NULL)
			channel_free(k);
		return; /* the broker's safety net reports it at least */
	}
	k->cmd_len = strlen(k->cmd);
	k->control = true;
	k->released = true;
	k->refs = 1;
	k->deadline = e->deadline;
	channel_attach(k, e->s, false);
}

void channel_cancel(struct pool_exec *e, enum pool_outcome_kind kind)
{
	if (e->reported || e->cancel_kind != POOL_EXITED || e->control || e->in_reports)
		return;
	e->cancel_kind = kind;
	e->paused = false; /* drain and discard, so the channel can reach its close */
	switch (e->state) {
	case EXEC_WAITING:
		channel_set_outcome(e, kind, POOL_FAIL_NONE, "cancelled before it started");
		channel_finish(e);
		return;
	case EXEC_OPENING:
		if (e->s->starter != e) {
			channel_set_outcome(e, kind, POOL_FAIL_NONE, "cancelled before it started");
			channel_detach(e);
			channel_finish(e);
			return;
		}
		break; /* libssh2's open is in flight: the driver closes the new channel */
	case EXEC_HELD:
		break; /* nothing ran: the driver closes the channel */
	case EXEC_STARTING:
	case EXEC_RUNNING:
		channel_send_kill(e);
		break;
	case EXEC_CLOSING:
	case EXEC_FREEING:
	case EXEC_DONE:
		break;
	default:
		abort();
	}
	/* If the host does not let go in time, report anyway; the channel stays until the
	 * server closes it (the session's watcher ends the command at the latest). */
	struct timeval grace = {e->p->cfg.kill_grace_s + KILL_SLACK_S, 0};
	evtimer_add(e->deadline_ev, &grace);
	if (e->s != NULL)
		session_schedule(e->s);
}

static void channel_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_exec *e = arg;

	(void)fd;
	(void)what;
	if (e->watcher) {
		struct timeval beat = {COMMAND_WATCH_BEAT_S, 0};
		channel_watcher_say(e->s, "a\n");
		evtimer_add(e->deadline_ev, &beat);
		return;
	}
	if (e->cancel_kind == POOL_EXITED) {
		channel_cancel(e, POOL_TIMEOUT);
		return;
	}
	/* The kill safety net fired: the host has not closed the channel. */
	if (!e->reported) {
		channel_set_outcome(e, e->cancel_kind, POOL_FAIL_NONE,
		                    "the host did not end the command in time after the kill");
		e->reported = true;
		e->p->stats.execs_by_outcome[e->out.kind]++;
		if (!e->released && e->cb.finished != NULL)
			e->cb.finished(e, &e->out, e->arg);
	}
}

void channel_pause(struct pool_exec *e)
{
	if (e->cancel_kind == POOL_EXITED)
		e->paused = true;
}

void channel_resume(struct pool_exec *e)
{
	if (!e->paused)
		return;
	e->paused = false;
	if (e->s != NULL)
		session_schedule(e->s);
}

void channel_release(struct pool_exec *e)
{
	if (e == NULL || e->released)
		return;
	e->released = true;
	if (!e->reported)
		channel_cancel(e, POOL_CANCELLED);
	channel_unref(e);
}

size_t channel_buffered(const struct pool_exec *e)
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

/* The watcher ends the command at the deadline too: when its TERM or KILL comes before the
 * broker's own timer fired, it is the timeout it is. */
static void channel_check_host_timeout(struct pool_exec *e)
{
	struct timespec ts;
	struct timeval now;

	if (e->out.kind != POOL_SIGNALED ||
	    (strcmp(e->out.signal, "TERM") != 0 && strcmp(e->out.signal, "KILL") != 0))
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock of every deadline (pool.h) */
	now = (struct timeval){ts.tv_sec, ts.tv_nsec / 1000};
	if (timercmp(&now, &e->deadline, >=))
		e->out.kind = POOL_TIMEOUT;
}

/* Frames e's body for its session: registration with the watcher, the deadline left, and
 * the bootstrap when it is too long for the request (its line then goes ahead of stdin). */
static int channel_frame(struct pool_exec *e)
{
	struct timespec ts;
	struct timeval now, left;
	char *exec, *prefix;
	size_t exec_len, prefix_len;
	long ms = 1;

	if (e->control) {
		e->framed = true;
		return 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock of every deadline (pool.h) */
	now = (struct timeval){ts.tv_sec, ts.tv_nsec / 1000};
	if (timercmp(&e->deadline, &now, >)) {
		timersub(&e->deadline, &now, &left);
		/* Rounded up: the host must not end the command before the broker's timer. */
		ms = (long)left.tv_sec * 1000 + (left.tv_usec + 999) / 1000;
	}
	if (command_frame(e->cmd, e->cmd_len, e->s->fifo, ms, &exec, &exec_len, &prefix,
	                  &prefix_len) != 0)
		return EB_ERR_NOMEM;
	if (prefix != NULL) {
		char *in = malloc(prefix_len + e->in_len);
		if (in == NULL) {
			free(exec);
			free(prefix);
			return EB_ERR_NOMEM;
		}
		memcpy(in, prefix, prefix_len);
		if (e->in_len > 0)
			memcpy(in + prefix_len, e->in, e->in_len);
		if (e->in != NULL)
			explicit_bzero(e->in, e->in_len);
		free(e->in);
		free(prefix);
		e->in = in;
		e->in_len += prefix_len;
	}
	free(e->cmd);
	e->cmd = exec;
	e->cmd_len = exec_len;
	e->framed = true;
	return 0;
}

/* After a call returned EAGAIN: if its packet is partly sent, it owns the session. */
static bool channel_took_ownership(struct pool_exec *e)
{
	if (libssh2_session_block_directions(e->s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
		e->s->owner = e;
		return true;
	}
	return false;
}

/* The watcher's output: a line saying where it listens (what comes before it, from the login
 * shell's startup files, is skipped, up to WATCH_NOISE_MAX bytes); what it says on stderr
 * (why it could not start) is kept for the log line of its end. */
static void channel_watcher_output(struct pool_exec *e, enum pool_stream st, const char *buf,
                                   size_t n)
{
	size_t have = strlen(e->out.detail), tag = strlen(COMMAND_WATCH_TAG), k;

	if (st == POOL_STDERR) {
		for (k = 0; k < n && have + 1 < sizeof(e->out.detail); k++)
			if (buf[k] != '\n' || have > 0)
				e->out.detail[have++] = buf[k] == '\n' ? ' ' : buf[k];
		e->out.detail[have] = '\0';
		return;
	}
	if (e->s->watch_ready || e->pg.done)
		return;
	k = command_scan_line(&e->pg, COMMAND_WATCH_TAG, buf, n);
	e->out.stdout_bytes += k;
	free(e->pg.noise);
	e->pg.noise = NULL;
	e->pg.noise_len = 0;
	if (e->pg.done && e->pg.len > tag) {
		snprintf(e->s->fifo, sizeof(e->s->fifo), "%s", e->pg.line + tag);
		session_watcher_ready(e->s);
	} else if (e->pg.done || e->out.stdout_bytes > WATCH_NOISE_MAX) {
		session_watcher_gone(e->s, "it printed something else than where it listens");
	}
}

static void channel_pass_output(struct pool_exec *e, enum pool_stream st, const char *buf, size_t n)
{
	if (n == 0)
		return;
	if (st == POOL_STDOUT)
		e->out.stdout_bytes += n;
	else
		e->out.stderr_bytes += n;
	if (!e->released && e->cancel_kind == POOL_EXITED && e->cb.data != NULL)
		e->cb.data(e, st, buf, n, e->arg);
}

/* The pgid line came: what came before it (its first COMMAND_NOISE_MAX bytes) is the
 * host's output, and a cancel that came meanwhile can be sent now. */
static void channel_pgid_known(struct pool_exec *e)
{
	e->pgid_done = true;
	e->pgid = e->pg.pgid;
	if (!e->noise_dropped)
		channel_pass_output(e, POOL_STDOUT, e->pg.noise, e->pg.noise_len);
	free(e->pg.noise);
	e->pg.noise = NULL;
	e->pg.noise_len = 0;
	if (e->cancel_kind != POOL_EXITED)
		channel_send_kill(e);
}

static void channel_deliver(struct pool_exec *e, enum pool_stream st, const char *buf, size_t n)
{
	if (e->watcher) {
		channel_watcher_output(e, st, buf, n);
		return;
	}
	if (st == POOL_STDOUT && !e->pgid_done) {
		size_t k = command_pgid_scan(&e->pg, buf, n);

		if (e->pg.done)
			channel_pgid_known(e);
		buf += k;
		n -= k;
	}
	channel_pass_output(e, st, buf, n);
}

bool channel_step(struct pool_exec *e)
{
	struct session *s = e->s;
	struct pool *p = s->p;
	int rc;

	for (;;) {
		switch (e->state) {
		case EXEC_OPENING:
			if (!e->control && !s->watch_ready && s->starter != e) {
				/* The watcher went after this exec was put here: nothing was
				 * sent, so it takes a slot on another session. */
				channel_detach(e);
				channel_reacquire(e, true);
				return true;
			}
			if (s->starter != NULL && s->starter != e)
				return true; /* one open or exec request at a time per session */
			s->starter = e;
			e->ch = libssh2_channel_open_ex(s->ssh, "session", 7,
			                                (unsigned)p->cfg.channel_buffer_bytes,
			                                PACKET_LEN, NULL, 0);
			if (e->ch == NULL) {
				rc = libssh2_session_last_errno(s->ssh);
				if (rc == LIBSSH2_ERROR_EAGAIN) {
					channel_took_ownership(e);
					return true;
				}
				s->starter = NULL;
				if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE && !e->control) {
					/* Refused on a healthy session: the server allows fewer
					 * channels than we thought (the watcher has one; kills
					 * need none). */
					p->stats.channel_refusals++;
					/* Fewer open than the server held at once before: a
					 * channel just closed here is not yet gone there (sshd
					 * frees it a loop later), so this says nothing new of
					 * the limit. */
					int open = channel_open_count(s);
					if (open == 0 && s->peak_open == 0 && s->lender == NULL &&
					    channel_other_lender(s)) {
						/* Sessions that came up together each started a
						 * watcher: one lender is enough, and another would
						 * hold a place under the per-host cap and never be
						 * used. This one closes once idle; its execs go to
						 * borrowers. */
						s->retiring = true;
						snprintf(
						    s->detail, sizeof(s->detail),
						    "the host allows one channel per connection, "
						    "and another lends its watcher");
					} else if (open == 0 && s->peak_open == 0 &&
					           s->lender == NULL) {
						/* Not even one beside the watcher (MaxSessions
						 * 1): this session keeps its watcher for the
						 * host's other connections, one exec each. */
						s->max_slots = 0;
						s->t->one_channel = true;
						s->t->learned_max = 1;
					} else if (open >= s->peak_open) {
						s->max_slots = open > 0 ? open : 1;
						s->t->learned_max = s->max_slots;
					}
					if (e->cancel_kind != POOL_EXITED) {
						channel_set_outcome(e, e->cancel_kind,
						                    POOL_FAIL_NONE, NULL);
						channel_detach(e);
						channel_finish(e);
						return true;
					}
					channel_detach(e);
					channel_reacquire(e, true);
					return true;
				}
				if (channel_error(rc)) {
					channel_set_outcome(e, POOL_FAILED_TO_START,
					                    POOL_FAIL_CHANNEL,
					                    "the host refused a channel");
					channel_detach(e);
					channel_finish(e);
					return true;
				}
				session_break(s, "the SSH connection failed opening a channel");
				return false;
			}
			libssh2_channel_handle_extended_data2(e->ch,
			                                      LIBSSH2_CHANNEL_EXTENDED_DATA_NORMAL);
			if (!e->control) {
				int open = channel_open_count(s);
				if (open > s->peak_open)
					s->peak_open = open;
			}
			if (e->cancel_kind != POOL_EXITED) {
				s->starter = NULL;
				channel_set_outcome(e, e->cancel_kind, POOL_FAIL_NONE,
				                    "cancelled before it started");
				FSM_SET(&exec_fsm, e->state, EXEC_CLOSING, e->t->host);
				continue;
			}
			if (e->held) {
				/* Open and waiting for its go: others may open and start meanwhile.
				 */
				s->starter = NULL;
				FSM_SET(&exec_fsm, e->state, EXEC_HELD, e->t->host);
				continue;
			}
			FSM_SET(&exec_fsm, e->state, EXEC_STARTING, e->t->host);
			continue;
		case EXEC_HELD:
			if (e->cancel_kind != POOL_EXITED) {
				channel_set_outcome(e, e->cancel_kind, POOL_FAIL_NONE,
				                    "cancelled before it started");
				FSM_SET(&exec_fsm, e->state, EXEC_CLOSING, e->t->host);
				continue;
			}
			if (e->held || (s->starter != NULL && s->starter != e))
				return true; /* one exec request at a time per session */
			s->starter = e;
			FSM_SET(&exec_fsm, e->state, EXEC_STARTING, e->t->host);
			continue;
		case EXEC_STARTING:
			if (!e->framed && channel_frame(e) != 0) {
				s->starter = NULL;
				channel_set_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_INVALID,
				                    "out of memory");
				FSM_SET(&exec_fsm, e->state, EXEC_CLOSING, e->t->host);
				continue;
			}
			e->sent = true; /* from the first call on, the server may run it */
			rc = libssh2_channel_process_startup(e->ch, "exec", 4, e->cmd,
			                                     (unsigned)e->cmd_len);
			if (rc == LIBSSH2_ERROR_EAGAIN) {
				channel_took_ownership(e);
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
				channel_set_outcome(e, POOL_FAILED_TO_START, POOL_FAIL_CHANNEL,
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
					if (channel_took_ownership(e))
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
			if (e->in_off == e->in_len && !e->eof_sent && !e->watcher) {
				rc = libssh2_channel_send_eof(e->ch);
				if (rc == LIBSSH2_ERROR_EAGAIN) {
					if (channel_took_ownership(e))
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
						channel_deliver(e,
						                stream ? POOL_STDERR : POOL_STDOUT,
						                p->readbuf, (size_t)n);
						if (e->s != s || !session_usable(s))
							return session_usable(s);
					} else if (n == 0) {
						*eof = libssh2_channel_eof(e->ch) != 0;
					} else if (n == LIBSSH2_ERROR_EAGAIN) {
						if (channel_took_ownership(e))
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
					channel_took_ownership(e);
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
				channel_took_ownership(e);
				return true;
			}
			if (rc != 0 && !channel_error(rc)) {
				session_break(s, "the SSH connection failed closing a channel");
				return false;
			}
			if (e->out.kind == POOL_EXITED && e->out.fail_reason == POOL_FAIL_NONE &&
			    e->cancel_kind == POOL_EXITED && e->sent && !e->control &&
			    !e->pgid_done) {
				/* It ended before its pgid line: it could not register with the
				 * watcher, and nothing of the program ran. */
				channel_set_outcome(
				    e, POOL_FAILED_TO_START, POOL_FAIL_CHANNEL,
				    "the command could not register with the session's "
				    "watcher on the host; it did not run");
				session_watcher_gone(s->lender != NULL ? s->lender : s,
				                     "a command could not register with it");
			} else if (e->out.kind == POOL_EXITED &&
			           e->out.fail_reason == POOL_FAIL_NONE &&
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
				channel_check_host_timeout(e);
			} else if (e->cancel_kind != POOL_EXITED) {
				e->out.kind = e->cancel_kind;
			}
			FSM_SET(&exec_fsm, e->state, EXEC_FREEING, e->t->host);
			continue;
		case EXEC_FREEING:
			rc = libssh2_channel_free(e->ch);
			if (rc == LIBSSH2_ERROR_EAGAIN) {
				channel_took_ownership(e);
				return true;
			}
			e->ch = NULL;
			channel_detach(e);
			channel_finish(e);
			return true;
		case EXEC_WAITING:
		case EXEC_DONE:
			return true;
		default:
			abort();
		}
	}
}

/* The transport failed: an exec on it ends transport_error, unless its command cannot have
 * been sent yet: then it retries once on a new session. */
void channel_lost(struct pool_exec *e, const char *why)
{
	e->ch = NULL; /* freed with the session */
	if (!e->sent && !e->retried && !e->control && e->cancel_kind == POOL_EXITED &&
	    !e->p->shutting_down) {
		e->retried = true;
		e->p->stats.stale_retries++;
		channel_detach(e);
		channel_reacquire(e, true);
		return;
	}
	channel_set_outcome(e, POOL_TRANSPORT_ERROR, POOL_FAIL_NONE, why);
	channel_detach(e);
	channel_finish(e);
}
