/*
 * A scan runs in slices: each time the sock_diag socket is readable, one
 * call reads at most SLICE_READS datagrams and returns to the loop. Each
 * datagram is a few hundred sockets, or the kernel's walk past sockets
 * outside the range; with 20,000 sockets on the host a whole scan takes
 * about 8 ms and a slice about 2 ms.
 */
#include "hostwatch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "hostports.h"
#include "log.h"
#include "service.h"

#define SLICE_READS 4

struct hostwatch {
	struct event_base *base;
	struct service *svc;
	struct event *timer;
	struct event *limit;          /* the running scan's time limit */
	struct timeval limit_tv;
	struct event *readable;       /* the scan's socket, while a scan runs */
	struct hostports_scan *scan;
	bool low;                     /* close to exhaustion at the last scan */
	bool failing;                 /* the last scan failed (logged once) */
};

static void scan_failed(struct hostwatch *w, int err)
{
	if (!w->failing && err == -ETIMEDOUT)
		log_warn("a scan of the host's ephemeral ports (NETLINK_SOCK_DIAG) did not finish within %ld ms: "
			 "abandoned; portctl status will not show them until one does",
			 (long)w->limit_tv.tv_sec * 1000 + (long)w->limit_tv.tv_usec / 1000);
	else if (!w->failing)
		log_warn("cannot read the host's ephemeral ports (%s): %s; portctl status will not show them",
			 HOSTPORTS_RANGE_SYSCTL " and NETLINK_SOCK_DIAG", strerror(-err));
	w->failing = true;
	w->low = false;
	service_set_host(w->svc, NULL);
}

static void scan_done(struct hostwatch *w, const struct hostports *h)
{
	bool low = hostports_low(h, w->low);

	if (w->failing)
		log_info("reading the host's ephemeral ports again");
	w->failing = false;
	if (low && !w->low)
		log_warn("the host's ephemeral ports are close to exhaustion: %u of %u in use (%u%%; range "
			 "%u-%u, %u reserved; %u in TIME-WAIT): %s", h->in_use, h->usable, hostports_percent(h),
			 h->lo, h->hi, h->reserved, h->tcp_time_wait, HOSTPORTS_ADVICE);
	else if (!low && w->low)
		log_info("the host's ephemeral ports have recovered: %u of %u in use (%u%%; range %u-%u)",
			 h->in_use, h->usable, hostports_percent(h), h->lo, h->hi);
	w->low = low;
	service_set_host(w->svc, &(struct service_host){ .lo = h->lo, .hi = h->hi, .in_use = h->in_use,
							  .low = low });
}

static void scan_end(struct hostwatch *w)
{
	if (w->limit)
		event_del(w->limit);
	if (w->readable)
		event_free(w->readable);
	w->readable = NULL;
	hostports_scan_free(w->scan);
	w->scan = NULL;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct hostwatch *w = arg;
	struct hostports h;
	int r = hostports_scan_step(w->scan, SLICE_READS);

	if (r == 1)
		return;
	if (r == 0) {
		hostports_scan_result(w->scan, &h);
		scan_done(w, &h);
	} else {
		scan_failed(w, r);
	}
	scan_end(w);
}

static void on_limit(evutil_socket_t fd, short what, void *arg)
{
	struct hostwatch *w = arg;

	scan_end(w);
	scan_failed(w, -ETIMEDOUT);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct hostwatch *w = arg;
	int r;

	if (w->scan)
		return; /* the last one is still under way, within its limit */
	r = hostports_scan_begin(0, &w->scan);
	if (r == 0) {
		w->readable = event_new(w->base, hostports_scan_fd(w->scan), EV_READ | EV_PERSIST, on_readable, w);
		if (w->readable && event_add(w->readable, NULL) == 0 && event_add(w->limit, &w->limit_tv) == 0)
			return;
		r = -ENOMEM;
		scan_end(w);
	}
	scan_failed(w, r);
}

struct hostwatch *hostwatch_new(struct event_base *base, struct service *svc, unsigned interval_s,
				unsigned limit_ms)
{
	struct hostwatch *w = calloc(1, sizeof(*w));
	struct timeval every = { (time_t)interval_s, 0 };
	struct hostports h;
	int r;

	if (!w)
		return NULL;
	w->base = base;
	w->svc = svc;
	w->limit_tv.tv_sec = (time_t)(limit_ms / 1000);
	w->limit_tv.tv_usec = (suseconds_t)(limit_ms % 1000) * 1000;
	w->timer = event_new(base, -1, EV_PERSIST, on_timer, w);
	w->limit = evtimer_new(base, on_limit, w);
	if (!w->timer || !w->limit || event_add(w->timer, &every) < 0) {
		hostwatch_free(w);
		return NULL;
	}
	r = hostports_scan(&h, 0);
	if (r == 0)
		scan_done(w, &h);
	else
		scan_failed(w, r);
	return w;
}

void hostwatch_free(struct hostwatch *w)
{
	if (!w)
		return;
	scan_end(w);
	if (w->limit)
		event_free(w->limit);
	if (w->timer)
		event_free(w->timer);
	free(w);
}
