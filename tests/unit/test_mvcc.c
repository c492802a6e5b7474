/*
 * Unit tests for mvcc: revisions, versions, tombstones, historical reads,
 * range forms, compaction, hashing, the observer, and the snapshot codec
 * (round trip, truncation and thousands of random mutations).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "lib/err.h"
#include "server/mvcc.h"

#define S(x) (const uint8_t *)(x), strlen(x)

static void put(struct mvcc *m, const char *k, const char *v)
{
	assert_int_equal(mvcc_put(m, S(k), S(v), 0), 0);
}

static int64_t del(struct mvcc *m, const char *k, const char *end)
{
	int64_t n = -1;
	assert_int_equal(mvcc_delete_range(m, S(k), (const uint8_t *)end, end ? strlen(end) : 0, &n), 0);
	return n;
}

/* The value of k at rev as a NUL-terminated string in buf, or NULL. */
static const char *get_at(struct mvcc *m, const char *k, int64_t rev, struct mvcc_kv *out)
{
	static char buf[256];
	struct mvcc_iter it;
	struct mvcc_kv kv;
	assert_int_equal(mvcc_iter_init(&it, m, S(k), NULL, 0, rev), 0);
	if (!mvcc_iter_next(&it, &kv))
		return NULL;
	assert_true(kv.value_len < sizeof(buf));
	memcpy(buf, kv.value, kv.value_len);
	buf[kv.value_len] = 0;
	if (out != NULL)
		*out = kv;
	return buf;
}

/* Keys in a range at rev, joined with ',' ("" when empty). */
static const char *keys_in(struct mvcc *m, const char *k, size_t klen, const char *end, size_t elen,
			   int64_t rev)
{
	static char buf[1024];
	struct mvcc_iter it;
	struct mvcc_kv kv;
	size_t o = 0;
	assert_int_equal(mvcc_iter_init(&it, m, (const uint8_t *)k, klen, (const uint8_t *)end, elen, rev), 0);
	buf[0] = 0;
	while (mvcc_iter_next(&it, &kv)) {
		if (o)
			buf[o++] = ',';
		for (size_t i = 0; i < kv.key_len; i++)
			buf[o++] = kv.key[i] ? (char)kv.key[i] : '0';
	}
	buf[o] = 0;
	return buf;
}

/* An empty store is at revision 1 and was never compacted. */
static void test_empty(void **state)
{
	struct mvcc *m = mvcc_new();
	struct mvcc_kv kv;
	(void)state;
	assert_int_equal(mvcc_rev(m), 1);
	assert_int_equal(mvcc_compact_rev(m), -1);
	assert_int_equal(mvcc_bytes(m), 0);
	assert_false(mvcc_get(m, S("a"), &kv));
	assert_string_equal(keys_in(m, "\0", 1, "\0", 1, 0), "");
	assert_int_equal(del(m, "a", NULL), 0);
	assert_int_equal(mvcc_rev(m), 1);
	assert_int_equal(mvcc_put(m, (const uint8_t *)"", 0, S("x"), 0), -KV_EINVAL);
	mvcc_free(m);
}

/* The first put gets revision 2; version counts puts; create stays. */
static void test_put_revisions(void **state)
{
	struct mvcc *m = mvcc_new();
	struct mvcc_kv kv;
	(void)state;
	put(m, "a", "1");
	assert_int_equal(mvcc_rev(m), 2);
	assert_true(mvcc_get(m, S("a"), &kv));
	assert_int_equal(kv.create_rev, 2);
	assert_int_equal(kv.mod_rev, 2);
	assert_int_equal(kv.version, 1);
	put(m, "a", "2");
	put(m, "b", "x");
	assert_int_equal(mvcc_rev(m), 4);
	assert_true(mvcc_get(m, S("a"), &kv));
	assert_int_equal(kv.create_rev, 2);
	assert_int_equal(kv.mod_rev, 3);
	assert_int_equal(kv.version, 2);
	assert_int_equal(kv.value_len, 1);
	assert_memory_equal(kv.value, "2", 1);
	assert_int_equal(mvcc_put(m, S("l"), S("v"), 77), 0);
	assert_true(mvcc_get(m, S("l"), &kv));
	assert_int_equal(kv.lease, 77);
	assert_int_equal(mvcc_live_keys(m), 3);
	assert_true(mvcc_bytes(m) > 0);
	mvcc_free(m);
}

/* A delete leaves a tombstone; a later put starts a new generation. */
static void test_delete_resets_version(void **state)
{
	struct mvcc *m = mvcc_new();
	struct mvcc_kv kv;
	(void)state;
	put(m, "a", "1");
	put(m, "a", "2");
	assert_int_equal(del(m, "a", NULL), 1);
	assert_int_equal(mvcc_rev(m), 4);
	assert_false(mvcc_get(m, S("a"), &kv));
	assert_int_equal(mvcc_live_keys(m), 0);
	assert_int_equal(del(m, "a", NULL), 0);
	assert_int_equal(mvcc_rev(m), 4);
	put(m, "a", "3");
	assert_true(mvcc_get(m, S("a"), &kv));
	assert_int_equal(kv.create_rev, 5);
	assert_int_equal(kv.version, 1);
	assert_int_equal(mvcc_live_keys(m), 1);
	mvcc_free(m);
}

/* Old revisions stay readable; future revisions are refused. */
static void test_historical_reads(void **state)
{
	struct mvcc *m = mvcc_new();
	struct mvcc_iter it;
	struct mvcc_kv kv;
	(void)state;
	put(m, "a", "1"); /* 2 */
	put(m, "b", "1"); /* 3 */
	put(m, "a", "2"); /* 4 */
	del(m, "a", NULL); /* 5 */
	put(m, "a", "3"); /* 6 */
	assert_null(get_at(m, "a", 1, NULL));
	assert_string_equal(get_at(m, "a", 2, &kv), "1");
	assert_int_equal(kv.version, 1);
	assert_string_equal(get_at(m, "a", 3, NULL), "1");
	assert_string_equal(get_at(m, "a", 4, &kv), "2");
	assert_int_equal(kv.version, 2);
	assert_int_equal(kv.create_rev, 2);
	assert_null(get_at(m, "a", 5, NULL));
	assert_string_equal(get_at(m, "a", 6, &kv), "3");
	assert_int_equal(kv.create_rev, 6);
	assert_string_equal(get_at(m, "a", 0, NULL), "3");
	assert_string_equal(get_at(m, "a", -3, NULL), "3");
	assert_int_equal(mvcc_iter_init(&it, m, S("a"), NULL, 0, 7), -KV_EFUTUREREV);
	assert_string_equal(keys_in(m, "a", 1, "\0", 1, 5), "b");
	assert_string_equal(keys_in(m, "a", 1, "\0", 1, 4), "a,b");
	mvcc_free(m);
}

/* Single key, [key, end), from key ("\0"), everything, empty ranges. */
static void test_range_forms(void **state)
{
	struct mvcc *m = mvcc_new();
	(void)state;
	put(m, "a", "");
	put(m, "ab", "");
	put(m, "b", "");
	put(m, "c", "");
	assert_int_equal(mvcc_put(m, (const uint8_t *)"\0", 1, S("z"), 0), 0);
	assert_int_equal(mvcc_put(m, (const uint8_t *)"\xff\xff", 2, S("z"), 0), 0);
	assert_string_equal(keys_in(m, "a", 1, NULL, 0, 0), "a");
	assert_string_equal(keys_in(m, "aa", 2, NULL, 0, 0), "");
	assert_string_equal(keys_in(m, "a", 1, "b", 1, 0), "a,ab");
	assert_string_equal(keys_in(m, "a", 1, "c", 1, 0), "a,ab,b");
	assert_string_equal(keys_in(m, "ab", 2, "\0", 1, 0), "ab,b,c,\xff\xff");
	assert_string_equal(keys_in(m, "\0", 1, "\0", 1, 0), "0,a,ab,b,c,\xff\xff");
	assert_string_equal(keys_in(m, "\0", 1, NULL, 0, 0), "0");
	assert_string_equal(keys_in(m, "c", 1, "a", 1, 0), "");
	assert_string_equal(keys_in(m, "b", 1, "b", 1, 0), "");
	assert_string_equal(keys_in(m, "a", 1, "a\0", 2, 0), "a");
	del(m, "a", "b");
	assert_string_equal(keys_in(m, "\0", 1, "\0", 1, 0), "0,b,c,\xff\xff");
	mvcc_free(m);
}

/* All writes of a txn share one revision; a txn without changes does not
 * bump it; reads inside the txn see its earlier writes. */
static void test_txn_revision(void **state)
{
	struct mvcc *m = mvcc_new();
	struct mvcc_kv kv;
	(void)state;
	put(m, "c", "1"); /* 2 */
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_read_rev(m), 2);
	assert_int_equal(del(m, "zz", NULL), 0);
	assert_int_equal(mvcc_read_rev(m), 2);
	put(m, "a", "1");
	assert_int_equal(mvcc_read_rev(m), 3);
	assert_int_equal(mvcc_rev(m), 2);
	put(m, "b", "1");
	assert_int_equal(del(m, "c", NULL), 1);
	assert_int_equal(del(m, "b", NULL), 1);
	assert_string_equal(keys_in(m, "\0", 1, "\0", 1, 0), "a");
	assert_int_equal(mvcc_txn_end(m), 3);
	assert_true(mvcc_get(m, S("a"), &kv));
	assert_int_equal(kv.mod_rev, 3);
	assert_false(mvcc_get(m, S("b"), &kv));
	assert_null(get_at(m, "b", 3, NULL));
	assert_string_equal(get_at(m, "c", 2, NULL), "1");
	mvcc_txn_begin(m);
	assert_int_equal(mvcc_txn_end(m), 3);
	/* a key written and then deleted in one txn can be recreated */
	put(m, "b", "2");
	assert_true(mvcc_get(m, S("b"), &kv));
	assert_int_equal(kv.version, 1);
	assert_int_equal(kv.create_rev, 4);
	mvcc_free(m);
}

/* Compaction keeps the latest revision <= C of each key (unless it is a
 * tombstone) and everything newer; reads below C fail. */
static void test_compaction(void **state)
{
	struct mvcc *m = mvcc_new();
	struct mvcc_iter it;
	struct mvcc_kv kv;
	uint64_t before;
	(void)state;
	put(m, "a", "1");  /* 2 */
	put(m, "a", "2");  /* 3 */
	put(m, "a", "3");  /* 4 */
	put(m, "d", "1");  /* 5 */
	del(m, "d", NULL); /* 6 */
	put(m, "e", "1");  /* 7 */
	del(m, "e", NULL); /* 8 */
	put(m, "e", "2");  /* 9 */
	put(m, "f", "1");  /* 10 */
	del(m, "f", NULL); /* 11 */
	before = mvcc_bytes(m);
	assert_int_equal(mvcc_compact(m, 12), -KV_EFUTUREREV);
	assert_int_equal(mvcc_compact(m, 8), 0);
	assert_int_equal(mvcc_compact_rev(m), 8);
	assert_true(mvcc_bytes(m) < before);
	assert_int_equal(mvcc_compact(m, 8), -KV_ECOMPACTED);
	assert_int_equal(mvcc_compact(m, 5), -KV_ECOMPACTED);
	assert_int_equal(mvcc_iter_init(&it, m, S("a"), NULL, 0, 7), -KV_ECOMPACTED);
	/* rev == compact rev stays readable, as in etcd */
	assert_string_equal(get_at(m, "a", 8, &kv), "3");
	assert_int_equal(kv.version, 3);
	assert_int_equal(kv.create_rev, 2);
	assert_null(get_at(m, "d", 8, NULL));
	assert_null(get_at(m, "e", 8, NULL));
	assert_string_equal(get_at(m, "e", 9, &kv), "2");
	assert_int_equal(kv.create_rev, 9);
	assert_string_equal(get_at(m, "f", 10, NULL), "1");
	assert_null(get_at(m, "f", 11, NULL));
	assert_string_equal(keys_in(m, "\0", 1, "\0", 1, 8), "a");
	assert_string_equal(keys_in(m, "\0", 1, "\0", 1, 10), "a,e,f");
	/* compact everything: f's tombstone goes too */
	assert_int_equal(mvcc_compact(m, 11), 0);
	assert_string_equal(keys_in(m, "\0", 1, "\0", 1, 11), "a,e");
	assert_true(mvcc_get(m, S("a"), &kv));
	assert_int_equal(kv.version, 3);
	/* writes continue normally after compaction */
	put(m, "a", "4");
	assert_true(mvcc_get(m, S("a"), &kv));
	assert_int_equal(kv.version, 4);
	assert_int_equal(kv.create_rev, 2);
	put(m, "d", "new");
	assert_true(mvcc_get(m, S("d"), &kv));
	assert_int_equal(kv.version, 1);
	assert_int_equal(kv.create_rev, 13);
	mvcc_free(m);
}

/* Compaction at 0 (and 1) is accepted once on a fresh store, like etcd. */
static void test_compaction_fresh(void **state)
{
	struct mvcc *m = mvcc_new();
	(void)state;
	assert_int_equal(mvcc_compact(m, 2), -KV_EFUTUREREV);
	assert_int_equal(mvcc_compact(m, 0), 0);
	assert_int_equal(mvcc_compact_rev(m), 0);
	assert_int_equal(mvcc_compact(m, 0), -KV_ECOMPACTED);
	assert_int_equal(mvcc_compact(m, 1), 0);
	assert_int_equal(mvcc_compact(m, 1), -KV_ECOMPACTED);
	put(m, "a", "1");
	assert_int_equal(mvcc_compact(m, 2), 0);
	assert_string_equal(get_at(m, "a", 2, NULL), "1");
	mvcc_free(m);
}

/* Many revisions of one key: the history array grows and shrinks. */
static void test_long_history(void **state)
{
	struct mvcc *m = mvcc_new();
	struct mvcc_kv kv;
	char v[16];
	(void)state;
	for (int i = 0; i < 1000; i++) {
		snprintf(v, sizeof(v), "%d", i);
		put(m, "k", v);
		if (i % 100 == 99)
			del(m, "k", NULL);
	}
	assert_int_equal(mvcc_rev(m), 1 + 1000 + 10);
	assert_string_equal(get_at(m, "k", 2, NULL), "0");
	assert_string_equal(get_at(m, "k", 101, NULL), "99");
	assert_null(get_at(m, "k", 102, NULL));
	assert_string_equal(get_at(m, "k", 103, &kv), "100");
	assert_int_equal(kv.version, 1);
	assert_int_equal(mvcc_compact(m, 500), 0);
	assert_int_equal(mvcc_compact(m, 1000), 0);
	assert_int_equal(mvcc_compact(m, mvcc_rev(m)), 0);
	assert_false(mvcc_get(m, S("k"), &kv));
	put(m, "k", "again");
	assert_true(mvcc_get(m, S("k"), &kv));
	assert_int_equal(kv.version, 1);
	mvcc_free(m);
}

struct obs {
	int n;
	char log[1024];
};

static void observer(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev)
{
	struct obs *o = arg;
	size_t len = strlen(o->log);
	snprintf(o->log + len, sizeof(o->log) - len, "%s%.*s@%lld/v%lld%s%.*s;",
		 kv->version ? "PUT " : "DEL ", (int)kv->key_len, (const char *)kv->key,
		 (long long)kv->mod_rev, (long long)kv->version, prev ? " prev=" : "",
		 prev ? (int)prev->value_len : 0, prev ? (const char *)prev->value : "");
	o->n++;
}

/* The observer sees every change with its previous state. */
static void test_observer(void **state)
{
	struct mvcc *m = mvcc_new();
	struct obs o = {0};
	(void)state;
	mvcc_set_observer(m, observer, &o);
	put(m, "a", "1");
	put(m, "a", "2");
	put(m, "b", "x");
	del(m, "a", "c");
	del(m, "a", "c");
	put(m, "a", "3");
	assert_int_equal(o.n, 6);
	assert_string_equal(o.log, "PUT a@2/v1;PUT a@3/v2 prev=1;PUT b@4/v1;DEL a@5/v0 prev=2;"
				   "DEL b@5/v0 prev=x;PUT a@6/v1;");
	mvcc_free(m);
}

static void build_sample(struct mvcc *m)
{
	put(m, "a", "1");
	put(m, "b", "2");
	put(m, "a", "3");
	del(m, "b", NULL);
	put(m, "c", "4");
	mvcc_txn_begin(m);
	put(m, "d", "5");
	del(m, "d", NULL);
	put(m, "e", "6");
	mvcc_txn_end(m);
	assert_int_equal(mvcc_put(m, S("l"), S("leased"), 42), 0);
}

/* Equal states hash equally; HashKV is stable for a past revision and
 * reports etcd's errors. */
static void test_hash(void **state)
{
	struct mvcc *m1 = mvcc_new(), *m2 = mvcc_new();
	uint32_t h1, h2, hk1, hk2;
	int64_t c;
	(void)state;
	build_sample(m1);
	build_sample(m2);
	assert_int_equal(mvcc_hash(m1, &h1), 0);
	assert_int_equal(mvcc_hash(m2, &h2), 0);
	assert_int_equal(h1, h2);
	assert_int_equal(mvcc_hash_kv(m1, 0, &hk1, &c), 0);
	assert_int_equal(c, -1);
	assert_int_equal(mvcc_hash_kv(m1, 5, &hk1, &c), 0);
	put(m1, "z", "later");
	assert_int_equal(mvcc_hash_kv(m1, 5, &hk2, &c), 0);
	assert_int_equal(hk1, hk2);
	assert_int_equal(mvcc_hash(m1, &h1), 0);
	assert_int_not_equal(h1, h2);
	assert_int_equal(mvcc_hash_kv(m1, 0, &hk1, &c), 0);
	assert_int_equal(mvcc_hash_kv(m1, mvcc_rev(m1), &hk2, &c), 0);
	assert_int_equal(hk1, hk2);
	assert_int_equal(mvcc_hash_kv(m1, mvcc_rev(m1) + 1, &hk1, &c), -KV_EFUTUREREV);
	assert_int_equal(mvcc_compact(m1, 4), 0);
	assert_int_equal(mvcc_hash_kv(m1, 4, &hk1, &c), -KV_ECOMPACTED);
	assert_int_equal(c, 4);
	assert_int_equal(mvcc_hash_kv(m1, 5, &hk1, &c), 0);
	assert_int_equal(mvcc_compact(m2, 4), 0);
	put(m2, "z", "later");
	assert_int_equal(mvcc_hash_kv(m2, 5, &hk2, &c), 0);
	assert_int_equal(hk1, hk2);
	assert_int_equal(mvcc_hash(m1, &h1), 0);
	assert_int_equal(mvcc_hash(m2, &h2), 0);
	assert_int_equal(h1, h2);
	/* the known-answer value of CRC-32C */
	assert_int_equal(mvcc_crc32c(0, "123456789", 9), 0xE3069283u);
	mvcc_free(m1);
	mvcc_free(m2);
}

static void assert_same_store(struct mvcc *a, struct mvcc *b)
{
	uint32_t ha, hb;
	assert_int_equal(mvcc_rev(a), mvcc_rev(b));
	assert_int_equal(mvcc_compact_rev(a), mvcc_compact_rev(b));
	assert_int_equal(mvcc_bytes(a), mvcc_bytes(b));
	assert_int_equal(mvcc_live_keys(a), mvcc_live_keys(b));
	assert_int_equal(mvcc_hash(a, &ha), 0);
	assert_int_equal(mvcc_hash(b, &hb), 0);
	assert_int_equal(ha, hb);
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A store with random history, tombstones, txns and a compaction. */
static struct mvcc *build_random(int ops)
{
	struct mvcc *m = mvcc_new();
	char k[16], v[64];
	for (int i = 0; i < ops; i++) {
		int r = (int)(rng() % 10);
		snprintf(k, sizeof(k), "k%02d", (int)(rng() % 40));
		if (r < 6) {
			int vl = (int)(rng() % 40);
			memset(v, 'a' + (int)(rng() % 26), (size_t)vl);
			assert_int_equal(mvcc_put(m, S(k), (const uint8_t *)v, (size_t)vl, (int64_t)(rng() % 3)), 0);
		} else if (r < 8) {
			del(m, k, NULL);
		} else if (r < 9) {
			char e[16];
			snprintf(e, sizeof(e), "k%02d", (int)(rng() % 40));
			mvcc_txn_begin(m);
			put(m, k, "t");
			del(m, k, e);
			put(m, e, "u");
			mvcc_txn_end(m);
		} else if (mvcc_rev(m) > 2) {
			int64_t c = mvcc_compact_rev(m) + 1 + (int64_t)(rng() % 5);
			if (c <= mvcc_rev(m))
				assert_int_equal(mvcc_compact(m, c), 0);
		}
	}
	return m;
}

/* encode → decode → encode gives identical bytes and an equal store. */
static void test_snapshot_roundtrip(void **state)
{
	(void)state;
	for (int round = 0; round < 20; round++) {
		struct mvcc *m = build_random(50 + round * 20), *d = mvcc_new();
		uint8_t *buf, *buf2;
		size_t len, len2;
		assert_int_equal(mvcc_encode(m, &buf, &len), 0);
		assert_int_equal(mvcc_decode(d, buf, len), 0);
		assert_same_store(m, d);
		assert_int_equal(mvcc_encode(d, &buf2, &len2), 0);
		assert_int_equal(len, len2);
		assert_memory_equal(buf, buf2, len);
		/* a decoded store keeps working like the original */
		put(m, "k05", "after");
		put(d, "k05", "after");
		assert_same_store(m, d);
		assert_int_equal(mvcc_decode(d, buf, len), -KV_EINVAL);
		free(buf);
		free(buf2);
		mvcc_free(m);
		mvcc_free(d);
	}
	/* the empty store */
	struct mvcc *e = mvcc_new(), *d = mvcc_new();
	uint8_t *buf;
	size_t len;
	assert_int_equal(mvcc_encode(e, &buf, &len), 0);
	assert_int_equal(mvcc_decode(d, buf, len), 0);
	assert_same_store(e, d);
	free(buf);
	mvcc_free(e);
	mvcc_free(d);
}

/* Every truncation of a valid image is refused and leaves the store empty. */
static void test_snapshot_truncated(void **state)
{
	struct mvcc *m = build_random(200), *d = mvcc_new();
	uint8_t *buf;
	size_t len;
	(void)state;
	assert_int_equal(mvcc_encode(m, &buf, &len), 0);
	for (size_t n = 0; n < len; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, buf, n);
		assert_int_equal(mvcc_decode(d, copy, n), -KV_ECORRUPT);
		assert_int_equal(mvcc_rev(d), 1);
		assert_int_equal(mvcc_bytes(d), 0);
		free(copy);
	}
	free(buf);
	mvcc_free(m);
	mvcc_free(d);
}

static void fix_crc(uint8_t *p, size_t len)
{
	uint32_t c;
	if (len < 4)
		return;
	c = mvcc_crc32c(0, p, len - 4);
	for (int i = 0; i < 4; i++)
		p[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

/*
 * Random mutations (with the checksum recomputed so the parser itself is
 * exercised): each decode must fail cleanly or give a store that re-encodes
 * to exactly the same bytes and stays usable.
 */
static void test_snapshot_mutations(void **state)
{
	struct mvcc *m = build_random(150);
	uint8_t *buf;
	size_t len;
	int accepted = 0, refused = 0;
	(void)state;
	assert_int_equal(mvcc_encode(m, &buf, &len), 0);
	for (int i = 0; i < 20000; i++) {
		size_t n = len;
		uint8_t *copy = malloc(len + 16);
		struct mvcc *d = mvcc_new();
		int muts = 1 + (int)(rng() % 4), rv;
		memcpy(copy, buf, len);
		for (int j = 0; j < muts; j++) {
			size_t at = (size_t)(rng() % n);
			switch (rng() % 6) {
			case 0:
				copy[at] ^= (uint8_t)(1u << (rng() % 8));
				break;
			case 1:
				copy[at] = (uint8_t)rng();
				break;
			case 2: /* a small integer, to hit length and revision fields */
				copy[at] = (uint8_t)(rng() % 4);
				break;
			case 3: /* a huge little-endian length */
				if (at + 4 <= n)
					memset(copy + at, 0xff, 4);
				break;
			case 4: /* drop a byte */
				memmove(copy + at, copy + at + 1, n - at - 1);
				n--;
				break;
			default: /* insert a byte */
				memmove(copy + at + 1, copy + at, n - at);
				copy[at] = (uint8_t)rng();
				n++;
				break;
			}
		}
		if (rng() % 8 != 0)
			fix_crc(copy, n);
		rv = mvcc_decode(d, copy, n);
		if (rv == 0) {
			uint8_t *again;
			size_t alen;
			struct mvcc_iter it;
			struct mvcc_kv kv;
			accepted++;
			assert_int_equal(mvcc_encode(d, &again, &alen), 0);
			assert_int_equal(alen, n);
			assert_memory_equal(again, copy, n);
			free(again);
			if (mvcc_iter_init(&it, d, (const uint8_t *)"", 1, (const uint8_t *)"", 1, 0) == 0)
				while (mvcc_iter_next(&it, &kv))
					;
			assert_int_equal(mvcc_put(d, S("k07"), S("x"), 0), 0);
			del(d, "k1", "k3");
			assert_int_equal(mvcc_compact(d, mvcc_rev(d)), 0);
		} else {
			assert_int_equal(rv, -KV_ECORRUPT);
			assert_int_equal(mvcc_rev(d), 1);
			refused++;
		}
		mvcc_free(d);
		free(copy);
	}
	print_message("mutations: %d accepted, %d refused\n", accepted, refused);
	assert_true(refused > 0);
	free(buf);
	mvcc_free(m);
}

/* Garbage of every small size, and huge claimed counts, are refused. */
static void test_snapshot_garbage(void **state)
{
	struct mvcc *d = mvcc_new();
	uint8_t buf[256];
	(void)state;
	for (int i = 0; i < 5000; i++) {
		size_t n = (size_t)(rng() % sizeof(buf));
		for (size_t j = 0; j < n; j++)
			buf[j] = (uint8_t)rng();
		if (n >= 8 && rng() % 2) {
			memcpy(buf, "RKVS\1\0\0\0", 8);
			fix_crc(buf, n);
		}
		assert_int_equal(mvcc_decode(d, buf, n), -KV_ECORRUPT);
	}
	mvcc_free(d);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* --- a random model ------------------------------------------------------
 * Every revision of every key kept in a plain list: reads at any revision
 * at or after the compact revision must agree with it, through puts,
 * deletes, multi-key transactions, compactions (which rebuild nodes and the
 * index) and snapshot round trips (whose nodes hold their latest revision
 * inline), over enough keys for a B+tree of several levels. */

struct mrec {
	int64_t mod, create, ver, lease;
	bool tomb;
	uint8_t val[40];
	size_t vlen;
};

struct mkey {
	uint8_t k[6];
	size_t klen;
	struct mrec *h;
	size_t n, cap;
};

#define MKEYS (4 + 16 + 64 + 256 + 1024 + 4096)

static struct mkey mkeys[MKEYS];

static int mkey_cmp(const void *a, const void *b)
{
	const struct mkey *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->k, y->k, n);
	return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* Every string of 1 to 6 letters of "abcd", sorted. */
static void mkeys_init(void)
{
	size_t n = 0;
	for (size_t len = 1; len <= 6; len++) {
		size_t count = (size_t)1 << (2 * len);
		for (size_t v = 0; v < count; v++) {
			struct mkey *k = &mkeys[n++];
			memset(k, 0, sizeof(*k));
			k->klen = len;
			for (size_t i = 0; i < len; i++)
				k->k[i] = (uint8_t)('a' + ((v >> (2 * (len - 1 - i))) & 3));
		}
	}
	assert_int_equal(n, MKEYS);
	qsort(mkeys, MKEYS, sizeof(mkeys[0]), mkey_cmp);
}

static const struct mrec *mkey_at(const struct mkey *k, int64_t rev)
{
	const struct mrec *r = NULL;
	for (size_t i = 0; i < k->n && k->h[i].mod <= rev; i++)
		r = &k->h[i];
	return r && !r->tomb ? r : NULL;
}

static void mkey_add(struct mkey *k, const struct mrec *r)
{
	if (k->n == k->cap) {
		k->cap = k->cap ? 2 * k->cap : 4;
		k->h = realloc(k->h, k->cap * sizeof(*k->h));
		assert_non_null(k->h);
	}
	k->h[k->n++] = *r;
}

static void model_put(struct mvcc *m, struct mkey *k, int64_t rev)
{
	const struct mrec *prev = mkey_at(k, rev - 1);
	struct mrec r;
	memset(&r, 0, sizeof(r));
	r.mod = rev;
	r.vlen = (size_t)(rand() % 41);
	for (size_t i = 0; i < r.vlen; i++)
		r.val[i] = (uint8_t)rand();
	r.lease = rand() % 4 ? 0 : 1 + rand() % 1000000000;
	r.create = prev ? prev->create : rev;
	r.ver = prev ? prev->ver + 1 : 1;
	/* a big version or lease must round-trip as well */
	assert_int_equal(mvcc_put(m, k->k, k->klen, r.val, r.vlen, r.lease), 0);
	mkey_add(k, &r);
}

/* Deletes keys [i, j) of mkeys; true if any existed. */
static bool model_del(struct mvcc *m, size_t i, size_t j, int64_t rev)
{
	int64_t n = 0, want = 0;
	const struct mkey *a = &mkeys[i];
	for (size_t x = i; x < j; x++) {
		if (mkey_at(&mkeys[x], rev - 1)) {
			struct mrec r = {.mod = rev, .tomb = true};
			mkey_add(&mkeys[x], &r);
			want++;
		}
	}
	if (j == i + 1) {
		assert_int_equal(mvcc_delete_range(m, a->k, a->klen, NULL, 0, &n), 0);
	} else if (j == MKEYS) {
		assert_int_equal(mvcc_delete_range(m, a->k, a->klen, (const uint8_t *)"", 1, &n), 0);
	} else {
		assert_int_equal(mvcc_delete_range(m, a->k, a->klen, mkeys[j].k, mkeys[j].klen, &n), 0);
	}
	assert_int_equal(n, want);
	return want > 0;
}

/* A range scan of m at rev against the model: keys [i, j). */
static void model_check(struct mvcc *m, int64_t rev, size_t i, size_t j)
{
	struct mvcc_iter it;
	struct mvcc_kv kv;
	const uint8_t *end = j < MKEYS ? mkeys[j].k : (const uint8_t *)"";
	size_t elen = j < MKEYS ? mkeys[j].klen : 1;
	assert_int_equal(mvcc_iter_init(&it, m, mkeys[i].k, mkeys[i].klen, end, elen, rev), 0);
	for (size_t x = i; x < j; x++) {
		const struct mrec *r = mkey_at(&mkeys[x], rev);
		if (r == NULL)
			continue;
		assert_true(mvcc_iter_next(&it, &kv));
		assert_int_equal(kv.key_len, mkeys[x].klen);
		assert_memory_equal(kv.key, mkeys[x].k, kv.key_len);
		assert_int_equal(kv.mod_rev, r->mod);
		assert_int_equal(kv.create_rev, r->create);
		assert_int_equal(kv.version, r->ver);
		assert_int_equal(kv.lease, r->lease);
		assert_int_equal(kv.value_len, r->vlen);
		if (r->vlen)
			assert_memory_equal(kv.value, r->val, r->vlen);
	}
	assert_false(mvcc_iter_next(&it, &kv));
}

static void test_random_model(void **state)
{
	struct mvcc *m = mvcc_new();
	int64_t rev = 1, compacted = -1;
	size_t checks = 0, rebuilt = 0;
	(void)state;

	srand(7);
	mkeys_init();
	for (int op = 0; op < 60000; op++) {
		int kind = rand() % 100;
		if (kind < 60) {
			model_put(m, &mkeys[(size_t)rand() % MKEYS], ++rev);
		} else if (kind < 75) {
			size_t i = (size_t)rand() % MKEYS, j = i + 1;
			if (rand() % 3 == 0)
				j = i + 1 + (size_t)rand() % 64;
			if (j > MKEYS)
				j = MKEYS;
			if (model_del(m, i, j, rev + 1))
				rev++;
		} else if (kind < 85) {
			/* a transaction over distinct keys: one revision */
			size_t base = (size_t)rand() % (MKEYS - 40);
			bool changed = false;
			mvcc_txn_begin(m);
			for (size_t x = base; x < base + 40; x += 1 + (size_t)rand() % 8) {
				if (rand() % 4) {
					model_put(m, &mkeys[x], rev + 1);
					changed = true;
				} else {
					changed |= model_del(m, x, x + 1, rev + 1);
				}
			}
			assert_int_equal(mvcc_txn_end(m), rev + changed);
			rev += changed;
		} else if (kind < 86 && rev > compacted + 1) {
			int64_t c = compacted + 1 + rand() % (rev - compacted);
			assert_int_equal(mvcc_compact(m, c), 0);
			compacted = c;
		} else if (kind < 87) {
			/* swap in the store's own snapshot image */
			struct mvcc *d = mvcc_new();
			uint8_t *a, *b;
			size_t alen, blen;
			uint32_t ha, hb;
			assert_int_equal(mvcc_encode(m, &a, &alen), 0);
			assert_int_equal(mvcc_decode(d, a, alen), 0);
			assert_int_equal(mvcc_encode(d, &b, &blen), 0);
			assert_int_equal(alen, blen);
			assert_memory_equal(a, b, alen);
			assert_int_equal(mvcc_hash(m, &ha), 0);
			assert_int_equal(mvcc_hash(d, &hb), 0);
			assert_int_equal(ha, hb);
			assert_int_equal(mvcc_bytes(m), mvcc_bytes(d));
			assert_int_equal(mvcc_live_keys(m), mvcc_live_keys(d));
			free(a);
			free(b);
			mvcc_free(m);
			m = d;
			rebuilt++;
		}
		assert_int_equal(mvcc_rev(m), rev);
		if (op % 500 == 0) {
			int64_t at = rev - rand() % (rev - (compacted > 0 ? compacted : 1) + 1);
			size_t i = (size_t)rand() % MKEYS;
			model_check(m, rev, 0, MKEYS);
			model_check(m, at, 0, MKEYS);
			model_check(m, at, i, i + 1);
			model_check(m, at, i, i + (size_t)rand() % (MKEYS - i) + 1);
			checks += 4;
		}
	}
	model_check(m, rev, 0, MKEYS);
	print_message("random model: rev %lld, compacted at %lld, %zu checks, %zu snapshot swaps, "
		      "%llu live keys\n",
		      (long long)rev, (long long)compacted, checks, rebuilt,
		      (unsigned long long)mvcc_live_keys(m));
	assert_true(rebuilt > 100);
	for (size_t i = 0; i < MKEYS; i++)
		free(mkeys[i].h);
	mvcc_free(m);
}

/* The packed layout (varint lengths and revisions, byte-granular nodes):
 * every field at and around each varint width survives writes, a
 * compaction that moves survivors, and a snapshot round trip into a fresh
 * store; the store's memory follows what it holds. */
static void fill_pattern(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

static void check_kv(const struct mvcc_kv *kv, size_t klen, size_t vlen, unsigned seed, int64_t lease)
{
	uint8_t *want = malloc(klen > vlen ? klen : vlen);
	assert_non_null(want);
	assert_int_equal(kv->key_len, klen);
	fill_pattern(want, klen, 1000 + (unsigned)klen);
	assert_memory_equal(kv->key, want, klen);
	assert_int_equal(kv->value_len, vlen);
	fill_pattern(want, vlen, seed);
	if (vlen > 0)
		assert_memory_equal(kv->value, want, vlen);
	assert_int_equal(kv->lease, lease);
	free(want);
}

static void test_packed_layout(void **state)
{
	static const size_t klens[] = {1, 2, 127, 128, 129, 300, 16383, 16384, 70000};
	static const size_t vlens[] = {0, 1, 127, 128, 16383, 16384, 300000};
	static const int64_t leases[] = {0, 1, 127, 128, (int64_t)1 << 40, INT64_MAX};
	enum { NK = sizeof(klens) / sizeof(klens[0]), NV = sizeof(vlens) / sizeof(vlens[0]) };
	struct mvcc *m = mvcc_new(), *r;
	uint8_t *key = malloc(70000), *val = malloc(300000), *img;
	uint32_t h1, h2;
	size_t len;
	struct mvcc_kv kv;
	int64_t first, deleted = 0;
	uint64_t loaded;
	(void)state;

	assert_non_null(key);
	assert_non_null(val);
	/* A key with a long history first: versions and revisions cross the
	 * 1-, 2- and 3-byte varint widths (128, 16384). */
	for (int i = 0; i < 17000; i++) {
		snprintf((char *)val, 32, "v%d", i);
		assert_int_equal(mvcc_put(m, S("hist"), val, strlen((char *)val), i % 3 ? 0 : 5), 0);
	}
	first = mvcc_rev(m);
	/* Then every key length with every value length and a lease. */
	for (size_t k = 0; k < NK; k++) {
		fill_pattern(key, klens[k], 1000 + (unsigned)klens[k]);
		for (size_t v = 0; v < NV; v++) {
			fill_pattern(val, vlens[v], (unsigned)(k * NV + v));
			assert_int_equal(mvcc_put(m, key, klens[k], val, vlens[v],
						  leases[(k + v) % 6]), 0);
		}
	}
	/* Each key: NV revisions, the latest with the last value length. */
	for (size_t k = 0; k < NK; k++) {
		fill_pattern(key, klens[k], 1000 + (unsigned)klens[k]);
		assert_true(mvcc_get(m, key, klens[k], &kv));
		check_kv(&kv, klens[k], vlens[NV - 1], (unsigned)(k * NV + NV - 1), leases[(k + NV - 1) % 6]);
		assert_int_equal(kv.version, NV);
		assert_int_equal(kv.create_rev, first + 1 + (int64_t)(k * NV));
		assert_int_equal(kv.mod_rev, first + (int64_t)(k * NV + NV));
	}
	assert_true(mvcc_get(m, S("hist"), &kv));
	assert_int_equal(kv.version, 17000);
	assert_int_equal(kv.create_rev, 2);
	assert_int_equal(kv.mod_rev, 17001);
	assert_int_equal(kv.lease, 0);
	assert_string_equal(get_at(m, "hist", 128, &kv), "v126");
	assert_int_equal(kv.version, 127);
	assert_int_equal(kv.lease, 5);
	assert_string_equal(get_at(m, "hist", 129, &kv), "v127");
	assert_int_equal(kv.version, 128);
	assert_int_equal(kv.lease, 0);
	assert_string_equal(get_at(m, "hist", 16385, &kv), "v16383");
	assert_int_equal(kv.lease, 5);
	assert_string_equal(get_at(m, "hist", 16386, &kv), "v16384");
	assert_int_equal(kv.version, 16385);
	assert_int_equal(kv.lease, 0);

	/* A snapshot of it restores to the same hash and about the same
	 * memory; so does the store after a compaction that keeps, of most
	 * keys, only the latest revision (moving survivors between slabs). */
	for (int round = 0; round < 2; round++) {
		assert_int_equal(mvcc_hash(m, &h1), 0);
		assert_int_equal(mvcc_encode(m, &img, &len), 0);
		r = mvcc_new();
		assert_int_equal(mvcc_decode(r, img, len), 0);
		free(img);
		assert_int_equal(mvcc_hash(r, &h2), 0);
		assert_int_equal(h1, h2);
		/* decode keeps every retained revision; the layout is the same,
		 * so the mapped memory differs only by the slab tails */
		loaded = mvcc_mem_bytes(r);
		assert_true(loaded <= mvcc_mem_bytes(m) + (2u << 20));
		mvcc_free(r);
		if (round == 0) {
			uint64_t before = mvcc_mem_bytes(m);
			assert_int_equal(mvcc_compact(m, mvcc_rev(m) - 3), 0);
			print_message("packed layout: %llu KiB before the compaction, %llu KiB after\n",
				      (unsigned long long)before >> 10,
				      (unsigned long long)mvcc_mem_bytes(m) >> 10);
			/* Little is freed here: the small slab is the current
			 * one, and the rebuilt nodes (latest record inline) of
			 * the keys whose last value has a slab of its own take
			 * their key (~100 KiB in all) there. */
			assert_true(mvcc_mem_bytes(m) <= before + (128u << 10));
		}
	}
	/* After the compaction: the latest revision of every key is intact. */
	for (size_t k = 0; k < NK; k++) {
		fill_pattern(key, klens[k], 1000 + (unsigned)klens[k]);
		assert_true(mvcc_get(m, key, klens[k], &kv));
		check_kv(&kv, klens[k], vlens[NV - 1], (unsigned)(k * NV + NV - 1), leases[(k + NV - 1) % 6]);
	}
	assert_true(mvcc_get(m, S("hist"), &kv));
	assert_int_equal(kv.version, 17000);
	assert_int_equal(kv.value_len, 6);
	assert_memory_equal(kv.value, "v16999", 6);
	/* Everything deleted and compacted away: no slab is left but the
	 * current one, empty (1 MiB). */
	assert_int_equal(mvcc_delete_range(m, (const uint8_t *)"", 1, (const uint8_t *)"", 1, &deleted), 0);
	assert_int_equal(deleted, NK + 1);
	assert_int_equal(mvcc_compact(m, mvcc_rev(m)), 0);
	assert_true(mvcc_mem_bytes(m) <= 1u << 20);
	free(key);
	free(val);
	mvcc_free(m);
}

/* Slabs: what a compaction frees goes back (survivors in half-empty slabs
 * move), and everything stays readable through it. */
static void test_slab_memory(void **state)
{
	struct mvcc *m = mvcc_new();
	uint8_t val[100];
	char key[16];
	uint64_t full, after;
	struct mvcc_kv kv;
	(void)state;

	memset(val, 'a', sizeof(val));
	for (int i = 0; i < 30000; i++) {
		snprintf(key, sizeof(key), "k%06d", i);
		assert_int_equal(mvcc_put(m, S(key), val, sizeof(val), 0), 0);
	}
	/* ~116 bytes a key: 3.3 MiB in 1 MiB slabs */
	full = mvcc_mem_bytes(m);
	assert_true(full >= 4u << 20 && full <= 6u << 20);
	/* three keys in four twice more: their first two revisions will go,
	 * and the first slabs keep a quarter of what they held */
	for (int round = 0; round < 2; round++) {
		memset(val, 'b' + round, sizeof(val));
		for (int i = 0; i < 30000; i++) {
			if (i % 4 == 0)
				continue;
			snprintf(key, sizeof(key), "k%06d", i);
			assert_int_equal(mvcc_put(m, S(key), val, sizeof(val), 0), 0);
		}
	}
	/* 45,000 records of ~110 bytes: 4.7 MiB more */
	assert_true(mvcc_mem_bytes(m) >= full + (4u << 20));
	assert_int_equal(mvcc_compact(m, mvcc_rev(m)), 0);
	after = mvcc_mem_bytes(m);
	print_message("slabs: %llu KiB loaded, %llu KiB after 30000 overwrites and a compaction\n",
		      (unsigned long long)full >> 10, (unsigned long long)after >> 10);
	/* what is live is 30000 keys again: the quarter-live slabs were
	 * emptied by moving their survivors */
	assert_true(after <= full + (1u << 20));
	for (int i = 0; i < 30000; i++) {
		snprintf(key, sizeof(key), "k%06d", i);
		assert_true(mvcc_get(m, S(key), &kv));
		assert_int_equal(kv.value_len, sizeof(val));
		assert_int_equal(kv.value[0], i % 4 ? 'c' : 'a');
		assert_int_equal(kv.version, i % 4 ? 3 : 1);
		assert_int_equal(kv.create_rev, 2 + i);
	}
	/* and writes go on */
	put(m, "k000001", "z");
	assert_true(mvcc_get(m, S("k000001"), &kv));
	assert_int_equal(kv.version, 4);
	mvcc_free(m);
}

/* 100,000 keys × 256 B: put, range with limit, encode, decode, compact. */
static void test_scale(void **state)
{
	struct mvcc *m = mvcc_new(), *d = mvcc_new();
	uint8_t val[256], *buf;
	char key[32];
	size_t len;
	double t0, t_put, t_enc, t_dec, t_range, t_compact;
	struct mvcc_iter it;
	struct mvcc_kv kv;
	int n = 0;
	(void)state;
	memset(val, 'v', sizeof(val));
	t0 = now_ms();
	for (int i = 0; i < 100000; i++) {
		snprintf(key, sizeof(key), "/registry/pods/%08d", (int)((i * 7919L) % 100000));
		assert_int_equal(mvcc_put(m, S(key), val, sizeof(val), 0), 0);
	}
	t_put = now_ms() - t0;
	t0 = now_ms();
	assert_int_equal(mvcc_iter_init(&it, m, S("/registry/pods/00050000"), (const uint8_t *)"", 1, 0), 0);
	while (mvcc_iter_next(&it, &kv))
		n++;
	t_range = now_ms() - t0;
	assert_int_equal(n, 50000);
	t0 = now_ms();
	assert_int_equal(mvcc_encode(m, &buf, &len), 0);
	t_enc = now_ms() - t0;
	t0 = now_ms();
	assert_int_equal(mvcc_decode(d, buf, len), 0);
	t_dec = now_ms() - t0;
	t0 = now_ms();
	assert_int_equal(mvcc_compact(m, mvcc_rev(m)), 0);
	t_compact = now_ms() - t0;
	print_message("100k keys: put %.1f ms, count 50k %.1f ms, encode %.1f ms (%zu B), "
		      "decode %.1f ms, compact %.1f ms, mvcc_bytes %llu\n",
		      t_put, t_range, t_enc, len, t_dec, t_compact,
		      (unsigned long long)mvcc_bytes(m));
	/* generous bound so sanitizer builds pass; the target is < 100 ms */
	assert_true(t_enc < 1000);
	free(buf);
	mvcc_free(m);
	mvcc_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_put_revisions),
		cmocka_unit_test(test_delete_resets_version),
		cmocka_unit_test(test_historical_reads),
		cmocka_unit_test(test_range_forms),
		cmocka_unit_test(test_txn_revision),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_compaction_fresh),
		cmocka_unit_test(test_long_history),
		cmocka_unit_test(test_observer),
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_snapshot_roundtrip),
		cmocka_unit_test(test_snapshot_truncated),
		cmocka_unit_test(test_snapshot_mutations),
		cmocka_unit_test(test_snapshot_garbage),
		cmocka_unit_test(test_random_model),
		cmocka_unit_test(test_slab_memory),
		cmocka_unit_test(test_packed_layout),
		cmocka_unit_test(test_scale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
