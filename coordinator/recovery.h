/*
 * recovery: what twopcd does at start, before it listens. For every
 * participant, list our prepared transactions (our GID prefix and
 * coordinator id, in that participant's database) and settle each by the
 * log: COMMIT PREPARED where a COMMIT record exists, ROLLBACK PREPARED
 * otherwise (presumed abort). Then write DONE for decided transactions that
 * are now fully committed, and hand those that still have a branch on an
 * unreachable participant to the transaction manager, which retries.
 */
#ifndef TWOPC_RECOVERY_H
#define TWOPC_RECOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "decision_log.h"
#include "txn.h"

/* What to do with one prepared transaction. */
typedef enum XactAction {
	XACT_LEAVE,    /* not ours: never touched, only reported */
	XACT_COMMIT,   /* the log says commit (a COMMIT record or a heuristic commit) */
	XACT_ROLLBACK, /* presumed abort, or a heuristic abort */
} XactAction;

const char *xact_action_name(XactAction a);

/* Classifies a prepared transaction's GID by the log. For ours, *txn and
 * *decision are set. The one rule shared by recovery, the sweeper and
 * twopc-recover. */
XactAction recovery_classify(const Config *cfg, const Dlog *dlog, const char *gid, uint64_t *txn,
                             DlogDecision *decision);

typedef struct RecoveryStats {
	uint64_t committed;    /* COMMIT PREPARED issued */
	uint64_t rolled_back;  /* ROLLBACK PREPARED issued */
	uint64_t foreign;      /* prepared transactions that are not ours (left alone) */
	uint64_t unreachable;  /* participants that could not be checked */
	uint64_t resumed;      /* decided transactions handed to phase 2 */
	uint64_t done_written; /* decided transactions now complete */
} RecoveryStats;

/* Blocking; run before the event loop. Participants it cannot reach are
 * reported and left to the transaction manager's retries. Returns false
 * only for a participant that is reachable but unfit
 * (max_prepared_transactions = 0). */
bool recovery_run(const Config *cfg, Dlog *dlog, TxnMgr *mgr, RecoveryStats *st, char *err, size_t errlen) WARN_UNUSED;

#endif
