/*
 * sweeper: the periodic, race-safe settlement of our stuck prepared
 * transactions. See sweeper.h for the rules.
 *
 * One sweep runs all participants in parallel; each participant walks
 * READ_P -> READ_Q -> ACT (one statement per action) -> DONE, taking a pool
 * connection for exactly one query at a time. A watchdog ends a sweep that
 * a silent participant (a partition) would otherwise hold forever.
 */
#include "sweeper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "fault.h"
#include "gid.h"
#include "log.h"
#include "recovery.h"

#define SWEEP_WATCHDOG_US (30 * 1000000LL)
#define SWEEP_QUERY                                                                                                    \
	"SELECT gid, owner, database, COALESCE(extract(epoch FROM now() - prepared), 0)::bigint, "                     \
	"age(transaction)::bigint FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared"
/* Foreign prepared transactions are reported once each (then at debug):
 * a bounded memory of gid hashes, allocated when the first one is seen (32
 * KiB that most coordinators never need; calloc would clear, and so make
 * resident, all of it at start). */
#define FOREIGN_MEMORY 4096

typedef enum SweepStep {
	SP_READ_P, /* first read of pg_prepared_xacts */
	SP_READ_Q, /* second read, after consulting the in-flight table and the log */
	SP_ACT,    /* COMMIT/ROLLBACK PREPARED, one at a time */
	SP_DONE,   /* finished (or given up) */
} SweepStep;

typedef struct Candidate {
	char gid[GID_MAX + 1];
	uint64_t txn;
	bool in_q;
	bool commit;
} Candidate;

typedef struct SweepPart {
	Sweeper *sw;
	size_t index;
	Pool *pool;
	const char *name;
	SweepStep step;
	PoolWaiter waiter;
	PgConn *conn; /* while a query runs */
	PgJob job;
	PgQuery query;
	char sql[GID_MAX + 32];

	Candidate *cands; /* ours from P, not in flight, old enough */
	size_t ncands, act;
	uint64_t *seen_q; /* txn ids of all our GIDs in Q (for decision GC) */
	size_t nseen_q;
	SweepPartReport rep;
} SweepPart;

typedef struct Waiter {
	SweepDoneFn fn;
	void *arg;
	struct Waiter *next;
} Waiter;

struct Sweeper {
	struct event_base *base;
	const Config *cfg;
	Dlog *dlog;
	TxnMgr *mgr;
	Pool **pools;
	size_t nparts;

	bool running;
	SweepPart *parts;
	size_t active_parts;
	int64_t started_us;
	uint64_t run;
	Waiter *current; /* waiting for the running sweep */
	Waiter *next;    /* waiting for the one after it */

	struct event *ev_timer;    /* periodic sweeps */
	struct event *ev_watchdog; /* ends a sweep stuck on a silent participant */
	struct event *ev_start;    /* starts a requested sweep from the loop */

	uint64_t *foreign_seen;     /* FOREIGN_MEMORY hashes, or NULL until needed */
	SweeperStats stats;
	SweepPartReport *last;      /* the last finished sweep's reports */
	int64_t *xid_warned_us;     /* per participant: last xmin-horizon warning */
};

#define XID_WARNING_EVERY_US (5 * 60 * 1000000LL)

static void part_next(SweepPart *p);
static void sweep_finish(Sweeper *s);

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h ? h : 1;
}

/* True the first time a foreign gid is seen (within a bounded memory). */
static bool foreign_first_time(Sweeper *s, const char *gid)
{
	uint64_t h = hash_str(gid);
	size_t slot = h % FOREIGN_MEMORY;
	if (s->foreign_seen == NULL)
		s->foreign_seen = xcalloc(FOREIGN_MEMORY, sizeof(uint64_t));
	if (s->foreign_seen[slot] == h)
		return false;
	s->foreign_seen[slot] = h;
	return true;
}

static void part_fail(SweepPart *p, const char *why)
{
	p->rep.reachable = false;
	snprintf(p->rep.error, sizeof(p->rep.error), "%s", why);
	log_part(LOG_WARNING, p->name, "sweep: %s", why);
	p->step = SP_DONE;
	part_next(p);
}

/* ---- one query at a time ------------------------------------------------------ */

static void on_query_done(PgJob *job, PgConn *conn, PgJobStatus st);

static void on_conn(PoolWaiter *w, PgConn *conn, const char *err)
{
	SweepPart *p = w->arg;
	if (conn == NULL) {
		part_fail(p, err);
		return;
	}
	p->conn = conn;
	pgconn_run(conn, &p->job);
}

static void run_query(SweepPart *p, const char *sql)
{
	snprintf(p->sql, sizeof(p->sql), "%s", sql);
	p->query.sql = p->sql;
	p->query.nparams = 0;
	p->query.params = NULL;
	p->job.queries = &p->query;
	p->job.nqueries = 1;
	p->job.done = on_query_done;
	p->job.arg = p;
	p->waiter.fn = on_conn;
	p->waiter.arg = p;
	p->waiter.priority = p->step == SP_ACT; /* settling frees locks others wait for */
	p->waiter.deadline_us = now_mono_us() + 5 * 1000000LL;
	pool_acquire(p->pool, &p->waiter);
}

static bool gid_in_result(const PGresult *r, const char *gid)
{
	for (int i = 0; i < PQntuples(r); i++) {
		if (strcmp(PQgetvalue(r, i, 0), gid) == 0)
			return true;
	}
	return false;
}

/* First read: sort what we see into ours (candidates) and others'. */
static void handle_p(SweepPart *p, const PGresult *r)
{
	Sweeper *s = p->sw;
	int n = PQntuples(r);

	p->cands = xcalloc((size_t)n + 1, sizeof(Candidate));
	for (int i = 0; i < n; i++) {
		const char *gid = PQgetvalue(r, i, 0);
		int64_t age = strtoll(PQgetvalue(r, i, 3), NULL, 10);
		int64_t xid_age = strtoll(PQgetvalue(r, i, 4), NULL, 10);
		uint64_t txn;
		unsigned idx;

		if ((uint64_t)age > p->rep.oldest_age_s)
			p->rep.oldest_age_s = (uint64_t)age;
		if ((uint64_t)xid_age > p->rep.oldest_xid_age)
			p->rep.oldest_xid_age = (uint64_t)xid_age;
		if (!gid_parse(gid, s->cfg->coord_id, &txn, &idx)) {
			p->rep.foreign++;
			log_part(foreign_first_time(s, gid) ? LOG_WARNING : LOG_DEBUG, p->name,
			         "prepared transaction not ours, left alone: gid=%s database=%s owner=%s age=%llds "
			         "xid_age=%lld",
			         gid, PQgetvalue(r, i, 2), PQgetvalue(r, i, 1), (long long)age, (long long)xid_age);
			continue;
		}
		p->rep.ours++;
		/* Someone is finishing it, or may be about to: leave it. */
		if (txnmgr_is_in_flight(s->mgr, txn) || age * 1000 < s->cfg->sweep_grace_ms) {
			p->rep.skipped++;
			continue;
		}
		Candidate *c = &p->cands[p->ncands++];
		strlcpy_s(c->gid, gid, sizeof(c->gid));
		c->txn = txn;
	}
}

/* Second read: keep candidates still there; decide each by the log. */
static void handle_q(SweepPart *p, const PGresult *r)
{
	Sweeper *s = p->sw;
	size_t keep = 0;

	p->seen_q = xcalloc((size_t)PQntuples(r) + 1, sizeof(uint64_t));
	for (int i = 0; i < PQntuples(r); i++) {
		uint64_t txn;
		unsigned idx;
		if (gid_parse(PQgetvalue(r, i, 0), s->cfg->coord_id, &txn, &idx))
			p->seen_q[p->nseen_q++] = txn;
	}
	for (size_t i = 0; i < p->ncands; i++) {
		Candidate *c = &p->cands[i];
		DlogDecision d;
		uint64_t txn;

		/* In both reads and still not in flight: nobody is finishing it. */
		if (!gid_in_result(r, c->gid) || txnmgr_is_in_flight(s->mgr, c->txn)) {
			p->rep.skipped++;
			continue;
		}
		XactAction a = recovery_classify(s->cfg, s->dlog, c->gid, &txn, &d);
		if (a == XACT_LEAVE)
			continue;
		c->commit = a == XACT_COMMIT;
		p->cands[keep++] = *c;
		log_txn(LOG_INFO, c->txn, "participant=%s sweep: %s %s (log: %s)", p->name,
		        c->commit ? "committing" : "rolling back", c->gid, dlog_decision_name(d));
	}
	p->ncands = keep;
	p->act = 0;
}

static void on_query_done(PgJob *job, PgConn *conn, PgJobStatus st)
{
	SweepPart *p = job->arg;
	Sweeper *s = p->sw;
	PGresult *r = job->nresults > 0 ? job->results[0] : NULL;
	ExecStatusType rs = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	char msg[512];

	p->conn = NULL;
	if (st == PGJOB_CONN_LOST) {
		snprintf(msg, sizeof(msg), "connection lost: %s", job->error);
		pgjob_clear_results(job);
		pool_release(p->pool, conn);
		part_fail(p, msg);
		return;
	}
	switch (p->step) {
	case SP_READ_P:
	case SP_READ_Q:
		if (rs != PGRES_TUPLES_OK) {
			pg_result_message(r, msg, sizeof(msg));
			pgjob_clear_results(job);
			pool_release(p->pool, conn);
			part_fail(p, msg);
			return;
		}
		if (p->step == SP_READ_P) {
			handle_p(p, r);
			p->step = SP_READ_Q;
		} else {
			handle_q(p, r);
			p->step = SP_ACT;
		}
		break;
	case SP_ACT: {
		Candidate *c = &p->cands[p->act++];
		if (rs == PGRES_COMMAND_OK) {
			if (c->commit) {
				p->rep.committed++;
				s->stats.committed++;
			} else {
				p->rep.rolled_back++;
				s->stats.rolled_back++;
			}
			txnmgr_note_outcome(s->mgr, c->txn, c->commit);
		} else if (strcmp(pg_sqlstate(r), "42704") == 0) {
			/* It was in both reads, nobody of ours was finishing it, and yet
			 * it is gone: someone outside twopc decided it. */
			txnmgr_note_heuristic_hazard(s->mgr, c->txn, p->name, c->gid,
			                             "vanished between the sweeper's reads and its action");
		} else {
			pg_result_message(r, msg, sizeof(msg));
			log_txn(LOG_WARNING, c->txn,
			        "participant=%s sweep: %s PREPARED %s failed: %s %s; next sweep "
			        "retries",
			        p->name, c->commit ? "COMMIT" : "ROLLBACK", c->gid, pg_sqlstate(r), msg);
		}
		break;
	}
	case SP_DONE:
		break;
	}
	pgjob_clear_results(job);
	pool_release(p->pool, conn);
	part_next(p);
}

/* Takes the participant one step further. */
static void part_next(SweepPart *p)
{
	Sweeper *s = p->sw;

	switch (p->step) {
	case SP_READ_P:
		run_query(p, SWEEP_QUERY);
		return;
	case SP_READ_Q:
		/* Between the reads: the in-flight table and the log were consulted
		 * (handle_p); a crash here must lose nothing. */
		FAULT_POINT(FAULT_SWEEP_BETWEEN_READS);
		run_query(p, SWEEP_QUERY);
		return;
	case SP_ACT:
		if (p->act < p->ncands) {
			char sql[GID_MAX + 32];
			Candidate *c = &p->cands[p->act];
			/* The GID parsed as ours: only [A-Za-z0-9_], safe as a literal. */
			snprintf(sql, sizeof(sql), "%s PREPARED '%s'", c->commit ? "COMMIT" : "ROLLBACK", c->gid);
			run_query(p, sql);
			return;
		}
		p->step = SP_DONE;
		/* fall through */
	case SP_DONE:
		if (s->active_parts > 0 && --s->active_parts == 0)
			sweep_finish(s);
		return;
	}
}

/* ---- sweeps ---------------------------------------------------------------- */

static void sweep_start(Sweeper *s)
{
	struct timeval wd = {SWEEP_WATCHDOG_US / 1000000, 0};

	s->running = true;
	s->run++;
	s->started_us = now_mono_us();
	s->current = s->next;
	s->next = NULL;
	s->parts = xcalloc(s->nparts, sizeof(SweepPart));
	s->active_parts = s->nparts;
	event_add(s->ev_watchdog, &wd);
	for (size_t i = 0; i < s->nparts; i++) {
		SweepPart *p = &s->parts[i];
		p->sw = s;
		p->index = i;
		p->pool = s->pools[i];
		p->name = s->cfg->participants[i].name;
		p->rep.reachable = true;
		p->step = SP_READ_P;
	}
	for (size_t i = 0; i < s->nparts; i++)
		part_next(&s->parts[i]);
}

/* Decisions (COMMIT or HEURISTIC records) of transactions that are not in
 * flight and have no prepared branch left anywhere are complete: DONE. Only
 * after a sweep that reached every participant. */
static uint64_t complete_decisions(Sweeper *s)
{
	const IdMap *maps[2] = {dlog_live_commits(s->dlog), dlog_live_heuristics(s->dlog)};
	uint64_t *done = NULL, n = 0, cap = 0;

	for (size_t i = 0; i < s->nparts; i++) {
		if (!s->parts[i].rep.reachable)
			return 0;
	}
	for (int k = 0; k < 2; k++) {
		size_t pos = 0;
		uint64_t txn;
		void *val;
		while (idmap_next(maps[k], &pos, &txn, &val)) {
			const DlogRecord *rec =
			    k == 0 ? dlog_find_commit(s->dlog, txn) : dlog_find_heuristic(s->dlog, txn);
			bool prepared = txnmgr_is_in_flight(s->mgr, txn);
			/* A branch on a participant no longer configured cannot be
			 * seen: the decision must stay until it is back. */
			for (uint16_t b = 0; b < rec->nbranches && !prepared; b++)
				prepared = config_find_participant(s->cfg, rec->branches[b].name) == NULL;
			for (size_t i = 0; i < s->nparts && !prepared; i++) {
				for (size_t j = 0; j < s->parts[i].nseen_q && !prepared; j++)
					prepared = s->parts[i].seen_q[j] == txn;
			}
			if (prepared)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				done = xrealloc(done, cap * sizeof(uint64_t));
			}
			done[n++] = txn;
		}
	}
	for (uint64_t i = 0; i < n; i++) {
		log_txn(LOG_INFO, done[i], "sweep: decision complete on every participant: DONE");
		dlog_append_done(s->dlog, done[i]);
	}
	free(done);
	return n;
}

static void sweep_finish(Sweeper *s)
{
	SweepReport rep;
	Waiter *w;

	event_del(s->ev_watchdog);
	memset(&rep, 0, sizeof(rep));
	rep.run = s->run;
	rep.nparts = s->nparts;
	rep.parts = xcalloc(s->nparts, sizeof(SweepPartReport));
	for (size_t i = 0; i < s->nparts; i++)
		rep.parts[i] = s->parts[i].rep;
	rep.decisions_completed = complete_decisions(s);
	rep.heuristic_hazards = txnmgr_heuristic_hazards(s->mgr);
	rep.duration_us = now_mono_us() - s->started_us;
	s->stats.runs++;
	if (s->last == NULL)
		s->last = xcalloc(s->nparts, sizeof(SweepPartReport));
	if (s->xid_warned_us == NULL)
		s->xid_warned_us = xcalloc(s->nparts, sizeof(int64_t));
	memcpy(s->last, rep.parts, s->nparts * sizeof(SweepPartReport));
	for (size_t i = 0; i < s->nparts; i++) {
		SweepPart *p = &s->parts[i];
		s->stats.foreign_seen += p->rep.foreign;
		/* A prepared transaction holds back the xmin horizon of its whole
		 * cluster: vacuum cannot remove what died after it, and its xid
		 * ages towards wraparound. Say so, now and then, while it lasts. */
		if (p->rep.reachable && (int64_t)p->rep.oldest_xid_age > s->cfg->prepared_xid_age_warning &&
		    now_mono_us() - s->xid_warned_us[i] >= XID_WARNING_EVERY_US) {
			s->xid_warned_us[i] = now_mono_us();
			log_part(LOG_WARNING, p->name,
			         "the oldest prepared transaction is %llu transaction ids old (prepared %llu s ago; "
			         "prepared_xid_age_warning is %lld): it holds back vacuum's xmin horizon; see "
			         "GET /v1/in-doubt and twopc-recover status",
			         (unsigned long long)p->rep.oldest_xid_age, (unsigned long long)p->rep.oldest_age_s,
			         (long long)s->cfg->prepared_xid_age_warning);
		}
		if (p->rep.committed || p->rep.rolled_back)
			log_part(LOG_INFO, p->name, "sweep %llu: %llu committed, %llu rolled back, %llu skipped",
			         (unsigned long long)s->run, (unsigned long long)p->rep.committed,
			         (unsigned long long)p->rep.rolled_back, (unsigned long long)p->rep.skipped);
		free(p->cands);
		free(p->seen_q);
	}
	free(s->parts);
	s->parts = NULL;
	s->running = false;
	for (w = s->current; w;) {
		Waiter *next = w->next;
		w->fn(&rep, w->arg);
		free(w);
		w = next;
	}
	s->current = NULL;
	free(rep.parts);
	if (s->next != NULL)
		event_active(s->ev_start, 0, 0);
}

/* A participant that stopped answering mid-sweep (a partition): give up on
 * it for this sweep. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	Sweeper *s = arg;
	for (size_t i = 0; i < s->nparts; i++) {
		SweepPart *p = &s->parts[i];
		if (p->step == SP_DONE)
			continue;
		if (p->conn != NULL) {
			pool_discard(p->pool, p->conn);
			p->conn = NULL;
			pgjob_clear_results(&p->job);
		} else {
			pool_cancel(p->pool, &p->waiter);
		}
		p->step = SP_DONE;
		p->rep.reachable = false;
		snprintf(p->rep.error, sizeof(p->rep.error), "no answer within %lld s", SWEEP_WATCHDOG_US / 1000000);
		log_part(LOG_WARNING, p->name, "sweep: %s; giving up on it until the next sweep", p->rep.error);
		if (s->active_parts > 0)
			s->active_parts--;
	}
	if (s->running && s->active_parts == 0)
		sweep_finish(s);
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
	Sweeper *s = arg;
	if (!s->running)
		sweep_start(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	Sweeper *s = arg;
	if (!s->running)
		sweep_start(s);
}

Sweeper *sweeper_new(struct event_base *base, const Config *cfg, Dlog *dlog, TxnMgr *mgr, Pool **pools)
{
	Sweeper *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->cfg = cfg;
	s->dlog = dlog;
	s->mgr = mgr;
	s->pools = pools;
	s->nparts = cfg->nparticipants;
	s->ev_timer = event_new(base, -1, EV_PERSIST, on_timer, s);
	s->ev_watchdog = event_new(base, -1, 0, on_watchdog, s);
	s->ev_start = event_new(base, -1, 0, on_start, s);
	if (s->ev_timer == NULL || s->ev_watchdog == NULL || s->ev_start == NULL)
		log_fatal("libevent: cannot allocate the sweeper's events");
	return s;
}

void sweeper_start(Sweeper *s)
{
	struct timeval tv = {s->cfg->sweep_interval_ms / 1000, (s->cfg->sweep_interval_ms % 1000) * 1000};
	event_add(s->ev_timer, &tv);
}

void sweeper_reschedule(Sweeper *s)
{
	event_del(s->ev_timer);
	sweeper_start(s);
}

void sweeper_request(Sweeper *s, SweepDoneFn done, void *arg)
{
	Waiter *w = xcalloc(1, sizeof(*w));
	w->fn = done;
	w->arg = arg;
	/* Always a sweep that starts after the request: one already running may
	 * have read P before whatever the caller wants swept. */
	w->next = s->next;
	s->next = w;
	if (!s->running)
		event_active(s->ev_start, 0, 0);
}

const SweepPartReport *sweeper_last_report(const Sweeper *s)
{
	return s->last;
}

void sweeper_get_stats(const Sweeper *s, SweeperStats *out)
{
	*out = s->stats;
}

void sweeper_free(Sweeper *s)
{
	if (s == NULL)
		return;
	if (s->parts) {
		for (size_t i = 0; i < s->nparts; i++) {
			SweepPart *p = &s->parts[i];
			if (p->conn)
				pool_discard(p->pool, p->conn);
			else if (p->step != SP_DONE)
				pool_cancel(p->pool, &p->waiter);
			pgjob_clear_results(&p->job);
			free(p->cands);
			free(p->seen_q);
		}
		free(s->parts);
	}
	for (Waiter *lists[2] = {s->current, s->next}, **l = lists; l < lists + 2; l++) {
		for (Waiter *w = *l; w;) {
			Waiter *next = w->next;
			free(w);
			w = next;
		}
	}
	event_free(s->ev_timer);
	event_free(s->ev_watchdog);
	event_free(s->ev_start);
	free(s->last);
	free(s->xid_warned_us);
	free(s->foreign_seen);
	free(s);
}
