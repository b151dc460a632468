/*
 * chromium: headless Chromium over the DevTools protocol's pipe transport
 * (see chromium.h).
 */
#include "chromium.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CR_CALL_TIMEOUT_MS 30000
#define CR_PROBLEMS_MAX    8192
#define CR_FD_LIMIT        1024 /* the child closes every inherited fd below this but 0-4 */

struct Chromium {
	pid_t pid; /* the browser, leader of its own process group */
	int wfd;   /* we write commands here: the browser's fd 3 */
	int rfd;   /* we read answers and events here: its fd 4 */
	char *buf; /* bytes read that do not yet make a whole message */
	size_t len, cap;
	int next_id;
	int width, height;
	char log_path[1024]; /* the browser's stdout and stderr */
	char session[128];   /* the attached page's sessionId */
	char origin[256];    /* scheme://host:port of the page */
	bool loaded;         /* Page.loadEventFired since the last navigation */
	int requests;        /* Network.requestWillBeSent seen */
	char problems[CR_PROBLEMS_MAX];
};

static void cr_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void cr_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int64_t cr_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cr_problem(Chromium *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cr_problem(Chromium *c, const char *fmt, ...)
{
	size_t n = strlen(c->problems);
	va_list ap;

	if (n + 2 >= sizeof c->problems)
		return;
	va_start(ap, fmt);
	vsnprintf(c->problems + n, sizeof c->problems - n - 1, fmt, ap);
	va_end(ap);
	n = strlen(c->problems);
	c->problems[n] = '\n';
	c->problems[n + 1] = '\0';
}

const char *cr_find(char *buf, size_t len)
{
	static const char *const names[] = {"chromium", "chromium-browser"};
	const char *env = getenv("TWOPC_CHROMIUM"), *path = getenv("PATH");

	if (env != NULL && *env != '\0') {
		snprintf(buf, len, "%s", env);
		return access(buf, X_OK) == 0 ? buf : NULL;
	}
	if (path == NULL)
		path = "/usr/bin:/bin";
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		for (const char *p = path; *p != '\0';) {
			size_t dl = strcspn(p, ":");
			int n = snprintf(buf, len, "%.*s/%s", (int)dl, p, names[i]);

			if (dl > 0 && n > 0 && (size_t)n < len && access(buf, X_OK) == 0)
				return buf;
			p += dl;
			if (*p == ':')
				p++;
		}
	}
	return NULL;
}

/* ---- messages ----------------------------------------------------------- */

static bool cr_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Sends one command; its id goes into *ID. */
static bool cr_send(Chromium *c, const char *method, json_t *params, bool to_page, int *id, char *err, size_t errlen)
{
	json_t *m = json_object();
	char *text;
	bool ok;

	*id = ++c->next_id;
	json_object_set_new(m, "id", json_integer(*id));
	json_object_set_new(m, "method", json_string(method));
	json_object_set_new(m, "params", params != NULL ? params : json_object());
	if (to_page)
		json_object_set_new(m, "sessionId", json_string(c->session));
	text = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	if (text == NULL) {
		cr_seterr(err, errlen, "%s: cannot serialise the command", method);
		return false;
	}
	ok = cr_write_all(c->wfd, text, strlen(text) + 1); /* the NUL ends the message */
	free(text);
	if (!ok)
		cr_seterr(err, errlen, "%s: writing to chromium: %s (did it exit? see %s)", method, strerror(errno),
		          c->log_path);
	return ok;
}

/* Reads the next message (an answer or an event) before DEADLINE. */
static bool cr_read(Chromium *c, int64_t deadline, json_t **msg, char *err, size_t errlen)
{
	for (;;) {
		char *nul = c->len > 0 ? memchr(c->buf, '\0', c->len) : NULL;

		if (nul != NULL) {
			size_t mlen = (size_t)(nul - c->buf);
			json_error_t je;

			*msg = json_loadb(c->buf, mlen, 0, &je);
			memmove(c->buf, nul + 1, c->len - mlen - 1);
			c->len -= mlen + 1;
			if (*msg == NULL) {
				cr_seterr(err, errlen, "chromium sent a message that is not JSON: %s", je.text);
				return false;
			}
			return true;
		}
		int64_t left = deadline - cr_now_ms();
		if (left <= 0) {
			cr_seterr(err, errlen, "chromium did not answer in time");
			return false;
		}
		struct pollfd p = {.fd = c->rfd, .events = POLLIN};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno != EINTR) {
			cr_seterr(err, errlen, "poll: %s", strerror(errno));
			return false;
		}
		if (r <= 0)
			continue;
		if (c->cap - c->len < 65536) {
			size_t cap = c->cap < 65536 ? 131072 : c->cap * 2;
			char *nb = realloc(c->buf, cap);

			if (nb == NULL) {
				cr_seterr(err, errlen, "out of memory");
				return false;
			}
			c->buf = nb;
			c->cap = cap;
		}
		ssize_t n = read(c->rfd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			cr_seterr(err, errlen, "chromium closed its end of the pipe (did it exit? see %s)",
			          c->log_path);
			return false;
		}
		c->len += (size_t)n;
	}
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* What an event says about the page: its load, and anything that went wrong. */
static void cr_event(Chromium *c, const json_t *msg)
{
	const char *method = jstr(msg, "method");
	const json_t *p = json_object_get(msg, "params");

	if (method == NULL || p == NULL)
		return;
	if (strcmp(method, "Page.loadEventFired") == 0) {
		c->loaded = true;
	} else if (strcmp(method, "Runtime.exceptionThrown") == 0) {
		const json_t *d = json_object_get(p, "exceptionDetails");
		const char *what = jstr(json_object_get(d, "exception"), "description");

		cr_problem(c, "uncaught exception: %s", what != NULL ? what : jstr(d, "text"));
	} else if (strcmp(method, "Runtime.consoleAPICalled") == 0) {
		const char *type = jstr(p, "type");
		const json_t *arg = json_array_get(json_object_get(p, "args"), 0);
		const char *text = jstr(arg, "value") != NULL ? jstr(arg, "value") : jstr(arg, "description");

		if (type != NULL && (strcmp(type, "error") == 0 || strcmp(type, "assert") == 0))
			cr_problem(c, "console.%s: %s", type, text != NULL ? text : "(no text)");
	} else if (strcmp(method, "Log.entryAdded") == 0) {
		/* Errors of the browser itself: CSP violations, script errors. A
		 * "network" entry is an HTTP status such as a 401 the page handles. */
		const json_t *e = json_object_get(p, "entry");
		const char *level = jstr(e, "level"), *source = jstr(e, "source");

		if (level != NULL && strcmp(level, "error") == 0 && (source == NULL || strcmp(source, "network") != 0))
			cr_problem(c, "browser log (%s): %s", source != NULL ? source : "?", jstr(e, "text"));
	} else if (strcmp(method, "Network.requestWillBeSent") == 0) {
		const char *url = jstr(json_object_get(p, "request"), "url");
		size_t ol = strlen(c->origin);

		c->requests++;
		if (url != NULL && strncmp(url, "data:", 5) != 0 &&
		    !(strncmp(url, c->origin, ol) == 0 && (url[ol] == '/' || url[ol] == '\0')))
			cr_problem(c, "request to another origin: %s", url);
	}
}

/* Sends a command and waits for its answer, handling events meanwhile.
 * *RESULT (if RESULT is not NULL) gets the answer's result, to decref. */
static bool cr_call(Chromium *c, const char *method, json_t *params, bool to_page, int timeout_ms, json_t **result,
                    char *err, size_t errlen)
{
	int64_t deadline = cr_now_ms() + timeout_ms;
	json_t *msg;
	int id;

	if (!cr_send(c, method, params, to_page, &id, err, errlen))
		return false;
	for (;;) {
		if (!cr_read(c, deadline, &msg, err, errlen)) {
			size_t n = strlen(err);
			cr_seterr(err + n, errlen - n, " (waiting for %s)", method);
			return false;
		}
		if (json_integer_value(json_object_get(msg, "id")) == id) {
			const json_t *e = json_object_get(msg, "error");

			if (e != NULL) {
				cr_seterr(err, errlen, "%s: %s", method, jstr(e, "message"));
				json_decref(msg);
				return false;
			}
			if (result != NULL) {
				*result = json_object_get(msg, "result");
				json_incref(*result);
			}
			json_decref(msg);
			return true;
		}
		cr_event(c, msg);
		json_decref(msg);
	}
}

/* Handles events until the page's load event, or TIMEOUT_MS. */
static bool cr_wait_loaded(Chromium *c, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = cr_now_ms() + timeout_ms;
	json_t *msg;

	while (!c->loaded) {
		if (!cr_read(c, deadline, &msg, err, errlen)) {
			size_t n = strlen(err);
			cr_seterr(err + n, errlen - n, " (waiting for the page to load)");
			return false;
		}
		cr_event(c, msg);
		json_decref(msg);
	}
	return true;
}

/* ---- the browser -------------------------------------------------------- */

bool cr_start(const char *bin, const char *dir, int width, int height, Chromium **out, char *err, size_t errlen)
{
	char profile[1100], window[64];
	int to[2] = {-1, -1}, from[2] = {-1, -1};
	Chromium *c = calloc(1, sizeof *c);
	json_t *version = NULL;

	*out = NULL;
	if (c == NULL) {
		cr_seterr(err, errlen, "out of memory");
		return false;
	}
	c->wfd = c->rfd = -1;
	c->width = width;
	c->height = height;
	snprintf(c->log_path, sizeof c->log_path, "%s/chromium.log", dir);
	snprintf(profile, sizeof profile, "--user-data-dir=%s/chromium-profile", dir);
	snprintf(window, sizeof window, "--window-size=%d,%d", width, height);
	if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0) {
		cr_seterr(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	/* A browser that dies must fail the test, not kill it with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	c->pid = fork();
	if (c->pid < 0) {
		cr_seterr(err, errlen, "fork: %s", strerror(errno));
		goto fail;
	}
	if (c->pid == 0) {
		const char *argv[] = {bin,
		                      "--headless=new",
		                      "--no-sandbox",
		                      "--disable-gpu",
		                      "--disable-dev-shm-usage",
		                      "--no-first-run",
		                      "--no-default-browser-check",
		                      "--disable-extensions",
		                      "--disable-background-networking",
		                      "--disable-component-update",
		                      "--disable-sync",
		                      "--disable-default-apps",
		                      "--mute-audio",
		                      "--hide-scrollbars",
		                      "--force-device-scale-factor=1",
		                      "--remote-debugging-pipe",
		                      profile,
		                      window,
		                      "about:blank",
		                      NULL};
		int logfd = open(c->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		/* Out of the way of 0-4 first, then into place. */
		int hin = fcntl(to[0], F_DUPFD, 10), hout = fcntl(from[1], F_DUPFD, 10);
		int hlog = fcntl(logfd, F_DUPFD, 10), hnull = fcntl(nullfd, F_DUPFD, 10);

		setpgid(0, 0);
		if (logfd < 0 || nullfd < 0 || hin < 0 || hout < 0 || hlog < 0 || hnull < 0 || dup2(hnull, 0) < 0 ||
		    dup2(hlog, 1) < 0 || dup2(hlog, 2) < 0 || dup2(hin, 3) < 0 || dup2(hout, 4) < 0)
			_exit(127);
		for (int fd = 5; fd < CR_FD_LIMIT; fd++)
			close(fd);
		if (strchr(bin, '/') != NULL)
			execv(bin, (char *const *)argv);
		else
			execvp(bin, (char *const *)argv);
		/* Only async-signal-safe calls here: the test has threads. */
		if (write(2, "exec failed: ", 13) < 0 || write(2, bin, strlen(bin)) < 0 || write(2, "\n", 1) < 0)
			_exit(127);
		_exit(127);
	}
	setpgid(c->pid, c->pid); /* also here: whichever runs first */
	close(to[0]);
	close(from[1]);
	c->wfd = to[1];
	c->rfd = from[0];
	if (!cr_call(c, "Browser.getVersion", NULL, false, CR_CALL_TIMEOUT_MS, &version, err, errlen))
		goto fail_started;
	json_decref(version);
	*out = c;
	return true;

fail:
	for (int i = 0; i < 2; i++) {
		if (to[i] >= 0)
			close(to[i]);
		if (from[i] >= 0)
			close(from[i]);
	}
	free(c);
	return false;
fail_started:
	cr_stop(c);
	return false;
}

bool cr_open(Chromium *c, const char *url, int timeout_ms, char *err, size_t errlen)
{
	json_t *r = NULL, *p;
	const char *scheme_end = strstr(url, "://");
	size_t olen;
	bool ok = false;

	if (scheme_end == NULL) {
		cr_seterr(err, errlen, "%s: not an absolute URL", url);
		return false;
	}
	olen = (size_t)(scheme_end + 3 - url) + strcspn(scheme_end + 3, "/?#");
	snprintf(c->origin, sizeof c->origin, "%.*s", (int)olen, url);

	p = json_pack("{s:s}", "url", "about:blank");
	if (!cr_call(c, "Target.createTarget", p, false, CR_CALL_TIMEOUT_MS, &r, err, errlen))
		goto done;
	p = json_pack("{s:O, s:b}", "targetId", json_object_get(r, "targetId"), "flatten", 1);
	json_decref(r);
	r = NULL;
	if (!cr_call(c, "Target.attachToTarget", p, false, CR_CALL_TIMEOUT_MS, &r, err, errlen))
		goto done;
	snprintf(c->session, sizeof c->session, "%s", jstr(r, "sessionId") ? jstr(r, "sessionId") : "");
	json_decref(r);
	r = NULL;
	static const char *const domains[] = {"Page.enable", "Runtime.enable", "Log.enable", "Network.enable"};
	for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++)
		if (!cr_call(c, domains[i], NULL, true, CR_CALL_TIMEOUT_MS, NULL, err, errlen))
			goto done;
	p = json_pack("{s:i, s:i, s:i, s:b}", "width", c->width, "height", c->height, "deviceScaleFactor", 1, "mobile",
	              0);
	if (!cr_call(c, "Emulation.setDeviceMetricsOverride", p, true, CR_CALL_TIMEOUT_MS, NULL, err, errlen))
		goto done;
	c->loaded = false;
	if (!cr_call(c, "Page.navigate", json_pack("{s:s}", "url", url), true, timeout_ms, &r, err, errlen))
		goto done;
	if (jstr(r, "errorText") != NULL) {
		cr_seterr(err, errlen, "%s: %s", url, jstr(r, "errorText"));
		goto done;
	}
	ok = cr_wait_loaded(c, timeout_ms, err, errlen);
done:
	json_decref(r);
	return ok;
}

bool cr_reload(Chromium *c, int timeout_ms, char *err, size_t errlen)
{
	c->loaded = false;
	return cr_call(c, "Page.reload", NULL, true, timeout_ms, NULL, err, errlen) &&
	       cr_wait_loaded(c, timeout_ms, err, errlen);
}

bool cr_eval(Chromium *c, const char *expr, int timeout_ms, json_t **out, char *err, size_t errlen)
{
	json_t *p = json_pack("{s:s, s:b, s:b}", "expression", expr, "returnByValue", 1, "awaitPromise", 1);
	json_t *r = NULL, *d, *v;

	*out = NULL;
	if (!cr_call(c, "Runtime.evaluate", p, true, timeout_ms, &r, err, errlen))
		return false;
	d = json_object_get(r, "exceptionDetails");
	if (d != NULL) {
		const char *what = jstr(json_object_get(d, "exception"), "description");
		cr_seterr(err, errlen, "the expression threw: %s", what != NULL ? what : jstr(d, "text"));
		json_decref(r);
		return false;
	}
	v = json_object_get(json_object_get(r, "result"), "value");
	*out = v != NULL ? json_incref(v) : json_null();
	json_decref(r);
	return true;
}

/* Decodes base64 (RFC 4648, padding optional) in place; returns the length. */
static size_t cr_unbase64(char *s)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	for (const char *p = s; *p != '\0' && *p != '='; p++) {
		const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		const char *at = strchr(alphabet, *p);

		if (at == NULL)
			continue;
		acc = (acc << 6) | (uint32_t)(at - alphabet);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			s[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	return o;
}

bool cr_screenshot(Chromium *c, const char *path, char *err, size_t errlen)
{
	json_t *m = NULL, *r = NULL, *p;
	double h = c->height;
	char *png = NULL;
	FILE *f = NULL;
	size_t n;
	bool ok = false;

	if (!cr_call(c, "Page.getLayoutMetrics", NULL, true, CR_CALL_TIMEOUT_MS, &m, err, errlen))
		goto done;
	if (json_number_value(json_object_get(json_object_get(m, "cssContentSize"), "height")) > h)
		h = json_number_value(json_object_get(json_object_get(m, "cssContentSize"), "height"));
	p = json_pack("{s:s, s:b, s:{s:i, s:i, s:i, s:f, s:i}}", "format", "png", "captureBeyondViewport", 1, "clip",
	              "x", 0, "y", 0, "width", c->width, "height", h, "scale", 1);
	if (!cr_call(c, "Page.captureScreenshot", p, true, CR_CALL_TIMEOUT_MS, &r, err, errlen))
		goto done;
	if (jstr(r, "data") == NULL) {
		cr_seterr(err, errlen, "Page.captureScreenshot: no data");
		goto done;
	}
	png = strdup(jstr(r, "data"));
	if (png == NULL) {
		cr_seterr(err, errlen, "out of memory");
		goto done;
	}
	n = cr_unbase64(png);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(png, 1, n, f) != n) {
		cr_seterr(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	ok = true;
done:
	if (f != NULL && fclose(f) != 0 && ok) {
		cr_seterr(err, errlen, "%s: %s", path, strerror(errno));
		ok = false;
	}
	free(png);
	json_decref(m);
	json_decref(r);
	return ok;
}

const char *cr_problems(const Chromium *c)
{
	return c->problems;
}

int cr_requests(const Chromium *c)
{
	return c->requests;
}

void cr_stop(Chromium *c)
{
	int status;

	if (c == NULL)
		return;
	if (c->pid > 0) {
		int id;
		bool gone = false;

		/* Ask first, so the browser can shut down cleanly; then make sure. */
		if (cr_send(c, "Browser.close", NULL, false, &id, NULL, 0)) {
			for (int64_t until = cr_now_ms() + 3000; cr_now_ms() < until;) {
				if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
					gone = true;
					break;
				}
				usleep(50 * 1000);
			}
		}
		kill(-c->pid, SIGKILL); /* the renderer and GPU processes too */
		if (!gone)
			waitpid(c->pid, &status, 0);
	}
	if (c->wfd >= 0)
		close(c->wfd);
	if (c->rfd >= 0)
		close(c->rfd);
	free(c->buf);
	free(c);
}
