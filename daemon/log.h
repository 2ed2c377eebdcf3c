/*
 * Logging: to the journal with structured fields when stderr is connected to
 * journald ($JOURNAL_STREAM), plain lines on stderr otherwise. Lease events
 * are logged one line each at debug level, never a line per request at the
 * default level.
 */
#ifndef PORTD_LOG_H
#define PORTD_LOG_H

#include <stdint.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Choose the journal or stderr. Call once, early. */
void log_init(void);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
#define log_enabled(lvl) ((lvl) <= log_get_level())

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A lease event, with LEASE_ID=, PORT=, OWNER_UID= and PORTD_EVENT= in the journal. */
void log_lease(enum log_level lvl, const char *event, uint64_t id, uint16_t port, uint32_t uid,
	       const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_lease_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_lease(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
