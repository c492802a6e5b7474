/*
 * lease-keepalive: etcd's `benchmark lease-keepalive`.  Each of --clients
 * workers grants a lease (TTL 100 s, as etcd's tool) and opens a
 * LeaseKeepAlive stream of its own; then --total keepalives are shared
 * out, each worker sending one, waiting for its answer (a
 * LeaseKeepAliveResponse, scanned for its TTL: 0 means the lease is gone,
 * an error) and sending the next.  A sample is one round trip on a stream.
 * (etcd's tool opens a stream per keepalive with KeepAliveOnce; a stream
 * that stays open is what clients do, and measures the server's keepalive
 * path rather than stream set-up.)  The leases are revoked at the end.
 */
#include "bench.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_TTL 100

static int64_t lk_total = 10000;

static const struct flag lk_flags[] = {
	{"total", FLAG_INT, &lk_total, 0, INT64_MAX,
	 "total number of lease keepalive requests (default 10000)"},
	{NULL, 0, NULL, 0, 0, NULL},
};

struct lk;

struct lk_worker {
	struct kvc_call call;      /* LeaseGrant, then LeaseKeepAlive, then LeaseRevoke */
	struct arena arena;
	struct lk *k;
	int64_t id;
	uint8_t req[16];           /* LeaseKeepAliveRequest{ID} */
	size_t req_len;
	uint64_t t0;
	bool granted, waiting;
};

struct lk {
	struct report *r;
	struct lk_worker *w;
	size_t n;
	uint64_t claimed, completed;
	size_t pending, live;      /* grants/revokes not answered; streams open */
	int grant_failed;
	bool done;
	uint32_t f_ttl;
};

static void lk_count(struct lk *k, uint64_t n)
{
	k->completed += n;
	if (k->completed >= (uint64_t)lk_total && !k->done) {
		report_end(k->r);
		k->done = true;
	}
}

static void lk_send_next(struct lk_worker *w)
{
	struct lk *k = w->k;

	while (k->claimed < (uint64_t)lk_total) {
		int rv;

		k->claimed++;
		w->t0 = uv_hrtime();
		rv = kvc_call_send(&w->call, w->req, w->req_len);
		if (rv == 0) {
			w->waiting = true;
			return;
		}
		report_error(k->r, kv_err_message(rv));
		lk_count(k, 1);
	}
}

static void lk_msg(struct kvc_call *call, const uint8_t *msg, size_t len)
{
	struct lk_worker *w = call->data;
	struct lk *k = w->k;
	uint64_t now = uv_hrtime();
	const uint8_t *p = msg;
	struct pb_field f;
	int64_t ttl = 0;
	int rv;

	if (!w->waiting || k->done)
		return;
	w->waiting = false;
	while ((rv = pbscan_next(&p, msg + len, &f)) > 0)
		if (f.num == k->f_ttl && f.wire == 0)
			ttl = (int64_t)f.v;
	if (rv < 0)
		report_error(k->r, "a LeaseKeepAliveResponse did not decode");
	else if (ttl <= 0)
		report_error(k->r, "keepalive answered with TTL 0: the lease is gone");
	else
		report_ok(k->r, w->t0, now);
	lk_count(k, 1);
	lk_send_next(w);
}

static void lk_stream_done(struct kvc_call *call, int err)
{
	struct lk_worker *w = call->data;
	struct lk *k = w->k;

	if (k->done)
		return; /* cancelled at the end */
	k->live--;
	if (w->waiting) {
		w->waiting = false;
		report_error(k->r, err ? kvc_call_grpc_message(call) : "stream ended by the server");
		lk_count(k, 1);
	}
	if (!k->live && !k->done) {
		/* Nobody is left to send the rest. */
		report_errors(k->r, "not sent: every keepalive stream had ended",
			      (uint64_t)lk_total - k->claimed);
		k->claimed = (uint64_t)lk_total;
		lk_count(k, (uint64_t)lk_total - k->completed);
	}
}

static void lk_grant_done(struct kvc_call *call, int err, ProtobufCMessage *resp)
{
	struct lk_worker *w = call->data;
	Etcdserverpb__LeaseKeepAliveRequest ka = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;

	if (err) {
		if (!w->k->grant_failed++)
			bench_err("lease grant failed: %s", kvc_call_grpc_message(call));
	} else {
		w->id = ((Etcdserverpb__LeaseGrantResponse *)resp)->id;
		w->granted = true;
		ka.id = w->id;
		w->req_len = protobuf_c_message_get_packed_size(&ka.base);
		protobuf_c_message_pack(&ka.base, w->req);
	}
	arena_close(&w->arena);
	w->k->pending--;
}

static void lk_revoke_done(struct kvc_call *call, int err, ProtobufCMessage *resp)
{
	struct lk_worker *w = call->data;

	(void)resp;
	if (err && err != -KV_ECANCELED)
		bench_err("revoking lease %llx: %s", (unsigned long long)w->id,
			  kvc_call_grpc_message(call));
	arena_close(&w->arena);
	w->k->pending--;
}

static bool lk_wait_pending(struct bench *b, struct lk *k)
{
	while (k->pending)
		if (!uv_run(b->loop, UV_RUN_ONCE) && k->pending)
			return false;
	return true;
}

/* Grants every worker's lease; returns 0 or -1. */
static int lk_grant(struct bench *b, struct lk *k)
{
	for (size_t i = 0; i < k->n; i++) {
		struct lk_worker *w = &k->w[i];
		Etcdserverpb__LeaseGrantRequest rq = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;

		rq.ttl = LEASE_TTL;
		arena_init(&w->arena);
		if (kvc_call_unary_pb(bench_conn(b, i), &w->call, &kvc_lease_grant, &rq.base,
				      &w->arena, lk_grant_done)) {
			arena_close(&w->arena);
			k->grant_failed++;
			continue;
		}
		k->pending++;
	}
	if (!lk_wait_pending(b, k) || k->grant_failed) {
		bench_err("%d of %zu lease grants failed", k->grant_failed, k->n);
		return -1;
	}
	return 0;
}

static void lk_revoke(struct bench *b, struct lk *k)
{
	for (size_t i = 0; i < k->n; i++) {
		struct lk_worker *w = &k->w[i];
		Etcdserverpb__LeaseRevokeRequest rq = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;

		if (!w->granted)
			continue;
		rq.id = w->id;
		arena_init(&w->arena);
		w->call.timeout_ms = 10000;
		if (kvc_call_unary_pb(bench_conn(b, i), &w->call, &kvc_lease_revoke, &rq.base,
				      &w->arena, lk_revoke_done)) {
			arena_close(&w->arena);
			continue;
		}
		k->pending++;
	}
	lk_wait_pending(b, k);
}

static int lk_run(struct bench *b, int argc, char **argv)
{
	struct lk k;
	struct report r;
	struct progress prog = {0};
	json_t *extra;
	int rv = BENCH_EXIT_FAIL;

	(void)argc;
	(void)argv;
	memset(&k, 0, sizeof(k));
	k.r = &r;
	k.f_ttl = pbscan_field(&etcdserverpb__lease_keep_alive_response__descriptor, "TTL");
	k.n = (uint64_t)b->clients < (uint64_t)lk_total ? (size_t)b->clients : (size_t)lk_total;
	if (!k.n)
		k.n = 1;
	k.w = calloc(k.n, sizeof(*k.w));
	report_init(&r, (size_t)lk_total, b->sample);
	if (!k.w)
		goto out;
	for (size_t i = 0; i < k.n; i++) {
		kvc_call_init(&k.w[i].call);
		k.w[i].call.data = &k.w[i];
		k.w[i].k = &k;
	}
	if (lk_grant(b, &k))
		goto revoke;

	progress_start(&prog, b, &k.completed, (uint64_t)lk_total);
	report_begin(&r);
	if (lk_total == 0) {
		report_end(&r);
		k.done = true;
	}
	for (size_t i = 0; i < k.n && !k.done; i++) {
		struct lk_worker *w = &k.w[i];
		int err = kvc_call_stream(bench_conn(b, i), &w->call, &kvc_lease_keep_alive, lk_msg,
					  lk_stream_done);

		if (err) {
			bench_err("cannot open a keepalive stream: %s", kv_err_message(err));
			continue;
		}
		k.live++;
		lk_send_next(w);
	}
	if (!k.live && !k.done) {
		report_end(&r);
		k.done = true;
	}
	if (!bench_run_until(b, &k.done))
		bench_err("the loop ran out of work");
	progress_stop(&prog, b);
	for (size_t i = 0; i < k.n; i++)
		kvc_call_cancel(&k.w[i].call);
	report_print(&r, stdout, b->precise);
	extra = json_pack("{s:I}", "leases", (json_int_t)k.n);
	rv = report_json(&r, b, "lease-keepalive", extra) || r.errors || !k.done ? BENCH_EXIT_FAIL
										 : BENCH_EXIT_OK;
revoke:
	lk_revoke(b, &k);
out:
	free(k.w);
	report_free(&r);
	return rv;
}

const struct bench_cmd bench_cmd_lease_keepalive = {
	.name = "lease-keepalive",
	.summary = "Benchmark lease keepalive",
	.flags = lk_flags,
	.run = lk_run,
};
