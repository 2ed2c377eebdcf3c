/*
 * sd-client: the client side of the systemd tests (tests/systemd/), on libportd.
 *
 *   sd-client SOCKET hold N TTL   take N fd leases (plain TTL, not tied to this
 *                                 process), print one line per lease,
 *                                 "ID PORT [PORT...]", then "ready", then serve
 *                                 commands on stdin:
 *                                   check  every fd still bound to its port,
 *                                          its file status flags unchanged
 *                                          (they are shared with portd's copy),
 *                                          and working: TCP ones listen and
 *                                          accept a connection over IPv4 and
 *                                          IPv6, UDP ones receive a datagram;
 *                                          prints "ok N" or "fail WHY"
 *                                   quit   exit (also at end of input)
 *   sd-client SOCKET list         every lease visible to the caller, one per line:
 *                                 "ID TRANSPORT KIND TTL UID PID TIED EXPIRES_MS PORT..."
 *   sd-client probe SPEC...       until SIGTERM, bind each SPEC (tcp:PORT or
 *                                 udp:PORT) without SO_REUSEADDR, on [::]
 *                                 (dual-stack) and 0.0.0.0 in turn; each bind
 *                                 must fail with EADDRINUSE. Prints "probing"
 *                                 after the first round, and at the end
 *                                 "rounds R binds B stolen S errors E"; exits 1
 *                                 if a bind succeeded or failed otherwise.
 *
 * Leases of "hold" cycle through three shapes so that the restart test covers
 * each: one TCP port (most), two TCP ports (every tenth, i % 10 == 8) and one
 * port on both TCP and UDP (i % 10 == 9).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <portd.h>

#define TIMEOUT_MS 5000

static int die(const char *what, int r)
{
	fprintf(stderr, "sd-client: %s: %s\n", what, portd_strerror(r));
	return 1;
}

static const char *transport_name(uint8_t t)
{
	switch (t) {
	case PORTD_TRANSPORT_TCP: return "tcp";
	case PORTD_TRANSPORT_UDP: return "udp";
	case PORTD_TRANSPORT_BOTH: return "both";
	default: return "?";
	}
}

static int cmd_list(const char *sock)
{
	struct portd_lease_info *l = NULL;
	struct portd *p;
	int n, r;

	if ((r = portd_connect(sock, &p)) < 0)
		return die("connect", r);
	n = portd_list(p, &l, TIMEOUT_MS);
	portd_disconnect(p);
	if (n < 0)
		return die("list", n);
	for (int i = 0; i < n; i++) {
		printf("%" PRIu64 " %s %s %" PRIu32 " %" PRIu32 " %ld %ld %" PRIu64, l[i].id,
		       transport_name(l[i].transport), (l[i].flags & PORTD_FLAG_FD) ? "fd" : "number", l[i].ttl,
		       l[i].uid, (long)l[i].pid, (long)l[i].tied_pid, l[i].expires_in_ms);
		for (unsigned k = 0; k < l[i].count; k++)
			printf(" %u", (unsigned)l[i].ports[k]);
		printf("\n");
	}
	free(l);
	return 0;
}

/* connect() within TIMEOUT_MS (a filtered SYN would otherwise block for minutes); c stays blocking. */
static int connect_timeout(int c, const struct sockaddr *sa, socklen_t sl)
{
	struct pollfd pfd = { .fd = c, .events = POLLOUT };
	int fl = fcntl(c, F_GETFL), err = 0;
	socklen_t el = sizeof(err);

	if (fl < 0 || fcntl(c, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	if (connect(c, sa, sl) < 0) {
		if (errno != EINPROGRESS)
			return -1;
		if (poll(&pfd, 1, TIMEOUT_MS) != 1) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			return -1;
		if (err) {
			errno = err;
			return -1;
		}
	}
	return fcntl(c, F_SETFL, fl);
}

/* One loopback connection to a listening TCP socket: connect, accept, one byte each way. */
static int tcp_roundtrip(int lfd, int family, uint16_t port, char *why, size_t len)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int c = -1, a = -1, ok = -1;
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	char b = 'x';

	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		in6->sin6_addr = in6addr_loopback;
		sl = sizeof(*in6);
	}
	c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect_timeout(c, (struct sockaddr *)&ss, sl) < 0) {
		snprintf(why, len, "connect to port %u (%s): %s", port, family == AF_INET ? "IPv4" : "IPv6",
			 strerror(errno));
		goto out;
	}
	errno = 0;
	if (poll(&pfd, 1, TIMEOUT_MS) != 1 || (a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		snprintf(why, len, "accept on port %u: %s", port, errno ? strerror(errno) : "timeout");
		goto out;
	}
	if (write(c, &b, 1) != 1 || read(a, &b, 1) != 1 || write(a, &b, 1) != 1 || read(c, &b, 1) != 1) {
		snprintf(why, len, "exchange on port %u: %s", port, strerror(errno));
		goto out;
	}
	ok = 0;
out:
	if (c >= 0)
		close(c);
	if (a >= 0)
		close(a);
	return ok;
}

/* A datagram to 127.0.0.1:port must arrive on the leased UDP socket. */
static int udp_roundtrip(int fd, uint16_t port, char *why, size_t len)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char b = 'u';
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int ok = -1;

	errno = 0;
	if (s < 0 || sendto(s, &b, 1, 0, (struct sockaddr *)&in, sizeof(in)) != 1)
		snprintf(why, len, "sendto udp port %u: %s", port, strerror(errno));
	else if ((errno = 0, poll(&pfd, 1, TIMEOUT_MS) != 1) || recv(fd, &b, 1, 0) != 1)
		snprintf(why, len, "no datagram on udp port %u: %s", port, errno ? strerror(errno) : "timeout");
	else
		ok = 0;
	if (s >= 0)
		close(s);
	return ok;
}

static uint16_t bound_port(int fd, int *type)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss), tl = sizeof(*type);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &tl) < 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

/* Every fd of every lease: still bound to its port, flags as received, and working. */
static int check_leases(const struct portd_lease *l, int (*flags)[PORTD_MAX_FDS], size_t n, char *why, size_t len)
{
	int checked = 0;

	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < l[i].nfds; k++) {
			int fd = l[i].fds[k], type = 0, fl = fcntl(fd, F_GETFL);
			/* fds: one per port; for BOTH, TCP then UDP per port. */
			uint16_t want = l[i].transport == PORTD_TRANSPORT_BOTH ? l[i].ports[k / 2] : l[i].ports[k];
			uint16_t got = bound_port(fd, &type);

			if (got != want) {
				snprintf(why, len, "lease %" PRIu64 " fd %d: bound to port %u, not %u", l[i].id, fd,
					 got, want);
				return -1;
			}
			/* The open file description is shared with portd's copy: a
			 * manager setting O_NONBLOCK on passed fds would change ours. */
			if (fl != flags[i][k]) {
				snprintf(why, len, "lease %" PRIu64 " port %u: file status flags 0%o, were 0%o", l[i].id,
					 want, (unsigned)fl, (unsigned)flags[i][k]);
				return -1;
			}
			if (type == SOCK_STREAM) {
				if (listen(fd, 16) < 0) {
					snprintf(why, len, "listen on port %u: %s", want, strerror(errno));
					return -1;
				}
				if (tcp_roundtrip(fd, AF_INET, want, why, len) < 0 ||
				    tcp_roundtrip(fd, AF_INET6, want, why, len) < 0)
					return -1;
			} else if (udp_roundtrip(fd, want, why, len) < 0) {
				return -1;
			}
			checked++;
		}
	}
	return checked;
}

static int cmd_hold(const char *sock, int n, uint32_t ttl)
{
	struct portd_lease *l = calloc((size_t)n, sizeof(*l));
	int (*flags)[PORTD_MAX_FDS] = calloc((size_t)n, sizeof(*flags));
	char line[64], why[256];
	struct portd *p;
	int r;

	if (!l || !flags)
		return die("calloc", -ENOMEM);
	if ((r = portd_connect(sock, &p)) < 0)
		return die("connect", r);
	for (int i = 0; i < n; i++) {
		struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;

		o.ttl = ttl;
		o.flags = PORTD_FLAG_FD; /* not tied: the lease lives for its ttl */
		if (i % 10 == 8)
			o.count = 2;
		else if (i % 10 == 9)
			o.transport = PORTD_TRANSPORT_BOTH;
		if ((r = portd_lease(p, &o, &l[i], TIMEOUT_MS)) < 0)
			return die("lease", r);
		for (size_t k = 0; k < l[i].nfds; k++)
			flags[i][k] = fcntl(l[i].fds[k], F_GETFL);
		printf("%" PRIu64, l[i].id);
		for (unsigned k = 0; k < l[i].count; k++)
			printf(" %u", (unsigned)l[i].ports[k]);
		printf("\n");
	}
	/* The connection is not needed any more; leases stay (not tied). */
	portd_disconnect(p);
	printf("ready\n");
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		if (!strcmp(line, "check\n")) {
			r = check_leases(l, flags, (size_t)n, why, sizeof(why));
			if (r < 0)
				printf("fail %s\n", why);
			else
				printf("ok %d\n", r);
			fflush(stdout);
		} else if (!strcmp(line, "quit\n")) {
			break;
		} else {
			printf("fail unknown command\n");
			fflush(stdout);
		}
	}
	for (int i = 0; i < n; i++)
		portd_lease_close_fds(&l[i]);
	free(flags);
	free(l);
	return 0;
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	stop = 1;
}

static int probe_bind(int type, int family, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int fd = socket(family, type | SOCK_CLOEXEC, 0), r;

	if (fd < 0)
		return -errno;
	if (family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		int off = 0;

		/* Dual-stack, as most servers bind [::]. */
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		in6->sin6_addr = in6addr_any;
		sl = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		sl = sizeof(*in);
	}
	r = bind(fd, (struct sockaddr *)&ss, sl) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int cmd_probe(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_term };
	struct timespec pause = { .tv_sec = 0, .tv_nsec = 2 * 1000 * 1000 };
	uint64_t rounds = 0, binds = 0, stolen = 0, errors = 0;
	int *type = calloc((size_t)argc, sizeof(int));
	uint16_t *port = calloc((size_t)argc, sizeof(uint16_t));

	if (!type || !port)
		return die("calloc", -ENOMEM);
	for (int i = 0; i < argc; i++) {
		unsigned v;
		char proto[4];

		if (sscanf(argv[i], "%3[a-z]:%u", proto, &v) != 2 || v == 0 || v > 65535 ||
		    (strcmp(proto, "tcp") && strcmp(proto, "udp"))) {
			fprintf(stderr, "sd-client: bad probe spec '%s' (tcp:PORT or udp:PORT)\n", argv[i]);
			return 2;
		}
		type[i] = strcmp(proto, "tcp") ? SOCK_DGRAM : SOCK_STREAM;
		port[i] = (uint16_t)v;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	while (!stop) {
		for (int i = 0; i < argc; i++) {
			int family = (rounds + (uint64_t)i) % 2 ? AF_INET : AF_INET6;
			int r = probe_bind(type[i], family, port[i]);

			binds++;
			if (r == 0) {
				stolen++;
				fprintf(stderr, "sd-client: bound %s port %u (%s) without SO_REUSEADDR: not reserved\n",
					type[i] == SOCK_STREAM ? "tcp" : "udp", port[i],
					family == AF_INET ? "0.0.0.0" : "[::]");
			} else if (r != -EADDRINUSE) {
				errors++;
				fprintf(stderr, "sd-client: bind port %u: %s\n", port[i], strerror(-r));
			}
		}
		if (rounds++ == 0) {
			printf("probing\n");
			fflush(stdout);
		}
		/* A short pause leaves the CPU to the restart being watched. */
		nanosleep(&pause, NULL);
	}
	printf("rounds %" PRIu64 " binds %" PRIu64 " stolen %" PRIu64 " errors %" PRIu64 "\n", rounds, binds,
	       stolen, errors);
	free(type);
	free(port);
	return stolen || errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	/* Never outlive the test script, even if it dies without stopping us. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "probe"))
		return cmd_probe(argc - 2, argv + 2);
	if (argc == 3 && !strcmp(argv[2], "list"))
		return cmd_list(argv[1]);
	if (argc == 5 && !strcmp(argv[2], "hold")) {
		int n = atoi(argv[3]);
		long ttl = atol(argv[4]);

		if (n > 0 && n <= 4096 && ttl >= 0 && ttl <= UINT32_MAX)
			return cmd_hold(argv[1], n, (uint32_t)ttl);
	}
	fprintf(stderr, "usage: sd-client SOCKET hold N TTL | sd-client SOCKET list | sd-client probe tcp:PORT...\n");
	return 2;
}
