/*
 * libFuzzer target for proto/codec.c.
 *
 * Each input is one datagram. After proto_hdr_decode() it goes through the
 * request decoder and every reply decoder of its type (whatever the reply
 * bit says, for coverage). Whatever decodes is re-encoded, and the result
 * must (1) decode again to the same struct and (2) have exactly the input's
 * body bytes: the encoding is canonical (see codec.h). Any difference aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[PORTD_MSG_MAX];

#define CHECK(cond)                                                                 \
	do {                                                                        \
		if (!(cond)) {                                                      \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                    \
		}                                                                   \
	} while (0)

/* Re-encoded message n: valid header, and a body identical to the input body. */
static const uint8_t *reencoded_body(ssize_t n, const uint8_t *body, size_t len)
{
	struct proto_hdr h;

	CHECK(n >= PORTD_HDR_SIZE);
	CHECK(proto_hdr_decode(out, (size_t)n, &h) == 0);
	CHECK((size_t)n - PORTD_HDR_SIZE == len);
	CHECK(memcmp(proto_body(out), body, len) == 0);
	return proto_body(out);
}

static void lease_req(const uint8_t *b, size_t len)
{
	struct proto_lease_req m, m2;

	if (proto_decode_lease_req(b, len, &m) < 0)
		return;
	b = reencoded_body(proto_encode_lease_req(out, sizeof(out), 1, &m), b, len);
	CHECK(proto_decode_lease_req(b, len, &m2) == 0);
	CHECK(m.flags == m2.flags && m.ttl == m2.ttl && m.count == m2.count &&
	      m.transport == m2.transport && m.port == m2.port && m.pid == m2.pid);
}

static void lease_rep(const uint8_t *b, size_t len)
{
	struct proto_lease_rep m, m2;

	if (proto_decode_lease_rep(b, len, &m) < 0)
		return;
	b = reencoded_body(proto_encode_lease_rep(out, sizeof(out), 1, &m), b, len);
	CHECK(proto_decode_lease_rep(b, len, &m2) == 0);
	CHECK(m.id == m2.id && m.ttl == m2.ttl && m.flags == m2.flags &&
	      m.transport == m2.transport && m.count == m2.count);
	CHECK(memcmp(m.ports, m2.ports, sizeof(m.ports)) == 0);
}

static void renew_req(const uint8_t *b, size_t len)
{
	struct proto_renew_req m, m2;

	if (proto_decode_renew_req(b, len, &m) < 0)
		return;
	b = reencoded_body(proto_encode_renew_req(out, sizeof(out), 1, &m), b, len);
	CHECK(proto_decode_renew_req(b, len, &m2) == 0);
	CHECK(m.id == m2.id && m.ttl == m2.ttl);
}

static void renew_rep(const uint8_t *b, size_t len)
{
	struct proto_renew_rep m, m2;

	if (proto_decode_renew_rep(b, len, &m) < 0)
		return;
	b = reencoded_body(proto_encode_renew_rep(out, sizeof(out), 1, &m), b, len);
	CHECK(proto_decode_renew_rep(b, len, &m2) == 0);
	CHECK(m.id == m2.id && m.ttl == m2.ttl);
}

static void release_req(const uint8_t *b, size_t len)
{
	struct proto_release_req m, m2;

	if (proto_decode_release_req(b, len, &m) < 0)
		return;
	b = reencoded_body(proto_encode_release_req(out, sizeof(out), 1, &m), b, len);
	CHECK(proto_decode_release_req(b, len, &m2) == 0);
	CHECK(m.id == m2.id && m.port == m2.port && m.transport == m2.transport);
}

static void release_rep(const uint8_t *b, size_t len)
{
	uint64_t id, id2;

	if (proto_decode_release_rep(b, len, &id) < 0)
		return;
	b = reencoded_body(proto_encode_release_rep(out, sizeof(out), 1, id), b, len);
	CHECK(proto_decode_release_rep(b, len, &id2) == 0);
	CHECK(id == id2);
}

static void list_req(const uint8_t *b, size_t len)
{
	struct proto_list_req m, m2;

	if (proto_decode_list_req(b, len, &m) < 0)
		return;
	b = reencoded_body(proto_encode_list_req(out, sizeof(out), 1, &m), b, len);
	CHECK(proto_decode_list_req(b, len, &m2) == 0);
	CHECK(m.after_id == m2.after_id && m.flags == m2.flags);
}

static bool info_equal(const struct proto_lease_info *a, const struct proto_lease_info *b)
{
	return a->id == b->id && a->expires_in_ms == b->expires_in_ms && a->uid == b->uid &&
	       a->pid == b->pid && a->ttl == b->ttl && a->flags == b->flags &&
	       a->transport == b->transport && a->nports == b->nports &&
	       a->tied_pid == b->tied_pid && memcmp(a->ports, b->ports, sizeof(a->ports)) == 0;
}

static void list_rep(const uint8_t *b, size_t len)
{
	struct proto_list_iter it, it2;
	struct proto_lease_info e, e2;
	uint32_t count, count2, seen = 0;
	bool more, more2;
	size_t olen;
	int r;

	if (proto_decode_list_rep(b, len, &count, &more, &it) < 0)
		return;
	olen = proto_list_begin(out, sizeof(out), 1);
	CHECK(olen == PORTD_HDR_SIZE + PORTD_LIST_REP_SIZE);
	while ((r = proto_list_next(&it, &e)) == 1) {
		CHECK(proto_list_add(out, sizeof(out), &olen, &e) == 0);
		seen++;
	}
	CHECK(r == 0 && seen == count);
	proto_list_finish(out, olen, more);
	b = reencoded_body((ssize_t)olen, b, len);

	CHECK(proto_decode_list_rep(b, len, &count2, &more2, &it2) == 0);
	CHECK(count == count2 && more == more2);
	CHECK(proto_decode_list_rep(b, len, &count, &more, &it) == 0);
	while ((r = proto_list_next(&it, &e)) == 1) {
		CHECK(proto_list_next(&it2, &e2) == 1);
		CHECK(info_equal(&e, &e2));
	}
	CHECK(r == 0 && proto_list_next(&it2, &e2) == 0);
}

static void status_req(const uint8_t *b, size_t len)
{
	uint32_t flags;

	if (proto_decode_status_req(b, len, &flags) < 0)
		return;
	if (len == PORTD_STATUS_REQ_SIZE)
		reencoded_body(proto_encode_status_req(out, sizeof(out), 1), b, len);
	else
		reencoded_body(proto_encode_status_req_flags(out, sizeof(out), 1, flags), b, len);
}

static void status_rep(const uint8_t *b, size_t len)
{
	struct proto_status m, m2;

	if (proto_decode_status_rep(b, len, &m) < 0)
		return;
	CHECK(memchr(m.version, '\0', sizeof(m.version)) != NULL);
	b = reencoded_body(proto_encode_status_rep(out, sizeof(out), 1, &m), b, len);
	CHECK(proto_decode_status_rep(b, len, &m2) == 0);
	CHECK(m.uptime_ms == m2.uptime_ms && m.leases == m2.leases &&
	      m.ports_held == m2.ports_held && m.quarantined == m2.quarantined &&
	      m.connections == m2.connections && m.max_leases == m2.max_leases &&
	      m.max_per_uid == m2.max_per_uid && m.default_ttl == m2.default_ttl &&
	      m.max_ttl == m2.max_ttl && m.quarantine == m2.quarantine &&
	      m.range_lo == m2.range_lo && m.range_hi == m2.range_hi &&
	      m.caller_leases == m2.caller_leases && strcmp(m.version, m2.version) == 0);
}

/* The prefix of every reply; a non-OK result is a whole error reply. */
static void result(uint16_t type, const uint8_t *b, size_t len)
{
	uint32_t res, detail, res2, detail2;

	if (proto_decode_result(b, len, &res, &detail) < 0)
		return;
	if (res == PORTD_R_OK) {
		CHECK(proto_encode_error(out, sizeof(out), type, 1, res, detail) == -EINVAL);
		return;
	}
	CHECK(len == PORTD_RESULT_SIZE);
	b = reencoded_body(proto_encode_error(out, sizeof(out), type, 1, res, detail), b, len);
	CHECK(proto_decode_result(b, len, &res2, &detail2) == 0);
	CHECK(res == res2 && detail == detail2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_hdr h;
	const uint8_t *body;
	size_t len;
	int r;

	r = proto_hdr_decode(data, size, &h);
	if (r == -EPROTONOSUPPORT) {
		/* The daemon still answers with the request's type and id. */
		CHECK(h.length == size && h.version != PORTD_PROTO_VERSION);
		return 0;
	}
	if (r < 0)
		return 0;
	CHECK(h.magic == PORTD_PROTO_MAGIC && h.length == size);
	body = proto_body(data);
	len = size - PORTD_HDR_SIZE;
	(void)proto_type_name(h.type);

	result(h.type, body, len);
	switch (h.type & ~PORTD_MSG_REPLY) {
	case PORTD_MSG_LEASE:
		lease_req(body, len);
		lease_rep(body, len);
		break;
	case PORTD_MSG_RENEW:
		renew_req(body, len);
		renew_rep(body, len);
		break;
	case PORTD_MSG_RELEASE:
		release_req(body, len);
		release_rep(body, len);
		break;
	case PORTD_MSG_LIST:
		list_req(body, len);
		list_rep(body, len);
		break;
	case PORTD_MSG_STATUS:
		status_req(body, len);
		status_rep(body, len);
		break;
	default:
		break;
	}
	return 0;
}
