/*
 * recover_resolve: `twopc-recover resolve`, `commit GID` and `abort GID`.
 *
 * resolve applies the rule of twopcd's start-up recovery (recovery_classify:
 * COMMIT PREPARED where the log has a COMMIT record or a heuristic commit,
 * ROLLBACK PREPARED otherwise — presumed abort; others' transactions are
 * never touched) and then writes DONE for every decision none of whose
 * branches is left prepared. Like recovery, it needs no double read: it
 * holds the log's lock, so no twopcd runs and nothing of ours is in flight.
 *
 * commit/abort write a HEURISTIC record (fdatasync'ed) before the COMMIT or
 * ROLLBACK PREPARED: if the tool dies in between, the record still tells
 * resolve, recovery and the sweeper how to settle every branch, so the
 * transaction cannot end up half one way, half the other.
 */
#include "recover_resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gid.h"
#include "recover_scan.h"

/* Prints why a command that needs the log's lock cannot run. */
static void print_open_failure(const char *cmd, const char *err, long holder, const char *what)
{
	char who[128];

	if (holder == 0) {
		fprintf(stderr, "twopc-recover: %s: %s\n", cmd, err);
		return;
	}
	recover_describe_holder(holder, who, sizeof(who));
	if (strncmp(who, "twopcd", 6) == 0)
		fprintf(stderr, "twopc-recover: %s: %s %s\n", cmd, who, what);
	else
		fprintf(stderr,
		        "twopc-recover: %s: the decision log is locked by %s (twopcd or another twopc-recover): only "
		        "one of them may use it at a time; wait for it to finish or stop it\n",
		        cmd, who);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Live decisions (COMMIT and HEURISTIC records without DONE), sorted. */
static uint64_t *live_decisions(const Dlog *log, size_t *n)
{
	const IdMap *maps[2] = {dlog_live_commits(log), dlog_live_heuristics(log)};
	uint64_t *ids = xcalloc(maps[0]->count + maps[1]->count + 1, sizeof(uint64_t));

	*n = 0;
	for (int k = 0; k < 2; k++) {
		size_t pos = 0;
		uint64_t txn;
		void *val;
		while (idmap_next(maps[k], &pos, &txn, &val)) {
			if (k == 1 && dlog_find_commit(log, txn) != NULL)
				continue; /* already there with its COMMIT */
			ids[(*n)++] = txn;
		}
	}
	qsort(ids, *n, sizeof(uint64_t), cmp_u64);
	return ids;
}

/* Whether decision txn is complete: every participant that may hold a
 * branch of it (a COMMIT record names them; a heuristic decision alone
 * does not, so then all) was reached and holds none any more. Otherwise
 * `why` says what keeps it. */
static bool decision_complete(const Config *cfg, const Dlog *log, const RecScan *scan, const bool *left, uint64_t txn,
                              char *why, size_t whylen)
{
	const DlogRecord *rec = dlog_find_commit(log, txn);

	for (size_t i = 0; i < scan->nxacts; i++) {
		if (scan->xacts[i].ours && scan->xacts[i].txn == txn && left[i])
			return errf(why, whylen, "a branch on %s is still prepared",
			            scan->parts[scan->xacts[i].part].pc->name);
	}
	if (rec == NULL) {
		for (size_t p = 0; p < scan->nparts; p++) {
			if (!scan->parts[p].reachable)
				return errf(why, whylen, "participant %s is unreachable and may hold a branch",
				            scan->parts[p].pc->name);
		}
		return true;
	}
	for (uint16_t b = 0; b < rec->nbranches; b++) {
		const ParticipantConfig *pc = config_find_participant(cfg, rec->branches[b].name);
		if (pc == NULL)
			return errf(why, whylen,
			            "its COMMIT record names participant %s, which is not in %s: restore that "
			            "participant's section to settle it",
			            rec->branches[b].name, cfg->path);
		if (!scan->parts[pc->index].reachable)
			return errf(why, whylen, "participant %s is unreachable", pc->name);
	}
	return true;
}

int recover_resolve(const Config *cfg, bool dry_run)
{
	Dlog *log = NULL;
	DlogLoadStats st;
	RecScan scan;
	long holder = 0;
	char err[1024], age[32], id[TXN_ID_HEX + 1];
	bool *left = NULL;
	uint64_t *ids = NULL;
	size_t nids = 0, wp = 1, wg = 3;
	size_t committed = 0, rolled_back = 0, gone = 0, failed = 0, done_written = 0, kept = 0;
	int rc = RECOVER_EXIT_ERROR;

	memset(&scan, 0, sizeof(scan));
	if (dry_run) {
		if (!recover_open_log_readonly(cfg, &log, &st, &holder, err, sizeof(err))) {
			fprintf(stderr, "twopc-recover: resolve: %s\n", err);
			return RECOVER_EXIT_ERROR;
		}
		printf("DRY RUN: nothing is changed.\n");
		if (holder != 0) {
			char who[128];
			recover_describe_holder(holder, who, sizeof(who));
			printf("NOTE: %s is running: resolve itself would refuse until it is stopped, and what twopcd "
			       "has in flight may show below.\n",
			       who);
		}
	} else if (!recover_open_log_locked(cfg, &log, &st, &holder, err, sizeof(err))) {
		print_open_failure("resolve", err, holder,
		                   "is running and settles its own prepared transactions (its sweeper; POST "
		                   "/v1/sweep): stop it before running resolve");
		return RECOVER_EXIT_ERROR;
	}
	printf("coordinator %s, decision log %s: %llu records in %llu segments; %llu decided transactions not yet "
	       "done, %llu heuristic decisions\n",
	       cfg->coord_id, cfg->log_dir, (unsigned long long)st.records, (unsigned long long)st.segments,
	       (unsigned long long)st.live_commits, (unsigned long long)st.live_heuristics);
	if (st.truncated_bytes > 0)
		printf("the newest log segment had a torn tail: %llu bytes truncated (a write cut short by a crash)\n",
		       (unsigned long long)st.truncated_bytes);

	recscan_run(&scan, cfg, log, !dry_run);
	left = xcalloc(scan.nxacts + 1, sizeof(bool));
	for (size_t p = 0; p < scan.nparts; p++)
		wp = strlen(scan.parts[p].pc->name) > wp ? strlen(scan.parts[p].pc->name) : wp;
	for (size_t i = 0; i < scan.nxacts; i++)
		wg = strlen(scan.xacts[i].px.gid) > wg ? strlen(scan.xacts[i].px.gid) : wg;
	wg = wg < 4 + TXN_ID_HEX ? 4 + TXN_ID_HEX : wg;

	/* Settle ours, one line per prepared transaction. */
	for (size_t i = 0; i < scan.nxacts; i++) {
		RecXact *x = &scan.xacts[i];
		RecPart *rp = &scan.parts[x->part];
		const char *action = xact_action_name(x->action);
		bool was_gone = false;

		recover_format_age(age, sizeof(age), x->px.age_s);
		if (!x->ours) {
			printf("%-*s  %-*s  %-8s  not ours: left alone (owner %s, prepared %s ago)\n", (int)wp,
			       rp->pc->name, (int)wg, x->px.gid, action, x->px.owner, age);
			continue;
		}
		if (dry_run) {
			printf("%-*s  %-*s  %-8s  would be done (log: %s)\n", (int)wp, rp->pc->name, (int)wg, x->px.gid,
			       action, dlog_decision_name(x->decision));
			continue;
		}
		if (!participant_finish_prepared(rp->conn, x->px.gid, x->action == XACT_COMMIT, &was_gone, err,
		                                 sizeof(err))) {
			printf("%-*s  %-*s  %-8s  FAILED: %s\n", (int)wp, rp->pc->name, (int)wg, x->px.gid, action,
			       err);
			left[i] = true;
			failed++;
			continue;
		}
		printf("%-*s  %-*s  %-8s  %s (log: %s)\n", (int)wp, rp->pc->name, (int)wg, x->px.gid, action,
		       was_gone ? "already gone" : "done", dlog_decision_name(x->decision));
		if (was_gone)
			gone++;
		else if (x->action == XACT_COMMIT)
			committed++;
		else
			rolled_back++;
	}
	for (size_t p = 0; p < scan.nparts; p++) {
		if (!scan.parts[p].reachable)
			printf("%-*s  %-*s  %-8s  UNREACHABLE: %s: its prepared transactions were not settled\n",
			       (int)wp, scan.parts[p].pc->name, (int)wg, "-", "-", scan.parts[p].error);
	}

	/* Decisions whose branches are all settled are complete: DONE, as
	 * twopcd's recovery writes it (its COMMIT or HEURISTIC record may go). */
	ids = live_decisions(log, &nids);
	for (size_t k = 0; k < nids; k++) {
		char why[256], label[64];
		DlogRecord rec_done = {.type = DLOG_DONE, .txn_id = ids[k]};

		txn_id_format(id, ids[k]);
		snprintf(label, sizeof(label), "txn %s", id);
		if (!decision_complete(cfg, log, &scan, left, ids[k], why, sizeof(why))) {
			printf("%-*s  %-*s  %-8s  kept: %s\n", (int)wp, "-", (int)wg, label, "DECISION", why);
			kept++;
			continue;
		}
		if (dry_run) {
			printf("%-*s  %-*s  %-8s  would be written (%s: every branch settled)\n", (int)wp, "-", (int)wg,
			       label, "DONE", dlog_decision_name(dlog_decision(log, ids[k])));
			done_written++;
			continue;
		}
		const char *dname = dlog_decision_name(dlog_decision(log, ids[k]));
		if (!dlog_append_sync(log, &rec_done, err, sizeof(err))) {
			fprintf(stderr, "twopc-recover: resolve: %s\n", err);
			goto done;
		}
		printf("%-*s  %-*s  %-8s  written (%s: every branch settled)\n", (int)wp, "-", (int)wg, label, "DONE",
		       dname);
		done_written++;
	}

	if (committed + rolled_back + gone + failed + done_written + kept == 0 && scan.unreachable == 0 && !dry_run)
		printf("nothing to do: no prepared transaction of ours on any participant and no decision waiting for "
		       "its DONE record\n");
	else if (dry_run && scan.commit + scan.rollback + done_written + kept == 0 && scan.unreachable == 0)
		printf("nothing to do\n");
	else if (dry_run)
		printf("would: %zu COMMIT PREPARED, %zu ROLLBACK PREPARED, %zu DONE records; %zu not ours left alone; "
		       "%zu decisions kept; %zu participants unreachable\n",
		       scan.commit, scan.rollback, done_written, scan.leave, kept, scan.unreachable);
	else
		printf("resolved: %zu committed, %zu rolled back, %zu already gone, %zu failed; %zu not ours left "
		       "alone; %zu DONE records written, %zu decisions kept; %zu participants unreachable\n",
		       committed, rolled_back, gone, failed, scan.leave, done_written, kept, scan.unreachable);
	rc = failed > 0 || kept > 0 || scan.unreachable > 0 ? RECOVER_EXIT_PROBLEM : RECOVER_EXIT_OK;
done:
	free(ids);
	free(left);
	recscan_free(&scan);
	dlog_close(log);
	return rc;
}

/* ---- commit GID / abort GID ------------------------------------------------ */

static bool decision_says_commit(DlogDecision d)
{
	return d == DLOG_COMMITTED || d == DLOG_HEURISTIC_COMMIT;
}

static void explain_refusal(const char *gid, uint64_t txn, bool commit, DlogDecision d)
{
	char id[TXN_ID_HEX + 1];

	txn_id_format(id, txn);
	if (commit) {
		fprintf(stderr,
		        "twopc-recover: commit: refusing to commit %s: the decision log says \"%s\" for transaction "
		        "%s (%s).\n"
		        "  Every other branch of it follows the log: twopcd's recovery, its sweeper and 'resolve' roll "
		        "them back,\n"
		        "  and branches of it may already be rolled back; the client was not told \"committed\".\n"
		        "  Committing it by hand can break atomicity: part of the transaction would stay, part would "
		        "not.\n"
		        "  Only if you know it must commit (e.g. one of its branches is already committed somewhere), "
		        "run again with\n"
		        "  --force: a HEURISTIC record then makes every branch still prepared commit too.\n",
		        gid, dlog_decision_name(d), id,
		        d == DLOG_PRESUMED_ABORT ? "no COMMIT record: presumed abort"
		                                 : "an operator aborted it by hand");
	} else {
		fprintf(stderr,
		        "twopc-recover: abort: refusing to roll back %s: the decision log says \"%s\" for transaction "
		        "%s (%s).\n"
		        "  The client may have been told \"committed\", and other branches of it may already be "
		        "committed;\n"
		        "  twopcd's recovery, its sweeper and 'resolve' commit every branch still prepared.\n"
		        "  Rolling it back by hand breaks atomicity and the promise made to the client.\n"
		        "  Only if you know it must not commit, run again with --force: a HEURISTIC record then makes "
		        "every\n"
		        "  branch still prepared roll back too.\n",
		        gid, dlog_decision_name(d), id,
		        d == DLOG_COMMITTED ? "its COMMIT record is durable" : "an operator committed it by hand");
	}
}

int recover_decide(const Config *cfg, const char *gid, bool commit, bool force)
{
	const char *cmd = commit ? "commit" : "abort";
	Dlog *log = NULL;
	DlogLoadStats st;
	RecScan scan;
	long holder = 0;
	uint64_t txn;
	unsigned idx;
	char err[1024], id[TXN_ID_HEX + 1];
	RecXact *found = NULL;
	size_t nfound = 0, others = 0;
	bool was_gone = false;
	int rc = RECOVER_EXIT_ERROR;

	memset(&scan, 0, sizeof(scan));
	if (!gid_parse(gid, cfg->coord_id, &txn, &idx)) {
		fprintf(stderr,
		        "twopc-recover: %s: '%s' is not a GID of coordinator %s (ours look like twopc_%s_<16 hex "
		        "digits>_<n>): twopc-recover only decides its own transactions. Another application's "
		        "prepared transaction is for its owner to settle (COMMIT PREPARED / ROLLBACK PREPARED).\n",
		        cmd, gid, cfg->coord_id, cfg->coord_id);
		return RECOVER_EXIT_ERROR;
	}
	txn_id_format(id, txn);
	if (!recover_open_log_locked(cfg, &log, &st, &holder, err, sizeof(err))) {
		print_open_failure(cmd, err, holder,
		                   "is running: stop it before deciding a transaction by hand (the HEURISTIC record "
		                   "must be in the decision log, which twopcd holds, before the decision is carried "
		                   "out)");
		return RECOVER_EXIT_ERROR;
	}
	recscan_run(&scan, cfg, log, true);
	for (size_t i = 0; i < scan.nxacts; i++) {
		if (!scan.xacts[i].ours || scan.xacts[i].txn != txn)
			continue;
		if (strcmp(scan.xacts[i].px.gid, gid) == 0) {
			found = found ? found : &scan.xacts[i];
			nfound++;
		} else {
			others++;
		}
	}
	if (nfound == 0) {
		fprintf(stderr,
		        "twopc-recover: %s: %s is not prepared on any reachable participant: nothing decided.\n", cmd,
		        gid);
		for (size_t p = 0; p < scan.nparts; p++) {
			if (!scan.parts[p].reachable)
				fprintf(stderr, "  participant %s is unreachable (%s): it may hold it.\n",
				        scan.parts[p].pc->name, scan.parts[p].error);
		}
		rc = RECOVER_EXIT_PROBLEM;
		goto done;
	}
	if (nfound > 1) {
		fprintf(stderr,
		        "twopc-recover: %s: %s is prepared in %zu participants' databases; the configuration names "
		        "the same database twice? Nothing decided.\n",
		        cmd, gid, nfound);
		goto done;
	}

	RecPart *rp = &scan.parts[found->part];
	DlogDecision d = dlog_decision(log, txn);
	bool contradicts = commit != decision_says_commit(d);
	if (contradicts && !force) {
		explain_refusal(gid, txn, commit, d);
		goto done;
	}
	if (contradicts)
		fprintf(stderr,
		        "twopc-recover: WARNING: --force: %s %s on %s AGAINST the decision log, which says \"%s\" for "
		        "transaction %s.\n"
		        "twopc-recover: WARNING: this is a heuristic decision; it can break atomicity. It is recorded "
		        "in the log (HEURISTIC) and every other branch of the transaction will be %s to match.\n",
		        commit ? "committing" : "rolling back", gid, rp->pc->name, dlog_decision_name(d), id,
		        commit ? "committed" : "rolled back");
	else
		printf("the decision log already says \"%s\" for transaction %s: recording the same decision by "
		       "hand\n",
		       dlog_decision_name(d), id);

	/* The record first: whatever happens next, it decides every branch. */
	DlogBranchRef ref;
	memset(&ref, 0, sizeof(ref));
	ref.index = (uint16_t)idx; /* the index the GID was built with */
	strlcpy_s(ref.name, rp->pc->name, sizeof(ref.name));
	DlogRecord rec = {.type = DLOG_HEURISTIC,
	                  .txn_id = txn,
	                  .wall_ms = now_wall_ms(),
	                  .nbranches = 1,
	                  .branches = &ref,
	                  .heuristic_commit = commit};
	strlcpy_s(rec.gid, gid, sizeof(rec.gid));
	if (!dlog_append_sync(log, &rec, err, sizeof(err))) {
		fprintf(stderr, "twopc-recover: %s: cannot record the decision, nothing done: %s\n", cmd, err);
		goto done;
	}
	printf("HEURISTIC record written: transaction %s is %s by hand (participant %s, %s)\n", id,
	       commit ? "committed" : "aborted", rp->pc->name, gid);
	if (!participant_finish_prepared(rp->conn, gid, commit, &was_gone, err, sizeof(err))) {
		printf("%s  %s  %s  FAILED: %s\n", rp->pc->name, gid, commit ? "COMMIT" : "ROLLBACK", err);
		fprintf(stderr,
		        "twopc-recover: %s: the decision is recorded but not carried out: 'twopc-recover resolve' (or "
		        "twopcd) finishes it once %s answers\n",
		        cmd, rp->pc->name);
		rc = RECOVER_EXIT_PROBLEM;
		goto done;
	}
	printf("%s  %s  %s  %s (heuristic %s)\n", rp->pc->name, gid, commit ? "COMMIT" : "ROLLBACK",
	       was_gone ? "already gone" : "done", commit ? "commit" : "abort");
	if (others > 0) {
		printf("%zu other branches of transaction %s are still prepared and follow this decision:\n", others,
		       id);
		for (size_t i = 0; i < scan.nxacts; i++) {
			const RecXact *x = &scan.xacts[i];
			if (x->ours && x->txn == txn && x != found)
				printf("  %s  %s\n", scan.parts[x->part].pc->name, x->px.gid);
		}
		printf("settle them with 'twopc-recover -c %s resolve' (or by starting twopcd)\n", cfg->path);
	}
	rc = RECOVER_EXIT_OK;
done:
	recscan_free(&scan);
	dlog_close(log);
	return rc;
}
