/*
 * dashboard_assets: serve the dashboard's files that the build embedded
 * (see dashboard_assets.h; the bytes are in the generated dashboard_files.c).
 */
#include "dashboard_assets.h"

#include <string.h>

#include "http_server.h"
#include "log.h"
#include "sha256.h"
#include "util.h"

/* URL path -> embedded file and media type. */
static const struct {
	const char *path, *file, *ctype;
} routes[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"},
    {"/dashboard.css", "dashboard.css", "text/css; charset=utf-8"},
};

/* The page loads its script and style from twopcd only, talks to twopcd
 * only, and may not be framed (it has a token form). */
#define DASHBOARD_CSP                                                                                                  \
	"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "          \
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const EmbeddedFile *embedded(const char *name)
{
	for (size_t i = 0; i < dashboard_nfiles; i++) {
		if (strcmp(dashboard_files[i].name, name) == 0)
			return &dashboard_files[i];
	}
	return NULL;
}

bool dashboard_asset(const char *path, const char **ctype, const char **data, size_t *len)
{
	for (size_t i = 0; i < ARRAY_LEN(routes); i++) {
		const EmbeddedFile *f;

		if (strcmp(routes[i].path, path) != 0)
			continue;
		f = embedded(routes[i].file);
		if (f == NULL)
			return false;
		*ctype = routes[i].ctype;
		*data = (const char *)f->data;
		*len = f->len;
		return true;
	}
	return false;
}

bool dashboard_has_path(const char *path)
{
	const char *ctype, *data;
	size_t len;

	return dashboard_asset(path, &ctype, &data, &len);
}

void dashboard_etag(const char *data, size_t len, char etag[DASHBOARD_ETAG_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[SHA256_DIGEST_LEN];
	size_t o = 0;

	sha256(data, len, digest);
	etag[o++] = '"';
	for (size_t i = 0; i < 16; i++) {
		etag[o++] = hex[digest[i] >> 4];
		etag[o++] = hex[digest[i] & 0xf];
	}
	etag[o++] = '"';
	etag[o] = '\0';
}

bool dashboard_etag_matches(const char *inm, const char *etag)
{
	size_t elen = strlen(etag);
	const char *p = inm;

	for (;;) {
		const char *end;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			return false;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (*p != '"')
			return false; /* malformed: no match, the full answer goes out */
		end = strchr(p + 1, '"');
		if (end == NULL)
			return false;
		if ((size_t)(end + 1 - p) == elen && memcmp(p, etag, elen) == 0)
			return true;
		p = end + 1;
	}
}

void dashboard_serve(HttpRequest *req)
{
	const char *ctype = NULL, *data = NULL, *inm;
	char etag[DASHBOARD_ETAG_SIZE];
	size_t len = 0;

	if (!dashboard_asset(http_request_path(req), &ctype, &data, &len))
		log_fatal("dashboard_serve: %s is not a dashboard path", http_request_path(req));
	dashboard_etag(data, len, etag);
	http_response_header(req, "ETag", etag);
	http_response_header(req, "Cache-Control", "no-cache");
	http_response_header(req, "X-Content-Type-Options", "nosniff");
	if (strcmp(http_request_path(req), "/") == 0) {
		http_response_header(req, "Content-Security-Policy", DASHBOARD_CSP);
		http_response_header(req, "Referrer-Policy", "no-referrer");
	}
	inm = http_request_header(req, "If-None-Match");
	if (inm != NULL && dashboard_etag_matches(inm, etag)) {
		http_respond(req, 304, ctype, data, len);
		return;
	}
	http_respond(req, 200, ctype, data, len);
}
