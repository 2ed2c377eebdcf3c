#include "fuzz-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"

void fuzz_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* ---- helper processes ---- */

/*
 * Helpers are forked by a spawner, itself forked once at the start: a
 * fork() of the fuzzer copies the page tables of everything it has touched
 * (hundreds of MB under ASan, milliseconds per fork), the spawner's are tiny.
 */
#define CHILD_CTL 3

static int spawner = -1; /* SOCK_SEQPACKET to the spawner */

/* libFuzzer's SIGALRM (-timeout) interrupts blocking calls of the fuzzer: retry them. */
static ssize_t ctl_send(int fd, const void *buf, size_t len)
{
	ssize_t n;

	while ((n = send(fd, buf, len, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return n;
}

static ssize_t ctl_recv(int fd, void *buf, size_t len)
{
	ssize_t n;

	while ((n = recv(fd, buf, len, 0)) < 0 && errno == EINTR)
		;
	return n;
}

/* Keep fd as CHILD_CTL and close every other fd but stdin/out/err. */
static void child_fds(int fd)
{
	if (fd != CHILD_CTL && dup3(fd, CHILD_CTL, O_CLOEXEC) < 0)
		_exit(1);
	close_range(CHILD_CTL + 1, UINT_MAX, 0);
}

/*
 * The answer, then, once the helper's copies of the fds are closed, one byte:
 * until then the fuzzer's end of a pair would not see the daemon's end close.
 */
static void helper_reply(int err, int *fds, size_t nfds)
{
	int32_t e = err;

	fdpass_send(CHILD_CTL, &e, sizeof(e), fds, nfds, 0);
	fdpass_close_all(fds, nfds);
	send(CHILD_CTL, "", 1, MSG_NOSIGNAL);
}

static void helper_connect(const char *name, size_t len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (len >= sizeof(sun.sun_path)) {
		helper_reply(ENAMETOOLONG, NULL, 0);
		return;
	}
	memcpy(sun.sun_path + 1, name, len); /* sun_path[0] '\0': abstract */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		helper_reply(e, NULL, 0);
		return;
	}
	helper_reply(0, &fd, 1);
}

static void *helper_thread(void *arg)
{
	pid_t tid = gettid();

	if (write(*(int *)arg, &tid, sizeof(tid)) != sizeof(tid))
		_exit(1);
	for (;;)
		pause();
	return NULL;
}

static _Noreturn void helper_main(int ctl, pid_t parent, bool nobody)
{
	char req[128];
	int32_t ready[3] = { 0 }; /* errno of the setup, uid, tid */
	pthread_t thread;
	pid_t tid = 0;
	int p[2] = { -1, -1 }, e;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	child_fds(ctl);
	if (nobody && geteuid() == 0 &&
	    (setgroups(0, NULL) < 0 || setresgid(FUZZ_NOBODY, FUZZ_NOBODY, FUZZ_NOBODY) < 0 ||
	     setresuid(FUZZ_NOBODY, FUZZ_NOBODY, FUZZ_NOBODY) < 0))
		ready[0] = errno;
	/* A thread that is not the process's leader: its tid names no process. */
	else if (pipe2(p, O_CLOEXEC) < 0)
		ready[0] = errno;
	else if ((e = pthread_create(&thread, NULL, helper_thread, &p[1])) != 0)
		ready[0] = e;
	else if (read(p[0], &tid, sizeof(tid)) != sizeof(tid))
		ready[0] = EIO;
	if (p[0] >= 0) {
		close(p[0]);
		close(p[1]);
	}
	ready[1] = (int32_t)getuid();
	ready[2] = tid;
	if (send(CHILD_CTL, ready, sizeof(ready), MSG_NOSIGNAL) != sizeof(ready) || ready[0])
		_exit(1);
	for (;;) {
		ssize_t n = recv(CHILD_CTL, req, sizeof(req), 0);
		int sv[2];

		if (n <= 0)
			_exit(0);
		if (req[0] == 'p') {
			if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
				helper_reply(errno, NULL, 0);
			else
				helper_reply(0, sv, 2);
		} else if (req[0] == 'c') {
			helper_connect(req + 1, (size_t)n - 1);
		} else {
			helper_reply(EINVAL, NULL, 0);
		}
	}
}

/* Requests: 's' + nobody byte: fork a helper, answer its pid and its ctl; 'k' + pid: kill and reap it. */
static _Noreturn void spawner_main(int ctl, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	child_fds(ctl);
	for (;;) {
		char req[8];
		ssize_t n = recv(CHILD_CTL, req, sizeof(req), 0);
		int32_t pid = 0;
		int sv[2] = { -1, -1 };

		if (n <= 0)
			_exit(0);
		if (req[0] == 'k' && n == 1 + sizeof(pid)) {
			memcpy(&pid, req + 1, sizeof(pid));
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			send(CHILD_CTL, &pid, sizeof(pid), MSG_NOSIGNAL);
			continue;
		}
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			pid = -errno;
		} else {
			pid_t me = getpid();
			pid = fork();
			if (pid == 0) {
				close(sv[0]);
				helper_main(sv[1], me, n > 1 && req[1]);
			}
			if (pid < 0)
				pid = -errno;
			close(sv[1]);
		}
		fdpass_send(CHILD_CTL, &pid, sizeof(pid), &sv[0], pid > 0 ? 1 : 0, 0);
		if (sv[0] >= 0)
			close(sv[0]);
	}
}

static int spawner_start(void)
{
	pid_t parent = getpid(), pid;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(sv[0]);
		close(sv[1]);
		return e;
	}
	if (pid == 0)
		spawner_main(sv[1], parent);
	close(sv[1]);
	spawner = sv[0];
	return 0;
}

void fuzz_helper_restart(struct fuzz_helper *h, bool nobody)
{
	int r;

	fuzz_helper_stop(h);
	if ((r = fuzz_helper_start(h, nobody)) < 0)
		fprintf(stderr, "cannot start a helper process: %s\n", strerror(-r));
	FUZZ_CHECK(r == 0);
}

int fuzz_helper_start(struct fuzz_helper *h, bool nobody)
{
	char req[2] = { 's', nobody };
	int32_t pid;
	int32_t ready[3] = { 0 };
	size_t n = 1;
	int r;

	h->pid = 0;
	h->ctl = -1;
	if (spawner < 0 && (r = spawner_start()) < 0)
		return r;
	if (ctl_send(spawner, req, sizeof(req)) != sizeof(req) ||
	    fdpass_recv(spawner, &pid, sizeof(pid), &h->ctl, &n, 0) != sizeof(pid))
		return -EPIPE;
	if (pid < 0)
		return pid;
	if (n != 1)
		return -EPROTO;
	h->pid = pid;
	if (ctl_recv(h->ctl, ready, sizeof(ready)) != sizeof(ready) || ready[0]) {
		r = ready[0] ? -(int)ready[0] : -ECHILD;
		fuzz_helper_stop(h);
		return r;
	}
	h->uid = (uid_t)ready[1];
	h->tid = (pid_t)ready[2];
	return 0;
}

void fuzz_helper_stop(struct fuzz_helper *h)
{
	char req[1 + sizeof(int32_t)] = { 'k' };
	int32_t pid = h->pid, done;

	if (h->pid <= 0)
		return;
	memcpy(req + 1, &pid, sizeof(pid));
	/* Answered once the helper is dead and reaped. */
	FUZZ_CHECK(ctl_send(spawner, req, sizeof(req)) == sizeof(req));
	FUZZ_CHECK(ctl_recv(spawner, &done, sizeof(done)) == sizeof(done) && done == pid);
	close(h->ctl);
	h->pid = 0;
	h->ctl = -1;
}

/* One request; the helper's answer: 0 with *nfds fds, or -errno. */
static int helper_call(struct fuzz_helper *h, const void *req, size_t len, int *fds, size_t *nfds)
{
	int32_t e;
	char done;
	ssize_t n;

	if (h->pid <= 0)
		return -ESRCH;
	if (ctl_send(h->ctl, req, len) != (ssize_t)len)
		return -EPIPE;
	n = fdpass_recv(h->ctl, &e, sizeof(e), fds, nfds, 0);
	if (n == sizeof(e) && ctl_recv(h->ctl, &done, 1) != 1)
		n = -EPIPE;
	if (n != sizeof(e)) {
		fdpass_close_all(fds, *nfds);
		return n < 0 ? (int)n : -EPIPE;
	}
	if (e) {
		fdpass_close_all(fds, *nfds);
		return -e;
	}
	return 0;
}

int fuzz_helper_socketpair(struct fuzz_helper *h, int sv[2])
{
	size_t n = 2;
	int r = helper_call(h, "p", 1, sv, &n);

	if (r == 0 && n != 2) {
		fdpass_close_all(sv, n);
		return -EPROTO;
	}
	return r;
}

int fuzz_helper_connect(struct fuzz_helper *h, const char *name)
{
	char req[128];
	size_t len = strlen(name), n = 1;
	int fd = -1, r;

	if (len + 1 > sizeof(req))
		return -ENAMETOOLONG;
	req[0] = 'c';
	memcpy(req + 1, name, len);
	r = helper_call(h, req, len + 1, &fd, &n);
	if (r == 0 && n != 1) {
		fdpass_close_all(&fd, n);
		return -EPROTO;
	}
	return r < 0 ? r : fd;
}

void fuzz_count_fds(struct fuzz_fds *out)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char link[64];

	out->total = out->pidfds = 0;
	FUZZ_CHECK(d != NULL);
	while ((e = readdir(d))) {
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		out->total++;
		n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = '\0';
			if (strcmp(link, "anon_inode:[pidfd]") == 0)
				out->pidfds++;
		}
	}
	closedir(d);
}
