/*
 * watchers: the Watch streams of `watch` and `watch-latency`.  Stream i
 * goes on connection i mod --conns and carries per_stream watchers, all
 * created at once; watchers_open() runs the loop until the server has
 * confirmed every one (created=true) and records each confirmation's
 * latency from its stream's creates being queued.  After that every
 * WatchResponse is scanned (pbscan.c), not unpacked: its events are
 * counted and handed to the workload's on_events callback with the time
 * they arrived.  A watcher the server cancels, or a stream that ends,
 * fails the run: the figures would be wrong.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

struct wstream {
	struct kvc_call call;
	struct watchers *ws;
	uint64_t t_send;         /* when its creates were queued */
	size_t created;
};

struct watchers {
	struct bench *b;
	struct wstream *s;
	size_t n;
	uint64_t created, want;
	uint64_t events;
	/* events arrived: n of them, at now (uv_hrtime) */
	void (*on_events)(void *ud, uint64_t n, uint64_t now);
	void *ud;
	struct report *create_rep;
	bool failed, closing, all_created;
	uint32_t f_created, f_canceled, f_events, f_reason;
};

static void watchers_fail(struct watchers *ws, const char *fmt, const char *what)
{
	if (ws->closing)
		return;
	if (!ws->failed)
		bench_err(fmt, what);
	ws->failed = true;
}

static void watchers_msg(struct kvc_call *call, const uint8_t *msg, size_t len)
{
	struct wstream *st = call->data;
	struct watchers *ws = st->ws;
	const uint8_t *p = msg, *end = msg + len;
	bool created = false, canceled = false;
	uint64_t n = 0, now;
	char reason[128] = "";
	struct pb_field f;
	int rv;

	while ((rv = pbscan_next(&p, end, &f)) > 0) {
		if (f.num == ws->f_events && f.wire == 2)
			n++;
		else if (f.num == ws->f_created && f.wire == 0)
			created = f.v != 0;
		else if (f.num == ws->f_canceled && f.wire == 0)
			canceled = f.v != 0;
		else if (f.num == ws->f_reason && f.wire == 2)
			snprintf(reason, sizeof(reason), "%.*s", (int)f.len, (const char *)f.p);
	}
	now = uv_hrtime();
	if (rv < 0) {
		watchers_fail(ws, "%s", "a WatchResponse did not decode");
		return;
	}
	if (canceled) {
		watchers_fail(ws, "a watcher was canceled by the server: %s",
			      reason[0] ? reason : "(no reason given)");
		return;
	}
	if (created) {
		st->created++;
		report_ok(ws->create_rep, st->t_send, now);
		if (++ws->created == ws->want) {
			report_end(ws->create_rep);
			ws->all_created = true;
		}
	}
	if (n) {
		ws->events += n;
		if (ws->on_events)
			ws->on_events(ws->ud, n, now);
	}
}

static void watchers_done(struct kvc_call *call, int err)
{
	struct wstream *st = call->data;

	watchers_fail(st->ws, "a watch stream ended: %s",
		      err ? kvc_call_grpc_message(call) : "closed by the server");
}

static int watchers_create(struct wstream *st, const uint8_t *key, size_t len)
{
	Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;

	cr.key.data = (uint8_t *)key;
	cr.key.len = len;
	wr.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	wr.create_request = &cr;
	return kvc_call_send_pb(&st->call, &wr.base);
}

struct watchers *watchers_open(struct bench *b, size_t streams, size_t per_stream,
			       const uint8_t *(*key)(void *ud, size_t g, size_t *len),
			       void (*on_events)(void *ud, uint64_t n, uint64_t now), void *ud,
			       struct report *create_rep)
{
	const ProtobufCMessageDescriptor *d = &etcdserverpb__watch_response__descriptor;
	struct watchers *ws = calloc(1, sizeof(*ws));
	int rv;

	if (!ws)
		return NULL;
	ws->b = b;
	ws->s = calloc(streams ? streams : 1, sizeof(*ws->s));
	if (!ws->s) {
		free(ws);
		return NULL;
	}
	ws->want = (uint64_t)streams * per_stream;
	ws->on_events = on_events;
	ws->ud = ud;
	ws->create_rep = create_rep;
	ws->f_created = pbscan_field(d, "created");
	ws->f_canceled = pbscan_field(d, "canceled");
	ws->f_events = pbscan_field(d, "events");
	ws->f_reason = pbscan_field(d, "cancel_reason");

	report_begin(create_rep);
	if (ws->want == 0) {
		report_end(create_rep);
		ws->all_created = true;
	}
	for (size_t i = 0; i < streams && !ws->failed; i++) {
		struct wstream *st = &ws->s[i];

		kvc_call_init(&st->call);
		st->call.data = st;
		st->ws = ws;
		rv = kvc_call_stream(bench_conn(b, i), &st->call, &kvc_watch_watch, watchers_msg,
				     watchers_done);
		if (rv) {
			watchers_fail(ws, "cannot open a watch stream: %s", kv_err_message(rv));
			break;
		}
		ws->n++;
		st->t_send = uv_hrtime();
		for (size_t j = 0; j < per_stream; j++) {
			size_t len;
			const uint8_t *k = key(ud, i * per_stream + j, &len);

			if (watchers_create(st, k, len)) {
				watchers_fail(ws, "%s", "cannot queue a watch create request");
				break;
			}
		}
	}
	while (!ws->failed && !ws->all_created)
		if (!uv_run(b->loop, UV_RUN_ONCE))
			watchers_fail(ws, "%s", "the loop ran out of work creating watchers");
	return ws;
}

bool watchers_failed(const struct watchers *ws)
{
	return ws->failed;
}

uint64_t watchers_events(const struct watchers *ws)
{
	return ws->events;
}

void watchers_close(struct watchers *ws)
{
	if (!ws)
		return;
	ws->closing = true;
	for (size_t i = 0; i < ws->n; i++)
		kvc_call_cancel(&ws->s[i].call);
	free(ws->s);
	free(ws);
}
