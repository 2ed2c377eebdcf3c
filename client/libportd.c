/*
 * libportd: the client side of the portd protocol.
 *
 * Everything is built from two pieces: req_send() encodes one request with
 * proto/codec and sends it without blocking; portd_recv() reads and decodes
 * one reply without blocking. The synchronous calls are call(): send (waiting
 * for POLLOUT while the socket buffer is full), then poll for POLLIN and
 * portd_recv() until the reply with our request id arrives, all against one
 * deadline on the monotonic clock. Replies to other ids (late answers to an
 * earlier call that timed out) are dropped, with any fds they carried closed.
 *
 * Errors: negative errno for local and transport failures, -PORTD_E_* for
 * answers of the daemon (-(PORTD_E_BASE + wire result)). -PORTD_E_PROTO also
 * covers anything the daemon sent that this library cannot read. EPIPE is
 * reported as -ECONNRESET, so "the daemon hung up" has a single error.
 *
 * No logging, no exit, no global mutable state: everything lives in the
 * struct portd handle, which one thread at a time may use.
 */
#include "portd.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "fdpass.h"
#include "protocol.h"
#include "sockpath.h"

/* The public constants are the wire constants under other names. */
_Static_assert(PORTD_PROTOCOL_VERSION == PORTD_PROTO_VERSION, "protocol version");
_Static_assert(PORTD_TRANSPORT_TCP == PORTD_TCP, "tcp");
_Static_assert(PORTD_TRANSPORT_UDP == PORTD_UDP, "udp");
_Static_assert(PORTD_TRANSPORT_BOTH == PORTD_BOTH, "both");
_Static_assert(PORTD_FLAG_FD == PORTD_LEASE_F_FD, "fd flag");
_Static_assert(PORTD_FLAG_TIE == PORTD_LEASE_F_TIE, "tie flag");
_Static_assert(PORTD_FLAG_CONSECUTIVE == PORTD_LEASE_F_CONSECUTIVE, "consecutive flag");
_Static_assert(PORTD_FLAG_PORTSERVER == PORTD_LEASE_F_PORTSERVER, "portserver flag");
_Static_assert((PORTD_FLAG_FD | PORTD_FLAG_TIE | PORTD_FLAG_CONSECUTIVE) == PORTD_LEASE_F_REQUEST,
	       "request flags");
_Static_assert((PORTD_LEASE_F_REQUEST | PORTD_FLAG_PORTSERVER) == PORTD_LEASE_F_ALL, "all flags");
_Static_assert(PORTD_NO_DEADLINE == PORTD_LIST_NO_DEADLINE, "no deadline");
_Static_assert(PORTD_MAX_EXCLUDE == PORTD_EXCLUDE_MAX, "max exclude");
_Static_assert(PORTD_STATUS_RESERVED == PORTD_STATUS_F_RESERVED, "status reserved");
_Static_assert(PORTD_STATUS_EPH_LOW == PORTD_STATUS_F_EPH_LOW, "status eph low");
_Static_assert(PORTD_STATUS_COUNT_FDS == PORTD_STATUS_REQ_F_FDS, "status count fds");
_Static_assert(PORTD_MAX_PORTS == PORTD_LEASE_PORTS_MAX, "max ports");
_Static_assert(PORTD_MAX_FDS == PORTD_FDS_MAX, "max fds");
_Static_assert(sizeof(((struct portd_status *)0)->version) ==
		       sizeof(((struct proto_status *)0)->version), "status version");
/* -(PORTD_E_BASE + result): every wire result has its PORTD_E_* twin. */
_Static_assert(PORTD_E_PROTO == PORTD_E_BASE + PORTD_R_PROTO, "E_PROTO");
_Static_assert(PORTD_E_VERSION == PORTD_E_BASE + PORTD_R_VERSION, "E_VERSION");
_Static_assert(PORTD_E_BADTYPE == PORTD_E_BASE + PORTD_R_BADTYPE, "E_BADTYPE");
_Static_assert(PORTD_E_INVAL == PORTD_E_BASE + PORTD_R_INVAL, "E_INVAL");
_Static_assert(PORTD_E_NOENT == PORTD_E_BASE + PORTD_R_NOENT, "E_NOENT");
_Static_assert(PORTD_E_PERM == PORTD_E_BASE + PORTD_R_PERM, "E_PERM");
_Static_assert(PORTD_E_TTL == PORTD_E_BASE + PORTD_R_TTL, "E_TTL");
_Static_assert(PORTD_E_QUOTA_UID == PORTD_E_BASE + PORTD_R_QUOTA_UID, "E_QUOTA_UID");
_Static_assert(PORTD_E_QUOTA_TOTAL == PORTD_E_BASE + PORTD_R_QUOTA_TOTAL, "E_QUOTA_TOTAL");
_Static_assert(PORTD_E_NOPORTS == PORTD_E_BASE + PORTD_R_NOPORTS, "E_NOPORTS");
_Static_assert(PORTD_E_BUSY == PORTD_E_BASE + PORTD_R_BUSY, "E_BUSY");
_Static_assert(PORTD_E_INTERNAL == PORTD_E_BASE + PORTD_R_INTERNAL, "E_INTERNAL");
_Static_assert(PORTD_E_UNSUPPORTED == PORTD_E_BASE + PORTD_R_UNSUPPORTED, "E_UNSUPPORTED");
_Static_assert(PORTD_E_NOTSUP_TRANSPORT == PORTD_E_BASE + PORTD_R_NOTSUP_TRANSPORT, "E_NOTSUP_TRANSPORT");
_Static_assert(PORTD_E_MAX == PORTD_E_BASE + PORTD_R_MAX, "E_MAX");
_Static_assert(PORTD_REPLY_LEASE == PORTD_MSG_LEASE && PORTD_REPLY_RENEW == PORTD_MSG_RENEW &&
		       PORTD_REPLY_RELEASE == PORTD_MSG_RELEASE && PORTD_REPLY_LIST == PORTD_MSG_LIST &&
		       PORTD_REPLY_STATUS == PORTD_MSG_STATUS,
	       "reply types are the message types");

/* Largest request this library sends: header + the largest request body. */
#define REQ_BUF_SIZE (PORTD_HDR_SIZE + PORTD_LEASE_REQ_MAX)
_Static_assert(PORTD_LEASE_REQ_SIZE >= PORTD_RENEW_REQ_SIZE && PORTD_LEASE_REQ_SIZE >= PORTD_RELEASE_REQ_SIZE &&
		       PORTD_LEASE_REQ_SIZE >= PORTD_LIST_REQ_SIZE && PORTD_LEASE_REQ_SIZE >= PORTD_STATUS_REQ_SIZE,
	       "REQ_BUF_SIZE holds every request");

struct portd {
	int fd;
	uint32_t next_id; /* last request id used; ids are never 0 */
	uint32_t detail;  /* detail of the last reply received */
	uint32_t hello_id; /* the HELLO sent at connect, until its reply is read; 0 after */
	uint8_t buf[PORTD_MSG_MAX]; /* one received datagram */
};

/* One request, as both the async and the sync calls build it. */
struct req {
	uint16_t type;
	union {
		struct proto_lease_req lease;
		struct proto_renew_req renew;
		struct proto_release_req release;
		struct proto_list_req list;
		uint32_t status_flags;
	} u;
};

static int conn_error(int err)
{
	/* Writing to a socket whose peer has gone gives EPIPE; report one error for a hang-up. */
	return err == -EPIPE ? -ECONNRESET : err;
}

/* ---- time ---------------------------------------------------------------- */

struct deadline {
	bool forever;
	struct timespec at; /* CLOCK_MONOTONIC */
};

static void deadline_init(struct deadline *d, int timeout_ms)
{
	d->forever = timeout_ms < 0;
	if (d->forever)
		return;
	clock_gettime(CLOCK_MONOTONIC, &d->at);
	d->at.tv_sec += timeout_ms / 1000;
	d->at.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (d->at.tv_nsec >= 1000000000L) {
		d->at.tv_sec++;
		d->at.tv_nsec -= 1000000000L;
	}
}

/* Milliseconds left for poll(), rounded up; -1 = forever; 0 = expired. */
static int deadline_left_ms(const struct deadline *d)
{
	struct timespec now;
	long long ns;

	if (d->forever)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (long long)(d->at.tv_sec - now.tv_sec) * 1000000000LL + (d->at.tv_nsec - now.tv_nsec);
	if (ns <= 0)
		return 0;
	ns = (ns + 999999) / 1000000;
	return ns > INT_MAX ? INT_MAX : (int)ns;
}

/*
 * Wait until the socket is ready for events, or the deadline passes. A zero
 * timeout still polls once, so that a reply already waiting is not missed.
 * Returns 0 when the caller should try again, -ECONNRESET if the daemon hung
 * up without the socket becoming ready, -ETIMEDOUT or -errno.
 */
static int wait_ready(int fd, short events, const struct deadline *d)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	for (;;) {
		n = poll(&pfd, 1, deadline_left_ms(d));
		if (n > 0)
			break;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
		if (deadline_left_ms(d) == 0)
			return -ETIMEDOUT;
	}
	if (pfd.revents & POLLNVAL)
		return -EBADF;
	/*
	 * A hang-up with data still queued reads the data first (recv returns
	 * 0 only after it); a hang-up while waiting to write cannot resolve.
	 */
	if ((pfd.revents & (POLLHUP | POLLERR)) && !(pfd.revents & events & POLLIN))
		return -ECONNRESET;
	return 0;
}

/* ---- connection ------------------------------------------------------------ */

int portd_socket_path(char *buf, size_t len)
{
	if (!buf)
		return -EINVAL;
	return sockpath_default(buf, len);
}

static int req_send(struct portd *p, const struct req *q, uint32_t *req_id);

int portd_connect(const char *path, struct portd **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char def[sizeof(sa.sun_path)];
	struct portd *p;
	size_t len;
	int r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path) {
		r = portd_socket_path(def, sizeof(def));
		if (r < 0)
			return r;
		path = def;
	}
	len = strlen(path);
	if (len == 0)
		return -ENOENT;
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len + 1);

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (p->fd < 0) {
		r = -errno;
		free(p);
		return r;
	}
	/*
	 * A non-blocking AF_UNIX connect completes or fails at once; EAGAIN
	 * means the daemon's listen backlog is full, and is reported as is.
	 */
	if (connect(p->fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(p->fd);
		free(p);
		return r;
	}
	/*
	 * portd closes a connection that sends nothing for a while. HELLO at
	 * once makes this one a talking connection, however long the caller
	 * waits before its first request; portd_recv() reads the reply first.
	 */
	r = req_send(p, &(struct req){ .type = PORTD_MSG_HELLO }, &p->hello_id);
	if (r < 0) {
		close(p->fd);
		free(p);
		return r;
	}
	*out = p;
	return 0;
}

void portd_disconnect(struct portd *p)
{
	if (!p)
		return;
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

int portd_fd(const struct portd *p)
{
	return p ? p->fd : -EINVAL;
}

uint32_t portd_detail(const struct portd *p)
{
	return p ? p->detail : 0;
}

/* ---- requests ---------------------------------------------------------------- */

static uint32_t next_req_id(struct portd *p)
{
	if (++p->next_id == 0)
		p->next_id = 1;
	return p->next_id;
}

static int req_send(struct portd *p, const struct req *q, uint32_t *req_id)
{
	uint8_t buf[REQ_BUF_SIZE];
	uint32_t id;
	ssize_t n;

	if (!p)
		return -EINVAL;
	id = next_req_id(p);
	switch (q->type) {
	case PORTD_MSG_LEASE:
		n = proto_encode_lease_req(buf, sizeof(buf), id, &q->u.lease);
		break;
	case PORTD_MSG_RENEW:
		n = proto_encode_renew_req(buf, sizeof(buf), id, &q->u.renew);
		break;
	case PORTD_MSG_RELEASE:
		n = proto_encode_release_req(buf, sizeof(buf), id, &q->u.release);
		break;
	case PORTD_MSG_LIST:
		n = proto_encode_list_req(buf, sizeof(buf), id, &q->u.list);
		break;
	case PORTD_MSG_STATUS:
		/* The empty body unless a flag is asked: what every version-3 daemon reads. */
		n = q->u.status_flags ? proto_encode_status_req_flags(buf, sizeof(buf), id, q->u.status_flags)
				      : proto_encode_status_req(buf, sizeof(buf), id);
		break;
	case PORTD_MSG_HELLO:
		n = proto_encode_hello_req(buf, sizeof(buf), id);
		break;
	default:
		return -EINVAL;
	}
	if (n < 0)
		return (int)n;
	n = fdpass_send(p->fd, buf, (size_t)n, NULL, 0, MSG_DONTWAIT);
	if (n < 0)
		return conn_error((int)n);
	if (req_id)
		*req_id = id;
	return 0;
}

/* Fds a lease reply must carry: one per port, two per port for BOTH. */
static size_t lease_fd_count(uint32_t flags, uint8_t transport, uint16_t count)
{
	if (!(flags & PORTD_LEASE_F_FD))
		return 0;
	return (size_t)count * (transport == PORTD_BOTH ? 2 : 1);
}

/*
 * Check the options here rather than let the daemon do it: a request the
 * codec cannot decode makes the daemon drop the whole connection.
 */
static int lease_req_build(const struct portd_lease_opts *o, struct req *q)
{
	if (!o || o->pid < 0 || o->nexclude > PORTD_MAX_EXCLUDE || (o->nexclude && !o->exclude))
		return -EINVAL;
	memset(q, 0, sizeof(*q));
	q->type = PORTD_MSG_LEASE;
	q->u.lease.flags = o->flags;
	q->u.lease.ttl = o->ttl;
	q->u.lease.count = o->count;
	q->u.lease.transport = o->transport;
	q->u.lease.port = o->port;
	q->u.lease.pid = (uint32_t)o->pid;
	q->u.lease.nexclude = (uint16_t)o->nexclude;
	for (size_t i = 0; i < o->nexclude; i++) {
		q->u.lease.exclude[i].lo = o->exclude[i].lo;
		q->u.lease.exclude[i].hi = o->exclude[i].hi;
	}
	return proto_lease_req_valid(&q->u.lease) ? 0 : -EINVAL;
}

static int renew_req_build(uint64_t id, uint32_t ttl, struct req *q)
{
	if (id == 0)
		return -EINVAL;
	memset(q, 0, sizeof(*q));
	q->type = PORTD_MSG_RENEW;
	q->u.renew.id = id;
	q->u.renew.ttl = ttl;
	return 0;
}

static int release_req_build(uint64_t id, uint16_t port, uint8_t transport, struct req *q)
{
	if (id == 0 && port == 0)
		return -EINVAL;
	if (transport > PORTD_BOTH)
		return -EINVAL;
	memset(q, 0, sizeof(*q));
	q->type = PORTD_MSG_RELEASE;
	q->u.release.id = id;
	/* The port and transport only mean something when releasing by port. */
	q->u.release.port = id == 0 ? port : 0;
	q->u.release.transport = id == 0 ? transport : 0;
	return 0;
}

static void list_req_build(uint64_t after_id, struct req *q)
{
	memset(q, 0, sizeof(*q));
	q->type = PORTD_MSG_LIST;
	q->u.list.after_id = after_id;
}

int portd_send_lease(struct portd *p, const struct portd_lease_opts *o, uint32_t *req_id)
{
	struct req q;
	int r = lease_req_build(o, &q);

	return r < 0 ? r : req_send(p, &q, req_id);
}

int portd_send_renew(struct portd *p, uint64_t id, uint32_t ttl, uint32_t *req_id)
{
	struct req q;
	int r = renew_req_build(id, ttl, &q);

	return r < 0 ? r : req_send(p, &q, req_id);
}

int portd_send_release(struct portd *p, uint64_t id, uint16_t port, uint8_t transport, uint32_t *req_id)
{
	struct req q;
	int r = release_req_build(id, port, transport, &q);

	return r < 0 ? r : req_send(p, &q, req_id);
}

int portd_send_list(struct portd *p, uint64_t after_id, uint32_t *req_id)
{
	struct req q;

	list_req_build(after_id, &q);
	return req_send(p, &q, req_id);
}

int portd_send_status(struct portd *p, uint32_t *req_id)
{
	return portd_send_status_flags(p, 0, req_id);
}

int portd_send_status_flags(struct portd *p, uint32_t flags, uint32_t *req_id)
{
	struct req q = { .type = PORTD_MSG_STATUS, .u.status_flags = flags };

	if (flags & ~PORTD_STATUS_REQ_F_ALL)
		return -EINVAL;
	return req_send(p, &q, req_id);
}

/* ---- replies -------------------------------------------------------------------- */

void portd_lease_close_fds(struct portd_lease *l)
{
	if (!l)
		return;
	if (l->nfds > PORTD_MAX_FDS)
		l->nfds = PORTD_MAX_FDS;
	fdpass_close_all(l->fds, l->nfds);
	l->nfds = 0;
}

/* Release what a reply owns: the fds of a lease, the array of a list. */
static void reply_free(struct portd_reply *r)
{
	if (r->error != 0)
		return;
	if (r->type == PORTD_REPLY_LEASE) {
		portd_lease_close_fds(&r->u.lease);
	} else if (r->type == PORTD_REPLY_LIST) {
		free(r->u.list.leases);
		r->u.list.leases = NULL;
		r->u.list.count = 0;
	}
}

static void lease_from_proto(struct portd_lease *l, const struct proto_lease_rep *m)
{
	l->id = m->id;
	l->ttl = m->ttl;
	l->flags = m->flags;
	l->transport = m->transport;
	l->count = m->count;
	memcpy(l->ports, m->ports, sizeof(l->ports));
}

static void info_from_proto(struct portd_lease_info *i, const struct proto_lease_info *e)
{
	memset(i, 0, sizeof(*i));
	i->id = e->id;
	i->expires_in_ms = e->expires_in_ms;
	i->uid = e->uid;
	i->pid = (pid_t)e->pid;
	i->tied_pid = (pid_t)e->tied_pid;
	i->ttl = e->ttl;
	i->flags = e->flags;
	i->transport = e->transport;
	i->count = e->nports;
	memcpy(i->ports, e->ports, sizeof(i->ports));
}

static void status_from_proto(struct portd_status *s, const struct proto_status *m)
{
	s->uptime_ms = m->uptime_ms;
	s->leases = m->leases;
	s->ports_held = m->ports_held;
	s->quarantined = m->quarantined;
	s->connections = m->connections;
	s->max_leases = m->max_leases;
	s->max_per_uid = m->max_per_uid;
	s->default_ttl = m->default_ttl;
	s->max_ttl = m->max_ttl;
	s->quarantine = m->quarantine;
	s->range_lo = m->range_lo;
	s->range_hi = m->range_hi;
	s->caller_leases = m->caller_leases;
	s->flags = m->flags;
	memcpy(s->version, m->version, sizeof(s->version));
	s->version[sizeof(s->version) - 1] = '\0';
	s->heap_bytes = m->heap_bytes;
	s->open_fds = m->open_fds;
	s->eph_lo = m->eph_lo;
	s->eph_hi = m->eph_hi;
	s->eph_in_use = m->eph_in_use;
}

static int list_decode(const uint8_t *body, size_t len, struct portd_reply *r)
{
	struct proto_list_iter it;
	struct proto_lease_info e;
	uint32_t count, i;
	bool more;

	if (proto_decode_list_rep(body, len, &count, &more, &it) < 0)
		return -PORTD_E_PROTO;
	r->u.list.more = more;
	r->u.list.count = 0;
	r->u.list.leases = NULL;
	if (count == 0)
		return 0;
	/* count is bounded by the datagram size: the codec checked the entries fill the body. */
	r->u.list.leases = calloc(count, sizeof(*r->u.list.leases));
	if (!r->u.list.leases)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		if (proto_list_next(&it, &e) != 1) {
			free(r->u.list.leases);
			r->u.list.leases = NULL;
			return -PORTD_E_PROTO;
		}
		info_from_proto(&r->u.list.leases[i], &e);
	}
	r->u.list.count = count;
	return 0;
}

/* The reply type of a header type, 0 if it is not a reply this library knows. */
static int reply_type(uint16_t type)
{
	uint16_t t = type & (uint16_t)~PORTD_MSG_REPLY;

	if (!(type & PORTD_MSG_REPLY) || t < PORTD_MSG_LEASE || t > PORTD_MSG_HELLO)
		return 0;
	return t;
}

/*
 * Decode the datagram in p->buf into *r. fds/nfds are what came with it;
 * they end up in r->u.lease or are left for the caller to close.
 */
static int reply_decode(struct portd *p, size_t n, int *fds, size_t nfds, struct portd_reply *r)
{
	struct proto_hdr h;
	const uint8_t *body;
	size_t blen;
	uint32_t result, detail;
	int ret;

	ret = proto_hdr_decode(p->buf, n, &h);
	if (ret == -EPROTONOSUPPORT) {
		/*
		 * Another protocol version. The header and the error reply are
		 * frozen across versions, so a version error can still be read;
		 * anything else cannot.
		 */
		if (reply_type(h.type) == 0 || nfds != 0)
			return -PORTD_E_PROTO;
		if (proto_decode_result(proto_body(p->buf), n - PORTD_HDR_SIZE, &result, &detail) < 0 ||
		    result != PORTD_R_VERSION)
			return -PORTD_E_PROTO;
		r->req_id = h.id;
		r->type = reply_type(h.type);
		r->error = -PORTD_E_VERSION;
		r->detail = detail;
		return 0;
	}
	if (ret < 0)
		return -PORTD_E_PROTO;
	r->req_id = h.id;
	r->type = reply_type(h.type);
	if (r->type == 0)
		return -PORTD_E_PROTO;
	body = proto_body(p->buf);
	blen = n - PORTD_HDR_SIZE;
	if (proto_decode_result(body, blen, &result, &detail) < 0)
		return -PORTD_E_PROTO;
	if (result != PORTD_R_OK) {
		/*
		 * A result above PORTD_R_MAX comes from a newer daemon: pass it
		 * on as -(PORTD_E_BASE + result), which portd_strerror() calls
		 * an unknown portd error, as long as it stays below 2 * BASE.
		 */
		if (result >= PORTD_E_BASE || nfds != 0)
			return -PORTD_E_PROTO;
		r->error = -(int)(PORTD_E_BASE + result);
		r->detail = detail;
		return 0;
	}

	switch (r->type) {
	case PORTD_REPLY_LEASE: {
		struct proto_lease_rep m;

		if (proto_decode_lease_rep(body, blen, &m) < 0)
			return -PORTD_E_PROTO;
		/* Exactly the fds the lease promises, or none at all. */
		if (nfds != lease_fd_count(m.flags, m.transport, m.count))
			return -PORTD_E_PROTO;
		lease_from_proto(&r->u.lease, &m);
		memcpy(r->u.lease.fds, fds, nfds * sizeof(*fds));
		r->u.lease.nfds = nfds;
		return 0;
	}
	case PORTD_REPLY_RENEW: {
		struct proto_renew_rep m;

		if (nfds != 0 || proto_decode_renew_rep(body, blen, &m) < 0)
			return -PORTD_E_PROTO;
		r->u.ttl = m.ttl;
		return 0;
	}
	case PORTD_REPLY_RELEASE:
		if (nfds != 0 || proto_decode_release_rep(body, blen, &r->u.released_id) < 0)
			return -PORTD_E_PROTO;
		return 0;
	case PORTD_REPLY_LIST:
		if (nfds != 0)
			return -PORTD_E_PROTO;
		return list_decode(body, blen, r);
	case PORTD_REPLY_STATUS: {
		struct proto_status m;

		if (nfds != 0 || proto_decode_status_rep(body, blen, &m) < 0)
			return -PORTD_E_PROTO;
		status_from_proto(&r->u.status, &m);
		return 0;
	}
	case PORTD_MSG_HELLO: { /* internal: portd_recv() consumes it */
		uint32_t uid, pid;

		if (nfds != 0 || proto_decode_hello_rep(body, blen, &uid, &pid) < 0)
			return -PORTD_E_PROTO;
		return 0;
	}
	}
	return -PORTD_E_PROTO;
}

/* Read one datagram into *r: 0, -EAGAIN, or an error (fds closed). */
static int recv_one(struct portd *p, struct portd_reply *r)
{
	int fds[PORTD_FDS_MAX];
	size_t nfds = PORTD_FDS_MAX, i;
	ssize_t n;
	int ret;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < PORTD_MAX_FDS; i++)
		r->u.lease.fds[i] = -1;

	n = fdpass_recv(p->fd, p->buf, sizeof(p->buf), fds, &nfds, MSG_DONTWAIT);
	if (n == 0)
		return -ECONNRESET;
	if (n == -EMSGSIZE || n == -EBADMSG)
		return -PORTD_E_PROTO; /* too long, or fds dropped: fdpass closed them */
	if (n < 0)
		return conn_error((int)n);

	ret = reply_decode(p, (size_t)n, fds, nfds, r);
	if (ret < 0) {
		fdpass_close_all(fds, nfds);
		memset(r, 0, sizeof(*r));
		for (i = 0; i < PORTD_MAX_FDS; i++)
			r->u.lease.fds[i] = -1;
		return ret;
	}
	p->detail = r->detail;
	return 0;
}

int portd_recv(struct portd *p, struct portd_reply *r)
{
	int ret;

	if (!p || !r)
		return -EINVAL;
	ret = recv_one(p, r);
	if (ret == 0 && p->hello_id && r->req_id == p->hello_id) {
		/* The answer to connecting: an error here (another protocol version) ends the connection. */
		p->hello_id = 0;
		if (r->error)
			return r->error;
		if (r->type != PORTD_MSG_HELLO)
			return -PORTD_E_PROTO;
		ret = recv_one(p, r);
	}
	if (ret == 0 && r->type == PORTD_MSG_HELLO)
		return -PORTD_E_PROTO; /* only the first reply may answer a HELLO */
	return ret;
}

/* ---- synchronous calls --------------------------------------------------------- */

/*
 * Send q and wait for its reply, until d. On 0, *r holds the reply (its
 * error may be set) and owns what the reply carried.
 */
static int call(struct portd *p, const struct req *q, struct portd_reply *r, const struct deadline *d)
{
	uint32_t id;
	int ret;

	if (!p)
		return -EINVAL;
	for (;;) {
		ret = req_send(p, q, &id);
		if (ret != -EAGAIN)
			break;
		ret = wait_ready(p->fd, POLLOUT, d);
		if (ret < 0)
			return ret;
	}
	if (ret < 0)
		return ret;

	/*
	 * Wait first: the reply is almost never there yet when the request has
	 * just been sent, so a receive first would cost a failed syscall.
	 */
	for (;;) {
		ret = wait_ready(p->fd, POLLIN, d);
		if (ret < 0)
			return ret;
		ret = portd_recv(p, r);
		if (ret == -EAGAIN)
			continue;
		if (ret < 0)
			return ret;
		if (r->req_id == id)
			break;
		reply_free(r); /* a late answer to an earlier request */
	}
	if (r->error == 0 && r->type != q->type) {
		reply_free(r);
		return -PORTD_E_PROTO;
	}
	return 0;
}

int portd_lease(struct portd *p, const struct portd_lease_opts *o, struct portd_lease *out, int timeout_ms)
{
	struct portd_reply r;
	struct deadline d;
	struct req q;
	int ret;

	if (!out)
		return -EINVAL;
	ret = lease_req_build(o, &q);
	if (ret < 0)
		return ret;
	deadline_init(&d, timeout_ms);
	ret = call(p, &q, &r, &d);
	if (ret < 0)
		return ret;
	if (r.error)
		return r.error;
	/* The daemon grants what was asked, or refuses: anything else is a broken reply. */
	if (r.u.lease.count != o->count || r.u.lease.transport != o->transport ||
	    (r.u.lease.flags & PORTD_FLAG_FD) != (o->flags & PORTD_FLAG_FD) ||
	    (o->port != 0 && r.u.lease.ports[0] != o->port)) {
		reply_free(&r);
		return -PORTD_E_PROTO;
	}
	*out = r.u.lease;
	return 0;
}

int portd_renew(struct portd *p, uint64_t id, uint32_t ttl, uint32_t *granted, int timeout_ms)
{
	struct portd_reply r;
	struct deadline d;
	struct req q;
	int ret;

	ret = renew_req_build(id, ttl, &q);
	if (ret < 0)
		return ret;
	deadline_init(&d, timeout_ms);
	ret = call(p, &q, &r, &d);
	if (ret < 0)
		return ret;
	if (r.error)
		return r.error;
	if (granted)
		*granted = r.u.ttl;
	return 0;
}

static int release_common(struct portd *p, uint64_t id, uint16_t port, uint8_t transport, uint64_t *released,
			  int timeout_ms)
{
	struct portd_reply r;
	struct deadline d;
	struct req q;
	int ret;

	ret = release_req_build(id, port, transport, &q);
	if (ret < 0)
		return ret;
	deadline_init(&d, timeout_ms);
	ret = call(p, &q, &r, &d);
	if (ret < 0)
		return ret;
	if (r.error)
		return r.error;
	if (id != 0 && r.u.released_id != id)
		return -PORTD_E_PROTO;
	if (released)
		*released = r.u.released_id;
	return 0;
}

int portd_release(struct portd *p, uint64_t id, int timeout_ms)
{
	if (id == 0)
		return -EINVAL;
	return release_common(p, id, 0, 0, NULL, timeout_ms);
}

int portd_release_port(struct portd *p, uint16_t port, uint8_t transport, uint64_t *id, int timeout_ms)
{
	if (port == 0)
		return -EINVAL;
	return release_common(p, 0, port, transport, id, timeout_ms);
}

int portd_list(struct portd *p, struct portd_lease_info **out, int timeout_ms)
{
	struct portd_lease_info *all = NULL, *grown;
	size_t n = 0, i;
	uint64_t after = 0;
	bool more;
	struct portd_reply r;
	struct deadline d;
	struct req q;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	deadline_init(&d, timeout_ms);
	for (;;) {
		list_req_build(after, &q);
		ret = call(p, &q, &r, &d);
		if (ret < 0)
			goto fail;
		if (r.error) {
			ret = r.error;
			goto fail;
		}
		/*
		 * Ids must keep rising and a page that says "more" must not be
		 * empty, or a broken daemon could keep this loop going forever.
		 */
		for (i = 0; i < r.u.list.count; i++) {
			if (r.u.list.leases[i].id <= after)
				break;
			after = r.u.list.leases[i].id;
		}
		if (i < r.u.list.count || (r.u.list.more && r.u.list.count == 0)) {
			reply_free(&r);
			ret = -PORTD_E_PROTO;
			goto fail;
		}
		if (n + r.u.list.count > INT_MAX) {
			reply_free(&r);
			ret = -EOVERFLOW;
			goto fail;
		}
		if (r.u.list.count > 0) {
			grown = realloc(all, (n + r.u.list.count) * sizeof(*all));
			if (!grown) {
				reply_free(&r);
				ret = -ENOMEM;
				goto fail;
			}
			all = grown;
			memcpy(all + n, r.u.list.leases, r.u.list.count * sizeof(*all));
			n += r.u.list.count;
		}
		more = r.u.list.more;
		reply_free(&r);
		if (!more)
			break;
	}
	*out = all;
	return (int)n;
fail:
	free(all);
	return ret;
}

int portd_status(struct portd *p, struct portd_status *out, int timeout_ms)
{
	return portd_status_flags(p, 0, out, timeout_ms);
}

int portd_status_flags(struct portd *p, uint32_t flags, struct portd_status *out, int timeout_ms)
{
	struct portd_reply r;
	struct deadline d;
	struct req q = { .type = PORTD_MSG_STATUS, .u.status_flags = flags };
	int ret;

	if (!out || (flags & ~PORTD_STATUS_REQ_F_ALL))
		return -EINVAL;
	deadline_init(&d, timeout_ms);
	ret = call(p, &q, &r, &d);
	if (ret < 0)
		return ret;
	if (r.error)
		return r.error;
	*out = r.u.status;
	return 0;
}

/* ---- messages ------------------------------------------------------------------ */

static const char *portd_error_message(int e)
{
	switch (e) {
	case PORTD_E_PROTO:
		return "portd protocol error: a malformed request or reply (are portd and libportd from the same release?)";
	case PORTD_E_VERSION:
		return "portd speaks another protocol version than this library";
	case PORTD_E_BADTYPE:
		return "portd does not know this request (portd is older than this library)";
	case PORTD_E_INVAL:
		return "portd rejected an argument as out of range";
	case PORTD_E_NOENT:
		return "no such lease";
	case PORTD_E_PERM:
		return "the lease belongs to another user";
	case PORTD_E_TTL:
		return "ttl exceeds the daemon's maximum";
	case PORTD_E_QUOTA_UID:
		return "per-user lease limit reached";
	case PORTD_E_QUOTA_TOTAL:
		return "portd's lease limit reached";
	case PORTD_E_NOPORTS:
		return "portd has no free port left";
	case PORTD_E_BUSY:
		return "the requested port is in use or in reuse quarantine";
	case PORTD_E_INTERNAL:
		return "portd failed internally (see its log)";
	case PORTD_E_UNSUPPORTED:
		return "this portd does not support the request";
	case PORTD_E_NOTSUP_TRANSPORT:
		return "a number-only UDP lease needs a port range reserved for portd: lease the UDP socket itself instead";
	}
	return NULL;
}

const char *portd_strerror(int err)
{
	const char *m;
	int e;

	if (err == 0)
		return "success";
	if (err == INT_MIN)
		return "unknown error";
	e = err < 0 ? -err : err;
	m = portd_error_message(e);
	if (m)
		return m;
	if (e > PORTD_E_BASE && e < 2 * PORTD_E_BASE)
		return "unknown portd error (portd is newer than this library)";
	/* The errnos this library returns most, as constant strings. */
	switch (e) {
	case ENOENT:
		return "no portd socket at this path";
	case ECONNREFUSED:
		return "no portd listening on this socket";
	case EACCES:
		return "permission denied on the portd socket";
	case EAGAIN:
		return "resource temporarily unavailable (portd busy or no reply yet)";
	case ETIMEDOUT:
		return "portd did not answer in time";
	case ECONNRESET:
		return "portd closed the connection";
	case ENAMETOOLONG:
		return "socket path too long";
	case EINVAL:
		return "invalid argument";
	case ENOMEM:
		return "out of memory";
	case EOVERFLOW:
		return "too many leases to return";
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	/* A constant string, unlike strerror()'s: keeps this function thread-safe on glibc. */
	m = strerrordesc_np(e);
	return m ? m : "unknown error";
#else
	return strerror(e);
#endif
}

const char *portd_version(void)
{
	return PORTD_VERSION;
}
