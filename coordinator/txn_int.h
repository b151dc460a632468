/*
 * txn_int: what txn.c (the state machine), txn_phase1.c (phase 1 of a
 * branch), txn_finish.c (COMMIT/ROLLBACK PREPARED of a branch, and how a
 * transaction ends), txn_phase2.c (phase-2 batches), txn_onephase.c
 * (one-phase commit) and txn_tick.c (the housekeeping tick) share, the
 * manager's state included. Private to those files; everyone else goes
 * through txn.h.
 */
#ifndef TWOPC_TXN_INT_H
#define TWOPC_TXN_INT_H

#include <event2/util.h>

#include "txn.h"

/* txn.c */
/* After abandoning a branch mid-PREPARE, how long its server-side PREPARE
 * may still complete: we keep checking for it that long. */
#define UNKNOWN_GRACE_US (2 * 1000 * 1000LL)
/* A BranchOp's query index for a query not sent. */
#define NO_QUERY SIZE_MAX

/* Room for "<verb> '<gid>'": PREPARE TRANSACTION, COMMIT or ROLLBACK PREPARED. */
#define OP_SQL_MAX (GID_OURS_MAX + 24)

/* What a branch needs only while a job of its own runs on a connection
 * (phase 1; COMMIT or ROLLBACK PREPARED; one-phase COMMIT and its outcome
 * check). Allocated when the branch has its connection, freed with the
 * job's results: branches waiting in a pool queue do not carry it, so its
 * memory is bounded by the pools, not by the transactions in flight. */
typedef struct BranchOp {
	PgJob job; /* job.arg is the branch */
	/* Phase 1: where its answers are in job.results (SIZE_MAX: not sent). */
	size_t q_stmt0, q_xid, q_prepare;
	char sql[OP_SQL_MAX];
	union {
		struct { /* phase 1: the session settings, when it sets them */
			char tparams[2][24];
			const char *tparam_ptrs[2];
		};
		struct { /* one-phase: the outcome check (txid, backend pid, 32-bit xid) */
			char check_params[3][24];
			const char *check_ptrs[3];
		};
	};
	PgQuery queries[]; /* job.queries */
} BranchOp;

/* Gives b a fresh op (ending any earlier one) with room for nqueries,
 * whose job calls done with b as its arg. */
BranchOp *branch_op_new(Branch *b, size_t nqueries, PgJobDoneFn done);
/* Frees b's op and its job's results (nothing if it has none). */
void branch_op_end(Branch *b);
/* Gives up on b's job: its connection is closed (the server rolls back
 * whatever was not prepared or committed; no answer will come) and its op
 * freed. */
void branch_drop_conn(Branch *b);
typedef enum BranchOpKind { OP_PREPARE, OP_COMMIT_PREPARED, OP_ROLLBACK_PREPARED } BranchOpKind;
/* Writes "PREPARE TRANSACTION '<b's GID>'" (or COMMIT / ROLLBACK PREPARED)
 * into buf (OP_SQL_MAX bytes). The GID is built, not stored: see gid.h. */
const char *branch_op_text(const Branch *b, BranchOpKind kind, char *buf);
/* b's GID into buf (GID_OURS_MAX bytes), for messages. */
const char *branch_gid(const Branch *b, char *buf);

/* The configuration the manager runs with. */
const Config *txnmgr_cfg(const TxnMgr *m);
/* The only place a transaction changes state; refuses impossible moves. */
void txn_set_state(Txn *t, TxnState to);
/* Sets t->message (printf-style), replacing any earlier one. */
void txn_set_message(Txn *t, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Records the first reason a transaction must abort. */
void txn_fail(Txn *t, AbortReason why, int branch, int stmt, const char *sqlstate, const char *msg);
/* Replies and/or ends the transaction when its branches allow. */
void txn_maybe_finish(Txn *t);
/* FINISHED: counts, remembers the outcome, replies, frees. */
void txn_end(Txn *t);
/* Something of t's is due at when (a deadline, a retry, a timeout): the
 * housekeeping tick must look at the in-flight transactions by then. */
void txnmgr_wake(TxnMgr *m, int64_t when_us);
/* Runs the reply callback once. */
void txn_reply(Txn *t);
/* b's transaction committed or prepared on conn: the session settings its
 * phase 1 made are now in effect there. */
void branch_session_kept(Branch *b, PgConn *conn);

/* Every branch of t has answered phase 1 (or was abandoned): decide. */
void phase1_branch_done(Branch *b);

/* txn_phase1.c: phase 1 of one branch. */
/* Waits for a connection (at once if one is idle), then sends phase 1. */
void branch_phase1(Branch *b);

/* Phase 2 and rollback of one branch (txn.c), for txn_phase2.c: */
/* COMMIT or ROLLBACK PREPARED for b, by its state, on its own connection
 * (the one it holds, else one from the pool). */
void branch_finish_op(Branch *b);
/* Its answer came (r; NULL if none): moves b on. May free b's transaction. */
void finish_answer(Branch *b, const PGresult *r);
/* Its connection was lost before the answer: retried. May free b's transaction. */
void finish_lost(Branch *b, bool sent, const char *error);
/* Retry b's COMMIT/ROLLBACK PREPARED later (backoff). */
void schedule_retry(Branch *b);

/* txn_phase2.c: phase 2 batched per participant. */
typedef struct Phase2 Phase2;
Phase2 *phase2_new(struct event_base *base, const Config *cfg, Histogram *batch_sizes);
/* Lets go of every batch (their connections discarded) and of the
 * branches they hold: call before freeing the transactions. */
void phase2_free(Phase2 *p);
/* b's decision is durable and b holds its phase-1 connection: queue its
 * COMMIT PREPARED for this round's batch to its participant. */
void phase2_enqueue(Phase2 *p, Branch *b);
/* From the housekeeping tick: batches unanswered past phase2_timeout_ms. */
void phase2_tick(Phase2 *p, int64_t now_us);

/* txn_onephase.c */
/* Phase 1 of a one-phase transaction answered with every statement and
 * guard fine: commit it on CONN, the connection that ran it. */
void onephase_commit(Branch *b, PgConn *conn);
/* The housekeeping tick for a one-phase transaction in DECIDING. */
void onephase_tick(Txn *t, int64_t now_us);

/* The manager (txn.h's TxnMgr). */
/* The housekeeping tick's period; the longest between two walks of the
 * in-flight transactions (txn_tick.c). */
#define TICK_US     (20 * 1000)
#define WALK_MAX_US (1000 * 1000LL)

struct TxnMgr {
	struct event_base *base;
	const Config *cfg;
	Dlog *dlog;
	Pool **pools; /* by participant index */
	uint64_t next_id;
	char gid_prefix[GID_OURS_MAX]; /* "twopc_<coordinator id>_" */
	size_t gid_prefix_len;

	Txn *head; /* in-flight list */
	IdMap inflight;
	size_t ninflight;

	/* Outcomes of recently finished transactions, for GET by id: a ring
	 * of ids bounds the memory. */
	IdMap recent;
	uint64_t *recent_ring;
	size_t recent_pos;

	struct event *tick;
	int64_t next_walk_us; /* when the tick must next walk the in-flight transactions */
	TxnMgrStats stats;

	IdemStore *idem;
	int64_t idem_expired_us; /* when keys were last expired */

	RecentAbort recent_aborts[RECENT_ABORTS]; /* a ring */
	size_t recent_aborts_next, recent_aborts_n;

	Phase2 *phase2; /* phase 2's batches (txn_phase2.c) */
};

/* txn_finish.c */
/* Starts rolling back every branch that may be prepared. */
void txn_start_abort(Txn *t);
/* The dlog callback: t's COMMIT record is durable. */
void txn_on_commit_durable(void *arg);

/* txn_tick.c: the housekeeping timer's callback (arg: the TxnMgr). */
void txnmgr_tick(evutil_socket_t fd, short what, void *arg);

#endif
