/*
 * twopcd: the two-phase-commit coordinator daemon.
 *
 * Start-up order matters: lock the log directory, replay the decision log,
 * settle every prepared transaction of ours on every reachable participant
 * (recovery), and only then listen for requests. SIGTERM/SIGINT stop
 * accepting new transactions, let those in flight finish (phase 2
 * included) for up to shutdown_grace, and exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "decision_log.h"
#include "fault.h"
#include "auth.h"
#include "http_api.h"
#include "log.h"
#include "participant.h"
#include "pool.h"
#include "recovery.h"
#include "sweeper.h"
#include "txn.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif


typedef struct Daemon {
	Config cfg;
	struct event_base *base;
	Dlog *dlog;
	Pool **pools;
	TxnMgr *mgr;
	Sweeper *sweeper;
	HttpApi *api;
	struct event *ev_term, *ev_int, *ev_drain, *ev_hup;
	bool stopping;
	int64_t stop_deadline_us;
} Daemon;

static void usage(FILE *out)
{
	fprintf(out, "Usage: twopcd -c FILE [--check]\n"
	             "\n"
	             "twopcd coordinates atomic transactions across several PostgreSQL databases\n"
	             "with two-phase commit, behind an HTTP/JSON API.\n"
	             "\n"
	             "Options:\n"
	             "  -c, --config FILE   the INI configuration file (required)\n"
	             "      --check         validate FILE, connect to every participant and check\n"
	             "                      max_prepared_transactions; one line each; exit 0 if all\n"
	             "                      are fit, 1 otherwise\n"
	             "  -h, --help          show this help and exit\n"
	             "  -V, --version       show the version and exit\n"
	             "\n"
	             "twopcd runs in the foreground and logs to stderr. It replays its decision log\n"
	             "and settles its prepared transactions on every participant before it listens.\n"
	             "SIGTERM or SIGINT: stop accepting, finish what is in flight, exit 0.\n"
	             "\n"
	             "Environment:\n"
	             "  TWOPC_FAULT=POINT:crash[@N]  (testing) SIGKILL itself at a fault point\n"
	             "\n");
	config_print_reference();
	fprintf(out, "\nSee docs/ and README.md for the API and operations.\n");
}

/* Every HTTP connection and pool connection is a descriptor: take what the
 * hard limit allows and say so if max_connections cannot fit. */
static void raise_fd_limit(const Config *cfg)
{
	struct rlimit rl;
	int64_t need = cfg->max_connections + 64;

	for (size_t i = 0; i < cfg->nparticipants; i++)
		need += cfg->participants[i].pool_size + 2;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && (int64_t)rl.rlim_cur < need)
		log_warning("open-file limit is %llu but max_connections (%lld) and the pools need about %lld; "
		            "raise LimitNOFILE / ulimit -n or lower max_connections",
		            (unsigned long long)rl.rlim_cur, (long long)cfg->max_connections, (long long)need);
}

static int run_check(const Config *cfg)
{
	int bad = 0;
	for (size_t i = 0; i < cfg->nparticipants; i++) {
		char info[512], err[512];
		if (participant_check(&cfg->participants[i], info, sizeof(info), err, sizeof(err))) {
			printf("%s: ok: %s\n", cfg->participants[i].name, info);
		} else {
			printf("%s: FAILED: %s\n", cfg->participants[i].name, err);
			bad++;
		}
	}
	printf("%s: %zu participant(s), %d failed\n", cfg->path, cfg->nparticipants, bad);
	return bad ? 1 : 0;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	Daemon *d = arg;
	size_t left = txnmgr_in_flight(d->mgr);
	if (left == 0 || now_mono_us() >= d->stop_deadline_us) {
		if (left > 0)
			log_warning("shutdown: %zu transactions still in flight after the grace period; their "
			            "decisions are in the log and the next start finishes them",
			            left);
		event_base_loopbreak(d->base);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	Daemon *d = arg;
	struct timeval tv = {0, 50000};

	if (d->stopping) {
		log_warning("second signal: stopping now");
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = true;
	log_info("signal %d: refusing new transactions, finishing %zu in flight", (int)sig, txnmgr_in_flight(d->mgr));
	http_api_drain(d->api);
	txnmgr_abort_preparing(d->mgr);
	d->stop_deadline_us = now_mono_us() + d->cfg.shutdown_grace_ms * 1000;
	d->ev_drain = event_new(d->base, -1, EV_PERSIST, on_drain_tick, d);
	event_add(d->ev_drain, &tv);
}

/* SIGHUP: reopen the log file, then reload what can change live. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	Daemon *d = arg;
	Config next;
	char err[1024];
	int64_t interval = d->cfg.sweep_interval_ms;
	char *tokens = d->cfg.auth_token_file ? xstrdup(d->cfg.auth_token_file) : NULL;

	(void)sig;
	(void)what;
	if (!log_reopen(err, sizeof(err)))
		log_error("SIGHUP: %s", err);
	log_info("SIGHUP: log reopened; reloading %s", d->cfg.path);
	if (!config_load(d->cfg.path, &next, err, sizeof(err))) {
		log_error("SIGHUP: %s; keeping the running configuration", err);
		free(tokens);
		return;
	}
	config_apply_reload(&d->cfg, &next);
	config_free(&next);
	log_set_level(d->cfg.log_level);
	log_set_format(d->cfg.log_format);
	if (d->cfg.sweep_interval_ms != interval)
		sweeper_reschedule(d->sweeper);
	/* The token file is read again even when its name did not change:
	 * that is how tokens are rotated. */
	if (!http_api_reload_auth(d->api, err, sizeof(err))) {
		log_error("SIGHUP: %s; keeping the previous tokens", err);
		free(d->cfg.auth_token_file);
		d->cfg.auth_token_file = tokens;
		tokens = NULL;
	}
	free(tokens);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	Daemon d;
	const char *config_path = NULL;
	bool check = false;
	char err[1024];
	DlogLoadStats ls;
	RecoveryStats rs;
	int opt, rc = 1;

	memset(&d, 0, sizeof(d));
	/* No fastbins: libpq allocates a 2 KiB block for several results of
	 * every transaction, and each such request made glibc consolidate the
	 * fastbins (malloc_consolidate) first. Small blocks still go through
	 * the per-thread cache. */
	mallopt(M_MXFAST, 0);
	while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("twopcd %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "twopcd: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	if (config_path == NULL) {
		fprintf(stderr, "twopcd: no configuration file: use -c FILE (see --help)\n");
		return 2;
	}
	if (!config_load(config_path, &d.cfg, err, sizeof(err))) {
		fprintf(stderr, "twopcd: %s\n", err);
		return 1;
	}
	/* Result text is returned to clients as JSON: ask for UTF-8. */
	setenv("PGCLIENTENCODING", "UTF8", 1);
	setenv("PGAPPNAME", "twopcd", 0);
	if (d.cfg.auth_token_file != NULL) {
		/* A token file the daemon cannot use is a configuration error: say
		 * so now, not after recovery ran. */
		AuthTokens *a = auth_load(d.cfg.auth_token_file, err, sizeof(err));
		if (a == NULL) {
			fprintf(stderr, "twopcd: %s\n", err);
			config_free(&d.cfg);
			return 1;
		}
		if (check)
			printf("auth: %zu bearer token(s) in %s\n", auth_count(a), d.cfg.auth_token_file);
		auth_free(a);
	}
	if (check) {
		rc = run_check(&d.cfg);
		config_free(&d.cfg);
		return rc;
	}
	log_set_level(d.cfg.log_level);
	log_set_format(d.cfg.log_format);
	if (d.cfg.log_file != NULL && !log_open_file(d.cfg.log_file, err, sizeof(err))) {
		fprintf(stderr, "twopcd: %s\n", err);
		config_free(&d.cfg);
		return 1;
	}
	if (!fault_init(getenv("TWOPC_FAULT"), err, sizeof(err))) {
		log_error("%s", err);
		goto done;
	}
	if (fault_armed != FAULT_NONE)
		log_warning("TWOPC_FAULT: fault point %s is armed (testing only)", fault_name(fault_armed));
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(&d.cfg);

	log_info("twopcd %s starting: coordinator %s, %zu participants, log %s", PACKAGE_VERSION, d.cfg.coord_id,
	         d.cfg.nparticipants, d.cfg.log_dir);
	int64_t t0 = now_mono_us();
	if (!dlog_open(d.cfg.log_dir, d.cfg.log_segment_bytes, d.cfg.idempotency_ttl_s * 1000, &d.dlog, &ls, err,
	               sizeof(err))) {
		log_error("%s", err);
		goto done;
	}
	log_info("decision log: %llu records in %llu segments replayed in %.1f ms; %llu decided transactions not "
	         "yet done; %llu segments removed%s",
	         (unsigned long long)ls.records, (unsigned long long)ls.segments, (now_mono_us() - t0) / 1000.0,
	         (unsigned long long)ls.live_commits, (unsigned long long)ls.segments_removed,
	         ls.truncated_bytes ? "; a torn tail was truncated" : "");

	d.base = event_base_new();
	if (d.base == NULL) {
		log_error("cannot create the event loop");
		goto done;
	}
	char appname[64];
	participant_pool_appname(appname, sizeof(appname), d.cfg.coord_id);
	d.pools = xcalloc(d.cfg.nparticipants, sizeof(Pool *));
	for (size_t i = 0; i < d.cfg.nparticipants; i++)
		d.pools[i] = pool_new(d.base, d.cfg.participants[i].name, d.cfg.participants[i].conninfo, appname,
		                      (int)d.cfg.participants[i].pool_size);
	/* Ids only grow, across restarts too: start past both the log and the clock. */
	uint64_t first_id = (uint64_t)now_wall_ms() * 1000;
	if (ls.max_txn_id >= first_id)
		first_id = ls.max_txn_id + 1;
	d.mgr = txnmgr_new(d.base, &d.cfg, d.dlog, d.pools, first_id);

	if (!recovery_run(&d.cfg, d.dlog, d.mgr, &rs, err, sizeof(err))) {
		log_error("%s", err);
		goto done;
	}
	log_info("recovery: %llu committed, %llu rolled back, %llu not ours left alone, %llu participants "
	         "unreachable, %llu decided transactions resumed, %llu completed",
	         (unsigned long long)rs.committed, (unsigned long long)rs.rolled_back, (unsigned long long)rs.foreign,
	         (unsigned long long)rs.unreachable, (unsigned long long)rs.resumed,
	         (unsigned long long)rs.done_written);
	if (!dlog_start(d.dlog, d.base, err, sizeof(err))) {
		log_error("%s", err);
		goto done;
	}
	for (size_t i = 0; i < d.cfg.nparticipants; i++)
		pool_start(d.pools[i]);
	txnmgr_start(d.mgr);
	d.sweeper = sweeper_new(d.base, &d.cfg, d.dlog, d.mgr, d.pools);
	sweeper_start(d.sweeper);
	d.api = http_api_start(d.base, &d.cfg, d.mgr, d.sweeper, d.dlog, err, sizeof(err));
	if (d.api == NULL) {
		log_error("%s", err);
		goto done;
	}
	d.ev_term = evsignal_new(d.base, SIGTERM, on_signal, &d);
	d.ev_int = evsignal_new(d.base, SIGINT, on_signal, &d);
	d.ev_hup = evsignal_new(d.base, SIGHUP, on_hup, &d);
	event_add(d.ev_term, NULL);
	event_add(d.ev_int, NULL);
	event_add(d.ev_hup, NULL);
	log_info("listening on http://%s:%d", d.cfg.listen_host, d.cfg.listen_port);

	event_base_dispatch(d.base);
	log_info("stopped");
	rc = 0;
done:
	http_api_free(d.api);
	sweeper_free(d.sweeper);
	txnmgr_free(d.mgr);
	if (d.pools) {
		for (size_t i = 0; i < d.cfg.nparticipants; i++)
			pool_free(d.pools[i]);
		free(d.pools);
	}
	dlog_close(d.dlog);
	if (d.ev_term)
		event_free(d.ev_term);
	if (d.ev_int)
		event_free(d.ev_int);
	if (d.ev_hup)
		event_free(d.ev_hup);
	if (d.ev_drain)
		event_free(d.ev_drain);
	if (d.base)
		event_base_free(d.base);
	config_free(&d.cfg);
	return rc;
}
