/*
 * Hostile input, faults and load, against the real portd binary: malformed
 * datagrams, stray fds, clients that never send, never read or die
 * mid-request, connection floods into the open-files limit, a second and a
 * third user trying to reach the first one's leases, and exhaustion of ports
 * and fds. After each phase another client must still get leases, and the
 * daemon must hold no more fds than before.
 *
 * Run as root (as CI does), the program moves into a private network
 * namespace and runs the other users' clients as nobody and as a uid that
 * has no passwd entry; the tests that need root skip otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
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

#define T 5000 /* ms: timeout of every library call and bounded wait */
#define UID_A 65534u /* nobody */
#define FLOOD 10000 /* connections opened as fast as possible */

static bool private_netns;
static bool many_fds; /* this process may open more than FLOOD fds */
static uid_t uid_b; /* a uid without a passwd entry */
static int flood_fds[FLOOD + 1000];

/* ---- helpers ---- */

static int lease_n(struct portd *p, uint32_t flags, uint16_t count, struct portd_lease *l)
{
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;

	o.flags = flags;
	o.ttl = 600;
	o.count = count;
	return portd_lease(p, &o, l, T);
}

static struct portd_status status_ok(struct portd *p)
{
	struct portd_status st;
	int r = portd_status(p, &st, T);

	if (r < 0)
		fail_msg("portd_status: %s", portd_strerror(r));
	return st;
}

/* p gets an fd lease and a number lease, and gives both back. */
static void assert_leases_work(struct portd *p)
{
	struct portd_lease l;
	int r = lease_n(p, PORTD_FLAG_FD | PORTD_FLAG_TIE, 1, &l);

	if (r < 0)
		fail_msg("fd lease: %s", portd_strerror(r));
	assert_int_equal(l.nfds, 1);
	assert_int_equal(portd_release(p, l.id, T), 0);
	portd_lease_close_fds(&l);
	r = lease_n(p, 0, 1, &l);
	if (r < 0)
		fail_msg("number lease: %s", portd_strerror(r));
	assert_int_equal(portd_release(p, l.id, T), 0);
}

/* A new client of d gets leases. */
static void assert_serving(const struct daemon_proc *d)
{
	struct portd *p = connect_ok(d);

	assert_leases_work(p);
	portd_disconnect(p);
}

static void send_all(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
}

static ssize_t lease_req(uint8_t *buf, size_t cap, uint32_t id, uint32_t flags)
{
	struct proto_lease_req m = { .flags = flags, .ttl = 600, .count = 1, .transport = PORTD_TCP };

	return proto_encode_lease_req(buf, cap, id, &m);
}

/* Does the read end of a pipe see EOF (every write end closed) within the bounded wait? */
static bool pipe_eof(int rd)
{
	struct pollfd p = { .fd = rd, .events = POLLIN };
	char b;

	return poll(&p, 1, T) == 1 && read(rd, &b, 1) == 0;
}

/* Wait (bounded) until p's status satisfies ok(). */
static bool wait_status(struct portd *p, bool (*ok)(const struct portd_status *, long), long arg)
{
	for (uint64_t end = now_ms() + T;; poll(NULL, 0, 5)) {
		struct portd_status st = status_ok(p);

		if (ok(&st, arg))
			return true;
		if (now_ms() >= end)
			return false;
	}
}

static bool leases_are(const struct portd_status *st, long n) { return st->leases == (uint32_t)n; }
static bool conns_are(const struct portd_status *st, long n) { return st->connections == (uint32_t)n; }

/* Fork a child that drops to uid (group uid, no supplementary groups), or fail. */
static pid_t fork_as(uid_t uid)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0 && (setgroups(0, NULL) || setgid(uid) || setuid(uid)))
		_exit(99);
	return pid;
}

static void wait_child(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("child %d failed: status 0x%x", (int)pid, status);
}

/* Let other users reach d's socket (started with --socket-mode): its directory is 0700. */
static void share(const struct daemon_proc *d)
{
	assert_int_equal(chmod(d->dir, 0755), 0);
}

/* ---- malformed input ---- */

/*
 * Garbage, truncated and oversized datagrams, another protocol version, a
 * reply sent as a request, and fds where none are expected: each drops that
 * connection (with a PROTO or VERSION reply where the header could be read),
 * never the daemon, and the daemon keeps no fd it was sent.
 */
static void t_malformed(void **state)
{
	static uint8_t big[PORTD_MSG_MAX * 4];
	struct daemon_proc d = { 0 };
	uint8_t buf[PORTD_MSG_MAX];
	uint32_t detail;
	int fd, base, pfd[2];
	ssize_t n;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_leases_work(p);
	base = count_fds(d.pid);

	/* Shorter than a header. */
	fd = raw_connect(&d);
	send_all(fd, "hello", 5);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);

	/* A header cut short by one byte. */
	fd = raw_connect(&d);
	n = proto_encode_status_req(buf, sizeof(buf), 1);
	send_all(fd, buf, (size_t)n - 1);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);

	/* A LEASE whose body was cut short, its length field telling the truth. */
	fd = raw_connect(&d);
	n = lease_req(buf, sizeof(buf), 2, 0);
	buf[8] = (uint8_t)(n - 4);
	send_all(fd, buf, (size_t)n - 4);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);

	/* A length field that promises more than the datagram holds. */
	fd = raw_connect(&d);
	n = lease_req(buf, sizeof(buf), 3, 0);
	buf[8] = (uint8_t)(n + 8);
	send_all(fd, buf, (size_t)n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);

	/* Oversized: one byte over PORTD_MSG_MAX, and four times it: closed without a reply. */
	n = proto_encode_status_req(big, sizeof(big), 4);
	for (size_t len = PORTD_MSG_MAX + 1; len <= sizeof(big); len += sizeof(big) - PORTD_MSG_MAX - 1) {
		fd = raw_connect(&d);
		send_all(fd, big, len);
		assert_true(raw_closed(fd));
		close(fd);
	}

	/* An empty datagram reads as end of stream. */
	fd = raw_connect(&d);
	send_all(fd, "", 0);
	assert_true(raw_closed(fd));
	close(fd);

	/* Another protocol version: a VERSION error carrying the daemon's. */
	fd = raw_connect(&d);
	n = proto_encode_status_req(buf, sizeof(buf), 5);
	buf[4] = 99;
	send_all(fd, buf, (size_t)n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_VERSION);
	assert_int_equal(detail, PORTD_PROTO_VERSION);
	assert_true(raw_closed(fd));
	close(fd);

	/* A reply sent as a request. */
	fd = raw_connect(&d);
	n = proto_encode_status_req(buf, sizeof(buf), 6);
	buf[7] |= 0x80;
	send_all(fd, buf, (size_t)n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);

	/* An unknown type: an error, and the connection stays. */
	fd = raw_connect(&d);
	n = proto_encode_status_req(buf, sizeof(buf), 7);
	buf[6] = 200;
	send_all(fd, buf, (size_t)n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_BADTYPE);
	n = proto_encode_status_req(buf, sizeof(buf), 8);
	send_all(fd, buf, (size_t)n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_OK);
	close(fd);
	assert_leases_work(p);

	/*
	 * A pipe's write end attached to a request: the daemon closes its copy,
	 * so once ours is closed too the read end sees EOF.
	 */
	fd = raw_connect(&d);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	n = proto_encode_status_req(buf, sizeof(buf), 9);
	assert_int_equal(fdpass_send(fd, buf, (size_t)n, &pfd[1], 1, 0), n);
	close(pfd[1]);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_PROTO);
	assert_true(raw_closed(fd));
	close(fd);
	assert_true(pipe_eof(pfd[0]));
	close(pfd[0]);

	/* More fds than any message may carry (the kernel truncates them): closed, none kept. */
	{
		enum { NFDS = PORTD_FDS_MAX + 4 };
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * NFDS)];
		} cbuf;
		struct iovec iov;
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
				      .msg_controllen = sizeof(cbuf.buf) };
		struct cmsghdr *c;
		int w[NFDS];

		fd = raw_connect(&d);
		assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
		for (int i = 0; i < NFDS; i++)
			w[i] = pfd[1];
		n = proto_encode_status_req(buf, sizeof(buf), 10);
		iov = (struct iovec){ buf, (size_t)n };
		memset(&cbuf, 0, sizeof(cbuf));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(w));
		memcpy(CMSG_DATA(c), w, sizeof(w));
		assert_int_equal(sendmsg(fd, &msg, 0), n);
		close(pfd[1]);
		assert_true(raw_closed(fd));
		close(fd);
		assert_true(pipe_eof(pfd[0]));
		close(pfd[0]);
	}

	/* The daemon still serves, the old connection too, and holds no more fds than before. */
	assert_serving(&d);
	assert_leases_work(p);
	assert_true(wait_fd_count(d.pid, base, T));
	portd_disconnect(p);
	daemon_stop(&d);
}

/* ---- idle connections ---- */

/*
 * --idle-timeout: connections that send nothing are closed once it passes;
 * one that has sent a request stays open however long it then waits.
 */
static void t_idle_timeout(void **state)
{
	enum { QUIET = 64 };
	struct daemon_proc d = { 0 };
	uint8_t buf[64];
	uint32_t detail;
	int spoke, quiet[QUIET], base;
	ssize_t n;

	daemon_start(&d, "--idle-timeout", "1", NULL);
	base = count_fds(d.pid);
	/* Accepted before the quiet ones, so its idle deadline passes first. */
	spoke = raw_connect(&d);
	n = proto_encode_status_req(buf, sizeof(buf), 1);
	send_all(spoke, buf, (size_t)n);
	assert_int_equal(raw_result(spoke, &detail), PORTD_R_OK);
	struct portd *p = connect_ok(&d);
	assert_leases_work(p);
	/* libportd says HELLO as it connects: this one may wait before its first request. */
	struct portd *late = connect_ok(&d);

	for (int i = 0; i < QUIET; i++)
		quiet[i] = raw_connect(&d);
	for (int i = 0; i < QUIET; i++) {
		assert_true(raw_closed(quiet[i]));
		close(quiet[i]);
	}
	/* Past the timeout of every connection above: the three that spoke still work. */
	n = proto_encode_status_req(buf, sizeof(buf), 2);
	send_all(spoke, buf, (size_t)n);
	assert_int_equal(raw_result(spoke, &detail), PORTD_R_OK);
	assert_leases_work(p);
	assert_leases_work(late);
	assert_int_equal(status_ok(p).connections, 3);
	close(spoke);
	portd_disconnect(p);
	portd_disconnect(late);
	assert_true(wait_fd_count(d.pid, base, T));
	assert_serving(&d);
	daemon_stop(&d);
}

/* ---- clients that do not read ---- */

/*
 * A client sends lease requests and never reads a reply: the daemon stops
 * reading it once its replies fill the socket, grants it a bounded number of
 * leases meanwhile, stays small and serves everyone else; when the client
 * closes, every lease it was granted but never received ends.
 */
static void t_never_reads(void **state)
{
	enum { MAX_SENT = 100000 };
	struct daemon_proc d = { 0 };
	uint8_t buf[128];
	int fd, base, sent = 0, sndbuf = 0;
	socklen_t sl = sizeof(sndbuf);
	long rss0, rss1, bound;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_leases_work(p);
	base = count_fds(d.pid);
	rss0 = proc_rss_kb(d.pid);
	assert_true(rss0 > 0);

	fd = raw_connect(&d);
	/*
	 * The daemon's replies wait in this socket, charged to its send buffer
	 * (the same size as ours), at least 512 bytes each (768 on Linux 6.18):
	 * that bounds how many it sends before it must stop reading.
	 */
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl), 0);
	bound = sndbuf / 512 + 64;
	/* Until the daemon stops reading: a send that cannot go for a second. */
	while (sent < MAX_SENT) {
		struct pollfd pw = { .fd = fd, .events = POLLOUT };
		ssize_t n = lease_req(buf, sizeof(buf), (uint32_t)sent + 1, sent % 2 ? PORTD_LEASE_F_FD : 0);

		if (send(fd, buf, (size_t)n, MSG_DONTWAIT) == n) {
			sent++;
			continue;
		}
		assert_int_equal(errno, EAGAIN);
		if (poll(&pw, 1, 1000) == 0)
			break;
	}
	struct portd_status st = status_ok(p);
	fprintf(stderr, "# sent %d requests; the daemon granted %u leases, holds %u ports, %d fds\n",
		sent, st.leases, st.ports_held, count_fds(d.pid));
	assert_true(st.leases > 0);
	assert_true(st.leases < bound);
	assert_true(st.leases < (uint32_t)sent);
	rss1 = proc_rss_kb(d.pid);
	fprintf(stderr, "# daemon RSS %ld kB before, %ld kB after\n", rss0, rss1);
	assert_true(rss1 - rss0 < 16 * 1024);
	assert_leases_work(p);
	assert_serving(&d);

	/* Nothing read: every one of its leases ends, and their sockets close. */
	close(fd);
	assert_true(wait_status(p, leases_are, 0));
	st = status_ok(p);
	assert_int_equal(st.ports_held, 0);
	assert_true(wait_fd_count(d.pid, base, T));
	assert_leases_work(p);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * A client that reads its replies one by one and closes with the last one
 * unread: only that lease ends.
 */
static void t_last_reply_unread(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease_info *v = NULL;
	uint8_t buf[128];
	uint32_t detail;
	int fd, base;
	ssize_t n;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_leases_work(p);
	base = count_fds(d.pid);

	fd = raw_connect(&d);
	for (uint32_t i = 1; i <= 2; i++) {
		n = lease_req(buf, sizeof(buf), i, 0);
		send_all(fd, buf, (size_t)n);
		assert_int_equal(raw_result(fd, &detail), PORTD_R_OK);
	}
	n = lease_req(buf, sizeof(buf), 3, 0);
	send_all(fd, buf, (size_t)n);
	assert_true(wait_status(p, leases_are, 3));
	close(fd);
	assert_true(wait_status(p, leases_are, 2));
	assert_int_equal(portd_list(p, &v, T), 2);
	uint64_t first = v[0].id, last = v[1].id;
	free(v);
	/* The third lease was the one after the two kept. */
	struct portd_lease l;
	assert_int_equal(lease_n(p, 0, 1, &l), 0);
	assert_true(l.id > last + 1);
	assert_int_equal(portd_release(p, l.id, T), 0);

	assert_int_equal(portd_list(p, &v, T), 2);
	assert_int_equal(v[0].id, first);
	assert_int_equal(v[1].id, last);
	free(v);
	assert_int_equal(portd_release(p, first, T), 0);
	assert_int_equal(portd_release(p, last, T), 0);
	assert_true(wait_fd_count(d.pid, base, T));
	assert_serving(&d);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * A long reply unread does not count as many: a client pipelines a LEASE and
 * a LIST of 40 leases (a reply twenty times the size of a lease reply), reads
 * the LEASE reply, sends STATUS and closes. Only the leases of replies surely
 * unread end; the one whose reply it read stays.
 */
static void t_long_reply_unread(void **state)
{
	enum { HELD = 40 };
	struct daemon_proc d = { 0 };
	struct proto_list_req lr = { 0 };
	uint8_t buf[256];
	uint32_t detail;
	struct portd_lease l;
	int fd;
	ssize_t n;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	for (int i = 0; i < HELD; i++)
		assert_int_equal(lease_n(p, 0, 1, &l), 0);

	fd = raw_connect(&d);
	n = lease_req(buf, sizeof(buf), 1, 0);
	send_all(fd, buf, (size_t)n);
	n = proto_encode_list_req(buf, sizeof(buf), 2, &lr);
	send_all(fd, buf, (size_t)n);
	assert_int_equal(raw_result(fd, &detail), PORTD_R_OK); /* the lease: HELD + 1 now */
	assert_true(wait_status(p, leases_are, HELD + 1));
	n = proto_encode_status_req(buf, sizeof(buf), 3);
	send_all(fd, buf, (size_t)n);
	/*
	 * Close once STATUS is answered, with its reply and the LIST's unread:
	 * SIOCINQ sums a SEQPACKET socket's whole queue, MSG_PEEK|MSG_TRUNC
	 * gives the first (the LIST's) length.
	 */
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	int inq = 0;
	assert_int_equal(poll(&pf, 1, T), 1);
	ssize_t first = recv(fd, buf, 1, MSG_PEEK | MSG_TRUNC);
	assert_true(first > PORTD_HDR_SIZE);
	for (uint64_t end = now_ms() + T; now_ms() < end; poll(NULL, 0, 10))
		if (ioctl(fd, SIOCINQ, &inq) == 0 && inq > first)
			break;
	assert_true(inq > first);
	close(fd);
	/* The connection is gone once portd counts one (ours) again. */
	for (uint64_t end = now_ms() + T; status_ok(p).connections != 1 && now_ms() < end;)
		poll(NULL, 0, 10);
	assert_int_equal(status_ok(p).connections, 1);
	assert_int_equal(status_ok(p).leases, HELD + 1);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * A client that dies between request and reply. First before the daemon has
 * read the request: the daemon is stopped (SIGSTOP) while clients connect,
 * send a LEASE (fd, fd tied to them, number) and exit; once it runs again,
 * no lease is left and no fd leaks. Then after the reply was queued: clients
 * see it arrive, read nothing and exit; their leases end (tied: with the
 * process; the others: with the reply discarded unread).
 */
static void t_dies_before_reply(void **state)
{
	const uint32_t kinds[] = { PORTD_LEASE_F_FD, PORTD_LEASE_F_FD | PORTD_LEASE_F_TIE, 0 };
	struct daemon_proc d = { 0 };
	int base, status;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_leases_work(p);
	base = count_fds(d.pid);

	assert_int_equal(kill(d.pid, SIGSTOP), 0);
	assert_int_equal(waitpid(d.pid, &status, WUNTRACED), d.pid);
	assert_true(WIFSTOPPED(status));
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			uint8_t buf[128];
			int c = raw_connect(&d); /* completes in the listen backlog */
			ssize_t n = lease_req(buf, sizeof(buf), 1, kinds[i]);

			_exit(send(c, buf, (size_t)n, 0) == n ? 0 : 2);
		}
		wait_child(pid);
	}
	assert_int_equal(kill(d.pid, SIGCONT), 0);

	/* Once the three connections are gone: no lease, no port, no fd more than before. */
	assert_true(wait_status(p, conns_are, 1));
	struct portd_status st = status_ok(p);
	assert_int_equal(st.leases, 0);
	assert_int_equal(st.ports_held, 0);
	assert_true(wait_fd_count(d.pid, base, T));
	assert_serving(&d);

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			uint8_t buf[128];
			int c = raw_connect(&d);
			ssize_t n = lease_req(buf, sizeof(buf), 1, kinds[i]);
			struct pollfd pr = { .fd = c, .events = POLLIN };

			if (send(c, buf, (size_t)n, 0) != n)
				_exit(2);
			_exit(poll(&pr, 1, T) == 1 ? 0 : 3);
		}
		wait_child(pid);
	}
	assert_true(wait_status(p, conns_are, 1));
	assert_true(wait_status(p, leases_are, 0));
	assert_int_equal(status_ok(p).ports_held, 0);
	assert_true(wait_fd_count(d.pid, base, T));
	assert_serving(&d);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* ---- floods ---- */

/*
 * Open n connections to d as fast as possible (non-blocking connect; EAGAIN
 * when the listen backlog is full), and have p take a lease every `every`.
 * Returns the number opened; their fds are in flood_fds[].
 */
static int flood(const struct daemon_proc *d, int n, struct portd *p, int every)
{
	int opened = 0, again = 0;

	for (int i = 0; i < n; i++) {
		int err = 0, fd = raw_socket(d, true, &err);

		if (fd >= 0)
			flood_fds[opened++] = fd;
		else if (err == EAGAIN)
			again++;
		else
			fail_msg("connect: %s", strerror(err));
		if (p && (i + 1) % every == 0)
			assert_leases_work(p);
	}
	fprintf(stderr, "# %d connections opened, %d refused by a full backlog\n", opened, again);
	return opened;
}

/* How many of the first n flood connections has the daemon not closed? */
static int flood_open(int n)
{
	static struct pollfd pf[FLOOD + 1000];
	int open = n;

	for (int i = 0; i < n; i++)
		pf[i] = (struct pollfd){ .fd = flood_fds[i], .events = POLLIN };
	assert_true(poll(pf, (nfds_t)n, 0) >= 0);
	for (int i = 0; i < n; i++)
		if (pf[i].revents & (POLLIN | POLLHUP))
			open--;
	return open;
}

/* Wait (bounded) until exactly want of the first n flood connections are open. */
static bool wait_flood_open(int n, int want)
{
	for (uint64_t end = now_ms() + 2 * T;; poll(NULL, 0, 10)) {
		int open = flood_open(n);

		if (open == want)
			return true;
		if (now_ms() >= end) {
			fprintf(stderr, "# %d connections open, expected %d\n", open, want);
			return false;
		}
	}
}

/*
 * Wait (bounded) until the daemon has taken or refused every connection of
 * the flood: those it keeps are then exactly the open ones (no connection
 * still waits in the backlog, which would look open too).
 */
static bool wait_backlog_drained(struct portd *p, int n)
{
	for (uint64_t end = now_ms() + 2 * T;; poll(NULL, 0, 10)) {
		uint32_t kept = status_ok(p).connections - 1;
		int open = flood_open(n);

		if (open == (int)kept)
			return true;
		if (now_ms() >= end) {
			fprintf(stderr, "# %d connections open, the daemon has %u\n", open, kept);
			return false;
		}
	}
}

static void flood_close(int n)
{
	for (int i = 0; i < n; i++)
		close(flood_fds[i]);
}

/*
 * 10,000 connections as fast as possible, against the connection limits: the
 * daemon keeps --max-connections-per-uid of them and closes the rest at
 * once, while another client keeps leasing; another user then gets the
 * connections left under --max-connections, and no more.
 */
static void t_flood_connection_limit(void **state)
{
	enum { TOTAL = 64, PER_UID = 48, OTHER = 20 };
	struct daemon_proc d = { 0 };
	int opened, base, pp[2], got[2] = { 0, 0 };
	pid_t pid;

	if (!many_fds)
		skip();
	daemon_start(&d, "--socket-mode", "0666", "--max-connections", "64", "--max-connections-per-uid",
		     "48", "--idle-timeout", "60", NULL);
	share(&d);
	struct portd *p = connect_ok(&d);
	assert_leases_work(p);
	base = count_fds(d.pid);

	opened = flood(&d, FLOOD, p, 1000);
	assert_true(opened >= PER_UID - 1);
	assert_true(wait_flood_open(opened, PER_UID - 1));
	assert_int_equal(status_ok(p).connections, PER_UID);
	assert_leases_work(p);

	if (geteuid() == 0) {
		/* Another user: what is left of --max-connections, then closed at once. */
		assert_int_equal(pipe(pp), 0);
		pid = fork_as(UID_A);
		if (pid == 0) {
			struct portd *q[OTHER];
			struct portd_status st;

			for (int i = 0; i < OTHER; i++) {
				int r = portd_connect(d.sock, &q[i]);

				if (r == 0)
					r = portd_status(q[i], &st, T);
				got[r == 0 ? 0 : 1]++;
			}
			if (write(pp[1], got, sizeof(got)) != sizeof(got))
				_exit(2);
			_exit(0);
		}
		assert_int_equal(read(pp[0], got, sizeof(got)), (ssize_t)sizeof(got));
		wait_child(pid);
		close(pp[0]);
		close(pp[1]);
		assert_int_equal(got[0], TOTAL - PER_UID);
		assert_int_equal(got[1], OTHER - (TOTAL - PER_UID));
		assert_true(wait_status(p, conns_are, PER_UID));
	}
	flood_close(opened);
	assert_true(wait_status(p, conns_are, 1));
	assert_true(wait_fd_count(d.pid, base, T));
	assert_serving(&d);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * The same flood against a daemon whose open-files limit (256) is far below
 * what --max-connections would need: it takes connections only while fds
 * stay for leases, so another client keeps leasing. Once leases use up every
 * fd, accept() fails with EMFILE and the daemon backs off instead of
 * spinning: over a 2 s window with connections waiting in the backlog it
 * uses a small fraction of a CPU. It leases again once fds are free.
 */
static void t_flood_fd_limit(void **state)
{
	enum { NOFILE = 256, MAX_LEASES = 1000 };
	static struct portd_lease ls[MAX_LEASES];
	struct daemon_proc d = { 0 };
	int opened, nl = 0, r;
	uint32_t conns;
	long hz = sysconf(_SC_CLK_TCK), t0, t1;

	if (!many_fds)
		skip();
	daemon_start_nofile(&d, NOFILE, "--idle-timeout", "60", NULL);
	struct portd *p = connect_ok(&d);
	assert_leases_work(p);

	opened = flood(&d, FLOOD, p, 1000);
	assert_true(wait_backlog_drained(p, opened));
	conns = status_ok(p).connections;
	fprintf(stderr, "# the daemon kept %u connections\n", conns);
	/* One fd each, short of the last SERVER_FD_RESERVE (32), kept for leases. */
	assert_true(conns > NOFILE / 2 && conns < NOFILE - 32);
	assert_leases_work(p);
	flood_close(opened);
	assert_true(wait_status(p, conns_are, 1));

	/* Leases take every fd left: a named error at once, the daemon answers. */
	for (r = 0; nl < MAX_LEASES && (r = lease_n(p, 0, 1, &ls[nl])) == 0; nl++)
		;
	assert_int_equal(r, -PORTD_E_INTERNAL);
	assert_int_equal(portd_detail(p), EMFILE);
	fprintf(stderr, "# %d leases took the daemon's last fds\n", nl);
	assert_true(nl > NOFILE / 2);

	/* Connections wait in the backlog while accept() fails with EMFILE. */
	opened = flood(&d, 1000, NULL, 1);
	assert_true(opened > 0);
	t0 = proc_cpu_ticks(d.pid);
	assert_true(t0 >= 0);
	poll(NULL, 0, 2000); /* the observation window, not a synchronisation */
	t1 = proc_cpu_ticks(d.pid);
	fprintf(stderr, "# daemon CPU over 2 s at EMFILE: %ld ticks of %ld\n", t1 - t0, 2 * hz);
	assert_true(t1 - t0 < 2 * hz / 4);
	assert_int_equal(status_ok(p).leases, (uint32_t)nl);

	/* Fds free again: the leases come back, whatever the backlog holds. */
	for (int i = 0; i < nl; i++)
		assert_int_equal(portd_release(p, ls[i].id, T), 0);
	assert_leases_work(p);
	flood_close(opened);
	assert_true(wait_status(p, conns_are, 1));
	assert_serving(&d);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* ---- other users ---- */

/* Byte-sized messages between the test and its children. */
static void put(int fd, char c) { assert_int_equal(write(fd, &c, 1), 1); }
static char get(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c = 0;

	if (poll(&p, 1, 2 * T) != 1 || read(fd, &c, 1) != 1)
		return 0;
	return c;
}

/* In a child: status over a new connection; 0, or the error. */
static int try_connection(const struct daemon_proc *d, struct portd **out)
{
	struct portd_status st;
	struct portd *q = NULL;
	int r = portd_connect(d->sock, &q);

	if (r == 0 && (r = portd_status(q, &st, T)) < 0)
		portd_disconnect(q);
	else if (r == 0)
		*out = q;
	return r;
}

/*
 * --max-connections-per-uid: user A holds its quota of connections; user B
 * still connects and leases, root too; A's next connection is closed at
 * once, and A connects again once it closes one of its own.
 */
static void t_uid_connection_quota(void **state)
{
	enum { QUOTA = 8 };
	struct daemon_proc d = { 0 };
	int to_a[2], from_a[2];
	pid_t a, b;

	if (geteuid() != 0)
		skip();
	daemon_start(&d, "--socket-mode", "0666", "--max-connections-per-uid", "8", "--idle-timeout", "60",
		     NULL);
	share(&d);
	struct portd *p = connect_ok(&d);
	assert_int_equal(pipe(to_a), 0);
	assert_int_equal(pipe(from_a), 0);
	a = fork_as(UID_A);
	if (a == 0) {
		struct portd *q[QUOTA + 1] = { 0 }, *extra = NULL;
		int r = 0;

		for (int i = 0; i < QUOTA && r == 0; i++)
			r = try_connection(&d, &q[i]);
		put(from_a[1], r == 0 ? 'R' : 'x'); /* holding its quota */
		if (get(to_a[0]) != 'G')
			_exit(2);
		/* Over the quota: the daemon closes the connection without an answer. */
		r = try_connection(&d, &extra);
		put(from_a[1], r == -ECONNRESET ? 'C' : 'x');
		/* One closed, one more allowed: bounded retries while the daemon sees the close. */
		portd_disconnect(q[0]);
		for (uint64_t end = now_ms() + T; (r = try_connection(&d, &q[0])) != 0 && now_ms() < end;)
			poll(NULL, 0, 5);
		put(from_a[1], r == 0 ? 'O' : 'x');
		if (get(to_a[0]) != 'E')
			_exit(3);
		_exit(0);
	}
	assert_int_equal(get(from_a[0]), 'R');
	assert_int_equal(status_ok(p).connections, 1 + QUOTA);

	b = fork_as(uid_b);
	if (b == 0) {
		struct portd *q = NULL;
		struct portd_lease l;

		if (portd_connect(d.sock, &q) || lease_n(q, 0, 1, &l) || portd_release(q, l.id, T))
			_exit(2);
		_exit(0);
	}
	wait_child(b);
	assert_serving(&d);

	put(to_a[1], 'G');
	assert_int_equal(get(from_a[0]), 'C');
	assert_int_equal(get(from_a[0]), 'O');
	assert_int_equal(status_ok(p).connections, 1 + QUOTA);
	put(to_a[1], 'E');
	wait_child(a);
	assert_true(wait_status(p, conns_are, 1));
	portd_disconnect(p);
	daemon_stop(&d);
}

struct isolation {
	int renew, release, release_port, take_port, list_before, own, list_after, list_uid_ok;
	int a_ports, a_error;
	uint64_t a_id;
	uint16_t a_port;
};

/*
 * Leases of user A are out of reach of user B: renew, release (by id and by
 * port) get PERM, as PROTOCOL.md documents; an exact lease of A's port gets
 * BUSY, as for any port in use; B lists only its own leases, root lists all.
 * A's per-user quota stops it from taking the whole range, even with leases
 * of several ports each, so B still gets ports.
 */
static void t_isolation(void **state)
{
	struct daemon_proc d = { 0 };
	struct isolation res = { 0 };
	struct portd_lease_info *v = NULL;
	int pp[2], n;
	pid_t pid;

	if (geteuid() != 0 || !private_netns)
		skip(); /* other users, and a quiet port range */
	/* 20 ports; A may hold 8 of them. */
	daemon_start(&d, "--socket-mode", "0666", "--range", "21000-21019", "--max-leases-per-uid", "8", NULL);
	share(&d);
	assert_int_equal(pipe(pp), 0);

	pid = fork_as(UID_A);
	if (pid == 0) {
		struct portd *q = NULL;
		struct portd_lease l;
		int r = 0;

		if (portd_connect(d.sock, &q))
			_exit(2);
		/* Leases of 4 ports each, for as long as the daemon gives them. */
		for (int i = 0; i < 20 && (r = lease_n(q, 0, 4, &l)) == 0; i++) {
			res.a_ports += l.count;
			if (!res.a_id) {
				res.a_id = l.id;
				res.a_port = l.ports[0];
			}
		}
		res.a_error = r;
		if (write(pp[1], &res, sizeof(res)) != sizeof(res))
			_exit(3);
		_exit(0);
	}
	assert_int_equal(read(pp[0], &res, sizeof(res)), (ssize_t)sizeof(res));
	wait_child(pid);
	assert_int_equal(res.a_error, -PORTD_E_QUOTA_UID);
	assert_true(res.a_ports <= 8);

	pid = fork_as(uid_b);
	if (pid == 0) {
		struct portd *q = NULL;
		struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
		struct portd_lease l;
		struct portd_lease_info *w = NULL;

		if (portd_connect(d.sock, &q))
			_exit(2);
		res.renew = portd_renew(q, res.a_id, 30, NULL, T);
		res.release = portd_release(q, res.a_id, T);
		res.release_port = portd_release_port(q, res.a_port, 0, NULL, T);
		o.flags = 0;
		o.port = res.a_port;
		res.take_port = portd_lease(q, &o, &l, T);
		res.list_before = portd_list(q, &w, T);
		free(w);
		for (int i = 0; i < 3 && res.own == 0; i++)
			res.own = lease_n(q, 0, 2, &l);
		res.list_after = portd_list(q, &w, T);
		res.list_uid_ok = 1;
		for (int i = 0; i < res.list_after; i++)
			res.list_uid_ok &= w[i].uid == uid_b;
		free(w);
		if (write(pp[1], &res, sizeof(res)) != sizeof(res))
			_exit(3);
		_exit(0);
	}
	assert_int_equal(read(pp[0], &res, sizeof(res)), (ssize_t)sizeof(res));
	wait_child(pid);
	close(pp[0]);
	close(pp[1]);
	assert_int_equal(res.renew, -PORTD_E_PERM);
	assert_int_equal(res.release, -PORTD_E_PERM);
	assert_int_equal(res.release_port, -PORTD_E_PERM);
	assert_int_equal(res.take_port, -PORTD_E_BUSY);
	assert_int_equal(res.list_before, 0);
	assert_int_equal(res.own, 0);
	assert_int_equal(res.list_after, 3);
	assert_true(res.list_uid_ok);

	/* Root sees both users' leases, A's untouched (its TTL was not renewed to 30 s). */
	struct portd *p = connect_ok(&d);
	n = portd_list(p, &v, T);
	int of_a = 0, of_b = 0;
	for (int i = 0; i < n; i++) {
		of_a += v[i].uid == UID_A;
		of_b += v[i].uid == uid_b;
		if (v[i].id == res.a_id)
			assert_int_equal(v[i].ttl, 600);
	}
	free(v);
	assert_int_equal(of_a, res.a_ports / 4);
	assert_int_equal(of_b, 3);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * The socket's defaults keep other users out: mode 0600 unless told
 * otherwise; --socket-mode 0660 --socket-group G lets G's members in only.
 */
static void t_socket_access(void **state)
{
	struct daemon_proc d = { 0 };
	struct stat st;
	char gid[16];
	pid_t pid;

	if (geteuid() != 0)
		skip();
	daemon_start(&d, NULL);
	share(&d);
	assert_int_equal(stat(d.sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	pid = fork_as(UID_A);
	if (pid == 0) {
		struct portd *q = NULL;
		_exit(portd_connect(d.sock, &q) == -EACCES ? 0 : 2);
	}
	wait_child(pid);
	daemon_stop(&d);

	snprintf(gid, sizeof(gid), "%u", (unsigned)uid_b);
	daemon_start(&d, "--socket-mode", "0660", "--socket-group", gid, NULL);
	share(&d);
	assert_int_equal(stat(d.sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, uid_b);
	pid = fork_as(UID_A);
	if (pid == 0) {
		struct portd *q = NULL;
		_exit(portd_connect(d.sock, &q) == -EACCES ? 0 : 2);
	}
	wait_child(pid);
	pid = fork_as(uid_b); /* its group is G */
	if (pid == 0) {
		struct portd *q = NULL;
		struct portd_lease l;
		_exit(portd_connect(d.sock, &q) == 0 && lease_n(q, 0, 1, &l) == 0 ? 0 : 2);
	}
	wait_child(pid);
	daemon_stop(&d);
}

/* ---- exhaustion ---- */

/*
 * Out of ports: a lease that cannot be granted whole gets NOPORTS at once and
 * leaves no port held; the daemon answers status right after, and portctl
 * says what to do.
 */
static void t_out_of_ports(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease a, b, l;
	char out[256], err[512];

	if (!private_netns)
		skip(); /* a quiet port range */
	daemon_start(&d, "--range", "22000-22004", NULL);
	struct portd *p = connect_ok(&d);
	assert_int_equal(lease_n(p, 0, 3, &a), 0);
	assert_int_equal(status_ok(p).ports_held, 3);
	/* Two ports left: the third of three fails after two were bound. */
	assert_int_equal(lease_n(p, 0, 3, &l), -PORTD_E_NOPORTS);
	struct portd_status st = status_ok(p);
	assert_int_equal(st.ports_held, 3);
	assert_int_equal(st.leases, 1);
	assert_int_equal(lease_n(p, 0, 2, &b), 0);
	assert_int_equal(lease_n(p, 0, 1, &l), -PORTD_E_NOPORTS);
	assert_int_equal(status_ok(p).ports_held, 5);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", NULL), 1);
	assert_string_equal(out, "");
	assert_non_null(strstr(err, "no free port"));
	assert_non_null(strstr(err, "release"));
	assert_int_equal(portd_release(p, a.id, T), 0);
	assert_int_equal(portd_release(p, b.id, T), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * Out of fds (RLIMIT_NOFILE of 64): a lease gets INTERNAL with EMFILE at
 * once (a tied one too, which needs a pidfd before any port), status still answers, a lease of several ports that runs out midway
 * holds nothing, and portctl says what to do.
 */
static void t_out_of_fds(void **state)
{
	enum { NOFILE = 64 };
	static struct portd_lease ls[NOFILE];
	struct daemon_proc d = { 0 };
	struct portd_lease l;
	char out[256], err[1024];
	int nl = 0, r = 0;

	daemon_start_nofile(&d, NOFILE, NULL);
	struct portd *p = connect_ok(&d);
	while (nl < NOFILE && (r = lease_n(p, 0, 1, &ls[nl])) == 0)
		nl++;
	assert_int_equal(r, -PORTD_E_INTERNAL);
	assert_int_equal(portd_detail(p), EMFILE);
	struct portd_status st = status_ok(p);
	assert_int_equal(st.leases, (uint32_t)nl);
	assert_int_equal(st.ports_held, (uint32_t)nl);
	/* A tied lease needs the caller's pidfd first: no fd for it is the daemon's trouble, not INVAL. */
	assert_int_equal(lease_n(p, PORTD_FLAG_TIE, 1, &l), -PORTD_E_INTERNAL);
	assert_int_equal(portd_detail(p), EMFILE);

	/* Three fds free, four ports asked for: nothing held after. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(portd_release(p, ls[i].id, T), 0);
	assert_int_equal(lease_n(p, 0, 4, &l), -PORTD_E_INTERNAL);
	st = status_ok(p);
	assert_int_equal(st.ports_held, (uint32_t)nl - 3);
	assert_int_equal(st.leases, (uint32_t)nl - 3);
	assert_int_equal(lease_n(p, 0, 3, &l), 0);
	assert_int_equal(portd_release(p, l.id, T), 0);

	/*
	 * Two fds free, the lowest (released first), below the reserve kept for
	 * leases: portctl's connection takes one or both, and its lease of two
	 * ports finds no fd for the second at least.
	 */
	assert_int_equal(lease_n(p, 0, 1, &ls[0]), 0);
	r = portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "2", NULL);
	fprintf(stderr, "# portctl: %s", err);
	assert_int_equal(r, 1);
	assert_string_equal(out, "");
	assert_non_null(strstr(err, "open files"));
	assert_non_null(strstr(err, "LimitNOFILE"));
	st = status_ok(p);
	assert_int_equal(st.leases, (uint32_t)nl - 2);
	assert_int_equal(st.ports_held, (uint32_t)nl - 2);
	portd_disconnect(p);
	daemon_stop(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(t_malformed, daemons_teardown),
		cmocka_unit_test_teardown(t_idle_timeout, daemons_teardown),
		cmocka_unit_test_teardown(t_never_reads, daemons_teardown),
		cmocka_unit_test_teardown(t_last_reply_unread, daemons_teardown),
		cmocka_unit_test_teardown(t_long_reply_unread, daemons_teardown),
		cmocka_unit_test_teardown(t_dies_before_reply, daemons_teardown),
		cmocka_unit_test_teardown(t_flood_connection_limit, daemons_teardown),
		cmocka_unit_test_teardown(t_flood_fd_limit, daemons_teardown),
		cmocka_unit_test_teardown(t_uid_connection_quota, daemons_teardown),
		cmocka_unit_test_teardown(t_isolation, daemons_teardown),
		cmocka_unit_test_teardown(t_socket_access, daemons_teardown),
		cmocka_unit_test_teardown(t_out_of_ports, daemons_teardown),
		cmocka_unit_test_teardown(t_out_of_fds, daemons_teardown),
	};
	struct rlimit rl;

	private_netns = e2e_setup();
	/* Room for the flood's connections, all open at once. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		many_fds = rl.rlim_cur >= FLOOD + 2000;
	}
	if (!many_fds)
		fprintf(stderr, "# fewer than %d fds allowed: the flood tests are skipped\n", FLOOD + 2000);
	if (geteuid() == 0) {
		/* A second user without a passwd entry. */
		for (uid_b = 54321; getpwuid(uid_b) || getgrgid(uid_b); uid_b++)
			;
	} else {
		fprintf(stderr, "# not root: tests of other users and floods are skipped\n");
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
