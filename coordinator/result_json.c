/*
 * result_json: PostgreSQL text values to typed JSON values.
 */
#include "result_json.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define OID_BOOL    16
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_OID     26
#define OID_JSON    114
#define OID_FLOAT4  700
#define OID_FLOAT8  701
#define OID_NUMERIC 1700
#define OID_JSONB   3802

static json_t *value_json(const char *s, Oid type)
{
	char *end;

	switch (type) {
	case OID_BOOL:
		return json_boolean(s[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID: {
		long long v = strtoll(s, &end, 10);
		if (*end == '\0')
			return json_integer(v);
		break;
	}
	case OID_FLOAT4:
	case OID_FLOAT8: {
		/* NaN and Infinity have no JSON number: they stay text. */
		double d = strtod(s, &end);
		if (*end == '\0' && strcmp(s, "NaN") != 0 && strstr(s, "nfinity") == NULL)
			return json_real(d);
		break;
	}
	case OID_JSON:
	case OID_JSONB: {
		json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		if (j != NULL)
			return j;
		break;
	}
	default:
		break;
	}
	return json_string(s);
}

json_t *result_rows_json(const PGresult *r)
{
	int nrows = PQntuples(r), ncols = PQnfields(r);
	json_t *rows = json_array();

	for (int i = 0; i < nrows; i++) {
		json_t *row = json_object();
		for (int c = 0; c < ncols; c++) {
			json_t *v = PQgetisnull(r, i, c) ? json_null() : value_json(PQgetvalue(r, i, c), PQftype(r, c));
			json_object_set_new(row, PQfname(r, c), v ? v : json_null());
		}
		json_array_append_new(rows, row);
	}
	return rows;
}

/* The count at the end of a tag PQcmdTuples() would read it from ("UPDATE
 * 3", "INSERT 0 3"), without its prefix comparisons; -2 for any other tag. */
static long long tag_count(const char *tag)
{
	static const char *const verbs[] = {"UPDATE ", "DELETE ", "INSERT ", "MERGE "};
	const char *p = NULL, *end;
	long long v = 0;

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]) && p == NULL; i++) {
		size_t n = strlen(verbs[i]);
		if (strncmp(tag, verbs[i], n) == 0)
			p = tag + n;
	}
	if (p == NULL)
		return -2;
	end = strrchr(p, ' ');
	if (end != NULL)
		p = end + 1; /* INSERT's oid, then the count */
	if (*p < '0' || *p > '9')
		return -2;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (LLONG_MAX - 9) / 10)
			return -2;
		v = v * 10 + (*p - '0');
	}
	return *p == '\0' ? v : -2;
}

long long result_row_count(const PGresult *r)
{
	const char *t;
	long long n;

	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		return PQntuples(r);
	if ((n = tag_count(PQcmdStatus((PGresult *)r))) >= 0)
		return n;
	t = PQcmdTuples((PGresult *)r);
	if (t == NULL || *t == '\0')
		return -1;
	return strtoll(t, NULL, 10);
}
