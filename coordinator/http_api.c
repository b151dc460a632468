/*
 * http_api: twopcd's HTTP/JSON interface, on http_server.
 *
 *   POST /v1/transactions        run one atomic multi-participant transaction
 *   GET  /v1/transactions/{id}   committed | aborted | in_progress | unknown
 *   POST /v1/sweep               settle stuck prepared transactions now
 *   GET  /healthz                each participant's reachability (no auth)
 *
 * Every error is application/problem+json (RFC 9457) with a stable `type`
 * URI per kind of error; the catalogue is problem_kinds[] below and
 * docs/API.md. A POST's reply is sent from the transaction's reply
 * callback; the server keeps the request valid until then.
 */
#include "http_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "auth.h"
#include "dashboard_assets.h"
#include "ops_api.h"
#include "http_server.h"
#include "log.h"
#include "request.h"
#include "sha256.h"

#define PROBLEM_BASE "https://twopc.dev/problems/"

struct HttpApi {
	OpsContext ops;
	const Config *cfg;
	TxnMgr *mgr;
	Sweeper *sweeper;
	HttpServer *server;
	AuthTokens *auth; /* NULL: no authentication */
	bool draining;    /* shutting down: new transactions are refused */
};

/* The kinds of problem twopcd answers with: slug (the end of the type URI)
 * and title. The titles are fixed per kind (RFC 9457 §3.1.3); `detail`
 * says what happened this time. */
static const struct {
	const char *slug, *title;
} problem_kinds[] = {
    {"invalid-request", "Invalid request"},
    {"bad-request", "Malformed HTTP request"},
    {"unauthorized", "Missing or invalid bearer token"},
    {"not-found", "Not found"},
    {"method-not-allowed", "Method not allowed"},
    {"request-timeout", "The request did not arrive in time"},
    {"statement-failed", "A statement failed; the transaction was rolled back"},
    {"expect-rows", "An expect_rows guard did not hold; the transaction was rolled back"},
    {"prepare-failed", "PREPARE TRANSACTION failed; the transaction was rolled back"},
    {"outcome-unknown", "Whether the transaction committed is not known yet"},
    {"idempotency-key-in-use", "A request with this Idempotency-Key is still being processed"},
    {"body-too-large", "Request body too large"},
    {"idempotency-key-mismatch", "This Idempotency-Key was used with a different request body"},
    {"headers-too-large", "Request header fields too large"},
    {"not-implemented", "Not implemented"},
    {"participant-unavailable",
     "A participant could not be reached; the transaction was rolled back and is safe to retry"},
    {"shutting-down", "twopcd is shutting down"},
    {"too-many-in-flight", "Too many transactions in flight"},
    {"too-many-connections", "Too many open connections"},
    {"idempotency-store-full", "No room to remember another Idempotency-Key"},
    {"timeout", "The transaction timed out before its decision and was rolled back"},
    {"http-version-not-supported", "HTTP version not supported"},
};

static const char *problem_title(const char *slug)
{
	for (size_t i = 0; i < ARRAY_LEN(problem_kinds); i++) {
		if (strcmp(problem_kinds[i].slug, slug) == 0)
			return problem_kinds[i].title;
	}
	log_fatal("problem kind '%s' is not in the catalogue", slug);
}

static void send_text(HttpRequest *req, int status, const char *ctype, char *text)
{
	size_t len = text ? strlen(text) : 0;

	if (text != NULL) {
		text = xrealloc(text, len + 2);
		text[len++] = '\n';
		text[len] = '\0';
	}
	http_respond(req, status, ctype, text ? text : "", len);
	free(text);
}

static void send_json(HttpRequest *req, int status, json_t *body, bool problem)
{
	char *text = json_dumps(body, JSON_COMPACT);

	json_decref(body);
	send_text(req, status, problem ? "application/problem+json" : "application/json", text);
}

/* A problem document; `extra` (may be NULL) adds members and is consumed. */
static void send_problem(HttpRequest *req, int status, const char *slug, const char *detail, json_t *extra)
{
	char type[128];
	json_t *p = json_object();

	snprintf(type, sizeof(type), PROBLEM_BASE "%s", slug);
	json_object_set_new(p, "type", json_string(type));
	json_object_set_new(p, "title", json_string(problem_title(slug)));
	json_object_set_new(p, "status", json_integer(status));
	json_object_set_new(p, "detail", json_string(detail));
	if (extra != NULL) {
		json_object_update(p, extra);
		json_decref(extra);
	}
	send_json(req, status, p, true);
}

static void send_invalid(HttpRequest *req, const char *field, const char *detail)
{
	json_t *x = json_object();
	json_object_set_new(x, "field", json_string(field));
	send_problem(req, 400, "invalid-request", detail, x);
}

/* Errors the HTTP server finds before any handler runs. */
static void on_protocol_error(HttpRequest *req, int status, const char *slug, const char *detail, void *arg)
{
	HttpApi *api = arg;
	json_t *x = NULL;

	if (status == 413) {
		x = json_object();
		json_object_set_new(x, "max_body_bytes", json_integer(api->cfg->max_body_bytes));
	} else if (status == 431) {
		x = json_object();
		json_object_set_new(x, "max_header_bytes", json_integer(api->cfg->max_header_bytes));
	}
	send_problem(req, status, slug, detail, x);
}

/* ---- POST /v1/transactions ---------------------------------------------- */

static void reply_committed(HttpRequest *req, Txn *t)
{
	if (t->idem_response != NULL) {
		/* Exactly what a retry with the same key will get. */
		send_text(req, 200, "application/json", xstrdup(t->idem_response));
		return;
	}
	{
		char buf[1024];
		StrBuf sb = SB_IN(buf);
		txn_result_text(t, txn_phase2_pending(t), true, &sb);
		http_respond(req, 200, "application/json", sb.p, sb.len);
		sb_free(&sb);
	}
}

static void reply_aborted(HttpRequest *req, Txn *t)
{
	json_t *x = json_object();
	const char *participant = t->fail_branch >= 0 ? t->branches[t->fail_branch].name : NULL;
	int status;
	const char *slug;

	json_object_set_new(x, "id", json_string(t->id_hex));
	json_object_set_new(x, "outcome", json_string("aborted"));
	if (participant)
		json_object_set_new(x, "participant", json_string(participant));
	slug = abort_reason_slug(t->reason);
	switch (t->reason) {
	case ABORT_STATEMENT:
	case ABORT_PREPARE:
		status = 409;
		break;
	case ABORT_EXPECT_ROWS:
		status = 409;
		json_object_set_new(x, "expected_rows", json_integer(t->expected_rows));
		json_object_set_new(x, "actual_rows", json_integer(t->actual_rows));
		break;
	case ABORT_TIMEOUT:
		status = 504;
		break;
	default:
		status = 503;
		break;
	}
	if (status == 409) {
		json_object_set_new(x, "statement", t->fail_stmt >= 0 ? json_integer(t->fail_stmt) : json_null());
		json_object_set_new(x, "sqlstate", t->sqlstate[0] ? json_string(t->sqlstate) : json_null());
		json_object_set_new(x, "message", json_string(txn_message(t)));
	}
	if (status == 503)
		http_response_header(req, "Retry-After", "1");
	send_problem(req, status, slug, txn_message(t), x);
}

/* One-phase only (never with an Idempotency-Key): the connection was lost
 * after COMMIT was sent and PostgreSQL has not said yet whether it took
 * effect. Not a 503 or 504: those promise that nothing was committed. */
static void reply_unknown(HttpRequest *req, Txn *t)
{
	json_t *x = json_object();

	json_object_set_new(x, "id", json_string(t->id_hex));
	json_object_set_new(x, "outcome", json_string("unknown"));
	json_object_set_new(x, "participant", json_string(t->branches[0].name));
	send_problem(req, 500, "outcome-unknown", txn_message(t), x);
}

static void on_txn_reply(Txn *t, void *arg)
{
	HttpRequest *req = arg;

	switch (txn_outcome(t)) {
	case TXO_COMMITTED:
		reply_committed(req, t);
		break;
	case TXO_UNKNOWN:
		reply_unknown(req, t);
		break;
	case TXO_ABORTED:
		reply_aborted(req, t);
		break;
	}
}

/* Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): false when
 * the request was answered here (a replay or a refusal); otherwise *idem is
 * the key's new in-flight entry, or NULL without a key. */
static bool idempotency_begin(HttpApi *api, HttpRequest *req, const char *body, size_t len, IdemEntry **idem)
{
	const char *h = http_request_header(req, "Idempotency-Key");
	IdemStore *store = txnmgr_idem(api->mgr);
	char key[IDEM_KEY_MAX + 1], why[160], detail[256], retry[24], peer[HTTP_PEER_MAX];
	uint8_t fp[IDEM_FP_LEN];
	const char *text;
	size_t tlen;

	*idem = NULL;
	if (h == NULL)
		return true;
	if (!idem_parse_key(h, key, sizeof(key), why, sizeof(why))) {
		send_invalid(req, "header Idempotency-Key", why);
		return false;
	}
	sha256(body, len, fp);
	switch (idem_begin(store, key, fp, idem)) {
	case IDEM_NEW:
		return true;
	case IDEM_REPLAY:
		text = idem_entry_response(*idem, &tlen);
		log_debug("http %s: Idempotency-Key replayed for transaction %016llx",
		          http_request_peer(req, peer, sizeof(peer)), (unsigned long long)idem_entry_txn(*idem));
		http_response_header(req, "Idempotent-Replayed", "true");
		send_text(req, idem_entry_status(*idem), "application/json", xstrdup(text));
		*idem = NULL;
		return false;
	case IDEM_IN_FLIGHT:
		http_response_header(req, "Retry-After", "1");
		send_problem(req, 409, "idempotency-key-in-use",
		             "the first request with this Idempotency-Key has not finished; retry shortly", NULL);
		return false;
	case IDEM_MISMATCH:
		send_problem(req, 422, "idempotency-key-mismatch",
		             "this Idempotency-Key was already used with a different request body (compared byte for "
		             "byte); use a new key for a new request",
		             NULL);
		return false;
	case IDEM_FULL:
		snprintf(retry, sizeof(retry), "%lld", (long long)idem_seconds_until_room(store, now_wall_ms()));
		http_response_header(req, "Retry-After", retry);
		snprintf(detail, sizeof(detail),
		         "idempotency_max_bytes (%lld) is used up by keys not yet expired; retry later or without a key",
		         (long long)api->cfg->idempotency_max_bytes);
		send_problem(req, 503, "idempotency-store-full", detail, NULL);
		return false;
	}
	return false;
}

static void handle_post_txn(HttpApi *api, HttpRequest *req)
{
	size_t len;
	const char *body = http_request_body(req, &len);
	char field[256], err[512];
	TxnRequest treq;
	IdemEntry *idem;

	if (!idempotency_begin(api, req, body, len, &idem))
		return;
	if (api->draining || (int64_t)txnmgr_in_flight(api->mgr) >= api->cfg->max_in_flight) {
		if (idem != NULL)
			idem_release(txnmgr_idem(api->mgr), idem);
	}
	if (api->draining) {
		http_response_header(req, "Retry-After", "1");
		send_problem(req, 503, "shutting-down", "no new transactions are accepted while twopcd stops", NULL);
		return;
	}
	if ((int64_t)txnmgr_in_flight(api->mgr) >= api->cfg->max_in_flight) {
		http_response_header(req, "Retry-After", "1");
		send_problem(req, 503, "too-many-in-flight", "max_in_flight transactions are already running; retry shortly",
		             NULL);
		return;
	}
	if (!request_parse(body, len, api->cfg, &treq, field, sizeof(field), err, sizeof(err))) {
		if (idem != NULL)
			idem_release(txnmgr_idem(api->mgr), idem);
		send_invalid(req, field, err);
		return;
	}
	/* Everything the transaction and its reply need is in treq (which has
	 * its own copies of the body's strings) and idem: the request's head
	 * and body go now, not when the transaction ends, seconds later.
	 * Before txn_begin, which may reply at once. */
	http_request_release_input(req);
	txn_begin(api->mgr, &treq, idem, on_txn_reply, req);
}

/* ---- GET ----------------------------------------------------------------- */

static void send_json_cb(json_t *body, void *arg)
{
	send_json(arg, 200, body, false);
}

static void handle_get_txn(HttpApi *api, HttpRequest *req, const char *idtext)
{
	uint64_t id;

	if (!txn_id_parse(idtext, &id)) {
		send_invalid(req, "id", "a transaction id is 16 lowercase hexadecimal digits");
		return;
	}
	ops_explain(&api->ops, id, send_json_cb, req);
}

static void handle_metrics(HttpApi *api, HttpRequest *req)
{
	size_t len;
	char *text = ops_metrics(&api->ops, &len);

	http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", len);
	free(text);
}

static void handle_healthz(HttpApi *api, HttpRequest *req)
{
	json_t *body = json_object(), *parts = json_object();
	bool all = true;

	for (size_t i = 0; i < api->cfg->nparticipants; i++) {
		PoolStats ps;
		json_t *p = json_object();
		pool_get_stats(txnmgr_pool(api->mgr, i), &ps);
		json_object_set_new(p, "reachable", json_boolean(ps.reachable));
		json_object_set_new(p, "pool_size", json_integer(ps.size));
		json_object_set_new(p, "open", json_integer(ps.open));
		json_object_set_new(p, "busy", json_integer(ps.busy));
		json_object_set_new(p, "waiters", json_integer(ps.waiters));
		if (!ps.reachable)
			json_object_set_new(p, "error", json_string(ps.last_error));
		json_object_set_new(parts, api->cfg->participants[i].name, p);
		all = all && ps.reachable;
	}
	json_object_set_new(body, "status", json_string(api->draining ? "draining" : all ? "ok" : "degraded"));
	json_object_set_new(body, "in_flight", json_integer((json_int_t)txnmgr_in_flight(api->mgr)));
	json_object_set_new(body, "participants", parts);
	send_json(req, 200, body, false);
}

/* ---- POST /v1/sweep ------------------------------------------------------ */

typedef struct SweepCall {
	HttpApi *api;
	HttpRequest *req;
} SweepCall;

static void on_sweep_done(const SweepReport *rep, void *arg)
{
	SweepCall *call = arg;
	json_t *body = json_object(), *parts = json_object();

	for (size_t i = 0; i < rep->nparts; i++) {
		const SweepPartReport *p = &rep->parts[i];
		json_t *o = json_object();
		json_object_set_new(o, "reachable", json_boolean(p->reachable));
		if (!p->reachable)
			json_object_set_new(o, "error", json_string(p->error));
		json_object_set_new(o, "ours", json_integer((json_int_t)p->ours));
		json_object_set_new(o, "committed", json_integer((json_int_t)p->committed));
		json_object_set_new(o, "rolled_back", json_integer((json_int_t)p->rolled_back));
		json_object_set_new(o, "skipped", json_integer((json_int_t)p->skipped));
		json_object_set_new(o, "foreign", json_integer((json_int_t)p->foreign));
		json_object_set_new(o, "oldest_prepared_age_s", json_integer((json_int_t)p->oldest_age_s));
		json_object_set_new(o, "oldest_prepared_xid_age", json_integer((json_int_t)p->oldest_xid_age));
		json_object_set_new(parts, call->api->cfg->participants[i].name, o);
	}
	json_object_set_new(body, "sweep", json_integer((json_int_t)rep->run));
	json_object_set_new(body, "duration_us", json_integer((json_int_t)rep->duration_us));
	json_object_set_new(body, "decisions_completed", json_integer((json_int_t)rep->decisions_completed));
	json_object_set_new(body, "heuristic_hazards", json_integer((json_int_t)rep->heuristic_hazards));
	json_object_set_new(body, "participants", parts);
	send_json(call->req, 200, body, false);
	free(call);
}

static void handle_sweep(HttpApi *api, HttpRequest *req)
{
	SweepCall *call = xcalloc(1, sizeof(*call));
	call->api = api;
	call->req = req;
	sweeper_request(api->sweeper, on_sweep_done, call);
}

/* ---- routing --------------------------------------------------------------- */

static void method_not_allowed(HttpRequest *req, const char *allow)
{
	char detail[128];

	snprintf(detail, sizeof(detail), "%s takes %s only", http_request_path(req), allow);
	http_response_header(req, "Allow", allow);
	send_problem(req, 405, "method-not-allowed", detail, NULL);
}

/* Bearer tokens (RFC 6750), when auth_token_file is set. */
static bool authorized(HttpApi *api, HttpRequest *req)
{
	const char *h;
	char peer[HTTP_PEER_MAX];

	if (api->auth == NULL)
		return true;
	h = http_request_header(req, "Authorization");
	if (h != NULL && auth_check_header(api->auth, h))
		return true;
	/* Logged before answering: http_respond() gives req back. */
	log_info("http %s: 401 for %s %s (%s)", http_request_peer(req, peer, sizeof(peer)), http_request_method(req),
	         http_request_path(req), h == NULL ? "no token" : "wrong token");
	http_response_header(req, "WWW-Authenticate", h == NULL ? "Bearer realm=\"twopcd\""
	                                                        : "Bearer realm=\"twopcd\", error=\"invalid_token\"");
	send_problem(req, 401, "unauthorized",
	             h == NULL ? "this endpoint needs an Authorization: Bearer token"
	                       : "the bearer token is not one of auth_token_file's",
	             NULL);
	return false;
}

static void on_request(HttpRequest *req, void *arg)
{
	HttpApi *api = arg;
	const char *path = http_request_path(req);
	const char *method = http_request_method(req);
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;

	if (strcmp(path, "/healthz") == 0) {
		if (!get)
			method_not_allowed(req, "GET");
		else
			handle_healthz(api, req);
		return;
	}
	/* ---- the dashboard's files (dashboard_assets.h): no token, they hold no data */
	if (dashboard_has_path(path)) {
		if (!get)
			method_not_allowed(req, "GET");
		else
			dashboard_serve(req);
		return;
	}
	/* ---- end of the dashboard's files */
	if (!authorized(api, req))
		return;
	if (strcmp(path, "/v1/transactions") == 0) {
		if (!post)
			method_not_allowed(req, "POST");
		else
			handle_post_txn(api, req);
		return;
	}
	if (strncmp(path, "/v1/transactions/", 17) == 0) {
		if (!get)
			method_not_allowed(req, "GET");
		else
			handle_get_txn(api, req, path + 17);
		return;
	}
	if (strcmp(path, "/v1/sweep") == 0) {
		if (!post)
			method_not_allowed(req, "POST");
		else
			handle_sweep(api, req);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		if (!get)
			method_not_allowed(req, "GET");
		else
			handle_metrics(api, req);
		return;
	}
	if (strcmp(path, "/v1/in-doubt") == 0) {
		if (!get)
			method_not_allowed(req, "GET");
		else
			ops_in_doubt(&api->ops, send_json_cb, req);
		return;
	}
	if (strcmp(path, "/v1/recent-aborts") == 0) {
		if (!get)
			method_not_allowed(req, "GET");
		else
			send_json(req, 200, ops_recent_aborts(&api->ops), false);
		return;
	}
	send_problem(req, 404, "not-found", "no such path; see docs/API.md", NULL);
}

HttpApi *http_api_start(struct event_base *base, const Config *cfg, TxnMgr *mgr, Sweeper *sweeper, Dlog *dlog,
                        char *err, size_t errlen)
{
	HttpApi *api = xcalloc(1, sizeof(*api));
	HttpServerConfig sc = {
	    .host = cfg->listen_host,
	    .port = cfg->listen_port,
	    .max_connections = cfg->max_connections,
	    .max_header_bytes = cfg->max_header_bytes,
	    .max_body_bytes = cfg->max_body_bytes,
	    .request_timeout_ms = cfg->http_request_timeout_ms,
	    .idle_timeout_ms = cfg->http_idle_timeout_ms,
	};

	api->sweeper = sweeper;
	api->cfg = cfg;
	api->mgr = mgr;
	if (cfg->auth_token_file != NULL) {
		api->auth = auth_load(cfg->auth_token_file, err, errlen);
		if (api->auth == NULL) {
			free(api);
			return NULL;
		}
	}
	api->server = http_server_new(base, &sc, on_request, on_protocol_error, api, err, errlen);
	if (api->server == NULL) {
		auth_free(api->auth);
		free(api);
		return NULL;
	}
	api->ops = (OpsContext){.base = base, .cfg = cfg, .mgr = mgr, .sweeper = sweeper, .dlog = dlog,
	                        .server = api->server};
	return api;
}

bool http_api_reload_auth(HttpApi *api, char *err, size_t errlen)
{
	AuthTokens *next = NULL;

	if (api->cfg->auth_token_file != NULL) {
		next = auth_load(api->cfg->auth_token_file, err, errlen);
		if (next == NULL)
			return false;
		log_info("auth: %zu bearer token(s) from %s", auth_count(next), api->cfg->auth_token_file);
	} else if (api->auth != NULL) {
		log_warning("auth: auth_token_file is now empty: authentication is off");
	}
	auth_free(api->auth);
	api->auth = next;
	return true;
}

void http_api_drain(HttpApi *api)
{
	api->draining = true;
}

void http_api_free(HttpApi *api)
{
	if (api == NULL)
		return;
	http_server_free(api->server);
	auth_free(api->auth);
	free(api);
}
