/*
 * result_json: a statement's PGresult as JSON for the reply. Values are
 * typed by their column's type OID: integers and floats as numbers,
 * booleans, json/jsonb embedded, NULL as null, numeric as a string (no
 * precision lost), everything else as text.
 */
#ifndef TWOPC_RESULT_JSON_H
#define TWOPC_RESULT_JSON_H

#include <jansson.h>
#include <libpq-fe.h>

/* [{"col": value, ...}, ...] for a PGRES_TUPLES_OK result. */
json_t *result_rows_json(const PGresult *r);

/* Rows affected (DML) or returned (SELECT), -1 if neither applies. */
long long result_row_count(const PGresult *r);

#endif
