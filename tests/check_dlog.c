/*
 * check_dlog: unit tests for the decision log (coordinator/decision_log.c)
 * and its checksum (coordinator/crc32c.c).
 *
 * A COMMIT record on disk IS the commit decision: if the log loses or
 * invents one, participants end up split. So this file checks, with real
 * files in a temporary directory and a real libevent loop:
 *   - CRC-32C against the standard vectors, and the SSE4.2 path against
 *     the table;
 *   - the frame codec: round trips, every truncation, every single-byte
 *     corruption (never decoded as a valid record), bad lengths and types;
 *   - that a completion fires only once its record can be read back from
 *     the segment files (decoded here independently of the log's reader)
 *     and an fdatasync of that file has covered it (this file interposes
 *     fdatasync to watch), and that group commit batches fsyncs;
 *   - replay after close, torn tails (cut frame, zero fill, bad last CRC)
 *     that are truncated, and corruption elsewhere that is refused;
 *   - that segments whose COMMITs all have their DONE are deleted, the
 *     others kept, and that deleting one never loses a DONE whose COMMIT
 *     is kept (the transaction would come back as live after a restart);
 *   - the one-process-per-directory flock;
 *   - Idempotency-Key records: the COMMIT extension and the IDEM record
 *     (round trips, truncations, corruptions, every malformed extension
 *     refused with a message naming the problem, old COMMITs still read);
 *     a finished keyed COMMIT remembered until its ttl (its segment kept),
 *     forgotten after it (replay, DONE, dlog_expire_idempotency, which
 *     lets the segments go even when nothing more is written), carried
 *     forward as an IDEM record that survives a restart, and no endless
 *     carrying when the remembered keys alone fill many segments.
 * Temporary directories live under one per-TCase directory created and
 * removed by an unchecked fixture, so they go away even when a test fails.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "crc32c.h"
#include "decision_log.h"
#include "log.h"
#include "sha256.h"
#include "util.h"

/* ---- small helpers ----------------------------------------------------------- */

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define ck_assert_contains(s, sub)                                                                                     \
	ck_assert_msg(strstr((s), (sub)) != NULL, "\"%s\" does not contain \"%s\"", (s), (sub))

static char base_dir[512];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Unchecked fixture: runs in the parent, so cleanup happens even after a
 * failed (exited) test child. */
static void base_setup(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(base_dir, sizeof(base_dir), "%s/twopc-check-dlog-XXXXXX", t && *t ? t : "/tmp");
	if (mkdtemp(base_dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
}

static void base_teardown(void)
{
	rm_rf(base_dir);
}

static void make_dir(char *buf, size_t len, const char *tag)
{
	int n = snprintf(buf, len, "%s/%s-XXXXXX", base_dir, tag);
	ck_assert(n > 0 && (size_t)n < len);
	ck_assert_msg(mkdtemp(buf) != NULL, "mkdtemp(%s): %s", buf, strerror(errno));
}

static void seg_path(char *buf, size_t len, const char *dir, uint64_t seq)
{
	int n = snprintf(buf, len, "%s/%016" PRIx64 ".seg", dir, seq);
	ck_assert(n > 0 && (size_t)n < len);
}

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static bool seg_exists(const char *dir, uint64_t seq)
{
	char p[600];
	seg_path(p, sizeof(p), dir, seq);
	return file_exists(p);
}

static off_t file_size(const char *path)
{
	struct stat st;
	ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
	return st.st_size;
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;
	size_t off = 0;

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert(fstat(fd, &st) == 0);
	buf = malloc((size_t)st.st_size + 1);
	ck_assert_ptr_nonnull(buf);
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + off, (size_t)st.st_size - off);
		ck_assert_msg(r > 0, "read %s: %s", path, strerror(errno));
		off += (size_t)r;
	}
	close(fd);
	*len = off;
	return buf;
}

static void write_whole(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void append_bytes(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void xor_byte_at(const char *path, off_t off, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	ck_assert(fd >= 0);
	ck_assert_int_eq(pread(fd, &b, 1, off), 1);
	b ^= mask;
	ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void set_u32_at(const char *path, off_t off, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	int fd = open(path, O_RDWR);
	ck_assert(fd >= 0);
	ck_assert_int_eq(pwrite(fd, b, 4, off), 4);
	close(fd);
}

/* ---- watching fdatasync ------------------------------------------------------------ */

/* The log's own fdatasync calls resolve to this definition (the program's
 * symbol wins over libc's), which records how far each file was synced:
 * everything in a file up to its size at the moment fdatasync started is
 * durable once it returns. */
typedef struct SyncMark {
	dev_t dev;
	ino_t ino;
	off_t size;
} SyncMark;

static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static SyncMark sync_marks[1024];
static size_t nsync_marks;

int fdatasync(int fd)
{
	struct stat st;
	bool have = fstat(fd, &st) == 0;
	int r = (int)syscall(SYS_fdatasync, fd);

	if (r == 0 && have) {
		pthread_mutex_lock(&sync_mu);
		size_t i;
		for (i = 0; i < nsync_marks; i++) {
			if (sync_marks[i].dev == st.st_dev && sync_marks[i].ino == st.st_ino)
				break;
		}
		if (i == nsync_marks && nsync_marks < sizeof(sync_marks) / sizeof(sync_marks[0]))
			sync_marks[nsync_marks++] = (SyncMark){st.st_dev, st.st_ino, 0};
		if (i < nsync_marks && st.st_size > sync_marks[i].size)
			sync_marks[i].size = st.st_size;
		pthread_mutex_unlock(&sync_mu);
	}
	return r;
}

/* How many bytes of the file at path an fdatasync has covered. */
static off_t synced_bytes(const char *path)
{
	struct stat st;
	off_t size = 0;

	if (stat(path, &st) != 0)
		return -1;
	pthread_mutex_lock(&sync_mu);
	for (size_t i = 0; i < nsync_marks; i++) {
		if (sync_marks[i].dev == st.st_dev && sync_marks[i].ino == st.st_ino)
			size = sync_marks[i].size;
	}
	pthread_mutex_unlock(&sync_mu);
	return size;
}

/* ---- records --------------------------------------------------------------------- */

typedef struct TestRec {
	DlogRecord rec;
	DlogBranchRef br[4];
	DlogIdem idem;
} TestRec;

/* Response bytes for keyed records: JSON-looking, with a NUL in it (the
 * response is bytes, not a C string). */
static char test_response[DLOG_IDEM_RESPONSE_MAX];

static void fill_test_response(void)
{
	static const char pattern[] = "{\"txn_id\":\"0123\",\"status\":\"committed\"}";
	for (size_t i = 0; i < sizeof(test_response); i++)
		test_response[i] = pattern[i % (sizeof(pattern) - 1)];
	test_response[7] = '\0';
}

/* The deterministic COMMIT of transaction txn: 1 to 3 branches. */
static void make_commit(TestRec *t, uint64_t txn)
{
	memset(t, 0, sizeof(*t));
	t->rec.type = DLOG_COMMIT;
	t->rec.txn_id = txn;
	t->rec.wall_ms = 1700000000000LL + (int64_t)txn;
	t->rec.nbranches = (uint16_t)(1 + txn % 3);
	t->rec.branches = t->br;
	for (int i = 0; i < t->rec.nbranches; i++) {
		t->br[i].index = (uint16_t)(i * 7 + txn % 5);
		snprintf(t->br[i].name, sizeof(t->br[i].name), "bank_%c_%" PRIu64, 'a' + i, txn);
	}
}

/* The COMMIT of txn (make_commit's branches) taken at wall_ms, with the
 * Idempotency-Key "key-<txn>", the SHA-256 of "body-<txn>" and a 200 with
 * resp_len bytes of test_response. The record points into t. */
static void make_keyed_commit(TestRec *t, uint64_t txn, int64_t wall_ms, uint32_t resp_len)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "body-%" PRIu64, txn);

	make_commit(t, txn);
	if (test_response[0] == '\0')
		fill_test_response();
	t->rec.wall_ms = wall_ms;
	snprintf(t->idem.key, sizeof(t->idem.key), "key-%" PRIu64, txn);
	sha256(body, (size_t)n, t->idem.fingerprint);
	t->idem.status = 200;
	t->idem.response = test_response;
	t->idem.response_len = resp_len;
	t->rec.idem = &t->idem;
}

/* What the log remembers of a finished keyed COMMIT: an IDEM record. */
static void make_idem(TestRec *t, uint64_t txn, int64_t wall_ms, uint32_t resp_len)
{
	make_keyed_commit(t, txn, wall_ms, resp_len);
	t->rec.type = DLOG_IDEM;
	t->rec.nbranches = 0;
	t->rec.branches = NULL;
}

static size_t commit_size(uint64_t txn)
{
	TestRec t;
	make_commit(&t, txn);
	return dlog_encoded_size(&t.rec);
}

static bool idem_equal(const DlogIdem *a, const DlogIdem *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a->key, b->key) == 0 && memcmp(a->fingerprint, b->fingerprint, DLOG_IDEM_FP_LEN) == 0 &&
	       a->status == b->status && a->response_len == b->response_len &&
	       (a->response_len == 0 || memcmp(a->response, b->response, a->response_len) == 0);
}

static bool rec_equal(const DlogRecord *a, const DlogRecord *b)
{
	if (a->type != b->type || a->txn_id != b->txn_id)
		return false;
	if (a->type == DLOG_IDEM)
		return a->wall_ms == b->wall_ms && a->nbranches == 0 && b->nbranches == 0 &&
		       idem_equal(a->idem, b->idem);
	if (a->type != DLOG_COMMIT)
		return true;
	if (a->wall_ms != b->wall_ms || a->nbranches != b->nbranches || !idem_equal(a->idem, b->idem))
		return false;
	for (uint16_t i = 0; i < a->nbranches; i++) {
		if (a->branches[i].index != b->branches[i].index ||
		    strcmp(a->branches[i].name, b->branches[i].name) != 0)
			return false;
	}
	return true;
}

/* ---- an independent reader of the segment files ------------------------------------ */

typedef struct DiskLog {
	DlogRecord *recs;
	size_t *ends;      /* offset just past each record in its file */
	char (*files)[32]; /* the segment file name of each record */
	size_t n, cap;
	int nfiles;
} DiskLog;

static int seg_filter(const struct dirent *de)
{
	size_t l = strlen(de->d_name);
	return l == 20 && strcmp(de->d_name + 16, ".seg") == 0;
}

/* Decodes every complete frame of every segment, oldest first. */
static void disk_read(const char *dir, DiskLog *out)
{
	struct dirent **names;
	int n = scandir(dir, &names, seg_filter, alphasort);

	memset(out, 0, sizeof(*out));
	ck_assert_msg(n >= 0, "scandir %s: %s", dir, strerror(errno));
	out->nfiles = n;
	for (int i = 0; i < n; i++) {
		char path[600];
		size_t len, off = 0;
		int pn = snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		ck_assert(pn > 0 && (size_t)pn < sizeof(path));
		uint8_t *buf = read_whole(path, &len);
		while (off < len) {
			DlogRecord r;
			size_t flen = 0;
			char why[128];
			if (dlog_decode(buf + off, len - off, &r, &flen, why, sizeof(why)) != DLOG_DEC_OK)
				break;
			if (out->n == out->cap) {
				out->cap = out->cap ? out->cap * 2 : 256;
				out->recs = realloc(out->recs, out->cap * sizeof(DlogRecord));
				out->ends = realloc(out->ends, out->cap * sizeof(size_t));
				out->files = realloc(out->files, out->cap * sizeof(*out->files));
				ck_assert(out->recs && out->ends && out->files);
			}
			off += flen;
			out->recs[out->n] = r;
			out->ends[out->n] = off;
			strlcpy_s(out->files[out->n], names[i]->d_name, sizeof(out->files[0]));
			out->n++;
		}
		free(buf);
		free(names[i]);
	}
	free(names);
}

static void disk_free(DiskLog *d)
{
	for (size_t i = 0; i < d->n; i++)
		dlog_record_clear(&d->recs[i]);
	free(d->recs);
	free(d->ends);
	free(d->files);
	memset(d, 0, sizeof(*d));
}

/* How many records equal to want the segment files hold; with `synced`,
 * only those an fdatasync of their file has covered. */
static size_t disk_count_ex(const char *dir, const DlogRecord *want, bool synced)
{
	DiskLog d;
	size_t c = 0;
	disk_read(dir, &d);
	for (size_t i = 0; i < d.n; i++) {
		if (!rec_equal(&d.recs[i], want))
			continue;
		if (synced) {
			char path[700];
			int pn = snprintf(path, sizeof(path), "%s/%s", dir, d.files[i]);
			ck_assert(pn > 0 && (size_t)pn < sizeof(path));
			if (synced_bytes(path) < (off_t)d.ends[i])
				continue;
		}
		c++;
	}
	disk_free(&d);
	return c;
}

static size_t disk_count(const char *dir, const DlogRecord *want)
{
	return disk_count_ex(dir, want, false);
}

/* ---- the log under test, its loop and writers ----------------------------------------- */

typedef struct Harness {
	char dir[600];
	Dlog *log;
	struct event_base *base;
	DlogLoadStats load;
} Harness;

/* The idempotency ttl of the tests that do not care: an hour. */
#define TTL_HOUR (3600 * 1000LL)

static void h_open_ttl(Harness *h, const char *dir, int64_t seg_bytes, int64_t ttl_ms)
{
	char err[1024] = "";
	if (dir != h->dir)
		ck_assert_uint_lt(strlcpy_s(h->dir, dir, sizeof(h->dir)), sizeof(h->dir));
	h->log = NULL;
	h->base = NULL;
	bool ok = dlog_open(h->dir, seg_bytes, ttl_ms, &h->log, &h->load, err, sizeof(err));
	ck_assert_msg(ok, "dlog_open(%s): %s", h->dir, err);
	ck_assert_ptr_nonnull(h->log);
}

static void h_open(Harness *h, const char *dir, int64_t seg_bytes)
{
	h_open_ttl(h, dir, seg_bytes, TTL_HOUR);
}

static void h_start(Harness *h)
{
	char err[256] = "";
	h->base = event_base_new();
	ck_assert_ptr_nonnull(h->base);
	ck_assert_msg(dlog_start(h->log, h->base, err, sizeof(err)), "dlog_start: %s", err);
}

static void h_close(Harness *h)
{
	dlog_close(h->log); /* frees its event: before the base */
	h->log = NULL;
	if (h->base)
		event_base_free(h->base);
	h->base = NULL;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs the loop until *counter reaches target or timeout_ms passes. A
 * periodic timer bounds each EVLOOP_ONCE round. */
static void run_until(struct event_base *base, const int *counter, int target, int timeout_ms)
{
	struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	struct timeval tv = {0, 5000};
	int64_t deadline = mono_ms() + timeout_ms;

	ck_assert_ptr_nonnull(tick);
	event_add(tick, &tv);
	while (*counter < target && mono_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
}

/* Runs the loop until the directory holds at most max segments. */
static int run_until_segments(struct event_base *base, const char *dir, int max, int timeout_ms)
{
	struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	struct timeval tv = {0, 5000};
	int64_t deadline = mono_ms() + timeout_ms;
	int n;

	event_add(tick, &tv);
	while ((n = dlog_count_segments(dir)) > max && mono_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
	return n;
}

typedef enum DoneMode { DONE_NONE, DONE_ALL, DONE_EVEN } DoneMode;

typedef struct Writer Writer;
typedef struct Slot {
	Writer *w;
	uint64_t txn;
} Slot;

struct Writer {
	Harness *h;
	uint64_t first_txn;
	bool keyed;            /* keyed COMMITs (make_keyed_commit) ... */
	int64_t wall_ms;       /* ... taken at this time ... */
	uint32_t response_len; /* ... remembering this much response */
	int n;          /* COMMITs to append */
	bool chain;     /* append the next one from the previous completion */
	DoneMode done;  /* append DONE from the completion */
	int check_disk; /* read the segments back every this many completions (0: never) */
	int issued, completed;
	uint64_t synced_base; /* records_synced when the writer started */
	Slot *slots;
};

static void on_commit_durable(void *arg);

static void writer_rec(const Writer *w, TestRec *t, uint64_t txn)
{
	if (w->keyed)
		make_keyed_commit(t, txn, w->wall_ms, w->response_len);
	else
		make_commit(t, txn);
}

static void issue_one(Writer *w)
{
	Slot *s = &w->slots[w->issued];
	TestRec t;

	s->w = w;
	s->txn = w->first_txn + (uint64_t)w->issued;
	w->issued++;
	writer_rec(w, &t, s->txn);
	dlog_append_commit(w->h->log, &t.rec, on_commit_durable, s);
}

static void on_commit_durable(void *arg)
{
	Slot *s = arg;
	Writer *w = s->w;
	DlogStats st;
	TestRec t;

	writer_rec(w, &t, s->txn);
	/* Completions come back in append order. */
	ck_assert_uint_eq(s->txn, w->first_txn + (uint64_t)w->completed);
	w->completed++;

	/* The log thread counted this record as synced before handing it back. */
	dlog_get_stats(w->h->log, &st);
	ck_assert_uint_ge(st.fsyncs, 1);
	ck_assert_msg(st.records_synced >= w->synced_base + (uint64_t)w->completed,
	              "completion %d fired with only %" PRIu64 " records synced", w->completed,
	              st.records_synced - w->synced_base);

	/* The loop-side table has it, with its branches. */
	const DlogRecord *live = dlog_find_commit(w->h->log, s->txn);
	ck_assert_msg(live != NULL, "txn %" PRIu64 " not live at its completion", s->txn);
	ck_assert(rec_equal(live, &t.rec));

	/* And it can be read back from the segment files right now, from bytes
	 * an fdatasync has already covered. */
	if (w->check_disk > 0 && (w->completed % w->check_disk == 0 || w->completed == w->n)) {
		ck_assert_msg(disk_count(w->h->dir, &t.rec) == 1, "txn %" PRIu64 " not on disk at its completion",
		              s->txn);
		ck_assert_msg(disk_count_ex(w->h->dir, &t.rec, true) == 1,
		              "txn %" PRIu64 " completed before an fdatasync covered it", s->txn);
	}

	if (w->done == DONE_ALL || (w->done == DONE_EVEN && s->txn % 2 == 0)) {
		dlog_append_done(w->h->log, s->txn);
		ck_assert_ptr_null(dlog_find_commit(w->h->log, s->txn));
	}
	if (w->chain && w->issued < w->n)
		issue_one(w);
}

static void writer_start_cb(evutil_socket_t fd, short what, void *arg)
{
	Writer *w = arg;
	(void)fd;
	(void)what;
	if (w->chain)
		issue_one(w);
	else
		while (w->issued < w->n)
			issue_one(w);
}

/* Appends w->n COMMITs from the event loop and runs it until every
 * completion has fired. */
static void writer_run(Writer *w, Harness *h)
{
	struct timeval zero = {0, 0};
	DlogStats st;

	w->h = h;
	w->issued = w->completed = 0;
	w->slots = calloc((size_t)w->n, sizeof(Slot));
	ck_assert_ptr_nonnull(w->slots);
	dlog_get_stats(h->log, &st);
	w->synced_base = st.records_synced;
	ck_assert_int_eq(event_base_once(h->base, -1, EV_TIMEOUT, writer_start_cb, w, &zero), 0);
	run_until(h->base, &w->completed, w->n, 60000);
	ck_assert_msg(w->completed == w->n, "only %d of %d completions fired", w->completed, w->n);
	free(w->slots);
	w->slots = NULL;
}

/* A closed log in a fresh directory holding COMMITs first..first+n-1 in
 * segment 1 (no DONE). */
static void build_log(Harness *h, const char *tag, uint64_t first, int n)
{
	char dir[600];
	Writer w = {.first_txn = first, .n = n};

	make_dir(dir, sizeof(dir), tag);
	h_open(h, dir, 1 << 20);
	h_start(h);
	writer_run(&w, h);
	h_close(h);
	ck_assert_int_eq(dlog_count_segments(h->dir), 1);
}

/* Offset of frame k (0-based) in a segment of COMMITs first, first+1, ... */
static size_t frame_offset(uint64_t first, int k)
{
	size_t off = 0;
	for (int i = 0; i < k; i++)
		off += commit_size(first + (uint64_t)i);
	return off;
}

/* ---- crc32c ----------------------------------------------------------------------- */

START_TEST(test_crc32c_vectors)
{
	uint8_t zeros[32] = {0}, ones[32], inc[32], dec[32];

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++) {
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	/* The check value and the iSCSI test vectors (RFC 3720, B.4). */
	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(crc32c_sw(0, "123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(crc32c(0, zeros, 32), 0x8A9136AAu);
	ck_assert_uint_eq(crc32c_sw(0, zeros, 32), 0x8A9136AAu);
	ck_assert_uint_eq(crc32c(0, ones, 32), 0x62A8AB43u);
	ck_assert_uint_eq(crc32c_sw(0, ones, 32), 0x62A8AB43u);
	ck_assert_uint_eq(crc32c(0, inc, 32), 0x46DD794Eu);
	ck_assert_uint_eq(crc32c_sw(0, inc, 32), 0x46DD794Eu);
	ck_assert_uint_eq(crc32c(0, dec, 32), 0x113FDB5Cu);
	ck_assert_uint_eq(crc32c_sw(0, dec, 32), 0x113FDB5Cu);
	ck_assert_uint_eq(crc32c(0, "", 0), 0);
	ck_assert_uint_eq(crc32c_sw(0, "", 0), 0);
	/* Continuing a checksum equals checksumming the whole. */
	ck_assert_uint_eq(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
	ck_assert_uint_eq(crc32c_sw(crc32c_sw(0, "12345", 5), "6789", 4), 0xE3069283u);
}
END_TEST

START_TEST(test_crc32c_hw_matches_sw)
{
	enum { MAX = 4096 + 16 };
	uint8_t *buf = malloc(MAX);
	int checked = 0;

	ck_assert_ptr_nonnull(buf);
	for (size_t i = 0; i < MAX; i++)
		buf[i] = (uint8_t)rnd();
	for (size_t len = 0; len <= 4096; len += (len < 300 ? 1 : 37)) {
		for (size_t align = 0; align < 8; align++) {
			uint32_t seed = (uint32_t)rnd();
			ck_assert_msg(crc32c(0, buf + align, len) == crc32c_sw(0, buf + align, len),
			              "hw != sw for length %zu at offset %zu", len, align);
			ck_assert_msg(crc32c(seed, buf + align, len) == crc32c_sw(seed, buf + align, len),
			              "hw != sw for length %zu with a seed", len);
			/* Split anywhere: same result. */
			size_t cut = len ? (size_t)(rnd() % (len + 1)) : 0;
			ck_assert_uint_eq(crc32c(crc32c(0, buf + align, cut), buf + align + cut, len - cut),
			                  crc32c_sw(0, buf + align, len));
			checked++;
		}
	}
	ck_assert_int_gt(checked, 2000);
	free(buf);
}
END_TEST

/* ---- the frame codec ---------------------------------------------------------------- */

static void roundtrip(const DlogRecord *rec)
{
	size_t n = dlog_encoded_size(rec);
	uint8_t *buf = malloc(n + 16);
	DlogRecord out;
	size_t flen = 0;
	char err[256] = "";

	ck_assert_ptr_nonnull(buf);
	memset(buf, 0xA5, n + 16);
	ck_assert_uint_eq(dlog_encode(rec, buf), n);
	ck_assert_uint_eq(buf[n], 0xA5); /* wrote exactly n bytes */
	ck_assert_uint_le(n - DLOG_FRAME_HEADER, DLOG_MAX_PAYLOAD);
	ck_assert_int_eq(dlog_decode(buf, n, &out, &flen, err, sizeof(err)), DLOG_DEC_OK);
	ck_assert_uint_eq(flen, n);
	ck_assert_msg(rec_equal(&out, rec), "decoded record differs from the encoded one");
	dlog_record_clear(&out);
	/* With more bytes after the frame: still one frame of the same length. */
	ck_assert_int_eq(dlog_decode(buf, n + 16, &out, &flen, err, sizeof(err)), DLOG_DEC_OK);
	ck_assert_uint_eq(flen, n);
	ck_assert(rec_equal(&out, rec));
	dlog_record_clear(&out);
	free(buf);
}

START_TEST(test_codec_roundtrip_commit)
{
	static DlogBranchRef br[1000];
	DlogRecord rec = {.type = DLOG_COMMIT, .branches = br};
	TestRec t;

	/* Names of every length 1..63, indices over the whole u16 range. */
	for (int i = 0; i < 64; i++) {
		int l = 1 + i % DLOG_NAME_MAX;
		memset(br[i].name, 0, sizeof(br[i].name));
		for (int c = 0; c < l; c++)
			br[i].name[c] = (char)('a' + (c + i) % 26);
		br[i].index = (uint16_t)(i == 63 ? 65535 : i * 1000);
	}
	rec.txn_id = 1;
	rec.wall_ms = 0;
	rec.nbranches = 1;
	roundtrip(&rec);
	rec.txn_id = UINT64_MAX;
	rec.wall_ms = INT64_MAX;
	rec.nbranches = 2;
	roundtrip(&rec);
	rec.txn_id = 0x0123456789abcdefULL;
	rec.wall_ms = -1;
	rec.nbranches = 64; /* MAX_PARTICIPANTS, names up to 63 characters */
	roundtrip(&rec);

	/* Many short branches. */
	for (int i = 0; i < 1000; i++) {
		snprintf(br[i].name, sizeof(br[i].name), "p%d", i);
		br[i].index = (uint16_t)i;
	}
	rec.nbranches = 1000;
	roundtrip(&rec);

	for (uint64_t txn = 1; txn < 200; txn++) {
		make_commit(&t, txn * 0x10001ULL);
		roundtrip(&t.rec);
	}
}
END_TEST

START_TEST(test_codec_roundtrip_done)
{
	DlogRecord rec = {.type = DLOG_DONE};
	uint64_t ids[] = {1, 2, 0xffULL, 0x0123456789abcdefULL, UINT64_MAX};

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		rec.txn_id = ids[i];
		ck_assert_uint_eq(dlog_encoded_size(&rec), DLOG_FRAME_HEADER + 8);
		roundtrip(&rec);
	}
}
END_TEST

static void check_truncations(const DlogRecord *rec)
{
	size_t n = dlog_encoded_size(rec);
	uint8_t *buf = malloc(n);
	ck_assert_ptr_nonnull(buf);
	dlog_encode(rec, buf);
	for (size_t len = 0; len < n; len++) {
		DlogRecord out;
		size_t flen = 12345;
		char err[256] = "";
		DlogDecode d = dlog_decode(buf, len, &out, &flen, err, sizeof(err));
		ck_assert_msg(d == DLOG_DEC_SHORT, "prefix of %zu of %zu bytes gave %d, not SHORT", len, n, (int)d);
		ck_assert_msg(err[0] != '\0', "SHORT without a reason");
		ck_assert_ptr_null(out.branches);
		ck_assert_ptr_null(out.idem);
	}
	free(buf);
}

START_TEST(test_codec_every_truncation_is_short)
{
	TestRec t;
	DlogRecord done = {.type = DLOG_DONE, .txn_id = 77};

	make_commit(&t, 2); /* three branches */
	ck_assert_uint_eq(t.rec.nbranches, 3);
	check_truncations(&t.rec);
	check_truncations(&done);
}
END_TEST

static void check_flips(const DlogRecord *rec)
{
	size_t n = dlog_encoded_size(rec);
	uint8_t *orig = malloc(n), *buf = malloc(n);
	static const uint8_t masks[] = {0x01, 0x02, 0x10, 0x80, 0xff, 0x5a};
	uint32_t plen;

	ck_assert_ptr_nonnull(orig);
	ck_assert_ptr_nonnull(buf);
	dlog_encode(rec, orig);
	plen = (uint32_t)(n - DLOG_FRAME_HEADER);
	for (size_t pos = 0; pos < n; pos++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			DlogRecord out;
			size_t flen = 0;
			char err[256] = "";
			memcpy(buf, orig, n);
			buf[pos] ^= masks[m];
			DlogDecode d = dlog_decode(buf, n, &out, &flen, err, sizeof(err));
			ck_assert_msg(d != DLOG_DEC_OK, "byte %zu ^ 0x%02x still decoded as a valid record", pos,
			              masks[m]);
			ck_assert_ptr_null(out.branches);
			ck_assert_ptr_null(out.idem);
			if (pos < 4) {
				uint32_t nl = (uint32_t)buf[0] | ((uint32_t)buf[1] << 8) | ((uint32_t)buf[2] << 16) |
				              ((uint32_t)buf[3] << 24);
				if (nl > DLOG_MAX_PAYLOAD)
					ck_assert_int_eq(d, DLOG_DEC_BAD);
				else if (nl > plen)
					ck_assert_int_eq(d, DLOG_DEC_SHORT);
				else
					ck_assert_int_eq(d, DLOG_DEC_BAD);
			} else {
				ck_assert_msg(d == DLOG_DEC_BAD, "byte %zu ^ 0x%02x gave %d, not BAD", pos, masks[m],
				              (int)d);
			}
		}
	}
	free(orig);
	free(buf);
}

START_TEST(test_codec_every_byte_flip_detected)
{
	TestRec t;
	DlogRecord done = {.type = DLOG_DONE, .txn_id = 0x1122334455667788ULL};

	make_commit(&t, 5);
	check_flips(&t.rec);
	make_commit(&t, 6);
	check_flips(&t.rec);
	check_flips(&done);
}
END_TEST

/* A frame with the given type and payload and a correct checksum. */
static size_t frame(uint8_t *buf, uint8_t type, const uint8_t *payload, uint32_t plen)
{
	buf[0] = (uint8_t)plen;
	buf[1] = (uint8_t)(plen >> 8);
	buf[2] = (uint8_t)(plen >> 16);
	buf[3] = (uint8_t)(plen >> 24);
	buf[8] = type;
	if (plen)
		memcpy(buf + 9, payload, plen);
	uint32_t c = crc32c_sw(0, buf + 8, (size_t)plen + 1);
	buf[4] = (uint8_t)c;
	buf[5] = (uint8_t)(c >> 8);
	buf[6] = (uint8_t)(c >> 16);
	buf[7] = (uint8_t)(c >> 24);
	return DLOG_FRAME_HEADER + plen;
}

static DlogDecode decode_buf(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	DlogRecord out;
	size_t flen = 0;
	DlogDecode d = dlog_decode(buf, len, &out, &flen, err, errlen);
	if (d == DLOG_DEC_OK) {
		dlog_record_clear(&out);
	} else {
		ck_assert_ptr_null(out.branches);
		ck_assert_ptr_null(out.idem);
		ck_assert_msg(err == NULL || err[0] != '\0', "rejected without a reason");
	}
	return d;
}

START_TEST(test_codec_bad_lengths)
{
	static uint8_t big[DLOG_FRAME_HEADER + DLOG_MAX_PAYLOAD + 2];
	static const uint8_t zp[DLOG_MAX_PAYLOAD + 1];
	char err[256];

	/* A payload length over the maximum is BAD at once, even with the
	 * bytes present: no waiting for more data that can never be valid. */
	frame(big, DLOG_DONE, zp, DLOG_MAX_PAYLOAD + 1);
	ck_assert_int_eq(decode_buf(big, sizeof(big), err, sizeof(err)), DLOG_DEC_BAD);
	ck_assert_contains(err, "length");
	ck_assert_int_eq(decode_buf(big, DLOG_FRAME_HEADER, err, sizeof(err)), DLOG_DEC_BAD);
	big[0] = big[1] = big[2] = big[3] = 0xff;
	ck_assert_int_eq(decode_buf(big, DLOG_FRAME_HEADER, err, sizeof(err)), DLOG_DEC_BAD);
	/* Exactly the maximum is a plausible frame: SHORT until it is all there. */
	frame(big, DLOG_DONE, zp, DLOG_MAX_PAYLOAD);
	ck_assert_int_eq(decode_buf(big, DLOG_FRAME_HEADER, err, sizeof(err)), DLOG_DEC_SHORT);
	/* ... and then BAD, because a DONE payload is 8 bytes. */
	ck_assert_int_eq(decode_buf(big, DLOG_FRAME_HEADER + DLOG_MAX_PAYLOAD, err, sizeof(err)), DLOG_DEC_BAD);
}
END_TEST

START_TEST(test_codec_bad_types_and_payloads)
{
	uint8_t buf[512], p[256];
	char err[256];
	size_t n;

	memset(p, 0, sizeof(p));
	/* Unknown types, with a valid checksum. */
	n = frame(buf, 3, p, 8);
	ck_assert_int_eq(decode_buf(buf, n, err, sizeof(err)), DLOG_DEC_BAD);
	ck_assert_contains(err, "type");
	n = frame(buf, 0, p, 8);
	ck_assert_int_eq(decode_buf(buf, n, err, sizeof(err)), DLOG_DEC_BAD);
	n = frame(buf, 0xff, p, 0);
	ck_assert_int_eq(decode_buf(buf, n, err, sizeof(err)), DLOG_DEC_BAD);

	/* DONE with a payload other than 8 bytes. */
	n = frame(buf, DLOG_DONE, p, 7);
	ck_assert_int_eq(decode_buf(buf, n, err, sizeof(err)), DLOG_DEC_BAD);
	n = frame(buf, DLOG_DONE, p, 9);
	ck_assert_int_eq(decode_buf(buf, n, err, sizeof(err)), DLOG_DEC_BAD);
	n = frame(buf, DLOG_DONE, p, 8);
	ck_assert_int_eq(decode_buf(buf, n, err, sizeof(err)), DLOG_DEC_OK);

	/* COMMIT payloads: u64 txn | i64 wall | u8 flags | u16 n | n * (u16 idx, u8 len, name). */
	uint8_t c[64];
	memset(c, 0, sizeof(c));
	c[0] = 1;  /* txn 1 */
	c[17] = 1; /* one branch */
	c[19] = 3; /* index 3 */
	c[21] = 2; /* name length */
	c[22] = 'a';
	c[23] = 'b';
	n = frame(buf, DLOG_COMMIT, c, 24);
	ck_assert_int_eq(decode_buf(buf, n, err, sizeof(err)), DLOG_DEC_OK); /* the control case */

	uint8_t m[64];
	memcpy(m, c, sizeof(m));
	m[16] = 1; /* unknown flags */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, m, 24), err, sizeof(err)), DLOG_DEC_BAD);
	memcpy(m, c, sizeof(m));
	m[17] = 0; /* no branches */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, m, 19), err, sizeof(err)), DLOG_DEC_BAD);
	memcpy(m, c, sizeof(m));
	m[17] = 2; /* claims two branches, holds one */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, m, 24), err, sizeof(err)), DLOG_DEC_BAD);
	memcpy(m, c, sizeof(m));
	m[21] = 0; /* empty name */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, m, 22), err, sizeof(err)), DLOG_DEC_BAD);
	memcpy(m, c, sizeof(m));
	m[21] = 3; /* name runs past the payload */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, m, 24), err, sizeof(err)), DLOG_DEC_BAD);
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, c, 25), err, sizeof(err)),
	                 DLOG_DEC_BAD); /* trailing */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, c, 18), err, sizeof(err)),
	                 DLOG_DEC_BAD); /* too short */
	/* A name of 64 bytes is longer than any participant name. */
	uint8_t L[128];
	memset(L, 'x', sizeof(L));
	memcpy(L, c, 21);
	L[21] = 64;
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, L, 22 + 64), err, sizeof(err)), DLOG_DEC_BAD);
	L[21] = 63;
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, L, 22 + 63), err, sizeof(err)), DLOG_DEC_OK);

	/* A NUL inside a name (found by tests/fuzz_dlog): dlog_encode never
	 * writes one, and the name would read back cut short. */
	memcpy(m, c, sizeof(m));
	m[22] = '\0';
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, m, 24), err, sizeof(err)), DLOG_DEC_BAD);
	memcpy(m, c, sizeof(m));
	m[23] = '\0';
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_COMMIT, m, 24), err, sizeof(err)), DLOG_DEC_BAD);

	/* HEURISTIC payloads: u64 txn | i64 wall | u8 1/2 | u8 nl | name | u8 gl | gid. */
	uint8_t h[64];
	memset(h, 0, sizeof(h));
	h[16] = 1;  /* commit */
	h[17] = 2;  /* name length */
	h[18] = 'a';
	h[19] = 'b';
	h[20] = 2;  /* gid length */
	h[21] = 'g';
	h[22] = 'h';
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_HEURISTIC, h, 23), err, sizeof(err)), DLOG_DEC_OK);
	memcpy(m, h, sizeof(m));
	m[19] = '\0'; /* NUL in the name */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_HEURISTIC, m, 23), err, sizeof(err)), DLOG_DEC_BAD);
	memcpy(m, h, sizeof(m));
	m[21] = '\0'; /* NUL in the gid */
	ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_HEURISTIC, m, 23), err, sizeof(err)), DLOG_DEC_BAD);
}
END_TEST

START_TEST(test_record_copy_is_deep)
{
	TestRec t;
	make_commit(&t, 2);
	DlogRecord *c = dlog_record_copy(&t.rec);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_ne(c->branches, t.rec.branches);
	ck_assert(rec_equal(c, &t.rec));
	strcpy(t.br[0].name, "changed");
	t.br[1].index = 999;
	ck_assert_str_eq(c->branches[0].name, "bank_a_2");
	ck_assert_uint_eq(c->branches[1].index, 7 + 2);
	dlog_record_free(c);
	dlog_record_free(NULL);

	DlogRecord done = {.type = DLOG_DONE, .txn_id = 9};
	c = dlog_record_copy(&done);
	ck_assert_ptr_null(c->branches);
	ck_assert_uint_eq(c->txn_id, 9);
	dlog_record_free(c);
}
END_TEST

/* ---- open, append, complete ------------------------------------------------------------ */

START_TEST(test_open_creates_directory)
{
	char top[600], path[700], lockp[800];
	Harness h = {0};

	make_dir(top, sizeof(top), "create");
	ck_assert_int_lt(snprintf(path, sizeof(path), "%s/a/b/log", top), (int)sizeof(path));
	ck_assert(!file_exists(path));
	h_open(&h, path, 1 << 20);
	ck_assert(file_exists(path));
	ck_assert_int_lt(snprintf(lockp, sizeof(lockp), "%s/LOCK", path), (int)sizeof(lockp));
	ck_assert(file_exists(lockp));
	ck_assert_uint_eq(h.load.segments, 0);
	ck_assert_uint_eq(h.load.records, 0);
	ck_assert_uint_eq(h.load.live_commits, 0);
	ck_assert_uint_eq(h.load.truncated_bytes, 0);
	ck_assert_int_eq(dlog_count_segments(path), 1);
	ck_assert(seg_exists(path, 1));
	ck_assert_ptr_null(dlog_find_commit(h.log, 1));
	ck_assert_uint_eq(dlog_live_commits(h.log)->count, 0);
	h_close(&h);

	/* Reopening an empty log: the empty segment goes, a new one comes. */
	h_open(&h, path, 1 << 20);
	ck_assert_uint_eq(h.load.segments, 1);
	ck_assert_uint_eq(h.load.records, 0);
	ck_assert_int_eq(dlog_count_segments(path), 1);
	ck_assert(seg_exists(path, 2));
	ck_assert(!seg_exists(path, 1));
	h_close(&h);

	/* A path that is a file cannot be a log directory. */
	char err[1024] = "";
	Dlog *log = (Dlog *)&h; /* must be overwritten */
	DlogLoadStats st;
	ck_assert(!dlog_open(lockp, 1 << 20, TTL_HOUR, &log, &st, err, sizeof(err)));
	ck_assert_ptr_null(log);
	ck_assert_contains(err, lockp);
	rm_rf(top);
}
END_TEST

START_TEST(test_completion_after_record_is_on_disk)
{
	char dir[600];
	Harness h = {0};
	DlogStats st;
	DiskLog d;

	make_dir(dir, sizeof(dir), "durable");
	h_open(&h, dir, 1 << 20);
	h_start(&h);

	/* One at a time: each completion appends the next. Every batch holds
	 * exactly one COMMIT, so every one costs one fdatasync. */
	Writer w1 = {.first_txn = 1, .n = 50, .chain = true, .check_disk = 1};
	writer_run(&w1, &h);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_eq(st.records_synced, 50);
	ck_assert_uint_eq(st.fsyncs, 50);
	ck_assert_uint_ge(st.writes, 50);

	/* Back to back, every completion checked against the files. */
	Writer w2 = {.first_txn = 51, .n = 200, .check_disk = 1};
	writer_run(&w2, &h);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_eq(st.records_synced, 250);
	ck_assert_uint_ge(st.fsyncs, 51);
	ck_assert_uint_le(st.fsyncs, 250);
	ck_assert_uint_eq(dlog_live_commits(h.log)->count, 250);
	h_close(&h);

	/* The files hold exactly those records, in order. */
	disk_read(dir, &d);
	ck_assert_uint_eq(d.n, 250);
	for (size_t i = 0; i < d.n; i++) {
		TestRec t;
		make_commit(&t, 1 + i);
		ck_assert_msg(rec_equal(&d.recs[i], &t.rec), "record %zu on disk is not txn %zu", i, i + 1);
	}
	disk_free(&d);
	rm_rf(dir);
}
END_TEST

START_TEST(test_group_commit_batches_fsyncs)
{
	enum { N = 2000 };
	char dir[600];
	Harness h = {0};
	DlogStats st;

	make_dir(dir, sizeof(dir), "group");
	h_open(&h, dir, 64 << 20);
	h_start(&h);
	Writer w = {.first_txn = 1, .n = N, .check_disk = 100};
	writer_run(&w, &h);
	dlog_get_stats(h.log, &st);
	printf("check_dlog: group commit: %d COMMITs appended back to back -> %" PRIu64 " fdatasyncs, %" PRIu64
	       " writes\n",
	       N, st.fsyncs, st.writes);
	ck_assert_uint_eq(st.records_synced, N);
	ck_assert_uint_ge(st.fsyncs, 1);
	ck_assert_msg(st.fsyncs < N, "no batching: %" PRIu64 " fsyncs for %d records", st.fsyncs, N);
	h_close(&h);
	ck_assert_int_eq(dlog_count_segments(dir), 1);
	rm_rf(dir);
}
END_TEST

/* dlog_close waits for what was appended, even if the loop never ran. */
START_TEST(test_close_flushes_pending)
{
	char dir[600];
	Harness h = {0};
	TestRec t;

	make_dir(dir, sizeof(dir), "flush");
	h_open(&h, dir, 1 << 20);
	h_start(&h);
	for (uint64_t txn = 1; txn <= 20; txn++) {
		make_commit(&t, txn);
		dlog_append_commit(h.log, &t.rec, NULL, NULL);
	}
	h_close(&h);
	h_open(&h, dir, 1 << 20);
	ck_assert_uint_eq(h.load.records, 20);
	ck_assert_uint_eq(h.load.live_commits, 20);
	for (uint64_t txn = 1; txn <= 20; txn++) {
		make_commit(&t, txn);
		ck_assert_ptr_nonnull(dlog_find_commit(h.log, txn));
		ck_assert(rec_equal(dlog_find_commit(h.log, txn), &t.rec));
	}
	h_close(&h);
	rm_rf(dir);
}
END_TEST

/* ---- replay -------------------------------------------------------------------------------- */

START_TEST(test_reload)
{
	char dir[600];
	Harness h = {0};
	size_t pos = 0;
	uint64_t key;
	void *val;
	int nlive = 0;

	make_dir(dir, sizeof(dir), "reload");
	h_open(&h, dir, 1 << 20);
	h_start(&h);
	Writer w = {.first_txn = 1, .n = 20, .chain = true, .done = DONE_EVEN};
	writer_run(&w, &h);
	ck_assert_uint_eq(dlog_live_commits(h.log)->count, 10);
	h_close(&h);

	for (int round = 0; round < 2; round++) {
		h_open(&h, dir, 1 << 20);
		ck_assert_uint_eq(h.load.records, 30); /* 20 COMMITs + 10 DONEs */
		ck_assert_uint_eq(h.load.live_commits, 10);
		ck_assert_uint_eq(h.load.max_txn_id, 20);
		ck_assert_uint_eq(h.load.truncated_bytes, 0);
		for (uint64_t txn = 1; txn <= 20; txn++) {
			const DlogRecord *r = dlog_find_commit(h.log, txn);
			if (txn % 2 == 0) {
				ck_assert_msg(r == NULL, "txn %" PRIu64 " has its DONE but is live", txn);
			} else {
				TestRec t;
				make_commit(&t, txn);
				ck_assert_msg(r != NULL, "txn %" PRIu64 " lost", txn);
				ck_assert(rec_equal(r, &t.rec));
				ck_assert_str_eq(r->branches[0].name, t.br[0].name);
			}
		}
		ck_assert_ptr_null(dlog_find_commit(h.log, 21));
		nlive = 0;
		pos = 0;
		while (idmap_next(dlog_live_commits(h.log), &pos, &key, &val)) {
			ck_assert_uint_eq(key % 2, 1);
			nlive++;
		}
		ck_assert_int_eq(nlive, 10);
		h_close(&h);
	}
	rm_rf(dir);
}
END_TEST

/* Cuts the single segment of a 10-COMMIT log at `cut` bytes before its end. */
static void torn_cut(uint64_t cut)
{
	Harness h = {0};
	char seg[700];
	const int n = 10;
	size_t total = frame_offset(1, n), last = commit_size(n);

	build_log(&h, "torn-cut", 1, n);
	seg_path(seg, sizeof(seg), h.dir, 1);
	ck_assert_int_eq(file_size(seg), (off_t)total);
	ck_assert_int_eq(truncate(seg, (off_t)(total - cut)), 0);

	h_open(&h, h.dir, 1 << 20);
	ck_assert_uint_eq(h.load.truncated_bytes, last - cut);
	ck_assert_uint_eq(h.load.records, n - 1);
	ck_assert_uint_eq(h.load.live_commits, n - 1);
	ck_assert_ptr_null(dlog_find_commit(h.log, n));
	for (uint64_t txn = 1; txn < (uint64_t)n; txn++)
		ck_assert_ptr_nonnull(dlog_find_commit(h.log, txn));
	ck_assert_int_eq(file_size(seg), (off_t)(total - last)); /* physically cut */
	h_close(&h);

	/* Clean from now on. */
	h_open(&h, h.dir, 1 << 20);
	ck_assert_uint_eq(h.load.truncated_bytes, 0);
	ck_assert_uint_eq(h.load.records, n - 1);
	h_close(&h);
	rm_rf(h.dir);
}

START_TEST(test_torn_tail_cut_frame)
{
	size_t last = commit_size(10);
	torn_cut(1);                        /* one byte of payload missing */
	torn_cut(last / 2);                 /* half the frame */
	torn_cut(last - DLOG_FRAME_HEADER); /* the header only */
	torn_cut(last - 4);                 /* half a header */
	torn_cut(last - 1);                 /* one byte of it */
}
END_TEST

static void torn_zeros(size_t nzero)
{
	Harness h = {0};
	char seg[700];
	const int n = 10;
	size_t total = frame_offset(1, n);
	uint8_t *z = calloc(1, nzero);

	build_log(&h, "torn-zero", 1, n);
	seg_path(seg, sizeof(seg), h.dir, 1);
	append_bytes(seg, z, nzero);
	free(z);
	h_open(&h, h.dir, 1 << 20);
	ck_assert_uint_eq(h.load.truncated_bytes, nzero);
	ck_assert_uint_eq(h.load.records, n);
	ck_assert_uint_eq(h.load.live_commits, n);
	ck_assert_ptr_nonnull(dlog_find_commit(h.log, n));
	ck_assert_int_eq(file_size(seg), (off_t)total);
	h_close(&h);
	rm_rf(h.dir);
}

START_TEST(test_torn_tail_zero_fill)
{
	torn_zeros(3);    /* shorter than a header */
	torn_zeros(9);    /* exactly a header */
	torn_zeros(100);  /* several frames' worth */
	torn_zeros(4096); /* a whole zeroed block */
}
END_TEST

START_TEST(test_torn_tail_bad_crc_at_eof)
{
	static const size_t where[] = {4, 7, 8, 20}; /* CRC bytes, type byte, payload */
	const int n = 10;
	size_t total = frame_offset(1, n), last = commit_size(n);

	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		Harness h = {0};
		char seg[700];
		build_log(&h, "torn-crc", 1, n);
		seg_path(seg, sizeof(seg), h.dir, 1);
		xor_byte_at(seg, (off_t)(total - last + where[i]), 0x20);
		h_open(&h, h.dir, 1 << 20);
		ck_assert_uint_eq(h.load.truncated_bytes, last);
		ck_assert_uint_eq(h.load.records, n - 1);
		ck_assert_ptr_null(dlog_find_commit(h.log, n));
		ck_assert_ptr_nonnull(dlog_find_commit(h.log, n - 1));
		ck_assert_int_eq(file_size(seg), (off_t)(total - last));
		h_close(&h);
		rm_rf(h.dir);
	}
}
END_TEST

/* Opens a log that must be refused; the file must be left exactly as it was. */
static void expect_refused(const char *dir, const char *segfile, const char *want1, const char *want2)
{
	char err[1024] = "";
	Dlog *log = (Dlog *)&err; /* must be overwritten */
	DlogLoadStats st;
	size_t before_len, after_len;
	uint8_t *before = read_whole(segfile, &before_len);

	ck_assert_msg(!dlog_open(dir, 1 << 20, TTL_HOUR, &log, &st, err, sizeof(err)), "a corrupt log was accepted");
	ck_assert_ptr_null(log);
	ck_assert_contains(err, "not a torn tail");
	ck_assert_contains(err, want1);
	if (want2)
		ck_assert_contains(err, want2);
	uint8_t *after = read_whole(segfile, &after_len);
	ck_assert_uint_eq(after_len, before_len);
	ck_assert_msg(memcmp(before, after, before_len) == 0, "a refused open modified %s", segfile);
	free(before);
	free(after);
}

START_TEST(test_corruption_in_the_middle_is_refused)
{
	const int n = 10;
	char seg[700], want[64];

	/* A payload byte of frame 3 (of 10). */
	{
		Harness h = {0};
		size_t off = frame_offset(1, 2);
		build_log(&h, "mid-payload", 1, n);
		seg_path(seg, sizeof(seg), h.dir, 1);
		xor_byte_at(seg, (off_t)(off + DLOG_FRAME_HEADER + 3), 0x01);
		snprintf(want, sizeof(want), "offset %zu", off);
		expect_refused(h.dir, seg, want, "0000000000000001.seg");
		/* Repaired, it opens (the failed open released the lock). */
		xor_byte_at(seg, (off_t)(off + DLOG_FRAME_HEADER + 3), 0x01);
		h_open(&h, h.dir, 1 << 20);
		ck_assert_uint_eq(h.load.records, n);
		h_close(&h);
		rm_rf(h.dir);
	}
	/* The checksum of the very first frame. */
	{
		Harness h = {0};
		build_log(&h, "mid-crc", 1, n);
		seg_path(seg, sizeof(seg), h.dir, 1);
		xor_byte_at(seg, 5, 0x80);
		expect_refused(h.dir, seg, "offset 0 ", NULL);
		rm_rf(h.dir);
	}
	/* Frame 3 zeroed out with intact frames after it: not a zero-filled tail. */
	{
		Harness h = {0};
		size_t len, off = frame_offset(1, 2);
		build_log(&h, "mid-zero", 1, n);
		seg_path(seg, sizeof(seg), h.dir, 1);
		uint8_t *buf = read_whole(seg, &len);
		memset(buf + off, 0, commit_size(3));
		write_whole(seg, buf, len);
		free(buf);
		snprintf(want, sizeof(want), "offset %zu", off);
		expect_refused(h.dir, seg, want, NULL);
		rm_rf(h.dir);
	}
	/* The length field of frame 3: grown past the maximum, grown into the
	 * next frame, grown past the end of the file, shrunk. A length cannot
	 * be trusted to say where the tail is: the frames after it are intact. */
	{
		const size_t off = frame_offset(1, 2);
		const uint32_t plen = (uint32_t)(commit_size(3) - DLOG_FRAME_HEADER);
		const uint32_t lens[] = {DLOG_MAX_PAYLOAD + 1, 0x00100000u | plen, plen + 5, plen + 4000, plen - 1, 0};
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			Harness h = {0};
			build_log(&h, "mid-len", 1, n);
			seg_path(seg, sizeof(seg), h.dir, 1);
			set_u32_at(seg, (off_t)off, lens[i]);
			snprintf(want, sizeof(want), "offset %zu", off);
			expect_refused(h.dir, seg, want, NULL);
			rm_rf(h.dir);
		}
	}
	/* The type byte of the second-to-last frame. */
	{
		Harness h = {0};
		size_t off = frame_offset(1, n - 2);
		build_log(&h, "mid-type", 1, n);
		seg_path(seg, sizeof(seg), h.dir, 1);
		xor_byte_at(seg, (off_t)(off + 8), 0x04);
		snprintf(want, sizeof(want), "offset %zu", off);
		expect_refused(h.dir, seg, want, NULL);
		rm_rf(h.dir);
	}
}
END_TEST

/* Only the newest segment can have a torn tail: a bad last frame in an
 * older segment is damage, even though it ends exactly at that file's end. */
START_TEST(test_bad_tail_of_older_segment_is_refused)
{
	Harness h = {0};
	char seg1[700], want[64];
	size_t total = frame_offset(1, 5), last = commit_size(5);

	build_log(&h, "old-tail", 1, 5);
	/* A second run writes into segment 2. */
	h_open(&h, h.dir, 1 << 20);
	h_start(&h);
	Writer w = {.first_txn = 6, .n = 3};
	writer_run(&w, &h);
	h_close(&h);
	ck_assert(seg_exists(h.dir, 1));
	ck_assert(seg_exists(h.dir, 2));

	seg_path(seg1, sizeof(seg1), h.dir, 1);
	xor_byte_at(seg1, (off_t)(total - 1), 0x40);
	snprintf(want, sizeof(want), "offset %zu", total - last);
	expect_refused(h.dir, seg1, want, "0000000000000001.seg");

	/* Cut short instead of corrupted: refused as well. */
	xor_byte_at(seg1, (off_t)(total - 1), 0x40);
	ck_assert_int_eq(truncate(seg1, (off_t)(total - 3)), 0);
	expect_refused(h.dir, seg1, want, NULL);
	rm_rf(h.dir);
}
END_TEST

/* ---- compaction -------------------------------------------------------------------------- */

START_TEST(test_finished_segments_are_removed)
{
	char dir[600];
	Harness h = {0};
	DlogStats st;
	DiskLog d;

	make_dir(dir, sizeof(dir), "compact");
	h_open(&h, dir, 4096);
	h_start(&h);
	Writer w = {.first_txn = 1, .n = 600, .chain = true, .done = DONE_ALL};
	writer_run(&w, &h);
	int nseg = run_until_segments(h.base, dir, 1, 5000);
	/* The counter is bumped just after the unlinks: give it a moment. */
	int64_t deadline = mono_ms() + 2000;
	dlog_get_stats(h.log, &st);
	while (st.segments_removed + 1 < st.active_segment && mono_ms() < deadline) {
		usleep(1000);
		dlog_get_stats(h.log, &st);
	}
	printf("check_dlog: compaction: active segment %" PRIu64 ", %" PRIu64 " removed, %d left\n", st.active_segment,
	       st.segments_removed, nseg);
	ck_assert_uint_ge(st.active_segment, 6); /* the log did rotate */
	ck_assert_int_eq(nseg, 1);
	ck_assert_uint_eq(st.segments_removed, st.active_segment - 1);
	for (uint64_t s = 1; s < st.active_segment; s++)
		ck_assert_msg(!seg_exists(dir, s), "finished segment %" PRIu64 " still there", s);
	ck_assert(seg_exists(dir, st.active_segment));
	ck_assert_uint_eq(dlog_live_commits(h.log)->count, 0);
	uint64_t active = st.active_segment;
	h_close(&h);

	/* What is left holds only the tail of the history. */
	disk_read(dir, &d);
	ck_assert_uint_lt(d.n, 200);
	disk_free(&d);

	h_open(&h, dir, 4096);
	ck_assert_uint_eq(h.load.live_commits, 0);
	ck_assert_uint_eq(h.load.segments, 1);
	ck_assert_int_le(dlog_count_segments(dir), 2);
	for (uint64_t s = 1; s < active; s++)
		ck_assert_msg(!seg_exists(dir, s), "removed segment %" PRIu64 " came back", s);
	h_close(&h);
	rm_rf(dir);
}
END_TEST

/* A log where txn 100000's COMMIT (no DONE) pins segment 1, followed by
 * 400 finished transactions spread over later, rotated segments. */
static void build_pinned_log(Harness *h, const char *tag)
{
	char dir[600];
	DlogStats st;

	make_dir(dir, sizeof(dir), tag);
	h_open(h, dir, 4096);
	h_start(h);
	Writer pending = {.first_txn = 100000, .n = 1};
	writer_run(&pending, h);
	Writer w = {.first_txn = 1, .n = 400, .chain = true, .done = DONE_ALL};
	writer_run(&w, h);
	/* Removal goes from the oldest end only (a later segment may hold DONEs
	 * for an older one's COMMITs). The pinned COMMIT does not keep the log
	 * growing: once its segment falls behind it is carried forward into the
	 * active segment and the old ones go. */
	int nseg = run_until_segments(h->base, h->dir, 6, 3000);
	dlog_get_stats(h->log, &st);
	ck_assert_uint_ge(st.active_segment, 5);
	ck_assert_uint_ge(st.carried_forward, 1);
	ck_assert_int_le(nseg, 6);
	ck_assert_msg(!seg_exists(h->dir, 1), "segment 1 still there after its live COMMIT was carried forward");
	ck_assert_ptr_nonnull(dlog_find_commit(h->log, 100000));
	ck_assert_uint_eq(dlog_live_commits(h->log)->count, 1);
	h_close(h);
}

START_TEST(test_live_commit_survives_compaction)
{
	Harness h = {0};
	TestRec t;

	build_pinned_log(&h, "keep");
	make_commit(&t, 100000);
	ck_assert_uint_ge(disk_count(h.dir, &t.rec), 1); /* on disk, perhaps twice while carried */

	/* After a restart the COMMIT is still there and still live. */
	h_open(&h, h.dir, 4096);
	ck_assert_ptr_nonnull(dlog_find_commit(h.log, 100000));
	ck_assert(rec_equal(dlog_find_commit(h.log, 100000), &t.rec));

	/* Its DONE finally lets segment 1 go. (Recovery finishes whatever else
	 * replay reports as live too; see test_done_records_survive_compaction
	 * for why that may be more than txn 100000.) */
	h_start(&h);
	uint64_t live[64];
	size_t nlive = 0, pos = 0;
	uint64_t key;
	while (nlive < 64 && idmap_next(dlog_live_commits(h.log), &pos, &key, NULL))
		live[nlive++] = key;
	for (size_t i = 0; i < nlive; i++)
		dlog_append_done(h.log, live[i]);
	ck_assert_ptr_null(dlog_find_commit(h.log, 100000));
	ck_assert_uint_eq(dlog_live_commits(h.log)->count, 0);
	Writer more = {.first_txn = 200000, .n = 1, .done = DONE_ALL};
	writer_run(&more, &h);
	run_until_segments(h.base, h.dir, 1, 3000);
	ck_assert(!seg_exists(h.dir, 1));
	h_close(&h);
	rm_rf(h.dir);
}
END_TEST

/* Segment 1 is pinned by txn 100000 but also holds the COMMITs of txns
 * 1..20, whose DONEs are written later, into a segment that then fills up,
 * rotates and is deleted as "finished". After a restart only txn 100000 may
 * be live: a finished transaction must not come back as undecided work
 * because its DONE was compacted away while its COMMIT was kept. */
START_TEST(test_done_records_survive_compaction)
{
	char dir[600], extra[512] = "";
	Harness h = {0};
	size_t pos = 0, o = 0;
	uint64_t key;
	DlogStats st;

	make_dir(dir, sizeof(dir), "resurrect");
	h_open(&h, dir, 4096);
	h_start(&h);
	Writer pin = {.first_txn = 100000, .n = 1};
	writer_run(&pin, &h);
	Writer early = {.first_txn = 1, .n = 20}; /* segment 1, DONE comes later */
	writer_run(&early, &h);
	Writer fill = {.first_txn = 1000, .n = 200, .chain = true, .done = DONE_ALL};
	writer_run(&fill, &h);
	dlog_get_stats(h.log, &st);
	uint64_t done_seg = st.active_segment;
	ck_assert_uint_gt(done_seg, 1);
	for (uint64_t txn = 1; txn <= 20; txn++)
		dlog_append_done(h.log, txn); /* lands in segment done_seg */
	Writer more = {.first_txn = 5000, .n = 200, .chain = true, .done = DONE_ALL};
	writer_run(&more, &h);
	run_until_segments(h.base, dir, 2, 300);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_gt(st.active_segment, done_seg);
	/* done_seg holds the DONEs of segment 1's COMMITs: it must not go
	 * while segment 1 is still on disk. */
	ck_assert_msg(!seg_exists(dir, 1) || seg_exists(dir, done_seg),
	              "segment %" PRIu64 " (DONEs for segment 1) removed before segment 1", done_seg);
	ck_assert_uint_eq(dlog_live_commits(h.log)->count, 1);
	h_close(&h);

	h_open(&h, dir, 4096);
	while (idmap_next(dlog_live_commits(h.log), &pos, &key, NULL)) {
		if (key != 100000 && o + 24 < sizeof(extra))
			o += (size_t)snprintf(extra + o, sizeof(extra) - o, " %" PRIu64, key);
	}
	bool pinned_live = dlog_find_commit(h.log, 100000) != NULL;
	uint64_t nlive = h.load.live_commits;
	h_close(&h); /* before asserting: a failure leaks nothing */
	rm_rf(dir);
	ck_assert(pinned_live);
	ck_assert_msg(nlive == 1,
	              "after restart %" PRIu64 " COMMITs are live, want only txn 100000; finished txns back from "
	              "the dead (their DONEs were in deleted segment %" PRIu64 "):%s",
	              nlive, done_seg, extra);
}
END_TEST

/* ---- one process per directory ------------------------------------------------------------- */

START_TEST(test_directory_lock)
{
	char dir[600], err[1024] = "", pid[32];
	Harness a = {0}, b = {0};
	Dlog *log = (Dlog *)&a; /* must be overwritten */
	DlogLoadStats st;

	make_dir(dir, sizeof(dir), "lock");
	h_open(&a, dir, 1 << 20);
	ck_assert(!dlog_open(dir, 1 << 20, TTL_HOUR, &log, &st, err, sizeof(err)));
	ck_assert_ptr_null(log);
	ck_assert_contains(err, "locked");
	ck_assert_contains(err, dir);
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	ck_assert_contains(err, pid);
	/* The failed attempt neither broke the holder nor added segments. */
	ck_assert_int_eq(dlog_count_segments(dir), 1);
	h_start(&a);
	Writer w = {.first_txn = 1, .n = 5, .check_disk = 1};
	writer_run(&w, &a);
	h_close(&a);

	h_open(&b, dir, 1 << 20);
	ck_assert_uint_eq(b.load.records, 5);
	h_close(&b);
	rm_rf(dir);
}
END_TEST

/* ---- idempotency keys: the codec ------------------------------------------------------------ */

START_TEST(test_codec_roundtrip_keyed)
{
	static const size_t keylens[] = {1, 2, 17, 254, DLOG_IDEM_KEY_MAX};
	static const uint32_t resplens[] = {0, 1, 100, DLOG_IDEM_RESPONSE_MAX};
	TestRec t;

	for (size_t k = 0; k < sizeof(keylens) / sizeof(keylens[0]); k++) {
		for (size_t r = 0; r < sizeof(resplens) / sizeof(resplens[0]); r++) {
			for (uint64_t txn = 1; txn <= 3; txn++) {
				make_keyed_commit(&t, txn * 0x10001ULL, 1700000000000LL, resplens[r]);
				memset(t.idem.key, 0, sizeof(t.idem.key));
				for (size_t c = 0; c < keylens[k]; c++)
					t.idem.key[c] = (char)(0x20 + (c * 7 + txn) % 95);
				t.idem.status = (uint16_t)(r == 0 ? 100 : r == 1 ? 599 : 200);
				roundtrip(&t.rec);
				t.rec.type = DLOG_IDEM;
				t.rec.nbranches = 0;
				t.rec.branches = NULL;
				t.rec.wall_ms = -(int64_t)txn;
				roundtrip(&t.rec);
			}
		}
	}
	/* Every printable byte in one key; a NULL response of length 0. */
	make_keyed_commit(&t, 7, INT64_MAX, 0);
	for (int c = 0x20; c <= 0x7e; c++)
		t.idem.key[c - 0x20] = (char)c;
	t.idem.key[0x7f - 0x20] = '\0';
	t.idem.response = NULL;
	roundtrip(&t.rec);

	/* The biggest keyed COMMIT there can be still fits a frame: 64
	 * branches with 63-byte names, the longest key and response. */
	static DlogBranchRef br[64];
	make_keyed_commit(&t, 8, 1, DLOG_IDEM_RESPONSE_MAX);
	memset(t.idem.key, 'k', DLOG_IDEM_KEY_MAX);
	t.idem.key[DLOG_IDEM_KEY_MAX] = '\0';
	for (int i = 0; i < 64; i++) {
		memset(br[i].name, 'a' + i % 26, DLOG_NAME_MAX);
		br[i].name[DLOG_NAME_MAX] = '\0';
		br[i].index = (uint16_t)i;
	}
	t.rec.branches = br;
	t.rec.nbranches = 64;
	ck_assert_uint_le(dlog_encoded_size(&t.rec), DLOG_FRAME_HEADER + DLOG_MAX_PAYLOAD);
	roundtrip(&t.rec);
}
END_TEST

START_TEST(test_codec_keyed_truncations_and_flips)
{
	TestRec t;

	make_keyed_commit(&t, 2, 1700000000000LL, 40); /* three branches */
	check_truncations(&t.rec);
	check_flips(&t.rec);
	make_keyed_commit(&t, 3, 1700000000000LL, 0);
	check_truncations(&t.rec);
	check_flips(&t.rec);
	make_idem(&t, 4, 1700000000000LL, 40);
	check_truncations(&t.rec);
	check_flips(&t.rec);
	make_idem(&t, 5, 1700000000000LL, 0);
	check_truncations(&t.rec);
	check_flips(&t.rec);
}
END_TEST

/* A COMMIT as every log written before the extension holds it: decodes
 * with no key, and re-encodes to the same bytes. */
START_TEST(test_codec_old_commit_has_no_key)
{
	/* txn 1, wall 0x0102030405060708, flags 0, one branch: index 3, "ab". */
	static const uint8_t payload[] = {1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 0, 3, 0, 2, 'a', 'b'};
	uint8_t buf[64], again[64];
	DlogRecord out;
	size_t flen = 0, n = frame(buf, DLOG_COMMIT, payload, sizeof(payload));
	char err[256] = "";

	ck_assert_int_eq(dlog_decode(buf, n, &out, &flen, err, sizeof(err)), DLOG_DEC_OK);
	ck_assert_uint_eq(flen, n);
	ck_assert_ptr_null(out.idem);
	ck_assert_uint_eq(out.txn_id, 1);
	ck_assert_int_eq(out.wall_ms, 0x0102030405060708LL);
	ck_assert_uint_eq(out.nbranches, 1);
	ck_assert_str_eq(out.branches[0].name, "ab");
	ck_assert_uint_eq(dlog_encoded_size(&out), n);
	ck_assert_uint_eq(dlog_encode(&out, again), n);
	ck_assert(memcmp(buf, again, n) == 0);
	dlog_record_clear(&out);
}
END_TEST

/* Appends the idempotency extension to p at *n. */
static void put_ext(uint8_t *p, size_t *n, uint8_t version, const char *key, uint16_t status, uint32_t rlen,
                    size_t rbytes)
{
	size_t kl = strlen(key);
	p[(*n)++] = version;
	p[(*n)++] = (uint8_t)kl;
	memcpy(p + *n, key, kl);
	*n += kl;
	memset(p + *n, 0xab, DLOG_IDEM_FP_LEN);
	*n += DLOG_IDEM_FP_LEN;
	p[(*n)++] = (uint8_t)status;
	p[(*n)++] = (uint8_t)(status >> 8);
	for (int i = 0; i < 4; i++)
		p[(*n)++] = (uint8_t)(rlen >> (8 * i));
	memset(p + *n, 'r', rbytes);
	*n += rbytes;
}

/* Decodes a COMMIT (the 24-byte base of test_codec_bad_types_and_payloads)
 * or IDEM (txn, wall) payload followed by ext[0..extlen) and checks the
 * outcome; a BAD one must name the problem (`want`) and the record. */
static void expect_ext(uint8_t type, const uint8_t *ext, size_t extlen, DlogDecode want_d, const char *want)
{
	static uint8_t payload[DLOG_MAX_PAYLOAD], buf[DLOG_FRAME_HEADER + DLOG_MAX_PAYLOAD];
	static const uint8_t commit_base[24] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   0,
	                                        0, 0, 0, 0, 0, 1, 0, 3, 0, 2, 'a', 'b'};
	size_t base = type == DLOG_COMMIT ? sizeof(commit_base) : 16;
	char err[256] = "";

	memset(payload, 0, 16);
	payload[0] = 1; /* txn 1 */
	if (type == DLOG_COMMIT)
		memcpy(payload, commit_base, sizeof(commit_base));
	ck_assert_uint_le(base + extlen, sizeof(payload));
	memcpy(payload + base, ext, extlen);
	size_t n = frame(buf, type, payload, (uint32_t)(base + extlen));
	DlogDecode d = decode_buf(buf, n, err, sizeof(err));
	ck_assert_msg(d == want_d, "decode gave %d, want %d (%s)", (int)d, (int)want_d, err);
	if (want != NULL) {
		ck_assert_contains(err, want);
		ck_assert_contains(err, type == DLOG_COMMIT ? "COMMIT of txn 0000000000000001"
		                                            : "IDEM of txn 0000000000000001");
	}
}

START_TEST(test_codec_bad_idem_extension)
{
	static uint8_t e[DLOG_IDEM_RESPONSE_MAX + 1024];
	static const uint8_t types[] = {DLOG_COMMIT, DLOG_IDEM};
	size_t n;

	for (size_t t = 0; t < 2; t++) {
		uint8_t ty = types[t];
		/* The control cases. */
		n = 0;
		put_ext(e, &n, 1, "k", 200, 2, 2);
		expect_ext(ty, e, n, DLOG_DEC_OK, NULL);
		n = 0;
		put_ext(e, &n, 1, "k", 200, DLOG_IDEM_RESPONSE_MAX, DLOG_IDEM_RESPONSE_MAX);
		expect_ext(ty, e, n, DLOG_DEC_OK, NULL);

		/* Versions other than 1. */
		n = 0;
		put_ext(e, &n, 0, "k", 200, 2, 2);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "unknown version 0");
		n = 0;
		put_ext(e, &n, 2, "k", 200, 2, 2);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "unknown version 2");
		/* One byte of extension; the key's length but no key. */
		expect_ext(ty, e, 1, DLOG_DEC_BAD, "cut short");
		e[0] = 1;
		e[1] = 5;
		expect_ext(ty, e, 2, DLOG_DEC_BAD, "cut short");
		/* An empty key. */
		n = 0;
		put_ext(e, &n, 1, "", 200, 2, 2);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "empty idempotency key");
		/* Key bytes outside 0x20..0x7e: control, DEL, high, NUL. */
		static const uint8_t badch[] = {0x1f, 0x7f, 0x80, 0xff, 0x00, '\n'};
		for (size_t i = 0; i < sizeof(badch); i++) {
			n = 0;
			put_ext(e, &n, 1, "abc", 200, 2, 2);
			e[2 + 1] = badch[i];
			char want[64];
			snprintf(want, sizeof(want), "byte 1 of the idempotency key is 0x%02x", badch[i]);
			expect_ext(ty, e, n, DLOG_DEC_BAD, want);
		}
		/* Cut inside the fingerprint and inside the response length. */
		n = 0;
		put_ext(e, &n, 1, "abc", 200, 0, 0);
		expect_ext(ty, e, 2 + 3 + 10, DLOG_DEC_BAD, "cut short");
		expect_ext(ty, e, n - 1, DLOG_DEC_BAD, "cut short");
		/* Statuses that are no HTTP status. */
		n = 0;
		put_ext(e, &n, 1, "k", 99, 0, 0);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "status 99 is not an HTTP status");
		n = 0;
		put_ext(e, &n, 1, "k", 600, 0, 0);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "status 600 is not an HTTP status");
		n = 0;
		put_ext(e, &n, 1, "k", 0, 0, 0);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "not an HTTP status");
		/* A response length past the payload, and past the maximum (with
		 * the bytes there). */
		n = 0;
		put_ext(e, &n, 1, "k", 200, 11, 10);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "response length 11 runs past the payload (10 bytes left)");
		n = 0;
		put_ext(e, &n, 1, "k", 200, 0xffffffffu, 10);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "exceeds the maximum");
		n = 0;
		put_ext(e, &n, 1, "k", 200, DLOG_IDEM_RESPONSE_MAX + 1, DLOG_IDEM_RESPONSE_MAX + 1);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "exceeds the maximum");
		/* Trailing garbage after the response. */
		n = 0;
		put_ext(e, &n, 1, "k", 200, 2, 3);
		expect_ext(ty, e, n, DLOG_DEC_BAD, "1 trailing bytes");
		n = 0;
		put_ext(e, &n, 1, "k", 200, 0, 0);
		put_ext(e, &n, 1, "k", 200, 0, 0); /* the extension twice */
		expect_ext(ty, e, n, DLOG_DEC_BAD, "trailing bytes");
	}
	/* An IDEM record without its extension. */
	expect_ext(DLOG_IDEM, e, 0, DLOG_DEC_BAD, "no idempotency extension");
	/* Shorter than txn + wall. */
	{
		uint8_t buf[64], p[16] = {0};
		char err[256];
		ck_assert_int_eq(decode_buf(buf, frame(buf, DLOG_IDEM, p, 15), err, sizeof(err)), DLOG_DEC_BAD);
	}
	/* Nothing decodes in a frame the torn-tail search would skip. */
	{
		uint8_t buf[256];
		TestRec t;
		make_idem(&t, 9, 1, 0);
		ck_assert_uint_le(dlog_encoded_size(&t.rec), sizeof(buf));
		size_t len = dlog_encode(&t.rec, buf);
		ck_assert(dlog_frame_plausible(buf, len));
		ck_assert(!dlog_frame_plausible(buf, len - 1));
	}
}
END_TEST

START_TEST(test_idem_valid)
{
	TestRec t;
	char err[256];

	make_keyed_commit(&t, 1, 1, 10);
	ck_assert(dlog_idem_valid(&t.idem, err, sizeof(err)));
	t.idem.key[0] = '\0';
	ck_assert(!dlog_idem_valid(&t.idem, err, sizeof(err)));
	ck_assert_contains(err, "1 to 255 bytes");
	memset(t.idem.key, 'a', sizeof(t.idem.key)); /* 256 bytes, unterminated */
	ck_assert(!dlog_idem_valid(&t.idem, err, sizeof(err)));
	make_keyed_commit(&t, 1, 1, 10);
	t.idem.key[2] = '\t';
	ck_assert(!dlog_idem_valid(&t.idem, err, sizeof(err)));
	ck_assert_contains(err, "byte 2 of the idempotency key is 0x09");
	make_keyed_commit(&t, 1, 1, 10);
	t.idem.status = 1000;
	ck_assert(!dlog_idem_valid(&t.idem, err, sizeof(err)));
	ck_assert_contains(err, "1000 is not an HTTP status");
	make_keyed_commit(&t, 1, 1, DLOG_IDEM_RESPONSE_MAX);
	t.idem.response_len++;
	ck_assert(!dlog_idem_valid(&t.idem, err, sizeof(err)));
	ck_assert_contains(err, "49153-byte response");

	/* dlog_idem_new copies; the copy is NUL-terminated and deep. */
	char resp[] = "{\"ok\":true}";
	DlogIdem *a = dlog_idem_new("k1", t.idem.fingerprint, 201, resp, (uint32_t)strlen(resp));
	DlogIdem *b = dlog_idem_copy(a);
	resp[0] = 'X';
	ck_assert_str_eq(a->response, "{\"ok\":true}");
	ck_assert_ptr_ne(a->response, b->response);
	ck_assert(idem_equal(a, b));
	ck_assert(dlog_idem_valid(b, err, sizeof(err)));
	dlog_idem_free(a);
	dlog_idem_free(b);
	dlog_idem_free(NULL);
	ck_assert_ptr_null(dlog_idem_copy(NULL));
}
END_TEST

/* Writing a key the decoder would refuse is a bug that would make the log
 * unreadable at the next start: dlog_encode stops the process instead. */
START_TEST(test_encode_refuses_bad_key)
{
	static uint8_t buf[DLOG_FRAME_HEADER + DLOG_MAX_PAYLOAD];
	TestRec t;

	make_keyed_commit(&t, 1, 1, 10);
	t.idem.key[0] = '\n';
	dlog_encode(&t.rec, buf);
}
END_TEST

START_TEST(test_encode_refuses_idem_without_key)
{
	static uint8_t buf[DLOG_FRAME_HEADER + DLOG_MAX_PAYLOAD];
	TestRec t;

	make_idem(&t, 1, 1, 10);
	t.rec.idem = NULL;
	dlog_encode(&t.rec, buf);
}
END_TEST

START_TEST(test_record_copy_keyed_is_deep)
{
	TestRec t;
	make_keyed_commit(&t, 2, 5, 30);
	DlogRecord *c = dlog_record_copy(&t.rec);
	ck_assert_ptr_nonnull(c->idem);
	ck_assert_ptr_ne(c->idem, t.rec.idem);
	ck_assert_ptr_ne(c->idem->response, t.idem.response);
	ck_assert(rec_equal(c, &t.rec));
	t.idem.key[0] = 'X';
	ck_assert_str_eq(c->idem->key, "key-2");
	dlog_record_free(c); /* LSan/valgrind: the idem and its response go too */
}
END_TEST

/* ---- idempotency keys: the log ---------------------------------------------------------------- */

static void count_cb(void *arg)
{
	(*(int *)arg)++;
}

/* Appends a COMMIT from the loop and runs it until the record is durable. */
static void append_commit_wait(Harness *h, const DlogRecord *rec)
{
	int done = 0;
	dlog_append_commit(h->log, rec, count_cb, &done);
	run_until(h->base, &done, 1, 10000);
	ck_assert_msg(done == 1, "txn %" PRIu64 ": no completion", rec->txn_id);
}

/* Runs the loop for ms milliseconds. */
static void run_for(struct event_base *base, int ms)
{
	int never = 0;
	run_until(base, &never, 1, ms);
}

/* What dlog_foreach_idempotent reported. */
typedef struct Seen {
	size_t n, finished;
	uint64_t txn[64];
	bool fin[64];
	DlogRecord *rec[64];
} Seen;

static void seen_cb(const DlogRecord *rec, bool finished, void *arg)
{
	Seen *s = arg;
	ck_assert_ptr_nonnull(rec->idem);
	ck_assert(finished ? rec->type == DLOG_IDEM : rec->type == DLOG_COMMIT);
	ck_assert_uint_lt(s->n, 64);
	s->txn[s->n] = rec->txn_id;
	s->fin[s->n] = finished;
	s->rec[s->n] = dlog_record_copy(rec);
	s->n++;
	s->finished += finished;
}

static void seen_collect(Seen *s, const Dlog *log)
{
	memset(s, 0, sizeof(*s));
	dlog_foreach_idempotent(log, seen_cb, s);
}

static void seen_free(Seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		dlog_record_free(s->rec[i]);
	memset(s, 0, sizeof(*s));
}

/* The record foreach reported for txn, and whether it was finished; fails
 * if there is none. */
static const DlogRecord *seen_find(const Seen *s, uint64_t txn, bool *finished)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->txn[i] == txn) {
			*finished = s->fin[i];
			return s->rec[i];
		}
	}
	ck_abort_msg("txn %" PRIu64 " is not remembered", txn);
	return NULL;
}

/* Checks that the log remembers txn's key as make_keyed_commit(txn, wall,
 * rlen) made it, finished or not. */
static void expect_key(const Seen *s, uint64_t txn, int64_t wall, uint32_t rlen, bool want_finished)
{
	TestRec t;
	bool finished;
	const DlogRecord *r = seen_find(s, txn, &finished);

	if (want_finished)
		make_idem(&t, txn, wall, rlen);
	else
		make_keyed_commit(&t, txn, wall, rlen);
	ck_assert_msg(finished == want_finished, "txn %" PRIu64 ": finished %d", txn, finished);
	ck_assert_msg(rec_equal(r, &t.rec), "txn %" PRIu64 ": the remembered record differs", txn);
}

/* A keyed COMMIT whose DONE comes within the ttl is remembered: at once,
 * and after restarts, with its segment kept; with a ttl already over, it is
 * forgotten and its segment goes. Unkeyed and live ones behave as always. */
START_TEST(test_idem_done_keeps_key)
{
	char dir[600];
	Harness h = {0};
	TestRec a, b, c;
	Seen s;
	DlogStats st;
	bool fin;
	int64_t now = now_wall_ms();

	make_dir(dir, sizeof(dir), "idem-done");
	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	h_start(&h);
	make_keyed_commit(&a, 1, now, 300);
	make_commit(&b, 2);
	make_keyed_commit(&c, 3, now, 0);
	append_commit_wait(&h, &a.rec);
	append_commit_wait(&h, &b.rec);
	append_commit_wait(&h, &c.rec);

	/* Live keyed COMMITs are reported unfinished. */
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_uint_eq(s.finished, 0);
	expect_key(&s, 1, now, 300, false);
	expect_key(&s, 3, now, 0, false);
	seen_free(&s);

	/* DONE: no longer live (no undecided work), but remembered. */
	dlog_append_done(h.log, 1);
	dlog_append_done(h.log, 2);
	ck_assert_ptr_null(dlog_find_commit(h.log, 1));
	ck_assert_ptr_null(dlog_find_commit(h.log, 2));
	ck_assert_int_eq(dlog_decision(h.log, 1), DLOG_PRESUMED_ABORT);
	ck_assert_uint_eq(dlog_live_commits(h.log)->count, 1);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_uint_eq(s.finished, 1);
	expect_key(&s, 1, now, 300, true);
	expect_key(&s, 3, now, 0, false);
	seen_free(&s);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_eq(st.idem_keys, 1);
	ck_assert_uint_eq(st.idem_expired, 0);
	h_close(&h);

	/* Replay: the same, and segment 1 (which holds txn 1) is kept. */
	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	ck_assert_uint_eq(h.load.records, 5);
	ck_assert_uint_eq(h.load.live_commits, 1);
	ck_assert_uint_eq(h.load.live_keyed, 1);
	ck_assert_uint_eq(h.load.idem_keys, 1);
	ck_assert_uint_eq(h.load.idem_expired, 0);
	ck_assert(seg_exists(dir, 1));
	ck_assert_ptr_null(dlog_find_commit(h.log, 1));
	ck_assert_ptr_nonnull(dlog_find_commit(h.log, 3));
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 2);
	expect_key(&s, 1, now, 300, true);
	expect_key(&s, 3, now, 0, false);
	seen_free(&s);
	h_start(&h);
	dlog_append_done(h.log, 3);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.finished, 2);
	seen_free(&s);
	h_close(&h);

	/* Both finished, both remembered: segment 1 is still needed, while the
	 * empty segments of the restarts in between are not. */
	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	ck_assert_uint_eq(h.load.live_commits, 0);
	ck_assert_uint_eq(h.load.idem_keys, 2);
	ck_assert(seg_exists(dir, 1));
	ck_assert(seg_exists(dir, 2)); /* the DONE of txn 3 */
	seen_collect(&s, h.log);
	ck_assert(seen_find(&s, 3, &fin) != NULL && fin);
	seen_free(&s);
	h_close(&h);

	/* A ttl that is over: forgotten at replay, and segment 1 goes. */
	usleep(20 * 1000);
	h_open_ttl(&h, dir, 1 << 20, 10);
	ck_assert_uint_eq(h.load.idem_keys, 0);
	ck_assert_uint_eq(h.load.idem_expired, 2);
	ck_assert_uint_eq(h.load.live_commits, 0);
	ck_assert(!seg_exists(dir, 1));
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 0);
	h_close(&h);
	rm_rf(dir);
}
END_TEST

/* A keyed COMMIT whose DONE comes after its ttl is over is not kept. */
START_TEST(test_idem_done_after_ttl_forgets)
{
	char dir[600];
	Harness h = {0};
	TestRec a;
	Seen s;
	DlogStats st;

	make_dir(dir, sizeof(dir), "idem-late");
	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	h_start(&h);
	make_keyed_commit(&a, 1, now_wall_ms() - 2 * TTL_HOUR, 10); /* stuck in phase 2 for two hours */
	append_commit_wait(&h, &a.rec);
	dlog_append_done(h.log, 1);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 0);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_eq(st.idem_keys, 0);
	ck_assert_uint_eq(st.idem_expired, 1);
	h_close(&h);
	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	ck_assert_uint_eq(h.load.idem_keys, 0);
	ck_assert_uint_eq(h.load.idem_expired, 1);
	ck_assert(!seg_exists(dir, 1));
	h_close(&h);
	rm_rf(dir);
}
END_TEST

/* dlog_expire_idempotency forgets a key once its time is up, and then the
 * segments it pinned go, although nothing more is written. */
START_TEST(test_idem_expiry_frees_segments)
{
	char dir[600];
	Harness h = {0};
	TestRec k;
	DlogStats st;
	Seen s;
	int64_t now = now_wall_ms();

	make_dir(dir, sizeof(dir), "idem-expire");
	h_open_ttl(&h, dir, 4096, TTL_HOUR);
	h_start(&h);
	make_keyed_commit(&k, 100000, now, 200);
	append_commit_wait(&h, &k.rec);
	dlog_append_done(h.log, 100000);
	/* Finished traffic: the log rotates a few times (but not so often that
	 * carry-forward would move the key: this test is about expiry). */
	Writer w = {.first_txn = 1, .n = 160, .chain = true, .done = DONE_ALL};
	writer_run(&w, &h);
	run_for(h.base, 100);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_ge(st.active_segment, 3);
	ck_assert_uint_eq(st.carried_forward, 0);
	ck_assert(seg_exists(dir, 1));
	ck_assert_int_eq(dlog_count_segments(dir), (int)st.active_segment); /* all pinned behind segment 1 */

	/* Not yet: nothing happens. */
	ck_assert_uint_eq(dlog_expire_idempotency(h.log, now_wall_ms()), 0);
	ck_assert_uint_eq(dlog_expire_idempotency(h.log, now + TTL_HOUR - 1), 0);
	run_for(h.base, 50);
	ck_assert(seg_exists(dir, 1));

	/* An hour later: forgotten, and every segment but the active one goes
	 * with no further write. */
	ck_assert_uint_eq(dlog_expire_idempotency(h.log, now + TTL_HOUR), 1);
	ck_assert_uint_eq(dlog_expire_idempotency(h.log, now + TTL_HOUR), 0);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 0);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_eq(st.idem_keys, 0);
	ck_assert_uint_eq(st.idem_expired, 1);
	ck_assert_int_eq(run_until_segments(h.base, dir, 1, 5000), 1);
	ck_assert(!seg_exists(dir, 1));
	ck_assert(seg_exists(dir, st.active_segment));
	h_close(&h);

	h_open_ttl(&h, dir, 4096, TTL_HOUR);
	ck_assert_uint_eq(h.load.idem_keys, 0);
	ck_assert_uint_eq(h.load.live_commits, 0);
	h_close(&h);
	rm_rf(dir);
}
END_TEST

/* Writes the frames of recs as segment seq of dir: a log built by hand. */
static void write_segment(const char *dir, uint64_t seq, const DlogRecord *const *recs, size_t n)
{
	static uint8_t buf[1 << 20];
	char path[700];
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_le(len + dlog_encoded_size(recs[i]), sizeof(buf));
		len += dlog_encode(recs[i], buf + len);
	}
	seg_path(path, sizeof(path), dir, seq);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* IDEM records met by replay, and the tools' paths: an unexpired IDEM is
 * remembered, an expired one is not, an IDEM for a transaction whose
 * COMMIT is still live does not finish it; the read-only open keeps every
 * key; without the log thread, expiry removes segments at once. */
START_TEST(test_idem_replay_records)
{
	char dir[600], err[1024] = "";
	Harness h = {0};
	TestRec x, y, z, w, wi, d;
	Seen s;
	bool fin;
	int64_t now = now_wall_ms();

	make_dir(dir, sizeof(dir), "idem-replay");
	make_keyed_commit(&x, 1, now, 5);     /* live, keyed */
	make_idem(&y, 2, now, 6);             /* a remembered key */
	make_idem(&z, 3, 1700000000000LL, 7); /* a key from 2023: expired */
	make_keyed_commit(&w, 4, now, 8);     /* live ... */
	make_idem(&wi, 4, now, 8);            /* ... so its IDEM does not count */
	make_commit(&d, 5);
	const DlogRecord *recs[] = {&x.rec, &y.rec, &z.rec, &w.rec, &wi.rec, &d.rec};
	write_segment(dir, 1, recs, 6);

	/* Read-only: nothing expires. */
	Dlog *ro = NULL;
	DlogLoadStats st;
	ck_assert_msg(dlog_open_readonly(dir, &ro, &st, err, sizeof(err)), "%s", err);
	ck_assert_uint_eq(st.records, 6);
	ck_assert_uint_eq(st.live_commits, 3);
	ck_assert_uint_eq(st.live_keyed, 2);
	ck_assert_uint_eq(st.idem_keys, 2);
	ck_assert_uint_eq(st.idem_expired, 0);
	seen_collect(&s, ro);
	ck_assert_uint_eq(s.n, 4);
	expect_key(&s, 3, 1700000000000LL, 7, true);
	seen_free(&s);
	dlog_close(ro);

	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	ck_assert_uint_eq(h.load.live_commits, 3);
	ck_assert_uint_eq(h.load.live_keyed, 2);
	ck_assert_uint_eq(h.load.idem_keys, 1);
	ck_assert_uint_eq(h.load.idem_expired, 1);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 3);
	expect_key(&s, 1, now, 5, false);
	expect_key(&s, 2, now, 6, true);
	expect_key(&s, 4, now, 8, false);
	seen_free(&s);
	ck_assert_ptr_nonnull(dlog_find_commit(h.log, 4));

	/* The tools' path: DONE by dlog_append_sync remembers the key too, and
	 * expiry without a log thread removes what it can right away. */
	DlogRecord done = {.type = DLOG_DONE, .txn_id = 1};
	ck_assert_msg(dlog_append_sync(h.log, &done, err, sizeof(err)), "%s", err);
	done.txn_id = 4;
	ck_assert(dlog_append_sync(h.log, &done, err, sizeof(err)));
	done.txn_id = 5;
	ck_assert(dlog_append_sync(h.log, &done, err, sizeof(err)));
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.finished, 3);
	ck_assert(seen_find(&s, 4, &fin) != NULL && fin);
	seen_free(&s);
	ck_assert(seg_exists(dir, 1));
	ck_assert_uint_eq(dlog_expire_idempotency(h.log, now + TTL_HOUR), 3);
	ck_assert(!seg_exists(dir, 1));
	h_close(&h);
	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	ck_assert_uint_eq(h.load.idem_keys, 0);
	ck_assert_uint_eq(h.load.live_commits, 0);
	h_close(&h);
	rm_rf(dir);
}
END_TEST

/* A torn IDEM at the end of the newest segment is a torn tail; a bad frame
 * with a valid IDEM after it is damage, not a tail to cut (the torn-tail
 * search must know IDEM frames, or it would cut the remembered key). */
START_TEST(test_idem_torn_tail_and_damage)
{
	Harness h = {0};
	char dir[600], seg[700];
	TestRec a, y;
	uint8_t buf[512];
	int64_t now = now_wall_ms();

	make_dir(dir, sizeof(dir), "idem-torn");
	make_commit(&a, 1);
	make_idem(&y, 2, now, 20);
	const DlogRecord *recs[] = {&a.rec};
	write_segment(dir, 1, recs, 1);
	seg_path(seg, sizeof(seg), dir, 1);
	size_t alen = file_size(seg), ylen = dlog_encode(&y.rec, buf);
	append_bytes(seg, buf, ylen - 7);
	h_open_ttl(&h, dir, 1 << 20, TTL_HOUR);
	ck_assert_uint_eq(h.load.truncated_bytes, ylen - 7);
	ck_assert_uint_eq(h.load.idem_keys, 0);
	h_close(&h);
	ck_assert_int_eq(file_size(seg), (off_t)alen);

	/* Garbage, then a whole IDEM: refused, the file left alone. */
	uint8_t junk[20];
	memset(junk, 0x5a, sizeof(junk));
	append_bytes(seg, junk, sizeof(junk));
	append_bytes(seg, buf, ylen);
	char want[64];
	snprintf(want, sizeof(want), "offset %zu", alen);
	expect_refused(dir, seg, want, NULL);
	rm_rf(dir);
}
END_TEST

/* A finished transaction's key in the oldest segment is carried forward as
 * an IDEM record (a live keyed COMMIT as a COMMIT with its key), so the old
 * segments go; after a restart both keys are still there. */
START_TEST(test_idem_carried_forward)
{
	char dir[600];
	Harness h = {0};
	TestRec k1, k2, t;
	DlogStats st;
	DiskLog d;
	Seen s;
	int64_t now = now_wall_ms();

	make_dir(dir, sizeof(dir), "idem-carry");
	h_open_ttl(&h, dir, 4096, TTL_HOUR);
	h_start(&h);
	make_keyed_commit(&k1, 100000, now, 500);
	make_keyed_commit(&k2, 100001, now, 50);
	append_commit_wait(&h, &k1.rec);
	append_commit_wait(&h, &k2.rec);
	dlog_append_done(h.log, 100000); /* finished: remembered; 100001 stays live */
	Writer w = {.first_txn = 1, .n = 400, .chain = true, .done = DONE_ALL};
	writer_run(&w, &h);
	int nseg = run_until_segments(h.base, dir, 6, 3000);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_ge(st.carried_forward, 2);
	ck_assert_int_le(nseg, 6);
	ck_assert_msg(!seg_exists(dir, 1), "segment 1 still there after its keys were carried forward");
	ck_assert_uint_eq(st.idem_keys, 1);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 2);
	expect_key(&s, 100000, now, 500, true);
	expect_key(&s, 100001, now, 50, false);
	seen_free(&s);
	h_close(&h);

	/* On disk: an IDEM for the finished one, the keyed COMMIT for the other. */
	make_idem(&t, 100000, now, 500);
	ck_assert_uint_ge(disk_count(dir, &t.rec), 1);
	ck_assert_uint_ge(disk_count(dir, &k2.rec), 1);
	ck_assert_uint_eq(disk_count(dir, &k1.rec), 0); /* the original went with segment 1 */
	disk_read(dir, &d);
	ck_assert_str_ne(d.files[0], "0000000000000001.seg");
	disk_free(&d);

	h_open_ttl(&h, dir, 4096, TTL_HOUR);
	ck_assert(!seg_exists(dir, 1));
	ck_assert_uint_eq(h.load.idem_keys, 1);
	ck_assert_uint_eq(h.load.live_commits, 1);
	ck_assert_uint_eq(h.load.live_keyed, 1);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.n, 2);
	expect_key(&s, 100000, now, 500, true);
	expect_key(&s, 100001, now, 50, false);
	seen_free(&s);
	h_start(&h);
	dlog_append_done(h.log, 100001);
	h_close(&h);
	h_open_ttl(&h, dir, 4096, TTL_HOUR);
	ck_assert_uint_eq(h.load.idem_keys, 2);
	ck_assert_uint_eq(h.load.live_commits, 0);
	h_close(&h);
	rm_rf(dir);
}
END_TEST

/* Remembered keys that fill more segments than carry-forward's threshold,
 * all still needed: carrying them frees nothing, and if the segment count
 * alone decided, every completion would carry the next segment of keys, so
 * that under load the key set is rewritten over and over (the first
 * version did: 454 records carried during the 600 transactions below,
 * where one pass is 12). Keys alone must not be carried; finished traffic
 * (garbage) makes the log carry about one pass of them, then sit still,
 * every key kept. */
START_TEST(test_idem_no_endless_carry)
{
	enum { NKEYS = 12, RESP = 3000 };
	char dir[600];
	Harness h = {0};
	DlogStats st, st2;
	Seen s;
	int64_t now = now_wall_ms();

	make_dir(dir, sizeof(dir), "idem-loop");
	h_open_ttl(&h, dir, 4096, TTL_HOUR);
	h_start(&h);
	Writer keys = {.first_txn = 100000,
	               .n = NKEYS,
	               .chain = true,
	               .done = DONE_ALL,
	               .keyed = true,
	               .wall_ms = now,
	               .response_len = RESP};
	writer_run(&keys, &h);
	run_for(h.base, 500);
	dlog_get_stats(h.log, &st);
	ck_assert_uint_ge(st.active_segment, NKEYS / 2);
	ck_assert_uint_eq(st.idem_keys, NKEYS);
	ck_assert_uint_eq(st.carried_forward, 0);
	run_for(h.base, 500);
	dlog_get_stats(h.log, &st2);
	printf("check_dlog: %d remembered keys in %d segments: %" PRIu64 " then %" PRIu64 " records carried\n", NKEYS,
	       dlog_count_segments(dir), st.carried_forward, st2.carried_forward);
	ck_assert_msg(st2.carried_forward == st.carried_forward && st2.writes == st.writes,
	              "the log keeps rewriting itself: %" PRIu64 " -> %" PRIu64 " records carried, %" PRIu64
	              " -> %" PRIu64 " writes",
	              st.carried_forward, st2.carried_forward, st.writes, st2.writes);

	/* Finished traffic makes garbage: compaction carries, then stops. */
	Writer w = {.first_txn = 1, .n = 600, .chain = true, .done = DONE_ALL};
	writer_run(&w, &h);
	run_for(h.base, 500);
	dlog_get_stats(h.log, &st);
	run_for(h.base, 500);
	dlog_get_stats(h.log, &st2);
	printf("check_dlog: after finished traffic: %d segments, %" PRIu64 " records carried\n",
	       dlog_count_segments(dir), st2.carried_forward);
	ck_assert_uint_ge(st.carried_forward, 1);
	ck_assert_msg(st.carried_forward <= 2 * NKEYS,
	              "%" PRIu64 " records carried for %d keys: the keys are "
	              "rewritten over and over",
	              st.carried_forward, NKEYS);
	ck_assert_msg(st2.carried_forward == st.carried_forward && st2.writes == st.writes,
	              "still rewriting after the traffic stopped: %" PRIu64 " -> %" PRIu64, st.carried_forward,
	              st2.carried_forward);
	/* Bounded: the keys' own segments plus carry-forward's slack. */
	ck_assert_int_le(dlog_count_segments(dir), NKEYS + 8);
	seen_collect(&s, h.log);
	ck_assert_uint_eq(s.finished, NKEYS);
	seen_free(&s);
	h_close(&h);

	h_open_ttl(&h, dir, 4096, TTL_HOUR);
	ck_assert_uint_eq(h.load.idem_keys, NKEYS);
	ck_assert_uint_eq(h.load.live_commits, 0);
	seen_collect(&s, h.log);
	for (uint64_t i = 0; i < NKEYS; i++)
		expect_key(&s, 100000 + i, now, RESP, true);
	seen_free(&s);
	h_close(&h);
	rm_rf(dir);
}
END_TEST

static Suite *dlog_suite(void)
{
	Suite *s = suite_create("decision_log");
	TCase *tc = tcase_create("crc32c");
	tcase_add_test(tc, test_crc32c_vectors);
	tcase_add_test(tc, test_crc32c_hw_matches_sw);
	suite_add_tcase(s, tc);

	tc = tcase_create("codec");
	tcase_add_test(tc, test_codec_roundtrip_commit);
	tcase_add_test(tc, test_codec_roundtrip_done);
	tcase_add_test(tc, test_codec_every_truncation_is_short);
	tcase_add_test(tc, test_codec_every_byte_flip_detected);
	tcase_add_test(tc, test_codec_bad_lengths);
	tcase_add_test(tc, test_codec_bad_types_and_payloads);
	tcase_add_test(tc, test_record_copy_is_deep);
	suite_add_tcase(s, tc);

	tc = tcase_create("append");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_open_creates_directory);
	tcase_add_test(tc, test_completion_after_record_is_on_disk);
	tcase_add_test(tc, test_group_commit_batches_fsyncs);
	tcase_add_test(tc, test_close_flushes_pending);
	tcase_add_test(tc, test_directory_lock);
	suite_add_tcase(s, tc);

	tc = tcase_create("replay");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_reload);
	tcase_add_test(tc, test_torn_tail_cut_frame);
	tcase_add_test(tc, test_torn_tail_zero_fill);
	tcase_add_test(tc, test_torn_tail_bad_crc_at_eof);
	tcase_add_test(tc, test_corruption_in_the_middle_is_refused);
	tcase_add_test(tc, test_bad_tail_of_older_segment_is_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("compaction");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_finished_segments_are_removed);
	tcase_add_test(tc, test_live_commit_survives_compaction);
	tcase_add_test(tc, test_done_records_survive_compaction);
	suite_add_tcase(s, tc);

	tc = tcase_create("idempotency codec");
	tcase_add_test(tc, test_codec_roundtrip_keyed);
	tcase_add_test(tc, test_codec_keyed_truncations_and_flips);
	tcase_add_test(tc, test_codec_old_commit_has_no_key);
	tcase_add_test(tc, test_codec_bad_idem_extension);
	tcase_add_test(tc, test_idem_valid);
	tcase_add_test_raise_signal(tc, test_encode_refuses_bad_key, SIGABRT);
	tcase_add_test_raise_signal(tc, test_encode_refuses_idem_without_key, SIGABRT);
	tcase_add_test(tc, test_record_copy_keyed_is_deep);
	suite_add_tcase(s, tc);

	tc = tcase_create("idempotency log");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_idem_done_keeps_key);
	tcase_add_test(tc, test_idem_done_after_ttl_forgets);
	tcase_add_test(tc, test_idem_expiry_frees_segments);
	tcase_add_test(tc, test_idem_replay_records);
	tcase_add_test(tc, test_idem_torn_tail_and_damage);
	tcase_add_test(tc, test_idem_carried_forward);
	tcase_add_test(tc, test_idem_no_endless_carry);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	/* The torn-tail tests make the log warn on purpose; keep the output to
	 * what the assertions say unless asked (TWOPC_TEST_VERBOSE=1). */
	if (getenv("TWOPC_TEST_VERBOSE") == NULL)
		log_set_level(LOG_ERROR);
	sr = srunner_create(dlog_suite());

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
