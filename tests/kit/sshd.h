/* tests/kit/sshd.h: the sshd fixture: OpenSSH `sshd -f` servers on loopback ports, each
 * with its own directory, host key and config, letting in the run's client key for the
 * run's login account; stopped, restarted on their port, or cut from their sessions. */
#ifndef EB_TESTS_KIT_SSHD_H
#define EB_TESTS_KIT_SSHD_H

struct th_sshd_opts {
	int max_sessions; /* MaxSessions; 0 means 10 */
	/* Appended verbatim to the generated config (read by th_sshd_start only). sshd keeps the
	 * first value it sees of a keyword, so a keyword set here before any Match line replaces
	 * the harness default instead of being ignored. */
	const char *extra_config;
};

struct th_sshd {
	char dir[128], config[160], host_key[160], host_key_fp[64], log[160], pidfile[160];
	int port;
	struct th_sshd_opts opts;
	int running; /* as this process last saw it; the pid file is the truth */
	int pid;     /* listener pid this process last started */
};

/* Starts a new sshd with its own dir sshd-N, host key, config and a free loopback port;
 * opts may be NULL (and may point into *s). Waits until it accepts TCP connections (10 s).
 * Always a new server: to bring back a stopped one, use th_sshd_restart(). */
int th_sshd_start(struct th_sshd *s, const struct th_sshd_opts *opts);
/* Stops the listener and every connection it accepted, like a server going away; works from
 * any process of the run. 0 if it was not running. */
int th_sshd_stop(struct th_sshd *s);
/* th_sshd_stop() then start again on the same port with the same config and keys; also
 * how a stopped sshd comes back. The struct in Check's parent stays valid: port, keys and
 * paths do not change. */
int th_sshd_restart(struct th_sshd *s);
/* Kills the processes serving established connections (the clients see the TCP connection
 * drop) and leaves the listener running. */
int th_sshd_cut_sessions(struct th_sshd *s);
/* The listener's pid from its pid file, or 0. */
int th_sshd_pid(const struct th_sshd *s);

/* For th_setup(): an ed25519 key pair at path (and path.pub), as the client key. */
int th_sshd_keygen(const char *path);

#endif
