/*
 * perf: the results, printed as markdown, written as JSON and as the data
 * gnuplot draws (bench/latency.gp).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"
#include "portd.h"

struct row *results_row(struct results *res, const char *section, const char *what, const char *server,
			const char *placement, unsigned clients, long held, const struct perf_result *r)
{
	struct row *w;

	if (res->nrows >= MAX_ROWS)
		return NULL;
	w = &res->rows[res->nrows++];
	memset(w, 0, sizeof(*w));
	snprintf(w->section, sizeof(w->section), "%s", section);
	snprintf(w->what, sizeof(w->what), "%s", what);
	snprintf(w->server, sizeof(w->server), "%s", server);
	snprintf(w->placement, sizeof(w->placement), "%s", placement ? placement : "");
	w->clients = clients;
	w->held = held;
	if (r)
		w->r = *r;
	return w;
}

const struct row *results_find(const struct results *res, const char *section, const char *what,
			       const char *server, const char *placement, unsigned clients, long held)
{
	for (size_t i = 0; i < res->nrows; i++) {
		const struct row *w = &res->rows[i];

		if (strcmp(w->section, section) == 0 && strcmp(w->what, what) == 0 &&
		    (!server || strcmp(w->server, server) == 0) &&
		    (!placement || strcmp(w->placement, placement) == 0) && (!clients || w->clients == clients) &&
		    (held < 0 || w->held == held))
			return w;
	}
	return NULL;
}

struct target *results_target(struct results *res, const char *name, const char *goal, int met,
			      const char *fmt, ...)
{
	struct target *t;
	va_list ap;

	if (res->ntargets >= MAX_TARGETS)
		return NULL;
	t = &res->targets[res->ntargets++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->goal, sizeof(t->goal), "%s", goal);
	t->met = met;
	va_start(ap, fmt);
	vsnprintf(t->measured, sizeof(t->measured), fmt, ap);
	va_end(ap);
	return t;
}

void results_env(struct results *res, const char *fmt, ...)
{
	va_list ap;

	if (res->nenv >= sizeof(res->env) / sizeof(res->env[0]))
		return;
	va_start(ap, fmt);
	vsnprintf(res->env[res->nenv++], sizeof(res->env[0]), fmt, ap);
	va_end(ap);
}

/* ---- markdown ---- */

static const char *us(char *buf, size_t len, double v, bool have)
{
	if (!have)
		snprintf(buf, len, "-");
	else if (v >= 100)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.2f", v);
	return buf;
}

static const char *rate(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%.0f", v);
	return buf;
}

static void cores(char *buf, size_t len, double v)
{
	if (v >= 0)
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "-");
}

static void errors_cell(char *buf, size_t len, const struct perf_result *r)
{
	if (!r->errors && !r->failed)
		snprintf(buf, len, "0");
	else
		snprintf(buf, len, "%llu (%s)%s", (unsigned long long)r->errors,
			 r->last_error ? portd_strerror(r->last_error) : "-",
			 r->failed ? ", a client failed" : "");
}

static void md_single(const struct results *res, FILE *f)
{
	char a[32], b[32], c[32], d[32], e[96];

	fprintf(f, "## Physical limits and portd, one client\n\n");
	fprintf(f, "CPUs: `any` = unpinned; `same` = client and server pinned to CPU 0; `cross` = server on CPU 0, client on CPU 1.\n\n");
	fprintf(f, "Lease rows: the lease call's round trip; each lease is released at once over the same "
		   "connection (release p50 alongside), ops/s counts lease+release pairs.\n\n");
	fprintf(f, "| operation | server | CPUs | ops | p50 us | p99 us | p99.9 us | release p50 us | ops/s | server us/op | errors | note |\n");
	fprintf(f, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
	for (size_t i = 0; i < res->nrows; i++) {
		const struct row *w = &res->rows[i];

		if (strcmp(w->section, "limit") && strcmp(w->section, "single"))
			continue;
		errors_cell(e, sizeof(e), &w->r);
		char per[32], rel[32];

		us(per, sizeof(per), w->r.server_us_per_op, w->r.server_us_per_op >= 0);
		us(rel, sizeof(rel), w->r.b.p50, w->r.b.n);
		fprintf(f, "| %s | %s | %s | %llu | %s | %s | %s | %s | %s | %s | %s | %s |\n", w->what, w->server,
			w->placement, (unsigned long long)w->r.ops, us(a, sizeof(a), w->r.a.p50, w->r.a.n),
			us(b, sizeof(b), w->r.a.p99, w->r.a.n), us(c, sizeof(c), w->r.a.p999, w->r.a.n), rel,
			rate(d, sizeof(d), w->r.rate), per, e, w->note);
	}
	fprintf(f, "\n");
}

static void md_clients(const struct results *res, FILE *f)
{
	char a[32], b[32], c[32], d[32], r[32], e[96];

	fprintf(f, "## Concurrent clients: lease + release pairs, one connection per client process\n\n");
	fprintf(f, "Unpinned (the scheduler places clients and server; with one client the pair shares a CPU or "
		   "not, which on this VM is ~6 us against ~50 us per round trip). CPU columns, in cores over the "
		   "window: the server process, all client processes, and the whole machine (everything else "
		   "on it included); server us/pair = server CPU time per lease+release pair.\n\n");
	fprintf(f, "| server | lease kind | clients | pairs/s | lease p50 us | lease p99 us | release p50 us | release p99 us | server CPU | clients CPU | machine CPU | server us/pair | errors | note |\n");
	fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
	for (size_t i = 0; i < res->nrows; i++) {
		const struct row *w = &res->rows[i];

		if (strcmp(w->section, "clients"))
			continue;
		errors_cell(e, sizeof(e), &w->r);
		char cpu[32], kcpu[32], mcpu[32], per[32];

		us(per, sizeof(per), w->r.server_us_per_op, w->r.server_us_per_op >= 0);
		cores(cpu, sizeof(cpu), w->r.server_cpu);
		cores(kcpu, sizeof(kcpu), w->r.clients_cpu);
		cores(mcpu, sizeof(mcpu), w->r.machine_busy);
		fprintf(f, "| %s | %s | %u | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", w->server, w->what,
			w->clients, rate(r, sizeof(r), w->r.rate), us(a, sizeof(a), w->r.a.p50, w->r.a.n),
			us(b, sizeof(b), w->r.a.p99, w->r.a.n), us(c, sizeof(c), w->r.b.p50, w->r.b.n),
			us(d, sizeof(d), w->r.b.p99, w->r.b.n), cpu, kcpu, mcpu, per, e, w->note);
	}
	fprintf(f, "\n");
}

static void md_scaling(const struct results *res, FILE *f)
{
	char a[32], b[32], c[32], d[32], r[32], e[96];

	fprintf(f, "## Scaling: one client, number lease + release, with N number leases held\n\n");
	fprintf(f, "Client and daemons pinned to CPU 0. Kernel source: bind(0) over the whole ephemeral range; "
		   "--range: portd picks from 2000-31999 and binds the port explicitly. For each N, rounds alternate "
		   "between the daemon holding N and a second one holding none in a network namespace of its own "
		   "(the reference rows), so both see the same machine but not each other's ports.\n\n");
	fprintf(f, "| port source | operation | held | p50 us | p99 us | release p50 us | release p99 us | ops/s | note |\n");
	fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---|\n");
	for (size_t i = 0; i < res->nrows; i++) {
		const struct row *w = &res->rows[i];

		if (strcmp(w->section, "scaling") && strcmp(w->section, "scaling-ref"))
			continue;
		errors_cell(e, sizeof(e), &w->r);
		fprintf(f, "| %s%s | %s | %ld | %s | %s | %s | %s | %s | %s%s%s |\n", w->server,
			strcmp(w->section, "scaling-ref") ? "" : ", none held (reference)", w->what, w->held,
			us(a, sizeof(a), w->r.a.p50, w->r.a.n), us(b, sizeof(b), w->r.a.p99, w->r.a.n),
			us(c, sizeof(c), w->r.b.p50, w->r.b.n), us(d, sizeof(d), w->r.b.p99, w->r.b.n),
			rate(r, sizeof(r), w->r.rate), w->note, w->r.errors ? "; errors: " : "",
			w->r.errors ? e : "");
	}
	fprintf(f, "\n");
}

static double per_lease(long before_kb, long after_kb, unsigned n)
{
	if (before_kb < 0 || after_kb < 0 || !n)
		return NAN;
	return (double)(after_kb - before_kb) * 1024.0 / n;
}

static void md_memory(const struct results *res, FILE *f)
{
	fprintf(f, "## Daemon memory per held lease\n\n");
	fprintf(f, "Number leases; before = after a warm-up with none held, after = with all held. RSS is the "
		   "daemon's own memory; each held socket is kernel memory (slab), not in RSS: the last column "
		   "is the machine-wide Slab delta, an approximation.\n\n");
	fprintf(f, "| port source | leases | VmRSS before kB | VmRSS after kB | RSS bytes/lease | RssAnon bytes/lease | Pss bytes/lease | fds after | kernel slab bytes/lease |\n");
	fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < res->nmem; i++) {
		const struct memory *m = &res->mem[i];

		if (!m->ok) {
			fprintf(f, "| %s | %u | not measured | | | | | | |\n", m->source, m->leases);
			continue;
		}
		fprintf(f, "| %s | %u | %ld | %ld | %.0f | %.0f | %.0f | %ld | %.0f |\n", m->source, m->leases,
			m->before.rss_kb, m->after.rss_kb, per_lease(m->before.rss_kb, m->after.rss_kb, m->leases),
			per_lease(m->before.anon_kb, m->after.anon_kb, m->leases),
			per_lease(m->before.pss_kb, m->after.pss_kb, m->leases), m->after.fds,
			per_lease(m->slab_before_kb, m->slab_after_kb, m->leases));
	}
	fprintf(f, "\n");
}

static void md_expiry(const struct results *res, FILE *f)
{
	fprintf(f, "## Many leases ending at once\n\n");
	fprintf(f, "A probe client sends STATUS back to back throughout (one in flight); its longest round trip "
		   "bounds the longest time the event loop served no one. The daemon is pinned to CPU 0; probe CPU "
		   "`cross` = CPU 1 (round trip = loop blocked + two wake-ups), `same` = CPU 0 (what a client "
		   "sharing the daemon's CPU sees, the kernel's deferred socket freeing included).\n\n");
	fprintf(f, "| case | probe CPU | leases | taking them ms | deadline spread ms | until all gone ms | longest stall ms | probes > 1 / 5 / 10 ms | probes | probe p50 us | note |\n");
	fprintf(f, "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|\n");
	for (size_t i = 0; i < res->nexpiry; i++) {
		const struct expiry *x = &res->expiry[i];

		if (!x->ok) {
			fprintf(f, "| %s | %s | %u | not measured | | | | | | | %s |\n", x->what, x->placement, x->leases,
				x->note);
			continue;
		}
		fprintf(f, "| %s | %s | %u | %.0f | %.0f | %.1f | %.2f | %u / %u / %u | %u | %.1f | %s |\n", x->what,
			x->placement, x->leases, x->fill_ms, x->spread_ms, x->gone_ms, x->stall_max_ms, x->over_ms[0],
			x->over_ms[1], x->over_ms[2], x->probes, x->probe_p50_us, x->note);
	}
	fprintf(f, "\n");
}

static void md_cli(const struct results *res, FILE *f)
{
	fprintf(f, "## One port from the command line: wall time per call (fork, exec, read stdout, wait)\n\n");
	fprintf(f, "| command | runs | p50 ms | p99 ms | mean ms | note |\n");
	fprintf(f, "|---|---:|---:|---:|---:|---|\n");
	for (size_t i = 0; i < res->nrows; i++) {
		const struct row *w = &res->rows[i];

		if (strcmp(w->section, "cli"))
			continue;
		if (!w->r.a.n) {
			fprintf(f, "| %s | 0 | - | - | - | %s |\n", w->what, w->note);
			continue;
		}
		fprintf(f, "| %s | %zu | %.2f | %.2f | %.2f | %s |\n", w->what, w->r.a.n, w->r.a.p50 / 1000,
			w->r.a.p99 / 1000, w->r.a.mean / 1000, w->note);
	}
	fprintf(f, "\n");
}

static void md_portserver(const struct results *res, FILE *f)
{
	char a[32], b[32], r[32], e[96];

	fprintf(f, "## portpicker's portserver protocol under the same load\n\n");
	fprintf(f, "Each request: connect to the abstract socket, send `<pid>\\n`, read `<port>\\n` (a connection per "
		   "request, as portpicker does); the pid is a live helper process, so every port stays "
		   "assigned.\n\n");
	fprintf(f, "| server | clients | requests/s | p50 us | p99 us | server CPU | server us/request | errors | note |\n");
	fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---|---|\n");
	for (size_t i = 0; i < res->nrows; i++) {
		const struct row *w = &res->rows[i];

		if (strcmp(w->section, "portserver"))
			continue;
		char cpu[32], per[32];

		if (!w->r.a.n && w->note[0]) {
			fprintf(f, "| %s | %u | - | - | - | - | - | - | %s |\n", w->server, w->clients, w->note);
			continue;
		}
		errors_cell(e, sizeof(e), &w->r);
		cores(cpu, sizeof(cpu), w->r.server_cpu);
		us(per, sizeof(per), w->r.server_us_per_op, w->r.server_us_per_op >= 0);
		fprintf(f, "| %s | %u | %s | %s | %s | %s | %s | %s | %s |\n", w->server, w->clients,
			rate(r, sizeof(r), w->r.rate), us(a, sizeof(a), w->r.a.p50, w->r.a.n),
			us(b, sizeof(b), w->r.a.p99, w->r.a.n), cpu, per, e, w->note);
	}
	fprintf(f, "\n");
}

static void md_targets(const struct results *res, FILE *f)
{
	fprintf(f, "## Targets\n\n");
	fprintf(f, "| target | goal | measured | met |\n");
	fprintf(f, "|---|---|---|---|\n");
	for (size_t i = 0; i < res->ntargets; i++) {
		const struct target *t = &res->targets[i];

		fprintf(f, "| %s | %s | %s | %s |\n", t->name, t->goal, t->measured,
			t->met < 0 ? "not measured" : t->met ? "**met**" : "**MISSED**");
	}
	fprintf(f, "\n");
}

void report_markdown(const struct results *res, FILE *f)
{
	fprintf(f, "# portd performance\n\n");
	for (size_t i = 0; i < res->nenv; i++)
		fprintf(f, "- %s\n", res->env[i]);
	fprintf(f, "- this run took %.0f s\n\n", res->total_s);
	md_targets(res, f);
	md_single(res, f);
	md_clients(res, f);
	md_scaling(res, f);
	md_memory(res, f);
	md_expiry(res, f);
	md_cli(res, f);
	md_portserver(res, f);
}

/* ---- JSON ---- */

static void js_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void js_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.3f", v);
	else
		fprintf(f, "null");
}

static void js_lat(FILE *f, const char *key, const struct lat *l)
{
	fprintf(f, "\"%s\": ", key);
	if (!l->n) {
		fprintf(f, "null");
		return;
	}
	fprintf(f, "{\"n\": %zu, \"p50\": ", l->n);
	js_num(f, l->p50);
	fprintf(f, ", \"p99\": ");
	js_num(f, l->p99);
	fprintf(f, ", \"p999\": ");
	js_num(f, l->p999);
	fprintf(f, ", \"max\": ");
	js_num(f, l->max);
	fprintf(f, ", \"mean\": ");
	js_num(f, l->mean);
	fprintf(f, "}");
}

static void js_mem(FILE *f, const struct perf_mem *m)
{
	fprintf(f, "{\"vmrss_kb\": %ld, \"rss_anon_kb\": %ld, \"pss_kb\": %ld, \"fds\": %ld}", m->rss_kb, m->anon_kb,
		m->pss_kb, m->fds);
}

int report_json(const struct results *res, const char *path)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	fprintf(f, "{\n  \"schema\": \"portd-bench-perf/1\",\n  \"units\": {\"latency\": \"us\", \"rate\": \"per second\", \"cli\": \"us\"},\n");
	fprintf(f, "  \"seconds\": ");
	js_num(f, res->total_s);
	fprintf(f, ",\n  \"environment\": [");
	for (size_t i = 0; i < res->nenv; i++) {
		fprintf(f, "%s\n    ", i ? "," : "");
		js_str(f, res->env[i]);
	}
	fprintf(f, "\n  ],\n  \"targets\": [");
	for (size_t i = 0; i < res->ntargets; i++) {
		const struct target *t = &res->targets[i];

		fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
		js_str(f, t->name);
		fprintf(f, ", \"goal\": ");
		js_str(f, t->goal);
		fprintf(f, ", \"measured\": ");
		js_str(f, t->measured);
		fprintf(f, ", \"met\": %s}", t->met < 0 ? "null" : t->met ? "true" : "false");
	}
	fprintf(f, "\n  ],\n  \"measurements\": [");
	for (size_t i = 0; i < res->nrows; i++) {
		const struct row *w = &res->rows[i];

		fprintf(f, "%s\n    {\"section\": ", i ? "," : "");
		js_str(f, w->section);
		fprintf(f, ", \"what\": ");
		js_str(f, w->what);
		fprintf(f, ", \"server\": ");
		js_str(f, w->server);
		fprintf(f, ", \"cpus\": ");
		js_str(f, w->placement);
		fprintf(f, ", \"clients\": %u, \"held\": ", w->clients);
		if (w->held >= 0)
			fprintf(f, "%ld", w->held);
		else
			fprintf(f, "null");
		fprintf(f, ", \"ops\": %llu, \"seconds\": ", (unsigned long long)w->r.ops);
		js_num(f, w->r.seconds);
		fprintf(f, ", \"rate\": ");
		js_num(f, w->r.rate);
		fprintf(f, ", ");
		js_lat(f, w->r.b.n ? "lease" : "latency", &w->r.a);
		fprintf(f, ", ");
		js_lat(f, "release", &w->r.b);
		fprintf(f, ", \"errors\": %llu, \"last_error\": ", (unsigned long long)w->r.errors);
		js_str(f, w->r.last_error ? portd_strerror(w->r.last_error) : "");
		fprintf(f, ", \"server_cpu\": ");
		js_num(f, w->r.server_cpu >= 0 ? w->r.server_cpu : NAN);
		fprintf(f, ", \"clients_cpu\": ");
		js_num(f, w->r.clients_cpu >= 0 ? w->r.clients_cpu : NAN);
		fprintf(f, ", \"machine_cpu\": ");
		js_num(f, w->r.machine_busy >= 0 ? w->r.machine_busy : NAN);
		fprintf(f, ", \"server_us_per_op\": ");
		js_num(f, w->r.server_us_per_op >= 0 ? w->r.server_us_per_op : NAN);
		fprintf(f, ", \"failed_clients\": %u, \"note\": ", w->r.failed);
		js_str(f, w->note);
		fprintf(f, "}");
	}
	fprintf(f, "\n  ],\n  \"memory\": [");
	for (size_t i = 0; i < res->nmem; i++) {
		const struct memory *m = &res->mem[i];

		fprintf(f, "%s\n    {\"source\": ", i ? "," : "");
		js_str(f, m->source);
		fprintf(f, ", \"leases\": %u, \"measured\": %s, \"before\": ", m->leases, m->ok ? "true" : "false");
		js_mem(f, &m->before);
		fprintf(f, ", \"after\": ");
		js_mem(f, &m->after);
		fprintf(f, ", \"rss_bytes_per_lease\": ");
		js_num(f, per_lease(m->before.rss_kb, m->after.rss_kb, m->leases));
		fprintf(f, ", \"anon_bytes_per_lease\": ");
		js_num(f, per_lease(m->before.anon_kb, m->after.anon_kb, m->leases));
		fprintf(f, ", \"pss_bytes_per_lease\": ");
		js_num(f, per_lease(m->before.pss_kb, m->after.pss_kb, m->leases));
		fprintf(f, ", \"kernel_slab_bytes_per_lease_machine_wide\": ");
		js_num(f, per_lease(m->slab_before_kb, m->slab_after_kb, m->leases));
		fprintf(f, "}");
	}
	fprintf(f, "\n  ],\n  \"expiry\": [");
	for (size_t i = 0; i < res->nexpiry; i++) {
		const struct expiry *x = &res->expiry[i];

		fprintf(f, "%s\n    {\"case\": ", i ? "," : "");
		js_str(f, x->what);
		fprintf(f, ", \"leases\": %u, \"measured\": %s, \"fill_ms\": ", x->leases, x->ok ? "true" : "false");
		js_num(f, x->fill_ms);
		fprintf(f, ", \"deadline_spread_ms\": ");
		js_num(f, x->spread_ms);
		fprintf(f, ", \"until_all_gone_ms\": ");
		js_num(f, x->gone_ms);
		fprintf(f, ", \"longest_stall_ms\": ");
		js_num(f, x->stall_max_ms);
		fprintf(f, ", \"probe_cpu\": ");
		js_str(f, x->placement);
		fprintf(f, ", \"probes_over_1_5_10_ms\": [%u, %u, %u]", x->over_ms[0], x->over_ms[1], x->over_ms[2]);
		fprintf(f, ", \"probes\": %u, \"probe_p50_us\": ", x->probes);
		js_num(f, x->probe_p50_us);
		fprintf(f, ", \"note\": ");
		js_str(f, x->note);
		fprintf(f, "}");
	}
	fprintf(f, "\n  ]\n}\n");
	if (fclose(f) == EOF)
		return -errno;
	return 0;
}

/* ---- gnuplot data ---- */

static double lease_p(const struct results *res, const char *what, const char *source, long held, bool p99)
{
	const struct row *w = results_find(res, strcmp(what, "ref") ? "scaling" : "scaling-ref",
					   strcmp(what, "ref") ? what : "number", source, NULL, 0, held);

	if (!w || !w->r.a.n)
		return NAN;
	return p99 ? w->r.a.p99 : w->r.a.p50;
}

static void gp_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, " %.3f", v);
	else
		fprintf(f, " NaN");
}

int report_plot_data(const struct results *res, const char *dir)
{
	static const long held[] = { 0, 1000, 5000, 15000 };
	char path[4096];
	const struct row *w;
	FILE *f;

	snprintf(path, sizeof(path), "%s/latency.dat", dir);
	if (!(f = fopen(path, "we")))
		return -errno;
	fprintf(f, "# us; one client, number lease round trip; in-process: the kernel's socket+bind+close alone\n");
	fprintf(f, "# held kernel-p50 kernel-p99 range-p50 range-p99 inproc-kernel-p50 inproc-kernel-p99 "
		   "inproc-range-p50 inproc-range-p99 none-held-kernel-p99 none-held-range-p99 2x-none-held-range-p99\n");
	for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++) {
		fprintf(f, "%ld", held[i]);
		gp_num(f, lease_p(res, "number", "portd kernel", held[i], false));
		gp_num(f, lease_p(res, "number", "portd kernel", held[i], true));
		gp_num(f, lease_p(res, "number", "portd --range", held[i], false));
		gp_num(f, lease_p(res, "number", "portd --range", held[i], true));
		gp_num(f, lease_p(res, "socket+bind(0)+getsockname+close", "in-process, kernel", held[i], false));
		gp_num(f, lease_p(res, "socket+bind(0)+getsockname+close", "in-process, kernel", held[i], true));
		gp_num(f, lease_p(res, "socket+bind(port)+getsockname+close", "in-process, range", held[i], false));
		gp_num(f, lease_p(res, "socket+bind(port)+getsockname+close", "in-process, range", held[i], true));
		gp_num(f, lease_p(res, "ref", "portd kernel", held[i], true));
		gp_num(f, lease_p(res, "ref", "portd --range", held[i], true));
		gp_num(f, 2 * lease_p(res, "ref", "portd --range", held[i], true));
		fprintf(f, "\n");
	}
	if (fclose(f) == EOF)
		return -errno;

	snprintf(path, sizeof(path), "%s/latency-vars.gp", dir);
	if (!(f = fopen(path, "we")))
		return -errno;
	w = results_find(res, "limit", "SEQPACKET round trip + 1 fd", "bare", "same", 1, -1);
	fprintf(f, "bare_fd_p50 =");
	gp_num(f, w ? w->r.a.p50 : NAN);
	w = results_find(res, "limit", "socket+bind(0)+getsockname+close", "in-process", NULL, 1, -1);
	fprintf(f, "\nbind_p50 =");
	gp_num(f, w ? w->r.a.p50 : NAN);
	w = results_find(res, "clients", "number", "trivial server", NULL, 1, -1);
	fprintf(f, "\ntrivial_p50 =");
	gp_num(f, w ? w->r.a.p50 : NAN);
	fprintf(f, "\nrange_p99_0 =");
	gp_num(f, lease_p(res, "ref", "portd --range", 15000, true));
	fprintf(f, "\nkernel_p99_0 =");
	gp_num(f, lease_p(res, "ref", "portd kernel", 15000, true));
	fprintf(f, "\n");
	if (fclose(f) == EOF)
		return -errno;
	return 0;
}
