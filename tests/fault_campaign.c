/*
 * fault_campaign: twopcd under a bank workload while things break.
 *
 * Three clusters (bank_a, bank_b, bank_c) hold accounts and transfers;
 * twopcd reaches each one THROUGH a netproxy, so the network can be cut.
 * Eight client threads move money between two or three participants (the
 * debit is guarded by `balance >= amount`, expect_rows 1; every branch
 * inserts the transfer's id) while a scenario breaks something: a crash at
 * each fault point, kill -9 at a random moment, a participant stopped
 * (immediate) or cut off (blackholed) at a chosen phase, twopc-recover
 * instead of a restart. Afterwards, and after a restart and/or a sweep,
 * nothing may be wrong:
 *   - the total balance is what it was (money is conserved);
 *   - every transfer is on all its participants or on none (atomicity);
 *   - every transfer answered 200 is everywhere (no acknowledged commit lost);
 *   - every transfer answered 409/503/504 is nowhere (aborted means aborted);
 *   - nothing of ours is left in pg_prepared_xacts;
 *   - when the daemon was not killed, every request was answered within its
 *     timeout_ms + 2 s (plus the time we froze the daemon on purpose).
 * It measures the time from the restart (or resolve, or heal) to the moment
 * nothing is prepared, and prints a table of every scenario before Check's
 * summary. One TCase per scenario, each running TWOPC_CAMPAIGN_ITERATIONS
 * iterations (default 2); any violation fails it. Exits 77 (SKIP) without
 * PostgreSQL. TWOPC_CAMPAIGN_SEED repeats a run's random choices;
 * TWOPC_TEST_KEEP=1 keeps the daemon logs and data for a post-mortem.
 */
#include "netproxy.h"
#include "testlib.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FC_NPART           3
#define FC_ACCOUNTS        200
#define FC_THREADS         8
#define FC_TIMEOUT_MS      2000 /* timeout_ms of every transfer */
#define FC_SLACK_MS        2000 /* an answer may come this much after the deadline */
#define FC_HTTP_TIMEOUT_MS (FC_TIMEOUT_MS + 10000)
#define FC_SETTLE_MS       15000 /* how long settling may take */
#define FC_STALL_MS        1500  /* delay=MS of the phase-timed scenarios */
#define FC_DOWN_MS         1500  /* a stopped participant stays down this long */
#define FC_PARTITION_MS    3000  /* a partition lasts this long */
#define FC_AFTER_MS        500   /* load goes on this long after the heal */
#define FC_FIRE_WAIT_MS    10000 /* a fault point must fire within this much load */
#define FC_XFER_CAP        10000 /* per thread and iteration: a bound, never reached */
#define FC_MAX_ITER        1000
#define FC_ERR             2048

#define FC_SQL_DEBIT  "UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1"
#define FC_SQL_CREDIT "UPDATE accounts SET balance = balance + $1 WHERE id = $2"
#define FC_SQL_INSERT "INSERT INTO transfers (id) VALUES ($1)"
#define FC_SCHEMA                                                                                                      \
	"CREATE TABLE accounts (id int PRIMARY KEY,"                                                                   \
	"  balance bigint NOT NULL CHECK (balance >= 0));"                                                             \
	"CREATE TABLE transfers (id text PRIMARY KEY);"                                                                \
	"INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 200) g;"

static const char *const fc_names[FC_NPART] = {"bank_a", "bank_b", "bank_c"};

typedef enum FcKind {
	FC_CRASH,     /* TWOPC_FAULT=point:crash@N, then restart */
	FC_KILL9,     /* kill -9 at a random moment, then restart */
	FC_STOP,      /* point:delay; stop one participant (immediate) meanwhile */
	FC_PARTITION, /* point:delay; blackhole one participant's proxy meanwhile */
	FC_RECOVER,   /* crash, then twopc-recover resolve, then start */
} FcKind;

typedef struct FcScenario {
	const char *name;
	FcKind kind;
	const char *point;
} FcScenario;

static const FcScenario fc_scenarios[] = {
    {"fault:before_log_commit", FC_CRASH, "before_log_commit"},
    {"fault:after_log_write", FC_CRASH, "after_log_write"},
    {"fault:after_log_fsync", FC_CRASH, "after_log_fsync"},
    {"fault:after_first_commit_prepared", FC_CRASH, "after_first_commit_prepared"},
    {"fault:before_log_done", FC_CRASH, "before_log_done"},
    {"fault:sweep_between_reads", FC_CRASH, "sweep_between_reads"},
    {"kill9-random", FC_KILL9, NULL},
    {"participant-stop:prepare", FC_STOP, "before_log_commit"},
    {"participant-stop:decided", FC_STOP, "after_log_fsync"},
    {"participant-stop:commit", FC_STOP, "after_first_commit_prepared"},
    {"partition:prepare", FC_PARTITION, "before_log_commit"},
    {"partition:decided", FC_PARTITION, "after_log_fsync"},
    {"partition:commit", FC_PARTITION, "after_first_commit_prepared"},
    {"recover-tool", FC_RECOVER, "after_log_fsync"},
};
#define FC_NSCEN ((int)(sizeof fc_scenarios / sizeof fc_scenarios[0]))

/* One row of the table. Tests run in forked children, so rows live in
 * shared memory mapped before the runner forks. */
typedef struct FcRow {
	int iterations; /* completed and checked */
	int not_fired;  /* iterations where the fault point was never reached */
	bool ran, failed, skipped;
	char reason[400]; /* why skipped, or the first failure */
	long transfers, ok200, a409, u503, t504, lost_reply, not_sent;
	long lost_commits, atomicity, aborted_applied, left_prepared, late;
	long hazards; /* heuristic_hazards reported by POST /v1/sweep (max) */
	int nresolve;
	int resolve_ms[FC_MAX_ITER];
} FcRow;

/* One transfer and what became of it. */
typedef struct FcXfer {
	int64_t t_start, t_end; /* monotonic ms */
	int16_t status;         /* HTTP status; 0: reply lost (transport error); -1: not sent */
	uint8_t touched;        /* bit per participant */
	uint8_t present;        /* bit per participant holding its transfers row */
	char txn[17];           /* the daemon's transaction id, when it answered */
} FcXfer;

typedef struct FcWorker {
	pthread_t thread;
	int index;
	unsigned seed;
	const char *prefix;
	int *stop;
	int n;
	FcXfer *xfers;
	char err[512]; /* the first unexpected answer */
} FcWorker;

/* Runner state (before the fork) and the test's own state (after). */
static TlEnv fc_env;
static bool fc_env_tried, fc_env_ok;
static char fc_env_err[FC_ERR];
static bool fc_has_sweep_keys; /* twopcd --help lists sweep_interval_ms */
static unsigned fc_seed;
static int fc_iterations = 2;
static FcRow *fc_rows;
static TlDaemon fc_daemon;
static NetProxy *fc_proxy[FC_NPART];
static int fc_sweep_api = -1; /* POST /v1/sweep: -1 untried, 0 absent (404), 1 there */

/* ----------------------------------------------------------------- helpers */

static TlCluster *fc_cluster(int i)
{
	TlCluster *c = tl_env_cluster(&fc_env, fc_names[i]);

	ck_assert_msg(c != NULL, "no cluster %s", fc_names[i]);
	return c;
}

static int fc_rand(unsigned *seed, int lo, int hi)
{
	return lo + (int)(rand_r(seed) % (unsigned)(hi - lo + 1));
}

/* A well-mixed seed from the run's seed and a small number (rand_r's
 * first draws from neighbouring seeds are alike). */
static unsigned fc_mix(unsigned seed, unsigned n)
{
	uint64_t z = ((uint64_t)seed << 32 | n) + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (unsigned)(z ^ (z >> 31));
}

static off_t fc_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Whether the file at PATH holds NEEDLE after offset FROM. */
static bool fc_file_has(const char *path, off_t from, const char *needle)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = pread(fd, buf, sizeof buf - 1, from);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* Prints the daemon log lines that mention NEEDLE (a transaction id). */
static void fc_grep_log(const char *needle, int max)
{
	FILE *f = fopen(fc_daemon.log_path, "r");
	char line[1024];
	int n = 0;

	if (f == NULL)
		return;
	while (n < max && fgets(line, sizeof line, f) != NULL)
		if (strstr(line, needle) != NULL) {
			fprintf(stderr, "    | %s", line);
			n++;
		}
	fclose(f);
}

/*
 * Runs ARGV with stdout and stderr appended to OUT_PATH, for at most
 * TIMEOUT_MS (then SIGKILL). *STATUS gets the wait status. False when it
 * could not run, took too long or printed a sanitizer report.
 */
static bool fc_run(const char *const argv[], const char *out_path, int timeout_ms, int *status, char *err,
                   size_t errlen)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t pid;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", out_path, strerror(errno));
		return false;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(fd);
		return false;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid) {
			char what[256];

			/* under the sanitizers: a report fails the run, whatever the exit status */
			if (!tl_sanitizer_report_in_file(out_path, what, sizeof what))
				return true;
			snprintf(err, errlen, "%s printed a sanitizer report (output in %s): %s", argv[0], out_path,
			         what);
			return false;
		}
		if (r < 0 && errno != EINTR) {
			snprintf(err, errlen, "waitpid: %s", strerror(errno));
			return false;
		}
		if (tl_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			(void)waitpid(pid, status, 0);
			snprintf(err, errlen, "%s did not finish within %d ms (output in %s)", argv[0], timeout_ms,
			         out_path);
			return false;
		}
		tl_sleep_ms(20);
	}
}

/* Our prepared transactions on every participant; DETAIL names them (the
 * first few, with their age). */
static int64_t fc_count_prepared(char *detail, size_t dlen)
{
	char err[FC_ERR];
	int64_t total = 0;
	size_t used = 0;
	int i, row;

	if (detail != NULL && dlen > 0)
		detail[0] = '\0';
	for (i = 0; i < FC_NPART; i++) {
		PGresult *res = NULL;

		/* '_' is a LIKE wildcard: escaped, only our prefix matches */
		if (!tl_pg_query(fc_cluster(i),
		                 "SELECT gid, (extract(epoch FROM now() - prepared) * 1000)::bigint "
		                 "FROM pg_prepared_xacts WHERE gid LIKE 'twopc\\_%' ORDER BY prepared",
		                 0, NULL, &res, err, sizeof err))
			ck_abort_msg("%s", err);
		total += PQntuples(res);
		for (row = 0; row < PQntuples(res) && row < 3 && detail != NULL && used < dlen; row++)
			used += (size_t)snprintf(detail + used, dlen - used, " %s:%s (prepared %s ms ago)", fc_names[i],
			                         PQgetvalue(res, row, 0), PQgetvalue(res, row, 1));
		if (PQntuples(res) > 3 && detail != NULL && used < dlen)
			used += (size_t)snprintf(detail + used, dlen - used, " %s: %d more", fc_names[i],
			                         PQntuples(res) - 3);
		PQclear(res);
	}
	return total;
}

static int64_t fc_total_balance(void)
{
	char err[FC_ERR];
	int64_t sum = 0;
	int i;

	for (i = 0; i < FC_NPART; i++) {
		int64_t v = 0;

		if (!tl_pg_scalar_i64(fc_cluster(i), "SELECT coalesce(sum(balance), 0) FROM accounts", 0, NULL, &v, err,
		                      sizeof err))
			ck_abort_msg("%s", err);
		sum += v;
	}
	return sum;
}

/* POST /v1/sweep once; remembers whether the endpoint exists. Adds the
 * reported heuristic_hazards to *HAZARDS. */
static void fc_sweep(long *hazards)
{
	TlHttpResponse r;
	char err[FC_ERR];
	int64_t h = 0;

	if (fc_sweep_api == 0 || fc_daemon.pid <= 0)
		return;
	if (!tl_http_request(fc_daemon.port, "POST", "/v1/sweep", "", 30000, &r, err, sizeof err)) {
		fprintf(stderr, "fault_campaign: POST /v1/sweep: %s\n", err);
		return;
	}
	if (r.status == 404 || r.status == 405) {
		fc_sweep_api = 0;
	} else if (r.status == 200) {
		fc_sweep_api = 1;
		if (tl_json_i64(r.json, "heuristic_hazards", &h) && h > *hazards)
			*hazards = (long)h;
	} else {
		fprintf(stderr, "fault_campaign: POST /v1/sweep: HTTP %d: %s\n", r.status, r.body);
	}
	tl_http_response_free(&r);
}

/* Writes twopcd's config: every participant through its proxy, short
 * timeouts, a quick sweeper when this twopcd has one. */
static void fc_write_config(void)
{
	FILE *f = fopen(fc_daemon.conf_path, "w");
	int i;

	ck_assert_msg(f != NULL, "%s: %s", fc_daemon.conf_path, strerror(errno));
	fprintf(f,
	        "; written by tests/fault_campaign.c\n"
	        "[coordinator]\nid = fc\nlisten = 127.0.0.1:%d\nlog_dir = %s\n"
	        "default_timeout_ms = %d\nlock_timeout_ms = 500\nlog_level = info\n",
	        fc_daemon.port, fc_daemon.log_dir, FC_TIMEOUT_MS);
	if (fc_has_sweep_keys)
		fprintf(f, "sweep_interval_ms = 1000\nsweep_grace_ms = 1000\n");
	for (i = 0; i < FC_NPART; i++)
		fprintf(f,
		        "\n[participant %s]\nconninfo = host=127.0.0.1 port=%d dbname=bank user=postgres\n"
		        "pool_size = 8\n",
		        fc_names[i], np_port(fc_proxy[i]));
	ck_assert_msg(!ferror(f) && fclose(f) == 0, "%s: write error", fc_daemon.conf_path);
}

/* ----------------------------------------------------------------- workload */

static json_t *fc_stmt(const char *sql, json_t *params)
{
	return json_pack("{s:s,s:o,s:i}", "sql", sql, "params", params, "expect_rows", 1);
}

/* A transfer between two or three participants; the first one pays. */
static json_t *fc_request(FcWorker *w, FcXfer *x, const char *tid)
{
	json_t *branches = json_object();
	int perm[FC_NPART] = {0, 1, 2};
	int64_t amount = fc_rand(&w->seed, 1, 50);
	int nparts = fc_rand(&w->seed, 0, 2) == 0 ? 3 : 2;
	int i;

	for (i = FC_NPART - 1; i > 0; i--) {
		int j = fc_rand(&w->seed, 0, i), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (i = 0; i < nparts && branches != NULL; i++) {
		int acct = fc_rand(&w->seed, 1, FC_ACCOUNTS);
		int64_t share = nparts == 2 ? amount : (i == 1 ? amount / 2 : amount - amount / 2);
		json_t *br =
		    i == 0 ? json_pack("[o,o]", fc_stmt(FC_SQL_DEBIT, json_pack("[I,i]", (json_int_t)amount, acct)),
		                       fc_stmt(FC_SQL_INSERT, json_pack("[s]", tid)))
		           : json_pack("[o,o]", fc_stmt(FC_SQL_CREDIT, json_pack("[I,i]", (json_int_t)share, acct)),
		                       fc_stmt(FC_SQL_INSERT, json_pack("[s]", tid)));

		if (br == NULL || json_object_set_new(branches, fc_names[perm[i]], br) != 0) {
			json_decref(branches);
			return NULL;
		}
		x->touched |= (uint8_t)(1u << perm[i]);
	}
	return json_pack("{s:o,s:i}", "branches", branches, "timeout_ms", FC_TIMEOUT_MS);
}

static void *fc_worker(void *arg)
{
	FcWorker *w = arg;

	while (!__atomic_load_n(w->stop, __ATOMIC_RELAXED) && w->n < FC_XFER_CAP) {
		FcXfer *x = &w->xfers[w->n];
		char tid[80], err[512];
		TlHttpResponse r;
		json_t *req;
		bool ok;

		snprintf(tid, sizeof tid, "%s%d-%d", w->prefix, w->index, w->n);
		memset(x, 0, sizeof *x);
		req = fc_request(w, x, tid);
		if (req == NULL) {
			snprintf(w->err, sizeof w->err, "transfer %s: out of memory", tid);
			break;
		}
		x->t_start = tl_now_ms();
		ok =
		    tl_http_post_json(fc_daemon.port, "/v1/transactions", req, FC_HTTP_TIMEOUT_MS, &r, err, sizeof err);
		x->t_end = tl_now_ms();
		json_decref(req);
		w->n++;
		if (!ok) {
			/* refused: the daemon is down or not listening yet; nothing was sent */
			x->status = strncmp(err, "connect ", 8) == 0 ? -1 : 0;
			if (x->status < 0)
				tl_sleep_ms(20);
			continue;
		}
		x->status = (int16_t)r.status;
		if (tl_json_str(r.json, "id") != NULL)
			snprintf(x->txn, sizeof x->txn, "%s", tl_json_str(r.json, "id"));
		if (w->err[0] == '\0' &&
		    ((r.status == 200 && (tl_json_str(r.json, "outcome") == NULL ||
		                          strcmp(tl_json_str(r.json, "outcome"), "committed") != 0)) ||
		     (r.status != 200 && r.status != 409 && r.status != 503 && r.status != 504)))
			snprintf(w->err, sizeof w->err, "transfer %s: unexpected HTTP %d: %.300s", tid, r.status,
			         r.body);
		tl_http_response_free(&r);
		if (r.status == 503)
			tl_sleep_ms(10); /* a participant is down: fail-fast answers, do not spin */
	}
	return NULL;
}

/* ----------------------------------------------------------------- iteration */

/* Everything one iteration knows. */
typedef struct FcIter {
	const FcScenario *sc;
	int sc_index, iter;
	unsigned seed;
	char prefix[64];
	int stop;
	bool load_running;
	FcWorker workers[FC_THREADS];
	int victim;                   /* participant stopped or cut off, or -1 */
	int64_t stall_from, stall_to; /* when the daemon was frozen on purpose */
	int64_t fault_from;           /* participant stopped or cut off at */
	int64_t resolve_from;         /* restart, resolve or heal */
	bool checks_latency;          /* the daemon was never killed */
	char what[160];               /* what was done, for the log line */
} FcIter;

static void fc_load_start(FcIter *it)
{
	int t;

	it->stop = 0;
	for (t = 0; t < FC_THREADS; t++) {
		FcWorker *w = &it->workers[t];

		w->index = t;
		w->seed = fc_mix(it->seed, (unsigned)t);
		w->prefix = it->prefix;
		w->stop = &it->stop;
		w->n = 0;
		w->err[0] = '\0';
		if (w->xfers == NULL)
			w->xfers = calloc(FC_XFER_CAP, sizeof *w->xfers);
		ck_assert_ptr_nonnull(w->xfers);
		ck_assert_int_eq(pthread_create(&w->thread, NULL, fc_worker, w), 0);
	}
	it->load_running = true;
}

static void fc_load_stop(FcIter *it)
{
	int t;

	if (!it->load_running)
		return;
	__atomic_store_n(&it->stop, 1, __ATOMIC_RELAXED);
	for (t = 0; t < FC_THREADS; t++)
		pthread_join(it->workers[t].thread, NULL);
	it->load_running = false;
}

static void fc_row_failed(FcRow *row, const char *msg)
{
	size_t n = strlen(msg);

	if (n >= sizeof row->reason)
		n = sizeof row->reason - 1;
	memcpy(row->reason, msg, n);
	row->reason[n] = '\0';
	row->failed = true;
}

/* Fails the test with the message also in the table's row. */
#define FC_ABORT(sc_index, ...)                                                                                        \
	do {                                                                                                           \
		char fc_msg_[2 * FC_ERR + 512];                                                                        \
		snprintf(fc_msg_, sizeof fc_msg_, __VA_ARGS__);                                                        \
		fc_row_failed(&fc_rows[sc_index], fc_msg_);                                                            \
		ck_abort_msg("%s", fc_msg_);                                                                           \
	} while (0)

/* Stops the load, shows the daemon's last words, fails: never leave client
 * threads behind. */
#define FC_FAIL(it, ...)                                                                                               \
	do {                                                                                                           \
		fc_load_stop(it);                                                                                      \
		tl_daemon_print_log_tail(&fc_daemon, 40);                                                              \
		FC_ABORT((it)->sc_index, __VA_ARGS__);                                                                 \
	} while (0)

/* Marks the present bit of every transfer of this iteration found on P. */
static void fc_collect(FcIter *it)
{
	char pattern[80], err[FC_ERR];
	const char *params[1] = {pattern};
	int p, t;

	snprintf(pattern, sizeof pattern, "%s%%", it->prefix);
	for (t = 0; t < FC_THREADS; t++)
		for (int n = 0; n < it->workers[t].n; n++)
			it->workers[t].xfers[n].present = 0;
	for (p = 0; p < FC_NPART; p++) {
		PGresult *res = NULL;
		int row;

		if (!tl_pg_query(fc_cluster(p), "SELECT id FROM transfers WHERE id LIKE $1", 1, params, &res, err,
		                 sizeof err))
			ck_abort_msg("%s", err);
		for (row = 0; row < PQntuples(res); row++) {
			int th, n;

			if (sscanf(PQgetvalue(res, row, 0) + strlen(it->prefix), "%d-%d", &th, &n) == 2 && th >= 0 &&
			    th < FC_THREADS && n >= 0 && n < it->workers[th].n)
				it->workers[th].xfers[n].present |= (uint8_t)(1u << p);
		}
		PQclear(res);
	}
}

/* The part of [a0, a1] that overlaps [b0, b1]. */
static int64_t fc_overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1)
{
	int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;

	return hi > lo ? hi - lo : 0;
}

static int fc_cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Settles, checks every invariant, records the row; fails on a violation. */
static void fc_check(FcIter *it, FcRow *row, int64_t total_before)
{
	int64_t deadline = it->resolve_from + FC_SETTLE_MS, left, total, resolve_ms = -1;
	long lost = 0, partial = 0, applied = 0, late = 0, transfers = 0;
	long st200 = 0, st409 = 0, st503 = 0, st504 = 0, st0 = 0, stn = 0, hazards = row->hazards;
	long during = 0, during200 = 0, during503 = 0, during504 = 0, during_other = 0;
	int64_t during_max = 0;
	char detail[1024], first[768] = "", during_note[320] = "";
	bool swept_again = false;
	int t, n, reported = 0;

	fc_sweep(&hazards);
	for (;;) {
		left = fc_count_prepared(detail, sizeof detail);
		if (left == 0) {
			resolve_ms = tl_now_ms() - it->resolve_from;
			break;
		}
		if (tl_now_ms() >= deadline)
			break;
		if (!swept_again && tl_now_ms() >= it->resolve_from + 3000) {
			fc_sweep(&hazards); /* what was too young for the first sweep */
			swept_again = true;
		}
		tl_sleep_ms(50);
	}
	total = fc_total_balance();
	fc_collect(it);
	for (t = 0; t < FC_THREADS; t++) {
		FcWorker *w = &it->workers[t];

		for (n = 0; n < w->n; n++) {
			const FcXfer *x = &w->xfers[n];
			char why[256] = "";
			int64_t allowed = FC_TIMEOUT_MS + FC_SLACK_MS +
			                  fc_overlap(x->t_start, x->t_end, it->stall_from, it->stall_to);

			if (it->victim >= 0 && (x->touched & (1u << it->victim)) &&
			    fc_overlap(x->t_start, x->t_end, it->fault_from, it->resolve_from) > 0) {
				during++;
				during200 += x->status == 200;
				during503 += x->status == 503;
				during504 += x->status == 504;
				during_other += x->status != 200 && x->status != 503 && x->status != 504;
				if (x->t_end - x->t_start > during_max)
					during_max = x->t_end - x->t_start;
			}
			transfers++;
			st200 += x->status == 200;
			st409 += x->status == 409;
			st503 += x->status == 503;
			st504 += x->status == 504;
			st0 += x->status == 0;
			stn += x->status == -1;
			if (x->present != 0 && x->present != x->touched) {
				partial++;
				snprintf(why, sizeof why, "atomicity: on 0x%x of 0x%x", x->present, x->touched);
			}
			if (x->status == 200 && x->present != x->touched) {
				lost++;
				snprintf(why, sizeof why, "acknowledged commit lost: on 0x%x of 0x%x", x->present,
				         x->touched);
			}
			if (x->status != 200 && x->status != 0 && x->present != 0) {
				applied++;
				snprintf(why, sizeof why, "answered %d (aborted) but on 0x%x of 0x%x", x->status,
				         x->present, x->touched);
			}
			if (it->checks_latency && (x->status <= 0 || x->t_end - x->t_start > allowed)) {
				late++;
				snprintf(why, sizeof why, "answered %d after %" PRId64 " ms (allowed %" PRId64 " ms)",
				         x->status, x->t_end - x->t_start, allowed);
			}
			if (why[0] != '\0' && ++reported <= 20) {
				fprintf(stderr, "fault_campaign: %s #%d: transfer %s%d-%d (txn %s): %s\n", it->sc->name,
				        it->iter, it->prefix, t, n, x->txn[0] ? x->txn : "?", why);
				if (x->txn[0] != '\0')
					fc_grep_log(x->txn, 12);
				if (first[0] == '\0')
					snprintf(first, sizeof first, "transfer %s%d-%d (txn %s): %s", it->prefix, t, n,
					         x->txn[0] ? x->txn : "?", why);
			}
		}
	}
	if (it->victim >= 0)
		snprintf(during_note, sizeof during_note,
		         "; touching %s during the fault: %ld (200: %ld, 503: %ld, 504: %ld, other: %ld), "
		         "slowest %" PRId64 " ms",
		         fc_names[it->victim], during, during200, during503, during504, during_other, during_max);
	row->transfers += transfers;
	row->ok200 += st200;
	row->a409 += st409;
	row->u503 += st503;
	row->t504 += st504;
	row->lost_reply += st0;
	row->not_sent += stn;
	row->lost_commits += lost;
	row->atomicity += partial;
	row->aborted_applied += applied;
	row->left_prepared += left;
	row->late += late;
	row->hazards = hazards;
	if (resolve_ms >= 0 && row->nresolve < FC_MAX_ITER)
		row->resolve_ms[row->nresolve++] = (int)resolve_ms;
	row->iterations++;
	fprintf(stderr,
	        "fault_campaign: %s #%d: %s; %ld transfers (200: %ld, 409: %ld, 503: %ld, 504: %ld, "
	        "reply lost: %ld, not sent: %ld)%s; resolved in %" PRId64 " ms; %s\n",
	        it->sc->name, it->iter, it->what, transfers, st200, st409, st503, st504, st0, stn, during_note,
	        resolve_ms, lost + partial + applied + late + left == 0 && total == total_before ? "ok" : "VIOLATION");
	for (t = 0; t < FC_THREADS; t++)
		if (it->workers[t].err[0] != '\0')
			FC_ABORT(it->sc_index, "%s #%d: client %d: %s", it->sc->name, it->iter, t, it->workers[t].err);
	if (lost + partial + applied + late + left != 0 || total != total_before) {
		row->failed = true;
		snprintf(row->reason, sizeof row->reason,
		         "#%d: %ld lost, %ld partial, %ld applied, %ld late, %" PRId64 " prepared, money %+" PRId64,
		         it->iter, lost, partial, applied, late, left, total - total_before);
		tl_daemon_print_log_tail(&fc_daemon, 40);
		ck_abort_msg("%s iteration %d: %ld acknowledged commits lost, %ld atomicity violations, "
		             "%ld aborted-but-applied, %ld late answers, %" PRId64
		             " prepared left after %d ms (%s), total balance %" PRId64 " -> %" PRId64
		             "; first: %s; daemon log %s",
		             it->sc->name, it->iter, lost, partial, applied, late, left, FC_SETTLE_MS, detail,
		             total_before, total, first[0] ? first : "-", fc_daemon.log_path);
	}
}

/* Waits for twopcd to die of a fault point, posting sweeps meanwhile when
 * the point is the sweeper's. True if it died of SIGKILL. */
static bool fc_wait_fault(FcIter *it, bool sweep_point)
{
	int64_t deadline = tl_now_ms() + FC_FIRE_WAIT_MS;
	char err[FC_ERR];

	while (tl_now_ms() < deadline) {
		int st = 0;

		if (tl_daemon_wait_exit(&fc_daemon, sweep_point ? 250 : 100, &st, err, sizeof err)) {
			if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
				FC_FAIL(it,
				        "%s #%d: twopcd died by itself, not at the fault point (wait "
				        "status 0x%x); log %s",
				        it->sc->name, it->iter, (unsigned)st, fc_daemon.log_path);
			return true;
		}
		if (sweep_point) {
			long ignored = 0;

			fc_sweep(&ignored); /* one more sweep: the point fires between its reads */
		}
	}
	return false;
}

/* Waits until the daemon log says the delay fault is stalling. */
static bool fc_wait_stall(off_t from)
{
	int64_t deadline = tl_now_ms() + FC_FIRE_WAIT_MS;

	while (tl_now_ms() < deadline) {
		if (fc_file_has(fc_daemon.log_path, from, "stalling"))
			return true;
		if (fc_daemon.pid > 0 && waitpid(fc_daemon.pid, NULL, WNOHANG) == fc_daemon.pid) {
			fc_daemon.pid = 0;
			return false;
		}
		tl_sleep_ms(10);
	}
	return false;
}

/* The tool: resolve while twopcd is down. Returns false (and marks the row
 * skipped) when twopc-recover is not built yet. */
static bool fc_recover_tool(FcIter *it, FcRow *row, bool expect_refusal)
{
	char tool[TL_PATH_MAX + 32], out[TL_PATH_MAX + 32], err[FC_ERR];
	const char *argv[] = {tool, "-c", fc_daemon.conf_path, "resolve", NULL};
	off_t from;
	int st = 0;

	ck_assert(tl_fmt(tool, sizeof tool, "%s/twopc-recover", fc_env.builddir));
	ck_assert(tl_fmt(out, sizeof out, "%s/twopc-recover.out", fc_env.tmpdir));
	from = fc_file_size(out);
	if (!fc_run(argv, out, 60000, &st, err, sizeof err))
		FC_FAIL(it, "%s #%d: twopc-recover resolve: %s", it->sc->name, it->iter, err);
	if (fc_file_has(out, from, "not built yet")) {
		row->skipped = true;
		snprintf(row->reason, sizeof row->reason, "twopc-recover is not built yet (its stub exits 2)");
		return false;
	}
	if (expect_refusal) {
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			tl_print_file_tail(out, 20);
			FC_FAIL(it,
			        "%s: twopc-recover resolve exited 0 while twopcd (pid %d) runs; "
			        "it must refuse",
			        it->sc->name, (int)fc_daemon.pid);
		}
		return true;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		tl_print_file_tail(out, 30);
		FC_FAIL(it, "%s #%d: twopc-recover resolve failed (wait status 0x%x); output in %s", it->sc->name,
		        it->iter, (unsigned)st, out);
	}
	return true;
}

static void fc_iter_free(FcIter *it)
{
	int i;

	fc_load_stop(it);
	for (i = 0; i < FC_THREADS; i++)
		free(it->workers[i].xfers);
	free(it);
}

/* One iteration of scenario SC. False: skipped (row says why). */
static bool fc_iteration(int sc_index, int iter)
{
	const FcScenario *sc = &fc_scenarios[sc_index];
	FcRow *row = &fc_rows[sc_index];
	FcIter *it = calloc(1, sizeof *it);
	/* a failure found mid-iteration, reported after the data is checked */
	char deferred[FC_ERR + 64] = "";
	char err[FC_ERR], fault[128] = "", detail[1024];
	bool sweep_point = sc->point != NULL && strcmp(sc->point, "sweep_between_reads") == 0;
	int64_t total_before, t0;
	off_t log_from;
	int i, n;

	ck_assert_ptr_nonnull(it);
	it->sc = sc;
	it->sc_index = sc_index;
	it->iter = iter;
	it->seed = fc_mix(fc_seed, (unsigned)(sc_index * 1000 + iter));
	it->victim = -1;
	it->stall_from = it->stall_to = 0;
	snprintf(it->prefix, sizeof it->prefix, "fc%d-%d-%d-", (int)fc_env.creator, sc_index, iter);

	/* a clean start: clusters up, network healthy, leftovers settled */
	for (i = 0; i < FC_NPART; i++) {
		if (!tl_cluster_ensure_running(&fc_env, fc_cluster(i), err, sizeof err))
			FC_ABORT(sc_index, "%s", err);
		if (!np_set_mode(fc_proxy[i], NP_PASS, 0, err, sizeof err))
			FC_ABORT(sc_index, "%s", err);
	}
	n = sc->kind == FC_STOP || sc->kind == FC_PARTITION ? fc_rand(&it->seed, 10, 60)
	    : sweep_point                                   ? fc_rand(&it->seed, 2, 8)
	                                                    : fc_rand(&it->seed, 50, 1000);
	if (sc->kind == FC_CRASH || sc->kind == FC_RECOVER)
		snprintf(fault, sizeof fault, "%s:crash@%d", sc->point, n);
	else if (sc->kind != FC_KILL9)
		snprintf(fault, sizeof fault, "%s:delay=%d@%d", sc->point, FC_STALL_MS, n);
	log_from = fc_file_size(fc_daemon.log_path);
	if (!tl_daemon_start(&fc_daemon, fault[0] ? fault : NULL, err, sizeof err))
		FC_ABORT(sc_index, "%s #%d: %s", sc->name, iter, err);
	if (fc_count_prepared(detail, sizeof detail) != 0)
		FC_ABORT(sc_index, "%s #%d: prepared transactions left before the start:%s", sc->name, iter, detail);
	total_before = fc_total_balance();
	if (sc->kind == FC_RECOVER && iter == 1 && !fc_recover_tool(it, row, true)) {
		fc_iter_free(it);
		return false;
	}

	fc_load_start(it);
	switch (sc->kind) {
	case FC_CRASH:
	case FC_RECOVER:
		if (!fc_wait_fault(it, sweep_point)) {
			fc_load_stop(it);
			if (!tl_daemon_kill(&fc_daemon, err, sizeof err))
				FC_ABORT(sc_index, "%s", err);
			if (!sweep_point)
				FC_ABORT(sc_index, "%s #%d: TWOPC_FAULT=%s never fired in %d ms of load; log %s",
				         sc->name, iter, fault, FC_FIRE_WAIT_MS, fc_daemon.log_path);
			row->not_fired++;
			fprintf(stderr,
			        "fault_campaign: %s #%d: TWOPC_FAULT=%s never fired in %d ms "
			        "(no sweep reached it)\n",
			        sc->name, iter, fault, FC_FIRE_WAIT_MS);
			fc_iter_free(it);
			return false;
		}
		fc_load_stop(it);
		if (!fc_file_has(fc_daemon.log_path, log_from, "reached: crashing"))
			FC_ABORT(sc_index,
			         "%s #%d: twopcd died of SIGKILL but its log does not say "
			         "that %s fired; log %s",
			         sc->name, iter, sc->point, fc_daemon.log_path);
		snprintf(it->what, sizeof it->what, "TWOPC_FAULT=%s fired", fault);
		break;
	case FC_KILL9: {
		int ms = fc_rand(&it->seed, 50, 1500);

		tl_sleep_ms(ms);
		if (!tl_daemon_kill(&fc_daemon, err, sizeof err))
			FC_FAIL(it, "%s", err);
		fc_load_stop(it);
		snprintf(it->what, sizeof it->what, "kill -9 after %d ms of load", ms);
		break;
	}
	case FC_STOP:
	case FC_PARTITION:
		if (!fc_wait_stall(log_from))
			FC_FAIL(it,
			        "%s #%d: TWOPC_FAULT=%s: no \"stalling\" line in %d ms (or twopcd "
			        "died); log %s",
			        sc->name, iter, fault, FC_FIRE_WAIT_MS, fc_daemon.log_path);
		it->stall_from = tl_now_ms() - 100;
		it->stall_to = it->stall_from + 100 + FC_STALL_MS + 100;
		it->victim = fc_rand(&it->seed, 0, FC_NPART - 1);
		t0 = it->fault_from = tl_now_ms();
		if (sc->kind == FC_STOP) {
			if (!tl_cluster_stop(&fc_env, fc_cluster(it->victim), "immediate", err, sizeof err))
				FC_FAIL(it, "%s", err);
			tl_sleep_ms(FC_DOWN_MS);
			if (!tl_cluster_start(&fc_env, fc_cluster(it->victim), err, sizeof err))
				FC_FAIL(it, "%s", err);
		} else {
			if (!np_set_mode(fc_proxy[it->victim], NP_BLACKHOLE, 0, err, sizeof err))
				FC_FAIL(it, "%s", err);
			tl_sleep_ms(FC_PARTITION_MS);
			if (!np_set_mode(fc_proxy[it->victim], NP_HEAL, 0, err, sizeof err))
				FC_FAIL(it, "%s", err);
		}
		it->resolve_from = tl_now_ms();
		snprintf(it->what, sizeof it->what, "TWOPC_FAULT=%s; %s %s for %" PRId64 " ms", fault,
		         sc->kind == FC_STOP ? "stopped" : "cut off", fc_names[it->victim], it->resolve_from - t0);
		tl_sleep_ms(FC_AFTER_MS);
		fc_load_stop(it);
		if (tl_daemon_wait_healthy(&fc_daemon, 5000, err, sizeof err)) {
			it->checks_latency = true;
			break;
		}
		/* It died (or hangs): a bug. Still restart it and check the data,
		 * to learn whether the crash cost more than availability. */
		snprintf(deferred, sizeof deferred, "twopcd is not healthy after the %s: %s",
		         sc->kind == FC_STOP ? "participant stop" : "partition", err);
		fprintf(stderr, "fault_campaign: %s #%d: %s\n", sc->name, iter, deferred);
		tl_daemon_print_log_tail(&fc_daemon, 40);
		if (!tl_daemon_kill(&fc_daemon, err, sizeof err))
			FC_ABORT(sc_index, "%s", err);
		it->resolve_from = tl_now_ms();
		if (!tl_daemon_start(&fc_daemon, NULL, err, sizeof err))
			FC_ABORT(sc_index, "%s #%d: restart after the crash: %s", sc->name, iter, err);
		break;
	}

	if (sc->kind == FC_RECOVER) {
		it->resolve_from = tl_now_ms();
		if (!fc_recover_tool(it, row, false)) {
			fc_iter_free(it);
			return false;
		}
		/* resolve said "done" (exit 0): nothing of ours may be prepared */
		n = (int)fc_count_prepared(detail, sizeof detail);
		if (n != 0) {
			snprintf(deferred, sizeof deferred,
			         "twopc-recover resolve exited 0 after %" PRId64 " ms, yet %d prepared "
			         "transactions of ours remain:%s",
			         tl_now_ms() - it->resolve_from, n, detail);
			fprintf(stderr, "fault_campaign: %s #%d: %s\n", sc->name, iter, deferred);
		}
		if (!tl_daemon_start(&fc_daemon, NULL, err, sizeof err))
			FC_ABORT(sc_index, "%s #%d: start after resolve: %s", sc->name, iter, err);
	} else if (sc->kind == FC_CRASH || sc->kind == FC_KILL9) {
		it->resolve_from = tl_now_ms();
		if (!tl_daemon_start(&fc_daemon, NULL, err, sizeof err))
			FC_ABORT(sc_index, "%s #%d: restart: %s", sc->name, iter, err);
	}
	fc_check(it, row, total_before);
	if (deferred[0] != '\0')
		FC_ABORT(sc_index, "%s #%d: %s (after a start of twopcd the data checked out)", sc->name, iter,
		         deferred);
	if (!tl_daemon_kill(&fc_daemon, err, sizeof err))
		FC_ABORT(sc_index, "%s", err);
	fc_iter_free(it);
	return true;
}

/* ------------------------------------------------------------------ fixtures */

/* Unchecked, in the runner: the clusters, once; records failure instead of
 * asserting so that every test reports the reason. */
static void fc_clusters_setup(void)
{
	char help[TL_PATH_MAX + 32], bin[TL_PATH_MAX + 32];
	int i, st = 0;

	if (fc_env_tried)
		return;
	fc_env_tried = true;
	fflush(NULL);
	if (!tl_env_init(&fc_env, fc_env_err, sizeof fc_env_err))
		return;
	fc_env.keep_tmpdir = getenv("TWOPC_TEST_KEEP") != NULL;
	for (i = 0; i < FC_NPART; i++) {
		if (!tl_env_add_cluster(&fc_env, fc_names[i], fc_env_err, sizeof fc_env_err) ||
		    !tl_pg_exec(tl_env_cluster(&fc_env, fc_names[i]), FC_SCHEMA, fc_env_err, sizeof fc_env_err))
			return;
	}
	/* Which keys does this twopcd know? The sweeper's come with it. */
	if (tl_fmt(bin, sizeof bin, "%s/twopcd", fc_env.builddir) &&
	    tl_fmt(help, sizeof help, "%s/twopcd-help.txt", fc_env.tmpdir)) {
		const char *argv[] = {bin, "--help", NULL};

		if (fc_run(argv, help, 10000, &st, fc_env_err, sizeof fc_env_err))
			fc_has_sweep_keys =
			    fc_file_has(help, 0, "sweep_interval_ms") && fc_file_has(help, 0, "sweep_grace_ms");
	}
	fprintf(stderr,
	        "fault_campaign: clusters in %s (bank_a:%d bank_b:%d bank_c:%d); sweeper "
	        "config keys: %s\n",
	        fc_env.tmpdir, fc_env.clusters[0].port, fc_env.clusters[1].port, fc_env.clusters[2].port,
	        fc_has_sweep_keys ? "yes" : "no");
	fc_env_ok = true;
}

/* Checked, in the test's process: clusters up, one proxy each. */
static void fc_setup(void)
{
	char err[FC_ERR];
	int i;

	ck_assert_msg(fc_env_ok, "test clusters could not be created: %s", fc_env_err);
	for (i = 0; i < FC_NPART; i++) {
		if (!tl_cluster_ensure_running(&fc_env, fc_cluster(i), err, sizeof err))
			ck_abort_msg("%s", err);
		if (!np_start(fc_cluster(i)->port, &fc_proxy[i], err, sizeof err))
			ck_abort_msg("netproxy for %s: %s", fc_names[i], err);
	}
}

/* The daemon's files for scenario NAME: its stderr in twopcd-NAME.log, one
 * decision log for the whole campaign (like one daemon restarted again and
 * again: whatever a scenario leaves, the next start must settle). */
static void fc_configure(const char *name)
{
	char err[FC_ERR], log_dir[TL_PATH_MAX + 32], tag[80];
	int i;

	snprintf(tag, sizeof tag, "%s", name);
	for (i = 0; tag[i] != '\0'; i++)
		if (tag[i] == ':')
			tag[i] = '_';
	ck_assert(tl_fmt(log_dir, sizeof log_dir, "%s/twopcd-log", fc_env.tmpdir));
	if (!tl_daemon_configure(&fc_daemon, &fc_env, log_dir, tag, err, sizeof err))
		ck_abort_msg("%s", err);
	fc_write_config();
}

static void fc_teardown(void)
{
	char err[FC_ERR];
	int i;

	if (!tl_daemon_kill(&fc_daemon, err, sizeof err))
		fprintf(stderr, "fault_campaign: %s\n", err);
	for (i = 0; i < FC_NPART; i++) {
		np_stop(fc_proxy[i]);
		fc_proxy[i] = NULL;
	}
}

/* ------------------------------------------------------------------- tests */

START_TEST(test_scenario)
{
	FcRow *row = &fc_rows[_i];
	int iter;

	row->ran = true;
	fc_configure(fc_scenarios[_i].name);
	if (strcmp(fc_scenarios[_i].point ? fc_scenarios[_i].point : "", "sweep_between_reads") == 0 &&
	    !fc_has_sweep_keys) {
		row->skipped = true;
		snprintf(row->reason, sizeof row->reason,
		         "no sweeper in this twopcd (--help lists no sweep_interval_ms)");
		return;
	}
	for (iter = 1; iter <= fc_iterations && !row->skipped; iter++) {
		/* until it finishes, the iteration counts as failed: a failed
		 * assertion ends this process and leaves the row as it is */
		row->failed = true;
		snprintf(row->reason, sizeof row->reason, "#%d: see the failure below", iter);
		(void)fc_iteration(_i, iter);
		row->failed = false;
		if (!row->skipped)
			row->reason[0] = '\0';
	}
	if (!row->skipped && row->iterations == 0 && row->not_fired > 0) {
		row->skipped = true;
		snprintf(row->reason, sizeof row->reason,
		         "the point was never reached: no sweep ran between reads within %d s", FC_FIRE_WAIT_MS / 1000);
	}
}
END_TEST

/* Drives an async connection attempt for up to MS. Returns the final
 * status (PGRES_POLLING_OK or _FAILED), or PGRES_POLLING_ACTIVE if it is
 * still waiting when MS have passed. */
static PostgresPollingStatusType fc_drive_connect(PGconn *conn, int ms)
{
	int64_t deadline = tl_now_ms() + ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	for (;;) {
		struct pollfd pfd = {.fd = PQsocket(conn)};
		int64_t left = deadline - tl_now_ms();

		if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED)
			return st;
		if (left <= 0)
			return PGRES_POLLING_ACTIVE;
		pfd.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		if (poll(&pfd, 1, (int)left) > 0)
			st = PQconnectPoll(conn);
	}
}

static bool fc_select1(PGconn *conn)
{
	PGresult *res = PQexec(conn, "SELECT 1");
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	PQclear(res);
	return ok;
}

/* netproxy against a real PostgreSQL: every mode does what netproxy.h says. */
START_TEST(test_netproxy)
{
	char err[FC_ERR], conninfo[256];
	NetProxy *np = NULL;
	PGconn *conn, *held;
	struct pollfd pfd;
	int64_t t0, ms;
	NpStats st;

	ck_assert_msg(fc_env_ok, "test clusters could not be created: %s", fc_env_err);
	if (!tl_cluster_ensure_running(&fc_env, fc_cluster(0), err, sizeof err))
		ck_abort_msg("%s", err);
	if (!np_start(fc_cluster(0)->port, &np, err, sizeof err))
		ck_abort_msg("np_start: %s", err);
	snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=bank user=postgres connect_timeout=5",
	         np_port(np));

	/* PASS */
	conn = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "PASS: connect: %s", PQerrorMessage(conn));
	ck_assert_msg(fc_select1(conn), "PASS: SELECT 1: %s", PQerrorMessage(conn));

	/* DELAY: each chunk is held in both directions */
	ck_assert_msg(np_set_mode(np, NP_DELAY, 200, err, sizeof err), "%s", err);
	t0 = tl_now_ms();
	ck_assert_msg(fc_select1(conn), "DELAY: SELECT 1: %s", PQerrorMessage(conn));
	ms = tl_now_ms() - t0;
	ck_assert_msg(ms >= 390 && ms < 3000, "DELAY 200: a round trip took %" PRId64 " ms", ms);

	/* DROP: the open connection is reset, new ones too */
	ck_assert_msg(np_set_mode(np, NP_DROP, 0, err, sizeof err), "%s", err);
	ck_assert_msg(!fc_select1(conn), "DROP: SELECT 1 still worked");
	PQfinish(conn);
	t0 = tl_now_ms();
	conn = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(conn) != CONNECTION_OK, "DROP: a new connection worked");
	ck_assert_msg(tl_now_ms() - t0 < 2000, "DROP: refusing took %" PRId64 " ms", tl_now_ms() - t0);
	PQfinish(conn);

	/* PASS again */
	ck_assert_msg(np_set_mode(np, NP_PASS, 0, err, sizeof err), "%s", err);
	conn = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "PASS after DROP: %s", PQerrorMessage(conn));

	/* BLACKHOLE: silence for the open connection and for a new one */
	ck_assert_msg(np_set_mode(np, NP_BLACKHOLE, 0, err, sizeof err), "%s", err);
	ck_assert(PQsendQuery(conn, "SELECT 1") == 1);
	(void)PQflush(conn);
	pfd = (struct pollfd){.fd = PQsocket(conn), .events = POLLIN};
	ck_assert_msg(poll(&pfd, 1, 700) == 0, "BLACKHOLE: an answer came through");
	held = PQconnectStart(conninfo);
	ck_assert_ptr_nonnull(held);
	ck_assert_msg(fc_drive_connect(held, 700) == PGRES_POLLING_ACTIVE,
	              "BLACKHOLE: a new connection did not hang: %s", PQerrorMessage(held));

	/* HEAL: both held connections are reset, new ones work */
	ck_assert_msg(np_set_mode(np, NP_HEAL, 0, err, sizeof err), "%s", err);
	ck_assert_msg(poll(&pfd, 1, 2000) == 1, "HEAL: the held connection saw nothing");
	if (PQconsumeInput(conn) != 0 && PQstatus(conn) == CONNECTION_OK) {
		PGresult *res = PQgetResult(conn);

		ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "HEAL: the held connection was not reset");
		PQclear(res);
	}
	ck_assert_msg(fc_drive_connect(held, 2000) == PGRES_POLLING_FAILED,
	              "HEAL: the held connection attempt was not reset");
	PQfinish(held);
	PQfinish(conn);
	conn = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "HEAL: connect: %s", PQerrorMessage(conn));
	ck_assert_msg(fc_select1(conn), "HEAL: SELECT 1: %s", PQerrorMessage(conn));
	PQfinish(conn);

	np_get_stats(np, &st);
	ck_assert_msg(st.accepted >= 5 && st.resets >= 4 && st.bytes_up > 0 && st.bytes_down > 0,
	              "stats: accepted %" PRIu64 ", resets %" PRIu64, st.accepted, st.resets);
	np_stop(np);
}
END_TEST

/* ------------------------------------------------------------------- table */

static void fc_print_table(void)
{
	int i;

	printf("\nfault campaign: %d iteration(s) per scenario, seed %u, %d clients, timeout_ms %d; "
	       "resolve = ms from restart/resolve/heal until nothing is prepared\n",
	       fc_iterations, fc_seed, FC_THREADS, FC_TIMEOUT_MS);
	printf("%-34s %5s %9s %7s %6s %9s %7s %8s %5s %13s  %s\n", "scenario", "iters", "transfers", "commits", "lost",
	       "atomicity", "applied", "prepared", "late", "resolve med/max", "result");
	for (i = 0; i < FC_NSCEN; i++) {
		FcRow *r = &fc_rows[i];
		char resolve[32] = "-", late[16] = "-", result[480];

		if (r->nresolve > 0) {
			qsort(r->resolve_ms, (size_t)r->nresolve, sizeof r->resolve_ms[0], fc_cmp_int);
			snprintf(resolve, sizeof resolve, "%d/%d", r->resolve_ms[r->nresolve / 2],
			         r->resolve_ms[r->nresolve - 1]);
		}
		if (fc_scenarios[i].kind == FC_STOP || fc_scenarios[i].kind == FC_PARTITION)
			snprintf(late, sizeof late, "%ld", r->late);
		if (!r->ran)
			snprintf(result, sizeof result, "not run");
		else if (r->skipped)
			snprintf(result, sizeof result, "skipped: %s", r->reason);
		else if (r->failed)
			snprintf(result, sizeof result, "FAILED %s", r->reason);
		else if (r->iterations < fc_iterations)
			snprintf(result, sizeof result, "INCOMPLETE (%d of %d; %d not fired)", r->iterations,
			         fc_iterations, r->not_fired);
		else
			snprintf(result, sizeof result, "ok");
		if (r->ran && !r->skipped && r->not_fired > 0 && r->iterations == fc_iterations)
			snprintf(result, sizeof result, "ok (%d not fired)", r->not_fired);
		printf("%-34s %5d %9ld %7ld %6ld %9ld %7ld %8ld %5s %13s  %s", fc_scenarios[i].name, r->iterations,
		       r->transfers, r->ok200, r->lost_commits, r->atomicity, r->aborted_applied, r->left_prepared,
		       late, resolve, result);
		if (r->hazards > 0)
			printf(" (heuristic hazards: %ld)", r->hazards);
		printf("\n");
	}
	printf("\n");
	fflush(stdout);
}

static Suite *fc_suite(void)
{
	Suite *s = suite_create("fault_campaign");
	double timeout = 120.0 + 90.0 * fc_iterations;
	TCase *tc;
	int i;

	tc = tcase_create("netproxy");
	tcase_add_unchecked_fixture(tc, fc_clusters_setup, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_netproxy);
	suite_add_tcase(s, tc);
	for (i = 0; i < FC_NSCEN; i++) {
		tc = tcase_create(fc_scenarios[i].name);
		tcase_add_unchecked_fixture(tc, fc_clusters_setup, NULL);
		tcase_add_checked_fixture(tc, fc_setup, fc_teardown);
		tcase_set_timeout(tc, timeout);
		tcase_add_loop_test(tc, test_scenario, i, i + 1);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	const char *skip = tl_skip_reason();
	const char *s;
	SRunner *sr;
	int failed;

	if (skip != NULL) {
		fprintf(stderr, "fault_campaign: SKIP: %s\n", skip);
		return TL_EXIT_SKIP;
	}
	s = getenv("TWOPC_CAMPAIGN_ITERATIONS");
	if (s != NULL && atoi(s) > 0)
		fc_iterations = atoi(s) < FC_MAX_ITER ? atoi(s) : FC_MAX_ITER;
	s = getenv("TWOPC_CAMPAIGN_SEED");
	fc_seed = s != NULL ? (unsigned)strtoul(s, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
	fc_rows = mmap(NULL, sizeof(FcRow) * FC_NSCEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fc_rows == MAP_FAILED) {
		perror("fault_campaign: mmap");
		return EXIT_FAILURE;
	}
	memset(fc_rows, 0, sizeof(FcRow) * FC_NSCEN);
	fprintf(stderr, "fault_campaign: %d iteration(s) per scenario, seed %u\n", fc_iterations, fc_seed);
	sr = srunner_create(fc_suite());
	srunner_run_all(sr, CK_SILENT);
	fc_print_table();
	srunner_print(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (fc_env.keep_tmpdir && fc_env.tmpdir[0] != '\0')
		fprintf(stderr, "fault_campaign: kept %s\n", fc_env.tmpdir);
	tl_env_destroy(&fc_env);
	return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
