/*
 * http_api: the HTTP/JSON front of twopcd (routes, replies, problem+json).
 */
#ifndef TWOPC_HTTP_API_H
#define TWOPC_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "sweeper.h"
#include "txn.h"

struct event_base;
typedef struct HttpApi HttpApi;

/* Binds the listen address and starts serving. */
HttpApi *http_api_start(struct event_base *base, const Config *cfg, TxnMgr *mgr, Sweeper *sweeper, Dlog *dlog,
                        char *err, size_t errlen);
/* Reads auth_token_file again (SIGHUP); on failure the old tokens stay. */
bool http_api_reload_auth(HttpApi *api, char *err, size_t errlen) WARN_UNUSED;
/* Refuse new transactions (shutdown); reads keep working. */
void http_api_drain(HttpApi *api);
void http_api_free(HttpApi *api);

#endif
