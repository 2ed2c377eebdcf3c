/*
 * portd --portserver, end to end: the real portd binary, driven by the real
 * portpicker client from Debian's python3-portpicker (its tests skip only when
 * that package is missing) and by raw connections for every malformed or
 * refused input. As root the whole suite runs in a private network namespace,
 * so port ranges are quiet and the abstract socket names are private.
 *
 * Every wait is bounded; nothing sleeps to synchronise (children report on
 * pipes, exits are seen through pidfds, the daemon is polled by request).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "portd.h"
#include "portserver.h"
#include "testutil.h"

#define T 5000          /* ms: timeout of every library call */
#define PYTHON "/usr/bin/python3" /* Debian's, which python3-portpicker is installed for */
#define NCLIENTS 64
/* "At once": well before the read timeout could have closed the connection. */
#define AT_ONCE_MS (PORTSERVER_TIMEOUT_MS / 2)

static bool private_netns;
static int name_seq;

/* A fresh abstract address for one daemon. */
static void new_address(char *buf, size_t len)
{
	snprintf(buf, len, "@portd-test-ps-%d-%d", (int)getpid(), name_seq++);
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool have_portpicker(void)
{
	return access(PYTHON, X_OK) == 0 &&
	       system(PYTHON " -c 'import portpicker' >/dev/null 2>&1") == 0;
}

/* Wait (bounded) for a child to exit and reap it; its exit status, or -1. */
static int reap(pid_t pid, int timeout_ms)
{
	int pfd = pidfd_open(pid, 0), status = 0;
	struct pollfd p = { .fd = pfd, .events = POLLIN };

	if (pfd < 0)
		return -1;
	if (poll(&p, 1, timeout_ms) <= 0) {
		close(pfd);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	close(pfd);
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A child that lives until *hold is closed (or it is killed): a process to name. */
static pid_t sleeper(int *hold)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char b;
		close(p[1]);
		while (read(p[0], &b, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(p[0]);
	*hold = p[1];
	return pid;
}

static void sleeper_end(pid_t pid, int hold)
{
	close(hold);
	assert_int_equal(reap(pid, 10000), 0);
}

/* ---- raw portserver clients ---- */

static int ps_connect(const char *addr)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(addr);
	socklen_t len = sizeof(a);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_true(n < sizeof(a.sun_path));
	if (addr[0] == '@') {
		/* Abstract: the name's exact length, as portpicker (Python) connects. */
		memcpy(a.sun_path + 1, addr + 1, n - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		memcpy(a.sun_path, addr, n);
	}
	if (connect(fd, (struct sockaddr *)&a, len) < 0)
		fail_msg("connect %s: %s", addr, strerror(errno));
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/*
 * Read the answer within timeout_ms: the port, or 0 if the daemon closed the
 * connection without a reply (end of stream or a reset). Fails the test on
 * anything else (a hang, a malformed reply). *us (if not NULL) gets the time it took.
 */
static int ps_answer(int fd, int timeout_ms, uint64_t *us)
{
	uint64_t t0 = now_us(), end = t0 + (uint64_t)timeout_ms * 1000;
	char buf[64];
	size_t got = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_us();
		ssize_t n;

		if (now >= end || poll(&p, 1, (int)((end - now + 999) / 1000)) <= 0)
			fail_msg("no answer and no close within %d ms", timeout_ms);
		n = recv(fd, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (us)
			*us = now_us() - t0;
		if (n < 0 && errno == ECONNRESET && got == 0)
			return 0;
		if (n < 0)
			fail_msg("recv: %s", strerror(errno));
		if (n == 0) {
			if (got == 0)
				return 0;
			buf[got] = '\0';
			fail_msg("reply without a newline: '%s'", buf);
		}
		got += (size_t)n;
		buf[got] = '\0';
		if (strchr(buf, '\n')) {
			char *end_p;
			long port = strtol(buf, &end_p, 10);

			if (*end_p != '\n' || end_p[1] || port < 1 || port > 65535)
				fail_msg("malformed reply '%s'", buf);
			return (int)port;
		}
		if (got >= sizeof(buf) - 1)
			fail_msg("reply too long");
	}
}

/* One request: the port granted, or 0 when the daemon closed without a reply. */
static int ps_ask(const char *addr, const void *line, size_t len, uint64_t *us)
{
	int fd = ps_connect(addr);
	int port;

	send_all(fd, line, len);
	port = ps_answer(fd, 5000, us);
	close(fd);
	return port;
}

static int ps_ask_pid(const char *addr, pid_t pid, uint64_t *us)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "%d\n", (int)pid);

	return ps_ask(addr, line, (size_t)n, us);
}

/* ---- the daemon's view ---- */

/* Every lease the daemon lists (malloc'ed), and their count. */
static int list_all(const struct daemon_proc *d, struct portd_lease_info **v)
{
	struct portd *p = connect_ok(d);
	int n = portd_list(p, v, T);

	portd_disconnect(p);
	assert_true(n >= 0);
	return n;
}

static int lease_count(const struct daemon_proc *d)
{
	struct portd_lease_info *v = NULL;
	int n = list_all(d, &v);
	free(v);
	return n;
}

/* Wait (bounded) until the daemon lists exactly n leases. */
static bool wait_leases(const struct daemon_proc *d, int n, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms;; poll(NULL, 0, 10)) {
		if (lease_count(d) == n)
			return true;
		if (now_ms() >= end)
			return false;
	}
}

/* The lease on port: it must be a portserver lease, tied to pid, with no deadline. */
static void assert_ps_lease(const struct portd_lease_info *v, int n, int port, pid_t pid)
{
	for (int i = 0; i < n; i++) {
		if (v[i].ports[0] != port)
			continue;
		assert_int_equal(v[i].count, 1);
		assert_int_equal(v[i].transport, PORTD_TRANSPORT_TCP);
		assert_true(v[i].flags & PORTD_FLAG_PORTSERVER);
		assert_false(v[i].flags & PORTD_FLAG_FD);
		assert_int_equal(v[i].tied_pid, pid);
		assert_int_equal(v[i].ttl, 0);
		assert_true(v[i].expires_in_ms == PORTD_NO_DEADLINE);
		assert_int_equal(v[i].uid, getuid());
		return;
	}
	fail_msg("no lease holds port %d", port);
}

/* ---- portpicker clients ---- */

/*
 * One python3 process: imports portpicker, says "ready", waits on fd 3 (the
 * barrier) so that all of them ask at once, prints its port, and lives until
 * its stdin is closed.
 */
static const char py_client[] =
	"import os, sys, portpicker\n"
	"sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
	"os.read(3, 1)\n"
	"print(portpicker.pick_unused_port(), flush=True)\n"
	"sys.stdin.read()\n";

struct pyclient {
	pid_t pid;
	int out;  /* its stdout */
	int hold; /* its stdin: closing it ends the process */
	char buf[128];
	size_t len;
	int port;
};

static void py_spawn(struct pyclient *c, const char *addr, int barrier, int errfd)
{
	int out[2], in[2];

	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		/* dup2() clears close-on-exec on the copies: only fds 0-3 reach python. */
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(errfd, 2) < 0 || dup2(barrier, 3) < 0)
			_exit(126);
		setenv("PORTSERVER_ADDRESS", addr, 1);
		execl(PYTHON, "python3", "-c", py_client, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	c->out = out[0];
	c->hold = in[1];
	c->len = 0;
	c->port = 0;
}

static int lines(const struct pyclient *c)
{
	int n = 0;
	for (size_t i = 0; i < c->len; i++)
		n += c->buf[i] == '\n';
	return n;
}

/* Read every client's stdout until each has printed want lines: bounded. */
static void py_read_lines(struct pyclient *cs, int n, int want, int timeout_ms)
{
	struct pollfd pf[NCLIENTS];
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		int waiting = 0;

		for (int i = 0; i < n; i++) {
			pf[i] = (struct pollfd){ .fd = lines(&cs[i]) < want ? cs[i].out : -1, .events = POLLIN };
			waiting += pf[i].fd >= 0;
		}
		if (!waiting)
			return;
		uint64_t now = now_ms();
		if (now >= end)
			fail_msg("%d portpicker client(s) did not print line %d within %d ms", waiting, want,
				 timeout_ms);
		if (poll(pf, (nfds_t)n, (int)(end - now)) < 0)
			fail_msg("poll: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			ssize_t r;

			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			r = read(cs[i].out, cs[i].buf + cs[i].len, sizeof(cs[i].buf) - 1 - cs[i].len);
			if (r <= 0)
				fail_msg("portpicker client %d (pid %d) exited early: '%.*s'", i, (int)cs[i].pid,
					 (int)cs[i].len, cs[i].buf);
			cs[i].len += (size_t)r;
			cs[i].buf[cs[i].len] = '\0';
		}
	}
}

/*
 * Start n portpicker processes, let them ask at once, and collect their
 * ports. Their stderr goes to errfd (portpicker prints there when it falls
 * back to picking a port itself).
 */
static void py_round(struct pyclient *cs, int n, const char *addr, int errfd)
{
	int barrier[2];
	uint64_t t0;

	assert_int_equal(pipe2(barrier, O_CLOEXEC), 0);
	for (int i = 0; i < n; i++)
		py_spawn(&cs[i], addr, barrier[0], errfd);
	close(barrier[0]);
	py_read_lines(cs, n, 1, 60000); /* every interpreter up, portpicker imported */
	t0 = now_ms();
	close(barrier[1]);              /* go: all read EOF on fd 3 at once */
	py_read_lines(cs, n, 2, 30000);
	print_message("%d portpicker clients got their ports within %" PRIu64 " ms of the start signal\n", n,
		      now_ms() - t0);
	for (int i = 0; i < n; i++) {
		char *nl = strchr(cs[i].buf, '\n');
		char *end;
		long port = strtol(nl + 1, &end, 10);

		if (strcmp(cs[i].buf, "ready\n") == 0 || *end != '\n' || port < 1 || port > 65535)
			fail_msg("client %d printed '%s'", i, cs[i].buf);
		cs[i].port = (int)port;
	}
}

static void py_end(struct pyclient *cs, int n)
{
	for (int i = 0; i < n; i++)
		close(cs[i].hold);
	for (int i = 0; i < n; i++) {
		assert_int_equal(reap(cs[i].pid, 20000), 0);
		close(cs[i].out);
	}
}

static void assert_file_empty(int fd, const char *what)
{
	char buf[512];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	assert_true(n >= 0);
	buf[n] = '\0';
	if (n)
		fail_msg("%s: '%s'", what, buf);
}

static int temp_file(void)
{
	char path[] = "/tmp/portd-ps-err.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

/* ---- tests ---- */

/*
 * 64 portpicker processes started together get 64 distinct ports, each
 * reserved while its process lives and listed as a portserver lease tied to
 * it; when they exit the leases end and (quarantine 0) the same ports are
 * handed out again to the next 64.
 */
static void t_portpicker_64(void **state)
{
	static struct pyclient cs[NCLIENTS];
	static uint8_t seen[65536];
	struct daemon_proc d = { 0 };
	struct portd_lease_info *v = NULL;
	char addr[64], out[65536], err[512];
	int errfd, n;

	if (!have_portpicker())
		skip(); /* tools/deps.sh installs python3-portpicker */
	new_address(addr, sizeof(addr));
	errfd = temp_file();
	/* With a private namespace, a range of exactly 64 ports: the second round must reuse them all. */
	if (private_netns)
		daemon_start(&d, "--portserver", addr, "--quarantine", "0", "--range", "20000-20063", NULL);
	else
		daemon_start(&d, "--portserver", addr, "--quarantine", "0", NULL);

	for (int round = 0; round < 2; round++) {
		py_round(cs, NCLIENTS, addr, errfd);
		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < NCLIENTS; i++) {
			if (seen[cs[i].port]++)
				fail_msg("port %d was given twice", cs[i].port);
			if (private_netns)
				assert_in_range(cs[i].port, 20000, 20063);
			/* Reserved: a bind without SO_REUSEADDR fails while the lease holds the port. */
			assert_int_equal(try_bind_tcp((uint16_t)cs[i].port, false, NULL), -EADDRINUSE);
		}
		/* Each is a portserver lease tied to the process that asked for it. */
		n = list_all(&d, &v);
		assert_int_equal(n, NCLIENTS);
		for (int i = 0; i < NCLIENTS; i++)
			assert_ps_lease(v, n, cs[i].port, cs[i].pid);
		free(v);
		/* And portctl shows them so. */
		assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", "--json", NULL), 0);
		int kinds = 0, nulls = 0;
		for (const char *p = out; (p = strstr(p, "\"kind\": \"portserver\"")); p++)
			kinds++;
		for (const char *p = out; (p = strstr(p, "\"ttl\": 0, \"expires_in_ms\": null")); p++)
			nulls++;
		assert_int_equal(kinds, NCLIENTS);
		assert_int_equal(nulls, NCLIENTS);
		for (int i = 0; i < NCLIENTS; i++) {
			char want[64];
			snprintf(want, sizeof(want), "\"ports\": [%d]", cs[i].port);
			assert_non_null(strstr(out, want));
			snprintf(want, sizeof(want), "\"tied_pid\": %d}", (int)cs[i].pid);
			assert_non_null(strstr(out, want));
		}
		assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", NULL), 0);
		assert_non_null(strstr(out, "portserver"));

		py_end(cs, NCLIENTS);
		/* Their leases end with them. */
		if (!wait_leases(&d, 0, 10000))
			fail_msg("%d lease(s) outlived their processes", lease_count(&d));
		if (private_netns)
			for (int i = 0; i < NCLIENTS; i++)
				assert_int_equal(try_bind_tcp((uint16_t)cs[i].port, false, NULL), 0);
	}
	/* No client fell back to picking a port itself (it says so on stderr). */
	assert_file_empty(errfd, "portpicker's stderr");
	close(errfd);
	daemon_stop(&d);
}

/* Find a kernel thread we can see: kthreadd (pid 2) in the initial pid namespace. */
static pid_t kernel_thread(void)
{
	char buf[4096];
	FILE *f = fopen("/proc/2/status", "re");
	bool kt = false;

	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f))
		if (strncmp(buf, "Kthread:", 8) == 0 && atoi(buf + 8) == 1)
			kt = true;
	fclose(f);
	if (!kt) { /* kernels before "Kthread:": the flags in /proc/2/stat */
		unsigned flags = 0;
		char *p;
		f = fopen("/proc/2/stat", "re");
		if (!f)
			return 0;
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) &&
		    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %u", &flags) == 1)
			kt = flags & 0x00200000u;
		fclose(f);
	}
	return kt ? 2 : 0;
}

/* A pid no process has: a child's, once reaped. */
static pid_t gone_pid(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(reap(pid, 10000), 0);
	return pid;
}

static void expect_refused(const char *addr, const char *what, const void *line, size_t len)
{
	uint64_t us = 0;
	int port = ps_ask(addr, line, len, &us);

	if (port)
		fail_msg("%s: got port %d", what, port);
	if (us > AT_ONCE_MS * 1000)
		fail_msg("%s: closed only after %" PRIu64 " us", what, us);
}

/*
 * Every malformed line or unacceptable pid is closed at once without a
 * reply; a line that never ends is closed at the timeout; a pid split over
 * two writes is read whole. Nothing leaks a lease.
 */
static void t_malformed(void **state)
{
	struct daemon_proc d = { 0 };
	char addr[64], line[64], big[4096];
	pid_t kt = kernel_thread(), gone = gone_pid();
	uint64_t us, t0;
	int hold, fd, port, n;
	pid_t child = sleeper(&hold);
	unsigned pid_max = 0;
	FILE *f;

	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, "--quarantine", "0", NULL);

	/* The control: a well-formed request for a live process of ours is granted. */
	port = ps_ask_pid(addr, child, &us);
	assert_int_not_equal(port, 0);
	print_message("granted in %" PRIu64 " us\n", us);
	assert_int_equal(lease_count(&d), 1);

	static const char *const garbage[] = {
		"hello\n", "12a\n", "\n", "-5\n", "+5\n", " 12\n", "12 \n", "12\r\n", "0x10\n",
		"99999999999\n",                /* above any pid */
		"1234567890123456789012345678901234567890\n", /* longer than the buffer */
		"0\n", "1\n",                   /* no process; init never exits */
	};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
		expect_refused(addr, garbage[i], garbage[i], strlen(garbage[i]));
	/* A second line after the pid. */
	n = snprintf(line, sizeof(line), "%d\n%d\n", (int)child, (int)child);
	expect_refused(addr, "two lines", line, (size_t)n);
	/* A NUL in the line. */
	expect_refused(addr, "NUL byte", "12\0\n", 4);
	/* A process that does not exist: reaped, and one above pid_max. */
	n = snprintf(line, sizeof(line), "%d\n", (int)gone);
	expect_refused(addr, "reaped pid", line, (size_t)n);
	f = fopen("/proc/sys/kernel/pid_max", "re");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%u", &pid_max), 1);
	fclose(f);
	n = snprintf(line, sizeof(line), "%u\n", pid_max + 1);
	expect_refused(addr, "pid above pid_max", line, (size_t)n);
	/* A kernel thread never exits: its lease would never end. */
	if (kt) {
		n = snprintf(line, sizeof(line), "%d\n", (int)kt);
		expect_refused(addr, "kernel thread", line, (size_t)n);
	} else {
		print_message("no kernel thread visible (pid namespace): that case not run\n");
	}
	/* portd itself: the same. */
	n = snprintf(line, sizeof(line), "%d\n", (int)d.pid);
	expect_refused(addr, "portd's own pid", line, (size_t)n);
	/* A huge line without a newline: closed as soon as the buffer is full, not at the timeout. */
	memset(big, '1', sizeof(big));
	expect_refused(addr, "4096 digits, no newline", big, sizeof(big));
	/* The end of the stream before the newline. */
	fd = ps_connect(addr);
	n = snprintf(line, sizeof(line), "%d", (int)child);
	send_all(fd, line, (size_t)n);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	t0 = now_ms();
	assert_int_equal(ps_answer(fd, 5000, NULL), 0);
	assert_true(now_ms() - t0 < AT_ONCE_MS);
	close(fd);

	/* No newline within the timeout: closed then, no earlier and not much later. */
	fd = ps_connect(addr);
	t0 = now_ms();
	send_all(fd, line, (size_t)n);
	assert_int_equal(ps_answer(fd, 5000, NULL), 0);
	uint64_t waited = now_ms() - t0;
	print_message("a pid without a newline was closed after %" PRIu64 " ms (timeout %d ms)\n", waited,
		      PORTSERVER_TIMEOUT_MS);
	assert_in_range(waited, PORTSERVER_TIMEOUT_MS - 20, PORTSERVER_TIMEOUT_MS + 2000);
	close(fd);
	/* Nothing at all: the same. */
	fd = ps_connect(addr);
	t0 = now_ms();
	assert_int_equal(ps_answer(fd, 5000, NULL), 0);
	assert_in_range(now_ms() - t0, PORTSERVER_TIMEOUT_MS - 20, PORTSERVER_TIMEOUT_MS + 2000);
	close(fd);

	/* None of that took a lease. */
	assert_int_equal(lease_count(&d), 1);

	/* A pid split over two writes is read whole: nothing happens after the first half. */
	fd = ps_connect(addr);
	n = snprintf(line, sizeof(line), "%d\n", (int)child);
	send_all(fd, line, 1);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 100), 0); /* no reply, no close */
	send_all(fd, line + 1, (size_t)n - 1);
	port = ps_answer(fd, 5000, NULL);
	close(fd);
	assert_int_not_equal(port, 0);
	struct portd_lease_info *v = NULL;
	n = list_all(&d, &v);
	assert_int_equal(n, 2);
	assert_ps_lease(v, n, port, child);
	free(v);

	/* Both leases end with the process. */
	sleeper_end(child, hold);
	assert_true(wait_leases(&d, 0, 10000));
	daemon_stop(&d);
}

struct uid_result {
	int root_pid, own_pid;
};

/* A live user-space process (pid > 1, not a kernel thread) of a uid other than ours, or 0. */
static pid_t other_uid_process(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	assert_non_null(d);
	while (!found && (e = readdir(d))) {
		char path[300], buf[1024], *p;
		unsigned uid = 0, flags = 0;
		bool have_uid = false;
		pid_t pid = (pid_t)atoi(e->d_name);
		FILE *f;

		if (pid <= 1 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		if (!(f = fopen(path, "re")))
			continue;
		while (fgets(buf, sizeof(buf), f))
			if (sscanf(buf, "Uid: %u", &uid) == 1)
				have_uid = true;
		fclose(f);
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		if (!have_uid || uid == getuid() || !(f = fopen(path, "re")))
			continue;
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) &&
		    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %u", &flags) == 1 && !(flags & 0x00200000u))
			found = pid;
		fclose(f);
	}
	closedir(d);
	return found;
}

/*
 * Another uid's process is refused unless the caller is root; the owner of
 * the lease is the caller (from SO_PEERCRED), not the process named.
 */
static void t_other_uid(void **state)
{
	struct daemon_proc d = { 0 };
	struct uid_result ur = { -1, -1 };
	char addr[64];
	int pr[2], hold;

	if (geteuid() != 0) {
		/* Not root: a process of another user, if there is one, is refused; our own is not. */
		pid_t other = other_uid_process();
		if (!other)
			skip(); /* no second uid to try */
		new_address(addr, sizeof(addr));
		daemon_start(&d, "--portserver", addr, NULL);
		print_message("pid %d of another uid\n", (int)other);
		assert_int_equal(ps_ask_pid(addr, other, NULL), 0);
		hold = 0;
		pid_t mine = sleeper(&hold);
		assert_int_not_equal(ps_ask_pid(addr, mine, NULL), 0);
		sleeper_end(mine, hold);
		daemon_stop(&d);
		return;
	}
	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, NULL);
	assert_int_equal(pipe(pr), 0);
	pid_t me = getpid();
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(3);
		ur.root_pid = ps_ask_pid(addr, me, NULL);        /* root's process: refused */
		ur.own_pid = ps_ask_pid(addr, getpid(), NULL);   /* its own: granted */
		_exit(write(pr[1], &ur, sizeof(ur)) == sizeof(ur) ? 0 : 4);
	}
	close(pr[1]);
	assert_int_equal(read(pr[0], &ur, sizeof(ur)), (ssize_t)sizeof(ur));
	close(pr[0]);
	assert_int_equal(reap(child, 10000), 0);
	assert_int_equal(ur.root_pid, 0);
	assert_int_not_equal(ur.own_pid, 0);
	/* The nobody child has exited: its lease ended with it. */
	assert_true(wait_leases(&d, 0, 10000));

	/* Root may name any process: here one of nobody's. The lease is root's. */
	int p2[2], ready[2];
	char b;
	assert_int_equal(pipe2(p2, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid_t nob = fork();
	assert_true(nob >= 0);
	if (nob == 0) {
		close(p2[1]);
		close(ready[0]);
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(3);
		if (write(ready[1], "u", 1) != 1) /* it runs as nobody now */
			_exit(4);
		while (read(p2[0], &b, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(p2[0]);
	close(ready[1]);
	hold = p2[1];
	assert_int_equal(read(ready[0], &b, 1), 1);
	close(ready[0]);
	int port = ps_ask_pid(addr, nob, NULL);
	assert_int_not_equal(port, 0);
	struct portd_lease_info *v = NULL;
	int n = list_all(&d, &v);
	assert_int_equal(n, 1);
	assert_ps_lease(v, n, port, nob);
	assert_int_equal(v[0].uid, 0);
	assert_int_equal(v[0].pid, getpid());
	free(v);
	sleeper_end(nob, hold);
	assert_true(wait_leases(&d, 0, 10000));
	daemon_stop(&d);
}

/*
 * An empty pool or a full quota refuses by closing, at once; ports come back
 * when the process exits, through the quarantine.
 */
static void t_exhausted(void **state)
{
	struct daemon_proc d = { 0 };
	char addr[64], out[4096], err[512];
	uint64_t us;
	int hold, hold2;
	pid_t a = sleeper(&hold), b;

	/* The per-uid quota: the same in any namespace. */
	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, "--max-leases-per-uid", "2", NULL);
	assert_int_not_equal(ps_ask_pid(addr, a, NULL), 0);
	assert_int_not_equal(ps_ask_pid(addr, a, NULL), 0);
	assert_int_equal(ps_ask_pid(addr, a, &us), 0);
	print_message("over the quota: closed after %" PRIu64 " us\n", us);
	assert_true(us < AT_ONCE_MS * 1000);
	assert_int_equal(lease_count(&d), 2);
	daemon_stop(&d);

	if (!private_netns) {
		sleeper_end(a, hold);
		print_message("not root: the range cases need a quiet port range; not run\n");
		return;
	}
	/* A range of two ports, no quarantine: the third request finds the pool empty. */
	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, "--range", "21000-21001", "--quarantine", "0", NULL);
	int p1 = ps_ask_pid(addr, a, NULL), p2 = ps_ask_pid(addr, a, NULL);
	assert_true((p1 == 21000 && p2 == 21001) || (p1 == 21001 && p2 == 21000));
	assert_int_equal(ps_ask_pid(addr, a, &us), 0);
	print_message("empty pool: closed after %" PRIu64 " us\n", us);
	assert_true(us < AT_ONCE_MS * 1000);
	/* The process exits: both ports are free for the next one. */
	sleeper_end(a, hold);
	assert_true(wait_leases(&d, 0, 10000));
	b = sleeper(&hold2);
	assert_int_not_equal(ps_ask_pid(addr, b, NULL), 0);
	sleeper_end(b, hold2);
	daemon_stop(&d);

	/* With a quarantine, freed ports wait in it: the pool stays empty meanwhile. */
	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, "--range", "21000-21001", "--quarantine", "60", NULL);
	a = sleeper(&hold);
	assert_int_not_equal(ps_ask_pid(addr, a, NULL), 0);
	assert_int_not_equal(ps_ask_pid(addr, a, NULL), 0);
	sleeper_end(a, hold);
	assert_true(wait_leases(&d, 0, 10000));
	b = sleeper(&hold2);
	assert_int_equal(ps_ask_pid(addr, b, NULL), 0);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", NULL), 0);
	assert_non_null(strstr(out, "quarantined:   2\n"));
	sleeper_end(b, hold2);
	daemon_stop(&d);
}

/* portpicker promises a port free on TCP and UDP: a number whose UDP side is bound is skipped. */
static void t_udp_taken(void **state)
{
	struct daemon_proc d = { 0 };
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(22000),
				  .sin6_addr = IN6ADDR_ANY_INIT };
	char addr[64];
	int hold, zero = 0, ufd;
	pid_t child;

	if (!private_netns)
		skip(); /* needs a quiet port range */
	child = sleeper(&hold);
	ufd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(ufd >= 0);
	assert_int_equal(setsockopt(ufd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)), 0);
	assert_int_equal(bind(ufd, (struct sockaddr *)&a, sizeof(a)), 0);
	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, "--range", "22000-22001", "--quarantine", "0", NULL);
	assert_int_equal(ps_ask_pid(addr, child, NULL), 22001);
	assert_int_equal(ps_ask_pid(addr, child, NULL), 0); /* 22000 is busy on UDP */
	close(ufd);
	assert_int_equal(ps_ask_pid(addr, child, NULL), 22000);
	sleeper_end(child, hold);
	daemon_stop(&d);
}

/*
 * Renew is refused (no deadline to move), release works; after a restart
 * the lease is back with its flag and process, and still ends with it.
 */
static void t_renew_release_restart(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease_info *v = NULL;
	char addr[64], out[4096], err[512], idbuf[32];
	int hold, n;
	pid_t child = sleeper(&hold);

	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, "--quarantine", "0", NULL);
	int port = ps_ask_pid(addr, child, NULL);
	assert_int_not_equal(port, 0);
	n = list_all(&d, &v);
	assert_int_equal(n, 1);
	uint64_t id = v[0].id;
	free(v);

	struct portd *p = connect_ok(&d);
	assert_int_equal(portd_renew(p, id, 60, NULL, T), -PORTD_E_INVAL);
	portd_disconnect(p);
	snprintf(idbuf, sizeof(idbuf), "%" PRIu64, id);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "renew", idbuf, NULL), 1);
	assert_non_null(strstr(err, "portserver lease ends when its process exits"));
	/* A LEASE request may not claim the flag. */
	p = connect_ok(&d);
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l;
	o.flags = PORTD_FLAG_PORTSERVER;
	assert_int_equal(portd_lease(p, &o, &l, T), -EINVAL);
	/* Release by port: the port is free again at once. */
	assert_int_equal(portd_release_port(p, (uint16_t)port, 0, NULL, T), 0);
	portd_disconnect(p);
	assert_int_equal(lease_count(&d), 0);
	if (private_netns)
		assert_int_equal(try_bind_tcp((uint16_t)port, false, NULL), 0);

	/* Restart: saved, restored with its flag, its process, and no deadline. */
	port = ps_ask_pid(addr, child, NULL);
	assert_int_not_equal(port, 0);
	daemon_term(&d);
	daemon_start(&d, "--portserver", addr, "--quarantine", "0", NULL);
	n = list_all(&d, &v);
	assert_int_equal(n, 1);
	assert_ps_lease(v, n, port, child);
	free(v);
	assert_int_equal(try_bind_tcp((uint16_t)port, false, NULL), -EADDRINUSE);
	/* The restarted daemon still serves portserver requests. */
	int port2 = ps_ask_pid(addr, child, NULL);
	assert_int_not_equal(port2, 0);
	assert_int_not_equal(port2, port);
	sleeper_end(child, hold);
	assert_true(wait_leases(&d, 0, 10000));
	daemon_stop(&d);
}

/*
 * Past PORTSERVER_CONNS_MAX connections waiting for their line, a new one
 * that must wait is closed at once, while the earlier ones are still open.
 */
static void t_overload(void **state)
{
	static int fds[PORTSERVER_CONNS_MAX];
	struct daemon_proc d = { 0 };
	char addr[64];
	int fd, hold;
	pid_t child = sleeper(&hold);

	new_address(addr, sizeof(addr));
	daemon_start(&d, "--portserver", addr, NULL);
	for (int i = 0; i < PORTSERVER_CONNS_MAX; i++)
		fds[i] = ps_connect(addr);
	/* A complete request is still answered: it needs no waiting. */
	assert_int_not_equal(ps_ask_pid(addr, child, NULL), 0);
	/* One more that has to wait: closed at once, not at the timeout. */
	uint64_t us;
	fd = ps_connect(addr);
	assert_int_equal(ps_answer(fd, 5000, &us), 0);
	close(fd);
	print_message("connection %d, with %d waiting: closed after %" PRIu64 " us\n",
		      PORTSERVER_CONNS_MAX + 1, PORTSERVER_CONNS_MAX, us);
	assert_true(us < AT_ONCE_MS * 1000);
	for (int i = 0; i < PORTSERVER_CONNS_MAX; i++) {
		assert_int_equal(ps_answer(fds[i], 5000, NULL), 0); /* then each times out */
		close(fds[i]);
	}
	sleeper_end(child, hold);
	daemon_stop(&d);
}

/*
 * The other address forms: a socket file (portpicker takes a path too),
 * --portserver=ADDRESS, the default address, a second daemon on a taken
 * address.
 */
static void t_addresses(void **state)
{
	struct daemon_proc d = { 0 }, d2 = { 0 };
	char path[128], opt[160], addr[64], cmd[512];
	struct stat st;
	int hold;
	pid_t child = sleeper(&hold);

	strcpy(d.dir, "/tmp/portd-ps.XXXXXX");
	assert_non_null(mkdtemp(d.dir));
	snprintf(d.sock, sizeof(d.sock), "%s/portd.sock", d.dir);
	snprintf(path, sizeof(path), "%s/ps.sock", d.dir);
	snprintf(opt, sizeof(opt), "--portserver=%s", path);
	daemon_start(&d, opt, NULL);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600); /* like the control socket */
	assert_int_not_equal(ps_ask_pid(path, child, NULL), 0);
	if (have_portpicker()) {
		snprintf(cmd, sizeof(cmd),
			 "PORTSERVER_ADDRESS=%s " PYTHON " -c 'import portpicker; print(portpicker.pick_unused_port())'"
			 " 2>&1", path);
		FILE *f = popen(cmd, "r");
		char line[128] = "";
		assert_non_null(f);
		assert_non_null(fgets(line, sizeof(line), f));
		assert_int_equal(pclose(f), 0);
		assert_true(atoi(line) > 0);
	}
	/* A socket file left by a killed daemon is replaced. */
	daemon_kill(&d);
	assert_int_equal(stat(path, &st), 0);
	daemon_start(&d, opt, NULL);
	assert_int_not_equal(ps_ask_pid(path, child, NULL), 0);
	daemon_term(&d);
	assert_int_not_equal(stat(path, &st), 0); /* removed at a clean exit */
	snprintf(cmd, sizeof(cmd), "%s.state", d.sock);
	unlink(cmd);
	assert_int_equal(rmdir(d.dir), 0);

	/* --portserver ADDRESS (portserver's own spelling) and a second daemon on the same name. */
	new_address(addr, sizeof(addr));
	memset(&d, 0, sizeof(d));
	daemon_start(&d, "--portserver", addr, NULL);
	snprintf(cmd, sizeof(cmd), "%s --socket /tmp/portd-ps-second-%d.sock --portserver %s 2>&1",
		 getenv("PORTD_BIN"), (int)getpid(), addr);
	FILE *f = popen(cmd, "r");
	char msg[512] = "";
	assert_non_null(f);
	size_t got = fread(msg, 1, sizeof(msg) - 1, f);
	msg[got] = '\0';
	assert_int_equal(WEXITSTATUS(pclose(f)), 1);
	assert_non_null(strstr(msg, "another portserver is already listening there"));
	daemon_stop(&d);

	/* The default address, @unittest-portserver: only where nobody else can be using it. */
	if (private_netns) {
		daemon_start(&d2, "--portserver", NULL);
		assert_int_not_equal(ps_ask_pid("@unittest-portserver", child, NULL), 0);
		daemon_stop(&d2);
	}
	sleeper_end(child, hold);
}

/*
 * Socket activation: a stream socket passed by the service manager under the
 * name "portserver" is served without --portserver. systemd-socket-activate
 * listens, and starts portd on the first connection, which portd answers.
 */
static void t_socket_activation(void **state)
{
	static const char activate[] = "/usr/bin/systemd-socket-activate";
	char addr[64], dir[] = "/tmp/portd-ps-act.XXXXXX", sock[96], state_file[128];
	int hold, port;
	pid_t child, pid;
	struct stat st;

	if (access(activate, X_OK) < 0)
		skip(); /* package systemd */
	child = sleeper(&hold);
	new_address(addr, sizeof(addr));
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/portd.sock", dir);
	snprintf(state_file, sizeof(state_file), "%s.state", sock);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(activate, activate, "--listen", addr, "--fdname=portserver", getenv("PORTD_BIN"),
		      "--socket", sock, (char *)NULL);
		_exit(127);
	}
	/* The activator listens at once; the first request starts portd, which answers it. */
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr));
	memcpy(a.sun_path + 1, addr + 1, strlen(addr) - 1);
	for (uint64_t end = now_ms() + 10000;; poll(NULL, 0, 10)) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool up = connect(fd, (struct sockaddr *)&a, len) == 0;
		close(fd);
		if (up)
			break;
		if (now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("%s did not listen on %s", activate, addr);
		}
	}
	port = ps_ask_pid(addr, child, NULL);
	assert_int_not_equal(port, 0);
	assert_int_equal(stat(sock, &st), 0); /* the same portd serves its control socket */
	struct portd *p = NULL;
	assert_int_equal(portd_connect(sock, &p), 0);
	struct portd_lease_info *v = NULL;
	int n = portd_list(p, &v, T);
	portd_disconnect(p);
	assert_int_equal(n, 1);
	assert_ps_lease(v, n, port, child);
	free(v);
	sleeper_end(child, hold);
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(reap(pid, 10000), 0);
	unlink(state_file);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(t_portpicker_64, daemons_teardown),
		cmocka_unit_test_teardown(t_malformed, daemons_teardown),
		cmocka_unit_test_teardown(t_other_uid, daemons_teardown),
		cmocka_unit_test_teardown(t_exhausted, daemons_teardown),
		cmocka_unit_test_teardown(t_udp_taken, daemons_teardown),
		cmocka_unit_test_teardown(t_renew_release_restart, daemons_teardown),
		cmocka_unit_test_teardown(t_overload, daemons_teardown),
		cmocka_unit_test_teardown(t_addresses, daemons_teardown),
		cmocka_unit_test_teardown(t_socket_activation, daemons_teardown),
	};

	private_netns = e2e_setup();
	if (!private_netns)
		fprintf(stderr, "# not root: running in the host's network namespace; range cases skipped\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
