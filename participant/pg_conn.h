/*
 * pg_conn: one asynchronous libpq connection to a participant, driven by
 * libevent, always in pipeline mode. It runs one PgJob at a time: a list of
 * queries sent back to back with one Sync (one round trip), whose results
 * are collected and handed to the job's callback.
 *
 * Only PQconnectStart/PQconnectPoll, PQsendQueryParams, PQsendPrepare,
 * PQsendQueryPrepared, PQpipelineSync, PQflush, PQconsumeInput, PQisBusy and
 * PQgetResult are used, each woken by an event on PQsocket(): the event loop
 * never blocks on PostgreSQL.
 *
 * Statement cache: a query marked `reuse` whose text this connection has
 * seen before is prepared under a name of ours ("twopc_N") in the same
 * pipeline, and from then on only bound and executed: PostgreSQL parses
 * and plans it once per connection instead of once per transaction. At
 * most PGCONN_STMT_CACHE texts are remembered per connection and at most
 * that many prepared; past that, texts go unnamed as before. Prepared
 * statements are not transactional, so a rollback keeps them. Client text
 * that returned rows (SELECT, RETURNING) is never prepared: after DDL
 * PostgreSQL would refuse its cached plan ("cached plan must not change
 * result type", 0A000) and fail a transaction that would have run; should
 * that happen to one of ours anyway, the statement is forgotten and
 * prepared afresh under a new name.
 */
#ifndef TWOPC_PG_CONN_H
#define TWOPC_PG_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "util.h"

struct event_base;

typedef struct PgConn PgConn;
typedef struct PgJob PgJob;

typedef enum PgConnState {
	PGC_CONNECTING, /* PQconnectPoll in progress */
	PGC_IDLE,       /* connected, no job */
	PGC_BUSY,       /* a job's pipeline is in flight */
	PGC_BROKEN,     /* failed or closed; only good for pgconn_free */
} PgConnState;

typedef struct PgQuery {
	const char *sql;
	int nparams;
	const char *const *params; /* text values; NULL entries are SQL NULL */
	/* The text may repeat on this connection: once seen twice, it is sent
	 * as a named prepared statement (Parse once, then only Bind/Execute).
	 * Leave false for text that never repeats (it contains a GID). */
	bool reuse;
	/* Its result columns can never change (our own queries): prepared
	 * even though it returns rows. Client text is prepared only when its
	 * first run returned no rows, so a table changed under it can never
	 * make PostgreSQL refuse the plan ("cached plan must not change result
	 * type"). */
	bool fixed_result;
} PgQuery;

typedef enum PgJobStatus {
	PGJOB_OK,        /* every query answered (each result may still be an error) */
	PGJOB_CONN_LOST, /* the connection failed mid-job: outcome of the rest unknown */
} PgJobStatus;

typedef void (*PgJobDoneFn)(PgJob *job, PgConn *conn, PgJobStatus status);

struct PgJob {
	/* Set by the caller. */
	PgQuery *queries;
	size_t nqueries;
	PgJobDoneFn done;
	void *arg;
	/* A Sync after every query, not one at the end: each query is its own
	 * implicit transaction and an error skips nothing after it (phase 2's
	 * batches of COMMIT PREPARED, which refuse to run in a transaction
	 * block). Still one write and one round trip. */
	bool sync_each;
	/* Optional: room for nqueries results that the caller owns (saves an
	 * allocation per run); NULL: the driver allocates it. */
	PGresult **result_room;
	/* Set by the driver: results[i] answers queries[i] (NULL if none came).
	 * The callback owns them: pgjob_clear_results() frees them. */
	PGresult **results;
	size_t nresults;
	char error[160]; /* why the connection was lost (the first line of libpq's message) */
	bool sent;       /* anything was handed to the connection (else: nothing reached the server) */
};

/* Connection-level events for the owner (the pool). */
typedef void (*PgConnEventFn)(PgConn *conn, void *arg);

typedef struct PgConnCallbacks {
	PgConnEventFn connected; /* PGC_CONNECTING -> PGC_IDLE */
	PgConnEventFn broken;    /* became PGC_BROKEN while connecting or idle */
	void *arg;
} PgConnCallbacks;

/* Starts connecting. Returns NULL (with err) if libpq refuses at once. */
PgConn *pgconn_start(struct event_base *base, const char *conninfo, const char *appname, const char *label,
                     const PgConnCallbacks *cbs, char *err, size_t errlen);
void pgconn_free(PgConn *conn);

PgConnState pgconn_state(const PgConn *conn);
const char *pgconn_error(const PgConn *conn);
int64_t pgconn_started_us(const PgConn *conn);
PGconn *pgconn_pq(PgConn *conn);

/* Sends a job's queries in one pipeline. The connection must be IDLE. The
 * job's callback always runs later from the event loop, never from inside
 * this call; a send failure completes it with PGJOB_CONN_LOST. */
void pgconn_run(PgConn *conn, PgJob *job);

void pgjob_clear_results(PgJob *job);

#define PGCONN_STMT_CACHE 64
/* How many statements this connection has prepared. */
size_t pgconn_prepared_count(const PgConn *conn);
/* Process-wide counts (metrics): statements prepared, and queries run as
 * a prepared statement or unnamed. */
typedef struct PgConnCounters {
	uint64_t prepared, executed_prepared, executed_unnamed;
} PgConnCounters;
void pgconn_get_counters(PgConnCounters *out);

/* Session settings the owner keeps on this connection: what the owner last
 * recorded as in effect (valid false on a new connection). */
typedef struct PgConnSession {
	bool valid;
	int64_t lock_timeout_ms;
} PgConnSession;
PgConnSession *pgconn_session(PgConn *conn);

/* SQLSTATE of a result, "" if none. */
const char *pg_sqlstate(const PGresult *r);
/* Primary message of an error result, trimmed. */
void pg_result_message(const PGresult *r, char *buf, size_t len);

/* Linking (for the pool's lists). */
PgConn *pgconn_next(const PgConn *conn);
PgConn **pgconn_next_ref(PgConn *conn);
void pgconn_set_next(PgConn *conn, PgConn *next);

#endif
