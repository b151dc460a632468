/*
 * txn_phase2: phase 2 batched per participant.
 *
 * The COMMIT PREPAREDs of every transaction whose decision became durable
 * in the same group commit of the log (the completions of one batch,
 * delivered in one callback round) go to each participant in one pipeline,
 * with a Sync after each (COMMIT PREPARED refuses to run in a transaction
 * block, and an error must skip nothing after it), on one connection: the
 * phase-1 connection of one of them. The other phase-1 connections go back
 * to the pool at once. At most phase2_batch_max go in one pipeline; a lone
 * one (or every one, with phase2_batch_max = 1) is sent on its own
 * connection by branch_finish_op(), as without batching.
 *
 * PostgreSQL runs a batch's COMMIT PREPAREDs one after another on one
 * backend, each waiting for its WAL flush unless another backend's flush
 * covers it: batching trades commit time for pool wait
 * (docs/PERFORMANCE.md has the measurements).
 *
 * A batch with no answer within phase2_timeout_ms is dropped with its
 * connection, and every branch in it is retried on its own, its outcome
 * unknown ("does not exist" on the retry then means it committed).
 */
#include "txn_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"

struct Phase2Batch {
	PgJob job;
	Phase2 *owner;
	Pool *pool;
	PgConn *conn;
	int64_t started_us;
	size_t n;
	Branch **branches; /* branches[i] answers job.queries[i] */
	PgQuery *queries;
	char (*texts)[OP_SQL_MAX]; /* queries[i].sql */
	Phase2Batch *prev, *next; /* the owner's list of batches under way */
};

typedef struct Phase2Queue {
	Branch **v;
	size_t n, cap;
} Phase2Queue;

struct Phase2 {
	const Config *cfg;
	Histogram *hist;                 /* batch sizes (the manager's stats) */
	Phase2Queue q[MAX_PARTICIPANTS]; /* by participant: this round's COMMIT PREPAREDs */
	struct event *flush;             /* sends them, after the round's completions */
	Phase2Batch *batches;            /* under way */
};

static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128};

/* Queues b's COMMIT PREPARED for this round's batch to its participant;
 * b keeps its phase-1 connection until the batch is sent. */
void phase2_enqueue(Phase2 *m, Branch *b)
{
	Phase2Queue *q = &m->q[b->pindex];

	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->v = xrealloc(q->v, q->cap * sizeof(Branch *));
	}
	q->v[q->n++] = b;
	b->p2_queued = true;
	b->op_active = true;
	b->op_started_us = now_mono_us();
	txnmgr_wake(b->txn->mgr, b->op_started_us + m->cfg->phase2_timeout_ms * 1000);
	b->retry_at_us = 0;
	event_active(m->flush, 0, 0);
}

static void on_batch_job(PgJob *job, PgConn *conn, PgJobStatus st);

/* Sends one participant's queued COMMIT PREPAREDs. */
static void phase2_send(Phase2 *m, Phase2Queue *q)
{
	Phase2Batch *batch;
	PgConn *carrier = NULL;

	for (size_t i = 0; i < q->n; i++)
		q->v[i]->p2_queued = false;
	if (q->n == 0)
		return;
	if (q->n == 1 || m->cfg->phase2_batch_max <= 1) {
		/* Alone (or batching off): each on its own connection, as ever. */
		for (size_t i = 0; i < q->n; i++) {
			hist_observe(m->hist, 1);
			branch_finish_op(q->v[i]);
		}
		q->n = 0;
		return;
	}
	if (q->n > (size_t)m->cfg->phase2_batch_max) {
		/* Too many for one pipeline: the rest make the next batches. */
		Phase2Queue part = {.v = q->v, .n = (size_t)m->cfg->phase2_batch_max};
		Phase2Queue rest = {.v = q->v + part.n, .n = q->n - part.n};
		phase2_send(m, &part);
		phase2_send(m, &rest);
		q->n = 0;
		return;
	}
	hist_observe(m->hist, (double)q->n);
	batch = xcalloc(1, sizeof(*batch) + q->n * (sizeof(Branch *) + sizeof(PgQuery) + sizeof(PGresult *) + OP_SQL_MAX));
	batch->branches = (Branch **)(batch + 1);
	batch->queries = (PgQuery *)(batch->branches + q->n);
	batch->job.result_room = (PGresult **)(batch->queries + q->n);
	batch->texts = (char(*)[OP_SQL_MAX])(batch->job.result_room + q->n);
	batch->n = q->n;
	batch->pool = q->v[0]->pool;
	batch->owner = m;
	for (size_t i = 0; i < q->n; i++) {
		Branch *b = q->v[i];
		batch->branches[i] = b;
		batch->queries[i] = (PgQuery){.sql = branch_op_text(b, OP_COMMIT_PREPARED, batch->texts[i])};
		b->batch = batch;
		if (carrier == NULL)
			carrier = b->conn;
		else
			pool_release(b->pool, b->conn); /* idle since its PREPARE */
		b->conn = NULL;
	}
	q->n = 0;
	batch->conn = carrier;
	batch->started_us = now_mono_us();
	batch->job.queries = batch->queries;
	batch->job.nqueries = batch->n;
	batch->job.sync_each = true;
	batch->job.done = on_batch_job;
	batch->job.arg = batch;
	batch->next = m->batches;
	if (m->batches)
		m->batches->prev = batch;
	m->batches = batch;
	pgconn_run(carrier, &batch->job);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	Phase2 *m = arg;

	(void)fd;
	(void)what;
	for (size_t p = 0; p < m->cfg->nparticipants && p < MAX_PARTICIPANTS; p++) {
		if (m->q[p].n > 0)
			phase2_send(m, &m->q[p]);
	}
}

static void batch_unlink(Phase2 *m, Phase2Batch *batch)
{
	if (batch->prev)
		batch->prev->next = batch->next;
	else
		m->batches = batch->next;
	if (batch->next)
		batch->next->prev = batch->prev;
}

static void on_batch_job(PgJob *job, PgConn *conn, PgJobStatus st)
{
	Phase2Batch *batch = job->arg;
	Phase2 *m = batch->owner;

	batch_unlink(m, batch);
	pool_release(batch->pool, conn);
	for (size_t i = 0; i < batch->n; i++) {
		/* Each may free its transaction: nothing of b after this. */
		Branch *b = batch->branches[i];
		PGresult *r = i < job->nresults ? job->results[i] : NULL;
		b->batch = NULL;
		if (st == PGJOB_CONN_LOST &&
		    (r == NULL || (PQresultStatus(r) != PGRES_COMMAND_OK && pg_sqlstate(r)[0] == '\0')))
			finish_lost(b, job->sent, job->error); /* no answer of the server's own */
		else
			finish_answer(b, r);
	}
	pgjob_clear_results(job);
	free(batch);
}

/* No answer within phase2_timeout_ms (a partition): every COMMIT PREPARED
 * of the batch has an unknown outcome; each is retried on its own. */
static void batch_abandon(Phase2 *m, Phase2Batch *batch)
{
	batch_unlink(m, batch);
	pool_discard(batch->pool, batch->conn);
	pgjob_clear_results(&batch->job);
	for (size_t i = 0; i < batch->n; i++) {
		Branch *b = batch->branches[i];
		log_txn(LOG_WARNING, b->txn->id, "participant=%s no answer to COMMIT PREPARED (batch of %zu) in %lld ms; retrying",
		        b->name, batch->n, (long long)m->cfg->phase2_timeout_ms);
		b->batch = NULL;
		b->op_active = false;
		b->sent_unknown = true;
		schedule_retry(b);
	}
	free(batch);
}


Phase2 *phase2_new(struct event_base *base, const Config *cfg, Histogram *hist)
{
	Phase2 *m = xcalloc(1, sizeof(*m));

	m->cfg = cfg;
	m->hist = hist;
	hist_init(hist, batch_bounds, ARRAY_LEN(batch_bounds));
	m->flush = event_new(base, -1, 0, on_flush, m);
	if (m->flush == NULL)
		log_fatal("libevent: cannot allocate the phase-2 event");
	return m;
}

void phase2_tick(Phase2 *m, int64_t now)
{
	for (Phase2Batch *batch = m->batches, *next; batch; batch = next) {
		next = batch->next;
		if (now - batch->started_us > m->cfg->phase2_timeout_ms * 1000)
			batch_abandon(m, batch);
	}
}

void phase2_free(Phase2 *m)
{
	if (m == NULL)
		return;
	while (m->batches) {
		Phase2Batch *batch = m->batches;
		batch_unlink(m, batch);
		pool_discard(batch->pool, batch->conn);
		pgjob_clear_results(&batch->job);
		for (size_t i = 0; i < batch->n; i++)
			batch->branches[i]->batch = NULL;
		free(batch);
	}
	for (size_t p = 0; p < MAX_PARTICIPANTS; p++)
		free(m->q[p].v);
	if (m->flush)
		event_free(m->flush);
	free(m);
}
