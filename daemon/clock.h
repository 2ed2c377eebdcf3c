/* An injectable monotonic clock, in milliseconds, so tests need no sleeping. */
#ifndef PORTD_CLOCK_H
#define PORTD_CLOCK_H

#include <stdint.h>

struct clock {
	uint64_t (*now_ms)(void *ctx);
	void *ctx;
};

static inline uint64_t clock_now(const struct clock *c) { return c->now_ms(c->ctx); }

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t clock_monotonic_ms(void *ctx);

#endif
