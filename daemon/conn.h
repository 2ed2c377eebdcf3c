/*
 * One client connection: its credentials, read from the kernel once at
 * accept, and the I/O around service_handle(). Requests are read while no
 * reply is pending; a reply the socket cannot take now is kept (with its own
 * copies of the fds) and the write event is armed until it is sent, and
 * nothing more is read meanwhile, so a client that never reads costs one
 * queued reply, not an unbounded queue.
 *
 * Replies the kernel took may still sit unread in the client's socket. A
 * client that closes with replies unread makes the kernel discard them and
 * report ECONNRESET to us instead of end-of-stream: the leases those replies
 * granted then end, since nobody knows of them. Which replies were read is
 * learnt from SIOCOUTQ (what our replies the client has not read yet cost in
 * the send buffer), asked after each request is read while a reply that
 * granted a lease may be unread, with SO_ERROR (one ioctl and one getsockopt
 * per request after a lease, none otherwise). Each reply's cost is bounded
 * from above, so a lease is ended only when its reply is surely unread. A
 * client that reads each reply before its next request loses exactly the
 * leases of the replies it never read; one that pipelines requests and then
 * closes with replies unread may also lose leases from the replies it read
 * since its last request.
 */
#ifndef PORTD_CONN_H
#define PORTD_CONN_H

#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct service;
struct conn;

typedef void (*conn_closed_fn)(struct conn *c, void *ctx);

/* Takes ownership of fd. Returns NULL (fd closed) if it cannot be set up. */
struct conn *conn_new(struct event_base *base, struct service *svc, int fd,
		      conn_closed_fn closed, void *ctx);
/*
 * Closes the connection without calling closed(), and leaves the leases of
 * its replies alone (a reply still pending is never delivered: its lease
 * ends). Accepts NULL.
 */
void conn_free(struct conn *c);

/* The peer's uid (SO_PEERCRED). */
uint32_t conn_uid(const struct conn *c);

/* For the server's list of connections. */
struct conn *conn_next(const struct conn *c);
void conn_link(struct conn *c, struct conn **head);
void conn_unlink(struct conn *c, struct conn **head);

/*
 * Connections that have not sent a request yet, oldest first (the server's
 * idle timeout). A connection leaves its queue at its first request or when
 * it is freed; all of a queue's connections have the same timeout, so adding
 * at the tail keeps it ordered by deadline.
 */
struct conn_quiet {
	struct conn *head, *tail;
};
void conn_quiet_add(struct conn *c, struct conn_quiet *q, uint64_t now_ms);
/* The oldest connection of q (*since_ms: when it was added), or NULL. */
struct conn *conn_quiet_oldest(const struct conn_quiet *q, uint64_t *since_ms);

#endif
