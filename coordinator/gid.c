/*
 * gid: build and parse our PREPARE TRANSACTION identifiers.
 */
#include "gid.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

bool coord_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > COORD_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)id[i]) && id[i] != '_')
			return false;
	}
	return true;
}

bool gid_build(char *buf, size_t buflen, const char *coord_id, uint64_t txn_id, unsigned participant_index)
{
	/* Per branch of every transaction: no printf. */
	char hex[TXN_ID_HEX + 1], idx[24];

	txn_id_format(hex, txn_id);
	fmt_i64(idx, participant_index);
	return str_concat(buf, buflen, GID_PREFIX, coord_id, "_", hex, "_", idx, (char *)NULL) &&
	       strlen(buf) < GID_MAX;
}

size_t gid_write(char *p, const char *prefix, size_t plen, const char *id_hex, unsigned participant_index)
{
	char *start = p;

	memcpy(p, prefix, plen);
	p += plen;
	memcpy(p, id_hex, TXN_ID_HEX);
	p += TXN_ID_HEX;
	*p++ = '_';
	p += fmt_i64(p, participant_index);
	return (size_t)(p - start);
}

size_t gid_prefix(char *buf, const char *coord_id)
{
	str_concat(buf, GID_OURS_MAX, GID_PREFIX, coord_id, "_", (char *)NULL);
	return strlen(buf);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool txn_id_parse(const char *s, uint64_t *txn_id)
{
	uint64_t v = 0;
	for (int i = 0; i < TXN_ID_HEX; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return false;
		v = (v << 4) | (uint64_t)h;
	}
	if (s[TXN_ID_HEX] != '\0')
		return false;
	*txn_id = v;
	return true;
}

void txn_id_format(char buf[TXN_ID_HEX + 1], uint64_t txn_id)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = TXN_ID_HEX - 1; i >= 0; i--) {
		buf[i] = digits[txn_id & 0xf];
		txn_id >>= 4;
	}
	buf[TXN_ID_HEX] = '\0';
}

bool gid_parse(const char *gid, const char *coord_id, uint64_t *txn_id, unsigned *participant_index)
{
	size_t plen = strlen(GID_PREFIX), clen = strlen(coord_id);
	char hex[TXN_ID_HEX + 1];
	const char *p = gid;
	int64_t idx;

	if (strncmp(p, GID_PREFIX, plen) != 0)
		return false;
	p += plen;
	if (strncmp(p, coord_id, clen) != 0 || p[clen] != '_')
		return false;
	p += clen + 1;
	if (strlen(p) < TXN_ID_HEX + 2 || p[TXN_ID_HEX] != '_')
		return false;
	memcpy(hex, p, TXN_ID_HEX);
	hex[TXN_ID_HEX] = '\0';
	if (!txn_id_parse(hex, txn_id))
		return false;
	p += TXN_ID_HEX + 1;
	/* The index is plain decimal: no sign, no leading zeros but "0". */
	for (const char *q = p; *q; q++) {
		if (!isdigit((unsigned char)*q))
			return false;
	}
	if (p[0] == '0' && p[1] != '\0')
		return false;
	if (!parse_i64(p, 0, 65535, &idx))
		return false;
	*participant_index = (unsigned)idx;
	return true;
}

void gid_like_pattern(char *buf, size_t buflen, const char *coord_id)
{
	size_t o = 0;
	const char *parts[2] = {GID_PREFIX, coord_id};
	for (int k = 0; k < 2; k++) {
		for (const char *s = parts[k]; *s && o + 3 < buflen; s++) {
			if (*s == '_' || *s == '%' || *s == '\\')
				buf[o++] = '\\';
			buf[o++] = *s;
		}
	}
	if (o + 3 < buflen) {
		buf[o++] = '\\';
		buf[o++] = '_';
		buf[o++] = '%';
	}
	buf[o < buflen ? o : buflen - 1] = '\0';
}
