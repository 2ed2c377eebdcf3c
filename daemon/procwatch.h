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

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct lease;
struct proc;
struct procwatch;

/* exited() must end (and so detach) every lease tied to p; p is freed after it returns. */
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

/* Tie l to p (l->watch = p). */
void proc_attach(struct proc *p, struct lease *l);
/* Untie l, if tied; frees the watch when its last lease goes. */
void proc_detach(struct procwatch *pw, struct lease *l);
/* The first lease tied to p, or NULL. */
struct lease *proc_first_lease(const struct proc *p);
pid_t proc_pid(const struct proc *p);
/* The process's start time (procwatch_start_time() when the watch was made). */
uint64_t proc_start(const struct proc *p);
/* Free p if no lease is tied to it (a watch made but not used). */
void procwatch_put(struct procwatch *pw, struct proc *p);

/* Start time of pid in clock ticks since boot (/proc/PID/stat, field 22), 0 if unknown. */
uint64_t procwatch_start_time(pid_t pid);

size_t procwatch_count(const struct procwatch *pw);

#endif
