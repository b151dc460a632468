/*
 * check_integration: end-to-end tests of twopcd on real PostgreSQL.
 *
 * The runner process starts three throwaway clusters once (bank_a, bank_b,
 * bank_c, each with the demo tables accounts and transfers); every test then
 * runs in a forked child with a fresh twopcd and talks HTTP to it over
 * loopback. Every test reads its outcome back from PostgreSQL: balances,
 * transfers rows and pg_prepared_xacts, not just the HTTP answer.
 *
 * Tests never reset the data. Each reads the state it depends on first and
 * checks changes relative to it, so the tests stay independent and can run
 * in any order. Exits 77 (automake SKIP) when no PostgreSQL server binaries
 * are available.
 */
#include "testlib.h"

#include <check.h>
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IT_NPART 3
#define IT_TIMEOUT_S 300
#define IT_HTTP_TIMEOUT_MS 60000
#define IT_ERR 2048

#define IT_SQL_DEBIT "UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1"
#define IT_SQL_CREDIT "UPDATE accounts SET balance = balance + $1 WHERE id = $2"
#define IT_SQL_INSERT "INSERT INTO transfers (id) VALUES ($1)"

#define IT_SCHEMA                                                                      \
	"CREATE TABLE accounts (id int PRIMARY KEY,"                                   \
	"  balance bigint NOT NULL CHECK (balance >= 0));"                              \
	"CREATE TABLE transfers (id text PRIMARY KEY);"                                \
	"INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g;"

static const char *const it_names[IT_NPART] = {"bank_a", "bank_b", "bank_c"};

/*
 * Fixture state. Check fixtures take no arguments, so it lives in file-level
 * variables: the clusters belong to the runner process (made once, by the
 * unchecked fixture), the daemon to the forked test that started it.
 */
static TlEnv it_env;
static bool it_env_tried;
static bool it_env_ok;
static char it_env_err[IT_ERR];
static TlDaemon it_daemon;
static int it_seq;

/* ------------------------------------------------------------------ helpers */

static TlCluster *it_cluster(const char *name)
{
	TlCluster *c = tl_env_cluster(&it_env, name);

	ck_assert_msg(c != NULL, "no cluster %s", name);
	return c;
}

/* A transfer id unique within this run (and across runs on one machine). */
static void it_unique_id(char *buf, size_t len, const char *prefix)
{
	snprintf(buf, len, "%s-%d-%d", prefix, (int)getpid(), ++it_seq);
}

static int64_t it_scalar(const char *part, const char *sql, int nparams,
			 const char *const *params)
{
	char err[IT_ERR];
	int64_t v = 0;

	if (!tl_pg_scalar_i64(it_cluster(part), sql, nparams, params, &v, err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

static int64_t it_balance(const char *part, int acct)
{
	char id[16];
	const char *params[1] = {id};

	snprintf(id, sizeof id, "%d", acct);
	return it_scalar(part, "SELECT balance FROM accounts WHERE id = $1::int", 1, params);
}

static int64_t it_transfer_count(const char *part, const char *tid)
{
	const char *params[1] = {tid};

	return it_scalar(part, "SELECT count(*) FROM transfers WHERE id = $1", 1, params);
}

static int64_t it_total_balance(void)
{
	int64_t sum = 0;
	int i;

	for (i = 0; i < IT_NPART; i++)
		sum += it_scalar(it_names[i], "SELECT coalesce(sum(balance), 0) FROM accounts", 0,
				 NULL);
	return sum;
}

/* Fails unless no participant holds a prepared transaction of ours within
 * WAIT_MS (rollbacks after an abort may still be on their way). */
static void it_assert_nothing_prepared(int wait_ms)
{
	int64_t deadline = tl_now_ms() + wait_ms;
	char err[IT_ERR];

	for (;;) {
		char detail[256] = "";
		size_t used = 0;
		int64_t total = 0;
		int i;

		for (i = 0; i < IT_NPART; i++) {
			int64_t n = 0;

			if (!tl_pg_count_prepared(it_cluster(it_names[i]), &n, err, sizeof err))
				ck_abort_msg("%s", err);
			total += n;
			used += (size_t)snprintf(detail + used, sizeof detail - used, " %s=%" PRId64,
						 it_names[i], n);
		}
		if (total == 0)
			return;
		if (tl_now_ms() >= deadline)
			ck_abort_msg("prepared transactions left after %d ms:%s", wait_ms, detail);
		tl_sleep_ms(200);
	}
}

static bool it_is_txn_id(const char *s)
{
	int i;

	if (s == NULL || strlen(s) != 16)
		return false;
	for (i = 0; i < 16; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

/* One statement object; PARAMS is stolen; EXPECT_ROWS < 0 leaves it out. */
static json_t *it_stmt(const char *sql, json_t *params, int expect_rows)
{
	json_t *s = json_object();

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(json_object_set_new(s, "sql", json_string(sql)), 0);
	if (params != NULL)
		ck_assert_int_eq(json_object_set_new(s, "params", params), 0);
	if (expect_rows >= 0)
		ck_assert_int_eq(json_object_set_new(s, "expect_rows", json_integer(expect_rows)), 0);
	return s;
}

/* The branch of a transfer that takes AMOUNT from ACCT, guarded so that it
 * touches no row (and the transaction aborts) when the money is not there. */
static json_t *it_branch_debit(int64_t amount, int acct, const char *tid)
{
	return json_pack("[o,o]",
			 it_stmt(IT_SQL_DEBIT, json_pack("[I,i]", (json_int_t)amount, acct), 1),
			 it_stmt(IT_SQL_INSERT, json_pack("[s]", tid), 1));
}

static json_t *it_branch_credit(int64_t amount, int acct, const char *tid)
{
	return json_pack("[o,o]",
			 it_stmt(IT_SQL_CREDIT, json_pack("[I,i]", (json_int_t)amount, acct), 1),
			 it_stmt(IT_SQL_INSERT, json_pack("[s]", tid), 1));
}

/* POSTs a transaction and fails the test on a transport error. */
static void it_post(json_t *req, TlHttpResponse *resp)
{
	char err[IT_ERR];

	ck_assert_ptr_nonnull(req);
	if (!tl_http_post_json(it_daemon.port, "/v1/transactions", req, IT_HTTP_TIMEOUT_MS, resp,
			       err, sizeof err)) {
		tl_daemon_print_log_tail(&it_daemon, 30);
		ck_abort_msg("POST /v1/transactions: transport error: %s", err);
	}
}

static void it_post_raw(const char *body, TlHttpResponse *resp)
{
	char err[IT_ERR];

	if (!tl_http_request(it_daemon.port, "POST", "/v1/transactions", body, IT_HTTP_TIMEOUT_MS,
			     resp, err, sizeof err)) {
		tl_daemon_print_log_tail(&it_daemon, 30);
		ck_abort_msg("POST /v1/transactions %s: transport error: %s", body, err);
	}
}

/* Asserts a problem+json answer with STATUS whose type ends in TYPE_SUFFIX. */
static void it_assert_problem(const TlHttpResponse *r, int status, const char *type_suffix)
{
	const char *type;
	int64_t st = 0;

	ck_assert_msg(r->status == status, "expected HTTP %d, got %d: %s", status, r->status,
		      r->body);
	ck_assert_msg(strcmp(r->content_type, "application/problem+json") == 0,
		      "HTTP %d with Content-Type '%s', want application/problem+json: %s", status,
		      r->content_type, r->body);
	ck_assert_msg(json_is_object(r->json), "problem body is not a JSON object: %s", r->body);
	type = tl_json_str(r->json, "type");
	ck_assert_msg(type != NULL && strlen(type) >= strlen(type_suffix) &&
			      strcmp(type + strlen(type) - strlen(type_suffix), type_suffix) == 0,
		      "problem type '%s' does not end in '%s': %s", type ? type : "(none)",
		      type_suffix, r->body);
	ck_assert_msg(tl_json_i64(r->json, "status", &st) && st == status,
		      "problem \"status\" is not %d: %s", status, r->body);
}

/* GET /v1/transactions/ID and return its "status" (caller frees). */
static char *it_txn_status(const char *id)
{
	char path[128];
	char err[IT_ERR];
	TlHttpResponse r;
	const char *st;
	char *out;

	snprintf(path, sizeof path, "/v1/transactions/%s", id);
	if (!tl_http_request(it_daemon.port, "GET", path, NULL, IT_HTTP_TIMEOUT_MS, &r, err,
			     sizeof err))
		ck_abort_msg("GET %s: transport error: %s", path, err);
	ck_assert_msg(r.status == 200, "GET %s: HTTP %d: %s", path, r.status, r.body);
	st = tl_json_str(r.json, "status");
	ck_assert_msg(st != NULL, "GET %s: no status: %s", path, r.body);
	ck_assert_msg(tl_json_str(r.json, "id") && strcmp(tl_json_str(r.json, "id"), id) == 0,
		      "GET %s: wrong id: %s", path, r.body);
	out = strdup(st);
	ck_assert_ptr_nonnull(out);
	tl_http_response_free(&r);
	return out;
}

static void it_assert_txn_status(const char *id, const char *want)
{
	char *st = it_txn_status(id);

	ck_assert_msg(strcmp(st, want) == 0, "GET /v1/transactions/%s: status %s, want %s", id, st,
		      want);
	free(st);
}

/* The rows_affected of statement IDX of branch PART in a 200 answer. */
static int64_t it_rows_affected(const TlHttpResponse *r, const char *part, size_t idx)
{
	json_t *br = json_object_get(json_object_get(r->json, "branches"), part);
	int64_t n = -1;

	ck_assert_msg(json_is_array(br) && json_array_size(br) > idx,
		      "branches.%s has no statement %zu: %s", part, idx, r->body);
	ck_assert_msg(tl_json_i64(json_array_get(br, idx), "rows_affected", &n),
		      "branches.%s[%zu] has no rows_affected: %s", part, idx, r->body);
	return n;
}

/* ---------------------------------------------------------------- fixtures */

/* Unchecked (runs in the runner process, once per test case): make the
 * clusters the first time only. It records failure instead of asserting,
 * so that each test reports the reason rather than the runner dying. */
static void it_clusters_setup(void)
{
	int i;

	if (it_env_tried)
		return;
	it_env_tried = true;
	fflush(NULL); /* forked tests must not repeat our buffered output */
	if (!tl_env_init(&it_env, it_env_err, sizeof it_env_err))
		return;
	/* TWOPC_TEST_KEEP=1 keeps logs and data directories for a post-mortem */
	it_env.keep_tmpdir = getenv("TWOPC_TEST_KEEP") != NULL;
	for (i = 0; i < IT_NPART; i++) {
		TlCluster *c;

		if (!tl_env_add_cluster(&it_env, it_names[i], it_env_err, sizeof it_env_err))
			return;
		c = tl_env_cluster(&it_env, it_names[i]);
		if (!tl_pg_exec(c, IT_SCHEMA, it_env_err, sizeof it_env_err))
			return;
	}
	fprintf(stderr, "check_integration: clusters in %s: bank_a:%d bank_b:%d bank_c:%d\n",
		it_env.tmpdir, it_env.clusters[0].port, it_env.clusters[1].port,
		it_env.clusters[2].port);
	it_env_ok = true;
}

/* Checked (in the test's child): clusters are there and running (a failed
 * participant-down test may have left one stopped), the daemon configured
 * with its stderr in twopcd-TAG.log and, if WITH_DAEMON, started. */
static void it_setup(const char *tag, bool with_daemon)
{
	char err[IT_ERR];
	char log_dir[TL_PATH_MAX + 32];
	int i;

	ck_assert_msg(it_env_ok, "test clusters could not be created: %s", it_env_err);
	for (i = 0; i < IT_NPART; i++)
		if (!tl_cluster_ensure_running(&it_env, it_cluster(it_names[i]), err, sizeof err))
			ck_abort_msg("%s", err);
	/* One decision log for the whole run, like one daemon restarted again
	 * and again: whatever a test leaves behind, the next daemon's recovery
	 * must finish correctly. */
	if (!tl_fmt(log_dir, sizeof log_dir, "%s/twopcd-log", it_env.tmpdir))
		ck_abort_msg("temporary directory path too long");
	if (!tl_daemon_configure(&it_daemon, &it_env, log_dir, tag, err, sizeof err))
		ck_abort_msg("%s", err);
	if (with_daemon && !tl_daemon_start(&it_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
}

/* Check's setup functions take no arguments and cannot learn their test
 * case's name, so each test case gets a one-line setup naming its log. */
#define IT_SETUP(name, with_daemon) \
	static void it_setup_##name(void) { it_setup(#name, with_daemon); }

static void it_teardown(void)
{
	char err[IT_ERR];

	if (!tl_daemon_kill(&it_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}

/* ------------------------------------------------------------------- tests */

/* 1. One transaction, three participants, everything commits. */
START_TEST(test_commit_three)
{
	char tid[64];
	int64_t a0 = it_balance("bank_a", 91), b0 = it_balance("bank_b", 92),
		c0 = it_balance("bank_c", 93);
	TlHttpResponse r;
	json_t *req, *rows, *row;
	const char *id;
	int64_t v = 0;
	int i;

	it_unique_id(tid, sizeof tid, "one");
	req = json_pack("{s:{s:[o,o,o],s:o,s:o}}", "branches", "bank_a",
			it_stmt(IT_SQL_DEBIT, json_pack("[i,i]", 30, 91), 1),
			it_stmt(IT_SQL_INSERT, json_pack("[s]", tid), 1),
			it_stmt("SELECT id, balance FROM accounts WHERE id = $1", json_pack("[i]", 91),
				-1),
			"bank_b", it_branch_credit(10, 92, tid), "bank_c", it_branch_credit(20, 93, tid));
	it_post(req, &r);
	json_decref(req);

	ck_assert_msg(r.status == 200, "expected 200, got %d: %s", r.status, r.body);
	ck_assert_msg(strcmp(r.content_type, "application/json") == 0, "Content-Type '%s'",
		      r.content_type);
	id = tl_json_str(r.json, "id");
	ck_assert_msg(it_is_txn_id(id), "id is not 16 lowercase hex digits: %s", r.body);
	ck_assert_msg(tl_json_str(r.json, "outcome") &&
			      strcmp(tl_json_str(r.json, "outcome"), "committed") == 0,
		      "outcome not committed: %s", r.body);
	ck_assert_int_eq(it_rows_affected(&r, "bank_a", 0), 1);
	ck_assert_int_eq(it_rows_affected(&r, "bank_a", 1), 1);
	ck_assert_int_eq(it_rows_affected(&r, "bank_b", 0), 1);
	ck_assert_int_eq(it_rows_affected(&r, "bank_b", 1), 1);
	ck_assert_int_eq(it_rows_affected(&r, "bank_c", 0), 1);
	ck_assert_int_eq(it_rows_affected(&r, "bank_c", 1), 1);

	/* the SELECT ran inside the branch, after its UPDATE */
	rows = json_object_get(json_array_get(json_object_get(json_object_get(r.json, "branches"),
							       "bank_a"),
					      2),
			       "rows");
	ck_assert_msg(json_is_array(rows) && json_array_size(rows) == 1,
		      "bank_a[2].rows is not one row: %s", r.body);
	row = json_array_get(rows, 0);
	ck_assert_msg(tl_json_i64(row, "id", &v) && v == 91, "rows[0].id != 91: %s", r.body);
	ck_assert_msg(tl_json_i64(row, "balance", &v) && v == a0 - 30,
		      "rows[0].balance != %" PRId64 ": %s", a0 - 30, r.body);

	ck_assert_int_eq(it_balance("bank_a", 91), a0 - 30);
	ck_assert_int_eq(it_balance("bank_b", 92), b0 + 10);
	ck_assert_int_eq(it_balance("bank_c", 93), c0 + 20);
	for (i = 0; i < IT_NPART; i++)
		ck_assert_msg(it_transfer_count(it_names[i], tid) == 1, "transfer %s missing on %s",
			      tid, it_names[i]);
	it_assert_nothing_prepared(2000); /* read-only branches finish just after the reply */
	it_assert_txn_status(id, "committed");
	tl_http_response_free(&r);
}
END_TEST

/* Checks a statement-failed 409 and returns its id (caller frees). */
static char *it_assert_statement_failed(const TlHttpResponse *r, const char *part, int64_t stmt,
					const char *sqlstate)
{
	int64_t v = -1;
	const char *s;
	char *id;

	it_assert_problem(r, 409, "statement-failed");
	s = tl_json_str(r->json, "outcome");
	ck_assert_msg(s && strcmp(s, "aborted") == 0, "outcome not aborted: %s", r->body);
	s = tl_json_str(r->json, "participant");
	ck_assert_msg(s && strcmp(s, part) == 0, "participant not %s: %s", part, r->body);
	ck_assert_msg(tl_json_i64(r->json, "statement", &v) && v == stmt,
		      "statement not %" PRId64 ": %s", stmt, r->body);
	s = tl_json_str(r->json, "sqlstate");
	ck_assert_msg(s && strcmp(s, sqlstate) == 0, "sqlstate not %s: %s", sqlstate, r->body);
	s = tl_json_str(r->json, "message");
	ck_assert_msg(s && s[0] != '\0', "message empty: %s", r->body);
	s = tl_json_str(r->json, "id");
	ck_assert_msg(it_is_txn_id(s), "id is not 16 lowercase hex digits: %s", r->body);
	id = strdup(s);
	ck_assert_ptr_nonnull(id);
	return id;
}

/* 2. A SQL error on one participant aborts every branch. */
START_TEST(test_abort_sql_error)
{
	char tid[64], tid2[64], sql[128];
	int64_t a0 = it_balance("bank_a", 94), b0 = it_balance("bank_b", 94),
		c0 = it_balance("bank_c", 94);
	TlHttpResponse r;
	json_t *req;
	char *id;
	char err[IT_ERR];
	int i;

	/* a transfers row bank_c already has: its INSERT will be 23505 */
	it_unique_id(tid, sizeof tid, "dup");
	snprintf(sql, sizeof sql, "INSERT INTO transfers (id) VALUES ('%s')", tid);
	if (!tl_pg_exec(it_cluster("bank_c"), sql, err, sizeof err))
		ck_abort_msg("%s", err);

	req = json_pack("{s:{s:o,s:o,s:o}}", "branches", "bank_a", it_branch_debit(5, 94, tid),
			"bank_b", it_branch_credit(3, 94, tid), "bank_c", it_branch_credit(2, 94, tid));
	it_post(req, &r);
	json_decref(req);
	id = it_assert_statement_failed(&r, "bank_c", 1, "23505");
	tl_http_response_free(&r);

	ck_assert_int_eq(it_balance("bank_a", 94), a0);
	ck_assert_int_eq(it_balance("bank_b", 94), b0);
	ck_assert_int_eq(it_balance("bank_c", 94), c0);
	ck_assert_int_eq(it_transfer_count("bank_a", tid), 0);
	ck_assert_int_eq(it_transfer_count("bank_b", tid), 0);
	ck_assert_int_eq(it_transfer_count("bank_c", tid), 1); /* only the one we made */
	it_assert_nothing_prepared(10000);
	it_assert_txn_status(id, "aborted");
	free(id);

	/* the first statement of a branch fails: division by zero */
	it_unique_id(tid2, sizeof tid2, "div");
	req = json_pack("{s:{s:o,s:[o,o]}}", "branches", "bank_a", it_branch_debit(5, 94, tid2),
			"bank_b",
			it_stmt("UPDATE accounts SET balance = balance / $1 WHERE id = $2",
				json_pack("[i,i]", 0, 94), -1),
			it_stmt(IT_SQL_INSERT, json_pack("[s]", tid2), 1));
	it_post(req, &r);
	json_decref(req);
	id = it_assert_statement_failed(&r, "bank_b", 0, "22012");
	tl_http_response_free(&r);

	for (i = 0; i < IT_NPART; i++)
		ck_assert_int_eq(it_transfer_count(it_names[i], tid2), 0);
	ck_assert_int_eq(it_balance("bank_a", 94), a0);
	ck_assert_int_eq(it_balance("bank_b", 94), b0);
	it_assert_nothing_prepared(10000);
	it_assert_txn_status(id, "aborted");
	free(id);
}
END_TEST

/* 3. An expect_rows guard that matches no row aborts everything. */
START_TEST(test_abort_expect_rows)
{
	char tid[64];
	int64_t a0 = it_balance("bank_a", 95), b0 = it_balance("bank_b", 95);
	TlHttpResponse r;
	json_t *req;
	const char *s;
	int64_t v = -1;
	char *id;
	int i;

	it_unique_id(tid, sizeof tid, "guard");
	req = json_pack("{s:{s:o,s:o,s:[o]}}", "branches", "bank_a",
			it_branch_debit(1000000000, 95, tid), "bank_b", it_branch_credit(1000000000, 95, tid),
			"bank_c", it_stmt(IT_SQL_INSERT, json_pack("[s]", tid), 1));
	it_post(req, &r);
	json_decref(req);

	it_assert_problem(&r, 409, "expect-rows");
	s = tl_json_str(r.json, "outcome");
	ck_assert_msg(s && strcmp(s, "aborted") == 0, "outcome not aborted: %s", r.body);
	s = tl_json_str(r.json, "participant");
	ck_assert_msg(s && strcmp(s, "bank_a") == 0, "participant not bank_a: %s", r.body);
	ck_assert_msg(tl_json_i64(r.json, "statement", &v) && v == 0, "statement not 0: %s", r.body);
	ck_assert_msg(tl_json_i64(r.json, "expected_rows", &v) && v == 1, "expected_rows not 1: %s",
		      r.body);
	ck_assert_msg(tl_json_i64(r.json, "actual_rows", &v) && v == 0, "actual_rows not 0: %s",
		      r.body);
	ck_assert_msg(it_is_txn_id(tl_json_str(r.json, "id")), "bad id: %s", r.body);
	id = strdup(tl_json_str(r.json, "id"));
	ck_assert_ptr_nonnull(id);
	tl_http_response_free(&r);

	ck_assert_int_eq(it_balance("bank_a", 95), a0);
	ck_assert_int_eq(it_balance("bank_b", 95), b0);
	for (i = 0; i < IT_NPART; i++)
		ck_assert_int_eq(it_transfer_count(it_names[i], tid), 0);
	it_assert_nothing_prepared(10000);
	it_assert_txn_status(id, "aborted");
	free(id);
}
END_TEST

/* 4. A branch for a participant the daemon does not know: 400, nothing runs. */
START_TEST(test_unknown_participant)
{
	char tid[64];
	int64_t a0 = it_balance("bank_a", 96);
	TlHttpResponse r;
	json_t *req;
	const char *field;

	it_unique_id(tid, sizeof tid, "unknown");
	req = json_pack("{s:{s:o,s:[o]}}", "branches", "bank_a", it_branch_debit(1, 96, tid),
			"bank_nowhere", it_stmt("SELECT 1", NULL, -1));
	it_post(req, &r);
	json_decref(req);

	it_assert_problem(&r, 400, "invalid-request");
	field = tl_json_str(r.json, "field");
	ck_assert_msg(field && strstr(field, "branches.bank_nowhere") != NULL,
		      "field does not name branches.bank_nowhere: %s", r.body);
	tl_http_response_free(&r);

	ck_assert_int_eq(it_balance("bank_a", 96), a0);
	ck_assert_int_eq(it_transfer_count("bank_a", tid), 0);
	it_assert_nothing_prepared(2000); /* read-only branches finish just after the reply */
}
END_TEST

/* 5. Malformed and wrongly typed requests: 400 each, and the daemon goes on. */
START_TEST(test_bad_requests)
{
	/* Each body, and the field the rejection must name (NULL: the body is
	 * not JSON, no field to name). Where a body can carry an UPDATE of
	 * account 97 it does, to prove that nothing ran. */
	static const struct {
		const char *body;
		const char *field;
	} cases[] = {
		{"{\"branches\": {\"bank_a\": [{\"sql\": \"SELECT 1\"}]", NULL},
		{"this is not json", NULL},
		{"[]", NULL},
		{"{\"branches\": []}", "branches"},
		{"{\"branches\": {}}", "branches"},
		{"{\"branches\": {\"bank_a\": \"UPDATE accounts SET balance = balance - 1 WHERE id = "
		 "97\"}}",
		 "branches.bank_a"},
		{"{\"branches\": {\"bank_a\": [{\"sql\": 5}]}}", "branches.bank_a[0].sql"},
		{"{\"branches\": {\"bank_a\": [{\"sql\": \"UPDATE accounts SET balance = balance - 1 "
		 "WHERE id = 97\"}, {\"sql\": \"SELECT $1::int\", \"params\": \"x\"}]}}",
		 "branches.bank_a[1].params"},
		{"{\"branches\": {\"bank_a\": [{\"sql\": \"UPDATE accounts SET balance = balance - 1 "
		 "WHERE id = 97\", \"expect_rows\": -1}]}}",
		 "branches.bank_a[0].expect_rows"},
	};
	char tid[64];
	int64_t a0 = it_balance("bank_a", 97), b0 = it_balance("bank_b", 97);
	TlHttpResponse r;
	json_t *req;
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *field;

		it_post_raw(cases[i].body, &r);
		ck_assert_msg(r.status == 400, "body %zu (%s): HTTP %d, want 400: %s", i,
			      cases[i].body, r.status, r.body);
		it_assert_problem(&r, 400, "invalid-request");
		field = tl_json_str(r.json, "field");
		ck_assert_msg(cases[i].field == NULL ||
				      (field != NULL && strstr(field, cases[i].field) != NULL),
			      "body %zu (%s): field does not name %s: %s", i, cases[i].body,
			      cases[i].field, r.body);
		tl_http_response_free(&r);
	}
	ck_assert_int_eq(it_balance("bank_a", 97), a0);

	/* still serving */
	it_unique_id(tid, sizeof tid, "after-bad");
	req = json_pack("{s:{s:o,s:o}}", "branches", "bank_a", it_branch_debit(1, 97, tid), "bank_b",
			it_branch_credit(1, 97, tid));
	it_post(req, &r);
	json_decref(req);
	ck_assert_msg(r.status == 200, "valid request after bad ones: HTTP %d: %s", r.status,
		      r.body);
	tl_http_response_free(&r);
	ck_assert_int_eq(it_balance("bank_a", 97), a0 - 1);
	ck_assert_int_eq(it_balance("bank_b", 97), b0 + 1);
	ck_assert_int_eq(it_transfer_count("bank_a", tid), 1);
	ck_assert_int_eq(it_transfer_count("bank_b", tid), 1);
	it_assert_nothing_prepared(2000); /* read-only branches finish just after the reply */
}
END_TEST

/* 6. A participant is down: 503 and a clean abort; back up, work resumes. */
START_TEST(test_participant_down)
{
	char tid[64], tid2[64];
	char err[IT_ERR];
	TlCluster *c = it_cluster("bank_c");
	int64_t a0 = it_balance("bank_a", 98), c0 = it_balance("bank_c", 98);
	int64_t deadline;
	TlHttpResponse r;
	json_t *req;
	const char *s;
	int last = 0;

	if (!tl_cluster_stop(&it_env, c, "fast", err, sizeof err))
		ck_abort_msg("%s", err);

	it_unique_id(tid, sizeof tid, "down");
	req = json_pack("{s:{s:o,s:o}}", "branches", "bank_a", it_branch_debit(3, 98, tid), "bank_c",
			it_branch_credit(3, 98, tid));
	it_post(req, &r);
	json_decref(req);
	it_assert_problem(&r, 503, "participant-unavailable");
	s = tl_json_str(r.json, "outcome");
	ck_assert_msg(s && strcmp(s, "aborted") == 0, "outcome not aborted: %s", r.body);
	s = tl_json_str(r.json, "participant");
	ck_assert_msg(s && strcmp(s, "bank_c") == 0, "participant not bank_c: %s", r.body);
	tl_http_response_free(&r);

	if (!tl_cluster_start(&it_env, c, err, sizeof err))
		ck_abort_msg("%s", err);
	it_assert_nothing_prepared(10000);
	ck_assert_int_eq(it_balance("bank_a", 98), a0);
	ck_assert_int_eq(it_balance("bank_c", 98), c0);
	ck_assert_int_eq(it_transfer_count("bank_a", tid), 0);
	ck_assert_int_eq(it_transfer_count("bank_c", tid), 0);

	/* the pool reconnects on its own; give it a while */
	it_unique_id(tid2, sizeof tid2, "back");
	req = json_pack("{s:{s:o,s:o}}", "branches", "bank_a", it_branch_debit(3, 98, tid2),
			"bank_c", it_branch_credit(3, 98, tid2));
	deadline = tl_now_ms() + 15000;
	for (;;) {
		it_post(req, &r);
		last = r.status;
		if (last == 200)
			break;
		ck_assert_msg(last == 503, "after restart: HTTP %d (want 200, or 503 while "
					   "reconnecting): %s",
			      last, r.body);
		tl_http_response_free(&r);
		ck_assert_msg(tl_now_ms() < deadline, "no 200 within 15 s of bank_c's restart");
		tl_sleep_ms(250);
	}
	tl_http_response_free(&r);
	json_decref(req);
	ck_assert_int_eq(it_balance("bank_a", 98), a0 - 3);
	ck_assert_int_eq(it_balance("bank_c", 98), c0 + 3);
	ck_assert_int_eq(it_transfer_count("bank_a", tid2), 1);
	ck_assert_int_eq(it_transfer_count("bank_c", tid2), 1);
	it_assert_nothing_prepared(2000); /* read-only branches finish just after the reply */
}
END_TEST

/*
 * The crash tests: twopcd kills itself at FAULT in the middle of a
 * three-participant transfer. Every branch must then sit prepared; after a
 * restart without the fault, recovery must commit them all (the COMMIT
 * record reached disk) or roll them all back (it did not: presumed abort).
 */
static void it_crash_case(const char *fault, bool expect_commit)
{
	char tid[64], err[IT_ERR];
	char txn_id[17] = "";
	int64_t before[IT_NPART];
	TlHttpResponse r;
	json_t *req;
	int wstatus = 0;
	int i;

	if (!tl_daemon_start(&it_daemon, fault, err, sizeof err))
		ck_abort_msg("%s", err);
	for (i = 0; i < IT_NPART; i++)
		before[i] = it_balance(it_names[i], 99);

	it_unique_id(tid, sizeof tid, expect_commit ? "crash-commit" : "crash-abort");
	req = json_pack("{s:{s:o,s:o,s:o}}", "branches", "bank_a", it_branch_debit(12, 99, tid),
			"bank_b", it_branch_credit(5, 99, tid), "bank_c", it_branch_credit(7, 99, tid));
	ck_assert_ptr_nonnull(req);
	if (tl_http_post_json(it_daemon.port, "/v1/transactions", req, IT_HTTP_TIMEOUT_MS, &r, err,
			      sizeof err)) {
		tl_daemon_print_log_tail(&it_daemon, 30);
		ck_abort_msg("TWOPC_FAULT=%s: expected no reply (the daemon kills itself), got HTTP "
			     "%d: %s",
			     fault, r.status, r.body);
	}
	json_decref(req);
	if (!tl_daemon_wait_exit(&it_daemon, 10000, &wstatus, err, sizeof err))
		ck_abort_msg("TWOPC_FAULT=%s: %s", fault, err);
	ck_assert_msg(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL,
		      "TWOPC_FAULT=%s: twopcd did not die of SIGKILL (wait status 0x%x)", fault,
		      (unsigned)wstatus);

	/* every branch prepared, one gid each: twopc_t1_<id>_<idx>, one id */
	for (i = 0; i < IT_NPART; i++) {
		PGresult *res = NULL;
		const char *gid;
		char *end;
		long idx;

		if (!tl_pg_query(it_cluster(it_names[i]),
				 "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'twopc\\_%'", 0, NULL,
				 &res, err, sizeof err))
			ck_abort_msg("%s", err);
		ck_assert_msg(PQntuples(res) == 1, "%s: %d prepared transactions of ours, want 1",
			      it_names[i], PQntuples(res));
		gid = PQgetvalue(res, 0, 0);
		ck_assert_msg(strncmp(gid, "twopc_t1_", 9) == 0 && strlen(gid) > 26 && gid[25] == '_',
			      "%s: gid '%s' is not twopc_t1_<16 hex>_<idx>", it_names[i], gid);
		if (txn_id[0] == '\0') {
			memcpy(txn_id, gid + 9, 16);
			ck_assert_msg(it_is_txn_id(txn_id), "gid '%s': bad txn id", gid);
		} else {
			ck_assert_msg(strncmp(txn_id, gid + 9, 16) == 0,
				      "%s: gid '%s' carries another txn id than %s", it_names[i], gid,
				      txn_id);
		}
		/* the participant index is its place in the config: a, b, c */
		idx = strtol(gid + 26, &end, 10);
		ck_assert_msg(*end == '\0' && idx == i, "%s: gid '%s': participant index is not %d",
			      it_names[i], gid, i);
		PQclear(res);
		/* prepared is not committed: other sessions see nothing yet */
		ck_assert_int_eq(it_balance(it_names[i], 99), before[i]);
		ck_assert_int_eq(it_transfer_count(it_names[i], tid), 0);
	}

	/* /healthz answers 200 only after recovery has finished */
	if (!tl_daemon_start(&it_daemon, NULL, err, sizeof err))
		ck_abort_msg("restart after the crash: %s", err);
	if (expect_commit) {
		ck_assert_int_eq(it_balance("bank_a", 99), before[0] - 12);
		ck_assert_int_eq(it_balance("bank_b", 99), before[1] + 5);
		ck_assert_int_eq(it_balance("bank_c", 99), before[2] + 7);
	} else {
		for (i = 0; i < IT_NPART; i++)
			ck_assert_int_eq(it_balance(it_names[i], 99), before[i]);
	}
	for (i = 0; i < IT_NPART; i++)
		ck_assert_msg(it_transfer_count(it_names[i], tid) == (expect_commit ? 1 : 0),
			      "%s: transfer %s %s after recovery", it_names[i], tid,
			      expect_commit ? "missing" : "present");
	for (i = 0; i < IT_NPART; i++) {
		char gid[64];
		bool prepared = true;

		snprintf(gid, sizeof gid, "twopc_t1_%s_%d", txn_id, i);
		if (!tl_pg_gid_prepared(it_cluster(it_names[i]), gid, &prepared, err, sizeof err))
			ck_abort_msg("%s", err);
		ck_assert_msg(!prepared, "%s: %s still prepared after recovery", it_names[i], gid);
	}
	it_assert_nothing_prepared(2000); /* read-only branches finish just after the reply */
	{
		char *st = it_txn_status(txn_id);

		/* Recovery remembers what it settled: the client that lost its
		 * reply in the crash learns the real outcome. */
		ck_assert_msg(strcmp(st, expect_commit ? "committed" : "aborted") == 0,
			      "GET /v1/transactions/%s after recovery: %s, expected %s", txn_id, st,
			      expect_commit ? "committed" : "aborted");
		free(st);
	}
}

/* 7. Crash after the COMMIT record is durable, before phase 2: commit. */
START_TEST(test_crash_after_log_fsync)
{
	it_crash_case("after_log_fsync:crash", true);
}
END_TEST

/* 8. Crash before the decision is logged: presumed abort. */
START_TEST(test_crash_before_log_commit)
{
	it_crash_case("before_log_commit:crash", false);
}
END_TEST

/* ------------------------------------------------------------- concurrency */

#define IT_CONC_THREADS 32
#define IT_CONC_PER_THREAD 200
/* Transfers pick accounts 1..IT_CONC_ACCOUNTS: few enough that clients
 * collide on rows (lock waits, lock_timeout aborts, drained accounts), so
 * the abort path is exercised under load too. The other tests use accounts
 * above this range and are not disturbed. */
#define IT_CONC_ACCOUNTS 20

/* One transfer of the concurrency test and what the daemon answered. */
typedef struct ItXfer {
	int parts[IT_NPART]; /* participant indexes; parts[0] is debited */
	int nparts;
	int status;          /* HTTP status; 0 for a transport error */
	char kind[24];       /* for 409s: sqlstate or "expect-rows" */
} ItXfer;

typedef struct ItWorker {
	pthread_t thread;
	int index;
	int port;
	int pid;
	unsigned seed;
	ItXfer xfers[IT_CONC_PER_THREAD];
	char err[512]; /* the first unexpected answer, reported by the main thread */
} ItWorker;

static void it_conc_tid(char *buf, size_t len, int pid, int thread, int n)
{
	snprintf(buf, len, "cc%d-%d-%d", pid, thread, n);
}

/* Builds one random transfer; NULL only when out of memory. */
static json_t *it_conc_request(ItWorker *w, ItXfer *x, const char *tid)
{
	json_t *branches = json_object();
	int perm[IT_NPART] = {0, 1, 2};
	int64_t amount = 1 + (int64_t)(rand_r(&w->seed) % 50);
	int i;

	for (i = IT_NPART - 1; i > 0; i--) {
		int j = (int)(rand_r(&w->seed) % (unsigned)(i + 1));
		int t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	x->nparts = rand_r(&w->seed) % 4 == 0 ? 3 : 2;
	for (i = 0; i < x->nparts; i++) {
		int acct = 1 + (int)(rand_r(&w->seed) % IT_CONC_ACCOUNTS);
		json_t *br;

		x->parts[i] = perm[i];
		if (i == 0) {
			br = it_branch_debit(amount, acct, tid);
		} else {
			/* split the credit so the money adds up exactly */
			int64_t share = x->nparts == 2 ? amount : (i == 1 ? amount / 2 : amount - amount / 2);

			br = it_branch_credit(share, acct, tid);
		}
		if (br == NULL || json_object_set_new(branches, it_names[perm[i]], br) != 0) {
			json_decref(branches);
			return NULL;
		}
	}
	return json_pack("{s:o}", "branches", branches);
}

static void *it_conc_worker(void *arg)
{
	ItWorker *w = arg;
	int n;

	for (n = 0; n < IT_CONC_PER_THREAD; n++) {
		ItXfer *x = &w->xfers[n];
		char tid[64], err[512];
		TlHttpResponse r;
		json_t *req;

		it_conc_tid(tid, sizeof tid, w->pid, w->index, n);
		req = it_conc_request(w, x, tid);
		if (req == NULL) {
			snprintf(w->err, sizeof w->err, "transfer %s: out of memory", tid);
			x->status = 0;
			continue;
		}
		if (!tl_http_post_json(w->port, "/v1/transactions", req, IT_HTTP_TIMEOUT_MS, &r, err,
				       sizeof err)) {
			x->status = 0;
			if (w->err[0] == '\0')
				snprintf(w->err, sizeof w->err, "transfer %s: transport error: %.400s", tid,
					 err);
			json_decref(req);
			continue;
		}
		json_decref(req);
		x->status = r.status;
		if (r.status == 409) {
			const char *ss = tl_json_str(r.json, "sqlstate");
			const char *type = tl_json_str(r.json, "type");

			snprintf(x->kind, sizeof x->kind, "%s",
				 ss ? ss : (type && strstr(type, "expect-rows") ? "expect-rows" : "?"));
		} else if (r.status != 200 && w->err[0] == '\0') {
			snprintf(w->err, sizeof w->err, "transfer %s: HTTP %d: %.300s", tid, r.status,
				 r.body);
		}
		tl_http_response_free(&r);
	}
	return NULL;
}

/* Bit P of present[thread * PER + n] says transfer n of thread is on
 * participant P. */
static void it_conc_collect(int pid, unsigned char *present)
{
	char pattern[64], err[IT_ERR];
	const char *params[1] = {pattern};
	int p;

	snprintf(pattern, sizeof pattern, "cc%d-%%", pid);
	for (p = 0; p < IT_NPART; p++) {
		PGresult *res = NULL;
		int row;

		if (!tl_pg_query(it_cluster(it_names[p]), "SELECT id FROM transfers WHERE id LIKE $1",
				 1, params, &res, err, sizeof err))
			ck_abort_msg("%s", err);
		for (row = 0; row < PQntuples(res); row++) {
			int rpid, t, n;

			if (sscanf(PQgetvalue(res, row, 0), "cc%d-%d-%d", &rpid, &t, &n) == 3 &&
			    rpid == pid && t >= 0 && t < IT_CONC_THREADS && n >= 0 &&
			    n < IT_CONC_PER_THREAD)
				present[t * IT_CONC_PER_THREAD + n] |= (unsigned char)(1u << p);
		}
		PQclear(res);
	}
}

/* 9. Many clients at once: money is conserved and every answer is true. */
START_TEST(test_concurrency)
{
	ItWorker *workers = calloc(IT_CONC_THREADS, sizeof *workers);
	unsigned char *present = calloc(IT_CONC_THREADS * IT_CONC_PER_THREAD, 1);
	int64_t total0 = it_total_balance();
	int64_t t0, elapsed;
	int committed = 0, aborted = 0, expect_rows = 0, lock_timeouts = 0, deadlocks = 0,
	    other409 = 0;
	int pid = (int)getpid();
	int t, n;

	ck_assert_ptr_nonnull(workers);
	ck_assert_ptr_nonnull(present);
	t0 = tl_now_ms();
	for (t = 0; t < IT_CONC_THREADS; t++) {
		workers[t].index = t;
		workers[t].port = it_daemon.port;
		workers[t].pid = pid;
		workers[t].seed = (unsigned)(pid * 7919 + t * 104729 + 1);
		ck_assert_int_eq(pthread_create(&workers[t].thread, NULL, it_conc_worker, &workers[t]),
				 0);
	}
	for (t = 0; t < IT_CONC_THREADS; t++)
		ck_assert_int_eq(pthread_join(workers[t].thread, NULL), 0);
	elapsed = tl_now_ms() - t0;

	for (t = 0; t < IT_CONC_THREADS; t++)
		for (n = 0; n < IT_CONC_PER_THREAD; n++) {
			const ItXfer *x = &workers[t].xfers[n];

			if (x->status == 200) {
				committed++;
			} else if (x->status == 409) {
				aborted++;
				if (strcmp(x->kind, "expect-rows") == 0)
					expect_rows++;
				else if (strcmp(x->kind, "55P03") == 0)
					lock_timeouts++;
				else if (strcmp(x->kind, "40P01") == 0)
					deadlocks++;
				else
					other409++;
			}
		}
	fprintf(stderr,
		"check_integration: concurrency: %d transfers in %.1f s (%.0f tx/s): %d committed, "
		"%d aborted (expect-rows %d, lock timeout %d, deadlock %d, other %d)\n",
		IT_CONC_THREADS * IT_CONC_PER_THREAD, (double)elapsed / 1000.0,
		elapsed > 0 ? (double)(IT_CONC_THREADS * IT_CONC_PER_THREAD) * 1000.0 / (double)elapsed
			    : 0.0,
		committed, aborted, expect_rows, lock_timeouts, deadlocks, other409);
	for (t = 0; t < IT_CONC_THREADS; t++)
		ck_assert_msg(workers[t].err[0] == '\0', "client %d: %s", t, workers[t].err);

	it_assert_nothing_prepared(10000);
	ck_assert_msg(it_total_balance() == total0, "money not conserved: total %" PRId64
						    " before, %" PRId64 " after",
		      total0, it_total_balance());
	it_conc_collect(pid, present);
	for (t = 0; t < IT_CONC_THREADS; t++)
		for (n = 0; n < IT_CONC_PER_THREAD; n++) {
			const ItXfer *x = &workers[t].xfers[n];
			unsigned char touched = 0, have = present[t * IT_CONC_PER_THREAD + n];
			char tid[64];
			int i;

			for (i = 0; i < x->nparts; i++)
				touched |= (unsigned char)(1u << x->parts[i]);
			it_conc_tid(tid, sizeof tid, pid, t, n);
			if (x->status == 200)
				ck_assert_msg(have == touched,
					      "transfer %s answered 200 but is on participants 0x%x, "
					      "touched 0x%x",
					      tid, have, touched);
			else
				ck_assert_msg(have == 0,
					      "transfer %s answered %d but is on participants 0x%x", tid,
					      x->status, have);
		}
	ck_assert_msg(committed * 4 >= IT_CONC_THREADS * IT_CONC_PER_THREAD,
		      "only %d of %d transfers committed", committed,
		      IT_CONC_THREADS * IT_CONC_PER_THREAD);
	free(present);
	free(workers);
}
END_TEST

/* ------------------------------------------------------------------- suite */

/* 10. A participant libpq refuses at once (an address that cannot exist)
 * must not stop twopcd: it listens, reports the participant unreachable,
 * serves transactions on the others and answers 503 for it. (The pool once
 * spun forever retrying such a connect, blocking the loop.) */
START_TEST(test_participant_refused_at_start)
{
	char err[IT_ERR];
	TlHttpResponse r;
	FILE *f = fopen(it_daemon.conf_path, "a");

	ck_assert_ptr_nonnull(f);
	fputs("\n[participant ghost]\nconninfo = hostaddr=256.0.0.1 port=5432 dbname=bank user=postgres\n", f);
	fclose(f);
	if (!tl_daemon_start(&it_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
	if (!tl_http_request(it_daemon.port, "GET", "/healthz", NULL, IT_HTTP_TIMEOUT_MS, &r, err, sizeof err))
		ck_abort_msg("%s", err);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(tl_json_str(r.json, "status"), "degraded");
	json_t *ghost = json_object_get(json_object_get(r.json, "participants"), "ghost");
	ck_assert_ptr_nonnull(ghost);
	ck_assert(json_is_false(json_object_get(ghost, "reachable")));
	tl_http_response_free(&r);

	it_post_raw("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}", &r);
	ck_assert_msg(r.status == 200, "transaction without ghost: %d %s", r.status, r.body);
	tl_http_response_free(&r);
	it_post_raw("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"ghost\":[{\"sql\":\"SELECT 1\"}]}}", &r);
	it_assert_problem(&r, 503, "participant-unavailable");
	tl_http_response_free(&r);
	it_assert_nothing_prepared(5000);
}
END_TEST

/* 11. Result rows are typed: integers and floats as numbers, booleans,
 * json/jsonb embedded, NULL as null, numeric as a string (no precision
 * lost), NaN/Infinity and everything else as text. */
START_TEST(test_typed_results)
{
	TlHttpResponse r;
	json_t *row, *v;

	it_post_raw("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1::int2 AS i2, 2147483647::int4 AS i4, "
	            "9007199254740993::int8 AS i8, 1.5::float4 AS f4, 0.1::float8 AS f8, true AS t, false AS f, "
	            "'{\\\"a\\\": [1, 2]}'::json AS j, '{\\\"b\\\": null}'::jsonb AS jb, NULL::int AS n, "
	            "123456789012345678901234567890.123456789::numeric AS num, 'NaN'::float8 AS nan, "
	            "'Infinity'::float8 AS inf, 'text'::text AS s, '2026-11-24'::date AS d\"}]}}",
	            &r);
	ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
	row = json_array_get(json_object_get(json_array_get(json_object_get(json_object_get(r.json, "branches"),
	                                                                   "bank_a"),
	                                                    0),
	                                     "rows"),
	                     0);
	ck_assert_msg(row != NULL, "no row: %s", r.body);
	ck_assert(json_is_integer(json_object_get(row, "i2")) && json_integer_value(json_object_get(row, "i2")) == 1);
	ck_assert(json_integer_value(json_object_get(row, "i4")) == 2147483647);
	/* Beyond 2^53: still exact in the JSON text. */
	ck_assert(json_is_integer(json_object_get(row, "i8")) &&
	          json_integer_value(json_object_get(row, "i8")) == 9007199254740993LL);
	ck_assert(strstr(r.body, "\"i8\":9007199254740993") != NULL);
	ck_assert(json_is_real(json_object_get(row, "f4")) && json_real_value(json_object_get(row, "f4")) == 1.5);
	ck_assert(json_is_real(json_object_get(row, "f8")) && json_real_value(json_object_get(row, "f8")) == 0.1);
	ck_assert(json_is_true(json_object_get(row, "t")));
	ck_assert(json_is_false(json_object_get(row, "f")));
	v = json_object_get(row, "j");
	ck_assert(json_is_object(v) && json_array_size(json_object_get(v, "a")) == 2);
	v = json_object_get(row, "jb");
	ck_assert(json_is_object(v) && json_is_null(json_object_get(v, "b")));
	ck_assert(json_is_null(json_object_get(row, "n")));
	ck_assert(json_is_string(json_object_get(row, "num")));
	ck_assert_str_eq(json_string_value(json_object_get(row, "num")), "123456789012345678901234567890.123456789");
	ck_assert_str_eq(json_string_value(json_object_get(row, "nan")), "NaN");
	ck_assert_str_eq(json_string_value(json_object_get(row, "inf")), "Infinity");
	ck_assert_str_eq(json_string_value(json_object_get(row, "s")), "text");
	ck_assert_str_eq(json_string_value(json_object_get(row, "d")), "2026-11-24");
	tl_http_response_free(&r);
}
END_TEST

IT_SETUP(commit_three, true)
IT_SETUP(abort_sql_error, true)
IT_SETUP(abort_expect_rows, true)
IT_SETUP(unknown_participant, true)
IT_SETUP(bad_requests, true)
IT_SETUP(participant_down, true)
IT_SETUP(crash_after_log_fsync, false) /* the test starts it with the fault */
IT_SETUP(crash_before_log_commit, false)
IT_SETUP(concurrency, true)
IT_SETUP(participant_refused_at_start, false)
IT_SETUP(typed_results, true)

static void it_add(Suite *s, const char *name, const TTest *test, void (*setup)(void),
		   double timeout)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, it_clusters_setup, NULL);
	tcase_add_checked_fixture(tc, setup, it_teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

#define IT_CASE(s, name, timeout) it_add(s, #name, test_##name, it_setup_##name, timeout)

static Suite *it_suite(void)
{
	Suite *s = suite_create("integration");

	IT_CASE(s, commit_three, IT_TIMEOUT_S);
	IT_CASE(s, abort_sql_error, IT_TIMEOUT_S);
	IT_CASE(s, abort_expect_rows, IT_TIMEOUT_S);
	IT_CASE(s, unknown_participant, IT_TIMEOUT_S);
	IT_CASE(s, bad_requests, IT_TIMEOUT_S);
	IT_CASE(s, participant_down, IT_TIMEOUT_S);
	IT_CASE(s, crash_after_log_fsync, IT_TIMEOUT_S);
	IT_CASE(s, crash_before_log_commit, IT_TIMEOUT_S);
	IT_CASE(s, concurrency, 2 * IT_TIMEOUT_S);
	IT_CASE(s, participant_refused_at_start, IT_TIMEOUT_S);
	IT_CASE(s, typed_results, IT_TIMEOUT_S);
	return s;
}

/* After failures, show what each failed test's daemon said. */
static void it_report_failures(SRunner *sr)
{
	TestResult **trs = srunner_failures(sr);
	int i, n = srunner_ntests_failed(sr);

	if (trs == NULL)
		return;
	for (i = 0; i < n; i++) {
		char path[TL_PATH_MAX + 64];

		if (it_env.tmpdir[0] == '\0')
			break;
		if (tl_fmt(path, sizeof path, "%s/twopcd-%s.log", it_env.tmpdir, tr_tcname(trs[i])) &&
		    access(path, R_OK) == 0)
			tl_print_file_tail(path, 40);
	}
	free(trs);
}

int main(void)
{
	const char *skip = tl_skip_reason();
	SRunner *sr;
	int failed;

	if (skip != NULL) {
		fprintf(stderr, "check_integration: SKIP: %s\n", skip);
		return TL_EXIT_SKIP;
	}
	sr = srunner_create(it_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	if (failed > 0)
		it_report_failures(sr);
	srunner_free(sr);
	if (it_env.keep_tmpdir && it_env.tmpdir[0] != '\0')
		fprintf(stderr, "check_integration: kept %s\n", it_env.tmpdir);
	tl_env_destroy(&it_env);
	return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
