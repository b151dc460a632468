/*
 * pool: connections to one participant, a FIFO of waiters, reconnection.
 * Connections are opened as waiters need them (up to the pool's size) and
 * then kept; only POOL_MIN_OPEN is opened at start and kept open while
 * idle.
 *
 * Every connection is in exactly one place: the connecting list, the idle
 * list, lent out (busy), or being cleaned (ROLLBACK after a dirty release).
 * Waiters are served only from dispatch(), which runs from the event loop
 * (never from inside pool_acquire), so callers never see re-entrant
 * callbacks.
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"

#define CONNECT_TIMEOUT_US   (5 * 1000000LL)
#define RECONNECT_BACKOFF_US (500 * 1000LL)
/* Connections kept open while nothing waits: one, so that an idle pool
 * still knows whether its participant is reachable (GET /healthz) and the
 * first request finds a connection. More are opened as requests wait for
 * one (dispatch), up to the pool's size: each open connection costs about
 * 14 KiB here (libpq's buffers) and a backend on the participant. */
#define POOL_MIN_OPEN 1

struct Pool {
	struct event_base *base;
	char *name;
	char *conninfo;
	char target[256]; /* the conninfo for the log: config_redact_conninfo() */
	char *appname;
	int size;

	PgConn *connecting; /* lists linked through pgconn_next */
	PgConn *idle;
	int nconnecting;
	int nidle;
	int nbusy;
	int ncleaning;

	PoolWaiter *whead, *wtail;
	int nwaiters;
	int64_t next_deadline_us; /* no waiter's deadline is earlier (starts at 0: look at the first tick) */

	bool reachable;
	int64_t last_fail_us;
	int64_t connect_fail_us; /* when a connection attempt last failed */
	char last_error[256];

	struct event *ev_dispatch;
};

typedef struct Cleanup {
	PgJob job;
	PgQuery q;
	Pool *pool;
} Cleanup;

static void dispatch(Pool *p);

static int total(const Pool *p)
{
	return p->nconnecting + p->nidle + p->nbusy + p->ncleaning;
}

static void list_push(PgConn **head, PgConn *c)
{
	pgconn_set_next(c, *head);
	*head = c;
}

static bool list_remove(PgConn **head, PgConn *c)
{
	for (PgConn **pp = head; *pp; pp = (PgConn **)pgconn_next_ref(*pp)) {
		if (*pp == c) {
			*pp = pgconn_next(c);
			pgconn_set_next(c, NULL);
			return true;
		}
	}
	return false;
}

static void on_dispatch(evutil_socket_t fd, short what, void *arg)
{
	dispatch(arg);
}

static void schedule_dispatch(Pool *p)
{
	event_active(p->ev_dispatch, 0, 0);
}

/* After a connection came back or went: only waiters have a use for a
 * dispatch (with none, dispatch() does nothing). */
static void dispatch_if_waiting(Pool *p)
{
	if (p->nwaiters > 0)
		schedule_dispatch(p);
}

static void waiter_unlink(Pool *p, PoolWaiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		p->whead = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		p->wtail = w->prev;
	w->prev = w->next = NULL;
	w->queued = false;
	p->nwaiters--;
}

static void fail_all_waiters(Pool *p)
{
	char why[320];
	snprintf(why, sizeof(why), "participant %s is unreachable: %s", p->name, p->last_error);
	while (p->whead) {
		PoolWaiter *w = p->whead;
		waiter_unlink(p, w);
		w->fn(w, NULL, why);
	}
}

static void mark_failure(Pool *p, const char *why)
{
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	p->last_fail_us = now_mono_us();
	if (p->nidle + p->nbusy + p->ncleaning == 0 && p->reachable) {
		/* Logged on the transition only: a down participant is probed
		 * twice a second and must not flood the log. */
		p->reachable = false;
		log_part(LOG_WARNING, p->name, "unreachable (%s): %s", p->target, why);
	}
}

/* An established connection broke (its backend was terminated, the
 * server restarted, a network blip): remembered, but no proof the
 * participant is down; only a failed attempt to connect is (mark_failure).
 * The next waiter opens a new connection. */
static void note_broken(Pool *p, const char *why)
{
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
}

static void on_connected(PgConn *conn, void *arg)
{
	Pool *p = arg;
	list_remove(&p->connecting, conn);
	p->nconnecting--;
	if (!p->reachable)
		log_part(LOG_INFO, p->name, "connected (%s): participant reachable", p->target);
	p->reachable = true;
	list_push(&p->idle, conn);
	p->nidle++;
	dispatch(p);
}

static void on_broken(PgConn *conn, void *arg)
{
	Pool *p = arg;

	if (list_remove(&p->connecting, conn)) {
		p->nconnecting--;
		mark_failure(p, pgconn_error(conn));
		p->connect_fail_us = p->last_fail_us;
		pgconn_free(conn);
		dispatch(p);
		return;
	} else if (list_remove(&p->idle, conn)) {
		p->nidle--;
	} else {
		/* Lent out (a prepared branch keeps its connection for phase 2):
		 * the borrower owns it and will find it broken when it next uses
		 * it, then release it. Freeing it here would pull it from under
		 * them. */
		note_broken(p, pgconn_error(conn));
		return;
	}
	note_broken(p, pgconn_error(conn));
	pgconn_free(conn);
	dispatch(p);
}

/* Starts one connection attempt; false if libpq refused at once (an
 * unresolvable host, a missing socket): then the backoff path takes over. */
static bool start_connect(Pool *p)
{
	PgConnCallbacks cbs = {.connected = on_connected, .broken = on_broken, .arg = p};
	char err[256];
	PgConn *c = pgconn_start(p->base, p->conninfo, p->appname, p->name, &cbs, err, sizeof(err));
	if (c == NULL) {
		mark_failure(p, err);
		p->connect_fail_us = p->last_fail_us;
		if (p->nidle + p->nbusy + p->ncleaning == 0)
			p->reachable = false; /* nothing open: probe with backoff from now on */
		return false;
	}
	list_push(&p->connecting, c);
	p->nconnecting++;
	return true;
}

Pool *pool_new(struct event_base *base, const char *name, const char *conninfo, const char *appname, int size)
{
	Pool *p = xcalloc(1, sizeof(*p));
	p->appname = xstrdup(appname);
	p->base = base;
	p->name = xstrdup(name);
	p->conninfo = xstrdup(conninfo);
	config_redact_conninfo(conninfo, p->target, sizeof(p->target));
	p->size = size;
	p->reachable = true; /* until a connection attempt says otherwise */
	p->ev_dispatch = event_new(base, -1, 0, on_dispatch, p);
	if (p->ev_dispatch == NULL)
		log_fatal("libevent: cannot allocate an event");
	return p;
}

void pool_free(Pool *p)
{
	if (p == NULL)
		return;
	for (PgConn **head = &p->idle; head != NULL; head = head == &p->idle ? &p->connecting : NULL) {
		while (*head) {
			PgConn *c = *head;
			*head = pgconn_next(c);
			pgconn_free(c);
		}
	}
	event_free(p->ev_dispatch);
	free(p->name);
	free(p->conninfo);
	free(p->appname);
	free(p);
}

void pool_start(Pool *p)
{
	int want = p->size < POOL_MIN_OPEN ? p->size : POOL_MIN_OPEN;
	while (total(p) < want && start_connect(p))
		;
}

/* The first idle connection, now busy (there must be one). */
static PgConn *take_idle(Pool *p)
{
	PgConn *c = p->idle;

	p->idle = pgconn_next(c);
	pgconn_set_next(c, NULL);
	p->nidle--;
	p->nbusy++;
	return c;
}

/* Hands idle connections to waiters, FIFO; opens more if allowed; fails
 * everyone fast when the participant is down and nothing is being tried. */
static void dispatch(Pool *p)
{
	while (p->whead && p->idle) {
		PoolWaiter *w = p->whead;
		PgConn *c = take_idle(p);
		waiter_unlink(p, w);
		w->fn(w, c, NULL);
	}
	if (p->nwaiters == 0)
		return;
	int64_t now = now_mono_us();
	/* Unreachable: one probe at a time, after a pause (pool_tick). Reachable
	 * but an attempt to open one more connection just failed (the
	 * participant's max_connections, say): make do with the open ones for
	 * a pause too, rather than retry at the speed of the refusals. */
	bool backoff = now - (p->reachable ? p->connect_fail_us : p->last_fail_us) < RECONNECT_BACKOFF_US;
	int want = p->nwaiters - p->nconnecting;
	while (want-- > 0 && total(p) < p->size && !backoff && start_connect(p))
		;
	if (!p->reachable && total(p) == 0)
		fail_all_waiters(p);
}

PgConn *pool_try_acquire(Pool *p)
{
	if (p->idle == NULL || p->whead != NULL)
		return NULL;
	return take_idle(p);
}

void pool_acquire(Pool *p, PoolWaiter *w)
{
	if (w->deadline_us != 0 && w->deadline_us < p->next_deadline_us)
		p->next_deadline_us = w->deadline_us;
	if (w->priority) {
		/* Ahead of every ordinary waiter, behind earlier priority ones. */
		PoolWaiter *after = NULL;
		for (PoolWaiter *q = p->whead; q && q->priority; q = q->next)
			after = q;
		w->prev = after;
		w->next = after ? after->next : p->whead;
		if (after)
			after->next = w;
		else
			p->whead = w;
		if (w->next)
			w->next->prev = w;
		else
			p->wtail = w;
		w->queued = true;
		p->nwaiters++;
		schedule_dispatch(p);
		return;
	}
	w->prev = p->wtail;
	w->next = NULL;
	if (p->wtail)
		p->wtail->next = w;
	else
		p->whead = w;
	p->wtail = w;
	w->queued = true;
	p->nwaiters++;
	schedule_dispatch(p);
}

void pool_cancel(Pool *p, PoolWaiter *w)
{
	if (w->queued)
		waiter_unlink(p, w);
}

static void on_cleanup_done(PgJob *job, PgConn *conn, PgJobStatus st)
{
	Cleanup *cl = job->arg;
	Pool *p = cl->pool;

	pgjob_clear_results(job);
	free(cl);
	p->ncleaning--;
	if (st != PGJOB_OK || pgconn_state(conn) != PGC_IDLE || PQtransactionStatus(pgconn_pq(conn)) != PQTRANS_IDLE) {
		pgconn_free(conn);
	} else {
		list_push(&p->idle, conn);
		p->nidle++;
	}
	dispatch(p);
}

void pool_release(Pool *p, PgConn *conn)
{
	p->nbusy--;
	if (pgconn_state(conn) != PGC_IDLE) {
		note_broken(p, pgconn_error(conn));
		pgconn_free(conn);
		schedule_dispatch(p);
		return;
	}
	if (PQtransactionStatus(pgconn_pq(conn)) != PQTRANS_IDLE) {
		/* A pipeline stopped by an error leaves its transaction open and
		 * aborted: roll it back before the next user gets the connection. */
		Cleanup *cl = xcalloc(1, sizeof(*cl));
		cl->pool = p;
		cl->q.sql = "ROLLBACK";
		cl->job.queries = &cl->q;
		cl->job.nqueries = 1;
		cl->job.done = on_cleanup_done;
		cl->job.arg = cl;
		p->ncleaning++;
		pgconn_run(conn, &cl->job);
		return;
	}
	list_push(&p->idle, conn);
	p->nidle++;
	dispatch_if_waiting(p);
}

void pool_discard(Pool *p, PgConn *conn)
{
	p->nbusy--;
	pgconn_free(conn);
	dispatch_if_waiting(p);
}

void pool_tick(Pool *p, int64_t now)
{
	/* Waiters whose deadline passed: the queue is walked only when the
	 * earliest deadline has come (10,000 waiters are not visited every
	 * tick). */
	if (p->whead != NULL && now >= p->next_deadline_us) {
		int64_t next_deadline = INT64_MAX;
		p->next_deadline_us = INT64_MAX; /* a waiter queued by a callback below lowers it */
		for (PoolWaiter *w = p->whead; w;) {
			PoolWaiter *next = w->next;
			if (w->deadline_us != 0 && now >= w->deadline_us) {
				char why[128];
				snprintf(why, sizeof(why), "timed out waiting for a connection to %s", p->name);
				waiter_unlink(p, w);
				w->fn(w, NULL, why);
			} else if (w->deadline_us != 0 && w->deadline_us < next_deadline) {
				next_deadline = w->deadline_us;
			}
			w = next;
		}
		if (next_deadline < p->next_deadline_us)
			p->next_deadline_us = next_deadline;
	}
	/* Connection attempts that hang (a blackholed host): give up on them. */
	for (PgConn *c = p->connecting; c;) {
		PgConn *next = pgconn_next(c);
		if (now - pgconn_started_us(c) > CONNECT_TIMEOUT_US) {
			list_remove(&p->connecting, c);
			p->nconnecting--;
			mark_failure(p, "connection attempt timed out");
			p->connect_fail_us = now;
			pgconn_free(c);
		}
		c = next;
	}
	/* Keep POOL_MIN_OPEN open; while down, one probe at a time after a pause. */
	if (p->reachable)
		pool_start(p);
	else if (p->nconnecting == 0 && now - p->last_fail_us >= RECONNECT_BACKOFF_US)
		(void)start_connect(p);
	if (p->nwaiters > 0)
		dispatch(p);
}

void pool_get_stats(const Pool *p, PoolStats *out)
{
	memset(out, 0, sizeof(*out));
	out->size = p->size;
	out->open = p->nidle + p->nbusy + p->ncleaning;
	out->busy = p->nbusy;
	out->connecting = p->nconnecting;
	out->waiters = p->nwaiters;
	out->reachable = p->reachable;
	snprintf(out->last_error, sizeof(out->last_error), "%s", p->last_error);
}

