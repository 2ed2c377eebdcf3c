/*
 * libportd: lease TCP/UDP ports from portd.
 *
 *   struct portd *p;
 *   int r = portd_connect(NULL, &p);            // $PORTD_SOCKET or the default path
 *   struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;   // one TCP port, fd handed over
 *   struct portd_lease l;
 *   r = portd_lease(p, &o, &l, 1000);           // l.fds[0] is bound to l.ports[0]
 *   ...
 *   portd_release(p, l.id, 1000);
 *   portd_disconnect(p);
 *
 * Every function returns 0 (or a count) on success and a negative error on
 * failure: either -errno (-ENOENT: no socket at that path, -ETIMEDOUT, ...) or
 * -PORTD_E_* for an answer of the daemon. portd_strerror() turns either into
 * a message. -ECONNRESET means the daemon hung up (also when a send fails
 * with EPIPE). The library never logs, never exits and keeps no global state;
 * a struct portd must not be used from two threads at once.
 *
 * The synchronous calls (portd_lease(), ...) are built from the asynchronous
 * pieces (portd_send_*() + portd_recv()), which an event-loop user can call
 * directly: send, wait until portd_fd() is readable, then portd_recv().
 * A synchronous call drops every reply that is not its own (such as a late
 * answer to an earlier call that timed out, closing any fds it carried), so
 * do not make one while asynchronous requests are still unanswered.
 */
#ifndef PORTD_H
#define PORTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PORTD_PROTOCOL_VERSION 3 /* the wire protocol this library speaks */
#define PORTD_MAX_PORTS 16       /* most ports in one lease */
#define PORTD_MAX_FDS 16         /* most fds in one lease reply */

/* Transports. */
#define PORTD_TRANSPORT_TCP 1
#define PORTD_TRANSPORT_UDP 2
#define PORTD_TRANSPORT_BOTH 3 /* the same number on TCP and UDP */

/* Lease flags. */
#define PORTD_FLAG_FD 0x1u  /* hand the bound socket(s) to this process: one fd per port, two
			     * per port (TCP then UDP) for BOTH, so BOTH allows at most 8 ports */
#define PORTD_FLAG_TIE 0x2u /* end the lease when this process exits */
#define PORTD_FLAG_CONSECUTIVE 0x4u /* count adjacent port numbers */
/* In portd_lease_info.flags only (a request with it is -EINVAL): the lease was
 * taken over portd's portserver socket (portpicker's protocol). It has no
 * deadline and ends when its tied process exits. */
#define PORTD_FLAG_PORTSERVER 0x8u

#define PORTD_MAX_EXCLUDE 64 /* most exclude ranges in one request */

/* An inclusive range of ports, lo <= hi. */
struct portd_range {
	uint16_t lo, hi;
};

/* Errors reported by the daemon (returned negated). */
enum portd_error {
	PORTD_E_BASE = 1000,
	PORTD_E_PROTO = 1001,       /* a message that does not follow the protocol */
	PORTD_E_VERSION = 1002,     /* protocol version mismatch; portd_detail(): the daemon's version */
	PORTD_E_BADTYPE = 1003,     /* the daemon does not know this request */
	PORTD_E_INVAL = 1004,       /* an argument is out of range */
	PORTD_E_NOENT = 1005,       /* no such lease */
	PORTD_E_PERM = 1006,        /* the lease belongs to another user */
	PORTD_E_TTL = 1007,         /* ttl above the maximum; portd_detail(): the maximum */
	PORTD_E_QUOTA_UID = 1008,   /* per-user lease limit; portd_detail(): the limit */
	PORTD_E_QUOTA_TOTAL = 1009, /* daemon-wide lease limit; portd_detail(): the limit */
	PORTD_E_NOPORTS = 1010,     /* no free port left */
	PORTD_E_BUSY = 1011,        /* the requested port is in use or quarantined */
	PORTD_E_INTERNAL = 1012,    /* the daemon failed; portd_detail(): errno */
	PORTD_E_UNSUPPORTED = 1013, /* this daemon does not support the request */
	PORTD_E_NOTSUP_TRANSPORT = 1014, /* number-only UDP lease outside a reserved range */
	PORTD_E_MAX = 1014,
};

struct portd;

struct portd_lease_opts {
	uint32_t ttl;       /* seconds; 0 = the daemon's default */
	uint32_t flags;     /* PORTD_FLAG_* */
	uint16_t count;     /* ports, 1..PORTD_MAX_PORTS (with FD and BOTH: 1..PORTD_MAX_FDS/2) */
	uint8_t transport;  /* PORTD_TRANSPORT_* */
	uint16_t port;      /* 0 = any; else exactly this one (the first, with PORTD_FLAG_CONSECUTIVE) */
	pid_t pid;          /* 0 = none; else end the lease when this process (of your uid) exits */
	const struct portd_range *exclude; /* ports never to lease, nexclude ranges */
	size_t nexclude;    /* 0..PORTD_MAX_EXCLUDE */
};
/* One TCP port, the bound socket handed over, the lease tied to this process. */
#define PORTD_LEASE_OPTS_INIT \
	{ .ttl = 0, .flags = PORTD_FLAG_FD | PORTD_FLAG_TIE, .count = 1, \
	  .transport = PORTD_TRANSPORT_TCP, .port = 0, .pid = 0, .exclude = NULL, .nexclude = 0 }

struct portd_lease {
	uint64_t id;
	uint32_t ttl;       /* seconds granted */
	uint32_t flags;     /* PORTD_FLAG_* in force */
	uint8_t transport;
	uint16_t count;
	uint16_t ports[PORTD_MAX_PORTS];
	size_t nfds;        /* fds[] received (0 unless PORTD_FLAG_FD); owned by the caller */
	int fds[PORTD_MAX_FDS];
};

struct portd_lease_info {
	uint64_t id;
	uint64_t expires_in_ms; /* PORTD_NO_DEADLINE: none (ends with its tied process) */
	uint32_t uid;
	pid_t pid;          /* owner's pid when it connected */
	pid_t tied_pid;     /* 0 = not tied to a process */
	uint32_t ttl;       /* 0 for a lease without a deadline */
	uint32_t flags;     /* PORTD_FLAG_* */
	uint8_t transport;
	uint16_t count;
	uint16_t ports[PORTD_MAX_PORTS];
};

#define PORTD_NO_DEADLINE UINT64_MAX

struct portd_status {
	uint64_t uptime_ms;
	uint32_t leases, ports_held, quarantined, connections;
	uint32_t max_leases, max_per_uid, default_ttl, max_ttl, quarantine;
	uint16_t range_lo, range_hi; /* 0, 0: the kernel chooses ports */
	uint32_t caller_leases;
	uint32_t flags;     /* PORTD_STATUS_* */
	char version[33];
	uint64_t heap_bytes; /* the daemon's allocator bytes in use; 0: unknown */
	uint32_t open_fds;   /* the daemon's open fds: 0 unless PORTD_STATUS_COUNT_FDS was asked by root or the daemon's uid */
	/* The host's ephemeral range and how many of its ports are in use, at portd's last scan. */
	uint16_t eph_lo, eph_hi; /* 0, 0: not scanned */
	uint32_t eph_in_use;
};
/* The range is reserved from every process's automatic port selection (portd --reserve). */
#define PORTD_STATUS_RESERVED 0x1u
/* The host's ephemeral range is close to exhaustion. */
#define PORTD_STATUS_EPH_LOW 0x2u

/*
 * The control socket path: $PORTD_SOCKET if set and non-empty, else
 * $XDG_RUNTIME_DIR/portd.sock, else /run/portd/portd.sock. Returns the length,
 * or -ENAMETOOLONG if it does not fit in len (or in a sockaddr_un).
 */
int portd_socket_path(char *buf, size_t len);

/*
 * Connect to path (NULL: portd_socket_path()). -ENOENT / -ECONNREFUSED: no
 * daemon there; -EACCES: no permission on the socket; -EAGAIN: the daemon's
 * listen backlog is full (try again). Sends HELLO without waiting, so the
 * daemon's idle timeout never closes the connection; portd_recv() consumes
 * its answer, and a daemon of another protocol version makes the first call
 * fail with -PORTD_E_VERSION. A connection the daemon refuses (over a
 * connection limit, or out of fds) connects all the same and fails at the
 * first call with -ECONNRESET. Because of HELLO, portd_fd() is readable soon
 * after connecting: an event loop should call portd_recv() when it is.
 */
int portd_connect(const char *path, struct portd **out);
/* Close the connection. Leases tied to this process stay until it exits. Accepts NULL. */
void portd_disconnect(struct portd *p);

/*
 * Synchronous calls; timeout_ms < 0 waits forever, 0 takes only a reply that
 * is already there. -ETIMEDOUT when it runs out. Outputs are written only on
 * success. Invalid arguments give -EINVAL without a request being sent.
 * portd_lease() gives -PORTD_E_PROTO if the daemon grants something other
 * than what was asked (count, transport, port, PORTD_FLAG_FD).
 */
int portd_lease(struct portd *p, const struct portd_lease_opts *o, struct portd_lease *out, int timeout_ms);
int portd_renew(struct portd *p, uint64_t id, uint32_t ttl, uint32_t *granted, int timeout_ms);
int portd_release(struct portd *p, uint64_t id, int timeout_ms);
/* Release the lease holding port (transport 0 = either); *id (may be NULL) gets its id. */
int portd_release_port(struct portd *p, uint16_t port, uint8_t transport, uint64_t *id, int timeout_ms);
/*
 * All the leases the caller may see (root: all), in ascending id order, over
 * as many LIST pages as it takes within one timeout. *out is malloc'ed:
 * free() it (NULL when the count is 0). Returns the count.
 */
int portd_list(struct portd *p, struct portd_lease_info **out, int timeout_ms);
int portd_status(struct portd *p, struct portd_status *out, int timeout_ms);
/*
 * portd_status() with flags: PORTD_STATUS_COUNT_FDS also counts the daemon's
 * open fds (for root and the daemon's own uid; others get 0). The daemon reads
 * /proc/self/fd for it, about a microsecond per fd, serving no one meanwhile:
 * 12 ms with 15,000 leases held. Unknown flags: -EINVAL.
 */
#define PORTD_STATUS_COUNT_FDS 0x1u
int portd_status_flags(struct portd *p, uint32_t flags, struct portd_status *out, int timeout_ms);

/* Close every fd a lease reply handed over and set nfds to 0. */
void portd_lease_close_fds(struct portd_lease *l);

/*
 * Asynchronous pieces. portd_send_*() send one request without waiting and
 * set *req_id; they return -EAGAIN if the socket buffer is full (wait until
 * portd_fd() is writable). portd_recv() reads one waiting reply without
 * blocking: -EAGAIN if none is there yet. Replies come in request order.
 */
int portd_fd(const struct portd *p);
int portd_send_lease(struct portd *p, const struct portd_lease_opts *o, uint32_t *req_id);
int portd_send_renew(struct portd *p, uint64_t id, uint32_t ttl, uint32_t *req_id);
int portd_send_release(struct portd *p, uint64_t id, uint16_t port, uint8_t transport, uint32_t *req_id);
int portd_send_list(struct portd *p, uint64_t after_id, uint32_t *req_id);
int portd_send_status(struct portd *p, uint32_t *req_id);
int portd_send_status_flags(struct portd *p, uint32_t flags, uint32_t *req_id);

struct portd_reply {
	uint32_t req_id;
	int type;           /* PORTD_REPLY_* */
	int error;          /* 0, or the negative error the daemon answered */
	uint32_t detail;    /* the daemon's detail for error (a limit, an errno, a version) */
	union {
		struct portd_lease lease;   /* PORTD_REPLY_LEASE */
		uint32_t ttl;               /* PORTD_REPLY_RENEW */
		uint64_t released_id;       /* PORTD_REPLY_RELEASE */
		struct portd_status status; /* PORTD_REPLY_STATUS */
		struct {                    /* PORTD_REPLY_LIST */
			struct portd_lease_info *leases; /* malloc'ed: free() it */
			size_t count;
			bool more;  /* ask again with after_id = the last id */
		} list;
	} u;
};
#define PORTD_REPLY_LEASE 1
#define PORTD_REPLY_RENEW 2
#define PORTD_REPLY_RELEASE 3
#define PORTD_REPLY_LIST 4
#define PORTD_REPLY_STATUS 5

/*
 * Receive one reply. Returns 0 with *r filled (check r->error), -EAGAIN if no
 * reply is waiting, -PORTD_E_PROTO if the daemon sent something this library
 * cannot read (any fds it carried are closed), -ECONNRESET if the daemon hung
 * up. A daemon speaking another protocol version answers with r->error =
 * -PORTD_E_VERSION and r->detail = its version. An OK reply owns resources:
 * close r->u.lease's fds (portd_lease_close_fds()), free() r->u.list.leases.
 */
int portd_recv(struct portd *p, struct portd_reply *r);

/*
 * The detail of the last reply received: for an error, the daemon's detail (a
 * limit, an errno, its protocol version); 0 after an OK reply.
 */
uint32_t portd_detail(const struct portd *p);

/*
 * A message for any error this library returns (negative or positive). Never
 * NULL; a constant string that stays valid. Thread-safe on glibc (2.32+); on
 * other C libraries, errnos without a message of their own here come from
 * strerror(), whose buffer a later strerror() call may overwrite.
 */
const char *portd_strerror(int err);

/* This library's version, e.g. "0.1.0". */
const char *portd_version(void);

#ifdef __cplusplus
}
#endif
#endif
