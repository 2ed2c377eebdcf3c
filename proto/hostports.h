/*
 * The host's ephemeral ports: the range the kernel picks from for bind(0)
 * and connect() (net.ipv4.ip_local_port_range), the ports reserved out of
 * it (net.ipv4.ip_local_reserved_ports), and how many of the others are in
 * use, read from the kernel's socket tables through NETLINK_SOCK_DIAG (one
 * inet_diag dump each for TCP and UDP over IPv4 and IPv6).
 *
 * A port counts as in use when at least one TCP or UDP socket has it as its
 * local port: a port used by several sockets counts once in each state it
 * is seen in and once in in_use. Ports outside the range and reserved ports
 * are not counted: in_use out of usable is what automatic selection has
 * left. Bound TCP sockets that neither listen nor connect (portd's held
 * reservations) are seen on Linux 6.8 and later; older kernels do not dump
 * them.
 *
 * portctl calls hostports_scan(); portd runs the same scan in slices from
 * its event loop (hostports_scan_begin(), then hostports_scan_step() each
 * time the fd is readable), so that a host with many sockets cannot stall it.
 */
#ifndef PORTD_HOSTPORTS_H
#define PORTD_HOSTPORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOSTPORTS_RANGE_SYSCTL "/proc/sys/net/ipv4/ip_local_port_range"
#define HOSTPORTS_RESERVED_SYSCTL "/proc/sys/net/ipv4/ip_local_reserved_ports"

/* The range is close to exhaustion at this share of its usable ports in use... */
#define HOSTPORTS_LOW_PERCENT 80
/* ...and stays so, once it was, until use falls below this share. */
#define HOSTPORTS_RECOVER_PERCENT 75

/* What to do about a range close to exhaustion, for portctl and portd's log. */
#define HOSTPORTS_ADVICE \
	"widen net.ipv4.ip_local_port_range, set net.ipv4.tcp_tw_reuse=1 if many ports are in " \
	"TIME-WAIT, or give portd a range of its own outside it (portd --range LO-HI --reserve)"

#define HOSTPORTS_OWNERS_MAX 5

/* Scan flags. */
#define HOSTPORTS_OWNERS 0x1u /* also count the ports of each uid (owners[]) */

/* Ports held by one user's sockets. */
struct hostports_owner {
	uint32_t uid;
	uint32_t ports;
};

struct hostports {
	uint16_t lo, hi;     /* net.ipv4.ip_local_port_range */
	uint32_t size;       /* hi - lo + 1 */
	uint32_t reserved;   /* ports of lo..hi in net.ipv4.ip_local_reserved_ports */
	uint32_t usable;     /* size - reserved: what bind(0) and connect() may pick */
	uint32_t in_use;     /* usable ports with at least one socket */
	/* Usable ports with a socket in each state. */
	uint32_t tcp_listen;
	uint32_t tcp_established;
	uint32_t tcp_time_wait;
	uint32_t tcp_bound;  /* bound, neither listening nor connected */
	uint32_t tcp_other;  /* connecting, closing (FIN-WAIT, CLOSE-WAIT, ...) */
	uint32_t udp;
	uint32_t sockets;    /* sockets on usable ports */
	/*
	 * With HOSTPORTS_OWNERS: the uids holding the most usable ports, most
	 * first. A socket that belongs to no process (TIME-WAIT, a connection
	 * not yet accepted) counts for nobody.
	 */
	size_t nowners;
	struct hostports_owner owners[HOSTPORTS_OWNERS_MAX];
	/* The reserved list as the kernel prints it, "" for none; cut short with "..." if long. */
	char reserved_list[128];
};

/* Scan the host (the caller's network namespace) into *out. 0 or -errno. */
int hostports_scan(struct hostports *out, unsigned flags);

/* 100 * in_use / usable, rounded down (100 when nothing is usable). */
unsigned hostports_percent(const struct hostports *h);

/*
 * Is the range close to exhaustion? At least HOSTPORTS_LOW_PERCENT of the
 * usable ports in use; was_low (the last answer) keeps it so down to
 * HOSTPORTS_RECOVER_PERCENT, so that use hovering at the mark does not flap.
 */
bool hostports_low(const struct hostports *h, bool was_low);

/*
 * Parse ip_local_port_range text ("32768\t60999\n"). 0 or -EINVAL. (The
 * reserved list is proto/portset.h's portset_parse().)
 */
int hostports_parse_range(const char *s, uint16_t *lo, uint16_t *hi);

/* A scan in slices, for an event loop. */
struct hostports_scan;

/*
 * Read the sysctls, open a non-blocking sock_diag socket and send the first
 * dump request. *out is NULL on failure. 0 or -errno.
 */
int hostports_scan_begin(unsigned flags, struct hostports_scan **out);
/* The socket to wait on: hostports_scan_step() has more to read once it is readable. */
int hostports_scan_fd(const struct hostports_scan *s);
/*
 * Read at most max_reads datagrams (each up to 32 KiB: a few hundred
 * sockets). Returns 1 if the scan goes on (wait until the fd is readable),
 * 0 once it is complete, or -errno.
 */
int hostports_scan_step(struct hostports_scan *s, int max_reads);
/* The counts of a complete scan. */
void hostports_scan_result(struct hostports_scan *s, struct hostports *out);
/* Close the socket and free the scan. Accepts NULL. */
void hostports_scan_free(struct hostports_scan *s);

#endif
