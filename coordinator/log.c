/*
 * log: leveled, line-oriented logging to stderr. Each line is formatted in
 * full and written with one write(2) so lines from the log thread and the
 * event loop never interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static LogLevel min_level = LOG_INFO;
static LogFormat format = LOG_FORMAT_TEXT;
static int log_fd = STDERR_FILENO;
static char *log_path;

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "FATAL"};

void log_set_level(LogLevel level)
{
	min_level = level;
}

void log_set_format(LogFormat f)
{
	format = f;
}

bool log_parse_format(const char *s, LogFormat *out)
{
	if (strcasecmp(s, "text") == 0)
		*out = LOG_FORMAT_TEXT;
	else if (strcasecmp(s, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return false;
	return true;
}

bool log_open_file(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0)
		return errf(err, errlen, "cannot open log_file %s: %s", path, strerror(errno));
	free(log_path);
	log_path = xstrdup(path);
	log_fd = fd;
	return true;
}

bool log_reopen(char *err, size_t errlen)
{
	int fd;

	if (log_path == NULL)
		return true;
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return errf(err, errlen, "cannot reopen log_file %s: %s", log_path, strerror(errno));
	/* dup2 swaps the file under the same descriptor atomically. */
	if (dup3(fd, log_fd, O_CLOEXEC) < 0) {
		close(fd);
		return errf(err, errlen, "cannot reopen log_file %s: %s", log_path, strerror(errno));
	}
	close(fd);
	return true;
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

/* Appends s to line[*n] as the inside of a JSON string. */
static void json_escape(char *line, size_t *n, size_t cap, const char *s)
{
	for (; *s && *n + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			line[(*n)++] = '\\';
			line[(*n)++] = (char)ch;
		} else if (ch < 0x20) {
			*n += (size_t)snprintf(line + *n, cap - *n, "\\u%04x", ch);
		} else {
			line[(*n)++] = (char)ch;
		}
	}
}

static void log_vwrite(LogLevel level, const char *key, const char *value, const char *fmt, va_list ap)
{
	static const char *const json_levels[] = {"debug", "info", "warning", "error", "fatal"};
	char line[8192], msg[4096], stamp[40];
	struct timespec ts;
	struct tm tm;
	size_t n = 0;
	int r;

	if (level < min_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + strlen(stamp), sizeof(stamp) - strlen(stamp), ".%03ldZ", ts.tv_nsec / 1000000);
	r = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (r < 0)
		msg[0] = '\0';
	if (format == LOG_FORMAT_JSON) {
		n = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",", stamp, json_levels[level]);
		if (key != NULL) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, "\"%s\":\"", key);
			json_escape(line, &n, sizeof(line) - 8, value);
			line[n++] = '"';
			line[n++] = ',';
		}
		n += (size_t)snprintf(line + n, sizeof(line) - n, "\"msg\":\"");
		json_escape(line, &n, sizeof(line) - 4, msg);
		line[n++] = '"';
		line[n++] = '}';
	} else {
		r = snprintf(line, sizeof(line), "%s %s %s%s%s%s", stamp, level_names[level], key ? key : "",
		             key ? "=" : "", key ? value : "", key ? " " : "");
		n = r > 0 ? (size_t)r : 0;
		if (n >= sizeof(line))
			n = sizeof(line) - 1;
		r = snprintf(line + n, sizeof(line) - n, "%s", msg);
		if (r > 0)
			n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (!write_all(log_fd, line, n)) {
		/* Nowhere left to report a failing log. */
	}
}

void log_msg(LogLevel level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, NULL, NULL, fmt, ap);
	va_end(ap);
}

void log_txn(LogLevel level, uint64_t txn_id, const char *fmt, ...)
{
	char id[24];
	va_list ap;
	if (level < min_level)
		return; /* before any formatting: DEBUG lines are on the hot path */
	snprintf(id, sizeof(id), "%016llx", (unsigned long long)txn_id);
	va_start(ap, fmt);
	log_vwrite(level, "txn", id, fmt, ap);
	va_end(ap);
}

void log_part(LogLevel level, const char *participant, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, "participant", participant, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(LOG_FATAL, NULL, NULL, fmt, ap);
	va_end(ap);
	abort();
}
