/*
 * fuzz_request: libFuzzer harness for request_parse, the parser and
 * validator of POST /v1/transactions bodies (coordinator/request.c).
 *
 * Every input is a request body. On success the harness checks what the
 * rest of twopcd relies on: at least one branch, each naming a distinct
 * participant of the configuration, 1..max_statements statements per
 * branch, non-empty SQL, 0..max_params parameters, a timeout within
 * the configured bounds. On failure: the request comes back empty and the
 * error message is set. ASan/UBSan catch the rest; LSan catches leaks.
 *
 *   make fuzz-build && tests/fuzz_request tests/fuzz/request
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_request: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);   \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static const Config *config(void)
{
	static Config cfg;
	static int loaded;
	static const char text[] = "[coordinator]\n"
	                           "id = c1\n"
	                           "log_dir = /nonexistent/twopc-fuzz\n"
	                           "default_timeout_ms = 5000\n"
	                           "max_timeout_ms = 60000\n"
	                           "[participant bank_a]\n"
	                           "conninfo = dbname=x\n"
	                           "[participant bank_b]\n"
	                           "conninfo = dbname=x\n"
	                           "[participant p3]\n"
	                           "conninfo = dbname=x\n";
	if (!loaded) {
		char err[512];
		if (!config_load_string(text, "fuzz.ini", &cfg, err, sizeof(err))) {
			fprintf(stderr, "fuzz_request: config: %s\n", err);
			abort();
		}
		loaded = 1;
	}
	return &cfg;
}

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const Config *cfg = config();
	TxnRequest req;
	char field[256], err[512];

	memset(field, 'x', sizeof(field));
	memset(err, 'x', sizeof(err));
	if (!request_parse((const char *)data, size, cfg, &req, field, sizeof(field), err, sizeof(err))) {
		/* A rejection leaves nothing to free and says why. */
		CHECK(req.branches == NULL && req.nbranches == 0 && req.json == NULL);
		CHECK(req.owned == NULL && req.nowned == 0);
		CHECK(memchr(field, '\0', sizeof(field)) != NULL);
		CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		return 0;
	}

	CHECK(req.json != NULL);
	CHECK(req.nbranches >= 1 && req.nbranches <= cfg->nparticipants && (int64_t)req.nbranches <= cfg->max_branches);
	CHECK(req.timeout_ms >= 1 && req.timeout_ms <= cfg->max_timeout_ms);
	for (size_t b = 0; b < req.nbranches; b++) {
		const ReqBranch *br = &req.branches[b];
		const ParticipantConfig *p = br->participant;

		CHECK(p != NULL);
		CHECK(p >= cfg->participants && p < cfg->participants + cfg->nparticipants);
		for (size_t o = 0; o < b; o++)
			CHECK(req.branches[o].participant != p);
		CHECK(br->nstmts >= 1 && (int64_t)br->nstmts <= cfg->max_statements);
		CHECK(br->stmts != NULL);
		/* The branch's statements as the client sent them. */
		json_t *list = json_object_get(json_object_get(req.json, "branches"), p->name);
		CHECK(json_is_array(list) && json_array_size(list) == br->nstmts);
		for (size_t s = 0; s < br->nstmts; s++) {
			const ReqStatement *st = &br->stmts[s];
			json_t *js = json_array_get(list, s), *jsql = json_object_get(js, "sql");
			json_t *jparams = json_object_get(js, "params");

			/* Non-empty SQL, all of it: no NUL cuts it short. */
			CHECK(st->sql != NULL && st->sql[0] != '\0');
			CHECK(json_is_string(jsql) && strlen(st->sql) == json_string_length(jsql));
			CHECK(st->expect_rows >= -1);
			CHECK(st->nparams >= 0 && st->nparams <= cfg->max_params);
			CHECK(st->nparams == 0 || st->params != NULL);
			CHECK(jparams == NULL ? st->nparams == 0 : json_array_size(jparams) == (size_t)st->nparams);
			for (int i = 0; i < st->nparams; i++) {
				json_t *jp = json_array_get(jparams, (size_t)i);
				/* NULL is SQL NULL, from JSON null only; strings whole. */
				CHECK((st->params[i] == NULL) == json_is_null(jp));
				if (st->params[i] != NULL)
					sink += strlen(st->params[i]); /* readable up to its NUL (ASan) */
				if (json_is_string(jp))
					CHECK(strlen(st->params[i]) == json_string_length(jp));
			}
		}
	}
	request_free(&req);
	CHECK(req.branches == NULL && req.json == NULL && req.owned == NULL);
	return 0;
}
