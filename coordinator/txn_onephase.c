/*
 * txn_onephase: one-phase commit, for a transaction with one participant
 * and no Idempotency-Key. With a single participant there is nothing to
 * coordinate: PostgreSQL's own COMMIT is the decision, so there is no
 * PREPARE TRANSACTION and no decision-log record (and no fsync of ours).
 *
 * Phase 1 (txn.c) runs BEGIN; set_config(timeouts); the statements;
 * SELECT txid_current_if_assigned() in one pipeline and checks the
 * expect_rows guards. Then, here, COMMIT goes on the same connection in a
 * second round trip. Not in the same pipeline: PostgreSQL sends a
 * pipeline's results only at its Sync (or when its output buffer fills),
 * so if the connection broke, twopcd would not have the transaction id it
 * needs to find out what happened. With the id in hand before COMMIT is
 * sent, a lost answer is always resolved:
 *
 *   - txid_status(id) on another connection says committed or aborted;
 *   - 'in progress' means the old backend has not finished: its COMMIT is
 *     still running, or it never received it and waits for more input on
 *     a connection it does not know is dead (a partition). After
 *     TERMINATE_AFTER_US of that, the check also ends that backend
 *     (pg_terminate_backend, only while it still holds our transaction id),
 *     which finishes the transaction one way or the other; txid_status
 *     then tells which. Ending it cannot undo a commit: a commit record
 *     once written stays, and a backend waiting for a synchronous standby
 *     has already committed locally.
 *   - NULL (the id is older than the participant's oldest commit-log data)
 *     or an error (an id "in the future": the participant is not the server
 *     that ran it, e.g. after a failover) means PostgreSQL cannot tell: the
 *     outcome is unknown, the only case that reaches the client as such.
 *
 * A branch that wrote nothing (no transaction id) cannot have changed
 * anything: a lost COMMIT answer for it is simply "committed".
 *
 * Nothing here is logged, so after a restart twopcd knows nothing of these
 * transactions (GET /v1/transactions/{id} answers unknown), and recovery
 * and the sweeper have nothing to do for them: PostgreSQL rolls back an
 * open transaction whose connection is gone.
 */
#include "txn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"

/* 'in progress' this long after the answer was lost: end the old backend. */
#define TERMINATE_AFTER_US (2 * 1000 * 1000LL)
/* The client hears "outcome unknown" once the deadline has passed and the
 * answer has been sought this long; the look goes on for GET. */
#define REPLY_GRACE_US (5 * 1000 * 1000LL)
#define CHECK_MIN_US   (50 * 1000LL)
#define CHECK_MAX_US   (1000 * 1000LL)

#define STATUS_SQL "SELECT txid_status($1)"
/* Only the backend that ran it, and only while it still holds our
 * transaction (its pid alone could have been reused). */
#define TERMINATE_SQL "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_xid = $2::xid"

static void on_commit_job(PgJob *job, PgConn *conn, PgJobStatus st);
static void check_outcome(Branch *b);

static void finish_committed(Branch *b)
{
	Txn *t = b->txn;

	b->state = BR_COMMITTED;
	t->committed = true;
	t->durable_us = now_mono_us();
	txn_set_state(t, TXN_COMMITTING);
	txn_maybe_finish(t); /* every branch resolved: ends it (may free t) */
}

static void finish_aborted(Branch *b)
{
	Txn *t = b->txn;

	b->state = BR_ROLLED_BACK;
	txn_set_state(t, TXN_ABORTING);
	txn_maybe_finish(t);
}

static void finish_unknown(Branch *b, const char *why)
{
	Txn *t = b->txn;

	t->outcome_unknown = true;
	txn_set_message(t,
	                "the connection to %s was lost after COMMIT was sent, and PostgreSQL cannot tell whether it "
	                "committed (%s)",
	                b->name, why);
	log_txn(LOG_ERROR, t->id, "participant=%s OUTCOME UNKNOWN: %s; check this transaction's data there", b->name,
	        t->message);
	txn_end(t);
}

/* The answer to COMMIT was lost (or COMMIT itself, for the fault test). */
static void commit_lost(Branch *b, const char *why)
{
	Txn *t = b->txn;

	log_txn(LOG_WARNING, t->id, "participant=%s %s", b->name, why);
	if (!b->has_xid) {
		/* It wrote nothing: committed or rolled back, the database is the
		 * same, and the rows it read are what they were. */
		log_txn(LOG_INFO, t->id, "participant=%s wrote nothing: the lost COMMIT cannot matter; committed",
		        b->name);
		finish_committed(b);
		return;
	}
	b->state = BR_CHECKING;
	b->attempts = 0;
	if (t->lost_us == 0)
		t->lost_us = now_mono_us();
	log_txn(LOG_INFO, t->id, "participant=%s asking txid_status(%llu) whether COMMIT took effect", b->name,
	        (unsigned long long)b->xid);
	check_outcome(b);
}

void onephase_commit(Branch *b, PgConn *conn)
{
	Txn *t = b->txn;

	txn_set_state(t, TXN_DECIDING);
	txnmgr_wake(t->mgr, now_mono_us()); /* onephase_tick watches DECIDING at every tick */
	t->decided_wall_ms = now_wall_ms();
	t->decided_us = now_mono_us();
	b->backend_pid = PQbackendPID(pgconn_pq(conn));
	b->state = BR_COMMITTING;
	if (FAULT_DROP(FAULT_BEFORE_ONE_PHASE_COMMIT)) {
		/* As if COMMIT were lost on the way: the backend keeps waiting,
		 * its transaction open, on a connection we no longer use. */
		b->held_conn = conn;
		commit_lost(b, "connection lost before COMMIT arrived (fault point before_one_phase_commit)");
		return;
	}
	BranchOp *op = branch_op_new(b, 1, on_commit_job);
	op->queries[0] = (PgQuery){.sql = "COMMIT", .reuse = true};
	op->job.nqueries = 1;
	b->conn = conn;
	b->op_active = true;
	b->op_started_us = now_mono_us();
	txnmgr_wake(t->mgr, b->op_started_us + txnmgr_cfg(t->mgr)->phase2_timeout_ms * 1000);
	pgconn_run(conn, &op->job);
	if (FAULT_DROP(FAULT_AFTER_ONE_PHASE_COMMIT_SENT)) {
		/* COMMIT is on the wire; the connection goes before its answer
		 * (the job's callback never runs for a freed connection). */
		pool_discard(b->pool, conn);
		b->conn = NULL;
		b->op_active = false;
		branch_op_end(b);
		commit_lost(b, "connection lost after COMMIT was sent (fault point after_one_phase_commit_sent)");
	}
}

static void on_commit_job(PgJob *job, PgConn *conn, PgJobStatus st)
{
	Branch *b = job->arg;
	Txn *t = b->txn;
	PGresult *r = job->nresults > 0 ? job->results[0] : NULL;
	char msg[512], why[600], sqlstate[6], tag[32];
	ExecStatusType rs;

	b->conn = NULL;
	b->op_active = false;
	if (st == PGJOB_CONN_LOST) {
		snprintf(why, sizeof(why), "connection lost after COMMIT was sent: %s", job->error);
		branch_op_end(b);
		pool_release(b->pool, conn);
		commit_lost(b, why);
		return;
	}
	rs = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	snprintf(sqlstate, sizeof(sqlstate), "%s", pg_sqlstate(r));
	snprintf(tag, sizeof(tag), "%s", r ? PQcmdStatus(r) : "");
	pg_result_message(r, msg, sizeof(msg));
	branch_op_end(b);
	if (rs == PGRES_COMMAND_OK && strcmp(tag, "COMMIT") == 0)
		branch_session_kept(b, conn);
	pool_release(b->pool, conn);

	if (rs == PGRES_COMMAND_OK && strcmp(tag, "COMMIT") == 0) {
		finish_committed(b);
		return;
	}
	if (rs == PGRES_COMMAND_OK) {
		/* COMMIT of a failed transaction answers ROLLBACK, no error. */
		snprintf(msg, sizeof(msg), "COMMIT on %s rolled back instead (%s)", b->name, tag);
		sqlstate[0] = '\0';
	}
	/* A deferred constraint or a serialization failure at commit: in
	 * two-phase commit PREPARE would have failed the same way, hence the
	 * same problem type (prepare-failed). The transaction is rolled back. */
	log_txn(LOG_INFO, t->id, "participant=%s COMMIT failed: %s %s", b->name, sqlstate, msg);
	txn_fail(t, ABORT_PREPARE, 0, -1, sqlstate[0] ? sqlstate : NULL, msg);
	finish_aborted(b);
}

/* ---- the outcome check ------------------------------------------------- */

static void on_check_job(PgJob *job, PgConn *conn, PgJobStatus st);

static void check_later(Branch *b)
{
	int64_t delay = CHECK_MIN_US << (b->attempts < 5 ? b->attempts : 5);

	if (delay > CHECK_MAX_US)
		delay = CHECK_MAX_US;
	b->attempts++;
	b->retry_at_us = now_mono_us() + delay;
	txnmgr_wake(b->txn->mgr, b->retry_at_us);
}

static void on_check_conn(PoolWaiter *w, PgConn *conn, const char *err)
{
	Branch *b = w->arg;
	Txn *t = b->txn;
	size_t q = 0;

	if (conn == NULL) {
		b->op_active = false;
		if (b->attempts % 10 == 0)
			log_txn(LOG_WARNING, t->id,
			        "participant=%s cannot ask whether COMMIT took effect: %s; will retry", b->name, err);
		check_later(b);
		return;
	}
	BranchOp *op = branch_op_new(b, 2, on_check_job);
	snprintf(op->check_params[0], sizeof(op->check_params[0]), "%llu", (unsigned long long)b->xid);
	snprintf(op->check_params[1], sizeof(op->check_params[1]), "%d", b->backend_pid);
	snprintf(op->check_params[2], sizeof(op->check_params[2]), "%llu",
	         (unsigned long long)(b->xid & 0xffffffffULL)); /* the txid without its epoch */
	for (int i = 0; i < 3; i++)
		op->check_ptrs[i] = op->check_params[i];
	b->terminate = !b->terminate_failed && b->backend_pid > 0 && now_mono_us() - t->lost_us >= TERMINATE_AFTER_US;
	if (b->terminate)
		op->queries[q++] = (PgQuery){.sql = TERMINATE_SQL, .nparams = 2, .params = &op->check_ptrs[1]};
	op->queries[q++] = (PgQuery){.sql = STATUS_SQL, .nparams = 1, .params = &op->check_ptrs[0]};
	op->job.nqueries = q;
	b->conn = conn;
	b->op_started_us = now_mono_us();
	txnmgr_wake(t->mgr, b->op_started_us + txnmgr_cfg(t->mgr)->phase2_timeout_ms * 1000);
	pgconn_run(conn, &op->job);
}

static void check_outcome(Branch *b)
{
	b->retry_at_us = 0;
	b->op_active = true;
	b->waiter.fn = on_check_conn;
	b->waiter.arg = b;
	b->waiter.deadline_us = 0; /* until it knows */
	b->waiter.priority = true; /* like phase 2: it settles a decision */
	pool_acquire(b->pool, &b->waiter);
}

static void on_check_job(PgJob *job, PgConn *conn, PgJobStatus st)
{
	Branch *b = job->arg;
	Txn *t = b->txn;
	size_t last = job->nqueries - 1;
	PGresult *r = job->nresults > last ? job->results[last] : NULL;
	ExecStatusType rs = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	char status[32] = "", msg[512] = "", sqlstate[6] = "", why[600];
	bool isnull = false;

	b->conn = NULL;
	b->op_active = false;
	if (st == PGJOB_CONN_LOST) {
		log_txn(LOG_WARNING, t->id, "participant=%s connection lost asking txid_status: %s; will retry",
		        b->name, job->error);
		branch_op_end(b);
		pool_release(b->pool, conn);
		check_later(b);
		return;
	}
	if (b->terminate) {
		PGresult *tr = job->results[0];
		if (tr == NULL || PQresultStatus(tr) != PGRES_TUPLES_OK) {
			/* Not allowed (another role's backend, say): look only. */
			pg_result_message(tr, msg, sizeof(msg));
			log_txn(LOG_WARNING, t->id,
			        "participant=%s cannot end backend %d, still in our transaction: %s", b->name,
			        b->backend_pid, msg);
			b->terminate_failed = true;
		} else if (PQntuples(tr) > 0) {
			log_txn(LOG_WARNING, t->id,
			        "participant=%s backend %d still held the transaction open; ended it "
			        "(pg_terminate_backend)",
			        b->name, b->backend_pid);
			b->attempts = 0; /* it ends at once: look again soon */
		}
	}
	if (rs == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		isnull = PQgetisnull(r, 0, 0);
		snprintf(status, sizeof(status), "%s", PQgetvalue(r, 0, 0));
	} else {
		snprintf(sqlstate, sizeof(sqlstate), "%s", pg_sqlstate(r));
		pg_result_message(r, msg, sizeof(msg));
	}
	branch_op_end(b);
	pool_release(b->pool, conn);

	if (rs == PGRES_TUPLES_OK && !isnull && strcmp(status, "committed") == 0) {
		log_txn(LOG_INFO, t->id, "participant=%s txid_status: committed", b->name);
		finish_committed(b);
	} else if (rs == PGRES_TUPLES_OK && !isnull && strcmp(status, "aborted") == 0) {
		log_txn(LOG_INFO, t->id, "participant=%s txid_status: aborted", b->name);
		snprintf(why, sizeof(why),
		         "the connection to %s was lost during COMMIT and the participant rolled the transaction back",
		         b->name);
		txn_fail(t, ABORT_UNAVAILABLE, 0, -1, NULL, why);
		finish_aborted(b);
	} else if (rs == PGRES_TUPLES_OK && !isnull && strcmp(status, "in progress") == 0) {
		check_later(b);
	} else if (rs == PGRES_TUPLES_OK) {
		finish_unknown(b, isnull ? "txid_status is NULL: the transaction id is too old" : status);
	} else if (strcmp(sqlstate, "22023") == 0) {
		/* "transaction ID ... is in the future": not the server that ran it. */
		finish_unknown(b, msg);
	} else {
		log_txn(LOG_WARNING, t->id, "participant=%s txid_status failed: %s %s; will retry", b->name, sqlstate,
		        msg);
		check_later(b);
	}
}

void onephase_tick(Txn *t, int64_t now)
{
	Branch *b = &t->branches[0];
	int64_t reply_at;
	char why[128];

	if (b->state == BR_COMMITTING && b->op_active && b->conn != NULL &&
	    now - b->op_started_us > txnmgr_cfg(t->mgr)->phase2_timeout_ms * 1000) {
		/* No answer (a partition, a stalled server): find out instead. */
		branch_drop_conn(b);
		snprintf(why, sizeof(why), "no answer to COMMIT in %lld ms",
		         (long long)txnmgr_cfg(t->mgr)->phase2_timeout_ms);
		commit_lost(b, why); /* may end t */
		return;
	}
	if (b->state != BR_CHECKING)
		return;
	if (b->op_active && b->conn != NULL && now - b->op_started_us > txnmgr_cfg(t->mgr)->phase2_timeout_ms * 1000) {
		/* The look itself got no answer (a partition): again, elsewhere. */
		log_txn(LOG_WARNING, t->id, "participant=%s no answer to txid_status in %lld ms; will retry", b->name,
		        (long long)txnmgr_cfg(t->mgr)->phase2_timeout_ms);
		branch_drop_conn(b);
		check_later(b);
	}
	if (!b->op_active && b->retry_at_us != 0 && now >= b->retry_at_us)
		check_outcome(b);
	reply_at = t->lost_us + REPLY_GRACE_US;
	if (reply_at < t->deadline_us)
		reply_at = t->deadline_us;
	if (!t->replied && now >= reply_at) {
		log_txn(LOG_WARNING, t->id,
		        "participant=%s whether COMMIT took effect is still unknown past the deadline: telling the "
		        "client so; still asking",
		        b->name);
		txn_set_message(t,
		                "the connection to %s was lost after COMMIT was sent and it could not be asked yet "
		                "whether it committed; GET /v1/transactions/%s will tell",
		                b->name, t->id_hex);
		txn_reply(t);
	}
}
