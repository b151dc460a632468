/*
 * txn_tick: the housekeeping tick, one periodic timer (TICK_US) for every
 * transaction: phase-1 deadlines, COMMIT/ROLLBACK PREPARED unanswered past
 * phase2_timeout_ms, retries that are due, the pools' and the phase-2
 * batches' own housekeeping, and the expiry of idempotency keys. It walks
 * the in-flight transactions only when one of them is due (next_walk_us,
 * lowered by txnmgr_wake() and set by each walk) and at least once every
 * WALK_MAX_US.
 */
#include "txn_int.h"

#include <stdint.h>

#include "log.h"

/* Lowers *due to when (0: nothing). */
static void due_at(int64_t *due, int64_t when)
{
	if (when != 0 && when < *due)
		*due = when;
}

/* Abandons a phase-1 branch at the deadline. */
static void abandon_branch(Branch *b)
{
	if (b->state == BR_WAIT_CONN) {
		pool_cancel(b->pool, &b->waiter);
		b->state = BR_FAILED; /* nothing was sent */
	} else if (b->state == BR_RUNNING) {
		branch_drop_conn(b);
		if (b->txn->one_phase) {
			/* No COMMIT was sent: closing makes the server roll back. */
			b->state = BR_FAILED;
		} else {
			/* Closing the connection makes the server abort the
			 * transaction, unless its PREPARE already ran: then it is
			 * rolled back below. */
			b->state = BR_UNKNOWN;
			b->unknown_until_us = now_mono_us() + UNKNOWN_GRACE_US;
		}
	}
	b->op_active = false;
}

/* When tick_txn() must next look at t. */
static int64_t txn_due(const Txn *t, int64_t now)
{
	int64_t due = INT64_MAX, p2 = t->mgr->cfg->phase2_timeout_ms * 1000;

	if (t->state == TXN_PREPARING || (t->state == TXN_COMMITTING && !t->replied))
		due_at(&due, t->deadline_us);
	if (t->one_phase && t->state == TXN_DECIDING)
		due_at(&due, now + TICK_US);
	for (size_t i = 0; i < t->nbranches; i++) {
		const Branch *b = &t->branches[i];
		due_at(&due, b->retry_at_us);
		if (b->op_active && b->conn != NULL && b->state != BR_RUNNING && b->state != BR_WAIT_CONN)
			due_at(&due, b->op_started_us + p2);
	}
	return due;
}

static void tick_txn(Txn *t, int64_t now)
{
	if (t->state == TXN_PREPARING && now >= t->deadline_us) {
		log_txn(LOG_WARNING, t->id, "deadline passed in phase 1: aborting");
		txn_fail(t, ABORT_TIMEOUT, -1, -1, NULL,
		         "the transaction's timeout passed before every branch prepared");
		for (size_t i = 0; i < t->nbranches; i++) {
			if (t->branches[i].op_active && !t->branches[i].read_only)
				abandon_branch(&t->branches[i]);
		}
		phase1_branch_done(&t->branches[0]);
		return;
	}
	if (t->one_phase) {
		if (t->state == TXN_DECIDING)
			onephase_tick(t, now);
		return;
	}
	/* COMMIT/ROLLBACK PREPARED under way or waiting: phase 2, a rollback, or
	 * a read-only branch finished early (in any state of its transaction). */
	if (t->state == TXN_COMMITTING || t->state == TXN_ABORTING || t->nread_only > 0) {
		for (size_t i = 0; i < t->nbranches; i++) {
			Branch *b = &t->branches[i];
			if (b->state != BR_COMMITTING && b->state != BR_ROLLING_BACK)
				continue;
			if (b->op_active && b->conn != NULL &&
			    now - b->op_started_us > t->mgr->cfg->phase2_timeout_ms * 1000) {
				/* No answer (a partition): the outcome is unknown. Drop the
				 * connection and retry on a new one; "does not exist" then
				 * means this attempt took effect. */
				log_txn(LOG_WARNING, t->id,
				        "participant=%s no answer to %s PREPARED in %lld ms; retrying", b->name,
				        b->state == BR_COMMITTING ? "COMMIT" : "ROLLBACK",
				        (long long)t->mgr->cfg->phase2_timeout_ms);
				branch_drop_conn(b);
				b->sent_unknown = true;
				schedule_retry(b);
			}
			if (!b->op_active && b->retry_at_us != 0 && now >= b->retry_at_us)
				branch_finish_op(b);
		}
		/* Decided and durable but phase 2 is stuck past the deadline (a
		 * participant down): the client may hear "committed" now; phase 2
		 * goes on. */
		if (t->state == TXN_COMMITTING && !t->replied && now >= t->deadline_us)
			txn_reply(t);
	}
}

void txnmgr_tick(evutil_socket_t fd, short what, void *arg)
{
	TxnMgr *m = arg;
	int64_t now = now_mono_us();

	for (size_t i = 0; i < m->cfg->nparticipants; i++)
		pool_tick(m->pools[i], now);
	phase2_tick(m->phase2, now);
	if (now >= m->next_walk_us) {
		m->next_walk_us = now + WALK_MAX_US;
		for (Txn *t = m->head; t;) {
			Txn *next = t->next; /* t may finish and be freed */
			uint64_t id = t->id;
			int64_t due;
			tick_txn(t, now);
			/* t may be gone: ids are never reused, so finding id still
			 * in flight means t is. */
			if ((t = idmap_get(&m->inflight, id)) != NULL && (due = txn_due(t, now)) < m->next_walk_us)
				m->next_walk_us = due;
			t = next;
		}
	}
	if (now - m->idem_expired_us >= 1000000) {
		int64_t wall = now_wall_ms();
		m->idem_expired_us = now;
		idem_expire(m->idem, wall);
		dlog_expire_idempotency(m->dlog, wall);
	}
}

/* Shutdown: every transaction still in phase 1 is at its deadline now. */
void txnmgr_abort_preparing(TxnMgr *m)
{
	int64_t now = now_mono_us();
	for (Txn *t = m->head; t;) {
		Txn *next = t->next;
		if (t->state == TXN_PREPARING) {
			txn_fail(t, ABORT_SHUTDOWN, -1, -1, NULL, "twopcd is shutting down");
			t->deadline_us = now;
			tick_txn(t, now);
		}
		t = next;
	}
}
