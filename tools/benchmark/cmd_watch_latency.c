/*
 * watch-latency: etcd's `benchmark watch-latency`.  --streams Watch
 * streams of --watchers-per-stream watchers all watch one random key of
 * --key-size bytes; then --put-total puts of a --val-size value go to that
 * key one at a time, at most --put-rate a second, on a connection of their
 * own.  A sample is the time from a put's response to one watcher's event
 * of that put, and the next put goes once its response and every
 * watcher's event are in (as etcd's tool waits for all watchers).  In one
 * loop the event can be read before the response (a server may well notify
 * its watchers before it answers the put): it then counts as 0, and the
 * summary says how often that happened.  A second summary gives the time
 * from the put's request to each event, which is never negative.
 */
#include "bench.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define WLAT_STALL_S 10

static int64_t wl_total = 10000, wl_rate = 100, wl_streams = 1, wl_per_stream = 1;
static int64_t wl_key_size = 32, wl_val_size = 32;

static const struct flag wlat_flags[] = {
	{"put-total", FLAG_INT, &wl_total, 0, INT64_MAX, "total number of put requests (default 10000)"},
	{"total", FLAG_INT, &wl_total, 0, INT64_MAX, "the same as --put-total (etcd's name)"},
	{"put-rate", FLAG_INT, &wl_rate, 0, INT64_MAX, "puts per second (default 100; 0 is no limit)"},
	{"streams", FLAG_INT, &wl_streams, 1, 1 << 20, "watch streams (default 1)"},
	{"watchers-per-stream", FLAG_INT, &wl_per_stream, 1, 1 << 20,
	 "watchers per stream (default 1)"},
	{"key-size", FLAG_INT, &wl_key_size, 1, 1 << 20, "key size (default 32)"},
	{"val-size", FLAG_INT, &wl_val_size, 0, 1 << 30, "value size (default 32)"},
	{NULL, 0, NULL, 0, 0, NULL},
};

struct wlat {
	struct kvc_client *kc;      /* the puts' own connection */
	struct kvc_call call;
	struct rate rate;
	struct rate_waiter wait;
	struct report *r;
	struct report *rs;          /* from the put's request */
	const uint8_t *key;
	uint8_t *req;
	size_t len;
	uint64_t watchers;
	uint64_t sent, done;        /* puts sent; puts with response and all events */
	uint64_t got, early;        /* events of the current put; before its response */
	uint64_t early_total;
	uint64_t t_send;            /* the current put's request */
	uint64_t t_resp;            /* its response; 0: not yet */
	bool finished;
	uv_timer_t stall;
	uint64_t mark;
	unsigned still;
};

static void wlat_next(struct wlat *w);

static void wlat_advance(struct wlat *w)
{
	w->done++;
	wlat_next(w);
}

static void wlat_put_done(struct kvc_call *call, int err)
{
	struct wlat *w = call->data;
	uint64_t now = uv_hrtime();

	if (w->finished)
		return; /* cancelled after a stall */
	if (err) {
		/* No event will come for it; the run goes on with the next. */
		report_error(w->r, kvc_call_grpc_message(call));
		wlat_advance(w);
		return;
	}
	w->t_resp = now;
	for (uint64_t k = 0; k < w->early; k++)
		report_ok(w->r, now, now);
	if (w->got >= w->watchers)
		wlat_advance(w);
}

static void wlat_send(struct wlat *w)
{
	int rv;

	w->got = w->early = 0;
	w->t_resp = 0;
	w->sent++;
	w->t_send = uv_hrtime();
	rv = kvc_call_unary(w->kc, &w->call, &kvc_kv_put, w->req, w->len, wlat_put_done);
	if (rv) {
		report_error(w->r, kv_err_message(rv));
		wlat_advance(w);
	}
}

static void wlat_wait_cb(struct rate_waiter *rw)
{
	wlat_send((struct wlat *)((char *)rw - offsetof(struct wlat, wait)));
}

static void wlat_next(struct wlat *w)
{
	if (w->sent == (uint64_t)wl_total) {
		if (!w->finished) {
			report_end(w->r);
			w->finished = true;
		}
		return;
	}
	if (rate_take(&w->rate, &w->wait))
		wlat_send(w);
}

static void wlat_events(void *ud, uint64_t n, uint64_t now)
{
	struct wlat *w = ud;

	if (!w->req || w->finished)
		return; /* not started, or over */
	w->got += n;
	for (uint64_t k = 0; k < n; k++)
		report_ok(w->rs, w->t_send, now);
	if (!w->t_resp) {
		w->early += n;
		w->early_total += n;
		return;
	}
	for (uint64_t k = 0; k < n; k++)
		report_ok(w->r, w->t_resp, now);
	if (w->got >= w->watchers)
		wlat_advance(w);
}

static const uint8_t *wlat_key(void *ud, size_t g, size_t *len)
{
	struct wlat *w = ud;

	(void)g;
	*len = (size_t)wl_key_size;
	return w->key;
}

static void wlat_stall_cb(uv_timer_t *t)
{
	struct wlat *w = t->data;
	uint64_t mark = w->done * (w->watchers + 1) + w->got;

	if (mark != w->mark) {
		w->mark = mark;
		w->still = 0;
	} else if (++w->still >= WLAT_STALL_S && !w->finished) {
		bench_err("no progress for %d s: put %llu has %llu of %llu events%s", WLAT_STALL_S,
			  (unsigned long long)w->sent, (unsigned long long)w->got,
			  (unsigned long long)w->watchers, w->t_resp ? "" : " and no response");
		report_errors(w->r, "watch events that never arrived", w->watchers - w->got);
		report_end(w->r);
		w->finished = true;
	}
}

static int wlat_run(struct bench *b, int argc, char **argv)
{
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	uint8_t *key = malloc((size_t)wl_key_size), *val = malloc((size_t)wl_val_size + 1);
	struct wlat w;
	struct watchers *ws = NULL;
	struct progress prog = {0};
	struct report cr, r, rs;
	json_t *extra, *from_send;
	int rv = BENCH_EXIT_FAIL;

	(void)argc;
	(void)argv;
	memset(&w, 0, sizeof(w));
	report_init(&cr, (size_t)(wl_streams * wl_per_stream), false);
	report_init(&r, (size_t)(wl_total * wl_streams * wl_per_stream), b->sample);
	report_init(&rs, (size_t)(wl_total * wl_streams * wl_per_stream), false);
	if (!key || !val)
		goto out;
	rnd_bytes(key, (size_t)wl_key_size);
	rnd_bytes(val, (size_t)wl_val_size);
	w.key = key;
	w.r = &r;
	w.rs = &rs;
	w.watchers = (uint64_t)(wl_streams * wl_per_stream);
	ws = watchers_open(b, (size_t)wl_streams, (size_t)wl_per_stream, wlat_key, wlat_events, &w,
			   &cr);
	if (!ws || watchers_failed(ws))
		goto out;
	if (bench_conn_extra(b, &w.kc))
		goto out;

	req.key.data = key;
	req.key.len = (size_t)wl_key_size;
	req.value.data = val;
	req.value.len = (size_t)wl_val_size;
	w.len = protobuf_c_message_get_packed_size(&req.base);
	w.req = malloc(w.len ? w.len : 1);
	if (!w.req)
		goto out;
	protobuf_c_message_pack(&req.base, w.req);
	kvc_call_init(&w.call);
	w.call.data = &w;
	w.call.timeout_ms = KVC_NO_TIMEOUT;
	w.wait.cb = wlat_wait_cb;
	rate_init(&w.rate, b->loop, (uint64_t)wl_rate);
	uv_timer_init(b->loop, &w.stall);
	w.stall.data = &w;
	uv_timer_start(&w.stall, wlat_stall_cb, 1000, 1000);
	progress_start(&prog, b, &w.done, (uint64_t)wl_total);

	report_begin(&r);
	report_begin(&rs);
	wlat_next(&w);
	while (!w.finished && !watchers_failed(ws))
		uv_run(b->loop, UV_RUN_ONCE);
	if (!w.finished)
		report_end(&r);
	rs.t_end = r.t_end;

	progress_stop(&prog, b);
	bench_close(b, (uv_handle_t *)&w.stall);
	rate_close(&w.rate, b);
	kvc_call_cancel(&w.call);
	report_print(&r, stdout, b->precise);
	if (w.early_total)
		printf("\n%llu of the events arrived before the response to their put (counted as "
		       "0 secs.)\n",
		       (unsigned long long)w.early_total);
	printf("\nFrom the put's request to each event:");
	report_print(&rs, stdout, b->precise);
	from_send = report_latency_json(&rs);
	extra = json_pack("{s:I, s:I, s:I, s:I, s:o}", "puts", (json_int_t)w.done, "watchers",
			  (json_int_t)w.watchers, "streams", (json_int_t)wl_streams, "early_events",
			  (json_int_t)w.early_total, "from_request_ms", from_send);
	rv = report_json(&r, b, "watch-latency", extra) || r.errors || watchers_failed(ws)
		     ? BENCH_EXIT_FAIL
		     : BENCH_EXIT_OK;
out:
	watchers_close(ws);
	if (w.kc)
		kvc_client_free(w.kc, NULL, NULL);
	report_free(&cr);
	report_free(&r);
	report_free(&rs);
	free(w.req);
	free(key);
	free(val);
	return rv;
}

const struct bench_cmd bench_cmd_watch_latency = {
	.name = "watch-latency",
	.summary = "Benchmark watch latency (from a put's response to each watcher's event)",
	.flags = wlat_flags,
	.run = wlat_run,
};
