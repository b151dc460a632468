/*
 * check_paths: the two short cuts of two-phase commit, against real
 * PostgreSQL.
 *
 * One-phase commit: a transaction with a single participant and no
 * Idempotency-Key is committed with a plain COMMIT: no PREPARE, no record
 * in the decision log. The tests look at the server, not at twopcd's word:
 * a deferred constraint trigger that waits on an advisory lock holds the
 * branch at its commit point, where pg_stat_activity shows what twopcd
 * sent (COMMIT, or PREPARE TRANSACTION for a two-participant control); and
 * `twopc-recover check-log --verbose` lists the records. Failures (a
 * statement, a guard, a deferred constraint at COMMIT) roll back and leave
 * the pool's connections clean. A lost COMMIT answer is resolved with
 * txid_status: the fault point after_one_phase_commit_sent:drop closes the
 * connection right after COMMIT went out (committed), and
 * before_one_phase_commit:drop abandons it open, as a partition would, so
 * the backend keeps the transaction until twopcd ends it (aborted). With
 * the participant behind a netproxy that goes dark right then, twopcd
 * cannot ask: the client hears 500 outcome-unknown, and GET tells the
 * outcome once the network is back.
 *
 * Read-only branches: a branch whose statements wrote nothing is
 * committed in phase 1 and left out of the COMMIT record; a transaction
 * made only of them logs nothing; SELECT ... FOR UPDATE counts as a
 * write; crashes around them leave nothing prepared after recovery.
 *
 * Keyed requests keep two-phase commit (the key lives in the COMMIT
 * record) and replay after a kill -9, a single participant or all
 * read-only branches included.
 *
 * The statement cache (participant/pg_conn.c): text repeated on a pooled
 * connection is prepared and then only executed; text that returns rows
 * is never prepared, so DDL under it cannot make PostgreSQL refuse a
 * cached plan; a prepared statement survives DDL that changes its table;
 * a statement that fails to parse fails the same way every time.
 *
 * The session settings (lock_timeout, client_connection_check_interval),
 * set once per connection: a lock wait ends with 55P03 after
 * lock_timeout_ms; a statement still running at the deadline gets 504 and
 * its backend stops within a second, also with lock_timeout_ms = 0; a
 * reloaded lock_timeout_ms reaches connections already open.
 *
 * Phase 2 batched per participant: decisions made durable by one group
 * commit (held back by a fault-point delay here) send their COMMIT
 * PREPAREDs to each participant in one pipeline; with the backends
 * running them terminated again and again, every transfer still commits
 * exactly once and nothing stays prepared.
 *
 * Pooled connections terminated between transactions (a DBA's
 * pg_terminate_backend, an idle timeout) are no sign the participant is
 * down: the next transaction opens a new one and commits.
 *
 * The housekeeping tick visits transactions and pool waiters only when
 * one is due: a request queued for a busy pool still gets its 504 at its
 * deadline, not a second later.
 */
#include "netproxy.h"
#include "tlfixture.h"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PT_TIMEOUT_S 300
#define PT_ERR       2048
#define PT_LOCK      4242 /* the advisory lock the probe trigger waits on */
#define PT_SCHEMA                                                                                                      \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"                                         \
	"INSERT INTO accounts SELECT g, 1000000 FROM generate_series(1, 100) g;"                                       \
	"CREATE TABLE probe (id int);"                                                                                 \
	"CREATE FUNCTION probe_wait() RETURNS trigger LANGUAGE plpgsql AS"                                             \
	" $$BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END$$;"                                            \
	"CREATE CONSTRAINT TRIGGER probe_at_commit AFTER INSERT ON probe DEFERRABLE INITIALLY DEFERRED"               \
	" FOR EACH ROW EXECUTE FUNCTION probe_wait();"                                                                 \
	"CREATE TABLE parent (id int PRIMARY KEY);"                                                                    \
	"CREATE TABLE child (parent int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);"
#define PT_PROBLEM "https://twopc.dev/problems/"

static const char *const pt_clusters[] = {"bank_a", "bank_b", NULL};
static TlFixture pt_fx = {
	.program = "check_paths",
	.clusters = pt_clusters,
	.schema = PT_SCHEMA,
	.timeout_s = PT_TIMEOUT_S,
};

/* ---------------------------------------------------------------- helpers */

static TlCluster *cluster(const char *part)
{
	return tl_env_cluster(&pt_fx.env, part);
}

static int64_t scalar(const char *part, const char *sql)
{
	char err[PT_ERR];
	int64_t v = 0;

	if (!tl_pg_scalar_i64(cluster(part), sql, 0, NULL, &v, err, sizeof err))
		ck_abort_msg("%s: %s: %s", part, sql, err);
	return v;
}

static int64_t balance(const char *part, int id)
{
	char sql[128];

	snprintf(sql, sizeof sql, "SELECT balance FROM accounts WHERE id = %d", id);
	return scalar(part, sql);
}

/* POSTs BODY (with the header line EXTRA, or NULL); the caller frees R. */
static void post(const char *extra, const char *body, TlHttpResponse *r)
{
	char err[PT_ERR];

	if (!tl_http_request_h(pt_fx.daemon.port, "POST", "/v1/transactions", extra, body, 60000, r, err, sizeof err))
		ck_abort_msg("POST: %s", err);
}

static void get(const char *path, TlHttpResponse *r)
{
	char err[PT_ERR];

	if (!tl_http_request(pt_fx.daemon.port, "GET", path, NULL, 30000, r, err, sizeof err))
		ck_abort_msg("GET %s: %s", path, err);
	ck_assert_msg(r->status == 200, "GET %s: %d %s", path, r->status, r->body);
}

static void expect_problem(const TlHttpResponse *r, int status, const char *slug)
{
	char type[128];

	snprintf(type, sizeof type, PT_PROBLEM "%s", slug);
	ck_assert_msg(r->status == status, "status %d, want %d: %s", r->status, status, r->body);
	ck_assert_msg(r->json && tl_json_str(r->json, "type") && strcmp(tl_json_str(r->json, "type"), type) == 0,
		      "type is not %s: %s", type, r->body);
}

/* The committed reply's id, copied into ID. */
static void expect_committed(const TlHttpResponse *r, char *id, size_t len)
{
	ck_assert_msg(r->status == 200, "%d %s", r->status, r->body);
	ck_assert_str_eq(tl_json_str(r->json, "outcome"), "committed");
	ck_assert_msg(json_object_get(r->json, "phase2") == NULL, "phase2 in %s", r->body);
	snprintf(id, len, "%s", tl_json_str(r->json, "id"));
}

/* The value of NAME{LABELS} in GET /metrics (-1 if absent). */
static double metric(const char *name, const char *labels)
{
	TlHttpResponse r;
	char key[512];
	const char *p;
	double v = -1;

	get("/metrics", &r);
	snprintf(key, sizeof key, *labels ? "\n%s{%s} " : "\n%s%s ", name, labels);
	p = strstr(r.body, key);
	if (p != NULL)
		v = strtod(p + strlen(key), NULL);
	tl_http_response_free(&r);
	return v;
}

static double path_count(const char *path)
{
	char l[64];

	snprintf(l, sizeof l, "path=\"%s\"", path);
	return metric("twopc_transaction_paths_total", l);
}

/* `twopc-recover check-log --verbose` on the daemon's log: every record,
 * one a line ("<offset>  COMMIT  txn <id>  <time>  bank_a#0 ..."). The
 * caller frees the result. */
static char *check_log(void)
{
	char bin[TL_PATH_MAX + 32], err[PT_ERR];
	const char *argv[] = {bin, "-c", pt_fx.daemon.conf_path, "check-log", "--verbose", NULL};
	TlRunResult r;
	char *out;

	ck_assert(tl_fmt(bin, sizeof bin, "%s/twopc-recover", pt_fx.env.builddir));
	if (!tl_run_capture(&pt_fx.env, argv, 30000, &r, err, sizeof err))
		ck_abort_msg("twopc-recover check-log: %s", err);
	ck_assert_msg(r.code == 0, "check-log exit %d: %s%s", r.code, r.out, r.err);
	out = r.out;
	r.out = NULL;
	tl_run_result_free(&r);
	return out;
}

/* The check-log line of txn ID's COMMIT record (copied into LINE), or
 * false if the log holds none. */
static bool commit_record(const char *log, const char *id, char *line, size_t len)
{
	char needle[64];
	const char *p;

	snprintf(needle, sizeof needle, "COMMIT     txn %s", id);
	p = strstr(log, needle);
	if (p == NULL)
		return false;
	snprintf(line, len, "%.*s", (int)strcspn(p, "\n"), p);
	return true;
}

/* Waits until nothing of ours is prepared on PART. */
static void wait_nothing_prepared(const char *part, int ms)
{
	char err[PT_ERR];
	int64_t n = -1, until = tl_now_ms() + ms;

	while (tl_now_ms() < until) {
		ck_assert(tl_pg_count_prepared(cluster(part), &n, err, sizeof err));
		if (n == 0)
			return;
		tl_sleep_ms(20);
	}
	ck_abort_msg("%s: %lld prepared transactions of ours still there after %d ms", part, (long long)n, ms);
}

/* Waits until no twopcd session on PART is inside a transaction: every
 * pool connection is clean. */
static void wait_sessions_clean(const char *part, int ms)
{
	int64_t n = -1, until = tl_now_ms() + ms;

	while (tl_now_ms() < until) {
		n = scalar(part, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'twopcd%' "
				 "AND (state LIKE 'idle in transaction%' OR backend_xid IS NOT NULL)");
		if (n == 0)
			return;
		tl_sleep_ms(20);
	}
	ck_abort_msg("%s: %lld twopcd sessions still in a transaction after %d ms", part, (long long)n, ms);
}

static bool daemon_log_has(const char *what)
{
	FILE *f = fopen(pt_fx.daemon.log_path, "r");
	char line[4096];
	bool found = false;

	ck_assert_ptr_nonnull(f);
	while (!found && fgets(line, sizeof line, f) != NULL)
		found = strstr(line, what) != NULL;
	fclose(f);
	return found;
}

static void restart(const char *fault)
{
	char err[PT_ERR];

	if (!tl_daemon_restart(&pt_fx.daemon, fault, err, sizeof err))
		ck_abort_msg("%s", err);
}

/* GET /v1/transactions/ID's status. */
static void expect_status(const char *id, const char *status)
{
	TlHttpResponse r;
	char path[64];

	snprintf(path, sizeof path, "/v1/transactions/%s", id);
	get(path, &r);
	ck_assert_msg(strcmp(tl_json_str(r.json, "status"), status) == 0, "GET %s: %s", path, r.body);
	tl_http_response_free(&r);
}

/* A POST in a thread, for a request that blocks on the probe's lock. */
typedef struct Bg {
	pthread_t th;
	const char *extra; /* header lines or NULL */
	const char *body;
	TlHttpResponse r;
	bool ok;
	char err[PT_ERR];
} Bg;

static void *bg_main(void *arg)
{
	Bg *bg = arg;

	bg->ok = tl_http_request_h(pt_fx.daemon.port, "POST", "/v1/transactions", bg->extra, bg->body, 60000, &bg->r,
				   bg->err, sizeof bg->err);
	return NULL;
}

/* Sends BODY (which inserts into bank_a's probe table; EXTRA: header lines
 * or NULL) while this process
 * holds the probe's advisory lock, so the branch stops at its commit point
 * (the deferred trigger); returns what twopcd's backend was running there,
 * copied into QUERY, and how many prepared transactions of ours bank_a had
 * meanwhile. The request then finishes; its response is in BG. */
static int64_t probe_commit_point(const char *extra, const char *body, Bg *bg, char *query, size_t qlen)
{
	char err[PT_ERR], sql[256];
	PGconn *c = tl_pg_connect(cluster("bank_a"), err, sizeof err);
	PGresult *res;
	int64_t prepared = -1, until;

	ck_assert_msg(c != NULL, "%s", err);
	snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%d)", PT_LOCK);
	res = PQexec(c, sql);
	ck_assert(PQresultStatus(res) == PGRES_TUPLES_OK);
	PQclear(res);
	memset(bg, 0, sizeof *bg);
	bg->extra = extra;
	bg->body = body;
	ck_assert(pthread_create(&bg->th, NULL, bg_main, bg) == 0);
	query[0] = '\0';
	for (until = tl_now_ms() + 20000; tl_now_ms() < until && query[0] == '\0'; tl_sleep_ms(20)) {
		res = PQexec(c, "SELECT query FROM pg_stat_activity WHERE application_name LIKE 'twopcd%' "
				"AND wait_event_type = 'Lock' AND wait_event = 'advisory'");
		ck_assert(PQresultStatus(res) == PGRES_TUPLES_OK);
		if (PQntuples(res) == 1)
			snprintf(query, qlen, "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	ck_assert_msg(query[0] != '\0', "the branch never reached its commit point");
	ck_assert(tl_pg_count_prepared(cluster("bank_a"), &prepared, err, sizeof err));
	snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%d)", PT_LOCK);
	res = PQexec(c, sql);
	PQclear(res);
	PQfinish(c);
	ck_assert(pthread_join(bg->th, NULL) == 0);
	ck_assert_msg(bg->ok, "POST: %s", bg->err);
	return prepared;
}

/* ------------------------------------------------------------------ tests */

/* A single participant commits with COMMIT itself: no PREPARE on the
 * server, no record in the log; a two-participant control does both. */
START_TEST(test_one_phase_commit)
{
	TlHttpResponse r;
	Bg bg;
	char id1[32], id2[32], idc[32], query[512], line[512], *log;
	int64_t a0 = balance("bank_a", 1), prepared;

	tl_fixture_start(&pt_fx, NULL, NULL);
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 5 WHERE id = 1 "
	     "RETURNING balance\",\"expect_rows\":1}]}}",
	     &r);
	expect_committed(&r, id1, sizeof id1);
	ck_assert_msg(strstr(r.body, "\"rows\":[{\"balance\":") != NULL, "%s", r.body);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a", 1), a0 - 5);

	/* At its commit point the branch runs COMMIT, and nothing is prepared. */
	prepared = probe_commit_point(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"INSERT INTO probe VALUES (1)\"}]}}",
				      &bg, query, sizeof query);
	ck_assert_msg(strcmp(query, "COMMIT") == 0, "one-phase branch stopped in '%s'", query);
	ck_assert_int_eq(prepared, 0);
	expect_committed(&bg.r, id2, sizeof id2);
	tl_http_response_free(&bg.r);
	ck_assert_int_eq(scalar("bank_a", "SELECT count(*) FROM probe WHERE id = 1"), 1);

	/* The control: with a second participant it is PREPARE TRANSACTION. */
	prepared = probe_commit_point(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"INSERT INTO probe VALUES (2)\"}],"
				      "\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 1\"}]}}",
				      &bg, query, sizeof query);
	ck_assert_msg(strncmp(query, "PREPARE TRANSACTION 'twopc_t1_", 30) == 0, "two-phase branch stopped in '%s'",
		      query);
	ck_assert_int_eq(prepared, 0); /* bank_a's PREPARE had not finished yet */
	expect_committed(&bg.r, idc, sizeof idc);
	tl_http_response_free(&bg.r);

	/* The log holds the control's COMMIT record only. */
	log = check_log();
	ck_assert_msg(!commit_record(log, id1, line, sizeof line), "one-phase txn logged: %s", line);
	ck_assert_msg(!commit_record(log, id2, line, sizeof line), "one-phase txn logged: %s", line);
	ck_assert_msg(commit_record(log, idc, line, sizeof line), "no COMMIT record for the control:\n%s", log);
	ck_assert_msg(strstr(line, "bank_a#0 bank_b#1") != NULL, "%s", line);
	free(log);

	ck_assert(path_count("one_phase") == 2);
	ck_assert(path_count("two_phase") == 1);
	ck_assert(path_count("read_only") == 0);
	ck_assert(metric("twopc_transactions_total", "outcome=\"committed\"") == 3);
	ck_assert(metric("twopc_phase_duration_seconds_count", "phase=\"decide\"") == 3);
	expect_status(id1, "committed");

	/* twopcd keeps no record of them: after a restart it does not know. */
	restart(NULL);
	expect_status(id1, "unknown");
	expect_status(idc, "unknown");
}
END_TEST

/* Failures roll back, and the pool's connections come back clean. */
START_TEST(test_one_phase_aborts)
{
	TlHttpResponse r;
	char id[32];
	int64_t a0 = balance("bank_a", 2);

	tl_fixture_start(&pt_fx, NULL, NULL);
	/* A statement fails after an update: nothing stays. */
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 2\"},"
	     "{\"sql\":\"SELECT 1/0\"}]}}",
	     &r);
	expect_problem(&r, 409, "statement-failed");
	ck_assert_str_eq(tl_json_str(r.json, "sqlstate"), "22012");
	ck_assert_str_eq(tl_json_str(r.json, "outcome"), "aborted");
	tl_http_response_free(&r);
	wait_sessions_clean("bank_a", 3000);

	/* A guard does not hold: the update before it is rolled back. */
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 2\"},"
	     "{\"sql\":\"UPDATE accounts SET balance = 0 WHERE id = 999\",\"expect_rows\":1}]}}",
	     &r);
	expect_problem(&r, 409, "expect-rows");
	tl_http_response_free(&r);
	wait_sessions_clean("bank_a", 3000);

	/* A deferred constraint fails at COMMIT itself (PREPARE's place in
	 * two-phase commit, hence its problem type). */
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 2\"},"
	     "{\"sql\":\"INSERT INTO child VALUES (777)\"}]}}",
	     &r);
	expect_problem(&r, 409, "prepare-failed");
	ck_assert_str_eq(tl_json_str(r.json, "sqlstate"), "23503");
	snprintf(id, sizeof id, "%s", tl_json_str(r.json, "id"));
	tl_http_response_free(&r);
	wait_sessions_clean("bank_a", 3000);
	ck_assert_int_eq(scalar("bank_a", "SELECT count(*) FROM child"), 0);
	ck_assert_int_eq(balance("bank_a", 2), a0);
	expect_status(id, "aborted");

	/* A temporary table would outlive a plain COMMIT on the pooled
	 * session: refused, as PREPARE TRANSACTION refuses it. */
	post(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"CREATE TEMP TABLE tt (a int)\"}]}}", &r);
	expect_problem(&r, 409, "prepare-failed");
	ck_assert_str_eq(tl_json_str(r.json, "sqlstate"), "0A000");
	tl_http_response_free(&r);
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"CREATE TEMP TABLE tt (a int)\"}],"
	     "\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}",
	     &r);
	expect_problem(&r, 409, "prepare-failed");
	ck_assert_str_eq(tl_json_str(r.json, "sqlstate"), "0A000");
	tl_http_response_free(&r);
	wait_sessions_clean("bank_a", 3000);

	/* The pool hands the same connections out again: they work, and none
	 * kept a temporary schema. */
	for (int i = 0; i < 8; i++) {
		post(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT pg_my_temp_schema()::int8 AS s\"}]}}", &r);
		ck_assert_msg(r.status == 200 && strstr(r.body, "\"rows\":[{\"s\":0}]") != NULL, "%s", r.body);
		tl_http_response_free(&r);
	}
	for (int i = 0; i < 20; i++) {
		post(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 2\"}]}}",
		     &r);
		expect_committed(&r, id, sizeof id);
		tl_http_response_free(&r);
	}
	ck_assert_int_eq(balance("bank_a", 2), a0 + 20);
	ck_assert(path_count("one_phase") == 32);
	ck_assert(path_count("two_phase") == 1);
	ck_assert(metric("twopc_transactions_total", "outcome=\"aborted\"") == 5);
	ck_assert(metric("twopc_aborts_total", "reason=\"prepare-failed\"") == 3);
	wait_nothing_prepared("bank_a", 1000);
}
END_TEST

/* The connection goes right after COMMIT was sent: txid_status says
 * committed, and so does the reply. */
START_TEST(test_one_phase_lost_after_commit)
{
	TlHttpResponse r;
	char id[32];
	int64_t a0 = balance("bank_a", 3);

	tl_fixture_start(&pt_fx, NULL, "after_one_phase_commit_sent:drop");
	post(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance + 7 WHERE id = 3\"}]}}",
	     &r);
	expect_committed(&r, id, sizeof id);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a", 3), a0 + 7);
	ck_assert_msg(daemon_log_has("fault point after_one_phase_commit_sent reached"), "the fault did not fire");
	ck_assert_msg(daemon_log_has("txid_status: committed"), "no txid_status look in the log");
	expect_status(id, "committed");
	wait_sessions_clean("bank_a", 3000);
	/* The next one is normal. */
	post(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 3\"}]}}",
	     &r);
	expect_committed(&r, id, sizeof id);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a", 3), a0 + 8);
}
END_TEST

/* COMMIT never arrives and the connection stays open (a partition): the
 * backend keeps the transaction, txid_status says 'in progress' until
 * twopcd ends that backend; then aborted, and the reply says so (503:
 * nothing was committed). */
START_TEST(test_one_phase_lost_before_commit)
{
	TlHttpResponse r;
	char id[32];
	int64_t a0 = balance("bank_a", 4), t0;

	tl_fixture_start(&pt_fx, NULL, "before_one_phase_commit:drop");
	t0 = tl_now_ms();
	post(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance + 9 WHERE id = 4\"}]}}",
	     &r);
	expect_problem(&r, 503, "participant-unavailable");
	ck_assert_str_eq(tl_json_str(r.json, "outcome"), "aborted");
	snprintf(id, sizeof id, "%s", tl_json_str(r.json, "id"));
	tl_http_response_free(&r);
	ck_assert_msg(tl_now_ms() - t0 < 10000, "took %lld ms", (long long)(tl_now_ms() - t0));
	ck_assert_int_eq(balance("bank_a", 4), a0);
	ck_assert_msg(daemon_log_has("(pg_terminate_backend)"), "the old backend was not ended");
	ck_assert_msg(daemon_log_has("txid_status: aborted"), "no txid_status look in the log");
	expect_status(id, "aborted");
	wait_sessions_clean("bank_a", 3000);
}
END_TEST

/* COMMIT never arrives, and then the participant cannot be reached to ask
 * (its proxy goes dark): past the deadline and 5 s, the client hears 500
 * outcome-unknown; twopcd keeps asking, and once the network is back GET
 * tells: aborted (COMMIT never reached the server). */
START_TEST(test_one_phase_outcome_unknown)
{
	NetProxy *np = NULL;
	TlHttpResponse r;
	Bg bg;
	char err[PT_ERR], id[32], path[64];
	const char *status = NULL;
	FILE *f;
	int64_t a0 = balance("bank_a", 12), until;

	ck_assert_msg(np_start(cluster("bank_a")->port, &np, err, sizeof err), "np_start: %s", err);
	f = fopen(pt_fx.daemon.conf_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[coordinator]\nid = t1\nlisten = 127.0.0.1:%d\nlog_dir = %s\ndefault_timeout_ms = 10000\n"
		"lock_timeout_ms = 1000\nphase2_timeout_ms = 300\nlog_level = info\n"
		"\n[participant bank_a]\nconninfo = host=127.0.0.1 port=%d dbname=bank user=postgres\npool_size = 4\n"
		"\n[participant bank_b]\nconninfo = %s\npool_size = 4\n",
		pt_fx.daemon.port, pt_fx.daemon.log_dir, np_port(np), cluster("bank_b")->conninfo);
	ck_assert(fclose(f) == 0);
	tl_fixture_start(&pt_fx, NULL, "before_one_phase_commit:drop");

	memset(&bg, 0, sizeof bg);
	bg.body = "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 12\"}]},"
		  "\"timeout_ms\":1000}";
	ck_assert(pthread_create(&bg.th, NULL, bg_main, &bg) == 0);
	for (until = tl_now_ms() + 20000; tl_now_ms() < until && !daemon_log_has("asking txid_status");)
		tl_sleep_ms(5);
	ck_assert_msg(np_set_mode(np, NP_BLACKHOLE, 0, err, sizeof err), "%s", err);
	ck_assert(pthread_join(bg.th, NULL) == 0);
	ck_assert_msg(bg.ok, "POST: %s", bg.err);
	expect_problem(&bg.r, 500, "outcome-unknown");
	ck_assert_str_eq(tl_json_str(bg.r.json, "outcome"), "unknown");
	ck_assert_str_eq(tl_json_str(bg.r.json, "participant"), "bank_a");
	snprintf(id, sizeof id, "%s", tl_json_str(bg.r.json, "id"));
	tl_http_response_free(&bg.r);
	expect_status(id, "in_progress");

	ck_assert_msg(np_set_mode(np, NP_HEAL, 0, err, sizeof err), "%s", err);
	snprintf(path, sizeof path, "/v1/transactions/%s", id);
	for (until = tl_now_ms() + 30000; tl_now_ms() < until; tl_sleep_ms(100)) {
		get(path, &r);
		status = strcmp(tl_json_str(r.json, "status"), "in_progress") == 0 ? NULL : "done";
		if (status != NULL) {
			ck_assert_msg(strcmp(tl_json_str(r.json, "status"), "aborted") == 0, "%s", r.body);
			tl_http_response_free(&r);
			break;
		}
		tl_http_response_free(&r);
	}
	ck_assert_msg(status != NULL, "still in progress 30 s after the network came back");
	ck_assert_int_eq(balance("bank_a", 12), a0);
	ck_assert(metric("twopc_transactions_total", "outcome=\"aborted\"") == 1);
	ck_assert(metric("twopc_transactions_total", "outcome=\"unknown\"") == 0);
	wait_sessions_clean("bank_a", 5000);
	np_stop(np);
}
END_TEST

/* A lost COMMIT of a transaction that wrote nothing needs no look. */
START_TEST(test_one_phase_lost_read_only)
{
	TlHttpResponse r;
	char id[32];

	tl_fixture_start(&pt_fx, NULL, "before_one_phase_commit:drop");
	post(NULL, "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 5\"}]}}", &r);
	expect_committed(&r, id, sizeof id);
	ck_assert_msg(strstr(r.body, "\"rows\":[{\"balance\":") != NULL, "%s", r.body);
	tl_http_response_free(&r);
	ck_assert(daemon_log_has("wrote nothing: the lost COMMIT cannot matter"));
	ck_assert(!daemon_log_has("txid_status"));
	wait_sessions_clean("bank_a", 3000);
}
END_TEST

/* rows_affected as the command tags say (result_json.c reads the count
 * off the tag itself for UPDATE, DELETE, INSERT and MERGE): several rows,
 * none, INSERT's "INSERT 0 n", MERGE, and a SELECT's row count. */
START_TEST(test_rows_affected_counts)
{
	TlHttpResponse r;
	char id[32];

	tl_fixture_start(&pt_fx, NULL, NULL);
	post(NULL,
	     "{\"branches\":{\"bank_a\":["
	     "{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id BETWEEN 41 AND 47\"},"
	     "{\"sql\":\"DELETE FROM accounts WHERE id < 0\"},"
	     "{\"sql\":\"INSERT INTO parent SELECT g FROM generate_series(1001, 1012) g\"},"
	     "{\"sql\":\"MERGE INTO parent p USING (SELECT g FROM generate_series(1010, 1013) g) s ON p.id = s.g"
	     " WHEN NOT MATCHED THEN INSERT VALUES (s.g)\"}],"
	     "\"bank_b\":[{\"sql\":\"SELECT id FROM accounts WHERE id <= 3\"},"
	     "{\"sql\":\"UPDATE accounts SET balance = balance WHERE id = 1000\"}]}}",
	     &r);
	expect_committed(&r, id, sizeof id);
	ck_assert_msg(strstr(r.body, "\"bank_a\":[{\"rows_affected\":7},{\"rows_affected\":0},"
	                             "{\"rows_affected\":12},{\"rows_affected\":1}]") != NULL,
	              "%s", r.body);
	ck_assert_msg(strstr(r.body, "\"bank_b\":[{\"rows_affected\":3,\"rows\":[") != NULL, "%s", r.body);
	ck_assert_msg(strstr(r.body, "]},{\"rows_affected\":0}]") != NULL, "%s", r.body);
	tl_http_response_free(&r);
	ck_assert_int_eq(scalar("bank_a", "SELECT count(*) FROM parent WHERE id > 1000"), 13);
}
END_TEST

/* A transfer whose second branch only reads: committed; the reading
 * branch is prepared and finished in phase 1, not in the COMMIT record. */
START_TEST(test_read_only_branch)
{
	TlHttpResponse r;
	char id[32], line[512], *log;
	int64_t a0 = balance("bank_a", 6);

	tl_fixture_start(&pt_fx, NULL, NULL);
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 3 WHERE id = 6\","
	     "\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 6\"}]}}",
	     &r);
	expect_committed(&r, id, sizeof id);
	ck_assert_msg(strstr(r.body, "\"bank_b\":[{\"rows_affected\":1,\"rows\":[{\"balance\":1000000}]}]") != NULL,
		      "%s", r.body);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a", 6), a0 - 3);
	wait_nothing_prepared("bank_a", 2000);
	wait_nothing_prepared("bank_b", 2000);
	log = check_log();
	ck_assert_msg(commit_record(log, id, line, sizeof line), "no COMMIT record:\n%s", log);
	ck_assert_msg(strstr(line, "bank_a#0") != NULL && strstr(line, "bank_b") == NULL,
		      "the record should name bank_a only: %s", line);
	free(log);
	ck_assert(path_count("two_phase") == 1);
	ck_assert(metric("twopc_read_only_branches_total", "") == 1);
	ck_assert(metric("twopc_heuristic_hazards_total", "") == 0);
}
END_TEST

/* Every branch reads only: committed with the rows, nothing logged,
 * nothing left prepared. */
START_TEST(test_all_read_only)
{
	TlHttpResponse r;
	char id[32], line[512], *log, path[64];

	tl_fixture_start(&pt_fx, NULL, NULL);
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 7\"}],"
	     "\"bank_b\":[{\"sql\":\"SELECT count(*) AS n FROM accounts\"}]}}",
	     &r);
	expect_committed(&r, id, sizeof id);
	ck_assert_msg(strstr(r.body, "\"n\":100") != NULL && strstr(r.body, "\"balance\":1000000") != NULL, "%s",
		      r.body);
	tl_http_response_free(&r);
	wait_nothing_prepared("bank_a", 2000);
	wait_nothing_prepared("bank_b", 2000);
	log = check_log();
	ck_assert_msg(!commit_record(log, id, line, sizeof line), "all read-only, yet logged: %s", line);
	ck_assert_msg(strstr(log, "COMMIT     txn") == NULL, "a COMMIT record:\n%s", log);
	free(log);
	ck_assert(path_count("read_only") == 1);
	ck_assert(path_count("two_phase") == 0);
	ck_assert(metric("twopc_read_only_branches_total", "") == 2);
	ck_assert(metric("twopc_dlog_fsync_duration_seconds_count", "") == 0);
	snprintf(path, sizeof path, "/v1/transactions/%s", id);
	get(path, &r);
	ck_assert_msg(strcmp(tl_json_str(r.json, "status"), "committed") == 0 && strstr(r.body, "read-only") != NULL,
		      "%s", r.body);
	tl_http_response_free(&r);
}
END_TEST

/* SELECT ... FOR UPDATE (and FOR SHARE) lock rows by writing them: such a
 * branch is a writer, keeps its lock until phase 2, and is in the record.
 * A FOR UPDATE that matched nothing locked nothing: read-only. */
START_TEST(test_select_for_update_writes)
{
	TlHttpResponse r;
	char id[32], id2[32], line[512], *log;

	tl_fixture_start(&pt_fx, NULL, NULL);
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 8 FOR UPDATE\"}],"
	     "\"bank_b\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 8 FOR SHARE\"}]}}",
	     &r);
	expect_committed(&r, id, sizeof id);
	tl_http_response_free(&r);
	post(NULL,
	     "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 8 FOR UPDATE\"}],"
	     "\"bank_b\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = -1 FOR UPDATE\"}]}}",
	     &r);
	expect_committed(&r, id2, sizeof id2);
	tl_http_response_free(&r);
	log = check_log();
	ck_assert_msg(commit_record(log, id, line, sizeof line), "FOR UPDATE/SHARE not logged:\n%s", log);
	ck_assert_msg(strstr(line, "bank_a#0 bank_b#1") != NULL, "%s", line);
	ck_assert_msg(commit_record(log, id2, line, sizeof line), "FOR UPDATE not logged:\n%s", log);
	ck_assert_msg(strstr(line, "bank_a#0") != NULL && strstr(line, "bank_b") == NULL, "%s", line);
	free(log);
	ck_assert(path_count("two_phase") == 2);
	ck_assert(path_count("read_only") == 0);
	ck_assert(metric("twopc_read_only_branches_total", "") == 1);
}
END_TEST

/* Crashes around a read-only branch: before the decision, everything is
 * rolled back; after it, the writing branch commits. Either way nothing of
 * ours is left prepared, the read-only branch included. */
START_TEST(test_read_only_crash)
{
	TlHttpResponse r;
	char err[PT_ERR], line[512], *log;
	const char *body = "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance + 11 WHERE id "
			   "= 9\"}],\"bank_b\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 9\"}]}}";
	int64_t a0 = balance("bank_a", 9);
	int st;

	/* Killed just before the COMMIT record. */
	tl_fixture_start(&pt_fx, NULL, "before_log_commit:crash");
	ck_assert_msg(!tl_http_request(pt_fx.daemon.port, "POST", "/v1/transactions", body, 30000, &r, err, sizeof err),
		      "expected no answer, got %d", r.status);
	ck_assert(tl_daemon_wait_exit(&pt_fx.daemon, 10000, &st, err, sizeof err));
	restart(NULL);
	wait_nothing_prepared("bank_a", 1000);
	wait_nothing_prepared("bank_b", 1000);
	ck_assert_int_eq(balance("bank_a", 9), a0);

	/* Killed just after it is durable, before phase 2. */
	restart("after_log_fsync:crash");
	ck_assert(!tl_http_request(pt_fx.daemon.port, "POST", "/v1/transactions", body, 30000, &r, err, sizeof err));
	ck_assert(tl_daemon_wait_exit(&pt_fx.daemon, 10000, &st, err, sizeof err));
	log = check_log();
	ck_assert_msg(strstr(log, "COMMIT     txn") != NULL, "%s", log);
	snprintf(line, sizeof line, "%.*s", (int)strcspn(strstr(log, "COMMIT     txn"), "\n"), strstr(log, "COMMIT     txn"));
	ck_assert_msg(strstr(line, "bank_a#0") != NULL && strstr(line, "bank_b") == NULL, "%s", line);
	free(log);
	restart(NULL);
	wait_nothing_prepared("bank_a", 1000);
	wait_nothing_prepared("bank_b", 1000);
	ck_assert_int_eq(balance("bank_a", 9), a0 + 11);
	ck_assert(metric("twopc_heuristic_hazards_total", "") == 0);
}
END_TEST

/* With an Idempotency-Key, a single participant still goes through
 * PREPARE and a COMMIT record (it holds the key), and so does a
 * transaction of read-only branches; both replay after a kill -9. */
START_TEST(test_keyed_stays_two_phase)
{
	TlHttpResponse r1, r2;
	Bg bg;
	char id[32], ido[32], idp[32], line[512], *log, extra[128], query[512];
	const char *one = "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance + 13 WHERE id = 10 "
			  "RETURNING balance\"}]}}";
	const char *ro = "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 10\"}],"
			 "\"bank_b\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 10\"}]}}";
	int64_t a0 = balance("bank_a", 10);

	tl_fixture_start(&pt_fx, NULL, NULL);
	snprintf(extra, sizeof extra, "Idempotency-Key: \"paths-one-%d\"\r\n", (int)getpid());
	post(extra, one, &r1);
	expect_committed(&r1, id, sizeof id);
	snprintf(extra, sizeof extra, "Idempotency-Key: \"paths-ro-%d\"\r\n", (int)getpid());
	post(extra, ro, &r2);
	expect_committed(&r2, ido, sizeof ido);
	ck_assert_int_eq(balance("bank_a", 10), a0 + 13);
	log = check_log();
	ck_assert_msg(commit_record(log, id, line, sizeof line), "keyed one-participant txn not logged:\n%s", log);
	ck_assert_msg(strstr(line, "bank_a#0") != NULL && strstr(line, "key \"paths-one-") != NULL, "%s", line);
	/* A keyed record names every branch: a COMMIT naming none would not
	 * decode. */
	ck_assert_msg(commit_record(log, ido, line, sizeof line), "keyed read-only txn not logged:\n%s", log);
	ck_assert_msg(strstr(line, "bank_a#0 bank_b#1") != NULL && strstr(line, "key \"paths-ro-") != NULL, "%s",
		      line);
	free(log);
	ck_assert(path_count("two_phase") == 1);
	ck_assert(path_count("read_only") == 1);
	ck_assert(path_count("one_phase") == 0);

	/* PREPARE, seen at the commit point of a keyed single participant. */
	snprintf(extra, sizeof extra, "Idempotency-Key: \"paths-probe-%d\"\r\n", (int)getpid());
	(void)probe_commit_point(extra, "{\"branches\":{\"bank_a\":[{\"sql\":\"INSERT INTO probe VALUES (3)\"}]}}", &bg,
				 query, sizeof query);
	ck_assert_msg(strncmp(query, "PREPARE TRANSACTION 'twopc_t1_", 30) == 0, "keyed branch stopped in '%s'", query);
	expect_committed(&bg.r, idp, sizeof idp);
	tl_http_response_free(&bg.r);
	ck_assert(path_count("two_phase") == 2);

	restart(NULL); /* kill -9, then replay */
	{
		TlHttpResponse r3;
		snprintf(extra, sizeof extra, "Idempotency-Key: \"paths-one-%d\"\r\n", (int)getpid());
		post(extra, one, &r3);
		ck_assert_msg(r3.status == 200 && r3.body_len == r1.body_len && memcmp(r3.body, r1.body, r1.body_len) == 0,
			      "replay differs:\n%s\n%s", r1.body, r3.body);
		tl_http_response_free(&r3);
		snprintf(extra, sizeof extra, "Idempotency-Key: \"paths-ro-%d\"\r\n", (int)getpid());
		post(extra, ro, &r3);
		ck_assert_msg(r3.status == 200 && r3.body_len == r2.body_len && memcmp(r3.body, r2.body, r2.body_len) == 0,
			      "replay differs:\n%s\n%s", r2.body, r3.body);
		tl_http_response_free(&r3);
	}
	ck_assert_int_eq(balance("bank_a", 10), a0 + 13);
	tl_http_response_free(&r1);
	tl_http_response_free(&r2);
	wait_nothing_prepared("bank_a", 1000);
	wait_nothing_prepared("bank_b", 1000);
}
END_TEST

/* A keyed request whose branches are all read-only: they finish in phase 1,
 * while its COMMIT record (which holds the key) is still waiting for the
 * fsync, held back here by a fault-point delay. The transaction must
 * finish only once the record is durable (it used to end from the
 * deciding state: a fatal "impossible state change", found by the
 * sanitizer run's timing). */
START_TEST(test_keyed_read_only_slow_log)
{
	TlHttpResponse r, again;
	char id[32], extra[128];
	const char *ro = "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 11\"}],"
			 "\"bank_b\":[{\"sql\":\"SELECT balance FROM accounts WHERE id = 11\"}]}}";

	tl_fixture_start(&pt_fx, NULL, "after_log_write:delay=400");
	snprintf(extra, sizeof extra, "Idempotency-Key: \"paths-slow-ro-%d\"\r\n", (int)getpid());
	post(extra, ro, &r);
	expect_committed(&r, id, sizeof id);
	post(extra, ro, &again);
	ck_assert_msg(again.status == 200 && again.body_len == r.body_len && memcmp(again.body, r.body, r.body_len) == 0,
		      "replay differs:\n%s\n%s", r.body, again.body);
	tl_http_response_free(&r);
	tl_http_response_free(&again);
	wait_nothing_prepared("bank_a", 1000);
	wait_nothing_prepared("bank_b", 1000);
}
END_TEST

/* ------------------------------------------------------------- fixtures */

TL_FIXTURE_GLUE(pt_fx)
/* Runs BODY N times; every one must commit. */
static void commit_n(const char *body, int n)
{
	for (int i = 0; i < n; i++) {
		TlHttpResponse r;
		char id[32];
		post(NULL, body, &r);
		expect_committed(&r, id, sizeof id);
		tl_http_response_free(&r);
	}
}

START_TEST(test_statement_cache)
{
	static const char transfer[] =
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE cache_t SET v = v - $1 WHERE id = $2\",\"params\":[1,1],"
	    "\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE cache_t SET v = v + $1 WHERE id = $2\",\"params\":[1,1],"
	    "\"expect_rows\":1}]}}";
	static const char returning[] =
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE cache_t SET v = v + 0 WHERE id = 2 RETURNING *\","
	    "\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE cache_t SET v = v + 0 WHERE id = 2 RETURNING *\","
	    "\"expect_rows\":1}]}}";
	static const char typo[] = "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE cache_nope SET v = 1\"}],"
	                           "\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";
	static const char *const kv[] = {"log_level", "info", NULL};
	char err[PT_ERR];
	TlHttpResponse r;
	double prepared0, executed0;

	for (int i = 0; pt_clusters[i]; i++)
		if (!tl_pg_exec(cluster(pt_clusters[i]),
		                "DROP TABLE IF EXISTS cache_t; CREATE TABLE cache_t (id int PRIMARY KEY, v bigint);"
		                "INSERT INTO cache_t VALUES (1, 1000), (2, 5)",
		                err, sizeof err))
			ck_abort_msg("%s", err);
	tl_fixture_start(&pt_fx, kv, NULL);

	/* Row-less text repeats: prepared, then executed by name. */
	commit_n(transfer, 40);
	ck_assert_int_eq(scalar("bank_a", "SELECT v FROM cache_t WHERE id = 1"), 960);
	ck_assert_int_eq(scalar("bank_b", "SELECT v FROM cache_t WHERE id = 1"), 1040);
	prepared0 = metric("twopc_statements_prepared_total", "");
	executed0 = metric("twopc_statement_executions_total", "kind=\"prepared\"");
	ck_assert_msg(prepared0 >= 2, "nothing prepared after 40 identical transfers: %g", prepared0);
	ck_assert_msg(executed0 >= 40, "only %g prepared executions in 40 transfers", executed0);

	/* DDL under a prepared statement: PostgreSQL replans it. */
	for (int i = 0; pt_clusters[i]; i++)
		if (!tl_pg_exec(cluster(pt_clusters[i]), "ALTER TABLE cache_t ALTER COLUMN v TYPE numeric", err,
		                sizeof err))
			ck_abort_msg("%s", err);
	commit_n(transfer, 10);
	ck_assert_int_eq(scalar("bank_a", "SELECT v FROM cache_t WHERE id = 1"), 950);
	ck_assert(metric("twopc_statement_executions_total", "kind=\"prepared\"") > executed0);

	/* Text that returns rows is never prepared: a column added under it
	 * shows in the next result instead of failing a cached plan (0A000). */
	commit_n(returning, 20);
	for (int i = 0; pt_clusters[i]; i++)
		if (!tl_pg_exec(cluster(pt_clusters[i]), "ALTER TABLE cache_t ADD COLUMN note text DEFAULT 'x'", err,
		                sizeof err))
			ck_abort_msg("%s", err);
	for (int i = 0; i < 20; i++) {
		post(NULL, returning, &r);
		ck_assert_msg(r.status == 200 && strstr(r.body, "\"note\":\"x\"") != NULL, "after ADD COLUMN: %d %s",
		              r.status, r.body);
		tl_http_response_free(&r);
	}

	/* A text that cannot be parsed fails alike every time, also when it
	 * would be prepared, and leaves the connections usable. */
	for (int i = 0; i < 6; i++) {
		post(NULL, typo, &r);
		expect_problem(&r, 409, "statement-failed");
		ck_assert_str_eq(tl_json_str(r.json, "sqlstate"), "42P01");
		tl_http_response_free(&r);
	}
	commit_n(transfer, 5);
	ck_assert_int_eq(scalar("bank_b", "SELECT v FROM cache_t WHERE id = 1"), 1055);
	wait_nothing_prepared("bank_a", 2000);
	wait_nothing_prepared("bank_b", 2000);
	ck_assert(metric("twopc_heuristic_hazards_total", "") == 0);
}
END_TEST

/* Backends on PART running a query that contains TEXT (not ours). */
static int64_t running(const char *part, const char *text)
{
	char sql[256];

	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND "
	         "query LIKE '%%%s%%'",
	         text);
	return scalar(part, sql);
}

/* Waits up to MS for no backend on PART to run TEXT; the time it took. */
static int64_t wait_not_running(const char *part, const char *text, int ms)
{
	int64_t t0 = tl_now_ms();

	while (running(part, text) > 0) {
		ck_assert_msg(tl_now_ms() - t0 < ms, "%s still runs '%s' after %d ms", part, text, ms);
		tl_sleep_ms(20);
	}
	return tl_now_ms() - t0;
}

START_TEST(test_session_settings)
{
	static const char *const kv[] = {"lock_timeout_ms", "300", "log_level", "info", NULL};
	static const char sleeper[] = "{\"timeout_ms\":400,\"branches\":{\"bank_a\":[{\"sql\":\"SELECT pg_sleep(30)\"}],"
	                              "\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";
	static const char locked[] =
	    "{\"timeout_ms\":3000,\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance WHERE id = "
	    "50\",\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";
	char err[PT_ERR];
	TlHttpResponse r;
	PGconn *holder;
	PGresult *res;
	int64_t t0, took;

	tl_fixture_start(&pt_fx, kv, NULL);
	commit_n("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"bank_b\":[{\"sql\":\"SELECT 2\"}]}}", 10);

	/* Past the deadline: 504 at once, and the backend stops soon after. */
	t0 = tl_now_ms();
	post(NULL, sleeper, &r);
	took = tl_now_ms() - t0;
	expect_problem(&r, 504, "timeout");
	tl_http_response_free(&r);
	ck_assert_msg(took < 2000, "504 after %lld ms", (long long)took);
	took = wait_not_running("bank_a", "pg_sleep(30)", 3000);
	fprintf(stderr, "session_settings: pg_sleep ended %lld ms after the 504\n", (long long)took);

	/* A row lock held elsewhere: lock_timeout (300 ms) ends the wait. */
	holder = PQconnectdb(cluster("bank_a")->conninfo);
	ck_assert_msg(PQstatus(holder) == CONNECTION_OK, "%s", PQerrorMessage(holder));
	res = PQexec(holder, "BEGIN; SELECT * FROM accounts WHERE id = 50 FOR UPDATE");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	t0 = tl_now_ms();
	post(NULL, locked, &r);
	took = tl_now_ms() - t0;
	expect_problem(&r, 409, "statement-failed");
	ck_assert_str_eq(tl_json_str(r.json, "sqlstate"), "55P03");
	tl_http_response_free(&r);
	ck_assert_msg(took >= 250 && took < 2500, "lock wait ended after %lld ms, want about 300", (long long)took);

	/* Reloaded to 0 (none): the deadline ends the wait (504), and the
	 * waiting backend goes away. Connections already open get it too. */
	if (!tl_daemon_set(&pt_fx.daemon, "lock_timeout_ms", "0", err, sizeof err))
		ck_abort_msg("%s", err);
	ck_assert_int_eq(kill(pt_fx.daemon.pid, SIGHUP), 0);
	t0 = tl_now_ms();
	while (!daemon_log_has("reload: lock_timeout_ms 300 -> 0")) {
		ck_assert_msg(tl_now_ms() - t0 < 10000, "no reload line in the daemon's log");
		tl_sleep_ms(20);
	}
	t0 = tl_now_ms();
	post(NULL, locked, &r);
	took = tl_now_ms() - t0;
	expect_problem(&r, 504, "timeout");
	tl_http_response_free(&r);
	ck_assert_msg(took >= 2900, "504 after %lld ms: lock_timeout still in force", (long long)took);
	wait_not_running("bank_a", "id = 50", 3000);
	PQfinish(holder);
	commit_n(locked, 3);
	wait_nothing_prepared("bank_a", 2000);
	wait_nothing_prepared("bank_b", 2000);
}
END_TEST

/* Load for the batching test: each thread moves 1 from bank_a's account
 * to bank_b's, N times. */
#define P2_THREADS 12
#define P2_EACH    15
typedef struct P2Load {
	pthread_t th;
	int seed;
	int ok, aborted, other; /* 200; 409/503/504 with outcome aborted; anything else */
	char err[PT_ERR];
} P2Load;

static void *p2_load_main(void *arg)
{
	P2Load *l = arg;
	unsigned seed = (unsigned)l->seed;

	for (int i = 0; i < P2_EACH; i++) {
		char body[512];
		TlHttpResponse r;
		/* Accounts of this thread's own (8 each): transfers on one id
		 * from two threads could deadlock across the participants, which
		 * only lock_timeout breaks, and that is not what is tested here. */
		int id = 1 + (l->seed % 100) * 8 + (int)(rand_r(&seed) % 8);
		snprintf(body, sizeof body,
		         "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = %d\","
		         "\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = "
		         "%d\",\"expect_rows\":1}]},\"timeout_ms\":20000}",
		         id, id);
		if (!tl_http_request_h(pt_fx.daemon.port, "POST", "/v1/transactions", NULL, body, 60000, &r, l->err,
		                       sizeof l->err)) {
			l->other++;
			continue;
		}
		if (r.status == 200) {
			l->ok++;
		} else if ((r.status == 409 || r.status == 503 || r.status == 504) && r.json && tl_json_str(r.json, "outcome") &&
		           strcmp(tl_json_str(r.json, "outcome"), "aborted") == 0) {
			l->aborted++;
			snprintf(l->err, sizeof l->err, "%d %s", r.status, r.body ? r.body : "");
		} else {
			l->other++;
			snprintf(l->err, sizeof l->err, "%d %s", r.status, r.body ? r.body : "");
		}
		tl_http_response_free(&r);
	}
	return NULL;
}

typedef struct P2Killer {
	pthread_t th;
	volatile bool stop;
	int killed;
} P2Killer;

/* Terminates every twopcd backend caught running COMMIT PREPARED. */
static void *p2_killer_main(void *arg)
{
	P2Killer *k = arg;
	char err[PT_ERR];
	PGconn *c[2] = {tl_pg_connect(cluster("bank_a"), err, sizeof err),
	                tl_pg_connect(cluster("bank_b"), err, sizeof err)};

	while (!k->stop && c[0] != NULL && c[1] != NULL) {
		for (int i = 0; i < 2; i++) {
			PGresult *res = PQexec(c[i], "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
			                             "pg_stat_activity WHERE application_name LIKE 'twopcd%' AND "
			                             "query LIKE 'COMMIT PREPARED%' AND state = 'active'");
			if (PQresultStatus(res) == PGRES_TUPLES_OK)
				k->killed += atoi(PQgetvalue(res, 0, 0));
			PQclear(res);
		}
		tl_sleep_ms(2);
	}
	PQfinish(c[0]);
	PQfinish(c[1]);
	return NULL;
}

/* Runs the load (and the killer if KILL); returns the 200s. Without the
 * killer every transfer must commit; with it, a transfer may abort (the
 * killer can hit a backend that has moved on to another transfer's phase
 * 1: 503), but every answer must be a commit or a clean abort. */
static int p2_run(bool kill, int *killed)
{
	P2Load load[P2_THREADS];
	P2Killer k = {0};
	int ok = 0, aborted = 0;

	if (kill)
		ck_assert(pthread_create(&k.th, NULL, p2_killer_main, &k) == 0);
	for (int i = 0; i < P2_THREADS; i++) {
		memset(&load[i], 0, sizeof load[i]);
		load[i].seed = 1000 * (kill ? 2 : 1) + i; /* % 100: the thread's index */
		ck_assert(pthread_create(&load[i].th, NULL, p2_load_main, &load[i]) == 0);
	}
	for (int i = 0; i < P2_THREADS; i++) {
		ck_assert(pthread_join(load[i].th, NULL) == 0);
		ck_assert_msg(load[i].other == 0, "thread %d: %d failed transfers: %s", i, load[i].other, load[i].err);
		ck_assert_msg(kill || load[i].aborted == 0, "thread %d: %d aborted: %s", i, load[i].aborted, load[i].err);
		ok += load[i].ok;
		aborted += load[i].aborted;
		if (load[i].aborted > 0)
			fprintf(stderr, "phase2_batches: thread %d's last abort: %.300s\n", i, load[i].err);
	}
	if (kill) {
		k.stop = true;
		ck_assert(pthread_join(k.th, NULL) == 0);
		*killed = k.killed;
		fprintf(stderr, "phase2_batches: with the killer: %d committed, %d aborted\n", ok, aborted);
	}
	return ok;
}

START_TEST(test_phase2_batches)
{
	static const char *const kv[] = {"log_level", "info", "phase2_timeout_ms", "2000", NULL};
	int64_t a0 = scalar("bank_a", "SELECT sum(balance) FROM accounts");
	int64_t b0 = scalar("bank_b", "SELECT sum(balance) FROM accounts");
	int ok, killed = 0;
	double batches, singles;

	/* Each group commit waits 30 ms: the decisions of many transfers
	 * become durable together. */
	tl_fixture_start(&pt_fx, kv, "after_log_write:delay=30");
	ok = p2_run(false, NULL);
	ck_assert_int_eq(ok, P2_THREADS * P2_EACH);
	batches = metric("twopc_phase2_batch_size_count", "");
	singles = metric("twopc_phase2_batch_size_bucket", "le=\"1\"");
	ck_assert_msg(batches > 0 && singles < batches, "no batch of two or more: %g of %g sent alone", singles,
	              batches);
	ck_assert_msg(metric("twopc_phase2_batch_size_sum", "") == 2.0 * ok, "every branch once: sum %g, want %d",
	              metric("twopc_phase2_batch_size_sum", ""), 2 * ok);
	fprintf(stderr, "phase2_batches: %d transfers, %g batches (%g alone)\n", ok, batches, singles);

	/* The same while COMMIT PREPARED's backends are killed. */
	ok += p2_run(true, &killed);
	fprintf(stderr, "phase2_batches: %d COMMIT PREPARED backends terminated\n", killed);
	ck_assert_msg(killed > 0, "the killer never caught a COMMIT PREPARED");
	ck_assert_msg(ok > P2_THREADS * P2_EACH, "nothing committed with the killer");
	wait_nothing_prepared("bank_a", 20000);
	wait_nothing_prepared("bank_b", 20000);
	ck_assert_int_eq(scalar("bank_a", "SELECT sum(balance) FROM accounts"), a0 - ok);
	ck_assert_int_eq(scalar("bank_b", "SELECT sum(balance) FROM accounts"), b0 + ok);
	ck_assert(metric("twopc_heuristic_hazards_total", "") == 0);
	/* Aborted ones may still be retrying a ROLLBACK PREPARED the killer hit. */
	for (int64_t until = tl_now_ms() + 20000; metric("twopc_in_flight", "") != 0; tl_sleep_ms(50))
		ck_assert_msg(tl_now_ms() < until, "%g transactions still in flight", metric("twopc_in_flight", ""));

	/* phase2_batch_max caps a pipeline: with 2, no batch is larger. */
	{
		char err[PT_ERR];
		if (!tl_daemon_set(&pt_fx.daemon, "phase2_batch_max", "2", err, sizeof err))
			ck_abort_msg("%s", err);
	}
	restart("after_log_write:delay=30");
	ok += p2_run(false, NULL);
	batches = metric("twopc_phase2_batch_size_count", "");
	ck_assert_msg(batches > 0 && metric("twopc_phase2_batch_size_bucket", "le=\"2\"") == batches &&
	                  metric("twopc_phase2_batch_size_bucket", "le=\"1\"") < batches,
	              "with phase2_batch_max = 2: %g batches, %g of at most 2, %g alone", batches,
	              metric("twopc_phase2_batch_size_bucket", "le=\"2\""),
	              metric("twopc_phase2_batch_size_bucket", "le=\"1\""));
	wait_nothing_prepared("bank_a", 20000);
	wait_nothing_prepared("bank_b", 20000);
	ck_assert_int_eq(scalar("bank_a", "SELECT sum(balance) FROM accounts"), a0 - ok);
}
END_TEST

START_TEST(test_terminated_connections)
{
	static const char transfer[] =
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 99\","
	    "\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 99\","
	    "\"expect_rows\":1}]}}";
	int64_t a0 = balance("bank_a", 99), b0 = balance("bank_b", 99);

	tl_fixture_start(&pt_fx, NULL, NULL);
	commit_n(transfer, 3);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; pt_clusters[i]; i++) {
			int64_t n = scalar(pt_clusters[i], "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
			                                   "pg_stat_activity WHERE application_name LIKE 'twopcd%'");
			ck_assert_msg(n >= 1, "%s: no twopcd connection to terminate", pt_clusters[i]);
		}
		tl_sleep_ms(100); /* twopcd sees its connections close */
		commit_n(transfer, 2);
	}
	ck_assert_int_eq(balance("bank_a", 99), a0 - 9);
	ck_assert_int_eq(balance("bank_b", 99), b0 + 9);
}
END_TEST

START_TEST(test_pool_wait_deadline)
{
	static const char sleeper[] = "{\"timeout_ms\":4000,\"branches\":{\"bank_a\":[{\"sql\":\"SELECT pg_sleep(2)\"}],"
	                              "\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";
	static const char quick[] = "{\"timeout_ms\":300,\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],"
	                            "\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";
	Bg bg[8]; /* the pool's size: every connection to bank_a asleep */
	TlHttpResponse r;
	int64_t t0, took;

	tl_fixture_start(&pt_fx, NULL, NULL);
	for (int i = 0; i < 8; i++) {
		memset(&bg[i], 0, sizeof bg[i]);
		bg[i].body = sleeper;
		ck_assert(pthread_create(&bg[i].th, NULL, bg_main, &bg[i]) == 0);
	}
	for (t0 = tl_now_ms(); running("bank_a", "pg_sleep(2)") < 8; tl_sleep_ms(20))
		ck_assert_msg(tl_now_ms() - t0 < 1500, "the 8 sleepers did not all start");
	t0 = tl_now_ms();
	post(NULL, quick, &r);
	took = tl_now_ms() - t0;
	expect_problem(&r, 504, "timeout");
	ck_assert_msg(strstr(r.body, "waiting for a connection") != NULL, "%s", r.body);
	tl_http_response_free(&r);
	fprintf(stderr, "pool_wait_deadline: 504 after %lld ms (timeout_ms 300)\n", (long long)took);
	ck_assert_msg(took >= 290 && took < 1200, "504 after %lld ms, want about 300", (long long)took);
	for (int i = 0; i < 8; i++) {
		ck_assert(pthread_join(bg[i].th, NULL) == 0);
		ck_assert_msg(bg[i].ok && bg[i].r.status == 200, "sleeper %d: %s %d", i, bg[i].err, bg[i].r.status);
		tl_http_response_free(&bg[i].r);
	}
}
END_TEST

TL_FIXTURE_SETUP(pt_fx, one_phase_commit)
TL_FIXTURE_SETUP(pt_fx, one_phase_aborts)
TL_FIXTURE_SETUP(pt_fx, one_phase_lost_after_commit)
TL_FIXTURE_SETUP(pt_fx, one_phase_lost_before_commit)
TL_FIXTURE_SETUP(pt_fx, one_phase_lost_read_only)
TL_FIXTURE_SETUP(pt_fx, one_phase_outcome_unknown)
TL_FIXTURE_SETUP(pt_fx, read_only_branch)
TL_FIXTURE_SETUP(pt_fx, rows_affected_counts)
TL_FIXTURE_SETUP(pt_fx, all_read_only)
TL_FIXTURE_SETUP(pt_fx, select_for_update_writes)
TL_FIXTURE_SETUP(pt_fx, read_only_crash)
TL_FIXTURE_SETUP(pt_fx, statement_cache)
TL_FIXTURE_SETUP(pt_fx, session_settings)
TL_FIXTURE_SETUP(pt_fx, phase2_batches)
TL_FIXTURE_SETUP(pt_fx, terminated_connections)
TL_FIXTURE_SETUP(pt_fx, pool_wait_deadline)
TL_FIXTURE_SETUP(pt_fx, keyed_stays_two_phase)
TL_FIXTURE_SETUP(pt_fx, keyed_read_only_slow_log)

int main(void)
{
	Suite *s = suite_create("paths");

	TL_FIXTURE_CASE(pt_fx, s, one_phase_commit);
	TL_FIXTURE_CASE(pt_fx, s, one_phase_aborts);
	TL_FIXTURE_CASE(pt_fx, s, one_phase_lost_after_commit);
	TL_FIXTURE_CASE(pt_fx, s, one_phase_lost_before_commit);
	TL_FIXTURE_CASE(pt_fx, s, one_phase_lost_read_only);
	TL_FIXTURE_CASE(pt_fx, s, one_phase_outcome_unknown);
	TL_FIXTURE_CASE(pt_fx, s, read_only_branch);
	TL_FIXTURE_CASE(pt_fx, s, rows_affected_counts);
	TL_FIXTURE_CASE(pt_fx, s, all_read_only);
	TL_FIXTURE_CASE(pt_fx, s, select_for_update_writes);
	TL_FIXTURE_CASE(pt_fx, s, read_only_crash);
	TL_FIXTURE_CASE(pt_fx, s, statement_cache);
	TL_FIXTURE_CASE(pt_fx, s, session_settings);
	TL_FIXTURE_CASE(pt_fx, s, phase2_batches);
	TL_FIXTURE_CASE(pt_fx, s, terminated_connections);
	TL_FIXTURE_CASE(pt_fx, s, pool_wait_deadline);
	TL_FIXTURE_CASE(pt_fx, s, keyed_stays_two_phase);
	TL_FIXTURE_CASE(pt_fx, s, keyed_read_only_slow_log);
	return tl_fixture_main(&pt_fx, s);
}
