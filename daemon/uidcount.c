#include "uidcount.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#define UIDCOUNT_MIN_CAP 16 /* a power of two */

struct slot {
	uint32_t uid;
	uint32_t count; /* 0: empty */
};

struct uidcount {
	struct slot *slots;
	size_t cap, len; /* cap is a power of two, len < cap * 3 / 4 */
};

static size_t hash_uid(uint32_t uid)
{
	/* murmur3 fmix32: uids 0, 1, 1000, 1001, ... spread evenly. */
	uid ^= uid >> 16;
	uid *= 0x85ebca6bu;
	uid ^= uid >> 13;
	uid *= 0xc2b2ae35u;
	uid ^= uid >> 16;
	return uid;
}

/* Is k cyclically in (i, j]? For backward-shift deletion. */
static bool cyclic_between(size_t i, size_t k, size_t j)
{
	return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

static struct slot *find(const struct uidcount *u, uint32_t uid)
{
	size_t mask = u->cap - 1;

	for (size_t i = hash_uid(uid) & mask; u->slots[i].count; i = (i + 1) & mask)
		if (u->slots[i].uid == uid)
			return &u->slots[i];
	return NULL;
}

static void put(struct slot *slots, size_t cap, uint32_t uid, uint32_t count)
{
	size_t mask = cap - 1, i = hash_uid(uid) & mask;

	while (slots[i].count)
		i = (i + 1) & mask;
	slots[i] = (struct slot){ uid, count };
}

struct uidcount *uidcount_new(void)
{
	struct uidcount *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->cap = UIDCOUNT_MIN_CAP;
	u->slots = calloc(u->cap, sizeof(*u->slots));
	if (!u->slots) {
		free(u);
		return NULL;
	}
	return u;
}

void uidcount_free(struct uidcount *u)
{
	if (!u)
		return;
	free(u->slots);
	free(u);
}

uint32_t uidcount_get(const struct uidcount *u, uint32_t uid)
{
	const struct slot *s = find(u, uid);

	return s ? s->count : 0;
}

int uidcount_add(struct uidcount *u, uint32_t uid, uint32_t n)
{
	struct slot *s = find(u, uid), *slots;

	if (!n)
		return 0;
	if (s) {
		s->count += n;
		return 0;
	}
	if (u->len + 1 > u->cap / 4 * 3) {
		slots = calloc(2 * u->cap, sizeof(*slots));
		if (!slots)
			return -ENOMEM;
		for (size_t i = 0; i < u->cap; i++)
			if (u->slots[i].count)
				put(slots, 2 * u->cap, u->slots[i].uid, u->slots[i].count);
		free(u->slots);
		u->slots = slots;
		u->cap *= 2;
	}
	put(u->slots, u->cap, uid, n);
	u->len++;
	return 0;
}

void uidcount_sub(struct uidcount *u, uint32_t uid, uint32_t n)
{
	struct slot *s = find(u, uid);
	size_t mask = u->cap - 1, i, j;

	if (!s || !n)
		return;
	if (s->count > n) {
		s->count -= n;
		return;
	}
	/* Backward-shift deletion: no tombstones, so lookups stay short. */
	i = (size_t)(s - u->slots);
	for (j = (i + 1) & mask; u->slots[j].count; j = (j + 1) & mask) {
		if (cyclic_between(i, hash_uid(u->slots[j].uid) & mask, j))
			continue;
		u->slots[i] = u->slots[j];
		i = j;
	}
	u->slots[i] = (struct slot){ 0, 0 };
	u->len--;
}

size_t uidcount_uids(const struct uidcount *u)
{
	return u->len;
}
