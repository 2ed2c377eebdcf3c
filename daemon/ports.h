/*
 * Which port to hand out next.
 *
 * Two sources: the kernel's own choice (bind to port 0), or a range LO-HI that
 * portd manages itself with a bitmap and a rotating cursor, binding each
 * candidate explicitly and skipping any that the kernel says are busy (at
 * scale this avoids the kernel's slow bind(0) search, DESIGN.md).
 *
 * Either way, a port that a live lease holds or that is in reuse quarantine is
 * never handed out. Quarantine is a FIFO (every port waits the same time, so
 * release order is expiry order) plus a bitmap for O(1) lookup. In kernel mode
 * a bind(0) that lands on a blocked port is kept open while the kernel is asked
 * again (so it cannot return the same port), then closed.
 *
 * The actual socket work is injected (struct ports_binder) so the logic is
 * tested without the network; the daemon passes hold_bind() from hold.h.
 */
#ifndef PORTD_PORTS_H
#define PORTD_PORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

struct ports_binder {
	/*
	 * Bind a new socket for transport (PORTD_TCP or PORTD_UDP) to port
	 * (0 = let the kernel choose). Returns 0 with *fd and *got set, or
	 * -errno (-EADDRINUSE when the port is taken).
	 */
	int (*bind)(void *ctx, uint8_t transport, uint16_t port, int *fd, uint16_t *got);
	void (*close)(void *ctx, int fd);
	void *ctx;
};

struct ports_config {
	uint16_t lo, hi;         /* 0, 0: the kernel chooses; else 1 <= lo <= hi */
	uint32_t quarantine_ms;  /* 0: no quarantine */
	/*
	 * Kernel mode only: the kernel's bind(0) search gets slow with
	 * thousands of ports held (DESIGN.md: 0.3-0.6 ms per call past about
	 * 10,000). Once explicit_after ports are held, portd picks from the
	 * ephemeral range eph_lo..eph_hi (net.ipv4.ip_local_port_range) itself
	 * and binds explicitly, as in range mode. 0 = never.
	 */
	uint32_t explicit_after;
	uint16_t eph_lo, eph_hi;
};

/* Kernel mode: bind(0) calls per ports_acquire() before giving up. */
#define PORTS_KERNEL_TRIES 64

struct port_source;

/* NULL with errno EINVAL (bad range, missing binder function) or ENOMEM. */
struct port_source *ports_new(const struct ports_config *cfg, const struct clock *clk,
			      const struct ports_binder *b);
void ports_free(struct port_source *ps); /* accepts NULL; closes nothing */

/*
 * Bind one socket for transport (PORTD_TCP or PORTD_UDP). want = 0: any
 * free port; else exactly that port. On success returns 0, sets *fd and *port,
 * and marks the port held for that transport. Errors:
 *   -EADDRNOTAVAIL  no free port (range exhausted, or the kernel keeps
 *                   returning blocked ports after a bounded number of tries)
 *   -EADDRINUSE     want is held, quarantined, or the kernel says busy
 *   -EINVAL         want outside the managed range
 *   other -errno    from the binder (e.g. -EMFILE)
 */
int ports_acquire(struct port_source *ps, uint8_t transport, uint16_t want, int *fd, uint16_t *port);

/* Ports a caller does not want (exclude ranges, ports already tried): skip(ctx, port) true = skip. */
struct ports_filter {
	bool (*skip)(void *ctx, uint16_t port);
	void *ctx;
};

/*
 * ports_acquire() that also passes over every port the filter skips (f may
 * be NULL). In kernel mode a skipped port counts as one of the bounded tries;
 * in range mode it is simply stepped over. A want the filter skips is
 * -EADDRINUSE.
 */
int ports_acquire_filtered(struct port_source *ps, uint8_t transport, uint16_t want,
			   const struct ports_filter *f, int *fd, uint16_t *port);

/*
 * Undo an acquisition that never reached a client (a lease that could not be
 * completed): the port is no longer held and does NOT enter quarantine. The
 * caller closes the fd. A pair that is not held is a no-op.
 */
void ports_cancel(struct port_source *ps, uint8_t transport, uint16_t port);

/*
 * Marks a port held for transport without binding: for leases restored with
 * sockets the daemon already has (after a restart), so that nothing hands the
 * port out again. Outside the range is fine. 0, -EINVAL (bad transport or
 * port 0), or -EADDRINUSE (already held for transport, or quarantined).
 */
int ports_mark_held(struct port_source *ps, uint8_t transport, uint16_t port);

/*
 * The port is no longer held for transport; it enters quarantine (the caller
 * closes the fd). Quarantine is per number: it lasts quarantine_ms from the
 * last release of either transport. Releasing a pair that is not held is a
 * no-op.
 */
void ports_release(struct port_source *ps, uint8_t transport, uint16_t port);

/* Is port held (for transport; 0 or PORTD_BOTH = either) or quarantined? */
bool ports_blocked(struct port_source *ps, uint8_t transport, uint16_t port);

/* Drops quarantine entries whose time is up; called before acquiring and for status. */
void ports_expire(struct port_source *ps);

size_t ports_held(const struct port_source *ps);        /* held (port, transport) pairs */
size_t ports_quarantined(struct port_source *ps);       /* distinct port numbers */
const struct ports_config *ports_config(const struct port_source *ps);

#endif
