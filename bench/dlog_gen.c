/*
 * twopc-dloggen: writes a decision log of a given number of records, as
 * twopcd would have left it, for bench/measure-restart.sh to time twopcd's
 * start-up replay. The frames come from the project's own encoder
 * (coordinator/dlog_codec.c, dlog_encode), the segment files are named and
 * rotated like the log thread does it ("<16 hex seq>.seg" from 1, a new
 * segment when the next record would take the active one past
 * SEGMENT_BYTES), and every segment is fdatasync'ed.
 *
 * The records are 2-branch COMMITs (participants bank_a and bank_b, indexes
 * 0 and 1, as in bench/run) with increasing transaction ids, in one of two
 * shapes:
 *
 *   pairs    (default) COMMIT and DONE records as under a steady load of
 *            WINDOW transactions in flight: COMMIT n, then DONE n-WINDOW.
 *            The last WINDOW COMMITs have no DONE (a crash under load), and
 *            so have the first STUCK ones (a participant that was down: the
 *            reason old segments are still there to replay).
 *   commits  COMMIT records only, every one live: the worst case for replay
 *            (every record stays in the live table).
 *
 * With -k, every COMMIT carries an Idempotency-Key and a response of about
 * 150 bytes (keyed requests pin segments for idempotency_ttl_s; another way
 * a log grows to a million records).
 *
 *   twopc-dloggen [-n RECORDS] [-s SEGMENT_BYTES] [-m pairs|commits] [-w WINDOW] [-t STUCK] [-k] DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dlog_codec.h"
#include "util.h"

typedef struct Gen {
	const char *dir;
	int64_t seg_bytes;
	uint64_t seq; /* active segment */
	int fd;
	int64_t size; /* of the active segment */
	uint8_t *buf; /* frames not yet written */
	size_t nbuf, capbuf;
	uint64_t records, segments, bytes;
} Gen;

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "twopc-dloggen: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

static void flush_segment(Gen *g)
{
	if (g->fd < 0)
		return;
	if (!write_all(g->fd, g->buf, g->nbuf))
		die("write: %s", strerror(errno));
	if (fdatasync(g->fd) != 0)
		die("fdatasync: %s", strerror(errno));
	close(g->fd);
	g->fd = -1;
	g->nbuf = 0;
}

static void open_segment(Gen *g)
{
	char path[4096];
	flush_segment(g);
	g->seq++;
	snprintf(path, sizeof(path), "%s/%016llx.seg", g->dir, (unsigned long long)g->seq);
	g->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (g->fd < 0)
		die("cannot create %s", path);
	g->size = 0;
	g->segments++;
}

static void put(Gen *g, const DlogRecord *rec)
{
	size_t n = dlog_encoded_size(rec);
	/* The log thread's rule: rotate when the next write would take a
	 * non-empty segment past log_segment_bytes. */
	if (g->fd < 0 || (g->size > 0 && g->size + (int64_t)n > g->seg_bytes))
		open_segment(g);
	if (g->nbuf + n > g->capbuf) {
		g->capbuf = (g->nbuf + n) * 2;
		g->buf = xrealloc(g->buf, g->capbuf);
	}
	dlog_encode(rec, g->buf + g->nbuf);
	g->nbuf += n;
	g->size += (int64_t)n;
	g->bytes += n;
	g->records++;
	if (g->nbuf >= (1u << 20)) {
		if (!write_all(g->fd, g->buf, g->nbuf))
			die("write: %s", strerror(errno));
		g->nbuf = 0;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: twopc-dloggen [-n RECORDS] [-s SEGMENT_BYTES] [-m pairs|commits] [-w WINDOW] "
	                "[-t STUCK] [-k] DIR\n"
	                "  writes a decision log of RECORDS records (default 1000000) into DIR (new or empty);\n"
	                "  see the top of bench/dlog_gen.c\n");
	exit(2);
}

static int64_t num(const char *s, int64_t min, int64_t max)
{
	int64_t v;
	if (!parse_i64(s, min, max, &v))
		usage();
	return v;
}

int main(int argc, char **argv)
{
	int64_t nrecords = 1000000, window = 32, stuck = 1;
	bool commits_only = false, keyed = false;
	Gen g = {.seg_bytes = 16 * 1024 * 1024, .fd = -1};
	int opt;

	while ((opt = getopt(argc, argv, "n:s:m:w:t:k")) != -1) {
		switch (opt) {
		case 'n':
			nrecords = num(optarg, 1, 1000000000);
			break;
		case 's':
			g.seg_bytes = num(optarg, 4096, 1073741824);
			break;
		case 'm':
			if (strcmp(optarg, "pairs") == 0)
				commits_only = false;
			else if (strcmp(optarg, "commits") == 0)
				commits_only = true;
			else
				usage();
			break;
		case 'w':
			window = num(optarg, 0, 1000000);
			break;
		case 't':
			stuck = num(optarg, 0, 1000000);
			break;
		case 'k':
			keyed = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 1)
		usage();
	g.dir = argv[optind];
	if (mkdir(g.dir, 0700) != 0 && errno != EEXIST)
		die("cannot create %s", g.dir);

	DlogBranchRef branches[2] = {{.index = 0, .name = "bank_a"}, {.index = 1, .name = "bank_b"}};
	int64_t now = now_wall_ms();
	uint64_t first = (uint64_t)now * 1000 - (uint64_t)nrecords; /* ids like twopcd's: past the clock in us */
	static const char response[] = "{\"id\":\"0000000000000000\",\"status\":\"committed\",\"branches\":{\"bank_a\":"
	                               "[{\"rows_affected\":1}],\"bank_b\":[{\"rows_affected\":1}]}}";
	uint8_t fp[DLOG_IDEM_FP_LEN];
	memset(fp, 0xA5, sizeof(fp));

	uint64_t ncommit = 0, ndone = 0;
	while ((int64_t)g.records < nrecords) {
		/* pairs: COMMIT n, then DONE n-window (never for the stuck ones) */
		DlogRecord rec = {.type = DLOG_COMMIT,
		                  .txn_id = first + ncommit,
		                  .wall_ms = now,
		                  .nbranches = 2,
		                  .branches = branches};
		char key[64];
		if (keyed) {
			snprintf(key, sizeof(key), "bench-key-%" PRIu64, ncommit);
			rec.idem = dlog_idem_new(key, fp, 200, response, (uint32_t)strlen(response));
		}
		put(&g, &rec);
		if (rec.idem != NULL)
			dlog_idem_free(rec.idem);
		ncommit++;
		if (commits_only || (int64_t)g.records >= nrecords)
			continue;
		if ((int64_t)ncommit > window) {
			uint64_t done_n = ncommit - 1 - (uint64_t)window;
			if ((int64_t)done_n >= stuck) {
				DlogRecord done = {.type = DLOG_DONE, .txn_id = first + done_n};
				put(&g, &done);
				ndone++;
			}
		}
	}
	flush_segment(&g);
	int dfd = open(g.dir, O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	printf("records=%" PRIu64 " commits=%" PRIu64 " dones=%" PRIu64 " live=%" PRIu64 " segments=%" PRIu64
	       " bytes=%" PRIu64 " segment_bytes=%lld keyed=%s\n",
	       g.records, ncommit, ndone, ncommit - ndone, g.segments, g.bytes, (long long)g.seg_bytes,
	       keyed ? "yes" : "no");
	free(g.buf);
	return 0;
}
