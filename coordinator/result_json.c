/*
 * result_json: PostgreSQL text values to typed JSON values.
 */
#include "result_json.h"

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

long long result_row_count(const PGresult *r)
{
	const char *t;
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		return PQntuples(r);
	t = PQcmdTuples((PGresult *)r);
	if (t == NULL || *t == '\0')
		return -1;
	return strtoll(t, NULL, 10);
}
