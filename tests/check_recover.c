/*
 * check_recover: twopc-recover against real PostgreSQL.
 *
 * The runner process starts three throwaway clusters once (bank_a, bank_b,
 * bank_c with the demo tables). The tests leave transactions in doubt the
 * way production does — twopcd killed at a fault point in the middle of a
 * three-participant transfer (TWOPC_FAULT=after_log_fsync:crash leaves every
 * branch prepared with a COMMIT record, before_log_commit:crash leaves them
 * prepared with none) — then run the real twopc-recover binary and check
 * its output, its exit status and, above all, what it did to the databases:
 * balances, transfer rows and pg_prepared_xacts.
 *
 * The cluster tests share one decision log, as one coordinator restarted
 * again and again would; each ends with a twopcd start that must come up
 * clean with nothing of ours prepared. check-log gets its own log
 * directories, built record by record and then broken on purpose.
 *
 * Exits 77 (automake SKIP) when no PostgreSQL server binaries are available.
 */
#include "testlib.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "decision_log.h"

#define RC_NPART     3
#define RC_TIMEOUT_S 300
#define RC_HTTP_MS   60000
#define RC_RUN_MS    120000
#define RC_ERR       2048
#define RC_FOREIGN   "other_app_1"

#define RC_SQL_DEBIT  "UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1"
#define RC_SQL_CREDIT "UPDATE accounts SET balance = balance + $1 WHERE id = $2"
#define RC_SQL_INSERT "INSERT INTO transfers (id) VALUES ($1)"

#define RC_SCHEMA                                                                                                      \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));"                    \
	"CREATE TABLE transfers (id text PRIMARY KEY);"                                                                \
	"INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g;"

static const char *const rc_names[RC_NPART] = {"bank_a", "bank_b", "bank_c"};

static TlEnv rc_env;
static bool rc_env_tried, rc_env_ok;
static char rc_env_err[RC_ERR];
static TlDaemon rc_daemon;
static int rc_seq;

/* One run of twopc-recover: exit status, stdout, stderr. */
typedef struct RcResult {
	int code; /* exit status, or -1 if it did not exit normally */
	char *out;
	char *err;
} RcResult;

/* One in-doubt transfer left behind by a crash. */
typedef struct RcCrash {
	char tid[64];
	char txn_id[17];
	char gids[RC_NPART][64];
	int64_t before[RC_NPART]; /* balances of the account before */
	int acct;
} RcCrash;

/* ------------------------------------------------------------------ helpers */

static TlCluster *rc_cluster(const char *name)
{
	TlCluster *c = tl_env_cluster(&rc_env, name);
	ck_assert_msg(c != NULL, "no cluster %s", name);
	return c;
}

static int64_t rc_scalar(const char *part, const char *sql, int nparams, const char *const *params)
{
	char err[RC_ERR];
	int64_t v = 0;

	if (!tl_pg_scalar_i64(rc_cluster(part), sql, nparams, params, &v, err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

static int64_t rc_balance(const char *part, int acct)
{
	char id[16];
	const char *params[1] = {id};

	snprintf(id, sizeof id, "%d", acct);
	return rc_scalar(part, "SELECT balance FROM accounts WHERE id = $1::int", 1, params);
}

static int64_t rc_transfers(const char *part, const char *tid)
{
	const char *params[1] = {tid};
	return rc_scalar(part, "SELECT count(*) FROM transfers WHERE id = $1", 1, params);
}

static bool rc_prepared(const char *part, const char *gid)
{
	char err[RC_ERR];
	bool p = false;

	if (!tl_pg_gid_prepared(rc_cluster(part), gid, &p, err, sizeof err))
		ck_abort_msg("%s", err);
	return p;
}

static int64_t rc_ours_prepared(void)
{
	char err[RC_ERR];
	int64_t total = 0;

	for (int i = 0; i < RC_NPART; i++) {
		int64_t n = 0;
		if (!tl_pg_count_prepared(rc_cluster(rc_names[i]), &n, err, sizeof err))
			ck_abort_msg("%s", err);
		total += n;
	}
	return total;
}

static char *rc_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

/* Runs twopc-recover with CONF (NULL: no -c) and the arguments up to NULL. */
static void rc_run(RcResult *r, const char *conf, ...)
{
	const char *argv[32];
	char bin[TL_PATH_MAX + 32], outp[TL_PATH_MAX + 32], errp[TL_PATH_MAX + 32], cmd[1024] = "", san[256];
	int argc = 0, status = 0;
	size_t cl = 0;
	va_list ap;
	pid_t pid;
	int64_t deadline = tl_now_ms() + RC_RUN_MS;

	ck_assert(tl_fmt(bin, sizeof bin, "%s/twopc-recover", rc_env.builddir));
	ck_assert(tl_fmt(outp, sizeof outp, "%s/recover.out", rc_env.tmpdir));
	ck_assert(tl_fmt(errp, sizeof errp, "%s/recover.err", rc_env.tmpdir));
	argv[argc++] = bin;
	if (conf != NULL) {
		argv[argc++] = "-c";
		argv[argc++] = conf;
	}
	va_start(ap, conf);
	for (const char *a = va_arg(ap, const char *); a != NULL && argc < 31; a = va_arg(ap, const char *))
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	for (int i = 1; i < argc; i++)
		cl += (size_t)snprintf(cmd + cl, cl < sizeof cmd ? sizeof cmd - cl : 0, " %s", argv[i]);

	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fi = open("/dev/null", O_RDONLY);
		if (fo < 0 || fe < 0 || fi < 0)
			_exit(126);
		dup2(fi, 0);
		dup2(fo, 1);
		dup2(fe, 2);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		ck_assert_msg(w == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
		if (tl_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			ck_abort_msg("twopc-recover%s: still running after %d ms", cmd, RC_RUN_MS);
		}
		tl_sleep_ms(20);
	}
	r->code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->out = rc_read_file(outp);
	r->err = rc_read_file(errp);
	/* The transcript goes to the test log: what an operator would see. */
	fprintf(stderr, "$ twopc-recover%s  => exit %d\n%s%s%s", cmd, r->code, r->out, r->err[0] ? "[stderr]\n" : "",
	        r->err);
	/* Under the sanitizers: a report fails the test, whatever the exit status. */
	ck_assert_msg(!tl_sanitizer_report(r->err, san, sizeof san), "twopc-recover%s: sanitizer report: %s", cmd, san);
}

static void rc_free(RcResult *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* The line of TEXT around P (static buffer). */
static const char *rc_line_at(const char *text, const char *p)
{
	static char line[4096];
	const char *b, *e;

	for (b = p; b > text && b[-1] != '\n'; b--)
		;
	e = strchr(p, '\n');
	if (e == NULL)
		e = p + strlen(p);
	snprintf(line, sizeof line, "%.*s", (int)(e - b), b);
	return line;
}

/* Asserts that some line of TEXT holds NEEDLE and both words (NULL: any). */
static void rc_assert_line(const char *text, const char *needle, const char *w1, const char *w2)
{
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
		const char *l = rc_line_at(text, p);
		if ((w1 == NULL || strstr(l, w1) != NULL) && (w2 == NULL || strstr(l, w2) != NULL))
			return;
	}
	ck_abort_msg("no line with '%s', '%s' and '%s' in:\n%s", needle, w1 ? w1 : "", w2 ? w2 : "", text);
}

/* "txn <id>": how resolve names a decision in its DONE and kept lines. */
static const char *rc_txn(const RcCrash *cr)
{
	static char buf[32];
	snprintf(buf, sizeof buf, "txn %s", cr->txn_id);
	return buf;
}

static json_t *rc_stmt(const char *sql, json_t *params)
{
	return json_pack("{s:s,s:o,s:i}", "sql", sql, "params", params, "expect_rows", 1);
}

/*
 * Starts twopcd with FAULT, sends a three-participant transfer on account
 * ACCT (bank_a -12, bank_b +5, bank_c +7, one transfers row each) and
 * expects the daemon to kill itself. Every branch must be left prepared.
 */
static void rc_crash(const char *fault, int acct, RcCrash *cr)
{
	char err[RC_ERR];
	TlHttpResponse resp;
	json_t *req;
	int wstatus = 0;

	memset(cr, 0, sizeof(*cr));
	cr->acct = acct;
	snprintf(cr->tid, sizeof cr->tid, "rc-%d-%d", (int)getpid(), ++rc_seq);
	for (int i = 0; i < RC_NPART; i++)
		cr->before[i] = rc_balance(rc_names[i], acct);
	if (!tl_daemon_start(&rc_daemon, fault, err, sizeof err))
		ck_abort_msg("%s", err);
	req = json_pack(
	    "{s:{s:[o,o],s:[o,o],s:[o,o]}}", "branches", "bank_a", rc_stmt(RC_SQL_DEBIT, json_pack("[i,i]", 12, acct)),
	    rc_stmt(RC_SQL_INSERT, json_pack("[s]", cr->tid)), "bank_b",
	    rc_stmt(RC_SQL_CREDIT, json_pack("[i,i]", 5, acct)), rc_stmt(RC_SQL_INSERT, json_pack("[s]", cr->tid)),
	    "bank_c", rc_stmt(RC_SQL_CREDIT, json_pack("[i,i]", 7, acct)),
	    rc_stmt(RC_SQL_INSERT, json_pack("[s]", cr->tid)));
	ck_assert_ptr_nonnull(req);
	if (tl_http_post_json(rc_daemon.port, "/v1/transactions", req, RC_HTTP_MS, &resp, err, sizeof err)) {
		tl_daemon_print_log_tail(&rc_daemon, 30);
		ck_abort_msg("TWOPC_FAULT=%s: expected no reply, got HTTP %d: %s", fault, resp.status, resp.body);
	}
	json_decref(req);
	if (!tl_daemon_wait_exit(&rc_daemon, 10000, &wstatus, err, sizeof err))
		ck_abort_msg("TWOPC_FAULT=%s: %s", fault, err);
	ck_assert_msg(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL, "twopcd did not die of SIGKILL");

	for (int i = 0; i < RC_NPART; i++) {
		PGresult *res = NULL;
		if (!tl_pg_query(rc_cluster(rc_names[i]),
		                 "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'twopc\\_%' AND database = "
		                 "current_database()",
		                 0, NULL, &res, err, sizeof err))
			ck_abort_msg("%s", err);
		ck_assert_msg(PQntuples(res) == 1, "%s: %d prepared transactions of ours, want 1", rc_names[i],
		              PQntuples(res));
		snprintf(cr->gids[i], sizeof cr->gids[i], "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		ck_assert_msg(strncmp(cr->gids[i], "twopc_t1_", 9) == 0 && strlen(cr->gids[i]) > 26, "gid %s",
		              cr->gids[i]);
	}
	memcpy(cr->txn_id, cr->gids[0] + 9, 16);
	for (int i = 1; i < RC_NPART; i++)
		ck_assert_msg(strncmp(cr->gids[i] + 9, cr->txn_id, 16) == 0, "gids of different transactions");
}

/* Every branch of CR committed (or none did), nothing of it prepared. */
static void rc_assert_outcome(const RcCrash *cr, bool committed)
{
	static const int delta[RC_NPART] = {-12, 5, 7};

	for (int i = 0; i < RC_NPART; i++) {
		ck_assert_msg(!rc_prepared(rc_names[i], cr->gids[i]), "%s: %s still prepared", rc_names[i],
		              cr->gids[i]);
		ck_assert_msg(rc_balance(rc_names[i], cr->acct) == cr->before[i] + (committed ? delta[i] : 0),
		              "%s: balance of %d is %" PRId64 ", want %" PRId64, rc_names[i], cr->acct,
		              rc_balance(rc_names[i], cr->acct), cr->before[i] + (committed ? delta[i] : 0));
		ck_assert_msg(rc_transfers(rc_names[i], cr->tid) == (committed ? 1 : 0), "%s: transfer %s %s",
		              rc_names[i], cr->tid, committed ? "missing" : "present");
	}
}

static void rc_assert_untouched(const RcCrash *cr)
{
	for (int i = 0; i < RC_NPART; i++) {
		ck_assert_msg(rc_prepared(rc_names[i], cr->gids[i]), "%s: %s no longer prepared", rc_names[i],
		              cr->gids[i]);
		ck_assert_int_eq(rc_balance(rc_names[i], cr->acct), cr->before[i]);
		ck_assert_int_eq(rc_transfers(rc_names[i], cr->tid), 0);
	}
}

static void rc_make_foreign(const char *part)
{
	char err[RC_ERR], sql[256];

	snprintf(sql, sizeof sql,
	         "BEGIN; INSERT INTO transfers (id) VALUES ('foreign-%d'); PREPARE TRANSACTION '" RC_FOREIGN "'",
	         (int)getpid());
	if (!tl_pg_exec(rc_cluster(part), sql, err, sizeof err))
		ck_abort_msg("%s", err);
}

static void rc_drop_foreign(const char *part)
{
	char err[RC_ERR];
	if (rc_prepared(part, RC_FOREIGN) &&
	    !tl_pg_exec(rc_cluster(part), "ROLLBACK PREPARED '" RC_FOREIGN "'", err, sizeof err))
		ck_abort_msg("%s", err);
}

/* The JSON transaction of status --json with this gid, or NULL. */
static json_t *rc_json_xact(json_t *doc, const char *gid)
{
	json_t *xs = json_object_get(doc, "transactions"), *x;
	size_t i;

	json_array_foreach(xs, i, x)
	{
		const char *g = tl_json_str(x, "gid");
		if (g != NULL && strcmp(g, gid) == 0)
			return x;
	}
	return NULL;
}

static int64_t rc_json_i64(json_t *obj, const char *k1, const char *k2)
{
	int64_t v = -1;
	json_t *o = k2 ? json_object_get(obj, k1) : obj;
	ck_assert_msg(tl_json_i64(o, k2 ? k2 : k1, &v), "no integer %s.%s", k1, k2 ? k2 : "");
	return v;
}

/* twopcd starts cleanly on the shared log: healthy, its recovery found
 * nothing to settle, nothing of ours prepared. */
static void rc_assert_twopcd_clean_start(void)
{
	char err[RC_ERR];
	char *log, *last;

	if (!tl_daemon_start(&rc_daemon, NULL, err, sizeof err))
		ck_abort_msg("twopcd after resolve: %s", err);
	ck_assert_int_eq(rc_ours_prepared(), 0);
	log = rc_read_file(rc_daemon.log_path);
	last = log;
	for (char *p = strstr(log, "starting"); p != NULL; p = strstr(p + 1, "starting"))
		last = p;
	ck_assert_msg(strstr(last, "0 committed, 0 rolled back") != NULL,
	              "twopcd's start-up recovery had work left after resolve:\n%s", last);
	free(log);
	if (!tl_daemon_kill(&rc_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}

/* ---------------------------------------------------------------- fixtures */

static void rc_clusters_setup(void)
{
	if (rc_env_tried)
		return;
	rc_env_tried = true;
	fflush(NULL);
	if (!tl_env_init(&rc_env, rc_env_err, sizeof rc_env_err))
		return;
	rc_env.keep_tmpdir = getenv("TWOPC_TEST_KEEP") != NULL;
	for (int i = 0; i < RC_NPART; i++) {
		if (!tl_env_add_cluster(&rc_env, rc_names[i], rc_env_err, sizeof rc_env_err))
			return;
		if (!tl_pg_exec(tl_env_cluster(&rc_env, rc_names[i]), RC_SCHEMA, rc_env_err, sizeof rc_env_err))
			return;
	}
	fprintf(stderr, "check_recover: clusters in %s: bank_a:%d bank_b:%d bank_c:%d\n", rc_env.tmpdir,
	        rc_env.clusters[0].port, rc_env.clusters[1].port, rc_env.clusters[2].port);
	rc_env_ok = true;
}

static void rc_setup(void)
{
	char err[RC_ERR], log_dir[TL_PATH_MAX + 32];

	ck_assert_msg(rc_env_ok, "test clusters could not be created: %s", rc_env_err);
	for (int i = 0; i < RC_NPART; i++)
		if (!tl_cluster_ensure_running(&rc_env, rc_cluster(rc_names[i]), err, sizeof err))
			ck_abort_msg("%s", err);
	ck_assert(tl_fmt(log_dir, sizeof log_dir, "%s/twopcd-log", rc_env.tmpdir));
	if (!tl_daemon_configure(&rc_daemon, &rc_env, log_dir, "recover", err, sizeof err))
		ck_abort_msg("%s", err);
}

static void rc_teardown(void)
{
	char err[RC_ERR];

	if (!tl_daemon_kill(&rc_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
	for (int i = 0; i < RC_NPART; i++)
		rc_drop_foreign(rc_names[i]);
}

/* ------------------------------------------------------------------- tests */

/* 1+2. A crash after the COMMIT record: status says COMMIT, a foreign
 * prepared transaction says LEAVE; resolve --dry-run changes nothing;
 * resolve commits every branch and only ours; a second resolve has nothing
 * to do; twopcd then starts clean. */
START_TEST(test_status_resolve_commit)
{
	RcCrash cr;
	RcResult r;
	json_t *doc, *x;
	json_error_t jerr;

	rc_crash("after_log_fsync:crash", 11, &cr);
	rc_make_foreign("bank_b");

	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_msg(r.code == 1, "status exit %d, want 1 (something in doubt)", r.code);
	for (int i = 0; i < RC_NPART; i++)
		rc_assert_line(r.out, cr.gids[i], "COMMIT", "committed");
	rc_assert_line(r.out, RC_FOREIGN, "LEAVE", "not ours");
	rc_assert_line(r.out, RC_FOREIGN, "bank_b", "postgres");
	ck_assert_msg(strstr(r.out, "twopcd is not running") != NULL, "status does not say twopcd is down");
	ck_assert_msg(strstr(r.out, "PARTICIPANT") && strstr(r.out, "XID AGE") && strstr(r.out, "ACTION"),
	              "no table header");
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "status", "--json", NULL);
	ck_assert_int_eq(r.code, 1);
	doc = json_loads(r.out, 0, &jerr);
	ck_assert_msg(doc != NULL, "status --json is not JSON: %s: %s", jerr.text, r.out);
	for (int i = 0; i < RC_NPART; i++) {
		x = rc_json_xact(doc, cr.gids[i]);
		ck_assert_msg(x != NULL, "%s missing from JSON", cr.gids[i]);
		ck_assert_str_eq(tl_json_str(x, "action"), "COMMIT");
		ck_assert_str_eq(tl_json_str(x, "log"), "committed");
		ck_assert_str_eq(tl_json_str(x, "participant"), rc_names[i]);
		ck_assert_str_eq(tl_json_str(x, "txn_id"), cr.txn_id);
		ck_assert(json_is_true(json_object_get(x, "ours")));
		ck_assert(rc_json_i64(x, "age_s", NULL) >= 0 && rc_json_i64(x, "xid_age", NULL) >= 0);
	}
	x = rc_json_xact(doc, RC_FOREIGN);
	ck_assert_msg(x != NULL, "foreign transaction missing from JSON");
	ck_assert_str_eq(tl_json_str(x, "action"), "LEAVE");
	ck_assert_str_eq(tl_json_str(x, "log"), "not ours");
	ck_assert(json_is_null(json_object_get(x, "txn_id")));
	ck_assert_int_eq(rc_json_i64(doc, "summary", "commit"), 3);
	ck_assert_int_eq(rc_json_i64(doc, "summary", "rollback"), 0);
	ck_assert_int_eq(rc_json_i64(doc, "summary", "leave"), 1);
	ck_assert_int_eq(rc_json_i64(doc, "summary", "unreachable"), 0);
	ck_assert(json_is_false(json_object_get(json_object_get(doc, "twopcd"), "running")));
	ck_assert_int_eq(json_array_size(json_object_get(doc, "participants")), RC_NPART);
	ck_assert(json_is_true(json_object_get(json_array_get(json_object_get(doc, "participants"), 0), "reachable")));
	json_decref(doc);
	rc_free(&r);

	/* --dry-run says what it would do and does nothing */
	rc_run(&r, rc_daemon.conf_path, "resolve", "--dry-run", NULL);
	ck_assert_int_eq(r.code, 0);
	for (int i = 0; i < RC_NPART; i++)
		rc_assert_line(r.out, cr.gids[i], "COMMIT", "would");
	rc_assert_line(r.out, rc_txn(&cr), "DONE", "would");
	rc_free(&r);
	rc_assert_untouched(&cr);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_msg(r.code == 0, "resolve exit %d", r.code);
	for (int i = 0; i < RC_NPART; i++) {
		rc_assert_line(r.out, cr.gids[i], "COMMIT", "done");
		rc_assert_line(r.out, cr.gids[i], rc_names[i], NULL);
	}
	rc_assert_line(r.out, RC_FOREIGN, "LEAVE", "left alone");
	rc_assert_line(r.out, rc_txn(&cr), "DONE", "written");
	rc_free(&r);
	rc_assert_outcome(&cr, true);
	ck_assert_msg(rc_prepared("bank_b", RC_FOREIGN), "resolve touched the foreign prepared transaction");

	/* idempotent */
	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert_msg(strstr(r.out, "nothing to do") != NULL, "second resolve did something:\n%s", r.out);
	rc_assert_line(r.out, RC_FOREIGN, "LEAVE", NULL);
	rc_free(&r);
	rc_assert_outcome(&cr, true);
	ck_assert(rc_prepared("bank_b", RC_FOREIGN));

	/* the foreign one alone keeps status at 1; gone, 0 */
	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 1);
	rc_free(&r);
	rc_drop_foreign("bank_b");
	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert_msg(strstr(r.out, "No prepared transaction") != NULL, "status:\n%s", r.out);
	rc_free(&r);

	rc_assert_twopcd_clean_start();
}
END_TEST

/* 1+2. A crash before the COMMIT record: ROLLBACK (presumed abort). */
START_TEST(test_status_resolve_rollback)
{
	RcCrash cr;
	RcResult r;
	json_t *doc;
	json_error_t jerr;

	rc_crash("before_log_commit:crash", 12, &cr);
	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 1);
	for (int i = 0; i < RC_NPART; i++)
		rc_assert_line(r.out, cr.gids[i], "ROLLBACK", "presumed abort");
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "status", "--json", NULL);
	ck_assert_int_eq(r.code, 1);
	doc = json_loads(r.out, 0, &jerr);
	ck_assert_msg(doc != NULL, "not JSON: %s", jerr.text);
	for (int i = 0; i < RC_NPART; i++) {
		json_t *x = rc_json_xact(doc, cr.gids[i]);
		ck_assert_ptr_nonnull(x);
		ck_assert_str_eq(tl_json_str(x, "action"), "ROLLBACK");
		ck_assert_str_eq(tl_json_str(x, "log"), "presumed abort");
	}
	ck_assert_int_eq(rc_json_i64(doc, "summary", "rollback"), 3);
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "summary"), "in_doubt")));
	json_decref(doc);
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "resolve", "-n", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_free(&r);
	rc_assert_untouched(&cr);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 0);
	for (int i = 0; i < RC_NPART; i++)
		rc_assert_line(r.out, cr.gids[i], "ROLLBACK", "done");
	rc_free(&r);
	rc_assert_outcome(&cr, false);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert(strstr(r.out, "nothing to do") != NULL);
	rc_free(&r);
	rc_assert_twopcd_clean_start();
}
END_TEST

/* 1+3. While twopcd runs: status works and says so; resolve, commit and
 * check-log --fix refuse, naming the pid. */
START_TEST(test_twopcd_running)
{
	char err[RC_ERR], pid[32];
	RcResult r;
	json_t *doc;

	if (!tl_daemon_start(&rc_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
	snprintf(pid, sizeof pid, "pid %d", (int)rc_daemon.pid);

	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert_msg(strstr(r.out, "twopcd") && strstr(r.out, pid) && strstr(r.out, "running"),
	              "status does not say twopcd (%s) is running:\n%s", pid, r.out);
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "status", "--json", NULL);
	ck_assert_int_eq(r.code, 0);
	doc = json_loads(r.out, 0, NULL);
	ck_assert_ptr_nonnull(doc);
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "twopcd"), "running")));
	ck_assert_int_eq(rc_json_i64(doc, "twopcd", "pid"), rc_daemon.pid);
	json_decref(doc);
	rc_free(&r);

	rc_make_foreign("bank_c");
	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 1);
	rc_assert_line(r.out, RC_FOREIGN, "LEAVE", NULL);
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert_msg(strstr(r.err, pid) && strstr(r.err, "twopcd") && strstr(r.err, "stop it"),
	              "resolve's refusal does not name twopcd (%s):\n%s", pid, r.err);
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "resolve", "--dry-run", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert(strstr(r.out, pid) != NULL);
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "commit", "twopc_t1_00000000000000ff_0", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, pid) != NULL);
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "check-log", "--fix", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, pid) != NULL);
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "check-log", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_free(&r);
	ck_assert(rc_prepared("bank_c", RC_FOREIGN));
	rc_drop_foreign("bank_c");
}
END_TEST

/* 4. commit GID on a presumed-aborted transaction: refused, then forced; the
 * HEURISTIC record makes resolve commit the other branches too. */
START_TEST(test_heuristic_commit)
{
	RcCrash cr;
	RcResult r;

	rc_crash("before_log_commit:crash", 13, &cr);

	rc_run(&r, rc_daemon.conf_path, "commit", cr.gids[0], NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert_msg(strstr(r.err, "presumed abort") && strstr(r.err, "--force") && strstr(r.err, "atomicity"),
	              "refusal does not explain:\n%s", r.err);
	rc_free(&r);
	rc_assert_untouched(&cr);

	/* not ours: never */
	rc_run(&r, rc_daemon.conf_path, "commit", "other_app_9", "--force", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, "not a GID of coordinator t1") != NULL);
	rc_free(&r);
	/* ours in shape, prepared nowhere */
	rc_run(&r, rc_daemon.conf_path, "commit", "twopc_t1_00000000000000ff_0", NULL);
	ck_assert_int_eq(r.code, 1);
	ck_assert(strstr(r.err, "not prepared") != NULL);
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "commit", cr.gids[0], "--force", NULL);
	ck_assert_msg(r.code == 0, "commit --force exit %d", r.code);
	ck_assert(strstr(r.err, "WARNING") != NULL);
	rc_assert_line(r.out, cr.gids[0], "COMMIT", "done");
	ck_assert(strstr(r.out, cr.gids[1]) && strstr(r.out, cr.gids[2])); /* the branches that follow */
	rc_free(&r);
	ck_assert(!rc_prepared("bank_a", cr.gids[0]));
	ck_assert_int_eq(rc_balance("bank_a", 13), cr.before[0] - 12);

	/* the record is in the log, and governs the other branches */
	rc_run(&r, rc_daemon.conf_path, "check-log", "--verbose", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_assert_line(r.out, cr.gids[0], "HEURISTIC", "commit");
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 1);
	rc_assert_line(r.out, cr.gids[1], "heuristic commit", "COMMIT");
	rc_assert_line(r.out, cr.gids[2], "heuristic commit", "COMMIT");
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_assert_line(r.out, cr.gids[1], "COMMIT", "done");
	rc_assert_line(r.out, cr.gids[2], "COMMIT", "done");
	rc_assert_line(r.out, rc_txn(&cr), "DONE", "heuristic commit");
	rc_free(&r);
	rc_assert_outcome(&cr, true);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert(strstr(r.out, "nothing to do") != NULL);
	rc_free(&r);
	rc_assert_twopcd_clean_start();
}
END_TEST

/* 4. abort GID on a committed transaction: refused, then forced. */
START_TEST(test_heuristic_abort)
{
	RcCrash cr;
	RcResult r;

	rc_crash("after_log_fsync:crash", 14, &cr);
	rc_run(&r, rc_daemon.conf_path, "abort", cr.gids[1], NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert_msg(strstr(r.err, "COMMIT record") && strstr(r.err, "--force"), "refusal:\n%s", r.err);
	rc_free(&r);
	rc_assert_untouched(&cr);

	rc_run(&r, rc_daemon.conf_path, "abort", cr.gids[1], "--force", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert(strstr(r.err, "WARNING") != NULL);
	rc_assert_line(r.out, cr.gids[1], "ROLLBACK", "done");
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	rc_assert_line(r.out, cr.gids[0], "heuristic abort", "ROLLBACK");
	rc_assert_line(r.out, cr.gids[2], "heuristic abort", "ROLLBACK");
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_assert_line(r.out, cr.gids[0], "ROLLBACK", "done");
	rc_assert_line(r.out, cr.gids[2], "ROLLBACK", "done");
	rc_assert_line(r.out, rc_txn(&cr), "DONE", "written");
	rc_free(&r);
	rc_assert_outcome(&cr, false);
	rc_assert_twopcd_clean_start();
}
END_TEST

/* Regression: a heuristic abort over a COMMIT record, with a participant
 * down when twopcd starts. Start-up recovery must not resume phase 2 for
 * it (that would commit the branch on the participant that comes back, the
 * opposite of what every other branch did); the sweeper rolls it back once
 * the participant is back. */
START_TEST(test_heuristic_abort_participant_down_at_start)
{
	RcCrash cr;
	RcResult r;
	char err[RC_ERR];
	TlHttpResponse resp = {0};
	int64_t deadline;

	rc_crash("after_log_fsync:crash", 16, &cr);
	if (!tl_cluster_stop(&rc_env, rc_cluster("bank_c"), "fast", err, sizeof err))
		ck_abort_msg("%s", err);
	rc_run(&r, rc_daemon.conf_path, "abort", cr.gids[0], "--force", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_free(&r);

	if (!tl_daemon_start(&rc_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
	if (!tl_cluster_start(&rc_env, rc_cluster("bank_c"), err, sizeof err))
		ck_abort_msg("%s", err);
	/* The sweeper settles bank_c's branch once it is older than the grace. */
	deadline = tl_now_ms() + 30000;
	while (rc_ours_prepared() > 0 && tl_now_ms() < deadline) {
		if (!tl_http_request(rc_daemon.port, "POST", "/v1/sweep", "", 30000, &resp, err, sizeof err))
			ck_abort_msg("POST /v1/sweep: %s", err);
		tl_http_response_free(&resp);
		tl_sleep_ms(500);
	}
	ck_assert_int_eq(rc_ours_prepared(), 0);
	rc_assert_outcome(&cr, false);
	if (!tl_daemon_kill(&rc_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}
END_TEST

/* Regression: a decided transaction whose branch is on a participant the
 * operator took out of the config. The remaining branches commit, but the
 * decision must stay in the log (no DONE): once the participant is back in
 * the config, its branch must commit too — not be rolled back by presumed
 * abort. */
START_TEST(test_participant_removed_from_config)
{
	RcCrash cr;
	char err[RC_ERR], saved[RC_ERR * 4];
	char *conf = rc_read_file(rc_daemon.conf_path);
	char *cut = strstr(conf, "[participant bank_c]");
	FILE *f;

	ck_assert_ptr_nonnull(cut);
	snprintf(saved, sizeof saved, "%s", conf);
	rc_crash("after_log_fsync:crash", 17, &cr);

	/* Restart without bank_c in the config. */
	*cut = '\0';
	f = fopen(rc_daemon.conf_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(conf, f);
	fclose(f);
	if (!tl_daemon_start(&rc_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
	ck_assert(!rc_prepared("bank_a", cr.gids[0]));
	ck_assert(!rc_prepared("bank_b", cr.gids[1]));
	ck_assert(rc_prepared("bank_c", cr.gids[2]));
	/* Let phase 2 finish what it can and a sweep run. */
	tl_sleep_ms(1500);
	if (!tl_daemon_kill(&rc_daemon, err, sizeof err))
		ck_abort_msg("%s", err);

	/* bank_c is back in the config: recovery commits its branch. */
	f = fopen(rc_daemon.conf_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(saved, f);
	fclose(f);
	free(conf);
	if (!tl_daemon_start(&rc_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
	rc_assert_outcome(&cr, true);
	if (!tl_daemon_kill(&rc_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}
END_TEST

/* A participant down: status exits 2 naming it; resolve settles the rest,
 * keeps the decision and exits 1; once it is back, resolve finishes. */
START_TEST(test_participant_down)
{
	RcCrash cr;
	RcResult r;
	char err[RC_ERR];

	rc_crash("after_log_fsync:crash", 15, &cr);
	if (!tl_cluster_stop(&rc_env, rc_cluster("bank_c"), "fast", err, sizeof err))
		ck_abort_msg("%s", err);

	rc_run(&r, rc_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.out, "UNREACHABLE") != NULL && strstr(r.err, "bank_c") != NULL);
	rc_free(&r);

	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 1);
	rc_assert_line(r.out, cr.gids[0], "COMMIT", "done");
	rc_assert_line(r.out, cr.gids[1], "COMMIT", "done");
	rc_assert_line(r.out, rc_txn(&cr), "kept", "bank_c");
	rc_free(&r);

	if (!tl_cluster_start(&rc_env, rc_cluster("bank_c"), err, sizeof err))
		ck_abort_msg("%s", err);
	rc_run(&r, rc_daemon.conf_path, "resolve", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_assert_line(r.out, cr.gids[2], "COMMIT", "done");
	rc_assert_line(r.out, rc_txn(&cr), "DONE", "written");
	rc_free(&r);
	rc_assert_outcome(&cr, true);
	rc_assert_twopcd_clean_start();
}
END_TEST

/* ---- check-log on logs built by hand ---- */

static void rc_write_file(const char *path, const uint8_t *buf, size_t len, bool append)
{
	int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0600);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static size_t rc_file_size(const char *path)
{
	struct stat st;
	ck_assert_msg(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
	return (size_t)st.st_size;
}

/* Encodes N records (COMMIT, DONE, HEURISTIC in turn) starting at txn BASE. */
static size_t rc_encode_records(uint8_t *buf, uint64_t base, int n)
{
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		DlogBranchRef br[2];
		DlogRecord rec;

		memset(br, 0, sizeof br);
		memset(&rec, 0, sizeof rec);
		br[0].index = 0;
		snprintf(br[0].name, sizeof br[0].name, "bank_a");
		br[1].index = 1;
		snprintf(br[1].name, sizeof br[1].name, "bank_b");
		rec.txn_id = base + (uint64_t)i / 3;
		rec.wall_ms = 1700000000000LL;
		rec.branches = br;
		switch (i % 3) {
		case 0:
			rec.type = DLOG_COMMIT;
			rec.nbranches = 2;
			break;
		case 1:
			rec.type = DLOG_DONE;
			break;
		default:
			rec.type = DLOG_HEURISTIC;
			rec.nbranches = 1;
			rec.heuristic_commit = true;
			snprintf(rec.gid, sizeof rec.gid, "twopc_t1_%016llx_0", (unsigned long long)rec.txn_id);
			break;
		}
		len += dlog_encode(&rec, buf + len);
	}
	return len;
}

/* A log directory with two segments of 6 valid records each, and a
 * configuration pointing at it. */
static void rc_build_log(const char *tag, char *conf, size_t conflen, char seg1[], char seg2[], size_t seglen,
                         size_t *seg2_len, size_t *seg2_first_frame_end)
{
	char dir[TL_PATH_MAX + 64], name[32], err[RC_ERR];
	uint8_t buf[4096];
	TlDaemon d;
	size_t n;

	ck_assert(tl_fmt(dir, sizeof dir, "%s/log-%s", rc_env.tmpdir, tag));
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	if (!tl_daemon_configure(&d, &rc_env, dir, tag, err, sizeof err))
		ck_abort_msg("%s", err);
	snprintf(conf, conflen, "%s", d.conf_path);
	dlog_segment_file_name(name, sizeof name, 1);
	ck_assert(tl_fmt(seg1, seglen, "%s/%s", dir, name));
	n = rc_encode_records(buf, 0x100, 6);
	rc_write_file(seg1, buf, n, false);
	dlog_segment_file_name(name, sizeof name, 2);
	ck_assert(tl_fmt(seg2, seglen, "%s/%s", dir, name));
	n = rc_encode_records(buf, 0x200, 6);
	rc_write_file(seg2, buf, n, false);
	*seg2_len = n;
	*seg2_first_frame_end = rc_encode_records(buf, 0x200, 1);
}

/* 5. check-log: clean; a torn tail reported, then cut exactly by --fix;
 * damage in the middle reported and never "fixed". */
START_TEST(test_check_log)
{
	char conf[TL_PATH_MAX + 64], seg1[TL_PATH_MAX + 64], seg2[TL_PATH_MAX + 64], want[128];
	uint8_t buf[4096];
	size_t len2, first, torn;
	RcResult r;
	char *before, *after;

	/* the shared log, after all the tests above: clean */
	if (access(rc_daemon.log_dir, F_OK) == 0) {
		rc_run(&r, rc_daemon.conf_path, "check-log", NULL);
		ck_assert_int_eq(r.code, 0);
		ck_assert(strstr(r.out, "clean") != NULL);
		rc_free(&r);
	}

	rc_build_log("cl-torn", conf, sizeof conf, seg1, seg2, sizeof seg1, &len2, &first);
	rc_run(&r, conf, "check-log", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert_msg(strstr(r.out, "12 records") && strstr(r.out, "4 COMMIT, 4 DONE, 4 HEURISTIC"), "counts:\n%s",
	              r.out);
	rc_free(&r);

	/* a partial frame at the end of the newest segment: a torn tail */
	torn = rc_encode_records(buf, 0x300, 1) - 5;
	rc_write_file(seg2, buf, torn, true);
	rc_run(&r, conf, "check-log", NULL);
	ck_assert_int_eq(r.code, 1);
	snprintf(want, sizeof want, "TORN TAIL at offset %zu: %zu bytes", len2, torn);
	ck_assert_msg(strstr(r.out, want) != NULL, "no '%s' in:\n%s", want, r.out);
	rc_free(&r);
	ck_assert_int_eq(rc_file_size(seg2), len2 + torn);
	/* status reads past a torn tail and says so */
	rc_run(&r, conf, "status", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert(strstr(r.out, "torn tail") != NULL);
	rc_free(&r);

	rc_run(&r, conf, "check-log", "--fix", NULL);
	ck_assert_int_eq(r.code, 0);
	snprintf(want, sizeof want, "at offset %zu: cutting %zu bytes", len2, torn);
	ck_assert_msg(strstr(r.out, want) != NULL, "no '%s' in:\n%s", want, r.out);
	rc_free(&r);
	ck_assert_int_eq(rc_file_size(seg2), len2);
	rc_run(&r, conf, "check-log", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_free(&r);

	/* a flipped byte in the first frame of the newest segment, valid
	 * frames after it: damage, and --fix must not cut anything */
	rc_build_log("cl-damage", conf, sizeof conf, seg1, seg2, sizeof seg1, &len2, &first);
	{
		int fd = open(seg2, O_RDWR);
		uint8_t b;
		ck_assert(fd >= 0);
		ck_assert_int_eq(pread(fd, &b, 1, 12), 1);
		b ^= 0x40;
		ck_assert_int_eq(pwrite(fd, &b, 1, 12), 1);
		close(fd);
	}
	before = rc_read_file(seg2);
	rc_run(&r, conf, "check-log", NULL);
	ck_assert_int_eq(r.code, 1);
	snprintf(want, sizeof want, "DAMAGE at offset 0 (checksum mismatch): %zu unreadable bytes", first);
	ck_assert_msg(strstr(r.out, want) != NULL, "no '%s' in:\n%s", want, r.out);
	ck_assert(strstr(r.out, "not a torn tail") != NULL);
	rc_free(&r);
	rc_run(&r, conf, "check-log", "--fix", NULL);
	ck_assert_int_eq(r.code, 1);
	ck_assert(strstr(r.out, "nothing was changed") != NULL);
	rc_free(&r);
	ck_assert_int_eq(rc_file_size(seg2), len2);
	/* status must not show a damaged log as if the records after the
	 * damage did not exist */
	rc_run(&r, conf, "status", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, "not a torn tail") != NULL);
	rc_free(&r);
	after = rc_read_file(seg2);
	ck_assert(memcmp(before, after, len2) == 0);
	free(before);
	free(after);

	/* garbage at the end of an older segment: damage too (only the newest
	 * segment can have a torn tail) */
	rc_build_log("cl-old", conf, sizeof conf, seg1, seg2, sizeof seg1, &len2, &first);
	rc_write_file(seg1, (const uint8_t *)"\x07\x00\x00", 3, true);
	rc_run(&r, conf, "check-log", "--fix", NULL);
	ck_assert_int_eq(r.code, 1);
	ck_assert(strstr(r.out, "DAMAGE") && strstr(r.out, "not the newest segment"));
	rc_free(&r);

	/* resolve refuses a damaged log (twopcd's own replay rule) */
	rc_run(&r, conf, "resolve", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, "not a torn tail") != NULL);
	rc_free(&r);
}
END_TEST

/* 6. Idempotency-Keys in the log: check-log describes keyed COMMITs and
 * IDEM records and counts the remembered keys (saying which are past the
 * ttl); status and resolve do not count them as undecided work. */
START_TEST(test_check_log_idempotency)
{
	char dir[TL_PATH_MAX + 64], name[32], seg[TL_PATH_MAX + 64], err[RC_ERR];
	static uint8_t buf[8192];
	uint8_t fp[DLOG_IDEM_FP_LEN];
	DlogBranchRef br[2];
	DlogIdem ix, iy, iz;
	TlDaemon d;
	RcResult r;
	size_t len = 0;
	int64_t now = now_wall_ms();

	ck_assert(tl_fmt(dir, sizeof dir, "%s/log-cl-idem", rc_env.tmpdir));
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	if (!tl_daemon_configure(&d, &rc_env, dir, "cl-idem", err, sizeof err))
		ck_abort_msg("%s", err);
	memset(br, 0, sizeof br);
	snprintf(br[0].name, sizeof br[0].name, "bank_a");
	br[1].index = 1;
	snprintf(br[1].name, sizeof br[1].name, "bank_b");
	memset(fp, 0x5c, sizeof fp);
	memset(&ix, 0, sizeof ix);
	snprintf(ix.key, sizeof ix.key, "order-x");
	memcpy(ix.fingerprint, fp, sizeof fp);
	ix.status = 200;
	ix.response = "{\"status\":\"committed\"}";
	ix.response_len = (uint32_t)strlen(ix.response);
	iy = ix;
	snprintf(iy.key, sizeof iy.key, "order-y");
	iz = ix;
	snprintf(iz.key, sizeof iz.key, "order-z");

	/* txn 0x500: keyed COMMIT, then DONE (finished, remembered); 0x501: a
	 * carried-forward key; 0x502: one from 2023, long expired. */
	DlogRecord x = {
	    .type = DLOG_COMMIT, .txn_id = 0x500, .wall_ms = now, .nbranches = 2, .branches = br, .idem = &ix};
	DlogRecord xd = {.type = DLOG_DONE, .txn_id = 0x500};
	DlogRecord y = {.type = DLOG_IDEM, .txn_id = 0x501, .wall_ms = now, .idem = &iy};
	DlogRecord z = {.type = DLOG_IDEM, .txn_id = 0x502, .wall_ms = 1700000000000LL, .idem = &iz};
	len += dlog_encode(&x, buf + len);
	len += dlog_encode(&xd, buf + len);
	len += dlog_encode(&y, buf + len);
	len += dlog_encode(&z, buf + len);
	dlog_segment_file_name(name, sizeof name, 1);
	ck_assert(tl_fmt(seg, sizeof seg, "%s/%s", dir, name));
	rc_write_file(seg, buf, len, false);

	rc_run(&r, d.conf_path, "check-log", "--verbose", NULL);
	ck_assert_msg(r.code == 0, "check-log: %d\n%s%s", r.code, r.out, r.err);
	rc_assert_line(r.out, "0000000000000500", "COMMIT", "key \"order-x\" -> 200, 22 response bytes");
	rc_assert_line(r.out, "0000000000000501", "IDEM", "key \"order-y\"");
	rc_assert_line(r.out, "0000000000000502", "IDEM", "(expired)");
	ck_assert_msg(strstr(r.out, "1 COMMIT, 1 DONE, 0 HEURISTIC, 2 IDEM") != NULL, "counts:\n%s", r.out);
	ck_assert_msg(strstr(r.out, "0 decided transactions wait for their DONE") != NULL, "live:\n%s", r.out);
	ck_assert_msg(strstr(r.out, "3 finished transactions' Idempotency-Keys are remembered (1 of them past") != NULL,
	              "keys:\n%s", r.out);
	ck_assert(strstr(r.out, "clean") != NULL);
	rc_free(&r);

	/* status: the keys are no work (read-only: it reports all three). */
	rc_run(&r, d.conf_path, "status", NULL);
	ck_assert_msg(strstr(r.out, "0 decided transactions not yet done") != NULL, "status:\n%s%s", r.out, r.err);
	ck_assert_msg(strstr(r.out, "Idempotency-Keys of 3 finished transactions") != NULL, "status:\n%s", r.out);
	ck_assert(strstr(r.out, "wait only for their DONE") == NULL);
	rc_free(&r);
	rc_run(&r, d.conf_path, "status", "--json", NULL);
	ck_assert_msg(strstr(r.out, "\"idem_keys\": 3") != NULL && strstr(r.out, "\"live_commits\": 0") != NULL,
	              "status --json:\n%s", r.out);
	rc_free(&r);

	/* resolve (the lock, the configured ttl): nothing to settle; the
	 * expired key is forgotten, the others stay, so segment 1 stays. */
	rc_run(&r, d.conf_path, "resolve", NULL);
	ck_assert_msg(strstr(r.out, "0 decided transactions not yet done") != NULL, "resolve:\n%s%s", r.out, r.err);
	rc_free(&r);
	ck_assert_int_eq(access(seg, F_OK), 0);
	rc_run(&r, d.conf_path, "check-log", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert_msg(strstr(r.out, "3 finished transactions' Idempotency-Keys are remembered") != NULL, "%s", r.out);
	rc_free(&r);
}
END_TEST

/* Usage: --help everywhere, clear errors, exit 2. */
START_TEST(test_usage)
{
	static const char *const cmds[] = {"status", "resolve", "commit", "abort", "check-log"};
	RcResult r;

	rc_run(&r, NULL, "--help", NULL);
	ck_assert_int_eq(r.code, 0);
	ck_assert(strstr(r.out, "Usage: twopc-recover") != NULL);
	rc_free(&r);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		rc_run(&r, NULL, cmds[i], "--help", NULL);
		ck_assert_int_eq(r.code, 0);
		ck_assert(strstr(r.out, "Exit status") != NULL && strstr(r.out, cmds[i]) != NULL);
		rc_free(&r);
	}
	rc_run(&r, NULL, "--version", NULL);
	ck_assert_int_eq(r.code, 0);
	rc_free(&r);
	rc_run(&r, NULL, "status", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, "-c FILE") != NULL);
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "frobnicate", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, "unknown command 'frobnicate'") != NULL);
	rc_free(&r);
	rc_run(&r, rc_daemon.conf_path, "status", "--dry-run", NULL);
	ck_assert_int_eq(r.code, 2);
	rc_free(&r);
	rc_run(&r, "/nonexistent/twopcd.conf", "status", NULL);
	ck_assert_int_eq(r.code, 2);
	ck_assert(strstr(r.err, "/nonexistent/twopcd.conf") != NULL);
	rc_free(&r);
	/* a password in a conninfo is never printed */
	{
		char conf[TL_PATH_MAX + 32];
		FILE *f;

		ck_assert(tl_fmt(conf, sizeof conf, "%s/secret.conf", rc_env.tmpdir));
		f = fopen(conf, "w");
		ck_assert_ptr_nonnull(f);
		fprintf(f,
		        "[coordinator]\nid = t1\nlog_dir = %s\n\n[participant nowhere]\nconninfo = "
		        "host=127.0.0.1 port=1 dbname=bank user=u password=hunter2secret\n",
		        rc_env.tmpdir);
		fclose(f);
		rc_run(&r, conf, "status", NULL);
		ck_assert_int_eq(r.code, 2);
		ck_assert(strstr(r.out, "hunter2secret") == NULL && strstr(r.err, "hunter2secret") == NULL);
		ck_assert(strstr(r.err, "nowhere") != NULL);
		rc_free(&r);
	}
}
END_TEST

/* ------------------------------------------------------------------- suite */

static void rc_add(Suite *s, const char *name, const TTest *test)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, rc_clusters_setup, NULL);
	tcase_add_checked_fixture(tc, rc_setup, rc_teardown);
	tcase_set_timeout(tc, RC_TIMEOUT_S);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

#define RC_CASE(s, name) rc_add(s, #name, test_##name)

int main(void)
{
	const char *skip = tl_skip_reason();
	Suite *s;
	SRunner *sr;
	int failed;

	if (skip != NULL) {
		fprintf(stderr, "check_recover: SKIP: %s\n", skip);
		return TL_EXIT_SKIP;
	}
	s = suite_create("recover");
	RC_CASE(s, usage);
	RC_CASE(s, status_resolve_commit);
	RC_CASE(s, status_resolve_rollback);
	RC_CASE(s, twopcd_running);
	RC_CASE(s, heuristic_commit);
	RC_CASE(s, heuristic_abort);
	RC_CASE(s, heuristic_abort_participant_down_at_start);
	RC_CASE(s, participant_removed_from_config);
	RC_CASE(s, participant_down);
	RC_CASE(s, check_log);
	RC_CASE(s, check_log_idempotency);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	if (failed > 0 && rc_env.tmpdir[0] != '\0') {
		char path[TL_PATH_MAX + 32];
		if (tl_fmt(path, sizeof path, "%s/twopcd-recover.log", rc_env.tmpdir) && access(path, R_OK) == 0)
			tl_print_file_tail(path, 40);
	}
	srunner_free(sr);
	if (rc_env.keep_tmpdir && rc_env.tmpdir[0] != '\0')
		fprintf(stderr, "check_recover: kept %s\n", rc_env.tmpdir);
	tl_env_destroy(&rc_env);
	return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
