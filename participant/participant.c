/*
 * participant: blocking helpers (startup, recovery, tools).
 */
#include "participant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gid.h"

static void first_line(char *buf, size_t len, const char *msg)
{
	snprintf(buf, len, "%.*s", (int)strcspn(msg, "\n"), msg);
}

PGconn *participant_connect(const ParticipantConfig *pc, int timeout_s, char *err, size_t errlen)
{
	char tmo[16];
	/* Our defaults first: the conninfo's own values override them. */
	const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
	/* twopcd or twopc-recover, as pg_stat_activity should show it. */
	const char *vals[] = {tmo, program_invocation_short_name, pc->conninfo, NULL};
	PGconn *c;
	char msg[256], target[256];

	snprintf(tmo, sizeof(tmo), "%d", timeout_s);
	c = PQconnectdbParams(keys, vals, 1);
	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		/* libpq's message names the server, not the database or role;
		 * the redacted conninfo adds them, without the password. */
		first_line(msg, sizeof(msg), c ? PQerrorMessage(c) : "out of memory");
		config_redact_conninfo(pc->conninfo, target, sizeof(target));
		errf(err, errlen, "cannot connect (%s): %s", target, msg);
		PQfinish(c);
		return NULL;
	}
	return c;
}

bool participant_check(const ParticipantConfig *pc, char *info, size_t infolen, char *err, size_t errlen)
{
	PGconn *c = participant_connect(pc, 5, err, errlen);
	PGresult *r = NULL;
	bool ok = false;
	char msg[256];

	if (c == NULL)
		return false;
	r = PQexec(c, "SELECT current_setting('max_prepared_transactions')::int, current_setting('server_version'), "
	              "current_database(), current_user");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		first_line(msg, sizeof(msg), PQerrorMessage(c));
		errf(err, errlen, "query failed: %s", msg);
		goto done;
	}
	int mpt = atoi(PQgetvalue(r, 0, 0));
	if (mpt <= 0) {
		errf(err, errlen,
		     "max_prepared_transactions is %d on %s:%s (database %s): twopc needs it above 0 "
		     "(set it in postgresql.conf, e.g. to max_connections, and restart the server)",
		     mpt, PQhost(c), PQport(c), PQgetvalue(r, 0, 2));
		goto done;
	}
	if (PQserverVersion(c) < 140000) {
		/* client_connection_check_interval (twopcd ends a branch at its
		 * deadline by closing the connection) and pipeline mode. */
		errf(err, errlen, "PostgreSQL %s on %s:%s is too old: twopc needs 14 or later", PQgetvalue(r, 0, 1),
		     PQhost(c), PQport(c));
		goto done;
	}
	snprintf(info, infolen, "PostgreSQL %s at %s:%s, database %s as %s, max_prepared_transactions=%d",
	         PQgetvalue(r, 0, 1), PQhost(c), PQport(c), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3), mpt);
	ok = true;
done:
	PQclear(r);
	PQfinish(c);
	return ok;
}

bool participant_list_prepared(PGconn *c, const char *like, bool ours, PreparedXact **out, size_t *n, char *err,
                               size_t errlen)
{
	const char *params[1] = {like};
	PGresult *r;
	char msg[256];

	*out = NULL;
	*n = 0;
	/* pg_prepared_xacts is server-wide: only this database's rows are ours
	 * to act on. */
	r = PQexecParams(c,
	                 ours ? "SELECT gid, owner, database, extract(epoch FROM now() - prepared)::bigint, "
	                        "age(transaction)::bigint FROM pg_prepared_xacts "
	                        "WHERE database = current_database() AND gid LIKE $1 ORDER BY prepared"
	                      : "SELECT gid, owner, database, extract(epoch FROM now() - prepared)::bigint, "
	                        "age(transaction)::bigint FROM pg_prepared_xacts "
	                        "WHERE database = current_database() AND gid NOT LIKE $1 ORDER BY prepared",
	                 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		first_line(msg, sizeof(msg), PQerrorMessage(c));
		PQclear(r);
		return errf(err, errlen, "cannot list prepared transactions: %s", msg);
	}
	*n = (size_t)PQntuples(r);
	*out = xcalloc(*n ? *n : 1, sizeof(PreparedXact));
	for (size_t i = 0; i < *n; i++) {
		PreparedXact *x = &(*out)[i];
		strlcpy_s(x->gid, PQgetvalue(r, (int)i, 0), sizeof(x->gid));
		strlcpy_s(x->owner, PQgetvalue(r, (int)i, 1), sizeof(x->owner));
		strlcpy_s(x->database, PQgetvalue(r, (int)i, 2), sizeof(x->database));
		x->age_s = strtoll(PQgetvalue(r, (int)i, 3), NULL, 10);
		x->xid_age = strtoll(PQgetvalue(r, (int)i, 4), NULL, 10);
	}
	PQclear(r);
	return true;
}

bool participant_finish_prepared(PGconn *c, const char *gid, bool commit, bool *gone, char *err, size_t errlen)
{
	char sql[GID_MAX + 32];
	PGresult *r;
	bool ok;
	char msg[256];

	*gone = false;
	snprintf(sql, sizeof(sql), "%s PREPARED '%s'", commit ? "COMMIT" : "ROLLBACK", gid);
	r = PQexec(c, sql);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok) {
		const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (st && strcmp(st, "42704") == 0) {
			*gone = true;
			ok = true;
		} else {
			first_line(msg, sizeof(msg), PQerrorMessage(c));
			errf(err, errlen, "%s PREPARED '%s' failed: %s", commit ? "COMMIT" : "ROLLBACK", gid, msg);
		}
	}
	PQclear(r);
	return ok;
}

void participant_pool_appname(char *buf, size_t len, const char *coord_id)
{
	snprintf(buf, len, "twopcd:%s", coord_id);
}

bool participant_end_orphan_sessions(PGconn *c, const char *appname, int wait_ms, int *ended, char *err, size_t errlen)
{
	const char *params[1] = {appname};
	char msg[256];
	PGresult *r;

	*ended = 0;
	r = PQexecParams(c,
	                 "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
	                 "WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()",
	                 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		first_line(msg, sizeof(msg), PQerrorMessage(c));
		PQclear(r);
		return errf(err, errlen, "cannot end the old sessions of %s: %s", appname, msg);
	}
	*ended = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	for (int waited = 0; *ended > 0 && waited < wait_ms; waited += 20) {
		r = PQexecParams(c,
		                 "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
		                 "AND datname = current_database() AND pid <> pg_backend_pid()",
		                 1, NULL, params, NULL, NULL, 0);
		bool gone = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) == 0;
		PQclear(r);
		if (gone)
			return true;
		usleep(20 * 1000);
	}
	if (*ended > 0)
		return errf(err, errlen, "%d old sessions of %s are still there after %d ms", *ended, appname, wait_ms);
	return true;
}
