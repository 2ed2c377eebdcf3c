/*
 * The soak: the real portd under a bounded run of mixed operations from many
 * clients of several users, some of them killed at random, with the daemon's
 * promises checked throughout and its resources checked at the end.
 *
 * Root only (77 otherwise): the daemon runs in a private network namespace
 * with a range of NRANGE ports reserved from automatic selection (so
 * number-only UDP leases are allowed), reuse quarantine of one second and a
 * per-uid lease limit that the greedy uid's workers (more leases each) reach
 * all the time; with the quarantine the range runs out too. NWORKERS forked
 * workers, a quarter each of root, nobody, GREEDY_UID and OTHER_UID, loop over
 * random operations: leases (fd or number, TCP/UDP/both, 1-4 ports, any or a
 * given port, consecutive, exclude ranges, tied or not, TTLs of 1-3 s that
 * run out and of 15 s that don't), renewals, releases by id and by port,
 * lists, status, grants over the portserver socket (portpicker's protocol:
 * own pid in, port out) and reconnections. Each lease gets a plan when
 * granted: released (by id or by port) after a while, or left to expire,
 * maybe renewed first. Each worker checks every answer against what it
 * holds. The parent kills a random worker every few hundred ms (SIGKILL) and
 * starts a new one; workers also end on their own after 1-20 s.
 *
 * Every BARRIER_MS the parent pauses all workers between operations (each
 * writes what it holds to its pipe, then stops itself) and compares that
 * with the daemon's view from LIST as root: no (port, transport) in two
 * leases; every lease a worker holds is listed unless its deadline may have
 * passed; every listed lease of a live worker is one it holds, with its
 * ports, transport and flags; every other listed lease is a dead worker's;
 * per-uid and total counts within the limits; STATUS counts what LIST lists.
 *
 * Resources: after a warm-up that drives every structure of the daemon that
 * grows once and never shrinks to a peak no later load can pass (below), the
 * daemon's fds and heap are measured with no worker, lease, connection or
 * quarantined port left; after the soak, brought to the same state, the fds
 * must be exactly the same and the heap within HEAP_SLACK bytes.
 *
 * The warm-up, and the peak each step reaches:
 *  A. 2 * NWORKERS + 8 processes hold as many tied leases at once as can
 *     live (one port each; the range, smaller than --max-leases, caps them):
 *     the lease table's id index and deadline heap (sized by the lease count)
 *     and the process watch table (sized by the live
 *     processes with tied leases, at most NWORKERS plus the few just killed);
 *  B. every port the four uids can hold at once (the per-uid limit counts
 *     ports; the range is smaller still), on TCP and UDP, as fds: the port index (sized by held (port,
 *     transport) pairs) and, when all are released at once, the quarantine
 *     ring (at most one entry per pair);
 *  C. COVER_CONNS connections at once, twice with the fd numbers shifted by
 *     one: libevent's per-fd slots (allocated for each fd number ever given an
 *     event, never freed) for every fd number up to 2 * COVER_CONNS, far above
 *     any the soak can reach (checked at every barrier), and its change list
 *     and epoll's event array (sized by the events of one loop turn);
 *  D. the soak itself for WARMUP_S seconds: what remains, such as libevent's
 *     timer heap (see HEAP_SLACK).
 * glibc's per-thread cache keeps freed chunks counted as in use, which would
 * make mallinfo2() depend on the last frees; the daemon runs with it off
 * (GLIBC_TUNABLES), so the heap figure is exact to the chunk. Under ASan the
 * figure is the sanitizer's own count of live bytes.
 *
 * SOAK_SECONDS (default 60) sets the length of the measured run, SOAK_SEED
 * the parent's and the workers' random seed (printed; the timing of a rerun
 * differs all the same).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "portd.h"
#include "testutil.h"

#define T 10000             /* ms: every library call, every wait for a worker */
#define RANGE_LO 40000
#define RANGE_HI 40139      /* 140 ports: fewer than the uids may hold, so the range runs out */
#define NRANGE (RANGE_HI - RANGE_LO + 1)
#define PER_UID 40          /* --max-leases-per-uid */
#define MAX_LEASES (4 * PER_UID) /* --max-leases: every uid at its limit */
#define NWORKERS 24
#define GREEDY_UID 1002     /* its workers hold up to HOLD_GREEDY leases: 6 x 12 > PER_UID ports */
#define OTHER_UID 1001
#define HOLD_MAX 3          /* leases a worker of another uid holds at most (of 1..4 ports) */
#define HOLD_GREEDY 12
#define PS_MAX 2            /* portserver grants a worker holds at most */
#define SHORT_TTL_MAX 3     /* s: short leases (1..3 s) expire while held */
#define LONG_TTL 15         /* s: more than T + the longest planned hold */
#define DEFAULT_TTL 5       /* --default-ttl, granted for a ttl of 0 */
#define MAX_TTL 60
#define BARRIER_MS 2000
#define KILL_MIN_MS 100     /* a worker killed every 100..400 ms */
#define KILL_SPAN_MS 300
#define WARMUP_S 10
#define COVER_CONNS 500
/*
 * What may still differ between two idle states of the daemon after the
 * warm-up. Warm-up C changes the events of hundreds of connections in one
 * loop turn and has hundreds ready at once, so libevent's change list and
 * epoll's event array reach sizes that the soak's few dozen connections never
 * need. Left is libevent's timer heap (8 bytes a slot, doubled when full),
 * sized by the portserver connections waiting for their line at once: a
 * busier moment in the soak than in warm-up D doubles it at most once, from
 * 32 or 64 slots, 512 bytes. Seen so far: 0 bytes of difference, in both
 * builds. A leak of one 24-byte allocation per lease was +17,744 bytes in a
 * 10 s soak.
 */
#define HEAP_SLACK 4096

static const uint32_t uids[4] = { 0, 65534, OTHER_UID, GREEDY_UID };

enum op {
	OP_LEASE, OP_RENEW, OP_RELEASE, OP_RELEASE_PORT, OP_LIST, OP_STATUS, OP_PORTSERVER, OP_RECONNECT, NOPS
};
static const char *const op_names[NOPS] = { "lease", "renew", "release", "release-port", "list", "status",
					    "portserver", "reconnect" };
/*
 * Weights of the random choice, out of their sum. Releases and renewals are
 * not chosen: each lease gets a plan when granted (released by id or by port
 * after a while, or left to expire; maybe renewed before) and what is due
 * goes before anything else.
 */
static const int op_weight[NOPS] = { [OP_LEASE] = 30, [OP_LIST] = 15, [OP_STATUS] = 10, [OP_PORTSERVER] = 5,
				     [OP_RECONNECT] = 2 };

struct slot_stats {
	uint64_t tries[NOPS], ok[NOPS];
	uint64_t noports, quota_uid, quota_total, busy, expired, ps_refused, ps_invalid_renew;
	uint64_t tcp, udp, both, fd, tied, consecutive, given_port, excluded, ports;
};

/* Shared by the parent and every worker (MAP_SHARED). */
struct shared {
	_Atomic int pause_seq; /* changed: report, then stop */
	_Atomic int stop;      /* set: end (release all, or not), exit 0 */
	struct slot_stats st[NWORKERS];
};

/* A lease as a worker knows it. */
struct rec {
	uint64_t id;       /* 0: a portserver grant, known by its port until released */
	uint64_t deadline; /* monotonic ms, never after the daemon's; UINT64_MAX: none */
	uint32_t flags;
	uint32_t ttl;
	uint8_t transport;
	uint8_t count;
	uint16_t ports[4];
};

struct report {
	int32_t pid;
	uint32_t n;
	struct rec r[HOLD_GREEDY];
};

/* ---- the worker ---- */

struct held {
	struct rec r;
	uint64_t release_at; /* monotonic ms; UINT64_MAX: never (left to expire, or to the exit) */
	uint64_t renew_at;   /* monotonic ms; UINT64_MAX: never */
	bool by_port;
	int fds[8]; /* kept for tied fd leases, until the lease ends */
	size_t nfds;
};

struct wctx {
	struct shared *sh;
	struct slot_stats *st;
	struct portd *p;
	const char *sock, *ps_addr;
	uint32_t uid;
	pid_t pid;
	int report_fd;
	int hold_max;
	int seen_pause;
	uint64_t lease_after; /* after a refusal, no new lease before this (monotonic ms) */
	uint64_t rng;
	struct held h[HOLD_GREEDY];
	int nheld;
};

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static unsigned below(uint64_t *s, unsigned n)
{
	return (unsigned)(rnd(s) >> 33) % n;
}

static __attribute__((noreturn, format(printf, 2, 3))) void wfail(const struct wctx *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "soak: worker %d (uid %u): %s\n", (int)w->pid, w->uid, msg);
	_exit(3);
}

static void held_close_fds(struct held *h)
{
	for (size_t i = 0; i < h->nfds; i++)
		close(h->fds[i]);
	h->nfds = 0;
}

static void held_drop(struct wctx *w, int i)
{
	held_close_fds(&w->h[i]);
	w->h[i] = w->h[--w->nheld];
}

static void wconnect(struct wctx *w)
{
	/* -EAGAIN: the listen backlog is full for a moment; bounded retries. */
	for (int i = 0;; i++) {
		int r = portd_connect(w->sock, &w->p);
		if (r == 0)
			return;
		if (r != -EAGAIN || i == 1000)
			wfail(w, "portd_connect: %s", portd_strerror(r));
		poll(NULL, 0, 1);
	}
}

/* The lease was not found at t (ms, after the reply): only right if its deadline may have passed. */
static void wnoent(struct wctx *w, int i, uint64_t t, const char *what)
{
	const struct rec *r = &w->h[i].r;

	if (r->deadline == UINT64_MAX || t < r->deadline)
		wfail(w, "%s: lease %" PRIu64 " (port %u) not found %" PRId64 " ms before its deadline", what,
		      r->id, r->ports[0], r->deadline == UINT64_MAX ? -1 : (int64_t)(r->deadline - t));
	w->st->expired++;
	held_drop(w, i);
}

static bool in_range(uint16_t port)
{
	return port >= RANGE_LO && port <= RANGE_HI;
}

/* The fd is a socket of the type, bound to port. */
static bool fd_is(int fd, int type, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int t = 0;
	socklen_t tl = sizeof(t);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl) < 0 || t != type)
		return false;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == port;
	return ss.ss_family == AF_INET && ntohs(((struct sockaddr_in *)&ss)->sin_port) == port;
}

/* Refused for want of ports or quota: others first, for 10..100 ms. */
static void w_backoff(struct wctx *w)
{
	w->lease_after = now_ms() + 10 + below(&w->rng, 90);
}

/* Maybe renew it once more before its deadline (or its release). */
static void w_plan_renew(struct wctx *w, struct held *h, uint64_t t0)
{
	uint64_t until = h->release_at < h->r.deadline ? h->release_at : h->r.deadline;

	h->renew_at = UINT64_MAX;
	if (until > t0 && until != UINT64_MAX && below(&w->rng, 10) < 3)
		h->renew_at = t0 + below(&w->rng, (unsigned)(until - t0));
}

/*
 * When to release a lease: a long one (or a portserver grant) within 4 s; a
 * short one before or after its deadline, or never (it expires).
 */
static void w_plan(struct wctx *w, struct held *h, uint64_t t0)
{
	uint32_t ttl_ms = h->r.ttl * 1000;

	h->by_port = below(&w->rng, 3) == 0;
	if (h->r.deadline == UINT64_MAX || h->r.ttl >= LONG_TTL)
		h->release_at = t0 + 200 + below(&w->rng, 3800);
	else if (below(&w->rng, 2))
		h->release_at = t0 + below(&w->rng, ttl_ms + ttl_ms / 2);
	else
		h->release_at = UINT64_MAX;
	w_plan_renew(w, h, t0);
}

static void w_lease(struct wctx *w)
{
	static const uint8_t transports[4] = { PORTD_TRANSPORT_TCP, PORTD_TRANSPORT_TCP, PORTD_TRANSPORT_UDP,
					       PORTD_TRANSPORT_BOTH };
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_range ex = { 0, 0 };
	struct portd_lease l;
	struct slot_stats *st = w->st;
	uint64_t t0;
	size_t per;
	int r;

	o.transport = transports[below(&w->rng, 4)];
	o.count = (uint16_t)(1 + below(&w->rng, 4));
	o.flags = 0;
	if (below(&w->rng, 2))
		o.flags |= PORTD_FLAG_FD;
	if (below(&w->rng, 2))
		o.flags |= PORTD_FLAG_TIE;
	if (o.count > 1 && below(&w->rng, 2))
		o.flags |= PORTD_FLAG_CONSECUTIVE;
	switch (below(&w->rng, 10)) {
	case 0:
		o.ttl = 0; /* the default */
		break;
	case 1: case 2: case 3:
		o.ttl = LONG_TTL;
		break;
	default:
		o.ttl = 1 + below(&w->rng, SHORT_TTL_MAX);
	}
	if (below(&w->rng, 10) == 0 && (o.count == 1 || (o.flags & PORTD_FLAG_CONSECUTIVE))) {
		o.port = (uint16_t)(RANGE_LO + below(&w->rng, NRANGE - o.count + 1));
	} else if (below(&w->rng, 10) == 0) {
		ex.lo = (uint16_t)(RANGE_LO + below(&w->rng, NRANGE));
		ex.hi = (uint16_t)(ex.lo + below(&w->rng, 50));
		o.exclude = &ex;
		o.nexclude = 1;
	}
	per = o.transport == PORTD_TRANSPORT_BOTH ? 2 : 1;

	st->tries[OP_LEASE]++;
	t0 = now_ms();
	r = portd_lease(w->p, &o, &l, T);
	switch (-r) {
	case 0:
		break;
	case PORTD_E_NOPORTS:
		st->noports++;
		w_backoff(w);
		return;
	case PORTD_E_QUOTA_UID:
		if (portd_detail(w->p) != PER_UID)
			wfail(w, "per-uid quota refusal with detail %u", portd_detail(w->p));
		st->quota_uid++;
		w_backoff(w);
		return;
	case PORTD_E_QUOTA_TOTAL:
		if (portd_detail(w->p) != MAX_LEASES)
			wfail(w, "total quota refusal with detail %u", portd_detail(w->p));
		st->quota_total++;
		w_backoff(w);
		return;
	case PORTD_E_BUSY:
		if (!o.port)
			wfail(w, "BUSY for a lease of any port (%u x %u, flags %#x)", o.count, o.transport, o.flags);
		st->busy++;
		return;
	default:
		wfail(w, "lease (%u x transport %u, flags %#x, ttl %u, port %u): %s", o.count, o.transport, o.flags,
		      o.ttl, o.port, portd_strerror(r));
	}

	/* What was granted is what was asked. */
	if (l.count != o.count || l.transport != o.transport || l.flags != o.flags ||
	    l.ttl != (o.ttl ? o.ttl : DEFAULT_TTL))
		wfail(w, "lease %" PRIu64 ": granted count %u transport %u flags %#x ttl %u for %u %u %#x %u", l.id,
		      l.count, l.transport, l.flags, l.ttl, o.count, o.transport, o.flags, o.ttl);
	for (uint16_t i = 0; i < l.count; i++) {
		uint16_t port = l.ports[i];

		if (!in_range(port) || (o.nexclude && port >= ex.lo && port <= ex.hi))
			wfail(w, "lease %" PRIu64 ": port %u outside the range or excluded (%u-%u)", l.id, port, ex.lo,
			      ex.hi);
		if (i == 0 && o.port && port != o.port)
			wfail(w, "lease %" PRIu64 ": port %u instead of %u", l.id, port, o.port);
		if (i > 0 && (o.flags & PORTD_FLAG_CONSECUTIVE) && port != l.ports[0] + i)
			wfail(w, "lease %" PRIu64 ": ports not consecutive", l.id);
		for (uint16_t j = 0; j < i; j++)
			if (l.ports[j] == port)
				wfail(w, "lease %" PRIu64 ": port %u twice", l.id, port);
	}
	if ((o.flags & PORTD_FLAG_FD) ? l.nfds != l.count * per : l.nfds != 0)
		wfail(w, "lease %" PRIu64 ": %zu fds for %u ports", l.id, l.nfds, l.count);
	for (size_t i = 0; i < l.nfds; i++) {
		int type = o.transport == PORTD_TRANSPORT_UDP || (per == 2 && i % 2) ? SOCK_DGRAM : SOCK_STREAM;
		if (!fd_is(l.fds[i], type, l.ports[i / per]))
			wfail(w, "lease %" PRIu64 ": fd %zu is not a %s socket bound to %u", l.id, i,
			      type == SOCK_DGRAM ? "UDP" : "TCP", l.ports[i / per]);
	}

	struct held *h = &w->h[w->nheld++];
	*h = (struct held){ .r = { .id = l.id, .deadline = t0 + (uint64_t)l.ttl * 1000, .flags = l.flags,
				   .ttl = l.ttl, .transport = l.transport, .count = (uint8_t)l.count } };
	memcpy(h->r.ports, l.ports, l.count * sizeof(l.ports[0]));
	w_plan(w, h, t0);
	/* Keep the sockets of a tied fd lease (they close with the process); close the others now. */
	if ((l.flags & PORTD_FLAG_TIE) && l.nfds) {
		memcpy(h->fds, l.fds, l.nfds * sizeof(int));
		h->nfds = l.nfds;
	} else {
		portd_lease_close_fds(&l);
	}
	st->ok[OP_LEASE]++;
	st->ports += l.count;
	st->tcp += o.transport == PORTD_TRANSPORT_TCP;
	st->udp += o.transport == PORTD_TRANSPORT_UDP;
	st->both += o.transport == PORTD_TRANSPORT_BOTH;
	st->fd += (o.flags & PORTD_FLAG_FD) != 0;
	st->tied += (o.flags & PORTD_FLAG_TIE) != 0;
	st->consecutive += (o.flags & PORTD_FLAG_CONSECUTIVE) != 0;
	st->given_port += o.port != 0;
	st->excluded += o.nexclude != 0;
}

/* A lease of ours that no operation can outlive: untimed, or not due before T has passed. */
static bool safe_from_expiry(const struct rec *r, uint64_t now)
{
	return r->deadline == UINT64_MAX || r->deadline > now + T;
}

static void w_renew(struct wctx *w, int i)
{
	struct rec *rc = &w->h[i].r;
	uint32_t ttl = below(&w->rng, 4) ? 1 + below(&w->rng, SHORT_TTL_MAX) : LONG_TTL, got = 0;
	uint64_t t0 = now_ms();
	int r;

	w->st->tries[OP_RENEW]++;
	r = portd_renew(w->p, rc->id, ttl, &got, T);
	if (rc->deadline == UINT64_MAX) {
		/* A portserver lease has no deadline to move. */
		if (r != -PORTD_E_INVAL)
			wfail(w, "renew of portserver lease %" PRIu64 ": %s", rc->id, portd_strerror(r));
		w->st->ps_invalid_renew++;
		w->h[i].renew_at = UINT64_MAX;
		return;
	}
	if (r == -PORTD_E_NOENT) {
		wnoent(w, i, now_ms(), "renew");
		return;
	}
	if (r < 0)
		wfail(w, "renew of lease %" PRIu64 ": %s", rc->id, portd_strerror(r));
	if (got != ttl)
		wfail(w, "renew of lease %" PRIu64 ": %u s granted for %u", rc->id, got, ttl);
	rc->deadline = t0 + (uint64_t)ttl * 1000;
	rc->ttl = ttl;
	w_plan_renew(w, &w->h[i], now_ms());
	w->st->ok[OP_RENEW]++;
}

static void w_release(struct wctx *w, int i, bool by_port)
{
	const struct rec *rc = &w->h[i].r;
	uint64_t id = 0;
	int r;

	/* By port only when the port cannot have passed to another lease meanwhile. */
	if (by_port && !safe_from_expiry(rc, now_ms()))
		by_port = false;
	if (!rc->id)
		by_port = true; /* a portserver grant: its port is all we know */
	w->st->tries[by_port ? OP_RELEASE_PORT : OP_RELEASE]++;
	if (by_port) {
		uint8_t tr = rc->transport == PORTD_TRANSPORT_BOTH && below(&w->rng, 2) ? 0 : rc->transport;
		r = portd_release_port(w->p, rc->ports[below(&w->rng, rc->count)], tr, &id, T);
		if (r == 0 && rc->id && id != rc->id)
			wfail(w, "release of port %u released lease %" PRIu64 ", not ours (%" PRIu64 ")",
			      rc->ports[0], id, rc->id);
	} else {
		r = portd_release(w->p, rc->id, T);
	}
	if (r == -PORTD_E_NOENT) {
		wnoent(w, i, now_ms(), by_port ? "release by port" : "release");
		return;
	}
	if (r < 0)
		wfail(w, "release of lease %" PRIu64 " (port %u): %s", rc->id, rc->ports[0], portd_strerror(r));
	w->st->ok[by_port ? OP_RELEASE_PORT : OP_RELEASE]++;
	held_drop(w, i);
}

static bool same_ports(const struct rec *r, const struct portd_lease_info *v)
{
	if (v->count != r->count)
		return false;
	for (unsigned i = 0; i < r->count; i++)
		if (v->ports[i] != r->ports[i])
			return false;
	return true;
}

static void w_list(struct wctx *w)
{
	struct portd_lease_info *v = NULL;
	static uint8_t seen[65536][2];
	uint64_t t0 = now_ms(), t1;
	int n;

	w->st->tries[OP_LIST]++;
	n = portd_list(w->p, &v, T);
	t1 = now_ms();
	if (n < 0)
		wfail(w, "list: %s", portd_strerror(n));
	if (w->uid == 0)
		memset(seen, 0, sizeof(seen));
	for (int i = 0; i < n; i++) {
		if (w->uid != 0 && v[i].uid != w->uid)
			wfail(w, "list shows lease %" PRIu64 " of uid %u", v[i].id, v[i].uid);
		if (w->uid != 0)
			continue;
		/* Root sees them all: no port on one transport in two leases. */
		for (unsigned k = 0; k < v[i].count; k++) {
			uint16_t port = v[i].ports[k];
			if (!in_range(port))
				wfail(w, "list: lease %" PRIu64 " holds port %u outside the range", v[i].id, port);
			for (int t = 0; t < 2; t++)
				if (v[i].transport & (1 << t)) {
					if (seen[port][t])
						wfail(w, "list: %s port %u in two leases", t ? "UDP" : "TCP", port);
					seen[port][t] = 1;
				}
		}
	}
	for (int i = 0; i < w->nheld;) {
		struct rec *r = &w->h[i].r;
		const struct portd_lease_info *e = NULL;

		for (int k = 0; k < n && !e; k++)
			if (r->id ? v[k].id == r->id
				  : (v[k].flags & PORTD_FLAG_PORTSERVER) && v[k].ports[0] == r->ports[0] &&
					    v[k].pid == w->pid)
				e = &v[k];
		if (e && !r->id)
			r->id = e->id; /* a portserver grant: now we know its id */
		if (!e) {
			if (r->deadline != UINT64_MAX && r->deadline <= t0) {
				w->st->expired++; /* gone before the list: it expired */
				held_drop(w, i);
				continue;
			}
			if (r->deadline == UINT64_MAX || r->deadline > t1)
				wfail(w, "list: our lease %" PRIu64 " (port %u) is missing", r->id, r->ports[0]);
			i++;
			continue;
		}
		if (e->uid != w->uid || e->pid != w->pid || e->transport != r->transport || !same_ports(r, e) ||
		    e->flags != r->flags || ((r->flags & (PORTD_FLAG_TIE | PORTD_FLAG_PORTSERVER)) ? e->tied_pid != w->pid
											   : e->tied_pid != 0))
			wfail(w, "list: lease %" PRIu64 " listed as uid %u pid %d transport %u flags %#x tied %d port %u",
			      e->id, e->uid, (int)e->pid, e->transport, e->flags, (int)e->tied_pid, e->ports[0]);
		i++;
	}
	/* And every lease of ours that the daemon lists is one we hold. */
	for (int k = 0; k < n; k++) {
		bool ours = false;

		if (v[k].pid != w->pid)
			continue;
		for (int i = 0; i < w->nheld && !ours; i++)
			ours = w->h[i].r.id ? w->h[i].r.id == v[k].id
					    : (v[k].flags & PORTD_FLAG_PORTSERVER) && v[k].ports[0] == w->h[i].r.ports[0];
		if (!ours)
			wfail(w, "list: lease %" PRIu64 " (port %u, %" PRIu64 " ms left) is ours, but we do not hold it",
			      v[k].id, v[k].ports[0], v[k].expires_in_ms);
	}
	free(v);
	w->st->ok[OP_LIST]++;
}

static void w_status(struct wctx *w)
{
	struct portd_status s;
	int r;

	w->st->tries[OP_STATUS]++;
	r = portd_status(w->p, &s, T);
	if (r < 0)
		wfail(w, "status: %s", portd_strerror(r));
	if (s.range_lo != RANGE_LO || s.range_hi != RANGE_HI || s.max_per_uid != PER_UID ||
	    s.max_leases != MAX_LEASES || !(s.flags & PORTD_STATUS_RESERVED))
		wfail(w, "status: range %u-%u, limits %u/%u, flags %#x", s.range_lo, s.range_hi, s.max_per_uid,
		      s.max_leases, s.flags);
	if (s.caller_leases > PER_UID || s.leases > MAX_LEASES || s.ports_held > 2 * NRANGE ||
	    s.quarantined > NRANGE)
		wfail(w, "status: %u leases (%u ours), %u ports held, %u quarantined: over the limits", s.leases,
		      s.caller_leases, s.ports_held, s.quarantined);
	w->st->ok[OP_STATUS]++;
}

/* portpicker's protocol: our pid in, a port (held until we exit) out, or a close without one. */
static void w_portserver(struct wctx *w)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t alen = strlen(w->ps_addr);
	char line[32], buf[32];
	size_t got = 0;
	int fd, n;
	long port;

	w->st->tries[OP_PORTSERVER]++;
	memcpy(sa.sun_path + 1, w->ps_addr + 1, alen - 1); /* "@name": abstract */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		wfail(w, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen)) < 0) {
		if (errno != EAGAIN)
			wfail(w, "portserver connect: %s", strerror(errno));
		close(fd);
		return;
	}
	n = snprintf(line, sizeof(line), "%d\n", (int)w->pid);
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n)
		wfail(w, "portserver send: %s", strerror(errno));
	for (uint64_t end = now_ms() + T;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		ssize_t r;

		if (now >= end || poll(&pf, 1, (int)(end - now)) <= 0)
			wfail(w, "portserver: no answer within %d ms", T);
		r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r < 0 && errno == ECONNRESET && got == 0)
			r = 0;
		if (r < 0)
			wfail(w, "portserver read: %s", strerror(errno));
		if (r == 0)
			break;
		got += (size_t)r;
		if (got == sizeof(buf) - 1)
			break;
	}
	close(fd);
	buf[got] = '\0';
	if (got == 0) {
		w->st->ps_refused++; /* no port or a quota: closed without an answer */
		w_backoff(w);
		return;
	}
	char *end;
	port = strtol(buf, &end, 10);
	if (strcmp(end, "\n") != 0 || port < RANGE_LO || port > RANGE_HI)
		wfail(w, "portserver answered '%s'", buf);
	w->h[w->nheld] = (struct held){ .r = { .id = 0, .deadline = UINT64_MAX, .flags = PORTD_FLAG_PORTSERVER,
					       .transport = PORTD_TRANSPORT_TCP, .count = 1,
					       .ports = { (uint16_t)port } } };
	w_plan(w, &w->h[w->nheld++], now_ms());
	w->st->ok[OP_PORTSERVER]++;
}

static int count_ps(const struct wctx *w)
{
	int n = 0;
	for (int i = 0; i < w->nheld; i++)
		n += w->h[i].r.deadline == UINT64_MAX;
	return n;
}

static void w_report(struct wctx *w)
{
	struct report rp = { .pid = w->pid, .n = (uint32_t)w->nheld };
	size_t len = offsetof(struct report, r) + (size_t)w->nheld * sizeof(struct rec);

	for (int i = 0; i < w->nheld; i++)
		rp.r[i] = w->h[i].r;
	_Static_assert(sizeof(struct report) <= PIPE_BUF, "one atomic write");
	if (write(w->report_fd, &rp, len) != (ssize_t)len)
		wfail(w, "report: %s", strerror(errno));
}

static void w_op(struct wctx *w)
{
	uint64_t now = now_ms();
	int total = 0, pick;
	enum op op = OP_LIST;

	/* A release or renewal that is due goes first. */
	for (int i = 0; i < w->nheld; i++) {
		if (w->h[i].release_at <= now) {
			w_release(w, i, w->h[i].by_port);
			return;
		}
		if (w->h[i].renew_at <= now) {
			if (w->h[i].r.id)
				w_renew(w, i);
			else
				w_list(w); /* a portserver grant: a list tells its id */
			return;
		}
	}
	for (int i = 0; i < NOPS; i++)
		total += op_weight[i];
	pick = (int)below(&w->rng, (unsigned)total);
	for (int i = 0; i < NOPS; i++) {
		if (pick < op_weight[i]) {
			op = (enum op)i;
			break;
		}
		pick -= op_weight[i];
	}
	if (op == OP_PORTSERVER && count_ps(w) >= PS_MAX)
		op = OP_LEASE;
	if ((op == OP_LEASE || op == OP_PORTSERVER) && (w->nheld >= w->hold_max || now < w->lease_after))
		op = OP_LIST;

	switch (op) {
	case OP_LEASE: w_lease(w); break;
	case OP_LIST: w_list(w); break;
	case OP_STATUS: w_status(w); break;
	case OP_PORTSERVER: w_portserver(w); break;
	case OP_RECONNECT:
		/* Tied leases stay: they are tied to the process, not to the connection. */
		w->st->tries[OP_RECONNECT]++;
		portd_disconnect(w->p);
		wconnect(w);
		w->st->ok[OP_RECONNECT]++;
		break;
	case OP_RENEW:
	case OP_RELEASE:
	case OP_RELEASE_PORT:
	case NOPS:
		break;
	}
}

static __attribute__((noreturn)) void worker_main(struct shared *sh, int slot, uint32_t uid, int gate_fd,
						  int report_fd, int pause_seq, const char *sock,
						  const char *ps_addr, uint64_t seed)
{
	struct wctx w = { .sh = sh, .st = &sh->st[slot], .sock = sock, .ps_addr = ps_addr, .uid = uid,
			  .pid = getpid(), .report_fd = report_fd, .seen_pause = pause_seq,
			  .hold_max = uid == GREEDY_UID ? HOLD_GREEDY : HOLD_MAX, .rng = seed | 1 };
	uint64_t end;
	char go;

	if (uid && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
		wfail(&w, "cannot become uid %u: %s", uid, strerror(errno));
	/* Die with the parent, even stopped (set after setuid(), which clears it; a dead parent closes the gate). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* The parent opens the gate once it knows this pid is new to the run. */
	if (read(gate_fd, &go, 1) != 1)
		_exit(0);
	close(gate_fd);
	wconnect(&w);
	/* A life of 1..20 s, unless the parent kills it first. */
	end = now_ms() + 1000 + below(&w.rng, 19000);
	for (;;) {
		int seq = atomic_load(&sh->pause_seq);

		if (seq != w.seen_pause) {
			w.seen_pause = seq;
			w_report(&w);
			raise(SIGSTOP);
		}
		if (atomic_load(&sh->stop) || now_ms() >= end) {
			/* Half the time release everything first; else leave it to the ties and the TTLs. */
			if (below(&w.rng, 2))
				while (w.nheld)
					w_release(&w, w.nheld - 1, below(&w.rng, 2));
			portd_disconnect(w.p);
			_exit(0);
		}
		/* Our copies of a tied fd lease's sockets go when its deadline does (the ports are free then). */
		for (int i = 0; i < w.nheld; i++)
			if (w.h[i].nfds && w.h[i].r.deadline <= now_ms())
				held_close_fds(&w.h[i]);
		w_op(&w);
	}
}

/* ---- the parent ---- */

struct worker {
	pid_t pid;
	int pidfd, report_fd;
	uint32_t uid;
	bool stopped;
	struct report rep;
};

struct soak {
	struct daemon_proc d;
	char ps_addr[64];
	struct shared *sh;
	struct worker w[NWORKERS];
	uint64_t rng;
	pid_t *pids; /* every worker pid of the run: a lease of a dead one may outlive it */
	size_t npids, cap_pids;
	/* counters */
	uint64_t spawned, killed, exited, barriers, stable_counts, orphans_seen, max_fds, max_leases;
};

static struct soak *running_soak;

static bool pid_known(const struct soak *s, pid_t pid)
{
	for (size_t i = 0; i < s->npids; i++)
		if (s->pids[i] == pid)
			return true;
	return false;
}

static void kill_workers(struct soak *s)
{
	for (int i = 0; i < NWORKERS; i++)
		if (s->w[i].pid > 0) {
			kill(s->w[i].pid, SIGKILL);
			waitpid(s->w[i].pid, NULL, 0);
			close(s->w[i].pidfd);
			close(s->w[i].report_fd);
			s->w[i].pid = 0;
		}
}

static int soak_teardown(void **state)
{
	if (running_soak)
		kill_workers(running_soak);
	return daemons_teardown(state);
}

static __attribute__((noreturn, format(printf, 2, 3))) void soak_fail(struct soak *s, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kill_workers(s);
	fail_msg("%s", msg);
	abort(); /* not reached */
}

static void spawn(struct soak *s, int slot)
{
	struct worker *w = &s->w[slot];
	uint32_t uid = uids[slot % 4];

	/* A pid that a dead worker had could own that worker's leases: take another. */
	for (int tries = 0;; tries++) {
		int gate[2], rep[2];
		uint64_t seed = rnd(&s->rng);
		int seq = atomic_load(&s->sh->pause_seq);
		pid_t pid;

		assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
		assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(gate[1]);
			close(rep[0]);
			worker_main(s->sh, slot, uid, gate[0], rep[1], seq, s->d.sock, s->ps_addr, seed);
		}
		close(gate[0]);
		close(rep[1]);
		if (pid_known(s, pid) && tries < 20) {
			close(gate[1]); /* it exits without doing anything */
			waitpid(pid, NULL, 0);
			close(rep[0]);
			continue;
		}
		if (s->npids == s->cap_pids) {
			s->cap_pids = s->cap_pids ? 2 * s->cap_pids : 1024;
			s->pids = realloc(s->pids, s->cap_pids * sizeof(*s->pids));
			assert_non_null(s->pids);
		}
		s->pids[s->npids++] = pid;
		*w = (struct worker){ .pid = pid, .pidfd = pidfd_open(pid, 0), .report_fd = rep[0], .uid = uid };
		assert_true(w->pidfd >= 0);
		assert_int_equal(write(gate[1], "g", 1), 1);
		close(gate[1]);
		s->spawned++;
		return;
	}
}

/* Reap a worker that has exited (or was killed: killed true); it must have ended well. */
static void reap_worker(struct soak *s, int slot, bool killed)
{
	struct worker *w = &s->w[slot];
	int status = 0;

	assert_int_equal(waitpid(w->pid, &status, 0), w->pid);
	close(w->pidfd);
	close(w->report_fd);
	w->pid = 0;
	/* Killed, or (also when about to be killed) exited 0: anything else is a worker that failed. */
	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
	    !(killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		soak_fail(s, "worker of uid %u ended with status %#x (3: it found the daemon wrong, above)", w->uid,
			  status);
}

static struct portd *root_connect(struct soak *s)
{
	struct portd *p = NULL;
	int r = portd_connect(s->d.sock, &p);

	if (r < 0)
		soak_fail(s, "portd_connect: %s", portd_strerror(r));
	return p;
}

static void status_of(struct soak *s, struct portd *p, struct portd_status *st)
{
	/* The soak's daemon holds few fds: counting them every time is cheap here. */
	int r = portd_status_flags(p, PORTD_STATUS_COUNT_FDS, st, T);
	if (r < 0)
		soak_fail(s, "status: %s", portd_strerror(r));
}

static const struct rec *find_rec(const struct worker *w, const struct portd_lease_info *v)
{
	for (uint32_t i = 0; i < w->rep.n; i++) {
		const struct rec *r = &w->rep.r[i];
		if (r->id ? r->id == v->id : (v->flags & PORTD_FLAG_PORTSERVER) && v->ports[0] == r->ports[0])
			return r;
	}
	return NULL;
}

/* All workers are stopped between operations, with their reports in: compare with the daemon. */
static void snapshot_check(struct soak *s)
{
	static uint8_t seen[65536][2];
	struct portd *p = root_connect(s);
	struct portd_lease_info *v = NULL;
	struct portd_status st1, st2;
	uint32_t per_uid[4] = { 0 };
	uint64_t t1;
	int n = -1;

	/* Nothing can start a lease now, but leases can end (expiry, a dead worker's ties): find a still moment. */
	for (int tries = 0; tries < 20; tries++) {
		free(v);
		v = NULL;
		status_of(s, p, &st1);
		n = portd_list(p, &v, T);
		if (n < 0)
			soak_fail(s, "list: %s", portd_strerror(n));
		status_of(s, p, &st2);
		if (st1.leases == st2.leases) {
			if ((uint32_t)n != st1.leases)
				soak_fail(s, "status counts %u leases, list shows %d", st1.leases, n);
			s->stable_counts++;
			break;
		}
	}
	t1 = now_ms();
	portd_disconnect(p);
	if (st2.open_fds > s->max_fds)
		s->max_fds = st2.open_fds;
	if ((uint64_t)n > s->max_leases)
		s->max_leases = (uint64_t)n;
	if (st2.open_fds >= 2 * COVER_CONNS)
		soak_fail(s, "the daemon has %u fds open: more than the warm-up covered", st2.open_fds);

	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < n; i++) {
		const struct portd_lease_info *e = &v[i];
		int u = -1;

		for (int k = 0; k < 4; k++)
			if (uids[k] == e->uid)
				u = k;
		if (u < 0)
			soak_fail(s, "lease %" PRIu64 " of uid %u, which no worker has", e->id, e->uid);
		per_uid[u] += e->count; /* the per-uid limit counts port numbers */
		for (unsigned k = 0; k < e->count; k++) {
			if (!in_range(e->ports[k]))
				soak_fail(s, "lease %" PRIu64 " holds port %u outside the range", e->id, e->ports[k]);
			for (int t = 0; t < 2; t++)
				if (e->transport & (1 << t)) {
					if (seen[e->ports[k]][t])
						soak_fail(s, "%s port %u is in two leases", t ? "UDP" : "TCP", e->ports[k]);
					seen[e->ports[k]][t] = 1;
				}
		}
		/* Whose is it? */
		const struct worker *w = NULL;
		for (int k = 0; k < NWORKERS; k++)
			if (s->w[k].pid == e->pid)
				w = &s->w[k];
		if (!w) {
			if (!pid_known(s, e->pid))
				soak_fail(s, "lease %" PRIu64 " of pid %d, which is no worker of this run", e->id,
					  (int)e->pid);
			s->orphans_seen++; /* a dead worker's: it ends with its tie or its TTL */
			continue;
		}
		const struct rec *r = find_rec(w, e);
		if (!r)
			soak_fail(s, "lease %" PRIu64 " (port %u, uid %u) of live worker %d, which does not hold it",
				  e->id, e->ports[0], e->uid, (int)w->pid);
		if (e->uid != w->uid || e->transport != r->transport || !same_ports(r, e) || e->flags != r->flags)
			soak_fail(s, "lease %" PRIu64 " listed as uid %u transport %u flags %#x port %u; worker %d "
				  "holds it as uid %u transport %u flags %#x port %u", e->id, e->uid, e->transport,
				  e->flags, e->ports[0], (int)w->pid, w->uid, r->transport, r->flags, r->ports[0]);
	}
	for (int k = 0; k < 4; k++)
		if (per_uid[k] > PER_UID)
			soak_fail(s, "uid %u holds %u ports, over its limit of %d", uids[k], per_uid[k], PER_UID);
	if (n > MAX_LEASES)
		soak_fail(s, "%d leases, over the limit of %d", n, MAX_LEASES);
	/* Every lease a worker holds is listed, unless its deadline may have passed. */
	for (int k = 0; k < NWORKERS; k++) {
		const struct worker *w = &s->w[k];

		for (uint32_t i = 0; w->pid > 0 && i < w->rep.n; i++) {
			const struct rec *r = &w->rep.r[i];
			bool found = false;

			for (int j = 0; j < n && !found; j++)
				found = v[j].pid == w->pid && find_rec(w, &v[j]) == r;
			if (!found && (r->deadline == UINT64_MAX || r->deadline > t1))
				soak_fail(s, "worker %d (uid %u) holds lease %" PRIu64 " (port %u, %" PRId64
					  " ms left) that the daemon does not list", (int)w->pid, w->uid, r->id,
					  r->ports[0], r->deadline == UINT64_MAX ? -1 : (int64_t)(r->deadline - t1));
		}
	}
	free(v);
}

static void barrier(struct soak *s)
{
	atomic_fetch_add(&s->sh->pause_seq, 1);
	for (int k = 0; k < NWORKERS; k++) {
		struct worker *w = &s->w[k];
		struct pollfd pf[2] = { { .fd = w->report_fd, .events = POLLIN }, { .fd = w->pidfd, .events = POLLIN } };
		ssize_t got;
		int status;

		if (w->pid <= 0)
			continue;
		if (poll(pf, 2, 3 * T) <= 0)
			soak_fail(s, "worker %d did not reach the barrier within %d ms", (int)w->pid, 3 * T);
		if (!(pf[0].revents & POLLIN)) {
			reap_worker(s, k, false); /* it ended on its own, just before the pause */
			s->exited++;
			continue;
		}
		memset(&w->rep, 0, sizeof(w->rep));
		got = read(w->report_fd, &w->rep, sizeof(w->rep));
		if (got < (ssize_t)offsetof(struct report, r) || w->rep.pid != w->pid || w->rep.n > HOLD_GREEDY ||
		    (size_t)got != offsetof(struct report, r) + w->rep.n * sizeof(struct rec))
			soak_fail(s, "worker %d: bad report (%zd bytes)", (int)w->pid, got);
		if (waitpid(w->pid, &status, WUNTRACED) != w->pid || !WIFSTOPPED(status))
			soak_fail(s, "worker %d did not stop after its report (status %#x)", (int)w->pid, status);
		w->stopped = true;
	}
	snapshot_check(s);
	for (int k = 0; k < NWORKERS; k++)
		if (s->w[k].pid > 0 && s->w[k].stopped) {
			kill(s->w[k].pid, SIGCONT);
			s->w[k].stopped = false;
		}
	for (int k = 0; k < NWORKERS; k++)
		if (s->w[k].pid <= 0)
			spawn(s, k);
	s->barriers++;
}

/* Run the workers for ms: kills, replacements, barriers. */
static void run_load(struct soak *s, uint64_t ms)
{
	uint64_t start = now_ms(), end = start + ms;
	uint64_t next_kill = start + KILL_MIN_MS + below(&s->rng, KILL_SPAN_MS);
	uint64_t next_barrier = start + BARRIER_MS;

	for (int k = 0; k < NWORKERS; k++)
		spawn(s, k);
	for (uint64_t now = start; now < end; now = now_ms()) {
		struct pollfd pf[NWORKERS];
		uint64_t next = next_kill < next_barrier ? next_kill : next_barrier;

		if (next > end)
			next = end;
		for (int k = 0; k < NWORKERS; k++)
			pf[k] = (struct pollfd){ .fd = s->w[k].pidfd, .events = POLLIN };
		if (poll(pf, NWORKERS, next > now ? (int)(next - now) : 0) < 0 && errno != EINTR)
			soak_fail(s, "poll: %s", strerror(errno));
		for (int k = 0; k < NWORKERS; k++)
			if (pf[k].revents) {
				reap_worker(s, k, false);
				s->exited++;
				spawn(s, k);
			}
		now = now_ms();
		if (now >= next_kill) {
			int k = (int)below(&s->rng, NWORKERS);

			kill(s->w[k].pid, SIGKILL);
			reap_worker(s, k, true);
			s->killed++;
			spawn(s, k);
			next_kill = now + KILL_MIN_MS + below(&s->rng, KILL_SPAN_MS);
		}
		if (now >= next_barrier) {
			barrier(s);
			next_barrier = now_ms() + BARRIER_MS;
		}
	}
	barrier(s);
}

static bool tied(const struct portd_lease_info *v)
{
	return v->tied_pid != 0;
}

/*
 * End the load: every worker exits (releasing all or nothing), the tied leases
 * end with their processes, the parent releases the rest; wait until nothing
 * is left: no lease, no other connection, no quarantined port.
 */
static void drain(struct soak *s)
{
	struct portd_status st;
	struct portd *p;
	uint64_t end;

	atomic_store(&s->sh->stop, 1);
	for (int k = 0; k < NWORKERS; k++) {
		struct pollfd pf = { .fd = s->w[k].pidfd, .events = POLLIN };

		if (s->w[k].pid <= 0)
			continue;
		if (poll(&pf, 1, 3 * T) <= 0)
			soak_fail(s, "worker %d did not exit within %d ms of the end", (int)s->w[k].pid, 3 * T);
		reap_worker(s, k, false);
	}
	atomic_store(&s->sh->stop, 0);

	p = root_connect(s);
	/* No process of a tied lease is alive: they all end without help. */
	for (end = now_ms() + 3 * T;; poll(NULL, 0, 10)) {
		struct portd_lease_info *v = NULL;
		int n = portd_list(p, &v, T), ntied = 0;

		if (n < 0)
			soak_fail(s, "list: %s", portd_strerror(n));
		for (int i = 0; i < n; i++)
			ntied += tied(&v[i]);
		free(v);
		if (!ntied)
			break;
		if (now_ms() > end)
			soak_fail(s, "%d tied leases are left %d ms after their processes exited", ntied, 3 * T);
	}
	/* Release what is left (leases of killed workers that would wait for their TTLs). */
	for (end = now_ms() + 3 * T;; poll(NULL, 0, 10)) {
		struct portd_lease_info *v = NULL;
		int n = portd_list(p, &v, T);

		if (n < 0)
			soak_fail(s, "list: %s", portd_strerror(n));
		for (int i = 0; i < n; i++) {
			int r = portd_release(p, v[i].id, T);
			if (r < 0 && r != -PORTD_E_NOENT)
				soak_fail(s, "release of lease %" PRIu64 ": %s", v[i].id, portd_strerror(r));
		}
		free(v);
		status_of(s, p, &st);
		if (st.leases == 0 && st.connections == 1 && st.quarantined == 0 && st.ports_held == 0)
			break;
		if (now_ms() > end)
			soak_fail(s, "%u leases, %u connections, %u ports held, %u quarantined still there after %d ms",
				  st.leases, st.connections, st.ports_held, st.quarantined, 3 * T);
	}
	portd_disconnect(p);
}

struct usage {
	uint32_t open_fds;
	int proc_fds;
	uint64_t heap;
};

/* The daemon's usage, on a fresh connection (the only one). */
static struct usage measure(struct soak *s)
{
	struct portd *p = root_connect(s);
	struct portd_status st;
	struct usage u;

	status_of(s, p, &st);
	u.open_fds = st.open_fds;
	u.heap = st.heap_bytes;
	u.proc_fds = count_fds(s->d.pid);
	portd_disconnect(p);
	if (st.connections != 1 || st.leases != 0)
		soak_fail(s, "measuring with %u connections and %u leases", st.connections, st.leases);
	if ((int)u.open_fds != u.proc_fds)
		soak_fail(s, "status says %u fds, /proc/%d/fd has %d", u.open_fds, (int)s->d.pid, u.proc_fds);
	if (u.heap == 0)
		soak_fail(s, "the daemon reports no heap figure");
	return u;
}

/* Wait (bounded) until the daemon reports these counts. */
static void wait_counts(struct soak *s, uint32_t leases, uint32_t conns, bool no_quarantine)
{
	struct portd *p = root_connect(s);
	struct portd_status st;

	for (uint64_t end = now_ms() + 3 * T;; poll(NULL, 0, 10)) {
		status_of(s, p, &st);
		if (st.leases == leases && st.connections == conns + 1 && (!no_quarantine || st.quarantined == 0))
			break;
		if (now_ms() > end)
			soak_fail(s, "waited for %u leases and %u connections, have %u and %u (%u quarantined)", leases,
				  conns, st.leases, st.connections - 1, st.quarantined);
	}
	portd_disconnect(p);
}

/*
 * Warm-up A: as many tied one-port leases as can live at once (MAX_LEASES, or
 * fewer when the range is smaller), held by 2 * NWORKERS + 8 processes of the
 * four uids.
 */
#define TIED_PER_UID (NRANGE / 4 < PER_UID ? NRANGE / 4 : PER_UID)
static void warm_tied(struct soak *s)
{
	enum { K = 2 * NWORKERS + 8, PER = K / 4 };
	pid_t pids[K];
	int go[2], ready[2];
	char c;

	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	for (int k = 0; k < K; k++) {
		uint32_t uid = uids[k % 4];
		int j = k / 4, n = TIED_PER_UID / PER + (j < TIED_PER_UID % PER);

		pids[k] = fork();
		assert_true(pids[k] >= 0);
		if (pids[k] == 0) {
			struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
			struct portd_lease l;
			struct portd *p = NULL;

			close(go[1]);
			close(ready[0]);
			o.flags = PORTD_FLAG_TIE;
			o.ttl = MAX_TTL;
			if ((uid && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)) ||
			    portd_connect(s->d.sock, &p) < 0)
				_exit(2);
			for (int i = 0; i < n; i++)
				if (portd_lease(p, &o, &l, T) < 0)
					_exit(3);
			if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 0)
				_exit(4);
			_exit(0); /* the ties end the leases */
		}
	}
	close(go[0]);
	close(ready[1]);
	for (int k = 0; k < K; k++) {
		struct pollfd pf = { .fd = ready[0], .events = POLLIN };
		if (poll(&pf, 1, T) <= 0 || read(ready[0], &c, 1) != 1)
			soak_fail(s, "warm-up: %d of %d tied holders ready", k, K);
	}
	wait_counts(s, 4 * TIED_PER_UID, K, false);
	close(go[1]);
	close(ready[0]);
	for (int k = 0; k < K; k++) {
		int status;
		assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
		assert_int_equal(status, 0);
	}
	wait_counts(s, 0, 0, true);
}

/*
 * Warm-up B: every port the four uids may hold at once (PER_UID each, the
 * limit counting ports, as far as the range goes), on TCP and UDP, as fds:
 * one process per uid takes its share and exits (the leases are not tied);
 * root then releases them all.
 */
#define FILL_COUNT 4 /* ports per lease: divides PER_UID and NRANGE */
#define FILL_PORTS (NRANGE < 4 * PER_UID ? NRANGE : 4 * PER_UID)
_Static_assert(PER_UID % FILL_COUNT == 0 && NRANGE % FILL_COUNT == 0, "fill in whole leases");
static void warm_fill(struct soak *s)
{
	struct portd *p;
	struct portd_status st;
	int n = 0;

	for (int k = 0; k < 4; k++) {
		pid_t pid = fork();
		int status;

		assert_true(pid >= 0);
		if (pid == 0) {
			struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
			struct portd_lease l;
			struct portd *c = NULL;

			o.flags = PORTD_FLAG_FD; /* not tied: the leases outlive this process */
			o.transport = PORTD_TRANSPORT_BOTH;
			o.ttl = MAX_TTL;
			if ((uids[k] && (setgroups(0, NULL) < 0 || setgid(uids[k]) < 0 || setuid(uids[k]) < 0)) ||
			    portd_connect(s->d.sock, &c) < 0)
				_exit(2);
			o.count = FILL_COUNT;
			for (int ports = 0; ports < PER_UID; ports += o.count) {
				int r = portd_lease(c, &o, &l, T);

				if (r == -PORTD_E_NOPORTS)
					break; /* the range is full: the uids before took it */
				if (r < 0)
					_exit(3);
				portd_lease_close_fds(&l);
			}
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (status != 0)
			soak_fail(s, "warm-up: uid %u could not take its %d ports (status %#x)", uids[k], PER_UID,
				  status);
	}
	p = root_connect(s);
	status_of(s, p, &st);
	if (st.ports_held != 2 * FILL_PORTS)
		soak_fail(s, "warm-up: %u ports held, not %d", st.ports_held, 2 * FILL_PORTS);
	/* Root sees every lease: release them all, at once. */
	struct portd_lease_info *v = NULL;
	int nv = portd_list(p, &v, T);

	if (nv < 0)
		soak_fail(s, "warm-up: list failed: %s", portd_strerror(nv));
	for (int i = 0; i < nv; i++, n++)
		if (portd_release(p, v[i].id, T) < 0)
			soak_fail(s, "warm-up: release failed");
	free(v);
	portd_disconnect(p);
	if (n != FILL_PORTS / FILL_COUNT)
		soak_fail(s, "warm-up: released %d leases, not %d", n, FILL_PORTS / FILL_COUNT);
	wait_counts(s, 0, 0, true);
}

/* Warm-up C: COVER_CONNS connections at once, then again one fd number higher. */
static void warm_conns(struct soak *s)
{
	static int fds[COVER_CONNS];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { T / 1000, 0 };
	struct portd *p = root_connect(s);
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l = { 0 };
	int r;

	strcpy(sa.sun_path, s->d.sock);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < COVER_CONNS; i++) {
			fds[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
			assert_true(fds[i] >= 0);
			/* Blocking, with a timeout: a full backlog waits for the daemon to accept. */
			setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0)
				soak_fail(s, "warm-up: connection %d: %s", i, strerror(errno));
		}
		wait_counts(s, (uint32_t)round, COVER_CONNS + 1, false);
		for (int i = 0; i < COVER_CONNS; i++)
			close(fds[i]);
		wait_counts(s, (uint32_t)round, 1, false);
		/* A number lease holds one socket in the daemon: every fd after it moves up by one. */
		if (round == 0) {
			o.flags = 0;
			o.ttl = MAX_TTL;
			r = portd_lease(p, &o, &l, T);
			if (r < 0)
				soak_fail(s, "warm-up: lease: %s", portd_strerror(r));
		}
	}
	r = portd_release(p, l.id, T);
	if (r < 0)
		soak_fail(s, "warm-up: release: %s", portd_strerror(r));
	portd_disconnect(p);
	wait_counts(s, 0, 0, true);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 10) : def;
}

static void print_stats(const struct soak *s, uint64_t seconds)
{
	struct slot_stats t = { 0 };
	uint64_t quota_by_uid[4] = { 0 };

	for (int k = 0; k < NWORKERS; k++) {
		const struct slot_stats *x = &s->sh->st[k];
		for (int i = 0; i < NOPS; i++) {
			t.tries[i] += x->tries[i];
			t.ok[i] += x->ok[i];
		}
		t.noports += x->noports;
		t.quota_uid += x->quota_uid;
		quota_by_uid[k % 4] += x->quota_uid;
		t.quota_total += x->quota_total;
		t.busy += x->busy;
		t.expired += x->expired;
		t.ps_refused += x->ps_refused;
		t.ps_invalid_renew += x->ps_invalid_renew;
		t.tcp += x->tcp;
		t.udp += x->udp;
		t.both += x->both;
		t.fd += x->fd;
		t.tied += x->tied;
		t.consecutive += x->consecutive;
		t.given_port += x->given_port;
		t.excluded += x->excluded;
		t.ports += x->ports;
	}
	printf("# soak: %" PRIu64 " s, %d workers at a time, %" PRIu64 " started, %" PRIu64 " killed, %" PRIu64
	       " exited on their own, %" PRIu64 " barriers (%" PRIu64 " with a still count)\n",
	       seconds, NWORKERS, s->spawned, s->killed, s->exited, s->barriers, s->stable_counts);
	for (int i = 0; i < NOPS; i++)
		printf("# soak:   %-12s %8" PRIu64 " tried, %8" PRIu64 " ok\n", op_names[i], t.tries[i], t.ok[i]);
	printf("# soak: leases: %" PRIu64 " tcp, %" PRIu64 " udp, %" PRIu64 " both; %" PRIu64 " fd, %" PRIu64
	       " tied, %" PRIu64 " consecutive, %" PRIu64 " a given port, %" PRIu64 " with an exclude range; %"
	       PRIu64 " ports\n", t.tcp, t.udp, t.both, t.fd, t.tied, t.consecutive, t.given_port, t.excluded,
	       t.ports);
	printf("# soak: refused: %" PRIu64 " no free port, %" PRIu64 " per-uid limit, %" PRIu64 " total limit, %"
	       PRIu64 " port busy, %" PRIu64 " portserver; %" PRIu64 " leases seen expired, %" PRIu64
	       " portserver renewals refused\n", t.noports, t.quota_uid, t.quota_total, t.busy, t.ps_refused,
	       t.expired, t.ps_invalid_renew);
	printf("# soak: per-uid limit reached by uid %u %" PRIu64 " times, %u %" PRIu64 ", %u %" PRIu64 ", %u %"
	       PRIu64 "\n", uids[0], quota_by_uid[0], uids[1], quota_by_uid[1], uids[2], quota_by_uid[2], uids[3],
	       quota_by_uid[3]);
	printf("# soak: at the barriers: up to %" PRIu64 " leases and %" PRIu64 " daemon fds; %" PRIu64
	       " leases of dead workers seen\n", s->max_leases, s->max_fds, s->orphans_seen);
}

static void t_soak(void **state)
{
	static struct soak s;
	uint64_t seconds = env_u64("SOAK_SECONDS", 60), seed = env_u64("SOAK_SEED", 0);
	char range[32], per_uid[16], total[16], dttl[16], mttl[16];
	struct usage base, after;

	memset(&s, 0, sizeof(s));
	if (!seed)
		seed = (uint64_t)getpid() * 2654435761u ^ now_ms();
	s.rng = seed;
	printf("# soak: SOAK_SECONDS=%" PRIu64 " SOAK_SEED=%" PRIu64 "\n", seconds, seed);
	s.sh = mmap(NULL, sizeof(*s.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(s.sh != MAP_FAILED);
	memset(s.sh, 0, sizeof(*s.sh));
	running_soak = &s;

	snprintf(range, sizeof(range), "%d-%d", RANGE_LO, RANGE_HI);
	snprintf(per_uid, sizeof(per_uid), "%d", PER_UID);
	snprintf(total, sizeof(total), "%d", MAX_LEASES);
	snprintf(dttl, sizeof(dttl), "%d", DEFAULT_TTL);
	snprintf(mttl, sizeof(mttl), "%d", MAX_TTL);
	snprintf(s.ps_addr, sizeof(s.ps_addr), "@portd-soak-%d", (int)getpid());
	/* glibc's thread cache would count recently freed chunks as in use (see the top). */
	setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
	daemon_start(&s.d, "--socket-mode", "0666", "--range", range, "--reserve", "--quarantine", "1",
		     "--max-leases-per-uid", per_uid, "--max-leases", total, "--default-ttl", dttl, "--max-ttl",
		     mttl, "--portserver", s.ps_addr, NULL);
	unsetenv("GLIBC_TUNABLES");
	assert_int_equal(chmod(s.d.dir, 0755), 0); /* the other uids reach the socket */

	warm_tied(&s);
	warm_fill(&s);
	warm_conns(&s);
	run_load(&s, WARMUP_S * 1000);
	drain(&s);
	base = measure(&s);
	printf("# soak: after the warm-up: %u fds, %" PRIu64 " heap bytes\n", base.open_fds, base.heap);

	memset(s.sh->st, 0, sizeof(s.sh->st));
	s.spawned = s.killed = s.exited = s.barriers = s.stable_counts = s.orphans_seen = 0;
	run_load(&s, seconds * 1000);
	drain(&s);
	after = measure(&s);
	print_stats(&s, seconds);
	printf("# soak: after the soak:   %u fds, %" PRIu64 " heap bytes (%+" PRId64 ")\n", after.open_fds,
	       after.heap, (int64_t)(after.heap - base.heap));
	fflush(stdout);
	if (after.open_fds != base.open_fds || after.proc_fds != base.proc_fds)
		soak_fail(&s, "the daemon has %u fds open (/proc: %d), %u before the soak", after.open_fds,
			  after.proc_fds, base.open_fds);
	if (after.heap > base.heap + HEAP_SLACK || base.heap > after.heap + HEAP_SLACK)
		soak_fail(&s, "the daemon's heap is %" PRIu64 " bytes, %" PRIu64 " before the soak (slack %d)",
			  after.heap, base.heap, HEAP_SLACK);
	if (s.stable_counts == 0)
		soak_fail(&s, "no barrier found the lease count still: status and list never compared");
	running_soak = NULL;
	free(s.pids);
	munmap(s.sh, sizeof(*s.sh));
	daemon_stop(&s.d); /* exit status 0: under ASan, LeakSanitizer found nothing either */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(t_soak, soak_teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "# the soak runs workers as other users in a private network namespace: root only\n");
		return 77;
	}
	if (test_wrapped()) {
		fprintf(stderr, "# the soak measures the daemon itself, not under PORTD_TEST_WRAPPER: skipped\n");
		return 77;
	}
	if (!e2e_setup()) {
		fprintf(stderr, "# cannot enter a private network namespace\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
