/*
 * tlfixture: the Check glue the integration test programs share.
 *
 * A program's clusters are made once, in the runner process (an unchecked
 * fixture that records failure instead of asserting, so each test reports
 * the reason); each test then runs in a forked child with its own twopcd,
 * configured by the checked fixture and started by the test (which may set
 * config keys first). tl_fixture_main() runs the suite and destroys the
 * clusters, also on failure.
 */
#ifndef TWOPC_TLFIXTURE_H
#define TWOPC_TLFIXTURE_H

#include <check.h>

#include "testlib.h"

typedef struct TlFixture {
	const char *program;            /* for messages, e.g. "check_http" */
	const char *const *clusters;    /* participant names, NULL-terminated */
	const char *schema;             /* SQL run in each cluster's bank database */
	int timeout_s;                  /* per test */
	/* State. */
	TlEnv env;
	bool tried, ok;
	char err[TL_ERR_MAX];
	TlDaemon daemon;
} TlFixture;

/* The unchecked fixture's body: make the clusters the first time. */
void tl_fixture_clusters(TlFixture *f);
/* The checked fixture's body: configure (not start) a twopcd whose stderr
 * goes to twopcd-TAG.log and whose decision log is its own. */
void tl_fixture_setup(TlFixture *f, const char *tag);
/* kill -9 the daemon (a failure if it died on its own or left a sanitizer
 * report). */
void tl_fixture_teardown(TlFixture *f);
/* Sets KV (key, value pairs, NULL-terminated) in the config and starts
 * twopcd, with FAULT (or NULL) in TWOPC_FAULT. */
void tl_fixture_start(TlFixture *f, const char *const *kv, const char *fault);
/* Adds one test case with the fixture functions of its program. */
void tl_fixture_add(Suite *s, const char *name, const TTest *test, void (*unchecked)(void), void (*setup)(void),
		    void (*teardown)(void), int timeout_s);
/* Skips (exit 77) without PostgreSQL, else runs the suite, destroys the
 * clusters and returns the exit status. */
int tl_fixture_main(TlFixture *f, Suite *s);

/* Declares the per-program glue functions for a TlFixture named FX. */
#define TL_FIXTURE_GLUE(FX)                                                      \
	static void FX##_unchecked(void) { tl_fixture_clusters(&FX); }          \
	static void FX##_teardown(void) { tl_fixture_teardown(&FX); }
/* A checked setup for test NAME of fixture FX. */
#define TL_FIXTURE_SETUP(FX, name) \
	static void FX##_setup_##name(void) { tl_fixture_setup(&FX, #name); }
#define TL_FIXTURE_CASE(FX, s, name) \
	tl_fixture_add(s, #name, test_##name, FX##_unchecked, FX##_setup_##name, FX##_teardown, FX.timeout_s)

#endif
