/*
 * proto/hostports.c: parsing and the exhaustion mark as pure logic; then,
 * as root in a private network namespace with a narrowed ephemeral range,
 * sockets in known states on known ports and the exact counts of a scan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostports.h"
#include "testutil.h"

static bool have_netns;

static void test_parse_range(void **state)
{
	uint16_t lo = 0, hi = 0;
	const char *bad[] = { "", "\n", "32768", "32768 ", "x 1", "1 x", "0 10", "10 9", "1 65536", "-1 5",
			      "1 2 3", "1,2" };

	assert_int_equal(hostports_parse_range("32768\t60999\n", &lo, &hi), 0);
	assert_int_equal(lo, 32768);
	assert_int_equal(hi, 60999);
	assert_int_equal(hostports_parse_range("1 65535", &lo, &hi), 0);
	assert_int_equal(lo, 1);
	assert_int_equal(hi, 65535);
	assert_int_equal(hostports_parse_range("40000 40000\n", &lo, &hi), 0);
	assert_int_equal(hi, 40000);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hostports_parse_range(bad[i], &lo, &hi) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
}

/* 80 % marks the range low; once low, it stays so down to 75 %. */
static void test_low_mark(void **state)
{
	struct hostports h = { .usable = 1000 };

	h.in_use = 799;
	assert_false(hostports_low(&h, false));
	assert_int_equal(hostports_percent(&h), 79);
	h.in_use = 800;
	assert_true(hostports_low(&h, false));
	assert_int_equal(hostports_percent(&h), 80);
	h.in_use = 750;
	assert_false(hostports_low(&h, false));
	assert_true(hostports_low(&h, true));
	h.in_use = 749;
	assert_false(hostports_low(&h, true));
	/* Rounding: 79.99 % is below the mark. */
	h = (struct hostports){ .usable = 10001, .in_use = 8000 };
	assert_false(hostports_low(&h, false));
	/* Nothing usable (the whole range reserved): exhausted. */
	h = (struct hostports){ .usable = 0, .in_use = 0 };
	assert_true(hostports_low(&h, false));
	assert_int_equal(hostports_percent(&h), 100);
}

/* ---- the kernel ---- */

static void write_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, value, strlen(value)), (ssize_t)strlen(value));
	close(fd);
}

/* A socket of family/type bound to port on the loopback (or the any address), optionally SO_REUSE*. */
static int sock_at(int family, int type, bool any, uint16_t port, int reuse)
{
	int fd = socket(family, type | SOCK_CLOEXEC, 0), one = 1, zero = 0;
	struct sockaddr_storage ss = { 0 };
	socklen_t len;

	assert_true(fd >= 0);
	if (reuse)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, reuse, &one, sizeof(one)), 0);
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = any ? in6addr_any : in6addr_loopback;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(any ? INADDR_ANY : INADDR_LOOPBACK);
		len = sizeof(*a);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		fail_msg("bind port %u: %s", port, strerror(errno));
	return fd;
}

static int listener(int family, uint16_t port, int reuse)
{
	int fd = sock_at(family, SOCK_STREAM, false, port, reuse);

	assert_int_equal(listen(fd, 16), 0);
	return fd;
}

/* A client bound to from, connected to to (loopback); *acc gets the accepted end from lfd. */
static int connected(int family, uint16_t from, uint16_t to, int lfd, int *acc)
{
	int fd = sock_at(family, SOCK_STREAM, false, from, 0);
	struct sockaddr_storage ss = { 0 };
	socklen_t len;

	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		*a = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_port = htons(to),
					    .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		*a = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(to),
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		len = sizeof(*a);
	}
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
	*acc = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*acc >= 0);
	return fd;
}

/* Wait (at most 5 s) until fd is readable, then read the end of the stream. */
static void read_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(read(fd, &c, 1), 0);
}

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
	return ti.tcpi_state;
}

#define LO 41000
#define HI 41099

/*
 * Every state on known ports of 41000-41099 (41090-41099 reserved):
 *   41000  TCP listener (IPv4), UDP, and an orphan closing its side (other)
 *   41010  TCP listener (IPv6) and the accepted end of 41011 (established)
 *   41011  established client (IPv6)
 *   41012  TIME-WAIT: the client closed first, then the server
 *   41013  CLOSE-WAIT: the server closed first (other)
 *   41020  bound, not listening, dual-stack (what portd holds)
 *   41030  UDP (IPv6)
 *   41040  two SO_REUSEPORT listeners: one port
 *   41050  bound TCP and UDP of uid 65534; 41051 UDP of uid 65534
 * and, not counted: 40999 (UDP) and 41100 (bound TCP) outside the range,
 * 42000 (listener) far outside, 41095 (listener) reserved.
 */
static void test_scan_states(void **state)
{
	struct hostports h;
	int fds[32], n = 0, d_acc, i_acc, e, hc;

	if (!have_netns)
		skip();
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "41000 41099\n");
	write_sysctl(HOSTPORTS_RESERVED_SYSCTL, "41090-41099\n");

	int l4 = listener(AF_INET, 41000, 0);
	fds[n++] = l4;
	fds[n++] = sock_at(AF_INET, SOCK_DGRAM, false, 41000, 0);
	int l6 = listener(AF_INET6, 41010, 0);
	fds[n++] = l6;
	int c6 = connected(AF_INET6, 41011, 41010, l6, &e);
	fds[n++] = c6;
	fds[n++] = e;

	/* TIME-WAIT on 41012: the client closes first; once the server's close completes, it waits. */
	int dc = connected(AF_INET, 41012, 41000, l4, &d_acc);
	close(dc);
	read_eof(d_acc);
	assert_int_equal(shutdown(d_acc, SHUT_WR), 0);
	for (int k = 0; k < 100000 && tcp_state(d_acc) != TCP_CLOSE; k++)
		sched_yield();
	assert_int_equal(tcp_state(d_acc), TCP_CLOSE);
	close(d_acc);

	/* CLOSE-WAIT on 41013: the server's end closes first (and lingers in FIN-WAIT on 41000). */
	hc = connected(AF_INET, 41013, 41000, l4, &i_acc);
	fds[n++] = hc;
	close(i_acc);
	read_eof(hc);
	assert_int_equal(tcp_state(hc), TCP_CLOSE_WAIT);

	fds[n++] = sock_at(AF_INET6, SOCK_STREAM, true, 41020, SO_REUSEADDR);
	fds[n++] = sock_at(AF_INET6, SOCK_DGRAM, true, 41030, 0);
	fds[n++] = listener(AF_INET, 41040, SO_REUSEPORT);
	fds[n++] = listener(AF_INET, 41040, SO_REUSEPORT);

	/* A socket belongs to the effective uid that made it. */
	assert_int_equal(seteuid(65534), 0);
	fds[n++] = sock_at(AF_INET6, SOCK_STREAM, true, 41050, SO_REUSEADDR);
	fds[n++] = sock_at(AF_INET6, SOCK_DGRAM, true, 41050, 0);
	fds[n++] = sock_at(AF_INET, SOCK_DGRAM, false, 41051, 0);
	assert_int_equal(seteuid(0), 0);

	fds[n++] = sock_at(AF_INET, SOCK_DGRAM, false, 40999, 0);
	fds[n++] = sock_at(AF_INET6, SOCK_STREAM, true, 41100, 0);
	fds[n++] = listener(AF_INET, 42000, 0);
	fds[n++] = listener(AF_INET, 41095, 0);

	assert_int_equal(hostports_scan(&h, HOSTPORTS_OWNERS), 0);
	assert_int_equal(h.lo, LO);
	assert_int_equal(h.hi, HI);
	assert_int_equal(h.size, 100);
	assert_int_equal(h.reserved, 10);
	assert_int_equal(h.usable, 90);
	assert_string_equal(h.reserved_list, "41090-41099");
	assert_int_equal(h.tcp_listen, 3);      /* 41000 41010 41040 */
	assert_int_equal(h.tcp_established, 2); /* 41010 41011 */
	assert_int_equal(h.tcp_time_wait, 1);   /* 41012 */
	assert_int_equal(h.tcp_bound, 2);       /* 41020 41050 */
	assert_int_equal(h.tcp_other, 2);       /* 41000 41013 */
	assert_int_equal(h.udp, 4);             /* 41000 41030 41050 41051 */
	assert_int_equal(h.in_use, 10);
	assert_int_equal(h.sockets, 15);
	assert_int_equal(hostports_percent(&h), 11);
	assert_false(hostports_low(&h, false));
	/* Owners: the TIME-WAIT and the orphan belong to no process. */
	assert_int_equal(h.nowners, 2);
	assert_int_equal(h.owners[0].uid, 0);
	assert_int_equal(h.owners[0].ports, 7); /* 41000 41010 41011 41013 41020 41030 41040 */
	assert_int_equal(h.owners[1].uid, 65534);
	assert_int_equal(h.owners[1].ports, 2);

	/* Without HOSTPORTS_OWNERS: the same counts, no owners. */
	struct hostports h2;
	assert_int_equal(hostports_scan(&h2, 0), 0);
	assert_int_equal(h2.in_use, 10);
	assert_int_equal(h2.nowners, 0);

	/* Move the range away: none of these ports counts any more. */
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "43000 43099\n");
	assert_int_equal(hostports_scan(&h, HOSTPORTS_OWNERS), 0);
	assert_int_equal(h.size, 100);
	assert_int_equal(h.reserved, 0);
	assert_int_equal(h.in_use, 0);
	assert_int_equal(h.sockets, 0);
	assert_int_equal(h.nowners, 0);
	/* A range that holds only the reserved part and 41100. */
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "41090 41100\n");
	assert_int_equal(hostports_scan(&h, 0), 0);
	assert_int_equal(h.usable, 1);
	assert_int_equal(h.in_use, 1);
	assert_int_equal(h.tcp_bound, 1);
	assert_true(hostports_low(&h, false));

	for (int k = 0; k < n; k++)
		close(fds[k]);
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "32768 60999\n");
	write_sysctl(HOSTPORTS_RESERVED_SYSCTL, "\n");
}

/* A range close to exhaustion: 80 % of the usable ports bound. */
static void test_scan_low(void **state)
{
	struct hostports h;
	int fds[16];

	if (!have_netns)
		skip();
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "44000 44009\n");
	for (int i = 0; i < 8; i++)
		fds[i] = sock_at(AF_INET, SOCK_DGRAM, false, (uint16_t)(44000 + i), 0);
	assert_int_equal(hostports_scan(&h, 0), 0);
	assert_int_equal(h.in_use, 8);
	assert_true(hostports_low(&h, false));
	close(fds[7]);
	assert_int_equal(hostports_scan(&h, 0), 0);
	assert_int_equal(h.in_use, 7);
	assert_false(hostports_low(&h, false));
	assert_false(hostports_low(&h, true)); /* 70 %: below the recovery mark */
	for (int i = 0; i < 7; i++)
		close(fds[i]);
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "32768 60999\n");
}

/*
 * The scan in slices of one datagram, as portd runs it, over more sockets
 * than one datagram holds: the same counts as in one go.
 */
static void test_scan_slices(void **state)
{
	enum { N = 900 };
	struct hostports_scan *s;
	struct hostports whole, sliced;
	struct rlimit rl;
	static int fds[N];
	int r, slices = 0;

	if (!have_netns)
		skip();
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < N + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < N + 64)
			skip();
	}
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "45000 45999\n");
	for (int i = 0; i < N; i++)
		fds[i] = sock_at(i % 2 ? AF_INET6 : AF_INET, i % 3 ? SOCK_DGRAM : SOCK_STREAM, true,
				 (uint16_t)(45000 + i), 0);
	assert_int_equal(hostports_scan(&whole, HOSTPORTS_OWNERS), 0);
	assert_int_equal(whole.in_use, N);
	assert_int_equal(whole.sockets, N);
	assert_int_equal(whole.tcp_bound, N / 3);
	assert_int_equal(whole.udp, N - N / 3);

	assert_int_equal(hostports_scan_begin(HOSTPORTS_OWNERS, &s), 0);
	while ((r = hostports_scan_step(s, 1)) == 1 && slices < 1000) {
		struct pollfd p = { .fd = hostports_scan_fd(s), .events = POLLIN };

		slices++;
		/* The kernel fills the next datagram as the last one is read: readable at once. */
		assert_int_equal(poll(&p, 1, 5000), 1);
	}
	assert_int_equal(r, 0);
	assert_true(slices >= 3); /* several datagrams, several slices */
	hostports_scan_result(s, &sliced);
	hostports_scan_free(s);
	assert_memory_equal(&whole, &sliced, sizeof(whole));
	assert_int_equal(sliced.nowners, 1);
	assert_int_equal(sliced.owners[0].ports, N);

	for (int i = 0; i < N; i++)
		close(fds[i]);
	write_sysctl(HOSTPORTS_RANGE_SYSCTL, "32768 60999\n");
}

/* The reserved list for people: the kernel's text, cut at a comma when long. */
static void test_reserved_list_long(void **state)
{
	char list[2048];
	size_t off = 0;
	struct hostports h;

	if (!have_netns)
		skip();
	for (int p = 50000; p < 50400; p += 2)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%d", off ? "," : "", p);
	write_sysctl(HOSTPORTS_RESERVED_SYSCTL, list);
	assert_int_equal(hostports_scan(&h, 0), 0);
	assert_int_equal(h.reserved, 200);
	assert_true(strlen(h.reserved_list) < sizeof(h.reserved_list));
	assert_int_equal(strncmp(h.reserved_list, "50000,50002,", 12), 0);
	assert_string_equal(h.reserved_list + strlen(h.reserved_list) - 4, ",...");
	write_sysctl(HOSTPORTS_RESERVED_SYSCTL, "\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_range),
		cmocka_unit_test(test_low_mark),
		cmocka_unit_test(test_scan_states),
		cmocka_unit_test(test_scan_low),
		cmocka_unit_test(test_scan_slices),
		cmocka_unit_test(test_reserved_list_long),
	};

	have_netns = enter_private_netns();
	if (!have_netns)
		fprintf(stderr, "# not root: the scans of the kernel's sockets are skipped\n");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
