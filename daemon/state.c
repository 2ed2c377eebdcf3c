#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_MAGIC "portd-state 1"

static int write_lease(FILE *f, const struct lease *l, uint64_t tied_start)
{
	fprintf(f, "lease %" PRIu64 " %u %d %u %u %u %" PRIu64 " %d %" PRIu64 " %u", l->id, l->uid,
		(int)l->pid, l->flags, l->transport, l->ttl_s, l->deadline, (int)l->tied_pid,
		tied_start, l->nports);
	for (uint16_t i = 0; i < l->nports; i++)
		fprintf(f, " %u:%u:%d", l->ports[i].transport, l->ports[i].port, l->ports[i].fd >= 0);
	return fputc('\n', f) == EOF ? -EIO : 0;
}

int state_save(const char *path, const struct lease_table *t, state_tied_start_fn tied_start, void *ctx)
{
	char tmp[4096], dir[4096];
	FILE *f;
	int fd, r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		r = -errno;
		close(fd);
		unlink(tmp);
		return r;
	}
	fprintf(f, "%s\nnext %" PRIu64 "\n", STATE_MAGIC, lease_table_next_id(t));
	for (struct lease *l = lease_table_first_after(t, 0); l && r == 0; l = lease_next(l))
		r = write_lease(f, l, tied_start ? tied_start(l, ctx) : 0);
	if (r == 0 && (fflush(f) == EOF || fsync(fileno(f)) < 0))
		r = -errno;
	if (fclose(f) == EOF && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	/* The rename itself reaches the disk with the directory. */
	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* Parse one "lease ..." line; false if malformed. */
static bool parse_lease(char *line, struct saved_lease *sl)
{
	unsigned uid, flags, transport, ttl, nports;
	int pid, tied, n = 0;
	uint64_t id, deadline, start;
	char *p;

	memset(sl, 0, sizeof(*sl));
	if (sscanf(line, "lease %" SCNu64 " %u %d %u %u %u %" SCNu64 " %d %" SCNu64 " %u%n", &id, &uid,
		   &pid, &flags, &transport, &ttl, &deadline, &tied, &start, &nports, &n) != 10)
		return false;
	if (!id || (flags & ~PORTD_LEASE_F_ALL) || transport < PORTD_TCP || transport > PORTD_BOTH ||
	    !nports || nports > STATE_PORTS_MAX || pid < 0 || tied < 0)
		return false;
	sl->id = id;
	sl->uid = uid;
	sl->pid = pid;
	sl->flags = flags;
	sl->transport = (uint8_t)transport;
	sl->ttl_s = ttl;
	sl->deadline = deadline;
	sl->tied_pid = tied;
	sl->tied_start = start;
	sl->nports = (uint16_t)nports;
	p = line + n;
	for (unsigned i = 0; i < nports; i++) {
		unsigned t, port, held;
		int k = 0;

		if (sscanf(p, " %u:%u:%u%n", &t, &port, &held, &k) != 3 || (t != PORTD_TCP && t != PORTD_UDP) ||
		    !port || port > 65535 || held > 1)
			return false;
		sl->ports[i] = (struct saved_port){ .port = (uint16_t)port, .transport = (uint8_t)t, .held = held };
		p += k;
	}
	while (*p == ' ' || *p == '\n')
		p++;
	return *p == '\0';
}

int state_load(const char *path, void (*fn)(const struct saved_lease *sl, void *ctx), void *ctx,
	       uint64_t *next_id, unsigned *bad)
{
	char line[1024];
	struct saved_lease sl;
	FILE *f = fopen(path, "re");
	int n = 0;

	*bad = 0;
	*next_id = 0;
	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f) || strcmp(line, STATE_MAGIC "\n") != 0) {
		fclose(f);
		return -EPROTO;
	}
	while (fgets(line, sizeof(line), f)) {
		if (!strchr(line, '\n') && !feof(f)) {
			/* Longer than any line we write: skip the rest of it. */
			int c;
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			(*bad)++;
			continue;
		}
		if (sscanf(line, "next %" SCNu64, next_id) == 1)
			continue;
		if (!parse_lease(line, &sl)) {
			(*bad)++;
			continue;
		}
		fn(&sl, ctx);
		n++;
	}
	fclose(f);
	return n;
}
