/*
 * decision_log: replay, the group-commit log thread, segment compaction
 * and the remembered Idempotency-Keys. See decision_log.h for the
 * guarantees; the frames are encoded and decoded in dlog_codec.c.
 *
 * Threads: the event loop calls dlog_append_* (which only copy bytes into
 * the pending buffer under the mutex) and receives completions through an
 * eventfd. The log thread owns the active segment's file descriptor and
 * does every write, fdatasync, rotation and unlink. A failed write or fsync
 * is fatal: once the kernel has reported a lost write we cannot know what
 * is on disk, and guessing could turn an acknowledged commit into an abort
 * (the PostgreSQL "fsyncgate" lesson, and Redis aof.c's rule).
 */
#include "decision_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "fault.h"
#include "gid.h"
#include "log.h"

/* ---- the log object ---------------------------------------------------- */

typedef enum CompletionKind {
	COMP_DECISION, /* a new COMMIT or HEURISTIC: enters the live tables */
	COMP_CARRIED,  /* a live record copied out of the oldest segment */
} CompletionKind;

typedef struct Completion {
	DlogDoneFn fn;
	void *arg;
	DlogRecord *rec; /* the COMMIT/HEURISTIC/IDEM, handed to the live tables on completion */
	uint64_t seg;    /* set by the log thread: where the record landed */
	CompletionKind kind;
	uint64_t old_seg; /* COMP_CARRIED: the segment it was copied from */
	uint32_t bytes;   /* the record's frame size (set by append) */
} Completion;

typedef struct CompVec {
	Completion *v;
	size_t n, cap;
} CompVec;

typedef struct ByteBuf {
	uint8_t *p;
	size_t n, cap;
} ByteBuf;

typedef struct Segment {
	uint64_t seq;
	uint64_t live;       /* records here the log still needs: COMMITs and HEURISTICs
	                        without DONE, finished transactions' unexpired keys */
	uint64_t bytes;      /* the file's size */
	uint64_t live_bytes; /* the frames of those records: the rest is garbage */
} Segment;

/* An entry of the live tables: the record the log still needs, and the
 * segment whose file holds the copy that counts. */
typedef struct LiveCommit {
	DlogRecord *rec;
	uint64_t seg;
	uint32_t bytes;        /* the size of that copy's frame (for the segment's live_bytes) */
	bool carrying;         /* a copy is on its way to the active segment */
	bool done_after_carry; /* a DONE arrived meanwhile: write it after the copy */
	int64_t expires_ms;    /* idem table: when the key is forgotten (wall clock) */
} LiveCommit;

/* The idem table's entries by expiry, earliest first: a binary min-heap.
 * Keys are added in roughly wall_ms order, but not exactly (a transaction
 * stuck in phase 2 finishes late; the wall clock can step back), and a
 * FIFO would then keep some keys past their expiry. Entries are not removed
 * from the heap when they leave the table; a popped entry whose key is gone
 * is skipped. */
typedef struct Expiry {
	int64_t at;
	uint64_t txn;
} Expiry;

typedef struct ExpiryHeap {
	Expiry *v;
	size_t n, cap;
} ExpiryHeap;

/* Records in a segment more than this many segments behind the active one
 * are copied forward, so one stuck transaction does not pin the log. */
#define CARRY_AFTER_SEGMENTS 4

/* dlog_open_readonly: keys never expire. */
#define TTL_FOREVER INT64_MAX

struct Dlog {
	char *dir;
	int dirfd;
	int lockfd;
	int64_t seg_bytes;
	int64_t idem_ttl_ms;

	/* Log thread only (after dlog_start). */
	int fd;
	uint64_t active_seq;
	int64_t active_size;
	bool unsynced; /* bytes written to the active segment since the last fdatasync */

	/* Shared, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	ByteBuf pending;
	CompVec pending_comp;
	bool pending_sync; /* the pending batch holds a record that must be fsync'ed */
	bool want_compact; /* the oldest segment's last live record went: remove segments */
	CompVec done_comp;
	Segment *segs;
	size_t nsegs, segcap;
	bool stop;
	DlogStats stats;

	pthread_t thread;
	bool started;
	int evfd;
	struct event *ev;

	bool readonly; /* opened to look: never writes */

	/* Event loop only. */
	IdMap live; /* txn id -> LiveCommit of its COMMIT */
	IdMap heur; /* txn id -> LiveCommit of its HEURISTIC */
	IdMap idem; /* txn id -> LiveCommit of a finished transaction's key (an IDEM record) */
	ExpiryHeap expiry; /* the idem table by expiry */
	size_t carry_pending;
};

static void compvec_push(CompVec *cv, Completion c)
{
	if (cv->n == cv->cap) {
		cv->cap = cv->cap ? cv->cap * 2 : 64;
		cv->v = xrealloc(cv->v, cv->cap * sizeof(Completion));
	}
	cv->v[cv->n++] = c;
}

static void bytebuf_reserve(ByteBuf *b, size_t extra)
{
	if (b->cap - b->n < extra) {
		size_t cap = b->cap ? b->cap : 8192;
		while (cap - b->n < extra)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
}

static void heap_push(ExpiryHeap *h, int64_t at, uint64_t txn)
{
	size_t i;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xrealloc(h->v, h->cap * sizeof(Expiry));
	}
	for (i = h->n++; i > 0 && h->v[(i - 1) / 2].at > at; i = (i - 1) / 2)
		h->v[i] = h->v[(i - 1) / 2];
	h->v[i] = (Expiry){at, txn};
}

static Expiry heap_pop(ExpiryHeap *h)
{
	Expiry top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].at < h->v[c].at)
			c++;
		if (h->v[c].at >= last.at)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0)
		h->v[i] = last;
	return top;
}

static Segment *seg_find(Dlog *log, uint64_t seq)
{
	for (size_t i = 0; i < log->nsegs; i++) {
		if (log->segs[i].seq == seq)
			return &log->segs[i];
	}
	return NULL;
}

static void seg_add(Dlog *log, uint64_t seq)
{
	if (log->nsegs == log->segcap) {
		log->segcap = log->segcap ? log->segcap * 2 : 16;
		log->segs = xrealloc(log->segs, log->segcap * sizeof(Segment));
	}
	log->segs[log->nsegs] = (Segment){.seq = seq};
	log->nsegs++;
}

static void seg_name(char *buf, size_t len, uint64_t seq)
{
	snprintf(buf, len, "%016llx.seg", (unsigned long long)seq);
}

static bool seg_name_parse(const char *name, uint64_t *seq)
{
	char hex[17];
	if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0)
		return false;
	memcpy(hex, name, 16);
	hex[16] = '\0';
	return txn_id_parse(hex, seq);
}

/* A record of `bytes` in segment seq is needed. Replay and synchronous
 * appends only (the log thread counts what it writes itself). */
static void seg_inc(Dlog *log, uint64_t seq, uint32_t bytes)
{
	Segment *s = seg_find(log, seq);
	s->live++;
	s->live_bytes += bytes;
}

/* A record of `bytes` in segment seq is no longer needed. When that was
 * the oldest segment's last one, the log thread is asked to remove
 * segments: nothing else may be written for a while (an idle daemon whose
 * keys expire), and the file should not wait for the next write. */
static void seg_dec(Dlog *log, uint64_t seq, uint32_t bytes)
{
	if (log->started)
		pthread_mutex_lock(&log->mu);
	Segment *s = seg_find(log, seq);
	if (s != NULL && s->live > 0) {
		s->live--;
		s->live_bytes -= bytes < s->live_bytes ? bytes : s->live_bytes;
		if (s->live == 0 && s == &log->segs[0] && log->started) {
			log->want_compact = true;
			pthread_cond_signal(&log->cv);
		}
	}
	if (log->started)
		pthread_mutex_unlock(&log->mu);
}

static IdMap *map_for(Dlog *log, DlogType type)
{
	switch (type) {
	case DLOG_HEURISTIC:
		return &log->heur;
	case DLOG_IDEM:
		return &log->idem;
	default:
		return &log->live;
	}
}

/* Makes rec (landed in seg, `bytes` long) the live record of its
 * transaction. A second copy (carried forward) replaces the first, whose
 * segment count drops. */
static LiveCommit *live_add(Dlog *log, DlogRecord *rec, uint64_t seg, uint32_t bytes)
{
	IdMap *m = map_for(log, rec->type);
	LiveCommit *lc = idmap_get(m, rec->txn_id);
	if (lc != NULL) {
		seg_dec(log, lc->seg, lc->bytes);
		dlog_record_free(lc->rec);
	} else {
		lc = xcalloc(1, sizeof(*lc));
		idmap_put(m, rec->txn_id, lc);
	}
	lc->rec = rec;
	lc->seg = seg;
	lc->bytes = bytes;
	return lc;
}

static void live_remove(Dlog *log, IdMap *m, uint64_t txn_id)
{
	LiveCommit *lc = idmap_del(m, txn_id);
	if (lc != NULL) {
		seg_dec(log, lc->seg, lc->bytes);
		dlog_record_free(lc->rec);
		free(lc);
	}
}

/* ---- idempotency keys -------------------------------------------------- */

/* When the key of a COMMIT taken at wall_ms is forgotten (saturating: the
 * read-only ttl is "forever"). */
static int64_t idem_expiry(const Dlog *log, int64_t wall_ms)
{
	if (log->idem_ttl_ms >= TTL_FOREVER - (wall_ms > 0 ? wall_ms : 0))
		return TTL_FOREVER;
	return wall_ms + log->idem_ttl_ms;
}

static void idem_count(Dlog *log, int64_t keys, uint64_t expired)
{
	pthread_mutex_lock(&log->mu);
	log->stats.idem_keys = (uint64_t)((int64_t)log->stats.idem_keys + keys);
	log->stats.idem_expired += expired;
	pthread_mutex_unlock(&log->mu);
}

/* Makes rec (an IDEM record, landed in seg) the remembered key of its
 * finished transaction, or forgets it at once if it has expired by now. */
static void idem_add(Dlog *log, DlogRecord *rec, uint64_t seg, uint32_t bytes, int64_t now)
{
	int64_t at = idem_expiry(log, rec->wall_ms);
	LiveCommit *old = idmap_get(&log->idem, rec->txn_id);
	bool push = old == NULL || at < old->expires_ms;

	if (at <= now) {
		seg_dec(log, seg, bytes);
		dlog_record_free(rec);
		idem_count(log, 0, 1);
		return;
	}
	if (old == NULL)
		idem_count(log, 1, 0);
	LiveCommit *lc = live_add(log, rec, seg, bytes);
	lc->expires_ms = at;
	if (push)
		heap_push(&log->expiry, at, rec->txn_id);
}

/* Transaction txn is finished (its DONE): its COMMIT leaves the live
 * table. If it carries a key that has not expired, the key stays
 * remembered, in the same segment (which therefore stays), as an IDEM
 * record in memory: the branches are no longer needed, and an IDEM is what
 * carry-forward writes. */
static void commit_finished(Dlog *log, uint64_t txn, int64_t now)
{
	LiveCommit *lc = idmap_get(&log->live, txn);
	DlogRecord *rec;

	if (lc == NULL)
		return;
	if (lc->rec->idem == NULL) {
		live_remove(log, &log->live, txn);
		return;
	}
	idmap_del(&log->live, txn);
	rec = lc->rec;
	free(rec->branches);
	rec->branches = NULL;
	rec->nbranches = 0;
	rec->type = DLOG_IDEM;
	idem_add(log, rec, lc->seg, lc->bytes, now);
	free(lc);
}

/* Replay and synchronous appends: the effect of one record, `bytes` long,
 * in segment seq, on the live tables. */
static void apply_record(Dlog *log, const DlogRecord *rec, uint64_t seq, uint32_t bytes, int64_t now)
{
	switch (rec->type) {
	case DLOG_COMMIT:
	case DLOG_HEURISTIC:
		seg_inc(log, seq, bytes);
		live_add(log, dlog_record_copy(rec), seq, bytes);
		break;
	case DLOG_DONE:
		commit_finished(log, rec->txn_id, now);
		live_remove(log, &log->heur, rec->txn_id);
		break;
	case DLOG_IDEM:
		/* Written only for a finished transaction, after its DONE. Should
		 * its COMMIT still be live, that COMMIT (which has the same key)
		 * is what counts: a decision is never dropped on an IDEM's word. */
		if (idmap_contains(&log->live, rec->txn_id))
			break;
		seg_inc(log, seq, bytes);
		idem_add(log, dlog_record_copy(rec), seq, bytes, now);
		break;
	}
}

/* ---- directory helpers ------------------------------------------------- */

static bool fsync_dir(Dlog *log, char *err, size_t errlen)
{
	if (fsync(log->dirfd) != 0)
		return errf(err, errlen, "fsync of log directory %s: %s", log->dir, strerror(errno));
	return true;
}

static bool mkdir_p(const char *path, char *err, size_t errlen)
{
	char buf[4096];
	size_t n = strlcpy_s(buf, path, sizeof(buf));
	if (n >= sizeof(buf))
		return errf(err, errlen, "log_dir path too long");
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0700) != 0 && errno != EEXIST)
				return errf(err, errlen, "cannot create %s: %s", buf, strerror(errno));
			*p = '/';
		}
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return errf(err, errlen, "cannot create %s: %s", buf, strerror(errno));
	return true;
}

static bool take_lock(Dlog *log, char *err, size_t errlen)
{
	char pid[32];
	int n;

	log->lockfd = openat(log->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (log->lockfd < 0)
		return errf(err, errlen, "cannot open %s/LOCK: %s", log->dir, strerror(errno));
	/* A moment's retry: a tool probing the lock (dlog_is_locked takes a
	 * shared lock for an instant) must not make a starting daemon fail. */
	for (int tries = 0; flock(log->lockfd, LOCK_EX | LOCK_NB) != 0 && tries < 100; tries++)
		usleep(10000);
	if (flock(log->lockfd, LOCK_EX | LOCK_NB) != 0) {
		char holder[32] = "";
		ssize_t r = pread(log->lockfd, holder, sizeof(holder) - 1, 0);
		holder[r > 0 ? r : 0] = '\0';
		holder[strcspn(holder, "\n")] = '\0';
		return errf(err, errlen,
		            "log directory %s is locked by another process (pid %s): only one twopcd or "
		            "twopc-recover may use a decision log at a time",
		            log->dir, holder[0] ? holder : "unknown");
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(log->lockfd, 0) != 0 || pwrite(log->lockfd, pid, (size_t)n, 0) != n)
		return errf(err, errlen, "cannot write %s/LOCK: %s", log->dir, strerror(errno));
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Segment sequence numbers found in dir, sorted. */
static bool list_segments(Dlog *log, uint64_t **seqs, size_t *n, char *err, size_t errlen)
{
	DIR *d = fdopendir(dup(log->dirfd));
	struct dirent *de;
	size_t cap = 0;

	*seqs = NULL;
	*n = 0;
	if (d == NULL)
		return errf(err, errlen, "cannot read log directory %s: %s", log->dir, strerror(errno));
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		uint64_t seq;
		if (!seg_name_parse(de->d_name, &seq))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*seqs = xrealloc(*seqs, cap * sizeof(uint64_t));
		}
		(*seqs)[(*n)++] = seq;
	}
	closedir(d);
	if (*n > 0)
		qsort(*seqs, *n, sizeof(uint64_t), cmp_u64);
	return true;
}

static bool read_file_at(int dirfd, const char *name, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t off = 0;
	bool ok = false;

	*buf = NULL;
	*len = 0;
	if (fd < 0)
		return errf(err, errlen, "cannot open %s: %s", name, strerror(errno));
	if (fstat(fd, &st) != 0) {
		errf(err, errlen, "cannot stat %s: %s", name, strerror(errno));
		goto done;
	}
	*buf = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, *buf + off, (size_t)st.st_size - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			errf(err, errlen, "cannot read %s: %s", name, r < 0 ? strerror(errno) : "short read");
			goto done;
		}
		off += (size_t)r;
	}
	*len = off;
	ok = true;
done:
	close(fd);
	if (!ok) {
		free(*buf);
		*buf = NULL;
	}
	return ok;
}

/* Whether a valid frame starts anywhere in buf[from, len). A crash can only
 * tear the end of what was written, so a bad frame followed by a good one is
 * damage, not a torn tail. Cheap plausibility checks come before the CRC. */
static bool valid_frame_after(const uint8_t *buf, size_t from, size_t len)
{
	for (size_t p = from; p + DLOG_FRAME_HEADER <= len; p++) {
		DlogRecord rec;
		size_t flen;

		if (!dlog_frame_plausible(buf + p, len - p))
			continue;
		if (dlog_decode(buf + p, len - p, &rec, &flen, NULL, 0) == DLOG_DEC_OK) {
			dlog_record_clear(&rec);
			return true;
		}
	}
	return false;
}

/* Replays one segment into the live table. `last` allows a torn tail. */
static bool replay_segment(Dlog *log, uint64_t seq, bool last, int64_t now, DlogLoadStats *st, char *err, size_t errlen)
{
	char name[32], why[128];
	uint8_t *buf;
	size_t len, off = 0;
	bool ok = false;

	seg_name(name, sizeof(name), seq);
	if (!read_file_at(log->dirfd, name, &buf, &len, err, errlen))
		return false;
	seg_add(log, seq);
	while (off < len) {
		DlogRecord rec;
		size_t flen = 0;
		DlogDecode d = dlog_decode(buf + off, len - off, &rec, &flen, why, sizeof(why));

		if (d != DLOG_DEC_OK) {
			/* A torn tail: in the newest segment, a bad frame with no valid
			 * frame anywhere after it (a write cut short by a crash, or zero
			 * fill). Anything else is damage we must not paper over: a flipped
			 * length in the middle must not truncate the commits after it. */
			bool tail = last && !valid_frame_after(buf, off + 1, len);
			if (!tail) {
				errf(err, errlen,
				     "decision log %s/%s: bad record at offset %zu (%s) with %zu bytes after it: "
				     "this is not a torn tail; refusing to guess (inspect with "
				     "twopc-recover check-log)",
				     log->dir, name, off, why, len - off);
				goto done;
			}
			if (log->readonly) {
				/* Looking only: perhaps a record being written right now. */
				st->torn_tail_bytes += len - off;
				break;
			}
			int fd = openat(log->dirfd, name, O_WRONLY | O_CLOEXEC);
			if (fd < 0 || ftruncate(fd, (off_t)off) != 0 || fdatasync(fd) != 0) {
				errf(err, errlen, "cannot truncate torn tail of %s/%s: %s", log->dir, name,
				     strerror(errno));
				if (fd >= 0)
					close(fd);
				goto done;
			}
			close(fd);
			log_warning("decision log %s/%s: torn tail at offset %zu (%s): truncated %zu bytes "
			            "left by a crash mid-write; no acknowledged decision was in them",
			            log->dir, name, off, why, len - off);
			st->truncated_bytes += len - off;
			break;
		}
		st->records++;
		if (rec.txn_id > st->max_txn_id)
			st->max_txn_id = rec.txn_id;
		apply_record(log, &rec, seq, (uint32_t)flen, now);
		dlog_record_clear(&rec);
		off += flen;
	}
	seg_find(log, seq)->bytes = off;
	if (!log->readonly) {
		/* What replay read may still be only in the page cache (a crash
		 * between write and fdatasync): make it durable before recovery
		 * acts on it — committing a branch on the strength of a record a
		 * power cut could still take away would break atomicity. */
		int fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fdatasync(fd) != 0) {
			errf(err, errlen, "cannot fdatasync %s/%s: %s", log->dir, name, strerror(errno));
			if (fd >= 0)
				close(fd);
			goto done;
		}
		close(fd);
	}
	ok = true;
done:
	free(buf);
	return ok;
}

static bool create_segment(Dlog *log, uint64_t seq, char *err, size_t errlen)
{
	char name[32];
	seg_name(name, sizeof(name), seq);
	int fd = openat(log->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return errf(err, errlen, "cannot create %s/%s: %s", log->dir, name, strerror(errno));
	/* The new name must survive a crash before any record in it counts. */
	if (!fsync_dir(log, err, errlen)) {
		close(fd);
		return false;
	}
	log->fd = fd;
	log->active_seq = seq;
	log->active_size = 0;
	log->unsynced = false;
	return true;
}

/* Deletes segments that are no longer needed. Only from the oldest end: a
 * segment goes when its own COMMITs all have their DONE *and* every older
 * segment is gone. A newer segment can hold DONEs for an older segment's
 * COMMITs; deleting it first would bring those transactions back as live on
 * the next replay. Each unlink is made durable (directory fsync) before the
 * next, so a crash never leaves a gap in the sequence. Called with mu held
 * when `locked`; drops it around the file system calls. */
static uint64_t remove_dead_segments(Dlog *log, bool locked)
{
	uint64_t dead[64];
	size_t ndead = 0;
	char name[32], err[256];

	if (!locked)
		pthread_mutex_lock(&log->mu);
	while (ndead < log->nsegs && ndead < ARRAY_LEN(dead) && log->segs[ndead].seq != log->active_seq &&
	       log->segs[ndead].live == 0) {
		dead[ndead] = log->segs[ndead].seq;
		ndead++;
	}
	if (ndead > 0) {
		memmove(log->segs, log->segs + ndead, (log->nsegs - ndead) * sizeof(Segment));
		log->nsegs -= ndead;
	}
	pthread_mutex_unlock(&log->mu);
	for (size_t i = 0; i < ndead; i++) {
		seg_name(name, sizeof(name), dead[i]);
		if (unlinkat(log->dirfd, name, 0) != 0 && errno != ENOENT)
			log_fatal("decision log: cannot remove %s/%s: %s", log->dir, name, strerror(errno));
		if (!fsync_dir(log, err, sizeof(err)))
			log_fatal("decision log: %s", err);
	}
	pthread_mutex_lock(&log->mu);
	log->stats.segments_removed += ndead;
	if (!locked)
		pthread_mutex_unlock(&log->mu);
	return ndead;
}

static const double records_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

static Dlog *dlog_alloc(const char *dir, bool readonly)
{
	Dlog *log = xcalloc(1, sizeof(*log));
	log->dir = xstrdup(dir);
	log->dirfd = log->lockfd = log->fd = log->evfd = -1;
	log->readonly = readonly;
	pthread_mutex_init(&log->mu, NULL);
	pthread_cond_init(&log->cv, NULL);
	idmap_init(&log->live);
	idmap_init(&log->heur);
	idmap_init(&log->idem);
	log->idem_ttl_ms = TTL_FOREVER;
	hist_init(&log->stats.fsync_seconds, metrics_latency_bounds, metrics_latency_nbounds);
	hist_init(&log->stats.records_per_fsync, records_bounds, ARRAY_LEN(records_bounds));
	return log;
}

/* Opens the directory (taking the lock unless read-only) and replays every
 * segment. *last_seq is the newest segment's number (0: none). */
static bool dlog_load(Dlog *log, DlogLoadStats *st, uint64_t *last_seq, char *err, size_t errlen)
{
	uint64_t *seqs = NULL;
	size_t nseqs = 0;
	bool ok = false;
	int64_t now = now_wall_ms(); /* one instant for every key's expiry */

	memset(st, 0, sizeof(*st));
	log->dirfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->dirfd < 0) {
		errf(err, errlen, "cannot open log directory %s: %s", log->dir, strerror(errno));
		goto done;
	}
	if (!log->readonly && !take_lock(log, err, errlen))
		goto done;
	if (!list_segments(log, &seqs, &nseqs, err, errlen))
		goto done;
	for (size_t i = 0; i < nseqs; i++) {
		if (!replay_segment(log, seqs[i], i + 1 == nseqs, now, st, err, errlen))
			goto done;
	}
	st->segments = nseqs;
	st->live_commits = log->live.count;
	st->live_heuristics = log->heur.count;
	st->idem_keys = log->idem.count;
	st->idem_expired = log->stats.idem_expired;
	size_t pos = 0;
	uint64_t txn;
	void *val;
	while (idmap_next(&log->live, &pos, &txn, &val))
		st->live_keyed += ((LiveCommit *)val)->rec->idem != NULL;
	*last_seq = nseqs ? seqs[nseqs - 1] : 0;
	ok = true;
done:
	free(seqs);
	return ok;
}

bool dlog_open(const char *dir, int64_t segment_bytes, int64_t idem_ttl_ms, Dlog **out, DlogLoadStats *st, char *err,
               size_t errlen)
{
	Dlog *log = dlog_alloc(dir, false);
	uint64_t last = 0;
	bool ok = false;

	log->seg_bytes = segment_bytes;
	log->idem_ttl_ms = idem_ttl_ms > 0 ? idem_ttl_ms : 0;
	memset(st, 0, sizeof(*st));
	if (!mkdir_p(dir, err, errlen) || !dlog_load(log, st, &last, err, errlen))
		goto done;
	/* Every segment from before this start is now closed: a fresh active
	 * one keeps replay's torn-tail rule simple. */
	if (!create_segment(log, last + 1, err, errlen))
		goto done;
	seg_add(log, log->active_seq);
	pthread_mutex_lock(&log->mu);
	st->segments_removed = remove_dead_segments(log, true);
	pthread_mutex_unlock(&log->mu);
	ok = true;
done:
	if (!ok) {
		dlog_close(log);
		log = NULL;
	}
	*out = log;
	return ok;
}

bool dlog_open_readonly(const char *dir, Dlog **out, DlogLoadStats *st, char *err, size_t errlen)
{
	Dlog *log = dlog_alloc(dir, true);
	uint64_t last;

	if (!dlog_load(log, st, &last, err, errlen)) {
		dlog_close(log);
		log = NULL;
	}
	*out = log;
	return log != NULL;
}

bool dlog_is_locked(const char *dir, long *pid)
{
	char path[4096], buf[32] = "";
	int fd;
	bool locked = false;

	*pid = 0;
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
		ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[r > 0 ? r : 0] = '\0';
		*pid = strtol(buf, NULL, 10);
		locked = true;
	}
	close(fd);
	return locked;
}

bool dlog_list_segment_files(const char *dir, uint64_t **seqs, size_t *n, char *err, size_t errlen)
{
	Dlog tmp;
	bool ok;

	memset(&tmp, 0, sizeof(tmp));
	tmp.dir = (char *)dir;
	tmp.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tmp.dirfd < 0)
		return errf(err, errlen, "cannot open log directory %s: %s", dir, strerror(errno));
	ok = list_segments(&tmp, seqs, n, err, errlen);
	close(tmp.dirfd);
	return ok;
}

void dlog_segment_file_name(char *buf, size_t len, uint64_t seq)
{
	seg_name(buf, len, seq);
}

bool dlog_is_torn_tail(const uint8_t *buf, size_t off, size_t len)
{
	return !valid_frame_after(buf, off + 1, len);
}

/* ---- the log thread ---------------------------------------------------- */

static void *log_thread_main(void *arg)
{
	Dlog *log = arg;
	ByteBuf batch = {0};
	CompVec comps = {0};
	char err[256];

	pthread_mutex_lock(&log->mu);
	for (;;) {
		while (log->pending.n == 0 && !log->stop && !log->want_compact)
			pthread_cond_wait(&log->cv, &log->mu);
		if (log->pending.n == 0 && log->stop)
			break;
		log->want_compact = false;
		if (log->pending.n == 0) {
			/* Nothing to write, but records the oldest segment held were
			 * let go of (DONE after carry-forward, expired keys). */
			remove_dead_segments(log, true);
			continue;
		}
		/* Take everything that arrived: this is the group commit. */
		ByteBuf tb = batch;
		batch = log->pending;
		log->pending = tb;
		log->pending.n = 0;
		CompVec tc = comps;
		comps = log->pending_comp;
		log->pending_comp = tc;
		log->pending_comp.n = 0;
		bool need_sync = log->pending_sync;
		log->pending_sync = false;
		pthread_mutex_unlock(&log->mu);

		if (log->active_size > 0 && log->active_size + (int64_t)batch.n > log->seg_bytes) {
			/* Rotate. Sync first: only the newest segment may hold a torn tail. */
			if (log->unsynced && fdatasync(log->fd) != 0)
				log_fatal("decision log: fdatasync of segment %016llx failed: %s; stopping rather "
				          "than guess what is on disk",
				          (unsigned long long)log->active_seq, strerror(errno));
			close(log->fd);
			if (!create_segment(log, log->active_seq + 1, err, sizeof(err)))
				log_fatal("decision log: %s", err);
			pthread_mutex_lock(&log->mu);
			seg_add(log, log->active_seq);
			log->stats.active_segment = log->active_seq;
			pthread_mutex_unlock(&log->mu);
		}
		if (!write_all(log->fd, batch.p, batch.n))
			log_fatal("decision log: write to segment %016llx failed: %s; stopping rather than guess "
			          "what is on disk",
			          (unsigned long long)log->active_seq, strerror(errno));
		log->active_size += (int64_t)batch.n;
		log->unsynced = true;
		FAULT_POINT(FAULT_AFTER_LOG_WRITE);
		int64_t sync_us = 0;
		if (need_sync) {
			int64_t t0 = now_mono_us();
			if (fdatasync(log->fd) != 0)
				log_fatal("decision log: fdatasync of segment %016llx failed: %s; stopping rather "
				          "than guess what is on disk",
				          (unsigned long long)log->active_seq, strerror(errno));
			sync_us = now_mono_us() - t0;
			log->unsynced = false;
		}

		pthread_mutex_lock(&log->mu);
		log->stats.writes++;
		if (need_sync) {
			log->stats.fsyncs++;
			log->stats.records_synced += comps.n;
			hist_observe(&log->stats.fsync_seconds, sync_us / 1e6);
			hist_observe(&log->stats.records_per_fsync, (double)comps.n);
		}
		Segment *seg = seg_find(log, log->active_seq);
		seg->bytes += batch.n;
		for (size_t i = 0; i < comps.n; i++) {
			comps.v[i].seg = log->active_seq;
			if (comps.v[i].rec != NULL) {
				seg->live++;
				seg->live_bytes += comps.v[i].bytes;
			}
			compvec_push(&log->done_comp, comps.v[i]);
		}
		comps.n = 0;
		remove_dead_segments(log, true);
		if (log->done_comp.n > 0) {
			uint64_t one = 1;
			/* Wake the loop. An eventfd write cannot fail short of a bug. */
			if (write(log->evfd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
				log_fatal("decision log: eventfd write failed: %s", strerror(errno));
		}
	}
	pthread_mutex_unlock(&log->mu);
	free(batch.p);
	free(comps.v);
	return NULL;
}

static void append(Dlog *log, const DlogRecord *rec, Completion *c, bool sync);

/* A carried copy is on disk: it is now the live record (unless a DONE came
 * while it travelled: then the DONE goes out now, after the copy, so that
 * replay never meets the copy after its DONE). */
static void carry_done(Dlog *log, Completion *c)
{
	IdMap *m = map_for(log, c->rec->type);
	LiveCommit *lc = idmap_get(m, c->rec->txn_id);
	uint64_t txn = c->rec->txn_id;

	log->carry_pending--;
	if (lc == NULL || lc->seg != c->old_seg) {
		/* Nobody needs this copy: its DONE came first, or its key expired. */
		seg_dec(log, c->seg, c->bytes);
		dlog_record_free(c->rec);
		return;
	}
	seg_dec(log, lc->seg, lc->bytes);
	dlog_record_free(lc->rec);
	lc->rec = c->rec;
	lc->seg = c->seg;
	lc->bytes = c->bytes;
	lc->carrying = false;
	if (lc->done_after_carry)
		dlog_append_done(log, txn);
}

/* Whether the oldest segment should be carried forward: it is more than
 * CARRY_AFTER_SEGMENTS behind, it holds something live, and the closed
 * segments hold at least as many garbage bytes as all live records take.
 * The last part is for remembered idempotency keys, which can fill many
 * segments with records that are all still needed. Carrying those frees
 * nothing (the copy is as big as the segment it empties), yet with the
 * segment count alone as the trigger every completion would carry the
 * next oldest segment: under load the whole key set (up to
 * idempotency_max_bytes) would be rewritten again and again. With the
 * rule, carrying writes at most as many bytes as there is garbage to free,
 * and stops once a pass over the log has freed it. A stuck COMMIT or two
 * (a few bytes) still carry as soon as they fall behind. Called with mu
 * held. */
static bool carry_due(Dlog *log, uint64_t *oldest)
{
	uint64_t garbage = 0, live = 0;

	if (log->nsegs <= CARRY_AFTER_SEGMENTS || log->segs[0].seq == log->stats.active_segment ||
	    log->segs[0].live == 0)
		return false;
	for (size_t i = 0; i < log->nsegs; i++) {
		const Segment *s = &log->segs[i];
		live += s->live_bytes;
		if (s->seq != log->stats.active_segment && s->bytes > s->live_bytes)
			garbage += s->bytes - s->live_bytes;
	}
	*oldest = log->segs[0].seq;
	return garbage >= live;
}

/* Copies the live records of the oldest segment into the active one once it
 * falls CARRY_AFTER_SEGMENTS behind, so a transaction stuck in phase 2 (a
 * participant down for days), or a key remembered for a day, does not keep
 * every later segment on disk. A finished transaction's key is copied as an
 * IDEM record; a live COMMIT, keyed or not, as itself. */
static void maybe_carry_forward(Dlog *log)
{
	uint64_t oldest = 0;
	IdMap *maps[3] = {&log->live, &log->heur, &log->idem};
	int64_t now;

	if (log->carry_pending > 0 || log->readonly)
		return;
	pthread_mutex_lock(&log->mu);
	bool due = carry_due(log, &oldest);
	pthread_mutex_unlock(&log->mu);
	if (!due)
		return;
	now = now_wall_ms();
	for (int k = 0; k < 3; k++) {
		size_t pos = 0;
		uint64_t key;
		void *val;
		while (idmap_next(maps[k], &pos, &key, &val)) {
			LiveCommit *lc = val;
			if (lc->seg != oldest || lc->carrying)
				continue;
			/* An expired key goes with the next dlog_expire_idempotency. */
			if (k == 2 && lc->expires_ms <= now)
				continue;
			Completion c = {.kind = COMP_CARRIED, .rec = dlog_record_copy(lc->rec), .old_seg = oldest};
			lc->carrying = true;
			log->carry_pending++;
			append(log, lc->rec, &c, true);
			pthread_mutex_lock(&log->mu);
			log->stats.carried_forward++;
			pthread_mutex_unlock(&log->mu);
		}
	}
}

/* Event loop side: run the completions of records now on disk. */
static void on_completions(evutil_socket_t fd, short what, void *arg)
{
	Dlog *log = arg;
	uint64_t v;
	CompVec mine;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_fatal("decision log: eventfd read failed: %s", strerror(errno));
	pthread_mutex_lock(&log->mu);
	mine = log->done_comp;
	memset(&log->done_comp, 0, sizeof(log->done_comp));
	pthread_mutex_unlock(&log->mu);
	for (size_t i = 0; i < mine.n; i++) {
		Completion *c = &mine.v[i];
		if (c->kind == COMP_CARRIED)
			carry_done(log, c);
		else if (c->rec != NULL)
			live_add(log, c->rec, c->seg, c->bytes);
		if (c->fn != NULL)
			c->fn(c->arg);
	}
	free(mine.v);
	maybe_carry_forward(log);
}

bool dlog_start(Dlog *log, struct event_base *base, char *err, size_t errlen)
{
	log->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (log->evfd < 0)
		return errf(err, errlen, "eventfd: %s", strerror(errno));
	log->ev = event_new(base, log->evfd, EV_READ | EV_PERSIST, on_completions, log);
	if (log->ev == NULL || event_add(log->ev, NULL) != 0)
		return errf(err, errlen, "cannot register the decision log's eventfd");
	log->stats.active_segment = log->active_seq;
	if (pthread_create(&log->thread, NULL, log_thread_main, log) != 0)
		return errf(err, errlen, "cannot start the log thread: %s", strerror(errno));
	log->started = true;
	return true;
}

static void append(Dlog *log, const DlogRecord *rec, Completion *c, bool sync)
{
	size_t n = dlog_encoded_size(rec);

	pthread_mutex_lock(&log->mu);
	bytebuf_reserve(&log->pending, n);
	dlog_encode(rec, log->pending.p + log->pending.n);
	log->pending.n += n;
	if (c != NULL) {
		c->bytes = (uint32_t)n;
		compvec_push(&log->pending_comp, *c);
	}
	if (sync)
		log->pending_sync = true;
	pthread_cond_signal(&log->cv);
	pthread_mutex_unlock(&log->mu);
}

void dlog_append_commit(Dlog *log, const DlogRecord *rec, DlogDoneFn done, void *arg)
{
	Completion c = {.fn = done, .arg = arg, .rec = dlog_record_copy(rec), .kind = COMP_DECISION};
	append(log, rec, &c, true);
}

void dlog_append_done(Dlog *log, uint64_t txn_id)
{
	DlogRecord rec = {.type = DLOG_DONE, .txn_id = txn_id};
	LiveCommit *lc = idmap_get(&log->live, txn_id), *lh = idmap_get(&log->heur, txn_id);

	if ((lc && lc->carrying) || (lh && lh->carrying)) {
		/* Its copy is in flight: write the DONE after it (carry_done). */
		if (lc && lc->carrying)
			lc->done_after_carry = true;
		else
			lh->done_after_carry = true;
		return;
	}
	append(log, &rec, NULL, false);
	commit_finished(log, txn_id, now_wall_ms());
	live_remove(log, &log->heur, txn_id);
}

bool dlog_append_sync(Dlog *log, const DlogRecord *rec, char *err, size_t errlen)
{
	size_t n = dlog_encoded_size(rec);
	uint8_t *buf = xmalloc(n);
	bool ok = false;

	if (log->started || log->readonly || log->fd < 0) {
		free(buf);
		return errf(err, errlen,
		            "decision log: synchronous append needs a log opened for writing and no log "
		            "thread");
	}
	dlog_encode(rec, buf);
	if (!write_all(log->fd, buf, n) || fdatasync(log->fd) != 0) {
		errf(err, errlen, "decision log %s: write or fdatasync failed: %s", log->dir, strerror(errno));
		goto done;
	}
	log->active_size += (int64_t)n;
	seg_find(log, log->active_seq)->bytes += n;
	apply_record(log, rec, log->active_seq, (uint32_t)n, now_wall_ms());
	ok = true;
done:
	free(buf);
	return ok;
}

DlogDecision dlog_decision(const Dlog *log, uint64_t txn_id)
{
	LiveCommit *lh = idmap_get(&log->heur, txn_id);
	if (lh != NULL)
		return lh->rec->heuristic_commit ? DLOG_HEURISTIC_COMMIT : DLOG_HEURISTIC_ABORT;
	return idmap_contains(&log->live, txn_id) ? DLOG_COMMITTED : DLOG_PRESUMED_ABORT;
}

const char *dlog_decision_name(DlogDecision d)
{
	switch (d) {
	case DLOG_PRESUMED_ABORT:
		return "presumed abort";
	case DLOG_COMMITTED:
		return "committed";
	case DLOG_HEURISTIC_COMMIT:
		return "heuristic commit";
	case DLOG_HEURISTIC_ABORT:
		return "heuristic abort";
	}
	return "?";
}

const DlogRecord *dlog_find_heuristic(const Dlog *log, uint64_t txn_id)
{
	LiveCommit *lh = idmap_get(&log->heur, txn_id);
	return lh ? lh->rec : NULL;
}

const IdMap *dlog_live_heuristics(const Dlog *log)
{
	return &log->heur;
}

const DlogRecord *dlog_find_commit(const Dlog *log, uint64_t txn_id)
{
	LiveCommit *lc = idmap_get(&log->live, txn_id);
	return lc ? lc->rec : NULL;
}

const IdMap *dlog_live_commits(const Dlog *log)
{
	return &log->live;
}

size_t dlog_expire_idempotency(Dlog *log, int64_t now_wall_ms)
{
	size_t n = 0;

	while (log->expiry.n > 0 && log->expiry.v[0].at <= now_wall_ms) {
		Expiry e = heap_pop(&log->expiry);
		LiveCommit *lc = idmap_get(&log->idem, e.txn);
		if (lc == NULL)
			continue; /* already gone */
		if (lc->expires_ms > now_wall_ms) {
			heap_push(&log->expiry, lc->expires_ms, e.txn); /* its expiry moved */
			continue;
		}
		/* If a copy is on its way (carry-forward), carry_done finds the
		 * entry gone and lets the copy go too. */
		live_remove(log, &log->idem, e.txn);
		n++;
	}
	if (n > 0) {
		idem_count(log, -(int64_t)n, n);
		/* Without the log thread (tools), remove what can go now; with it,
		 * seg_dec has already asked it to. */
		if (!log->started && !log->readonly && log->fd >= 0)
			remove_dead_segments(log, false);
	}
	return n;
}

void dlog_foreach_idempotent(const Dlog *log, void (*fn)(const DlogRecord *rec, bool finished, void *arg), void *arg)
{
	const IdMap *maps[2] = {&log->live, &log->idem};

	for (int k = 0; k < 2; k++) {
		size_t pos = 0;
		uint64_t txn;
		void *val;
		while (idmap_next(maps[k], &pos, &txn, &val)) {
			const LiveCommit *lc = val;
			if (lc->rec->idem != NULL)
				fn(lc->rec, k == 1, arg);
		}
	}
}

void dlog_get_stats(Dlog *log, DlogStats *out)
{
	pthread_mutex_lock(&log->mu);
	*out = log->stats;
	pthread_mutex_unlock(&log->mu);
}

void dlog_close(Dlog *log)
{
	size_t pos = 0;
	uint64_t key;
	void *val;

	if (log == NULL)
		return;
	if (log->started) {
		pthread_mutex_lock(&log->mu);
		log->stop = true;
		pthread_cond_signal(&log->cv);
		pthread_mutex_unlock(&log->mu);
		pthread_join(log->thread, NULL);
	}
	if (log->fd >= 0) {
		if (log->unsynced && fdatasync(log->fd) != 0)
			log_error("decision log: final fdatasync failed: %s", strerror(errno));
		close(log->fd);
	}
	if (log->ev)
		event_free(log->ev);
	if (log->evfd >= 0)
		close(log->evfd);
	for (size_t i = 0; i < log->done_comp.n; i++)
		dlog_record_free(log->done_comp.v[i].rec);
	for (size_t i = 0; i < log->pending_comp.n; i++)
		dlog_record_free(log->pending_comp.v[i].rec);
	free(log->done_comp.v);
	free(log->pending_comp.v);
	free(log->pending.p);
	for (int k = 0; k < 3; k++) {
		IdMap *m = k == 0 ? &log->live : k == 1 ? &log->heur : &log->idem;
		pos = 0;
		while (idmap_next(m, &pos, &key, &val)) {
			LiveCommit *lc = val;
			dlog_record_free(lc->rec);
			free(lc);
		}
		idmap_free(m);
	}
	free(log->expiry.v);
	free(log->segs);
	if (log->lockfd >= 0)
		close(log->lockfd); /* releases the flock */
	if (log->dirfd >= 0)
		close(log->dirfd);
	pthread_mutex_destroy(&log->mu);
	pthread_cond_destroy(&log->cv);
	free(log->dir);
	free(log);
}

int dlog_count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	uint64_t seq;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (seg_name_parse(de->d_name, &seq))
			n++;
	}
	closedir(d);
	return n;
}
