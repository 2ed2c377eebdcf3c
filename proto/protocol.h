/*
 * portd wire protocol: constants and field layouts.
 *
 * Transport: AF_UNIX SOCK_SEQPACKET, one message per datagram. Every integer is
 * little-endian and fixed-width; every offset below is from the start of the
 * message body (the bytes after the 16-byte header). proto/PROTOCOL.md is the
 * byte-level specification; proto/codec.c is the only code that reads or
 * writes these layouts.
 *
 * Don't forget to bump PORTD_PROTO_VERSION if any of these change! The header
 * layout and the error-reply layout are frozen forever, so that peers of any
 * two versions can always tell each other that they disagree.
 */
#ifndef PORTD_PROTOCOL_H
#define PORTD_PROTOCOL_H

#define PORTD_PROTO_MAGIC 0x44545250u /* bytes "PRTD" on the wire */
#define PORTD_PROTO_VERSION 3
/*
 * 2: PORTD_LEASE_F_PORTSERVER, leases without a deadline.
 * 3: STATUS reply of 120 bytes: heap, fds and the host's ephemeral range;
 *    HELLO, the first request of a connection.
 */

#define PORTD_HDR_SIZE 16
#define PORTD_MSG_MAX 16384 /* largest datagram either side sends or accepts */
#define PORTD_FDS_MAX 16    /* most fds attached to one message */
#define PORTD_LEASE_PORTS_MAX 16

/*
 * Header (16 bytes):
 *   0 u32 magic      PORTD_PROTO_MAGIC
 *   4 u16 version    PORTD_PROTO_VERSION of the sender
 *   6 u16 type       enum portd_msg_type; replies set PORTD_MSG_REPLY
 *   8 u32 length     whole message, header included; equals the datagram size
 *  12 u32 id         chosen by the client, echoed in the reply
 */
#define PORTD_MSG_REPLY 0x8000u

enum portd_msg_type {
	PORTD_MSG_LEASE = 1,
	PORTD_MSG_RENEW = 2,
	PORTD_MSG_RELEASE = 3,
	PORTD_MSG_LIST = 4,
	PORTD_MSG_STATUS = 5,
	PORTD_MSG_HELLO = 6,
};

/*
 * Every reply body starts with:
 *   0 u32 result     enum portd_result
 *   4 u32 detail     meaning depends on result (a limit, an errno, a version)
 * A reply whose result is not PORTD_R_OK has exactly these 8 body bytes.
 */
enum portd_result {
	PORTD_R_OK = 0,
	PORTD_R_PROTO = 1,       /* malformed request; the daemon then closes the connection */
	PORTD_R_VERSION = 2,     /* detail: the daemon's protocol version */
	PORTD_R_BADTYPE = 3,     /* unknown message type; detail: the type */
	PORTD_R_INVAL = 4,       /* a field is out of range */
	PORTD_R_NOENT = 5,       /* no such lease */
	PORTD_R_PERM = 6,        /* the lease belongs to another uid */
	PORTD_R_TTL = 7,         /* ttl above the maximum; detail: the maximum in seconds */
	PORTD_R_QUOTA_UID = 8,   /* per-uid lease limit reached; detail: the limit */
	PORTD_R_QUOTA_TOTAL = 9, /* daemon-wide lease limit reached; detail: the limit */
	PORTD_R_NOPORTS = 10,    /* the port source has no free port left */
	PORTD_R_BUSY = 11,       /* the requested port is in use or quarantined */
	PORTD_R_INTERNAL = 12,   /* the daemon failed; detail: errno */
	PORTD_R_UNSUPPORTED = 13,/* well-formed but not supported by this daemon */
	PORTD_R_NOTSUP_TRANSPORT = 14, /* number-only lease of UDP outside a reserved range */
};
#define PORTD_R_MAX PORTD_R_NOTSUP_TRANSPORT

enum portd_transport {
	PORTD_TCP = 1,
	PORTD_UDP = 2,
	PORTD_BOTH = 3, /* the same number on TCP and UDP */
};

/* Lease flags: in LEASE requests, and reported back in replies and LIST. */
#define PORTD_LEASE_F_FD 0x1u   /* hand the bound socket(s) over in the reply */
#define PORTD_LEASE_F_TIE 0x2u  /* end the lease when the connecting process exits */
#define PORTD_LEASE_F_CONSECUTIVE 0x4u /* count adjacent numbers, ascending */
/*
 * Reported in LIST only, never valid in a request: the lease was taken over
 * the portserver socket (portpicker's protocol, daemon/portserver.h). It has
 * no deadline (ttl 0, expires_in_ms PORTD_LIST_NO_DEADLINE) and ends when its tied
 * process exits, or when it is released.
 */
#define PORTD_LEASE_F_PORTSERVER 0x8u
#define PORTD_LEASE_F_REQUEST 0x7u /* every flag a LEASE request may set */
#define PORTD_LEASE_F_ALL 0xfu  /* every flag defined in this version */

/* expires_in_ms of a lease without a deadline (LIST). */
#define PORTD_LIST_NO_DEADLINE UINT64_MAX

#define PORTD_EXCLUDE_MAX 64    /* most exclude ranges in one LEASE request */

/*
 * LEASE request body (24 + 4*nexclude bytes):
 *   0 u32 flags      PORTD_LEASE_F_REQUEST bits; other bits must be zero
 *   4 u32 ttl        seconds; 0 = the daemon's default
 *   8 u16 count      ports wanted, 1..PORTD_LEASE_PORTS_MAX; with
 *                    PORTD_LEASE_F_FD and PORTD_BOTH at most PORTD_FDS_MAX/2
 *  10 u8  transport  enum portd_transport
 *  11 u8  reserved   0
 *  12 u16 port       0 = any; else exactly this port (count 1), or the
 *                    first of a PORTD_LEASE_F_CONSECUTIVE run
 *  14 u16 nexclude   exclude ranges that follow, 0..PORTD_EXCLUDE_MAX
 *  16 u32 pid        0 = none; else end the lease when this process exits
 *                    (it must belong to the caller's uid unless the caller is root)
 *  20 u32 reserved   0
 *  24 {u16 lo, u16 hi}[nexclude]  ports never to hand out, 1 <= lo <= hi
 *
 * LEASE reply body, result OK (32 + 2*count bytes):
 *   0 u32 result     0
 *   4 u32 detail     0
 *   8 u64 id
 *  16 u32 ttl        seconds granted
 *  20 u32 flags      PORTD_LEASE_F_* in force
 *  24 u8  transport
 *  25 u8  reserved   0
 *  26 u16 count
 *  28 u32 reserved   0
 *  32 u16 ports[count]
 * With PORTD_LEASE_F_FD the reply carries, as SCM_RIGHTS, one fd per port
 * (two per port for PORTD_BOTH: TCP then UDP), in port order.
 */
#define PORTD_LEASE_REQ_SIZE 24 /* without exclude ranges */
#define PORTD_LEASE_REQ_MAX (PORTD_LEASE_REQ_SIZE + 4 * PORTD_EXCLUDE_MAX)
#define PORTD_LEASE_REP_SIZE 32

/*
 * RENEW request body (16 bytes): 0 u64 id, 8 u32 ttl (0 = default), 12 u32 reserved.
 * RENEW reply body, OK (24 bytes): 0 result, 4 detail, 8 u64 id, 16 u32 ttl, 20 u32 reserved.
 */
#define PORTD_RENEW_REQ_SIZE 16
#define PORTD_RENEW_REP_SIZE 24

/*
 * RELEASE request body (16 bytes):
 *   0 u64 id         0 = release by port
 *   8 u16 port       with id 0: the lease holding this port
 *  10 u8  transport  with id 0: 0 = any, else enum portd_transport
 *  11 u8  reserved   0
 *  12 u32 reserved   0
 * RELEASE reply body, OK (16 bytes): 0 result, 4 detail, 8 u64 id released.
 */
#define PORTD_RELEASE_REQ_SIZE 16
#define PORTD_RELEASE_REP_SIZE 16

/*
 * LIST request body (16 bytes): 0 u64 after_id (list leases with id > after_id),
 * 8 u32 flags (0), 12 u32 reserved. A non-root caller sees its own leases,
 * root sees all.
 *
 * LIST reply body, OK: 0 result, 4 detail, 8 u32 count, 12 u32 flags
 * (PORTD_LIST_F_MORE: ask again with after_id = last id), then count entries
 * in ascending id order, each 40 + 2*nports bytes rounded up to a multiple of 8:
 *   0 u64 id
 *   8 u64 expires_in_ms  PORTD_LIST_NO_DEADLINE: none (the lease ends with its tied process)
 *  16 u32 uid        owner
 *  20 u32 pid        owner's pid at connect time (0 if unknown)
 *  24 u32 ttl        seconds; 0 for a lease without a deadline
 *  28 u32 flags      PORTD_LEASE_F_*
 *  32 u8  transport
 *  33 u8  reserved
 *  34 u16 nports
 *  36 u32 tied_pid   process the lease is tied to (0 = none)
 *  40 u16 ports[nports], zero padding to the next multiple of 8
 */
#define PORTD_LIST_REQ_SIZE 16
#define PORTD_LIST_REP_SIZE 16
#define PORTD_LIST_ENTRY_SIZE 40
#define PORTD_LIST_F_MORE 0x1u

/*
 * STATUS request body: empty, or 8 bytes:
 *   0 u32 flags     PORTD_STATUS_REQ_F_*
 *   4 u32 reserved  0
 * An empty body is flags 0.
 * STATUS reply body, OK (120 bytes):
 *   0 u32 result, 4 u32 detail
 *   8 u64 uptime_ms
 *  16 u32 leases          live leases, all uids
 *  20 u32 ports_held      bound sockets the daemon holds
 *  24 u32 quarantined     ports in reuse quarantine
 *  28 u32 connections     open client connections
 *  32 u32 max_leases
 *  36 u32 max_per_uid
 *  40 u32 default_ttl     seconds
 *  44 u32 max_ttl         seconds
 *  48 u32 quarantine      seconds
 *  52 u16 range_lo        0 = the kernel chooses ports
 *  54 u16 range_hi
 *  56 u32 caller_leases   leases of the caller's uid
 *  60 u32 flags           PORTD_STATUS_F_*
 *  64 char version[32]    daemon version, NUL-padded
 *  96 u64 heap_bytes      bytes the daemon's allocator has in use; 0 = unknown
 * 104 u32 open_fds        file descriptors the daemon has open (PORTD_STATUS_REQ_F_FDS)
 * 108 u32 eph_in_use      ports of the host's ephemeral range in use (last scan)
 * 112 u16 eph_lo          the host's ephemeral range at the last scan;
 * 114 u16 eph_hi          0, 0 (and eph_in_use 0): not scanned
 * 116 u32 reserved        0
 */
#define PORTD_STATUS_F_RESERVED 0x1u /* the range is in net.ipv4.ip_local_reserved_ports */
#define PORTD_STATUS_F_EPH_LOW 0x2u  /* the host's ephemeral range is close to exhaustion */
#define PORTD_STATUS_F_ALL 0x3u
/* Count the daemon's open fds (root or the daemon's uid): it reads /proc/self/fd, ~1 us per fd. */
#define PORTD_STATUS_REQ_F_FDS 0x1u
#define PORTD_STATUS_REQ_F_ALL 0x1u
#define PORTD_STATUS_REQ_SIZE 0       /* flags 0 */
#define PORTD_STATUS_REQ_FLAGS_SIZE 8 /* with flags */
#define PORTD_STATUS_REP_SIZE 120
#define PORTD_VERSION_LEN 32

/*
 * HELLO request body: empty. A client sends it first, right after connecting:
 * the daemon closes a connection that has sent no request for a while.
 * HELLO reply body, OK (16 bytes):
 *   0 u32 result, 4 u32 detail
 *   8 u32 uid             the caller as the daemon sees it (SO_PEERCRED)
 *  12 u32 pid
 */
#define PORTD_HELLO_REQ_SIZE 0
#define PORTD_HELLO_REP_SIZE 16

#define PORTD_RESULT_SIZE 8 /* result + detail: every reply's prefix */

#endif
