/*
 * check_http: twopcd's HTTP layer against hostile and broken clients.
 *
 * Raw sockets over loopback against a real twopcd with two real PostgreSQL
 * participants: malformed requests, oversized headers and bodies, chunked
 * bodies, 100-continue, keep-alive and pipelining, slowloris clients, idle
 * connections, max_connections, 10,000 connections opened and closed
 * (descriptors and memory must come back), bearer-token auth, and what the
 * server's own I/O must get right: responses the kernel does not take at
 * once (a slow reader), a pipelined burst sent whole and in small pieces, a
 * pipelining client that keeps sending while a transaction runs (it is not
 * read past the limits), half-closed and vanished clients, idle
 * connections holding no buffer, and a transaction's request, whose head
 * and body are released while it runs, answered with the right keep-alive
 * behaviour. Every
 * error must be application/problem+json with its documented type, and the
 * daemon must keep serving afterwards. Every response is also written to
 * the API trace for the OpenAPI check.
 */
#include "tlfixture.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HT_TIMEOUT_S 300
#define HT_ERR 2048
#define HT_SCHEMA                                                                                   \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"                   \
	"INSERT INTO accounts VALUES (1, 1000000);"
#define HT_PROBLEM "https://twopc.dev/problems/"

static const char *const ht_clusters[] = {"bank_a", "bank_b", NULL};
static TlFixture ht_fx = {
	.program = "check_http",
	.clusters = ht_clusters,
	.schema = HT_SCHEMA,
	.timeout_s = HT_TIMEOUT_S,
};

/* ------------------------------------------------------------ raw client */

typedef struct Raw {
	int fd;
	char buf[1 << 16];
	size_t len;
} Raw;

static int raw_connect(int port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0, "connect: %s", strerror(errno));
	return fd;
}

static Raw *raw_open(void)
{
	Raw *r = calloc(1, sizeof *r);

	ck_assert_ptr_nonnull(r);
	r->fd = raw_connect(ht_fx.daemon.port);
	return r;
}

static void raw_close(Raw *r)
{
	close(r->fd);
	free(r);
}

static void raw_send(Raw *r, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(r->fd, s, n, MSG_NOSIGNAL);
		ck_assert_msg(w > 0, "send: %s", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

static void raw_sends(Raw *r, const char *s)
{
	raw_send(r, s, strlen(s));
}

/* Reads more bytes; false on EOF/reset/timeout. */
static bool raw_fill(Raw *r, int timeout_ms)
{
	struct pollfd p = {.fd = r->fd, .events = POLLIN};
	ssize_t n;

	if (r->len == sizeof r->buf)
		return false;
	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	n = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
	if (n <= 0)
		return false;
	r->len += (size_t)n;
	return true;
}

/* The length of the first complete response in the buffer, or 0. */
static size_t raw_complete(const Raw *r)
{
	const char *end = memmem(r->buf, r->len, "\r\n\r\n", 4);
	const char *cl;
	size_t hl;
	long n = 0;

	if (end == NULL)
		return 0;
	hl = (size_t)(end - r->buf) + 4;
	cl = memmem(r->buf, hl, "Content-Length: ", 16);
	if (cl != NULL)
		n = strtol(cl + 16, NULL, 10);
	return r->len >= hl + (size_t)n ? hl + (size_t)n : 0;
}

/* Reads one response (of a request METHOD PATH, for the trace); false if
 * the connection ends first. */
static bool raw_response(Raw *r, const char *method, const char *path, TlHttpResponse *resp, int timeout_ms)
{
	char err[256];
	size_t n;

	while ((n = raw_complete(r)) == 0) {
		if (!raw_fill(r, timeout_ms))
			return false;
	}
	ck_assert_msg(tl_http_parse_response(r->buf, n, resp, err, sizeof err), "%s", err);
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
	tl_http_trace(method, path, resp);
	return true;
}

/* Sends REQ (a GET /healthz) on r and expects its 200. */
static void raw_expect_healthz(Raw *r, const char *req)
{
	TlHttpResponse resp;

	raw_sends(r, req);
	ck_assert(raw_response(r, "GET", "/healthz", &resp, 10000));
	ck_assert_int_eq(resp.status, 200);
	tl_http_response_free(&resp);
}

/* Reads the answer to a POST /v1/transactions sent on r and expects its
 * 200; resp is the caller's to look at and free. */
static void raw_expect_transfer(Raw *r, TlHttpResponse *resp)
{
	ck_assert(raw_response(r, "POST", "/v1/transactions", resp, 30000));
	ck_assert_msg(resp->status == 200, "%d %s", resp->status, resp->body);
}

/* Whether the server closes the connection within TIMEOUT_MS (bytes that
 * arrive meanwhile are discarded). */
static bool raw_closed_by_server(Raw *r, int timeout_ms)
{
	int64_t until = tl_now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		char b[4096];
		int64_t left = until - tl_now_ms();

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return false;
		ssize_t n = recv(r->fd, b, sizeof b, 0);
		if (n <= 0)
			return true;
	}
}

static void expect_problem(const TlHttpResponse *resp, int status, const char *slug)
{
	char type[128];

	snprintf(type, sizeof type, HT_PROBLEM "%s", slug);
	ck_assert_msg(resp->status == status, "status %d, want %d: %s", resp->status, status, resp->body);
	ck_assert_msg(strcmp(resp->content_type, "application/problem+json") == 0, "content type %s: %s",
		      resp->content_type, resp->body);
	ck_assert_msg(resp->json != NULL, "body is not JSON: %s", resp->body);
	ck_assert_msg(tl_json_str(resp->json, "type") && strcmp(tl_json_str(resp->json, "type"), type) == 0,
		      "type is not %s: %s", type, resp->body);
	ck_assert_msg(tl_json_str(resp->json, "title") && tl_json_str(resp->json, "detail"),
		      "no title/detail: %s", resp->body);
}

static void expect_healthy(void)
{
	TlHttpResponse r;
	char err[HT_ERR];

	ck_assert_msg(tl_http_request(ht_fx.daemon.port, "GET", "/healthz", NULL, 10000, &r, err, sizeof err),
		      "daemon stopped serving: %s", err);
	ck_assert_int_eq(r.status, 200);
	tl_http_response_free(&r);
}

static const char *transfer_body(char *buf, size_t len, int amount)
{
	snprintf(buf, len,
		 "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - $1 WHERE id = 1\","
		 "\"params\":[%d],\"expect_rows\":1}],"
		 "\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + $1 WHERE id = 1\","
		 "\"params\":[%d],\"expect_rows\":1}]}}",
		 amount, amount);
	return buf;
}

static int64_t balance(const char *part)
{
	char err[HT_ERR];
	int64_t v = 0;

	if (!tl_pg_scalar_i64(tl_env_cluster(&ht_fx.env, part), "SELECT balance FROM accounts WHERE id = 1", 0, NULL, &v,
			      err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

static void start_with(const char *const *kv)
{
	tl_fixture_start(&ht_fx, kv, NULL);
}

/* Open descriptors of the daemon and its resident memory (KiB). */
static int daemon_fds(void)
{
	char cmd[128], out[64];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof cmd, "ls /proc/%d/fd | wc -l", (int)ht_fx.daemon.pid);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	if (fgets(out, sizeof out, p))
		n = atoi(out);
	pclose(p);
	return n;
}

static long daemon_rss_kib(void)
{
	char path[64], line[256];
	FILE *f;
	long kib = -1;

	snprintf(path, sizeof path, "/proc/%d/status", (int)ht_fx.daemon.pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* A connection whose receive buffer is as small as the kernel allows: the
 * daemon's responses to it back up in the daemon unless it reads. */
static Raw *raw_open_small_rcvbuf(void)
{
	struct sockaddr_in sin;
	Raw *r = calloc(1, sizeof *r);
	int small = 1024;

	ck_assert_ptr_nonnull(r);
	r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_msg(r->fd >= 0, "socket: %s", strerror(errno));
	ck_assert(setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)ht_fx.daemon.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(r->fd, (struct sockaddr *)&sin, sizeof sin) == 0, "connect: %s", strerror(errno));
	return r;
}

/* The value of an unlabelled sample of GET /metrics. */
static double metric(const char *name)
{
	TlHttpResponse resp;
	char err[HT_ERR];
	size_t nl = strlen(name);
	double v = -1;

	ck_assert_msg(tl_http_request(ht_fx.daemon.port, "GET", "/metrics", NULL, 10000, &resp, err, sizeof err), "%s",
		      err);
	ck_assert_int_eq(resp.status, 200);
	for (const char *p = resp.body; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
			v = strtod(p + nl + 1, NULL);
			break;
		}
	}
	tl_http_response_free(&resp);
	ck_assert_msg(v >= 0, "no %s in /metrics", name);
	return v;
}

/* A transfer of 1 from bank_a to bank_b that takes SLEEP seconds (pg_sleep
 * on bank_a first), as a request: "POST ... HTTP/1.MINOR" with EXTRA
 * header lines. */
static void slow_transfer_request(char *buf, size_t len, const char *sleep, int minor, const char *extra)
{
	char body[1024];

	snprintf(body, sizeof body,
		 "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT pg_sleep(%s)\"},"
		 "{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 1\",\"expect_rows\":1}],"
		 "\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 1\","
		 "\"expect_rows\":1}]}}",
		 sleep);
	snprintf(buf, len,
		 "POST /v1/transactions HTTP/1.%d\r\nHost: t\r\nContent-Type: application/json\r\n%s"
		 "Content-Length: %zu\r\n\r\n%s",
		 minor, extra ? extra : "", strlen(body), body);
}

/* Waits until no transaction is in flight. */
static void wait_no_txn_in_flight(void)
{
	for (int tries = 0;; tries++) {
		TlHttpResponse h;
		char err[HT_ERR];
		int64_t n = -1;
		ck_assert(tl_http_request(ht_fx.daemon.port, "GET", "/healthz", NULL, 10000, &h, err, sizeof err));
		ck_assert(tl_json_i64(h.json, "in_flight", &n));
		tl_http_response_free(&h);
		if (n == 0)
			return;
		ck_assert_msg(tries < 300, "transactions still in flight after 30 s");
		tl_sleep_ms(100);
	}
}

/* ----------------------------------------------------------------- tests */

/* Keep-alive, pipelining in order, Connection: close, HTTP/1.0. */
START_TEST(test_keepalive_pipelining)
{
	Raw *r;
	TlHttpResponse resp;
	char body[1024], req[2048], hv[64];
	int64_t a0;

	start_with(NULL);
	a0 = balance("bank_a");
	r = raw_open();
	for (int i = 0; i < 3; i++) {
		raw_sends(r, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert(raw_response(r, "GET", "/healthz", &resp, 10000));
		ck_assert_int_eq(resp.status, 200);
		ck_assert_msg(tl_http_header(&resp, "Connection", hv, sizeof hv) == NULL, "keep-alive closed: %s", hv);
		tl_http_response_free(&resp);
	}
	/* Three requests in one write: three answers, in order. */
	transfer_body(body, sizeof body, 1);
	snprintf(req, sizeof req,
		 "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
		 "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
		 "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	raw_sends(r, req);
	ck_assert(raw_response(r, "GET", "/healthz", &resp, 10000));
	ck_assert_int_eq(resp.status, 200);
	tl_http_response_free(&resp);
	ck_assert(raw_response(r, "GET", "/nope", &resp, 10000));
	expect_problem(&resp, 404, "not-found");
	tl_http_response_free(&resp);
	raw_expect_transfer(r, &resp);
	tl_http_response_free(&resp);
	ck_assert_int_eq(balance("bank_a"), a0 - 1);
	/* Connection: close is honoured. */
	raw_sends(r, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	ck_assert(raw_response(r, "GET", "/healthz", &resp, 10000));
	ck_assert_str_eq(tl_http_header(&resp, "Connection", hv, sizeof hv), "close");
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);

	/* HTTP/1.0 closes unless asked to keep alive. */
	r = raw_open();
	raw_expect_healthz(r, "GET /healthz HTTP/1.0\r\n\r\n");
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);
	r = raw_open();
	raw_sends(r, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	ck_assert(raw_response(r, "GET", "/healthz", &resp, 10000));
	ck_assert_str_eq(tl_http_header(&resp, "Connection", hv, sizeof hv), "keep-alive");
	tl_http_response_free(&resp);
	raw_expect_healthz(r, "GET /healthz HTTP/1.0\r\n\r\n");
	raw_close(r);
}
END_TEST

/* Malformed HTTP: 400/501/505 as problem+json, then the connection closes,
 * and the daemon goes on serving. */
START_TEST(test_malformed_http)
{
	static const struct {
		const char *req;
		int status;
		const char *slug;
	} cases[] = {
	    {"GARBAGE\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz\r\nHost: t\r\n\r\n", 400, "bad-request"},
	    {"GET healthz HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505, "http-version-not-supported"},
	    {"GET /healthz FTP/1.1\r\nHost: t\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\n\r\n", 400, "bad-request"}, /* no Host */
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Name: 1\r\n\r\n", 400, "bad-request"},
	    /* Control characters in a value: DEL, a lone CR, a lone LF, a C0
	     * byte, at the start, in the middle and past the first 8 bytes,
	     * far enough from the CR that ends the line (the value is scanned
	     * 8 bytes at a time). */
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: \x7f\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: abc\rdef\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: abcdefghijk\nlmnopqrstuvwxyz0123456789\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: abcdefghijklmnopqrs\x7ftuvwxyz0123456789\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: abcdefghijklmnop\x01qrstuvwxyz0123456789\r\n\r\n", 400, "bad-request"},
	    {"GET /healthz HTTP/1.1\r\nHost: t\r\n\rX-A: 1\r\n\r\n", 400, "bad-request"},
	    {"POST /v1/transactions HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", 400, "bad-request"},
	    {"POST /v1/transactions HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	     400, "bad-request"},
	    {"POST /v1/transactions HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	     400, "bad-request"},
	    {"POST /v1/transactions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not-implemented"},
	    {"POST /v1/transactions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
	     "bad-request"},
	    {"POST /v1/transactions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400,
	     "bad-request"},
	};
	TlHttpResponse resp;

	start_with(NULL);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		Raw *r = raw_open();
		raw_sends(r, cases[i].req);
		ck_assert_msg(raw_response(r, "POST", "/", &resp, 10000), "case %zu: no response", i);
		expect_problem(&resp, cases[i].status, cases[i].slug);
		tl_http_response_free(&resp);
		ck_assert_msg(raw_closed_by_server(r, 5000), "case %zu: connection not closed", i);
		raw_close(r);
	}
	/* What a value may hold: HTAB, blanks (trimmed at both ends) and bytes
	 * from 0x80 up (obs-text), also past the first 8 bytes. */
	{
		Raw *r = raw_open();
		raw_expect_healthz(r, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: \t a\tb \x80\xff c d e f g h \xfe\t \r\n"
		                      "X-B:\r\nX-C:   \r\n\r\n");
		raw_close(r);
	}
	/* Routing errors keep the connection. */
	{
		Raw *r = raw_open();
		char allow[64];
		raw_sends(r, "DELETE /v1/transactions HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert(raw_response(r, "DELETE", "/v1/transactions", &resp, 10000));
		expect_problem(&resp, 405, "method-not-allowed");
		ck_assert_str_eq(tl_http_header(&resp, "Allow", allow, sizeof allow), "POST");
		tl_http_response_free(&resp);
		raw_sends(r, "GET /v1/nothing HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert(raw_response(r, "GET", "/v1/nothing", &resp, 10000));
		expect_problem(&resp, 404, "not-found");
		tl_http_response_free(&resp);
		raw_close(r);
	}
	expect_healthy();
}
END_TEST

/* Size limits: 431, 413 (with and without 100-continue, chunked too), and
 * the bodies that fit work, chunked and 100-continue included. */
START_TEST(test_size_limits)
{
	static const char *const kv[] = {"max_header_bytes", "4096", "max_body_bytes", "8192", NULL};
	TlHttpResponse resp;
	Raw *r;
	char *big, body[1024], req[4096], v[64];
	int64_t a0;

	start_with(kv);
	a0 = balance("bank_a");

	/* 431: a 5000-byte header. */
	big = malloc(6000);
	ck_assert_ptr_nonnull(big);
	memset(big, 'x', 5000);
	big[5000] = '\0';
	r = raw_open();
	snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
	raw_sends(r, req);
	raw_sends(r, big);
	raw_sends(r, "\r\n\r\n");
	ck_assert(raw_response(r, "GET", "/healthz", &resp, 10000));
	expect_problem(&resp, 431, "headers-too-large");
	ck_assert_int_eq(json_integer_value(json_object_get(resp.json, "max_header_bytes")), 4096);
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);

	/* 413 announced by Content-Length, the body sent anyway. */
	r = raw_open();
	raw_sends(r, "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n");
	for (int i = 0; i < 2; i++)
		raw_send(r, big, 5000);
	ck_assert(raw_response(r, "POST", "/v1/transactions", &resp, 10000));
	expect_problem(&resp, 413, "body-too-large");
	ck_assert_int_eq(json_integer_value(json_object_get(resp.json, "max_body_bytes")), 8192);
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);

	/* 413 to an Expect: 100-continue, before any body byte is sent. */
	r = raw_open();
	raw_sends(r, "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9000\r\n\r\n");
	ck_assert(raw_response(r, "POST", "/v1/transactions", &resp, 10000));
	expect_problem(&resp, 413, "body-too-large");
	tl_http_response_free(&resp);
	raw_close(r);

	/* 413 for a chunked body that grows past the limit. */
	r = raw_open();
	raw_sends(r, "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 3; i++) {
		raw_sends(r, "1000\r\n");
		raw_send(r, big, 4096);
		raw_sends(r, "\r\n");
	}
	ck_assert(raw_response(r, "POST", "/v1/transactions", &resp, 10000));
	expect_problem(&resp, 413, "body-too-large");
	tl_http_response_free(&resp);
	raw_close(r);
	free(big);

	/* A chunked body that fits: the transaction runs. */
	transfer_body(body, sizeof body, 2);
	r = raw_open();
	raw_sends(r, "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
	snprintf(req, sizeof req, "%zx;ext=1\r\n", (size_t)10);
	raw_sends(r, req);
	raw_send(r, body, 10);
	snprintf(req, sizeof req, "\r\n%zx\r\n", strlen(body) - 10);
	raw_sends(r, req);
	raw_sends(r, body + 10);
	raw_sends(r, "\r\n0\r\nX-Trailer: yes\r\n\r\n");
	raw_expect_transfer(r, &resp);
	tl_http_response_free(&resp);
	raw_close(r);
	ck_assert_int_eq(balance("bank_a"), a0 - 2);

	/* Expect: 100-continue that fits: "100 Continue" first, then the answer. */
	r = raw_open();
	snprintf(req, sizeof req,
		 "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
		 strlen(body));
	raw_sends(r, req);
	while (r->len < 25)
		ck_assert_msg(raw_fill(r, 10000), "no 100 Continue");
	ck_assert_msg(strncmp(r->buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0, "%.40s", r->buf);
	memmove(r->buf, r->buf + 25, r->len - 25);
	r->len -= 25;
	raw_sends(r, body);
	raw_expect_transfer(r, &resp);
	ck_assert_msg(tl_http_header(&resp, "Content-Type", v, sizeof v) != NULL, "no content type");
	tl_http_response_free(&resp);
	raw_close(r);
	ck_assert_int_eq(balance("bank_a"), a0 - 4);
	expect_healthy();
}
END_TEST

/* Slowloris: clients that drip their request, or hold connections without
 * a word, are cut off by the request deadline and the idle timeout however
 * they pace their bytes, and the daemon serves others meanwhile. */
START_TEST(test_slowloris)
{
	static const char *const kv[] = {"http_request_timeout_ms", "1000", "http_idle_timeout_ms", "2000", NULL};
	enum { N = 200 };
	Raw *held[N], *drip, *idle;
	TlHttpResponse resp;
	char body[1024], err[HT_ERR];
	int64_t t0, a0;
	json_t *jb;

	start_with(kv);
	a0 = balance("bank_a");
	/* 200 connections that sent half a request, one that drips a header
	 * byte every 200 ms (each byte well within any per-read timeout), and
	 * one that says nothing. */
	for (int i = 0; i < N; i++) {
		held[i] = raw_open();
		raw_sends(held[i], "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nX-Slow: ");
	}
	drip = raw_open();
	idle = raw_open();
	t0 = tl_now_ms();
	raw_sends(drip, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Drip: ");

	/* Others are served meanwhile. */
	jb = json_loads(transfer_body(body, sizeof body, 3), 0, NULL);
	ck_assert(tl_http_post_json(ht_fx.daemon.port, "/v1/transactions", jb, 30000, &resp, err, sizeof err));
	json_decref(jb);
	ck_assert_msg(resp.status == 200, "%d %s", resp.status, resp.body);
	tl_http_response_free(&resp);
	ck_assert_int_eq(balance("bank_a"), a0 - 3);

	/* The dripping client gets 408 at its deadline. */
	for (;;) {
		struct pollfd p = {.fd = drip->fd, .events = POLLIN};
		if (poll(&p, 1, 200) == 1)
			break;
		ck_assert_msg(tl_now_ms() - t0 < 10000, "dripping client still connected after 10 s");
		raw_sends(drip, "x");
	}
	ck_assert(raw_response(drip, "GET", "/healthz", &resp, 5000));
	expect_problem(&resp, 408, "request-timeout");
	tl_http_response_free(&resp);
	ck_assert_msg(tl_now_ms() - t0 >= 900, "408 came before the deadline (%lld ms)", (long long)(tl_now_ms() - t0));
	ck_assert(raw_closed_by_server(drip, 5000));
	raw_close(drip);

	/* Every half-sent request gets its 408 and is closed. */
	for (int i = 0; i < N; i++) {
		ck_assert_msg(raw_response(held[i], "POST", "/v1/transactions", &resp, 10000), "held %d: no 408", i);
		expect_problem(&resp, 408, "request-timeout");
		tl_http_response_free(&resp);
		ck_assert_msg(raw_closed_by_server(held[i], 5000), "held %d not closed", i);
		raw_close(held[i]);
	}
	/* The silent one is closed by the idle timeout, without a response. */
	ck_assert_msg(raw_closed_by_server(idle, 10000), "idle connection still open after 10 s");
	ck_assert_msg(idle->len == 0, "idle connection got bytes: %.80s", idle->buf);
	raw_close(idle);
	expect_healthy();
}
END_TEST

/* max_connections: the next connection gets 503 + Retry-After and is
 * closed; once others close, service resumes. */
START_TEST(test_max_connections)
{
	static const char *const kv[] = {"max_connections", "20", NULL};
	Raw *open_[20], *extra;
	TlHttpResponse resp;
	char ra[32];

	start_with(kv);
	for (int i = 0; i < 20; i++)
		open_[i] = raw_open();
	/* All 20 are accepted (a request on each is answered). */
	for (int i = 0; i < 20; i++) {
		raw_sends(open_[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert(raw_response(open_[i], "GET", "/healthz", &resp, 10000));
		ck_assert_int_eq(resp.status, 200);
		tl_http_response_free(&resp);
	}
	extra = raw_open();
	raw_sends(extra, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert(raw_response(extra, "GET", "/healthz", &resp, 10000));
	expect_problem(&resp, 503, "too-many-connections");
	ck_assert_msg(tl_http_header(&resp, "Retry-After", ra, sizeof ra) != NULL, "no Retry-After");
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(extra, 5000));
	raw_close(extra);
	for (int i = 0; i < 20; i++)
		raw_close(open_[i]);
	for (int tries = 0;; tries++) {
		TlHttpResponse h;
		char err[HT_ERR];
		ck_assert(tl_http_request(ht_fx.daemon.port, "GET", "/healthz", NULL, 10000, &h, err, sizeof err));
		int st = h.status;
		tl_http_response_free(&h);
		if (st == 200)
			break;
		ck_assert_msg(tries < 50, "still refused after the connections closed");
		tl_sleep_ms(100);
	}
}
END_TEST

/* 10,000 connections opened and closed, in waves of 500 at once (half send
 * a request on a keep-alive connection, half say nothing, a few close in
 * the middle of a request body): no descriptor and no memory is left
 * behind. */
START_TEST(test_ten_thousand_connections)
{
	enum { TOTAL = 10000, WAVE = 500 };
	Raw **w = calloc(WAVE, sizeof *w);
	int fds0 = -1, fds1 = -1;
	long rss0 = -1, rss1;
	TlHttpResponse resp;

	ck_assert_ptr_nonnull(w);
	start_with(NULL);
	expect_healthy();
	/* One wave first, so malloc's arenas have grown to their working size
	 * before the baseline is taken. */
	for (int done = -WAVE; done < TOTAL; done += WAVE) {
		if (done == 0) {
			tl_sleep_ms(300);
			fds0 = daemon_fds();
			rss0 = daemon_rss_kib();
		}
		for (int i = 0; i < WAVE; i++) {
			w[i] = raw_open();
			if (i % 2 == 0)
				raw_sends(w[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
			else if (i % 10 == 1)
				raw_sends(w[i], "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{");
		}
		for (int i = 0; i < WAVE; i += 2) {
			ck_assert_msg(raw_response(w[i], "GET", "/healthz", &resp, 20000), "wave %d conn %d: no answer",
				      done, i);
			ck_assert_int_eq(resp.status, 200);
			tl_http_response_free(&resp);
		}
		for (int i = 0; i < WAVE; i++)
			raw_close(w[i]);
	}
	free(w);
	/* The daemon notices every close within moments. */
	for (int tries = 0; tries < 100; tries++) {
		fds1 = daemon_fds();
		if (fds1 <= fds0)
			break;
		tl_sleep_ms(100);
	}
	rss1 = daemon_rss_kib();
	fprintf(stderr, "check_http: 10000 connections: fds %d -> %d, RSS %ld -> %ld KiB\n", fds0, fds1, rss0, rss1);
	ck_assert_msg(fds1 == fds0, "descriptors leaked: %d before, %d after", fds0, fds1);
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer keeps freed memory in quarantine (256 MB by
	 * default), so RSS says nothing here; the plain build checks it. */
	fprintf(stderr, "check_http: RSS bound not checked under AddressSanitizer (quarantine)\n");
#else
	/* Freed memory may stay in malloc's arenas; a leak of even 200 bytes a
	 * connection would show as 2 MB. */
	ck_assert_msg(rss1 - rss0 < 2048, "RSS grew from %ld to %ld KiB", rss0, rss1);
#endif
	expect_healthy();
}
END_TEST

/* Bearer tokens: /healthz open, everything else 401 without the right
 * token, with WWW-Authenticate; a good token works. */
START_TEST(test_auth)
{
	char path[TL_PATH_MAX + 32], err[HT_ERR], body[1024], wa[128];
	const char *kv[] = {"auth_token_file", path, NULL};
	TlHttpResponse resp;
	FILE *f;
	int64_t a0;

	snprintf(path, sizeof path, "%s/tokens-%d", ht_fx.env.tmpdir, (int)getpid());
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("# api clients\nfirst-token-AAAA\n\n  second.token_BBBB~+/=  \n", f);
	fclose(f);
	chmod(path, 0600);
	start_with(kv);
	a0 = balance("bank_a");
	transfer_body(body, sizeof body, 5);

	ck_assert(tl_http_request(ht_fx.daemon.port, "GET", "/healthz", NULL, 10000, &resp, err, sizeof err));
	ck_assert_int_eq(resp.status, 200);
	tl_http_response_free(&resp);

	ck_assert(tl_http_request(ht_fx.daemon.port, "POST", "/v1/transactions", body, 10000, &resp, err, sizeof err));
	expect_problem(&resp, 401, "unauthorized");
	ck_assert_str_eq(tl_http_header(&resp, "WWW-Authenticate", wa, sizeof wa), "Bearer realm=\"twopcd\"");
	tl_http_response_free(&resp);

	static const char *const wrong[] = {
	    "Authorization: Bearer first-token-AAAB\r\n", "Authorization: Bearer first-token-AAAA0\r\n",
	    "Authorization: Bearer first-token-AAA\r\n", "Authorization: Basic Zmlyc3QtdG9rZW4tQUFBQQ==\r\n",
	    "Authorization: Bearer\r\n", "Authorization: Bearer # api clients\r\n"};
	for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
		ck_assert(tl_http_request_h(ht_fx.daemon.port, "POST", "/v1/transactions", wrong[i], body, 10000, &resp, err,
					    sizeof err));
		expect_problem(&resp, 401, "unauthorized");
		ck_assert_msg(tl_http_header(&resp, "WWW-Authenticate", wa, sizeof wa) != NULL, "no WWW-Authenticate");
		tl_http_response_free(&resp);
	}
	ck_assert(tl_http_request(ht_fx.daemon.port, "GET", "/v1/transactions/0000000000000001", NULL, 10000, &resp, err,
				  sizeof err));
	expect_problem(&resp, 401, "unauthorized");
	tl_http_response_free(&resp);
	ck_assert(tl_http_request(ht_fx.daemon.port, "POST", "/v1/sweep", "", 10000, &resp, err, sizeof err));
	expect_problem(&resp, 401, "unauthorized");
	tl_http_response_free(&resp);
	ck_assert_int_eq(balance("bank_a"), a0); /* nothing ran */

	ck_assert(tl_http_request_h(ht_fx.daemon.port, "POST", "/v1/transactions",
				    "Authorization: bearer   second.token_BBBB~+/=\r\n", body, 30000, &resp, err, sizeof err));
	ck_assert_msg(resp.status == 200, "%d %s", resp.status, resp.body);
	tl_http_response_free(&resp);
	ck_assert(tl_http_request_h(ht_fx.daemon.port, "POST", "/v1/transactions",
				    "Authorization: Bearer first-token-AAAA\r\n", body, 30000, &resp, err, sizeof err));
	ck_assert_msg(resp.status == 200, "%d %s", resp.status, resp.body);
	tl_http_response_free(&resp);
	ck_assert_int_eq(balance("bank_a"), a0 - 10);

	/* The log says who was refused, never the token. */
	{
		char cmd[TL_PATH_MAX * 2];
		snprintf(cmd, sizeof cmd, "grep -c -e 'first-token' -e 'second.token' '%s' >/dev/null", ht_fx.daemon.log_path);
		ck_assert_msg(system(cmd) != 0, "a token appears in the daemon's log");
	}
}
END_TEST

/* A token file the daemon cannot use stops it at startup (and --check),
 * naming the file and line without echoing the line. */
START_TEST(test_auth_bad_file)
{
	char path[TL_PATH_MAX + 32], cmd[TL_PATH_MAX * 3], out[4096] = "";
	FILE *f, *p;
	size_t n;
	char err[HT_ERR];

	snprintf(path, sizeof path, "%s/badtokens-%d", ht_fx.env.tmpdir, (int)getpid());
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("good-token\nsecret with spaces\n", f);
	fclose(f);
	if (!tl_daemon_set(&ht_fx.daemon, "auth_token_file", path, err, sizeof err))
		ck_abort_msg("%s", err);
	snprintf(cmd, sizeof cmd, "'%s' -c '%s' --check 2>&1; echo \"exit=$?\"", ht_fx.daemon.bin, ht_fx.daemon.conf_path);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	pclose(p);
	ck_assert_msg(strstr(out, ":2: not a bearer token") != NULL, "no line number: %s", out);
	ck_assert_msg(strstr(out, "secret with spaces") == NULL, "echoed the line: %s", out);
	ck_assert_msg(strstr(out, "exit=0") == NULL, "--check accepted it: %s", out);
}
END_TEST

/* A slow reader: responses the kernel does not take at once wait in the
 * daemon's output buffer and go out as the client reads, in order, whole;
 * pipelined requests behind them wait their turn. (N responses of 22 KB:
 * more than the 4 MB a socket's send buffer may grow to on Linux.) */
START_TEST(test_slow_reader)
{
	enum { N = 256 };
	Raw *r;
	TlHttpResponse resp;
	char req[N * 64] = "";
	size_t first_len = 0;
	double buffered;

	start_with(NULL);
	r = raw_open_small_rcvbuf();
	for (int i = 0; i < N; i++)
		strcat(req, "GET /dashboard.js HTTP/1.1\r\nHost: t\r\n\r\n");
	raw_sends(r, req);
	/* The daemon writes what the kernel takes and keeps the rest. */
	tl_sleep_ms(500);
	buffered = metric("twopc_http_buffered_bytes");
	fprintf(stderr, "check_http: slow reader: %.0f bytes buffered in the daemon\n", buffered);
	/* More than the requests themselves (which may wait in the input
	 * buffer): responses wait in the output buffer. */
	ck_assert_msg(buffered > (double)strlen(req),
		      "%d responses of 22 KB to a client that does not read: %.0f bytes buffered", N, buffered);
	for (int i = 0; i < N; i++) {
		ck_assert_msg(raw_response(r, "GET", "/dashboard.js", &resp, 10000), "response %d: none", i);
		ck_assert_int_eq(resp.status, 200);
		ck_assert_msg(strcmp(resp.content_type, "text/javascript") == 0, "%s", resp.content_type);
		if (i == 0)
			first_len = resp.body_len;
		ck_assert_msg(resp.body_len == first_len && first_len > 10000, "response %d: %zu bytes, the first %zu",
			      i, resp.body_len, first_len);
		tl_http_response_free(&resp);
		if (i % 32 == 0)
			tl_sleep_ms(20);
	}
	/* All written: nothing left in the daemon, and the connection goes on. */
	ck_assert_msg(metric("twopc_http_buffered_bytes") == 0, "bytes still buffered after every response was read");
	raw_expect_healthz(r, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
	raw_close(r);
}
END_TEST

/* A burst of pipelined requests, synchronous answers (healthz, 404) and
 * transactions mixed, sent in one write and then again in 7-byte pieces:
 * every request is answered, in order. */
START_TEST(test_pipelined_burst)
{
	enum { N = 60 };
	static const int chunk = 7;
	char *burst = malloc(N * 1024), body[1024];
	size_t len = 0;
	Raw *r;
	TlHttpResponse resp;
	int64_t a0;
	int one = 1;

	ck_assert_ptr_nonnull(burst);
	start_with(NULL);
	a0 = balance("bank_a");
	transfer_body(body, sizeof body, 1);
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0)
			len += (size_t)sprintf(burst + len,
					       "POST /v1/transactions HTTP/1.1\r\nHost: t\r\n"
					       "Content-Length: %zu\r\n\r\n%s",
					       strlen(body), body);
		else if (i % 3 == 1)
			len += (size_t)sprintf(burst + len, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		else
			len += (size_t)sprintf(burst + len, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
	}
	r = raw_open();
	ck_assert(setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
	for (int round = 0; round < 2; round++) {
		if (round == 0) {
			raw_send(r, burst, len);
		} else {
			for (size_t off = 0; off < len; off += chunk) {
				raw_send(r, burst + off, len - off < (size_t)chunk ? len - off : (size_t)chunk);
				if (off % (chunk * 40) == 0)
					tl_sleep_ms(1);
			}
		}
		for (int i = 0; i < N; i++) {
			static const char *const method[] = {"POST", "GET", "GET"};
			static const char *const path[] = {"/v1/transactions", "/healthz", "/nope"};
			ck_assert_msg(raw_response(r, method[i % 3], path[i % 3], &resp, 30000),
				      "round %d, response %d: none", round, i);
			if (i % 3 == 2)
				expect_problem(&resp, 404, "not-found");
			else
				ck_assert_msg(resp.status == 200, "round %d, response %d: %d %s", round, i, resp.status,
					      resp.body);
			if (i % 3 == 1)
				ck_assert_msg(resp.json && json_object_get(resp.json, "participants"),
					      "round %d, response %d is not /healthz's: %s", round, i, resp.body);
			if (i % 3 == 0)
				ck_assert_msg(resp.json && tl_json_str(resp.json, "id"),
					      "round %d, response %d is not a transaction's: %s", round, i, resp.body);
			tl_http_response_free(&resp);
		}
	}
	raw_close(r);
	free(burst);
	ck_assert_int_eq(balance("bank_a"), a0 - 2 * (N / 3));
	expect_healthy();
}
END_TEST

/* A client that pipelines while a transaction runs is read up to
 * max_header_bytes + max_body_bytes (plus one read) and no further until
 * the transaction is answered; then everything is answered, in order. */
START_TEST(test_pipeline_backpressure)
{
	static const char *const kv[] = {"max_header_bytes", "4096", "max_body_bytes", "8192", NULL};
	static const char get[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	enum { TOTAL = 300 * 1024, READ_CHUNK = 16384 };
	char first[2048];
	char *stream = malloc(TOTAL + sizeof first);
	size_t len, sent = 0, nget, answered = 0;
	Raw *r;
	TlHttpResponse resp;
	double buffered;
	int64_t t0;

	ck_assert_ptr_nonnull(stream);
	start_with(kv);
	slow_transfer_request(first, sizeof first, "1.5", 1, NULL);
	len = strlen(first);
	memcpy(stream, first, len);
	nget = (TOTAL - len) / (sizeof get - 1);
	for (size_t i = 0; i < nget; i++, len += sizeof get - 1)
		memcpy(stream + len, get, sizeof get - 1);
	r = raw_open();
	/* As much as the kernel takes without our reading anything. */
	for (;;) {
		ssize_t w = send(r->fd, stream + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w <= 0) {
			ck_assert_msg(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s", strerror(errno));
			break;
		}
		sent += (size_t)w;
		if (sent == len)
			break;
		tl_sleep_ms(5);
	}
	tl_sleep_ms(300);
	buffered = metric("twopc_http_buffered_bytes");
	fprintf(stderr,
		"check_http: backpressure: %zu bytes sent while the transaction runs, %.0f buffered in the daemon\n",
		sent, buffered);
	ck_assert_msg(sent > 4096 + 8192 + 2 * READ_CHUNK, "the kernel took only %zu bytes: nothing to hold back",
		      sent);
	ck_assert_msg(buffered > 0, "nothing buffered while the transaction runs");
	/* Bytes read (at most the limits plus one read), as allocated (which
	 * may round up to twice that). */
	ck_assert_msg(buffered <= 2 * (4096 + 8192 + READ_CHUNK), "%.0f bytes buffered: read past the limits",
		      buffered);
	/* Then everything, in order: the transaction first. */
	t0 = tl_now_ms();
	while (answered < 1 + nget) {
		struct pollfd p = {.fd = r->fd, .events = POLLIN | (sent < len ? POLLOUT : 0)};
		size_t n;
		ck_assert_msg(tl_now_ms() - t0 < 60000, "%zu of %zu answers after 60 s", answered, 1 + nget);
		ck_assert(poll(&p, 1, 1000) >= 0);
		if ((p.revents & POLLOUT) && sent < len) {
			ssize_t w = send(r->fd, stream + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				sent += (size_t)w;
		}
		if (!(p.revents & POLLIN))
			continue;
		ck_assert_msg(raw_fill(r, 0), "connection closed after %zu answers", answered);
		while ((n = raw_complete(r)) > 0) {
			char err[256];
			ck_assert_msg(tl_http_parse_response(r->buf, n, &resp, err, sizeof err), "%s", err);
			if (answered == 0) {
				ck_assert_msg(resp.status == 200 && resp.json && tl_json_str(resp.json, "id"),
					      "first answer is not the transaction's: %d %s", resp.status, resp.body);
				tl_http_trace("POST", "/v1/transactions", &resp);
			} else {
				ck_assert_msg(resp.status == 200 && resp.json &&
						  json_object_get(resp.json, "participants"),
					      "answer %zu: %d %s", answered, resp.status, resp.body);
			}
			tl_http_response_free(&resp);
			memmove(r->buf, r->buf + n, r->len - n);
			r->len -= n;
			answered++;
		}
	}
	raw_close(r);
	free(stream);
	expect_healthy();
}
END_TEST

/* Half-closed clients (shutdown(SHUT_WR) after the request) still get the
 * answer, then the daemon closes; a client gone while its transaction
 * runs costs nothing: the transaction finishes, the daemon goes on. */
START_TEST(test_half_close)
{
	char req[2048], hv[64];
	Raw *r;
	TlHttpResponse resp;
	int64_t a0;

	start_with(NULL);
	a0 = balance("bank_a");

	/* Answered at once. */
	r = raw_open();
	raw_sends(r, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert(shutdown(r->fd, SHUT_WR) == 0);
	ck_assert(raw_response(r, "GET", "/healthz", &resp, 10000));
	ck_assert_int_eq(resp.status, 200);
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);

	/* Answered after the transaction (the shutdown arrives meanwhile). */
	r = raw_open();
	slow_transfer_request(req, sizeof req, "0.5", 1, NULL);
	raw_sends(r, req);
	ck_assert(shutdown(r->fd, SHUT_WR) == 0);
	raw_expect_transfer(r, &resp);
	ck_assert_str_eq(tl_http_header(&resp, "Connection", hv, sizeof hv), "close");
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);
	ck_assert_int_eq(balance("bank_a"), a0 - 1);

	/* Gone before the answer: closed outright, and with a reset. */
	for (int i = 0; i < 2; i++) {
		r = raw_open();
		slow_transfer_request(req, sizeof req, "0.5", 1, NULL);
		raw_sends(r, req);
		tl_sleep_ms(100);
		if (i == 1) {
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			ck_assert(setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
		}
		raw_close(r);
	}
	wait_no_txn_in_flight();
	ck_assert_int_eq(balance("bank_a"), a0 - 3);

	/* Reset right after the request, before the daemon has answered it:
	 * the answer's write fails (in the handler, for /healthz). */
	for (int i = 0; i < 20; i++) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		r = raw_open();
		if (i % 2 == 0)
			raw_sends(r, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		else
			raw_sends(r, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
				     "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert(setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
		raw_close(r);
	}
	expect_healthy();
}
END_TEST

/* Clients that stop: one that reads nothing of a big answer is closed at
 * the request deadline (its output buffer freed), one that never closes
 * after a Connection: close answer once the drain time is up. */
START_TEST(test_stalled_clients)
{
	static const char *const kv[] = {"http_request_timeout_ms", "1000", NULL};
	enum { N = 256 };
	char req[N * 64] = "";
	Raw *r;
	double open0, buffered;
	int64_t t0;

	start_with(kv);
	open0 = metric("twopc_http_connections_open"); /* the /metrics request's own */
	r = raw_open_small_rcvbuf();
	for (int i = 0; i < N; i++)
		strcat(req, "GET /dashboard.js HTTP/1.1\r\nHost: t\r\n\r\n");
	raw_sends(r, req);
	tl_sleep_ms(300);
	buffered = metric("twopc_http_buffered_bytes");
	ck_assert_msg(buffered > (double)strlen(req), "nothing waits for the stalled reader (%.0f bytes)", buffered);
	for (t0 = tl_now_ms();; tl_sleep_ms(100)) {
		if (metric("twopc_http_connections_open") == open0 && metric("twopc_http_buffered_bytes") == 0)
			break;
		ck_assert_msg(tl_now_ms() - t0 < 10000, "the stalled reader is still connected after 10 s");
	}
	fprintf(stderr, "check_http: stalled reader closed %lld ms after the deadline started\n",
		(long long)(tl_now_ms() - t0 + 300));
	raw_close(r);

	/* Answered with Connection: close; the client reads it and the FIN, and
	 * keeps its socket open. */
	r = raw_open();
	raw_expect_healthz(r, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	ck_assert(raw_closed_by_server(r, 5000));
	for (t0 = tl_now_ms(); metric("twopc_http_connections_open") > open0; tl_sleep_ms(100))
		ck_assert_msg(tl_now_ms() - t0 < 10000, "a drained connection is still open after 10 s");
	fprintf(stderr, "check_http: lingering client closed after %lld ms of draining\n",
		(long long)(tl_now_ms() - t0));
	raw_close(r);
	expect_healthy();
}
END_TEST

/* Idle keep-alive connections hold no buffer; a request arriving in pieces
 * does, until it is read whole. */
START_TEST(test_idle_no_buffers)
{
	enum { N = 100 };
	Raw *c[N];
	TlHttpResponse resp;
	double partial;

	start_with(NULL);
	for (int i = 0; i < N; i++) {
		c[i] = raw_open();
		raw_sends(c[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert(raw_response(c[i], "GET", "/healthz", &resp, 10000));
		ck_assert_int_eq(resp.status, 200);
		tl_http_response_free(&resp);
	}
	ck_assert_msg(metric("twopc_http_connections_open") >= N, "fewer than %d connections open", N);
	ck_assert_msg(metric("twopc_http_buffered_bytes") == 0, "%d idle connections hold buffers", N);
	raw_sends(c[0], "GET /healthz HTTP/1.1\r\nHo");
	tl_sleep_ms(200);
	partial = metric("twopc_http_buffered_bytes");
	ck_assert_msg(partial >= 25, "a partial request: %.0f bytes buffered", partial);
	raw_sends(c[0], "st: t\r\n\r\n");
	ck_assert(raw_response(c[0], "GET", "/healthz", &resp, 10000));
	ck_assert_int_eq(resp.status, 200);
	tl_http_response_free(&resp);
	ck_assert_msg(metric("twopc_http_buffered_bytes") == 0, "the request was answered, its bytes still buffered");
	for (int i = 0; i < N; i++)
		raw_close(c[i]);
}
END_TEST

/* POST /v1/transactions releases its request's head and body once parsed
 * (http_request_release_input); the answer still follows the request's
 * HTTP version and keep-alive, an Idempotency-Key read before the release
 * is remembered, and an aborted transaction's problem is answered too. */
START_TEST(test_released_request)
{
	char req[2048], hv[64];
	Raw *r;
	TlHttpResponse resp;
	int64_t a0;

	start_with(NULL);
	a0 = balance("bank_a");

	/* HTTP/1.1: keep-alive, no Connection header; the connection goes on. */
	r = raw_open();
	slow_transfer_request(req, sizeof req, "0.2", 1, NULL);
	raw_sends(r, req);
	raw_expect_transfer(r, &resp);
	ck_assert_msg(tl_http_header(&resp, "Connection", hv, sizeof hv) == NULL, "Connection: %s", hv);
	tl_http_response_free(&resp);
	/* With Connection: close: said and done. */
	slow_transfer_request(req, sizeof req, "0.2", 1, "Connection: close\r\n");
	raw_sends(r, req);
	raw_expect_transfer(r, &resp);
	ck_assert_str_eq(tl_http_header(&resp, "Connection", hv, sizeof hv), "close");
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);

	/* HTTP/1.0 asking for keep-alive gets it, twice on one connection. */
	r = raw_open();
	for (int i = 0; i < 2; i++) {
		slow_transfer_request(req, sizeof req, "0.2", 0, "Connection: keep-alive\r\n");
		raw_sends(r, req);
		raw_expect_transfer(r, &resp);
		ck_assert_str_eq(tl_http_header(&resp, "Connection", hv, sizeof hv), "keep-alive");
		tl_http_response_free(&resp);
	}
	raw_close(r);
	/* HTTP/1.0 without: closed after the answer. */
	r = raw_open();
	slow_transfer_request(req, sizeof req, "0.2", 0, NULL);
	raw_sends(r, req);
	raw_expect_transfer(r, &resp);
	ck_assert_str_eq(tl_http_header(&resp, "Connection", hv, sizeof hv), "close");
	tl_http_response_free(&resp);
	ck_assert(raw_closed_by_server(r, 5000));
	raw_close(r);
	ck_assert_int_eq(balance("bank_a"), a0 - 5);

	/* An Idempotency-Key: the retry is a replay of the first answer. */
	r = raw_open();
	for (int i = 0; i < 2; i++) {
		slow_transfer_request(req, sizeof req, "0.2", 1, "Idempotency-Key: released-1\r\n");
		raw_sends(r, req);
		raw_expect_transfer(r, &resp);
		if (i == 1)
			ck_assert_str_eq(tl_http_header(&resp, "Idempotent-Replayed", hv, sizeof hv), "true");
		tl_http_response_free(&resp);
	}
	ck_assert_int_eq(balance("bank_a"), a0 - 6);

	/* Aborted (the guard does not hold): the problem, on the same connection. */
	{
		static const char body[] =
		    "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 999\","
		    "\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";
		snprintf(req, sizeof req, "POST /v1/transactions HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(body), body);
		raw_sends(r, req);
		ck_assert(raw_response(r, "POST", "/v1/transactions", &resp, 30000));
		expect_problem(&resp, 409, "expect-rows");
		ck_assert_msg(tl_http_header(&resp, "Connection", hv, sizeof hv) == NULL, "Connection: %s", hv);
		tl_http_response_free(&resp);
	}
	raw_expect_healthz(r, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
	raw_close(r);
	ck_assert_int_eq(balance("bank_a"), a0 - 6);
}
END_TEST

/* ------------------------------------------------------------- fixtures */

TL_FIXTURE_GLUE(ht_fx)
TL_FIXTURE_SETUP(ht_fx, keepalive_pipelining)
TL_FIXTURE_SETUP(ht_fx, malformed_http)
TL_FIXTURE_SETUP(ht_fx, size_limits)
TL_FIXTURE_SETUP(ht_fx, slowloris)
TL_FIXTURE_SETUP(ht_fx, max_connections)
TL_FIXTURE_SETUP(ht_fx, ten_thousand_connections)
TL_FIXTURE_SETUP(ht_fx, auth)
TL_FIXTURE_SETUP(ht_fx, auth_bad_file)
TL_FIXTURE_SETUP(ht_fx, slow_reader)
TL_FIXTURE_SETUP(ht_fx, pipelined_burst)
TL_FIXTURE_SETUP(ht_fx, pipeline_backpressure)
TL_FIXTURE_SETUP(ht_fx, half_close)
TL_FIXTURE_SETUP(ht_fx, stalled_clients)
TL_FIXTURE_SETUP(ht_fx, idle_no_buffers)
TL_FIXTURE_SETUP(ht_fx, released_request)

int main(void)
{
	Suite *s = suite_create("http");

	TL_FIXTURE_CASE(ht_fx, s, keepalive_pipelining);
	TL_FIXTURE_CASE(ht_fx, s, malformed_http);
	TL_FIXTURE_CASE(ht_fx, s, size_limits);
	TL_FIXTURE_CASE(ht_fx, s, slowloris);
	TL_FIXTURE_CASE(ht_fx, s, max_connections);
	TL_FIXTURE_CASE(ht_fx, s, ten_thousand_connections);
	TL_FIXTURE_CASE(ht_fx, s, auth);
	TL_FIXTURE_CASE(ht_fx, s, auth_bad_file);
	TL_FIXTURE_CASE(ht_fx, s, slow_reader);
	TL_FIXTURE_CASE(ht_fx, s, pipelined_burst);
	TL_FIXTURE_CASE(ht_fx, s, pipeline_backpressure);
	TL_FIXTURE_CASE(ht_fx, s, half_close);
	TL_FIXTURE_CASE(ht_fx, s, stalled_clients);
	TL_FIXTURE_CASE(ht_fx, s, idle_no_buffers);
	TL_FIXTURE_CASE(ht_fx, s, released_request);
	return tl_fixture_main(&ht_fx, s);
}
