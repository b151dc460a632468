/*
 * recover_checklog: `twopc-recover check-log`. Reads every segment of the
 * decision log and verifies every frame (length, CRC32C, payload) with the
 * torn-tail rule twopcd's replay uses: only the newest segment may end in a
 * bad frame with no valid frame after it (a write cut short by a crash);
 * any other bad frame is damage. With --fix it truncates a torn tail — and
 * only a torn tail — under the log's lock.
 */
#ifndef TWOPC_RECOVER_CHECKLOG_H
#define TWOPC_RECOVER_CHECKLOG_H

#include <stdbool.h>

#include "config.h"

/* Exit status: 0 clean (or a torn tail truncated by --fix), 1 problems
 * found (not fixed), 2 error (unreadable directory or file, lock held for
 * --fix). */
int recover_check_log(const Config *cfg, bool fix, bool verbose);

#endif
