/*
 * request_same: see request_same.h.
 */
#include "request_same.h"

#include <stdio.h>
#include <string.h>

/* Two texts that may be NULL (SQL NULL): equal if both are NULL or both
 * hold the same bytes. */
static bool text_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

bool request_same(const TxnRequest *a, const TxnRequest *b, char *why, size_t whylen)
{
	if (a->nbranches != b->nbranches) {
		snprintf(why, whylen, "%zu branches, not %zu", a->nbranches, b->nbranches);
		return false;
	}
	if (a->timeout_ms != b->timeout_ms) {
		snprintf(why, whylen, "timeout_ms %lld, not %lld", (long long)a->timeout_ms, (long long)b->timeout_ms);
		return false;
	}
	for (size_t i = 0; i < a->nbranches; i++) {
		const ReqBranch *ba = &a->branches[i], *bb = &b->branches[i];

		if (ba->participant != bb->participant) {
			snprintf(why, whylen, "branch %zu: participant %s, not %s", i,
			         ba->participant ? ba->participant->name : "(NULL)",
			         bb->participant ? bb->participant->name : "(NULL)");
			return false;
		}
		if (ba->nstmts != bb->nstmts) {
			snprintf(why, whylen, "branch %zu: %zu statements, not %zu", i, ba->nstmts, bb->nstmts);
			return false;
		}
		for (size_t s = 0; s < ba->nstmts; s++) {
			const ReqStatement *sa = &ba->stmts[s], *sb = &bb->stmts[s];

			if (sa->sql == NULL || sb->sql == NULL || strcmp(sa->sql, sb->sql) != 0) {
				snprintf(why, whylen, "branch %zu statement %zu: sql \"%s\", not \"%s\"", i, s,
				         sa->sql ? sa->sql : "(NULL)", sb->sql ? sb->sql : "(NULL)");
				return false;
			}
			if (sa->expect_rows != sb->expect_rows) {
				snprintf(why, whylen, "branch %zu statement %zu: expect_rows %lld, not %lld", i, s,
				         (long long)sa->expect_rows, (long long)sb->expect_rows);
				return false;
			}
			if (sa->nparams != sb->nparams || (sa->params == NULL) != (sb->params == NULL)) {
				snprintf(why, whylen,
				         "branch %zu statement %zu: %d parameters (list %s), not %d (list %s)", i, s,
				         sa->nparams, sa->params ? "set" : "NULL", sb->nparams,
				         sb->params ? "set" : "NULL");
				return false;
			}
			for (int p = 0; p < sa->nparams; p++) {
				if (!text_same(sa->params[p], sb->params[p])) {
					snprintf(why, whylen,
					         "branch %zu statement %zu parameter %d: \"%s\", not \"%s\"", i, s, p,
					         sa->params[p] ? sa->params[p] : "(NULL)",
					         sb->params[p] ? sb->params[p] : "(NULL)");
					return false;
				}
			}
		}
	}
	return true;
}
