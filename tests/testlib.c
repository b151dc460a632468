/*
 * testlib: real PostgreSQL clusters, a real twopcd child process and a small
 * blocking HTTP/1.1 client, for the integration tests (see testlib.h).
 *
 * Clusters are made by scripts/pg-cluster, which we run with fork/exec so
 * that its output lands in our error messages. Teardown must also work from
 * a signal handler, so the destroy path uses only fork/execv/waitpid on
 * strings prepared in advance.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2, memmem, strcasestr, program_invocation_short_name */
#endif
#include "testlib.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TL_BASH "/bin/bash"
#define TL_RM "/bin/rm"

/* The environment the exit and signal handlers clean up. A global because
 * handlers take no arguments; it only ever points at the caller's TlEnv. */
static TlEnv *tl_registered_env;
static struct sigaction tl_old_sigint, tl_old_sigterm;

static void tl_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void tl_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

bool tl_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < len;
}

/* Drops trailing newlines and spaces: libpq and scripts end messages with \n. */
static void tl_rtrim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

int64_t tl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tl_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---------------------------------------------------------------- processes */

/* Waits for PID, retrying on EINTR. */
static pid_t tl_waitpid(pid_t pid, int *status, int flags)
{
	pid_t r;

	do
		r = waitpid(pid, status, flags);
	while (r < 0 && errno == EINTR);
	return r;
}

static void tl_describe_status(int status, char *buf, size_t buflen)
{
	if (WIFEXITED(status))
		snprintf(buf, buflen, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, buflen, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, buflen, "wait status 0x%x", (unsigned)status);
}

/*
 * Runs ARGV (argv[0] is an absolute path) and collects stdout+stderr into
 * OUT (the tail, if it does not fit). Succeeds only on exit status 0.
 */
static bool tl_run(const char *const argv[], char *out, size_t outlen, char *err, size_t errlen)
{
	int pipefd[2] = {-1, -1};
	char buf[4096];
	char stbuf[64];
	size_t used = 0;
	pid_t pid;
	int status = 0;
	bool ok = false;

	if (outlen > 0)
		out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC) != 0) {
		tl_seterr(err, errlen, "pipe: %s", strerror(errno));
		goto done;
	}
	fflush(NULL); /* the child must not flush our buffered output again */
	pid = fork();
	if (pid < 0) {
		tl_seterr(err, errlen, "fork: %s", strerror(errno));
		goto done;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	for (;;) {
		ssize_t n = read(pipefd[0], buf, sizeof buf);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (outlen > 1) {
			size_t k = (size_t)n;

			/* keep the tail: the end of a script's output says why it failed */
			if (k > outlen - 1) {
				memcpy(out, buf + (k - (outlen - 1)), outlen - 1);
				used = outlen - 1;
			} else {
				if (used + k > outlen - 1) {
					size_t drop = used + k - (outlen - 1);

					memmove(out, out + drop, used - drop);
					used -= drop;
				}
				memcpy(out + used, buf, k);
				used += k;
			}
			out[used] = '\0';
		}
	}
	if (tl_waitpid(pid, &status, 0) < 0) {
		tl_seterr(err, errlen, "waitpid: %s", strerror(errno));
		goto done;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char cmd[512] = "";
		size_t i, l = 0;

		for (i = 1; argv[i] != NULL && l < sizeof cmd; i++)
			l += (size_t)snprintf(cmd + l, sizeof cmd - l, "%s%s", i > 1 ? " " : "",
					      argv[i]);
		tl_describe_status(status, stbuf, sizeof stbuf);
		tl_seterr(err, errlen, "%s: %s: %s", cmd, stbuf, outlen > 0 ? out : "");
		if (err != NULL)
			tl_rtrim(err);
		goto done;
	}
	ok = true;
done:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	return ok;
}

/* fork/execv/waitpid only: usable from a signal handler. */
static void tl_run_raw(const char *const argv[])
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return;
	if (pid == 0) {
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	(void)tl_waitpid(pid, &status, 0);
}

static bool tl_pg_cluster(const TlEnv *env, const char *cmd, const char *arg1, const char *arg2,
			  char *out, size_t outlen, char *err, size_t errlen)
{
	const char *argv[] = {TL_BASH, env->pg_cluster, cmd, arg1, arg2, NULL};
	char tmp[2048];

	if (out == NULL) {
		out = tmp;
		outlen = sizeof tmp;
	}
	return tl_run(argv, out, outlen, err, errlen);
}

/* ------------------------------------------------------------ environment */

const char *tl_skip_reason(void)
{
	static char reason[TL_PATH_MAX + 128];
	const char *bindir = getenv("TWOPC_PG_BINDIR");
	char initdb[TL_PATH_MAX + 16];

	if (bindir == NULL || bindir[0] == '\0') {
		snprintf(reason, sizeof reason,
			 "TWOPC_PG_BINDIR is not set: configure found no PostgreSQL server "
			 "binaries (install postgresql-15, or run via `make check`)");
		return reason;
	}
	snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
	if (access(initdb, X_OK) != 0) {
		snprintf(reason, sizeof reason, "TWOPC_PG_BINDIR=%s holds no executable initdb",
			 bindir);
		return reason;
	}
	return NULL;
}

/* Stops every cluster and removes the temporary directory. Async-signal-safe
 * (only fork/execv/waitpid), so the signal handler can use it too. */
static void tl_env_teardown_raw(TlEnv *env)
{
	int i;

	if (env == NULL || getpid() != env->creator)
		return;
	for (i = 0; i < env->ncluster; i++) {
		const char *argv[] = {TL_BASH, env->pg_cluster, "destroy", env->clusters[i].dir,
				      NULL};

		tl_run_raw(argv);
	}
	env->ncluster = 0;
	if (env->tmpdir[0] != '\0' && !env->keep_tmpdir) {
		const char *argv[] = {TL_RM, "-rf", env->tmpdir, NULL};

		tl_run_raw(argv);
		env->tmpdir[0] = '\0';
	}
}

static void tl_atexit(void)
{
	tl_env_teardown_raw(tl_registered_env);
}

static void tl_on_signal(int sig)
{
	struct sigaction *old = sig == SIGINT ? &tl_old_sigint : &tl_old_sigterm;

	tl_env_teardown_raw(tl_registered_env);
	/* hand the signal on to whoever had it before (Check kills its test
	 * children from there), or die of it */
	sigaction(sig, old, NULL);
	raise(sig);
}

bool tl_env_init(TlEnv *env, char *err, size_t errlen)
{
	static bool atexit_done;
	const char *tmp = getenv("TMPDIR");
	const char *top = getenv("TWOPC_TOP_SRCDIR");
	const char *build = getenv("TWOPC_BUILDDIR");
	const char *bindir = getenv("TWOPC_PG_BINDIR");
	struct sigaction sa;

	memset(env, 0, sizeof *env);
	env->creator = getpid();
	/* register first, so that whatever gets made below is cleaned up */
	tl_registered_env = env;
	if (!atexit_done) {
		if (atexit(tl_atexit) != 0) {
			tl_seterr(err, errlen, "atexit failed");
			return false;
		}
		atexit_done = true;
	}
	/* the servers put their Unix sockets in their data directories, and a
	 * socket path must fit in 108 bytes: fall back to /tmp for a deep TMPDIR */
	if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 60)
		tmp = "/tmp";
	if (top == NULL || top[0] == '\0')
		top = ".";
	if (build == NULL || build[0] == '\0')
		build = ".";
	if (!tl_fmt(env->pg_cluster, sizeof env->pg_cluster, "%s/scripts/pg-cluster", top) ||
	    !tl_fmt(env->builddir, sizeof env->builddir, "%s", build)) {
		tl_seterr(err, errlen, "TWOPC_TOP_SRCDIR or TWOPC_BUILDDIR is too long");
		return false;
	}
	if (access(env->pg_cluster, R_OK) != 0) {
		tl_seterr(err, errlen, "%s: %s (set TWOPC_TOP_SRCDIR)", env->pg_cluster,
			  strerror(errno));
		return false;
	}
	/* pg-cluster picks its server binaries from PG_BINDIR */
	if (bindir != NULL && bindir[0] != '\0' && setenv("PG_BINDIR", bindir, 1) != 0) {
		tl_seterr(err, errlen, "setenv: %s", strerror(errno));
		return false;
	}
	if (!tl_fmt(env->tmpdir, sizeof env->tmpdir, "%s/twopc-it-XXXXXX", tmp)) {
		tl_seterr(err, errlen, "TMPDIR is too long");
		env->tmpdir[0] = '\0';
		return false;
	}
	if (mkdtemp(env->tmpdir) == NULL) {
		tl_seterr(err, errlen, "mkdtemp %s: %s", env->tmpdir, strerror(errno));
		env->tmpdir[0] = '\0';
		return false;
	}
	/* when we are root the servers run as postgres and must traverse it */
	if (chmod(env->tmpdir, 0711) != 0) {
		tl_seterr(err, errlen, "chmod %s: %s", env->tmpdir, strerror(errno));
		return false;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = tl_on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, &tl_old_sigint) != 0 ||
	    sigaction(SIGTERM, &sa, &tl_old_sigterm) != 0) {
		tl_seterr(err, errlen, "sigaction: %s", strerror(errno));
		return false;
	}
	return true;
}

void tl_env_destroy(TlEnv *env)
{
	tl_env_teardown_raw(env);
}

TlCluster *tl_env_cluster(TlEnv *env, const char *name)
{
	int i;

	for (i = 0; i < env->ncluster; i++)
		if (strcmp(env->clusters[i].name, name) == 0)
			return &env->clusters[i];
	return NULL;
}

static bool tl_create_bank_db(const TlCluster *c, char *err, size_t errlen)
{
	char conninfo[TL_PATH_MAX];
	PGconn *conn = NULL;
	PGresult *res = NULL;
	bool ok = false;

	snprintf(conninfo, sizeof conninfo,
		 "host=127.0.0.1 port=%d dbname=postgres user=postgres connect_timeout=10", c->port);
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		tl_seterr(err, errlen, "%s: connect: %s", c->name, PQerrorMessage(conn));
		goto done;
	}
	res = PQexec(conn, "CREATE DATABASE bank");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		tl_seterr(err, errlen, "%s: CREATE DATABASE bank: %s", c->name,
			  PQresultErrorMessage(res));
		goto done;
	}
	ok = true;
done:
	if (err != NULL && !ok)
		tl_rtrim(err);
	PQclear(res);
	PQfinish(conn);
	return ok;
}

bool tl_env_add_cluster(TlEnv *env, const char *name, char *err, size_t errlen)
{
	TlCluster *c;
	char out[2048];
	char portbuf[16];
	int attempt;

	if (env->ncluster >= TL_MAX_CLUSTERS) {
		tl_seterr(err, errlen, "too many clusters");
		return false;
	}
	c = &env->clusters[env->ncluster];
	memset(c, 0, sizeof *c);
	if (!tl_fmt(c->name, sizeof c->name, "%s", name) ||
	    !tl_fmt(c->dir, sizeof c->dir, "%s/%s", env->tmpdir, name)) {
		tl_seterr(err, errlen, "cluster name or directory too long: %s", name);
		return false;
	}
	/* Count it before init so that teardown covers a half-made cluster. */
	env->ncluster++;

	/* freeport only says nobody listens right now; someone may take the
	 * port before the server binds it, so try a few ports. */
	for (attempt = 0; attempt < 3; attempt++) {
		if (attempt > 0 && !tl_pg_cluster(env, "destroy", c->dir, NULL, NULL, 0, err, errlen))
			return false;
		if (!tl_pg_cluster(env, "freeport", NULL, NULL, out, sizeof out, err, errlen))
			return false;
		c->port = atoi(out);
		if (c->port <= 0) {
			tl_seterr(err, errlen, "pg-cluster freeport printed '%s'", out);
			return false;
		}
		snprintf(portbuf, sizeof portbuf, "%d", c->port);
		if (!tl_pg_cluster(env, "init", c->dir, portbuf, NULL, 0, err, errlen))
			return false;
		if (tl_pg_cluster(env, "start", c->dir, NULL, NULL, 0, err, errlen))
			break;
	}
	if (attempt == 3)
		return false;
	snprintf(c->conninfo, sizeof c->conninfo,
		 "host=127.0.0.1 port=%d dbname=bank user=postgres", c->port);
	return tl_create_bank_db(c, err, errlen);
}

bool tl_cluster_stop(const TlEnv *env, const TlCluster *c, const char *mode, char *err,
		     size_t errlen)
{
	return tl_pg_cluster(env, "stop", c->dir, mode, NULL, 0, err, errlen);
}

bool tl_cluster_start(const TlEnv *env, const TlCluster *c, char *err, size_t errlen)
{
	return tl_pg_cluster(env, "start", c->dir, NULL, NULL, 0, err, errlen);
}

bool tl_cluster_ensure_running(const TlEnv *env, const TlCluster *c, char *err, size_t errlen)
{
	if (PQping(c->conninfo) == PQPING_OK)
		return true;
	return tl_cluster_start(env, c, err, errlen);
}

/* ------------------------------------------------------------------ libpq */

PGconn *tl_pg_connect(const TlCluster *c, char *err, size_t errlen)
{
	char conninfo[TL_PATH_MAX + 32];
	PGconn *conn;

	snprintf(conninfo, sizeof conninfo, "%s connect_timeout=10", c->conninfo);
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		tl_seterr(err, errlen, "%s: connect: %s", c->name, PQerrorMessage(conn));
		if (err != NULL)
			tl_rtrim(err);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

bool tl_pg_query(const TlCluster *c, const char *sql, int nparams, const char *const *params,
		 PGresult **out, char *err, size_t errlen)
{
	PGconn *conn = NULL;
	PGresult *res = NULL;
	ExecStatusType st;
	bool ok = false;

	*out = NULL;
	conn = tl_pg_connect(c, err, errlen);
	if (conn == NULL)
		goto done;
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		tl_seterr(err, errlen, "%s: %s: %s", c->name, sql, PQresultErrorMessage(res));
		if (err != NULL)
			tl_rtrim(err);
		goto done;
	}
	*out = res;
	res = NULL;
	ok = true;
done:
	PQclear(res);
	PQfinish(conn);
	return ok;
}

bool tl_pg_exec(const TlCluster *c, const char *sql, char *err, size_t errlen)
{
	PGconn *conn = NULL;
	PGresult *res = NULL;
	ExecStatusType st;
	bool ok = false;

	conn = tl_pg_connect(c, err, errlen);
	if (conn == NULL)
		goto done;
	/* PQexec, not PQexecParams: a schema script holds several statements */
	res = PQexec(conn, sql);
	st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		tl_seterr(err, errlen, "%s: %s: %s", c->name, sql, PQresultErrorMessage(res));
		if (err != NULL)
			tl_rtrim(err);
		goto done;
	}
	ok = true;
done:
	PQclear(res);
	PQfinish(conn);
	return ok;
}

bool tl_pg_scalar_i64(const TlCluster *c, const char *sql, int nparams,
		      const char *const *params, int64_t *out, char *err, size_t errlen)
{
	PGresult *res = NULL;
	const char *v;
	char *end;
	bool ok = false;

	if (!tl_pg_query(c, sql, nparams, params, &res, err, errlen))
		goto done;
	if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0)) {
		tl_seterr(err, errlen, "%s: %s: expected one non-null value, got %d rows x %d cols",
			  c->name, sql, PQntuples(res), PQnfields(res));
		goto done;
	}
	v = PQgetvalue(res, 0, 0);
	errno = 0;
	*out = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0') {
		tl_seterr(err, errlen, "%s: %s: '%s' is not an integer", c->name, sql, v);
		goto done;
	}
	ok = true;
done:
	PQclear(res);
	return ok;
}

bool tl_pg_count_prepared(const TlCluster *c, int64_t *out, char *err, size_t errlen)
{
	/* '_' is a LIKE wildcard; escape it so only our prefix matches */
	return tl_pg_scalar_i64(c, "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'twopc\\_%'",
				0, NULL, out, err, errlen);
}

bool tl_pg_gid_prepared(const TlCluster *c, const char *gid, bool *out, char *err, size_t errlen)
{
	const char *params[1] = {gid};
	int64_t n = 0;

	if (!tl_pg_scalar_i64(c, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1", 1, params,
			      &n, err, errlen))
		return false;
	*out = n > 0;
	return true;
}

/* ----------------------------------------------------------------- twopcd */

/* A port nobody listens on, below the Linux ephemeral range so outgoing
 * connections (to PostgreSQL, say) do not take it from under us. */
static bool tl_free_port(int *port, char *err, size_t errlen)
{
	static unsigned seed;
	int attempt;

	if (seed == 0)
		seed = (unsigned)getpid() ^ (unsigned)tl_now_ms();
	for (attempt = 0; attempt < 200; attempt++) {
		int p = 20000 + (int)(rand_r(&seed) % 12000);
		struct sockaddr_in sin;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int r;

		if (fd < 0) {
			tl_seterr(err, errlen, "socket: %s", strerror(errno));
			return false;
		}
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)p);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		r = bind(fd, (struct sockaddr *)&sin, sizeof sin);
		close(fd);
		if (r == 0) {
			*port = p;
			return true;
		}
	}
	tl_seterr(err, errlen, "no free TCP port found");
	return false;
}

bool tl_daemon_configure(TlDaemon *d, const TlEnv *env, const char *log_dir, const char *tag,
			 char *err, size_t errlen)
{
	FILE *f = NULL;
	bool ok = false;
	int i;

	memset(d, 0, sizeof *d);
	if (!tl_fmt(d->bin, sizeof d->bin, "%s/twopcd", env->builddir) ||
	    !tl_fmt(d->conf_path, sizeof d->conf_path, "%s/twopcd-%s.conf", env->tmpdir, tag) ||
	    !tl_fmt(d->log_path, sizeof d->log_path, "%s/twopcd-%s.log", env->tmpdir, tag) ||
	    !tl_fmt(d->log_dir, sizeof d->log_dir, "%s", log_dir)) {
		tl_seterr(err, errlen, "daemon file paths too long");
		goto done;
	}
	if (access(d->bin, X_OK) != 0) {
		tl_seterr(err, errlen, "%s: %s (build it: make twopcd)", d->bin, strerror(errno));
		goto done;
	}
	if (!tl_free_port(&d->port, err, errlen))
		goto done;
	f = fopen(d->conf_path, "w");
	if (f == NULL) {
		tl_seterr(err, errlen, "%s: %s", d->conf_path, strerror(errno));
		goto done;
	}
	fprintf(f,
		"; written by tests/testlib.c for one integration test\n"
		"[coordinator]\n"
		"id = t1\n"
		"listen = 127.0.0.1:%d\n"
		"log_dir = %s\n"
		"default_timeout_ms = 10000\n"
		"lock_timeout_ms = 1000\n"
		"log_level = info\n",
		d->port, d->log_dir);
	for (i = 0; i < env->ncluster; i++)
		fprintf(f, "\n[participant %s]\nconninfo = %s\npool_size = 8\n",
			env->clusters[i].name, env->clusters[i].conninfo);
	if (ferror(f)) {
		tl_seterr(err, errlen, "%s: write error", d->conf_path);
		goto done;
	}
	ok = true;
done:
	if (f != NULL && fclose(f) != 0 && ok) {
		tl_seterr(err, errlen, "%s: %s", d->conf_path, strerror(errno));
		ok = false;
	}
	return ok;
}

bool tl_daemon_set(TlDaemon *d, const char *key, const char *value, char *err, size_t errlen)
{
	FILE *f = fopen(d->conf_path, "r");
	char *text = NULL, *at;
	size_t cap = 0, len = 0;
	bool ok = false;

	if (f == NULL) {
		tl_seterr(err, errlen, "%s: %s", d->conf_path, strerror(errno));
		return false;
	}
	for (;;) {
		if (cap - len < 4096) {
			char *n = realloc(text, cap += 65536);
			if (n == NULL)
				goto done;
			text = n;
		}
		size_t r = fread(text + len, 1, cap - len - 1, f);
		if (r == 0)
			break;
		len += r;
	}
	text[len] = '\0';
	fclose(f);
	f = NULL;
	/* Drop an earlier setting of the key (twopcd refuses duplicates). */
	{
		size_t kl = strlen(key);
		char *line = text;
		while (line != NULL && *line != '\0') {
			char *eol = strchr(line, '\n');
			if (strncmp(line, key, kl) == 0 && (line[kl] == ' ' || line[kl] == '=')) {
				size_t ll = eol ? (size_t)(eol - line) + 1 : strlen(line);
				memmove(line, line + ll, strlen(line + ll) + 1);
				continue;
			}
			line = eol ? eol + 1 : NULL;
		}
	}
	at = strstr(text, "[coordinator]\n");
	if (at == NULL) {
		tl_seterr(err, errlen, "%s: no [coordinator] section", d->conf_path);
		goto done;
	}
	at += strlen("[coordinator]\n");
	f = fopen(d->conf_path, "w");
	if (f == NULL) {
		tl_seterr(err, errlen, "%s: %s", d->conf_path, strerror(errno));
		goto done;
	}
	fwrite(text, 1, (size_t)(at - text), f);
	fprintf(f, "%s = %s\n", key, value);
	fputs(at, f);
	ok = !ferror(f);
	if (!ok)
		tl_seterr(err, errlen, "%s: write error", d->conf_path);
done:
	if (f != NULL && fclose(f) != 0 && ok) {
		tl_seterr(err, errlen, "%s: %s", d->conf_path, strerror(errno));
		ok = false;
	}
	free(text);
	return ok;
}

static bool tl_daemon_spawn(TlDaemon *d, const char *fault, char *err, size_t errlen)
{
	pid_t parent = getpid();
	pid_t pid;
	int logfd;
	char header[256];
	int n;

	logfd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		tl_seterr(err, errlen, "%s: %s", d->log_path, strerror(errno));
		return false;
	}
	/* one log across restarts: mark where each run begins */
	n = snprintf(header, sizeof header, "==== testlib: starting twopcd%s%s ====\n",
		     fault ? " with TWOPC_FAULT=" : "", fault ? fault : "");
	if (write(logfd, header, (size_t)n) != n) {
		tl_seterr(err, errlen, "%s: %s", d->log_path, strerror(errno));
		close(logfd);
		return false;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		tl_seterr(err, errlen, "fork: %s", strerror(errno));
		close(logfd);
		return false;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		/* if the test process dies (a failed assertion, a Check timeout)
		 * the daemon must not outlive it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		if (fault != NULL)
			setenv("TWOPC_FAULT", fault, 1);
		else
			unsetenv("TWOPC_FAULT");
		execl(d->bin, d->bin, "-c", d->conf_path, (char *)NULL);
		dprintf(2, "testlib: exec %s: %s\n", d->bin, strerror(errno));
		_exit(127);
	}
	close(logfd);
	d->pid = pid;
	return true;
}

bool tl_daemon_wait_healthy(TlDaemon *d, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	char last[256] = "no answer yet";

	for (;;) {
		TlHttpResponse resp;
		int status;
		char stbuf[64];

		if (d->pid > 0 && tl_waitpid(d->pid, &status, WNOHANG) == d->pid) {
			tl_describe_status(status, stbuf, sizeof stbuf);
			tl_seterr(err, errlen, "twopcd exited before it was healthy (%s); log %s",
				  stbuf, d->log_path);
			d->pid = 0;
			return false;
		}
		if (tl_http_request(d->port, "GET", "/healthz", NULL, 2000, &resp, last,
				    sizeof last)) {
			int code = resp.status;

			tl_http_response_free(&resp);
			if (code == 200)
				return true;
			snprintf(last, sizeof last, "HTTP %d", code);
		}
		if (tl_now_ms() >= deadline)
			break;
		tl_sleep_ms(100);
	}
	tl_seterr(err, errlen, "GET /healthz on port %d not 200 within %d ms (last: %s); log %s",
		  d->port, timeout_ms, last, d->log_path);
	return false;
}

bool tl_daemon_start(TlDaemon *d, const char *fault, char *err, size_t errlen)
{
	if (d->pid > 0) {
		tl_seterr(err, errlen, "twopcd already runs (pid %d)", (int)d->pid);
		return false;
	}
	if (!tl_daemon_spawn(d, fault, err, errlen))
		return false;
	if (!tl_daemon_wait_healthy(d, 20000, err, errlen)) {
		char ignored[256];

		fprintf(stderr, "testlib: twopcd did not become healthy; last lines of %s:\n",
			d->log_path);
		tl_daemon_print_log_tail(d, 30);
		if (!tl_daemon_kill(d, ignored, sizeof ignored))
			fprintf(stderr, "testlib: %s\n", ignored);
		return false;
	}
	return true;
}

/* Fails when the daemon's log holds a sanitizer report. */
static bool tl_daemon_check_log(const TlDaemon *d, char *err, size_t errlen)
{
	char what[256];

	if (!tl_sanitizer_report_in_file(d->log_path, what, sizeof what))
		return true;
	fprintf(stderr, "testlib: a sanitizer report in %s:\n", d->log_path);
	tl_daemon_print_log_tail(d, 60);
	tl_seterr(err, errlen, "twopcd's log %s holds a sanitizer report: %s", d->log_path, what);
	return false;
}

bool tl_daemon_wait_exit(TlDaemon *d, int timeout_ms, int *wstatus, char *err, size_t errlen)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	int status = 0;

	if (d->pid <= 0) {
		tl_seterr(err, errlen, "twopcd is not running");
		return false;
	}
	for (;;) {
		pid_t r = tl_waitpid(d->pid, &status, WNOHANG);

		if (r == d->pid)
			break;
		if (r < 0) {
			tl_seterr(err, errlen, "waitpid %d: %s", (int)d->pid, strerror(errno));
			return false;
		}
		if (tl_now_ms() >= deadline) {
			tl_seterr(err, errlen, "twopcd (pid %d) still runs after %d ms", (int)d->pid,
				  timeout_ms);
			return false;
		}
		tl_sleep_ms(20);
	}
	d->pid = 0;
	if (wstatus != NULL)
		*wstatus = status;
	return tl_daemon_check_log(d, err, errlen);
}

bool tl_daemon_kill(TlDaemon *d, char *err, size_t errlen)
{
	int status;
	char stbuf[64];
	pid_t r;

	if (d->pid <= 0)
		return tl_daemon_check_log(d, err, errlen);
	/* Dead already? A fault point kills with SIGKILL and SIGTERM ends it
	 * with 0; anything else (abort, SIGSEGV, a sanitizer's exit) is a
	 * crash the test did not ask for. */
	r = tl_waitpid(d->pid, &status, WNOHANG);
	if (r == d->pid) {
		d->pid = 0;
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) &&
		    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			if (!tl_daemon_check_log(d, err, errlen))
				return false;
			tl_describe_status(status, stbuf, sizeof stbuf);
			fprintf(stderr, "testlib: twopcd died before the test stopped it (%s)\n",
				stbuf);
			tl_daemon_print_log_tail(d, 30);
			tl_seterr(err, errlen, "twopcd died before the test stopped it (%s); log %s",
				  stbuf, d->log_path);
			return false;
		}
		return tl_daemon_check_log(d, err, errlen);
	}
	if (kill(d->pid, SIGKILL) != 0 && errno != ESRCH) {
		tl_seterr(err, errlen, "kill %d: %s", (int)d->pid, strerror(errno));
		return false;
	}
	if (tl_waitpid(d->pid, &status, 0) < 0) {
		tl_seterr(err, errlen, "waitpid %d: %s", (int)d->pid, strerror(errno));
		return false;
	}
	d->pid = 0;
	return tl_daemon_check_log(d, err, errlen);
}

bool tl_daemon_restart(TlDaemon *d, const char *fault, char *err, size_t errlen)
{
	if (!tl_daemon_kill(d, err, errlen))
		return false;
	return tl_daemon_start(d, fault, err, errlen);
}

void tl_print_file_tail(const char *path, int lines)
{
	char buf[16384];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size;
	ssize_t n;
	size_t start;
	int seen = 0;

	if (fd < 0) {
		fprintf(stderr, "  (%s: %s)\n", path, strerror(errno));
		return;
	}
	size = lseek(fd, 0, SEEK_END);
	if (size < 0 || lseek(fd, size > (off_t)sizeof buf ? size - (off_t)sizeof buf : 0,
			      SEEK_SET) < 0) {
		close(fd);
		return;
	}
	n = read(fd, buf, sizeof buf);
	close(fd);
	if (n <= 0)
		return;
	start = (size_t)n;
	if (start > 0 && buf[start - 1] == '\n')
		start--;
	while (start > 0) {
		if (buf[start - 1] == '\n' && ++seen >= lines)
			break;
		start--;
	}
	fprintf(stderr, "---- %s (tail) ----\n", path);
	fwrite(buf + start, 1, (size_t)n - start, stderr);
	if (buf[n - 1] != '\n')
		fputc('\n', stderr);
	fprintf(stderr, "----\n");
}

void tl_daemon_print_log_tail(const TlDaemon *d, int lines)
{
	tl_print_file_tail(d->log_path, lines);
}

/* --------------------------------------------------------- other programs */

/* What ASan, LSan and UBSan print; none of it appears in a healthy log. */
static const char *const tl_sanitizer_markers[] = {
	"ERROR: AddressSanitizer",
	"AddressSanitizer:DEADLYSIGNAL",
	"ERROR: LeakSanitizer",
	"runtime error:", /* UBSan */
	"SUMMARY: UndefinedBehaviorSanitizer",
};

static bool tl_sanitizer_find(const char *buf, size_t len, char *what, size_t whatlen)
{
	const char *first = NULL;
	const char *b, *e;
	size_t i;

	for (i = 0; i < sizeof tl_sanitizer_markers / sizeof tl_sanitizer_markers[0]; i++) {
		const char *m = memmem(buf, len, tl_sanitizer_markers[i],
				       strlen(tl_sanitizer_markers[i]));

		if (m != NULL && (first == NULL || m < first))
			first = m;
	}
	if (first == NULL)
		return false;
	for (b = first; b > buf && b[-1] != '\n'; b--)
		;
	e = memchr(first, '\n', len - (size_t)(first - buf));
	if (e == NULL)
		e = buf + len;
	if (what != NULL && whatlen > 0)
		snprintf(what, whatlen, "%.*s", (int)(e - b), b);
	return true;
}

bool tl_sanitizer_report(const char *text, char *what, size_t whatlen)
{
	return text != NULL && tl_sanitizer_find(text, strlen(text), what, whatlen);
}

bool tl_sanitizer_report_in_file(const char *path, char *what, size_t whatlen)
{
	enum { CHUNK = 1 << 16, KEEP = 512 }; /* KEEP: a report's line cut by a chunk's end */
	char *buf = NULL;
	size_t have = 0;
	bool found = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	buf = malloc(CHUNK + KEEP);
	if (buf == NULL) {
		close(fd);
		return false;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		if (tl_sanitizer_find(buf, have, what, whatlen)) {
			found = true;
			break;
		}
		if (have > KEEP) {
			memmove(buf, buf + have - KEEP, KEEP);
			have = KEEP;
		}
	}
	free(buf);
	close(fd);
	return found;
}

/* Reads all of FD from its start into a new NUL-terminated string. */
static char *tl_read_fd_all(int fd)
{
	size_t used = 0, cap = 4096;
	char *buf = malloc(cap);

	if (buf == NULL || lseek(fd, 0, SEEK_SET) < 0) {
		free(buf);
		return NULL;
	}
	for (;;) {
		ssize_t n;

		if (cap - used < 4096 + 1) {
			char *nbuf = realloc(buf, cap * 2);

			if (nbuf == NULL) {
				free(buf);
				return NULL;
			}
			buf = nbuf;
			cap *= 2;
		}
		n = read(fd, buf + used, cap - used - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = '\0';
	return buf;
}

bool tl_run_capture(const TlEnv *env, const char *const argv[], int timeout_ms, TlRunResult *r,
		    char *err, size_t errlen)
{
	char outp[TL_PATH_MAX], errp[TL_PATH_MAX], what[256], stbuf[64];
	int64_t deadline = tl_now_ms() + timeout_ms;
	int fo = -1, fe = -1, status = 0;
	bool ok = false;
	pid_t pid;

	memset(r, 0, sizeof *r);
	if (!tl_fmt(outp, sizeof outp, "%s/run-XXXXXX", env->tmpdir) ||
	    !tl_fmt(errp, sizeof errp, "%s/run-XXXXXX", env->tmpdir)) {
		tl_seterr(err, errlen, "temporary directory path too long");
		return false;
	}
	fo = mkstemp(outp);
	fe = fo < 0 ? -1 : mkstemp(errp);
	if (fo < 0 || fe < 0) {
		tl_seterr(err, errlen, "mkstemp in %s: %s", env->tmpdir, strerror(errno));
		goto done;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		tl_seterr(err, errlen, "fork: %s", strerror(errno));
		goto done;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(fo, 1);
		dup2(fe, 2);
		execvp(argv[0], (char *const *)argv);
		dprintf(2, "testlib: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (;;) {
		pid_t w = tl_waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0) {
			tl_seterr(err, errlen, "waitpid: %s", strerror(errno));
			goto done;
		}
		if (tl_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			(void)tl_waitpid(pid, &status, 0);
			tl_seterr(err, errlen, "%s: still running after %d ms", argv[0],
				  timeout_ms);
			goto done;
		}
		tl_sleep_ms(10);
	}
	r->code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	r->out = tl_read_fd_all(fo);
	r->err = tl_read_fd_all(fe);
	if (r->out == NULL || r->err == NULL) {
		tl_seterr(err, errlen, "reading the output of %s failed", argv[0]);
		goto done;
	}
	if (tl_sanitizer_report(r->err, what, sizeof what)) {
		tl_describe_status(status, stbuf, sizeof stbuf);
		fprintf(stderr, "testlib: %s (%s) printed a sanitizer report:\n%s\n", argv[0], stbuf,
			r->err);
		tl_seterr(err, errlen, "%s: sanitizer report: %s", argv[0], what);
		goto done;
	}
	ok = true;
done:
	if (!ok)
		tl_run_result_free(r);
	if (fo >= 0) {
		close(fo);
		unlink(outp);
	}
	if (fe >= 0) {
		close(fe);
		unlink(errp);
	}
	return ok;
}

void tl_run_result_free(TlRunResult *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------- HTTP */

static bool tl_send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Decodes a chunked body in place; returns the decoded length or -1. */
static ssize_t tl_dechunk(char *body, size_t len)
{
	size_t in = 0, out = 0;

	for (;;) {
		char *end;
		unsigned long sz;
		char *eol = memmem(body + in, len - in, "\r\n", 2);

		if (eol == NULL)
			return -1;
		sz = strtoul(body + in, &end, 16);
		if (end == body + in)
			return -1;
		in = (size_t)(eol - body) + 2;
		if (sz == 0)
			return (ssize_t)out;
		if (in + sz + 2 > len)
			return -1;
		memmove(body + out, body + in, sz);
		out += sz;
		in += sz + 2;
	}
}

/* Parses a complete response in RAW (LEN bytes, NUL-terminated). A response
 * that is cut short counts as a transport error. */
static bool tl_http_parse(char *raw, size_t len, TlHttpResponse *resp, char *err, size_t errlen)
{
	char *hdr_end = strstr(raw, "\r\n\r\n");
	char *line, *body;
	long content_length = -1;
	bool chunked = false;
	size_t body_len;
	json_error_t jerr;

	if (len == 0) {
		tl_seterr(err, errlen, "connection closed without a response");
		return false;
	}
	if (hdr_end == NULL) {
		tl_seterr(err, errlen, "connection closed inside the response headers (%zu bytes)",
			  len);
		return false;
	}
	if (sscanf(raw, "HTTP/1.%*d %d", &resp->status) != 1) {
		tl_seterr(err, errlen, "bad status line: %.60s", raw);
		return false;
	}
	*hdr_end = '\0';
	body = hdr_end + 4;
	line = strstr(raw, "\r\n");
	resp->headers = strdup(line != NULL ? line + 2 : "");
	if (resp->headers == NULL) {
		tl_seterr(err, errlen, "out of memory");
		return false;
	}
	while (line != NULL) {
		char *next;

		line += 2;
		next = strstr(line, "\r\n");
		if (next != NULL)
			*next = '\0';
		if (strncasecmp(line, "Content-Type:", 13) == 0) {
			const char *v = line + 13;
			size_t n;

			while (*v == ' ' || *v == '\t')
				v++;
			n = strcspn(v, "; \t");
			if (n >= sizeof resp->content_type)
				n = sizeof resp->content_type - 1;
			memcpy(resp->content_type, v, n);
			resp->content_type[n] = '\0';
		} else if (strncasecmp(line, "Content-Length:", 15) == 0) {
			content_length = strtol(line + 15, NULL, 10);
		} else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
			   strcasestr(line + 18, "chunked") != NULL) {
			chunked = true;
		}
		line = next;
	}
	body_len = len - (size_t)(body - raw);
	if (resp->status == 304 || resp->status == 204) {
		body_len = 0; /* no body, whatever Content-Length says (RFC 9110, 6.4.1) */
	} else if (chunked) {
		ssize_t n = tl_dechunk(body, body_len);

		if (n < 0) {
			tl_seterr(err, errlen, "connection closed inside a chunked body");
			return false;
		}
		body_len = (size_t)n;
	} else if (content_length >= 0) {
		if (body_len < (size_t)content_length) {
			tl_seterr(err, errlen, "connection closed after %zu of %ld body bytes",
				  body_len, content_length);
			return false;
		}
		body_len = (size_t)content_length;
	}
	resp->body = malloc(body_len + 1);
	if (resp->body == NULL) {
		tl_seterr(err, errlen, "out of memory");
		return false;
	}
	memcpy(resp->body, body, body_len);
	resp->body[body_len] = '\0';
	resp->body_len = body_len;
	resp->json = json_loadb(resp->body, body_len, 0, &jerr);
	return true;
}

bool tl_http_parse_response(const char *raw, size_t len, TlHttpResponse *resp, char *err,
			    size_t errlen)
{
	char *copy = malloc(len + 1);
	bool ok;

	memset(resp, 0, sizeof *resp);
	if (copy == NULL) {
		tl_seterr(err, errlen, "out of memory");
		return false;
	}
	memcpy(copy, raw, len);
	copy[len] = '\0';
	ok = tl_http_parse(copy, len, resp, err, errlen);
	if (!ok)
		tl_http_response_free(resp);
	free(copy);
	return ok;
}

const char *tl_http_header(const TlHttpResponse *resp, const char *name, char *buf, size_t len)
{
	size_t nlen = strlen(name);
	const char *line = resp->headers;

	while (line != NULL && *line != '\0') {
		const char *eol = strstr(line, "\r\n");
		size_t llen = eol ? (size_t)(eol - line) : strlen(line);

		if (llen > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;
			size_t vlen;

			while (*v == ' ' || *v == '\t')
				v++;
			vlen = llen - (size_t)(v - line);
			while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
				vlen--;
			if (vlen >= len)
				vlen = len - 1;
			memcpy(buf, v, vlen);
			buf[vlen] = '\0';
			return buf;
		}
		line = eol ? eol + 2 : NULL;
	}
	return NULL;
}

void tl_http_trace(const char *method, const char *path, const TlHttpResponse *resp)
{
	const char *file = getenv("TWOPC_API_TRACE");
	json_t *o, *h;
	const char *line;
	char *text;
	int fd;

	if (file == NULL || *file == '\0')
		return;
	o = json_object();
	h = json_object();
	/* Which test program got it, so a failure of the OpenAPI check can be
	 * traced back to the test that made the request. */
	json_object_set_new(o, "program", json_string(program_invocation_short_name));
	json_object_set_new(o, "method", json_string(method));
	json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "status", json_integer(resp->status));
	json_object_set_new(o, "content_type", json_string(resp->content_type));
	for (line = resp->headers; line != NULL && *line != '\0';) {
		const char *eol = strstr(line, "\r\n");
		size_t llen = eol ? (size_t)(eol - line) : strlen(line);
		const char *colon = memchr(line, ':', llen);

		if (colon != NULL) {
			char name[128], value[1024];
			size_t nl = (size_t)(colon - line), vl;
			const char *v = colon + 1;

			if (nl >= sizeof name)
				nl = sizeof name - 1;
			for (size_t i = 0; i < nl; i++)
				name[i] = (char)tolower((unsigned char)line[i]);
			name[nl] = '\0';
			while (*v == ' ')
				v++;
			vl = llen - (size_t)(v - line);
			if (vl >= sizeof value)
				vl = sizeof value - 1;
			memcpy(value, v, vl);
			value[vl] = '\0';
			json_object_set_new(h, name, json_string(value));
		}
		line = eol ? eol + 2 : NULL;
	}
	json_object_set_new(o, "headers", h);
	json_object_set(o, "body", resp->json ? resp->json : json_null());
	if (resp->json == NULL && resp->body != NULL)
		json_object_set_new(o, "raw_body", json_stringn_nocheck(resp->body, resp->body_len));
	text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (text == NULL)
		return;
	fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		size_t n = strlen(text);

		text[n] = '\n'; /* one write() per line: lines from parallel tests stay whole */
		if (write(fd, text, n + 1) < 0) {
			/* best effort: a missing line only weakens the OpenAPI check */
		}
		close(fd);
	}
	free(text);
}

bool tl_http_request(int port, const char *method, const char *path, const char *body,
		     int timeout_ms, TlHttpResponse *resp, char *err, size_t errlen)
{
	return tl_http_request_h(port, method, path, NULL, body, timeout_ms, resp, err, errlen);
}

bool tl_http_request_h(int port, const char *method, const char *path, const char *extra,
		       const char *body, int timeout_ms, TlHttpResponse *resp, char *err,
		       size_t errlen)
{
	struct sockaddr_in sin;
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	char head[4096];
	char *raw = NULL;
	size_t used = 0, cap = 0;
	size_t body_len = body ? strlen(body) : 0;
	int fd = -1;
	int hlen;
	int read_errno = 0;
	bool ok = false;

	memset(resp, 0, sizeof *resp);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tl_seterr(err, errlen, "socket: %s", strerror(errno));
		goto done;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
		tl_seterr(err, errlen, "setsockopt: %s", strerror(errno));
		goto done;
	}
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
		tl_seterr(err, errlen, "connect 127.0.0.1:%d: %s", port, strerror(errno));
		goto done;
	}
	if (body != NULL)
		hlen = snprintf(head, sizeof head,
				"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s"
				"Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
				method, path, port, extra ? extra : "", body_len);
	else
		hlen = snprintf(head, sizeof head,
				"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s\r\n",
				method, path, port, extra ? extra : "");
	if (hlen < 0 || (size_t)hlen >= sizeof head) {
		tl_seterr(err, errlen, "request line too long");
		goto done;
	}
	/* A server may answer (413, say) and close before reading everything we
	 * send, so a failed send is judged by whether a response comes back. */
	if (tl_send_all(fd, head, (size_t)hlen))
		(void)tl_send_all(fd, body ? body : "", body_len);
	for (;;) {
		ssize_t n;

		if (cap - used < 4096 + 1) {
			char *nraw;

			cap = cap ? cap * 2 : 16384;
			nraw = realloc(raw, cap);
			if (nraw == NULL) {
				tl_seterr(err, errlen, "out of memory");
				goto done;
			}
			raw = nraw;
		}
		n = recv(fd, raw + used, cap - used - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			read_errno = errno;
			break;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (raw == NULL) {
		tl_seterr(err, errlen, "out of memory");
		goto done;
	}
	raw[used] = '\0';
	if (!tl_http_parse(raw, used, resp, err, errlen)) {
		if (read_errno != 0 && err != NULL) {
			size_t l = strlen(err);

			snprintf(err + l, errlen - l, " (%s)",
				 read_errno == EAGAIN || read_errno == EWOULDBLOCK
					 ? "timed out"
					 : strerror(read_errno));
		}
		tl_http_response_free(resp);
		goto done;
	}
	tl_http_trace(method, path, resp);
	ok = true;
done:
	free(raw);
	if (fd >= 0)
		close(fd);
	return ok;
}

bool tl_http_post_json(int port, const char *path, const json_t *body, int timeout_ms,
		       TlHttpResponse *resp, char *err, size_t errlen)
{
	char *text = json_dumps(body, JSON_COMPACT);
	bool ok;

	if (text == NULL) {
		memset(resp, 0, sizeof *resp);
		tl_seterr(err, errlen, "json_dumps failed");
		return false;
	}
	ok = tl_http_request(port, "POST", path, text, timeout_ms, resp, err, errlen);
	free(text);
	return ok;
}

void tl_http_response_free(TlHttpResponse *resp)
{
	free(resp->body);
	free(resp->headers);
	json_decref(resp->json);
	memset(resp, 0, sizeof *resp);
}

/* ------------------------------------------------------------------- JSON */

const char *tl_json_str(const json_t *obj, const char *key)
{
	const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

bool tl_json_i64(const json_t *obj, const char *key, int64_t *out)
{
	const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return true;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;

		errno = 0;
		*out = strtoll(s, &end, 10);
		return errno == 0 && end != s && *end == '\0';
	}
	return false;
}
