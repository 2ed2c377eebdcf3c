/*
 * sendmsg()/recvmsg() of one datagram with SCM_RIGHTS fds.
 *
 * The receive side always offers room for PORTD_FDS_MAX fds, whatever the
 * caller's capacity, so that a peer sending too many fds is detected (and its
 * fds closed) instead of the kernel silently dropping the excess.
 */
#include "fdpass.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol.h"

/* A control buffer aligned for struct cmsghdr, with room for PORTD_FDS_MAX fds. */
union fdpass_cbuf {
	struct cmsghdr align;
	char buf[CMSG_SPACE(sizeof(int) * PORTD_FDS_MAX)];
};

void fdpass_close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

ssize_t fdpass_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags)
{
	union fdpass_cbuf cbuf;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > PORTD_FDS_MAX || (nfds > 0 && !fds))
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	/* MSG_NOSIGNAL: a peer that hung up gives -EPIPE, not a SIGPIPE. */
	do
		n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

ssize_t fdpass_recv(int sock, void *buf, size_t cap, int *fds, size_t *nfds, int flags)
{
	union fdpass_cbuf cbuf;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.buf,
		.msg_controllen = sizeof(cbuf.buf),
	};
	int got[PORTD_FDS_MAX];
	size_t ngot = 0, want = *nfds;
	bool bad_cmsg = false;
	ssize_t n;

	*nfds = 0;
	/* MSG_CMSG_CLOEXEC: the fds are close-on-exec from the moment they exist. */
	do
		n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	/* Collect every fd that arrived before judging the message, so that
	 * every error path below can close them all. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			/* e.g. SCM_CREDENTIALS if someone set SO_PASSCRED: it holds no fds. */
			bad_cmsg = true;
			continue;
		}
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			/* CMSG_DATA is not necessarily int-aligned: memcpy. */
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (ngot < PORTD_FDS_MAX)
				got[ngot++] = fd;
			else
				close(fd); /* cannot happen: cbuf holds at most PORTD_FDS_MAX */
		}
	}

	if (msg.msg_flags & MSG_TRUNC) {
		n = -EMSGSIZE;
	} else if (msg.msg_flags & MSG_CTRUNC) {
		/* The kernel dropped fds that did not fit: a protocol error. */
		n = -EBADMSG;
	} else if (bad_cmsg || ngot > want) {
		n = -EBADMSG;
	} else if (n == 0) {
		/*
		 * SOCK_SEQPACKET returns 0 both at EOF and for an empty datagram;
		 * the protocol never sends empty datagrams (every message has a
		 * 16-byte header), so 0 means EOF. Fds on an "empty" datagram
		 * would be unowned: close them.
		 */
		fdpass_close_all(got, ngot);
		return 0;
	}
	if (n < 0) {
		fdpass_close_all(got, ngot);
		return n;
	}
	if (ngot)
		memcpy(fds, got, ngot * sizeof(int));
	*nfds = ngot;
	return n;
}
