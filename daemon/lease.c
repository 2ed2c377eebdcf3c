/*
 * The lease table.
 *
 * Every live lease is reachable four ways, all kept in step by
 * table_link()/lease_table_remove():
 *
 *  - ids[]:   open addressing, linear probing, slots hold only the lease
 *             pointer (the key is l->id, one dereference away);
 *  - pidx[]:  open addressing by key (port << 2 | transport), one slot per
 *             (port, TCP|UDP) a lease holds; a ports[] entry whose transport
 *             is PORTD_BOTH is indexed under both keys;
 *  - heap[]:  binary min-heap by (deadline, id); l->heap_idx is the lease's
 *             slot, so renew and remove are O(log n). heap_idx == NOT_LINKED
 *             means "in no table";
 *  - head/tail: a doubly linked list in ascending id order.
 *
 * uids[] counts leases per uid (open addressing, a slot with count 0 is
 * empty, so a uid's entry disappears when its last lease goes).
 *
 * Deletion from the open-addressing tables uses backward shifting rather
 * than tombstones, so probe sequences never degrade after churn. Tables
 * double when they would pass a 3/4 load factor and never shrink.
 *
 * Memory per lease with one port on one transport, at steady state: the
 * lease itself (offsetof(ports) + 8 bytes per entry), 8 bytes of id slot and
 * 16 bytes of port slot divided by the load factor (3/8 .. 3/4), and 8 bytes
 * of heap slot (up to 2x over-allocated). lease_table_index_bytes() reports
 * the index part; tests/test-lease.c prints the total at 15,000 leases.
 *
 * Every growth happens before anything is linked, so an allocation failure
 * in lease_table_add() leaves the table exactly as it was.
 */
#include "lease.h"

#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define NOT_LINKED SIZE_MAX
#define MIN_CAP 16
/* lease_table_first_after(): ids probed by hash before walking the list. */
#define FIRST_AFTER_PROBES 32

struct port_slot {
	struct lease *l; /* NULL: empty */
	uint32_t key;    /* port << 2 | PORTD_TCP or PORTD_UDP */
};

struct uid_slot {
	uint32_t uid;
	uint32_t count; /* 0: empty */
};

struct lease_table {
	struct lease_limits lim;
	struct clock clk;
	uint64_t next_id;
	size_t count;

	struct lease **ids;
	size_t ids_cap;

	struct port_slot *pidx;
	size_t pidx_cap, pidx_len;

	struct lease **heap; /* count entries used */
	size_t heap_cap;

	struct uid_slot *uids;
	size_t uids_cap, uids_len;

	struct lease *head, *tail;
};

/* ---- helpers ---- */

static size_t hash64(uint64_t x)
{
	/* murmur3 fmix64: sequential ids and port numbers spread evenly. */
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (size_t)x;
}

/* Would len + add entries push a table of cap slots past 3/4 load? */
static bool over_load(size_t len, size_t add, size_t cap)
{
	return (len + add) > cap / 4 * 3;
}

/* Is k cyclically in (i, j]? Used by backward-shift deletion. */
static bool cyclic_between(size_t i, size_t k, size_t j)
{
	return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t now_ms(const struct lease_table *t)
{
	return clock_now(&t->clk);
}

static uint64_t ttl_deadline(const struct lease_table *t, uint32_t ttl_s)
{
	return sat_add(now_ms(t), (uint64_t)ttl_s * 1000u);
}

/* ---- id index ---- */

static struct lease *ids_find(const struct lease_table *t, uint64_t id)
{
	size_t mask = t->ids_cap - 1;

	for (size_t i = hash64(id) & mask; t->ids[i]; i = (i + 1) & mask)
		if (t->ids[i]->id == id)
			return t->ids[i];
	return NULL;
}

static void ids_put(struct lease **slots, size_t cap, struct lease *l)
{
	size_t mask = cap - 1, i = hash64(l->id) & mask;

	while (slots[i])
		i = (i + 1) & mask;
	slots[i] = l;
}

static int ids_reserve(struct lease_table *t, size_t add)
{
	size_t cap = t->ids_cap;
	struct lease **n;

	while (over_load(t->count, add, cap))
		cap *= 2;
	if (cap == t->ids_cap)
		return 0;
	n = calloc(cap, sizeof(*n));
	if (!n)
		return -1;
	for (size_t i = 0; i < t->ids_cap; i++)
		if (t->ids[i])
			ids_put(n, cap, t->ids[i]);
	free(t->ids);
	t->ids = n;
	t->ids_cap = cap;
	return 0;
}

static void ids_del(struct lease_table *t, const struct lease *l)
{
	size_t mask = t->ids_cap - 1, i = hash64(l->id) & mask, j;

	while (t->ids[i] != l)
		i = (i + 1) & mask;
	for (j = i;;) {
		j = (j + 1) & mask;
		if (!t->ids[j])
			break;
		if (cyclic_between(i, hash64(t->ids[j]->id) & mask, j))
			continue;
		t->ids[i] = t->ids[j];
		i = j;
	}
	t->ids[i] = NULL;
}

/* ---- (port, transport) index ---- */

static uint32_t port_key(uint16_t port, uint8_t transport)
{
	return (uint32_t)port << 2 | transport;
}

static struct port_slot *pidx_slot(const struct lease_table *t, uint32_t key)
{
	size_t mask = t->pidx_cap - 1;

	for (size_t i = hash64(key) & mask; t->pidx[i].l; i = (i + 1) & mask)
		if (t->pidx[i].key == key)
			return &t->pidx[i];
	return NULL;
}

static void pidx_put(struct port_slot *slots, size_t cap, struct lease *l, uint32_t key)
{
	size_t mask = cap - 1, i = hash64(key) & mask;

	while (slots[i].l)
		i = (i + 1) & mask;
	slots[i].l = l;
	slots[i].key = key;
}

static int pidx_reserve(struct lease_table *t, size_t add)
{
	size_t cap = t->pidx_cap;
	struct port_slot *n;

	while (over_load(t->pidx_len, add, cap))
		cap *= 2;
	if (cap == t->pidx_cap)
		return 0;
	n = calloc(cap, sizeof(*n));
	if (!n)
		return -1;
	for (size_t i = 0; i < t->pidx_cap; i++)
		if (t->pidx[i].l)
			pidx_put(n, cap, t->pidx[i].l, t->pidx[i].key);
	free(t->pidx);
	t->pidx = n;
	t->pidx_cap = cap;
	return 0;
}

static void pidx_del(struct lease_table *t, struct port_slot *s)
{
	size_t mask = t->pidx_cap - 1, i = (size_t)(s - t->pidx), j;

	for (j = i;;) {
		j = (j + 1) & mask;
		if (!t->pidx[j].l)
			break;
		if (cyclic_between(i, hash64(t->pidx[j].key) & mask, j))
			continue;
		t->pidx[i] = t->pidx[j];
		i = j;
	}
	t->pidx[i].l = NULL;
	t->pidx[i].key = 0;
	t->pidx_len--;
}

/* The keys of one ports[] entry: 1 or 2; 0 if its transport is invalid. */
static unsigned entry_keys(const struct lease_port *p, uint32_t keys[2])
{
	switch (p->transport) {
	case PORTD_TCP:
	case PORTD_UDP:
		keys[0] = port_key(p->port, p->transport);
		return 1;
	case PORTD_BOTH:
		keys[0] = port_key(p->port, PORTD_TCP);
		keys[1] = port_key(p->port, PORTD_UDP);
		return 2;
	default:
		return 0;
	}
}

/* Removes l's port keys; stops after the first `limit` keys (for rollback). */
static void pidx_unlink(struct lease_table *t, const struct lease *l, size_t limit)
{
	size_t done = 0;

	for (uint16_t i = 0; i < l->nports && done < limit; i++) {
		uint32_t keys[2];
		unsigned n = entry_keys(&l->ports[i], keys);

		for (unsigned k = 0; k < n && done < limit; k++, done++) {
			struct port_slot *s = pidx_slot(t, keys[k]);

			if (s && s->l == l)
				pidx_del(t, s);
		}
	}
}

/*
 * Links every port key of l. Capacity must already be reserved. On a key
 * that is invalid or already taken (by another lease, or twice by l), undoes
 * what it linked and returns -1.
 */
static int pidx_link(struct lease_table *t, struct lease *l)
{
	size_t done = 0;

	for (uint16_t i = 0; i < l->nports; i++) {
		uint32_t keys[2];
		unsigned n = entry_keys(&l->ports[i], keys);

		if (n == 0)
			goto undo;
		for (unsigned k = 0; k < n; k++) {
			if (pidx_slot(t, keys[k]))
				goto undo;
			pidx_put(t->pidx, t->pidx_cap, l, keys[k]);
			t->pidx_len++;
			done++;
		}
	}
	return 0;
undo:
	pidx_unlink(t, l, done);
	return -1;
}

static size_t lease_nkeys(const struct lease *l)
{
	size_t n = 0;

	for (uint16_t i = 0; i < l->nports; i++)
		n += l->ports[i].transport == PORTD_BOTH ? 2 : 1;
	return n;
}

/* ---- per-uid counts ---- */

static struct uid_slot *uids_slot(const struct lease_table *t, uint32_t uid)
{
	size_t mask = t->uids_cap - 1;

	for (size_t i = hash64(uid) & mask; t->uids[i].count; i = (i + 1) & mask)
		if (t->uids[i].uid == uid)
			return &t->uids[i];
	return NULL;
}

static void uids_put(struct uid_slot *slots, size_t cap, uint32_t uid, uint32_t count)
{
	size_t mask = cap - 1, i = hash64(uid) & mask;

	while (slots[i].count)
		i = (i + 1) & mask;
	slots[i].uid = uid;
	slots[i].count = count;
}

static int uids_reserve(struct lease_table *t, size_t add)
{
	size_t cap = t->uids_cap;
	struct uid_slot *n;

	while (over_load(t->uids_len, add, cap))
		cap *= 2;
	if (cap == t->uids_cap)
		return 0;
	n = calloc(cap, sizeof(*n));
	if (!n)
		return -1;
	for (size_t i = 0; i < t->uids_cap; i++)
		if (t->uids[i].count)
			uids_put(n, cap, t->uids[i].uid, t->uids[i].count);
	free(t->uids);
	t->uids = n;
	t->uids_cap = cap;
	return 0;
}

/* Capacity for one new uid must be reserved. */
static void uids_inc(struct lease_table *t, uint32_t uid)
{
	struct uid_slot *s = uids_slot(t, uid);

	if (s) {
		s->count++;
		return;
	}
	uids_put(t->uids, t->uids_cap, uid, 1);
	t->uids_len++;
}

static void uids_dec(struct lease_table *t, uint32_t uid)
{
	struct uid_slot *s = uids_slot(t, uid);
	size_t mask = t->uids_cap - 1, i, j;

	if (!s)
		return;
	if (--s->count)
		return;
	i = (size_t)(s - t->uids);
	for (j = i;;) {
		j = (j + 1) & mask;
		if (!t->uids[j].count)
			break;
		if (cyclic_between(i, hash64(t->uids[j].uid) & mask, j))
			continue;
		t->uids[i] = t->uids[j];
		i = j;
	}
	t->uids[i].uid = 0;
	t->uids[i].count = 0;
	t->uids_len--;
}

/* ---- deadline heap ---- */

static bool heap_less(const struct lease *a, const struct lease *b)
{
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline;
	return a->id < b->id;
}

static void heap_set(struct lease_table *t, size_t i, struct lease *l)
{
	t->heap[i] = l;
	l->heap_idx = i;
}

static void heap_up(struct lease_table *t, size_t i)
{
	struct lease *l = t->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!heap_less(l, t->heap[parent]))
			break;
		heap_set(t, i, t->heap[parent]);
		i = parent;
	}
	heap_set(t, i, l);
}

static void heap_down(struct lease_table *t, size_t i)
{
	struct lease *l = t->heap[i];
	size_t n = t->count;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && heap_less(t->heap[c + 1], t->heap[c]))
			c++;
		if (!heap_less(t->heap[c], l))
			break;
		heap_set(t, i, t->heap[c]);
		i = c;
	}
	heap_set(t, i, l);
}

/* l's key changed in place: move it to where it now belongs. */
static void heap_fix(struct lease_table *t, size_t i)
{
	if (i > 0 && heap_less(t->heap[i], t->heap[(i - 1) / 2]))
		heap_up(t, i);
	else
		heap_down(t, i);
}

static int heap_reserve(struct lease_table *t, size_t add)
{
	size_t cap = t->heap_cap;
	struct lease **n;

	while (t->count + add > cap)
		cap *= 2;
	if (cap == t->heap_cap)
		return 0;
	n = realloc(t->heap, cap * sizeof(*n));
	if (!n)
		return -1;
	t->heap = n;
	t->heap_cap = cap;
	return 0;
}

/* t->count already includes l. */
static void heap_push(struct lease_table *t, struct lease *l)
{
	heap_set(t, t->count - 1, l);
	heap_up(t, t->count - 1);
}

/* t->count already excludes l. */
static void heap_del(struct lease_table *t, struct lease *l)
{
	size_t i = l->heap_idx, last = t->count;

	if (i != last) {
		heap_set(t, i, t->heap[last]);
		heap_fix(t, i);
	}
	t->heap[last] = NULL;
	l->heap_idx = NOT_LINKED;
}

/* ---- lease objects ---- */

struct lease *lease_alloc(uint16_t nports)
{
	struct lease *l = calloc(1, sizeof(*l) + (size_t)nports * sizeof(l->ports[0]));

	if (!l)
		return NULL;
	l->heap_idx = NOT_LINKED;
	l->nports = nports;
	for (uint16_t i = 0; i < nports; i++)
		l->ports[i].fd = -1;
	return l;
}

void lease_free(struct lease *l)
{
	free(l);
}

/* ---- the table ---- */

struct lease_table *lease_table_new(const struct lease_limits *lim, const struct clock *clk)
{
	struct lease_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->lim = *lim;
	t->clk = *clk;
	t->next_id = 1;
	t->ids_cap = t->pidx_cap = t->heap_cap = t->uids_cap = MIN_CAP;
	t->ids = calloc(MIN_CAP, sizeof(*t->ids));
	t->pidx = calloc(MIN_CAP, sizeof(*t->pidx));
	t->heap = calloc(MIN_CAP, sizeof(*t->heap));
	t->uids = calloc(MIN_CAP, sizeof(*t->uids));
	if (!t->ids || !t->pidx || !t->heap || !t->uids) {
		lease_table_free(t, NULL, NULL);
		return NULL;
	}
	return t;
}

void lease_table_free(struct lease_table *t, void (*end)(struct lease *l, void *ctx), void *ctx)
{
	if (!t)
		return;
	while (t->head) {
		struct lease *l = t->head;

		/* Fully unlinked first: end() may free l or even remove it again. */
		lease_table_remove(t, l);
		if (end)
			end(l, ctx);
		else
			lease_free(l);
	}
	free(t->ids);
	free(t->pidx);
	free(t->heap);
	free(t->uids);
	free(t);
}

const struct lease_limits *lease_table_limits(const struct lease_table *t)
{
	return &t->lim;
}

static enum lease_result check_quota(const struct lease_table *t, uint32_t uid)
{
	if (lease_table_uid_count(t, uid) >= t->lim.max_per_uid)
		return LEASE_E_QUOTA_UID;
	if (t->count >= t->lim.max_leases)
		return LEASE_E_QUOTA_TOTAL;
	return LEASE_OK;
}

static enum lease_result resolve_ttl(const struct lease_table *t, uint32_t *ttl_s)
{
	if (*ttl_s == 0)
		*ttl_s = t->lim.default_ttl_s;
	if (*ttl_s > t->lim.max_ttl_s)
		return LEASE_E_TTL;
	return LEASE_OK;
}

enum lease_result lease_table_admit(const struct lease_table *t, uint32_t uid, uint32_t *ttl_s)
{
	enum lease_result r = resolve_ttl(t, ttl_s);

	return r != LEASE_OK ? r : check_quota(t, uid);
}

/*
 * Links l under id into every index. Admission is the caller's; this checks
 * the ports, reserves every table, and only then links.
 */
static enum lease_result table_link(struct lease_table *t, struct lease *l, uint64_t id,
				    uint64_t deadline)
{
	bool new_uid = uids_slot(t, l->uid) == NULL;
	struct lease *after;

	if (l->heap_idx != NOT_LINKED)
		return LEASE_E_PERM;
	if (ids_reserve(t, 1) < 0 || pidx_reserve(t, lease_nkeys(l)) < 0 ||
	    heap_reserve(t, 1) < 0 || uids_reserve(t, new_uid ? 1 : 0) < 0)
		return LEASE_E_QUOTA_TOTAL;
	if (pidx_link(t, l) < 0)
		return LEASE_E_PERM;

	l->id = id;
	l->deadline = deadline;
	ids_put(t->ids, t->ids_cap, l);
	uids_inc(t, l->uid);
	t->count++;
	heap_push(t, l);

	/* Id order: ids from add() are the largest yet; restore() walks back. */
	for (after = t->tail; after && after->id > id; after = after->prev)
		;
	l->prev = after;
	l->next = after ? after->next : t->head;
	if (l->next)
		l->next->prev = l;
	else
		t->tail = l;
	if (after)
		after->next = l;
	else
		t->head = l;

	if (id >= t->next_id)
		t->next_id = id + 1;
	return LEASE_OK;
}

enum lease_result lease_table_add(struct lease_table *t, struct lease *l, uint32_t ttl_s)
{
	enum lease_result r = lease_table_admit(t, l->uid, &ttl_s);

	if (r != LEASE_OK)
		return r;
	r = table_link(t, l, t->next_id, ttl_deadline(t, ttl_s));
	if (r == LEASE_OK)
		l->ttl_s = ttl_s;
	return r;
}

enum lease_result lease_table_add_untimed(struct lease_table *t, struct lease *l)
{
	enum lease_result r = check_quota(t, l->uid);

	if (r != LEASE_OK)
		return r;
	r = table_link(t, l, t->next_id, LEASE_NO_DEADLINE);
	if (r == LEASE_OK)
		l->ttl_s = 0;
	return r;
}

enum lease_result lease_table_restore(struct lease_table *t, struct lease *l, uint64_t remaining_ms)
{
	enum lease_result r;

	/* UINT64_MAX would wrap next_id to 0. */
	if (l->id == 0 || l->id == UINT64_MAX || ids_find(t, l->id))
		return LEASE_E_PERM;
	r = check_quota(t, l->uid);
	if (r != LEASE_OK)
		return r;
	r = table_link(t, l, l->id, remaining_ms == LEASE_NO_DEADLINE ? LEASE_NO_DEADLINE
								     : sat_add(now_ms(t), remaining_ms));
	if (r == LEASE_OK && l->ttl_s == 0 && l->deadline != LEASE_NO_DEADLINE)
		l->ttl_s = t->lim.default_ttl_s;
	return r;
}

struct lease *lease_table_find(const struct lease_table *t, uint64_t id)
{
	return ids_find(t, id);
}

struct lease *lease_table_find_port(const struct lease_table *t, uint16_t port, uint8_t transport)
{
	struct port_slot *s;

	switch (transport) {
	case 0:
		s = pidx_slot(t, port_key(port, PORTD_TCP));
		if (!s)
			s = pidx_slot(t, port_key(port, PORTD_UDP));
		break;
	case PORTD_TCP:
	case PORTD_UDP:
		s = pidx_slot(t, port_key(port, transport));
		break;
	default:
		return NULL;
	}
	return s ? s->l : NULL;
}

bool lease_may_access(const struct lease *l, uint32_t caller_uid)
{
	return caller_uid == 0 || caller_uid == l->uid;
}

enum lease_result lease_table_renew(struct lease_table *t, struct lease *l, uint32_t ttl_s)
{
	enum lease_result r;

	if (l->heap_idx == NOT_LINKED)
		return LEASE_E_NOENT;
	r = resolve_ttl(t, &ttl_s);
	if (r != LEASE_OK)
		return r;
	l->ttl_s = ttl_s;
	l->deadline = ttl_deadline(t, ttl_s);
	heap_fix(t, l->heap_idx);
	return LEASE_OK;
}

void lease_table_remove(struct lease_table *t, struct lease *l)
{
	if (!l || l->heap_idx == NOT_LINKED)
		return;
	ids_del(t, l);
	pidx_unlink(t, l, SIZE_MAX);
	uids_dec(t, l->uid);
	t->count--;
	heap_del(t, l);

	if (l->prev)
		l->prev->next = l->next;
	else
		t->head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else
		t->tail = l->prev;
	l->prev = l->next = NULL;
}

uint64_t lease_table_next_deadline(const struct lease_table *t)
{
	return t->count ? t->heap[0]->deadline : UINT64_MAX;
}

struct lease *lease_table_pop_expired(struct lease_table *t, uint64_t now)
{
	struct lease *l;

	if (!t->count || t->heap[0]->deadline > now)
		return NULL;
	l = t->heap[0];
	lease_table_remove(t, l);
	return l;
}

uint64_t lease_expires_in(const struct lease_table *t, const struct lease *l)
{
	uint64_t now = now_ms(t);

	if (l->deadline == LEASE_NO_DEADLINE)
		return LEASE_NO_DEADLINE;
	return l->deadline > now ? l->deadline - now : 0;
}

size_t lease_table_count(const struct lease_table *t)
{
	return t->count;
}

uint32_t lease_table_uid_count(const struct lease_table *t, uint32_t uid)
{
	const struct uid_slot *s = uids_slot(t, uid);

	return s ? s->count : 0;
}

struct lease *lease_table_first_after(const struct lease_table *t, uint64_t after_id)
{
	struct lease *l;

	if (!t->head || after_id < t->head->id)
		return t->head;
	if (after_id >= t->tail->id)
		return NULL;
	/* The usual page boundary: after_id is still live. */
	l = ids_find(t, after_id);
	if (l)
		return l->next;
	/*
	 * It was removed meanwhile. Ids are dense-ish, so the successor is
	 * usually close; the first hit is the smallest live id > after_id.
	 * after_id < tail->id, so the additions cannot overflow.
	 */
	for (uint64_t k = 1; k <= FIRST_AFTER_PROBES && after_id + k <= t->tail->id; k++) {
		l = ids_find(t, after_id + k);
		if (l)
			return l;
	}
	for (l = t->head; l && l->id <= after_id; l = l->next)
		;
	return l;
}

struct lease *lease_next(const struct lease *l)
{
	return l ? l->next : NULL;
}

size_t lease_table_index_bytes(const struct lease_table *t)
{
	return sizeof(*t) + t->ids_cap * sizeof(*t->ids) + t->pidx_cap * sizeof(*t->pidx) +
	       t->heap_cap * sizeof(*t->heap) + t->uids_cap * sizeof(*t->uids);
}

uint64_t lease_table_next_id(const struct lease_table *t) { return t->next_id; }

void lease_table_raise_next_id(struct lease_table *t, uint64_t next)
{
	if (next > t->next_id && next != UINT64_MAX)
		t->next_id = next;
}
