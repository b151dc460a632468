/*
 * util: small helpers every module needs — checked allocation, monotonic
 * and wall clocks in milliseconds/microseconds, bounded string copies and
 * the formatting of error buffers ("helpers report, callers log").
 */
#ifndef TWOPC_UTIL_H
#define TWOPC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WARN_UNUSED       __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define ARRAY_LEN(a)      (sizeof(a) / sizeof((a)[0]))
#define likely(x)         __builtin_expect(!!(x), 1)
#define unlikely(x)       __builtin_expect(!!(x), 0)

/* Allocation failure is treated as fatal: there is no sane way to carry on. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Monotonic clock, for deadlines and latencies. */
int64_t now_mono_us(void);
static inline int64_t now_mono_ms(void)
{
	return now_mono_us() / 1000;
}
/* Wall clock, for records and ages shown to people. */
int64_t now_wall_ms(void);

/* snprintf into err (if non-NULL); returns false so helpers can `return errf(...)`. */
bool errf(char *err, size_t errlen, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Copy at most dstlen-1 bytes and always terminate; returns strlen(src). */
size_t strlcpy_s(char *dst, const char *src, size_t dstlen);

/* Parse a base-10 integer in [min, max]; the whole string must be consumed. */
bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) WARN_UNUSED;

/* Write all of buf to fd, retrying on EINTR and short writes. */
bool write_all(int fd, const void *buf, size_t len) WARN_UNUSED;

/* Decimal text of v into buf (at least 21 bytes); returns its length. */
size_t fmt_i64(char *buf, int64_t v);
/* Copies the strings (a NULL-terminated list) one after the other into
 * buf; false (buf cut, still terminated) if they do not fit. */
bool str_concat(char *buf, size_t len, ...) __attribute__((sentinel));

/* A growing string (always NUL-terminated once anything was added). It may
 * start in a caller's array (SB_IN): no allocation until it outgrows it. */
typedef struct StrBuf {
	char *p;
	size_t len, cap;
	bool borrowed; /* p is the caller's array, not ours to free */
} StrBuf;
#define SB_IN(array) {.p = (array), .cap = sizeof(array), .borrowed = true}
void sb_append(StrBuf *b, const char *s, size_t n);
/* Room for n more bytes (and the NUL): the caller may then write them at
 * b->p + b->len and add n to b->len, terminating it. */
void sb_reserve(StrBuf *b, size_t n);
static inline void sb_puts(StrBuf *b, const char *s)
{
	sb_append(b, s, __builtin_strlen(s));
}
void sb_printf(StrBuf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Hands the text over (the buffer is empty afterwards). */
char *sb_take(StrBuf *b);
void sb_free(StrBuf *b);

#endif
