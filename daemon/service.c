/*
 * Request handling. Every request goes through service_handle(): decode the
 * header, dispatch on the type, decode the body (all checks are in proto/),
 * act on the lease table, encode exactly one reply.
 *
 * A lease is made in an order that leaves nothing behind on any failure:
 * admission (ttl and quotas) first, then the ports are bound, then the lease
 * enters the table, then it is tied to its process. lease_end() undoes all of
 * it and is the only way a lease ends.
 *
 * The per-uid limit counts ports, not leases: a lease of N ports weighs N,
 * or one user could hold the whole range with a few leases of many ports
 * each. The lease table counts leases; uid_ports counts port numbers (a
 * number on TCP and UDP is one).
 */
#include "service.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "codec.h"
#include "config.h"
#include "log.h"
#include "procwatch.h"
#include "usage.h"
#include "state.h"
#include "uidcount.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; older headers lack it */
#endif

/* LIST reports the table's "no deadline" as it is. */
_Static_assert(LEASE_NO_DEADLINE == PORTD_LIST_NO_DEADLINE, "no deadline on the wire");

/* Leases expired per timer callback; the rest wait for the next turn of the loop. */
#define EXPIRE_BATCH 512
/* Candidate ports (or run starts) one LEASE request may try before giving up. */
#define LEASE_TRIES 64

struct service {
	struct event_base *base;
	struct clock clk;
	struct lease_table *leases;
	struct port_source *ports;
	struct ports_binder binder;
	struct procwatch *procs;
	struct uidcount *uid_ports; /* port numbers held by each uid's leases */
	struct event *timer;
	uint64_t armed;      /* deadline the timer is armed for, UINT64_MAX if none */
	uint64_t started;
	uint32_t connections;
	pid_t self;          /* portd's pid: no lease without a deadline may be tied to it */
	uid_t self_uid;      /* portd's uid */
	bool reserved;
	struct service_host host;
};

static const char *const end_reasons[] = { "released", "expired", "process exited", "aborted",
					   "reply discarded unread", "shutdown" };
enum end_reason { END_RELEASE, END_EXPIRE, END_EXIT, END_ABORT, END_DISCARD, END_SHUTDOWN };

/* Give back a lease's ports: quarantined, or (never delivered) cancelled. Closes the sockets. */
static void lease_unbind(struct service *s, struct lease *l, bool delivered)
{
	for (uint16_t i = 0; i < l->nports; i++) {
		struct lease_port *e = &l->ports[i];

		if (!e->port)
			continue; /* not bound yet: a lease being built */
		if (delivered)
			ports_release(s->ports, e->transport, e->port);
		else
			ports_cancel(s->ports, e->transport, e->port);
		if (e->fd >= 0)
			s->binder.close(s->binder.ctx, e->fd);
		e->fd = -1;
		e->port = 0;
	}
}

/* Port numbers of a lease: its sockets, counting a number on TCP and UDP once. */
static uint32_t lease_numbers(const struct lease *l)
{
	return l->transport == PORTD_BOTH ? l->nports / 2u : l->nports;
}

/* Undo everything a lease holds; it is no longer in the table. */
static void lease_teardown(struct service *s, struct lease *l, enum end_reason why)
{
	uidcount_sub(s->uid_ports, l->uid, lease_numbers(l));
	proc_detach(s->procs, l);
	log_lease_debug("end", l->id, l->nports ? l->ports[0].port : 0, l->uid,
			"lease %" PRIu64 " ended (%s): port %u, uid %u", l->id, end_reasons[why],
			l->nports ? l->ports[0].port : 0, l->uid);
	lease_unbind(s, l, why != END_ABORT);
	lease_free(l);
}

static void lease_end(struct service *s, struct lease *l, enum end_reason why)
{
	lease_table_remove(s->leases, l);
	lease_teardown(s, l, why);
}

static void service_rearm(struct service *s)
{
	uint64_t next = lease_table_next_deadline(s->leases);

	if (next == s->armed)
		return;
	s->armed = next;
	if (next == UINT64_MAX) {
		evtimer_del(s->timer);
		return;
	}
	uint64_t now = clock_now(&s->clk);
	uint64_t delay = next > now ? next - now : 0;
	struct timeval tv = { .tv_sec = (time_t)(delay / 1000), .tv_usec = (suseconds_t)(delay % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
}

void service_expire(struct service *s)
{
	uint64_t now = clock_now(&s->clk);
	struct lease *l;
	int n = 0;

	while (n < EXPIRE_BATCH && (l = lease_table_pop_expired(s->leases, now))) {
		lease_teardown(s, l, END_EXPIRE);
		n++;
	}
	s->armed = 0; /* force a re-arm: more may be due at once */
	service_rearm(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct service *s = arg;
	s->armed = UINT64_MAX;
	service_expire(s);
}

/* A batch per turn of the loop, like expiry: thousands of tied leases must not stall it. */
static void on_proc_exit(struct proc *p, void *arg)
{
	struct service *s = arg;
	struct lease *l;
	int n = 0;

	while (n++ < EXPIRE_BATCH && (l = proc_first_lease(p)))
		lease_end(s, l, END_EXIT);
	service_rearm(s);
}

struct service *service_new(struct event_base *base, const struct service_config *cfg,
			    const struct clock *clk, const struct ports_binder *binder)
{
	struct service *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->base = base;
	s->clk = *clk;
	s->binder = *binder;
	s->armed = UINT64_MAX;
	s->started = clock_now(clk);
	s->reserved = cfg->reserved;
	s->self = getpid();
	s->self_uid = geteuid();
	s->leases = lease_table_new(&cfg->limits, &s->clk);
	s->ports = ports_new(&cfg->ports, &s->clk, &s->binder);
	s->procs = procwatch_new(base, on_proc_exit, s);
	s->uid_ports = uidcount_new();
	s->timer = evtimer_new(base, on_timer, s);
	if (!s->leases || !s->ports || !s->procs || !s->uid_ports || !s->timer) {
		service_free(s);
		return NULL;
	}
	return s;
}

static void end_at_shutdown(struct lease *l, void *arg)
{
	lease_teardown(arg, l, END_SHUTDOWN);
}

void service_free(struct service *s)
{
	if (!s)
		return;
	lease_table_free(s->leases, end_at_shutdown, s);
	procwatch_free(s->procs);
	uidcount_free(s->uid_ports);
	ports_free(s->ports);
	if (s->timer)
		event_free(s->timer);
	free(s);
}

void service_conn_count(struct service *s, int delta) { s->connections += (uint32_t)delta; }
size_t service_lease_count(const struct service *s) { return lease_table_count(s->leases); }

/* ---- replies ---- */

static void reply_error(struct reply *r, uint16_t type, uint32_t id, uint32_t result, uint32_t detail)
{
	ssize_t n = proto_encode_error(r->buf, sizeof(r->buf), type, id, result, detail);
	r->len = n > 0 ? (size_t)n : 0;
	r->nfds = 0;
	if (result == PORTD_R_PROTO || result == PORTD_R_VERSION)
		r->close = true;
}

static uint32_t lease_result_code(enum lease_result lr)
{
	switch (lr) {
	case LEASE_OK: return PORTD_R_OK;
	case LEASE_E_TTL: return PORTD_R_TTL;
	case LEASE_E_QUOTA_UID: return PORTD_R_QUOTA_UID;
	case LEASE_E_QUOTA_TOTAL: return PORTD_R_QUOTA_TOTAL;
	case LEASE_E_NOENT: return PORTD_R_NOENT;
	case LEASE_E_PERM: return PORTD_R_PERM;
	}
	return PORTD_R_INTERNAL;
}

static uint32_t lease_result_detail(const struct service *s, enum lease_result lr)
{
	const struct lease_limits *lim = lease_table_limits(s->leases);
	switch (lr) {
	case LEASE_E_TTL: return lim->max_ttl_s;
	case LEASE_E_QUOTA_UID: return lim->max_per_uid;
	case LEASE_E_QUOTA_TOTAL: return lim->max_leases;
	default: return 0;
	}
}

static void reply_lease_error(const struct service *s, struct reply *r, const struct proto_hdr *h,
			      enum lease_result lr)
{
	reply_error(r, h->type, h->id, lease_result_code(lr), lease_result_detail(s, lr));
}

/* May uid take count more ports? The per-uid limit weighs a lease by its ports. */
static bool ports_admit(const struct service *s, uint32_t uid, uint32_t count)
{
	uint32_t held = uidcount_get(s->uid_ports, uid), max = lease_table_limits(s->leases)->max_per_uid;

	return held <= max && count <= max - held;
}

/* ---- operations ---- */

/* What one LEASE request must not be given: its exclude ranges, and candidates already tried. */
struct lease_filter {
	const struct proto_lease_req *m;
	struct service *probe_udp; /* set: a TCP number must also be free on UDP right now */
	uint16_t tried[LEASE_TRIES];
	size_t ntried;
};

/*
 * portpicker promises a port "unused on both TCP and UDP", and portserver
 * checks both: a TCP lease for it skips numbers whose UDP side another lease
 * holds or another process has bound. The probe socket is closed at once.
 */
static bool udp_taken(struct service *s, uint16_t port)
{
	uint16_t got;
	int fd;

	if (ports_blocked(s->ports, PORTD_UDP, port))
		return true;
	if (s->binder.bind(s->binder.ctx, PORTD_UDP, port, &fd, &got) < 0)
		return true;
	s->binder.close(s->binder.ctx, fd);
	return false;
}

static bool lease_filter_skip(void *ctx, uint16_t port)
{
	const struct lease_filter *lf = ctx;

	for (uint16_t i = 0; i < lf->m->nexclude; i++)
		if (port >= lf->m->exclude[i].lo && port <= lf->m->exclude[i].hi)
			return true;
	for (size_t i = 0; i < lf->ntried; i++)
		if (lf->tried[i] == port)
			return true;
	return lf->probe_udp && udp_taken(lf->probe_udp, port);
}

static void lease_filter_add(struct lease_filter *lf, uint16_t port)
{
	if (lf->ntried < LEASE_TRIES)
		lf->tried[lf->ntried++] = port;
}

/*
 * Bind one number for every transport of the lease into e[0..] (TCP, then
 * UDP for PORTD_BOTH). want 0: any number the filter allows. All or nothing.
 */
static int bind_number(struct service *s, uint8_t transport, uint16_t want, struct lease_filter *lf,
		       struct lease_port *e, uint16_t *got)
{
	const struct ports_filter f = { lease_filter_skip, lf };

	for (int tries = 0; tries < LEASE_TRIES; tries++) {
		uint8_t first = transport == PORTD_UDP ? PORTD_UDP : PORTD_TCP;
		int fd, r;
		uint16_t port;

		r = ports_acquire_filtered(s->ports, first, want, &f, &fd, &port);
		if (r < 0)
			return r;
		e[0] = (struct lease_port){ .port = port, .transport = first, .fd = fd };
		if (transport != PORTD_BOTH) {
			*got = port;
			return 0;
		}
		r = ports_acquire(s->ports, PORTD_UDP, port, &fd, &port);
		if (r == 0) {
			e[1] = (struct lease_port){ .port = port, .transport = PORTD_UDP, .fd = fd };
			*got = port;
			return 0;
		}
		ports_cancel(s->ports, PORTD_TCP, e[0].port);
		s->binder.close(s->binder.ctx, e[0].fd);
		e[0] = (struct lease_port){ .port = 0, .fd = -1 };
		if (want || (r != -EADDRINUSE && r != -EINVAL))
			return r;
		lease_filter_add(lf, port); /* the UDP side is taken: another number */
	}
	return -EADDRNOTAVAIL;
}

/*
 * Bind every port of the lease, all or nothing: count numbers (adjacent with
 * CONSECUTIVE, starting at m->port if given) on each transport. On failure
 * nothing stays bound and the error is a -errno of the port source.
 */
static int bind_lease(struct service *s, const struct proto_lease_req *m, bool probe_udp, struct lease *l)
{
	const size_t per = m->transport == PORTD_BOTH ? 2 : 1;
	const bool run = (m->flags & PORTD_LEASE_F_CONSECUTIVE) && m->count > 1;
	struct lease_filter lf = { .m = m, .probe_udp = probe_udp && m->transport == PORTD_TCP ? s : NULL };

	for (int attempt = 0; attempt < LEASE_TRIES; attempt++) {
		uint16_t base = m->port;
		int r = 0;

		for (uint16_t i = 0; i < m->count && r == 0; i++) {
			uint16_t want = 0, got;

			if (base && (run || i == 0))
				want = (uint16_t)(base + i);
			r = bind_number(s, m->transport, want, &lf, &l->ports[i * per], &got);
			if (r == 0 && i == 0)
				base = got;
		}
		if (r == 0)
			return 0;
		lease_unbind(s, l, false);
		/* A run that hit a taken number, or the range's end, starts again elsewhere. */
		if (!run || m->port || !base || (r != -EADDRINUSE && r != -EINVAL))
			return r;
		lease_filter_add(&lf, base);
	}
	return -EADDRNOTAVAIL;
}

/*
 * A pid to tie the lease to: it must exist and (unless the caller is root)
 * belong to the caller's uid. For a lease without a deadline it must also be
 * able to exit: not init, not a kernel thread, not portd itself. Returns a
 * pidfd, or a negative result code.
 */
static int open_tied_pid(const struct caller *c, pid_t pid, bool must_exit)
{
	struct proc_info pi;
	int fd;

	if (must_exit && pid <= 1)
		return -PORTD_R_INVAL;
	fd = procwatch_open_pid(pid, &pi);
	if (fd < 0)
		return fd == -ESRCH || fd == -EINVAL ? -PORTD_R_INVAL : -PORTD_R_INTERNAL;
	if (c->uid != 0 && pi.uid != c->uid) {
		close(fd);
		return -PORTD_R_PERM;
	}
	if (must_exit && pi.kthread) {
		close(fd);
		return -PORTD_R_INVAL;
	}
	return fd;
}

/*
 * The caller's pidfd into *pidfd, taken from its connection when first
 * needed (SO_PEERPIDFD names the process that connected, whatever has become
 * of its pid since), or -1 where the kernel has none: then procwatch uses
 * pidfd_open(pid). Returns -ESRCH if the process that connected is gone,
 * another -errno if no pidfd could be made (out of fds or memory).
 */
static int caller_pidfd(struct caller *c, int *pidfd)
{
	socklen_t len = sizeof(c->pidfd);

	if (c->pidfd < 0 && c->sock >= 0 &&
	    getsockopt(c->sock, SOL_SOCKET, SO_PEERPIDFD, &c->pidfd, &len) < 0) {
		int e = errno;

		c->pidfd = -1;
		if (e != ENOPROTOOPT)
			return -e; /* ESRCH: gone; EMFILE, ENFILE, ENOMEM: the daemon's trouble */
	}
	*pidfd = c->pidfd;
	return 0;
}

static uint32_t ports_error_result(int err)
{
	switch (err) {
	case -EADDRNOTAVAIL: return PORTD_R_NOPORTS;
	case -EADDRINUSE: return PORTD_R_BUSY;
	case -EINVAL: return PORTD_R_INVAL;
	default: return PORTD_R_INTERNAL;
	}
}

/* How to make one lease: what op_lease and the portserver socket share. */
struct lease_plan {
	const struct proto_lease_req *m; /* ports, transport, flags (kept as the lease's) */
	uint32_t ttl;     /* admitted (lease_table_admit()); unused when untimed */
	bool untimed;     /* no deadline: ends when tie_pid exits (or on release) */
	bool probe_udp;   /* TCP numbers must be free on UDP too */
	pid_t tie_pid;    /* 0: not tied */
	int tie_pidfd;    /* tie_pid's pidfd, borrowed; -1: pidfd_open(tie_pid) */
	struct proc *tie_proc; /* tie_pid's live watch if the caller found it, else NULL */
};

/*
 * Bind the ports, enter the lease in the table, tie it to its process: the
 * lease is complete, or nothing is left behind and *res, *detail say why.
 */
static struct lease *lease_make(struct service *s, const struct caller *c, const struct lease_plan *p,
				uint32_t *res, uint32_t *detail)
{
	const struct proto_lease_req *m = p->m;
	size_t per = m->transport == PORTD_BOTH ? 2 : 1;
	struct lease *l = lease_alloc((uint16_t)(m->count * per));
	enum lease_result lr;
	int err;

	*detail = 0;
	if (!l) {
		*res = PORTD_R_INTERNAL;
		*detail = ENOMEM;
		return NULL;
	}
	err = bind_lease(s, m, p->probe_udp, l);
	if (err < 0) {
		lease_free(l);
		*res = ports_error_result(err);
		*detail = *res == PORTD_R_INTERNAL ? (uint32_t)-err : 0;
		return NULL;
	}
	l->uid = c->uid;
	l->pid = c->pid;
	l->flags = m->flags;
	l->transport = m->transport;
	lr = p->untimed ? lease_table_add_untimed(s->leases, l) : lease_table_add(s->leases, l, p->ttl);
	if (lr == LEASE_OK && uidcount_add(s->uid_ports, l->uid, lease_numbers(l)) < 0) {
		lease_table_remove(s->leases, l);
		lease_unbind(s, l, false);
		lease_free(l);
		*res = PORTD_R_INTERNAL;
		*detail = ENOMEM;
		return NULL;
	}
	if (lr != LEASE_OK) {
		lease_unbind(s, l, false);
		lease_free(l);
		*res = lease_result_code(lr);
		*detail = lease_result_detail(s, lr);
		return NULL;
	}
	if (p->tie_pid) {
		struct proc *pw = p->tie_proc;

		err = pw ? 0 : procwatch_get(s->procs, p->tie_pid, p->tie_pidfd, &pw);
		if (err < 0) {
			/* -ESRCH: the process is gone already. */
			lease_end(s, l, END_ABORT);
			*res = err == -ESRCH ? PORTD_R_INVAL : PORTD_R_INTERNAL;
			*detail = (uint32_t)-err;
			return NULL;
		}
		proc_attach(pw, l);
	}
	return l;
}

static void op_lease(struct service *s, struct caller *c, const struct proto_hdr *h,
		     const uint8_t *body, size_t blen, struct reply *r)
{
	struct proto_lease_req m;
	struct proto_lease_rep rep = { 0 };
	struct lease_plan plan = { .m = &m, .tie_pidfd = -1 };
	struct lease *l;
	enum lease_result lr;
	uint32_t res, detail;
	int pidfd = -1, err;
	size_t per;
	ssize_t n;

	if (proto_decode_lease_req(body, blen, &m) < 0) {
		reply_error(r, h->type, h->id, PORTD_R_PROTO, 0);
		return;
	}
	per = m.transport == PORTD_BOTH ? 2 : 1;
	/* Tied to the caller or to another process, not both. */
	if ((m.flags & PORTD_LEASE_F_TIE) && m.pid) {
		reply_error(r, h->type, h->id, PORTD_R_INVAL, 0);
		return;
	}
	/* A UDP socket the daemon keeps would take the client's datagrams (DESIGN.md). */
	if (!(m.flags & PORTD_LEASE_F_FD) && m.transport != PORTD_TCP && !s->reserved) {
		reply_error(r, h->type, h->id, PORTD_R_NOTSUP_TRANSPORT, 0);
		return;
	}

	plan.ttl = m.ttl;
	lr = lease_table_admit(s->leases, c->uid, &plan.ttl);
	if (lr == LEASE_OK && !ports_admit(s, c->uid, m.count))
		lr = LEASE_E_QUOTA_UID;
	if (lr != LEASE_OK) {
		reply_lease_error(s, r, h, lr);
		return;
	}
	if (m.pid) {
		pidfd = open_tied_pid(c, (pid_t)m.pid, false);
		if (pidfd < 0) {
			reply_error(r, h->type, h->id, (uint32_t)-pidfd, 0);
			return;
		}
		plan.tie_pid = (pid_t)m.pid;
		plan.tie_pidfd = pidfd;
	} else if (m.flags & PORTD_LEASE_F_TIE) {
		plan.tie_pid = c->pid;
		if (c->watch && !proc_exited(c->watch)) {
			plan.tie_proc = c->watch;
		} else if ((err = caller_pidfd(c, &plan.tie_pidfd)) < 0) {
			if (err == -ESRCH)
				reply_error(r, h->type, h->id, PORTD_R_INVAL, 0);
			else
				reply_error(r, h->type, h->id, PORTD_R_INTERNAL, (uint32_t)-err);
			return;
		}
	}
	l = lease_make(s, c, &plan, &res, &detail);
	if (pidfd >= 0)
		close(pidfd);
	if (!l) {
		reply_error(r, h->type, h->id, res, detail);
		return;
	}
	/* Keep the connection's own watch: its next tied lease needs no new pidfd. */
	if ((m.flags & PORTD_LEASE_F_TIE) && !c->watch && l->watch) {
		c->watch = l->watch;
		proc_ref(c->watch);
	}
	if (c->watch && c->pidfd >= 0) {
		close(c->pidfd); /* the watch holds its own */
		c->pidfd = -1;
	}

	rep.id = l->id;
	rep.ttl = l->ttl_s;
	rep.flags = l->flags;
	rep.transport = l->transport;
	rep.count = m.count;
	for (uint16_t i = 0; i < m.count; i++)
		rep.ports[i] = l->ports[i * per].port;
	n = proto_encode_lease_rep(r->buf, sizeof(r->buf), h->id, &rep);
	if (n < 0) {
		lease_end(s, l, END_ABORT);
		reply_error(r, h->type, h->id, PORTD_R_INTERNAL, EMSGSIZE);
		return;
	}
	r->len = (size_t)n;
	for (uint16_t i = 0; i < l->nports; i++) {
		struct lease_port *e = &l->ports[i];

		if (m.flags & PORTD_LEASE_F_FD) {
			r->fds[r->nfds++] = e->fd;
		} else if (e->transport == PORTD_UDP) {
			/*
			 * Number-only UDP, in a reserved range: hand the port over now.
			 * The kernel keeps it from every automatic selection and the
			 * port source keeps it from other leases until the lease ends.
			 */
			s->binder.close(s->binder.ctx, e->fd);
			e->fd = -1;
		}
	}
	r->new_lease = l->id;
	log_lease_debug("grant", l->id, rep.ports[0], c->uid,
			"lease %" PRIu64 " granted: %u %s port(s) from %u, ttl %u s, uid %u pid %d%s%s",
			l->id, m.count, proto_transport_name(m.transport), rep.ports[0], l->ttl_s, c->uid,
			(int)c->pid, (l->flags & PORTD_LEASE_F_FD) ? ", fd" : ", number",
			l->tied_pid ? ", tied" : "");
	service_rearm(s);
}

/*
 * May a lease without a deadline be tied to pid, for caller c? Returns the
 * live watch of pid when it has one already (*pidfd -1), else a pidfd for it
 * in *pidfd (NULL returned), or a negative result code. A watch made for a
 * checked process is marked so, and most requests of a test process find it:
 * they cost one poll() instead of reading about the process again.
 */
static int check_mortal_pid(struct service *s, const struct caller *c, pid_t pid, struct proc **watch,
			    int *pidfd)
{
	struct proc *p;
	uint32_t uid;

	*watch = NULL;
	*pidfd = -1;
	if (pid <= 1 || pid == s->self)
		return -PORTD_R_INVAL;
	p = procwatch_find(s->procs, pid);
	if (p && proc_mortal(p)) {
		/* Exists and can exit; its uid may have changed since (setuid), so ask again. */
		if (c->uid != 0) {
			if (proc_uid(p, &uid) < 0)
				return -PORTD_R_INVAL;
			if (uid != c->uid)
				return -PORTD_R_PERM;
		}
		*watch = p;
		return 0;
	}
	*pidfd = open_tied_pid(c, pid, true);
	return *pidfd < 0 ? *pidfd : 0;
}

int service_lease_for_pid(struct service *s, const struct caller *c, pid_t pid, uint64_t *id)
{
	const struct proto_lease_req m = { .flags = PORTD_LEASE_F_PORTSERVER, .count = 1,
					   .transport = PORTD_TCP };
	struct lease_plan plan = { .m = &m, .untimed = true, .probe_udp = true, .tie_pid = pid };
	uint32_t ttl = 0, res, detail;
	enum lease_result lr;
	struct lease *l;
	int r;

	/* The quota first: an exhausted quota refuses without a system call. */
	lr = lease_table_admit(s->leases, c->uid, &ttl);
	if (lr == LEASE_OK && !ports_admit(s, c->uid, 1))
		lr = LEASE_E_QUOTA_UID;
	if (lr != LEASE_OK)
		return -(int)lease_result_code(lr);
	r = check_mortal_pid(s, c, pid, &plan.tie_proc, &plan.tie_pidfd);
	if (r < 0)
		return r;
	l = lease_make(s, c, &plan, &res, &detail);
	if (plan.tie_pidfd >= 0)
		close(plan.tie_pidfd);
	if (!l)
		return -(int)res;
	proc_set_mortal(l->watch);
	*id = l->id;
	log_lease_debug("grant", l->id, l->ports[0].port, c->uid,
			"lease %" PRIu64 " granted over the portserver socket: tcp port %u for pid %d, "
			"uid %u pid %d", l->id, l->ports[0].port, (int)pid, c->uid, (int)c->pid);
	return l->ports[0].port;
}

/* The caller's view of lease id: found and accessible, or an error reply. */
static struct lease *lookup(struct service *s, struct caller *c, const struct proto_hdr *h,
			    uint64_t id, struct reply *r)
{
	struct lease *l = lease_table_find(s->leases, id);

	if (!l) {
		reply_lease_error(s, r, h, LEASE_E_NOENT);
		return NULL;
	}
	if (!lease_may_access(l, c->uid)) {
		reply_lease_error(s, r, h, LEASE_E_PERM);
		return NULL;
	}
	return l;
}

static void op_renew(struct service *s, struct caller *c, const struct proto_hdr *h,
		     const uint8_t *body, size_t blen, struct reply *r)
{
	struct proto_renew_req m;
	struct proto_renew_rep rep;
	enum lease_result lr;
	struct lease *l;
	ssize_t n;

	if (proto_decode_renew_req(body, blen, &m) < 0) {
		reply_error(r, h->type, h->id, PORTD_R_PROTO, 0);
		return;
	}
	if (!(l = lookup(s, c, h, m.id, r)))
		return;
	/* A portserver lease lives exactly as long as its process: no deadline to move. */
	if (l->deadline == LEASE_NO_DEADLINE) {
		reply_error(r, h->type, h->id, PORTD_R_INVAL, 0);
		return;
	}
	lr = lease_table_renew(s->leases, l, m.ttl);
	if (lr != LEASE_OK) {
		reply_lease_error(s, r, h, lr);
		return;
	}
	rep.id = l->id;
	rep.ttl = l->ttl_s;
	n = proto_encode_renew_rep(r->buf, sizeof(r->buf), h->id, &rep);
	r->len = n > 0 ? (size_t)n : 0;
	log_lease_debug("renew", l->id, l->ports[0].port, l->uid, "lease %" PRIu64 " renewed: ttl %u s",
			l->id, l->ttl_s);
	service_rearm(s);
}

static void op_release(struct service *s, struct caller *c, const struct proto_hdr *h,
		       const uint8_t *body, size_t blen, struct reply *r)
{
	struct proto_release_req m;
	struct lease *l;
	uint64_t id;
	ssize_t n;

	if (proto_decode_release_req(body, blen, &m) < 0) {
		reply_error(r, h->type, h->id, PORTD_R_PROTO, 0);
		return;
	}
	id = m.id;
	if (!id) {
		l = lease_table_find_port(s->leases, m.port, m.transport == PORTD_BOTH ? 0 : m.transport);
		if (!l) {
			reply_lease_error(s, r, h, LEASE_E_NOENT);
			return;
		}
		id = l->id;
	}
	if (!(l = lookup(s, c, h, id, r)))
		return;
	lease_end(s, l, END_RELEASE);
	n = proto_encode_release_rep(r->buf, sizeof(r->buf), h->id, id);
	r->len = n > 0 ? (size_t)n : 0;
	service_rearm(s);
}

static void op_list(struct service *s, struct caller *c, const struct proto_hdr *h,
		    const uint8_t *body, size_t blen, struct reply *r)
{
	struct proto_list_req m;
	struct lease *l;
	size_t len;
	bool more = false;

	if (proto_decode_list_req(body, blen, &m) < 0) {
		reply_error(r, h->type, h->id, PORTD_R_PROTO, 0);
		return;
	}
	len = proto_list_begin(r->buf, sizeof(r->buf), h->id);
	for (l = lease_table_first_after(s->leases, m.after_id); l; l = lease_next(l)) {
		struct proto_lease_info e = { 0 };

		if (!lease_may_access(l, c->uid))
			continue;
		e.id = l->id;
		e.expires_in_ms = lease_expires_in(s->leases, l);
		e.uid = l->uid;
		e.pid = (uint32_t)l->pid;
		e.ttl = l->ttl_s;
		e.flags = l->flags;
		e.transport = l->transport;
		e.tied_pid = (uint32_t)l->tied_pid;
		/* One number per port: a PORTD_BOTH lease holds two sockets per number. */
		for (uint16_t i = 0; i < l->nports; i++)
			if (!e.nports || e.ports[e.nports - 1] != l->ports[i].port)
				e.ports[e.nports++] = l->ports[i].port;
		int err = proto_list_add(r->buf, sizeof(r->buf), &len, &e);
		if (err == -ENOSPC) {
			more = true;
			break;
		}
		if (err < 0) {
			/* A lease the codec cannot describe is a daemon bug: say so, don't loop. */
			reply_error(r, h->type, h->id, PORTD_R_INTERNAL, (uint32_t)-err);
			return;
		}
	}
	proto_list_finish(r->buf, len, more);
	r->len = len;
}

static void op_status(struct service *s, struct caller *c, const struct proto_hdr *h,
		      const uint8_t *body, size_t blen, struct reply *r)
{
	const struct lease_limits *lim = lease_table_limits(s->leases);
	const struct ports_config *pc = ports_config(s->ports);
	struct proto_status m = { 0 };
	uint32_t want = 0;
	ssize_t n;

	if (proto_decode_status_req(body, blen, &want) < 0) {
		reply_error(r, h->type, h->id, PORTD_R_PROTO, 0);
		return;
	}
	ports_expire(s->ports);
	m.uptime_ms = clock_now(&s->clk) - s->started;
	m.leases = (uint32_t)lease_table_count(s->leases);
	m.ports_held = (uint32_t)ports_held(s->ports);
	m.quarantined = (uint32_t)ports_quarantined(s->ports);
	m.connections = s->connections;
	m.max_leases = lim->max_leases;
	m.max_per_uid = lim->max_per_uid;
	m.default_ttl = lim->default_ttl_s;
	m.max_ttl = lim->max_ttl_s;
	m.quarantine = pc->quarantine_ms / 1000;
	m.range_lo = pc->lo;
	m.range_hi = pc->hi;
	m.caller_leases = lease_table_uid_count(s->leases, c->uid);
	m.flags = (s->reserved ? PORTD_STATUS_F_RESERVED : 0) | (s->host.low ? PORTD_STATUS_F_EPH_LOW : 0);
	m.eph_lo = s->host.lo;
	m.eph_hi = s->host.hi;
	m.eph_in_use = s->host.in_use;
	snprintf(m.version, sizeof(m.version), "%s", PORTD_VERSION);
	m.heap_bytes = usage_heap_bytes();
	/*
	 * Counting fds reads /proc/self/fd, about a microsecond per entry and one
	 * entry per held port (12 ms with 15,000 held, the loop serving no one):
	 * only when asked, and only for the daemon's own user and root.
	 */
	if ((want & PORTD_STATUS_REQ_F_FDS) && (c->uid == 0 || c->uid == s->self_uid))
		m.open_fds = usage_open_fds();
	n = proto_encode_status_rep(r->buf, sizeof(r->buf), h->id, &m);
	r->len = n > 0 ? (size_t)n : 0;
}

static void op_hello(struct service *s, struct caller *c, const struct proto_hdr *h,
		     const uint8_t *body, size_t blen, struct reply *r)
{
	ssize_t n;

	if (proto_decode_hello_req(body, blen) < 0) {
		reply_error(r, h->type, h->id, PORTD_R_PROTO, 0);
		return;
	}
	n = proto_encode_hello_rep(r->buf, sizeof(r->buf), h->id, c->uid, (uint32_t)c->pid);
	r->len = n > 0 ? (size_t)n : 0;
}

typedef void (*op_fn)(struct service *, struct caller *, const struct proto_hdr *,
		      const uint8_t *, size_t, struct reply *);

static const op_fn ops[] = {
	[PORTD_MSG_LEASE] = op_lease,
	[PORTD_MSG_RENEW] = op_renew,
	[PORTD_MSG_RELEASE] = op_release,
	[PORTD_MSG_LIST] = op_list,
	[PORTD_MSG_STATUS] = op_status,
	[PORTD_MSG_HELLO] = op_hello,
};

void service_handle(struct service *s, struct caller *c, const void *msg, size_t len,
		    size_t nfds, struct reply *r)
{
	struct proto_hdr h = { 0 };
	int err;

	r->len = 0;
	r->nfds = 0;
	r->new_lease = 0;
	r->close = false;

	err = proto_hdr_decode(msg, len, &h);
	if (err == -EPROTONOSUPPORT) {
		reply_error(r, h.type, h.id, PORTD_R_VERSION, PORTD_PROTO_VERSION);
		return;
	}
	if (err < 0 || nfds || (h.type & PORTD_MSG_REPLY)) {
		/* Garbage, a stray reply, or fds where the protocol allows none: drop the peer. */
		reply_error(r, h.type & ~PORTD_MSG_REPLY, h.id, PORTD_R_PROTO, 0);
		return;
	}
	if (h.type >= sizeof(ops) / sizeof(ops[0]) || !ops[h.type]) {
		reply_error(r, h.type, h.id, PORTD_R_BADTYPE, h.type);
		return;
	}
	ops[h.type](s, c, &h, proto_body(msg), len - PORTD_HDR_SIZE, r);
}

void service_caller_done(struct service *s, struct caller *c)
{
	proc_unref(s->procs, c->watch);
	c->watch = NULL;
}

void service_abort_lease(struct service *s, uint64_t id)
{
	struct lease *l = lease_table_find(s->leases, id);

	if (l) {
		lease_end(s, l, END_ABORT);
		service_rearm(s);
	}
}

void service_discard_lease(struct service *s, uint64_t id)
{
	struct lease *l = lease_table_find(s->leases, id);

	if (l) {
		lease_end(s, l, END_DISCARD);
		service_rearm(s);
	}
}

/* ---- restart ---- */

int service_held_fds(const struct service *s, int **fds, size_t *n)
{
	size_t cap = ports_held(s->ports), k = 0;
	int *v = malloc((cap ? cap : 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (struct lease *l = lease_table_first_after(s->leases, 0); l; l = lease_next(l))
		for (uint16_t i = 0; i < l->nports; i++)
			if (l->ports[i].fd >= 0 && k < cap)
				v[k++] = l->ports[i].fd;
	*fds = v;
	*n = k;
	return 0;
}

static uint64_t tied_start(const struct lease *l, void *ctx)
{
	return l->watch ? proc_start(l->watch) : 0;
}

int service_save(const struct service *s, const char *path)
{
	return state_save(path, s->leases, tied_start, NULL);
}

struct restore {
	struct service *s;
	int *stored;
	size_t nstored;
	int restored, dropped;
};

/* The stored fd that is a socket of transport bound to port, taken out of the list; -1 if none. */
static int take_stored(struct restore *rs, uint8_t transport, uint16_t port)
{
	for (size_t i = 0; i < rs->nstored; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int type = 0, fd = rs->stored[i];
		socklen_t tl = sizeof(type);
		uint16_t p;

		if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
			continue;
		if (ss.ss_family == AF_INET6)
			p = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		else if (ss.ss_family == AF_INET)
			p = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else
			continue;
		if (p == port && type == (transport == PORTD_UDP ? SOCK_DGRAM : SOCK_STREAM)) {
			rs->stored[i] = -1;
			return fd;
		}
	}
	return -1;
}

static void restore_one(const struct saved_lease *sl, void *ctx)
{
	struct restore *rs = ctx;
	struct service *s = rs->s;
	uint64_t now = clock_now(&s->clk);
	struct lease *l;
	const char *why = NULL;

	if (sl->deadline <= now) {
		why = "expired while portd was down";
		goto drop_saved;
	}
	if (sl->deadline == LEASE_NO_DEADLINE && !sl->tied_pid) {
		why = "it has neither a deadline nor a process";
		goto drop_saved;
	}
	l = lease_alloc(sl->nports);
	if (!l) {
		why = "out of memory";
		goto drop_saved;
	}
	l->id = sl->id;
	l->uid = sl->uid;
	l->pid = sl->pid;
	l->flags = sl->flags;
	l->transport = sl->transport;
	l->ttl_s = sl->ttl_s;
	for (uint16_t i = 0; i < sl->nports; i++) {
		const struct saved_port *sp = &sl->ports[i];
		int fd = take_stored(rs, sp->transport, sp->port), r;
		uint16_t got;

		/* No stored socket (no systemd, or the FD store was emptied): bind the port again. */
		if (fd < 0 && sp->held) {
			r = s->binder.bind(s->binder.ctx, sp->transport, sp->port, &fd, &got);
			if (r == -EADDRINUSE && (sl->flags & PORTD_LEASE_F_FD)) {
				/* The client's copy of the socket is still bound: it holds the port. */
				fd = -1;
			} else if (r < 0) {
				log_warn("lease %" PRIu64 ": %s port %u could not be bound again: %s",
					 sl->id, proto_transport_name(sp->transport), sp->port,
					 r == -EADDRINUSE ? "another process took it while portd was down"
							  : strerror(-r));
				why = "a port was taken";
				goto drop;
			}
		}
		if (fd >= 0 && !sp->held) {
			s->binder.close(s->binder.ctx, fd); /* handed over before: the client owns the port */
			fd = -1;
		}
		l->ports[i] = (struct lease_port){ .port = sp->port, .transport = sp->transport, .fd = fd };
		r = ports_mark_held(s->ports, sp->transport, sp->port);
		if (r < 0) {
			why = "a port is held twice in the state file";
			l->ports[i].port = 0; /* not ours to give back */
			goto drop;
		}
	}
	if (lease_table_restore(s->leases, l, sl->deadline == LEASE_NO_DEADLINE ? LEASE_NO_DEADLINE
										 : sl->deadline - now) != LEASE_OK) {
		why = "its id or ports clash with another saved lease, or a limit was lowered";
		goto drop;
	}
	if (uidcount_add(s->uid_ports, l->uid, lease_numbers(l)) < 0) {
		lease_table_remove(s->leases, l);
		why = "out of memory";
		goto drop;
	}
	if (sl->tied_pid) {
		struct proc *p;

		if (procwatch_get(s->procs, sl->tied_pid, -1, &p) < 0) {
			why = "its process exited while portd was down";
			goto drop_counted;
		}
		if (proc_start(p) != sl->tied_start) {
			procwatch_put(s->procs, p);
			why = "its process exited while portd was down (pid reused)";
			goto drop_counted;
		}
		proc_attach(p, l);
	}
	rs->restored++;
	log_lease_debug("restore", l->id, l->ports[0].port, l->uid,
			"lease %" PRIu64 " restored: port %u, uid %u, %" PRIu64 " ms left", l->id,
			l->ports[0].port, l->uid, lease_expires_in(s->leases, l));
	return;
drop_counted:
	uidcount_sub(s->uid_ports, l->uid, lease_numbers(l));
	lease_table_remove(s->leases, l);
drop:
	lease_unbind(s, l, true);
	lease_free(l);
drop_saved:
	rs->dropped++;
	log_info("lease %" PRIu64 " of uid %u not restored: %s", sl->id, sl->uid, why);
}

int service_restore(struct service *s, const char *path, int *stored, size_t nstored)
{
	struct restore rs = { .s = s, .stored = stored, .nstored = nstored };
	unsigned bad = 0, extra = 0;
	uint64_t next_id = 0;
	int r = state_load(path, restore_one, &rs, &next_id, &bad);

	for (size_t i = 0; i < nstored; i++)
		if (stored[i] >= 0) {
			s->binder.close(s->binder.ctx, stored[i]);
			stored[i] = -1;
			extra++;
		}
	if (extra)
		log_warn("closed %u stored socket(s) that no saved lease claimed", extra);
	if (bad)
		log_warn("%s: %u malformed line(s) skipped", path, bad);
	if (r < 0)
		return r;
	lease_table_raise_next_id(s->leases, next_id);
	if (rs.restored || rs.dropped)
		log_info("restored %d lease(s) from %s, dropped %d", rs.restored, path, rs.dropped);
	service_rearm(s);
	return rs.restored;
}

void service_summary(struct service *s, char *buf, size_t len)
{
	const struct service_host *h = &s->host;
	int n;

	ports_expire(s->ports);
	n = snprintf(buf, len, "%zu leases, %zu ports held, %zu quarantined, %u connections",
		     lease_table_count(s->leases), ports_held(s->ports), ports_quarantined(s->ports),
		     s->connections);
	if (h->lo && n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "; host ports %u of %u in use%s", h->in_use,
			 (unsigned)h->hi - h->lo + 1, h->low ? ", close to exhaustion" : "");
}

void service_set_host(struct service *s, const struct service_host *h)
{
	s->host = h ? *h : (struct service_host){ 0 };
}
