/*
 * benchclient: what bench/twopc_manual.c and bench/twopc_ceiling.c share —
 * the command line, client threads that each own one connection to each of
 * the two participants, the clock (duration-based runs), per-transaction
 * latencies, and the report in the "transfer.KEY=VALUE" lines that
 * bench/transfer.lua prints for wrk, so bench/run parses all clients alike.
 *
 * A client program supplies one function that runs one transfer (a debit on
 * one participant, a credit on the other, amount 1, random accounts) and
 * says whether it committed. Everything else is here.
 */
#ifndef TWOPC_BENCHCLIENT_H
#define TWOPC_BENCHCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#define BENCH_NPART 2

/* The prepared statements every connection has (PQprepare at connect). */
#define BENCH_STMT_DEBIT  "bench_debit"
#define BENCH_STMT_CREDIT "bench_credit"

typedef struct BenchThread {
	int id;                    /* 0..clients-1 */
	PGconn *conn[BENCH_NPART]; /* [0] participant A, [1] participant B */
	const char *conninfo[BENCH_NPART];
	uint64_t rng;     /* xorshift64 state */
	uint64_t seq;     /* transactions started, for GIDs */
	uint32_t *lat_us; /* latencies of the committed transfers */
	size_t nlat, caplat;
	uint64_t ok, errors, late; /* late: finished after the deadline, not counted */
	uint64_t left_prepared;    /* branches this thread could not settle */
	int errors_printed;
} BenchThread;

/* One transfer. The caller fills the account ids, which participant is
 * debited and the GID; tx returns true when both branches committed. On
 * failure it must leave nothing prepared (ROLLBACK PREPARED what it
 * prepared; t->left_prepared counts what it could not) and should
 * report why with bench_error. */
typedef struct BenchTransfer {
	int debit; /* 0 or 1: which participant is debited */
	char account[BENCH_NPART][16];
	char gid[64];
} BenchTransfer;

typedef bool (*BenchTxFn)(BenchThread *t, const BenchTransfer *x);
/* Called once per connection after connecting (e.g. to enter pipeline
 * mode); false stops the run. */
typedef bool (*BenchConnFn)(BenchThread *t, int part);

typedef struct BenchProgram {
	const char *name;        /* for messages and application_name */
	const char *usage_extra; /* a line about the method, for --help */
	BenchTxFn tx;
	BenchConnFn after_connect; /* may be NULL */
} BenchProgram;

/* Parses argv, connects, runs, reports on stdout; the process exit code. */
int bench_main(const BenchProgram *prog, int argc, char **argv);

/* A message about a failed transfer on stderr (the first few per thread). */
void bench_error(BenchThread *t, const char *what, PGconn *conn, const PGresult *res);

/* (Re)connects t->conn[part]: session settings and prepared statements. */
bool bench_connect(BenchThread *t, int part);

/* The prepared statement that a participant runs in transfer x. */
static inline const char *bench_stmt(const BenchTransfer *x, int part)
{
	return part == x->debit ? BENCH_STMT_DEBIT : BENCH_STMT_CREDIT;
}

int64_t bench_now_us(void);

#endif
