/*
 * Encoders and decoders for every portd message (layouts in protocol.h).
 *
 * Every multi-byte field goes through get_uN()/put_uN(), which assemble
 * little-endian integers byte by byte: no struct is ever cast onto the wire,
 * so host endianness, alignment and padding cannot leak into the protocol.
 *
 * The encoding is canonical: each decoder rejects everything its encoder
 * would not produce (wrong length, reserved bytes or padding not zero,
 * unknown flag bits, fields out of range). Each encoder runs the same field
 * checks on its input and returns -EINVAL instead of writing a message its
 * peer would reject, so encode(decode(bytes)) reproduces the bytes exactly;
 * tests/fuzz/fuzz-codec.c relies on that.
 *
 * Decoders check the length before reading any field, so they never read
 * past len; on failure the output struct is zeroed or partly filled and must
 * not be used.
 */
#include "codec.h"

#include <errno.h>
#include <string.h>

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void put_u8(uint8_t *p, uint8_t v)
{
	p[0] = v;
}

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + 4, (uint32_t)(v >> 32));
}

/* True if the n bytes at p are all zero (reserved fields, padding). */
static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static bool transport_ok(uint8_t t)
{
	return t >= PORTD_TCP && t <= PORTD_BOTH;
}

/* Size of a LIST entry with nports ports: 40 + 2*nports, rounded up to 8. */
static size_t list_entry_size(uint16_t nports)
{
	return (PORTD_LIST_ENTRY_SIZE + 2u * nports + 7u) & ~(size_t)7u;
}

/*
 * Start a message of body_len body bytes in buf: checks cap, zeroes the
 * message (so every reserved byte and padding is zero) and writes the header.
 * Returns the body, or NULL if the message does not fit in cap.
 */
static uint8_t *msg_start(void *buf, size_t cap, uint16_t type, uint32_t id, size_t body_len)
{
	if (body_len > PORTD_MSG_MAX - PORTD_HDR_SIZE || cap < PORTD_HDR_SIZE + body_len)
		return NULL;
	memset(buf, 0, PORTD_HDR_SIZE + body_len);
	proto_hdr_encode(buf, type, id, body_len);
	return (uint8_t *)buf + PORTD_HDR_SIZE;
}

/* Every OK reply body starts with result = 0, detail = 0. */
static bool ok_prefix(const uint8_t *b)
{
	return get_u32(b) == PORTD_R_OK && get_u32(b + 4) == 0;
}

/* ---- header ---- */

int proto_hdr_decode(const void *buf, size_t len, struct proto_hdr *h)
{
	const uint8_t *b = buf;

	memset(h, 0, sizeof(*h));
	if (len < PORTD_HDR_SIZE || len > PORTD_MSG_MAX)
		return -EBADMSG;
	h->magic = get_u32(b);
	h->version = get_u16(b + 4);
	h->type = get_u16(b + 6);
	h->length = get_u32(b + 8);
	h->id = get_u32(b + 12);
	if (h->magic != PORTD_PROTO_MAGIC || h->length != len)
		return -EBADMSG;
	/* Checked last: the frozen header is fully valid, so the caller can
	 * still answer PORTD_R_VERSION with the request's type and id. */
	if (h->version != PORTD_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	return 0;
}

size_t proto_hdr_encode(void *buf, uint16_t type, uint32_t id, size_t body_len)
{
	uint8_t *b = buf;

	put_u32(b, PORTD_PROTO_MAGIC);
	put_u16(b + 4, PORTD_PROTO_VERSION);
	put_u16(b + 6, type);
	put_u32(b + 8, (uint32_t)(PORTD_HDR_SIZE + body_len));
	put_u32(b + 12, id);
	return PORTD_HDR_SIZE;
}

/* ---- LEASE ---- */

bool proto_lease_req_valid(const struct proto_lease_req *m)
{
	if ((m->flags & ~PORTD_LEASE_F_REQUEST) ||
	    m->count < 1 || m->count > PORTD_LEASE_PORTS_MAX ||
	    !transport_ok(m->transport) ||
	    (m->port != 0 && m->count != 1 && !(m->flags & PORTD_LEASE_F_CONSECUTIVE)) ||
	    (m->port != 0 && (uint32_t)m->port + m->count - 1 > UINT16_MAX) ||
	    m->nexclude > PORTD_EXCLUDE_MAX)
		return false;
	/* Each port of a PORTD_BOTH lease is two sockets. */
	if ((m->flags & PORTD_LEASE_F_FD) && m->transport == PORTD_BOTH &&
	    m->count > PORTD_FDS_MAX / 2)
		return false;
	for (uint16_t i = 0; i < m->nexclude; i++)
		if (m->exclude[i].lo == 0 || m->exclude[i].lo > m->exclude[i].hi)
			return false;
	return true;
}

ssize_t proto_encode_lease_req(void *buf, size_t cap, uint32_t id, const struct proto_lease_req *m)
{
	uint8_t *b;
	size_t blen;

	if (!proto_lease_req_valid(m))
		return -EINVAL;
	blen = PORTD_LEASE_REQ_SIZE + 4u * m->nexclude;
	b = msg_start(buf, cap, PORTD_MSG_LEASE, id, blen);
	if (!b)
		return -EMSGSIZE;
	put_u32(b + 0, m->flags);
	put_u32(b + 4, m->ttl);
	put_u16(b + 8, m->count);
	put_u8(b + 10, m->transport);
	put_u16(b + 12, m->port);
	put_u16(b + 14, m->nexclude);
	put_u32(b + 16, m->pid);
	for (uint16_t i = 0; i < m->nexclude; i++) {
		put_u16(b + PORTD_LEASE_REQ_SIZE + 4u * i, m->exclude[i].lo);
		put_u16(b + PORTD_LEASE_REQ_SIZE + 4u * i + 2, m->exclude[i].hi);
	}
	return (ssize_t)(PORTD_HDR_SIZE + blen);
}

int proto_decode_lease_req(const void *body, size_t len, struct proto_lease_req *m)
{
	const uint8_t *b = body;

	memset(m, 0, sizeof(*m));
	if (len < PORTD_LEASE_REQ_SIZE)
		return -EBADMSG;
	m->nexclude = get_u16(b + 14);
	if (m->nexclude > PORTD_EXCLUDE_MAX || len != PORTD_LEASE_REQ_SIZE + 4u * m->nexclude)
		return -EBADMSG;
	if (b[11] || get_u32(b + 20))
		return -EBADMSG;
	m->flags = get_u32(b + 0);
	m->ttl = get_u32(b + 4);
	m->count = get_u16(b + 8);
	m->transport = b[10];
	m->port = get_u16(b + 12);
	m->pid = get_u32(b + 16);
	for (uint16_t i = 0; i < m->nexclude; i++) {
		m->exclude[i].lo = get_u16(b + PORTD_LEASE_REQ_SIZE + 4u * i);
		m->exclude[i].hi = get_u16(b + PORTD_LEASE_REQ_SIZE + 4u * i + 2);
	}
	return proto_lease_req_valid(m) ? 0 : -EBADMSG;
}

static bool lease_rep_ok(const struct proto_lease_rep *m)
{
	if (m->id == 0 || (m->flags & ~PORTD_LEASE_F_ALL) || !transport_ok(m->transport) ||
	    m->count < 1 || m->count > PORTD_LEASE_PORTS_MAX)
		return false;
	for (unsigned i = 0; i < m->count; i++)
		if (m->ports[i] == 0)
			return false;
	return true;
}

ssize_t proto_encode_lease_rep(void *buf, size_t cap, uint32_t id, const struct proto_lease_rep *m)
{
	size_t body_len;
	uint8_t *b;

	if (!lease_rep_ok(m))
		return -EINVAL;
	body_len = PORTD_LEASE_REP_SIZE + 2u * m->count;
	b = msg_start(buf, cap, PORTD_MSG_LEASE | PORTD_MSG_REPLY, id, body_len);
	if (!b)
		return -EMSGSIZE;
	put_u64(b + 8, m->id);
	put_u32(b + 16, m->ttl);
	put_u32(b + 20, m->flags);
	put_u8(b + 24, m->transport);
	put_u16(b + 26, m->count);
	for (unsigned i = 0; i < m->count; i++)
		put_u16(b + PORTD_LEASE_REP_SIZE + 2 * i, m->ports[i]);
	return (ssize_t)(PORTD_HDR_SIZE + body_len);
}

int proto_decode_lease_rep(const void *body, size_t len, struct proto_lease_rep *m)
{
	const uint8_t *b = body;

	memset(m, 0, sizeof(*m));
	if (len < PORTD_LEASE_REP_SIZE)
		return -EBADMSG;
	m->count = get_u16(b + 26);
	/* Bound count before it sizes anything. */
	if (m->count < 1 || m->count > PORTD_LEASE_PORTS_MAX ||
	    len != PORTD_LEASE_REP_SIZE + 2u * m->count)
		return -EBADMSG;
	if (!ok_prefix(b) || b[25] || get_u32(b + 28))
		return -EBADMSG;
	m->id = get_u64(b + 8);
	m->ttl = get_u32(b + 16);
	m->flags = get_u32(b + 20);
	m->transport = b[24];
	for (unsigned i = 0; i < m->count; i++)
		m->ports[i] = get_u16(b + PORTD_LEASE_REP_SIZE + 2 * i);
	return lease_rep_ok(m) ? 0 : -EBADMSG;
}

/* ---- RENEW ---- */

ssize_t proto_encode_renew_req(void *buf, size_t cap, uint32_t id, const struct proto_renew_req *m)
{
	uint8_t *b;

	if (m->id == 0)
		return -EINVAL;
	b = msg_start(buf, cap, PORTD_MSG_RENEW, id, PORTD_RENEW_REQ_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u64(b + 0, m->id);
	put_u32(b + 8, m->ttl);
	return PORTD_HDR_SIZE + PORTD_RENEW_REQ_SIZE;
}

int proto_decode_renew_req(const void *body, size_t len, struct proto_renew_req *m)
{
	const uint8_t *b = body;

	memset(m, 0, sizeof(*m));
	if (len != PORTD_RENEW_REQ_SIZE || get_u32(b + 12))
		return -EBADMSG;
	m->id = get_u64(b + 0);
	m->ttl = get_u32(b + 8);
	return m->id ? 0 : -EBADMSG;
}

ssize_t proto_encode_renew_rep(void *buf, size_t cap, uint32_t id, const struct proto_renew_rep *m)
{
	uint8_t *b;

	if (m->id == 0)
		return -EINVAL;
	b = msg_start(buf, cap, PORTD_MSG_RENEW | PORTD_MSG_REPLY, id, PORTD_RENEW_REP_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u64(b + 8, m->id);
	put_u32(b + 16, m->ttl);
	return PORTD_HDR_SIZE + PORTD_RENEW_REP_SIZE;
}

int proto_decode_renew_rep(const void *body, size_t len, struct proto_renew_rep *m)
{
	const uint8_t *b = body;

	memset(m, 0, sizeof(*m));
	if (len != PORTD_RENEW_REP_SIZE || !ok_prefix(b) || get_u32(b + 20))
		return -EBADMSG;
	m->id = get_u64(b + 8);
	m->ttl = get_u32(b + 16);
	return m->id ? 0 : -EBADMSG;
}

/* ---- RELEASE ---- */

static bool release_req_ok(const struct proto_release_req *m)
{
	return (m->id != 0 || m->port != 0) && m->transport <= PORTD_BOTH;
}

ssize_t proto_encode_release_req(void *buf, size_t cap, uint32_t id, const struct proto_release_req *m)
{
	uint8_t *b;

	if (!release_req_ok(m))
		return -EINVAL;
	b = msg_start(buf, cap, PORTD_MSG_RELEASE, id, PORTD_RELEASE_REQ_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u64(b + 0, m->id);
	put_u16(b + 8, m->port);
	put_u8(b + 10, m->transport);
	return PORTD_HDR_SIZE + PORTD_RELEASE_REQ_SIZE;
}

int proto_decode_release_req(const void *body, size_t len, struct proto_release_req *m)
{
	const uint8_t *b = body;

	memset(m, 0, sizeof(*m));
	if (len != PORTD_RELEASE_REQ_SIZE || b[11] || get_u32(b + 12))
		return -EBADMSG;
	m->id = get_u64(b + 0);
	m->port = get_u16(b + 8);
	m->transport = b[10];
	return release_req_ok(m) ? 0 : -EBADMSG;
}

ssize_t proto_encode_release_rep(void *buf, size_t cap, uint32_t id, uint64_t lease_id)
{
	uint8_t *b;

	if (lease_id == 0)
		return -EINVAL;
	b = msg_start(buf, cap, PORTD_MSG_RELEASE | PORTD_MSG_REPLY, id, PORTD_RELEASE_REP_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u64(b + 8, lease_id);
	return PORTD_HDR_SIZE + PORTD_RELEASE_REP_SIZE;
}

int proto_decode_release_rep(const void *body, size_t len, uint64_t *lease_id)
{
	const uint8_t *b = body;

	*lease_id = 0;
	if (len != PORTD_RELEASE_REP_SIZE || !ok_prefix(b))
		return -EBADMSG;
	*lease_id = get_u64(b + 8);
	return *lease_id ? 0 : -EBADMSG;
}

/* ---- LIST request ---- */

ssize_t proto_encode_list_req(void *buf, size_t cap, uint32_t id, const struct proto_list_req *m)
{
	uint8_t *b;

	if (m->flags != 0)
		return -EINVAL;
	b = msg_start(buf, cap, PORTD_MSG_LIST, id, PORTD_LIST_REQ_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u64(b + 0, m->after_id);
	put_u32(b + 8, m->flags);
	return PORTD_HDR_SIZE + PORTD_LIST_REQ_SIZE;
}

int proto_decode_list_req(const void *body, size_t len, struct proto_list_req *m)
{
	const uint8_t *b = body;

	memset(m, 0, sizeof(*m));
	if (len != PORTD_LIST_REQ_SIZE)
		return -EBADMSG;
	m->after_id = get_u64(b + 0);
	m->flags = get_u32(b + 8);
	/* No list flag is defined in this version. */
	return m->flags == 0 && get_u32(b + 12) == 0 ? 0 : -EBADMSG;
}

/* ---- HELLO ---- */

ssize_t proto_encode_hello_req(void *buf, size_t cap, uint32_t id)
{
	if (!msg_start(buf, cap, PORTD_MSG_HELLO, id, PORTD_HELLO_REQ_SIZE))
		return -EMSGSIZE;
	return PORTD_HDR_SIZE + PORTD_HELLO_REQ_SIZE;
}

int proto_decode_hello_req(const void *body, size_t len)
{
	return len == PORTD_HELLO_REQ_SIZE ? 0 : -EBADMSG;
}

ssize_t proto_encode_hello_rep(void *buf, size_t cap, uint32_t id, uint32_t uid, uint32_t pid)
{
	uint8_t *b = msg_start(buf, cap, PORTD_MSG_HELLO | PORTD_MSG_REPLY, id, PORTD_HELLO_REP_SIZE);

	if (!b)
		return -EMSGSIZE;
	put_u32(b + 8, uid);
	put_u32(b + 12, pid);
	return PORTD_HDR_SIZE + PORTD_HELLO_REP_SIZE;
}

int proto_decode_hello_rep(const void *body, size_t len, uint32_t *uid, uint32_t *pid)
{
	const uint8_t *b = body;

	*uid = *pid = 0;
	if (len != PORTD_HELLO_REP_SIZE || !ok_prefix(b))
		return -EBADMSG;
	*uid = get_u32(b + 8);
	*pid = get_u32(b + 12);
	return 0;
}

/* ---- STATUS ---- */

ssize_t proto_encode_status_req(void *buf, size_t cap, uint32_t id)
{
	if (!msg_start(buf, cap, PORTD_MSG_STATUS, id, PORTD_STATUS_REQ_SIZE))
		return -EMSGSIZE;
	return PORTD_HDR_SIZE + PORTD_STATUS_REQ_SIZE;
}

ssize_t proto_encode_status_req_flags(void *buf, size_t cap, uint32_t id, uint32_t flags)
{
	uint8_t *b;

	if (flags & ~PORTD_STATUS_REQ_F_ALL)
		return -EINVAL;
	b = msg_start(buf, cap, PORTD_MSG_STATUS, id, PORTD_STATUS_REQ_FLAGS_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u32(b + 0, flags);
	put_u32(b + 4, 0);
	return PORTD_HDR_SIZE + PORTD_STATUS_REQ_FLAGS_SIZE;
}

int proto_decode_status_req(const void *body, size_t len, uint32_t *flags)
{
	const uint8_t *b = body;

	*flags = 0;
	if (len == PORTD_STATUS_REQ_SIZE)
		return 0;
	if (len != PORTD_STATUS_REQ_FLAGS_SIZE)
		return -EBADMSG;
	if ((get_u32(b + 0) & ~PORTD_STATUS_REQ_F_ALL) || get_u32(b + 4) != 0)
		return -EBADMSG;
	*flags = get_u32(b + 0);
	return 0;
}

ssize_t proto_encode_status_rep(void *buf, size_t cap, uint32_t id, const struct proto_status *m)
{
	uint8_t *b;

	if (m->flags & ~PORTD_STATUS_F_ALL)
		return -EINVAL;
	b = msg_start(buf, cap, PORTD_MSG_STATUS | PORTD_MSG_REPLY, id, PORTD_STATUS_REP_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u64(b + 8, m->uptime_ms);
	put_u32(b + 16, m->leases);
	put_u32(b + 20, m->ports_held);
	put_u32(b + 24, m->quarantined);
	put_u32(b + 28, m->connections);
	put_u32(b + 32, m->max_leases);
	put_u32(b + 36, m->max_per_uid);
	put_u32(b + 40, m->default_ttl);
	put_u32(b + 44, m->max_ttl);
	put_u32(b + 48, m->quarantine);
	put_u16(b + 52, m->range_lo);
	put_u16(b + 54, m->range_hi);
	put_u32(b + 56, m->caller_leases);
	put_u32(b + 60, m->flags);
	/* At most 32 bytes, no terminator needed; the rest stays NUL (msg_start). */
	memcpy(b + 64, m->version, strnlen(m->version, PORTD_VERSION_LEN));
	put_u64(b + 96, m->heap_bytes);
	put_u32(b + 104, m->open_fds);
	put_u32(b + 108, m->eph_in_use);
	put_u16(b + 112, m->eph_lo);
	put_u16(b + 114, m->eph_hi);
	return PORTD_HDR_SIZE + PORTD_STATUS_REP_SIZE;
}

int proto_decode_status_rep(const void *body, size_t len, struct proto_status *m)
{
	const uint8_t *b = body;
	size_t vlen;

	memset(m, 0, sizeof(*m));
	if (len != PORTD_STATUS_REP_SIZE || !ok_prefix(b) || (get_u32(b + 60) & ~PORTD_STATUS_F_ALL) ||
	    get_u32(b + 116) != 0 || get_u16(b + 112) > get_u16(b + 114))
		return -EBADMSG;
	/* NUL padding means NUL: bytes after the string must all be zero. */
	vlen = strnlen((const char *)b + 64, PORTD_VERSION_LEN);
	if (!all_zero(b + 64 + vlen, PORTD_VERSION_LEN - vlen))
		return -EBADMSG;
	m->uptime_ms = get_u64(b + 8);
	m->leases = get_u32(b + 16);
	m->ports_held = get_u32(b + 20);
	m->quarantined = get_u32(b + 24);
	m->connections = get_u32(b + 28);
	m->max_leases = get_u32(b + 32);
	m->max_per_uid = get_u32(b + 36);
	m->default_ttl = get_u32(b + 40);
	m->max_ttl = get_u32(b + 44);
	m->quarantine = get_u32(b + 48);
	m->range_lo = get_u16(b + 52);
	m->range_hi = get_u16(b + 54);
	m->caller_leases = get_u32(b + 56);
	m->flags = get_u32(b + 60);
	memcpy(m->version, b + 64, vlen);
	m->heap_bytes = get_u64(b + 96);
	m->open_fds = get_u32(b + 104);
	m->eph_in_use = get_u32(b + 108);
	m->eph_lo = get_u16(b + 112);
	m->eph_hi = get_u16(b + 114);
	m->version[vlen] = '\0'; /* already zeroed; kept for the reader */
	return 0;
}

/* ---- error replies ---- */

ssize_t proto_encode_error(void *buf, size_t cap, uint16_t req_type, uint32_t id,
			   uint32_t result, uint32_t detail)
{
	uint8_t *b;

	/* An OK reply always has a typed body; an 8-byte one is malformed. */
	if (result == PORTD_R_OK)
		return -EINVAL;
	b = msg_start(buf, cap, req_type | PORTD_MSG_REPLY, id, PORTD_RESULT_SIZE);
	if (!b)
		return -EMSGSIZE;
	put_u32(b + 0, result);
	put_u32(b + 4, detail);
	return PORTD_HDR_SIZE + PORTD_RESULT_SIZE;
}

int proto_decode_result(const void *body, size_t len, uint32_t *result, uint32_t *detail)
{
	const uint8_t *b = body;

	*result = 0;
	*detail = 0;
	if (len < PORTD_RESULT_SIZE)
		return -EBADMSG;
	*result = get_u32(b);
	*detail = get_u32(b + 4);
	/* Values above PORTD_R_MAX are returned as they are: a newer daemon
	 * may know more results, and the caller maps unknown ones. */
	if (*result != PORTD_R_OK && len != PORTD_RESULT_SIZE)
		return -EBADMSG;
	return 0;
}

/* ---- LIST reply ---- */

static bool lease_info_ok(const struct proto_lease_info *e)
{
	if (e->id == 0 || (e->flags & ~PORTD_LEASE_F_ALL) || !transport_ok(e->transport) ||
	    e->nports < 1 || e->nports > PORTD_LEASE_PORTS_MAX)
		return false;
	for (unsigned i = 0; i < e->nports; i++)
		if (e->ports[i] == 0)
			return false;
	return true;
}

size_t proto_list_begin(void *buf, size_t cap, uint32_t id)
{
	/* result, detail, count, flags: all zero for now. */
	if (!msg_start(buf, cap, PORTD_MSG_LIST | PORTD_MSG_REPLY, id, PORTD_LIST_REP_SIZE))
		return 0;
	return PORTD_HDR_SIZE + PORTD_LIST_REP_SIZE;
}

int proto_list_add(void *buf, size_t cap, size_t *len, const struct proto_lease_info *e)
{
	uint8_t *b = buf;
	uint8_t *body = b + PORTD_HDR_SIZE;
	uint8_t *p;
	size_t esz, limit = cap < PORTD_MSG_MAX ? cap : PORTD_MSG_MAX;

	if (*len < PORTD_HDR_SIZE + PORTD_LIST_REP_SIZE || *len > limit || !lease_info_ok(e))
		return -EINVAL;
	esz = list_entry_size(e->nports);
	if (esz > limit - *len)
		return -ENOSPC; /* nothing written */
	p = b + *len;
	memset(p, 0, esz);
	put_u64(p + 0, e->id);
	put_u64(p + 8, e->expires_in_ms);
	put_u32(p + 16, e->uid);
	put_u32(p + 20, e->pid);
	put_u32(p + 24, e->ttl);
	put_u32(p + 28, e->flags);
	put_u8(p + 32, e->transport);
	put_u16(p + 34, e->nports);
	put_u32(p + 36, e->tied_pid);
	for (unsigned i = 0; i < e->nports; i++)
		put_u16(p + PORTD_LIST_ENTRY_SIZE + 2 * i, e->ports[i]);
	*len += esz;
	/* Keep the message valid after every add: count and header length. */
	put_u32(body + 8, get_u32(body + 8) + 1);
	put_u32(b + 8, (uint32_t)*len);
	return 0;
}

void proto_list_finish(void *buf, size_t len, bool more)
{
	uint8_t *b = buf;

	put_u32(b + 8, (uint32_t)len);
	put_u32(b + PORTD_HDR_SIZE + 12, more ? PORTD_LIST_F_MORE : 0);
}

/*
 * Parse the entry at it->p into *e. Returns its size, or 0 if it is
 * malformed or does not fit in it->left.
 */
static size_t list_entry_parse(const struct proto_list_iter *it, struct proto_lease_info *e)
{
	const uint8_t *p = it->p;
	size_t esz;

	memset(e, 0, sizeof(*e));
	if (it->left < PORTD_LIST_ENTRY_SIZE)
		return 0;
	e->nports = get_u16(p + 34);
	if (e->nports < 1 || e->nports > PORTD_LEASE_PORTS_MAX)
		return 0;
	esz = list_entry_size(e->nports);
	if (esz > it->left || p[33])
		return 0;
	if (!all_zero(p + PORTD_LIST_ENTRY_SIZE + 2u * e->nports,
		      esz - PORTD_LIST_ENTRY_SIZE - 2u * e->nports))
		return 0;
	e->id = get_u64(p + 0);
	e->expires_in_ms = get_u64(p + 8);
	e->uid = get_u32(p + 16);
	e->pid = get_u32(p + 20);
	e->ttl = get_u32(p + 24);
	e->flags = get_u32(p + 28);
	e->transport = p[32];
	e->tied_pid = get_u32(p + 36);
	for (unsigned i = 0; i < e->nports; i++)
		e->ports[i] = get_u16(p + PORTD_LIST_ENTRY_SIZE + 2 * i);
	return lease_info_ok(e) ? esz : 0;
}

int proto_decode_list_rep(const void *body, size_t len, uint32_t *count, bool *more,
			  struct proto_list_iter *it)
{
	const uint8_t *b = body;
	struct proto_list_iter walk;
	struct proto_lease_info e;
	uint64_t last_id = 0;
	uint32_t flags;

	*count = 0;
	*more = false;
	memset(it, 0, sizeof(*it));
	if (len < PORTD_LIST_REP_SIZE || !ok_prefix(b))
		return -EBADMSG;
	flags = get_u32(b + 12);
	walk.p = b + PORTD_LIST_REP_SIZE;
	walk.left = len - PORTD_LIST_REP_SIZE;
	walk.remaining = get_u32(b + 8);
	if (flags & ~PORTD_LIST_F_MORE)
		return -EBADMSG;
	/* "More" with no entry gives the client no after_id to continue from. */
	if ((flags & PORTD_LIST_F_MORE) && walk.remaining == 0)
		return -EBADMSG;
	/* Cheap bound first: a count no body could hold is rejected unwalked. */
	if (walk.remaining > walk.left / list_entry_size(1))
		return -EBADMSG;
	*it = walk;
	while (walk.remaining > 0) {
		size_t esz = list_entry_parse(&walk, &e);

		/* Strictly ascending ids, so paging with after_id always advances. */
		if (esz == 0 || e.id <= last_id)
			goto bad;
		last_id = e.id;
		walk.p += esz;
		walk.left -= esz;
		walk.remaining--;
	}
	if (walk.left != 0)
		goto bad;
	*count = it->remaining;
	*more = flags & PORTD_LIST_F_MORE;
	return 0;
bad:
	memset(it, 0, sizeof(*it));
	return -EBADMSG;
}

int proto_list_next(struct proto_list_iter *it, struct proto_lease_info *e)
{
	size_t esz;

	if (it->remaining == 0)
		return 0;
	esz = list_entry_parse(it, e);
	if (esz == 0)
		return -EBADMSG; /* only if the iterator did not come from a successful decode */
	it->p += esz;
	it->left -= esz;
	it->remaining--;
	return 1;
}

/* ---- names ---- */

const char *proto_type_name(uint16_t type)
{
	switch (type & ~PORTD_MSG_REPLY) {
	case PORTD_MSG_LEASE: return "lease";
	case PORTD_MSG_RENEW: return "renew";
	case PORTD_MSG_RELEASE: return "release";
	case PORTD_MSG_LIST: return "list";
	case PORTD_MSG_STATUS: return "status";
	case PORTD_MSG_HELLO: return "hello";
	default: return "unknown";
	}
}

const char *proto_transport_name(uint8_t transport)
{
	switch (transport) {
	case 0: return "any";
	case PORTD_TCP: return "tcp";
	case PORTD_UDP: return "udp";
	case PORTD_BOTH: return "both";
	default: return "unknown";
	}
}
