/*
 * idempotency: a chained hash table of keys, plus the finished entries in
 * expiry order (one list: every key lives for the same ttl after its
 * decision, so appending keeps it sorted and expiry looks at the head only).
 */
#include "idempotency.h"

#include <stdlib.h>
#include <string.h>

struct IdemEntry {
	char *key;
	uint8_t fp[IDEM_FP_LEN];
	bool finished;
	int status;
	char *response;
	size_t response_len;
	uint64_t txn_id;
	int64_t expires_ms;
	size_t bytes;
	IdemEntry *chain;            /* hash bucket */
	IdemEntry *older, *newer;    /* expiry list (finished only) */
};

struct IdemStore {
	int64_t ttl_ms;
	int64_t max_bytes;
	IdemEntry **buckets;
	size_t nbuckets; /* a power of two */
	IdemEntry *oldest, *newest;
	IdemEntry **restored; /* idem_restore() .. idem_restore_done() */
	size_t nrestored;
	IdemStats stats;
};

/* FNV-1a, 64 bit. */
static uint64_t key_hash(const char *key)
{
	uint64_t h = 14695981039346656037ULL;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

IdemStore *idem_new(int64_t ttl_ms, int64_t max_bytes)
{
	IdemStore *s = xcalloc(1, sizeof(*s));

	s->ttl_ms = ttl_ms;
	s->max_bytes = max_bytes;
	/* Small at start (most deployments send few keys or none); insert()
	 * doubles it as keys come. */
	s->nbuckets = 64;
	s->buckets = xcalloc(s->nbuckets, sizeof(IdemEntry *));
	return s;
}

static void entry_free(IdemEntry *e)
{
	free(e->key);
	free(e->response);
	free(e);
}

void idem_free(IdemStore *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (IdemEntry *e = s->buckets[i], *next; e; e = next) {
			next = e->chain;
			entry_free(e);
		}
	}
	free(s->buckets);
	free(s->restored);
	free(s);
}

bool idem_parse_key(const char *h, char *key, size_t keylen, char *err, size_t errlen)
{
	size_t n = 0;

	if (*h == '"') {
		/* RFC 8941 sf-string: printable ASCII, \" and \\ escaped. */
		for (h++;; h++) {
			if (*h == '\0')
				return errf(err, errlen, "unterminated quoted string");
			if (*h == '"')
				break;
			if (*h == '\\') {
				h++;
				if (*h != '"' && *h != '\\')
					return errf(err, errlen, "only \\\" and \\\\ may be escaped in a quoted key");
			}
			if ((unsigned char)*h < 0x20 || (unsigned char)*h > 0x7e)
				return errf(err, errlen, "the key may contain printable ASCII only");
			if (n + 1 >= keylen || n >= IDEM_KEY_MAX)
				return errf(err, errlen, "the key is longer than %d characters", IDEM_KEY_MAX);
			key[n++] = *h;
		}
		if (h[1] != '\0')
			return errf(err, errlen, "unexpected text after the quoted key (parameters are not supported)");
	} else {
		for (; *h; h++) {
			if ((unsigned char)*h <= 0x20 || (unsigned char)*h > 0x7e || *h == '"' || *h == '\\')
				return errf(err, errlen, "an unquoted key may contain visible ASCII only, without quotes "
				                         "or backslashes; send it as a quoted string");
			if (n + 1 >= keylen || n >= IDEM_KEY_MAX)
				return errf(err, errlen, "the key is longer than %d characters", IDEM_KEY_MAX);
			key[n++] = *h;
		}
	}
	if (n == 0)
		return errf(err, errlen, "the key is empty");
	key[n] = '\0';
	return true;
}

static IdemEntry *lookup(const IdemStore *s, const char *key, IdemEntry ***link)
{
	IdemEntry **pp = &s->buckets[key_hash(key) & (s->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->chain) {
		if (strcmp((*pp)->key, key) == 0)
			break;
	}
	if (link)
		*link = pp;
	return *pp;
}

static void grow(IdemStore *s)
{
	size_t n = s->nbuckets * 2;
	IdemEntry **b = xcalloc(n, sizeof(IdemEntry *));

	for (size_t i = 0; i < s->nbuckets; i++) {
		for (IdemEntry *e = s->buckets[i], *next; e; e = next) {
			next = e->chain;
			IdemEntry **head = &b[key_hash(e->key) & (n - 1)];
			e->chain = *head;
			*head = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static IdemEntry *insert(IdemStore *s, const char *key, const uint8_t fp[IDEM_FP_LEN])
{
	IdemEntry *e = xcalloc(1, sizeof(*e)), **head;

	if (s->stats.keys + 1 > s->nbuckets)
		grow(s);
	e->key = xstrdup(key);
	memcpy(e->fp, fp, IDEM_FP_LEN);
	e->bytes = sizeof(*e) + strlen(key) + 1;
	head = &s->buckets[key_hash(key) & (s->nbuckets - 1)];
	e->chain = *head;
	*head = e;
	s->stats.keys++;
	s->stats.bytes += e->bytes;
	return e;
}

static void unlink_expiry(IdemStore *s, IdemEntry *e)
{
	if (e->older)
		e->older->newer = e->newer;
	else if (s->oldest == e)
		s->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else if (s->newest == e)
		s->newest = e->older;
	e->older = e->newer = NULL;
}

static void remove_entry(IdemStore *s, IdemEntry *e)
{
	IdemEntry **pp;

	lookup(s, e->key, &pp);
	if (*pp == e)
		*pp = e->chain;
	unlink_expiry(s, e);
	s->stats.keys--;
	s->stats.bytes -= e->bytes;
	entry_free(e);
}

/* Appends to the expiry list, keeping it sorted (entries normally arrive
 * in order, so this looks at the tail only). */
static void link_expiry(IdemStore *s, IdemEntry *e)
{
	IdemEntry *after = s->newest;

	while (after != NULL && after->expires_ms > e->expires_ms)
		after = after->older;
	e->older = after;
	e->newer = after ? after->newer : s->oldest;
	if (e->newer)
		e->newer->older = e;
	else
		s->newest = e;
	if (after)
		after->newer = e;
	else
		s->oldest = e;
}

IdemLookup idem_begin(IdemStore *s, const char *key, const uint8_t fp[IDEM_FP_LEN], IdemEntry **out)
{
	IdemEntry *e = lookup(s, key, NULL);

	*out = NULL;
	if (e != NULL) {
		/* A different body is a client error whatever the first one's state. */
		if (memcmp(e->fp, fp, IDEM_FP_LEN) != 0)
			return IDEM_MISMATCH;
		if (!e->finished)
			return IDEM_IN_FLIGHT;
		s->stats.replays++;
		*out = e;
		return IDEM_REPLAY;
	}
	/* Room for the key now; the response is counted when it is known (a
	 * committed response is bounded by idempotency_max_response_bytes). */
	if ((int64_t)(s->stats.bytes + sizeof(IdemEntry) + strlen(key) + 1) > s->max_bytes) {
		s->stats.refused++;
		return IDEM_FULL;
	}
	*out = insert(s, key, fp);
	return IDEM_NEW;
}

static void set_response(IdemStore *s, IdemEntry *e, uint64_t txn_id, int64_t decided_wall_ms, int status,
                         const char *response, size_t len)
{
	e->finished = true;
	e->txn_id = txn_id;
	e->status = status;
	e->response = xmalloc(len + 1);
	memcpy(e->response, response, len);
	e->response[len] = '\0';
	e->response_len = len;
	e->bytes += len + 1;
	s->stats.bytes += len + 1;
	e->expires_ms = decided_wall_ms + s->ttl_ms;
}

void idem_finish(IdemStore *s, IdemEntry *e, uint64_t txn_id, int64_t decided_wall_ms, int status,
                 const char *response, size_t len)
{
	/* Remembered even past max_bytes: the decision is already durable,
	 * and forgetting it would let a retry commit twice. The next new key
	 * waits for room instead. */
	set_response(s, e, txn_id, decided_wall_ms, status, response, len);
	link_expiry(s, e);
}

void idem_release(IdemStore *s, IdemEntry *e)
{
	remove_entry(s, e);
}

void idem_restore(IdemStore *s, const char *key, const uint8_t fp[IDEM_FP_LEN], uint64_t txn_id,
                  int64_t decided_wall_ms, int status, const char *response, size_t len, int64_t now_wall_ms)
{
	IdemEntry *e;

	if (decided_wall_ms + s->ttl_ms <= now_wall_ms || lookup(s, key, NULL) != NULL)
		return;
	e = insert(s, key, fp);
	set_response(s, e, txn_id, decided_wall_ms, status, response, len);
	s->restored = xrealloc(s->restored, (s->nrestored + 1) * sizeof(IdemEntry *));
	s->restored[s->nrestored++] = e;
}

static int cmp_expiry(const void *a, const void *b)
{
	const IdemEntry *x = *(IdemEntry *const *)a, *y = *(IdemEntry *const *)b;
	return (x->expires_ms > y->expires_ms) - (x->expires_ms < y->expires_ms);
}

void idem_restore_done(IdemStore *s)
{
	if (s->nrestored == 0) /* qsort(NULL, 0, ...) is undefined */
		return;
	qsort(s->restored, s->nrestored, sizeof(IdemEntry *), cmp_expiry);
	for (size_t i = 0; i < s->nrestored; i++)
		link_expiry(s, s->restored[i]);
	free(s->restored);
	s->restored = NULL;
	s->nrestored = 0;
}

void idem_expire(IdemStore *s, int64_t now_wall_ms)
{
	while (s->oldest != NULL && s->oldest->expires_ms <= now_wall_ms) {
		remove_entry(s, s->oldest);
		s->stats.expired++;
	}
}

const char *idem_entry_key(const IdemEntry *e)
{
	return e->key;
}

const uint8_t *idem_entry_fingerprint(const IdemEntry *e)
{
	return e->fp;
}

int idem_entry_status(const IdemEntry *e)
{
	return e->status;
}

const char *idem_entry_response(const IdemEntry *e, size_t *len)
{
	*len = e->response_len;
	return e->response;
}

uint64_t idem_entry_txn(const IdemEntry *e)
{
	return e->txn_id;
}

int64_t idem_seconds_until_room(const IdemStore *s, int64_t now_wall_ms)
{
	int64_t ms;

	if (s->oldest == NULL)
		return 1;
	ms = s->oldest->expires_ms - now_wall_ms;
	return ms <= 1000 ? 1 : (ms + 999) / 1000;
}

void idem_get_stats(const IdemStore *s, IdemStats *out)
{
	*out = s->stats;
}
