/*
 * Unit tests for kvs (etcd's KV request semantics over mvcc) and cmd (the
 * raft entry batch format).  Expected values follow what a real etcd 3.4.23
 * answered for the same requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "rpc.pb-c.h"
#include "server/cmd.h"
#include "server/kvs.h"
#include "server/mvcc.h"

/* ---- fixture ------------------------------------------------------------ */

struct fx {
	struct mvcc *m;
	struct kvs k;
	struct kvs_lease_ops lease;
	struct arena a;
};

static int lease_exists(void *arg, int64_t id)
{
	(void)arg;
	return id == 100 || id == 200;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->m = mvcc_new();
	f->lease.exists = lease_exists;
	f->lease.arg = NULL;
	f->k.mvcc = f->m;
	f->k.lease = &f->lease;
	f->k.max_txn_ops = 128;
	arena_init(&f->a);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	arena_close(&f->a);
	mvcc_free(f->m);
	free(f);
	return 0;
}

static ProtobufCBinaryData B(const char *s)
{
	ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
	return b;
}

/* "\0" as a one-byte range end */
static ProtobufCBinaryData ZERO(void)
{
	ProtobufCBinaryData b = {1, (uint8_t *)""};
	return b;
}

static bool beq(ProtobufCBinaryData b, const char *s)
{
	return b.len == strlen(s) && (b.len == 0 || memcmp(b.data, s, b.len) == 0);
}

static int64_t do_put(struct fx *f, const char *k, const char *v)
{
	Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse out;
	r.key = B(k);
	r.value = B(v);
	assert_int_equal(kvs_check_put(&f->k, &r), 0);
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), 0);
	return out.header->revision;
}

/* Keys of a response joined by ',' */
static const char *keys_of(Mvccpb__KeyValue **kvs, size_t n)
{
	static char buf[1024];
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n; i++) {
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%.*s", i ? "," : "",
				      (int)kvs[i]->key.len, (const char *)kvs[i]->key.data);
	}
	return buf;
}

/* Packs and unpacks a message, proving the zero-copy response is valid. */
static void assert_packs(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(n ? n : 1);
	ProtobufCMessage *back;
	assert_int_equal(protobuf_c_message_pack(msg, buf), n);
	back = protobuf_c_message_unpack(msg->descriptor, NULL, n, buf);
	assert_non_null(back);
	protobuf_c_message_free_unpacked(back, NULL);
	free(buf);
}

/* ---- checks ------------------------------------------------------------- */

/* etcd's API-layer validations for Range, Put and DeleteRange. */
static void test_check_simple(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__PutRequest pr = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__DeleteRangeRequest dr = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;

	assert_int_equal(kvs_check_range(&f->k, &rr), -KV_EKEYNOTPROVIDED);
	assert_int_equal(kvs_check_put(&f->k, &pr), -KV_EKEYNOTPROVIDED);
	assert_int_equal(kvs_check_delete_range(&f->k, &dr), -KV_EKEYNOTPROVIDED);
	rr.key = pr.key = dr.key = B("k");
	assert_int_equal(kvs_check_range(&f->k, &rr), 0);
	assert_int_equal(kvs_check_delete_range(&f->k, &dr), 0);
	pr.ignore_value = true;
	pr.value = B("v");
	assert_int_equal(kvs_check_put(&f->k, &pr), -KV_EVALUEPROVIDED);
	pr.value = B("");
	assert_int_equal(kvs_check_put(&f->k, &pr), 0);
	pr.ignore_lease = true;
	pr.lease = 5;
	assert_int_equal(kvs_check_put(&f->k, &pr), -KV_ELEASEPROVIDED);
	assert_int_equal(kvs_check_compact(&f->k, &cr), 0);
}

/* ---- Range --------------------------------------------------------------- */

static void fill_abcde(struct fx *f)
{
	do_put(f, "a", "5"); /* 2 */
	do_put(f, "b", "4"); /* 3 */
	do_put(f, "c", "3"); /* 4 */
	do_put(f, "d", "2"); /* 5 */
	do_put(f, "e", "1"); /* 6 */
	do_put(f, "c", "3"); /* 7: c version 2 */
	do_put(f, "x", "out of range"); /* 8 */
}

static Etcdserverpb__RangeResponse *range(struct fx *f, Etcdserverpb__RangeRequest *r, int want)
{
	Etcdserverpb__RangeResponse *out = arena_alloc(&f->a, sizeof(*out));
	assert_int_equal(kvs_range(&f->k, r, &f->a, out), want);
	if (want == 0)
		assert_packs(&out->base);
	return out;
}

/* limit truncates and sets more; count is the whole range. */
static void test_range_limit(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *o;
	fill_abcde(f);
	r.key = B("a");
	r.range_end = B("f");
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "a,b,c,d,e");
	assert_int_equal(o->count, 5);
	assert_false(o->more);
	assert_int_equal(o->header->revision, 8);
	r.limit = 2;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "a,b");
	assert_int_equal(o->count, 5);
	assert_true(o->more);
	r.limit = 5;
	o = range(f, &r, 0);
	assert_int_equal(o->n_kvs, 5);
	assert_false(o->more);
	r.limit = -1;
	o = range(f, &r, 0);
	assert_int_equal(o->n_kvs, 5);
	/* count_only: no kvs, no more, count ignores limit */
	r.limit = 1;
	r.count_only = true;
	o = range(f, &r, 0);
	assert_int_equal(o->n_kvs, 0);
	assert_int_equal(o->count, 5);
	assert_false(o->more);
	r.count_only = false;
	/* keys_only drops values */
	r.keys_only = true;
	r.limit = 0;
	o = range(f, &r, 0);
	assert_int_equal(o->kvs[0]->value.len, 0);
	assert_int_equal(o->kvs[2]->version, 2);
	/* single key, from-key, everything */
	memset(&r, 0, sizeof(r));
	etcdserverpb__range_request__init(&r);
	r.key = B("c");
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "c");
	assert_true(beq(o->kvs[0]->value, "3"));
	assert_int_equal(o->kvs[0]->create_revision, 4);
	assert_int_equal(o->kvs[0]->mod_revision, 7);
	r.range_end = ZERO();
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "c,d,e,x");
	r.key = ZERO();
	o = range(f, &r, 0);
	assert_int_equal(o->count, 6);
	r.key = B("nokey");
	r.range_end.len = 0;
	o = range(f, &r, 0);
	assert_int_equal(o->n_kvs, 0);
	assert_int_equal(o->count, 0);
	assert_int_equal(o->header->revision, 8);
}

/* Reads at a past revision; header.revision is the current one. */
static void test_range_revision(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	Etcdserverpb__CompactionResponse co;
	Etcdserverpb__RangeResponse *o;
	fill_abcde(f);
	r.key = B("a");
	r.range_end = B("f");
	r.revision = 4;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "a,b,c");
	assert_int_equal(o->count, 3);
	assert_int_equal(o->header->revision, 8);
	r.revision = 9;
	range(f, &r, -KV_EFUTUREREV);
	r.revision = -3;
	o = range(f, &r, 0);
	assert_int_equal(o->count, 5);
	cr.revision = 5;
	assert_int_equal(kvs_compact(&f->k, &cr, &f->a, &co), 0);
	assert_int_equal(co.header->revision, 8);
	assert_int_equal(kvs_compact(&f->k, &cr, &f->a, &co), -KV_ECOMPACTED);
	cr.revision = 3;
	assert_int_equal(kvs_compact(&f->k, &cr, &f->a, &co), -KV_ECOMPACTED);
	cr.revision = 9;
	assert_int_equal(kvs_compact(&f->k, &cr, &f->a, &co), -KV_EFUTUREREV);
	r.revision = 4;
	range(f, &r, -KV_ECOMPACTED);
	r.revision = 5;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "a,b,c,d");
}

/* Sorting, etcd's defaults, and the limit applied after sorting. */
static void test_range_sort(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *o;
	fill_abcde(f);
	r.key = B("a");
	r.range_end = B("f");
	r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "e,d,c,b,a");
	r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "a,b,c,d,e");
	r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	r.limit = 2;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "e,d");
	assert_true(o->more);
	assert_int_equal(o->count, 5);
	/* ties keep key order in both directions (etcd: k3 first, then k1,k2..) */
	r.limit = 0;
	r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
	r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "c,a,b,d,e");
	r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "a,b,d,e,c");
	r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
	r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "e,d,c,b,a");
	r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "c,e,d,b,a");
	/* NONE with a target other than KEY sorts ascending... */
	r.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
	r.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "e,d,c,b,a");
	/* ...but only over the first limit+1 keys, since etcd only fetches
	 * everything when sort_order itself is set */
	r.limit = 2;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "c,b");
	assert_true(o->more);
}

/* mod/create filters apply before limit; count ignores them (etcd 3.4). */
static void test_range_filters(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *o;
	fill_abcde(f);
	r.key = B("a");
	r.range_end = B("f");
	r.min_mod_revision = 4;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "c,d,e");
	assert_int_equal(o->count, 5);
	r.limit = 1;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "c");
	assert_true(o->more);
	assert_int_equal(o->count, 5);
	r.limit = 0;
	r.max_mod_revision = 5;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "d");
	r.min_mod_revision = r.max_mod_revision = 0;
	r.min_create_revision = 3;
	r.max_create_revision = 4;
	o = range(f, &r, 0);
	assert_string_equal(keys_of(o->kvs, o->n_kvs), "b,c");
	r.count_only = true;
	o = range(f, &r, 0);
	assert_int_equal(o->count, 5);
	assert_int_equal(o->n_kvs, 0);
}

/* ---- Put / DeleteRange ------------------------------------------------- */

static void test_put(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse out;
	struct mvcc_kv kv;

	r.key = B("k");
	r.value = B("v1");
	r.prev_kv = true;
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), 0);
	assert_int_equal(out.header->revision, 2);
	assert_null(out.prev_kv);
	r.value = B("v2");
	r.lease = 100;
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), 0);
	assert_int_equal(out.header->revision, 3);
	assert_non_null(out.prev_kv);
	assert_true(beq(out.prev_kv->value, "v1"));
	assert_int_equal(out.prev_kv->version, 1);
	assert_packs(&out.base);
	/* unknown lease: error, nothing written */
	r.lease = 7;
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), -KV_ELEASENOTFOUND);
	assert_int_equal(mvcc_rev(f->m), 3);
	/* ignore_value keeps the value, takes the new lease */
	r.lease = 200;
	r.value = B("");
	r.ignore_value = true;
	r.prev_kv = false;
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), 0);
	assert_true(mvcc_get(f->m, (const uint8_t *)"k", 1, &kv));
	assert_int_equal(kv.value_len, 2);
	assert_memory_equal(kv.value, "v2", 2);
	assert_int_equal(kv.lease, 200);
	assert_int_equal(kv.version, 3);
	/* ignore_lease keeps the lease */
	r.ignore_value = false;
	r.ignore_lease = true;
	r.lease = 0;
	r.value = B("v4");
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), 0);
	assert_true(mvcc_get(f->m, (const uint8_t *)"k", 1, &kv));
	assert_int_equal(kv.lease, 200);
	assert_memory_equal(kv.value, "v4", 2);
	/* on a missing key both are "key not found" */
	r.key = B("missing");
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), -KV_EKEYNOTFOUND);
	r.ignore_lease = false;
	r.ignore_value = true;
	r.value = B("");
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), -KV_EKEYNOTFOUND);
	assert_int_equal(mvcc_rev(f->m), 5);
	/* no lease module at all: any lease is unknown */
	f->k.lease = NULL;
	r.ignore_value = false;
	r.lease = 100;
	assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), -KV_ELEASENOTFOUND);
}

static void test_delete_range(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__DeleteRangeRequest r = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__DeleteRangeResponse out;
	fill_abcde(f);
	r.key = B("b");
	r.range_end = B("d");
	r.prev_kv = true;
	assert_int_equal(kvs_delete_range(&f->k, &r, &f->a, &out), 0);
	assert_int_equal(out.deleted, 2);
	assert_int_equal(out.header->revision, 9);
	assert_string_equal(keys_of(out.prev_kvs, out.n_prev_kvs), "b,c");
	assert_true(beq(out.prev_kvs[1]->value, "3"));
	assert_int_equal(out.prev_kvs[1]->version, 2);
	assert_packs(&out.base);
	/* deleting nothing keeps the revision */
	assert_int_equal(kvs_delete_range(&f->k, &r, &f->a, &out), 0);
	assert_int_equal(out.deleted, 0);
	assert_int_equal(out.n_prev_kvs, 0);
	assert_int_equal(out.header->revision, 9);
	/* from key to the end */
	r.key = B("d");
	r.range_end = ZERO();
	r.prev_kv = false;
	assert_int_equal(kvs_delete_range(&f->k, &r, &f->a, &out), 0);
	assert_int_equal(out.deleted, 3);
	assert_int_equal(out.header->revision, 10);
	assert_int_equal(mvcc_live_keys(f->m), 1);
}

/* ---- Txn ------------------------------------------------------------------- */

/* Small builders for txn requests; everything lives in the fixture arena. */
static Etcdserverpb__RequestOp *op_put(struct fx *f, const char *k, const char *v)
{
	Etcdserverpb__RequestOp *o = arena_alloc(&f->a, sizeof(*o));
	Etcdserverpb__PutRequest *p = arena_alloc(&f->a, sizeof(*p));
	etcdserverpb__request_op__init(o);
	etcdserverpb__put_request__init(p);
	p->key = B(k);
	p->value = B(v);
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	o->request_put = p;
	return o;
}

static Etcdserverpb__RequestOp *op_del(struct fx *f, const char *k, const char *end, size_t end_len)
{
	Etcdserverpb__RequestOp *o = arena_alloc(&f->a, sizeof(*o));
	Etcdserverpb__DeleteRangeRequest *d = arena_alloc(&f->a, sizeof(*d));
	etcdserverpb__request_op__init(o);
	etcdserverpb__delete_range_request__init(d);
	d->key = B(k);
	d->range_end.data = (uint8_t *)end;
	d->range_end.len = end_len;
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	o->request_delete_range = d;
	return o;
}

static Etcdserverpb__RequestOp *op_get(struct fx *f, const char *k, int64_t rev)
{
	Etcdserverpb__RequestOp *o = arena_alloc(&f->a, sizeof(*o));
	Etcdserverpb__RangeRequest *r = arena_alloc(&f->a, sizeof(*r));
	etcdserverpb__request_op__init(o);
	etcdserverpb__range_request__init(r);
	r->key = B(k);
	r->revision = rev;
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	o->request_range = r;
	return o;
}

static Etcdserverpb__TxnRequest *txn_new(struct fx *f)
{
	Etcdserverpb__TxnRequest *t = arena_alloc(&f->a, sizeof(*t));
	etcdserverpb__txn_request__init(t);
	t->compare = arena_alloc(&f->a, 300 * sizeof(*t->compare));
	t->success = arena_alloc(&f->a, 300 * sizeof(*t->success));
	t->failure = arena_alloc(&f->a, 300 * sizeof(*t->failure));
	return t;
}

static Etcdserverpb__RequestOp *op_txn(struct fx *f, Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp *o = arena_alloc(&f->a, sizeof(*o));
	etcdserverpb__request_op__init(o);
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
	o->request_txn = t;
	return o;
}

static Etcdserverpb__Compare *cmp_new(struct fx *f, const char *k, int target, int result)
{
	Etcdserverpb__Compare *c = arena_alloc(&f->a, sizeof(*c));
	etcdserverpb__compare__init(c);
	c->key = B(k);
	c->target = target;
	c->result = result;
	return c;
}

#define T_VERSION ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION
#define T_CREATE ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE
#define T_MOD ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD
#define T_VALUE ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE
#define T_LEASE ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE
#define R_EQ ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL
#define R_GT ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER
#define R_LT ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS
#define R_NE ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL

static Etcdserverpb__Compare *cmp_int(struct fx *f, const char *k, int target, int result, int64_t v)
{
	Etcdserverpb__Compare *c = cmp_new(f, k, target, result);
	switch (target) {
	case T_VERSION:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		c->version = v;
		break;
	case T_CREATE:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		c->create_revision = v;
		break;
	case T_MOD:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		c->mod_revision = v;
		break;
	case T_LEASE:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		c->lease = v;
		break;
	}
	return c;
}

static Etcdserverpb__Compare *cmp_val(struct fx *f, const char *k, int result, const char *v)
{
	Etcdserverpb__Compare *c = cmp_new(f, k, T_VALUE, result);
	c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
	c->value = B(v);
	return c;
}

static Etcdserverpb__TxnResponse *txn_run(struct fx *f, Etcdserverpb__TxnRequest *t, int want)
{
	Etcdserverpb__TxnResponse *out = arena_alloc(&f->a, sizeof(*out));
	assert_int_equal(kvs_txn(&f->k, t, &f->a, out), want);
	if (want == 0)
		assert_packs(&out->base);
	return out;
}

/* Evaluates a single compare in a txn: 1 if it held. */
static int holds(struct fx *f, Etcdserverpb__Compare *c)
{
	Etcdserverpb__TxnRequest *t = txn_new(f);
	Etcdserverpb__TxnResponse *o;
	int64_t rev = mvcc_rev(f->m);
	t->compare[t->n_compare++] = c;
	assert_int_equal(kvs_check_txn(&f->k, t), 0);
	o = txn_run(f, t, 0);
	assert_int_equal(o->header->revision, rev);
	return o->succeeded;
}

/* Every compare target and result, missing keys, and ranges. */
static void test_txn_compare(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__PutRequest pr = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse pout;
	Etcdserverpb__Compare *c;

	fill_abcde(f); /* c: create 4, mod 7, version 2, value "3" */
	pr.key = B("l");
	pr.lease = 100;
	assert_int_equal(kvs_put(&f->k, &pr, &f->a, &pout), 0);

	assert_true(holds(f, cmp_int(f, "c", T_VERSION, R_EQ, 2)));
	assert_true(holds(f, cmp_int(f, "c", T_VERSION, R_GT, 1)));
	assert_false(holds(f, cmp_int(f, "c", T_VERSION, R_LT, 2)));
	assert_true(holds(f, cmp_int(f, "c", T_VERSION, R_NE, 3)));
	assert_true(holds(f, cmp_int(f, "c", T_CREATE, R_EQ, 4)));
	assert_true(holds(f, cmp_int(f, "c", T_MOD, R_EQ, 7)));
	assert_true(holds(f, cmp_int(f, "c", T_MOD, R_LT, 8)));
	assert_true(holds(f, cmp_int(f, "l", T_LEASE, R_EQ, 100)));
	assert_true(holds(f, cmp_int(f, "c", T_LEASE, R_EQ, 0)));
	assert_true(holds(f, cmp_val(f, "c", R_EQ, "3")));
	assert_true(holds(f, cmp_val(f, "c", R_GT, "2")));
	assert_true(holds(f, cmp_val(f, "c", R_LT, "30")));
	assert_false(holds(f, cmp_val(f, "c", R_NE, "3")));
	/* a missing key compares as zero... */
	assert_true(holds(f, cmp_int(f, "nokey", T_VERSION, R_EQ, 0)));
	assert_true(holds(f, cmp_int(f, "nokey", T_CREATE, R_EQ, 0)));
	assert_true(holds(f, cmp_int(f, "nokey", T_MOD, R_LT, 1)));
	/* ...except VALUE, which always fails */
	assert_false(holds(f, cmp_val(f, "nokey", R_NE, "x")));
	assert_false(holds(f, cmp_val(f, "nokey", R_EQ, "")));
	/* a union member not matching the target compares against 0 */
	c = cmp_int(f, "c", T_CREATE, R_GT, 0);
	c->target = T_VERSION;
	c->create_revision = 100;
	assert_true(holds(f, c));
	/* ranges: every key must satisfy */
	c = cmp_int(f, "a", T_MOD, R_LT, 8);
	c->range_end = B("f");
	assert_true(holds(f, c));
	c = cmp_int(f, "a", T_VERSION, R_EQ, 1);
	c->range_end = B("f");
	assert_false(holds(f, c));
	c = cmp_int(f, "a", T_VERSION, R_EQ, 1);
	c->range_end = B("c");
	assert_true(holds(f, c));
	c = cmp_int(f, "y", T_VERSION, R_EQ, 0);
	c->range_end = ZERO();
	assert_true(holds(f, c));
}

/* Branches, one revision for the whole txn, sub-response headers (as etcd:
 * range → revision seen, put → new revision, delete of nothing before any
 * write → old revision, nested txn → empty header), reads of own writes. */
static void test_txn_exec(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__TxnRequest *t = txn_new(f), *n = txn_new(f);
	Etcdserverpb__TxnResponse *o;
	struct mvcc_kv kv;

	do_put(f, "k1", "v"); /* 2 */
	n->success[n->n_success++] = op_put(f, "y", "");
	t->success[t->n_success++] = op_get(f, "k1", 0);
	t->success[t->n_success++] = op_put(f, "x", "1");
	t->success[t->n_success++] = op_get(f, "x", 0);
	t->success[t->n_success++] = op_del(f, "nokey", NULL, 0);
	t->success[t->n_success++] = op_txn(f, n);
	t->failure[t->n_failure++] = op_put(f, "never", "");
	assert_int_equal(kvs_check_txn(&f->k, t), 0);
	o = txn_run(f, t, 0);
	assert_true(o->succeeded);
	assert_int_equal(o->header->revision, 3);
	assert_int_equal(o->n_responses, 5);
	assert_int_equal(o->responses[0]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE);
	assert_int_equal(o->responses[0]->response_range->header->revision, 2);
	assert_int_equal(o->responses[0]->response_range->count, 1);
	assert_int_equal(o->responses[1]->response_put->header->revision, 3);
	assert_int_equal(o->responses[2]->response_range->header->revision, 3);
	assert_int_equal(o->responses[2]->response_range->n_kvs, 1);
	assert_int_equal(o->responses[2]->response_range->kvs[0]->create_revision, 3);
	assert_int_equal(o->responses[3]->response_delete_range->header->revision, 3);
	assert_int_equal(o->responses[3]->response_delete_range->deleted, 0);
	assert_int_equal(o->responses[4]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN);
	assert_int_equal(o->responses[4]->response_txn->header->revision, 0);
	assert_true(o->responses[4]->response_txn->succeeded);
	assert_int_equal(o->responses[4]->response_txn->n_responses, 1);
	assert_int_equal(o->responses[4]->response_txn->responses[0]->response_put->header->revision, 3);
	assert_true(mvcc_get(f->m, (const uint8_t *)"y", 1, &kv));
	assert_int_equal(kv.mod_rev, 3);
	assert_false(mvcc_get(f->m, (const uint8_t *)"never", 5, &kv));

	/* read-only: delete of nothing + range, no revision bump */
	t = txn_new(f);
	t->success[t->n_success++] = op_del(f, "nokey", NULL, 0);
	t->success[t->n_success++] = op_get(f, "x", 0);
	t->success[t->n_success++] = op_txn(f, txn_new(f));
	o = txn_run(f, t, 0);
	assert_int_equal(o->header->revision, 3);
	assert_int_equal(o->responses[0]->response_delete_range->header->revision, 3);
	assert_int_equal(o->responses[1]->response_range->header->revision, 3);
	assert_true(o->responses[2]->response_txn->succeeded);
	assert_int_equal(o->responses[2]->response_txn->n_responses, 0);

	/* failed compare runs the failure branch */
	t = txn_new(f);
	t->compare[t->n_compare++] = cmp_int(f, "x", T_VERSION, R_EQ, 5);
	t->success[t->n_success++] = op_put(f, "s", "");
	t->failure[t->n_failure++] = op_get(f, "x", 0);
	o = txn_run(f, t, 0);
	assert_false(o->succeeded);
	assert_int_equal(o->n_responses, 1);
	assert_int_equal(o->header->revision, 3);
	assert_true(beq(o->responses[0]->response_range->kvs[0]->value, "1"));

	/* put then delete-range covering it: one revision, two changes */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "b", "");
	t->success[t->n_success++] = op_del(f, "a", "", 1);
	o = txn_run(f, t, 0);
	assert_int_equal(o->header->revision, 4);
	assert_int_equal(o->responses[1]->response_delete_range->deleted, 4);
	assert_int_equal(mvcc_live_keys(f->m), 0);

	/* nested txns evaluate their compares on the state before the txn */
	do_put(f, "c", "1"); /* 5 */
	t = txn_new(f);
	n = txn_new(f);
	n->compare[n->n_compare++] = cmp_int(f, "c", T_VERSION, R_EQ, 1);
	n->success[n->n_success++] = op_put(f, "then", "");
	n->failure[n->n_failure++] = op_put(f, "else", "");
	t->success[t->n_success++] = op_put(f, "c", "2");
	t->success[t->n_success++] = op_txn(f, n);
	o = txn_run(f, t, 0);
	assert_true(o->responses[1]->response_txn->succeeded);
	assert_true(mvcc_get(f->m, (const uint8_t *)"then", 4, &kv));
	assert_false(mvcc_get(f->m, (const uint8_t *)"else", 4, &kv));
	assert_int_equal(kv.mod_rev, 6);
}

/* Errors found while applying fail the whole txn before any write. */
static void test_txn_apply_errors(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__TxnRequest *t;
	Etcdserverpb__RequestOp *p;
	Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	Etcdserverpb__CompactionResponse co;

	do_put(f, "a", "1"); /* 2 */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "x", "");
	p = op_put(f, "zz", "");
	p->request_put->ignore_value = true;
	t->success[t->n_success++] = p;
	txn_run(f, t, -KV_EKEYNOTFOUND);
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "x", "");
	t->success[t->n_success++] = op_get(f, "a", 100);
	txn_run(f, t, -KV_EFUTUREREV);
	t = txn_new(f);
	p = op_put(f, "zz", "");
	p->request_put->lease = 5;
	t->success[t->n_success++] = p;
	t->success[t->n_success++] = op_get(f, "a", 100);
	txn_run(f, t, -KV_ELEASENOTFOUND);
	/* etcd quirk: a negative revision is "compacted" inside a txn */
	t = txn_new(f);
	t->success[t->n_success++] = op_get(f, "a", -5);
	txn_run(f, t, -KV_ECOMPACTED);
	t = txn_new(f);
	t->success[t->n_success++] = op_get(f, "a", -1);
	txn_run(f, t, 0);
	assert_int_equal(mvcc_rev(f->m), 2);
	/* errors only count on the executed branch */
	t = txn_new(f);
	t->failure[t->n_failure++] = op_get(f, "a", 100);
	t->success[t->n_success++] = op_get(f, "a", 2);
	txn_run(f, t, 0);
	do_put(f, "a", "2"); /* 3 */
	cr.revision = 3;
	assert_int_equal(kvs_compact(&f->k, &cr, &f->a, &co), 0);
	t = txn_new(f);
	t->success[t->n_success++] = op_get(f, "a", 2);
	txn_run(f, t, -KV_ECOMPACTED);
	/* with lease 100 known, fine */
	t = txn_new(f);
	p = op_put(f, "zz", "");
	p->request_put->lease = 100;
	p->request_put->prev_kv = true;
	t->success[t->n_success++] = p;
	assert_int_equal(txn_run(f, t, 0)->header->revision, 4);
}

/* Too many ops: each list counted against the limit, nested ones get what
 * the parent's longest list leaves; empty keys and empty ops. */
static void test_txn_check_limits(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__TxnRequest *t, *n;
	char *keys = arena_alloc(&f->a, 200 * 16);

	for (int i = 0; i < 200; i++)
		snprintf(keys + i * 16, 16, "k%03u", (unsigned)i);
	t = txn_new(f);
	for (int i = 0; i < 128; i++)
		t->compare[t->n_compare++] = cmp_int(f, keys + i * 16, T_VERSION, R_EQ, 0);
	for (int i = 0; i < 128; i++)
		t->success[t->n_success++] = op_put(f, keys + i * 16, "");
	for (int i = 0; i < 128; i++)
		t->failure[t->n_failure++] = op_get(f, keys + i * 16, 0);
	assert_int_equal(kvs_check_txn(&f->k, t), 0);
	t->compare[t->n_compare++] = cmp_int(f, "x", T_VERSION, R_EQ, 0);
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_ETOOMANYOPS);
	t->n_compare--;
	t->failure[t->n_failure++] = op_get(f, "x", 0);
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_ETOOMANYOPS);
	f->k.max_txn_ops = 0; /* unset: etcd's default 128 */
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_ETOOMANYOPS);
	f->k.max_txn_ops = 129;
	assert_int_equal(kvs_check_txn(&f->k, t), 0);
	f->k.max_txn_ops = 4;
	/* nested: parent's longest list is 2, so the child may hold 2 */
	t = txn_new(f);
	n = txn_new(f);
	t->success[t->n_success++] = op_get(f, "a", 0);
	t->success[t->n_success++] = op_txn(f, n);
	n->success[n->n_success++] = op_get(f, "a", 0);
	n->success[n->n_success++] = op_get(f, "b", 0);
	assert_int_equal(kvs_check_txn(&f->k, t), 0);
	n->success[n->n_success++] = op_get(f, "c", 0);
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_ETOOMANYOPS);
	f->k.max_txn_ops = 128;
	/* empty keys anywhere */
	t = txn_new(f);
	t->compare[t->n_compare++] = cmp_int(f, "", T_VERSION, R_EQ, 0);
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_EKEYNOTPROVIDED);
	t = txn_new(f);
	n = txn_new(f);
	n->failure[n->n_failure++] = op_del(f, "", NULL, 0);
	t->failure[t->n_failure++] = op_txn(f, n);
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_EKEYNOTPROVIDED);
	assert_int_equal(kvs_txn(&f->k, t, &f->a, arena_alloc(&f->a, sizeof(Etcdserverpb__TxnResponse))),
			 -KV_EKEYNOTPROVIDED);
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "k", "v");
	t->success[0]->request_put->ignore_value = true;
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_EVALUEPROVIDED);
	/* an op with nothing set */
	t = txn_new(f);
	t->success[t->n_success] = op_get(f, "a", 0);
	t->success[t->n_success++]->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST__NOT_SET;
	assert_int_equal(kvs_check_txn(&f->k, t), -KV_EKEYNOTFOUND);
}

static int dup_check(struct fx *f, Etcdserverpb__TxnRequest *t)
{
	return kvs_check_txn(&f->k, t);
}

/* etcd's checkIntervals, case by case (each verified against etcd 3.4). */
static void test_txn_check_duplicates(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__TxnRequest *t, *n1, *n2;

	/* put + put of the same key */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "a", "");
	t->success[t->n_success++] = op_put(f, "a", "");
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* the same key in success and failure is fine */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "a", "");
	t->failure[t->n_failure++] = op_put(f, "a", "");
	assert_int_equal(dup_check(f, t), 0);
	/* put inside a deleted range */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "b", "");
	t->success[t->n_success++] = op_del(f, "a", "c", 1);
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* range_end "\0" makes an empty interval in etcd: no conflict */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "b", "");
	t->success[t->n_success++] = op_del(f, "a", "", 1);
	assert_int_equal(dup_check(f, t), 0);
	/* range end before key: empty too */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "b", "");
	t->success[t->n_success++] = op_del(f, "c", "a", 1);
	assert_int_equal(dup_check(f, t), 0);
	/* put at the exclusive end of a range is fine */
	t = txn_new(f);
	t->success[t->n_success++] = op_put(f, "c", "");
	t->success[t->n_success++] = op_del(f, "a", "c", 1);
	assert_int_equal(dup_check(f, t), 0);
	/* two deletes of the same key are fine */
	t = txn_new(f);
	t->success[t->n_success++] = op_del(f, "b", NULL, 0);
	t->success[t->n_success++] = op_del(f, "b", NULL, 0);
	t->success[t->n_success++] = op_del(f, "a", "z", 1);
	assert_int_equal(dup_check(f, t), 0);
	/* single-key delete vs put of a longer key */
	t = txn_new(f);
	t->success[t->n_success++] = op_del(f, "b", NULL, 0);
	t->success[t->n_success++] = op_put(f, "b\x01", "");
	assert_int_equal(dup_check(f, t), 0);
	t->success[t->n_success++] = op_put(f, "b", "");
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* nested put vs put at this level */
	t = txn_new(f);
	n1 = txn_new(f);
	n1->success[n1->n_success++] = op_put(f, "a", "");
	t->success[t->n_success++] = op_txn(f, n1);
	t->success[t->n_success++] = op_put(f, "a", "");
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* nested then and else may both put the key */
	t = txn_new(f);
	n1 = txn_new(f);
	n1->success[n1->n_success++] = op_put(f, "a", "");
	n1->failure[n1->n_failure++] = op_put(f, "a", "");
	t->success[t->n_success++] = op_txn(f, n1);
	assert_int_equal(dup_check(f, t), 0);
	/* but not two different nested txns */
	n2 = txn_new(f);
	n2->failure[n2->n_failure++] = op_put(f, "a", "");
	t->success[t->n_success++] = op_txn(f, n2);
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* nested put vs delete at this level */
	t = txn_new(f);
	n1 = txn_new(f);
	n1->success[n1->n_success++] = op_put(f, "b", "");
	t->success[t->n_success++] = op_txn(f, n1);
	t->success[t->n_success++] = op_del(f, "a", "c", 1);
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* etcd's order quirk: {put b} then {del b} in sibling txns passes... */
	t = txn_new(f);
	n1 = txn_new(f);
	n2 = txn_new(f);
	n1->success[n1->n_success++] = op_put(f, "b", "");
	n2->success[n2->n_success++] = op_del(f, "b", NULL, 0);
	t->success[t->n_success++] = op_txn(f, n1);
	t->success[t->n_success++] = op_txn(f, n2);
	assert_int_equal(dup_check(f, t), 0);
	/* ...and executes as put then delete in one revision */
	Etcdserverpb__TxnResponse *o = txn_run(f, t, 0);
	assert_int_equal(o->header->revision, 2);
	assert_int_equal(o->responses[1]->response_txn->responses[0]->response_delete_range->deleted, 1);
	/* ...while {del b} then {put b} is a duplicate */
	t = txn_new(f);
	t->success[t->n_success++] = op_txn(f, n2);
	t->success[t->n_success++] = op_txn(f, n1);
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* nested delete vs put at this level */
	t = txn_new(f);
	t->success[t->n_success++] = op_txn(f, n2);
	t->success[t->n_success++] = op_put(f, "b", "");
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* failure branch is checked too */
	t = txn_new(f);
	t->failure[t->n_failure++] = op_put(f, "q", "");
	t->failure[t->n_failure++] = op_put(f, "q", "");
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
	/* overlapping deletes merge correctly */
	t = txn_new(f);
	t->success[t->n_success++] = op_del(f, "m", "p", 1);
	t->success[t->n_success++] = op_del(f, "b", "d", 1);
	t->success[t->n_success++] = op_del(f, "c", "n", 1);
	t->success[t->n_success++] = op_put(f, "a", "");
	t->success[t->n_success++] = op_put(f, "p", "");
	assert_int_equal(dup_check(f, t), 0);
	t->success[t->n_success++] = op_put(f, "h", "");
	assert_int_equal(dup_check(f, t), -KV_EDUPLICATEKEY);
}

/* Many distinct puts and deletes in one txn stay fast (no quadratic path). */
static void test_txn_check_large(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__TxnRequest *t = arena_alloc(&f->a, sizeof(*t));
	int n = 20000;
	char *keys = arena_alloc(&f->a, (size_t)n * 2 * 16);

	etcdserverpb__txn_request__init(t);
	t->success = arena_alloc(&f->a, (size_t)n * 2 * sizeof(*t->success));
	for (int i = 0; i < n; i++) {
		char *k = keys + i * 32, *e = k + 16;
		snprintf(k, 16, "p%08u", (unsigned)i);
		snprintf(e, 16, "d%08u", (unsigned)i);
		t->success[t->n_success++] = op_put(f, k, "");
		t->success[t->n_success++] = op_del(f, e, NULL, 0);
	}
	f->k.max_txn_ops = (unsigned)n * 2;
	assert_int_equal(kvs_check_txn(&f->k, t), 0);
	txn_run(f, t, 0);
	assert_int_equal(mvcc_live_keys(f->m), (uint64_t)n);
}

static size_t put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* A TxnRequest nested `depth` levels deep, serialized by hand. */
static uint8_t *deep_txn(int depth, size_t *len)
{
	size_t cap = (size_t)depth * 12 + 16, n = 0;
	uint8_t *buf = malloc(cap), *tmp = malloc(cap);
	for (int i = 0; i < depth; i++) {
		size_t m = 0;
		tmp[m++] = 0x22; /* RequestOp.request_txn */
		m += put_varint(tmp + m, n);
		memcpy(tmp + m, buf, n);
		m += n;
		n = 0;
		buf[n++] = 0x12; /* TxnRequest.success */
		n += put_varint(buf + n, m);
		memcpy(buf + n, tmp, m);
		n += m;
	}
	free(tmp);
	*len = n;
	return buf;
}

/* The wire pre-check refuses deep nesting (which would overflow
 * protobuf-c's recursive unpack) and malformed bytes, accepts real txns. */
static void test_txn_wire_check(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__TxnRequest *t = txn_new(f), *n = txn_new(f), *back;
	uint8_t *buf, junk[64];
	size_t len;
	uint64_t s = 99;

	t->compare[t->n_compare++] = cmp_val(f, "a", R_EQ, "x");
	n->success[n->n_success++] = op_put(f, "b", "v");
	n->failure[n->n_failure++] = op_del(f, "c", "d", 1);
	t->success[t->n_success++] = op_txn(f, n);
	t->failure[t->n_failure++] = op_get(f, "a", 3);
	len = etcdserverpb__txn_request__get_packed_size(t);
	buf = malloc(len);
	etcdserverpb__txn_request__pack(t, buf);
	assert_int_equal(kvs_check_txn_wire(buf, len), 0);
	/* on every prefix: whatever protobuf-c accepts, the scan accepts */
	for (size_t i = 1; i < len; i++) {
		int rv = kvs_check_txn_wire(buf, i);
		back = etcdserverpb__txn_request__unpack(NULL, i, buf);
		if (back != NULL) {
			assert_int_equal(rv, 0);
			etcdserverpb__txn_request__free_unpacked(back, NULL);
		}
	}
	free(buf);
	assert_int_equal(kvs_check_txn_wire(NULL, 0), 0);
	buf = deep_txn(KVS_MAX_TXN_DEPTH, &len);
	assert_int_equal(kvs_check_txn_wire(buf, len), 0);
	back = etcdserverpb__txn_request__unpack(NULL, len, buf);
	assert_non_null(back);
	assert_int_equal(kvs_check_txn(&f->k, back), -KV_ETOOMANYOPS);
	etcdserverpb__txn_request__free_unpacked(back, NULL);
	free(buf);
	buf = deep_txn(KVS_MAX_TXN_DEPTH + 1, &len);
	assert_int_equal(kvs_check_txn_wire(buf, len), -KV_ETOOMANYOPS);
	free(buf);
	buf = deep_txn(100000, &len);
	assert_int_equal(kvs_check_txn_wire(buf, len), -KV_ETOOMANYOPS);
	buf[len - 1] = 0x80; /* cut short */
	assert_int_equal(kvs_check_txn_wire(buf + len - 1, 1), -KV_EMALFORMED);
	free(buf);
	junk[0] = 0x0b; /* field 1, wire type 3 (group) */
	assert_int_equal(kvs_check_txn_wire(junk, 1), -KV_EMALFORMED);
	for (int i = 0; i < 20000; i++) {
		size_t jl = (size_t)(s % sizeof(junk));
		for (size_t j = 0; j < jl; j++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			junk[j] = (uint8_t)(s >> 59) ? (uint8_t)(s >> 56) : 0x12;
		}
		if (kvs_check_txn_wire(junk, jl) == 0) {
			back = etcdserverpb__txn_request__unpack(NULL, jl, junk);
			if (back)
				etcdserverpb__txn_request__free_unpacked(back, NULL);
		}
		s += 3;
	}
}

/* ---- cmd ------------------------------------------------------------------- */

/* A batch round-trips; every truncation and corruption is refused. */
static void test_cmd_batch(void **state)
{
	struct cmd_batch b;
	struct cmd_iter it;
	struct cmd c;
	uint8_t *data;
	size_t len;
	uint8_t payload[300];
	(void)state;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	cmd_batch_init(&b);
	for (uint32_t i = 0; i < 50; i++) {
		struct cmd in = {.type = (uint8_t)(1 + i % 4),
				 .origin = 0x1122334455667788ull + i,
				 .seq = i * 1000,
				 .payload = payload,
				 .len = i * 6};
		assert_int_equal(cmd_batch_add(&b, &in), 0);
	}
	struct cmd bad = {.type = 0};
	assert_int_equal(cmd_batch_add(&b, &bad), -KV_EINVAL);
	bad.type = CMD__MAX;
	assert_int_equal(cmd_batch_add(&b, &bad), -KV_EINVAL);
	assert_int_equal(cmd_batch_take(&b, &data, &len), 0);
	assert_int_equal(b.count, 0);
	assert_null(b.data);
	assert_memory_equal(data, "RKV1", 4);
	assert_int_equal(data[4], 50);
	assert_int_equal(cmd_iter_init(&it, data, len), 0);
	for (uint32_t i = 0; i < 50; i++) {
		assert_int_equal(cmd_iter_next(&it, &c), 1);
		assert_int_equal(c.type, 1 + i % 4);
		assert_true(c.origin == 0x1122334455667788ull + i);
		assert_int_equal(c.seq, i * 1000);
		assert_int_equal(c.len, i * 6);
		assert_memory_equal(c.payload, payload, c.len);
	}
	assert_int_equal(cmd_iter_next(&it, &c), 0);
	/* little-endian on the wire: first command's origin */
	assert_int_equal(data[CMD_ENTRY_HEADER + 1], 0x88);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(cmd_iter_init(&it, data, n), -KV_ECORRUPT);
	data = realloc(data, len + 1);
	data[len] = 0;
	assert_int_equal(cmd_iter_init(&it, data, len + 1), -KV_ECORRUPT);
	data[0] = 'X';
	assert_int_equal(cmd_iter_init(&it, data, len), -KV_ECORRUPT);
	data[0] = 'R';
	data[CMD_ENTRY_HEADER + 17] = 0xff; /* first command's length */
	assert_int_equal(cmd_iter_init(&it, data, len), -KV_ECORRUPT);
	data[CMD_ENTRY_HEADER + 17] = 0;
	data[4] = 0xff;
	data[5] = 0xff; /* count */
	assert_int_equal(cmd_iter_init(&it, data, len), -KV_ECORRUPT);
	free(data);
	/* random garbage never crashes */
	uint64_t s = 12345;
	uint8_t junk[64];
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(s % sizeof(junk));
		for (size_t j = 0; j < n; j++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			junk[j] = (uint8_t)(s >> 56) & (i % 2 ? 0x03 : 0xff);
		}
		if (n >= 4)
			memcpy(junk, "RKV1", 4);
		if (cmd_iter_init(&it, junk, n) == 0)
			while (cmd_iter_next(&it, &c) == 1)
				assert_true(c.payload + c.len <= junk + n);
		s += 7;
	}
	/* an empty batch is a valid entry with no commands */
	cmd_batch_init(&b);
	assert_int_equal(cmd_batch_take(&b, &data, &len), 0);
	assert_int_equal(len, CMD_ENTRY_HEADER);
	assert_int_equal(cmd_iter_init(&it, data, len), 0);
	assert_int_equal(cmd_iter_next(&it, &c), 0);
	free(data);
	cmd_batch_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_check_simple, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_revision, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_sort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_compare, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_exec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_apply_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_check_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_check_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_check_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_wire_check, setup, teardown),
		cmocka_unit_test(test_cmd_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
