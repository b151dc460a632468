/*
 * http_request: an HTTP/1.1 request read from the bytes a connection
 * received (http_server.c owns the connection and feeds it), and what a
 * handler asks of it.
 *
 * Reading needs no socket: http_req_read takes whatever bytes have arrived
 * and says how many it used, so the parser runs on a connection's read
 * buffer, in a test or in the fuzzer alike. The head is parsed in place,
 * in the caller's buffer, and only then copied, once, into an allocation of
 * exactly its size plus its header offsets plus a Content-Length body (see
 * struct HttpRequest in http_int.h).
 */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the request ------------------------------------------------------------ */

HttpRequest *http_req_new(HttpConn *conn)
{
	HttpRequest *r = xcalloc(1, sizeof(*r));

	r->conn = conn;
	r->minor = 1;
	r->keep_alive = true;
	return r;
}

void http_req_free(HttpRequest *r)
{
	if (r == NULL)
		return;
	if (r->body_mode == BODY_CHUNKED)
		free(r->body);
	if (r->in != r->kept)
		free(r->in);
	free(r->xhdr);
	free(r);
}

static const HttpHdrRef *req_headers(const HttpRequest *r)
{
	return (const HttpHdrRef *)(const void *)(r->in + r->hdr_off);
}

const char *http_request_method(const HttpRequest *req)
{
	return req->has_method ? req->in : "";
}

const char *http_request_path(const HttpRequest *req)
{
	return req->path_off ? req->in + req->path_off : "";
}

const char *http_request_header(const HttpRequest *req, const char *name)
{
	const HttpHdrRef *h = req_headers(req);

	/* The first bytes first (| 0x20 folds a letter's case; it may only
	 * let an unequal pair through, for strcasecmp to tell). */
	for (size_t i = 0; i < req->nhdr; i++) {
		const char *n = req->in + h[i].name;
		if ((n[0] | 0x20) == (name[0] | 0x20) && strcasecmp(n, name) == 0)
			return req->in + h[i].value;
	}
	return NULL;
}

const char *http_request_body(const HttpRequest *req, size_t *len)
{
	*len = req->body_len;
	return req->body ? req->body : "";
}

void http_request_release_input(HttpRequest *req)
{
	size_t keep = 0;

	if (req->body_mode == BODY_CHUNKED)
		free(req->body);
	req->body = NULL;
	req->body_len = req->body_cap = 0;
	req->body_mode = BODY_NONE;
	req->nhdr = 0;
	req->hdr_off = 0;
	if (req->in == NULL || req->in == req->kept)
		return;
	/* The method and the path are the first two strings of the head. */
	if (req->path_off)
		keep = req->path_off + strlen(req->in + req->path_off) + 1;
	else if (req->has_method)
		keep = strlen(req->in) + 1;
	if (keep <= sizeof(req->kept)) {
		memcpy(req->kept, req->in, keep);
		free(req->in);
		req->in = keep > 0 ? req->kept : NULL;
		return;
	}
	/* Shrinking: glibc does it in place and gives the rest back. */
	req->in = xrealloc(req->in, keep);
}

void http_response_header(HttpRequest *req, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value), n = req->xhdr_len;

	req->xhdr = xrealloc(req->xhdr, n + nl + vl + 4);
	memcpy(req->xhdr + n, name, nl);
	memcpy(req->xhdr + n + nl, ": ", 2);
	memcpy(req->xhdr + n + nl + 2, value, vl);
	memcpy(req->xhdr + n + nl + 2 + vl, "\r\n", 2);
	req->xhdr_len = (uint32_t)(n + nl + vl + 4);
}

const char *http_req_extra_headers(const HttpRequest *r, size_t *len)
{
	*len = r->xhdr_len;
	return r->xhdr ? r->xhdr : "";
}

/* ---- parsing the head ---------------------------------------------------------- */

bool http_perr(ParseError *e, int status, const char *slug, const char *fmt, const char *arg)
{
	e->status = status;
	e->slug = slug;
	snprintf(e->detail, sizeof(e->detail), fmt, arg ? arg : "");
	return false;
}

/* Byte classes (RFC 9110), so that checking a head costs one lookup per
 * byte. Bytes 0x80-0xFF are in none: not token characters, allowed in
 * header values (obs-text) and in a target. */
enum {
	CH_TOKEN = 1,      /* a token character: ALPHA, DIGIT, !#$%&'*+-.^_`|~ */
	CH_BAD_VALUE = 2,  /* not in a header value: controls but HTAB, and DEL */
	CH_BAD_TARGET = 4, /* not in a request target: controls, space, DEL */
};
/* clang-format off */
static const unsigned char byte_class[256] = {
	6, 6, 6, 6, 6, 6, 6, 6, 6, 4, 6, 6, 6, 6, 6, 6,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
	4, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 6,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

static bool is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!(byte_class[(unsigned char)*s] & CH_TOKEN))
			return false;
	}
	return true;
}

/* Whether a comma-separated header value lists `token` (case-insensitive). */
static bool list_has_token(const char *value, const char *token)
{
	size_t tl = strlen(token);

	while (*value) {
		while (*value == ' ' || *value == '\t' || *value == ',')
			value++;
		size_t n = strcspn(value, ",");
		size_t m = n;
		while (m > 0 && (value[m - 1] == ' ' || value[m - 1] == '\t'))
			m--;
		if (m == tl && strncasecmp(value, token, tl) == 0)
			return true;
		value += n;
	}
	return false;
}

/* The first CRLF in the N bytes at P, or NULL. (memchr for the CR: the
 * bytes of a line are skipped many at a time; glibc's memmem is slower
 * for a needle this short.) */
static char *find_crlf(const char *p, size_t n)
{
	const char *end = p + n;

	while ((p = memchr(p, '\r', (size_t)(end - p))) != NULL) {
		if (end - p >= 2 && p[1] == '\n')
			return (char *)(uintptr_t)p;
		p++;
	}
	return NULL;
}

/* The first CRLF CRLF in the N bytes at P, or NULL. */
static const char *find_head_end(const char *p, size_t n)
{
	const char *end = p + n;

	while ((p = find_crlf(p, (size_t)(end - p))) != NULL) {
		if (end - p >= 4 && p[2] == '\r' && p[3] == '\n')
			return p;
		p += 2;
	}
	return NULL;
}

/* Whether the header name N (its length NL) is NAME (a literal). */
#define NAME_IS(n, nl, name) ((nl) == sizeof(name) - 1 && strcasecmp((n), (name)) == 0)

/* The head being parsed: where it is and the header fields found so far. */
typedef struct HeadParse {
	char *head, *end; /* the head: up to and including its CRLF CRLF */
	HttpHdrRef hdr[HTTP_MAX_HEADERS];
	uint32_t name_len[HTTP_MAX_HEADERS];
	size_t nhdr;
	int64_t content_length; /* -1: none */
} HeadParse;

/* The request line, NUL-terminated at the start of the head. The method and
 * the path are NUL-terminated in place, one after the other. */
static bool parse_request_line(HttpRequest *r, HeadParse *hp, char *line, ParseError *e)
{
	char *sp1 = strchr(line, ' '), *sp2, *target, *version;

	if (sp1 == NULL)
		return http_perr(e, 400, "bad-request", "malformed request line", NULL);
	*sp1 = '\0';
	sp2 = strchr(sp1 + 1, ' ');
	if (sp2 == NULL)
		return http_perr(e, 400, "bad-request", "malformed request line: no HTTP version", NULL);
	*sp2 = '\0';
	r->has_method = true;
	target = sp1 + 1;
	version = sp2 + 1;
	if (!is_token(line) || strlen(line) > 32)
		return http_perr(e, 400, "bad-request", "malformed request line: bad method", NULL);
	if (strncmp(version, "HTTP/", 5) != 0)
		return http_perr(e, 400, "bad-request", "malformed request line: bad HTTP version", NULL);
	if (strcmp(version, "HTTP/1.1") == 0)
		r->minor = 1;
	else if (strcmp(version, "HTTP/1.0") == 0)
		r->minor = 0;
	else if (strlen(version) == 8 && version[5] >= '0' && version[5] <= '9' && version[6] == '.' &&
	         version[7] >= '0' && version[7] <= '9')
		return http_perr(e, 505, "http-version-not-supported", "%s is not supported; use HTTP/1.1", version);
	else
		return http_perr(e, 400, "bad-request", "malformed request line: bad HTTP version", NULL);
	if (target[0] != '/')
		return http_perr(e, 400, "bad-request", "the request target must be an absolute path", NULL);
	for (const unsigned char *p = (const unsigned char *)target; *p; p++) {
		if (byte_class[*p] & CH_BAD_TARGET)
			return http_perr(e, 400, "bad-request", "the request target contains a control character",
			                 NULL);
	}
	/* The path: the target up to '?' (the query is not used). */
	target[strcspn(target, "?#")] = '\0';
	r->path_off = (uint8_t)(target - hp->head);
	r->keep_alive = r->minor == 1;
	return true;
}

/* The CR that ends the header value at v (an LF follows it), or NULL at a
 * control character other than HTAB, a lone CR or LF included, or at DEL.
 * The head ends with CRLF CRLF, so the search ends before hp->end. Eight
 * bytes at a time while none of them is below 0x20 or DEL, with the bit
 * tricks of request_fast.c's skip_plain (bytes from 0x80 up, obs-text,
 * are never flagged). */
static char *value_end(const HeadParse *hp, char *v)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	const unsigned char *p = (const unsigned char *)v, *end = (const unsigned char *)hp->end;

	for (;;) {
		while (end - p >= 8) {
			uint64_t w, del;

			memcpy(&w, p, 8);
			del = w ^ (ones * 0x7f);
			if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs)
				break;
			p += 8;
		}
		/* The flagged word (or the last few bytes), one by one. */
		for (const unsigned char *stop = end - p > 8 ? p + 8 : end; p < stop; p++) {
			if (!(byte_class[*p] & CH_BAD_VALUE))
				continue;
			if (*p == '\r' && p + 1 < end && p[1] == '\n')
				return (char *)(uintptr_t)p;
			return NULL;
		}
		if (p >= end)
			return NULL;
	}
}

/* The header line at *linep, up to its CRLF: the name (token characters)
 * and the value NUL-terminated in place, the value without the blanks
 * around it. *linep moves to the next line. */
static bool parse_header_line(HeadParse *hp, char **linep, ParseError *e)
{
	char *line = *linep, *v, *cr, *end;
	unsigned char *p = (unsigned char *)line;

	if (line[0] == ' ' || line[0] == '\t')
		return http_perr(e, 400, "bad-request", "obsolete header line folding is not accepted", NULL);
	while (byte_class[*p] & CH_TOKEN)
		p++;
	if (*p != ':' || p == (unsigned char *)line) {
		char *eol = find_crlf(line, (size_t)(hp->end - line));
		if (memchr(line, ':', (size_t)(eol - line)) == NULL)
			return http_perr(e, 400, "bad-request", "malformed header line (no colon)", NULL);
		return http_perr(e, 400, "bad-request", "malformed header name", NULL);
	}
	*p = '\0';
	v = (char *)p + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	cr = value_end(hp, v);
	if (cr == NULL)
		return http_perr(e, 400, "bad-request", "header %s contains a control character", line);
	for (end = cr; end > v && (end[-1] == ' ' || end[-1] == '\t'); end--)
		;
	*end = '\0';
	if (hp->nhdr == HTTP_MAX_HEADERS)
		return http_perr(e, 431, "headers-too-large", "more than 100 header fields", NULL);
	hp->hdr[hp->nhdr].name = (uint32_t)(line - hp->head);
	hp->hdr[hp->nhdr].value = (uint32_t)(v - hp->head);
	hp->name_len[hp->nhdr] = (uint32_t)((char *)p - line);
	hp->nhdr++;
	*linep = cr + 2;
	return true;
}

/* Framing and connection semantics from the parsed headers (RFC 9112 §6). */
static bool parse_framing(HttpRequest *r, HeadParse *hp, const HttpServerConfig *cfg, ParseError *e)
{
	const char *te = NULL;
	int hosts = 0;

	for (size_t i = 0; i < hp->nhdr; i++) {
		const char *n = hp->head + hp->hdr[i].name, *v = hp->head + hp->hdr[i].value;
		size_t nl = hp->name_len[i];
		if (NAME_IS(n, nl, "Host")) {
			hosts++;
		} else if (NAME_IS(n, nl, "Content-Length")) {
			const char *d = v;
			int64_t cl = 0;
			if (*v < '0' || *v > '9' || strlen(v) > 18)
				return http_perr(e, 400, "bad-request", "invalid Content-Length", NULL);
			for (; *d >= '0' && *d <= '9'; d++)
				cl = cl * 10 + (*d - '0');
			if (*d != '\0' || (hp->content_length >= 0 && hp->content_length != cl))
				return http_perr(e, 400, "bad-request", "invalid or conflicting Content-Length", NULL);
			hp->content_length = cl;
		} else if (NAME_IS(n, nl, "Transfer-Encoding")) {
			if (te != NULL)
				return http_perr(e, 501, "not-implemented",
				                 "only one Transfer-Encoding (chunked) is supported", NULL);
			te = v;
		} else if (NAME_IS(n, nl, "Connection")) {
			if (list_has_token(v, "close"))
				r->keep_alive = false;
			else if (r->minor == 0 && list_has_token(v, "keep-alive"))
				r->keep_alive = true;
		} else if (NAME_IS(n, nl, "Expect")) {
			if (strcasecmp(v, "100-continue") == 0)
				r->expect_continue = r->minor == 1;
		}
	}
	if (r->minor == 1 && hosts != 1)
		return http_perr(e, 400, "bad-request", hosts ? "more than one Host header" : "missing Host header",
		                 NULL);
	if (te != NULL) {
		/* Both framings at once is how requests get smuggled past proxies. */
		if (hp->content_length >= 0)
			return http_perr(e, 400, "bad-request", "both Content-Length and Transfer-Encoding", NULL);
		if (r->minor == 0)
			return http_perr(e, 400, "bad-request", "Transfer-Encoding in an HTTP/1.0 request", NULL);
		if (strcasecmp(te, "chunked") != 0)
			return http_perr(e, 501, "not-implemented",
			                 "Transfer-Encoding '%s' is not supported (only chunked)", te);
		r->body_mode = BODY_CHUNKED;
		r->chunk_state = CH_SIZE;
		return true;
	}
	if (hp->content_length > cfg->max_body_bytes)
		return http_perr(e, 413, "body-too-large", "the body is larger than max_body_bytes", NULL);
	if (hp->content_length > 0) {
		r->body_mode = BODY_LENGTH;
		r->body_cap = (uint32_t)hp->content_length;
	}
	return true;
}

/* Splits and checks the head: HL bytes, no NUL among them, ending with
 * the first CRLF CRLF. Lines are NUL-terminated in place. */
static bool parse_head(HttpRequest *r, HeadParse *hp, size_t hl, const HttpServerConfig *cfg, ParseError *e)
{
	char *p = hp->head, *eol = find_crlf(p, hl);

	hp->end = hp->head + hl;
	*eol = '\0';
	if (!parse_request_line(r, hp, p, e))
		return false;
	p = eol + 2;
	/* Up to the empty line: its CRLF is the head's last two bytes. */
	while (!(p[0] == '\r' && p[1] == '\n')) {
		if (!parse_header_line(hp, &p, e))
			return false;
	}
	return parse_framing(r, hp, cfg, e);
}

/* Copies the parsed head (and room for a Content-Length body) into the
 * request's own allocation. */
static void keep_head(HttpRequest *r, const HeadParse *hp, size_t hl)
{
	size_t hdr_off = (hl + 3) & ~(size_t)3;
	size_t body_off = hdr_off + hp->nhdr * sizeof(HttpHdrRef);
	size_t size = body_off + (r->body_mode == BODY_LENGTH ? (size_t)r->body_cap + 1 : 0);

	r->in = xmalloc(size);
	memcpy(r->in, hp->head, hl);
	memset(r->in + hl, 0, hdr_off - hl);
	memcpy(r->in + hdr_off, hp->hdr, hp->nhdr * sizeof(HttpHdrRef));
	r->hdr_off = (uint32_t)hdr_off;
	r->nhdr = (uint16_t)hp->nhdr;
	if (r->body_mode == BODY_LENGTH)
		r->body = r->in + body_off;
}

static ReadResult read_head(HttpRequest *r, char *p, size_t n, const HttpServerConfig *cfg, size_t *used, ParseError *e)
{
	/* The first CRLF CRLF, searched from where the last call stopped (a
	 * slowloris client dripping a big head must not cost O(n^2)). */
	size_t from = r->scan > 3 ? r->scan - 3 : 0, hl;
	const char *end = n > from ? find_head_end(p + from, n - from) : NULL;
	HeadParse hp;
	bool ok;

	if (end == NULL) {
		if (n > (size_t)cfg->max_header_bytes)
			return http_perr(e, 431, "headers-too-large",
			                 "the request line and headers exceed max_header_bytes", NULL),
			       RD_ERROR;
		r->scan = (uint32_t)n;
		return RD_MORE;
	}
	hl = (size_t)(end - p) + 4;
	if (hl > (size_t)cfg->max_header_bytes)
		return http_perr(e, 431, "headers-too-large", "the request line and headers exceed max_header_bytes",
		                 NULL),
		       RD_ERROR;
	if (memchr(p, '\0', hl) != NULL)
		return http_perr(e, 400, "bad-request", "NUL byte in the request head", NULL), RD_ERROR;
	hp.head = p;
	hp.nhdr = 0;
	hp.content_length = -1;
	ok = parse_head(r, &hp, hl, cfg, e);
	/* Kept even when it is bad: the error's answer looks at the method
	 * (a HEAD gets no body). */
	keep_head(r, &hp, hl);
	if (!ok)
		return RD_ERROR;
	*used = hl;
	return RD_HEAD;
}

/* ---- reading the body ------------------------------------------------------------ */

static void body_append(HttpRequest *r, const char *p, size_t n)
{
	size_t need = (size_t)r->body_len + n + 1;

	if (need > r->body_cap) {
		size_t cap = 2 * (size_t)r->body_cap;
		if (cap < need)
			cap = need;
		r->body = xrealloc(r->body, cap);
		r->body_cap = (uint32_t)cap;
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += (uint32_t)n;
	r->body[r->body_len] = '\0';
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
		return (ch | 0x20) - 'a' + 10;
	return -1;
}

static ReadResult read_chunked(HttpRequest *r, const char *p, size_t n, const HttpServerConfig *cfg, size_t *used,
                               ParseError *e)
{
	size_t u = 0;

	for (;;) {
		const char *q = p + u, *eol;
		size_t avail = n - u, len, k;

		switch (r->chunk_state) {
		case CH_SIZE:
		case CH_TRAILER:
			eol = find_crlf(q, avail);
			if (eol == NULL) {
				*used = u;
				/* The line is at least avail - 1 bytes long (avail,
				 * unless its CR has come): checked the same whether
				 * it arrives whole or in pieces. */
				if (r->chunk_state == CH_SIZE && avail > CHUNK_LINE_MAX + 1)
					return http_perr(e, 400, "bad-request", "chunk-size line too long", NULL),
					       RD_ERROR;
				if (r->chunk_state == CH_TRAILER &&
				    r->trailer_bytes + avail > (size_t)cfg->max_header_bytes)
					return http_perr(e, 431, "headers-too-large", "trailer fields too large", NULL),
					       RD_ERROR;
				return RD_MORE;
			}
			len = (size_t)(eol - q);
			u += len + 2;
			if (r->chunk_state == CH_TRAILER) {
				if (len == 0) {
					*used = u;
					return RD_DONE;
				}
				r->trailer_bytes += (uint32_t)(len + 2);
				if (r->trailer_bytes > (size_t)cfg->max_header_bytes)
					return http_perr(e, 431, "headers-too-large", "trailer fields too large", NULL),
					       RD_ERROR;
				continue;
			} else {
				/* Hex digits, then the end of the line or an extension. */
				size_t digits = 0;
				uint64_t size = 0;
				char after;
				if (len > CHUNK_LINE_MAX)
					return http_perr(e, 400, "bad-request", "chunk-size line too long", NULL),
					       RD_ERROR;
				while (digits < len && hex_value(q[digits]) >= 0) {
					if (digits < 15)
						size = size * 16 + (uint64_t)hex_value(q[digits]);
					digits++;
				}
				after = digits < len ? q[digits] : '\0';
				if (digits == 0 || digits > 15 ||
				    (after != '\0' && after != ';' && after != ' ' && after != '\t'))
					return http_perr(e, 400, "bad-request", "malformed chunk size", NULL), RD_ERROR;
				if (size == 0) {
					r->chunk_state = CH_TRAILER;
					continue;
				}
				if (r->body_len + size > (uint64_t)cfg->max_body_bytes)
					return http_perr(e, 413, "body-too-large",
					                 "the body is larger than max_body_bytes", NULL),
					       RD_ERROR;
				r->chunk_left = (uint32_t)size;
				r->chunk_state = CH_DATA;
			}
			break;
		case CH_DATA:
			if (avail == 0) {
				*used = u;
				return RD_MORE;
			}
			k = avail < r->chunk_left ? avail : r->chunk_left;
			body_append(r, q, k);
			u += k;
			r->chunk_left -= (uint32_t)k;
			if (r->chunk_left == 0)
				r->chunk_state = CH_CRLF;
			break;
		case CH_CRLF:
			if (avail < 2) {
				*used = u;
				return RD_MORE;
			}
			if (q[0] != '\r' || q[1] != '\n')
				return http_perr(e, 400, "bad-request", "chunk data not followed by CRLF", NULL),
				       RD_ERROR;
			u += 2;
			r->chunk_state = CH_SIZE;
			break;
		}
	}
}

ReadResult http_req_read(HttpRequest *r, char *p, size_t n, const HttpServerConfig *cfg, size_t *used, ParseError *e)
{
	size_t k;

	*used = 0;
	if (r->in == NULL)
		return read_head(r, p, n, cfg, used, e);
	switch ((BodyMode)r->body_mode) {
	case BODY_NONE:
		return RD_DONE;
	case BODY_LENGTH:
		k = r->body_cap - r->body_len;
		if (k > n)
			k = n;
		memcpy(r->body + r->body_len, p, k);
		r->body_len += (uint32_t)k;
		*used = k;
		if (r->body_len < r->body_cap)
			return RD_MORE;
		r->body[r->body_len] = '\0';
		return RD_DONE;
	case BODY_CHUNKED:
		return read_chunked(r, p, n, cfg, used, e);
	}
	return RD_ERROR;
}
