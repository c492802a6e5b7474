/*
 * report: what a run measured, printed as etcd's benchmark prints it
 * (pkg/report of etcd 3.4: Summary, Response time histogram, Latency
 * distribution, Error distribution, and with --sample the per-second
 * series), and written as JSON for scripts with --json FILE.
 *
 * Every successful request's latency is kept (8 bytes each), so the
 * percentiles are exact; they are sorted once at the end.  Failed requests
 * are not in the latencies (as in etcd): they are counted, by error text
 * for the first REPORT_ERR_KINDS kinds, and Requests/sec counts only the
 * requests that succeeded.
 *
 * The --json file (kept stable for tools/bench scripts):
 *   {"workload", "total" (requests sent), "errors", "seconds", "rps",
 *    "latency_ms": {"min","mean","stddev","p50","p90","p99","p999","max"},
 *    "histogram": [[upper_ms, count], ...], "clients", "conns",
 *    "error_messages": [[count, text], ...], plus what the workload adds}
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define REPORT_BUCKETS 10 /* etcd: 10 steps from fastest to slowest, 11 rows */

static const double report_pctls[] = {10, 25, 50, 75, 90, 95, 99, 99.9};
#define REPORT_NPCTL (sizeof(report_pctls) / sizeof(report_pctls[0]))

struct report_stats {
	double total, fastest, slowest, average, stddev, rps; /* seconds, and per second */
	double pct[REPORT_NPCTL];                             /* seconds; 0: not reached */
	double pct_clamped[REPORT_NPCTL];
	double bucket[REPORT_BUCKETS + 1];
	uint64_t count[REPORT_BUCKETS + 1];
};

void report_init(struct report *r, size_t expected, bool sample)
{
	memset(r, 0, sizeof(*r));
	r->sample = sample;
	r->cap = expected ? expected : 1024;
	r->lat = malloc(r->cap * sizeof(*r->lat));
	if (!r->lat)
		r->cap = 0;
}

void report_free(struct report *r)
{
	free(r->lat);
	for (size_t i = 0; i < r->n_errs; i++)
		free(r->errs[i].msg);
	free(r->sec);
	memset(r, 0, sizeof(*r));
}

void report_begin(struct report *r)
{
	r->t_begin = uv_hrtime();
	r->unix_begin = (int64_t)time(NULL);
}

void report_end(struct report *r)
{
	r->t_end = uv_hrtime();
}

static void report_sample(struct report *r, uint64_t start_ns, uint64_t lat)
{
	size_t s = start_ns > r->t_begin ? (size_t)((start_ns - r->t_begin) / 1000000000u) : 0;
	struct report_second *p;

	if (s >= r->n_sec) {
		size_t n = s + 16;
		struct report_second *q = realloc(r->sec, n * sizeof(*q));

		if (!q)
			return;
		memset(q + r->n_sec, 0, (n - r->n_sec) * sizeof(*q));
		r->sec = q;
		r->n_sec = n;
	}
	p = &r->sec[s];
	if (!p->count || lat < p->min_ns)
		p->min_ns = lat;
	if (lat > p->max_ns)
		p->max_ns = lat;
	p->count++;
	p->sum_ns += lat;
}

void report_ok(struct report *r, uint64_t start_ns, uint64_t end_ns)
{
	uint64_t lat = end_ns > start_ns ? end_ns - start_ns : 0;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;
		uint64_t *l = realloc(r->lat, cap * sizeof(*l));

		if (!l) {
			report_error(r, "benchmark: out of memory for latencies");
			return;
		}
		r->lat = l;
		r->cap = cap;
	}
	r->lat[r->n++] = lat;
	r->sorted = false;
	if (r->sample)
		report_sample(r, start_ns, lat);
}

void report_error(struct report *r, const char *msg)
{
	report_errors(r, msg, 1);
}

void report_errors(struct report *r, const char *msg, uint64_t n)
{
	size_t i;

	if (!n)
		return;
	r->errors += n;
	if (!msg || !*msg)
		msg = "unknown error";
	for (i = 0; i < r->n_errs; i++) {
		if (strcmp(r->errs[i].msg, msg) == 0) {
			r->errs[i].count += n;
			return;
		}
	}
	if (r->n_errs < REPORT_ERR_KINDS) {
		r->errs[r->n_errs].msg = strdup(msg);
		if (r->errs[r->n_errs].msg)
			r->errs[r->n_errs++].count = n;
	}
}

double report_seconds(const struct report *r)
{
	return r->t_end > r->t_begin ? (double)(r->t_end - r->t_begin) / 1e9 : 0;
}

double report_rps(const struct report *r)
{
	double s = report_seconds(r);

	return s > 0 ? (double)r->n / s : 0;
}

static int report_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report_compute(struct report *r, struct report_stats *st)
{
	double sum = 0, dev = 0, step;
	size_t i, bi;

	memset(st, 0, sizeof(*st));
	st->total = report_seconds(r);
	st->rps = report_rps(r);
	if (!r->n)
		return;
	if (!r->sorted) {
		qsort(r->lat, r->n, sizeof(*r->lat), report_cmp);
		r->sorted = true;
	}
	for (i = 0; i < r->n; i++)
		sum += (double)r->lat[i];
	st->average = sum / (double)r->n / 1e9;
	for (i = 0; i < r->n; i++) {
		double d = (double)r->lat[i] / 1e9 - st->average;

		dev += d * d;
	}
	st->stddev = sqrt(dev / (double)r->n);
	st->fastest = (double)r->lat[0] / 1e9;
	st->slowest = (double)r->lat[r->n - 1] / 1e9;

	/* etcd 3.4: the first sample at or above the percentile's rank; a
	 * rank past the last sample is "not reached" (and not printed). */
	for (i = 0; i < REPORT_NPCTL; i++) {
		size_t idx = (size_t)ceil(report_pctls[i] * (double)r->n / 100.0);

		st->pct[i] = idx < r->n ? (double)r->lat[idx] / 1e9 : 0;
		st->pct_clamped[i] = (double)r->lat[idx < r->n ? idx : r->n - 1] / 1e9;
	}

	step = (st->slowest - st->fastest) / REPORT_BUCKETS;
	for (i = 0; i < REPORT_BUCKETS; i++)
		st->bucket[i] = st->fastest + step * (double)i;
	st->bucket[REPORT_BUCKETS] = st->slowest;
	for (i = 0, bi = 0; i < r->n;) {
		if ((double)r->lat[i] / 1e9 <= st->bucket[bi] || bi == REPORT_BUCKETS) {
			st->count[bi]++;
			i++;
		} else {
			bi++;
		}
	}
}

/* Go's time.Duration.String() for the sample series, roughly. */
static void report_dur(char *buf, size_t len, uint64_t ns)
{
	if (ns < 1000)
		snprintf(buf, len, "%lluns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.9gµs", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.9gms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.9gs", (double)ns / 1e9);
}

static void report_print_samples(const struct report *r, FILE *f)
{
	size_t last = 0;

	for (size_t s = 0; s < r->n_sec; s++)
		if (r->sec[s].count)
			last = s + 1;
	fprintf(f, "\nSample in one second (unix latency throughput):\n");
	fprintf(f, "UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n");
	for (size_t s = 0; s < last; s++) {
		const struct report_second *p = &r->sec[s];
		char mn[32], av[32], mx[32];

		report_dur(mn, sizeof(mn), p->min_ns);
		report_dur(av, sizeof(av), p->count ? p->sum_ns / p->count : 0);
		report_dur(mx, sizeof(mx), p->max_ns);
		fprintf(f, "%lld,%s,%s,%s,%llu\n", (long long)(r->unix_begin + (int64_t)s), mn, av,
			mx, (unsigned long long)p->count);
	}
}

void report_print(struct report *r, FILE *f, bool precise)
{
	struct report_stats st;
	const char *p = precise ? "%g" : "%4.4f";
	char fmt[64];
	uint64_t max = 0, listed = 0;
	size_t i;

	report_compute(r, &st);
	if (r->n) {
		fprintf(f, "\nSummary:\n");
#define REPORT_LINE(label, v)                                                \
	do {                                                                 \
		snprintf(fmt, sizeof(fmt), "  %s:\t%s secs.\n", label, p);   \
		fprintf(f, fmt, v);                                          \
	} while (0)
		REPORT_LINE("Total", st.total);
		REPORT_LINE("Slowest", st.slowest);
		REPORT_LINE("Fastest", st.fastest);
		REPORT_LINE("Average", st.average);
		REPORT_LINE("Stddev", st.stddev);
#undef REPORT_LINE
		snprintf(fmt, sizeof(fmt), "  Requests/sec:\t%s\n", p);
		fprintf(f, fmt, st.rps);

		fprintf(f, "\nResponse time histogram:\n");
		for (i = 0; i <= REPORT_BUCKETS; i++)
			if (st.count[i] > max)
				max = st.count[i];
		snprintf(fmt, sizeof(fmt), "  %s [%%llu]\t|", p);
		for (i = 0; i <= REPORT_BUCKETS; i++) {
			uint64_t bar = max ? st.count[i] * 40 / max : 0;

			fprintf(f, fmt, st.bucket[i], (unsigned long long)st.count[i]);
			while (bar--)
				fputs("∎", f);
			fputc('\n', f);
		}

		fprintf(f, "\nLatency distribution:\n");
		snprintf(fmt, sizeof(fmt), "  %%g%%%% in %s secs.\n", p);
		for (i = 0; i < REPORT_NPCTL; i++)
			if (st.pct[i] > 0)
				fprintf(f, fmt, report_pctls[i], st.pct[i]);
		if (r->sample)
			report_print_samples(r, f);
	}
	if (r->errors) {
		fprintf(f, "\nError distribution:\n");
		for (i = 0; i < r->n_errs; i++) {
			fprintf(f, "  [%llu]\t%s\n", (unsigned long long)r->errs[i].count,
				r->errs[i].msg);
			listed += r->errs[i].count;
		}
		if (listed < r->errors)
			fprintf(f, "  [%llu]\t(other errors)\n",
				(unsigned long long)(r->errors - listed));
	}
	fflush(f);
}

json_t *report_latency_json(struct report *r)
{
	static const size_t ip50 = 2, ip90 = 4, ip99 = 6, ip999 = 7;
	struct report_stats st;
	json_t *lat = json_object();

	report_compute(r, &st);
	json_object_set_new(lat, "min", json_real(st.fastest * 1e3));
	json_object_set_new(lat, "mean", json_real(st.average * 1e3));
	json_object_set_new(lat, "stddev", json_real(st.stddev * 1e3));
	json_object_set_new(lat, "p50", json_real(st.pct_clamped[ip50] * 1e3));
	json_object_set_new(lat, "p90", json_real(st.pct_clamped[ip90] * 1e3));
	json_object_set_new(lat, "p99", json_real(st.pct_clamped[ip99] * 1e3));
	json_object_set_new(lat, "p999", json_real(st.pct_clamped[ip999] * 1e3));
	json_object_set_new(lat, "max", json_real(st.slowest * 1e3));
	return lat;
}

static json_t *report_json_object(struct report *r, const struct bench *b, const char *workload)
{
	struct report_stats st;
	json_t *o = json_object(), *hist = json_array(), *errs = json_array();

	report_compute(r, &st);
	json_object_set_new(o, "workload", json_string(workload));
	json_object_set_new(o, "total", json_integer((json_int_t)(r->n + r->errors)));
	json_object_set_new(o, "errors", json_integer((json_int_t)r->errors));
	json_object_set_new(o, "seconds", json_real(st.total));
	json_object_set_new(o, "rps", json_real(st.rps));
	json_object_set_new(o, "latency_ms", report_latency_json(r));
	if (r->n)
		for (size_t i = 0; i <= REPORT_BUCKETS; i++)
			json_array_append_new(hist, json_pack("[f, I]", st.bucket[i] * 1e3,
							      (json_int_t)st.count[i]));
	json_object_set_new(o, "histogram", hist);
	json_object_set_new(o, "clients", json_integer((json_int_t)b->clients));
	json_object_set_new(o, "conns", json_integer((json_int_t)b->conns));
	for (size_t i = 0; i < r->n_errs; i++)
		json_array_append_new(errs, json_pack("[I, s]", (json_int_t)r->errs[i].count,
						      r->errs[i].msg));
	json_object_set_new(o, "error_messages", errs);
	return o;
}

int report_json(struct report *r, const struct bench *b, const char *workload, json_t *extra)
{
	json_t *o;
	int rv;

	if (!b->json_path) {
		json_decref(extra);
		return 0;
	}
	o = report_json_object(r, b, workload);
	if (extra) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	rv = json_dump_file(o, b->json_path, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
	json_decref(o);
	if (rv) {
		bench_err("cannot write %s", b->json_path);
		return -1;
	}
	return 0;
}
