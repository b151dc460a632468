/*
 * ops_api: what operators look at — GET /metrics (Prometheus), GET
 * /v1/in-doubt (every prepared transaction on every participant and what
 * will become of it), GET /v1/recent-aborts, and the explanation of one
 * transaction behind GET /v1/transactions/{id}.
 *
 * The answers are built here as text or JSON; http_api.c routes and sends
 * them. The in-doubt view and the explanation read the participants live
 * (fanout.c), so they answer asynchronously.
 */
#ifndef TWOPC_OPS_API_H
#define TWOPC_OPS_API_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "decision_log.h"
#include "http_server.h"
#include "sweeper.h"
#include "txn.h"

struct event_base;

typedef struct OpsContext {
	struct event_base *base;
	const Config *cfg;
	TxnMgr *mgr;
	Sweeper *sweeper;
	Dlog *dlog;
	HttpServer *server;
} OpsContext;

/* The Prometheus text exposition; the caller frees it. */
char *ops_metrics(const OpsContext *c, size_t *len);

/* {"aborts": [...]}, newest first. */
json_t *ops_recent_aborts(const OpsContext *c);

typedef void (*OpsJsonFn)(json_t *body, void *arg);

/* {"participants": {name: {"reachable", "error"?, "oldest_xid_age",
 * "prepared": [...]}}}; done(body, arg) owns body. */
void ops_in_doubt(const OpsContext *c, OpsJsonFn done, void *arg);

/* {"id", "status", "log": {...}, "in_flight"?: {...}, "branches": [...]}:
 * the log's records for the transaction, its in-flight state, and each
 * branch's live state on its participant. */
void ops_explain(const OpsContext *c, uint64_t id, OpsJsonFn done, void *arg);

#endif
