/*
 * http_int: what http_server.c (connections, sockets, responses) and
 * http_request.c (a request read from a connection's bytes, and what a
 * handler asks of it) share, and what tests/fuzz_http.c drives directly.
 * Everyone else goes through http_server.h.
 */
#ifndef TWOPC_HTTP_INT_H
#define TWOPC_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_server.h"

#define HTTP_MAX_HEADERS 100
#define CHUNK_LINE_MAX   1024 /* a chunk-size line, extensions included */

typedef struct HttpConn HttpConn;

typedef enum BodyMode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED } BodyMode;

typedef enum ChunkState {
	CH_SIZE,    /* expecting a chunk-size line */
	CH_DATA,    /* inside a chunk's data */
	CH_CRLF,    /* expecting the CRLF after a chunk's data */
	CH_TRAILER, /* after the last chunk: trailer lines until an empty one */
} ChunkState;

/* A header field: offsets of its name and value (NUL-terminated) in the head. */
typedef struct HttpHdrRef {
	uint32_t name, value;
} HttpHdrRef;

/*
 * A request. Its input is one allocation, `in`: the head (request line and
 * headers, split in place: "METHOD\0PATH\0..."), then the header offsets,
 * then a Content-Length body; a chunked body, whose size is not known in
 * advance, has its own. http_request_release_input() keeps only
 * "METHOD\0PATH\0" (in `kept` when it fits, as "POST\0/v1/transactions\0"
 * does, else in `in` shrunk) and frees the rest: what stays while a
 * handler works (a transaction, for seconds) is this struct.
 */
struct HttpRequest {
	HttpConn *conn; /* stays valid (closed, if the client went) until http_respond */
	char *in;       /* NULL until the head is read */
	char *body;     /* NULL, into `in` (BODY_LENGTH) or its own (BODY_CHUNKED) */
	char *xhdr;     /* response headers a handler added ("Name: value\r\n"...), or NULL */
	uint32_t xhdr_len;
	uint32_t hdr_off; /* where the header offsets start in `in` */
	uint32_t body_len;
	uint32_t body_cap; /* BODY_LENGTH: the Content-Length; BODY_CHUNKED: bytes allocated */
	uint32_t chunk_left;
	uint32_t trailer_bytes;
	uint32_t scan; /* bytes already searched for the head's end (none found) */
	uint16_t nhdr;
	uint8_t path_off; /* where the path starts in `in`; 0: no request line was read */
	uint8_t minor;    /* HTTP/1.minor */
	uint8_t body_mode, chunk_state;
	bool has_method; /* `in` starts with the method (even if the request line was bad) */
	bool keep_alive;
	bool expect_continue;
	char kept[24]; /* `in` once released, if the method and path fit */
};

typedef struct ParseError {
	int status;
	const char *slug;
	char detail[160];
} ParseError;

typedef enum ReadResult {
	RD_MORE,  /* all the bytes were taken (or none, if a head is incomplete): more are needed */
	RD_HEAD,  /* the head was read (call again for the body) */
	RD_DONE,  /* the request is complete */
	RD_ERROR, /* the request is malformed or too large: answer the error and close */
} ReadResult;

/* http_request.c */
HttpRequest *http_req_new(HttpConn *conn);
void http_req_free(HttpRequest *r);
/* Reads from the N bytes at P, which are writable (a head is split in place
 * before it is copied). *used says how many it took; the caller keeps the
 * rest and presents them again, with whatever arrives next, on the next
 * call (a head is taken whole or not at all). */
ReadResult http_req_read(HttpRequest *r, char *p, size_t n, const HttpServerConfig *cfg, size_t *used,
                         ParseError *e) WARN_UNUSED;
/* The response headers added with http_response_header, or "" (len 0). */
const char *http_req_extra_headers(const HttpRequest *r, size_t *len);
/* Fills e and returns false (for `return perr(...)`). */
bool http_perr(ParseError *e, int status, const char *slug, const char *fmt, const char *arg);

#endif
