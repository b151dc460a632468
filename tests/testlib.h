/*
 * testlib: the harness behind twopc's integration tests.
 *
 * It starts real PostgreSQL clusters through scripts/pg-cluster in a private
 * temporary directory, talks to them with libpq, runs the real twopcd binary
 * as a child process, and speaks plain HTTP/1.1 to it over loopback. Nothing
 * is mocked: a test passes only if the daemon does the right thing to real
 * databases.
 *
 * Ownership: the process that calls tl_env_init() owns the clusters and is
 * the only one that destroys them (at tl_env_destroy(), at exit, or on
 * SIGINT/SIGTERM). Check runs every test in a forked child; children inherit
 * the exit handler but it does nothing there.
 *
 * Functions that can fail return bool, carry warn_unused_result and write the
 * reason into the caller's err buffer; the caller decides how to report it.
 */
#ifndef TWOPC_TESTLIB_H
#define TWOPC_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <libpq-fe.h>

#define TL_WUR __attribute__((warn_unused_result))

#define TL_PATH_MAX 1024
#define TL_ERR_MAX 2048 /* room for an error message (a command line, a log tail) */
#define TL_NAME_MAX 64
#define TL_MAX_CLUSTERS 8

typedef struct TlCluster TlCluster;
typedef struct TlEnv TlEnv;
typedef struct TlDaemon TlDaemon;
typedef struct TlHttpResponse TlHttpResponse;
typedef struct TlRunResult TlRunResult;

/* One throwaway PostgreSQL cluster holding the database `bank`. */
struct TlCluster {
	char name[TL_NAME_MAX];     /* participant name, e.g. bank_a */
	char dir[TL_PATH_MAX];      /* data directory */
	int port;                   /* TCP port on 127.0.0.1 */
	char conninfo[TL_PATH_MAX]; /* libpq conninfo for database bank */
};

/* The temporary directory, the clusters in it and who may destroy them. */
struct TlEnv {
	char tmpdir[TL_PATH_MAX];
	char pg_cluster[TL_PATH_MAX]; /* path of scripts/pg-cluster */
	char builddir[TL_PATH_MAX];   /* where twopcd was built */
	pid_t creator;                /* only this process destroys anything */
	bool keep_tmpdir;             /* leave tmpdir (logs, data) for debugging */
	int ncluster;
	TlCluster clusters[TL_MAX_CLUSTERS];
};

/* One twopcd child process and the files it uses. */
struct TlDaemon {
	char bin[TL_PATH_MAX];      /* the twopcd binary */
	char conf_path[TL_PATH_MAX];
	char log_path[TL_PATH_MAX]; /* twopcd's stderr, appended across restarts */
	char log_dir[TL_PATH_MAX];  /* twopcd's decision log directory */
	int port;                   /* HTTP port on 127.0.0.1 */
	pid_t pid;                  /* 0 when not running */
};

/* An HTTP response as read off the wire. */
struct TlHttpResponse {
	int status;              /* e.g. 200 */
	char content_type[128];  /* media type only, parameters cut off */
	char *body;              /* NUL-terminated, owned by the response */
	size_t body_len;
	json_t *json;            /* parsed body or NULL if it is not JSON */
	char *headers;           /* the header lines after the status line, "\r\n"-separated */
};

/* ---- environment and clusters ---- */

/* Exit code that makes automake's test driver report SKIP. */
#define TL_EXIT_SKIP 77

/* Why the suite cannot run here (no PostgreSQL server binaries), or NULL. */
const char *tl_skip_reason(void);

/* Creates the temporary directory and installs exit/signal handlers. Set
 * env->keep_tmpdir afterwards to keep the directory (clusters still stop). */
bool tl_env_init(TlEnv *env, char *err, size_t errlen) TL_WUR;
/* Creates, starts and creates database bank in one more cluster. */
bool tl_env_add_cluster(TlEnv *env, const char *name, char *err, size_t errlen) TL_WUR;
/* Destroys every cluster and the temporary directory; a no-op in any
 * process but the creator, and safe to call twice. */
void tl_env_destroy(TlEnv *env);

TlCluster *tl_env_cluster(TlEnv *env, const char *name);

/* pg_ctl stop with MODE "fast" or "immediate"; then start again. */
bool tl_cluster_stop(const TlEnv *env, const TlCluster *c, const char *mode, char *err,
		     size_t errlen) TL_WUR;
bool tl_cluster_start(const TlEnv *env, const TlCluster *c, char *err, size_t errlen) TL_WUR;
/* Starts the cluster if it does not answer. */
bool tl_cluster_ensure_running(const TlEnv *env, const TlCluster *c, char *err,
			       size_t errlen) TL_WUR;

/* ---- libpq helpers (a fresh connection per call: simple and isolated) ---- */

PGconn *tl_pg_connect(const TlCluster *c, char *err, size_t errlen) TL_WUR;
/* Runs one or more statements without parameters; rows are ignored. */
bool tl_pg_exec(const TlCluster *c, const char *sql, char *err, size_t errlen) TL_WUR;
/* Runs a query with text parameters; *out must be PQclear()ed. */
bool tl_pg_query(const TlCluster *c, const char *sql, int nparams, const char *const *params,
		 PGresult **out, char *err, size_t errlen) TL_WUR;
/* Runs a query returning exactly one row and column holding an integer. */
bool tl_pg_scalar_i64(const TlCluster *c, const char *sql, int nparams,
		      const char *const *params, int64_t *out, char *err, size_t errlen) TL_WUR;
/* Rows of pg_prepared_xacts whose gid starts with "twopc_". */
bool tl_pg_count_prepared(const TlCluster *c, int64_t *out, char *err, size_t errlen) TL_WUR;
/* Whether pg_prepared_xacts holds exactly this gid. */
bool tl_pg_gid_prepared(const TlCluster *c, const char *gid, bool *out, char *err,
			size_t errlen) TL_WUR;

/* ---- twopcd control ---- */

/* Picks a free port and writes twopcd's config (coordinator id t1, every
 * cluster of env as a participant). LOG_DIR is the decision log directory;
 * TAG names the stderr log file. Does not start anything. */
bool tl_daemon_configure(TlDaemon *d, const TlEnv *env, const char *log_dir, const char *tag,
			 char *err, size_t errlen) TL_WUR;
/* Adds "KEY = VALUE" to the [coordinator] section of the daemon's config
 * (a key set twice is an error in twopcd: set each key once). Takes
 * effect at the next start. */
bool tl_daemon_set(TlDaemon *d, const char *key, const char *value, char *err, size_t errlen) TL_WUR;
/* fork/exec twopcd (FAULT, if not NULL, goes into TWOPC_FAULT), then waits
 * until GET /healthz answers 200. On timeout it prints the log tail. */
bool tl_daemon_start(TlDaemon *d, const char *fault, char *err, size_t errlen) TL_WUR;
/* Polls GET /healthz until 200, the child exits, or TIMEOUT_MS passes. */
bool tl_daemon_wait_healthy(TlDaemon *d, int timeout_ms, char *err, size_t errlen) TL_WUR;
/* Waits for the child to exit on its own (e.g. a crash fault point).
 * Fails, too, when its log holds a sanitizer report. */
bool tl_daemon_wait_exit(TlDaemon *d, int timeout_ms, int *wstatus, char *err,
			 size_t errlen) TL_WUR;
/*
 * kill -9 and reap. Fails (printing the log tail) when the daemon had
 * already died in some other way than SIGKILL or exit status 0 — a crash,
 * an abort, a sanitizer that stopped it — or when its log holds a
 * sanitizer report (tl_sanitizer_report). With nothing running it only
 * checks the log.
 */
bool tl_daemon_kill(TlDaemon *d, char *err, size_t errlen) TL_WUR;
/* kill -9 (if running) then start again, with FAULT as for tl_daemon_start. */
bool tl_daemon_restart(TlDaemon *d, const char *fault, char *err, size_t errlen) TL_WUR;
/* Prints the last LINES lines of the daemon's stderr log to stderr. */
void tl_daemon_print_log_tail(const TlDaemon *d, int lines);
/* Prints the last LINES lines of any file to stderr. */
void tl_print_file_tail(const char *path, int lines);

/* ---- other programs (twopcd --check, twopc-recover, openssl) ---- */

/* How a program run by tl_run_capture() ended, and what it printed. */
struct TlRunResult {
	int code;   /* exit status, or -1 when a signal ended it */
	int signal; /* that signal, else 0 */
	char *out;  /* stdout, NUL-terminated, owned by the result */
	char *err;  /* stderr */
};

/*
 * Runs ARGV (argv[0] a path, or a name looked up in PATH) with stdin from
 * /dev/null; stdout and stderr go through files in env->tmpdir. Returns
 * false when it could not run, still ran after TIMEOUT_MS (it is killed),
 * or when its stderr holds a sanitizer report: a program that reports a
 * memory or undefined-behaviour error failed, whatever its exit status.
 * Any exit status is success otherwise: the caller checks r->code and
 * frees R. On failure R holds nothing to free.
 */
bool tl_run_capture(const TlEnv *env, const char *const argv[], int timeout_ms, TlRunResult *r,
		    char *err, size_t errlen) TL_WUR;
void tl_run_result_free(TlRunResult *r);

/* Whether TEXT holds a report of AddressSanitizer, LeakSanitizer or UBSan
 * (with -fno-sanitize-recover a UBSan report is fatal, but what it prints
 * must fail the test even where the exit status is not checked). The line
 * of the first one goes into WHAT. */
bool tl_sanitizer_report(const char *text, char *what, size_t whatlen);
/* The same for a file, read in pieces (a daemon's log can be large); a
 * missing file holds no report. */
bool tl_sanitizer_report_in_file(const char *path, char *what, size_t whatlen);

/* ---- HTTP/1.1 client ---- */

/*
 * Sends one request (Connection: close) to 127.0.0.1:PORT and reads the
 * whole response. Returns false only for transport errors: connect failure,
 * reset, or a connection closed before a complete response arrived (what a
 * crashing daemon looks like). Any HTTP status, 5xx included, is success.
 */
bool tl_http_request(int port, const char *method, const char *path, const char *body,
		     int timeout_ms, TlHttpResponse *resp, char *err, size_t errlen) TL_WUR;
/* The same with extra request header lines: EXTRA is NULL or a string of
 * "Name: value\r\n" lines (e.g. an Idempotency-Key or Authorization). */
bool tl_http_request_h(int port, const char *method, const char *path, const char *extra,
		       const char *body, int timeout_ms, TlHttpResponse *resp, char *err,
		       size_t errlen) TL_WUR;
/* The value of response header NAME (case-insensitive) copied into BUF, or
 * NULL when the response has no such header. */
const char *tl_http_header(const TlHttpResponse *resp, const char *name, char *buf, size_t len);
/* Appends one JSON line describing a response to the file named by the
 * environment variable TWOPC_API_TRACE, if set: {"program" (the test
 * program's name), "method", "path", "status", "content_type", "headers"
 * {lowercase name: value}, "body" (the parsed JSON or null), "raw_body"
 * (when not JSON)}. tl_http_request*()
 * call it for every response; tests that speak raw HTTP call it themselves.
 * The OpenAPI check validates these lines against docs/openapi.yaml. */
void tl_http_trace(const char *method, const char *path, const TlHttpResponse *resp);
/* Parses a raw response (as read off a socket, LEN bytes); false if it is
 * incomplete or malformed. */
bool tl_http_parse_response(const char *raw, size_t len, TlHttpResponse *resp, char *err,
			    size_t errlen) TL_WUR;
/* POSTs a JSON value (serialised compactly). */
bool tl_http_post_json(int port, const char *path, const json_t *body, int timeout_ms,
		       TlHttpResponse *resp, char *err, size_t errlen) TL_WUR;
void tl_http_response_free(TlHttpResponse *resp);

/* ---- small JSON readers for assertions ---- */

/* The string member KEY of OBJ, or NULL. */
const char *tl_json_str(const json_t *obj, const char *key);
/* Integer member KEY of OBJ (a JSON integer, or a string of digits, since a
 * driver may render bigint as text). */
bool tl_json_i64(const json_t *obj, const char *key, int64_t *out) TL_WUR;

/* ---- misc ---- */

/* snprintf that says whether everything fit. */
bool tl_fmt(char *buf, size_t len, const char *fmt, ...) TL_WUR
	__attribute__((format(printf, 3, 4)));
/* Milliseconds on a monotonic clock. */
int64_t tl_now_ms(void);
void tl_sleep_ms(int ms);

#endif /* TWOPC_TESTLIB_H */
