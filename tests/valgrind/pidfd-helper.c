/*
 * valgrind-pidfd FD: the native side of the valgrind compatibility preload
 * (compat.c). Answers each struct vg_pidfd_req on the SOCK_SEQPACKET socket
 * FD with pidfd_open()'s errno and, on success, the pidfd (SCM_RIGHTS);
 * exits when the other side closes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"

int main(int argc, char **argv)
{
	int sock = argc == 2 ? atoi(argv[1]) : -1;

	if (sock < 3)
		return 2;
	/* Keep nothing the program had open (a readiness pipe must see its EOF). */
	syscall(SYS_close_range, 3u, (unsigned)sock - 1, 0u);
	syscall(SYS_close_range, (unsigned)sock + 1, ~0u, 0u);
	for (;;) {
		struct vg_pidfd_req req;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} c;
		int32_t err = 0;
		struct iovec iov = { &err, sizeof(err) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n = recv(sock, &req, sizeof(req), 0);
		int fd;

		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(req))
			return 0;
		fd = (int)syscall(SYS_pidfd_open, req.pid, req.flags);
		if (fd < 0) {
			err = errno;
		} else {
			struct cmsghdr *cm;

			memset(&c, 0, sizeof(c));
			m.msg_control = c.buf;
			m.msg_controllen = sizeof(c.buf);
			cm = CMSG_FIRSTHDR(&m);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
		}
		if (sendmsg(sock, &m, MSG_NOSIGNAL) != sizeof(err))
			return 0;
		if (fd >= 0)
			close(fd);
	}
}
