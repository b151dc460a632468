/*
 * ops_api: metrics, the in-doubt view, recent aborts, and the explanation
 * of one transaction.
 */
#include "ops_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fanout.h"
#include "gid.h"
#include "idempotency.h"
#include "metrics.h"
#include "recovery.h"

#define OPS_QUERY_TIMEOUT_MS 5000

/* ---- GET /metrics ---------------------------------------------------------- */

static void part_label(char *buf, size_t len, const char *participant)
{
	buf[0] = '\0';
	metrics_label(buf, len, "participant", participant);
}

static void render_transactions(MetricsOut *o, const TxnMgrStats *ts)
{
	char l[256];

	metrics_family(o, "twopc_transactions_total", "counter", "Transactions finished, by outcome.");
	metrics_sample(o, "twopc_transactions_total", "outcome=\"committed\"", (double)ts->committed);
	metrics_sample(o, "twopc_transactions_total", "outcome=\"aborted\"", (double)ts->aborted);
	metrics_sample(o, "twopc_transactions_total", "outcome=\"unknown\"", (double)ts->unknown);
	metrics_family(o, "twopc_transaction_paths_total", "counter",
	               "Transactions finished, by path: two_phase (PREPARE, COMMIT record), one_phase (a single "
	               "participant, no Idempotency-Key: plain COMMIT), read_only (every branch wrote nothing).");
	for (int p = 0; p < TXN_NPATHS; p++) {
		l[0] = '\0';
		metrics_label(l, sizeof(l), "path", txn_path_name((TxnPath)p));
		metrics_sample(o, "twopc_transaction_paths_total", l, (double)ts->paths[p]);
	}
	metrics_family(o, "twopc_read_only_branches_total", "counter",
	               "Branches that wrote nothing: committed in phase 1, left out of phase 2.");
	metrics_sample(o, "twopc_read_only_branches_total", NULL, (double)ts->read_only_branches);
	metrics_family(o, "twopc_aborts_total", "counter", "Aborted transactions, by reason (the problem type).");
	for (int r = ABORT_STATEMENT; r < ABORT_NREASONS; r++) {
		l[0] = '\0';
		metrics_label(l, sizeof(l), "reason", abort_reason_slug((AbortReason)r));
		metrics_sample(o, "twopc_aborts_total", l, (double)ts->aborts[r]);
	}
	metrics_family(o, "twopc_in_flight", "gauge", "Transactions in flight (phase 1, deciding, or phase 2).");
	metrics_sample(o, "twopc_in_flight", NULL, (double)ts->in_flight);
	metrics_family(o, "twopc_transaction_duration_seconds", "histogram",
	               "Whole transactions, from the request to the end of phase 2 (or of the rollback).");
	metrics_histogram(o, "twopc_transaction_duration_seconds", NULL, &ts->total);
	metrics_family(o, "twopc_phase_duration_seconds", "histogram",
	               "Committed transactions by phase: prepare (phase 1), decide (COMMIT record to its fsync), "
	               "commit (phase 2).");
	metrics_histogram(o, "twopc_phase_duration_seconds", "phase=\"prepare\"", &ts->prepare);
	metrics_histogram(o, "twopc_phase_duration_seconds", "phase=\"decide\"", &ts->decide);
	metrics_histogram(o, "twopc_phase_duration_seconds", "phase=\"commit\"", &ts->commit);
	metrics_family(o, "twopc_phase2_batch_size", "histogram",
	               "COMMIT PREPAREDs sent together to one participant on one connection (phase 2 batching).");
	metrics_histogram(o, "twopc_phase2_batch_size", NULL, &ts->phase2_batch);
	metrics_family(o, "twopc_phase2_retries_total", "counter", "COMMIT/ROLLBACK PREPARED attempts retried.");
	metrics_sample(o, "twopc_phase2_retries_total", NULL, (double)ts->phase2_retries);
	metrics_family(o, "twopc_heuristic_hazards_total", "counter",
	               "Prepared branches that vanished in a way twopc cannot explain (decided outside twopc).");
	metrics_sample(o, "twopc_heuristic_hazards_total", NULL, (double)ts->heuristic_hazards);
}

static void render_dlog(MetricsOut *o, Dlog *dlog)
{
	DlogStats ds;

	dlog_get_stats(dlog, &ds);
	metrics_family(o, "twopc_dlog_fsync_duration_seconds", "histogram",
	               "fdatasync of each decision-log group commit.");
	metrics_histogram(o, "twopc_dlog_fsync_duration_seconds", NULL, &ds.fsync_seconds);
	metrics_family(o, "twopc_dlog_records_per_fsync", "histogram",
	               "Records made durable by each group commit (its batching).");
	metrics_histogram(o, "twopc_dlog_records_per_fsync", NULL, &ds.records_per_fsync);
	metrics_family(o, "twopc_dlog_segments_removed_total", "counter", "Decision-log segments deleted.");
	metrics_sample(o, "twopc_dlog_segments_removed_total", NULL, (double)ds.segments_removed);
	metrics_family(o, "twopc_dlog_carried_forward_total", "counter",
	               "Live records copied out of the oldest segment.");
	metrics_sample(o, "twopc_dlog_carried_forward_total", NULL, (double)ds.carried_forward);
}

static void render_participants(MetricsOut *o, const OpsContext *c, const TxnMgrStats *ts)
{
	const SweepPartReport *last = sweeper_last_report(c->sweeper);
	char l[256], l2[320];
	static const struct {
		const char *name, *help;
	} gauges[] = {
	    {"twopc_participant_up", "1 if the participant's pool can connect, else 0."},
	    {"twopc_participant_pool_size", "Configured pool size."},
	    {"twopc_participant_pool_open", "Pool connections open."},
	    {"twopc_participant_pool_busy", "Pool connections running a query."},
	    {"twopc_participant_pool_waiters", "Requests waiting for a pool connection."},
	};

	for (size_t g = 0; g < ARRAY_LEN(gauges); g++) {
		metrics_family(o, gauges[g].name, "gauge", gauges[g].help);
		for (size_t i = 0; i < c->cfg->nparticipants; i++) {
			PoolStats ps;
			double v;
			pool_get_stats(txnmgr_pool(c->mgr, i), &ps);
			v = g == 0 ? ps.reachable : g == 1 ? ps.size : g == 2 ? ps.open : g == 3 ? ps.busy : ps.waiters;
			part_label(l, sizeof(l), c->cfg->participants[i].name);
			metrics_sample(o, gauges[g].name, l, v);
		}
	}
	PgConnCounters pc;
	pgconn_get_counters(&pc);
	metrics_family(o, "twopc_statements_prepared_total", "counter",
	               "Statements twopcd prepared on participant connections (text seen twice on a connection).");
	metrics_sample(o, "twopc_statements_prepared_total", NULL, (double)pc.prepared);
	metrics_family(o, "twopc_statement_executions_total", "counter",
	               "Queries sent to participants, as a prepared statement or unnamed (parsed each time).");
	metrics_sample(o, "twopc_statement_executions_total", "kind=\"prepared\"", (double)pc.executed_prepared);
	metrics_sample(o, "twopc_statement_executions_total", "kind=\"unnamed\"", (double)pc.executed_unnamed);
	metrics_family(o, "twopc_participant_errors_total", "counter",
	               "Errors from a participant by SQLSTATE class (08 also counts lost or refused connections).");
	for (size_t i = 0; i < c->cfg->nparticipants && i < MAX_PARTICIPANTS; i++) {
		for (size_t k = 0; k < ERR_CLASS_SLOTS && ts->errors[i][k].cls[0]; k++) {
			part_label(l2, sizeof(l2), c->cfg->participants[i].name);
			metrics_label(l2, sizeof(l2), "sqlstate_class", ts->errors[i][k].cls);
			metrics_sample(o, "twopc_participant_errors_total", l2, (double)ts->errors[i][k].n);
		}
	}
	if (last == NULL)
		return;
	metrics_family(o, "twopc_participant_prepared", "gauge",
	               "Prepared transactions in the participant's database at the last sweep, ours or foreign.");
	for (size_t i = 0; i < c->cfg->nparticipants; i++) {
		if (!last[i].reachable)
			continue;
		part_label(l, sizeof(l), c->cfg->participants[i].name);
		snprintf(l2, sizeof(l2), "%s,owner=\"ours\"", l);
		metrics_sample(o, "twopc_participant_prepared", l2, (double)last[i].ours);
		snprintf(l2, sizeof(l2), "%s,owner=\"foreign\"", l);
		metrics_sample(o, "twopc_participant_prepared", l2, (double)last[i].foreign);
	}
	metrics_family(o, "twopc_participant_oldest_prepared_age_seconds", "gauge",
	               "Age of the oldest prepared transaction at the last sweep (0 if none).");
	for (size_t i = 0; i < c->cfg->nparticipants; i++) {
		if (!last[i].reachable)
			continue;
		part_label(l, sizeof(l), c->cfg->participants[i].name);
		metrics_sample(o, "twopc_participant_oldest_prepared_age_seconds", l, (double)last[i].oldest_age_s);
	}
	metrics_family(o, "twopc_participant_oldest_prepared_xid_age", "gauge",
	               "Transaction ids by which the oldest prepared transaction holds back the xmin horizon "
	               "(age(transaction) in pg_prepared_xacts) at the last sweep.");
	for (size_t i = 0; i < c->cfg->nparticipants; i++) {
		if (!last[i].reachable)
			continue;
		part_label(l, sizeof(l), c->cfg->participants[i].name);
		metrics_sample(o, "twopc_participant_oldest_prepared_xid_age", l, (double)last[i].oldest_xid_age);
	}
}

static void render_rest(MetricsOut *o, const OpsContext *c)
{
	SweeperStats ss;
	HttpServerStats hs;
	IdemStats is;

	sweeper_get_stats(c->sweeper, &ss);
	metrics_family(o, "twopc_sweeper_runs_total", "counter", "Sweeps finished.");
	metrics_sample(o, "twopc_sweeper_runs_total", NULL, (double)ss.runs);
	metrics_family(o, "twopc_sweeper_actions_total", "counter", "Prepared transactions the sweeper settled.");
	metrics_sample(o, "twopc_sweeper_actions_total", "action=\"commit\"", (double)ss.committed);
	metrics_sample(o, "twopc_sweeper_actions_total", "action=\"rollback\"", (double)ss.rolled_back);
	metrics_family(o, "twopc_prepared_xid_age_warning", "gauge",
	               "The configured prepared_xid_age_warning threshold.");
	metrics_sample(o, "twopc_prepared_xid_age_warning", NULL, (double)c->cfg->prepared_xid_age_warning);

	http_server_get_stats(c->server, &hs);
	metrics_family(o, "twopc_http_connections_open", "gauge", "Open HTTP connections.");
	metrics_sample(o, "twopc_http_connections_open", NULL, (double)hs.connections_open);
	metrics_family(o, "twopc_http_connections_total", "counter",
	               "HTTP connections accepted, and rejected past max_connections.");
	metrics_sample(o, "twopc_http_connections_total", "result=\"accepted\"", (double)hs.connections_accepted);
	metrics_sample(o, "twopc_http_connections_total", "result=\"rejected\"", (double)hs.connections_rejected);
	metrics_family(o, "twopc_http_requests_total", "counter", "HTTP requests read whole.");
	metrics_sample(o, "twopc_http_requests_total", NULL, (double)hs.requests);
	metrics_family(o, "twopc_http_protocol_errors_total", "counter",
	               "Requests refused by the HTTP layer itself (400, 408, 413, 431, 501, 505).");
	metrics_sample(o, "twopc_http_protocol_errors_total", NULL, (double)hs.protocol_errors);
	metrics_family(o, "twopc_http_buffered_bytes", "gauge",
	               "Bytes in HTTP connections' buffers: received but not yet read as a request (one arriving, "
	               "pipelined ones), or answered but not yet taken by the kernel.");
	metrics_sample(o, "twopc_http_buffered_bytes", NULL, (double)hs.buffered_bytes);

	idem_get_stats(txnmgr_idem(c->mgr), &is);
	metrics_family(o, "twopc_idempotency_keys", "gauge", "Idempotency-Keys remembered (in flight or finished).");
	metrics_sample(o, "twopc_idempotency_keys", NULL, (double)is.keys);
	metrics_family(o, "twopc_idempotency_bytes", "gauge", "Memory the remembered keys account for.");
	metrics_sample(o, "twopc_idempotency_bytes", NULL, (double)is.bytes);
	metrics_family(o, "twopc_idempotency_replays_total", "counter", "Responses replayed for a retried key.");
	metrics_sample(o, "twopc_idempotency_replays_total", NULL, (double)is.replays);
	metrics_family(o, "twopc_idempotency_refused_total", "counter",
	               "New keys refused because idempotency_max_bytes was used up.");
	metrics_sample(o, "twopc_idempotency_refused_total", NULL, (double)is.refused);
}

char *ops_metrics(const OpsContext *c, size_t *len)
{
	MetricsOut o = {0};
	TxnMgrStats ts;

	txnmgr_get_stats(c->mgr, &ts);
	render_transactions(&o, &ts);
	render_dlog(&o, c->dlog);
	render_participants(&o, c, &ts);
	render_rest(&o, c);
	*len = o.n;
	return o.p;
}

/* ---- GET /v1/recent-aborts --------------------------------------------------- */

static json_t *json_time(int64_t wall_ms)
{
	time_t s = (time_t)(wall_ms / 1000);
	struct tm tm;
	char buf[40];

	gmtime_r(&s, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ".%03dZ", (int)(wall_ms % 1000));
	return json_string(buf);
}

static json_t *json_str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

json_t *ops_recent_aborts(const OpsContext *c)
{
	RecentAbort *ra = xcalloc(RECENT_ABORTS, sizeof(RecentAbort));
	size_t n = txnmgr_recent_aborts(c->mgr, ra, RECENT_ABORTS);
	json_t *arr = json_array(), *body = json_object();

	for (size_t i = 0; i < n; i++) {
		json_t *a = json_object();
		char id[TXN_ID_HEX + 1];
		txn_id_format(id, ra[i].id);
		json_object_set_new(a, "id", json_string(id));
		json_object_set_new(a, "at", json_time(ra[i].wall_ms));
		json_object_set_new(a, "reason", json_string(abort_reason_slug(ra[i].reason)));
		json_object_set_new(a, "participant", json_str_or_null(ra[i].participant));
		json_object_set_new(a, "sqlstate", json_str_or_null(ra[i].sqlstate));
		json_object_set_new(a, "message", json_string(ra[i].message));
		json_array_append_new(arr, a);
	}
	free(ra);
	json_object_set_new(body, "aborts", arr);
	return body;
}

/* ---- GET /v1/in-doubt ---------------------------------------------------------- */

#define PREPARED_QUERY                                                                                                 \
	"SELECT gid, owner, database, COALESCE(extract(epoch FROM now() - prepared), 0)::bigint, "                     \
	"age(transaction)::bigint FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared"

typedef struct InDoubt {
	OpsContext ctx;
	json_t *parts;
	OpsJsonFn done;
	void *arg;
} InDoubt;

static const char *decision_slug(DlogDecision d)
{
	switch (d) {
	case DLOG_COMMITTED:
		return "committed";
	case DLOG_HEURISTIC_COMMIT:
		return "heuristic_commit";
	case DLOG_HEURISTIC_ABORT:
		return "heuristic_abort";
	case DLOG_PRESUMED_ABORT:
		break;
	}
	return "presumed_abort";
}

/* One row of pg_prepared_xacts, with the log's word on it and what the
 * sweeper will do about it (the sweeper's own rules, see sweeper.h). */
static json_t *prepared_row(const OpsContext *c, const PGresult *r, int i)
{
	json_t *o = json_object();
	const char *gid = PQgetvalue(r, i, 0);
	long long age_s = atoll(PQgetvalue(r, i, 3));
	uint64_t txn = 0;
	DlogDecision d = DLOG_PRESUMED_ABORT;
	XactAction a = recovery_classify(c->cfg, c->dlog, gid, &txn, &d);
	const char *action, *why;
	char id[TXN_ID_HEX + 1];

	json_object_set_new(o, "gid", json_string(gid));
	json_object_set_new(o, "ours", json_boolean(a != XACT_LEAVE));
	json_object_set_new(o, "owner", json_string(PQgetvalue(r, i, 1)));
	json_object_set_new(o, "database", json_string(PQgetvalue(r, i, 2)));
	json_object_set_new(o, "age_s", json_integer(age_s));
	json_object_set_new(o, "xid_age", json_integer(atoll(PQgetvalue(r, i, 4))));
	if (a == XACT_LEAVE) {
		json_object_set_new(o, "txn_id", json_null());
		json_object_set_new(o, "decision", json_null());
		action = "none";
		why = "not ours (another coordinator or an application): never touched; resolve it where it came from";
	} else {
		txn_id_format(id, txn);
		json_object_set_new(o, "txn_id", json_string(id));
		if (txnmgr_is_in_flight(c->mgr, txn)) {
			json_object_set_new(o, "decision", json_string("in_flight"));
			action = "wait";
			why = "in flight: its transaction is being decided or finished right now";
		} else {
			json_object_set_new(o, "decision", json_string(decision_slug(d)));
			if (age_s * 1000 < c->cfg->sweep_grace_ms) {
				action = "wait";
				why = "younger than sweep_grace_ms: the next sweeps settle it by the log";
			} else if (a == XACT_COMMIT) {
				action = "commit";
				why = "the log says commit: the next sweep runs COMMIT PREPARED";
			} else {
				action = "rollback";
				why = d == DLOG_HEURISTIC_ABORT ? "an operator aborted it: the next sweep runs ROLLBACK PREPARED"
				                                : "no COMMIT record (presumed abort): the next sweep runs "
				                                  "ROLLBACK PREPARED";
			}
		}
	}
	json_object_set_new(o, "sweeper_action", json_string(action));
	json_object_set_new(o, "why", json_string(why));
	return o;
}

static void in_doubt_each(size_t slot, const PGresult *r, const char *err, void *arg)
{
	InDoubt *q = arg;
	json_t *p = json_object(), *rows = json_array();
	long long oldest = 0;

	json_object_set_new(p, "reachable", json_boolean(r != NULL));
	if (r == NULL) {
		json_object_set_new(p, "error", json_string(err));
	} else {
		for (int i = 0; i < PQntuples(r); i++) {
			long long xa = atoll(PQgetvalue(r, i, 4));
			oldest = xa > oldest ? xa : oldest;
			json_array_append_new(rows, prepared_row(&q->ctx, r, i));
		}
	}
	json_object_set_new(p, "oldest_xid_age", json_integer(oldest));
	json_object_set_new(p, "prepared", rows);
	json_object_set_new(q->parts, q->ctx.cfg->participants[slot].name, p);
}

static void in_doubt_done(void *arg)
{
	InDoubt *q = arg;
	json_t *body = json_object();

	json_object_set_new(body, "participants", q->parts);
	q->done(body, q->arg);
	free(q);
}

static Pool **all_pools(const OpsContext *c)
{
	Pool **pools = xcalloc(c->cfg->nparticipants ? c->cfg->nparticipants : 1, sizeof(Pool *));
	for (size_t i = 0; i < c->cfg->nparticipants; i++)
		pools[i] = txnmgr_pool(c->mgr, i);
	return pools;
}

void ops_in_doubt(const OpsContext *c, OpsJsonFn done, void *arg)
{
	InDoubt *q = xcalloc(1, sizeof(*q));
	Pool **pools = all_pools(c);

	q->ctx = *c;
	q->parts = json_object();
	q->done = done;
	q->arg = arg;
	fanout_run(c->base, pools, c->cfg->nparticipants, PREPARED_QUERY, 0, NULL, OPS_QUERY_TIMEOUT_MS, in_doubt_each,
	           in_doubt_done, q);
	free(pools);
}

/* ---- GET /v1/transactions/{id} ---------------------------------------------------- */

typedef struct Explain {
	OpsContext ctx;
	uint64_t id;
	json_t *body;
	json_t *branches; /* one per participant that may hold a branch */
	OpsJsonFn done;
	void *arg;
} Explain;

static json_t *record_json(const DlogRecord *rec)
{
	json_t *o = json_object(), *br = json_array();

	json_object_set_new(o, "decided_at", json_time(rec->wall_ms));
	for (uint16_t i = 0; i < rec->nbranches; i++) {
		json_t *b = json_object();
		json_object_set_new(b, "participant", json_string(rec->branches[i].name));
		json_object_set_new(b, "index", json_integer(rec->branches[i].index));
		json_array_append_new(br, b);
	}
	json_object_set_new(o, "branches", br);
	if (rec->type == DLOG_HEURISTIC) {
		json_object_set_new(o, "heuristic", json_string(rec->heuristic_commit ? "commit" : "abort"));
		json_object_set_new(o, "gid", json_string(rec->gid));
	}
	if (rec->idem != NULL)
		json_object_set_new(o, "idempotency_key", json_string(rec->idem->key));
	return o;
}

static void explain_each(size_t slot, const PGresult *r, const char *err, void *arg)
{
	Explain *e = arg;
	json_t *b = json_object();
	const ParticipantConfig *pc = &e->ctx.cfg->participants[slot];
	char gid[GID_MAX];

	if (!gid_build(gid, sizeof(gid), e->ctx.cfg->coord_id, e->id, pc->index))
		gid[0] = '\0';
	json_object_set_new(b, "participant", json_string(pc->name));
	json_object_set_new(b, "gid", json_string(gid));
	if (r == NULL) {
		json_object_set_new(b, "live", json_string("unreachable"));
		json_object_set_new(b, "error", json_string(err));
	} else if (PQntuples(r) > 0) {
		json_object_set_new(b, "live", json_string("prepared"));
		json_object_set_new(b, "age_s", json_integer(atoll(PQgetvalue(r, 0, 3))));
		json_object_set_new(b, "xid_age", json_integer(atoll(PQgetvalue(r, 0, 4))));
	} else {
		/* Not prepared: committed, rolled back, or never prepared. */
		json_object_set_new(b, "live", json_string("not_prepared"));
	}
	json_array_append_new(e->branches, b);
}

static void explain_done(void *arg)
{
	Explain *e = arg;

	json_object_set_new(e->body, "branches", e->branches);
	e->done(e->body, e->arg);
	free(e);
}

void ops_explain(const OpsContext *c, uint64_t id, OpsJsonFn done, void *arg)
{
	static const char *const status_names[] = {
	    [TXS_UNKNOWN] = "unknown",
	    [TXS_IN_PROGRESS] = "in_progress",
	    [TXS_COMMITTED] = "committed",
	    [TXS_ABORTED] = "aborted",
	};
	Explain *e = xcalloc(1, sizeof(*e));
	json_t *log = json_object();
	const DlogRecord *commit = dlog_find_commit(c->dlog, id), *heur = dlog_find_heuristic(c->dlog, id);
	const Txn *t = txnmgr_find(c->mgr, id);
	char idhex[TXN_ID_HEX + 1], gid[GID_MAX];
	Pool **pools;

	e->ctx = *c;
	e->id = id;
	e->done = done;
	e->arg = arg;
	e->body = json_object();
	e->branches = json_array();
	txn_id_format(idhex, id);
	json_object_set_new(e->body, "id", json_string(idhex));
	json_object_set_new(e->body, "status", json_string(status_names[txnmgr_status(c->mgr, id)]));
	if (commit == NULL && heur == NULL && txnmgr_status(c->mgr, id) == TXS_COMMITTED) {
		TxnPath path = TXN_PATH_TWO_PHASE;
		const char *note = "phase 2 finished; the log no longer holds its records";
		/* Finished: the log let go of its records after phase 2, or never
		 * had one (nothing to log). */
		if (txnmgr_path(c->mgr, id, &path) && path == TXN_PATH_ONE_PHASE)
			note = "one-phase commit (a single participant): never logged";
		else if (path == TXN_PATH_READ_ONLY)
			note = "every branch was read-only: committed in phase 1";
		json_object_set_new(log, "decision", json_string("committed"));
		json_object_set_new(log, "note", json_string(note));
	} else {
		json_object_set_new(log, "decision", json_string(decision_slug(dlog_decision(c->dlog, id))));
	}
	json_object_set_new(log, "commit_record", commit ? record_json(commit) : json_null());
	json_object_set_new(log, "heuristic_record", heur ? record_json(heur) : json_null());
	json_object_set_new(e->body, "log", log);
	if (t != NULL) {
		json_t *f = json_object(), *bs = json_array();
		json_object_set_new(f, "state", json_string(txn_state_name(t->state)));
		for (size_t i = 0; i < t->nbranches; i++) {
			json_t *b = json_object();
			json_object_set_new(b, "participant", json_string(t->branches[i].name));
			json_object_set_new(b, "state", json_string(branch_state_name(t->branches[i].state)));
			json_array_append_new(bs, b);
		}
		json_object_set_new(f, "branches", bs);
		json_object_set_new(e->body, "in_flight", f);
	}
	/* Look for a branch on every participant: the COMMIT record (if any)
	 * names them, but an aborted transaction has none, and the GID says
	 * where each branch would be. */
	pools = all_pools(c);
	if (!gid_build(gid, sizeof(gid), c->cfg->coord_id, id, 0))
		gid[0] = '\0';
	{
		/* The GIDs differ by participant index only: match the prefix. */
		char like[2 * GID_MAX + 8];
		size_t n = strlen(gid), o = 0;
		while (n > 0 && gid[n - 1] != '_')
			n--;
		for (size_t i = 0; i < n; i++) {
			if (gid[i] == '_' || gid[i] == '%' || gid[i] == '\\')
				like[o++] = '\\'; /* LIKE's escape: '_' is a wildcard */
			like[o++] = gid[i];
		}
		like[o++] = '%';
		like[o] = '\0';
		const char *params[1] = {like};
		fanout_run(c->base, pools, c->cfg->nparticipants,
		           "SELECT gid, owner, database, COALESCE(extract(epoch FROM now() - prepared), 0)::bigint, "
		           "age(transaction)::bigint FROM pg_prepared_xacts WHERE database = current_database() "
		           "AND gid LIKE $1",
		           1, params, OPS_QUERY_TIMEOUT_MS, explain_each, explain_done, e);
	}
	free(pools);
}
