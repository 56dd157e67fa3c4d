/* pool/pool.h: the SSH session pool. Execs to the same target (host, port, user, pinned
 * host key) share a few authenticated libssh2 sessions; everything runs on the caller's
 * libevent event_base and nothing blocks it. A caller leases a slot on a session
 * (asynchronously, with a deadline), starts one exec on the lease, and is told through
 * callbacks when the command started, each chunk of output, and the outcome.
 *
 * Ownership: the pool owns sessions, leases and execs. A lease is the caller's until it
 * is given to pool_exec_start (which takes it over) or to pool_lease_release. An exec is
 * the caller's to release with pool_exec_release once its finished callback has run (or
 * to cancel and then release at any time). Callbacks may call any pool function,
 * including release and cancel on the exec they are about; nothing is freed inside a
 * callback: objects are reclaimed after the loop turn. */
#ifndef EB_POOL_POOL_H
#define EB_POOL_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "pool/command.h"

struct event_base;
struct pool;
struct pool_lease;
struct pool_exec;
struct pool_acquire;

struct pool_config {
	const char *ssh_key_path;     /* private key (OpenSSH or PEM; ed25519/ECDSA) */
	int max_channels_per_session; /* 8 */
	int max_sessions_per_host;    /* 4 */
	int max_sessions_total;       /* 1024 */
	int idle_ttl_s;               /* 300 */
	int keepalive_s;              /* 30 */
	int connect_timeout_s;        /* 10 */
	int channel_buffer_bytes;     /* 262144: the SSH window of each exec channel */
	int kill_grace_s;             /* 5 */
};

struct pool_target {
	const char *host; /* name or address; names are resolved asynchronously */
	int port;
	const char *user;
	const char *host_key_fp; /* "SHA256:..." pinned fingerprint */
};

/* Why an exec did not start, or how it ended. */
enum pool_outcome_kind {
	POOL_EXITED,          /* exit_code is valid */
	POOL_SIGNALED,        /* signal is valid (e.g. "TERM") */
	POOL_TIMEOUT,         /* the deadline passed; the command was killed */
	POOL_CANCELLED,       /* pool_exec_cancel(); the command was killed */
	POOL_TRANSPORT_ERROR, /* the session broke, or the channel closed with no status */
	POOL_FAILED_TO_START, /* fail_reason says why; the command never ran */
	POOL_SHUTDOWN,        /* the pool shut down; the command was killed */
};

enum pool_fail_reason {
	POOL_FAIL_NONE,
	POOL_FAIL_CONNECT,   /* TCP connect, name resolution, or SSH handshake failed */
	POOL_FAIL_HOST_KEY,  /* the server's key does not match the pin */
	POOL_FAIL_AUTH,      /* the server refused the broker's key */
	POOL_FAIL_EXHAUSTED, /* no slot became free before the deadline */
	POOL_FAIL_CHANNEL,   /* the server refused a channel or the exec request */
	POOL_FAIL_SHUTDOWN,  /* the pool is shutting down */
	POOL_FAIL_INVALID,   /* the command spec was refused (NUL byte, too long...) */
};

struct pool_outcome {
	enum pool_outcome_kind kind;
	enum pool_fail_reason fail_reason;
	int exit_code;   /* POOL_EXITED */
	char signal[32]; /* POOL_SIGNALED: name without "SIG" */
	/* Every byte the command wrote: those handed to the data callback, and after a kill
	 * also those drained and dropped while the channel closed. */
	uint64_t stdout_bytes, stderr_bytes;
	char detail[160]; /* a line for logs: what went wrong, never output */
};

const char *pool_outcome_name(enum pool_outcome_kind k);    /* "exited", "timeout", ... */
const char *pool_fail_reason_name(enum pool_fail_reason r); /* "connect_failed", ... */

enum pool_stream { POOL_STDOUT = 1, POOL_STDERR = 2 };

struct pool_exec_callbacks {
	/* The exec request was accepted: the command is running. */
	void (*started)(struct pool_exec *e, void *arg);
	/* A chunk of output, as it arrived; bytes are only valid during the call. */
	void (*data)(struct pool_exec *e, enum pool_stream s, const char *buf, size_t len,
	             void *arg);
	/* Exactly once, last. */
	void (*finished)(struct pool_exec *e, const struct pool_outcome *o, void *arg);
};

/* An absolute deadline ms milliseconds from now on CLOCK_MONOTONIC, the clock every
 * deadline of this API uses. */
void pool_deadline_after_ms(long ms, struct timeval *out);

/* Reads the key file (here, not on the loop). 0, or a negative EB_ERR_* with err set. */
int pool_new(struct event_base *base, const struct pool_config *cfg, struct pool **out, char *err,
             size_t errlen);
/* Cancels every exec (killed remotely, outcome POOL_SHUTDOWN), fails waiting acquires,
 * disconnects every session; done(arg) runs once all of it is over. */
void pool_shutdown(struct pool *p, void (*done)(void *arg), void *arg);
/* Takes new settings for what comes next (limits, timeouts, the key; the key file is read
 * here). Running execs and busy sessions are not disturbed; when the key changed, every
 * existing session takes no new lease and closes once idle, and new sessions use the new
 * key. 1 if the key changed, 0 if not, or a negative EB_ERR_* with err set and nothing
 * changed. */
int pool_reconfigure(struct pool *p, const struct pool_config *cfg, char *err, size_t errlen);
/* After shutdown completed (or with nothing ever started). NULL is fine. */
void pool_free(struct pool *p);

/* Asks for a slot on a session to t (copied). cb runs exactly once, later, never inside
 * this call: with a lease, or with NULL and the reason (POOL_FAIL_EXHAUSTED once
 * deadline passes; see pool_deadline_after_ms). Returns a
 * handle to cancel the request before cb ran (cb then never runs), or NULL if out of
 * memory. */
typedef void (*pool_acquire_cb)(struct pool_lease *lease, enum pool_fail_reason why,
                                const char *detail, void *arg);
struct pool_acquire *pool_lease_acquire(struct pool *p, const struct pool_target *t,
                                        const struct timeval *deadline, pool_acquire_cb cb,
                                        void *arg);
void pool_acquire_cancel(struct pool_acquire *a);
void pool_lease_release(struct pool_lease *l);

/* Starts spec on the lease (taken over, even on failure). The command registers with the
 * session's watcher, which ends it at the deadline (then KILL after kill_grace_s) even if
 * the broker is gone. A command too long for an exec request goes ahead of stdin_data. stdin_data
 * (copied; may be NULL) is written, then EOF. The deadline (absolute, as above) kills the command:
 * outcome POOL_TIMEOUT. If the session turns out dead before the exec request is sent, the pool
 * reconnects and tries once more (stats.stale_retries); a command never runs twice. Idle
 * sessions are not watched (only kept alive), so a session that died while idle is found
 * this way. Returns the exec, or NULL
 * (out of memory). A bad spec is reported through finished(POOL_FAILED_TO_START,
 * POOL_FAIL_INVALID), as every other failure is. */
struct pool_exec *pool_exec_start(struct pool_lease *l, const struct command_spec *spec,
                                  const char *stdin_data, size_t stdin_len,
                                  const struct timeval *deadline,
                                  const struct pool_exec_callbacks *cb, void *arg);
/* pool_exec_start, but only the channel is opened: the exec request waits for
 * pool_exec_go, so nothing runs on the host before it (a caller that must commit
 * something first opens the channel meanwhile). Until then the exec may still move to
 * another session (the first one broke) and may end, cancelled, timed out or shut down,
 * with nothing run; pool_exec_release gives it up without a callback. */
struct pool_exec *pool_exec_prepare(struct pool_lease *l, const struct command_spec *spec,
                                    const char *stdin_data, size_t stdin_len,
                                    const struct timeval *deadline,
                                    const struct pool_exec_callbacks *cb, void *arg);
/* Lets a prepared exec send its exec request; a no-op for any other. */
void pool_exec_go(struct pool_exec *e);
/* Stop / resume reading this exec's output (backpressure); others on the session flow. */
void pool_exec_pause(struct pool_exec *e);
void pool_exec_resume(struct pool_exec *e);
/* Kills the command (TERM, KILL after kill_grace_s) and frees its slot; finished runs with
 * POOL_CANCELLED (unless it had already run). */
void pool_exec_cancel(struct pool_exec *e);
/* The caller is done with e: no callback runs after this. If it still runs, it is
 * cancelled. */
void pool_exec_release(struct pool_exec *e);
/* Output bytes received from the server but not yet handed to the data callback: held by
 * libssh2 for this channel, bounded by channel_buffer_bytes plus one read. */
size_t pool_exec_buffered(const struct pool_exec *e);

struct pool_stats {
	unsigned sessions_connecting, sessions_ready, sessions_idle, sessions_broken,
	    sessions_closing;
	uint64_t handshakes_total;
	uint64_t handshake_failures[8]; /* indexed by enum pool_fail_reason */
	unsigned channels_in_use;
	unsigned acquires_waiting;
	uint64_t execs_by_outcome[7]; /* indexed by enum pool_outcome_kind */
	uint64_t stale_retries;
	uint64_t channel_refusals; /* channel opens a healthy session refused (MaxSessions) */
	/* The smallest channel limit a host taught the pool by refusing (0: none did). A
	 * refusal right after a close is not a lesson: sshd frees a closed channel a loop
	 * later, so the open that follows at once can be refused; it is simply retried. */
	unsigned channel_limit_learned;
};
void pool_get_stats(const struct pool *p, struct pool_stats *st);

#endif
