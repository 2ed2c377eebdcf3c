/*
 * Unit tests for proto/codec.c: round trips, every truncation, every
 * reserved byte, every range check, and one message checked byte by byte
 * against the specification (proto/PROTOCOL.md uses the same bytes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

static uint8_t buf[2 * PORTD_MSG_MAX];

/* ---- sample messages ---- */

static const struct proto_lease_req lease_req_sample = {
	.flags = PORTD_LEASE_F_FD | PORTD_LEASE_F_TIE,
	.ttl = 300,
	.count = 1,
	.transport = PORTD_TCP,
	.port = 8080,
	.pid = 0x01020304,
};

static const struct proto_lease_rep lease_rep_sample = {
	.id = 0x1122334455667788ull,
	.ttl = 600,
	.flags = PORTD_LEASE_F_FD,
	.transport = PORTD_BOTH,
	.count = 3,
	.ports = { 40000, 40001, 65535 },
};

static const struct proto_status status_sample = {
	.uptime_ms = 0x0102030405060708ull,
	.leases = 1, .ports_held = 2, .quarantined = 3, .connections = 4,
	.max_leases = 5, .max_per_uid = 6, .default_ttl = 7, .max_ttl = 8,
	.quarantine = 9, .range_lo = 10, .range_hi = 11, .caller_leases = 12,
	.flags = PORTD_STATUS_F_EPH_LOW, .version = "0.1.0",
	.heap_bytes = 0x1112131415161718ull, .open_fds = 13, .eph_in_use = 14,
	.eph_lo = 32768, .eph_hi = 60999,
};

static struct proto_lease_info list_entry(uint64_t id, uint16_t nports)
{
	struct proto_lease_info e = {
		.id = id,
		.expires_in_ms = id * 1000 + 1,
		.uid = 1000 + (uint32_t)id,
		.pid = 4242,
		.ttl = 60,
		.flags = (uint32_t)id & PORTD_LEASE_F_ALL,
		.transport = (uint8_t)(1 + id % 3),
		.nports = nports,
		.tied_pid = (uint32_t)id * 7,
	};

	for (unsigned i = 0; i < nports && i < PORTD_LEASE_PORTS_MAX; i++)
		e.ports[i] = (uint16_t)(1024 + id * 16 + i);
	return e;
}

static void assert_info_equal(const struct proto_lease_info *a, const struct proto_lease_info *b)
{
	assert_int_equal(a->id, b->id);
	assert_int_equal(a->expires_in_ms, b->expires_in_ms);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->pid, b->pid);
	assert_int_equal(a->ttl, b->ttl);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->transport, b->transport);
	assert_int_equal(a->nports, b->nports);
	assert_int_equal(a->tied_pid, b->tied_pid);
	assert_memory_equal(a->ports, b->ports, sizeof(a->ports[0]) * a->nports);
}

/* ---- one table of message kinds, for the checks every decoder must pass ---- */

struct msg_case {
	const char *name;
	uint16_t type;
	ssize_t (*encode)(void *b, size_t cap);
	int (*decode)(const void *body, size_t len); /* 0 = accepted */
};

static ssize_t enc_lease_req(void *b, size_t cap) { return proto_encode_lease_req(b, cap, 7, &lease_req_sample); }
static int dec_lease_req(const void *body, size_t len)
{
	struct proto_lease_req m;
	return proto_decode_lease_req(body, len, &m);
}

static ssize_t enc_lease_rep(void *b, size_t cap) { return proto_encode_lease_rep(b, cap, 7, &lease_rep_sample); }
static int dec_lease_rep(const void *body, size_t len)
{
	struct proto_lease_rep m;
	return proto_decode_lease_rep(body, len, &m);
}

static ssize_t enc_renew_req(void *b, size_t cap)
{
	struct proto_renew_req m = { .id = 99, .ttl = 30 };
	return proto_encode_renew_req(b, cap, 7, &m);
}
static int dec_renew_req(const void *body, size_t len)
{
	struct proto_renew_req m;
	return proto_decode_renew_req(body, len, &m);
}

static ssize_t enc_renew_rep(void *b, size_t cap)
{
	struct proto_renew_rep m = { .id = 99, .ttl = 30 };
	return proto_encode_renew_rep(b, cap, 7, &m);
}
static int dec_renew_rep(const void *body, size_t len)
{
	struct proto_renew_rep m;
	return proto_decode_renew_rep(body, len, &m);
}

static ssize_t enc_release_req(void *b, size_t cap)
{
	struct proto_release_req m = { .id = 0, .port = 5000, .transport = PORTD_UDP };
	return proto_encode_release_req(b, cap, 7, &m);
}
static int dec_release_req(const void *body, size_t len)
{
	struct proto_release_req m;
	return proto_decode_release_req(body, len, &m);
}

static ssize_t enc_release_rep(void *b, size_t cap) { return proto_encode_release_rep(b, cap, 7, 99); }
static int dec_release_rep(const void *body, size_t len)
{
	uint64_t id;
	return proto_decode_release_rep(body, len, &id);
}

static ssize_t enc_list_req(void *b, size_t cap)
{
	struct proto_list_req m = { .after_id = 12 };
	return proto_encode_list_req(b, cap, 7, &m);
}
static int dec_list_req(const void *body, size_t len)
{
	struct proto_list_req m;
	return proto_decode_list_req(body, len, &m);
}

/* Three entries: 1 port (42 -> 48 bytes, with padding), 4 ports (48), 16 ports (72). */
static ssize_t enc_list_rep(void *b, size_t cap)
{
	static const uint16_t nports[] = { 1, 4, 16 };
	size_t len = proto_list_begin(b, cap, 7);

	if (len == 0)
		return -EMSGSIZE;
	for (unsigned i = 0; i < 3; i++) {
		struct proto_lease_info e = list_entry(10 + i, nports[i]);
		int r = proto_list_add(b, cap, &len, &e);

		if (r < 0)
			return r == -ENOSPC ? -EMSGSIZE : r;
	}
	proto_list_finish(b, len, true);
	return (ssize_t)len;
}
static ssize_t enc_list_rep_empty(void *b, size_t cap)
{
	size_t len = proto_list_begin(b, cap, 7);

	if (len == 0)
		return -EMSGSIZE;
	proto_list_finish(b, len, false);
	return (ssize_t)len;
}
static int dec_list_rep(const void *body, size_t len)
{
	struct proto_list_iter it;
	struct proto_lease_info e;
	uint32_t count;
	bool more;
	int r = proto_decode_list_rep(body, len, &count, &more, &it);

	if (r < 0)
		return r;
	while ((r = proto_list_next(&it, &e)) > 0)
		;
	return r;
}

static ssize_t enc_status_req(void *b, size_t cap) { return proto_encode_status_req(b, cap, 7); }
static int dec_status_req(const void *body, size_t len)
{
	uint32_t flags;
	return proto_decode_status_req(body, len, &flags);
}

static ssize_t enc_status_rep(void *b, size_t cap) { return proto_encode_status_rep(b, cap, 7, &status_sample); }
static int dec_status_rep(const void *body, size_t len)
{
	struct proto_status m;
	return proto_decode_status_rep(body, len, &m);
}

static ssize_t enc_hello_req(void *b, size_t cap) { return proto_encode_hello_req(b, cap, 7); }
static int dec_hello_req(const void *body, size_t len) { return proto_decode_hello_req(body, len); }

static ssize_t enc_hello_rep(void *b, size_t cap) { return proto_encode_hello_rep(b, cap, 7, 1000, 4242); }
static int dec_hello_rep(const void *body, size_t len)
{
	uint32_t uid, pid;
	return proto_decode_hello_rep(body, len, &uid, &pid);
}

static ssize_t enc_error(void *b, size_t cap)
{
	return proto_encode_error(b, cap, PORTD_MSG_LEASE, 7, PORTD_R_QUOTA_UID, 5);
}
static int dec_result(const void *body, size_t len)
{
	uint32_t result, detail;
	return proto_decode_result(body, len, &result, &detail);
}

static const struct msg_case cases[] = {
	{ "lease_req", PORTD_MSG_LEASE, enc_lease_req, dec_lease_req },
	{ "lease_rep", PORTD_MSG_LEASE | PORTD_MSG_REPLY, enc_lease_rep, dec_lease_rep },
	{ "renew_req", PORTD_MSG_RENEW, enc_renew_req, dec_renew_req },
	{ "renew_rep", PORTD_MSG_RENEW | PORTD_MSG_REPLY, enc_renew_rep, dec_renew_rep },
	{ "release_req", PORTD_MSG_RELEASE, enc_release_req, dec_release_req },
	{ "release_rep", PORTD_MSG_RELEASE | PORTD_MSG_REPLY, enc_release_rep, dec_release_rep },
	{ "list_req", PORTD_MSG_LIST, enc_list_req, dec_list_req },
	{ "list_rep", PORTD_MSG_LIST | PORTD_MSG_REPLY, enc_list_rep, dec_list_rep },
	{ "list_rep_empty", PORTD_MSG_LIST | PORTD_MSG_REPLY, enc_list_rep_empty, dec_list_rep },
	{ "status_req", PORTD_MSG_STATUS, enc_status_req, dec_status_req },
	{ "status_rep", PORTD_MSG_STATUS | PORTD_MSG_REPLY, enc_status_rep, dec_status_rep },
	{ "hello_req", PORTD_MSG_HELLO, enc_hello_req, dec_hello_req },
	{ "hello_rep", PORTD_MSG_HELLO | PORTD_MSG_REPLY, enc_hello_rep, dec_hello_rep },
	{ "error", PORTD_MSG_LEASE | PORTD_MSG_REPLY, enc_error, dec_result },
};

/* Encode c into buf, check its header, return the body length. */
static size_t encode_case(const struct msg_case *c)
{
	struct proto_hdr h;
	ssize_t n;

	memset(buf, 0xa5, sizeof(buf));
	n = c->encode(buf, PORTD_MSG_MAX);
	assert_true(n >= PORTD_HDR_SIZE);
	assert_int_equal(proto_hdr_decode(buf, (size_t)n, &h), 0);
	assert_int_equal(h.type, c->type);
	assert_int_equal(h.id, 7);
	assert_int_equal(h.length, n);
	assert_int_equal(c->decode(proto_body(buf), (size_t)n - PORTD_HDR_SIZE), 0);
	return (size_t)n - PORTD_HDR_SIZE;
}

static void test_truncated(void **state)
{
	const struct msg_case *c = *state;
	size_t full = encode_case(c);

	for (size_t len = 0; len < full; len++) {
		struct proto_hdr h;

		/* Copy to a buffer of exactly len bytes, so ASan sees any over-read. */
		uint8_t *p = test_malloc(len ? len : 1);
		memcpy(p, proto_body(buf), len);
		if (c->decode(p, len) == 0)
			fail_msg("%s: body of %zu/%zu bytes accepted", c->name, len, full);
		test_free(p);
		/* The whole message cut short: header length no longer matches. */
		assert_int_equal(proto_hdr_decode(buf, PORTD_HDR_SIZE + len, &h), -EBADMSG);
	}
}

static void test_oversized(void **state)
{
	const struct msg_case *c = *state;
	size_t full = encode_case(c);
	struct proto_hdr h;

	for (size_t extra = 1; extra <= 8; extra++) {
		/* Eight zero bytes after an empty STATUS request are its other form: flags 0. */
		if (c->type == PORTD_MSG_STATUS && full + extra == PORTD_STATUS_REQ_FLAGS_SIZE)
			continue;
		memset(buf + PORTD_HDR_SIZE + full, 0, extra);
		if (c->decode(proto_body(buf), full + extra) == 0)
			fail_msg("%s: body with %zu extra zero bytes accepted", c->name, extra);
	}
	assert_int_equal(proto_hdr_decode(buf, PORTD_HDR_SIZE + full + 1, &h), -EBADMSG);
}

/* The encoder checks cap: one byte short is -EMSGSIZE, exact fits. */
static void test_encode_cap(void **state)
{
	const struct msg_case *c = *state;
	size_t full = PORTD_HDR_SIZE + encode_case(c);

	assert_int_equal(c->encode(buf, full - 1), -EMSGSIZE);
	assert_int_equal(c->encode(buf, 0), -EMSGSIZE);
	assert_int_equal(c->encode(buf, full), (ssize_t)full);
}

/* ---- header ---- */

static void test_hdr_layout(void **state)
{
	static const uint8_t expect[] = {
		0x50, 0x52, 0x54, 0x44, /* "PRTD" */
		0x03, 0x00, 0x05, 0x80, /* version 3, STATUS | REPLY */
		0x18, 0x00, 0x00, 0x00, /* length 24 */
		0x78, 0x56, 0x34, 0x12, /* id */
	};
	struct proto_hdr h;

	assert_int_equal(proto_hdr_encode(buf, PORTD_MSG_STATUS | PORTD_MSG_REPLY, 0x12345678, 8),
			 PORTD_HDR_SIZE);
	assert_memory_equal(buf, expect, sizeof(expect));
	assert_int_equal(proto_hdr_decode(expect, 24, &h), 0);
	assert_int_equal(h.magic, PORTD_PROTO_MAGIC);
	assert_int_equal(h.version, PORTD_PROTO_VERSION);
	assert_int_equal(h.type, PORTD_MSG_STATUS | PORTD_MSG_REPLY);
	assert_int_equal(h.length, 24);
	assert_int_equal(h.id, 0x12345678);
}

static void test_hdr_short_and_long(void **state)
{
	struct proto_hdr h;

	proto_hdr_encode(buf, PORTD_MSG_STATUS, 1, 0);
	for (size_t len = 0; len < PORTD_HDR_SIZE; len++)
		assert_int_equal(proto_hdr_decode(buf, len, &h), -EBADMSG);
	assert_int_equal(proto_hdr_decode(buf, PORTD_HDR_SIZE, &h), 0);

	/* Longer than PORTD_MSG_MAX, even with a matching length field. */
	proto_hdr_encode(buf, PORTD_MSG_STATUS, 1, PORTD_MSG_MAX + 1 - PORTD_HDR_SIZE);
	assert_int_equal(proto_hdr_decode(buf, PORTD_MSG_MAX + 1, &h), -EBADMSG);
	proto_hdr_encode(buf, PORTD_MSG_STATUS, 1, PORTD_MSG_MAX - PORTD_HDR_SIZE);
	assert_int_equal(proto_hdr_decode(buf, PORTD_MSG_MAX, &h), 0);
}

static void test_hdr_magic(void **state)
{
	struct proto_hdr h;

	for (unsigned i = 0; i < 4; i++) {
		proto_hdr_encode(buf, PORTD_MSG_STATUS, 1, 0);
		buf[i] ^= 0x20;
		assert_int_equal(proto_hdr_decode(buf, PORTD_HDR_SIZE, &h), -EBADMSG);
	}
}

static void test_hdr_version(void **state)
{
	struct proto_hdr h;

	proto_hdr_encode(buf, PORTD_MSG_LEASE, 0xabcd, 24);
	buf[4] = 1; /* the version before */
	assert_int_equal(proto_hdr_decode(buf, 40, &h), -EPROTONOSUPPORT);
	/* Still filled in: the daemon answers with the request's type and id. */
	assert_int_equal(h.version, 1);
	assert_int_equal(h.type, PORTD_MSG_LEASE);
	assert_int_equal(h.id, 0xabcd);
	assert_int_equal(h.length, 40);
	buf[4] = 0;
	buf[5] = 1; /* version 256 */
	assert_int_equal(proto_hdr_decode(buf, 40, &h), -EPROTONOSUPPORT);
	assert_int_equal(h.version, 256);
	/* A bad length is reported before the version. */
	assert_int_equal(proto_hdr_decode(buf, 41, &h), -EBADMSG);
}

static void test_hdr_length_mismatch(void **state)
{
	struct proto_hdr h;

	proto_hdr_encode(buf, PORTD_MSG_RENEW, 1, PORTD_RENEW_REQ_SIZE);
	assert_int_equal(proto_hdr_decode(buf, 32, &h), 0);
	assert_int_equal(proto_hdr_decode(buf, 31, &h), -EBADMSG);
	assert_int_equal(proto_hdr_decode(buf, 33, &h), -EBADMSG);
	buf[8] = 33;
	assert_int_equal(proto_hdr_decode(buf, 32, &h), -EBADMSG);
	buf[8] = 32;
	buf[11] = 1; /* high byte: 0x01000020 */
	assert_int_equal(proto_hdr_decode(buf, 32, &h), -EBADMSG);
}

/* ---- exact bytes: the spec example (proto/PROTOCOL.md, "Worked example") ---- */

static const uint8_t lease_req_bytes[] = {
	0x50, 0x52, 0x54, 0x44, 0x03, 0x00, 0x01, 0x00, /* magic, version 3, type LEASE */
	0x28, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, /* length 40, id 42 */
	0x03, 0x00, 0x00, 0x00, 0x2c, 0x01, 0x00, 0x00, /* flags FD|TIE, ttl 300 */
	0x01, 0x00, 0x01, 0x00, 0x90, 0x1f, 0x00, 0x00, /* count 1, tcp, rsvd, port 8080, rsvd */
	0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, /* pid 0x01020304, rsvd */
};

static const uint8_t lease_rep_bytes[] = {
	0x50, 0x52, 0x54, 0x44, 0x03, 0x00, 0x01, 0x80, /* magic, version 3, LEASE | REPLY */
	0x32, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, /* length 50, id 42 */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* result OK, detail 0 */
	0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* lease id 7 */
	0x2c, 0x01, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, /* ttl 300, flags FD|TIE */
	0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, /* tcp, rsvd, count 1, rsvd */
	0x90, 0x1f,                                     /* port 8080 */
};

static void test_lease_req_bytes(void **state)
{
	struct proto_lease_req m;
	struct proto_hdr h;

	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 42, &lease_req_sample),
			 sizeof(lease_req_bytes));
	assert_memory_equal(buf, lease_req_bytes, sizeof(lease_req_bytes));

	assert_int_equal(proto_hdr_decode(lease_req_bytes, sizeof(lease_req_bytes), &h), 0);
	assert_int_equal(h.type, PORTD_MSG_LEASE);
	assert_int_equal(h.id, 42);
	assert_int_equal(proto_decode_lease_req(proto_body(lease_req_bytes), PORTD_LEASE_REQ_SIZE, &m), 0);
	assert_int_equal(m.flags, 3);
	assert_int_equal(m.ttl, 300);
	assert_int_equal(m.count, 1);
	assert_int_equal(m.transport, PORTD_TCP);
	assert_int_equal(m.port, 8080);
	assert_int_equal(m.pid, 0x01020304);
}

static void test_lease_rep_bytes(void **state)
{
	struct proto_lease_rep r = {
		.id = 7, .ttl = 300, .flags = 3, .transport = PORTD_TCP, .count = 1, .ports = { 8080 },
	};
	struct proto_lease_rep m;

	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(proto_encode_lease_rep(buf, sizeof(buf), 42, &r), sizeof(lease_rep_bytes));
	assert_memory_equal(buf, lease_rep_bytes, sizeof(lease_rep_bytes));
	assert_int_equal(proto_decode_lease_rep(proto_body(lease_rep_bytes), 34, &m), 0);
	assert_int_equal(m.id, 7);
	assert_int_equal(m.ports[0], 8080);
}

/* ---- round trips ---- */

static void test_lease_req_roundtrip(void **state)
{
	struct proto_lease_req in = {
		.flags = PORTD_LEASE_F_TIE, .ttl = 0xfffffffe, .count = PORTD_LEASE_PORTS_MAX,
		.transport = PORTD_BOTH, .port = 0, .pid = 0xffffffff,
	}, out;
	ssize_t n = proto_encode_lease_req(buf, sizeof(buf), 0xffffffff, &in);
	struct proto_hdr h;

	assert_int_equal(n, PORTD_HDR_SIZE + PORTD_LEASE_REQ_SIZE);
	assert_int_equal(proto_hdr_decode(buf, (size_t)n, &h), 0);
	assert_int_equal(h.id, 0xffffffff);
	assert_int_equal(proto_decode_lease_req(proto_body(buf), (size_t)n - PORTD_HDR_SIZE, &out), 0);
	assert_int_equal(out.flags, in.flags);
	assert_int_equal(out.ttl, in.ttl);
	assert_int_equal(out.count, in.count);
	assert_int_equal(out.transport, in.transport);
	assert_int_equal(out.port, in.port);
	assert_int_equal(out.pid, in.pid);
}

static void test_lease_rep_roundtrip(void **state)
{
	for (uint16_t count = 1; count <= PORTD_LEASE_PORTS_MAX; count++) {
		struct proto_lease_rep in = {
			.id = 0xfedcba9876543210ull, .ttl = 1, .flags = PORTD_LEASE_F_ALL,
			.transport = PORTD_UDP, .count = count,
		}, out;
		ssize_t n;

		for (unsigned i = 0; i < count; i++)
			in.ports[i] = (uint16_t)(0xff00 + i);
		n = proto_encode_lease_rep(buf, sizeof(buf), 1, &in);
		assert_int_equal(n, PORTD_HDR_SIZE + PORTD_LEASE_REP_SIZE + 2 * count);
		assert_int_equal(proto_decode_lease_rep(proto_body(buf), (size_t)n - PORTD_HDR_SIZE, &out), 0);
		assert_int_equal(out.id, in.id);
		assert_int_equal(out.ttl, in.ttl);
		assert_int_equal(out.flags, in.flags);
		assert_int_equal(out.transport, in.transport);
		assert_int_equal(out.count, count);
		assert_memory_equal(out.ports, in.ports, sizeof(in.ports));
	}
}

static void test_renew_roundtrip(void **state)
{
	struct proto_renew_req rq = { .id = 0x8000000000000001ull, .ttl = 0 }, rq2;
	struct proto_renew_rep rp = { .id = 3, .ttl = 0xffffffff }, rp2;
	ssize_t n;

	n = proto_encode_renew_req(buf, sizeof(buf), 1, &rq);
	assert_int_equal(n, PORTD_HDR_SIZE + PORTD_RENEW_REQ_SIZE);
	assert_int_equal(proto_decode_renew_req(proto_body(buf), PORTD_RENEW_REQ_SIZE, &rq2), 0);
	assert_int_equal(rq2.id, rq.id);
	assert_int_equal(rq2.ttl, rq.ttl);

	n = proto_encode_renew_rep(buf, sizeof(buf), 1, &rp);
	assert_int_equal(n, PORTD_HDR_SIZE + PORTD_RENEW_REP_SIZE);
	assert_int_equal(proto_decode_renew_rep(proto_body(buf), PORTD_RENEW_REP_SIZE, &rp2), 0);
	assert_int_equal(rp2.id, rp.id);
	assert_int_equal(rp2.ttl, rp.ttl);
}

static void test_release_roundtrip(void **state)
{
	struct proto_release_req by_id = { .id = 77 }, by_port = { .port = 1, .transport = 0 }, out;
	uint64_t id;

	assert_int_equal(proto_encode_release_req(buf, sizeof(buf), 1, &by_id), 32);
	assert_int_equal(proto_decode_release_req(proto_body(buf), 16, &out), 0);
	assert_int_equal(out.id, 77);
	assert_int_equal(out.port, 0);
	assert_int_equal(out.transport, 0);

	for (uint8_t t = 0; t <= PORTD_BOTH; t++) {
		by_port.transport = t;
		assert_int_equal(proto_encode_release_req(buf, sizeof(buf), 1, &by_port), 32);
		assert_int_equal(proto_decode_release_req(proto_body(buf), 16, &out), 0);
		assert_int_equal(out.id, 0);
		assert_int_equal(out.port, 1);
		assert_int_equal(out.transport, t);
	}

	assert_int_equal(proto_encode_release_rep(buf, sizeof(buf), 1, 0xffffffffffffffffull), 32);
	assert_int_equal(proto_decode_release_rep(proto_body(buf), 16, &id), 0);
	assert_int_equal(id, 0xffffffffffffffffull);
}

static void test_list_req_roundtrip(void **state)
{
	struct proto_list_req in = { .after_id = 0xffffffffffffffffull }, out;

	assert_int_equal(proto_encode_list_req(buf, sizeof(buf), 1, &in), 32);
	assert_int_equal(proto_decode_list_req(proto_body(buf), 16, &out), 0);
	assert_int_equal(out.after_id, in.after_id);
	assert_int_equal(out.flags, 0);
}

static void test_status_roundtrip(void **state)
{
	struct proto_status out;
	struct proto_hdr h;

	assert_int_equal(proto_encode_status_req(buf, sizeof(buf), 9), PORTD_HDR_SIZE);
	assert_int_equal(proto_hdr_decode(buf, PORTD_HDR_SIZE, &h), 0);
	assert_int_equal(h.type, PORTD_MSG_STATUS);
	uint32_t flags = 99;
	assert_int_equal(proto_decode_status_req(proto_body(buf), 0, &flags), 0);
	assert_int_equal(flags, 0);

	/* With flags: 8 bytes, flags then a reserved word. */
	assert_int_equal(proto_encode_status_req_flags(buf, sizeof(buf), 9, PORTD_STATUS_REQ_F_FDS),
			 PORTD_HDR_SIZE + PORTD_STATUS_REQ_FLAGS_SIZE);
	assert_int_equal(proto_hdr_decode(buf, PORTD_HDR_SIZE + PORTD_STATUS_REQ_FLAGS_SIZE, &h), 0);
	assert_int_equal(h.length, PORTD_HDR_SIZE + PORTD_STATUS_REQ_FLAGS_SIZE);
	static const uint8_t fds_body[8] = { 0x01, 0, 0, 0, 0, 0, 0, 0 };
	assert_memory_equal(proto_body(buf), fds_body, sizeof(fds_body));
	assert_int_equal(proto_decode_status_req(proto_body(buf), 8, &flags), 0);
	assert_int_equal(flags, PORTD_STATUS_REQ_F_FDS);
	assert_int_equal(proto_encode_status_req_flags(buf, sizeof(buf), 9, 0), PORTD_HDR_SIZE + 8);
	assert_int_equal(proto_decode_status_req(proto_body(buf), 8, &flags), 0);
	assert_int_equal(flags, 0);
	assert_int_equal(proto_encode_status_req_flags(buf, sizeof(buf), 9, 0x2), -EINVAL);
	assert_int_equal(proto_encode_status_req_flags(buf, PORTD_HDR_SIZE + 7, 9, 0), -EMSGSIZE);

	assert_int_equal(proto_encode_status_rep(buf, sizeof(buf), 9, &status_sample),
			 PORTD_HDR_SIZE + PORTD_STATUS_REP_SIZE);
	assert_int_equal(proto_decode_status_rep(proto_body(buf), PORTD_STATUS_REP_SIZE, &out), 0);
	assert_int_equal(out.uptime_ms, status_sample.uptime_ms);
	assert_int_equal(out.leases, 1);
	assert_int_equal(out.ports_held, 2);
	assert_int_equal(out.quarantined, 3);
	assert_int_equal(out.connections, 4);
	assert_int_equal(out.max_leases, 5);
	assert_int_equal(out.max_per_uid, 6);
	assert_int_equal(out.default_ttl, 7);
	assert_int_equal(out.max_ttl, 8);
	assert_int_equal(out.quarantine, 9);
	assert_int_equal(out.range_lo, 10);
	assert_int_equal(out.range_hi, 11);
	assert_int_equal(out.caller_leases, 12);
	assert_string_equal(out.version, "0.1.0");
	assert_true(out.heap_bytes == status_sample.heap_bytes);
	assert_int_equal(out.open_fds, 13);
	assert_int_equal(out.eph_in_use, 14);
	assert_int_equal(out.eph_lo, 32768);
	assert_int_equal(out.eph_hi, 60999);
	assert_int_equal(out.flags, PORTD_STATUS_F_EPH_LOW);
	/* NUL padding on the wire. */
	assert_memory_equal(proto_body(buf) + 64, "0.1.0\0\0\0", 8);
	assert_true(memcmp(proto_body(buf) + 64 + 5, (const char[27]){ 0 }, 27) == 0);
}

static void test_status_version(void **state)
{
	struct proto_status in = status_sample, out;
	uint8_t *v = buf + PORTD_HDR_SIZE + 64;

	/* 33 non-NUL bytes in the struct: only 32 go on the wire. */
	memset(in.version, 'x', sizeof(in.version));
	assert_int_equal(proto_encode_status_rep(buf, sizeof(buf), 1, &in), PORTD_HDR_SIZE + PORTD_STATUS_REP_SIZE);
	assert_int_equal(buf[PORTD_HDR_SIZE + 64 + PORTD_VERSION_LEN - 1], 'x');
	assert_int_equal(proto_decode_status_rep(proto_body(buf), PORTD_STATUS_REP_SIZE, &out), 0);
	assert_int_equal(strlen(out.version), PORTD_VERSION_LEN);

	/* Empty version. */
	in.version[0] = '\0';
	assert_int_equal(proto_encode_status_rep(buf, sizeof(buf), 1, &in), PORTD_HDR_SIZE + PORTD_STATUS_REP_SIZE);
	assert_int_equal(proto_decode_status_rep(proto_body(buf), PORTD_STATUS_REP_SIZE, &out), 0);
	assert_string_equal(out.version, "");

	/* Garbage after the terminating NUL is not padding. */
	proto_encode_status_rep(buf, sizeof(buf), 1, &status_sample);
	v[31] = 'z';
	assert_int_equal(proto_decode_status_rep(proto_body(buf), PORTD_STATUS_REP_SIZE, &out), -EBADMSG);
	v[31] = 0;
	v[6] = 'z';
	assert_int_equal(proto_decode_status_rep(proto_body(buf), PORTD_STATUS_REP_SIZE, &out), -EBADMSG);
	v[6] = 0;
	assert_int_equal(proto_decode_status_rep(proto_body(buf), PORTD_STATUS_REP_SIZE, &out), 0);
}

static void test_hello_roundtrip(void **state)
{
	uint32_t uid = 1, pid = 1;

	assert_int_equal(proto_encode_hello_rep(buf, sizeof(buf), 3, 1000, 4242),
			 PORTD_HDR_SIZE + PORTD_HELLO_REP_SIZE);
	assert_int_equal(proto_decode_hello_rep(proto_body(buf), PORTD_HELLO_REP_SIZE, &uid, &pid), 0);
	assert_int_equal(uid, 1000);
	assert_int_equal(pid, 4242);
	/* An error reply is no HELLO reply. */
	assert_int_equal(proto_encode_error(buf, sizeof(buf), PORTD_MSG_HELLO, 3, PORTD_R_VERSION, 9),
			 PORTD_HDR_SIZE + PORTD_RESULT_SIZE);
	assert_int_equal(proto_decode_hello_rep(proto_body(buf), PORTD_RESULT_SIZE, &uid, &pid), -EBADMSG);
	assert_int_equal(uid, 0);
	/* A HELLO request has no body. */
	assert_int_equal(proto_decode_hello_req(proto_body(buf), 4), -EBADMSG);
}

static void test_status_host_range(void **state)
{
	struct proto_status in = status_sample, out;
	uint8_t *b = buf + PORTD_HDR_SIZE;

	/* Not scanned: all zero is valid. */
	in.eph_lo = in.eph_hi = 0;
	in.eph_in_use = 0;
	proto_encode_status_rep(buf, sizeof(buf), 1, &in);
	assert_int_equal(proto_decode_status_rep(b, PORTD_STATUS_REP_SIZE, &out), 0);
	/* A range whose ends are swapped. */
	in.eph_lo = 2000;
	in.eph_hi = 1999;
	proto_encode_status_rep(buf, sizeof(buf), 1, &in);
	assert_int_equal(proto_decode_status_rep(b, PORTD_STATUS_REP_SIZE, &out), -EBADMSG);
	/* The reserved word after the range. */
	proto_encode_status_rep(buf, sizeof(buf), 1, &status_sample);
	b[116] = 1;
	assert_int_equal(proto_decode_status_rep(b, PORTD_STATUS_REP_SIZE, &out), -EBADMSG);
	/* An unknown flag. */
	b[116] = 0;
	b[60] = 0x4;
	assert_int_equal(proto_decode_status_rep(b, PORTD_STATUS_REP_SIZE, &out), -EBADMSG);
	/* The old 96-byte body. */
	b[60] = 0;
	assert_int_equal(proto_decode_status_rep(b, 96, &out), -EBADMSG);
}

/* ---- field checks ---- */

/* The body of the message in buf, writable (proto_body() returns const). */
#define BODY (buf + PORTD_HDR_SIZE)

static const struct msg_case *find_case(const char *name)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (strcmp(cases[i].name, name) == 0)
			return &cases[i];
	fail_msg("no case %s", name);
	return NULL;
}

static void expect_byte_rejected(const char *name, size_t off, uint8_t val)
{
	const struct msg_case *c = find_case(name);
	size_t full = encode_case(c);

	assert_true(off < full);
	BODY[off] = val;
	if (c->decode(BODY, full) == 0)
		fail_msg("%s: body byte %zu = 0x%02x accepted", name, off, val);
}

static void expect_byte_accepted(const char *name, size_t off, uint8_t val)
{
	const struct msg_case *c = find_case(name);
	size_t full = encode_case(c);

	BODY[off] = val;
	if (c->decode(BODY, full) != 0)
		fail_msg("%s: body byte %zu = 0x%02x rejected", name, off, val);
}

static void test_reserved_nonzero(void **state)
{
	static const struct { const char *name; size_t off[12]; } rsvd[] = {
		{ "lease_req", { 11, 20, 21, 22, 23 } },
		{ "lease_rep", { 25, 28, 29, 30, 31 } },
		{ "renew_req", { 12, 13, 14, 15 } },
		{ "renew_rep", { 20, 21, 22, 23 } },
		{ "release_req", { 11, 12, 13, 14, 15 } },
		{ "list_req", { 12, 13, 14, 15 } },
		{ "status_rep", { 61, 62, 63 } }, /* 60 is flags: below */
	};

	for (size_t i = 0; i < sizeof(rsvd) / sizeof(rsvd[0]); i++)
		for (size_t j = 0; j < 12 && rsvd[i].off[j]; j++) {
			expect_byte_rejected(rsvd[i].name, rsvd[i].off[j], 0x01);
			expect_byte_rejected(rsvd[i].name, rsvd[i].off[j], 0x80);
		}
	/* STATUS flags: known bits only. */
	expect_byte_accepted("status_rep", 60, PORTD_STATUS_F_RESERVED);
	expect_byte_rejected("status_rep", 60, PORTD_STATUS_F_ALL + 1);
	expect_byte_rejected("status_rep", 60, 0x80);
}

/* OK replies must have result 0 and detail 0; any other value fails the typed decoder. */
static void test_reply_prefix(void **state)
{
	static const char *const names[] = {
		"lease_rep", "renew_rep", "release_rep", "list_rep", "list_rep_empty", "status_rep",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		for (size_t off = 0; off < PORTD_RESULT_SIZE; off++)
			expect_byte_rejected(names[i], off, 1);
}

static void test_lease_req_checks(void **state)
{
	struct proto_lease_req m;

	/* Unknown flag bits, in every byte of the field. */
	expect_byte_rejected("lease_req", 0, PORTD_LEASE_F_ALL + 1);
	/* PORTSERVER is defined, but only for replies: the daemon sets it, a client never may. */
	expect_byte_rejected("lease_req", 0, PORTD_LEASE_F_PORTSERVER);
	expect_byte_accepted("lease_req", 0, PORTD_LEASE_F_REQUEST);
	m = lease_req_sample;
	m.flags = PORTD_LEASE_F_PORTSERVER;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), -EINVAL);
	expect_byte_rejected("lease_req", 1, 1);
	expect_byte_rejected("lease_req", 3, 0x80);
	expect_byte_accepted("lease_req", 0, 0);
	/* count 0 and count > max (port is 8080, so count must be 1 anyway: use port 0). */
	expect_byte_rejected("lease_req", 8, 0);
	for (unsigned count = 0; count <= PORTD_LEASE_PORTS_MAX + 1; count++) {
		struct proto_lease_req in = lease_req_sample;
		bool ok = count >= 1 && count <= PORTD_LEASE_PORTS_MAX;

		in.port = 0;
		in.count = (uint16_t)count;
		assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &in), ok ? 40 : -EINVAL);
		in.count = 1;
		assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &in), 40);
		BODY[8] = (uint8_t)count;
		BODY[9] = (uint8_t)(count >> 8);
		assert_int_equal(proto_decode_lease_req(BODY, 24, &m), ok ? 0 : -EBADMSG);
		if (ok)
			assert_int_equal(m.count, count);
	}
	BODY[8] = 0;
	BODY[9] = 1; /* 256 */
	assert_int_equal(proto_decode_lease_req(BODY, 24, &m), -EBADMSG);

	/* port != 0 with count > 1. */
	expect_byte_rejected("lease_req", 8, 2);
	m = lease_req_sample;
	m.count = 2;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), -EINVAL);
	m.port = 0;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), 40);

	/* transport 0 and 4. */
	expect_byte_rejected("lease_req", 10, 0);
	expect_byte_rejected("lease_req", 10, 4);
	expect_byte_rejected("lease_req", 10, 0xff);
	expect_byte_accepted("lease_req", 10, PORTD_UDP);
	expect_byte_accepted("lease_req", 10, PORTD_BOTH);
	m = lease_req_sample;
	m.transport = 0;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), -EINVAL);
	m.transport = 4;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), -EINVAL);
	m = lease_req_sample;
	m.flags = PORTD_LEASE_F_ALL + 1; /* the first undefined bit */
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), -EINVAL);

	/* port != 0 with count > 1 is a consecutive run's first port, and must fit. */
	m = lease_req_sample;
	m.count = 4;
	m.flags |= PORTD_LEASE_F_CONSECUTIVE;
	m.port = 65532;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), 40);
	m.port = 65533;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), -EINVAL);

	/* FD with BOTH: each port is two fds, and a reply carries at most PORTD_FDS_MAX. */
	m = lease_req_sample;
	m.port = 0;
	m.flags = PORTD_LEASE_F_FD;
	m.transport = PORTD_BOTH;
	m.count = PORTD_FDS_MAX / 2;
	assert_true(proto_encode_lease_req(buf, sizeof(buf), 1, &m) > 0);
	m.count++;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &m), -EINVAL);
	m.flags = 0; /* a number lease carries no fds */
	assert_true(proto_encode_lease_req(buf, sizeof(buf), 1, &m) > 0);
}

/* Exclude ranges: a counted array after the fixed part. */
static void test_lease_req_exclude(void **state)
{
	struct proto_lease_req in = lease_req_sample, out;
	ssize_t n;

	in.nexclude = 2;
	in.exclude[0] = (struct proto_range){ 1000, 2000 };
	in.exclude[1] = (struct proto_range){ 30000, 30000 };
	n = proto_encode_lease_req(buf, sizeof(buf), 1, &in);
	assert_int_equal(n, PORTD_HDR_SIZE + PORTD_LEASE_REQ_SIZE + 8);
	assert_int_equal(BODY[14], 2);
	assert_int_equal(BODY[24], 1000 & 0xff);
	assert_int_equal(BODY[25], 1000 >> 8);
	assert_int_equal(proto_decode_lease_req(BODY, (size_t)n - PORTD_HDR_SIZE, &out), 0);
	assert_int_equal(out.nexclude, 2);
	assert_memory_equal(out.exclude, in.exclude, 2 * sizeof(in.exclude[0]));
	/* The count must match the length exactly, both ways. */
	assert_int_equal(proto_decode_lease_req(BODY, (size_t)n - PORTD_HDR_SIZE - 4, &out), -EBADMSG);
	assert_int_equal(proto_decode_lease_req(BODY, (size_t)n - PORTD_HDR_SIZE + 4, &out), -EBADMSG);
	/* lo > hi, lo == 0, and too many ranges. */
	BODY[24] = 0xff;
	BODY[25] = 0xff;
	assert_int_equal(proto_decode_lease_req(BODY, (size_t)n - PORTD_HDR_SIZE, &out), -EBADMSG);
	in.exclude[0].lo = 0;
	assert_int_equal(proto_encode_lease_req(buf, sizeof(buf), 1, &in), -EINVAL);
	in.exclude[0].lo = 1;
	in.nexclude = PORTD_EXCLUDE_MAX;
	for (size_t i = 0; i < PORTD_EXCLUDE_MAX; i++)
		in.exclude[i] = (struct proto_range){ (uint16_t)(i + 1), (uint16_t)(i + 1) };
	n = proto_encode_lease_req(buf, sizeof(buf), 1, &in);
	assert_true(n > 0);
	assert_int_equal(proto_decode_lease_req(BODY, (size_t)n - PORTD_HDR_SIZE, &out), 0);
	BODY[14] = PORTD_EXCLUDE_MAX + 1;
	assert_int_equal(proto_decode_lease_req(BODY, (size_t)n - PORTD_HDR_SIZE + 4, &out), -EBADMSG);
}

static void test_lease_rep_checks(void **state)
{
	struct proto_lease_rep m;

	/* lease_rep_sample: count 3, body 38 bytes, ports at 32, 34, 36. */
	expect_byte_rejected("lease_rep", 20, PORTD_LEASE_F_ALL + 1); /* unknown flag */
	expect_byte_rejected("lease_rep", 24, 0);        /* transport 0 */
	expect_byte_rejected("lease_rep", 24, 4);        /* transport 4 */
	expect_byte_rejected("lease_rep", 26, 0);        /* count 0 */
	expect_byte_rejected("lease_rep", 26, 2);        /* count smaller than the ports */
	expect_byte_rejected("lease_rep", 26, 4);        /* count larger than the ports */
	expect_byte_rejected("lease_rep", 27, 1);        /* count 259 */
	for (size_t off = 8; off < 16; off++)
		expect_byte_accepted("lease_rep", off, 0x5a);

	/* id 0 */
	encode_case(find_case("lease_rep"));
	memset(BODY + 8, 0, 8);
	assert_int_equal(proto_decode_lease_rep(BODY, 38, &m), -EBADMSG);
	/* port 0 */
	encode_case(find_case("lease_rep"));
	BODY[36] = BODY[37] = 0;
	assert_int_equal(proto_decode_lease_rep(BODY, 38, &m), -EBADMSG);

	/* count 17 with a body long enough for 17 ports. */
	encode_case(find_case("lease_rep"));
	BODY[26] = 17;
	memset(BODY + 38, 0x11, 28);
	assert_int_equal(proto_decode_lease_rep(BODY, 32 + 34, &m), -EBADMSG);

	/* The encoder refuses what the decoder would. */
	m = lease_rep_sample;
	m.count = 0;
	assert_int_equal(proto_encode_lease_rep(buf, sizeof(buf), 1, &m), -EINVAL);
	m.count = PORTD_LEASE_PORTS_MAX + 1;
	assert_int_equal(proto_encode_lease_rep(buf, sizeof(buf), 1, &m), -EINVAL);
	m = lease_rep_sample;
	m.id = 0;
	assert_int_equal(proto_encode_lease_rep(buf, sizeof(buf), 1, &m), -EINVAL);
	m = lease_rep_sample;
	m.ports[2] = 0;
	assert_int_equal(proto_encode_lease_rep(buf, sizeof(buf), 1, &m), -EINVAL);
	m = lease_rep_sample;
	m.transport = 0;
	assert_int_equal(proto_encode_lease_rep(buf, sizeof(buf), 1, &m), -EINVAL);
	m = lease_rep_sample;
	m.flags = PORTD_LEASE_F_ALL + 1;
	assert_int_equal(proto_encode_lease_rep(buf, sizeof(buf), 1, &m), -EINVAL);
}

static void test_renew_release_list_checks(void **state)
{
	struct proto_renew_req rq = { 0 };
	struct proto_renew_rep rp = { 0 };
	struct proto_release_req rl = { 0 };
	struct proto_list_req lq = { .flags = 1 };

	/* renew: id 0 */
	encode_case(find_case("renew_req"));
	memset(BODY, 0, 8);
	assert_int_equal(proto_decode_renew_req(BODY, 16, &rq), -EBADMSG);
	encode_case(find_case("renew_rep"));
	memset(BODY + 8, 0, 8);
	assert_int_equal(proto_decode_renew_rep(BODY, 24, &rp), -EBADMSG);
	assert_int_equal(proto_encode_renew_req(buf, sizeof(buf), 1, &rq), -EINVAL);
	assert_int_equal(proto_encode_renew_rep(buf, sizeof(buf), 1, &rp), -EINVAL);

	/* release: id 0 and port 0; transport 4 */
	encode_case(find_case("release_req"));
	BODY[8] = BODY[9] = 0;
	assert_int_equal(proto_decode_release_req(BODY, 16, &rl), -EBADMSG);
	expect_byte_rejected("release_req", 10, 4);
	expect_byte_rejected("release_req", 10, 0xff);
	expect_byte_accepted("release_req", 10, 0);
	assert_int_equal(proto_encode_release_req(buf, sizeof(buf), 1, &rl), -EINVAL);
	rl.port = 1;
	rl.transport = 4;
	assert_int_equal(proto_encode_release_req(buf, sizeof(buf), 1, &rl), -EINVAL);
	assert_int_equal(proto_encode_release_rep(buf, sizeof(buf), 1, 0), -EINVAL);
	encode_case(find_case("release_rep"));
	memset(BODY + 8, 0, 8);
	assert_int_equal(proto_decode_release_rep(BODY, 16, &(uint64_t){ 0 }), -EBADMSG);

	/* list: flags must be 0 */
	for (size_t off = 8; off < 12; off++)
		expect_byte_rejected("list_req", off, 1);
	assert_int_equal(proto_encode_list_req(buf, sizeof(buf), 1, &lq), -EINVAL);

	/* status request: no body, or exactly flags and a zero reserved word */
	uint32_t flags;
	for (size_t len = 1; len < 16; len++)
		if (len != PORTD_STATUS_REQ_FLAGS_SIZE) {
			memset(BODY, 0, len);
			assert_int_equal(proto_decode_status_req(BODY, len, &flags), -EBADMSG);
		}
	for (size_t off = 0; off < 8; off++) {
		memset(BODY, 0, 8);
		BODY[off] = off == 0 ? 0x02 : 0x01; /* an unknown flag, or a reserved bit */
		assert_int_equal(proto_decode_status_req(BODY, 8, &flags), -EBADMSG);
	}
}

/* ---- error replies ---- */

static void test_error_reply(void **state)
{
	uint32_t result, detail;
	struct proto_hdr h;
	ssize_t n;

	assert_int_equal(proto_encode_error(buf, sizeof(buf), PORTD_MSG_LEASE, 1, PORTD_R_OK, 0), -EINVAL);

	n = proto_encode_error(buf, sizeof(buf), PORTD_MSG_RENEW, 0x55, PORTD_R_VERSION, 1);
	assert_int_equal(n, PORTD_HDR_SIZE + PORTD_RESULT_SIZE);
	assert_int_equal(proto_hdr_decode(buf, (size_t)n, &h), 0);
	assert_int_equal(h.type, PORTD_MSG_RENEW | PORTD_MSG_REPLY);
	assert_int_equal(h.id, 0x55);
	assert_int_equal(proto_decode_result(BODY, 8, &result, &detail), 0);
	assert_int_equal(result, PORTD_R_VERSION);
	assert_int_equal(detail, 1);
	/* Exact bytes: the error-reply layout is frozen. */
	assert_memory_equal(BODY, "\x02\0\0\0\x01\0\0\0", 8);

	/* Unknown types are echoed (BADTYPE replies). */
	n = proto_encode_error(buf, sizeof(buf), 0x1234, 1, PORTD_R_BADTYPE, 0x1234);
	assert_int_equal(proto_hdr_decode(buf, (size_t)n, &h), 0);
	assert_int_equal(h.type, 0x1234 | PORTD_MSG_REPLY);

	/* A result this version does not know is still returned, for the caller to map. */
	n = proto_encode_error(buf, sizeof(buf), PORTD_MSG_LEASE, 1, PORTD_R_MAX + 1, 0xdead);
	assert_int_equal(proto_decode_result(BODY, 8, &result, &detail), 0);
	assert_int_equal(result, PORTD_R_MAX + 1);
	assert_int_equal(detail, 0xdead);

	/* An error reply with extra bytes. */
	for (size_t len = 9; len < 40; len++)
		assert_int_equal(proto_decode_result(BODY, len, &result, &detail), -EBADMSG);

	/* An OK prefix: any length >= 8 passes here; the typed decoder checks the rest. */
	memset(BODY, 0, 40);
	assert_int_equal(proto_decode_result(BODY, 8, &result, &detail), 0);
	assert_int_equal(result, PORTD_R_OK);
	assert_int_equal(proto_decode_result(BODY, 40, &result, &detail), 0);
	assert_int_equal(proto_decode_lease_rep(BODY, 8, &(struct proto_lease_rep){ 0 }), -EBADMSG);

	/* An error reply is never a typed OK reply. */
	proto_encode_error(buf, sizeof(buf), PORTD_MSG_LIST, 1, PORTD_R_PROTO, 0);
	assert_int_equal(dec_list_rep(BODY, 8), -EBADMSG);
}

/* ---- LIST replies ---- */

static void test_list_fill(void **state)
{
	static uint8_t snap[PORTD_MSG_MAX];
	struct proto_lease_info e, got;
	struct proto_list_iter it;
	struct proto_hdr h;
	uint32_t count, n = 0;
	size_t len, expect_len;
	bool more;
	int r;

	len = proto_list_begin(buf, PORTD_MSG_MAX, 3);
	assert_int_equal(len, PORTD_HDR_SIZE + PORTD_LIST_REP_SIZE);
	expect_len = len;
	for (;;) {
		uint16_t nports = (uint16_t)(1 + n % PORTD_LEASE_PORTS_MAX);
		size_t before = len;

		e = list_entry(n + 1, nports);
		memcpy(snap, buf, len);
		r = proto_list_add(buf, PORTD_MSG_MAX, &len, &e);
		if (r == -ENOSPC) {
			/* Unchanged: length, bytes, header. */
			assert_int_equal(len, before);
			assert_memory_equal(snap, buf, len);
			break;
		}
		assert_int_equal(r, 0);
		expect_len += (40 + 2 * nports + 7) / 8 * 8;
		assert_int_equal(len, expect_len);
		n++;
		/* Complete after each add, even before proto_list_finish(). */
		assert_int_equal(proto_hdr_decode(buf, len, &h), 0);
		assert_int_equal(proto_decode_list_rep(BODY, len - PORTD_HDR_SIZE, &count, &more, &it), 0);
		assert_int_equal(count, n);
		assert_false(more);
	}
	assert_true(n > 100);
	assert_true(len <= PORTD_MSG_MAX);
	assert_true(len + (40 + 2 * e.nports + 7) / 8 * 8 > PORTD_MSG_MAX);

	proto_list_finish(buf, len, true);
	assert_int_equal(proto_hdr_decode(buf, len, &h), 0);
	assert_int_equal(h.type, PORTD_MSG_LIST | PORTD_MSG_REPLY);
	assert_int_equal(h.id, 3);
	assert_int_equal(proto_decode_list_rep(BODY, len - PORTD_HDR_SIZE, &count, &more, &it), 0);
	assert_int_equal(count, n);
	assert_true(more);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(proto_list_next(&it, &got), 1);
		e = list_entry(i + 1, (uint16_t)(1 + i % PORTD_LEASE_PORTS_MAX));
		assert_info_equal(&got, &e);
	}
	assert_int_equal(proto_list_next(&it, &got), 0);
	assert_int_equal(proto_list_next(&it, &got), 0);
}

/* -ENOSPC respects a small cap, and PORTD_MSG_MAX even with a larger cap. */
static void test_list_caps(void **state)
{
	struct proto_lease_info e = list_entry(1, 1); /* 48 bytes */
	size_t len, cap = 32 + 48 * 2 + 47;
	int added = 0;

	len = proto_list_begin(buf, cap, 1);
	while (proto_list_add(buf, cap, &len, &e) == 0) {
		added++;
		e.id++;
	}
	assert_int_equal(added, 2);
	assert_int_equal(len, 32 + 96);

	len = proto_list_begin(buf, sizeof(buf), 1);
	e.id = 1;
	while (proto_list_add(buf, sizeof(buf), &len, &e) == 0)
		e.id++;
	assert_int_equal(len, 32 + (PORTD_MSG_MAX - 32) / 48 * 48);

	/* Too small for even the empty reply. */
	assert_int_equal(proto_list_begin(buf, 31, 1), 0);
	assert_int_equal(proto_list_begin(buf, 32, 1), 32);
	len = 0;
	assert_int_equal(proto_list_add(buf, sizeof(buf), &len, &e), -EINVAL);
	/* Entries that fail the decoder's checks are refused. */
	len = proto_list_begin(buf, sizeof(buf), 1);
	e = list_entry(1, 0);
	assert_int_equal(proto_list_add(buf, sizeof(buf), &len, &e), -EINVAL);
	e = list_entry(1, PORTD_LEASE_PORTS_MAX + 1);
	assert_int_equal(proto_list_add(buf, sizeof(buf), &len, &e), -EINVAL);
	e = list_entry(0, 1);
	assert_int_equal(proto_list_add(buf, sizeof(buf), &len, &e), -EINVAL);
	e = list_entry(1, 1);
	e.transport = 0;
	assert_int_equal(proto_list_add(buf, sizeof(buf), &len, &e), -EINVAL);
	e = list_entry(1, 2);
	e.ports[1] = 0;
	assert_int_equal(proto_list_add(buf, sizeof(buf), &len, &e), -EINVAL);
	assert_int_equal(len, 32);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_list_malformed(void **state)
{
	const struct msg_case *c = find_case("list_rep");
	/* Body: 16 fixed, entry 0 (id 10, 1 port) at 16..63, entry 1 (4 ports)
	 * at 64..111, entry 2 (16 ports) at 112..183. */
	size_t full = encode_case(c);
	uint32_t count;
	bool more;
	struct proto_list_iter it;

	assert_int_equal(full, 184);
	assert_int_equal(proto_decode_list_rep(BODY, full, &count, &more, &it), 0);
	assert_int_equal(count, 3);
	assert_true(more);

	/* Padding of entry 0 (bytes 42..47 of the entry) must be zero. */
	for (size_t off = 16 + 42; off < 16 + 48; off++)
		expect_byte_rejected("list_rep", off, 1);
	/* Reserved byte 33 of an entry. */
	expect_byte_rejected("list_rep", 16 + 33, 1);
	expect_byte_rejected("list_rep", 112 + 33, 1);
	/* nports 0, 17, and one that disagrees with the entry's size. */
	expect_byte_rejected("list_rep", 16 + 34, 0);
	expect_byte_rejected("list_rep", 112 + 34, 17);
	expect_byte_rejected("list_rep", 64 + 34, 3); /* 46 -> 48: then entry 1 would be misparsed */
	expect_byte_rejected("list_rep", 64 + 34, 5);
	/* transport, flags, id 0, port 0. */
	expect_byte_rejected("list_rep", 16 + 32, 0);
	expect_byte_rejected("list_rep", 16 + 32, 4);
	expect_byte_rejected("list_rep", 16 + 28, PORTD_LEASE_F_ALL + 1);
	expect_byte_accepted("list_rep", 16 + 28, PORTD_LEASE_F_PORTSERVER);
	encode_case(c);
	BODY[16 + 40] = BODY[16 + 41] = 0; /* port 0 */
	assert_int_equal(proto_decode_list_rep(BODY, full, &count, &more, &it), -EBADMSG);
	encode_case(c);
	memset(BODY + 16, 0, 8);
	assert_int_equal(proto_decode_list_rep(BODY, full, &count, &more, &it), -EBADMSG);
	/* Ids not ascending: entry 1 gets id 10, like entry 0. */
	expect_byte_rejected("list_rep", 64, 10);
	expect_byte_rejected("list_rep", 64, 9);
	/* Unknown list flags; "more" with count 0. */
	expect_byte_rejected("list_rep", 12, 2);
	expect_byte_rejected("list_rep", 15, 0x80);
	encode_case(c);
	proto_list_finish(buf, PORTD_HDR_SIZE + 16, true);
	put32(BODY + 8, 0);
	assert_int_equal(proto_decode_list_rep(BODY, 16, &count, &more, &it), -EBADMSG);
	BODY[12] = 0;
	assert_int_equal(proto_decode_list_rep(BODY, 16, &count, &more, &it), 0);
	assert_int_equal(count, 0);

	/* Count field larger and smaller than the real number of entries. */
	for (uint32_t n = 0; n < 8; n++) {
		encode_case(c);
		put32(BODY + 8, n);
		assert_int_equal(proto_decode_list_rep(BODY, full, &count, &more, &it),
				 n == 3 ? 0 : -EBADMSG);
	}
	encode_case(c);
	put32(BODY + 8, 0xffffffff);
	assert_int_equal(proto_decode_list_rep(BODY, full, &count, &more, &it), -EBADMSG);
	/* Body cut right after a whole entry. */
	encode_case(c);
	assert_int_equal(proto_decode_list_rep(BODY, 112, &count, &more, &it), -EBADMSG);
	put32(BODY + 8, 2);
	assert_int_equal(proto_decode_list_rep(BODY, 112, &count, &more, &it), 0);
	assert_int_equal(count, 2);
}

/* ---- names ---- */

static void test_names(void **state)
{
	assert_string_equal(proto_type_name(PORTD_MSG_LEASE), "lease");
	assert_string_equal(proto_type_name(PORTD_MSG_RENEW), "renew");
	assert_string_equal(proto_type_name(PORTD_MSG_RELEASE), "release");
	assert_string_equal(proto_type_name(PORTD_MSG_LIST), "list");
	assert_string_equal(proto_type_name(PORTD_MSG_STATUS | PORTD_MSG_REPLY), "status");
	assert_string_equal(proto_type_name(0), "unknown");
	assert_string_equal(proto_type_name(PORTD_MSG_HELLO), "hello");
	assert_string_equal(proto_type_name(7), "unknown");
	assert_string_equal(proto_type_name(0xffff), "unknown");
	assert_string_equal(proto_transport_name(PORTD_TCP), "tcp");
	assert_string_equal(proto_transport_name(PORTD_UDP), "udp");
	assert_string_equal(proto_transport_name(PORTD_BOTH), "both");
	assert_string_equal(proto_transport_name(0), "any");
	assert_string_equal(proto_transport_name(4), "unknown");
}

#define NCASES (sizeof(cases) / sizeof(cases[0]))

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_hdr_short_and_long),
		cmocka_unit_test(test_hdr_magic),
		cmocka_unit_test(test_hdr_version),
		cmocka_unit_test(test_hdr_length_mismatch),
		cmocka_unit_test(test_lease_req_bytes),
		cmocka_unit_test(test_lease_rep_bytes),
		cmocka_unit_test(test_lease_req_roundtrip),
		cmocka_unit_test(test_lease_rep_roundtrip),
		cmocka_unit_test(test_renew_roundtrip),
		cmocka_unit_test(test_release_roundtrip),
		cmocka_unit_test(test_list_req_roundtrip),
		cmocka_unit_test(test_status_roundtrip),
		cmocka_unit_test(test_status_version),
		cmocka_unit_test(test_status_host_range),
		cmocka_unit_test(test_hello_roundtrip),
		cmocka_unit_test(test_reserved_nonzero),
		cmocka_unit_test(test_lease_req_exclude),
		cmocka_unit_test(test_reply_prefix),
		cmocka_unit_test(test_lease_req_checks),
		cmocka_unit_test(test_lease_rep_checks),
		cmocka_unit_test(test_renew_release_list_checks),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_list_fill),
		cmocka_unit_test(test_list_caps),
		cmocka_unit_test(test_list_malformed),
		cmocka_unit_test(test_names),
	};
	static struct CMUnitTest tests[sizeof(fixed) / sizeof(fixed[0]) + 3 * NCASES];
	static char names[3 * NCASES][64];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		tests[n++] = fixed[i];
	/* The same three checks for every message kind, one named test each. */
	for (size_t i = 0; i < NCASES; i++) {
		static void (*const fn[3])(void **) = { test_truncated, test_oversized, test_encode_cap };
		static const char *const what[3] = { "truncated", "oversized", "encode_cap" };

		for (size_t k = 0; k < 3; k++) {
			char *name = names[3 * i + k];

			snprintf(name, sizeof(names[0]), "test_%s_%s", what[k], cases[i].name);
			tests[n++] = (struct CMUnitTest){
				.name = name,
				.test_func = fn[k],
				.initial_state = (void *)&cases[i],
			};
		}
	}
	return _cmocka_run_group_tests("codec", tests, n, NULL, NULL);
}
