/*
 * Built by test-install.sh against the staged install tree, through
 * pkg-config alone: checks that the header and the shared library work from
 * there and says which libportd file it runs with.
 *
 *   staged-client VERSION [SOCKET]
 *
 * VERSION is what pkg-config says of libportd; with SOCKET (a running portd)
 * it also takes an fd lease and a number lease and releases them.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <portd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...) do { \
	if (!(cond)) { \
		fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
		failures++; \
	} \
} while (0)

/* The port an fd of a TCP lease is bound to: portd binds them on [::]. */
static unsigned bound_port(int fd)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || sa.sin6_family != AF_INET6)
		return 0;
	return ntohs(sa.sin6_port);
}

/* What needs no daemon. */
static void check_offline(const char *version)
{
	char path[128], tiny[4];
	struct portd *p = NULL;
	Dl_info info;
	int r;

	CHECK(strcmp(portd_version(), version) == 0, "portd_version() %s, pkg-config %s", portd_version(), version);
	if (dladdr((void *)portd_version, &info) && info.dli_fname)
		printf("libportd: %s\n", info.dli_fname);

	setenv("PORTD_SOCKET", "/nonexistent/portd.sock", 1);
	r = portd_socket_path(path, sizeof(path));
	CHECK(r == (int)strlen("/nonexistent/portd.sock") && strcmp(path, "/nonexistent/portd.sock") == 0,
	      "portd_socket_path: %d %s", r, path);
	CHECK(portd_socket_path(tiny, sizeof(tiny)) == -ENAMETOOLONG, "a 4-byte buffer");
	r = portd_connect(NULL, &p);
	CHECK(r == -ENOENT && p == NULL, "portd_connect to no socket: %d", r);

	CHECK(strcmp(portd_strerror(-PORTD_E_NOENT), "no such lease") == 0, "%s", portd_strerror(-PORTD_E_NOENT));
	CHECK(strcmp(portd_strerror(-ENOENT), portd_strerror(ENOENT)) == 0, "sign of the error");
	CHECK(portd_strerror(-PORTD_E_MAX - 1) != NULL, "an error newer than the library");
	CHECK(portd_detail(NULL) == 0, "portd_detail(NULL)");
	portd_disconnect(NULL);
}

static void check_daemon(const char *sock)
{
	struct portd_lease_opts o = PORTD_LEASE_OPTS_INIT;
	struct portd_lease l;
	struct portd_status st;
	struct portd *p;
	int r;

	r = portd_connect(sock, &p);
	CHECK(r == 0, "portd_connect(%s): %s", sock, portd_strerror(r));
	if (r < 0)
		return;
	r = portd_lease(p, &o, &l, 5000);
	CHECK(r == 0, "fd lease: %s", portd_strerror(r));
	if (r == 0) {
		CHECK(l.nfds == 1 && bound_port(l.fds[0]) == l.ports[0], "fd bound to port %u", l.ports[0]);
		CHECK(listen(l.fds[0], 8) == 0, "listen: %s", strerror(errno));
		r = portd_release(p, l.id, 5000);
		CHECK(r == 0, "release: %s", portd_strerror(r));
		portd_lease_close_fds(&l);
		printf("fd lease %llu: port %u\n", (unsigned long long)l.id, l.ports[0]);
	}
	o.flags = 0;
	r = portd_lease(p, &o, &l, 5000);
	CHECK(r == 0 && l.nfds == 0, "number lease: %s", portd_strerror(r));
	r = portd_status(p, &st, 5000);
	CHECK(r == 0 && st.leases == 1, "status: %s, %u leases", portd_strerror(r), st.leases);
	CHECK(portd_release(p, l.id + 1000, 5000) == -PORTD_E_NOENT, "release of no lease");
	portd_disconnect(p);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: staged-client VERSION [SOCKET]\n");
		return 2;
	}
	check_offline(argv[1]);
	if (argc > 2)
		check_daemon(argv[2]);
	return failures ? 1 : 0;
}
