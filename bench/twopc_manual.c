/*
 * twopc-manual: hand-written two-phase commit, what an application does
 * without a coordinator. One transfer, one statement at a time, each a
 * round trip (blocking libpq):
 *
 *     A: BEGIN; EXECUTE debit-or-credit; PREPARE TRANSACTION 'gid'
 *     B: BEGIN; EXECUTE credit-or-debit; PREPARE TRANSACTION 'gid'
 *     A: COMMIT PREPARED 'gid'
 *     B: COMMIT PREPARED 'gid'
 *
 * Eight round trips, no decision log: a crash between the PREPAREs and the
 * COMMITs leaves the outcome to whoever looks at pg_prepared_xacts later
 * (which is why twopcd exists). The UPDATE is a prepared statement
 * (PQprepare once per connection, PQexecPrepared, like pgbench -M
 * prepared); BEGIN, PREPARE TRANSACTION and COMMIT PREPARED go as simple
 * queries: utility statements take no parameters, so a GID cannot be
 * bound into a statement prepared once.
 *
 * On an error in phase 1: ROLLBACK on the participant whose transaction
 * block failed, ROLLBACK PREPARED on the ones already prepared. Once both
 * prepared, the decision is commit: a failed COMMIT PREPARED is retried.
 */
#include <stdio.h>
#include <string.h>

#include "benchclient.h"

/* Runs sql as a simple query; true when it ended with tag (if non-NULL). */
static bool simple(BenchThread *t, int part, const char *sql, const char *tag, const char *what)
{
	PGresult *r = PQexec(t->conn[part], sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && (tag == NULL || strcmp(PQcmdStatus(r), tag) == 0);
	if (!ok)
		bench_error(t, what, t->conn[part], r);
	PQclear(r);
	return ok;
}

static bool phase1(BenchThread *t, const BenchTransfer *x, int part, bool *prepared)
{
	char sql[128];
	const char *params[2] = {"1", x->account[part]};

	if (!simple(t, part, "BEGIN", NULL, "BEGIN"))
		return false;
	PGresult *r = PQexecPrepared(t->conn[part], bench_stmt(x, part), 2, params, NULL, NULL, 0);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0;
	if (!ok)
		bench_error(t, "UPDATE (expected 1 row)", t->conn[part], r);
	PQclear(r);
	if (!ok)
		return false;
	snprintf(sql, sizeof(sql), "PREPARE TRANSACTION '%s'", x->gid);
	/* A PREPARE TRANSACTION of a failed block answers ROLLBACK. */
	*prepared = simple(t, part, sql, "PREPARE TRANSACTION", "PREPARE TRANSACTION");
	return *prepared;
}

/* Ends what phase 1 left open on part: a failed or open block, or a
 * prepared branch. Reconnects for ROLLBACK PREPARED if the connection is
 * gone (a prepared transaction outlives its session). */
static void undo(BenchThread *t, const BenchTransfer *x, int part, bool prepared)
{
	char sql[128];
	if (prepared) {
		snprintf(sql, sizeof(sql), "ROLLBACK PREPARED '%s'", x->gid);
		for (int attempt = 0; attempt < 3; attempt++) {
			if (PQstatus(t->conn[part]) != CONNECTION_OK && !bench_connect(t, part))
				continue;
			if (simple(t, part, sql, NULL, "ROLLBACK PREPARED"))
				return;
		}
		t->left_prepared++;
	} else if (PQstatus(t->conn[part]) == CONNECTION_OK && PQtransactionStatus(t->conn[part]) != PQTRANS_IDLE) {
		(void)simple(t, part, "ROLLBACK", NULL, "ROLLBACK");
	}
}

static bool commit(BenchThread *t, const BenchTransfer *x, int part, int attempts)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "COMMIT PREPARED '%s'", x->gid);
	for (int attempt = 0; attempt < attempts; attempt++) {
		if (PQstatus(t->conn[part]) != CONNECTION_OK && !bench_connect(t, part))
			continue;
		if (simple(t, part, sql, NULL, "COMMIT PREPARED"))
			return true;
	}
	return false;
}

static bool manual_tx(BenchThread *t, const BenchTransfer *x)
{
	bool prepared[BENCH_NPART] = {false, false};

	for (int p = 0; p < BENCH_NPART; p++) {
		if (!phase1(t, x, p, &prepared[p])) {
			for (int q = 0; q <= p; q++)
				undo(t, x, q, prepared[q]);
			return false;
		}
	}
	/* Both prepared: the decision is commit. A COMMIT PREPARED that fails
	 * (a lost connection) is retried; one that still fails leaves its
	 * branch prepared, which the check at the end reports. */
	bool ok = true;
	for (int p = 0; p < BENCH_NPART; p++) {
		if (!commit(t, x, p, 3)) {
			t->left_prepared++;
			ok = false;
		}
	}
	return ok;
}

int main(int argc, char **argv)
{
	static const BenchProgram prog = {
	    .name = "twopc-manual",
	    .usage_extra = "hand-written 2PC: BEGIN, UPDATE, PREPARE TRANSACTION on A, then on B, then COMMIT "
	                   "PREPARED on A, then on B; one statement at a time",
	    .tx = manual_tx,
	};
	return bench_main(&prog, argc, argv);
}
