#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <event2/event.h>

#include "fdpass.h"
#include "log.h"
#include "service.h"

/* Requests handled per readable event before other connections get a turn. */
#define CONN_READ_BATCH 32

struct pending {
	size_t len, nfds;
	uint64_t new_lease;
	bool close;
	int fds[PORTD_FDS_MAX];
	uint8_t buf[];
};

/* A lease, and conn.cost just after the reply that granted it went to the kernel. */
struct sent_lease {
	uint64_t id, cost;
};

struct conn {
	int fd;
	struct service *svc;
	struct caller who;
	struct event *rd, *wr;
	struct pending *out;
	conn_closed_fn closed;
	void *ctx;
	struct conn *prev, *next;
	struct conn_quiet *quiet; /* until the first request */
	struct conn *qprev, *qnext;
	uint64_t since;
	uint64_t cost;               /* the most the replies handed to the kernel can cost, summed */
	struct sent_lease *unread;   /* leases of replies the client may not have read, oldest first */
	size_t nunread, unread_cap;
};

/*
 * Scratch space for one request and its reply. The daemon is single-threaded
 * and finishes each request before the next, so one of each serves all.
 */
static uint8_t rx_buf[PORTD_MSG_MAX];
static struct reply tx;

static void pending_free(struct pending *p)
{
	if (!p)
		return;
	fdpass_close_all(p->fds, p->nfds);
	free(p);
}

static void conn_quiet_remove(struct conn *c)
{
	struct conn_quiet *q = c->quiet;

	if (!q)
		return;
	if (c->qprev)
		c->qprev->qnext = c->qnext;
	else
		q->head = c->qnext;
	if (c->qnext)
		c->qnext->qprev = c->qprev;
	else
		q->tail = c->qprev;
	c->qprev = c->qnext = NULL;
	c->quiet = NULL;
}

void conn_quiet_add(struct conn *c, struct conn_quiet *q, uint64_t now_ms)
{
	conn_quiet_remove(c);
	c->quiet = q;
	c->since = now_ms;
	c->qprev = q->tail;
	c->qnext = NULL;
	if (q->tail)
		q->tail->qnext = c;
	else
		q->head = c;
	q->tail = c;
}

struct conn *conn_quiet_oldest(const struct conn_quiet *q, uint64_t *since_ms)
{
	if (q->head)
		*since_ms = q->head->since;
	return q->head;
}

/*
 * What a reply can cost in the send buffer, as SIOCOUTQ counts it (its skb's
 * truesize: 768 bytes for a small datagram on Linux 6.18): at most what a
 * datagram of the next size up in charge_lens[] costs, measured once, since
 * it depends on the kernel's build. 0 until a measurement succeeds (a failed
 * one, say for want of fds, is tried again next time).
 */
static const size_t charge_lens[] = { 64, 128, 256, 512, 1024, 2048, 4096, 8192, PORTD_MSG_MAX };
#define NCHARGES (sizeof(charge_lens) / sizeof(charge_lens[0]))

static bool charges_measure(int *charge)
{
	static uint8_t zeros[PORTD_MSG_MAX];
	int sv[2], before = 0, q;
	bool ok = true;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return false;
	for (size_t i = 0; ok && i < NCHARGES; i++) {
		ok = send(sv[0], zeros, charge_lens[i], MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)charge_lens[i] &&
		     ioctl(sv[0], SIOCOUTQ, &q) == 0 && q > before;
		charge[i] = q - before;
		before = q;
	}
	close(sv[0]);
	close(sv[1]);
	return ok;
}

static uint64_t reply_cost_max(size_t len)
{
	static int charge[NCHARGES];
	static bool measured;
	size_t i = 0;

	if (!measured && !(measured = charges_measure(charge)))
		return 0;
	while (i + 1 < NCHARGES && charge_lens[i] < len)
		i++;
	return (uint64_t)charge[i];
}

/* A reply of len bytes went to the kernel; remember the lease it grants until the client has read it. */
static void conn_sent(struct conn *c, uint64_t lease, size_t len)
{
	uint64_t cost = reply_cost_max(len);

	if (!cost) {
		c->nunread = 0; /* cannot tell what is read: let every lease live to its deadline */
		return;
	}
	c->cost += cost;
	if (!lease)
		return;
	if (c->nunread == c->unread_cap) {
		size_t cap = c->unread_cap ? 2 * c->unread_cap : 4;
		struct sent_lease *n = realloc(c->unread, cap * sizeof(*n));

		if (!n)
			return; /* untracked: the lease lives to its deadline */
		c->unread = n;
		c->unread_cap = cap;
	}
	c->unread[c->nunread++] = (struct sent_lease){ lease, c->cost };
}

/*
 * Forget the leases of replies the client may have read. The unread replies
 * are the newest, and queued bytes are what they cost; each cost at most
 * reply_cost_max(). A lease is surely unread when the replies sent after its
 * own cost less, at most, than queued: then its reply is among the unread.
 * Any other is taken as read: wrongly so, it lives to its deadline; the
 * other way round, a lease its client holds would end.
 */
static void conn_prune_unread(struct conn *c, int queued)
{
	size_t read = 0;

	while (read < c->nunread && c->cost - c->unread[read].cost >= (uint64_t)queued)
		read++;
	c->nunread -= read;
	memmove(c->unread, c->unread + read, c->nunread * sizeof(*c->unread));
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	conn_quiet_remove(c);
	free(c->unread);
	if (c->out) {
		/* Never delivered: the client does not know about this lease. */
		if (c->out->new_lease)
			service_abort_lease(c->svc, c->out->new_lease);
		pending_free(c->out);
	}
	if (c->rd)
		event_free(c->rd);
	if (c->wr)
		event_free(c->wr);
	service_caller_done(c->svc, &c->who);
	if (c->who.pidfd >= 0)
		close(c->who.pidfd);
	if (c->fd >= 0)
		close(c->fd);
	service_conn_count(c->svc, -1);
	free(c);
}

/*
 * discarded: the kernel threw away replies the client had not read
 * (ECONNRESET): the leases they granted end, as nobody knows of them.
 */
static void conn_close(struct conn *c, bool discarded)
{
	conn_closed_fn closed = c->closed;
	void *ctx = c->ctx;
	socklen_t len = sizeof(int);
	int err = 0;

	/*
	 * A client closing with replies unread sets ECONNRESET and end of
	 * stream together: a recv() or send() of ours already past its error
	 * check returns 0 or EPIPE instead. The error is still there.
	 */
	if (!discarded && c->nunread && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0)
		discarded = err == ECONNRESET;
	if (discarded) {
		if (c->nunread)
			log_debug("connection of uid %u pid %d closed with replies unread: ending %zu "
				  "lease(s) they granted", c->who.uid, (int)c->who.pid, c->nunread);
		for (size_t i = 0; i < c->nunread; i++)
			service_discard_lease(c->svc, c->unread[i].id);
		c->nunread = 0;
	}
	if (closed)
		closed(c, ctx);
	conn_free(c);
}

/* Keep a reply the socket could not take yet, with our own copies of its fds. */
static int conn_defer(struct conn *c, const struct reply *r)
{
	struct pending *p = malloc(sizeof(*p) + r->len);

	if (!p)
		return -ENOMEM;
	p->len = r->len;
	p->nfds = 0;
	p->new_lease = r->new_lease;
	p->close = r->close;
	memcpy(p->buf, r->buf, r->len);
	for (size_t i = 0; i < r->nfds; i++) {
		p->fds[i] = fcntl(r->fds[i], F_DUPFD_CLOEXEC, 3);
		if (p->fds[i] < 0) {
			int e = -errno;
			pending_free(p);
			return e;
		}
		p->nfds++;
	}
	c->out = p;
	event_del(c->rd);
	event_add(c->wr, NULL);
	return 0;
}

/* Returns false if the connection was closed. */
static bool conn_reply(struct conn *c, struct reply *r)
{
	ssize_t n;

	if (!r->len)
		return true;
	n = fdpass_send(c->fd, r->buf, r->len, r->fds, r->nfds, MSG_DONTWAIT);
	if (n == -EAGAIN && conn_defer(c, r) == 0)
		return true;
	if (n < 0) {
		if (r->new_lease)
			service_abort_lease(c->svc, r->new_lease);
		conn_close(c, n == -ECONNRESET);
		return false;
	}
	conn_sent(c, r->new_lease, r->len);
	if (r->close) {
		conn_close(c, false);
		return false;
	}
	return true;
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct pending *p = c->out;
	ssize_t n = fdpass_send(c->fd, p->buf, p->len, p->fds, p->nfds, MSG_DONTWAIT);
	bool close_after;

	if (n == -EAGAIN)
		return;
	if (n < 0) {
		conn_close(c, n == -ECONNRESET); /* aborts the pending lease: c->out is still set */
		return;
	}
	c->out = NULL;
	conn_sent(c, p->new_lease, p->len);
	close_after = p->close;
	pending_free(p);
	if (close_after) {
		conn_close(c, false);
		return;
	}
	event_del(c->wr);
	event_add(c->rd, NULL);
}

/*
 * After a request arrived: forget the leases of replies the client has read.
 * The queue is read after recv(), never before: a client may read a reply and
 * send its next request between the two, and a count from before would call
 * that reply unread and end a lease the client holds. A client that closes
 * with replies unread makes the kernel set ECONNRESET on this socket first
 * and discard the replies after (unix_release_sock()), so a queue read then
 * may be short by the discarded ones: SO_ERROR, read after the queue, tells
 * (and clears the error, so the close happens here). Returns false if the
 * connection was closed.
 */
static bool conn_prune(struct conn *c)
{
	socklen_t len = sizeof(int);
	int queued, err = 0;

	if (ioctl(c->fd, SIOCOUTQ, &queued) < 0)
		return true; /* cannot tell: keep them all */
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
		conn_close(c, err == ECONNRESET);
		return false;
	}
	conn_prune_unread(c, queued);
	return true;
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	for (int i = 0; i < CONN_READ_BATCH && !c->out; i++) {
		int fds[PORTD_FDS_MAX];
		size_t nfds = PORTD_FDS_MAX;
		ssize_t n = fdpass_recv(c->fd, rx_buf, sizeof(rx_buf), fds, &nfds, MSG_DONTWAIT);

		if (n == -EAGAIN || n == -EINTR)
			return;
		if (n <= 0) {
			/* End of stream, or a datagram we refuse to read (truncated, too many fds). */
			if (n < 0 && n != -ECONNRESET)
				log_debug("connection of uid %u pid %d dropped: %s", c->who.uid,
					  (int)c->who.pid, strerror((int)-n));
			conn_close(c, n == -ECONNRESET);
			return;
		}
		if (c->nunread && !conn_prune(c)) {
			fdpass_close_all(fds, nfds);
			return;
		}
		conn_quiet_remove(c);
		service_handle(c->svc, &c->who, rx_buf, (size_t)n, nfds, &tx);
		fdpass_close_all(fds, nfds); /* no request carries fds */
		if (!conn_reply(c, &tx))
			return;
	}
}

struct conn *conn_new(struct event_base *base, struct service *svc, int fd,
		      conn_closed_fn closed, void *ctx)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (!c) {
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->svc = svc;
	c->closed = closed;
	c->ctx = ctx;
	c->who.pidfd = -1;
	service_conn_count(svc, 1);
	/* Identity from the kernel, taken at connect time; never from a message. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		conn_free(c);
		return NULL;
	}
	c->who.uid = cred.uid;
	c->who.gid = cred.gid;
	c->who.pid = cred.pid;
	c->who.sock = fd;
	c->rd = event_new(base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->wr = event_new(base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	if (!c->rd || !c->wr || event_add(c->rd, NULL) < 0) {
		conn_free(c);
		return NULL;
	}
	return c;
}

uint32_t conn_uid(const struct conn *c) { return c->who.uid; }
struct conn *conn_next(const struct conn *c) { return c->next; }

void conn_link(struct conn *c, struct conn **head)
{
	c->prev = NULL;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
}

void conn_unlink(struct conn *c, struct conn **head)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}
