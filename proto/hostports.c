/*
 * The host's ephemeral ports, from the sysctls and four sock_diag dumps.
 *
 * Each dump is an inet_diag_req_v2 for one (family, protocol) pair, asking
 * for every TCP state (the bound-but-inactive one included, which kernels
 * before 6.8 ignore) and carrying a bytecode filter sport >= lo && sport
 * <= hi, so that the kernel sends only sockets inside the range: a server
 * with thousands of connections on port 443 costs nothing. The dumps run one
 * after the other on one socket (a netlink socket runs one dump at a time);
 * each recv() takes one datagram the kernel filled (at most 32 KiB) and lets
 * it fill the next, so a slice of a few reads is a bounded amount of work.
 *
 * Distinct ports are counted with one 65536-bit set per state; owners by
 * sorting (uid, port) pairs.
 */
#include "hostports.h"
#include "portset.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#define RECV_SIZE 65536       /* more than the 32 KiB the kernel puts in one dump datagram */
#define SCAN_TIMEOUT_MS 5000  /* hostports_scan(): longest wait for the kernel's next datagram */
#define SYSCTL_MAX (1 << 20)  /* the reserved list of every port is about 400 KiB */

/* TCP states as inet_diag reports them (include/net/tcp_states.h). */
enum {
	ST_ESTABLISHED = 1,
	ST_TIME_WAIT = 6,
	ST_CLOSE = 7,             /* a bound socket that neither listens nor connects */
	ST_LISTEN = 10,
	ST_BOUND_INACTIVE = 13,   /* only asked for: such sockets are reported as ST_CLOSE */
};
#define ALL_STATES ((1u << (ST_BOUND_INACTIVE + 1)) - 2)

enum kind { K_LISTEN, K_ESTABLISHED, K_TIME_WAIT, K_BOUND, K_OTHER, K_UDP, K_ANY, NKINDS };

static const struct {
	uint8_t family, protocol;
} dumps[] = {
	{ AF_INET, IPPROTO_TCP },
	{ AF_INET6, IPPROTO_TCP },
	{ AF_INET, IPPROTO_UDP },
	{ AF_INET6, IPPROTO_UDP },
};
#define NDUMPS (sizeof(dumps) / sizeof(dumps[0]))

struct hostports_scan {
	int fd;
	unsigned flags;
	size_t dump;              /* the dump under way; NDUMPS once complete */
	uint32_t seq;
	struct hostports res;     /* range and reservations from begin; counts at the end */
	struct portset reserved;
	struct portset seen[NKINDS];
	uint64_t *owned;          /* (uid << 16 | port) of sockets with an owner */
	size_t nowned, owned_cap;
	uint8_t buf[RECV_SIZE] __attribute__((aligned(NLMSG_ALIGNTO)));
};

/* One dump request: header, inet_diag_req_v2, and the bytecode attribute. */
struct dump_req {
	struct nlmsghdr nlh;
	struct inet_diag_req_v2 r;
	struct nlattr bc;
	struct inet_diag_bc_op ops[4];
};
_Static_assert(sizeof(struct dump_req) ==
	       NLMSG_LENGTH(sizeof(struct inet_diag_req_v2)) + NLA_HDRLEN + 4 * sizeof(struct inet_diag_bc_op),
	       "dump request without padding");

int hostports_parse_range(const char *s, uint16_t *lo, uint16_t *hi)
{
	uint32_t a, b;

	if (portset_parse_port(&s, &a) < 0 || (*s != ' ' && *s != '\t'))
		return -EINVAL;
	s += strspn(s, " \t");
	if (portset_parse_port(&s, &b) < 0 || (*s && strcmp(s, "\n") != 0) || a < 1 || a > b)
		return -EINVAL;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

/*
 * The whole text of a sysctl file, malloc'ed and NUL-terminated. 0 or -errno.
 * A sysctl must be read in one read() from offset 0 (ip_local_reserved_ports
 * answers a read at an offset with end of file): a read that fills the
 * buffer is done again with a bigger one.
 */
static int read_sysctl(const char *path, char **out)
{
	size_t cap = 4096;
	char *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0)
		return -errno;
	for (;;) {
		char *bigger = realloc(buf, cap);
		ssize_t r;

		if (!bigger) {
			err = -ENOMEM;
			break;
		}
		buf = bigger;
		do
			r = pread(fd, buf, cap, 0);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			err = -errno;
			break;
		}
		if ((size_t)r < cap) {
			close(fd);
			buf[r] = '\0';
			*out = buf;
			return 0;
		}
		if (cap >= SYSCTL_MAX) {
			err = -EFBIG;
			break;
		}
		cap *= 2;
	}
	close(fd);
	free(buf);
	return err;
}

/* The reserved list for people: without the newline, cut at a comma with "..." if too long. */
static void reserved_text(const char *s, char *out, size_t len)
{
	size_t n = strcspn(s, "\n");

	if (n < len) {
		memcpy(out, s, n);
		out[n] = '\0';
		return;
	}
	n = len - 4; /* room for "..." and the NUL */
	while (n > 0 && s[n - 1] != ',')
		n--;
	memcpy(out, s, n); /* up to and with a comma */
	strcpy(out + n, "...");
}

static int read_config(struct hostports_scan *s)
{
	char *text = NULL;
	int r;

	r = read_sysctl(HOSTPORTS_RANGE_SYSCTL, &text);
	if (r < 0)
		return r;
	r = hostports_parse_range(text, &s->res.lo, &s->res.hi);
	free(text);
	if (r < 0)
		return r;
	/* No reserved list (a kernel without the sysctl) is no reservation. */
	if (read_sysctl(HOSTPORTS_RESERVED_SYSCTL, &text) == 0) {
		r = portset_parse(text, &s->reserved);
		if (r == 0)
			reserved_text(text, s->res.reserved_list, sizeof(s->res.reserved_list));
		free(text);
		if (r < 0)
			return r;
	}
	s->res.size = (uint32_t)s->res.hi - s->res.lo + 1;
	s->res.reserved = portset_count(&s->reserved, s->res.lo, s->res.hi);
	s->res.usable = s->res.size - s->res.reserved;
	return 0;
}

static int send_dump(struct hostports_scan *s)
{
	uint16_t lo = s->res.lo, hi = s->res.hi;
	struct dump_req req = {
		.nlh = {
			.nlmsg_len = sizeof(req),
			.nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
			.nlmsg_seq = ++s->seq,
		},
		.r = {
			.sdiag_family = dumps[s->dump].family,
			.sdiag_protocol = dumps[s->dump].protocol,
			.idiag_states = ALL_STATES,
		},
		.bc = { .nla_len = NLA_HDRLEN + 4 * sizeof(struct inet_diag_bc_op),
			.nla_type = INET_DIAG_REQ_BYTECODE },
		/*
		 * A jump to the end accepts, one past it (len + 4) rejects; an
		 * op's "no" is its offset from the op. The second op of each pair
		 * only carries the port.
		 */
		.ops = {
			{ INET_DIAG_BC_S_GE, 8, 20 },
			{ 0, 0, lo },
			{ INET_DIAG_BC_S_LE, 8, 12 },
			{ 0, 0, hi },
		},
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t n;

	do
		n = sendto(s->fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(req) ? 0 : -EIO;
}

static int owned_add(struct hostports_scan *s, uint32_t uid, uint16_t port)
{
	if (s->nowned == s->owned_cap) {
		size_t cap = s->owned_cap ? s->owned_cap * 2 : 1024;
		uint64_t *v = realloc(s->owned, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->owned = v;
		s->owned_cap = cap;
	}
	s->owned[s->nowned++] = (uint64_t)uid << 16 | port;
	return 0;
}

static int count_socket(struct hostports_scan *s, const struct inet_diag_msg *m)
{
	uint16_t port = ntohs(m->id.idiag_sport);
	enum kind k;

	/* The kernel filtered on the range already; reservations are ours to skip. */
	if (port < s->res.lo || port > s->res.hi || portset_has(&s->reserved, port))
		return 0;
	if (dumps[s->dump].protocol == IPPROTO_UDP)
		k = K_UDP;
	else if (m->idiag_state == ST_LISTEN)
		k = K_LISTEN;
	else if (m->idiag_state == ST_ESTABLISHED)
		k = K_ESTABLISHED;
	else if (m->idiag_state == ST_TIME_WAIT)
		k = K_TIME_WAIT;
	else if (m->idiag_state == ST_CLOSE || m->idiag_state == ST_BOUND_INACTIVE)
		k = K_BOUND;
	else
		k = K_OTHER;
	portset_add(&s->seen[k], port);
	portset_add(&s->seen[K_ANY], port);
	s->res.sockets++;
	/* Inode 0: no socket file, so no process (TIME-WAIT, a request not yet accepted). */
	if ((s->flags & HOSTPORTS_OWNERS) && m->idiag_inode)
		return owned_add(s, m->idiag_uid, port);
	return 0;
}

/* This dump ended: start the next one. 1: one was sent; 0: that was the last. */
static int next_dump(struct hostports_scan *s)
{
	int r;

	if (++s->dump >= NDUMPS)
		return 0;
	r = send_dump(s);
	return r < 0 ? r : 1;
}

/*
 * The message after h, n bytes left from h on. NLMSG_NEXT() would take an
 * unsigned n below zero after a last message whose length is not aligned;
 * this ends the walk instead.
 */
static struct nlmsghdr *nl_next(struct nlmsghdr *h, size_t *n)
{
	size_t step = NLMSG_ALIGN(h->nlmsg_len);

	if (step > *n) {
		*n = 0;
		return h;
	}
	*n -= step;
	return (struct nlmsghdr *)((char *)h + step);
}

/* One datagram of n bytes. 1: the scan goes on; 0: complete; -errno. */
static int handle_datagram(struct hostports_scan *s, size_t n)
{
	struct nlmsghdr *h = (struct nlmsghdr *)s->buf;
	int r;

	for (; NLMSG_OK(h, n); h = nl_next(h, &n)) {
		if (h->nlmsg_seq != s->seq)
			continue; /* nothing else is sent on this socket; ignore it anyway */
		switch (h->nlmsg_type) {
		case NLMSG_DONE:
			/* A dump that failed part way carries its error here. */
			if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) && *(int *)NLMSG_DATA(h) < 0)
				return *(int *)NLMSG_DATA(h);
			return next_dump(s);
		case NLMSG_ERROR: {
			const struct nlmsgerr *e = NLMSG_DATA(h);

			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
				return -EBADMSG;
			/* No diag module for this protocol (udp_diag not built): nothing to count. */
			if (e->error == -ENOENT)
				return next_dump(s);
			return e->error < 0 ? e->error : -EBADMSG;
		}
		case SOCK_DIAG_BY_FAMILY:
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
				return -EBADMSG;
			r = count_socket(s, NLMSG_DATA(h));
			if (r < 0)
				return r;
			break;
		}
	}
	return 1;
}

int hostports_scan_begin(unsigned flags, struct hostports_scan **out)
{
	struct hostports_scan *s = calloc(1, sizeof(*s));
	int r;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->flags = flags;
	s->fd = -1;
	r = read_config(s);
	if (r < 0)
		goto fail;
	s->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
	if (s->fd < 0) {
		r = -errno;
		goto fail;
	}
	r = send_dump(s);
	if (r < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	hostports_scan_free(s);
	return r;
}

int hostports_scan_fd(const struct hostports_scan *s)
{
	return s->fd;
}

int hostports_scan_step(struct hostports_scan *s, int max_reads)
{
	if (s->dump >= NDUMPS)
		return 0;
	for (int i = 0; i < max_reads; i++) {
		ssize_t n = recv(s->fd, s->buf, sizeof(s->buf), MSG_TRUNC);
		int r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 1 : -errno;
		if ((size_t)n > sizeof(s->buf))
			return -EMSGSIZE;
		r = handle_datagram(s, (size_t)n);
		if (r <= 0)
			return r;
	}
	return 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Keep the HOSTPORTS_OWNERS_MAX uids with the most ports: most first, then lowest uid. */
static void owners_offer(struct hostports *h, uint32_t uid, uint32_t ports)
{
	size_t i = h->nowners;

	if (i == HOSTPORTS_OWNERS_MAX) {
		if (ports <= h->owners[i - 1].ports)
			return;
		i--;
	} else {
		h->nowners++;
	}
	for (; i > 0 && h->owners[i - 1].ports < ports; i--)
		h->owners[i] = h->owners[i - 1];
	h->owners[i] = (struct hostports_owner){ uid, ports };
}

static void owners_count(struct hostports_scan *s, struct hostports *h)
{
	uint64_t *v = s->owned;
	size_t n = s->nowned, i = 0;

	/* Sorted by uid then port: duplicates are adjacent, and each uid is one run. */
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	while (i < n) {
		uint32_t uid = (uint32_t)(v[i] >> 16), ports = 0;

		for (; i < n && (uint32_t)(v[i] >> 16) == uid; i++)
			if (i == 0 || v[i] != v[i - 1])
				ports++;
		owners_offer(h, uid, ports);
	}
}

void hostports_scan_result(struct hostports_scan *s, struct hostports *out)
{
	uint32_t lo = s->res.lo, hi = s->res.hi;

	*out = s->res;
	out->tcp_listen = portset_count(&s->seen[K_LISTEN], lo, hi);
	out->tcp_established = portset_count(&s->seen[K_ESTABLISHED], lo, hi);
	out->tcp_time_wait = portset_count(&s->seen[K_TIME_WAIT], lo, hi);
	out->tcp_bound = portset_count(&s->seen[K_BOUND], lo, hi);
	out->tcp_other = portset_count(&s->seen[K_OTHER], lo, hi);
	out->udp = portset_count(&s->seen[K_UDP], lo, hi);
	out->in_use = portset_count(&s->seen[K_ANY], lo, hi);
	out->nowners = 0;
	if (s->flags & HOSTPORTS_OWNERS)
		owners_count(s, out);
}

void hostports_scan_free(struct hostports_scan *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->owned);
	free(s);
}

int hostports_scan(struct hostports *out, unsigned flags)
{
	struct hostports_scan *s;
	int r = hostports_scan_begin(flags, &s);

	while (r >= 0) {
		struct pollfd p;

		r = hostports_scan_step(s, INT_MAX);
		if (r != 1)
			break;
		p = (struct pollfd){ .fd = s->fd, .events = POLLIN };
		r = poll(&p, 1, SCAN_TIMEOUT_MS);
		if (r == 0)
			r = -ETIMEDOUT;
		else if (r < 0 && errno == EINTR)
			r = 0;
		else if (r < 0)
			r = -errno;
	}
	if (r == 0)
		hostports_scan_result(s, out);
	hostports_scan_free(s);
	return r;
}

unsigned hostports_percent(const struct hostports *h)
{
	if (!h->usable)
		return 100;
	return (unsigned)((uint64_t)h->in_use * 100 / h->usable);
}

bool hostports_low(const struct hostports *h, bool was_low)
{
	uint64_t mark = was_low ? HOSTPORTS_RECOVER_PERCENT : HOSTPORTS_LOW_PERCENT;

	/* Exact: 79.9 % is not 80 %. Nothing usable at all is as low as it gets. */
	return (uint64_t)h->in_use * 100 >= (uint64_t)h->usable * mark;
}
