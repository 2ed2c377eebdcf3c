/*
 * portd: reserve TCP/UDP ports by holding bound sockets, and lease them to
 * clients over a Unix socket. Options, limits and the event loop.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "hold.h"
#include "log.h"
#include "reserve.h"
#include "server.h"
#include "service.h"
#include "sockpath.h"

struct options {
	char socket[108];
	mode_t socket_mode;
	gid_t socket_gid;
	struct service_config svc;
	uint32_t max_conns;
	int ready_fd;
	bool reserve;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: portd [OPTIONS]\n"
		"Reserve TCP ports by holding bound sockets and lease them to clients.\n"
		"Runs in the foreground and logs to stderr.\n"
		"\n"
		"  -s, --socket PATH           control socket (default: $PORTD_SOCKET, else\n"
		"                              $XDG_RUNTIME_DIR/portd.sock, else %s)\n"
		"      --socket-mode MODE      permissions of the socket file, octal (default 0600)\n"
		"      --socket-group GROUP    group of the socket file (default: unchanged)\n"
		"  -r, --range LO-HI           hand out ports from LO-HI, chosen by portd\n"
		"                              (default: the kernel chooses, as for bind to port 0)\n"
		"      --reserve               add the range to net.ipv4.ip_local_reserved_ports while\n"
		"                              running, so no other process's bind(0) or connect()\n"
		"                              gets a port of it (needs root; removed again on exit)\n"
		"      --quarantine SECONDS    a freed port is not handed out again for this long\n"
		"                              (default 60; TIME_WAIT lasts about 60 s)\n"
		"      --default-ttl SECONDS   lease time when a client asks for none (default 300)\n"
		"      --max-ttl SECONDS       longest lease time a client may ask for (default 86400)\n"
		"      --max-leases N          live leases in all (default 16384)\n"
		"      --max-leases-per-uid N  live leases of one user (default 4096)\n"
		"      --max-connections N     open client connections (default 1024)\n"
		"      --ready-fd FD           write \"READY=1\\n\" to FD and close it once serving\n"
		"  -v, --verbose               log every lease event\n"
		"  -h, --help                  show this help\n"
		"  -V, --version               show the version\n",
		PORTD_SYSTEM_SOCKET);
}

static int parse_u32(const char *s, unsigned long min, unsigned long max, uint32_t *out, int base)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, base);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_range(const char *s, uint16_t *lo, uint16_t *hi)
{
	char buf[32], *dash;
	uint32_t a, b;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (!dash)
		return -EINVAL;
	*dash = '\0';
	if (parse_u32(buf, 1, 65535, &a, 10) < 0 || parse_u32(dash + 1, 1, 65535, &b, 10) < 0 || a > b)
		return -EINVAL;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

static int bad(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, "portd: invalid %s '%s': expected %s\n", opt, val, want);
	return -1;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum { O_MODE = 256, O_GROUP, O_QUAR, O_DTTL, O_MTTL, O_MAXL, O_MAXU, O_MAXC, O_READY, O_RESERVE };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "socket-mode", required_argument, NULL, O_MODE },
		{ "socket-group", required_argument, NULL, O_GROUP },
		{ "range", required_argument, NULL, 'r' },
		{ "reserve", no_argument, NULL, O_RESERVE },
		{ "quarantine", required_argument, NULL, O_QUAR },
		{ "default-ttl", required_argument, NULL, O_DTTL },
		{ "max-ttl", required_argument, NULL, O_MTTL },
		{ "max-leases", required_argument, NULL, O_MAXL },
		{ "max-leases-per-uid", required_argument, NULL, O_MAXU },
		{ "max-connections", required_argument, NULL, O_MAXC },
		{ "ready-fd", required_argument, NULL, O_READY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	uint32_t v;
	int c;

	while ((c = getopt_long(argc, argv, "s:r:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (strlen(optarg) >= sizeof(o->socket))
				return bad("--socket", optarg, "a path shorter than 108 bytes");
			strcpy(o->socket, optarg);
			break;
		case O_MODE:
			if (parse_u32(optarg, 0, 0777, &v, 8) < 0)
				return bad("--socket-mode", optarg, "an octal mode such as 0660");
			o->socket_mode = (mode_t)v;
			break;
		case O_GROUP: {
			struct group *g = getgrnam(optarg);
			if (g)
				o->socket_gid = g->gr_gid;
			else if (parse_u32(optarg, 0, UINT32_MAX - 1, &v, 10) == 0)
				o->socket_gid = (gid_t)v;
			else
				return bad("--socket-group", optarg, "a group name or number");
			break;
		}
		case 'r':
			if (parse_range(optarg, &o->svc.ports.lo, &o->svc.ports.hi) < 0)
				return bad("--range", optarg, "LO-HI with 1 <= LO <= HI <= 65535");
			break;
		case O_RESERVE:
			o->reserve = true;
			break;
		case O_QUAR:
			if (parse_u32(optarg, 0, 86400, &v, 10) < 0)
				return bad("--quarantine", optarg, "seconds, 0 to 86400");
			o->svc.ports.quarantine_ms = v * 1000;
			break;
		case O_DTTL:
			if (parse_u32(optarg, 1, UINT32_MAX / 1000, &o->svc.limits.default_ttl_s, 10) < 0)
				return bad("--default-ttl", optarg, "seconds, at least 1");
			break;
		case O_MTTL:
			if (parse_u32(optarg, 1, UINT32_MAX / 1000, &o->svc.limits.max_ttl_s, 10) < 0)
				return bad("--max-ttl", optarg, "seconds, at least 1");
			break;
		case O_MAXL:
			if (parse_u32(optarg, 1, 1000000, &o->svc.limits.max_leases, 10) < 0)
				return bad("--max-leases", optarg, "a number from 1 to 1000000");
			break;
		case O_MAXU:
			if (parse_u32(optarg, 1, 1000000, &o->svc.limits.max_per_uid, 10) < 0)
				return bad("--max-leases-per-uid", optarg, "a number from 1 to 1000000");
			break;
		case O_MAXC:
			if (parse_u32(optarg, 1, 1000000, &o->max_conns, 10) < 0)
				return bad("--max-connections", optarg, "a number from 1 to 1000000");
			break;
		case O_READY:
			if (parse_u32(optarg, 0, INT_MAX, &v, 10) < 0)
				return bad("--ready-fd", optarg, "a file descriptor number");
			o->ready_fd = (int)v;
			break;
		case 'v':
			log_set_level(LOG_LVL_DEBUG);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("portd %s (protocol %d)\n", PORTD_VERSION, PORTD_PROTO_VERSION);
			exit(0);
		default:
			fprintf(stderr, "Try 'portd --help'.\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "portd: unexpected argument '%s'. Try 'portd --help'.\n", argv[optind]);
		return -1;
	}
	if (o->svc.limits.default_ttl_s > o->svc.limits.max_ttl_s) {
		fprintf(stderr, "portd: --default-ttl (%u) is above --max-ttl (%u)\n",
			o->svc.limits.default_ttl_s, o->svc.limits.max_ttl_s);
		return -1;
	}
	if (o->reserve && !o->svc.ports.lo) {
		fprintf(stderr, "portd: --reserve needs --range LO-HI: it reserves that range\n");
		return -1;
	}
	if (o->svc.limits.max_per_uid > o->svc.limits.max_leases)
		o->svc.limits.max_per_uid = o->svc.limits.max_leases;
	if (!o->socket[0] && sockpath_default(o->socket, sizeof(o->socket)) < 0) {
		fprintf(stderr, "portd: the default socket path is too long: use --socket\n");
		return -1;
	}
	return 0;
}

/* Every lease holds a socket and every connection one fd: ask for the hard limit. */
static void raise_nofile(const struct options *o)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)o->svc.limits.max_leases + o->max_conns + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need)
		log_warn("open-files limit %llu is below what --max-leases and --max-connections "
			 "may need (%llu): raise it (ulimit -n, LimitNOFILE=) or lower those limits",
			 (unsigned long long)rl.rlim_cur, (unsigned long long)need);
}

/*
 * Reserve the range (--reserve), or notice that the host reserved it already
 * (the sysctl.d drop-in): then number-only UDP leases are safe.
 */
static int setup_reservation(struct options *o, struct reservation *res, bool *added)
{
	static struct portset cur;
	uint16_t lo = o->svc.ports.lo, hi = o->svc.ports.hi;
	int r;

	*added = false;
	if (!lo)
		return 0;
	if (o->reserve) {
		r = reserve_add(RESERVE_SYSCTL, lo, hi, res);
		if (r < 0) {
			log_err("--reserve: cannot write %s: %s. Run portd as root, or reserve the range "
				"with a sysctl.d drop-in (systemd/portd-reserved-ports.conf) and drop "
				"--reserve", RESERVE_SYSCTL, strerror(-r));
			return r;
		}
		*added = true;
		o->svc.reserved = true;
		log_info("reserved ports %u-%u from automatic selection (%s)", lo, hi, RESERVE_SYSCTL);
		return 0;
	}
	if (reserve_read(RESERVE_SYSCTL, &cur) == 0 && reserve_covers(&cur, lo, hi)) {
		o->svc.reserved = true;
		log_info("ports %u-%u are reserved from automatic selection by the host", lo, hi);
	}
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
	struct options o = {
		.socket_mode = 0600,
		.socket_gid = (gid_t)-1,
		.svc = {
			.limits = { .max_leases = 16384, .max_per_uid = 4096,
				    .default_ttl_s = 300, .max_ttl_s = 86400 },
			.ports = { .lo = 0, .hi = 0, .quarantine_ms = 60000 },
		},
		.max_conns = 1024,
		.ready_fd = -1,
	};
	const struct clock clk = { clock_monotonic_ms, NULL };
	const struct ports_binder binder = { hold_bind, hold_close, NULL };
	struct event_base *base = NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	struct service *svc = NULL;
	struct server *srv = NULL;
	static struct reservation res;
	bool reserved = false;
	int fd, rc = 1;

	if (parse_options(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(&o);
	if (setup_reservation(&o, &res, &reserved) < 0)
		return 1;

	if (strcmp(o.socket, PORTD_SYSTEM_SOCKET) == 0 && mkdir("/run/portd", 0755) < 0 &&
	    errno != EEXIST)
		log_warn("cannot create /run/portd: %s", strerror(errno));
	fd = server_listen(o.socket, o.socket_mode, o.socket_gid);
	if (fd < 0) {
		if (fd == -EADDRINUSE)
			log_err("another portd is already serving %s", o.socket);
		else if (fd == -EEXIST)
			log_err("%s exists and is not a socket: remove it or use --socket", o.socket);
		else
			log_err("cannot listen on %s: %s%s", o.socket, strerror(-fd),
				fd == -EACCES || fd == -ENOENT ?
				" (use --socket PATH or set PORTD_SOCKET to a writable place)" : "");
		goto out;
	}

	base = event_base_new();
	if (!base) {
		close(fd);
		log_err("cannot create the event loop");
		goto out;
	}
	svc = service_new(base, &o.svc, &clk, &binder);
	srv = svc ? server_new(base, svc, fd, o.socket, o.max_conns) : NULL;
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	if (!svc || !srv || !sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0) {
		if (!srv) {
			close(fd);
			unlink(o.socket);
		}
		log_err("out of memory while starting");
		goto out;
	}

	if (o.svc.ports.lo)
		log_info("portd %s serving %s; ports %u-%u chosen by portd%s", PORTD_VERSION, o.socket,
			 o.svc.ports.lo, o.svc.ports.hi, o.svc.reserved ? " (reserved)" : "");
	else
		log_info("portd %s serving %s; ports chosen by the kernel", PORTD_VERSION, o.socket);
	if (o.ready_fd >= 0) {
		static const char ready[] = "READY=1\n";
		if (write(o.ready_fd, ready, sizeof(ready) - 1) < 0)
			log_warn("--ready-fd %d: %s", o.ready_fd, strerror(errno));
		close(o.ready_fd);
	}

	rc = event_base_dispatch(base) < 0 ? 1 : 0;
out:
	server_free(srv);
	service_free(svc);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (base)
		event_base_free(base);
	if (reserved) {
		int err = reserve_remove(RESERVE_SYSCTL, &res);
		if (err < 0)
			log_warn("could not remove ports %u-%u from %s: %s", res.lo, res.hi,
				 RESERVE_SYSCTL, strerror(-err));
	}
	return rc;
}
