/*
 * config: twopcd's INI configuration, described by one table (key, type,
 * default, bounds). Every error names the file, the line and the key;
 * unknown sections and keys are errors, not ignored.
 *
 *   [coordinator]             id, listen, log_dir, timeouts, limits
 *   [participant NAME]        conninfo, pool_size   (one section each)
 */
#ifndef TWOPC_CONFIG_H
#define TWOPC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gid.h"
#include "log.h"
#include "util.h"

#define PARTICIPANT_NAME_MAX 63
#define MAX_PARTICIPANTS     64

typedef struct ParticipantConfig {
	char name[PARTICIPANT_NAME_MAX + 1];
	char *conninfo;
	int64_t pool_size;
	unsigned index; /* position in the file; part of every GID of this participant */
	int line;       /* where its section starts, for messages */
} ParticipantConfig;

typedef struct Config {
	char *path;
	char coord_id[COORD_ID_MAX + 1];
	char *listen_host;
	int listen_port;
	char *log_dir;
	int64_t default_timeout_ms; /* used when a request gives no timeout_ms */
	int64_t max_timeout_ms;     /* a request's timeout_ms is capped here */
	int64_t lock_timeout_ms;    /* SET LOCAL lock_timeout on every branch */
	int64_t max_body_bytes;     /* larger request bodies get 413 */
	int64_t max_in_flight;      /* past this, 503 */
	int64_t log_segment_bytes;  /* decision-log segment size before rotation */
	int64_t sweep_interval_ms;  /* how often the sweeper runs */
	int64_t sweep_grace_ms;     /* the sweeper leaves younger prepared transactions alone */
	int64_t phase2_timeout_ms;  /* a COMMIT/ROLLBACK PREPARED unanswered this long is retried */
	int64_t phase2_batch_max;   /* most COMMIT PREPAREDs in one phase-2 pipeline (1: no batching) */
	int64_t max_branches;       /* branches (participants) per transaction */
	int64_t max_statements;     /* statements per branch */
	int64_t max_params;         /* parameters per statement */
	int64_t max_connections;    /* open HTTP connections; past it, 503 and close */
	int64_t max_header_bytes;   /* request line + headers */
	int64_t http_request_timeout_ms; /* a request must arrive whole within this (slowloris) */
	int64_t http_idle_timeout_ms;    /* an idle keep-alive connection is closed after this */
	int64_t idempotency_ttl_s;       /* how long an Idempotency-Key is remembered */
	int64_t idempotency_max_bytes;   /* memory for remembered keys and responses */
	int64_t idempotency_max_response_bytes; /* larger responses are remembered without results */
	char *auth_token_file;      /* NULL: no authentication */
	int64_t prepared_xid_age_warning; /* warn when a prepared transaction is this many xids old */
	LogLevel log_level;
	LogFormat log_format;
	char *log_file;             /* NULL: stderr */
	int64_t shutdown_grace_ms;  /* SIGTERM: how long in-flight transactions may take to finish */
	bool ack_decided;           /* ack = decided: reply once the decision is durable, phase 2 after */
	ParticipantConfig *participants;
	size_t nparticipants;
} Config;

/* Loads and validates a file. On failure err holds "FILE:LINE: key: why". */
bool config_load(const char *path, Config *cfg, char *err, size_t errlen) WARN_UNUSED;
/* The same from a string; `name` stands in for the file name in messages. */
bool config_load_string(const char *text, const char *name, Config *cfg, char *err, size_t errlen) WARN_UNUSED;
void config_free(Config *cfg);

const ParticipantConfig *config_find_participant(const Config *cfg, const char *name);

/* A conninfo as messages may show it: only host, hostaddr, port, dbname,
 * user, service and sslmode, e.g. "host=db1 port=5432 dbname=bank user=app".
 * Never the password, nor anything else of the string; works for key=value
 * strings and postgresql:// URIs. Never print a conninfo any other way. */
void config_redact_conninfo(const char *conninfo, char *buf, size_t len);

/* Whether a key can change on SIGHUP (the others need a restart). */
bool config_key_reloadable(const char *key);
/* Applies the reloadable keys of `next` to `cur`, logging each change, and
 * warns about every other difference (they need a restart). */
void config_apply_reload(Config *cur, const Config *next);

/* Prints the key reference (used by --help). */
void config_print_reference(void);

#endif
