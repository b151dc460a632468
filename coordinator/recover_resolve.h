/*
 * recover_resolve: the commands of twopc-recover that change things, all
 * while twopcd is stopped (they take the decision log's lock):
 *
 *   resolve        settle every prepared transaction of ours by the log,
 *                  as twopcd's start-up recovery does, and write DONE for
 *                  decisions that are complete
 *   commit/abort   an operator's heuristic decision on one of our GIDs,
 *                  recorded (HEURISTIC) before it is carried out; it then
 *                  governs every branch of that transaction
 */
#ifndef TWOPC_RECOVER_RESOLVE_H
#define TWOPC_RECOVER_RESOLVE_H

#include <stdbool.h>

#include "config.h"

/* Exit status: 0 everything settled (or nothing to do), 1 something could
 * not be settled (a participant unreachable or failing), 2 error/refusal. */
int recover_resolve(const Config *cfg, bool dry_run);

/* Exit status: 0 recorded and carried out, 1 not carried out (the GID is
 * not prepared where we can see, or the participant failed), 2 refused or
 * error (not ours, contradicts the log without --force, twopcd running). */
int recover_decide(const Config *cfg, const char *gid, bool commit, bool force);

#endif
