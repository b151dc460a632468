/*
 * check_config: unit tests for coordinator/config.c, twopcd's INI loader.
 *
 * The config decides which databases take part in two-phase commit and
 * under which coordinator id (part of every GID), so a silently ignored or
 * misread line is dangerous: a typo'd key must not fall back to a default,
 * a participant must not vanish, and every error must point at the file,
 * the line and the key so an operator can fix it at once. These tests load
 * good files (checking every default and every key), then one broken file
 * per rule and assert the message names FILE:LINE and the key — and never
 * echoes a password from a conninfo.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define NAME         "t.ini"
#define PART_OK_TEXT "[participant bank_a]\nconninfo = dbname=bank\n"

static const char MINIMAL[] = "[coordinator]\n"
                              "id = c1\n"
                              "log_dir = /var/lib/twopc/log\n"
                              "\n"
                              "[participant bank_a]\n"
                              "conninfo = host=127.0.0.1 port=5432 dbname=bank\n";

/* Asserts that err contains sub. */
#define ck_assert_contains(err, sub)                                                                                   \
	ck_assert_msg(strstr((err), (sub)) != NULL, "error message \"%s\" does not contain \"%s\"", (err), (sub))

/* Loads text that must fail; returns the message in err. */
static void load_bad(const char *text, char *err, size_t errlen)
{
	Config cfg;
	memset(err, 0, errlen);
	bool ok = config_load_string(text, NAME, &cfg, err, errlen);
	if (ok)
		config_free(&cfg);
	ck_assert_msg(!ok, "config was accepted but must be rejected:\n%s", text);
	ck_assert_msg(err[0] != '\0', "rejection without a message");
	/* Every message starts with the file name. */
	ck_assert_msg(strncmp(err, NAME ":", strlen(NAME ":")) == 0, "message \"%s\" does not start with \"%s:\"", err,
	              NAME);
}

/* Loads text that must fail with all of the given substrings in the error. */
static void expect_error(const char *text, const char *s1, const char *s2, const char *s3)
{
	char err[1024];
	load_bad(text, err, sizeof(err));
	ck_assert_contains(err, s1);
	if (s2)
		ck_assert_contains(err, s2);
	if (s3)
		ck_assert_contains(err, s3);
}

static void load_good(const char *text, Config *cfg)
{
	char err[1024] = "";
	ck_assert_msg(config_load_string(text, NAME, cfg, err, sizeof(err)), "config rejected: %s\n%s", err, text);
}

/* ---- good files ------------------------------------------------------------ */

START_TEST(test_minimal_defaults)
{
	Config cfg;

	load_good(MINIMAL, &cfg);
	ck_assert_str_eq(cfg.path, NAME);
	ck_assert_str_eq(cfg.coord_id, "c1");
	ck_assert_str_eq(cfg.listen_host, "127.0.0.1");
	ck_assert_int_eq(cfg.listen_port, 8432);
	ck_assert_str_eq(cfg.log_dir, "/var/lib/twopc/log");
	ck_assert_int_eq(cfg.default_timeout_ms, 5000);
	ck_assert_int_eq(cfg.max_timeout_ms, 60000);
	ck_assert_int_eq(cfg.lock_timeout_ms, 1000);
	ck_assert_int_eq(cfg.max_body_bytes, 1048576);
	ck_assert_int_eq(cfg.max_in_flight, 10000);
	ck_assert_int_eq(cfg.log_segment_bytes, 16777216);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);
	ck_assert_uint_eq(cfg.nparticipants, 1);
	ck_assert_str_eq(cfg.participants[0].name, "bank_a");
	ck_assert_str_eq(cfg.participants[0].conninfo, "host=127.0.0.1 port=5432 dbname=bank");
	ck_assert_int_eq(cfg.participants[0].pool_size, 8);
	ck_assert_uint_eq(cfg.participants[0].index, 0);
	ck_assert_int_eq(cfg.participants[0].line, 5);
	ck_assert_ptr_eq(config_find_participant(&cfg, "bank_a"), &cfg.participants[0]);
	ck_assert_ptr_null(config_find_participant(&cfg, "bank_b"));
	ck_assert_ptr_null(config_find_participant(&cfg, "bank"));
	config_free(&cfg);
}
END_TEST

START_TEST(test_full_file_every_key)
{
	static const char text[] = "; twopcd test configuration\n"
	                           "# both comment styles at the start of a line\n"
	                           "[coordinator]\n"
	                           "id = Node_7\n"
	                           "listen = [::1]:9001\n"
	                           "log_dir = /srv/twopc/log\n"
	                           "default_timeout_ms = 2500\n"
	                           "max_timeout_ms = 30000\n"
	                           "lock_timeout_ms = 0\n"
	                           "max_body_bytes = 4096\n"
	                           "max_in_flight = 17\n"
	                           "log_segment_bytes = 4096\n"
	                           "log_level = debug\n"
	                           "\n"
	                           "[participant bank_a]\n"
	                           "conninfo = host=db1 dbname=bank user=app\n"
	                           "pool_size = 1\n"
	                           "\n"
	                           "[participant ledger-2]\n"
	                           "pool_size = 1000\n"
	                           "conninfo = postgresql://app@db2:5433/ledger?sslmode=disable\n"
	                           "[participant zeta]\n"
	                           "conninfo = dbname=z\n";
	Config cfg;

	load_good(text, &cfg);
	ck_assert_str_eq(cfg.coord_id, "Node_7");
	ck_assert_str_eq(cfg.listen_host, "::1");
	ck_assert_int_eq(cfg.listen_port, 9001);
	ck_assert_str_eq(cfg.log_dir, "/srv/twopc/log");
	ck_assert_int_eq(cfg.default_timeout_ms, 2500);
	ck_assert_int_eq(cfg.max_timeout_ms, 30000);
	ck_assert_int_eq(cfg.lock_timeout_ms, 0);
	ck_assert_int_eq(cfg.max_body_bytes, 4096);
	ck_assert_int_eq(cfg.max_in_flight, 17);
	ck_assert_int_eq(cfg.log_segment_bytes, 4096);
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	ck_assert_uint_eq(cfg.nparticipants, 3);

	const ParticipantConfig *a = config_find_participant(&cfg, "bank_a");
	const ParticipantConfig *l = config_find_participant(&cfg, "ledger-2");
	const ParticipantConfig *z = config_find_participant(&cfg, "zeta");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(l);
	ck_assert_ptr_nonnull(z);
	/* The index is the position in the file: it is part of every GID. */
	ck_assert_uint_eq(a->index, 0);
	ck_assert_uint_eq(l->index, 1);
	ck_assert_uint_eq(z->index, 2);
	ck_assert_int_eq(a->pool_size, 1);
	ck_assert_int_eq(l->pool_size, 1000);
	ck_assert_int_eq(z->pool_size, 8);
	ck_assert_str_eq(a->conninfo, "host=db1 dbname=bank user=app");
	ck_assert_str_eq(l->conninfo, "postgresql://app@db2:5433/ledger?sslmode=disable");
	ck_assert_int_eq(a->line, 15);
	ck_assert_int_eq(l->line, 19);
	ck_assert_int_eq(z->line, 22);
	config_free(&cfg);
}
END_TEST

START_TEST(test_inline_comments_and_layout)
{
	static const char text[] = "[coordinator]   ; the coordinator\r\n"
	                           "id = c2 ; our id\r\n"
	                           "listen = 0.0.0.0:18432   ; all interfaces\r\n"
	                           "log_dir = /tmp/twopc log ; a path with a space\r\n"
	                           "log_level = warning;not a comment without a space before it\r\n"
	                           "\r\n"
	                           "[participant p1] ; first\r\n"
	                           "conninfo = dbname=x ; db\r\n"
	                           "pool_size = 3 ; small\r\n";
	Config cfg;
	char err[512];

	/* "warning;not..." is one value (inline comments need a space before ';'),
	 * so this file must fail on log_level: prove that, then fix the line. */
	ck_assert(!config_load_string(text, NAME, &cfg, err, sizeof(err)));
	ck_assert_contains(err, NAME ":5:");
	ck_assert_contains(err, "log_level");

	char fixed[sizeof(text)];
	strcpy(fixed, text);
	char *p = strstr(fixed, "warning;");
	ck_assert_ptr_nonnull(p);
	p[7] = ' ';
	p[8] = ';';
	load_good(fixed, &cfg);
	ck_assert_str_eq(cfg.coord_id, "c2");
	ck_assert_str_eq(cfg.listen_host, "0.0.0.0");
	ck_assert_int_eq(cfg.listen_port, 18432);
	ck_assert_str_eq(cfg.log_dir, "/tmp/twopc log");
	ck_assert_int_eq(cfg.log_level, LOG_WARNING);
	ck_assert_uint_eq(cfg.nparticipants, 1);
	ck_assert_str_eq(cfg.participants[0].name, "p1");
	ck_assert_str_eq(cfg.participants[0].conninfo, "dbname=x");
	ck_assert_int_eq(cfg.participants[0].pool_size, 3);
	config_free(&cfg);
}
END_TEST

/* Lines longer than libinih's 200-byte line buffer (a conninfo with
 * certificate paths, a deep log_dir): the value must never be cut short
 * silently, and the error must name the line it is on — not a made-up
 * "syntax error" on a line that does not exist. Either the value loads
 * intact or the line is refused as too long. */
static void long_line(const char *key_line, int line, const char *want_value_part)
{
	char text[2048], err[1024] = "";
	Config cfg;

	snprintf(text, sizeof(text), "[coordinator]\nid = c1\n%s\n[participant a1]\nconninfo = dbname=bank\n",
	         key_line);
	if (config_load_string(text, NAME, &cfg, err, sizeof(err))) {
		bool intact = strstr(cfg.log_dir, want_value_part) != NULL;
		config_free(&cfg);
		ck_assert_msg(intact, "a %zu-character line was accepted but its value was cut", strlen(key_line));
	} else {
		char want[32];
		snprintf(want, sizeof(want), NAME ":%d:", line);
		ck_assert_contains(err, want);
		ck_assert_contains(err, "too long");
	}
}

START_TEST(test_long_values)
{
	char dir[400], kl[420];
	Config cfg;

	/* Comfortably inside the limit: intact. */
	memset(dir, 'd', 150);
	dir[0] = '/';
	dir[150] = '\0';
	snprintf(kl, sizeof(kl), "log_dir = %s", dir);
	char text[1024];
	snprintf(text, sizeof(text), "[coordinator]\nid = c1\n%s\n" PART_OK_TEXT, kl);
	load_good(text, &cfg);
	ck_assert_str_eq(cfg.log_dir, dir);
	config_free(&cfg);

	/* Around and past the limit: intact or refused, never cut. */
	for (size_t n = 180; n <= 320; n += 7) {
		memset(dir, 'd', n);
		dir[0] = '/';
		memcpy(dir + n - 4, "/end", 4);
		dir[n] = '\0';
		snprintf(kl, sizeof(kl), "log_dir = %s", dir);
		long_line(kl, 3, dir);
	}
	/* A long conninfo line in a participant section: its own line number. */
	char conn[1024], err[1024];
	memset(dir, 'a', 260);
	dir[260] = '\0';
	snprintf(conn, sizeof(conn),
	         "[coordinator]\nid = c1\nlog_dir = /x\n[participant a1]\nconninfo = dbname=bank application_name=%s "
	         "sslmode=disable\n",
	         dir);
	if (config_load_string(conn, NAME, &cfg, err, sizeof(err))) {
		bool intact = strstr(cfg.participants[0].conninfo, "sslmode=disable") != NULL;
		config_free(&cfg);
		ck_assert_msg(intact, "long conninfo accepted but cut");
	} else {
		ck_assert_contains(err, NAME ":5:");
		ck_assert_contains(err, "too long");
		ck_assert_msg(strstr(err, "aaaaaaaaaa") == NULL, "the conninfo is echoed: %s", err);
	}
}
END_TEST

/* Indented keys are keys (not libinih continuation lines of the key
 * before them). */
START_TEST(test_indented_keys)
{
	Config cfg;
	load_good("[coordinator]\n  id = c1\n\tlog_dir = /x\n    listen = 127.0.0.1:9\n"
	          "  [participant p]\n    conninfo = dbname=a\n    pool_size = 2\n",
	          &cfg);
	ck_assert_str_eq(cfg.coord_id, "c1");
	ck_assert_str_eq(cfg.log_dir, "/x");
	ck_assert_int_eq(cfg.listen_port, 9);
	ck_assert_str_eq(cfg.participants[0].conninfo, "dbname=a");
	ck_assert_int_eq(cfg.participants[0].pool_size, 2);
	ck_assert_int_eq(cfg.participants[0].line, 5);
	config_free(&cfg);
}
END_TEST

/* ---- files on disk ------------------------------------------------------------ */

static void write_temp(char *path, size_t len, const char *text, size_t textlen)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(path, len, "%s/twopc-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	int fd = mkstemp(path);
	ck_assert_msg(fd >= 0, "mkstemp %s failed", path);
	ck_assert_int_eq(write(fd, text, textlen), (ssize_t)textlen);
	ck_assert_int_eq(close(fd), 0);
}

START_TEST(test_load_real_file)
{
	char path[512], err[1024] = "";
	Config cfg;

	write_temp(path, sizeof(path), MINIMAL, strlen(MINIMAL));
	bool ok = config_load(path, &cfg, err, sizeof(err));
	ck_assert_msg(ok, "config_load(%s): %s", path, err);
	ck_assert_str_eq(cfg.path, path);
	ck_assert_str_eq(cfg.coord_id, "c1");
	ck_assert_uint_eq(cfg.nparticipants, 1);
	ck_assert_str_eq(cfg.participants[0].conninfo, "host=127.0.0.1 port=5432 dbname=bank");
	config_free(&cfg);
	unlink(path);

	/* A bad file: the message names the real path and the line. */
	static const char bad[] =
	    "[coordinator]\nid = c1\nlog_dir = /x\npool_size = 3\n[participant a1]\nconninfo = dbname=a\n";
	write_temp(path, sizeof(path), bad, strlen(bad));
	ck_assert(!config_load(path, &cfg, err, sizeof(err)));
	char want[600];
	snprintf(want, sizeof(want), "%s:4:", path);
	ck_assert_contains(err, want);
	ck_assert_contains(err, "pool_size");
	unlink(path);

	/* A NUL byte makes it not a config file. */
	static const char nul[] = "[coordinator]\nid = c1\0\nlog_dir = /x\n";
	write_temp(path, sizeof(path), nul, sizeof(nul) - 1);
	ck_assert(!config_load(path, &cfg, err, sizeof(err)));
	ck_assert_contains(err, path);
	ck_assert_contains(err, "NUL");
	unlink(path);
}
END_TEST

START_TEST(test_missing_file)
{
	char path[512], err[1024] = "";
	Config cfg;
	const char *tmp = getenv("TMPDIR");

	snprintf(path, sizeof(path), "%s/twopc-no-such-dir-%ld/twopcd.ini", tmp && *tmp ? tmp : "/tmp", (long)getpid());
	ck_assert(!config_load(path, &cfg, err, sizeof(err)));
	ck_assert_contains(err, path);
	ck_assert_contains(err, "cannot open");
	ck_assert_contains(err, "No such file");
}
END_TEST

/* The example configuration that `make install` ships (etc/twopc.conf.example)
 * must load as it is, and say what it claims: loopback, the decision log in
 * the systemd unit's state directory, a token file under /etc/twopc, three
 * participants over verified TLS, no password in the file. (tests/man-check.sh
 * checks that its commented-out keys show the defaults.) */
START_TEST(test_example_config)
{
	const char *top = getenv("TWOPC_TOP_SRCDIR");
	char path[1024], err[1024] = "";
	Config cfg;
	bool has_passfile = false, has_cert = false;

	snprintf(path, sizeof(path), "%s/etc/twopc.conf.example", top && *top ? top : ".");
	ck_assert_msg(config_load(path, &cfg, err, sizeof(err)), "the example does not load: %s", err);
	ck_assert_str_eq(cfg.coord_id, "c1");
	ck_assert_str_eq(cfg.listen_host, "127.0.0.1");
	ck_assert_int_eq(cfg.listen_port, 8432);
	ck_assert_msg(strncmp(cfg.log_dir, "/var/lib/twopc/", 15) == 0, "log_dir %s is not under /var/lib/twopc",
	              cfg.log_dir);
	ck_assert_ptr_nonnull(cfg.auth_token_file);
	ck_assert_msg(strncmp(cfg.auth_token_file, "/etc/twopc/", 11) == 0,
	              "auth_token_file %s is not under /etc/twopc", cfg.auth_token_file);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);
	/* Keys left commented out take their defaults. */
	ck_assert_int_eq(cfg.default_timeout_ms, 5000);
	ck_assert_int_eq(cfg.max_connections, 16384);
	ck_assert_uint_eq(cfg.nparticipants, 3);
	for (size_t i = 0; i < cfg.nparticipants; i++) {
		const ParticipantConfig *pc = &cfg.participants[i];
		ck_assert_msg(strstr(pc->conninfo, "sslmode=verify-full") != NULL,
		              "participant %s: no sslmode=verify-full", pc->name);
		ck_assert_msg(strstr(pc->conninfo, "password") == NULL, "participant %s: a password in the file",
		              pc->name);
		ck_assert_int_eq(pc->pool_size, 8);
		has_passfile |= strstr(pc->conninfo, "passfile=") != NULL;
		has_cert |= strstr(pc->conninfo, "sslcert=") != NULL;
	}
	ck_assert_msg(has_passfile, "no participant uses a passfile");
	ck_assert_msg(has_cert, "no participant uses a client certificate");
	config_free(&cfg);
}
END_TEST

/* ---- broken files --------------------------------------------------------------- */

#define COORD_OK "[coordinator]\nid = c1\nlog_dir = /x\n"         /* lines 1-3 */
#define PART_OK  "[participant bank_a]\nconninfo = dbname=bank\n" /* 2 lines */

START_TEST(test_unknown_key)
{
	expect_error(COORD_OK "logdir = /y\n" PART_OK, NAME ":4:", "unknown key", "'logdir'");
	expect_error(COORD_OK PART_OK "poolsize = 3\n", NAME ":6:", "unknown key", "'poolsize'");
	/* A coordinator key in a participant section is unknown there. */
	expect_error(COORD_OK PART_OK "listen = 1.2.3.4:5\n", NAME ":6:", "'listen'", "participant bank_a");
}
END_TEST

START_TEST(test_unknown_section)
{
	/* Reported at the section header. */
	expect_error(COORD_OK "[coordinatr]\nid = c2\n" PART_OK, NAME ":4:", "unknown section", "coordinatr");
	expect_error(COORD_OK "[participants bank_a]\nconninfo = dbname=x\n", NAME ":4:", "unknown section",
	             "participants bank_a");
}
END_TEST

/* libinih only reports keys, so a section with no keys at all is invisible
 * to the handler. A participant declared but left empty must not silently
 * disappear (the operator believes it is configured), and an unknown
 * section must be an error even when empty ("unknown sections are errors,
 * not ignored"). */
START_TEST(test_empty_sections_are_not_ignored)
{
	expect_error(COORD_OK PART_OK "[participant bank_b]\n", "bank_b", "conninfo", NULL);
	expect_error(COORD_OK PART_OK "[participant bank_b]\n\n[participant bank_c]\nconninfo = dbname=c\n", "bank_b",
	             "conninfo", NULL);
	expect_error(COORD_OK "[bogus]\n" PART_OK, "bogus", NULL, NULL);
}
END_TEST

START_TEST(test_duplicate_key)
{
	expect_error(COORD_OK "id = c2\n" PART_OK, NAME ":4:", "'id'", "twice");
	expect_error(COORD_OK PART_OK "conninfo = dbname=other\n", NAME ":6:", "'conninfo'", "twice");
	/* A second [coordinator] section (which could repeat a key unseen). */
	expect_error(COORD_OK PART_OK "[coordinator]\nlog_dir = /z\n", NAME ":6:", "duplicate [coordinator]", "line 1");
}
END_TEST

START_TEST(test_duplicate_participant)
{
	expect_error(COORD_OK PART_OK "[participant bank_b]\nconninfo = dbname=b\n"
	                              "[participant bank_a]\npool_size = 2\n",
	             NAME ":8:", "duplicate section [participant bank_a]", "line 4");
}
END_TEST

/* The same participant header twice in a row: libinih reports both blocks
 * under the same section name, so they must not merge into one. */
START_TEST(test_duplicate_participant_adjacent)
{
	expect_error(COORD_OK PART_OK "[participant bank_a]\npool_size = 2\n",
	             NAME ":6:", "duplicate section [participant bank_a]", NULL);
	/* Even when the second one is empty. */
	expect_error(COORD_OK PART_OK "[participant bank_a]\n", NAME ":6:", "duplicate", "bank_a");
}
END_TEST

START_TEST(test_missing_required)
{
	expect_error("[coordinator]\nlog_dir = /x\n" PART_OK, NAME ":1:", "[coordinator]", "required key 'id'");
	expect_error("[coordinator]\nid = c1\n" PART_OK, NAME ":1:", "[coordinator]", "required key 'log_dir'");
	expect_error(PART_OK, "[coordinator]", "id", NULL);
	/* Missing conninfo: names the participant and the line of its header. */
	expect_error(COORD_OK "[participant bank_a]\nconninfo = dbname=a\n\n[participant bank_b]\npool_size = 2\n",
	             NAME ":7:", "participant bank_b", "required key 'conninfo'");
}
END_TEST

/* The "required key missing" message must carry the header's line for any
 * participant name — also names that occur inside the word "participant". */
START_TEST(test_missing_conninfo_line_any_name)
{
	static const char *const names[] = {"a", "t", "part", "ant", "icipant", "bank_b"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char text[512], want[64], err[1024];
		snprintf(text, sizeof(text), COORD_OK PART_OK "\n[participant %s]\npool_size = 2\n", names[i]);
		load_bad(text, err, sizeof(err));
		snprintf(want, sizeof(want), NAME ":7: [participant %s]", names[i]);
		ck_assert_contains(err, want);
		ck_assert_contains(err, "conninfo");
	}
}
END_TEST

START_TEST(test_bad_id)
{
	expect_error("[coordinator]\nid = c-1\nlog_dir = /x\n" PART_OK, NAME ":2:", "id", "'c-1'");
	expect_error("[coordinator]\nid = c 1\nlog_dir = /x\n" PART_OK, NAME ":2:", "id", "not a valid id");
	expect_error("[coordinator]\nid = abcdefghijklmnopqrstuvwxyz0123456\nlog_dir = /x\n" PART_OK, NAME ":2:", "id",
	             "1 to 32");
	expect_error("[coordinator]\nid =\nlog_dir = /x\n" PART_OK, NAME ":2:", "id", NULL);
	/* 32 characters is fine. */
	Config cfg;
	load_good("[coordinator]\nid = abcdefghijklmnopqrstuvwxyz012345\nlog_dir = /x\n" PART_OK, &cfg);
	ck_assert_str_eq(cfg.coord_id, "abcdefghijklmnopqrstuvwxyz012345");
	config_free(&cfg);
}
END_TEST

START_TEST(test_bad_listen)
{
	static const char *const bad[] = {"127.0.0.1",      "127.0.0.1:",      ":8432",
	                                  "127.0.0.1:0",    "127.0.0.1:70000", "127.0.0.1:-1",
	                                  "127.0.0.1:port", "127.0.0.1:80x",   "[]:80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), COORD_OK "listen = %s\n" PART_OK, bad[i]);
		expect_error(text, NAME ":4:", "listen", "host:port");
	}
	Config cfg;
	load_good(COORD_OK "listen = localhost:65535\n" PART_OK, &cfg);
	ck_assert_str_eq(cfg.listen_host, "localhost");
	ck_assert_int_eq(cfg.listen_port, 65535);
	config_free(&cfg);
}
END_TEST

START_TEST(test_bad_pool_size)
{
	static const char *const bad[] = {"0", "-1", "1001", "abc", "8x", "", "1e3", "99999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), COORD_OK PART_OK "pool_size = %s\n", bad[i]);
		expect_error(text, NAME ":6:", "pool_size", "integer from 1 to 1000");
	}
}
END_TEST

START_TEST(test_bad_integers)
{
	expect_error(COORD_OK "log_segment_bytes = 4095\n" PART_OK, NAME ":4:", "log_segment_bytes", "4096");
	expect_error(COORD_OK "default_timeout_ms = 0\n" PART_OK, NAME ":4:", "default_timeout_ms", NULL);
	expect_error(COORD_OK "max_body_bytes = 1k\n" PART_OK, NAME ":4:", "max_body_bytes", "'1k'");
	expect_error(COORD_OK "max_in_flight = -5\n" PART_OK, NAME ":4:", "max_in_flight", NULL);
}
END_TEST

START_TEST(test_bad_conninfo)
{
	char err[1024];

	expect_error(COORD_OK "[participant bank_a]\nconninfo = host=db1 user=app\n", NAME ":5:", "conninfo", "dbname");
	expect_error(COORD_OK "[participant bank_a]\nconninfo = host=db1 dbname=\n", NAME ":5:", "conninfo", "dbname");

	/* A syntax error must not echo the string: it may hold a password. */
	load_bad(COORD_OK "[participant bank_a]\nconninfo = host=x password=s3cret dbname\n", err, sizeof(err));
	ck_assert_contains(err, NAME ":5:");
	ck_assert_contains(err, "conninfo");
	ck_assert_contains(err, "bank_a");
	ck_assert_msg(strstr(err, "s3cret") == NULL, "password leaked into the message: %s", err);

	load_bad(COORD_OK "[participant bank_a]\nconninfo = host=x password='s3cret dbname=y\n", err, sizeof(err));
	ck_assert_contains(err, "conninfo");
	ck_assert_msg(strstr(err, "s3cret") == NULL, "password leaked into the message: %s", err);

	load_bad(COORD_OK "[participant bank_a]\nconninfo = postgresql://app:s3cret@[::1/bank\n", err, sizeof(err));
	ck_assert_contains(err, "conninfo");
	ck_assert_msg(strstr(err, "s3cret") == NULL, "password leaked into the message: %s", err);

	/* Nor when the only fault is the missing dbname. */
	load_bad(COORD_OK "[participant bank_a]\nconninfo = host=x password=s3cret\n", err, sizeof(err));
	ck_assert_contains(err, "dbname");
	ck_assert_msg(strstr(err, "s3cret") == NULL, "password leaked into the message: %s", err);
}
END_TEST

START_TEST(test_bad_participant_name)
{
	expect_error(COORD_OK "[participant bad!name]\nconninfo = dbname=a\n", NAME ":4:", "participant name",
	             "bad!name");
	expect_error(COORD_OK "[participant ]\nconninfo = dbname=a\n", NAME ":4:", NULL, NULL);
	expect_error(COORD_OK "[participant bank a]\nconninfo = dbname=a\n", NAME ":4:", "participant name", NULL);
}
END_TEST

/* Names may be up to PARTICIPANT_NAME_MAX (63) characters. libinih keeps
 * section names in a 50-byte buffer, so "[participant NAME]" with a NAME over
 * 37 characters reaches the handler cut short: the participant would get a
 * different name than the operator wrote (and requests naming it would be
 * refused as "unknown participant"). Must be kept intact, or refused. */
START_TEST(test_participant_name_lengths)
{
	char name63[64], name64[65], text[512], err[1024];
	Config cfg;

	memset(name63, 'n', 63);
	name63[63] = '\0';
	memcpy(name63, "long_", 5);
	memset(name64, 'n', 64);
	name64[64] = '\0';

	snprintf(text, sizeof(text), COORD_OK "[participant %s]\nconninfo = dbname=a\n", name63);
	bool ok = config_load_string(text, NAME, &cfg, err, sizeof(err));
	ck_assert_msg(ok, "a 63-character participant name was rejected: %s", err);
	ck_assert_msg(strcmp(cfg.participants[0].name, name63) == 0,
	              "participant name \"%s\" became \"%s\" (%zu characters)", name63, cfg.participants[0].name,
	              strlen(cfg.participants[0].name));
	ck_assert_ptr_nonnull(config_find_participant(&cfg, name63));
	config_free(&cfg);

	snprintf(text, sizeof(text), COORD_OK "[participant %s]\nconninfo = dbname=a\n", name64);
	load_bad(text, err, sizeof(err));
	ck_assert_contains(err, "participant name");
}
END_TEST

START_TEST(test_no_participants)
{
	expect_error(COORD_OK, "no [participant NAME] section", NULL, NULL);
	expect_error(COORD_OK "\n; nothing else\n", "no [participant", NULL, NULL);
}
END_TEST

START_TEST(test_default_timeout_above_max)
{
	expect_error(COORD_OK "default_timeout_ms = 6000\nmax_timeout_ms = 5000\n" PART_OK, "default_timeout_ms",
	             "max_timeout_ms", "6000");
	/* Also when only the max is lowered below the default of 5000. */
	expect_error(COORD_OK "max_timeout_ms = 4999\n" PART_OK, "default_timeout_ms", "max_timeout_ms", NULL);
	/* Equal is fine. */
	Config cfg;
	load_good(COORD_OK "default_timeout_ms = 5000\nmax_timeout_ms = 5000\n" PART_OK, &cfg);
	ck_assert_int_eq(cfg.max_timeout_ms, 5000);
	config_free(&cfg);
}
END_TEST

START_TEST(test_syntax_error)
{
	expect_error(COORD_OK "this line has no equals sign\n" PART_OK, NAME ":4:", "syntax error", NULL);
	expect_error(COORD_OK "[unterminated\n" PART_OK, NAME ":4:", "syntax error", NULL);
	expect_error(COORD_OK "log_level\n" PART_OK, NAME ":4:", "syntax error", NULL);
}
END_TEST

/* Only the first error is reported, and with its own line: a syntax error
 * on line 4 and a bad key on line 6 must not come out as "line 4: unknown
 * key 'bogus_key'" (libinih returns the first error's line, the handler kept
 * the first message it saw; they can belong to different lines). */
START_TEST(test_first_error_reported)
{
	char err[1024];

	load_bad(COORD_OK "junk\nmore junk\nbogus_key = 1\n" PART_OK, err, sizeof(err));
	ck_assert_contains(err, NAME ":4:");
	ck_assert_contains(err, "syntax error");
	ck_assert_msg(strstr(err, "bogus_key") == NULL, "line 4's error describes line 6: %s", err);

	/* The other order already works: a bad key first, then junk. */
	load_bad(COORD_OK "bogus_key = 1\njunk\n" PART_OK, err, sizeof(err));
	ck_assert_contains(err, NAME ":4:");
	ck_assert_contains(err, "bogus_key");
}
END_TEST

START_TEST(test_key_outside_section)
{
	expect_error("id = c1\n" COORD_OK PART_OK, NAME ":1:", "id", "outside");
	expect_error("\n; c\nlog_dir = /x\n" COORD_OK PART_OK, NAME ":3:", "log_dir", "outside");
}
END_TEST

START_TEST(test_empty_log_dir)
{
	expect_error("[coordinator]\nid = c1\nlog_dir =\n" PART_OK, NAME ":3:", "log_dir", "empty");
	expect_error("[coordinator]\nid = c1\nlog_dir =    ; just a comment\n" PART_OK, NAME ":3:", "log_dir", "empty");
}
END_TEST

START_TEST(test_bad_log_level)
{
	expect_error(COORD_OK "log_level = verbose\n" PART_OK, NAME ":4:", "log_level", "'verbose'");
	expect_error(COORD_OK "log_level = fatal\n" PART_OK, NAME ":4:", "log_level", NULL);
	static const char *const good[] = {"debug", "info", "warning", "error"};
	static const LogLevel want[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR};
	for (size_t i = 0; i < 4; i++) {
		char text[256];
		Config cfg;
		snprintf(text, sizeof(text), COORD_OK "log_level = %s\n" PART_OK, good[i]);
		load_good(text, &cfg);
		ck_assert_int_eq(cfg.log_level, want[i]);
		config_free(&cfg);
	}
}
END_TEST

/* A line that lost its '=' makes libinih take everything up to a later
 * '=' as the key's name: the message must not quote that text. */
START_TEST(test_unknown_key_hides_the_rest_of_the_line)
{
	char err[1024];

	load_bad(COORD_OK PART_OK "user app password s3cret dbname = bank\n", err, sizeof(err));
	ck_assert_contains(err, NAME ":6:");
	ck_assert_contains(err, "unknown key 'user ...'");
	ck_assert_contains(err, "'=' missing");
	ck_assert_msg(strstr(err, "s3cret") == NULL, "password leaked into the message: %s", err);
}
END_TEST

/* The one way a conninfo reaches a message: host, port, dbname, user (and
 * hostaddr, service, sslmode); never the password, from key=value strings
 * and URIs alike; nothing else (a passfile's path, say). */
START_TEST(test_redact_conninfo)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"host=db1 port=5433 dbname=bank user=app password=s3cret", "host=db1 port=5433 dbname=bank user=app"},
	    {"password=s3cret dbname=bank", "dbname=bank"},
	    {"host=db1 dbname=bank user=app password='s3cret with blanks' sslmode=verify-full sslrootcert=/etc/ca.crt",
	     "host=db1 dbname=bank user=app sslmode=verify-full"},
	    {"host=db1 dbname=bank passfile=/home/s3cret/.pgpass", "host=db1 dbname=bank"},
	    {"postgresql://app:s3cret@db2:5434/ledger?sslmode=require",
	     "host=db2 port=5434 dbname=ledger user=app sslmode=require"},
	    {"postgresql://app@db2/ledger?password=s3cret", "host=db2 dbname=ledger user=app"},
	    {"hostaddr=10.0.0.1 dbname='my db' user=o\\'k password=s3cret",
	     "hostaddr=10.0.0.1 dbname='my db' user='o\\'k'"},
	    {"service=ledger password=s3cret", "service=ledger"},
	    {"host=x password=s3cret dbname", "(invalid conninfo)"},
	};
	char buf[256], tiny[12];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		config_redact_conninfo(cases[i].in, buf, sizeof(buf));
		ck_assert_msg(strcmp(buf, cases[i].want) == 0, "redact(%s) = \"%s\", want \"%s\"", cases[i].in, buf,
		              cases[i].want);
		ck_assert_msg(strstr(buf, "s3cret") == NULL, "password leaked: %s", buf);
	}
	/* Cut short, still terminated. */
	config_redact_conninfo(cases[0].in, tiny, sizeof(tiny));
	ck_assert_str_eq(tiny, "host=db1 po");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("good");
	tcase_add_test(tc, test_minimal_defaults);
	tcase_add_test(tc, test_full_file_every_key);
	tcase_add_test(tc, test_inline_comments_and_layout);
	tcase_add_test(tc, test_long_values);
	tcase_add_test(tc, test_indented_keys);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_test(tc, test_load_real_file);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_example_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("bad");
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_unknown_key_hides_the_rest_of_the_line);
	tcase_add_test(tc, test_unknown_section);
	tcase_add_test(tc, test_empty_sections_are_not_ignored);
	tcase_add_test(tc, test_duplicate_key);
	tcase_add_test(tc, test_duplicate_participant);
	tcase_add_test(tc, test_duplicate_participant_adjacent);
	tcase_add_test(tc, test_missing_required);
	tcase_add_test(tc, test_missing_conninfo_line_any_name);
	tcase_add_test(tc, test_bad_id);
	tcase_add_test(tc, test_bad_listen);
	tcase_add_test(tc, test_bad_pool_size);
	tcase_add_test(tc, test_bad_integers);
	tcase_add_test(tc, test_bad_conninfo);
	tcase_add_test(tc, test_bad_participant_name);
	tcase_add_test(tc, test_participant_name_lengths);
	tcase_add_test(tc, test_no_participants);
	tcase_add_test(tc, test_default_timeout_above_max);
	tcase_add_test(tc, test_syntax_error);
	tcase_add_test(tc, test_first_error_reported);
	tcase_add_test(tc, test_key_outside_section);
	tcase_add_test(tc, test_empty_log_dir);
	tcase_add_test(tc, test_bad_log_level);
	suite_add_tcase(s, tc);

	tc = tcase_create("redact");
	tcase_add_test(tc, test_redact_conninfo);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
