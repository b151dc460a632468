/*
 * request_int: what request.c (the jansson parser, precise rejections) and
 * request_fast.c (the single-pass parser for the common valid body) share,
 * and the two paths by name, so that tests/check_request.c and
 * tests/fuzz_request.c can run each on its own and compare them. Everyone
 * else calls request_parse (request.h), which tries the fast path first.
 */
#ifndef TWOPC_REQUEST_INT_H
#define TWOPC_REQUEST_INT_H

#include "request.h"

/* request.c */
/* Why a statement cannot run in a branch, or NULL. */
const char *request_refusal(const char *sql);
/* The jansson path: parses anything, rejects precisely. */
bool request_parse_json(const char *body, size_t len, const Config *cfg, TxnRequest *out, char *field, size_t fieldlen,
                        char *err, size_t errlen) WARN_UNUSED;

/* request_fast.c */
/* The fast path: true with out filled (out->arena set) only for a body the
 * jansson path accepts, giving the same TxnRequest; false, with out empty,
 * for anything else: an invalid body or one it leaves to the jansson path. */
bool request_parse_fast(const char *body, size_t len, const Config *cfg, TxnRequest *out) WARN_UNUSED;

#endif
