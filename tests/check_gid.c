/*
 * check_gid: unit tests for coordinator/gid.c and coordinator/idmap.c.
 *
 * GIDs are how recovery and the sweeper recognise their own prepared
 * transactions in the server-wide pg_prepared_xacts: a parser that claims a
 * foreign GID (another coordinator's, or one whose id merely starts with
 * ours) would let us COMMIT or ROLLBACK someone else's transaction, and one
 * that rejects our own leaves branches prepared forever. So these tests pin
 * the exact format, the round trip, every malformed variant we can think of,
 * the 200-byte limit and the LIKE pattern the sweeper selects with.
 *
 * idmap holds the in-flight table and the decision log's live COMMITs; its
 * backward-shift deletion is easy to get subtly wrong, so it is checked
 * against a trivially correct reference under 100k+ mixed operations.
 */
#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gid.h"
#include "idmap.h"

/* Deterministic pseudo-random numbers (splitmix64) so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd(void)
{
	rng_state += 0x9e3779b97f4a7c15ULL;
	return mix64(rng_state);
}

static const char *const COORD_IDS[] = {
    "c1", "A", "coord_7", "_", "x_0123456789abcdef", "abcdefghijklmnopqrstuvwxyz012345", /* 32 */
};

/* ---- GIDs ---------------------------------------------------------------- */

START_TEST(test_gid_exact_format)
{
	char buf[GID_MAX];

	ck_assert(gid_build(buf, sizeof(buf), "c1", 0x0123456789abcdefULL, 7));
	ck_assert_str_eq(buf, "twopc_c1_0123456789abcdef_7");
	ck_assert(gid_build(buf, sizeof(buf), "c1", 0, 0));
	ck_assert_str_eq(buf, "twopc_c1_0000000000000000_0");
	ck_assert(gid_build(buf, sizeof(buf), "c1", UINT64_MAX, 65535));
	ck_assert_str_eq(buf, "twopc_c1_ffffffffffffffff_65535");
	ck_assert(gid_build(buf, sizeof(buf), "node_2", 0xaULL, 12));
	ck_assert_str_eq(buf, "twopc_node_2_000000000000000a_12");
}
END_TEST

/* gid_write() (the transaction manager's hot path) writes exactly what
 * gid_build() does, for short and longest coordinator ids, every kind of
 * id and multi-digit participant indexes. */
START_TEST(test_gid_write_matches_build)
{
	static const char *const coords[] = {"a", "node_1", "c0ffee", "abcdefghijklmnopqrstuvwxyz012345"};
	static const uint64_t ids[] = {0, 1, 0xff, 0x0123456789abcdefULL, UINT64_MAX};
	static const unsigned idx[] = {0, 7, 9, 10, 63, 65535};

	for (size_t c = 0; c < sizeof(coords) / sizeof(coords[0]); c++) {
		char prefix[GID_OURS_MAX];
		size_t plen = gid_prefix(prefix, coords[c]);
		ck_assert_uint_eq(plen, strlen(prefix));
		for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
			char hex[TXN_ID_HEX + 1];
			txn_id_format(hex, ids[i]);
			for (size_t k = 0; k < sizeof(idx) / sizeof(idx[0]); k++) {
				char want[GID_MAX], got[GID_OURS_MAX + 1];
				ck_assert(gid_build(want, sizeof(want), coords[c], ids[i], idx[k]));
				size_t n = gid_write(got, prefix, plen, hex, idx[k]);
				ck_assert_uint_le(n, GID_OURS_MAX - 1);
				got[n] = '\0';
				ck_assert_str_eq(got, want);
			}
		}
	}
}
END_TEST

/* fmt_i64 (the GID's index, row counts, Content-Length) against printf,
 * both sides of its one-digit short cut and the extremes. */
START_TEST(test_fmt_i64_matches_printf)
{
	static const int64_t vals[] = {0, 1, 9, 10, 11, 99, 100, 65535, -1, -9, -10, 1234567890123LL,
	                               INT64_MAX, INT64_MIN, INT64_MIN + 1};
	char got[24], want[24];

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		size_t n = fmt_i64(got, vals[i]);
		snprintf(want, sizeof(want), "%" PRId64, vals[i]);
		ck_assert_str_eq(got, want);
		ck_assert_uint_eq(n, strlen(want));
	}
	for (int64_t v = -1000; v <= 1000; v++) {
		fmt_i64(got, v);
		snprintf(want, sizeof(want), "%" PRId64, v);
		ck_assert_str_eq(got, want);
	}
}
END_TEST

START_TEST(test_gid_round_trip)
{
	static const unsigned indices[] = {0, 1, 9, 10, 63, 64, 100, 999, 1000, 65534, 65535};
	char buf[GID_MAX];
	int n = 0;

	for (size_t c = 0; c < sizeof(COORD_IDS) / sizeof(COORD_IDS[0]); c++) {
		for (int k = 0; k < 300; k++) {
			uint64_t id;
			if (k < 64)
				id = 1ULL << k;
			else if (k == 64)
				id = 0;
			else if (k == 65)
				id = UINT64_MAX;
			else
				id = rnd();
			for (size_t i = 0; i < sizeof(indices) / sizeof(indices[0]); i++) {
				uint64_t got_id = 0xdead;
				unsigned got_idx = 0xbeef;
				ck_assert(gid_build(buf, sizeof(buf), COORD_IDS[c], id, indices[i]));
				ck_assert_msg(gid_parse(buf, COORD_IDS[c], &got_id, &got_idx), "own gid %s not parsed",
				              buf);
				ck_assert_uint_eq(got_id, id);
				ck_assert_uint_eq(got_idx, indices[i]);
				n++;
			}
		}
	}
	ck_assert_int_gt(n, 10000);
}
END_TEST

START_TEST(test_gid_parse_rejects_malformed)
{
	static const char *const bad[] = {
	    "",
	    "twopc_",
	    "twopc_c1",
	    "twopc_c1_",
	    "twopc_c1_0123456789abcdef",                         /* no index */
	    "twopc_c1_0123456789abcdef_",                        /* empty index */
	    "Twopc_c1_0123456789abcdef_0",                       /* other prefix */
	    "twopcx_c1_0123456789abcdef_0",                      /* other prefix */
	    "2pc_c1_0123456789abcdef_0",                         /* other prefix */
	    "xtwopc_c1_0123456789abcdef_0",                      /* prefix not at the start */
	    "twopc_c2_0123456789abcdef_0",                       /* other coordinator */
	    "twopc_C1_0123456789abcdef_0",                       /* coordinator id is case-sensitive */
	    "twopc_c1_0123456789ABCDEF_0",                       /* uppercase hex */
	    "twopc_c1_0123456789abcdeF_0",                       /* one uppercase hex digit */
	    "twopc_c1_0123456789abcde_0",                        /* 15 hex digits */
	    "twopc_c1_0123456789abcde_12",                       /* 15 hex digits, 2-digit index */
	    "twopc_c1_0123456789abcdef0_0",                      /* 17 hex digits */
	    "twopc_c1_0123456789abcdeg_0",                       /* not hex */
	    "twopc_c1_0x23456789abcdef_0",                       /* 0x */
	    "twopc_c1_0123456789abcdef_00",                      /* leading zero */
	    "twopc_c1_0123456789abcdef_01",                      /* leading zero */
	    "twopc_c1_0123456789abcdef_-1",                      /* negative */
	    "twopc_c1_0123456789abcdef_+1",                      /* sign */
	    "twopc_c1_0123456789abcdef_ 1",                      /* space */
	    "twopc_c1_0123456789abcdef_1a",                      /* non-digit */
	    "twopc_c1_0123456789abcdef_a",                       /* non-digit */
	    "twopc_c1_0123456789abcdef_1 ",                      /* trailing garbage */
	    "twopc_c1_0123456789abcdef_1\n",                     /* trailing garbage */
	    "twopc_c1_0123456789abcdef_1_2",                     /* trailing garbage */
	    "twopc_c1_0123456789abcdef_65536",                   /* index beyond u16 */
	    "twopc_c1_0123456789abcdef_99999999999999999999999", /* overflow */
	    "twopc_c1__0123456789abcdef_0",                      /* doubled separator */
	    "twopc_c1_0123456789abcdef__0",                      /* doubled separator */
	    "twopc_c1-0123456789abcdef_0",                       /* wrong separator */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t id = 0x5555;
		unsigned idx = 0x7777;
		ck_assert_msg(!gid_parse(bad[i], "c1", &id, &idx), "gid_parse accepted \"%s\"", bad[i]);
	}
	/* Sanity: the well-formed neighbour of all those is accepted. */
	{
		uint64_t id;
		unsigned idx;
		ck_assert(gid_parse("twopc_c1_0123456789abcdef_0", "c1", &id, &idx));
		ck_assert_uint_eq(id, 0x0123456789abcdefULL);
		ck_assert_uint_eq(idx, 0);
	}
}
END_TEST

/* Coordinator ids may contain '_' and may be prefixes of each other: each
 * must claim exactly its own GIDs. */
START_TEST(test_gid_no_cross_claims)
{
	static const char *const ids[] = {
	    "c1", "c10", "c1_x", "c1_0123456789abcdef", "c1_0123456789abcdef_5", "c", "c1_1", "c1_0000000000000001"};
	static const uint64_t txns[] = {0, 1, 0x0123456789abcdefULL, 0x1111111111111111ULL, UINT64_MAX};
	static const unsigned idxs[] = {0, 1, 5, 10, 65535};
	const size_t nids = sizeof(ids) / sizeof(ids[0]);
	char buf[GID_MAX];

	for (size_t owner = 0; owner < nids; owner++) {
		for (size_t t = 0; t < sizeof(txns) / sizeof(txns[0]); t++) {
			for (size_t x = 0; x < sizeof(idxs) / sizeof(idxs[0]); x++) {
				ck_assert(gid_build(buf, sizeof(buf), ids[owner], txns[t], idxs[x]));
				for (size_t other = 0; other < nids; other++) {
					uint64_t id;
					unsigned idx;
					bool got = gid_parse(buf, ids[other], &id, &idx);
					ck_assert_msg(got == (other == owner), "coordinator \"%s\" %s gid \"%s\"",
					              ids[other], got ? "claims foreign" : "rejects own", buf);
				}
			}
		}
	}
	/* The cases named in the design, spelled out. */
	{
		uint64_t id;
		unsigned idx;
		ck_assert(!gid_parse("twopc_c1_x_0123456789abcdef_0", "c1", &id, &idx));
		ck_assert(!gid_parse("twopc_c10_0123456789abcdef_0", "c1", &id, &idx));
		ck_assert(!gid_parse("twopc_c1_0123456789abcdef_0", "c10", &id, &idx));
	}
}
END_TEST

START_TEST(test_gid_length_limit)
{
	const char *longest = COORD_IDS[5];
	char buf[GID_MAX];
	size_t expect = strlen("twopc_") + COORD_ID_MAX + 1 + TXN_ID_HEX + 1 + strlen("65535");

	ck_assert_uint_eq(strlen(longest), COORD_ID_MAX);
	ck_assert(coord_id_valid(longest));
	ck_assert(gid_build(buf, sizeof(buf), longest, UINT64_MAX, 65535));
	ck_assert_uint_eq(strlen(buf), expect);
	ck_assert_uint_le(strlen(buf), GID_MAX - 1); /* 200 bytes including the NUL */

	/* A buffer too small for the GID is refused, not silently truncated
	 * into something that might parse as another GID. */
	char small[20];
	ck_assert(!gid_build(small, sizeof(small), "c1", 1, 1));
	char exact[28]; /* "twopc_c1_0000000000000001_1" is 27 chars */
	ck_assert(gid_build(exact, sizeof(exact), "c1", 1, 1));
	ck_assert_str_eq(exact, "twopc_c1_0000000000000001_1");
	ck_assert(!gid_build(exact, sizeof(exact) - 1, "c1", 1, 1));
}
END_TEST

START_TEST(test_gid_like_pattern)
{
	char buf[128];

	gid_like_pattern(buf, sizeof(buf), "c1");
	ck_assert_str_eq(buf, "twopc\\_c1\\_%");
	gid_like_pattern(buf, sizeof(buf), "a_b");
	ck_assert_str_eq(buf, "twopc\\_a\\_b\\_%");
	gid_like_pattern(buf, sizeof(buf), COORD_IDS[5]);
	ck_assert_str_eq(buf, "twopc\\_abcdefghijklmnopqrstuvwxyz012345\\_%");

	/* Too small a buffer: always terminated inside it, and never a pattern
	 * broader than ours (a '%' only ever comes after the full prefix). */
	const char *full = "twopc\\_a\\_b\\_%";
	for (size_t len = 1; len <= strlen(full) + 1; len++) {
		char small[64];
		memset(small, 'Z', sizeof(small));
		gid_like_pattern(small, len, "a_b");
		ck_assert_msg(memchr(small, '\0', len) != NULL, "not terminated within %zu bytes", len);
		ck_assert_msg(small[len] == 'Z', "wrote past %zu bytes", len);
		if (strchr(small, '%') != NULL)
			ck_assert_str_eq(small, full);
		/* Never ends in a lone escape character. */
		size_t sl = strlen(small);
		size_t bs = 0;
		while (bs < sl && small[sl - 1 - bs] == '\\')
			bs++;
		ck_assert_msg(bs % 2 == 0, "pattern \"%s\" ends in a dangling escape", small);
	}
}
END_TEST

START_TEST(test_txn_id_format_parse)
{
	char buf[TXN_ID_HEX + 1];
	uint64_t v;

	txn_id_format(buf, 0);
	ck_assert_str_eq(buf, "0000000000000000");
	txn_id_format(buf, 0x0123456789abcdefULL);
	ck_assert_str_eq(buf, "0123456789abcdef");
	txn_id_format(buf, UINT64_MAX);
	ck_assert_str_eq(buf, "ffffffffffffffff");

	for (int i = 0; i < 10000; i++) {
		uint64_t id = i < 64 ? (1ULL << i) - 1 : rnd();
		txn_id_format(buf, id);
		ck_assert_uint_eq(strlen(buf), TXN_ID_HEX);
		ck_assert(txn_id_parse(buf, &v));
		ck_assert_uint_eq(v, id);
	}

	static const char *const bad[] = {"",
	                                  "0",
	                                  "0123456789abcde",   /* 15 */
	                                  "0123456789abcdef0", /* 17 */
	                                  "0123456789ABCDEF",
	                                  "0x23456789abcdef",
	                                  "0123456789abcdeg",
	                                  " 123456789abcdef",
	                                  "0123456789abcde ",
	                                  "-123456789abcdef"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 42;
		ck_assert_msg(!txn_id_parse(bad[i], &v), "txn_id_parse accepted \"%s\"", bad[i]);
		ck_assert_uint_eq(v, 42); /* untouched on failure */
	}
}
END_TEST

START_TEST(test_coord_id_valid)
{
	static const char *const good[] = {"c1", "A", "_", "a_b", "Z9_z", "abcdefghijklmnopqrstuvwxyz012345"};
	static const char *const bad[] = {"",         "abcdefghijklmnopqrstuvwxyz0123456", /* 33 */
	                                  "c-1",      "c.1",
	                                  "c 1",      "c1%",
	                                  "c1\\",     "c1'",
	                                  "\xc3\xa9", "c1\n",
	                                  "c/1"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(coord_id_valid(good[i]), "rejected \"%s\"", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!coord_id_valid(bad[i]), "accepted \"%s\"", bad[i]);
}
END_TEST

/* ---- idmap ----------------------------------------------------------------- */

/* The reference: keys are key_of(k) for k in [1, UNIVERSE]; ref[k] holds the
 * value stored for it (0: absent). Values encode k so iteration can map a
 * key back to its slot in the reference. */
#define UNIVERSE 200000

static uint64_t key_of(uint64_t k, bool scrambled)
{
	/* mix64 is a bijection with mix64(0) == 0, so keys are distinct and
	 * non-zero for k >= 1. */
	return scrambled ? mix64(k) : k;
}

static void *val_of(uint64_t k, uint64_t version)
{
	return (void *)(uintptr_t)((k << 16) | (version & 0xffff) | 1);
}

static uint64_t k_of_val(void *v)
{
	return (uint64_t)(uintptr_t)v >> 16;
}

static void check_against_reference(const IdMap *m, void *const *ref, size_t live, bool scrambled)
{
	uint8_t *seen = calloc(UNIVERSE + 1, 1);
	size_t pos = 0, visited = 0;
	uint64_t key;
	void *val;

	ck_assert_ptr_nonnull(seen);
	ck_assert_uint_eq(m->count, live);
	for (uint64_t k = 1; k <= UNIVERSE; k++) {
		void *got = idmap_get(m, key_of(k, scrambled));
		ck_assert_msg(got == ref[k], "key %" PRIu64 ": got %p, want %p", k, got, ref[k]);
		ck_assert(idmap_contains(m, key_of(k, scrambled)) == (ref[k] != NULL));
	}
	while (idmap_next(m, &pos, &key, &val)) {
		uint64_t k = k_of_val(val);
		ck_assert_msg(k >= 1 && k <= UNIVERSE, "iteration returned a value we never stored");
		ck_assert_uint_eq(key, key_of(k, scrambled));
		ck_assert_msg(ref[k] == val, "iteration returned a stale value for %" PRIu64, k);
		ck_assert_msg(!seen[k], "iteration visited %" PRIu64 " twice", k);
		seen[k] = 1;
		visited++;
	}
	ck_assert_uint_eq(visited, live);
	free(seen);
}

START_TEST(test_idmap_basic)
{
	IdMap m;
	int a, b;

	idmap_init(&m);
	ck_assert_ptr_null(idmap_get(&m, 1));
	ck_assert_ptr_null(idmap_get(&m, 0)); /* the reserved id is never found */
	ck_assert(!idmap_contains(&m, 0));
	ck_assert_ptr_null(idmap_del(&m, 1));
	idmap_put(&m, 1, &a);
	ck_assert_ptr_eq(idmap_get(&m, 1), &a);
	ck_assert_uint_eq(m.count, 1);
	idmap_put(&m, 1, &b); /* replace */
	ck_assert_ptr_eq(idmap_get(&m, 1), &b);
	ck_assert_uint_eq(m.count, 1);
	idmap_put(&m, UINT64_MAX, &a);
	ck_assert_ptr_eq(idmap_get(&m, UINT64_MAX), &a);
	ck_assert_ptr_eq(idmap_del(&m, 1), &b);
	ck_assert_ptr_null(idmap_get(&m, 1));
	ck_assert_ptr_null(idmap_del(&m, 1));
	ck_assert_uint_eq(m.count, 1);
	ck_assert(idmap_contains(&m, UINT64_MAX));
	idmap_free(&m);
}
END_TEST

static void idmap_workout(bool scrambled)
{
	void **ref = calloc(UNIVERSE + 1, sizeof(void *));
	size_t live = 0;
	IdMap m;

	ck_assert_ptr_nonnull(ref);
	idmap_init(&m);

	/* 100k sequential inserts, then delete every third one. */
	for (uint64_t k = 1; k <= 100000; k++) {
		ref[k] = val_of(k, 0);
		idmap_put(&m, key_of(k, scrambled), ref[k]);
		live++;
	}
	check_against_reference(&m, ref, live, scrambled);
	for (uint64_t k = 3; k <= 100000; k += 3) {
		ck_assert_ptr_eq(idmap_del(&m, key_of(k, scrambled)), ref[k]);
		ref[k] = NULL;
		live--;
	}
	check_against_reference(&m, ref, live, scrambled);

	/* 300k random operations over the whole universe: inserts, replaces,
	 * deletes of present and absent keys. */
	for (int op = 0; op < 300000; op++) {
		uint64_t r = rnd();
		uint64_t k = 1 + (r >> 8) % UNIVERSE;
		uint64_t key = key_of(k, scrambled);
		switch (r % 5) {
		case 0:
		case 1:
			if (ref[k] == NULL)
				live++;
			ref[k] = val_of(k, (uint64_t)op);
			idmap_put(&m, key, ref[k]);
			break;
		case 2:
		case 3: {
			void *old = idmap_del(&m, key);
			ck_assert_ptr_eq(old, ref[k]);
			if (ref[k] != NULL)
				live--;
			ref[k] = NULL;
			break;
		}
		default:
			ck_assert_ptr_eq(idmap_get(&m, key), ref[k]);
			break;
		}
		ck_assert_uint_eq(m.count, live);
		if (op % 100000 == 99999)
			check_against_reference(&m, ref, live, scrambled);
	}
	check_against_reference(&m, ref, live, scrambled);

	/* Drain completely: the map must end empty and still usable. */
	for (uint64_t k = 1; k <= UNIVERSE; k++) {
		if (ref[k] != NULL) {
			ck_assert_ptr_eq(idmap_del(&m, key_of(k, scrambled)), ref[k]);
			ref[k] = NULL;
			live--;
		}
	}
	ck_assert_uint_eq(live, 0);
	check_against_reference(&m, ref, 0, scrambled);
	idmap_put(&m, key_of(7, scrambled), val_of(7, 1));
	ck_assert_ptr_eq(idmap_get(&m, key_of(7, scrambled)), val_of(7, 1));
	idmap_free(&m);
	free(ref);
}

START_TEST(test_idmap_sequential_keys)
{
	idmap_workout(false);
}
END_TEST

START_TEST(test_idmap_random_keys)
{
	idmap_workout(true);
}
END_TEST

/* Keys that differ only in their high bits stress the hash mixing and long
 * probe runs; deleting from the middle of runs exercises backward shift. */
START_TEST(test_idmap_high_bit_keys)
{
	enum { N = 4096 };
	IdMap m;
	int dummy[N];

	idmap_init(&m);
	for (uint64_t i = 0; i < N; i++)
		idmap_put(&m, (i + 1) << 40, &dummy[i]);
	for (uint64_t i = 0; i < N; i += 2)
		ck_assert_ptr_eq(idmap_del(&m, (i + 1) << 40), &dummy[i]);
	for (uint64_t i = 0; i < N; i++)
		ck_assert_ptr_eq(idmap_get(&m, (i + 1) << 40), (i % 2) ? &dummy[i] : NULL);
	ck_assert_uint_eq(m.count, N / 2);
	idmap_free(&m);
}
END_TEST

static Suite *gid_suite(void)
{
	Suite *s = suite_create("gid");
	TCase *tc = tcase_create("gid");
	tcase_add_test(tc, test_gid_exact_format);
	tcase_add_test(tc, test_gid_round_trip);
	tcase_add_test(tc, test_gid_write_matches_build);
	tcase_add_test(tc, test_fmt_i64_matches_printf);
	tcase_add_test(tc, test_gid_parse_rejects_malformed);
	tcase_add_test(tc, test_gid_no_cross_claims);
	tcase_add_test(tc, test_gid_length_limit);
	tcase_add_test(tc, test_gid_like_pattern);
	tcase_add_test(tc, test_txn_id_format_parse);
	tcase_add_test(tc, test_coord_id_valid);
	suite_add_tcase(s, tc);

	tc = tcase_create("idmap");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_idmap_basic);
	tcase_add_test(tc, test_idmap_sequential_keys);
	tcase_add_test(tc, test_idmap_random_keys);
	tcase_add_test(tc, test_idmap_high_bit_keys);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(gid_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
