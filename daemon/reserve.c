#include "reserve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool bit(const struct portset *s, uint32_t p) { return s->bits[p >> 6] >> (p & 63) & 1; }
static void set_bit(struct portset *s, uint32_t p) { s->bits[p >> 6] |= 1ull << (p & 63); }
static void clr_bit(struct portset *s, uint32_t p) { s->bits[p >> 6] &= ~(1ull << (p & 63)); }

static int parse_port(const char **s, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (**s < '0' || **s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(*s, &end, 10);
	if (errno || v > 65535)
		return -EINVAL;
	*s = end;
	*out = (uint32_t)v;
	return 0;
}

int reserve_parse(const char *s, struct portset *set)
{
	memset(set, 0, sizeof(*set));
	while (*s && *s != '\n') {
		uint32_t lo, hi;

		if (parse_port(&s, &lo) < 0)
			return -EINVAL;
		hi = lo;
		if (*s == '-') {
			s++;
			if (parse_port(&s, &hi) < 0 || hi < lo)
				return -EINVAL;
		}
		for (uint32_t p = lo; p <= hi; p++)
			set_bit(set, p);
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return -EINVAL;
	}
	return 0;
}

int reserve_format(const struct portset *set, char *buf, size_t len)
{
	size_t n = 0;

	if (!len)
		return -ENOSPC;
	buf[0] = '\0';
	for (uint32_t p = 0; p < 65536; p++) {
		uint32_t q = p;
		int w;

		if (!bit(set, p))
			continue;
		while (q + 1 < 65536 && bit(set, q + 1))
			q++;
		if (q == p)
			w = snprintf(buf + n, len - n, "%s%u", n ? "," : "", p);
		else
			w = snprintf(buf + n, len - n, "%s%u-%u", n ? "," : "", p, q);
		if (w < 0 || (size_t)w >= len - n)
			return -ENOSPC;
		n += (size_t)w;
		p = q;
	}
	return (int)n;
}

bool reserve_covers(const struct portset *set, uint16_t lo, uint16_t hi)
{
	for (uint32_t p = lo; p <= hi; p++)
		if (!bit(set, p))
			return false;
	return true;
}

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
	return reserve_parse(buf, set);
}

static int reserve_write(const char *path, const struct portset *set)
{
	static char buf[65536 * 7];
	int n = reserve_format(set, buf, sizeof(buf) - 1), fd, r = 0;
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
		if (!bit(&cur, p)) {
			set_bit(&res->added, p);
			set_bit(&cur, p);
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
		if (bit(&res->added, p))
			clr_bit(&cur, p);
	return reserve_write(path, &cur);
}
