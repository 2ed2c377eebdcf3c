/*
 * Talking to the service manager (sd_notify(3)): readiness, a status line,
 * stopping, watchdog pings from the event loop, and the FD store that keeps
 * the held sockets open while portd restarts. Every call is a no-op when
 * portd does not run under systemd (no $NOTIFY_SOCKET).
 */
#ifndef PORTD_NOTIFY_H
#define PORTD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct notify;

/* Name of the held sockets in the FD store (FDNAME=). */
#define NOTIFY_LEASE_FDNAME "lease"

/* Starts the watchdog timer if WatchdogSec= is set. NULL only on ENOMEM. */
struct notify *notify_new(struct event_base *base);
void notify_free(struct notify *n);

bool notify_enabled(const struct notify *n);
void notify_ready(struct notify *n, const char *status);
/* Sends STATUS= if it differs from the last one sent. */
void notify_status(struct notify *n, const char *status);
void notify_stopping(struct notify *n);

/*
 * Put fds into the FD store under NOTIFY_LEASE_FDNAME with FDPOLL=0 (a bound
 * socket that is not listening polls as HUP, and the manager would drop it),
 * at most 253 per message. Returns how many the manager accepted messages for,
 * or -errno.
 */
int notify_fdstore(struct notify *n, const int *fds, size_t nfds);
/* Drop every fd named NOTIFY_LEASE_FDNAME from the FD store. */
void notify_fdstore_clear(struct notify *n);

#endif
