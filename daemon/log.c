#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level level = LOG_LVL_INFO;

void log_set_level(enum log_level lvl) { level = lvl; }
enum log_level log_get_level(void) { return level; }

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char line[1024];
	va_list ap;

	if (lvl > level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line, so lines from a busy daemon never interleave. */
	fprintf(stderr, "portd: %s: %s\n", names[lvl], line);
}
