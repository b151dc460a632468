/*
 * check_request: unit tests for coordinator/request.c, the validator of
 * POST /v1/transactions bodies.
 *
 * Everything a client sends passes through request_parse before any
 * database sees it. Two things matter most: parameters reach PostgreSQL as
 * exactly the text we expect (never spliced into SQL), and a branch can
 * never end its own transaction (a COMMIT inside a branch would commit it
 * outside two-phase commit and break atomicity). So these tests pin the
 * bound text of every JSON type, the exact field and message of every
 * rejection, and the transaction-control filter against the way
 * PostgreSQL's own lexer reads comments. Every TxnRequest is freed, so the
 * file runs clean under ASan/LSan and valgrind.
 *
 * request_parse has two paths (see coordinator/request_fast.c): a single
 * pass for the common valid body, and jansson for everything else. The
 * "fast" tests check which path a body takes (request_parse_fast alone,
 * and TxnRequest.arena after request_parse), that the fast path's request
 * is the jansson path's field for field (request_same), and that every
 * body it leaves, valid or not, gets exactly the jansson path's verdict.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "request_int.h"
#include "request_same.h"

static Config cfg;

static void setup(void)
{
	static const char text[] = "[coordinator]\n"
	                           "id = c1\n"
	                           "log_dir = /x\n"
	                           "default_timeout_ms = 5000\n"
	                           "max_timeout_ms = 60000\n"
	                           "max_branches = 3\n"
	                           "max_statements = 50\n"
	                           "max_params = 20\n"
	                           "[participant bank_a]\n"
	                           "conninfo = dbname=a\n"
	                           "[participant bank_b]\n"
	                           "conninfo = dbname=b\n"
	                           "[participant bank_c]\n"
	                           "conninfo = dbname=c\n"
	                           "[participant bank_d]\n"
	                           "conninfo = dbname=d\n";
	char err[512];
	ck_assert_msg(config_load_string(text, "test.ini", &cfg, err, sizeof(err)), "%s", err);
}

static void teardown(void)
{
	config_free(&cfg);
}

#define ck_assert_contains(s, sub)                                                                                     \
	ck_assert_msg(strstr((s), (sub)) != NULL, "\"%s\" does not contain \"%s\"", (s), (sub))

static void parse_ok(const char *body, TxnRequest *req)
{
	char field[256] = "", err[512] = "";
	bool ok = request_parse(body, strlen(body), &cfg, req, field, sizeof(field), err, sizeof(err));
	ck_assert_msg(ok, "rejected (field \"%s\": %s): %s", field, err, body);
}

/* The body must be rejected with exactly this field and a message holding
 * errsub; the request must come back empty (nothing left to free). */
static void expect_reject_len(const char *body, size_t len, const char *want_field, const char *errsub)
{
	TxnRequest req;
	char field[256], err[512];

	memset(field, 'X', sizeof(field));
	field[sizeof(field) - 1] = '\0';
	err[0] = '\0';
	bool ok = request_parse(body, len, &cfg, &req, field, sizeof(field), err, sizeof(err));
	if (ok)
		request_free(&req);
	ck_assert_msg(!ok, "accepted: %.300s", body);
	ck_assert_msg(strcmp(field, want_field) == 0, "field \"%s\", want \"%s\" (err: %s) for %.300s", field,
	              want_field, err, body);
	ck_assert_msg(strstr(err, errsub) != NULL, "err \"%s\" does not contain \"%s\" for %.300s", err, errsub, body);
	ck_assert_ptr_null(req.branches);
	ck_assert_ptr_null(req.json);
	ck_assert_ptr_null(req.owned);
	ck_assert_uint_eq(req.nbranches, 0);
}

static void expect_reject(const char *body, const char *want_field, const char *errsub)
{
	expect_reject_len(body, strlen(body), want_field, errsub);
}

/* A one-statement body for bank_a; sql is a JSON string literal's contents. */
static void one_sql(char *buf, size_t len, const char *sql_json)
{
	snprintf(buf, len, "{\"branches\":{\"bank_a\":[{\"sql\":\"%s\"}]}}", sql_json);
}

/* ---- valid requests --------------------------------------------------------- */

START_TEST(test_valid_request_every_param_type)
{
	static const char body[] =
	    "{\"timeout_ms\": 1234, \"branches\": {"
	    "  \"bank_b\": [ {\"sql\": \"UPDATE acct SET bal = bal + $1 WHERE id = $2\", \"params\": [10, \"x\"],"
	    "                \"expect_rows\": 1} ],"
	    "  \"bank_a\": ["
	    "     {\"sql\": \"SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13\","
	    "      \"params\": [null, \"s\", 42, -7, 1.5, 0.1, 1e300, true, false, {\"a\":[1,2]}, [1,\"x\"],"
	    "                   \"\", \"caf\\u00e9 \\\"q\\\" \\\\ \\n\"]},"
	    "     {\"sql\": \"DELETE FROM t\", \"expect_rows\": 0},"
	    "     {\"sql\": \"SELECT 1\", \"params\": []}"
	    "  ]}}";
	static const char *const want[] = {NULL,
	                                   "s",
	                                   "42",
	                                   "-7",
	                                   "1.5",
	                                   "0.1",
	                                   "1e+300",
	                                   "true",
	                                   "false",
	                                   "{\"a\":[1,2]}",
	                                   "[1,\"x\"]",
	                                   "",
	                                   "caf\xc3\xa9 \"q\" \\ \n"};
	TxnRequest req;

	parse_ok(body, &req);
	ck_assert_int_eq(req.timeout_ms, 1234);
	ck_assert_uint_eq(req.nbranches, 2);

	/* Branch order is the order in the body. */
	ReqBranch *b0 = &req.branches[0], *b1 = &req.branches[1];
	ck_assert_ptr_eq(b0->participant, config_find_participant(&cfg, "bank_b"));
	ck_assert_str_eq(b0->participant->name, "bank_b");
	ck_assert_uint_eq(b0->participant->index, 1);
	ck_assert_ptr_eq(b1->participant, config_find_participant(&cfg, "bank_a"));
	ck_assert_uint_eq(b1->participant->index, 0);

	ck_assert_uint_eq(b0->nstmts, 1);
	ck_assert_str_eq(b0->stmts[0].sql, "UPDATE acct SET bal = bal + $1 WHERE id = $2");
	ck_assert_int_eq(b0->stmts[0].nparams, 2);
	ck_assert_str_eq(b0->stmts[0].params[0], "10");
	ck_assert_str_eq(b0->stmts[0].params[1], "x");
	ck_assert_int_eq(b0->stmts[0].expect_rows, 1);

	ck_assert_uint_eq(b1->nstmts, 3);
	ReqStatement *s = &b1->stmts[0];
	ck_assert_str_eq(s->sql, "SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13");
	ck_assert_int_eq(s->nparams, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < s->nparams; i++) {
		if (want[i] == NULL)
			ck_assert_msg(s->params[i] == NULL, "param %d: JSON null must be a NULL pointer, got \"%s\"", i,
			              s->params[i]);
		else
			ck_assert_msg(s->params[i] != NULL && strcmp(s->params[i], want[i]) == 0,
			              "param %d: got \"%s\", want \"%s\"", i, s->params[i] ? s->params[i] : "(NULL)",
			              want[i]);
	}
	ck_assert_int_eq(s->expect_rows, -1); /* no guard */
	ck_assert_str_eq(b1->stmts[1].sql, "DELETE FROM t");
	ck_assert_int_eq(b1->stmts[1].expect_rows, 0);
	ck_assert_int_eq(b1->stmts[1].nparams, 0);
	ck_assert_int_eq(b1->stmts[2].nparams, 0);
	ck_assert_int_eq(b1->stmts[2].expect_rows, -1);
	request_free(&req);
	ck_assert_ptr_null(req.branches);
	ck_assert_ptr_null(req.json);
	request_free(&req); /* idempotent on a freed request */
}
END_TEST

/* More numbers: every bound text must read back as the same value. */
START_TEST(test_number_params)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
	    {"0", "0"},
	    {"-0", "0"},
	    {"9223372036854775807", "9223372036854775807"},
	    {"-9223372036854775808", "-9223372036854775808"},
	    {"9007199254740993", "9007199254740993"}, /* integers stay exact */
	    {"0.5", "0.5"},
	    {"-2.25", "-2.25"},
	    {"1e-7", "1e-07"},
	    {"3.141592653589793", "3.141592653589793"},
	    {"1e308", "1e+308"},
	    {"0.30000000000000004", "0.30000000000000004"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[256];
		TxnRequest req;
		snprintf(body, sizeof(body), "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[%s]}]}}",
		         cases[i].json);
		parse_ok(body, &req);
		ck_assert_msg(strcmp(req.branches[0].stmts[0].params[0], cases[i].want) == 0,
		              "%s bound as \"%s\", want \"%s\"", cases[i].json, req.branches[0].stmts[0].params[0],
		              cases[i].want);
		request_free(&req);
	}
}
END_TEST

START_TEST(test_timeout_default_and_explicit)
{
	TxnRequest req;

	parse_ok("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}", &req);
	ck_assert_int_eq(req.timeout_ms, 5000);
	ck_assert_uint_eq(req.nbranches, 1);
	ck_assert_int_eq(req.branches[0].stmts[0].nparams, 0);
	ck_assert_ptr_null(req.branches[0].stmts[0].params);
	request_free(&req);

	parse_ok("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]},\"timeout_ms\":1}", &req);
	ck_assert_int_eq(req.timeout_ms, 1);
	request_free(&req);

	parse_ok("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]},\"timeout_ms\":60000}", &req);
	ck_assert_int_eq(req.timeout_ms, 60000);
	request_free(&req);
}
END_TEST

START_TEST(test_branch_order_preserved)
{
	TxnRequest req;

	parse_ok("{\"branches\":{\"bank_c\":[{\"sql\":\"SELECT 3\"}],\"bank_a\":[{\"sql\":\"SELECT 1\"}],"
	         "\"bank_b\":[{\"sql\":\"SELECT 2\"},{\"sql\":\"SELECT 22\"}]}}",
	         &req);
	ck_assert_uint_eq(req.nbranches, 3);
	ck_assert_str_eq(req.branches[0].participant->name, "bank_c");
	ck_assert_uint_eq(req.branches[0].participant->index, 2);
	ck_assert_str_eq(req.branches[0].stmts[0].sql, "SELECT 3");
	ck_assert_str_eq(req.branches[1].participant->name, "bank_a");
	ck_assert_str_eq(req.branches[1].stmts[0].sql, "SELECT 1");
	ck_assert_str_eq(req.branches[2].participant->name, "bank_b");
	ck_assert_uint_eq(req.branches[2].nstmts, 2);
	ck_assert_str_eq(req.branches[2].stmts[0].sql, "SELECT 2");
	ck_assert_str_eq(req.branches[2].stmts[1].sql, "SELECT 22");
	request_free(&req);
}
END_TEST

/* ---- rejections ------------------------------------------------------------------ */

START_TEST(test_reject_malformed_json)
{
	expect_reject("", "", "malformed JSON");
	expect_reject("{", "", "malformed JSON");
	expect_reject("{\"branches\":}", "", "malformed JSON");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}} trailing", "", "malformed JSON");
	expect_reject("{'branches':{}}", "", "malformed JSON");
	expect_reject("42", "", "malformed JSON");
	expect_reject("\"str\"", "", "malformed JSON");
	expect_reject("null", "", "malformed JSON");
	/* Not an object at the top. */
	expect_reject("[1,2]", "", "must be a JSON object");
	expect_reject("[]", "", "must be a JSON object");
	/* The length is honoured: a valid prefix followed by garbage is fine
	 * when only the prefix is passed, and a cut body is malformed. */
	static const char body[] = "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}GARBAGE";
	TxnRequest req;
	char field[64], err[256];
	ck_assert(request_parse(body, sizeof(body) - 1 - 7, &cfg, &req, field, sizeof(field), err, sizeof(err)));
	request_free(&req);
	expect_reject_len(body, 20, "", "malformed JSON");
}
END_TEST

START_TEST(test_reject_structure)
{
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]},\"extra\":1}", "extra", "unknown field 'extra'");
	expect_reject("{\"Branches\":{}}", "Branches", "unknown field");
	expect_reject("{}", "branches", "branches is required");
	expect_reject("{\"timeout_ms\":100}", "branches", "branches is required");
	expect_reject("{\"branches\":[]}", "branches", "must be an object");
	expect_reject("{\"branches\":\"bank_a\"}", "branches", "must be an object");
	expect_reject("{\"branches\":null}", "branches", "must be an object");
	expect_reject("{\"branches\":{}}", "branches", "empty");
	expect_reject("{\"branches\":{\"bank_z\":[{\"sql\":\"x\"}]}}", "branches.bank_z",
	              "unknown participant 'bank_z'");
	/* An unknown participant after a valid one. */
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}],\"BANK_B\":[{\"sql\":\"x\"}]}}", "branches.BANK_B",
	              "unknown participant");
	expect_reject("{\"branches\":{\"bank_a\":{\"sql\":\"x\"}}}", "branches.bank_a", "must be an array");
	expect_reject("{\"branches\":{\"bank_a\":\"SELECT 1\"}}", "branches.bank_a", "must be an array");
	expect_reject("{\"branches\":{\"bank_a\":[]}}", "branches.bank_a", "has no statements");
	expect_reject("{\"branches\":{\"bank_a\":[\"SELECT 1\"]}}", "branches.bank_a[0]", "must be an object");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\"},null]}}", "branches.bank_a[1]", "must be an object");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"param\":[]}]}}", "branches.bank_a[0].param",
	              "unknown field 'param'");
	expect_reject("{\"branches\":{\"bank_a\":[{\"params\":[1]}]}}", "branches.bank_a[0].sql", "sql is required");
	expect_reject("{\"branches\":{\"bank_a\":[{}]}}", "branches.bank_a[0].sql", "sql is required");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":1}]}}", "branches.bank_a[0].sql", "must be a string");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":null}]}}", "branches.bank_a[0].sql", "must be a string");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":[\"x\"]}]}}", "branches.bank_a[0].sql", "must be a string");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"\"}]}}", "branches.bank_a[0].sql", "sql is empty");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":{}}]}}", "branches.bank_a[0].params",
	              "must be an array");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":\"1\"}]}}", "branches.bank_a[0].params",
	              "must be an array");
	/* A later statement of a later branch: the field says exactly where. */
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}],\"bank_b\":[{\"sql\":\"y\"},{\"sql\":\"z\","
	              "\"params\":7}]}}",
	              "branches.bank_b[1].params", "must be an array");
}
END_TEST

START_TEST(test_reject_expect_rows)
{
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":-1}]}}",
	              "branches.bank_a[0].expect_rows", "non-negative integer");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":1.5}]}}",
	              "branches.bank_a[0].expect_rows", "non-negative integer");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":1.0}]}}",
	              "branches.bank_a[0].expect_rows", "non-negative integer");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":\"1\"}]}}",
	              "branches.bank_a[0].expect_rows", "non-negative integer");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":null}]}}",
	              "branches.bank_a[0].expect_rows", "non-negative integer");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":true}]}}",
	              "branches.bank_a[0].expect_rows", "non-negative integer");
}
END_TEST

START_TEST(test_reject_timeout)
{
	expect_reject("{\"timeout_ms\":0,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "timeout_ms",
	              "positive integer");
	expect_reject("{\"timeout_ms\":-5,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "timeout_ms",
	              "positive integer");
	expect_reject("{\"timeout_ms\":\"100\",\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "timeout_ms",
	              "positive integer");
	expect_reject("{\"timeout_ms\":100.0,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "timeout_ms",
	              "positive integer");
	expect_reject("{\"timeout_ms\":null,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "timeout_ms",
	              "positive integer");
	expect_reject("{\"timeout_ms\":60001,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "timeout_ms",
	              "exceeds the maximum of 60000");
	expect_reject("{\"timeout_ms\":9223372036854775807,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "timeout_ms",
	              "exceeds the maximum");
}
END_TEST

START_TEST(test_reject_duplicate_keys)
{
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]},\"branches\":{\"bank_b\":[{\"sql\":\"y\"}]}}", "",
	              "duplicate object key");
	/* The same participant twice would otherwise be one branch or two. */
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}],\"bank_a\":[{\"sql\":\"y\"}]}}", "",
	              "duplicate object key");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"sql\":\"COMMIT\"}]}}", "", "duplicate object key");
	expect_reject("{\"timeout_ms\":1,\"timeout_ms\":2,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "",
	              "duplicate object key");
}
END_TEST

/* Builds a body with nstmts statements of nparams parameters each. */
static char *big_body(int nstmts, int nparams)
{
	size_t cap = 64 + (size_t)nstmts * (32 + (size_t)nparams * 2);
	char *b = malloc(cap);
	size_t o = 0;

	ck_assert_ptr_nonnull(b);
	o += (size_t)snprintf(b + o, cap - o, "{\"branches\":{\"bank_a\":[");
	for (int s = 0; s < nstmts; s++) {
		o += (size_t)snprintf(b + o, cap - o, "%s{\"sql\":\"SELECT 1\",\"params\":[", s ? "," : "");
		for (int p = 0; p < nparams; p++)
			o += (size_t)snprintf(b + o, cap - o, "%s1", p ? "," : "");
		o += (size_t)snprintf(b + o, cap - o, "]}");
	}
	o += (size_t)snprintf(b + o, cap - o, "]}}");
	ck_assert_uint_lt(o, cap);
	return b;
}

START_TEST(test_limits)
{
	TxnRequest req;
	char *b;

	/* The limits come from the config (max_statements = 50, max_params =
	 * 20, max_branches = 3 above); a rejection names the key. */
	b = big_body(50, 0);
	parse_ok(b, &req);
	ck_assert_uint_eq(req.branches[0].nstmts, 50);
	request_free(&req);
	free(b);

	b = big_body(51, 0);
	expect_reject(b, "branches.bank_a", "has 51 statements; at most 50 are allowed (max_statements)");
	free(b);

	b = big_body(1, 20);
	parse_ok(b, &req);
	ck_assert_int_eq(req.branches[0].stmts[0].nparams, 20);
	ck_assert_str_eq(req.branches[0].stmts[0].params[19], "1");
	request_free(&req);
	free(b);

	b = big_body(1, 21);
	expect_reject(b, "branches.bank_a[0].params", "has 21 parameters; at most 20 are allowed (max_params)");
	free(b);

	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"bank_b\":[{\"sql\":\"SELECT 1\"}],"
	              "\"bank_c\":[{\"sql\":\"SELECT 1\"}],\"bank_d\":[{\"sql\":\"SELECT 1\"}]}}",
	              "branches", "has 4 branches; at most 3 are allowed (max_branches)");
}
END_TEST

/* A NUL byte cannot be part of a PostgreSQL text value (libpq would cut the
 * string there). jansson refuses \u0000 unless asked, so it is a JSON error. */
START_TEST(test_reject_nul)
{
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"a\\u0000b\"]}]}}", "",
	              "\\u0000 is not allowed");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\\u0000; COMMIT\"}]}}", "",
	              "\\u0000 is not allowed");
	/* A raw NUL byte inside the body. */
	static const char raw[] = "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\0\"}]}}";
	expect_reject_len(raw, sizeof(raw) - 1, "", "malformed JSON");
}
END_TEST

/* JSON has no NaN or infinity, but 1e999 overflows a double: jansson must
 * refuse it (a 400), not hand us inf to bind. Likewise integers past int64. */
START_TEST(test_reject_huge_numbers)
{
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[1e999]}]}}", "", "overflow");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[-1e999]}]}}", "", "overflow");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[123456789012345678901234]}]}}", "",
	              "too big integer");
	expect_reject("{\"timeout_ms\":1e999,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", "", "overflow");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[NaN]}]}}", "", "malformed JSON");
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[Infinity]}]}}", "",
	              "malformed JSON");
}
END_TEST

/* Statements that would end or restart the branch's transaction. */
START_TEST(test_transaction_control_rejected)
{
	static const char *const sqls[] = {
	    "COMMIT",
	    "  commit;",
	    "/* c */ ROLLBACK",
	    "-- x\\nBEGIN",
	    "START TRANSACTION",
	    "END",
	    "ABORT",
	    "PREPARE TRANSACTION 'x'",
	    "prepare transaction 'x'",
	    "Commit Work",
	    "rollback to savepoint s", /* harmless in itself, but ROLLBACK is refused as a whole */
	    "COMMIT PREPARED 'twopc_c1_0000000000000001_0'",
	    "ROLLBACK PREPARED 'twopc_c1_0000000000000001_0'",
	    "begin isolation level serializable",
	    "\\t\\r\\n\\fEND;",
	    "/* a /* nested */ comment */ COMMIT",
	    "--one\\n--two\\n  /* three */\\n abort",
	    "PREPARE\\tTRANSACTION 'x'",
	    "PREPARE/**/TRANSACTION 'x'",
	    "PREPARE -- c\\n TRANSACTION 'x'",
	};
	for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
		char body[512];
		one_sql(body, sizeof(body), sqls[i]);
		expect_reject(body, "branches.bank_a[0].sql", "transaction control");
	}
	/* In a later statement of a later branch. */
	expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"bank_b\":[{\"sql\":\"SELECT 1\"},"
	              "{\"sql\":\"COMMIT\"}]}}",
	              "branches.bank_b[1].sql", "not allowed");
}
END_TEST

/* PostgreSQL ends a "--" comment at a carriage return as well as a newline
 * (scan.l: newline [\n\r]); checked against a PostgreSQL 15 server, where
 * "-- x\rCOMMIT" commits the open transaction. A filter that skips the
 * comment only up to '\n' lets this COMMIT through. */
START_TEST(test_transaction_control_cr_comment)
{
	static const char *const sqls[] = {
	    "-- x\\rCOMMIT",
	    "-- x\\r  rollback",
	    "PREPARE -- x\\rTRANSACTION 'g'",
	};
	for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
		char body[512];
		one_sql(body, sizeof(body), sqls[i]);
		expect_reject(body, "branches.bank_a[0].sql", "transaction control");
	}
}
END_TEST

/* Session state would outlive the branch on a pooled connection and leak
 * into other clients' transactions; COPY cannot run in a pipeline. */
START_TEST(test_session_state_and_copy_rejected)
{
	static const struct {
		const char *sql, *why;
	} cases[] = {
	    {"SET statement_timeout = 0", "SET LOCAL"},
	    {"set search_path = evil", "SET LOCAL"},
	    {"SET SESSION AUTHORIZATION other", "SET LOCAL"},
	    {"SET ROLE r2", "SET LOCAL"},
	    {"/* c */ SET SESSION x = 1", "SET LOCAL"},
	    {"RESET ALL", "session-level"},
	    {"DISCARD ALL", "session-level"},
	    {"DEALLOCATE foo", "session-level"},
	    {"LISTEN chan", "session-level"},
	    {"PREPARE foo AS SELECT 1", "named statement"},
	    {"prepare transfer(int) AS SELECT $1", "named statement"},
	    {"COPY accounts TO STDOUT", "COPY"},
	    {"copy (select 1) to stdout", "COPY"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[512];
		one_sql(body, sizeof(body), cases[i].sql);
		expect_reject(body, "branches.bank_a[0].sql", cases[i].why);
	}
}
END_TEST

START_TEST(test_transaction_control_lookalikes_accepted)
{
	static const char *const sqls[] = {
	    "SELECT 'COMMIT'",
	    "SELECT 'SET x = 1'",
	    "UPDATE settings SET v = 1",
	    "COPYRIGHTS",
	    "SET LOCAL ROLE app",
	    "set local search_path = a, b",
	    "UPDATE t SET commit = 1",
	    "INSERT INTO beginnings VALUES (1)",
	    "ENDPOINTS",
	    "SELECT 1 -- COMMIT",
	    "-- COMMIT\\nSELECT 1",
	    "/* ROLLBACK */ SELECT 1",
	    "SAVEPOINT s1",
	    "RELEASE SAVEPOINT s1",
	    "SET LOCAL statement_timeout = 1000",
	    "EXECUTE foo",
	    "WITH x AS (SELECT 1) SELECT * FROM x",
	    "committed_rows",
	};
	for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
		char body[512];
		TxnRequest req;
		one_sql(body, sizeof(body), sqls[i]);
		parse_ok(body, &req);
		ck_assert_uint_eq(req.nbranches, 1);
		ck_assert_ptr_nonnull(req.branches[0].stmts[0].sql);
		request_free(&req);
	}
}
END_TEST

/* Parse and free many times, success and failure paths interleaved: under
 * ASan/LSan or valgrind any leak on either path shows up. */
START_TEST(test_parse_free_cycles)
{
	for (int i = 0; i < 200; i++) {
		TxnRequest req;
		parse_ok("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1,$2,$3\",\"params\":[1.25,{\"k\":[1]},7]}],"
		         "\"bank_b\":[{\"sql\":\"SELECT 1\"}]}}",
		         &req);
		ck_assert_str_eq(req.branches[0].stmts[0].params[0], "1.25");
		ck_assert_str_eq(req.branches[0].stmts[0].params[1], "{\"k\":[1]}");
		request_free(&req);
		expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1,$2\",\"params\":[1.5,[2]]},"
		              "{\"sql\":\"COMMIT\"}]}}",
		              "branches.bank_a[1].sql", "transaction control");
		expect_reject("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[0.5]}],\"bank_q\":[]}}",
		              "branches.bank_q", "unknown participant");
	}
}
END_TEST

/* ---- the fast path (coordinator/request_fast.c) -------------------------------- */

/* bench/transfer.lua's body: the request twopcd sees most. */
#define TRANSFER_BODY                                                                                                  \
	"{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - $1 WHERE id = $2\","            \
	"\"params\":[1,1234],\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + $1 "   \
	"WHERE id = $2\",\"params\":[1,5678],\"expect_rows\":1}]},\"timeout_ms\":5000}"

/* body must take the fast path, alone and through request_parse, and give
 * the jansson path's request field for field. */
static void expect_fast_len(const char *body, size_t len)
{
	TxnRequest fast, slow, req;
	char field[256] = "", err[512] = "", why[512] = "";

	ck_assert_msg(request_parse_fast(body, len, &cfg, &fast), "the fast path declined: %.300s", body);
	ck_assert_ptr_nonnull(fast.arena);
	ck_assert_ptr_null(fast.json);
	ck_assert_ptr_null(fast.owned);
	ck_assert_msg(request_parse_json(body, len, &cfg, &slow, field, sizeof(field), err, sizeof(err)),
	              "the fast path took what the jansson path rejects (field \"%s\": %s): %.300s", field, err, body);
	ck_assert_msg(request_same(&fast, &slow, why, sizeof(why)), "fast vs jansson: %s: %.300s", why, body);

	memset(field, 'X', sizeof(field));
	ck_assert(request_parse(body, len, &cfg, &req, field, sizeof(field), err, sizeof(err)));
	ck_assert_str_eq(field, "");
	ck_assert_msg(req.arena != NULL && req.json == NULL, "request_parse did not take the fast path: %.300s", body);
	ck_assert_msg(request_same(&req, &slow, why, sizeof(why)), "request_parse vs jansson: %s: %.300s", why, body);

	request_free(&fast);
	ck_assert_ptr_null(fast.arena);
	ck_assert_ptr_null(fast.branches);
	request_free(&fast); /* idempotent */
	request_free(&slow);
	request_free(&req);
}

static void expect_fast(const char *body)
{
	expect_fast_len(body, strlen(body));
}

/* request_parse gives body exactly the jansson path's verdict: the same
 * request, or the same field and message. Returns whether the fast path
 * took it (then its request must be the jansson path's). */
static bool expect_consistent_len(const char *body, size_t len)
{
	TxnRequest fast, slow, req;
	char sfield[256] = "", serr[512] = "", field[256] = "", err[512] = "", why[512] = "";
	bool fast_ok, slow_ok, ok;

	fast_ok = request_parse_fast(body, len, &cfg, &fast);
	slow_ok = request_parse_json(body, len, &cfg, &slow, sfield, sizeof(sfield), serr, sizeof(serr));
	ok = request_parse(body, len, &cfg, &req, field, sizeof(field), err, sizeof(err));
	if (fast_ok) {
		ck_assert_msg(slow_ok, "the fast path took what the jansson path rejects (field \"%s\": %s): %.*s",
		              sfield, serr, (int)len, body);
		ck_assert_msg(request_same(&fast, &slow, why, sizeof(why)), "fast vs jansson: %s: %.*s", why, (int)len,
		              body);
	} else {
		ck_assert_ptr_null(fast.arena);
		ck_assert_ptr_null(fast.branches);
		ck_assert_uint_eq(fast.nbranches, 0);
	}
	ck_assert_msg(ok == slow_ok, "request_parse %s, the jansson path %s: %.*s", ok ? "accepts" : "rejects",
	              slow_ok ? "accepts" : "rejects", (int)len, body);
	if (ok) {
		ck_assert_msg((req.arena != NULL) == fast_ok, "request_parse took the other path: %.*s", (int)len,
		              body);
		ck_assert_msg(request_same(&req, &slow, why, sizeof(why)), "request_parse vs jansson: %s: %.*s", why,
		              (int)len, body);
	} else {
		ck_assert_str_eq(field, sfield);
		ck_assert_str_eq(err, serr);
		ck_assert_ptr_null(req.branches);
		ck_assert_ptr_null(req.arena);
	}
	request_free(&fast);
	request_free(&slow);
	request_free(&req);
	return fast_ok;
}

/* body must be left to the jansson path, which accepts it (want_ok) or
 * rejects it; request_parse must say exactly what the jansson path says. */
static void expect_declined_len(const char *body, size_t len, bool want_ok)
{
	TxnRequest slow;
	char field[256] = "", err[512] = "";
	bool ok;

	ck_assert_msg(!expect_consistent_len(body, len), "the fast path took: %.*s", (int)len, body);
	ok = request_parse_json(body, len, &cfg, &slow, field, sizeof(field), err, sizeof(err));
	ck_assert_msg(ok == want_ok, "the jansson path %s it (field \"%s\": %s): %.*s", ok ? "accepts" : "rejects",
	              field, err, (int)len, body);
	request_free(&slow);
}

static void expect_declined(const char *body, bool want_ok)
{
	expect_declined_len(body, strlen(body), want_ok);
}

/* A one-statement body for bank_a with these params (JSON text). */
static void one_params(char *buf, size_t len, const char *params_json)
{
	snprintf(buf, len, "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":%s}]}}", params_json);
}

START_TEST(test_fast_transfer)
{
	TxnRequest req;
	char field[8], err[64];

	expect_fast(TRANSFER_BODY);
	ck_assert(
	    request_parse(TRANSFER_BODY, strlen(TRANSFER_BODY), &cfg, &req, field, sizeof(field), err, sizeof(err)));
	ck_assert_ptr_nonnull(req.arena);
	ck_assert_int_eq(req.timeout_ms, 5000);
	ck_assert_uint_eq(req.nbranches, 2);
	ck_assert_str_eq(req.branches[0].participant->name, "bank_a");
	ck_assert_str_eq(req.branches[1].participant->name, "bank_b");
	ck_assert_uint_eq(req.branches[1].nstmts, 1);
	ReqStatement *s = &req.branches[1].stmts[0];
	ck_assert_str_eq(s->sql, "UPDATE accounts SET balance = balance + $1 WHERE id = $2");
	ck_assert_int_eq(s->nparams, 2);
	ck_assert_str_eq(s->params[0], "1");
	ck_assert_str_eq(s->params[1], "5678");
	ck_assert_int_eq(s->expect_rows, 1);
	request_free(&req);
	ck_assert_ptr_null(req.arena);
	request_free(&req);
}
END_TEST

/* Valid bodies of every shape the fast path knows. */
START_TEST(test_fast_shapes)
{
	static const char *const bodies[] = {
	    /* Pretty-printed, every kind of JSON whitespace everywhere. */
	    "\n\t {\n\t\"branches\" : {\r\n  \"bank_a\" : [ { \"sql\" : \"SELECT $1, $2, $3\" , \"params\" : [ 1 , "
	    "\"x\" , null ] , \"expect_rows\" : 0 }\n ]\n }\n,\n \"timeout_ms\" : 60000 \n}\n\t \r",
	    /* timeout_ms first, absent; no params (a NULL list), [] and [ ]. */
	    "{\"timeout_ms\":1,\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\",\"params\":[]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\",\"params\":[ ]}]}}",
	    /* A statement's keys in any order. */
	    "{\"branches\":{\"bank_b\":[{\"expect_rows\":3,\"params\":[7],\"sql\":\"DELETE FROM t WHERE k = $1\"}]}}",
	    /* Three branches (max_branches), out of order, several statements. */
	    "{\"branches\":{\"bank_c\":[{\"sql\":\"SELECT 3\"}],\"bank_a\":[{\"sql\":\"SELECT 1\"}],"
	    "\"bank_b\":[{\"sql\":\"SELECT 2\"},{\"sql\":\"SELECT 22\",\"params\":[]},{\"sql\":\"SELECT $1\","
	    "\"params\":[\"z\"]}]}}",
	    /* Every parameter type it binds. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\",\"params\":[null,true,false,0,-0,-7,"
	    "123456789012345678,-123456789012345678,999999999999999999,\"\",\"s\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\",\"expect_rows\":999999999999999999}]}}",
	    /* Statements that look like refused ones but are not. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SET LOCAL statement_timeout = 1000\"},{\"sql\":\"SELECT 'COMMIT'\"},"
	    "{\"sql\":\"-- COMMIT\\nSELECT 1\"},{\"sql\":\"committed_rows\"}]}}",
	    /* Strings: every escape, \u with and without surrogates, raw UTF-8. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\","
	    "\"params\":[\"caf\\u00e9 \\u20AC \\ud83d\\ude00 \\uDBFF\\uDFFF \\u0001 \\u007f\","
	    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf\", \"\x7f\"]}]}}",
	};
	for (size_t i = 0; i < ARRAY_LEN(bodies); i++)
		expect_fast(bodies[i]);
}
END_TEST

/* What the escapes and UTF-8 become, byte for byte. */
START_TEST(test_fast_strings)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
	    {"\\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t", "\"q\" \\ / \b\f\n\r\t"},
	    {"caf\\u00e9", "caf\xc3\xa9"},
	    {"\\u20AC\\u20ac", "\xe2\x82\xac\xe2\x82\xac"},
	    {"\\ud83d\\ude00", "\xf0\x9f\x98\x80"},
	    {"\\u0041\\u007f\\u0080\\u07ff\\u0800\\uffff", "A\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf"},
	    {"\\u0001", "\x01"},
	    {"caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80"},
	    {"", ""},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char body[256], list[128];
		TxnRequest req;

		snprintf(list, sizeof(list), "[\"%s\"]", cases[i].json);
		one_params(body, sizeof(body), list);
		expect_fast(body);
		ck_assert(request_parse_fast(body, strlen(body), &cfg, &req));
		ck_assert_msg(strcmp(req.branches[0].stmts[0].params[0], cases[i].want) == 0, "\"%s\" became \"%s\"",
		              cases[i].json, req.branches[0].stmts[0].params[0]);
		request_free(&req);
	}
}
END_TEST

/* Up to the limits of the config: fast; one past them: left to jansson,
 * which says which limit. */
START_TEST(test_fast_limits)
{
	char *b;

	b = big_body(50, 0);
	expect_fast(b);
	free(b);
	b = big_body(1, 20);
	expect_fast(b);
	free(b);
	b = big_body(51, 0);
	expect_declined(b, false);
	free(b);
	b = big_body(1, 21);
	expect_declined(b, false);
	free(b);
	expect_fast("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"bank_b\":[{\"sql\":\"SELECT 1\"}],"
	            "\"bank_c\":[{\"sql\":\"SELECT 1\"}]}}");
	expect_declined("{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"bank_b\":[{\"sql\":\"SELECT 1\"}],"
	                "\"bank_c\":[{\"sql\":\"SELECT 1\"}],\"bank_d\":[{\"sql\":\"SELECT 1\"}]}}",
	                false);
	expect_fast("{\"timeout_ms\":60000,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}");
	expect_declined("{\"timeout_ms\":60001,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}", false);

	/* Bodies over 64 KiB go to jansson (request_fast.c's FAST_MAX_BODY). */
	static const char head[] = "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1 -- ", tail[] = "\"}]}}";
	size_t sizes[] = {64 * 1024, 64 * 1024 + 1};
	for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
		size_t fill = sizes[i] - strlen(head) - strlen(tail);
		b = malloc(sizes[i] + 1);
		ck_assert_ptr_nonnull(b);
		memcpy(b, head, strlen(head));
		memset(b + strlen(head), ',', fill);
		strcpy(b + strlen(head) + fill, tail);
		ck_assert_uint_eq(strlen(b), sizes[i]);
		if (i == 0)
			expect_fast(b);
		else
			expect_declined(b, true);
		free(b);
	}
}
END_TEST

/* Valid bodies the fast path leaves to jansson. */
START_TEST(test_fast_declines_valid)
{
	static const char *const params[] = {
	    "[1.5]",
	    "[1e5]",
	    "[1E5]",
	    "[-0.0]",
	    "[0.1e-2]",
	    "[{\"a\":1}]",
	    "[[1]]",
	    "[1,[]]",
	    "[1234567890123456789]",
	    "[-1234567890123456789]",
	    "[9223372036854775807]",
	};
	for (size_t i = 0; i < ARRAY_LEN(params); i++) {
		char body[256];
		one_params(body, sizeof(body), params[i]);
		expect_declined(body, true);
	}
	/* Keys with escapes: jansson reads them as the plain names. */
	expect_declined("{\"bran\\u0063hes\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}", true);
	expect_declined("{\"branches\":{\"bank\\u005fa\":[{\"s\\u0071l\":\"SELECT 1\"}]}}", true);
	expect_declined("{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":1234567890123456789}]}}", true);
}
END_TEST

/* Invalid bodies: the fast path never takes them, and request_parse
 * rejects them with the jansson path's field and message. */
START_TEST(test_fast_declines_invalid)
{
	static const char *const bodies[] = {
	    /* Duplicate keys, at every level. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]},\"branches\":{\"bank_b\":[{\"sql\":\"y\"}]}}",
	    "{\"timeout_ms\":1,\"timeout_ms\":2,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]},\"timeout_ms\":1,\"timeout_ms\":1}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}],\"bank_a\":[{\"sql\":\"y\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}],\"bank_b\":[{\"sql\":\"x\"}],\"bank_a\":[{\"sql\":\"y\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"sql\":\"COMMIT\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"sql\":\"y\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[1],\"params\":[2]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":1,\"expect_rows\":1}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]},\"bran\\u0063hes\":{\"bank_b\":[{\"sql\":\"y\"}]}}",
	    /* Trailing bytes; trailing commas; missing separators. */
	    TRANSFER_BODY "x",
	    TRANSFER_BODY "}",
	    TRANSFER_BODY ",",
	    TRANSFER_BODY " {}",
	    TRANSFER_BODY "\n\t x",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]},}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}],}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"},]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[1,]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[,1]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[1 2]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\" \"params\":[1]}]}}",
	    "{\"branches\" {\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}",
	    /* Raw control characters in strings. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT\n1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT\t1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT\x01 1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\",\"params\":[\"a\x1f\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\",\"params\":[\"a\r\"]}]}}",
	    /* Numbers JSON does not have, or jansson refuses. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[01]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[-01]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[00]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[-]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[-a]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[--1]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[+1]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[.5]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[1.]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[1e]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[1x]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[0x10]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[123456789012345678901234]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[-9223372036854775809]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[1e999]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[NaN]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[-Infinity]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":1e5}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":-1}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":01}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"expect_rows\":null}]}}",
	    "{\"timeout_ms\":-0,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\"timeout_ms\":0,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\"timeout_ms\":1e3,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\"timeout_ms\":\"100\",\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\"timeout_ms\":99999999999999999999,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    /* Literals, almost. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[tru]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[nul]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[nulll]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[falsey]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[True]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":[true1]}]}}",
	    /* Unknown keys and participants. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]},\"extra\":1}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"param\":[]}]}}",
	    "{\"branches\":{\"bank_z\":[{\"sql\":\"x\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}],\"BANK_B\":[{\"sql\":\"x\"}]}}",
	    "{\"branches\":{\"bank_a \":[{\"sql\":\"x\"}]}}",
	    "{\"branches\":{\"bank_\":[{\"sql\":\"x\"}]}}",
	    "{\"branches\":{\"\":[{\"sql\":\"x\"}]}}",
	    "{\"\":1,\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    /* Structure. */
	    "",
	    "  ",
	    "[]",
	    "\"x\"",
	    "{}",
	    "{\"branches\":{}}",
	    "{\"branches\":[]}",
	    "{\"branches\":null}",
	    "{\"branches\":{\"bank_a\":[]}}",
	    "{\"branches\":{\"bank_a\":{}}}",
	    "{\"branches\":{\"bank_a\":[{}]}}",
	    "{\"branches\":{\"bank_a\":[null]}}",
	    "{\"branches\":{\"bank_a\":[{\"params\":[1]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":1}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":null}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":{}}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":\"1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\",\"params\":null}]}}",
	    "{'branches':{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{branches:{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":'x'}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]} /* c */}",
	    /* Whitespace JSON does not have: \v, \f, NBSP, a BOM. */
	    "{\v\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\f\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "{\xc2\xa0\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    "\xef\xbb\xbf{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}",
	    /* Refused statements. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"COMMIT\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"},{\"sql\":\"  commit;\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}],\"bank_b\":[{\"sql\":\"-- x\\rROLLBACK\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"PREPARE TRANSACTION 'x'\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"PREPARE foo AS SELECT 1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SET search_path = evil\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"DISCARD ALL\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"COPY t TO STDOUT\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"\\u0043OMMIT\"}]}}",
	    /* \u0000 and other escapes jansson refuses. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\\u0000; COMMIT\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"a\\u0000b\"]}]}}",
	    "{\"branches\":{\"bank_a\\u0000\":[{\"sql\":\"SELECT 1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\ud800\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\ud800x\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\ud800\\u0041\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\ud800\\ud800\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\ud800\\\\\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\udc00\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\uDFFF\\uDC00\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\u12G4\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\u12\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\U0041\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\x41\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\a\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\'\"]}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT $1\",\"params\":[\"\\\"]}]}}",
	    /* Invalid UTF-8, in strings and out of them. */
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \x80\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xc0\x80\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xc1\xbf\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xe0\x80\x80\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xe0\x9f\xbf\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xed\xa0\x80\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xed\xbf\xbf\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xf0\x8f\xbf\xbf\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xf4\x90\x80\x80\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xf5\x80\x80\x80\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xff\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xc3\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xe2\x82\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT \xc3\xc3\xa9\"}]}}",
	    "{\"branches\":{\"bank_\xc3\xa9\":[{\"sql\":\"SELECT 1\"}]}}",
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}\xc3\xa9",
	};
	for (size_t i = 0; i < ARRAY_LEN(bodies); i++)
		expect_declined(bodies[i], false);

	/* NUL bytes: inside a string, between tokens, after the body. */
	static const char nul_sql[] = "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\0\"}]}}";
	static const char nul_ws[] = "{\"branches\":\0{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}";
	static const char nul_end[] = "{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}\0";
	static const char nul_first[] = "\0{\"branches\":{\"bank_a\":[{\"sql\":\"SELECT 1\"}]}}";
	expect_declined_len(nul_sql, sizeof(nul_sql) - 1, false);
	expect_declined_len(nul_ws, sizeof(nul_ws) - 1, false);
	expect_declined_len(nul_end, sizeof(nul_end) - 1, false);
	expect_declined_len(nul_first, sizeof(nul_first) - 1, false);
	/* The length is honoured: a valid prefix of a longer buffer is fast. */
	static const char prefix[] = "{\"branches\":{\"bank_a\":[{\"sql\":\"x\"}]}}GARBAGE";
	expect_fast_len(prefix, sizeof(prefix) - 1 - 7);
}
END_TEST

/* Every cut, every deleted byte, every doubled byte and many replaced bytes
 * of the typical body and of a pretty one with escapes: whatever the fast
 * path makes of them, request_parse gives the jansson path's verdict. */
START_TEST(test_fast_mutations)
{
	static const char pretty[] =
	    "{ \"timeout_ms\" : 100,\n  \"branches\" : { \"bank_b\" : [ { \"sql\" : "
	    "\"SELECT $1, $2, $3 -- \\u00e9\\n\", \"params\" : [ null, true, \"a\\\"b\", -0 ], "
	    "\"expect_rows\" : 0 } ] }\n}";
	static const unsigned char bytes[] = {'\0', ' ', '\t', '"', '\\', ',', ':', '{',  '}',  '[',  ']',  '0',
	                                      '9',  '-', 'e',  '.', 'x',  'u', 'n', 0x7f, 0x80, 0xc3, 0xe2, '\n'};
	const char *const bases[] = {TRANSFER_BODY, pretty};

	for (size_t bi = 0; bi < ARRAY_LEN(bases); bi++) {
		size_t len = strlen(bases[bi]);
		char *buf = malloc(len + 2);
		int fast = 0;

		ck_assert_ptr_nonnull(buf);
		ck_assert(expect_consistent_len(bases[bi], len));
		for (size_t cut = 0; cut < len; cut++)
			ck_assert_msg(!expect_consistent_len(bases[bi], cut), "the fast path took a cut body");
		for (size_t i = 0; i < len; i++) {
			/* Deleted. */
			memcpy(buf, bases[bi], i);
			memcpy(buf + i, bases[bi] + i + 1, len - i - 1);
			fast += expect_consistent_len(buf, len - 1);
			/* Doubled. */
			memcpy(buf, bases[bi], i + 1);
			memcpy(buf + i + 1, bases[bi] + i, len - i);
			fast += expect_consistent_len(buf, len + 1);
			/* Replaced. */
			memcpy(buf, bases[bi], len);
			for (size_t b = 0; b < ARRAY_LEN(bytes); b++) {
				buf[i] = (char)bytes[b];
				fast += expect_consistent_len(buf, len);
			}
		}
		/* Some of them are still valid and fast (a changed digit or
		 * letter); the check above held for those too. */
		ck_assert_int_gt(fast, 0);
		free(buf);
	}
}
END_TEST

/* The field names the place even when it is long: cut at 255 bytes. */
START_TEST(test_reject_long_field)
{
	char name[301], body[512], want[256];

	memset(name, 'q', 300);
	name[300] = '\0';
	snprintf(body, sizeof(body), "{\"branches\":{\"%s\":[{\"sql\":\"x\"}]}}", name);
	memcpy(want, "branches.", 9);
	memset(want + 9, 'q', sizeof(want) - 1 - 9);
	want[sizeof(want) - 1] = '\0';
	expect_reject(body, want, "unknown participant");
	snprintf(body, sizeof(body), "{\"%s\":1}", name);
	memset(want, 'q', sizeof(want) - 1);
	expect_reject(body, want, "unknown field");
}
END_TEST

static Suite *request_suite(void)
{
	Suite *s = suite_create("request");
	TCase *tc = tcase_create("valid");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_valid_request_every_param_type);
	tcase_add_test(tc, test_number_params);
	tcase_add_test(tc, test_timeout_default_and_explicit);
	tcase_add_test(tc, test_branch_order_preserved);
	suite_add_tcase(s, tc);

	tc = tcase_create("invalid");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reject_malformed_json);
	tcase_add_test(tc, test_reject_structure);
	tcase_add_test(tc, test_reject_expect_rows);
	tcase_add_test(tc, test_reject_timeout);
	tcase_add_test(tc, test_reject_duplicate_keys);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_reject_nul);
	tcase_add_test(tc, test_reject_huge_numbers);
	tcase_add_test(tc, test_parse_free_cycles);
	tcase_add_test(tc, test_reject_long_field);
	suite_add_tcase(s, tc);

	tc = tcase_create("transaction_control");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_transaction_control_rejected);
	tcase_add_test(tc, test_transaction_control_cr_comment);
	tcase_add_test(tc, test_transaction_control_lookalikes_accepted);
	tcase_add_test(tc, test_session_state_and_copy_rejected);
	suite_add_tcase(s, tc);

	tc = tcase_create("fast");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_fast_transfer);
	tcase_add_test(tc, test_fast_shapes);
	tcase_add_test(tc, test_fast_strings);
	tcase_add_test(tc, test_fast_limits);
	tcase_add_test(tc, test_fast_declines_valid);
	tcase_add_test(tc, test_fast_declines_invalid);
	tcase_add_test(tc, test_fast_mutations);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(request_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
