/*
 * The port race, shared by tests/test-race.c (asserts) and bench/race.c (prints rates).
 *
 * Worker processes repeatedly obtain a port, serve on it and connect to it,
 * either through portd or the naive way (bind port 0, read the number, close,
 * bind it again), while a hammer (two more processes) takes loopback ports as
 * fast as it can: bind(0) into a rotating pool, and connect() to loopback
 * listeners whose ephemeral source ports it keeps for a while. No cmocka here:
 * the benchmark links this too.
 *
 * Shared memory records who holds what, so collisions are seen as they happen:
 *   leased[port]  set by a portd worker once its lease is granted, cleared
 *                 before release: a set that finds it set is a double lease;
 *   claimed[port] the same for the naive workers, from reading the port;
 *   other[port]   sockets the hammer has bound on port (its pool, its
 *                 listeners, its connections' source ports).
 * A worker sets its flag and then reads other[]; the hammer bumps other[] and
 * then reads the flags (all seq_cst), so whenever a worker's hold and the
 * hammer's overlap, at least one side sees it.
 */
#ifndef PORTD_RACE_COMMON_H
#define PORTD_RACE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RACE_MAX_WORKERS 256

enum race_mode {
	RACE_PORTD_FD,        /* fd leases: listen() on the received socket */
	RACE_PORTD_NUMBER,    /* number leases: bind a new socket to the port, SO_REUSEADDR, listen */
	RACE_PORTD_ALTERNATE, /* each worker alternates the two */
	RACE_NAIVE,           /* bind(0), read the port, close, bind it again */
};

/* What one attempt came to: the first problem seen, or RACE_OK. */
enum race_outcome {
	RACE_OK,
	RACE_DOUBLE,    /* the port was already in another worker's live lease (or naive claim) */
	RACE_SHARED,    /* the hammer held a socket on the port while we had it */
	RACE_BIND,      /* our server's bind() failed (EADDRINUSE): the port was taken */
	RACE_LISTEN,    /* listen() failed (EADDRINUSE): someone else listens there */
	RACE_CONNECT,   /* connect() to 127.0.0.1:port refused or timed out */
	RACE_MISROUTED, /* the connection did not arrive on our listener */
	RACE_XFER,      /* the connection came, but the byte exchange failed */
	RACE_NOUTCOMES
};

struct race_counts {
	uint64_t attempts;
	uint64_t outcome[RACE_NOUTCOMES];
	uint64_t errors;    /* no port obtained (lease refused, bind(0) failed) or release failed */
	int last_error;     /* -errno or -PORTD_E_* of the last error */
	uint16_t port_min, port_max; /* ports obtained; 0, 0 if none */
};

struct race_hammer_counts {
	uint64_t binds, bind_errors;       /* bind(port 0) into the pool */
	uint64_t connects, connect_errors; /* connect() to the loopback listeners */
	uint64_t hits_leased;  /* the hammer got a port that was in a worker's live portd lease */
	uint64_t hits_claimed; /* ... that a naive worker had claimed */
};

struct race_config {
	unsigned workers;        /* 1..RACE_MAX_WORKERS */
	unsigned duration_ms;    /* of each phase */
	uint64_t max_iterations; /* per worker and phase */
	unsigned hammer_pool;    /* sockets the binder keeps bound */
	unsigned hammer_conns;   /* connections the connector keeps open */
};
#define RACE_CONFIG_INIT \
	{ .workers = 16, .duration_ms = 3000, .max_iterations = 1000000, .hammer_pool = 512, \
	  .hammer_conns = 256 }

struct race_result {
	unsigned workers;
	uint64_t elapsed_ms;
	struct race_counts fd, number, naive; /* sums over the workers */
	/* Fewest successful attempts of one worker, per kind. */
	uint64_t min_ok_fd, min_ok_number, min_ok_naive;
	unsigned failed_workers; /* did not start, did not exit 0, or had to be killed */
	struct race_hammer_counts hammer; /* during this phase */
	bool hammer_running; /* both hammer processes were still alive at the end */
};

struct race;

/* Shared memory and configuration; NULL with errno set on failure. */
struct race *race_new(const struct race_config *c);
/* Kill and reap every process this race started (by pid). Accepts NULL. */
void race_free(struct race *r);

/* Fork the hammer and wait (at most 10 s) until it runs. 0 or -errno. */
int race_hammer_start(struct race *r);
/* Its counters so far. */
void race_hammer_counts(const struct race *r, struct race_hammer_counts *out);
/* SIGKILL and reap the hammer. */
void race_hammer_stop(struct race *r);

/*
 * One phase: cfg.workers processes race for cfg.duration_ms (or
 * cfg.max_iterations each), all starting together, against the portd at sock
 * (unused for RACE_NAIVE). Every worker is reaped before it returns; one that
 * outlives the deadline by 15 s is killed. 0 or -errno (could not set up).
 */
int race_run(struct race *r, enum race_mode mode, const char *sock, struct race_result *out);

/* Collisions in c: attempts whose outcome was not RACE_OK. */
uint64_t race_collisions(const struct race_counts *c);
const char *race_outcome_name(enum race_outcome o);

/* net.ipv4.ip_local_port_range of this process's network namespace. 0 or -errno. */
int race_port_range_get(uint16_t *lo, uint16_t *hi);
int race_port_range_set(uint16_t lo, uint16_t hi);
/* "LO-HI" with 1 <= LO <= HI <= 65535. 0 or -EINVAL. */
int race_parse_range(const char *s, uint16_t *lo, uint16_t *hi);
/* A whole decimal number in [min, max]: 0, or -1. */
int race_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
/* $PORTD_BIN, else ../daemon/portd beside this executable (a meson build directory). */
const char *race_default_portd(void);

/* For the benchmark, which cannot use the cmocka harness in testutil.c. */


struct race_daemon {
	pid_t pid;
	char dir[64];
	char sock[128];
};
/*
 * Start bin --socket DIR/portd.sock --ready-fd N args... (NULL-terminated) in
 * a new temporary directory and wait (at most 10 s) for READY=1. 0 or -errno.
 */
int race_daemon_start(struct race_daemon *d, const char *bin, const char *const *args);
/* SIGTERM, wait at most 10 s (then SIGKILL), remove the directory. 0 if it exited 0. */
int race_daemon_stop(struct race_daemon *d);

#endif
