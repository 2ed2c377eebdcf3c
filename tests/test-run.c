/*
 * `portctl run` and the lease flags of `portctl lease`, end to end: the real
 * portd and portctl, and real programs from Debian under `portctl run`
 * (systemd-socket-proxyd through socket activation; redis-server and
 * Python's http.server through {port}), each answering the test over the
 * leased port. When run as root the suite moves into a private network
 * namespace first, as test-e2e does.
 *
 * Every process a test starts runs in a process group of its own, which the
 * teardown kills whole (portctl, CMD and whatever CMD started), also when an
 * assertion failed half-way. Waits are bounded; where a test must let time
 * pass (the ttl renewal), it checks the lease all along instead of sleeping.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "portd.h"
#include "testutil.h"

#define T 5000 /* ms: timeout of every library call and of most waits */

#define PROXYD "/lib/systemd/systemd-socket-proxyd"
#define REDIS "/usr/bin/redis-server"
#define PYTHON "/usr/bin/python3"

static bool private_netns;

/* ---- processes ------------------------------------------------------------ */

#define MAX_CHILDREN 16
#define MAX_ARGV 48

/* Process groups started by the running test; the teardown kills what is left of them. */
static pid_t groups[MAX_CHILDREN];
/* Scratch directories of the running test, removed by the teardown. */
static char scratch[4][64];

struct child {
	pid_t pid; /* also its process group */
	int in;    /* write end of its stdin, or -1 (stdin is /dev/null) */
	int out;   /* read end of its stdout, or -1 (stdout is /dev/null) */
};

static void group_track(pid_t pid, pid_t old)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (groups[i] == old) {
			groups[i] = pid;
			return;
		}
	if (pid)
		fail_msg("too many children");
}

static int run_teardown(void **state)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (groups[i] > 0) {
			kill(-groups[i], SIGKILL);
			waitpid(groups[i], NULL, 0);
			groups[i] = 0;
		}
	for (size_t i = 0; i < sizeof(scratch) / sizeof(scratch[0]); i++)
		if (scratch[i][0]) {
			/* Flat directories: a marker file, what a server may have written. */
			DIR *dir = opendir(scratch[i]);
			struct dirent *e;

			while (dir && (e = readdir(dir)))
				if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
					unlinkat(dirfd(dir), e->d_name, 0);
			if (dir)
				closedir(dir);
			if (rmdir(scratch[i]) < 0)
				fprintf(stderr, "# could not remove %s: %s\n", scratch[i], strerror(errno));
			scratch[i][0] = '\0';
		}
	return daemons_teardown(state);
}

static const char *scratch_dir(void)
{
	for (size_t i = 0; i < sizeof(scratch) / sizeof(scratch[0]); i++)
		if (!scratch[i][0]) {
			strcpy(scratch[i], "/tmp/portd-run.XXXXXX");
			assert_non_null(mkdtemp(scratch[i]));
			return scratch[i];
		}
	fail_msg("too many scratch directories");
	return NULL;
}

/* A program this test needs; skip the test if Debian's package is not installed (tools/deps.sh installs it). */
static void need(const char *path)
{
	if (access(path, X_OK) != 0) {
		print_message("# %s is missing (run tools/deps.sh): skipped\n", path);
		skip();
	}
}

/*
 * Start argv in a process group of its own, with PORTD_SOCKET=sock (unless
 * NULL) and stdin/stdout piped to the test when asked (else /dev/null);
 * stderr stays the test's, for diagnostics. uid > 0: as that user.
 */
static struct child spawn_argv(const char *sock, bool pipe_in, bool pipe_out, uid_t uid, const char *const *argv)
{
	struct child c = { .in = -1, .out = -1 };
	int pi[2] = { -1, -1 }, po[2] = { -1, -1 };

	if (pipe_in)
		assert_int_equal(pipe2(pi, O_CLOEXEC), 0);
	if (pipe_out)
		assert_int_equal(pipe2(po, O_CLOEXEC), 0);
	c.pid = fork();
	assert_true(c.pid >= 0);
	if (c.pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		setpgid(0, 0);
		dup2(pipe_in ? pi[0] : null, 0);
		dup2(pipe_out ? po[1] : null, 1);
		if (sock)
			setenv("PORTD_SOCKET", sock, 1);
		else
			unsetenv("PORTD_SOCKET");
		if (uid > 0 && (setgroups(0, NULL) || setgid(uid) || setuid(uid)))
			_exit(125);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	setpgid(c.pid, c.pid); /* also here: no race with the kill in the teardown */
	group_track(c.pid, 0);
	if (pipe_in) {
		close(pi[0]);
		c.in = pi[1];
	}
	if (pipe_out) {
		close(po[1]);
		c.out = po[0];
	}
	return c;
}

/* spawn_argv($PORTCTL_BIN ARGS...), NULL-terminated. */
static struct child spawn_portctl(const char *sock, bool pipe_in, bool pipe_out, const char *arg, ...)
{
	const char *argv[MAX_ARGV];
	int n = 0;
	va_list ap;

	argv[n++] = getenv("PORTCTL_BIN");
	assert_non_null(argv[0]);
	va_start(ap, arg);
	for (const char *a = arg; a && n < MAX_ARGV - 1; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return spawn_argv(sock, pipe_in, pipe_out, 0, argv);
}

/* Wait (bounded) for c to exit; returns its status as a shell reports it (128+N: killed by signal N), -1 on timeout. */
static int child_wait(struct child *c, int timeout_ms)
{
	int pfd = pidfd_open(c->pid, 0), status = 0;
	struct pollfd p = { .fd = pfd, .events = POLLIN };

	assert_true(pfd >= 0);
	if (poll(&p, 1, timeout_ms) != 1) {
		close(pfd);
		return -1;
	}
	close(pfd);
	assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
	kill(-c->pid, SIGKILL); /* anything CMD left behind in the group */
	group_track(0, c->pid);
	if (c->in >= 0)
		close(c->in);
	if (c->out >= 0)
		close(c->out);
	c->in = c->out = -1;
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Read one line (without the '\n') from fd within timeout_ms. */
static bool read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t got = 0;

	for (uint64_t end = now_ms() + (uint64_t)timeout_ms; got < len - 1;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();

		if (now >= end || poll(&p, 1, (int)(end - now)) != 1 || read(fd, buf + got, 1) != 1)
			break;
		if (buf[got] == '\n') {
			buf[got] = '\0';
			return true;
		}
		got++;
	}
	buf[got] = '\0';
	return false;
}

/* Read fd to EOF within timeout_ms. */
static bool read_all(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t got = 0;

	for (uint64_t end = now_ms() + (uint64_t)timeout_ms;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		ssize_t r;

		if (now >= end || poll(&p, 1, (int)(end - now)) != 1)
			break;
		r = read(fd, buf + got, len - 1 - got);
		if (r <= 0) {
			buf[got] = '\0';
			return r == 0;
		}
		got += (size_t)r;
		if (got == len - 1)
			break;
	}
	buf[got] = '\0';
	return false;
}

/* ---- portd --------------------------------------------------------------- */

static int lease_count(struct portd *p)
{
	struct portd_lease_info *v = NULL;
	int n = portd_list(p, &v, T);

	assert_true(n >= 0);
	free(v);
	return n;
}

/* Has c exited? (It stays waitable.) */
static bool child_exited(const struct child *c, int *status)
{
	siginfo_t si = { 0 };

	if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid != c->pid)
		return false;
	*status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
	return true;
}

/* Wait (bounded) until the caller's only lease shows up; return it. c: the portctl that takes it, or NULL. */
static struct portd_lease_info only_lease(struct portd *p, const struct child *c)
{
	struct portd_lease_info *v = NULL, l = { 0 };
	int n, status;

	for (uint64_t end = now_ms() + T;; poll(NULL, 0, 10)) {
		n = portd_list(p, &v, T);
		assert_true(n >= 0);
		if (n == 1)
			break;
		free(v);
		v = NULL;
		if (c && child_exited(c, &status))
			fail_msg("portctl exited (status %d) while the test waited for its lease", status);
		if (now_ms() >= end)
			fail_msg("expected exactly one lease, portd lists %d", n);
	}
	l = v[0];
	free(v);
	return l;
}

/* Release the caller's leases and stop the daemon (which would otherwise save them in a state file). */
static void stop_clean(struct daemon_proc *d, struct portd *p)
{
	struct portd_lease_info *v = NULL;
	int n = portd_list(p, &v, T);

	for (int i = 0; i < n; i++)
		assert_int_equal(portd_release(p, v[i].id, T), 0);
	free(v);
	portd_disconnect(p);
	daemon_stop(d);
}

/* Is there a lease with this id (0: any) holding port (0: any)? Its info in *out. */
static bool find_lease(struct portd *p, uint64_t id, uint16_t port, struct portd_lease_info *out)
{
	struct portd_lease_info *v = NULL;
	int n = portd_list(p, &v, T);
	bool found = false;

	assert_true(n >= 0);
	for (int i = 0; i < n && !found; i++)
		if ((!id || v[i].id == id) && (!port || v[i].ports[0] == port)) {
			found = true;
			if (out)
				*out = v[i];
		}
	free(v);
	return found;
}


/* ---- network ------------------------------------------------------------- */


/* Connect to a server that is starting up: retry refused connections until it listens (bounded). */
static int wait_connect(int family, uint16_t port, int timeout_ms)
{
	int fd;

	for (uint64_t end = now_ms() + (uint64_t)timeout_ms;; poll(NULL, 0, 10)) {
		fd = tcp_connect(family, port);
		if (fd >= 0 || fd != -ECONNREFUSED || now_ms() >= end)
			return fd;
	}
}

/* Send req (unless NULL), read until the answer holds want (or EOF / timeout); returns whether it did. */
static bool exchange(int fd, const char *req, const char *want, char *buf, size_t len)
{
	size_t got = 0;

	if (req)
		assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	buf[0] = '\0';
	for (uint64_t end = now_ms() + T; got < len - 1 && !strstr(buf, want);) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		ssize_t r;

		if (now >= end || poll(&p, 1, (int)(end - now)) != 1)
			break;
		r = read(fd, buf + got, len - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = '\0';
	}
	return strstr(buf, want) != NULL;
}

/* ---- portctl run with real servers ------------------------------------------ */

/*
 * Socket activation: systemd-socket-proxyd takes the listening socket from
 * fd 3 (LISTEN_FDS) and relays each connection to a backend that the test
 * runs; bytes go both ways, over IPv4 and IPv6.
 */
static void t_run_socket_proxyd(void **state)
{
	struct daemon_proc d = { 0 };
	struct sockaddr_in ba = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t bl = sizeof(ba);
	char backend[32], buf[64];
	int fams[] = { AF_INET, AF_INET6 };

	need(PROXYD);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&ba, sizeof(ba)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&ba, &bl), 0);
	snprintf(backend, sizeof(backend), "127.0.0.1:%u", ntohs(ba.sin_port));

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	struct child c = spawn_portctl(d.sock, false, false, "run", "--", PROXYD, backend, NULL);
	struct portd_lease_info l = only_lease(p, &c);
	assert_true(l.flags & PORTD_FLAG_FD);
	assert_int_equal(l.tied_pid, c.pid); /* tied to portctl itself */

	for (size_t i = 0; i < 2; i++) {
		int cfd = wait_connect(fams[i], l.ports[0], T), afd;
		struct pollfd pa = { .fd = lfd, .events = POLLIN };

		assert_true(cfd >= 0);
		assert_int_equal(write(cfd, "ping", 4), 4);
		assert_int_equal(poll(&pa, 1, T), 1); /* the proxy connected to the backend */
		afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		assert_true(afd >= 0);
		assert_true(exchange(afd, NULL, "ping", buf, sizeof(buf)));
		assert_true(exchange(afd, "pong", "", buf, 1)); /* send only */
		assert_true(exchange(cfd, NULL, "pong", buf, sizeof(buf)));
		close(afd);
		close(cfd);
	}

	/* SIGTERM to portctl reaches the proxy (which dies of it); portctl reports that, and the lease is gone. */
	assert_int_equal(kill(c.pid, SIGTERM), 0);
	assert_int_equal(child_wait(&c, T), 128 + SIGTERM);
	assert_int_equal(lease_count(p), 0);
	close(lfd);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * A number consumer: redis binds {port} itself (SO_REUSEADDR) while portd
 * holds it, and answers PING. With --listen the same command fails: redis
 * cannot bind a port that a listening socket holds, which is why run does
 * not listen when ARGS contain {port}.
 */
static void t_run_redis(void **state)
{
	struct daemon_proc d = { 0 };
	char buf[64];
	int fams[] = { AF_INET, AF_INET6 };

	need(REDIS);
	const char *dir = scratch_dir();
	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	struct child c = spawn_portctl(d.sock, false, false, "run", "--", REDIS, "--port", "{port}", "--save", "",
				       "--appendonly", "no", "--bind", "127.0.0.1", "::1", "--dir", dir, NULL);
	struct portd_lease_info l = only_lease(p, &c);

	for (size_t i = 0; i < 2; i++) {
		int fd = wait_connect(fams[i], l.ports[0], 10000);
		assert_true(fd >= 0);
		assert_true(exchange(fd, "PING\r\n", "+PONG\r\n", buf, sizeof(buf)));
		assert_string_equal(buf, "+PONG\r\n");
		close(fd);
	}
	/* redis shuts down cleanly on the SIGTERM portctl passes on: exit 0. */
	assert_int_equal(kill(c.pid, SIGTERM), 0);
	assert_int_equal(child_wait(&c, 10000), 0);
	assert_int_equal(lease_count(p), 0);

	/* --listen: redis's own bind fails (EADDRINUSE) and it exits 1; portctl passes that on. */
	c = spawn_portctl(d.sock, false, false, "run", "--listen", "--", REDIS, "--port", "{port}", "--save", "",
			  "--appendonly", "no", "--bind", "127.0.0.1", "--dir", dir, NULL);
	assert_int_equal(child_wait(&c, 10000), 1);
	assert_int_equal(lease_count(p), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* Python's http.server on {port}; SIGINT (passed on) makes it exit 0 through KeyboardInterrupt. */
static void t_run_http_server(void **state)
{
	struct daemon_proc d = { 0 };
	char buf[512];

	need(PYTHON);
	const char *dir = scratch_dir();
	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	struct child c = spawn_portctl(d.sock, false, false, "run", "--", PYTHON, "-m", "http.server", "{port}",
				       "--bind", "127.0.0.1", "--directory", dir, NULL);
	struct portd_lease_info l = only_lease(p, &c);
	int fd = wait_connect(AF_INET, l.ports[0], 10000);

	assert_true(fd >= 0);
	assert_true(exchange(fd, "GET / HTTP/1.0\r\n\r\n", "\r\n\r\n", buf, sizeof(buf)));
	assert_memory_equal(buf, "HTTP/1.0 200", 12);
	close(fd);
	assert_int_equal(kill(c.pid, SIGINT), 0);
	assert_int_equal(child_wait(&c, 10000), 0);
	assert_int_equal(lease_count(p), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* ---- portctl run: the contract --------------------------------------------- */

/* CMD's exit status, 128+N for a signal, 126/127 for exec failures, 3 without portd (CMD not run), 2 for usage. */
static void t_run_exit_status(void **state)
{
	struct daemon_proc d = { 0 };
	char out[256], err[1024], marker[128], script[256];
	struct stat st;

	const char *dir = scratch_dir();
	snprintf(marker, sizeof(marker), "%s/ran", dir);
	snprintf(script, sizeof(script), "touch '%s'", marker);
	/* No portd: exit 3, and CMD never ran. */
	assert_int_equal(portctl("/nonexistent/portd.sock", out, sizeof(out), err, sizeof(err), "run", "--", "sh", "-c",
				 script, NULL), 3);
	assert_non_null(strstr(err, "/nonexistent/portd.sock"));
	assert_int_not_equal(stat(marker, &st), 0);

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", "sh", "-c", "exit 7", NULL), 7);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", "sh", "-c", "exit 0", NULL), 0);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", "sh", "-c", "kill -KILL $$",
				 NULL), 128 + SIGKILL);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", "sh", "-c", "kill -TERM $$",
				 NULL), 128 + SIGTERM);
	/* Options after CMD are CMD's, with or without "--". */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "sh", "-c", "exit 5", "--count", NULL),
			 5);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", "portd-no-such-command", NULL),
			 127);
	assert_non_null(strstr(err, "portd-no-such-command"));
	assert_non_null(strstr(err, "not found"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", dir, NULL), 126);
	assert_non_null(strstr(err, "cannot run"));
	assert_int_equal(lease_count(p), 0); /* every run released its lease */

	/* Usage errors: no CMD was run, no lease taken. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", "echo", "{port1}", NULL), 2);
	assert_non_null(strstr(err, "{port1}"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--count", "2", "--", "echo",
				 "{port2}", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--listen", "--no-listen", "--",
				 "true", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--both", "--count", "9", "--",
				 "true", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--pid", "1", "--", "true", NULL), 2);
	assert_string_equal(out, "");
	assert_int_equal(lease_count(p), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * The environment and fds of CMD, seen by a shell and by Python: PORT,
 * PORTS, LISTEN_FDS, LISTEN_PID (CMD's own pid), LISTEN_FDNAMES; fd 3 is
 * the bound socket of $PORT, inheritable, listening unless ARGS hold {port};
 * no other socket of portctl's leaks into CMD; the lease is an fd lease
 * while CMD runs and gone when it has exited.
 */
static const char fd_check_py[] =
	"import os, socket, stat, sys, fcntl\n"
	"n = int(os.environ['LISTEN_FDS'])\n"
	"names = os.environ['LISTEN_FDNAMES'].split(':')\n"
	"print('n=%d pid_ok=%d port=%s ports=%s' % (n, os.environ['LISTEN_PID'] == str(os.getpid()),\n"
	"      os.environ['PORT'], os.environ['PORTS']))\n"
	"for i in range(n):\n"
	"    s = socket.socket(fileno=3 + i)\n"
	"    kind = 'tcp' if s.type == socket.SOCK_STREAM else 'udp'\n"
	"    port = s.getsockname()[1]\n"
	"    lst = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)\n"
	"    cloexec = fcntl.fcntl(3 + i, fcntl.F_GETFD) & fcntl.FD_CLOEXEC\n"
	"    echo = '-'\n"
	"    if kind == 'udp':\n"
	"        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
	"        c.sendto(b'dgram', ('127.0.0.1', port))\n"
	"        s.settimeout(5)\n"
	"        echo = s.recv(16).decode()\n"
	"        c.close()\n"
	"    print('fd%d %s-%d listen=%d cloexec=%d name=%s echo=%s' % (3 + i, kind, port, lst, cloexec, names[i], echo))\n"
	"    s.detach()\n"
	"extra = []\n"
	"for f in os.listdir('/proc/self/fd'):\n"
	"    try:\n"
	"        t = os.readlink('/proc/self/fd/' + f)\n"
	"    except OSError:\n"
	"        continue\n"
	"    if int(f) >= 3 + n and (t.startswith('socket:') or t.startswith('anon_inode:')):\n"
	"        extra.append(f + '=' + t)\n"
	"print('extra=' + ','.join(extra))\n";

static void t_run_env_and_fds(void **state)
{
	struct daemon_proc d = { 0 };
	char out[2048], err[1024], want[256];
	unsigned port, ports, nfds, lpid, shpid;
	char names[64];

	need(PYTHON);
	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);

	/* A shell: LISTEN_PID is the shell's own $$ (set in the child after fork, before exec). */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", "sh", "-c",
				 "echo $PORT $PORTS $LISTEN_FDS $LISTEN_PID $$ $LISTEN_FDNAMES", NULL), 0);
	assert_int_equal(sscanf(out, "%u %u %u %u %u %63s", &port, &ports, &nfds, &lpid, &shpid, names), 6);
	assert_int_equal(port, ports);
	assert_int_equal(nfds, 1);
	assert_int_equal(lpid, shpid);
	snprintf(want, sizeof(want), "tcp-%u", port);
	assert_string_equal(names, want);

	/* The lease while CMD runs: one fd lease on $PORT, tied to portctl. CMD asks portctl list itself. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--ttl", "77", "--", "sh", "-c",
				 "echo $PORT; \"$PORTCTL_BIN\" list --json", NULL), 0);
	assert_int_equal(sscanf(out, "%u", &port), 1);
	snprintf(want, sizeof(want), "\"ports\": [%u], \"transport\": \"tcp\", \"kind\": \"fd\", \"ttl\": 77", port);
	assert_non_null(strstr(out, want));
	assert_int_equal(lease_count(p), 0);

	/* Python: fd 3 is the socket of $PORT, inheritable and listening; nothing else of portctl's leaks. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", PYTHON, "-c", fd_check_py, NULL),
			 0);
	assert_int_equal(sscanf(out, "n=1 pid_ok=1 port=%u", &port), 1);
	snprintf(want, sizeof(want), "fd3 tcp-%u listen=1 cloexec=0 name=tcp-%u echo=-\nextra=\n", port, port);
	if (!strstr(out, want))
		fail_msg("expected\n%s\nin\n%s", want, out);

	/* {port} in ARGS: not listening (a number consumer binds it itself); --listen overrides. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--", PYTHON, "-c", fd_check_py,
				 "x{port}y", NULL), 0);
	assert_int_equal(sscanf(out, "n=1 pid_ok=1 port=%u", &port), 1);
	snprintf(want, sizeof(want), "fd3 tcp-%u listen=0 ", port);
	assert_non_null(strstr(out, want));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--listen", "--", PYTHON, "-c",
				 fd_check_py, "{port}", NULL), 0);
	assert_non_null(strstr(out, "listen=1"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--no-listen", "--", PYTHON, "-c",
				 fd_check_py, NULL), 0);
	assert_non_null(strstr(out, "listen=0"));

	/* Substitution anywhere in a word, several times; PORT/PORTS agree. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--count", "2", "--", "sh", "-c",
				 "echo \"$1|$PORTS\"", "sh", "a{port}b{port1}c{port0}{portx}{port}", NULL), 0);
	unsigned a, b, c0, e, p0, p1;
	assert_int_equal(sscanf(out, "a%ub%uc%u{portx}%u|%u %u", &a, &b, &c0, &e, &p0, &p1), 6);
	assert_int_equal(a, p0);
	assert_int_equal(b, p1);
	assert_int_equal(c0, p0);
	assert_int_equal(e, p0);
	assert_int_not_equal(p0, p1);
	assert_int_equal(lease_count(p), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* --count 3: fds 3, 4, 5 in lease order; --udp: a SOCK_DGRAM fd that receives; --both: TCP then UDP per port. */
static void t_run_count_udp_both(void **state)
{
	struct daemon_proc d = { 0 };
	char out[2048], err[1024], want[256];
	unsigned pt[3];

	need(PYTHON);
	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);

	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--count", "3", "--", PYTHON, "-c",
				 fd_check_py, NULL), 0);
	assert_int_equal(sscanf(out, "n=3 pid_ok=1 port=%u ports=%u %u %u", &pt[0], &pt[0], &pt[1], &pt[2]), 4);
	for (int i = 0; i < 3; i++) {
		snprintf(want, sizeof(want), "fd%d tcp-%u listen=1 cloexec=0 name=tcp-%u echo=-\n", 3 + i, pt[i], pt[i]);
		if (!strstr(out, want))
			fail_msg("expected\n%s\nin\n%s", want, out);
	}
	assert_non_null(strstr(out, "\nextra=\n"));

	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--udp", "--", PYTHON, "-c",
				 fd_check_py, NULL), 0);
	assert_int_equal(sscanf(out, "n=1 pid_ok=1 port=%u", &pt[0]), 1);
	snprintf(want, sizeof(want), "fd3 udp-%u listen=0 cloexec=0 name=udp-%u echo=dgram\n", pt[0], pt[0]);
	if (!strstr(out, want))
		fail_msg("expected\n%s\nin\n%s", want, out);

	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--both", "--count", "2", "--",
				 PYTHON, "-c", fd_check_py, NULL), 0);
	assert_int_equal(sscanf(out, "n=4 pid_ok=1 port=%u ports=%u %u", &pt[0], &pt[0], &pt[1]), 3);
	for (int i = 0; i < 4; i++) {
		unsigned q = pt[i / 2];
		if (i % 2)
			snprintf(want, sizeof(want), "fd%d udp-%u listen=0 cloexec=0 name=udp-%u echo=dgram\n", 3 + i, q, q);
		else
			snprintf(want, sizeof(want), "fd%d tcp-%u listen=1 cloexec=0 name=tcp-%u echo=-\n", 3 + i, q, q);
		if (!strstr(out, want))
			fail_msg("expected\n%s\nin\n%s", want, out);
	}
	assert_int_equal(lease_count(p), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* Each of SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 sent to portctl reaches CMD. */
static void t_run_signals(void **state)
{
	static const struct {
		int sig;
		const char *name;
	} sigs[] = { { SIGINT, "INT" }, { SIGTERM, "TERM" }, { SIGHUP, "HUP" },
		     { SIGQUIT, "QUIT" }, { SIGUSR1, "USR1" }, { SIGUSR2, "USR2" } };
	struct daemon_proc d = { 0 };
	char script[256], line[64];

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		/* CMD says it is ready only once its trap is set; the trap's exit code proves it got the signal. */
		snprintf(script, sizeof(script), "trap 'kill $bg; exit %zu' %s; sleep 60 & bg=$!; echo ready; wait",
			 40 + i, sigs[i].name);
		struct child c = spawn_portctl(d.sock, false, true, "run", "--", "sh", "-c", script, NULL);
		assert_true(read_line(c.out, line, sizeof(line), T));
		assert_string_equal(line, "ready");
		assert_int_equal(kill(c.pid, sigs[i].sig), 0);
		assert_int_equal(child_wait(&c, T), (int)(40 + i));
		assert_int_equal(lease_count(p), 0);
	}
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * --ttl 1 and a CMD that lives about 3 s: the same lease stays listed all
 * along (renewed at half the ttl), and is gone once CMD has exited.
 */
static void t_run_renews(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease_info now_l;
	char line[64];

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	struct child c = spawn_portctl(d.sock, true, true, "run", "--ttl", "1", "--", "sh", "-c",
				       "echo ready; read x; exit 5", NULL);
	assert_true(read_line(c.out, line, sizeof(line), T));
	struct portd_lease_info l = only_lease(p, &c);
	assert_int_equal(l.ttl, 1);
	uint64_t start = now_ms();
	/* Three ttls: without renewals the lease would have expired twice over. Checked every 50 ms. */
	while (now_ms() - start < 3000) {
		assert_true(find_lease(p, l.id, 0, &now_l));
		assert_true(now_l.expires_in_ms <= 1000);
		poll(NULL, 0, 50);
	}
	assert_int_equal(lease_count(p), 1);
	close(c.in); /* CMD's read ends: it exits 5 */
	c.in = -1;
	assert_int_equal(child_wait(&c, T), 5);
	assert_int_equal(lease_count(p), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/* ---- portctl lease: the flags ------------------------------------------------ */

/* Ports printed on one line, as shells read them: bash `read A B <<<`, POSIX `set -- $(...)`. */
static void t_lease_count_output(void **state)
{
	struct daemon_proc d = { 0 };
	char out[512], err[1024];
	unsigned a, b, c, id;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "3", NULL), 0);
	assert_int_equal(sscanf(out, "%u %u %u", &a, &b, &c), 3);
	assert_true(a != b && b != c && a != c);
	char want[64];
	snprintf(want, sizeof(want), "%u %u %u\n", a, b, c);
	assert_string_equal(out, want);

	/* Consecutive, from the kernel's ports (no range). */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "4", "--consecutive",
				 "--json", NULL), 0);
	unsigned q[4];
	assert_int_equal(sscanf(out, "{\"id\": %u, \"ports\": [%u, %u, %u, %u], \"transport\": \"tcp\"", &id, &q[0], &q[1],
				&q[2], &q[3]), 5);
	for (int i = 1; i < 4; i++)
		assert_int_equal(q[i], q[0] + (unsigned)i);

	const char *bash = "read A B <<< \"$(\"$PORTCTL_BIN\" lease --count 2)\" && echo \"B=$B A=$A\"";
	const char *dash = "set -- $(\"$PORTCTL_BIN\" lease --count 3 --consecutive) && echo \"$# $1 $3\"";
	const char *bargv[] = { "/bin/bash", "-c", bash, NULL }, *dargv[] = { "/bin/dash", "-c", dash, NULL };
	struct child ch = spawn_argv(d.sock, false, true, 0, bargv);
	assert_true(read_all(ch.out, out, sizeof(out), T));
	assert_int_equal(child_wait(&ch, T), 0);
	assert_int_equal(sscanf(out, "B=%u A=%u", &b, &a), 2);
	assert_true(find_lease(p, 0, (uint16_t)a, NULL));
	ch = spawn_argv(d.sock, false, true, 0, dargv);
	assert_true(read_all(ch.out, out, sizeof(out), T));
	assert_int_equal(child_wait(&ch, T), 0);
	assert_int_equal(sscanf(out, "3 %u %u", &a, &c), 2);
	assert_int_equal(c, a + 2);
	assert_int_equal(lease_count(p), 4);

	/* Usage errors. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "17", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "0", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "2", "--port", "30000",
				 NULL), 2);
	assert_non_null(strstr(err, "--consecutive"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--tcp", "--both", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--exclude", "9-3", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--exclude", "1,,2", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--exclude", "0", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--port", "30005", "--exclude",
				 "30000-30009", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--pid", "x", NULL), 2);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--listen", NULL), 2);
	/* 65 ranges: one too many. */
	char many[65 * 12] = "";
	for (int i = 0; i < 65; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%d", i ? "," : "", 1000 + 2 * i);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--exclude", many, NULL), 2);
	assert_non_null(strstr(err, "64"));
	many[strlen(many) - 5] = '\0'; /* 64 */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--exclude", many, NULL), 0);
	assert_int_equal(lease_count(p), 5);
	stop_clean(&d, p);
}

/*
 * In a --range daemon, deterministic: --exclude leaves a window and the
 * ports come from it; --port takes exactly that port, a second time BUSY;
 * outside the range, said so.
 */
static void t_lease_range_flags(void **state)
{
	struct daemon_proc d = { 0 };
	char out[512], err[1024];

	if (!private_netns)
		skip(); /* needs a quiet port range, as in test-e2e */
	daemon_start(&d, "--range", "20000-20019", "--quarantine", "60", NULL);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--exclude", "20000-20009",
				 "--exclude", "20011-20019", NULL), 0);
	assert_string_equal(out, "20010\n");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "2", "--consecutive",
				 "--exclude", "20000-20011,20014-20019", NULL), 0);
	assert_string_equal(out, "20012 20013\n");
	/* Nothing left in that window. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--exclude", "20000-20013,20015-20019",
				 "--exclude", "20014", NULL), 1);
	assert_non_null(strstr(err, "no free TCP port left outside the --exclude ranges"));
	/* Consecutive runs that the exclusions break up: 20015-20016 and 20018-20019 are free, 20017 is not. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--count", "3", "--consecutive",
				 "--exclude", "20000-20014,20017", NULL), 1);
	assert_non_null(strstr(err, "3 consecutive free TCP ports"));

	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--port", "20005", "--json", NULL), 0);
	assert_non_null(strstr(out, "\"ports\": [20005], \"transport\": \"tcp\""));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--port", "20005", NULL), 1);
	assert_non_null(strstr(err, "port 20005 is in use or in reuse quarantine"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--port", "20003", "--count", "3",
				 "--consecutive", NULL), 1);
	assert_non_null(strstr(err, "ports 20003-20005"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--port", "20001", "--count", "3",
				 "--consecutive", NULL), 0);
	assert_string_equal(out, "20001 20002 20003\n");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--port", "20500", NULL), 1);
	assert_non_null(strstr(err, "outside portd's range 20000-20019"));
	/* run takes the same flags. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--port", "20017", "--", "sh", "-c",
				 "echo $PORT", NULL), 0);
	assert_string_equal(out, "20017\n");
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "run", "--port", "20005", "--", "true", NULL),
			 1);
	assert_non_null(strstr(err, "port 20005 is in use or in reuse quarantine"));
	stop_clean(&d, connect_ok(&d));
}

/*
 * UDP number leases: refused without a reserved range, with the explanation;
 * with --range --reserve granted, and the port is the client's to bind.
 */
static void t_lease_udp(void **state)
{
	struct daemon_proc d = { 0 };
	char out[512], err[1024];
	unsigned port;

	daemon_start(&d, NULL);
	const char *why = "a number-only UDP lease needs a reserved range (portd --range LO-HI --reserve); use "
			  "`portctl run --udp` to receive the socket instead";
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--udp", NULL), 1);
	assert_string_equal(out, "");
	assert_non_null(strstr(err, why));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--both", NULL), 1);
	assert_non_null(strstr(err, why));
	daemon_stop(&d);

	if (!private_netns)
		return; /* --reserve writes a sysctl: only in a private namespace */
	daemon_start(&d, "--range", "20100-20109", "--reserve", NULL);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "status", "--json", NULL), 0);
	assert_non_null(strstr(out, "\"range_lo\": 20100, \"range_hi\": 20109, \"reserved\": true"));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--udp", "--json", NULL), 0);
	assert_int_equal(sscanf(out, "{\"id\": %*u, \"ports\": [%u], \"transport\": \"udp\"", &port), 1);
	assert_true(port >= 20100 && port <= 20109);
	/* portd let go of its UDP socket at hand-over: a client without SO_REUSEADDR binds the port. */
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--both", "--count", "2", NULL), 0);
	unsigned b0, b1;
	assert_int_equal(sscanf(out, "%u %u", &b0, &b1), 2);
	stop_clean(&d, connect_ok(&d));
}

/* A child that waits for SIGKILL (pause), tracked for the teardown. */
static pid_t pause_child(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	setpgid(pid, pid);
	group_track(pid, 0);
	return pid;
}

/*
 * --pid PID: the lease ends when PID exits (SIGKILL here); the latency is
 * printed, not asserted. A process that does not exist, and (as another
 * user) a process that is not yours, are refused with a clear message.
 */
static void t_lease_pid(void **state)
{
	struct daemon_proc d = { 0 };
	struct portd_lease_info l;
	char out[512], err[1024], pidbuf[16];
	int status;

	daemon_start(&d, "--socket-mode", "0666", NULL);
	struct portd *p = connect_ok(&d);
	pid_t pid = pause_child();
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)pid);
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--pid", pidbuf, "--ttl", "600",
				 NULL), 0);
	l = only_lease(p, NULL);
	assert_int_equal(l.tied_pid, pid);
	assert_int_equal(l.ports[0], (uint16_t)strtoul(out, NULL, 10));
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "list", NULL), 0);
	assert_non_null(strstr(out, pidbuf));

	uint64_t t0 = now_ms();
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_true(wait_count(p, 0, T));
	uint64_t gone = now_ms() - t0;
	print_message("# --pid: lease gone %llu ms after SIGKILL of its process\n", (unsigned long long)gone);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	group_track(0, pid);

	/* pid is reaped now: no such process. */
	assert_int_equal(portctl(d.sock, out, sizeof(out), err, sizeof(err), "lease", "--pid", pidbuf, NULL), 1);
	snprintf(out, sizeof(out), "no process %d", (int)pid);
	assert_non_null(strstr(err, out));

	if (geteuid() == 0) {
		/* As nobody, --pid of root's process (this test): refused, PERM. */
		char mine[16];
		snprintf(mine, sizeof(mine), "%d", (int)getpid());
		assert_int_equal(chmod(d.dir, 0755), 0);
		const char *argv[] = { getenv("PORTCTL_BIN"), "lease", "--pid", mine, NULL };
		int pe[2];
		assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
		pid_t c = fork();
		assert_true(c >= 0);
		if (c == 0) {
			dup2(pe[1], 2);
			setenv("PORTD_SOCKET", d.sock, 1);
			if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
				_exit(125);
			execv(argv[0], (char *const *)argv);
			_exit(127);
		}
		close(pe[1]);
		assert_true(read_all(pe[0], err, sizeof(err), T));
		close(pe[0]);
		assert_int_equal(waitpid(c, &status, 0), c);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 1);
		assert_non_null(strstr(err, "belongs to another user"));
	}
	assert_int_equal(lease_count(p), 0);
	portd_disconnect(p);
	daemon_stop(&d);
}

/*
 * --pid parent in a script, PORT=$(portctl lease --pid parent): under bash
 * and dash the lease is tied to the script's shell ($$) and ends when the
 * script does. In $(portctl ...; true) the parent is the subshell, which
 * exits at once: the lease is gone while the script still runs (as the
 * help says).
 */
static void t_lease_pid_parent(void **state)
{
	static const char *const shells[] = { "/bin/bash", "/bin/dash" };
	struct daemon_proc d = { 0 };
	char line[128];
	unsigned shpid, port;

	daemon_start(&d, NULL);
	struct portd *p = connect_ok(&d);
	for (size_t i = 0; i < 2; i++) {
		struct portd_lease_info l;
		const char *script = "P=$(\"$PORTCTL_BIN\" lease --pid parent) || exit 9; echo \"$$ $P\"; read x";
		const char *argv[] = { shells[i], "-c", script, NULL };
		struct child c = spawn_argv(d.sock, true, true, 0, argv);

		assert_true(read_line(c.out, line, sizeof(line), T));
		assert_int_equal(sscanf(line, "%u %u", &shpid, &port), 2);
		assert_true(find_lease(p, 0, (uint16_t)port, &l));
		if (l.tied_pid != (pid_t)shpid)
			fail_msg("%s: lease tied to %d, the script's shell is %u", shells[i], (int)l.tied_pid, shpid);
		assert_int_equal(shpid, c.pid);
		close(c.in); /* the script ends */
		c.in = -1;
		assert_int_equal(child_wait(&c, T), 1); /* read's status at EOF */
		assert_true(wait_count(p, 0, T));

		/* Not the last command of $(...): its parent is the subshell, and the lease ends with it. */
		script = "P=$(\"$PORTCTL_BIN\" lease --pid parent; true); echo \"$$ $P\"; read x";
		argv[2] = script;
		c = spawn_argv(d.sock, true, true, 0, argv);
		assert_true(read_line(c.out, line, sizeof(line), T));
		assert_int_equal(sscanf(line, "%u %u", &shpid, &port), 2);
		assert_true(wait_count(p, 0, T)); /* while the script still waits in read */
		close(c.in);
		c.in = -1;
		assert_int_equal(child_wait(&c, T), 1);
	}
	portd_disconnect(p);
	daemon_stop(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(t_run_socket_proxyd, run_teardown),
		cmocka_unit_test_teardown(t_run_redis, run_teardown),
		cmocka_unit_test_teardown(t_run_http_server, run_teardown),
		cmocka_unit_test_teardown(t_run_exit_status, run_teardown),
		cmocka_unit_test_teardown(t_run_env_and_fds, run_teardown),
		cmocka_unit_test_teardown(t_run_count_udp_both, run_teardown),
		cmocka_unit_test_teardown(t_run_signals, run_teardown),
		cmocka_unit_test_teardown(t_run_renews, run_teardown),
		cmocka_unit_test_teardown(t_lease_count_output, run_teardown),
		cmocka_unit_test_teardown(t_lease_range_flags, run_teardown),
		cmocka_unit_test_teardown(t_lease_udp, run_teardown),
		cmocka_unit_test_teardown(t_lease_pid, run_teardown),
		cmocka_unit_test_teardown(t_lease_pid_parent, run_teardown),
	};

	private_netns = e2e_setup();
	if (!private_netns)
		fprintf(stderr, "# not root: running in the host's network namespace; range tests skipped\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
