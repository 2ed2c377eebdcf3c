#include "portset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t portset_count(const struct portset *s, uint32_t lo, uint32_t hi)
{
	uint32_t n = 0;

	for (uint32_t p = lo; p <= hi; p++)
		n += portset_has(s, p);
	return n;
}

bool portset_covers(const struct portset *s, uint16_t lo, uint16_t hi)
{
	return portset_count(s, lo, hi) == (uint32_t)hi - lo + 1;
}

int portset_parse_port(const char **s, uint32_t *out)
{
	unsigned long v;
	char *end;

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

int portset_parse(const char *s, struct portset *set)
{
	memset(set, 0, sizeof(*set));
	while (*s && *s != '\n') {
		uint32_t lo, hi;

		if (portset_parse_port(&s, &lo) < 0)
			return -EINVAL;
		hi = lo;
		if (*s == '-') {
			s++;
			if (portset_parse_port(&s, &hi) < 0 || hi < lo)
				return -EINVAL;
		}
		for (uint32_t p = lo; p <= hi; p++)
			portset_add(set, p);
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return -EINVAL;
	}
	return 0;
}

int portset_format(const struct portset *set, char *buf, size_t len)
{
	size_t n = 0;

	if (!len)
		return -ENOSPC;
	buf[0] = '\0';
	for (uint32_t p = 0; p < 65536; p++) {
		uint32_t q = p;
		int w;

		if (!portset_has(set, p))
			continue;
		while (q + 1 < 65536 && portset_has(set, q + 1))
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
