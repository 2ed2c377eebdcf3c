#include "hold.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol.h"

static int hold_socket(uint8_t transport, uint16_t port, int family)
{
	int type = transport == PORTD_UDP ? SOCK_DGRAM : SOCK_STREAM;
	int one = 1, zero = 0;
	int fd = socket(family, type | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0)
		return -errno;
	if (family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		goto fail;
	if (family == AF_INET6) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port),
					  .sin6_addr = IN6ADDR_ANY_INIT };
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
					 .sin_addr.s_addr = htonl(INADDR_ANY) };
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	}
	if (r < 0)
		goto fail;
	/*
	 * SO_REUSEADDR only after bind(): bound without it, the bind conflicts
	 * with every socket already on the port, including another process's
	 * SO_REUSEADDR socket that is not listening yet and TIME_WAIT leftovers,
	 * so portd never shares a port. Set afterwards, it lets the client's own
	 * server (which sets it too) bind and listen on a number-leased port; the
	 * kernel reads the flag at each later bind. Autobinds of other processes
	 * still never land here: their conflict check does not relax for it.
	 */
	if (transport == PORTD_TCP &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

int hold_bind(void *ctx, uint8_t transport, uint16_t port, int *fd, uint16_t *got)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int s = hold_socket(transport, port, AF_INET6);

	if (s == -EAFNOSUPPORT)
		s = hold_socket(transport, port, AF_INET);
	if (s < 0)
		return s;
	if (port) { /* bound to exactly that port, or bind() failed */
		*got = port;
		*fd = s;
		return 0;
	}
	if (getsockname(s, (struct sockaddr *)&ss, &sl) < 0) {
		int e = -errno;
		close(s);
		return e;
	}
	*got = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	*fd = s;
	return 0;
}

void hold_close(void *ctx, int fd)
{
	if (fd >= 0)
		close(fd);
}
