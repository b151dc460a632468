/*
 * twopc-recover: the operator's tool for twopc's prepared transactions and
 * decision log. It reads twopcd's own configuration file and works without
 * the daemon:
 *
 *   status      what is prepared where, what the log says, what resolve does
 *   resolve     settle our prepared transactions by the log (twopcd stopped)
 *   commit GID  an operator's (heuristic) decision, recorded before it is
 *   abort GID   carried out
 *   check-log   verify every record of the decision log; --fix a torn tail
 *
 * This file is the command line only; the commands live in recover_*.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "recover_checklog.h"
#include "recover_resolve.h"
#include "recover_scan.h"
#include "recover_status.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

typedef enum Command { CMD_STATUS, CMD_RESOLVE, CMD_COMMIT, CMD_ABORT, CMD_CHECK_LOG } Command;

typedef struct CommandDef {
	Command cmd;
	const char *name;
	const char *synopsis;
	const char *help; /* the rest of `twopc-recover NAME --help` */
} CommandDef;

static const char usage_text[] = "Usage: twopc-recover -c FILE COMMAND [OPTIONS] [ARGS]\n"
                                 "\n"
                                 "twopc-recover looks after the prepared transactions twopcd leaves behind when\n"
                                 "it, or a database, crashes, and after its decision log. It reads twopcd's own\n"
                                 "configuration file (the coordinator id, the decision log directory and every\n"
                                 "participant) and needs no running daemon.\n"
                                 "\n"
                                 "Commands:\n"
                                 "  status [--json]          list every prepared transaction on every participant,\n"
                                 "                           what the decision log says and what resolve would do;\n"
                                 "                           safe while twopcd runs\n"
                                 "  resolve [--dry-run]      settle our prepared transactions by the log: COMMIT\n"
                                 "                           PREPARED where it has a COMMIT record, ROLLBACK PREPARED\n"
                                 "                           otherwise; others' are never touched (twopcd stopped)\n"
                                 "  commit GID [--force]     decide one of our prepared transactions by hand\n"
                                 "  abort GID [--force]      (a heuristic decision, recorded in the log first)\n"
                                 "  check-log [--fix] [-v]   verify every record of the decision log; --fix cuts a\n"
                                 "                           torn tail (never damage)\n"
                                 "  help [COMMAND]           this text, or a command's\n"
                                 "\n"
                                 "Options:\n"
                                 "  -c, --config FILE        twopcd's configuration file (required for commands)\n"
                                 "  -h, --help               show this help, or with a command, the command's\n"
                                 "  -V, --version            show the version and exit\n"
                                 "\n"
                                 "Exit status: 0 nothing in doubt / done; 1 something is in doubt or could not\n"
                                 "be done; 2 error (usage, configuration, decision log, unreachable participant\n"
                                 "for status) or refusal. Each command's --help gives the details.\n"
                                 "\n"
                                 "See docs/OPERATIONS.md for what to do after a crash.\n";

static const CommandDef commands[] = {
    {CMD_STATUS, "status", "twopc-recover -c FILE status [--json]",
     "Lists every prepared transaction in every participant's database — twopcd's\n"
     "own and other applications' — and, for each: the participant, the GID, the\n"
     "owner (role), the age (time since PREPARE TRANSACTION), the xid age\n"
     "(age(transaction): how far it holds back VACUUM's xmin horizon), what the\n"
     "decision log says (committed, presumed abort, heuristic commit, heuristic\n"
     "abort, or \"not ours\") and the action 'resolve' would take:\n"
     "\n"
     "  COMMIT     ours, and the log has a COMMIT record or a heuristic commit\n"
     "  ROLLBACK   ours, no COMMIT record (presumed abort) or a heuristic abort\n"
     "  LEAVE      not ours: never touched by twopcd or twopc-recover\n"
     "\n"
     "It changes nothing and takes no lock: it opens the decision log read-only\n"
     "and may run beside a live twopcd. It then says so: a transaction twopcd is\n"
     "committing at that moment appears prepared for an instant (and as \"presumed\n"
     "abort\" until its COMMIT record is durable); its sweeper settles ours that\n"
     "nobody is finishing.\n"
     "\n"
     "Each participant is reached with libpq (5 s connect timeout) using the\n"
     "conninfo of the configuration file; passwords are never printed.\n"
     "\n"
     "Options:\n"
     "  --json       one JSON document instead of the table: \"twopcd\" {running,\n"
     "               pid}, \"log\" {dir, segments, records, live_commits,\n"
     "               live_heuristics, torn_tail_bytes, pending_done},\n"
     "               \"participants\" [{name, reachable, error, server, database,\n"
     "               prepared}], \"transactions\" [{participant, gid, ours, txn_id,\n"
     "               owner, database, age_s, xid_age, log, action}], \"summary\"\n"
     "               {prepared, ours, commit, rollback, leave, participants,\n"
     "               unreachable, in_doubt}\n"
     "  -h, --help   show this help\n"
     "\n"
     "Exit status:\n"
     "  0  no prepared transaction on any participant\n"
     "  1  some prepared transaction exists (ours or not)\n"
     "  2  error: a participant unreachable (reported), the configuration or the\n"
     "     decision log unreadable\n"},
    {CMD_RESOLVE, "resolve", "twopc-recover -c FILE resolve [--dry-run]",
     "Settles every prepared transaction of ours, as twopcd's start-up recovery\n"
     "does: COMMIT PREPARED where the decision log has a COMMIT record (or an\n"
     "operator's heuristic commit), ROLLBACK PREPARED otherwise (presumed abort,\n"
     "or a heuristic abort). Prepared transactions that are not ours are listed\n"
     "and left alone. Then, for every decision in the log none of whose branches\n"
     "is still prepared anywhere, it writes a DONE record, so that the log can\n"
     "drop it. One line per action:\n"
     "\n"
     "  bank_a  twopc_c1_0006...a1_0  COMMIT    done (log: committed)\n"
     "  bank_b  twopc_c1_0006...a1_1  COMMIT    already gone (log: committed)\n"
     "  bank_a  other_app_1           LEAVE     not ours: left alone (...)\n"
     "  -       txn 0006...a1         DONE      written (committed: every branch settled)\n"
     "\n"
     "It is idempotent: a second run finds nothing and says \"nothing to do\".\n"
     "\n"
     "It takes the decision log's lock (the one twopcd holds while it runs) and\n"
     "refuses while twopcd runs: a running twopcd settles its own prepared\n"
     "transactions (its sweeper, every sweep_interval_ms, or POST /v1/sweep).\n"
     "Opening the log for writing truncates a torn tail, as twopcd's start does;\n"
     "a damaged log is refused (see check-log).\n"
     "\n"
     "Options:\n"
     "  -n, --dry-run  print what would be done and change nothing (the log is\n"
     "                 opened read-only; allowed while twopcd runs)\n"
     "  -h, --help     show this help\n"
     "\n"
     "Exit status:\n"
     "  0  everything settled, or nothing to do\n"
     "  1  something could not be settled: a participant unreachable, a COMMIT or\n"
     "     ROLLBACK PREPARED failed, or a decision names a participant that is not\n"
     "     in the configuration\n"
     "  2  error or refusal: twopcd is running, the configuration or the log\n"
     "     cannot be used\n"},
    {CMD_COMMIT, "commit", "twopc-recover -c FILE commit GID [--force]",
     "Commits one of our prepared transactions by hand: a heuristic decision.\n"
     "GID must be one of ours (twopc_<coordinator id>_<16 hex>_<n>); other\n"
     "applications' prepared transactions are for their owners to settle.\n"
     "\n"
     "The decision log is the truth. If it does not say commit — no COMMIT record\n"
     "(presumed abort), or an earlier heuristic abort — committing would commit\n"
     "a transaction whose other branches are being, or have been, rolled back,\n"
     "and whose client was told it did not happen: it is refused, with the\n"
     "reason, unless --force is given.\n"
     "\n"
     "Order: it finds the participant holding GID (searching every participant's\n"
     "database), writes a HEURISTIC record (transaction, commit, participant,\n"
     "GID) and fdatasyncs it, then runs COMMIT PREPARED. The heuristic decision\n"
     "governs the whole transaction: resolve, twopcd's recovery and its sweeper\n"
     "then commit every other branch still prepared. It lists them.\n"
     "\n"
     "Refused while twopcd runs (it needs the decision log's lock).\n"
     "\n"
     "Options:\n"
     "  --force      decide against the decision log (printed loudly, and\n"
     "               recorded in the HEURISTIC record)\n"
     "  -h, --help   show this help\n"
     "\n"
     "Exit status:\n"
     "  0  recorded and carried out\n"
     "  1  not carried out: GID is not prepared on any reachable participant, or\n"
     "     COMMIT PREPARED failed (the record stands; resolve finishes it)\n"
     "  2  refused (not ours; contradicts the log without --force; twopcd\n"
     "     running) or error; nothing changed\n"},
    {CMD_ABORT, "abort", "twopc-recover -c FILE abort GID [--force]",
     "Rolls back one of our prepared transactions by hand: a heuristic decision.\n"
     "GID must be one of ours (twopc_<coordinator id>_<16 hex>_<n>).\n"
     "\n"
     "If the decision log says commit — a COMMIT record (the client may have been\n"
     "told \"committed\", other branches may already be committed) or an earlier\n"
     "heuristic commit — rolling back breaks atomicity: it is refused, with the\n"
     "reason, unless --force is given.\n"
     "\n"
     "Order: it finds the participant holding GID, writes a HEURISTIC record\n"
     "(transaction, abort, participant, GID) and fdatasyncs it, then runs\n"
     "ROLLBACK PREPARED. The heuristic decision governs the whole transaction:\n"
     "resolve, twopcd's recovery and its sweeper then roll back every other\n"
     "branch still prepared.\n"
     "\n"
     "Refused while twopcd runs (it needs the decision log's lock).\n"
     "\n"
     "Options:\n"
     "  --force      decide against the decision log (printed loudly, and\n"
     "               recorded in the HEURISTIC record)\n"
     "  -h, --help   show this help\n"
     "\n"
     "Exit status:\n"
     "  0  recorded and carried out\n"
     "  1  not carried out: GID is not prepared on any reachable participant, or\n"
     "     ROLLBACK PREPARED failed (the record stands; resolve finishes it)\n"
     "  2  refused (not ours; contradicts the log without --force; twopcd\n"
     "     running) or error; nothing changed\n"},
    {CMD_CHECK_LOG, "check-log", "twopc-recover -c FILE check-log [--fix] [--verbose]",
     "Verifies every record of every segment of the decision log (length,\n"
     "CRC32C, payload) without changing anything, and prints per segment its\n"
     "size and records by type (COMMIT, DONE, HEURISTIC), then how many decided\n"
     "transactions still wait for their DONE record.\n"
     "\n"
     "A bad frame is reported with its file, offset and reason, and classified by\n"
     "the rule twopcd's replay uses:\n"
     "\n"
     "  TORN TAIL  in the newest segment, a bad frame with no valid frame after\n"
     "             it: a write cut short by a crash. No acknowledged decision is in\n"
     "             it. twopcd truncates it at its next start; --fix cuts it now.\n"
     "  DAMAGE     anything else: a bad frame followed by valid ones, or in an\n"
     "             older segment. twopcd refuses to start. Never truncated: the\n"
     "             records after it are acknowledged decisions. See\n"
     "             docs/OPERATIONS.md, \"A damaged decision log\".\n"
     "\n"
     "While twopcd runs, an incomplete record at the very end of the newest\n"
     "segment is most likely being written, and is not counted as a problem.\n"
     "\n"
     "Options:\n"
     "  --fix          truncate a torn tail: takes the log's lock (refused while\n"
     "                 twopcd runs), checks again, prints the file, offset and\n"
     "                 byte count it cuts, then ftruncate + fdatasync. Refuses to\n"
     "                 cut anything while the log has damage.\n"
     "  -v, --verbose  also list every readable record (offset, type, txn id,\n"
     "                 time, participants, heuristic GID)\n"
     "  -h, --help     show this help\n"
     "\n"
     "Exit status:\n"
     "  0  the log is clean, or --fix cut a torn tail and it is now clean\n"
     "  1  problems found (a torn tail without --fix, or damage)\n"
     "  2  error: the log directory or a segment cannot be read, or --fix while\n"
     "     the log is locked\n"},
};

static const CommandDef *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static void command_help(const CommandDef *c, FILE *out)
{
	fprintf(out, "Usage: %s\n\n%s", c->synopsis, c->help);
}

/* The option getopt just rejected, as typed. */
static const char *bad_option(char **argv, int ind)
{
	static char buf[3];
	if (optopt != 0) {
		snprintf(buf, sizeof(buf), "-%c", optopt);
		return buf;
	}
	return argv[ind - 1];
}

static int usage_error(const char *fmt, const char *arg, const CommandDef *c)
{
	fprintf(stderr, "twopc-recover: ");
	fprintf(stderr, fmt, arg);
	if (c != NULL)
		fprintf(stderr, "\nUsage: %s (see 'twopc-recover %s --help')\n", c->synopsis, c->name);
	else
		fprintf(stderr, "\nSee 'twopc-recover --help'.\n");
	return RECOVER_EXIT_ERROR;
}

int main(int argc, char **argv)
{
	static const struct option global_opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	static const struct option cmd_opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
	    {"json", no_argument, NULL, 'j'},         {"dry-run", no_argument, NULL, 'n'},
	    {"force", no_argument, NULL, 'f'},        {"fix", no_argument, NULL, 'x'},
	    {"verbose", no_argument, NULL, 'v'},      {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL, *gid = NULL;
	const CommandDef *c;
	bool json = false, dry_run = false, force = false, fix = false, verbose = false;
	Config cfg;
	char err[1024];
	int opt, rc;

	opterr = 0;
	/* Global options stop at the command ("+"). */
	while ((opt = getopt_long(argc, argv, "+:c:hV", global_opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return RECOVER_EXIT_OK;
		case 'V':
			printf("twopc-recover %s\n", PACKAGE_VERSION);
			return RECOVER_EXIT_OK;
		case ':':
			return usage_error("option %s needs an argument", argv[optind - 1], NULL);
		default:
			return usage_error("unknown option '%s'", bad_option(argv, optind), NULL);
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return RECOVER_EXIT_ERROR;
	}
	if (strcmp(argv[optind], "help") == 0) {
		if (optind + 1 >= argc) {
			fputs(usage_text, stdout);
			return RECOVER_EXIT_OK;
		}
		c = find_command(argv[optind + 1]);
		if (c == NULL)
			return usage_error("no command '%s'", argv[optind + 1], NULL);
		command_help(c, stdout);
		return RECOVER_EXIT_OK;
	}
	c = find_command(argv[optind]);
	if (c == NULL)
		return usage_error("unknown command '%s'", argv[optind], NULL);

	/* The command's own options, which may come before or after its
	 * argument; -c is accepted here too. */
	int cargc = argc - optind;
	char **cargv = argv + optind;
	optind = 0; /* glibc: restart scanning (cargv[0] is the command) */
	while ((opt = getopt_long(cargc, cargv, ":c:hnv", cmd_opts, NULL)) != -1) {
		bool ok = true;
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			command_help(c, stdout);
			return RECOVER_EXIT_OK;
		case 'j':
			ok = c->cmd == CMD_STATUS;
			json = true;
			break;
		case 'n':
			ok = c->cmd == CMD_RESOLVE;
			dry_run = true;
			break;
		case 'f':
			ok = c->cmd == CMD_COMMIT || c->cmd == CMD_ABORT;
			force = true;
			break;
		case 'x':
			ok = c->cmd == CMD_CHECK_LOG;
			fix = true;
			break;
		case 'v':
			ok = c->cmd == CMD_CHECK_LOG;
			verbose = true;
			break;
		case ':':
			return usage_error("option %s needs an argument", cargv[optind - 1], c);
		default:
			return usage_error("unknown option '%s'", bad_option(cargv, optind), c);
		}
		if (!ok)
			return usage_error("option '%s' does not apply to this command", cargv[optind - 1], c);
	}
	if (c->cmd == CMD_COMMIT || c->cmd == CMD_ABORT) {
		if (optind >= cargc)
			return usage_error("%s: which GID? (twopc-recover status lists them)", c->name, c);
		gid = cargv[optind++];
	}
	if (optind < cargc)
		return usage_error("unexpected argument '%s'", cargv[optind], c);
	if (config_path == NULL)
		return usage_error("%s: no configuration file: use -c FILE (twopcd's own)", c->name, c);
	if (!config_load(config_path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "twopc-recover: %s\n", err);
		return RECOVER_EXIT_ERROR;
	}
	/* Participant names and GIDs are ASCII; ask for UTF-8 anyway. */
	setenv("PGCLIENTENCODING", "UTF8", 1);

	switch (c->cmd) {
	case CMD_STATUS:
		rc = recover_status(&cfg, json);
		break;
	case CMD_RESOLVE:
		rc = recover_resolve(&cfg, dry_run);
		break;
	case CMD_COMMIT:
	case CMD_ABORT:
		rc = recover_decide(&cfg, gid, c->cmd == CMD_COMMIT, force);
		break;
	case CMD_CHECK_LOG:
		rc = recover_check_log(&cfg, fix, verbose);
		break;
	default:
		rc = RECOVER_EXIT_ERROR;
		break;
	}
	config_free(&cfg);
	fflush(stdout);
	return rc;
}
