/*
 * netproxy: a small TCP proxy for the fault tests, one per participant.
 *
 * It listens on 127.0.0.1 (a port the kernel picks) and forwards every
 * connection to 127.0.0.1:TARGET, so twopcd can be pointed at the proxy and
 * the test can change what the network does under it:
 *
 *   NP_PASS       forward both ways
 *   NP_DELAY      forward, holding every chunk DELAY_MS in both directions
 *   NP_DROP       reset (RST) every current connection; reset new ones on accept
 *   NP_BLACKHOLE  a partition: keep connections open but forward nothing,
 *                 accept new ones and forward nothing for them either
 *   NP_HEAL       back to NP_PASS; connections held by a blackhole are reset,
 *                 as after a partition that lasted long: both ends notice
 *
 * A proxy is one thread of the calling process and uses loopback only. It
 * dies with the process; np_stop() stops it earlier. Its sockets are
 * close-on-exec, so daemons and PostgreSQL started meanwhile hold none of
 * them (a reset must reach the peer, not a stray copy of the socket).
 * Check forks each test: start proxies inside the test, not before the fork.
 */
#ifndef TWOPC_NETPROXY_H
#define TWOPC_NETPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NP_WUR __attribute__((warn_unused_result))

typedef struct NetProxy NetProxy;

typedef enum NpMode {
	NP_PASS = 0,  /* forward */
	NP_DELAY,     /* forward, each chunk held delay_ms in each direction */
	NP_DROP,      /* reset everything, now and on accept */
	NP_BLACKHOLE, /* forward nothing, hold every connection open */
	NP_HEAL,      /* = NP_PASS after resetting the connections a blackhole held */
} NpMode;

/* What a proxy has done since it started. */
typedef struct NpStats {
	uint64_t accepted;   /* connections accepted */
	uint64_t forwarded;  /* connections whose upstream connect succeeded */
	uint64_t refused;    /* upstream connect failed: client reset */
	uint64_t resets;     /* connections reset by DROP, HEAL, a refusal or an error */
	uint64_t bytes_up;   /* client -> target */
	uint64_t bytes_down; /* target -> client */
	int open;            /* connections open now */
} NpStats;

/* Starts a proxy to 127.0.0.1:TARGET_PORT in NP_PASS mode. */
bool np_start(int target_port, NetProxy **out, char *err, size_t errlen) NP_WUR;
/* The port it listens on (127.0.0.1). */
int np_port(const NetProxy *np);
/* Changes the mode; returns once the proxy thread has applied it (after
 * NP_DROP every connection is already reset). DELAY_MS counts for NP_DELAY
 * only. */
bool np_set_mode(NetProxy *np, NpMode mode, int delay_ms, char *err, size_t errlen) NP_WUR;
NpMode np_mode(const NetProxy *np);
void np_get_stats(NetProxy *np, NpStats *out);
const char *np_mode_name(NpMode mode);
/* Stops the thread and closes every socket; NULL is fine. */
void np_stop(NetProxy *np);

#endif /* TWOPC_NETPROXY_H */
