/*
 * dlog_codec: the decision log's records and their frames on disk. Pure
 * functions, no I/O: unit-tested (tests/check_dlog.c) and fuzzed
 * (tests/fuzz_dlog.c), since replay and twopc-recover check-log run the
 * decoder over whatever is on disk. decision_log.h includes this header.
 *
 * A frame is
 *     u32 payload length | u32 CRC32C(type, payload) | u8 type | payload
 * (little endian). Payloads:
 *     COMMIT     u64 txn | i64 wall_ms | u8 flags (0) | u16 n |
 *                n x (u16 index, u8 len, name) | [idempotency extension]
 *     DONE       u64 txn
 *     HEURISTIC  u64 txn | i64 wall_ms | u8 1 commit / 2 abort | u8 len, name | u8 len, gid
 *     IDEM       u64 txn | i64 wall_ms | idempotency extension
 * and the idempotency extension is
 *     u8 version (1) | u8 keylen | key | 32-byte SHA-256 fingerprint |
 *     u16 HTTP status | u32 response_len | response
 * A COMMIT that ends after its branches has no key: logs written before
 * the extension existed read as they always did.
 *
 * Every frame that decodes re-encodes to the very same bytes: the decoder
 * rejects anything dlog_encode would not have written.
 */
#ifndef TWOPC_DLOG_CODEC_H
#define TWOPC_DLOG_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum DlogType {
	DLOG_COMMIT = 1,    /* the commit decision of a transaction (perhaps with its Idempotency-Key) */
	DLOG_DONE = 2,      /* every branch of that transaction resolved: its records may go */
	DLOG_HEURISTIC = 3, /* an operator's manual decision (twopc-recover commit/abort) */
	DLOG_IDEM = 4,      /* a finished transaction's Idempotency-Key, still remembered (carried forward) */
} DlogType;

#define DLOG_TYPE_MAX 4

#define DLOG_GID_MAX 200

#define DLOG_FRAME_HEADER 9
#define DLOG_MAX_PAYLOAD  (64 * 1024)
#define DLOG_NAME_MAX     63

/* An Idempotency-Key: 1..255 bytes of 0x20..0x7E (what an HTTP header value
 * can carry without escaping). The remembered response is at most 48 KiB,
 * so that a keyed COMMIT with the most branches still fits a frame. */
#define DLOG_IDEM_KEY_MAX      255
#define DLOG_IDEM_RESPONSE_MAX 49152
#define DLOG_IDEM_VERSION      1
#define DLOG_IDEM_FP_LEN       32

typedef struct DlogBranchRef {
	uint16_t index;               /* participant index at the time: part of the GID */
	char name[DLOG_NAME_MAX + 1]; /* participant name */
} DlogBranchRef;

/* The Idempotency-Key of a committed transaction and the response a retry
 * with that key gets. */
typedef struct DlogIdem {
	char key[DLOG_IDEM_KEY_MAX + 1];
	uint8_t fingerprint[DLOG_IDEM_FP_LEN]; /* SHA-256 of the request body */
	uint16_t status;                       /* HTTP status of the response, 100..599 */
	char *response;                        /* body bytes, heap, owned; NUL-terminated after
	                                          response_len (NULL allowed when 0) */
	uint32_t response_len;                 /* 0..DLOG_IDEM_RESPONSE_MAX */
} DlogIdem;

typedef struct DlogRecord {
	DlogType type;
	uint64_t txn_id;
	int64_t wall_ms;            /* COMMIT, HEURISTIC, IDEM: when the decision was taken */
	uint16_t nbranches;         /* COMMIT; HEURISTIC: 1 (the participant acted on); IDEM: 0 */
	DlogBranchRef *branches;    /* heap array owned by the record */
	bool heuristic_commit;      /* HEURISTIC: commit (true) or abort (false) */
	char gid[DLOG_GID_MAX + 1]; /* HEURISTIC: the prepared transaction acted on */
	DlogIdem *idem;             /* COMMIT: NULL or its key; IDEM: never NULL. Heap, owned */
} DlogRecord;

typedef enum DlogDecode {
	DLOG_DEC_OK,    /* one record decoded */
	DLOG_DEC_SHORT, /* the buffer ends inside the frame (a torn tail if at EOF) */
	DLOG_DEC_BAD,   /* bad length, checksum or payload */
} DlogDecode;

size_t dlog_encoded_size(const DlogRecord *rec);
/* Writes the frame into buf (dlog_encoded_size bytes). A record the decoder
 * would reject (too big, a bad key) is a broken invariant: fatal. */
size_t dlog_encode(const DlogRecord *rec, uint8_t *buf);
/* Decodes the frame at buf. On anything but OK, *out is empty (nothing to
 * free) and err says why. */
DlogDecode dlog_decode(const uint8_t *buf, size_t len, DlogRecord *out, size_t *frame_len, char *err,
                       size_t errlen) WARN_UNUSED;
/* Cheap checks that a frame could start at buf (len bytes available): a
 * possible payload length for its type, all of it present. The CRC, checked
 * by dlog_decode, decides; this only saves computing it at every offset
 * when looking for a valid frame after a bad one. */
bool dlog_frame_plausible(const uint8_t *buf, size_t len);

/* Whether idem can be written: a key of 1..DLOG_IDEM_KEY_MAX bytes of
 * 0x20..0x7E, a status of 100..599, a response of at most
 * DLOG_IDEM_RESPONSE_MAX bytes. Callers building one from a request check
 * it first; err says what is wrong. */
bool dlog_idem_valid(const DlogIdem *idem, char *err, size_t errlen) WARN_UNUSED;
/* A new DlogIdem holding copies of key and response (unchecked). */
DlogIdem *dlog_idem_new(const char *key, const uint8_t fingerprint[DLOG_IDEM_FP_LEN], uint16_t status,
                        const void *response, uint32_t response_len);
DlogIdem *dlog_idem_copy(const DlogIdem *idem);
void dlog_idem_free(DlogIdem *idem);

void dlog_record_clear(DlogRecord *rec);
DlogRecord *dlog_record_copy(const DlogRecord *rec);
void dlog_record_free(DlogRecord *rec);
const char *dlog_type_name(DlogType type);

#endif
