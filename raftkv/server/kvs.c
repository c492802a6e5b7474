/*
 * kvs: etcd's KV requests (Range, Put, DeleteRange, Txn, Compact) applied to
 * the mvcc store.  The svc layer calls kvs_check_* before proposing and
 * kvs_range for reads; the fsm calls the writes when an entry is applied.
 *
 * Everything here follows etcd 3.4's etcdserver/apply.go and
 * api/v3rpc/key.go, quirks included (they were checked against a real
 * etcd 3.4.23): `count` ignores limit and the mod/create filters; with a
 * sort order or a filter the limit applies after sorting; inside a txn a
 * Range revision below the compact revision (-1 when never compacted)
 * fails the whole txn, so a negative revision does too; a VALUE compare on
 * a missing key is always false.
 */
#include "server/kvs.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* libbsd's RB_GENERATE_STATIC expects BSD's __unused, which glibc lacks. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "lib/err.h"
#include "server/mvcc.h"

#define KVS_DEFAULT_MAX_TXN_OPS 128

typedef Etcdserverpb__RequestOp RequestOp;

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int cmp64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static bool lease_exists(const struct kvs *k, int64_t id)
{
	return k->lease != NULL && k->lease->exists != NULL && k->lease->exists(k->lease->arg, id);
}

/* Whether writes must keep the lease side's key sets up to date, and
 * whether any key has a lease (if not, no key can lose one). */
static bool lease_tracking(const struct kvs *k)
{
	return k->lease != NULL && k->lease->attach != NULL && k->lease->detach != NULL;
}

static bool lease_any_attached(const struct kvs *k)
{
	return k->lease->attached == NULL || k->lease->attached(k->lease->arg) > 0;
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

/* ---- API-layer checks (v3rpc/key.go) ----------------------------------- */

static int check_range_req(const Etcdserverpb__RangeRequest *r)
{
	if (r == NULL || r->key.len == 0)
		return -KV_EKEYNOTPROVIDED;
	return 0;
}

static int check_put_req(const Etcdserverpb__PutRequest *r)
{
	if (r == NULL || r->key.len == 0)
		return -KV_EKEYNOTPROVIDED;
	if (r->ignore_value && r->value.len != 0)
		return -KV_EVALUEPROVIDED;
	if (r->ignore_lease && r->lease != 0)
		return -KV_ELEASEPROVIDED;
	return 0;
}

static int check_delete_req(const Etcdserverpb__DeleteRangeRequest *r)
{
	if (r == NULL || r->key.len == 0)
		return -KV_EKEYNOTPROVIDED;
	return 0;
}

static int check_txn_req(const Etcdserverpb__TxnRequest *r, long long max_ops, int depth);

static int check_op(const RequestOp *u, long long max_ops, int depth)
{
	if (u == NULL)
		return -KV_EKEYNOTFOUND;
	switch (u->request_case) {
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
		return check_range_req(u->request_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
		return check_put_req(u->request_put);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
		return check_delete_req(u->request_delete_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
		if (u->request_txn == NULL)
			return -KV_EKEYNOTFOUND;
		return check_txn_req(u->request_txn, max_ops, depth + 1);
	default:
		/* etcd: an empty op is "key not found". */
		return -KV_EKEYNOTFOUND;
	}
}

/* etcd checkTxnRequest: each of compare/success/failure may hold max_ops;
 * a nested txn gets what the longest list of its parent left over. */
static int check_txn_req(const Etcdserverpb__TxnRequest *r, long long max_ops, int depth)
{
	long long opc = (long long)r->n_compare;
	int rv;

	if (depth > KVS_MAX_TXN_DEPTH)
		return -KV_ETOOMANYOPS;
	if ((long long)r->n_success > opc)
		opc = (long long)r->n_success;
	if ((long long)r->n_failure > opc)
		opc = (long long)r->n_failure;
	if (opc > max_ops)
		return -KV_ETOOMANYOPS;
	for (size_t i = 0; i < r->n_compare; i++) {
		if (r->compare[i] == NULL || r->compare[i]->key.len == 0)
			return -KV_EKEYNOTPROVIDED;
	}
	for (size_t i = 0; i < r->n_success; i++) {
		if ((rv = check_op(r->success[i], max_ops - opc, depth)) != 0)
			return rv;
	}
	for (size_t i = 0; i < r->n_failure; i++) {
		if ((rv = check_op(r->failure[i], max_ops - opc, depth)) != 0)
			return rv;
	}
	return 0;
}

/*
 * etcd checkIntervals: within one branch (nested txns included) no key may
 * be put twice, nor put and deleted.  Puts are a set of keys; deletes a set
 * of disjoint half-open intervals (merged on insert), so each test is
 * O(log n).  An empty interval (range_end <= key, e.g. "\0") matches
 * nothing, as in etcd's interval tree.
 */
struct pkey {
	RB_ENTRY(pkey) rb;
	const uint8_t *k;
	size_t len;
};

struct dspan {
	RB_ENTRY(dspan) rb;
	const uint8_t *b, *e;
	size_t blen, elen;
};

static int pkey_cmp(const struct pkey *x, const struct pkey *y)
{
	return bytes_cmp(x->k, x->len, y->k, y->len);
}

static int dspan_cmp(const struct dspan *x, const struct dspan *y)
{
	return bytes_cmp(x->b, x->blen, y->b, y->blen);
}

RB_HEAD(pkeys, pkey);
RB_HEAD(dspans, dspan);
RB_GENERATE_STATIC(pkeys, pkey, rb, pkey_cmp)
RB_GENERATE_STATIC(dspans, dspan, rb, dspan_cmp)

static bool pkeys_has(struct pkeys *s, const uint8_t *k, size_t len)
{
	struct pkey q = {.k = k, .len = len};
	return RB_FIND(pkeys, s, &q) != NULL;
}

static int pkeys_add(struct pkeys *s, struct arena *a, const uint8_t *k, size_t len)
{
	struct pkey *n = arena_alloc(a, sizeof(*n));
	if (n == NULL)
		return -KV_ENOMEM;
	n->k = k;
	n->len = len;
	RB_INSERT(pkeys, s, n);
	return 0;
}

/* The span with the largest begin <= key, or NULL. */
static struct dspan *dspans_floor(struct dspans *s, const uint8_t *k, size_t len)
{
	struct dspan *n = RB_ROOT(s), *best = NULL;
	while (n != NULL) {
		if (bytes_cmp(n->b, n->blen, k, len) <= 0) {
			best = n;
			n = RB_RIGHT(n, rb);
		} else {
			n = RB_LEFT(n, rb);
		}
	}
	return best;
}

static bool dspans_hit(struct dspans *s, const uint8_t *k, size_t len)
{
	struct dspan *f = dspans_floor(s, k, len);
	return f != NULL && bytes_cmp(k, len, f->e, f->elen) < 0;
}

static int dspans_add(struct dspans *s, struct arena *a, const uint8_t *b, size_t blen,
		      const uint8_t *e, size_t elen)
{
	struct dspan *f, *n;
	if (bytes_cmp(b, blen, e, elen) >= 0)
		return 0;
	f = dspans_floor(s, b, blen);
	if (f != NULL && bytes_cmp(f->e, f->elen, b, blen) >= 0) {
		b = f->b;
		blen = f->blen;
		if (bytes_cmp(f->e, f->elen, e, elen) > 0) {
			e = f->e;
			elen = f->elen;
		}
		RB_REMOVE(dspans, s, f);
	}
	struct dspan q = {.b = b, .blen = blen};
	while ((f = RB_NFIND(dspans, s, &q)) != NULL && bytes_cmp(f->b, f->blen, e, elen) <= 0) {
		if (bytes_cmp(f->e, f->elen, e, elen) > 0) {
			e = f->e;
			elen = f->elen;
		}
		RB_REMOVE(dspans, s, f);
	}
	n = arena_alloc(a, sizeof(*n));
	if (n == NULL)
		return -KV_ENOMEM;
	n->b = b;
	n->blen = blen;
	n->e = e;
	n->elen = elen;
	RB_INSERT(dspans, s, n);
	return 0;
}

/* Adds the single key k, i.e. [k, k + "\0"). */
static int dspans_add_key(struct dspans *s, struct arena *a, const uint8_t *k, size_t len)
{
	uint8_t *e = arena_alloc(a, len + 1);
	if (e == NULL)
		return -KV_ENOMEM;
	memcpy(e, k, len);
	e[len] = 0;
	return dspans_add(s, a, k, len, e, len + 1);
}

static int check_intervals(struct arena *a, RequestOp *const *reqs, size_t n, struct pkeys *puts,
			   struct dspans *dels)
{
	int rv;

	RB_INIT(puts);
	RB_INIT(dels);
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__DeleteRangeRequest *d;
		if (reqs[i] == NULL ||
		    reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE ||
		    (d = reqs[i]->request_delete_range) == NULL)
			continue;
		if (d->range_end.len != 0)
			rv = dspans_add(dels, a, d->key.data, d->key.len, d->range_end.data,
					d->range_end.len);
		else
			rv = dspans_add_key(dels, a, d->key.data, d->key.len);
		if (rv != 0)
			return rv;
	}
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__TxnRequest *t;
		struct pkeys pthen, pelse;
		struct dspans dthen, delse;
		struct pkey *p;
		struct dspan *d;

		if (reqs[i] == NULL || reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
		    (t = reqs[i]->request_txn) == NULL)
			continue;
		if ((rv = check_intervals(a, t->success, t->n_success, &pthen, &dthen)) != 0)
			return rv;
		if ((rv = check_intervals(a, t->failure, t->n_failure, &pelse, &delse)) != 0)
			return rv;
		RB_FOREACH(p, pkeys, &pthen)
		{
			if (pkeys_has(puts, p->k, p->len) || dspans_hit(dels, p->k, p->len))
				return -KV_EDUPLICATEKEY;
			if ((rv = pkeys_add(puts, a, p->k, p->len)) != 0)
				return rv;
		}
		RB_FOREACH(p, pkeys, &pelse)
		{
			/* then and else exclude each other: the same key in both is fine */
			bool in_then = pkeys_has(&pthen, p->k, p->len);
			if (pkeys_has(puts, p->k, p->len) && !in_then)
				return -KV_EDUPLICATEKEY;
			if (dspans_hit(dels, p->k, p->len))
				return -KV_EDUPLICATEKEY;
			if (!in_then && (rv = pkeys_add(puts, a, p->k, p->len)) != 0)
				return rv;
		}
		RB_FOREACH(d, dspans, &dthen)
		{
			if ((rv = dspans_add(dels, a, d->b, d->blen, d->e, d->elen)) != 0)
				return rv;
		}
		RB_FOREACH(d, dspans, &delse)
		{
			if ((rv = dspans_add(dels, a, d->b, d->blen, d->e, d->elen)) != 0)
				return rv;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__PutRequest *p;
		if (reqs[i] == NULL || reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
		    (p = reqs[i]->request_put) == NULL)
			continue;
		if (pkeys_has(puts, p->key.data, p->key.len) || dspans_hit(dels, p->key.data, p->key.len))
			return -KV_EDUPLICATEKEY;
		if ((rv = pkeys_add(puts, a, p->key.data, p->key.len)) != 0)
			return rv;
	}
	return 0;
}

int kvs_check_range(const struct kvs *k, const Etcdserverpb__RangeRequest *r)
{
	(void)k;
	return check_range_req(r);
}

int kvs_check_put(const struct kvs *k, const Etcdserverpb__PutRequest *r)
{
	(void)k;
	return check_put_req(r);
}

int kvs_check_delete_range(const struct kvs *k, const Etcdserverpb__DeleteRangeRequest *r)
{
	(void)k;
	return check_delete_req(r);
}

int kvs_check_txn(const struct kvs *k, const Etcdserverpb__TxnRequest *r)
{
	long long max = k->max_txn_ops ? k->max_txn_ops : KVS_DEFAULT_MAX_TXN_OPS;
	struct pkeys puts;
	struct dspans dels;
	struct arena a;
	int rv;

	if ((rv = check_txn_req(r, max, 0)) != 0)
		return rv;
	/* Only after the op count is bounded, as etcd, to keep this linear. */
	arena_init(&a);
	rv = check_intervals(&a, r->success, r->n_success, &puts, &dels);
	if (rv == 0)
		rv = check_intervals(&a, r->failure, r->n_failure, &puts, &dels);
	arena_close(&a);
	return rv;
}

int kvs_check_compact(const struct kvs *k, const Etcdserverpb__CompactionRequest *r)
{
	/* etcd checks a compaction only when applying it. */
	(void)k;
	(void)r;
	return 0;
}

/*
 * Wire pre-check.  Field numbers: TxnRequest.success = 2, .failure = 3
 * (RequestOp); RequestOp.request_txn = 4 (TxnRequest).  Everything else is
 * skipped by wire type, so the walk is linear and its recursion bounded.
 */
static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		uint8_t b;
		if (*p == end)
			return -KV_EMALFORMED;
		b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -KV_EMALFORMED;
}

/* Walks one message; calls itself for the nested field numbers of
 * TxnRequest (is_txn) or RequestOp (!is_txn). */
static int wire_walk(const uint8_t *p, const uint8_t *end, bool is_txn, int depth)
{
	int rv;
	if (depth > KVS_MAX_TXN_DEPTH)
		return -KV_ETOOMANYOPS;
	while (p < end) {
		uint64_t tag, n;
		if ((rv = wire_varint(&p, end, &tag)) != 0)
			return rv;
		switch (tag & 7) {
		case 0:
			if ((rv = wire_varint(&p, end, &n)) != 0)
				return rv;
			break;
		case 1:
		case 5:
			n = (tag & 7) == 1 ? 8 : 4;
			if ((uint64_t)(end - p) < n)
				return -KV_EMALFORMED;
			p += n;
			break;
		case 2:
			if ((rv = wire_varint(&p, end, &n)) != 0)
				return rv;
			if ((uint64_t)(end - p) < n)
				return -KV_EMALFORMED;
			rv = 0;
			if (is_txn && (tag >> 3 == 2 || tag >> 3 == 3))
				rv = wire_walk(p, p + n, false, depth);
			else if (!is_txn && tag >> 3 == 4)
				rv = wire_walk(p, p + n, true, depth + 1);
			if (rv != 0)
				return rv;
			p += n;
			break;
		default:
			return -KV_EMALFORMED;
		}
	}
	return 0;
}

int kvs_check_txn_wire(const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	return wire_walk(data, data + len, true, 0);
}

/* ---- Range ---------------------------------------------------------------- */

struct kvlist {
	struct mvcc_kv *v;
	size_t n, cap;
};

static int kvlist_push(struct kvlist *l, const struct mvcc_kv *kv)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct mvcc_kv *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -KV_ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *kv;
	return 0;
}

static int sort_cmp(const struct mvcc_kv *x, const struct mvcc_kv *y, int target)
{
	switch (target) {
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY:
		return bytes_cmp(x->key, x->key_len, y->key, y->key_len);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
		return cmp64(x->version, y->version);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
		return cmp64(x->create_rev, y->create_rev);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
		return cmp64(x->mod_rev, y->mod_rev);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
		return bytes_cmp(x->value, x->value_len, y->value, y->value_len);
	default:
		return 0;
	}
}

/* Stable merge sort, so equal elements keep key order in both directions
 * (what etcd returns for the small ranges where Go's sort is stable). */
static void sort_merge(struct mvcc_kv *v, struct mvcc_kv *tmp, size_t n, int target, int dir)
{
	size_t mid = n / 2, i = 0, j = mid, o = 0;
	if (n < 2)
		return;
	sort_merge(v, tmp, mid, target, dir);
	sort_merge(v + mid, tmp, n - mid, target, dir);
	if (dir * sort_cmp(&v[mid - 1], &v[mid], target) <= 0)
		return;
	while (i < mid && j < n) {
		if (dir * sort_cmp(&v[j], &v[i], target) < 0)
			tmp[o++] = v[j++];
		else
			tmp[o++] = v[i++];
	}
	while (i < mid)
		tmp[o++] = v[i++];
	while (j < n)
		tmp[o++] = v[j++];
	memcpy(v, tmp, n * sizeof(*v));
}

static void prune(struct kvlist *l, const Etcdserverpb__RangeRequest *r)
{
	size_t j = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct mvcc_kv *kv = &l->v[i];
		if (r->max_mod_revision != 0 && kv->mod_rev > r->max_mod_revision)
			continue;
		if (r->min_mod_revision != 0 && kv->mod_rev < r->min_mod_revision)
			continue;
		if (r->max_create_revision != 0 && kv->create_rev > r->max_create_revision)
			continue;
		if (r->min_create_revision != 0 && kv->create_rev < r->min_create_revision)
			continue;
		l->v[j++] = *kv;
	}
	l->n = j;
}

static Mvccpb__KeyValue *kv_to_pb(Mvccpb__KeyValue *pb, const struct mvcc_kv *kv, bool with_value)
{
	mvccpb__key_value__init(pb);
	pb->key.data = (uint8_t *)kv->key;
	pb->key.len = kv->key_len;
	pb->create_revision = kv->create_rev;
	pb->mod_revision = kv->mod_rev;
	pb->version = kv->version;
	pb->lease = kv->lease;
	if (with_value) {
		pb->value.data = (uint8_t *)kv->value;
		pb->value.len = kv->value_len;
	}
	return pb;
}

/* Copies kvs into the arena as a KeyValue pointer array. */
static int kvs_to_pb(struct arena *a, const struct mvcc_kv *v, size_t n, bool with_value,
		     Mvccpb__KeyValue ***out)
{
	Mvccpb__KeyValue *pbs, **ptrs;
	*out = NULL;
	if (n == 0)
		return 0;
	if (n > SIZE_MAX / sizeof(*pbs))
		return -KV_ENOMEM;
	pbs = arena_alloc(a, n * sizeof(*pbs));
	ptrs = arena_alloc(a, n * sizeof(*ptrs));
	if (pbs == NULL || ptrs == NULL)
		return -KV_ENOMEM;
	for (size_t i = 0; i < n; i++)
		ptrs[i] = kv_to_pb(&pbs[i], &v[i], with_value);
	*out = ptrs;
	return 0;
}

static int do_range(struct kvs *k, const Etcdserverpb__RangeRequest *r, struct arena *a,
		    Etcdserverpb__RangeResponse *out)
{
	bool filtered = r->min_mod_revision != 0 || r->max_mod_revision != 0 ||
			r->min_create_revision != 0 || r->max_create_revision != 0;
	struct kvlist l = {0};
	struct mvcc_iter it;
	struct mvcc_kv kv;
	int64_t count = 0;
	uint64_t fetch;
	int order, rv;

	etcdserverpb__range_response__init(out);
	if (r->key.len == 0)
		return -KV_EKEYNOTPROVIDED;
	rv = mvcc_iter_init(&it, k->mvcc, r->key.data, r->key.len, r->range_end.data,
			    r->range_end.len, r->revision);
	if (rv != 0)
		return rv;
	/* etcd fetches everything when it must sort or filter, else one more
	 * than the limit to learn `more`. */
	if (r->count_only)
		fetch = 0;
	else if (r->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE || filtered ||
		 r->limit <= 0 || r->limit == INT64_MAX)
		fetch = UINT64_MAX;
	else
		fetch = (uint64_t)r->limit + 1;
	while (mvcc_iter_next(&it, &kv)) {
		count++;
		if (l.n < fetch && (rv = kvlist_push(&l, &kv)) != 0)
			goto out;
	}
	if (filtered)
		prune(&l, r);

	order = r->sort_order;
	if (order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE &&
	    r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY)
		order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	if ((order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND ||
	     order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND) &&
	    l.n > 1) {
		struct mvcc_kv *tmp = malloc(l.n * sizeof(*tmp));
		if (tmp == NULL) {
			rv = -KV_ENOMEM;
			goto out;
		}
		sort_merge(l.v, tmp, l.n, r->sort_target,
			   order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND ? 1 : -1);
		free(tmp);
	}
	if (r->limit > 0 && l.n > (uint64_t)r->limit) {
		l.n = (size_t)r->limit;
		out->more = true;
	}
	rv = kvs_to_pb(a, l.v, l.n, !r->keys_only, &out->kvs);
	if (rv != 0)
		goto out;
	out->n_kvs = l.n;
	out->count = count;
	out->header = header_new(a, mvcc_read_rev(k->mvcc));
	if (out->header == NULL)
		rv = -KV_ENOMEM;
out:
	free(l.v);
	if (rv != 0) {
		out->n_kvs = 0;
		out->kvs = NULL;
	}
	return rv;
}

int kvs_range(struct kvs *k, const Etcdserverpb__RangeRequest *r, struct arena *a,
	      Etcdserverpb__RangeResponse *out)
{
	return do_range(k, r, a, out);
}

/* ---- Put / DeleteRange ------------------------------------------------- */

/* check_lease: standalone Put checks its lease here; inside a txn the check
 * was done for the whole txn before anything was written. */
static int do_put(struct kvs *k, const Etcdserverpb__PutRequest *r, struct arena *a,
		  Etcdserverpb__PutResponse *out, bool check_lease)
{
	const uint8_t *val = r->value.data;
	size_t vlen = r->value.len;
	int64_t lease = r->lease;
	struct mvcc_kv prev;
	bool have_prev = false;
	bool track = lease_tracking(k);
	int rv;

	etcdserverpb__put_response__init(out);
	if (r->key.len == 0)
		return -KV_EKEYNOTPROVIDED;
	if (check_lease && lease != 0 && !lease_exists(k, lease))
		return -KV_ELEASENOTFOUND;
	if (r->ignore_value || r->ignore_lease || r->prev_kv ||
	    (track && (lease != 0 || lease_any_attached(k))))
		have_prev = mvcc_get(k->mvcc, r->key.data, r->key.len, &prev);
	if ((r->ignore_value || r->ignore_lease) && !have_prev)
		return -KV_EKEYNOTFOUND;
	if (r->ignore_value) {
		/* prev stays in the key's history, so its bytes outlive the put */
		val = prev.value;
		vlen = prev.value_len;
	}
	if (r->ignore_lease)
		lease = prev.lease;
	if (r->prev_kv && have_prev) {
		out->prev_kv = arena_alloc(a, sizeof(*out->prev_kv));
		if (out->prev_kv == NULL)
			return -KV_ENOMEM;
		kv_to_pb(out->prev_kv, &prev, true);
	}
	out->header = header_new(a, 0);
	if (out->header == NULL)
		return -KV_ENOMEM;
	rv = mvcc_put(k->mvcc, r->key.data, r->key.len, val, vlen, lease);
	if (rv != 0)
		return rv;
	if (track) {
		if (have_prev && prev.lease != 0)
			k->lease->detach(k->lease->arg, prev.lease, r->key.data, r->key.len);
		if (lease != 0 &&
		    (rv = k->lease->attach(k->lease->arg, lease, r->key.data, r->key.len)) != 0)
			return rv;
	}
	out->header->revision = mvcc_read_rev(k->mvcc);
	return 0;
}

/* Every leased key the delete is about to remove leaves its lease. */
static int detach_range(struct kvs *k, const Etcdserverpb__DeleteRangeRequest *r)
{
	struct mvcc_iter it;
	struct mvcc_kv kv;
	int rv = mvcc_iter_init(&it, k->mvcc, r->key.data, r->key.len, r->range_end.data,
				r->range_end.len, 0);
	while (rv == 0 && mvcc_iter_next(&it, &kv)) {
		if (kv.lease != 0)
			k->lease->detach(k->lease->arg, kv.lease, kv.key, kv.key_len);
	}
	return rv;
}

int kvs_put(struct kvs *k, const Etcdserverpb__PutRequest *r, struct arena *a,
	    Etcdserverpb__PutResponse *out)
{
	return do_put(k, r, a, out, true);
}

static int do_delete(struct kvs *k, const Etcdserverpb__DeleteRangeRequest *r, struct arena *a,
		     Etcdserverpb__DeleteRangeResponse *out)
{
	struct kvlist l = {0};
	int64_t deleted = 0;
	int rv = 0;

	etcdserverpb__delete_range_response__init(out);
	if (r->key.len == 0)
		return -KV_EKEYNOTPROVIDED;
	out->header = header_new(a, 0);
	if (out->header == NULL)
		return -KV_ENOMEM;
	if (r->prev_kv) {
		struct mvcc_iter it;
		struct mvcc_kv kv;
		rv = mvcc_iter_init(&it, k->mvcc, r->key.data, r->key.len, r->range_end.data,
				    r->range_end.len, 0);
		while (rv == 0 && mvcc_iter_next(&it, &kv))
			rv = kvlist_push(&l, &kv);
		if (rv == 0)
			rv = kvs_to_pb(a, l.v, l.n, true, &out->prev_kvs);
		if (rv != 0)
			goto out;
		out->n_prev_kvs = l.n;
	}
	if (lease_tracking(k) && lease_any_attached(k) && (rv = detach_range(k, r)) != 0)
		goto out;
	rv = mvcc_delete_range(k->mvcc, r->key.data, r->key.len, r->range_end.data,
			       r->range_end.len, &deleted);
	out->deleted = deleted;
	out->header->revision = mvcc_read_rev(k->mvcc);
out:
	free(l.v);
	return rv;
}

int kvs_delete_range(struct kvs *k, const Etcdserverpb__DeleteRangeRequest *r, struct arena *a,
		     Etcdserverpb__DeleteRangeResponse *out)
{
	return do_delete(k, r, a, out);
}

/* ---- Txn ------------------------------------------------------------------ */

/* Outcome of every compare on the executed path, in pre-order (etcd's
 * txnPath): computed on the state before the txn writes anything. */
struct txn_path {
	bool *v;
	size_t n, cap, pos;
};

static int path_push(struct txn_path *p, bool ok)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		bool *v = realloc(p->v, cap * sizeof(*v));
		if (v == NULL)
			return -KV_ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = ok;
	return 0;
}

static bool compare_kv(const Etcdserverpb__Compare *c, const struct mvcc_kv *kv)
{
	int result = 0;
	int64_t want = 0;

	switch (c->target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
			result = bytes_cmp(kv->value, kv->value_len, c->value.data, c->value.len);
		else
			result = bytes_cmp(kv->value, kv->value_len, NULL, 0);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION)
			want = c->create_revision;
		result = cmp64(kv->create_rev, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION)
			want = c->mod_revision;
		result = cmp64(kv->mod_rev, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION)
			want = c->version;
		result = cmp64(kv->version, want);
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE)
			want = c->lease;
		result = cmp64(kv->lease, want);
		break;
	default:
		break;
	}
	switch (c->result) {
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
		return result == 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
		return result != 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
		return result > 0;
	case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
		return result < 0;
	default:
		return true;
	}
}

static bool apply_compare(struct kvs *k, const Etcdserverpb__Compare *c)
{
	struct mvcc_iter it;
	struct mvcc_kv kv;
	bool any = false;

	if (mvcc_iter_init(&it, k->mvcc, c->key.data, c->key.len, c->range_end.data,
			   c->range_end.len, 0) != 0)
		return false;
	while (mvcc_iter_next(&it, &kv)) {
		any = true;
		if (!compare_kv(c, &kv))
			return false;
	}
	if (any)
		return true;
	/* A missing value can't be told from an empty one: etcd fails it. */
	if (c->target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE)
		return false;
	memset(&kv, 0, sizeof(kv));
	return compare_kv(c, &kv);
}

static int compare_path(struct kvs *k, const Etcdserverpb__TxnRequest *r, struct txn_path *p)
{
	bool ok = true;
	RequestOp **ops;
	size_t n;
	int rv;

	for (size_t i = 0; i < r->n_compare && ok; i++)
		ok = apply_compare(k, r->compare[i]);
	if ((rv = path_push(p, ok)) != 0)
		return rv;
	ops = ok ? r->success : r->failure;
	n = ok ? r->n_success : r->n_failure;
	for (size_t i = 0; i < n; i++) {
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
		    (rv = compare_path(k, ops[i]->request_txn, p)) != 0)
			return rv;
	}
	return 0;
}

/* etcd checkRequestPut */
static int check_exec_put(struct kvs *k, const Etcdserverpb__PutRequest *r)
{
	struct mvcc_kv kv;
	if ((r->ignore_value || r->ignore_lease) && !mvcc_get(k->mvcc, r->key.data, r->key.len, &kv))
		return -KV_EKEYNOTFOUND;
	if (r->lease != 0 && !lease_exists(k, r->lease))
		return -KV_ELEASENOTFOUND;
	return 0;
}

/* etcd checkRequestRange: against the compact revision directly, so a
 * negative revision fails too. */
static int check_exec_range(struct kvs *k, const Etcdserverpb__RangeRequest *r)
{
	if (r->revision == 0)
		return 0;
	if (r->revision > mvcc_rev(k->mvcc))
		return -KV_EFUTUREREV;
	if (r->revision < mvcc_compact_rev(k->mvcc))
		return -KV_ECOMPACTED;
	return 0;
}

/* Runs one kind of check over the executed path. */
static int check_path(struct kvs *k, const Etcdserverpb__TxnRequest *r, struct txn_path *p,
		      bool puts)
{
	bool ok = p->v[p->pos++];
	RequestOp **ops = ok ? r->success : r->failure;
	size_t n = ok ? r->n_success : r->n_failure;
	int rv = 0;

	for (size_t i = 0; i < n && rv == 0; i++) {
		switch (ops[i]->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			rv = check_path(k, ops[i]->request_txn, p, puts);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			if (puts)
				rv = check_exec_put(k, ops[i]->request_put);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			if (!puts)
				rv = check_exec_range(k, ops[i]->request_range);
			break;
		default:
			break;
		}
	}
	return rv;
}

static int exec_txn(struct kvs *k, const Etcdserverpb__TxnRequest *r, struct txn_path *p,
		    struct arena *a, Etcdserverpb__TxnResponse *out)
{
	bool ok = p->v[p->pos++];
	RequestOp **ops = ok ? r->success : r->failure;
	size_t n = ok ? r->n_success : r->n_failure;
	Etcdserverpb__ResponseOp *resps = NULL;
	int rv = 0;

	out->succeeded = ok;
	if (n == 0)
		return 0;
	resps = arena_alloc(a, n * sizeof(*resps));
	out->responses = arena_alloc(a, n * sizeof(*out->responses));
	if (resps == NULL || out->responses == NULL)
		return -KV_ENOMEM;
	for (size_t i = 0; i < n && rv == 0; i++) {
		Etcdserverpb__ResponseOp *ro = &resps[i];
		const RequestOp *op = ops[i];

		etcdserverpb__response_op__init(ro);
		out->responses[i] = ro;
		out->n_responses = i + 1;
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
			ro->response_range = arena_alloc(a, sizeof(*ro->response_range));
			if (ro->response_range == NULL)
				return -KV_ENOMEM;
			rv = do_range(k, op->request_range, a, ro->response_range);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
			ro->response_put = arena_alloc(a, sizeof(*ro->response_put));
			if (ro->response_put == NULL)
				return -KV_ENOMEM;
			rv = do_put(k, op->request_put, a, ro->response_put, false);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
			ro->response_delete_range = arena_alloc(a, sizeof(*ro->response_delete_range));
			if (ro->response_delete_range == NULL)
				return -KV_ENOMEM;
			rv = do_delete(k, op->request_delete_range, a, ro->response_delete_range);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
			ro->response_txn = arena_alloc(a, sizeof(*ro->response_txn));
			if (ro->response_txn == NULL)
				return -KV_ENOMEM;
			etcdserverpb__txn_response__init(ro->response_txn);
			/* etcd leaves a nested txn's header empty */
			ro->response_txn->header = header_new(a, 0);
			if (ro->response_txn->header == NULL)
				return -KV_ENOMEM;
			rv = exec_txn(k, op->request_txn, p, a, ro->response_txn);
			break;
		default:
			break;
		}
	}
	return rv;
}

int kvs_txn(struct kvs *k, const Etcdserverpb__TxnRequest *r, struct arena *a,
	    Etcdserverpb__TxnResponse *out)
{
	struct txn_path p = {0};
	int rv;

	etcdserverpb__txn_response__init(out);
	/* Re-checks the shape (not the size limits, which are per-member
	 * configuration) so that no malformed op is met half-way. */
	if ((rv = check_txn_req(r, LLONG_MAX, 0)) != 0)
		return rv;
	if ((rv = compare_path(k, r, &p)) != 0)
		goto out;
	p.pos = 0;
	if ((rv = check_path(k, r, &p, true)) != 0)
		goto out;
	p.pos = 0;
	if ((rv = check_path(k, r, &p, false)) != 0)
		goto out;
	p.pos = 0;
	mvcc_txn_begin(k->mvcc);
	rv = exec_txn(k, r, &p, a, out);
	mvcc_txn_end(k->mvcc);
	if (rv != 0)
		goto out;
	out->header = header_new(a, mvcc_rev(k->mvcc));
	if (out->header == NULL)
		rv = -KV_ENOMEM;
out:
	free(p.v);
	return rv;
}

/* ---- Compact ------------------------------------------------------------ */

int kvs_compact(struct kvs *k, const Etcdserverpb__CompactionRequest *r, struct arena *a,
		Etcdserverpb__CompactionResponse *out)
{
	int rv;
	etcdserverpb__compaction_response__init(out);
	if ((rv = mvcc_compact(k->mvcc, r->revision)) != 0)
		return rv;
	out->header = header_new(a, mvcc_rev(k->mvcc));
	return out->header ? 0 : -KV_ENOMEM;
}
