/*
 * tlfixture: clusters once per program, a daemon per test.
 */
#include "tlfixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tl_fixture_clusters(TlFixture *f)
{
	if (f->tried)
		return;
	f->tried = true;
	fflush(NULL); /* forked tests must not repeat our buffered output */
	if (!tl_env_init(&f->env, f->err, sizeof f->err))
		return;
	/* TWOPC_TEST_KEEP=1 keeps logs and data directories for a post-mortem */
	f->env.keep_tmpdir = getenv("TWOPC_TEST_KEEP") != NULL;
	for (const char *const *name = f->clusters; *name; name++) {
		if (!tl_env_add_cluster(&f->env, *name, f->err, sizeof f->err))
			return;
		if (f->schema && !tl_pg_exec(tl_env_cluster(&f->env, *name), f->schema, f->err, sizeof f->err))
			return;
	}
	f->ok = true;
}

void tl_fixture_setup(TlFixture *f, const char *tag)
{
	char err[TL_ERR_MAX], log_dir[TL_PATH_MAX + 64];

	ck_assert_msg(f->ok, "test clusters could not be created: %s", f->err);
	if (!tl_fmt(log_dir, sizeof log_dir, "%s/twopcd-log-%s", f->env.tmpdir, tag))
		ck_abort_msg("temporary directory path too long");
	if (!tl_daemon_configure(&f->daemon, &f->env, log_dir, tag, err, sizeof err))
		ck_abort_msg("%s", err);
}

void tl_fixture_teardown(TlFixture *f)
{
	char err[TL_ERR_MAX];

	if (!tl_daemon_kill(&f->daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}

void tl_fixture_start(TlFixture *f, const char *const *kv, const char *fault)
{
	char err[TL_ERR_MAX];

	for (; kv && kv[0]; kv += 2)
		if (!tl_daemon_set(&f->daemon, kv[0], kv[1], err, sizeof err))
			ck_abort_msg("%s", err);
	if (!tl_daemon_start(&f->daemon, fault, err, sizeof err))
		ck_abort_msg("%s", err);
}

void tl_fixture_add(Suite *s, const char *name, const TTest *test, void (*unchecked)(void), void (*setup)(void),
		    void (*teardown)(void), int timeout_s)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, unchecked, NULL);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout_s);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

int tl_fixture_main(TlFixture *f, Suite *s)
{
	const char *skip = tl_skip_reason();
	SRunner *sr;
	int failed;

	if (skip != NULL) {
		fprintf(stderr, "%s: SKIP: %s\n", f->program, skip);
		return TL_EXIT_SKIP;
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (f->env.keep_tmpdir && f->env.tmpdir[0] != '\0')
		fprintf(stderr, "%s: kept %s\n", f->program, f->env.tmpdir);
	tl_env_destroy(&f->env);
	return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
