/*
 * benchclient: the shared half of the libpq load generators of bench/run
 * (see benchclient.h). Threads, not processes: each client thread owns its
 * two connections and its latency array, so the measured path shares
 * nothing and takes no lock; the main thread only starts the clock, stops
 * it and adds up.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchclient.h"

#define MAX_CLIENTS       10000
#define ERRORS_PER_THREAD 3

static const char *debit_sql = "UPDATE accounts SET balance = balance - $1 WHERE id = $2";
static const char *credit_sql = "UPDATE accounts SET balance = balance + $1 WHERE id = $2";

static const BenchProgram *program;
static int accounts = 10000;
static int lock_timeout_ms = 1000;
static atomic_bool stop_flag;
static int64_t deadline_us; /* written before the threads leave the barrier */
static pthread_barrier_t start_barrier;
static pthread_mutex_t stderr_mu = PTHREAD_MUTEX_INITIALIZER;

int64_t bench_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rng_next(BenchThread *t)
{
	uint64_t x = t->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return t->rng = x;
}

void bench_error(BenchThread *t, const char *what, PGconn *conn, const PGresult *res)
{
	if (t->errors_printed >= ERRORS_PER_THREAD)
		return;
	t->errors_printed++;
	const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
	if ((msg == NULL || *msg == '\0') && conn != NULL)
		msg = PQerrorMessage(conn);
	pthread_mutex_lock(&stderr_mu);
	fprintf(stderr, "%s: client %d: %s: %s%s", program->name, t->id, what, msg && *msg ? msg : "(no message)",
	        msg && *msg && msg[strlen(msg) - 1] == '\n' ? "" : "\n");
	if (t->errors_printed == ERRORS_PER_THREAD)
		fprintf(stderr, "%s: client %d: further errors of this client are counted, not printed\n",
		        program->name, t->id);
	pthread_mutex_unlock(&stderr_mu);
}

static bool exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	return ok;
}

bool bench_connect(BenchThread *t, int part)
{
	char appname[64], sql[128];
	const char *keys[] = {"dbname", "application_name", NULL};
	const char *vals[] = {t->conninfo[part], appname, NULL};
	PGresult *r;

	if (t->conn[part] != NULL)
		PQfinish(t->conn[part]);
	snprintf(appname, sizeof(appname), "%s", program->name);
	/* expand_dbname: the first value is a whole conninfo string. */
	t->conn[part] = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(t->conn[part]) != CONNECTION_OK) {
		bench_error(t, "connect", t->conn[part], NULL);
		return false;
	}
	/* The same deadlock breaker as twopcd's default lock_timeout_ms, set
	 * once per session instead of per transaction: the ceiling client can
	 * deadlock across participants like twopcd (the manual one cannot: it
	 * always goes A, then B). */
	snprintf(sql, sizeof(sql), "SET lock_timeout = %d", lock_timeout_ms);
	if (!exec_ok(t->conn[part], sql)) {
		bench_error(t, "SET lock_timeout", t->conn[part], NULL);
		return false;
	}
	r = PQprepare(t->conn[part], BENCH_STMT_DEBIT, debit_sql, 2, NULL);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	r = PQprepare(t->conn[part], BENCH_STMT_CREDIT, credit_sql, 2, NULL);
	ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		bench_error(t, "PQprepare", t->conn[part], NULL);
		return false;
	}
	if (program->after_connect != NULL && !program->after_connect(t, part))
		return false;
	return true;
}

static void record(BenchThread *t, uint32_t us)
{
	if (t->nlat == t->caplat) {
		t->caplat = t->caplat ? t->caplat * 2 : 65536;
		t->lat_us = realloc(t->lat_us, t->caplat * sizeof(uint32_t));
		if (t->lat_us == NULL) {
			fprintf(stderr, "%s: out of memory\n", program->name);
			exit(1);
		}
	}
	t->lat_us[t->nlat++] = us;
}

static void *client_main(void *arg)
{
	BenchThread *t = arg;

	pthread_barrier_wait(&start_barrier);
	while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
		BenchTransfer x;
		uint64_t r = rng_next(t);
		x.debit = (int)(r & 1);
		snprintf(x.account[0], sizeof(x.account[0]), "%d", (int)((r >> 1) % (uint64_t)accounts) + 1);
		snprintf(x.account[1], sizeof(x.account[1]), "%d", (int)((r >> 33) % (uint64_t)accounts) + 1);
		snprintf(x.gid, sizeof(x.gid), "bench_%ld_%d_%" PRIu64, (long)getpid(), t->id, t->seq++);

		int64_t t0 = bench_now_us();
		bool ok = program->tx(t, &x);
		int64_t t1 = bench_now_us();
		if (t1 > deadline_us) {
			t->late++;
			break;
		}
		if (ok) {
			t->ok++;
			record(t, (uint32_t)(t1 - t0 < UINT32_MAX ? t1 - t0 : UINT32_MAX));
		} else {
			t->errors++;
		}
		for (int p = 0; p < BENCH_NPART; p++) {
			if (PQstatus(t->conn[p]) != CONNECTION_OK && !bench_connect(t, p))
				return NULL; /* reported; the thread stops */
		}
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least p of all at or below it. */
static double percentile_ms(const uint32_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)(p * (double)n);
	if ((double)rank < p * (double)n)
		rank++;
	if (rank < 1)
		rank = 1;
	return v[rank - 1] / 1000.0;
}

/* Prepared transactions of this run left on the participant (our GID
 * prefix); rolls them back so the clusters end clean, and returns how many
 * there were (-1: could not look). */
static long prepared_left(const char *conninfo)
{
	char sql[256];
	long n = -1;
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "%s: cannot connect to check for prepared transactions: %s", program->name,
		        PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	snprintf(sql, sizeof(sql), "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'bench\\_%ld\\_%%'",
	         (long)getpid());
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		n = PQntuples(r);
		for (int i = 0; i < PQntuples(r); i++) {
			snprintf(sql, sizeof(sql), "ROLLBACK PREPARED '%s'", PQgetvalue(r, i, 0));
			fprintf(stderr, "%s: left prepared: %s (rolling it back)\n", program->name,
			        PQgetvalue(r, i, 0));
			if (!exec_ok(c, sql))
				fprintf(stderr, "%s: %s failed: %s", program->name, sql, PQerrorMessage(c));
		}
	}
	PQclear(r);
	PQfinish(c);
	return n;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: %s [-c CLIENTS] [-d SECONDS] [-a ACCOUNTS] [-l LOCK_TIMEOUT_MS] CONNINFO_A CONNINFO_B\n"
	        "  2-participant transfers (amount 1, random accounts 1..ACCOUNTS in table accounts)\n"
	        "  %s\n"
	        "  -c CLIENTS    client threads, each with one connection to A and one to B (default 32)\n"
	        "  -d SECONDS    measured duration (default 10)\n"
	        "  -a ACCOUNTS   accounts per participant, ids 1..N (default 10000)\n"
	        "  -l MS         lock_timeout of every session (default 1000, like twopcd's lock_timeout_ms)\n"
	        "prints transfer.KEY=VALUE lines like bench/transfer.lua (see bench/README.md)\n",
	        program->name, program->usage_extra);
}

static bool parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return false;
	*out = (int)v;
	return true;
}

int bench_main(const BenchProgram *prog, int argc, char **argv)
{
	int clients = 32, duration = 10, opt, rc = 1;
	BenchThread *th = NULL;
	pthread_t *tids = NULL;
	int started = 0;

	program = prog;
	while ((opt = getopt(argc, argv, "c:d:a:l:h")) != -1) {
		switch (opt) {
		case 'c':
			if (!parse_int(optarg, 1, MAX_CLIENTS, &clients))
				goto bad_usage;
			break;
		case 'd':
			if (!parse_int(optarg, 1, 86400, &duration))
				goto bad_usage;
			break;
		case 'a':
			if (!parse_int(optarg, 1, 1000000000, &accounts))
				goto bad_usage;
			break;
		case 'l':
			if (!parse_int(optarg, 0, 3600000, &lock_timeout_ms))
				goto bad_usage;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad_usage;
		}
	}
	if (argc - optind != BENCH_NPART)
		goto bad_usage;

	th = calloc((size_t)clients, sizeof(*th));
	tids = calloc((size_t)clients, sizeof(*tids));
	if (th == NULL || tids == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog->name);
		goto done;
	}
	for (int i = 0; i < clients; i++) {
		th[i].id = i;
		th[i].rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 20) ^ (uint64_t)bench_now_us() ^
		            ((uint64_t)(i + 1) * 0xBF58476D1CE4E5B9ull);
		if (th[i].rng == 0)
			th[i].rng = 1;
		for (int p = 0; p < BENCH_NPART; p++) {
			th[i].conninfo[p] = argv[optind + p];
			if (!bench_connect(&th[i], p))
				goto done;
		}
	}

	pthread_barrier_init(&start_barrier, NULL, (unsigned)clients + 1);
	for (int i = 0; i < clients; i++) {
		if (pthread_create(&tids[i], NULL, client_main, &th[i]) != 0) {
			fprintf(stderr, "%s: cannot start thread %d\n", prog->name, i);
			exit(1); /* the others wait at the barrier forever */
		}
		started++;
	}
	int64_t t_start = bench_now_us();
	deadline_us = t_start + (int64_t)duration * 1000000;
	pthread_barrier_wait(&start_barrier);
	while (bench_now_us() < deadline_us) {
		int64_t left = deadline_us - bench_now_us();
		struct timespec ts = {.tv_sec = left / 1000000, .tv_nsec = (left % 1000000) * 1000};
		if (left > 0)
			nanosleep(&ts, NULL);
	}
	atomic_store(&stop_flag, true);
	for (int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	double secs = (deadline_us - t_start) / 1e6;

	uint64_t ok = 0, errors = 0, late = 0, unsettled = 0;
	size_t n = 0;
	for (int i = 0; i < clients; i++) {
		unsettled += th[i].left_prepared;
		ok += th[i].ok;
		errors += th[i].errors;
		late += th[i].late;
		n += th[i].nlat;
	}
	uint32_t *all = malloc((n ? n : 1) * sizeof(uint32_t));
	if (all == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog->name);
		goto done;
	}
	size_t k = 0;
	double sum = 0;
	for (int i = 0; i < clients; i++) {
		memcpy(all + k, th[i].lat_us, th[i].nlat * sizeof(uint32_t));
		k += th[i].nlat;
	}
	qsort(all, n, sizeof(uint32_t), cmp_u32);
	for (size_t i = 0; i < n; i++)
		sum += all[i];

	long left_a = prepared_left(argv[optind]);
	long left_b = prepared_left(argv[optind + 1]);

	printf("transfer.requests=%" PRIu64 "\n", ok + errors);
	printf("transfer.ok=%" PRIu64 "\n", ok);
	printf("transfer.errors=%" PRIu64 "\n", errors);
	printf("transfer.late=%" PRIu64 "\n", late);
	printf("transfer.unsettled=%" PRIu64 "\n", unsettled);
	printf("transfer.duration_s=%.3f\n", secs);
	printf("transfer.tx_per_s=%.1f\n", secs > 0 ? ok / secs : 0);
	printf("transfer.mean_ms=%.3f\n", n ? sum / (double)n / 1000.0 : 0);
	printf("transfer.p50_ms=%.3f\n", percentile_ms(all, n, 0.50));
	printf("transfer.p90_ms=%.3f\n", percentile_ms(all, n, 0.90));
	printf("transfer.p99_ms=%.3f\n", percentile_ms(all, n, 0.99));
	printf("transfer.max_ms=%.3f\n", n ? all[n - 1] / 1000.0 : 0);
	if (left_a >= 0 && left_b >= 0)
		printf("transfer.prepared_left=%ld\n", left_a + left_b);
	else
		printf("transfer.prepared_left=unknown\n");
	free(all);
	rc = 0;
	goto done;

bad_usage:
	usage(stderr);
	return 2;
done:
	if (th != NULL) {
		for (int i = 0; i < clients; i++) {
			for (int p = 0; p < BENCH_NPART; p++) {
				if (th[i].conn[p] != NULL)
					PQfinish(th[i].conn[p]);
			}
			free(th[i].lat_us);
		}
	}
	free(th);
	free(tids);
	return rc;
}
