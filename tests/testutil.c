#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>

#include "portd.h"
#include "codec.h"
#include "protocol.h"
#include "spawn.h"

#define MAX_ARGS 64 /* a wrapper's words, the binary and its arguments */
#define MAX_DAEMONS 8
#define WAIT_MS 10000 /* a reply, a close */

/* Daemons started and not yet stopped, so a failed test's teardown can stop them. */
static pid_t running[MAX_DAEMONS];

static void track(pid_t pid, pid_t old)
{
	for (int i = 0; i < MAX_DAEMONS; i++)
		if (running[i] == old) {
			running[i] = pid;
			return;
		}
}

int daemons_teardown(void **state)
{
	for (int i = 0; i < MAX_DAEMONS; i++)
		if (running[i] > 0) {
			kill(running[i], SIGKILL);
			waitpid(running[i], NULL, 0);
			running[i] = 0;
		}
	return 0;
}

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *env_or_fail(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		fail_msg("%s is not set: run the tests through meson test", name);
	return v;
}

/*
 * The words of $PORTD_TEST_WRAPPER (split at spaces) into argv: a command
 * that daemon_start() and portctl() run the binary under, such as valgrind
 * with its options (meson test --setup=valgrind). Returns how many.
 */
static int wrapper_args(const char **argv, int max)
{
	static char buf[2048];
	const char *w = getenv("PORTD_TEST_WRAPPER");
	char *save = NULL;
	int n = 0;

	if (!w || !*w)
		return 0;
	if (strlen(w) >= sizeof(buf))
		fail_msg("PORTD_TEST_WRAPPER is longer than %zu bytes", sizeof(buf) - 1);
	strcpy(buf, w);
	for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (n == max)
			fail_msg("PORTD_TEST_WRAPPER has more than %d words", max);
		argv[n++] = t;
	}
	return n;
}

bool test_wrapped(void)
{
	const char *w = getenv("PORTD_TEST_WRAPPER");
	return w && *w;
}

/* In the daemon's child before exec: RLIMIT_NOFILE (soft and hard) if asked. */
static void daemon_child(void *arg)
{
	unsigned long nofile = *(const unsigned long *)arg;
	struct rlimit rl = { nofile, nofile };

	if (nofile && setrlimit(RLIMIT_NOFILE, &rl) < 0)
		_exit(126);
}

/* daemon_start() with the arguments in ap; nofile > 0: RLIMIT_NOFILE (soft and hard) of the daemon. */
static void daemon_startv(struct daemon_proc *d, unsigned long nofile, const char *arg, va_list ap)
{
	const char *argv[SPAWN_ARGS_MAX + 1];
	pid_t pid;
	int n = 0;

	if (!d->sock[0]) {
		strcpy(d->dir, "/tmp/portd-e2e.XXXXXX");
		assert_non_null(mkdtemp(d->dir));
		snprintf(d->sock, sizeof(d->sock), "%s/portd.sock", d->dir);
	}
	n = wrapper_args(argv, SPAWN_ARGS_MAX / 2);
	argv[n++] = env_or_fail("PORTD_BIN");
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	for (const char *a = arg; a; a = va_arg(ap, const char *)) {
		if (n == SPAWN_ARGS_MAX)
			fail_msg("daemon_start: more than %d arguments", SPAWN_ARGS_MAX);
		argv[n++] = a;
	}
	argv[n] = NULL;
	/* READY=1 and EOF (or EOF alone: the daemon died): bounded, no sleeping. */
	pid = spawn_ready(argv, daemon_child, &nofile, 10000);
	if (pid < 0) {
		d->pid = 0;
		fail_msg("portd did not become ready: %s", strerror(-(int)pid));
	}
	d->pid = pid;
	track(d->pid, 0);
}

void daemon_start(struct daemon_proc *d, const char *arg, ...)
{
	va_list ap;

	va_start(ap, arg);
	daemon_startv(d, 0, arg, ap);
	va_end(ap);
}

void daemon_start_nofile(struct daemon_proc *d, unsigned long nofile, const char *arg, ...)
{
	va_list ap;

	va_start(ap, arg);
	daemon_startv(d, nofile, arg, ap);
	va_end(ap);
}

static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
	int pfd = pidfd_open(pid, 0);
	struct pollfd p = { .fd = pfd, .events = POLLIN };
	int r;

	if (pfd < 0)
		return -errno;
	r = poll(&p, 1, timeout_ms);
	close(pfd);
	if (r <= 0)
		return -ETIMEDOUT;
	return waitpid(pid, status, 0) == pid ? 0 : -errno;
}

void daemon_term(struct daemon_proc *d)
{
	int status = 0;
	struct stat st;

	if (d->pid <= 0)
		return;
	assert_int_equal(kill(d->pid, SIGTERM), 0);
	if (wait_exit(d->pid, 10000, &status) < 0) {
		track(0, d->pid);
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		fail_msg("portd did not exit within 10 s of SIGTERM");
	}
	track(0, d->pid);
	d->pid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Clean shutdown removes the socket file. */
	assert_int_not_equal(lstat(d->sock, &st), 0);
}

void daemon_stop(struct daemon_proc *d)
{
	char state[160];

	if (d->pid <= 0)
		return;
	daemon_term(d);
	snprintf(state, sizeof(state), "%s.state", d->sock);
	unlink(state); /* leases saved for a restart that will not come */
	rmdir(d->dir);
	d->dir[0] = d->sock[0] = '\0';
}

void daemon_kill(struct daemon_proc *d)
{
	track(0, d->pid);
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
}

int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

static void drain(int fd, char *buf, size_t len, size_t *got)
{
	char sink[4096];
	ssize_t r;

	if (len && *got < len - 1)
		r = read(fd, buf + *got, len - 1 - *got);
	else
		r = read(fd, sink, sizeof(sink));
	if (r > 0 && len && *got < len - 1)
		*got += (size_t)r;
}

int portctl(const char *sock, char *out, size_t outlen, char *err, size_t errlen, const char *arg, ...)
{
	const char *argv[MAX_ARGS];
	int n = 0, po[2], pe[2], status;
	size_t gout = 0, gerr = 0;
	va_list ap;
	pid_t pid;

	n = wrapper_args(argv, MAX_ARGS / 2);
	argv[n++] = env_or_fail("PORTCTL_BIN");
	va_start(ap, arg);
	for (const char *a = arg; a; a = va_arg(ap, const char *)) {
		if (n == MAX_ARGS - 1)
			fail_msg("portctl: more than %d arguments", MAX_ARGS - 1);
		argv[n++] = a;
	}
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(pipe2(po, O_CLOEXEC), 0);
	assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		if (sock)
			setenv("PORTD_SOCKET", sock, 1);
		else
			unsetenv("PORTD_SOCKET");
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	for (uint64_t end = now_ms() + 20000; now_ms() < end;) {
		struct pollfd pf[2] = { { .fd = po[0], .events = POLLIN }, { .fd = pe[0], .events = POLLIN } };
		if (poll(pf, 2, 1000) < 0)
			break;
		if (pf[0].revents)
			drain(po[0], out, outlen, &gout);
		if (pf[1].revents)
			drain(pe[0], err, errlen, &gerr);
		if ((pf[0].revents & POLLHUP) && !(pf[0].revents & POLLIN) &&
		    (pf[1].revents & POLLHUP) && !(pf[1].revents & POLLIN))
			break;
	}
	if (outlen)
		out[gout] = '\0';
	if (errlen)
		err[gerr] = '\0';
	close(po[0]);
	close(pe[0]);
	if (wait_exit(pid, 10000, &status) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool e2e_setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("PORTD_E2E_FILTER"))
		cmocka_set_test_filter(getenv("PORTD_E2E_FILTER"));
	return enter_private_netns();
}

int try_bind_tcp(uint16_t port, bool reuseaddr, int *fd_out)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, zero = 0, r = 0;
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT };

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (reuseaddr)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		r = -errno;
	if (r == 0 && fd_out)
		*fd_out = fd;
	else
		close(fd);
	return r;
}

int tcp_connect(int family, uint16_t port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	assert_true(fd >= 0);
	if (family == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	} else {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port),
					  .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	}
	if (r < 0) {
		r = -errno; /* before close() can change errno */
		close(fd);
		return r;
	}
	return fd;
}

bool wait_count(struct portd *p, int n, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms;; poll(NULL, 0, 5)) {
		struct portd_lease_info *v = NULL;
		int got = portd_list(p, &v, 5000);

		free(v);
		if (got == n)
			return true;
		if (now_ms() >= end)
			return false;
	}
}

bool wait_fd_count(pid_t pid, int want, int timeout_ms)
{
	for (uint64_t end = now_ms() + (uint64_t)timeout_ms;; poll(NULL, 0, 5)) {
		if (count_fds(pid) == want)
			return true;
		if (now_ms() >= end)
			break;
	}
	fprintf(stderr, "# process %d has %d fds, expected %d\n", (int)pid, count_fds(pid), want);
	return false;
}

/* The fields of /proc/PID/stat after "(comm)", which may itself hold spaces and parentheses. */
static bool proc_stat_fields(pid_t pid, char *buf, size_t len, char **rest)
{
	char path[64];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	*rest = strrchr(buf, ')');
	return *rest != NULL;
}

long proc_cpu_ticks(pid_t pid)
{
	char buf[1024], *p;
	unsigned long utime, stime;

	/* After "(comm) ": state(3) ... utime(14) stime(15). */
	if (!proc_stat_fields(pid, buf, sizeof(buf), &p) ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
		return -1;
	return (long)(utime + stime);
}

long proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

struct portd *connect_ok(const struct daemon_proc *d)
{
	struct portd *p = NULL;
	int r = portd_connect(d->sock, &p);

	if (r < 0)
		fail_msg("portd_connect: %s", portd_strerror(r));
	return p;
}

int raw_socket(const struct daemon_proc *d, bool nonblock, int *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	assert_true(fd >= 0);
	strcpy(a.sun_path, d->sock);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

int raw_connect(const struct daemon_proc *d)
{
	int err = 0, fd = raw_socket(d, false, &err);

	if (fd < 0)
		fail_msg("connect: %s", strerror(err));
	return fd;
}

uint32_t raw_result(int fd, uint32_t *detail)
{
	uint8_t buf[PORTD_MSG_MAX];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct proto_hdr h;
	uint32_t result = 0;
	ssize_t n;

	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	assert_true(n > 0);
	assert_int_equal(proto_hdr_decode(buf, (size_t)n, &h), 0);
	assert_true(h.type & PORTD_MSG_REPLY);
	assert_int_equal(proto_decode_result(proto_body(buf), (size_t)n - PORTD_HDR_SIZE, &result, detail), 0);
	return result;
}

bool raw_closed(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b;
	ssize_t n;

	if (poll(&p, 1, WAIT_MS) != 1)
		return false;
	n = recv(fd, &b, 1, MSG_DONTWAIT);
	/* A close with our request still unread by the daemon resets the connection. */
	return n == 0 || (n < 0 && errno == ECONNRESET);
}
