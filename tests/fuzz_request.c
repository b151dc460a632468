/*
 * fuzz_request: libFuzzer harness for request_parse, the parser and
 * validator of POST /v1/transactions bodies (coordinator/request.c and
 * coordinator/request_fast.c), and a differential test of its two paths.
 *
 * Every input is a request body, parsed under two configurations (the
 * defaults, and tight limits that mutations can reach) three times: by the
 * jansson path alone (request_parse_json), by the fast path alone
 * (request_parse_fast) and by request_parse.
 *
 * The jansson path's result must hold what the rest of twopcd relies on:
 * at least one branch, each naming a distinct participant of the
 * configuration, 1..max_statements statements per branch, non-empty SQL,
 * 0..max_params parameters, a timeout within the configured bounds; a
 * rejection comes back empty with a message.
 *
 * The fast path may decline anything, but what it accepts the jansson path
 * must accept, with the same request field for field (request_same); and
 * request_parse must give the jansson path's verdict: the same request, or
 * the same field and message. Any difference aborts with both sides
 * printed. ASan/UBSan catch the rest; LSan catches leaks.
 *
 *   make fuzz-build && tests/fuzz_request tests/fuzz/request
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "request.h"
#include "request_int.h"
#include "request_same.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_request: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);    \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

/* The participants both configurations share; limits: the defaults, and
 * ones small enough for mutations to cross. */
#define PARTICIPANTS                                                                                                   \
	"[participant bank_a]\n"                                                                                       \
	"conninfo = dbname=x\n"                                                                                        \
	"[participant bank_b]\n"                                                                                       \
	"conninfo = dbname=x\n"                                                                                        \
	"[participant p3]\n"                                                                                           \
	"conninfo = dbname=x\n"

static const Config *config(int which)
{
	static Config cfg[2];
	static int loaded;
	static const char *const text[2] = {"[coordinator]\n"
	                                    "id = c1\n"
	                                    "log_dir = /nonexistent/twopc-fuzz\n"
	                                    "default_timeout_ms = 5000\n"
	                                    "max_timeout_ms = 60000\n" PARTICIPANTS,
	                                    "[coordinator]\n"
	                                    "id = c1\n"
	                                    "log_dir = /nonexistent/twopc-fuzz\n"
	                                    "default_timeout_ms = 700\n"
	                                    "max_timeout_ms = 1000\n"
	                                    "max_branches = 2\n"
	                                    "max_statements = 2\n"
	                                    "max_params = 3\n" PARTICIPANTS};
	if (!loaded) {
		for (int i = 0; i < 2; i++) {
			char err[512];
			if (!config_load_string(text[i], "fuzz.ini", &cfg[i], err, sizeof(err))) {
				fprintf(stderr, "fuzz_request: config %d: %s\n", i, err);
				abort();
			}
		}
		loaded = 1;
	}
	return &cfg[which];
}

static volatile size_t sink;

/* The jansson path's request against its own tree. */
static void check_accepted(const Config *cfg, const TxnRequest *req)
{
	CHECK(req->json != NULL && req->arena == NULL);
	CHECK(req->nbranches >= 1 && req->nbranches <= cfg->nparticipants &&
	      (int64_t)req->nbranches <= cfg->max_branches);
	CHECK(req->timeout_ms >= 1 && req->timeout_ms <= cfg->max_timeout_ms);
	for (size_t b = 0; b < req->nbranches; b++) {
		const ReqBranch *br = &req->branches[b];
		const ParticipantConfig *p = br->participant;

		CHECK(p != NULL);
		CHECK(p >= cfg->participants && p < cfg->participants + cfg->nparticipants);
		for (size_t o = 0; o < b; o++)
			CHECK(req->branches[o].participant != p);
		CHECK(br->nstmts >= 1 && (int64_t)br->nstmts <= cfg->max_statements);
		CHECK(br->stmts != NULL);
		/* The branch's statements as the client sent them. */
		json_t *list = json_object_get(json_object_get(req->json, "branches"), p->name);
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
			CHECK(jparams == NULL ? st->nparams == 0 && st->params == NULL
			                      : json_array_size(jparams) == (size_t)st->nparams && st->params != NULL);
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
}

/* A rejection leaves nothing to free and says why. */
static void check_rejected(const TxnRequest *req, const char *field, size_t fieldlen, const char *err, size_t errlen)
{
	CHECK(req->branches == NULL && req->nbranches == 0 && req->json == NULL && req->arena == NULL);
	CHECK(req->owned == NULL && req->nowned == 0);
	CHECK(memchr(field, '\0', fieldlen) != NULL);
	CHECK(memchr(err, '\0', errlen) != NULL && err[0] != '\0');
}

/* The two paths disagree: say how, with the input, and abort. */
static void differ(int which, const char *what, const char *detail, const uint8_t *data, size_t size)
{
	fprintf(stderr, "fuzz_request: config %d: %s: %s\ninput (%zu bytes): %.*s\n", which, what, detail, size,
	        (int)size, (const char *)data);
	abort();
}

static void run(int which, const uint8_t *data, size_t size)
{
	const Config *cfg = config(which);
	const char *body = (const char *)data;
	TxnRequest slow, fast, req;
	char sfield[256], serr[512], field[256], err[512], why[512];
	bool slow_ok, fast_ok, ok;

	memset(sfield, 'x', sizeof(sfield));
	memset(serr, 'x', sizeof(serr));
	slow_ok = request_parse_json(body, size, cfg, &slow, sfield, sizeof(sfield), serr, sizeof(serr));
	if (slow_ok)
		check_accepted(cfg, &slow);
	else
		check_rejected(&slow, sfield, sizeof(sfield), serr, sizeof(serr));

	fast_ok = request_parse_fast(body, size, cfg, &fast);
	if (fast_ok) {
		if (!slow_ok)
			differ(which, "the fast path accepts what the jansson path rejects", serr, data, size);
		CHECK(fast.arena != NULL && fast.json == NULL && fast.owned == NULL);
		if (!request_same(&fast, &slow, why, sizeof(why)))
			differ(which, "the fast path's request differs", why, data, size);
	} else {
		/* Declined: nothing left behind. */
		CHECK(fast.arena == NULL && fast.branches == NULL && fast.nbranches == 0);
	}

	memset(field, 'x', sizeof(field));
	memset(err, 'x', sizeof(err));
	ok = request_parse(body, size, cfg, &req, field, sizeof(field), err, sizeof(err));
	if (ok != slow_ok)
		differ(which,
		       ok ? "request_parse accepts what the jansson path rejects"
		          : "request_parse rejects what the jansson path accepts",
		       ok ? serr : err, data, size);
	if (ok) {
		CHECK((req.arena != NULL) == fast_ok);
		CHECK(field[0] == '\0');
		if (!request_same(&req, &slow, why, sizeof(why)))
			differ(which, "request_parse's request differs", why, data, size);
	} else {
		check_rejected(&req, field, sizeof(field), err, sizeof(err));
		if (strcmp(field, sfield) != 0 || strcmp(err, serr) != 0) {
			snprintf(why, sizeof(why), "field \"%s\" / \"%s\", error \"%.200s\" / \"%.200s\"", field,
			         sfield, err, serr);
			differ(which, "request_parse's rejection differs", why, data, size);
		}
	}

	request_free(&slow);
	request_free(&fast);
	request_free(&req);
	request_free(&req); /* idempotent */
	CHECK(slow.branches == NULL && slow.json == NULL && slow.owned == NULL);
	CHECK(fast.branches == NULL && fast.arena == NULL);
	CHECK(req.branches == NULL && req.json == NULL && req.arena == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(0, data, size);
	run(1, data, size);
	return 0;
}
