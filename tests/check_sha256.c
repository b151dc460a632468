/*
 * check_sha256: unit tests for coordinator/sha256.c, the fingerprint of an
 * Idempotency-Key's request body. A wrong digest would not crash anything:
 * it would make a retry with the same body look like a different request
 * (or, worse, a different body look like the same one). So the digests are
 * checked against the FIPS 180-2 / NIST example vectors, plus messages
 * whose lengths sit on the padding boundaries (55, 56, 63, 64, 119, 120
 * bytes: the length field either fits in the last block or needs another
 * one; digests from Python's hashlib), and the incremental interface is
 * checked against the one-shot one for every way of cutting a message.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

static void hex(char out[2 * SHA256_DIGEST_LEN + 1], const uint8_t d[SHA256_DIGEST_LEN])
{
	for (int i = 0; i < SHA256_DIGEST_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void expect_digest(const void *msg, size_t len, const char *want)
{
	uint8_t d[SHA256_DIGEST_LEN];
	char got[2 * SHA256_DIGEST_LEN + 1];

	sha256(msg, len, d);
	hex(got, d);
	ck_assert_msg(strcmp(got, want) == 0, "sha256 of %zu bytes: got %s, want %s", len, got, want);
}

START_TEST(test_nist_vectors)
{
	expect_digest("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	expect_digest(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	expect_digest("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* 448 bits: the padding needs a second block. */
	expect_digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
	              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* 896 bits. */
	expect_digest(
	    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmn"
	    "opqrstnopqrstu",
	    112, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

START_TEST(test_million_a)
{
	enum { N = 1000000 };
	static const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
	char *m = malloc(N);
	uint8_t d[SHA256_DIGEST_LEN];
	char got[2 * SHA256_DIGEST_LEN + 1];
	Sha256 c;

	ck_assert_ptr_nonnull(m);
	memset(m, 'a', N);
	expect_digest(m, N, want);
	/* Fed in uneven pieces (7 is prime to the block size). */
	sha256_init(&c);
	for (size_t off = 0; off < N; off += 7)
		sha256_update(&c, m + off, N - off < 7 ? N - off : 7);
	sha256_final(&c, d);
	hex(got, d);
	ck_assert_str_eq(got, want);
	free(m);
}
END_TEST

START_TEST(test_padding_boundaries)
{
	static const struct {
		size_t len;
		const char *digest;
	} v[] = {
	    {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
	    {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
	    {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
	    {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
	    {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
	    {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
	};
	char m[128];

	memset(m, 'a', sizeof(m));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		expect_digest(m, v[i].len, v[i].digest);
}
END_TEST

/* Every split of a 200-byte message into two updates (and into three, the
 * second piece of every length up to 70), with empty updates in between,
 * gives the one-shot digest. */
START_TEST(test_incremental_every_split)
{
	enum { N = 200 };
	uint8_t m[N], want[SHA256_DIGEST_LEN], got[SHA256_DIGEST_LEN];
	Sha256 c;

	for (int i = 0; i < N; i++)
		m[i] = (uint8_t)(i * 131 + 7);
	sha256(m, N, want);
	for (size_t cut = 0; cut <= N; cut++) {
		sha256_init(&c);
		sha256_update(&c, m, cut);
		sha256_update(&c, m + cut, 0);
		sha256_update(&c, m + cut, N - cut);
		sha256_final(&c, got);
		ck_assert_msg(memcmp(got, want, sizeof(want)) == 0, "split at %zu differs", cut);
		for (size_t mid = 0; mid <= 70 && cut + mid <= N; mid++) {
			sha256_init(&c);
			sha256_update(&c, m, cut);
			sha256_update(&c, m + cut, mid);
			sha256_update(&c, m + cut + mid, N - cut - mid);
			sha256_final(&c, got);
			ck_assert_msg(memcmp(got, want, sizeof(want)) == 0, "split at %zu + %zu differs", cut, mid);
		}
	}
	/* A context is reusable after init, and one byte more changes everything. */
	sha256_init(&c);
	sha256_update(&c, m, N - 1);
	sha256_final(&c, got);
	ck_assert(memcmp(got, want, sizeof(want)) != 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sha256");
	TCase *tc = tcase_create("sha256");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_nist_vectors);
	tcase_add_test(tc, test_million_a);
	tcase_add_test(tc, test_padding_boundaries);
	tcase_add_test(tc, test_incremental_every_split);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
