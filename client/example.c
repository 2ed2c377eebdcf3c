/* The README's C example: lease a port with its bound socket, listen on it. */
#include <portd.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	struct portd_lease_opts opts = PORTD_LEASE_OPTS_INIT; /* 1 TCP port, fd handed over, tied to this process */
	struct portd_lease lease;
	struct portd *p;
	int r;

	if ((r = portd_connect(NULL, &p)) < 0) { /* $PORTD_SOCKET or the default path */
		fprintf(stderr, "connect: %s\n", portd_strerror(r));
		return 1;
	}
	if ((r = portd_lease(p, &opts, &lease, 1000)) < 0) {
		fprintf(stderr, "lease: %s\n", portd_strerror(r));
		portd_disconnect(p);
		return 1;
	}
	/* lease.fds[0] is already bound to lease.ports[0]: no window for anyone else. */
	if (listen(lease.fds[0], 128) < 0) {
		perror("listen");
		return 1;
	}
	printf("listening on port %u (lease %llu)\n", lease.ports[0], (unsigned long long)lease.id);
	/* ... serve ... */
	portd_release(p, lease.id, 1000); /* or simply exit: a tied lease ends with its process */
	portd_lease_close_fds(&lease);
	portd_disconnect(p);
	return 0;
}
