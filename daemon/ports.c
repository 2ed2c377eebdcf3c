/*
 * The port source.
 *
 * State is kept for the whole port space, not just the range, so a port
 * held outside the current range (a lease restored after the range changed)
 * still blocks: one bit per port and transport for "held" (8 KiB each) and
 * one bit per port for "quarantined".
 *
 * Quarantine is per port number, whatever the transport. Every release
 * appends (time, port) to a FIFO ring; since every port waits the same time,
 * the ring's head is always the next to expire. A port can be in the ring
 * more than once: a PORTD_BOTH lease releases TCP and UDP of the same number,
 * and TCP and UDP of one number may belong to two leases that end at
 * different times. qcount[port] counts its ring entries; the port leaves
 * quarantine when its last (newest) entry expires, i.e. quarantine_ms after
 * its last release. Since nothing can become held while quarantined
 * (ports_acquire and ports_mark_held refuse) and a release of a pair that is
 * not held is ignored, a port has at most one entry per transport: qcount
 * never exceeds 2 and the ring never exceeds 2 * 65536 entries.
 *
 * Range mode keeps a cursor: each search starts after the last port handed
 * out and skips blocked ports a 64-bit word at a time, so successive leases
 * spread over the range (a released port is retried last, which suits the
 * TIME_WAIT concern too) and acquire is amortised O(1) while most of the range
 * is free.
 */
#include "ports.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define NPORTS 65536u
#define NWORDS (NPORTS / 64)
#define NONE UINT32_MAX
#define RING_MIN 64

struct qent {
	uint64_t t; /* release time, monotonic ms */
	uint16_t port;
};

struct port_source {
	struct ports_config cfg;
	struct clock clk;
	struct ports_binder b;

	uint64_t held[2][NWORDS]; /* [transport - 1] */
	uint64_t qbits[NWORDS];
	uint8_t qcount[NPORTS];
	size_t nheld, nquar;

	struct qent *ring;
	size_t rhead, rlen, rcap;

	uint32_t cursor; /* range mode: next port to try, in [lo, hi] */
	uint32_t eph_cursor; /* kernel mode past explicit_after: next in [eph_lo, eph_hi] */
};

static bool bit_get(const uint64_t *map, uint32_t p)
{
	return map[p >> 6] >> (p & 63) & 1;
}

static void bit_set(uint64_t *map, uint32_t p)
{
	map[p >> 6] |= 1ull << (p & 63);
}

static void bit_clr(uint64_t *map, uint32_t p)
{
	map[p >> 6] &= ~(1ull << (p & 63));
}

static bool valid_transport(uint8_t transport)
{
	return transport == PORTD_TCP || transport == PORTD_UDP;
}

static bool is_held(const struct port_source *ps, uint8_t transport, uint16_t port)
{
	switch (transport) {
	case PORTD_TCP:
	case PORTD_UDP:
		return bit_get(ps->held[transport - 1], port);
	default: /* 0 or PORTD_BOTH: either */
		return bit_get(ps->held[0], port) || bit_get(ps->held[1], port);
	}
}

static bool is_blocked(const struct port_source *ps, uint8_t transport, uint16_t port)
{
	return bit_get(ps->qbits, port) || is_held(ps, transport, port);
}

static void mark_held(struct port_source *ps, uint8_t transport, uint16_t port)
{
	bit_set(ps->held[transport - 1], port);
	ps->nheld++;
}

struct port_source *ports_new(const struct ports_config *cfg, const struct clock *clk,
			      const struct ports_binder *b)
{
	struct port_source *ps;

	if ((cfg->lo == 0) != (cfg->hi == 0) || cfg->lo > cfg->hi || !b->bind || !b->close ||
	    (cfg->explicit_after && (!cfg->eph_lo || cfg->eph_lo > cfg->eph_hi))) {
		errno = EINVAL;
		return NULL;
	}
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->cfg = *cfg;
	ps->clk = *clk;
	ps->b = *b;
	ps->cursor = cfg->lo;
	ps->eph_cursor = cfg->eph_lo;
	return ps;
}

void ports_free(struct port_source *ps)
{
	if (!ps)
		return;
	free(ps->ring);
	free(ps);
}

/* ---- quarantine ---- */

static int ring_grow(struct port_source *ps)
{
	size_t cap = ps->rcap ? ps->rcap * 2 : RING_MIN;
	struct qent *n = malloc(cap * sizeof(*n));

	if (!n)
		return -1;
	/* Unwrap into the new buffer, oldest first. */
	for (size_t i = 0; i < ps->rlen; i++)
		n[i] = ps->ring[(ps->rhead + i) % ps->rcap];
	free(ps->ring);
	ps->ring = n;
	ps->rcap = cap;
	ps->rhead = 0;
	return 0;
}

static void quarantine(struct port_source *ps, uint16_t port)
{
	if (ps->cfg.quarantine_ms == 0)
		return;
	/*
	 * On ENOMEM the port skips quarantine: release cannot fail, and a
	 * port freed early is a smaller harm than one never freed.
	 */
	if (ps->rlen == ps->rcap && ring_grow(ps) < 0)
		return;
	ps->ring[(ps->rhead + ps->rlen) % ps->rcap] = (struct qent){
		.t = clock_now(&ps->clk),
		.port = port,
	};
	ps->rlen++;
	if (ps->qcount[port]++ == 0) {
		bit_set(ps->qbits, port);
		ps->nquar++;
	}
}

void ports_expire(struct port_source *ps)
{
	uint64_t now;

	if (ps->rlen == 0)
		return;
	now = clock_now(&ps->clk);
	while (ps->rlen) {
		const struct qent *e = &ps->ring[ps->rhead];

		/* Subtraction, not t + q, so nothing overflows. */
		if (now < e->t || now - e->t < ps->cfg.quarantine_ms)
			break;
		if (--ps->qcount[e->port] == 0) {
			bit_clr(ps->qbits, e->port);
			ps->nquar--;
		}
		ps->rhead = (ps->rhead + 1) % ps->rcap;
		ps->rlen--;
	}
}

/* ---- acquiring ---- */

/* Binds exactly port; on success marks it held. */
static int bind_exact(struct port_source *ps, uint8_t transport, uint16_t port, int *fd,
		      uint16_t *got_port)
{
	uint16_t got = 0;
	int nfd = -1;
	int r = ps->b.bind(ps->b.ctx, transport, port, &nfd, &got);

	if (r < 0)
		return r;
	if (got != port) {
		/* The binder broke its contract; do not lease a port we did not ask for. */
		ps->b.close(ps->b.ctx, nfd);
		return -EIO;
	}
	mark_held(ps, transport, port);
	*fd = nfd;
	*got_port = port;
	return 0;
}

static bool filtered(const struct ports_filter *f, uint16_t port)
{
	return f && f->skip(f->ctx, port);
}

static int acquire_kernel(struct port_source *ps, uint8_t transport, const struct ports_filter *f,
			  int *fd, uint16_t *port)
{
	int rejected[PORTS_KERNEL_TRIES];
	size_t nrej = 0;
	int r = -EADDRNOTAVAIL;

	/*
	 * Rejected sockets stay bound until the end, so the kernel cannot pick
	 * the same blocked port again on the next try.
	 */
	while (nrej < PORTS_KERNEL_TRIES) {
		uint16_t got = 0;
		int nfd = -1;

		r = ps->b.bind(ps->b.ctx, transport, 0, &nfd, &got);
		if (r < 0)
			break;
		if (got == 0) {
			ps->b.close(ps->b.ctx, nfd);
			r = -EIO;
			break;
		}
		if (is_blocked(ps, transport, got) || filtered(f, got)) {
			rejected[nrej++] = nfd;
			r = -EADDRNOTAVAIL;
			continue;
		}
		mark_held(ps, transport, got);
		*fd = nfd;
		*port = got;
		r = 0;
		break;
	}
	for (size_t i = 0; i < nrej; i++)
		ps->b.close(ps->b.ctx, rejected[i]);
	return r;
}

/* First port in [from, to] that is neither held for transport nor quarantined, or NONE. */
static uint32_t next_unblocked(const struct port_source *ps, uint8_t transport, uint32_t from,
			       uint32_t to)
{
	const uint64_t *held = ps->held[transport - 1];

	for (uint32_t p = from; p <= to;) {
		uint32_t w = p >> 6;
		uint64_t busy = held[w] | ps->qbits[w] | ((1ull << (p & 63)) - 1);

		if (~busy) {
			uint32_t q = (w << 6) + (uint32_t)__builtin_ctzll(~busy);

			return q <= to ? q : NONE;
		}
		p = (w + 1) << 6;
	}
	return NONE;
}

/* Walk lo..hi from *cursor for a free port and bind it explicitly. */
static int acquire_range(struct port_source *ps, uint8_t transport, const struct ports_filter *f,
			 uint32_t lo, uint32_t hi, uint32_t *cursor, int *fd, uint16_t *port)
{
	uint32_t start = *cursor;
	/* Two segments: [cursor, hi], then wrap to [lo, cursor - 1]. */
	uint32_t seg[2][2] = { { start, hi }, { lo, start - 1 } };

	for (int s = 0; s < 2; s++) {
		uint32_t p = seg[s][0];

		if (s == 1 && start == lo)
			break;
		while ((p = next_unblocked(ps, transport, p, seg[s][1])) != NONE) {
			int r;

			if (filtered(f, (uint16_t)p)) {
				p++;
				continue;
			}
			r = bind_exact(ps, transport, (uint16_t)p, fd, port);

			if (r == 0) {
				*cursor = p == hi ? lo : p + 1;
				return 0;
			}
			if (r != -EADDRINUSE) {
				*cursor = p; /* try it first next time */
				return r;
			}
			p++;
		}
	}
	return -EADDRNOTAVAIL;
}

int ports_acquire_filtered(struct port_source *ps, uint8_t transport, uint16_t want,
			   const struct ports_filter *f, int *fd, uint16_t *port)
{
	bool range = ps->cfg.lo != 0;

	*fd = -1;
	if (!valid_transport(transport))
		return -EINVAL;
	ports_expire(ps);
	if (want) {
		if (range && (want < ps->cfg.lo || want > ps->cfg.hi))
			return -EINVAL;
		if (is_blocked(ps, transport, want) || filtered(f, want))
			return -EADDRINUSE;
		return bind_exact(ps, transport, want, fd, port);
	}
	if (range)
		return acquire_range(ps, transport, f, ps->cfg.lo, ps->cfg.hi, &ps->cursor, fd, port);
	if (ps->cfg.explicit_after && ps->nheld >= ps->cfg.explicit_after)
		return acquire_range(ps, transport, f, ps->cfg.eph_lo, ps->cfg.eph_hi, &ps->eph_cursor,
				     fd, port);
	return acquire_kernel(ps, transport, f, fd, port);
}

int ports_acquire(struct port_source *ps, uint8_t transport, uint16_t want, int *fd, uint16_t *port)
{
	return ports_acquire_filtered(ps, transport, want, NULL, fd, port);
}

int ports_mark_held(struct port_source *ps, uint8_t transport, uint16_t port)
{
	if (!valid_transport(transport) || port == 0)
		return -EINVAL;
	ports_expire(ps);
	if (is_blocked(ps, transport, port))
		return -EADDRINUSE;
	mark_held(ps, transport, port);
	return 0;
}

void ports_release(struct port_source *ps, uint8_t transport, uint16_t port)
{
	if (!valid_transport(transport) || !bit_get(ps->held[transport - 1], port))
		return;
	bit_clr(ps->held[transport - 1], port);
	ps->nheld--;
	ports_expire(ps); /* keeps the ring short when nobody else calls it */
	quarantine(ps, port);
}

void ports_cancel(struct port_source *ps, uint8_t transport, uint16_t port)
{
	if (!valid_transport(transport) || !bit_get(ps->held[transport - 1], port))
		return;
	bit_clr(ps->held[transport - 1], port);
	ps->nheld--;
}

bool ports_blocked(struct port_source *ps, uint8_t transport, uint16_t port)
{
	ports_expire(ps);
	return is_blocked(ps, transport, port);
}

size_t ports_held(const struct port_source *ps)
{
	return ps->nheld;
}

size_t ports_quarantined(struct port_source *ps)
{
	ports_expire(ps);
	return ps->nquar;
}

const struct ports_config *ports_config(const struct port_source *ps)
{
	return &ps->cfg;
}
