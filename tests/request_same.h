/*
 * request_same: compares two TxnRequests field by field, for the tests
 * that hold the fast path's requests (coordinator/request_fast.c) against
 * the jansson path's: tests/check_request.c and tests/fuzz_request.c.
 */
#ifndef TWOPC_TESTS_REQUEST_SAME_H
#define TWOPC_TESTS_REQUEST_SAME_H

#include <stdbool.h>
#include <stddef.h>

#include "request.h"

/* True if a and b ask for the same transaction: the same branches in the
 * same order, statements, SQL texts, parameter texts (NULL for NULL, and a
 * NULL list only where the other's is NULL), expect_rows and timeout.
 * Otherwise false, with the first difference described in why. */
bool request_same(const TxnRequest *a, const TxnRequest *b, char *why, size_t whylen);

#endif
