/*
 * The control socket: listening, accepting, the set of connections.
 *
 * accept() failing with EMFILE/ENFILE leaves the connection in the backlog,
 * so the listener would fire again at once and spin: instead the accept
 * event is switched off for a short back-off and switched on again by a
 * timer. A new connection is accepted and closed at once when it would go
 * over max_conns, over max_per_uid connections of its uid, or leave fewer
 * than SERVER_FD_RESERVE fds below the open-files limit: those stay for the
 * sockets of leases, so a flood of connections cannot stop the connected
 * clients from leasing.
 *
 * A connection that sends no request within idle_timeout_ms of its accept
 * is closed (a slowloris guard). One that has sent a request is never closed
 * for idleness: libportd and `portctl run` keep theirs open for long. The
 * connections not heard from yet wait in one queue in accept order, under
 * one timer armed for the oldest.
 */
#ifndef PORTD_SERVER_H
#define PORTD_SERVER_H

#include <stdint.h>
#include <sys/types.h>

#define SERVER_FD_RESERVE 32

struct event_base;
struct service;
struct server;

struct server_limits {
	uint32_t max_conns;       /* open connections in all */
	uint32_t max_per_uid;     /* open connections of one uid */
	uint32_t idle_timeout_ms; /* from accept to the first request; 0: no limit */
};

/*
 * Create, bind and listen on a SOCK_SEQPACKET socket at path with the given
 * mode (and group, if gid != (gid_t)-1). A stale socket file (nobody accepts
 * on it) is replaced; a live one is an error (-EADDRINUSE): another portd
 * runs there. Returns the listening fd or -errno.
 */
int server_listen(const char *path, mode_t mode, gid_t gid);

/*
 * Serve on listen_fd (taken over). unlink_path, if not NULL, is removed in
 * server_free(). The open-files limit is read now.
 */
struct server *server_new(struct event_base *base, struct service *svc, int listen_fd,
			  const char *unlink_path, const struct server_limits *lim);
/* Closes every connection and the listening socket, removes the socket file. Accepts NULL. */
void server_free(struct server *srv);

uint32_t server_conn_count(const struct server *srv);

#endif
