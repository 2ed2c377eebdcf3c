/*
 * The control socket: listening, accepting, the set of connections.
 *
 * accept() failing with EMFILE/ENFILE leaves the connection in the backlog,
 * so the listener would fire again at once and spin: instead the accept
 * event is switched off for a short back-off and switched on again by a
 * timer. Above max_conns connections a new one is accepted and closed at once.
 */
#ifndef PORTD_SERVER_H
#define PORTD_SERVER_H

#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct service;
struct server;

/*
 * Create, bind and listen on a SOCK_SEQPACKET socket at path with the given
 * mode (and group, if gid != (gid_t)-1). A stale socket file (nobody accepts
 * on it) is replaced; a live one is an error (-EADDRINUSE): another portd
 * runs there. Returns the listening fd or -errno.
 */
int server_listen(const char *path, mode_t mode, gid_t gid);

/* Serve on listen_fd (taken over). unlink_path, if not NULL, is removed in server_free(). */
struct server *server_new(struct event_base *base, struct service *svc, int listen_fd,
			  const char *unlink_path, uint32_t max_conns);
/* Closes every connection and the listening socket, removes the socket file. Accepts NULL. */
void server_free(struct server *srv);

uint32_t server_conn_count(const struct server *srv);

#endif
