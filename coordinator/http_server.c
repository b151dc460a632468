/*
 * http_server: a small HTTP/1.1 server (see http_server.h for why).
 *
 * A connection is always in one state, and each state but HANDLING has a
 * deadline kept by one periodic timer: connections of a state sit in a list
 * in the order they entered it, and since every state has one fixed
 * duration, each list is sorted by deadline and the tick only looks at its
 * heads.
 *
 *   IDLE ──first byte──> READING ──request complete──> HANDLING
 *    ^                      │ malformed / too big / 408      │ http_respond
 *    │                      v                                v
 *    └──── written, keep-alive ─────────────────────── WRITING
 *                                                           │ written, close
 *                                                           v
 *                                                        DRAINING (write side
 *                                                        shut, input discarded
 *                                                        until EOF, so the
 *                                                        client reads the reply
 *                                                        before our close)
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "log.h"

#define HTTP_MAX_HEADERS   100
#define HTTP_INLINE_HEADERS 12 /* a request's first headers need no allocation */
#define TICK_MS            100
#define DRAIN_MS           2000
#define MAX_REJECTING      256  /* 503s being written at once; past it, plain close */
#define CHUNK_LINE_MAX     1024 /* a chunk-size line, extensions included */

typedef enum ConnState {
	CONN_IDLE,     /* waiting for a request's first byte */
	CONN_READING,  /* a request is arriving */
	CONN_HANDLING, /* the handler has the request; no deadline here (transactions have their own) */
	CONN_WRITING,  /* a response is being written */
	CONN_DRAINING, /* answered and closing: write side shut, input discarded until EOF */
	CONN_NSTATES,
} ConnState;

typedef enum BodyMode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED } BodyMode;

typedef enum ChunkState {
	CH_SIZE,  /* expecting a chunk-size line */
	CH_DATA,  /* inside a chunk's data */
	CH_CRLF,  /* expecting the CRLF after a chunk's data */
	CH_TRAILER, /* after the last chunk: trailer lines until an empty one */
} ChunkState;

typedef struct HttpConn HttpConn;

typedef struct ConnList {
	HttpConn *head, *tail;
} ConnList;

struct HttpConn {
	HttpServer *srv;
	struct bufferevent *bev;
	ConnState state;
	int64_t deadline_us;
	bool listed;           /* in srv->lists[state] (every connection is, once set up) */
	HttpConn *prev, *next;
	HttpRequest *req;      /* being read, handled or answered */
	bool close_after;      /* close once the current response is written */
	bool peer_eof;         /* the client shut its write side */
	bool rejecting;        /* accepted past max_connections, only to send a 503 */
	char peer[64];
};

typedef struct HttpHeader {
	const char *name, *value;
} HttpHeader;

struct HttpRequest {
	HttpServer *srv;
	HttpConn *conn; /* NULL once the client is gone */
	char *head;     /* the request line and headers, split in place */
	const char *method, *target;
	char *path;
	int minor; /* HTTP/1.minor */
	HttpHeader *hdr; /* hdr_inline until more are needed (at most HTTP_MAX_HEADERS) */
	size_t nhdr, hdr_cap;
	HttpHeader hdr_inline[HTTP_INLINE_HEADERS];
	BodyMode body_mode;
	int64_t content_length;
	ChunkState chunk_state;
	int64_t chunk_left;
	size_t trailer_bytes;
	char *body;
	size_t body_len, body_cap;
	bool keep_alive;
	bool expect_continue;
	struct evbuffer *out_headers; /* NULL until a handler adds a header */
	char peer[64];
};

struct HttpServer {
	struct event_base *base;
	HttpServerConfig cfg;
	HttpHandler handler;
	HttpErrorFn on_error;
	void *arg;
	struct evconnlistener *listener;
	bool accepting;
	bool listener_paused; /* out of descriptors: resumed by the next tick */
	struct event *tick;
	ConnList lists[CONN_NSTATES];
	int64_t duration_us[CONN_NSTATES];
	uint64_t nrejecting;
	HttpServerStats stats;
	time_t date_time;
	char date[64];
};

static void conn_process(HttpConn *c);
static void conn_free(HttpConn *c);

/* ---- lists and states ------------------------------------------------------ */

static void list_remove(HttpConn *c)
{
	ConnList *l;

	if (!c->listed)
		return;
	c->listed = false;
	l = &c->srv->lists[c->state];
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
}

/* The one place a connection changes state; it goes to the tail of the
 * state's list (the HANDLING list has no deadline: the tick skips it). */
static void conn_set_state(HttpConn *c, ConnState s)
{
	HttpServer *srv = c->srv;

	list_remove(c);
	c->state = s;
	c->listed = true;
	c->deadline_us = now_mono_us() + srv->duration_us[s];
	c->prev = srv->lists[s].tail;
	c->next = NULL;
	if (c->prev)
		c->prev->next = c;
	else
		srv->lists[s].head = c;
	srv->lists[s].tail = c;
}

/* ---- requests -------------------------------------------------------------- */

static HttpRequest *req_new(HttpConn *c)
{
	HttpRequest *r = xcalloc(1, sizeof(*r));

	r->srv = c->srv;
	r->conn = c;
	r->minor = 1;
	r->keep_alive = true;
	r->method = "";
	r->target = "";
	r->content_length = -1;
	r->hdr = r->hdr_inline;
	r->hdr_cap = HTTP_INLINE_HEADERS;
	memcpy(r->peer, c->peer, sizeof(r->peer));
	return r;
}

static void req_free(HttpRequest *r)
{
	if (r == NULL)
		return;
	free(r->head);
	free(r->path);
	free(r->body);
	if (r->hdr != r->hdr_inline)
		free(r->hdr);
	if (r->out_headers)
		evbuffer_free(r->out_headers);
	free(r);
}

const char *http_request_method(const HttpRequest *req)
{
	return req->method;
}

const char *http_request_path(const HttpRequest *req)
{
	return req->path ? req->path : "";
}

const char *http_request_header(const HttpRequest *req, const char *name)
{
	for (size_t i = 0; i < req->nhdr; i++) {
		if (strcasecmp(req->hdr[i].name, name) == 0)
			return req->hdr[i].value;
	}
	return NULL;
}

const char *http_request_body(const HttpRequest *req, size_t *len)
{
	*len = req->body_len;
	return req->body ? req->body : "";
}

bool http_request_gone(const HttpRequest *req)
{
	return req->conn == NULL;
}

const char *http_request_peer(const HttpRequest *req)
{
	return req->peer;
}

/* ---- parsing ----------------------------------------------------------------- */

/* RFC 9110 token characters. */
static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!is_tchar((unsigned char)*s))
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

typedef struct ParseError {
	int status;
	const char *slug;
	char detail[160];
} ParseError;

static bool perr(ParseError *e, int status, const char *slug, const char *fmt, const char *arg)
{
	e->status = status;
	e->slug = slug;
	snprintf(e->detail, sizeof(e->detail), fmt, arg ? arg : "");
	return false;
}

static bool parse_request_line(HttpRequest *r, char *line, ParseError *e)
{
	char *sp1 = strchr(line, ' '), *sp2, *version;

	if (sp1 == NULL)
		return perr(e, 400, "bad-request", "malformed request line", NULL);
	*sp1 = '\0';
	sp2 = strchr(sp1 + 1, ' ');
	if (sp2 == NULL)
		return perr(e, 400, "bad-request", "malformed request line: no HTTP version", NULL);
	*sp2 = '\0';
	r->method = line;
	r->target = sp1 + 1;
	version = sp2 + 1;
	if (!is_token(r->method) || strlen(r->method) > 32)
		return perr(e, 400, "bad-request", "malformed request line: bad method", NULL);
	if (strncmp(version, "HTTP/", 5) != 0)
		return perr(e, 400, "bad-request", "malformed request line: bad HTTP version", NULL);
	if (strcmp(version, "HTTP/1.1") == 0)
		r->minor = 1;
	else if (strcmp(version, "HTTP/1.0") == 0)
		r->minor = 0;
	else if (strlen(version) == 8 && version[5] >= '0' && version[5] <= '9' && version[6] == '.' &&
	         version[7] >= '0' && version[7] <= '9')
		return perr(e, 505, "http-version-not-supported", "%s is not supported; use HTTP/1.1", version);
	else
		return perr(e, 400, "bad-request", "malformed request line: bad HTTP version", NULL);
	if (r->target[0] != '/')
		return perr(e, 400, "bad-request", "the request target must be an absolute path", NULL);
	for (const unsigned char *p = (const unsigned char *)r->target; *p; p++) {
		if (*p <= 0x20 || *p == 0x7f)
			return perr(e, 400, "bad-request", "the request target contains a control character", NULL);
	}
	size_t plen = strcspn(r->target, "?#");
	r->path = xmalloc(plen + 1);
	memcpy(r->path, r->target, plen);
	r->path[plen] = '\0';
	r->keep_alive = r->minor == 1;
	return true;
}

static bool parse_header_line(HttpRequest *r, char *line, ParseError *e)
{
	char *colon, *v, *end;

	if (line[0] == ' ' || line[0] == '\t')
		return perr(e, 400, "bad-request", "obsolete header line folding is not accepted", NULL);
	colon = strchr(line, ':');
	if (colon == NULL)
		return perr(e, 400, "bad-request", "malformed header line (no colon)", NULL);
	*colon = '\0';
	if (!is_token(line))
		return perr(e, 400, "bad-request", "malformed header name", NULL);
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return perr(e, 400, "bad-request", "header %s contains a control character", line);
	}
	if (r->nhdr == HTTP_MAX_HEADERS)
		return perr(e, 431, "headers-too-large", "more than 100 header fields", NULL);
	if (r->nhdr == r->hdr_cap) {
		size_t cap = r->hdr_cap * 2 < HTTP_MAX_HEADERS ? r->hdr_cap * 2 : HTTP_MAX_HEADERS;
		HttpHeader *h = xmalloc(cap * sizeof(HttpHeader));
		memcpy(h, r->hdr, r->nhdr * sizeof(HttpHeader));
		if (r->hdr != r->hdr_inline)
			free(r->hdr);
		r->hdr = h;
		r->hdr_cap = cap;
	}
	r->hdr[r->nhdr].name = line;
	r->hdr[r->nhdr].value = v;
	r->nhdr++;
	return true;
}

/* Framing and connection semantics from the parsed headers (RFC 9112 §6). */
static bool parse_framing(HttpRequest *r, const HttpServerConfig *cfg, ParseError *e)
{
	const char *te = NULL;
	int hosts = 0;

	for (size_t i = 0; i < r->nhdr; i++) {
		const char *n = r->hdr[i].name, *v = r->hdr[i].value;
		if (strcasecmp(n, "Host") == 0) {
			hosts++;
		} else if (strcasecmp(n, "Content-Length") == 0) {
			char *endp;
			long long cl;
			if (*v < '0' || *v > '9' || strlen(v) > 18)
				return perr(e, 400, "bad-request", "invalid Content-Length", NULL);
			cl = strtoll(v, &endp, 10);
			if (*endp != '\0' || (r->content_length >= 0 && r->content_length != cl))
				return perr(e, 400, "bad-request", "invalid or conflicting Content-Length", NULL);
			r->content_length = cl;
		} else if (strcasecmp(n, "Transfer-Encoding") == 0) {
			if (te != NULL)
				return perr(e, 501, "not-implemented", "only one Transfer-Encoding (chunked) is supported",
				            NULL);
			te = v;
		} else if (strcasecmp(n, "Connection") == 0) {
			if (list_has_token(v, "close"))
				r->keep_alive = false;
			else if (r->minor == 0 && list_has_token(v, "keep-alive"))
				r->keep_alive = true;
		} else if (strcasecmp(n, "Expect") == 0) {
			if (strcasecmp(v, "100-continue") == 0)
				r->expect_continue = r->minor == 1;
		}
	}
	if (r->minor == 1 && hosts != 1)
		return perr(e, 400, "bad-request", hosts ? "more than one Host header" : "missing Host header", NULL);
	if (te != NULL) {
		/* Both framings at once is how requests get smuggled past proxies. */
		if (r->content_length >= 0)
			return perr(e, 400, "bad-request", "both Content-Length and Transfer-Encoding", NULL);
		if (r->minor == 0)
			return perr(e, 400, "bad-request", "Transfer-Encoding in an HTTP/1.0 request", NULL);
		if (strcasecmp(te, "chunked") != 0)
			return perr(e, 501, "not-implemented", "Transfer-Encoding '%s' is not supported (only chunked)", te);
		r->body_mode = BODY_CHUNKED;
		r->chunk_state = CH_SIZE;
		return true;
	}
	if (r->content_length > cfg->max_body_bytes)
		return perr(e, 413, "body-too-large", "the body is larger than max_body_bytes", NULL);
	if (r->content_length > 0) {
		r->body_mode = BODY_LENGTH;
		r->body = xmalloc((size_t)r->content_length + 1);
		r->body_cap = (size_t)r->content_length + 1;
	}
	return true;
}

/* Splits and checks the header block (NUL-terminated, ends with CRLFCRLF). */
static bool parse_head(HttpRequest *r, const HttpServerConfig *cfg, ParseError *e)
{
	char *p = r->head, *eol;
	bool first = true;

	while ((eol = strstr(p, "\r\n")) != NULL) {
		*eol = '\0';
		if (first) {
			if (!parse_request_line(r, p, e))
				return false;
			first = false;
		} else if (*p == '\0') {
			break; /* the empty line */
		} else if (!parse_header_line(r, p, e)) {
			return false;
		}
		p = eol + 2;
	}
	return parse_framing(r, cfg, e);
}

static void body_append(HttpRequest *r, struct evbuffer *in, size_t n)
{
	if (r->body_len + n + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		while (cap < r->body_len + n + 1)
			cap *= 2;
		r->body = xrealloc(r->body, cap);
		r->body_cap = cap;
	}
	evbuffer_remove(in, r->body + r->body_len, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
}

typedef enum ReadResult { RD_MORE, RD_DONE, RD_ERROR } ReadResult;

static ReadResult read_chunked(HttpRequest *r, struct evbuffer *in, const HttpServerConfig *cfg, ParseError *e)
{
	for (;;) {
		size_t avail = evbuffer_get_length(in), n;
		char *line;

		switch (r->chunk_state) {
		case CH_SIZE:
		case CH_TRAILER:
			line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT);
			if (line == NULL) {
				if (r->chunk_state == CH_SIZE && avail > CHUNK_LINE_MAX)
					return perr(e, 400, "bad-request", "chunk-size line too long", NULL), RD_ERROR;
				if (r->chunk_state == CH_TRAILER && r->trailer_bytes + avail > (size_t)cfg->max_header_bytes)
					return perr(e, 431, "headers-too-large", "trailer fields too large", NULL), RD_ERROR;
				return RD_MORE;
			}
			if (r->chunk_state == CH_TRAILER) {
				free(line);
				if (n == 0)
					return RD_DONE;
				r->trailer_bytes += n + 2;
				if (r->trailer_bytes > (size_t)cfg->max_header_bytes)
					return perr(e, 431, "headers-too-large", "trailer fields too large", NULL), RD_ERROR;
				continue;
			} else {
				size_t digits = strspn(line, "0123456789abcdefABCDEF");
				char after = line[digits];
				unsigned long long size = digits > 0 && digits <= 15 ? strtoull(line, NULL, 16) : 0;
				free(line);
				if (digits == 0 || digits > 15 || (after != '\0' && after != ';' && after != ' ' && after != '\t'))
					return perr(e, 400, "bad-request", "malformed chunk size", NULL), RD_ERROR;
				if (size == 0) {
					r->chunk_state = CH_TRAILER;
					continue;
				}
				if (r->body_len + size > (unsigned long long)cfg->max_body_bytes)
					return perr(e, 413, "body-too-large", "the body is larger than max_body_bytes", NULL),
					       RD_ERROR;
				r->chunk_left = (int64_t)size;
				r->chunk_state = CH_DATA;
			}
			break;
		case CH_DATA:
			if (avail == 0)
				return RD_MORE;
			n = avail < (size_t)r->chunk_left ? avail : (size_t)r->chunk_left;
			body_append(r, in, n);
			r->chunk_left -= (int64_t)n;
			if (r->chunk_left == 0)
				r->chunk_state = CH_CRLF;
			break;
		case CH_CRLF: {
			unsigned char crlf[2];
			if (avail < 2)
				return RD_MORE;
			evbuffer_remove(in, crlf, 2);
			if (crlf[0] != '\r' || crlf[1] != '\n')
				return perr(e, 400, "bad-request", "chunk data not followed by CRLF", NULL), RD_ERROR;
			r->chunk_state = CH_SIZE;
			break;
		}
		}
	}
}

/* ---- responses ------------------------------------------------------------------ */

const char *http_reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 422: return "Unprocessable Content";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

static const char *http_date(HttpServer *srv)
{
	time_t now = time(NULL);

	if (now != srv->date_time) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(srv->date, sizeof(srv->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		srv->date_time = now;
	}
	return srv->date;
}

void http_response_header(HttpRequest *req, const char *name, const char *value)
{
	if (req->out_headers == NULL && (req->out_headers = evbuffer_new()) == NULL)
		log_fatal("libevent: cannot allocate a buffer");
	evbuffer_add_printf(req->out_headers, "%s: %s\r\n", name, value);
}

void http_respond(HttpRequest *req, int status, const char *content_type, const char *body, size_t len)
{
	HttpConn *c = req->conn;
	struct evbuffer *out;
	bool closing;

	if (c == NULL) { /* the client went away meanwhile */
		req_free(req);
		return;
	}
	out = bufferevent_get_output(c->bev);
	closing = c->close_after || !req->keep_alive || c->peer_eof || c->rejecting;
	{
		/* The status line and headers without printf: every response. */
		char head[512], num[24];
		size_t n;
		fmt_i64(num, status);
		str_concat(head, sizeof(head), "HTTP/1.1 ", num, " ", http_reason_phrase(status), "\r\nDate: ",
		           http_date(c->srv), "\r\nContent-Type: ", content_type, "\r\nContent-Length: ", (char *)NULL);
		n = strlen(head);
		n += fmt_i64(head + n, (int64_t)len);
		evbuffer_add(out, head, n);
		if (closing)
			evbuffer_add(out, "\r\nConnection: close\r\n", sizeof("\r\nConnection: close\r\n") - 1);
		else if (req->minor == 0)
			evbuffer_add(out, "\r\nConnection: keep-alive\r\n", sizeof("\r\nConnection: keep-alive\r\n") - 1);
		else
			evbuffer_add(out, "\r\n", 2);
	}
	if (req->out_headers)
		evbuffer_add_buffer(out, req->out_headers);
	evbuffer_add(out, "\r\n", 2);
	/* A HEAD and a 304 carry no body; their Content-Length is that of the
	 * body a GET or a 200 would carry (RFC 9110, 8.6). */
	if (strcmp(req->method, "HEAD") != 0 && status != 304)
		evbuffer_add(out, body, len);
	c->close_after = closing;
	c->req = NULL;
	req_free(req);
	conn_set_state(c, CONN_WRITING);
	bufferevent_enable(c->bev, EV_WRITE);
}

/* Answers a protocol error found while reading; the connection closes after. */
static void protocol_error(HttpConn *c, const ParseError *e)
{
	HttpServer *srv = c->srv;

	if (c->req == NULL)
		c->req = req_new(c);
	srv->stats.protocol_errors++;
	c->close_after = true;
	conn_set_state(c, CONN_HANDLING);
	log_debug("http %s: %d %s: %s", c->peer, e->status, e->slug, e->detail);
	srv->on_error(c->req, e->status, e->slug, e->detail, srv->arg);
}

/* ---- connection I/O ---------------------------------------------------------------- */

static void conn_free(HttpConn *c)
{
	HttpServer *srv = c->srv;

	list_remove(c);
	if (c->req != NULL) {
		if (c->state == CONN_HANDLING)
			c->req->conn = NULL; /* the handler still holds it; http_respond frees it */
		else
			req_free(c->req);
	}
	bufferevent_free(c->bev);
	if (c->rejecting)
		srv->nrejecting--;
	else
		srv->stats.connections_open--;
	free(c);
}

/* Starts reading a request, or finishes one that is arriving. */
static void conn_read_request(HttpConn *c)
{
	HttpServer *srv = c->srv;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	HttpRequest *r;
	ParseError e;

	if (c->state == CONN_IDLE) {
		/* RFC 9112 §2.2: ignore empty lines before a request line. */
		unsigned char two[2];
		while (evbuffer_copyout(in, two, 2) == 2 && two[0] == '\r' && two[1] == '\n')
			evbuffer_drain(in, 2);
		if (evbuffer_get_length(in) == 0)
			return;
		conn_set_state(c, CONN_READING);
		c->req = req_new(c);
	}
	r = c->req;
	if (r->head == NULL) {
		struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		size_t avail = evbuffer_get_length(in);
		if (end.pos < 0) {
			if (avail > (size_t)srv->cfg.max_header_bytes) {
				perr(&e, 431, "headers-too-large", "the request line and headers exceed max_header_bytes", NULL);
				protocol_error(c, &e);
			}
			return;
		}
		size_t hl = (size_t)end.pos + 4;
		if (hl > (size_t)srv->cfg.max_header_bytes) {
			perr(&e, 431, "headers-too-large", "the request line and headers exceed max_header_bytes", NULL);
			protocol_error(c, &e);
			return;
		}
		r->head = xmalloc(hl + 1);
		evbuffer_remove(in, r->head, hl);
		r->head[hl] = '\0';
		if (memchr(r->head, '\0', hl) != NULL) {
			perr(&e, 400, "bad-request", "NUL byte in the request head", NULL);
			protocol_error(c, &e);
			return;
		}
		if (!parse_head(r, &srv->cfg, &e)) {
			protocol_error(c, &e);
			return;
		}
		if (r->expect_continue && r->body_mode != BODY_NONE && evbuffer_get_length(in) == 0)
			evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	if (r->body_mode == BODY_LENGTH) {
		if (evbuffer_get_length(in) < (size_t)r->content_length)
			return;
		evbuffer_remove(in, r->body, (size_t)r->content_length);
		r->body_len = (size_t)r->content_length;
		r->body[r->body_len] = '\0';
	} else if (r->body_mode == BODY_CHUNKED) {
		ReadResult rr = read_chunked(r, in, &srv->cfg, &e);
		if (rr == RD_MORE)
			return;
		if (rr == RD_ERROR) {
			protocol_error(c, &e);
			return;
		}
	}
	conn_set_state(c, CONN_HANDLING);
	srv->stats.requests++;
	srv->handler(r, srv->arg);
}

static void conn_process(HttpConn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	switch (c->state) {
	case CONN_IDLE:
	case CONN_READING:
		conn_read_request(c);
		break;
	case CONN_HANDLING:
	case CONN_WRITING:
		/* A pipelined request waits its turn; a client that keeps
		 * sending meanwhile is not read until we are ready. */
		if (evbuffer_get_length(in) > (size_t)(c->srv->cfg.max_header_bytes + c->srv->cfg.max_body_bytes))
			bufferevent_disable(c->bev, EV_READ);
		break;
	case CONN_DRAINING:
		evbuffer_drain(in, evbuffer_get_length(in));
		break;
	case CONN_NSTATES:
		break;
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	HttpConn *c = arg;

	if (c->state != CONN_WRITING || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (c->close_after) {
		if (c->peer_eof) {
			conn_free(c);
			return;
		}
		/* Close gracefully: shut our side and read until the client closes
		 * too, so unread request bytes do not turn our close into a reset
		 * that destroys the response before the client reads it. */
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		conn_set_state(c, CONN_DRAINING);
		bufferevent_enable(bev, EV_READ);
		conn_process(c);
		return;
	}
	conn_set_state(c, CONN_IDLE);
	bufferevent_enable(bev, EV_READ);
	conn_process(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	HttpConn *c = arg;

	(void)bev;
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    (c->state == CONN_HANDLING || c->state == CONN_WRITING)) {
		/* A half-closed client may still read the answer. */
		c->peer_eof = true;
		c->close_after = true;
		return;
	}
	conn_free(c);
}

static HttpConn *conn_new(HttpServer *srv, evutil_socket_t fd, const struct sockaddr *sa)
{
	HttpConn *c = xcalloc(1, sizeof(*c));
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0, one = 1;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->srv = srv;
	c->state = CONN_IDLE; /* in no list until conn_set_state */
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		evutil_closesocket(fd);
		free(c);
		return NULL;
	}
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	return c;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	HttpServer *srv = arg;
	HttpConn *c;

	(void)l;
	(void)salen;
	if ((int64_t)srv->stats.connections_open >= srv->cfg.max_connections) {
		srv->stats.connections_rejected++;
		if (srv->nrejecting >= MAX_REJECTING) {
			evutil_closesocket(fd);
			return;
		}
		if ((c = conn_new(srv, fd, sa)) == NULL)
			return;
		c->rejecting = true;
		srv->nrejecting++;
		c->req = req_new(c);
		conn_set_state(c, CONN_HANDLING);
		bufferevent_enable(c->bev, EV_READ);
		http_response_header(c->req, "Retry-After", "1");
		srv->on_error(c->req, 503, "too-many-connections", "max_connections connections are open; retry shortly",
		              srv->arg);
		return;
	}
	if ((c = conn_new(srv, fd, sa)) == NULL)
		return;
	srv->stats.connections_open++;
	srv->stats.connections_accepted++;
	conn_set_state(c, CONN_IDLE);
	bufferevent_enable(c->bev, EV_READ);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	HttpServer *srv = arg;
	int e = EVUTIL_SOCKET_ERROR();

	/* Out of descriptors: the pending connection stays in the backlog and
	 * would wake us again at once. Pause until the next tick. */
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		log_warning("http: cannot accept: %s; pausing accepts for %d ms", evutil_socket_error_to_string(e),
		            TICK_MS);
		evconnlistener_disable(l);
		srv->listener_paused = true;
	}
}

/* ---- deadlines ------------------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	HttpServer *srv = arg;
	int64_t now = now_mono_us();
	HttpConn *c;
	ParseError e;

	(void)fd;
	(void)what;
	if (srv->listener_paused && srv->accepting) {
		srv->listener_paused = false;
		evconnlistener_enable(srv->listener);
	}
	while ((c = srv->lists[CONN_IDLE].head) != NULL && c->deadline_us <= now) {
		srv->stats.timeouts++;
		conn_free(c);
	}
	while ((c = srv->lists[CONN_READING].head) != NULL && c->deadline_us <= now) {
		srv->stats.timeouts++;
		log_debug("http %s: request not complete within %lld ms", c->peer,
		          (long long)srv->cfg.request_timeout_ms);
		perr(&e, 408, "request-timeout", "the request did not arrive whole within http_request_timeout_ms", NULL);
		protocol_error(c, &e);
	}
	while ((c = srv->lists[CONN_WRITING].head) != NULL && c->deadline_us <= now) {
		srv->stats.timeouts++;
		conn_free(c);
	}
	while ((c = srv->lists[CONN_DRAINING].head) != NULL && c->deadline_us <= now)
		conn_free(c);
}

/* ---- the server ---------------------------------------------------------------------------- */

HttpServer *http_server_new(struct event_base *base, const HttpServerConfig *cfg, HttpHandler handler,
                            HttpErrorFn on_error, void *arg, char *err, size_t errlen)
{
	HttpServer *srv;
	struct evutil_addrinfo hints, *ai = NULL;
	char port[16];
	int rc;
	struct timeval tv = {0, TICK_MS * 1000};

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", cfg->port);
	rc = evutil_getaddrinfo(cfg->host, port, &hints, &ai);
	if (rc != 0) {
		errf(err, errlen, "cannot resolve listen address %s: %s", cfg->host, evutil_gai_strerror(rc));
		return NULL;
	}
	srv = xcalloc(1, sizeof(*srv));
	srv->base = base;
	srv->cfg = *cfg;
	srv->handler = handler;
	srv->on_error = on_error;
	srv->arg = arg;
	srv->duration_us[CONN_IDLE] = cfg->idle_timeout_ms * 1000;
	srv->duration_us[CONN_READING] = cfg->request_timeout_ms * 1000;
	srv->duration_us[CONN_WRITING] = cfg->request_timeout_ms * 1000;
	srv->duration_us[CONN_DRAINING] = DRAIN_MS * 1000;
	srv->listener = evconnlistener_new_bind(base, on_accept, srv,
	                                        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	                                        1024, ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (srv->listener == NULL) {
		errf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
		     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		free(srv);
		return NULL;
	}
	evconnlistener_set_error_cb(srv->listener, on_accept_error);
	srv->accepting = true;
	srv->tick = event_new(base, -1, EV_PERSIST, on_tick, srv);
	event_add(srv->tick, &tv);
	return srv;
}

void http_server_stop_accepting(HttpServer *srv)
{
	srv->accepting = false;
	evconnlistener_disable(srv->listener);
}

void http_server_get_stats(const HttpServer *srv, HttpServerStats *out)
{
	*out = srv->stats;
}

void http_server_free(HttpServer *srv)
{
	if (srv == NULL)
		return;
	evconnlistener_free(srv->listener);
	event_free(srv->tick);
	for (int s = 0; s < CONN_NSTATES; s++) {
		while (srv->lists[s].head != NULL)
			conn_free(srv->lists[s].head);
	}
	/* Requests of HANDLING connections were detached above: their
	 * http_respond() only frees them. */
	free(srv);
}
