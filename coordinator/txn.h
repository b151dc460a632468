/*
 * txn: the transaction state machine and the in-flight table.
 *
 * Life of a transaction (presumed abort), by one of three paths:
 *
 *   PREPARING   every branch runs BEGIN; set_config(timeouts); statements;
 *               SELECT txid_current_if_assigned(); PREPARE TRANSACTION in
 *               one pipeline, all branches at once
 *      |  all prepared                        |  any failure / deadline
 *      v                                      v
 *   DECIDING    COMMIT record appended;    ABORTING   ROLLBACK PREPARED what
 *               waiting for its fsync                 prepared (or may have)
 *      |  record durable: COMMITTED                   |
 *      v                                              v
 *   COMMITTING  COMMIT PREPARED everywhere,        FINISHED
 *               retried until each succeeds
 *      |  all committed: DONE record
 *      v
 *   FINISHED
 *
 * Read-only branches (no transaction id before PREPARE: they wrote
 * nothing) are COMMIT PREPARED as soon as phase 1 answers, and left out of
 * the COMMIT record (unless the request has an Idempotency-Key) and of
 * phase 2. When every branch is read-only and there is no key, nothing is
 * logged: PREPARING goes straight to COMMITTING.
 *
 * One-phase (one participant, no Idempotency-Key; txn_onephase.c): no
 * PREPARE and no record. PREPARING runs BEGIN; set_config; statements;
 * SELECT txid_current_if_assigned(); DECIDING sends COMMIT on the same
 * connection (and, if its answer is lost, asks txid_status); then
 * COMMITTING (committed) or ABORTING (rolled back) and FINISHED. Its
 * outcome can stay unknown (DECIDING -> FINISHED) only when PostgreSQL
 * itself cannot tell.
 *
 * A transaction stays in the in-flight table from before its first query
 * until FINISHED, so recovery-style cleanup never touches it.
 */
#ifndef TWOPC_TXN_H
#define TWOPC_TXN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "decision_log.h"
#include "gid.h"
#include "idempotency.h"
#include "idmap.h"
#include "metrics.h"
#include "pg_conn.h"
#include "pool.h"
#include "request.h"

struct event_base;

typedef struct Txn Txn;
typedef struct TxnMgr TxnMgr;
typedef struct Branch Branch;
typedef struct Phase2Batch Phase2Batch;

typedef enum TxnState {
	TXN_PREPARING,  /* phase 1 under way on the branches */
	TXN_DECIDING,   /* every branch prepared; COMMIT record waiting for its fsync
	                   (one-phase: COMMIT sent, or its lost answer being looked up) */
	TXN_COMMITTING, /* decision durable (or nothing to log); COMMIT PREPARED on every writing branch */
	TXN_ABORTING,   /* decision abort; rolling back every branch that may have prepared */
	TXN_FINISHED,   /* every branch resolved; about to leave the in-flight table */
} TxnState;

typedef enum BranchState {
	BR_WAIT_CONN,    /* phase 1: waiting for a pool connection */
	BR_RUNNING,      /* phase 1: pipeline sent */
	BR_PREPARED,     /* PREPARE TRANSACTION succeeded */
	BR_FAILED,       /* phase 1 failed before PREPARE: nothing prepared */
	BR_UNKNOWN,      /* lost or abandoned during phase 1: may have prepared */
	BR_COMMITTING,   /* COMMIT PREPARED under way or waiting to retry */
	BR_COMMITTED,    /* committed (or found already committed) */
	BR_ROLLING_BACK, /* ROLLBACK PREPARED under way or waiting to retry */
	BR_ROLLED_BACK,  /* rolled back, or shown never to have prepared */
	BR_CHECKING,     /* one-phase: COMMIT's answer was lost; asking txid_status() */
} BranchState;

/* Which way a transaction went (for the metrics). */
typedef enum TxnPath {
	TXN_PATH_TWO_PHASE, /* PREPARE, COMMIT record, COMMIT PREPARED */
	TXN_PATH_ONE_PHASE, /* one participant, no key: a plain COMMIT, nothing logged */
	TXN_PATH_READ_ONLY, /* every branch read-only: committed in phase 1 */
	TXN_NPATHS,
} TxnPath;
const char *txn_path_name(TxnPath p);

typedef enum AbortReason {
	ABORT_NONE,
	ABORT_STATEMENT,   /* a statement failed: 409 */
	ABORT_EXPECT_ROWS, /* an expect_rows guard did not hold: 409 */
	ABORT_PREPARE,     /* PREPARE TRANSACTION itself failed: 409 */
	ABORT_UNAVAILABLE, /* a participant could not be reached: 503 */
	ABORT_TIMEOUT,     /* the deadline passed before the decision: 504 */
	ABORT_SHUTDOWN,    /* twopcd is stopping: 503 */
	ABORT_NREASONS,
} AbortReason;

/* The problem slug of an abort reason ("statement-failed", ...). */
const char *abort_reason_slug(AbortReason r);

struct Branch {
	Txn *txn;
	Pool *pool;
	const char *name;     /* participant name */
	const ReqBranch *req; /* NULL for transactions resumed from the log */
	unsigned pindex;      /* participant index: part of the GID (branch_gid()) */
	BranchState state;

	PoolWaiter waiter;
	PgConn *conn;         /* while a job runs, and after PREPARE until phase 2 */
	struct BranchOp *op;  /* while a job of its own runs (txn_int.h) */
	int64_t session_lock_ms; /* the lock_timeout phase 1 set (-1: it set nothing) */

	char *results;       /* phase 1: the JSON array [{"rows_affected": n, "rows": [...]}, ...] */
	int64_t retry_at_us; /* phase 2 / rollback: when to try again (0: not waiting) */
	int64_t unknown_until_us; /* an UNKNOWN branch may still prepare until then */
	int64_t op_started_us;    /* when the running COMMIT/ROLLBACK PREPARED was sent */
	Phase2Batch *batch;       /* its COMMIT PREPARED runs in this batch (which owns the connection) */
	int attempts;
	bool op_active;    /* waiting for a connection or running a job */
	bool p2_queued;    /* waiting, with its phase-1 connection, for this round's batch */
	bool sent_unknown; /* an earlier COMMIT/ROLLBACK PREPARED's outcome was lost */

	/* From phase 1's SELECT txid_current_if_assigned(). */
	bool xid_seen;  /* its result arrived */
	bool has_xid;   /* not NULL: the branch wrote something (or locked rows) */
	bool read_only; /* prepared with no xid: finished at once, outside the decision */
	uint64_t xid;   /* the txid (epoch << 32 | xid) */
	/* One-phase. */
	bool terminate;        /* the next outcome check also ends that backend */
	bool terminate_failed; /* ending it was refused: only look from now on */
	int backend_pid;       /* the backend that ran it (to end it if its COMMIT hangs) */
	PgConn *held_conn;     /* fault before_one_phase_commit:drop: a connection abandoned open */
};

typedef void (*TxnReplyFn)(Txn *txn, void *arg);

struct Txn {
	uint64_t id;
	char id_hex[TXN_ID_HEX + 1];
	TxnState state;
	TxnMgr *mgr;
	TxnRequest req;
	Branch *branches;
	size_t nbranches;
	int64_t start_us;
	int64_t deadline_us;
	int64_t decided_us;   /* every branch prepared; COMMIT record appended */
	int64_t durable_us;   /* the COMMIT record is on disk */
	bool durable;         /* the COMMIT record is on disk */
	bool committed;       /* the outcome is commit: record durable, nothing to log, or PostgreSQL said so */
	bool logged;          /* a COMMIT record was appended (so a DONE is due) */
	bool one_phase;       /* one participant and no Idempotency-Key: no PREPARE, no record */
	bool outcome_unknown; /* one-phase: PostgreSQL cannot tell (txid_status NULL or an error) */
	int64_t lost_us;      /* one-phase: when COMMIT's answer was lost (0: it was not) */
	size_t nread_only;    /* branches found read-only in phase 1 */
	bool incomplete;      /* resumed with a branch on a participant no longer configured: never DONE */

	/* Why it aborted, for the reply. */
	AbortReason reason;
	int fail_branch; /* index into branches, -1 if none */
	int fail_stmt;   /* statement index, -1 if not a statement */
	char sqlstate[6];
	char *message; /* NULL until it fails (txn_message() gives "" then) */
	long long expected_rows, actual_rows;

	TxnReplyFn reply;
	void *reply_arg;
	bool replied;

	/* With an Idempotency-Key: the key's entry while it is ours (in flight;
	 * handed to the table on commit, released on abort), and the committed
	 * response, written into the COMMIT record and replayed to retries. */
	IdemEntry *idem;
	char *idem_response;
	int64_t decided_wall_ms;

	Txn *prev, *next; /* in-flight list */
};

typedef enum TxnStatus { TXS_UNKNOWN, TXS_IN_PROGRESS, TXS_COMMITTED, TXS_ABORTED } TxnStatus;

#define ERR_CLASS_SLOTS 16

/* Errors of one participant by SQLSTATE class ("23", "40", ...; "08" also
 * counts connections lost or refused, which have no SQLSTATE). */
typedef struct ErrClassCount {
	char cls[3];
	uint64_t n;
} ErrClassCount;

typedef struct TxnMgrStats {
	uint64_t committed, aborted, in_flight;
	uint64_t unknown;            /* one-phase outcomes PostgreSQL could not tell */
	uint64_t paths[TXN_NPATHS];  /* finished transactions by path */
	uint64_t read_only_branches; /* branches committed in phase 1 (no write) */
	uint64_t phase2_retries;
	Histogram phase2_batch; /* COMMIT PREPAREDs sent together on one connection */
	uint64_t heuristic_hazards;
	uint64_t aborts[ABORT_NREASONS];
	Histogram total;   /* begin to end, every transaction (seconds) */
	Histogram prepare; /* committed: begin until every branch prepared */
	Histogram decide;  /* committed: COMMIT record appended until durable */
	Histogram commit;  /* committed: durable until every COMMIT PREPARED done */
	ErrClassCount errors[MAX_PARTICIPANTS][ERR_CLASS_SLOTS];
} TxnMgrStats;

/* A recent abort, for the dashboard. */
typedef struct RecentAbort {
	uint64_t id;
	int64_t wall_ms;
	AbortReason reason;
	char participant[PARTICIPANT_NAME_MAX + 1]; /* "" if none */
	char sqlstate[6];
	char message[256];
} RecentAbort;
#define RECENT_ABORTS 100
/* The recent aborts, newest first; returns how many. */
size_t txnmgr_recent_aborts(const TxnMgr *m, RecentAbort *out, size_t max);

TxnMgr *txnmgr_new(struct event_base *base, const Config *cfg, Dlog *dlog, Pool **pools, uint64_t first_id);
void txnmgr_free(TxnMgr *m);

/* Starts the periodic housekeeping timer. */
void txnmgr_start(TxnMgr *m);

/* Takes ownership of req and of idem (an in-flight Idempotency-Key entry
 * or NULL). reply(txn, arg) runs once, from the event loop, when the
 * outcome is known (never from inside this call). */
Txn *txn_begin(TxnMgr *m, TxnRequest *req, IdemEntry *idem, TxnReplyFn reply, void *arg);

/* The committed response, compact JSON: {"id", "outcome": "committed",
 * "branches"} and, if phase2_pending, "phase2": "pending"; with newline,
 * a '\n' after it (the HTTP body). Appended to sb. */
void txn_result_text(const Txn *t, bool phase2_pending, bool newline, StrBuf *out);
/* Why it aborted ("" if it did not). */
static inline const char *txn_message(const Txn *t)
{
	return t->message ? t->message : "";
}

/* What the client is told. */
typedef enum TxnOutcome {
	TXO_COMMITTED,
	TXO_ABORTED,
	TXO_UNKNOWN, /* one-phase only: COMMIT's answer was lost and PostgreSQL has not told yet */
} TxnOutcome;
TxnOutcome txn_outcome(const Txn *t);
/* Committed, but a writing branch has not confirmed its COMMIT PREPARED. */
bool txn_phase2_pending(const Txn *t);

/* The Idempotency-Key table (loop thread). */
IdemStore *txnmgr_idem(TxnMgr *m);

/* Resumes phase 2 of a decided transaction found in the log (recovery). */
void txn_resume_commit(TxnMgr *m, const DlogRecord *rec);

TxnStatus txnmgr_status(TxnMgr *m, uint64_t id);
/* The path of an in-flight or recently finished transaction; false if
 * twopcd does not remember it. */
bool txnmgr_path(TxnMgr *m, uint64_t id, TxnPath *out);
/* Remembers an outcome decided outside a live transaction (recovery), so
 * GET /v1/transactions/{id} can answer the client that lost its reply. */
void txnmgr_note_outcome(TxnMgr *m, uint64_t id, bool committed);
/* A branch vanished in a way twopc cannot explain (someone outside it ran
 * COMMIT/ROLLBACK PREPARED): logged at error level and counted. */
void txnmgr_note_heuristic_hazard(TxnMgr *m, uint64_t txn, const char *participant, const char *gid,
                                  const char *why);
uint64_t txnmgr_heuristic_hazards(const TxnMgr *m);
size_t txnmgr_in_flight(const TxnMgr *m);
bool txnmgr_is_in_flight(const TxnMgr *m, uint64_t id);
/* The in-flight transaction with this id, or NULL. */
const Txn *txnmgr_find(const TxnMgr *m, uint64_t id);
const char *branch_state_name(BranchState s);
void txnmgr_get_stats(const TxnMgr *m, TxnMgrStats *out);
Pool *txnmgr_pool(const TxnMgr *m, size_t participant_index);

/* Abort every transaction still in phase 1 (shutdown). */
void txnmgr_abort_preparing(TxnMgr *m);

const char *txn_state_name(TxnState s);

#endif
