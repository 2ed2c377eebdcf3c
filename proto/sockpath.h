/* Where the control socket lives; the daemon and every client resolve it the same way. */
#ifndef PORTD_SOCKPATH_H
#define PORTD_SOCKPATH_H

#include <stddef.h>

#define PORTD_SYSTEM_SOCKET "/run/portd/portd.sock"

/*
 * $PORTD_SOCKET if set and non-empty, else $XDG_RUNTIME_DIR/portd.sock (if
 * XDG_RUNTIME_DIR is set and non-empty), else PORTD_SYSTEM_SOCKET. Writes a
 * NUL-terminated path; returns its length, or -ENAMETOOLONG if it would not
 * fit in len or in sockaddr_un.sun_path.
 */
int sockpath_default(char *buf, size_t len);

#endif
