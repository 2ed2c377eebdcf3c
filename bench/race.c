/*
 * race-bench: portd against bind(0)-close-rebind, under the same hammer.
 *
 *   race-bench [--workers N] [--seconds S] [--port-range LO-HI] [--portd PATH]
 *              [--portd-range LO-HI] [--hammer-pool N] [--hammer-conns N] [--host-netns]
 *
 * Three phases of S seconds, one after the other, each with N worker
 * processes and the same hammer running throughout (tests/race-common.c):
 * portd fd leases, portd number leases, then the naive approach. Prints a
 * markdown table of what it measured, with the settings.
 *
 * It moves into a private network namespace (root) and narrows
 * net.ipv4.ip_local_port_range there to --port-range (default 40000-43999), so
 * the hammer loads loopback ports nobody else uses; --host-netns runs in the
 * current namespace instead, with its range untouched.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "portd.h"
#include "netns.h"
#include "race-common.h"

struct opts {
	struct race_config cfg;
	uint16_t lo, hi;       /* ephemeral range to set, 0 = leave it */
	uint16_t plo, phi;     /* portd --range, 0 = the kernel's source */
	const char *portd;
	bool host_netns;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: race-bench [OPTIONS]\n"
		"Race portd's leases against bind(0)-close-rebind under a loopback hammer.\n\n"
		"  --workers N          worker processes per approach (default 16, at most %d)\n"
		"  --seconds S          length of each of the three phases (default 10)\n"
		"  --port-range LO-HI   net.ipv4.ip_local_port_range inside the private\n"
		"                       network namespace (default 40000-43999)\n"
		"  --portd PATH         the daemon (default: $PORTD_BIN, else ../daemon/portd\n"
		"                       next to this program)\n"
		"  --portd-range LO-HI  run portd with --range LO-HI (default: the kernel picks)\n"
		"  --hammer-pool N      sockets the hammer keeps bound (default 512)\n"
		"  --hammer-conns N     connections the hammer keeps open (default 256)\n"
		"  --host-netns         run in this network namespace (it hammers its loopback\n"
		"                       ports) and leave its port range alone\n"
		"  -h, --help           show this help\n",
		RACE_MAX_WORKERS);
}

static int bad(const char *opt, const char *val)
{
	fprintf(stderr, "race-bench: bad %s '%s'. Try 'race-bench --help'.\n", opt, val);
	return -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_WORKERS = 256, O_SECONDS, O_RANGE, O_PORTD, O_PRANGE, O_POOL, O_CONNS, O_HOST };
	static const struct option longopts[] = {
		{ "workers", required_argument, NULL, O_WORKERS },
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "port-range", required_argument, NULL, O_RANGE },
		{ "portd", required_argument, NULL, O_PORTD },
		{ "portd-range", required_argument, NULL, O_PRANGE },
		{ "hammer-pool", required_argument, NULL, O_POOL },
		{ "hammer-conns", required_argument, NULL, O_CONNS },
		{ "host-netns", no_argument, NULL, O_HOST },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool range_given = false;
	unsigned v;
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_WORKERS:
			if (race_parse_uint(optarg, 1, RACE_MAX_WORKERS, &o->cfg.workers) < 0)
				return bad("--workers", optarg);
			break;
		case O_SECONDS:
			if (race_parse_uint(optarg, 1, 3600, &v) < 0)
				return bad("--seconds", optarg);
			o->cfg.duration_ms = v * 1000;
			break;
		case O_RANGE:
			if (race_parse_range(optarg, &o->lo, &o->hi) < 0)
				return bad("--port-range", optarg);
			range_given = true;
			break;
		case O_PORTD:
			o->portd = optarg;
			break;
		case O_PRANGE:
			if (race_parse_range(optarg, &o->plo, &o->phi) < 0)
				return bad("--portd-range", optarg);
			break;
		case O_POOL:
			if (race_parse_uint(optarg, 1, 100000, &o->cfg.hammer_pool) < 0)
				return bad("--hammer-pool", optarg);
			break;
		case O_CONNS:
			if (race_parse_uint(optarg, 1, 100000, &o->cfg.hammer_conns) < 0)
				return bad("--hammer-conns", optarg);
			break;
		case O_HOST:
			o->host_netns = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			fprintf(stderr, "Try 'race-bench --help'.\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "race-bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (o->host_netns && range_given) {
		fprintf(stderr, "race-bench: --port-range would change the host's sysctl; "
				"it needs the private network namespace (drop --host-netns)\n");
		return -1;
	}
	if (o->host_netns)
		o->lo = o->hi = 0;
	if (!o->portd)
		o->portd = race_default_portd();
	return 0;
}

static void rate(char *buf, size_t len, uint64_t coll, uint64_t attempts)
{
	if (coll == 0)
		snprintf(buf, len, "0");
	else
		snprintf(buf, len, "%.3f %% (1 in %llu)", 100.0 * (double)coll / (double)attempts,
			 (unsigned long long)(attempts / coll));
}

static void row(const char *name, const struct race_counts *c, uint64_t ms)
{
	char r[64];
	uint64_t coll = race_collisions(c);

	rate(r, sizeof(r), coll, c->attempts);
	printf("| %s | %llu | %llu | %s | %llu |\n", name, (unsigned long long)c->attempts,
	       (unsigned long long)coll, r, (unsigned long long)(c->outcome[RACE_OK] * 1000 / ms));
}

static void details(const char *name, const struct race_result *res, const struct race_counts *c)
{
	const struct race_hammer_counts *h = &res->hammer;
	uint64_t ms = res->elapsed_ms;
	bool any = false;

	printf("- %s: ports %u-%u; ", name, c->port_min, c->port_max);
	for (int i = RACE_OK + 1; i < RACE_NOUTCOMES; i++)
		if (c->outcome[i]) {
			printf("%s%s %llu", any ? ", " : "collisions: ", race_outcome_name((enum race_outcome)i),
			       (unsigned long long)c->outcome[i]);
			any = true;
		}
	if (!any)
		printf("no collision");
	printf("; %llu errors", (unsigned long long)c->errors);
	if (c->errors)
		printf(" (last: %s)", portd_strerror(c->last_error));
	if (res->failed_workers)
		printf("; %u workers failed", res->failed_workers);
	if (!res->hammer_running)
		printf("; THE HAMMER DIED during this phase");
	printf("; hammer: %llu bind(0)/s, %llu connect()/s, took a port in a live lease %llu times, "
	       "a naive worker's port %llu times\n",
	       (unsigned long long)(h->binds * 1000 / ms), (unsigned long long)(h->connects * 1000 / ms),
	       (unsigned long long)h->hits_leased, (unsigned long long)h->hits_claimed);
}

int main(int argc, char **argv)
{
	struct opts o = { .cfg = RACE_CONFIG_INIT, .lo = 40000, .hi = 43999 };
	struct race_result res[3];
	struct race_daemon d;
	struct race *race;
	struct utsname u;
	uint16_t lo = 0, hi = 0;
	char prange[16];
	const char *pargs[12];
	size_t np = 0;
	int r;

	o.cfg.duration_ms = 10000;
	if (parse_args(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (access(o.portd, X_OK) < 0) {
		fprintf(stderr, "race-bench: no portd at %s: give --portd PATH or set PORTD_BIN\n", o.portd);
		return 2;
	}
	if (!o.host_netns) {
		if ((r = unshare_netns()) < 0) {
			fprintf(stderr,
				"race-bench: cannot enter a private network namespace (%s): it needs root.\n"
				"It hammers loopback ports; to do that in this namespace, give --host-netns.\n",
				strerror(-r));
			return 2;
		}
		if ((r = race_port_range_set(o.lo, o.hi)) < 0) {
			fprintf(stderr, "race-bench: cannot set ip_local_port_range to %u %u: %s\n", o.lo, o.hi,
				strerror(-r));
			return 2;
		}
	}
	if ((r = race_port_range_get(&lo, &hi)) < 0) {
		fprintf(stderr, "race-bench: cannot read ip_local_port_range: %s\n", strerror(-r));
		return 2;
	}

	race = race_new(&o.cfg);
	if (!race) {
		fprintf(stderr, "race-bench: %s\n", strerror(errno));
		return 1;
	}
	if ((r = race_hammer_start(race)) < 0) {
		fprintf(stderr, "race-bench: the hammer did not start: %s\n", strerror(-r));
		race_free(race);
		return 1;
	}
	pargs[np++] = "--quarantine";
	pargs[np++] = "0";
	pargs[np++] = "--max-leases"; /* each worker holds one lease at a time */
	pargs[np++] = "8192";
	pargs[np++] = "--max-leases-per-uid";
	pargs[np++] = "4096";
	if (o.plo) {
		snprintf(prange, sizeof(prange), "%u-%u", o.plo, o.phi);
		pargs[np++] = "--range";
		pargs[np++] = prange;
	}
	pargs[np] = NULL;
	if ((r = race_daemon_start(&d, o.portd, pargs)) < 0) {
		fprintf(stderr, "race-bench: %s did not start\n", o.portd);
		race_free(race);
		return 1;
	}
	fprintf(stderr, "race-bench: portd (fd kind), %u s...\n", o.cfg.duration_ms / 1000);
	r = race_run(race, RACE_PORTD_FD, d.sock, &res[0]);
	if (r == 0) {
		fprintf(stderr, "race-bench: portd (number kind), %u s...\n", o.cfg.duration_ms / 1000);
		r = race_run(race, RACE_PORTD_NUMBER, d.sock, &res[1]);
	}
	if (race_daemon_stop(&d) < 0)
		fprintf(stderr, "race-bench: portd did not exit cleanly\n");
	if (r == 0) {
		fprintf(stderr, "race-bench: naive bind(0)-close-rebind, %u s...\n", o.cfg.duration_ms / 1000);
		r = race_run(race, RACE_NAIVE, NULL, &res[2]);
	}
	race_free(race);
	if (r < 0) {
		fprintf(stderr, "race-bench: a phase could not start: %s\n", strerror(-r));
		return 1;
	}

	uname(&u);
	printf("# portd race benchmark\n\n");
	printf("- workers: %u processes per approach, %u s per approach, one approach after the other\n",
	       o.cfg.workers, o.cfg.duration_ms / 1000);
	printf("- ephemeral range (net.ipv4.ip_local_port_range): %u-%u (%u ports), %s\n", lo, hi,
	       hi - lo + 1,
	       o.host_netns ? "host network namespace, as found"
			    : "private network namespace, set by race-bench");
	if (o.plo)
		printf("- portd: --range %u-%u, --quarantine 0\n", o.plo, o.phi);
	else
		printf("- portd: kernel port source (bind to port 0), --quarantine 0\n");
	printf("- hammer, through all three phases: one process bind(0)s into a pool of %u sockets "
	       "(5 addresses, half SO_REUSEADDR, a quarter listening), one connect()s to loopback "
	       "keeping %u connections; every connection ends with an RST (no TIME_WAIT)\n",
	       o.cfg.hammer_pool, o.cfg.hammer_conns);
	printf("- naive: bind 0.0.0.0:0 without SO_REUSEADDR, read the port, close, then bind [::]:port "
	       "with SO_REUSEADDR and listen (Python's bind(('', 0)), then a server)\n");
	printf("- kernel: %s %s %s, %ld CPUs\n\n", u.sysname, u.release, u.machine,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("| approach | attempts | collisions | collision rate | leases/s |\n");
	printf("|---|---:|---:|---:|---:|\n");
	row("portd (fd kind)", &res[0].fd, res[0].elapsed_ms);
	row("portd (number kind)", &res[1].number, res[1].elapsed_ms);
	row("naive bind(0)-close-rebind", &res[2].naive, res[2].elapsed_ms);
	printf("\nA collision is an attempt whose port was in another live lease (or naive claim), "
	       "was held by another process, could not be bound or listened on (EADDRINUSE), or whose "
	       "test connection did not reach the worker's own listener. leases/s counts attempts that "
	       "ended with a working server.\n\n");
	details("portd (fd kind)", &res[0], &res[0].fd);
	details("portd (number kind)", &res[1], &res[1].number);
	details("naive", &res[2], &res[2].naive);
	if (race_collisions(&res[2].naive) == 0)
		printf("\nThe naive approach had no collision in this run.\n");
	return 0;
}
