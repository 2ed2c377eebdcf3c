/*
 * A set of port numbers, one bit each, and the text form the kernel uses for
 * net.ipv4.ip_local_reserved_ports: a comma-separated list of ports and
 * LO-HI ranges ("1,5-9,20\n"; empty, or a newline alone, for none).
 */
#ifndef PORTD_PORTSET_H
#define PORTD_PORTSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PORTSET_WORDS (65536 / 64)

struct portset {
	uint64_t bits[PORTSET_WORDS];
};

static inline bool portset_has(const struct portset *s, uint32_t p) { return s->bits[p >> 6] >> (p & 63) & 1; }
static inline void portset_add(struct portset *s, uint32_t p) { s->bits[p >> 6] |= 1ull << (p & 63); }
static inline void portset_del(struct portset *s, uint32_t p) { s->bits[p >> 6] &= ~(1ull << (p & 63)); }

/* How many of lo..hi are in the set. */
uint32_t portset_count(const struct portset *s, uint32_t lo, uint32_t hi);
/* Are all ports lo..hi in the set? */
bool portset_covers(const struct portset *s, uint16_t lo, uint16_t hi);

/* Read a decimal port 0..65535 at *s, moving *s past it. 0 or -EINVAL. */
int portset_parse_port(const char **s, uint32_t *out);
/* Parse the list form into *set. 0 or -EINVAL. */
int portset_parse(const char *s, struct portset *set);
/* Format *set in the list form (empty string for none). Returns the length, or -ENOSPC. */
int portset_format(const struct portset *set, char *buf, size_t len);

#endif
