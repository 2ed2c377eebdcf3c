/*
 * What the fuzz targets that drive the daemon share.
 *
 * A helper is a child process that makes connections for the fuzzer: the
 * kernel records the helper's uid and pid on them (SO_PEERCRED,
 * SO_PEERPIDFD), so a target can be called by root or by nobody, tie leases
 * to a process it can kill, and check that the daemon answers each case as it
 * must. A helper closes every fd it inherited: the daemon's sockets must not
 * outlive the daemon's own copies.
 */
#ifndef PORTD_FUZZ_UTIL_H
#define PORTD_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* An invariant of the daemon: a failure is a finding, and the input is saved as a crash. */
#define FUZZ_CHECK(cond)                                                                    \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			__builtin_trap();                                                   \
		}                                                                           \
	} while (0)

#define FUZZ_NOBODY 65534


struct fuzz_helper {
	pid_t pid;  /* 0: not running */
	int ctl;    /* SOCK_SEQPACKET to the helper */
	uid_t uid;  /* its real uid: nobody if asked and we are root, else ours */
	pid_t tid;  /* a second thread of it: an id that names no process */
};

/* Fork a helper (as nobody if asked and possible). 0 or -errno. */
int fuzz_helper_start(struct fuzz_helper *h, bool nobody);
/* SIGKILL it and reap it: leases tied to it see their process exit. Accepts a stopped helper. */
void fuzz_helper_stop(struct fuzz_helper *h);
/* Stop it (if running) and start a new one; a failure is fatal. */
void fuzz_helper_restart(struct fuzz_helper *h, bool nobody);
/* A SOCK_SEQPACKET pair the helper made: sv[0] and sv[1] both carry the helper's credentials. 0 or -errno. */
int fuzz_helper_socketpair(struct fuzz_helper *h, int sv[2]);
/* A SOCK_STREAM socket the helper connected to abstract name ("@" not included): the fd, or -errno. */
int fuzz_helper_connect(struct fuzz_helper *h, const char *name);

struct fuzz_fds {
	int total;  /* entries of /proc/self/fd */
	int pidfds; /* of them, pidfds */
};
void fuzz_count_fds(struct fuzz_fds *out);

/* Non-blocking or not, as asked. */
void fuzz_set_nonblock(int fd, bool on);

#endif
