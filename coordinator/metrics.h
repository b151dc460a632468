/*
 * metrics: histograms and the Prometheus text exposition format (0.0.4).
 *
 * The modules keep their own counters and histograms (plain structs, loop
 * thread, or under the decision log's mutex); this file only gives them a
 * histogram type and writes what they hold as GET /metrics. Rendering is
 * pull-only: nothing is computed between scrapes.
 */
#ifndef TWOPC_METRICS_H
#define TWOPC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_MAX_BUCKETS 16

typedef struct Histogram {
	const double *bounds; /* upper bounds, ascending; +Inf is implicit */
	size_t nbounds;
	uint64_t counts[HIST_MAX_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
	double sum;
	uint64_t count;
} Histogram;

/* Latency buckets in seconds, 0.5 ms to 10 s. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;

void hist_init(Histogram *h, const double *bounds, size_t nbounds);
void hist_observe(Histogram *h, double v);

/* A growing text buffer for one exposition. */
typedef struct MetricsOut {
	char *p;
	size_t n, cap;
} MetricsOut;

/* # HELP and # TYPE lines of a metric family. */
void metrics_family(MetricsOut *o, const char *name, const char *type, const char *help);
/* One sample; labels is NULL or preformatted `k="v",k2="v2"` (values
 * escaped with metrics_label). */
void metrics_sample(MetricsOut *o, const char *name, const char *labels, double value);
/* A histogram's _bucket, _sum and _count samples. */
void metrics_histogram(MetricsOut *o, const char *name, const char *labels, const Histogram *h);
/* Appends k="escaped v" (with a leading comma unless the buffer is empty). */
void metrics_label(char *buf, size_t len, const char *key, const char *value);
void metrics_out_free(MetricsOut *o);

#endif
