/* A private network namespace for a test: quiet port ranges, sysctls of its own, loopback only. */
#ifndef PORTD_TEST_NETNS_H
#define PORTD_TEST_NETNS_H

#include <stdbool.h>

/* unshare(CLONE_NEWNET) and bring up lo. 0 or -errno (-EPERM unless root). */
int unshare_netns(void);
/* The same if we may (root); returns true if it did. */
bool enter_private_netns(void);

#endif
