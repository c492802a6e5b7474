/*
 * mvcc: the revisioned keyspace behind kvs (see mvcc.h for the invariants).
 *
 * Keys live in a red-black tree ordered by their bytes.  Each key node
 * holds its retained revisions oldest first, as pointers to records that
 * carry the value bytes inline; records are immutable once written, which
 * is what lets readers and responses point into them until a compaction.
 */
#include "server/mvcc.h"

#include <stdlib.h>
#include <string.h>

/* libbsd's RB_GENERATE_STATIC expects BSD's __unused, which glibc lacks. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "lib/err.h"

/* One revision of one key. */
struct mvcc_rec {
	int64_t mod;     /* main revision of the write */
	int64_t create;  /* 0 for a tombstone */
	int64_t version; /* 0 for a tombstone */
	int64_t lease;
	uint32_t sub;    /* order inside the main revision */
	uint32_t vlen;
	uint8_t val[];
};

/*
 * A key and its history.  With nrec <= 1 the record pointer is stored in
 * the node itself; beyond that in an array whose capacity is implied by
 * nrec (the next power of two), which saves a field on every key.
 */
struct mvcc_key {
	RB_ENTRY(mvcc_key) rb;
	union {
		struct mvcc_rec *one;
		struct mvcc_rec **many;
	} r;
	uint32_t nrec;
	uint32_t klen;
	uint8_t key[];
};

RB_HEAD(mvcc_tree, mvcc_key);

struct mvcc {
	struct mvcc_tree tree;
	int64_t rev;
	int64_t compact_rev;
	uint64_t bytes;
	uint64_t live;
	uint64_t nkeys;       /* nodes in the tree, tombstoned ones included */
	bool in_txn;
	uint32_t txn_changes; /* writes so far in the open transaction */
	mvcc_observer_fn observer;
	void *observer_arg;
	mvcc_commit_fn commit;
	void *commit_arg;
};

/* What one revision costs in mvcc_bytes besides its key and value: roughly
 * etcd's per-revision bbolt overhead (revision key + KeyValue framing). */
#define REC_OVERHEAD 48u

#define SNAP_MAGIC "RKVS"
#define SNAP_FORMAT 1u
#define SNAP_HEADER (4 + 4 + 8 + 8 + 8)
#define SNAP_KEY_FIXED (4 + 4)
#define SNAP_REC_FIXED (8 + 4 + 8 + 8 + 8 + 4)

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int node_cmp(const struct mvcc_key *a, const struct mvcc_key *b)
{
	return key_cmp(a->key, a->klen, b->key, b->klen);
}

RB_GENERATE_STATIC(mvcc_tree, mvcc_key, rb, node_cmp)

static struct mvcc_rec **node_recs(struct mvcc_key *n)
{
	return n->nrec <= 1 ? &n->r.one : n->r.many;
}

static struct mvcc_rec *node_rec(const struct mvcc_key *n, uint32_t i)
{
	return n->nrec <= 1 ? n->r.one : n->r.many[i];
}

static struct mvcc_rec *node_last(const struct mvcc_key *n)
{
	return node_rec(n, n->nrec - 1);
}

static uint32_t rec_cap(uint32_t nrec)
{
	uint32_t c = 2;
	while (c < nrec)
		c <<= 1;
	return c;
}

static bool rec_live(const struct mvcc_rec *r)
{
	return r->version != 0;
}

static uint64_t rec_bytes(const struct mvcc_key *n, const struct mvcc_rec *r)
{
	return (uint64_t)n->klen + r->vlen + REC_OVERHEAD;
}

/* Appends rec to n's history.  Returns 0 or -KV_ENOMEM (n unchanged). */
static int node_append(struct mvcc_key *n, struct mvcc_rec *rec)
{
	uint32_t nrec = n->nrec;
	if (nrec == UINT32_MAX)
		return -KV_ENOMEM;
	if (nrec == 0) {
		n->r.one = rec;
	} else if (nrec == 1) {
		struct mvcc_rec **arr = malloc(2 * sizeof(*arr));
		if (arr == NULL)
			return -KV_ENOMEM;
		arr[0] = n->r.one;
		arr[1] = rec;
		n->r.many = arr;
	} else {
		if (rec_cap(nrec) == nrec) {
			struct mvcc_rec **arr = realloc(n->r.many, (size_t)nrec * 2 * sizeof(*arr));
			if (arr == NULL)
				return -KV_ENOMEM;
			n->r.many = arr;
		}
		n->r.many[nrec] = rec;
	}
	n->nrec = nrec + 1;
	return 0;
}

/* Frees the first `drop` records of n (and shrinks its storage). */
static void node_drop_front(struct mvcc *m, struct mvcc_key *n, uint32_t drop)
{
	struct mvcc_rec **recs = node_recs(n);
	uint32_t left = n->nrec - drop;
	for (uint32_t i = 0; i < drop; i++) {
		m->bytes -= rec_bytes(n, recs[i]);
		free(recs[i]);
	}
	if (n->nrec <= 1) {
		n->nrec = left;
		return;
	}
	if (left <= 1) {
		struct mvcc_rec **arr = n->r.many;
		n->r.one = left ? arr[drop] : NULL;
		free(arr);
	} else {
		memmove(recs, recs + drop, (size_t)left * sizeof(*recs));
		if (rec_cap(left) < rec_cap(n->nrec)) {
			struct mvcc_rec **arr = realloc(recs, (size_t)rec_cap(left) * sizeof(*arr));
			if (arr != NULL)
				n->r.many = arr;
		}
	}
	n->nrec = left;
}

static void node_free(struct mvcc_key *n)
{
	struct mvcc_rec **recs = node_recs(n);
	for (uint32_t i = 0; i < n->nrec; i++)
		free(recs[i]);
	if (n->nrec > 1)
		free(n->r.many);
	free(n);
}

/* Index of the last record with mod <= rev, or -1. */
static long node_at(const struct mvcc_key *n, int64_t rev)
{
	long lo = 0, hi = (long)n->nrec - 1;
	if (node_last(n)->mod <= rev)
		return hi;
	while (lo <= hi) {
		long mid = lo + (hi - lo) / 2;
		if (node_rec(n, (uint32_t)mid)->mod <= rev)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return hi;
}

static void fill_kv(struct mvcc_kv *kv, const struct mvcc_key *n, const struct mvcc_rec *r)
{
	kv->key = n->key;
	kv->key_len = n->klen;
	kv->value = r->val;
	kv->value_len = r->vlen;
	kv->create_rev = r->create;
	kv->mod_rev = r->mod;
	kv->version = r->version;
	kv->lease = r->lease;
}

/* The node for exactly key, or (exact == false) the first node >= key. */
static struct mvcc_key *tree_find(const struct mvcc *m, const uint8_t *key, size_t klen, bool exact)
{
	struct mvcc_key *n = RB_ROOT(&m->tree), *ge = NULL;
	while (n != NULL) {
		int c = key_cmp(key, klen, n->key, n->klen);
		if (c == 0)
			return n;
		if (c < 0) {
			ge = n;
			n = RB_LEFT(n, rb);
		} else {
			n = RB_RIGHT(n, rb);
		}
	}
	return exact ? NULL : ge;
}

struct mvcc *mvcc_new(void)
{
	struct mvcc *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	RB_INIT(&m->tree);
	m->rev = 1;
	m->compact_rev = -1;
	return m;
}

static void mvcc_clear(struct mvcc *m)
{
	struct mvcc_key *n, *next;
	for (n = RB_MIN(mvcc_tree, &m->tree); n != NULL; n = next) {
		next = RB_NEXT(mvcc_tree, &m->tree, n);
		RB_REMOVE(mvcc_tree, &m->tree, n);
		node_free(n);
	}
	m->rev = 1;
	m->compact_rev = -1;
	m->bytes = 0;
	m->live = 0;
	m->nkeys = 0;
	m->in_txn = false;
	m->txn_changes = 0;
}

void mvcc_free(struct mvcc *m)
{
	if (m == NULL)
		return;
	mvcc_clear(m);
	free(m);
}

void mvcc_set_observer(struct mvcc *m, mvcc_observer_fn fn, void *arg)
{
	m->observer = fn;
	m->observer_arg = arg;
}

void mvcc_set_commit_hook(struct mvcc *m, mvcc_commit_fn fn, void *arg)
{
	m->commit = fn;
	m->commit_arg = arg;
}

int64_t mvcc_rev(const struct mvcc *m)
{
	return m->rev;
}

int64_t mvcc_read_rev(const struct mvcc *m)
{
	return m->rev + (m->in_txn && m->txn_changes > 0);
}

int64_t mvcc_compact_rev(const struct mvcc *m)
{
	return m->compact_rev;
}

uint64_t mvcc_bytes(const struct mvcc *m)
{
	return m->bytes;
}

uint64_t mvcc_live_keys(const struct mvcc *m)
{
	return m->live;
}

void mvcc_txn_begin(struct mvcc *m)
{
	m->in_txn = true;
	m->txn_changes = 0;
}

int64_t mvcc_txn_end(struct mvcc *m)
{
	bool changed = m->txn_changes > 0;
	if (changed)
		m->rev++;
	m->in_txn = false;
	m->txn_changes = 0;
	if (changed && m->commit != NULL)
		m->commit(m->commit_arg, m->rev);
	return m->rev;
}

static struct mvcc_rec *rec_new(struct mvcc *m, const uint8_t *val, size_t vlen)
{
	struct mvcc_rec *r = malloc(sizeof(*r) + vlen);
	if (r == NULL)
		return NULL;
	r->mod = m->rev + 1;
	r->sub = m->txn_changes;
	r->vlen = (uint32_t)vlen;
	if (vlen)
		memcpy(r->val, val, vlen);
	return r;
}

static void notify(struct mvcc *m, const struct mvcc_key *n, const struct mvcc_rec *r,
		   const struct mvcc_rec *prev)
{
	struct mvcc_kv kv, pkv;
	if (m->observer == NULL)
		return;
	fill_kv(&kv, n, r);
	if (prev != NULL)
		fill_kv(&pkv, n, prev);
	m->observer(m->observer_arg, &kv, prev ? &pkv : NULL);
}

static int put_locked(struct mvcc *m, const uint8_t *key, size_t klen, const uint8_t *val,
		      size_t vlen, int64_t lease)
{
	struct mvcc_key *n = tree_find(m, key, klen, true);
	struct mvcc_rec *prev = n ? node_last(n) : NULL, *r;
	bool fresh = false;
	int rv;

	if (prev != NULL && !rec_live(prev))
		prev = NULL;
	r = rec_new(m, val, vlen);
	if (r == NULL)
		return -KV_ENOMEM;
	r->lease = lease;
	r->create = prev ? prev->create : m->rev + 1;
	r->version = prev ? prev->version + 1 : 1;
	if (n == NULL) {
		n = malloc(sizeof(*n) + klen);
		if (n == NULL) {
			free(r);
			return -KV_ENOMEM;
		}
		n->nrec = 0;
		n->klen = (uint32_t)klen;
		memcpy(n->key, key, klen);
		fresh = true;
	}
	rv = node_append(n, r);
	if (rv != 0) {
		free(r);
		if (fresh)
			free(n);
		return rv;
	}
	if (fresh) {
		RB_INSERT(mvcc_tree, &m->tree, n);
		m->nkeys++;
	}
	if (prev == NULL)
		m->live++;
	m->bytes += rec_bytes(n, r);
	m->txn_changes++;
	notify(m, n, r, prev);
	return 0;
}

int mvcc_put(struct mvcc *m, const uint8_t *key, size_t key_len, const uint8_t *value,
	     size_t value_len, int64_t lease)
{
	int rv;
	if (key_len == 0 || key_len > UINT32_MAX || value_len > UINT32_MAX)
		return -KV_EINVAL;
	if (m->in_txn)
		return put_locked(m, key, key_len, value, value_len, lease);
	mvcc_txn_begin(m);
	rv = put_locked(m, key, key_len, value, value_len, lease);
	mvcc_txn_end(m);
	return rv;
}

static void range_setup(struct mvcc_iter *it, const struct mvcc *m, const uint8_t *key,
			size_t klen, const uint8_t *end, size_t elen)
{
	it->m = m;
	it->end = end;
	it->end_len = elen;
	it->single = elen == 0;
	it->unbounded = elen == 1 && end[0] == 0;
	it->node = tree_find(m, key, klen, it->single);
}

/* The next node in range, whatever its state at any revision. */
static struct mvcc_key *range_next_node(struct mvcc_iter *it)
{
	struct mvcc_key *n = it->node;
	if (n == NULL)
		return NULL;
	if (it->single) {
		it->node = NULL;
		return n;
	}
	if (!it->unbounded && key_cmp(n->key, n->klen, it->end, it->end_len) >= 0) {
		it->node = NULL;
		return NULL;
	}
	it->node = RB_NEXT(mvcc_tree, &((struct mvcc *)it->m)->tree, n);
	return n;
}

static int delete_locked(struct mvcc *m, const uint8_t *key, size_t klen, const uint8_t *end,
			 size_t elen, int64_t *deleted)
{
	struct mvcc_iter it;
	struct mvcc_key *n;
	int64_t count = 0;

	range_setup(&it, m, key, klen, end, elen);
	/* Tombstoning never adds or removes nodes, so walking on is safe. */
	while ((n = range_next_node(&it)) != NULL) {
		struct mvcc_rec *prev = node_last(n), *r;
		int rv;
		if (!rec_live(prev))
			continue;
		r = rec_new(m, NULL, 0);
		if (r == NULL)
			return -KV_ENOMEM;
		r->create = 0;
		r->version = 0;
		r->lease = 0;
		rv = node_append(n, r);
		if (rv != 0) {
			free(r);
			return rv;
		}
		m->live--;
		m->bytes += rec_bytes(n, r);
		m->txn_changes++;
		count++;
		notify(m, n, r, prev);
	}
	if (deleted != NULL)
		*deleted = count;
	return 0;
}

int mvcc_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len, const uint8_t *end,
		      size_t end_len, int64_t *deleted)
{
	int rv;
	if (deleted != NULL)
		*deleted = 0;
	if (key_len == 0)
		return -KV_EINVAL;
	if (m->in_txn)
		return delete_locked(m, key, key_len, end, end_len, deleted);
	mvcc_txn_begin(m);
	rv = delete_locked(m, key, key_len, end, end_len, deleted);
	mvcc_txn_end(m);
	return rv;
}

int mvcc_iter_init(struct mvcc_iter *it, const struct mvcc *m, const uint8_t *key, size_t key_len,
		   const uint8_t *end, size_t end_len, int64_t rev)
{
	int64_t cur = mvcc_read_rev(m);
	it->node = NULL;
	if (rev > cur)
		return -KV_EFUTUREREV;
	if (rev <= 0)
		rev = cur;
	if (rev < m->compact_rev)
		return -KV_ECOMPACTED;
	range_setup(it, m, key, key_len, end, end_len);
	it->rev = rev;
	return 0;
}

bool mvcc_iter_next(struct mvcc_iter *it, struct mvcc_kv *kv)
{
	struct mvcc_key *n;
	while ((n = range_next_node(it)) != NULL) {
		long i = node_at(n, it->rev);
		struct mvcc_rec *r;
		if (i < 0)
			continue;
		r = node_rec(n, (uint32_t)i);
		if (!rec_live(r))
			continue;
		fill_kv(kv, n, r);
		return true;
	}
	return false;
}

uint64_t mvcc_changes(const struct mvcc *m, const uint8_t *key, size_t key_len, const uint8_t *end,
		      size_t end_len, int64_t from_rev, int64_t to_rev, mvcc_change_fn fn, void *arg)
{
	struct mvcc_iter it;
	struct mvcc_key *n;
	uint64_t visited = 0;

	if (key_len == 0 || from_rev > to_rev)
		return 0;
	range_setup(&it, m, key, key_len, end, end_len);
	while ((n = range_next_node(&it)) != NULL) {
		visited++;
		/* First record at or after from_rev: past the last one before. */
		uint32_t i = (uint32_t)(node_at(n, from_rev - 1) + 1);
		for (; i < n->nrec; i++) {
			const struct mvcc_rec *r = node_rec(n, i), *p;
			struct mvcc_kv kv, pkv;
			if (r->mod > to_rev)
				break;
			p = i > 0 ? node_rec(n, i - 1) : NULL;
			if (p != NULL && !rec_live(p))
				p = NULL;
			fill_kv(&kv, n, r);
			if (p != NULL)
				fill_kv(&pkv, n, p);
			fn(arg, &kv, p ? &pkv : NULL, r->sub);
		}
	}
	return visited;
}

bool mvcc_get(const struct mvcc *m, const uint8_t *key, size_t key_len, struct mvcc_kv *kv)
{
	struct mvcc_key *n = tree_find(m, key, key_len, true);
	struct mvcc_rec *r;
	if (n == NULL)
		return false;
	r = node_last(n);
	if (!rec_live(r))
		return false;
	fill_kv(kv, n, r);
	return true;
}

int mvcc_compact(struct mvcc *m, int64_t rev)
{
	struct mvcc_key *n, *next;
	if (rev <= m->compact_rev)
		return -KV_ECOMPACTED;
	if (rev > m->rev)
		return -KV_EFUTUREREV;
	for (n = RB_MIN(mvcc_tree, &m->tree); n != NULL; n = next) {
		long i = node_at(n, rev);
		uint32_t drop;
		next = RB_NEXT(mvcc_tree, &m->tree, n);
		if (i < 0)
			continue;
		/* etcd keyIndex.compact: keep the latest revision <= rev unless
		 * it is a tombstone, and everything newer. */
		drop = (uint32_t)i + !rec_live(node_rec(n, (uint32_t)i));
		if (drop == 0)
			continue;
		node_drop_front(m, n, drop);
		if (n->nrec == 0) {
			RB_REMOVE(mvcc_tree, &m->tree, n);
			node_free(n);
			m->nkeys--;
		}
	}
	m->compact_rev = rev;
	return 0;
}

/* ---- CRC-32C ----------------------------------------------------------- */

static uint32_t crc_table[256];
static bool crc_table_ready;

static void crc_init_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
	crc_table_ready = true;
}

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t len)
{
	if (!crc_table_ready)
		crc_init_table();
	while (len--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The SSE4.2 instruction computes exactly this polynomial, ~20x faster:
 * hashing or snapshotting a full store must not stall the event loop. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64 = c;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

static int crc_have_hw = -1;
#endif

uint32_t mvcc_crc32c(uint32_t crc, const void *buf, size_t len)
{
	uint32_t c = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
	if (crc_have_hw < 0)
		crc_have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (crc_have_hw)
		return ~crc_hw(c, buf, len);
#endif
	return ~crc_soft(c, buf, len);
}

/* ---- little-endian encoding -------------------------------------------- */

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	return p + 8;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* The fixed part of a record, as hashed and as snapshotted. */
static uint8_t *put_rec_fixed(uint8_t *p, const struct mvcc_rec *r)
{
	p = put_u64(p, (uint64_t)r->mod);
	p = put_u32(p, r->sub);
	p = put_u64(p, (uint64_t)r->create);
	p = put_u64(p, (uint64_t)r->version);
	p = put_u64(p, (uint64_t)r->lease);
	return put_u32(p, r->vlen);
}

static uint32_t hash_rec(uint32_t h, const struct mvcc_key *n, const struct mvcc_rec *r)
{
	uint8_t buf[4 + SNAP_REC_FIXED];
	put_rec_fixed(put_u32(buf, n->klen), r);
	h = mvcc_crc32c(h, buf, sizeof(buf));
	h = mvcc_crc32c(h, n->key, n->klen);
	return mvcc_crc32c(h, r->val, r->vlen);
}

int mvcc_hash_kv(struct mvcc *m, int64_t rev, uint32_t *hash, int64_t *compact_rev)
{
	int64_t c = m->compact_rev;
	struct mvcc_key *n;
	uint32_t h = 0;

	*hash = 0;
	*compact_rev = c;
	if (rev > 0 && rev <= c)
		return -KV_ECOMPACTED;
	if (rev > m->rev)
		return -KV_EFUTUREREV;
	if (rev <= 0)
		rev = m->rev;
	RB_FOREACH(n, mvcc_tree, &m->tree)
	{
		long last = node_at(n, rev);
		for (long i = 0; i <= last; i++) {
			struct mvcc_rec *r = node_rec(n, (uint32_t)i);
			if (r->mod > c || (i == last && rec_live(r)))
				h = hash_rec(h, n, r);
		}
	}
	*hash = h;
	return 0;
}

int mvcc_hash(struct mvcc *m, uint32_t *hash)
{
	uint8_t buf[16];
	struct mvcc_key *n;
	uint32_t h;

	put_u64(put_u64(buf, (uint64_t)m->rev), (uint64_t)m->compact_rev);
	h = mvcc_crc32c(0, buf, sizeof(buf));
	RB_FOREACH(n, mvcc_tree, &m->tree)
	{
		for (uint32_t i = 0; i < n->nrec; i++)
			h = hash_rec(h, n, node_rec(n, i));
	}
	*hash = h;
	return 0;
}

/* ---- snapshots ----------------------------------------------------------
 *
 *   image := "RKVS" | format u32 | rev i64 | compact_rev i64 | nkeys u64
 *            | nkeys × key | crc32c u32 (of everything before it)
 *   key   := klen u32 | key bytes | nrec u32 | nrec × rec   (keys ascending)
 *   rec   := mod i64 | sub u32 | create i64 | version i64 | lease i64
 *            | vlen u32 | value bytes          (oldest first)
 * All integers little-endian.
 */

int mvcc_encode(const struct mvcc *m, uint8_t **data, size_t *len)
{
	struct mvcc_key *n;
	size_t size = SNAP_HEADER + 4;
	uint8_t *buf, *p;

	*data = NULL;
	*len = 0;
	RB_FOREACH(n, mvcc_tree, &((struct mvcc *)m)->tree)
	{
		size += SNAP_KEY_FIXED + n->klen;
		for (uint32_t i = 0; i < n->nrec; i++)
			size += SNAP_REC_FIXED + node_rec(n, i)->vlen;
	}
	buf = malloc(size);
	if (buf == NULL)
		return -KV_ENOMEM;
	memcpy(buf, SNAP_MAGIC, 4);
	p = put_u32(buf + 4, SNAP_FORMAT);
	p = put_u64(p, (uint64_t)m->rev);
	p = put_u64(p, (uint64_t)m->compact_rev);
	p = put_u64(p, m->nkeys);
	RB_FOREACH(n, mvcc_tree, &((struct mvcc *)m)->tree)
	{
		p = put_u32(p, n->klen);
		memcpy(p, n->key, n->klen);
		p = put_u32(p + n->klen, n->nrec);
		for (uint32_t i = 0; i < n->nrec; i++) {
			const struct mvcc_rec *r = node_rec(n, i);
			p = put_rec_fixed(p, r);
			memcpy(p, r->val, r->vlen);
			p += r->vlen;
		}
	}
	p = put_u32(p, mvcc_crc32c(0, buf, (size_t)(p - buf)));
	*data = buf;
	*len = size;
	return 0;
}

struct cursor {
	const uint8_t *p, *end;
};

static bool cur_need(const struct cursor *c, size_t n)
{
	return (size_t)(c->end - c->p) >= n;
}

/* Checks one record against the previous one of the same key (NULL for the
 * first): the history must be one that mvcc itself could have produced. */
static bool rec_valid(const struct mvcc_rec *r, const struct mvcc_rec *prev, int64_t rev,
		      int64_t compact_rev)
{
	if (r->mod < 1 || r->mod > rev || r->sub > INT32_MAX)
		return false;
	if (r->version == 0) {
		if (r->create != 0 || r->lease != 0 || r->vlen != 0)
			return false;
	} else if (r->version < 0 || r->create < 1 || r->create > r->mod) {
		return false;
	}
	if (prev == NULL) {
		/* Compaction keeps at most one revision <= compact_rev, never a
		 * tombstone, and a history never starts with one. */
		return r->version != 0;
	}
	if (r->mod <= compact_rev)
		return false;
	if (r->mod < prev->mod || (r->mod == prev->mod && r->sub <= prev->sub))
		return false;
	if (prev->version == 0)
		return r->version == 1 && r->create == r->mod;
	if (r->version == 0)
		return true;
	return r->create == prev->create && r->version == prev->version + 1;
}

static int decode_key(struct mvcc *m, struct cursor *c, struct mvcc_key **last)
{
	uint32_t klen, nrec;
	struct mvcc_key *n;
	struct mvcc_rec *prev = NULL;

	if (!cur_need(c, 4))
		return -KV_ECORRUPT;
	klen = get_u32(c->p);
	c->p += 4;
	if (klen == 0 || !cur_need(c, (size_t)klen + 4))
		return -KV_ECORRUPT;
	if (*last != NULL && key_cmp((*last)->key, (*last)->klen, c->p, klen) >= 0)
		return -KV_ECORRUPT;
	nrec = get_u32(c->p + klen);
	if (nrec == 0 || nrec > (size_t)(c->end - c->p - klen - 4) / SNAP_REC_FIXED)
		return -KV_ECORRUPT;
	n = malloc(sizeof(*n) + klen);
	if (n == NULL)
		return -KV_ENOMEM;
	n->nrec = 0;
	n->klen = klen;
	memcpy(n->key, c->p, klen);
	c->p += klen + 4;
	/* Linked in first so mvcc_clear frees it on any later error. */
	RB_INSERT(mvcc_tree, &m->tree, n);
	m->nkeys++;
	*last = n;
	for (uint32_t i = 0; i < nrec; i++) {
		struct mvcc_rec hdr, *r;
		if (!cur_need(c, SNAP_REC_FIXED))
			return -KV_ECORRUPT;
		hdr.mod = (int64_t)get_u64(c->p);
		hdr.sub = get_u32(c->p + 8);
		hdr.create = (int64_t)get_u64(c->p + 12);
		hdr.version = (int64_t)get_u64(c->p + 20);
		hdr.lease = (int64_t)get_u64(c->p + 28);
		hdr.vlen = get_u32(c->p + 36);
		c->p += SNAP_REC_FIXED;
		if (!cur_need(c, hdr.vlen) || !rec_valid(&hdr, prev, m->rev, m->compact_rev))
			return -KV_ECORRUPT;
		r = malloc(sizeof(*r) + hdr.vlen);
		if (r == NULL)
			return -KV_ENOMEM;
		*r = hdr;
		memcpy(r->val, c->p, hdr.vlen);
		c->p += hdr.vlen;
		if (node_append(n, r) != 0) {
			free(r);
			return -KV_ENOMEM;
		}
		m->bytes += rec_bytes(n, r);
		prev = r;
	}
	if (rec_live(prev))
		m->live++;
	return 0;
}

static int decode_body(struct mvcc *m, const uint8_t *data, size_t len)
{
	struct cursor c;
	struct mvcc_key *last = NULL;
	uint64_t nkeys;

	if (len < SNAP_HEADER + 4 || memcmp(data, SNAP_MAGIC, 4) != 0)
		return -KV_ECORRUPT;
	if (get_u32(data + 4) != SNAP_FORMAT)
		return -KV_ECORRUPT;
	if (get_u32(data + len - 4) != mvcc_crc32c(0, data, len - 4))
		return -KV_ECORRUPT;
	m->rev = (int64_t)get_u64(data + 8);
	m->compact_rev = (int64_t)get_u64(data + 16);
	nkeys = get_u64(data + 24);
	if (m->rev < 1 || m->compact_rev < -1 || m->compact_rev > m->rev)
		return -KV_ECORRUPT;
	c.p = data + SNAP_HEADER;
	c.end = data + len - 4;
	if (nkeys > (size_t)(c.end - c.p) / (SNAP_KEY_FIXED + 1 + SNAP_REC_FIXED))
		return -KV_ECORRUPT;
	for (uint64_t i = 0; i < nkeys; i++) {
		int rv = decode_key(m, &c, &last);
		if (rv != 0)
			return rv;
	}
	return c.p == c.end ? 0 : -KV_ECORRUPT;
}

int mvcc_decode(struct mvcc *into_empty, const uint8_t *data, size_t len)
{
	struct mvcc *m = into_empty;
	int rv;
	if (m->nkeys != 0 || m->rev != 1 || m->compact_rev != -1 || m->in_txn)
		return -KV_EINVAL;
	rv = decode_body(m, data, len);
	if (rv != 0)
		mvcc_clear(m);
	return rv;
}
