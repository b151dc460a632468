/*
 * fault: named fault points for crash testing. One point may be armed at
 * start through the environment:
 *
 *   TWOPC_FAULT=after_log_fsync:crash      SIGKILL ourselves at that point
 *   TWOPC_FAULT=after_log_fsync:crash@3    ... the third time it is reached
 *   TWOPC_FAULT=after_log_fsync:delay=2000@5  stall 2 s the fifth time (to stop or
 *                                          cut off a participant at that moment)
 *   TWOPC_FAULT=after_one_phase_commit_sent:drop  lose the participant connection
 *                                          there (the one-phase points only)
 *
 * A fault fires once.
 * Unarmed, a point costs one predictable branch on a global.
 */
#ifndef TWOPC_FAULT_H
#define TWOPC_FAULT_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef enum FaultPoint {
	FAULT_NONE = 0,
	FAULT_BEFORE_LOG_COMMIT,           /* every branch prepared, COMMIT record not yet appended */
	FAULT_AFTER_LOG_WRITE,             /* COMMIT record written, before its fdatasync */
	FAULT_AFTER_LOG_FSYNC,             /* COMMIT record durable, before any COMMIT PREPARED */
	FAULT_AFTER_FIRST_COMMIT_PREPARED, /* one branch committed, others still prepared */
	FAULT_BEFORE_LOG_DONE,             /* every branch committed, DONE not yet appended */
	FAULT_SWEEP_BETWEEN_READS,         /* sweeper: between its two reads of pg_prepared_xacts */
	FAULT_BEFORE_ONE_PHASE_COMMIT,     /* one-phase: statements done, COMMIT not yet sent */
	FAULT_AFTER_ONE_PHASE_COMMIT_SENT, /* one-phase: COMMIT handed to the socket, no answer yet */
	FAULT_POINT_COUNT,
} FaultPoint;

extern FaultPoint fault_armed;

/* Parses TWOPC_FAULT (NULL or empty: nothing armed). */
bool fault_init(const char *spec, char *err, size_t errlen) WARN_UNUSED;
const char *fault_name(FaultPoint p);
void fault_fire(FaultPoint p);
/* At a point that can lose a connection: true when its armed action is
 * drop and it fires now (crash and delay act as at any point). */
bool fault_fire_drop(FaultPoint p);

#define FAULT_POINT(p)                                                                                                 \
	do {                                                                                                           \
		if (unlikely(fault_armed == (p)))                                                                      \
			fault_fire(p);                                                                                 \
	} while (0)

/* FAULT_DROP(p): whether to lose the connection at point p now. */
#define FAULT_DROP(p) (unlikely(fault_armed == (p)) && fault_fire_drop(p))

#endif
