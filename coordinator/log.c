/*
 * log: leveled, line-oriented logging to stderr. Each line is formatted in
 * full and written with one write(2) so lines from the log thread and the
 * event loop never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static LogLevel min_level = LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "FATAL"};

void log_set_level(LogLevel level)
{
	min_level = level;
}

bool log_enabled(LogLevel level)
{
	return level >= min_level;
}

bool log_parse_level(const char *s, LogLevel *out)
{
	static const struct {
		const char *name;
		LogLevel level;
	} names[] = {
	    {"debug", LOG_DEBUG},
	    {"info", LOG_INFO},
	    {"warning", LOG_WARNING},
	    {"error", LOG_ERROR},
	};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return true;
		}
	}
	return false;
}

static void log_vwrite(LogLevel level, const char *prefix, const char *fmt, va_list ap)
{
	char line[4096];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (level < min_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s%s", ts.tv_nsec / 1000000, level_names[level],
	             prefix ? prefix : "", prefix ? " " : "");
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (!write_all(STDERR_FILENO, line, n)) {
		/* Nowhere left to report a failing stderr. */
	}
}

void log_msg(LogLevel level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, NULL, fmt, ap);
	va_end(ap);
}

void log_txn(LogLevel level, uint64_t txn_id, const char *fmt, ...)
{
	char prefix[32];
	va_list ap;
	snprintf(prefix, sizeof(prefix), "txn=%016llx", (unsigned long long)txn_id);
	va_start(ap, fmt);
	log_vwrite(level, prefix, fmt, ap);
	va_end(ap);
}

void log_part(LogLevel level, const char *participant, const char *fmt, ...)
{
	char prefix[96];
	va_list ap;
	snprintf(prefix, sizeof(prefix), "participant=%s", participant);
	va_start(ap, fmt);
	log_vwrite(level, prefix, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(LOG_FATAL, NULL, fmt, ap);
	va_end(ap);
	abort();
}
