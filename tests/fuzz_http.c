/*
 * fuzz_http: libFuzzer harness for the HTTP request parser, the code that
 * reads whatever any client sends.
 *
 * The input is fed, as the server would receive it, to the same static
 * functions http_server.c uses (the file is included, so the harness drives
 * the real code, not a copy): find the end of the head, parse the request
 * line, headers and framing, then read a Content-Length or chunked body
 * from the rest. The Idempotency-Key parser gets every value of that header.
 * Invariants are checked on every accepted request; a parse error must
 * carry a status and a known problem slug.
 */
#include "../coordinator/http_server.c"

#include "../coordinator/idempotency.h"

#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "fuzz_http: invariant failed: %s (line %d)\n", #c, __LINE__); \
			abort();                                                   \
		}                                                                  \
	} while (0)

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const HttpServerConfig cfg = {.max_header_bytes = 4096, .max_body_bytes = 8192};
	HttpServer srv = {.cfg = cfg};
	HttpConn conn = {.srv = &srv};
	struct evbuffer *in = evbuffer_new();
	struct evbuffer_ptr end;
	HttpRequest *r;
	ParseError e = {0};
	size_t hl;

	log_set_level(LOG_ERROR);
	evbuffer_add(in, data, size);
	r = req_new(&conn);
	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos < 0 || (size_t)end.pos + 4 > (size_t)cfg.max_header_bytes)
		goto done;
	hl = (size_t)end.pos + 4;
	r->head = xmalloc(hl + 1);
	evbuffer_remove(in, r->head, hl);
	r->head[hl] = '\0';
	if (memchr(r->head, '\0', hl) != NULL)
		goto done;
	if (!parse_head(r, &cfg, &e)) {
		check_error(&e);
		goto done;
	}
	/* An accepted head. */
	CHECK(r->path != NULL && r->path[0] == '/');
	CHECK(strchr(r->path, '?') == NULL);
	CHECK(is_token(r->method));
	CHECK(r->minor == 0 || r->minor == 1);
	CHECK(r->nhdr <= HTTP_MAX_HEADERS);
	for (size_t i = 0; i < r->nhdr; i++) {
		CHECK(is_token(r->hdr[i].name));
		for (const unsigned char *p = (const unsigned char *)r->hdr[i].value; *p; p++)
			CHECK(*p >= 0x20 || *p == '\t');
		if (strcasecmp(r->hdr[i].name, "Idempotency-Key") == 0) {
			char key[IDEM_KEY_MAX + 1], why[160];
			if (idem_parse_key(r->hdr[i].value, key, sizeof(key), why, sizeof(why))) {
				CHECK(strlen(key) >= 1 && strlen(key) <= IDEM_KEY_MAX);
				for (const char *k = key; *k; k++)
					CHECK(*k >= 0x20 && *k <= 0x7e);
			}
		}
	}
	if (r->body_mode == BODY_LENGTH) {
		CHECK(r->content_length > 0 && r->content_length <= cfg.max_body_bytes);
		if (evbuffer_get_length(in) >= (size_t)r->content_length) {
			evbuffer_remove(in, r->body, (size_t)r->content_length);
			r->body_len = (size_t)r->content_length;
			r->body[r->body_len] = '\0';
		}
	} else if (r->body_mode == BODY_CHUNKED) {
		ReadResult rr = read_chunked(r, in, &cfg, &e);
		if (rr == RD_ERROR)
			check_error(&e);
		CHECK(r->body_len <= (size_t)cfg.max_body_bytes);
		if (r->body != NULL)
			CHECK(r->body[r->body_len] == '\0');
	}
done:
	req_free(r);
	evbuffer_free(in);
	return 0;
}
