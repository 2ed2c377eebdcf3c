/*
 * portserver-bench: portpicker's portserver protocol, served three ways, under
 * the same load in one run.
 *
 *   portserver-bench [--seconds S] [--clients LIST] [--requests-per-client K]
 *                    [--repeat R] [--only SERVER] [--portd PATH]
 *                    [--portserver PATH] [--host-netns]
 *
 *  - Debian's portserver (/usr/bin/portserver, python3-portpicker), as shipped;
 *  - portd --portserver: a lease per request, tied to the pid it names;
 *  - a trivial server, the physical limit: one process that accepts, reads a
 *    line, writes a fixed line and closes, nothing else.
 *
 * The load is the same for all three: N client slots (default 1, 4 and 16),
 * released together, each running client processes one after the other. A
 * client process makes K requests (default 100) and exits, as test processes
 * do, and the next one takes its slot: a request is connect + send
 * "<its pid>\n" + read the line + close, as portpicker does. So portd both
 * grants leases and ends them (their processes exit) during the measurement,
 * at a steady number of held ports, and no pool runs dry.
 *
 * Each server is started fresh for each phase of S seconds; phases run
 * client count by client count, the three servers side by side, R times
 * over (default 3), and each figure is the median of the R runs.
 *
 * Everything runs in a private network namespace (root), so the abstract
 * socket names and the port pools are private; --host-netns runs in the
 * current one. Prints markdown: grants/s, p50/p99 latency, server CPU per
 * grant, and the targets with their ratios.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netns.h"
#include "race-common.h"

#define MAX_CLIENTS 64
#define MAX_COUNTS 8
#define MAX_REPEAT 9
#define MAX_SAMPLES (4u << 20) /* latencies kept per phase, over all slots */
#define POOL_LO 2000           /* portd --range and portserver's pool: the same ports */
#define POOL_HI 64999
#define START_MS 20000         /* a server has this long to start listening */

enum server { SRV_TRIVIAL, SRV_PORTD, SRV_PORTSERVER, NSERVERS };
static const char *const server_name[NSERVERS] = { "trivial C server", "portd --portserver",
						   "Debian portserver" };
static const char *const server_opt[NSERVERS] = { "trivial", "portd", "portserver" };

struct opts {
	unsigned seconds;
	unsigned counts[MAX_COUNTS], ncounts;
	unsigned per_client;
	unsigned repeat;
	bool skip[NSERVERS];
	const char *portd, *portserver;
	bool host_netns;
};

/* One slot's results, in shared memory: the client processes of the slot add to it in turn. */
struct slot_stats {
	uint64_t grants, refused, errors;
	uint64_t end_ns;
	uint32_t nsamples;
	int last_errno;
};

struct shared {
	uint64_t deadline_ns; /* set before the start */
	uint32_t cap;         /* samples per slot */
	struct slot_stats st[MAX_CLIENTS];
	uint32_t samples[];   /* slot i at i * cap, in ns */
};

struct phase {
	double grants_per_s;
	double p50_us, p99_us, max_us;
	uint64_t grants, refused, errors, processes;
	double elapsed_s;
	double cpu_us_per_grant; /* the server's user+system CPU time per grant */
	bool ok;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: portserver-bench [OPTIONS]\n"
		"Debian's portserver, portd --portserver and a trivial server under the same load.\n\n"
		"  --seconds S                length of each phase (default 2)\n"
		"  --clients LIST             concurrent client slots, comma-separated (default 1,4,16;\n"
		"                             at most %d)\n"
		"  --requests-per-client K    requests of one client process before it exits and the\n"
		"                             next takes its slot (default 100)\n"
		"  --repeat R                 run every phase R times, report medians (default 3)\n"
		"  --only SERVER              trivial, portd or portserver alone (to profile it)\n"
		"  --portd PATH               the daemon (default: $PORTD_BIN, else ../daemon/portd\n"
		"                             next to this program)\n"
		"  --portserver PATH          Debian's portserver (default /usr/bin/portserver)\n"
		"  --host-netns               run in this network namespace instead of a private one\n"
		"  -h, --help                 show this help\n",
		MAX_CLIENTS);
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_SECONDS = 256, O_CLIENTS, O_PER, O_REPEAT, O_ONLY, O_PORTD, O_PS, O_HOST };
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "clients", required_argument, NULL, O_CLIENTS },
		{ "requests-per-client", required_argument, NULL, O_PER },
		{ "repeat", required_argument, NULL, O_REPEAT },
		{ "only", required_argument, NULL, O_ONLY },
		{ "portd", required_argument, NULL, O_PORTD },
		{ "portserver", required_argument, NULL, O_PS },
		{ "host-netns", no_argument, NULL, O_HOST },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_SECONDS:
			if (race_parse_uint(optarg, 1, 600, &o->seconds) < 0)
				goto bad;
			break;
		case O_CLIENTS: {
			char buf[128], *save = NULL, *tok;
			if (strlen(optarg) >= sizeof(buf))
				goto bad;
			strcpy(buf, optarg);
			o->ncounts = 0;
			for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
				if (o->ncounts == MAX_COUNTS ||
				    race_parse_uint(tok, 1, MAX_CLIENTS, &o->counts[o->ncounts++]) < 0)
					goto bad;
			if (!o->ncounts)
				goto bad;
			break;
		}
		case O_PER:
			if (race_parse_uint(optarg, 1, 1000000, &o->per_client) < 0)
				goto bad;
			break;
		case O_REPEAT:
			if (race_parse_uint(optarg, 1, MAX_REPEAT, &o->repeat) < 0)
				goto bad;
			break;
		case O_ONLY: {
			bool known = false;
			for (int i = 0; i < NSERVERS; i++) {
				o->skip[i] = strcmp(optarg, server_opt[i]) != 0;
				known |= !o->skip[i];
			}
			if (!known)
				goto bad;
			break;
		}
		case O_PORTD:
			o->portd = optarg;
			break;
		case O_PS:
			o->portserver = optarg;
			break;
		case O_HOST:
			o->host_netns = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			fprintf(stderr, "Try 'portserver-bench --help'.\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "portserver-bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!o->portd)
		o->portd = race_default_portd();
	return 0;
bad:
	fprintf(stderr, "portserver-bench: bad value '%s'. Try 'portserver-bench --help'.\n", optarg);
	return -1;
}

/* ---- addresses ---- */

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name)
{
	size_t n = strlen(name); /* "@..." */

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path + 1, name + 1, n - 1);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

/* Wait until something accepts on the abstract name (a connection that sends nothing). */
static bool wait_listening(const char *name, pid_t server, int timeout_ms)
{
	struct sockaddr_un a;
	socklen_t len = abstract_addr(&a, name);
	uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000u;

	while (mono_ns() < end) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool up = fd >= 0 && connect(fd, (struct sockaddr *)&a, len) == 0;

		if (fd >= 0)
			close(fd);
		if (up)
			return true;
		if (server > 0 && waitpid(server, NULL, WNOHANG) == server)
			return false; /* it died */
		poll(NULL, 0, 20);
	}
	return false;
}

/* ---- the servers ---- */

/* accept, read up to the newline, write a fixed line, close: the least a server can do. */
static void trivial_serve(int lfd)
{
	static const char reply[] = "12345\n";

	for (;;) {
		char buf[64];
		size_t got = 0;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		while (got < sizeof(buf)) {
			ssize_t n = read(fd, buf + got, sizeof(buf) - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			if (memchr(buf, '\n', got)) {
				if (write(fd, reply, sizeof(reply) - 1) < 0)
					break;
				break;
			}
		}
		close(fd);
	}
}

static pid_t trivial_start(const char *name)
{
	struct sockaddr_un a;
	socklen_t len = abstract_addr(&a, name);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t parent = getpid(), pid;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, len) < 0 || listen(lfd, SOMAXCONN) < 0) {
		perror("portserver-bench: trivial server");
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		trivial_serve(lfd);
		_exit(0);
	}
	close(lfd);
	return pid;
}

static pid_t portserver_start(const char *path, const char *name)
{
	char pool[32];
	pid_t parent = getpid(), pid;

	snprintf(pool, sizeof(pool), "%d-%d", POOL_LO, POOL_HI);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		/* It logs three lines per request at its default level: its cost as shipped, unread. */
		if (null >= 0)
			dup2(null, 2);
		execl(path, path, "--portserver_address", name, "--portserver_static_pool", pool, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void stop_reap(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* User + system CPU of pid so far, in microseconds (/proc/PID/stat fields 14 and 15). */
static uint64_t cpu_us(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (ut + st) * 1000000ull / (unsigned long long)sysconf(_SC_CLK_TCK);
}

/* ---- the load ---- */

/*
 * One client process of slot idx: up to k requests before the deadline. A
 * request: connect, send "<pid>\n", read the line (or the end of the stream:
 * a refusal), close. Returns (exits) when done.
 */
static void client_run(const char *name, struct shared *sh, unsigned idx, unsigned k)
{
	struct slot_stats *st = &sh->st[idx];
	uint32_t *samples = sh->samples + (size_t)idx * sh->cap;
	uint64_t deadline = __atomic_load_n(&sh->deadline_ns, __ATOMIC_ACQUIRE);
	struct sockaddr_un a;
	socklen_t alen = abstract_addr(&a, name);
	char line[32], buf[64];
	int llen = snprintf(line, sizeof(line), "%d\n", (int)getpid());

	for (unsigned i = 0; i < k && st->nsamples < sh->cap; i++) {
		uint64_t t0 = mono_ns();
		size_t got = 0;
		bool port = false;
		int fd;

		if (t0 >= deadline)
			break;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, alen) < 0 ||
		    write(fd, line, (size_t)llen) != llen) {
			st->errors++;
			st->last_errno = errno;
			if (fd >= 0)
				close(fd);
			continue;
		}
		for (;;) {
			ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			if (memchr(buf, '\n', got)) {
				port = true;
				break;
			}
			if (got == sizeof(buf) - 1)
				break;
		}
		close(fd);
		if (port) {
			uint64_t dt = mono_ns() - t0;
			samples[st->nsamples++] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
			st->grants++;
		} else {
			st->refused++;
		}
	}
	st->end_ns = mono_ns();
	_exit(0);
}

static pid_t client_spawn(const char *name, struct shared *sh, unsigned idx, unsigned k, int go, int go_w)
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		char b;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		if (go_w >= 0)
			close(go_w); /* or the start signal (EOF) would never come */
		/* The first generation waits for the start (EOF on go); later ones start at once. */
		if (go >= 0 && read(go, &b, 1) < 0)
			_exit(3);
		client_run(name, sh, idx, k);
	}
	return pid;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The p-th quantile of sorted v[0..n) (nearest rank), in microseconds. */
static double percentile(const uint32_t *v, size_t n, double p)
{
	size_t i;

	if (!n)
		return NAN;
	i = (size_t)ceil(p * (double)n);
	i = i ? i - 1 : 0;
	if (i >= n)
		i = n - 1;
	return v[i] / 1000.0;
}

/* n client slots against the server (pid server) at name, for the phase's time. */
static struct phase load(const char *name, pid_t server, unsigned n, const struct opts *o)
{
	struct phase ph = { .ok = true };
	uint32_t cap = MAX_SAMPLES / n;
	size_t bytes = sizeof(struct shared) + (size_t)n * cap * sizeof(uint32_t);
	struct shared *sh = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t slot[MAX_CLIENTS];
	uint64_t t0, end = 0, cpu0;
	unsigned running = n;
	uint32_t *all;
	size_t total = 0;
	int go[2];

	if (sh == MAP_FAILED || pipe2(go, O_CLOEXEC) < 0) {
		perror("portserver-bench");
		exit(1);
	}
	sh->cap = cap;
	for (unsigned i = 0; i < n; i++)
		if ((slot[i] = client_spawn(name, sh, i, o->per_client, go[0], go[1])) < 0) {
			perror("portserver-bench: fork");
			exit(1);
		}
	close(go[0]);
	cpu0 = cpu_us(server);
	t0 = mono_ns();
	__atomic_store_n(&sh->deadline_ns, t0 + (uint64_t)o->seconds * 1000000000u, __ATOMIC_RELEASE);
	close(go[1]); /* the first client of every slot starts */
	ph.processes = n;
	while (running) {
		int status;
		pid_t pid = wait(&status);
		unsigned i;

		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < n && slot[i] != pid; i++)
			;
		if (i == n)
			continue; /* not a client */
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			ph.ok = false;
		/* The next client process of this slot, until the deadline. */
		if (mono_ns() < sh->deadline_ns && sh->st[i].nsamples < cap) {
			slot[i] = client_spawn(name, sh, i, o->per_client, -1, -1);
			if (slot[i] > 0) {
				ph.processes++;
				continue;
			}
		}
		slot[i] = 0;
		running--;
	}
	/* Leases of the last clients may still be ending (portd): part of its work, not of the timing. */
	ph.cpu_us_per_grant = (double)(cpu_us(server) - cpu0);
	all = malloc(((size_t)n * cap + 1) * sizeof(*all));
	if (!all) {
		perror("portserver-bench");
		exit(1);
	}
	for (unsigned i = 0; i < n; i++) {
		const struct slot_stats *st = &sh->st[i];

		memcpy(all + total, sh->samples + (size_t)i * cap, st->nsamples * sizeof(*all));
		total += st->nsamples;
		ph.grants += st->grants;
		ph.refused += st->refused;
		ph.errors += st->errors;
		if (st->end_ns > end)
			end = st->end_ns;
		if (st->errors && st->last_errno)
			fprintf(stderr, "portserver-bench: %s: slot %u: %llu errors, last: %s\n", name, i,
				(unsigned long long)st->errors, strerror(st->last_errno));
	}
	qsort(all, total, sizeof(*all), cmp_u32);
	ph.elapsed_s = end > t0 ? (double)(end - t0) / 1e9 : 0;
	ph.grants_per_s = ph.elapsed_s > 0 ? (double)ph.grants / ph.elapsed_s : 0;
	ph.p50_us = percentile(all, total, 0.50);
	ph.p99_us = percentile(all, total, 0.99);
	ph.max_us = total ? all[total - 1] / 1000.0 : NAN;
	ph.cpu_us_per_grant = ph.grants ? ph.cpu_us_per_grant / (double)ph.grants : NAN;
	free(all);
	munmap(sh, bytes);
	return ph;
}

/* ---- one phase per server ---- */

static struct phase run_trivial(unsigned n, const struct opts *o)
{
	char name[64];
	struct phase ph = { 0 };
	pid_t pid;

	snprintf(name, sizeof(name), "@bench-trivial-%d", (int)getpid());
	pid = trivial_start(name);
	if (pid > 0 && wait_listening(name, pid, START_MS))
		ph = load(name, pid, n, o);
	stop_reap(pid);
	return ph;
}

static struct phase run_portd(unsigned n, const struct opts *o)
{
	char name[64], opt[80], range[32], limit[16], state[96];
	const char *args[16];
	struct race_daemon d;
	struct phase ph = { 0 };
	size_t k = 0;

	snprintf(name, sizeof(name), "@bench-portd-%d", (int)getpid());
	snprintf(opt, sizeof(opt), "--portserver=%s", name);
	snprintf(range, sizeof(range), "%d-%d", POOL_LO, POOL_HI);
	/* Leases live at once: at most one client process per slot, each holding its requests' ports. */
	snprintf(limit, sizeof(limit), "%u", n * o->per_client + 64);
	snprintf(state, sizeof(state), "/tmp/portd-psbench-%d.state", (int)getpid());
	args[k++] = opt;
	args[k++] = "--range";
	args[k++] = range;
	args[k++] = "--quarantine";
	args[k++] = "0";
	args[k++] = "--max-leases";
	args[k++] = limit;
	args[k++] = "--max-leases-per-uid";
	args[k++] = limit;
	args[k++] = "--state-file";
	args[k++] = state;
	args[k] = NULL;
	if (race_daemon_start(&d, o->portd, args) < 0) {
		fprintf(stderr, "portserver-bench: %s did not start\n", o->portd);
		return ph;
	}
	if (wait_listening(name, d.pid, START_MS))
		ph = load(name, d.pid, n, o);
	if (race_daemon_stop(&d) < 0)
		fprintf(stderr, "portserver-bench: portd did not exit cleanly\n");
	unlink(state);
	return ph;
}

static struct phase run_portserver(unsigned n, const struct opts *o)
{
	char name[64];
	struct phase ph = { 0 };
	pid_t pid;

	snprintf(name, sizeof(name), "@bench-ps-%d", (int)getpid());
	pid = portserver_start(o->portserver, name);
	if (pid > 0 && wait_listening(name, pid, START_MS))
		ph = load(name, pid, n, o);
	else
		fprintf(stderr, "portserver-bench: %s did not start listening\n", o->portserver);
	stop_reap(pid);
	return ph;
}

/* ---- report ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The median of one field over R runs; NAN if any run failed. */
static double median(const struct phase *runs, unsigned r, size_t off)
{
	double v[MAX_REPEAT];

	for (unsigned i = 0; i < r; i++) {
		if (!runs[i].ok)
			return NAN;
		memcpy(&v[i], (const char *)&runs[i] + off, sizeof(double));
	}
	qsort(v, r, sizeof(double), cmp_double);
	return r % 2 ? v[r / 2] : (v[r / 2 - 1] + v[r / 2]) / 2;
}

struct summary {
	double rate, p50, p99, max, cpu;
	uint64_t grants, refused; /* over all runs */
	bool ok;
};

static struct summary summarize(const struct phase *runs, unsigned r)
{
	struct summary s = { .ok = true };

	for (unsigned i = 0; i < r; i++) {
		s.ok &= runs[i].ok;
		s.grants += runs[i].grants;
		s.refused += runs[i].refused + runs[i].errors;
	}
	s.rate = median(runs, r, offsetof(struct phase, grants_per_s));
	s.p50 = median(runs, r, offsetof(struct phase, p50_us));
	s.p99 = median(runs, r, offsetof(struct phase, p99_us));
	s.max = median(runs, r, offsetof(struct phase, max_us));
	s.cpu = median(runs, r, offsetof(struct phase, cpu_us_per_grant));
	return s;
}

static void cell(char *buf, size_t len, double v, int decimals)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f", decimals, v);
}

static void print_row(unsigned n, enum server s, const struct summary *x)
{
	char rate[32], p50[32], p99[32], mx[32], cpu[32];

	if (!x->ok) {
		printf("| %u | %s | failed | | | | | | |\n", n, server_name[s]);
		return;
	}
	cell(rate, sizeof(rate), x->rate, 0);
	cell(p50, sizeof(p50), x->p50, 1);
	cell(p99, sizeof(p99), x->p99, 1);
	cell(mx, sizeof(mx), x->max, 0);
	cell(cpu, sizeof(cpu), x->cpu, 1);
	printf("| %u | %s | %s | %s | %s | %s | %s | %llu | %llu |\n", n, server_name[s], rate, p50, p99, mx,
	       cpu, (unsigned long long)x->grants, (unsigned long long)x->refused);
}

int main(int argc, char **argv)
{
	struct opts o = { .seconds = 2, .counts = { 1, 4, 16 }, .ncounts = 3, .per_client = 100,
			  .repeat = 3, .portserver = "/usr/bin/portserver" };
	static struct phase runs[MAX_COUNTS][NSERVERS][MAX_REPEAT];
	struct summary sum[MAX_COUNTS][NSERVERS];
	struct utsname u;
	int r;

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (!o.skip[SRV_PORTD] && access(o.portd, X_OK) < 0) {
		fprintf(stderr, "portserver-bench: no portd at %s: give --portd PATH or set PORTD_BIN\n", o.portd);
		return 2;
	}
	if (!o.skip[SRV_PORTSERVER] && access(o.portserver, X_OK) < 0) {
		fprintf(stderr, "portserver-bench: no portserver at %s: apt-get install python3-portpicker\n",
			o.portserver);
		return 2;
	}
	if (!o.host_netns && (r = unshare_netns()) < 0) {
		fprintf(stderr, "portserver-bench: cannot enter a private network namespace (%s): it needs "
				"root. Give --host-netns to run in this one.\n", strerror(-r));
		return 2;
	}

	/* Round by round, so that a disturbance of the machine hits one run of each, not all runs of one. */
	for (unsigned k = 0; k < o.repeat; k++)
		for (unsigned i = 0; i < o.ncounts; i++)
			for (int s = 0; s < NSERVERS; s++) {
				if (o.skip[s])
					continue;
				fprintf(stderr, "portserver-bench: run %u/%u, %u client(s): %s...\n", k + 1, o.repeat,
					o.counts[i], server_name[s]);
				runs[i][s][k] = s == SRV_TRIVIAL ? run_trivial(o.counts[i], &o)
						: s == SRV_PORTD ? run_portd(o.counts[i], &o)
								 : run_portserver(o.counts[i], &o);
			}
	for (unsigned i = 0; i < o.ncounts; i++)
		for (int s = 0; s < NSERVERS; s++)
			sum[i][s] = summarize(runs[i][s], o.repeat);

	uname(&u);
	printf("# portpicker's portserver protocol: portd, Debian's portserver and a trivial server\n\n");
	printf("- load: N client slots released together; in each, client processes one after the other, "
	       "each making %u requests (connect to the abstract socket, send \"<its pid>\\n\", read the "
	       "line, close) and exiting; %u s per phase, each server started fresh for each phase; "
	       "median of %u runs\n", o.per_client, o.seconds, o.repeat);
	printf("- portd: `--portserver=@... --range %d-%d --quarantine 0`; every grant is a lease tied to "
	       "the client process, ended when it exits\n", POOL_LO, POOL_HI);
	printf("- Debian portserver: `%s --portserver_static_pool %d-%d`, its stderr (3 log lines per "
	       "request) to /dev/null\n", o.portserver, POOL_LO, POOL_HI);
	printf("- trivial C server: one process, blocking accept + read to the newline + write \"12345\\n\" "
	       "+ close\n");
	printf("- %s network namespace; kernel: %s %s %s, %ld CPUs\n\n",
	       o.host_netns ? "the host's" : "a private", u.sysname, u.release, u.machine,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("| clients | server | grants/s | p50 µs | p99 µs | max µs | server CPU µs/grant | grants | "
	       "refused+errors |\n");
	printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
	for (unsigned i = 0; i < o.ncounts; i++)
		for (int s = 0; s < NSERVERS; s++)
			if (!o.skip[s])
				print_row(o.counts[i], (enum server)s, &sum[i][s]);
	if (o.skip[SRV_TRIVIAL] || o.skip[SRV_PORTD] || o.skip[SRV_PORTSERVER])
		return 0;

	printf("\n| clients | trivial ÷ portd, grants/s (target ≤ 1.5 at 16) | portd ÷ portserver, grants/s "
	       "(target ≥ 8 at 16) | p99: portd vs portserver (target: lower) |\n");
	printf("|---:|---:|---:|---:|\n");
	for (unsigned i = 0; i < o.ncounts; i++) {
		const struct summary *t = &sum[i][SRV_TRIVIAL], *p = &sum[i][SRV_PORTD], *q = &sum[i][SRV_PORTSERVER];
		double a = t->rate / p->rate, b = p->rate / q->rate;
		bool at16 = o.counts[i] == 16;

		printf("| %u | %.2f×%s | %.1f×%s | %.1f vs %.1f µs: %s |\n", o.counts[i], a,
		       at16 ? (a <= 1.5 ? " met" : " **missed**") : "", b,
		       at16 ? (b >= 8 ? " met" : " **missed**") : "", p->p99, q->p99,
		       p->p99 < q->p99 ? "met" : "**missed**");
	}
	return 0;
}
