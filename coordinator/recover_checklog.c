/*
 * recover_checklog: the decision log's fsck.
 *
 * Read-only unless --fix. It does not go through dlog_open(): that would
 * truncate a torn tail on its own and refuse a damaged log outright, and
 * the point here is to show exactly what is where before anything is cut.
 * With --fix it takes the directory's lock itself (the same flock twopcd
 * takes), checks again under it, prints the file, offset and byte count it
 * will cut, then ftruncate + fdatasync. Damage in the middle is never
 * "fixed": the valid records after it are acknowledged decisions.
 */
#include "recover_checklog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "decision_log.h"
#include "gid.h"
#include "idmap.h"
#include "recover_scan.h"

typedef struct CheckState {
	bool verbose;
	bool twopcd_running; /* someone else holds the lock: the newest tail may be in progress */
	int64_t idem_ttl_ms; /* the configured idempotency_ttl_s, to say which keys have expired */
	uint64_t counts[DLOG_TYPE_MAX + 1]; /* records by DlogType */
	uint64_t records, bytes;
	uint64_t damage;    /* bad frames that are not a torn tail */
	uint64_t torn;      /* torn tails (at most one: the newest segment) */
	char torn_file[32]; /* the torn tail --fix may cut */
	size_t torn_off, torn_len;
	IdMap live_commits, live_heur; /* replayed, for the summary */
	IdMap keyed;                   /* live keyed COMMITs and finished transactions' keys: txn ->
	                                  heap int64_t wall_ms; finished ones are not in live_commits */
} CheckState;

/* Where the next frame that decodes starts, at or after `from`, or len.
 * Cheap plausibility checks first; the CRC decides. */
static size_t next_valid_frame(const uint8_t *buf, size_t from, size_t len)
{
	for (size_t p = from; p + DLOG_FRAME_HEADER <= len; p++) {
		DlogRecord rec;
		size_t flen;

		if (!dlog_frame_plausible(buf + p, len - p))
			continue;
		if (dlog_decode(buf + p, len - p, &rec, &flen, NULL, 0) == DLOG_DEC_OK) {
			dlog_record_clear(&rec);
			return p;
		}
	}
	return len;
}

static void format_wall(char *buf, size_t len, int64_t ms)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&s, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03lldZ", (long long)(ms % 1000));
}

/* The key (printable ASCII, so shown as is), the remembered status and
 * response size, and when twopcd forgets the key. */
static void print_idem(const CheckState *cs, const DlogRecord *rec)
{
	char until[48];
	int64_t ttl = cs->idem_ttl_ms;

	if (ttl > INT64_MAX - rec->wall_ms)
		ttl = INT64_MAX - rec->wall_ms;
	format_wall(until, sizeof(until), rec->wall_ms + ttl);
	printf("key \"%s\" -> %u, %u response bytes, remembered until %s%s", rec->idem->key, rec->idem->status,
	       rec->idem->response_len, until, rec->wall_ms + ttl <= now_wall_ms() ? " (expired)" : "");
}

static void print_record(const CheckState *cs, const DlogRecord *rec, size_t off)
{
	char id[TXN_ID_HEX + 1], when[48];

	txn_id_format(id, rec->txn_id);
	printf("    %10zu  %-9s  txn %s", off, dlog_type_name(rec->type), id);
	if (rec->type == DLOG_COMMIT) {
		format_wall(when, sizeof(when), rec->wall_ms);
		printf("  %s ", when);
		for (uint16_t b = 0; b < rec->nbranches; b++)
			printf(" %s#%u", rec->branches[b].name, rec->branches[b].index);
		if (rec->idem != NULL) {
			printf("  ");
			print_idem(cs, rec);
		}
	} else if (rec->type == DLOG_IDEM) {
		format_wall(when, sizeof(when), rec->wall_ms);
		printf("  %s  finished, ", when);
		print_idem(cs, rec);
	} else if (rec->type == DLOG_HEURISTIC) {
		format_wall(when, sizeof(when), rec->wall_ms);
		printf("  %s  %s by hand on %s (%s)", when, rec->heuristic_commit ? "commit" : "abort",
		       rec->branches[0].name, rec->gid);
	}
	printf("\n");
}

/* Remembers (or forgets) that txn has a key, from a COMMIT or IDEM taken
 * at wall_ms. */
static void keyed_set(CheckState *cs, uint64_t txn, const DlogRecord *rec)
{
	int64_t *wall = idmap_get(&cs->keyed, txn);

	if (rec == NULL || rec->idem == NULL) {
		free(idmap_del(&cs->keyed, txn));
		return;
	}
	if (wall == NULL) {
		wall = xmalloc(sizeof(*wall));
		idmap_put(&cs->keyed, txn, wall);
	}
	*wall = rec->wall_ms;
}

/* Replays a record as twopcd would, for the summary: a finished keyed
 * COMMIT leaves the live COMMITs (it is no undecided work) but its key
 * stays (in `keyed`) until it expires; an IDEM is such a key. */
static void account(CheckState *cs, const DlogRecord *rec, size_t off)
{
	cs->records++;
	if (rec->type >= 1 && rec->type <= DLOG_TYPE_MAX)
		cs->counts[rec->type]++;
	if (rec->type == DLOG_COMMIT) {
		idmap_put(&cs->live_commits, rec->txn_id, cs);
		keyed_set(cs, rec->txn_id, rec);
	} else if (rec->type == DLOG_HEURISTIC) {
		idmap_put(&cs->live_heur, rec->txn_id, cs);
	} else if (rec->type == DLOG_DONE) {
		idmap_del(&cs->live_commits, rec->txn_id);
		idmap_del(&cs->live_heur, rec->txn_id);
	} else if (rec->type == DLOG_IDEM && !idmap_contains(&cs->live_commits, rec->txn_id)) {
		keyed_set(cs, rec->txn_id, rec);
	}
	if (cs->verbose)
		print_record(cs, rec, off);
}

/* Keys of finished transactions, and how many of them have expired. */
static size_t count_keys(const CheckState *cs, size_t *expired)
{
	size_t pos = 0, n = 0;
	uint64_t txn;
	void *val;
	int64_t now = now_wall_ms();

	*expired = 0;
	while (idmap_next(&cs->keyed, &pos, &txn, &val)) {
		int64_t wall = *(int64_t *)val;
		if (idmap_contains(&cs->live_commits, txn))
			continue;
		n++;
		if (cs->idem_ttl_ms <= INT64_MAX - wall && wall + cs->idem_ttl_ms <= now)
			(*expired)++;
	}
	return n;
}

/* Checks one segment; prints its line and any problem. */
static bool check_segment(CheckState *cs, const char *dir, uint64_t seq, bool newest, char *err, size_t errlen)
{
	char name[32], path[4096], why[160];
	uint8_t *buf;
	size_t len, off = 0;
	uint64_t counts[DLOG_TYPE_MAX + 1] = {0}, before = cs->records;
	int errnum;

	dlog_segment_file_name(name, sizeof(name), seq);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!recover_read_file(path, &buf, &len, &errnum)) {
		if (errnum == ENOENT && cs->twopcd_running) {
			printf("  %s  removed while being read (twopcd removes finished segments)\n", name);
			return true;
		}
		return errf(err, errlen, "cannot read %s: %s", path, strerror(errnum));
	}
	memcpy(counts, cs->counts, sizeof(counts));
	if (cs->verbose)
		printf("  %s:\n", name);
	while (off < len) {
		DlogRecord rec;
		size_t flen = 0;
		DlogDecode d = dlog_decode(buf + off, len - off, &rec, &flen, why, sizeof(why));

		if (d == DLOG_DEC_OK) {
			account(cs, &rec, off);
			dlog_record_clear(&rec);
			off += flen;
			continue;
		}
		if (newest && dlog_is_torn_tail(buf, off, len)) {
			if (cs->twopcd_running) {
				printf("  %s  offset %zu: the last %zu bytes are not a complete record (%s): twopcd is "
				       "running, so most likely a record being written right now; not a problem\n",
				       name, off, len - off, why);
			} else {
				printf("  %s  TORN TAIL at offset %zu: %zu bytes to the end are not a complete record "
				       "(%s), "
				       "and no valid record follows: a write cut short by a crash. No acknowledged "
				       "decision is in them (a decision counts only once its fsync returned). "
				       "Truncatable: "
				       "twopcd cuts it at its next start; 'check-log --fix' cuts it now.\n",
				       name, off, len - off, why);
				cs->torn++;
				strlcpy_s(cs->torn_file, name, sizeof(cs->torn_file));
				cs->torn_off = off;
				cs->torn_len = len - off;
			}
			break;
		}
		size_t next = next_valid_frame(buf, off + 1, len);
		cs->damage++;
		if (next >= len) {
			printf(
			    "  %s  DAMAGE at offset %zu (%s): %zu bytes to the end hold no valid record, but this is "
			    "not the newest segment: only the newest can have a torn tail (older ones were fsync'ed "
			    "before the next was created), so this is damage, not a torn tail\n",
			    name, off, why, len - off);
			break;
		}
		printf("  %s  DAMAGE at offset %zu (%s): %zu unreadable bytes, then valid records again from offset "
		       "%zu: a crash cannot do this (it only cuts the end), so this is not a torn tail\n",
		       name, off, why, next - off, next);
		off = next;
	}
	cs->bytes += len;
	printf("  %s  %zu bytes, %llu records: %llu COMMIT, %llu DONE, %llu HEURISTIC, %llu IDEM\n", name, len,
	       (unsigned long long)(cs->records - before),
	       (unsigned long long)(cs->counts[DLOG_COMMIT] - counts[DLOG_COMMIT]),
	       (unsigned long long)(cs->counts[DLOG_DONE] - counts[DLOG_DONE]),
	       (unsigned long long)(cs->counts[DLOG_HEURISTIC] - counts[DLOG_HEURISTIC]),
	       (unsigned long long)(cs->counts[DLOG_IDEM] - counts[DLOG_IDEM]));
	free(buf);
	return true;
}

/* Takes the directory's lock as twopcd does (flock on LOCK, our pid in it). */
static int take_lock(const char *dir, long *holder, char *err, size_t errlen)
{
	char path[4096], pid[32];
	int fd, n;

	*holder = 0;
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		char buf[32] = "";
		ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[r > 0 ? r : 0] = '\0';
		*holder = strtol(buf, NULL, 10);
		if (*holder <= 0)
			*holder = -1;
		errf(err, errlen, "the decision log %s is locked", dir);
		close(fd);
		return -1;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static bool truncate_tail(const char *dir, const CheckState *cs, char *err, size_t errlen)
{
	char path[4096];
	int fd;
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, cs->torn_file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || (size_t)st.st_size != cs->torn_off + cs->torn_len) {
		close(fd);
		return errf(err, errlen, "%s changed size while being checked; nothing cut", path);
	}
	if (ftruncate(fd, (off_t)cs->torn_off) != 0 || fdatasync(fd) != 0) {
		errf(err, errlen, "cannot truncate %s: %s", path, strerror(errno));
		close(fd);
		return false;
	}
	close(fd);
	return true;
}

int recover_check_log(const Config *cfg, bool fix, bool verbose)
{
	CheckState cs;
	uint64_t *seqs = NULL;
	size_t nseqs = 0;
	long holder = 0;
	char err[1024], who[128];
	int lockfd = -1, rc = RECOVER_EXIT_ERROR;

	memset(&cs, 0, sizeof(cs));
	cs.verbose = verbose;
	cs.idem_ttl_ms = cfg->idempotency_ttl_s * 1000;
	idmap_init(&cs.live_commits);
	idmap_init(&cs.live_heur);
	idmap_init(&cs.keyed);
	if (fix) {
		lockfd = take_lock(cfg->log_dir, &holder, err, sizeof(err));
		if (lockfd < 0) {
			if (holder != 0) {
				recover_describe_holder(holder, who, sizeof(who));
				fprintf(
				    stderr,
				    "twopc-recover: check-log --fix: the decision log %s is locked by %s: stop it "
				    "first "
				    "(twopcd truncates a torn tail itself when it starts; while it runs, nothing needs "
				    "fixing)\n",
				    cfg->log_dir, who);
			} else {
				fprintf(stderr, "twopc-recover: check-log --fix: %s\n", err);
			}
			goto done;
		}
	} else if (dlog_is_locked(cfg->log_dir, &holder)) {
		cs.twopcd_running = true;
		recover_describe_holder(holder, who, sizeof(who));
		printf("NOTE: %s holds the log: it may be writing while this runs.\n", who);
	}
	if (!dlog_list_segment_files(cfg->log_dir, &seqs, &nseqs, err, sizeof(err))) {
		fprintf(stderr, "twopc-recover: check-log: %s\n", err);
		goto done;
	}
	printf("decision log %s: %zu segments\n", cfg->log_dir, nseqs);
	for (size_t i = 0; i < nseqs; i++) {
		if (!check_segment(&cs, cfg->log_dir, seqs[i], i + 1 == nseqs, err, sizeof(err))) {
			fprintf(stderr, "twopc-recover: check-log: %s\n", err);
			goto done;
		}
	}
	size_t expired, keys = count_keys(&cs, &expired);
	printf("%llu records in %llu bytes: %llu COMMIT, %llu DONE, %llu HEURISTIC, %llu IDEM; replayed, %zu "
	       "decided transactions wait for their DONE and %zu heuristic decisions are live\n",
	       (unsigned long long)cs.records, (unsigned long long)cs.bytes, (unsigned long long)cs.counts[DLOG_COMMIT],
	       (unsigned long long)cs.counts[DLOG_DONE], (unsigned long long)cs.counts[DLOG_HEURISTIC],
	       (unsigned long long)cs.counts[DLOG_IDEM], cs.live_commits.count, cs.live_heur.count);
	if (keys > 0)
		printf(
		    "%zu finished transactions' Idempotency-Keys are remembered (%zu of them past idempotency_ttl_s: "
		    "twopcd forgets those and lets their segments go)\n",
		    keys, expired);

	if (cs.damage > 0) {
		printf("PROBLEM: %llu damaged place(s) in the log. twopcd refuses to start on it, and so does "
		       "resolve.\n"
		       "  Cutting damaged bytes could silently drop acknowledged decisions (the valid records after\n"
		       "  them, or those the damaged bytes held), so check-log will not %s.\n"
		       "  Instead: stop, copy the log directory aside, and restore the segment from a backup if you\n"
		       "  have one; otherwise settle by hand as docs/OPERATIONS.md (\"A damaged decision log\")\n"
		       "  describes ('check-log --verbose' lists every readable record).\n",
		       (unsigned long long)cs.damage, fix ? "fix it (nothing was changed)" : "offer to fix it");
		if (cs.torn > 0)
			printf("  (The torn tail of %s is not cut either while the log is damaged.)\n", cs.torn_file);
		rc = RECOVER_EXIT_PROBLEM;
		goto done;
	}
	if (cs.torn == 0) {
		printf("the log is clean%s\n", fix ? ": nothing to fix" : "");
		rc = RECOVER_EXIT_OK;
		goto done;
	}
	if (!fix) {
		printf("PROBLEM: a torn tail (see above). Harmless: twopcd truncates it at its next start; to cut it "
		       "now, run check-log --fix while twopcd is stopped.\n");
		rc = RECOVER_EXIT_PROBLEM;
		goto done;
	}
	printf("fixing: truncating %s/%s at offset %zu: cutting %zu bytes (offsets %zu to %zu)\n", cfg->log_dir,
	       cs.torn_file, cs.torn_off, cs.torn_len, cs.torn_off, cs.torn_off + cs.torn_len - 1);
	if (!truncate_tail(cfg->log_dir, &cs, err, sizeof(err))) {
		fprintf(stderr, "twopc-recover: check-log --fix: %s\n", err);
		goto done;
	}
	printf("fixed: %s is now %zu bytes; the log is clean\n", cs.torn_file, cs.torn_off);
	rc = RECOVER_EXIT_OK;
done:
	free(seqs);
	idmap_free(&cs.live_commits);
	idmap_free(&cs.live_heur);
	size_t pos = 0;
	uint64_t txn;
	void *val;
	while (idmap_next(&cs.keyed, &pos, &txn, &val))
		free(val);
	idmap_free(&cs.keyed);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}
