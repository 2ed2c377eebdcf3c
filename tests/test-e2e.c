/*
 * End-to-end: the real portd binary on a temporary socket, driven by the real
 * libportd and the real portctl. When run as root the whole suite moves into
 * a private network namespace first, so port ranges are quiet and nothing
 * here touches the host's ports.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pty.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "fdpass.h"
#include "portd.h"
#include "testutil.h"

#define T 5000 /* ms: timeout of every library call */

static bool private_netns;

static struct portd_lease lease_ok(struct portd *p, uint32_t flags, uint32_t ttl)
{
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l;
	int r;

	o.flags = flags;
	o.ttl = ttl;
	r = portd_lease(p, &o, &l, T);
	if (r < 0)
		fail_msg("portd_lease: %s", portd_strerror(r));
	assert_int_equal(l.count, 1);
	assert_int_not_equal(l.ports[0], 0);
	return l;
}

/* Is lease id among the caller's leases? */
static bool listed(struct portd *p, uint64_t id)
{
	struct portd_lease_info *v = NULL;
	int n = portd_list(p, &v, T);
	bool found = false;

	assert_true(n >= 0);
	for (int i = 0; i < n; i++)
		found |= v[i].id == id;
	free(v);
	return found;
}

/* Wait (bounded) until the daemon no longer lists id. */
static bool wait_gone(struct portd *p, uint64_t id, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end;) {
		if (!listed(p, id))
			return true;
		poll(NULL, 0, 10);
	}
	return !listed(p, id);
}


/* Wait (bounded) until d no longer lists lease id, on a connection of its own. */
static bool wait_gone_after(const struct daemon_proc *d, uint64_t id)
{
	struct portd *p = connect_ok(d);
	bool gone = wait_gone(p, id, 10000);
	portd_disconnect(p);
	return gone;
}

static bool wait_fds(pid_t pid, int want, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; now_ms() < end;) {
		if (count_fds(pid) == want)
			return true;
		poll(NULL, 0, 5);
	}
	if (count_fds(pid) == want)
		return true;
	char cmd[64];
	fprintf(stderr, "# daemon has %d fds, expected %d:\n", count_fds(pid), want);
	snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)pid);
	if (system(cmd) != 0)
		fprintf(stderr, "# (could not list them)\n");
	return false;
}


/* A listener on fd accepts a connection to port from IPv4 and IPv6 loopback. */
static void assert_serves(int lfd, uint16_t port)
{
	int fams[] = { AF_INET, AF_INET6 };

	for (size_t i = 0; i < 2; i++) {
		int c = tcp_connect(fams[i], port), a;
		assert_true(c >= 0);
		a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		assert_true(a >= 0);
		assert_int_equal(write(c, "x", 1), 1);
		char b;
		assert_int_equal(read(a, &b, 1), 1);
		close(a);
		close(c);
	}
}

static uint16_t sock_port(int fd, int *family)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	*family = ss.ss_family;
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- tests ---- */

/* The handed-over fd is the bound socket of the port reported, and it works after the lease ends. */
static void t_fd_lease(void **state)
{
	struct daemon_proc d = { 0 };
	int fam, v = -1;
	socklen_t vl = sizeof(v);

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	struct portd_lease l = lease_ok(p, PORTD_FLAG_FD | PORTD_FLAG_TIE, 60);
	assert_int_equal(l.nfds, 1);
	assert_int_equal(sock_port(l.fds[0], &fam), l.ports[0]);
	/* Kernel facts the design relies on: dual-stack [::] with SO_REUSEADDR. */
	assert_int_equal(fam, AF_INET6);
	assert_int_equal(getsockopt(l.fds[0], IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl), 0);
	assert_int_equal(v, 0);
	assert_int_equal(getsockopt(l.fds[0], SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
	assert_int_equal(v, 1);
	assert_true(l.flags & PORTD_FLAG_FD);
	assert_true(listed(p, l.id));

	assert_int_equal(listen(l.fds[0], 16), 0);
	assert_serves(l.fds[0], l.ports[0]);
	assert_int_equal(portd_release(p, l.id, T), 0);
	assert_false(listed(p, l.id));
	/* The lease ended, the daemon closed its copy; ours still serves. */
	assert_serves(l.fds[0], l.ports[0]);
	portd_lease_close_fds(&l);
	assert_int_equal(l.nfds, 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * A number lease from portctl: only the port on stdout; while held, a server
 * with SO_REUSEADDR binds and listens on it, one without gets EADDRINUSE.
 */
static void t_number_lease_portctl(void **state)
{
	struct daemon_proc d = { 0 };
	char out[256], err[512];
	int lfd = -1;

	daemon_start(&d, NULL);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--ttl", "60", NULL), 0);
	char *end;
	unsigned long port = strtoul(out, &end, 10);
	assert_true(port > 0 && port < 65536);
	assert_string_equal(end, "\n"); /* nothing but the number, for $(...) */

	assert_int_equal(try_bind_tcp((uint16_t)port, false, NULL), -EADDRINUSE);
	assert_int_equal(try_bind_tcp((uint16_t)port, true, &lfd), 0);
	assert_int_equal(listen(lfd, 16), 0);
	assert_serves(lfd, (uint16_t)port);
	close(lfd);

	/* Still held after our server went away. */
	assert_int_equal(try_bind_tcp((uint16_t)port, false, NULL), -EADDRINUSE);

	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", NULL), 0);
	char pbuf[16];
	snprintf(pbuf, sizeof(pbuf), "%lu", port);
	assert_non_null(strstr(out, pbuf));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", "--port", pbuf, NULL), 0);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", "--json", NULL), 0);
	assert_null(strstr(out, pbuf));

	/* --json output. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--ttl", "30", "--json", NULL), 0);
	assert_non_null(strstr(out, "\"ports\": ["));
	assert_non_null(strstr(out, "\"ttl\": 30"));
	daemon_stop(&d);
}

/*
 * DESIGN.md: a port held on [::] with SO_REUSEADDR is never handed out by
 * another socket's bind(port 0), from any address family, nor picked by connect().
 */
static void t_held_ports_not_autobound(void **state)
{
	enum { LEASES = 32, TRIES = 3000 };
	static uint8_t held[65536];
	struct daemon_proc d = { 0 };
	int hits = 0;

	memset(held, 0, sizeof(held));
	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	for (int i = 0; i < LEASES; i++)
		held[lease_ok(p, 0, 600).ports[0]] = 1;
	for (int i = 0; i < TRIES; i++) {
		int fam = i % 2 ? AF_INET6 : AF_INET, one = 1, fd, f;
		fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (i % 4 >= 2)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fam == AF_INET) {
			struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
			assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		} else {
			struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
			assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		}
		hits += held[sock_port(fd, &f)];
		close(fd);
	}
	assert_int_equal(hits, 0);

	/* Nor is it picked as the source port of an outgoing connection. */
	int lfd = -1, f;
	uint16_t lport;
	struct portd_lease srv = lease_ok(p, PORTD_FLAG_FD | PORTD_FLAG_TIE, 600);
	lfd = srv.fds[0];
	lport = srv.ports[0];
	assert_int_equal(listen(lfd, 128), 0);
	for (int i = 0; i < TRIES / 3; i++) {
		int c = tcp_connect(i % 2 ? AF_INET6 : AF_INET, lport), a;
		assert_true(c >= 0);
		hits += held[sock_port(c, &f)];
		a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		assert_true(a >= 0);
		close(c); /* client closes first: TIME_WAIT stays on the client's port */
		close(a);
	}
	assert_int_equal(hits, 0);
	portd_lease_close_fds(&srv);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* Renew moves the deadline; an unrenewed lease expires; the order proves it without timing. */
static void t_renew_expire(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_status st;
	uint32_t granted = 0;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	struct portd_lease a = lease_ok(p, 0, 1);
	assert_int_equal(a.ttl, 1);
	assert_int_equal(portd_renew(p, a.id, 120, &granted, T), 0);
	assert_int_equal(granted, 120);
	struct portd_lease b = lease_ok(p, 0, 1);
	assert_true(wait_gone(p, b.id, 10000));
	assert_true(listed(p, a.id));
	/* The expired lease's port is in reuse quarantine, still unavailable to bind(0)-style users. */
	assert_int_equal(portd_status(p, &st, T), 0);
	assert_int_equal(st.leases, 1);
	assert_true(st.quarantined >= 1);
	/* The daemon's own usage: a heap in use; its fds (what /proc shows) only when asked. */
	assert_true(st.heap_bytes > 0);
	assert_int_equal(st.open_fds, 0);
	assert_int_equal(portd_status_flags(p, PORTD_STATUS_COUNT_FDS, &st, T), 0);
	assert_int_equal(st.open_fds, count_fds(d.pid));
	assert_int_equal(portd_status_flags(p, 0x2, &st, T), -EINVAL);
	assert_int_equal(portd_send_status_flags(p, 0x80000000u, NULL), -EINVAL);

	assert_int_equal(portd_renew(p, 999999, 10, NULL, T), -PORTD_E_NOENT);
	assert_int_equal(portd_release(p, 999999, T), -PORTD_E_NOENT);
	assert_int_equal(portd_release(p, a.id, T), 0);
	assert_int_equal(portd_release(p, a.id, T), -PORTD_E_NOENT);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* Limits, each with its own error and detail; portctl explains them. */
static void t_limits(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l;
	char out[256], err[512];

	daemon_start(&d, "--max-leases-per-uid", "3", "--max-ttl", "100", "--default-ttl", "50", NULL);
	struct portd *p = connect_ok(&d);
	o.flags = 0;
	o.ttl = 101;
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_TTL);
	assert_int_equal(portd_detail(p), 100);
	o.ttl = 0;
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.ttl, 50);
	assert_int_equal(portd_renew(p, l.id, 101, NULL, T), -PORTD_E_TTL);
	lease_ok(p, 0, 10);
	lease_ok(p, 0, 10);
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_QUOTA_UID);
	assert_int_equal(portd_detail(p), 3);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", NULL), 1);
	assert_string_equal(out, "");
	assert_non_null(strstr(err, "limit"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--ttl", "1000", NULL), 1);
	assert_non_null(strstr(err, "100"));
	portd_disconnect(p);
	daemon_stop(&d);
}

struct child_result {
	int renew, release, release_port, list_n, own_lease, total, status;
	uint32_t open_fds;
};

/* Another uid can neither renew nor release nor see root's leases. */
static void t_other_uid(void **state)
{
	struct daemon_proc d = { 0 };
	struct child_result cr = { 0 };
	int pp[2], status;

	if (geteuid() != 0)
		skip();
	daemon_start(&d, "--socket-mode", "0666", "--max-leases", "3", "--max-leases-per-uid", "2", NULL);
	assert_int_equal(chmod(d.dir, 0755), 0);
	struct portd *p = connect_ok(&d);
	struct portd_lease mine = lease_ok(p, 0, 60);
	lease_ok(p, 0, 60);
	assert_int_equal(pipe(pp), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct portd *q = NULL;
		struct portd_lease_info *v = NULL;
		struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
		struct portd_lease l;
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534) || portd_connect(d.sock, &q))
			_exit(3);
		cr.renew = portd_renew(q, mine.id, 30, NULL, T);
		cr.release = portd_release(q, mine.id, T);
		cr.release_port = portd_release_port(q, mine.ports[0], 0, NULL, T);
		cr.list_n = portd_list(q, &v, T);
		free(v);
		o.flags = 0;
		cr.own_lease = portd_lease(q, &o, &l, T);
		cr.total = portd_lease(q, &o, &l, T); /* 4th lease in all: over --max-leases */
		struct portd_status st;
		cr.status = portd_status_flags(q, PORTD_STATUS_COUNT_FDS, &st, T);
		cr.open_fds = st.open_fds;
		if (write(pp[1], &cr, sizeof(cr)) != sizeof(cr))
			_exit(4);
		_exit(0);
	}
	close(pp[1]);
	assert_int_equal(read(pp[0], &cr, sizeof(cr)), (ssize_t)sizeof(cr));
	close(pp[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
	assert_int_equal(cr.renew, -PORTD_E_PERM);
	assert_int_equal(cr.release, -PORTD_E_PERM);
	assert_int_equal(cr.release_port, -PORTD_E_PERM);
	assert_int_equal(cr.list_n, 0);
	assert_int_equal(cr.own_lease, 0);
	assert_int_equal(cr.total, -PORTD_E_QUOTA_TOTAL);
	assert_int_equal(cr.status, 0);
	assert_int_equal(cr.open_fds, 0); /* another user does not count the daemon's fds */
	assert_true(listed(p, mine.id));

	/* Root sees every lease with its owner, and may release another's. */
	struct portd_lease_info *v = NULL;
	int n = portd_list(p, &v, T);
	assert_int_equal(n, 3);
	uint64_t theirs = 0;
	for (int i = 0; i < n; i++)
		if (v[i].uid == 65534)
			theirs = v[i].id;
	free(v);
	assert_int_not_equal(theirs, 0);
	assert_int_equal(portd_release(p, theirs, T), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* 1,000 simultaneous leases are 1,000 distinct ports; all fds come back when they end. */
static void t_thousand_and_fds(void **state)
{
	enum { N = 1000 };
	static uint8_t seen[65536];
	static struct portd_lease ls[N];
	struct daemon_proc d = { 0 };

	memset(seen, 0, sizeof(seen));
	daemon_start(&d, "--max-leases-per-uid", "2000", NULL);
	int base = count_fds(d.pid);
	assert_true(base > 0);
	struct portd *p = connect_ok(&d);
	for (int i = 0; i < N; i++) {
		ls[i] = lease_ok(p, i % 2 ? PORTD_FLAG_FD | PORTD_FLAG_TIE : 0, 600);
		assert_int_equal(seen[ls[i].ports[0]], 0);
		seen[ls[i].ports[0]] = 1;
	}
	assert_true(count_fds(d.pid) >= base + N);
	/* End them three ways: release, expiry, and (below) disconnect + release by port. */
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0)
			assert_int_equal(portd_release(p, ls[i].id, T), 0);
		else if (i % 3 == 1)
			assert_int_equal(portd_renew(p, ls[i].id, 1, NULL, T), 0);
		else
			assert_int_equal(portd_release_port(p, ls[i].ports[0], 0, NULL, T), 0);
		portd_lease_close_fds(&ls[i]);
	}
	assert_true(wait_count(p, 0, 10000));
	portd_disconnect(p);
	assert_true(wait_fds(d.pid, base, 5000));
	daemon_stop(&d);
}

/* A tied lease ends when its process exits; an untied fd lease lives on. */
static void t_tied_to_process(void **state)
{
	struct daemon_proc d = { 0 };
	uint64_t ids[2];
	int pp[2], status;

	daemon_start(&d, NULL);
	assert_int_equal(pipe(pp), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct portd *q = NULL;
		struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
		struct portd_lease a, b;
		if (portd_connect(d.sock, &q) || portd_lease(q, &o, &a, T))
			_exit(3);
		o.flags = PORTD_FLAG_FD; /* plain TTL */
		o.ttl = 600;
		if (portd_lease(q, &o, &b, T))
			_exit(4);
		ids[0] = a.id;
		ids[1] = b.id;
		if (write(pp[1], ids, sizeof(ids)) != sizeof(ids))
			_exit(5);
		_exit(0); /* no release, no disconnect */
	}
	close(pp[1]);
	assert_int_equal(read(pp[0], ids, sizeof(ids)), (ssize_t)sizeof(ids));
	close(pp[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
	struct portd *p = connect_ok(&d);
	assert_true(wait_gone(p, ids[0], 5000));
	assert_true(listed(p, ids[1]));
	portd_disconnect(p);
	daemon_stop(&d);
}

/* Malformed input drops that peer, never the daemon, and leaks nothing. */
static void t_protocol_errors(void **state)
{
	struct daemon_proc d = { 0 };
	uint8_t buf[PORTD_MSG_MAX + 64];
	uint32_t detail;
	int fd;

	daemon_start(&d, NULL);
	int base = count_fds(d.pid);

	/* Another protocol version: a clear VERSION error carrying ours. */
	fd = raw_connect(&d);
	ssize_t n = proto_encode_status_req(buf, sizeof(buf), 7);
	assert_true(n > 0);
	buf[4] = 99; /* version field */
	assert_int_equal(send(fd, buf, (size_t)n, 0), n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_VERSION);
	assert_int_equal(detail, PORTD_PROTO_VERSION);
	assert_true(raw_closed(fd));
	close(fd);

	/* Garbage. */
	fd = raw_connect(&d);
	assert_int_equal(send(fd, "hello", 5, 0), 5);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);

	/* Oversized datagram. */
	fd = raw_connect(&d);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(send(fd, buf, PORTD_MSG_MAX + 1, 0), PORTD_MSG_MAX + 1);
	assert_true(raw_closed(fd));
	close(fd);

	/* An fd attached to a request: refused, and not kept. */
	fd = raw_connect(&d);
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	n = proto_encode_status_req(buf, sizeof(buf), 8);
	assert_int_equal(fdpass_send(fd, buf, (size_t)n, pfd, 2, 0), n);
	close(pfd[0]);
	close(pfd[1]);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);

	/* Unknown type: an error, but the connection stays usable. */
	fd = raw_connect(&d);
	n = proto_encode_status_req(buf, sizeof(buf), 9);
	buf[6] = 77;
	assert_int_equal(send(fd, buf, (size_t)n, 0), n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_BADTYPE);
	n = proto_encode_status_req(buf, sizeof(buf), 10);
	assert_int_equal(send(fd, buf, (size_t)n, 0), n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_OK);
	close(fd);

	/* The daemon still serves, and holds no more fds than before. */
	struct portd *p = connect_ok(&d);
	struct portd_lease l = lease_ok(p, PORTD_FLAG_FD | PORTD_FLAG_TIE, 10);
	assert_int_equal(portd_release(p, l.id, T), 0);
	portd_lease_close_fds(&l);
	portd_disconnect(p);
	assert_true(wait_fds(d.pid, base, 5000));
	daemon_stop(&d);
}

/* Port range: explicit binds, busy ports skipped, exhaustion, quarantine. */
static void t_range_and_quarantine(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l, ls[3];
	int busy = -1;

	if (!private_netns)
		skip(); /* needs a quiet port range */
	/* Below the ephemeral range (32768-60999 in a new namespace): earlier tests' TIME_WAIT
	 * sockets sit on ephemeral ports, and one from a client without SO_REUSEADDR blocks a bind. */
	/*
	 * Someone else listens on 20001, and another process has 20002 bound with
	 * SO_REUSEADDR but not listening yet (a server starting up): portd must
	 * skip both. Its own explicit bind with SO_REUSEADDR set would share 20002.
	 */
	int starting = -1;
	assert_int_equal(try_bind_tcp(20001, true, &busy), 0);
	assert_int_equal(listen(busy, 4), 0);
	assert_int_equal(try_bind_tcp(20002, true, &starting), 0);
	daemon_start(&d, "--range", "20000-20004", "--quarantine", "60", NULL);
	struct portd *p = connect_ok(&d);
	uint16_t got[3];
	for (int i = 0; i < 3; i++) {
		ls[i] = lease_ok(p, 0, 60);
		got[i] = ls[i].ports[0];
		assert_true(got[i] >= 20000 && got[i] <= 20004 && got[i] != 20001 && got[i] != 20002);
	}
	assert_true(got[0] != got[1] && got[1] != got[2] && got[0] != got[2]);
	o.flags = 0;
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_NOPORTS);
	assert_int_equal(portd_release(p, ls[0].id, T), 0);
	/* Freed, but quarantined: still not handed out. */
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_NOPORTS);
	/* An exact port: busy, quarantined, outside the range. */
	o.port = 20001;
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_BUSY);
	o.port = got[0];
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_BUSY);
	o.port = 22000;
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_INVAL);
	portd_disconnect(p);
	daemon_stop(&d);

	/* Without quarantine the freed port comes straight back. */
	daemon_start(&d, "--range", "20000-20000", "--quarantine", "0", NULL);
	p = connect_ok(&d);
	l = lease_ok(p, 0, 60);
	assert_int_equal(l.ports[0], 20000);
	assert_int_equal(portd_release(p, l.id, T), 0);
	l = lease_ok(p, 0, 60);
	assert_int_equal(l.ports[0], 20000);
	portd_disconnect(p);
	daemon_stop(&d);
	close(busy);
	close(starting);
}

/* portctl's errors say what to do, with documented exit codes. */
static void t_portctl_cli(void **state)
{
	struct daemon_proc d = { 0 };
	char out[4096], err[1024];

	assert_int_equal(portctl("/nonexistent/portd.sock", out, sizeof(out), err, sizeof(err), "lease", NULL), 3);
	assert_string_equal(out, "");
	assert_non_null(strstr(err, "/nonexistent/portd.sock"));
	assert_non_null(strstr(err, "portd"));
	assert_int_equal(portctl(NULL, out, sizeof(out), err, sizeof(err), "--version", NULL), 0);
	assert_non_null(strstr(out, "portctl"));
	assert_int_equal(portctl(NULL, out, sizeof(out), err, sizeof(err), "--help", NULL), 0);
	assert_non_null(strstr(out, "lease"));
	assert_int_equal(portctl(NULL, out, sizeof(out), err, sizeof(err), "frobnicate", NULL), 2);
	assert_int_equal(portctl(NULL, out, sizeof(out), err, sizeof(err), "lease", "--ttl", "x", NULL), 2);
	assert_int_equal(portctl(NULL, out, sizeof(out), err, sizeof(err), "renew", NULL), 2);

	daemon_start(&d, NULL);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", "12345", NULL), 1);
	assert_non_null(strstr(err, "12345"));
	assert_int_equal(portctl(NULL, out, sizeof(out), err, sizeof(err), "--socket", d.sock, "status", NULL), 0);
	assert_non_null(strstr(out, "leases"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", "--json", NULL), 0);
	assert_non_null(strstr(out, "\"leases\": 0"));
	assert_non_null(strstr(out, "\"open_fds\": null")); /* not counted unless asked */
	if (geteuid() == 0) {
		/* Counted (exactly, t_renew_expire checks against /proc): portctl's own connection is one. */
		char *at;
		assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", "--fds", "--json",
					 NULL), 0);
		assert_non_null(at = strstr(out, "\"open_fds\": "));
		assert_true(strtoul(at + strlen("\"open_fds\": "), NULL, 10) > 1);
		assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", "--fds", NULL), 0);
		assert_non_null(at = strstr(out, "open fds:      "));
		assert_true(strtoul(at + strlen("open fds:      "), NULL, 10) > 1);
	}
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--ttl", "60", NULL), 0);
	unsigned long port = strtoul(out, NULL, 10);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--json", NULL), 0);
	char *idp = strstr(out, "\"id\": ");
	assert_non_null(idp);
	char id[24];
	snprintf(id, sizeof(id), "%llu", strtoull(idp + 6, NULL, 10));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "renew", id, "--ttl", "120", NULL), 0);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", "--json", NULL), 0);
	assert_non_null(strstr(out, "\"ttl\": 120"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", id, NULL), 0);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", id, NULL), 1);
	char pbuf[16];
	snprintf(pbuf, sizeof(pbuf), "%lu", port);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", "--port", pbuf, NULL), 0);
	daemon_stop(&d);
}

/* One daemon per socket; a stale socket file left by a killed daemon is taken over. */
static void t_daemon_socket(void **state)
{
	struct daemon_proc d = { 0 };
	int status;

	daemon_start(&d, NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		execl(getenv("PORTD_BIN"), "portd", "--socket", d.sock, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);

	/* Kill -9: the socket file stays behind, and a new daemon replaces it. */
	daemon_kill(&d);
	struct stat st;
	assert_int_equal(lstat(d.sock, &st), 0);
	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	portd_disconnect(p);
	daemon_stop(&d);

	/* Bad options: exit 2. */
	pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		execl(getenv("PORTD_BIN"), "portd", "--range", "9-3", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
}

/* Options for a lease of count ports. */
static struct portd_lease_opts opts(uint32_t flags, uint8_t transport, uint16_t count)
{
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	o.flags = flags;
	o.transport = transport;
	o.count = count;
	o.ttl = 60;
	return o;
}

static int sock_type(int fd)
{
	int t = 0;
	socklen_t tl = sizeof(t);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl), 0);
	return t;
}

/* Several ports in one lease, all or nothing. */
static void t_multi_port(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease l;
	struct portd_status st;
	struct portd_lease_opts o = opts(PORTD_FLAG_FD | PORTD_FLAG_TIE, PORTD_TRANSPORT_TCP, 4);
	int fam;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.count, 4);
	assert_int_equal(l.nfds, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(sock_port(l.fds[i], &fam), l.ports[i]);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(l.ports[i], l.ports[j]);
	}
	/* Release by any of its ports ends the whole lease. */
	assert_int_equal(portd_release_port(p, l.ports[2], 0, NULL, T), 0);
	assert_false(listed(p, l.id));
	portd_lease_close_fds(&l);
	portd_disconnect(p);
	daemon_stop(&d);

	if (!private_netns)
		return;
	/* A range of 4: a lease of 5 takes nothing; then 4 fit exactly. */
	daemon_start(&d, "--range", "20000-20003", NULL);
	p = connect_ok(&d);
	o = opts(0, PORTD_TRANSPORT_TCP, 5);
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_NOPORTS);
	assert_int_equal(portd_status(p, &st, T), 0);
	assert_int_equal(st.leases, 0);
	assert_int_equal(st.ports_held, 0);
	assert_int_equal(st.quarantined, 0); /* a lease never made quarantines nothing */
	o.count = 4;
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.nfds, 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* Adjacent numbers, optionally starting at a given port; exclude ranges. */
static void t_consecutive_and_exclude(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease l;
	struct portd_lease_opts o = opts(PORTD_FLAG_CONSECUTIVE, PORTD_TRANSPORT_TCP, 5);

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	for (int i = 1; i < 5; i++)
		assert_int_equal(l.ports[i], l.ports[0] + i);
	portd_disconnect(p);
	daemon_stop(&d);

	if (!private_netns)
		skip();
	/* 20001 is taken by another process: a run of 3 from 20000 must start again after it. */
	int busy = -1;
	assert_int_equal(try_bind_tcp(20001, true, &busy), 0);
	assert_int_equal(listen(busy, 4), 0);
	daemon_start(&d, "--range", "20000-20009", "--quarantine", "0", NULL);
	p = connect_ok(&d);
	o = opts(PORTD_FLAG_CONSECUTIVE, PORTD_TRANSPORT_TCP, 3);
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.ports[0], 20002);
	assert_int_equal(l.ports[1], 20003);
	assert_int_equal(l.ports[2], 20004);
	struct portd_status st;
	assert_int_equal(portd_status(p, &st, T), 0);
	assert_int_equal(st.ports_held, 3); /* the abandoned start 20000 was given back */
	assert_int_equal(portd_release(p, l.id, T), 0);
	/* From an exact start: free, then crossing the busy port. */
	o.port = 20005;
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.ports[0], 20005);
	assert_int_equal(l.ports[2], 20007);
	assert_int_equal(portd_release(p, l.id, T), 0);
	o.port = 20000;
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_BUSY);
	o.port = 20008; /* 20008-20010 leaves the range */
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_INVAL);
	assert_int_equal(portd_status(p, &st, T), 0);
	assert_int_equal(st.ports_held, 0);

	/* Exclude everything but 20009. */
	struct portd_range ex[2] = { { 20000, 20004 }, { 20005, 20008 } };
	o = opts(0, PORTD_TRANSPORT_TCP, 1);
	o.exclude = ex;
	o.nexclude = 2;
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.ports[0], 20009);
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_NOPORTS);
	portd_disconnect(p);
	daemon_stop(&d);
	close(busy);

	/* In kernel mode too, an excluded port is never handed out. */
	daemon_start(&d, NULL);
	p = connect_ok(&d);
	struct portd_range all_but[2] = { { 1, 40000 }, { 40100, 65535 } };
	o.exclude = all_but;
	for (int i = 0; i < 20; i++) {
		int r = portd_lease(p, &o, &l, T);
		if (r == -PORTD_E_NOPORTS)
			continue; /* the kernel kept choosing excluded ports: refused, not violated */
		assert_int_equal(r, 0);
		assert_true(l.ports[0] > 40000 && l.ports[0] < 40100);
	}
	portd_disconnect(p);
	daemon_stop(&d);
}

/* UDP is held without SO_REUSEADDR and handed over as an fd; BOTH is one number on each. */
static void t_udp_and_both(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease l;
	struct portd_lease_opts o = opts(PORTD_FLAG_FD | PORTD_FLAG_TIE, PORTD_TRANSPORT_UDP, 2);
	int fam, v = -1;
	socklen_t vl = sizeof(v);

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.nfds, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sock_type(l.fds[i]), SOCK_DGRAM);
		assert_int_equal(sock_port(l.fds[i], &fam), l.ports[i]);
		assert_int_equal(getsockopt(l.fds[i], SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
		assert_int_equal(v, 0);
	}
	/* The socket works: a datagram to the port arrives on it. */
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(l.ports[0]),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(sendto(u, "hi", 2, 0, (struct sockaddr *)&to, sizeof(to)), 2);
	char b[8];
	assert_int_equal(recv(l.fds[0], b, sizeof(b), 0), 2);
	close(u);
	portd_lease_close_fds(&l);

	/* BOTH: TCP then UDP fds on the same number. */
	o = opts(PORTD_FLAG_FD | PORTD_FLAG_TIE, PORTD_TRANSPORT_BOTH, 2);
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.nfds, 4);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sock_type(l.fds[2 * i]), SOCK_STREAM);
		assert_int_equal(sock_type(l.fds[2 * i + 1]), SOCK_DGRAM);
		assert_int_equal(sock_port(l.fds[2 * i], &fam), l.ports[i]);
		assert_int_equal(sock_port(l.fds[2 * i + 1], &fam), l.ports[i]);
	}
	/* Listed with one number per port. */
	struct portd_lease_info *v2 = NULL;
	assert_int_equal(portd_list(p, &v2, T), 2);
	assert_int_equal(v2[1].count, 2);
	assert_int_equal(v2[1].transport, PORTD_TRANSPORT_BOTH);
	free(v2);
	portd_lease_close_fds(&l);

	/* Number-only UDP outside a reserved range: refused, with nothing taken. */
	o = opts(0, PORTD_TRANSPORT_UDP, 1);
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_NOTSUP_TRANSPORT);
	o.transport = PORTD_TRANSPORT_BOTH;
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_NOTSUP_TRANSPORT);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* A lease tied to another process ends when that process exits; only own processes (or root). */
static void t_tied_to_pid(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease l;
	struct portd_lease_opts o = opts(0, PORTD_TRANSPORT_TCP, 1);
	int pp[2];

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_int_equal(pipe(pp), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char b;
		close(pp[1]);
		while (read(pp[0], &b, 1) < 0) /* until killed */
			;
		_exit(0);
	}
	close(pp[0]);
	o.pid = child;
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_true(listed(p, l.id));
	struct portd_lease_info *v = NULL;
	assert_int_equal(portd_list(p, &v, T), 1);
	assert_int_equal(v[0].tied_pid, child);
	free(v);
	assert_int_equal(kill(child, SIGKILL), 0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	uint64_t t0 = now_ms();
	assert_true(wait_gone(p, l.id, 5000));
	print_message("lease tied to pid %d ended within %llu ms of its exit\n", (int)child,
		      (unsigned long long)(now_ms() - t0));
	close(pp[1]);

	/* A process that does not exist; tied to the caller and to a pid at once. */
	o.pid = child; /* reaped: gone */
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_INVAL);
	o.pid = getpid();
	o.flags = PORTD_FLAG_TIE;
	assert_int_equal(portd_lease(p, &o, &l, T), -PORTD_E_INVAL);
	portd_disconnect(p);
	daemon_stop(&d);

	if (geteuid() != 0)
		return;
	/* Another uid may not tie a lease to root's process. */
	daemon_start(&d, "--socket-mode", "0666", NULL);
	assert_int_equal(chmod(d.dir, 0755), 0);
	int pr[2];
	assert_int_equal(pipe(pr), 0);
	pid_t me = getpid();
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct portd *q = NULL;
		struct portd_lease_opts qo = opts(0, PORTD_TRANSPORT_TCP, 1);
		struct portd_lease ql;
		int res[2] = { 1, 1 };
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534) || portd_connect(d.sock, &q))
			_exit(3);
		qo.pid = me;
		res[0] = portd_lease(q, &qo, &ql, T);
		qo.pid = getpid();
		res[1] = portd_lease(q, &qo, &ql, T);
		_exit(write(pr[1], res, sizeof(res)) == sizeof(res) ? 0 : 4);
	}
	close(pr[1]);
	int res[2];
	assert_int_equal(read(pr[0], res, sizeof(res)), (ssize_t)sizeof(res));
	close(pr[0]);
	waitpid(child, NULL, 0);
	assert_int_equal(res[0], -PORTD_E_PERM);
	assert_int_equal(res[1], 0);
	daemon_stop(&d);
}

static void read_sysctl(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/*
 * --reserve: the range leaves every automatic selection (bind(0), connect())
 * of other processes while portd leases from it, number-only UDP becomes
 * possible, and the sysctl is as before once portd exits.
 */
static void t_reserve(void **state)
{
	static const char *sysctl = "/proc/sys/net/ipv4/ip_local_reserved_ports";
	enum { LO = 40000, HI = 40099 };
	struct daemon_proc d = { 0 };
	struct portd_lease_opts o;
	struct portd_lease l;
	struct portd_status st;
	char before[256], during[256], after[256];
	int hits = 0, fam;

	if (!private_netns)
		skip(); /* the sysctl is per network namespace: never touch the host's */
	read_sysctl(sysctl, before, sizeof(before));
	daemon_start(&d, "--range", "40000-40099", "--reserve", "--quarantine", "0", NULL);
	read_sysctl(sysctl, during, sizeof(during));
	assert_non_null(strstr(during, "40000-40099"));
	struct portd *p = connect_ok(&d);
	assert_int_equal(portd_status(p, &st, T), 0);
	assert_true(st.flags & PORTD_STATUS_RESERVED);

	/* Other processes' automatic selection never lands in the range, TCP or UDP, v4 or v6. */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in la = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(lfd, (struct sockaddr *)&la, sizeof(la)), 0);
	assert_int_equal(listen(lfd, 128), 0);
	uint16_t lport = sock_port(lfd, &fam);
	for (int i = 0; i < 4000; i++) {
		int type = i % 2 ? SOCK_DGRAM : SOCK_STREAM, f = i % 4 < 2 ? AF_INET : AF_INET6;
		int s = socket(f, type | SOCK_CLOEXEC, 0);
		assert_true(s >= 0);
		if (f == AF_INET) {
			struct sockaddr_in a = { .sin_family = AF_INET };
			assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
		} else {
			struct sockaddr_in6 a = { .sin6_family = AF_INET6 };
			assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
		}
		uint16_t got = sock_port(s, &fam);
		hits += got >= LO && got <= HI;
		close(s);
		if (i % 4 == 0) {
			int c = tcp_connect(AF_INET, lport), a;
			assert_true(c >= 0);
			got = sock_port(c, &fam);
			hits += got >= LO && got <= HI;
			a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			close(c);
			close(a);
		}
		if (i % 400 == 0) { /* and portd keeps leasing from the range meanwhile */
			o = opts(0, PORTD_TRANSPORT_TCP, 1);
			assert_int_equal(portd_lease(p, &o, &l, T), 0);
			assert_true(l.ports[0] >= LO && l.ports[0] <= HI);
		}
	}
	close(lfd);
	assert_int_equal(hits, 0);

	/* Number-only UDP: the port is handed over, so the client's own socket can bind it. */
	o = opts(0, PORTD_TRANSPORT_UDP, 1);
	assert_int_equal(portd_lease(p, &o, &l, T), 0);
	assert_int_equal(l.nfds, 0);
	assert_true(l.ports[0] >= LO && l.ports[0] <= HI);
	int u = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in6 ua = { .sin6_family = AF_INET6, .sin6_port = htons(l.ports[0]) };
	assert_int_equal(bind(u, (struct sockaddr *)&ua, sizeof(ua)), 0);
	close(u);
	/* ... and portd does not hand it out again while the lease lives. */
	for (int i = 0; i < 100 - 10 - 1; i++) {
		struct portd_lease m;
		o = opts(0, PORTD_TRANSPORT_UDP, 1);
		assert_int_equal(portd_lease(p, &o, &m, T), 0);
		assert_int_not_equal(m.ports[0], l.ports[0]);
	}
	assert_int_equal(portd_release(p, l.id, T), 0);
	portd_disconnect(p);
	daemon_stop(&d);

	read_sysctl(sysctl, after, sizeof(after));
	assert_string_equal(after, before);

	/* Without --range, --reserve is refused. */
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		execl(getenv("PORTD_BIN"), "portd", "--reserve", (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
}

/*
 * Without systemd, leases survive a restart through the state file: the same
 * ids, owners, kinds and ports, a remaining TTL that only went down, tied
 * leases still tied, and the ports bound again by the new daemon.
 */
static void t_restart_state(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease_info *before = NULL, *after = NULL;
	struct portd_lease ls[4];
	char path[200];
	struct stat st;
	int n, m;

	daemon_start(&d, "--quarantine", "0", NULL);
	struct portd *p = connect_ok(&d);
	ls[0] = lease_ok(p, 0, 600);                                  /* number */
	ls[1] = lease_ok(p, PORTD_FLAG_FD | PORTD_FLAG_TIE, 600);     /* fd, tied to us */
	ls[2] = lease_ok(p, PORTD_FLAG_FD, 300);                      /* fd, plain TTL */
	ls[3] = lease_ok(p, 0, 1);                                    /* expires while down */
	assert_int_equal(listen(ls[1].fds[0], 16), 0);
	n = portd_list(p, &before, T);
	assert_int_equal(n, 4);
	portd_disconnect(p);
	assert_true(wait_gone_after(&d, ls[3].id)); /* let the short one expire first */
	daemon_term(&d);
	snprintf(path, sizeof(path), "%s.state", d.sock);
	assert_int_equal(stat(path, &st), 0);

	daemon_start(&d, "--quarantine", "0", NULL);
	assert_int_not_equal(stat(path, &st), 0); /* consumed: a crash later must not resurrect it */
	p = connect_ok(&d);
	m = portd_list(p, &after, T);
	assert_int_equal(m, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(after[i].id, before[i].id);
		assert_int_equal(after[i].uid, before[i].uid);
		assert_int_equal(after[i].flags, before[i].flags);
		assert_int_equal(after[i].ports[0], before[i].ports[0]);
		assert_int_equal(after[i].tied_pid, before[i].tied_pid);
		assert_true(after[i].expires_in_ms <= before[i].expires_in_ms);
		assert_true(after[i].expires_in_ms > 0);
	}
	/* The ports are held again (a number lease's port refuses a bind without SO_REUSEADDR) ... */
	assert_int_equal(try_bind_tcp(ls[0].ports[0], false, NULL), -EADDRINUSE);
	/* ... and our fd still serves. */
	assert_serves(ls[1].fds[0], ls[1].ports[0]);
	/* New ids continue above the restored ones. */
	struct portd_lease nl = lease_ok(p, 0, 60);
	assert_true(nl.id > ls[3].id);
	free(before);
	free(after);
	portd_lease_close_fds(&ls[1]);
	portd_lease_close_fds(&ls[2]);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* Thousands of leases tied to one process end when it exits, over several batches of the loop. */
static void t_tied_many(void **state)
{
	enum { N = 1500 }; /* about three batches of 512 */
	struct daemon_proc d = { 0 };
	int pp[2], status;

	daemon_start(&d, "--max-leases-per-uid", "4096", NULL);
	int base = count_fds(d.pid);
	assert_int_equal(pipe(pp), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct portd *q = NULL;
		struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
		struct portd_lease l;
		int n = 0;
		if (portd_connect(d.sock, &q))
			_exit(3);
		o.flags = PORTD_FLAG_TIE; /* number leases tied to this process */
		for (int i = 0; i < N; i++)
			n += portd_lease(q, &o, &l, T) == 0;
		_exit(write(pp[1], &n, sizeof(n)) == sizeof(n) ? 0 : 4);
	}
	close(pp[1]);
	int n = 0;
	assert_int_equal(read(pp[0], &n, sizeof(n)), (ssize_t)sizeof(n));
	close(pp[0]);
	assert_int_equal(n, N);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
	struct portd *p = connect_ok(&d);
	assert_true(wait_count(p, 0, 10000));
	portd_disconnect(p);
	assert_true(wait_fds(d.pid, base, 5000));
	daemon_stop(&d);
}

/* The README's C example runs as written. */
static void t_readme_example(void **state)
{
	struct daemon_proc d = { 0 };
	char cmd[512], line[256] = "";
	FILE *f;

	daemon_start(&d, NULL);
	snprintf(cmd, sizeof(cmd), "PORTD_SOCKET='%s' '%s'", d.sock, getenv("PORTD_EXAMPLE_BIN"));
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_int_equal(pclose(f), 0);
	assert_non_null(strstr(line, "listening on port "));
	daemon_stop(&d);
}

/* ---- the host's ports, portctl's output ---- */

#define RANGE_SYSCTL "/proc/sys/net/ipv4/ip_local_port_range"
#define RESERVED_SYSCTL "/proc/sys/net/ipv4/ip_local_reserved_ports"

static void write_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, value, strlen(value)), (ssize_t)strlen(value));
	close(fd);
}

/* Teardown of tests that narrow the ephemeral range: a new namespace's defaults again. */
static int host_ports_teardown(void **state)
{
	daemons_teardown(state);
	if (private_netns) {
		write_sysctl(RANGE_SYSCTL, "32768 60999\n");
		write_sysctl(RESERVED_SYSCTL, "\n");
	}
	return 0;
}

/*
 * Is json valid JSON for which the Python expression expr (over d, the
 * parsed value; no single quotes) holds? Prints what python3 says if not.
 */
static bool json_holds(const char *json, const char *expr)
{
	char cmd[2048];
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import json, sys\nd = json.load(sys.stdin)\n"
		 "assert %s, d' >&2", expr);
	f = popen(cmd, "w");
	assert_non_null(f);
	fputs(json, f);
	return pclose(f) == 0;
}
#define assert_json(json, expr) \
	do { if (!json_holds(json, expr)) fail_msg("JSON '%s' fails %s", json, expr); } while (0)

/* A socket bound to port on 127.0.0.1. */
static int bound_socket(int type, uint16_t port)
{
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	assert_true(fd >= 0);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		fail_msg("bind %u: %s", port, strerror(errno));
	return fd;
}

/* A client bound to port from, connected to 127.0.0.1:to, whose accepted end from lfd goes to *acc. */
static int client_from(uint16_t from, uint16_t to, int lfd, int *acc)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(from), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	a.sin_port = htons(to);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	*acc = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*acc >= 0);
	return fd;
}

/* port in TIME-WAIT: the client (bound to it) closes first, then the server's end. */
static void time_wait_on(uint16_t port, uint16_t to, int lfd)
{
	int acc, c = client_from(port, to, lfd, &acc);
	struct pollfd pf = { .fd = acc, .events = POLLIN };
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	char b;

	close(c);
	assert_int_equal(poll(&pf, 1, 5000), 1);
	assert_int_equal(read(acc, &b, 1), 0);
	assert_int_equal(shutdown(acc, SHUT_WR), 0);
	/* The server's end closes once the client acknowledged its FIN, from TIME-WAIT. */
	for (int i = 0; i < 100000; i++) {
		tl = sizeof(ti);
		assert_int_equal(getsockopt(acc, IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
		if (ti.tcpi_state == TCP_CLOSE)
			break;
		sched_yield();
	}
	assert_int_equal(ti.tcpi_state, TCP_CLOSE);
	close(acc);
}

/*
 * Run portctl ARGS... with stdout on a terminal (a pty) and the environment
 * changed by env ("NAME=value" sets, "NAME" unsets; NULL-terminated); out
 * gets what it printed. Returns its exit status.
 */
static int portctl_tty(const char *sock, const char *const *env, char *out, size_t len, const char *arg, ...)
{
	const char *argv[16];
	int n = 0, master, slave, status;
	size_t got = 0;
	va_list ap;
	pid_t pid;

	argv[n++] = getenv("PORTCTL_BIN");
	va_start(ap, arg);
	for (const char *a = arg; a && n < 15; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(slave, 1);
		close(slave);
		close(master);
		setenv("PORTD_SOCKET", sock, 1);
		for (; *env; env++) {
			char name[64];
			const char *eq = strchr(*env, '=');

			snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - *env) : (int)strlen(*env), *env);
			if (eq)
				setenv(name, eq + 1, 1);
			else
				unsetenv(name);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(slave);
	/* Read until the child's end closes (EIO on Linux); bounded. */
	for (uint64_t end = now_ms() + 10000; got < len - 1 && now_ms() < end;) {
		struct pollfd pf = { .fd = master, .events = POLLIN };
		ssize_t r;

		if (poll(&pf, 1, 1000) <= 0)
			continue;
		r = read(master, out + got, len - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	out[got] = '\0';
	close(master);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The value after "label" at the start of a line of text, as a number (-1 if there is none). */
static long text_value(const char *text, const char *label)
{
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, label, strlen(label)) == 0)
			return strtol(l + strlen(label) + strspn(l + strlen(label), " "), NULL, 10);
	return -1;
}

/*
 * portctl ports: known sockets in a narrowed ephemeral range (40000-40019,
 * 40018-40019 reserved), counted exactly, with and without a portd; then a
 * range close to exhaustion, with its warning in colour on a terminal only.
 */
static void t_ports_picture(void **state)
{
	struct daemon_proc d = { 0 };
	char out[4096], err[1024], nosock[128];
	int fds[32], n = 0, acc;

	if (!private_netns)
		skip(); /* the sysctls are per network namespace: never touch the host's */
	/* A namespace of its own: no TIME-WAIT left by the tests before. */
	assert_true(enter_private_netns());
	write_sysctl(RANGE_SYSCTL, "40000 40019\n");
	write_sysctl(RESERVED_SYSCTL, "40018-40019\n");

	int lfd = bound_socket(SOCK_STREAM, 40000);
	assert_int_equal(listen(lfd, 16), 0);
	fds[n++] = lfd;
	fds[n++] = client_from(40001, 40000, lfd, &acc);
	fds[n++] = acc;
	time_wait_on(40002, 40000, lfd);
	fds[n++] = bound_socket(SOCK_DGRAM, 40003);
	fds[n++] = bound_socket(SOCK_STREAM, 40003);
	fds[n++] = bound_socket(SOCK_DGRAM, 39999); /* outside the range */
	fds[n++] = bound_socket(SOCK_STREAM, 40018); /* reserved */
	assert_int_equal(listen(fds[n - 1], 16), 0);

	/* No portd: the picture all the same, exit 0. */
	snprintf(nosock, sizeof(nosock), "/nonexistent/portd.sock");
	assert_int_equal(portctl(nosock, out, sizeof(out), err, sizeof(err), "ports", NULL), 0);
	assert_string_equal(err, "");
	assert_non_null(strstr(out, "range:              40000-40019 (20 ports)\n"));
	assert_non_null(strstr(out, "reserved:           40018-40019 (2 in the range)\n"));
	assert_non_null(strstr(out, "in use:             4 of 18 not reserved (22.2%)\n"));
	assert_int_equal(text_value(out, "  tcp listening:"), 1);   /* 40000 */
	assert_int_equal(text_value(out, "  tcp established:"), 2); /* 40000 40001 */
	assert_int_equal(text_value(out, "  tcp time-wait:"), 1);   /* 40002 */
	assert_int_equal(text_value(out, "  tcp bound:"), 1);       /* 40003 */
	assert_int_equal(text_value(out, "  tcp other:"), 0);
	assert_int_equal(text_value(out, "  udp:"), 1);             /* 40003 */
	assert_non_null(strstr(out, "by user:            root 3\n")); /* TIME-WAIT is nobody's */
	assert_non_null(strstr(out, "portd:              not running at /nonexistent/portd.sock\n"));
	assert_null(strstr(out, "warning"));
	assert_null(strchr(out, '\033'));
	assert_int_equal(portctl(nosock, out, sizeof(out), err, sizeof(err), "ports", "--json", NULL), 0);
	assert_json(out, "d[\"range\"] == {\"lo\": 40000, \"hi\": 40019, \"size\": 20} and "
			 "d[\"reserved\"] == {\"list\": \"40018-40019\", \"in_range\": 2} and "
			 "d[\"usable\"] == 18 and d[\"in_use\"] == 4 and d[\"percent\"] == 22.2 and d[\"low\"] is False and "
			 "d[\"tcp\"] == {\"listening\": 1, \"established\": 2, \"time_wait\": 1, \"bound\": 1, \"other\": 0} and "
			 "d[\"udp\"] == 1 and d[\"sockets\"] == 6 and "
			 "d[\"by_user\"] == [{\"uid\": 0, \"user\": \"root\", \"ports\": 3}] and "
			 "d[\"portd\"] == {\"running\": False}");

	/* A portd choosing by the kernel: its two held ports are bound ones of the range, free on TCP. */
	daemon_start(&d, NULL);
	uint16_t leased[2];
	for (int i = 0; i < 2; i++) {
		assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", NULL), 0);
		leased[i] = (uint16_t)strtoul(out, NULL, 10);
		if (leased[i] < 40004 || leased[i] > 40017)
			fail_msg("portd leased port %u, not a free one of the range", leased[i]);
	}
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "ports", NULL), 0);
	assert_non_null(strstr(out, "in use:             6 of 18 not reserved (33.3%)\n"));
	assert_int_equal(text_value(out, "  tcp bound:"), 3);
	assert_non_null(strstr(out, "portd:              2 ports held, chosen by the kernel from this range\n"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "ports", "--json", NULL), 0);
	assert_json(out, "d[\"in_use\"] == 6 and d[\"tcp\"][\"bound\"] == 3 and "
			 "d[\"portd\"] == {\"running\": True, \"ports_held\": 2, \"port_source\": \"kernel\", "
			 "\"range_lo\": 0, \"range_hi\": 0, \"reserved\": False, \"held_in_range\": 2}");

	/* 15 of 18 in use (83 %): the warning, in colour on a terminal only. */
	for (uint16_t port = 40004, added = 0; added < 9 && port <= 40017; port++) {
		if (port == leased[0] || port == leased[1])
			continue; /* a port in use on TCP already: no new port in use */
		fds[n++] = bound_socket(SOCK_DGRAM, port);
		added++;
	}
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "ports", NULL), 0);
	assert_non_null(strstr(out, "in use:             15 of 18 not reserved (83.3%)\n"));
	assert_non_null(strstr(out, "\nwarning: 83.3% of the usable ephemeral ports are in use: widen "
				    "net.ipv4.ip_local_port_range, set net.ipv4.tcp_tw_reuse=1"));
	assert_null(strchr(out, '\033'));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "ports", "--json", NULL), 0);
	assert_json(out, "d[\"in_use\"] == 15 and d[\"percent\"] == 83.3 and d[\"low\"] is True");
	assert_null(strchr(out, '\033'));

	static const char *const colour[] = { "TERM=xterm", "NO_COLOR", NULL };
	static const char *const no_color[] = { "TERM=xterm", "NO_COLOR=1", NULL };
	static const char *const dumb[] = { "TERM=dumb", "NO_COLOR", NULL };
	assert_int_equal(portctl_tty(d.sock, colour, out, sizeof(out), "ports", NULL), 0);
	assert_non_null(strstr(out, "\033[1;33mwarning:\033[0m 83.3%"));
	assert_int_equal(portctl_tty(d.sock, colour, out, sizeof(out), "ports", "--json", NULL), 0);
	assert_null(strchr(out, '\033')); /* JSON never */
	assert_int_equal(portctl_tty(d.sock, no_color, out, sizeof(out), "ports", NULL), 0);
	assert_non_null(strstr(out, "warning: 83.3%"));
	assert_null(strchr(out, '\033'));
	assert_int_equal(portctl_tty(d.sock, dumb, out, sizeof(out), "ports", NULL), 0);
	assert_non_null(strstr(out, "warning: 83.3%"));
	assert_null(strchr(out, '\033'));

	daemon_stop(&d);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Count the lines of file path that contain s. */
static int lines_with(const char *path, const char *s)
{
	char line[1024];
	int n = 0;
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, s) != NULL;
	fclose(f);
	return n;
}

/* Wait (at most 25 s) until portd's status satisfies ok. */
static bool wait_status(const struct daemon_proc *d, bool (*ok)(const struct portd_status *, uint32_t),
			uint32_t arg, struct portd_status *st)
{
	struct portd *p = connect_ok(d);
	bool met = false;

	for (uint64_t end = now_ms() + 25000; !met && now_ms() < end; poll(NULL, 0, 50)) {
		assert_int_equal(portd_status(p, st, T), 0);
		met = ok(st, arg);
	}
	portd_disconnect(p);
	return met;
}

static bool eph_count_is(const struct portd_status *st, uint32_t n) { return st->eph_in_use == n; }
static bool eph_not_low(const struct portd_status *st, uint32_t n) { return !(st->flags & PORTD_STATUS_EPH_LOW); }

/*
 * portd watches the host's ephemeral range: a range 80 % in use at start is
 * in its status, STATUS= line and log at once; the log warns once however
 * many scans find it so, and says once that it recovered.
 */
static void t_host_ports_warning(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_status st;
	char out[4096], err[1024], log[] = "/tmp/portd-e2e-log.XXXXXX";
	int fds[10], saved, lf;

	if (!private_netns)
		skip();
	assert_true(enter_private_netns()); /* quiet: no TIME-WAIT of the tests before */
	write_sysctl(RANGE_SYSCTL, "40000 40009\n");
	for (int i = 0; i < 8; i++)
		fds[i] = bound_socket(i % 2 ? SOCK_STREAM : SOCK_DGRAM, (uint16_t)(40000 + i));

	/* portd's stderr (its log) goes to a file: start it with ours there. */
	lf = mkstemp(log);
	assert_true(lf >= 0);
	saved = dup(2);
	assert_true(saved >= 0);
	dup2(lf, 2);
	daemon_start(&d, "--host-scan", "1", NULL);
	dup2(saved, 2);
	close(saved);
	close(lf);

	/* The scan at start, before ready. */
	struct portd *p = connect_ok(&d);
	assert_int_equal(portd_status(p, &st, T), 0);
	portd_disconnect(p);
	assert_int_equal(st.eph_lo, 40000);
	assert_int_equal(st.eph_hi, 40009);
	assert_int_equal(st.eph_in_use, 8);
	assert_true(st.flags & PORTD_STATUS_EPH_LOW);
	assert_int_equal(lines_with(log, "warning: the host's ephemeral ports are close to exhaustion: 8 of 10 in "
				    "use (80%; range 40000-40009, 0 reserved; 0 in TIME-WAIT): widen"), 1);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", NULL), 0);
	assert_non_null(strstr(out, "\nhost ports:    8 of 10 in use (40000-40009)\n"));
	assert_non_null(strstr(out, "\nwarning: the host's ephemeral ports are close to exhaustion: `portctl ports` "
				    "shows who holds them\n"));
	assert_null(strchr(out, '\033'));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", "--json", NULL), 0);
	assert_json(out, "d[\"eph_lo\"] == 40000 and d[\"eph_hi\"] == 40009 and d[\"eph_in_use\"] == 8 and "
			 "d[\"eph_low\"] is True");

	/* A later scan finds 9 in use: still low, and no second warning. */
	fds[8] = bound_socket(SOCK_DGRAM, 40008);
	assert_true(wait_status(&d, eph_count_is, 9, &st));
	assert_true(st.flags & PORTD_STATUS_EPH_LOW);
	assert_int_equal(lines_with(log, "close to exhaustion"), 1);

	/* All closed: the next scan finds it recovered, and says so once. */
	for (int i = 0; i < 9; i++)
		close(fds[i]);
	assert_true(wait_status(&d, eph_not_low, 0, &st));
	assert_int_equal(st.eph_in_use, 0);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", NULL), 0);
	assert_non_null(strstr(out, "\nhost ports:    0 of 10 in use (40000-40009)\n"));
	assert_null(strstr(out, "warning"));
	daemon_stop(&d);
	assert_int_equal(lines_with(log, "close to exhaustion"), 1);
	assert_int_equal(lines_with(log, "info: the host's ephemeral ports have recovered: 0 of 10 in use (0%; "
				    "range 40000-40009)"), 1);
	unlink(log);
}

/* Where each column of a table's header starts: the offsets of its words. */
static size_t header_columns(const char *line, size_t *col, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; line[i] && line[i] != '\n' && n < max; i++)
		if (line[i] != ' ' && (i == 0 || line[i - 1] == ' '))
			col[n++] = i;
	return n;
}

/* Every row of the table has a cell starting at each column of its header, after a space. */
static void assert_aligned(const char *table, size_t ncols)
{
	size_t col[16], k;
	const char *row;

	assert_int_equal(header_columns(table, col, 16), ncols);
	for (row = strchr(table, '\n'); row && row[1]; row = strchr(row + 1, '\n')) {
		const char *r = row + 1;
		size_t len = strcspn(r, "\n");

		for (k = 1; k < ncols; k++)
			if (col[k] >= len || r[col[k]] == ' ' || r[col[k] - 1] != ' ' || r[col[k] - 2] != ' ')
				fail_msg("column %zu of '%.*s' does not start at %zu:\n%s", k, (int)len, r, col[k], table);
	}
}

/* Cell k of the table row starting with "id ", trimmed, by the header's columns; "" if none. */
static const char *table_cell(const char *table, const char *id, size_t k)
{
	static char cell[256];
	size_t col[16], ncols = header_columns(table, col, 16), len, end;
	char start[32];
	const char *row;

	snprintf(start, sizeof(start), "\n%s ", id);
	row = strstr(table, start);
	cell[0] = '\0';
	if (!row || k >= ncols)
		return cell;
	row++;
	len = strcspn(row, "\n");
	end = k + 1 < ncols ? col[k + 1] : len;
	if (col[k] >= len)
		return cell;
	if (end > len)
		end = len;
	snprintf(cell, sizeof(cell), "%.*s", (int)(end - col[k]), row + col[k]);
	for (len = strlen(cell); len && cell[len - 1] == ' '; len--)
		cell[len - 1] = '\0';
	return cell;
}

/*
 * portctl's output for people: list in aligned columns with long values (16
 * ports, a lease without deadline), human durations, and --json that parses
 * for every command that prints something; nothing on a pipe has escapes.
 */
static void t_portctl_output(void **state)
{
	struct daemon_proc d = { 0 };
	char out[8192], err[1024], id[32], id16[32], pidline[32];
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	daemon_start(&d, "--portserver", "@portd-e2e-output", NULL);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--ttl", "3600", "--json", NULL), 0);
	assert_json(out, "set(d) == {\"id\", \"ports\", \"transport\", \"ttl\", \"expires_in\"} and d[\"ttl\"] == 3600");
	snprintf(id, sizeof(id), "%llu", strtoull(strstr(out, "\"id\": ") + 6, NULL, 10));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "16", "--ttl", "90",
				 "--json", NULL), 0);
	assert_json(out, "len(d[\"ports\"]) == 16");
	snprintf(id16, sizeof(id16), "%llu", strtoull(strstr(out, "\"id\": ") + 6, NULL, 10));
	/* A portserver lease (portpicker's protocol): no ttl, no deadline. */
	memcpy(a.sun_path + 1, "portd-e2e-output", strlen("portd-e2e-output"));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a,
				 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen("portd-e2e-output"))), 0);
	snprintf(pidline, sizeof(pidline), "%d\n", (int)getpid());
	assert_int_equal(write(fd, pidline, strlen(pidline)), (ssize_t)strlen(pidline));
	char port[16] = "";
	assert_true(read(fd, port, sizeof(port) - 1) > 0);
	port[strcspn(port, "\n")] = '\0';
	close(fd);

	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", NULL), 0);
	assert_null(strchr(out, '\033'));
	assert_int_equal(strncmp(out, "ID  PORT(S)", 11), 0);
	assert_aligned(out, 8);
	assert_string_equal(table_cell(out, "1", 4), "1h00m"); /* TTL */
	/* EXPIRES: in 1h00m, or in 59m59s a moment later. */
	assert_int_equal(strncmp(table_cell(out, "1", 5), "in ", 3), 0);
	assert_string_equal(table_cell(out, "2", 4), "1m30s");
	assert_int_equal(strlen(table_cell(out, "2", 1)), 16 * 6 - 1); /* 16 ports, commas between */
	assert_string_equal(table_cell(out, "3", 3), "portserver");
	assert_string_equal(table_cell(out, "3", 4), "-");
	assert_string_equal(table_cell(out, "3", 5), "never");
	snprintf(pidline, sizeof(pidline), "%d", (int)getpid());
	assert_string_equal(table_cell(out, "3", 7), pidline); /* TIED */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", "--json", NULL), 0);
	assert_json(out, "[len(e[\"ports\"]) for e in d[\"leases\"]] == [1, 16, 1] and "
			 "d[\"leases\"][2][\"expires_in_ms\"] is None and d[\"leases\"][0][\"ttl\"] == 3600");

	/* renew and release print nothing, or a small object with --json. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "renew", id, "--ttl", "120", NULL), 0);
	assert_string_equal(out, "");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "renew", id, "--ttl", "120", "--json", NULL), 0);
	assert_json(out, "d == {\"id\": 1, \"ttl\": 120}");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", id16, "--json", NULL), 0);
	assert_json(out, "d == {\"id\": 2}");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", "--port", port, "--json", NULL), 0);
	assert_json(out, "d == {\"id\": 3}");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "release", id, NULL), 0);
	assert_string_equal(out, "");

	/* status: durations for people, seconds in JSON. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", NULL), 0);
	assert_null(strchr(out, '\033'));
	assert_non_null(strstr(out, "\ndefault ttl:   5m00s\n"));
	assert_non_null(strstr(out, "\nmax ttl:       1d00h\n"));
	assert_non_null(strstr(out, "\nquarantine:    1m00s\n"));
	assert_non_null(strstr(out, "\nhost ports:    "));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", "--json", NULL), 0);
	assert_json(out, "d[\"default_ttl\"] == 300 and d[\"max_ttl\"] == 86400 and d[\"quarantine\"] == 60 and "
			 "d[\"leases\"] == 0 and d[\"eph_lo\"] > 0 and d[\"eph_hi\"] >= d[\"eph_lo\"] and "
			 "isinstance(d[\"eph_in_use\"], int) and d[\"eph_low\"] in (True, False)");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "ports", "--json", NULL), 0);
	assert_json(out, "d[\"portd\"][\"running\"] is True");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", NULL), 0);
	assert_string_equal(out, "ID  PORT(S)  PROTO  KIND  TTL  EXPIRES  OWNER  TIED\n");
	daemon_stop(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(t_fd_lease, daemons_teardown),
		cmocka_unit_test_teardown(t_number_lease_portctl, daemons_teardown),
		cmocka_unit_test_teardown(t_held_ports_not_autobound, daemons_teardown),
		cmocka_unit_test_teardown(t_renew_expire, daemons_teardown),
		cmocka_unit_test_teardown(t_limits, daemons_teardown),
		cmocka_unit_test_teardown(t_other_uid, daemons_teardown),
		cmocka_unit_test_teardown(t_thousand_and_fds, daemons_teardown),
		cmocka_unit_test_teardown(t_tied_to_process, daemons_teardown),
		cmocka_unit_test_teardown(t_tied_many, daemons_teardown),
		cmocka_unit_test_teardown(t_protocol_errors, daemons_teardown),
		cmocka_unit_test_teardown(t_range_and_quarantine, daemons_teardown),
		cmocka_unit_test_teardown(t_portctl_cli, daemons_teardown),
		cmocka_unit_test_teardown(t_daemon_socket, daemons_teardown),
		cmocka_unit_test_teardown(t_readme_example, daemons_teardown),
		cmocka_unit_test_teardown(t_multi_port, daemons_teardown),
		cmocka_unit_test_teardown(t_consecutive_and_exclude, daemons_teardown),
		cmocka_unit_test_teardown(t_udp_and_both, daemons_teardown),
		cmocka_unit_test_teardown(t_tied_to_pid, daemons_teardown),
		cmocka_unit_test_teardown(t_reserve, daemons_teardown),
		cmocka_unit_test_teardown(t_restart_state, daemons_teardown),
		cmocka_unit_test_teardown(t_portctl_output, daemons_teardown),
		cmocka_unit_test_teardown(t_ports_picture, host_ports_teardown),
		cmocka_unit_test_teardown(t_host_ports_warning, host_ports_teardown),
	};

	private_netns = e2e_setup();
	if (!private_netns)
		fprintf(stderr, "# not root: running in the host's network namespace; range tests skipped\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
