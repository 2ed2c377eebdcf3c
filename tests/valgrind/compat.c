/*
 * Preloaded (LD_PRELOAD) into portd and portctl when they run under
 * valgrind 3.19 (meson test --setup=valgrind), for two things that valgrind
 * lacks and the programs use:
 *
 *  - pidfd_open(2): valgrind 3.19 does not know the system call and fails it
 *    with ENOSYS, so tied leases and portserver grants would be refused. Here
 *    a native helper (valgrind-pidfd, started at load, outside valgrind: it
 *    does not trace children) calls pidfd_open() and passes the pidfd back
 *    over a socket (SCM_RIGHTS): the program gets the very fd the kernel
 *    would have given it.
 *  - mallinfo2(3): valgrind replaces mallinfo() but not mallinfo2(), which
 *    then reads glibc's idle arenas and reports 0 bytes in use. Here it is
 *    answered from valgrind's mallinfo().
 *
 * Outside valgrind (the launcher, a child the program starts) both are
 * glibc's own. Nothing here touches memory the programs use, so memcheck
 * sees them as they are.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <valgrind/valgrind.h>

#include "compat.h"

int pidfd_open(pid_t pid, unsigned int flags);
struct mallinfo2 mallinfo2(void);

static int helper_fd = -1;

/* Drop this library from LD_PRELOAD, so the programs' children do not load it. */
static void unpreload(void)
{
	const char *v = getenv("LD_PRELOAD");
	char buf[4096], out[4096] = "";
	char *save = NULL;
	Dl_info self;

	if (!v || strlen(v) >= sizeof(buf) || !dladdr(&helper_fd, &self) || !self.dli_fname)
		return;
	strcpy(buf, v);
	for (char *t = strtok_r(buf, ": ", &save); t; t = strtok_r(NULL, ": ", &save)) {
		if (strcmp(t, self.dli_fname) == 0)
			continue;
		if (out[0])
			strcat(out, ":");
		strcat(out, t);
	}
	if (out[0])
		setenv("LD_PRELOAD", out, 1);
	else
		unsetenv("LD_PRELOAD");
}

__attribute__((constructor)) static void compat_init(void)
{
	const char *helper = getenv(VG_COMPAT_HELPER_ENV);
	int sv[2];
	pid_t pid;

	if (!RUNNING_ON_VALGRIND)
		return;
	unpreload();
	/* Started now, not at the first pidfd_open(): its socket is then one of the fds the program starts with. */
	if (!helper || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		char arg[16];

		fcntl(sv[1], F_SETFD, 0);
		snprintf(arg, sizeof(arg), "%d", sv[1]);
		execl(helper, helper, arg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	if (pid < 0)
		close(sv[0]);
	else
		helper_fd = sv[0];
}

/* Closed at exit, so that valgrind's report of the fds left open shows only the program's. */
__attribute__((destructor)) static void compat_fini(void)
{
	if (helper_fd >= 0)
		close(helper_fd);
	helper_fd = -1;
}

int pidfd_open(pid_t pid, unsigned int flags)
{
	struct vg_pidfd_req req = { .pid = pid, .flags = flags };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	int32_t err = 0;
	struct iovec iov = { &err, sizeof(err) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
			    .msg_controllen = sizeof(c.buf) };
	struct cmsghdr *cm;
	int fd;

	if (!RUNNING_ON_VALGRIND)
		return (int)syscall(SYS_pidfd_open, pid, flags);
	if (helper_fd < 0) {
		errno = ENOSYS;
		return -1;
	}
	if (send(helper_fd, &req, sizeof(req), MSG_NOSIGNAL) != sizeof(req) ||
	    recvmsg(helper_fd, &m, MSG_CMSG_CLOEXEC) != sizeof(err)) {
		errno = ENOSYS;
		return -1;
	}
	if (err) {
		errno = err;
		return -1;
	}
	cm = CMSG_FIRSTHDR(&m);
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof(int))) {
		errno = ENOSYS;
		return -1;
	}
	memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
	return fd;
}

struct mallinfo2 mallinfo2(void)
{
	struct mallinfo2 r = { 0 };

	if (!RUNNING_ON_VALGRIND) {
		void *sym = dlsym(RTLD_NEXT, "mallinfo2");
		struct mallinfo2 (*real)(void);

		memcpy(&real, &sym, sizeof(real)); /* ISO C has no object-to-function pointer cast */
		return sym ? real() : r;
	}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	struct mallinfo m = mallinfo(); /* valgrind's own: what the program has allocated */
#pragma GCC diagnostic pop
	r.arena = (size_t)(unsigned)m.arena;
	r.ordblks = (size_t)(unsigned)m.ordblks;
	r.smblks = (size_t)(unsigned)m.smblks;
	r.hblks = (size_t)(unsigned)m.hblks;
	r.hblkhd = (size_t)(unsigned)m.hblkhd;
	r.usmblks = (size_t)(unsigned)m.usmblks;
	r.fsmblks = (size_t)(unsigned)m.fsmblks;
	r.uordblks = (size_t)(unsigned)m.uordblks;
	r.fordblks = (size_t)(unsigned)m.fordblks;
	r.keepcost = (size_t)(unsigned)m.keepcost;
	return r;
}
