/*
 * portctl: the command-line client of portd, on top of libportd alone.
 *
 * stdout carries only the result (a port number, or JSON with --json), so
 * that PORT=$(portctl lease) works; every message goes to stderr as
 * "portctl: ...", saying what went wrong and what to do about it. The exit
 * status tells scripts which kind of failure it was (see usage_text).
 *
 * `portctl run` is the exception: it prints nothing of its own on stdout,
 * which belongs to CMD, and once CMD has started its exit status is CMD's.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "hostports.h"
#include "portd.h"

#define DEFAULT_TIMEOUT_MS 5000

enum {
	EXIT_OK = 0,
	EXIT_REFUSED = 1,     /* the daemon answered no; or the result could not be written */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3, /* connecting failed */
	EXIT_COMM = 4,        /* protocol error, version mismatch, timeout, lost connection */
};

/* ---- options ------------------------------------------------------------- */

enum {
	OPT_SOCKET = 1u << 0,
	OPT_TIMEOUT = 1u << 1,
	OPT_HELP = 1u << 2,
	OPT_VERSION = 1u << 3,
	OPT_JSON = 1u << 4,
	OPT_TTL = 1u << 5,
	OPT_PORT = 1u << 6,
	OPT_COUNT = 1u << 7,
	OPT_CONSECUTIVE = 1u << 8,
	OPT_EXCLUDE = 1u << 9,
	OPT_TCP = 1u << 10,
	OPT_UDP = 1u << 11,
	OPT_BOTH = 1u << 12,
	OPT_PID = 1u << 13,
	OPT_LISTEN = 1u << 14,
	OPT_NO_LISTEN = 1u << 15,
	OPT_FDS = 1u << 16,
};
#define OPT_GLOBAL (OPT_SOCKET | OPT_TIMEOUT | OPT_HELP | OPT_VERSION)
#define OPT_TRANSPORT (OPT_TCP | OPT_UDP | OPT_BOTH)
/* What shapes a lease: lease and run take these. */
#define OPT_LEASE_SHAPE (OPT_TTL | OPT_COUNT | OPT_CONSECUTIVE | OPT_PORT | OPT_EXCLUDE | OPT_TRANSPORT)

struct optdef {
	const char *name;
	unsigned bit;
	const char *arg; /* the value's name, NULL for a flag */
};

static const struct optdef optdefs[] = {
	{ "socket", OPT_SOCKET, "PATH" },
	{ "timeout", OPT_TIMEOUT, "MS" },
	{ "help", OPT_HELP, NULL },
	{ "version", OPT_VERSION, NULL },
	{ "json", OPT_JSON, NULL },
	{ "ttl", OPT_TTL, "SECONDS" },
	{ "port", OPT_PORT, "PORT" },
	{ "count", OPT_COUNT, "N" },
	{ "consecutive", OPT_CONSECUTIVE, NULL },
	{ "exclude", OPT_EXCLUDE, "SPEC" },
	{ "tcp", OPT_TCP, NULL },
	{ "udp", OPT_UDP, NULL },
	{ "both", OPT_BOTH, NULL },
	{ "pid", OPT_PID, "PID|parent" },
	{ "listen", OPT_LISTEN, NULL },
	{ "no-listen", OPT_NO_LISTEN, NULL },
	{ "fds", OPT_FDS, NULL },
};

#define MAX_ARGS 4

struct cli {
	const struct command *cmd;
	unsigned seen;       /* OPT_* given */
	const char *socket;  /* --socket, else NULL */
	char path[256];      /* the socket path in use, for messages */
	int timeout_ms;
	uint32_t ttl;        /* 0: the daemon's default */
	uint16_t port;
	bool json;
	const char *args[MAX_ARGS];
	size_t nargs;
	uint64_t id;         /* the lease id argument, when there is one */
	uint16_t count;      /* ports per lease, 1..PORTD_MAX_PORTS */
	uint8_t transport;   /* PORTD_TRANSPORT_*; 0 until chosen */
	pid_t pid;           /* --pid: end the lease when this process exits; 0: not given */
	bool pid_parent;     /* --pid parent */
	struct portd_range exclude[PORTD_MAX_EXCLUDE];
	size_t nexclude;
	char **cmd_argv;     /* run: CMD and its ARGS, NULL-terminated (from argv) */
	int cmd_argc;
	struct portd *conn;  /* the connection; run may replace it after losing it */
	int conn_err;        /* ports: why there is no connection (p is NULL), else 0 */
	void (*saved_sigpipe)(int); /* SIGPIPE's disposition when portctl started, for CMD */
};

struct command {
	const char *name;
	int (*run)(struct cli *c, struct portd *p);
	unsigned opts;       /* OPT_* allowed besides OPT_GLOBAL */
	size_t min_args, max_args;
	const char *help;
};

static int cmd_lease(struct cli *c, struct portd *p);
static int cmd_run(struct cli *c, struct portd *p);
static int cmd_renew(struct cli *c, struct portd *p);
static int cmd_release(struct cli *c, struct portd *p);
static int cmd_list(struct cli *c, struct portd *p);
static int cmd_status(struct cli *c, struct portd *p);
static int cmd_ports(struct cli *c, struct portd *p);

static const char usage_text[] =
	"Usage: portctl [--socket PATH] [--timeout MS] COMMAND [ARGS]\n"
	"\n"
	"Lease free ports from portd, which keeps each leased port reserved so that no\n"
	"other process is handed it, until the lease is released or its ttl runs out.\n"
	"\n"
	"Commands:\n"
	"  lease [OPTIONS] [--json]             lease free ports; prints the port numbers\n"
	"  run [OPTIONS] -- CMD [ARGS...]       run CMD with leased sockets (fds 3, 4, ...)\n"
	"                                       and {port} in ARGS replaced by the port\n"
	"  renew ID [--ttl SECONDS] [--json]    extend lease ID\n"
	"  release ID | --port PORT [--json]    end a lease, by id or by port\n"
	"  list [--json]                        show your leases (root: all leases)\n"
	"  status [--fds] [--json]              show portd's state and limits\n"
	"  ports [--json]                       show the host's ephemeral ports: how many are\n"
	"                                       in use, by whom, and how many portd holds\n"
	"  help [COMMAND]                       show this help, or a command's (also COMMAND --help)\n"
	"\n"
	"Lease OPTIONS (lease and run; see `portctl help lease`):\n"
	"  --ttl SECONDS, --count N, --consecutive, --port P, --exclude SPEC,\n"
	"  --tcp | --udp | --both; lease only: --pid PID|parent; run only: --listen | --no-listen\n"
	"\n"
	"Options (before or after COMMAND):\n"
	"  --socket PATH   portd's control socket (default: $PORTD_SOCKET if set, else\n"
	"                  $XDG_RUNTIME_DIR/portd.sock, else /run/portd/portd.sock)\n"
	"  --timeout MS    how long to wait for portd, in milliseconds (default 5000)\n"
	"  --json          print the result as JSON\n"
	"  -h, --help      show help and exit\n"
	"  --version       show the versions of portctl and libportd and exit\n"
	"\n"
	"Examples:\n"
	"  PORT=$(portctl lease --ttl 600) && redis-server --port \"$PORT\"\n"
	"  portctl run -- redis-server --port {port}\n"
	"  portctl run -- /lib/systemd/systemd-socket-proxyd 127.0.0.1:8080\n"
	"\n"
	"Exit status:\n"
	"  0  success\n"
	"  1  portd refused the request (no such lease, lease limit, ttl limit, no free\n"
	"     port, ...), or the result could not be written\n"
	"  2  usage error\n"
	"  3  portd not reachable (no daemon at the socket, permission denied, ...)\n"
	"  4  protocol error, version mismatch, timeout, or portd closed the connection\n"
	"  ports: 0 whenever it shows the host's ports, with or without a portd (it\n"
	"  says whether one runs); 1 if the host's sockets cannot be read\n"
	"  run: once CMD has started, CMD's exit status (128+N if a signal N killed it);\n"
	"  126 if CMD could not be executed, 127 if it was not found\n";

#define LEASE_SHAPE_HELP \
	"  --ttl SECONDS     how long the lease lasts (default: portd's default ttl,\n" \
	"                    see `portctl status`)\n" \
	"  --count N         lease N ports at once, 1 to 16: all or none\n" \
	"  --consecutive     the N ports are adjacent numbers (P, P+1, ...)\n" \
	"  --port P          exactly port P (with --count N: needs --consecutive, and\n" \
	"                    leases P to P+N-1); refused if P is in use or in reuse\n" \
	"                    quarantine\n" \
	"  --exclude SPEC    never lease these ports: SPEC is a comma-separated list of\n" \
	"                    ports and LO-HI ranges (\"8080,9000-9099\"); may repeat, at\n" \
	"                    most 64 ranges in all\n" \
	"  --tcp             TCP ports (the default)\n" \
	"  --udp             UDP ports\n" \
	"  --both            the same numbers on TCP and on UDP\n"

static const struct command commands[] = {
	{ "lease", cmd_lease, OPT_LEASE_SHAPE | OPT_PID | OPT_JSON, 0, 0,
	  "Usage: portctl lease [--ttl SECONDS] [--count N] [--consecutive] [--port P]\n"
	  "                     [--exclude SPEC] [--tcp|--udp|--both] [--pid PID|parent] [--json]\n"
	  "\n"
	  "Lease free ports (one TCP port by default). portd keeps them reserved (bound,\n"
	  "not listening) until the lease is released or its ttl runs out, and no other\n"
	  "process is handed them meanwhile; a server that sets SO_REUSEADDR (most do)\n"
	  "can still bind and listen on them. End the lease with\n"
	  "`portctl release --port PORT` (or `portctl release ID`), or let it expire.\n"
	  "\n"
	  "Prints the port numbers on one line, separated by spaces, and nothing else:\n"
	  "  PORT=$(portctl lease --ttl 60)\n"
	  "  read A B <<< \"$(portctl lease --count 2)\"     (bash)\n"
	  "  set -- $(portctl lease --count 3 --consecutive)\n"
	  "With --json:\n"
	  "  {\"id\": 7, \"ports\": [40123], \"transport\": \"tcp\", \"ttl\": 60, \"expires_in\": 60}\n"
	  "(ttl and expires_in in seconds).\n"
	  "\n"
	  "UDP: a UDP port cannot be kept reserved by holding a socket on it (your\n"
	  "server could not bind it, or would share its datagrams with portd), so a\n"
	  "number lease with --udp or --both needs a range that the kernel reserves for\n"
	  "portd (portd --range LO-HI --reserve). Otherwise use `portctl run --udp`,\n"
	  "which hands the bound socket itself to your program.\n"
	  "\n"
	  "Options:\n"
	  LEASE_SHAPE_HELP
	  "  --pid PID|parent  also end the lease as soon as process PID exits (one of\n"
	  "                    yours; root: any). `parent` is portctl's parent process\n"
	  "                    (getppid()): the shell that ran portctl. In a script,\n"
	  "                    PORT=$(portctl lease --pid parent) ties the lease to the\n"
	  "                    script's shell under bash and dash, which run the last\n"
	  "                    command of $(...) in the forked subshell itself (exec).\n"
	  "                    Not so in $(portctl ...; cmd) or $(portctl ... | cmd), nor\n"
	  "                    under dash in $(f) for a shell function f: there the parent\n"
	  "                    is a subshell that exits at once, and the lease with it.\n"
	  "                    In a Makefile every recipe line is its own shell.\n"
	  "  --json            print the lease as JSON\n" },
	{ "run", cmd_run, OPT_LEASE_SHAPE | OPT_LISTEN | OPT_NO_LISTEN, 1, 1,
	  "Usage: portctl run [--ttl SECONDS] [--count N] [--consecutive] [--port P]\n"
	  "                   [--exclude SPEC] [--tcp|--udp|--both] [--listen|--no-listen]\n"
	  "                   [--] CMD [ARGS...]\n"
	  "\n"
	  "Lease ports with their bound sockets, tied to this portctl, and run CMD with\n"
	  "them, the way systemd's socket activation does (sd_listen_fds(3)):\n"
	  "  fds 3, 4, ...     the sockets, in lease order; with --both, TCP then UDP for\n"
	  "                    each port\n"
	  "  LISTEN_FDS        how many (LISTEN_PID: CMD's pid)\n"
	  "  LISTEN_FDNAMES    their names, colon-separated: tcp-40123:udp-40123\n"
	  "  PORT              the first port; PORTS: all of them, separated by spaces\n"
	  "In every word of CMD and ARGS, {port} becomes the first port and {port0},\n"
	  "{port1}, ... the first, second, ... port: `portctl run -- redis-server\n"
	  "--port {port}`. The first word that is not an option starts CMD; options\n"
	  "after it are CMD's.\n"
	  "\n"
	  "TCP sockets are made listening sockets (backlog SOMAXCONN), as socket-activated\n"
	  "programs expect, unless CMD's words contain {port...}: a program that takes a\n"
	  "port number binds it itself, and its bind would fail while a listening socket\n"
	  "holds the port. --listen and --no-listen override this rule.\n"
	  "\n"
	  "portctl stays CMD's parent: it renews the lease at half its ttl while CMD runs\n"
	  "(warning on stderr and retrying if that fails; CMD is never stopped for it),\n"
	  "passes SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 on to CMD, and\n"
	  "when CMD exits it releases the lease and exits with CMD's status (128+N if\n"
	  "signal N killed it; 127: CMD not found, 126: CMD could not be executed).\n"
	  "If portd is unreachable (exit 3) or refuses the lease, CMD is not run.\n"
	  "\n"
	  "Options:\n"
	  LEASE_SHAPE_HELP
	  "  --listen          listen() on the TCP sockets even with {port} in ARGS\n"
	  "  --no-listen       never listen() on them\n" },
	{ "renew", cmd_renew, OPT_TTL | OPT_JSON, 1, 1,
	  "Usage: portctl renew ID [--ttl SECONDS] [--json]\n"
	  "\n"
	  "Restart the ttl of lease ID: it now ends SECONDS from now (default: portd's\n"
	  "default ttl). Prints nothing; with --json: {\"id\": 7, \"ttl\": 120}\n"
	  "\n"
	  "Options:\n"
	  "  --ttl SECONDS   the new ttl\n"
	  "  --json          print the lease id and the ttl granted as JSON\n" },
	{ "release", cmd_release, OPT_PORT | OPT_TCP | OPT_UDP | OPT_JSON, 0, 1,
	  "Usage: portctl release ID [--json]\n"
	  "       portctl release --port PORT [--tcp|--udp] [--json]\n"
	  "\n"
	  "End lease ID, or the lease holding PORT. portd stops reserving its port(s);\n"
	  "a released port is not handed out again for a while (reuse quarantine).\n"
	  "Prints nothing; with --json: {\"id\": 7}\n"
	  "\n"
	  "Options:\n"
	  "  --port PORT     release the lease holding this port, whatever its id\n"
	  "  --tcp, --udp    with --port: only a lease holding PORT on that transport\n"
	  "                  (default: either)\n"
	  "  --json          print the id of the lease released as JSON\n" },
	{ "list", cmd_list, OPT_JSON, 0, 0,
	  "Usage: portctl list [--json]\n"
	  "\n"
	  "Show your leases (root sees everyone's), one per line under a header:\n"
	  "  ID       lease id\n"
	  "  PORT(S)  the port numbers\n"
	  "  PROTO    tcp, udp or both\n"
	  "  KIND     fd (the socket was handed to a process), number, or portserver\n"
	  "           (taken over the portserver socket: ends when TIED exits)\n"
	  "  TTL      the ttl granted (- for a lease without one: portserver)\n"
	  "  EXPIRES  time left before the lease ends unless renewed: in 42s,\n"
	  "           in 3m05s, in 2h05m, in 1d04h; never for a lease without a ttl\n"
	  "  OWNER    uid/pid of the process that took the lease (- if unknown)\n"
	  "  TIED     the process whose exit ends the lease, or -\n"
	  "With no leases, only the header is printed. With --json:\n"
	  "  {\"leases\": [{\"id\": 7, \"ports\": [40123], \"transport\": \"tcp\", \"kind\": \"number\",\n"
	  "    \"ttl\": 60, \"expires_in_ms\": 41250, \"uid\": 1000, \"pid\": 4242, \"tied_pid\": 0}]}\n"
	  "(pid and tied_pid are 0 when unknown or not tied; a portserver lease has\n"
	  "\"kind\": \"portserver\", \"ttl\": 0 and \"expires_in_ms\": null).\n" },
	{ "status", cmd_status, OPT_JSON | OPT_FDS, 0, 0,
	  "Usage: portctl status [--fds] [--json]\n"
	  "\n"
	  "Show portd's version, uptime, leases (all users' and yours), ports held,\n"
	  "ports in reuse quarantine, client connections, its memory, where ports come\n"
	  "from, the host's ephemeral ports in use at portd's last scan (every 10 s),\n"
	  "with a warning when they are close to exhaustion (see `portctl ports`), and\n"
	  "its limits.\n"
	  "  --fds    also count portd's open file descriptors (root or portd's own\n"
	  "           user only). portd reads /proc/self/fd for it, about a\n"
	  "           microsecond per descriptor, and serves no one meanwhile: 12 ms\n"
	  "           with 15,000 leases held. Leave it out of frequent polling.\n"
	  "With --json, the same fields:\n"
	  "  version, uptime_ms, leases, caller_leases, ports_held, quarantined,\n"
	  "  connections, port_source (\"kernel\" or \"range\"), range_lo, range_hi,\n"
	  "  reserved (true: the range is kept out of the kernel's automatic choice),\n"
	  "  default_ttl, max_ttl, max_leases, max_per_uid, quarantine, heap_bytes,\n"
	  "  open_fds (null without --fds, or when you may not count them), eph_lo,\n"
	  "  eph_hi (the host's ephemeral range; 0, 0: not scanned), eph_in_use,\n"
	  "  eph_low (true: close to exhaustion)\n"
	  "(ttls and quarantine in seconds).\n" },
	{ "ports", cmd_ports, OPT_JSON, 0, 0,
	  "Usage: portctl ports [--json]\n"
	  "\n"
	  "Show the host's ephemeral ports, the range that bind(0) and connect() pick\n"
	  "from (net.ipv4.ip_local_port_range), and how many of them are in use:\n"
	  "  range      the range and its size\n"
	  "  reserved   net.ipv4.ip_local_reserved_ports, and how many of the range\n"
	  "             it takes out of automatic selection\n"
	  "  in use     ports of the range, not reserved, with at least one TCP or UDP\n"
	  "             socket, out of those not reserved; then by state (tcp listening,\n"
	  "             established, time-wait, bound: neither listening nor connected,\n"
	  "             other: connecting or closing; udp). A port in several states\n"
	  "             counts in each, and once in \"in use\".\n"
	  "  by user    the users whose sockets hold the most of them (a socket in\n"
	  "             TIME-WAIT belongs to nobody)\n"
	  "  portd      how many ports portd holds, and whether they are in the range\n"
	  "A warning follows when 80% or more of the usable ports are in use. The\n"
	  "sockets are read from the kernel (NETLINK_SOCK_DIAG) in this network\n"
	  "namespace; portd need not run. With --json:\n"
	  "  {\"range\": {\"lo\": 32768, \"hi\": 60999, \"size\": 28232},\n"
	  "   \"reserved\": {\"list\": \"\", \"in_range\": 0}, \"usable\": 28232,\n"
	  "   \"in_use\": 1234, \"percent\": 4.3, \"low\": false, \"tcp\": {\"listening\": 3,\n"
	  "   \"established\": 1200, \"time_wait\": 40, \"bound\": 20, \"other\": 0},\n"
	  "   \"udp\": 5, \"sockets\": 2500, \"by_user\": [{\"uid\": 0, \"user\": \"root\",\n"
	  "   \"ports\": 1190}], \"portd\": {\"running\": true, \"ports_held\": 20,\n"
	  "   \"port_source\": \"kernel\", \"range_lo\": 0, \"range_hi\": 0,\n"
	  "   \"reserved\": false, \"held_in_range\": 20}}\n"
	  "(held_in_range is null when portd's range is partly inside the range;\n"
	  "\"portd\": {\"running\": false} when none answers). Exit status 0 also when\n"
	  "no portd runs.\n" },
};

static const struct command help_command = { "help", NULL, 0, 0, 1, NULL };

static const struct command *command_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	if (strcmp(name, help_command.name) == 0)
		return &help_command;
	return NULL;
}

static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg(const char *fmt, ...)
{
	va_list ap;

	fputs("portctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int usage_error(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fputs("portctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c->cmd && c->cmd->help)
		fprintf(stderr, "Try 'portctl %s --help'.\n", c->cmd->name);
	else
		fputs("Try 'portctl --help'.\n", stderr);
	return EXIT_USAGE;
}

/*
 * A whole number in [min, max], in decimal: no sign, no spaces, no suffix.
 * Returns 0, -1 if s is not a number, -2 if it is out of range.
 */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -1; /* also rejects "", "-1", "+1" and " 1", which strtoull would take */
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -1;
	if (errno == ERANGE || v < min || v > max)
		return -2;
	*out = v;
	return 0;
}

/* what: the option or argument, for messages; expect: what a valid value is ("a port number"). */
static int parse_number(const struct cli *c, const char *what, const char *expect, const char *s, uint64_t min,
			uint64_t max, uint64_t *out)
{
	int r = parse_uint(s, min, max, out);

	if (r == -1)
		return usage_error(c, "invalid %s '%s': expected %s from %" PRIu64 " to %" PRIu64, what, s, expect,
				   min, max);
	if (r == -2)
		return usage_error(c, "%s %s is out of range: expected %s from %" PRIu64 " to %" PRIu64, what, s,
				   expect, min, max);
	return 0;
}

/* One --exclude SPEC: "P", "LO-HI", comma-separated; added to c->exclude. */
static int parse_exclude(struct cli *c, const char *spec)
{
	const char *item = spec;

	if (*spec == '\0')
		return usage_error(c, "--exclude needs ports or ranges, such as 8080,9000-9099");
	for (;;) {
		size_t len = strcspn(item, ",");
		char buf[16], *dash;
		uint64_t lo, hi;

		if (len == 0 || len >= sizeof(buf))
			return usage_error(c, "invalid --exclude '%s': expected ports and LO-HI ranges separated by "
					   "commas, such as 8080,9000-9099", spec);
		memcpy(buf, item, len);
		buf[len] = '\0';
		dash = strchr(buf, '-');
		if (dash)
			*dash = '\0';
		if (parse_uint(buf, 1, 65535, &lo) < 0 || parse_uint(dash ? dash + 1 : buf, 1, 65535, &hi) < 0)
			return usage_error(c, "invalid --exclude '%s': '%.*s' is not a port (1-65535) or a range LO-HI",
					   spec, (int)len, item);
		if (lo > hi)
			return usage_error(c, "invalid --exclude '%s': range %" PRIu64 "-%" PRIu64 " runs backwards",
					   spec, lo, hi);
		if (c->nexclude >= PORTD_MAX_EXCLUDE)
			return usage_error(c, "too many --exclude ranges: at most %d in all", PORTD_MAX_EXCLUDE);
		c->exclude[c->nexclude++] = (struct portd_range){ .lo = (uint16_t)lo, .hi = (uint16_t)hi };
		if (item[len] == '\0')
			return 0;
		item += len + 1;
	}
}

static int option_value(struct cli *c, unsigned bit, const char *v)
{
	uint64_t n;
	int r;

	switch (bit) {
	case OPT_SOCKET:
		if (*v == '\0')
			return usage_error(c, "--socket needs a path");
		c->socket = v;
		return 0;
	case OPT_TIMEOUT:
		r = parse_number(c, "--timeout", "a number of milliseconds", v, 1, INT_MAX, &n);
		c->timeout_ms = (int)n;
		return r;
	case OPT_TTL:
		r = parse_number(c, "--ttl", "a number of seconds", v, 1, UINT32_MAX, &n);
		c->ttl = (uint32_t)n;
		return r;
	case OPT_PORT:
		r = parse_number(c, "--port", "a port number", v, 1, 65535, &n);
		c->port = (uint16_t)n;
		return r;
	case OPT_COUNT:
		r = parse_number(c, "--count", "a number of ports", v, 1, PORTD_MAX_PORTS, &n);
		c->count = (uint16_t)n;
		return r;
	case OPT_EXCLUDE:
		return parse_exclude(c, v);
	case OPT_PID:
		if (strcmp(v, "parent") == 0) {
			c->pid_parent = true;
			c->pid = 0; /* getppid() when the lease is asked for */
			return 0;
		}
		c->pid_parent = false;
		r = parse_number(c, "--pid", "a process id (or 'parent')", v, 1, INT_MAX, &n);
		c->pid = (pid_t)n;
		return r;
	}
	return 0;
}

static int parse_option(struct cli *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *name, *eq, *val = NULL;
	const struct optdef *d = NULL;
	size_t len, k;

	if (strcmp(a, "-h") == 0) {
		c->seen |= OPT_HELP;
		return 0;
	}
	if (strncmp(a, "--", 2) != 0)
		return usage_error(c, "unknown option '%s'", a);
	name = a + 2;
	eq = strchr(name, '=');
	len = eq ? (size_t)(eq - name) : strlen(name);
	for (k = 0; k < sizeof(optdefs) / sizeof(optdefs[0]); k++)
		if (strlen(optdefs[k].name) == len && strncmp(optdefs[k].name, name, len) == 0)
			d = &optdefs[k];
	if (!d)
		return usage_error(c, "unknown option '--%.*s'", (int)len, name);
	if (!d->arg) {
		if (eq)
			return usage_error(c, "--%s takes no value", d->name);
	} else if (eq) {
		val = eq + 1;
	} else {
		if (*i + 1 >= argc)
			return usage_error(c, "--%s needs a value (%s)", d->name, d->arg);
		val = argv[++*i];
	}
	c->seen |= d->bit;
	if (d->bit == OPT_JSON)
		c->json = true;
	return val ? option_value(c, d->bit, val) : 0;
}

/* A word that is an option: "-x" or "--x", but not "-" and not "-5" (a bad number, reported as such). */
static bool is_option(const char *a)
{
	return a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9');
}

static int parse_args(struct cli *c, int argc, char **argv)
{
	bool dashdash = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(a)) {
			r = parse_option(c, argc, argv, &i);
			if (r)
				return r;
			continue;
		}
		if (!c->cmd) {
			c->cmd = command_find(a);
			if (!c->cmd)
				return usage_error(c, "unknown command '%s'", a);
			continue;
		}
		if (c->cmd->run == cmd_run) {
			/* CMD starts here: every word from here on is CMD's, options included. */
			c->cmd_argv = argv + i;
			c->cmd_argc = argc - i;
			return 0;
		}
		if (c->nargs >= c->cmd->max_args)
			return usage_error(c, "unexpected argument '%s'", a);
		c->args[c->nargs++] = a;
	}
	return 0;
}

static void print_version(void)
{
	printf("portctl %s (libportd %s, protocol %d)\n", PORTD_VERSION, portd_version(), PORTD_PROTOCOL_VERSION);
}

/*
 * Scan a word of run's CMD for {port} and {portN}. Returns how many there
 * are; with out, also writes the word with the port numbers put in (out
 * must hold strlen(w) + 1 bytes: "{port}" is longer than any port number).
 * *bad gets the first N >= count (-1 if none).
 */
static size_t port_tokens(const char *w, const uint16_t *ports, size_t count, char *out, long *bad)
{
	size_t n = 0;

	*bad = -1;
	while (*w) {
		const char *q = w + 5, *digits;
		unsigned long k = 0;

		if (strncmp(w, "{port", 5) != 0) {
			if (out)
				*out++ = *w;
			w++;
			continue;
		}
		for (digits = q; *q >= '0' && *q <= '9' && q - digits < 6; q++)
			k = k * 10 + (unsigned long)(*q - '0');
		if (*q != '}' || (q - digits >= 6)) { /* not a token: copy the '{' and go on */
			if (out)
				*out++ = *w;
			w++;
			continue;
		}
		n++;
		if (k >= count && *bad < 0)
			*bad = (long)k;
		if (out)
			out += sprintf(out, "%u", k < count ? (unsigned)ports[k] : 0u);
		w = q + 1;
	}
	if (out)
		*out = '\0';
	return n;
}

/* The options that shape a lease (lease and run): consistent, and within the protocol's limits. */
static int check_lease_shape(struct cli *c)
{
	unsigned t = c->seen & OPT_TRANSPORT;

	if (t & (t - 1))
		return usage_error(c, "give one of --tcp, --udp and --both");
	c->transport = t == OPT_UDP ? PORTD_TRANSPORT_UDP : t == OPT_BOTH ? PORTD_TRANSPORT_BOTH : PORTD_TRANSPORT_TCP;
	if (!c->count)
		c->count = 1;
	if ((c->seen & OPT_LISTEN) && (c->seen & OPT_NO_LISTEN))
		return usage_error(c, "give --listen or --no-listen, not both");
	if (c->port) {
		if (c->count > 1 && !(c->seen & OPT_CONSECUTIVE))
			return usage_error(c, "--port with --count %u needs --consecutive: the ports are then %u to %u",
					   (unsigned)c->count, (unsigned)c->port, (unsigned)c->port + c->count - 1u);
		if ((unsigned)c->port + c->count - 1u > 65535)
			return usage_error(c, "--port %u --count %u runs past port 65535", (unsigned)c->port,
					   (unsigned)c->count);
		for (size_t i = 0; i < c->nexclude; i++)
			if (c->exclude[i].lo <= c->port + c->count - 1u && c->port <= c->exclude[i].hi)
				return usage_error(c, "--port %u is in an --exclude range (%u-%u)", (unsigned)c->port,
						   (unsigned)c->exclude[i].lo, (unsigned)c->exclude[i].hi);
	}
	if (c->cmd->run == cmd_run && c->transport == PORTD_TRANSPORT_BOTH && c->count > PORTD_MAX_FDS / 2)
		return usage_error(c, "run --both takes at most --count %d: two sockets per port, %d fds in all",
				   PORTD_MAX_FDS / 2, PORTD_MAX_FDS);
	if (c->pid_parent)
		c->pid = getppid();
	for (int i = 0; c->cmd->run == cmd_run && i < c->cmd_argc; i++) {
		long bad;

		port_tokens(c->cmd_argv[i], NULL, c->count, NULL, &bad);
		if (bad >= 0)
			return usage_error(c, "{port%ld} in '%s': only %u port%s leased ({port0} to {port%u})", bad,
					   c->cmd_argv[i], (unsigned)c->count, c->count > 1 ? "s are" : " is",
					   (unsigned)c->count - 1u);
	}
	return 0;
}

/* After parsing: help, version, and the checks that need the command. -1: go on. */
static int check_args(struct cli *c)
{
	size_t k;

	if (c->seen & OPT_HELP) {
		if (c->cmd == &help_command && c->nargs == 1) {
			const struct command *t = command_find(c->args[0]);

			if (!t || !t->help)
				return usage_error(c, "unknown command '%s'", c->args[0]);
			c->cmd = t;
		}
		fputs(c->cmd && c->cmd->help ? c->cmd->help : usage_text, stdout);
		return EXIT_OK;
	}
	if (c->seen & OPT_VERSION) {
		print_version();
		return EXIT_OK;
	}
	if (!c->cmd)
		return usage_error(c, "no command given");
	if (c->cmd == &help_command) {
		const struct command *t = c->nargs ? command_find(c->args[0]) : NULL;

		if (c->nargs && (!t || !t->help)) {
			c->cmd = NULL;
			return usage_error(c, "unknown command '%s'", c->args[0]);
		}
		fputs(t ? t->help : usage_text, stdout);
		return EXIT_OK;
	}
	for (k = 0; k < sizeof(optdefs) / sizeof(optdefs[0]); k++)
		if ((c->seen & optdefs[k].bit) && !(optdefs[k].bit & (OPT_GLOBAL | c->cmd->opts)))
			return usage_error(c, "'%s' takes no --%s", c->cmd->name, optdefs[k].name);

	if (c->cmd->run == cmd_lease || c->cmd->run == cmd_run) {
		int r = check_lease_shape(c);

		if (r)
			return r;
	}
	if (c->cmd->run == cmd_run)
		return c->cmd_argc > 0 ? -1 : usage_error(c, "which command? portctl run [OPTIONS] -- CMD [ARGS...]");
	if (c->cmd->run == cmd_release) {
		if ((c->seen & (OPT_TCP | OPT_UDP)) == (OPT_TCP | OPT_UDP))
			return usage_error(c, "give --tcp or --udp, not both (neither: either transport)");
		if ((c->seen & (OPT_TCP | OPT_UDP)) && !(c->seen & OPT_PORT))
			return usage_error(c, "--tcp and --udp choose which lease holds --port PORT; a lease ID needs neither");
		c->transport = (c->seen & OPT_TCP) ? PORTD_TRANSPORT_TCP : (c->seen & OPT_UDP) ? PORTD_TRANSPORT_UDP : 0;
		if (c->nargs == 1 && (c->seen & OPT_PORT))
			return usage_error(c, "give a lease ID or --port PORT, not both");
		if (c->nargs == 0 && !(c->seen & OPT_PORT))
			return usage_error(c, "which lease? give its ID or --port PORT");
	} else if (c->nargs < c->cmd->min_args) {
		return usage_error(c, "'%s' needs a lease ID", c->cmd->name);
	}
	if (c->nargs == 1) {
		uint64_t id;
		int r = parse_number(c, "lease id", "a lease id", c->args[0], 1, UINT64_MAX, &id);

		if (r)
			return r;
		c->id = id;
	}
	return -1;
}

/* ---- errors ---------------------------------------------------------------- */

static int connect_failed(const struct cli *c, int err)
{
	switch (-err) {
	case ENOENT:
	case ECONNREFUSED:
	case ENOTDIR:
		msg("no portd listening at %s: start it with `portd` (or set PORTD_SOCKET / --socket)", c->path);
		break;
	case EACCES:
	case EPERM:
		msg("permission denied on %s: you may not use this portd (check the socket's owner, group "
		    "and mode, or ask its administrator), or start your own `portd` and point "
		    "PORTD_SOCKET / --socket at it", c->path);
		break;
	case EAGAIN:
		msg("portd at %s is too busy to accept a connection (listen backlog full): try again", c->path);
		break;
	case ENAMETOOLONG:
		msg("socket path too long (at most 107 bytes): %s", c->socket ? c->socket : "check PORTD_SOCKET and XDG_RUNTIME_DIR");
		return c->socket ? EXIT_USAGE : EXIT_UNREACHABLE;
	default:
		msg("cannot connect to portd at %s: %s", c->path, portd_strerror(err));
		break;
	}
	return EXIT_UNREACHABLE;
}

/* Report a failed request with what the user can do about it; returns the exit status. */
static int request_failed(const struct cli *c, const struct portd *p, int err)
{
	uint32_t detail = portd_detail(p);

	switch (-err) {
	case PORTD_E_PROTO:
		msg("portd and portctl do not understand each other (a malformed request or reply): "
		    "use matching versions of portd and portctl");
		return EXIT_COMM;
	case PORTD_E_VERSION:
		msg("portd speaks protocol version %" PRIu32 ", this portctl speaks %d: use matching versions",
		    detail, PORTD_PROTOCOL_VERSION);
		return EXIT_COMM;
	case ETIMEDOUT:
		msg("portd did not answer within %d ms: it may be overloaded or stopped (check it, or raise --timeout)",
		    c->timeout_ms);
		return EXIT_COMM;
	case ECONNRESET:
		msg("portd at %s closed the connection without answering: it may have exited, or be at its "
		    "limit of connections (yours or everyone's) or of open files (see its log)", c->path);
		return EXIT_COMM;
	case PORTD_E_QUOTA_UID:
		msg("per-user lease limit reached (%" PRIu32 " ports, a lease counting once per port): release "
		    "some (portctl list, portctl release ID)", detail);
		return EXIT_REFUSED;
	case PORTD_E_QUOTA_TOTAL:
		msg("portd's lease limit reached (%" PRIu32 " leases, all users): release some "
		    "(portctl list, portctl release ID), or raise the daemon's limit", detail);
		return EXIT_REFUSED;
	case PORTD_E_TTL:
		if (c->ttl)
			msg("ttl %" PRIu32 " exceeds the daemon's maximum of %" PRIu32 " s", c->ttl, detail);
		else
			msg("portd's default ttl exceeds its maximum of %" PRIu32 " s: pass --ttl", detail);
		return EXIT_REFUSED;
	case PORTD_E_NOENT:
		if (c->id)
			msg("no lease %" PRIu64 " (portctl list shows yours)", c->id);
		else if (c->port)
			msg("no lease holds port %" PRIu16 " (portctl list shows yours)", c->port);
		else
			msg("no such lease");
		return EXIT_REFUSED;
	case PORTD_E_PERM:
		if (c->id)
			msg("lease %" PRIu64 " belongs to another user", c->id);
		else if (c->port)
			msg("the lease on port %" PRIu16 " belongs to another user", c->port);
		else
			msg("the lease belongs to another user");
		return EXIT_REFUSED;
	case PORTD_E_NOPORTS:
		msg("portd has no free port left: release some leases (portctl list, portctl release ID), "
		    "or give portd a wider port range");
		return EXIT_REFUSED;
	case PORTD_E_BUSY:
		if (c->port)
			msg("port %" PRIu16 " is in use or in reuse quarantine: try another", c->port);
		else
			msg("portd refused to %s: %s", c->cmd->name, portd_strerror(err));
		return EXIT_REFUSED;
	case PORTD_E_INTERNAL:
		if (detail == EMFILE || detail == ENFILE)
			msg("portd has run out of open files (%s) holding the sockets of its leases: release "
			    "some leases (portctl list, portctl release ID), or raise portd's open-files "
			    "limit (ulimit -n, or LimitNOFILE= in its unit)",
			    detail == EMFILE ? "its own limit" : "the system's limit");
		else if (detail)
			msg("portd failed to %s: %s (see its log)", c->cmd->name, strerror((int)detail));
		else
			msg("portd failed to %s (see its log)", c->cmd->name);
		return EXIT_REFUSED;
	case PORTD_E_BADTYPE:
		msg("this portd does not know the '%s' request: upgrade portd to match portctl %s", c->cmd->name,
		    PORTD_VERSION);
		return EXIT_REFUSED;
	case PORTD_E_INVAL:
	case PORTD_E_UNSUPPORTED:
	case PORTD_E_NOTSUP_TRANSPORT:
		msg("portd refused to %s: %s", c->cmd->name, portd_strerror(err));
		return EXIT_REFUSED;
	}
	if (-err > PORTD_E_BASE && -err < 2 * PORTD_E_BASE) { /* from a newer portd */
		msg("portd refused to %s: %s", c->cmd->name, portd_strerror(err));
		return EXIT_REFUSED;
	}
	msg("%s failed: %s", c->cmd->name, portd_strerror(err));
	return EXIT_COMM;
}

/* ---- output -------------------------------------------------------------- */

/*
 * A tiny JSON emitter for one line of output: objects, arrays, unsigned
 * numbers and strings. Strings are escaped; the only strings printed are
 * fixed names and the daemon's version, so non-ASCII bytes become U+FFFD
 * rather than risk invalid UTF-8 in the output.
 */
#define JSON_DEPTH 8

struct json {
	FILE *f;
	int depth;
	bool after_key;
	bool comma[JSON_DEPTH];
};

static void json_write_string(FILE *f, const char *s)
{
	const unsigned char *u;

	fputc('"', f);
	for (u = (const unsigned char *)s; *u; u++) {
		switch (*u) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (*u < 0x20 || *u == 0x7f)
				fprintf(f, "\\u%04x", *u);
			else if (*u >= 0x80)
				fputs("\\ufffd", f);
			else
				fputc(*u, f);
		}
	}
	fputc('"', f);
}

static void json_value_begin(struct json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->comma[j->depth])
		fputs(", ", j->f);
	j->comma[j->depth] = true;
}

static void json_open(struct json *j, char bracket)
{
	json_value_begin(j);
	fputc(bracket, j->f);
	if (j->depth + 1 < JSON_DEPTH)
		j->depth++;
	j->comma[j->depth] = false;
}

static void json_close(struct json *j, char bracket)
{
	fputc(bracket, j->f);
	if (j->depth > 0)
		j->depth--;
	if (j->depth == 0)
		fputc('\n', j->f);
}

static void json_key(struct json *j, const char *key)
{
	json_value_begin(j);
	json_write_string(j->f, key);
	fputs(": ", j->f);
	j->after_key = true;
}

static void json_uint(struct json *j, const char *key, uint64_t v)
{
	if (key)
		json_key(j, key);
	json_value_begin(j);
	fprintf(j->f, "%" PRIu64, v);
}

static void json_null(struct json *j, const char *key)
{
	json_key(j, key);
	json_value_begin(j);
	fputs("null", j->f);
}

static void json_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	json_value_begin(j);
	fputs(v ? "true" : "false", j->f);
}

static void json_string(struct json *j, const char *key, const char *s)
{
	if (key)
		json_key(j, key);
	json_value_begin(j);
	json_write_string(j->f, s);
}

static void json_ports(struct json *j, const uint16_t *ports, size_t n)
{
	size_t i;

	json_key(j, "ports");
	json_open(j, '[');
	for (i = 0; i < n; i++)
		json_uint(j, NULL, ports[i]);
	json_close(j, ']');
}

static const char *transport_name(uint8_t t)
{
	switch (t) {
	case PORTD_TRANSPORT_TCP:
		return "tcp";
	case PORTD_TRANSPORT_UDP:
		return "udp";
	case PORTD_TRANSPORT_BOTH:
		return "both";
	}
	return "?";
}

/* "42s", "3m12s", "2h05m", "3d04h". */
static void format_duration(char *buf, size_t len, uint64_t s)
{
	if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
}

/* Flush stdout; on failure say so. The caller decides what else to undo. */
static int stdout_flush(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		msg("cannot write the result to stdout: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Colour only on a terminal that has it, and never against NO_COLOR
 * (no-color.org): piped output, which scripts read, carries no escapes.
 */
static bool stdout_colour(void)
{
	const char *no = getenv("NO_COLOR"), *term = getenv("TERM");

	return isatty(STDOUT_FILENO) && !(no && *no) && term && *term && strcmp(term, "dumb") != 0;
}

/* "warning: ..." on stdout, in a part of what a command shows; the word in bold yellow on a terminal. */
static void print_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void print_warning(const char *fmt, ...)
{
	bool colour = stdout_colour();
	va_list ap;

	fputs(colour ? "\033[1;33mwarning:\033[0m " : "warning: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ---- commands ---------------------------------------------------------------- */

static void lease_opts(const struct cli *c, uint32_t flags, struct portd_lease_opts *o)
{
	*o = (struct portd_lease_opts){
		.ttl = c->ttl,
		.flags = flags | ((c->seen & OPT_CONSECUTIVE) ? PORTD_FLAG_CONSECUTIVE : 0),
		.count = c->count,
		.transport = c->transport,
		.port = c->port,
		.pid = c->pid,
		.exclude = c->nexclude ? c->exclude : NULL,
		.nexclude = c->nexclude,
	};
}

static const char *transport_label(uint8_t t)
{
	return t == PORTD_TRANSPORT_UDP ? "UDP" : t == PORTD_TRANSPORT_BOTH ? "TCP+UDP" : "TCP";
}

/* What was asked, for messages: "3 consecutive free TCP ports", "UDP port 8080". */
static void lease_describe(const struct cli *c, char *buf, size_t len)
{
	const char *t = transport_label(c->transport);
	const char *cons = (c->seen & OPT_CONSECUTIVE) && c->count > 1 ? "consecutive " : "";

	if (c->port && c->count > 1)
		snprintf(buf, len, "%s ports %u-%u", t, (unsigned)c->port, (unsigned)c->port + c->count - 1u);
	else if (c->port)
		snprintf(buf, len, "%s port %u", t, (unsigned)c->port);
	else if (c->count > 1)
		snprintf(buf, len, "%u %sfree %s ports", (unsigned)c->count, cons, t);
	else
		snprintf(buf, len, "a free %s port", t);
}

/* The options in use beyond one TCP port, for "this portd cannot serve ...". */
static void lease_features(const struct cli *c, char *buf, size_t len)
{
	size_t off = 0;

#define FEATURE(cond, ...) \
	do { \
		if ((cond) && off < len) \
			off += (size_t)snprintf(buf + off, len - off, __VA_ARGS__); \
	} while (0)
	buf[0] = '\0';
	FEATURE(c->count > 1, ", --count %u", (unsigned)c->count);
	FEATURE(c->seen & OPT_CONSECUTIVE, ", --consecutive");
	FEATURE(c->port, ", --port %u", (unsigned)c->port);
	FEATURE(c->nexclude, ", --exclude");
	FEATURE(c->transport == PORTD_TRANSPORT_UDP, ", --udp");
	FEATURE(c->transport == PORTD_TRANSPORT_BOTH, ", --both");
	FEATURE(c->pid, ", --pid");
#undef FEATURE
}

/* A refused LEASE, explained from what was asked; the rest as for any request. */
static int lease_failed(const struct cli *c, struct portd *p, int err)
{
	char what[64], feat[128];
	struct portd_status st;

	lease_describe(c, what, sizeof(what));
	switch (-err) {
	case PORTD_E_NOTSUP_TRANSPORT:
		msg("a number-only UDP lease needs a reserved range (portd --range LO-HI --reserve); use "
		    "`portctl run --udp` to receive the socket instead");
		return EXIT_REFUSED;
	case PORTD_E_UNSUPPORTED:
		lease_features(c, feat, sizeof(feat));
		msg("this portd cannot lease %s%s%s%s: upgrade portd", what, feat[0] ? " (" : "", feat[0] ? feat + 2 : "",
		    feat[0] ? ")" : "");
		return EXIT_REFUSED;
	case PORTD_E_BUSY:
		if (c->port && c->count > 1)
			msg("ports %u-%u: one of them is in use or in reuse quarantine: try another --port", (unsigned)c->port,
			    (unsigned)c->port + c->count - 1u);
		else if (c->port)
			msg("port %u is in use or in reuse quarantine: try another", (unsigned)c->port);
		else
			break;
		return EXIT_REFUSED;
	case PORTD_E_PERM:
		if (!c->pid)
			break;
		msg("process %ld belongs to another user: --pid takes only your own processes (root: any)", (long)c->pid);
		return EXIT_REFUSED;
	case PORTD_E_INVAL:
		if (c->pid && kill(c->pid, 0) < 0 && errno == ESRCH) {
			if (c->pid_parent)
				msg("portctl's parent process (%ld) has already exited: nothing to tie the lease to",
				    (long)c->pid);
			else
				msg("no process %ld: --pid needs a running process", (long)c->pid);
			return EXIT_REFUSED;
		}
		/* An exact port outside portd's range: say which range. */
		if (c->port && portd_status(p, &st, c->timeout_ms) == 0 && st.range_lo &&
		    (c->port < st.range_lo || c->port + c->count - 1u > st.range_hi)) {
			msg("%s: outside portd's range %u-%u", what, (unsigned)st.range_lo, (unsigned)st.range_hi);
			return EXIT_REFUSED;
		}
		msg("portd refused to lease %s: %s", what, portd_strerror(err));
		return EXIT_REFUSED;
	case PORTD_E_NOPORTS:
		if (c->count == 1 && !c->nexclude)
			break;
		if (c->count > 1)
			snprintf(what, sizeof(what), "%u %sfree %s ports", (unsigned)c->count,
				 (c->seen & OPT_CONSECUTIVE) ? "consecutive " : "", transport_label(c->transport));
		else
			snprintf(what, sizeof(what), "free %s port", transport_label(c->transport));
		msg("portd has no %s left%s: release some leases (portctl list, portctl release ID)%s, or give portd "
		    "a wider port range", what, c->nexclude ? " outside the --exclude ranges" : "",
		    c->nexclude ? ", exclude fewer ports" : "");
		return EXIT_REFUSED;
	}
	return request_failed(c, p, err);
}

static int cmd_lease(struct cli *c, struct portd *p)
{
	/* No FD flag: portd keeps the sockets; the lease outlives this process (unless --pid). */
	struct portd_lease_opts o;
	struct portd_lease l;
	int r;

	lease_opts(c, 0, &o);
	r = portd_lease(p, &o, &l, c->timeout_ms);
	if (r < 0)
		return lease_failed(c, p, r);
	portd_lease_close_fds(&l); /* none were asked for */

	if (c->json) {
		struct json j = { .f = stdout };

		json_open(&j, '{');
		json_uint(&j, "id", l.id);
		json_ports(&j, l.ports, l.count);
		json_string(&j, "transport", transport_name(l.transport));
		json_uint(&j, "ttl", l.ttl);
		json_uint(&j, "expires_in", l.ttl);
		json_close(&j, '}');
	} else {
		/* One line, spaces between: read A B <<< "$(portctl lease --count 2)" and set -- $(...) work. */
		for (size_t i = 0; i < l.count; i++)
			printf("%s%" PRIu16, i ? " " : "", l.ports[i]);
		putchar('\n');
	}
	if (stdout_flush() < 0) {
		/* Nobody learnt the port: do not leave it reserved for the whole ttl. */
		r = portd_release(p, l.id, c->timeout_ms);
		if (r < 0)
			msg("and releasing lease %" PRIu64 " failed: %s", l.id, portd_strerror(r));
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

/* ---- run ------------------------------------------------------------------- */

/*
 * portctl run: one FD lease, tied to portctl, whose sockets CMD receives the
 * way systemd passes them (sd_listen_fds(3)). portctl stays CMD's parent, in
 * one poll() loop over three things: a signalfd (signals to pass on, and
 * SIGCHLD), a pidfd of CMD, and the portd connection while a renewal is
 * under way. The next renewal (or retry) is the poll timeout. Nothing
 * sleeps, and nothing portd does (or fails to do) stops CMD.
 */

/* Signals passed on to CMD; SIGCHLD is watched too, should pidfd_open() be missing. */
static const int run_forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

#define RUN_RETRY_MIN_MS 100
#define RUN_RETRY_MAX_MS 5000

struct run {
	struct cli *c;
	uint64_t id;
	uint32_t ttl;            /* granted, seconds */
	pid_t child;
	uint64_t renew_at;       /* monotonic ms of the next renewal attempt; 0: none (the lease is gone) */
	bool pending;            /* a RENEW was sent and is unanswered */
	uint32_t req_id;
	uint64_t reply_by;       /* when to stop waiting for that answer */
	unsigned failures;       /* renewals failed in a row */
	uint32_t retry_ms;
	bool reconnected;        /* a new connection: check the id is still our lease before using it */
	bool gone;               /* the lease has ended in portd: neither renew nor release it */
	uint16_t port0;          /* the first port, to recognise the lease */
	uint8_t transport;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Renew at half the ttl: the daemon's deadline is the granted ttl from its reply. */
static void run_schedule_renew(struct run *r)
{
	r->renew_at = mono_ms() + (uint64_t)r->ttl * 1000 / 2;
	r->retry_ms = (uint32_t)((uint64_t)r->ttl * 1000 / 8);
	if (r->retry_ms < RUN_RETRY_MIN_MS)
		r->retry_ms = RUN_RETRY_MIN_MS;
	if (r->retry_ms > RUN_RETRY_MAX_MS)
		r->retry_ms = RUN_RETRY_MAX_MS;
}

/* A renewal failed: say so (not every time when it keeps failing) and try again, backing off. */
static void run_renew_failed(struct run *r, const char *what, int err)
{
	r->pending = false;
	r->failures++;
	if (r->failures <= 3 || r->failures % 10 == 0)
		msg("warning: %s lease %" PRIu64 " failed%s%s: retrying in %" PRIu32 " ms%s", what, r->id,
		    err ? ": " : "", err ? portd_strerror(err) : "", r->retry_ms,
		    r->failures > 1 ? " (failed before too; the command keeps running)" : " (the command keeps running)");
	r->renew_at = mono_ms() + r->retry_ms;
	r->retry_ms = r->retry_ms * 2 > RUN_RETRY_MAX_MS ? RUN_RETRY_MAX_MS : r->retry_ms * 2;
}

static void run_lost_connection(struct run *r, const char *what, int err)
{
	portd_disconnect(r->c->conn);
	r->c->conn = NULL;
	run_renew_failed(r, what, err);
}

static void run_lease_ended(struct run *r)
{
	msg("warning: lease %" PRIu64 " has ended in portd (it expired, was released, or portd restarted): "
	    "its ports are no longer reserved; the command keeps running with its sockets", r->id);
	r->renew_at = 0;
	r->gone = true;
}

/*
 * After a reconnection: is lease id still ours? A portd restarted without its
 * state numbers leases from 1 again, and the same id may now be another
 * lease of this user. Ours holds our first port and is tied to this process.
 * Returns 1 (ours), 0 (ended), or a negative error (ask again later).
 */
static int run_verify(struct run *r)
{
	struct portd_lease_info *v = NULL;
	int n = portd_list(r->c->conn, &v, r->c->timeout_ms), ours = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++)
		if (v[i].id == r->id)
			ours = v[i].ports[0] == r->port0 && v[i].transport == r->transport && v[i].tied_pid == getpid();
	free(v);
	return ours;
}

static void run_renew_send(struct run *r)
{
	int e;

	if (!r->c->conn) {
		e = portd_connect(r->c->path, &r->c->conn);
		if (e < 0) {
			r->c->conn = NULL;
			run_renew_failed(r, "reconnecting to portd to renew", e);
			return;
		}
		r->reconnected = true;
	}
	if (r->reconnected) {
		e = run_verify(r);
		if (e < 0) {
			run_lost_connection(r, "checking", e);
			return;
		}
		r->reconnected = false;
		if (e == 0) {
			run_lease_ended(r);
			return;
		}
	}
	e = portd_send_renew(r->c->conn, r->id, r->ttl, &r->req_id);
	if (e < 0) {
		run_lost_connection(r, "renewing", e);
		return;
	}
	r->pending = true;
	r->reply_by = mono_ms() + (uint64_t)r->c->timeout_ms;
}

/* Read what portd sent: the answer to the renewal, or late answers to ones given up on. */
static void run_renew_recv(struct run *r)
{
	struct portd_reply rep;
	int e;

	for (;;) {
		e = portd_recv(r->c->conn, &rep);
		if (e == -EAGAIN)
			return;
		if (e < 0) {
			if (r->pending) {
				run_lost_connection(r, "renewing", e);
			} else {
				portd_disconnect(r->c->conn);
				r->c->conn = NULL;
			}
			return;
		}
		if (rep.type == PORTD_REPLY_LEASE && !rep.error)
			portd_lease_close_fds(&rep.u.lease);
		if (rep.type == PORTD_REPLY_LIST && !rep.error)
			free(rep.u.list.leases);
		if (!r->pending || rep.req_id != r->req_id || rep.type != PORTD_REPLY_RENEW)
			continue;
		r->pending = false;
		if (rep.error == 0) {
			if (r->failures)
				msg("renewed lease %" PRIu64 " again", r->id);
			r->failures = 0;
			r->ttl = rep.u.ttl ? rep.u.ttl : r->ttl;
			run_schedule_renew(r);
		} else if (rep.error == -PORTD_E_NOENT || rep.error == -PORTD_E_PERM) {
			run_lease_ended(r);
		} else {
			run_renew_failed(r, "renewing", rep.error);
		}
	}
}

/*
 * Pass a signal on to CMD, except one that the terminal sent (SI_KERNEL:
 * ^C, ^\, hangup) while CMD is in our process group: the terminal signals the
 * whole foreground group, so CMD has it already, and a second SIGINT would
 * cut short the clean-up that the first one started.
 */
static void run_forward(const struct run *r, const struct signalfd_siginfo *si)
{
	if (si->ssi_code == SI_KERNEL && getpgid(r->child) == getpgrp())
		return;
	if (kill(r->child, (int)si->ssi_signo) < 0 && errno != ESRCH)
		msg("warning: cannot pass signal %u on to the command: %s", si->ssi_signo, strerror(errno));
}

/*
 * Is there a file name in a directory of $PATH? execvp() fails with EACCES
 * when some directory of $PATH may not be searched, even if name is in none
 * of them; a shell says "command not found" (127) then, and so do we.
 */
static bool path_has(const char *name)
{
	const char *dir = getenv("PATH");
	char buf[PATH_MAX];
	struct stat st;

	if (!dir)
		dir = "/bin:/usr/bin"; /* execvp()'s default */
	for (;;) {
		size_t len = strcspn(dir, ":");
		int n = snprintf(buf, sizeof(buf), "%.*s/%s", (int)(len ? len : 1), len ? dir : ".", name);

		if (n > 0 && (size_t)n < sizeof(buf) && stat(buf, &st) == 0)
			return true;
		if (dir[len] == '\0')
			return false;
		dir += len + 1;
	}
}

/* In the forked child: the sockets to fds 3.., LISTEN_PID, the signal state portctl found, exec. */
static void run_child(const struct run *r, struct portd_lease *l, char **argv, const sigset_t *oldmask)
{
	int n = (int)l->nfds, high[PORTD_MAX_FDS], e;
	char pid[24];

	/*
	 * First every socket out of the way, above 3+n, then each into place: a
	 * socket may already sit at the fd another one must go to. The high
	 * copies are close-on-exec; dup2() makes fds 3.. inheritable.
	 */
	for (int i = 0; i < n; i++) {
		high[i] = fcntl(l->fds[i], F_DUPFD_CLOEXEC, 3 + n);
		if (high[i] < 0)
			goto fail;
	}
	for (int i = 0; i < n; i++)
		if (dup2(high[i], 3 + i) < 0)
			goto fail;
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	if (setenv("LISTEN_PID", pid, 1) < 0)
		goto fail;
	signal(SIGPIPE, r->c->saved_sigpipe);
	sigprocmask(SIG_SETMASK, oldmask, NULL);
	execvp(argv[0], argv);
	e = errno;
	if (e == EACCES && !strchr(argv[0], '/') && !path_has(argv[0]))
		e = ENOENT;
	if (e == ENOENT)
		dprintf(2, "portctl: cannot run '%s': command not found\n", argv[0]);
	else
		dprintf(2, "portctl: cannot run '%s': %s\n", argv[0], strerror(e));
	_exit(e == ENOENT ? 127 : 126);
fail:
	dprintf(2, "portctl: cannot pass the sockets to '%s': %s\n", argv[0], strerror(errno));
	_exit(126);
}

/* CMD's words with {port}, {portN} put in; *ntokens: how many there were. NULL if out of memory. */
static char **run_argv(const struct cli *c, const struct portd_lease *l, size_t *ntokens)
{
	char **v = calloc((size_t)c->cmd_argc + 1, sizeof(*v));
	long bad;

	*ntokens = 0;
	if (!v)
		return NULL;
	for (int i = 0; i < c->cmd_argc; i++) {
		v[i] = malloc(strlen(c->cmd_argv[i]) + 1);
		if (!v[i]) {
			for (int k = 0; k < i; k++)
				free(v[k]);
			free(v);
			return NULL;
		}
		*ntokens += port_tokens(c->cmd_argv[i], l->ports, l->count, v[i], &bad);
	}
	return v;
}

static void run_argv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* PORT, PORTS, LISTEN_FDS, LISTEN_FDNAMES (LISTEN_PID comes in the child). */
static int run_env(const struct portd_lease *l)
{
	char ports[PORTD_MAX_PORTS * 6 + 1] = "", names[PORTD_MAX_FDS * 10 + 1] = "", num[24], first[8];
	size_t po = 0, no = 0;

	for (size_t i = 0; i < l->count; i++)
		po += (size_t)snprintf(ports + po, sizeof(ports) - po, "%s%u", i ? " " : "", (unsigned)l->ports[i]);
	/* fds in lease order: one per port, or TCP then UDP per port for BOTH. Names hold no ':'. */
	for (size_t i = 0; i < l->nfds; i++) {
		bool both = l->transport == PORTD_TRANSPORT_BOTH;
		bool udp = l->transport == PORTD_TRANSPORT_UDP || (both && i % 2);

		no += (size_t)snprintf(names + no, sizeof(names) - no, "%s%s-%u", i ? ":" : "", udp ? "udp" : "tcp",
				       (unsigned)l->ports[both ? i / 2 : i]);
	}
	snprintf(num, sizeof(num), "%zu", l->nfds);
	snprintf(first, sizeof(first), "%u", (unsigned)l->ports[0]);
	if (setenv("PORT", first, 1) < 0 || setenv("PORTS", ports, 1) < 0 || setenv("LISTEN_FDS", num, 1) < 0 ||
	    setenv("LISTEN_FDNAMES", names, 1) < 0)
		return -1;
	return 0;
}

/* Listen on the TCP sockets, unless the rule (see run's help) or --no-listen says not to. */
static int run_listen(const struct cli *c, const struct portd_lease *l, size_t ntokens)
{
	bool want = (c->seen & OPT_LISTEN) || (!(c->seen & OPT_NO_LISTEN) && ntokens == 0);

	for (size_t i = 0; want && i < l->nfds; i++) {
		int type = 0;
		socklen_t len = sizeof(type);

		if (getsockopt(l->fds[i], SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
			continue;
		if (listen(l->fds[i], SOMAXCONN) < 0) {
			size_t port = l->transport == PORTD_TRANSPORT_BOTH ? i / 2 : i;

			msg("cannot listen on TCP port %u: %s", (unsigned)l->ports[port < l->count ? port : 0],
			    strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Wait for CMD, passing signals on and renewing the lease. Returns CMD's wait status. */
static int run_wait(struct run *r, int sfd, int pidfd)
{
	for (;;) {
		struct pollfd pf[3] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = pidfd, .events = POLLIN },
			{ .fd = r->pending && r->c->conn ? portd_fd(r->c->conn) : -1, .events = POLLIN },
		};
		uint64_t now = mono_ms(), next = r->pending ? r->reply_by : r->renew_at;
		int timeout = next == 0 ? -1 : next <= now ? 0 : next - now > INT_MAX ? INT_MAX : (int)(next - now);
		struct signalfd_siginfo si;
		int status;
		pid_t w;

		if (poll(pf, 3, timeout) < 0 && errno != EINTR) {
			/* Cannot happen with these fds; still, never leave CMD behind: wait without the loop. */
			msg("warning: poll: %s: no more renewals or signals passed on", strerror(errno));
			while (waitpid(r->child, &status, 0) < 0 && errno == EINTR)
				;
			return status;
		}
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			if (si.ssi_signo != SIGCHLD)
				run_forward(r, &si);
		w = waitpid(r->child, &status, WNOHANG);
		if (w == r->child)
			return status;
		if (w < 0 && errno != EINTR) { /* ECHILD: cannot happen, we are CMD's parent */
			msg("waitpid: %s", strerror(errno));
			return W_EXITCODE(EXIT_COMM, 0);
		}
		if (pf[2].revents)
			run_renew_recv(r);
		now = mono_ms();
		if (r->pending && now >= r->reply_by)
			run_renew_failed(r, "renewing (no answer from portd)", -ETIMEDOUT);
		else if (!r->pending && r->renew_at && now >= r->renew_at)
			run_renew_send(r);
	}
}

static int cmd_run(struct cli *c, struct portd *p)
{
	struct portd_lease_opts o;
	struct portd_lease l;
	struct run r = { .c = c };
	sigset_t set, oldmask;
	size_t ntokens;
	char **argv;
	int e, sfd, pidfd, status;

	/* FD + TIE: the sockets come here, and the lease ends the moment portctl does. */
	lease_opts(c, PORTD_FLAG_FD | PORTD_FLAG_TIE, &o);
	e = portd_lease(p, &o, &l, c->timeout_ms);
	if (e < 0)
		return lease_failed(c, p, e);
	r.id = l.id;
	r.ttl = l.ttl;
	r.port0 = l.ports[0];
	r.transport = l.transport;
	argv = run_argv(c, &l, &ntokens);
	if (!argv || run_env(&l) < 0) {
		msg("out of memory");
		goto fail;
	}
	if (run_listen(c, &l, ntokens) < 0)
		goto fail;

	/* Blocked from before the fork: a signal sent meanwhile waits in the signalfd and is passed on. */
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(run_forwarded) / sizeof(run_forwarded[0]); i++)
		sigaddset(&set, run_forwarded[i]);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &oldmask);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		msg("signalfd: %s", strerror(errno));
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		goto fail;
	}
	fflush(NULL);
	r.child = fork();
	if (r.child < 0) {
		msg("cannot start '%s': fork: %s", argv[0], strerror(errno));
		close(sfd);
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		goto fail;
	}
	if (r.child == 0)
		run_child(&r, &l, argv, &oldmask); /* does not return */

	portd_lease_close_fds(&l); /* CMD has them; portd keeps its own copies until the lease ends */
	run_argv_free(argv);
	pidfd = pidfd_open(r.child, 0); /* -1 on kernels before 5.3: SIGCHLD on the signalfd still wakes us */
	run_schedule_renew(&r);
	status = run_wait(&r, sfd, pidfd);
	if (pidfd >= 0)
		close(pidfd);
	close(sfd);

	/* CMD is gone: end the lease now rather than when portctl exits (it is tied to us either way). */
	if (!r.gone && !c->conn) {
		if (portd_connect(c->path, &c->conn) < 0)
			c->conn = NULL;
		else
			r.reconnected = true;
	}
	if (!r.gone && c->conn && (!r.reconnected || run_verify(&r) == 1)) {
		e = portd_release(c->conn, r.id, c->timeout_ms);
		if (e < 0 && e != -PORTD_E_NOENT)
			msg("warning: releasing lease %" PRIu64 " failed: %s (it ends when portctl exits)", r.id,
			    portd_strerror(e));
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);

fail:
	run_argv_free(argv);
	portd_lease_close_fds(&l);
	e = portd_release(p, l.id, c->timeout_ms);
	if (e < 0)
		msg("and releasing lease %" PRIu64 " failed: %s", l.id, portd_strerror(e));
	return EXIT_REFUSED;
}

static int cmd_renew(struct cli *c, struct portd *p)
{
	uint32_t granted;
	int r;

	r = portd_renew(p, c->id, c->ttl, &granted, c->timeout_ms);
	if (r == -PORTD_E_INVAL) { /* the one lease renew refuses so */
		msg("lease %" PRIu64 " has no ttl to renew: a portserver lease ends when its process exits",
		    c->id);
		return EXIT_REFUSED;
	}
	if (r < 0)
		return request_failed(c, p, r);
	if (c->json) {
		struct json j = { .f = stdout };

		json_open(&j, '{');
		json_uint(&j, "id", c->id);
		json_uint(&j, "ttl", granted);
		json_close(&j, '}');
	}
	return EXIT_OK;
}

static int cmd_release(struct cli *c, struct portd *p)
{
	uint64_t id = c->id;
	int r;

	if (c->id)
		r = portd_release(p, c->id, c->timeout_ms);
	else
		r = portd_release_port(p, c->port, c->transport, &id, c->timeout_ms);
	if (r < 0)
		return request_failed(c, p, r);
	if (c->json) {
		struct json j = { .f = stdout };

		json_open(&j, '{');
		json_uint(&j, "id", id);
		json_close(&j, '}');
	}
	return EXIT_OK;
}

#define LIST_COLS 8
#define CELL_SIZE 128 /* 16 ports of 5 digits and commas fit */

static const char *lease_kind(uint32_t flags)
{
	if (flags & PORTD_FLAG_PORTSERVER)
		return "portserver";
	return (flags & PORTD_FLAG_FD) ? "fd" : "number";
}

static void list_row(char (*row)[CELL_SIZE], const struct portd_lease_info *e)
{
	size_t i, off = 0;
	char d[32];

	snprintf(row[0], CELL_SIZE, "%" PRIu64, e->id);
	row[1][0] = '\0';
	for (i = 0; i < e->count && i < PORTD_MAX_PORTS && off < CELL_SIZE; i++)
		off += (size_t)snprintf(row[1] + off, CELL_SIZE - off, "%s%" PRIu16, i ? "," : "", e->ports[i]);
	snprintf(row[2], CELL_SIZE, "%s", transport_name(e->transport));
	snprintf(row[3], CELL_SIZE, "%s", lease_kind(e->flags));
	format_duration(row[4], CELL_SIZE, e->ttl);
	if (e->expires_in_ms == PORTD_NO_DEADLINE) {
		/* A portserver lease: no ttl; it ends when its process (TIED) exits. */
		snprintf(row[4], CELL_SIZE, "-");
		snprintf(row[5], CELL_SIZE, "never");
	} else if (e->expires_in_ms == 0) {
		snprintf(row[5], CELL_SIZE, "now");
	} else {
		/* Rounded up: "in 1s" until the very end, never "in 0s". */
		format_duration(d, sizeof(d), e->expires_in_ms / 1000 + (e->expires_in_ms % 1000 != 0));
		snprintf(row[5], CELL_SIZE, "in %s", d);
	}
	if (e->pid > 0)
		snprintf(row[6], CELL_SIZE, "%" PRIu32 "/%ld", e->uid, (long)e->pid);
	else
		snprintf(row[6], CELL_SIZE, "%" PRIu32 "/-", e->uid);
	if (e->tied_pid > 0)
		snprintf(row[7], CELL_SIZE, "%ld", (long)e->tied_pid);
	else
		snprintf(row[7], CELL_SIZE, "-");
}

/* One table line: columns padded to their width, two spaces apart, the last one not padded. */
static void list_line(const char *const *cells, const size_t *width)
{
	size_t k;

	for (k = 0; k + 1 < LIST_COLS; k++)
		printf("%-*s  ", (int)width[k], cells[k]);
	printf("%s\n", cells[LIST_COLS - 1]);
}

/* Two passes, formatting each row twice, so that the table needs no memory beyond one row. */
static void list_table(const struct portd_lease_info *l, size_t n)
{
	static const char *const header[LIST_COLS] = { "ID", "PORT(S)", "PROTO", "KIND",
						       "TTL", "EXPIRES", "OWNER", "TIED" };
	char row[LIST_COLS][CELL_SIZE];
	const char *cells[LIST_COLS];
	size_t width[LIST_COLS], i, k;

	for (k = 0; k < LIST_COLS; k++) {
		width[k] = strlen(header[k]);
		cells[k] = row[k];
	}
	for (i = 0; i < n; i++) {
		list_row(row, &l[i]);
		for (k = 0; k < LIST_COLS; k++)
			if (strlen(row[k]) > width[k])
				width[k] = strlen(row[k]);
	}
	list_line(header, width);
	for (i = 0; i < n; i++) {
		list_row(row, &l[i]);
		list_line(cells, width);
	}
}

static void list_json(const struct portd_lease_info *l, size_t n)
{
	struct json j = { .f = stdout };
	size_t i;

	json_open(&j, '{');
	json_key(&j, "leases");
	json_open(&j, '[');
	for (i = 0; i < n; i++) {
		json_open(&j, '{');
		json_uint(&j, "id", l[i].id);
		json_ports(&j, l[i].ports, l[i].count < PORTD_MAX_PORTS ? l[i].count : PORTD_MAX_PORTS);
		json_string(&j, "transport", transport_name(l[i].transport));
		json_string(&j, "kind", lease_kind(l[i].flags));
		json_uint(&j, "ttl", l[i].ttl);
		if (l[i].expires_in_ms == PORTD_NO_DEADLINE)
			json_null(&j, "expires_in_ms"); /* no deadline: ends with tied_pid */
		else
			json_uint(&j, "expires_in_ms", l[i].expires_in_ms);
		json_uint(&j, "uid", l[i].uid);
		json_uint(&j, "pid", l[i].pid > 0 ? (uint64_t)l[i].pid : 0);
		json_uint(&j, "tied_pid", l[i].tied_pid > 0 ? (uint64_t)l[i].tied_pid : 0);
		json_close(&j, '}');
	}
	json_close(&j, ']');
	json_close(&j, '}');
}

static int cmd_list(struct cli *c, struct portd *p)
{
	struct portd_lease_info *l;
	int n;

	n = portd_list(p, &l, c->timeout_ms);
	if (n < 0)
		return request_failed(c, p, n);
	if (c->json)
		list_json(l, (size_t)n);
	else
		list_table(l, (size_t)n);
	free(l);
	return EXIT_OK;
}

/* The daemon's version string, made safe for a terminal. */
static void printable(char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s >= 0x7f)
			*s = '?';
}

static int cmd_status(struct cli *c, struct portd *p)
{
	struct portd_status s;
	char up[32];
	int r;

	r = portd_status_flags(p, (c->seen & OPT_FDS) ? PORTD_STATUS_COUNT_FDS : 0, &s, c->timeout_ms);
	if (r < 0)
		return request_failed(c, p, r);
	s.version[sizeof(s.version) - 1] = '\0';
	/* A daemon always has fds open (its sockets): 0 means not counted, or not for this caller. */

	if (c->json) {
		struct json j = { .f = stdout };

		json_open(&j, '{');
		json_string(&j, "version", s.version);
		json_uint(&j, "uptime_ms", s.uptime_ms);
		json_uint(&j, "leases", s.leases);
		json_uint(&j, "caller_leases", s.caller_leases);
		json_uint(&j, "ports_held", s.ports_held);
		json_uint(&j, "quarantined", s.quarantined);
		json_uint(&j, "connections", s.connections);
		json_string(&j, "port_source", s.range_lo ? "range" : "kernel");
		json_uint(&j, "range_lo", s.range_lo);
		json_uint(&j, "range_hi", s.range_hi);
		json_bool(&j, "reserved", s.flags & PORTD_STATUS_RESERVED);
		json_uint(&j, "default_ttl", s.default_ttl);
		json_uint(&j, "max_ttl", s.max_ttl);
		json_uint(&j, "max_leases", s.max_leases);
		json_uint(&j, "max_per_uid", s.max_per_uid);
		json_uint(&j, "quarantine", s.quarantine);
		json_uint(&j, "heap_bytes", s.heap_bytes);
		if (s.open_fds)
			json_uint(&j, "open_fds", s.open_fds);
		else
			json_null(&j, "open_fds");
		json_uint(&j, "eph_lo", s.eph_lo);
		json_uint(&j, "eph_hi", s.eph_hi);
		json_uint(&j, "eph_in_use", s.eph_in_use);
		json_bool(&j, "eph_low", s.flags & PORTD_STATUS_EPH_LOW);
		json_close(&j, '}');
		return EXIT_OK;
	}
	printable(s.version);
	format_duration(up, sizeof(up), s.uptime_ms / 1000);
	printf("version:       %s\n", s.version[0] ? s.version : "?");
	printf("uptime:        %s\n", up);
	printf("leases:        %" PRIu32 " (yours: %" PRIu32 ")\n", s.leases, s.caller_leases);
	printf("ports held:    %" PRIu32 "\n", s.ports_held);
	printf("quarantined:   %" PRIu32 "\n", s.quarantined);
	printf("connections:   %" PRIu32 "\n", s.connections);
	printf("memory:        %" PRIu64 " KiB heap\n", (s.heap_bytes + 1023) / 1024);
	if (s.open_fds)
		printf("open fds:      %" PRIu32 "\n", s.open_fds);
	else if (c->seen & OPT_FDS)
		printf("open fds:      not counted: only root and portd's own user may count them\n");
	if (s.range_lo)
		printf("port source:   range %" PRIu16 "-%" PRIu16 "%s\n", s.range_lo, s.range_hi,
		       (s.flags & PORTD_STATUS_RESERVED) ? " (reserved: UDP number leases possible)" : "");
	else
		printf("port source:   kernel (bind to port 0)\n");
	if (s.eph_lo)
		printf("host ports:    %" PRIu32 " of %u in use (%" PRIu16 "-%" PRIu16 ")\n", s.eph_in_use,
		       (unsigned)s.eph_hi - s.eph_lo + 1, s.eph_lo, s.eph_hi);
	else
		printf("host ports:    not scanned by portd (see its log; `portctl ports` reads them)\n");
	format_duration(up, sizeof(up), s.default_ttl);
	printf("default ttl:   %s\n", up);
	format_duration(up, sizeof(up), s.max_ttl);
	printf("max ttl:       %s\n", up);
	printf("max leases:    %" PRIu32 "\n", s.max_leases);
	printf("max per uid:   %" PRIu32 "\n", s.max_per_uid);
	format_duration(up, sizeof(up), s.quarantine);
	printf("quarantine:    %s\n", up);
	if (s.flags & PORTD_STATUS_EPH_LOW)
		print_warning("the host's ephemeral ports are close to exhaustion: `portctl ports` shows "
			      "who holds them");
	return EXIT_OK;
}

/* ---- ports ---------------------------------------------------------------- */

/* What portd holds, as far as STATUS tells: ports_held, and where they come from. */
struct ports_portd {
	bool running;
	char why[320];       /* not running: what connecting or asking said */
	struct portd_status st;
	int64_t held_in_range; /* -1: unknown (its range is partly inside) */
	const char *where;   /* for people: how its ports relate to the range */
};

static void ports_portd(const struct cli *c, struct portd *p, const struct hostports *h, struct ports_portd *out)
{
	struct portd_status *st = &out->st;
	int r;

	*out = (struct ports_portd){ .held_in_range = -1 };
	if (!p && (c->conn_err == -ENOENT || c->conn_err == -ECONNREFUSED || c->conn_err == -ENOTDIR)) {
		snprintf(out->why, sizeof(out->why), "not running at %s", c->path);
		return;
	}
	if (!p) {
		snprintf(out->why, sizeof(out->why), "not reachable at %s: %s", c->path, portd_strerror(c->conn_err));
		return;
	}
	r = portd_status(p, st, c->timeout_ms);
	if (r < 0) {
		snprintf(out->why, sizeof(out->why), "no status from %s: %s", c->path, portd_strerror(r));
		return;
	}
	out->running = true;
	if (!st->range_lo) {
		/* bind(0) and portd's own choice past thousands held both pick from the range. */
		out->held_in_range = st->ports_held;
		out->where = "chosen by the kernel from this range";
	} else if (st->range_hi < h->lo || st->range_lo > h->hi) {
		out->held_in_range = 0;
		out->where = "outside this range";
	} else if (st->flags & PORTD_STATUS_RESERVED) {
		out->held_in_range = 0;
		out->where = "reserved: not counted above";
	} else if (st->range_lo >= h->lo && st->range_hi <= h->hi) {
		out->held_in_range = st->ports_held;
		out->where = "inside this range: counted above";
	} else {
		out->where = "partly inside this range";
	}
}

/* The share of usable ports in use, rounded down to a tenth of a percent: "0.8", "83.3". */
static void ports_percent(const struct hostports *h, char *buf, size_t len)
{
	uint64_t permille = h->usable ? (uint64_t)h->in_use * 1000 / h->usable : 1000;

	snprintf(buf, len, "%" PRIu64 ".%" PRIu64, permille / 10, permille % 10);
}

static const char *user_name(uint32_t uid)
{
	struct passwd *pw = getpwuid((uid_t)uid);

	return pw ? pw->pw_name : NULL;
}

static void ports_json(const struct hostports *h, const struct ports_portd *pd)
{
	struct json j = { .f = stdout };
	char pct[16];

	json_open(&j, '{');
	json_key(&j, "range");
	json_open(&j, '{');
	json_uint(&j, "lo", h->lo);
	json_uint(&j, "hi", h->hi);
	json_uint(&j, "size", h->size);
	json_close(&j, '}');
	json_key(&j, "reserved");
	json_open(&j, '{');
	json_string(&j, "list", h->reserved_list);
	json_uint(&j, "in_range", h->reserved);
	json_close(&j, '}');
	json_uint(&j, "usable", h->usable);
	json_uint(&j, "in_use", h->in_use);
	ports_percent(h, pct, sizeof(pct));
	json_key(&j, "percent");
	json_value_begin(&j);
	fputs(pct, j.f);
	json_bool(&j, "low", hostports_low(h, false));
	json_key(&j, "tcp");
	json_open(&j, '{');
	json_uint(&j, "listening", h->tcp_listen);
	json_uint(&j, "established", h->tcp_established);
	json_uint(&j, "time_wait", h->tcp_time_wait);
	json_uint(&j, "bound", h->tcp_bound);
	json_uint(&j, "other", h->tcp_other);
	json_close(&j, '}');
	json_uint(&j, "udp", h->udp);
	json_uint(&j, "sockets", h->sockets);
	json_key(&j, "by_user");
	json_open(&j, '[');
	for (size_t i = 0; i < h->nowners; i++) {
		const char *name = user_name(h->owners[i].uid);

		json_open(&j, '{');
		json_uint(&j, "uid", h->owners[i].uid);
		if (name)
			json_string(&j, "user", name);
		else
			json_null(&j, "user");
		json_uint(&j, "ports", h->owners[i].ports);
		json_close(&j, '}');
	}
	json_close(&j, ']');
	json_key(&j, "portd");
	json_open(&j, '{');
	json_bool(&j, "running", pd->running);
	if (pd->running) {
		json_uint(&j, "ports_held", pd->st.ports_held);
		json_string(&j, "port_source", pd->st.range_lo ? "range" : "kernel");
		json_uint(&j, "range_lo", pd->st.range_lo);
		json_uint(&j, "range_hi", pd->st.range_hi);
		json_bool(&j, "reserved", pd->st.flags & PORTD_STATUS_RESERVED);
		if (pd->held_in_range >= 0)
			json_uint(&j, "held_in_range", (uint64_t)pd->held_in_range);
		else
			json_null(&j, "held_in_range");
	}
	json_close(&j, '}');
	json_close(&j, '}');
}

#define PORTS_LABEL 20 /* "  tcp established:  " */

static void ports_line(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ports_line(const char *label, const char *fmt, ...)
{
	va_list ap;

	printf("%-*s", PORTS_LABEL, label);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void ports_text(const struct hostports *h, const struct ports_portd *pd)
{
	char users[256] = "", pct[16];
	size_t off = 0;

	ports_line("range:", "%u-%u (%" PRIu32 " ports)", (unsigned)h->lo, (unsigned)h->hi, h->size);
	if (h->reserved_list[0])
		ports_line("reserved:", "%s (%" PRIu32 " in the range)", h->reserved_list, h->reserved);
	else
		ports_line("reserved:", "none");
	ports_percent(h, pct, sizeof(pct));
	if (h->reserved)
		ports_line("in use:", "%" PRIu32 " of %" PRIu32 " not reserved (%s%%)", h->in_use, h->usable, pct);
	else
		ports_line("in use:", "%" PRIu32 " of %" PRIu32 " (%s%%)", h->in_use, h->usable, pct);
	ports_line("  tcp listening:", "%" PRIu32, h->tcp_listen);
	ports_line("  tcp established:", "%" PRIu32, h->tcp_established);
	ports_line("  tcp time-wait:", "%" PRIu32, h->tcp_time_wait);
	ports_line("  tcp bound:", "%" PRIu32, h->tcp_bound);
	ports_line("  tcp other:", "%" PRIu32, h->tcp_other);
	ports_line("  udp:", "%" PRIu32, h->udp);
	for (size_t i = 0; i < h->nowners && off < sizeof(users); i++) {
		const char *name = user_name(h->owners[i].uid);

		if (name)
			off += (size_t)snprintf(users + off, sizeof(users) - off, "%s%s %" PRIu32, i ? ", " : "",
						name, h->owners[i].ports);
		else
			off += (size_t)snprintf(users + off, sizeof(users) - off, "%suid %" PRIu32 " %" PRIu32,
						i ? ", " : "", h->owners[i].uid, h->owners[i].ports);
	}
	ports_line("by user:", "%s", users[0] ? users : "none");
	if (pd->running && !pd->st.range_lo)
		ports_line("portd:", "%" PRIu32 " ports held, %s", pd->st.ports_held, pd->where);
	else if (pd->running)
		ports_line("portd:", "%" PRIu32 " ports held in its range %u-%u, %s", pd->st.ports_held,
			   (unsigned)pd->st.range_lo, (unsigned)pd->st.range_hi, pd->where);
	else
		ports_line("portd:", "%s", pd->why);
	if (hostports_low(h, false))
		print_warning("%s%% of the usable ephemeral ports are in use: %s", pct, HOSTPORTS_ADVICE);
}

static int cmd_ports(struct cli *c, struct portd *p)
{
	struct ports_portd pd;
	struct hostports h;
	int r;

	r = hostports_scan(&h, HOSTPORTS_OWNERS);
	if (r < 0) {
		msg("cannot read the host's ports (%s and NETLINK_SOCK_DIAG): %s", HOSTPORTS_RANGE_SYSCTL,
		    strerror(-r));
		return EXIT_REFUSED;
	}
	ports_portd(c, p, &h, &pd);
	if (c->json)
		ports_json(&h, &pd);
	else
		ports_text(&h, &pd);
	return EXIT_OK;
}

/* ---- main ---------------------------------------------------------------- */

/*
 * Fill closed fds 0-2 with /dev/null. Otherwise the control socket would get
 * the lowest free fd, and a closed stdout or stderr would make printf() and
 * the error messages go to portd. Returns whether stdout was closed.
 */
static bool std_fds_guard(void)
{
	bool stdout_closed = false;
	int fd;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if (fd == 1)
			stdout_closed = true;
		/* The lower fds are open by now, so open() returns exactly fd. */
		if (open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) < 0)
			return stdout_closed;
	}
	return stdout_closed;
}

/* Whether the command prints a result on stdout. */
static bool has_output(const struct cli *c)
{
	return c->json || c->cmd->run == cmd_lease || c->cmd->run == cmd_list || c->cmd->run == cmd_status ||
	       c->cmd->run == cmd_ports;
}

int main(int argc, char **argv)
{
	struct cli c = { .timeout_ms = DEFAULT_TIMEOUT_MS };
	struct portd *p;
	bool stdout_closed = std_fds_guard();
	int r;

	/* A closed stdout must be a write error we can act on (release the lease), not a silent death. */
	c.saved_sigpipe = signal(SIGPIPE, SIG_IGN);

	r = parse_args(&c, argc, argv);
	if (r)
		return r;
	r = check_args(&c);
	if (r == EXIT_OK && stdout_closed) {
		msg("stdout is closed: nowhere to print the help");
		return EXIT_REFUSED;
	}
	if (r >= 0)
		return r == EXIT_OK && stdout_flush() < 0 ? EXIT_REFUSED : r;

	if (stdout_closed && has_output(&c)) {
		/* Checked before asking portd: a lease whose port nobody sees would only sit there. */
		msg("stdout is closed: nowhere to print the result");
		return EXIT_REFUSED;
	}
	if (c.socket) {
		snprintf(c.path, sizeof(c.path), "%s", c.socket);
	} else {
		r = portd_socket_path(c.path, sizeof(c.path));
		if (r < 0 && c.cmd->run != cmd_ports)
			return connect_failed(&c, r);
		if (r < 0)
			c.path[0] = '\0';
	}
	/* ports shows the host's ports with or without a portd (with p NULL). */
	r = c.path[0] ? portd_connect(c.path, &p) : -ENAMETOOLONG;
	if (r < 0 && c.cmd->run != cmd_ports)
		return connect_failed(&c, r);
	if (r < 0) {
		c.conn_err = r;
		p = NULL;
	}
	c.conn = p;
	r = c.cmd->run(&c, p);
	if (r == EXIT_OK && stdout_flush() < 0)
		r = EXIT_REFUSED;
	portd_disconnect(c.conn); /* run may have replaced p */
	return r;
}
