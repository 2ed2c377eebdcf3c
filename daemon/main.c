/*
 * portd: reserve TCP/UDP ports by holding bound sockets, and lease them to
 * clients over a Unix socket. Options, limits and the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
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
#include <systemd/sd-daemon.h>

#include "config.h"
#include "hold.h"
#include "hostwatch.h"
#include "log.h"
#include "notify.h"
#include "portserver.h"
#include "reserve.h"
#include "server.h"
#include "service.h"
#include "sockpath.h"

struct options {
	char socket[108];
	char state[4096];
	char portserver[109]; /* --portserver ADDRESS, "" if off */
	mode_t socket_mode;
	gid_t socket_gid;
	struct service_config svc;
	struct server_limits conns;
	int ready_fd;
	uint32_t host_scan_s; /* seconds between scans of the host's ephemeral ports */
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
		"      --max-leases-per-uid N  live leases of one user, a lease of several ports\n"
		"                              counting once per port (default 4096)\n"
		"      --max-connections N     open client connections (default 2048)\n"
		"      --max-connections-per-uid N\n"
		"                              open client connections of one user (default 512:\n"
		"                              a test runner's hundreds of workers, each with its\n"
		"                              connection, and room for three more such users)\n"
		"      --host-scan SECONDS     how often to count the host's ephemeral ports in use\n"
		"                              (default 10)\n"
		"      --idle-timeout SECONDS  close a connection that sends no request within this\n"
		"                              long of connecting (default 10; 0: never)\n"
		"      --state-file PATH       where leases are saved on exit and restored from at start\n"
		"                              (default: $RUNTIME_DIRECTORY/portd.state under systemd,\n"
		"                              else the socket path with .state appended)\n"
		"      --portserver[=ADDRESS]  also serve portpicker's portserver protocol at ADDRESS\n"
		"                              (default %s; @NAME is abstract, else a\n"
		"                              socket file with --socket-mode/--socket-group): a pid\n"
		"                              line gets a port reserved until that process exits\n"
		"      --ready-fd FD           write \"READY=1\\n\" to FD and close it once serving\n"
		"  -v, --verbose               log every lease event\n"
		"  -h, --help                  show this help\n"
		"  -V, --version               show the version\n",
		PORTD_SYSTEM_SOCKET, PORTSERVER_DEFAULT_ADDRESS);
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
	enum { O_MODE = 256, O_GROUP, O_QUAR, O_DTTL, O_MTTL, O_MAXL, O_MAXU, O_MAXC, O_MAXCU, O_IDLE, O_HOST, O_READY,
	       O_RESERVE, O_STATE, O_PORTSERVER };
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
		{ "max-connections-per-uid", required_argument, NULL, O_MAXCU },
		{ "idle-timeout", required_argument, NULL, O_IDLE },
		{ "host-scan", required_argument, NULL, O_HOST },
		{ "ready-fd", required_argument, NULL, O_READY },
		{ "state-file", required_argument, NULL, O_STATE },
		{ "portserver", optional_argument, NULL, O_PORTSERVER },
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
			if (parse_u32(optarg, 1, 1000000, &o->conns.max_conns, 10) < 0)
				return bad("--max-connections", optarg, "a number from 1 to 1000000");
			break;
		case O_MAXCU:
			if (parse_u32(optarg, 1, 1000000, &o->conns.max_per_uid, 10) < 0)
				return bad("--max-connections-per-uid", optarg, "a number from 1 to 1000000");
			break;
		case O_IDLE:
			if (parse_u32(optarg, 0, 86400, &v, 10) < 0)
				return bad("--idle-timeout", optarg, "seconds, 0 to 86400");
			o->conns.idle_timeout_ms = v * 1000;
			break;
		case O_HOST:
			if (parse_u32(optarg, 1, 86400, &o->host_scan_s, 10) < 0)
				return bad("--host-scan", optarg, "seconds, 1 to 86400");
			break;
		case O_STATE:
			if (!*optarg || strlen(optarg) >= sizeof(o->state))
				return bad("--state-file", optarg, "a path");
			strcpy(o->state, optarg);
			break;
		case O_PORTSERVER:
			/* portserver's own spelling, --portserver ADDRESS, works too: portd takes no operands. */
			if (!optarg && optind < argc && argv[optind][0] != '-')
				optarg = argv[optind++];
			if (!optarg)
				optarg = PORTSERVER_DEFAULT_ADDRESS;
			if (!*optarg || strcmp(optarg, "@") == 0 ||
			    strlen(optarg) >= sizeof(o->portserver) - (optarg[0] == '@' ? 0 : 1))
				return bad("--portserver", optarg,
					   "@NAME (abstract) or a socket path shorter than 108 bytes");
			strcpy(o->portserver, optarg);
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
	if (o->conns.max_per_uid > o->conns.max_conns)
		o->conns.max_per_uid = o->conns.max_conns;
	if (!o->socket[0] && sockpath_default(o->socket, sizeof(o->socket)) < 0) {
		fprintf(stderr, "portd: the default socket path is too long: use --socket\n");
		return -1;
	}
	if (!o->state[0]) {
		const char *rt = getenv("RUNTIME_DIRECTORY"); /* set by systemd's RuntimeDirectory= */
		int n;

		if (rt && *rt)
			n = snprintf(o->state, sizeof(o->state), "%.*s/portd.state",
				     (int)strcspn(rt, ":"), rt);
		else
			n = snprintf(o->state, sizeof(o->state), "%s.state", o->socket);
		if (n < 0 || (size_t)n >= sizeof(o->state)) {
			fprintf(stderr, "portd: the default state file path is too long: use --state-file\n");
			return -1;
		}
	}
	return 0;
}

/*
 * Sockets passed by systemd: the control socket (named "control", or else the
 * first listening SOCK_SEQPACKET socket) and the lease sockets kept in the FD
 * store over a restart (named "lease"). Anything else is closed.
 */
struct activation {
	int control;
	int portserver; /* named "portserver": serve portpicker's protocol on it */
	int *stored;
	size_t nstored;
};

static int take_activation(struct activation *a)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	a->control = -1;
	a->portserver = -1;
	a->stored = NULL;
	a->nstored = 0;
	if (n <= 0)
		return n;
	a->stored = calloc((size_t)n, sizeof(int));
	if (!a->stored)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "";

		if (strcmp(name, NOTIFY_LEASE_FDNAME) == 0) {
			a->stored[a->nstored++] = fd;
		} else if (a->portserver < 0 && strcmp(name, "portserver") == 0 &&
			   sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
			a->portserver = fd;
		} else if (a->control < 0 && (strcmp(name, "control") == 0 ||
					      sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0)) {
			a->control = fd;
		} else {
			log_warn("closing unexpected fd %d (%s) passed by the service manager", fd, name);
			close(fd);
		}
		free(names ? names[i] : NULL);
	}
	free(names);
	/* Passed fds come without CLOEXEC; portd execs nothing, but keep them private anyway. */
	if (a->control >= 0) {
		fcntl(a->control, F_SETFD, FD_CLOEXEC);
		/* The accept loop runs until EAGAIN: a blocking listener would hang the daemon. */
		fcntl(a->control, F_SETFL, fcntl(a->control, F_GETFL) | O_NONBLOCK);
	}
	if (a->portserver >= 0) {
		fcntl(a->portserver, F_SETFD, FD_CLOEXEC);
		/* Its accept loop runs until EAGAIN too. */
		fcntl(a->portserver, F_SETFL, fcntl(a->portserver, F_GETFL) | O_NONBLOCK);
	}
	for (size_t i = 0; i < a->nstored; i++)
		fcntl(a->stored[i], F_SETFD, FD_CLOEXEC);
	return n;
}

/*
 * Every lease holds a socket, every connection and every connection waiting
 * on the portserver socket one fd, the server keeps a reserve for leases, and
 * a little more covers the rest (each process with tied leases costs a
 * pidfd, shared by its leases): ask for the hard limit.
 */
static void raise_nofile(const struct options *o)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)o->svc.limits.max_leases + o->conns.max_conns + PORTSERVER_CONNS_MAX +
		      SERVER_FD_RESERVE + 64;

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
 * In kernel mode, past this many held ports portd stops asking bind(0) (whose
 * search slows to milliseconds with thousands held, DESIGN.md) and picks from
 * the ephemeral range itself.
 */
#define KERNEL_EXPLICIT_AFTER 4096

static void setup_kernel_source(struct options *o)
{
	unsigned lo = 0, hi = 0;
	FILE *f;

	if (o->svc.ports.lo)
		return;
	f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = hi = 0;
		fclose(f);
	}
	if (lo < 1 || hi > 65535 || lo > hi) {
		log_warn("cannot read net.ipv4.ip_local_port_range: bind(0) stays in use at any scale");
		return;
	}
	o->svc.ports.explicit_after = KERNEL_EXPLICIT_AFTER;
	o->svc.ports.eph_lo = (uint16_t)lo;
	o->svc.ports.eph_hi = (uint16_t)hi;
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
	if (reserve_read(RESERVE_SYSCTL, &cur) == 0 && portset_covers(&cur, lo, hi)) {
		o->svc.reserved = true;
		log_info("ports %u-%u are reserved from automatic selection by the host", lo, hi);
	}
	return 0;
}

struct status_ctx {
	struct service *svc;
	struct notify *notify;
};

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
	struct status_ctx *sc = arg;
	char line[256];

	service_summary(sc->svc, line, sizeof(line));
	notify_status(sc->notify, line);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopbreak(arg);
}

/* Everything the running daemon owns. */
struct daemon {
	struct options o;
	struct event_base *base;
	struct event *sigterm, *sigint, *status_timer;
	struct service *svc;
	struct server *srv;
	struct portserver *ps;  /* --portserver, or a socket named "portserver" from systemd */
	struct notify *notify;
	struct hostwatch *host;
	struct status_ctx status;
	struct activation act;
	struct reservation res;
	bool reserved;     /* we added the range to the sysctl: remove it at exit */
	bool activated;    /* the control socket came from systemd: leave its file alone */
};

/* The control socket: from systemd, or made here. Returns the fd or -1 (logged). */
static int open_control(struct daemon *d)
{
	struct options *o = &d->o;
	int fd;

	if (d->act.control >= 0) {
		d->activated = true;
		fd = d->act.control;
		d->act.control = -1;
		return fd;
	}
	if (strcmp(o->socket, PORTD_SYSTEM_SOCKET) == 0 && mkdir("/run/portd", 0755) < 0 &&
	    errno != EEXIST)
		log_warn("cannot create /run/portd: %s", strerror(errno));
	fd = server_listen(o->socket, o->socket_mode, o->socket_gid);
	if (fd >= 0)
		return fd;
	if (fd == -EADDRINUSE)
		log_err("another portd is already serving %s", o->socket);
	else if (fd == -EEXIST)
		log_err("%s exists and is not a socket: remove it or use --socket", o->socket);
	else
		log_err("cannot listen on %s: %s%s", o->socket, strerror(-fd),
			fd == -EACCES || fd == -ENOENT ?
			" (use --socket PATH or set PORTD_SOCKET to a writable place)" : "");
	return -1;
}

/*
 * portpicker's portserver socket: from systemd (named "portserver"), or made
 * here for --portserver. Returns 0 (also when there is none) or -1 (logged).
 */
static int open_portserver(struct daemon *d)
{
	const char *addr = d->o.portserver;
	bool file = addr[0] && addr[0] != '@', passed = d->act.portserver >= 0;
	int fd = d->act.portserver;

	d->act.portserver = -1;
	if (fd < 0 && !addr[0])
		return 0;
	if (fd < 0) {
		fd = portserver_listen(addr, d->o.socket_mode, d->o.socket_gid);
		if (fd == -EADDRINUSE) {
			log_err("--portserver %s: another portserver is already listening there "
				"(stop it, or give portd another address)", addr);
			return -1;
		}
		if (fd < 0) {
			log_err("--portserver %s: %s", addr, fd == -EEXIST ? "exists and is not a socket"
									   : strerror(-fd));
			return -1;
		}
	} else {
		file = false; /* systemd's socket: its file is systemd's to remove */
	}
	d->ps = portserver_new(d->base, d->svc, fd, file ? addr : NULL);
	if (!d->ps) {
		if (file)
			unlink(addr);
		log_err("out of memory while starting");
		return -1;
	}
	if (passed)
		log_info("serving portpicker's portserver protocol on the socket passed by systemd");
	else
		log_info("serving portpicker's portserver protocol: PORTSERVER_ADDRESS=%s", addr);
	return 0;
}

/* Leases saved by the previous run, with the sockets systemd kept for them. */
static void restore_leases(struct daemon *d)
{
	int r = service_restore(d->svc, d->o.state, d->act.stored, d->act.nstored);

	if (r < 0 && r != -ENOENT)
		log_warn("cannot restore leases from %s: %s", d->o.state, strerror(-r));
	if (r >= 0 && unlink(d->o.state) < 0)
		log_warn("cannot remove %s: %s (it would restore old leases after a crash)", d->o.state,
			 strerror(errno));
	/* portd holds those sockets now; copies left in the store would keep released ports bound. */
	if (d->act.nstored)
		notify_fdstore_clear(d->notify);
	free(d->act.stored);
	d->act.stored = NULL;
	d->act.nstored = 0;
}

static int daemon_start(struct daemon *d)
{
	const struct clock clk = { clock_monotonic_ms, NULL };
	const struct ports_binder binder = { hold_bind, hold_close, NULL };
	struct timeval second = { 1, 0 };
	char line[256];
	int fd;

	if (take_activation(&d->act) < 0) {
		log_err("cannot take the sockets passed by the service manager");
		return -1;
	}
	if (setup_reservation(&d->o, &d->res, &d->reserved) < 0)
		return -1;
	setup_kernel_source(&d->o);
	fd = open_control(d);
	if (fd < 0)
		return -1;
	d->base = event_base_new();
	d->svc = d->base ? service_new(d->base, &d->o.svc, &clk, &binder) : NULL;
	d->srv = d->svc ? server_new(d->base, d->svc, fd, d->activated ? NULL : d->o.socket,
				     &d->o.conns) : NULL;
	if (!d->srv) {
		if (d->svc) /* server_new() closed fd */
			fd = -1;
		if (fd >= 0) {
			close(fd);
			if (!d->activated)
				unlink(d->o.socket);
		}
		log_err("out of memory while starting");
		return -1;
	}
	d->notify = notify_new(d->base);
	d->sigterm = evsignal_new(d->base, SIGTERM, on_signal, d->base);
	d->sigint = evsignal_new(d->base, SIGINT, on_signal, d->base);
	if (!d->notify || !d->sigterm || !d->sigint || evsignal_add(d->sigterm, NULL) < 0 ||
	    evsignal_add(d->sigint, NULL) < 0) {
		log_err("out of memory while starting");
		return -1;
	}
	if (open_portserver(d) < 0)
		return -1;
	restore_leases(d);
	if (notify_enabled(d->notify)) {
		d->status = (struct status_ctx){ d->svc, d->notify };
		d->status_timer = event_new(d->base, -1, EV_PERSIST, on_status_timer, &d->status);
		if (!d->status_timer || event_add(d->status_timer, &second) < 0)
			return -1;
	}

	if (d->o.svc.ports.lo)
		log_info("portd %s serving %s; ports %u-%u chosen by portd%s", PORTD_VERSION,
			 d->activated ? "the socket passed by systemd" : d->o.socket, d->o.svc.ports.lo,
			 d->o.svc.ports.hi, d->o.svc.reserved ? " (reserved)" : "");
	else
		log_info("portd %s serving %s; ports chosen by the kernel", PORTD_VERSION,
			 d->activated ? "the socket passed by systemd" : d->o.socket);
	d->host = hostwatch_new(d->base, d->svc, d->o.host_scan_s, HOSTWATCH_LIMIT_MS);
	if (!d->host) {
		log_err("out of memory while starting");
		return -1;
	}
	service_summary(d->svc, line, sizeof(line));
	notify_ready(d->notify, line);
	if (d->o.ready_fd >= 0) {
		static const char ready[] = "READY=1\n";
		if (write(d->o.ready_fd, ready, sizeof(ready) - 1) < 0)
			log_warn("--ready-fd %d: %s", d->o.ready_fd, strerror(errno));
		close(d->o.ready_fd);
	}
	return 0;
}

/*
 * Keep the leases for the next run: under systemd the held sockets go to the
 * FD store first (the ports stay bound while no portd runs); either way the
 * table goes to the state file.
 */
static void daemon_save(struct daemon *d)
{
	int *fds = NULL;
	size_t n = 0;
	int r;

	if (!d->svc || !service_lease_count(d->svc))
		return;
	notify_stopping(d->notify);
	if (notify_enabled(d->notify) && service_held_fds(d->svc, &fds, &n) == 0 && n) {
		r = notify_fdstore(d->notify, fds, n);
		if (r < 0)
			log_warn("could not pass %zu sockets to the FD store: %s; leases will be bound "
				 "again at restart where possible", n, strerror(-r));
	}
	free(fds);
	r = service_save(d->svc, d->o.state);
	if (r < 0)
		log_err("cannot save leases to %s: %s: they end now", d->o.state, strerror(-r));
	else
		log_info("saved %zu lease(s) to %s", service_lease_count(d->svc), d->o.state);
}

static void daemon_free(struct daemon *d)
{
	if (d->ps) {
		struct portserver_stats st;

		portserver_stats(d->ps, &st);
		log_info("portserver: %" PRIu64 " ports granted, %" PRIu64 " requests refused, %" PRIu64
			 " malformed, %" PRIu64 " timed out, %" PRIu64 " closed for overload",
			 st.granted, st.refused, st.malformed, st.timeouts, st.overload);
	}
	hostwatch_free(d->host);
	portserver_free(d->ps);
	server_free(d->srv);
	service_free(d->svc);
	notify_free(d->notify);
	if (d->status_timer)
		event_free(d->status_timer);
	if (d->sigterm)
		event_free(d->sigterm);
	if (d->sigint)
		event_free(d->sigint);
	if (d->base)
		event_base_free(d->base);
	for (size_t i = 0; i < d->act.nstored; i++)
		close(d->act.stored[i]);
	free(d->act.stored);
	if (d->act.control >= 0)
		close(d->act.control);
	if (d->act.portserver >= 0)
		close(d->act.portserver);
	if (d->reserved) {
		int err = reserve_remove(RESERVE_SYSCTL, &d->res);
		if (err < 0)
			log_warn("could not remove ports %u-%u from %s: %s", d->res.lo, d->res.hi,
				 RESERVE_SYSCTL, strerror(-err));
	}
}

int main(int argc, char **argv)
{
	static struct daemon d = {
		.o = {
			.socket_mode = 0600,
			.socket_gid = (gid_t)-1,
			.svc = {
				.limits = { .max_leases = 16384, .max_per_uid = 4096,
					    .default_ttl_s = 300, .max_ttl_s = 86400 },
				.ports = { .lo = 0, .hi = 0, .quarantine_ms = 60000 },
			},
			.conns = { .max_conns = 2048, .max_per_uid = 512, .idle_timeout_ms = 10000 },
			.ready_fd = -1,
			.host_scan_s = HOSTWATCH_INTERVAL_S,
		},
		.act = { .control = -1 },
	};
	int rc = 1;

	if (parse_options(argc, argv, &d.o) < 0)
		return 2;
	log_init();
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(&d.o);
	if (daemon_start(&d) == 0) {
		rc = event_base_dispatch(d.base) < 0 ? 1 : 0;
		daemon_save(&d);
	}
	daemon_free(&d);
	return rc;
}
