/*
 * idmap: u64 -> pointer hash map, grown at 50 % load.
 */
#include "idmap.h"

#include <stdlib.h>

#include "util.h"

static inline size_t slot_of(uint64_t key, size_t cap)
{
	/* Transaction ids are sequential: mix them so neighbours spread out. */
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

void idmap_init(IdMap *m)
{
	m->cap = 16;
	m->count = 0;
	m->keys = xcalloc(m->cap, sizeof(uint64_t));
	m->vals = xcalloc(m->cap, sizeof(void *));
}

void idmap_free(IdMap *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->count = 0;
}

static void grow(IdMap *m)
{
	uint64_t *okeys = m->keys;
	void **ovals = m->vals;
	size_t ocap = m->cap;

	m->cap *= 2;
	m->count = 0;
	m->keys = xcalloc(m->cap, sizeof(uint64_t));
	m->vals = xcalloc(m->cap, sizeof(void *));
	for (size_t i = 0; i < ocap; i++) {
		if (okeys[i] != 0)
			idmap_put(m, okeys[i], ovals[i]);
	}
	free(okeys);
	free(ovals);
}

void idmap_put(IdMap *m, uint64_t key, void *val)
{
	size_t i;

	if ((m->count + 1) * 2 > m->cap)
		grow(m);
	for (i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return;
		}
		if (m->keys[i] == 0)
			break;
	}
	m->keys[i] = key;
	m->vals[i] = val;
	m->count++;
}

static bool find(const IdMap *m, uint64_t key, size_t *pos)
{
	if (key == 0 || m->cap == 0)
		return false;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			*pos = i;
			return true;
		}
		if (m->keys[i] == 0)
			return false;
	}
}

void *idmap_get(const IdMap *m, uint64_t key)
{
	size_t i;
	return find(m, key, &i) ? m->vals[i] : NULL;
}

bool idmap_contains(const IdMap *m, uint64_t key)
{
	size_t i;
	return find(m, key, &i);
}

void *idmap_del(IdMap *m, uint64_t key)
{
	size_t i, j;
	void *old;

	if (!find(m, key, &i))
		return NULL;
	old = m->vals[i];
	/* Backward-shift: pull later entries of the probe run into the hole. */
	for (j = (i + 1) & (m->cap - 1); m->keys[j] != 0; j = (j + 1) & (m->cap - 1)) {
		size_t home = slot_of(m->keys[j], m->cap);
		bool between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->count--;
	return old;
}

bool idmap_next(const IdMap *m, size_t *pos, uint64_t *key, void **val)
{
	for (; *pos < m->cap; (*pos)++) {
		if (m->keys[*pos] != 0) {
			*key = m->keys[*pos];
			if (val)
				*val = m->vals[*pos];
			(*pos)++;
			return true;
		}
	}
	return false;
}
