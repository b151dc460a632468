/*
 * metrics: histograms and the Prometheus text format writer.
 */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const double metrics_latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t metrics_latency_nbounds = ARRAY_LEN(metrics_latency_bounds);

void hist_init(Histogram *h, const double *bounds, size_t nbounds)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nbounds = nbounds < HIST_MAX_BUCKETS ? nbounds : HIST_MAX_BUCKETS;
}

void hist_observe(Histogram *h, double v)
{
	size_t i = 0;

	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->sum += v;
	h->count++;
}

static void out_printf(MetricsOut *o, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void out_printf(MetricsOut *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = o->cap - o->n;
		va_start(ap, fmt);
		n = vsnprintf(o->p ? o->p + o->n : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			o->n += (size_t)n;
			return;
		}
		o->cap = o->cap ? o->cap * 2 : 16384;
		while (o->cap - o->n <= (size_t)n)
			o->cap *= 2;
		o->p = xrealloc(o->p, o->cap);
	}
}

static void format_value(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else if (v == (double)(int64_t)v && fabs(v) < 9e15)
		snprintf(buf, len, "%lld", (long long)v);
	else
		snprintf(buf, len, "%.9g", v);
}

void metrics_family(MetricsOut *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(MetricsOut *o, const char *name, const char *labels, double value)
{
	char v[64];

	format_value(v, sizeof(v), value);
	if (labels != NULL && *labels != '\0')
		out_printf(o, "%s{%s} %s\n", name, labels, v);
	else
		out_printf(o, "%s %s\n", name, v);
}

void metrics_histogram(MetricsOut *o, const char *name, const char *labels, const Histogram *h)
{
	uint64_t cum = 0;
	char le[64], sum[64];
	const char *sep = labels && *labels ? "," : "";

	if (labels == NULL)
		labels = "";
	for (size_t i = 0; i <= h->nbounds; i++) {
		cum += h->counts[i];
		if (i < h->nbounds)
			format_value(le, sizeof(le), h->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		out_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le, (unsigned long long)cum);
	}
	format_value(sum, sizeof(sum), h->sum);
	if (*labels) {
		out_printf(o, "%s_sum{%s} %s\n", name, labels, sum);
		out_printf(o, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
	} else {
		out_printf(o, "%s_sum %s\n", name, sum);
		out_printf(o, "%s_count %llu\n", name, (unsigned long long)h->count);
	}
}

void metrics_label(char *buf, size_t len, const char *key, const char *value)
{
	size_t n = strlen(buf);

	if (n > 0 && n + 1 < len)
		buf[n++] = ',';
	n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s=\"", key);
	for (const char *v = value; *v && n + 3 < len; v++) {
		if (*v == '\\' || *v == '"') {
			buf[n++] = '\\';
			buf[n++] = *v;
		} else if (*v == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else {
			buf[n++] = *v;
		}
	}
	if (n + 1 < len)
		buf[n++] = '"';
	buf[n < len ? n : len - 1] = '\0';
}

void metrics_out_free(MetricsOut *o)
{
	free(o->p);
	memset(o, 0, sizeof(*o));
}
