/*
 * txn_phase1: phase 1 of a branch: a pool connection, then one pipeline
 * (BEGIN; the session settings on a connection's first use; the
 * statements; the transaction id unless the branch surely writes; PREPARE
 * TRANSACTION, or nothing more for one-phase), then its answers: the
 * branch prepared, failed, or is unknown (its connection lost or abandoned
 * mid-pipeline). What follows — the decision, phase 2, rollback — is
 * txn.c's; one-phase commit is txn_onephase.c's.
 */
#include "txn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "result_json.h"

/* Phase 1's look at whether a branch wrote anything: NULL until the branch
 * has a transaction id, which every write (and SELECT ... FOR UPDATE/SHARE:
 * it writes xmax) takes. PREPARE TRANSACTION assigns one itself, so it runs
 * just before. */
#define XID_QUERY "SELECT txid_current_if_assigned()"
/* One-phase: the same, and whether the transaction made something that
 * would outlive it on this pooled session after a plain COMMIT (a
 * temporary table, a cursor WITH HOLD). PREPARE TRANSACTION refuses those;
 * so does one-phase commit, for the same reason and with the same answer. */
#define XID_QUERY_ONE_PHASE                                                                                            \
	"SELECT txid_current_if_assigned(), pg_my_temp_schema() <> 0 OR EXISTS (SELECT FROM pg_cursors WHERE "         \
	"is_holdable)"

/* The session settings phase 1 needs on a pooled connection, set once per
 * connection (and again when lock_timeout_ms is reloaded), not per
 * transaction:
 * - lock_timeout: lock waits across participants (distributed deadlocks
 *   PostgreSQL cannot see) end after lock_timeout_ms with 55P03;
 * - client_connection_check_interval: at its deadline twopcd abandons a
 *   branch still running by closing its connection; the backend notices
 *   within this interval even in the middle of a long statement or lock
 *   wait, and rolls back.
 * They are session-level (is_local false) but sent inside the branch's
 * transaction, so they take effect only if it prepares or commits; after a
 * rollback the session keeps its earlier values. branch_session_kept()
 * records them. */
#define SESSION_SQL                                                                                                    \
	"SELECT set_config('lock_timeout', $1, false), set_config('client_connection_check_interval', $2, false)"
#define CONN_CHECK_INTERVAL_MS "250"

/* Phase 1 sends at most BEGIN, the timeouts, the statements, the xid query
 * and PREPARE TRANSACTION. */
static size_t phase1_queries(const ReqBranch *rb)
{
	return rb->nstmts + 4;
}

static void on_phase1_job(PgJob *job, PgConn *conn, PgJobStatus st);
static void phase1_pipeline(Branch *b);

static void on_phase1_conn(PoolWaiter *w, PgConn *conn, const char *err)
{
	Branch *b = w->arg;
	Txn *t = b->txn;

	if (conn == NULL) {
		/* Never got a connection: nothing was sent, nothing prepared. */
		b->op_active = false;
		b->state = BR_FAILED;
		bool timeout = strncmp(err, "timed out", 9) == 0;
		txn_fail(t, timeout ? ABORT_TIMEOUT : ABORT_UNAVAILABLE, (int)(b - t->branches), -1, NULL, err);
		phase1_branch_done(b);
		return;
	}
	b->conn = conn;
	b->state = BR_RUNNING;
	phase1_pipeline(b);
	pgconn_run(conn, &b->op->job);
}

/* True when the branch, if it prepares at all, surely wrote: one of its
 * statements modifies rows by its first keyword and its expect_rows guard
 * demands at least one (a changed row takes a transaction id). Asking for
 * the transaction id would only confirm it. Wrong answers can only be
 * "no" (a view's INSTEAD OF trigger, say, counts rows without writing),
 * and "no" merely keeps the question in the pipeline. */
static bool surely_writes(const ReqBranch *rb)
{
	static const char *const verbs[] = {"UPDATE", "INSERT", "DELETE", "MERGE"};

	for (size_t i = 0; i < rb->nstmts; i++) {
		const char *s = rb->stmts[i].sql;
		if (rb->stmts[i].expect_rows < 1)
			continue;
		s += strspn(s, " \t\r\n");
		for (size_t v = 0; v < ARRAY_LEN(verbs); v++) {
			size_t n = strlen(verbs[v]);
			if (strncasecmp(s, verbs[v], n) == 0 && (s[n] == ' ' || s[n] == '\t' || s[n] == '\r' || s[n] == '\n'))
				return true;
		}
	}
	return false;
}

/* Phase 1 in one pipeline: BEGIN; the session settings (first use of a
 * connection only); the statements; the transaction id (unless the branch
 * surely writes); PREPARE TRANSACTION (two-phase). Every text but
 * PREPARE's repeats, so the connection may prepare it (PgQuery.reuse). */
static void phase1_pipeline(Branch *b)
{
	Txn *t = b->txn;
	const ReqBranch *rb = b->req;
	BranchOp *op = branch_op_new(b, phase1_queries(rb), on_phase1_job);
	PgQuery *qs = op->queries;
	size_t q = 0;

	const PgConnSession *ss = pgconn_session(b->conn);
	int64_t lock_ms = txnmgr_cfg(t->mgr)->lock_timeout_ms;

	qs[q++] = (PgQuery){.sql = "BEGIN", .reuse = true};
	b->session_lock_ms = -1;
	if (!ss->valid || ss->lock_timeout_ms != lock_ms) {
		fmt_i64(op->tparams[0], lock_ms);
		strlcpy_s(op->tparams[1], CONN_CHECK_INTERVAL_MS, sizeof(op->tparams[1]));
		op->tparam_ptrs[0] = op->tparams[0];
		op->tparam_ptrs[1] = op->tparams[1];
		b->session_lock_ms = lock_ms;
		qs[q++] = (PgQuery){
		    .sql = SESSION_SQL, .nparams = 2, .params = op->tparam_ptrs, .reuse = true, .fixed_result = true};
	}
	op->q_stmt0 = q;
	for (size_t i = 0; i < rb->nstmts; i++)
		qs[q++] = (PgQuery){
		    .sql = rb->stmts[i].sql, .nparams = rb->stmts[i].nparams, .params = rb->stmts[i].params, .reuse = true};
	if (t->one_phase || !surely_writes(rb)) {
		op->q_xid = q;
		qs[q++] = (PgQuery){
		    .sql = t->one_phase ? XID_QUERY_ONE_PHASE : XID_QUERY, .reuse = true, .fixed_result = true};
	} else {
		b->xid_seen = b->has_xid = true; /* not asked: it wrote */
	}
	if (!t->one_phase) {
		/* The GID is ours alone, never client text, so it is safe as a literal. */
		op->q_prepare = q;
		qs[q++] = (PgQuery){.sql = branch_op_text(b, OP_PREPARE, op->sql)};
	}
	op->job.nqueries = q;
}

void branch_session_kept(Branch *b, PgConn *conn)
{
	PgConnSession *ss = pgconn_session(conn);

	if (b->session_lock_ms < 0)
		return;
	ss->valid = true;
	ss->lock_timeout_ms = b->session_lock_ms;
}

void branch_phase1(Branch *b)
{
	PgConn *conn = pool_try_acquire(b->pool);

	b->state = BR_WAIT_CONN;
	b->op_active = true;
	b->waiter.fn = on_phase1_conn;
	b->waiter.arg = b;
	b->waiter.deadline_us = b->txn->deadline_us;
	if (conn != NULL) {
		/* Idle and nobody queued: send now (nothing here calls back). */
		on_phase1_conn(&b->waiter, conn, NULL);
		return;
	}
	pool_acquire(b->pool, &b->waiter);
}

/* Transaction-control statements would end our transaction block early and
 * commit a branch outside 2PC; refuse their results defensively (request.c
 * already rejects them by their first keyword). */
static bool is_txn_control_tag(const char *tag)
{
	static const char *const tags[] = {
	    "BEGIN",           "START TRANSACTION", "COMMIT", "ROLLBACK", "PREPARE TRANSACTION",
	    "COMMIT PREPARED", "ROLLBACK PREPARED"};

	/* Every statement's tag passes here: most (UPDATE, INSERT, SELECT,
	 * DELETE) are told apart by their first letter. */
	if (strchr("BSCRP", tag[0]) == NULL || tag[0] == '\0')
		return false;
	for (size_t i = 0; i < ARRAY_LEN(tags); i++) {
		if (strcmp(tag, tags[i]) == 0)
			return true;
	}
	return false;
}

static void on_phase1_job(PgJob *job, PgConn *conn, PgJobStatus st)
{
	Branch *b = job->arg;
	Txn *t = b->txn;
	int bi = (int)(b - t->branches);
	const ReqBranch *rb = b->req;
	char msg[512];
	bool prepared = false, failed_before_prepare = false;
	size_t q_stmt0 = b->op->q_stmt0, q_xid = b->op->q_xid, q_prepare = b->op->q_prepare;
	char resbuf[256];
	StrBuf res = SB_IN(resbuf);

	b->conn = NULL;
	b->op_active = false;

	if (st == PGJOB_CONN_LOST) {
		if (t->one_phase) {
			/* No COMMIT was sent: the server rolls back when it sees the
			 * connection gone. Nothing can have committed. */
			b->state = BR_FAILED;
		} else {
			/* If the server reported an error for any query of the
			 * pipeline (an error with a SQLSTATE: e.g. 57P01 at shutdown),
			 * PREPARE did not succeed and the server rolls back on
			 * disconnect. An error libpq made up for the lost connection
			 * (no SQLSTATE) proves nothing: the server may have run
			 * everything, PREPARE included. Then the branch is unknown and
			 * rolled back if it turns out prepared. */
			for (size_t i = 0; i < job->nresults; i++) {
				if (job->results[i] && PQresultStatus(job->results[i]) == PGRES_FATAL_ERROR &&
				    pg_sqlstate(job->results[i])[0] != '\0')
					failed_before_prepare = true;
			}
			b->state = failed_before_prepare ? BR_FAILED : BR_UNKNOWN;
			b->unknown_until_us = now_mono_us() + UNKNOWN_GRACE_US;
		}
		snprintf(msg, sizeof(msg), "connection to %s lost during phase 1: %s", b->name, job->error);
		log_txn(LOG_WARNING, t->id, "participant=%s %s", b->name, msg);
		txn_fail(t, ABORT_UNAVAILABLE, bi, -1, NULL, msg);
		branch_op_end(b);
		pool_release(b->pool, conn);
		phase1_branch_done(b);
		return;
	}

	sb_puts(&res, "[");
	for (size_t q = 0; q < job->nqueries; q++) {
		PGresult *r = job->results[q];
		ExecStatusType rs = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
		bool is_stmt = q >= q_stmt0 && q < q_stmt0 + rb->nstmts;
		int si = (int)(q - q_stmt0);

		if (rs == PGRES_PIPELINE_ABORTED)
			continue; /* an earlier query failed; already recorded */
		if (rs == PGRES_FATAL_ERROR || rs == PGRES_BAD_RESPONSE || rs == PGRES_NONFATAL_ERROR) {
			pg_result_message(r, msg, sizeof(msg));
			if (is_stmt)
				txn_fail(t, ABORT_STATEMENT, bi, si, pg_sqlstate(r), msg);
			else if (q == q_prepare)
				txn_fail(t, ABORT_PREPARE, bi, -1, pg_sqlstate(r), msg);
			else
				txn_fail(t, ABORT_STATEMENT, bi, -1, pg_sqlstate(r), msg);
			continue;
		}
		if (q == q_prepare) {
			prepared = rs == PGRES_COMMAND_OK;
			continue;
		}
		if (q == q_xid) {
			if (rs == PGRES_TUPLES_OK && PQntuples(r) == 1) {
				b->xid_seen = true;
				b->has_xid = !PQgetisnull(r, 0, 0);
				b->xid = b->has_xid ? strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
			}
			if (t->one_phase && rs == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 2 &&
			    strcmp(PQgetvalue(r, 0, 1), "t") == 0)
				txn_fail(
				    t, ABORT_PREPARE, bi, -1, "0A000",
				    "temporary objects and cursors WITH HOLD are not allowed: they would outlive the "
				    "transaction on a pooled connection (PREPARE TRANSACTION refuses them too)");
			continue;
		}
		if (!is_stmt)
			continue;
		if (is_txn_control_tag(PQcmdStatus(r))) {
			snprintf(msg, sizeof(msg), "statement ran %s: transaction control is not allowed in a branch",
			         PQcmdStatus(r));
			txn_fail(t, ABORT_STATEMENT, bi, si, NULL, msg);
			continue;
		}
		long long rows = result_row_count(r);
		char num[24];
		sb_puts(&res, res.len > 1 ? ",{\"rows_affected\":" : "{\"rows_affected\":");
		sb_append(&res, num, fmt_i64(num, rows < 0 ? 0 : rows));
		if (rs == PGRES_TUPLES_OK) {
			/* Rows (RETURNING, SELECT) are rare on the hot path: jansson
			 * types them (result_json.c). */
			json_t *rows_json = result_rows_json(r);
			char *text = json_dumps(rows_json, JSON_COMPACT);
			if (text == NULL)
				log_fatal("cannot serialise a result");
			sb_puts(&res, ",\"rows\":");
			sb_puts(&res, text);
			free(text);
			json_decref(rows_json);
		}
		sb_puts(&res, "}");
		if (rb->stmts[si].expect_rows >= 0 && rows != rb->stmts[si].expect_rows) {
			snprintf(msg, sizeof(msg), "statement %d on %s affected %lld rows, expected %lld", si, b->name,
			         rows, (long long)rb->stmts[si].expect_rows);
			if (t->reason == ABORT_NONE) {
				t->expected_rows = rb->stmts[si].expect_rows;
				t->actual_rows = rows;
			}
			txn_fail(t, ABORT_EXPECT_ROWS, bi, si, NULL, msg);
		}
	}
	branch_op_end(b);
	sb_puts(&res, "]");
	free(b->results);
	b->results = sb_take(&res);
	if (t->one_phase) {
		if (t->reason == ABORT_NONE && b->xid_seen) {
			onephase_commit(b, conn);
			return;
		}
		if (t->reason == ABORT_NONE) /* no answer to XID_QUERY: cannot be */
			txn_fail(t, ABORT_STATEMENT, bi, -1, NULL, "no answer to the transaction id query");
		/* The transaction is open (a guard failed) or aborted (a statement
		 * failed): the pool rolls it back before anyone else gets the
		 * connection. */
		b->state = BR_FAILED;
		pool_release(b->pool, conn);
		phase1_branch_done(b);
		return;
	}
	b->state = prepared ? BR_PREPARED : BR_FAILED;
	if (prepared)
		branch_session_kept(b, conn);
	if (prepared && b->xid_seen && !b->has_xid) {
		/* Read-only: it wrote nothing and holds no row lock, so whether it
		 * commits or rolls back changes nothing anyone can see, and the
		 * decision need not wait for it nor name it. Finish it now, on its
		 * own connection; the transaction stays in flight until it is done
		 * (the sweeper leaves it alone meanwhile). */
		b->read_only = true;
		t->nread_only++;
		b->conn = conn;
		b->state = BR_COMMITTING;
		log_txn(LOG_DEBUG, t->id, "participant=%s read-only: COMMIT PREPARED now, outside the decision",
		        b->name);
		branch_finish_op(b);
	} else if (prepared) {
		/* Keep the connection for COMMIT/ROLLBACK PREPARED. Sending phase 2
		 * through the pool queue would deadlock: the queue can be full of
		 * phase-1 branches blocked on the very row locks this prepared
		 * branch holds until it commits. */
		b->conn = conn;
	} else {
		pool_release(b->pool, conn);
	}
	phase1_branch_done(b);
}
