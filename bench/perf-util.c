/*
 * perf: clock and percentiles, the child processes it starts (tracked by
 * pid, so that it kills only its own), the daemon, and /proc readings.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netns.h"
#include "perf.h"
#include "spawn.h"

uint64_t perf_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void perf_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least p of the samples at or below it. */
static double rank_us(const uint32_t *v, size_t n, double p)
{
	size_t k = (size_t)(p * (double)n + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1] / 1000.0;
}

void lat_compute(uint32_t *v, size_t n, struct lat *out)
{
	double sum = 0;

	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_u32);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	out->n = n;
	out->p50 = rank_us(v, n, 0.50);
	out->p99 = rank_us(v, n, 0.99);
	out->p999 = rank_us(v, n, 0.999);
	out->max = v[n - 1] / 1000.0;
	out->mean = sum / (double)n / 1000.0;
}

/* ---- children ---- */

#define MAX_TRACKED 256
static pid_t tracked[MAX_TRACKED];

void perf_child_track(pid_t pid)
{
	for (int i = 0; i < MAX_TRACKED; i++)
		if (!tracked[i]) {
			tracked[i] = pid;
			return;
		}
}

void perf_child_untrack(pid_t pid)
{
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i] == pid)
			tracked[i] = 0;
}

void perf_children_kill(void)
{
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i] > 0) {
			kill(tracked[i], SIGCONT); /* a daemon stopped for the expiry test */
			kill(tracked[i], SIGKILL);
			waitpid(tracked[i], NULL, 0);
			tracked[i] = 0;
		}
}

void perf_child_init(pid_t parent)
{
	/* Nothing outlives perf, even when it is killed: PDEATHSIG survives exec. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
}

bool perf_wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n;

	while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	return n > 0;
}

int perf_child_wait(pid_t pid, unsigned ms)
{
	int pfd = pidfd_open(pid, 0), status = 0;

	if (pfd < 0 || !perf_wait_readable(pfd, (int)ms))
		kill(pid, SIGKILL);
	if (pfd >= 0)
		close(pfd);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			perf_child_untrack(pid);
			return -1;
		}
	perf_child_untrack(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int perf_pin(pid_t pid, int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	if (cpu >= 0)
		CPU_SET(cpu, &set);
	else
		for (long i = 0; i < n && i < CPU_SETSIZE; i++)
			CPU_SET(i, &set);
	return sched_setaffinity(pid, sizeof(set), &set) < 0 ? -errno : 0;
}

/* ---- the daemon ---- */

struct daemon_child {
	pid_t parent;
	unsigned flags;
	int log_fd;
};

static void daemon_child(void *arg)
{
	const struct daemon_child *c = arg;

	perf_child_init(c->parent);
	perf_pin(0, -1);
	if ((c->flags & PERF_DAEMON_OWN_NETNS) && unshare_netns() < 0)
		_exit(126);
	if (c->log_fd >= 0)
		dup2(c->log_fd, 2);
}

int perf_daemon_start(struct perf_daemon *d, const char *bin, const char *const *args, int log_fd,
		      unsigned flags)
{
	struct daemon_child c = { .parent = getpid(), .flags = flags, .log_fd = log_fd };
	const char *argv[60];
	size_t n = 0;

	memset(d, 0, sizeof(*d));
	strcpy(d->dir, "/tmp/portd-perf.XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->sock, sizeof(d->sock), "%s/portd.sock", d->dir);
	snprintf(d->state, sizeof(d->state), "%s/portd.state", d->dir);
	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--state-file";
	argv[n++] = d->state;
	for (; args && *args && n < sizeof(argv) / sizeof(argv[0]) - 1; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	d->pid = spawn_ready(argv, daemon_child, &c, 10000);
	if (d->pid < 0) {
		int e = d->pid;

		d->pid = 0;
		perf_daemon_stop(d);
		return e == -ECHILD ? -EIO : e;
	}
	perf_child_track(d->pid);
	return 0;
}

void perf_daemon_stop(struct perf_daemon *d)
{
	char tmp[384];

	if (d->pid > 0) {
		kill(d->pid, SIGCONT);
		kill(d->pid, SIGTERM);
		perf_child_wait(d->pid, 10000);
		d->pid = 0;
	}
	if (!d->dir[0])
		return;
	/* It saves its leases on exit: the state file, and a temporary if it was killed mid-write. */
	unlink(d->sock);
	unlink(d->state);
	DIR *dir = opendir(d->dir);
	for (struct dirent *e; dir && (e = readdir(dir));)
		if (strncmp(e->d_name, "portd.state.tmp.", 16) == 0) {
			snprintf(tmp, sizeof(tmp), "%s/%s", d->dir, e->d_name);
			unlink(tmp);
		}
	if (dir)
		closedir(dir);
	rmdir(d->dir);
	d->dir[0] = '\0';
}

bool perf_help_mentions(const char *bin, const char *word)
{
	static char out[65536];
	size_t got = 0;
	pid_t parent = getpid(), pid;
	int p[2];
	bool found;

	if (pipe2(p, O_CLOEXEC) < 0)
		return false;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return false;
	}
	if (pid == 0) {
		perf_child_init(parent);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execl(bin, bin, "--help", (char *)NULL);
		_exit(127);
	}
	perf_child_track(pid);
	close(p[1]);
	while (got < sizeof(out) - 1 && perf_wait_readable(p[0], 5000)) {
		ssize_t r = read(p[0], out + got, sizeof(out) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(p[0]);
	perf_child_wait(pid, 5000);
	out[got] = '\0';
	found = strstr(out, word) != NULL;
	return found;
}

/* ---- /proc ---- */

static long field_kb(const char *path, const char *key)
{
	char line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f = fopen(path, "re");

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0) {
			v = strtol(line + kl, NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

void perf_mem_read(pid_t pid, struct perf_mem *m)
{
	char path[64];
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	m->rss_kb = field_kb(path, "VmRSS:");
	m->anon_kb = field_kb(path, "RssAnon:");
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	m->pss_kb = field_kb(path, "Pss:");
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	m->fds = -1;
	d = opendir(path);
	if (d) {
		m->fds = 0;
		for (struct dirent *e; (e = readdir(d));)
			if (e->d_name[0] != '.')
				m->fds++;
		closedir(d);
	}
}

long perf_slab_kb(void)
{
	return field_kb("/proc/meminfo", "Slab:");
}

uint64_t perf_cpu_ns(pid_t pid)
{
	char path[64];
	unsigned long long ns = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &ns) != 1)
		ns = 0;
	fclose(f);
	return ns;
}

uint64_t perf_machine_busy_ns(void)
{
	unsigned long long v[10] = { 0 }, busy = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "re");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
		   &v[5], &v[6], &v[7], &v[8], &v[9]);
	fclose(f);
	if (n < 8 || hz <= 0)
		return 0;
	/* user nice system [idle iowait] irq softirq steal; guest time is inside user already. */
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	return busy * (1000000000ull / (unsigned long long)hz);
}
