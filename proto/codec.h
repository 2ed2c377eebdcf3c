/*
 * Encode/decode pairs for every portd message. All length, range and layout
 * checks of the protocol live here and nowhere else.
 *
 * Conventions:
 *  - proto_encode_*() write one whole message (header included) into buf and
 *    return its length, or -EMSGSIZE if it does not fit in cap (or in
 *    PORTD_MSG_MAX), or -EINVAL if *m fails a check its decoder makes: what
 *    one side encodes, the other side always decodes. Reserved bytes and
 *    padding are written as zero.
 *  - proto_decode_*() read a message body (the bytes after the header, as
 *    located by proto_hdr_decode()) and return 0, or -EBADMSG if the body has
 *    the wrong length or a field out of range. They never read past len.
 *    On failure the output is zeroed or partly filled: don't use it.
 *  - The encoding is canonical: a body that decodes re-encodes to the same
 *    bytes (tests/fuzz/fuzz-codec.c checks this).
 */
#ifndef PORTD_CODEC_H
#define PORTD_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol.h"

struct proto_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t length;
	uint32_t id;
};

struct proto_range {
	uint16_t lo, hi;
};

struct proto_lease_req {
	uint32_t flags;
	uint32_t ttl;
	uint16_t count;
	uint8_t transport;
	uint16_t port;
	uint32_t pid;
	uint16_t nexclude;
	struct proto_range exclude[PORTD_EXCLUDE_MAX];
};

struct proto_lease_rep {
	uint64_t id;
	uint32_t ttl;
	uint32_t flags;
	uint8_t transport;
	uint16_t count;
	uint16_t ports[PORTD_LEASE_PORTS_MAX];
};

struct proto_renew_req {
	uint64_t id;
	uint32_t ttl;
};

struct proto_renew_rep {
	uint64_t id;
	uint32_t ttl;
};

struct proto_release_req {
	uint64_t id;
	uint16_t port;
	uint8_t transport; /* 0 = any */
};

struct proto_list_req {
	uint64_t after_id;
	uint32_t flags;
};

/* One LIST entry. */
struct proto_lease_info {
	uint64_t id;
	uint64_t expires_in_ms;
	uint32_t uid;
	uint32_t pid;
	uint32_t ttl;
	uint32_t flags;
	uint8_t transport;
	uint16_t nports;
	uint32_t tied_pid;
	uint16_t ports[PORTD_LEASE_PORTS_MAX];
};

struct proto_status {
	uint64_t uptime_ms;
	uint32_t leases;
	uint32_t ports_held;
	uint32_t quarantined;
	uint32_t connections;
	uint32_t max_leases;
	uint32_t max_per_uid;
	uint32_t default_ttl;
	uint32_t max_ttl;
	uint32_t quarantine;
	uint16_t range_lo;
	uint16_t range_hi;
	uint32_t caller_leases;
	uint32_t flags; /* PORTD_STATUS_F_* */
	char version[PORTD_VERSION_LEN + 1]; /* always NUL-terminated after decode */
	uint64_t heap_bytes;
	uint32_t open_fds;
	uint32_t eph_in_use;
	uint16_t eph_lo, eph_hi;
};

/*
 * Header. Checks, in this order: len >= PORTD_HDR_SIZE and len <= PORTD_MSG_MAX
 * (else -EBADMSG), magic (else -EBADMSG), length field == len (else -EBADMSG),
 * version == PORTD_PROTO_VERSION (else -EPROTONOSUPPORT, with *h filled in so
 * the caller can still answer with the request's id and type). *h is filled
 * whenever len >= PORTD_HDR_SIZE. The type is not checked (the caller answers
 * unknown types with PORTD_R_BADTYPE).
 */
int proto_hdr_decode(const void *buf, size_t len, struct proto_hdr *h);
/* Writes a header for a message of body_len body bytes (buf must hold
 * PORTD_HDR_SIZE bytes, body_len <= PORTD_MSG_MAX - PORTD_HDR_SIZE); returns
 * PORTD_HDR_SIZE. */
size_t proto_hdr_encode(void *buf, uint16_t type, uint32_t id, size_t body_len);
/* Body of a message whose header was decoded from buf. */
static inline const uint8_t *proto_body(const void *buf) { return (const uint8_t *)buf + PORTD_HDR_SIZE; }

/* Requests. */
/* Would this request pass proto_decode_lease_req()? Clients check before sending. */
bool proto_lease_req_valid(const struct proto_lease_req *m);
ssize_t proto_encode_lease_req(void *buf, size_t cap, uint32_t id, const struct proto_lease_req *m);
/* Checks: exact size, no flag outside PORTD_LEASE_F_REQUEST (PORTSERVER is
 * for replies only), reserved bytes zero, 1 <= count <=
 * PORTD_LEASE_PORTS_MAX, transport in 1..3, port != 0 only with count == 1. */
int proto_decode_lease_req(const void *body, size_t len, struct proto_lease_req *m);
ssize_t proto_encode_renew_req(void *buf, size_t cap, uint32_t id, const struct proto_renew_req *m);
int proto_decode_renew_req(const void *body, size_t len, struct proto_renew_req *m); /* id != 0 */
ssize_t proto_encode_release_req(void *buf, size_t cap, uint32_t id, const struct proto_release_req *m);
/* id != 0, or id == 0 with port != 0; transport 0..3. */
int proto_decode_release_req(const void *body, size_t len, struct proto_release_req *m);
ssize_t proto_encode_list_req(void *buf, size_t cap, uint32_t id, const struct proto_list_req *m);
int proto_decode_list_req(const void *body, size_t len, struct proto_list_req *m);
ssize_t proto_encode_hello_req(void *buf, size_t cap, uint32_t id);
int proto_decode_hello_req(const void *body, size_t len); /* len must be 0 */
ssize_t proto_encode_hello_rep(void *buf, size_t cap, uint32_t id, uint32_t uid, uint32_t pid);
int proto_decode_hello_rep(const void *body, size_t len, uint32_t *uid, uint32_t *pid);

ssize_t proto_encode_status_req(void *buf, size_t cap, uint32_t id); /* empty body: flags 0 */
/* The 8-byte body; -EINVAL for a flag outside PORTD_STATUS_REQ_F_ALL. */
ssize_t proto_encode_status_req_flags(void *buf, size_t cap, uint32_t id, uint32_t flags);
/* Empty (flags 0) or 8 bytes with known flags and a zero reserved word; *flags set either way. */
int proto_decode_status_req(const void *body, size_t len, uint32_t *flags);

/*
 * Replies. proto_decode_result() reads the prefix every reply has; a non-OK
 * result must come with exactly PORTD_RESULT_SIZE body bytes. A result above
 * PORTD_R_MAX is not an error here: it is returned as is (a newer daemon may
 * know more results) and the caller maps it to a generic failure.
 * proto_encode_error() sets PORTD_MSG_REPLY on req_type and returns -EINVAL
 * for result == PORTD_R_OK.
 *
 * The typed reply decoders below are for OK replies and check the whole body:
 * result and detail 0, reserved bytes 0, lease ids != 0, flags within
 * PORTD_LEASE_F_ALL, transport 1..3, 1 <= count <= PORTD_LEASE_PORTS_MAX,
 * every port != 0. The STATUS version must be NUL-padded (every byte after
 * the first NUL is NUL); encode copies at most PORTD_VERSION_LEN bytes.
 */
ssize_t proto_encode_error(void *buf, size_t cap, uint16_t req_type, uint32_t id,
			   uint32_t result, uint32_t detail);
int proto_decode_result(const void *body, size_t len, uint32_t *result, uint32_t *detail);

ssize_t proto_encode_lease_rep(void *buf, size_t cap, uint32_t id, const struct proto_lease_rep *m);
int proto_decode_lease_rep(const void *body, size_t len, struct proto_lease_rep *m);
ssize_t proto_encode_renew_rep(void *buf, size_t cap, uint32_t id, const struct proto_renew_rep *m);
int proto_decode_renew_rep(const void *body, size_t len, struct proto_renew_rep *m);
ssize_t proto_encode_release_rep(void *buf, size_t cap, uint32_t id, uint64_t lease_id);
int proto_decode_release_rep(const void *body, size_t len, uint64_t *lease_id);
ssize_t proto_encode_status_rep(void *buf, size_t cap, uint32_t id, const struct proto_status *m);
int proto_decode_status_rep(const void *body, size_t len, struct proto_status *m);

/*
 * LIST replies are built entry by entry:
 *   len = proto_list_begin(buf, cap, id);
 *   while (...) if (proto_list_add(buf, cap, &len, &info) == -ENOSPC) { more = true; break; }
 *   proto_list_finish(buf, len, more);
 * and read back with an iterator over a decoded body.
 *
 * proto_list_begin() returns the length so far, or 0 if cap cannot hold even
 * the empty reply. proto_list_add() updates the count and the header length
 * itself, so the message is complete after every call; it returns -ENOSPC,
 * leaving the message unchanged, if the entry would make it exceed cap or
 * PORTD_MSG_MAX, and -EINVAL for a bad *len or an entry that fails the
 * decoder's checks. Entries must be added in strictly ascending id order
 * (decoders enforce it; the daemon's id index yields that order).
 * proto_list_finish() sets the flags; it may be skipped when more is false.
 */
size_t proto_list_begin(void *buf, size_t cap, uint32_t id);
int proto_list_add(void *buf, size_t cap, size_t *len, const struct proto_lease_info *e);
void proto_list_finish(void *buf, size_t len, bool more);

struct proto_list_iter {
	const uint8_t *p;
	size_t left;
	uint32_t remaining;
};
/* Checks the fixed part and that exactly count well-formed entries fill the
 * body, with strictly ascending ids; PORTD_LIST_F_MORE with count 0 is
 * rejected (the client would have no after_id to continue from). */
int proto_decode_list_rep(const void *body, size_t len, uint32_t *count, bool *more,
			  struct proto_list_iter *it);
/* Returns 1 and fills *e, or 0 at the end. Only valid after a successful
 * decode (otherwise it may return -EBADMSG). */
int proto_list_next(struct proto_list_iter *it, struct proto_lease_info *e);

/* Stable lower-case names, for logs: "lease", "renew", ...; "unknown" otherwise.
 * The PORTD_MSG_REPLY bit is ignored. */
const char *proto_type_name(uint16_t type);
const char *proto_transport_name(uint8_t transport); /* "tcp", "udp", "both"; 0: "any" */

#endif
