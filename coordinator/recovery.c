/*
 * recovery: startup resolution of our prepared transactions.
 *
 * Safe without the sweeper's double read because nothing else of ours runs
 * yet: the log directory is locked (one daemon per log) and we do not
 * listen until this is over, so no transaction of ours is in flight.
 */
#include "recovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gid.h"
#include "log.h"
#include "participant.h"

const char *xact_action_name(XactAction a)
{
	switch (a) {
	case XACT_LEAVE:
		return "LEAVE";
	case XACT_COMMIT:
		return "COMMIT";
	case XACT_ROLLBACK:
		return "ROLLBACK";
	}
	return "?";
}

XactAction recovery_classify(const Config *cfg, const Dlog *dlog, const char *gid, uint64_t *txn,
                             DlogDecision *decision)
{
	unsigned idx;

	if (!gid_parse(gid, cfg->coord_id, txn, &idx))
		return XACT_LEAVE;
	*decision = dlog_decision(dlog, *txn);
	return *decision == DLOG_COMMITTED || *decision == DLOG_HEURISTIC_COMMIT ? XACT_COMMIT : XACT_ROLLBACK;
}

static void settle_participant(const Config *cfg, const ParticipantConfig *pc, PGconn *c, Dlog *dlog, TxnMgr *mgr,
                               RecoveryStats *st, bool *failed)
{
	char like[128], err[512];
	PreparedXact *xs = NULL;
	size_t n = 0;

	char appname[64];
	int ended = 0;
	/* Sessions of our previous life may still PREPARE after we look. */
	participant_pool_appname(appname, sizeof(appname), cfg->coord_id);
	if (!participant_end_orphan_sessions(c, appname, 5000, &ended, err, sizeof(err))) {
		log_part(LOG_ERROR, pc->name, "recovery: %s", err);
		*failed = true;
		return;
	}
	if (ended > 0)
		log_part(LOG_INFO, pc->name, "recovery: ended %d sessions left by the previous twopcd", ended);
	gid_like_pattern(like, sizeof(like), cfg->coord_id);
	if (!participant_list_prepared(c, like, true, &xs, &n, err, sizeof(err))) {
		log_part(LOG_ERROR, pc->name, "recovery: %s", err);
		*failed = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t txn;
		DlogDecision decision;
		bool gone;

		XactAction action = recovery_classify(cfg, dlog, xs[i].gid, &txn, &decision);
		if (action == XACT_LEAVE)
			continue; /* matched the LIKE but is not exactly our shape */
		bool commit = action == XACT_COMMIT;
		if (!participant_finish_prepared(c, xs[i].gid, commit, &gone, err, sizeof(err))) {
			log_txn(LOG_ERROR, txn, "participant=%s recovery: %s", pc->name, err);
			*failed = true;
			continue;
		}
		log_txn(LOG_INFO, txn, "participant=%s recovery: %s %s (log: %s; prepared %llds ago)%s", pc->name,
		        commit ? "committed" : "rolled back", xs[i].gid, dlog_decision_name(decision),
		        (long long)xs[i].age_s, gone ? " — it had already gone" : "");
		txnmgr_note_outcome(mgr, txn, commit);
		if (commit)
			st->committed++;
		else
			st->rolled_back++;
	}
	free(xs);

	/* Others' prepared transactions are never touched, only reported. */
	if (participant_list_prepared(c, like, false, &xs, &n, err, sizeof(err))) {
		for (size_t i = 0; i < n; i++) {
			log_part(LOG_WARNING, pc->name,
			         "prepared transaction not ours, left alone: gid=%s database=%s owner=%s age=%llds "
			         "xid_age=%lld",
			         xs[i].gid, xs[i].database, xs[i].owner, (long long)xs[i].age_s,
			         (long long)xs[i].xid_age);
			st->foreign++;
		}
		free(xs);
	}
}

bool recovery_run(const Config *cfg, Dlog *dlog, TxnMgr *mgr, RecoveryStats *st, char *err, size_t errlen)
{
	bool *settled = xcalloc(cfg->nparticipants, sizeof(bool));
	const IdMap *live;
	uint64_t *ids = NULL;
	size_t nids = 0, pos = 0;
	uint64_t key;
	void *val;
	bool ok = false;

	memset(st, 0, sizeof(*st));
	for (size_t p = 0; p < cfg->nparticipants; p++) {
		const ParticipantConfig *pc = &cfg->participants[p];
		char info[512], why[512];
		bool failed = false;

		if (!participant_check(pc, info, sizeof(info), why, sizeof(why))) {
			if (strstr(why, "max_prepared_transactions") != NULL) {
				errf(err, errlen, "participant %s: %s", pc->name, why);
				goto done;
			}
			log_part(LOG_WARNING, pc->name,
			         "unreachable at start (%s): its prepared transactions are settled once it is back",
			         why);
			st->unreachable++;
			continue;
		}
		log_part(LOG_INFO, pc->name, "%s", info);
		PGconn *c = participant_connect(pc, 5, why, sizeof(why));
		if (c == NULL) {
			log_part(LOG_WARNING, pc->name, "recovery: %s", why);
			st->unreachable++;
			continue;
		}
		settle_participant(cfg, pc, c, dlog, mgr, st, &failed);
		PQfinish(c);
		settled[p] = !failed;
	}

	/* Decided transactions: complete where every participant was settled
	 * (each prepared branch was just committed), resumed otherwise. */
	live = dlog_live_commits(dlog);
	ids = xcalloc(live->count ? live->count : 1, sizeof(uint64_t));
	while (idmap_next(live, &pos, &key, &val))
		ids[nids++] = key;
	for (size_t i = 0; i < nids; i++) {
		const DlogRecord *rec = dlog_find_commit(dlog, ids[i]);
		DlogDecision decision = dlog_decision(dlog, ids[i]);
		bool all = true;
		for (uint16_t b = 0; b < rec->nbranches; b++) {
			const ParticipantConfig *pc = config_find_participant(cfg, rec->branches[b].name);
			if (pc == NULL || !settled[pc->index])
				all = false;
		}
		if (decision == DLOG_HEURISTIC_ABORT) {
			/* An operator aborted it by hand (--force over a COMMIT record):
			 * the branches follow the heuristic, never the COMMIT record.
			 * Branches on unreachable participants are the sweeper's. */
			if (all) {
				txnmgr_note_outcome(mgr, ids[i], false);
				dlog_append_done(dlog, ids[i]);
				st->done_written++;
			}
			continue;
		}
		if (all) {
			txnmgr_note_outcome(mgr, ids[i], true);
			dlog_append_done(dlog, ids[i]);
			st->done_written++;
		} else {
			txn_resume_commit(mgr, rec);
			st->resumed++;
		}
	}
	ok = true;
done:
	free(ids);
	free(settled);
	return ok;
}
