/*
 * check_idempotency: Idempotency-Key on POST /v1/transactions, end to end.
 *
 * A real twopcd on two real PostgreSQL clusters. Each test checks the
 * database, not only the HTTP answers: a retry that replays must not have
 * run anything (balances move exactly once), a retry of an aborted attempt
 * must run again. Cases: retry after success, after an abort, after a
 * kill -9 between the durable decision and the reply, after a clean
 * restart, concurrent duplicates (409), the same key with another body
 * (422), bad keys (400), expiry, and the bounded key table (503).
 */
#include "tlfixture.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ID_TIMEOUT_S 300
#define ID_ERR 2048
#define ID_SCHEMA                                                                                   \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"                   \
	"INSERT INTO accounts SELECT g, 1000000 FROM generate_series(1, 100) g;"
#define ID_PROBLEM "https://twopc.dev/problems/"

static const char *const id_clusters[] = {"bank_a", "bank_b", NULL};
static TlFixture id_fx = {
	.program = "check_idempotency",
	.clusters = id_clusters,
	.schema = ID_SCHEMA,
	.timeout_s = ID_TIMEOUT_S,
};
static int id_account; /* each test moves money on its own account */

/* ---------------------------------------------------------------- helpers */

static int64_t balance(const char *part)
{
	char err[ID_ERR], acc[16];
	const char *p[1] = {acc};
	int64_t v = 0;

	snprintf(acc, sizeof acc, "%d", id_account);
	if (!tl_pg_scalar_i64(tl_env_cluster(&id_fx.env, part), "SELECT balance FROM accounts WHERE id = $1", 1, p, &v,
			      err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

/* A transfer of AMOUNT from bank_a to bank_b on this test's account; the
 * debit returns the new balance, so the response carries results. */
static void transfer_body(char *buf, size_t len, int amount)
{
	snprintf(buf, len,
		 "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - $1 WHERE id = $2 "
		 "RETURNING balance\",\"params\":[%d,%d],\"expect_rows\":1}],"
		 "\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + $1 WHERE id = $2\","
		 "\"params\":[%d,%d],\"expect_rows\":1}]}}",
		 amount, id_account, amount, id_account);
}

static void post_keyed(const char *key_header_value, const char *body, TlHttpResponse *r)
{
	char err[ID_ERR], extra[512];

	if (key_header_value != NULL)
		snprintf(extra, sizeof extra, "Idempotency-Key: %s\r\n", key_header_value);
	if (!tl_http_request_h(id_fx.daemon.port, "POST", "/v1/transactions", key_header_value ? extra : NULL, body,
			       60000, r, err, sizeof err))
		ck_abort_msg("POST: %s", err);
}

static bool replayed(const TlHttpResponse *r)
{
	char v[32];
	return tl_http_header(r, "Idempotent-Replayed", v, sizeof v) != NULL && strcmp(v, "true") == 0;
}

static void expect_problem(const TlHttpResponse *r, int status, const char *slug)
{
	char type[128];

	snprintf(type, sizeof type, ID_PROBLEM "%s", slug);
	ck_assert_msg(r->status == status, "status %d, want %d: %s", r->status, status, r->body);
	ck_assert_str_eq(r->content_type, "application/problem+json");
	ck_assert_msg(r->json && tl_json_str(r->json, "type") && strcmp(tl_json_str(r->json, "type"), type) == 0,
		      "type is not %s: %s", type, r->body);
}

static void unique_key(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "\"%s-%d-%lld\"", what, (int)getpid(), (long long)tl_now_ms());
}

static void start_with(const char *const *kv, const char *fault)
{
	tl_fixture_start(&id_fx, kv, fault);
}

static void restart(const char *fault)
{
	char err[ID_ERR];

	if (!tl_daemon_restart(&id_fx.daemon, fault, err, sizeof err))
		ck_abort_msg("%s", err);
}

static int64_t prepared(void)
{
	char err[ID_ERR];
	int64_t a = 0, b = 0;

	ck_assert(tl_pg_count_prepared(tl_env_cluster(&id_fx.env, "bank_a"), &a, err, sizeof err));
	ck_assert(tl_pg_count_prepared(tl_env_cluster(&id_fx.env, "bank_b"), &b, err, sizeof err));
	return a + b;
}

/* ------------------------------------------------------------------ tests */

/* A retry after a success gets the same status and body, byte for byte,
 * marked replayed, and runs nothing; the quoted (sf-string) and the bare
 * form of a key are the same key. */
START_TEST(test_retry_after_success)
{
	TlHttpResponse r1, r2, r3;
	char key[128], body[1024];
	int64_t a0, b0;

	id_account = 1; /* each test moves money on its own account */
	start_with(NULL, NULL);
	a0 = balance("bank_a");
	b0 = balance("bank_b");
	unique_key(key, sizeof key, "ok");
	transfer_body(body, sizeof body, 7);
	post_keyed(key, body, &r1);
	ck_assert_msg(r1.status == 200, "%d %s", r1.status, r1.body);
	ck_assert(!replayed(&r1));
	post_keyed(key, body, &r2);
	ck_assert_int_eq(r2.status, 200);
	ck_assert_msg(replayed(&r2), "no Idempotent-Replayed: true");
	ck_assert_msg(r1.body_len == r2.body_len && memcmp(r1.body, r2.body, r1.body_len) == 0,
		      "replay differs:\n%s\n%s", r1.body, r2.body);
	/* The bare form of the same key. */
	key[strlen(key) - 1] = '\0';
	post_keyed(key + 1, body, &r3);
	ck_assert_msg(r3.status == 200 && replayed(&r3), "bare key not the same key: %d %s", r3.status, r3.body);
	ck_assert_int_eq(balance("bank_a"), a0 - 7);
	ck_assert_int_eq(balance("bank_b"), b0 + 7);
	tl_http_response_free(&r1);
	tl_http_response_free(&r2);
	tl_http_response_free(&r3);

	/* Across a clean kill -9 and restart (the transaction was finished:
	 * its key lives on in the log until it expires). */
	key[strlen(key)] = '"';
	post_keyed(key, body, &r1);
	ck_assert_int_eq(r1.status, 200);
	restart(NULL);
	post_keyed(key, body, &r2);
	ck_assert_msg(r2.status == 200 && replayed(&r2), "%d %s", r2.status, r2.body);
	ck_assert_msg(r1.body_len == r2.body_len && memcmp(r1.body, r2.body, r1.body_len) == 0,
		      "replay after restart differs:\n%s\n%s", r1.body, r2.body);
	ck_assert_int_eq(balance("bank_a"), a0 - 7);
	tl_http_response_free(&r1);
	tl_http_response_free(&r2);
}
END_TEST

/* An aborted attempt leaves nothing committed and releases the key: the
 * retry runs again, and commits once the cause is gone. */
START_TEST(test_retry_after_abort)
{
	TlHttpResponse r;
	char key[128], body[1024], err[ID_ERR], sql[256];
	int64_t b0;

	id_account = 2; /* each test moves money on its own account */
	start_with(NULL, NULL);
	b0 = balance("bank_b");
	/* bank_a has no row for the account yet: expect_rows fails. */
	snprintf(sql, sizeof sql, "DELETE FROM accounts WHERE id = %d", id_account);
	ck_assert(tl_pg_exec(tl_env_cluster(&id_fx.env, "bank_a"), sql, err, sizeof err));
	unique_key(key, sizeof key, "abort");
	transfer_body(body, sizeof body, 5);
	post_keyed(key, body, &r);
	expect_problem(&r, 409, "expect-rows");
	tl_http_response_free(&r);
	post_keyed(key, body, &r); /* runs again, fails again */
	expect_problem(&r, 409, "expect-rows");
	ck_assert(!replayed(&r));
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_b"), b0);

	snprintf(sql, sizeof sql, "INSERT INTO accounts VALUES (%d, 100)", id_account);
	ck_assert(tl_pg_exec(tl_env_cluster(&id_fx.env, "bank_a"), sql, err, sizeof err));
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200 && !replayed(&r), "%d %s", r.status, r.body);
	tl_http_response_free(&r);
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200 && replayed(&r), "%d %s", r.status, r.body);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a"), 95);
	ck_assert_int_eq(balance("bank_b"), b0 + 5);
	ck_assert_int_eq(prepared(), 0);
}
END_TEST

/* kill -9 right after the COMMIT record's fsync, before any COMMIT
 * PREPARED or reply: the client sees a broken connection. Its retry after
 * the restart gets the committed response from the log, and the money
 * moved exactly once. */
START_TEST(test_retry_after_crash)
{
	TlHttpResponse r, g;
	char key[128], body[1024], err[ID_ERR], path[64];
	int64_t a0, b0;
	int wstatus;

	id_account = 3; /* each test moves money on its own account */
	start_with(NULL, "after_log_fsync:crash");
	a0 = balance("bank_a");
	b0 = balance("bank_b");
	unique_key(key, sizeof key, "crash");
	transfer_body(body, sizeof body, 11);
	{
		char extra[256], e2[ID_ERR];
		snprintf(extra, sizeof extra, "Idempotency-Key: %s\r\n", key);
		ck_assert_msg(!tl_http_request_h(id_fx.daemon.port, "POST", "/v1/transactions", extra, body, 30000, &r, e2,
						 sizeof e2),
			      "the crash fault did not fire: %d %s", r.status, r.body);
	}
	ck_assert(tl_daemon_wait_exit(&id_fx.daemon, 10000, &wstatus, err, sizeof err));
	restart(NULL);
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200 && replayed(&r), "%d %s", r.status, r.body);
	ck_assert_str_eq(tl_json_str(r.json, "outcome"), "committed");
	/* The replay carries the results computed before the crash. */
	{
		json_t *rows = json_object_get(json_array_get(json_object_get(json_object_get(r.json, "branches"),
									      "bank_a"),
							  0),
					       "rows");
		int64_t after = -1;
		ck_assert_msg(json_is_array(rows) && json_array_size(rows) == 1, "no rows: %s", r.body);
		ck_assert(tl_json_i64(json_array_get(rows, 0), "balance", &after));
		ck_assert_int_eq(after, a0 - 11);
	}
	snprintf(path, sizeof path, "/v1/transactions/%s", tl_json_str(r.json, "id"));
	ck_assert(tl_http_request(id_fx.daemon.port, "GET", path, NULL, 10000, &g, err, sizeof err));
	ck_assert_msg(g.status == 200 && strcmp(tl_json_str(g.json, "status"), "committed") == 0, "%s", g.body);
	tl_http_response_free(&g);
	tl_http_response_free(&r);
	/* Recovery finishes phase 2 at startup. */
	for (int i = 0; i < 100 && prepared() != 0; i++)
		tl_sleep_ms(100);
	ck_assert_int_eq(prepared(), 0);
	ck_assert_int_eq(balance("bank_a"), a0 - 11);
	ck_assert_int_eq(balance("bank_b"), b0 + 11);
}
END_TEST

typedef struct Dup {
	pthread_t th;
	const char *key, *body;
	int status;
	bool replayed;
	char slug[64];
} Dup;

static void *dup_main(void *arg)
{
	Dup *d = arg;
	TlHttpResponse r;
	char err[ID_ERR], extra[256];

	snprintf(extra, sizeof extra, "Idempotency-Key: %s\r\n", d->key);
	if (tl_http_request_h(id_fx.daemon.port, "POST", "/v1/transactions", extra, d->body, 60000, &r, err, sizeof err)) {
		const char *t = r.json ? tl_json_str(r.json, "type") : NULL;
		d->status = r.status;
		d->replayed = replayed(&r);
		snprintf(d->slug, sizeof d->slug, "%s", t && strlen(t) > strlen(ID_PROBLEM) ? t + strlen(ID_PROBLEM) : "");
		tl_http_response_free(&r);
	}
	return NULL;
}

/* Duplicates while the first attempt runs: 409 with Retry-After (the
 * first is held on a row lock), 422 for a different body; exactly one
 * execution; later retries replay. */
START_TEST(test_concurrent_duplicates)
{
	static const char *const kv[] = {"lock_timeout_ms", "20000", NULL};
	enum { N = 8 };
	Dup first, dups[N];
	TlHttpResponse r;
	char key[128], body[1024], other[1024], err[ID_ERR], sql[128], ra[16];
	PGconn *lock;
	PGresult *res;
	int64_t a0;

	id_account = 4; /* each test moves money on its own account */
	start_with(kv, NULL);
	a0 = balance("bank_a");
	unique_key(key, sizeof key, "dup");
	transfer_body(body, sizeof body, 3);
	transfer_body(other, sizeof other, 4);

	lock = tl_pg_connect(tl_env_cluster(&id_fx.env, "bank_a"), err, sizeof err);
	ck_assert_msg(lock != NULL, "%s", err);
	snprintf(sql, sizeof sql, "BEGIN; SELECT * FROM accounts WHERE id = %d FOR UPDATE", id_account);
	res = PQexec(lock, sql);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);

	memset(&first, 0, sizeof first);
	first.key = key;
	first.body = body;
	ck_assert_int_eq(pthread_create(&first.th, NULL, dup_main, &first), 0);
	/* Wait until the first attempt waits on the lock. */
	for (int i = 0;; i++) {
		int64_t waiting = 0;
		ck_assert(tl_pg_scalar_i64(tl_env_cluster(&id_fx.env, "bank_a"),
					   "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", 0, NULL,
					   &waiting, err, sizeof err));
		if (waiting > 0)
			break;
		ck_assert_msg(i < 200, "the first attempt never reached the lock");
		tl_sleep_ms(50);
	}
	for (int i = 0; i < N; i++) {
		memset(&dups[i], 0, sizeof dups[i]);
		dups[i].key = key;
		dups[i].body = i == N - 1 ? other : body;
		ck_assert_int_eq(pthread_create(&dups[i].th, NULL, dup_main, &dups[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(dups[i].th, NULL);
	for (int i = 0; i < N - 1; i++)
		ck_assert_msg(dups[i].status == 409 && strcmp(dups[i].slug, "idempotency-key-in-use") == 0,
			      "duplicate %d: %d %s", i, dups[i].status, dups[i].slug);
	ck_assert_msg(dups[N - 1].status == 422 && strcmp(dups[N - 1].slug, "idempotency-key-mismatch") == 0,
		      "other body: %d %s", dups[N - 1].status, dups[N - 1].slug);
	post_keyed(key, body, &r);
	expect_problem(&r, 409, "idempotency-key-in-use");
	ck_assert_msg(tl_http_header(&r, "Retry-After", ra, sizeof ra) != NULL, "409 without Retry-After");
	tl_http_response_free(&r);

	res = PQexec(lock, "COMMIT");
	PQclear(res);
	PQfinish(lock);
	pthread_join(first.th, NULL);
	ck_assert_msg(first.status == 200 && !first.replayed, "first: %d", first.status);
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200 && replayed(&r), "%d %s", r.status, r.body);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a"), a0 - 3);
}
END_TEST

/* The same key with another body after a success: 422, nothing runs; bad
 * keys: 400 naming the header. */
START_TEST(test_key_reuse_and_bad_keys)
{
	static const char *const bad[] = {"\"\"", "\"unterminated", "\"a\" ; p=1", "two words", "\"tab\there\"",
					  "\"bad\\escape\""};
	TlHttpResponse r;
	char key[128], body[1024], other[1024], longkey[300];
	int64_t a0;

	id_account = 5; /* each test moves money on its own account */
	start_with(NULL, NULL);
	a0 = balance("bank_a");
	unique_key(key, sizeof key, "reuse");
	transfer_body(body, sizeof body, 2);
	transfer_body(other, sizeof other, 200);
	post_keyed(key, body, &r);
	ck_assert_int_eq(r.status, 200);
	tl_http_response_free(&r);
	post_keyed(key, other, &r);
	expect_problem(&r, 422, "idempotency-key-mismatch");
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a"), a0 - 2);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		post_keyed(bad[i], body, &r);
		expect_problem(&r, 400, "invalid-request");
		ck_assert_str_eq(tl_json_str(r.json, "field"), "header Idempotency-Key");
		tl_http_response_free(&r);
	}
	longkey[0] = '"';
	memset(longkey + 1, 'k', 256);
	longkey[257] = '"';
	longkey[258] = '\0';
	post_keyed(longkey, body, &r);
	expect_problem(&r, 400, "invalid-request");
	ck_assert_msg(strstr(tl_json_str(r.json, "detail"), "255") != NULL, "%s", r.body);
	tl_http_response_free(&r);
	longkey[256] = '"';
	longkey[257] = '\0'; /* 255 characters: accepted */
	post_keyed(longkey, body, &r);
	ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a"), a0 - 4);
}
END_TEST

/* Keys expire after idempotency_ttl_s; the table is bounded by
 * idempotency_max_bytes and refuses new keys (503, Retry-After) rather
 * than forget live ones; unkeyed requests go on meanwhile. */
START_TEST(test_expiry_and_bound)
{
	static const char *const kv[] = {"idempotency_ttl_s", "3", "idempotency_max_bytes", "65536", NULL};
	TlHttpResponse r;
	char key[128], body[1024], ra[16];
	int64_t a0, t0;
	int accepted = 0;

	id_account = 6; /* each test moves money on its own account */
	start_with(kv, NULL);
	a0 = balance("bank_a");
	transfer_body(body, sizeof body, 1);
	unique_key(key, sizeof key, "exp");
	t0 = tl_now_ms();
	post_keyed(key, body, &r);
	ck_assert_int_eq(r.status, 200);
	tl_http_response_free(&r);
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200 && replayed(&r), "%d", r.status);
	tl_http_response_free(&r);

	/* Fill the table with fresh keys until it refuses one. */
	for (int i = 0; i < 2000; i++) {
		char k[64];
		snprintf(k, sizeof k, "\"fill-%d-%d\"", (int)getpid(), i);
		post_keyed(k, body, &r);
		if (r.status == 503) {
			expect_problem(&r, 503, "idempotency-store-full");
			ck_assert_msg(tl_http_header(&r, "Retry-After", ra, sizeof ra) != NULL && atoi(ra) >= 1,
				      "no Retry-After");
			tl_http_response_free(&r);
			break;
		}
		ck_assert_msg(r.status == 200, "fill %d: %d %s", i, r.status, r.body);
		accepted++;
		tl_http_response_free(&r);
	}
	ck_assert_msg(accepted > 10 && accepted < 2000, "the table took %d keys", accepted);
	fprintf(stderr, "check_idempotency: 64 KiB held %d keys before refusing\n", accepted + 1);
	/* A remembered key still replays while the table is full. */
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200 && replayed(&r), "%d", r.status);
	tl_http_response_free(&r);
	/* Requests without a key are not affected. */
	post_keyed(NULL, body, &r);
	ck_assert_int_eq(r.status, 200);
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a"), a0 - 2 - accepted);

	/* After the ttl (and the daemon's once-a-second expiry), the first
	 * key runs again and new keys are accepted. */
	while (tl_now_ms() - t0 < 3000 + 1500)
		tl_sleep_ms(100);
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200 && !replayed(&r), "after expiry: %d replayed=%d", r.status, replayed(&r));
	tl_http_response_free(&r);
	ck_assert_int_eq(balance("bank_a"), a0 - 3 - accepted);
	/* And an expired key stays forgotten across a restart. */
	restart(NULL);
	while (tl_now_ms() - t0 < 2 * 3000 + 3000)
		tl_sleep_ms(100);
	unique_key(key, sizeof key, "late");
	post_keyed(key, body, &r);
	ck_assert_msg(r.status == 200, "new key after expiry: %d %s", r.status, r.body);
	tl_http_response_free(&r);
}
END_TEST

/* ------------------------------------------------------------- fixtures */

TL_FIXTURE_GLUE(id_fx)
TL_FIXTURE_SETUP(id_fx, retry_after_success)
TL_FIXTURE_SETUP(id_fx, retry_after_abort)
TL_FIXTURE_SETUP(id_fx, retry_after_crash)
TL_FIXTURE_SETUP(id_fx, concurrent_duplicates)
TL_FIXTURE_SETUP(id_fx, key_reuse_and_bad_keys)
TL_FIXTURE_SETUP(id_fx, expiry_and_bound)

int main(void)
{
	Suite *s = suite_create("idempotency");

	TL_FIXTURE_CASE(id_fx, s, retry_after_success);
	TL_FIXTURE_CASE(id_fx, s, retry_after_abort);
	TL_FIXTURE_CASE(id_fx, s, retry_after_crash);
	TL_FIXTURE_CASE(id_fx, s, concurrent_duplicates);
	TL_FIXTURE_CASE(id_fx, s, key_reuse_and_bad_keys);
	TL_FIXTURE_CASE(id_fx, s, expiry_and_bound);
	return tl_fixture_main(&id_fx, s);
}
