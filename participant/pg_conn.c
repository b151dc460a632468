/*
 * pg_conn: the asynchronous libpq connection and its pipelined job runner.
 *
 * Result reading in pipeline mode: every query yields its result(s) and then
 * a NULL from PQgetResult; the Sync yields PGRES_PIPELINE_SYNC. After an
 * error, the remaining queries up to the Sync come back as
 * PGRES_PIPELINE_ABORTED. We keep the first result of each query.
 */
#include "pg_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"

/* A statement text this connection has seen (see the statement cache in
 * pg_conn.h). */
typedef enum StmtState {
	STMT_FREE,
	STMT_SEEN,     /* run once, unnamed */
	STMT_ROWS,     /* client text that returned rows: never prepared */
	STMT_PREPARED, /* prepared as "twopc_<name>" */
} StmtState;
typedef struct StmtEntry {
	uint64_t hash;
	char *sql;
	char name[20]; /* "twopc_<n>" once prepared */
	StmtState state;
} StmtEntry;

/* How one query of the running job goes on the wire. */
typedef enum QueryMode {
	QM_UNNAMED, /* Parse/Bind/Describe/Execute of the unnamed statement */
	QM_PREPARE, /* Parse of a named statement (its own result), then QM_EXECUTE */
	QM_EXECUTE, /* Bind/Describe/Execute of a named statement */
} QueryMode;
typedef struct WireSlot {
	uint32_t query; /* index into job->queries */
	int16_t entry;  /* statement cache entry, -1 if none */
	uint8_t mode;   /* QueryMode */
} WireSlot;

struct PgConn {
	PgConnState state;
	PGconn *pq;
	struct event_base *base;
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_defer; /* runs a failed job's callback outside pgconn_run */
	evutil_socket_t sock;
	PgConnCallbacks cbs;
	char label[80];
	char error[256];
	int64_t started_us;

	/* The running job. */
	PgJob *job;
	size_t cur;       /* index into slots of the result that comes next */
	bool seen_result; /* cur's result arrived; its NULL terminator is next */
	size_t syncs;     /* Syncs answered so far (sync_each jobs) */
	WireSlot *slots;  /* what was sent, in order (a query may take two) */
	size_t nslots, slots_cap;

	StmtEntry stmts[PGCONN_STMT_CACHE];
	size_t nprepared;
	unsigned next_name;
	unsigned clock_hand; /* next SEEN entry to replace when full */
	PgConnSession session;

	PgConn *next;
};

static void on_io(evutil_socket_t fd, short what, void *arg);
static void on_defer(evutil_socket_t fd, short what, void *arg);

static void notice_sink(void *arg, const char *message)
{
	PgConn *c = arg;
	/* Notices (e.g. "there is no transaction in progress") are not errors. */
	log_debug("participant=%s notice: %.*s", c->label, (int)strcspn(message, "\n"), message);
}

static void set_error(PgConn *c, const char *what)
{
	const char *m = c->pq ? PQerrorMessage(c->pq) : "";
	snprintf(c->error, sizeof(c->error), "%s%s%.*s", what, *m ? ": " : "", (int)strcspn(m, "\n"), m);
}

/* (Re)arms the socket events: the socket can change while connecting. */
static bool arm(PgConn *c, bool want_read, bool want_write)
{
	evutil_socket_t s = PQsocket(c->pq);
	if (s < 0)
		return false;
	if (s != c->sock || c->ev_read == NULL) {
		if (c->ev_read) {
			event_free(c->ev_read);
			event_free(c->ev_write);
		}
		c->sock = s;
		c->ev_read = event_new(c->base, s, EV_READ | EV_PERSIST, on_io, c);
		c->ev_write = event_new(c->base, s, EV_WRITE | EV_PERSIST, on_io, c);
		if (c->ev_read == NULL || c->ev_write == NULL)
			log_fatal("libevent: cannot allocate events");
	}
	if (want_read)
		event_add(c->ev_read, NULL);
	else
		event_del(c->ev_read);
	if (want_write)
		event_add(c->ev_write, NULL);
	else
		event_del(c->ev_write);
	return true;
}

static void disarm(PgConn *c)
{
	if (c->ev_read) {
		event_del(c->ev_read);
		event_del(c->ev_write);
	}
}

/* The connection is gone: fail the running job, tell the owner. */
static void become_broken(PgConn *c, const char *what)
{
	PgJob *job = c->job;
	PgConnState was = c->state;

	if (c->state == PGC_BROKEN)
		return;
	set_error(c, what);
	c->state = PGC_BROKEN;
	disarm(c);
	if (job != NULL) {
		c->job = NULL;
		strlcpy_s(job->error, c->error, sizeof(job->error));
		job->done(job, c, PGJOB_CONN_LOST);
	} else if (was == PGC_CONNECTING || was == PGC_IDLE) {
		if (c->cbs.broken)
			c->cbs.broken(c, c->cbs.arg);
	}
}

/* Whether the libpq we run with returns a query's NULL terminator without
 * parsing (PGASYNC_PIPELINE_IDLE, libpq 15; 14.x is not relied on). */
static bool libpq_pipeline_idle;

PgConn *pgconn_start(struct event_base *base, const char *conninfo, const char *appname, const char *label,
                     const PgConnCallbacks *cbs, char *err, size_t errlen)
{
	PgConn *c = xcalloc(1, sizeof(*c));

	libpq_pipeline_idle = PQlibVersion() >= 150000;

	c->base = base;
	c->cbs = *cbs;
	c->sock = -1;
	c->state = PGC_CONNECTING;
	c->started_us = now_mono_us();
	strlcpy_s(c->label, label, sizeof(c->label));
	c->ev_defer = event_new(base, -1, 0, on_defer, c);
	/* Our defaults first; the conninfo (expanded in place of dbname) can
	 * override them. Keepalives notice a peer that vanished (a partition)
	 * on connections that are idle or waiting for an answer. */
	static const char *const keys[] = {
	    "application_name", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
	    "dbname",           NULL};
	const char *vals[] = {appname, "1", "10", "5", "3", conninfo, NULL};
	c->pq = PQconnectStartParams(keys, vals, 1);
	if (c->pq == NULL || PQstatus(c->pq) == CONNECTION_BAD) {
		set_error(c, "cannot start connection");
		errf(err, errlen, "%s", c->error);
		pgconn_free(c);
		return NULL;
	}
	/* PQconnectStart begins by writing (the startup packet). */
	if (!arm(c, false, true)) {
		set_error(c, "no socket");
		errf(err, errlen, "%s", c->error);
		pgconn_free(c);
		return NULL;
	}
	return c;
}

void pgconn_free(PgConn *c)
{
	if (c == NULL)
		return;
	if (c->ev_read) {
		event_free(c->ev_read);
		event_free(c->ev_write);
	}
	if (c->ev_defer)
		event_free(c->ev_defer);
	if (c->pq)
		PQfinish(c->pq);
	for (size_t i = 0; i < PGCONN_STMT_CACHE; i++)
		free(c->stmts[i].sql);
	free(c->slots);
	free(c);
}

PgConnState pgconn_state(const PgConn *c)
{
	return c->state;
}
const char *pgconn_error(const PgConn *c)
{
	return c->error;
}
int64_t pgconn_started_us(const PgConn *c)
{
	return c->started_us;
}
PGconn *pgconn_pq(PgConn *c)
{
	return c->pq;
}
PgConn *pgconn_next(const PgConn *c)
{
	return c->next;
}
PgConn **pgconn_next_ref(PgConn *c)
{
	return &c->next;
}
void pgconn_set_next(PgConn *c, PgConn *next)
{
	c->next = next;
}

/* ---- the statement cache ------------------------------------------------- */

/* A hash of the text, eight bytes at a time (every reused query is looked
 * up per transaction; strcmp confirms a match, so it need only spread). */
static uint64_t text_hash(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ULL ^ n, w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 1099511628211ULL;
		h ^= h >> 29;
	}
	w = 0;
	memcpy(&w, s + i, n - i);
	h = (h ^ w) * 1099511628211ULL;
	return h ^ (h >> 32);
}

/* The cache entry for sql, creating a SEEN one on a first sighting (*fresh
 * set); -1 if the text is not cached (too long, or the cache is full of
 * prepared statements). */
static int stmt_lookup(PgConn *c, const char *sql, bool *fresh)
{
	size_t len = strlen(sql);
	uint64_t h = text_hash(sql, len);
	int free_slot = -1;

	for (int i = 0; i < PGCONN_STMT_CACHE; i++) {
		StmtEntry *e = &c->stmts[i];
		if (e->state == STMT_FREE) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (e->hash == h && strcmp(e->sql, sql) == 0) {
			*fresh = false;
			return i;
		}
	}
	if (len > 8192)
		return -1;
	if (free_slot < 0) {
		/* Full: replace one not prepared, round robin; prepared ones stay. */
		for (unsigned n = 0; n < PGCONN_STMT_CACHE; n++) {
			unsigned i = (c->clock_hand + n) % PGCONN_STMT_CACHE;
			if (c->stmts[i].state == STMT_SEEN || c->stmts[i].state == STMT_ROWS) {
				free_slot = (int)i;
				c->clock_hand = i + 1;
				break;
			}
		}
		if (free_slot < 0)
			return -1;
		free(c->stmts[free_slot].sql);
	}
	c->stmts[free_slot] = (StmtEntry){.hash = h, .sql = xstrdup(sql), .state = STMT_SEEN};
	*fresh = true;
	return free_slot;
}

static void stmt_forget(PgConn *c, int i)
{
	StmtEntry *e = &c->stmts[i];
	if (e->state == STMT_PREPARED)
		c->nprepared--;
	free(e->sql);
	memset(e, 0, sizeof(*e));
}

size_t pgconn_prepared_count(const PgConn *c)
{
	return c->nprepared;
}

/* The event loop is single-threaded: plain counters. */
static PgConnCounters counters;

void pgconn_get_counters(PgConnCounters *out)
{
	*out = counters;
}

PgConnSession *pgconn_session(PgConn *c)
{
	return &c->session;
}

static WireSlot *add_slot(PgConn *c, uint32_t query, int entry, QueryMode mode)
{
	if (c->nslots == c->slots_cap) {
		c->slots_cap = c->slots_cap ? c->slots_cap * 2 : 8;
		c->slots = xrealloc(c->slots, c->slots_cap * sizeof(WireSlot));
	}
	c->slots[c->nslots] = (WireSlot){.query = query, .entry = (int16_t)entry, .mode = (uint8_t)mode};
	return &c->slots[c->nslots++];
}

/* Sends one query, through the statement cache when it may repeat. */
static bool send_query(PgConn *c, uint32_t qi, const PgQuery *q)
{
	bool fresh = false;
	int e = q->reuse ? stmt_lookup(c, q->sql, &fresh) : -1;

	if (e < 0 || fresh || c->stmts[e].state == STMT_ROWS ||
	    (c->stmts[e].state == STMT_SEEN && c->nprepared >= PGCONN_STMT_CACHE - 1)) {
		/* Not cached, a first sighting, returns rows, or no room: unnamed,
		 * as it comes. A first sighting's answer tells whether it returns
		 * rows. */
		add_slot(c, qi, fresh && !q->fixed_result ? e : -1, QM_UNNAMED);
		counters.executed_unnamed++;
		return PQsendQueryParams(c->pq, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0) == 1;
	}
	if (c->stmts[e].state == STMT_SEEN) {
		/* Seen before: prepare it now, in this pipeline. Counted as
		 * prepared from here on, so a second use in the same job does not
		 * prepare it twice; its Parse's answer confirms or forgets it. */
		snprintf(c->stmts[e].name, sizeof(c->stmts[e].name), "twopc_%u", ++c->next_name);
		c->stmts[e].state = STMT_PREPARED;
		c->nprepared++;
		counters.prepared++;
		add_slot(c, qi, e, QM_PREPARE);
		if (PQsendPrepare(c->pq, c->stmts[e].name, q->sql, 0, NULL) != 1)
			return false;
	}
	add_slot(c, qi, e, QM_EXECUTE);
	counters.executed_prepared++;
	return PQsendQueryPrepared(c->pq, c->stmts[e].name, q->nparams, q->params, NULL, NULL, 0) == 1;
}

static void connect_step(PgConn *c)
{
	switch (PQconnectPoll(c->pq)) {
	case PGRES_POLLING_READING:
		if (!arm(c, true, false))
			become_broken(c, "connection failed");
		return;
	case PGRES_POLLING_WRITING:
		if (!arm(c, false, true))
			become_broken(c, "connection failed");
		return;
	case PGRES_POLLING_OK:
		break;
	default:
		become_broken(c, "connection failed");
		return;
	}
	if (PQsetnonblocking(c->pq, 1) != 0 || PQenterPipelineMode(c->pq) != 1) {
		become_broken(c, "cannot enter pipeline mode");
		return;
	}
	PQsetNoticeProcessor(c->pq, notice_sink, c);
	c->state = PGC_IDLE;
	/* Idle connections keep reading so a server-side close is seen at once. */
	if (!arm(c, true, false)) {
		become_broken(c, "connection lost");
		return;
	}
	if (c->cbs.connected)
		c->cbs.connected(c, c->cbs.arg);
}

static void finish_job(PgConn *c, PgJobStatus st)
{
	PgJob *job = c->job;
	c->job = NULL;
	if (c->state == PGC_BUSY)
		c->state = PGC_IDLE;
	job->done(job, c, st);
}

/* Reads every result that has fully arrived. Returns true when the job
 * ended (finished or broken): its callback ran and may have freed c, so the
 * caller must not touch c again. */
static bool read_results(PgConn *c)
{
	PgJob *job = c->job;
	bool terminator_ready = false;

	while (job != NULL) {
		PGresult *r;
		ExecStatusType st;

		/* PQisBusy parses what has arrived, so that PQgetResult will not
		 * block. Right after a query's result, its NULL terminator needs
		 * nothing from the server (libpq 15: PGASYNC_PIPELINE_IDLE). */
		if (!terminator_ready && PQisBusy(c->pq))
			return false;
		terminator_ready = false;
		r = PQgetResult(c->pq);
		if (r == NULL) {
			if (c->seen_result) {
				c->seen_result = false;
				c->cur++;
				continue;
			}
			/* Nothing pending and nothing available: wait for input. */
			return false;
		}
		st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			if (job->sync_each && ++c->syncs < job->nqueries)
				continue; /* the next query's answers follow */
			if (c->cur != c->nslots) {
				become_broken(c, "protocol confusion: Sync before every result");
				return true;
			}
			finish_job(c, PGJOB_OK);
			return true;
		}
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			PQclear(r);
			become_broken(c, "COPY is not supported through twopc");
			return true;
		}
		if (c->cur >= c->nslots) {
			PQclear(r);
			become_broken(c, "protocol confusion: more results than queries");
			return true;
		}
		if (c->seen_result) {
			PQclear(r); /* a second result for one query: keep the first */
			continue;
		}
		c->seen_result = true;
		terminator_ready = libpq_pipeline_idle;
		const WireSlot *w = &c->slots[c->cur];
		if (w->mode == QM_UNNAMED && w->entry >= 0 && PQnfields(r) > 0) {
			/* Client text returning rows: keep it unnamed for good. */
			c->stmts[w->entry].state = STMT_ROWS;
		} else if (w->mode == QM_PREPARE) {
			if (st == PGRES_COMMAND_OK) {
				PQclear(r); /* prepared: the execution's result follows */
				continue;
			}
			/* The Parse failed (or was skipped after an earlier error):
			 * forget the statement; this is the query's answer. */
			stmt_forget(c, w->entry);
		} else if (w->mode == QM_EXECUTE && st == PGRES_FATAL_ERROR && job->results[w->query] == NULL &&
		           strcmp(pg_sqlstate(r), "0A000") == 0) {
			/* "cached plan must not change result type" (DDL changed a
			 * table under it): prepare the text afresh next time. */
			stmt_forget(c, w->entry);
		}
		if (job->results[w->query] == NULL) {
			job->results[w->query] = r;
			job->nresults = w->query + 1;
		} else {
			PQclear(r); /* its Parse already answered, with an error */
		}
	}
	return false;
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	PgConn *c = arg;

	switch (c->state) {
	case PGC_CONNECTING:
		connect_step(c);
		return;
	case PGC_BROKEN:
		disarm(c);
		return;
	case PGC_IDLE:
		/* Unsolicited input: a notice, a parameter change, or EOF. */
		if (!PQconsumeInput(c->pq) || PQstatus(c->pq) == CONNECTION_BAD) {
			become_broken(c, "connection lost while idle");
			return;
		}
		return;
	case PGC_BUSY:
		break;
	}
	if (what & EV_WRITE) {
		int f = PQflush(c->pq);
		if (f < 0) {
			become_broken(c, "connection lost while sending");
			return;
		}
		if (f == 0)
			event_del(c->ev_write);
	}
	if (what & EV_READ) {
		if (!PQconsumeInput(c->pq)) {
			become_broken(c, "connection lost");
			return;
		}
		/* libpq may need to flush again once the server reads. */
		if (PQflush(c->pq) == 1)
			event_add(c->ev_write, NULL);
		if (read_results(c))
			return; /* the job's callback ran: c may be gone */
		if (PQstatus(c->pq) == CONNECTION_BAD)
			become_broken(c, "connection lost");
	}
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
	PgConn *c = arg;
	if (c->job != NULL) {
		PgJob *job = c->job;
		c->job = NULL;
		strlcpy_s(job->error, c->error, sizeof(job->error));
		job->done(job, c, PGJOB_CONN_LOST);
	}
}

void pgconn_run(PgConn *c, PgJob *job)
{
	if (job->result_room != NULL) {
		job->results = job->result_room;
		memset(job->results, 0, job->nqueries * sizeof(PGresult *));
	} else {
		job->results = xcalloc(job->nqueries ? job->nqueries : 1, sizeof(PGresult *));
	}
	job->nresults = 0;
	job->error[0] = '\0';
	job->sent = false;
	c->job = job;
	c->cur = 0;
	c->seen_result = false;
	c->nslots = 0;
	c->syncs = 0;

	if (c->state != PGC_IDLE) {
		snprintf(c->error, sizeof(c->error), "connection not ready");
		goto fail;
	}
	c->state = PGC_BUSY;
	job->sent = true; /* from here on, some of it may reach the server */
	for (size_t i = 0; i < job->nqueries; i++) {
		if (!send_query(c, (uint32_t)i, &job->queries[i])) {
			set_error(c, "cannot send query");
			goto fail;
		}
		if (job->sync_each && i + 1 < job->nqueries && !PQpipelineSync(c->pq)) {
			set_error(c, "cannot send Sync");
			goto fail;
		}
	}
	if (!PQpipelineSync(c->pq)) {
		set_error(c, "cannot send Sync");
		goto fail;
	}
	switch (PQflush(c->pq)) {
	case 0:
		break;
	case 1:
		event_add(c->ev_write, NULL);
		break;
	default:
		set_error(c, "cannot send");
		goto fail;
	}
	return;
fail:
	c->state = PGC_BROKEN;
	disarm(c);
	event_active(c->ev_defer, 0, 0);
}

void pgjob_clear_results(PgJob *job)
{
	if (job->results) {
		for (size_t i = 0; i < job->nqueries; i++) {
			if (job->results[i])
				PQclear(job->results[i]);
		}
		if (job->results != job->result_room)
			free(job->results);
	}
	job->results = NULL;
	job->nresults = 0;
}

const char *pg_sqlstate(const PGresult *r)
{
	const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

void pg_result_message(const PGresult *r, char *buf, size_t len)
{
	const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (m == NULL)
		m = r ? PQresultErrorMessage(r) : "";
	snprintf(buf, len, "%.*s", (int)strcspn(m, "\n"), m);
}
