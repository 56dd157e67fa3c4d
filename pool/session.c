/* pool/session.c: the SSH session's state machine, from name resolution to ready, broken
 * or closed, its keepalive and idle TTL, and the socket driver that steps its channels. It
 * calls nothing above it by name: the pool and the channels hear from it through its hooks. */
#include "pool/session.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/err.h"
#include "common/fsm.h"
#include "pool/fingerprint.h"
#include "pool/hostkey.h"

/* libssh2 1.10 rules the driver is built around (see the research notes in docs/pool.md):
 *  - one channel open and one exec request may be in flight per session (s->starter);
 *  - a session has one partly-sent packet at most: the call that returned EAGAIN with
 *    BLOCK_OUTBOUND owns the session (s->owner) and is retried, with the same arguments,
 *    before any other libssh2 call on it. */

static const char *const sess_state_names[] = {
    "resolving", "connecting", "handshake", "auth", "watcher", "ready", "broken", "closed",
};

static const unsigned sess_legal[] = {
    [SESS_RESOLVING] = FSM_BIT(SESS_CONNECTING) | FSM_BIT(SESS_BROKEN) | FSM_BIT(SESS_CLOSED),
    [SESS_CONNECTING] = FSM_BIT(SESS_HANDSHAKE) | FSM_BIT(SESS_BROKEN) | FSM_BIT(SESS_CLOSED),
    [SESS_HANDSHAKE] = FSM_BIT(SESS_AUTH) | FSM_BIT(SESS_BROKEN) | FSM_BIT(SESS_CLOSED),
    [SESS_AUTH] = FSM_BIT(SESS_WATCHING) | FSM_BIT(SESS_BROKEN) | FSM_BIT(SESS_CLOSED),
    [SESS_WATCHING] = FSM_BIT(SESS_READY) | FSM_BIT(SESS_BROKEN) | FSM_BIT(SESS_CLOSED),
    [SESS_READY] = FSM_BIT(SESS_BROKEN) | FSM_BIT(SESS_CLOSED),
    [SESS_BROKEN] = 0,
    [SESS_CLOSED] = 0,
};

static const struct fsm sess_fsm = {"pool session", sess_state_names, sess_legal, SESS_CLOSED + 1};

static void session_event_cb(evutil_socket_t fd, short what, void *arg);
static void session_timer_cb(evutil_socket_t fd, short what, void *arg);
static void session_borrowers_lose_watcher(struct session *l, const char *why);

static void timer_in(struct event *ev, int seconds)
{
	struct timeval rel = {seconds, 0};

	evtimer_add(ev, &rel);
}

void session_ref(struct session *s)
{
	s->refs++;
}

void session_unref(struct session *s)
{
	if (--s->refs > 0)
		return;
	if (s->refs < 0 || s->listed)
		abort();
	s->hooks->dead(s);
}

void session_free(struct session *s)
{
	if (s->dns_req != NULL)
		evdns_getaddrinfo_cancel(s->dns_req);
	if (s->ev != NULL)
		event_free(s->ev);
	if (s->timer != NULL)
		event_free(s->timer);
	/* libssh2_session_free closes every channel still open on the session (the watcher's,
	 * at least) and, non-blocking, gives up with EAGAIN, leaking the session, whenever a
	 * send would wait. With the socket shut first, each send fails at once and the
	 * session is freed whole: it is being dropped, nothing more is owed to the server. */
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR);
	if (s->ssh != NULL)
		libssh2_session_free(s->ssh);
	if (s->fd >= 0)
		evutil_closesocket(s->fd);
	s->p->nsessions--;
	if (s->lender != NULL)
		session_unref(s->lender);
	free(s);
}

static void session_unlist(struct session *s)
{
	if (!s->listed)
		return;
	TAILQ_REMOVE(&s->t->sessions, s, link);
	s->listed = false;
	if (s->lender != NULL) {
		s->lender->borrowers--;
		session_check_idle(s->lender);
	}
	session_borrowers_lose_watcher(s, "the connection of the watcher it used closed");
	session_unref(s);
}

/* Arms the socket event for what the session waits on. Idle sessions are not watched: a
 * dead one is found when next used (and the exec retried), or by the keepalive. */
static void session_arm(struct session *s)
{
	short what = 0;

	if (s->state == SESS_BROKEN || s->state == SESS_CLOSED || s->state == SESS_RESOLVING)
		return;
	if (s->state == SESS_CONNECTING)
		what = EV_WRITE;
	else if (s->state != SESS_READY || !TAILQ_EMPTY(&s->execs) || s->owner_session ||
	         s->owner != NULL || (s->watch != NULL && s->watch->in_off < s->watch->in_len)) {
		what = EV_READ;
		if (s->ssh != NULL &&
		    (libssh2_session_block_directions(s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
			what |= EV_WRITE;
	}
	event_del(s->ev);
	if (what == 0)
		return;
	event_assign(s->ev, s->p->base, s->fd, what, session_event_cb, s);
	event_add(s->ev, NULL);
}

void session_schedule(struct session *s)
{
	if (s->state != SESS_READY)
		return; /* connecting sessions run on their socket's own events */
	if (s->driving) {
		/* session_arm at the end of the drive would drop an event_active from here. */
		s->again = true;
		return;
	}
	if (!event_pending(s->ev, EV_READ | EV_WRITE, NULL))
		event_assign(s->ev, s->p->base, s->fd, EV_READ, session_event_cb, s);
	event_active(s->ev, EV_READ, 0);
}

bool session_alive(const struct session *s)
{
	char c;
	ssize_t n;

	if (s->state != SESS_READY)
		return false;
	n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return false; /* the server closed its end (sshd's session processes died) */
	return n > 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

void session_check_idle(struct session *s)
{
	if (s->state != SESS_READY || s->slots > 0 || !TAILQ_EMPTY(&s->execs) || s->borrowers > 0)
		return;
	event_base_gettimeofday_cached(s->p->base, &s->idle_since);
	if (s->retiring) {
		timer_in(s->timer, 0); /* closed from its timer, outside the caller's work */
		return;
	}
	timer_in(s->timer, s->p->cfg.keepalive_s < s->p->cfg.idle_ttl_s ? s->p->cfg.keepalive_s
	                                                                : s->p->cfg.idle_ttl_s);
}

static void session_connect_failed(struct session *s, enum pool_fail_reason why, const char *detail)
{
	s->p->stats.handshake_failures[why]++;
	snprintf(s->detail, sizeof(s->detail), "%s", detail);
	s->hooks->connect_failed(s, why, detail);
	session_break(s, detail);
}

void session_borrow_watcher(struct session *s, struct session *lender)
{
	s->lender = lender;
	session_ref(lender); /* dropped in session_free */
	lender->borrowers++;
	snprintf(s->fifo, sizeof(s->fifo), "%s", lender->fifo);
	session_watcher_ready(s);
}

/* The lender's watcher is gone (or its session): its borrowers' commands can no longer
 * be killed through it, so they take no new ones. */
static void session_borrowers_lose_watcher(struct session *l, const char *why)
{
	struct session *b;

	if (l->borrowers == 0)
		return;
	TAILQ_FOREACH(b, &l->t->sessions, link)
	if (b->lender == l)
		session_watcher_gone(b, why);
}

void session_watcher_ready(struct session *s)
{
	s->watch_ready = true;
	if (s->state != SESS_WATCHING)
		return;
	FSM_SET(&sess_fsm, s->state, SESS_READY, s->t->host);
	evtimer_del(s->timer);
	s->hooks->changed(s);
	session_check_idle(s);
}

void session_watcher_gone(struct session *s, const char *why)
{
	char detail[160];

	s->watch_ready = false;
	session_borrowers_lose_watcher(s, "the watcher of the connection it used ended");
	if (s->state == SESS_WATCHING) {
		snprintf(detail, sizeof(detail),
		         "%s@%s port %d did not start the broker's watcher: %s", s->t->user,
		         s->t->host, s->t->port, why);
		session_connect_failed(s, POOL_FAIL_CHANNEL, detail);
	} else if (s->state == SESS_READY && !s->retiring) {
		snprintf(s->detail, sizeof(s->detail), "the watcher ended: %s", why);
		s->retiring = true;
		session_check_idle(s);
	}
}

/* Starts the TCP connect: 0, or EB_ERR_IO with errno saying why. */
static int session_connect_start(struct session *s, const struct sockaddr *sa, socklen_t len)
{
	int one = 1, idle = s->p->cfg.keepalive_s;

	s->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return EB_ERR_IO;
	setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(s->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, sa, len) != 0 && errno != EINPROGRESS)
		return EB_ERR_IO;
	FSM_SET(&sess_fsm, s->state, SESS_CONNECTING, s->t->host);
	session_arm(s);
	return 0;
}

static void session_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct session *s = arg;
	char detail[160];

	s->dns_req = NULL;
	if (result == EVUTIL_EAI_CANCEL)
		return;
	if (result != 0 || res == NULL) {
		snprintf(detail, sizeof(detail), "cannot resolve %s: %s", s->t->host,
		         evutil_gai_strerror(result));
		session_connect_failed(s, POOL_FAIL_CONNECT, detail);
	} else if (session_connect_start(s, res->ai_addr, (socklen_t)res->ai_addrlen) != 0) {
		snprintf(detail, sizeof(detail), "cannot connect to %s port %d: %s", s->t->host,
		         s->t->port, strerror(errno));
		session_connect_failed(s, POOL_FAIL_CONNECT, detail);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
}

void session_open(struct target *t, const struct session_hooks *hooks)
{
	struct pool *p = t->p;
	struct session *s = calloc(1, sizeof(*s));
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
	                                .ai_socktype = SOCK_STREAM,
	                                .ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV};
	struct evutil_addrinfo *res = NULL;
	char port[16], detail[160];

	if (s == NULL)
		return;
	s->p = p;
	s->t = t;
	s->hooks = hooks;
	s->fd = -1;
	s->state = SESS_RESOLVING;
	s->max_slots = t->learned_max ? t->learned_max : p->cfg.max_channels_per_session;
	s->key = p->key;
	s->key_len = p->key_len;
	TAILQ_INIT(&s->execs);
	s->ev = event_new(p->base, -1, 0, session_event_cb, s);
	s->timer = evtimer_new(p->base, session_timer_cb, s);
	p->nsessions++;
	s->refs = 1;
	s->listed = true;
	TAILQ_INSERT_TAIL(&t->sessions, s, link);
	if (s->ev == NULL || s->timer == NULL) {
		session_connect_failed(s, POOL_FAIL_CONNECT, "out of memory");
		return;
	}
	timer_in(s->timer, p->cfg.connect_timeout_s);
	snprintf(port, sizeof(port), "%d", t->port);
	if (evutil_getaddrinfo(t->host, port, &hints, &res) == 0) {
		/* A numeric address: nothing to resolve. */
		if (session_connect_start(s, res->ai_addr, (socklen_t)res->ai_addrlen) != 0) {
			snprintf(detail, sizeof(detail), "cannot connect to %s port %d: %s",
			         t->host, t->port, strerror(errno));
			session_connect_failed(s, POOL_FAIL_CONNECT, detail);
		}
		evutil_freeaddrinfo(res);
		return;
	}
	if (p->dns == NULL)
		p->dns = evdns_base_new(p->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (p->dns == NULL) {
		session_connect_failed(s, POOL_FAIL_CONNECT, "no DNS resolver");
		return;
	}
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	s->dns_req = evdns_getaddrinfo(p->dns, t->host, port, &hints, session_dns_cb, s);
}

void session_close(struct session *s, const char *why)
{
	if (s->state == SESS_BROKEN || s->state == SESS_CLOSED)
		return;
	if (s->ssh != NULL && s->state == SESS_READY && !s->owner_session && s->owner == NULL)
		libssh2_session_disconnect(s->ssh, why); /* a courtesy: EAGAIN is fine */
	FSM_SET(&sess_fsm, s->state, SESS_CLOSED, s->t->host);
	event_del(s->ev);
	evtimer_del(s->timer);
	if (s->watch != NULL)
		s->hooks->lost(s->watch, why); /* its channel goes with the session */
	session_unlist(s);
}

void session_break(struct session *s, const char *why)
{
	struct pool_exec *e, *next;

	if (s->state == SESS_BROKEN || s->state == SESS_CLOSED)
		return;
	FSM_SET(&sess_fsm, s->state, SESS_BROKEN, s->t->host);
	snprintf(s->detail, sizeof(s->detail), "%s", why);
	event_del(s->ev);
	evtimer_del(s->timer);
	s->owner = NULL;
	s->starter = NULL;
	session_ref(s);
	session_unlist(s);
	if (s->watch != NULL)
		s->hooks->lost(s->watch, why);
	TAILQ_FOREACH_SAFE(e, &s->execs, link, next)
	s->hooks->lost(e, why);
	session_unref(s);
	s->hooks->changed(s);
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct timeval now, idle;
	int next = 0;

	(void)fd;
	(void)what;
	if (s->state != SESS_READY) {
		char detail[160];
		snprintf(detail, sizeof(detail),
		         "SSH connection to %s port %d did not complete in %d s", s->t->host,
		         s->t->port, s->p->cfg.connect_timeout_s);
		session_connect_failed(s, POOL_FAIL_CONNECT, detail);
		return;
	}
	if (s->slots > 0 || !TAILQ_EMPTY(&s->execs) || s->borrowers > 0)
		return; /* in use: the timer is re-armed when it goes idle */
	if (s->retiring) {
		session_close(s, "the SSH key was replaced");
		return;
	}
	event_base_gettimeofday_cached(s->p->base, &now);
	timersub(&now, &s->idle_since, &idle);
	if (idle.tv_sec >= s->p->cfg.idle_ttl_s) {
		session_close(s, "idle");
		return;
	}
	if (s->owner == NULL) {
		int rc = libssh2_keepalive_send(s->ssh, &next);
		if (rc != 0 && rc != LIBSSH2_ERROR_EAGAIN) {
			session_break(s, "keepalive failed");
			return;
		}
		if (libssh2_session_block_directions(s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			s->owner_session = true; /* flushed by the next drive before anything */
	}
	next = s->p->cfg.keepalive_s;
	if (s->p->cfg.idle_ttl_s - idle.tv_sec < next)
		next = (int)(s->p->cfg.idle_ttl_s - idle.tv_sec);
	timer_in(s->timer, next > 0 ? next : 1);
	session_arm(s);
}

/* libssh2's socket reads, counted (see session_drive_ready). */
static ssize_t session_recv(libssh2_socket_t fd, void *buf, size_t len, int flags, void **abstract)
{
	struct session *s = *abstract;
	ssize_t n = recv(fd, buf, len, flags);

	if (n < 0)
		return -errno;
	s->rx_bytes += (uint64_t)n;
	return n;
}

static void session_drive_ready(struct session *s)
{
	struct pool_exec *e, *next;

	if (s->owner_session) {
		int next_s = 0;
		int rc = libssh2_keepalive_send(s->ssh, &next_s);
		if (rc != 0 && rc != LIBSSH2_ERROR_EAGAIN) {
			session_break(s, "keepalive failed");
			return;
		}
		if (libssh2_session_block_directions(s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			return;
		s->owner_session = false;
	}
	if (s->owner != NULL) {
		e = s->owner;
		s->owner = NULL;
		if (!s->hooks->step(e) || s->owner != NULL)
			return;
	}
	/* Execs added or woken during a pass (a kill channel, a resume) get another pass. So does
	 * every pass in which libssh2 read from the socket: reading one channel queues the
	 * packets of every channel, and a channel visited earlier in the pass would leave its
	 * queued data (or its EOF, or CLOSE) unread while the socket stays quiet, its window
	 * full: a stall. A pass that read nothing from the socket has drained every queue. */
	do {
		uint64_t rx = s->rx_bytes;

		s->again = false;
		if (s->watch != NULL) {
			if (!s->hooks->step(s->watch))
				return;
			if (s->owner != NULL || !session_usable(s))
				return;
		}
		TAILQ_FOREACH_SAFE(e, &s->execs, link, next)
		{
			if (!s->hooks->step(e))
				return;
			if (s->owner != NULL || !session_usable(s))
				return;
		}
		if (s->rx_bytes != rx)
			s->again = true;
	} while (s->again);
}

static void session_drive(struct session *s)
{
	char detail[200];
	int rc;

	switch (s->state) {
	case SESS_CONNECTING: {
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
			snprintf(detail, sizeof(detail), "cannot connect to %s port %d: %s",
			         s->t->host, s->t->port, strerror(soerr ? soerr : errno));
			session_connect_failed(s, POOL_FAIL_CONNECT, detail);
			return;
		}
		s->ssh = libssh2_session_init_ex(NULL, NULL, NULL, s);
		if (s->ssh != NULL)
			libssh2_session_callback_set(s->ssh, LIBSSH2_CALLBACK_RECV,
			                             (void *)session_recv);
		if (s->ssh == NULL || hostkey_set_method_pref(s->ssh) != 0) {
			session_connect_failed(s, POOL_FAIL_CONNECT,
			                       "cannot create an SSH session");
			return;
		}
		libssh2_session_set_blocking(s->ssh, 0);
		libssh2_keepalive_config(s->ssh, 0, (unsigned)s->p->cfg.keepalive_s);
		s->p->stats.handshakes_total++;
		FSM_SET(&sess_fsm, s->state, SESS_HANDSHAKE, s->t->host);
	}
		/* fall through */
	case SESS_HANDSHAKE: {
		const char *hash;
		rc = libssh2_session_handshake(s->ssh, s->fd);
		if (rc == LIBSSH2_ERROR_EAGAIN)
			break;
		if (rc != 0) {
			char *msg = NULL;
			libssh2_session_last_error(s->ssh, &msg, NULL, 0);
			snprintf(detail, sizeof(detail), "SSH handshake with %s port %d failed: %s",
			         s->t->host, s->t->port, msg ? msg : "?");
			session_connect_failed(s, POOL_FAIL_CONNECT, detail);
			return;
		}
		/* The pin is checked before anything of ours is sent: no authentication
		 * reaches a host whose key does not match. */
		hash = libssh2_hostkey_hash(s->ssh, LIBSSH2_HOSTKEY_HASH_SHA256);
		if (hash == NULL || memcmp(hash, s->t->fp, FP_SHA256_LEN) != 0) {
			char seen[FP_TEXT_LEN + 1] = "none";
			if (hash != NULL)
				fp_format((const unsigned char *)hash, seen);
			snprintf(detail, sizeof(detail),
			         "host key of %s port %d is %s, not the pinned %s", s->t->host,
			         s->t->port, seen, s->t->fp_text);
			session_connect_failed(s, POOL_FAIL_HOST_KEY, detail);
			return;
		}
		FSM_SET(&sess_fsm, s->state, SESS_AUTH, s->t->host);
	}
		/* fall through */
	case SESS_AUTH:
		rc = libssh2_userauth_publickey_frommemory(s->ssh, s->t->user, strlen(s->t->user),
		                                           NULL, 0, s->key, s->key_len, NULL);
		if (rc == LIBSSH2_ERROR_EAGAIN)
			break;
		if (rc != 0) {
			snprintf(detail, sizeof(detail), "%s@%s port %d refused the broker's key",
			         s->t->user, s->t->host, s->t->port);
			session_connect_failed(s,
			                       rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED ||
			                               rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
			                               rc == LIBSSH2_ERROR_FILE
			                           ? POOL_FAIL_AUTH
			                           : POOL_FAIL_CONNECT,
			                       detail);
			return;
		}
		FSM_SET(&sess_fsm, s->state, SESS_WATCHING, s->t->host);
		if (s->hooks->authenticated(s) != 0) {
			session_connect_failed(s, POOL_FAIL_CONNECT, "out of memory");
			return;
		}
		session_drive_ready(s);
		break;
	case SESS_WATCHING:
	case SESS_READY:
		session_drive_ready(s);
		break;
	case SESS_RESOLVING:
	case SESS_BROKEN:
	case SESS_CLOSED:
		return;
	default:
		abort();
	}
	session_arm(s);
}

static void session_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	session_ref(s); /* the driver may unlist it */
	s->driving = true;
	session_drive(s);
	s->driving = false;
	session_unref(s);
}
