/*
 * recover_status: the report behind `twopc-recover status`.
 *
 * It opens the decision log read-only (no lock, no truncation), so it can
 * run beside a live twopcd; it then says so, because a transaction twopcd
 * is committing right now shows up prepared, and as "presumed abort" until
 * its COMMIT record is durable.
 */
#include "recover_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gid.h"
#include "recover_scan.h"

/* What the log said, in one object for both outputs. */
typedef struct StatusLog {
	DlogLoadStats st;
	long holder; /* pid of the lock holder, 0 if nobody */
	char holder_desc[128];
	uint64_t pending_done; /* decisions whose branches are all gone: resolve writes DONE */
} StatusLog;

static const char *log_column(const RecXact *x)
{
	return x->ours ? dlog_decision_name(x->decision) : "not ours";
}

/* Live decisions (COMMIT or HEURISTIC) with no branch prepared anywhere
 * reachable: only their DONE record is missing. */
static uint64_t count_pending_done(const Dlog *log, const RecScan *scan)
{
	const IdMap *maps[2] = {dlog_live_commits(log), dlog_live_heuristics(log)};
	uint64_t n = 0;

	for (int k = 0; k < 2; k++) {
		size_t pos = 0;
		uint64_t txn;
		void *val;
		while (idmap_next(maps[k], &pos, &txn, &val)) {
			if (k == 1 && dlog_find_commit(log, txn) != NULL)
				continue; /* counted with its COMMIT */
			if (!recscan_txn_prepared(scan, txn))
				n++;
		}
	}
	return n;
}

static void print_table(const Config *cfg, const RecScan *scan, const StatusLog *sl)
{
	const char *hdr[7] = {"PARTICIPANT", "GID", "OWNER", "AGE", "XID AGE", "LOG", "ACTION"};
	size_t w[7];
	char age[32], xid[32];

	printf("coordinator %s, decision log %s: %llu records in %llu segments; %llu decided transactions not "
	       "yet done, %llu heuristic decisions\n",
	       cfg->coord_id, cfg->log_dir, (unsigned long long)sl->st.records, (unsigned long long)sl->st.segments,
	       (unsigned long long)sl->st.live_commits, (unsigned long long)sl->st.live_heuristics);
	if (sl->holder != 0)
		printf("NOTE: %s is running and holds the log. Transactions it has in flight may appear below "
		       "for a moment (prepared, and \"presumed abort\" until their COMMIT record is durable); its "
		       "sweeper settles ours that nobody is finishing.\n",
		       sl->holder_desc);
	else
		printf("twopcd is not running: 'twopc-recover resolve' (or starting twopcd) settles what is shown "
		       "below.\n");
	/* Finished transactions whose Idempotency-Key the log still holds are
	 * no undecided work: shown so that the log's size makes sense. */
	if (sl->st.idem_keys > 0)
		printf("The log also remembers the Idempotency-Keys of %llu finished transactions (until "
		       "idempotency_ttl_s after each commit); nothing to do about them.\n",
		       (unsigned long long)sl->st.idem_keys);
	if (sl->st.torn_tail_bytes > 0 && sl->holder == 0)
		printf("NOTE: the newest log segment ends in %llu bytes that are not a complete record (a torn "
		       "tail); twopcd and resolve truncate it; 'check-log' shows where.\n",
		       (unsigned long long)sl->st.torn_tail_bytes);

	printf("\nParticipants:\n");
	for (size_t p = 0; p < scan->nparts; p++) {
		const RecPart *rp = &scan->parts[p];
		size_t n = 0;
		for (size_t i = 0; i < scan->nxacts; i++)
			n += scan->xacts[i].part == p;
		if (rp->reachable)
			printf("  %-20s %s, database %s: %zu prepared\n", rp->pc->name, rp->server, rp->database, n);
		else
			printf("  %-20s UNREACHABLE: %s\n", rp->pc->name, rp->error);
	}
	printf("\n");
	if (scan->nxacts == 0) {
		printf("No prepared transaction on any %sparticipant.\n", scan->unreachable ? "reachable " : "");
	} else {
		for (int c = 0; c < 7; c++)
			w[c] = strlen(hdr[c]);
		for (size_t i = 0; i < scan->nxacts; i++) {
			const RecXact *x = &scan->xacts[i];
			recover_format_age(age, sizeof(age), x->px.age_s);
			snprintf(xid, sizeof(xid), "%lld", (long long)x->px.xid_age);
			size_t len[7] = {strlen(scan->parts[x->part].pc->name),
			                 strlen(x->px.gid),
			                 strlen(x->px.owner),
			                 strlen(age),
			                 strlen(xid),
			                 strlen(log_column(x)),
			                 strlen(xact_action_name(x->action))};
			for (int c = 0; c < 7; c++)
				w[c] = len[c] > w[c] ? len[c] : w[c];
		}
		printf("%-*s  %-*s  %-*s  %*s  %*s  %-*s  %s\n", (int)w[0], hdr[0], (int)w[1], hdr[1], (int)w[2],
		       hdr[2], (int)w[3], hdr[3], (int)w[4], hdr[4], (int)w[5], hdr[5], hdr[6]);
		for (size_t i = 0; i < scan->nxacts; i++) {
			const RecXact *x = &scan->xacts[i];
			recover_format_age(age, sizeof(age), x->px.age_s);
			snprintf(xid, sizeof(xid), "%lld", (long long)x->px.xid_age);
			printf("%-*s  %-*s  %-*s  %*s  %*s  %-*s  %s\n", (int)w[0], scan->parts[x->part].pc->name,
			       (int)w[1], x->px.gid, (int)w[2], x->px.owner, (int)w[3], age, (int)w[4], xid, (int)w[5],
			       log_column(x), xact_action_name(x->action));
		}
	}
	printf("\n%zu prepared transactions on %zu participants (%zu unreachable): %zu to COMMIT, %zu to "
	       "ROLLBACK, %zu not ours (LEAVE)",
	       scan->nxacts, scan->nparts, scan->unreachable, scan->commit, scan->rollback, scan->leave);
	if (sl->pending_done > 0)
		printf("; %llu decided transactions have no branch left and wait only for their DONE record",
		       (unsigned long long)sl->pending_done);
	printf(".\n");
	if (scan->unreachable > 0)
		printf("Unreachable participants may hold prepared transactions that are not shown.\n");
	if (scan->leave > 0)
		printf("Transactions marked LEAVE belong to another application or coordinator: twopc never touches "
		       "them. A long-prepared transaction holds its locks and holds back VACUUM: find its owner.\n");
}

static json_t *json_status(const Config *cfg, const RecScan *scan, const StatusLog *sl)
{
	json_t *doc = json_object(), *parts = json_array(), *xacts = json_array(), *o;

	json_object_set_new(doc, "coordinator", json_string(cfg->coord_id));
	json_object_set_new(doc, "config", json_string(cfg->path));
	o = json_object();
	json_object_set_new(o, "running", json_boolean(sl->holder != 0));
	json_object_set_new(o, "pid", sl->holder > 0 ? json_integer(sl->holder) : json_null());
	json_object_set_new(o, "holder", sl->holder != 0 ? json_string(sl->holder_desc) : json_null());
	json_object_set_new(doc, "twopcd", o);
	o = json_object();
	json_object_set_new(o, "dir", json_string(cfg->log_dir));
	json_object_set_new(o, "segments", json_integer((json_int_t)sl->st.segments));
	json_object_set_new(o, "records", json_integer((json_int_t)sl->st.records));
	json_object_set_new(o, "live_commits", json_integer((json_int_t)sl->st.live_commits));
	json_object_set_new(o, "live_heuristics", json_integer((json_int_t)sl->st.live_heuristics));
	json_object_set_new(o, "torn_tail_bytes", json_integer((json_int_t)sl->st.torn_tail_bytes));
	json_object_set_new(o, "pending_done", json_integer((json_int_t)sl->pending_done));
	json_object_set_new(o, "live_keyed", json_integer((json_int_t)sl->st.live_keyed));
	json_object_set_new(o, "idem_keys", json_integer((json_int_t)sl->st.idem_keys));
	json_object_set_new(doc, "log", o);

	for (size_t p = 0; p < scan->nparts; p++) {
		const RecPart *rp = &scan->parts[p];
		size_t n = 0;
		for (size_t i = 0; i < scan->nxacts; i++)
			n += scan->xacts[i].part == p;
		o = json_object();
		json_object_set_new(o, "name", json_string(rp->pc->name));
		json_object_set_new(o, "reachable", json_boolean(rp->reachable));
		json_object_set_new(o, "error", rp->reachable ? json_null() : json_string(rp->error));
		json_object_set_new(o, "server", rp->reachable ? json_string(rp->server) : json_null());
		json_object_set_new(o, "database", rp->reachable ? json_string(rp->database) : json_null());
		json_object_set_new(o, "prepared", rp->reachable ? json_integer((json_int_t)n) : json_null());
		json_array_append_new(parts, o);
	}
	json_object_set_new(doc, "participants", parts);

	for (size_t i = 0; i < scan->nxacts; i++) {
		const RecXact *x = &scan->xacts[i];
		char id[TXN_ID_HEX + 1];
		o = json_object();
		json_object_set_new(o, "participant", json_string(scan->parts[x->part].pc->name));
		json_object_set_new(o, "gid", json_string(x->px.gid));
		json_object_set_new(o, "ours", json_boolean(x->ours));
		if (x->ours) {
			txn_id_format(id, x->txn);
			json_object_set_new(o, "txn_id", json_string(id));
		} else {
			json_object_set_new(o, "txn_id", json_null());
		}
		json_object_set_new(o, "owner", json_string(x->px.owner));
		json_object_set_new(o, "database", json_string(x->px.database));
		json_object_set_new(o, "age_s", json_integer((json_int_t)x->px.age_s));
		json_object_set_new(o, "xid_age", json_integer((json_int_t)x->px.xid_age));
		json_object_set_new(o, "log", json_string(log_column(x)));
		json_object_set_new(o, "action", json_string(xact_action_name(x->action)));
		json_array_append_new(xacts, o);
	}
	json_object_set_new(doc, "transactions", xacts);

	o = json_object();
	json_object_set_new(o, "prepared", json_integer((json_int_t)scan->nxacts));
	json_object_set_new(o, "ours", json_integer((json_int_t)(scan->commit + scan->rollback)));
	json_object_set_new(o, "commit", json_integer((json_int_t)scan->commit));
	json_object_set_new(o, "rollback", json_integer((json_int_t)scan->rollback));
	json_object_set_new(o, "leave", json_integer((json_int_t)scan->leave));
	json_object_set_new(o, "participants", json_integer((json_int_t)scan->nparts));
	json_object_set_new(o, "unreachable", json_integer((json_int_t)scan->unreachable));
	json_object_set_new(o, "in_doubt", json_boolean(scan->nxacts > 0 || scan->unreachable > 0));
	json_object_set_new(doc, "summary", o);
	return doc;
}

int recover_status(const Config *cfg, bool json)
{
	StatusLog sl;
	Dlog *log = NULL;
	RecScan scan;
	char err[1024];
	int rc;

	memset(&sl, 0, sizeof(sl));
	if (!recover_open_log_readonly(cfg, &log, &sl.st, &sl.holder, err, sizeof(err))) {
		fprintf(stderr, "twopc-recover: status: %s\n", err);
		return RECOVER_EXIT_ERROR;
	}
	if (sl.holder != 0)
		recover_describe_holder(sl.holder, sl.holder_desc, sizeof(sl.holder_desc));
	recscan_run(&scan, cfg, log, false);
	sl.pending_done = count_pending_done(log, &scan);
	if (json) {
		json_t *doc = json_status(cfg, &scan, &sl);
		if (json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
			fprintf(stderr, "twopc-recover: status: cannot write the JSON document\n");
		printf("\n");
		json_decref(doc);
	} else {
		print_table(cfg, &scan, &sl);
	}
	for (size_t p = 0; p < scan.nparts; p++) {
		if (!scan.parts[p].reachable)
			fprintf(stderr, "twopc-recover: status: participant %s is unreachable: %s\n",
			        scan.parts[p].pc->name, scan.parts[p].error);
	}
	if (scan.unreachable > 0)
		rc = RECOVER_EXIT_ERROR;
	else
		rc = scan.nxacts > 0 ? RECOVER_EXIT_PROBLEM : RECOVER_EXIT_OK;
	recscan_free(&scan);
	dlog_close(log);
	return rc;
}
