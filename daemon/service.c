/*
 * Request handling. Every request goes through service_handle(): decode the
 * header, dispatch on the type, decode the body (all checks are in proto/),
 * act on the lease table, encode exactly one reply.
 *
 * A lease is made in an order that leaves nothing behind on any failure:
 * admission (ttl and quotas) first, then the ports are bound, then the lease
 * enters the table, then it is tied to its process. lease_end() undoes all of
 * it and is the only way a lease ends.
 */
#include "service.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "codec.h"
#include "config.h"
#include "log.h"
#include "procwatch.h"

/* Leases expired per timer callback; the rest wait for the next turn of the loop. */
#define EXPIRE_BATCH 512

struct service {
	struct event_base *base;
	struct clock clk;
	struct lease_table *leases;
	struct port_source *ports;
	struct ports_binder binder;
	struct procwatch *procs;
	struct event *timer;
	uint64_t armed;      /* deadline the timer is armed for, UINT64_MAX if none */
	uint64_t started;
	uint32_t connections;
};

static const char *const end_reasons[] = { "released", "expired", "process exited", "aborted", "shutdown" };
enum end_reason { END_RELEASE, END_EXPIRE, END_EXIT, END_ABORT, END_SHUTDOWN };

/* Undo everything a lease holds; it is no longer in the table. */
static void lease_teardown(struct service *s, struct lease *l, enum end_reason why)
{
	proc_detach(s->procs, l);
	for (uint16_t i = 0; i < l->nports; i++) {
		if (l->ports[i].fd < 0)
			continue;
		ports_release(s->ports, l->ports[i].transport, l->ports[i].port);
		s->binder.close(s->binder.ctx, l->ports[i].fd);
		l->ports[i].fd = -1;
	}
	log_debug("lease %" PRIu64 " ended (%s): port %u, uid %u", l->id, end_reasons[why],
		  l->nports ? l->ports[0].port : 0, l->uid);
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

static void on_proc_exit(struct proc *p, void *arg)
{
	struct service *s = arg;
	struct lease *l;

	while ((l = proc_first_lease(p)))
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
	s->leases = lease_table_new(&cfg->limits, &s->clk);
	s->ports = ports_new(&cfg->ports, &s->clk, &s->binder);
	s->procs = procwatch_new(base, on_proc_exit, s);
	s->timer = evtimer_new(base, on_timer, s);
	if (!s->leases || !s->ports || !s->procs || !s->timer) {
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

/* Map an error of ports_acquire() to a result the client can act on. */
static void reply_ports_error(struct reply *r, const struct proto_hdr *h, int err)
{
	switch (err) {
	case -EADDRNOTAVAIL: reply_error(r, h->type, h->id, PORTD_R_NOPORTS, 0); break;
	case -EADDRINUSE: reply_error(r, h->type, h->id, PORTD_R_BUSY, 0); break;
	case -EINVAL: reply_error(r, h->type, h->id, PORTD_R_INVAL, 0); break;
	default: reply_error(r, h->type, h->id, PORTD_R_INTERNAL, (uint32_t)-err); break;
	}
}

/* ---- operations ---- */

static void op_lease(struct service *s, const struct caller *c, const struct proto_hdr *h,
		     const uint8_t *body, size_t blen, struct reply *r)
{
	struct proto_lease_req m;
	struct proto_lease_rep rep = { 0 };
	struct lease *l;
	enum lease_result lr;
	uint32_t ttl;
	int fd = -1, err;
	uint16_t port;
	ssize_t n;

	if (proto_decode_lease_req(body, blen, &m) < 0) {
		reply_error(r, h->type, h->id, PORTD_R_PROTO, 0);
		return;
	}
	/* Several ports, UDP and leases tied to another process are not served yet. */
	if (m.count != 1 || m.transport != PORTD_TCP || m.pid != 0) {
		reply_error(r, h->type, h->id, PORTD_R_UNSUPPORTED, 0);
		return;
	}

	ttl = m.ttl;
	lr = lease_table_admit(s->leases, c->uid, &ttl);
	if (lr != LEASE_OK) {
		reply_lease_error(s, r, h, lr);
		return;
	}

	l = lease_alloc(1);
	if (!l) {
		reply_error(r, h->type, h->id, PORTD_R_INTERNAL, ENOMEM);
		return;
	}
	err = ports_acquire(s->ports, PORTD_TCP, m.port, &fd, &port);
	if (err < 0) {
		lease_free(l);
		reply_ports_error(r, h, err);
		return;
	}
	l->ports[0] = (struct lease_port){ .port = port, .transport = PORTD_TCP, .fd = fd };
	l->uid = c->uid;
	l->pid = c->pid;
	l->flags = m.flags;
	l->transport = m.transport;
	lr = lease_table_add(s->leases, l, ttl);
	if (lr != LEASE_OK) {
		ports_release(s->ports, PORTD_TCP, port);
		s->binder.close(s->binder.ctx, fd);
		lease_free(l);
		reply_lease_error(s, r, h, lr);
		return;
	}
	if (m.flags & PORTD_LEASE_F_TIE) {
		struct proc *p;
		err = procwatch_get(s->procs, c->pid, c->pidfd, &p);
		if (err < 0) {
			/* -ESRCH: the caller is gone already; nobody will read the reply. */
			lease_end(s, l, END_ABORT);
			reply_error(r, h->type, h->id, PORTD_R_INTERNAL, (uint32_t)-err);
			return;
		}
		proc_attach(p, l);
	}

	rep.id = l->id;
	rep.ttl = l->ttl_s;
	rep.flags = l->flags;
	rep.transport = l->transport;
	rep.count = 1;
	rep.ports[0] = port;
	n = proto_encode_lease_rep(r->buf, sizeof(r->buf), h->id, &rep);
	if (n < 0) {
		lease_end(s, l, END_ABORT);
		reply_error(r, h->type, h->id, PORTD_R_INTERNAL, EMSGSIZE);
		return;
	}
	r->len = (size_t)n;
	if (m.flags & PORTD_LEASE_F_FD) {
		r->fds[0] = fd;
		r->nfds = 1;
	}
	r->new_lease = l->id;
	log_debug("lease %" PRIu64 " granted: port %u, ttl %u s, uid %u pid %d%s%s", l->id, port,
		  l->ttl_s, c->uid, (int)c->pid, (l->flags & PORTD_LEASE_F_FD) ? ", fd" : ", number",
		  (l->flags & PORTD_LEASE_F_TIE) ? ", tied" : "");
	service_rearm(s);
}

/* The caller's view of lease id: found and accessible, or an error reply. */
static struct lease *lookup(struct service *s, const struct caller *c, const struct proto_hdr *h,
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

static void op_renew(struct service *s, const struct caller *c, const struct proto_hdr *h,
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
	lr = lease_table_renew(s->leases, l, m.ttl);
	if (lr != LEASE_OK) {
		reply_lease_error(s, r, h, lr);
		return;
	}
	rep.id = l->id;
	rep.ttl = l->ttl_s;
	n = proto_encode_renew_rep(r->buf, sizeof(r->buf), h->id, &rep);
	r->len = n > 0 ? (size_t)n : 0;
	log_debug("lease %" PRIu64 " renewed: ttl %u s", l->id, l->ttl_s);
	service_rearm(s);
}

static void op_release(struct service *s, const struct caller *c, const struct proto_hdr *h,
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

static void op_list(struct service *s, const struct caller *c, const struct proto_hdr *h,
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

static void op_status(struct service *s, const struct caller *c, const struct proto_hdr *h,
		      const uint8_t *body, size_t blen, struct reply *r)
{
	const struct lease_limits *lim = lease_table_limits(s->leases);
	const struct ports_config *pc = ports_config(s->ports);
	struct proto_status m = { 0 };
	ssize_t n;

	if (proto_decode_status_req(body, blen) < 0) {
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
	snprintf(m.version, sizeof(m.version), "%s", PORTD_VERSION);
	n = proto_encode_status_rep(r->buf, sizeof(r->buf), h->id, &m);
	r->len = n > 0 ? (size_t)n : 0;
}

typedef void (*op_fn)(struct service *, const struct caller *, const struct proto_hdr *,
		      const uint8_t *, size_t, struct reply *);

static const op_fn ops[] = {
	[PORTD_MSG_LEASE] = op_lease,
	[PORTD_MSG_RENEW] = op_renew,
	[PORTD_MSG_RELEASE] = op_release,
	[PORTD_MSG_LIST] = op_list,
	[PORTD_MSG_STATUS] = op_status,
};

void service_handle(struct service *s, const struct caller *c, const void *msg, size_t len,
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

void service_abort_lease(struct service *s, uint64_t id)
{
	struct lease *l = lease_table_find(s->leases, id);

	if (l) {
		lease_end(s, l, END_ABORT);
		service_rearm(s);
	}
}
