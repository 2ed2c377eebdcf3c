/*
 * portctl: the command-line client of portd, on top of libportd alone.
 *
 * stdout carries only the result (a port number, or JSON with --json), so
 * that PORT=$(portctl lease) works; every message goes to stderr as
 * "portctl: ...", saying what went wrong and what to do about it. The exit
 * status tells scripts which kind of failure it was (see usage_text).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
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
};
#define OPT_GLOBAL (OPT_SOCKET | OPT_TIMEOUT | OPT_HELP | OPT_VERSION)

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
};

struct command {
	const char *name;
	int (*run)(struct cli *c, struct portd *p);
	unsigned opts;       /* OPT_* allowed besides OPT_GLOBAL */
	size_t min_args, max_args;
	const char *help;
};

static int cmd_lease(struct cli *c, struct portd *p);
static int cmd_renew(struct cli *c, struct portd *p);
static int cmd_release(struct cli *c, struct portd *p);
static int cmd_list(struct cli *c, struct portd *p);
static int cmd_status(struct cli *c, struct portd *p);

static const char usage_text[] =
	"Usage: portctl [--socket PATH] [--timeout MS] COMMAND [ARGS]\n"
	"\n"
	"Lease free ports from portd, which keeps each leased port reserved so that no\n"
	"other process is handed it, until the lease is released or its ttl runs out.\n"
	"\n"
	"Commands:\n"
	"  lease [--ttl SECONDS] [--json]       lease a free TCP port; prints the port number\n"
	"  renew ID [--ttl SECONDS] [--json]    extend lease ID\n"
	"  release ID | --port PORT [--json]    end a lease, by id or by port\n"
	"  list [--json]                        show your leases (root: all leases)\n"
	"  status [--json]                      show portd's state and limits\n"
	"  help [COMMAND]                       show this help, or a command's (also COMMAND --help)\n"
	"\n"
	"Options (before or after COMMAND):\n"
	"  --socket PATH   portd's control socket (default: $PORTD_SOCKET if set, else\n"
	"                  $XDG_RUNTIME_DIR/portd.sock, else /run/portd/portd.sock)\n"
	"  --timeout MS    how long to wait for portd, in milliseconds (default 5000)\n"
	"  --json          print the result as JSON\n"
	"  -h, --help      show help and exit\n"
	"  --version       show the versions of portctl and libportd and exit\n"
	"\n"
	"Example:\n"
	"  PORT=$(portctl lease --ttl 600) && redis-server --port \"$PORT\"\n"
	"\n"
	"Exit status:\n"
	"  0  success\n"
	"  1  portd refused the request (no such lease, lease limit, ttl limit, no free\n"
	"     port, ...), or the result could not be written\n"
	"  2  usage error\n"
	"  3  portd not reachable (no daemon at the socket, permission denied, ...)\n"
	"  4  protocol error, version mismatch, timeout, or portd closed the connection\n";

static const struct command commands[] = {
	{ "lease", cmd_lease, OPT_TTL | OPT_JSON, 0, 0,
	  "Usage: portctl lease [--ttl SECONDS] [--json]\n"
	  "\n"
	  "Lease one free TCP port. portd keeps the port reserved (bound, not listening)\n"
	  "until the lease is released or its ttl runs out, and no other process is\n"
	  "handed it meanwhile; a server that sets SO_REUSEADDR (most do) can still bind\n"
	  "and listen on it. The lease is not tied to this process: end it with\n"
	  "`portctl release --port PORT` (or `portctl release ID`), or let it expire.\n"
	  "\n"
	  "Prints the port number and a newline, nothing else:\n"
	  "  PORT=$(portctl lease --ttl 60)\n"
	  "With --json:\n"
	  "  {\"id\": 7, \"ports\": [40123], \"transport\": \"tcp\", \"ttl\": 60, \"expires_in\": 60}\n"
	  "(ttl and expires_in in seconds).\n"
	  "\n"
	  "Options:\n"
	  "  --ttl SECONDS   how long the lease lasts (default: portd's default ttl,\n"
	  "                  see `portctl status`)\n"
	  "  --json          print the lease as JSON\n" },
	{ "renew", cmd_renew, OPT_TTL | OPT_JSON, 1, 1,
	  "Usage: portctl renew ID [--ttl SECONDS] [--json]\n"
	  "\n"
	  "Restart the ttl of lease ID: it now ends SECONDS from now (default: portd's\n"
	  "default ttl). Prints nothing; with --json: {\"id\": 7, \"ttl\": 120}\n"
	  "\n"
	  "Options:\n"
	  "  --ttl SECONDS   the new ttl\n"
	  "  --json          print the lease id and the ttl granted as JSON\n" },
	{ "release", cmd_release, OPT_PORT | OPT_JSON, 0, 1,
	  "Usage: portctl release ID [--json]\n"
	  "       portctl release --port PORT [--json]\n"
	  "\n"
	  "End lease ID, or the lease holding PORT. portd stops reserving its port(s);\n"
	  "a released port is not handed out again for a while (reuse quarantine).\n"
	  "Prints nothing; with --json: {\"id\": 7}\n"
	  "\n"
	  "Options:\n"
	  "  --port PORT     release the lease holding this port, whatever its id\n"
	  "  --json          print the id of the lease released as JSON\n" },
	{ "list", cmd_list, OPT_JSON, 0, 0,
	  "Usage: portctl list [--json]\n"
	  "\n"
	  "Show your leases (root sees everyone's), one per line under a header:\n"
	  "  ID       lease id\n"
	  "  PORT(S)  the port numbers\n"
	  "  PROTO    tcp, udp or both\n"
	  "  KIND     fd (the socket was handed to a process) or number\n"
	  "  TTL      the ttl granted\n"
	  "  EXPIRES  time left before the lease ends unless renewed\n"
	  "  OWNER    uid/pid of the process that took the lease (- if unknown)\n"
	  "  TIED     the process whose exit ends the lease, or -\n"
	  "With no leases, only the header is printed. With --json:\n"
	  "  {\"leases\": [{\"id\": 7, \"ports\": [40123], \"transport\": \"tcp\", \"kind\": \"number\",\n"
	  "    \"ttl\": 60, \"expires_in_ms\": 41250, \"uid\": 1000, \"pid\": 4242, \"tied_pid\": 0}]}\n"
	  "(pid and tied_pid are 0 when unknown or not tied).\n" },
	{ "status", cmd_status, OPT_JSON, 0, 0,
	  "Usage: portctl status [--json]\n"
	  "\n"
	  "Show portd's version, uptime, leases (all users' and yours), ports held,\n"
	  "ports in reuse quarantine, client connections, where ports come from, and\n"
	  "its limits. With --json, the same fields:\n"
	  "  version, uptime_ms, leases, caller_leases, ports_held, quarantined,\n"
	  "  connections, port_source (\"kernel\" or \"range\"), range_lo, range_hi,\n"
	  "  default_ttl, max_ttl, max_leases, max_per_uid, quarantine\n"
	  "(ttls and quarantine in seconds).\n" },
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

	if (c->cmd->run == cmd_release) {
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
		msg("portd at %s closed the connection without answering: it may have exited or be at its "
		    "connection limit (see its log)", c->path);
		return EXIT_COMM;
	case PORTD_E_QUOTA_UID:
		msg("per-user lease limit reached (%" PRIu32 " leases): release some (portctl list, portctl release ID)",
		    detail);
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
		if (detail)
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

/* ---- commands ---------------------------------------------------------------- */

static int cmd_lease(struct cli *c, struct portd *p)
{
	/* flags 0: portd keeps the socket; the lease outlives this process. */
	struct portd_lease_opts o = {
		.ttl = c->ttl, .flags = 0, .count = 1, .transport = PORTD_TRANSPORT_TCP, .port = 0, .pid = 0,
	};
	struct portd_lease l;
	int r;

	r = portd_lease(p, &o, &l, c->timeout_ms);
	if (r < 0)
		return request_failed(c, p, r);
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
		printf("%" PRIu16 "\n", l.ports[0]);
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

static int cmd_renew(struct cli *c, struct portd *p)
{
	uint32_t granted;
	int r;

	r = portd_renew(p, c->id, c->ttl, &granted, c->timeout_ms);
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
		r = portd_release_port(p, c->port, 0, &id, c->timeout_ms);
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

static void list_row(char (*row)[CELL_SIZE], const struct portd_lease_info *e)
{
	size_t i, off = 0;
	char d[32];

	snprintf(row[0], CELL_SIZE, "%" PRIu64, e->id);
	row[1][0] = '\0';
	for (i = 0; i < e->count && i < PORTD_MAX_PORTS && off < CELL_SIZE; i++)
		off += (size_t)snprintf(row[1] + off, CELL_SIZE - off, "%s%" PRIu16, i ? "," : "", e->ports[i]);
	snprintf(row[2], CELL_SIZE, "%s", transport_name(e->transport));
	snprintf(row[3], CELL_SIZE, "%s", (e->flags & PORTD_FLAG_FD) ? "fd" : "number");
	snprintf(row[4], CELL_SIZE, "%" PRIu32 "s", e->ttl);
	if (e->expires_in_ms == 0) {
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
		json_string(&j, "kind", (l[i].flags & PORTD_FLAG_FD) ? "fd" : "number");
		json_uint(&j, "ttl", l[i].ttl);
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

	r = portd_status(p, &s, c->timeout_ms);
	if (r < 0)
		return request_failed(c, p, r);
	s.version[sizeof(s.version) - 1] = '\0';

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
		json_uint(&j, "default_ttl", s.default_ttl);
		json_uint(&j, "max_ttl", s.max_ttl);
		json_uint(&j, "max_leases", s.max_leases);
		json_uint(&j, "max_per_uid", s.max_per_uid);
		json_uint(&j, "quarantine", s.quarantine);
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
	if (s.range_lo)
		printf("port source:   range %" PRIu16 "-%" PRIu16 "\n", s.range_lo, s.range_hi);
	else
		printf("port source:   kernel (bind to port 0)\n");
	printf("default ttl:   %" PRIu32 " s\n", s.default_ttl);
	printf("max ttl:       %" PRIu32 " s\n", s.max_ttl);
	printf("max leases:    %" PRIu32 "\n", s.max_leases);
	printf("max per uid:   %" PRIu32 "\n", s.max_per_uid);
	printf("quarantine:    %" PRIu32 " s\n", s.quarantine);
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
	return c->json || c->cmd->run == cmd_lease || c->cmd->run == cmd_list || c->cmd->run == cmd_status;
}

int main(int argc, char **argv)
{
	struct cli c = { .timeout_ms = DEFAULT_TIMEOUT_MS };
	struct portd *p;
	bool stdout_closed = std_fds_guard();
	int r;

	/* A closed stdout must be a write error we can act on (release the lease), not a silent death. */
	signal(SIGPIPE, SIG_IGN);

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
		if (r < 0)
			return connect_failed(&c, r);
	}
	r = portd_connect(c.path, &p);
	if (r < 0)
		return connect_failed(&c, r);
	r = c.cmd->run(&c, p);
	if (r == EXIT_OK && stdout_flush() < 0)
		r = EXIT_REFUSED;
	portd_disconnect(p);
	return r;
}
