/*
 * txn-put: etcd's `benchmark txn-put`.  --total Txn requests with no
 * compare and --txn-ops puts in their success branch; put j of txn i
 * writes key (i * txn-ops + j) mod --key-space-size, as etcd's tool.  The
 * Txn is encoded once; each request rewrites its txn-ops key slots.
 */
#include "bench.h"

#include <jansson.h>
#include <stdlib.h>

static int64_t txn_key_size = 8, txn_val_size = 8, txn_total = 10000, txn_rate;
static int64_t txn_space = 1, txn_ops = 1;

static const struct flag txn_flags[] = {
	{"key-size", FLAG_INT, &txn_key_size, 1, 1 << 20, "key size of txn put (default 8)"},
	{"val-size", FLAG_INT, &txn_val_size, 0, 1 << 30, "value size of txn put (default 8)"},
	{"txn-ops", FLAG_INT, &txn_ops, 1, 1 << 16, "number of puts per txn (default 1)"},
	{"rate", FLAG_INT, &txn_rate, 0, INT64_MAX, "maximum txns per second (0 is no limit)"},
	{"total", FLAG_INT, &txn_total, 0, INT64_MAX, "total number of txn requests (default 10000)"},
	{"key-space-size", FLAG_INT, &txn_space, 1, INT64_MAX, "maximum possible keys (default 1)"},
	{NULL, 0, NULL, 0, 0, NULL},
};

static uint64_t txn_key_index(void *ud, uint64_t i, size_t s)
{
	(void)ud;
	return (i * (uint64_t)txn_ops + s) % (uint64_t)txn_space;
}

static int txn_run(struct bench *b, int argc, char **argv)
{
	Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	size_t n = (size_t)txn_ops;
	Etcdserverpb__RequestOp **ops = calloc(n, sizeof(*ops));
	uint8_t *key = malloc((size_t)txn_key_size), *val = malloc((size_t)txn_val_size + 1);
	struct unary_spec spec = {.method = &kvc_kv_txn};
	struct report r;
	struct tmpl t;
	json_t *extra;
	int rv = BENCH_EXIT_FAIL;

	(void)argc;
	(void)argv;
	if (!ops || !key || !val ||
	    key_check_space((size_t)txn_key_size, (uint64_t)txn_space, "--key-space-size"))
		goto out_free;
	rnd_bytes(val, (size_t)txn_val_size);
	put.key.data = key;
	put.key.len = (size_t)txn_key_size;
	put.value.data = val;
	put.value.len = (size_t)txn_val_size;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op.request_put = &put;
	for (size_t i = 0; i < n; i++)
		ops[i] = &op; /* the same op n times: n key slots, in order */
	req.n_success = n;
	req.success = ops;
	if (tmpl_build(&t, &req.base, key, (size_t)txn_key_size) || t.n_slots != n) {
		bench_err("cannot build the txn request");
		goto out_free;
	}
	spec.total = (uint64_t)txn_total;
	spec.rate = (uint64_t)txn_rate;
	spec.tmpl = &t;
	spec.key_index = txn_key_index;

	report_init(&r, (size_t)txn_total, b->sample);
	if (unary_run(b, &spec, &r) == 0) {
		report_print(&r, stdout, b->precise);
		extra = json_pack("{s:I, s:I, s:I, s:I}", "key_size", (json_int_t)txn_key_size,
				  "val_size", (json_int_t)txn_val_size, "key_space_size",
				  (json_int_t)txn_space, "txn_ops", (json_int_t)txn_ops);
		rv = report_json(&r, b, "txn-put", extra) || r.errors ? BENCH_EXIT_FAIL
								       : BENCH_EXIT_OK;
	}
	report_free(&r);
	tmpl_free(&t);
out_free:
	free(ops);
	free(key);
	free(val);
	return rv;
}

const struct bench_cmd bench_cmd_txn_put = {
	.name = "txn-put",
	.summary = "Benchmark txn-put",
	.flags = txn_flags,
	.run = txn_run,
};
