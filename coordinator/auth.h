/*
 * auth: optional bearer-token authentication (RFC 6750) for the HTTP API.
 *
 * auth_token_file holds one token per line (blank lines and '#' comments
 * ignored). A request's token is compared with every configured token in
 * time that depends only on the length of what the client sent, so timing
 * reveals nothing about the secrets.
 */
#ifndef TWOPC_AUTH_H
#define TWOPC_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef struct AuthTokens AuthTokens;

/* Reads the token file; on failure err names the file, the line and why. */
AuthTokens *auth_load(const char *path, char *err, size_t errlen) WARN_UNUSED;
/* How many tokens were loaded. */
size_t auth_count(const AuthTokens *a);
/* Whether an Authorization header value carries one of the tokens. */
bool auth_check_header(const AuthTokens *a, const char *authorization);
void auth_free(AuthTokens *a);

#endif
