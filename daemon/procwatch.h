/*
 * Ending leases when a process exits.
 *
 * One watch per process: a pidfd (it polls readable once the process has
 * exited) with a libevent read event, and the list of leases tied to it. All
 * leases of a test runner share one pidfd, so tied leases cost no extra fd.
 *
 * Watches are found by pid. A pid can be reused once its process is gone and
 * the new process may ask for a lease before the old pidfd's event has run,
 * so procwatch_get() checks an existing watch's pidfd first and, if that
 * process has exited, runs its exit handling before making a new watch.
 */
#ifndef PORTD_PROCWATCH_H
#define PORTD_PROCWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct lease;
struct proc;
struct procwatch;

/*
 * exited() ends (and so detaches) leases tied to p: all of them, or a batch;
 * it is called again on the next turn of the loop while any remain, and p
 * is freed once none do.
 */
typedef void (*procwatch_exited_fn)(struct proc *p, void *ctx);

struct procwatch *procwatch_new(struct event_base *base, procwatch_exited_fn exited, void *ctx);
/* Frees every watch without calling exited(); leases still tied keep a dangling watch: detach them first. */
void procwatch_free(struct procwatch *pw);

/*
 * The watch for pid, made if there is none. pidfd is borrowed (duplicated if
 * used); -1 means open one with pidfd_open(pid). Returns 0, -ESRCH if the
 * process has already exited, or another -errno.
 */
int procwatch_get(struct procwatch *pw, pid_t pid, int pidfd, struct proc **out);

/*
 * The watch for pid if there is one and its process has not exited (if it
 * has, its exit is handled now, as procwatch_get() does), else NULL: a cheap
 * way to ask about a process that already has leases tied to it.
 */
struct proc *procwatch_find(struct procwatch *pw, pid_t pid);
/* The process's real uid now, read through its pidfd (or /proc, checked). 0 or -ESRCH. */
int proc_uid(const struct proc *p, uint32_t *uid);
/*
 * Whether the watch's process was checked to be one that can exit (not
 * init, not a kernel thread): set by whoever checked it, kept while the
 * watch lives.
 */
void proc_set_mortal(struct proc *p);
bool proc_mortal(const struct proc *p);

/* Tie l to p (l->watch = p). */
void proc_attach(struct proc *p, struct lease *l);
/* Untie l, if tied; frees the watch when its last lease goes. */
void proc_detach(struct procwatch *pw, struct lease *l);
/* The first lease tied to p, or NULL. */
struct lease *proc_first_lease(const struct proc *p);
pid_t proc_pid(const struct proc *p);
/* The process's start time (procwatch_start_time() when the watch was made). */
uint64_t proc_start(const struct proc *p);
/* Free p if no lease is tied to it and nobody holds a reference (a watch made but not used). */
void procwatch_put(struct procwatch *pw, struct proc *p);

/*
 * References besides tied leases: a connection keeps the watch of its own
 * process while it is open, so a client that leases and releases over and
 * over does not rebuild it (a pidfd, a /proc read, an epoll update) each
 * time. After the process has exited, the watch lives on, empty, until the
 * last reference goes.
 */
void proc_ref(struct proc *p);
void proc_unref(struct procwatch *pw, struct proc *p);
bool proc_exited(const struct proc *p);

/* Who a process is, for deciding whether a lease may be tied to it. */
struct proc_info {
	uint32_t uid;  /* real uid */
	bool kthread;  /* a kernel thread: it never exits */
};

/*
 * Open a pidfd for pid and read its uid and whether it is a kernel thread:
 * through the pidfd where the kernel can (PIDFD_GET_INFO, Linux 6.13), else
 * from /proc, then checking that the pidfd's process has not exited, so the
 * answer cannot describe a process that reused the pid meanwhile. Returns the
 * pidfd (close-on-exec), -ESRCH if there is no such process, or another
 * -errno (-EINVAL for a pid the kernel cannot have).
 */
int procwatch_open_pid(pid_t pid, struct proc_info *info);

/* Start time of pid in clock ticks since boot (/proc/PID/stat, field 22), 0 if unknown. */
uint64_t procwatch_start_time(pid_t pid);

size_t procwatch_count(const struct procwatch *pw);

#endif
