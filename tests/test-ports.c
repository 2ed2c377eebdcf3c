/*
 * Unit tests for daemon/ports.c with a simulated kernel: a fake binder that
 * knows a set of busy ports, answers bind(0) from a scripted sequence, hands
 * out fake fds and records every bind and close. Time comes from a fake
 * clock; nothing sleeps, nothing touches the network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "ports.h"
#include "protocol.h"

#define MAX_FDS 4096
#define FD_BASE 100

struct fake_kernel {
	bool busy[2][65536];   /* [transport - 1]: bound by "another process" */
	uint16_t script[256];  /* bind(0) answers, in order */
	size_t nscript, pos;
	int fail;              /* next bind returns -fail (0: none) */
	int fail_after;        /* ... once this many binds have succeeded (-1: now) */

	int next_fd;
	bool open[MAX_FDS];
	uint16_t fd_port[MAX_FDS];
	int nopen;
	unsigned binds, closes;
	unsigned closes_at_bind[512]; /* closes seen when each bind ran */
	int closed[512];              /* fds, in close order */
};

static struct fake_kernel *k;
static uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	return *(const uint64_t *)ctx;
}

static const struct clock clk = { .now_ms = fake_clock, .ctx = &fake_now };

static int fake_bind(void *ctx, uint8_t transport, uint16_t port, int *fd, uint16_t *got)
{
	struct fake_kernel *fk = ctx;
	uint16_t p = port;

	assert_true(transport == PORTD_TCP || transport == PORTD_UDP);
	if (fk->binds < 512)
		fk->closes_at_bind[fk->binds] = fk->closes;
	fk->binds++;
	if (fk->fail && fk->fail_after-- <= 0)
		return -fk->fail;
	if (port == 0) {
		if (fk->pos >= fk->nscript)
			return -EAGAIN; /* the script ran out: a test bug */
		p = fk->script[fk->pos++];
	} else if (fk->busy[transport - 1][port]) {
		return -EADDRINUSE;
	}
	assert_true(fk->next_fd < MAX_FDS);
	*fd = fk->next_fd++;
	*got = p;
	fk->open[*fd] = true;
	fk->fd_port[*fd] = p;
	fk->nopen++;
	return 0;
}

static void fake_close(void *ctx, int fd)
{
	struct fake_kernel *fk = ctx;

	assert_true(fd >= FD_BASE && fd < MAX_FDS);
	assert_true(fk->open[fd]); /* no double close, no stray fd */
	fk->open[fd] = false;
	fk->nopen--;
	if (fk->closes < 512)
		fk->closed[fk->closes] = fd;
	fk->closes++;
}

static int setup(void **state)
{
	(void)state;
	k = test_calloc(1, sizeof(*k));
	k->next_fd = FD_BASE;
	k->fail_after = -1;
	fake_now = 1000000;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_free(k);
	k = NULL;
	return 0;
}

static struct port_source *src(uint16_t lo, uint16_t hi, uint32_t quarantine_ms)
{
	const struct ports_config cfg = { .lo = lo, .hi = hi, .quarantine_ms = quarantine_ms };
	const struct ports_binder b = { .bind = fake_bind, .close = fake_close, .ctx = k };
	struct port_source *ps = ports_new(&cfg, &clk, &b);

	assert_non_null(ps);
	return ps;
}

static void script(const uint16_t *ports, size_t n)
{
	memcpy(k->script + k->nscript, ports, n * sizeof(*ports));
	k->nscript += n;
}

/* Acquires and expects success on exactly `expect` (0: any); returns the port. */
static uint16_t take(struct port_source *ps, uint8_t transport, uint16_t want, uint16_t expect)
{
	int fd = -1;
	uint16_t port = 0;

	assert_int_equal(ports_acquire(ps, transport, want, &fd, &port), 0);
	assert_true(fd >= FD_BASE && k->open[fd]);
	assert_int_equal(k->fd_port[fd], port);
	if (expect)
		assert_int_equal(port, expect);
	return port;
}

static int fail_take(struct port_source *ps, uint8_t transport, uint16_t want)
{
	int fd = 12345;
	uint16_t port = 777;
	int r = ports_acquire(ps, transport, want, &fd, &port);

	assert_true(r < 0);
	assert_int_equal(fd, -1);
	return r;
}

/* ---- construction ---- */

static void test_new_invalid(void **state)
{
	const struct ports_binder b = { .bind = fake_bind, .close = fake_close, .ctx = k };
	const struct ports_binder nob = { .bind = NULL, .close = fake_close, .ctx = k };
	struct ports_config cfg = { .lo = 200, .hi = 100 };

	(void)state;
	errno = 0;
	assert_null(ports_new(&cfg, &clk, &b));
	assert_int_equal(errno, EINVAL);
	cfg = (struct ports_config){ .lo = 0, .hi = 100 };
	assert_null(ports_new(&cfg, &clk, &b));
	cfg = (struct ports_config){ .lo = 100, .hi = 0 };
	assert_null(ports_new(&cfg, &clk, &b));
	cfg = (struct ports_config){ .lo = 100, .hi = 100, .quarantine_ms = 5 };
	assert_null(ports_new(&cfg, &clk, &nob));
	struct port_source *ps = ports_new(&cfg, &clk, &b);
	assert_non_null(ps);
	assert_int_equal(ports_config(ps)->lo, 100);
	assert_int_equal(ports_config(ps)->hi, 100);
	assert_int_equal(ports_config(ps)->quarantine_ms, 5);
	ports_free(ps);
	ports_free(NULL);
}

static void test_bad_transport(void **state)
{
	struct port_source *ps = src(0, 0, 0);

	(void)state;
	assert_int_equal(fail_take(ps, 0, 0), -EINVAL);
	assert_int_equal(fail_take(ps, PORTD_BOTH, 0), -EINVAL);
	assert_int_equal(k->binds, 0);
	ports_free(ps);
}

/* ---- kernel mode ---- */

static void test_kernel_basic(void **state)
{
	struct port_source *ps = src(0, 0, 1000);

	(void)state;
	script((const uint16_t[]){ 40000, 40001 }, 2);
	take(ps, PORTD_TCP, 0, 40000);
	assert_int_equal(ports_held(ps), 1);
	assert_true(ports_blocked(ps, PORTD_TCP, 40000));
	assert_true(ports_blocked(ps, 0, 40000));
	assert_true(ports_blocked(ps, PORTD_BOTH, 40000));
	assert_false(ports_blocked(ps, PORTD_UDP, 40000));
	assert_false(ports_blocked(ps, PORTD_TCP, 40001));
	take(ps, PORTD_UDP, 0, 40001);
	assert_int_equal(ports_held(ps), 2);
	assert_int_equal(k->closes, 0);
	ports_free(ps);
}

static void test_kernel_rejects_held(void **state)
{
	struct port_source *ps = src(0, 0, 1000);
	int fd1;

	(void)state;
	script((const uint16_t[]){ 40000, 40000, 40000, 40005 }, 4);
	take(ps, PORTD_TCP, 0, 40000);
	fd1 = k->next_fd; /* the first rejected socket */
	take(ps, PORTD_TCP, 0, 40005);
	assert_int_equal(k->binds, 4);
	/* Both rejected sockets stayed open until the kernel answered with a free port. */
	assert_int_equal(k->closes_at_bind[2], 0);
	assert_int_equal(k->closes_at_bind[3], 0);
	assert_int_equal(k->closes, 2);
	assert_int_equal(k->closed[0], fd1);
	assert_int_equal(k->closed[1], fd1 + 1);
	assert_int_equal(k->nopen, 2);
	assert_int_equal(ports_held(ps), 2);

	/* TCP held does not block UDP of the same number. */
	script((const uint16_t[]){ 40000 }, 1);
	take(ps, PORTD_UDP, 0, 40000);
	assert_int_equal(k->closes, 2);
	assert_int_equal(ports_held(ps), 3);
	ports_free(ps);
}

static void test_kernel_rejects_quarantined(void **state)
{
	struct port_source *ps = src(0, 0, 1000);

	(void)state;
	script((const uint16_t[]){ 40000 }, 1);
	take(ps, PORTD_TCP, 0, 40000);
	ports_release(ps, PORTD_TCP, 40000);
	assert_int_equal(ports_held(ps), 0);
	/* Quarantine blocks the number for UDP too. */
	script((const uint16_t[]){ 40000, 40002 }, 2);
	take(ps, PORTD_UDP, 0, 40002);
	assert_int_equal(k->closes, 1);
	assert_int_equal(k->fd_port[k->closed[0]], 40000);
	ports_free(ps);
}

static void test_kernel_gives_up(void **state)
{
	struct port_source *ps = src(0, 0, 0);
	uint16_t same[200];

	(void)state;
	for (size_t i = 0; i < 200; i++)
		same[i] = 40000;
	script(same, 200);
	take(ps, PORTD_TCP, 0, 40000);
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	assert_int_equal(k->binds, 1 + PORTS_KERNEL_TRIES);
	assert_int_equal(k->closes, PORTS_KERNEL_TRIES);
	assert_int_equal(k->nopen, 1);
	assert_int_equal(ports_held(ps), 1);
	ports_free(ps);
}

static void test_kernel_binder_error(void **state)
{
	struct port_source *ps = src(0, 0, 0);

	(void)state;
	script((const uint16_t[]){ 40000, 40000, 40000 }, 3);
	take(ps, PORTD_TCP, 0, 40000);
	/* Two rejects, then EMFILE: passed through, rejects closed. */
	k->fail = EMFILE;
	k->fail_after = 2;
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EMFILE);
	assert_int_equal(k->binds, 4);
	assert_int_equal(k->closes, 2);
	assert_int_equal(k->nopen, 1);
	assert_int_equal(ports_held(ps), 1);
	ports_free(ps);
}

static void test_kernel_want(void **state)
{
	struct port_source *ps = src(0, 0, 1000);

	(void)state;
	take(ps, PORTD_TCP, 40000, 40000);
	assert_int_equal(k->binds, 1);
	/* Held: refused without asking the kernel. */
	assert_int_equal(fail_take(ps, PORTD_TCP, 40000), -EADDRINUSE);
	assert_int_equal(k->binds, 1);
	/* Other transport is fine. */
	take(ps, PORTD_UDP, 40000, 40000);
	/* Quarantined: refused for both transports. */
	ports_release(ps, PORTD_TCP, 40000);
	assert_int_equal(fail_take(ps, PORTD_TCP, 40000), -EADDRINUSE);
	assert_int_equal(k->binds, 2);
	/* Busy in the kernel: its EADDRINUSE passes through. */
	k->busy[0][40001] = true;
	assert_int_equal(fail_take(ps, PORTD_TCP, 40001), -EADDRINUSE);
	assert_int_equal(k->binds, 3);
	/* Other errors too. */
	k->fail = EACCES;
	assert_int_equal(fail_take(ps, PORTD_TCP, 80), -EACCES);
	assert_int_equal(ports_held(ps), 1);
	ports_free(ps);
}

/* ---- range mode ---- */

static void test_range_walk_and_exhaust(void **state)
{
	struct port_source *ps = src(30000, 30009, 0);

	(void)state;
	for (uint16_t p = 30000; p <= 30009; p++)
		take(ps, PORTD_TCP, 0, p);
	assert_int_equal(ports_held(ps), 10);
	/* Exhausted: held ports are skipped without asking the kernel. */
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	assert_int_equal(k->binds, 10);
	assert_int_equal(ports_held(ps), 10);
	assert_int_equal(k->nopen, 10);
	/* UDP of the same numbers is still free. */
	take(ps, PORTD_UDP, 0, 0);
	assert_int_equal(ports_held(ps), 11);
	ports_free(ps);
}

static void test_range_all_busy_takes_nothing(void **state)
{
	struct port_source *ps = src(30000, 30009, 0);

	(void)state;
	for (int p = 30000; p <= 30009; p++)
		k->busy[0][p] = true;
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	assert_int_equal(k->binds, 10); /* one full pass, no more */
	assert_int_equal(ports_held(ps), 0);
	assert_int_equal(k->nopen, 0);
	assert_int_equal(k->closes, 0);
	/* Once one frees up, it is found. */
	k->busy[0][30007] = false;
	take(ps, PORTD_TCP, 0, 30007);
	ports_free(ps);
}

static void test_range_skips_busy_and_held(void **state)
{
	struct port_source *ps = src(30000, 30009, 0);

	(void)state;
	k->busy[0][30001] = true;
	k->busy[0][30003] = true;
	take(ps, PORTD_TCP, 30002, 30002);
	take(ps, PORTD_TCP, 0, 30000);
	take(ps, PORTD_TCP, 0, 30004);
	assert_int_equal(k->binds, 5); /* 30002, 30000, 30001 (busy), 30003 (busy), 30004 */
	/* Busy for TCP does not mean busy for UDP. */
	take(ps, PORTD_UDP, 0, 30005);
	take(ps, PORTD_UDP, 0, 30006);
	ports_free(ps);
}

static void test_range_cursor_wraps(void **state)
{
	struct port_source *ps = src(30000, 30004, 0);

	(void)state;
	take(ps, PORTD_TCP, 0, 30000);
	take(ps, PORTD_TCP, 0, 30001);
	take(ps, PORTD_TCP, 0, 30002);
	ports_release(ps, PORTD_TCP, 30000);
	/* Successive leases spread: the freed port is not reused at once. */
	take(ps, PORTD_TCP, 0, 30003);
	take(ps, PORTD_TCP, 0, 30004);
	take(ps, PORTD_TCP, 0, 30000); /* wrapped */
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	/* The cursor is at 30001: a port below it is found by wrapping, */
	ports_release(ps, PORTD_TCP, 30000);
	take(ps, PORTD_TCP, 0, 30000);
	/* and one above it without. */
	ports_release(ps, PORTD_TCP, 30003);
	take(ps, PORTD_TCP, 0, 30003);
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	ports_free(ps);
}

static void test_range_want(void **state)
{
	struct port_source *ps = src(30000, 30009, 1000);

	(void)state;
	take(ps, PORTD_TCP, 30005, 30005);
	take(ps, PORTD_TCP, 30000, 30000);
	take(ps, PORTD_TCP, 30009, 30009);
	assert_int_equal(fail_take(ps, PORTD_TCP, 29999), -EINVAL);
	assert_int_equal(fail_take(ps, PORTD_TCP, 30010), -EINVAL);
	assert_int_equal(fail_take(ps, PORTD_TCP, 30005), -EADDRINUSE);
	assert_int_equal(k->binds, 3);
	k->busy[1][30006] = true;
	assert_int_equal(fail_take(ps, PORTD_UDP, 30006), -EADDRINUSE);
	ports_release(ps, PORTD_TCP, 30005);
	assert_int_equal(fail_take(ps, PORTD_UDP, 30005), -EADDRINUSE);
	assert_int_equal(k->binds, 4);
	ports_free(ps);
}

static void test_range_binder_error(void **state)
{
	struct port_source *ps = src(30000, 30009, 0);

	(void)state;
	take(ps, PORTD_TCP, 0, 30000);
	k->fail = EMFILE;
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EMFILE);
	assert_int_equal(k->binds, 2); /* returned at once, no walk */
	assert_int_equal(ports_held(ps), 1);
	/* The port that failed is tried first next time. */
	k->fail = 0;
	take(ps, PORTD_TCP, 0, 30001);
	ports_free(ps);
}

/* Word-level skipping: boundaries of 64-bit words and the top of the port space. */
static void test_range_bitmap_edges(void **state)
{
	struct port_source *ps = src(100, 300, 0);

	(void)state;
	for (uint16_t p = 100; p <= 300; p++)
		if (p != 191 && p != 192 && p != 256 && p != 300)
			take(ps, PORTD_TCP, p, p);
	take(ps, PORTD_TCP, 0, 191);
	take(ps, PORTD_TCP, 0, 192);
	take(ps, PORTD_TCP, 0, 256);
	take(ps, PORTD_TCP, 0, 300);
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	assert_int_equal(ports_held(ps), 201);
	ports_free(ps);

	ps = src(65530, 65535, 0);
	for (uint16_t p = 65530; p != 0; p++)
		take(ps, PORTD_TCP, 0, p);
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	ports_release(ps, PORTD_TCP, 65535);
	take(ps, PORTD_TCP, 0, 65535);
	ports_free(ps);

	/* A one-port range. */
	ps = src(5000, 5000, 0);
	take(ps, PORTD_UDP, 0, 5000);
	assert_int_equal(fail_take(ps, PORTD_UDP, 0), -EADDRNOTAVAIL);
	ports_free(ps);
}

static void test_range_skips_quarantined(void **state)
{
	struct port_source *ps = src(30000, 30002, 500);

	(void)state;
	take(ps, PORTD_TCP, 0, 30000);
	take(ps, PORTD_TCP, 0, 30001);
	take(ps, PORTD_TCP, 0, 30002);
	ports_release(ps, PORTD_TCP, 30001);
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	assert_int_equal(fail_take(ps, PORTD_UDP, 30001), -EADDRINUSE);
	take(ps, PORTD_UDP, 0, 30000); /* quarantine is per number; 30000 is not in it */
	fake_now += 500;
	take(ps, PORTD_TCP, 0, 30001);
	ports_free(ps);
}

/* ---- quarantine ---- */

static void test_quarantine_exact(void **state)
{
	struct port_source *ps = src(0, 0, 1000);
	uint64_t t0 = fake_now;

	(void)state;
	take(ps, PORTD_TCP, 40000, 40000);
	assert_int_equal(ports_quarantined(ps), 0);
	ports_release(ps, PORTD_TCP, 40000);
	assert_int_equal(ports_held(ps), 0);
	assert_int_equal(ports_quarantined(ps), 1);
	fake_now = t0 + 999;
	assert_true(ports_blocked(ps, PORTD_TCP, 40000));
	assert_true(ports_blocked(ps, PORTD_UDP, 40000));
	assert_int_equal(fail_take(ps, PORTD_TCP, 40000), -EADDRINUSE);
	assert_int_equal(ports_quarantined(ps), 1);
	fake_now = t0 + 1000;
	assert_false(ports_blocked(ps, PORTD_TCP, 40000));
	assert_false(ports_blocked(ps, 0, 40000));
	assert_int_equal(ports_quarantined(ps), 0);
	take(ps, PORTD_TCP, 40000, 40000);
	ports_free(ps);
}

static void test_quarantine_fifo(void **state)
{
	struct port_source *ps = src(0, 0, 1000);
	uint64_t t0 = fake_now;

	(void)state;
	take(ps, PORTD_TCP, 40003, 40003);
	take(ps, PORTD_TCP, 40001, 40001);
	take(ps, PORTD_UDP, 40002, 40002);
	ports_release(ps, PORTD_TCP, 40003);
	fake_now = t0 + 100;
	ports_release(ps, PORTD_TCP, 40001);
	fake_now = t0 + 200;
	ports_release(ps, PORTD_UDP, 40002);
	assert_int_equal(ports_quarantined(ps), 3);

	fake_now = t0 + 1000;
	assert_false(ports_blocked(ps, 0, 40003));
	assert_true(ports_blocked(ps, 0, 40001));
	assert_true(ports_blocked(ps, 0, 40002));
	assert_int_equal(ports_quarantined(ps), 2);
	fake_now = t0 + 1100;
	assert_false(ports_blocked(ps, 0, 40001));
	assert_true(ports_blocked(ps, 0, 40002));
	assert_int_equal(ports_quarantined(ps), 1);
	fake_now = t0 + 1200;
	assert_false(ports_blocked(ps, 0, 40002));
	assert_int_equal(ports_quarantined(ps), 0);
	ports_free(ps);
}

static void test_quarantine_rerelease(void **state)
{
	struct port_source *ps = src(0, 0, 1000);
	uint64_t t0 = fake_now;

	(void)state;
	/* TCP and UDP of one number, held by two different leases. */
	take(ps, PORTD_TCP, 40000, 40000);
	take(ps, PORTD_UDP, 40000, 40000);
	take(ps, PORTD_TCP, 40001, 40001);
	ports_release(ps, PORTD_TCP, 40000);
	fake_now = t0 + 300;
	ports_release(ps, PORTD_TCP, 40001);
	fake_now = t0 + 500;
	ports_release(ps, PORTD_UDP, 40000); /* already quarantined: refreshed */
	assert_int_equal(ports_quarantined(ps), 2); /* distinct numbers */
	assert_int_equal(ports_held(ps), 0);

	/* The older entry expiring does not free the port early. */
	fake_now = t0 + 1000;
	assert_true(ports_blocked(ps, PORTD_TCP, 40000));
	assert_int_equal(ports_quarantined(ps), 2);
	/* FIFO order of other ports is unaffected. */
	fake_now = t0 + 1300;
	assert_false(ports_blocked(ps, 0, 40001));
	assert_true(ports_blocked(ps, 0, 40000));
	assert_int_equal(ports_quarantined(ps), 1);
	fake_now = t0 + 1499;
	assert_true(ports_blocked(ps, PORTD_UDP, 40000));
	fake_now = t0 + 1500;
	assert_false(ports_blocked(ps, PORTD_UDP, 40000));
	assert_int_equal(ports_quarantined(ps), 0);

	/* Both at once (a PORTD_BOTH lease): one port quarantined, freed on time. */
	take(ps, PORTD_TCP, 40000, 40000);
	take(ps, PORTD_UDP, 40000, 40000);
	ports_release(ps, PORTD_TCP, 40000);
	ports_release(ps, PORTD_UDP, 40000);
	assert_int_equal(ports_quarantined(ps), 1);
	fake_now += 999;
	assert_true(ports_blocked(ps, 0, 40000));
	fake_now += 1;
	assert_false(ports_blocked(ps, 0, 40000));
	assert_int_equal(ports_quarantined(ps), 0);
	ports_free(ps);
}

static void test_release_not_held(void **state)
{
	struct port_source *ps = src(0, 0, 1000);

	(void)state;
	take(ps, PORTD_TCP, 40000, 40000);
	ports_release(ps, PORTD_UDP, 40000); /* not held for UDP */
	ports_release(ps, PORTD_TCP, 40001); /* not held at all */
	ports_release(ps, 0, 40000);         /* invalid transport */
	assert_int_equal(ports_held(ps), 1);
	assert_int_equal(ports_quarantined(ps), 0);
	ports_release(ps, PORTD_TCP, 40000);
	ports_release(ps, PORTD_TCP, 40000); /* twice */
	assert_int_equal(ports_held(ps), 0);
	assert_int_equal(ports_quarantined(ps), 1);
	ports_free(ps);
}

static void test_quarantine_zero(void **state)
{
	struct port_source *ps = src(0, 0, 0);

	(void)state;
	take(ps, PORTD_TCP, 40000, 40000);
	ports_release(ps, PORTD_TCP, 40000);
	assert_int_equal(ports_quarantined(ps), 0);
	assert_false(ports_blocked(ps, 0, 40000));
	take(ps, PORTD_TCP, 40000, 40000);
	ports_free(ps);
}

/* Many ports through quarantine: the ring grows and wraps, and stays consistent. */
static void test_quarantine_ring_wraps(void **state)
{
	struct port_source *ps = src(0, 0, 100);

	(void)state;
	for (int round = 0; round < 5; round++) {
		for (uint16_t i = 0; i < 300; i++) {
			uint16_t p = (uint16_t)(20000 + (round % 2) * 1000 + i);

			take(ps, PORTD_TCP, p, p);
			ports_release(ps, PORTD_TCP, p);
			if (i % 3 == 2)
				fake_now++; /* i released at T + i / 3; now ends at T + 100 */
		}
		/* Released at T (i = 0..2) are up; the other 297 are not. */
		assert_int_equal(ports_quarantined(ps), 297);
		fake_now += 98;
		/* Released at T + 98 or earlier (i <= 296) are up. */
		assert_int_equal(ports_quarantined(ps), 3);
		assert_true(ports_blocked(ps, 0, (uint16_t)(20000 + (round % 2) * 1000 + 297)));
		assert_false(ports_blocked(ps, 0, (uint16_t)(20000 + (round % 2) * 1000 + 296)));
		fake_now += 1;
		assert_int_equal(ports_quarantined(ps), 0);
	}
	assert_int_equal(ports_held(ps), 0);
	ports_free(ps);
}

/* ---- held counts ---- */

static void test_held_counts(void **state)
{
	struct port_source *ps = src(30000, 30009, 1000);

	(void)state;
	take(ps, PORTD_TCP, 30003, 30003);
	assert_false(ports_blocked(ps, PORTD_UDP, 30003));
	take(ps, PORTD_UDP, 30003, 30003);
	assert_int_equal(ports_held(ps), 2);
	ports_release(ps, PORTD_TCP, 30003);
	assert_int_equal(ports_held(ps), 1);
	/* Held for UDP still, and quarantined (which blocks TCP too). */
	assert_true(ports_blocked(ps, PORTD_UDP, 30003));
	assert_true(ports_blocked(ps, PORTD_TCP, 30003));
	ports_release(ps, PORTD_UDP, 30003);
	assert_int_equal(ports_held(ps), 0);
	ports_free(ps);
}

static void test_mark_held(void **state)
{
	struct port_source *ps = src(30000, 30002, 1000);

	(void)state;
	assert_int_equal(ports_mark_held(ps, PORTD_TCP, 30001), 0);
	assert_int_equal(ports_mark_held(ps, PORTD_TCP, 30001), -EADDRINUSE);
	assert_int_equal(ports_mark_held(ps, PORTD_BOTH, 30001), -EINVAL);
	assert_int_equal(ports_mark_held(ps, PORTD_TCP, 0), -EINVAL);
	assert_int_equal(ports_mark_held(ps, PORTD_UDP, 9999), 0); /* outside the range */
	assert_int_equal(ports_held(ps), 2);
	assert_int_equal(k->binds, 0);
	assert_int_equal(fail_take(ps, PORTD_TCP, 30001), -EADDRINUSE);
	take(ps, PORTD_TCP, 0, 30000);
	take(ps, PORTD_TCP, 0, 30002); /* 30001 skipped */
	ports_release(ps, PORTD_TCP, 30001);
	assert_int_equal(ports_quarantined(ps), 1);
	assert_int_equal(ports_mark_held(ps, PORTD_UDP, 30001), -EADDRINUSE);
	ports_release(ps, PORTD_UDP, 9999);
	assert_int_equal(ports_held(ps), 2);
	ports_free(ps);
}

/* Skips ports in [lo, hi]. */
static bool skip_range(void *ctx, uint16_t port)
{
	const uint16_t *r = ctx;
	return port >= r[0] && port <= r[1];
}

static void test_filter_kernel(void **state)
{
	struct port_source *ps = src(0, 0, 1000);
	uint16_t r[2] = { 40000, 40009 };
	const struct ports_filter f = { skip_range, r };
	uint16_t port = 0;
	int fd = -1;

	(void)state;
	/* Skipped ports are rejected like blocked ones: kept open while asking again, then closed. */
	script((const uint16_t[]){ 40003, 40009, 40010 }, 3);
	assert_int_equal(ports_acquire_filtered(ps, PORTD_TCP, 0, &f, &fd, &port), 0);
	assert_int_equal(port, 40010);
	assert_int_equal(k->closes_at_bind[2], 0);
	assert_int_equal(k->closes, 2);
	assert_int_equal(ports_held(ps), 1);
	/* An exact port the filter skips is busy, without asking the kernel. */
	assert_int_equal(ports_acquire_filtered(ps, PORTD_TCP, 40005, &f, &fd, &port), -EADDRINUSE);
	assert_int_equal(k->binds, 3);
	ports_free(ps);
}

static void test_filter_range(void **state)
{
	struct port_source *ps = src(30000, 30009, 0);
	uint16_t r[2] = { 30000, 30007 };
	const struct ports_filter f = { skip_range, r };
	uint16_t port = 0;
	int fd = -1;

	(void)state;
	assert_int_equal(ports_acquire_filtered(ps, PORTD_TCP, 0, &f, &fd, &port), 0);
	assert_int_equal(port, 30008);
	assert_int_equal(ports_acquire_filtered(ps, PORTD_TCP, 0, &f, &fd, &port), 0);
	assert_int_equal(port, 30009);
	/* Everything else is filtered: exhausted, and the kernel was asked only twice. */
	assert_int_equal(ports_acquire_filtered(ps, PORTD_TCP, 0, &f, &fd, &port), -EADDRNOTAVAIL);
	assert_int_equal(k->binds, 2);
	/* Without the filter the rest of the range is there. */
	take(ps, PORTD_TCP, 0, 30000);
	ports_free(ps);
}

static void test_cancel_no_quarantine(void **state)
{
	struct port_source *ps = src(30000, 30001, 60000);

	(void)state;
	take(ps, PORTD_TCP, 0, 30000);
	take(ps, PORTD_TCP, 0, 30001);
	ports_cancel(ps, PORTD_TCP, 30000);
	assert_int_equal(ports_held(ps), 1);
	assert_int_equal(ports_quarantined(ps), 0);
	assert_false(ports_blocked(ps, PORTD_TCP, 30000));
	/* Released, by contrast, is quarantined. */
	ports_release(ps, PORTD_TCP, 30001);
	assert_true(ports_blocked(ps, PORTD_TCP, 30001));
	take(ps, PORTD_TCP, 0, 30000);
	/* Cancelling a pair that is not held changes nothing. */
	ports_cancel(ps, PORTD_UDP, 30000);
	assert_int_equal(ports_held(ps), 1);
	ports_free(ps);
}

/* Kernel mode at scale: past explicit_after held ports, portd walks the ephemeral range itself. */
static void test_kernel_explicit_after(void **state)
{
	const struct ports_config cfg = { .quarantine_ms = 0, .explicit_after = 2,
					  .eph_lo = 50000, .eph_hi = 50003 };
	const struct ports_binder b = { .bind = fake_bind, .close = fake_close, .ctx = k };
	struct port_source *ps = ports_new(&cfg, &clk, &b);

	(void)state;
	assert_non_null(ps);
	script((const uint16_t[]){ 50000, 50003 }, 2);
	take(ps, PORTD_TCP, 0, 50000); /* bind(0) */
	take(ps, PORTD_TCP, 0, 50003); /* bind(0) */
	assert_int_equal(k->nscript, k->pos);
	/* Two held: no more bind(0) (the script is empty); explicit, skipping held and busy ports. */
	k->busy[PORTD_TCP - 1][50001] = true;
	take(ps, PORTD_TCP, 0, 50002);
	assert_int_equal(fail_take(ps, PORTD_TCP, 0), -EADDRNOTAVAIL);
	/* Below the threshold again, the kernel chooses again. */
	ports_release(ps, PORTD_TCP, 50000);
	ports_release(ps, PORTD_TCP, 50002);
	script((const uint16_t[]){ 50001 }, 1);
	k->busy[PORTD_TCP - 1][50001] = false;
	take(ps, PORTD_TCP, 0, 50001);
	assert_int_equal(k->nscript, k->pos);
	ports_free(ps);

	/* explicit_after needs a valid ephemeral range. */
	const struct ports_config bad = { .explicit_after = 2, .eph_lo = 0, .eph_hi = 0 };
	assert_null(ports_new(&bad, &clk, &b));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_new_invalid),
		T(test_bad_transport),
		T(test_kernel_basic),
		T(test_kernel_rejects_held),
		T(test_kernel_rejects_quarantined),
		T(test_kernel_gives_up),
		T(test_kernel_binder_error),
		T(test_kernel_want),
		T(test_range_walk_and_exhaust),
		T(test_range_all_busy_takes_nothing),
		T(test_range_skips_busy_and_held),
		T(test_range_cursor_wraps),
		T(test_range_want),
		T(test_range_binder_error),
		T(test_range_bitmap_edges),
		T(test_range_skips_quarantined),
		T(test_quarantine_exact),
		T(test_quarantine_fifo),
		T(test_quarantine_rerelease),
		T(test_release_not_held),
		T(test_quarantine_zero),
		T(test_quarantine_ring_wraps),
		T(test_held_counts),
		T(test_mark_held),
		T(test_filter_kernel),
		T(test_filter_range),
		T(test_cancel_no_quarantine),
		T(test_kernel_explicit_after),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
