/*
 * Unit tests for daemon/lease.c: ids, the id and port indexes, admission and
 * quotas, the deadline heap (including a randomised run against a sorted
 * reference), id-order iteration with restored ids, and teardown. Time comes
 * from a fake clock; nothing sleeps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "protocol.h"

static uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	return *(const uint64_t *)ctx;
}

static const struct clock clk = { .now_ms = fake_clock, .ctx = &fake_now };

static const struct lease_limits lim_default = {
	.max_leases = 100000,
	.max_per_uid = 100000,
	.default_ttl_s = 60,
	.max_ttl_s = 3600,
};

static struct lease_table *table(const struct lease_limits *lim)
{
	struct lease_table *t = lease_table_new(lim ? lim : &lim_default, &clk);

	assert_non_null(t);
	return t;
}

/* A lease of one port on transport (PORTD_BOTH: a TCP and a UDP entry). */
static struct lease *mk(uint32_t uid, uint16_t port, uint8_t transport)
{
	struct lease *l = lease_alloc(transport == PORTD_BOTH ? 2 : 1);

	assert_non_null(l);
	l->uid = uid;
	l->transport = transport;
	if (transport == PORTD_BOTH) {
		l->ports[0] = (struct lease_port){ .port = port, .transport = PORTD_TCP, .fd = -1 };
		l->ports[1] = (struct lease_port){ .port = port, .transport = PORTD_UDP, .fd = -1 };
	} else {
		l->ports[0] = (struct lease_port){ .port = port, .transport = transport, .fd = -1 };
	}
	return l;
}

static struct lease *add(struct lease_table *t, uint32_t uid, uint16_t port, uint8_t transport,
			 uint32_t ttl)
{
	struct lease *l = mk(uid, port, transport);

	assert_int_equal(lease_table_add(t, l, ttl), LEASE_OK);
	return l;
}

static void end_free(struct lease *l, void *ctx)
{
	(void)ctx;
	lease_free(l);
}

static void free_table(struct lease_table *t)
{
	lease_table_free(t, end_free, NULL);
}

static int setup(void **state)
{
	(void)state;
	fake_now = 1000000;
	return 0;
}

/* ---- tests ---- */

static void test_alloc(void **state)
{
	struct lease *l = lease_alloc(3);

	(void)state;
	assert_non_null(l);
	assert_int_equal(l->nports, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(l->ports[i].fd, -1);
	lease_free(l);
	lease_free(NULL);
	lease_table_free(NULL, end_free, NULL);
}

static void test_add_ids_increase(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *a, *b, *c;

	(void)state;
	a = add(t, 1000, 40000, PORTD_TCP, 0);
	b = add(t, 1000, 40001, PORTD_TCP, 10);
	c = add(t, 1001, 40002, PORTD_UDP, 3600);
	assert_int_equal(a->id, 1);
	assert_int_equal(b->id, 2);
	assert_int_equal(c->id, 3);
	assert_int_equal(a->ttl_s, 60);
	assert_int_equal(a->deadline, fake_now + 60000);
	assert_int_equal(b->deadline, fake_now + 10000);
	assert_int_equal(c->deadline, fake_now + 3600000);
	assert_int_equal(lease_table_count(t), 3);

	/* Ids are never reused, even after the newest lease goes. */
	lease_table_remove(t, c);
	lease_free(c);
	c = add(t, 1000, 40002, PORTD_TCP, 0);
	assert_int_equal(c->id, 4);
	free_table(t);
}

static void test_find(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *a, *b, *u, *both, *x;

	(void)state;
	a = add(t, 1000, 40000, PORTD_TCP, 0);
	u = add(t, 1000, 40000, PORTD_UDP, 0); /* same number, other transport, other lease */
	b = add(t, 1000, 40001, PORTD_TCP, 0);
	both = add(t, 1000, 40002, PORTD_BOTH, 0);

	assert_ptr_equal(lease_table_find(t, a->id), a);
	assert_ptr_equal(lease_table_find(t, b->id), b);
	assert_ptr_equal(lease_table_find(t, both->id), both);
	assert_null(lease_table_find(t, 0));
	assert_null(lease_table_find(t, 999));

	assert_ptr_equal(lease_table_find_port(t, 40000, PORTD_TCP), a);
	assert_ptr_equal(lease_table_find_port(t, 40000, PORTD_UDP), u);
	assert_ptr_equal(lease_table_find_port(t, 40000, 0), a);
	assert_ptr_equal(lease_table_find_port(t, 40001, 0), b);
	assert_null(lease_table_find_port(t, 40001, PORTD_UDP));
	assert_ptr_equal(lease_table_find_port(t, 40002, PORTD_TCP), both);
	assert_ptr_equal(lease_table_find_port(t, 40002, PORTD_UDP), both);
	assert_null(lease_table_find_port(t, 40002, PORTD_BOTH));
	assert_null(lease_table_find_port(t, 40003, 0));

	/* transport 0 finds a UDP-only holder too. */
	lease_table_remove(t, a);
	lease_free(a);
	assert_ptr_equal(lease_table_find_port(t, 40000, 0), u);
	assert_null(lease_table_find_port(t, 40000, PORTD_TCP));

	/* Every entry of a BOTH lease goes on remove. */
	lease_table_remove(t, both);
	assert_null(lease_table_find_port(t, 40002, PORTD_TCP));
	assert_null(lease_table_find_port(t, 40002, PORTD_UDP));
	assert_null(lease_table_find(t, both->id));
	lease_free(both);

	/* A single ports[] entry marked BOTH is indexed under both transports. */
	x = lease_alloc(1);
	assert_non_null(x);
	x->ports[0].port = 40010;
	x->ports[0].transport = PORTD_BOTH;
	assert_int_equal(lease_table_add(t, x, 0), LEASE_OK);
	assert_ptr_equal(lease_table_find_port(t, 40010, PORTD_TCP), x);
	assert_ptr_equal(lease_table_find_port(t, 40010, PORTD_UDP), x);
	lease_table_remove(t, x);
	assert_null(lease_table_find_port(t, 40010, 0));
	lease_free(x);
	free_table(t);
}

static void test_multi_port_lease(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *l = lease_alloc(PORTD_LEASE_PORTS_MAX * 2);

	(void)state;
	assert_non_null(l);
	for (int i = 0; i < PORTD_LEASE_PORTS_MAX; i++) {
		l->ports[2 * i] = (struct lease_port){ .port = (uint16_t)(50000 + i), .transport = PORTD_TCP };
		l->ports[2 * i + 1] = (struct lease_port){ .port = (uint16_t)(50000 + i), .transport = PORTD_UDP };
	}
	assert_int_equal(lease_table_add(t, l, 0), LEASE_OK);
	for (int i = 0; i < PORTD_LEASE_PORTS_MAX; i++) {
		assert_ptr_equal(lease_table_find_port(t, (uint16_t)(50000 + i), PORTD_TCP), l);
		assert_ptr_equal(lease_table_find_port(t, (uint16_t)(50000 + i), PORTD_UDP), l);
	}
	lease_table_remove(t, l);
	for (int i = 0; i < PORTD_LEASE_PORTS_MAX; i++)
		assert_null(lease_table_find_port(t, (uint16_t)(50000 + i), 0));
	lease_free(l);
	free_table(t);
}

static void test_port_conflict(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *a, *dup, *self, *bad;

	(void)state;
	a = add(t, 1000, 40000, PORTD_TCP, 0);

	/* Another lease on the same (port, transport) is refused, table unchanged. */
	dup = mk(1000, 40000, PORTD_TCP);
	assert_int_equal(lease_table_add(t, dup, 0), LEASE_E_PERM);
	assert_int_equal(lease_table_count(t), 1);
	assert_int_equal(lease_table_uid_count(t, 1000), 1);
	assert_ptr_equal(lease_table_find_port(t, 40000, PORTD_TCP), a);
	assert_null(lease_table_find(t, 2));

	/* A lease naming a pair twice is refused and leaves no stale entry. */
	self = lease_alloc(3);
	assert_non_null(self);
	self->uid = 1000;
	self->ports[0] = (struct lease_port){ .port = 40001, .transport = PORTD_TCP };
	self->ports[1] = (struct lease_port){ .port = 40002, .transport = PORTD_TCP };
	self->ports[2] = (struct lease_port){ .port = 40001, .transport = PORTD_TCP };
	assert_int_equal(lease_table_add(t, self, 0), LEASE_E_PERM);
	assert_null(lease_table_find_port(t, 40001, 0));
	assert_null(lease_table_find_port(t, 40002, 0));

	/* An invalid entry transport is refused. */
	bad = mk(1000, 40003, PORTD_TCP);
	bad->ports[0].transport = 7;
	assert_int_equal(lease_table_add(t, bad, 0), LEASE_E_PERM);
	assert_int_equal(lease_table_count(t), 1);

	/* The refused ones were not linked: adding one now works, ids continue at 2. */
	bad->ports[0].transport = PORTD_UDP;
	assert_int_equal(lease_table_add(t, bad, 0), LEASE_OK);
	assert_int_equal(bad->id, 2);
	/* Adding a lease that is already in the table is refused. */
	assert_int_equal(lease_table_add(t, bad, 0), LEASE_E_PERM);
	assert_int_equal(lease_table_count(t), 2);

	/* The same number on UDP is a different pair. */
	dup->ports[0].transport = PORTD_UDP;
	assert_int_equal(lease_table_add(t, dup, 0), LEASE_OK);
	assert_ptr_equal(lease_table_find_port(t, 40000, PORTD_UDP), dup);

	lease_free(self);
	free_table(t);
}

static void test_admit_ttl(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *l;
	uint32_t ttl;

	(void)state;
	ttl = 0;
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_OK);
	assert_int_equal(ttl, 60);
	ttl = 3600;
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_OK);
	assert_int_equal(ttl, 3600);
	ttl = 3601;
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_E_TTL);
	ttl = UINT32_MAX;
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_E_TTL);

	l = mk(1000, 40000, PORTD_TCP);
	assert_int_equal(lease_table_add(t, l, 3601), LEASE_E_TTL);
	assert_int_equal(lease_table_count(t), 0);
	assert_null(lease_table_find_port(t, 40000, 0));
	assert_int_equal(lease_table_add(t, l, 3600), LEASE_OK);
	assert_int_equal(l->ttl_s, 3600);
	assert_int_equal(l->id, 1);
	assert_int_equal(lease_table_limits(t)->max_ttl_s, 3600);
	free_table(t);
}

static void test_quota_uid(void **state)
{
	struct lease_limits lim = lim_default;
	struct lease_table *t;
	struct lease *l[3], *extra;
	uint32_t ttl = 0;

	(void)state;
	lim.max_per_uid = 3;
	t = table(&lim);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_OK);
		l[i] = add(t, 1000, (uint16_t)(40000 + i), PORTD_TCP, 0);
	}
	assert_int_equal(lease_table_uid_count(t, 1000), 3);
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_E_QUOTA_UID);
	extra = mk(1000, 40010, PORTD_TCP);
	assert_int_equal(lease_table_add(t, extra, 0), LEASE_E_QUOTA_UID);
	assert_int_equal(lease_table_count(t), 3);
	assert_null(lease_table_find_port(t, 40010, 0));

	/* Another uid is unaffected. */
	assert_int_equal(lease_table_admit(t, 1001, &ttl), LEASE_OK);
	add(t, 1001, 40020, PORTD_TCP, 0);
	assert_int_equal(lease_table_uid_count(t, 1001), 1);

	/* Freed again on remove. */
	lease_table_remove(t, l[1]);
	lease_free(l[1]);
	assert_int_equal(lease_table_uid_count(t, 1000), 2);
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_OK);
	assert_int_equal(lease_table_add(t, extra, 0), LEASE_OK);
	assert_int_equal(lease_table_uid_count(t, 1000), 3);

	lease_table_remove(t, l[0]);
	lease_table_remove(t, l[2]);
	lease_table_remove(t, extra);
	assert_int_equal(lease_table_uid_count(t, 1000), 0);
	assert_int_equal(lease_table_uid_count(t, 1001), 1);
	lease_free(l[0]);
	lease_free(l[2]);
	lease_free(extra);
	free_table(t);
}

/* Many uids come and go: counts stay exact through growth and deletion. */
static void test_uid_counts_churn(void **state)
{
	struct lease_table *t = table(NULL);
	enum { N = 500 };
	struct lease **ls = calloc(N * 2, sizeof(*ls));

	(void)state;
	assert_non_null(ls);
	for (int i = 0; i < N * 2; i++)
		ls[i] = add(t, (uint32_t)(i % N) * 7919u, (uint16_t)(10000 + i), PORTD_TCP, 0);
	for (int u = 0; u < N; u++)
		assert_int_equal(lease_table_uid_count(t, (uint32_t)u * 7919u), 2);
	/* Remove one lease of every uid, then the second of every even uid. */
	for (int i = 0; i < N; i++) {
		lease_table_remove(t, ls[i]);
		lease_free(ls[i]);
	}
	for (int i = N; i < 2 * N; i += 2) {
		lease_table_remove(t, ls[i]);
		lease_free(ls[i]);
	}
	for (int u = 0; u < N; u++)
		assert_int_equal(lease_table_uid_count(t, (uint32_t)u * 7919u), u % 2 ? 1 : 0);
	free(ls);
	free_table(t);
}

static void test_quota_total(void **state)
{
	struct lease_limits lim = lim_default;
	struct lease_table *t;
	struct lease *l[5], *extra, *r;
	uint32_t ttl = 0;

	(void)state;
	lim.max_leases = 5;
	t = table(&lim);
	for (int i = 0; i < 5; i++)
		l[i] = add(t, 1000u + (uint32_t)i, (uint16_t)(40000 + i), PORTD_TCP, 0);
	assert_int_equal(lease_table_admit(t, 2000, &ttl), LEASE_E_QUOTA_TOTAL);
	extra = mk(2000, 40010, PORTD_TCP);
	assert_int_equal(lease_table_add(t, extra, 0), LEASE_E_QUOTA_TOTAL);
	/* restore obeys the quota too */
	r = mk(2001, 40011, PORTD_TCP);
	r->id = 100;
	assert_int_equal(lease_table_restore(t, r, 1000), LEASE_E_QUOTA_TOTAL);
	assert_null(lease_table_find(t, 100));
	assert_int_equal(lease_table_count(t), 5);

	lease_table_remove(t, l[2]);
	lease_free(l[2]);
	assert_int_equal(lease_table_admit(t, 2000, &ttl), LEASE_OK);
	assert_int_equal(lease_table_add(t, extra, 0), LEASE_OK);
	assert_int_equal(lease_table_add(t, r, 0), LEASE_E_QUOTA_TOTAL);
	lease_free(r);
	free_table(t);
}

static void test_zero_limits(void **state)
{
	struct lease_limits lim = lim_default;
	struct lease_table *t;
	uint32_t ttl = 0;

	(void)state;
	lim.max_per_uid = 0;
	t = table(&lim);
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_E_QUOTA_UID);
	free_table(t);
	lim = lim_default;
	lim.max_leases = 0;
	t = table(&lim);
	assert_int_equal(lease_table_admit(t, 1000, &ttl), LEASE_E_QUOTA_TOTAL);
	free_table(t);
}

static void test_renew(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *a, *b, *gone;
	uint64_t t0 = fake_now;

	(void)state;
	a = add(t, 1000, 40000, PORTD_TCP, 10);
	b = add(t, 1000, 40001, PORTD_TCP, 20);
	assert_int_equal(lease_table_next_deadline(t), t0 + 10000);

	fake_now = t0 + 5000;
	assert_int_equal(lease_table_renew(t, a, 30), LEASE_OK);
	assert_int_equal(a->ttl_s, 30);
	assert_int_equal(a->deadline, t0 + 35000);
	assert_int_equal(lease_table_next_deadline(t), t0 + 20000);

	/* Too long: refused, nothing moves. */
	assert_int_equal(lease_table_renew(t, b, 3601), LEASE_E_TTL);
	assert_int_equal(b->deadline, t0 + 20000);
	assert_int_equal(b->ttl_s, 20);

	/* ttl 0 means the default. */
	assert_int_equal(lease_table_renew(t, b, 0), LEASE_OK);
	assert_int_equal(b->ttl_s, 60);
	assert_int_equal(b->deadline, t0 + 65000);
	assert_int_equal(lease_table_next_deadline(t), t0 + 35000);

	/* Renew reorders expiry: a is due first now. */
	fake_now = t0 + 35000;
	assert_ptr_equal(lease_table_pop_expired(t, fake_now), a);
	assert_null(lease_table_pop_expired(t, fake_now));
	assert_ptr_equal(lease_table_pop_expired(t, t0 + 65000), b);

	/* A lease in no table cannot be renewed. */
	gone = a;
	assert_int_equal(lease_table_renew(t, gone, 10), LEASE_E_NOENT);
	lease_free(a);
	lease_free(b);
	free_table(t);
}

static void test_pop_expired_order(void **state)
{
	struct lease_table *t = table(NULL);
	static const uint32_t ttls[] = { 50, 10, 30, 10, 40, 20 };
	struct lease *l[6], *p;
	uint64_t t0 = fake_now;

	(void)state;
	for (int i = 0; i < 6; i++)
		l[i] = add(t, 1000, (uint16_t)(40000 + i), PORTD_TCP, ttls[i]);

	assert_null(lease_table_pop_expired(t, t0 + 9999));
	/* Equal deadlines come out in id order. */
	assert_ptr_equal(lease_table_pop_expired(t, t0 + 10000), l[1]);
	assert_ptr_equal(lease_table_pop_expired(t, t0 + 10000), l[3]);
	assert_null(lease_table_pop_expired(t, t0 + 19999));
	assert_int_equal(lease_table_count(t), 4);
	/* Popped leases are out of every index. */
	assert_null(lease_table_find(t, l[1]->id));
	assert_null(lease_table_find_port(t, 40001, 0));

	p = lease_table_pop_expired(t, t0 + 100000);
	assert_ptr_equal(p, l[5]);
	assert_ptr_equal(lease_table_pop_expired(t, t0 + 100000), l[2]);
	assert_ptr_equal(lease_table_pop_expired(t, t0 + 100000), l[4]);
	assert_ptr_equal(lease_table_pop_expired(t, t0 + 100000), l[0]);
	assert_null(lease_table_pop_expired(t, UINT64_MAX));
	assert_int_equal(lease_table_count(t), 0);
	for (int i = 0; i < 6; i++)
		lease_free(l[i]);
	free_table(t);
}

static void test_next_deadline(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *a, *b;
	uint64_t t0 = fake_now;

	(void)state;
	assert_true(lease_table_next_deadline(t) == UINT64_MAX);
	a = add(t, 1000, 40000, PORTD_TCP, 30);
	assert_true(lease_table_next_deadline(t) == t0 + 30000);
	b = add(t, 1000, 40001, PORTD_TCP, 20);
	assert_true(lease_table_next_deadline(t) == t0 + 20000);
	lease_table_remove(t, b);
	assert_true(lease_table_next_deadline(t) == t0 + 30000);
	lease_table_remove(t, a);
	assert_true(lease_table_next_deadline(t) == UINT64_MAX);
	lease_free(a);
	lease_free(b);
	free_table(t);
}

static void test_expires_in_and_clamp(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *a, *r;
	uint64_t t0 = fake_now;

	(void)state;
	a = add(t, 1000, 40000, PORTD_TCP, 10);
	assert_int_equal(lease_expires_in(t, a), 10000);
	fake_now = t0 + 9999;
	assert_int_equal(lease_expires_in(t, a), 1);
	fake_now = t0 + 10000;
	assert_int_equal(lease_expires_in(t, a), 0);
	fake_now = t0 + 20000;
	assert_int_equal(lease_expires_in(t, a), 0);

	/* Near the end of time the deadline saturates instead of wrapping. */
	fake_now = UINT64_MAX - 5;
	assert_int_equal(lease_table_renew(t, a, 10), LEASE_OK);
	assert_true(a->deadline == UINT64_MAX);
	r = mk(1000, 40001, PORTD_TCP);
	r->id = 50;
	assert_int_equal(lease_table_restore(t, r, UINT64_MAX), LEASE_OK);
	assert_true(r->deadline == UINT64_MAX);
	assert_null(lease_table_pop_expired(t, UINT64_MAX - 1));
	free_table(t);
}

static void test_restore(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *r, *a, *bad;
	uint64_t t0 = fake_now;

	(void)state;
	r = mk(1000, 40000, PORTD_TCP);
	r->id = 10;
	r->ttl_s = 120;
	assert_int_equal(lease_table_restore(t, r, 5000), LEASE_OK);
	assert_int_equal(r->id, 10);
	assert_int_equal(r->ttl_s, 120);
	assert_int_equal(r->deadline, t0 + 5000);
	assert_ptr_equal(lease_table_find(t, 10), r);
	assert_ptr_equal(lease_table_find_port(t, 40000, PORTD_TCP), r);
	assert_int_equal(lease_table_uid_count(t, 1000), 1);

	/* Next added id is above every id seen. */
	a = add(t, 1000, 40001, PORTD_TCP, 0);
	assert_int_equal(a->id, 11);

	/* Zero, duplicate and UINT64_MAX ids are refused. */
	bad = mk(1000, 40002, PORTD_TCP);
	bad->id = 0;
	assert_int_equal(lease_table_restore(t, bad, 1000), LEASE_E_PERM);
	bad->id = 10;
	assert_int_equal(lease_table_restore(t, bad, 1000), LEASE_E_PERM);
	bad->id = UINT64_MAX;
	assert_int_equal(lease_table_restore(t, bad, 1000), LEASE_E_PERM);
	assert_int_equal(lease_table_count(t), 2);
	assert_null(lease_table_find_port(t, 40002, 0));

	/* ttl_s 0 becomes the default; restore does not check max_ttl. */
	bad->id = 3;
	bad->ttl_s = 0;
	assert_int_equal(lease_table_restore(t, bad, 0), LEASE_OK);
	assert_int_equal(bad->ttl_s, 60);
	assert_int_equal(bad->deadline, t0);
	/* Already due: pops first. */
	assert_ptr_equal(lease_table_pop_expired(t, t0), bad);
	lease_free(bad);
	free_table(t);
}

static void expect_ids(const struct lease_table *t, uint64_t after, const uint64_t *ids, size_t n)
{
	const struct lease *l = lease_table_first_after(t, after);

	for (size_t i = 0; i < n; i++) {
		assert_non_null(l);
		assert_int_equal(l->id, ids[i]);
		l = lease_next(l);
	}
	assert_null(l);
}

/* A lease without a deadline: never expires, arms no timer, counts in the quotas, restores as such. */
static void test_untimed(void **state)
{
	struct lease_limits lim = lim_default;
	struct lease_table *t;
	struct lease *u, *v, *a, *r;

	lim.max_per_uid = 2;
	t = table(&lim);
	u = mk(1000, 40000, PORTD_TCP);
	assert_int_equal(lease_table_add_untimed(t, u), LEASE_OK);
	assert_int_not_equal(u->id, 0);
	assert_int_equal(u->ttl_s, 0);
	assert_true(u->deadline == LEASE_NO_DEADLINE);
	assert_true(lease_table_next_deadline(t) == UINT64_MAX); /* nothing to time */
	assert_true(lease_expires_in(t, u) == LEASE_NO_DEADLINE);

	a = add(t, 1000, 40001, PORTD_TCP, 10);
	assert_true(lease_table_next_deadline(t) == fake_now + 10000); /* the timed one, not u */
	v = mk(1000, 40002, PORTD_TCP);
	assert_int_equal(lease_table_add_untimed(t, v), LEASE_E_QUOTA_UID);
	lease_free(v);

	fake_now += 10000;
	assert_ptr_equal(lease_table_pop_expired(t, fake_now), a);
	lease_free(a);
	fake_now = UINT64_MAX - 1; /* the end of time: still not expired */
	assert_null(lease_table_pop_expired(t, fake_now));
	assert_ptr_equal(lease_table_find(t, u->id), u);

	/* Restored with no deadline: ttl stays 0 (not the default). */
	r = mk(1000, 40003, PORTD_TCP);
	r->id = 99;
	assert_int_equal(lease_table_restore(t, r, LEASE_NO_DEADLINE), LEASE_OK);
	assert_int_equal(r->ttl_s, 0);
	assert_true(lease_expires_in(t, r) == LEASE_NO_DEADLINE);
	free_table(t);
}

static void test_iterate_id_order(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *l[5], *r;

	(void)state;
	assert_null(lease_table_first_after(t, 0));
	for (int i = 0; i < 5; i++)
		l[i] = add(t, 1000, (uint16_t)(40000 + i), PORTD_TCP, 0);
	lease_table_remove(t, l[2]);
	lease_free(l[2]);
	expect_ids(t, 0, (const uint64_t[]){ 1, 2, 4, 5 }, 4);
	expect_ids(t, 2, (const uint64_t[]){ 4, 5 }, 2);
	expect_ids(t, 3, (const uint64_t[]){ 4, 5 }, 2); /* after a removed id */
	expect_ids(t, 5, NULL, 0);
	expect_ids(t, 1000, NULL, 0);

	/* Restored ids lower than existing ones go to their place. */
	r = mk(1000, 41000, PORTD_TCP);
	r->id = 3;
	assert_int_equal(lease_table_restore(t, r, 1000), LEASE_OK);
	expect_ids(t, 0, (const uint64_t[]){ 1, 2, 3, 4, 5 }, 5);
	lease_table_remove(t, l[0]);
	lease_free(l[0]);
	lease_table_remove(t, l[1]);
	lease_free(l[1]);
	expect_ids(t, 0, (const uint64_t[]){ 3, 4, 5 }, 3);

	/* Below the head, above the tail, in the middle, and at the ends. */
	r = mk(1000, 41001, PORTD_TCP);
	r->id = 1;
	assert_int_equal(lease_table_restore(t, r, 1000), LEASE_OK);
	r = mk(1000, 41002, PORTD_TCP);
	r->id = 500;
	assert_int_equal(lease_table_restore(t, r, 1000), LEASE_OK);
	r = mk(1000, 41003, PORTD_TCP);
	r->id = 200;
	assert_int_equal(lease_table_restore(t, r, 1000), LEASE_OK);
	r = add(t, 1000, 41004, PORTD_TCP, 0);
	assert_int_equal(r->id, 501);
	expect_ids(t, 0, (const uint64_t[]){ 1, 3, 4, 5, 200, 500, 501 }, 7);
	/* Far gaps (beyond the hash probes) fall back to the list walk. */
	expect_ids(t, 6, (const uint64_t[]){ 200, 500, 501 }, 3);
	expect_ids(t, 199, (const uint64_t[]){ 200, 500, 501 }, 3);
	expect_ids(t, 200, (const uint64_t[]){ 500, 501 }, 2);
	expect_ids(t, 300, (const uint64_t[]){ 500, 501 }, 2);
	expect_ids(t, 500, (const uint64_t[]){ 501 }, 1);
	assert_null(lease_next(NULL));
	free_table(t);
}

static void test_may_access(void **state)
{
	struct lease *l = mk(1000, 40000, PORTD_TCP);

	(void)state;
	assert_true(lease_may_access(l, 1000));
	assert_true(lease_may_access(l, 0));
	assert_false(lease_may_access(l, 1001));
	assert_false(lease_may_access(l, 65534));
	l->uid = 0;
	assert_false(lease_may_access(l, 1000));
	assert_true(lease_may_access(l, 0));
	lease_free(l);
}

static void test_remove_twice(void **state)
{
	struct lease_table *t = table(NULL);
	struct lease *a, *b, *loose;

	(void)state;
	a = add(t, 1000, 40000, PORTD_TCP, 0);
	b = add(t, 1000, 40001, PORTD_TCP, 0);
	lease_table_remove(t, a);
	lease_table_remove(t, a); /* no-op */
	loose = mk(1000, 40002, PORTD_TCP);
	lease_table_remove(t, loose); /* never added: no-op */
	lease_table_remove(t, NULL);
	assert_int_equal(lease_table_count(t), 1);
	assert_int_equal(lease_table_uid_count(t, 1000), 1);
	assert_ptr_equal(lease_table_find(t, b->id), b);
	expect_ids(t, 0, (const uint64_t[]){ 2 }, 1);
	/* A removed lease can go back in under a new id. */
	assert_int_equal(lease_table_add(t, a, 0), LEASE_OK);
	assert_int_equal(a->id, 3);
	lease_free(loose);
	free_table(t);
}

struct end_log {
	struct lease_table *t;
	uint64_t ids[64];
	size_t n;
};

static void end_record(struct lease *l, void *ctx)
{
	struct end_log *log = ctx;

	assert_true(log->n < 64);
	/* Already unlinked: not findable, and removing again is harmless. */
	assert_null(lease_table_find(log->t, l->id));
	lease_table_remove(log->t, l);
	log->ids[log->n++] = l->id;
	lease_free(l);
}

static void test_free_calls_end(void **state)
{
	struct end_log log = { 0 };
	struct lease *l[10];

	(void)state;
	log.t = table(NULL);
	for (int i = 0; i < 10; i++)
		l[i] = add(log.t, 1000, (uint16_t)(40000 + i), PORTD_TCP, (uint32_t)(100 - i));
	for (int i = 0; i < 10; i += 3) {
		lease_table_remove(log.t, l[i]);
		lease_free(l[i]);
	}
	lease_table_free(log.t, end_record, &log);
	assert_int_equal(log.n, 6);
	/* Every remaining lease, in id order. */
	static const uint64_t want[] = { 2, 3, 5, 6, 8, 9 };
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(log.ids[i], want[i]);
}

/*
 * Randomised: a few thousand leases, random renews and removes (which take
 * leases from the middle of the heap), and pops at intermediate times; the
 * pop order must match a sorted reference of (deadline, id).
 */
struct ref {
	uint64_t deadline, id;
	struct lease *l;
};

static int ref_cmp(const void *a, const void *b)
{
	const struct ref *x = a, *y = b;

	if (x->deadline != y->deadline)
		return x->deadline < y->deadline ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void test_heap_random(void **state)
{
	enum { N = 4000 };
	struct lease_table *t = table(NULL);
	struct lease **live = calloc(N, sizeof(*live));
	struct ref *ref = calloc(N, sizeof(*ref));
	uint16_t *gone = calloc(N, sizeof(*gone));
	size_t nlive = 0, nref = 0, popped = 0, ngone = 0;
	uint64_t t0 = fake_now, now;

	(void)state;
	assert_non_null(live);
	assert_non_null(ref);
	assert_non_null(gone);
	srand(12345);
	for (int i = 0; i < N; i++) {
		fake_now = t0 + (uint64_t)(rand() % 1000);
		/* Few distinct ttls, so many deadlines tie and the id tiebreak matters. */
		live[nlive++] = add(t, (uint32_t)(rand() % 50), (uint16_t)(1 + i), PORTD_TCP,
				    (uint32_t)(1 + rand() % 20));
	}
	/* About 2,000 removes and 10,000 renews (which move deadlines both ways). */
	for (int op = 0; op < 3 * N; op++) {
		size_t k = (size_t)rand() % nlive;

		fake_now = t0 + 1000 + (uint64_t)(rand() % 1000);
		if (rand() % 6 == 0) {
			lease_table_remove(t, live[k]);
			gone[ngone++] = live[k]->ports[0].port;
			lease_free(live[k]);
			live[k] = live[--nlive];
		} else {
			assert_int_equal(lease_table_renew(t, live[k], (uint32_t)(1 + rand() % 20)),
					 LEASE_OK);
		}
	}
	assert_true(nlive > N / 4);
	assert_int_equal(lease_table_count(t), nlive);
	/* The hash indexes survived the churn (backward-shift deletion). */
	for (size_t i = 0; i < nlive; i++) {
		assert_ptr_equal(lease_table_find(t, live[i]->id), live[i]);
		assert_ptr_equal(lease_table_find_port(t, live[i]->ports[0].port, 0), live[i]);
	}
	for (size_t i = 0; i < ngone; i++)
		assert_null(lease_table_find_port(t, gone[i], 0));
	for (size_t i = 0; i < nlive; i++)
		ref[nref++] = (struct ref){ live[i]->deadline, live[i]->id, live[i] };
	qsort(ref, nref, sizeof(*ref), ref_cmp);

	/* Pop in steps: only what is due, in order. */
	for (now = t0; popped < nref; now += 997) {
		struct lease *l;

		while ((l = lease_table_pop_expired(t, now))) {
			assert_true(popped < nref);
			assert_ptr_equal(l, ref[popped].l);
			assert_true(l->deadline <= now);
			lease_free(l);
			popped++;
		}
		if (popped < nref) {
			assert_true(ref[popped].deadline > now);
			assert_true(lease_table_next_deadline(t) == ref[popped].deadline);
		}
	}
	assert_int_equal(lease_table_count(t), 0);
	free(live);
	free(ref);
	free(gone);
	free_table(t);
}

/* Memory per lease at 15,000 leases; printed, and held to the ~256-byte budget. */
static void measure(uint8_t transport, const char *what)
{
	enum { N = 15000 };
	struct lease_table *t = table(NULL);
	uint16_t nports = transport == PORTD_BOTH ? 2 : 1;
	size_t lease_bytes = sizeof(struct lease) + nports * sizeof(struct lease_port);
	double index_per, total;

	for (int i = 0; i < N; i++)
		add(t, (uint32_t)(1000 + i % 100), (uint16_t)(10000 + i), transport, 0);
	index_per = (double)lease_table_index_bytes(t) / N;
	total = (double)lease_bytes + index_per;
	print_message("%s: sizeof(struct lease) + %u * sizeof(struct lease_port) = %zu B, "
		      "index %.1f B/lease at %d leases, total %.1f B/lease\n",
		      what, nports, lease_bytes, index_per, N, total);
	assert_true(total <= 256.0);
	free_table(t);
}

static void test_memory_per_lease(void **state)
{
	(void)state;
	measure(PORTD_TCP, "TCP lease");
	measure(PORTD_BOTH, "BOTH lease");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_alloc, setup),
		cmocka_unit_test_setup(test_add_ids_increase, setup),
		cmocka_unit_test_setup(test_find, setup),
		cmocka_unit_test_setup(test_multi_port_lease, setup),
		cmocka_unit_test_setup(test_port_conflict, setup),
		cmocka_unit_test_setup(test_admit_ttl, setup),
		cmocka_unit_test_setup(test_quota_uid, setup),
		cmocka_unit_test_setup(test_uid_counts_churn, setup),
		cmocka_unit_test_setup(test_quota_total, setup),
		cmocka_unit_test_setup(test_zero_limits, setup),
		cmocka_unit_test_setup(test_renew, setup),
		cmocka_unit_test_setup(test_pop_expired_order, setup),
		cmocka_unit_test_setup(test_next_deadline, setup),
		cmocka_unit_test_setup(test_expires_in_and_clamp, setup),
		cmocka_unit_test_setup(test_restore, setup),
		cmocka_unit_test_setup(test_untimed, setup),
		cmocka_unit_test_setup(test_iterate_id_order, setup),
		cmocka_unit_test_setup(test_may_access, setup),
		cmocka_unit_test_setup(test_remove_twice, setup),
		cmocka_unit_test_setup(test_free_calls_end, setup),
		cmocka_unit_test_setup(test_heap_random, setup),
		cmocka_unit_test_setup(test_memory_per_lease, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
