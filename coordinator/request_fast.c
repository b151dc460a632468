/*
 * request_fast: the common POST /v1/transactions body, parsed in one pass
 * straight into a TxnRequest, without jansson.
 *
 * Why: jansson builds a tree (a malloc per value, a hash table per object)
 * that request.c then walks; for the typical two-branch transfer that costs
 * about 75,000 instructions, more than a whole transaction may cost. This
 * pass costs a few thousand.
 *
 * Why it is safe: it is strict and it gives up easily. It returns true only
 * for a body that request_parse_json (jansson with JSON_REJECT_DUPLICATES,
 * then request.c's checks) accepts, and then fills the same TxnRequest.
 * For anything else it returns false and request_parse hands the same bytes
 * to the jansson path, which accepts them or rejects them with its precise
 * message. So no body is ever rejected here, and what this file does not
 * know costs speed, never correctness. It leaves to jansson:
 *   - everything invalid: malformed JSON, duplicate keys, unknown keys or
 *     participants, limits exceeded, refused statements, ...
 *   - valid rarities: reals and exponents (request.c formats them), objects
 *     and arrays as parameters, integers of more than 18 digits, keys with
 *     escapes or non-ASCII bytes, bodies over FAST_MAX_BODY.
 * It handles strings fully: every escape, \u with surrogate pairs (but not
 * \u0000, which jansson refuses), UTF-8 checked by jansson's rules.
 * tests/fuzz_request.c runs both paths on every input and aborts when this
 * one accepts what the other rejects or their requests differ.
 *
 * Memory: the pass builds the request in a scratch area with room for at
 * most one branch per participant, N statements, M parameter slots and
 * len bytes of text (a string never grows when unescaped, and an
 * integer's text with its NUL fits in its digits and the byte after them).
 * For a body of up to about 1 KB N and M come from its length alone (a
 * statement takes at least 11 bytes, a parameter 2; the area then takes
 * about 8 bytes per byte of body), and the area is on the stack.
 * For a larger one they are counted: one statement per '{' but the body's
 * and "branches"', one parameter per ',' or statement (each parameter
 * follows a ',' or opens its statement's list); the area is on the heap.
 * Each allocation is checked against its region's end anyway. The bounds
 * may be several times what a body needs (a ',' inside a string counts as
 * a parameter), so bodies over FAST_MAX_BODY, rare, go to jansson: the
 * area stays under a few MB whatever the body. What the pass used is then
 * copied, packed, into one block of exactly its size (TxnRequest.arena):
 * a request stays in memory as long as its transaction is in flight.
 */
#include "request_int.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Larger bodies are left to jansson (see above). */
#define FAST_MAX_BODY (64 * 1024)

/* Byte classes. C_PLAIN: stands for itself inside a string (printable
 * ASCII but '"' and '\\'). C_WS: JSON whitespace (space, \t, \n, \r).
 * 0x80 to 0xff are 0: UTF-8, see utf8_char. */
enum { C_PLAIN = 1, C_WS = 2 };
#define P C_PLAIN
#define W C_WS
#define S (C_PLAIN | C_WS)
static const unsigned char char_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, W, W, 0, 0, W, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    S, P, 0, P, P, P, P, P, P, P, P, P, P, P, P, P, /* 0x20: ' ', '"' */
    P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, /* 0x30 */
    P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, /* 0x40 */
    P, P, P, P, P, P, P, P, P, P, P, P, 0, P, P, P, /* 0x50: '\\' */
    P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, /* 0x60 */
    P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, /* 0x70 */
};
#undef P
#undef W
#undef S

typedef struct Fast {
	const unsigned char *p; /* the next byte */
	const unsigned char *end;
	const Config *cfg;
	size_t branch_cap;               /* TxnRequest.branches' room */
	ReqStatement *stmt, *stmt_end;   /* the arena's free statements */
	const char **param, **param_end; /* its free parameter slots */
	char *text, *text_end;           /* its free text */
} Fast;

/* What follows a member or an element. */
enum { SEP_MORE, SEP_END, SEP_BAD };

#define KEY_IS(k, klen, lit) ((klen) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

static inline void skip_ws(Fast *f)
{
	const unsigned char *p = f->p;

	while (p < f->end && (char_class[*p] & C_WS))
		p++;
	f->p = p;
}

/* The run of plain bytes at p, a string's. Eight at a time while they are
 * all plain (SQL text is most of a body), then one by one (a key, mostly
 * shorter than eight bytes, takes only the second loop): the bit tricks,
 * where (x - 0x01..) & ~x & 0x80.. is non-zero if and only if a byte of x
 * is 0, and (x - 0x20..) & ~x & 0x80.. if one is below 0x20. */
static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;

	while (end - p >= 8) {
		uint64_t w, quote, backslash;

		memcpy(&w, p, 8);
		quote = w ^ (ones * '"');
		backslash = w ^ (ones * '\\');
		if ((w | ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash)) &
		    highs)
			break;
		p += 8;
	}
	while (p < end && (char_class[*p] & C_PLAIN))
		p++;
	return p;
}

/* Skips whitespace, then takes c if it comes next. */
static inline bool take(Fast *f, unsigned char c)
{
	skip_ws(f);
	if (f->p < f->end && *f->p == c) {
		f->p++;
		return true;
	}
	return false;
}

/* After a member or an element: ',' or the closing byte. */
static inline int separator(Fast *f, unsigned char close)
{
	skip_ws(f);
	if (f->p < f->end) {
		if (*f->p == ',') {
			f->p++;
			return SEP_MORE;
		}
		if (*f->p == close) {
			f->p++;
			return SEP_END;
		}
	}
	return SEP_BAD;
}

/* A key and the ':' after it. Only plain bytes: a key with an escape or a
 * non-ASCII byte is none of ours anyway, so jansson may say so. */
static bool key(Fast *f, const char **k, size_t *klen)
{
	const unsigned char *s, *p, *end = f->end;

	if (!take(f, '"'))
		return false;
	s = p = f->p;
	while (p < end && (char_class[*p] & C_PLAIN))
		p++;
	if (p == end || *p != '"')
		return false;
	*k = (const char *)s;
	*klen = (size_t)(p - s);
	f->p = p + 1;
	return take(f, ':');
}

/* Room for n more bytes of text and a NUL after them. */
static inline bool text_room(const Fast *f, const char *t, size_t n)
{
	return n < (size_t)(f->text_end - t);
}

/* 4 hex digits at p, or -1. */
static long hex4(const unsigned char *p)
{
	long v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned c = p[i];
		if (c >= '0' && c <= '9')
			v = v * 16 + (c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v = v * 16 + ((c | 0x20) - 'a' + 10);
		else
			return -1;
	}
	return v;
}

/* A \u escape at f->p (the backslash), or a surrogate pair of them, as
 * UTF-8 at *tp. jansson's rules: a high surrogate needs a low one right
 * after it, a lone low surrogate is an error, and \u0000 is refused. */
static bool unicode_escape(Fast *f, char **tp)
{
	const unsigned char *p = f->p;
	char *t = *tp;
	long cp, lo;
	size_t n;

	if (f->end - p < 6 || (cp = hex4(p + 2)) < 0)
		return false;
	p += 6;
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		if (f->end - p < 6 || p[0] != '\\' || p[1] != 'u' || (lo = hex4(p + 2)) < 0xDC00 || lo > 0xDFFF)
			return false;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		p += 6;
	} else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
		return false;
	}
	n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
	if (!text_room(f, t, n))
		return false;
	switch (n) {
	case 1:
		t[0] = (char)cp;
		break;
	case 2:
		t[0] = (char)(0xC0 | (cp >> 6));
		t[1] = (char)(0x80 | (cp & 0x3F));
		break;
	case 3:
		t[0] = (char)(0xE0 | (cp >> 12));
		t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		t[2] = (char)(0x80 | (cp & 0x3F));
		break;
	default:
		t[0] = (char)(0xF0 | (cp >> 18));
		t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		t[3] = (char)(0x80 | (cp & 0x3F));
		break;
	}
	*tp = t + n;
	f->p = p;
	return true;
}

/* An escape at f->p (the backslash), decoded to *tp. */
static bool escape(Fast *f, char **tp)
{
	char c;

	if (f->end - f->p < 2)
		return false;
	switch (f->p[1]) {
	case '"':
	case '\\':
	case '/':
		c = (char)f->p[1];
		break;
	case 'b':
		c = '\b';
		break;
	case 'f':
		c = '\f';
		break;
	case 'n':
		c = '\n';
		break;
	case 'r':
		c = '\r';
		break;
	case 't':
		c = '\t';
		break;
	case 'u':
		return unicode_escape(f, tp);
	default:
		return false;
	}
	if (!text_room(f, *tp, 1))
		return false;
	*(*tp)++ = c;
	f->p += 2;
	return true;
}

/* A multi-byte UTF-8 character at f->p, copied to *tp if it is valid by
 * jansson's rules (utf8_check_full): no overlong forms, no surrogates,
 * nothing past U+10FFFF. */
static bool utf8_char(Fast *f, char **tp)
{
	const unsigned char *p = f->p;
	unsigned long cp, min;
	size_t n;

	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2, cp = p[0] & 0x1Fu, min = 0x80;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3, cp = p[0] & 0x0Fu, min = 0x800;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4, cp = p[0] & 0x07u, min = 0x10000;
	else
		return false;
	if ((size_t)(f->end - p) < n)
		return false;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return false;
		cp = (cp << 6) | (p[i] & 0x3Fu);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return false;
	if (!text_room(f, *tp, n))
		return false;
	memcpy(*tp, p, n);
	*tp += n;
	f->p += n;
	return true;
}

/* A string value, unescaped into the arena's text with a NUL. */
static bool string(Fast *f, const char **out)
{
	char *t = f->text;

	if (f->p == f->end || *f->p != '"')
		return false;
	f->p++;
	for (;;) {
		const unsigned char *run = f->p;
		size_t n;

		f->p = skip_plain(run, f->end);
		n = (size_t)(f->p - run);
		if (!text_room(f, t, n))
			return false;
		memcpy(t, run, n);
		t += n;
		if (f->p == f->end)
			return false;
		if (*f->p == '"')
			break;
		if (*f->p == '\\') {
			if (!escape(f, &t))
				return false;
		} else if (*f->p >= 0x80) {
			if (!utf8_char(f, &t))
				return false;
		} else {
			return false; /* a raw control character */
		}
	}
	f->p++;
	*t++ = '\0';
	*out = f->text;
	f->text = t;
	return true;
}

/* An integer of at most 18 digits, so that it cannot overflow. A real (a
 * fraction or an exponent) or a longer integer is left to jansson. */
static bool integer(Fast *f, int64_t *out)
{
	const unsigned char *p = f->p, *end = f->end, *digits;
	bool neg = false;
	int64_t v = 0;

	if (p < end && *p == '-')
		neg = true, p++;
	if (p == end || *p < '0' || *p > '9')
		return false;
	if (*p == '0') {
		/* 01 is not JSON. */
		if (++p < end && *p >= '0' && *p <= '9')
			return false;
	} else {
		digits = p;
		while (p < end && *p >= '0' && *p <= '9') {
			if (p - digits == 18)
				return false;
			v = v * 10 + (*p++ - '0');
		}
	}
	if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
		return false;
	f->p = p;
	*out = neg ? -v : v;
	return true;
}

/* An integer parameter's text: what request.c prints for the json_int_t,
 * which is the token itself (JSON has no leading zeros or '+') except that
 * -0 is 0. */
static bool integer_text(Fast *f, const unsigned char *token, int64_t v, const char **out)
{
	size_t n = (size_t)(f->p - token);

	if (v == 0)
		token = (const unsigned char *)"0", n = 1;
	if (!text_room(f, f->text, n))
		return false;
	memcpy(f->text, token, n);
	f->text[n] = '\0';
	*out = f->text;
	f->text += n + 1;
	return true;
}

/* The n bytes of lit at f->p; what follows is the caller's to check. */
static bool literal(Fast *f, const char *lit, size_t n)
{
	if ((size_t)(f->end - f->p) < n || memcmp(f->p, lit, n) != 0)
		return false;
	f->p += n;
	return true;
}

/* One parameter: null (SQL NULL), a string, true, false or an integer. */
static bool param(Fast *f, const char **out)
{
	const unsigned char *start;
	int64_t v;

	skip_ws(f);
	start = f->p;
	if (f->p == f->end)
		return false;
	switch (*f->p) {
	case '"':
		return string(f, out);
	case 'n':
		*out = NULL;
		return literal(f, "null", 4);
	case 't':
		*out = "true";
		return literal(f, "true", 4);
	case 'f':
		*out = "false";
		return literal(f, "false", 5);
	default:
		return integer(f, &v) && integer_text(f, start, v, out);
	}
}

static bool params(Fast *f, ReqStatement *s)
{
	int sep;

	if (!take(f, '['))
		return false;
	/* Not NULL even for [], as in the jansson path. */
	s->params = f->param;
	if (take(f, ']'))
		return true;
	do {
		if (s->nparams >= f->cfg->max_params || f->param == f->param_end)
			return false;
		if (!param(f, f->param))
			return false;
		f->param++;
		s->nparams++;
	} while ((sep = separator(f, ']')) == SEP_MORE);
	return sep == SEP_END;
}

/* {"sql": ..., "params": [...], "expect_rows": N}, each key at most once. */
static bool statement(Fast *f, ReqStatement *s)
{
	bool have_sql = false, have_params = false, have_expect = false;
	const char *k;
	size_t klen;
	int sep;

	s->sql = NULL;
	s->nparams = 0;
	s->params = NULL;
	s->expect_rows = -1;
	if (!take(f, '{'))
		return false;
	do {
		if (!key(f, &k, &klen))
			return false;
		skip_ws(f);
		if (KEY_IS(k, klen, "sql") && !have_sql) {
			have_sql = true;
			if (!string(f, &s->sql) || s->sql[0] == '\0')
				return false;
		} else if (KEY_IS(k, klen, "params") && !have_params) {
			have_params = true;
			if (!params(f, s))
				return false;
		} else if (KEY_IS(k, klen, "expect_rows") && !have_expect) {
			have_expect = true;
			if (!integer(f, &s->expect_rows) || s->expect_rows < 0)
				return false;
		} else {
			return false; /* unknown or repeated */
		}
	} while ((sep = separator(f, '}')) == SEP_MORE);
	return sep == SEP_END && have_sql && request_refusal(s->sql) == NULL;
}

static bool statements(Fast *f, ReqBranch *b)
{
	int sep;

	if (!take(f, '['))
		return false;
	b->stmts = f->stmt;
	b->nstmts = 0;
	do {
		if ((int64_t)b->nstmts >= f->cfg->max_statements || f->stmt == f->stmt_end)
			return false;
		if (!statement(f, f->stmt))
			return false;
		f->stmt++;
		b->nstmts++;
	} while ((sep = separator(f, ']')) == SEP_MORE);
	return sep == SEP_END;
}

/* The participant named k, as config_find_participant finds it. */
static const ParticipantConfig *participant(const Config *cfg, const char *k, size_t klen)
{
	if (klen > PARTICIPANT_NAME_MAX)
		return NULL;
	for (size_t i = 0; i < cfg->nparticipants; i++) {
		const char *name = cfg->participants[i].name;
		if (memcmp(name, k, klen) == 0 && name[klen] == '\0')
			return &cfg->participants[i];
	}
	return NULL;
}

/* {"participant": [statements], ...}: known participants, each once. */
static bool branches(Fast *f, TxnRequest *req)
{
	uint64_t seen = 0;
	const char *k;
	size_t klen;
	int sep;

	if (!take(f, '{'))
		return false;
	do {
		const ParticipantConfig *p;
		size_t i;

		if (!key(f, &k, &klen) || (p = participant(f->cfg, k, klen)) == NULL)
			return false;
		i = (size_t)(p - f->cfg->participants);
		if (i >= 64 || (seen & (UINT64_C(1) << i)) != 0)
			return false;
		seen |= UINT64_C(1) << i;
		if ((int64_t)req->nbranches >= f->cfg->max_branches || req->nbranches == f->branch_cap)
			return false;
		req->branches[req->nbranches].participant = p;
		if (!statements(f, &req->branches[req->nbranches]))
			return false;
		req->nbranches++;
	} while ((sep = separator(f, '}')) == SEP_MORE);
	return sep == SEP_END;
}

/* {"branches": {...}, "timeout_ms": N} in either order, then only
 * whitespace. */
static bool top_object(Fast *f, TxnRequest *req)
{
	bool have_branches = false, have_timeout = false;
	const char *k;
	size_t klen;
	int sep;

	req->timeout_ms = f->cfg->default_timeout_ms;
	if (!take(f, '{'))
		return false;
	do {
		if (!key(f, &k, &klen))
			return false;
		skip_ws(f);
		if (KEY_IS(k, klen, "branches") && !have_branches) {
			have_branches = true;
			if (!branches(f, req))
				return false;
		} else if (KEY_IS(k, klen, "timeout_ms") && !have_timeout) {
			have_timeout = true;
			if (!integer(f, &req->timeout_ms) || req->timeout_ms < 1 ||
			    req->timeout_ms > f->cfg->max_timeout_ms)
				return false;
		} else {
			return false; /* unknown or repeated */
		}
	} while ((sep = separator(f, '}')) == SEP_MORE);
	skip_ws(f);
	return sep == SEP_END && have_branches && f->p == f->end;
}

static size_t count_byte(const char *s, size_t len, int c)
{
	const char *end = s + len;
	size_t n = 0;

	while ((s = memchr(s, c, (size_t)(end - s))) != NULL) {
		n++;
		s++;
	}
	return n;
}

/* Where the pass builds the request: room for up to nbranches branches,
 * nstmts statements, nparams parameter slots and len + 1 bytes of text,
 * in that order from base. */
typedef struct Scratch {
	char *base;
	size_t nbranches, nstmts, nparams;
} Scratch;

/* The branches' region, rounded up so that the statements after it are
 * aligned (ReqStatement holds an int64_t: 8 bytes where ReqBranch is 12). */
static size_t branches_size(size_t n)
{
	size_t a = _Alignof(ReqStatement);

	return (n * sizeof(ReqBranch) + a - 1) / a * a;
}

static size_t scratch_size(const Scratch *sc, size_t len)
{
	return branches_size(sc->nbranches) + sc->nstmts * sizeof(ReqStatement) + sc->nparams * sizeof(char *) + len +
	       1;
}

/* P moved from the region [lo, lo + n) to `to`, or P itself when it points
 * elsewhere (NULL, a literal such as "true"). */
static const char *moved(const char *p, const char *lo, size_t n, char *to)
{
	return p != NULL && (uintptr_t)p >= (uintptr_t)lo && (uintptr_t)p < (uintptr_t)lo + n ? to + (p - lo) : p;
}

/* Copies what the pass used of the scratch, each region packed after the
 * previous one, into one block of exactly that size (it stays in memory as
 * long as the transaction is in flight), and points everything at it. */
static void keep_request(TxnRequest *req, const Fast *f, const Scratch *sc)
{
	const char *stmts0 = sc->base + branches_size(sc->nbranches);
	const char *params0 = stmts0 + sc->nstmts * sizeof(ReqStatement);
	const char *text0 = params0 + sc->nparams * sizeof(char *);
	size_t nb = branches_size(req->nbranches), ns = (size_t)((const char *)f->stmt - stmts0),
	       np = (size_t)((const char *)f->param - params0), nt = (size_t)(f->text - text0);
	char *a = xmalloc(nb + ns + np + nt), *stmts = a + nb, *params = stmts + ns, *text = params + np;

	memcpy(a, sc->base, nb);
	memcpy(stmts, stmts0, ns);
	memcpy(params, params0, np);
	memcpy(text, text0, nt);
	req->arena = a;
	req->branches = (ReqBranch *)(void *)a;
	for (size_t i = 0; i < req->nbranches; i++) {
		ReqBranch *b = &req->branches[i];
		b->stmts = (ReqStatement *)(void *)moved((const char *)b->stmts, stmts0, ns, stmts);
		for (size_t j = 0; j < b->nstmts; j++) {
			ReqStatement *st = &b->stmts[j];
			st->sql = moved(st->sql, text0, nt, text);
			/* [] leaves params at the end of the used slots: <= np. */
			st->params = (const char **)(void *)moved((const char *)st->params, params0, np + 1, params);
			for (int k = 0; k < st->nparams; k++)
				st->params[k] = moved(st->params[k], text0, nt, text);
		}
	}
}

bool request_parse_fast(const char *body, size_t len, const Config *cfg, TxnRequest *req)
{
	/* A typical body is parsed in here, bounded by its length alone: no
	 * count of its bytes first, and no heap block at the bound. */
	_Alignas(max_align_t) char local[8192];
	Scratch sc;
	size_t size;
	Fast f;
	char *a;
	bool ok;

	memset(req, 0, sizeof(*req));
	if (len == 0 || len > FAST_MAX_BODY)
		return false;
	/* The bounds (see the top of the file). By length: a statement takes
	 * at least 11 bytes ({"sql":"x"}), a parameter at least 2 (1 and the
	 * ',' or '[' before it). */
	sc.nbranches = cfg->nparticipants;
	if ((int64_t)sc.nbranches > cfg->max_branches)
		sc.nbranches = (size_t)cfg->max_branches;
	sc.nstmts = len / 11;
	sc.nparams = len / 2;
	size = scratch_size(&sc, len);
	if (size > sizeof(local)) {
		/* By count: one statement per '{' but the body's and
		 * "branches"', one parameter per ',' or statement. */
		sc.nstmts = count_byte(body, len, '{');
		if (sc.nstmts < 3)
			return false;
		sc.nstmts -= 2;
		sc.nparams = count_byte(body, len, ',') + sc.nstmts;
		size = scratch_size(&sc, len);
	}
	sc.base = a = size <= sizeof(local) ? local : xmalloc(size);

	req->branches = (ReqBranch *)(void *)a;
	f.branch_cap = sc.nbranches;
	a += branches_size(sc.nbranches);
	f.stmt = (ReqStatement *)(void *)a;
	f.stmt_end = f.stmt + sc.nstmts;
	a += sc.nstmts * sizeof(ReqStatement);
	f.param = (const char **)(void *)a;
	f.param_end = f.param + sc.nparams;
	a += sc.nparams * sizeof(char *);
	f.text = a;
	f.text_end = a + len + 1;
	f.p = (const unsigned char *)body;
	f.end = f.p + len;
	f.cfg = cfg;

	ok = top_object(&f, req);
	if (ok)
		keep_request(req, &f, &sc);
	else
		memset(req, 0, sizeof(*req));
	if (sc.base != local)
		free(sc.base);
	return ok;
}
