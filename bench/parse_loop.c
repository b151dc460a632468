/*
 * twopc-parseloop: parses bench/transfer.lua's body N times, for counting
 * the instructions a request's parse costs under callgrind (see
 * docs/PERFORMANCE.md). No I/O, no daemon: request_parse and request_free
 * on the body, in a loop, against a configuration of bank_a and bank_b.
 *
 *   valgrind --tool=callgrind bench/twopc-parseloop [N [parse|json|fast]]
 *
 * N defaults to 100000. parse (the default) is request_parse, what twopcd
 * calls; json is the jansson path alone (request_parse_json), fast the
 * fast path alone (request_parse_fast). callgrind_annotate --inclusive=yes
 * then shows each function's total; divide by N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "request_int.h"

int main(int argc, char **argv)
{
	static const char conf[] = "[coordinator]\n"
	                           "id = c1\n"
	                           "log_dir = /nonexistent/twopc-parseloop\n"
	                           "[participant bank_a]\n"
	                           "conninfo = dbname=a\n"
	                           "[participant bank_b]\n"
	                           "conninfo = dbname=b\n";
	static const char body[] =
	    "{\"branches\":{\"bank_a\":[{\"sql\":\"UPDATE accounts SET balance = balance - $1 WHERE id = $2\","
	    "\"params\":[1,1234],\"expect_rows\":1}],\"bank_b\":[{\"sql\":\"UPDATE accounts SET balance = balance + $1 "
	    "WHERE id = $2\",\"params\":[1,5678],\"expect_rows\":1}]},\"timeout_ms\":5000}";
	long n = argc > 1 ? atol(argv[1]) : 100000;
	const char *path = argc > 2 ? argv[2] : "parse";
	char field[256], err[512];
	size_t branches = 0;
	Config cfg;

	if (n < 1 || (strcmp(path, "parse") != 0 && strcmp(path, "json") != 0 && strcmp(path, "fast") != 0)) {
		fprintf(stderr, "usage: twopc-parseloop [N [parse|json|fast]]\n");
		return 2;
	}
	if (!config_load_string(conf, "parseloop.ini", &cfg, err, sizeof(err))) {
		fprintf(stderr, "twopc-parseloop: %s\n", err);
		return 1;
	}
	for (long i = 0; i < n; i++) {
		TxnRequest req;
		bool ok;

		if (path[0] == 'j')
			ok = request_parse_json(body, sizeof(body) - 1, &cfg, &req, field, sizeof(field), err,
			                        sizeof(err));
		else if (path[0] == 'f')
			ok = request_parse_fast(body, sizeof(body) - 1, &cfg, &req);
		else
			ok = request_parse(body, sizeof(body) - 1, &cfg, &req, field, sizeof(field), err, sizeof(err));
		if (!ok) {
			fprintf(stderr, "twopc-parseloop: rejected (%s): %s\n", field,
			        path[0] == 'f' ? "declined" : err);
			config_free(&cfg);
			return 1;
		}
		branches += req.nbranches;
		request_free(&req);
	}
	printf("%ld parses (%s), %zu branches\n", n, path, branches);
	config_free(&cfg);
	return 0;
}
