/*
 * request: JSON body -> TxnRequest, with precise rejections.
 */
#include "request.h"

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

/* Why a statement cannot run in a branch, or NULL. By its first keywords:
 * - transaction control would end or nest our transaction block (a COMMIT
 *   inside a branch would commit it outside two-phase commit);
 * - session state (SET without LOCAL, RESET, PREPARE name, DISCARD, ...)
 *   would outlive the branch on a pooled connection and leak into other
 *   clients' transactions (SET ROLE: their branches would even belong to
 *   another role, which COMMIT PREPARED may then not be allowed to finish);
 * - COPY has no place in a pipeline of bound statements. */
static const char *refused_statement(const char *sql)
{
	static const char *const txn_control[] = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"};
	static const char *const session[] = {"RESET", "DEALLOCATE", "DISCARD", "LISTEN", "UNLISTEN"};
	char kw[32], kw2[32];
	const char *rest;

	first_keyword(sql, kw, sizeof(kw), &rest);
	first_keyword(rest, kw2, sizeof(kw2), NULL);
	for (size_t i = 0; i < ARRAY_LEN(txn_control); i++) {
		if (strcmp(kw, txn_control[i]) == 0)
			return "transaction control (BEGIN, COMMIT, ROLLBACK, PREPARE TRANSACTION, ...) is not "
			       "allowed: "
			       "twopcd runs each branch in its own transaction";
	}
	if (strcmp(kw, "PREPARE") == 0)
		return strcmp(kw2, "TRANSACTION") == 0
		           ? "transaction control (BEGIN, COMMIT, ROLLBACK, PREPARE TRANSACTION, ...) is not "
		             "allowed: twopcd runs each branch in its own transaction"
		           : "PREPARE of a named statement would outlive the branch on a pooled connection; bind "
		             "parameters with params instead";
	if (strcmp(kw, "SET") == 0 && strcmp(kw2, "LOCAL") != 0)
		return "SET without LOCAL would outlive the branch on a pooled connection: use SET LOCAL";
	for (size_t i = 0; i < ARRAY_LEN(session); i++) {
		if (strcmp(kw, session[i]) == 0)
			return "session-level statements (RESET, DEALLOCATE, DISCARD, LISTEN, UNLISTEN) are not "
			       "allowed: "
			       "they would outlive the branch on a pooled connection";
	}
	if (strcmp(kw, "COPY") == 0)
		return "COPY is not supported: use INSERT ... SELECT or bound statements";
	return NULL;
}

#define REJECT(...)                                                                                                    \
	do {                                                                                                           \
		snprintf(field, fieldlen, "%s", fbuf);                                                                 \
		errf(err, errlen, __VA_ARGS__);                                                                        \
		goto fail;                                                                                             \
	} while (0)

bool request_parse(const char *body, size_t len, const Config *cfg, TxnRequest *req, char *field, size_t fieldlen,
                   char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *branches, *v;
	const char *key;
	char fbuf[256] = "";
	size_t bi = 0;

	memset(req, 0, sizeof(*req));
	if (field && fieldlen)
		field[0] = '\0';
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(fbuf, sizeof(fbuf), "%s", "");
		REJECT("malformed JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
	}
	req->json = root;
	if (!json_is_object(root))
		REJECT("the body must be a JSON object");

	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "branches") != 0 && strcmp(key, "timeout_ms") != 0) {
			snprintf(fbuf, sizeof(fbuf), "%s", key);
			REJECT("unknown field '%s' (expected branches and optionally timeout_ms)", key);
		}
	}

	req->timeout_ms = cfg->default_timeout_ms;
	v = json_object_get(root, "timeout_ms");
	if (v != NULL) {
		snprintf(fbuf, sizeof(fbuf), "timeout_ms");
		if (!json_is_integer(v) || json_integer_value(v) < 1)
			REJECT("timeout_ms must be a positive integer (milliseconds)");
		if (json_integer_value(v) > cfg->max_timeout_ms)
			REJECT("timeout_ms %" JSON_INTEGER_FORMAT " exceeds the maximum of %lld (max_timeout_ms)",
			       json_integer_value(v), (long long)cfg->max_timeout_ms);
		req->timeout_ms = json_integer_value(v);
	}

	branches = json_object_get(root, "branches");
	snprintf(fbuf, sizeof(fbuf), "branches");
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
		snprintf(fbuf, sizeof(fbuf), "branches.%s", key);
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

			snprintf(fbuf, sizeof(fbuf), "branches.%s[%zu]", key, si);
			if (!json_is_object(st))
				REJECT("a statement must be an object with sql, params and expect_rows");
			json_object_foreach(st, sk, sv)
			{
				if (strcmp(sk, "sql") && strcmp(sk, "params") && strcmp(sk, "expect_rows")) {
					snprintf(fbuf, sizeof(fbuf), "branches.%s[%zu].%s", key, si, sk);
					REJECT("unknown field '%s' (expected sql, params, expect_rows)", sk);
				}
			}
			sql = json_object_get(st, "sql");
			snprintf(fbuf, sizeof(fbuf), "branches.%s[%zu].sql", key, si);
			if (sql == NULL)
				REJECT("sql is required");
			if (!json_is_string(sql))
				REJECT("sql must be a string");
			if (json_string_length(sql) == 0)
				REJECT("sql is empty");
			if (strlen(json_string_value(sql)) != json_string_length(sql))
				REJECT("sql contains a NUL character");
			s->sql = json_string_value(sql);
			const char *refusal = refused_statement(s->sql);
			if (refusal != NULL)
				REJECT("%s", refusal);

			s->expect_rows = -1;
			er = json_object_get(st, "expect_rows");
			if (er != NULL) {
				snprintf(fbuf, sizeof(fbuf), "branches.%s[%zu].expect_rows", key, si);
				if (!json_is_integer(er) || json_integer_value(er) < 0)
					REJECT("expect_rows must be a non-negative integer");
				s->expect_rows = json_integer_value(er);
			}

			params = json_object_get(st, "params");
			if (params != NULL) {
				snprintf(fbuf, sizeof(fbuf), "branches.%s[%zu].params", key, si);
				if (!json_is_array(params))
					REJECT("params must be an array");
				if ((int64_t)json_array_size(params) > cfg->max_params)
					REJECT("has %zu parameters; at most %lld are allowed (max_params)",
					       json_array_size(params), (long long)cfg->max_params);
				s->nparams = (int)json_array_size(params);
				s->params = xcalloc(s->nparams ? (size_t)s->nparams : 1, sizeof(char *));
				for (int pi = 0; pi < s->nparams; pi++) {
					snprintf(fbuf, sizeof(fbuf), "branches.%s[%zu].params[%d]", key, si, pi);
					if (!param_text(req, json_array_get(params, (size_t)pi), &s->params[pi]))
						REJECT("cannot be bound: strings may not contain NUL, numbers must be "
						       "finite");
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
	for (size_t i = 0; i < req->nbranches; i++) {
		for (size_t s = 0; s < req->branches[i].nstmts; s++)
			free(req->branches[i].stmts[s].params);
		free(req->branches[i].stmts);
	}
	free(req->branches);
	for (size_t i = 0; i < req->nowned; i++)
		free(req->owned[i]);
	free(req->owned);
	if (req->json)
		json_decref(req->json);
	memset(req, 0, sizeof(*req));
}
