/*
 * portpicker's portserver protocol, on a Unix stream socket of its own.
 *
 * Google's portpicker (Debian: python3-portpicker) asks a portserver for a
 * port when PORTSERVER_ADDRESS is set: it connects, sends its pid in ASCII
 * and a newline, reads once, and takes "PORT\n". An empty read (the server
 * closed) or a reset makes it fall back to picking a port itself. portd
 * answers with a number lease tied to that pid (service_lease_for_pid()):
 * the port stays reserved until the process exits, then goes through the
 * reuse quarantine like any freed port, and `portctl list` shows the lease.
 *
 * Unlike Debian's portserver, no connection can hang or cost much: the line
 * must arrive within PORTSERVER_TIMEOUT_MS of the accept (a pid split across
 * writes is read whole) and fit in PORTSERVER_LINE_MAX bytes; anything but
 * digits and one newline, a pid that may not be leased to, or a refusal
 * (quota, no free port) closes the connection at once, without a reply. The
 * caller's uid is the kernel's (SO_PEERCRED at accept), never a claim.
 * Most requests are complete when accepted: they are answered from the
 * accept loop, with no event of their own.
 */
#ifndef PORTD_PORTSERVER_H
#define PORTD_PORTSERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PORTSERVER_DEFAULT_ADDRESS "@unittest-portserver" /* portserver's and portpicker's */
#define PORTSERVER_TIMEOUT_MS 300  /* from accept to the newline */
#define PORTSERVER_LINE_MAX 32     /* bytes read at most; a pid line is at most 11 */
#define PORTSERVER_CONNS_MAX 256   /* connections waiting for their line at once */

struct event_base;
struct service;
struct portserver;

enum portserver_line {
	PORTSERVER_LINE_MORE, /* no newline yet, and room for more */
	PORTSERVER_LINE_PID,  /* digits, then a newline that ends the bytes: *pid set */
	PORTSERVER_LINE_BAD,  /* anything else: close without a reply */
};

/*
 * What the first len bytes of a connection say, len <= PORTSERVER_LINE_MAX.
 * Bad: a byte that is not a digit before the newline, an empty line, bytes
 * after the newline, a number above INT_MAX, or PORTSERVER_LINE_MAX bytes
 * without a newline. No I/O: the daemon calls it on every read, the fuzzer
 * directly. *pid may be 0 or 1: whether a pid may be leased to is
 * service_lease_for_pid()'s decision.
 */
enum portserver_line portserver_parse_line(const char *buf, size_t len, pid_t *pid);

/*
 * Create and listen on a SOCK_STREAM socket at address: "@name" is name in
 * the abstract namespace (of portd's network namespace; no permissions: the
 * uid checks protect), anything else a filesystem path, created with mode
 * (and group gid, unless (gid_t)-1), replacing a stale socket file. Returns
 * the listening fd, or -errno: -EADDRINUSE when someone serves that address,
 * -ENAMETOOLONG, -EEXIST for a path that is not a socket.
 */
int portserver_listen(const char *address, mode_t mode, gid_t gid);

/* Serve on listen_fd (taken over, even on failure). unlink_path, if not NULL, is removed in portserver_free(). */
struct portserver *portserver_new(struct event_base *base, struct service *svc, int listen_fd,
				  const char *unlink_path);
/* Closes every connection and the listening socket, removes the socket file. Accepts NULL. */
void portserver_free(struct portserver *ps);

struct portserver_stats {
	uint64_t granted;
	uint64_t refused;   /* well-formed, but no lease: pid, uid, quota or no free port */
	uint64_t malformed; /* not a pid line, too long, or closed early */
	uint64_t timeouts;  /* no newline in time */
	uint64_t overload;  /* closed at accept: PORTSERVER_CONNS_MAX were waiting */
};
void portserver_stats(const struct portserver *ps, struct portserver_stats *out);

#endif
