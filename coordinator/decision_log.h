/*
 * decision_log: the coordinator's durable memory. A COMMIT record written
 * here and fdatasync'ed IS the commit decision of a transaction (presumed
 * abort: no record means abort). A DONE record says phase 2 finished, so the
 * COMMIT is no longer needed.
 *
 * On disk: a directory of segment files "<16 hex seq>.seg", each a run of
 * frames
 *     u32 payload length | u32 CRC32C(type, payload) | u8 type | payload
 * (little endian). Appends are group-committed by one log thread: every
 * record that arrives while a write + fdatasync is under way joins the next
 * one. Completions run back on the event loop, strictly after the fsync.
 * The event loop never touches the disk.
 *
 * The records and their frames are in dlog_codec.h.
 *
 * A segment whose COMMITs all have their DONE is deleted once it is no
 * longer the active one, so the log stays bounded under continuous load.
 *
 * Idempotency keys: a COMMIT may carry the request's Idempotency-Key, its
 * body's fingerprint and the response (written with the decision, so a
 * retry after a crash gets the first answer). The key must be remembered
 * for idem_ttl_ms from the COMMIT's wall_ms even after the DONE: such a
 * finished keyed COMMIT stays in the log, pinning its segment, until it
 * expires (dlog_expire_idempotency) or is carried forward as an IDEM
 * record. Aborted transactions write nothing (presumed abort), so their
 * keys are not remembered across a restart: a retry runs again, which is
 * what an abort allows.
 */
#ifndef TWOPC_DECISION_LOG_H
#define TWOPC_DECISION_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlog_codec.h"
#include "idmap.h"
#include "metrics.h"
#include "util.h"

struct event_base;

/* What the log says about a transaction, heuristics first. */
typedef enum DlogDecision {
	DLOG_PRESUMED_ABORT,   /* no record: abort */
	DLOG_COMMITTED,	       /* a COMMIT record */
	DLOG_HEURISTIC_COMMIT, /* an operator committed it by hand */
	DLOG_HEURISTIC_ABORT,  /* an operator aborted it by hand */
} DlogDecision;

typedef struct Dlog Dlog;

/* What loading found, for the startup log line and the tests. */
typedef struct DlogLoadStats {
	uint64_t segments;
	uint64_t records;
	uint64_t live_commits;    /* COMMITs without DONE */
	uint64_t truncated_bytes; /* torn tail cut off */
	uint64_t max_txn_id;
	uint64_t segments_removed;
	uint64_t live_heuristics;  /* HEURISTIC records without DONE */
	uint64_t torn_tail_bytes;  /* read-only open: a bad tail left in place */
	uint64_t live_keyed;       /* COMMITs without DONE that carry an idempotency key */
	uint64_t idem_keys;        /* finished transactions whose key is still remembered */
	uint64_t idem_expired;     /* keyed records replay found already expired (forgotten) */
} DlogLoadStats;

typedef void (*DlogDoneFn)(void *arg);

/* Opens a log to look at it, while a daemon may be running: no lock, no
 * truncation, no new segment, no removal. A torn or bad tail of the newest
 * segment is reported in stats (it may be a record being written).
 * Idempotency keys never expire here: a look at the log reports every key
 * it still holds, and deciding what a daemon would have forgotten by now
 * needs its configuration, which a tool looking at the files may not have. */
bool dlog_open_readonly(const char *dir, Dlog **out, DlogLoadStats *stats, char *err, size_t errlen) WARN_UNUSED;

/* Whether a process holds the directory's lock; its pid (or 0) in *pid. */
bool dlog_is_locked(const char *dir, long *pid);

/* Locks the directory (flock; one daemon per log), replays every segment,
 * truncates a torn tail (saying so), fails on a bad frame elsewhere, and
 * opens a fresh active segment. A finished transaction's idempotency key is
 * remembered until idem_ttl_ms after its COMMIT's wall_ms. */
bool dlog_open(const char *dir, int64_t segment_bytes, int64_t idem_ttl_ms, Dlog **out, DlogLoadStats *stats, char *err,
               size_t errlen) WARN_UNUSED;

/* Starts the log thread; completions will run on `base`. */
bool dlog_start(Dlog *log, struct event_base *base, char *err, size_t errlen) WARN_UNUSED;

/* Appends a COMMIT; `done` runs on the event loop after the record is on
 * disk. The record is copied. */
void dlog_append_commit(Dlog *log, const DlogRecord *rec, DlogDoneFn done, void *arg);
/* Appends a DONE; no fsync is waited for (losing it only means recovery
 * looks for prepared branches that are already gone). A keyed COMMIT whose
 * key has not expired stays remembered (dlog_foreach_idempotent). */
void dlog_append_done(Dlog *log, uint64_t txn_id);

/* For the tools, before/without dlog_start: write and fdatasync one record
 * now, on this thread. */
bool dlog_append_sync(Dlog *log, const DlogRecord *rec, char *err, size_t errlen) WARN_UNUSED;

/* The log's decision for a transaction (heuristic records first). */
DlogDecision dlog_decision(const Dlog *log, uint64_t txn_id);
const char *dlog_decision_name(DlogDecision d);
/* The live HEURISTIC record of a transaction, or NULL. */
const DlogRecord *dlog_find_heuristic(const Dlog *log, uint64_t txn_id);
/* Live HEURISTIC records (txn id -> private), for sweeps. */
const IdMap *dlog_live_heuristics(const Dlog *log);

/* The live COMMIT (no DONE yet) of a transaction, or NULL. Loop thread. */
const DlogRecord *dlog_find_commit(const Dlog *log, uint64_t txn_id);
/* The live COMMITs, for recovery. Loop thread. Finished transactions whose
 * key is still remembered are not among them: they are no undecided work. */
const IdMap *dlog_live_commits(const Dlog *log);

/* Forgets the keys of finished transactions that expired by now_wall_ms
 * (the wall clock, ms), so their segments can be removed. Loop thread; the
 * daemon calls it once a second. Cheap when nothing expires. Returns how
 * many keys it forgot. */
size_t dlog_expire_idempotency(Dlog *log, int64_t now_wall_ms);
/* Calls fn for every keyed record the log remembers: live keyed COMMITs
 * (finished false) and finished transactions' keys (finished true, rec is
 * then an IDEM record: txn_id, wall_ms and idem). For the daemon to rebuild
 * its key table at startup. Loop thread. */
void dlog_foreach_idempotent(const Dlog *log, void (*fn)(const DlogRecord *rec, bool finished, void *arg), void *arg);

/* Counters (monotonic unless said otherwise), for tests and metrics. */
typedef struct DlogStats {
	uint64_t fsyncs;
	uint64_t records_synced;
	uint64_t writes;
	uint64_t segments_removed;
	uint64_t active_segment;
	uint64_t carried_forward; /* live records copied out of the oldest segment */
	uint64_t idem_keys;       /* gauge: finished transactions whose key is remembered */
	uint64_t idem_expired;    /* keys forgotten, their ttl over (at replay, DONE or expiry) */
	Histogram fsync_seconds;  /* each group commit's fdatasync */
	Histogram records_per_fsync;
} DlogStats;
void dlog_get_stats(Dlog *log, DlogStats *out);

/* Waits for everything appended so far to be written, then stops the
 * thread and releases the lock. */
void dlog_close(Dlog *log);

/* For check-log: segment files of dir, sorted (caller frees *seqs). */
bool dlog_list_segment_files(const char *dir, uint64_t **seqs, size_t *n, char *err, size_t errlen) WARN_UNUSED;
void dlog_segment_file_name(char *buf, size_t len, uint64_t seq);
/* The torn-tail rule: whether a bad frame at `off` of the newest segment is
 * a torn tail (no valid frame starts after it). */
bool dlog_is_torn_tail(const uint8_t *buf, size_t off, size_t len);

/* For tests: the number of segment files in the directory. */
int dlog_count_segments(const char *dir);

#endif
