/*
 * http_server: a small HTTP/1.1 server (see http_server.h for why): the
 * connections, their sockets, the responses and the deadlines. Reading a
 * request out of the bytes received is http_request.c's.
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
 *    └──── written, keep-alive ─────────────────────── WRITING (only while
 *                                                           │ the kernel has not
 *                                                           │ taken it all)
 *                                                           │ written, close
 *                                                           v
 *                                                        DRAINING (write side
 *                                                        shut, input discarded
 *                                                        until EOF, so the
 *                                                        client reads the reply
 *                                                        before our close)
 *
 * I/O is plain non-blocking sockets and one struct event per connection,
 * inside it, waiting for what the connection needs now: readable (unless
 * the client has shut its side or is sending faster than we answer),
 * writable (only while a response the kernel did not take whole waits).
 * Memory is held only while there is something to hold: bytes are read
 * into a buffer on the stack and parsed there; only what is left over (a
 * request still arriving, pipelined requests waiting their turn) is copied
 * to the connection's input buffer, freed once empty. A response goes out
 * with one sendmsg() from where it lies; only what the kernel does not take
 * is copied to an output buffer. An idle keep-alive connection is the
 * HttpConn alone.
 */
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "log.h"

#define TICK_MS       100
#define DRAIN_MS      2000
#define MAX_REJECTING 256   /* 503s being written at once; past it, plain close */
#define READ_CHUNK    16384 /* bytes read at once, into a buffer on the stack */

typedef enum ConnState {
	CONN_IDLE,     /* waiting for a request's first byte */
	CONN_READING,  /* a request is arriving */
	CONN_HANDLING, /* the handler has the request; no deadline here (transactions have their own) */
	CONN_WRITING,  /* a response the kernel did not take whole is being written */
	CONN_DRAINING, /* answered and closing: write side shut, input discarded until EOF */
	CONN_NSTATES,
} ConnState;

typedef struct ConnList {
	HttpConn *head, *tail;
} ConnList;

struct HttpConn {
	HttpServer *srv;
	struct event ev; /* the socket; waits for ev_flags */
	HttpConn *prev, *next;
	int64_t deadline_us;
	HttpRequest *req; /* being read, handled or answered */
	char *in;         /* received, not yet used: NULL when nothing is */
	char *out;        /* answered, not yet taken by the kernel: NULL when nothing is */
	uint32_t in_len, in_cap;
	uint32_t out_off, out_len;
	int fd;
	short ev_flags; /* EV_READ and/or EV_WRITE: what ev is added for (0: not added) */
	uint8_t state;  /* ConnState */
	uint8_t family; /* the peer: AF_INET or AF_INET6 (or 0: unknown) */
	uint16_t port;
	uint8_t addr[16];
	/* Flags, as bits: HttpConn is what an idle connection costs. */
	bool listed : 1;      /* in srv->lists[state] (every open connection is, once set up) */
	bool close_after : 1; /* close once the current response is written */
	bool peer_eof : 1;    /* the client shut its write side */
	bool rejecting : 1;   /* accepted past max_connections, only to send a 503 */
	bool read_paused : 1; /* a pipelining client is too far ahead: not read until we catch up */
	bool busy : 1;        /* conn_on_readable is running a handler: it closes c if dead, not others */
	bool dead : 1;        /* to be closed as soon as conn_on_readable gets back */
	bool kick : 1;        /* ev was made active to go on with pipelined requests in `in` */
	bool closed : 1;      /* the socket is closed; kept for the handler that has req */
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
	/* The last response head built, up to Content-Length's value
	 * (response_head()): most responses repeat it. */
	char head[512];
	size_t head_len;
	int head_status; /* 0: none yet */
	char head_type[128];
	time_t head_time;
};

static void on_io(evutil_socket_t fd, short what, void *arg);
static void conn_close(HttpConn *c);

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
	c->state = (uint8_t)s;
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

/* ---- the peer -------------------------------------------------------------- */

static void conn_set_peer(HttpConn *c, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		c->family = AF_INET;
		memcpy(c->addr, &in->sin_addr, sizeof(in->sin_addr));
		c->port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		c->family = AF_INET6;
		memcpy(c->addr, &in6->sin6_addr, sizeof(in6->sin6_addr));
		c->port = ntohs(in6->sin6_port);
	}
}

/* "ip:port" into buf (HTTP_PEER_MAX bytes suffice); returns buf. */
static const char *conn_peer(const HttpConn *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (c->family == AF_INET || c->family == AF_INET6)
		inet_ntop(c->family, c->addr, host, sizeof(host));
	snprintf(buf, len, "%s:%u", host, (unsigned)c->port);
	return buf;
}

const char *http_request_peer(const HttpRequest *req, char *buf, size_t len)
{
	return conn_peer(req->conn, buf, len);
}

/* ---- buffers and events ------------------------------------------------------ */

static void in_free(HttpConn *c)
{
	c->srv->stats.buffered_bytes -= c->in_cap;
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
}

/* Appends to the input buffer (allocated on demand). Its size is bounded by
 * the callers: a head past max_header_bytes is refused, a body is taken as
 * it comes, and reading pauses past max_header_bytes + max_body_bytes. */
static void in_append(HttpConn *c, const char *p, size_t n)
{
	size_t need = (size_t)c->in_len + n;

	if (need > c->in_cap) {
		size_t cap = 2 * (size_t)c->in_cap;
		if (cap < need)
			cap = need;
		c->in = xrealloc(c->in, cap);
		c->srv->stats.buffered_bytes += cap - c->in_cap;
		c->in_cap = (uint32_t)cap;
	}
	memcpy(c->in + c->in_len, p, n);
	c->in_len = (uint32_t)need;
}

static void out_free(HttpConn *c)
{
	c->srv->stats.buffered_bytes -= c->out_len;
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = 0;
}

/* Adds ev for what c needs now: reading unless the client has shut its
 * side or is paused, writing while output waits. */
static void conn_update_events(HttpConn *c)
{
	short want = 0;

	if (!c->peer_eof && !c->read_paused)
		want |= EV_READ;
	if (c->out != NULL)
		want |= EV_WRITE;
	if (want == c->ev_flags)
		return;
	if (c->ev_flags != 0)
		event_del(&c->ev);
	c->ev_flags = want;
	if (want == 0)
		return;
	event_assign(&c->ev, c->srv->base, c->fd, (short)(want | EV_PERSIST), on_io, c);
	if (event_add(&c->ev, NULL) != 0) {
		char peer[HTTP_PEER_MAX];
		/* epoll_ctl failed (out of memory): the connection stalls until
		 * its deadline closes it. */
		log_warning("http %s: cannot watch the socket", conn_peer(c, peer, sizeof(peer)));
		c->ev_flags = 0;
	}
}

/* Sends the IOV bytes, or what of them the kernel does not take now keeps
 * them in c->out (EV_WRITE sends the rest). False when the connection is
 * broken. */
static bool conn_send(HttpConn *c, const struct iovec *iov, int niov)
{
	struct msghdr msg = {.msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)niov};
	size_t total = 0, skip, len;
	ssize_t n = 0;

	for (int i = 0; i < niov; i++)
		total += iov[i].iov_len;
	if (c->out == NULL) {
		/* MSG_NOSIGNAL: a client gone is an error here, not SIGPIPE. */
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return false;
			n = 0;
		}
		if ((size_t)n == total)
			return true;
	}
	/* Keep the rest: after what c->out already holds, if anything. */
	skip = (size_t)n;
	len = c->out_len - c->out_off;
	{
		char *out = xmalloc(len + total - skip);
		if (len > 0)
			memcpy(out, c->out + c->out_off, len);
		for (int i = 0; i < niov; i++) {
			size_t l = iov[i].iov_len;
			if (skip >= l) {
				skip -= l;
				continue;
			}
			memcpy(out + len, (const char *)iov[i].iov_base + skip, l - skip);
			len += l - skip;
			skip = 0;
		}
		if (c->out != NULL)
			out_free(c);
		c->out = out;
		c->out_off = 0;
		c->out_len = (uint32_t)len;
		c->srv->stats.buffered_bytes += len;
	}
	conn_update_events(c);
	return true;
}

/* The connection must close: now, or, while conn_on_readable runs a
 * handler on it, as soon as that returns. Returns false (c is not to be
 * used any more), for `return conn_kill(c)`. */
static bool conn_kill(HttpConn *c)
{
	if (c->busy)
		c->dead = true;
	else
		conn_close(c);
	return false;
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

/* The response is all out: the connection waits for the next request or
 * closes. False when c is closed (or dead). */
static bool conn_written(HttpConn *c)
{
	c->read_paused = false;
	if (c->close_after) {
		if (c->peer_eof)
			return conn_kill(c);
		/* Close gracefully: shut our side and read until the client closes
		 * too, so unread request bytes do not turn our close into a reset
		 * that destroys the response before the client reads it. */
		shutdown(c->fd, SHUT_WR);
		conn_set_state(c, CONN_DRAINING);
		if (!c->busy && c->in != NULL)
			in_free(c); /* (while busy, conn_consume discards them) */
		conn_update_events(c);
		return true;
	}
	conn_set_state(c, CONN_IDLE);
	conn_update_events(c);
	if (!c->busy && c->in != NULL) {
		/* Pipelined requests wait in c->in: go on with them from the
		 * loop, not from inside whoever called http_respond. */
		c->kick = true;
		event_active(&c->ev, EV_READ, 1);
	}
	return true;
}

/* The status line and headers up to Content-Length's value, without
 * printf (every response), into out (room: sizeof(srv->head)); returns its
 * length. The last head is kept and rebuilt only when the status, the
 * content type or the date's second changes: most responses are 200
 * application/json. */
static size_t response_head(HttpServer *srv, int status, const char *content_type, char *out)
{
	const char *date = http_date(srv);

	if (status != srv->head_status || srv->head_time != srv->date_time || strcmp(content_type, srv->head_type) != 0) {
		char num[24];
		fmt_i64(num, status);
		str_concat(srv->head, sizeof(srv->head), "HTTP/1.1 ", num, " ", http_reason_phrase(status), "\r\nDate: ",
		           date, "\r\nContent-Type: ", content_type, "\r\nContent-Length: ", (char *)NULL);
		srv->head_len = strlen(srv->head);
		srv->head_status = status;
		srv->head_time = srv->date_time;
		/* A type too long to keep never matches: rebuilt each time. */
		strlcpy_s(srv->head_type, content_type, sizeof(srv->head_type));
	}
	memcpy(out, srv->head, srv->head_len);
	return srv->head_len;
}

void http_respond(HttpRequest *req, int status, const char *content_type, const char *body, size_t len)
{
	static const char close_hdr[] = "\r\nConnection: close\r\n", keep_hdr[] = "\r\nConnection: keep-alive\r\n";
	HttpConn *c = req->conn;
	char head[sizeof(((HttpServer *)0)->head) + 24]; /* and Content-Length's value */
	struct iovec iov[5];
	int niov = 0;
	size_t n, xlen;
	const char *xhdr;
	bool closing, sent;

	if (c->closed) { /* the client went away meanwhile */
		http_req_free(req);
		free(c);
		return;
	}
	closing = c->close_after || !req->keep_alive || c->peer_eof || c->rejecting;
	n = response_head(c->srv, status, content_type, head);
	n += fmt_i64(head + n, (int64_t)len);
	iov[niov++] = (struct iovec){head, n};
	if (closing)
		iov[niov++] = (struct iovec){(void *)close_hdr, sizeof(close_hdr) - 1};
	else if (req->minor == 0)
		iov[niov++] = (struct iovec){(void *)keep_hdr, sizeof(keep_hdr) - 1};
	else
		iov[niov++] = (struct iovec){(void *)"\r\n", 2};
	xhdr = http_req_extra_headers(req, &xlen);
	if (xlen > 0)
		iov[niov++] = (struct iovec){(void *)xhdr, xlen};
	iov[niov++] = (struct iovec){(void *)"\r\n", 2};
	/* A HEAD and a 304 carry no body; their Content-Length is that of the
	 * body a GET or a 200 would carry (RFC 9110, 8.6). */
	if (strcmp(http_request_method(req), "HEAD") != 0 && status != 304 && len > 0)
		iov[niov++] = (struct iovec){(void *)body, len};
	c->close_after = closing;
	c->req = NULL;
	sent = conn_send(c, iov, niov);
	http_req_free(req);
	if (!sent) {
		(void)conn_kill(c);
		return;
	}
	if (c->out == NULL) {
		(void)conn_written(c);
		return;
	}
	conn_set_state(c, CONN_WRITING);
}

/* Sends what c->out holds. False when c is closed. */
static bool conn_flush(HttpConn *c)
{
	ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return true;
		return conn_kill(c);
	}
	c->out_off += (uint32_t)n;
	if (c->out_off < c->out_len)
		return true;
	out_free(c);
	conn_update_events(c);
	if (c->state == CONN_WRITING)
		return conn_written(c);
	return true; /* a 100 Continue, while the body arrives */
}

/* Answers a protocol error found while reading; the connection closes after. */
static void protocol_error(HttpConn *c, const ParseError *e)
{
	HttpServer *srv = c->srv;
	char peer[HTTP_PEER_MAX];

	if (c->req == NULL)
		c->req = http_req_new(c);
	srv->stats.protocol_errors++;
	c->close_after = true;
	conn_set_state(c, CONN_HANDLING);
	log_debug("http %s: %d %s: %s", conn_peer(c, peer, sizeof(peer)), e->status, e->slug, e->detail);
	srv->on_error(c->req, e->status, e->slug, e->detail, srv->arg);
}

/* ---- connection I/O ---------------------------------------------------------------- */

/* Closes the socket and frees the connection, unless a handler has its
 * request: then the struct stays, closed, until http_respond frees it. */
static void conn_close(HttpConn *c)
{
	HttpServer *srv = c->srv;

	list_remove(c);
	event_del(&c->ev);
	c->ev_flags = 0;
	evutil_closesocket(c->fd);
	c->fd = -1;
	if (c->in != NULL)
		in_free(c);
	if (c->out != NULL)
		out_free(c);
	if (c->rejecting)
		srv->nrejecting--;
	else
		srv->stats.connections_open--;
	if (c->state == CONN_HANDLING && c->req != NULL) {
		c->closed = true; /* the reply will be dropped; http_respond frees c */
		return;
	}
	http_req_free(c->req);
	free(c);
}

/* Reads the request arriving from the N bytes at P; returns how many it
 * used. Runs the handler once the request is complete. */
static size_t conn_read_request(HttpConn *c, char *p, size_t n)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	HttpServer *srv = c->srv;
	HttpRequest *r = c->req;
	size_t used = 0, k;
	ReadResult rr;
	ParseError e;

	for (;;) {
		rr = http_req_read(r, p + used, n - used, &srv->cfg, &k, &e);
		used += k;
		if (rr != RD_HEAD)
			break;
		/* The client waits for our word before sending the body. */
		if (r->expect_continue && r->body_mode != BODY_NONE && used == n) {
			struct iovec iov = {(void *)cont, sizeof(cont) - 1};
			if (!conn_send(c, &iov, 1)) {
				(void)conn_kill(c);
				return n;
			}
		}
	}
	if (rr == RD_MORE)
		return used;
	if (rr == RD_ERROR) {
		protocol_error(c, &e);
		return n; /* the connection closes: the rest is discarded */
	}
	conn_set_state(c, CONN_HANDLING);
	srv->stats.requests++;
	srv->handler(r, srv->arg);
	return used;
}

/* Reads and handles requests from the N bytes at P (writable) while it can;
 * returns how many bytes it used. A handler that answers at once lets it go
 * on with a pipelined request in the same bytes. */
static size_t conn_consume(HttpConn *c, char *p, size_t n)
{
	size_t used = 0;

	while (!c->dead) {
		switch ((ConnState)c->state) {
		case CONN_IDLE:
			/* RFC 9112 §2.2: ignore empty lines before a request line. */
			while (n - used >= 2 && p[used] == '\r' && p[used + 1] == '\n')
				used += 2;
			if (used == n)
				return used;
			conn_set_state(c, CONN_READING);
			c->req = http_req_new(c);
			break;
		case CONN_READING:
			used += conn_read_request(c, p + used, n - used);
			if (c->state == CONN_READING)
				return used;
			break;
		case CONN_HANDLING:
		case CONN_WRITING:
			/* A pipelined request waits its turn. */
			return used;
		case CONN_DRAINING:
		case CONN_NSTATES:
			return n;
		}
	}
	return n;
}

/* The client shut its side (read() said 0). */
static void conn_eof(HttpConn *c)
{
	if (c->state == CONN_HANDLING || c->state == CONN_WRITING) {
		/* A half-closed client may still read the answer. */
		c->peer_eof = true;
		c->close_after = true;
		conn_update_events(c);
		return;
	}
	conn_close(c);
}

static void conn_on_readable(HttpConn *c)
{
	char buf[READ_CHUNK], *p;
	size_t n, used, limit;
	ssize_t got = 0;

	if (c->kick) {
		c->kick = false; /* what is in c->in first; the socket on the next call */
	} else {
		got = recv(c->fd, buf, sizeof(buf), 0);
		if (got == 0) {
			conn_eof(c);
			return;
		}
		if (got < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				conn_close(c);
			return;
		}
	}
	/* Parse in place where the bytes are: the stack buffer when nothing
	 * was left over before, else the input buffer. */
	if (c->in == NULL) {
		if (got <= 0)
			return;
		p = buf;
		n = (size_t)got;
	} else {
		if (got > 0)
			in_append(c, buf, (size_t)got);
		p = c->in;
		n = c->in_len;
	}
	c->busy = true;
	used = conn_consume(c, p, n);
	c->busy = false;
	if (c->dead) {
		conn_close(c);
		return;
	}
	/* Keep what is left for later. */
	if (p == buf) {
		if (used < n)
			in_append(c, buf + used, n - used);
	} else if (used == n) {
		in_free(c);
	} else if (used > 0) {
		memmove(c->in, c->in + used, n - used);
		c->in_len = (uint32_t)(n - used);
	}
	/* A pipelining client that keeps sending while a request is handled
	 * is not read past this until we are ready. */
	limit = (size_t)(c->srv->cfg.max_header_bytes + c->srv->cfg.max_body_bytes);
	if ((c->state == CONN_HANDLING || c->state == CONN_WRITING) && c->in_len > limit)
		c->read_paused = true;
	conn_update_events(c);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	HttpConn *c = arg;

	(void)fd;
	if ((what & EV_WRITE) && c->out != NULL && !conn_flush(c))
		return;
	if (what & EV_READ)
		conn_on_readable(c);
}

static HttpConn *conn_new(HttpServer *srv, evutil_socket_t fd, const struct sockaddr *sa)
{
	HttpConn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	conn_set_peer(c, sa);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->srv = srv;
	c->fd = fd;
	c->state = CONN_IDLE; /* in no list until conn_set_state */
	/* Not added yet: conn_update_events adds it for what is needed. */
	event_assign(&c->ev, srv->base, fd, EV_READ | EV_PERSIST, on_io, c);
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
		c = conn_new(srv, fd, sa);
		c->rejecting = true;
		srv->nrejecting++;
		c->req = http_req_new(c);
		conn_set_state(c, CONN_HANDLING);
		conn_update_events(c);
		http_response_header(c->req, "Retry-After", "1");
		srv->on_error(c->req, 503, "too-many-connections",
		              "max_connections connections are open; retry shortly", srv->arg);
		return;
	}
	c = conn_new(srv, fd, sa);
	srv->stats.connections_open++;
	srv->stats.connections_accepted++;
	conn_set_state(c, CONN_IDLE);
	conn_update_events(c);
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
	char peer[HTTP_PEER_MAX];

	(void)fd;
	(void)what;
	if (srv->listener_paused && srv->accepting) {
		srv->listener_paused = false;
		evconnlistener_enable(srv->listener);
	}
	while ((c = srv->lists[CONN_IDLE].head) != NULL && c->deadline_us <= now) {
		srv->stats.timeouts++;
		conn_close(c);
	}
	while ((c = srv->lists[CONN_READING].head) != NULL && c->deadline_us <= now) {
		srv->stats.timeouts++;
		log_debug("http %s: request not complete within %lld ms", conn_peer(c, peer, sizeof(peer)),
		          (long long)srv->cfg.request_timeout_ms);
		http_perr(&e, 408, "request-timeout", "the request did not arrive whole within http_request_timeout_ms",
		          NULL);
		protocol_error(c, &e);
	}
	while ((c = srv->lists[CONN_WRITING].head) != NULL && c->deadline_us <= now) {
		srv->stats.timeouts++;
		conn_close(c);
	}
	while ((c = srv->lists[CONN_DRAINING].head) != NULL && c->deadline_us <= now)
		conn_close(c);
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
	/* Accepted sockets are non-blocking and close-on-exec. */
	srv->listener = evconnlistener_new_bind(base, on_accept, srv,
	                                        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 1024,
	                                        ai->ai_addr, (int)ai->ai_addrlen);
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
			conn_close(srv->lists[s].head);
	}
	/* Connections whose request a handler still has are closed but kept:
	 * their http_respond() only frees them. */
	free(srv);
}
