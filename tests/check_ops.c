/*
 * check_ops: what operators see, against real PostgreSQL.
 *
 * GET /metrics must pass `promtool check metrics` and carry the real
 * numbers (transactions by outcome, aborts by reason, errors by SQLSTATE
 * class, histograms that add up, in-doubt gauges after a sweep); GET
 * /v1/in-doubt must list our and foreign prepared transactions with the
 * log's decision and the sweeper's next step; GET /v1/transactions/{id}
 * must explain a transaction from the log and from the participants;
 * GET /v1/recent-aborts must show why things aborted; and a prepared
 * transaction that holds back the xmin horizon must be warned about.
 *
 * The pools: one connection per participant at start, more only as
 * requests wait for one (then kept), and when the participant refuses one
 * more, a pause instead of a storm of attempts. Idle RSS after start stays
 * within the 8 MiB target (plain builds only: the sanitizers' shadow memory
 * is counted in RSS).
 */
#include "tlfixture.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OP_TIMEOUT_S 300
#define OP_ERR 2048
#define OP_SCHEMA                                                                                   \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"                   \
	"INSERT INTO accounts SELECT g, 1000000 FROM generate_series(1, 100) g;"

static const char *const op_clusters[] = {"bank_a", "bank_b", NULL};
static TlFixture op_fx = {
	.program = "check_ops",
	.clusters = op_clusters,
	.schema = OP_SCHEMA,
	.timeout_s = OP_TIMEOUT_S,
};

/* ---------------------------------------------------------------- helpers */

static void start_with(const char *const *kv)
{
	tl_fixture_start(&op_fx, kv, NULL);
}

static void get(const char *path, TlHttpResponse *r)
{
	char err[OP_ERR];

	if (!tl_http_request(op_fx.daemon.port, "GET", path, NULL, 30000, r, err, sizeof err))
		ck_abort_msg("GET %s: %s", path, err);
	ck_assert_msg(r->status == 200, "GET %s: %d %s", path, r->status, r->body);
}

static int post_txn(const char *body)
{
	TlHttpResponse r;
	char err[OP_ERR];
	int st;

	if (!tl_http_request(op_fx.daemon.port, "POST", "/v1/transactions", body, 30000, &r, err, sizeof err))
		ck_abort_msg("POST: %s", err);
	st = r.status;
	tl_http_response_free(&r);
	return st;
}

static void sweep_now(void)
{
	TlHttpResponse r;
	char err[OP_ERR];

	ck_assert(tl_http_request(op_fx.daemon.port, "POST", "/v1/sweep", "", 60000, &r, err, sizeof err));
	ck_assert_int_eq(r.status, 200);
	tl_http_response_free(&r);
}

/* The value of the sample NAME{LABELS} (LABELS exactly as rendered, or ""
 * for none) in a Prometheus exposition; -1 if absent. */
static double sample(const char *text, const char *name, const char *labels)
{
	char key[512];
	const char *p;

	snprintf(key, sizeof key, *labels ? "\n%s{%s} " : "\n%s%s ", name, labels);
	p = strstr(text, key);
	return p ? strtod(p + strlen(key), NULL) : -1;
}

static void pg(const char *part, const char *sql)
{
	char err[OP_ERR];

	if (!tl_pg_exec(tl_env_cluster(&op_fx.env, part), sql, err, sizeof err))
		ck_abort_msg("%s: %s", part, err);
}

/* A prepared transaction of ours that the log knows nothing about (as if
 * twopcd had died before its decision): GID for coordinator t1, this id,
 * the participant's index. */
static void prepare_ours(const char *part, unsigned index, unsigned long long id, char *gid, size_t len)
{
	char sql[256];

	snprintf(gid, len, "twopc_t1_%016llx_%u", id, index);
	snprintf(sql, sizeof sql, "BEGIN; UPDATE accounts SET balance = balance WHERE id = 50; PREPARE TRANSACTION '%s'",
		 gid);
	pg(part, sql);
}

static const char *const xfer_ok =
	"{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 1\","
	"\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 1\","
	"\"expect_rows\":1}]}}";
static const char *const xfer_dup =
	"{\"branches\":{\"bank_a\":[{\"sql\":\"INSERT INTO accounts VALUES (1, 0)\"}],"
	"\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 1\"}]}}";
static const char *const xfer_guard =
	"{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = 999\","
	"\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = 1\"}]}}";

/* The "open" count of PART's pool in GET /healthz. */
static int64_t pool_open(const char *part)
{
	TlHttpResponse r;
	json_t *p;
	int64_t open = -1;

	get("/healthz", &r);
	p = json_object_get(json_object_get(r.json, "participants"), part);
	ck_assert_msg(p != NULL && tl_json_i64(p, "open", &open), "GET /healthz: %s", r.body);
	tl_http_response_free(&r);
	return open;
}

/* Waits up to 10 s for PART's pool to have exactly N connections open. */
static void wait_pool_open(const char *part, int64_t n)
{
	int64_t open = -1;

	for (int i = 0; i < 200 && (open = pool_open(part)) != n; i++)
		tl_sleep_ms(50);
	ck_assert_msg(open == n, "%s: %lld connections open in the pool, expected %lld", part, (long long)open,
		      (long long)n);
}

typedef struct Poster {
	pthread_t th;
	const char *body;
	int status;
} Poster;

static void *poster_main(void *arg)
{
	Poster *p = arg;
	p->status = post_txn(p->body);
	return NULL;
}

/* POSTs BODY from N threads at once; their statuses in STATUS. */
static void post_parallel(const char *body, int n, int *status)
{
	Poster ps[8];

	ck_assert(n <= 8);
	for (int i = 0; i < n; i++) {
		ps[i].body = body;
		ps[i].status = 0;
		ck_assert(pthread_create(&ps[i].th, NULL, poster_main, &ps[i]) == 0);
	}
	for (int i = 0; i < n; i++) {
		ck_assert(pthread_join(ps[i].th, NULL) == 0);
		status[i] = ps[i].status;
	}
}

/* Lines of PART's server log that hold NEEDLE. */
static int server_log_count(const char *part, const char *needle)
{
	char path[TL_PATH_MAX + 16], line[4096];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof path, "%s/server.log", tl_env_cluster(&op_fx.env, part)->dir);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: cannot open", path);
	while (fgets(line, sizeof line, f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* A transaction whose bank_a branch holds its connection for 0.3 s; it
 * writes nothing, so that many of them can run at once without waiting for
 * each other's row locks. */
static const char *const xfer_slow =
	"{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT pg_sleep(0.3)\"}],\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";

/* ------------------------------------------------------------------ tests */

/* /metrics: valid for promtool, and the numbers are the real ones. */
START_TEST(test_metrics)
{
	TlHttpResponse r;
	char path[TL_PATH_MAX + 32], err[OP_ERR + TL_PATH_MAX];
	FILE *f;
	char cmd[TL_PATH_MAX * 3];
	int rc;

	start_with(NULL);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(post_txn(xfer_ok), 200);
	ck_assert_int_eq(post_txn(xfer_dup), 409);
	ck_assert_int_eq(post_txn(xfer_guard), 409);
	/* The guard's branch wrote nothing: as a read-only branch it is
	 * committed in the background, after the reply. Let it finish, so the
	 * sweep below sees an empty pg_prepared_xacts. */
	for (int i = 0; i < 100; i++) {
		int64_t a = 0, b = 0;
		ck_assert(tl_pg_count_prepared(tl_env_cluster(&op_fx.env, "bank_a"), &a, err, sizeof err));
		ck_assert(tl_pg_count_prepared(tl_env_cluster(&op_fx.env, "bank_b"), &b, err, sizeof err));
		if (a + b == 0)
			break;
		tl_sleep_ms(50);
	}
	sweep_now();
	get("/metrics", &r);
	ck_assert_str_eq(r.content_type, "text/plain");

	/* promtool reads the exposition on stdin. */
	snprintf(path, sizeof path, "%s/metrics-%d.txt", op_fx.env.tmpdir, (int)getpid());
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fwrite(r.body, 1, r.body_len, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
	rc = system(cmd);
	if (rc != 0) {
		tl_print_file_tail(path, 400);
		snprintf(err, sizeof err, "%s.out", path);
		tl_print_file_tail(err, 40);
	}
	ck_assert_msg(rc == 0, "promtool check metrics failed (status %d): is prometheus installed (scripts/install-deps)?",
		      rc);

	ck_assert_msg(sample(r.body, "twopc_transactions_total", "outcome=\"committed\"") == 5, "%s", r.body);
	ck_assert(sample(r.body, "twopc_transactions_total", "outcome=\"aborted\"") == 2);
	ck_assert(sample(r.body, "twopc_aborts_total", "reason=\"statement-failed\"") == 1);
	ck_assert(sample(r.body, "twopc_aborts_total", "reason=\"expect-rows\"") == 1);
	ck_assert(sample(r.body, "twopc_participant_errors_total", "participant=\"bank_a\",sqlstate_class=\"23\"") == 1);
	ck_assert(sample(r.body, "twopc_transaction_duration_seconds_count", "") == 7);
	ck_assert(sample(r.body, "twopc_transaction_duration_seconds_bucket", "le=\"+Inf\"") == 7);
	ck_assert(sample(r.body, "twopc_phase_duration_seconds_count", "phase=\"decide\"") == 5);
	ck_assert(sample(r.body, "twopc_dlog_fsync_duration_seconds_count", "") >= 1);
	ck_assert(sample(r.body, "twopc_dlog_records_per_fsync_sum", "") >= 5);
	ck_assert(sample(r.body, "twopc_participant_up", "participant=\"bank_a\"") == 1);
	ck_assert(sample(r.body, "twopc_participant_pool_size", "participant=\"bank_b\"") == 8);
	ck_assert(sample(r.body, "twopc_participant_prepared", "participant=\"bank_a\",owner=\"ours\"") == 0);
	ck_assert(sample(r.body, "twopc_sweeper_runs_total", "") >= 1);
	ck_assert(sample(r.body, "twopc_in_flight", "") == 0);
	ck_assert(sample(r.body, "twopc_heuristic_hazards_total", "") == 0);
	tl_http_response_free(&r);
}
END_TEST

/* /v1/in-doubt, the explanation of one transaction, recent aborts, and the
 * xmin-horizon warning. */
START_TEST(test_in_doubt_and_explain)
{
	static const char *const kv[] = {"sweep_interval_ms", "3600000", "sweep_grace_ms", "3600000",
					 "prepared_xid_age_warning", "1000", NULL};
	TlHttpResponse r;
	char ours[64], path[128], cmd[TL_PATH_MAX * 2];
	json_t *a, *rows, *row, *br;
	const char *committed_id;
	bool seen_ours = false, seen_foreign = false;

	start_with(kv);
	ck_assert_int_eq(post_txn(xfer_ok), 200);
	ck_assert_int_eq(post_txn(xfer_dup), 409);
	prepare_ours("bank_a", 0, 0x7fff000000000001ULL, ours, sizeof ours);
	pg("bank_a", "BEGIN; UPDATE accounts SET balance = balance WHERE id = 51; PREPARE TRANSACTION 'app-foreign-1'");
	/* Age the prepared transactions by 1,100 transaction ids. */
	pg("bank_a", "DO $$ BEGIN FOR i IN 1..1100 LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$");

	get("/v1/in-doubt", &r);
	a = json_object_get(json_object_get(r.json, "participants"), "bank_a");
	ck_assert_msg(json_is_true(json_object_get(a, "reachable")), "%s", r.body);
	ck_assert_msg(json_integer_value(json_object_get(a, "oldest_xid_age")) >= 1100, "%s", r.body);
	rows = json_object_get(a, "prepared");
	for (size_t i = 0; i < json_array_size(rows); i++) {
		row = json_array_get(rows, i);
		if (strcmp(tl_json_str(row, "gid"), ours) == 0) {
			seen_ours = true;
			ck_assert(json_is_true(json_object_get(row, "ours")));
			ck_assert_str_eq(tl_json_str(row, "txn_id"), "7fff000000000001");
			ck_assert_str_eq(tl_json_str(row, "decision"), "presumed_abort");
			ck_assert_str_eq(tl_json_str(row, "sweeper_action"), "wait"); /* younger than the grace */
		} else if (strcmp(tl_json_str(row, "gid"), "app-foreign-1") == 0) {
			seen_foreign = true;
			ck_assert(json_is_false(json_object_get(row, "ours")));
			ck_assert_str_eq(tl_json_str(row, "sweeper_action"), "none");
			ck_assert(json_is_null(json_object_get(row, "decision")));
		}
	}
	ck_assert_msg(seen_ours && seen_foreign, "%s", r.body);
	ck_assert_msg(json_array_size(json_object_get(json_object_get(json_object_get(r.json, "participants"),
									"bank_b"),
						      "prepared")) == 0,
		      "%s", r.body);
	tl_http_response_free(&r);

	/* The explanation of the in-doubt one: no record, a live branch on bank_a. */
	get("/v1/transactions/7fff000000000001", &r);
	ck_assert_str_eq(tl_json_str(json_object_get(r.json, "log"), "decision"), "presumed_abort");
	ck_assert(json_is_null(json_object_get(json_object_get(r.json, "log"), "commit_record")));
	br = json_object_get(r.json, "branches");
	ck_assert_msg(json_array_size(br) == 2, "%s", r.body);
	for (size_t i = 0; i < 2; i++) {
		json_t *b = json_array_get(br, i);
		if (strcmp(tl_json_str(b, "participant"), "bank_a") == 0)
			ck_assert_msg(strcmp(tl_json_str(b, "live"), "prepared") == 0, "%s", r.body);
		else
			ck_assert_msg(strcmp(tl_json_str(b, "live"), "not_prepared") == 0, "%s", r.body);
	}
	tl_http_response_free(&r);

	/* Recent aborts: the duplicate key, with its reason and SQLSTATE. */
	get("/v1/recent-aborts", &r);
	a = json_array_get(json_object_get(r.json, "aborts"), 0);
	ck_assert_msg(a != NULL, "%s", r.body);
	ck_assert_str_eq(tl_json_str(a, "reason"), "statement-failed");
	ck_assert_str_eq(tl_json_str(a, "sqlstate"), "23505");
	ck_assert_str_eq(tl_json_str(a, "participant"), "bank_a");
	tl_http_response_free(&r);

	/* A committed transaction, explained. */
	{
		TlHttpResponse p;
		char err[OP_ERR];
		ck_assert(tl_http_request(op_fx.daemon.port, "POST", "/v1/transactions", xfer_ok, 30000, &p, err, sizeof err));
		ck_assert_int_eq(p.status, 200);
		committed_id = tl_json_str(p.json, "id");
		snprintf(path, sizeof path, "/v1/transactions/%s", committed_id);
		tl_http_response_free(&p);
	}
	get(path, &r);
	ck_assert_str_eq(tl_json_str(r.json, "status"), "committed");
	ck_assert_str_eq(tl_json_str(json_object_get(r.json, "log"), "decision"), "committed");
	br = json_object_get(r.json, "branches");
	for (size_t i = 0; i < json_array_size(br); i++)
		ck_assert_str_eq(tl_json_str(json_array_get(br, i), "live"), "not_prepared");
	tl_http_response_free(&r);

	/* The sweep sees the old prepared transactions and warns. */
	sweep_now();
	get("/metrics", &r);
	ck_assert_msg(sample(r.body, "twopc_participant_oldest_prepared_xid_age", "participant=\"bank_a\"") >= 1100,
		      "%s", r.body);
	ck_assert(sample(r.body, "twopc_participant_prepared", "participant=\"bank_a\",owner=\"ours\"") == 1);
	ck_assert(sample(r.body, "twopc_participant_prepared", "participant=\"bank_a\",owner=\"foreign\"") == 1);
	tl_http_response_free(&r);
	snprintf(cmd, sizeof cmd, "grep -q \"participant=bank_a.*holds back vacuum's xmin horizon\" '%s'",
		 op_fx.daemon.log_path);
	if (system(cmd) != 0) {
		tl_daemon_print_log_tail(&op_fx.daemon, 30);
		ck_abort_msg("no xmin-horizon warning in the log");
	}
	pg("bank_a", "ROLLBACK PREPARED 'app-foreign-1'");
	{
		char sql[128];
		snprintf(sql, sizeof sql, "ROLLBACK PREPARED '%s'", ours);
		pg("bank_a", sql);
	}
}
END_TEST

/* A sanitizer build: its shadow memory and quarantine are part of RSS. */
#if defined(__SANITIZE_ADDRESS__)
#define OP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OP_SANITIZED 1
#endif
#endif

/* Idle: one connection per pool, and VmRSS within the 8 MiB target
 * (docs/PERFORMANCE.md, "Idle memory"): 7.4-7.6 MiB here on Debian 12, of
 * which 6.3-6.4 MiB file-backed (mostly the libraries libpq pulls in). Not
 * a timing: every start touches the same pages, within about 0.2 MiB. */
START_TEST(test_idle_memory)
{
	char path[64], line[256];
	long rss = -1, anon = -1, file = -1, max_kib = 8192;
	const char *max = getenv("TWOPC_IDLE_RSS_MAX_KIB");
	FILE *f;

	start_with(NULL);
	wait_pool_open("bank_a", 1);
	wait_pool_open("bank_b", 1);
#ifdef OP_SANITIZED
	printf("check_ops: idle RSS not checked in a sanitizer build\n");
	return;
#endif
	/* What would change the daemon's pages rather than measure them: an
	 * allocator that fills memory, a preloaded library. */
	if (getenv("MALLOC_PERTURB_") != NULL || getenv("LD_PRELOAD") != NULL) {
		printf("check_ops: idle RSS not checked: MALLOC_PERTURB_ or LD_PRELOAD is set\n");
		return;
	}
	if (max != NULL)
		max_kib = strtol(max, NULL, 10);
	snprintf(path, sizeof path, "/proc/%d/status", (int)op_fx.daemon.pid);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: cannot open", path);
	while (fgets(line, sizeof line, f) != NULL) {
		sscanf(line, "VmRSS: %ld", &rss);
		sscanf(line, "RssAnon: %ld", &anon);
		sscanf(line, "RssFile: %ld", &file);
	}
	fclose(f);
	printf("check_ops: idle RSS %ld KiB (anonymous %ld, file-backed %ld), bound %ld KiB\n", rss, anon, file,
	       max_kib);
	ck_assert_msg(rss > 0 && rss <= max_kib,
		      "twopcd's idle RSS is %ld KiB (anonymous %ld KiB: heap, stacks, relocated library data; "
		      "file-backed %ld KiB: the binary and shared libraries), above the bound of %ld KiB (the 8 MiB "
		      "target; TWOPC_IDLE_RSS_MAX_KIB=N sets another where the libraries differ). docs/PERFORMANCE.md, "
		      "\"Idle memory\", says where it goes; /proc/PID/smaps shows it per mapping",
		      rss, anon, file, max_kib);
}
END_TEST

/* Runs SQL on PART's database postgres; false (and says why) if it failed. */
static bool admin_exec(const char *part, const char *sql)
{
	char conninfo[TL_PATH_MAX + 32];
	PGconn *c;
	PGresult *res;
	bool ok;

	snprintf(conninfo, sizeof conninfo, "%s dbname=postgres", tl_env_cluster(&op_fx.env, part)->conninfo);
	c = PQconnectdb(conninfo);
	res = PQexec(c, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "check_ops: %s: %s: %s", part, sql, PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
	return ok;
}

/* The pools open connections as requests wait for one, keep them, and
 * pause after the participant refuses one. */
START_TEST(test_pool_opens_as_needed)
{
	static const char *const refused = "is not currently accepting connections";
	int status[8], n, before, attempts;
	int64_t t0, ms, open;
	bool disabled, enabled;

	start_with(NULL);
	wait_pool_open("bank_a", 1);
	wait_pool_open("bank_b", 1);

	/* Four at once: the pool grows (to 4 at most), and keeps what it opened. */
	post_parallel(xfer_slow, 4, status);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(status[i], 200);
	open = pool_open("bank_a");
	ck_assert_msg(open >= 2 && open <= 4, "bank_a: %lld open after 4 requests at once", (long long)open);
	tl_sleep_ms(500);
	ck_assert_int_eq(pool_open("bank_a"), open);

	/* bank_a accepts no new connection (those open stay; the database is
	 * changed from another one: PostgreSQL refuses to do it from itself).
	 * Of OPEN + 4 requests at once, 4 wait for a connection, the pool's
	 * attempts to open more are refused, and after a refusal it makes do
	 * with the open ones for half a second before it tries again.
	 * Everything commits. The database is open again before any check. */
	n = (int)open + 4;
	before = server_log_count("bank_a", refused);
	disabled = admin_exec("bank_a", "ALTER DATABASE bank ALLOW_CONNECTIONS false");
	t0 = tl_now_ms();
	post_parallel(xfer_slow, n, status);
	ms = tl_now_ms() - t0;
	enabled = admin_exec("bank_a", "ALTER DATABASE bank ALLOW_CONNECTIONS true");
	ck_assert_msg(disabled && enabled, "ALTER DATABASE bank ALLOW_CONNECTIONS failed (stderr has why)");
	for (int i = 0; i < n; i++)
		ck_assert_msg(status[i] == 200, "request %d: %d", i, status[i]);
	attempts = server_log_count("bank_a", refused) - before;
	printf("check_ops: %d requests, %lld connections open, %d refused attempts to open more, %lld ms\n", n,
	       (long long)open, attempts, (long long)ms);
	ck_assert_msg(attempts >= 1, "the pool never tried to grow (%lld open, %lld ms)", (long long)open,
		      (long long)ms);
	/* Without the pause: an attempt every few milliseconds all that time. */
	ck_assert_msg(attempts <= 4 + 3 * (ms / 1000 + 1),
		      "%d refused connection attempts in %lld ms: the pool retries without pausing", attempts,
		      (long long)ms);
	ck_assert_int_eq(pool_open("bank_a"), open);
}
END_TEST

/* ------------------------------------------------------------- fixtures */

TL_FIXTURE_GLUE(op_fx)
TL_FIXTURE_SETUP(op_fx, metrics)
TL_FIXTURE_SETUP(op_fx, in_doubt_and_explain)
TL_FIXTURE_SETUP(op_fx, idle_memory)
TL_FIXTURE_SETUP(op_fx, pool_opens_as_needed)

int main(void)
{
	Suite *s = suite_create("ops");

	TL_FIXTURE_CASE(op_fx, s, metrics);
	TL_FIXTURE_CASE(op_fx, s, in_doubt_and_explain);
	TL_FIXTURE_CASE(op_fx, s, idle_memory);
	TL_FIXTURE_CASE(op_fx, s, pool_opens_as_needed);
	return tl_fixture_main(&op_fx, s);
}
