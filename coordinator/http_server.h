/*
 * http_server: twopcd's own HTTP/1.1 server, on non-blocking sockets and
 * one libevent event per connection (no bufferevents).
 *
 * It exists because the daemon must decide how every byte a client sends is
 * treated: each error — malformed request, oversized headers or body, a
 * client too slow to finish its request, too many connections — is answered
 * with application/problem+json, and a slowloris client cannot hold a
 * connection past http_request_timeout_ms however it drips its bytes
 * (evhttp only knows per-read inactivity timeouts and answers errors in
 * HTML). And because it decides what a connection and a request cost while
 * a transaction holds them for seconds: an idle keep-alive connection holds
 * no buffer, a response goes to the kernel straight from the handler's
 * bytes, and a handler that has taken what it needs from a request can give
 * its head and body back (http_request_release_input).
 *
 * Supported: keep-alive and pipelining (requests are answered in order, one
 * at a time per connection), Content-Length and chunked request bodies,
 * Expect: 100-continue. Handlers answer asynchronously: a request stays
 * valid until http_respond(), even if its client has gone.
 */
#ifndef TWOPC_HTTP_SERVER_H
#define TWOPC_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct event_base;
typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

typedef struct HttpServerConfig {
	const char *host;
	int port;
	int64_t max_connections;    /* past it: 503 too-many-connections, then close */
	int64_t max_header_bytes;   /* request line + headers: 431 past it */
	int64_t max_body_bytes;     /* 413 past it */
	int64_t request_timeout_ms; /* first byte to last byte of a request: 408 past it */
	int64_t idle_timeout_ms;    /* a keep-alive connection waiting for its next request */
} HttpServerConfig;

/* Called once per complete request; must lead to exactly one
 * http_respond() (now or later). */
typedef void (*HttpHandler)(HttpRequest *req, void *arg);

/* A protocol error found before a handler runs, answered by the server
 * through this callback so the problem document has one format daemon-wide.
 * The callback must call http_respond(). */
typedef void (*HttpErrorFn)(HttpRequest *req, int status, const char *slug, const char *detail, void *arg);

typedef struct HttpServerStats {
	uint64_t connections_open;
	uint64_t connections_accepted;
	uint64_t connections_rejected; /* past max_connections */
	uint64_t requests;
	uint64_t protocol_errors; /* 400/408/413/431/501/505 sent by the server itself */
	uint64_t timeouts;        /* connections closed by the idle or request timeout */
	uint64_t buffered_bytes;  /* now in connections' input and output buffers */
} HttpServerStats;

/* Binds host:port and starts accepting. */
HttpServer *http_server_new(struct event_base *base, const HttpServerConfig *cfg, HttpHandler handler,
                            HttpErrorFn on_error, void *arg, char *err, size_t errlen);
/* Stops accepting new connections (shutdown); open ones keep working. */
void http_server_stop_accepting(HttpServer *srv);
void http_server_get_stats(const HttpServer *srv, HttpServerStats *out);
/* Closes every connection; requests still being handled stay valid until
 * their http_respond(), which then only frees them. */
void http_server_free(HttpServer *srv);

/* ---- the request ---- */
const char *http_request_method(const HttpRequest *req); /* "GET", "POST", ... */
const char *http_request_path(const HttpRequest *req);   /* the target up to '?' (not decoded) */
/* The first header of that name (case-insensitive), or NULL. */
const char *http_request_header(const HttpRequest *req, const char *name);
/* The body (NUL-terminated for convenience; may contain NULs). */
const char *http_request_body(const HttpRequest *req, size_t *len);
/* The handler has taken what it needs from the request line, the headers
 * and the body: they are freed. Afterwards http_request_method(),
 * http_request_path() and http_request_peer() still answer,
 * http_request_header() says NULL and http_request_body() "" (length 0);
 * the response is unchanged (HEAD, keep-alive and the HTTP version are
 * kept). For a handler that holds its request long (a transaction). */
void http_request_release_input(HttpRequest *req);
/* The peer, "ip:port", for logs, into buf (HTTP_PEER_MAX bytes are
 * enough); returns buf. It answers after the client has gone too. */
#define HTTP_PEER_MAX 64
const char *http_request_peer(const HttpRequest *req, char *buf, size_t len);

/* ---- the response ---- */
/* Adds a response header (copied); before http_respond(). */
void http_response_header(HttpRequest *req, const char *name, const char *value);
/* Sends the response and gives the request back to the server (do not use
 * it afterwards). To a HEAD, and with status 304, only the headers are sent,
 * Content-Length saying LEN. */
void http_respond(HttpRequest *req, int status, const char *content_type, const char *body, size_t len);
const char *http_reason_phrase(int status);

#endif
