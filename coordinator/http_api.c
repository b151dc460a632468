/*
 * http_api: twopcd's HTTP/JSON interface on libevent's evhttp.
 *
 *   POST /v1/transactions        run one atomic multi-participant transaction
 *   GET  /v1/transactions/{id}   committed | aborted | in_progress | unknown
 *   GET  /healthz                each participant's reachability
 *
 * Every error is application/problem+json (RFC 9457) with a stable `type`
 * URI per kind of error. A POST's reply is sent from the transaction's
 * reply callback; evhttp keeps the request alive until then and frees it
 * itself if the client went away.
 */
#include "http_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "log.h"
#include "request.h"

#define PROBLEM_BASE "https://twopc.dev/problems/"

struct HttpApi {
	struct event_base *base;
	const Config *cfg;
	TxnMgr *mgr;
	Sweeper *sweeper;
	struct evhttp *http;
	bool draining; /* shutting down: new transactions are refused */
};

static void send_json(struct evhttp_request *req, int status, const char *reason, json_t *body, bool problem)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = json_dumps(body, JSON_COMPACT);

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  problem ? "application/problem+json" : "application/json");
	if (text != NULL) {
		evbuffer_add(buf, text, strlen(text));
		evbuffer_add(buf, "\n", 1);
	}
	evhttp_send_reply(req, status, reason, buf);
	evbuffer_free(buf);
	free(text);
	json_decref(body);
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Error";
	}
}

/* A problem document; `extra` (may be NULL) adds members and is consumed. */
static void send_problem(struct evhttp_request *req, int status, const char *slug, const char *title,
                         const char *detail, json_t *extra)
{
	char type[128];
	json_t *p = json_object();

	snprintf(type, sizeof(type), PROBLEM_BASE "%s", slug);
	json_object_set_new(p, "type", json_string(type));
	json_object_set_new(p, "title", json_string(title));
	json_object_set_new(p, "status", json_integer(status));
	json_object_set_new(p, "detail", json_string(detail));
	if (extra != NULL) {
		json_object_update(p, extra);
		json_decref(extra);
	}
	send_json(req, status, reason_phrase(status), p, true);
}

/* ---- POST /v1/transactions ---------------------------------------------- */

static void reply_committed(struct evhttp_request *req, Txn *t)
{
	json_t *body = json_object(), *branches = json_object();

	json_object_set_new(body, "id", json_string(t->id_hex));
	json_object_set_new(body, "outcome", json_string("committed"));
	for (size_t i = 0; i < t->nbranches; i++) {
		Branch *b = &t->branches[i];
		json_object_set(branches, b->name, b->results ? b->results : json_array());
	}
	json_object_set_new(body, "branches", branches);
	if (t->state != TXN_FINISHED)
		json_object_set_new(body, "phase2", json_string("pending"));
	send_json(req, 200, "OK", body, false);
}

static void reply_aborted(struct evhttp_request *req, Txn *t)
{
	json_t *x = json_object();
	const char *participant = t->fail_branch >= 0 ? t->branches[t->fail_branch].name : NULL;
	int status;
	const char *slug, *title;

	json_object_set_new(x, "id", json_string(t->id_hex));
	json_object_set_new(x, "outcome", json_string("aborted"));
	if (participant)
		json_object_set_new(x, "participant", json_string(participant));
	switch (t->reason) {
	case ABORT_STATEMENT:
		status = 409, slug = "statement-failed", title = "A statement failed; the transaction was rolled back";
		break;
	case ABORT_EXPECT_ROWS:
		status = 409, slug = "expect-rows",
		title = "An expect_rows guard did not hold; the transaction was rolled back";
		json_object_set_new(x, "expected_rows", json_integer(t->expected_rows));
		json_object_set_new(x, "actual_rows", json_integer(t->actual_rows));
		break;
	case ABORT_PREPARE:
		status = 409, slug = "prepare-failed",
		title = "PREPARE TRANSACTION failed; the transaction was rolled back";
		break;
	case ABORT_TIMEOUT:
		status = 504, slug = "timeout",
		title = "The transaction timed out before its decision and was rolled back";
		break;
	case ABORT_SHUTDOWN:
		status = 503, slug = "shutting-down",
		title = "twopcd is shutting down; the transaction was rolled back";
		break;
	case ABORT_UNAVAILABLE:
	default:
		status = 503, slug = "participant-unavailable",
		title = "A participant could not be reached; the transaction was rolled back and is safe to retry";
		break;
	}
	if (status == 409) {
		json_object_set_new(x, "statement", t->fail_stmt >= 0 ? json_integer(t->fail_stmt) : json_null());
		json_object_set_new(x, "sqlstate", t->sqlstate[0] ? json_string(t->sqlstate) : json_null());
		json_object_set_new(x, "message", json_string(t->message));
	}
	if (status == 503)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
	send_problem(req, status, slug, title, t->message, x);
}

static void on_txn_reply(Txn *t, void *arg)
{
	struct evhttp_request *req = arg;
	if (t->durable)
		reply_committed(req, t);
	else
		reply_aborted(req, t);
}

static void handle_post_txn(HttpApi *api, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char field[256], err[512];
	TxnRequest treq;

	if (api->draining) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
		send_problem(req, 503, "shutting-down", "twopcd is shutting down",
		             "no new transactions are accepted while twopcd stops", NULL);
		return;
	}
	if ((int64_t)txnmgr_in_flight(api->mgr) >= api->cfg->max_in_flight) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
		send_problem(req, 503, "too-many-in-flight", "Too many transactions in flight",
		             "max_in_flight transactions are already running; retry shortly", NULL);
		return;
	}
	const char *body = (const char *)evbuffer_pullup(in, (ssize_t)len);
	if (!request_parse(body ? body : "", len, api->cfg, &treq, field, sizeof(field), err, sizeof(err))) {
		json_t *x = json_object();
		json_object_set_new(x, "field", json_string(field));
		send_problem(req, 400, "invalid-request", "Invalid request", err, x);
		return;
	}
	txn_begin(api->mgr, &treq, on_txn_reply, req);
}

/* ---- GET ----------------------------------------------------------------- */

static void handle_get_txn(HttpApi *api, struct evhttp_request *req, const char *idtext)
{
	uint64_t id;
	static const char *const names[] = {
	    [TXS_UNKNOWN] = "unknown",
	    [TXS_IN_PROGRESS] = "in_progress",
	    [TXS_COMMITTED] = "committed",
	    [TXS_ABORTED] = "aborted",
	};

	if (!txn_id_parse(idtext, &id)) {
		json_t *x = json_object();
		json_object_set_new(x, "field", json_string("id"));
		send_problem(req, 400, "invalid-request", "Invalid request",
		             "a transaction id is 16 lowercase hexadecimal digits", x);
		return;
	}
	json_t *body = json_object();
	json_object_set_new(body, "id", json_string(idtext));
	json_object_set_new(body, "status", json_string(names[txnmgr_status(api->mgr, id)]));
	send_json(req, 200, "OK", body, false);
}

static void handle_healthz(HttpApi *api, struct evhttp_request *req)
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
	send_json(req, 200, "OK", body, false);
}

/* ---- POST /v1/sweep ------------------------------------------------------ */

typedef struct SweepCall {
	HttpApi *api;
	struct evhttp_request *req;
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
	send_json(call->req, 200, "OK", body, false);
	free(call);
}

static void handle_sweep(HttpApi *api, struct evhttp_request *req)
{
	SweepCall *call = xcalloc(1, sizeof(*call));
	call->api = api;
	call->req = req;
	sweeper_request(api->sweeper, on_sweep_done, call);
}

/* ---- routing --------------------------------------------------------------- */

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	send_problem(req, 405, "method-not-allowed", "Method not allowed", "this path does not take that method", NULL);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	HttpApi *api = arg;
	const char *uri = evhttp_request_get_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	char path[256];
	size_t plen = strcspn(uri, "?#");

	if (plen >= sizeof(path)) {
		send_problem(req, 404, "not-found", "Not found", "no such path", NULL);
		return;
	}
	memcpy(path, uri, plen);
	path[plen] = '\0';

	if (strcmp(path, "/v1/transactions") == 0) {
		if (cmd != EVHTTP_REQ_POST)
			method_not_allowed(req, "POST");
		else
			handle_post_txn(api, req);
		return;
	}
	if (strncmp(path, "/v1/transactions/", 17) == 0) {
		if (cmd != EVHTTP_REQ_GET)
			method_not_allowed(req, "GET");
		else
			handle_get_txn(api, req, path + 17);
		return;
	}
	if (strcmp(path, "/v1/sweep") == 0) {
		if (cmd != EVHTTP_REQ_POST)
			method_not_allowed(req, "POST");
		else
			handle_sweep(api, req);
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		if (cmd != EVHTTP_REQ_GET)
			method_not_allowed(req, "GET");
		else
			handle_healthz(api, req);
		return;
	}
	send_problem(req, 404, "not-found", "Not found", "no such path; see docs/API.md", NULL);
}

HttpApi *http_api_start(struct event_base *base, const Config *cfg, TxnMgr *mgr, Sweeper *sweeper, char *err,
                        size_t errlen)
{
	HttpApi *api = xcalloc(1, sizeof(*api));

	api->sweeper = sweeper;
	api->base = base;
	api->cfg = cfg;
	api->mgr = mgr;
	api->http = evhttp_new(base);
	if (api->http == NULL) {
		free(api);
		errf(err, errlen, "cannot create the HTTP server");
		return NULL;
	}
	evhttp_set_max_body_size(api->http, (ev_ssize_t)cfg->max_body_bytes);
	evhttp_set_max_headers_size(api->http, 16384);
	evhttp_set_timeout(api->http, 60);
	evhttp_set_gencb(api->http, on_request, api);
	if (evhttp_bind_socket_with_handle(api->http, cfg->listen_host, (ev_uint16_t)cfg->listen_port) == NULL) {
		errf(err, errlen, "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
		     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		evhttp_free(api->http);
		free(api);
		return NULL;
	}
	return api;
}

void http_api_drain(HttpApi *api)
{
	api->draining = true;
}

void http_api_free(HttpApi *api)
{
	if (api == NULL)
		return;
	evhttp_free(api->http);
	free(api);
}
