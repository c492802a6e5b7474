/*
 * put: etcd's `benchmark put`.  --total Put requests of a random value of
 * --val-size bytes, keys chosen from --key-space-size (in order with
 * --sequential-keys, else at random), through the closed loop of unary.c.
 * With --compact-interval, the key space is compacted every interval to
 * --compact-index-delta revisions behind the current one, as etcd's tool
 * does (it reads the revision from a Get of "foo").
 */
#include "bench.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int64_t put_key_size = 8, put_val_size = 8, put_total = 10000, put_rate;
static int64_t put_space = 1, put_delta = 1000;
static bool put_seq;
static uint64_t put_compact_ms;

static const struct flag put_flags[] = {
	{"key-size", FLAG_INT, &put_key_size, 1, 1 << 20, "key size of put request (default 8)"},
	{"val-size", FLAG_INT, &put_val_size, 0, 1 << 30, "value size of put request (default 8)"},
	{"total", FLAG_INT, &put_total, 0, INT64_MAX, "total number of put requests (default 10000)"},
	{"rate", FLAG_INT, &put_rate, 0, INT64_MAX, "maximum puts per second (0 is no limit)"},
	{"key-space-size", FLAG_INT, &put_space, 1, INT64_MAX, "maximum possible keys (default 1)"},
	{"sequential-keys", FLAG_BOOL, &put_seq, 0, 0, "use sequential keys"},
	{"compact-interval", FLAG_DURATION, &put_compact_ms, 0, 0,
	 "interval to compact the key space (0: never)"},
	{"compact-index-delta", FLAG_INT, &put_delta, 0, INT64_MAX,
	 "delta between current revision and compact revision (default 1000)"},
	{NULL, 0, NULL, 0, 0, NULL},
};

static uint64_t put_key_index(void *ud, uint64_t i, size_t s)
{
	(void)ud;
	(void)s;
	return put_seq ? i % (uint64_t)put_space : rnd_next() % (uint64_t)put_space;
}

/* --- --compact-interval ------------------------------------------------------ */

struct compactor {
	uv_timer_t timer;
	struct kvc_call call;
	struct arena arena;
	struct kvc_client *kc;
	struct bench *b;
	bool busy, on;
};

static void compact_done(struct kvc_call *call, int err, ProtobufCMessage *resp)
{
	struct compactor *c = call->data;

	(void)resp;
	if (err && err != -KV_ECANCELED)
		bench_err("compaction failed: %s", kvc_call_grpc_message(call));
	arena_close(&c->arena);
	c->busy = false;
}

static void compact_range_done(struct kvc_call *call, int err, ProtobufCMessage *resp)
{
	struct compactor *c = call->data;
	Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	Etcdserverpb__RangeResponse *rr = (Etcdserverpb__RangeResponse *)resp;
	int64_t rev = err || !rr->header ? 0 : rr->header->revision - put_delta;

	if (err && err != -KV_ECANCELED)
		bench_err("compaction: reading the revision failed: %s", kvc_call_grpc_message(call));
	arena_close(&c->arena);
	c->busy = false;
	if (rev <= 0 || !c->on)
		return;
	req.revision = rev;
	arena_init(&c->arena);
	if (kvc_call_unary_pb(c->kc, &c->call, &kvc_kv_compact, &req.base, &c->arena,
			      compact_done) == 0)
		c->busy = true;
	else
		arena_close(&c->arena);
}

static void compact_timer_cb(uv_timer_t *t)
{
	struct compactor *c = t->data;
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;

	if (c->busy)
		return;
	req.key.data = (uint8_t *)"foo";
	req.key.len = 3;
	arena_init(&c->arena);
	if (kvc_call_unary_pb(c->kc, &c->call, &kvc_kv_range, &req.base, &c->arena,
			      compact_range_done) == 0)
		c->busy = true;
	else
		arena_close(&c->arena);
}

static void compact_start(struct compactor *c, struct bench *b)
{
	memset(c, 0, sizeof(*c));
	if (!put_compact_ms)
		return;
	c->on = true;
	c->b = b;
	c->kc = bench_conn(b, 0);
	kvc_call_init(&c->call);
	c->call.data = c;
	c->call.timeout_ms = 10000;
	uv_timer_init(b->loop, &c->timer);
	c->timer.data = c;
	uv_timer_start(&c->timer, compact_timer_cb, put_compact_ms, put_compact_ms);
}

static void compact_stop(struct compactor *c)
{
	if (!c->on)
		return;
	c->on = false;
	kvc_call_cancel(&c->call);
	bench_close(c->b, (uv_handle_t *)&c->timer);
}

/* --- the command ---------------------------------------------------------------- */

static int put_run(struct bench *b, int argc, char **argv)
{
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	uint8_t *key = malloc((size_t)put_key_size), *val = malloc((size_t)put_val_size + 1);
	struct unary_spec spec = {.method = &kvc_kv_put};
	struct compactor comp;
	struct report r;
	struct tmpl t;
	json_t *extra;
	int rv = BENCH_EXIT_FAIL;

	(void)argc;
	(void)argv;
	if (!key || !val || key_check_space((size_t)put_key_size, (uint64_t)put_space,
					    "--key-space-size"))
		goto out_free;
	rnd_bytes(val, (size_t)put_val_size);
	req.key.data = key;
	req.key.len = (size_t)put_key_size;
	req.value.data = val;
	req.value.len = (size_t)put_val_size;
	if (tmpl_build(&t, &req.base, key, (size_t)put_key_size)) {
		bench_err("cannot build the put request");
		goto out_free;
	}
	spec.total = (uint64_t)put_total;
	spec.rate = (uint64_t)put_rate;
	spec.tmpl = &t;
	spec.key_index = put_key_index;

	report_init(&r, (size_t)put_total, b->sample);
	compact_start(&comp, b);
	if (unary_run(b, &spec, &r) == 0) {
		report_print(&r, stdout, b->precise);
		extra = json_pack("{s:I, s:I, s:I, s:b}", "key_size", (json_int_t)put_key_size,
				  "val_size", (json_int_t)put_val_size, "key_space_size",
				  (json_int_t)put_space, "sequential_keys", put_seq);
		rv = report_json(&r, b, "put", extra) || r.errors ? BENCH_EXIT_FAIL : BENCH_EXIT_OK;
	}
	compact_stop(&comp);
	report_free(&r);
	tmpl_free(&t);
out_free:
	free(key);
	free(val);
	return rv;
}

const struct bench_cmd bench_cmd_put = {
	.name = "put",
	.summary = "Benchmark put",
	.max_args = 0,
	.flags = put_flags,
	.run = put_run,
};
