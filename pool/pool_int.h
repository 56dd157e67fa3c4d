/* pool/pool_int.h: the objects of the pool (pool, target, session, lease, acquire, exec),
 * their fields and who holds them, shared by pool.c, session.c and channel.c and by
 * nothing outside pool/. What each file does with them is in its own header. */
#ifndef EB_POOL_POOL_INT_H
#define EB_POOL_POOL_INT_H

#include <event2/util.h>
#include <libssh2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/time.h>

#include "pool/command.h"
#include "pool/fingerprint.h"
#include "pool/pool.h"

/* glibc's sys/queue.h lacks the BSD iterator that tolerates removing the current one. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
	for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT(var, field), 1);             \
	     (var) = (tvar))
#endif

/* Every channel read asks for this much: a retried read with a smaller size makes libssh2
 * 1.10 under-count the window. */
#define READ_LEN 32768 /* one SSH packet's data at most: one frame per packet */

enum sess_state {
	SESS_RESOLVING,  /* waiting for evdns */
	SESS_CONNECTING, /* non-blocking TCP connect */
	SESS_HANDSHAKE,  /* key exchange */
	SESS_AUTH,       /* public-key authentication */
	SESS_WATCHING,   /* starting the session's watcher (command_watcher) */
	SESS_READY,      /* leasable: the watcher listens */
	SESS_BROKEN,     /* transport failed: never leased again, freed at last reference */
	SESS_CLOSED,     /* disconnected on purpose (idle, eviction, shutdown) */
};

enum exec_state {
	EXEC_WAITING,  /* no session: re-acquiring after a stale session or a refused open */
	EXEC_OPENING,  /* waiting for, or in, libssh2_channel_open_ex */
	EXEC_HELD,     /* the channel is open; the exec request waits for pool_exec_go */
	EXEC_STARTING, /* libssh2_channel_process_startup("exec") */
	EXEC_RUNNING,  /* stdin, output, until the remote EOF */
	EXEC_CLOSING,  /* libssh2_channel_close: waiting for the remote close */
	EXEC_FREEING,  /* libssh2_channel_free */
	EXEC_DONE,     /* off the session; reclaimed once the consumer released it */
};

struct target;
struct session;
struct session_hooks;
struct channel_hooks;

struct pool {
	struct event_base *base;
	struct evdns_base *dns;
	struct pool_config cfg;
	char *key; /* private key file contents, NUL-terminated (libssh2 needs it) */
	size_t key_len;
	/* Keys replaced by pool_reconfigure: sessions that began with one may still be
	 * authenticating with it. Wiped and freed with the pool. */
	struct old_key *old_keys;
	struct event *kick; /* deferred work: waiters, reclaim, shutdown progress */
	TAILQ_HEAD(, target) targets;
	TAILQ_HEAD(, session) dead_sessions; /* refs reached 0: free at kick */
	TAILQ_HEAD(, pool_exec) dead_execs;
	TAILQ_HEAD(, pool_acquire) dead_acquires;
	TAILQ_HEAD(, pool_exec) reports; /* execs refused at start, reported from the loop */
	unsigned nsessions;
	struct pool_stats stats;
	bool shutting_down;
	void (*shutdown_done)(void *);
	void *shutdown_arg;
	char readbuf[READ_LEN];
};

struct old_key {
	struct old_key *next;
	char *key;
	size_t len;
};

struct target {
	struct pool *p;
	char *host, *user, *fp_text;
	int port;
	unsigned char fp[FP_SHA256_LEN];
	int learned_max;  /* channel limit learned from a refused open; 0: unknown */
	bool one_channel; /* the host refused a channel beside the watcher: see session.lender */
	TAILQ_HEAD(, session) sessions;     /* every session not yet broken or closed */
	TAILQ_HEAD(, pool_acquire) waiters; /* FIFO */
	/* A session failed to connect while others live on: waiters wait for those, and no new
	 * session is opened until retry fires (out of descriptors, socket() fails at once:
	 * opening again straight away would spin). */
	bool backoff;
	struct event *retry;
	TAILQ_ENTRY(target) link;
};

struct session {
	struct pool *p;
	struct target *t;
	const struct session_hooks *hooks; /* set by whoever opened it (the pool) */
	enum sess_state state;
	evutil_socket_t fd;
	LIBSSH2_SESSION *ssh;
	struct event *ev;    /* the socket */
	struct event *timer; /* connect timeout, then idle TTL and keepalive */
	struct evdns_getaddrinfo_request *dns_req;
	/* Holders: the target's list while listed, each lease, each exec attached. */
	int refs;
	int slots;     /* leases and execs holding a slot (control execs do not) */
	int max_slots; /* pool_max_channels_per_session, or what the server taught us */
	int peak_open; /* the most exec channels the server held open at once */
	bool listed;
	bool retiring;   /* made with a replaced key: no new leases, closed once idle */
	const char *key; /* the key it authenticates with (p->key or an old one) */
	size_t key_len;
	bool owner_session; /* a session-level call (keepalive) owns the partial send */
	bool driving;       /* inside session_drive: scheduling means another pass */
	bool again;
	uint64_t rx_bytes;         /* read from the socket by libssh2 (session_recv) */
	struct pool_exec *owner;   /* the exec whose call owns the partial send */
	struct pool_exec *starter; /* the exec opening a channel or starting its command */
	struct timeval idle_since;
	/* The watcher's exec, from the end of authentication until its channel ends (or the
	 * session does); not among execs. Commands register on fifo once watch_ready. */
	struct pool_exec *watch;
	bool watch_ready;
	char fifo[256];
	/* On a host that allows one channel per connection (sshd MaxSessions 1; target
	 * one_channel) the watcher needs a connection of its own: lender is the session whose
	 * watcher this one's commands register with and are killed through (a reference is
	 * held), and borrowers counts the sessions using this one's watcher (listed ones; it
	 * is not closed idle while any is). */
	struct session *lender;
	int borrowers;
	TAILQ_HEAD(, pool_exec) execs;
	TAILQ_ENTRY(session) link; /* target->sessions or p->dead_sessions */
	char detail[160];
};

struct pool_lease {
	struct session *s;
};

struct pool_acquire {
	struct pool *p;
	struct target *t;
	struct timeval deadline;
	struct event *timer;
	pool_acquire_cb cb;
	void *arg;
	struct pool_exec *exec; /* an exec re-acquiring (stale retry, refused open) */
	bool queued;
	TAILQ_ENTRY(pool_acquire) link;
};

struct pool_exec {
	struct pool *p;
	struct target *t;
	const struct channel_hooks *hooks; /* set by whoever made it (the pool) */
	struct session *s;                 /* NULL while EXEC_WAITING or DONE */
	enum exec_state state;
	LIBSSH2_CHANNEL *ch;
	char *cmd; /* the body (command_build) until framed for its session, then the request */
	size_t cmd_len;
	bool framed;
	char *in; /* stdin; the watcher's: lines for it, reused once written */
	size_t in_len, in_off, in_cap;
	bool eof_sent;
	bool holds_slot;
	bool control; /* the watcher or a kill command: no consumer, no slot */
	bool watcher; /* the session's watcher (s->watch) */
	bool sent;    /* the exec request may have reached the server */
	bool held;    /* pool_exec_prepare: no exec request before pool_exec_go */
	bool retried; /* used its one stale-session retry */
	bool paused;
	bool released; /* the consumer let go: no more callbacks */
	bool reported; /* finished has run (or would have) */
	bool started_cb;
	bool in_reports;
	bool stdout_eof, stderr_eof;
	bool remote_closed;
	enum pool_outcome_kind cancel_kind; /* POOL_EXITED: not cancelled */
	bool kill_sent;
	long pgid;
	bool pgid_done;
	/* The scan for the pgid line (the watcher's: its line saying where it listens); its
	 * noise, the login shell's startup output, is handed on once the command is known to
	 * run. */
	struct command_pgid_scan pg;
	bool noise_dropped; /* command_spec.broker_script: the noise is not output */
	struct timeval deadline;
	struct event *deadline_ev; /* the deadline, then the kill safety net; the watcher's beat */
	struct pool_acquire *reacquire;
	struct pool_exec_callbacks cb;
	void *arg;
	int refs; /* holders: the consumer until released; the state machine until DONE */
	struct pool_outcome out;
	TAILQ_ENTRY(pool_exec) link; /* s->execs or p->dead_execs */
};

#endif
