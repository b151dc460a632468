/*
 * config_keys: prints coordinator/config.c's key table, one key per line,
 * for tests/man-check.sh, which holds twopc.conf(5) and the example
 * configuration to it. The table is static, so this file includes
 * config.c itself (as tests/fuzz_http.c does http_server.c) instead of
 * parsing C. Not a test by itself: a helper built with the tests.
 *
 *   SECTION<TAB>NAME<TAB>TYPE<TAB>DEFAULT<TAB>MIN<TAB>MAX
 *
 * SECTION is "coordinator" or "participant"; TYPE is "integer" or "other";
 * DEFAULT is "(required)" for a key without one (an empty default stays
 * empty); MIN and MAX are "-" except for integers.
 */
#include "config.c"

int main(void)
{
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		const KeyDef *k = &keys[i];
		printf("%s\t%s\t%s\t%s\t", k->section == SEC_COORDINATOR ? "coordinator" : "participant", k->name,
		       k->type == KT_INT ? "integer" : "other", k->default_value ? k->default_value : "(required)");
		if (k->type == KT_INT)
			printf("%lld\t%lld\n", (long long)k->min, (long long)k->max);
		else
			printf("-\t-\n");
	}
	return ferror(stdout) ? 1 : 0;
}
