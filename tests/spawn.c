#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pid_t spawn_ready(const char *const *argv, void (*child_setup)(void *), void *arg, int timeout_ms)
{
	const char *full[SPAWN_ARGS_MAX + 3];
	char readyfd[16], buf[64];
	size_t n = 0, got = 0;
	pid_t pid;
	int p[2];

	for (; argv[n]; n++) {
		if (n >= SPAWN_ARGS_MAX)
			return -E2BIG;
		full[n] = argv[n];
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	snprintf(readyfd, sizeof(readyfd), "%d", p[1]);
	full[n++] = "--ready-fd";
	full[n++] = readyfd;
	full[n] = NULL;
	pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(p[0]);
		close(p[1]);
		return e;
	}
	if (pid == 0) {
		if (child_setup)
			child_setup(arg);
		fcntl(p[1], F_SETFD, 0);
		execvp(full[0], (char *const *)full);
		_exit(127);
	}
	close(p[1]);
	/* READY=1 then EOF, or EOF alone (it died). */
	for (long long end = mono_ms() + timeout_ms; got < sizeof(buf) - 1;) {
		long long now = mono_ms();
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		ssize_t r;

		if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0)
			break;
		r = read(p[0], buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		/* Read on to EOF: the daemon closes the fd right after, and a test's fd count must not race that. */
	}
	close(p[0]);
	buf[got] = '\0';
	if (!strstr(buf, "READY=1\n")) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return -ECHILD;
	}
	return pid;
}
