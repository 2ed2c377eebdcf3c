/*
 * perf: the loads.
 *
 * perf_run() forks the clients of a job, lets each connect and report ready
 * on a pipe, then starts them all at once by closing a second pipe they
 * block on. Each client times every operation with CLOCK_MONOTONIC and
 * writes the durations (ns, uint32) into shared memory; only operations that
 * start inside the window [from, to) count, after a warm-up. The parent merges
 * the series and computes the percentiles.
 *
 * The servers the baselines run against live here too: the bare SEQPACKET
 * echo (one process per client, blocking calls, the floor for a round trip
 * with an fd) and the trivial lease server (portd's protocol and portd's
 * system calls, nothing else).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "fdpass.h"
#include "perf.h"
#include "portd.h"
#include "protocol.h"

/* Datagram sizes of a one-port LEASE request and its reply, so the bare round trip carries the same bytes. */
#define BARE_REQ_LEN (PORTD_HDR_SIZE + PORTD_LEASE_REQ_SIZE)
#define BARE_REP_LEN (PORTD_HDR_SIZE + PORTD_LEASE_REP_SIZE + 2)
#define MAX_ERRORS 1000

struct slot {
	uint64_t ops, errors;
	uint64_t last_end; /* end of the last operation counted */
	int last_error;
	uint32_t na, nb;
};

struct shm {
	uint64_t from, to;
	struct slot slot[PERF_MAX_CLIENTS];
};

static struct shm *shm;
static uint32_t *samples; /* [client][2][PERF_SAMPLE_CAP] */
static uint32_t *merged;

static uint32_t *series(unsigned client, unsigned which)
{
	return samples + ((size_t)client * 2 + which) * PERF_SAMPLE_CAP;
}

int perf_load_init(void)
{
	size_t len = (size_t)PERF_MAX_CLIENTS * 2 * PERF_SAMPLE_CAP * sizeof(uint32_t);

	shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	samples = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	merged = malloc((size_t)PERF_MAX_CLIENTS * PERF_SAMPLE_CAP * sizeof(uint32_t));
	if (shm == MAP_FAILED || samples == MAP_FAILED || !merged)
		return -ENOMEM;
	return 0;
}

const char *perf_kind_name(enum perf_kind k)
{
	switch (k) {
	case KIND_FD: return "fd";
	case KIND_FD_TIE: return "fd+tie";
	case KIND_NUMBER: return "number";
	case KIND_NUMBER_TIE: return "number+tie";
	}
	return "?";
}

static uint32_t clamp_ns(uint64_t d)
{
	return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

/* ---- the kernel work of one lease: exactly daemon/hold.c's hold_bind() for TCP ---- */

static int hold_like_bind(uint16_t want, uint16_t *port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT, .sin6_port = htons(want) };
	socklen_t al = sizeof(a);
	int one = 1, zero = 0;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	*port = ntohs(a.sin6_port);
	return fd;
}

/* ---- client loops ---- */

struct client {
	const struct perf_job *job;
	unsigned idx;
	struct slot *s;
	uint32_t *a, *b;
	struct portd *p;   /* OP_LEASE */
	int fd;            /* OP_BARE*: our end of the pair */
	uint16_t next_port;/* OP_BIND with bind_lo: the port to bind next */
};

static void client_error(struct client *c, int err)
{
	c->s->errors++;
	c->s->last_error = err;
}

static void record(struct client *c, uint64_t t0, uint64_t t1, uint64_t t2)
{
	struct slot *s = c->s;

	if (t0 < shm->from)
		return;
	s->ops++;
	s->last_end = t2 ? t2 : t1;
	if (s->na < PERF_SAMPLE_CAP)
		c->a[s->na++] = clamp_ns(t1 - t0);
	if (t2 && s->nb < PERF_SAMPLE_CAP)
		c->b[s->nb++] = clamp_ns(t2 - t1);
}

static int op_bind(struct client *c)
{
	const struct perf_job *j = c->job;
	uint16_t port;
	uint64_t t0 = perf_now_ns();
	int fd = hold_like_bind(c->next_port, &port);

	if (j->bind_lo) {
		/* As portd's range source: the next port after the last, wrapping past the held ones. */
		c->next_port = c->next_port >= j->bind_hi ? (uint16_t)(j->bind_lo + j->hold) : c->next_port + 1;
	}
	if (fd < 0)
		return fd;
	close(fd);
	record(c, t0, perf_now_ns(), 0);
	return 0;
}

static int op_bare(struct client *c, bool with_fd)
{
	uint8_t req[BARE_REQ_LEN] = { 0 }, rep[BARE_REP_LEN + 16];
	int fds[1] = { -1 };
	size_t nfds = 1;
	uint64_t t0 = perf_now_ns(), t1;
	ssize_t n;

	n = fdpass_send(c->fd, req, sizeof(req), NULL, 0, 0);
	if (n < 0)
		return (int)n;
	n = fdpass_recv(c->fd, rep, sizeof(rep), fds, &nfds, 0);
	t1 = perf_now_ns();
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	if (nfds != (with_fd ? 1u : 0u)) {
		fdpass_close_all(fds, nfds);
		return -EPROTO;
	}
	fdpass_close_all(fds, nfds);
	record(c, t0, t1, 0);
	return 0;
}

static int op_lease(struct client *c)
{
	static const uint32_t flags[] = {
		[KIND_FD] = PORTD_FLAG_FD,
		[KIND_FD_TIE] = PORTD_FLAG_FD | PORTD_FLAG_TIE,
		[KIND_NUMBER] = 0,
		[KIND_NUMBER_TIE] = PORTD_FLAG_TIE,
	};
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l;
	uint64_t t0, t1, t2;
	int r;

	o.flags = flags[c->job->kind];
	o.ttl = 600;
	t0 = perf_now_ns();
	r = portd_lease(c->p, &o, &l, 5000);
	t1 = perf_now_ns();
	if (r < 0)
		return r;
	r = portd_release(c->p, l.id, 5000);
	t2 = perf_now_ns();
	portd_lease_close_fds(&l); /* the last reference: the socket goes away here */
	if (r < 0)
		return r;
	record(c, t0, t1, t2);
	return 0;
}

/* "@name" is an abstract address (as portpicker writes it), else a path. */
static socklen_t unix_addr(const char *addr, struct sockaddr_un *sa)
{
	size_t len = strlen(addr);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len >= sizeof(sa->sun_path))
		len = sizeof(sa->sun_path) - 1;
	memcpy(sa->sun_path, addr, len);
	if (addr[0] == '@') {
		sa->sun_path[0] = '\0'; /* Python binds it with exactly this length, no trailing NUL */
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	return (socklen_t)sizeof(*sa);
}

/* One portserver request: a connection per request, as portpicker does. */
static int op_portserver(struct client *c)
{
	struct sockaddr_un sa;
	socklen_t sl = unix_addr(c->job->sock, &sa);
	char buf[64];
	size_t got = 0;
	uint64_t t0 = perf_now_ns(), t1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), len, e = 0;
	long port;

	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%d\n", (int)c->job->owner);
	if (connect(fd, (struct sockaddr *)&sa, sl) < 0 || write(fd, buf, (size_t)len) != len) {
		e = -errno;
		close(fd);
		return e;
	}
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got))
			break;
	}
	close(fd);
	t1 = perf_now_ns();
	buf[got] = '\0';
	port = strtol(buf, NULL, 10);
	if (port <= 0 || port > 65535)
		return -EADDRNOTAVAIL; /* the server had no port for us */
	record(c, t0, t1, 0);
	return 0;
}

static int client_setup(struct client *c)
{
	const struct perf_job *j = c->job;

	if (j->op == OP_LEASE)
		return portd_connect(j->sock, &c->p);
	if (j->op == OP_BIND) {
		/* Hold j->hold sockets, as portd would hold its leases' (kept until exit). */
		for (unsigned i = 0; i < j->hold; i++) {
			uint16_t port;
			int fd = hold_like_bind(j->bind_lo ? (uint16_t)(j->bind_lo + i) : 0, &port);
			if (fd < 0)
				return fd;
		}
		c->next_port = j->bind_lo ? (uint16_t)(j->bind_lo + j->hold) : 0;
	}
	return 0;
}

static void client_loop(struct client *c)
{
	const struct perf_job *j = c->job;

	for (;;) {
		uint64_t now = perf_now_ns();
		int r = 0;

		if (now >= shm->to || c->s->ops >= j->max_ops)
			break;
		switch (j->op) {
		case OP_BIND: r = op_bind(c); break;
		case OP_BARE: r = op_bare(c, false); break;
		case OP_BARE_FD: r = op_bare(c, true); break;
		case OP_LEASE: r = op_lease(c); break;
		case OP_PORTSERVER: r = op_portserver(c); break;
		}
		if (r < 0) {
			client_error(c, r);
			if (c->s->errors >= MAX_ERRORS || r == -ECONNRESET || r == -EPIPE)
				break;
		}
	}
}

/* ---- the bare server ---- */

pid_t perf_bare_server_start(int fd, bool with_fd, int cpu)
{
	pid_t parent = getpid(), pid = fork();

	if (pid != 0) {
		if (pid > 0)
			perf_child_track(pid);
		return pid;
	}
	perf_child_init(parent);
	perf_pin(0, cpu);
	/* Only our end: another client's end held here would keep its server from seeing EOF. */
	if (fd != 3 && dup2(fd, 3) < 0)
		_exit(1);
	fd = 3;
	close_range(4, ~0u, 0);
	uint16_t port;
	int sock = hold_like_bind(0, &port); /* the fd every reply carries, as a lease reply would */
	uint8_t req[256], rep[BARE_REP_LEN] = { 0 };

	if (sock < 0)
		_exit(1);
	for (;;) {
		ssize_t n = recv(fd, req, sizeof(req), 0);
		if (n <= 0)
			_exit(n == 0 ? 0 : 1);
		if (fdpass_send(fd, rep, sizeof(rep), &sock, with_fd ? 1 : 0, 0) < 0)
			_exit(1);
	}
}

/* ---- running a job ---- */

static void merge(const struct perf_job *j, unsigned which, struct lat *out)
{
	size_t n = 0;

	for (unsigned i = 0; i < j->clients; i++) {
		uint32_t cnt = which ? shm->slot[i].nb : shm->slot[i].na;
		memcpy(merged + n, series(i, which), cnt * sizeof(uint32_t));
		n += cnt;
	}
	lat_compute(merged, n, out);
}

int perf_run(const struct perf_job *j, struct perf_result *out)
{
	pid_t parent = getpid(), kids[PERF_MAX_CLIENTS] = { 0 }, servers[PERF_MAX_CLIENTS] = { 0 };
	int pairs[PERF_MAX_CLIENTS][2], ready[2], go[2], e = 0;
	unsigned started = 0, ok = 0;
	uint64_t cpu0 = 0, cpu1 = 0, t_cpu0 = 0, t_cpu1 = 0, kcpu0 = 0, kcpu1 = 0, mach0 = 0, mach1 = 0;
	char ch;

	memset(out, 0, sizeof(*out));
	out->server_cpu = out->server_us_per_op = out->clients_cpu = out->machine_busy = -1;
	if (j->clients < 1 || j->clients > PERF_MAX_CLIENTS)
		return -EINVAL;
	memset(shm, 0, sizeof(*shm));
	shm->from = shm->to = UINT64_MAX;
	for (unsigned i = 0; i < j->clients; i++)
		pairs[i][0] = pairs[i][1] = -1;
	ready[0] = ready[1] = go[0] = go[1] = -1;
	/* The bare servers first: a server holding a copy of go[1] would keep every client waiting. */
	for (unsigned i = 0; i < j->clients && (j->op == OP_BARE || j->op == OP_BARE_FD); i++) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pairs[i]) < 0) {
			e = -errno;
			goto out;
		}
		servers[i] = perf_bare_server_start(pairs[i][1], j->op == OP_BARE_FD, j->server_cpu);
		close(pairs[i][1]);
		pairs[i][1] = -1;
		if (servers[i] < 0) {
			e = -errno;
			goto out;
		}
	}
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) {
		e = -errno;
		goto out;
	}
	for (unsigned i = 0; i < j->clients; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			e = -errno;
			goto out;
		}
		if (pid == 0) {
			struct client c = { .job = j, .idx = i, .s = &shm->slot[i], .a = series(i, 0),
					    .b = series(i, 1), .fd = pairs[i][0] };
			int r;

			perf_child_init(parent);
			perf_pin(0, j->client_cpu);
			close(ready[0]);
			close(go[1]);
			r = client_setup(&c);
			if (r < 0) {
				client_error(&c, r);
				_exit(2);
			}
			if (write(ready[1], "r", 1) != 1)
				_exit(2);
			/* Blocks until the parent closes the other end: every client starts at once. */
			while (read(go[0], &ch, 1) < 0 && errno == EINTR)
				;
			client_loop(&c);
			portd_disconnect(c.p);
			_exit(0);
		}
		kids[i] = pid;
		perf_child_track(pid);
		started++;
	}
	close(ready[1]);
	ready[1] = -1;
	close(go[0]);
	go[0] = -1;
	while (ok < started && perf_wait_readable(ready[0], 10000) && read(ready[0], &ch, 1) == 1)
		ok++;
	shm->from = perf_now_ns() + (uint64_t)j->warmup_ms * 1000000u;
	shm->to = shm->from + (uint64_t)j->duration_ms * 1000000u;
	__sync_synchronize();
	close(go[1]);
	go[1] = -1;
	/* The parent has nothing else to do: read the CPU clocks at both ends of the window. */
	while (perf_now_ns() < shm->from)
		perf_sleep_ms(1);
	cpu0 = j->server_pid > 0 ? perf_cpu_ns(j->server_pid) : 0;
	for (unsigned i = 0; i < started; i++)
		kcpu0 += perf_cpu_ns(kids[i]);
	mach0 = perf_machine_busy_ns();
	t_cpu0 = perf_now_ns();
	while (perf_now_ns() < shm->to)
		perf_sleep_ms(1);
	cpu1 = j->server_pid > 0 ? perf_cpu_ns(j->server_pid) : 0;
	for (unsigned i = 0; i < started; i++)
		kcpu1 += perf_cpu_ns(kids[i]);
	mach1 = perf_machine_busy_ns();
	t_cpu1 = perf_now_ns();
out:
	if (go[1] >= 0) { /* set-up failed: release whoever started, with an empty window */
		shm->from = shm->to = 0;
		close(go[1]);
	}
	for (unsigned i = 0; i < started; i++) {
		int st = perf_child_wait(kids[i], j->warmup_ms + j->duration_ms + 30000);
		if (st != 0)
			out->failed++;
	}
	for (unsigned i = 0; i < j->clients; i++) {
		if (pairs[i][0] >= 0)
			close(pairs[i][0]); /* the bare server sees EOF and exits */
		if (servers[i] > 0)
			perf_child_wait(servers[i], 5000);
	}
	if (ready[0] >= 0)
		close(ready[0]);
	if (ready[1] >= 0)
		close(ready[1]);
	if (go[0] >= 0)
		close(go[0]);
	if (e < 0)
		return e;
	out->failed += j->clients - started;
	for (unsigned i = 0; i < j->clients; i++) {
		out->ops += shm->slot[i].ops;
		out->errors += shm->slot[i].errors;
		if (shm->slot[i].last_error)
			out->last_error = shm->slot[i].last_error;
	}
	/*
	 * The window, unless every client stopped early (max_ops): then up to
	 * the last operation's end, so the rate stays a rate.
	 */
	uint64_t last = 0;
	for (unsigned i = 0; i < j->clients; i++)
		if (shm->slot[i].last_end > last)
			last = shm->slot[i].last_end;
	if (last > shm->to || !last)
		last = shm->to;
	out->seconds = (double)(last - shm->from) / 1e9;
	out->from_ns = shm->from;
	out->to_ns = shm->to;
	out->rate = out->seconds > 0 ? (double)out->ops / out->seconds : 0;
	/*
	 * CPU clocks were read at the ends of the whole window. If every client
	 * stopped early (max_ops), the processes' CPU time still all falls inside
	 * the shorter window, so divide by that; the machine's busy time does
	 * not (anything else running goes on), so it is left unknown then.
	 */
	bool early = last + 1000000u < shm->to;
	double span = early ? (double)(last - shm->from) : (double)(t_cpu1 - t_cpu0);

	if (span > 0 && kcpu1 >= kcpu0)
		out->clients_cpu = (double)(kcpu1 - kcpu0) / span;
	if (!early && t_cpu1 > t_cpu0 && mach0 && mach1 >= mach0)
		out->machine_busy = (double)(mach1 - mach0) / (double)(t_cpu1 - t_cpu0);
	if (cpu0 && cpu1 > cpu0 && span > 0) {
		out->server_cpu = (double)(cpu1 - cpu0) / span;
		if (out->ops)
			out->server_us_per_op = (double)(cpu1 - cpu0) / 1e3 / (double)out->ops;
	}
	merge(j, 0, &out->a);
	merge(j, 1, &out->b);
	return 0;
}

/* ---- the trivial lease server ---- */

#define TRIVIAL_SLOTS 65536

struct tslot {
	int fd;    /* the held socket, -1 = free */
	int conn;  /* connection that took it */
};

static void trivial_reply(int fd, const void *buf, ssize_t len, const int *fds, size_t nfds)
{
	if (len > 0)
		fdpass_send(fd, buf, (size_t)len, fds, nfds, MSG_DONTWAIT);
}

/* Connections with a lease reply the client may not have read yet, by fd (as conn.c's nunread). */
static bool trivial_unread[65536];

/* As conn_prune(): the send queue and the pending error, after a request that follows a lease reply. */
static void trivial_prune(int fd)
{
	socklen_t len = sizeof(int);
	int queued, err;

	if (fd < 0 || fd >= (int)(sizeof(trivial_unread) / sizeof(trivial_unread[0])) || !trivial_unread[fd])
		return;
	if (ioctl(fd, SIOCOUTQ, &queued) == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
	    queued == 0)
		trivial_unread[fd] = false;
}

/* One request; false when the connection has nothing more (EAGAIN) or ended. */
static bool trivial_handle(int fd, struct tslot *slots, uint32_t *freelist, uint32_t *nfree)
{
	static uint8_t in[PORTD_MSG_MAX];
	uint8_t outb[256];
	int fds[PORTD_FDS_MAX];
	size_t nfds = PORTD_FDS_MAX;
	struct proto_hdr h;
	ssize_t n = fdpass_recv(fd, in, sizeof(in), fds, &nfds, MSG_DONTWAIT);

	if (n == -EAGAIN || n == -EINTR)
		return false;
	if (n <= 0) {
		/* The connection ended: its leases end with it (bounded scan, only here). */
		for (uint32_t i = 0; i < TRIVIAL_SLOTS; i++)
			if (slots[i].fd >= 0 && slots[i].conn == fd) {
				close(slots[i].fd);
				slots[i].fd = -1;
				freelist[(*nfree)++] = i;
			}
		if (fd < (int)(sizeof(trivial_unread) / sizeof(trivial_unread[0])))
			trivial_unread[fd] = false;
		close(fd); /* also leaves the epoll set */
		return false;
	}
	trivial_prune(fd);
	fdpass_close_all(fds, nfds);
	if (proto_hdr_decode(in, (size_t)n, &h) < 0)
		return true;
	if (h.type == PORTD_MSG_HELLO) { /* libportd's first request on every connection */
		trivial_reply(fd, outb, proto_encode_hello_rep(outb, sizeof(outb), h.id, 0, 0), NULL, 0);
		return true;
	}
	if (h.type == PORTD_MSG_LEASE) {
		struct proto_lease_req m;
		struct proto_lease_rep rep = { 0 };
		uint16_t port;
		int s;

		if (proto_decode_lease_req(proto_body(in), (size_t)n - PORTD_HDR_SIZE, &m) < 0 || !*nfree) {
			trivial_reply(fd, outb, proto_encode_error(outb, sizeof(outb), h.type, h.id, PORTD_R_INVAL, 0),
				      NULL, 0);
			return true;
		}
		s = hold_like_bind(0, &port);
		if (s < 0) {
			trivial_reply(fd, outb, proto_encode_error(outb, sizeof(outb), h.type, h.id, PORTD_R_INTERNAL,
								   (uint32_t)-s), NULL, 0);
			return true;
		}
		uint32_t i = freelist[--*nfree];
		slots[i] = (struct tslot){ .fd = s, .conn = fd };
		rep.id = i + 1;
		rep.ttl = m.ttl ? m.ttl : 300;
		rep.flags = m.flags;
		rep.transport = m.transport;
		rep.count = 1;
		rep.ports[0] = port;
		trivial_reply(fd, outb, proto_encode_lease_rep(outb, sizeof(outb), h.id, &rep), &s,
			      (m.flags & PORTD_LEASE_F_FD) ? 1 : 0);
		if (fd < (int)(sizeof(trivial_unread) / sizeof(trivial_unread[0])))
			trivial_unread[fd] = true;
	} else if (h.type == PORTD_MSG_RELEASE) {
		struct proto_release_req m;

		if (proto_decode_release_req(proto_body(in), (size_t)n - PORTD_HDR_SIZE, &m) < 0 || !m.id ||
		    m.id > TRIVIAL_SLOTS || slots[m.id - 1].fd < 0) {
			trivial_reply(fd, outb, proto_encode_error(outb, sizeof(outb), h.type, h.id, PORTD_R_NOENT, 0),
				      NULL, 0);
			return true;
		}
		close(slots[m.id - 1].fd);
		slots[m.id - 1].fd = -1;
		freelist[(*nfree)++] = (uint32_t)(m.id - 1);
		trivial_reply(fd, outb, proto_encode_release_rep(outb, sizeof(outb), h.id, m.id), NULL, 0);
	} else {
		trivial_reply(fd, outb, proto_encode_error(outb, sizeof(outb), h.type, h.id, PORTD_R_BADTYPE, h.type),
			      NULL, 0);
	}
	return true;
}

static void trivial_main(int lfd)
{
	static struct tslot slots[TRIVIAL_SLOTS];
	static uint32_t freelist[TRIVIAL_SLOTS];
	uint32_t nfree = 0;
	struct epoll_event ev = { .events = EPOLLIN }, evs[64];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	for (uint32_t i = 0; i < TRIVIAL_SLOTS; i++) {
		slots[i].fd = -1;
		freelist[nfree++] = TRIVIAL_SLOTS - 1 - i;
	}
	ev.data.fd = lfd;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		_exit(1);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				if (c >= 0) {
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			/* As portd's conn.c: up to 32 requests per readiness report, until EAGAIN. */
			for (int k = 0; k < 32 && trivial_handle(fd, slots, freelist, &nfree); k++)
				;
		}
	}
}

int perf_trivial_start(struct perf_trivial *t, int cpu)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pid_t parent = getpid();
	int lfd, e;

	memset(t, 0, sizeof(*t));
	strcpy(t->dir, "/tmp/portd-perf-trivial.XXXXXX");
	if (!mkdtemp(t->dir))
		return -errno;
	snprintf(t->sock, sizeof(t->sock), "%s/trivial.sock", t->dir);
	strcpy(sa.sun_path, t->sock);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, SOMAXCONN) < 0) {
		e = -errno;
		if (lfd >= 0)
			close(lfd);
		unlink(t->sock);
		rmdir(t->dir);
		return e;
	}
	t->pid = fork();
	if (t->pid < 0) {
		e = -errno;
		close(lfd);
		unlink(t->sock);
		rmdir(t->dir);
		return e;
	}
	if (t->pid == 0) {
		perf_child_init(parent);
		perf_pin(0, cpu);
		trivial_main(lfd);
		_exit(0);
	}
	perf_child_track(t->pid);
	close(lfd);
	return 0;
}

void perf_trivial_stop(struct perf_trivial *t)
{
	if (t->pid > 0) {
		kill(t->pid, SIGKILL);
		perf_child_wait(t->pid, 5000);
		t->pid = 0;
	}
	if (t->dir[0]) {
		unlink(t->sock);
		rmdir(t->dir);
		t->dir[0] = '\0';
	}
}

/* ---- exec timing ---- */

int perf_exec_time(const char *const *argv, const char *const *envp, unsigned n, unsigned max_ms,
		   uint16_t range_lo, uint16_t range_hi, struct perf_exec_result *out)
{
	uint32_t *v = calloc(n ? n : 1, sizeof(*v)); /* 0 = a failed run */
	uint64_t end = perf_now_ns() + (uint64_t)max_ms * 1000000u;
	pid_t parent = getpid();

	memset(out, 0, sizeof(*out));
	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < n && perf_now_ns() < end; i++) {
		char buf[256];
		size_t got = 0;
		int p[2], st;
		uint64_t t0, t1;
		pid_t pid;

		if (pipe2(p, O_CLOEXEC) < 0)
			break;
		t0 = perf_now_ns();
		pid = fork();
		if (pid < 0) {
			close(p[0]);
			close(p[1]);
			break;
		}
		if (pid == 0) {
			perf_child_init(parent);
			dup2(p[1], 1);
			execve(argv[0], (char *const *)argv, (char *const *)envp);
			_exit(127);
		}
		perf_child_track(pid);
		close(p[1]);
		/* Read all it prints, as $(...) does: part of the cost. */
		while (perf_wait_readable(p[0], 10000)) {
			ssize_t r = read(p[0], buf + got, sizeof(buf) - 1 - got);
			if (r <= 0)
				break;
			got += (size_t)r;
			if (got == sizeof(buf) - 1)
				got = 0; /* keep only the tail */
		}
		close(p[0]);
		st = perf_child_wait(pid, 10000);
		t1 = perf_now_ns();
		buf[got] = '\0';
		out->runs++;
		if (st != 0) {
			out->failed++;
			continue;
		}
		v[i] = clamp_ns(t1 - t0);
		if (out->runs - out->failed == 1)
			snprintf(out->first_out, sizeof(out->first_out), "%.*s", (int)strcspn(buf, "\n"), buf);
		long port = strtol(buf, NULL, 10);
		if (range_lo && port >= range_lo && port <= range_hi)
			out->out_in_range++;
	}
	/* v[] holds the successful runs at their indices; compact them. */
	size_t k = 0;
	for (unsigned i = 0; i < out->runs; i++)
		if (v[i])
			v[k++] = v[i];
	lat_compute(v, k, &out->lat);
	free(v);
	return 0;
}

/* ---- filling the table ---- */

#define FILL_WINDOW 32

int perf_fill(const char *sock, unsigned n, uint32_t ttl, uint32_t flags, uint64_t *t_first, uint64_t *t_last)
{
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd *p;
	unsigned sent = 0, got = 0, inflight = 0;
	int r = portd_connect(sock, &p);

	if (r < 0)
		return r;
	o.flags = flags;
	o.ttl = ttl;
	if (t_first)
		*t_first = perf_now_ns();
	/* Pipelined: up to FILL_WINDOW requests in flight on the one connection. */
	while (got < n) {
		while (inflight < FILL_WINDOW && sent < n) {
			r = portd_send_lease(p, &o, NULL);
			if (r == -EAGAIN)
				break;
			if (r < 0)
				goto out;
			sent++;
			inflight++;
		}
		if (!perf_wait_readable(portd_fd(p), 10000)) {
			r = -ETIMEDOUT;
			goto out;
		}
		for (;;) {
			struct portd_reply rep;

			r = portd_recv(p, &rep);
			if (r == -EAGAIN)
				break;
			if (r < 0)
				goto out;
			inflight--;
			if (rep.error) {
				r = rep.error;
				goto out;
			}
			portd_lease_close_fds(&rep.u.lease);
			got++;
		}
	}
	r = 0;
out:
	if (t_last)
		*t_last = perf_now_ns();
	portd_disconnect(p);
	return r < 0 ? r : (int)got;
}

pid_t perf_tied_holder_start(const char *sock, unsigned n, uint32_t ttl)
{
	pid_t parent = getpid(), pid;
	int p[2];
	char ch = 0;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(p[0]);
		close(p[1]);
		return e;
	}
	if (pid == 0) {
		perf_child_init(parent);
		close(p[0]);
		/* Leases tied to this process: they end when it dies. */
		if (perf_fill(sock, n, ttl, PORTD_FLAG_TIE, NULL, NULL) == (int)n && write(p[1], "r", 1) == 1)
			for (;;)
				pause();
		_exit(1);
	}
	perf_child_track(pid);
	close(p[1]);
	if (!perf_wait_readable(p[0], 60000) || read(p[0], &ch, 1) != 1 || ch != 'r') {
		close(p[0]);
		perf_child_wait(pid, 0);
		return -EIO;
	}
	close(p[0]);
	return pid;
}

/* ---- the probe: STATUS round trips, back to back ---- */

int perf_probe_start(struct perf_probe *pr, const char *sock, unsigned max_ms, int cpu)
{
	pid_t parent = getpid();
	int ready[2], go[2];
	char ch;

	memset(pr, 0, sizeof(*pr));
	memset(shm, 0, sizeof(*shm));
	if (pipe2(ready, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(go, O_CLOEXEC) < 0) {
		close(ready[0]);
		close(ready[1]);
		return -errno;
	}
	pr->pid = fork();
	if (pr->pid == 0) {
		struct slot *s = &shm->slot[0];
		uint32_t *a = series(0, 0);
		struct portd_status st;
		struct portd *p;
		uint64_t end, gone = 0;

		perf_child_init(parent);
		perf_pin(0, cpu);
		close(ready[0]);
		close(go[1]);
		/* Connected and accepted before the test starts: one STATUS answered. */
		if (portd_connect(sock, &p) < 0 || portd_status(p, &st, 5000) < 0)
			_exit(2);
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		while (read(go[0], &ch, 1) < 0 && errno == EINTR)
			;
		end = perf_now_ns() + (uint64_t)max_ms * 1000000u;
		for (;;) {
			uint64_t t0 = perf_now_ns(), t1;
			int r;

			/* Keep probing 50 ms after the table emptied: the tail of the work counts too. */
			if (t0 >= end || (gone && t0 > gone + 50000000u))
				break;
			r = portd_status(p, &st, 15000);
			t1 = perf_now_ns();
			if (r < 0) {
				s->errors++;
				s->last_error = r;
				break;
			}
			if (s->na < PERF_SAMPLE_CAP)
				a[s->na++] = clamp_ns(t1 - t0);
			if (!gone && st.leases == 0) {
				gone = t1;
				shm->from = t1; /* hand the moment over */
			}
		}
		portd_disconnect(p);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	if (pr->pid < 0) {
		close(ready[0]);
		close(go[1]);
		return -errno;
	}
	perf_child_track(pr->pid);
	pr->max_ms = max_ms;
	if (!perf_wait_readable(ready[0], 10000) || read(ready[0], &ch, 1) != 1) {
		close(ready[0]);
		close(go[1]);
		perf_child_wait(pr->pid, 0);
		return -EIO;
	}
	close(ready[0]);
	pr->go = go[1];
	return 0;
}

void perf_probe_go(struct perf_probe *pr)
{
	close(pr->go);
	pr->go = -1;
}

int perf_probe_finish(struct perf_probe *pr, uint64_t *gone_at, struct lat *rtt, unsigned over_ms[3])
{
	static const uint32_t limit_ns[3] = { 1000000, 5000000, 10000000 };
	int st;

	if (pr->go >= 0)
		perf_probe_go(pr);
	st = perf_child_wait(pr->pid, pr->max_ms + 20000);
	__sync_synchronize();
	*gone_at = shm->from;
	memcpy(merged, series(0, 0), shm->slot[0].na * sizeof(uint32_t));
	for (int k = 0; k < 3; k++) {
		over_ms[k] = 0;
		for (uint32_t i = 0; i < shm->slot[0].na; i++)
			over_ms[k] += merged[i] > limit_ns[k];
	}
	lat_compute(merged, shm->slot[0].na, rtt);
	return st == 0 ? 0 : -EIO;
}
