/*
 * net.ipv4.ip_local_reserved_ports: take portd's range out of every
 * process's automatic port selection (bind to port 0, connect), TCP and UDP,
 * while explicit binds keep working (DESIGN.md, kernel facts).
 *
 * The sysctl is one list for the whole network namespace, so portd adds only
 * its range and, on exit, removes only the ports it added: reservations made
 * by others, before or meanwhile, stay. The value is a comma-separated list
 * of ports and LO-HI ranges; clearing it takes a written newline.
 */
#ifndef PORTD_RESERVE_H
#define PORTD_RESERVE_H

#include <stdint.h>

#include "portset.h"

#define RESERVE_SYSCTL "/proc/sys/net/ipv4/ip_local_reserved_ports"

/* The ports portd added, to be removed again. */
struct reservation {
	uint16_t lo, hi;
	struct portset added;
};

/* Read the sysctl at path into *set. 0 or -errno. */
int reserve_read(const char *path, struct portset *set);
/* Add lo..hi to the sysctl at path, recording what was not there before. 0 or -errno. */
int reserve_add(const char *path, uint16_t lo, uint16_t hi, struct reservation *r);
/* Remove what reserve_add() added, keeping everything else. 0 or -errno. */
int reserve_remove(const char *path, const struct reservation *r);

#endif
