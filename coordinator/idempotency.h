/*
 * idempotency: the table of Idempotency-Keys (draft-ietf-httpapi-
 * idempotency-key-header) the daemon remembers.
 *
 * A key enters the table when its first request starts (in flight), and
 * either becomes finished when its transaction's COMMIT record is durable
 * (then it holds the response to replay until it expires), or leaves the
 * table when the transaction aborts (nothing was committed: a retry may run
 * again). Finished keys survive restarts because their COMMIT records carry
 * them (the decision log keeps those records until the keys expire); the
 * daemon refills this table from the log at startup.
 *
 * Memory is bounded: keys and responses are counted in bytes, and a full
 * table refuses new keys rather than forget live ones.
 */
#ifndef TWOPC_IDEMPOTENCY_H
#define TWOPC_IDEMPOTENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define IDEM_KEY_MAX 255
#define IDEM_FP_LEN  32 /* SHA-256 of the request body */

typedef struct IdemStore IdemStore;
typedef struct IdemEntry IdemEntry;

typedef enum IdemLookup {
	IDEM_NEW,       /* unknown key: now reserved (in flight) for this request */
	IDEM_IN_FLIGHT, /* the first request with this key is still running: 409 */
	IDEM_MISMATCH,  /* the key was used with another body: 422 */
	IDEM_REPLAY,    /* finished: replay the remembered response */
	IDEM_FULL,      /* no room for another key: 503 */
} IdemLookup;

typedef struct IdemStats {
	uint64_t keys;     /* in the table, in flight or finished */
	uint64_t bytes;    /* what they account for */
	uint64_t replays;  /* responses replayed */
	uint64_t expired;  /* keys forgotten after their time */
	uint64_t refused;  /* new keys refused because the table was full */
} IdemStats;

IdemStore *idem_new(int64_t ttl_ms, int64_t max_bytes);
void idem_free(IdemStore *s);

/* Parses an Idempotency-Key header value: an sf-string ("...", with \" and
 * \\ escapes) as the draft specifies, or a bare value for clients that do
 * not quote. On failure, err says why. */
bool idem_parse_key(const char *header, char *key, size_t keylen, char *err, size_t errlen) WARN_UNUSED;

/* Looks a key up; for IDEM_NEW the key is reserved and *out is its entry,
 * for IDEM_REPLAY *out is the finished entry. */
IdemLookup idem_begin(IdemStore *s, const char *key, const uint8_t fp[IDEM_FP_LEN], IdemEntry **out);
/* The transaction of an in-flight entry committed (its COMMIT record with
 * this response is durable): remember the response until decided + ttl. */
void idem_finish(IdemStore *s, IdemEntry *e, uint64_t txn_id, int64_t decided_wall_ms, int status,
                 const char *response, size_t len);
/* The transaction of an in-flight entry aborted: forget the key. */
void idem_release(IdemStore *s, IdemEntry *e);
/* Startup: a finished key found in the decision log (ignored if expired);
 * any order, then idem_restore_done() once. */
void idem_restore(IdemStore *s, const char *key, const uint8_t fp[IDEM_FP_LEN], uint64_t txn_id,
                  int64_t decided_wall_ms, int status, const char *response, size_t len, int64_t now_wall_ms);
void idem_restore_done(IdemStore *s);
/* Forgets finished keys whose time is up. */
void idem_expire(IdemStore *s, int64_t now_wall_ms);

const char *idem_entry_key(const IdemEntry *e);
const uint8_t *idem_entry_fingerprint(const IdemEntry *e);
/* A finished entry's remembered response. */
int idem_entry_status(const IdemEntry *e);
const char *idem_entry_response(const IdemEntry *e, size_t *len);
uint64_t idem_entry_txn(const IdemEntry *e);
/* Seconds until the oldest finished key expires (for Retry-After when full). */
int64_t idem_seconds_until_room(const IdemStore *s, int64_t now_wall_ms);

void idem_get_stats(const IdemStore *s, IdemStats *out);

#endif
