/*
 * gid: the global transaction ids we give PREPARE TRANSACTION.
 *
 *   twopc_<coordinator id>_<txn id: 16 lowercase hex>_<participant index>
 *
 * The fixed prefix and our coordinator id let the sweeper and recovery pick
 * out our own prepared transactions; the participant index keeps two
 * participants on one server (pg_prepared_xacts is server-wide) apart.
 * A GID is never built from client input.
 */
#ifndef TWOPC_GID_H
#define TWOPC_GID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define GID_PREFIX   "twopc_"
#define GID_MAX      200 /* PostgreSQL's limit is 200 bytes including the NUL */
#define COORD_ID_MAX 32  /* longest coordinator id */
#define TXN_ID_HEX   16
/* Room for one of our GIDs: prefix, id, '_', 16 hex, '_', index, NUL. */
#define GID_OURS_MAX (sizeof(GID_PREFIX) - 1 + COORD_ID_MAX + 1 + TXN_ID_HEX + 1 + 5 + 1)

/* Formats a GID into buf (GID_MAX bytes). */
bool gid_build(char *buf, size_t buflen, const char *coord_id, uint64_t txn_id, unsigned participant_index) WARN_UNUSED;

/* The hot path's gid_build(), for the transaction manager: prefix is
 * gid_prefix()'s "twopc_<coordinator id>_" (plen bytes), id_hex the
 * transaction id as txn_id_format() writes it. Writes the GID at p without
 * a NUL (room: GID_OURS_MAX) and returns its length. Same text as
 * gid_build(). */
size_t gid_write(char *p, const char *prefix, size_t plen, const char *id_hex, unsigned participant_index);
/* "twopc_<coordinator id>_" into buf (GID_OURS_MAX bytes); its length. */
size_t gid_prefix(char *buf, const char *coord_id);

/* Parses a GID; false when it is not ours (other prefix, other coordinator,
 * malformed). */
bool gid_parse(const char *gid, const char *coord_id, uint64_t *txn_id, unsigned *participant_index) WARN_UNUSED;

/* The LIKE pattern that selects our GIDs: "twopc\_<coord id>\_%". */
void gid_like_pattern(char *buf, size_t buflen, const char *coord_id);

/* Transaction ids as shown in the API and the logs: 16 lowercase hex digits. */
void txn_id_format(char buf[TXN_ID_HEX + 1], uint64_t txn_id);
bool txn_id_parse(const char *s, uint64_t *txn_id) WARN_UNUSED;

/* Coordinator ids: 1..COORD_ID_MAX of [A-Za-z0-9_]. An id may contain '_':
 * parsing anchors on the configured id and then demands exactly 16 hex
 * digits, '_' and a decimal index, so "c1" never claims "c1_x"'s GIDs. */
bool coord_id_valid(const char *id) WARN_UNUSED;

#endif
