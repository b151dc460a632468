/*
 * fanout: one read-only query on several participants at once, for the
 * operator endpoints (GET /v1/in-doubt, GET /v1/transactions/{id}).
 *
 * Each participant's query takes a pool connection as a priority waiter
 * (they are short and must not queue behind a busy workload) and must
 * answer within a deadline; a participant that cannot is reported with its
 * error, the others still count. Runs on the event loop; never blocks.
 */
#ifndef TWOPC_FANOUT_H
#define TWOPC_FANOUT_H

#include <stddef.h>

#include <libpq-fe.h>

#include "pool.h"

struct event_base;

typedef struct Fanout Fanout;

/* One participant's answer: res is NULL when err says why there is none.
 * The callee must not keep res (it is freed afterwards). */
typedef void (*FanoutEachFn)(size_t slot, const PGresult *res, const char *err, void *arg);
/* Every participant answered or failed; the fanout frees itself after. */
typedef void (*FanoutDoneFn)(void *arg);

/* Runs sql (with nparams text params, the same for every participant) on
 * pools[0..n-1]; each(slot, ...) per pool, then done(). The strings are
 * copied. */
void fanout_run(struct event_base *base, Pool **pools, size_t n, const char *sql, int nparams,
                const char *const *params, int64_t timeout_ms, FanoutEachFn each, FanoutDoneFn done, void *arg);

#endif
