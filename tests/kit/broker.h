/* tests/kit/broker.h: `exec-broker serve` for suites and benchmarks: the binary under test
 * with its config and log, started until it listens, stopped as systemd stops it (SIGTERM,
 * exit 0) or killed; and the figures of its /metrics text. */
#ifndef EB_TESTS_KIT_BROKER_H
#define EB_TESTS_KIT_BROKER_H

#include <sys/types.h>

struct kit_broker {
	pid_t pid;  /* 0 when not running */
	int port;   /* chosen by kit_broker_start unless set before */
	int status; /* wait status once it ended */
	char conf[160], log[160];
	char instance[64];
	unsigned long nofile; /* its RLIMIT_NOFILE if set before starting; 0: ours */
};

/* The binary under test: $EB_BIN (the Makefile sets it), else exec-broker in the directory
 * above this program's (build/tests/check_serve -> build/exec-broker). */
const char *kit_broker_bin(void);

/* Writes the config (database, listen on port, ssh_key = th.client_key, instance_name,
 * then extra_conf verbatim, which may be NULL) to <basedir>/broker-<instance>.conf, starts
 * the broker with stderr and stdout appended to b->log and no EXEC_BROKER_* variable of
 * ours, and waits for "msg=listening" in what it logs. A port already in b->port is kept
 * (a restart on the same address); otherwise a free one is chosen. The broker is killed
 * when the process that started it dies. 0, or -1 with the log's tail on stderr. */
int kit_broker_start(struct kit_broker *b, const char *db, const char *instance,
                     const char *extra_conf);
/* Waits up to ms for the broker to exit: 0 and b->status, or -1 if it still runs. */
int kit_broker_wait(struct kit_broker *b, int ms);
/* SIGTERM, and waits (KIT_WAIT_MS) for an exit with status 0 (which, in an ASan build, also
 * means LeakSanitizer found nothing): 0, or -1 with the log's tail on stderr (and SIGKILL
 * if it still ran). -1 also if it was not running. */
int kit_broker_stop(struct kit_broker *b);
/* SIGKILL and wait. Nothing if it does not run. */
void kit_broker_kill(struct kit_broker *b);

/* The value of a metric line "name{labels} value" in a /metrics text, -1 if absent. */
double kit_metric(const char *text, const char *series);

#endif
