/*
 * log: leveled logging to stderr, one line per event, greppable:
 *
 *   2026-11-24T12:00:00.123Z INFO  txn=0000018c2f3a0001 committed (3 branches)
 *   2026-11-24T12:00:00.456Z WARN  participant=bank_b connect failed: ...
 *
 * The txn/participant variants put the identity first so that one grep
 * follows one transaction or one database through the whole log. With
 * log_format = json each line is an object instead:
 *
 *   {"ts":"2026-11-24T12:00:00.123Z","level":"info","txn":"0000018c2f3a0001","msg":"committed (3 branches)"}
 */
#ifndef TWOPC_LOG_H
#define TWOPC_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef enum LogLevel {
	LOG_DEBUG = 0,
	LOG_INFO = 1,
	LOG_WARNING = 2,
	LOG_ERROR = 3,
	LOG_FATAL = 4,
} LogLevel;

typedef enum LogFormat {
	LOG_FORMAT_TEXT, /* the lines above */
	LOG_FORMAT_JSON, /* one JSON object a line: ts, level, msg, and txn / participant when known */
} LogFormat;

void log_set_level(LogLevel level);
void log_set_format(LogFormat format);
bool log_parse_format(const char *s, LogFormat *out) WARN_UNUSED;
/* Logs to PATH (appending) instead of stderr. */
bool log_open_file(const char *path, char *err, size_t errlen) WARN_UNUSED;
/* Reopens the log file (after logrotate moved it; SIGHUP); a no-op for
 * stderr. The descriptor number stays the same, so no line is lost to a
 * race with the log thread. */
bool log_reopen(char *err, size_t errlen) WARN_UNUSED;
bool log_parse_level(const char *s, LogLevel *out) WARN_UNUSED;
bool log_enabled(LogLevel level);

void log_msg(LogLevel level, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Prefixes "txn=<16 hex>". */
void log_txn(LogLevel level, uint64_t txn_id, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Prefixes "participant=<name>". */
void log_part(LogLevel level, const char *participant, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Logs at FATAL and aborts: for broken invariants and decision-log I/O only. */
void log_fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));

#define log_debug(...)                                                                                                 \
	do {                                                                                                           \
		if (log_enabled(LOG_DEBUG))                                                                            \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                                               \
	} while (0)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_msg(LOG_ERROR, __VA_ARGS__)

#endif
