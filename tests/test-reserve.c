/*
 * The ip_local_reserved_ports list (proto/portset.c): parsing, formatting;
 * and daemon/reserve.c: adding and removing only our own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reserve.h"

static char buf[65536 * 7];

static void roundtrip(const char *in, const char *out)
{
	static struct portset s;

	assert_int_equal(portset_parse(in, &s), 0);
	assert_true(portset_format(&s, buf, sizeof(buf)) >= 0);
	assert_string_equal(buf, out);
}

static void test_parse_format(void **state)
{
	roundtrip("", "");
	roundtrip("\n", "");
	roundtrip("80\n", "80");
	roundtrip("1-3,5", "1-3,5");
	roundtrip("5,1-3", "1-3,5");         /* sorted */
	roundtrip("1,2,3,4", "1-4");         /* merged */
	roundtrip("10-20,15-30\n", "10-30"); /* overlaps */
	roundtrip("0,65535", "0,65535");     /* edges */
	roundtrip("0-65535", "0-65535");
}

static void test_parse_rejects(void **state)
{
	static struct portset s;
	const char *bad[] = { "x", "1-", "-1", "3-1", "65536", "1,,2", "1 2", "1;2", "1-2-3" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (portset_parse(bad[i], &s) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
}

static void test_format_nospace(void **state)
{
	static struct portset s;
	char small[4];

	assert_int_equal(portset_parse("1000-2000", &s), 0);
	assert_int_equal(portset_format(&s, small, sizeof(small)), -ENOSPC);
}

static void test_covers(void **state)
{
	static struct portset s;

	assert_int_equal(portset_parse("100-199,300", &s), 0);
	assert_true(portset_covers(&s, 100, 199));
	assert_true(portset_covers(&s, 150, 150));
	assert_false(portset_covers(&s, 100, 200));
	assert_false(portset_covers(&s, 299, 300));
	assert_int_equal(portset_count(&s, 0, 65535), 101);
	assert_int_equal(portset_count(&s, 190, 300), 11);
	/* One bit per port, port p at bit p % 64 of word p / 64. */
	assert_int_equal(portset_parse("1,5-7,65535\n", &s), 0);
	assert_true(s.bits[0] == (0x2 | 0xe0));
	assert_true(s.bits[PORTSET_WORDS - 1] == 1ull << 63);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static const char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n;
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Add and remove against a plain file standing in for the sysctl. */
static void test_add_remove_keeps_others(void **state)
{
	static struct reservation r;
	char path[] = "/tmp/portd-reserve.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	write_file(path, "500,1000-1005\n");
	assert_int_equal(reserve_add(path, 1003, 1010, &r), 0);
	assert_string_equal(read_file(path), "500,1000-1010\n");
	/* Someone else reserves more meanwhile. */
	write_file(path, "500,1000-1010,2000\n");
	assert_int_equal(reserve_remove(path, &r), 0);
	/* 1003-1005 were reserved before us: they stay, and so does 2000. */
	assert_string_equal(read_file(path), "500,1000-1005,2000\n");

	/* From nothing back to nothing: a newline, as the kernel needs. */
	write_file(path, "\n");
	assert_int_equal(reserve_add(path, 40000, 40099, &r), 0);
	assert_string_equal(read_file(path), "40000-40099\n");
	assert_int_equal(reserve_remove(path, &r), 0);
	assert_string_equal(read_file(path), "\n");
	unlink(path);
	assert_int_equal(reserve_add(path, 1, 2, &r), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_format),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_format_nospace),
		cmocka_unit_test(test_covers),
		cmocka_unit_test(test_add_remove_keeps_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
