/*
 * Unit tests for proto/fdpass.c over a SOCK_SEQPACKET socketpair: fds arrive
 * close-on-exec and refer to the sent files; every error path leaves no fd
 * open (counted in /proc/self/fd).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdpass.h"
#include "protocol.h"

struct pair {
	int s[2];
};

static int setup(void **state)
{
	static struct pair p;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p.s) < 0)
		return -1;
	*state = &p;
	return 0;
}

static int teardown(void **state)
{
	struct pair *p = *state;

	close(p->s[0]);
	close(p->s[1]);
	return 0;
}

static int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n; /* includes the DIR's own fd, the same before and after */
}

/* n distinct files to send: pipe ends and /dev/null. */
static void open_files(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i += 2) {
		int pp[2];

		assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
		fds[i] = pp[0];
		if (i + 1 < n)
			fds[i + 1] = pp[1];
		else
			close(pp[1]);
	}
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;

	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_int_equal(sa.st_dev, sb.st_dev);
	assert_int_equal(sa.st_ino, sb.st_ino);
}

static void roundtrip(struct pair *p, size_t nsend)
{
	int sent[PORTD_FDS_MAX], got[PORTD_FDS_MAX];
	char out[100], in[200];
	size_t nfds = PORTD_FDS_MAX;
	int before = count_open_fds();

	memset(out, 'a' + (int)nsend, sizeof(out));
	open_files(sent, nsend);
	memset(got, -1, sizeof(got));
	assert_int_equal(fdpass_send(p->s[0], out, sizeof(out), sent, nsend, 0), sizeof(out));
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), got, &nfds, 0), sizeof(out));
	assert_memory_equal(in, out, sizeof(out));
	assert_int_equal(nfds, nsend);
	for (size_t i = 0; i < nsend; i++) {
		assert_true(got[i] >= 0);
		assert_int_not_equal(got[i], sent[i]);
		assert_int_equal(fcntl(got[i], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
		/* In order: got[i] is the same file as sent[i], not as sent[i + 1]. */
		assert_same_file(got[i], sent[i]);
	}
	for (size_t i = nsend; i < PORTD_FDS_MAX; i++)
		assert_int_equal(got[i], -1); /* nothing written past *nfds */
	fdpass_close_all(got, nfds);
	for (size_t i = 0; i < nfds; i++)
		assert_int_equal(got[i], -1);
	fdpass_close_all(sent, nsend);
	assert_int_equal(count_open_fds(), before);
}

static void test_no_fds(void **state) { roundtrip(*state, 0); }
static void test_one_fd(void **state) { roundtrip(*state, 1); }
static void test_three_fds(void **state) { roundtrip(*state, 3); }
static void test_max_fds(void **state) { roundtrip(*state, PORTD_FDS_MAX); }

/* The received fd is the live pipe: what is written into the kept end can be read from it. */
static void test_fd_is_live(void **state)
{
	struct pair *p = *state;
	int pp[2], got[1] = { -1 };
	size_t nfds = 1;
	char c = 0;

	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	assert_int_equal(fdpass_send(p->s[0], "x", 1, &pp[0], 1, 0), 1);
	close(pp[0]);
	assert_int_equal(fdpass_recv(p->s[1], &c, 1, got, &nfds, 0), 1);
	assert_int_equal(nfds, 1);
	assert_int_equal(write(pp[1], "z", 1), 1);
	assert_int_equal(read(got[0], &c, 1), 1);
	assert_int_equal(c, 'z');
	close(pp[1]);
	close(got[0]);
}

static void test_too_many_fds(void **state)
{
	struct pair *p = *state;
	int sent[3], got[2] = { -1, -1 };
	size_t nfds = 2;
	char in[16];
	int before = count_open_fds();

	open_files(sent, 3);
	assert_int_equal(fdpass_send(p->s[0], "hello", 5, sent, 3, 0), 5);
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), got, &nfds, 0), -EBADMSG);
	assert_int_equal(nfds, 0);
	fdpass_close_all(sent, 3);
	assert_int_equal(count_open_fds(), before);

	/* A receiver that takes no fds at all. */
	open_files(sent, 1);
	nfds = 0;
	assert_int_equal(fdpass_send(p->s[0], "hello", 5, sent, 1, 0), 5);
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), NULL, &nfds, 0), -EBADMSG);
	assert_int_equal(nfds, 0);
	fdpass_close_all(sent, 1);
	assert_int_equal(count_open_fds(), before);

	/* The stream goes on: the next message is fine. */
	nfds = 2;
	assert_int_equal(fdpass_send(p->s[0], "ok", 2, NULL, 0, 0), 2);
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), got, &nfds, 0), 2);
}

/* More than PORTD_FDS_MAX with raw sendmsg: the kernel truncates the control data. */
static void test_ctrunc(void **state)
{
	struct pair *p = *state;
	enum { N = PORTD_FDS_MAX + 4 };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * N)];
	} cbuf;
	int sent[N], got[PORTD_FDS_MAX];
	struct iovec iov = { .iov_base = "big", .iov_len = 3 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
	};
	struct cmsghdr *c;
	size_t nfds = PORTD_FDS_MAX;
	char in[16];
	int before = count_open_fds();

	memset(&cbuf, 0, sizeof(cbuf));
	open_files(sent, N);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * N);
	memcpy(CMSG_DATA(c), sent, sizeof(sent));
	assert_int_equal(sendmsg(p->s[0], &msg, 0), 3);
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), got, &nfds, 0), -EBADMSG);
	assert_int_equal(nfds, 0);
	fdpass_close_all(sent, N);
	assert_int_equal(count_open_fds(), before);
}

static void test_msg_too_big(void **state)
{
	struct pair *p = *state;
	int sent[2], got[2] = { -1, -1 };
	char out[64] = "0123456789", in[10];
	size_t nfds = 2;
	int before = count_open_fds();

	open_files(sent, 2);
	assert_int_equal(fdpass_send(p->s[0], out, sizeof(out), sent, 2, 0), sizeof(out));
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), got, &nfds, 0), -EMSGSIZE);
	assert_int_equal(nfds, 0);
	fdpass_close_all(sent, 2);
	assert_int_equal(count_open_fds(), before);

	/* The rest of the datagram is gone, not left for the next read. */
	nfds = 2;
	assert_int_equal(fdpass_send(p->s[0], "next", 4, NULL, 0, 0), 4);
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), got, &nfds, 0), 4);
	assert_memory_equal(in, "next", 4);
}

static volatile sig_atomic_t sigpipes;

static void on_sigpipe(int sig)
{
	sigpipes++;
}

static void test_eof(void **state)
{
	struct sigaction sa = { .sa_handler = on_sigpipe }, old;
	struct pair *p = *state;
	int got[1];
	size_t nfds = 1;
	char in[16];

	close(p->s[0]);
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), got, &nfds, 0), 0);
	assert_int_equal(nfds, 0);
	p->s[0] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0); /* for teardown */
	/* And sending to a closed peer is -EPIPE, never SIGPIPE. Linux's SEQPACKET
	 * send path does not raise SIGPIPE today (its stream path does);
	 * MSG_NOSIGNAL keeps it that way. Caught here rather than relying on the
	 * inherited disposition, which may be SIG_IGN. */
	sigpipes = 0;
	assert_int_equal(sigaction(SIGPIPE, &sa, &old), 0);
	assert_int_equal(fdpass_send(p->s[1], "x", 1, NULL, 0, 0), -EPIPE);
	sigaction(SIGPIPE, &old, NULL);
	assert_int_equal(sigpipes, 0);
}

static void test_errors(void **state)
{
	struct pair *p = *state;
	int fds[PORTD_FDS_MAX + 1] = { 0 };
	size_t nfds = 1;
	char in[4];

	assert_int_equal(fdpass_send(p->s[0], "x", 1, fds, PORTD_FDS_MAX + 1, 0), -EINVAL);
	assert_int_equal(fdpass_send(p->s[0], "x", 1, NULL, 1, 0), -EINVAL);
	assert_int_equal(fdpass_send(-1, "x", 1, NULL, 0, 0), -EBADF);
	/* Nothing queued: non-blocking receive says so. */
	assert_int_equal(fdpass_recv(p->s[1], in, sizeof(in), fds, &nfds, MSG_DONTWAIT), -EAGAIN);
	assert_int_equal(nfds, 0);
	/* Sending a closed fd number is the kernel's -EBADF. */
	fds[0] = dup(p->s[0]);
	close(fds[0]);
	assert_int_equal(fdpass_send(p->s[0], "x", 1, fds, 1, 0), -EBADF);
	fdpass_close_all(NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_three_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_is_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrunc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msg_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};

	return cmocka_run_group_tests_name("fdpass", tests, NULL, NULL);
}
