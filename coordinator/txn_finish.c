/*
 * txn_finish: a branch's COMMIT or ROLLBACK PREPARED, one at a time on its
 * own connection (a batch of them is txn_phase2.c), with retries until it
 * is resolved, and how a transaction ends: the rollback of every branch
 * (txn_start_abort), phase 2 once the decision is durable
 * (txn_on_commit_durable), the reply and the end (txn_maybe_finish).
 *
 * COMMIT PREPARED and ROLLBACK PREPARED are both safe to repeat: an
 * attempt whose answer was lost is retried, and "does not exist" (42704)
 * on the retry means the lost attempt took effect. Retries back off from
 * RETRY_MIN_US to RETRY_MAX_US; phase 2 never gives up.
 */
#include "txn_int.h"

#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"

#define RETRY_MIN_US (100 * 1000LL)
#define RETRY_MAX_US (5 * 1000 * 1000LL)

static void on_finish_job(PgJob *job, PgConn *conn, PgJobStatus st);

void schedule_retry(Branch *b)
{
	int64_t delay = RETRY_MIN_US << (b->attempts < 6 ? b->attempts : 6);
	if (delay > RETRY_MAX_US)
		delay = RETRY_MAX_US;
	b->attempts++;
	b->retry_at_us = now_mono_us() + delay;
	b->txn->mgr->stats.phase2_retries++;
	txnmgr_wake(b->txn->mgr, b->retry_at_us);
}

void txnmgr_wake(TxnMgr *m, int64_t when_us)
{
	if (when_us < m->next_walk_us)
		m->next_walk_us = when_us;
}

/* COMMIT or ROLLBACK PREPARED, by b's state, on conn. */
static void finish_send(Branch *b, PgConn *conn)
{
	BranchOp *op = branch_op_new(b, 1, on_finish_job);

	op->queries[0] = (PgQuery){
	    .sql = branch_op_text(b, b->state == BR_COMMITTING ? OP_COMMIT_PREPARED : OP_ROLLBACK_PREPARED, op->sql)};
	op->job.nqueries = 1;
	b->conn = conn;
	b->op_started_us = now_mono_us();
	txnmgr_wake(b->txn->mgr, b->op_started_us + b->txn->mgr->cfg->phase2_timeout_ms * 1000);
	pgconn_run(conn, &op->job);
}

static void on_finish_conn(PoolWaiter *w, PgConn *conn, const char *err)
{
	Branch *b = w->arg;

	if (conn == NULL) {
		char gid[GID_OURS_MAX];
		b->op_active = false;
		if (b->attempts == 0 || b->attempts % 10 == 0)
			log_txn(LOG_WARNING, b->txn->id, "participant=%s %s for %s: %s; will retry", b->name,
			        b->state == BR_COMMITTING ? "COMMIT PREPARED" : "ROLLBACK PREPARED", branch_gid(b, gid),
			        err);
		schedule_retry(b);
		txn_maybe_finish(b->txn);
		return;
	}
	finish_send(b, conn);
}

/* Sends COMMIT PREPARED or ROLLBACK PREPARED for b, by its state. */
void branch_finish_op(Branch *b)
{
	b->retry_at_us = 0;
	b->op_active = true;
	if (b->conn != NULL) {
		/* The connection that prepared the branch. */
		finish_send(b, b->conn);
		return;
	}
	PgConn *conn = pool_try_acquire(b->pool);
	if (conn != NULL) {
		finish_send(b, conn);
		return;
	}
	b->waiter.fn = on_finish_conn;
	b->waiter.arg = b;
	b->waiter.deadline_us = 0; /* phase 2 never gives up */
	b->waiter.priority = true; /* finishing frees locks others wait for */
	pool_acquire(b->pool, &b->waiter);
}

/* COMMIT/ROLLBACK PREPARED's connection was lost before its answer: the
 * outcome is unknown. Both are safe to repeat, and "does not exist" on the
 * retry means the lost one took effect. May free b's transaction. */
void finish_lost(Branch *b, bool sent, const char *error)
{
	b->op_active = false;
	if (sent)
		b->sent_unknown = true; /* it may have reached the server */
	log_txn(LOG_WARNING, b->txn->id, "participant=%s connection lost during %s PREPARED: %s; will retry", b->name,
	        b->state == BR_COMMITTING ? "COMMIT" : "ROLLBACK", error);
	schedule_retry(b);
	txn_maybe_finish(b->txn);
}

static void on_finish_job(PgJob *job, PgConn *conn, PgJobStatus st)
{
	Branch *b = job->arg;

	b->conn = NULL;
	if (st == PGJOB_CONN_LOST) {
		bool sent = job->sent;
		char error[sizeof(job->error)];
		strlcpy_s(error, job->error, sizeof(error));
		branch_op_end(b);
		pool_release(b->pool, conn);
		finish_lost(b, sent, error);
		return;
	}
	/* The result outlives the connection's release: it is the job's. */
	pool_release(b->pool, conn);
	finish_answer(b, job->nresults > 0 ? job->results[0] : NULL);
	/* b (and its transaction) may be gone: only the job's own memory now.
	 * The job is b's: finish_answer() cleared its results before anything
	 * could free b. */
}

/* COMMIT/ROLLBACK PREPARED answered (r, which the caller frees; NULL if no
 * answer came): moves b on. May free b's transaction. */
void finish_answer(Branch *b, const PGresult *r)
{
	Txn *t = b->txn;
	bool commit = b->state == BR_COMMITTING;
	ExecStatusType rs = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	char msg[512] = "", sqlstate[6] = "", gid[GID_OURS_MAX];

	b->op_active = false;
	if (rs != PGRES_COMMAND_OK) {
		strlcpy_s(sqlstate, pg_sqlstate(r), sizeof(sqlstate));
		pg_result_message(r, msg, sizeof(msg));
	}
	if (b->op != NULL && (b->op->job.nresults == 0 || b->op->job.results[0] == r))
		branch_op_end(b); /* its own job's result: freed before b can go */

	if (rs != PGRES_COMMAND_OK)
		branch_gid(b, gid); /* for the messages below */
	if (rs == PGRES_COMMAND_OK) {
		b->state = commit ? BR_COMMITTED : BR_ROLLED_BACK;
		if (commit && !b->read_only)
			FAULT_POINT(FAULT_AFTER_FIRST_COMMIT_PREPARED);
	} else if (strcmp(sqlstate, "42704") == 0) {
		if (commit) {
			/* We know this branch prepared. Gone after an attempt of ours
			 * whose outcome was lost: that attempt committed it. Gone with
			 * no such attempt: someone outside twopc decided it. */
			if (b->sent_unknown)
				log_txn(LOG_INFO, t->id, "participant=%s %s already committed by an earlier attempt",
				        b->name, gid);
			else
				txnmgr_note_heuristic_hazard(t->mgr, t->id, b->name, gid,
				                             "vanished before our COMMIT PREPARED");
			b->state = BR_COMMITTED;
		} else if (b->unknown_until_us != 0 && now_mono_us() < b->unknown_until_us) {
			/* Abandoned mid-PREPARE: the server may still finish it. Look again. */
			schedule_retry(b);
		} else {
			if (b->unknown_until_us == 0 && !b->sent_unknown)
				txnmgr_note_heuristic_hazard(t->mgr, t->id, b->name, gid,
				                             "vanished before our ROLLBACK PREPARED");
			b->state = BR_ROLLED_BACK;
		}
	} else {
		/* 55000 (busy: another session holds it) and anything else: retry. */
		log_txn(LOG_WARNING, t->id, "participant=%s %s PREPARED %s failed: %s %s; will retry", b->name,
		        commit ? "COMMIT" : "ROLLBACK", gid, sqlstate, msg);
		schedule_retry(b);
	}
	txn_maybe_finish(t);
}

void txn_start_abort(Txn *t)
{
	txn_set_state(t, TXN_ABORTING);
	log_txn(LOG_INFO, t->id, "aborting: %s", txn_message(t));
	for (size_t i = 0; i < t->nbranches; i++) {
		Branch *b = &t->branches[i];
		if (b->read_only)
			continue; /* being committed since phase 1: harmless either way */
		if (b->state == BR_PREPARED || b->state == BR_UNKNOWN) {
			if (b->state == BR_PREPARED)
				b->unknown_until_us = 0;
			b->state = BR_ROLLING_BACK;
			branch_finish_op(b);
		} else {
			b->state = BR_ROLLED_BACK;
		}
	}
	txn_maybe_finish(t);
}

void txn_on_commit_durable(void *arg)
{
	Txn *t = arg;

	/* The COMMIT record is on disk: the transaction is committed. Only now
	 * may anything say so. */
	FAULT_POINT(FAULT_AFTER_LOG_FSYNC);
	t->durable = true;
	t->durable_us = now_mono_us();
	if (t->idem != NULL) {
		/* From now on a retry replays this response. */
		idem_finish(t->mgr->idem, t->idem, t->id, t->decided_wall_ms, 200, t->idem_response,
		            strlen(t->idem_response));
		t->idem = NULL;
	}
	t->committed = true;
	txn_set_state(t, TXN_COMMITTING);
	/* ack = decided: the decision is durable, so "committed" is true now;
	 * phase 2 goes on after the reply (a read right after it may still
	 * see the old values on a participant). Replied before phase 2 starts:
	 * t may be gone once it has. */
	if (t->mgr->cfg->ack_decided)
		txn_reply(t);
	for (size_t i = 0; i < t->nbranches; i++) {
		Branch *b = &t->branches[i];
		if (b->read_only)
			continue; /* committing or committed since phase 1 */
		b->state = BR_COMMITTING;
		if (b->conn != NULL && b->pindex < MAX_PARTICIPANTS)
			phase2_enqueue(t->mgr->phase2, b);
		else
			branch_finish_op(b);
	}
	if (t->nread_only == t->nbranches)
		txn_maybe_finish(t); /* keyed, every branch read-only: nothing to do */
}

/* Replies and finishes when every branch is resolved; for an abort, also
 * replies once every branch's first attempt has answered (later retries run
 * on in the background); for a commit, once every writing branch committed
 * (a read-only branch's COMMIT PREPARED is nobody's business). */
void txn_maybe_finish(Txn *t)
{
	bool all_resolved = true, any_active = false;

	for (size_t i = 0; i < t->nbranches; i++) {
		BranchState s = t->branches[i].state;
		if (s != BR_COMMITTED && s != BR_ROLLED_BACK)
			all_resolved = false;
		if (t->branches[i].op_active && !t->branches[i].read_only)
			any_active = true;
	}
	if (all_resolved && t->state == TXN_DECIDING) {
		/* Every branch was read-only and finished in phase 1, but the
		 * COMMIT record (a keyed request's) is not durable yet:
		 * txn_on_commit_durable() finishes the transaction. */
		return;
	}
	if (all_resolved) {
		if (t->state == TXN_COMMITTING && t->incomplete) {
			log_txn(LOG_ERROR, t->id,
			        "configured branches committed; the decision stays in the log for the "
			        "branch on a participant that is no longer configured");
		} else if (t->state == TXN_COMMITTING && t->logged) {
			FAULT_POINT(FAULT_BEFORE_LOG_DONE);
			dlog_append_done(t->mgr->dlog, t->id);
			log_txn(LOG_DEBUG, t->id, "committed on %zu participants", t->nbranches);
		}
		txn_end(t);
		return;
	}
	if (t->state == TXN_ABORTING && !any_active)
		txn_reply(t);
	if (t->state == TXN_COMMITTING && !txn_phase2_pending(t))
		txn_reply(t);
}

bool txn_phase2_pending(const Txn *t)
{
	if (t->state != TXN_COMMITTING)
		return false;
	for (size_t i = 0; i < t->nbranches; i++) {
		if (!t->branches[i].read_only && t->branches[i].state != BR_COMMITTED)
			return true;
	}
	return false;
}
