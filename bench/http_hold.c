/*
 * twopc-hold: holds N transfers in flight in twopcd at once, for
 * bench/measure-memory.sh. Opens N HTTP connections to twopcd, sends one
 * POST /v1/transactions on each (a transfer between a random account of
 * bank_a and one of bank_b, amount 1, with a long timeout_ms), prints
 * "sent N" on stdout when every request is written, then waits for every
 * answer (or -w seconds) and prints how many came back with which status.
 * The requests stay in flight only because the measuring script holds the
 * rows they need locked in another session; this program just sends.
 *
 * With -i it sends nothing: it opens N idle keep-alive connections, prints
 * "open N", and holds them for -w seconds (the cost of a connection alone).
 *
 *   twopc-hold -n N -p PORT [-a ACCOUNTS] [-t TIMEOUT_MS] [-w SECONDS] [-i]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct Conn {
	int fd;
	size_t sent, len; /* request bytes written, total */
	char req[768];
	int status; /* 0: no answer yet; -1: error */
} Conn;

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void usage(void)
{
	fprintf(stderr, "usage: twopc-hold -n N -p PORT [-a ACCOUNTS] [-t TIMEOUT_MS] [-w SECONDS] [-i]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int n = 0, port = 0, accounts = 10000, timeout_ms = 300000, wait_s = 600, idle = 0, opt;
	while ((opt = getopt(argc, argv, "n:p:a:t:w:i")) != -1) {
		switch (opt) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'a':
			accounts = atoi(optarg);
			break;
		case 't':
			timeout_ms = atoi(optarg);
			break;
		case 'w':
			wait_s = atoi(optarg);
			break;
		case 'i':
			idle = 1;
			break;
		default:
			usage();
		}
	}
	if (n < 1 || port < 1 || accounts < 1 || optind != argc)
		usage();
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}

	Conn *c = calloc((size_t)n, sizeof(Conn));
	struct pollfd *pfd = calloc((size_t)n, sizeof(struct pollfd));
	if (c == NULL || pfd == NULL)
		return 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	srand((unsigned)getpid());
	for (int i = 0; i < n; i++) {
		char body[512];
		int blen = snprintf(body, sizeof(body),
		                    "{\"branches\":{"
		                    "\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - $1 WHERE id = $2\","
		                    "\"params\":[1,%d],\"expect_rows\":1}],"
		                    "\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + $1 WHERE id = $2\","
		                    "\"params\":[1,%d],\"expect_rows\":1}]},\"timeout_ms\":%d}",
		                    rand() % accounts + 1, rand() % accounts + 1, timeout_ms);
		c[i].len = (size_t)snprintf(c[i].req, sizeof(c[i].req),
		                            "POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		                            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		                            blen, body);
		/* Blocking connect (loopback: immediate), then non-blocking I/O. */
		c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			fprintf(stderr, "twopc-hold: connection %d: %s\n", i, strerror(errno));
			return 1;
		}
		fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
		if (idle)
			c[i].len = 0;
	}
	if (idle) {
		printf("open %d\n", n);
		fflush(stdout);
		sleep((unsigned)wait_s);
		return 0;
	}

	long deadline = now_ms() + wait_s * 1000L;
	int unsent = n, open = n, announced = 0;
	while (open > 0 && now_ms() < deadline) {
		int k = 0;
		for (int i = 0; i < n; i++) {
			if (c[i].status != 0)
				continue;
			pfd[k].fd = c[i].fd;
			pfd[k].events = c[i].sent < c[i].len ? POLLOUT : POLLIN;
			pfd[k].revents = 0;
			k++;
		}
		if (poll(pfd, (nfds_t)k, 1000) < 0 && errno != EINTR)
			break;
		k = 0;
		for (int i = 0; i < n; i++) {
			if (c[i].status != 0)
				continue;
			short re = pfd[k++].revents;
			if (re == 0)
				continue;
			if (c[i].sent < c[i].len) {
				ssize_t w = write(c[i].fd, c[i].req + c[i].sent, c[i].len - c[i].sent);
				if (w > 0) {
					c[i].sent += (size_t)w;
					if (c[i].sent == c[i].len)
						unsent--;
				} else if (w < 0 && errno != EAGAIN) {
					c[i].status = -1;
					open--;
				}
				continue;
			}
			char buf[256];
			ssize_t r = read(c[i].fd, buf, sizeof(buf) - 1);
			if (r > 12 && memcmp(buf, "HTTP/1.", 7) == 0) {
				c[i].status = atoi(buf + 9);
			} else if (r == 0 || (r < 0 && errno != EAGAIN)) {
				c[i].status = -1;
			} else {
				continue; /* a partial status line: improbable, wait */
			}
			close(c[i].fd);
			open--;
		}
		if (!announced && unsent == 0) {
			printf("sent %d\n", n);
			fflush(stdout);
			announced = 1;
		}
	}
	int counts[600] = {0}, errors = 0, waiting = 0;
	for (int i = 0; i < n; i++) {
		if (c[i].status > 0 && c[i].status < 600)
			counts[c[i].status]++;
		else if (c[i].status < 0)
			errors++;
		else
			waiting++;
	}
	for (int s = 0; s < 600; s++) {
		if (counts[s])
			printf("status_%d=%d\n", s, counts[s]);
	}
	printf("connection_errors=%d\nno_answer=%d\n", errors, waiting);
	return 0;
}
