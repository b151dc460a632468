/*
 * pool: a pool of at most `size` PgConns to one participant. Requests beyond
 * the pool's size wait in a FIFO queue within their deadline rather than
 * fail. One connection is opened at start and kept open (it tells whether
 * the participant is reachable); more are opened while requests wait and
 * none is idle, up to the size, and stay open once opened (as pgbouncer's
 * server connections do, without its idle timeout). A connection that
 * breaks is not replaced until it is needed. After a failed attempt to open
 * one more connection (the participant's max_connections, say), the pool
 * makes do with the open ones for half a second before it tries again.
 * While the participant is unreachable, waiters fail fast with the
 * connection error (HTTP 503) instead of queueing until their deadline.
 *
 * A connection released with a transaction still open (an error inside a
 * pipeline) is rolled back before anyone else gets it.
 */
#ifndef TWOPC_POOL_H
#define TWOPC_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "pg_conn.h"

struct event_base;

typedef struct Pool Pool;
typedef struct PoolWaiter PoolWaiter;

/* conn != NULL: yours until pool_release/pool_discard. conn == NULL: failed,
 * err says why (unreachable or deadline). Never called from inside
 * pool_acquire. */
typedef void (*PoolWaitFn)(PoolWaiter *w, PgConn *conn, const char *err);

struct PoolWaiter {
	PoolWaitFn fn;
	void *arg;
	int64_t deadline_us; /* 0: none */
	bool priority;       /* served before ordinary waiters (phase 2, rollbacks) */
	/* Private to the pool. */
	PoolWaiter *prev, *next;
	bool queued;
};

typedef struct PoolStats {
	int size;
	int open; /* connected (idle or busy) */
	int busy;
	int connecting;
	int waiters;
	bool reachable;
	char last_error[256];
} PoolStats;

/* appname: the application_name of its connections ("twopcd:<coordinator id>"). */
Pool *pool_new(struct event_base *base, const char *name, const char *conninfo, const char *appname, int size);
void pool_free(Pool *p);

/* Opens the connection kept open at idle (asynchronously); later ones open
 * as waiters need them. */
void pool_start(Pool *p);

/* Queues w; w->fn runs later with a connection or a failure. */
void pool_acquire(Pool *p, PoolWaiter *w);
/* An idle connection at once, when one is idle and nobody waits (so no
 * waiter is overtaken); NULL otherwise (then pool_acquire). Saves the
 * deferred dispatch when the pool is not the bottleneck. */
PgConn *pool_try_acquire(Pool *p);
/* Withdraws a queued waiter (its fn will not run). */
void pool_cancel(Pool *p, PoolWaiter *w);
/* Gives a connection back after its job completed. */
void pool_release(Pool *p, PgConn *conn);
/* Closes a connection whose job is being abandoned (deadline passed). */
void pool_discard(Pool *p, PgConn *conn);

/* Periodic housekeeping: deadlines of waiters, connect timeouts, reconnects.
 * Called by the coordinator's single timer. */
void pool_tick(Pool *p, int64_t now_us);

void pool_get_stats(const Pool *p, PoolStats *out);

#endif
