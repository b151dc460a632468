/*
 * recover_scan: the participant scan and the log openers behind
 * twopc-recover's commands. Blocking by design: this is a command-line
 * tool, not the event loop.
 */
#include "recover_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gid.h"

static void xacts_push(RecScan *s, size_t *cap, const RecXact *x)
{
	if (s->nxacts == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		s->xacts = xrealloc(s->xacts, *cap * sizeof(RecXact));
	}
	s->xacts[s->nxacts++] = *x;
}

/* Lists one participant's prepared transactions: ours first, then others'. */
static bool scan_part(RecScan *s, size_t *cap, size_t p, const Config *cfg, const Dlog *dlog)
{
	RecPart *rp = &s->parts[p];
	char like[128];

	gid_like_pattern(like, sizeof(like), cfg->coord_id);
	for (int pass = 0; pass < 2; pass++) {
		PreparedXact *xs = NULL;
		size_t n = 0;

		if (!participant_list_prepared(rp->conn, like, pass == 0, &xs, &n, rp->error, sizeof(rp->error)))
			return false;
		for (size_t i = 0; i < n; i++) {
			RecXact x;

			memset(&x, 0, sizeof(x));
			x.px = xs[i];
			x.part = p;
			x.action = XACT_LEAVE;
			if (pass == 0)
				x.action = recovery_classify(cfg, dlog, xs[i].gid, &x.txn, &x.decision);
			/* Matched our LIKE pattern but not our exact shape: not ours. */
			x.ours = x.action != XACT_LEAVE;
			if (x.action == XACT_COMMIT)
				s->commit++;
			else if (x.action == XACT_ROLLBACK)
				s->rollback++;
			else
				s->leave++;
			xacts_push(s, cap, &x);
		}
		free(xs);
	}
	return true;
}

void recscan_run(RecScan *s, const Config *cfg, const Dlog *dlog, bool keep_conns)
{
	size_t cap = 0;

	memset(s, 0, sizeof(*s));
	s->nparts = cfg->nparticipants;
	s->parts = xcalloc(s->nparts ? s->nparts : 1, sizeof(RecPart));
	for (size_t p = 0; p < s->nparts; p++) {
		RecPart *rp = &s->parts[p];
		size_t first = s->nxacts;

		rp->pc = &cfg->participants[p];
		rp->conn = participant_connect(rp->pc, 5, rp->error, sizeof(rp->error));
		if (rp->conn != NULL) {
			const char *host = PQhost(rp->conn);
			strlcpy_s(rp->database, PQdb(rp->conn), sizeof(rp->database));
			snprintf(rp->server, sizeof(rp->server), "%s:%s", host && host[0] == '/' ? "socket" : host,
			         PQport(rp->conn));
			rp->reachable = true;
			if (keep_conns) {
				/* About to act: the dead daemon's sessions could still
				 * PREPARE after this scan (blocked on a lock until we
				 * commit what holds it). End them first. */
				char appname[64];
				int ended = 0;
				participant_pool_appname(appname, sizeof(appname), cfg->coord_id);
				rp->reachable = participant_end_orphan_sessions(rp->conn, appname, 5000, &ended,
				                                                rp->error, sizeof(rp->error));
			}
			if (rp->reachable)
				rp->reachable = scan_part(s, &cap, p, cfg, dlog);
		}
		if (!rp->reachable) {
			/* Forget a half listing: it would read as "nothing prepared". */
			for (size_t i = first; i < s->nxacts; i++) {
				if (s->xacts[i].action == XACT_COMMIT)
					s->commit--;
				else if (s->xacts[i].action == XACT_ROLLBACK)
					s->rollback--;
				else
					s->leave--;
			}
			s->nxacts = first;
			s->unreachable++;
		}
		if (rp->conn != NULL && (!keep_conns || !rp->reachable)) {
			PQfinish(rp->conn);
			rp->conn = NULL;
		}
	}
}

void recscan_free(RecScan *s)
{
	for (size_t p = 0; p < s->nparts; p++) {
		if (s->parts[p].conn != NULL)
			PQfinish(s->parts[p].conn);
	}
	free(s->parts);
	free(s->xacts);
	memset(s, 0, sizeof(*s));
}

bool recscan_txn_prepared(const RecScan *s, uint64_t txn)
{
	for (size_t i = 0; i < s->nxacts; i++) {
		if (s->xacts[i].ours && s->xacts[i].txn == txn)
			return true;
	}
	return false;
}

void recover_describe_holder(long pid, char *buf, size_t len)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = pid > 0 ? fopen(path, "r") : NULL;
	if (f != NULL) {
		if (fgets(comm, sizeof(comm), f) == NULL)
			comm[0] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	if (pid <= 0)
		snprintf(buf, len, "another process (pid unknown)");
	else if (strcmp(comm, "twopcd") == 0)
		snprintf(buf, len, "twopcd (pid %ld)", pid);
	else if (strcmp(comm, "twopc-recover") == 0)
		snprintf(buf, len, "another twopc-recover (pid %ld)", pid);
	else
		snprintf(buf, len, "a process (pid %ld%s%s)", pid, comm[0] ? ", " : "", comm);
}

bool recover_read_file(const char *path, uint8_t **buf, size_t *len, int *errnum)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t off = 0;

	*buf = NULL;
	*len = 0;
	*errnum = 0;
	if (fd < 0 || fstat(fd, &st) != 0) {
		*errnum = errno;
		if (fd >= 0)
			close(fd);
		return false;
	}
	*buf = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, *buf + off, (size_t)st.st_size - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*errnum = errno;
			close(fd);
			free(*buf);
			*buf = NULL;
			return false;
		}
		if (r == 0)
			break; /* shrank while we read */
		off += (size_t)r;
	}
	close(fd);
	*len = off;
	return true;
}

bool recover_open_log_readonly(const Config *cfg, Dlog **out, DlogLoadStats *st, long *holder, char *err, size_t errlen)
{
	struct stat sb;

	*out = NULL;
	*holder = 0;
	if (stat(cfg->log_dir, &sb) != 0) {
		if (errno == ENOENT)
			return errf(err, errlen,
			            "decision log directory %s does not exist (log_dir in %s): has twopcd ever run "
			            "with this configuration?",
			            cfg->log_dir, cfg->path);
		return errf(err, errlen, "decision log directory %s: %s", cfg->log_dir, strerror(errno));
	}
	for (int attempt = 0;; attempt++) {
		bool locked = dlog_is_locked(cfg->log_dir, holder);
		/* Same rule as replay: a bad frame with a valid one after it is
		 * damage and fails the open; only a torn tail is passed over. */
		if (dlog_open_readonly(cfg->log_dir, out, st, err, errlen))
			return true;
		/* A running twopcd removes finished segments: a file listed a
		 * moment ago may be gone. Look again. */
		if (!locked || attempt == 4)
			return false;
		usleep(100 * 1000);
	}
}

bool recover_open_log_locked(const Config *cfg, Dlog **out, DlogLoadStats *st, long *holder, char *err, size_t errlen)
{
	*out = NULL;
	if (dlog_is_locked(cfg->log_dir, holder)) {
		char who[128];
		recover_describe_holder(*holder, who, sizeof(who));
		return errf(err, errlen, "the decision log %s is locked by %s", cfg->log_dir, who);
	}
	/* The daemon's ttl: a tool must not forget keys (and remove their
	 * segments) that twopcd would still remember. */
	if (dlog_open(cfg->log_dir, cfg->log_segment_bytes, cfg->idempotency_ttl_s * 1000, out, st, err, errlen))
		return true;
	/* Lost a race with a process that took the lock meanwhile. */
	if (strstr(err, "locked") != NULL && (!dlog_is_locked(cfg->log_dir, holder) || *holder <= 0))
		*holder = -1;
	return false;
}

void recover_format_age(char *buf, size_t len, int64_t s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
	else
		snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}
