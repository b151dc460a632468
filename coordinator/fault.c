/*
 * fault: the armed fault point, its trigger count and the crash itself.
 * A crash is SIGKILL to ourselves: exactly what `kill -9` does, with no
 * atexit handlers, no flushing and no chance to finish anything.
 */
#include "fault.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

FaultPoint fault_armed = FAULT_NONE;
static long fault_countdown = 1;
static long fault_delay_ms = 0; /* 0: crash; otherwise: sleep this long, once */
static bool fault_drop = false; /* lose a connection instead (one-phase points) */

static const char *const fault_names[FAULT_POINT_COUNT] = {
    [FAULT_NONE] = "none",
    [FAULT_BEFORE_LOG_COMMIT] = "before_log_commit",
    [FAULT_AFTER_LOG_WRITE] = "after_log_write",
    [FAULT_AFTER_LOG_FSYNC] = "after_log_fsync",
    [FAULT_AFTER_FIRST_COMMIT_PREPARED] = "after_first_commit_prepared",
    [FAULT_BEFORE_LOG_DONE] = "before_log_done",
    [FAULT_SWEEP_BETWEEN_READS] = "sweep_between_reads",
    [FAULT_BEFORE_ONE_PHASE_COMMIT] = "before_one_phase_commit",
    [FAULT_AFTER_ONE_PHASE_COMMIT_SENT] = "after_one_phase_commit_sent",
};

const char *fault_name(FaultPoint p)
{
	return p < FAULT_POINT_COUNT ? fault_names[p] : "?";
}

bool fault_init(const char *spec, char *err, size_t errlen)
{
	char name[64];
	const char *colon, *action;
	size_t n;

	fault_armed = FAULT_NONE;
	fault_drop = false;
	fault_delay_ms = 0;
	fault_countdown = 1;
	if (spec == NULL || *spec == '\0')
		return true;
	colon = strchr(spec, ':');
	if (colon == NULL)
		return errf(err, errlen, "TWOPC_FAULT=%s: expected POINT:crash[@N]", spec);
	n = (size_t)(colon - spec);
	if (n >= sizeof(name))
		return errf(err, errlen, "TWOPC_FAULT: point name too long");
	memcpy(name, spec, n);
	name[n] = '\0';
	action = colon + 1;
	if (strncmp(action, "crash", 5) == 0 && (action[5] == '\0' || action[5] == '@')) {
		action += 5;
	} else if (strncmp(action, "drop", 4) == 0 && (action[4] == '\0' || action[4] == '@')) {
		fault_drop = true;
		action += 4;
	} else if (strncmp(action, "delay=", 6) == 0) {
		char ms[32];
		size_t l = strcspn(action + 6, "@");
		int64_t v;
		if (l == 0 || l >= sizeof(ms))
			return errf(err, errlen, "TWOPC_FAULT=%s: expected delay=MILLISECONDS", spec);
		memcpy(ms, action + 6, l);
		ms[l] = '\0';
		if (!parse_i64(ms, 1, 3600000, &v))
			return errf(err, errlen, "TWOPC_FAULT=%s: bad delay", spec);
		fault_delay_ms = (long)v;
		action += 6 + l;
	} else {
		return errf(err, errlen, "TWOPC_FAULT=%s: the action is crash, delay=MS or drop", spec);
	}
	if (*action == '@') {
		int64_t v;
		if (!parse_i64(action + 1, 1, 1000000000, &v))
			return errf(err, errlen, "TWOPC_FAULT=%s: bad count after '@'", spec);
		fault_countdown = (long)v;
	} else if (*action != '\0') {
		return errf(err, errlen, "TWOPC_FAULT=%s: unexpected '%s'", spec, action);
	}
	for (int p = 1; p < FAULT_POINT_COUNT; p++) {
		if (strcmp(name, fault_names[p]) == 0) {
			if (fault_drop && p != FAULT_BEFORE_ONE_PHASE_COMMIT && p != FAULT_AFTER_ONE_PHASE_COMMIT_SENT)
				return errf(err, errlen, "TWOPC_FAULT=%s: drop is for the one-phase points only", spec);
			fault_armed = (FaultPoint)p;
			return true;
		}
	}
	return errf(err, errlen, "TWOPC_FAULT: unknown fault point '%s'", name);
}

void fault_fire(FaultPoint p)
{
	long left = __atomic_sub_fetch(&fault_countdown, 1, __ATOMIC_SEQ_CST);
	if (left != 0)
		return; /* not yet, or already fired (each fault fires once) */
	if (fault_delay_ms > 0) {
		/* Freezes this thread (the event loop, or the log thread for
		 * after_log_write) with the transaction exactly at this point, so a
		 * test can stop or cut off a participant meanwhile. */
		log_msg(LOG_WARNING, "fault point %s reached: stalling %ld ms as TWOPC_FAULT asks", fault_name(p),
		        fault_delay_ms);
		usleep((useconds_t)fault_delay_ms * 1000);
		return;
	}
	log_msg(LOG_WARNING, "fault point %s reached: crashing (SIGKILL) as TWOPC_FAULT asks", fault_name(p));
	kill(getpid(), SIGKILL);
	_exit(137); /* not reached */
}

bool fault_fire_drop(FaultPoint p)
{
	if (!fault_drop) {
		fault_fire(p);
		return false;
	}
	if (__atomic_sub_fetch(&fault_countdown, 1, __ATOMIC_SEQ_CST) != 0)
		return false;
	log_msg(LOG_WARNING, "fault point %s reached: losing the participant connection as TWOPC_FAULT asks",
	        fault_name(p));
	return true;
}
