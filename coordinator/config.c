/*
 * config: a table of keys drives parsing, defaults and validation, in the
 * manner of pgbouncer's. libinih reads the file; our handler checks each key
 * against the table and records the first error, and ini_parse() hands back
 * the line it happened on.
 */
#include "config.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <libpq-fe.h>

typedef enum KeyType {
	KT_INT,       /* int64 within [min, max] */
	KT_STRING,    /* heap string */
	KT_OPT_PATH,  /* heap string, or NULL when empty */
	KT_COORD_ID,  /* [A-Za-z0-9_]{1,32} */
	KT_LISTEN,    /* host:port or [v6]:port */
	KT_LOG_LEVEL, /* debug|info|warning|error */
	KT_LOG_FORMAT, /* text|json */
	KT_ACK,        /* committed|decided */
	KT_CONNINFO,  /* a libpq connection string naming a database */
} KeyType;

typedef enum SectionKind { SEC_COORDINATOR, SEC_PARTICIPANT } SectionKind;

typedef struct KeyDef {
	SectionKind section;
	const char *name;
	KeyType type;
	const char *default_value; /* NULL: required */
	int64_t min, max;
	const char *help;
	size_t offset; /* of the field in Config or ParticipantConfig (KT_INT, KT_STRING, KT_CONNINFO) */
} KeyDef;

#define C(f) offsetof(Config, f)
#define P(f) offsetof(ParticipantConfig, f)

static const KeyDef keys[] = {
    {SEC_COORDINATOR, "id", KT_COORD_ID, NULL, 0, 0, "coordinator id, part of every GID: [A-Za-z0-9_]{1,32}", 0},
    {SEC_COORDINATOR, "listen", KT_LISTEN, "127.0.0.1:8432", 0, 0, "HTTP listen address host:port", 0},
    {SEC_COORDINATOR, "log_dir", KT_STRING, NULL, 0, 0, "decision log directory (created if missing)", C(log_dir)},
    {SEC_COORDINATOR, "default_timeout_ms", KT_INT, "5000", 1, 3600000, "timeout of a request without timeout_ms",
     C(default_timeout_ms)},
    {SEC_COORDINATOR, "max_timeout_ms", KT_INT, "60000", 1, 3600000, "cap on a request's timeout_ms",
     C(max_timeout_ms)},
    {SEC_COORDINATOR, "lock_timeout_ms", KT_INT, "1000", 0, 3600000,
     "lock_timeout of every branch (0: none, the deadline ends lock waits); breaks deadlocks that span "
     "participants",
     C(lock_timeout_ms)},
    {SEC_COORDINATOR, "max_body_bytes", KT_INT, "1048576", 1024, 1073741824, "largest request body (413 past it)",
     C(max_body_bytes)},
    {SEC_COORDINATOR, "max_in_flight", KT_INT, "10000", 1, 10000000, "most transactions in flight (503 past it)",
     C(max_in_flight)},
    {SEC_COORDINATOR, "log_segment_bytes", KT_INT, "16777216", 4096, 1073741824, "decision-log segment size",
     C(log_segment_bytes)},
    {SEC_COORDINATOR, "sweep_interval_ms", KT_INT, "10000", 100, 86400000,
     "how often the sweeper settles prepared transactions nobody is finishing", C(sweep_interval_ms)},
    {SEC_COORDINATOR, "sweep_grace_ms", KT_INT, "5000", 0, 86400000,
     "the sweeper leaves prepared transactions younger than this alone", C(sweep_grace_ms)},
    {SEC_COORDINATOR, "phase2_timeout_ms", KT_INT, "10000", 100, 3600000,
     "an unanswered COMMIT/ROLLBACK PREPARED is abandoned and retried after this", C(phase2_timeout_ms)},
    {SEC_COORDINATOR, "phase2_batch_max", KT_INT, "4", 1, 1024,
     "most COMMIT PREPAREDs sent to one participant in one pipeline (1: each on its own connection)",
     C(phase2_batch_max)},
    {SEC_COORDINATOR, "max_branches", KT_INT, "16", 1, MAX_PARTICIPANTS, "most branches in one transaction (400 past it)",
     C(max_branches)},
    {SEC_COORDINATOR, "max_statements", KT_INT, "100", 1, 100000, "most statements in one branch (400 past it)",
     C(max_statements)},
    {SEC_COORDINATOR, "max_params", KT_INT, "1000", 0, 65535, "most parameters of one statement (400 past it)",
     C(max_params)},
    {SEC_COORDINATOR, "max_connections", KT_INT, "16384", 1, 1000000,
     "most open HTTP connections; past it a new one gets 503 and is closed", C(max_connections)},
    {SEC_COORDINATOR, "max_header_bytes", KT_INT, "16384", 1024, 1048576,
     "largest request line plus headers (431 past it)", C(max_header_bytes)},
    {SEC_COORDINATOR, "http_request_timeout_ms", KT_INT, "10000", 100, 3600000,
     "a request's line, headers and body must all arrive within this (408 past it)", C(http_request_timeout_ms)},
    {SEC_COORDINATOR, "http_idle_timeout_ms", KT_INT, "60000", 100, 86400000,
     "an idle keep-alive connection is closed after this", C(http_idle_timeout_ms)},
    {SEC_COORDINATOR, "idempotency_ttl_s", KT_INT, "86400", 1, 31536000,
     "how long an Idempotency-Key and its response are remembered", C(idempotency_ttl_s)},
    {SEC_COORDINATOR, "idempotency_max_bytes", KT_INT, "67108864", 65536, 68719476736,
     "memory for remembered Idempotency-Keys; when full, new keyed requests get 503", C(idempotency_max_bytes)},
    {SEC_COORDINATOR, "idempotency_max_response_bytes", KT_INT, "32768", 1024, 49152,
     "a committed response larger than this is remembered without its results", C(idempotency_max_response_bytes)},
    {SEC_COORDINATOR, "auth_token_file", KT_OPT_PATH, "", 0, 0,
     "file of bearer tokens, one per line; empty: no authentication (/healthz is always open)", C(auth_token_file)},
    {SEC_COORDINATOR, "prepared_xid_age_warning", KT_INT, "10000000", 1000, 2000000000,
     "warn when the oldest prepared transaction on a participant is this many transaction ids old "
     "(it holds back vacuum)",
     C(prepared_xid_age_warning)},
    {SEC_COORDINATOR, "log_level", KT_LOG_LEVEL, "info", 0, 0, "debug, info, warning or error", 0},
    {SEC_COORDINATOR, "log_format", KT_LOG_FORMAT, "text", 0, 0,
     "text (greppable lines) or json (one object a line, with txn and participant fields)", 0},
    {SEC_COORDINATOR, "log_file", KT_OPT_PATH, "", 0, 0,
     "log to this file (reopened on SIGHUP, for logrotate); empty: stderr", C(log_file)},
    {SEC_COORDINATOR, "ack", KT_ACK, "committed", 0, 0,
     "when a commit is answered: committed (after phase 2) or decided (once the decision is durable; phase 2 "
     "runs after the reply)",
     0},
    {SEC_COORDINATOR, "shutdown_grace_ms", KT_INT, "10000", 0, 3600000,
     "on SIGTERM, how long in-flight transactions may take to finish (phase 2 included)", C(shutdown_grace_ms)},
    {SEC_PARTICIPANT, "conninfo", KT_CONNINFO, NULL, 0, 0, "libpq connection string; must name a dbname", P(conninfo)},
    {SEC_PARTICIPANT, "pool_size", KT_INT, "8", 1, 1000, "connections to this participant", P(pool_size)},
};

typedef struct ParseCtx {
	const char *file;
	Config *cfg;
	/* The text and our position in it: libinih reads lines through
	 * config_reader(), which is how we know line numbers, see every section
	 * header (empty ones too) and catch lines too long for libinih. */
	const char *text;
	size_t pos;
	int lineno;
	char err[512];
	int err_line; /* line of the first error (0: none) */
	bool failed;
	ParticipantConfig *cur; /* current [participant] section, or NULL */
	bool in_coordinator;
	int coordinator_line; /* 0: no [coordinator] section yet */
	bool coord_seen[ARRAY_LEN(keys)];
	bool part_seen[MAX_PARTICIPANTS][ARRAY_LEN(keys)];
} ParseCtx;

static bool set_value(Config *cfg, ParticipantConfig *pc, const KeyDef *k, const char *value, char *err, size_t errlen)
{
	int64_t v = 0;

	switch (k->type) {
	case KT_INT:
		if (!parse_i64(value, k->min, k->max, &v))
			return errf(err, errlen, "expected an integer from %lld to %lld, got '%s'", (long long)k->min,
			            (long long)k->max, value);
		break;
	case KT_COORD_ID:
		if (!coord_id_valid(value))
			return errf(err, errlen, "'%s' is not a valid id: 1 to %d letters, digits or '_'", value,
			            COORD_ID_MAX);
		strlcpy_s(cfg->coord_id, value, sizeof(cfg->coord_id));
		return true;
	case KT_LISTEN: {
		const char *colon = strrchr(value, ':');
		const char *hs = value;
		size_t hl;
		int64_t port;
		if (colon == NULL || !parse_i64(colon + 1, 1, 65535, &port))
			return errf(err, errlen, "expected host:port, got '%s'", value);
		hl = (size_t)(colon - value);
		if (hl >= 2 && value[0] == '[' && value[hl - 1] == ']') {
			hs++;
			hl -= 2;
		}
		if (hl == 0)
			return errf(err, errlen, "expected host:port, got '%s'", value);
		free(cfg->listen_host);
		cfg->listen_host = xmalloc(hl + 1);
		memcpy(cfg->listen_host, hs, hl);
		cfg->listen_host[hl] = '\0';
		cfg->listen_port = (int)port;
		return true;
	}
	case KT_LOG_LEVEL:
		if (!log_parse_level(value, &cfg->log_level))
			return errf(err, errlen, "expected debug, info, warning or error, got '%s'", value);
		return true;
	case KT_LOG_FORMAT:
		if (!log_parse_format(value, &cfg->log_format))
			return errf(err, errlen, "expected text or json, got '%s'", value);
		return true;
	case KT_ACK:
		if (strcmp(value, "committed") != 0 && strcmp(value, "decided") != 0)
			return errf(err, errlen, "expected committed or decided, got '%s'", value);
		cfg->ack_decided = strcmp(value, "decided") == 0;
		return true;
	case KT_STRING:
		if (*value == '\0')
			return errf(err, errlen, "must not be empty");
		break;
	case KT_OPT_PATH:
		break;
	case KT_CONNINFO: {
		char *perr = NULL;
		PQconninfoOption *opts = PQconninfoParse(value, &perr);
		bool has_db = false;
		if (opts == NULL) {
			/* libpq's message may quote the string, password included. */
			PQfreemem(perr);
			return errf(err, errlen, "not a valid libpq connection string");
		}
		for (PQconninfoOption *o = opts; o->keyword; o++) {
			if (strcmp(o->keyword, "dbname") == 0 && o->val && *o->val)
				has_db = true;
		}
		PQconninfoFree(opts);
		if (!has_db)
			return errf(err, errlen, "must name a database (dbname=...)");
		break;
	}
	}

	/* The table says where the value goes. */
	char *field = (char *)(k->section == SEC_COORDINATOR ? (void *)cfg : (void *)pc) + k->offset;
	if (k->type == KT_INT) {
		*(int64_t *)field = v;
	} else {
		free(*(char **)field);
		*(char **)field = (k->type == KT_OPT_PATH && *value == '\0') ? NULL : xstrdup(value);
	}
	return true;
}

static bool participant_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > PARTICIPANT_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	}
	return true;
}

static int fail(ParseCtx *ctx, const char *fmt, const char *a, const char *b)
{
	if (!ctx->failed) {
		ctx->failed = true;
		ctx->err_line = ctx->lineno;
		snprintf(ctx->err, sizeof(ctx->err), fmt, a, b);
	}
	return 0;
}

/* A section header line: "[coordinator]" or "[participant NAME]". */
static void enter_section(ParseCtx *ctx, const char *section)
{
	Config *cfg = ctx->cfg;
	char line[16];

	ctx->cur = NULL;
	ctx->in_coordinator = false;
	if (strcmp(section, "coordinator") == 0) {
		if (ctx->coordinator_line != 0) {
			snprintf(line, sizeof(line), "%d", ctx->coordinator_line);
			fail(ctx, "duplicate [coordinator] section (the first is at line %s)%s", line, "");
			return;
		}
		ctx->coordinator_line = ctx->lineno;
		ctx->in_coordinator = true;
		return;
	}
	if (strncmp(section, "participant", 11) == 0 && (section[11] == ' ' || section[11] == '\t')) {
		const char *name = section + 12;
		while (*name == ' ' || *name == '\t')
			name++;
		if (!participant_name_valid(name)) {
			fail(ctx, "[%s]: a participant name is 1 to 63 letters, digits, '_' or '-'%s", section, "");
			return;
		}
		for (size_t i = 0; i < cfg->nparticipants; i++) {
			if (strcmp(cfg->participants[i].name, name) == 0) {
				snprintf(line, sizeof(line), "%d", cfg->participants[i].line);
				fail(ctx, "duplicate section [participant %s] (the first is at line %s)", name, line);
				return;
			}
		}
		if (cfg->nparticipants == MAX_PARTICIPANTS) {
			fail(ctx, "[%s]: too many participants (at most 64)%s", section, "");
			return;
		}
		ParticipantConfig *pc = &cfg->participants[cfg->nparticipants];
		memset(pc, 0, sizeof(*pc));
		strlcpy_s(pc->name, name, sizeof(pc->name));
		pc->index = (unsigned)cfg->nparticipants;
		pc->line = ctx->lineno;
		cfg->nparticipants++;
		ctx->cur = pc;
		return;
	}
	fail(ctx, "unknown section [%s] (expected [coordinator] or [participant NAME])%s", section, "");
}

/* libinih's line source. Hands over one line at a time, without leading
 * blanks (so indented keys are keys, never continuation lines), and looks
 * at section headers itself. */
static char *config_reader(char *str, int num, void *stream)
{
	ParseCtx *ctx = stream;
	const char *p = ctx->text + ctx->pos, *eol;
	size_t len, skip;

	if (*p == '\0')
		return NULL;
	eol = strchr(p, '\n');
	len = eol ? (size_t)(eol - p) : strlen(p);
	ctx->pos += len + (eol ? 1 : 0);
	ctx->lineno++;
	skip = strspn(p, " \t");
	p += skip;
	len -= skip;
	while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	if (len >= (size_t)num - 1) {
		char n[16], max[16];
		snprintf(n, sizeof(n), "%zu", len);
		snprintf(max, sizeof(max), "%d", num - 2);
		fail(ctx,
		     "line too long (%s characters; at most %s): for a long conninfo, use service=NAME and a "
		     "pg_service.conf file",
		     n, max);
		len = 0;
	}
	memcpy(str, p, len);
	str[len] = '\0';
	if (len > 0 && str[0] == '[') {
		char *end = strchr(str, ']');
		if (end != NULL) {
			char name[256];
			size_t nl = (size_t)(end - str - 1);
			if (nl >= sizeof(name))
				nl = sizeof(name) - 1;
			memcpy(name, str + 1, nl);
			name[nl] = '\0';
			while (nl > 0 && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
				name[--nl] = '\0';
			enter_section(ctx, name + strspn(name, " \t"));
		}
	}
	return str;
}

static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	ParseCtx *ctx = user;
	SectionKind kind;
	char why[256], secname[96];
	size_t ki;

	(void)section; /* libinih truncates long section names: ours come from config_reader */
	if (ctx->failed)
		return 1; /* keep only the first error */
	if (!ctx->in_coordinator && ctx->cur == NULL)
		return fail(ctx, "key '%s' outside of any section%s", name, "");
	kind = ctx->in_coordinator ? SEC_COORDINATOR : SEC_PARTICIPANT;
	if (kind == SEC_COORDINATOR)
		snprintf(secname, sizeof(secname), "coordinator");
	else
		snprintf(secname, sizeof(secname), "participant %s", ctx->cur->name);
	for (ki = 0; ki < ARRAY_LEN(keys); ki++) {
		if (keys[ki].section == kind && strcmp(keys[ki].name, name) == 0)
			break;
	}
	if (ki == ARRAY_LEN(keys)) {
		/* Keys are one word. More is a line that lost its '=' (libinih
		 * then takes the text up to a later '=' as the name), and that
		 * text may be part of a conninfo: show the first word only. */
		size_t w = strcspn(name, " \t");
		if (name[w] != '\0') {
			char first[64];
			snprintf(first, sizeof(first), "%.*s", (int)(w < 40 ? w : 40), name);
			return fail(ctx, "[%s]: unknown key '%s ...': a key is one word; is an '=' missing?", secname,
			            first);
		}
		return fail(ctx, "[%s]: unknown key '%s'", secname, name);
	}

	bool *seen = kind == SEC_COORDINATOR ? &ctx->coord_seen[ki] : &ctx->part_seen[ctx->cur->index][ki];
	if (*seen)
		return fail(ctx, "[%s]: key '%s' given twice", secname, name);
	*seen = true;
	if (!set_value(ctx->cfg, ctx->cur, &keys[ki], value, why, sizeof(why))) {
		char both[400];
		snprintf(both, sizeof(both), "%s: %s", name, why);
		return fail(ctx, "[%s]: %s", secname, both);
	}
	return 1;
}

static bool apply_defaults_and_check(ParseCtx *ctx, char *err, size_t errlen)
{
	Config *cfg = ctx->cfg;
	char why[256];

	for (size_t ki = 0; ki < ARRAY_LEN(keys); ki++) {
		const KeyDef *k = &keys[ki];
		if (k->section == SEC_COORDINATOR) {
			if (ctx->coord_seen[ki])
				continue;
			if (k->default_value == NULL && ctx->coordinator_line == 0)
				return errf(err, errlen,
				            "%s: no [coordinator] section (it needs at least id and log_dir)",
				            ctx->file);
			if (k->default_value == NULL)
				return errf(err, errlen, "%s:%d: [coordinator]: required key '%s' is missing (%s)",
				            ctx->file, ctx->coordinator_line, k->name, k->help);
			if (!set_value(cfg, NULL, k, k->default_value, why, sizeof(why)))
				return errf(err, errlen, "%s: default of %s: %s", ctx->file, k->name, why);
			continue;
		}
		for (size_t p = 0; p < cfg->nparticipants; p++) {
			if (ctx->part_seen[p][ki])
				continue;
			if (k->default_value == NULL)
				return errf(err, errlen, "%s:%d: [participant %s]: required key '%s' is missing (%s)",
				            ctx->file, cfg->participants[p].line, cfg->participants[p].name, k->name,
				            k->help);
			if (!set_value(cfg, &cfg->participants[p], k, k->default_value, why, sizeof(why)))
				return errf(err, errlen, "%s: default of %s: %s", ctx->file, k->name, why);
		}
	}
	if (cfg->nparticipants == 0)
		return errf(err, errlen, "%s: no [participant NAME] section: twopcd needs at least one participant",
		            ctx->file);
	if (cfg->default_timeout_ms > cfg->max_timeout_ms)
		return errf(err, errlen, "%s: [coordinator]: default_timeout_ms (%lld) exceeds max_timeout_ms (%lld)",
		            ctx->file, (long long)cfg->default_timeout_ms, (long long)cfg->max_timeout_ms);
	return true;
}

static void config_init(Config *cfg, const char *path)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->path = xstrdup(path);
	cfg->participants = xcalloc(MAX_PARTICIPANTS, sizeof(ParticipantConfig));
	cfg->log_level = LOG_INFO;
}

static bool config_parse_text(const char *text, const char *name, Config *cfg, char *err, size_t errlen)
{
	ParseCtx *ctx = xcalloc(1, sizeof(ParseCtx));
	bool ok = false;
	int line;

	config_init(cfg, name);
	ctx->file = name;
	ctx->cfg = cfg;
	ctx->text = text;
	line = ini_parse_stream(config_reader, ctx, config_ini_handler, ctx);
	if (line < 0) {
		errf(err, errlen, "%s: cannot parse (libinih error %d)", name, line);
		goto done;
	}
	/* libinih reports the first line it found wrong (syntax, or our
	 * handler saying no); ours may come earlier (section headers, long
	 * lines are seen only by config_reader). */
	if (ctx->failed && (line == 0 || ctx->err_line <= line)) {
		errf(err, errlen, "%s:%d: %s", name, ctx->err_line, ctx->err);
		goto done;
	}
	if (line > 0) {
		errf(err, errlen, "%s:%d: syntax error (expected [section], key = value, or a comment)", name, line);
		goto done;
	}
	ok = apply_defaults_and_check(ctx, err, errlen);
done:
	free(ctx);
	if (!ok)
		config_free(cfg);
	return ok;
}

bool config_load_string(const char *text, const char *name, Config *cfg, char *err, size_t errlen)
{
	return config_parse_text(text, name, cfg, err, errlen);
}

bool config_load(const char *path, Config *cfg, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t len = 0, cap = 0;
	bool ok = false;

	memset(cfg, 0, sizeof(*cfg));
	if (f == NULL)
		return errf(err, errlen, "%s: cannot open: %m", path);
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			if (cap > (16u << 20)) {
				errf(err, errlen, "%s: larger than 16 MiB: not a config file", path);
				goto done;
			}
			text = xrealloc(text, cap);
		}
		size_t n = fread(text + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		errf(err, errlen, "%s: read error: %m", path);
		goto done;
	}
	text[len] = '\0';
	if (strlen(text) != len) {
		errf(err, errlen, "%s: contains a NUL byte: not a config file", path);
		goto done;
	}
	ok = config_parse_text(text, path, cfg, err, errlen);
done:
	fclose(f);
	free(text);
	return ok;
}

void config_free(Config *cfg)
{
	if (cfg->participants) {
		for (size_t i = 0; i < cfg->nparticipants; i++)
			free(cfg->participants[i].conninfo);
	}
	free(cfg->participants);
	free(cfg->path);
	free(cfg->listen_host);
	free(cfg->log_dir);
	free(cfg->auth_token_file);
	free(cfg->log_file);
	memset(cfg, 0, sizeof(*cfg));
}

const ParticipantConfig *config_find_participant(const Config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nparticipants; i++) {
		if (strcmp(cfg->participants[i].name, name) == 0)
			return &cfg->participants[i];
	}
	return NULL;
}

void config_redact_conninfo(const char *conninfo, char *buf, size_t len)
{
	/* An allow-list: whatever libpq learns to accept later (a new secret
	 * among them) stays out. */
	static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user", "service", "sslmode"};
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	size_t used = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (opts == NULL) {
		snprintf(buf, len, "(invalid conninfo)");
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(shown); i++) {
		for (PQconninfoOption *o = opts; o->keyword; o++) {
			if (strcmp(o->keyword, shown[i]) != 0 || o->val == NULL || o->val[0] == '\0')
				continue;
			/* Quoted as in a conninfo when it holds blanks or quotes. */
			bool quote = o->val[strcspn(o->val, " \t'\\")] != '\0';
			if (used < len)
				used += (size_t)snprintf(buf + used, len - used, "%s%s=%s", used ? " " : "", o->keyword,
				                         quote ? "'" : "");
			for (const char *c = o->val; *c && used < len; c++)
				used += (size_t)snprintf(buf + used, len - used, "%s%c",
				                         quote && (*c == '\'' || *c == '\\') ? "\\" : "", *c);
			if (quote && used < len)
				used += (size_t)snprintf(buf + used, len - used, "'");
		}
	}
	PQconninfoFree(opts);
}

static const char *const reloadable[] = {
    "log_level",      "log_format",        "auth_token_file", "sweep_interval_ms",        "sweep_grace_ms",
    "default_timeout_ms", "max_timeout_ms", "lock_timeout_ms", "max_in_flight",            "phase2_timeout_ms",
    "phase2_batch_max",
    "prepared_xid_age_warning", "max_branches", "max_statements", "max_params",
};

bool config_key_reloadable(const char *key)
{
	for (size_t i = 0; i < ARRAY_LEN(reloadable); i++) {
		if (strcmp(reloadable[i], key) == 0)
			return true;
	}
	return false;
}

/* A coordinator key's value as text, for comparing and for messages. */
static void key_text(const Config *cfg, const KeyDef *k, char *buf, size_t len)
{
	const char *field = (const char *)cfg + k->offset;

	switch (k->type) {
	case KT_INT:
		snprintf(buf, len, "%lld", (long long)*(const int64_t *)field);
		break;
	case KT_STRING:
	case KT_OPT_PATH:
	case KT_CONNINFO:
		snprintf(buf, len, "%s", *(char *const *)field ? *(char *const *)field : "");
		break;
	case KT_COORD_ID:
		snprintf(buf, len, "%s", cfg->coord_id);
		break;
	case KT_LISTEN:
		snprintf(buf, len, "%s:%d", cfg->listen_host ? cfg->listen_host : "", cfg->listen_port);
		break;
	case KT_LOG_LEVEL:
		snprintf(buf, len, "%d", (int)cfg->log_level);
		break;
	case KT_LOG_FORMAT:
		snprintf(buf, len, "%s", cfg->log_format == LOG_FORMAT_JSON ? "json" : "text");
		break;
	case KT_ACK:
		snprintf(buf, len, "%s", cfg->ack_decided ? "decided" : "committed");
		break;
	}
}

void config_apply_reload(Config *cur, const Config *next)
{
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		const KeyDef *k = &keys[i];
		char a[512], b[512];

		if (k->section != SEC_COORDINATOR)
			continue;
		key_text(cur, k, a, sizeof(a));
		key_text(next, k, b, sizeof(b));
		if (strcmp(a, b) == 0)
			continue;
		if (!config_key_reloadable(k->name)) {
			log_warning("reload: %s changed in %s, but it needs a restart: keeping the running value", k->name,
			            cur->path);
			continue;
		}
		switch (k->type) {
		case KT_INT:
			log_info("reload: %s %s -> %s", k->name, a, b);
			*(int64_t *)((char *)cur + k->offset) = *(const int64_t *)((const char *)next + k->offset);
			break;
		case KT_OPT_PATH: {
			char **dst = (char **)((char *)cur + k->offset);
			char *const *src = (char *const *)((const char *)next + k->offset);
			log_info("reload: %s '%s' -> '%s'", k->name, a, b);
			free(*dst);
			*dst = *src ? xstrdup(*src) : NULL;
			break;
		}
		case KT_LOG_LEVEL:
			log_info("reload: log_level changed");
			cur->log_level = next->log_level;
			break;
		case KT_LOG_FORMAT:
			log_info("reload: log_format %s -> %s", a, b);
			cur->log_format = next->log_format;
			break;
		default:
			break;
		}
	}
	bool same = cur->nparticipants == next->nparticipants;
	for (size_t i = 0; same && i < cur->nparticipants; i++) {
		same = strcmp(cur->participants[i].name, next->participants[i].name) == 0 &&
		       strcmp(cur->participants[i].conninfo, next->participants[i].conninfo) == 0 &&
		       cur->participants[i].pool_size == next->participants[i].pool_size;
	}
	if (!same)
		log_warning("reload: the [participant] sections changed in %s; participants change only with a "
		            "restart: keeping the running ones",
		            cur->path);
}

void config_print_reference(void)
{
	printf("Configuration keys (INI):\n");
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		const KeyDef *k = &keys[i];
		printf("  [%s] %-30s %s%s%s%s\n", k->section == SEC_COORDINATOR ? "coordinator" : "participant NAME",
		       k->name, k->help, k->default_value ? " (default " : " (required",
		       k->default_value ? k->default_value : "", ")");
	}
}
