/*
 * Unit tests for the lease table (lease.c) and its kvs hooks: grant and
 * server-chosen IDs, revoke (one revision for all keys), attach/detach
 * through Put/DeleteRange/Txn, leader-only expiry in deadline order, the
 * snapshot image (round trip, canonical bytes, mutated and crafted images).
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
#include "server/kvs.h"
#include "server/lease.h"
#include "server/mvcc.h"

#define S(x) (const uint8_t *)(x), strlen(x)
/* The table counts time in microseconds. */
#define MS(x) ((uint64_t)(x) * 1000u)

struct fx {
	struct mvcc *m;
	struct lease_table *t;
	struct kvs k;
	struct arena a;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->m = mvcc_new();
	f->t = lease_table_new();
	assert_non_null(f->m);
	assert_non_null(f->t);
	f->k.mvcc = f->m;
	f->k.lease = lease_table_kvs_ops(f->t);
	f->k.max_txn_ops = 128;
	arena_init(&f->a);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	arena_close(&f->a);
	lease_table_free(f->t);
	mvcc_free(f->m);
	free(f);
	return 0;
}

static ProtobufCBinaryData B(const char *s)
{
	ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
	return b;
}

static int64_t grant(struct fx *f, int64_t id, int64_t ttl)
{
	int64_t got, gttl;
	assert_int_equal(lease_table_grant(f->t, id, ttl, 1, 10, 0, &got, &gttl), 0);
	return got;
}

static int put_lease(struct fx *f, const char *k, const char *v, int64_t lease)
{
	Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse out;
	r.key = B(k);
	r.value = B(v);
	r.lease = lease;
	return kvs_put(&f->k, &r, &f->a, &out);
}

static int del_range(struct fx *f, const char *k, const char *end)
{
	Etcdserverpb__DeleteRangeRequest r = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__DeleteRangeResponse out;
	r.key = B(k);
	if (end)
		r.range_end = B(end);
	return kvs_delete_range(&f->k, &r, &f->a, &out);
}

struct keys {
	char v[16][32];
	int n;
};

static void collect_key(void *arg, const uint8_t *key, size_t len)
{
	struct keys *k = arg;
	assert_true(k->n < 16 && len < 32);
	memcpy(k->v[k->n], key, len);
	k->v[k->n][len] = '\0';
	k->n++;
}

/* The keys of a lease joined with ',' (in key order). */
static const char *keys_of(struct fx *f, int64_t id)
{
	static char buf[512];
	struct keys k;
	memset(&k, 0, sizeof(k));
	lease_table_keys(f->t, id, collect_key, &k);
	buf[0] = '\0';
	for (int i = 0; i < k.n; i++) {
		if (i)
			strcat(buf, ",");
		strcat(buf, k.v[i]);
	}
	return buf;
}

/* ---- grant ---------------------------------------------------------------- */

static void test_min_ttl(void **state)
{
	(void)state;
	assert_int_equal(lease_min_ttl(100, 1000), 2); /* etcd defaults: 1.5 s -> 2 */
	assert_int_equal(lease_min_ttl(100, 500), 1);  /* 7 ticks * 100 ms */
	assert_int_equal(lease_min_ttl(50, 5000), 8);  /* 150 * 50 ms = 7.5 s */
	assert_int_equal(lease_min_ttl(0, 0), 1);
}

static void test_grant(void **state)
{
	struct fx *f = *state;
	int64_t id, ttl;
	struct lease_info info;

	assert_int_equal(lease_table_grant(f->t, 1000, 60, 1, 5, 0, &id, &ttl), 0);
	assert_int_equal(id, 1000);
	assert_int_equal(ttl, 60);
	assert_true(lease_table_exists(f->t, 1000));
	assert_false(lease_table_exists(f->t, 1001));
	assert_int_equal(lease_table_grant(f->t, 1000, 30, 1, 6, 0, &id, &ttl), -KV_ELEASEEXIST);
	assert_int_equal(lease_table_grant(f->t, 7, LEASE_MAX_TTL + 1, 1, 6, 0, &id, &ttl),
			 -KV_ELEASETTLTOOLARGE);
	/* TTL too large is checked before existence, as etcd */
	assert_int_equal(lease_table_grant(f->t, 1000, LEASE_MAX_TTL + 1, 1, 6, 0, &id, &ttl),
			 -KV_ELEASETTLTOOLARGE);
	assert_int_equal(lease_table_grant(f->t, 8, LEASE_MAX_TTL, 1, 6, 0, &id, &ttl), 0);
	assert_int_equal(lease_table_grant(f->t, -5, -3, 1, 6, 0, &id, &ttl), 0);
	assert_int_equal(id, -5);
	assert_int_equal(ttl, 1);
	assert_int_equal(lease_table_count(f->t), 3);
	assert_true(lease_table_get(f->t, 1000, &info));
	assert_int_equal(info.ttl, 60);
	assert_true(info.expiry_us == LEASE_FOREVER); /* not primary */
	assert_int_equal(info.nkeys, 0);
}

static void test_auto_id(void **state)
{
	struct fx *f = *state;
	struct lease_table *t2 = lease_table_new(), *t3 = lease_table_new();
	int64_t a[4], b[4], ttl, clash, next;

	/* Same entries on two members: same IDs, whoever proposed them. */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(lease_table_grant(f->t, 0, 10, 0x8e9e05c52164694dULL, 42 + i / 2, 0,
						   &a[i], &ttl), 0);
		assert_int_equal(lease_table_grant(t2, 0, 10, 7, 42 + i / 2, 0, &b[i], &ttl), 0);
		assert_true(a[i] > 0);
		assert_int_equal(a[i], b[i]);
		for (int j = 0; j < i; j++)
			assert_true(a[i] != a[j]);
	}
	/* Many per entry and many entries: all distinct (a bijection). */
	{
		enum { N = 20000 };
		int64_t *v = malloc(N * sizeof(*v));
		for (int i = 0; i < N; i++) {
			assert_int_equal(lease_table_grant(t3, 0, 10, 1, 1000 + i / 5000, 0, &v[i],
							   &ttl), 0);
			assert_true(v[i] > 0);
		}
		assert_int_equal(lease_table_count(t3), N);
		free(v);
	}
	/* A client took the next candidate: the server's choice moves on. */
	lease_table_free(t2);
	t2 = lease_table_new();
	assert_int_equal(lease_table_grant(t2, 0, 10, 1, 50, 0, &clash, &ttl), 0);
	assert_int_equal(lease_table_grant(f->t, clash, 10, 1, 49, 0, &next, &ttl), 0);
	assert_int_equal(lease_table_grant(f->t, 0, 10, 1, 50, 0, &next, &ttl), 0);
	assert_true(next != clash);
	assert_int_equal(next, clash + 1);
	/* Another cluster (salt) gives other IDs; the same cluster the same. */
	lease_table_free(t2);
	lease_table_free(t3);
	t2 = lease_table_new();
	t3 = lease_table_new();
	lease_table_set_id_salt(t2, 0x6c438ba6ce8a0f60ULL);
	lease_table_set_id_salt(t3, 0x6c438ba6ce8a0f60ULL);
	lease_table_set_id_salt(f->t, 0x31ab9f8ee422d9abULL);
	assert_int_equal(lease_table_grant(t2, 0, 10, 1, 7, 0, &a[0], &ttl), 0);
	assert_int_equal(lease_table_grant(t3, 0, 10, 1, 7, 0, &a[1], &ttl), 0);
	assert_int_equal(lease_table_grant(f->t, 0, 10, 1, 7, 0, &a[2], &ttl), 0);
	assert_int_equal(a[0], a[1]);
	assert_true(a[0] != a[2]);
	assert_true(a[0] > 0 && a[2] > 0);
	lease_table_free(t2);
	lease_table_free(t3);
}

/* ---- attach / detach through kvs ------------------------------------------ */

static void test_attach_detach(void **state)
{
	struct fx *f = *state;
	int64_t l1 = grant(f, 100, 60), l2 = grant(f, 200, 60);
	struct mvcc_kv kv;

	assert_int_equal(put_lease(f, "a", "1", l1), 0);
	assert_int_equal(put_lease(f, "b", "1", l1), 0);
	assert_int_equal(put_lease(f, "c", "1", l2), 0);
	assert_int_equal(put_lease(f, "d", "1", 0), 0);
	assert_string_equal(keys_of(f, l1), "a,b");
	assert_string_equal(keys_of(f, l2), "c");
	assert_int_equal(lease_table_attached_keys(f->t), 3);
	/* unknown lease */
	assert_int_equal(put_lease(f, "e", "1", 999), -KV_ELEASENOTFOUND);
	/* re-put with the same lease: still once */
	assert_int_equal(put_lease(f, "a", "2", l1), 0);
	assert_string_equal(keys_of(f, l1), "a,b");
	/* move b to l2, drop a's lease */
	assert_int_equal(put_lease(f, "b", "2", l2), 0);
	assert_int_equal(put_lease(f, "a", "3", 0), 0);
	assert_string_equal(keys_of(f, l1), "");
	assert_string_equal(keys_of(f, l2), "b,c");
	/* ignore_lease keeps the key's lease */
	{
		Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
		Etcdserverpb__PutResponse out;
		r.key = B("c");
		r.value = B("9");
		r.ignore_lease = 1;
		assert_int_equal(kvs_put(&f->k, &r, &f->a, &out), 0);
		assert_true(mvcc_get(f->m, S("c"), &kv));
		assert_int_equal(kv.lease, l2);
	}
	assert_string_equal(keys_of(f, l2), "b,c");
	/* delete detaches */
	assert_int_equal(del_range(f, "c", NULL), 0);
	assert_string_equal(keys_of(f, l2), "b");
	assert_int_equal(put_lease(f, "x1", "1", l1), 0);
	assert_int_equal(put_lease(f, "x2", "1", l1), 0);
	assert_int_equal(put_lease(f, "y", "1", l1), 0);
	assert_int_equal(del_range(f, "x", "y"), 0);
	assert_string_equal(keys_of(f, l1), "y");
	assert_int_equal(lease_table_attached_keys(f->t), 2);
}

static void test_txn_attach(void **state)
{
	struct fx *f = *state;
	int64_t l1 = grant(f, 100, 60);
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__TxnResponse out;
	Etcdserverpb__RequestOp op[2], *ops[2];
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;

	assert_int_equal(put_lease(f, "old", "1", l1), 0);
	p.key = B("new");
	p.value = B("v");
	p.lease = l1;
	d.key = B("old");
	etcdserverpb__request_op__init(&op[0]);
	op[0].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op[0].request_put = &p;
	etcdserverpb__request_op__init(&op[1]);
	op[1].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	op[1].request_delete_range = &d;
	ops[0] = &op[0];
	ops[1] = &op[1];
	txn.success = ops;
	txn.n_success = 2;
	assert_int_equal(kvs_txn(&f->k, &txn, &f->a, &out), 0);
	assert_string_equal(keys_of(f, l1), "new");
	/* unknown lease inside a txn: nothing applied */
	p.key = B("other");
	p.lease = 4242;
	txn.n_success = 1;
	assert_int_equal(kvs_txn(&f->k, &txn, &f->a, &out), -KV_ELEASENOTFOUND);
	assert_string_equal(keys_of(f, l1), "new");
}

/* ---- revoke ---------------------------------------------------------------- */

static void test_revoke_one_revision(void **state)
{
	struct fx *f = *state;
	int64_t l1 = grant(f, 100, 60), l2 = grant(f, 200, 60), rev;
	struct mvcc_kv kv;

	assert_int_equal(put_lease(f, "k2", "v", l1), 0);
	assert_int_equal(put_lease(f, "k1", "v", l1), 0);
	assert_int_equal(put_lease(f, "k3", "v", l1), 0);
	assert_int_equal(put_lease(f, "keep", "v", 0), 0);
	rev = mvcc_rev(f->m);
	assert_int_equal(lease_table_revoke(f->t, f->m, l1), 0);
	assert_int_equal(mvcc_rev(f->m), rev + 1);
	assert_false(mvcc_get(f->m, S("k1"), &kv));
	assert_false(mvcc_get(f->m, S("k2"), &kv));
	assert_false(mvcc_get(f->m, S("k3"), &kv));
	assert_true(mvcc_get(f->m, S("keep"), &kv));
	assert_false(lease_table_exists(f->t, l1));
	assert_int_equal(lease_table_attached_keys(f->t), 0);
	assert_int_equal(lease_table_revoke(f->t, f->m, l1), -KV_ELEASENOTFOUND);
	/* no keys: no revision */
	assert_int_equal(lease_table_revoke(f->t, f->m, l2), 0);
	assert_int_equal(mvcc_rev(f->m), rev + 1);
	assert_int_equal(lease_table_count(f->t), 0);
}

struct change {
	char key[8];
	int64_t rev;
	uint32_t sub;
	int tomb;
};

struct changes {
	struct change v[16];
	int n;
};

static void on_change(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev, uint32_t sub)
{
	struct changes *c = arg;
	(void)prev;
	memcpy(c->v[c->n].key, kv->key, kv->key_len);
	c->v[c->n].key[kv->key_len] = '\0';
	c->v[c->n].rev = kv->mod_rev;
	c->v[c->n].sub = sub;
	c->v[c->n].tomb = kv->version == 0;
	c->n++;
}

/* Deletes in key order: same sub-revisions on every member. */
static void test_revoke_key_order(void **state)
{
	struct fx *f = *state;
	int64_t l1 = grant(f, 100, 60), rev;
	struct changes c;
	static const uint8_t all[1] = {0};

	assert_int_equal(put_lease(f, "b", "v", l1), 0);
	assert_int_equal(put_lease(f, "c", "v", l1), 0);
	assert_int_equal(put_lease(f, "a", "v", l1), 0);
	rev = mvcc_rev(f->m) + 1;
	assert_int_equal(lease_table_revoke(f->t, f->m, l1), 0);
	memset(&c, 0, sizeof(c));
	mvcc_changes(f->m, all, 1, all, 1, rev, rev, on_change, &c);
	assert_int_equal(c.n, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c.v[i].rev, rev);
		assert_true(c.v[i].tomb);
	}
	/* a, b, c in key order with sub-revisions 0, 1, 2 */
	assert_string_equal(c.v[0].key, "a");
	assert_int_equal(c.v[0].sub, 0);
	assert_int_equal(c.v[1].sub, 1);
	assert_int_equal(c.v[2].sub, 2);
}

static void test_apply_protobufs(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	Etcdserverpb__LeaseGrantResponse gr;
	Etcdserverpb__LeaseRevokeRequest r = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	Etcdserverpb__LeaseRevokeResponse rr;

	g.ttl = 30;
	g.id = 77;
	assert_int_equal(lease_apply_grant(f->t, &g, 1, 3, 0, mvcc_rev(f->m), &f->a, &gr), 0);
	assert_int_equal(gr.id, 77);
	assert_int_equal(gr.ttl, 30);
	assert_int_equal(gr.header->revision, 1);
	assert_int_equal(lease_apply_grant(f->t, &g, 1, 4, 0, 1, &f->a, &gr), -KV_ELEASEEXIST);
	assert_int_equal(put_lease(f, "k", "v", 77), 0);
	r.id = 77;
	assert_int_equal(lease_apply_revoke(f->t, f->m, &r, &f->a, &rr), 0);
	assert_int_equal(rr.header->revision, 3);
	assert_int_equal(lease_apply_revoke(f->t, f->m, &r, &f->a, &rr), -KV_ELEASENOTFOUND);
}

/* ---- expiry ------------------------------------------------------------------ */

static void test_expiry_order(void **state)
{
	struct fx *f = *state;
	int64_t id, ttl;
	struct lease_info info;

	grant(f, 1, 10);
	grant(f, 2, 5);
	grant(f, 3, 20);
	/* not primary: nothing ever expires, renew is the leader's */
	assert_false(lease_table_next_expired(f->t, UINT64_MAX - 1, &id));
	assert_int_equal(lease_table_renew(f->t, 1, 0, &ttl), -KV_ENOTLEADER);
	assert_true(lease_table_next_deadline(f->t) == LEASE_FOREVER);

	lease_table_promote(f->t, MS(1000), MS(500));
	assert_true(lease_table_is_primary(f->t));
	assert_true(lease_table_get(f->t, 2, &info));
	assert_int_equal(info.expiry_us, MS(1000 + 500 + 5000));
	assert_int_equal(lease_table_next_deadline(f->t), MS(6500));
	assert_int_equal(lease_remaining_seconds(&info, MS(1000)), 5);
	assert_false(lease_table_next_expired(f->t, MS(6500) - 1, &id));
	assert_true(lease_table_next_expired(f->t, MS(6500), &id));
	assert_int_equal(id, 2);
	/* handed out once: back after the retry interval */
	assert_false(lease_table_next_expired(f->t, MS(6500), &id));
	/* an expired lease cannot be renewed */
	assert_int_equal(lease_table_renew(f->t, 2, MS(6600), &ttl), -KV_ELEASENOTFOUND);
	assert_int_equal(lease_table_renew(f->t, 99, MS(6600), &ttl), -KV_ELEASENOTFOUND);
	/* renew lease 1 (due 11500) at 11000: now due 21000 */
	assert_int_equal(lease_table_renew(f->t, 1, MS(11000), &ttl), 0);
	assert_int_equal(ttl, 10);
	/* at 21500, by due time: 2 (retry at 9500), 1 (21000), 3 (21500) */
	assert_true(lease_table_next_expired(f->t, MS(21500), &id));
	assert_int_equal(id, 2);
	assert_true(lease_table_next_expired(f->t, MS(21500), &id));
	assert_int_equal(id, 1);
	assert_true(lease_table_next_expired(f->t, MS(21500), &id));
	assert_int_equal(id, 3);
	assert_false(lease_table_next_expired(f->t, MS(21500), &id));
	/* a grant on the primary expires at now + TTL */
	grant(f, 4, 2);
	assert_true(lease_table_get(f->t, 4, &info));
	assert_int_equal(info.expiry_us, MS(2000)); /* grant() passes now = 0 */

	/* demoted: no deadlines at all; promoted again: full TTL + extend */
	lease_table_demote(f->t);
	assert_false(lease_table_is_primary(f->t));
	assert_false(lease_table_next_expired(f->t, UINT64_MAX - 1, &id));
	assert_true(lease_table_get(f->t, 2, &info));
	assert_true(info.expiry_us == LEASE_FOREVER);
	assert_int_equal(lease_remaining_seconds(&info, 0), INT64_MAX / 1000000000);
	lease_table_promote(f->t, MS(100000), MS(1000));
	assert_true(lease_table_get(f->t, 2, &info));
	assert_int_equal(info.expiry_us, MS(106000));
	assert_int_equal(lease_table_renew(f->t, 2, MS(100001), &ttl), 0);
	/* revoking removes it from the deadline tree */
	assert_int_equal(lease_table_next_deadline(f->t), MS(103000));
	assert_int_equal(lease_table_revoke(f->t, f->m, 4), 0);
	assert_int_equal(lease_table_next_deadline(f->t), MS(105001)); /* lease 2, renewed */
	assert_true(lease_table_next_expired(f->t, MS(200000), &id));
	assert_int_equal(id, 2);
}

static void test_remaining_seconds(void **state)
{
	struct lease_info info = {1, 10, MS(10000), 0};
	(void)state;
	assert_int_equal(lease_remaining_seconds(&info, 0), 10);
	assert_int_equal(lease_remaining_seconds(&info, 1), 9);          /* 9.999999 -> 9 */
	assert_int_equal(lease_remaining_seconds(&info, MS(9001)), 0);   /* 0.999 -> 0 */
	assert_int_equal(lease_remaining_seconds(&info, MS(10500)), 0);  /* -0.5 -> 0 */
	assert_int_equal(lease_remaining_seconds(&info, MS(11500)), -1); /* -1.5 -> -1 */
}

struct order {
	int64_t ids[8];
	int n;
};

static void collect_lease(void *arg, const struct lease_info *info)
{
	struct order *o = arg;
	o->ids[o->n++] = info->id;
}

static void test_each_order(void **state)
{
	struct fx *f = *state;
	struct order o;

	grant(f, 30, 5);
	grant(f, 10, 50);
	grant(f, 20, 1);
	memset(&o, 0, sizeof(o));
	lease_table_each(f->t, collect_lease, &o);
	assert_int_equal(o.n, 3);
	assert_int_equal(o.ids[0], 10); /* by ID */
	assert_int_equal(o.ids[2], 30);
	lease_table_promote(f->t, 0, 0);
	memset(&o, 0, sizeof(o));
	lease_table_each(f->t, collect_lease, &o);
	assert_int_equal(o.ids[0], 20); /* by deadline */
	assert_int_equal(o.ids[1], 30);
	assert_int_equal(o.ids[2], 10);
}

/* Promote with many leases due together spreads them: at most 3/4 of
 * etcd's revoke rate (750) fall due in any one second. */
static void test_promote_spread(void **state)
{
	struct fx *f = *state;
	enum { N = 3000 };
	static uint64_t due[N];
	int64_t id;
	int n = 0;

	for (int i = 0; i < N; i++)
		grant(f, i + 1, 10);
	lease_table_promote(f->t, 0, 0);
	while (n < N && lease_table_next_expired(f->t, UINT64_MAX / 2, &id)) {
		struct lease_info info;
		assert_true(lease_table_get(f->t, id, &info));
		due[n++] = info.expiry_us;
	}
	assert_int_equal(n, N);
	for (int i = 0; i < N; i++) {
		int in_window = 0;
		assert_true(due[i] >= MS(10000));
		for (int j = 0; j < N; j++)
			in_window += due[j] >= due[i] && due[j] < due[i] + MS(1000);
		assert_true(in_window <= 760);
	}
}

/* ---- snapshots --------------------------------------------------------------- */

static void fill(struct fx *f)
{
	grant(f, 5, 60);
	grant(f, -9, 3);
	grant(f, 1LL << 62, 9000);
	assert_int_equal(put_lease(f, "a", "v", 5), 0);
	assert_int_equal(put_lease(f, "b", "v", 5), 0);
	assert_int_equal(put_lease(f, "c", "v", -9), 0);
	assert_int_equal(put_lease(f, "d", "v", 0), 0);
	assert_int_equal(put_lease(f, "e", "v", 1LL << 62), 0);
}

static void test_snapshot_round_trip(void **state)
{
	struct fx *f = *state;
	struct lease_table *t2 = lease_table_new();
	uint8_t *img, *img2;
	size_t len, len2;
	struct lease_info info;
	struct keys k;

	fill(f);
	lease_table_promote(f->t, 0, 0); /* deadlines are not in the image */
	assert_int_equal(lease_table_encode(f->t, &img, &len), 0);
	assert_int_equal(len, 16 + 3 * 16 + 4);
	grant(f, 0, 5); /* t2 gets the image, not this */
	lease_table_promote(t2, 0, 0);
	assert_int_equal(lease_table_restore(t2, img, len, f->m), 0);
	assert_false(lease_table_is_primary(t2));
	assert_int_equal(lease_table_count(t2), 3);
	assert_int_equal(lease_table_attached_keys(t2), 4);
	assert_true(lease_table_get(t2, -9, &info));
	assert_int_equal(info.ttl, 3);
	assert_int_equal(info.nkeys, 1);
	assert_true(lease_table_get(t2, 1LL << 62, &info));
	assert_int_equal(info.ttl, 9000);
	memset(&k, 0, sizeof(k));
	lease_table_keys(t2, 5, collect_key, &k);
	assert_int_equal(k.n, 2);
	assert_string_equal(k.v[0], "a");
	assert_string_equal(k.v[1], "b");
	/* canonical: the restored table encodes to the same bytes */
	assert_int_equal(lease_table_encode(t2, &img2, &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(img, img2, len);
	free(img2);
	/* no lease section (format 1 snapshot): empty table */
	assert_int_equal(lease_table_restore(t2, NULL, 0, NULL), 0);
	assert_int_equal(lease_table_count(t2), 0);
	free(img);
	lease_table_free(t2);
}

static uint32_t crc_fix(uint8_t *img, size_t len)
{
	uint32_t c = mvcc_crc32c(0, img, len - 4);
	for (int i = 0; i < 4; i++)
		img[len - 4 + i] = (uint8_t)(c >> (8 * i));
	return c;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_snapshot_mutated(void **state)
{
	struct fx *f = *state;
	struct lease_table *t2 = lease_table_new();
	uint8_t *img, *bad;
	size_t len;
	unsigned seed = 12345;
	int rejected = 0;

	fill(f);
	assert_int_equal(lease_table_encode(f->t, &img, &len), 0);
	grant(f, 4242, 5);
	assert_int_equal(lease_table_restore(t2, img, len, f->m), 0);
	bad = malloc(len);
	/* random bit flips and truncations: refused, table untouched */
	for (int round = 0; round < 5000; round++) {
		size_t blen = len;
		memcpy(bad, img, len);
		seed = seed * 1103515245 + 12345;
		if (round % 3 == 0) {
			blen = (seed >> 8) % len;
		} else {
			size_t pos = (seed >> 8) % len;
			bad[pos] ^= (uint8_t)(1u << ((seed >> 4) % 8));
		}
		if (lease_table_restore(t2, bad, blen, f->m) != 0) {
			rejected++;
			assert_int_equal(lease_table_count(t2), 3);
			assert_true(lease_table_exists(t2, 5));
		}
	}
	assert_int_equal(rejected, 5000);
	/* crafted images with a valid checksum but bad content */
	memcpy(bad, img, len);
	put64(bad + 16, 0); /* first id 0 */
	crc_fix(bad, len);
	assert_int_equal(lease_table_restore(t2, bad, len, f->m), -KV_ECORRUPT);
	memcpy(bad, img, len);
	put64(bad + 32, (uint64_t)(int64_t)-9); /* ids not increasing (-9 is first) */
	crc_fix(bad, len);
	assert_int_equal(lease_table_restore(t2, bad, len, f->m), -KV_ECORRUPT);
	memcpy(bad, img, len);
	put64(bad + 24, 0); /* ttl 0 */
	crc_fix(bad, len);
	assert_int_equal(lease_table_restore(t2, bad, len, f->m), -KV_ECORRUPT);
	memcpy(bad, img, len);
	put64(bad + 24, (uint64_t)LEASE_MAX_TTL + 1);
	crc_fix(bad, len);
	assert_int_equal(lease_table_restore(t2, bad, len, f->m), -KV_ECORRUPT);
	memcpy(bad, img, len);
	put64(bad + 8, UINT64_MAX / 8); /* count far beyond the bytes present */
	crc_fix(bad, len);
	assert_int_equal(lease_table_restore(t2, bad, len, f->m), -KV_ECORRUPT);
	memcpy(bad, img, len);
	put64(bad + 8, 2); /* count one short */
	crc_fix(bad, len);
	assert_int_equal(lease_table_restore(t2, bad, len, f->m), -KV_ECORRUPT);
	memcpy(bad, img, len);
	bad[4] = 2; /* unknown version */
	crc_fix(bad, len);
	assert_int_equal(lease_table_restore(t2, bad, len, f->m), -KV_ECORRUPT);
	assert_int_equal(lease_table_count(t2), 3);
	/* a store key naming a lease the image lacks: kept, not attached */
	memcpy(bad, img, len);
	put64(bad + 8, 2);
	crc_fix(bad, 16 + 2 * 16 + 4);
	assert_int_equal(lease_table_restore(t2, bad, 16 + 2 * 16 + 4, f->m), 0);
	assert_int_equal(lease_table_count(t2), 2);
	assert_int_equal(lease_table_attached_keys(t2), 3); /* "e" names 1 << 62 */
	free(bad);
	free(img);
	lease_table_free(t2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_min_ttl),
		cmocka_unit_test(test_remaining_seconds),
		cmocka_unit_test_setup_teardown(test_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attach_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_attach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke_one_revision, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke_key_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_protobufs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_each_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_promote_spread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_mutated, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
