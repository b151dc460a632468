/*
 * check_daemon: twopcd run like a daemon, against real PostgreSQL.
 *
 * SIGTERM under load: no new transactions, the ones in flight finish
 * (phase 2 included), exit status 0, every 200 committed on both sides and
 * nothing left prepared. SIGHUP: the log file is reopened (logrotate), the
 * live settings and the token file are reloaded, a change that needs a
 * restart is refused with a warning. log_format = json: every line is a
 * JSON object, and lines about a transaction carry its id.
 */
#include "tlfixture.h"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DM_TIMEOUT_S 300
#define DM_ERR 2048

static const char *const dm_clusters[] = {"bank_a", "bank_b", NULL};
static TlFixture dm_fx = {
	.program = "check_daemon",
	.clusters = dm_clusters,
	.schema = "CREATE TABLE transfers (id text PRIMARY KEY)",
	.timeout_s = DM_TIMEOUT_S,
};

static void set(const char *k, const char *v)
{
	char err[DM_ERR];

	if (!tl_daemon_set(&dm_fx.daemon, k, v, err, sizeof err))
		ck_abort_msg("%s", err);
}

static void start(void)
{
	tl_fixture_start(&dm_fx, NULL, NULL);
}

static int64_t scalar(const char *part, const char *sql)
{
	char err[DM_ERR];
	int64_t v = 0;

	if (!tl_pg_scalar_i64(tl_env_cluster(&dm_fx.env, part), sql, 0, NULL, &v, err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

static bool file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	bool found = false;

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* Waits up to 5 s for NEEDLE to appear in PATH. */
static bool wait_for_line(const char *path, const char *needle)
{
	for (int i = 0; i < 100; i++) {
		if (file_has(path, needle))
			return true;
		tl_sleep_ms(50);
	}
	return false;
}

/* ------------------------------------------------------- SIGTERM under load */

typedef struct Worker {
	pthread_t th;
	int index;
	volatile bool *stop;
	int ok, refused, other;
	char ids[400][40]; /* transfer ids answered 200 */
} Worker;

static void *worker_main(void *arg)
{
	Worker *w = arg;

	for (int n = 0; n < 400 && !*w->stop; n++) {
		char body[1024], err[256], tid[40];
		TlHttpResponse r;

		snprintf(tid, sizeof tid, "w%d-%d-%d", (int)getpid(), w->index, n);
		snprintf(body, sizeof body,
			 "{\"branches\":{\"bank_a\":[{\"sql\":\"INSERT INTO transfers VALUES ($1)\",\"params\":[\"%s\"]}],"
			 "\"bank_b\":[{\"sql\":\"INSERT INTO transfers VALUES ($1)\",\"params\":[\"%s\"]}]}}",
			 tid, tid);
		if (!tl_http_request(dm_fx.daemon.port, "POST", "/v1/transactions", body, 30000, &r, err, sizeof err)) {
			w->refused++; /* the daemon is gone */
			continue;
		}
		if (r.status == 200)
			snprintf(w->ids[w->ok++], sizeof w->ids[0], "%s", tid);
		else if (r.status == 503)
			w->refused++;
		else
			w->other++;
		tl_http_response_free(&r);
	}
	return NULL;
}

START_TEST(test_sigterm_under_load)
{
	enum { N = 8 };
	Worker w[N];
	volatile bool stop = false;
	char err[DM_ERR];
	int status = -1, ok = 0;
	int64_t t0;

	set("shutdown_grace_ms", "20000");
	start();
	memset(w, 0, sizeof w);
	for (int i = 0; i < N; i++) {
		w[i].index = i;
		w[i].stop = &stop;
		ck_assert_int_eq(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
	}
	tl_sleep_ms(700);
	t0 = tl_now_ms();
	ck_assert_int_eq(kill(dm_fx.daemon.pid, SIGTERM), 0);
	ck_assert_msg(tl_daemon_wait_exit(&dm_fx.daemon, 30000, &status, err, sizeof err), "%s", err);
	stop = true;
	for (int i = 0; i < N; i++)
		pthread_join(w[i].th, NULL);
	fprintf(stderr, "check_daemon: SIGTERM: exited in %lld ms\n", (long long)(tl_now_ms() - t0));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
	ck_assert_msg(wait_for_line(dm_fx.daemon.log_path, "refusing new transactions"), "no shutdown line");
	for (int i = 0; i < N; i++) {
		ck_assert_msg(w[i].other == 0, "worker %d got %d unexpected answers", i, w[i].other);
		for (int k = 0; k < w[i].ok; k++) {
			char sql[128];
			snprintf(sql, sizeof sql, "SELECT count(*) FROM transfers WHERE id = '%s'", w[i].ids[k]);
			ck_assert_msg(scalar("bank_a", sql) == 1 && scalar("bank_b", sql) == 1,
				      "%s answered 200 but is not on both sides", w[i].ids[k]);
			ok++;
		}
	}
	ck_assert_msg(ok > 0, "no transaction committed before the signal");
	ck_assert_int_eq(scalar("bank_a", "SELECT count(*) FROM pg_prepared_xacts"), 0);
	ck_assert_int_eq(scalar("bank_b", "SELECT count(*) FROM pg_prepared_xacts"), 0);
	/* Whatever was not answered 200 is on neither side or on both: atomic. */
	{
		int64_t a = scalar("bank_a", "SELECT count(*) FROM transfers WHERE id LIKE 'w%'");
		int64_t b = scalar("bank_b", "SELECT count(*) FROM transfers WHERE id LIKE 'w%'");
		ck_assert_msg(a == b, "bank_a has %lld transfers, bank_b %lld", (long long)a, (long long)b);
	}
}
END_TEST

/* ------------------------------------------------------------------ SIGHUP */

START_TEST(test_sighup)
{
	char logfile[TL_PATH_MAX + 32], rotated[TL_PATH_MAX + 48], tokens[TL_PATH_MAX + 32];
	char err[DM_ERR];
	TlHttpResponse r;
	FILE *f;

	snprintf(logfile, sizeof logfile, "%s/hup-%d.log", dm_fx.env.tmpdir, (int)getpid());
	snprintf(rotated, sizeof rotated, "%s.1", logfile);
	snprintf(tokens, sizeof tokens, "%s/hup-tokens-%d", dm_fx.env.tmpdir, (int)getpid());
	f = fopen(tokens, "w");
	ck_assert_ptr_nonnull(f);
	fputs("old-token\n", f);
	fclose(f);
	chmod(tokens, 0600);
	set("log_file", logfile);
	set("auth_token_file", tokens);
	set("sweep_grace_ms", "5000");
	start();
	ck_assert_msg(wait_for_line(logfile, "listening on"), "nothing in log_file");

	/* logrotate: move the file away, SIGHUP, the daemon writes a new one. */
	ck_assert_int_eq(rename(logfile, rotated), 0);
	f = fopen(tokens, "w");
	ck_assert_ptr_nonnull(f);
	fputs("new-token\n", f);
	fclose(f);
	set("sweep_grace_ms", "7000");
	set("log_level", "debug");
	set("listen", "127.0.0.1:1"); /* needs a restart: refused */
	ck_assert_int_eq(kill(dm_fx.daemon.pid, SIGHUP), 0);
	ck_assert_msg(wait_for_line(logfile, "SIGHUP: log reopened"), "no new log file after SIGHUP");
	ck_assert_msg(wait_for_line(logfile, "reload: sweep_grace_ms 5000 -> 7000"), "sweep_grace_ms not reloaded");
	ck_assert_msg(wait_for_line(logfile, "reload: log_level changed"), "log_level not reloaded");
	ck_assert_msg(wait_for_line(logfile, "reload: listen changed"), "no warning for listen");
	ck_assert_msg(wait_for_line(logfile, "auth: 1 bearer token(s)"), "tokens not reloaded");
	ck_assert_msg(!file_has(rotated, "SIGHUP: log reopened"), "the old file got lines after the reopen");

	/* The new token works, the old one does not; the daemon still listens
	 * where it did. */
	ck_assert(tl_http_request_h(dm_fx.daemon.port, "POST", "/v1/sweep", "Authorization: Bearer new-token\r\n", "",
				    30000, &r, err, sizeof err));
	ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
	tl_http_response_free(&r);
	ck_assert(tl_http_request_h(dm_fx.daemon.port, "POST", "/v1/sweep", "Authorization: Bearer old-token\r\n", "",
				    30000, &r, err, sizeof err));
	ck_assert_int_eq(r.status, 401);
	tl_http_response_free(&r);

	/* A broken file on SIGHUP: the running configuration stays. */
	set("max_in_flight", "not-a-number");
	ck_assert_int_eq(kill(dm_fx.daemon.pid, SIGHUP), 0);
	ck_assert_msg(wait_for_line(logfile, "keeping the running configuration"), "no error for a broken file");
	ck_assert(tl_http_request(dm_fx.daemon.port, "GET", "/healthz", NULL, 10000, &r, err, sizeof err));
	ck_assert_int_eq(r.status, 200);
	tl_http_response_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- JSON logs */

START_TEST(test_json_logs)
{
	char logfile[TL_PATH_MAX + 32], line[8192], err[DM_ERR];
	TlHttpResponse r;
	FILE *f;
	int lines = 0, txn_lines = 0;
	const char *body = "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1/0\"}],\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}";

	snprintf(logfile, sizeof logfile, "%s/json-%d.log", dm_fx.env.tmpdir, (int)getpid());
	set("log_file", logfile);
	set("log_format", "json");
	set("log_level", "debug");
	start();
	ck_assert(tl_http_request(dm_fx.daemon.port, "POST", "/v1/transactions", body, 30000, &r, err, sizeof err));
	ck_assert_int_eq(r.status, 409);
	tl_http_response_free(&r);
	ck_assert(wait_for_line(logfile, "\"txn\":"));
	f = fopen(logfile, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof line, f)) {
		json_error_t je;
		json_t *o = json_loads(line, 0, &je);
		ck_assert_msg(o != NULL, "not JSON: %s (%s)", line, je.text);
		ck_assert_msg(json_is_string(json_object_get(o, "ts")) && json_is_string(json_object_get(o, "level")) &&
				      json_is_string(json_object_get(o, "msg")),
			      "missing ts/level/msg: %s", line);
		if (json_object_get(o, "txn") != NULL) {
			ck_assert_msg(strlen(json_string_value(json_object_get(o, "txn"))) == 16, "%s", line);
			txn_lines++;
		}
		json_decref(o);
		lines++;
	}
	fclose(f);
	ck_assert_msg(lines > 3 && txn_lines > 0, "%d lines, %d about a transaction", lines, txn_lines);
}
END_TEST

/* ---------------------------------------------------------- ack = decided */

/* The reply comes once the decision is durable, marked phase2 pending;
 * phase 2 finishes after it (both sides get the row, nothing stays
 * prepared), and a kill -9 right after such replies loses nothing. */
START_TEST(test_ack_decided)
{
	char err[DM_ERR], body[512], sql[160];
	TlHttpResponse r;
	int pending = 0;

	set("ack", "decided");
	start();
	for (int i = 0; i < 20; i++) {
		snprintf(body, sizeof body,
			 "{\"branches\":{\"bank_a\":[{\"sql\":\"INSERT INTO transfers VALUES ('ack-%d-%d')\"}],"
			 "\"bank_b\":[{\"sql\":\"INSERT INTO transfers VALUES ('ack-%d-%d')\"}]}}",
			 (int)getpid(), i, (int)getpid(), i);
		ck_assert(tl_http_request(dm_fx.daemon.port, "POST", "/v1/transactions", body, 30000, &r, err, sizeof err));
		ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
		ck_assert_str_eq(tl_json_str(r.json, "outcome"), "committed");
		if (tl_json_str(r.json, "phase2") && strcmp(tl_json_str(r.json, "phase2"), "pending") == 0)
			pending++;
		tl_http_response_free(&r);
	}
	ck_assert_msg(pending == 20, "only %d of 20 replies were sent before phase 2", pending);
	/* Killed at once: the decisions are in the log; the restart finishes them. */
	ck_assert(tl_daemon_restart(&dm_fx.daemon, NULL, err, sizeof err));
	snprintf(sql, sizeof sql, "SELECT count(*) FROM transfers WHERE id LIKE 'ack-%d-%%'", (int)getpid());
	for (int i = 0; i < 100 && (scalar("bank_a", sql) != 20 || scalar("bank_b", sql) != 20); i++)
		tl_sleep_ms(100);
	ck_assert_int_eq(scalar("bank_a", sql), 20);
	ck_assert_int_eq(scalar("bank_b", sql), 20);
	for (int i = 0; i < 100 && scalar("bank_a", "SELECT count(*) FROM pg_prepared_xacts") +
					    scalar("bank_b", "SELECT count(*) FROM pg_prepared_xacts") > 0; i++)
		tl_sleep_ms(100);
	ck_assert_int_eq(scalar("bank_a", "SELECT count(*) FROM pg_prepared_xacts"), 0);
	ck_assert_int_eq(scalar("bank_b", "SELECT count(*) FROM pg_prepared_xacts"), 0);
}
END_TEST

/* ------------------------------------------------------------- fixtures */

TL_FIXTURE_GLUE(dm_fx)
TL_FIXTURE_SETUP(dm_fx, sigterm_under_load)
TL_FIXTURE_SETUP(dm_fx, sighup)
TL_FIXTURE_SETUP(dm_fx, json_logs)
TL_FIXTURE_SETUP(dm_fx, ack_decided)

int main(void)
{
	Suite *s = suite_create("daemon");

	TL_FIXTURE_CASE(dm_fx, s, sigterm_under_load);
	TL_FIXTURE_CASE(dm_fx, s, sighup);
	TL_FIXTURE_CASE(dm_fx, s, json_logs);
	TL_FIXTURE_CASE(dm_fx, s, ack_decided);
	return tl_fixture_main(&dm_fx, s);
}
