/*
 * libFuzzer target: the daemon's whole request path.
 *
 * Each input builds a real service (lease table, a managed range of real
 * ports bound by hold.c, process watches, an injected clock) and plays a
 * script against it over real connections (conn.c) on SOCK_SEQPACKET
 * socketpairs. The pairs are made by two helper processes, one root and one
 * nobody, so the kernel's credentials on each connection are theirs: leases
 * are owned by two uids and tied to processes the script can kill.
 *
 * Input: one configuration byte, then records, each an op byte (o) and its
 * arguments; slot = (o >> 3) & 1 picks one of two connections:
 *
 *   o & 7 = 0, 1  SEND: fds byte F, u16 length L (little-endian), L bytes:
 *                 one datagram with F & 31 fds attached, of kind F >> 5 & 3
 *                 (pipes, sockets, the daemon's own end, /dev/null); the
 *                 event loop then turns once, unless F & 0x80: datagrams
 *                 queue up until something else turns it
 *           2     SEND, with the LEASE pid field (body bytes 16-19) set to
 *                 a process the input cannot name: (o >> 4) & 3 picks the
 *                 pid of helper 0 or 1, a thread of helper 0 that is not
 *                 its leader, or the daemon's own pid
 *           3     TICK: u16 T: the clock moves T * 100 ms, then expiry runs
 *           4     READ: replies are read (o & 0x10) or left in the socket,
 *                 so that the daemon's replies back up and it must defer
 *           5     RECONNECT: close the slot's connection, open a new one
 *                 from helper (o >> 4) & 1 (0 root, 1 nobody)
 *           6     KILL: helper (o >> 3) & 1 is killed and started again
 *                 (the first 4 of an input)
 *           7     LOOP: one more turn of the event loop
 *
 * The configuration byte C: range size 1/4/16/64 (C & 3), max leases
 * 1/4/64/1000 (C >> 2 & 3), one lease per uid (C & 0x10), quarantine 60 s
 * (C & 0x20), a reserved range (C & 0x40), a small send buffer on the
 * daemon's ends (C & 0x80).
 *
 * Every reply is decoded and checked against the request it answers (a
 * model of the dispatch rules in PROTOCOL.md): its type and id, the result
 * the request's shape calls for, granted ports inside the range, distinct,
 * outside the exclude ranges, one fd per port bound to that very port, no
 * other user's lease renewed, released or listed, nothing after a reply that
 * closes the connection. At the end the connections are closed and must be
 * gone, the process must hold exactly its fds from before plus the sockets of
 * live leases and their pidfds, and after service_free() exactly what it held
 * before the input.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "codec.h"
#include "conn.h"
#include "fuzz-util.h"
#include "netns.h"
#include "hold.h"
#include "log.h"
#include "service.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RANGE_LO 61000 /* above Linux's default ephemeral range: quiet even outside a private netns */
#define DEFAULT_TTL 60
#define MAX_TTL 3600
#define SENT_MAX 1024  /* requests checked per connection; later ones are not sent */
#define IDS_MAX 4096   /* lease ids remembered per input */
#define LOOP_TURNS 64  /* turns of the event loop for anything to settle */
#define KILLS_MAX 4    /* helpers killed per input, at most: each costs a fork */

enum expect {
	X_NONE,    /* no reply: the daemon drops the connection */
	X_VERSION, /* PORTD_R_VERSION, then the connection closes */
	X_PROTO,   /* PORTD_R_PROTO, then the connection closes */
	X_BADTYPE,
	X_LEASE,
	X_RENEW,
	X_RELEASE,
	X_LIST,
	X_STATUS,
	X_HELLO,
};

struct sent {
	enum expect expect;
	uint16_t type;
	uint32_t id;
	union {
		struct proto_lease_req lease;
		struct proto_renew_req renew;
		struct proto_release_req release;
		struct proto_list_req list;
		uint32_t status_flags;
	} m;
};

struct slot {
	int fd;             /* our end, -1 if none */
	int daemon_fd;      /* the daemon's end, owned by conn */
	struct conn *conn;  /* NULL once the daemon closed it */
	uint32_t uid;       /* the caller, as the kernel reports it */
	bool reading;       /* replies are read as they come (kept across reconnects) */
	bool ended;         /* a reply that closes the connection was read */
	struct sent sent[SENT_MAX];
	size_t rd, wr;
};

static struct event_base *base;
static struct fuzz_helper helpers[2];
static struct slot slots[3]; /* two for the script, one for the final check */
static struct service *svc;
static struct service_config cfg;
static uint64_t now;
static int64_t owner[IDS_MAX]; /* uid owning lease id, -1 unknown */
static bool small_sndbuf;
static bool debug; /* PORTD_FUZZ_DEBUG: the daemon's debug log, and every reply */

static uint64_t fake_now(void *ctx) { return now; }

static void loop_once(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* ---- requests ---- */

static enum expect classify(const uint8_t *p, size_t len, size_t nfds, struct sent *s)
{
	struct proto_hdr h;
	const uint8_t *b;
	size_t blen;
	int r;

	if (len == 0 || len > PORTD_MSG_MAX || nfds > PORTD_FDS_MAX)
		return X_NONE;
	r = proto_hdr_decode(p, len, &h);
	s->type = h.type;
	s->id = h.id;
	if (r == -EPROTONOSUPPORT)
		return X_VERSION;
	if (r < 0 || nfds || (h.type & PORTD_MSG_REPLY))
		return X_PROTO;
	b = proto_body(p);
	blen = len - PORTD_HDR_SIZE;
	switch (h.type) {
	case PORTD_MSG_LEASE:
		return proto_decode_lease_req(b, blen, &s->m.lease) < 0 ? X_PROTO : X_LEASE;
	case PORTD_MSG_RENEW:
		return proto_decode_renew_req(b, blen, &s->m.renew) < 0 ? X_PROTO : X_RENEW;
	case PORTD_MSG_RELEASE:
		return proto_decode_release_req(b, blen, &s->m.release) < 0 ? X_PROTO : X_RELEASE;
	case PORTD_MSG_LIST:
		return proto_decode_list_req(b, blen, &s->m.list) < 0 ? X_PROTO : X_LIST;
	case PORTD_MSG_STATUS:
		return proto_decode_status_req(b, blen, &s->m.status_flags) < 0 ? X_PROTO : X_STATUS;
	case PORTD_MSG_HELLO:
		return proto_decode_hello_req(b, blen) < 0 ? X_PROTO : X_HELLO;
	default:
		return X_BADTYPE;
	}
}

/* n fds of one kind to attach; ours to close after sending. */
static size_t make_fds(int kind, size_t n, const struct slot *sl, int *fds)
{
	size_t k = 0;

	while (k < n) {
		int p[2];

		switch (kind) {
		case 0:
			FUZZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
			break;
		case 1:
			FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
			break;
		case 2:
			/* A datagram carrying the daemon's own end of this connection. */
			p[0] = fcntl(sl->daemon_fd, F_DUPFD_CLOEXEC, 3);
			p[1] = -1;
			break;
		default:
			p[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
			p[1] = -1;
			break;
		}
		FUZZ_CHECK(p[0] >= 0);
		fds[k++] = p[0];
		if (p[1] >= 0 && k < n)
			fds[k++] = p[1];
		else if (p[1] >= 0)
			close(p[1]);
	}
	return k;
}

/* Not fdpass_send(): that refuses more than PORTD_FDS_MAX fds, and the daemon must see more. */
static ssize_t send_fds(int sock, const uint8_t *p, size_t len, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 32)];
	} cbuf;
	struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n < 0 ? -errno : n;
}

/* ---- replies ---- */

static bool is_sock(int fd, int type, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int t = 0;
	socklen_t tl = sizeof(t);
	uint16_t p;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl) < 0)
		return false;
	if (ss.ss_family == AF_INET6)
		p = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else if (ss.ss_family == AF_INET)
		p = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else
		return false;
	return t == type && p == port;
}

static bool in_range(uint16_t port)
{
	return port >= cfg.ports.lo && port <= cfg.ports.hi;
}

static uint32_t ttl_of(uint32_t asked)
{
	return asked ? asked : DEFAULT_TTL;
}

/* May the caller act on lease id? Unknown ids (never seen granted) may exist: aborted, or from the other slot unread. */
static bool may_access(const struct slot *sl, uint64_t id)
{
	return sl->uid == 0 || id >= IDS_MAX || owner[id] < 0 || owner[id] == (int64_t)sl->uid;
}

static void check_lease(const struct slot *sl, const struct proto_lease_req *m, const uint8_t *b, size_t blen,
			const int *fds, size_t nfds)
{
	struct proto_lease_rep rep;
	size_t per = m->transport == PORTD_BOTH ? 2 : 1;

	FUZZ_CHECK(proto_decode_lease_rep(b, blen, &rep) == 0);
	FUZZ_CHECK(rep.count == m->count && rep.transport == m->transport && rep.flags == m->flags);
	FUZZ_CHECK(rep.ttl == ttl_of(m->ttl));
	FUZZ_CHECK(!(m->flags & PORTD_LEASE_F_TIE) || !m->pid);
	FUZZ_CHECK((m->flags & PORTD_LEASE_F_FD) || m->transport == PORTD_TCP || cfg.reserved);
	if (m->port)
		FUZZ_CHECK(rep.ports[0] == m->port);
	for (uint16_t i = 0; i < rep.count; i++) {
		FUZZ_CHECK(in_range(rep.ports[i]));
		for (uint16_t j = 0; j < i; j++)
			FUZZ_CHECK(rep.ports[j] != rep.ports[i]);
		for (uint16_t j = 0; j < m->nexclude; j++)
			FUZZ_CHECK(rep.ports[i] < m->exclude[j].lo || rep.ports[i] > m->exclude[j].hi);
		if (m->flags & PORTD_LEASE_F_CONSECUTIVE)
			FUZZ_CHECK(rep.ports[i] == rep.ports[0] + i);
	}
	if (!(m->flags & PORTD_LEASE_F_FD)) {
		FUZZ_CHECK(nfds == 0);
	} else {
		FUZZ_CHECK(nfds == rep.count * per);
		for (size_t i = 0; i < nfds; i++) {
			bool udp = m->transport == PORTD_UDP || (per == 2 && i % 2 == 1);
			FUZZ_CHECK(is_sock(fds[i], udp ? SOCK_DGRAM : SOCK_STREAM, rep.ports[i / per]));
		}
	}
	FUZZ_CHECK(rep.id > 0);
	if (rep.id < IDS_MAX) {
		FUZZ_CHECK(owner[rep.id] < 0); /* ids are never reused */
		owner[rep.id] = sl->uid;
	}
}

static void check_list(const struct slot *sl, const struct proto_list_req *m, const uint8_t *b, size_t blen)
{
	struct proto_list_iter it;
	struct proto_lease_info e;
	uint32_t count;
	bool more;
	int r;

	FUZZ_CHECK(proto_decode_list_rep(b, blen, &count, &more, &it) == 0);
	while ((r = proto_list_next(&it, &e)) == 1) {
		FUZZ_CHECK(e.id > m->after_id);
		/* The clock moves only in TICK, and expiry runs right after: nothing listed is due. */
		FUZZ_CHECK(e.expires_in_ms > 0 && e.expires_in_ms <= (uint64_t)e.ttl * 1000);
		FUZZ_CHECK(sl->uid == 0 || e.uid == sl->uid);
		FUZZ_CHECK(e.id >= IDS_MAX || owner[e.id] < 0 || owner[e.id] == (int64_t)e.uid);
		for (uint16_t i = 0; i < e.nports; i++)
			FUZZ_CHECK(in_range(e.ports[i]));
	}
	FUZZ_CHECK(r == 0);
}

static void check_status(const struct slot *sl, uint32_t want, const uint8_t *b, size_t blen)
{
	struct proto_status st;

	FUZZ_CHECK(proto_decode_status_rep(b, blen, &st) == 0);
	/* fds are counted only when asked, and only for root and the daemon's own uid. */
	if ((want & PORTD_STATUS_REQ_F_FDS) && (sl->uid == 0 || sl->uid == geteuid()))
		FUZZ_CHECK(st.open_fds > 0);
	else
		FUZZ_CHECK(st.open_fds == 0);
	FUZZ_CHECK(st.range_lo == cfg.ports.lo && st.range_hi == cfg.ports.hi);
	FUZZ_CHECK(st.max_leases == cfg.limits.max_leases && st.max_per_uid == cfg.limits.max_per_uid);
	FUZZ_CHECK(st.default_ttl == DEFAULT_TTL && st.max_ttl == MAX_TTL);
	FUZZ_CHECK(st.quarantine == cfg.ports.quarantine_ms / 1000);
	FUZZ_CHECK(!!(st.flags & PORTD_STATUS_F_RESERVED) == cfg.reserved);
	FUZZ_CHECK(st.leases <= cfg.limits.max_leases && st.caller_leases <= st.leases);
	FUZZ_CHECK(st.ports_held <= 2u * (cfg.ports.hi - cfg.ports.lo + 1u));
}

/* One reply, against the oldest request not yet answered. */
static void check_reply(struct slot *sl, const uint8_t *p, size_t len, const int *fds, size_t nfds)
{
	struct proto_hdr h;
	struct sent *s;
	uint32_t res, detail;
	const uint8_t *b = proto_body(p);
	size_t blen;

	FUZZ_CHECK(!sl->ended);
	FUZZ_CHECK(sl->rd < sl->wr);
	s = &sl->sent[sl->rd++];
	FUZZ_CHECK(s->expect != X_NONE);
	FUZZ_CHECK(proto_hdr_decode(p, len, &h) == 0);
	FUZZ_CHECK(h.type == (s->type | PORTD_MSG_REPLY) && h.id == s->id);
	blen = len - PORTD_HDR_SIZE;
	FUZZ_CHECK(proto_decode_result(b, blen, &res, &detail) == 0);
	if (debug)
		fprintf(stderr, "slot %d uid %u: %s reply id %u: result %u detail %u, %zu fds\n",
			(int)(sl - slots), sl->uid, proto_type_name(h.type), h.id, res, detail, nfds);
	if (res != PORTD_R_OK) {
		FUZZ_CHECK(blen == PORTD_RESULT_SIZE && nfds == 0);
		if (res == PORTD_R_INTERNAL)
			fprintf(stderr, "internal error, detail %u (%s)\n", detail, strerror((int)detail));
		FUZZ_CHECK(res != PORTD_R_INTERNAL && res <= PORTD_R_MAX);
	}
	switch (s->expect) {
	case X_VERSION:
		FUZZ_CHECK(res == PORTD_R_VERSION && detail == PORTD_PROTO_VERSION);
		sl->ended = true;
		return;
	case X_PROTO:
		FUZZ_CHECK(res == PORTD_R_PROTO);
		sl->ended = true;
		return;
	case X_BADTYPE:
		FUZZ_CHECK(res == PORTD_R_BADTYPE && detail == s->type);
		return;
	default:
		FUZZ_CHECK(res != PORTD_R_PROTO && res != PORTD_R_VERSION && res != PORTD_R_BADTYPE);
		break;
	}
	if (res != PORTD_R_OK)
		return;
	switch (s->expect) {
	case X_LEASE:
		check_lease(sl, &s->m.lease, b, blen, fds, nfds);
		return;
	case X_RENEW: {
		struct proto_renew_rep rep;
		FUZZ_CHECK(nfds == 0 && proto_decode_renew_rep(b, blen, &rep) == 0);
		FUZZ_CHECK(rep.id == s->m.renew.id && rep.ttl == ttl_of(s->m.renew.ttl));
		FUZZ_CHECK(may_access(sl, rep.id));
		return;
	}
	case X_RELEASE: {
		uint64_t id;
		FUZZ_CHECK(nfds == 0 && proto_decode_release_rep(b, blen, &id) == 0);
		FUZZ_CHECK(!s->m.release.id || id == s->m.release.id);
		FUZZ_CHECK(may_access(sl, id));
		return;
	}
	case X_LIST:
		FUZZ_CHECK(nfds == 0);
		check_list(sl, &s->m.list, b, blen);
		return;
	case X_STATUS:
		FUZZ_CHECK(nfds == 0);
		check_status(sl, s->m.status_flags, b, blen);
		return;
	case X_HELLO: {
		uint32_t uid, pid;

		/* The caller as the kernel reported it at connect time. */
		FUZZ_CHECK(nfds == 0 && proto_decode_hello_rep(b, blen, &uid, &pid) == 0);
		FUZZ_CHECK(uid == sl->uid && pid != 0);
		return;
	}
	default:
		FUZZ_CHECK(0);
	}
}

/* Read and check every reply there is; returns how many. */
static int read_replies(struct slot *sl)
{
	static uint8_t buf[PORTD_MSG_MAX + 1];
	bool reset = false;
	int got = 0;

	while (sl->fd >= 0) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * 32)];
		} cbuf;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
				      .msg_controllen = sizeof(cbuf.buf) };
		int fds[32];
		size_t nfds = 0;
		ssize_t n = recvmsg(sl->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		/*
		 * The daemon closed with requests of ours unread: the kernel reports
		 * ECONNRESET once, before the replies still queued for us.
		 */
		if (n < 0 && errno == ECONNRESET && !reset) {
			reset = true;
			continue;
		}
		if (n <= 0) {
			FUZZ_CHECK(n == 0 || errno == EAGAIN);
			return got;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			FUZZ_CHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k && nfds < 32; i++)
				memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
		FUZZ_CHECK(!(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)));
		FUZZ_CHECK(nfds <= PORTD_FDS_MAX);
		check_reply(sl, buf, (size_t)n, fds, nfds);
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		got++;
	}
	return got;
}

/* Read while replies come: a deferred reply goes out once the socket has room. */
static void drain(struct slot *sl)
{
	for (int i = 0; i < LOOP_TURNS; i++) {
		int got = read_replies(sl);
		loop_once();
		if (!got && i > 0)
			return;
	}
}

/* ---- connections ---- */

static void on_closed(struct conn *c, void *ctx)
{
	struct slot *sl = ctx;

	FUZZ_CHECK(sl->conn == c);
	sl->conn = NULL;
	sl->daemon_fd = -1;
}

/*
 * Close our end: the daemon must notice and close its side. What it has
 * sent is read first (without a turn of the loop, so a deferred reply stays
 * undelivered): every lease a reply reached is then one we know.
 */
static void slot_close(struct slot *sl)
{
	if (sl->fd < 0)
		return;
	read_replies(sl);
	close(sl->fd);
	sl->fd = -1;
	for (int i = 0; i < LOOP_TURNS && sl->conn; i++)
		loop_once();
	FUZZ_CHECK(sl->conn == NULL);
}

static void slot_open(struct slot *sl, struct fuzz_helper *h)
{
	int sv[2], size = 16384;

	slot_close(sl);
	if (fuzz_helper_socketpair(h, sv) < 0)
		return;
	fuzz_set_nonblock(sv[0], true);
	if (small_sndbuf)
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	sl->daemon_fd = sv[0];
	sl->conn = conn_new(base, svc, sv[0], on_closed, sl);
	FUZZ_CHECK(sl->conn != NULL);
	sl->fd = sv[1];
	sl->uid = h->uid;
	sl->ended = false;
	sl->rd = sl->wr = 0;
}

/*
 * Every live lease was granted in a reply that we read: one whose reply never
 * reached its client (deferred, then the connection closed) must have ended.
 * Asked over a connection of its own, as root (who sees every lease).
 */
static void check_leases_known(void)
{
	static uint8_t buf[PORTD_MSG_MAX];
	struct slot *sl = &slots[2];
	struct proto_list_req m = { 0 };
	struct proto_list_iter it;
	struct proto_lease_info e;
	struct proto_hdr h;
	uint32_t res, detail, count;
	bool more = true;
	ssize_t n;

	slot_open(sl, &helpers[0]);
	FUZZ_CHECK(sl->conn != NULL);
	while (more) {
		n = proto_encode_list_req(buf, sizeof(buf), 1, &m);
		FUZZ_CHECK(n > 0 && send(sl->fd, buf, (size_t)n, MSG_NOSIGNAL) == n);
		loop_once();
		n = recv(sl->fd, buf, sizeof(buf), MSG_DONTWAIT);
		FUZZ_CHECK(n > 0 && proto_hdr_decode(buf, (size_t)n, &h) == 0);
		FUZZ_CHECK(proto_decode_result(proto_body(buf), (size_t)n - PORTD_HDR_SIZE, &res, &detail) == 0 &&
			   res == PORTD_R_OK);
		FUZZ_CHECK(proto_decode_list_rep(proto_body(buf), (size_t)n - PORTD_HDR_SIZE, &count, &more, &it) == 0);
		while (proto_list_next(&it, &e) == 1) {
			if (sl->uid == 0 && (e.id >= IDS_MAX || owner[e.id] < 0))
				fprintf(stderr, "lease %llu of uid %u lives, but no reply granting it was read\n",
					(unsigned long long)e.id, e.uid);
			FUZZ_CHECK(sl->uid != 0 || (e.id < IDS_MAX && owner[e.id] >= 0));
			m.after_id = e.id;
		}
	}
	slot_close(sl);
}

/* ---- the script ---- */

struct input {
	const uint8_t *p;
	size_t left;
};

static bool take(struct input *in, void *out, size_t n)
{
	if (in->left < n)
		return false;
	memcpy(out, in->p, n);
	in->p += n;
	in->left -= n;
	return true;
}

static void op_send(struct input *in, struct slot *sl, struct fuzz_helper *h, int patch)
{
	static uint8_t patched[PORTD_MSG_MAX];
	uint8_t spec, lb[2];
	size_t len, nfds;
	int fds[32];
	const uint8_t *msg;
	struct sent *s;
	ssize_t n;

	if (!take(in, &spec, 1) || !take(in, lb, 2))
		return;
	len = (size_t)(lb[0] | lb[1] << 8);
	if (len > in->left)
		len = in->left;
	msg = in->p;
	in->p += len;
	in->left -= len;
	if (patch >= 0 && len >= PORTD_HDR_SIZE + 20 && len <= sizeof(patched)) {
		const pid_t pids[] = { helpers[0].pid, helpers[1].pid, helpers[0].tid, getpid() };
		uint32_t pid = (uint32_t)pids[patch];

		memcpy(patched, msg, len);
		for (int i = 0; i < 4; i++)
			patched[PORTD_HDR_SIZE + 16 + i] = (uint8_t)(pid >> (8 * i));
		msg = patched;
	}
	if (sl->fd < 0 && sl->wr == 0)
		slot_open(sl, h); /* first use */
	if (!sl->conn || sl->wr == SENT_MAX)
		return; /* closed by the daemon, or enough to check */
	nfds = make_fds((spec >> 5) & 3, spec & 31, sl, fds);
	s = &sl->sent[sl->wr];
	memset(s, 0, sizeof(*s));
	s->expect = classify(msg, len, nfds, s);
	n = send_fds(sl->fd, msg, len, fds, nfds);
	if (n == -EAGAIN) {
		/* The daemon's queue is full: let it read (it may be waiting for us to read). */
		loop_once();
		if (sl->reading)
			drain(sl);
		n = send_fds(sl->fd, msg, len, fds, nfds);
	}
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	if (n >= 0) {
		FUZZ_CHECK((size_t)n == len);
		sl->wr++;
	}
	if (spec & 0x80)
		return;
	loop_once();
	if (sl->reading)
		drain(sl);
}

static void run(struct input *in)
{
	unsigned kills = 0;
	uint8_t o;

	while (take(in, &o, 1)) {
		struct slot *sl = &slots[(o >> 3) & 1];
		uint8_t t[2];

		switch (o & 7) {
		case 0:
		case 1:
			op_send(in, sl, &helpers[(o >> 3) & 1], -1);
			break;
		case 2:
			op_send(in, sl, &helpers[(o >> 3) & 1], (o >> 4) & 3);
			break;
		case 3:
			if (!take(in, t, 2))
				return;
			now += (uint64_t)(t[0] | t[1] << 8) * 100;
			service_expire(svc);
			loop_once();
			break;
		case 4:
			sl->reading = o & 0x10;
			if (sl->reading)
				drain(sl);
			break;
		case 5:
			slot_open(sl, &helpers[(o >> 4) & 1]);
			break;
		case 6:
			if (kills >= KILLS_MAX)
				break;
			kills++;
			fuzz_helper_restart(&helpers[(o >> 3) & 1], (o >> 3) & 1);
			loop_once();
			loop_once();
			break;
		case 7:
			loop_once();
			break;
		}
	}
}

static void configure(uint8_t c)
{
	static const uint16_t sizes[] = { 1, 4, 16, 64 };
	static const uint32_t leases[] = { 1, 4, 64, 1000 };

	memset(&cfg, 0, sizeof(cfg));
	cfg.ports.lo = RANGE_LO;
	cfg.ports.hi = (uint16_t)(RANGE_LO + sizes[c & 3] - 1);
	cfg.ports.quarantine_ms = (c & 0x20) ? 60000 : 0;
	cfg.limits.max_leases = leases[(c >> 2) & 3];
	cfg.limits.max_per_uid = (c & 0x10) ? 1 : cfg.limits.max_leases;
	cfg.limits.default_ttl_s = DEFAULT_TTL;
	cfg.limits.max_ttl_s = MAX_TTL;
	cfg.reserved = c & 0x40;
	small_sndbuf = c & 0x80;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	signal(SIGPIPE, SIG_IGN);
	/* The daemon's warnings would bury libFuzzer's output; PORTD_FUZZ_DEBUG=1 shows everything. */
	debug = getenv("PORTD_FUZZ_DEBUG");
	log_set_level(debug ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	if (!enter_private_netns())
		fprintf(stderr, "fuzz-request: not root: no private network namespace, one uid only\n");
	base = event_base_new();
	FUZZ_CHECK(base != NULL);
	fuzz_helper_restart(&helpers[0], false);
	fuzz_helper_restart(&helpers[1], true);
	for (int i = 0; i < 3; i++)
		slots[i].fd = slots[i].daemon_fd = -1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct clock clk = { fake_now, NULL };
	const struct ports_binder binder = { hold_bind, hold_close, NULL };
	struct input in = { data, size };
	struct fuzz_fds before, after;
	int *held;
	size_t nheld;
	uint8_t c;

	if (!take(&in, &c, 1))
		return 0;
	fuzz_count_fds(&before);
	configure(c);
	now = 1000000;
	memset(owner, 0xff, sizeof(owner));
	svc = service_new(base, &cfg, &clk, &binder);
	FUZZ_CHECK(svc != NULL);
	for (int i = 0; i < 2; i++) {
		slots[i].rd = slots[i].wr = 0;
		slots[i].reading = true;
	}

	run(&in);

	for (int i = 0; i < 2; i++) {
		slots[i].reading = true;
		drain(&slots[i]);
		slot_close(&slots[i]);
	}
	check_leases_known();
	/* With no connection left: the daemon holds the sockets of live leases and the pidfds of their processes. */
	fuzz_count_fds(&after);
	FUZZ_CHECK(service_held_fds(svc, &held, &nheld) == 0);
	free(held);
	if (after.total - after.pidfds != before.total - before.pidfds + (int)nheld)
		fprintf(stderr, "fds: %d (%d pidfds) before, %d (%d pidfds) after, %zu held by %zu leases\n",
			before.total, before.pidfds, after.total, after.pidfds, nheld, service_lease_count(svc));
	FUZZ_CHECK(after.total - after.pidfds == before.total - before.pidfds + (int)nheld);
	FUZZ_CHECK(after.pidfds - before.pidfds <= (int)service_lease_count(svc));

	service_free(svc);
	svc = NULL;
	fuzz_count_fds(&after);
	FUZZ_CHECK(after.total == before.total && after.pidfds == before.pidfds);
	return 0;
}
