/* Start a portd and wait until it says READY=1: for the race test and the benchmarks. */
#ifndef PORTD_TEST_SPAWN_H
#define PORTD_TEST_SPAWN_H

#include <sys/types.h>

#define SPAWN_ARGS_MAX 64

/*
 * Fork, run child_setup(arg) in the child (may be NULL), then exec argv (a
 * NULL-terminated list of at most SPAWN_ARGS_MAX words, argv[0] the program,
 * looked up in PATH without a slash) with "--ready-fd N" added, and wait at
 * most timeout_ms for READY=1 on that fd (sd_notify's format) and its EOF.
 * Returns the pid, or -errno: -ECHILD if the program exited or timed out
 * without READY=1 (it is killed and reaped then).
 */
pid_t spawn_ready(const char *const *argv, void (*child_setup)(void *), void *arg, int timeout_ms);

#endif
