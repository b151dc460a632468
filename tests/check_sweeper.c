/*
 * check_sweeper: the sweeper inside twopcd, on real PostgreSQL.
 *
 * - a prepared transaction of ours that nobody is finishing is rolled back
 *   (presumed abort), but only once it is older than sweep_grace_ms;
 * - a prepared transaction that is not ours is never touched;
 * - the race the design warns about: a transaction whose COMMIT record is
 *   waiting for its fsync is in flight, and a sweep in that window must not
 *   roll it back (the log thread is stalled with a delay fault to hold the
 *   window open);
 * - a crash between the sweeper's two reads loses nothing.
 *
 * Two clusters, started once by the runner process; each test runs in a
 * forked child with its own twopcd. Exits 77 (SKIP) without PostgreSQL.
 */
#include "testlib.h"

#include <check.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SW_ERR 2048
#define SW_SCHEMA                                                                                                      \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"                                         \
	"CREATE TABLE transfers (id text PRIMARY KEY);"                                                                \
	"INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g;"

static const char *const sw_names[2] = {"bank_a", "bank_b"};
static TlEnv sw_env;
static bool sw_env_ok;
static char sw_env_err[SW_ERR];
static TlDaemon sw_daemon;

static void sw_clusters_setup(void)
{
	static bool tried;
	if (tried)
		return;
	tried = true;
	fflush(NULL);
	if (!tl_env_init(&sw_env, sw_env_err, sizeof sw_env_err))
		return;
	for (int i = 0; i < 2; i++) {
		if (!tl_env_add_cluster(&sw_env, sw_names[i], sw_env_err, sizeof sw_env_err))
			return;
		if (!tl_pg_exec(tl_env_cluster(&sw_env, sw_names[i]), SW_SCHEMA, sw_env_err, sizeof sw_env_err))
			return;
	}
	sw_env_ok = true;
}

/* Inserts `extra` lines right after the [coordinator] header. */
static void sw_config_add(const char *extra)
{
	FILE *f = fopen(sw_daemon.conf_path, "r");
	char *text, *out, *at;
	long n;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	ck_assert_int_eq(fread(text, 1, (size_t)n, f), n);
	fclose(f);
	at = strstr(text, "[coordinator]\n");
	ck_assert_ptr_nonnull(at);
	at += strlen("[coordinator]\n");
	out = calloc(1, (size_t)n + strlen(extra) + 2);
	memcpy(out, text, (size_t)(at - text));
	strcat(out, extra);
	strcat(out, at);
	f = fopen(sw_daemon.conf_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(out, f);
	fclose(f);
	free(text);
	free(out);
}

static void sw_setup(const char *tag, const char *extra_config, const char *fault)
{
	char err[SW_ERR], log_dir[TL_PATH_MAX + 32];

	ck_assert_msg(sw_env_ok, "test clusters could not be created: %s", sw_env_err);
	for (int i = 0; i < 2; i++)
		if (!tl_cluster_ensure_running(&sw_env, tl_env_cluster(&sw_env, sw_names[i]), err, sizeof err))
			ck_abort_msg("%s", err);
	ck_assert(tl_fmt(log_dir, sizeof log_dir, "%s/log-%s", sw_env.tmpdir, tag));
	if (!tl_daemon_configure(&sw_daemon, &sw_env, log_dir, tag, err, sizeof err))
		ck_abort_msg("%s", err);
	sw_config_add(extra_config);
	if (!tl_daemon_start(&sw_daemon, fault, err, sizeof err))
		ck_abort_msg("%s", err);
}

static void sw_teardown(void)
{
	char err[SW_ERR];
	if (!tl_daemon_kill(&sw_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}

static TlCluster *sw_cluster(int i)
{
	return tl_env_cluster(&sw_env, sw_names[i]);
}

static void sw_exec(int part, const char *sql)
{
	char err[SW_ERR];
	if (!tl_pg_exec(sw_cluster(part), sql, err, sizeof err))
		ck_abort_msg("%s: %s", sw_names[part], err);
}

static bool sw_prepared(int part, const char *gid)
{
	char err[SW_ERR];
	bool p = false;
	if (!tl_pg_gid_prepared(sw_cluster(part), gid, &p, err, sizeof err))
		ck_abort_msg("%s", err);
	return p;
}

static int64_t sw_scalar(int part, const char *sql, const char *param)
{
	char err[SW_ERR];
	int64_t v = 0;
	const char *params[1] = {param};
	if (!tl_pg_scalar_i64(sw_cluster(part), sql, param ? 1 : 0, params, &v, err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

/* POST /v1/sweep; returns the parsed report (caller frees the response). */
static void sw_sweep(TlHttpResponse *r)
{
	char err[SW_ERR];
	if (!tl_http_request(sw_daemon.port, "POST", "/v1/sweep", "", 60000, r, err, sizeof err))
		ck_abort_msg("POST /v1/sweep: %s", err);
	ck_assert_int_eq(r->status, 200);
	ck_assert_ptr_nonnull(r->json);
}

static int64_t sw_report(const TlHttpResponse *r, const char *part, const char *key)
{
	json_t *p = json_object_get(json_object_get(r->json, "participants"), part);
	int64_t v = -1;
	ck_assert_msg(p != NULL, "sweep report without %s: %s", part, r->body);
	ck_assert_msg(tl_json_i64(p, key, &v), "sweep report without %s.%s: %s", part, key, r->body);
	return v;
}

static bool sw_log_contains(const char *needle)
{
	FILE *f = fopen(sw_daemon.log_path, "r");
	char line[4096];
	bool found = false;
	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* ---- 1. grace, presumed abort, foreign left alone ------------------------------ */

static void sw_setup_orphan(void)
{
	sw_setup("orphan", "sweep_interval_ms = 3600000\nsweep_grace_ms = 1500\n", NULL);
}

START_TEST(test_orphan_rolled_back_after_grace)
{
	char ours[128], foreign[64], sql[512];
	TlHttpResponse r = {0};

	/* A prepared branch with our shape whose transaction nobody runs (no
	 * COMMIT record: presumed abort), and one of another application. */
	snprintf(ours, sizeof ours, "twopc_t1_%016llx_0", (unsigned long long)(0xabc000 + getpid()));
	snprintf(foreign, sizeof foreign, "other_app_%d", (int)getpid());
	snprintf(sql, sizeof sql,
	         "BEGIN; INSERT INTO transfers VALUES ('orphan-%d'); PREPARE TRANSACTION '%s';"
	         "BEGIN; INSERT INTO transfers VALUES ('foreign-%d'); PREPARE TRANSACTION '%s';",
	         (int)getpid(), ours, (int)getpid(), foreign);
	sw_exec(0, sql);

	/* Younger than sweep_grace_ms: left alone. */
	sw_sweep(&r);
	ck_assert_int_eq(sw_report(&r, "bank_a", "ours"), 1);
	ck_assert_int_eq(sw_report(&r, "bank_a", "rolled_back"), 0);
	ck_assert_int_eq(sw_report(&r, "bank_a", "foreign"), 1);
	tl_http_response_free(&r);
	ck_assert(sw_prepared(0, ours));

	tl_sleep_ms(1700);
	sw_sweep(&r);
	ck_assert_int_eq(sw_report(&r, "bank_a", "rolled_back"), 1);
	ck_assert_int_eq(sw_report(&r, "bank_a", "committed"), 0);
	tl_http_response_free(&r);
	ck_assert_msg(!sw_prepared(0, ours), "%s still prepared after the sweep", ours);
	char tid[64];
	snprintf(tid, sizeof tid, "orphan-%d", (int)getpid());
	ck_assert_int_eq(sw_scalar(0, "SELECT count(*) FROM transfers WHERE id = $1", tid), 0);

	/* Never touched, but reported in the log with gid, database and owner. */
	ck_assert_msg(sw_prepared(0, foreign), "the sweeper touched %s, which is not ours", foreign);
	ck_assert(sw_log_contains("not ours, left alone: gid=other_app_"));
	snprintf(sql, sizeof sql, "ROLLBACK PREPARED '%s'", foreign);
	sw_exec(0, sql);
}
END_TEST

/* ---- 2. the race: a COMMIT waiting for its fsync is in flight ------------------ */

typedef struct PostArg {
	int port;
	char body[1024];
	TlHttpResponse resp;
	bool ok;
	char err[SW_ERR];
} PostArg;

static void *sw_post_thread(void *arg)
{
	PostArg *a = arg;
	a->ok = tl_http_request(a->port, "POST", "/v1/transactions", a->body, 60000, &a->resp, a->err, sizeof a->err);
	return NULL;
}

static void sw_setup_race(void)
{
	/* Grace 0: only the in-flight table protects the transaction. The log
	 * thread stalls 3 s after writing the COMMIT record, before fsync. */
	sw_setup("race", "sweep_interval_ms = 3600000\nsweep_grace_ms = 0\n", "after_log_write:delay=3000");
}

START_TEST(test_sweep_spares_commit_waiting_for_fsync)
{
	PostArg a = {0};
	pthread_t th;
	TlHttpResponse r = {0};
	char tid[64];
	int64_t deadline;

	snprintf(tid, sizeof tid, "race-%d", (int)getpid());
	a.port = sw_daemon.port;
	snprintf(a.body, sizeof a.body,
	         "{\"branches\":{\"bank_a\":[{\"sql\":\"INSERT INTO transfers VALUES ($1)\",\"params\":[\"%s\"]}],"
	         "\"bank_b\":[{\"sql\":\"INSERT INTO transfers VALUES ($1)\",\"params\":[\"%s\"]}]},"
	         "\"timeout_ms\":20000}",
	         tid, tid);
	ck_assert_int_eq(pthread_create(&th, NULL, sw_post_thread, &a), 0);

	/* Wait until the transaction sits between its COMMIT write and fsync. */
	deadline = tl_now_ms() + 10000;
	while (!sw_log_contains("fault point after_log_write reached: stalling") && tl_now_ms() < deadline)
		tl_sleep_ms(20);
	ck_assert_msg(sw_log_contains("stalling"), "the delay fault never fired");

	/* Both branches are prepared; the sweep sees them, and must skip them. */
	sw_sweep(&r);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(sw_report(&r, sw_names[i], "ours"), 1);
		ck_assert_int_eq(sw_report(&r, sw_names[i], "rolled_back"), 0);
		ck_assert_int_eq(sw_report(&r, sw_names[i], "committed"), 0);
		ck_assert_int_eq(sw_report(&r, sw_names[i], "skipped"), 1);
	}
	tl_http_response_free(&r);

	pthread_join(th, NULL);
	ck_assert_msg(a.ok, "transfer: %s", a.err);
	ck_assert_msg(a.resp.status == 200, "transfer answered %d: %s", a.resp.status, a.resp.body);
	ck_assert_str_eq(tl_json_str(a.resp.json, "outcome"), "committed");
	tl_http_response_free(&a.resp);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(sw_scalar(i, "SELECT count(*) FROM transfers WHERE id = $1", tid), 1);
	for (int i = 0; i < 2; i++) {
		int64_t n = -1;
		char err[SW_ERR];
		ck_assert(tl_pg_count_prepared(sw_cluster(i), &n, err, sizeof err));
		ck_assert_int_eq(n, 0);
	}
}
END_TEST

/* ---- 3. a crash between the two reads ------------------------------------------ */

static void sw_setup_crash(void)
{
	sw_setup("crash", "sweep_interval_ms = 3600000\nsweep_grace_ms = 0\n", "sweep_between_reads:crash");
}

START_TEST(test_crash_between_reads)
{
	char ours[128], sql[512], err[SW_ERR];
	TlHttpResponse r = {0};
	int ws = 0;

	snprintf(ours, sizeof ours, "twopc_t1_%016llx_1", (unsigned long long)(0xdef000 + getpid()));
	snprintf(sql, sizeof sql, "BEGIN; INSERT INTO transfers VALUES ('crash-%d'); PREPARE TRANSACTION '%s';",
	         (int)getpid(), ours);
	sw_exec(1, sql);

	/* The sweep kills the daemon between its reads: no reply. */
	ck_assert(!tl_http_request(sw_daemon.port, "POST", "/v1/sweep", "", 10000, &r, err, sizeof err));
	ck_assert(tl_daemon_wait_exit(&sw_daemon, 10000, &ws, err, sizeof err));
	ck_assert(sw_prepared(1, ours)); /* nothing was done halfway */

	/* Restarted without the fault: start-up recovery settles it. */
	if (!tl_daemon_restart(&sw_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
	ck_assert(!sw_prepared(1, ours));
	char tid[64];
	snprintf(tid, sizeof tid, "crash-%d", (int)getpid());
	ck_assert_int_eq(sw_scalar(1, "SELECT count(*) FROM transfers WHERE id = $1", tid), 0);
}
END_TEST

static Suite *sw_suite(void)
{
	Suite *s = suite_create("sweeper");
	struct {
		const char *name;
		void (*setup)(void);
		const TTest *test;
	} cases[] = {
	    {"orphan", sw_setup_orphan, test_orphan_rolled_back_after_grace},
	    {"race", sw_setup_race, test_sweep_spares_commit_waiting_for_fsync},
	    {"crash", sw_setup_crash, test_crash_between_reads},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_unchecked_fixture(tc, sw_clusters_setup, NULL);
		tcase_add_checked_fixture(tc, cases[i].setup, sw_teardown);
		tcase_set_timeout(tc, 120);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	const char *skip = tl_skip_reason();
	SRunner *sr;
	int failed;

	if (skip != NULL) {
		fprintf(stderr, "check_sweeper: SKIP: %s\n", skip);
		return TL_EXIT_SKIP;
	}
	sr = srunner_create(sw_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	tl_env_destroy(&sw_env);
	return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
