/*
 * chromium: headless Chromium driven over the DevTools protocol, for the
 * dashboard test (tests/check_dashboard.c).
 *
 * It runs Debian's chromium with --remote-debugging-pipe: the protocol's
 * JSON messages, each ended by a NUL byte, go to the browser on its fd 3
 * and come back on its fd 4, so no port and no WebSocket are involved. One
 * page is opened and attached in flat mode; commands to it carry its
 * sessionId. The page runs in real time (no virtual time budget), so a page
 * that polls every 2 seconds really polls every 2 seconds, and the test
 * reads its DOM whenever it likes with cr_eval().
 *
 * While it waits for answers it records what goes wrong on the page:
 * uncaught exceptions, console errors, Content-Security-Policy violations
 * and any request to another origin than the page's (cr_problems()).
 *
 * Chromium runs in its own process group; cr_stop() ends that group (the
 * browser's renderer and GPU processes included), so nothing outlives the
 * test. As root it needs --no-sandbox, which is always passed: the test
 * only ever loads twopcd's page from loopback.
 */
#ifndef TWOPC_CHROMIUM_H
#define TWOPC_CHROMIUM_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define CR_WUR __attribute__((warn_unused_result))

typedef struct Chromium Chromium;

/* The browser to run: $TWOPC_CHROMIUM if set, else chromium or
 * chromium-browser found in PATH, copied into BUF; NULL if there is none. */
const char *cr_find(char *buf, size_t len);

/* Starts BIN headless with a WIDTH x HEIGHT window; its profile and its
 * output (CHROMIUM.log) go into DIR. */
bool cr_start(const char *bin, const char *dir, int width, int height, Chromium **out, char *err, size_t errlen) CR_WUR;
/* Opens URL in a new page and waits (up to TIMEOUT_MS) for its load event.
 * The page's origin is what cr_problems() compares requests with. */
bool cr_open(Chromium *c, const char *url, int timeout_ms, char *err, size_t errlen) CR_WUR;
/* Loads the page again (Page.reload) and waits for its load event. */
bool cr_reload(Chromium *c, int timeout_ms, char *err, size_t errlen) CR_WUR;
/* Evaluates the JavaScript expression EXPR in the page (awaiting a promise)
 * and gives its value as JSON in *OUT (the caller json_decref()s it). An
 * exception thrown by EXPR is a failure, with its text in ERR. */
bool cr_eval(Chromium *c, const char *expr, int timeout_ms, json_t **out, char *err, size_t errlen) CR_WUR;
/* Writes a PNG of the whole page (not only the window) to PATH. */
bool cr_screenshot(Chromium *c, const char *path, char *err, size_t errlen) CR_WUR;
/* What went wrong on the page so far, one problem per line; "" if nothing. */
const char *cr_problems(const Chromium *c);
/* How many requests the page has made so far. */
int cr_requests(const Chromium *c);
/* Closes the browser, ends its process group and frees C (NULL is fine). */
void cr_stop(Chromium *c);

#endif /* TWOPC_CHROMIUM_H */
