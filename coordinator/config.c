/*
 * config: a table of keys drives parsing, defaults and validation, in the
 * manner of pgbouncer's. libinih reads the file; our handler checks each key
 * against the table and records the first error, and ini_parse() hands back
 * the line it happened on.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <libpq-fe.h>

typedef enum KeyType {
	KT_INT,	      /* int64 within [min, max] */
	KT_STRING,    /* heap string */
	KT_COORD_ID,  /* [A-Za-z0-9_]{1,32} */
	KT_LISTEN,    /* host:port or [v6]:port */
	KT_LOG_LEVEL, /* debug|info|warning|error */
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
} KeyDef;

static const KeyDef keys[] = {
	{SEC_COORDINATOR, "id", KT_COORD_ID, NULL, 0, 0, "coordinator id, part of every GID: [A-Za-z0-9_]{1,32}"},
	{SEC_COORDINATOR, "listen", KT_LISTEN, "127.0.0.1:8432", 0, 0, "HTTP listen address host:port"},
	{SEC_COORDINATOR, "log_dir", KT_STRING, NULL, 0, 0, "decision log directory (created if missing)"},
	{SEC_COORDINATOR, "default_timeout_ms", KT_INT, "5000", 1, 3600000, "timeout of a request without timeout_ms"},
	{SEC_COORDINATOR, "max_timeout_ms", KT_INT, "60000", 1, 3600000, "cap on a request's timeout_ms"},
	{SEC_COORDINATOR, "lock_timeout_ms", KT_INT, "1000", 0, 3600000,
	 "lock_timeout of every branch; breaks deadlocks that span participants"},
	{SEC_COORDINATOR, "max_body_bytes", KT_INT, "1048576", 1024, 1073741824, "largest request body (413 past it)"},
	{SEC_COORDINATOR, "max_in_flight", KT_INT, "10000", 1, 10000000, "most transactions in flight (503 past it)"},
	{SEC_COORDINATOR, "log_segment_bytes", KT_INT, "16777216", 4096, 1073741824, "decision-log segment size"},
	{SEC_COORDINATOR, "log_level", KT_LOG_LEVEL, "info", 0, 0, "debug, info, warning or error"},
	{SEC_PARTICIPANT, "conninfo", KT_CONNINFO, NULL, 0, 0, "libpq connection string; must name a dbname"},
	{SEC_PARTICIPANT, "pool_size", KT_INT, "8", 1, 1000, "connections to this participant"},
};

typedef struct ParseCtx {
	const char *file;
	Config *cfg;
	char err[512];
	bool failed;
	ParticipantConfig *cur;		/* current [participant] section, or NULL */
	bool in_coordinator;
	bool coord_seen[ARRAY_LEN(keys)];
	bool part_seen[MAX_PARTICIPANTS][ARRAY_LEN(keys)];
	char last_section[128];
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
	case KT_STRING:
		if (*value == '\0')
			return errf(err, errlen, "must not be empty");
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

	if (strcmp(k->name, "log_dir") == 0) {
		free(cfg->log_dir);
		cfg->log_dir = xstrdup(value);
	} else if (strcmp(k->name, "conninfo") == 0) {
		free(pc->conninfo);
		pc->conninfo = xstrdup(value);
	} else if (strcmp(k->name, "pool_size") == 0) {
		pc->pool_size = v;
	} else if (strcmp(k->name, "default_timeout_ms") == 0) {
		cfg->default_timeout_ms = v;
	} else if (strcmp(k->name, "max_timeout_ms") == 0) {
		cfg->max_timeout_ms = v;
	} else if (strcmp(k->name, "lock_timeout_ms") == 0) {
		cfg->lock_timeout_ms = v;
	} else if (strcmp(k->name, "max_body_bytes") == 0) {
		cfg->max_body_bytes = v;
	} else if (strcmp(k->name, "max_in_flight") == 0) {
		cfg->max_in_flight = v;
	} else if (strcmp(k->name, "log_segment_bytes") == 0) {
		cfg->log_segment_bytes = v;
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
		snprintf(ctx->err, sizeof(ctx->err), fmt, a, b);
	}
	return 0;
}

/* Starts a section the first time its header's keys arrive. libinih has no
 * section callback, so a section is recognised when its name changes. */
static int enter_section(ParseCtx *ctx, const char *section)
{
	Config *cfg = ctx->cfg;

	if (strcmp(section, ctx->last_section) == 0)
		return 1;
	strlcpy_s(ctx->last_section, section, sizeof(ctx->last_section));
	ctx->cur = NULL;
	ctx->in_coordinator = false;

	if (strcmp(section, "coordinator") == 0) {
		ctx->in_coordinator = true;
		return 1;
	}
	if (strncmp(section, "participant ", 12) == 0) {
		const char *name = section + 12;
		while (*name == ' ')
			name++;
		if (!participant_name_valid(name))
			return fail(ctx, "[%s]: participant name must be 1 to 63 letters, digits, '_' or '-'%s", section, "");
		for (size_t i = 0; i < cfg->nparticipants; i++) {
			if (strcmp(cfg->participants[i].name, name) == 0)
				return fail(ctx, "[%s]: participant '%s' is defined twice", section, name);
		}
		if (cfg->nparticipants == MAX_PARTICIPANTS)
			return fail(ctx, "[%s]: too many participants (at most 64)%s", section, "");
		ParticipantConfig *pc = &cfg->participants[cfg->nparticipants];
		memset(pc, 0, sizeof(*pc));
		strlcpy_s(pc->name, name, sizeof(pc->name));
		pc->index = (unsigned)cfg->nparticipants;
		pc->pool_size = 8;
		cfg->nparticipants++;
		ctx->cur = pc;
		return 1;
	}
	return fail(ctx, "unknown section [%s] (expected [coordinator] or [participant NAME])%s", section, "");
}

static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	ParseCtx *ctx = user;
	SectionKind kind;
	char why[256];
	size_t ki;

	if (ctx->failed)
		return 1; /* keep only the first error; libinih keeps its line */
	if (section == NULL || *section == '\0')
		return fail(ctx, "%s: key outside of any section%s", name, "");
	if (!enter_section(ctx, section))
		return 0;
	if (!ctx->in_coordinator && ctx->cur == NULL)
		return 0;
	kind = ctx->in_coordinator ? SEC_COORDINATOR : SEC_PARTICIPANT;
	for (ki = 0; ki < ARRAY_LEN(keys); ki++) {
		if (keys[ki].section == kind && strcmp(keys[ki].name, name) == 0)
			break;
	}
	if (ki == ARRAY_LEN(keys))
		return fail(ctx, "[%s]: unknown key '%s'", section, name);

	bool *seen = kind == SEC_COORDINATOR ? &ctx->coord_seen[ki] : &ctx->part_seen[ctx->cur->index][ki];
	if (*seen)
		return fail(ctx, "[%s]: key '%s' given twice", section, name);
	*seen = true;
	if (!set_value(ctx->cfg, ctx->cur, &keys[ki], value, why, sizeof(why))) {
		char both[400];
		snprintf(both, sizeof(both), "%s: %s", name, why);
		return fail(ctx, "[%s]: %s", section, both);
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
			if (k->default_value == NULL)
				return errf(err, errlen, "%s: [coordinator]: required key '%s' is missing (%s)", ctx->file,
					    k->name, k->help);
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

/* Section start lines, for "required key missing" messages: libinih does
 * not report them, so find "[participant NAME]" headers ourselves. */
static void note_section_lines(Config *cfg, const char *text)
{
	int line = 1;
	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		while (len > 0 && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		if (len > 0 && *p == '[') {
			for (size_t i = 0; i < cfg->nparticipants; i++) {
				const char *n = cfg->participants[i].name;
				const char *q = memmem(p, len, n, strlen(n));
				if (q != NULL && q > p && q[-1] == ' ' && cfg->participants[i].line == 0 && q[strlen(n)] == ']')
					cfg->participants[i].line = line;
			}
		}
		if (eol == NULL)
			break;
		p = eol + 1;
		line++;
	}
}

static bool config_parse_text(const char *text, const char *name, Config *cfg, char *err, size_t errlen)
{
	ParseCtx *ctx = xcalloc(1, sizeof(ParseCtx));
	bool ok = false;
	int line;

	config_init(cfg, name);
	ctx->file = name;
	ctx->cfg = cfg;
	line = ini_parse_string(text, config_ini_handler, ctx);
	if (line != 0 || ctx->failed) {
		if (line > 0 && ctx->failed)
			errf(err, errlen, "%s:%d: %s", name, line, ctx->err);
		else if (line > 0)
			errf(err, errlen, "%s:%d: syntax error (expected [section], key = value or a comment)", name,
			     line);
		else
			errf(err, errlen, "%s: %s", name, ctx->err);
		goto done;
	}
	note_section_lines(cfg, text);
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

void config_print_reference(void)
{
	printf("Configuration keys (INI):\n");
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		const KeyDef *k = &keys[i];
		printf("  [%s] %-20s %s%s%s%s\n", k->section == SEC_COORDINATOR ? "coordinator" : "participant NAME",
		       k->name, k->help, k->default_value ? " (default " : " (required", k->default_value ? k->default_value : "",
		       ")");
	}
}
