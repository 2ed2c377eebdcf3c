#include "server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "log.h"

#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF_MS 100

struct server {
	struct event_base *base;
	struct service *svc;
	int fd;
	char *path;
	struct event *accept_ev, *backoff;
	struct conn *conns;
	uint32_t nconns, max_conns;
	uint64_t refused; /* connections closed at once for being over max_conns */
};

static int sun_from_path(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

/* Is someone accepting on the socket at path? */
static bool socket_alive(const struct sockaddr_un *sun)
{
	/* Non-blocking: a full backlog (EAGAIN) also means a live daemon. */
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool alive;

	if (fd < 0)
		return false;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 || errno == EAGAIN;
	close(fd);
	return alive;
}

int server_listen(const char *path, mode_t mode, gid_t gid)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old_umask;
	int fd, r;

	if ((r = sun_from_path(&sun, path)) < 0)
		return r;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (socket_alive(&sun))
			return -EADDRINUSE;
		unlink(path); /* stale: its daemon is gone */
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* The umask covers the window between bind() and chmod(). */
	old_umask = umask(0777 & ~mode);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old_umask);
	if (r < 0)
		goto fail;
	if (chmod(path, mode) < 0 || (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) ||
	    listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		unlink(path);
		close(fd);
		return r;
	}
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

static void server_conn_closed(struct conn *c, void *arg)
{
	struct server *srv = arg;

	conn_unlink(c, &srv->conns);
	srv->nconns--;
}

static void server_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct server *srv = arg;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(srv->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct conn *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The connection stays in the backlog; retrying now would spin. */
				struct timeval tv = { 0, ACCEPT_BACKOFF_MS * 1000 };
				log_warn("accept: %s; pausing accepts for %d ms", strerror(errno),
					 ACCEPT_BACKOFF_MS);
				event_del(srv->accept_ev);
				evtimer_add(srv->backoff, &tv);
			} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_err("accept: %s", strerror(errno));
			}
			return;
		}
		if (srv->nconns >= srv->max_conns) {
			if (srv->refused++ % 1000 == 0)
				log_warn("connection limit (%u) reached: refusing connections",
					 srv->max_conns);
			close(fd);
			continue;
		}
		c = conn_new(srv->base, srv->svc, fd, server_conn_closed, srv);
		if (!c)
			continue;
		conn_link(c, &srv->conns);
		srv->nconns++;
	}
}

static void server_on_backoff(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	event_add(srv->accept_ev, NULL);
}

struct server *server_new(struct event_base *base, struct service *svc, int listen_fd,
			  const char *unlink_path, uint32_t max_conns)
{
	struct server *srv = calloc(1, sizeof(*srv));

	if (!srv) {
		close(listen_fd);
		return NULL;
	}
	srv->base = base;
	srv->svc = svc;
	srv->fd = listen_fd;
	srv->max_conns = max_conns;
	if (unlink_path && !(srv->path = strdup(unlink_path)))
		goto fail;
	srv->accept_ev = event_new(base, listen_fd, EV_READ | EV_PERSIST, server_on_accept, srv);
	srv->backoff = evtimer_new(base, server_on_backoff, srv);
	if (!srv->accept_ev || !srv->backoff || event_add(srv->accept_ev, NULL) < 0)
		goto fail;
	return srv;
fail:
	server_free(srv);
	return NULL;
}

void server_free(struct server *srv)
{
	if (!srv)
		return;
	while (srv->conns) {
		struct conn *c = srv->conns;
		conn_unlink(c, &srv->conns);
		conn_free(c);
	}
	if (srv->accept_ev)
		event_free(srv->accept_ev);
	if (srv->backoff)
		event_free(srv->backoff);
	if (srv->fd >= 0)
		close(srv->fd);
	if (srv->path) {
		unlink(srv->path);
		free(srv->path);
	}
	free(srv);
}

uint32_t server_conn_count(const struct server *srv) { return srv->nconns; }
