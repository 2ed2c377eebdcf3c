/*
 * A count per uid: open addressing on the uid, where a slot with count 0 is
 * empty, so a uid's entry goes when its count drops to 0 and the table holds
 * only the uids counted now. Lookups cost O(1) whatever the number of uids.
 */
#ifndef PORTD_UIDCOUNT_H
#define PORTD_UIDCOUNT_H

#include <stddef.h>
#include <stdint.h>

struct uidcount;

struct uidcount *uidcount_new(void);
/* Accepts NULL. */
void uidcount_free(struct uidcount *u);

uint32_t uidcount_get(const struct uidcount *u, uint32_t uid);
/* Add n (> 0) to uid's count. Returns 0, or -ENOMEM (the count is unchanged). */
int uidcount_add(struct uidcount *u, uint32_t uid, uint32_t n);
/* Take n from uid's count, down to 0 at most. */
void uidcount_sub(struct uidcount *u, uint32_t uid, uint32_t n);
/* uids with a count above 0. */
size_t uidcount_uids(const struct uidcount *u);

#endif
