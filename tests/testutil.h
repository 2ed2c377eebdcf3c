/* Helpers for end-to-end tests: the real portd and portctl binaries, bounded waits. */
#ifndef PORTD_TESTUTIL_H
#define PORTD_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netns.h"

struct daemon_proc {
	pid_t pid;
	char dir[64];   /* private temporary directory holding the socket */
	char sock[128];
};

/*
 * Start $PORTD_BIN --socket DIR/portd.sock --ready-fd N ARGS... (NULL-terminated)
 * and wait (at most 10 s) until it reports ready. Fails the test otherwise.
 * d must be zeroed for a new directory; a d whose daemon has gone keeps its
 * socket path, so a second start serves the same path.
 */
void daemon_start(struct daemon_proc *d, const char *arg, ...);
/* daemon_start() with RLIMIT_NOFILE set to nofile (soft and hard) in the daemon. */
void daemon_start_nofile(struct daemon_proc *d, unsigned long nofile, const char *arg, ...);
/* SIGTERM, wait (at most 10 s) for a clean exit (status 0), check the socket file is gone. */
void daemon_term(struct daemon_proc *d);
/* daemon_term(), then remove its saved state and directory: d is free for a new daemon. */
void daemon_stop(struct daemon_proc *d);
/* SIGKILL: the daemon leaves its socket file behind; d keeps the path. */
void daemon_kill(struct daemon_proc *d);
/* cmocka teardown: SIGKILL every daemon a failed test left running. */
int daemons_teardown(void **state);
/* Entries of /proc/PID/fd. */
int count_fds(pid_t pid);
/* Wait (bounded) until count_fds(pid) == want; says what it saw on stderr if it never does. */
bool wait_fd_count(pid_t pid, int want, int timeout_ms);
/* CPU time of process pid (user + system) in clock ticks, from /proc/PID/stat; -1 on error. */
long proc_cpu_ticks(pid_t pid);
/* Resident set size of process pid in KiB (VmRSS); -1 on error. */
long proc_rss_kb(pid_t pid);

/*
 * Run $PORTCTL_BIN ARGS... (NULL-terminated) with PORTD_SOCKET=sock (unless
 * sock is NULL), capture stdout and stderr (NUL-terminated, truncated to
 * the buffers), and return its exit status (or -1 if it did not exit).
 */
int portctl(const char *sock, char *out, size_t outlen, char *err, size_t errlen, const char *arg, ...);

/*
 * $PORTD_TEST_WRAPPER, if set, is a command prefix (words split at spaces)
 * that daemon_start() and portctl() run the binary under, e.g. valgrind
 * (meson test --setup=valgrind). Is one in use?
 */
bool test_wrapped(void);

/* Monotonic milliseconds. */
uint64_t now_ms(void);

/*
 * Start of an e2e test program: ignore SIGPIPE, honour PORTD_E2E_FILTER (a
 * cmocka test name pattern, to run one test) and enter_private_netns().
 */
bool e2e_setup(void);


/* Can a socket with/without SO_REUSEADDR bind TCP [::]:port (dual-stack)? Returns 0 or -errno; *fd_out kept open if non-NULL. */
int try_bind_tcp(uint16_t port, bool reuseaddr, int *fd_out);

/* Connect TCP to 127.0.0.1 or [::1] (family) port: the fd, or -errno. */
int tcp_connect(int family, uint16_t port);

struct portd;
/* portd_connect() to d's socket, or fail the test. */
struct portd *connect_ok(const struct daemon_proc *d);

/*
 * Raw control connections, for what the library never sends. raw_socket():
 * connected fd, or -1 with *err set; raw_connect() fails the test instead.
 * raw_result(): read one reply (bounded wait; the daemon's version) and
 * return its result code. raw_closed(): does the daemon close fd (bounded
 * wait) without a reply before?
 */
int raw_socket(const struct daemon_proc *d, bool nonblock, int *err);
int raw_connect(const struct daemon_proc *d);
uint32_t raw_result(int fd, uint32_t *detail);
bool raw_closed(int fd);

/* Wait (bounded) until the caller sees exactly n leases in portd_list(). */
bool wait_count(struct portd *p, int n, int timeout_ms);

#endif
