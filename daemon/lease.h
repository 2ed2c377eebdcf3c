/*
 * The lease table: every live lease, indexed three ways.
 *
 *  - by id (hash table), for renew/release/details;
 *  - by (port, transport) (hash table), for release-by-port and to know that
 *    a port belongs to a live lease;
 *  - by deadline (binary min-heap, each lease knows its heap slot), so the
 *    daemon arms one timer for the earliest deadline and expiry is O(log n);
 *  - and in id order (a list: ids only grow, so appending keeps it sorted),
 *    for LIST pagination.
 *
 * It also counts leases per uid and enforces the limits. It owns no fd and
 * knows no event loop: the caller closes a removed lease's sockets and frees
 * it. Time comes from an injected clock.
 */
#ifndef PORTD_LEASE_H
#define PORTD_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"

/* Named results of lease_table operations (not errnos). */
enum lease_result {
	LEASE_OK = 0,
	LEASE_E_TTL,         /* ttl above max_ttl */
	LEASE_E_QUOTA_UID,   /* uid already holds max_per_uid leases */
	LEASE_E_QUOTA_TOTAL, /* table already holds max_leases leases */
	LEASE_E_NOENT,
	LEASE_E_PERM,        /* caller is neither the owner's uid nor root */
};

/* Taken literally: a limit of 0 admits nothing. */
struct lease_limits {
	uint32_t max_leases;
	uint32_t max_per_uid;
	uint32_t default_ttl_s; /* used when a request says ttl 0 */
	uint32_t max_ttl_s;
};

/*
 * The deadline of a lease that has none: it ends only when released or when
 * its tied process exits (portserver leases). Such leases sit at the bottom of
 * the deadline heap, so lease_table_next_deadline() answers UINT64_MAX ("no
 * timer") while only they are left and pop_expired() never returns them.
 */
#define LEASE_NO_DEADLINE UINT64_MAX

struct lease_port {
	uint16_t port;
	uint8_t transport; /* PORTD_TCP or PORTD_UDP: one entry per bound socket
			      (an entry saying PORTD_BOTH is indexed as both) */
	int fd;            /* the daemon's copy of the bound socket, or -1 */
};

struct lease {
	uint64_t id;        /* set by lease_table_add() */
	uint64_t deadline;  /* monotonic ms; set by add/renew */
	uint32_t ttl_s;
	uint32_t uid;       /* owner, from SO_PEERCRED */
	pid_t pid;          /* owner's pid at connect time */
	pid_t tied_pid;     /* process whose exit ends the lease, 0 = none */
	uint32_t flags;     /* PORTD_LEASE_F_* */
	uint8_t transport;  /* as requested: PORTD_TCP, PORTD_UDP or PORTD_BOTH */
	void *watch;        /* owned by the daemon layer (pidfd event), NULL if none */
	struct lease *tie_prev, *tie_next; /* daemon layer: leases tied to the same process */

	/* Table bookkeeping; not for use outside lease.c. */
	size_t heap_idx;
	struct lease *prev, *next;

	uint16_t nports;    /* entries in ports[] */
	struct lease_port ports[];
};

struct lease_table;

/* Allocates a lease with room for nports entries, every fd -1. NULL on ENOMEM. */
struct lease *lease_alloc(uint16_t nports);
/* Frees a lease that is not in a table (closes nothing). Accepts NULL. */
void lease_free(struct lease *l);

struct lease_table *lease_table_new(const struct lease_limits *lim, const struct clock *clk);
/*
 * Calls end(l, ctx) for every lease still in the table, in id order, then
 * frees the table. Each lease is already unlinked when end() sees it (so end
 * may call lease_table_remove() on it, a no-op) and end must free it; a NULL
 * end just lease_free()s. Accepts NULL.
 */
void lease_table_free(struct lease_table *t, void (*end)(struct lease *l, void *ctx), void *ctx);

const struct lease_limits *lease_table_limits(const struct lease_table *t);

/*
 * Admission check before any port is bound, so that a refused request takes
 * nothing: resolves *ttl_s (0 -> default) and checks max_ttl and both quotas
 * for uid. Returns LEASE_OK or LEASE_E_TTL / _QUOTA_UID / _QUOTA_TOTAL.
 */
enum lease_result lease_table_admit(const struct lease_table *t, uint32_t uid, uint32_t *ttl_s);

/*
 * Inserts l (ports filled in, uid/pid/flags set): assigns the next id, sets
 * ttl_s and deadline = now + ttl (clamped, never wraps). Re-checks admission;
 * on anything but LEASE_OK, l is not inserted and the table is unchanged.
 * Returns named results only: an allocation failure of an index is reported
 * as LEASE_E_QUOTA_TOTAL; LEASE_E_PERM means l cannot be indexed (it is
 * already in a table, an entry has an invalid transport, or one of its
 * (port, transport) pairs already belongs to a live lease or appears twice
 * in l) - a caller bug or a corrupt restore, never a client's fault.
 */
enum lease_result lease_table_add(struct lease_table *t, struct lease *l, uint32_t ttl_s);

/*
 * Like lease_table_add(), for a lease without a deadline: ttl_s 0, deadline
 * LEASE_NO_DEADLINE. Checks both quotas (no ttl to check). The caller ties
 * the lease to a process, or nothing would ever end it.
 */
enum lease_result lease_table_add_untimed(struct lease_table *t, struct lease *l);

/*
 * Like lease_table_add(), but keeps l->id (must be non-zero and unused: used when
 * restoring saved leases) and sets deadline = now + remaining_ms (clamped).
 * Checks both quotas but not max_ttl (l->ttl_s is kept as granted; 0 becomes
 * the default). remaining_ms LEASE_NO_DEADLINE restores a lease without a
 * deadline (ttl_s stays 0). A zero, UINT64_MAX or already-used id gives LEASE_E_PERM.
 * The next id assigned by lease_table_add() stays above every id seen.
 */
enum lease_result lease_table_restore(struct lease_table *t, struct lease *l, uint64_t remaining_ms);

/* The id the next lease_table_add() assigns; raise it (never lower) so no id is reused after a restart. */
uint64_t lease_table_next_id(const struct lease_table *t);
void lease_table_raise_next_id(struct lease_table *t, uint64_t next);

struct lease *lease_table_find(const struct lease_table *t, uint64_t id);
/* transport 0 matches either (TCP first); PORTD_BOTH is not valid here (NULL). */
struct lease *lease_table_find_port(const struct lease_table *t, uint16_t port, uint8_t transport);

/* May caller_uid act on l? (owner's uid, or root) */
bool lease_may_access(const struct lease *l, uint32_t caller_uid);

/*
 * Resolves ttl (0 -> default), checks max, sets ttl_s and deadline = now + ttl.
 * LEASE_OK, LEASE_E_TTL (l unchanged), or LEASE_E_NOENT if l is in no table.
 */
enum lease_result lease_table_renew(struct lease_table *t, struct lease *l, uint32_t ttl_s);

/* Unlinks l from every index and the uid count. The caller owns l afterwards.
 * A lease that is in no table (already removed, never added) is ignored. */
void lease_table_remove(struct lease_table *t, struct lease *l);

/* Earliest deadline, or UINT64_MAX when the table is empty. */
uint64_t lease_table_next_deadline(const struct lease_table *t);
/* Removes and returns one lease whose deadline is <= now, or NULL. */
struct lease *lease_table_pop_expired(struct lease_table *t, uint64_t now);

/* Milliseconds until l's deadline (0 if past; LEASE_NO_DEADLINE if it has none). */
uint64_t lease_expires_in(const struct lease_table *t, const struct lease *l);

size_t lease_table_count(const struct lease_table *t);
uint32_t lease_table_uid_count(const struct lease_table *t, uint32_t uid);

/* Id order: the first lease with id > after_id, or NULL; then lease_next(). */
struct lease *lease_table_first_after(const struct lease_table *t, uint64_t after_id);
struct lease *lease_next(const struct lease *l);

/* Bytes the table itself allocates (indexes, not the leases): for status and tests. */
size_t lease_table_index_bytes(const struct lease_table *t);

#endif
