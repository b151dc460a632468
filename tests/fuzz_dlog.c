/*
 * fuzz_dlog: libFuzzer harness for dlog_decode, the decision-log frame
 * decoder (coordinator/decision_log.c) that replay and twopc-recover
 * check-log run over whatever is on disk.
 *
 * Each input is decoded twice: as it is, and with its CRC32C field
 * recomputed over the claimed payload, so that the fuzzer gets past the
 * checksum into the payload parser. Whenever a frame decodes, the harness
 * checks that frame_len <= size, re-encodes the record with dlog_encode and
 * checks that this gives back the very same bytes (the codec has one
 * encoding per record) and that they decode to an equal record, including
 * the idempotency extension of COMMIT and IDEM records (key, fingerprint,
 * status, response bytes). Every record is cleared (LSan catches leaks);
 * ASan/UBSan catch the rest. The seeds (tests/fuzz/gen-dlog-seeds.py)
 * include keyed COMMITs and IDEM records, so mutations start inside the
 * extension's parser.
 *
 *   make fuzz-build && tests/fuzz_dlog tests/fuzz/dlog
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "decision_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_dlog: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);      \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static int idem_equal(const DlogIdem *a, const DlogIdem *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a->key, b->key) == 0 && memcmp(a->fingerprint, b->fingerprint, DLOG_IDEM_FP_LEN) == 0 &&
	       a->status == b->status && a->response_len == b->response_len &&
	       (a->response_len == 0 || memcmp(a->response, b->response, a->response_len) == 0);
}

static int rec_equal(const DlogRecord *a, const DlogRecord *b)
{
	if (a->type != b->type || a->txn_id != b->txn_id || a->wall_ms != b->wall_ms || a->nbranches != b->nbranches ||
	    a->heuristic_commit != b->heuristic_commit || strcmp(a->gid, b->gid) != 0 || !idem_equal(a->idem, b->idem))
		return 0;
	for (uint16_t i = 0; i < a->nbranches; i++) {
		if (a->branches[i].index != b->branches[i].index || strcmp(a->branches[i].name, b->branches[i].name) != 0)
			return 0;
	}
	return 1;
}

static void check_one(const uint8_t *data, size_t size)
{
	DlogRecord rec, again;
	size_t flen = (size_t)-1, flen2 = (size_t)-1;
	char err[256];

	memset(err, 'x', sizeof(err));
	DlogDecode d = dlog_decode(data, size, &rec, &flen, err, sizeof(err));
	if (d != DLOG_DEC_OK) {
		CHECK(d == DLOG_DEC_SHORT || d == DLOG_DEC_BAD);
		CHECK(rec.branches == NULL && rec.idem == NULL); /* nothing left to free */
		CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		dlog_record_clear(&rec);
		return;
	}
	CHECK(flen >= DLOG_FRAME_HEADER && flen <= size);
	CHECK(rec.type == DLOG_COMMIT || rec.type == DLOG_DONE || rec.type == DLOG_HEURISTIC || rec.type == DLOG_IDEM);
	CHECK(rec.type == DLOG_DONE || rec.type == DLOG_IDEM ? rec.nbranches == 0 : rec.nbranches >= 1);
	for (uint16_t i = 0; i < rec.nbranches; i++)
		CHECK(rec.branches[i].name[0] != '\0');
	/* A key only where the format has one, and then one dlog_encode
	 * accepts (it would abort the daemon otherwise). */
	CHECK(rec.type == DLOG_IDEM ? rec.idem != NULL : rec.type == DLOG_COMMIT || rec.idem == NULL);
	if (rec.idem != NULL) {
		CHECK(dlog_idem_valid(rec.idem, err, sizeof(err)));
		CHECK(rec.idem->response != NULL && rec.idem->response[rec.idem->response_len] == '\0');
	}
	CHECK(dlog_frame_plausible(data, size)); /* the torn-tail search would not skip it */

	size_t n = dlog_encoded_size(&rec);
	CHECK(n == flen);
	uint8_t *buf = malloc(n);
	CHECK(buf != NULL);
	CHECK(dlog_encode(&rec, buf) == n);
	CHECK(memcmp(buf, data, n) == 0);
	CHECK(dlog_decode(buf, n, &again, &flen2, err, sizeof(err)) == DLOG_DEC_OK);
	CHECK(flen2 == n);
	CHECK(rec_equal(&rec, &again));
	/* A deep copy is equal too, and independent. */
	DlogRecord *copy = dlog_record_copy(&rec);
	CHECK(rec_equal(&rec, copy));
	CHECK(copy->idem == NULL || (copy->idem != rec.idem && copy->idem->response != rec.idem->response));
	dlog_record_free(copy);
	dlog_record_clear(&again);
	dlog_record_clear(&rec);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_one(data, size);
	if (size >= DLOG_FRAME_HEADER) {
		/* The same bytes with a correct checksum for the claimed payload
		 * (or for as much of it as there is). */
		uint8_t *copy = malloc(size);
		CHECK(copy != NULL);
		memcpy(copy, data, size);
		uint32_t plen = (uint32_t)copy[0] | ((uint32_t)copy[1] << 8) | ((uint32_t)copy[2] << 16) |
		                ((uint32_t)copy[3] << 24);
		size_t avail = size - DLOG_FRAME_HEADER;
		uint32_t crc = crc32c(0, copy + 8, (plen < avail ? plen : avail) + 1);
		for (int i = 0; i < 4; i++)
			copy[4 + i] = (uint8_t)(crc >> (8 * i));
		check_one(copy, size);
		free(copy);
	}
	return 0;
}
