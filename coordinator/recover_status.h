/*
 * recover_status: `twopc-recover status`. Looks, never touches: every
 * prepared transaction on every participant (ours and others'), what the
 * decision log says about it and what `resolve` would do with it, as an
 * aligned table or one JSON document. Works while twopcd runs.
 */
#ifndef TWOPC_RECOVER_STATUS_H
#define TWOPC_RECOVER_STATUS_H

#include <stdbool.h>

#include "config.h"

/* Exit status: 0 nothing prepared anywhere, 1 something is, 2 error (a
 * participant unreachable, the log unreadable). */
int recover_status(const Config *cfg, bool json);

#endif
