/*
 * auth: bearer tokens from a file, compared in constant time.
 */
#include "auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "log.h"

#define AUTH_TOKEN_MAX 512

struct AuthTokens {
	char **tokens;
	size_t *lens;
	size_t n;
};

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool b64token_valid(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && (((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
	                 strchr("-._~+/", s[i]) != NULL))
		i++;
	if (i == 0)
		return false;
	while (i < n && s[i] == '=')
		i++;
	return i == n;
}

AuthTokens *auth_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	AuthTokens *a;
	char line[AUTH_TOKEN_MAX + 2];
	int lineno = 0;
	struct stat st;

	if (f == NULL) {
		errf(err, errlen, "auth_token_file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH))
		log_warning("auth_token_file %s is readable by every user; chmod o-r it", path);
	a = xcalloc(1, sizeof(*a));
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);
		char *s = line;

		lineno++;
		if (n > 0 && line[n - 1] != '\n' && !feof(f)) {
			errf(err, errlen, "auth_token_file %s:%d: line longer than %d characters", path, lineno,
			     AUTH_TOKEN_MAX);
			goto fail;
		}
		while (*s == ' ' || *s == '\t')
			s++;
		n = strlen(s);
		while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
			s[--n] = '\0';
		if (n == 0 || s[0] == '#')
			continue;
		if (!b64token_valid(s, n)) {
			/* Do not echo the line: it may be a secret with a typo. */
			errf(err, errlen,
			     "auth_token_file %s:%d: not a bearer token (letters, digits and -._~+/ with optional "
			     "trailing =)",
			     path, lineno);
			goto fail;
		}
		a->tokens = xrealloc(a->tokens, (a->n + 1) * sizeof(char *));
		a->lens = xrealloc(a->lens, (a->n + 1) * sizeof(size_t));
		a->tokens[a->n] = xstrdup(s);
		a->lens[a->n] = n;
		a->n++;
	}
	if (ferror(f)) {
		errf(err, errlen, "auth_token_file %s: read error", path);
		goto fail;
	}
	fclose(f);
	if (a->n == 0) {
		errf(err, errlen, "auth_token_file %s has no tokens: every request would be refused", path);
		auth_free(a);
		return NULL;
	}
	return a;
fail:
	fclose(f);
	auth_free(a);
	return NULL;
}

size_t auth_count(const AuthTokens *a)
{
	return a->n;
}

/* Compares in time that depends on plen only: every byte of what the client
 * sent is looked at, against every token, whatever matches. */
static bool ct_equal(const char *p, size_t plen, const char *t, size_t tlen)
{
	volatile unsigned char diff = (unsigned char)(plen != tlen);

	for (size_t i = 0; i < plen; i++)
		diff |= (unsigned char)(p[i] ^ t[i % tlen]);
	return diff == 0;
}

bool auth_check_header(const AuthTokens *a, const char *h)
{
	size_t plen;
	bool ok = false;

	if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return false;
	h += 6;
	while (*h == ' ' || *h == '\t')
		h++;
	plen = strlen(h);
	if (plen == 0 || plen > AUTH_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < a->n; i++)
		ok |= ct_equal(h, plen, a->tokens[i], a->lens[i]);
	return ok;
}

void auth_free(AuthTokens *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++) {
		explicit_bzero(a->tokens[i], a->lens[i]);
		free(a->tokens[i]);
	}
	free(a->tokens);
	free(a->lens);
	free(a);
}
