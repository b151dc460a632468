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
 * A segment whose COMMITs all have their DONE is deleted once it is no
 * longer the active one, so the log stays bounded under continuous load.
 */
#ifndef TWOPC_DECISION_LOG_H
#define TWOPC_DECISION_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idmap.h"
#include "util.h"

struct event_base;

typedef enum DlogType {
	DLOG_COMMIT = 1, /* the commit decision of a transaction */
	DLOG_DONE = 2,   /* every branch of that transaction committed */
} DlogType;

#define DLOG_FRAME_HEADER 9
#define DLOG_MAX_PAYLOAD  (64 * 1024)
#define DLOG_NAME_MAX     63

typedef struct DlogBranchRef {
	uint16_t index;               /* participant index at the time: part of the GID */
	char name[DLOG_NAME_MAX + 1]; /* participant name */
} DlogBranchRef;

typedef struct DlogRecord {
	DlogType type;
	uint64_t txn_id;
	int64_t wall_ms;         /* COMMIT: when the decision was taken */
	uint16_t nbranches;      /* COMMIT */
	DlogBranchRef *branches; /* COMMIT: heap array owned by the record */
} DlogRecord;

typedef enum DlogDecode {
	DLOG_DEC_OK,    /* one record decoded */
	DLOG_DEC_SHORT, /* the buffer ends inside the frame (a torn tail if at EOF) */
	DLOG_DEC_BAD,   /* bad length, checksum or payload */
} DlogDecode;

/* Encoding and decoding, pure functions (unit-tested and fuzzed). */
size_t dlog_encoded_size(const DlogRecord *rec);
size_t dlog_encode(const DlogRecord *rec, uint8_t *buf);
DlogDecode dlog_decode(const uint8_t *buf, size_t len, DlogRecord *out, size_t *frame_len, char *err,
                       size_t errlen) WARN_UNUSED;
void dlog_record_clear(DlogRecord *rec);
DlogRecord *dlog_record_copy(const DlogRecord *rec);
void dlog_record_free(DlogRecord *rec);

typedef struct Dlog Dlog;

/* What loading found, for the startup log line and the tests. */
typedef struct DlogLoadStats {
	uint64_t segments;
	uint64_t records;
	uint64_t live_commits;    /* COMMITs without DONE */
	uint64_t truncated_bytes; /* torn tail cut off */
	uint64_t max_txn_id;
	uint64_t segments_removed;
} DlogLoadStats;

typedef void (*DlogDoneFn)(void *arg);

/* Locks the directory (flock; one daemon per log), replays every segment,
 * truncates a torn tail (saying so), fails on a bad frame elsewhere, and
 * opens a fresh active segment. */
bool dlog_open(const char *dir, int64_t segment_bytes, Dlog **out, DlogLoadStats *stats, char *err,
               size_t errlen) WARN_UNUSED;

/* Starts the log thread; completions will run on `base`. */
bool dlog_start(Dlog *log, struct event_base *base, char *err, size_t errlen) WARN_UNUSED;

/* Appends a COMMIT; `done` runs on the event loop after the record is on
 * disk. The record is copied. */
void dlog_append_commit(Dlog *log, const DlogRecord *rec, DlogDoneFn done, void *arg);
/* Appends a DONE; no fsync is waited for (losing it only means recovery
 * looks for prepared branches that are already gone). */
void dlog_append_done(Dlog *log, uint64_t txn_id);

/* The live COMMIT (no DONE yet) of a transaction, or NULL. Loop thread. */
const DlogRecord *dlog_find_commit(const Dlog *log, uint64_t txn_id);
/* The live COMMITs, for recovery. Loop thread. */
const IdMap *dlog_live_commits(const Dlog *log);

/* Counters (monotonic), for tests and metrics. */
typedef struct DlogStats {
	uint64_t fsyncs;
	uint64_t records_synced;
	uint64_t writes;
	uint64_t segments_removed;
	uint64_t active_segment;
} DlogStats;
void dlog_get_stats(Dlog *log, DlogStats *out);

/* Waits for everything appended so far to be written, then stops the
 * thread and releases the lock. */
void dlog_close(Dlog *log);

/* For tests: the number of segment files in the directory. */
int dlog_count_segments(const char *dir);

#endif
