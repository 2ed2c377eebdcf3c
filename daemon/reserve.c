#include "reserve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int reserve_read(const char *path, struct portset *set)
{
	static char buf[65536 * 7];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t r;

	if (fd < 0)
		return -errno;
	while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	r = r < 0 ? -errno : 0;
	close(fd);
	if (r < 0)
		return (int)r;
	buf[n] = '\0';
	return portset_parse(buf, set);
}

static int reserve_write(const char *path, const struct portset *set)
{
	static char buf[65536 * 7];
	int n = portset_format(set, buf, sizeof(buf) - 1), fd, r = 0;
	struct stat st;

	if (n < 0)
		return n;
	/* An empty list is written as a newline: an empty write changes nothing. */
	buf[n++] = '\n';
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, (size_t)n) != n)
		r = -errno;
	/* A sysctl takes the whole value per write; a plain file (in tests) must also lose its tail. */
	if (r == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ftruncate(fd, n) < 0)
		r = -errno;
	close(fd);
	return r;
}

int reserve_add(const char *path, uint16_t lo, uint16_t hi, struct reservation *res)
{
	struct portset cur;
	int r = reserve_read(path, &cur);

	if (r < 0)
		return r;
	memset(res, 0, sizeof(*res));
	res->lo = lo;
	res->hi = hi;
	for (uint32_t p = lo; p <= hi; p++)
		if (!portset_has(&cur, p)) {
			portset_add(&res->added, p);
			portset_add(&cur, p);
		}
	return reserve_write(path, &cur);
}

int reserve_remove(const char *path, const struct reservation *res)
{
	struct portset cur;
	int r = reserve_read(path, &cur);

	if (r < 0)
		return r;
	for (uint32_t p = res->lo; p <= res->hi; p++)
		if (portset_has(&res->added, p))
			portset_del(&cur, p);
	return reserve_write(path, &cur);
}
