/*
 * The daemon's state and the handling of one request.
 *
 * service_handle() takes one raw datagram and the caller's identity (from
 * the kernel, never from the message) and fills in one reply: bytes, the fds
 * to attach, and whether the connection must be closed. It does no socket
 * I/O on the control connection, so tests and fuzzers drive the real
 * dispatch code without a socket.
 *
 * The service owns the lease table, the port source, the process watches
 * and the one expiry timer (armed for the earliest deadline).
 */
#ifndef PORTD_SERVICE_H
#define PORTD_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "lease.h"
#include "ports.h"
#include "protocol.h"

struct event_base;
struct proc;

struct service_config {
	struct lease_limits limits;
	struct ports_config ports;
	/*
	 * The range is in net.ipv4.ip_local_reserved_ports: no automatic port
	 * selection of any process lands there, so a number-only UDP lease can
	 * be handed over without the daemon keeping a socket on the port.
	 */
	bool reserved;
};

/* Who sent a request: read from the connection with SO_PEERCRED/SO_PEERPIDFD. */
struct caller {
	uint32_t uid;
	uint32_t gid;
	pid_t pid;
	/*
	 * The connecting process, taken from sock (SO_PEERPIDFD) only when a
	 * lease is first tied to it and closed once its watch holds one, so a
	 * connection costs one fd; -1 meanwhile. The owner of sock closes it.
	 */
	int pidfd;
	int sock; /* the connection, or -1: then pidfd_open(pid) is used */
	struct proc *watch; /* its process watch, referenced once a lease is tied to it; NULL before */
};

struct reply {
	size_t len;
	size_t nfds;
	int fds[PORTD_FDS_MAX]; /* borrowed from a lease: send them before the loop runs again */
	uint64_t new_lease;     /* lease made by this request: end it if the reply is not delivered */
	bool close;             /* close the connection once the reply is sent */
	uint8_t buf[PORTD_MSG_MAX];
};

struct service;

struct service *service_new(struct event_base *base, const struct service_config *cfg,
			    const struct clock *clk, const struct ports_binder *binder);
/* Ends every lease (closing the daemon's sockets) and frees everything. Accepts NULL. */
void service_free(struct service *s);

/* Handle one request datagram of len bytes that arrived with nfds fds attached. */
void service_handle(struct service *s, struct caller *c, const void *msg, size_t len,
		    size_t nfds, struct reply *r);

/*
 * A lease for portpicker's portserver protocol: one TCP number, free on UDP
 * too, held until process pid exits (no deadline), owned by the caller. pid
 * must be able to exit (not init, a kernel thread or portd) and, unless the
 * caller is root, be of the caller's uid. Quotas apply as for any lease.
 * Returns the port (> 0) with *id set, or a negative PORTD_R_* saying why not.
 */
int service_lease_for_pid(struct service *s, const struct caller *c, pid_t pid, uint64_t *id);

/* The connection of c closes: drop its reference to its process's watch. */
void service_caller_done(struct service *s, struct caller *c);

/* End a lease whose reply could not be delivered (the client never got it). */
void service_abort_lease(struct service *s, uint64_t id);
/*
 * End a lease whose reply the kernel took but the client discarded unread
 * (it closed its connection first). Its ports go through the reuse
 * quarantine, as for a release: the client may have read it after all.
 */
void service_discard_lease(struct service *s, uint64_t id);

/* Expire every lease whose deadline has passed; the timer calls this too. */
void service_expire(struct service *s);

/*
 * Restarting without losing leases. service_held_fds() lists every socket the
 * daemon holds (for the FD store; malloc'ed, free() it). service_save() writes
 * the lease table to a state file. service_restore() reads it back: each port
 * takes the stored fd of the same (transport, port) from stored[] or, without
 * one, is bound again; a lease that cannot get all its ports back, has
 * expired, or whose tied process is gone is dropped and logged. Every fd of
 * stored[] is consumed (used or closed). Returns the leases restored, or -errno.
 */
int service_held_fds(const struct service *s, int **fds, size_t *n);
int service_save(const struct service *s, const char *path);
int service_restore(struct service *s, const char *path, int *stored, size_t nstored);

/* One line for STATUS=: leases, ports held, quarantined, connections, and the host's ports. */
void service_summary(struct service *s, char *buf, size_t len);

/* The host's ephemeral range at the last scan (daemon/hostwatch.h), for STATUS and STATUS=. */
struct service_host {
	uint16_t lo, hi;  /* 0, 0: not scanned */
	uint32_t in_use;
	bool low;         /* close to exhaustion */
};
/* NULL: the host could not be scanned. */
void service_set_host(struct service *s, const struct service_host *h);

/* Bookkeeping the connection layer reports, for status. */
void service_conn_count(struct service *s, int delta);

size_t service_lease_count(const struct service *s);

#endif
