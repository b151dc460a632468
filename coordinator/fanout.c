/*
 * fanout: a query per participant, in parallel, with a deadline each.
 */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "util.h"

#define FANOUT_MAX_PARAMS 4

typedef struct FanoutSlot {
	Fanout *f;
	size_t index;
	Pool *pool;
	PoolWaiter waiter;
	PgJob job;
	PgQuery query;
	PgConn *conn; /* while the query runs */
	bool finished;
} FanoutSlot;

struct Fanout {
	FanoutSlot *slots;
	size_t n, left;
	char *sql;
	char *params[FANOUT_MAX_PARAMS];
	const char *param_ptrs[FANOUT_MAX_PARAMS];
	int nparams;
	FanoutEachFn each;
	FanoutDoneFn done;
	void *arg;
	int64_t timeout_ms;
	struct event *watchdog; /* gives up on queries that do not answer */
};

static void fanout_release(Fanout *f)
{
	if (--f->left > 0)
		return;
	f->done(f->arg);
	event_free(f->watchdog);
	for (int i = 0; i < f->nparams; i++)
		free(f->params[i]);
	free(f->sql);
	free(f->slots);
	free(f);
}

static void slot_finished(FanoutSlot *s)
{
	s->finished = true;
	s->conn = NULL;
	fanout_release(s->f);
}

/* A participant that took a connection and then went silent (a
 * partition): drop that connection and report it. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	Fanout *f = arg;
	char msg[96];

	(void)fd;
	(void)what;
	snprintf(msg, sizeof(msg), "no answer within %lld ms", (long long)f->timeout_ms);
	f->left++; /* keep f alive through the loop */
	for (size_t i = 0; i < f->n; i++) {
		FanoutSlot *s = &f->slots[i];
		if (s->finished || s->conn == NULL)
			continue;
		pool_discard(s->pool, s->conn);
		pgjob_clear_results(&s->job);
		f->each(s->index, NULL, msg, f->arg);
		slot_finished(s);
	}
	fanout_release(f);
}

static void on_job(PgJob *job, PgConn *conn, PgJobStatus st)
{
	FanoutSlot *s = job->arg;
	PGresult *r = job->nresults > 0 ? job->results[0] : NULL;
	char msg[512];

	if (st == PGJOB_CONN_LOST) {
		snprintf(msg, sizeof(msg), "connection lost: %s", job->error);
		s->f->each(s->index, NULL, msg, s->f->arg);
	} else if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_result_message(r, msg, sizeof(msg));
		s->f->each(s->index, NULL, msg, s->f->arg);
	} else {
		s->f->each(s->index, r, NULL, s->f->arg);
	}
	pgjob_clear_results(job);
	pool_release(s->pool, conn);
	slot_finished(s);
}


static void on_conn(PoolWaiter *w, PgConn *conn, const char *err)
{
	FanoutSlot *s = w->arg;

	if (conn == NULL) {
		s->f->each(s->index, NULL, err, s->f->arg);
		slot_finished(s);
		return;
	}
	s->conn = conn;
	pgconn_run(conn, &s->job);
}

void fanout_run(struct event_base *base, Pool **pools, size_t n, const char *sql, int nparams,
                const char *const *params, int64_t timeout_ms, FanoutEachFn each, FanoutDoneFn done, void *arg)
{
	Fanout *f = xcalloc(1, sizeof(*f));
	struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};

	if (nparams > FANOUT_MAX_PARAMS)
		log_fatal("fanout: %d parameters (at most %d)", nparams, FANOUT_MAX_PARAMS);
	f->n = n;
	f->left = n + 1; /* + 1 until every slot has been started */
	f->timeout_ms = timeout_ms;
	f->sql = xstrdup(sql);
	f->nparams = nparams;
	for (int i = 0; i < nparams; i++) {
		f->params[i] = params[i] ? xstrdup(params[i]) : NULL;
		f->param_ptrs[i] = f->params[i];
	}
	f->each = each;
	f->done = done;
	f->arg = arg;
	f->watchdog = evtimer_new(base, on_watchdog, f);
	f->slots = xcalloc(n, sizeof(FanoutSlot));
	for (size_t i = 0; i < n; i++) {
		FanoutSlot *s = &f->slots[i];
		s->f = f;
		s->index = i;
		s->pool = pools[i];
		s->query.sql = f->sql;
		s->query.nparams = nparams;
		s->query.params = f->param_ptrs;
		s->job.queries = &s->query;
		s->job.nqueries = 1;
		s->job.done = on_job;
		s->job.arg = s;
		s->waiter.fn = on_conn;
		s->waiter.arg = s;
		s->waiter.priority = true;
		s->waiter.deadline_us = now_mono_us() + timeout_ms * 1000;
	}
	evtimer_add(f->watchdog, &tv);
	/* Acquire only after every slot is set up: a pool may answer at once. */
	for (size_t i = 0; i < n; i++)
		pool_acquire(f->slots[i].pool, &f->slots[i].waiter);
	fanout_release(f);
}
