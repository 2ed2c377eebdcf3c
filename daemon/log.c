#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <syslog.h>

#include <systemd/sd-journal.h>

static enum log_level level = LOG_LVL_INFO;
static bool journal;

static const int priorities[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
static const char *const names[] = { "error", "warning", "info", "debug" };

void log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	/* journald set it for the stream it gave us; it is ours only if stderr is still that stream. */
	journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
		  (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_level(enum log_level lvl) { level = lvl; }
enum log_level log_get_level(void) { return level; }

static void emit(enum log_level lvl, const char *line)
{
	if (journal)
		sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", priorities[lvl], NULL);
	else
		/* One write per line, so lines from a busy daemon never interleave. */
		fprintf(stderr, "portd: %s: %s\n", names[lvl], line);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (lvl > level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	emit(lvl, line);
}

void log_lease(enum log_level lvl, const char *event, uint64_t id, uint16_t port, uint32_t uid,
	       const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (lvl > level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (journal)
		sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", priorities[lvl], "PORTD_EVENT=%s",
				event, "LEASE_ID=%" PRIu64, id, "PORT=%u", port, "OWNER_UID=%u", uid, NULL);
	else
		emit(lvl, line);
}
