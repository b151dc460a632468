/*
 * idmap: a hash map from 64-bit ids to pointers (open addressing, linear
 * probing, backward-shift deletion). Used for the in-flight transaction
 * table, the recent-outcome cache and the decision log's live COMMITs.
 * Id 0 is reserved as the empty marker.
 */
#ifndef TWOPC_IDMAP_H
#define TWOPC_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct IdMap {
	uint64_t *keys;
	void **vals;
	size_t cap; /* power of two */
	size_t count;
} IdMap;

void idmap_init(IdMap *m);
void idmap_free(IdMap *m);
/* Inserts or replaces. */
void idmap_put(IdMap *m, uint64_t key, void *val);
/* Returns the value or NULL. */
void *idmap_get(const IdMap *m, uint64_t key);
bool idmap_contains(const IdMap *m, uint64_t key);
/* Removes; returns the old value or NULL. */
void *idmap_del(IdMap *m, uint64_t key);

/* Iteration: for (size_t i = 0; idmap_next(m, &i, &k, &v);) */
bool idmap_next(const IdMap *m, size_t *pos, uint64_t *key, void **val);

#endif
