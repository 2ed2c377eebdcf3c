/* Counts per uid: adding, taking away, entries that go at 0, growth, deletion in probe chains. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "uidcount.h"

static void test_add_sub(void **state)
{
	struct uidcount *u = uidcount_new();

	assert_non_null(u);
	assert_int_equal(uidcount_get(u, 1000), 0);
	assert_int_equal(uidcount_add(u, 1000, 1), 0);
	assert_int_equal(uidcount_add(u, 1000, 4), 0);
	assert_int_equal(uidcount_add(u, 0, 1), 0);
	assert_int_equal(uidcount_add(u, 65534, 0), 0); /* adding nothing makes no entry */
	assert_int_equal(uidcount_get(u, 1000), 5);
	assert_int_equal(uidcount_get(u, 0), 1);
	assert_int_equal(uidcount_uids(u), 2);
	uidcount_sub(u, 1000, 2);
	assert_int_equal(uidcount_get(u, 1000), 3);
	uidcount_sub(u, 1000, 10); /* down to 0 at most: the entry goes */
	assert_int_equal(uidcount_get(u, 1000), 0);
	assert_int_equal(uidcount_uids(u), 1);
	uidcount_sub(u, 4242, 1); /* never counted */
	assert_int_equal(uidcount_get(u, 4242), 0);
	uidcount_sub(u, 0, 1);
	assert_int_equal(uidcount_uids(u), 0);
	uidcount_free(u);
	uidcount_free(NULL);
}

/* Many uids: the table grows, and removing any of them keeps the others findable. */
static void test_many(void **state)
{
	enum { N = 5000 };
	struct uidcount *u = uidcount_new();

	assert_non_null(u);
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(uidcount_add(u, i * 7919u, i % 3 + 1), 0);
	assert_int_equal(uidcount_uids(u), N);
	/* Remove every other uid, in an order unrelated to insertion. */
	for (uint32_t i = 0; i < N; i += 2)
		uidcount_sub(u, ((i * 31u) % N) * 7919u, 3);
	for (uint32_t i = 0; i < N; i++) {
		uint32_t k = (i * 31u) % N;
		assert_int_equal(uidcount_get(u, k * 7919u), i % 2 ? k % 3 + 1 : 0);
	}
	assert_int_equal(uidcount_uids(u), N / 2);
	uidcount_free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_sub),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
