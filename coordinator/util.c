/*
 * util: checked allocation, clocks, bounded strings, integer parsing.
 */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
	fprintf(stderr, "twopc: FATAL: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	size_t total;
	void *p;

	if (n == 0 || size == 0)
		n = size = 1;
	if (__builtin_mul_overflow(n, size, &total))
		oom(SIZE_MAX);
	if (total >= 64 * 1024) {
		/* Large: calloc may hand out fresh zero pages without touching them. */
		p = calloc(1, total);
	} else {
		/* Small (every per-transaction struct): glibc's calloc skips its
		 * per-thread cache, malloc does not. */
		p = malloc(total);
		/* Keeps the compiler from folding malloc + memset back into calloc. */
		__asm__ volatile("" : : "r"(p) : "memory");
		if (p != NULL)
			memset(p, 0, total);
	}
	if (p == NULL)
		oom(total);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

int64_t now_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t now_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

size_t strlcpy_s(char *dst, const char *src, size_t dstlen)
{
	size_t n = strlen(src);
	if (dstlen > 0) {
		size_t c = n < dstlen - 1 ? n : dstlen - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

size_t fmt_i64(char *buf, int64_t v)
{
	char tmp[24];
	size_t n = 0, len = 0;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	if (v >= 0 && v < 10) { /* the common case: participant indexes, row counts */
		buf[0] = (char)('0' + v);
		buf[1] = '\0';
		return 1;
	}
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		buf[len++] = '-';
	while (n > 0)
		buf[len++] = tmp[--n];
	buf[len] = '\0';
	return len;
}

bool str_concat(char *buf, size_t len, ...)
{
	va_list ap;
	const char *s;
	size_t n = 0;
	bool ok = true;

	va_start(ap, len);
	while ((s = va_arg(ap, const char *)) != NULL) {
		size_t l = strlen(s);
		if (n + l >= len) {
			l = n < len ? len - 1 - n : 0;
			ok = false;
		}
		memcpy(buf + n, s, l);
		n += l;
	}
	va_end(ap);
	if (len > 0)
		buf[n] = '\0';
	return ok;
}

void sb_append(StrBuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void sb_reserve(StrBuf *b, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (b->borrowed) {
			char *p = xmalloc(cap);
			memcpy(p, b->p, b->len);
			b->p = p;
			b->borrowed = false;
		} else {
			b->p = xrealloc(b->p, cap);
		}
		b->cap = cap;
	}
}

void sb_printf(StrBuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		sb_append(b, tmp, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb_append(b, big, (size_t)n);
	free(big);
}

char *sb_take(StrBuf *b)
{
	char *p;

	if (b->borrowed) {
		/* Exactly its size: what is kept should not carry slack. */
		p = xmalloc(b->len + 1);
		memcpy(p, b->p, b->len);
		p[b->len] = '\0';
	} else {
		p = b->p ? b->p : xstrdup("");
	}
	memset(b, 0, sizeof(*b));
	return p;
}

void sb_free(StrBuf *b)
{
	if (!b->borrowed)
		free(b->p);
	memset(b, 0, sizeof(*b));
}
