/*
 * sweeper: finds prepared transactions of ours that nobody is finishing and
 * settles them by the log — COMMIT PREPARED where the log says commit,
 * ROLLBACK PREPARED otherwise (presumed abort) — every sweep_interval_ms
 * and on demand (POST /v1/sweep).
 *
 * Race safety (the classic bug rolls back a transaction that is just being
 * committed): per participant, read our prepared GIDs (P); consult the
 * in-flight table and the log; read them again (Q); act only on GIDs in
 * both P and Q that are not in flight and older than sweep_grace_ms. A
 * transaction whose COMMIT record waits for its fsync is in flight.
 *
 * It selects its rows by our GID prefix and coordinator id AND
 * database = current_database(). Others' prepared transactions are never
 * touched, only reported (gid, database, owner, age). It runs on the event
 * loop and takes a pool connection for one query at a time.
 */
#ifndef TWOPC_SWEEPER_H
#define TWOPC_SWEEPER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "decision_log.h"
#include "pool.h"
#include "txn.h"

struct event_base;
typedef struct Sweeper Sweeper;

typedef struct SweepPartReport {
	bool reachable;
	char error[256];
	uint64_t ours;        /* our prepared transactions seen (first read) */
	uint64_t committed;   /* COMMIT PREPARED done */
	uint64_t rolled_back; /* ROLLBACK PREPARED done */
	uint64_t skipped;     /* in flight, too young, or gone by the second read */
	uint64_t foreign;     /* not ours: left alone */
	uint64_t oldest_age_s; /* of any prepared transaction in this database */
	uint64_t oldest_xid_age;
} SweepPartReport;

typedef struct SweepReport {
	uint64_t run;		      /* sweep number */
	SweepPartReport *parts;	      /* one per participant, config order */
	size_t nparts;
	uint64_t decisions_completed; /* decisions (e.g. heuristic) found complete: DONE written */
	uint64_t heuristic_hazards;   /* total since start */
	int64_t duration_us;
} SweepReport;

typedef void (*SweepDoneFn)(const SweepReport *report, void *arg);

Sweeper *sweeper_new(struct event_base *base, const Config *cfg, Dlog *dlog, TxnMgr *mgr, Pool **pools);
void sweeper_free(Sweeper *s);
/* Starts the periodic sweeps. */
void sweeper_start(Sweeper *s);
/* sweep_interval_ms changed (SIGHUP): re-arm the timer. */
void sweeper_reschedule(Sweeper *s);
/* Runs a full sweep that starts after this call (queued behind a running
 * one); done(report, arg) runs when it is over. */
void sweeper_request(Sweeper *s, SweepDoneFn done, void *arg);

typedef struct SweeperStats {
	uint64_t runs;
	uint64_t committed, rolled_back;
	uint64_t foreign_seen;
} SweeperStats;
void sweeper_get_stats(const Sweeper *s, SweeperStats *out);
/* What the last finished sweep found per participant (config order), or
 * NULL before the first one. */
const SweepPartReport *sweeper_last_report(const Sweeper *s);

#endif
