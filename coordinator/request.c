/*
 * request: JSON body -> TxnRequest, with precise rejections.
 *
 * request_parse tries request_fast.c first, a single pass that takes the
 * common valid body and nothing else; everything it leaves (every invalid
 * body among it) comes here, to jansson, whose tree lets a rejection name
 * the field at fault. The statement filter (request_refusal) serves both.
 */
#include "request.h"
#include "request_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *own(TxnRequest *req, char *s)
{
	req->owned = xrealloc(req->owned, (req->nowned + 1) * sizeof(char *));
	req->owned[req->nowned++] = s;
	return s;
}

/* A JSON real as bind text: integral values as "100.0" (what a client most
 * likely wrote), others as the shortest text that reads back as the same
 * double ("0.1", not "0.10000000000000001"). */
static char *format_real(double v)
{
	char buf[40];
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(buf, sizeof(buf), "%.1f", v);
		return xstrdup(buf);
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return xstrdup(buf);
}

static bool param_text(TxnRequest *req, json_t *v, const char **out)
{
	char buf[32];

	switch (json_typeof(v)) {
	case JSON_NULL:
		*out = NULL;
		return true;
	case JSON_STRING:
		/* Text with a NUL byte cannot be a PostgreSQL text value. */
		if (strlen(json_string_value(v)) != json_string_length(v))
			return false;
		*out = json_string_value(v);
		return true;
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*out = own(req, xstrdup(buf));
		return true;
	case JSON_REAL:
		if (!isfinite(json_real_value(v)))
			return false;
		*out = own(req, format_real(json_real_value(v)));
		return true;
	case JSON_TRUE:
		*out = "true";
		return true;
	case JSON_FALSE:
		*out = "false";
		return true;
	case JSON_OBJECT:
	case JSON_ARRAY: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (s == NULL)
			return false;
		*out = own(req, s);
		return true;
	}
	}
	return false;
}

/* The first keyword of a statement, skipping whitespace and comments,
 * upper-cased into kw (empty if none). */
static void first_keyword(const char *sql, char *kw, size_t kwlen, const char **after)
{
	const char *p = sql;
	size_t n = 0;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '(')
			p++;
		if (p[0] == '-' && p[1] == '-') {
			/* PostgreSQL's lexer ends a -- comment at \n or \r. */
			p += strcspn(p, "\n\r");
			continue;
		}
		if (p[0] == '/' && p[1] == '*') {
			/* PostgreSQL block comments nest. */
			int depth = 0;
			do {
				if (p[0] == '/' && p[1] == '*') {
					depth++;
					p += 2;
				} else if (p[0] == '*' && p[1] == '/') {
					depth--;
					p += 2;
				} else {
					p++;
				}
			} while (*p && depth > 0);
			continue;
		}
		break;
	}
	while (n + 1 < kwlen && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'))
		kw[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p), p++;
	kw[n] = '\0';
	if (after)
		*after = p;
}

/* kw is word. The first letters first: every request's statements pass
 * through here, and most match none of the words. */
static inline bool kw_is(const char *kw, const char *word)
{
	return kw[0] == word[0] && strcmp(kw, word) == 0;
}

/* Why a statement cannot run in a branch, or NULL. By its first keywords:
 * - transaction control would end or nest our transaction block (a COMMIT
 *   inside a branch would commit it outside two-phase commit);
 * - session state (SET without LOCAL, RESET, PREPARE name, DISCARD, ...)
 *   would outlive the branch on a pooled connection and leak into other
 *   clients' transactions (SET ROLE: their branches would even belong to
 *   another role, which COMMIT PREPARED may then not be allowed to finish);
 * - COPY has no place in a pipeline of bound statements. */
const char *request_refusal(const char *sql)
{
	static const char *const txn_control[] = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"};
	static const char *const session[] = {"RESET", "DEALLOCATE", "DISCARD", "LISTEN", "UNLISTEN"};
	char kw[32], kw2[32];
	const char *rest;

	first_keyword(sql, kw, sizeof(kw), &rest);
	for (size_t i = 0; i < ARRAY_LEN(txn_control); i++) {
		if (kw_is(kw, txn_control[i]))
			return "transaction control (BEGIN, COMMIT, ROLLBACK, PREPARE TRANSACTION, ...) is not "
			       "allowed: "
			       "twopcd runs each branch in its own transaction";
	}
	if (kw_is(kw, "PREPARE")) {
		first_keyword(rest, kw2, sizeof(kw2), NULL);
		return strcmp(kw2, "TRANSACTION") == 0
		           ? "transaction control (BEGIN, COMMIT, ROLLBACK, PREPARE TRANSACTION, ...) is not "
		             "allowed: twopcd runs each branch in its own transaction"
		           : "PREPARE of a named statement would outlive the branch on a pooled connection; bind "
		             "parameters with params instead";
	}
	if (kw_is(kw, "SET")) {
		first_keyword(rest, kw2, sizeof(kw2), NULL);
		if (strcmp(kw2, "LOCAL") != 0)
			return "SET without LOCAL would outlive the branch on a pooled connection: use SET LOCAL";
	}
	for (size_t i = 0; i < ARRAY_LEN(session); i++) {
		if (kw_is(kw, session[i]))
			return "session-level statements (RESET, DEALLOCATE, DISCARD, LISTEN, UNLISTEN) are not "
			       "allowed: "
			       "they would outlive the branch on a pooled connection";
	}
	if (kw_is(kw, "COPY"))
		return "COPY is not supported: use INSERT ... SELECT or bound statements";
	return NULL;
}

/* Where the walk is, for the field a rejection names
 * ("branches.bank_a[2].params[0]"); formatted only when rejecting. */
typedef struct FieldAt {
	const char *top;    /* a top-level key; NULL: none ("") */
	const char *branch; /* the participant key under branches; NULL: none */
	size_t stmt;        /* with branch: the statement's index ... */
	bool in_stmt;       /* ... if set */
	const char *key;    /* with in_stmt: one of the statement's keys, or NULL */
	int param;          /* with key: the index in params, or -1 */
} FieldAt;

static void field_format(const FieldAt *at, char *buf, size_t len)
{
	if (at->branch == NULL)
		snprintf(buf, len, "%s", at->top ? at->top : "");
	else if (!at->in_stmt)
		snprintf(buf, len, "branches.%s", at->branch);
	else if (at->key == NULL)
		snprintf(buf, len, "branches.%s[%zu]", at->branch, at->stmt);
	else if (at->param < 0)
		snprintf(buf, len, "branches.%s[%zu].%s", at->branch, at->stmt, at->key);
	else
		snprintf(buf, len, "branches.%s[%zu].%s[%d]", at->branch, at->stmt, at->key, at->param);
}

/* fbuf: the field cut to 255 bytes, then to fieldlen, as it always was. */
#define REJECT(...)                                                                                                    \
	do {                                                                                                           \
		char fbuf[256];                                                                                        \
		field_format(&at, fbuf, sizeof(fbuf));                                                                 \
		snprintf(field, fieldlen, "%s", fbuf);                                                                 \
		errf(err, errlen, __VA_ARGS__);                                                                        \
		goto fail;                                                                                             \
	} while (0)

bool request_parse(const char *body, size_t len, const Config *cfg, TxnRequest *req, char *field, size_t fieldlen,
                   char *err, size_t errlen)
{
	if (request_parse_fast(body, len, cfg, req)) {
		if (field && fieldlen)
			field[0] = '\0';
		return true;
	}
	return request_parse_json(body, len, cfg, req, field, fieldlen, err, errlen);
}

bool request_parse_json(const char *body, size_t len, const Config *cfg, TxnRequest *req, char *field, size_t fieldlen,
                        char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *branches, *v;
	const char *key;
	FieldAt at = {.param = -1};
	size_t bi = 0;

	memset(req, 0, sizeof(*req));
	if (field && fieldlen)
		field[0] = '\0';
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		REJECT("malformed JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
	req->json = root;
	if (!json_is_object(root))
		REJECT("the body must be a JSON object");

	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "branches") != 0 && strcmp(key, "timeout_ms") != 0) {
			at.top = key;
			REJECT("unknown field '%s' (expected branches and optionally timeout_ms)", key);
		}
	}

	req->timeout_ms = cfg->default_timeout_ms;
	v = json_object_get(root, "timeout_ms");
	if (v != NULL) {
		at.top = "timeout_ms";
		if (!json_is_integer(v) || json_integer_value(v) < 1)
			REJECT("timeout_ms must be a positive integer (milliseconds)");
		if (json_integer_value(v) > cfg->max_timeout_ms)
			REJECT("timeout_ms %" JSON_INTEGER_FORMAT " exceeds the maximum of %lld (max_timeout_ms)",
			       json_integer_value(v), (long long)cfg->max_timeout_ms);
		req->timeout_ms = json_integer_value(v);
	}

	branches = json_object_get(root, "branches");
	at.top = "branches";
	if (branches == NULL)
		REJECT("branches is required: an object mapping participant names to statement lists");
	if (!json_is_object(branches))
		REJECT("branches must be an object mapping participant names to statement lists");
	if (json_object_size(branches) == 0)
		REJECT("branches is empty: name at least one participant");
	if ((int64_t)json_object_size(branches) > cfg->max_branches)
		REJECT("has %zu branches; at most %lld are allowed (max_branches)", json_object_size(branches),
		       (long long)cfg->max_branches);
	req->branches = xcalloc(json_object_size(branches), sizeof(ReqBranch));

	json_object_foreach(branches, key, v)
	{
		ReqBranch *b = &req->branches[bi];
		at.branch = key;
		at.in_stmt = false;
		b->participant = config_find_participant(cfg, key);
		if (b->participant == NULL)
			REJECT("unknown participant '%s'", key);
		if (!json_is_array(v))
			REJECT("must be an array of statements");
		if (json_array_size(v) == 0)
			REJECT("has no statements");
		if ((int64_t)json_array_size(v) > cfg->max_statements)
			REJECT("has %zu statements; at most %lld are allowed (max_statements)", json_array_size(v),
			       (long long)cfg->max_statements);
		b->nstmts = json_array_size(v);
		b->stmts = xcalloc(b->nstmts, sizeof(ReqStatement));
		req->nbranches = ++bi;

		for (size_t si = 0; si < b->nstmts; si++) {
			json_t *st = json_array_get(v, si), *sql, *params, *er, *sv;
			ReqStatement *s = &b->stmts[si];
			const char *sk;

			at.stmt = si;
			at.in_stmt = true;
			at.key = NULL;
			if (!json_is_object(st))
				REJECT("a statement must be an object with sql, params and expect_rows");
			json_object_foreach(st, sk, sv)
			{
				if (strcmp(sk, "sql") && strcmp(sk, "params") && strcmp(sk, "expect_rows")) {
					at.key = sk;
					REJECT("unknown field '%s' (expected sql, params, expect_rows)", sk);
				}
			}
			sql = json_object_get(st, "sql");
			at.key = "sql";
			if (sql == NULL)
				REJECT("sql is required");
			if (!json_is_string(sql))
				REJECT("sql must be a string");
			if (json_string_length(sql) == 0)
				REJECT("sql is empty");
			if (strlen(json_string_value(sql)) != json_string_length(sql))
				REJECT("sql contains a NUL character");
			s->sql = json_string_value(sql);
			const char *refusal = request_refusal(s->sql);
			if (refusal != NULL)
				REJECT("%s", refusal);

			s->expect_rows = -1;
			er = json_object_get(st, "expect_rows");
			if (er != NULL) {
				at.key = "expect_rows";
				if (!json_is_integer(er) || json_integer_value(er) < 0)
					REJECT("expect_rows must be a non-negative integer");
				s->expect_rows = json_integer_value(er);
			}

			params = json_object_get(st, "params");
			if (params != NULL) {
				at.key = "params";
				if (!json_is_array(params))
					REJECT("params must be an array");
				if ((int64_t)json_array_size(params) > cfg->max_params)
					REJECT("has %zu parameters; at most %lld are allowed (max_params)",
					       json_array_size(params), (long long)cfg->max_params);
				s->nparams = (int)json_array_size(params);
				s->params = xcalloc(s->nparams ? (size_t)s->nparams : 1, sizeof(char *));
				for (int pi = 0; pi < s->nparams; pi++) {
					if (!param_text(req, json_array_get(params, (size_t)pi), &s->params[pi])) {
						at.param = pi;
						REJECT("cannot be bound: strings may not contain NUL, numbers must be "
						       "finite");
					}
				}
			}
		}
	}
	return true;
fail:
	request_free(req);
	return false;
}

void request_free(TxnRequest *req)
{
	/* The fast path's request is one block: branches, statements,
	 * parameter lists and texts all point into it. */
	if (req->arena == NULL) {
		for (size_t i = 0; i < req->nbranches; i++) {
			for (size_t s = 0; s < req->branches[i].nstmts; s++)
				free(req->branches[i].stmts[s].params);
			free(req->branches[i].stmts);
		}
		free(req->branches);
	}
	free(req->arena);
	for (size_t i = 0; i < req->nowned; i++)
		free(req->owned[i]);
	free(req->owned);
	if (req->json)
		json_decref(req->json);
	memset(req, 0, sizeof(*req));
}
