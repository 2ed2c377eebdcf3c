#include "portserver.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "protocol.h"
#include "service.h"

#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF_MS 100

/* One connection still waiting for its line. */
struct ps_conn {
	struct portserver *ps;
	int fd;
	struct caller who;
	uint64_t deadline; /* monotonic ms */
	struct event *ev;  /* readable, or the deadline */
	size_t len;
	char buf[PORTSERVER_LINE_MAX];
	struct ps_conn *prev, *next;
};

struct portserver {
	struct event_base *base;
	struct service *svc;
	int fd;
	char *path;
	struct event *accept_ev, *backoff;
	struct ps_conn *conns;
	uint32_t nconns;
	struct portserver_stats st;
};

/* ---- the address ---- */

/* "@name": abstract, the exact name length in the address length (as Python does); else a path. */
static int ps_address(const char *address, struct sockaddr_un *sun, socklen_t *len)
{
	size_t n = strlen(address);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (n == 0 || (address[0] == '@' && n == 1))
		return -EINVAL;
	if (n > sizeof(sun->sun_path) - (address[0] == '@' ? 0 : 1))
		return -ENAMETOOLONG;
	if (address[0] == '@') {
		memcpy(sun->sun_path + 1, address + 1, n - 1); /* sun_path[0] stays '\0' */
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		memcpy(sun->sun_path, address, n);
		*len = (socklen_t)sizeof(*sun);
	}
	return 0;
}

/* Does someone accept on the socket file? A full backlog (EAGAIN) is alive too. */
static bool ps_alive(const struct sockaddr_un *sun, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool alive;

	if (fd < 0)
		return false;
	alive = connect(fd, (const struct sockaddr *)sun, len) == 0 || errno == EAGAIN;
	close(fd);
	return alive;
}

int portserver_listen(const char *address, mode_t mode, gid_t gid)
{
	bool abstract = address[0] == '@';
	struct sockaddr_un sun;
	socklen_t len;
	struct stat st;
	mode_t old_umask = 0;
	int fd, r;

	if ((r = ps_address(address, &sun, &len)) < 0)
		return r;
	if (!abstract && lstat(address, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (ps_alive(&sun, len))
			return -EADDRINUSE;
		unlink(address); /* stale: its server is gone */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (!abstract)
		old_umask = umask(0777 & ~mode); /* covers the window between bind() and chmod() */
	r = bind(fd, (struct sockaddr *)&sun, len);
	if (!abstract)
		umask(old_umask);
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if ((!abstract && (chmod(address, mode) < 0 ||
			   (gid != (gid_t)-1 && chown(address, (uid_t)-1, gid) < 0))) ||
	    listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		if (!abstract)
			unlink(address);
		close(fd);
		return r;
	}
	return fd;
}

/* ---- one request ---- */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

enum portserver_line portserver_parse_line(const char *buf, size_t len, pid_t *pid)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && buf[i] != '\n'; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return PORTSERVER_LINE_BAD;
		v = v * 10 + (uint64_t)(buf[i] - '0');
		if (v > INT_MAX)
			return PORTSERVER_LINE_BAD;
	}
	if (i == len)
		return len < PORTSERVER_LINE_MAX ? PORTSERVER_LINE_MORE : PORTSERVER_LINE_BAD;
	if (i == 0 || i + 1 != len)
		return PORTSERVER_LINE_BAD; /* an empty line, or bytes after the newline */
	*pid = (pid_t)v;
	return PORTSERVER_LINE_PID;
}

static const char *ps_refusal(int r)
{
	switch (-r) {
	case PORTD_R_INVAL: return "no such process, or one that never exits";
	case PORTD_R_PERM: return "the process belongs to another user";
	case PORTD_R_QUOTA_UID: return "the per-user lease limit is reached";
	case PORTD_R_QUOTA_TOTAL: return "the lease limit is reached";
	case PORTD_R_NOPORTS: return "no free port";
	default: return "internal error";
	}
}

/* The line is complete: lease, answer "PORT\n" or nothing, and close. */
static void ps_answer(struct portserver *ps, int fd, const struct caller *who, pid_t pid)
{
	uint64_t id = 0;
	int port = service_lease_for_pid(ps->svc, who, pid, &id);
	char out[16];
	int n;

	if (port <= 0) {
		ps->st.refused++;
		log_debug("portserver: no port for pid %d (uid %u pid %d asked): %s", (int)pid, who->uid,
			  (int)who->pid, ps_refusal(port));
		close(fd);
		return;
	}
	n = snprintf(out, sizeof(out), "%d\n", port);
	/* A fresh stream socket's buffer takes 6 bytes at once; anything else means the client is gone. */
	if (send(fd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n) {
		log_debug("portserver: port %d for pid %d not delivered: %s", port, (int)pid, strerror(errno));
		service_abort_lease(ps->svc, id);
		ps->st.refused++;
	} else {
		ps->st.granted++;
	}
	close(fd);
}

/* Read what is there: a whole line (*pid set), more to wait for, or a bad line (closed early too). */
static enum portserver_line ps_read(int fd, char *buf, size_t *len, pid_t *pid)
{
	for (;;) {
		ssize_t n = recv(fd, buf + *len, PORTSERVER_LINE_MAX - *len, MSG_DONTWAIT);
		enum portserver_line st;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return PORTSERVER_LINE_MORE;
		if (n <= 0)
			return PORTSERVER_LINE_BAD; /* end of stream before the newline, or an error */
		*len += (size_t)n;
		st = portserver_parse_line(buf, *len, pid);
		if (st != PORTSERVER_LINE_MORE)
			return st;
	}
}

static void ps_conn_free(struct ps_conn *c)
{
	struct portserver *ps = c->ps;

	if (c->prev)
		c->prev->next = c->next;
	else
		ps->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ps->nconns--;
	event_free(c->ev);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static int ps_conn_wait(struct ps_conn *c)
{
	uint64_t now = mono_ms(), left = c->deadline > now ? c->deadline - now : 0;
	struct timeval tv = { .tv_sec = (time_t)(left / 1000), .tv_usec = (suseconds_t)(left % 1000) * 1000 };

	return event_add(c->ev, &tv);
}

static void ps_conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct ps_conn *c = arg;
	struct portserver *ps = c->ps;
	pid_t pid = 0;
	enum portserver_line st;

	if (what & EV_TIMEOUT) {
		ps->st.timeouts++;
		log_debug("portserver: no pid line from uid %u pid %d within %d ms", c->who.uid,
			  (int)c->who.pid, PORTSERVER_TIMEOUT_MS);
		ps_conn_free(c);
		return;
	}
	st = ps_read(c->fd, c->buf, &c->len, &pid);
	if (st == PORTSERVER_LINE_MORE && ps_conn_wait(c) == 0)
		return;
	if (st == PORTSERVER_LINE_PID) {
		ps_answer(ps, c->fd, &c->who, pid);
		c->fd = -1; /* consumed */
	} else {
		ps->st.malformed++;
	}
	ps_conn_free(c);
}

/* A line that did not come with the connection: wait for it, within the deadline. */
static void ps_conn_new(struct portserver *ps, int fd, const struct caller *who, const char *buf, size_t len)
{
	struct ps_conn *c;

	if (ps->nconns >= PORTSERVER_CONNS_MAX) {
		if (ps->st.overload++ % 1000 == 0)
			log_warn("portserver: %d connections are waiting for their line: closing new ones",
				 PORTSERVER_CONNS_MAX);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ps = ps;
	c->fd = fd;
	c->who = *who;
	c->deadline = mono_ms() + PORTSERVER_TIMEOUT_MS;
	c->len = len;
	memcpy(c->buf, buf, len);
	c->ev = event_new(ps->base, fd, EV_READ, ps_conn_event, c);
	if (!c->ev) {
		close(fd);
		free(c);
		return;
	}
	c->next = ps->conns;
	if (ps->conns)
		ps->conns->prev = c;
	ps->conns = c;
	ps->nconns++;
	if (ps_conn_wait(c) < 0)
		ps_conn_free(c);
}

static void ps_accepted(struct portserver *ps, int fd)
{
	struct caller who = { .pidfd = -1, .sock = -1 };
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char buf[PORTSERVER_LINE_MAX];
	size_t len = 0;
	pid_t pid = 0;

	/* Identity from the kernel, taken at connect time; never from the line. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		close(fd);
		return;
	}
	who.uid = cred.uid;
	who.gid = cred.gid;
	who.pid = cred.pid;
	/* portpicker writes its line right after connecting: it is usually here already. */
	switch (ps_read(fd, buf, &len, &pid)) {
	case PORTSERVER_LINE_PID:
		ps_answer(ps, fd, &who, pid);
		return;
	case PORTSERVER_LINE_MORE:
		ps_conn_new(ps, fd, &who, buf, len);
		return;
	case PORTSERVER_LINE_BAD:
		ps->st.malformed++;
		close(fd);
		return;
	}
}

static void ps_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct portserver *ps = arg;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(ps->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The connection stays in the backlog; retrying now would spin. */
				struct timeval tv = { 0, ACCEPT_BACKOFF_MS * 1000 };
				log_warn("portserver: accept: %s; pausing accepts for %d ms", strerror(errno),
					 ACCEPT_BACKOFF_MS);
				event_del(ps->accept_ev);
				evtimer_add(ps->backoff, &tv);
			} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_err("portserver: accept: %s", strerror(errno));
			}
			return;
		}
		ps_accepted(ps, fd);
	}
}

static void ps_on_backoff(evutil_socket_t fd, short what, void *arg)
{
	struct portserver *ps = arg;
	event_add(ps->accept_ev, NULL);
}

struct portserver *portserver_new(struct event_base *base, struct service *svc, int listen_fd,
				  const char *unlink_path)
{
	struct portserver *ps = calloc(1, sizeof(*ps));

	if (!ps) {
		close(listen_fd);
		return NULL;
	}
	ps->base = base;
	ps->svc = svc;
	ps->fd = listen_fd;
	if (unlink_path && !(ps->path = strdup(unlink_path)))
		goto fail;
	ps->accept_ev = event_new(base, listen_fd, EV_READ | EV_PERSIST, ps_on_accept, ps);
	ps->backoff = evtimer_new(base, ps_on_backoff, ps);
	if (!ps->accept_ev || !ps->backoff || event_add(ps->accept_ev, NULL) < 0)
		goto fail;
	return ps;
fail:
	portserver_free(ps);
	return NULL;
}

void portserver_free(struct portserver *ps)
{
	if (!ps)
		return;
	while (ps->conns)
		ps_conn_free(ps->conns);
	if (ps->accept_ev)
		event_free(ps->accept_ev);
	if (ps->backoff)
		event_free(ps->backoff);
	if (ps->fd >= 0)
		close(ps->fd);
	if (ps->path) {
		unlink(ps->path);
		free(ps->path);
	}
	free(ps);
}

void portserver_stats(const struct portserver *ps, struct portserver_stats *out)
{
	*out = ps->st;
}
