/*
 * request: parses and validates the body of POST /v1/transactions into a
 * TxnRequest. Pure (no I/O), so unit tests and the fuzzer drive it directly.
 * A rejection names the offending field ("branches.bank_a[2].params") and
 * says what is wrong with it.
 *
 * Parameters are turned into the text PostgreSQL binds: JSON null is SQL
 * NULL, strings as they are, numbers and booleans as their JSON text,
 * objects and arrays as compact JSON. They are never spliced into SQL.
 */
#ifndef TWOPC_REQUEST_H
#define TWOPC_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

typedef struct ReqStatement {
	const char *sql;
	int nparams;
	const char **params; /* NULL entries are SQL NULL */
	int64_t expect_rows; /* -1: no guard */
} ReqStatement;

typedef struct ReqBranch {
	const ParticipantConfig *participant;
	ReqStatement *stmts;
	size_t nstmts;
} ReqBranch;

typedef struct TxnRequest {
	ReqBranch *branches;
	size_t nbranches;
	int64_t timeout_ms;
	/* Parsed by the fast path (request_fast.c): one block holding the
	 * branches, statements, parameter lists and texts; json and owned
	 * are then unused. */
	void *arena;
	/* Parsed by jansson (request.c): */
	void *json;   /* the parsed document: owns the SQL and string params */
	char **owned; /* parameter texts we formatted */
	size_t nowned;
} TxnRequest;

/* Parses body: the common valid body in one pass without jansson, anything
 * else (every invalid body among it) with jansson, which names the field at
 * fault. On failure returns false with field (may be "") and err. */
bool request_parse(const char *body, size_t len, const Config *cfg, TxnRequest *out, char *field, size_t fieldlen,
                   char *err, size_t errlen) WARN_UNUSED;
/* Frees what req holds and empties it; idempotent. */
void request_free(TxnRequest *req);

#endif
