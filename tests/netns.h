/* A private network namespace for a test: quiet port ranges, sysctls of its own, loopback only. */
#ifndef PORTD_TEST_NETNS_H
#define PORTD_TEST_NETNS_H

#include <stdbool.h>

/* Bring up lo in a private network namespace if we may (root); returns true if it did. */
bool enter_private_netns(void);

#endif
