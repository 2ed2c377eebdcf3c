#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "log.h"

#define FDSTORE_BATCH 253 /* the manager's limit per message */

struct notify {
	bool enabled;
	struct event *watchdog;
	char status[256];
};

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
}

struct notify *notify_new(struct event_base *base)
{
	struct notify *n = calloc(1, sizeof(*n));
	uint64_t usec = 0;
	const char *sock = getenv("NOTIFY_SOCKET");

	if (!n)
		return NULL;
	n->enabled = sock && *sock;
	if (n->enabled && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* Pinged by the loop itself: a stuck loop stops the pings and gets restarted. */
		struct timeval tv = { .tv_sec = (time_t)(usec / 2 / 1000000),
				      .tv_usec = (suseconds_t)(usec / 2 % 1000000) };
		n->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, n);
		if (!n->watchdog || event_add(n->watchdog, &tv) < 0) {
			notify_free(n);
			return NULL;
		}
		log_info("watchdog: pinging every %llu ms", (unsigned long long)(usec / 2000));
	}
	return n;
}

void notify_free(struct notify *n)
{
	if (!n)
		return;
	if (n->watchdog)
		event_free(n->watchdog);
	free(n);
}

bool notify_enabled(const struct notify *n) { return n && n->enabled; }

void notify_ready(struct notify *n, const char *status)
{
	if (!notify_enabled(n))
		return;
	snprintf(n->status, sizeof(n->status), "%s", status);
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_status(struct notify *n, const char *status)
{
	if (!notify_enabled(n) || strcmp(status, n->status) == 0)
		return;
	snprintf(n->status, sizeof(n->status), "%s", status);
	sd_notifyf(0, "STATUS=%s", status);
}

void notify_stopping(struct notify *n)
{
	if (notify_enabled(n))
		sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

int notify_fdstore(struct notify *n, const int *fds, size_t nfds)
{
	size_t sent = 0;

	if (!notify_enabled(n))
		return -ENOTCONN;
	while (sent < nfds) {
		size_t k = nfds - sent < FDSTORE_BATCH ? nfds - sent : FDSTORE_BATCH;
		int r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" NOTIFY_LEASE_FDNAME "\nFDPOLL=0",
					       fds + sent, (unsigned)k);
		if (r <= 0)
			return r < 0 ? r : -ENOTCONN;
		sent += k;
	}
	return (int)sent;
}

void notify_fdstore_clear(struct notify *n)
{
	if (notify_enabled(n))
		sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" NOTIFY_LEASE_FDNAME);
}
