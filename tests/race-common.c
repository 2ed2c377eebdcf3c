/*
 * The port race: workers, hammer, bookkeeping. See race-common.h.
 *
 * Every connection here is closed with an RST (SO_LINGER 0) by its client.
 * At thousands of connections a second, TIME_WAIT (60 s each) would fill a
 * narrowed ephemeral range within a second, and every approach would then
 * fail for exhaustion rather than for a race. With RST the range holds only
 * what the processes actually hold, and portd can run without reuse
 * quarantine (which exists for TIME_WAIT) on a range of a few thousand ports.
 */
#include "race-common.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netns.h"
#include "portd.h"
#include "spawn.h"

#define NPORTS 65536
#define CALL_MS 5000   /* each libportd call */
#define IO_MS 2000     /* connect, accept, each byte */
#define START_MS 10000 /* children getting ready */
#define GRACE_MS 15000 /* a worker's last attempt, past the deadline */
#define LEASE_TTL 60   /* s; every lease is released explicitly long before */

struct hammer_shared {
	_Atomic uint64_t binds, bind_errors, connects, connect_errors, hits_leased, hits_claimed;
};

/* Written by its worker only, read by the parent once the worker is reaped. */
struct worker_slot {
	struct race_counts fd, number, naive;
};

struct shared {
	_Atomic uint8_t leased[NPORTS];
	_Atomic uint8_t claimed[NPORTS];
	_Atomic uint16_t other[NPORTS];
	struct hammer_shared binder, connector;
	struct worker_slot w[RACE_MAX_WORKERS];
};

struct race {
	struct race_config cfg;
	struct shared *sh;
	pid_t hammer[2];
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs first in every child: it dies with the parent, however the parent dies. */
static void child_init(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	signal(SIGPIPE, SIG_IGN);
}

static void kill_reap(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static bool wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0;
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return 0;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl = sizeof(ss);

	return getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ? 0 : addr_port(&ss);
}

/* Abortive close: an RST, no TIME_WAIT (see the top of this file). */
static void close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Bind a TCP socket of family to addr (network order for AF_INET) : port. fd or -errno. */
static int bind_tcp(int family, const void *addr, uint16_t port, bool reuseaddr, bool dualstack)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, zero = 0, r;

	if (fd < 0)
		return -errno;
	if (reuseaddr)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };

		if (dualstack)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		memcpy(&a.sin6_addr, addr, sizeof(a.sin6_addr));
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

		memcpy(&a.sin_addr, addr, sizeof(a.sin_addr));
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	}
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* What a real server does with a port it was given: [::]:port, dual-stack, SO_REUSEADDR. */
static int server_socket(uint16_t port)
{
	return bind_tcp(AF_INET6, &in6addr_any, port, true, true);
}

/* Connect to 127.0.0.1:port, at most IO_MS. fd (non-blocking) or -errno. */
static int connect_loopback(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
	socklen_t el = sizeof(err);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		err = errno;
		close(fd);
		return -err;
	}
	if (!wait_fd(fd, POLLOUT, IO_MS)) {
		close_rst(fd);
		return -ETIMEDOUT;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err) {
		close(fd);
		return -err;
	}
	return fd;
}

static bool xfer(int from, int to, char byte)
{
	char b = 0;

	return send(from, &byte, 1, MSG_NOSIGNAL) == 1 && wait_fd(to, POLLIN, IO_MS) &&
	       recv(to, &b, 1, MSG_DONTWAIT) == 1 && b == byte;
}

/*
 * Connect to 127.0.0.1:port and swap a byte each way with what lfd (our
 * listener on port) accepts: the connection must come out of lfd, from our
 * client. An outcome, or -errno for a failure that is no collision.
 */
static int serve_check(int lfd, uint16_t port)
{
	struct sockaddr_storage peer = { 0 };
	socklen_t pl = sizeof(peer);
	int c = connect_loopback(port), a = -1, o = RACE_OK;

	if (c == -ECONNREFUSED || c == -ETIMEDOUT)
		return RACE_CONNECT;
	if (c < 0)
		return c;
	/* Nothing on our listener: the connection went to someone else's. */
	if (!wait_fd(lfd, POLLIN, IO_MS) ||
	    (a = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0 ||
	    addr_port(&peer) != local_port(c) || local_port(a) != port)
		o = RACE_MISROUTED;
	else if (!xfer(c, a, 'x') || !xfer(a, c, 'y'))
		o = RACE_XFER;
	close_rst(c);
	if (a >= 0)
		close(a);
	return o;
}

static void note_port(struct race_counts *c, uint16_t port)
{
	if (!c->port_min || port < c->port_min)
		c->port_min = port;
	if (port > c->port_max)
		c->port_max = port;
}

static void note_error(struct race_counts *c, int err)
{
	c->errors++;
	c->last_error = err;
}

/* One lease, one server on it, one connection to it, release. */
static void portd_attempt(struct shared *sh, struct portd *p, bool fd_kind, struct race_counts *c)
{
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l;
	int r, out = RACE_OK, lfd = -1;
	uint16_t port;
	bool mine;

	c->attempts++;
	o.ttl = LEASE_TTL;
	o.flags = fd_kind ? PORTD_FLAG_FD | PORTD_FLAG_TIE : 0;
	r = portd_lease(p, &o, &l, CALL_MS);
	if (r < 0) {
		note_error(c, r);
		return;
	}
	port = l.ports[0];
	note_port(c, port);
	/* Set, then look at the hammer's table (it does the reverse). */
	mine = !atomic_exchange(&sh->leased[port], 1);
	if (!mine)
		out = RACE_DOUBLE;
	else if (atomic_load(&sh->other[port]))
		out = RACE_SHARED;
	else if (fd_kind && l.nfds != 1)
		out = -EPROTO;
	else {
		lfd = fd_kind ? l.fds[0] : server_socket(port);
		if (lfd == -EADDRINUSE)
			out = RACE_BIND;
		else if (lfd < 0)
			out = lfd;
		else if (listen(lfd, 16) < 0)
			out = errno == EADDRINUSE ? RACE_LISTEN : -errno;
		else
			out = serve_check(lfd, port);
		if (!fd_kind && lfd >= 0)
			close(lfd);
	}
	portd_lease_close_fds(&l);
	if (mine)
		atomic_store(&sh->leased[port], 0); /* before the release: the lease is still live */
	if (out < 0)
		note_error(c, out);
	else
		c->outcome[out]++;
	r = portd_release(p, l.id, CALL_MS);
	if (r < 0)
		note_error(c, r);
}

/*
 * The naive way, as Python code usually does it: s = socket(); s.bind(('', 0));
 * port = s.getsockname()[1]; s.close(); then the server binds that port with
 * SO_REUSEADDR (http.server, redis, ...). The probe does not set SO_REUSEADDR.
 */
static void naive_attempt(struct shared *sh, struct race_counts *c)
{
	int probe, lfd, out;
	uint16_t port;
	bool mine;

	c->attempts++;
	probe = bind_tcp(AF_INET, &(struct in_addr){ htonl(INADDR_ANY) }, 0, false, false);
	if (probe < 0) {
		note_error(c, probe);
		return;
	}
	port = local_port(probe);
	note_port(c, port);
	/* The port is "ours" from the moment we read it. */
	mine = !atomic_exchange(&sh->claimed[port], 1);
	close(probe);
	if (!mine) {
		c->outcome[RACE_DOUBLE]++;
		return;
	}
	lfd = server_socket(port);
	if (lfd == -EADDRINUSE)
		out = RACE_BIND;
	else if (lfd < 0)
		out = lfd;
	else if (listen(lfd, 16) < 0)
		out = errno == EADDRINUSE ? RACE_LISTEN : -errno;
	else if (atomic_load(&sh->other[port]))
		out = RACE_SHARED; /* our bind worked beside a hammer socket with SO_REUSEADDR */
	else
		out = serve_check(lfd, port);
	if (lfd >= 0)
		close(lfd);
	atomic_store(&sh->claimed[port], 0);
	if (out < 0)
		note_error(c, out);
	else
		c->outcome[out]++;
}

static void worker_main(struct race *r, unsigned idx, enum race_mode mode, const char *sock,
			int ready_fd, int go_fd)
{
	struct worker_slot *ws = &r->sh->w[idx];
	struct portd *p = NULL;
	uint64_t deadline;
	char b = 'r';

	if (mode != RACE_NAIVE && portd_connect(sock, &p) < 0)
		_exit(2);
	if (write(ready_fd, &b, 1) != 1)
		_exit(3);
	close(ready_fd);
	/* The start: the parent closes the write end of go_fd, and read() sees EOF. */
	if (!wait_fd(go_fd, POLLIN, START_MS * 2) || read(go_fd, &b, 1) != 0)
		_exit(4);
	deadline = mono_ms() + r->cfg.duration_ms;
	for (uint64_t i = 0; i < r->cfg.max_iterations && mono_ms() < deadline; i++) {
		switch (mode) {
		case RACE_PORTD_FD:
			portd_attempt(r->sh, p, true, &ws->fd);
			break;
		case RACE_PORTD_NUMBER:
			portd_attempt(r->sh, p, false, &ws->number);
			break;
		case RACE_PORTD_ALTERNATE:
			if ((i + idx) % 2 == 0)
				portd_attempt(r->sh, p, true, &ws->fd);
			else
				portd_attempt(r->sh, p, false, &ws->number);
			break;
		case RACE_NAIVE:
			naive_attempt(r->sh, &ws->naive);
			break;
		}
	}
	portd_disconnect(p);
	_exit(0);
}

/* ---- the hammer ---- */

/* The hammer now holds a socket on port: count it, and look for a worker that thinks it is theirs. */
static void hammer_took(struct shared *sh, struct hammer_shared *hs, uint16_t port)
{
	atomic_fetch_add(&sh->other[port], 1);
	if (atomic_load(&sh->leased[port]))
		atomic_fetch_add_explicit(&hs->hits_leased, 1, memory_order_relaxed);
	if (atomic_load(&sh->claimed[port]))
		atomic_fetch_add_explicit(&hs->hits_claimed, 1, memory_order_relaxed);
}

static void hammer_dropped(struct shared *sh, uint16_t port)
{
	atomic_fetch_sub(&sh->other[port], 1);
}

static void hammer_ready(int fd)
{
	char b = 'h';

	if (write(fd, &b, 1) != 1)
		_exit(3);
	close(fd);
}

/*
 * bind(port 0) as fast as it can into a rotating pool: every address family
 * and address a program might use, half with SO_REUSEADDR, a quarter listening.
 */
static void hammer_binder(struct race *r, int ready_fd)
{
	struct hammer_shared *hs = &r->sh->binder;
	unsigned n = r->cfg.hammer_pool;
	struct held {
		int fd;
		uint16_t port;
	} *pool = calloc(n, sizeof(*pool));
	struct in_addr any = { htonl(INADDR_ANY) }, lo = { htonl(INADDR_LOOPBACK) },
		       lo2 = { htonl(INADDR_LOOPBACK + 1) };

	if (!pool)
		_exit(2);
	for (unsigned i = 0; i < n; i++)
		pool[i].fd = -1;
	for (uint64_t k = 0;; k++) {
		struct held *h = &pool[k % n];
		bool reuse = (k / 5) % 2, listening = (k / 10) % 4 == 0;
		int fd;

		if (h->fd >= 0) {
			hammer_dropped(r->sh, h->port);
			close(h->fd);
			h->fd = -1;
		}
		switch (k % 5) {
		case 0:
			fd = bind_tcp(AF_INET, &any, 0, reuse, false);
			break;
		case 1:
			fd = bind_tcp(AF_INET, &lo, 0, reuse, false);
			break;
		case 2:
			fd = bind_tcp(AF_INET6, &in6addr_any, 0, reuse, true);
			break;
		case 3:
			fd = bind_tcp(AF_INET6, &in6addr_loopback, 0, reuse, false);
			break;
		default:
			fd = bind_tcp(AF_INET, &lo2, 0, reuse, false);
			break;
		}
		if (fd < 0) {
			atomic_fetch_add_explicit(&hs->bind_errors, 1, memory_order_relaxed);
		} else {
			h->fd = fd;
			h->port = local_port(fd);
			hammer_took(r->sh, hs, h->port);
			if (listening)
				listen(fd, 8);
			atomic_fetch_add_explicit(&hs->binds, 1, memory_order_relaxed);
		}
		if (k + 1 == n)
			hammer_ready(ready_fd);
	}
}

/*
 * connect() to loopback listeners (its own, on 127.0.0.1 and [::1]) as fast
 * as it can, keeping the last hammer_conns connections open: their source
 * ports are ephemeral ports the kernel picked, held for a while.
 */
static void hammer_connector(struct race *r, int ready_fd)
{
	struct hammer_shared *hs = &r->sh->connector;
	unsigned n = r->cfg.hammer_conns;
	struct conn {
		int c, a;
		uint16_t port;
	} *ring = calloc(n, sizeof(*ring));
	struct sockaddr_storage dst[2] = { 0 };
	socklen_t dl[2] = { sizeof(dst[0]), sizeof(dst[1]) };
	struct in_addr lo = { htonl(INADDR_LOOPBACK) };
	int l[2];

	if (!ring)
		_exit(2);
	l[0] = bind_tcp(AF_INET, &lo, 0, false, false);
	l[1] = bind_tcp(AF_INET6, &in6addr_loopback, 0, false, false);
	for (int i = 0; i < 2; i++) {
		if (l[i] < 0 || listen(l[i], 1024) < 0 ||
		    getsockname(l[i], (struct sockaddr *)&dst[i], &dl[i]) < 0)
			_exit(2);
		hammer_took(r->sh, hs, addr_port(&dst[i]));
	}
	for (unsigned i = 0; i < n; i++)
		ring[i].c = ring[i].a = -1;
	hammer_ready(ready_fd);
	for (uint64_t k = 0;; k++) {
		struct conn *cn = &ring[k % n];
		int i = (int)(k % 2), c;

		if (cn->c >= 0) {
			hammer_dropped(r->sh, cn->port);
			close_rst(cn->c);
			close(cn->a);
			cn->c = cn->a = -1;
		}
		c = socket(dst[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&dst[i], dl[i]) < 0) {
			atomic_fetch_add_explicit(&hs->connect_errors, 1, memory_order_relaxed);
			if (c >= 0)
				close(c);
			continue;
		}
		cn->c = c;
		cn->port = local_port(c);
		hammer_took(r->sh, hs, cn->port);
		/* Loopback: the connection is established, accept() returns at once. */
		cn->a = accept4(l[i], NULL, NULL, SOCK_CLOEXEC);
		atomic_fetch_add_explicit(&hs->connects, 1, memory_order_relaxed);
	}
}

/* Read n bytes from fd within ms. */
static bool read_n(int fd, size_t n, int ms)
{
	char buf[64];
	uint64_t end = mono_ms() + (uint64_t)ms;

	while (n > 0) {
		uint64_t now = mono_ms();
		ssize_t got;

		if (now >= end || !wait_fd(fd, POLLIN, (int)(end - now)))
			return false;
		got = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));
		if (got <= 0)
			return false;
		n -= (size_t)got;
	}
	return true;
}

struct race *race_new(const struct race_config *c)
{
	struct race *r;

	if (c->workers < 1 || c->workers > RACE_MAX_WORKERS || c->duration_ms == 0 ||
	    c->hammer_pool < 1 || c->hammer_conns < 1) {
		errno = EINVAL;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->cfg = *c;
	r->sh = mmap(NULL, sizeof(*r->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r->sh == MAP_FAILED) {
		free(r);
		return NULL;
	}
	return r;
}

void race_free(struct race *r)
{
	if (!r)
		return;
	race_hammer_stop(r);
	munmap(r->sh, sizeof(*r->sh));
	free(r);
}

int race_hammer_start(struct race *r)
{
	pid_t parent = getpid();
	int p[2];

	if (r->hammer[0] > 0)
		return -EBUSY;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	for (int i = 0; i < 2; i++) {
		r->hammer[i] = fork();
		if (r->hammer[i] < 0) {
			int e = -errno;
			close(p[0]);
			close(p[1]);
			race_hammer_stop(r);
			return e;
		}
		if (r->hammer[i] == 0) {
			child_init(parent);
			close(p[0]);
			if (i == 0)
				hammer_binder(r, p[1]);
			else
				hammer_connector(r, p[1]);
			_exit(0);
		}
	}
	close(p[1]);
	if (!read_n(p[0], 2, START_MS)) {
		close(p[0]);
		race_hammer_stop(r);
		return -ETIMEDOUT;
	}
	close(p[0]);
	return 0;
}

void race_hammer_stop(struct race *r)
{
	for (int i = 0; i < 2; i++) {
		kill_reap(r->hammer[i]);
		r->hammer[i] = 0;
	}
}

void race_hammer_counts(const struct race *r, struct race_hammer_counts *out)
{
	const struct hammer_shared *h[2] = { &r->sh->binder, &r->sh->connector };

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 2; i++) {
		out->binds += atomic_load(&h[i]->binds);
		out->bind_errors += atomic_load(&h[i]->bind_errors);
		out->connects += atomic_load(&h[i]->connects);
		out->connect_errors += atomic_load(&h[i]->connect_errors);
		out->hits_leased += atomic_load(&h[i]->hits_leased);
		out->hits_claimed += atomic_load(&h[i]->hits_claimed);
	}
}

static void add_counts(struct race_counts *sum, const struct race_counts *c)
{
	sum->attempts += c->attempts;
	for (int i = 0; i < RACE_NOUTCOMES; i++)
		sum->outcome[i] += c->outcome[i];
	sum->errors += c->errors;
	if (c->errors)
		sum->last_error = c->last_error;
	if (c->port_min && (!sum->port_min || c->port_min < sum->port_min))
		sum->port_min = c->port_min;
	if (c->port_max > sum->port_max)
		sum->port_max = c->port_max;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Wait for the workers until deadline (monotonic ms), then kill the rest; all reaped. */
static void reap_workers(const pid_t *pids, unsigned n, uint64_t deadline, unsigned *failed,
			 uint64_t *last_exit)
{
	struct pollfd pf[RACE_MAX_WORKERS];
	unsigned left = 0;

	for (unsigned i = 0; i < n; i++) {
		pf[i].fd = pidfd_open(pids[i], 0);
		pf[i].events = POLLIN;
		if (pf[i].fd >= 0) {
			left++;
		} else { /* cannot happen for our own unreaped child; be safe */
			kill_reap(pids[i]);
			(*failed)++;
		}
	}
	while (left > 0) {
		uint64_t now = mono_ms();
		int r;

		if (now >= deadline)
			break;
		r = poll(pf, n, (int)(deadline - now));
		if (r < 0 && errno != EINTR)
			break;
		for (unsigned i = 0; i < n && r > 0; i++) {
			int status;

			if (pf[i].fd < 0 || !(pf[i].revents & POLLIN))
				continue;
			if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
			    WEXITSTATUS(status) != 0)
				(*failed)++;
			close(pf[i].fd);
			pf[i].fd = -1;
			left--;
			*last_exit = mono_ms();
		}
	}
	for (unsigned i = 0; i < n; i++)
		if (pf[i].fd >= 0) {
			kill_reap(pids[i]);
			close(pf[i].fd);
			(*failed)++;
		}
}

int race_run(struct race *r, enum race_mode mode, const char *sock, struct race_result *out)
{
	struct shared *sh = r->sh;
	unsigned n = r->cfg.workers, started = 0;
	pid_t pids[RACE_MAX_WORKERS], parent = getpid();
	struct race_hammer_counts h0, h1;
	uint64_t t0, last = 0;
	int ready[2], go[2], e = 0;

	memset(out, 0, sizeof(*out));
	out->workers = n;
	for (unsigned p = 0; p < NPORTS; p++) {
		atomic_store_explicit(&sh->leased[p], 0, memory_order_relaxed);
		atomic_store_explicit(&sh->claimed[p], 0, memory_order_relaxed);
	}
	memset(sh->w, 0, sizeof(sh->w[0]) * n);
	if (pipe2(ready, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(go, O_CLOEXEC) < 0) {
		e = -errno;
		close(ready[0]);
		close(ready[1]);
		return e;
	}
	for (; started < n; started++) {
		pid_t pid = fork();

		if (pid < 0) {
			e = -errno;
			break;
		}
		if (pid == 0) {
			child_init(parent);
			close(ready[0]);
			close(go[1]);
			worker_main(r, started, mode, sock, ready[1], go[0]);
		}
		pids[started] = pid;
	}
	close(ready[1]);
	close(go[0]);
	if (!e && !read_n(ready[0], n, START_MS))
		e = -ETIMEDOUT; /* a worker could not connect to portd, or died */
	close(ready[0]);
	if (e) {
		for (unsigned i = 0; i < started; i++)
			kill_reap(pids[i]);
		close(go[1]); /* only now: EOF on it is the start signal */
		return e;
	}
	race_hammer_counts(r, &h0);
	t0 = mono_ms();
	close(go[1]); /* go */
	reap_workers(pids, n, t0 + r->cfg.duration_ms + GRACE_MS, &out->failed_workers, &last);
	race_hammer_counts(r, &h1);
	out->hammer_running = true;
	for (int i = 0; i < 2; i++)
		if (r->hammer[i] <= 0 || waitpid(r->hammer[i], NULL, WNOHANG) != 0) {
			out->hammer_running = false; /* it died (and is reaped now) or never started */
			r->hammer[i] = 0;
		}
	out->elapsed_ms = last > t0 ? last - t0 : 1;
	out->hammer.binds = h1.binds - h0.binds;
	out->hammer.bind_errors = h1.bind_errors - h0.bind_errors;
	out->hammer.connects = h1.connects - h0.connects;
	out->hammer.connect_errors = h1.connect_errors - h0.connect_errors;
	out->hammer.hits_leased = h1.hits_leased - h0.hits_leased;
	out->hammer.hits_claimed = h1.hits_claimed - h0.hits_claimed;

	out->min_ok_fd = out->min_ok_number = out->min_ok_naive = UINT64_MAX;
	for (unsigned i = 0; i < n; i++) {
		const struct worker_slot *ws = &sh->w[i];

		add_counts(&out->fd, &ws->fd);
		add_counts(&out->number, &ws->number);
		add_counts(&out->naive, &ws->naive);
		out->min_ok_fd = min_u64(out->min_ok_fd, ws->fd.outcome[RACE_OK]);
		out->min_ok_number = min_u64(out->min_ok_number, ws->number.outcome[RACE_OK]);
		out->min_ok_naive = min_u64(out->min_ok_naive, ws->naive.outcome[RACE_OK]);
	}
	return 0;
}

uint64_t race_collisions(const struct race_counts *c)
{
	uint64_t n = 0;

	for (int i = RACE_OK + 1; i < RACE_NOUTCOMES; i++)
		n += c->outcome[i];
	return n;
}

const char *race_outcome_name(enum race_outcome o)
{
	static const char *const names[RACE_NOUTCOMES] = {
		[RACE_OK] = "ok",
		[RACE_DOUBLE] = "in two live leases",
		[RACE_SHARED] = "held by the hammer too",
		[RACE_BIND] = "bind EADDRINUSE",
		[RACE_LISTEN] = "listen EADDRINUSE",
		[RACE_CONNECT] = "connect refused",
		[RACE_MISROUTED] = "connection went elsewhere",
		[RACE_XFER] = "exchange failed",
	};

	return (unsigned)o < RACE_NOUTCOMES ? names[o] : "?";
}

/* ---- environment ---- */

#define PORT_RANGE_SYSCTL "/proc/sys/net/ipv4/ip_local_port_range"

int race_port_range_get(uint16_t *lo, uint16_t *hi)
{
	FILE *f = fopen(PORT_RANGE_SYSCTL, "re");
	unsigned a, b;
	int n;

	if (!f)
		return -errno;
	n = fscanf(f, "%u %u", &a, &b);
	fclose(f);
	if (n != 2 || a < 1 || a > b || b > 65535)
		return -EIO;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

int race_port_range_set(uint16_t lo, uint16_t hi)
{
	char buf[32];
	int fd = open(PORT_RANGE_SYSCTL, O_WRONLY | O_CLOEXEC), len, e = 0;

	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%u %u\n", lo, hi);
	if (write(fd, buf, (size_t)len) != len)
		e = -errno;
	close(fd);
	return e;
}

int race_parse_range(const char *s, uint16_t *lo, uint16_t *hi)
{
	char *end;
	unsigned long a, b;

	errno = 0;
	a = strtoul(s, &end, 10);
	if (end == s || *end != '-')
		return -EINVAL;
	s = end + 1;
	b = strtoul(s, &end, 10);
	if (errno || end == s || *end || a < 1 || a > b || b > 65535)
		return -EINVAL;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

static void daemon_child(void *parent)
{
	child_init(*(pid_t *)parent); /* PDEATHSIG survives exec: portd dies with us */
}

int race_daemon_start(struct race_daemon *d, const char *bin, const char *const *args)
{
	const char *argv[60];
	size_t n = 0;
	pid_t parent = getpid();

	memset(d, 0, sizeof(*d));
	strcpy(d->dir, "/tmp/portd-race.XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->sock, sizeof(d->sock), "%s/portd.sock", d->dir);
	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	for (; args && *args && n < sizeof(argv) / sizeof(argv[0]) - 1; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	d->pid = spawn_ready(argv, daemon_child, &parent, START_MS);
	if (d->pid < 0) {
		int e = d->pid;

		d->pid = 0;
		unlink(d->sock);
		rmdir(d->dir);
		return e;
	}
	return 0;
}

int race_daemon_stop(struct race_daemon *d)
{
	int status = 0, pfd, r = 0;

	if (d->pid <= 0)
		return 0;
	pfd = pidfd_open(d->pid, 0);
	kill(d->pid, SIGTERM);
	if (pfd < 0 || !wait_fd(pfd, POLLIN, 10000)) {
		kill(d->pid, SIGKILL);
		r = -ETIMEDOUT;
	}
	if (pfd >= 0)
		close(pfd);
	while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!r && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		r = -ECHILD;
	d->pid = 0;
	unlink(d->sock);
	rmdir(d->dir);
	return r;
}

int race_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

const char *race_default_portd(void)
{
	static char path[PATH_MAX];
	ssize_t n;
	char *slash;

	if (getenv("PORTD_BIN") && *getenv("PORTD_BIN"))
		return getenv("PORTD_BIN");
	n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n <= 0)
		return "portd";
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (!slash || (size_t)(slash - path) + sizeof("/../daemon/portd") > sizeof(path))
		return "portd";
	strcpy(slash, "/../daemon/portd");
	return path;
}
