/*
 * The lease table on disk, so leases survive a restart of portd.
 *
 * A text file, one lease per line, after a version line:
 *
 *   portd-state 1
 *   next NEXT_ID
 *   lease ID UID PID FLAGS TRANSPORT TTL DEADLINE TIED_PID TIED_START N T:PORT:H ...
 *
 * DEADLINE is CLOCK_MONOTONIC in ms, valid for the boot the file was written
 * in (it lives under /run). TIED_START is the tied process's start time
 * (/proc/PID/stat, field 22), so a pid reused while portd was down is not
 * taken for the old process. Each port is T (1 tcp, 2 udp), the number and
 * H = 1 if portd held a socket for it, 0 if it was handed over (number-only
 * UDP in a reserved range). Written atomically: temp file, fsync, rename.
 */
#ifndef PORTD_STATE_H
#define PORTD_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lease.h"
#include "protocol.h"

#define STATE_PORTS_MAX (2 * PORTD_LEASE_PORTS_MAX)

struct saved_port {
	uint16_t port;
	uint8_t transport; /* PORTD_TCP or PORTD_UDP */
	bool held;
};

struct saved_lease {
	uint64_t id;
	uint32_t uid;
	pid_t pid;
	uint32_t flags;
	uint8_t transport;
	uint32_t ttl_s;
	uint64_t deadline;
	pid_t tied_pid;
	uint64_t tied_start;
	uint16_t nports;
	struct saved_port ports[STATE_PORTS_MAX];
};

/* For each lease: its tied process's start time (0 if not tied). */
typedef uint64_t (*state_tied_start_fn)(const struct lease *l, void *ctx);

/* Write every lease of t to path. 0 or -errno. */
int state_save(const char *path, const struct lease_table *t, state_tied_start_fn tied_start, void *ctx);

/*
 * Call fn for every well-formed lease in path; malformed lines are counted
 * in *bad and skipped. *next_id gets the id the saved table would have given
 * next (0 if the file does not say). Returns the number of leases read,
 * -ENOENT when there is no file, -EPROTO for an unknown version, or -errno.
 */
int state_load(const char *path, void (*fn)(const struct saved_lease *sl, void *ctx), void *ctx,
	       uint64_t *next_id, unsigned *bad);

/* Start time of pid in clock ticks since boot (/proc/PID/stat field 22), 0 if unknown. */
uint64_t state_proc_start(pid_t pid);

#endif
