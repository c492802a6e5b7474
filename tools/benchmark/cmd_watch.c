/*
 * watch: etcd's `benchmark watch`.  --streams Watch streams of
 * --watch-per-stream watchers, watcher g on watched key g mod
 * --watched-key-total (the watched keys are etcd benchmark keys of
 * --key-size bytes from --key-space-size, in order with --sequential-keys).
 * Once all are created, --put-total puts (--put-rate a second at most,
 * --clients in flight) go round-robin over the watched keys, and the events
 * the watchers receive are counted until every expected event is in (each
 * put to a key produces one event per watcher of that key).  The summary
 * is etcd's for the creations and for the puts, then the events received
 * per second, from the first put to the last event.
 */
#include "bench.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_STALL_S 10 /* no new event this long after the puts: give up */

static int64_t w_streams = 10, w_per_stream = 100, w_key_total = 1;
static int64_t w_put_total = 1000, w_put_rate, w_key_size = 32, w_val_size = 8, w_space = 1;
static bool w_seq;

static const struct flag watch_flags[] = {
	{"streams", FLAG_INT, &w_streams, 0, 1 << 20, "total watch streams (default 10)"},
	{"watch-per-stream", FLAG_INT, &w_per_stream, 0, 1 << 20,
	 "total watchers per stream (default 100)"},
	{"watched-key-total", FLAG_INT, &w_key_total, 1, 1 << 24,
	 "total number of keys to be watched (default 1)"},
	{"put-rate", FLAG_INT, &w_put_rate, 0, INT64_MAX, "puts per second (0 is no limit)"},
	{"put-total", FLAG_INT, &w_put_total, 0, INT64_MAX, "number of put requests (default 1000)"},
	{"key-size", FLAG_INT, &w_key_size, 1, 1 << 20, "key size of watch request (default 32)"},
	{"val-size", FLAG_INT, &w_val_size, 0, 1 << 30, "value size of the puts (default 8)"},
	{"key-space-size", FLAG_INT, &w_space, 1, INT64_MAX, "maximum possible keys (default 1)"},
	{"sequential-keys", FLAG_BOOL, &w_seq, 0, 0, "use sequential keys"},
	{NULL, 0, NULL, 0, 0, NULL},
};

struct watch_run {
	uint64_t *idx;        /* the key index of each watched key */
	uint8_t *keys;        /* the watched keys, w_key_size bytes each */
	uint64_t *watchers;   /* watchers of each watched key */
	uint64_t expected, events;
	uint64_t t_last;      /* when the last event arrived */
	bool all;
};

static const uint8_t *watch_key(void *ud, size_t g, size_t *len)
{
	struct watch_run *w = ud;
	size_t k = g % (size_t)w_key_total;

	w->watchers[k]++;
	*len = (size_t)w_key_size;
	return w->keys + k * (size_t)w_key_size;
}

static void watch_events(void *ud, uint64_t n, uint64_t now)
{
	struct watch_run *w = ud;

	w->events += n;
	w->t_last = now;
	if (w->expected && w->events >= w->expected)
		w->all = true;
}

static uint64_t watch_put_index(void *ud, uint64_t i, size_t s)
{
	struct watch_run *w = ud;

	(void)s;
	return w->idx[i % (uint64_t)w_key_total];
}

struct watch_wait {
	uv_timer_t timer;
	struct watch_run *w;
	uint64_t seen;
	unsigned still;
	bool stalled;
};

static void watch_wait_cb(uv_timer_t *t)
{
	struct watch_wait *ww = t->data;

	if (ww->w->events != ww->seen) {
		ww->seen = ww->w->events;
		ww->still = 0;
	} else if (++ww->still >= WATCH_STALL_S) {
		ww->stalled = true;
	}
}

/* Runs the loop until every expected event is in, the watchers fail, or
 * nothing arrives for WATCH_STALL_S seconds. */
static void watch_wait_events(struct bench *b, struct watch_run *w, struct watchers *ws)
{
	struct watch_wait ww = {.w = w, .seen = w->events};

	uv_timer_init(b->loop, &ww.timer);
	ww.timer.data = &ww;
	uv_timer_start(&ww.timer, watch_wait_cb, 1000, 1000);
	while (!w->all && !ww.stalled && !watchers_failed(ws))
		uv_run(b->loop, UV_RUN_ONCE);
	bench_close(b, (uv_handle_t *)&ww.timer);
	if (ww.stalled)
		bench_err("no watch event for %d s: %llu of %llu events arrived", WATCH_STALL_S,
			  (unsigned long long)w->events, (unsigned long long)w->expected);
}

struct watch_slot {
	uint64_t idx;
	size_t k;
};

static int watch_slot_cmp(const void *a, const void *b)
{
	const struct watch_slot *x = a, *y = b;

	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The events the puts should produce.  Watched keys may repeat (several
 * slots with the same key index, e.g. random keys from a small key space),
 * and a put to a key reaches every watcher of that key, whichever slot it
 * was created for: as etcd's tool, count watchers per distinct key. */
static int watch_expected(struct watch_run *w)
{
	size_t n = (size_t)w_key_total, i, j;
	struct watch_slot *s = calloc(n, sizeof(*s));
	uint64_t *per_key = calloc(n, sizeof(*per_key));

	if (!s || !per_key) {
		free(s);
		free(per_key);
		return -1;
	}
	for (i = 0; i < n; i++)
		s[i] = (struct watch_slot){.idx = w->idx[i], .k = i};
	qsort(s, n, sizeof(*s), watch_slot_cmp);
	for (i = 0; i < n; i = j) {
		uint64_t sum = 0;

		for (j = i; j < n && s[j].idx == s[i].idx; j++)
			sum += w->watchers[s[j].k];
		for (j = i; j < n && s[j].idx == s[i].idx; j++)
			per_key[s[j].k] = sum;
	}
	w->expected = 0;
	for (int64_t p = 0; p < w_put_total; p++)
		w->expected += per_key[p % w_key_total];
	free(s);
	free(per_key);
	return 0;
}

static int watch_prepare(struct watch_run *w)
{
	size_t n = (size_t)w_key_total, ks = (size_t)w_key_size;

	w->idx = calloc(n, sizeof(*w->idx));
	w->keys = calloc(n, ks);
	w->watchers = calloc(n, sizeof(*w->watchers));
	if (!w->idx || !w->keys || !w->watchers)
		return -1;
	if (key_check_space(ks, (uint64_t)w_space, "--key-space-size"))
		return -1;
	for (size_t k = 0; k < n; k++) {
		w->idx[k] = w_seq ? k % (uint64_t)w_space : rnd_next() % (uint64_t)w_space;
		key_encode(w->keys + k * ks, ks, w->idx[k]);
	}
	return 0;
}

static void watch_print_events(const struct bench *b, const struct watch_run *w, double secs)
{
	const char *p = b->precise ? "%g" : "%4.4f";
	char fmt[64];

	printf("\nWatch events received summary:\n");
	printf("  Events:\t%llu (%llu expected)\n", (unsigned long long)w->events,
	       (unsigned long long)w->expected);
	snprintf(fmt, sizeof(fmt), "  Total:\t%s secs.\n", p);
	printf(fmt, secs);
	snprintf(fmt, sizeof(fmt), "  Events/sec:\t%s\n", p);
	printf(fmt, secs > 0 ? (double)w->events / secs : 0.0);
	fflush(stdout);
}

static int watch_run(struct bench *b, int argc, char **argv)
{
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	uint8_t *key = malloc((size_t)w_key_size), *val = malloc((size_t)w_val_size + 1);
	struct unary_spec spec = {.method = &kvc_kv_put};
	struct watch_run w = {0};
	struct watchers *ws = NULL;
	struct report cr, r;
	struct tmpl t = {0};
	double secs;
	json_t *extra;
	int rv = BENCH_EXIT_FAIL;

	(void)argc;
	(void)argv;
	report_init(&cr, (size_t)(w_streams * w_per_stream), false);
	report_init(&r, (size_t)w_put_total, b->sample);
	if (!key || !val || watch_prepare(&w))
		goto out;
	if ((uint64_t)b->conns * 100 < (uint64_t)w_streams)
		fprintf(stderr, "warning: %lld streams on %lld connections: over 100 streams per "
				"connection, servers that limit concurrent streams queue the rest\n",
			(long long)w_streams, (long long)b->conns);

	ws = watchers_open(b, (size_t)w_streams, (size_t)w_per_stream, watch_key, watch_events,
			   &w, &cr);
	if (!ws || watchers_failed(ws))
		goto out;
	printf("Watch creation summary:");
	report_print(&cr, stdout, b->precise);

	if (watch_expected(&w))
		goto out;
	w.events = 0;
	w.all = w.expected == 0;
	rnd_bytes(val, (size_t)w_val_size);
	req.key.data = key;
	req.key.len = (size_t)w_key_size;
	req.value.data = val;
	req.value.len = (size_t)w_val_size;
	if (tmpl_build(&t, &req.base, key, (size_t)w_key_size)) {
		bench_err("cannot build the put request");
		goto out;
	}
	spec.total = (uint64_t)w_put_total;
	spec.rate = (uint64_t)w_put_rate;
	spec.tmpl = &t;
	spec.key_index = watch_put_index;
	spec.ud = &w;
	if (unary_run(b, &spec, &r))
		goto out;
	printf("\nPut summary:");
	report_print(&r, stdout, b->precise);
	watch_wait_events(b, &w, ws);

	if (w.events < w.expected)
		report_errors(&r, "watch events that never arrived", w.expected - w.events);
	secs = w.t_last > r.t_begin ? (double)(w.t_last - r.t_begin) / 1e9 : 0;
	watch_print_events(b, &w, secs);
	extra = json_pack("{s:I, s:I, s:f, s:f, s:I, s:I, s:f, s:f}", "events",
			  (json_int_t)w.events, "events_expected", (json_int_t)w.expected,
			  "events_seconds", secs, "events_per_sec",
			  secs > 0 ? (double)w.events / secs : 0.0, "streams", (json_int_t)w_streams,
			  "watchers", (json_int_t)(w_streams * w_per_stream), "create_seconds",
			  report_seconds(&cr), "create_rps", report_rps(&cr));
	rv = report_json(&r, b, "watch", extra) || r.errors || watchers_failed(ws)
		     ? BENCH_EXIT_FAIL
		     : BENCH_EXIT_OK;
out:
	watchers_close(ws);
	tmpl_free(&t);
	report_free(&cr);
	report_free(&r);
	free(w.idx);
	free(w.keys);
	free(w.watchers);
	free(key);
	free(val);
	return rv;
}

const struct bench_cmd bench_cmd_watch = {
	.name = "watch",
	.summary = "Benchmark watch",
	.flags = watch_flags,
	.run = watch_run,
};
