/*
 * range: etcd's `benchmark range KEY [END]`.  --total Range requests of
 * KEY (to END if given), linearizable (--consistency l, the default) or
 * serializable (s), optionally with --limit and --count-only.  All
 * requests are the same bytes, encoded once and shared by every worker.
 */
#include "bench.h"

#include <jansson.h>
#include <string.h>

static int64_t range_total = 10000, range_rate, range_limit;
static const char *range_consistency = "l";
static bool range_count_only;

static const struct flag range_flags[] = {
	{"total", FLAG_INT, &range_total, 0, INT64_MAX, "total number of range requests (default 10000)"},
	{"rate", FLAG_INT, &range_rate, 0, INT64_MAX, "maximum range requests per second (0 is no limit)"},
	{"consistency", FLAG_STRING, &range_consistency, 0, 0,
	 "linearizable (l, the default) or serializable (s)"},
	{"limit", FLAG_INT, &range_limit, 0, INT64_MAX, "maximum keys per response (0: all)"},
	{"count-only", FLAG_BOOL, &range_count_only, 0, 0, "ask only for the count of keys"},
	{NULL, 0, NULL, 0, 0, NULL},
};

static int range_run(struct bench *b, int argc, char **argv)
{
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	struct unary_spec spec = {.method = &kvc_kv_range};
	bool serializable;
	struct report r;
	struct tmpl t;
	json_t *extra;
	int rv = BENCH_EXIT_FAIL;

	if (strcmp(range_consistency, "l") == 0) {
		serializable = false;
	} else if (strcmp(range_consistency, "s") == 0) {
		serializable = true;
	} else {
		bench_err("--consistency must be l or s, not %s", range_consistency);
		return BENCH_EXIT_USAGE;
	}
	printf("bench with %s range\n", serializable ? "serializable" : "linearizable");
	req.key.data = (uint8_t *)argv[0];
	req.key.len = strlen(argv[0]);
	if (argc > 1) {
		req.range_end.data = (uint8_t *)argv[1];
		req.range_end.len = strlen(argv[1]);
	}
	req.serializable = serializable;
	req.limit = range_limit;
	req.count_only = range_count_only;
	if (tmpl_build(&t, &req.base, NULL, 0)) {
		bench_err("cannot build the range request");
		return BENCH_EXIT_FAIL;
	}
	spec.total = (uint64_t)range_total;
	spec.rate = (uint64_t)range_rate;
	spec.tmpl = &t;

	report_init(&r, (size_t)range_total, b->sample);
	if (unary_run(b, &spec, &r) == 0) {
		report_print(&r, stdout, b->precise);
		extra = json_pack("{s:s, s:b}", "consistency", serializable ? "s" : "l", "count_only",
				  range_count_only);
		rv = report_json(&r, b, "range", extra) || r.errors ? BENCH_EXIT_FAIL : BENCH_EXIT_OK;
	}
	report_free(&r);
	tmpl_free(&t);
	return rv;
}

const struct bench_cmd bench_cmd_range = {
	.name = "range",
	.args = "KEY [END]",
	.summary = "Benchmark range",
	.min_args = 1,
	.max_args = 2,
	.flags = range_flags,
	.run = range_run,
};
