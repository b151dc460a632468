/*
 * check_security: participant passwords stay secret, and TLS to
 * participants works, against real PostgreSQL.
 *
 * The runner process starts three throwaway clusters once, each with a role
 * twopc_app that must log in with a password over TCP (pg_hba.conf):
 *
 *   pw_a  scram-sha-256; twopcd gets the password in its conninfo
 *         (password=...), and a wrong one for a second participant
 *   pw_b  md5; twopcd reads the password from a libpq password file
 *         (passfile=..., and PGPASSFILE for --check)
 *   tls   ssl=on with a self-signed certificate (CN and subjectAltName
 *         127.0.0.1); a hostssl line admits twopc_app, a hostnossl line
 *         rejects it in plain text
 *
 * The tests commit transactions through twopcd's HTTP API, provoke every
 * failure that prints a connection problem — a wrong password, a cluster
 * stopped under a running daemon, a bad config file under --check, an
 * unreachable participant under twopc-recover status, a plain-text or
 * unverifiable connection to the TLS cluster — and assert that none of the
 * passwords ever appears in twopcd's log, in an HTTP response body or in
 * the tools' output, while the errors still say what went wrong. The TLS
 * tests prove from pg_stat_ssl that twopcd's sessions are encrypted.
 *
 * Exits 77 (automake SKIP) when no PostgreSQL server binaries are available.
 */
#include "testlib.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEC_TIMEOUT_S 300
#define SEC_HTTP_MS   60000
#define SEC_RUN_MS    60000
#define SEC_ERR       2048

/* Distinctive, so that finding one anywhere can only mean a leak. */
#define SEC_PASSWORD "Zq7-hunter2-Kx9w"  /* twopc_app on pw_a and tls, in the conninfo */
#define SEC_WRONG    "Wb4-not-it-Lm2p"   /* a wrong password for pw_a, in the conninfo */
#define SEC_FILEPW   "Pf8-in-a-file-Tt3" /* twopc_app on pw_b, in the password file */

static const char *const sec_secrets[] = {SEC_PASSWORD, SEC_WRONG, SEC_FILEPW};

#define SEC_SCHEMA                                                                                                     \
	"CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));"                    \
	"CREATE TABLE transfers (id text PRIMARY KEY);"                                                                \
	"INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g;"                                          \
	"GRANT SELECT, INSERT, UPDATE ON accounts, transfers TO twopc_app;"

static TlEnv sec_env;
static bool sec_env_tried, sec_env_ok;
static char sec_env_err[SEC_ERR];
static char sec_passfile[TL_PATH_MAX];   /* pw_b's password, libpq's format */
static char sec_cert[TL_PATH_MAX];       /* the tls cluster's certificate: the root to trust */
static char sec_other_cert[TL_PATH_MAX]; /* a certificate that did not sign it */
static TlDaemon sec_daemon;
static int sec_seq;

/* ------------------------------------------------------------------ helpers */

static TlCluster *sec_cluster(const char *name)
{
	TlCluster *c = tl_env_cluster(&sec_env, name);
	ck_assert_msg(c != NULL, "no cluster %s", name);
	return c;
}

/* The first of our passwords in TEXT, or NULL. */
static const char *sec_find_secret(const char *text)
{
	for (size_t i = 0; i < sizeof sec_secrets / sizeof sec_secrets[0]; i++)
		if (text != NULL && strstr(text, sec_secrets[i]) != NULL)
			return sec_secrets[i];
	return NULL;
}

/* Fails the test when TEXT (what WHERE printed) holds a password. */
static void sec_assert_clean(const char *text, const char *where)
{
	const char *s = sec_find_secret(text);

	if (s != NULL) {
		const char *p = strstr(text, s), *b = p, *e = strchr(p, '\n');
		while (b > text && b[-1] != '\n')
			b--;
		ck_abort_msg("%s shows a password: %.*s", where, (int)(e ? e - b : (long)strlen(b)), b);
	}
}

static char *sec_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert(fseek(f, 0, SEEK_END) == 0);
	n = ftell(f);
	ck_assert(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
	buf = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void sec_write_file(const char *path, const char *mode, const char *text)
{
	FILE *f = fopen(path, mode);

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_msg(fputs(text, f) >= 0 && fclose(f) == 0, "%s: write failed", path);
}

/* The daemon's log must name the failures but hold no password; and the
 * check must be able to see one: the config file holds them all. */
static void sec_assert_log_clean(const char *must_have)
{
	char *log = sec_read_file(sec_daemon.log_path);
	char *conf = sec_read_file(sec_daemon.conf_path);

	ck_assert_msg(sec_find_secret(conf) != NULL, "the leak check finds no password in %s, which holds one",
	              sec_daemon.conf_path);
	sec_assert_clean(log, sec_daemon.log_path);
	if (must_have != NULL)
		ck_assert_msg(strstr(log, must_have) != NULL, "twopcd's log never says '%s':\n%s", must_have, log);
	free(conf);
	free(log);
}

/* Writes twopcd's config: the usual [coordinator] section (debug logging:
 * the most a log ever says) and PARTICIPANTS as given. */
static void sec_configure(const char *tag, const char *participants)
{
	char err[SEC_ERR], log_dir[TL_PATH_MAX + 64], text[8192];

	ck_assert(tl_fmt(log_dir, sizeof log_dir, "%s/log-%s", sec_env.tmpdir, tag));
	if (!tl_daemon_configure(&sec_daemon, &sec_env, log_dir, tag, err, sizeof err))
		ck_abort_msg("%s", err);
	ck_assert(tl_fmt(text, sizeof text,
	                 "[coordinator]\nid = t1\nlisten = 127.0.0.1:%d\nlog_dir = %s\ndefault_timeout_ms = 10000\n"
	                 "log_level = debug\n%s",
	                 sec_daemon.port, log_dir, participants));
	sec_write_file(sec_daemon.conf_path, "w", text);
}

/* "[participant NAME]" with a conninfo for twopc_app on CLUSTER plus EXTRA. */
static void sec_participant(char *buf, size_t len, const char *name, const char *cluster, const char *extra)
{
	size_t used = strlen(buf);

	ck_assert(tl_fmt(buf + used, len - used,
	                 "\n[participant %s]\nconninfo = host=127.0.0.1 port=%d dbname=bank user=twopc_app %s\n"
	                 "pool_size = 2\n",
	                 name, sec_cluster(cluster)->port, extra));
}

static void sec_start(void)
{
	char err[SEC_ERR];

	if (!tl_daemon_start(&sec_daemon, NULL, err, sizeof err))
		ck_abort_msg("%s", err);
}

/* One HTTP exchange with the daemon; its body must hold no password. */
static void sec_http(const char *method, const char *path, const char *body, TlHttpResponse *r)
{
	char err[SEC_ERR], where[256];

	if (!tl_http_request(sec_daemon.port, method, path, body, SEC_HTTP_MS, r, err, sizeof err)) {
		tl_daemon_print_log_tail(&sec_daemon, 30);
		ck_abort_msg("%s %s: %s", method, path, err);
	}
	snprintf(where, sizeof where, "the body of %s %s (HTTP %d)", method, path, r->status);
	sec_assert_clean(r->body, where);
}

/* POSTs a transfer of 1 from account ACCT on FROM to ACCT on TO. */
static void sec_transfer(const char *from, const char *to, int acct, TlHttpResponse *r)
{
	char body[1024], tid[64];

	snprintf(tid, sizeof tid, "sec-%d-%d", (int)getpid(), ++sec_seq);
	snprintf(body, sizeof body,
	         "{\"branches\":{"
	         "\"%s\":[{\"sql\":\"UPDATE accounts SET balance = balance - 1 WHERE id = %d\",\"expect_rows\":1},"
	         "{\"sql\":\"INSERT INTO transfers (id) VALUES ('%s')\"}],"
	         "\"%s\":[{\"sql\":\"UPDATE accounts SET balance = balance + 1 WHERE id = %d\",\"expect_rows\":1},"
	         "{\"sql\":\"INSERT INTO transfers (id) VALUES ('%s')\"}]}}",
	         from, acct, tid, to, acct, tid);
	sec_http("POST", "/v1/transactions", body, r);
}

static int64_t sec_scalar(const char *cluster, const char *sql)
{
	char err[SEC_ERR];
	int64_t v = 0;

	if (!tl_pg_scalar_i64(sec_cluster(cluster), sql, 0, NULL, &v, err, sizeof err))
		ck_abort_msg("%s", err);
	return v;
}

/* Commits N transfers between FROM and TO and checks them in both databases. */
static void sec_commit_some(const char *from, const char *to, int n)
{
	int64_t f0 = sec_scalar(from, "SELECT balance FROM accounts WHERE id = 7");
	int64_t t0 = sec_scalar(to, "SELECT balance FROM accounts WHERE id = 7");

	for (int i = 0; i < n; i++) {
		TlHttpResponse r;

		sec_transfer(from, to, 7, &r);
		ck_assert_msg(r.status == 200 && strcmp(tl_json_str(r.json, "outcome"), "committed") == 0,
		              "transfer %s -> %s: HTTP %d %s", from, to, r.status, r.body);
		tl_http_response_free(&r);
	}
	ck_assert_int_eq(sec_scalar(from, "SELECT balance FROM accounts WHERE id = 7"), f0 - n);
	ck_assert_int_eq(sec_scalar(to, "SELECT balance FROM accounts WHERE id = 7"), t0 + n);
}

/* GET /healthz: participant NAME's entry (a new reference). */
static json_t *sec_health(const char *name)
{
	TlHttpResponse r;
	json_t *p;

	sec_http("GET", "/healthz", NULL, &r);
	ck_assert_msg(r.status == 200, "GET /healthz: HTTP %d %s", r.status, r.body);
	p = json_object_get(json_object_get(r.json, "participants"), name);
	ck_assert_msg(p != NULL, "no participant %s in /healthz: %s", name, r.body);
	json_incref(p);
	tl_http_response_free(&r);
	return p;
}

/* Waits until /healthz says NAME is REACHABLE; then, if unreachable, its
 * error must hold WANT. */
static void sec_wait_health(const char *name, bool reachable, const char *want)
{
	int64_t deadline = tl_now_ms() + 20000;
	json_t *p;

	for (;;) {
		p = sec_health(name);
		if (json_is_true(json_object_get(p, "reachable")) == reachable)
			break;
		ck_assert_msg(tl_now_ms() < deadline, "/healthz: %s reachable is not %s after 20 s: %s", name,
		              reachable ? "true" : "false", json_dumps(p, JSON_COMPACT));
		json_decref(p);
		tl_sleep_ms(100);
	}
	if (!reachable && want != NULL) {
		const char *e = tl_json_str(p, "error");
		ck_assert_msg(e != NULL && strstr(e, want) != NULL, "/healthz: %s's error does not say '%s': %s", name,
		              want, e ? e : "(none)");
	}
	json_decref(p);
}

/* A transaction touching NAME is refused as participant-unavailable, its
 * detail holding WANT. */
static void sec_assert_unavailable(const char *name, const char *other, const char *want)
{
	TlHttpResponse r;
	const char *detail;

	sec_transfer(other, name, 8, &r);
	ck_assert_msg(r.status == 503, "transfer to %s: HTTP %d, want 503: %s", name, r.status, r.body);
	ck_assert_msg(strstr(r.body, "participant-unavailable") != NULL, "not participant-unavailable: %s", r.body);
	detail = tl_json_str(r.json, "detail");
	ck_assert_msg(detail != NULL && strstr(detail, want) != NULL, "detail does not say '%s': %s", want, r.body);
	tl_http_response_free(&r);
}

/* Runs twopcd or twopc-recover (PROG, relative to the build directory)
 * with -c CONF and the arguments up to NULL; their output must hold no
 * password. */
static void sec_run(TlRunResult *r, const char *prog, const char *conf, ...)
{
	const char *argv[16];
	char bin[TL_PATH_MAX + 32], err[SEC_ERR], where[256];
	int argc = 0;
	va_list ap;

	ck_assert(tl_fmt(bin, sizeof bin, "%s/%s", sec_env.builddir, prog));
	argv[argc++] = bin;
	argv[argc++] = "-c";
	argv[argc++] = conf;
	va_start(ap, conf);
	for (const char *a = va_arg(ap, const char *); a != NULL && argc < 15; a = va_arg(ap, const char *))
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	if (!tl_run_capture(&sec_env, argv, SEC_RUN_MS, r, err, sizeof err))
		ck_abort_msg("%s", err);
	/* The transcript goes to the test log: what an operator would see. */
	fprintf(stderr, "$ %s -c %s ...  => exit %d\n%s%s%s", prog, conf, r->code, r->out,
	        r->err[0] ? "[stderr]\n" : "", r->err);
	snprintf(where, sizeof where, "the stdout of %s", prog);
	sec_assert_clean(r->out, where);
	snprintf(where, sizeof where, "the stderr of %s", prog);
	sec_assert_clean(r->err, where);
}

static void sec_assert_contains(const char *text, const char *a, const char *b)
{
	ck_assert_msg(strstr(text, a) != NULL, "no '%s' in:\n%s", a, text);
	if (b != NULL)
		ck_assert_msg(strstr(text, b) != NULL, "no '%s' in:\n%s", b, text);
}

/* --------------------------------------------------------------- fixtures */

/* Puts LINES in front of CLUSTER's pg_hba.conf: the first match wins. */
static bool sec_hba_prepend(const TlCluster *c, const char *lines)
{
	char path[TL_PATH_MAX + 16];
	char *old = NULL;
	FILE *f;
	long n;
	bool ok = false;

	if (!tl_fmt(path, sizeof path, "%s/pg_hba.conf", c->dir) || (f = fopen(path, "r")) == NULL)
		goto fail;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    (old = calloc(1, (size_t)n + 1)) == NULL || fread(old, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		goto fail;
	}
	fclose(f);
	/* rewritten in place: the file keeps its owner (the server's user) */
	if ((f = fopen(path, "w")) == NULL)
		goto fail;
	ok = fprintf(f, "# --- check_security ---\n%s\n%s", lines, old) > 0;
	ok = fclose(f) == 0 && ok;
fail:
	if (!ok)
		snprintf(sec_env_err, sizeof sec_env_err, "%s: cannot rewrite: %s", path, strerror(errno));
	free(old);
	return ok;
}

static bool sec_restart(const TlCluster *c)
{
	return tl_cluster_stop(&sec_env, c, "fast", sec_env_err, sizeof sec_env_err) &&
	       tl_cluster_start(&sec_env, c, sec_env_err, sizeof sec_env_err);
}

/* A self-signed certificate and its key for 127.0.0.1 (CN and SAN). */
static bool sec_make_cert(const char *crt, const char *key)
{
	const char *argv[] = {"openssl",  "req",
	                      "-x509",    "-newkey",
	                      "rsa:2048", "-nodes",
	                      "-days",    "1",
	                      "-subj",    "/CN=127.0.0.1",
	                      "-addext",  "subjectAltName=IP:127.0.0.1",
	                      "-keyout",  key,
	                      "-out",     crt,
	                      NULL};
	TlRunResult r;
	int code;

	if (!tl_run_capture(&sec_env, argv, SEC_RUN_MS, &r, sec_env_err, sizeof sec_env_err))
		return false;
	code = r.code;
	if (code != 0)
		snprintf(sec_env_err, sizeof sec_env_err, "openssl req: exit %d: %s", code, r.err);
	tl_run_result_free(&r);
	/* the client (twopcd) reads it as its root certificate */
	return code == 0 && chmod(crt, 0644) == 0;
}

/* ssl = on with our certificate; the key must belong to the server's user
 * (postgres, when we are root) and be private to it. */
static bool sec_setup_tls(const TlCluster *c)
{
	char key[TL_PATH_MAX], conf[TL_PATH_MAX + 32], other_key[TL_PATH_MAX], text[3 * TL_PATH_MAX];
	struct stat st;

	if (!tl_fmt(key, sizeof key, "%s/tls-server.key", sec_env.tmpdir) ||
	    !tl_fmt(other_key, sizeof other_key, "%s/tls-other.key", sec_env.tmpdir) ||
	    !tl_fmt(conf, sizeof conf, "%s/postgresql.conf", c->dir) ||
	    !tl_fmt(text, sizeof text, "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n", sec_cert, key))
		return false;
	if (!sec_make_cert(sec_cert, key) || !sec_make_cert(sec_other_cert, other_key))
		return false;
	if (stat(c->dir, &st) != 0 || (geteuid() == 0 && chown(key, st.st_uid, st.st_gid) != 0) ||
	    chmod(key, 0600) != 0) {
		snprintf(sec_env_err, sizeof sec_env_err, "%s: %s", key, strerror(errno));
		return false;
	}
	FILE *f = fopen(conf, "a");
	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
		snprintf(sec_env_err, sizeof sec_env_err, "%s: %s", conf, strerror(errno));
		return false;
	}
	return sec_hba_prepend(c, "hostssl   all twopc_app 127.0.0.1/32 scram-sha-256\n"
	                          "hostnossl all twopc_app 127.0.0.1/32 reject\n");
}

/* A cluster with role twopc_app (made by ROLE_SQL) and the demo tables;
 * HBA goes in front of its pg_hba.conf, or, if NULL, the TLS setup. */
static bool sec_add_cluster(const char *name, const char *role_sql, const char *hba)
{
	TlCluster *c;

	if (!tl_env_add_cluster(&sec_env, name, sec_env_err, sizeof sec_env_err))
		return false;
	c = tl_env_cluster(&sec_env, name);
	if (!tl_pg_exec(c, role_sql, sec_env_err, sizeof sec_env_err) ||
	    !tl_pg_exec(c, SEC_SCHEMA, sec_env_err, sizeof sec_env_err))
		return false;
	if (hba != NULL ? !sec_hba_prepend(c, hba) : !sec_setup_tls(c))
		return false;
	return sec_restart(c);
}

static void sec_clusters_setup(void)
{
	char pass[256];

	if (sec_env_tried)
		return;
	sec_env_tried = true;
	fflush(NULL);
	if (!tl_env_init(&sec_env, sec_env_err, sizeof sec_env_err))
		return;
	sec_env.keep_tmpdir = getenv("TWOPC_TEST_KEEP") != NULL;
	if (!tl_fmt(sec_passfile, sizeof sec_passfile, "%s/pgpass", sec_env.tmpdir) ||
	    !tl_fmt(sec_cert, sizeof sec_cert, "%s/tls-server.crt", sec_env.tmpdir) ||
	    !tl_fmt(sec_other_cert, sizeof sec_other_cert, "%s/tls-other.crt", sec_env.tmpdir)) {
		snprintf(sec_env_err, sizeof sec_env_err, "temporary directory path too long");
		return;
	}
	if (!sec_add_cluster("pw_a", "CREATE ROLE twopc_app LOGIN PASSWORD '" SEC_PASSWORD "'",
	                     "host all twopc_app 127.0.0.1/32 scram-sha-256\n") ||
	    !sec_add_cluster("pw_b",
	                     "SET password_encryption = 'md5'; CREATE ROLE twopc_app LOGIN PASSWORD '" SEC_FILEPW "'",
	                     "host all twopc_app 127.0.0.1/32 md5\n") ||
	    !sec_add_cluster("tls", "CREATE ROLE twopc_app LOGIN PASSWORD '" SEC_PASSWORD "'", NULL))
		return;
	/* libpq ignores a password file that others can read */
	snprintf(pass, sizeof pass, "127.0.0.1:%d:bank:twopc_app:%s\n", tl_env_cluster(&sec_env, "pw_b")->port,
	         SEC_FILEPW);
	FILE *f = fopen(sec_passfile, "w");
	if (f == NULL || chmod(sec_passfile, 0600) != 0 || fputs(pass, f) < 0 || fclose(f) != 0) {
		snprintf(sec_env_err, sizeof sec_env_err, "%s: %s", sec_passfile, strerror(errno));
		return;
	}
	fprintf(stderr, "check_security: clusters in %s: pw_a:%d pw_b:%d tls:%d\n", sec_env.tmpdir,
	        sec_env.clusters[0].port, sec_env.clusters[1].port, sec_env.clusters[2].port);
	sec_env_ok = true;
}

static void sec_setup(void)
{
	char err[SEC_ERR];

	ck_assert_msg(sec_env_ok, "test clusters could not be created: %s", sec_env_err);
	for (int i = 0; i < sec_env.ncluster; i++)
		if (!tl_cluster_ensure_running(&sec_env, &sec_env.clusters[i], err, sizeof err))
			ck_abort_msg("%s", err);
}

static void sec_teardown(void)
{
	char err[SEC_ERR];

	if (!tl_daemon_kill(&sec_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
}

/* ------------------------------------------------------------------- tests */

/* A password in the conninfo and one in a password file both work; a wrong
 * one leaves that participant unreachable with a clear error; a cluster
 * stopped under the daemon and started again is used again (the password
 * file read anew). No password in the log or in any response. */
START_TEST(test_passwords_work_and_stay_secret)
{
	char parts[4096] = "", passfile[TL_PATH_MAX + 16], err[SEC_ERR];

	snprintf(passfile, sizeof passfile, "passfile=%s", sec_passfile);
	sec_participant(parts, sizeof parts, "pw_a", "pw_a", "password=" SEC_PASSWORD);
	sec_participant(parts, sizeof parts, "pw_b", "pw_b", passfile);
	sec_participant(parts, sizeof parts, "pw_wrong", "pw_a", "password=" SEC_WRONG);
	sec_configure("passwords", parts);
	sec_start();

	sec_commit_some("pw_a", "pw_b", 3);
	sec_wait_health("pw_wrong", false, "password authentication failed");
	sec_assert_unavailable("pw_wrong", "pw_a", "password authentication failed");

	/* pw_b goes away under the running daemon, then comes back */
	if (!tl_cluster_stop(&sec_env, sec_cluster("pw_b"), "fast", err, sizeof err))
		ck_abort_msg("%s", err);
	sec_wait_health("pw_b", false, NULL);
	sec_assert_unavailable("pw_b", "pw_a", "pw_b");
	if (!tl_cluster_start(&sec_env, sec_cluster("pw_b"), err, sizeof err))
		ck_abort_msg("%s", err);
	sec_wait_health("pw_b", true, NULL);
	sec_commit_some("pw_b", "pw_a", 2);

	if (!tl_daemon_kill(&sec_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
	sec_assert_log_clean("password authentication failed");
	sec_assert_log_clean("user=twopc_app"); /* the redacted conninfo names the role */
}
END_TEST

/* twopcd --check and twopc-recover status: they connect on their own and
 * print every failure, never a password; the same for broken config files. */
START_TEST(test_tools_stay_secret)
{
	char parts[4096] = "", passfile[TL_PATH_MAX + 16], bad[TL_PATH_MAX + 32], text[4096], err[SEC_ERR];
	TlRunResult r;

	snprintf(passfile, sizeof passfile, "passfile=%s", sec_passfile);
	sec_participant(parts, sizeof parts, "pw_a", "pw_a", "password=" SEC_PASSWORD);
	sec_participant(parts, sizeof parts, "pw_b", "pw_b", passfile);
	sec_participant(parts, sizeof parts, "pw_wrong", "pw_a", "password=" SEC_WRONG);
	sec_configure("tools", parts);

	sec_run(&r, "twopcd", sec_daemon.conf_path, "--check", NULL);
	ck_assert_int_eq(r.code, 1);
	sec_assert_contains(r.out, "pw_a: ok", "pw_b: ok");
	sec_assert_contains(r.out, "pw_wrong: FAILED", "password authentication failed");
	sec_assert_contains(r.out, "dbname=bank user=twopc_app", NULL);
	tl_run_result_free(&r);

	/* twopc-recover reads the decision log: twopcd must have made it */
	sec_start();
	if (!tl_daemon_kill(&sec_daemon, err, sizeof err))
		ck_abort_msg("%s", err);
	sec_assert_log_clean("password authentication failed");
	sec_run(&r, "twopc-recover", sec_daemon.conf_path, "status", NULL);
	ck_assert_int_eq(r.code, 2); /* a participant unreachable */
	sec_assert_contains(r.out, "UNREACHABLE", "password authentication failed");
	tl_run_result_free(&r);
	sec_run(&r, "twopc-recover", sec_daemon.conf_path, "status", "--json", NULL);
	ck_assert_int_eq(r.code, 2);
	sec_assert_contains(r.out, "password authentication failed", NULL);
	tl_run_result_free(&r);

	/* PGPASSFILE works as well as passfile= */
	parts[0] = '\0';
	sec_participant(parts, sizeof parts, "pw_b", "pw_b", "");
	sec_configure("pgpassfile", parts);
	ck_assert(setenv("PGPASSFILE", sec_passfile, 1) == 0);
	sec_run(&r, "twopcd", sec_daemon.conf_path, "--check", NULL);
	ck_assert(unsetenv("PGPASSFILE") == 0);
	ck_assert_msg(r.code == 0, "--check with PGPASSFILE: exit %d", r.code);
	tl_run_result_free(&r);

	/* Broken files: a conninfo libpq cannot parse, a line that lost its
	 * '=', a conninfo without a dbname. Each names file, line and key. */
	static const char *const broken[] = {
	    "conninfo = host=127.0.0.1 password=" SEC_PASSWORD " dbname\n",
	    "conninfo = host=127.0.0.1 password='" SEC_PASSWORD " dbname=bank\n",
	    "conninfo = postgresql://twopc_app:" SEC_PASSWORD "@[::1/bank\n",
	    "conninfo = host=127.0.0.1 password=" SEC_PASSWORD "\n",
	    "conninfo = dbname=bank\nuser twopc_app password " SEC_PASSWORD " sslmode = require\n",
	};
	ck_assert(tl_fmt(bad, sizeof bad, "%s/bad.conf", sec_env.tmpdir));
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		ck_assert(tl_fmt(text, sizeof text,
		                 "[coordinator]\nid = t1\nlog_dir = %s/log-bad\n\n[participant p]\n%s", sec_env.tmpdir,
		                 broken[i]));
		sec_write_file(bad, "w", text);
		ck_assert_msg(sec_find_secret(text) != NULL, "the leak check cannot see the password in %s", text);
		sec_run(&r, "twopcd", bad, "--check", NULL);
		ck_assert_msg(r.code == 1, "--check on a broken file: exit %d", r.code);
		sec_assert_contains(r.err, "bad.conf:", "[participant p]");
		tl_run_result_free(&r);
		sec_run(&r, "twopc-recover", bad, "status", NULL);
		ck_assert_msg(r.code == 2, "twopc-recover status on a broken file: exit %d", r.code);
		tl_run_result_free(&r);
	}
}
END_TEST

/* Returns how many of twopcd's sessions on the tls cluster there are, and
 * asserts that every one of them is encrypted. */
static int64_t sec_assert_sessions_encrypted(void)
{
	char err[SEC_ERR];
	PGresult *res = NULL;
	int64_t total, plain;

	if (!tl_pg_query(sec_cluster("tls"),
	                 "SELECT count(*), count(*) FILTER (WHERE NOT s.ssl), string_agg(DISTINCT s.version, ',') "
	                 "FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid "
	                 "WHERE a.application_name LIKE 'twopcd%' AND a.usename = 'twopc_app'",
	                 0, NULL, &res, err, sizeof err))
		ck_abort_msg("%s", err);
	total = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	plain = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	fprintf(stderr, "check_security: %" PRId64 " twopcd sessions on tls, %" PRId64 " without TLS, versions %s\n",
	        total, plain, PQgetvalue(res, 0, 2));
	PQclear(res);
	ck_assert_msg(plain == 0, "%" PRId64 " of twopcd's %" PRId64 " sessions are not encrypted", plain, total);
	return total;
}

/* sslmode=verify-full and verify-ca with the server's certificate as the
 * root: transactions commit, and pg_stat_ssl shows every session of
 * twopcd's (pool, recovery, sweeper) encrypted. The tools connect with TLS
 * too. */
START_TEST(test_tls)
{
	static const char *const modes[] = {"verify-full", "verify-ca"};
	char parts[4096], extra[TL_PATH_MAX + 128], err[SEC_ERR];
	TlRunResult r;

	for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
		parts[0] = '\0';
		snprintf(extra, sizeof extra, "password=%s sslmode=%s sslrootcert=%s", SEC_PASSWORD, modes[m],
		         sec_cert);
		sec_participant(parts, sizeof parts, "pw_a", "pw_a", "password=" SEC_PASSWORD);
		sec_participant(parts, sizeof parts, "tls", "tls", extra);
		sec_configure(modes[m], parts);

		sec_start();
		sec_commit_some("pw_a", "tls", 3);
		sec_commit_some("tls", "pw_a", 2);
		TlHttpResponse h;
		sec_http("POST", "/v1/sweep", "", &h);
		ck_assert_msg(h.status == 200, "POST /v1/sweep: HTTP %d %s", h.status, h.body);
		tl_http_response_free(&h);
		ck_assert_msg(sec_assert_sessions_encrypted() >= 1, "no session of twopcd's on tls (sslmode=%s)",
		              modes[m]);
		if (!tl_daemon_kill(&sec_daemon, err, sizeof err))
			ck_abort_msg("%s", err);
		sec_assert_log_clean(NULL);

		/* Their sessions end before we could look, but pg_hba.conf
		 * rejects twopc_app in plain text: connected is encrypted. */
		sec_run(&r, "twopcd", sec_daemon.conf_path, "--check", NULL);
		ck_assert_msg(r.code == 0, "--check with sslmode=%s: exit %d", modes[m], r.code);
		tl_run_result_free(&r);
		sec_run(&r, "twopc-recover", sec_daemon.conf_path, "status", NULL);
		ck_assert_msg(r.code == 0, "twopc-recover status with sslmode=%s: exit %d", modes[m], r.code);
		tl_run_result_free(&r);
	}
}
END_TEST

/* sslmode=disable against a cluster that wants TLS, and verify-ca with a
 * root that did not sign the server's certificate: unreachable, with an
 * error that says why; 503 for transactions; no password anywhere. */
START_TEST(test_tls_refused)
{
	char parts[4096] = "", extra[TL_PATH_MAX + 128];
	TlRunResult r;

	sec_participant(parts, sizeof parts, "pw_a", "pw_a", "password=" SEC_PASSWORD);
	sec_participant(parts, sizeof parts, "tls_plain", "tls", "password=" SEC_PASSWORD " sslmode=disable");
	snprintf(extra, sizeof extra, "password=%s sslmode=verify-ca sslrootcert=%s", SEC_PASSWORD, sec_other_cert);
	sec_participant(parts, sizeof parts, "tls_untrusted", "tls", extra);
	sec_configure("tls-refused", parts);

	sec_run(&r, "twopcd", sec_daemon.conf_path, "--check", NULL);
	ck_assert_int_eq(r.code, 1);
	sec_assert_contains(r.out, "pw_a: ok", "tls_plain: FAILED");
	sec_assert_contains(r.out, "no encryption", "tls_untrusted: FAILED");
	sec_assert_contains(r.out, "certificate verify failed", NULL);
	tl_run_result_free(&r);

	sec_start();
	sec_wait_health("tls_plain", false, "no encryption");
	sec_wait_health("tls_untrusted", false, "certificate verify failed");
	sec_assert_unavailable("tls_plain", "pw_a", "no encryption");
	sec_assert_unavailable("tls_untrusted", "pw_a", "certificate verify failed");
	/* the rest of twopcd works */
	TlHttpResponse h;
	sec_http("POST", "/v1/transactions", "{\"branches\":{\"pw_a\":[{\"sql\":\"SELECT 1\"}]}}", &h);
	ck_assert_msg(h.status == 200, "a transaction on pw_a alone: HTTP %d %s", h.status, h.body);
	tl_http_response_free(&h);
	sec_assert_log_clean("no encryption");
	sec_assert_log_clean("certificate verify failed");
}
END_TEST

static void sec_add(Suite *s, const char *name, const TTest *test)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, sec_clusters_setup, NULL);
	tcase_add_checked_fixture(tc, sec_setup, sec_teardown);
	tcase_set_timeout(tc, SEC_TIMEOUT_S);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

static Suite *sec_suite(void)
{
	Suite *s = suite_create("security");

	sec_add(s, "passwords_work_and_stay_secret", test_passwords_work_and_stay_secret);
	sec_add(s, "tools_stay_secret", test_tools_stay_secret);
	sec_add(s, "tls", test_tls);
	sec_add(s, "tls_refused", test_tls_refused);
	return s;
}

int main(void)
{
	const char *skip = tl_skip_reason();
	SRunner *sr;
	int failed;

	if (skip != NULL) {
		fprintf(stderr, "check_security: SKIP: %s\n", skip);
		return TL_EXIT_SKIP;
	}
	sr = srunner_create(sec_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (sec_env.keep_tmpdir && sec_env.tmpdir[0] != '\0')
		fprintf(stderr, "check_security: kept %s\n", sec_env.tmpdir);
	tl_env_destroy(&sec_env);
	return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
