/*
 * mvcc: the revisioned keyspace behind kvs (see mvcc.h for the invariants).
 *
 * Memory is most of what a member holds (issue #6), so the layout is
 * compact:
 *  - a record (one revision of one key) is a flags byte, then varints: its
 *    main revision, sub-revision and value length, and only the fields that
 *    differ from their usual value (create != mod, version != 1, lease !=
 *    0); then the value bytes.  7 bytes before the value of a typical put;
 *  - a key node is one allocation: the key length (a varint), the key
 *    bytes, and one record inline (the first one the key got; see below):
 *    a key with one revision costs 8 bytes besides its key and value;
 *  - further revisions are records of their own, listed with the inline one
 *    in a history (struct mvcc_hist, oldest first), which a key with a
 *    single revision does without;
 *  - the keys are indexed by a B+tree (bt_*) of entries: a key's node, or
 *    its history (which points at the node) with the low bit set; ~8.5
 *    bytes a key instead of a red-black tree's 32, built in one pass from
 *    sorted keys when a snapshot is loaded;
 *  - nodes and records are carved out of slabs of their own (mem_*): no
 *    per-object malloc header or rounding, and no request's short-lived
 *    objects between them, which would pin heap pages once freed.  Memory
 *    is only freed by a compaction, which also moves what survives in
 *    half-empty slabs, so that they can be unmapped.  Slabs hold no
 *    pointers (histories and the index are malloc'd), so LeakSanitizer
 *    sees every allocation that can leak.
 * Records never move or change once written: readers and responses point
 * into them until the next compaction (mvcc.h).  So a put adds a record
 * rather than replacing the inline one.  A compaction may move anything: a
 * node whose inline record it drops is rebuilt with its latest record
 * inline, and the index is rebuilt from the surviving nodes (compaction
 * visits every key anyway).  So every node's inline record is always one
 * of its retained records.
 */
#include "server/mvcc.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* gcc says __SANITIZE_ADDRESS__, clang only __has_feature (the fuzz build). */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEM_ASAN 1
#endif
#endif

/* Under ASan a slab is poisoned except for its live objects. */
#ifdef MEM_ASAN
#include <sanitizer/asan_interface.h>
#define MEM_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define MEM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define MEM_POISON(p, n) ((void)(p), (void)(n))
#define MEM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#include "lib/err.h"

/* Record flags: the first byte of a record. */
#define REC_TOMB 0x01    /* a delete: version 0, create 0, lease 0, no value */
#define REC_CREATE 0x02  /* create stored (else create == mod) */
#define REC_VERSION 0x04 /* version stored (else 1) */
#define REC_LEASE 0x08   /* lease stored (else 0) */

/* One revision of one key, byte-aligned: the flags byte, then as unsigned
 * LEB128 varints the main revision, the sub-revision, the value length and
 * the stored fields (create, version, lease, in that order, each only when
 * its flag says so; a lease is its 64-bit pattern), then the value.  A
 * put at a revision below 2^21 of a value under 16 KiB has a 7-byte
 * header where fixed fields took 16. */
struct mvcc_rec {
	uint8_t fl;
	uint8_t x[];
};

/* A record's fields, unpacked. */
struct rec_fields {
	int64_t mod, create, version, lease;
	uint32_t sub, vlen;
	const uint8_t *val;
};

/* A key node (struct mvcc_key, only ever a pointer) is bytes: the key
 * length as a varint, the key, and one record inline.  Nodes are carved
 * from slabs at byte granularity (mem_alloc) and start 2-aligned (the
 * index tags history pointers with the low bit): one byte of header for a
 * key under 128 bytes. */

/* A key's node and its records, oldest first, when it has more than one
 * (malloc'd; the capacity is rec_cap(n)). */
struct mvcc_hist {
	struct mvcc_key *node;
	uint32_t n;
	struct mvcc_rec *r[];
};

/* What the index holds for a key (struct mvcc_ent, only ever a pointer):
 * its node while it has one record, else its history with the low bit set
 * (ent_*).  So a key with a single record pays no history pointer. */
struct mvcc_ent;

/* --- memory: slabs --------------------------------------------------------
 * A slab is an mmap aligned on MEM_SLAB bytes, so that an object's slab is
 * its address rounded down.  Objects are bump-allocated from the current
 * slab (no header, no alignment: see mem_round); one larger than MEM_BIG
 * gets a slab of its own (it starts in its first MEM_SLAB bytes, so the
 * rounding still finds the header).  A slab counts its live bytes; freeing only counts
 * (the space is not reused), a slab with nothing live is unmapped, and a
 * compaction moves the survivors of slabs less than half live (mvcc_compact)
 * so that those empty out. */
#define MEM_SLAB ((size_t)1 << 20)
#define NODE_ALIGN 2
#define MEM_HEAD 64
#define MEM_BIG (MEM_SLAB / 4)

struct mem_slab {
	struct mem_slab *prev, *next; /* every slab of the store */
	size_t size;                  /* of the mapping */
	size_t used;                  /* bump offset */
	size_t live;                  /* bytes allocated and not freed */
	bool evacuate;                /* a compaction is moving its objects */
};

struct mem {
	struct mem_slab *slabs;
	struct mem_slab *cur;  /* where small objects are carved from */
	uint64_t mapped;       /* bytes of all slabs */
};

/* Byte granularity: nodes and records are bytes, read unaligned, and
 * rounding would cost 3.5 bytes a key on average.  Nodes start 2-aligned
 * (NODE_ALIGN): the index tags history pointers with the low bit. */
static size_t mem_round(size_t n)
{
	return n;
}

static struct mem_slab *mem_slab_of(const void *p)
{
	return (struct mem_slab *)((uintptr_t)p & ~(uintptr_t)(MEM_SLAB - 1));
}

/* A new slab of at least size bytes (header included), aligned. */
static struct mem_slab *mem_slab_new(struct mem *mm, size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = (size + page - 1) & ~(page - 1), map;
	uint8_t *raw, *at;
	struct mem_slab *s;

	if (len < size || len > SIZE_MAX - MEM_SLAB)
		return NULL;
	map = len + MEM_SLAB;
	raw = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	at = (uint8_t *)(((uintptr_t)raw + MEM_SLAB - 1) & ~(uintptr_t)(MEM_SLAB - 1));
	if (at > raw)
		munmap(raw, (size_t)(at - raw));
	if (raw + map > at + len)
		munmap(at + len, (size_t)(raw + map - (at + len)));
	s = (struct mem_slab *)at;
	s->size = len;
	s->used = MEM_HEAD;
	s->live = 0;
	s->evacuate = false;
	s->prev = NULL;
	s->next = mm->slabs;
	if (mm->slabs != NULL)
		mm->slabs->prev = s;
	mm->slabs = s;
	mm->mapped += len;
	MEM_POISON(at + MEM_HEAD, len - MEM_HEAD);
	return s;
}

static void mem_slab_free(struct mem *mm, struct mem_slab *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		mm->slabs = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (mm->cur == s)
		mm->cur = NULL;
	mm->mapped -= s->size;
	MEM_UNPOISON(s, s->size);
	munmap(s, s->size);
}

/* align: a power of two up to 8 (MEM_HEAD keeps a slab's first object
 * aligned). */
static void *mem_alloc(struct mem *mm, size_t n, size_t align)
{
	struct mem_slab *s = mm->cur;
	void *p;

	n = mem_round(n);
	if (n == 0 || n > SIZE_MAX / 2)
		return NULL;
	if (s != NULL && n <= MEM_BIG)
		s->used = (s->used + align - 1) & ~(align - 1);
	if (n > MEM_BIG) {
		s = mem_slab_new(mm, MEM_HEAD + n);
	} else if (s == NULL || s->size < s->used || s->size - s->used < n) {
		s = mem_slab_new(mm, MEM_SLAB);
		if (s != NULL) {
			/* The old one keeps what it holds until that is freed. */
			if (mm->cur != NULL && mm->cur->live == 0)
				mem_slab_free(mm, mm->cur);
			mm->cur = s;
		}
	}
	if (s == NULL)
		return NULL;
	p = (uint8_t *)s + s->used;
	s->used += n;
	s->live += n;
	MEM_UNPOISON(p, n);
	return p;
}

static void mem_free(struct mem *mm, void *p, size_t n)
{
	struct mem_slab *s;

	if (p == NULL)
		return;
	n = mem_round(n);
	s = mem_slab_of(p);
	s->live -= n;
	MEM_POISON(p, n);
	if (s->live > 0)
		return;
	if (s == mm->cur)
		s->used = MEM_HEAD; /* carve from its start again */
	else
		mem_slab_free(mm, s);
}

static void mem_clear(struct mem *mm)
{
	while (mm->slabs != NULL)
		mem_slab_free(mm, mm->slabs);
	mm->cur = NULL;
}

/* --- the index: a B+tree of key nodes ----------------------------------
 * Leaves hold up to BT_FAN node pointers in key order and are chained;
 * an inner node holds up to BT_FAN children and, between them, separators:
 * sep[i] is the smallest key under c[i + 1].  Separators point at key
 * nodes, which is why a compaction (which may free or move nodes) rebuilds
 * the tree.  A split at the end of the last node leaves the left one full,
 * so that keys written in order (and a rebuild) fill nodes completely. */
#define BT_FAN 64
#define BT_MAX_DEPTH 16 /* inner levels: 64^16 keys is beyond reach */

struct bt_hdr {
	uint32_t n;
	uint32_t leaf;
};

struct bt_leaf {
	struct bt_hdr h;
	struct bt_leaf *next;
	struct mvcc_ent *k[BT_FAN];
};

struct bt_inner {
	struct bt_hdr h;
	struct bt_hdr *c[BT_FAN];
	struct mvcc_key *sep[BT_FAN - 1];
};

struct bt {
	struct bt_hdr *root; /* NULL when empty */
	unsigned depth;      /* inner levels above the leaves */
};

/* Where a key is, or would go. */
struct bt_path {
	struct bt_inner *in[BT_MAX_DEPTH];
	uint32_t ci[BT_MAX_DEPTH]; /* child taken at each inner level */
	struct bt_leaf *leaf;
	uint32_t pos;
};

struct mvcc {
	struct bt tree;
	struct mem mem;
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

/* --- records -------------------------------------------------------------- */

static uint8_t *put_var(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Records are only ever written by rec_write: no bounds to check. */
static const uint8_t *get_var(const uint8_t *p, uint64_t *v)
{
	uint64_t x = 0;
	unsigned sh = 0;
	while (*p & 0x80) {
		x |= (uint64_t)(*p++ & 0x7f) << sh;
		sh += 7;
	}
	*v = x | (uint64_t)*p++ << sh;
	return p;
}

static unsigned var_len(uint64_t v)
{
	unsigned n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t rec_fl(const struct mvcc_rec *r)
{
	return r->fl;
}

static int64_t rec_mod(const struct mvcc_rec *r)
{
	uint64_t v;
	get_var(r->x, &v);
	return (int64_t)v;
}

static uint32_t rec_sub(const struct mvcc_rec *r)
{
	uint64_t v;
	get_var(get_var(r->x, &v), &v);
	return (uint32_t)v;
}

static bool rec_live(const struct mvcc_rec *r)
{
	return !(rec_fl(r) & REC_TOMB);
}

static uint8_t rec_flags(const struct rec_fields *f)
{
	uint8_t flags = 0;
	if (f->version == 0)
		return REC_TOMB; /* create, lease and value are empty (rec_valid) */
	if (f->create != f->mod)
		flags |= REC_CREATE;
	if (f->version != 1)
		flags |= REC_VERSION;
	if (f->lease != 0)
		flags |= REC_LEASE;
	return flags;
}

static size_t rec_size(const struct rec_fields *f)
{
	uint8_t fl = rec_flags(f);
	size_t n = 1 + var_len((uint64_t)f->mod) + var_len(f->sub) + var_len(f->vlen);
	if (fl & REC_CREATE)
		n += var_len((uint64_t)f->create);
	if (fl & REC_VERSION)
		n += var_len((uint64_t)f->version);
	if (fl & REC_LEASE)
		n += var_len((uint64_t)f->lease);
	return n + f->vlen;
}

/* Writes f at r (rec_size(f) bytes). */
static void rec_write(struct mvcc_rec *r, const struct rec_fields *f)
{
	uint8_t *p = r->x;
	r->fl = rec_flags(f);
	p = put_var(p, (uint64_t)f->mod);
	p = put_var(p, f->sub);
	p = put_var(p, f->vlen);
	if (r->fl & REC_CREATE)
		p = put_var(p, (uint64_t)f->create);
	if (r->fl & REC_VERSION)
		p = put_var(p, (uint64_t)f->version);
	if (r->fl & REC_LEASE)
		p = put_var(p, (uint64_t)f->lease);
	if (f->vlen)
		memcpy(p, f->val, f->vlen);
}

static void rec_read(const struct mvcc_rec *r, struct rec_fields *f)
{
	const uint8_t *p = r->x;
	uint64_t v;
	p = get_var(p, &v);
	f->mod = (int64_t)v;
	p = get_var(p, &v);
	f->sub = (uint32_t)v;
	p = get_var(p, &v);
	f->vlen = (uint32_t)v;
	f->create = f->mod;
	f->version = 1;
	f->lease = 0;
	if (r->fl & REC_TOMB)
		f->create = f->version = 0;
	if (r->fl & REC_CREATE) {
		p = get_var(p, &v);
		f->create = (int64_t)v;
	}
	if (r->fl & REC_VERSION) {
		p = get_var(p, &v);
		f->version = (int64_t)v;
	}
	if (r->fl & REC_LEASE) {
		p = get_var(p, &v);
		f->lease = (int64_t)v;
	}
	f->val = p;
}

static const uint8_t *rec_val(const struct mvcc_rec *r)
{
	struct rec_fields f;
	rec_read(r, &f);
	return f.val;
}

static uint32_t rec_vlen(const struct mvcc_rec *r)
{
	struct rec_fields f;
	rec_read(r, &f);
	return f.vlen;
}

static int64_t rec_create(const struct mvcc_rec *r)
{
	struct rec_fields f;
	rec_read(r, &f);
	return f.create;
}

static int64_t rec_version(const struct mvcc_rec *r)
{
	struct rec_fields f;
	rec_read(r, &f);
	return f.version;
}

/* The bytes r takes. */
static size_t rec_len(const struct mvcc_rec *r)
{
	struct rec_fields f;
	rec_read(r, &f);
	return (size_t)(f.val - (const uint8_t *)r) + f.vlen;
}

static struct mvcc_rec *rec_new(struct mem *mm, const struct rec_fields *f)
{
	struct mvcc_rec *r = mem_alloc(mm, rec_size(f), 1);
	if (r != NULL)
		rec_write(r, f);
	return r;
}

/* --- key nodes ------------------------------------------------------------ */

static uint32_t node_klen(const struct mvcc_key *n)
{
	uint64_t v;
	get_var((const uint8_t *)n, &v);
	return (uint32_t)v;
}

static const uint8_t *node_key(const struct mvcc_key *n)
{
	uint64_t v;
	return get_var((const uint8_t *)n, &v);
}

static struct mvcc_rec *node_inline(const struct mvcc_key *n)
{
	uint64_t v;
	const uint8_t *key = get_var((const uint8_t *)n, &v);
	return (struct mvcc_rec *)(uintptr_t)(key + v);
}

/* The bytes n takes (its inline record included). */
static size_t node_len(const struct mvcc_key *n)
{
	return (size_t)((uint8_t *)node_inline(n) - (uint8_t *)n) + rec_len(node_inline(n));
}

/* A node for key holding f inline (not linked anywhere). */
static struct mvcc_key *node_new(struct mem *mm, const uint8_t *key, size_t klen,
				 const struct rec_fields *f)
{
	uint8_t *p = mem_alloc(mm, var_len(klen) + klen + rec_size(f), NODE_ALIGN);
	struct mvcc_key *n = (struct mvcc_key *)p;
	if (p == NULL)
		return NULL;
	memcpy(put_var(p, klen), key, klen);
	rec_write(node_inline(n), f);
	return n;
}

static void node_rec_free(struct mem *mm, const struct mvcc_key *n, struct mvcc_rec *r)
{
	if (r != node_inline(n))
		mem_free(mm, r, rec_len(r));
}

/* --- index entries ---------------------------------------------------------- */

static struct mvcc_hist *ent_hist(const struct mvcc_ent *e)
{
	return (uintptr_t)e & 1 ? (struct mvcc_hist *)((uintptr_t)e - 1) : NULL;
}

static struct mvcc_key *ent_node(const struct mvcc_ent *e)
{
	struct mvcc_hist *h = ent_hist(e);
	return h != NULL ? h->node : (struct mvcc_key *)(uintptr_t)e;
}

static struct mvcc_ent *ent_of_node(struct mvcc_key *n)
{
	return (struct mvcc_ent *)n;
}

static struct mvcc_ent *ent_of_hist(struct mvcc_hist *h)
{
	return (struct mvcc_ent *)((uintptr_t)h | 1);
}

static uint32_t ent_nrec(const struct mvcc_ent *e)
{
	struct mvcc_hist *h = ent_hist(e);
	return h != NULL ? h->n : 1;
}

static struct mvcc_rec *ent_rec(const struct mvcc_ent *e, uint32_t i)
{
	struct mvcc_hist *h = ent_hist(e);
	return h != NULL ? h->r[i] : node_inline(ent_node(e));
}

static struct mvcc_rec *ent_last(const struct mvcc_ent *e)
{
	return ent_rec(e, ent_nrec(e) - 1);
}

/* Frees e's records, its node and its history. */
static void ent_free(struct mem *mm, struct mvcc_ent *e)
{
	struct mvcc_hist *h = ent_hist(e);
	struct mvcc_key *n = ent_node(e);
	if (h != NULL) {
		for (uint32_t i = 0; i < h->n; i++)
			node_rec_free(mm, n, h->r[i]);
		free(h);
	}
	mem_free(mm, n, node_len(n));
}

static uint32_t rec_cap(uint32_t nrec)
{
	uint32_t c = 2;
	while (c < nrec)
		c <<= 1;
	return c;
}

static struct mvcc_hist *hist_resize(struct mvcc_hist *h, uint32_t cap)
{
	return realloc(h, offsetof(struct mvcc_hist, r) + (size_t)cap * sizeof(h->r[0]));
}

/* Appends rec to the history of the key at *slot (its place in the index,
 * which a history's (re)allocation changes).  Returns 0 or -KV_ENOMEM
 * (nothing changed). */
static int ent_append(struct mvcc_ent **slot, struct mvcc_rec *rec)
{
	struct mvcc_hist *h = ent_hist(*slot);
	uint32_t nrec = ent_nrec(*slot);
	if (nrec >= UINT32_MAX / 2)
		return -KV_ENOMEM;
	if (h == NULL) {
		struct mvcc_key *n = ent_node(*slot);
		h = hist_resize(NULL, 2);
		if (h == NULL)
			return -KV_ENOMEM;
		h->node = n;
		h->r[0] = node_inline(n);
		h->n = 1;
	} else if (rec_cap(nrec) == nrec) {
		h = hist_resize(h, nrec * 2);
		if (h == NULL)
			return -KV_ENOMEM;
	}
	h->r[nrec] = rec;
	h->n = nrec + 1;
	*slot = ent_of_hist(h);
	return 0;
}

static uint64_t rec_bytes(const struct mvcc_key *n, const struct mvcc_rec *r)
{
	return (uint64_t)node_klen(n) + rec_vlen(r) + REC_OVERHEAD;
}

/*
 * Frees the first `drop` records of e.  When the inline one goes, the node
 * is rebuilt around its latest record (copied inline), so the returned
 * entry may have a new node (the old one is freed then); NULL if nothing
 * is left (all freed).  On out of memory the node is kept as it is (the
 * dead inline bytes with it): correct, just larger.
 */
static struct mvcc_ent *ent_drop_front(struct mvcc *m, struct mvcc_ent *e, uint32_t drop)
{
	struct mvcc_hist *h = ent_hist(e);
	struct mvcc_key *n = ent_node(e);
	struct mvcc_rec *inl = node_inline(n);
	uint32_t left = ent_nrec(e) - drop;
	bool inline_dropped = false;

	if (drop == 0)
		return e;
	if (left == 0) {
		for (uint32_t i = 0; i < drop; i++)
			m->bytes -= rec_bytes(n, ent_rec(e, i));
		ent_free(&m->mem, e);
		return NULL;
	}
	/* drop > 0 and left > 0: e has a history. */
	for (uint32_t i = 0; i < drop; i++) {
		m->bytes -= rec_bytes(n, h->r[i]);
		if (h->r[i] == inl)
			inline_dropped = true;
		else
			mem_free(&m->mem, h->r[i], rec_len(h->r[i]));
	}
	memmove(h->r, h->r + drop, (size_t)left * sizeof(h->r[0]));
	h->n = left;
	if (inline_dropped) {
		struct mvcc_rec *last = h->r[left - 1];
		struct rec_fields f;
		struct mvcc_key *nn;
		rec_read(last, &f);
		nn = node_new(&m->mem, node_key(n), node_klen(n), &f);
		if (nn == NULL) {
			/* Keep the dead inline bytes: node_inline() is still
			 * not a retained record, which node_rec_free tolerates. */
			return e;
		}
		mem_free(&m->mem, last, rec_len(last));
		/* n's inline record is the dead one: the size is its own still. */
		mem_free(&m->mem, n, (size_t)((uint8_t *)inl - (uint8_t *)n) + rec_len(inl));
		if (left == 1) {
			free(h);
			return ent_of_node(nn);
		}
		h->node = nn;
		h->r[left - 1] = node_inline(nn);
		return e;
	}
	if (left == 1 && h->r[0] == inl) {
		free(h);
		return ent_of_node(n);
	}
	if (rec_cap(left) < rec_cap(left + drop)) {
		struct mvcc_hist *hh = hist_resize(h, rec_cap(left));
		if (hh != NULL)
			return ent_of_hist(hh);
	}
	return e;
}

/* Index of the last record with mod <= rev, or -1. */
static long ent_at(const struct mvcc_ent *e, int64_t rev)
{
	long lo = 0, hi = (long)ent_nrec(e) - 1;
	if (rec_mod(ent_last(e)) <= rev)
		return hi;
	while (lo <= hi) {
		long mid = lo + (hi - lo) / 2;
		if (rec_mod(ent_rec(e, (uint32_t)mid)) <= rev)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return hi;
}

static void fill_kv(struct mvcc_kv *kv, const struct mvcc_key *n, const struct mvcc_rec *r)
{
	struct rec_fields f;

	rec_read(r, &f);
	kv->key = node_key(n);
	kv->key_len = node_klen(n);
	kv->value = f.val;
	kv->value_len = f.vlen;
	kv->create_rev = f.create;
	kv->mod_rev = f.mod;
	kv->version = f.version;
	kv->lease = f.lease;
}

/* --- the B+tree ------------------------------------------------------------ */

static int node_key_cmp(const struct mvcc_key *n, const uint8_t *key, size_t klen)
{
	return key_cmp(node_key(n), node_klen(n), key, klen);
}

/* Descends to where key is or would go: path->leaf and path->pos (the first
 * key >= key in that leaf; pos == leaf->h.n when all are smaller).  false
 * when the tree is empty. */
static bool bt_seek(const struct bt *t, const uint8_t *key, size_t klen, struct bt_path *path)
{
	struct bt_hdr *x = t->root;
	uint32_t lo, hi;

	if (x == NULL)
		return false;
	for (unsigned d = 0; d < t->depth; d++) {
		struct bt_inner *in = (struct bt_inner *)x;
		/* the child: how many separators are <= key */
		lo = 0;
		hi = in->h.n - 1;
		while (lo < hi) {
			uint32_t mid = (lo + hi) / 2;
			if (node_key_cmp(in->sep[mid], key, klen) <= 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		path->in[d] = in;
		path->ci[d] = lo;
		x = in->c[lo];
	}
	path->leaf = (struct bt_leaf *)x;
	lo = 0;
	hi = path->leaf->h.n;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (node_key_cmp(ent_node(path->leaf->k[mid]), key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	path->pos = lo;
	return true;
}

/* The key at a position, moving to the next leaf past the end. */
static struct mvcc_ent **bt_at(struct bt_leaf **leaf, uint32_t *pos)
{
	while (*leaf != NULL && *pos >= (*leaf)->h.n) {
		*leaf = (*leaf)->next;
		*pos = 0;
	}
	return *leaf != NULL ? &(*leaf)->k[*pos] : NULL;
}

static struct bt_leaf *bt_first(const struct bt *t)
{
	struct bt_hdr *x = t->root;
	if (x == NULL)
		return NULL;
	for (unsigned d = 0; d < t->depth; d++)
		x = ((struct bt_inner *)x)->c[0];
	return (struct bt_leaf *)x;
}

/* Inserts k (not in t) where bt_seek found its place, splitting nodes
 * upwards as needed.  Returns 0 or -KV_ENOMEM (t unchanged: whatever a
 * split needs is allocated before anything moves). */
static int bt_insert(struct bt *t, struct bt_path *path, struct mvcc_ent *k)
{
	struct bt_leaf *leaf = path->leaf, *right;
	struct bt_hdr *up_child;
	struct mvcc_key *up_sep;
	struct bt_inner *spare[BT_MAX_DEPTH + 1];
	unsigned need = 0;
	int d;

	if (t->root == NULL) {
		leaf = calloc(1, sizeof(*leaf));
		if (leaf == NULL)
			return -KV_ENOMEM;
		leaf->h.leaf = 1;
		leaf->h.n = 1;
		leaf->k[0] = k;
		t->root = &leaf->h;
		t->depth = 0;
		return 0;
	}
	if (leaf->h.n < BT_FAN) {
		memmove(leaf->k + path->pos + 1, leaf->k + path->pos,
			(leaf->h.n - path->pos) * sizeof(*leaf->k));
		leaf->k[path->pos] = k;
		leaf->h.n++;
		return 0;
	}
	/* Full: allocate every node the split may need first, so that running
	 * out of memory leaves the tree as it was. */
	right = malloc(sizeof(*right));
	if (right == NULL)
		return -KV_ENOMEM;
	for (d = (int)t->depth - 1; d >= 0 && path->in[d]->h.n == BT_FAN; d--)
		need++;
	need++; /* the parent's sibling at the first level with room, or a new root */
	for (unsigned i = 0; i < need; i++) {
		spare[i] = malloc(sizeof(*spare[i]));
		if (spare[i] == NULL) {
			while (i-- > 0)
				free(spare[i]);
			free(right);
			return -KV_ENOMEM;
		}
	}
	{
		/* The leaf: a split at the very end keeps the left one full. */
		struct mvcc_ent *all[BT_FAN + 1];
		uint32_t s = path->pos == BT_FAN && leaf->next == NULL ? BT_FAN : (BT_FAN + 1) / 2;
		memcpy(all, leaf->k, path->pos * sizeof(*all));
		all[path->pos] = k;
		memcpy(all + path->pos + 1, leaf->k + path->pos, (BT_FAN - path->pos) * sizeof(*all));
		memcpy(leaf->k, all, s * sizeof(*all));
		leaf->h.n = s;
		right->h.leaf = 1;
		right->h.n = BT_FAN + 1 - s;
		memcpy(right->k, all + s, right->h.n * sizeof(*all));
		right->next = leaf->next;
		leaf->next = right;
		up_child = &right->h;
		up_sep = ent_node(right->k[0]);
	}
	for (d = (int)t->depth - 1; d >= 0; d--) {
		struct bt_inner *in = path->in[d], *r;
		uint32_t ci = path->ci[d];
		struct bt_hdr *cs[BT_FAN + 1];
		struct mvcc_key *ss[BT_FAN];
		uint32_t n = in->h.n, s;

		if (n < BT_FAN) {
			memmove(in->c + ci + 2, in->c + ci + 1, (n - ci - 1) * sizeof(*in->c));
			in->c[ci + 1] = up_child;
			memmove(in->sep + ci + 1, in->sep + ci, (n - 1 - ci) * sizeof(*in->sep));
			in->sep[ci] = up_sep;
			in->h.n++;
			up_child = NULL;
			break;
		}
		memcpy(cs, in->c, (ci + 1) * sizeof(*cs));
		cs[ci + 1] = up_child;
		memcpy(cs + ci + 2, in->c + ci + 1, (n - ci - 1) * sizeof(*cs));
		memcpy(ss, in->sep, ci * sizeof(*ss));
		ss[ci] = up_sep;
		memcpy(ss + ci + 1, in->sep + ci, (n - 1 - ci) * sizeof(*ss));
		/* children 0..s-1 stay, ss[s-1] goes up, s..BT_FAN move right */
		s = ci + 1 == BT_FAN ? BT_FAN : (BT_FAN + 1) / 2;
		r = spare[--need];
		memcpy(in->c, cs, s * sizeof(*cs));
		memcpy(in->sep, ss, (s - 1) * sizeof(*ss));
		in->h.n = s;
		r->h.leaf = 0;
		r->h.n = BT_FAN + 1 - s;
		memcpy(r->c, cs + s, r->h.n * sizeof(*cs));
		memcpy(r->sep, ss + s, (r->h.n - 1) * sizeof(*ss));
		up_child = &r->h;
		up_sep = ss[s - 1];
	}
	if (up_child != NULL) {
		/* The root split: a new root above. */
		struct bt_inner *root = spare[--need];
		root->h.leaf = 0;
		root->h.n = 2;
		root->c[0] = t->root;
		root->c[1] = up_child;
		root->sep[0] = up_sep;
		t->root = &root->h;
		t->depth++;
	}
	while (need > 0)
		free(spare[--need]);
	return 0;
}

static void bt_free_level(struct bt_hdr *x, unsigned depth)
{
	if (depth > 0) {
		struct bt_inner *in = (struct bt_inner *)x;
		for (uint32_t i = 0; i < in->h.n; i++)
			bt_free_level(in->c[i], depth - 1);
	}
	free(x);
}

/* Frees the index (not the key nodes). */
static void bt_free(struct bt *t)
{
	if (t->root != NULL)
		bt_free_level(t->root, t->depth);
	t->root = NULL;
	t->depth = 0;
}

/* The smallest key under x. */
static struct mvcc_key *bt_min(const struct bt_hdr *x)
{
	while (!x->leaf)
		x = ((const struct bt_inner *)x)->c[0];
	return ent_node(((const struct bt_leaf *)x)->k[0]);
}

/*
 * Builds t (empty) over keys[0, n), sorted and distinct, nodes filled
 * completely: one pass, no comparisons (loading a snapshot, and after a
 * compaction).  0 or -KV_ENOMEM (t left empty; keys untouched).
 */
static int bt_build(struct bt *t, struct mvcc_ent *const *keys, size_t n)
{
	struct bt_hdr **level, **up;
	struct bt_leaf *prev = NULL;
	size_t nl, i;
	unsigned depth = 0;

	t->root = NULL;
	t->depth = 0;
	if (n == 0)
		return 0;
	nl = (n + BT_FAN - 1) / BT_FAN;
	level = malloc(nl * sizeof(*level));
	if (level == NULL)
		return -KV_ENOMEM;
	for (i = 0; i < nl; i++) {
		struct bt_leaf *l = malloc(sizeof(*l));
		size_t take = n - i * BT_FAN < BT_FAN ? n - i * BT_FAN : BT_FAN;
		if (l == NULL) {
			while (i-- > 0)
				free(level[i]);
			free(level);
			return -KV_ENOMEM;
		}
		l->h.leaf = 1;
		l->h.n = (uint32_t)take;
		l->next = NULL;
		memcpy(l->k, keys + i * BT_FAN, take * sizeof(*keys));
		if (prev != NULL)
			prev->next = l;
		prev = l;
		level[i] = &l->h;
	}
	while (nl > 1) {
		size_t nu = (nl + BT_FAN - 1) / BT_FAN;
		up = malloc(nu * sizeof(*up));
		for (i = 0; up != NULL && i < nu; i++) {
			struct bt_inner *in = malloc(sizeof(*in));
			size_t take = nl - i * BT_FAN < BT_FAN ? nl - i * BT_FAN : BT_FAN;
			if (in == NULL) {
				while (i-- > 0)
					free(up[i]);
				free(up);
				up = NULL;
				break;
			}
			in->h.leaf = 0;
			in->h.n = (uint32_t)take;
			memcpy(in->c, level + i * BT_FAN, take * sizeof(*level));
			for (size_t j = 1; j < take; j++)
				in->sep[j - 1] = bt_min(in->c[j]);
			up[i] = &in->h;
		}
		if (up == NULL) {
			for (i = 0; i < nl; i++)
				bt_free_level(level[i], depth);
			free(level);
			return -KV_ENOMEM;
		}
		free(level);
		level = up;
		nl = nu;
		depth++;
	}
	t->root = level[0];
	t->depth = depth;
	free(level);
	return 0;
}

/* The index slot of exactly key, or (exact == false) of the first key >=
 * key, with its position. */
static struct mvcc_ent **tree_find(const struct mvcc *m, const uint8_t *key, size_t klen, bool exact,
				   struct bt_leaf **leaf, uint32_t *pos)
{
	struct bt_path path;
	struct mvcc_ent **n;

	*leaf = NULL;
	*pos = 0;
	if (!bt_seek(&m->tree, key, klen, &path))
		return NULL;
	*leaf = path.leaf;
	*pos = path.pos;
	n = bt_at(leaf, pos);
	if (exact && n != NULL && node_key_cmp(ent_node(*n), key, klen) != 0)
		n = NULL;
	return n;
}

struct mvcc *mvcc_new(void)
{
	struct mvcc *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->tree.root = NULL;
	m->tree.depth = 0;
	m->rev = 1;
	m->compact_rev = -1;
	return m;
}

static void mvcc_clear(struct mvcc *m)
{
	/* The history arrays are malloc'd; nodes and records go with the slabs. */
	for (struct bt_leaf *l = bt_first(&m->tree); l != NULL; l = l->next)
		for (uint32_t i = 0; i < l->h.n; i++)
			free(ent_hist(l->k[i]));
	bt_free(&m->tree);
	mem_clear(&m->mem);
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

uint64_t mvcc_mem_bytes(const struct mvcc *m)
{
	return m->mem.mapped;
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
	struct bt_path path;
	struct mvcc_ent **slot = NULL;
	struct mvcc_key *n;
	struct mvcc_rec *prev = NULL, *r;
	struct rec_fields f;
	int rv;

	if (bt_seek(&m->tree, key, klen, &path) && path.pos < path.leaf->h.n &&
	    node_key_cmp(ent_node(path.leaf->k[path.pos]), key, klen) == 0) {
		slot = &path.leaf->k[path.pos];
		prev = ent_last(*slot);
		if (!rec_live(prev))
			prev = NULL;
	}
	f.mod = m->rev + 1;
	f.sub = m->txn_changes;
	f.vlen = (uint32_t)vlen;
	f.val = val;
	f.lease = lease;
	f.create = prev ? rec_create(prev) : m->rev + 1;
	f.version = prev ? rec_version(prev) + 1 : 1;
	if (slot == NULL) {
		n = node_new(&m->mem, key, klen, &f);
		if (n == NULL)
			return -KV_ENOMEM;
		rv = bt_insert(&m->tree, &path, ent_of_node(n));
		if (rv != 0) {
			ent_free(&m->mem, ent_of_node(n));
			return rv;
		}
		m->nkeys++;
		r = node_inline(n);
	} else {
		r = rec_new(&m->mem, &f);
		if (r == NULL)
			return -KV_ENOMEM;
		rv = ent_append(slot, r);
		if (rv != 0) {
			mem_free(&m->mem, r, rec_len(r));
			return rv;
		}
		n = ent_node(*slot);
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
	if (key_len == 0 || key_len > UINT32_MAX || value_len > MVCC_VALUE_MAX)
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
	struct bt_leaf *leaf;
	struct mvcc_ent **n;

	it->m = m;
	it->end = end;
	it->end_len = elen;
	it->single = elen == 0;
	it->unbounded = elen == 1 && end[0] == 0;
	n = tree_find(m, key, klen, it->single, &leaf, &it->pos);
	it->leaf = n != NULL ? leaf : NULL;
}

/* The index slot of the next key in range, whatever its state at any
 * revision. */
static struct mvcc_ent **range_next(struct mvcc_iter *it)
{
	struct bt_leaf *leaf = it->leaf;
	struct mvcc_ent **n = bt_at(&leaf, &it->pos);

	if (n == NULL) {
		it->leaf = NULL;
		return NULL;
	}
	if (it->single) {
		it->leaf = NULL;
		return n;
	}
	if (!it->unbounded &&
	    key_cmp(node_key(ent_node(*n)), node_klen(ent_node(*n)), it->end, it->end_len) >= 0) {
		it->leaf = NULL;
		return NULL;
	}
	it->leaf = leaf;
	it->pos++;
	return n;
}

static int delete_locked(struct mvcc *m, const uint8_t *key, size_t klen, const uint8_t *end,
			 size_t elen, int64_t *deleted)
{
	struct mvcc_iter it;
	struct mvcc_ent **slot;
	int64_t count = 0;

	range_setup(&it, m, key, klen, end, elen);
	/* Tombstoning never adds or removes keys, so walking on is safe. */
	while ((slot = range_next(&it)) != NULL) {
		struct mvcc_rec *prev = ent_last(*slot), *r;
		struct mvcc_key *n = ent_node(*slot);
		struct rec_fields f = {.mod = m->rev + 1, .sub = m->txn_changes};
		int rv;
		if (!rec_live(prev))
			continue;
		r = rec_new(&m->mem, &f);
		if (r == NULL)
			return -KV_ENOMEM;
		rv = ent_append(slot, r);
		if (rv != 0) {
			mem_free(&m->mem, r, rec_len(r));
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
	it->leaf = NULL;
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
	struct mvcc_ent **e;
	while ((e = range_next(it)) != NULL) {
		long i = ent_at(*e, it->rev);
		struct mvcc_rec *r;
		if (i < 0)
			continue;
		r = ent_rec(*e, (uint32_t)i);
		if (!rec_live(r))
			continue;
		fill_kv(kv, ent_node(*e), r);
		return true;
	}
	return false;
}

uint64_t mvcc_changes(const struct mvcc *m, const uint8_t *key, size_t key_len, const uint8_t *end,
		      size_t end_len, int64_t from_rev, int64_t to_rev, mvcc_change_fn fn, void *arg)
{
	struct mvcc_iter it;
	struct mvcc_ent **slot;
	uint64_t visited = 0;

	if (key_len == 0 || from_rev > to_rev)
		return 0;
	range_setup(&it, m, key, key_len, end, end_len);
	while ((slot = range_next(&it)) != NULL) {
		const struct mvcc_ent *e = *slot;
		const struct mvcc_key *n = ent_node(e);
		/* First record at or after from_rev: past the last one before. */
		uint32_t i = (uint32_t)(ent_at(e, from_rev - 1) + 1);
		visited++;
		for (; i < ent_nrec(e); i++) {
			const struct mvcc_rec *r = ent_rec(e, i), *p;
			struct mvcc_kv kv, pkv;
			if (rec_mod(r) > to_rev)
				break;
			p = i > 0 ? ent_rec(e, i - 1) : NULL;
			if (p != NULL && !rec_live(p))
				p = NULL;
			fill_kv(&kv, n, r);
			if (p != NULL)
				fill_kv(&pkv, n, p);
			fn(arg, &kv, p ? &pkv : NULL, rec_sub(r));
		}
	}
	return visited;
}

bool mvcc_get(const struct mvcc *m, const uint8_t *key, size_t key_len, struct mvcc_kv *kv)
{
	struct bt_leaf *leaf;
	uint32_t pos;
	struct mvcc_ent **e = tree_find(m, key, key_len, true, &leaf, &pos);
	struct mvcc_rec *r;
	if (e == NULL)
		return false;
	r = ent_last(*e);
	if (!rec_live(r))
		return false;
	fill_kv(kv, ent_node(*e), r);
	return true;
}

/* Marks the slabs less than half live (not the current one) for
 * evacuation; false if there is none. */
static bool mem_mark_sparse(struct mem *mm)
{
	bool any = false;
	for (struct mem_slab *s = mm->slabs; s != NULL; s = s->next) {
		s->evacuate = s != mm->cur && s->live * 2 < s->used - MEM_HEAD;
		any |= s->evacuate;
	}
	return any;
}

static void mem_unmark(struct mem *mm)
{
	for (struct mem_slab *s = mm->slabs; s != NULL; s = s->next)
		s->evacuate = false;
}

/* Moves e's node and records out of slabs marked for evacuation; returns
 * the entry as it is then (the same one if nothing moved, or when out of
 * memory). */
static struct mvcc_ent *ent_evacuate(struct mem *mm, struct mvcc_ent *e)
{
	struct mvcc_hist *h = ent_hist(e);
	struct mvcc_key *n = ent_node(e), *nn;
	struct mvcc_rec *inl = node_inline(n);
	size_t len;

	for (uint32_t i = 0; h != NULL && i < h->n; i++) {
		struct mvcc_rec *r = h->r[i], *rr;
		if (r == inl || !mem_slab_of(r)->evacuate)
			continue;
		len = rec_len(r);
		rr = mem_alloc(mm, len, 1);
		if (rr == NULL)
			continue;
		memcpy(rr, r, len);
		h->r[i] = rr;
		mem_free(mm, r, len);
	}
	if (!mem_slab_of(n)->evacuate)
		return e;
	len = node_len(n);
	nn = mem_alloc(mm, len, NODE_ALIGN);
	if (nn == NULL)
		return e;
	memcpy(nn, n, len);
	mem_free(mm, n, len);
	if (h == NULL)
		return ent_of_node(nn);
	h->node = nn;
	for (uint32_t i = 0; i < h->n; i++)
		if (h->r[i] == inl)
			h->r[i] = node_inline(nn);
	return e;
}

int mvcc_compact(struct mvcc *m, int64_t rev)
{
	struct mvcc_ent **keep, *e;
	size_t nk = 0;
	int rv;

	if (rev <= m->compact_rev)
		return -KV_ECOMPACTED;
	if (rev > m->rev)
		return -KV_EFUTUREREV;
	/* Nodes may move or go: the index is rebuilt from the survivors. */
	keep = malloc((m->nkeys ? m->nkeys : 1) * sizeof(*keep));
	if (keep == NULL)
		return -KV_ENOMEM;
	for (struct bt_leaf *l = bt_first(&m->tree); l != NULL; l = l->next) {
		for (uint32_t j = 0; j < l->h.n; j++) {
			long i;
			uint32_t drop = 0;
			e = l->k[j];
			i = ent_at(e, rev);
			/* etcd keyIndex.compact: keep the latest revision <= rev
			 * unless it is a tombstone, and everything newer. */
			if (i >= 0)
				drop = (uint32_t)i + !rec_live(ent_rec(e, (uint32_t)i));
			e = ent_drop_front(m, e, drop);
			if (e != NULL)
				keep[nk++] = e;
			else
				m->nkeys--;
		}
	}
	/* What survives in half-empty slabs moves, so that they empty out:
	 * the memory a compaction frees goes back to the system. */
	if (mem_mark_sparse(&m->mem)) {
		for (size_t i = 0; i < nk; i++)
			keep[i] = ent_evacuate(&m->mem, keep[i]);
		mem_unmark(&m->mem);
	}
	bt_free(&m->tree);
	rv = bt_build(&m->tree, nk ? keep : NULL, nk);
	if (rv != 0) {
		/* Fatal for the caller (mvcc.h); leave a consistent empty store. */
		for (size_t i = 0; i < nk; i++)
			ent_free(&m->mem, keep[i]);
		m->nkeys = m->live = m->bytes = 0;
	}
	free(keep);
	if (rv == 0)
		m->compact_rev = rev;
	return rv;
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
	struct rec_fields f;

	rec_read(r, &f);
	p = put_u64(p, (uint64_t)f.mod);
	p = put_u32(p, f.sub);
	p = put_u64(p, (uint64_t)f.create);
	p = put_u64(p, (uint64_t)f.version);
	p = put_u64(p, (uint64_t)f.lease);
	return put_u32(p, f.vlen);
}

/* Every index entry of t in key order (e: the variable set). */
#define BT_FOREACH(e, t)                                                                 \
	for (struct bt_leaf *bt_l_ = bt_first(t); bt_l_ != NULL; bt_l_ = bt_l_->next)   \
		for (uint32_t bt_i_ = 0; bt_i_ < bt_l_->h.n && ((e) = bt_l_->k[bt_i_], 1); bt_i_++)

static uint32_t hash_rec(uint32_t h, const struct mvcc_key *n, const struct mvcc_rec *r)
{
	uint8_t buf[4 + SNAP_REC_FIXED];
	put_rec_fixed(put_u32(buf, node_klen(n)), r);
	h = mvcc_crc32c(h, buf, sizeof(buf));
	h = mvcc_crc32c(h, node_key(n), node_klen(n));
	return mvcc_crc32c(h, rec_val(r), rec_vlen(r));
}

int mvcc_hash_kv(struct mvcc *m, int64_t rev, uint32_t *hash, int64_t *compact_rev)
{
	int64_t c = m->compact_rev;
	struct mvcc_ent *e;
	uint32_t h = 0;

	*hash = 0;
	*compact_rev = c;
	if (rev > 0 && rev <= c)
		return -KV_ECOMPACTED;
	if (rev > m->rev)
		return -KV_EFUTUREREV;
	if (rev <= 0)
		rev = m->rev;
	BT_FOREACH(e, &m->tree)
	{
		long last = ent_at(e, rev);
		for (long i = 0; i <= last; i++) {
			struct mvcc_rec *r = ent_rec(e, (uint32_t)i);
			if (rec_mod(r) > c || (i == last && rec_live(r)))
				h = hash_rec(h, ent_node(e), r);
		}
	}
	*hash = h;
	return 0;
}

int mvcc_hash(struct mvcc *m, uint32_t *hash)
{
	uint8_t buf[16];
	struct mvcc_ent *e;
	uint32_t h;

	put_u64(put_u64(buf, (uint64_t)m->rev), (uint64_t)m->compact_rev);
	h = mvcc_crc32c(0, buf, sizeof(buf));
	BT_FOREACH(e, &m->tree)
	{
		for (uint32_t i = 0; i < ent_nrec(e); i++)
			h = hash_rec(h, ent_node(e), ent_rec(e, i));
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
	struct mvcc_ent *e;
	size_t size = SNAP_HEADER + 4;
	uint8_t *buf, *p;

	*data = NULL;
	*len = 0;
	BT_FOREACH(e, &m->tree)
	{
		size += SNAP_KEY_FIXED + node_klen(ent_node(e));
		for (uint32_t i = 0; i < ent_nrec(e); i++)
			size += SNAP_REC_FIXED + rec_vlen(ent_rec(e, i));
	}
	buf = malloc(size);
	if (buf == NULL)
		return -KV_ENOMEM;
	memcpy(buf, SNAP_MAGIC, 4);
	p = put_u32(buf + 4, SNAP_FORMAT);
	p = put_u64(p, (uint64_t)m->rev);
	p = put_u64(p, (uint64_t)m->compact_rev);
	p = put_u64(p, m->nkeys);
	BT_FOREACH(e, &m->tree)
	{
		p = put_u32(p, node_klen(ent_node(e)));
		memcpy(p, node_key(ent_node(e)), node_klen(ent_node(e)));
		p = put_u32(p + node_klen(ent_node(e)), ent_nrec(e));
		for (uint32_t i = 0; i < ent_nrec(e); i++) {
			const struct mvcc_rec *r = ent_rec(e, i);
			p = put_rec_fixed(p, r);
			memcpy(p, rec_val(r), rec_vlen(r));
			p += rec_vlen(r);
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
static bool rec_valid(const struct rec_fields *r, const struct rec_fields *prev, int64_t rev,
		      int64_t compact_rev)
{
	if (r->mod < 1 || r->mod > rev || r->sub > INT32_MAX || r->vlen > MVCC_VALUE_MAX)
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

/* One record at c (its bounds checked). */
static bool decode_rec(struct cursor *c, struct rec_fields *f)
{
	if (!cur_need(c, SNAP_REC_FIXED))
		return false;
	f->mod = (int64_t)get_u64(c->p);
	f->sub = get_u32(c->p + 8);
	f->create = (int64_t)get_u64(c->p + 12);
	f->version = (int64_t)get_u64(c->p + 20);
	f->lease = (int64_t)get_u64(c->p + 28);
	f->vlen = get_u32(c->p + 36);
	c->p += SNAP_REC_FIXED;
	if (!cur_need(c, f->vlen))
		return false;
	f->val = c->p;
	c->p += f->vlen;
	return true;
}

/* One key: its records are all checked first, then the node is made with
 * the latest one inline (the one a compaction keeps longest). */
static int decode_key(struct mvcc *m, struct cursor *c, const struct mvcc_ent *last,
		      struct mvcc_ent **out)
{
	struct rec_fields f, prev;
	struct cursor recs;
	uint32_t klen, nrec;
	const uint8_t *key;
	struct mvcc_key *n;
	struct mvcc_hist *h;
	struct mvcc_ent *e;

	if (!cur_need(c, 4))
		return -KV_ECORRUPT;
	klen = get_u32(c->p);
	c->p += 4;
	if (klen == 0 || !cur_need(c, (size_t)klen + 4))
		return -KV_ECORRUPT;
	key = c->p;
	if (last != NULL && key_cmp(node_key(ent_node(last)), node_klen(ent_node(last)), key, klen) >= 0)
		return -KV_ECORRUPT;
	nrec = get_u32(c->p + klen);
	if (nrec == 0 || nrec > (size_t)(c->end - c->p - klen - 4) / SNAP_REC_FIXED)
		return -KV_ECORRUPT;
	c->p += klen + 4;
	recs = *c;
	for (uint32_t i = 0; i < nrec; i++) {
		if (!decode_rec(c, &f) || !rec_valid(&f, i ? &prev : NULL, m->rev, m->compact_rev))
			return -KV_ECORRUPT;
		prev = f;
	}
	n = node_new(&m->mem, key, klen, &f);
	if (n == NULL)
		return -KV_ENOMEM;
	e = ent_of_node(n);
	if (nrec > 1) {
		h = hist_resize(NULL, rec_cap(nrec));
		if (h == NULL) {
			ent_free(&m->mem, e);
			return -KV_ENOMEM;
		}
		h->node = n;
		h->n = nrec;
		e = ent_of_hist(h);
		for (uint32_t i = 0; i + 1 < nrec; i++) {
			decode_rec(&recs, &f);
			h->r[i] = rec_new(&m->mem, &f);
			if (h->r[i] == NULL) {
				/* List what exists (and the node itself) for ent_free. */
				h->r[i] = node_inline(n);
				h->n = i + 1;
				ent_free(&m->mem, e);
				return -KV_ENOMEM;
			}
		}
		h->r[nrec - 1] = node_inline(n);
	}
	for (uint32_t i = 0; i < nrec; i++)
		m->bytes += rec_bytes(n, ent_rec(e, i));
	if (rec_live(ent_last(e)))
		m->live++;
	*out = e;
	return 0;
}

static int decode_body(struct mvcc *m, const uint8_t *data, size_t len)
{
	struct mvcc_ent **keys;
	struct cursor c;
	uint64_t nkeys, i;
	int rv = 0;

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
	/* Sorted as they come: the index is built in one pass at the end. */
	keys = malloc((nkeys ? nkeys : 1) * sizeof(*keys));
	if (keys == NULL)
		return -KV_ENOMEM;
	for (i = 0; i < nkeys && rv == 0; i++)
		rv = decode_key(m, &c, i ? keys[i - 1] : NULL, &keys[i]);
	if (rv != 0)
		i--; /* keys[i] was not made */
	else if (c.p != c.end)
		rv = -KV_ECORRUPT;
	if (rv == 0)
		rv = bt_build(&m->tree, keys, nkeys);
	if (rv == 0) {
		m->nkeys = nkeys;
	} else {
		while (i-- > 0)
			ent_free(&m->mem, keys[i]);
	}
	free(keys);
	return rv;
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
