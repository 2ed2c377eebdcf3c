/*
 * The host's ephemeral ports, watched from the event loop: a scan
 * (proto/hostports.h) at start and then periodically, whose result
 * goes to the service (STATUS, the STATUS= line). The log says once when the
 * range comes close to exhaustion and once when it has recovered.
 */
#ifndef PORTD_HOSTWATCH_H
#define PORTD_HOSTWATCH_H

struct event_base;
struct hostwatch;
struct service;

#define HOSTWATCH_INTERVAL_S 10 /* the default period */
/* The longest a periodic scan may take (a whole one takes ~10 ms with 20,000 sockets). */
#define HOSTWATCH_LIMIT_MS 2000

/*
 * Scan once now (before portd says it is ready, so that its first status
 * has the host's ports), then every interval_s seconds. A scan still under
 * way after limit_ms is abandoned as failed: the kernel's dump never ending
 * cannot stop the scans that follow. A host that cannot be scanned is
 * logged and retried. NULL only on ENOMEM.
 */
struct hostwatch *hostwatch_new(struct event_base *base, struct service *svc, unsigned interval_s,
				unsigned limit_ms);
/* Accepts NULL. */
void hostwatch_free(struct hostwatch *w);

#endif
