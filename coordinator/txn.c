/*
 * txn: the two-phase-commit state machine.
 *
 * Durability ordering, which everything here serves:
 *   1. A transaction enters the in-flight table before any query is sent.
 *   2. The COMMIT record is appended only after EVERY branch answered
 *      PREPARE TRANSACTION successfully.
 *   3. Nothing says "committed" — no reply, no COMMIT PREPARED — before the
 *      log thread reports the record fsync'ed (txn_on_commit_durable).
 *   4. Abort needs no record (presumed abort): recovery rolls back every
 *      prepared branch of ours that has no COMMIT record.
 *   5. The DONE record is appended only after every COMMIT PREPARED
 *      succeeded (or found the branch already committed).
 *
 * Read-only branches (phase 1's SELECT txid_current_if_assigned() said
 * NULL: no write, no row lock) get COMMIT PREPARED at once, before the
 * decision: their outcome changes nothing anyone can see. They are not in
 * an unkeyed COMMIT record, and a transaction whose branches are all
 * read-only logs nothing. A crash that leaves one prepared is harmless:
 * recovery and the sweeper roll it back (no record) or commit it (the
 * record of its transaction), and either is the same.
 *
 * One-phase commit (one participant, no Idempotency-Key) is in
 * txn_onephase.c; it shares this state machine. Phase 1 of a branch is in
 * txn_phase1.c; COMMIT/ROLLBACK PREPARED, the rollback, phase 2 and the
 * transaction's end in txn_finish.c, phase-2 batches in txn_phase2.c.
 *
 * One periodic timer (txn_tick.c) enforces deadlines, fires retries and
 * runs the pools' housekeeping; there is no timer per transaction. It walks
 * the in-flight transactions only when something is due (the earliest
 * deadline, retry or timeout, kept in next_walk_us by txnmgr_wake() and by
 * each walk) and at least once a second: with 10,000 transactions in
 * flight it no longer visits them all every 20 ms.
 */
#include "txn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "fault.h"
#include "log.h"
#include "txn_int.h"

#define RECENT_OUTCOMES 65536

const char *txn_path_name(TxnPath p)
{
	switch (p) {
	case TXN_PATH_TWO_PHASE:
		return "two_phase";
	case TXN_PATH_ONE_PHASE:
		return "one_phase";
	case TXN_PATH_READ_ONLY:
		return "read_only";
	case TXN_NPATHS:
		break;
	}
	return "?";
}

static TxnPath txn_path(const Txn *t)
{
	if (t->one_phase)
		return TXN_PATH_ONE_PHASE;
	if (t->nbranches > 0 && t->nread_only == t->nbranches)
		return TXN_PATH_READ_ONLY;
	return TXN_PATH_TWO_PHASE;
}

const char *txn_state_name(TxnState s)
{
	switch (s) {
	case TXN_PREPARING:
		return "preparing";
	case TXN_DECIDING:
		return "deciding";
	case TXN_COMMITTING:
		return "committing";
	case TXN_ABORTING:
		return "aborting";
	case TXN_FINISHED:
		return "finished";
	}
	return "?";
}

void txn_set_state(Txn *t, TxnState to)
{
	bool ok;
	switch (to) {
	case TXN_DECIDING:
		ok = t->state == TXN_PREPARING;
		break;
	case TXN_COMMITTING:
		/* Straight from phase 1 only when there is nothing to log: every
		 * branch read-only and no key. */
		ok = t->state == TXN_DECIDING || t->state == TXN_COMMITTING ||
		     (t->state == TXN_PREPARING && t->committed && !t->logged && !t->one_phase);
		break;
	case TXN_ABORTING:
		/* One-phase: DECIDING is PostgreSQL's COMMIT, which can fail. */
		ok = t->state == TXN_PREPARING || (t->state == TXN_DECIDING && t->one_phase);
		break;
	case TXN_FINISHED:
		ok = t->state == TXN_COMMITTING || t->state == TXN_ABORTING ||
		     (t->state == TXN_DECIDING && t->one_phase && t->outcome_unknown);
		break;
	default:
		ok = false;
	}
	if (!ok)
		log_fatal("txn=%s: impossible state change %s -> %s", t->id_hex, txn_state_name(t->state),
		          txn_state_name(to));
	log_txn(LOG_DEBUG, t->id, "%s -> %s", txn_state_name(t->state), txn_state_name(to));
	t->state = to;
}

/* ---- the in-flight table ------------------------------------------------ */

static void inflight_add(TxnMgr *m, Txn *t)
{
	t->next = m->head;
	t->prev = NULL;
	if (m->head)
		m->head->prev = t;
	m->head = t;
	idmap_put(&m->inflight, t->id, t);
	m->ninflight++;
}

static void inflight_remove(TxnMgr *m, Txn *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		m->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	idmap_del(&m->inflight, t->id);
	m->ninflight--;
}

/* A recent outcome is stored as status | path << 4 (never 0: the status is
 * committed or aborted). */
static void recent_add(TxnMgr *m, uint64_t id, TxnStatus st, TxnPath path)
{
	uint64_t old = m->recent_ring[m->recent_pos];
	if (old != 0)
		idmap_del(&m->recent, old);
	m->recent_ring[m->recent_pos] = id;
	m->recent_pos = (m->recent_pos + 1) % RECENT_OUTCOMES;
	idmap_put(&m->recent, id, (void *)(uintptr_t)((unsigned)st | (unsigned)path << 4));
}

/* ---- creation and destruction ------------------------------------------- */

static void txn_free(Txn *t)
{
	for (size_t i = 0; i < t->nbranches; i++) {
		Branch *b = &t->branches[i];
		if (b->held_conn != NULL) /* the fault test's abandoned connection */
			pool_discard(b->pool, b->held_conn);
		branch_op_end(b);
		free(b->results);
	}
	request_free(&t->req);
	if (t->idem != NULL) /* not reached in practice: replies hand it over */
		idem_release(t->mgr->idem, t->idem);
	free(t->idem_response);
	free(t->message);
	free(t);
}

/* One allocation: the Txn and its branches. */
static Txn *txn_alloc(size_t nbranches)
{
	Txn *t = xcalloc(1, sizeof(Txn) + nbranches * sizeof(Branch));

	t->branches = (Branch *)(t + 1);
	t->nbranches = nbranches;
	t->fail_branch = -1;
	t->fail_stmt = -1;
	t->start_us = now_mono_us();
	return t;
}

BranchOp *branch_op_new(Branch *b, size_t nqueries, PgJobDoneFn done)
{
	BranchOp *op;

	branch_op_end(b);
	op = xcalloc(1, sizeof(BranchOp) + nqueries * (sizeof(PgQuery) + sizeof(PGresult *)));
	op->job.queries = op->queries;
	op->job.result_room = (PGresult **)(op->queries + nqueries);
	op->job.done = done;
	op->job.arg = b;
	op->q_stmt0 = op->q_xid = op->q_prepare = NO_QUERY;
	b->op = op;
	return op;
}

void branch_op_end(Branch *b)
{
	if (b->op == NULL)
		return;
	pgjob_clear_results(&b->op->job);
	free(b->op);
	b->op = NULL;
}

void branch_drop_conn(Branch *b)
{
	pool_discard(b->pool, b->conn);
	b->conn = NULL;
	b->op_active = false;
	branch_op_end(b);
}

/* "<verb><GID><close>" (gid_write(): no strlen of the constant pieces;
 * twice per branch, PREPARE and COMMIT PREPARED). */
static const char *gid_text(const Branch *b, const char *verb, size_t vlen, bool quote, char *buf)
{
	const TxnMgr *m = b->txn->mgr;
	char *p = buf;

	memcpy(p, verb, vlen);
	p += vlen;
	p += gid_write(p, m->gid_prefix, m->gid_prefix_len, b->txn->id_hex, b->pindex);
	if (quote)
		*p++ = '\'';
	*p = '\0';
	return buf;
}

const char *branch_op_text(const Branch *b, BranchOpKind kind, char *buf)
{
	static const struct {
		const char *text;
		size_t len;
	} verbs[] = {
	    [OP_PREPARE] = {"PREPARE TRANSACTION '", 21},
	    [OP_COMMIT_PREPARED] = {"COMMIT PREPARED '", 17},
	    [OP_ROLLBACK_PREPARED] = {"ROLLBACK PREPARED '", 19},
	};
	return gid_text(b, verbs[kind].text, verbs[kind].len, true, buf);
}

const char *branch_gid(const Branch *b, char *buf)
{
	return gid_text(b, "", 0, false, buf);
}

void txn_set_message(Txn *t, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(t->message);
	t->message = xstrdup(buf);
}

void txn_reply(Txn *t)
{
	if (t->replied)
		return;
	t->replied = true;
	if (t->idem != NULL && !t->durable) {
		/* Aborted: nothing was committed, so a retry may run again. */
		idem_release(t->mgr->idem, t->idem);
		t->idem = NULL;
	}
	if (t->reply)
		t->reply(t, t->reply_arg);
}

static void note_abort(TxnMgr *m, const Txn *t)
{
	RecentAbort *a = &m->recent_aborts[m->recent_aborts_next];

	m->recent_aborts_next = (m->recent_aborts_next + 1) % RECENT_ABORTS;
	if (m->recent_aborts_n < RECENT_ABORTS)
		m->recent_aborts_n++;
	memset(a, 0, sizeof(*a));
	a->id = t->id;
	a->wall_ms = now_wall_ms();
	a->reason = t->reason;
	if (t->fail_branch >= 0)
		strlcpy_s(a->participant, t->branches[t->fail_branch].name, sizeof(a->participant));
	strlcpy_s(a->sqlstate, t->sqlstate, sizeof(a->sqlstate));
	strlcpy_s(a->message, txn_message(t), sizeof(a->message));
}

size_t txnmgr_recent_aborts(const TxnMgr *m, RecentAbort *out, size_t max)
{
	size_t n = m->recent_aborts_n < max ? m->recent_aborts_n : max;

	for (size_t i = 0; i < n; i++)
		out[i] = m->recent_aborts[(m->recent_aborts_next + RECENT_ABORTS - 1 - i) % RECENT_ABORTS];
	return n;
}

const char *abort_reason_slug(AbortReason r)
{
	switch (r) {
	case ABORT_STATEMENT:
		return "statement-failed";
	case ABORT_EXPECT_ROWS:
		return "expect-rows";
	case ABORT_PREPARE:
		return "prepare-failed";
	case ABORT_TIMEOUT:
		return "timeout";
	case ABORT_SHUTDOWN:
		return "shutting-down";
	case ABORT_UNAVAILABLE:
	case ABORT_NONE:
	case ABORT_NREASONS:
		break;
	}
	return "participant-unavailable";
}

/* Counts a participant's error under its SQLSTATE class. */
static void count_error(TxnMgr *m, unsigned pindex, const char *sqlstate)
{
	char cls[3] = {'0', '8', '\0'}; /* no SQLSTATE: the connection failed */
	ErrClassCount *slots;

	if (pindex >= MAX_PARTICIPANTS)
		return;
	if (sqlstate != NULL && strlen(sqlstate) == 5)
		cls[0] = sqlstate[0], cls[1] = sqlstate[1];
	slots = m->stats.errors[pindex];
	for (size_t i = 0; i < ERR_CLASS_SLOTS; i++) {
		if (slots[i].cls[0] == '\0')
			memcpy(slots[i].cls, cls, 3);
		if (memcmp(slots[i].cls, cls, 3) == 0) {
			slots[i].n++;
			return;
		}
	}
}

void txn_end(Txn *t)
{
	TxnMgr *m = t->mgr;
	bool committed = t->committed;
	int64_t now = now_mono_us();
	TxnPath path = txn_path(t);

	txn_set_state(t, TXN_FINISHED);
	hist_observe(&m->stats.total, (now - t->start_us) / 1e6);
	m->stats.paths[path]++;
	m->stats.read_only_branches += t->nread_only;
	if (t->outcome_unknown) {
		/* Neither: GET answers unknown, as for a forgotten one. */
		m->stats.unknown++;
		txn_reply(t);
		inflight_remove(m, t);
		txn_free(t);
		return;
	}
	if (committed) {
		m->stats.committed++;
		hist_observe(&m->stats.prepare, (t->decided_us - t->start_us) / 1e6);
		hist_observe(&m->stats.decide, (t->durable_us - t->decided_us) / 1e6);
		hist_observe(&m->stats.commit, (now - t->durable_us) / 1e6);
	} else {
		m->stats.aborted++;
		m->stats.aborts[t->reason < ABORT_NREASONS ? t->reason : ABORT_UNAVAILABLE]++;
		note_abort(m, t);
	}
	recent_add(m, t->id, committed ? TXS_COMMITTED : TXS_ABORTED, path);
	txn_reply(t);
	inflight_remove(m, t);
	txn_free(t);
}

void txn_fail(Txn *t, AbortReason why, int branch, int stmt, const char *sqlstate, const char *msg)
{
	if (branch >= 0 && (sqlstate != NULL || why == ABORT_UNAVAILABLE))
		count_error(t->mgr, t->branches[branch].pindex, sqlstate);
	if (t->reason != ABORT_NONE)
		return;
	t->reason = why;
	t->fail_branch = branch;
	t->fail_stmt = stmt;
	snprintf(t->sqlstate, sizeof(t->sqlstate), "%s", sqlstate ? sqlstate : "");
	txn_set_message(t, "%s", msg ? msg : "");
}

/* ---- phase 1 ------------------------------------------------------------ */

/* Written straight as text: the branches' results are JSON text already
 * (phase 1), so nothing is parsed or re-serialised here. */
void txn_result_text(const Txn *t, bool phase2_pending, bool newline, StrBuf *sb)
{
	static const char head[] = "{\"id\":\"", mid[] = "\",\"outcome\":\"committed\",\"branches\":{",
	                  pending[] = ",\"phase2\":\"pending\"";
	size_t lens[2 * MAX_PARTICIPANTS], total, k = 0;
	char *p;

	/* Measured first, then copied: one reservation, no per-piece checks
	 * (every reply passes here). Participant names are [A-Za-z0-9_-]
	 * (config.c): no escaping. */
	total = sizeof(head) - 1 + TXN_ID_HEX + sizeof(mid) - 1 + 1 + (phase2_pending ? sizeof(pending) - 1 : 0) + 1 +
	        (newline ? 1 : 0);
	for (size_t i = 0; i < t->nbranches; i++) {
		const Branch *b = &t->branches[i];
		lens[2 * i] = strlen(b->name);
		lens[2 * i + 1] = b->results ? strlen(b->results) : 2;
		total += lens[2 * i] + lens[2 * i + 1] + 4; /* "name": and a comma */
	}
	sb_reserve(sb, total);
	p = sb->p + sb->len;
#define PUT(s, n) (memcpy(p, (s), (n)), p += (n))
	PUT(head, sizeof(head) - 1);
	PUT(t->id_hex, TXN_ID_HEX);
	PUT(mid, sizeof(mid) - 1);
	for (size_t i = 0; i < t->nbranches; i++, k += 2) {
		const Branch *b = &t->branches[i];
		if (i > 0)
			*p++ = ',';
		*p++ = '"';
		PUT(b->name, lens[k]);
		PUT("\":", 2);
		PUT(b->results ? b->results : "[]", lens[k + 1]);
	}
	*p++ = '}';
	if (phase2_pending)
		PUT(pending, sizeof(pending) - 1);
	*p++ = '}';
	if (newline)
		*p++ = '\n';
#undef PUT
	*p = '\0';
	sb->len = (size_t)(p - sb->p);
}

/* The response a retry with the same Idempotency-Key will get; past
 * idempotency_max_response_bytes, without the results (the record must
 * stay small). */
static void build_idem_response(Txn *t)
{
	StrBuf sb = {0};
	char *text;

	txn_result_text(t, false, false, &sb);
	text = sb_take(&sb);
	if ((int64_t)strlen(text) > t->mgr->cfg->idempotency_max_response_bytes) {
		free(text);
		sb_printf(&sb, "{\"id\":\"%s\",\"outcome\":\"committed\",\"branches\":null,\"results_omitted\":true}",
		          t->id_hex);
		text = sb_take(&sb);
	}
	t->idem_response = text;
}

void phase1_branch_done(Branch *b)
{
	Txn *t = b->txn;

	if (t->state != TXN_PREPARING)
		return;
	for (size_t i = 0; i < t->nbranches; i++) {
		/* A read-only branch's COMMIT PREPARED is not waited for. */
		if (t->branches[i].op_active && !t->branches[i].read_only)
			return;
	}
	/* Every branch answered (or was abandoned). Decide. */
	if (t->reason != ABORT_NONE) {
		txn_start_abort(t);
		return;
	}
	t->decided_wall_ms = now_wall_ms();
	t->decided_us = now_mono_us();
	if (t->nread_only == t->nbranches && t->idem == NULL) {
		/* Every branch read-only, no key to keep: nothing was written
		 * anywhere, so there is nothing to decide durably. Committed. */
		t->committed = true;
		t->durable_us = t->decided_us;
		txn_set_state(t, TXN_COMMITTING);
		txn_maybe_finish(t);
		return;
	}
	FAULT_POINT(FAULT_BEFORE_LOG_COMMIT);
	txn_set_state(t, TXN_DECIDING);
	t->logged = true;

	DlogBranchRef refs[MAX_PARTICIPANTS]; /* a participant appears once */
	DlogRecord rec = {.type = DLOG_COMMIT, .txn_id = t->id, .wall_ms = t->decided_wall_ms, .branches = refs};
	DlogIdem idem;
	for (size_t i = 0; i < t->nbranches; i++) {
		/* Read-only branches are nobody's business after a crash (either
		 * outcome is the same), so the record leaves them out; but a keyed
		 * record names them all: a COMMIT must name at least one branch
		 * (dlog_decode refuses none), and the key must survive even when
		 * every branch was read-only. */
		if (t->branches[i].read_only && t->idem == NULL)
			continue;
		rec.branches[rec.nbranches].index = (uint16_t)t->branches[i].pindex;
		strlcpy_s(rec.branches[rec.nbranches].name, t->branches[i].name,
		          sizeof(rec.branches[rec.nbranches].name));
		rec.nbranches++;
	}
	if (t->idem != NULL) {
		/* The key, the body's fingerprint and the response go into the
		 * decision itself: a retry after any crash finds them. */
		build_idem_response(t);
		memset(&idem, 0, sizeof(idem));
		strlcpy_s(idem.key, idem_entry_key(t->idem), sizeof(idem.key));
		memcpy(idem.fingerprint, idem_entry_fingerprint(t->idem), sizeof(idem.fingerprint));
		idem.status = 200;
		idem.response = t->idem_response;
		idem.response_len = (uint32_t)strlen(t->idem_response);
		rec.idem = &idem;
	}
	/* The decision: committed once this record is on disk, not before. */
	dlog_append_commit(t->mgr->dlog, &rec, txn_on_commit_durable, t);
}

TxnOutcome txn_outcome(const Txn *t)
{
	if (t->committed)
		return TXO_COMMITTED;
	if (t->outcome_unknown || (t->one_phase && t->state == TXN_DECIDING))
		return TXO_UNKNOWN;
	return TXO_ABORTED;
}

/* ---- entry points ---------------------------------------------------------- */

Txn *txn_begin(TxnMgr *m, TxnRequest *req, IdemEntry *idem, TxnReplyFn reply, void *arg)
{
	Txn *t = txn_alloc(req->nbranches);

	t->mgr = m;
	t->id = m->next_id++;
	txn_id_format(t->id_hex, t->id);
	t->idem = idem;
	t->req = *req;
	memset(req, 0, sizeof(*req));
	t->reply = reply;
	t->reply_arg = arg;
	t->deadline_us = t->start_us + t->req.timeout_ms * 1000;
	t->state = TXN_PREPARING;
	/* One participant: nothing to coordinate, so no PREPARE and no record,
	 * unless the Idempotency-Key must be made durable with the decision. */
	t->one_phase = t->nbranches == 1 && idem == NULL;
	for (size_t i = 0; i < t->nbranches; i++) {
		Branch *b = &t->branches[i];
		b->txn = t;
		b->req = &t->req.branches[i];
		b->name = b->req->participant->name;
		b->pindex = b->req->participant->index;
		b->pool = m->pools[b->pindex];
	}
	/* Registered as in flight before anything is sent. */
	inflight_add(m, t);
	txnmgr_wake(m, t->deadline_us);
	for (size_t i = 0; i < t->nbranches; i++)
		branch_phase1(&t->branches[i]);
	return t;
}

void txn_resume_commit(TxnMgr *m, const DlogRecord *rec)
{
	Txn *t = txn_alloc(rec->nbranches);
	size_t n = 0;

	t->mgr = m;
	t->id = rec->txn_id;
	txn_id_format(t->id_hex, t->id);
	t->decided_us = t->durable_us = t->start_us;
	t->durable = t->committed = t->logged = true;
	t->replied = true; /* nobody is waiting for this one */
	t->state = TXN_COMMITTING;
	for (uint16_t i = 0; i < rec->nbranches; i++) {
		const ParticipantConfig *pc = config_find_participant(m->cfg, rec->branches[i].name);
		if (pc == NULL) {
			/* That branch may still be prepared there: the decision must
			 * stay in the log (no DONE) until the participant is back. */
			t->incomplete = true;
			log_txn(LOG_ERROR, t->id,
			        "committed branch on participant '%s' (index %u), which is no longer configured: "
			        "it cannot be finished; restore the participant or resolve by hand with twopc-recover",
			        rec->branches[i].name, rec->branches[i].index);
			continue;
		}
		Branch *b = &t->branches[n++];
		b->txn = t;
		b->name = pc->name;
		b->pindex = rec->branches[i].index;
		b->pool = m->pools[pc->index];
		b->state = BR_COMMITTING;
		/* Recovery may just have committed it: "does not exist" is then no
		 * hazard. */
		b->sent_unknown = true;
	}
	t->nbranches = n;
	inflight_add(m, t);
	if (m->next_id <= t->id)
		m->next_id = t->id + 1;
	log_txn(LOG_INFO, t->id, "resuming phase 2 on %zu participants", n);
	for (size_t i = 0; i < n; i++)
		branch_finish_op(&t->branches[i]);
	if (n == 0)
		txn_maybe_finish(t);
}

/* Startup: every key the log remembers, finished or not (a COMMIT whose
 * phase 2 was cut short is decided all the same). */
static void restore_key(const DlogRecord *rec, bool finished, void *arg)
{
	TxnMgr *m = arg;

	(void)finished;
	idem_restore(m->idem, rec->idem->key, rec->idem->fingerprint, rec->txn_id, rec->wall_ms, rec->idem->status,
	             rec->idem->response, rec->idem->response_len, now_wall_ms());
}

TxnMgr *txnmgr_new(struct event_base *base, const Config *cfg, Dlog *dlog, Pool **pools, uint64_t first_id)
{
	TxnMgr *m = xcalloc(1, sizeof(*m));
	m->base = base;
	m->cfg = cfg;
	m->gid_prefix_len = gid_prefix(m->gid_prefix, cfg->coord_id);
	m->dlog = dlog;
	m->pools = pools;
	m->next_id = first_id ? first_id : 1;
	idmap_init(&m->inflight);
	idmap_init(&m->recent);
	m->recent_ring = xcalloc(RECENT_OUTCOMES, sizeof(uint64_t));
	m->idem = idem_new(cfg->idempotency_ttl_s * 1000, cfg->idempotency_max_bytes);
	hist_init(&m->stats.total, metrics_latency_bounds, metrics_latency_nbounds);
	hist_init(&m->stats.prepare, metrics_latency_bounds, metrics_latency_nbounds);
	hist_init(&m->stats.decide, metrics_latency_bounds, metrics_latency_nbounds);
	hist_init(&m->stats.commit, metrics_latency_bounds, metrics_latency_nbounds);
	m->phase2 = phase2_new(base, cfg, &m->stats.phase2_batch);
	dlog_foreach_idempotent(dlog, restore_key, m);
	idem_restore_done(m->idem);
	return m;
}

IdemStore *txnmgr_idem(TxnMgr *m)
{
	return m->idem;
}

void txnmgr_start(TxnMgr *m)
{
	struct timeval tv = {0, TICK_US};
	m->tick = event_new(m->base, -1, EV_PERSIST, txnmgr_tick, m);
	if (m->tick == NULL || event_add(m->tick, &tv) != 0)
		log_fatal("libevent: cannot start the housekeeping timer");
}

void txnmgr_free(TxnMgr *m)
{
	if (m == NULL)
		return;
	phase2_free(m->phase2); /* first: it lets go of the branches it holds */
	while (m->head) {
		Txn *t = m->head;
		inflight_remove(m, t);
		for (size_t i = 0; i < t->nbranches; i++) {
			Branch *b = &t->branches[i];
			if (b->conn)
				pool_discard(b->pool, b->conn);
			else if (b->op_active && b->batch == NULL)
				pool_cancel(b->pool, &b->waiter);
		}
		txn_free(t);
	}
	if (m->tick)
		event_free(m->tick);
	idmap_free(&m->inflight);
	idmap_free(&m->recent);
	free(m->recent_ring);
	idem_free(m->idem);
	free(m);
}

const Config *txnmgr_cfg(const TxnMgr *m)
{
	return m->cfg;
}

const Txn *txnmgr_find(const TxnMgr *m, uint64_t id)
{
	return idmap_get(&m->inflight, id);
}

const char *branch_state_name(BranchState s)
{
	static const char *const names[] = {
	    [BR_WAIT_CONN] = "waiting_for_connection",
	    [BR_RUNNING] = "running",
	    [BR_PREPARED] = "prepared",
	    [BR_FAILED] = "failed",
	    [BR_UNKNOWN] = "unknown",
	    [BR_COMMITTING] = "committing",
	    [BR_COMMITTED] = "committed",
	    [BR_ROLLING_BACK] = "rolling_back",
	    [BR_ROLLED_BACK] = "rolled_back",
	    [BR_CHECKING] = "checking",
	};
	return (size_t)s < ARRAY_LEN(names) ? names[s] : "?";
}

TxnStatus txnmgr_status(TxnMgr *m, uint64_t id)
{
	Txn *t = idmap_get(&m->inflight, id);
	if (t != NULL)
		return t->committed ? TXS_COMMITTED : t->state == TXN_ABORTING ? TXS_ABORTED : TXS_IN_PROGRESS;
	void *v = idmap_get(&m->recent, id);
	if (v != NULL)
		return (TxnStatus)((uintptr_t)v & 0xf);
	if (dlog_find_commit(m->dlog, id) != NULL)
		return TXS_COMMITTED;
	return TXS_UNKNOWN;
}

bool txnmgr_path(TxnMgr *m, uint64_t id, TxnPath *out)
{
	Txn *t = idmap_get(&m->inflight, id);
	void *v;

	if (t != NULL) {
		*out = txn_path(t);
		return true;
	}
	v = idmap_get(&m->recent, id);
	if (v == NULL)
		return false;
	*out = (TxnPath)((uintptr_t)v >> 4);
	return true;
}

void txnmgr_note_outcome(TxnMgr *m, uint64_t id, bool committed)
{
	/* Settled by recovery: only two-phase transactions leave anything behind. */
	if (!idmap_contains(&m->inflight, id))
		recent_add(m, id, committed ? TXS_COMMITTED : TXS_ABORTED, TXN_PATH_TWO_PHASE);
}

void txnmgr_note_heuristic_hazard(TxnMgr *m, uint64_t txn, const char *participant, const char *gid, const char *why)
{
	m->stats.heuristic_hazards++;
	log_txn(LOG_ERROR, txn,
	        "participant=%s HEURISTIC HAZARD: prepared transaction %s %s: someone outside twopc committed or "
	        "rolled it back; check this transaction's data on every participant (hazard #%llu)",
	        participant, gid, why, (unsigned long long)m->stats.heuristic_hazards);
}

uint64_t txnmgr_heuristic_hazards(const TxnMgr *m)
{
	return m->stats.heuristic_hazards;
}

size_t txnmgr_in_flight(const TxnMgr *m)
{
	return m->ninflight;
}

bool txnmgr_is_in_flight(const TxnMgr *m, uint64_t id)
{
	return idmap_contains(&m->inflight, id);
}

void txnmgr_get_stats(const TxnMgr *m, TxnMgrStats *out)
{
	*out = m->stats;
	out->in_flight = m->ninflight;
}

Pool *txnmgr_pool(const TxnMgr *m, size_t i)
{
	return m->pools[i];
}
