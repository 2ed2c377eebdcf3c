/*
 * libFuzzer target: portpicker's protocol (daemon/portserver.c).
 *
 * First the pure line parser, portserver_parse_line(), against a reference
 * written separately, on every prefix of the input. Then the real code: each
 * input builds a service (a managed range of real ports, an injected clock
 * that stands still) and a portserver listening on an abstract socket, and
 * plays a script of connections made by two helper processes (one root, one
 * nobody, so SO_PEERCRED says who asks), writes split as the script says,
 * turns of the event loop, half-closes and closes.
 *
 * Input: one configuration byte C, range size 1/4/16/64 (C & 3), max leases
 * 1/4/64/1000 (C >> 2 & 3), one lease per uid (C & 0x10); then records, an
 * op byte o and its arguments, slot = (o >> 3) & 7:
 *
 *   o & 7 = 0  CONNECT: a new connection in the slot, from helper (o >> 6) & 1
 *           1  WRITE: length byte L (& 63), L bytes; in them '@' and '$'
 *              become the pids of helper 0 and 1, '%' the id of a thread of
 *              helper 0 that is not its leader, '#' portd's own pid
 *           2  LOOP: one turn of the event loop
 *           3  SHUT: the slot's connection stops writing (end of stream)
 *           4  CLOSE: the slot's connection goes away
 *           5  BURST: byte N: 2N + 1 more connections that never write
 *           6  KILL: helper (o >> 3) & 1 is killed and started again (4 at most)
 *           7  READ: what the daemon answered on the slot, if anything
 *
 * Checked: an answer is "PORT\n" with a port of the range that is held, and
 * only ever comes to a connection whose first bytes (as the daemon could
 * have read them at a turn of the loop) are one pid line naming a process
 * that may be leased to: above 1, alive, a process and not a thread of one,
 * not a kernel thread, not portd, of the caller's uid unless the caller is
 * root. At the end every connection
 * must have been counted once (granted, refused, malformed, timed out or
 * overload), and the fds held must be those from before the input plus the
 * live leases' sockets and pidfds; after freeing, exactly those from before.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "fuzz-util.h"
#include "netns.h"
#include "hold.h"
#include "log.h"
#include "portserver.h"
#include "service.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RANGE_LO 61000
#define NSLOTS 8
#define WRITTEN_MAX 64
#define SNAPS_MAX 16
#define BURST_MAX 1024
#define LOOP_TURNS 64
#define KILLS_MAX 4    /* helpers killed per input, at most: each costs a fork */
#define PF_KTHREAD 0x00200000u /* /proc/PID/stat field 9 */

struct slot {
	int fd;                        /* -1: none */
	uint32_t uid;                  /* the caller */
	bool shut;
	char written[WRITTEN_MAX];
	size_t len;                    /* bytes written (kept up to WRITTEN_MAX) */
	size_t snaps[SNAPS_MAX];       /* len at each turn of the loop: what the daemon may have read */
	size_t nsnaps;
	char reply[16];
	size_t rlen;
	bool replied;                  /* a whole reply was read and checked */
};

static struct event_base *base;
static struct fuzz_helper helpers[2];
static pid_t helper_pids[64]; /* every helper of this input, with its uid */
static uint32_t helper_uids[64];
static size_t nhelper_pids;
static struct slot slots[NSLOTS];
static int burst[BURST_MAX];
static size_t nburst;
static uint64_t connections;
static struct service *svc;
static struct portserver *ps;
static struct service_config cfg;
static char address[64];

static uint64_t fixed_now(void *ctx) { return 1000000; }

static void loop_once(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
	for (size_t i = 0; i < NSLOTS; i++) {
		struct slot *sl = &slots[i];
		if (sl->fd >= 0 && sl->nsnaps < SNAPS_MAX &&
		    (!sl->nsnaps || sl->snaps[sl->nsnaps - 1] != sl->len))
			sl->snaps[sl->nsnaps++] = sl->len;
	}
}

/* ---- the line, by a second reading of the rules ---- */

static enum portserver_line ref_parse(const char *b, size_t len, pid_t *pid)
{
	const char *nl = memchr(b, '\n', len);
	size_t digits = nl ? (size_t)(nl - b) : len, first = 0;
	char num[PORTSERVER_LINE_MAX + 1];

	for (size_t i = 0; i < digits; i++)
		if (b[i] < '0' || b[i] > '9')
			return PORTSERVER_LINE_BAD;
	while (first < digits && b[first] == '0')
		first++;
	/* INT_MAX has 10 digits: more significant digits are too many, whatever follows. */
	if (digits - first > 10)
		return PORTSERVER_LINE_BAD;
	memcpy(num, b + first, digits - first);
	num[digits - first] = '\0';
	if (strtoull(num, NULL, 10) > 2147483647ull)
		return PORTSERVER_LINE_BAD;
	if (!nl)
		return len < PORTSERVER_LINE_MAX ? PORTSERVER_LINE_MORE : PORTSERVER_LINE_BAD;
	if (digits == 0 || digits + 1 != len)
		return PORTSERVER_LINE_BAD;
	*pid = (pid_t)strtoull(num, NULL, 10);
	return PORTSERVER_LINE_PID;
}

static void check_parser(const uint8_t *data, size_t size)
{
	for (size_t n = 0; n <= size && n <= PORTSERVER_LINE_MAX; n++) {
		pid_t a = -1, b = -1;
		enum portserver_line la = portserver_parse_line((const char *)data, n, &a);
		enum portserver_line lb = ref_parse((const char *)data, n, &b);

		FUZZ_CHECK(la == lb);
		FUZZ_CHECK(la != PORTSERVER_LINE_PID || (a == b && a >= 0));
	}
}

/* ---- may a lease be tied to pid for uid? ---- */

static bool pid_may_lease(pid_t pid, uint32_t caller)
{
	char path[64], buf[1024], *p;
	unsigned flags = 0;
	uint32_t uid = UINT32_MAX;
	int tgid = -1;
	FILE *f;

	if (pid <= 1 || pid == getpid())
		return false;
	for (size_t i = 0; i < nhelper_pids; i++)
		if (helper_pids[i] == pid)
			return caller == 0 || helper_uids[i] == caller;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return false; /* no such process */
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %u", &flags) != 1 || (flags & PF_KTHREAD))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "re")))
		return false;
	while (fgets(buf, sizeof(buf), f)) {
		sscanf(buf, "Tgid: %d", &tgid);
		sscanf(buf, "Uid: %u", &uid);
	}
	fclose(f);
	/* /proc/TID exists for every thread, but only a leader's id names a process. */
	return tgid == pid && (caller == 0 || uid == caller);
}

static bool helper_alive(pid_t pid)
{
	return pid > 0 && (pid == helpers[0].pid || pid == helpers[1].pid);
}

/* A TCP port portd holds: no socket without SO_REUSEADDR can bind it. */
static bool port_held(uint16_t port)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), zero = 0, r;
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT };

	FUZZ_CHECK(fd >= 0);
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return r < 0 && errno == EADDRINUSE;
}

/* A whole answer arrived on sl: it must be a port of the range, for a pid that may have one. */
static void check_answer(struct slot *sl)
{
	unsigned port = 0;
	pid_t pid = -1;
	bool line = false;
	int n = 0;

	FUZZ_CHECK(sl->rlen >= 2 && sl->reply[sl->rlen - 1] == '\n' && sl->reply[0] != '0');
	sl->reply[sl->rlen] = '\0';
	FUZZ_CHECK(sscanf(sl->reply, "%5u\n%n", &port, &n) == 1 && (size_t)n == sl->rlen);
	FUZZ_CHECK(port >= cfg.ports.lo && port <= cfg.ports.hi);
	/* At most one prefix that the daemon read at a turn of the loop is a pid line. */
	for (size_t i = 0; i < sl->nsnaps && !line; i++) {
		size_t k = sl->snaps[i] < PORTSERVER_LINE_MAX ? sl->snaps[i] : PORTSERVER_LINE_MAX;
		line = ref_parse(sl->written, k, &pid) == PORTSERVER_LINE_PID;
	}
	if (!line)
		fprintf(stderr, "answer %u to a connection that sent no pid line\n", port);
	FUZZ_CHECK(line);
	if (!pid_may_lease(pid, sl->uid))
		fprintf(stderr, "port %u for pid %d, asked by uid %u\n", port, (int)pid, sl->uid);
	FUZZ_CHECK(pid_may_lease(pid, sl->uid));
	if (helper_alive(pid))
		FUZZ_CHECK(port_held((uint16_t)port));
	sl->replied = true;
}

static void slot_read(struct slot *sl)
{
	while (sl->fd >= 0 && !sl->replied) {
		ssize_t n = recv(sl->fd, sl->reply + sl->rlen, sizeof(sl->reply) - 1 - sl->rlen, MSG_DONTWAIT);

		if (n <= 0) {
			/* Closed (or reset) with no answer, or with a part of one: the part must not exist. */
			FUZZ_CHECK(n < 0 ? errno == EAGAIN || errno == ECONNRESET : sl->rlen == 0);
			return;
		}
		sl->rlen += (size_t)n;
		FUZZ_CHECK(sl->rlen < sizeof(sl->reply) - 1);
		if (sl->reply[sl->rlen - 1] == '\n')
			check_answer(sl);
	}
}

static void slot_close(struct slot *sl)
{
	if (sl->fd < 0)
		return;
	close(sl->fd);
	sl->fd = -1;
}

static void slot_connect(struct slot *sl, struct fuzz_helper *h)
{
	int fd;

	slot_close(sl);
	fd = fuzz_helper_connect(h, address + 1);
	if (fd < 0)
		return;
	connections++;
	fuzz_set_nonblock(fd, true);
	memset(sl, 0, sizeof(*sl));
	sl->fd = fd;
	sl->uid = h->uid;
}

static void slot_write(struct slot *sl, const uint8_t *p, size_t len)
{
	char out[WRITTEN_MAX * 8];
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		pid_t pid = p[i] == '@' ? helpers[0].pid : p[i] == '$' ? helpers[1].pid :
			    p[i] == '%' ? helpers[0].tid : p[i] == '#' ? getpid() : 0;

		if (pid)
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%d", (int)pid);
		else
			out[n++] = (char)p[i];
	}
	if (sl->fd < 0 || sl->shut || !n)
		return;
	ssize_t w = send(sl->fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w <= 0)
		return;
	for (ssize_t i = 0; i < w && sl->len < WRITTEN_MAX; i++)
		sl->written[sl->len++] = out[i];
}

static void burst_open(size_t n)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(address);

	memcpy(sun.sun_path + 1, address + 1, len - 1);
	for (size_t i = 0; i < n && nburst < BURST_MAX; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		FUZZ_CHECK(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sun, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
			close(fd);
			return;
		}
		connections++;
		burst[nburst++] = fd;
		if (i % 64 == 63)
			loop_once(); /* accept */
	}
}

static void helper_restart(int i)
{
	fuzz_helper_restart(&helpers[i], i == 1);
	if (nhelper_pids < sizeof(helper_pids) / sizeof(helper_pids[0])) {
		helper_pids[nhelper_pids] = helpers[i].pid;
		helper_uids[nhelper_pids++] = helpers[i].uid;
	}
}

/* ---- the script ---- */

static void run(const uint8_t *p, size_t left)
{
	unsigned kills = 0;

	while (left--) {
		uint8_t o = *p++;
		struct slot *sl = &slots[(o >> 3) & 7];
		size_t n;

		switch (o & 7) {
		case 0:
			slot_connect(sl, &helpers[(o >> 6) & 1]);
			break;
		case 1:
			if (!left)
				return;
			n = *p++ & 63;
			left--;
			if (n > left)
				n = left;
			slot_write(sl, p, n);
			p += n;
			left -= n;
			break;
		case 2:
			loop_once();
			break;
		case 3:
			if (sl->fd >= 0 && !sl->shut) {
				shutdown(sl->fd, SHUT_WR);
				sl->shut = true;
			}
			break;
		case 4:
			slot_close(sl);
			break;
		case 5:
			if (!left)
				return;
			burst_open(2 * (size_t)*p++ + 1);
			left--;
			break;
		case 6:
			if (kills >= KILLS_MAX)
				break;
			kills++;
			helper_restart((o >> 3) & 1);
			loop_once();
			break;
		case 7:
			slot_read(sl);
			break;
		}
	}
}

static void configure(uint8_t c)
{
	static const uint16_t sizes[] = { 1, 4, 16, 64 };
	static const uint32_t leases[] = { 1, 4, 64, 1000 };

	memset(&cfg, 0, sizeof(cfg));
	cfg.ports.lo = RANGE_LO;
	cfg.ports.hi = (uint16_t)(RANGE_LO + sizes[c & 3] - 1);
	cfg.ports.quarantine_ms = 60000;
	cfg.limits.max_leases = leases[(c >> 2) & 3];
	cfg.limits.max_per_uid = (c & 0x10) ? 1 : cfg.limits.max_leases;
	cfg.limits.default_ttl_s = 60;
	cfg.limits.max_ttl_s = 3600;
}

static void start(uint8_t c)
{
	static const struct clock clk = { fixed_now, NULL };
	static const struct ports_binder binder = { hold_bind, hold_close, NULL };
	int fd;

	configure(c);
	svc = service_new(base, &cfg, &clk, &binder);
	FUZZ_CHECK(svc != NULL);
	fd = portserver_listen(address, 0600, (gid_t)-1);
	FUZZ_CHECK(fd >= 0);
	ps = portserver_new(base, svc, fd, NULL);
	FUZZ_CHECK(ps != NULL);
	memset(slots, 0, sizeof(slots));
	for (size_t i = 0; i < NSLOTS; i++)
		slots[i].fd = -1;
	nburst = 0;
	connections = 0;
	nhelper_pids = 0;
	for (int i = 0; i < 2; i++) {
		helper_pids[nhelper_pids] = helpers[i].pid;
		helper_uids[nhelper_pids++] = helpers[i].uid;
	}
}

static void stats_sum(uint64_t *sum, uint64_t *granted)
{
	struct portserver_stats st;

	portserver_stats(ps, &st);
	*sum = st.granted + st.refused + st.malformed + st.timeouts + st.overload;
	*granted = st.granted;
}

/* The harness itself: one pid line of a live helper is answered, pid 1's is not. */
static void self_test(void)
{
	struct slot *sl = &slots[0];
	char line[32];

	start(0x0f); /* 64 ports, 1000 leases */
	slot_connect(sl, &helpers[0]);
	snprintf(line, sizeof(line), "%d\n", (int)helpers[0].pid);
	slot_write(sl, (const uint8_t *)line, strlen(line));
	for (int i = 0; i < LOOP_TURNS && !sl->replied; i++) {
		loop_once();
		slot_read(sl);
	}
	if (!sl->replied) {
		fprintf(stderr, "fuzz-portserver: a live helper's pid got no port: the harness is broken\n");
		abort();
	}
	slot_connect(sl, &helpers[0]);
	slot_write(sl, (const uint8_t *)"1\n", 2);
	for (int i = 0; i < 4; i++) {
		loop_once();
		slot_read(sl);
	}
	FUZZ_CHECK(!sl->replied && service_lease_count(svc) == 1);
	slot_close(sl);
	loop_once();
	portserver_free(ps);
	service_free(svc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	signal(SIGPIPE, SIG_IGN);
	/* The daemon's warnings (overload, ...) would bury libFuzzer's output; PORTD_FUZZ_DEBUG=1 shows everything. */
	log_set_level(getenv("PORTD_FUZZ_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	if (!enter_private_netns())
		fprintf(stderr, "fuzz-portserver: not root: no private network namespace, one uid only\n");
	snprintf(address, sizeof(address), "@portd-fuzz-portserver-%d", (int)getpid());
	base = event_base_new();
	FUZZ_CHECK(base != NULL);
	fuzz_helper_restart(&helpers[0], false);
	fuzz_helper_restart(&helpers[1], true);
	self_test();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_fds before, after;
	uint64_t sum = 0, granted = 0;
	int *held;
	size_t nheld;

	if (size < 1)
		return 0;
	check_parser(data + 1, size - 1);
	fuzz_count_fds(&before);
	start(data[0]);

	run(data + 1, size - 1);

	loop_once();
	for (size_t i = 0; i < NSLOTS; i++) {
		slot_read(&slots[i]);
		slot_close(&slots[i]);
	}
	for (size_t i = 0; i < nburst; i++)
		close(burst[i]);
	/* Every connection ends, and is counted once. */
	for (int i = 0; i < LOOP_TURNS && sum < connections; i++) {
		loop_once();
		stats_sum(&sum, &granted);
	}
	stats_sum(&sum, &granted);
	if (sum != connections)
		fprintf(stderr, "%llu connections, %llu counted\n", (unsigned long long)connections,
			(unsigned long long)sum);
	FUZZ_CHECK(sum == connections);
	FUZZ_CHECK(service_lease_count(svc) <= granted);

	fuzz_count_fds(&after);
	FUZZ_CHECK(service_held_fds(svc, &held, &nheld) == 0);
	free(held);
	/* Besides the listening socket: the live leases' sockets and their processes' pidfds. */
	FUZZ_CHECK(after.total - after.pidfds == before.total - before.pidfds + 1 + (int)nheld);
	FUZZ_CHECK(after.pidfds - before.pidfds <= (int)service_lease_count(svc));

	portserver_free(ps);
	service_free(svc);
	ps = NULL;
	svc = NULL;
	fuzz_count_fds(&after);
	FUZZ_CHECK(after.total == before.total && after.pidfds == before.pidfds);
	return 0;
}
