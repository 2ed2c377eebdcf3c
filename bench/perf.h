/*
 * bench/perf: portd's performance against the physical limits, measured in
 * one run (bench/run.sh builds it and runs it in a private network namespace).
 *
 *   perf-util.c    clock, percentiles, child processes, the daemon, /proc
 *   perf-load.c    the loads: client processes timing every operation, the
 *                  bare SEQPACKET server, the trivial lease server, the
 *                  portserver client, exec timing
 *   perf-report.c  the markdown tables, results.json, the gnuplot data
 *   perf.c         options and the phases, in order
 *
 * Every figure is timed the same way: CLOCK_MONOTONIC around each operation,
 * many operations, p50/p99 of those and the throughput over a fixed window.
 */
#ifndef PORTD_BENCH_PERF_H
#define PORTD_BENCH_PERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define PERF_MAX_CLIENTS 16
#define PERF_SAMPLE_CAP (1u << 19) /* per client and series */

/* ---- time and statistics (perf-util.c) ---- */

uint64_t perf_now_ns(void);
void perf_sleep_ms(unsigned ms);

/* Latency summary of a series, in microseconds. n = 0: no series. */
struct lat {
	size_t n;
	double p50, p99, p999, max, mean;
};
/* Sorts v in place. */
void lat_compute(uint32_t *v, size_t n, struct lat *out);

/* ---- child processes (perf-util.c) ---- */

/* Remember pid so that perf_children_kill() reaps it (at exit, on a fatal signal). */
void perf_child_track(pid_t pid);
void perf_child_untrack(pid_t pid);
/* SIGKILL and reap every tracked child, by pid. */
void perf_children_kill(void);
/* In a new child: die with the parent (PDEATHSIG), default signals. */
void perf_child_init(pid_t parent);
/* Wait at most ms for pid to exit (then SIGKILL it) and reap it. Exit status, or -1. */
int perf_child_wait(pid_t pid, unsigned ms);
/* Pin pid (0: self) to cpu; cpu < 0: every CPU. */
int perf_pin(pid_t pid, int cpu);
/* Is fd readable within ms? */
bool perf_wait_readable(int fd, int ms);

/* ---- the daemon (perf-util.c) ---- */

struct perf_daemon {
	pid_t pid;
	char dir[64];
	char sock[128];
	char state[128];
};
/*
 * Start bin --socket DIR/portd.sock --state-file DIR/portd.state --ready-fd N
 * args... (NULL-terminated) with stderr to log_fd, and wait (10 s) for READY=1.
 * PERF_DAEMON_OWN_NETNS: in a network namespace of its own (lo up), so that
 * no port another process holds here is in its way (its socket file works
 * from here all the same).
 */
#define PERF_DAEMON_OWN_NETNS 0x1u
int perf_daemon_start(struct perf_daemon *d, const char *bin, const char *const *args, int log_fd,
		      unsigned flags);
/* SIGTERM, 10 s, SIGKILL; removes its directory. */
void perf_daemon_stop(struct perf_daemon *d);
/* Does bin --help mention word? (a feature probe) */
bool perf_help_mentions(const char *bin, const char *word);

/* kB fields of /proc/PID/status and smaps_rollup; -1 if absent. */
struct perf_mem {
	long rss_kb, anon_kb, pss_kb, fds;
};
void perf_mem_read(pid_t pid, struct perf_mem *m);
/* Slab: and SUnreclaim: of /proc/meminfo, kB (the whole machine). */
long perf_slab_kb(void);
/* CPU time pid has run, ns (/proc/PID/schedstat); 0 if unknown. */
uint64_t perf_cpu_ns(pid_t pid);
/* Non-idle time of all CPUs, ns (/proc/stat, USER_HZ ticks); 0 if unknown. */
uint64_t perf_machine_busy_ns(void);

/* ---- loads (perf-load.c) ---- */

enum perf_op {
	OP_BIND,        /* in-process socket+bind(0)+getsockname+close */
	OP_BARE,        /* bare SEQPACKET round trip, no fd */
	OP_BARE_FD,     /* bare SEQPACKET round trip carrying one fd */
	OP_LEASE,       /* lease + release over one open connection (libportd) */
	OP_PORTSERVER,  /* portserver protocol: connect, "<pid>\n", read "<port>\n" */
};

/* Lease kinds for OP_LEASE. */
enum perf_kind { KIND_FD, KIND_FD_TIE, KIND_NUMBER, KIND_NUMBER_TIE };
const char *perf_kind_name(enum perf_kind k);

struct perf_job {
	enum perf_op op;
	enum perf_kind kind;
	const char *sock;       /* OP_LEASE, OP_BARE*: the server's socket path; OP_PORTSERVER: address (@...) */
	int bare_fd;            /* OP_BARE*: one end of a socketpair per client (set by perf_run) */
	pid_t owner;            /* OP_PORTSERVER: the pid the requests name */
	unsigned clients;       /* 1..PERF_MAX_CLIENTS */
	int client_cpu;         /* pin every client to this CPU; -1: any */
	int server_cpu;         /* OP_BARE*: pin the bare servers; -1: any */
	pid_t server_pid;       /* > 0: account this server's CPU time over the window */
	unsigned warmup_ms, duration_ms;
	uint64_t max_ops;       /* per client, counted in the window */
	unsigned hold;          /* OP_BIND: sockets bound and held before measuring */
	uint16_t bind_lo, bind_hi; /* OP_BIND: 0 = bind(0); else explicit ports, held from bind_lo up,
				    * measured on the next ones in turn (portd's --range source) */
};

struct perf_result {
	uint64_t ops;           /* in the window, all clients */
	double seconds;         /* the window */
	double rate;            /* ops (pairs for OP_LEASE) per second */
	struct lat a, b;        /* OP_LEASE: lease and release; else a = the operation */
	uint64_t errors;
	int last_error;         /* -errno or -PORTD_E_* */
	unsigned failed;        /* clients that did not start or exit cleanly */
	double server_cpu;      /* the server's CPU time / the window (1.0 = one core), or -1 */
	double clients_cpu;     /* the client processes' CPU time / the window */
	double machine_busy;    /* every CPU's non-idle time / the window (2.0 = two cores busy) */
	double server_us_per_op;/* the server's CPU time per operation (pair), us, or -1 */
	uint64_t from_ns, to_ns;/* the window, CLOCK_MONOTONIC (for lining up a profile) */
};

/* Shared sample memory for every run; once at start. 0 or -errno. */
int perf_load_init(void);
/* Fork job->clients client processes, start them together, collect. 0 or -errno. */
int perf_run(const struct perf_job *job, struct perf_result *out);

/*
 * The bare SEQPACKET server: one process per client end (socketpair), that
 * answers each datagram with a 48-byte reply (with_fd: carrying one socket).
 * perf_run() makes the pairs; this is used by it.
 */
pid_t perf_bare_server_start(int fd, bool with_fd, int cpu);

/*
 * The trivial lease server: portd's wire protocol, single-threaded epoll,
 * and for each LEASE exactly the kernel work of portd's hold_bind()
 * (socket, IPV6_V6ONLY=0, bind [::]:0, SO_REUSEADDR, getsockname), the
 * reply with the socket attached for an fd lease, close() on RELEASE. No
 * table, no quarantine, no library: what is left of portd is its overhead.
 * Listens on dir/trivial.sock. 0 or -errno.
 */
struct perf_trivial {
	pid_t pid;
	char dir[64];
	char sock[128];
};
int perf_trivial_start(struct perf_trivial *t, int cpu);
void perf_trivial_stop(struct perf_trivial *t);

/* Time n runs of argv (fork, exec, wait; stdout read and kept from the first run). */
struct perf_exec_result {
	struct lat lat;         /* wall time per run, us */
	unsigned runs, failed;
	char first_out[64];
	unsigned out_in_range;  /* runs whose output was a port in [range_lo, range_hi] */
};
int perf_exec_time(const char *const *argv, const char *const *envp, unsigned n, unsigned max_ms,
		   uint16_t range_lo, uint16_t range_hi, struct perf_exec_result *out);

/*
 * Take n leases (flags PORTD_FLAG_*, ttl s) over one new connection,
 * pipelined. Times of the first request and the last reply. Count or -error.
 */
int perf_fill(const char *sock, unsigned n, uint32_t ttl, uint32_t flags, uint64_t *t_first, uint64_t *t_last);
/* A child process that takes n leases tied to itself, then waits to be killed. Its pid or -errno. */
pid_t perf_tied_holder_start(const char *sock, unsigned n, uint32_t ttl);

/*
 * The stall probe: a client that, once told to go, sends STATUS back to back
 * (one in flight) and times each round trip, until 50 ms after a reply says
 * no lease is left, or max_ms.
 */
struct perf_probe {
	pid_t pid;
	int go;
	unsigned max_ms;
};
int perf_probe_start(struct perf_probe *pr, const char *sock, unsigned max_ms, int cpu);
void perf_probe_go(struct perf_probe *pr);
/*
 * *gone_at: when the first reply with no lease arrived (0: never); rtt: the
 * round trips; over_ms[i]: how many took longer than 1, 5 and 10 ms.
 */
int perf_probe_finish(struct perf_probe *pr, uint64_t *gone_at, struct lat *rtt, unsigned over_ms[3]);

/* ---- results (perf-report.c) ---- */

struct row {
	char section[16];     /* "limit", "single", "clients", "scaling", "portserver", "cli" */
	char what[72];
	char server[24];
	char placement[8];    /* "any", "same", "cross", "" */
	unsigned clients;
	long held;            /* scaling: leases held, else -1 */
	struct perf_result r;
	char note[200];
};

struct target {
	char name[96];
	char goal[64];
	char measured[200];
	int met;              /* 1, 0, -1 = not measured */
};

struct expiry {
	char what[80];
	unsigned leases;
	double fill_ms;       /* taking them */
	double spread_ms;     /* between the first and the last deadline */
	double gone_ms;       /* from the moment all are due (or the process died) until 0 remain */
	double stall_max_ms;  /* longest STATUS round trip meanwhile */
	double probe_p50_us;
	unsigned probes;
	unsigned over_ms[3];  /* probes over 1, 5, 10 ms */
	char placement[8];    /* of the probe: "cross" (another CPU than the daemon) or "same" */
	bool ok;
	char note[160];
};

struct memory {
	char source[16];
	unsigned leases;
	struct perf_mem before, after;
	long slab_before_kb, slab_after_kb;
	bool ok;
};

#define MAX_ROWS 128
#define MAX_TARGETS 16
struct results {
	struct row rows[MAX_ROWS];
	size_t nrows;
	struct target targets[MAX_TARGETS];
	size_t ntargets;
	struct expiry expiry[8];
	size_t nexpiry;
	struct memory mem[2];
	size_t nmem;
	char env[16][240];    /* "key: value" lines describing the run */
	size_t nenv;
	double total_s;
};

struct row *results_row(struct results *res, const char *section, const char *what, const char *server,
			const char *placement, unsigned clients, long held, const struct perf_result *r);
const struct row *results_find(const struct results *res, const char *section, const char *what,
			       const char *server, const char *placement, unsigned clients, long held);
struct target *results_target(struct results *res, const char *name, const char *goal, int met,
			      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void results_env(struct results *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void report_markdown(const struct results *res, FILE *f);
int report_json(const struct results *res, const char *path);
/* latency.dat (held, p50/p99 per source) and latency-vars.gp (reference lines) in dir. */
int report_plot_data(const struct results *res, const char *dir);

#endif
