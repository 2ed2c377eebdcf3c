/* Between the valgrind compatibility preload (compat.c) and its native pidfd helper (pidfd-helper.c). */
#ifndef PORTD_VG_COMPAT_H
#define PORTD_VG_COMPAT_H

#include <stdint.h>

/* The path of the helper, set by the valgrind test setup. */
#define VG_COMPAT_HELPER_ENV "PORTD_VALGRIND_PIDFD_HELPER"

/* One request: pidfd_open(pid, flags). The answer: an int32 errno (0: the pidfd comes as SCM_RIGHTS). */
struct vg_pidfd_req {
	int32_t pid;
	uint32_t flags;
};

#endif
