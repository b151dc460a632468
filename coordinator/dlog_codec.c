/*
 * dlog_codec: encoding and decoding of decision-log frames; the format is
 * in dlog_codec.h. The decoder trusts nothing: lengths are checked against
 * what is there before anything is read, and a record is only returned if
 * dlog_encode would have written exactly these bytes (the fuzz harness
 * checks that), so replay never acts on a half-understood record.
 */
#include "dlog_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "log.h"

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The idempotency extension: u8 version | u8 keylen | key | fingerprint |
 * u16 status | u32 response_len | response. */
#define IDEM_FIXED (1 + 1 + DLOG_IDEM_FP_LEN + 2 + 4)

/* The smallest payload of each type, for dlog_frame_plausible. */
#define COMMIT_MIN (8 + 8 + 1 + 2 + 2 + 1 + 1)
#define HEUR_MIN   (8 + 8 + 1 + 1 + 1 + 1 + 1)
#define IDEM_MIN   (8 + 8 + IDEM_FIXED + 1)

static size_t idem_size(const DlogIdem *idem)
{
	return idem == NULL ? 0 : IDEM_FIXED + strlen(idem->key) + idem->response_len;
}

static size_t payload_size(const DlogRecord *rec)
{
	size_t n;
	switch (rec->type) {
	case DLOG_COMMIT:
		n = 8 + 8 + 1 + 2;
		for (uint16_t i = 0; i < rec->nbranches; i++)
			n += 2 + 1 + strlen(rec->branches[i].name);
		return n + idem_size(rec->idem);
	case DLOG_DONE:
		return 8;
	case DLOG_HEURISTIC:
		return 8 + 8 + 1 + 1 + strlen(rec->branches[0].name) + 1 + strlen(rec->gid);
	case DLOG_IDEM:
		return 8 + 8 + idem_size(rec->idem);
	}
	return 0;
}

size_t dlog_encoded_size(const DlogRecord *rec)
{
	return DLOG_FRAME_HEADER + payload_size(rec);
}

bool dlog_idem_valid(const DlogIdem *idem, char *err, size_t errlen)
{
	size_t kl = strnlen(idem->key, sizeof(idem->key));

	if (kl == 0 || kl > DLOG_IDEM_KEY_MAX)
		return errf(err, errlen, "an idempotency key must be 1 to %d bytes long", DLOG_IDEM_KEY_MAX);
	for (size_t i = 0; i < kl; i++) {
		unsigned char ch = (unsigned char)idem->key[i];
		if (ch < 0x20 || ch > 0x7e)
			return errf(err, errlen, "byte %zu of the idempotency key is 0x%02x, not printable ASCII", i,
			            ch);
	}
	if (idem->status < 100 || idem->status > 599)
		return errf(err, errlen, "%u is not an HTTP status", idem->status);
	if (idem->response_len > DLOG_IDEM_RESPONSE_MAX)
		return errf(err, errlen, "a %u-byte response exceeds the %d bytes an idempotency record keeps",
		            idem->response_len, DLOG_IDEM_RESPONSE_MAX);
	if (idem->response_len > 0 && idem->response == NULL)
		return errf(err, errlen, "a %u-byte response without its bytes", idem->response_len);
	return true;
}

static uint8_t *encode_idem(const DlogIdem *idem, uint8_t *p)
{
	size_t kl = strlen(idem->key);

	*p++ = DLOG_IDEM_VERSION;
	*p++ = (uint8_t)kl;
	memcpy(p, idem->key, kl);
	p += kl;
	memcpy(p, idem->fingerprint, DLOG_IDEM_FP_LEN);
	p += DLOG_IDEM_FP_LEN;
	put_u16(p, idem->status);
	p += 2;
	put_u32(p, idem->response_len);
	p += 4;
	if (idem->response_len > 0)
		memcpy(p, idem->response, idem->response_len);
	return p + idem->response_len;
}

size_t dlog_encode(const DlogRecord *rec, uint8_t *buf)
{
	char why[160];

	/* Each of these would make the log unreadable at the next start: refuse here,
	 * where the bug is, rather than there. */
	if ((rec->type == DLOG_IDEM && rec->idem == NULL) ||
	    (rec->idem != NULL && rec->type != DLOG_COMMIT && rec->type != DLOG_IDEM))
		log_fatal("decision log: a type-%d record %s an idempotency key", (int)rec->type,
		          rec->idem ? "with" : "without");
	if (rec->type == DLOG_COMMIT && rec->nbranches == 0)
		log_fatal("decision log: a COMMIT of txn %016llx naming no branch", (unsigned long long)rec->txn_id);
	if (rec->idem != NULL && !dlog_idem_valid(rec->idem, why, sizeof(why)))
		log_fatal("decision log: cannot write the idempotency key of txn %016llx: %s",
		          (unsigned long long)rec->txn_id, why);
	size_t plen = payload_size(rec);
	if (plen > DLOG_MAX_PAYLOAD)
		log_fatal("decision log: a %zu-byte record exceeds the %d-byte frame limit", plen, DLOG_MAX_PAYLOAD);
	uint8_t *p = buf + DLOG_FRAME_HEADER;

	buf[8] = (uint8_t)rec->type;
	put_u64(p, rec->txn_id);
	p += 8;
	if (rec->type == DLOG_COMMIT) {
		put_u64(p, (uint64_t)rec->wall_ms);
		p += 8;
		*p++ = 0; /* flags: reserved */
		put_u16(p, rec->nbranches);
		p += 2;
		for (uint16_t i = 0; i < rec->nbranches; i++) {
			size_t l = strlen(rec->branches[i].name);
			put_u16(p, rec->branches[i].index);
			p += 2;
			*p++ = (uint8_t)l;
			memcpy(p, rec->branches[i].name, l);
			p += l;
		}
		if (rec->idem != NULL)
			p = encode_idem(rec->idem, p);
	}
	if (rec->type == DLOG_HEURISTIC) {
		size_t nl = strlen(rec->branches[0].name), gl = strlen(rec->gid);
		put_u64(p, (uint64_t)rec->wall_ms);
		p += 8;
		*p++ = rec->heuristic_commit ? 1 : 2;
		*p++ = (uint8_t)nl;
		memcpy(p, rec->branches[0].name, nl);
		p += nl;
		*p++ = (uint8_t)gl;
		memcpy(p, rec->gid, gl);
		p += gl;
	}
	if (rec->type == DLOG_IDEM) {
		put_u64(p, (uint64_t)rec->wall_ms);
		p += 8;
		p = encode_idem(rec->idem, p);
	}
	put_u32(buf, (uint32_t)plen);
	put_u32(buf + 4, crc32c(0, buf + 8, plen + 1));
	return DLOG_FRAME_HEADER + plen;
}

/* Decodes the idempotency extension at p, which must end exactly at end,
 * into a new out->idem. `what` names the record for the message. */
static bool decode_idem(const uint8_t *p, const uint8_t *end, DlogRecord *out, const char *what, char *err,
                        size_t errlen)
{
	size_t left = (size_t)(end - p), kl;
	uint32_t rl;
	DlogIdem *idem;

	if (left < 2)
		return errf(err, errlen, "%s: idempotency extension cut short (%zu bytes)", what, left);
	if (p[0] != DLOG_IDEM_VERSION)
		return errf(err, errlen, "%s: idempotency extension of unknown version %u (want %d)", what, p[0],
		            DLOG_IDEM_VERSION);
	kl = p[1];
	if (kl == 0)
		return errf(err, errlen, "%s: empty idempotency key", what);
	if (left < IDEM_FIXED + kl)
		return errf(err, errlen, "%s: idempotency extension cut short (%zu bytes, a %zu-byte key needs %zu)",
		            what, left, kl, IDEM_FIXED + kl);
	for (size_t i = 0; i < kl; i++) {
		if (p[2 + i] < 0x20 || p[2 + i] > 0x7e)
			return errf(err, errlen, "%s: byte %zu of the idempotency key is 0x%02x, not printable ASCII",
			            what, i, p[2 + i]);
	}
	uint16_t status = get_u16(p + 2 + kl + DLOG_IDEM_FP_LEN);
	if (status < 100 || status > 599)
		return errf(err, errlen, "%s: idempotency status %u is not an HTTP status", what, status);
	rl = get_u32(p + 2 + kl + DLOG_IDEM_FP_LEN + 2);
	left -= IDEM_FIXED + kl;
	if (rl > DLOG_IDEM_RESPONSE_MAX)
		return errf(err, errlen, "%s: idempotency response length %u exceeds the maximum %d", what, rl,
		            DLOG_IDEM_RESPONSE_MAX);
	if (rl > left)
		return errf(err, errlen, "%s: idempotency response length %u runs past the payload (%zu bytes left)",
		            what, rl, left);
	if (rl < left)
		return errf(err, errlen, "%s: %zu trailing bytes after the idempotency response", what, left - rl);
	idem = xcalloc(1, sizeof(*idem));
	memcpy(idem->key, p + 2, kl);
	memcpy(idem->fingerprint, p + 2 + kl, DLOG_IDEM_FP_LEN);
	idem->status = status;
	idem->response_len = rl;
	idem->response = xmalloc((size_t)rl + 1);
	memcpy(idem->response, p + IDEM_FIXED + kl, rl);
	idem->response[rl] = '\0';
	out->idem = idem;
	return true;
}

DlogDecode dlog_decode(const uint8_t *buf, size_t len, DlogRecord *out, size_t *frame_len, char *err, size_t errlen)
{
	uint32_t plen, crc;
	const uint8_t *p, *end;
	char what[64];

	memset(out, 0, sizeof(*out));
	if (len < DLOG_FRAME_HEADER) {
		errf(err, errlen, "frame header cut short (%zu of %d bytes)", len, DLOG_FRAME_HEADER);
		return DLOG_DEC_SHORT;
	}
	plen = get_u32(buf);
	if (plen > DLOG_MAX_PAYLOAD) {
		errf(err, errlen, "impossible payload length %u", plen);
		return DLOG_DEC_BAD;
	}
	if (len - DLOG_FRAME_HEADER < plen) {
		errf(err, errlen, "frame cut short (%zu of %u payload bytes)", len - DLOG_FRAME_HEADER, plen);
		return DLOG_DEC_SHORT;
	}
	crc = get_u32(buf + 4);
	if (crc32c(0, buf + 8, (size_t)plen + 1) != crc) {
		errf(err, errlen, "checksum mismatch");
		return DLOG_DEC_BAD;
	}
	*frame_len = DLOG_FRAME_HEADER + plen;
	p = buf + DLOG_FRAME_HEADER;
	end = p + plen;
	out->type = (DlogType)buf[8];
	switch (buf[8]) {
	case DLOG_DONE:
		if (plen != 8)
			goto bad_payload;
		out->txn_id = get_u64(p);
		return DLOG_DEC_OK;
	case DLOG_COMMIT:
		if (plen < 19)
			goto bad_payload;
		out->txn_id = get_u64(p);
		out->wall_ms = (int64_t)get_u64(p + 8);
		/* p[16] is the flags byte, reserved: the idempotency extension is
		 * recognised by the bytes after the branches. */
		if (p[16] != 0)
			goto bad_payload;
		out->nbranches = get_u16(p + 17);
		p += 19;
		if (out->nbranches == 0 || out->nbranches > 1024)
			goto bad_payload;
		out->branches = xcalloc(out->nbranches, sizeof(DlogBranchRef));
		for (uint16_t i = 0; i < out->nbranches; i++) {
			size_t l;
			if (end - p < 3)
				goto bad_payload;
			out->branches[i].index = get_u16(p);
			l = p[2];
			p += 3;
			/* A name with a NUL byte is no name dlog_encode wrote
			 * (it would read back cut short). */
			if (l == 0 || l > DLOG_NAME_MAX || (size_t)(end - p) < l || memchr(p, '\0', l) != NULL)
				goto bad_payload;
			memcpy(out->branches[i].name, p, l);
			out->branches[i].name[l] = '\0';
			p += l;
		}
		if (p != end) {
			snprintf(what, sizeof(what), "COMMIT of txn %016llx", (unsigned long long)out->txn_id);
			if (!decode_idem(p, end, out, what, err, errlen))
				goto bad_extension;
		}
		return DLOG_DEC_OK;
	case DLOG_HEURISTIC: {
		size_t nl, gl;
		if (plen < HEUR_MIN)
			goto bad_payload;
		out->txn_id = get_u64(p);
		out->wall_ms = (int64_t)get_u64(p + 8);
		if (p[16] != 1 && p[16] != 2)
			goto bad_payload;
		out->heuristic_commit = p[16] == 1;
		nl = p[17];
		p += 18;
		if (nl == 0 || nl > DLOG_NAME_MAX || (size_t)(end - p) < nl + 1 || memchr(p, '\0', nl) != NULL)
			goto bad_payload;
		out->nbranches = 1;
		out->branches = xcalloc(1, sizeof(DlogBranchRef));
		memcpy(out->branches[0].name, p, nl);
		p += nl;
		gl = *p++;
		if (gl == 0 || gl > DLOG_GID_MAX || (size_t)(end - p) != gl || memchr(p, '\0', gl) != NULL)
			goto bad_payload;
		memcpy(out->gid, p, gl);
		out->gid[gl] = '\0';
		return DLOG_DEC_OK;
	}
	case DLOG_IDEM:
		if (plen < 16)
			goto bad_payload;
		out->txn_id = get_u64(p);
		out->wall_ms = (int64_t)get_u64(p + 8);
		snprintf(what, sizeof(what), "IDEM of txn %016llx", (unsigned long long)out->txn_id);
		if (plen == 16) {
			errf(err, errlen, "%s: no idempotency extension", what);
			goto bad_extension;
		}
		if (!decode_idem(p + 16, end, out, what, err, errlen))
			goto bad_extension;
		return DLOG_DEC_OK;
	default:
		errf(err, errlen, "unknown record type %u", buf[8]);
		return DLOG_DEC_BAD;
	}
bad_payload:
	errf(err, errlen, "malformed payload of a type-%u record", buf[8]);
bad_extension:
	dlog_record_clear(out);
	return DLOG_DEC_BAD;
}

bool dlog_frame_plausible(const uint8_t *buf, size_t len)
{
	uint32_t plen;

	if (len < DLOG_FRAME_HEADER)
		return false;
	plen = get_u32(buf);
	if (plen > DLOG_MAX_PAYLOAD || plen > len - DLOG_FRAME_HEADER)
		return false;
	switch (buf[8]) {
	case DLOG_DONE:
		return plen == 8;
	case DLOG_COMMIT:
		return plen >= COMMIT_MIN;
	case DLOG_HEURISTIC:
		return plen >= HEUR_MIN;
	case DLOG_IDEM:
		return plen >= IDEM_MIN;
	}
	return false;
}

DlogIdem *dlog_idem_new(const char *key, const uint8_t fingerprint[DLOG_IDEM_FP_LEN], uint16_t status,
                        const void *response, uint32_t response_len)
{
	DlogIdem *idem = xcalloc(1, sizeof(*idem));

	strlcpy_s(idem->key, key, sizeof(idem->key));
	memcpy(idem->fingerprint, fingerprint, DLOG_IDEM_FP_LEN);
	idem->status = status;
	idem->response_len = response_len;
	idem->response = xmalloc((size_t)response_len + 1);
	if (response_len > 0)
		memcpy(idem->response, response, response_len);
	idem->response[response_len] = '\0';
	return idem;
}

DlogIdem *dlog_idem_copy(const DlogIdem *idem)
{
	if (idem == NULL)
		return NULL;
	return dlog_idem_new(idem->key, idem->fingerprint, idem->status, idem->response, idem->response_len);
}

void dlog_idem_free(DlogIdem *idem)
{
	if (idem != NULL) {
		free(idem->response);
		free(idem);
	}
}

void dlog_record_clear(DlogRecord *rec)
{
	free(rec->branches);
	dlog_idem_free(rec->idem);
	memset(rec, 0, sizeof(*rec));
}

DlogRecord *dlog_record_copy(const DlogRecord *rec)
{
	DlogRecord *c = xmalloc(sizeof(*c));
	*c = *rec;
	if (rec->nbranches > 0) {
		c->branches = xmalloc(rec->nbranches * sizeof(DlogBranchRef));
		memcpy(c->branches, rec->branches, rec->nbranches * sizeof(DlogBranchRef));
	} else {
		c->branches = NULL;
	}
	c->idem = dlog_idem_copy(rec->idem);
	return c;
}

void dlog_record_free(DlogRecord *rec)
{
	if (rec != NULL) {
		dlog_record_clear(rec);
		free(rec);
	}
}

const char *dlog_type_name(DlogType type)
{
	switch (type) {
	case DLOG_COMMIT:
		return "COMMIT";
	case DLOG_DONE:
		return "DONE";
	case DLOG_HEURISTIC:
		return "HEURISTIC";
	case DLOG_IDEM:
		return "IDEM";
	}
	return "?";
}
