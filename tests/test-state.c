/* The state file: what is saved comes back, damage is skipped, never half a file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lease.h"
#include "protocol.h"
#include "state.h"

static uint64_t now = 5000000;
static uint64_t fake_clock(void *ctx) { return now; }
static const struct clock clk = { fake_clock, NULL };
static const struct lease_limits lim = { 100, 100, 60, 3600 };

static struct saved_lease got[8];
static int ngot;

static void collect(const struct saved_lease *sl, void *ctx)
{
	if (ngot < 8)
		got[ngot++] = *sl;
}

static uint64_t start_of(const struct lease *l, void *ctx)
{
	return l->tied_pid ? 777 : 0;
}

static char path[64];

static int setup(void **state)
{
	strcpy(path, "/tmp/portd-state.XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	ngot = 0;
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	return 0;
}

static void write_text(const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void free_lease(struct lease *l, void *ctx) { lease_free(l); }

static void test_roundtrip(void **state)
{
	struct lease_table *t = lease_table_new(&lim, &clk);
	struct lease *a = lease_alloc(1), *b = lease_alloc(2);
	uint64_t next = 0;
	unsigned bad = 9;

	a->uid = 1000;
	a->pid = 42;
	a->flags = PORTD_LEASE_F_FD | PORTD_LEASE_F_TIE;
	a->transport = PORTD_TCP;
	a->tied_pid = 42;
	a->ports[0] = (struct lease_port){ 40000, PORTD_TCP, 7 };
	assert_int_equal(lease_table_add(t, a, 60), LEASE_OK);
	b->uid = 0;
	b->pid = 43;
	b->flags = 0;
	b->transport = PORTD_BOTH;
	b->ports[0] = (struct lease_port){ 40001, PORTD_TCP, 8 };
	b->ports[1] = (struct lease_port){ 40001, PORTD_UDP, -1 }; /* handed over */
	assert_int_equal(lease_table_add(t, b, 120), LEASE_OK);

	assert_int_equal(state_save(path, t, start_of, NULL), 0);
	assert_int_equal(state_load(path, collect, NULL, &next, &bad), 2);
	assert_int_equal(bad, 0);
	assert_int_equal(next, 3);
	assert_int_equal(got[0].id, a->id);
	assert_int_equal(got[0].uid, 1000);
	assert_int_equal(got[0].pid, 42);
	assert_int_equal(got[0].flags, a->flags);
	assert_int_equal(got[0].deadline, now + 60000);
	assert_int_equal(got[0].tied_pid, 42);
	assert_int_equal(got[0].tied_start, 777);
	assert_int_equal(got[0].nports, 1);
	assert_int_equal(got[0].ports[0].port, 40000);
	assert_true(got[0].ports[0].held);
	assert_int_equal(got[1].transport, PORTD_BOTH);
	assert_int_equal(got[1].ttl_s, 120);
	assert_int_equal(got[1].nports, 2);
	assert_int_equal(got[1].ports[1].transport, PORTD_UDP);
	assert_false(got[1].ports[1].held);
	assert_int_equal(got[1].tied_start, 0);
	lease_table_free(t, free_lease, NULL);
}

/* A portserver lease: its flag, no deadline, and its tied pid come back. */
static void test_portserver_lease(void **state)
{
	struct lease_table *t = lease_table_new(&lim, &clk);
	struct lease *a = lease_alloc(1);
	uint64_t next = 0;
	unsigned bad = 9;

	a->uid = 1000;
	a->pid = 41;
	a->flags = PORTD_LEASE_F_PORTSERVER;
	a->transport = PORTD_TCP;
	a->tied_pid = 42;
	a->ports[0] = (struct lease_port){ 40002, PORTD_TCP, 7 };
	assert_int_equal(lease_table_add_untimed(t, a), LEASE_OK);
	assert_int_equal(state_save(path, t, start_of, NULL), 0);
	assert_int_equal(state_load(path, collect, NULL, &next, &bad), 1);
	assert_int_equal(bad, 0);
	assert_int_equal(got[0].flags, PORTD_LEASE_F_PORTSERVER);
	assert_int_equal(got[0].ttl_s, 0);
	assert_true(got[0].deadline == LEASE_NO_DEADLINE);
	assert_int_equal(got[0].tied_pid, 42);
	assert_int_equal(got[0].tied_start, 777);
	lease_table_free(t, free_lease, NULL);
}

static void test_damage_skipped(void **state)
{
	uint64_t next;
	unsigned bad;

	write_text("portd-state 1\n"
		   "next 10\n"
		   "lease 5 0 1 0 1 60 100 0 0 1 1:40000:1\n"    /* good */
		   "lease 0 0 1 0 1 60 100 0 0 1 1:40000:1\n"    /* id 0 */
		   "lease 6 0 1 0 9 60 100 0 0 1 1:40000:1\n"    /* transport 9 */
		   "lease 7 0 1 0 1 60 100 0 0 2 1:40000:1\n"    /* fewer ports than said */
		   "lease 8 0 1 0 1 60 100 0 0 1 1:0:1\n"        /* port 0 */
		   "lease 9 0 1 0 1 60 100 0 0 1 1:40000:1 junk\n"
		   "garbage\n");
	assert_int_equal(state_load(path, collect, NULL, &next, &bad), 1);
	assert_int_equal(bad, 6);
	assert_int_equal(next, 10);
	assert_int_equal(got[0].id, 5);

	write_text("portd-state 2\nlease 5 0 1 0 1 60 100 0 0 1 1:40000:1\n");
	assert_int_equal(state_load(path, collect, NULL, &next, &bad), -EPROTO);
	unlink(path);
	assert_int_equal(state_load(path, collect, NULL, &next, &bad), -ENOENT);
}

/* The file is replaced whole: an unwritable place leaves the old one as it was. */
static void test_atomic(void **state)
{
	struct lease_table *t = lease_table_new(&lim, &clk);
	struct stat st;
	char bad_path[80];

	write_text("portd-state 1\n");
	snprintf(bad_path, sizeof(bad_path), "%s/nodir/state", path);
	assert_true(state_save(bad_path, t, NULL, NULL) < 0);
	assert_int_equal(state_save(path, t, NULL, NULL), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	lease_table_free(t, free_lease, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_portserver_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damage_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
