/*
 * lease: the lease table (see lease.h), etcd 3.4's lessor without threads
 * or clocks.
 *
 * Leases live in a red-black tree by ID.  Each lease keeps its attached
 * keys in a tree of its own, so a revoke deletes them in key order (etcd
 * sorts them too: sub-revisions and hashes must agree on every member) and
 * LeaseTimeToLive lists them without scanning the store.  kvs reports every
 * attach and detach (kvs_lease_ops); the store also records each key's
 * lease, which is how a restored snapshot rebuilds the key sets.
 *
 * On the primary, a second tree orders leases by due time: the deadline,
 * or, once expired and handed out for revocation, the time to propose the
 * revoke again.  The expiry check only looks at the minimum.
 */
#include "server/lease.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* libbsd's RB_GENERATE_STATIC expects BSD's __unused, which glibc lacks. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/kvs.h"
#include "server/mvcc.h"

/* Snapshot image: magic | version u32 | count u64 | count × (id i64, ttl
 * i64) | CRC-32C u32 of everything before it.  Little-endian. */
#define LEASE_IMG_MAGIC "RKVL"
#define LEASE_IMG_VERSION 1u
#define LEASE_IMG_HEADER 16u
#define LEASE_IMG_ENTRY 16u
#define LEASE_IMG_TRAILER 4u

/* etcd's Promote spreads piled-up deadlines once there are this many
 * leases (leaseRevokeRate), aiming at 3/4 of that rate per second. */
#define LEASE_REVOKE_RATE 1000

struct lease_key {
	RB_ENTRY(lease_key) rb;
	const uint8_t *k; /* = bytes, or the caller's key in a lookup */
	size_t len;
	uint8_t bytes[];
};

RB_HEAD(lease_keys, lease_key);

struct lease {
	RB_ENTRY(lease) by_id;
	RB_ENTRY(lease) by_due;
	int64_t id;
	int64_t ttl;
	uint64_t expiry_us; /* LEASE_FOREVER unless primary */
	uint64_t due_us;    /* position in the due tree */
	bool queued;        /* in the due tree */
	uint64_t nkeys;
	struct lease_keys keys;
};

RB_HEAD(lease_ids, lease);
RB_HEAD(lease_dues, lease);

struct lease_table {
	struct lease_ids ids;
	struct lease_dues dues;
	uint64_t count;
	uint64_t attached;
	bool primary;
	/* Server-chosen IDs: the raft index last seen and how many IDs it
	 * already gave out. */
	uint64_t auto_index;
	uint64_t auto_seq;
	uint64_t id_salt; /* from the cluster id: other clusters, other IDs */
	struct kvs_lease_ops ops;
};

static int key_cmp(const struct lease_key *a, const struct lease_key *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = n ? memcmp(a->k, b->k, n) : 0;
	if (c != 0)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

static int id_cmp(const struct lease *a, const struct lease *b)
{
	return a->id < b->id ? -1 : a->id > b->id;
}

static int due_cmp(const struct lease *a, const struct lease *b)
{
	if (a->due_us != b->due_us)
		return a->due_us < b->due_us ? -1 : 1;
	return id_cmp(a, b);
}

RB_GENERATE_STATIC(lease_keys, lease_key, rb, key_cmp)
RB_GENERATE_STATIC(lease_ids, lease, by_id, id_cmp)
RB_GENERATE_STATIC(lease_dues, lease, by_due, due_cmp)

/* --- helpers -------------------------------------------------------------- */

static struct lease *lease_find(const struct lease_table *t, int64_t id)
{
	struct lease q;
	q.id = id;
	return RB_FIND(lease_ids, (struct lease_ids *)&t->ids, &q);
}

static void lease_unqueue(struct lease_table *t, struct lease *l)
{
	if (l->queued) {
		RB_REMOVE(lease_dues, &t->dues, l);
		l->queued = false;
	}
}

static void lease_queue(struct lease_table *t, struct lease *l, uint64_t due_us)
{
	lease_unqueue(t, l);
	l->due_us = due_us;
	RB_INSERT(lease_dues, &t->dues, l);
	l->queued = true;
}

static uint64_t ttl_us(int64_t ttl)
{
	return (uint64_t)ttl * 1000000u; /* ttl <= LEASE_MAX_TTL: no overflow */
}

/* Sets the deadline to now + offset_us (at least now) and queues it. */
static void lease_refresh(struct lease_table *t, struct lease *l, uint64_t now_us,
			  int64_t offset_us)
{
	uint64_t exp = offset_us > 0 ? now_us + (uint64_t)offset_us : now_us;
	l->expiry_us = exp;
	lease_queue(t, l, exp);
}

static void lease_free_keys(struct lease *l)
{
	struct lease_key *k, *next;
	for (k = RB_MIN(lease_keys, &l->keys); k != NULL; k = next) {
		next = RB_NEXT(lease_keys, &l->keys, k);
		RB_REMOVE(lease_keys, &l->keys, k);
		free(k);
	}
	l->nkeys = 0;
}

/* Forgets a lease entirely (its keys were deleted or are being dropped). */
static void lease_remove(struct lease_table *t, struct lease *l)
{
	lease_unqueue(t, l);
	RB_REMOVE(lease_ids, &t->ids, l);
	t->count--;
	t->attached -= l->nkeys;
	lease_free_keys(l);
	free(l);
}

static void table_clear(struct lease_table *t)
{
	struct lease *l;
	while ((l = RB_MIN(lease_ids, &t->ids)) != NULL)
		lease_remove(t, l);
}

/* --- kvs hooks ----------------------------------------------------------- */

static int ops_exists(void *arg, int64_t id)
{
	return lease_table_exists(arg, id);
}

/* kvs checked the lease before writing; the one case left (ignore_lease on
 * a key whose lease is unknown: a store restored without it) must not fail
 * a write that is already in the store. */
static int ops_attach(void *arg, int64_t id, const uint8_t *key, size_t len)
{
	int rv = lease_table_attach(arg, id, key, len);
	return rv == -KV_ENOMEM ? rv : 0;
}

static void ops_detach(void *arg, int64_t id, const uint8_t *key, size_t len)
{
	lease_table_detach(arg, id, key, len);
}

static uint64_t ops_attached(void *arg)
{
	return lease_table_attached_keys(arg);
}

/* A bijection of the 63-bit integers (xor-shifts and odd multipliers), so
 * that IDs look random, as etcd's do, while staying unique. */
static uint64_t mix63(uint64_t x)
{
	const uint64_t m = (uint64_t)INT64_MAX;
	x &= m;
	x ^= x >> 31;
	x = (x * 0x7fb5d329728ea185ull) & m;
	x ^= x >> 27;
	x = (x * 0x81dadef4bc2dd44dull) & m;
	x ^= x >> 33;
	return x;
}

/* --- lifecycle ----------------------------------------------------------- */

struct lease_table *lease_table_new(void)
{
	struct lease_table *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	RB_INIT(&t->ids);
	RB_INIT(&t->dues);
	t->ops.exists = ops_exists;
	t->ops.attach = ops_attach;
	t->ops.detach = ops_detach;
	t->ops.attached = ops_attached;
	t->ops.arg = t;
	return t;
}

void lease_table_free(struct lease_table *t)
{
	if (t == NULL)
		return;
	table_clear(t);
	free(t);
}

void lease_table_set_id_salt(struct lease_table *t, uint64_t cluster_id)
{
	t->id_salt = mix63(cluster_id);
}

const struct kvs_lease_ops *lease_table_kvs_ops(struct lease_table *t)
{
	return &t->ops;
}

int64_t lease_min_ttl(unsigned heartbeat_ms, unsigned election_ms)
{
	uint64_t ticks, ms;
	if (heartbeat_ms == 0)
		return 1;
	ticks = election_ms / heartbeat_ms;
	ms = (3 * ticks / 2) * heartbeat_ms;
	return ms == 0 ? 1 : (int64_t)((ms + 999) / 1000);
}

/* --- replicated state ---------------------------------------------------- */

/* (raft index << 16) + rank among the server-chosen IDs of its entry,
 * mixed: the same on every member, positive, and never repeated during the
 * cluster's life (an entry, at most PROP_BATCH_BYTES, cannot carry 2^16
 * grants, and indexes stay far below 2^47).  origin is unused: the index
 * alone is unique.  A clash with a client-chosen ID moves to the next free
 * value. */
static int64_t lease_auto_id(struct lease_table *t, uint64_t origin, uint64_t index)
{
	uint64_t v;
	(void)origin;
	if (index != t->auto_index) {
		t->auto_index = index;
		t->auto_seq = 0;
	}
	v = mix63((index << 16) + t->auto_seq++) ^ t->id_salt;
	while (v == 0 || lease_find(t, (int64_t)v) != NULL)
		v = (v + 1) & (uint64_t)INT64_MAX;
	return (int64_t)v;
}

int lease_table_grant(struct lease_table *t, int64_t id, int64_t ttl, uint64_t origin,
		      uint64_t index, uint64_t now_us, int64_t *out_id, int64_t *out_ttl)
{
	struct lease *l;

	if (ttl > LEASE_MAX_TTL)
		return -KV_ELEASETTLTOOLARGE;
	if (ttl < 1)
		ttl = 1;
	if (id == 0)
		id = lease_auto_id(t, origin, index);
	else if (lease_find(t, id) != NULL)
		return -KV_ELEASEEXIST;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -KV_ENOMEM;
	l->id = id;
	l->ttl = ttl;
	l->expiry_us = LEASE_FOREVER;
	RB_INIT(&l->keys);
	RB_INSERT(lease_ids, &t->ids, l);
	t->count++;
	if (t->primary)
		lease_refresh(t, l, now_us, (int64_t)ttl_us(ttl));
	*out_id = id;
	*out_ttl = ttl;
	return 0;
}

int lease_table_revoke(struct lease_table *t, struct mvcc *m, int64_t id)
{
	struct lease *l = lease_find(t, id);
	struct lease_key *k;
	int rv = 0;

	if (l == NULL)
		return -KV_ELEASENOTFOUND;
	if (l->nkeys > 0) {
		/* One transaction: one revision for all the deletes. */
		mvcc_txn_begin(m);
		RB_FOREACH(k, lease_keys, &l->keys)
		{
			rv = mvcc_delete_range(m, k->bytes, k->len, NULL, 0, NULL);
			if (rv != 0)
				break;
		}
		mvcc_txn_end(m);
		if (rv != 0)
			return rv;
	}
	lease_remove(t, l);
	return 0;
}

static Etcdserverpb__ResponseHeader *header_new(struct arena *a, int64_t rev)
{
	Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof(*h));
	if (h == NULL)
		return NULL;
	etcdserverpb__response_header__init(h);
	h->revision = rev;
	return h;
}

int lease_apply_grant(struct lease_table *t, const Etcdserverpb__LeaseGrantRequest *r,
		      uint64_t origin, uint64_t index, uint64_t now_us, int64_t rev,
		      struct arena *a, Etcdserverpb__LeaseGrantResponse *out)
{
	int64_t id, ttl;
	int rv;

	etcdserverpb__lease_grant_response__init(out);
	rv = lease_table_grant(t, r->id, r->ttl, origin, index, now_us, &id, &ttl);
	if (rv != 0)
		return rv;
	out->header = header_new(a, rev);
	if (out->header == NULL)
		return -KV_ENOMEM;
	out->id = id;
	out->ttl = ttl;
	return 0;
}

int lease_apply_revoke(struct lease_table *t, struct mvcc *m,
		       const Etcdserverpb__LeaseRevokeRequest *r, struct arena *a,
		       Etcdserverpb__LeaseRevokeResponse *out)
{
	int rv;

	etcdserverpb__lease_revoke_response__init(out);
	rv = lease_table_revoke(t, m, r->id);
	if (rv != 0)
		return rv;
	out->header = header_new(a, mvcc_rev(m));
	return out->header ? 0 : -KV_ENOMEM;
}

int lease_table_attach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len)
{
	struct lease *l = lease_find(t, id);
	struct lease_key q, *k;

	if (l == NULL)
		return -KV_ELEASENOTFOUND;
	q.k = key;
	q.len = len;
	if (RB_FIND(lease_keys, &l->keys, &q) != NULL)
		return 0;
	k = malloc(sizeof(*k) + len);
	if (k == NULL)
		return -KV_ENOMEM;
	if (len > 0)
		memcpy(k->bytes, key, len);
	k->k = k->bytes;
	k->len = len;
	RB_INSERT(lease_keys, &l->keys, k);
	l->nkeys++;
	t->attached++;
	return 0;
}

void lease_table_detach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len)
{
	struct lease *l = lease_find(t, id);
	struct lease_key q, *k;

	if (l == NULL)
		return;
	q.k = key;
	q.len = len;
	k = RB_FIND(lease_keys, &l->keys, &q);
	if (k == NULL)
		return;
	RB_REMOVE(lease_keys, &l->keys, k);
	free(k);
	l->nkeys--;
	t->attached--;
}

/* --- queries ------------------------------------------------------------- */

static void lease_fill_info(const struct lease *l, struct lease_info *info)
{
	info->id = l->id;
	info->ttl = l->ttl;
	info->expiry_us = l->expiry_us;
	info->nkeys = l->nkeys;
}

bool lease_table_exists(const struct lease_table *t, int64_t id)
{
	return lease_find(t, id) != NULL;
}

bool lease_table_get(const struct lease_table *t, int64_t id, struct lease_info *info)
{
	const struct lease *l = lease_find(t, id);
	if (l == NULL)
		return false;
	lease_fill_info(l, info);
	return true;
}

uint64_t lease_table_count(const struct lease_table *t)
{
	return t->count;
}

uint64_t lease_table_attached_keys(const struct lease_table *t)
{
	return t->attached;
}

uint64_t lease_table_keys(const struct lease_table *t, int64_t id, lease_key_fn fn, void *arg)
{
	struct lease *l = lease_find(t, id);
	struct lease_key *k;
	uint64_t n = 0;

	if (l == NULL)
		return 0;
	RB_FOREACH(k, lease_keys, &l->keys)
	{
		fn(arg, k->bytes, k->len);
		n++;
	}
	return n;
}

void lease_table_each(const struct lease_table *t, lease_fn fn, void *arg)
{
	struct lease_table *mt = (struct lease_table *)t; /* RB macros take no const */
	struct lease_info info;
	struct lease *l;

	if (t->primary) {
		RB_FOREACH(l, lease_dues, &mt->dues)
		{
			lease_fill_info(l, &info);
			fn(arg, &info);
		}
	} else {
		RB_FOREACH(l, lease_ids, &mt->ids)
		{
			lease_fill_info(l, &info);
			fn(arg, &info);
		}
	}
}

int64_t lease_remaining_seconds(const struct lease_info *info, uint64_t now_us)
{
	int64_t left;
	if (info->expiry_us == LEASE_FOREVER)
		return INT64_MAX / 1000000000; /* Go: time.Duration(math.MaxInt64) */
	if (info->expiry_us >= now_us)
		left = (int64_t)(info->expiry_us - now_us);
	else
		left = -(int64_t)(now_us - info->expiry_us);
	return left / 1000000; /* truncates toward zero, as int64(d.Seconds()) */
}

/* --- leader-only expiry --------------------------------------------------- */

bool lease_table_is_primary(const struct lease_table *t)
{
	return t->primary;
}

/* etcd's Promote: with many leases, deadlines that would pile up inside
 * one second are pushed back so that at most 3/4 of the revoke rate fall
 * due per second. */
static void lease_spread(struct lease_table *t, uint64_t now_us, uint64_t extend_us)
{
	const int64_t target = (3 * LEASE_REVOKE_RATE) / 4;
	struct lease **v, *l;
	int64_t base, next, expires = 0;
	uint64_t i = 0, n = t->count;

	v = malloc(n * sizeof(*v));
	if (v == NULL)
		return; /* an optimisation only */
	RB_FOREACH(l, lease_dues, &t->dues)
		v[i++] = l;
	base = (int64_t)(v[0]->expiry_us - now_us);
	next = base + 1000000;
	for (i = 0; i < n; i++) {
		int64_t remaining, delay;
		l = v[i];
		remaining = (int64_t)(l->expiry_us - now_us);
		if (remaining > next) {
			base = remaining;
			next = base + 1000000;
			expires = 1;
			continue;
		}
		expires++;
		if (expires <= target)
			continue;
		delay = 1000000 * expires / target - (remaining - base);
		next = base + delay;
		lease_refresh(t, l, now_us, delay + (int64_t)extend_us + (int64_t)ttl_us(l->ttl));
	}
	free(v);
}

void lease_table_promote(struct lease_table *t, uint64_t now_us, uint64_t extend_us)
{
	struct lease *l;

	t->primary = true;
	RB_FOREACH(l, lease_ids, &t->ids)
		lease_refresh(t, l, now_us, (int64_t)(extend_us + ttl_us(l->ttl)));
	if (t->count >= LEASE_REVOKE_RATE)
		lease_spread(t, now_us, extend_us);
}

void lease_table_demote(struct lease_table *t)
{
	struct lease *l;

	t->primary = false;
	RB_FOREACH(l, lease_ids, &t->ids)
	{
		l->expiry_us = LEASE_FOREVER;
		l->queued = false;
	}
	RB_INIT(&t->dues);
}

int lease_table_renew(struct lease_table *t, int64_t id, uint64_t now_us, int64_t *ttl)
{
	struct lease *l;

	if (!t->primary)
		return -KV_ENOTLEADER;
	l = lease_find(t, id);
	if (l == NULL || l->expiry_us <= now_us)
		return -KV_ELEASENOTFOUND;
	lease_refresh(t, l, now_us, (int64_t)ttl_us(l->ttl));
	*ttl = l->ttl;
	return 0;
}

bool lease_table_next_expired(struct lease_table *t, uint64_t now_us, int64_t *id)
{
	struct lease *l;

	if (!t->primary)
		return false;
	l = RB_MIN(lease_dues, &t->dues);
	if (l == NULL || l->due_us > now_us)
		return false;
	lease_queue(t, l, now_us + LEASE_RETRY_US);
	*id = l->id;
	return true;
}

uint64_t lease_table_next_deadline(const struct lease_table *t)
{
	struct lease *l = RB_MIN(lease_dues, (struct lease_dues *)&t->dues);
	return l != NULL ? l->due_us : LEASE_FOREVER;
}

/* --- snapshots ------------------------------------------------------------ */

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

int lease_table_encode(const struct lease_table *t, uint8_t **data, size_t *len)
{
	size_t n = LEASE_IMG_HEADER + (size_t)t->count * LEASE_IMG_ENTRY + LEASE_IMG_TRAILER;
	uint8_t *buf = malloc(n), *p;
	struct lease *l;

	if (buf == NULL)
		return -KV_ENOMEM;
	memcpy(buf, LEASE_IMG_MAGIC, 4);
	put_u32(buf + 4, LEASE_IMG_VERSION);
	put_u64(buf + 8, t->count);
	p = buf + LEASE_IMG_HEADER;
	RB_FOREACH(l, lease_ids, (struct lease_ids *)&t->ids)
	{
		put_u64(p, (uint64_t)l->id);
		put_u64(p + 8, (uint64_t)l->ttl);
		p += LEASE_IMG_ENTRY;
	}
	put_u32(p, mvcc_crc32c(0, buf, (size_t)(p - buf)));
	*data = buf;
	*len = n;
	return 0;
}

/* Decodes an image into an empty table: 0, -KV_ECORRUPT, -KV_ENOMEM. */
static int lease_decode(struct lease_table *t, const uint8_t *img, size_t len)
{
	const uint8_t *p;
	uint64_t count, i;
	int64_t prev = 0;

	if (len < LEASE_IMG_HEADER + LEASE_IMG_TRAILER || memcmp(img, LEASE_IMG_MAGIC, 4) != 0)
		return -KV_ECORRUPT;
	if (get_u32(img + 4) != LEASE_IMG_VERSION)
		return -KV_ECORRUPT;
	count = get_u64(img + 8);
	/* The count must account for exactly the bytes present. */
	if (count > (len - LEASE_IMG_HEADER - LEASE_IMG_TRAILER) / LEASE_IMG_ENTRY ||
	    LEASE_IMG_HEADER + count * LEASE_IMG_ENTRY + LEASE_IMG_TRAILER != len)
		return -KV_ECORRUPT;
	if (get_u32(img + len - LEASE_IMG_TRAILER) != mvcc_crc32c(0, img, len - LEASE_IMG_TRAILER))
		return -KV_ECORRUPT;
	p = img + LEASE_IMG_HEADER;
	for (i = 0; i < count; i++, p += LEASE_IMG_ENTRY) {
		int64_t id = (int64_t)get_u64(p), ttl = (int64_t)get_u64(p + 8);
		struct lease *l;
		/* Canonical: strictly increasing IDs, never 0; TTLs in range. */
		if (id == 0 || (i > 0 && id <= prev) || ttl < 1 || ttl > LEASE_MAX_TTL)
			return -KV_ECORRUPT;
		prev = id;
		l = calloc(1, sizeof(*l));
		if (l == NULL)
			return -KV_ENOMEM;
		l->id = id;
		l->ttl = ttl;
		l->expiry_us = LEASE_FOREVER;
		RB_INIT(&l->keys);
		RB_INSERT(lease_ids, &t->ids, l);
		t->count++;
	}
	return 0;
}

/* etcd's recovery: every key of the store that names a lease joins it. */
static int lease_reattach(struct lease_table *t, const struct mvcc *m)
{
	static const uint8_t all[1] = {0};
	struct mvcc_iter it;
	struct mvcc_kv kv;
	uint64_t orphans = 0;
	int rv;

	if ((rv = mvcc_iter_init(&it, m, all, 1, all, 1, 0)) != 0)
		return rv;
	while (mvcc_iter_next(&it, &kv)) {
		if (kv.lease == 0)
			continue;
		rv = lease_table_attach(t, kv.lease, kv.key, kv.key_len);
		if (rv == -KV_ELEASENOTFOUND) {
			orphans++;
			continue;
		}
		if (rv != 0)
			return rv;
	}
	if (orphans > 0)
		LOGW("%" PRIu64 " keys of the restored store name a lease that does not exist; "
		     "they keep it but nothing will expire them",
		     orphans);
	return 0;
}

int lease_table_restore(struct lease_table *t, const uint8_t *img, size_t len,
			const struct mvcc *m)
{
	struct lease_table tmp;
	int rv = 0;

	memset(&tmp, 0, sizeof(tmp));
	RB_INIT(&tmp.ids);
	RB_INIT(&tmp.dues);
	if (img != NULL || len > 0)
		rv = lease_decode(&tmp, img, len);
	if (rv == 0 && m != NULL)
		rv = lease_reattach(&tmp, m);
	if (rv != 0) {
		table_clear(&tmp);
		return rv;
	}
	table_clear(t);
	t->ids = tmp.ids;
	t->dues = tmp.dues;
	t->count = tmp.count;
	t->attached = tmp.attached;
	t->primary = false;
	t->auto_index = 0;
	t->auto_seq = 0;
	return 0;
}
