/*
 * dashboard_assets: the dashboard's static files, built into twopcd.
 *
 * coordinator/dashboard/ holds the page (index.html, dashboard.js,
 * dashboard.css); at build time scripts/embed-files turns them into byte
 * arrays (the generated coordinator/dashboard_files.c), so the binary needs
 * no files at run time and the page fetches nothing from anywhere else.
 * This module maps URL paths to those bytes and their media types and
 * serves them: GET /, /dashboard.js, /dashboard.css, with Cache-Control:
 * no-cache and a strong ETag (a revalidation with If-None-Match gets 304).
 * They hold no data, so they need no token; the API the page calls does.
 */
#ifndef TWOPC_DASHBOARD_ASSETS_H
#define TWOPC_DASHBOARD_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct HttpRequest HttpRequest;

/* One embedded file (what scripts/embed-files generates): its base name,
 * its bytes (NUL-terminated, the NUL not counted) and its length. */
typedef struct EmbeddedFile {
	const char *name;
	const unsigned char *data;
	size_t len;
} EmbeddedFile;

extern const EmbeddedFile dashboard_files[];
extern const size_t dashboard_nfiles;

/* "\"" + 32 hex digits + "\"" + NUL */
#define DASHBOARD_ETAG_SIZE 35

/* The file served at PATH (the request target up to '?'): its media type,
 * bytes and length; false when PATH is not one of the dashboard's. */
bool dashboard_asset(const char *path, const char **ctype, const char **data, size_t *len);

/* Whether PATH is one of the dashboard's. */
bool dashboard_has_path(const char *path);

/* A strong ETag for these bytes: the first 128 bits of their SHA-256, quoted. */
void dashboard_etag(const char *data, size_t len, char etag[DASHBOARD_ETAG_SIZE]);

/* Whether an If-None-Match field value (a list of entity tags, or "*")
 * matches ETAG, by weak comparison (RFC 9110, 13.1.2). */
bool dashboard_etag_matches(const char *if_none_match, const char *etag);

/* Answers a GET of a dashboard path (dashboard_asset() must know it): 200
 * with the file, or 304 when If-None-Match matches its ETag. */
void dashboard_serve(HttpRequest *req);

#endif
