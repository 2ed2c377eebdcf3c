#include "procwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "lease.h"

struct proc {
	pid_t pid;
	int pidfd;
	uint64_t start;       /* start time, to tell a reused pid from this process */
	bool dying;           /* exit handling is running: detach must not free */
	bool mortal;          /* checked: not init, not a kernel thread */
	unsigned refs;        /* holders besides its leases (a connection of the process) */
	struct proc *dying_next; /* on pw->dying once exited, until freed */
	struct event *ev;
	struct lease *leases; /* linked through lease->tie_prev/tie_next */
	struct procwatch *pw;
	size_t slot;          /* index in pw->procs */
};

struct procwatch {
	struct event_base *base;
	procwatch_exited_fn exited;
	void *ctx;
	/* Open addressing on pid with linear probing; tombstone-free deletion by backward shift. */
	struct proc **procs;
	size_t cap, count;
	/* Exited: out of the hash, kept while leases are being ended or references remain. */
	struct proc *dying;
};

static size_t slot_of(const struct procwatch *pw, pid_t pid)
{
	return ((uint32_t)pid * 2654435761u) & (pw->cap - 1);
}

static struct proc *pw_find(const struct procwatch *pw, pid_t pid)
{
	if (!pw->cap)
		return NULL;
	for (size_t i = slot_of(pw, pid);; i = (i + 1) & (pw->cap - 1)) {
		struct proc *p = pw->procs[i];
		if (!p)
			return NULL;
		if (p->pid == pid)
			return p;
	}
}

static void pw_place(struct procwatch *pw, struct proc *p)
{
	size_t i = slot_of(pw, p->pid);
	while (pw->procs[i])
		i = (i + 1) & (pw->cap - 1);
	pw->procs[i] = p;
	p->slot = i;
}

static int pw_insert(struct procwatch *pw, struct proc *p)
{
	if ((pw->count + 1) * 2 > pw->cap) {
		size_t ncap = pw->cap ? pw->cap * 2 : 16;
		struct proc **old = pw->procs, **n = calloc(ncap, sizeof(*n));
		size_t ocap = pw->cap;
		if (!n)
			return -ENOMEM;
		pw->procs = n;
		pw->cap = ncap;
		for (size_t i = 0; i < ocap; i++)
			if (old[i])
				pw_place(pw, old[i]);
		free(old);
	}
	pw_place(pw, p);
	pw->count++;
	return 0;
}

static void pw_remove(struct procwatch *pw, struct proc *p)
{
	size_t i = p->slot, j = i;

	pw->procs[i] = NULL;
	pw->count--;
	/* Backward-shift the rest of the probe run so lookups need no tombstones. */
	for (;;) {
		j = (j + 1) & (pw->cap - 1);
		struct proc *q = pw->procs[j];
		if (!q)
			break;
		size_t home = slot_of(pw, q->pid);
		if (((j - home) & (pw->cap - 1)) >= ((j - i) & (pw->cap - 1))) {
			pw->procs[i] = q;
			q->slot = i;
			pw->procs[j] = NULL;
			i = j;
		}
	}
}

static void dying_unlink(struct procwatch *pw, struct proc *p)
{
	for (struct proc **pp = &pw->dying; *pp; pp = &(*pp)->dying_next)
		if (*pp == p) {
			*pp = p->dying_next;
			return;
		}
}

static void proc_free(struct proc *p)
{
	if (!p)
		return;
	if (p->ev)
		event_free(p->ev);
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p);
}

/*
 * The process has exited: end its leases, a batch per turn of the loop
 * (exited() ends at most a batch; the pidfd stays readable, so the event
 * comes back while leases remain), then free the watch.
 */
static void proc_exit_now(struct proc *p)
{
	struct procwatch *pw = p->pw;

	if (!p->dying) {
		p->dying = true;
		pw_remove(pw, p); /* a new process with this pid gets a new watch */
		p->dying_next = pw->dying;
		pw->dying = p;
	}
	pw->exited(p, pw->ctx);
	if (p->leases && event_add(p->ev, NULL) == 0)
		return;
	while (p->leases) /* could not re-arm: finish now */
		pw->exited(p, pw->ctx);
	if (!p->refs) {
		dying_unlink(pw, p);
		proc_free(p);
	}
}

static void proc_on_exit(evutil_socket_t fd, short what, void *arg)
{
	proc_exit_now(arg);
}

static bool pidfd_exited(int pidfd)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
	return poll(&pfd, 1, 0) > 0;
}

struct procwatch *procwatch_new(struct event_base *base, procwatch_exited_fn exited, void *ctx)
{
	struct procwatch *pw = calloc(1, sizeof(*pw));
	if (!pw)
		return NULL;
	pw->base = base;
	pw->exited = exited;
	pw->ctx = ctx;
	return pw;
}

void procwatch_free(struct procwatch *pw)
{
	if (!pw)
		return;
	for (size_t i = 0; i < pw->cap; i++)
		proc_free(pw->procs[i]);
	while (pw->dying) {
		struct proc *p = pw->dying;
		pw->dying = p->dying_next;
		proc_free(p);
	}
	free(pw->procs);
	free(pw);
}

struct proc *procwatch_find(struct procwatch *pw, pid_t pid)
{
	struct proc *p = pw_find(pw, pid);

	if (p && pidfd_exited(p->pidfd)) {
		proc_exit_now(p);
		p = NULL;
	}
	return p;
}

void proc_set_mortal(struct proc *p) { p->mortal = true; }
bool proc_mortal(const struct proc *p) { return p->mortal; }

int procwatch_get(struct procwatch *pw, pid_t pid, int pidfd, struct proc **out)
{
	struct proc *p = procwatch_find(pw, pid);
	int r;

	if (p) {
		*out = p;
		return 0;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->pw = pw;
	p->pidfd = pidfd >= 0 ? fcntl(pidfd, F_DUPFD_CLOEXEC, 3) : pidfd_open(pid, 0);
	if (p->pidfd < 0) {
		r = -errno;
		free(p);
		return r;
	}
	/* pidfd_open() gives a close-on-exec fd already. Read /proc only once the pidfd pins the process. */
	p->start = procwatch_start_time(pid);
	if (pidfd_exited(p->pidfd)) {
		proc_free(p);
		return -ESRCH;
	}
	p->ev = event_new(pw->base, p->pidfd, EV_READ, proc_on_exit, p);
	if (!p->ev || event_add(p->ev, NULL) < 0 || (r = pw_insert(pw, p)) < 0) {
		proc_free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

void proc_attach(struct proc *p, struct lease *l)
{
	l->watch = p;
	l->tied_pid = p->pid;
	l->tie_prev = NULL;
	l->tie_next = p->leases;
	if (p->leases)
		p->leases->tie_prev = l;
	p->leases = l;
}

void proc_detach(struct procwatch *pw, struct lease *l)
{
	struct proc *p = l->watch;

	if (!p)
		return;
	if (l->tie_prev)
		l->tie_prev->tie_next = l->tie_next;
	else
		p->leases = l->tie_next;
	if (l->tie_next)
		l->tie_next->tie_prev = l->tie_prev;
	l->watch = NULL;
	l->tie_prev = l->tie_next = NULL;
	procwatch_put(pw, p);
}

struct lease *proc_first_lease(const struct proc *p) { return p->leases; }
uint64_t proc_start(const struct proc *p) { return p->start; }

void procwatch_put(struct procwatch *pw, struct proc *p)
{
	if (!p || p->leases || p->refs || p->dying)
		return;
	pw_remove(pw, p);
	proc_free(p);
}

void proc_ref(struct proc *p) { p->refs++; }

void proc_unref(struct procwatch *pw, struct proc *p)
{
	if (!p || !p->refs)
		return;
	p->refs--;
	if (!p->dying) {
		procwatch_put(pw, p);
	} else if (!p->refs && !p->leases) {
		/* Exit handling is done (no lease left to end): nobody needs it now. */
		dying_unlink(pw, p);
		proc_free(p);
	}
}

bool proc_exited(const struct proc *p) { return p->dying; }

/* Read /proc/PID/NAME into buf, NUL-terminated. Returns the length, or -ESRCH. */
static ssize_t proc_read(pid_t pid, const char *name, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	return n;
}

/* The fields of /proc/PID/stat after the command name, which may hold spaces and ')'. */
static const char *stat_fields(const char *buf)
{
	const char *p = strrchr(buf, ')');
	return p && p[1] ? p + 1 : NULL;
}

uint64_t procwatch_start_time(pid_t pid)
{
	char buf[1024];
	unsigned long long start = 0;
	const char *p;

	if (proc_read(pid, "stat", buf, sizeof(buf)) < 0 || !(p = stat_fields(buf)))
		return 0;
	/* From field 3 (state) on, starttime is field 22: skip 19 fields. */
	if (sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &start) != 1)
		return 0;
	return start;
}
/*
 * PIDFD_GET_INFO (Linux 6.13), not in Debian 12's headers: the first,
 * 64-byte version of the structure, which every kernel with the ioctl takes.
 */
struct pidfd_info_v0 {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	uint32_t spare0;
};
#define PIDFD_GET_INFO_V0 _IOWR(0xFF, 11, struct pidfd_info_v0)
#define PIDFD_INFO_CREDS_BIT 0x2ull
#define PF_KTHREAD_FLAG 0x00200000u /* include/linux/sched.h; /proc/PID/stat field 9 */

/* The real uid from /proc/PID/status ("Uid:\treal\teffective..."). */
static int status_uid(pid_t pid, uint32_t *uid)
{
	char buf[2048], *p;

	if (proc_read(pid, "status", buf, sizeof(buf)) < 0)
		return -ESRCH;
	p = strstr(buf, "\nUid:");
	if (!p || sscanf(p + 5, "%" SCNu32, uid) != 1)
		return -ESRCH;
	return 0;
}

/* Kernel threads have no executable; a process's exe link may be unreadable to us, so check the flags then. */
static int kthread_of(pid_t pid, bool *kthread)
{
	char path[64], buf[1024];
	const char *p;
	unsigned flags;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	if (readlink(path, buf, sizeof(buf)) >= 0) {
		*kthread = false;
		return 0;
	}
	if (proc_read(pid, "stat", buf, sizeof(buf)) < 0 || !(p = stat_fields(buf)) ||
	    sscanf(p, " %*c %*d %*d %*d %*d %*d %u", &flags) != 1)
		return -ESRCH;
	*kthread = (flags & PF_KTHREAD_FLAG) != 0;
	return 0;
}

/* Through the pidfd where the kernel can: the process it pins, no /proc text to parse. */
static int pidfd_uid(int pidfd, pid_t pid, uint32_t *uid, bool *via_proc)
{
	struct pidfd_info_v0 pi = { .mask = PIDFD_INFO_CREDS_BIT };

	*via_proc = false;
	if (ioctl(pidfd, PIDFD_GET_INFO_V0, &pi) == 0 && (pi.mask & PIDFD_INFO_CREDS_BIT)) {
		*uid = pi.ruid;
		return 0;
	}
	*via_proc = true;
	return status_uid(pid, uid);
}

int proc_uid(const struct proc *p, uint32_t *uid)
{
	bool via_proc;
	int r = pidfd_uid(p->pidfd, p->pid, uid, &via_proc);

	/* /proc is read by pid: a pid reused meanwhile shows as an exit of ours. */
	if (r == 0 && via_proc && pidfd_exited(p->pidfd))
		r = -ESRCH;
	return r;
}

int procwatch_open_pid(pid_t pid, struct proc_info *info)
{
	bool via_proc;
	int fd, r;

	if (pid <= 0)
		return -EINVAL;
	fd = pidfd_open(pid, 0);
	/* A thread that is not its process's leader: ENOENT since Linux 6.9, EINVAL before. */
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	if ((r = pidfd_uid(fd, pid, &info->uid, &via_proc)) < 0)
		goto fail;
	if ((r = kthread_of(pid, &info->kthread)) < 0)
		goto fail;
	/* /proc was read by pid: if the pid was reused meanwhile, the pidfd says its process exited. */
	r = -ESRCH;
	if (pidfd_exited(fd))
		goto fail;
	return fd;
fail:
	close(fd);
	return r;
}

pid_t proc_pid(const struct proc *p) { return p->pid; }
size_t procwatch_count(const struct procwatch *pw) { return pw->count; }
