/*
 * netproxy: a TCP proxy in one thread, for breaking the network between
 * twopcd and a participant on purpose (see netproxy.h).
 *
 * The thread runs a poll() loop over its listening socket, a wake-up pipe
 * and both sockets of every connection. Data read from one side becomes a
 * chunk queued for the other side with a release time (now, or now + the
 * delay), so DELAY holds every chunk without reordering. A side that sends
 * FIN closes the pair once what it sent is delivered; any error resets both
 * sides. Commands come from other threads through the pipe; the caller
 * waits until the thread has applied them, so "after np_set_mode(DROP)
 * returns, every connection is reset" holds without sleeps.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* accept4, pipe2 */
#endif
#include "netproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NP_CHUNK_MAX 65536
/* Stop reading a side while this much waits for the other side: a slow or
 * delayed peer must not make the proxy buffer without bound. */
#define NP_QUEUE_CAP   (1024 * 1024)
#define NP_POLL_MAX_MS 1000
#define NP_CMD_WAIT_MS 10000

typedef struct NpChunk NpChunk;
typedef struct NpQueue NpQueue;
typedef struct NpConn NpConn;

struct NpChunk {
	NpChunk *next;
	int64_t release_ms; /* not written before this time (DELAY) */
	size_t len, off;    /* bytes held, bytes already written */
	char data[];
};

struct NpQueue {
	NpChunk *head, *tail;
	size_t bytes;
};

/* One proxied connection: the client's socket and ours to the target. */
struct NpConn {
	NpConn *next;
	int cfd;         /* accepted from the client */
	int ufd;         /* to the target; -1 for a connection a blackhole took */
	bool connecting; /* upstream connect in progress */
	bool held;       /* blackholed: never polled, reset when the partition ends */
	bool c_eof;      /* the client sent FIN */
	bool u_eof;      /* the target sent FIN */
	bool dead;       /* closed; unlinked at the end of the loop iteration */
	NpQueue up;      /* client -> target */
	NpQueue down;    /* target -> client */
};

struct NetProxy {
	pthread_t thread;
	bool thread_started;
	int lfd;
	int wake[2]; /* commands and stop: one byte wakes the loop */
	int target_port;
	int port;

	/* The command channel, under mu. call_mu lets one caller at a time
	 * hand over a command and wait for it. */
	pthread_mutex_t mu;
	pthread_mutex_t call_mu;
	pthread_cond_t cv;
	bool stop;
	uint64_t cmd_seq, done_seq;
	NpMode cmd_mode;
	int cmd_delay_ms;

	/* Owned by the thread; mode is also read (atomically) by np_mode(). */
	NpMode mode;
	int delay_ms;
	NpConn *conns;
	NpStats stats; /* written by the thread with atomics */
};

static void np_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void np_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int64_t np_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define NP_COUNT(np, field, n) __atomic_add_fetch(&(np)->stats.field, (n), __ATOMIC_RELAXED)

const char *np_mode_name(NpMode mode)
{
	switch (mode) {
	case NP_PASS:
		return "PASS";
	case NP_DELAY:
		return "DELAY";
	case NP_DROP:
		return "DROP";
	case NP_BLACKHOLE:
		return "BLACKHOLE";
	case NP_HEAL:
		return "HEAL";
	}
	return "?";
}

/* ------------------------------------------------------------- sockets */

/* Closes FD so that the peer gets a RST, not a FIN. */
static void np_reset_fd(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

static void np_queue_free(NpQueue *q)
{
	NpChunk *c = q->head;

	while (c != NULL) {
		NpChunk *next = c->next;

		free(c);
		c = next;
	}
	memset(q, 0, sizeof *q);
}

/* Closes both sides (RST if RESET, else FIN) and marks the pair dead. */
static void np_conn_close(NetProxy *np, NpConn *c, bool reset)
{
	if (c->dead)
		return;
	if (reset) {
		np_reset_fd(c->cfd);
		np_reset_fd(c->ufd);
		NP_COUNT(np, resets, 1);
	} else {
		if (c->cfd >= 0)
			close(c->cfd);
		if (c->ufd >= 0)
			close(c->ufd);
	}
	c->cfd = c->ufd = -1;
	np_queue_free(&c->up);
	np_queue_free(&c->down);
	c->dead = true;
	__atomic_sub_fetch(&np->stats.open, 1, __ATOMIC_RELAXED);
}

static void np_reap(NetProxy *np)
{
	NpConn **pp = &np->conns;

	while (*pp != NULL) {
		NpConn *c = *pp;

		if (c->dead) {
			*pp = c->next;
			free(c);
		} else {
			pp = &c->next;
		}
	}
}

/* Starts a non-blocking connect to the target. */
static int np_connect_upstream(NetProxy *np, bool *in_progress)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	*in_progress = false;
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)np->target_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, always */
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0)
		return fd;
	if (errno == EINPROGRESS) {
		*in_progress = true;
		return fd;
	}
	close(fd);
	return -1;
}

static void np_accept_all(NetProxy *np)
{
	for (;;) {
		int fd = accept4(np->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int one = 1;
		NpConn *c;

		if (fd < 0)
			return; /* EAGAIN, or an aborted connection: nothing to do */
		NP_COUNT(np, accepted, 1);
		if (np->mode == NP_DROP) {
			np_reset_fd(fd);
			NP_COUNT(np, resets, 1);
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c = calloc(1, sizeof *c);
		if (c == NULL) {
			np_reset_fd(fd);
			continue;
		}
		c->cfd = fd;
		c->ufd = -1;
		if (np->mode == NP_BLACKHOLE) {
			/* A partition: the client's connect "works", then silence. */
			c->held = true;
		} else {
			c->ufd = np_connect_upstream(np, &c->connecting);
			if (c->ufd < 0) {
				np_reset_fd(fd);
				NP_COUNT(np, refused, 1);
				NP_COUNT(np, resets, 1);
				free(c);
				continue;
			}
			if (!c->connecting)
				NP_COUNT(np, forwarded, 1);
		}
		__atomic_add_fetch(&np->stats.open, 1, __ATOMIC_RELAXED);
		c->next = np->conns;
		np->conns = c;
	}
}

/* --------------------------------------------------------------- pumping */

static bool np_head_released(const NpQueue *q, int64_t now)
{
	return q->head != NULL && q->head->release_ms <= now;
}

/* Reads one chunk from FD into Q. Returns 1 data, 0 EOF, -1 error, 2 nothing. */
static int np_read_into(NetProxy *np, int fd, NpQueue *q, int64_t now)
{
	char buf[NP_CHUNK_MAX];
	ssize_t n = read(fd, buf, sizeof buf);
	NpChunk *ch;

	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 2 : -1;
	if (n == 0)
		return 0;
	ch = malloc(sizeof *ch + (size_t)n);
	if (ch == NULL)
		return -1;
	ch->next = NULL;
	ch->len = (size_t)n;
	ch->off = 0;
	ch->release_ms = now + (np->mode == NP_DELAY ? np->delay_ms : 0);
	memcpy(ch->data, buf, (size_t)n);
	if (q->tail != NULL)
		q->tail->next = ch;
	else
		q->head = ch;
	q->tail = ch;
	q->bytes += (size_t)n;
	return 1;
}

/* Writes the released chunks of Q to FD. False on a write error. */
static bool np_write_from(int fd, NpQueue *q, int64_t now, uint64_t *counter)
{
	while (np_head_released(q, now)) {
		NpChunk *ch = q->head;
		ssize_t n = send(fd, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		__atomic_add_fetch(counter, (uint64_t)n, __ATOMIC_RELAXED);
		ch->off += (size_t)n;
		q->bytes -= (size_t)n;
		if (ch->off < ch->len)
			return true; /* the socket is full; POLLOUT tells us when to go on */
		q->head = ch->next;
		if (q->head == NULL)
			q->tail = NULL;
		free(ch);
	}
	return true;
}

/* Handles the poll results of one connection. */
static void np_pump(NetProxy *np, NpConn *c, short crev, short urev, int64_t now)
{
	int r;

	if (c->connecting && urev != 0) {
		int soerr = 0;
		socklen_t len = sizeof soerr;

		if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
			NP_COUNT(np, refused, 1);
			np_conn_close(np, c, true);
			return;
		}
		c->connecting = false;
		NP_COUNT(np, forwarded, 1);
		urev = POLLOUT; /* maybe something from the client waits already */
	}
	if (crev & (POLLIN | POLLHUP | POLLERR)) {
		r = np_read_into(np, c->cfd, &c->up, now);
		if (r < 0) {
			np_conn_close(np, c, true);
			return;
		}
		if (r == 0)
			c->c_eof = true;
	}
	if (!c->connecting && (urev & (POLLIN | POLLHUP | POLLERR))) {
		r = np_read_into(np, c->ufd, &c->down, now);
		if (r < 0) {
			np_conn_close(np, c, true);
			return;
		}
		if (r == 0)
			c->u_eof = true;
	}
	if (!c->connecting && !np_write_from(c->ufd, &c->up, now, &np->stats.bytes_up)) {
		np_conn_close(np, c, true);
		return;
	}
	if (!np_write_from(c->cfd, &c->down, now, &np->stats.bytes_down)) {
		np_conn_close(np, c, true);
		return;
	}
	/* A FIN ends the pair once what came before it is delivered. The
	 * PostgreSQL protocol has no use for half-closed connections. */
	if ((c->c_eof && c->up.head == NULL && !c->connecting) || (c->u_eof && c->down.head == NULL))
		np_conn_close(np, c, false);
}

/* ------------------------------------------------------------- commands */

static void np_apply(NetProxy *np, NpMode mode, int delay_ms)
{
	NpConn *c;

	switch (mode) {
	case NP_DROP:
		for (c = np->conns; c != NULL; c = c->next)
			np_conn_close(np, c, true);
		break;
	case NP_BLACKHOLE:
		for (c = np->conns; c != NULL; c = c->next)
			c->held = true;
		break;
	case NP_PASS:
	case NP_DELAY:
	case NP_HEAL:
		/* Whatever a partition held is dead for both ends. */
		for (c = np->conns; c != NULL; c = c->next)
			if (c->held)
				np_conn_close(np, c, true);
		break;
	}
	np_reap(np);
	__atomic_store_n(&np->mode, mode == NP_HEAL ? NP_PASS : mode, __ATOMIC_RELAXED);
	np->delay_ms = mode == NP_DELAY ? delay_ms : 0;
}

/* Applies a pending command, if any; returns whether the thread must stop. */
static bool np_take_command(NetProxy *np, bool *applied)
{
	char buf[64];
	bool stop;

	while (read(np->wake[0], buf, sizeof buf) > 0)
		;
	pthread_mutex_lock(&np->mu);
	if (np->done_seq != np->cmd_seq) {
		np_apply(np, np->cmd_mode, np->cmd_delay_ms);
		np->done_seq = np->cmd_seq;
		*applied = true;
		pthread_cond_broadcast(&np->cv);
	}
	stop = np->stop;
	pthread_mutex_unlock(&np->mu);
	return stop;
}

/* ------------------------------------------------------------ the thread */

static void *np_thread(void *arg)
{
	NetProxy *np = arg;
	struct pollfd *pfd = NULL;
	NpConn **owner = NULL;
	size_t cap = 0;

	for (;;) {
		int64_t now = np_now_ms(), next = -1;
		size_t n = 2, i;
		int timeout;
		bool applied = false;
		NpConn *c;

		/* two slots per connection plus the pipe and the listener */
		size_t want = 2;
		for (c = np->conns; c != NULL; c = c->next)
			want += 2;
		if (want > cap) {
			struct pollfd *np_pfd = realloc(pfd, want * sizeof *pfd);
			NpConn **np_owner;

			if (np_pfd == NULL)
				break;
			pfd = np_pfd;
			np_owner = realloc(owner, want * sizeof *owner);
			if (np_owner == NULL)
				break;
			owner = np_owner;
			cap = want;
		}
		pfd[0] = (struct pollfd){.fd = np->wake[0], .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = np->lfd, .events = POLLIN};
		owner[0] = owner[1] = NULL;
		for (c = np->conns; c != NULL; c = c->next) {
			short cev = 0, uev = 0;
			const NpQueue *qs[2] = {&c->up, &c->down};
			int q;

			if (c->held)
				continue; /* a partition: nothing moves, nothing is noticed */
			if (!c->c_eof && c->up.bytes < NP_QUEUE_CAP)
				cev |= POLLIN;
			if (np_head_released(&c->down, now))
				cev |= POLLOUT;
			if (c->connecting) {
				uev = POLLOUT;
			} else {
				if (!c->u_eof && c->down.bytes < NP_QUEUE_CAP)
					uev |= POLLIN;
				if (np_head_released(&c->up, now))
					uev |= POLLOUT;
			}
			pfd[n] = (struct pollfd){.fd = cev ? c->cfd : -1, .events = cev};
			owner[n++] = c;
			pfd[n] = (struct pollfd){.fd = uev ? c->ufd : -1, .events = uev};
			owner[n++] = c;
			for (q = 0; q < 2; q++)
				if (qs[q]->head != NULL && qs[q]->head->release_ms > now &&
				    (next < 0 || qs[q]->head->release_ms < next))
					next = qs[q]->head->release_ms;
		}
		timeout = next < 0 ? NP_POLL_MAX_MS : (int)(next - now);
		if (timeout > NP_POLL_MAX_MS)
			timeout = NP_POLL_MAX_MS;
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
			break;
		if ((pfd[0].revents & POLLIN) && np_take_command(np, &applied))
			break;
		if (applied)
			continue; /* connections may be gone: poll again with a fresh list */
		if (pfd[1].revents & POLLIN)
			np_accept_all(np);
		now = np_now_ms();
		for (i = 2; i + 1 < n; i += 2) {
			c = owner[i];
			/* timed chunks become due without any event */
			np_pump(np, c, pfd[i].revents, pfd[i + 1].revents, now);
		}
		np_reap(np);
	}
	free(pfd);
	free(owner);
	return NULL;
}

/* ------------------------------------------------------------------ API */

bool np_start(int target_port, NetProxy **out, char *err, size_t errlen)
{
	NetProxy *np = calloc(1, sizeof *np);
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	sigset_t all, old;
	int one = 1;

	*out = NULL;
	if (np == NULL) {
		np_seterr(err, errlen, "out of memory");
		return false;
	}
	np->lfd = np->wake[0] = np->wake[1] = -1;
	np->target_port = target_port;
	pthread_mutex_init(&np->mu, NULL);
	pthread_mutex_init(&np->call_mu, NULL);
	pthread_cond_init(&np->cv, NULL);
	if (pipe2(np->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		np_seterr(err, errlen, "pipe2: %s", strerror(errno));
		goto fail;
	}
	np->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (np->lfd < 0) {
		np_seterr(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	(void)setsockopt(np->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = 0; /* the kernel picks a free port, and we hold it */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(np->lfd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(np->lfd, 128) != 0 ||
	    getsockname(np->lfd, (struct sockaddr *)&sin, &len) != 0) {
		np_seterr(err, errlen, "listen on 127.0.0.1: %s", strerror(errno));
		goto fail;
	}
	np->port = ntohs(sin.sin_port);
	/* the proxy thread takes no signals: the test's handlers run elsewhere */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&np->thread, NULL, np_thread, np) != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		np_seterr(err, errlen, "pthread_create failed");
		goto fail;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	np->thread_started = true;
	*out = np;
	return true;
fail:
	np_stop(np);
	return false;
}

int np_port(const NetProxy *np)
{
	return np->port;
}

NpMode np_mode(const NetProxy *np)
{
	return __atomic_load_n(&np->mode, __ATOMIC_RELAXED);
}

bool np_set_mode(NetProxy *np, NpMode mode, int delay_ms, char *err, size_t errlen)
{
	struct timespec until;
	uint64_t seq;
	bool ok = true;

	if (mode == NP_DELAY && delay_ms < 0) {
		np_seterr(err, errlen, "negative delay");
		return false;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += NP_CMD_WAIT_MS / 1000;
	pthread_mutex_lock(&np->call_mu);
	pthread_mutex_lock(&np->mu);
	seq = ++np->cmd_seq;
	np->cmd_mode = mode;
	np->cmd_delay_ms = delay_ms;
	if (write(np->wake[1], "c", 1) < 0 && errno != EAGAIN) {
		np_seterr(err, errlen, "wake the proxy: %s", strerror(errno));
		ok = false;
	}
	while (ok && np->done_seq < seq) {
		if (pthread_cond_timedwait(&np->cv, &np->mu, &until) != 0) {
			np_seterr(err, errlen, "proxy to port %d did not apply %s within %d ms", np->target_port,
			          np_mode_name(mode), NP_CMD_WAIT_MS);
			ok = false;
		}
	}
	pthread_mutex_unlock(&np->mu);
	pthread_mutex_unlock(&np->call_mu);
	return ok;
}

void np_get_stats(NetProxy *np, NpStats *out)
{
	out->accepted = __atomic_load_n(&np->stats.accepted, __ATOMIC_RELAXED);
	out->forwarded = __atomic_load_n(&np->stats.forwarded, __ATOMIC_RELAXED);
	out->refused = __atomic_load_n(&np->stats.refused, __ATOMIC_RELAXED);
	out->resets = __atomic_load_n(&np->stats.resets, __ATOMIC_RELAXED);
	out->bytes_up = __atomic_load_n(&np->stats.bytes_up, __ATOMIC_RELAXED);
	out->bytes_down = __atomic_load_n(&np->stats.bytes_down, __ATOMIC_RELAXED);
	out->open = __atomic_load_n(&np->stats.open, __ATOMIC_RELAXED);
}

void np_stop(NetProxy *np)
{
	NpConn *c;

	if (np == NULL)
		return;
	if (np->thread_started) {
		pthread_mutex_lock(&np->mu);
		np->stop = true;
		pthread_mutex_unlock(&np->mu);
		if (write(np->wake[1], "s", 1) < 0) {
			/* the pipe is full: the thread wakes anyway */
		}
		pthread_join(np->thread, NULL);
	}
	for (c = np->conns; c != NULL; c = c->next)
		np_conn_close(np, c, true);
	np_reap(np);
	if (np->lfd >= 0)
		close(np->lfd);
	if (np->wake[0] >= 0)
		close(np->wake[0]);
	if (np->wake[1] >= 0)
		close(np->wake[1]);
	pthread_cond_destroy(&np->cv);
	pthread_mutex_destroy(&np->call_mu);
	pthread_mutex_destroy(&np->mu);
	free(np);
}
