/*
 * One datagram in, one datagram out, with file descriptors attached as
 * SCM_RIGHTS. Every fd received is close-on-exec (MSG_CMSG_CLOEXEC); any
 * truncation (MSG_TRUNC, MSG_CTRUNC) is an error and leaves no fd open.
 */
#ifndef PORTD_FDPASS_H
#define PORTD_FDPASS_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Send buf as one datagram with nfds (0..PORTD_FDS_MAX) fds attached; flags
 * are added to MSG_NOSIGNAL (pass MSG_DONTWAIT for non-blocking). The fds
 * stay owned by the caller. Returns len, or -errno (-EAGAIN, -EPIPE, ...).
 */
ssize_t fdpass_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags);

/*
 * Receive one datagram into buf (cap bytes) and up to *nfds fds into fds.
 * On return *nfds is the number of fds received, all owned by the caller.
 * Returns the datagram length, 0 at end of stream, or -errno:
 *   -EMSGSIZE  datagram longer than cap (MSG_TRUNC)
 *   -EBADMSG   more fds than *nfds, or control data truncated (MSG_CTRUNC),
 *              or control data other than SCM_RIGHTS
 * On any error every fd that arrived is closed and *nfds is 0.
 */
ssize_t fdpass_recv(int sock, void *buf, size_t cap, int *fds, size_t *nfds, int flags);

/* Close n fds and set each to -1. */
void fdpass_close_all(int *fds, size_t n);

#endif
