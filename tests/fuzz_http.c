/*
 * fuzz_http: libFuzzer harness for the HTTP request reader, the code that
 * reads whatever any client sends.
 *
 * The input is fed to http_req_read (coordinator/http_request.c, through
 * http_int.h) the way a connection feeds it: the bytes left unused are
 * presented again with the ones that arrive next. Twice: all at once, and
 * in two pieces (cut where the input's length says). Both must end the
 * same way (the same error status and kind, or the same request: method,
 * path, headers, body), so the incremental reading a slow or dripping
 * client gets is the reading everybody gets. The Idempotency-Key parser
 * gets every value of that header. Invariants are checked on every
 * accepted request, then after http_request_release_input; a parse error
 * must carry a status and a known problem slug.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../coordinator/http_int.h"
#include "../coordinator/idempotency.h"
#include "../coordinator/log.h"

#define CHECK(c)                                                                                                       \
	do {                                                                                                           \
		if (!(c)) {                                                                                            \
			fprintf(stderr, "fuzz_http: invariant failed: %s (line %d)\n", #c, __LINE__);                  \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static const HttpServerConfig cfg = {.max_header_bytes = 4096, .max_body_bytes = 8192};

static void check_error(const ParseError *e)
{
	static const char *const slugs[] = {"bad-request", "headers-too-large", "body-too-large", "not-implemented",
	                                    "http-version-not-supported"};
	bool known = false;

	for (size_t i = 0; i < ARRAY_LEN(slugs); i++)
		known = known || strcmp(e->slug, slugs[i]) == 0;
	CHECK(known);
	CHECK(e->status >= 400 && e->status <= 505);
	CHECK(strlen(e->detail) < sizeof(e->detail));
}

/* Reads one request from data, the first `cut` bytes first; returns how it
 * ended (RD_MORE: the input ran out first) with *used the bytes taken. */
static ReadResult read_one(HttpRequest *r, const uint8_t *data, size_t size, size_t cut, size_t *used, ParseError *e)
{
	char *buf = malloc(size ? size : 1);
	size_t off = 0, k;
	ReadResult rr = RD_MORE;

	CHECK(buf != NULL);
	memcpy(buf, data, size);
	for (int piece = 0; piece < 2; piece++) {
		size_t end = piece == 0 ? cut : size;
		do {
			rr = http_req_read(r, buf + off, end - off, &cfg, &k, e);
			CHECK(k <= end - off);
			off += k;
		} while (rr == RD_HEAD);
		if (rr != RD_MORE)
			break;
	}
	*used = off;
	free(buf);
	return rr;
}

static void check_request(const HttpRequest *r)
{
	const char *path = http_request_path(r);
	size_t blen;
	const char *body = http_request_body(r, &blen);

	CHECK(http_request_method(r)[0] != '\0');
	CHECK(path[0] == '/');
	CHECK(strchr(path, '?') == NULL);
	CHECK(r->minor == 0 || r->minor == 1);
	CHECK(r->nhdr <= HTTP_MAX_HEADERS);
	CHECK(body[blen] == '\0');
	CHECK(blen <= (size_t)cfg.max_body_bytes);
	if (r->body_mode == BODY_LENGTH)
		CHECK(blen == r->body_cap && blen > 0);
	for (size_t i = 0; i < r->nhdr; i++) {
		const HttpHdrRef *h = (const HttpHdrRef *)(const void *)(r->in + r->hdr_off) + i;
		const char *name = r->in + h->name, *value = r->in + h->value;
		CHECK(name[0] != '\0');
		CHECK(http_request_header(r, name) != NULL);
		for (const unsigned char *p = (const unsigned char *)value; *p; p++)
			CHECK(*p >= 0x20 || *p == '\t');
		if (strcasecmp(name, "Idempotency-Key") == 0) {
			char key[IDEM_KEY_MAX + 1], why[160];
			if (idem_parse_key(value, key, sizeof(key), why, sizeof(why))) {
				CHECK(strlen(key) >= 1 && strlen(key) <= IDEM_KEY_MAX);
				for (const char *k = key; *k; k++)
					CHECK(*k >= 0x20 && *k <= 0x7e);
			}
		}
	}
}

/* The two readings found the same request. */
static void check_same(const HttpRequest *a, const HttpRequest *b)
{
	size_t la, lb;
	const char *ba = http_request_body(a, &la), *bb = http_request_body(b, &lb);

	CHECK(strcmp(http_request_method(a), http_request_method(b)) == 0);
	CHECK(strcmp(http_request_path(a), http_request_path(b)) == 0);
	CHECK(a->nhdr == b->nhdr && a->hdr_off == b->hdr_off);
	CHECK(memcmp(a->in, b->in, a->hdr_off) == 0);
	CHECK(a->minor == b->minor && a->keep_alive == b->keep_alive && a->expect_continue == b->expect_continue);
	CHECK(la == lb && memcmp(ba, bb, la) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	HttpRequest *whole, *split;
	ParseError e1 = {0}, e2 = {0};
	ReadResult r1, r2;
	size_t u1, u2, cut = size ? (size * 7919) % (size + 1) : 0;

	log_set_level(LOG_ERROR);
	whole = http_req_new(NULL);
	split = http_req_new(NULL);
	r1 = read_one(whole, data, size, size, &u1, &e1);
	r2 = read_one(split, data, size, cut, &u2, &e2);
	CHECK(r1 == r2);
	if (r1 == RD_ERROR) {
		check_error(&e1);
		check_error(&e2);
		CHECK(e1.status == e2.status && strcmp(e1.slug, e2.slug) == 0);
	} else if (r1 == RD_DONE) {
		CHECK(u1 == u2);
		check_request(whole);
		check_same(whole, split);
		/* What a handler keeps once it has taken the input. */
		{
			char method[40], path[4096];
			size_t blen;
			snprintf(method, sizeof(method), "%s", http_request_method(whole));
			snprintf(path, sizeof(path), "%s", http_request_path(whole));
			http_request_release_input(whole);
			CHECK(strcmp(method, http_request_method(whole)) == 0);
			CHECK(strcmp(path, http_request_path(whole)) == 0);
			CHECK(http_request_header(whole, "Host") == NULL);
			CHECK(strcmp(http_request_body(whole, &blen), "") == 0 && blen == 0);
		}
	}
	http_response_header(split, "Retry-After", "1");
	http_req_free(whole);
	http_req_free(split);
	return 0;
}
