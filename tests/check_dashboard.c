/*
 * check_dashboard: twopcd's dashboard, in a real browser, against real
 * state.
 *
 * Three real PostgreSQL participants, a real twopcd, and headless Chromium
 * (Debian's chromium, driven over the DevTools pipe by tests/chromium.c)
 * showing the page twopcd serves at /, polling in real time. Background
 * threads run transfers through the HTTP API; some abort on purpose (an
 * expect_rows guard that cannot hold, a division by zero). The test also
 * prepares, directly in PostgreSQL, one transaction with twopcd's GID
 * format whose id its log has never seen (so: presumed abort, the sweeper
 * would roll it back) and one foreign transaction. Then it reads the page's
 * DOM (the data-testid cells) and checks that it shows what is true: every
 * participant reachable, the in-flight count within what the load can
 * produce, both prepared transactions with the right owner and sweeper
 * action, only aborts the load really got and with their real reasons,
 * throughput near what the load measured itself. It sweeps and sees the
 * presumed-abort row go; it stops a participant and sees the page turn
 * degraded. Nothing may go wrong on the page itself: no exception, no CSP
 * violation, no request anywhere but twopcd.
 *
 * The screenshot goes into the test's temp dir and tests/dashboard.png in
 * the build dir; with TWOPC_SAVE_SCREENSHOT=1 the test lets the charts fill
 * for DB_SAVE_HISTORY_S first and also writes docs/dashboard.png, the one
 * README.md shows.
 *
 * A second case runs twopcd with bearer tokens: the page and its files load
 * without a token (byte for byte the files in coordinator/dashboard/, with
 * an ETag and 304), the page asks for a token, says so when one is refused,
 * and works with the right one, also after a reload.
 *
 * Without chromium the test fails (it does not skip): scripts/install-deps
 * installs it.
 */
#include "chromium.h"
#include "testlib.h"
#include "tlfixture.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DB_TIMEOUT_S      300
#define DB_ERR            4096
#define DB_THREADS        3
#define DB_ACCOUNTS       20
#define DB_LOAD_PAUSE_MS  10
#define DB_WAIT_MS        30000
#define DB_SAVE_HISTORY_S 50
#define DB_WIDTH          1280
#define DB_HEIGHT         1000
/* Prepared directly in PostgreSQL: one with our GID format (coordinator t1,
 * participant index 0 = bank_a) and an id the log never saw; one foreign. */
#define DB_OURS_TXN    "00000000c0ffee01"
#define DB_OURS_GID    "twopc_t1_" DB_OURS_TXN "_0"
#define DB_FOREIGN_GID "xa_billing_4711"
#define DB_TOKEN       "dashboard-token-7f3a"

static const char *const db_parts[] = {"bank_a", "bank_b", "bank_c", NULL};
#define DB_NPARTS 3

/* 20 accounts (DB_ACCOUNTS) per participant; notes for the prepared ones. */
#define DB_SCHEMA                                                                                                      \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"                                         \
	"INSERT INTO accounts SELECT g, 1000000 FROM generate_series(1, 20) g;"                                        \
	"CREATE TABLE notes (id serial PRIMARY KEY, note text NOT NULL);"
_Static_assert(DB_ACCOUNTS == 20, "DB_SCHEMA makes 20 accounts");

static TlFixture db_fx = {
    .program = "check_dashboard",
    .clusters = db_parts,
    .schema = DB_SCHEMA,
    .timeout_s = DB_TIMEOUT_S,
};

/* ------------------------------------------------------------- the load */

/* An abort the load got back from twopcd. */
typedef struct DbAbort {
	char id[24];
	char reason[48];      /* the problem type's slug */
	char participant[32]; /* "" if none */
} DbAbort;

typedef struct DbLoad {
	int port;
	atomic_bool stop;
	pthread_mutex_t mu;
	int64_t committed, other, transport_errors;
	DbAbort *aborts;
	size_t naborts, cap;
	char last_error[512];
} DbLoad;

typedef struct DbWorker {
	DbLoad *load;
	pthread_t thread;
	int n;
} DbWorker;

static void db_record_abort(DbLoad *l, const TlHttpResponse *r)
{
	const char *type = tl_json_str(r->json, "type"), *id = tl_json_str(r->json, "id");
	const char *part = tl_json_str(r->json, "participant");
	DbAbort a;

	memset(&a, 0, sizeof a);
	snprintf(a.id, sizeof a.id, "%s", id);
	snprintf(a.reason, sizeof a.reason, "%s", strrchr(type, '/') ? strrchr(type, '/') + 1 : type);
	snprintf(a.participant, sizeof a.participant, "%s", part ? part : "");
	if (l->naborts == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		DbAbort *na = realloc(l->aborts, cap * sizeof *na);
		if (na == NULL)
			return;
		l->aborts = na;
		l->cap = cap;
	}
	l->aborts[l->naborts++] = a;
}

/* Transfers around the ring bank_a -> bank_b -> bank_c -> bank_a; every 7th
 * asks for more than any account holds (expect-rows on the source), every
 * 19th divides by zero on the target (statement-failed, 22012). */
static void *db_worker_main(void *arg)
{
	DbWorker *w = arg;
	DbLoad *l = w->load;
	unsigned seed = 7919u * (unsigned)(w->n + 1);

	for (int i = 0; !atomic_load(&l->stop); i++) {
		const char *from = db_parts[(w->n + i) % DB_NPARTS], *to = db_parts[(w->n + i + 1) % DB_NPARTS];
		int amount = i % 7 == 3 ? 1000000000 : 1 + (int)(rand_r(&seed) % 50);
		int a1 = 1 + (int)(rand_r(&seed) % DB_ACCOUNTS), a2 = 1 + (int)(rand_r(&seed) % DB_ACCOUNTS);
		char body[1024], err[512];
		TlHttpResponse r;

		snprintf(
		    body, sizeof body,
		    "{\"branches\":{\"%s\":[{\"sql\":\"UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND "
		    "balance >= $1\",\"params\":[%d,%d],\"expect_rows\":1}],"
		    "\"%s\":[{\"sql\":\"UPDATE accounts SET balance = balance + $1 WHERE id = $2\",\"params\":[%d,%d],"
		    "\"expect_rows\":1}%s]},\"timeout_ms\":5000}",
		    from, amount, a1, to, amount, a2, i % 19 == 11 ? ",{\"sql\":\"SELECT 1/0\"}" : "");
		if (!tl_http_request(l->port, "POST", "/v1/transactions", body, 20000, &r, err, sizeof err)) {
			pthread_mutex_lock(&l->mu);
			l->transport_errors++;
			snprintf(l->last_error, sizeof l->last_error, "%s", err);
			pthread_mutex_unlock(&l->mu);
			tl_sleep_ms(100);
			continue;
		}
		pthread_mutex_lock(&l->mu);
		if (r.status == 200) {
			l->committed++;
		} else if (r.json != NULL && tl_json_str(r.json, "id") != NULL && tl_json_str(r.json, "type") != NULL) {
			db_record_abort(l, &r);
		} else {
			l->other++;
			snprintf(l->last_error, sizeof l->last_error, "%d %s", r.status, r.body);
		}
		pthread_mutex_unlock(&l->mu);
		tl_http_response_free(&r);
		tl_sleep_ms(DB_LOAD_PAUSE_MS);
	}
	return NULL;
}

static void db_load_start(DbLoad *l, DbWorker *w, int port)
{
	memset(l, 0, sizeof *l);
	l->port = port;
	atomic_init(&l->stop, false);
	pthread_mutex_init(&l->mu, NULL);
	for (int i = 0; i < DB_THREADS; i++) {
		w[i].load = l;
		w[i].n = i;
		ck_assert_int_eq(pthread_create(&w[i].thread, NULL, db_worker_main, &w[i]), 0);
	}
}

static void db_load_stop(DbLoad *l, DbWorker *w)
{
	atomic_store(&l->stop, true);
	for (int i = 0; i < DB_THREADS; i++)
		pthread_join(w[i].thread, NULL);
}

static int64_t db_committed(DbLoad *l)
{
	int64_t n;

	pthread_mutex_lock(&l->mu);
	n = l->committed;
	pthread_mutex_unlock(&l->mu);
	return n;
}

/* Whether the load got abort ID, with REASON and PARTICIPANT. twopcd lists
 * an abort just before it answers, so the newest one on the page may reach
 * the load thread a moment later: it gets a second. */
static bool db_load_saw(DbLoad *l, const char *id, const char *reason, const char *participant, char *why,
                        size_t whylen)
{
	bool found = false;

	for (int tries = 0; tries < 10; tries++) {
		pthread_mutex_lock(&l->mu);
		for (size_t i = 0; i < l->naborts && !found; i++)
			found = strcmp(l->aborts[i].id, id) == 0;
		pthread_mutex_unlock(&l->mu);
		if (found)
			break;
		tl_sleep_ms(100);
	}
	found = false;
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < l->naborts && !found; i++) {
		const DbAbort *a = &l->aborts[i];
		if (strcmp(a->id, id) != 0)
			continue;
		found = true;
		if (strcmp(a->reason, reason) != 0 || strcmp(a->participant, participant) != 0)
			snprintf(why, whylen, "abort %s: the page says %s on '%s', the client got %s on '%s'", id,
			         reason, participant, a->reason, a->participant);
		else
			why[0] = '\0';
	}
	pthread_mutex_unlock(&l->mu);
	if (!found)
		snprintf(why, whylen, "abort %s (%s on '%s') is not one the load got", id, reason, participant);
	return found && why[0] == '\0';
}

/* ------------------------------------------------------------- the page */

/* Everything the test reads off the page, as JSON: every data-testid
 * element's text (cells), and each kind of table row as a list of objects
 * holding the row's data-* attributes and its cells' texts. */
static const char db_snapshot_js[] =
    "(() => {"
    "  const text = (e) => e.textContent.trim();"
    "  const cells = {};"
    "  for (const e of document.querySelectorAll('[data-testid]')) cells[e.dataset.testid] = text(e);"
    "  const rows = (id) => [...document.querySelectorAll(`tr[data-testid=\"${id}\"]`)].map((r) => {"
    "    const o = Object.assign({}, r.dataset);"
    "    for (const c of r.querySelectorAll('[data-testid]')) o[c.dataset.testid] = text(c);"
    "    return o;"
    "  });"
    "  return {"
    "    polls: Number(document.body.dataset.polls),"
    "    auth_form: !document.getElementById('auth').hidden,"
    "    forget_button: !document.getElementById('forget-token').hidden,"
    "    throughput_lines: document.querySelectorAll('#throughput-plot polyline').length,"
    "    latency_lines: document.querySelectorAll('#latency-plot polyline').length,"
    "    cells,"
    "    participants: rows('participant-row'),"
    "    in_doubt: rows('in-doubt-row'),"
    "    in_doubt_unreachable: rows('in-doubt-unreachable'),"
    "    aborts: rows('abort-row'),"
    "  };"
    "})()";

static json_t *db_snapshot(Chromium *c)
{
	char err[DB_ERR];
	json_t *s;

	if (!cr_eval(c, db_snapshot_js, 10000, &s, err, sizeof err))
		ck_abort_msg("reading the page: %s", err);
	return s;
}

static const char *db_cell(const json_t *snap, const char *testid)
{
	return json_string_value(json_object_get(json_object_get(snap, "cells"), testid));
}

static const char *db_field(const json_t *row, const char *key)
{
	return json_string_value(json_object_get(row, key));
}

/* The row of LIST (in_doubt, aborts, ...) whose KEY is VALUE, or NULL. */
static json_t *db_row(const json_t *snap, const char *list, const char *key, const char *value)
{
	size_t i;
	json_t *row;

	json_array_foreach(json_object_get(snap, list), i, row)
	{
		const char *v = db_field(row, key);
		if (v != NULL && strcmp(v, value) == 0)
			return row;
	}
	return NULL;
}

static bool db_streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* Whether cell TESTID exists and its text holds PART. */
static bool db_cell_has(const json_t *snap, const char *testid, const char *part)
{
	const char *v = json_string_value(json_object_get(json_object_get(snap, "cells"), testid));
	return v != NULL && strstr(v, part) != NULL;
}

/* A cell's text as a number (the unit, if any, after it). */
static bool db_number(const char *text, double *out)
{
	char *end;

	if (text == NULL)
		return false;
	*out = strtod(text, &end);
	return end != text;
}

/* The snapshot on one line, cut, for failure messages. */
static const char *db_dump(const json_t *snap, char *buf, size_t len)
{
	char *s = json_dumps(snap, JSON_COMPACT);

	snprintf(buf, len, "%s", s ? s : "(null)");
	free(s);
	return buf;
}

typedef bool (*DbReady)(const json_t *snap, void *arg, char *why, size_t whylen);

/* Reads the page every 300 ms until READY says it shows what is wanted;
 * fails after TIMEOUT_MS with READY's last reason and the page's state. */
static json_t *db_wait(Chromium *c, DbReady ready, void *arg, int timeout_ms, const char *what)
{
	int64_t until = tl_now_ms() + timeout_ms;
	char why[1024] = "", dump[6000];

	for (;;) {
		json_t *s = db_snapshot(c);

		if (ready(s, arg, why, sizeof why))
			return s;
		if (tl_now_ms() > until)
			ck_abort_msg("the page did not show %s within %d ms: %s\npage: %s\nproblems on the page: %s",
			             what, timeout_ms, why, db_dump(s, dump, sizeof dump), cr_problems(c));
		json_decref(s);
		tl_sleep_ms(300);
	}
}

static void db_expect_no_problems(Chromium *c)
{
	ck_assert_msg(cr_problems(c)[0] == '\0', "things went wrong on the page:\n%s", cr_problems(c));
}

static Chromium *db_browser(const char *url)
{
	char bin[TL_PATH_MAX], dir[TL_PATH_MAX + 32], err[DB_ERR];
	Chromium *c;

	if (cr_find(bin, sizeof bin) == NULL)
		ck_abort_msg("chromium is not installed (or not executable at $TWOPC_CHROMIUM); this test needs "
		             "Debian's chromium package: run scripts/install-deps");
	if (!tl_fmt(dir, sizeof dir, "%s/browser-%d", db_fx.env.tmpdir, (int)getpid()))
		ck_abort_msg("temp dir path too long");
	ck_assert_msg(mkdir(dir, 0700) == 0, "mkdir %s", dir);
	if (!cr_start(bin, dir, DB_WIDTH, DB_HEIGHT, &c, err, sizeof err)) {
		tl_print_file_tail(strcat(dir, "/chromium.log"), 30);
		ck_abort_msg("starting %s: %s", bin, err);
	}
	if (!cr_open(c, url, 30000, err, sizeof err)) {
		cr_stop(c);
		ck_abort_msg("opening %s: %s", url, err);
	}
	return c;
}

/* Saves the page to the temp dir and to tests/NAME in the build dir; with
 * COPY_TO (not NULL), there too. */
static void db_screenshot(Chromium *c, const char *name, const char *copy_to)
{
	char path[TL_PATH_MAX + 64], err[DB_ERR];
	const char *dirs[] = {db_fx.env.tmpdir, NULL};
	char build_tests[TL_PATH_MAX + 16];

	if (!tl_fmt(build_tests, sizeof build_tests, "%s/tests", db_fx.env.builddir))
		ck_abort_msg("build dir path too long");
	dirs[1] = build_tests;
	for (int i = 0; i < 2; i++) {
		if (!tl_fmt(path, sizeof path, "%s/%s", dirs[i], name))
			ck_abort_msg("path too long");
		if (!cr_screenshot(c, path, err, sizeof err))
			ck_abort_msg("screenshot: %s", err);
		fprintf(stderr, "check_dashboard: screenshot %s\n", path);
	}
	if (copy_to != NULL) {
		if (!cr_screenshot(c, copy_to, err, sizeof err))
			ck_abort_msg("screenshot: %s", err);
		fprintf(stderr, "check_dashboard: screenshot %s\n", copy_to);
	}
}

/* ------------------------------------------------------ live: the checks */

typedef struct DbLive {
	DbLoad *load;
	int min_polls;
} DbLive;

/* Healthy, under load, both prepared transactions visible, aborts of both
 * kinds, a throughput measured. */
static bool db_ready_live(const json_t *s, void *arg, char *why, size_t n)
{
	DbLive *lv = arg;
	const json_t *ours = db_row(s, "in_doubt", "gid", DB_OURS_GID);
	double v;

	if (json_integer_value(json_object_get(s, "polls")) < lv->min_polls)
		return snprintf(why, n, "fewer than %d polls yet", lv->min_polls), false;
	if (!db_streq(db_cell(s, "status"), "ok"))
		return snprintf(why, n, "status is not ok"), false;
	if (ours == NULL || db_row(s, "in_doubt", "gid", DB_FOREIGN_GID) == NULL)
		return snprintf(why, n, "the prepared transactions are not both shown"), false;
	/* Younger than sweep_grace_ms it is "wait"; then "rollback". */
	if (!db_streq(db_field(ours, "in-doubt-action"), "rollback"))
		return snprintf(why, n, "our prepared transaction's action is not rollback yet"), false;
	if (db_row(s, "aborts", "abort-reason", "expect-rows") == NULL ||
	    db_row(s, "aborts", "abort-reason", "statement-failed") == NULL)
		return snprintf(why, n, "no expect-rows and statement-failed abort rows yet"), false;
	if (!db_number(db_cell(s, "throughput-committed"), &v) || v <= 0)
		return snprintf(why, n, "no committed throughput yet"), false;
	return true;
}

static void db_check_live(const json_t *s, DbLoad *load, double client_rate)
{
	char dump[6000], why[512];
	const json_t *ours = db_row(s, "in_doubt", "gid", DB_OURS_GID);
	const json_t *foreign = db_row(s, "in_doubt", "gid", DB_FOREIGN_GID);
	const json_t *row;
	double v, in_flight;
	size_t i, nexpect = 0, ndiv = 0;

	db_dump(s, dump, sizeof dump);
	/* Header: status and the in-flight count. */
	ck_assert_msg(db_streq(db_cell(s, "status"), "ok"), "status: %s", dump);
	ck_assert_msg(db_number(db_cell(s, "in-flight"), &in_flight) && in_flight >= 0 && in_flight <= DB_THREADS,
	              "in flight is not between 0 and the %d load threads: %s", DB_THREADS, dump);
	/* Participants: all three, reachable, their pools. */
	ck_assert_msg(json_array_size(json_object_get(s, "participants")) == DB_NPARTS, "participants: %s", dump);
	for (int p = 0; p < DB_NPARTS; p++) {
		char id[96];
		double open, busy;

		snprintf(id, sizeof id, "participant-%s-reachable", db_parts[p]);
		ck_assert_msg(db_streq(db_cell(s, id), "yes"), "%s is not yes: %s", id, dump);
		snprintf(id, sizeof id, "participant-%s-pool-size", db_parts[p]);
		ck_assert_msg(db_streq(db_cell(s, id), "8"), "%s is not 8: %s", id, dump);
		snprintf(id, sizeof id, "participant-%s-open", db_parts[p]);
		ck_assert_msg(db_number(db_cell(s, id), &open) && open >= 0 && open <= 8, "%s: %s", id, dump);
		snprintf(id, sizeof id, "participant-%s-busy", db_parts[p]);
		ck_assert_msg(db_number(db_cell(s, id), &busy) && busy >= 0 && busy <= open, "%s: %s", id, dump);
		snprintf(id, sizeof id, "participant-%s-error", db_parts[p]);
		ck_assert_msg(db_streq(db_cell(s, id), ""), "%s is not empty: %s", id, dump);
	}
	ck_assert_msg(db_number(db_cell(s, "participant-bank_a-prepared"), &v) && v >= 1, "bank_a prepared: %s", dump);
	ck_assert_msg(db_number(db_cell(s, "participant-bank_b-prepared"), &v) && v >= 1, "bank_b prepared: %s", dump);

	/* In doubt: ours, presumed abort, to be rolled back... */
	ck_assert_msg(db_streq(db_field(ours, "participant"), "bank_a"), "ours: %s", dump);
	ck_assert_msg(db_streq(db_field(ours, "in-doubt-ours"), "yes"), "ours: %s", dump);
	ck_assert_msg(db_streq(db_field(ours, "in-doubt-txn"), DB_OURS_TXN), "ours: %s", dump);
	ck_assert_msg(db_streq(db_field(ours, "in-doubt-decision"), "presumed_abort"), "ours: %s", dump);
	ck_assert_msg(db_streq(db_field(ours, "in-doubt-action"), "rollback"), "ours: %s", dump);
	ck_assert_msg(db_streq(db_field(ours, "in-doubt-database"), "bank"), "ours: %s", dump);
	/* ... and the foreign one, never touched. */
	ck_assert_msg(db_streq(db_field(foreign, "participant"), "bank_b"), "foreign: %s", dump);
	ck_assert_msg(db_streq(db_field(foreign, "in-doubt-ours"), "no"), "foreign: %s", dump);
	ck_assert_msg(db_streq(db_field(foreign, "in-doubt-txn"), "–"), "foreign: %s", dump);
	ck_assert_msg(db_streq(db_field(foreign, "in-doubt-decision"), "–"), "foreign: %s", dump);
	ck_assert_msg(db_streq(db_field(foreign, "in-doubt-action"), "none"), "foreign: %s", dump);

	/* Recent aborts: each one shown is one the load got, with its reason
	 * and participant; both kinds the load causes are there. */
	json_array_foreach(json_object_get(s, "aborts"), i, row)
	{
		const char *id = db_field(row, "id"), *reason = db_field(row, "abort-reason");
		const char *part = db_field(row, "abort-participant");

		ck_assert_msg(id != NULL && reason != NULL && part != NULL, "abort row: %s", dump);
		ck_assert_msg(db_streq(db_field(row, "abort-id"), id), "abort row id: %s", dump);
		ck_assert_msg(db_load_saw(load, id, reason, db_streq(part, "–") ? "" : part, why, sizeof why), "%s",
		              why);
		if (db_streq(reason, "expect-rows")) {
			nexpect++;
			ck_assert_msg(db_streq(db_field(row, "abort-sqlstate"), "–"), "expect-rows row: %s", dump);
		}
		if (db_streq(reason, "statement-failed") && db_streq(db_field(row, "abort-sqlstate"), "22012")) {
			ndiv++;
			ck_assert_msg(strstr(db_field(row, "abort-message"), "division by zero") != NULL,
			              "22012 row: %s", dump);
		}
	}
	ck_assert_msg(nexpect > 0 && ndiv > 0, "expect-rows rows %zu, division-by-zero rows %zu: %s", nexpect, ndiv,
	              dump);
	ck_assert_msg(json_array_size(json_object_get(s, "aborts")) <= 100, "more than 100 abort rows");

	/* Throughput and latency: measured, drawn, and near what the load saw. */
	ck_assert_msg(db_number(db_cell(s, "throughput-committed"), &v) && v > 0, "throughput: %s", dump);
	ck_assert_msg(v > client_rate / 4 && v < client_rate * 4,
	              "the page shows %.1f committed/s, the load measured %.1f/s: %s", v, client_rate, dump);
	ck_assert_msg(db_number(db_cell(s, "throughput-aborted"), &v) && v >= 0, "aborted/s: %s", dump);
	ck_assert_msg(db_number(db_cell(s, "latency-p50"), &v) && v > 0, "p50: %s", dump);
	{
		double p99;
		ck_assert_msg(db_number(db_cell(s, "latency-p99"), &p99) && p99 >= v, "p99 below p50: %s", dump);
	}
	ck_assert_msg(db_number(db_cell(s, "latency-mean"), &v) && v > 0, "mean: %s", dump);
	ck_assert_msg(json_integer_value(json_object_get(s, "throughput_lines")) >= 2, "no throughput lines: %s", dump);
	ck_assert_msg(json_integer_value(json_object_get(s, "latency_lines")) >= 2, "no latency lines: %s", dump);
}

typedef struct DbAfter {
	int64_t polls; /* the page must have polled past this */
} DbAfter;

/* After the sweep: ours gone, the foreign one still there. */
static bool db_ready_swept(const json_t *s, void *arg, char *why, size_t n)
{
	DbAfter *a = arg;

	if (json_integer_value(json_object_get(s, "polls")) <= a->polls)
		return snprintf(why, n, "no poll since the sweep yet"), false;
	if (db_row(s, "in_doubt", "gid", DB_OURS_GID) != NULL)
		return snprintf(why, n, "%s still shown", DB_OURS_GID), false;
	if (db_row(s, "in_doubt", "gid", DB_FOREIGN_GID) == NULL)
		return snprintf(why, n, "%s no longer shown", DB_FOREIGN_GID), false;
	return true;
}

/* bank_c stopped: degraded, bank_c unreachable everywhere it shows. */
static bool db_ready_degraded(const json_t *s, void *arg, char *why, size_t n)
{
	if (!db_streq(db_cell(s, "status"), "degraded"))
		return snprintf(why, n, "status is not degraded"), false;
	if (!db_streq(db_cell(s, "participant-bank_c-reachable"), "no"))
		return snprintf(why, n, "bank_c is not shown unreachable"), false;
	if (db_row(s, "in_doubt_unreachable", "participant", "bank_c") == NULL)
		return snprintf(why, n, "the in-doubt table does not say bank_c is unreachable"), false;
	if (db_row(s, "aborts", "abort-reason", "participant-unavailable") == NULL)
		return snprintf(why, n, "no participant-unavailable abort yet"), false;
	return true;
}

static void db_check_degraded(const json_t *s, DbLoad *load)
{
	char dump[6000], why[512];
	const json_t *row;
	size_t i;

	db_dump(s, dump, sizeof dump);
	ck_assert_msg(db_streq(db_cell(s, "participant-bank_a-reachable"), "yes"), "bank_a: %s", dump);
	ck_assert_msg(db_streq(db_cell(s, "participant-bank_b-reachable"), "yes"), "bank_b: %s", dump);
	ck_assert_msg(db_cell(s, "participant-bank_c-error") != NULL && db_cell(s, "participant-bank_c-error")[0],
	              "no error shown for bank_c: %s", dump);
	json_array_foreach(json_object_get(s, "aborts"), i, row)
	{
		const char *part = db_field(row, "abort-participant");
		ck_assert_msg(db_load_saw(load, db_field(row, "id"), db_field(row, "abort-reason"),
		                          db_streq(part, "–") ? "" : part, why, sizeof why),
		              "%s", why);
	}
	row = db_row(s, "aborts", "abort-reason", "participant-unavailable");
	ck_assert_msg(db_streq(db_field(row, "abort-participant"), "bank_c"), "participant-unavailable row: %s", dump);
}

/* ------------------------------------------------------------ the tests */

static void db_start_daemon(const char *const *kv)
{
	tl_fixture_start(&db_fx, kv, NULL);
}

static void db_prepare(const char *part, const char *gid)
{
	char sql[256], err[DB_ERR];

	snprintf(sql, sizeof sql, "BEGIN; INSERT INTO notes (note) VALUES ('%s'); PREPARE TRANSACTION '%s'", gid, gid);
	if (!tl_pg_exec(tl_env_cluster(&db_fx.env, part), sql, err, sizeof err))
		ck_abort_msg("%s: %s", part, err);
}

static bool db_prepared(const char *part, const char *gid)
{
	char err[DB_ERR];
	bool yes;

	if (!tl_pg_gid_prepared(tl_env_cluster(&db_fx.env, part), gid, &yes, err, sizeof err))
		ck_abort_msg("%s: %s", part, err);
	return yes;
}

/* The whole page under load: see the top of the file. */
START_TEST(test_live)
{
	/* The sweeper sleeps (one sweep at start, before the test prepares
	 * anything) so that the presumed-abort transaction stays until the test
	 * sweeps; after 1 s it is old enough for the sweeper to act on. */
	static const char *const kv[] = {"sweep_interval_ms", "3600000", "sweep_grace_ms", "1000", NULL};
	const char *save = getenv("TWOPC_SAVE_SCREENSHOT");
	bool saving = save != NULL && strcmp(save, "1") == 0;
	char url[64], err[DB_ERR], docs_png[TL_PATH_MAX + 32];
	DbWorker workers[DB_THREADS];
	DbLoad load;
	DbLive live;
	DbAfter after;
	TlHttpResponse r;
	Chromium *c;
	json_t *s;
	int64_t t0, c0, t1, c1;

	db_start_daemon(kv);
	db_load_start(&load, workers, db_fx.daemon.port);
	db_prepare("bank_a", DB_OURS_GID);
	db_prepare("bank_b", DB_FOREIGN_GID);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", db_fx.daemon.port);
	c = db_browser(url);
	t0 = tl_now_ms();
	c0 = db_committed(&load);

	/* The page fills with the real state. */
	live.load = &load;
	live.min_polls = 3;
	s = db_wait(c, db_ready_live, &live, DB_WAIT_MS, "the live state");
	fprintf(stderr, "check_dashboard: the page showed the live state %lld ms after it opened\n",
	        (long long)(tl_now_ms() - t0));
	if (saving) {
		/* Charts with some history for the README. */
		json_decref(s);
		while (tl_now_ms() - t0 < DB_SAVE_HISTORY_S * 1000)
			tl_sleep_ms(500);
		s = db_wait(c, db_ready_live, &live, DB_WAIT_MS, "the live state");
	}
	t1 = tl_now_ms();
	c1 = db_committed(&load);
	db_check_live(s, &load, (double)(c1 - c0) * 1000.0 / (double)(t1 - t0));
	if (!tl_fmt(docs_png, sizeof docs_png, "%s/docs/dashboard.png",
	            getenv("TWOPC_TOP_SRCDIR") ? getenv("TWOPC_TOP_SRCDIR") : "."))
		ck_abort_msg("path too long");
	db_screenshot(c, "dashboard.png", saving ? docs_png : NULL);
	after.polls = json_integer_value(json_object_get(s, "polls"));
	json_decref(s);

	/* A sweep rolls ours back; the page follows, the foreign one stays. */
	t1 = tl_now_ms();
	ck_assert(tl_http_request(db_fx.daemon.port, "POST", "/v1/sweep", "", 30000, &r, err, sizeof err));
	ck_assert_msg(r.status == 200, "sweep: %d %s", r.status, r.body);
	tl_http_response_free(&r);
	ck_assert_msg(!db_prepared("bank_a", DB_OURS_GID), "the sweep left %s prepared", DB_OURS_GID);
	ck_assert_msg(db_prepared("bank_b", DB_FOREIGN_GID), "the sweep touched %s", DB_FOREIGN_GID);
	s = db_wait(c, db_ready_swept, &after, 10000, "the swept state");
	fprintf(stderr, "check_dashboard: the sweep showed %lld ms after it was asked for\n",
	        (long long)(tl_now_ms() - t1));
	json_decref(s);

	/* A participant goes down: degraded, and why. */
	t1 = tl_now_ms();
	if (!tl_cluster_stop(&db_fx.env, tl_env_cluster(&db_fx.env, "bank_c"), "immediate", err, sizeof err))
		ck_abort_msg("%s", err);
	s = db_wait(c, db_ready_degraded, NULL, DB_WAIT_MS, "bank_c down");
	fprintf(stderr, "check_dashboard: the page showed bank_c down %lld ms after it was stopped\n",
	        (long long)(tl_now_ms() - t1));
	db_check_degraded(s, &load);
	db_screenshot(c, "dashboard-degraded.png", NULL);
	json_decref(s);

	db_load_stop(&load, workers);
	fprintf(stderr,
	        "check_dashboard: load: %lld committed, %zu aborted; the page made %d requests, all to twopcd\n",
	        (long long)load.committed, load.naborts, cr_requests(c));
	ck_assert_msg(load.transport_errors == 0 && load.other == 0,
	              "the load got %lld transport errors and %lld other answers; last: %s",
	              (long long)load.transport_errors, (long long)load.other, load.last_error);
	db_expect_no_problems(c);
	cr_stop(c);
	free(load.aborts);
	if (!tl_cluster_start(&db_fx.env, tl_env_cluster(&db_fx.env, "bank_c"), err, sizeof err))
		ck_abort_msg("%s", err);
	if (!tl_pg_exec(tl_env_cluster(&db_fx.env, "bank_b"), "ROLLBACK PREPARED '" DB_FOREIGN_GID "'", err,
	                sizeof err))
		ck_abort_msg("%s", err);
}
END_TEST

/* GET PATH and compare the body with coordinator/dashboard/FILE. */
static void db_expect_file(const char *path, const char *file, const char *ctype, char *etag, size_t etaglen)
{
	char fpath[TL_PATH_MAX + 64], err[DB_ERR], v[512];
	const char *top = getenv("TWOPC_TOP_SRCDIR") ? getenv("TWOPC_TOP_SRCDIR") : ".";
	TlHttpResponse r;
	FILE *f;
	char *want;
	long n;

	ck_assert(tl_fmt(fpath, sizeof fpath, "%s/coordinator/dashboard/%s", top, file));
	f = fopen(fpath, "rb");
	ck_assert_msg(f != NULL, "%s", fpath);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	want = malloc((size_t)n + 1);
	ck_assert(want != NULL && fread(want, 1, (size_t)n, f) == (size_t)n);
	fclose(f);

	ck_assert(tl_http_request(db_fx.daemon.port, "GET", path, NULL, 10000, &r, err, sizeof err));
	ck_assert_msg(r.status == 200, "GET %s: %d %s", path, r.status, r.body);
	ck_assert_msg(db_streq(r.content_type, ctype), "GET %s: Content-Type %s", path, r.content_type);
	ck_assert_msg(r.body_len == (size_t)n && memcmp(r.body, want, (size_t)n) == 0,
	              "GET %s is not %s byte for byte (%zu bytes, the file has %ld)", path, fpath, r.body_len, n);
	ck_assert_msg(db_streq(tl_http_header(&r, "Cache-Control", v, sizeof v), "no-cache"), "GET %s: Cache-Control",
	              path);
	ck_assert_msg(tl_http_header(&r, "ETag", etag, etaglen) != NULL && strlen(etag) == 34 && etag[0] == '"' &&
	                  etag[33] == '"',
	              "GET %s: ETag %s", path, etag);
	tl_http_response_free(&r);
	free(want);
}

/* Bearer tokens: the files load without one; the page asks for one. */
START_TEST(test_auth)
{
	char tokens[TL_PATH_MAX + 32], url[64], err[DB_ERR], etag[64], etag2[64], v[512], hdr[256];
	const char *kv[] = {"auth_token_file", tokens, NULL};
	TlHttpResponse r;
	Chromium *c;
	json_t *s;
	FILE *f;

	snprintf(tokens, sizeof tokens, "%s/dashboard-tokens-%d", db_fx.env.tmpdir, (int)getpid());
	f = fopen(tokens, "w");
	ck_assert_ptr_nonnull(f);
	fputs(DB_TOKEN "\n", f);
	fclose(f);
	chmod(tokens, 0600);
	db_start_daemon(kv);

	/* The files: no token needed, exactly the sources, revalidated. */
	db_expect_file("/dashboard.js", "dashboard.js", "text/javascript", etag2, sizeof etag2);
	db_expect_file("/dashboard.css", "dashboard.css", "text/css", etag2, sizeof etag2);
	db_expect_file("/", "index.html", "text/html", etag, sizeof etag);
	ck_assert(tl_http_request(db_fx.daemon.port, "GET", "/", NULL, 10000, &r, err, sizeof err));
	ck_assert_msg(tl_http_header(&r, "Content-Security-Policy", v, sizeof v) && strstr(v, "default-src 'none'") &&
	                  strstr(v, "connect-src 'self'"),
	              "CSP: %s", v);
	tl_http_response_free(&r);
	snprintf(hdr, sizeof hdr, "If-None-Match: \"0123\", %s\r\n", etag);
	ck_assert(tl_http_request_h(db_fx.daemon.port, "GET", "/", hdr, NULL, 10000, &r, err, sizeof err));
	ck_assert_msg(r.status == 304 && r.body_len == 0, "If-None-Match with its ETag: %d", r.status);
	ck_assert_msg(db_streq(tl_http_header(&r, "ETag", v, sizeof v), etag), "304 ETag %s", v);
	tl_http_response_free(&r);
	snprintf(hdr, sizeof hdr, "If-None-Match: W/%s\r\n", etag); /* weak comparison */
	ck_assert(tl_http_request_h(db_fx.daemon.port, "GET", "/", hdr, NULL, 10000, &r, err, sizeof err));
	ck_assert_msg(r.status == 304, "If-None-Match W/: %d", r.status);
	tl_http_response_free(&r);
	ck_assert(tl_http_request_h(db_fx.daemon.port, "GET", "/", "If-None-Match: \"0123\"\r\n", NULL, 10000, &r, err,
	                            sizeof err));
	ck_assert_msg(r.status == 200, "If-None-Match with another ETag: %d", r.status);
	tl_http_response_free(&r);
	ck_assert(tl_http_request(db_fx.daemon.port, "POST", "/", "{}", 10000, &r, err, sizeof err));
	ck_assert_msg(r.status == 405 && db_streq(tl_http_header(&r, "Allow", v, sizeof v), "GET"), "POST /: %d",
	              r.status);
	tl_http_response_free(&r);
	/* What the page shows needs the token. */
	ck_assert(tl_http_request(db_fx.daemon.port, "GET", "/v1/in-doubt", NULL, 10000, &r, err, sizeof err));
	ck_assert_msg(r.status == 401, "GET /v1/in-doubt without a token: %d", r.status);
	tl_http_response_free(&r);

	/* The page: /healthz works without a token, the rest asks for one. */
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", db_fx.daemon.port);
	c = db_browser(url);
	for (int64_t until = tl_now_ms() + DB_WAIT_MS;; tl_sleep_ms(300)) {
		s = db_snapshot(c);
		if (json_is_true(json_object_get(s, "auth_form")) && db_streq(db_cell(s, "status"), "ok"))
			break;
		ck_assert_msg(tl_now_ms() < until, "no token form");
		json_decref(s);
	}
	ck_assert_msg(db_cell_has(s, "in-doubt-unavailable", "needs a token"), "in doubt: %s",
	              db_cell(s, "in-doubt-unavailable"));
	ck_assert_msg(db_cell_has(s, "aborts-unavailable", "needs a token"), "aborts: %s",
	              db_cell(s, "aborts-unavailable"));
	json_decref(s);

	/* A wrong token is refused, and the page says so. */
	ck_assert(cr_eval(c,
	                  "document.getElementById('auth-token').value = 'wrong-token';"
	                  "document.getElementById('auth').requestSubmit(); true",
	                  10000, &s, err, sizeof err));
	json_decref(s);
	for (int64_t until = tl_now_ms() + DB_WAIT_MS;; tl_sleep_ms(300)) {
		s = db_snapshot(c);
		if (db_cell_has(s, "auth-note", "refused") && json_is_true(json_object_get(s, "auth_form")))
			break;
		ck_assert_msg(tl_now_ms() < until, "a wrong token was not refused");
		json_decref(s);
	}
	json_decref(s);

	/* The right one works, and survives a reload (sessionStorage). */
	ck_assert(cr_eval(c,
	                  "document.getElementById('auth-token').value = '" DB_TOKEN "';"
	                  "document.getElementById('auth').requestSubmit(); true",
	                  10000, &s, err, sizeof err));
	json_decref(s);
	for (int pass = 0; pass < 2; pass++) {
		for (int64_t until = tl_now_ms() + DB_WAIT_MS;; tl_sleep_ms(300)) {
			s = db_snapshot(c);
			if (!json_is_true(json_object_get(s, "auth_form")) && db_cell(s, "abort-empty") != NULL &&
			    db_cell(s, "in-doubt-unavailable") == NULL && db_cell(s, "metrics-unavailable") == NULL &&
			    json_is_true(json_object_get(s, "forget_button")))
				break;
			ck_assert_msg(tl_now_ms() < until, "the token did not unlock the page (pass %d)", pass);
			json_decref(s);
		}
		json_decref(s);
		if (pass == 0 && !cr_reload(c, 30000, err, sizeof err))
			ck_abort_msg("reload: %s", err);
	}
	ck_assert(cr_eval(c, "sessionStorage.getItem('twopcd-token')", 10000, &s, err, sizeof err));
	ck_assert_msg(db_streq(json_string_value(s), DB_TOKEN), "sessionStorage holds no token");
	json_decref(s);
	/* Forgetting it brings the form back. */
	ck_assert(cr_eval(c, "document.getElementById('forget-token').click(); true", 10000, &s, err, sizeof err));
	json_decref(s);
	for (int64_t until = tl_now_ms() + DB_WAIT_MS;; tl_sleep_ms(300)) {
		s = db_snapshot(c);
		if (json_is_true(json_object_get(s, "auth_form")) && db_streq(db_cell(s, "auth-note"), "") &&
		    !json_is_true(json_object_get(s, "forget_button")))
			break;
		ck_assert_msg(tl_now_ms() < until, "forgetting the token did not bring the form back");
		json_decref(s);
	}
	json_decref(s);
	db_expect_no_problems(c);
	cr_stop(c);
}
END_TEST

/* The page's arithmetic (tests/dashboard-unit.js), run in the browser. */
START_TEST(test_arithmetic)
{
	char path[TL_PATH_MAX + 64], url[64], err[DB_ERR];
	const char *top = getenv("TWOPC_TOP_SRCDIR") ? getenv("TWOPC_TOP_SRCDIR") : ".";
	Chromium *c;
	json_t *problems, *p;
	FILE *f;
	char *js;
	long n;
	size_t i;

	db_start_daemon(NULL);
	ck_assert(tl_fmt(path, sizeof path, "%s/tests/dashboard-unit.js", top));
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	js = calloc(1, (size_t)n + 1);
	ck_assert(js != NULL && fread(js, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", db_fx.daemon.port);
	c = db_browser(url);
	if (!cr_eval(c, js, 10000, &problems, err, sizeof err))
		ck_abort_msg("%s: %s", path, err);
	ck_assert_msg(json_is_array(problems), "%s returned no list", path);
	json_array_foreach(problems, i, p)
	    fprintf(stderr, "check_dashboard: dashboard-unit.js: %s\n", json_string_value(p));
	ck_assert_msg(json_array_size(problems) == 0, "%zu of the page's calculations are wrong (above)",
	              json_array_size(problems));
	json_decref(problems);
	free(js);
	db_expect_no_problems(c);
	cr_stop(c);
}
END_TEST

/* ------------------------------------------------------------- fixtures */

TL_FIXTURE_GLUE(db_fx)

/* A test that stopped a cluster and failed before starting it again must
 * not fail the next one. */
static void db_setup(const char *tag)
{
	char err[DB_ERR];

	ck_assert_msg(db_fx.ok, "test clusters could not be created: %s", db_fx.err);
	for (int i = 0; i < DB_NPARTS; i++)
		if (!tl_cluster_ensure_running(&db_fx.env, tl_env_cluster(&db_fx.env, db_parts[i]), err, sizeof err))
			ck_abort_msg("%s", err);
	tl_fixture_setup(&db_fx, tag);
}

static void db_fx_setup_live(void)
{
	db_setup("live");
}

static void db_fx_setup_auth(void)
{
	db_setup("auth");
}

static void db_fx_setup_arithmetic(void)
{
	db_setup("arithmetic");
}

int main(void)
{
	Suite *s = suite_create("dashboard");

	TL_FIXTURE_CASE(db_fx, s, live);
	TL_FIXTURE_CASE(db_fx, s, auth);
	TL_FIXTURE_CASE(db_fx, s, arithmetic);
	return tl_fixture_main(&db_fx, s);
}
