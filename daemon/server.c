#include "server.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "uidcount.h"

#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF_MS 100
/* Log the first refusal (or back-off) of a kind, then one in this many. */
#define LOG_EVERY 1000

/* Why a connection was closed at accept. */
enum refusal { REFUSE_TOTAL, REFUSE_UID, REFUSE_FDS, REFUSE_KINDS };

struct server {
	struct event_base *base;
	struct service *svc;
	int fd;
	char *path;
	struct event *accept_ev, *backoff, *idle;
	struct conn *conns;
	struct conn_quiet quiet; /* connections that have sent nothing yet, oldest first */
	struct uidcount *per_uid;
	struct server_limits lim;
	uint32_t nconns;
	long fd_limit; /* RLIMIT_NOFILE */
	uint64_t refused[REFUSE_KINDS];
	uint64_t backoffs;
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
	uidcount_sub(srv->per_uid, conn_uid(c), 1);
	srv->nconns--;
}

static void server_refuse(struct server *srv, int fd, enum refusal why, uint32_t uid)
{
	close(fd);
	if (srv->refused[why]++ % LOG_EVERY)
		return;
	switch (why) {
	case REFUSE_TOTAL:
		log_warn("connection limit (%u, --max-connections) reached: refusing connections "
			 "(%llu refused so far)", srv->lim.max_conns, (unsigned long long)srv->refused[why]);
		break;
	case REFUSE_UID:
		log_warn("uid %u is at its limit of %u connections (--max-connections-per-uid): refusing "
			 "its new ones (%llu refused so far, all users)", uid, srv->lim.max_per_uid,
			 (unsigned long long)srv->refused[why]);
		break;
	case REFUSE_FDS:
		log_warn("open-files limit (%ld) nearly reached: refusing connections, keeping the last "
			 "%d fds for leases (%llu refused so far; raise the limit: ulimit -n, LimitNOFILE=)",
			 srv->fd_limit, SERVER_FD_RESERVE, (unsigned long long)srv->refused[why]);
		break;
	case REFUSE_KINDS:
		break;
	}
}

/* Arm the idle timer for the oldest connection not heard from yet. */
static void server_arm_idle(struct server *srv, uint64_t now)
{
	uint64_t since, due, wait;
	struct timeval tv;

	if (!conn_quiet_oldest(&srv->quiet, &since))
		return;
	due = since + srv->lim.idle_timeout_ms;
	wait = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	evtimer_add(srv->idle, &tv);
}

static void server_on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	uint64_t now = clock_monotonic_ms(NULL), since;
	struct conn *c;

	while ((c = conn_quiet_oldest(&srv->quiet, &since)) && now - since >= srv->lim.idle_timeout_ms) {
		log_debug("closing the connection of uid %u: no request within %u ms of connecting",
			  conn_uid(c), srv->lim.idle_timeout_ms);
		server_conn_closed(c, srv);
		conn_free(c);
	}
	server_arm_idle(srv, now);
}

/* accept() failed for want of fds or memory: the connection stays in the backlog. */
static void server_back_off(struct server *srv, int err)
{
	struct timeval tv = { 0, ACCEPT_BACKOFF_MS * 1000 };

	/* Retrying now would spin: the listener stays readable. */
	if (srv->backoffs++ % LOG_EVERY == 0)
		log_warn("accept: %s; pausing accepts for %d ms at a time (%llu times so far)",
			 strerror(err), ACCEPT_BACKOFF_MS, (unsigned long long)srv->backoffs);
	event_del(srv->accept_ev);
	evtimer_add(srv->backoff, &tv);
}

/* Take connection fd, or close it with the reason. */
static void server_admit(struct server *srv, int fd, uint64_t now)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct conn *c;

	if (srv->nconns >= srv->lim.max_conns) {
		server_refuse(srv, fd, REFUSE_TOTAL, 0);
		return;
	}
	/* The lowest free fd: none free below it, fewer than the reserve above it. */
	if (fd >= srv->fd_limit - SERVER_FD_RESERVE) {
		server_refuse(srv, fd, REFUSE_FDS, 0);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		close(fd);
		return;
	}
	if (uidcount_get(srv->per_uid, cred.uid) >= srv->lim.max_per_uid) {
		server_refuse(srv, fd, REFUSE_UID, cred.uid);
		return;
	}
	if (uidcount_add(srv->per_uid, cred.uid, 1) < 0) {
		close(fd);
		return;
	}
	c = conn_new(srv->base, srv->svc, fd, server_conn_closed, srv);
	if (!c) {
		uidcount_sub(srv->per_uid, cred.uid, 1);
		return;
	}
	conn_link(c, &srv->conns);
	srv->nconns++;
	if (srv->lim.idle_timeout_ms) {
		conn_quiet_add(c, &srv->quiet, now);
		if (!evtimer_pending(srv->idle, NULL))
			server_arm_idle(srv, now);
	}
}

static void server_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct server *srv = arg;
	uint64_t now = clock_monotonic_ms(NULL);

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(srv->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				server_back_off(srv, errno);
			else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_err("accept: %s", strerror(errno));
			return;
		}
		server_admit(srv, fd, now);
	}
}

static void server_on_backoff(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	event_add(srv->accept_ev, NULL);
}

struct server *server_new(struct event_base *base, struct service *svc, int listen_fd,
			  const char *unlink_path, const struct server_limits *lim)
{
	struct server *srv = calloc(1, sizeof(*srv));
	struct rlimit rl;

	if (!srv) {
		close(listen_fd);
		return NULL;
	}
	srv->base = base;
	srv->svc = svc;
	srv->fd = listen_fd;
	srv->lim = *lim;
	srv->fd_limit = INT_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < INT_MAX)
		srv->fd_limit = (long)rl.rlim_cur;
	if (unlink_path && !(srv->path = strdup(unlink_path)))
		goto fail;
	srv->per_uid = uidcount_new();
	srv->accept_ev = event_new(base, listen_fd, EV_READ | EV_PERSIST, server_on_accept, srv);
	srv->backoff = evtimer_new(base, server_on_backoff, srv);
	srv->idle = evtimer_new(base, server_on_idle, srv);
	if (!srv->per_uid || !srv->accept_ev || !srv->backoff || !srv->idle ||
	    event_add(srv->accept_ev, NULL) < 0)
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
	if (srv->idle)
		event_free(srv->idle);
	uidcount_free(srv->per_uid);
	if (srv->fd >= 0)
		close(srv->fd);
	if (srv->path) {
		unlink(srv->path);
		free(srv->path);
	}
	free(srv);
}

uint32_t server_conn_count(const struct server *srv) { return srv->nconns; }
