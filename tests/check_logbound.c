/*
 * check_logbound: the decision log stays bounded under continuous load
 * (issue 3).
 *
 * The runner starts two throwaway clusters (bank_a, bank_b, each with a
 * table counters(id, n) of LB_ROWS rows at 0); the test, in a forked child,
 * starts twopcd with log_segment_bytes = 64 KiB, so that the log rotates a
 * few hundred times, and drives LB_TOTAL two-participant transactions
 * through it: UPDATE counters SET n = n + 1 WHERE id = $1 on each side.
 *
 * The load comes from LB_CLIENTS HTTP/1.1 keep-alive connections in one
 * libevent loop (evhttp's client): each connection sends its next request
 * when the previous reply arrives. One TCP connection per request would put
 * 200,000 sockets into TIME_WAIT and run out of ephemeral ports. Client c
 * only touches rows whose id is c modulo LB_CLIENTS: no two transactions in
 * flight ever want the same row, so none can wait on a lock, and a lock wait
 * that spans both participants (which only lock_timeout breaks, with a 409)
 * cannot happen. Every reply must therefore be 200 committed.
 *
 * While it runs, the test samples the log directory (every LB_SAMPLE_EVERY
 * replies and every 100 ms): the number of segment files and their total
 * size, keeping the maxima. The bound it asserts, LB_MAX_SEGMENTS segments
 * and LB_MAX_BYTES bytes, comes from how the log removes segments:
 *
 *   - a segment is removed, from the oldest end only, once every COMMIT in
 *     it has its DONE; under this load every transaction finishes within
 *     milliseconds, so normally only the active segment and the one before
 *     it exist;
 *   - a COMMIT still live in the oldest segment once it is more than
 *     CARRY_AFTER_SEGMENTS (4) segments behind the active one is copied
 *     forward, so even a slow transaction pins at most 4 closed segments
 *     plus the ones created while its copy is on its way;
 *   - add the active segment and one that is being unlinked (the log
 *     thread removes files outside its lock, so a sample can still see it):
 *     at most 8 segment files. A segment never grows past
 *     log_segment_bytes (rotation happens before a batch that would not
 *     fit, and a batch here is a few KiB), so 8 files hold at most
 *     8 x 64 KiB; one more segment's worth is allowed for a file being
 *     created while another is being unlinked.
 *
 * After the run: nothing prepared anywhere, the counters sum to LB_TOTAL on
 * each side, and a graceful restart (SIGTERM, then start) replays only what
 * the bounded log still holds. The replay time, the run time and the
 * throughput are printed, never asserted: speed is the benchmark's job, and
 * a timed assertion would fail on a slow or busy machine.
 *
 * Exits 77 (automake SKIP) when no PostgreSQL server binaries are available.
 * TWOPC_LOGBOUND_TOTAL=N runs N transactions instead of 200,000 (for a quick
 * try by hand; the bound assertions hold for any N).
 */
#include "testlib.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LB_TOTAL 200000
#define LB_CLIENTS 32
#define LB_ROWS 1000
#define LB_SEG_BYTES 65536
#define LB_POOL_SIZE 16
#define LB_PROGRESS_EVERY 50000
#define LB_SAMPLE_EVERY 8
#define LB_SAMPLE_MS 100
#define LB_HTTP_TIMEOUT_S 60
#define LB_TIMEOUT_S 1800
#define LB_ERR 2048

/* The bound (see the comment at the top). */
#define LB_MAX_SEGMENTS 8
#define LB_MAX_BYTES ((int64_t)LB_MAX_SEGMENTS * LB_SEG_BYTES + LB_SEG_BYTES)
/* The smallest record on disk: a DONE, 9 bytes of frame header and a u64. */
#define LB_MIN_RECORD_BYTES 17

#define LB_SQL "UPDATE counters SET n = n + 1 WHERE id = $1"
#define LB_SCHEMA                                                                     \
	"CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);"              \
	"INSERT INTO counters SELECT g, 0 FROM generate_series(0, 999) g;"

#define LB_NPART 2
static const char *const lb_names[LB_NPART] = {"bank_a", "bank_b"};

static TlEnv lb_env;
static bool lb_env_tried;
static bool lb_env_ok;
static char lb_env_err[LB_ERR];
static TlDaemon lb_daemon;

/* ------------------------------------------------------- the log directory */

typedef struct LbSeg {
	uint64_t seq;
	int64_t size;
} LbSeg;

#define LB_LIST_MAX 256

/* One look at the log directory. */
typedef struct LbSample {
	int nseg;
	int64_t bytes;
	uint64_t min_seq, max_seq;
	int nlist;
	LbSeg list[LB_LIST_MAX];
} LbSample;

static bool lb_seg_name(const char *name, uint64_t *seq)
{
	char *end;
	int i;

	if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0)
		return false;
	for (i = 0; i < 16; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	*seq = strtoull(name, &end, 16);
	return end == name + 16;
}

/* Counts the segment files of DIR and adds up their sizes. A file unlinked
 * between readdir and stat is simply not counted. */
static bool lb_sample_dir(const char *dir, LbSample *s, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	memset(s, 0, sizeof *s);
	if (d == NULL) {
		snprintf(err, errlen, "opendir %s: %s", dir, strerror(errno));
		return false;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		uint64_t seq;

		if (!lb_seg_name(e->d_name, &seq))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, 0) != 0) {
			if (errno == ENOENT)
				continue;
			snprintf(err, errlen, "stat %s/%s: %s", dir, e->d_name, strerror(errno));
			closedir(d);
			return false;
		}
		if (s->nseg == 0 || seq < s->min_seq)
			s->min_seq = seq;
		if (s->nseg == 0 || seq > s->max_seq)
			s->max_seq = seq;
		s->nseg++;
		s->bytes += (int64_t)st.st_size;
		if (s->nlist < LB_LIST_MAX) {
			s->list[s->nlist].seq = seq;
			s->list[s->nlist].size = (int64_t)st.st_size;
			s->nlist++;
		}
	}
	closedir(d);
	return true;
}

static int lb_seg_cmp(const void *a, const void *b)
{
	const LbSeg *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* "seq:size seq:size ..." in sequence order. */
static void lb_format_listing(LbSample *s, char *buf, size_t len)
{
	size_t used = 0;
	int i;

	buf[0] = '\0';
	qsort(s->list, (size_t)s->nlist, sizeof s->list[0], lb_seg_cmp);
	for (i = 0; i < s->nlist && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%016" PRIx64 ".seg:%" PRId64,
				 i ? " " : "", s->list[i].seq, s->list[i].size);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* ------------------------------------------------------------ the load */

typedef struct LbRun LbRun;

typedef struct LbClient {
	LbRun *run;
	int index;
	struct evhttp_connection *conn;
	uint64_t rng;
	int closes; /* the connection closed (evhttp reconnects on the next request) */
} LbClient;

struct LbRun {
	struct event_base *base;
	struct event *tick;
	const char *log_dir;
	int port;
	int total;
	int issued, replied, ok, failed, in_flight;
	int64_t t0;
	int64_t last_reply_ms;
	char first_failure[512];
	int transport_errors;
	int status_counts[600]; /* replies by HTTP status */

	/* log directory maxima */
	int samples;
	int max_nseg;
	int64_t max_bytes;
	uint64_t first_seq, last_seq;
	char max_nseg_listing[4096];
	char max_bytes_listing[4096];
	char sample_err[LB_ERR];

	LbClient clients[LB_CLIENTS];
};

static uint64_t lb_rand(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* A row that only this client touches: no two transactions in flight ever
 * share a row, on either participant. */
static int lb_row(LbClient *c)
{
	int per = LB_ROWS / LB_CLIENTS; /* rows c, c+32, ..., below LB_ROWS */

	return c->index + LB_CLIENTS * (int)(lb_rand(&c->rng) % (uint64_t)per);
}

static void lb_sample(LbRun *run)
{
	LbSample s;
	char err[LB_ERR];

	if (run->sample_err[0] != '\0')
		return;
	if (!lb_sample_dir(run->log_dir, &s, err, sizeof err)) {
		snprintf(run->sample_err, sizeof run->sample_err, "%s", err);
		return;
	}
	run->samples++;
	if (s.nseg > 0) {
		if (run->first_seq == 0 || s.min_seq < run->first_seq)
			run->first_seq = s.min_seq;
		if (s.max_seq > run->last_seq)
			run->last_seq = s.max_seq;
	}
	if (s.nseg > run->max_nseg) {
		run->max_nseg = s.nseg;
		lb_format_listing(&s, run->max_nseg_listing, sizeof run->max_nseg_listing);
	}
	if (s.bytes > run->max_bytes) {
		run->max_bytes = s.bytes;
		lb_format_listing(&s, run->max_bytes_listing, sizeof run->max_bytes_listing);
	}
}

static void lb_send(LbClient *c);

static void lb_progress(LbRun *run)
{
	int64_t ms = tl_now_ms() - run->t0;

	fprintf(stderr,
		"check_logbound: %d/%d replies (%d ok, %d failed) in %.1f s (%.0f tx/s); "
		"log so far: max %d segments, max %" PRId64 " bytes, newest segment %" PRIu64 "\n",
		run->replied, run->total, run->ok, run->failed, (double)ms / 1000.0,
		ms > 0 ? (double)run->replied * 1000.0 / (double)ms : 0.0, run->max_nseg,
		run->max_bytes, run->last_seq);
}

static void lb_on_close(struct evhttp_connection *conn, void *arg)
{
	LbClient *c = arg;

	(void)conn;
	c->closes++;
}

static void lb_on_reply(struct evhttp_request *req, void *arg)
{
	LbClient *c = arg;
	LbRun *run = c->run;
	int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
	bool committed = false;

	run->in_flight--;
	run->replied++;
	run->last_reply_ms = tl_now_ms();
	if (code == 200) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(in);
		const char *body = (const char *)evbuffer_pullup(in, -1);

		committed = body != NULL &&
			    memmem(body, len, "\"outcome\":\"committed\"", 21) != NULL;
	}
	if (code >= 0 && code < 600)
		run->status_counts[code]++;
	if (code == 0)
		run->transport_errors++;
	if (committed) {
		run->ok++;
	} else {
		run->failed++;
		if (run->first_failure[0] == '\0') {
			char body[256] = "";

			if (req != NULL) {
				struct evbuffer *in = evhttp_request_get_input_buffer(req);
				size_t n = evbuffer_get_length(in);

				if (n >= sizeof body)
					n = sizeof body - 1;
				evbuffer_copyout(in, body, n);
				body[n] = '\0';
			}
			snprintf(run->first_failure, sizeof run->first_failure,
				 "client %d, reply %d: %s %d: %s", c->index, run->replied,
				 code == 0 ? "transport error, status" : "HTTP", code,
				 code == 0 ? "(no response)" : body);
		}
	}
	if (run->replied % LB_SAMPLE_EVERY == 0)
		lb_sample(run);
	if (run->replied % LB_PROGRESS_EVERY == 0)
		lb_progress(run);
	if (run->issued < run->total)
		lb_send(c);
	else if (run->in_flight == 0)
		event_base_loopexit(run->base, NULL);
}

static void lb_send(LbClient *c)
{
	LbRun *run = c->run;
	struct evhttp_request *req = evhttp_request_new(lb_on_reply, c);
	struct evkeyvalq *h;
	char body[512];
	int n;

	ck_assert_ptr_nonnull(req);
	n = snprintf(body, sizeof body,
		     "{\"branches\":{"
		     "\"bank_a\":[{\"sql\":\"" LB_SQL "\",\"params\":[%d],\"expect_rows\":1}],"
		     "\"bank_b\":[{\"sql\":\"" LB_SQL "\",\"params\":[%d],\"expect_rows\":1}]},"
		     "\"timeout_ms\":30000}",
		     lb_row(c), lb_row(c));
	ck_assert(n > 0 && (size_t)n < sizeof body);
	h = evhttp_request_get_output_headers(req);
	ck_assert_int_eq(evhttp_add_header(h, "Host", "127.0.0.1"), 0);
	ck_assert_int_eq(evhttp_add_header(h, "Content-Type", "application/json"), 0);
	ck_assert_int_eq(evbuffer_add(evhttp_request_get_output_buffer(req), body, (size_t)n), 0);
	/* on failure evhttp frees the request and will not call back */
	ck_assert_int_eq(evhttp_make_request(c->conn, req, EVHTTP_REQ_POST, "/v1/transactions"), 0);
	run->issued++;
	run->in_flight++;
}

static void lb_on_tick(evutil_socket_t fd, short what, void *arg)
{
	LbRun *run = arg;

	(void)fd;
	(void)what;
	lb_sample(run);
	if (run->in_flight > 0 && tl_now_ms() - run->last_reply_ms > 2 * LB_HTTP_TIMEOUT_S * 1000) {
		snprintf(run->sample_err, sizeof run->sample_err,
			 "no reply for %d s with %d requests in flight", 2 * LB_HTTP_TIMEOUT_S,
			 run->in_flight);
		event_base_loopexit(run->base, NULL);
	}
}

/* ---------------------------------------------------------------- helpers */

static TlCluster *lb_cluster(const char *name)
{
	TlCluster *c = tl_env_cluster(&lb_env, name);

	ck_assert_msg(c != NULL, "no cluster %s", name);
	return c;
}

static int64_t lb_scalar(const char *part, const char *sql)
{
	char err[LB_ERR];
	int64_t v = 0;

	if (!tl_pg_scalar_i64(lb_cluster(part), sql, 0, NULL, &v, err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

static void lb_assert_nothing_prepared(int wait_ms)
{
	int64_t deadline = tl_now_ms() + wait_ms;
	char err[LB_ERR];

	for (;;) {
		int64_t n[LB_NPART] = {0, 0};
		int i;

		for (i = 0; i < LB_NPART; i++)
			if (!tl_pg_count_prepared(lb_cluster(lb_names[i]), &n[i], err, sizeof err))
				ck_abort_msg("%s", err);
		if (n[0] + n[1] == 0)
			return;
		if (tl_now_ms() >= deadline)
			ck_abort_msg("prepared transactions left after %d ms: bank_a=%" PRId64
				     " bank_b=%" PRId64,
				     wait_ms, n[0], n[1]);
		tl_sleep_ms(200);
	}
}

/* Rewrites the config tl_daemon_configure wrote: same port and log
 * directory, small segments and bigger pools. */
static void lb_write_config(const TlDaemon *d)
{
	FILE *f = fopen(d->conf_path, "w");
	int i;

	ck_assert_msg(f != NULL, "%s: %s", d->conf_path, strerror(errno));
	fprintf(f,
		"; written by tests/check_logbound.c\n"
		"[coordinator]\n"
		"id = t1\n"
		"listen = 127.0.0.1:%d\n"
		"log_dir = %s\n"
		"default_timeout_ms = 30000\n"
		"lock_timeout_ms = 1000\n"
		"log_segment_bytes = %d\n"
		"log_level = info\n",
		d->port, d->log_dir, LB_SEG_BYTES);
	for (i = 0; i < lb_env.ncluster; i++)
		fprintf(f, "\n[participant %s]\nconninfo = %s\npool_size = %d\n",
			lb_env.clusters[i].name, lb_env.clusters[i].conninfo, LB_POOL_SIZE);
	ck_assert_msg(!ferror(f), "%s: write error", d->conf_path);
	ck_assert_msg(fclose(f) == 0, "%s: %s", d->conf_path, strerror(errno));
}

typedef struct LbReplay {
	uint64_t records, segments, live;
	double ms;
} LbReplay;

/* The last "decision log: N records in M segments replayed in X ms; L
 * decided transactions not yet done" line of the daemon's log. */
static bool lb_read_replay_line(const char *path, LbReplay *out, char *line, size_t linelen)
{
	FILE *f = fopen(path, "r");
	char buf[4096];
	bool found = false;

	if (f == NULL)
		return false;
	while (fgets(buf, sizeof buf, f) != NULL) {
		const char *p = strstr(buf, "decision log: ");
		unsigned long long rec, seg, live;
		double ms;

		if (p == NULL || strstr(p, " replayed in ") == NULL)
			continue;
		if (sscanf(p,
			   "decision log: %llu records in %llu segments replayed in %lf ms; %llu "
			   "decided",
			   &rec, &seg, &ms, &live) == 4) {
			out->records = rec;
			out->segments = seg;
			out->ms = ms;
			out->live = live;
			snprintf(line, linelen, "%s", buf);
			line[strcspn(line, "\n")] = '\0';
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* --------------------------------------------------------------- fixtures */

static void lb_clusters_setup(void)
{
	int i;

	if (lb_env_tried)
		return;
	lb_env_tried = true;
	fflush(NULL);
	if (!tl_env_init(&lb_env, lb_env_err, sizeof lb_env_err))
		return;
	lb_env.keep_tmpdir = getenv("TWOPC_TEST_KEEP") != NULL;
	for (i = 0; i < LB_NPART; i++) {
		if (!tl_env_add_cluster(&lb_env, lb_names[i], lb_env_err, sizeof lb_env_err))
			return;
		if (!tl_pg_exec(tl_env_cluster(&lb_env, lb_names[i]), LB_SCHEMA, lb_env_err,
				sizeof lb_env_err))
			return;
	}
	fprintf(stderr, "check_logbound: clusters in %s: bank_a:%d bank_b:%d\n", lb_env.tmpdir,
		lb_env.clusters[0].port, lb_env.clusters[1].port);
	lb_env_ok = true;
}

static void lb_setup(void)
{
	char err[LB_ERR];
	char log_dir[TL_PATH_MAX + 32];

	ck_assert_msg(lb_env_ok, "test clusters could not be created: %s", lb_env_err);
	if (!tl_fmt(log_dir, sizeof log_dir, "%s/twopcd-log", lb_env.tmpdir))
		ck_abort_msg("temporary directory path too long");
	if (!tl_daemon_configure(&lb_daemon, &lb_env, log_dir, "logbound", err, sizeof err))
		ck_abort_msg("%s", err);
	lb_write_config(&lb_daemon);
	if (!tl_daemon_start(&lb_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
}

static void lb_teardown(void)
{
	char err[LB_ERR];

	if (!tl_daemon_kill(&lb_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}

/* ------------------------------------------------------------------- test */

START_TEST(test_log_bounded)
{
	LbRun *run = calloc(1, sizeof *run);
	struct timeval tick = {0, LB_SAMPLE_MS * 1000};
	const char *total_env = getenv("TWOPC_LOGBOUND_TOTAL");
	int64_t a0, b0, a1, b1, elapsed;
	char err[LB_ERR], line[4096], listing[4096];
	LbSample end;
	LbReplay rp;
	int i, closes = 0, wstatus = 0;
	double tps;

	ck_assert_ptr_nonnull(run);
	run->total = LB_TOTAL;
	if (total_env != NULL && atoi(total_env) > 0)
		run->total = atoi(total_env);
	run->log_dir = lb_daemon.log_dir;
	run->port = lb_daemon.port;
	a0 = lb_scalar("bank_a", "SELECT sum(n) FROM counters");
	b0 = lb_scalar("bank_b", "SELECT sum(n) FROM counters");

	run->base = event_base_new();
	ck_assert_ptr_nonnull(run->base);
	run->tick = event_new(run->base, -1, EV_PERSIST, lb_on_tick, run);
	ck_assert_ptr_nonnull(run->tick);
	ck_assert_int_eq(event_add(run->tick, &tick), 0);
	for (i = 0; i < LB_CLIENTS; i++) {
		LbClient *c = &run->clients[i];

		c->run = run;
		c->index = i;
		c->rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1) ^ (uint64_t)getpid();
		c->conn = evhttp_connection_base_new(run->base, NULL, "127.0.0.1",
						     (unsigned short)lb_daemon.port);
		ck_assert_ptr_nonnull(c->conn);
		evhttp_connection_set_timeout(c->conn, LB_HTTP_TIMEOUT_S);
		evhttp_connection_set_closecb(c->conn, lb_on_close, c);
	}
	fprintf(stderr,
		"check_logbound: %d transactions from %d keep-alive clients, log_segment_bytes %d, "
		"pool_size %d\n",
		run->total, LB_CLIENTS, LB_SEG_BYTES, LB_POOL_SIZE);
	run->t0 = tl_now_ms();
	run->last_reply_ms = run->t0;
	lb_sample(run);
	for (i = 0; i < LB_CLIENTS && run->issued < run->total; i++)
		lb_send(&run->clients[i]);
	ck_assert_int_eq(event_base_dispatch(run->base), 0);
	elapsed = tl_now_ms() - run->t0;
	lb_sample(run);
	if (run->replied % LB_PROGRESS_EVERY != 0)
		lb_progress(run);
	for (i = 0; i < LB_CLIENTS; i++) {
		/* counted before the free, which may call the close callback */
		closes += run->clients[i].closes;
		evhttp_connection_free(run->clients[i].conn);
	}
	event_free(run->tick);
	event_base_free(run->base);

	tps = elapsed > 0 ? (double)run->replied * 1000.0 / (double)elapsed : 0.0;
	fprintf(stderr,
		"check_logbound: %d transactions in %.1f s (%.0f tx/s): %d committed, %d failed "
		"(%d transport errors, %d HTTP 409, %d HTTP 503, %d HTTP 504); %d connection closes\n",
		run->replied, (double)elapsed / 1000.0, tps, run->ok, run->failed,
		run->transport_errors, run->status_counts[409], run->status_counts[503],
		run->status_counts[504], closes);
	fprintf(stderr,
		"check_logbound: log: %d samples; segments %016" PRIx64 "..%016" PRIx64
		" seen (%" PRIu64 " rotations); max %d segment files [%s]; max %" PRId64
		" bytes [%s]\n",
		run->samples, run->first_seq, run->last_seq, run->last_seq - run->first_seq,
		run->max_nseg, run->max_nseg_listing, run->max_bytes, run->max_bytes_listing);

	ck_assert_msg(run->sample_err[0] == '\0', "%s", run->sample_err);
	ck_assert_msg(run->replied == run->total, "%d replies for %d requests", run->replied,
		      run->total);
	if (run->failed > 0)
		tl_daemon_print_log_tail(&lb_daemon, 40);
	ck_assert_msg(run->failed == 0, "%d of %d transactions not committed; first: %s",
		      run->failed, run->total, run->first_failure);
	/* keep-alive really kept the connections: no reconnect per request */
	ck_assert_msg(closes <= LB_CLIENTS, "%d connection closes in %d requests", closes,
		      run->total);

	/* The log rotated (so the bound means something) and stayed bounded.
	 * Each transaction writes at least a COMMIT and a DONE of 17+ bytes. */
	ck_assert_msg(run->total < 20000 ||
			      run->last_seq - run->first_seq >=
				      (uint64_t)run->total * 2 * LB_MIN_RECORD_BYTES / LB_SEG_BYTES,
		      "only %" PRIu64 " rotations for %d transactions",
		      run->last_seq - run->first_seq, run->total);
	ck_assert_msg(run->max_nseg <= LB_MAX_SEGMENTS,
		      "log not bounded: %d segment files at once (bound %d): %s", run->max_nseg,
		      LB_MAX_SEGMENTS, run->max_nseg_listing);
	ck_assert_msg(run->max_bytes <= LB_MAX_BYTES,
		      "log not bounded: %" PRId64 " bytes at once (bound %" PRId64 "): %s",
		      run->max_bytes, LB_MAX_BYTES, run->max_bytes_listing);

	/* Every committed transaction is applied on both sides, none is left
	 * prepared. */
	lb_assert_nothing_prepared(10000);
	a1 = lb_scalar("bank_a", "SELECT sum(n) FROM counters");
	b1 = lb_scalar("bank_b", "SELECT sum(n) FROM counters");
	ck_assert_msg(a1 - a0 == run->total && b1 - b0 == run->total,
		      "counters grew by %" PRId64 " on bank_a and %" PRId64
		      " on bank_b, want %d on each (sum %" PRId64 ", want %d)",
		      a1 - a0, b1 - b0, run->total, (a1 - a0) + (b1 - b0), 2 * run->total);

	/* Graceful stop, then a restart that replays what is left. */
	ck_assert_msg(kill(lb_daemon.pid, SIGTERM) == 0, "kill -TERM %d: %s", (int)lb_daemon.pid,
		      strerror(errno));
	if (!tl_daemon_wait_exit(&lb_daemon, 30000, &wstatus, err, sizeof err)) {
		tl_daemon_print_log_tail(&lb_daemon, 30);
		ck_abort_msg("%s", err);
	}
	ck_assert_msg(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
		      "twopcd did not exit 0 on SIGTERM (status 0x%x)", (unsigned)wstatus);
	if (!lb_sample_dir(lb_daemon.log_dir, &end, err, sizeof err))
		ck_abort_msg("%s", err);
	lb_format_listing(&end, listing, sizeof listing);
	fprintf(stderr, "check_logbound: after SIGTERM: %d segment files, %" PRId64 " bytes [%s]\n",
		end.nseg, end.bytes, listing);
	ck_assert_msg(end.nseg <= LB_MAX_SEGMENTS && end.bytes <= LB_MAX_BYTES,
		      "log not bounded after the stop: %d files, %" PRId64 " bytes: %s", end.nseg,
		      end.bytes, listing);

	if (!tl_daemon_start(&lb_daemon, NULL, err, sizeof err))
		ck_abort_msg("restart: %s", err);
	ck_assert_msg(lb_read_replay_line(lb_daemon.log_path, &rp, line, sizeof line),
		      "no 'decision log: ... replayed in' line in %s", lb_daemon.log_path);
	fprintf(stderr,
		"check_logbound: restart: %" PRIu64 " records in %" PRIu64
		" segments replayed in %.1f ms (%" PRIu64 " decided not done)\n"
		"check_logbound:   daemon said: %s\n"
		"check_logbound: summary: %d tx in %.1f s = %.0f tx/s; max %d segments, max %" PRId64
		" bytes; replay %.1f ms\n",
		rp.records, rp.segments, rp.ms, rp.live, line, run->replied,
		(double)elapsed / 1000.0, tps, run->max_nseg, run->max_bytes, rp.ms);
	/* The replay covers only what the bounded log still holds: at most
	 * what fits in the files counted above, not the 2 x N records written. */
	ck_assert_msg(rp.segments == (uint64_t)end.nseg, "replayed %" PRIu64
							 " segments, the directory held %d",
		      rp.segments, end.nseg);
	ck_assert_msg(rp.records <= (uint64_t)end.bytes / LB_MIN_RECORD_BYTES,
		      "replayed %" PRIu64 " records from %" PRId64 " bytes", rp.records, end.bytes);
	ck_assert_msg(rp.records < 10000, "replayed %" PRIu64 " records: the log is not bounded",
		      rp.records);
	ck_assert_msg(rp.live == 0, "%" PRIu64 " decided transactions not done after a clean stop",
		      rp.live);
	free(run);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static Suite *lb_suite(void)
{
	Suite *s = suite_create("logbound");
	TCase *tc = tcase_create("log_bounded");

	tcase_add_unchecked_fixture(tc, lb_clusters_setup, NULL);
	tcase_add_checked_fixture(tc, lb_setup, lb_teardown);
	tcase_set_timeout(tc, LB_TIMEOUT_S);
	tcase_add_test(tc, test_log_bounded);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *skip = tl_skip_reason();
	SRunner *sr;
	int failed;

	if (skip != NULL) {
		fprintf(stderr, "check_logbound: SKIP: %s\n", skip);
		return TL_EXIT_SKIP;
	}
	sr = srunner_create(lb_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	if (failed > 0 && lb_daemon.log_path[0] == '\0' && lb_env.tmpdir[0] != '\0') {
		char path[TL_PATH_MAX + 64];

		/* the daemon ran in the forked test: find its log by name */
		if (tl_fmt(path, sizeof path, "%s/twopcd-logbound.log", lb_env.tmpdir) &&
		    access(path, R_OK) == 0)
			tl_print_file_tail(path, 40);
	}
	srunner_free(sr);
	if (lb_env.keep_tmpdir && lb_env.tmpdir[0] != '\0')
		fprintf(stderr, "check_logbound: kept %s\n", lb_env.tmpdir);
	tl_env_destroy(&lb_env);
	return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
