/*
 * Creating the bound sockets portd holds (DESIGN.md, kernel facts).
 *
 * TCP: AF_INET6 bound to [::] with IPV6_V6ONLY=0, never listening, with
 * SO_REUSEADDR set after the bind (hold.c says why). Only a dual-stack hold
 * keeps every address family's bind(0) and connect() off the port, and
 * SO_REUSEADDR lets the client's own server (which almost always sets it)
 * bind and listen on a number-leased port. Never SO_REUSEPORT: that would
 * let other processes share the port.
 *
 * UDP: the same dual-stack bind, but without SO_REUSEADDR: with it on both
 * sides the kernel shares the port and datagrams may reach the daemon's copy.
 *
 * Sockets are blocking and close-on-exec: the file status flags are shared
 * with the copy a client receives, which must behave like a fresh socket.
 * Hosts without IPv6 fall back to AF_INET on 0.0.0.0.
 */
#ifndef PORTD_HOLD_H
#define PORTD_HOLD_H

#include <stdint.h>

/* struct ports_binder callbacks; ctx is unused. */
int hold_bind(void *ctx, uint8_t transport, uint16_t port, int *fd, uint16_t *got);
void hold_close(void *ctx, int fd);

#endif
