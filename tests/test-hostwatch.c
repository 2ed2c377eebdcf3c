/*
 * daemon/hostwatch.c against a scripted scanner: the periodic scan and its
 * time limit. The scanner here stands in for proto/hostports.c; a scan's
 * socket is a pipe that this test makes readable, or never does (a kernel
 * dump that never ends).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include <setjmp.h>
#include <cmocka.h>

#include "hostports.h"
#include "hostwatch.h"
#include "log.h"
#include "service.h"

/* ---- the scripted scanner ---- */

struct hostports_scan {
	int rd, wr; /* readable when the test writes to wr */
	unsigned n; /* which scan this is, from 1 */
};

static struct {
	unsigned begun, freed, stepped;
	bool finish;           /* scans whose pipe becomes readable complete */
	struct hostports_scan *live;
	unsigned set_ok, set_failed;
	uint32_t last_in_use;
	char warned[512];
	unsigned warnings;
} fx;

int hostports_scan(struct hostports *out, unsigned flags)
{
	memset(out, 0, sizeof(*out));
	out->lo = 32768;
	out->hi = 60999;
	out->size = out->usable = 28232;
	out->in_use = 7;
	return 0;
}

int hostports_scan_begin(unsigned flags, struct hostports_scan **out)
{
	struct hostports_scan *s = calloc(1, sizeof(*s));
	int p[2];

	if (!s || pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(s);
		return -ENOMEM;
	}
	s->rd = p[0];
	s->wr = p[1];
	s->n = ++fx.begun;
	fx.live = s;
	if (fx.finish)
		assert_int_equal(write(s->wr, "x", 1), 1);
	*out = s;
	return 0;
}

int hostports_scan_fd(const struct hostports_scan *s) { return s->rd; }

int hostports_scan_step(struct hostports_scan *s, int max_reads)
{
	char c;

	fx.stepped++;
	return read(s->rd, &c, 1) == 1 ? 0 : 1;
}

void hostports_scan_result(struct hostports_scan *s, struct hostports *out)
{
	hostports_scan(out, 0);
	out->in_use = 100 + s->n;
}

void hostports_scan_free(struct hostports_scan *s)
{
	if (!s)
		return;
	close(s->rd);
	close(s->wr);
	if (fx.live == s)
		fx.live = NULL;
	fx.freed++;
	free(s);
}

bool hostports_low(const struct hostports *h, bool was_low) { return false; }
unsigned hostports_percent(const struct hostports *h) { return 0; }

/* ---- what hostwatch tells the rest of the daemon ---- */

void service_set_host(struct service *s, const struct service_host *h)
{
	if (h) {
		fx.set_ok++;
		fx.last_in_use = h->in_use;
	} else {
		fx.set_failed++;
	}
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (lvl != LOG_LVL_WARN)
		return;
	va_start(ap, fmt);
	vsnprintf(fx.warned, sizeof(fx.warned), fmt, ap);
	va_end(ap);
	fx.warnings++;
}

/* ---- the loop, bounded ---- */

static bool begun_one(void) { return fx.begun >= 1; }
static bool freed_one(void) { return fx.freed >= 1; }
static bool shown_twice(void) { return fx.set_ok >= 2; }
static bool shown_thrice(void) { return fx.set_ok >= 3; }

static void give_up_cb(evutil_socket_t fd, short what, void *arg) {}

/* Run the loop until cond holds; false if 10 s pass first (the periods here are 1 s). */
static bool run_until(struct event_base *base, bool (*cond)(void))
{
	struct timeval give_up = { 10, 0 };
	struct event *guard = evtimer_new(base, give_up_cb, NULL);
	struct timeval t0, t;

	assert_non_null(guard);
	assert_int_equal(evtimer_add(guard, &give_up), 0); /* the loop always has something to wait for */
	gettimeofday(&t0, NULL);
	while (!cond()) {
		gettimeofday(&t, NULL);
		if (t.tv_sec - t0.tv_sec >= 10)
			break;
		assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
	}
	event_free(guard);
	return cond();
}

/*
 * A scan that never ends is abandoned after its limit, reported once, and
 * a later period's scan starts and completes as usual.
 */
static void t_stuck_scan_abandoned(void **state)
{
	struct event_base *base = event_base_new();
	struct hostwatch *w;

	memset(&fx, 0, sizeof(fx));
	assert_non_null(base);
	w = hostwatch_new(base, NULL, 1, 200);
	assert_non_null(w);
	assert_int_equal(fx.set_ok, 1); /* the scan at start, whole */
	assert_int_equal(fx.last_in_use, 7);

	/* The first period: a scan begins and never gets an answer. */
	assert_true(run_until(base, begun_one));
	assert_int_equal(fx.freed, 0);
	assert_non_null(fx.live);

	/* Its limit: abandoned, its socket closed, the host shown as not scanned, one warning. */
	assert_true(run_until(base, freed_one));
	assert_int_equal(fx.set_failed, 1);
	assert_int_equal(fx.set_ok, 1);
	assert_int_equal(fx.warnings, 1);
	assert_non_null(strstr(fx.warned, "did not finish within 200 ms"));

	/* From now on scans complete: the host is shown again, with no further warning. */
	fx.finish = true;
	assert_true(run_until(base, shown_twice));
	assert_int_equal(fx.last_in_use, 100 + fx.begun);
	assert_int_equal(fx.freed, fx.begun);
	assert_int_equal(fx.warnings, 1);

	hostwatch_free(w);
	event_base_free(base);
}

/* Scans that complete within their limit are never cut short, and no limit fires later. */
static void t_prompt_scans_kept(void **state)
{
	struct event_base *base = event_base_new();
	struct hostwatch *w;

	memset(&fx, 0, sizeof(fx));
	fx.finish = true;
	assert_non_null(base);
	w = hostwatch_new(base, NULL, 1, 500);
	assert_non_null(w);
	assert_true(run_until(base, shown_thrice));
	assert_int_equal(fx.begun, 2);
	assert_int_equal(fx.freed, 2);
	assert_int_equal(fx.set_failed, 0);
	assert_int_equal(fx.warnings, 0);
	hostwatch_free(w);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_stuck_scan_abandoned),
		cmocka_unit_test(t_prompt_scans_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
