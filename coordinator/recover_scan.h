/*
 * recover_scan: what twopc-recover's commands share. One scan connects to
 * every participant (blocking libpq, 5 s connect timeout), lists every
 * prepared transaction in that participant's own database — ours and
 * others' — and classifies each with recovery_classify(), the rule twopcd's
 * start-up recovery and its sweeper use too. Also: opening the decision
 * log for looking or for writing, with the messages an operator needs when
 * twopcd holds it, and the exit codes of the tool.
 */
#ifndef TWOPC_RECOVER_SCAN_H
#define TWOPC_RECOVER_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "decision_log.h"
#include "participant.h"
#include "recovery.h"

/* twopc-recover's exit status. */
enum {
	RECOVER_EXIT_OK = 0,      /* nothing in doubt / everything done */
	RECOVER_EXIT_PROBLEM = 1, /* something is in doubt or could not be done */
	RECOVER_EXIT_ERROR = 2,   /* usage, configuration, log or connection error; refusals */
};

/* One prepared transaction found on a participant. */
typedef struct RecXact {
	PreparedXact px;
	size_t part;           /* index into RecScan.parts (= config order) */
	bool ours;             /* our GID shape and coordinator id */
	uint64_t txn;          /* ours: the transaction id */
	DlogDecision decision; /* ours: what the log says */
	XactAction action;     /* what resolve does: COMMIT, ROLLBACK, or LEAVE (not ours) */
} RecXact;

/* One participant as the scan found it. */
typedef struct RecPart {
	const ParticipantConfig *pc;
	PGconn *conn; /* open while the scan lives (when asked to keep it); NULL if unreachable */
	bool reachable;
	char error[512];   /* why it is not reachable (never contains the conninfo) */
	char database[64]; /* current_database() */
	char server[160];  /* host:port */
} RecPart;

typedef struct RecScan {
	RecPart *parts; /* one per participant, config order */
	size_t nparts;
	RecXact *xacts; /* by participant, then ours before others', oldest first */
	size_t nxacts;
	size_t unreachable, commit, rollback, leave;
} RecScan;

/* Connects to every participant and lists its prepared transactions. A
 * participant that cannot be reached or listed is marked so; the scan goes
 * on. With keep_conns the connections stay open for acting on them. */
void recscan_run(RecScan *s, const Config *cfg, const Dlog *dlog, bool keep_conns);
void recscan_free(RecScan *s);

/* Whether some participant holds a prepared branch of txn (by the scan). */
bool recscan_txn_prepared(const RecScan *s, uint64_t txn);

/* "twopcd (pid 42)", "another twopc-recover (pid 42)" or "a process
 * (pid 42)": who holds the log directory's lock. */
void recover_describe_holder(long pid, char *buf, size_t len);

/* Opens the log to look at it (no lock; works while twopcd runs). Sets
 * *holder to the lock holder's pid (0 if nobody holds it). Retries a
 * replay that raced with twopcd removing a segment. */
bool recover_open_log_readonly(const Config *cfg, Dlog **out, DlogLoadStats *st, long *holder, char *err,
                               size_t errlen) WARN_UNUSED;

/* Opens the log for writing (takes its lock, replays, truncates a torn
 * tail, opens a fresh segment). When another process holds the lock,
 * *holder gets its pid (non-zero) and err says so. */
bool recover_open_log_locked(const Config *cfg, Dlog **out, DlogLoadStats *st, long *holder, char *err,
                             size_t errlen) WARN_UNUSED;

/* Reads a whole file; on failure *errnum says why. A file that shrinks
 * while being read yields what was there. */
bool recover_read_file(const char *path, uint8_t **buf, size_t *len, int *errnum) WARN_UNUSED;

/* Ages for people: "42s", "3m05s", "2h10m", "4d03h". */
void recover_format_age(char *buf, size_t len, int64_t seconds);

#endif
