/*
 * What the daemon itself uses, for STATUS: the allocator's bytes in use and
 * the open file descriptors. Tests compare both before and after a load to
 * prove that nothing leaks.
 */
#ifndef PORTD_USAGE_H
#define PORTD_USAGE_H

#include <stdint.h>

/* Bytes the allocator has handed out and not got back; 0 if it cannot tell. */
uint64_t usage_heap_bytes(void);

/* Open file descriptors of this process; 0 if /proc/self/fd cannot be read. */
uint32_t usage_open_fds(void);

#endif
