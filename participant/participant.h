/*
 * participant: blocking libpq helpers for the times when blocking is right —
 * before the event loop runs (startup checks and recovery) and in the
 * command-line tools. The daemon's live traffic goes through pool/pg_conn.
 */
#ifndef TWOPC_PARTICIPANT_H
#define TWOPC_PARTICIPANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "util.h"

typedef struct PreparedXact {
	char gid[GID_MAX + 1];
	char owner[64];
	char database[64];
	int64_t age_s;   /* seconds since PREPARE */
	int64_t xid_age; /* how far it holds back the xmin horizon */
} PreparedXact;

/* Connects with a timeout; the error names the target by
 * config_redact_conninfo(), never by the conninfo itself. */
PGconn *participant_connect(const ParticipantConfig *pc, int timeout_s, char *err, size_t errlen);

/* Connects and checks max_prepared_transactions > 0. On success `info`
 * says what was found; on failure err says why. */
bool participant_check(const ParticipantConfig *pc, char *info, size_t infolen, char *err, size_t errlen) WARN_UNUSED;

/* Prepared transactions in this connection's database: ours (gid LIKE
 * pattern) or, with ours=false, everyone else's. */
bool participant_list_prepared(PGconn *c, const char *like, bool ours, PreparedXact **out, size_t *n, char *err,
                               size_t errlen) WARN_UNUSED;

/* The application_name of a coordinator's pool connections: "twopcd:<id>". */
void participant_pool_appname(char *buf, size_t len, const char *coord_id);

/* Ends the sessions a dead coordinator left behind in this database
 * (application_name = appname), and waits up to wait_ms for them to go. A
 * dead daemon's session can still be working through a pipeline — blocked
 * on a row lock, say — and run its PREPARE TRANSACTION after recovery has
 * looked: ended now, it rolls back instead. Only call this while no live
 * daemon of this coordinator can exist (the log lock is held). *ended is
 * how many there were. */
bool participant_end_orphan_sessions(PGconn *c, const char *appname, int wait_ms, int *ended, char *err,
                                     size_t errlen) WARN_UNUSED;

/* COMMIT or ROLLBACK PREPARED. *gone is set when it did not exist (42704). */
bool participant_finish_prepared(PGconn *c, const char *gid, bool commit, bool *gone, char *err,
                                 size_t errlen) WARN_UNUSED;

#endif
