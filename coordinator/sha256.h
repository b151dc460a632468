/*
 * sha256: SHA-256 (FIPS 180-4), for the fingerprint of a request body kept
 * with its Idempotency-Key: a retry with the same key but another body is
 * a different request and must not get the first one's response. Small and
 * self-contained (no OpenSSL just for this); tests/check_sha256.c checks it
 * against the NIST vectors.
 */
#ifndef TWOPC_SHA256_H
#define TWOPC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32

typedef struct Sha256 {
	uint32_t h[8];   /* the chaining state */
	uint64_t nbytes; /* message length so far */
	uint8_t buf[64]; /* a partial block */
	size_t nbuf;     /* bytes in buf */
} Sha256;

/* Incremental: init, any number of updates, final (which also wipes the
 * context; init again to reuse it). */
void sha256_init(Sha256 *c);
void sha256_update(Sha256 *c, const void *data, size_t len);
void sha256_final(Sha256 *c, uint8_t out[SHA256_DIGEST_LEN]);

/* One shot. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);

#endif
