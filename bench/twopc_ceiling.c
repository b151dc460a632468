/*
 * twopc-ceiling: the participants' ceiling for 2-participant transfers:
 * what two-phase commit costs PostgreSQL itself, with zero coordinator
 * cost — no decision log, no HTTP, no JSON, no per-transaction settings.
 * Each connection is in libpq pipeline mode, non-blocking; both
 * participants are in flight at once (PQsocket + poll):
 *
 *     A and B at once:  BEGIN; EXECUTE debit-or-credit; PREPARE TRANSACTION 'gid'; Sync
 *     A and B at once:  COMMIT PREPARED 'gid'; Sync
 *
 * Two round trips per transfer, the least 2PC can do. twopcd sends the
 * same pipelines plus a set_config of the branch's timeouts, and fsyncs a
 * decision record between the two phases; the difference between this and
 * twopcd is the coordinator's cost.
 *
 * The UPDATE is a prepared statement (PQprepare once per connection,
 * PQsendQueryPrepared). BEGIN, PREPARE TRANSACTION and COMMIT PREPARED
 * cannot be: utility statements take no parameters, so the GID is part of
 * the text; they go through PQsendQueryParams without parameters (pipeline
 * mode uses the extended protocol for everything; an unnamed statement).
 *
 * On an error: ROLLBACK where the transaction block failed, ROLLBACK
 * PREPARED where the branch prepared. The lock_timeout of the session
 * (-l, 1 s like twopcd's default) breaks the deadlocks that span the two
 * participants, which neither PostgreSQL can see.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "benchclient.h"

#define MAX_RESULTS 4
#define WAIT_MS     30000

typedef struct Res {
	ExecStatusType st;
	bool one_row; /* command tuples "1" */
	char tag[32]; /* command status */
} Res;

typedef struct Part {
	bool active; /* something was sent and its Sync is awaited */
	bool failed; /* the connection broke or nothing came back in time */
	int n;       /* results collected before the Sync */
	Res res[MAX_RESULTS];
} Part;

static bool enter_pipeline(BenchThread *t, int part)
{
	if (PQsetnonblocking(t->conn[part], 1) != 0 || PQenterPipelineMode(t->conn[part]) != 1) {
		bench_error(t, "pipeline mode", t->conn[part], NULL);
		return false;
	}
	return true;
}

/* Reads what has arrived on part; marks it done (inactive) at its Sync. */
static void drain(BenchThread *t, int p, Part *pt)
{
	PGconn *c = t->conn[p];
	int nulls = 0;

	if (!PQconsumeInput(c)) {
		bench_error(t, "connection", c, NULL);
		pt->failed = true;
		pt->active = false;
		return;
	}
	while (pt->active && !PQisBusy(c)) {
		PGresult *r = PQgetResult(c);
		if (r == NULL) {
			/* the end of one query's results; twice: nothing more yet */
			if (++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			pt->active = false;
		} else if (pt->n < MAX_RESULTS) {
			Res *res = &pt->res[pt->n++];
			res->st = st;
			res->one_row = strcmp(PQcmdTuples(r), "1") == 0;
			snprintf(res->tag, sizeof(res->tag), "%s", PQcmdStatus(r));
			if (st != PGRES_COMMAND_OK && st != PGRES_PIPELINE_ABORTED)
				bench_error(t, "statement", c, r);
		}
		PQclear(r);
	}
}

/* Flushes and waits until every active participant's Sync came back, both
 * sockets watched at once. */
static void wait_all(BenchThread *t, Part pt[BENCH_NPART])
{
	int64_t until = bench_now_us() + (int64_t)WAIT_MS * 1000;
	for (;;) {
		struct pollfd fds[BENCH_NPART];
		int map[BENCH_NPART], nfds = 0;
		for (int p = 0; p < BENCH_NPART; p++) {
			if (!pt[p].active)
				continue;
			int f = PQflush(t->conn[p]);
			if (f < 0) {
				bench_error(t, "send", t->conn[p], NULL);
				pt[p].failed = true;
				pt[p].active = false;
				continue;
			}
			fds[nfds].fd = PQsocket(t->conn[p]);
			fds[nfds].events = POLLIN | (f == 1 ? POLLOUT : 0);
			fds[nfds].revents = 0;
			map[nfds++] = p;
		}
		if (nfds == 0)
			return;
		int left = (int)((until - bench_now_us()) / 1000);
		if (left <= 0 || poll(fds, (nfds_t)nfds, left) == 0) {
			for (int i = 0; i < nfds; i++) {
				bench_error(t, "no answer within 30 s", NULL, NULL);
				pt[map[i]].failed = true;
				pt[map[i]].active = false;
				/* the pipeline is out of step: start over */
				PQfinish(t->conn[map[i]]);
				t->conn[map[i]] = NULL;
				(void)bench_connect(t, map[i]);
			}
			return;
		}
		for (int i = 0; i < nfds; i++) {
			if (fds[i].revents & (POLLIN | POLLERR | POLLHUP))
				drain(t, map[i], &pt[map[i]]);
		}
	}
}

static bool send_one(BenchThread *t, int p, const char *sql)
{
	return PQsendQueryParams(t->conn[p], sql, 0, NULL, NULL, NULL, NULL, 0) == 1;
}

/* Sends sql[p] (where non-NULL) to each participant at once and waits;
 * ok[p]: the statement succeeded. A broken connection is made anew first:
 * a prepared branch outlives its session. */
static void parallel(BenchThread *t, const char *const sql[BENCH_NPART], bool ok[BENCH_NPART])
{
	Part pt[BENCH_NPART];
	memset(pt, 0, sizeof(pt));
	for (int p = 0; p < BENCH_NPART; p++) {
		ok[p] = false;
		if (sql[p] == NULL)
			continue;
		if (PQstatus(t->conn[p]) != CONNECTION_OK && !bench_connect(t, p))
			continue;
		if (!send_one(t, p, sql[p]) || PQpipelineSync(t->conn[p]) != 1) {
			bench_error(t, "send", t->conn[p], NULL);
			continue;
		}
		pt[p].active = true;
	}
	wait_all(t, pt);
	for (int p = 0; p < BENCH_NPART; p++)
		ok[p] = sql[p] != NULL && !pt[p].failed && pt[p].n == 1 && pt[p].res[0].st == PGRES_COMMAND_OK;
}

static bool ceiling_tx(BenchThread *t, const BenchTransfer *x)
{
	char prepare[128], finish[BENCH_NPART][128];
	const char *sql[BENCH_NPART];
	bool prepared[BENCH_NPART], ok[BENCH_NPART], all = true;
	Part pt[BENCH_NPART];

	/* Phase 1: one pipeline to each participant, both in flight. */
	memset(pt, 0, sizeof(pt));
	snprintf(prepare, sizeof(prepare), "PREPARE TRANSACTION '%s'", x->gid);
	for (int p = 0; p < BENCH_NPART; p++) {
		const char *params[2] = {"1", x->account[p]};
		PGconn *c = t->conn[p];
		if (!send_one(t, p, "BEGIN") ||
		    PQsendQueryPrepared(c, bench_stmt(x, p), 2, params, NULL, NULL, 0) != 1 ||
		    !send_one(t, p, prepare) || PQpipelineSync(c) != 1) {
			bench_error(t, "send", c, NULL);
			pt[p].failed = true;
			continue;
		}
		pt[p].active = true;
	}
	wait_all(t, pt);
	for (int p = 0; p < BENCH_NPART; p++) {
		/* A PREPARE TRANSACTION of a failed block answers ROLLBACK. */
		prepared[p] = !pt[p].failed && pt[p].n == 3 && pt[p].res[2].st == PGRES_COMMAND_OK &&
		              strcmp(pt[p].res[2].tag, "PREPARE TRANSACTION") == 0;
		bool good = prepared[p] && pt[p].res[0].st == PGRES_COMMAND_OK && pt[p].res[1].st == PGRES_COMMAND_OK &&
		            pt[p].res[1].one_row;
		if (prepared[p] && !good)
			bench_error(t, "UPDATE did not change exactly 1 row", NULL, NULL);
		all = all && good;
	}

	/* Phase 2: COMMIT PREPARED to both at once; or undo what phase 1 left. */
	for (int p = 0; p < BENCH_NPART; p++) {
		sql[p] = NULL;
		if (all || prepared[p]) {
			snprintf(finish[p], sizeof(finish[p]), "%s PREPARED '%s'", all ? "COMMIT" : "ROLLBACK", x->gid);
			sql[p] = finish[p];
		} else if (PQstatus(t->conn[p]) == CONNECTION_OK && PQtransactionStatus(t->conn[p]) != PQTRANS_IDLE) {
			sql[p] = "ROLLBACK";
		}
	}
	parallel(t, sql, ok);
	/* Where phase 2 failed (a lost connection), try again: once one branch
	 * committed, the other must too. */
	for (int attempt = 0; attempt < 3; attempt++) {
		bool again = false;
		for (int p = 0; p < BENCH_NPART; p++) {
			if (sql[p] != NULL && !ok[p] && sql[p] == finish[p])
				again = true;
			else
				sql[p] = NULL;
		}
		if (!again)
			break;
		parallel(t, sql, ok);
	}
	for (int p = 0; p < BENCH_NPART; p++) {
		if (sql[p] != NULL && sql[p] == finish[p] && !ok[p]) {
			t->left_prepared++; /* the check at the end of the run reports it */
			all = false;
		}
	}
	return all;
}

int main(int argc, char **argv)
{
	static const BenchProgram prog = {
	    .name = "twopc-ceiling",
	    .usage_extra = "the participants' ceiling: BEGIN + UPDATE + PREPARE TRANSACTION pipelined to both at "
	                   "once, then COMMIT PREPARED to both at once; no log, no HTTP",
	    .tx = ceiling_tx,
	    .after_connect = enter_pipeline,
	};
	return bench_main(&prog, argc, argv);
}
