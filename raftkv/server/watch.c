/*
 * watch: the watcher registry (see watch.h for the model).
 *
 * Every watcher is in exactly one state:
 *   SYNCED    it has every event up to the hub's last revision; it sits in
 *             an index (h->keys for a single key, h->ranges for a range)
 *             and gets live events from the observer/commit hook;
 *   UNSYNCED  it still needs revisions from w->next_rev on; it sits in the
 *             queue h->unsynced and catches up from mvcc history on ticks;
 *   IDLE      canceled by compaction, or its stream died: no index, no
 *             queue, kept only so its id stays taken (as etcd does).
 *
 * h->ranges is a red-black tree of range watchers ordered by start key,
 * augmented with the greatest end key of each subtree, so a key is matched
 * by a stabbing query that only descends where some range can contain it.
 * libbsd's RB_AUGMENT only fixes the nodes a rotation touches, so a watcher
 * is linked in contributing nothing (inactive) and activated afterwards,
 * and deactivated before it is unlinked, each followed by a walk to the
 * root: the augmented values stay exact through every rotation.
 */
#include "server/watch.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <uv.h>

/* libbsd's RB_GENERATE_STATIC expects BSD's __unused, which glibc lacks. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "lib/arena.h"
#include "lib/blob.h"
#include "lib/err.h"
#include "server/config.h"
#include "server/mvcc.h"
#include "server/server.h"

enum { W_SYNCED, W_UNSYNCED, W_IDLE };

struct watch_w {
	RB_ENTRY(watch_w) ix;     /* h->keys or h->ranges while SYNCED */
	RB_ENTRY(watch_w) byid;   /* st->ids */
	TAILQ_ENTRY(watch_w) uq;  /* h->unsynced while UNSYNCED */
	struct watch_w *max;      /* h->ranges: greatest end in this subtree */
	struct watch_stream *st;
	int64_t id;
	int64_t next_rev;         /* first revision not delivered yet */
	uint32_t klen;
	uint32_t elen;            /* 0 for a single key */
	int32_t bhead, btail;     /* this revision's matches (h->mt), if touched */
	int32_t phead, ptail;     /* events held for the batch (h->pend), if pending */
	uint8_t state;
	uint8_t win_shift;        /* catch-up window: max_sync_revs << this */
	bool touched : 1;         /* matched by the revision being applied */
	bool pending : 1;         /* has events in the batch, not sent yet */
	bool ranged : 1;
	bool unbounded : 1;       /* range_end "\0": every key >= key */
	bool active : 1;          /* counts in h->ranges' augmentation */
	bool prev_kv : 1;
	bool noput : 1;
	bool nodelete : 1;
	bool progress : 1;        /* progress_notify */
	bool progress_due : 1;    /* nothing sent since the last progress tick */
	uint8_t key[];            /* key bytes, then end bytes */
};

RB_HEAD(watch_keys, watch_w);
RB_HEAD(watch_ranges, watch_w);
RB_HEAD(watch_ids, watch_w);
TAILQ_HEAD(watch_queue, watch_w);

struct watch_stream {
	struct watch_hub *hub;
	const struct watch_sink_ops *ops;
	void *sink;
	LIST_ENTRY(watch_stream) link;
	struct watch_ids ids;
	int64_t next_id;
	int64_t pend_rev;         /* pend_val was measured for this revision */
	size_t pend_val;
	uint32_t n_unsynced;
	bool dead;
	bool progress_deferred;   /* a progress_request waits for catch-up */
};

/* A change of the revision being applied that some watcher wants. */
struct watch_ev {
	struct mvcc_kv kv;
	struct mvcc_kv prev;
	bool has_prev;
	Mvccpb__Event *pb[2];     /* built on first use: without, with prev_kv */
	/* Its encoding in h->win[] for watchers without / with prev_kv. */
	bool need[2];
	size_t off[2], len[2];    /* the whole field */
	size_t msize[2];          /* the Event message inside */
};

struct watch_match {
	struct watch_w *w;
	uint32_t ev;
	int32_t next;
};

/* Encoded events held for one watcher in the batch: win[w->prev_kv][off,
 * off + len), contiguous, from revision rev on. */
struct watch_piece {
	int64_t rev;
	size_t off, len;
	uint32_t nev;
	int32_t next;
};

/* A change found in history by a catching-up watcher. */
struct watch_chg {
	struct watch_ev e;
	uint32_t sub;
};

struct watch_hub {
	struct server *srv;
	struct mvcc *store;       /* the store we are attached to */
	int64_t last_rev;         /* its revision as of our last commit hook */
	struct watch_config cfg;
	struct watch_keys keys;
	struct watch_ranges ranges;
	struct watch_queue unsynced;
	LIST_HEAD(, watch_stream) streams;
	struct watch_stats stats;
	/* the revision being applied (observer → commit hook) */
	struct watch_ev *evs;
	size_t nev, cap_ev;
	struct watch_match *mt;
	size_t nmt, cap_mt;
	struct watch_w **touched;
	size_t ntouched, cap_touched;
	bool oom;                 /* lost track of this revision's matches */
	/* the batch: live events encoded for fast-path watchers, not sent yet
	 * (win[k]->len is the bytes used, win_cap[k] what is allocated) */
	struct blob *win[2];
	size_t win_cap[2];
	struct watch_piece *pend;
	size_t npend, cap_pend;
	struct watch_w **pw;      /* watchers with pieces, in order */
	size_t npw, cap_pw;
	uv_idle_t idle;           /* sends the batch once per loop turn */
	bool idle_init;
	bool idle_on;
	int closing;              /* handles whose close callback is due */
	/* catch-up scratch */
	struct watch_chg *chg;
	size_t nchg, cap_chg;
	bool chg_oom;
	struct watch_w *chg_w;
	struct arena arena;       /* responses being built */
	uv_timer_t timer;
	bool timer_init;
	bool timer_on;
	uint64_t next_progress;
	uint64_t next_check;
};

/* A batch is sent once it holds this many bytes of encoded events, or at
 * the end of the loop turn: each watcher gets at most this much in one
 * response before its stream's high water is looked at again. */
#define WATCH_BATCH_BYTES (64u << 10)

/* Events collected per tick by catch-up, all watchers together: bounds the
 * loop time one tick may take. */
#define WATCH_SYNC_BUDGET 200000
/* A catch-up window with fewer events than this is widened. */
#define WATCH_SPARSE_WINDOW 1024

static const char watch_reason_dup[] = "mvcc: duplicate watch ID provided on the WatchStream";
static const char watch_reason_empty[] = "mvcc: watcher range is empty";

/* --- keys and the three trees ------------------------------------------ */

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static const uint8_t *w_end(const struct watch_w *w)
{
	return w->key + w->klen;
}

/* Does w's range end after k (k < end)? */
static bool w_end_after(const struct watch_w *w, const uint8_t *k, size_t klen)
{
	return w->unbounded || key_cmp(w_end(w), w->elen, k, klen) > 0;
}

static int w_end_cmp(const struct watch_w *a, const struct watch_w *b)
{
	if (a->unbounded || b->unbounded)
		return (int)a->unbounded - (int)b->unbounded;
	return key_cmp(w_end(a), a->elen, w_end(b), b->elen);
}

/* Same key (or start) many times: the address breaks ties. */
static int w_cmp(const struct watch_w *a, const struct watch_w *b)
{
	int c = key_cmp(a->key, a->klen, b->key, b->klen);
	if (c != 0)
		return c;
	return (uintptr_t)a < (uintptr_t)b ? -1 : (uintptr_t)a > (uintptr_t)b;
}

static int w_id_cmp(const struct watch_w *a, const struct watch_w *b)
{
	return a->id < b->id ? -1 : a->id > b->id;
}

RB_GENERATE_STATIC(watch_keys, watch_w, ix, w_cmp)
RB_GENERATE_STATIC(watch_ids, watch_w, byid, w_id_cmp)

static void range_augment(struct watch_w *n)
{
	struct watch_w *m = n->active ? n : NULL, *c;
	c = RB_LEFT(n, ix);
	if (c != NULL && c->max != NULL && (m == NULL || w_end_cmp(c->max, m) > 0))
		m = c->max;
	c = RB_RIGHT(n, ix);
	if (c != NULL && c->max != NULL && (m == NULL || w_end_cmp(c->max, m) > 0))
		m = c->max;
	n->max = m;
}

#undef RB_AUGMENT
#define RB_AUGMENT(x) range_augment(x)
RB_GENERATE_STATIC(watch_ranges, watch_w, ix, w_cmp)
#undef RB_AUGMENT

static void range_fix_up(struct watch_w *n)
{
	for (; n != NULL; n = RB_PARENT(n, ix))
		range_augment(n);
}

static void index_insert(struct watch_hub *h, struct watch_w *w)
{
	if (!w->ranged) {
		RB_INSERT(watch_keys, &h->keys, w);
		return;
	}
	w->active = false;
	w->max = NULL;
	RB_INSERT(watch_ranges, &h->ranges, w);
	w->active = true;
	range_fix_up(w);
}

static void index_remove(struct watch_hub *h, struct watch_w *w)
{
	if (!w->ranged) {
		RB_REMOVE(watch_keys, &h->keys, w);
		return;
	}
	w->active = false;
	range_fix_up(w);
	RB_REMOVE(watch_ranges, &h->ranges, w);
}

/* The first single-key watcher on exactly k. */
static struct watch_w *keys_first(struct watch_hub *h, const uint8_t *k, size_t klen)
{
	struct watch_w *n = RB_ROOT(&h->keys), *found = NULL;
	while (n != NULL) {
		int c = key_cmp(k, klen, n->key, n->klen);
		if (c <= 0) {
			if (c == 0)
				found = n;
			n = RB_LEFT(n, ix);
		} else {
			n = RB_RIGHT(n, ix);
		}
	}
	return found;
}

/* --- the revision being applied ----------------------------------------- */

static bool grow(void **arr, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 16;
	void *p;
	if (need <= *cap)
		return true;
	while (c < need)
		c *= 2;
	p = realloc(*arr, c * size);
	if (p == NULL)
		return false;
	*arr = p;
	*cap = c;
	return true;
}

struct match_ctx {
	const struct mvcc_kv *kv;
	const struct mvcc_kv *prev;
	int64_t ev; /* index in h->evs once stored, else -1 */
};

static void hub_match(struct watch_hub *h, struct match_ctx *c, struct watch_w *w)
{
	bool del = c->kv->version == 0;
	struct watch_match *m;

	if ((del && w->nodelete) || (!del && w->noput) || c->kv->mod_rev < w->next_rev)
		return;
	if (c->ev < 0) {
		struct watch_ev *e;
		if (!grow((void **)&h->evs, &h->cap_ev, h->nev + 1, sizeof(*h->evs))) {
			h->oom = true;
			return;
		}
		e = &h->evs[h->nev];
		e->kv = *c->kv;
		e->has_prev = c->prev != NULL;
		if (c->prev != NULL)
			e->prev = *c->prev;
		e->pb[0] = e->pb[1] = NULL;
		e->need[0] = e->need[1] = false;
		c->ev = (int64_t)h->nev++;
	}
	if (!w->touched && !grow((void **)&h->touched, &h->cap_touched, h->ntouched + 1,
				 sizeof(*h->touched))) {
		h->oom = true;
		return;
	}
	if (h->nmt >= INT32_MAX ||
	    !grow((void **)&h->mt, &h->cap_mt, h->nmt + 1, sizeof(*h->mt))) {
		h->oom = true;
		return;
	}
	m = &h->mt[h->nmt];
	m->w = w;
	m->ev = (uint32_t)c->ev;
	m->next = -1;
	if (!w->touched) {
		w->touched = true;
		w->bhead = (int32_t)h->nmt;
		h->touched[h->ntouched++] = w;
	} else {
		h->mt[w->btail].next = (int32_t)h->nmt;
	}
	w->btail = (int32_t)h->nmt;
	h->nmt++;
}

/* Every synced range watcher containing k, under n. */
static void range_stab(struct watch_hub *h, struct watch_w *n, struct match_ctx *c)
{
	const uint8_t *k = c->kv->key;
	size_t klen = c->kv->key_len;

	while (n != NULL && !h->oom) {
		if (n->max == NULL || !w_end_after(n->max, k, klen))
			return;
		range_stab(h, RB_LEFT(n, ix), c);
		/* Everything to the right starts at or after n. */
		if (key_cmp(n->key, n->klen, k, klen) > 0)
			return;
		if (n->active && w_end_after(n, k, klen))
			hub_match(h, c, n);
		n = RB_RIGHT(n, ix);
	}
}

static void hub_observe(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev)
{
	struct watch_hub *h = arg;
	struct match_ctx c = {kv, prev, -1};
	struct watch_w *w;

	if (h->oom)
		return;
	for (w = keys_first(h, kv->key, kv->key_len);
	     w != NULL && key_cmp(w->key, w->klen, kv->key, kv->key_len) == 0;
	     w = RB_NEXT(watch_keys, &h->keys, w))
		hub_match(h, &c, w);
	range_stab(h, RB_ROOT(&h->ranges), &c);
}

/* --- responses ---------------------------------------------------------- */

static void resp_init(Etcdserverpb__WatchResponse *r, Etcdserverpb__ResponseHeader *hdr,
		      int64_t rev, int64_t watch_id)
{
	etcdserverpb__response_header__init(hdr);
	etcdserverpb__watch_response__init(r);
	hdr->revision = rev;
	r->header = hdr;
	r->watch_id = watch_id;
}

static Mvccpb__KeyValue *kv_pb(struct arena *a, const struct mvcc_kv *kv)
{
	Mvccpb__KeyValue *p = arena_alloc(a, sizeof(*p));
	if (p == NULL)
		return NULL;
	mvccpb__key_value__init(p);
	p->key.data = (uint8_t *)kv->key;
	p->key.len = kv->key_len;
	p->mod_revision = kv->mod_rev;
	/* A DELETE event's kv carries only the key and mod_revision. */
	if (kv->version != 0) {
		p->create_revision = kv->create_rev;
		p->version = kv->version;
		p->value.data = (uint8_t *)kv->value;
		p->value.len = kv->value_len;
		p->lease = kv->lease;
	}
	return p;
}

static Mvccpb__Event *ev_pb(struct arena *a, struct watch_ev *e, bool with_prev)
{
	Mvccpb__Event *p;

	with_prev = with_prev && e->has_prev;
	if (e->pb[with_prev] != NULL)
		return e->pb[with_prev];
	p = arena_alloc(a, sizeof(*p));
	if (p == NULL)
		return NULL;
	mvccpb__event__init(p);
	p->type = e->kv.version == 0 ? MVCCPB__EVENT__EVENT_TYPE__DELETE
				     : MVCCPB__EVENT__EVENT_TYPE__PUT;
	p->kv = kv_pb(a, &e->kv);
	if (p->kv == NULL)
		return NULL;
	if (with_prev) {
		p->prev_kv = kv_pb(a, &e->prev);
		if (p->prev_kv == NULL)
			return NULL;
	}
	e->pb[with_prev] = p;
	return p;
}

static void arena_reset(struct arena *a)
{
	arena_close(a);
	arena_init(a);
}

static void w_idle(struct watch_hub *h, struct watch_w *w);
static void stream_maybe_progress(struct watch_stream *st);

static size_t stream_pending(const struct watch_stream *st)
{
	return st->ops->pending ? st->ops->pending(st->sink) : 0;
}

/* The stream can take nothing more: its watchers stop where they are. */
static void stream_kill(struct watch_stream *st)
{
	struct watch_w *w;
	if (st->dead)
		return;
	st->dead = true;
	st->progress_deferred = false;
	RB_FOREACH(w, watch_ids, &st->ids)
		w_idle(st->hub, w);
}

static int stream_send(struct watch_stream *st, Etcdserverpb__WatchResponse *r)
{
	int rv;
	if (st->dead)
		return -KV_ECANCELED;
	rv = st->ops->send(st->sink, r);
	if (rv != 0) {
		stream_kill(st);
		return rv;
	}
	st->hub->stats.responses++;
	st->hub->stats.events += r->n_events;
	return 0;
}

static int stream_send_simple(struct watch_stream *st, int64_t rev, int64_t watch_id)
{
	Etcdserverpb__WatchResponse r;
	Etcdserverpb__ResponseHeader hdr;
	resp_init(&r, &hdr, rev, watch_id);
	return stream_send(st, &r);
}

/* --- state changes ------------------------------------------------------ */

static void w_leave(struct watch_hub *h, struct watch_w *w)
{
	/* Whatever the batch holds for it is not sent now (its next_rev has
	 * not moved past those events). */
	w->pending = false;
	if (w->state == W_SYNCED) {
		index_remove(h, w);
		h->stats.synced--;
	} else if (w->state == W_UNSYNCED) {
		TAILQ_REMOVE(&h->unsynced, w, uq);
		h->stats.unsynced--;
		w->st->n_unsynced--;
	}
	w->state = W_IDLE;
}

static void w_idle(struct watch_hub *h, struct watch_w *w)
{
	w_leave(h, w);
}

static void w_enter_unsynced(struct watch_hub *h, struct watch_w *w, int64_t next_rev)
{
	w_leave(h, w);
	if (next_rev > w->next_rev)
		w->next_rev = next_rev;
	w->state = W_UNSYNCED;
	TAILQ_INSERT_TAIL(&h->unsynced, w, uq);
	h->stats.unsynced++;
	w->st->n_unsynced++;
}

static void w_enter_synced(struct watch_hub *h, struct watch_w *w)
{
	w_leave(h, w);
	w->state = W_SYNCED;
	index_insert(h, w);
	h->stats.synced++;
}

/* A synced watcher cannot be sent revision rev now (nor what the batch
 * holds for it). */
static void w_fall_behind(struct watch_hub *h, struct watch_w *w, int64_t rev)
{
	if (w->pending && h->pend[w->phead].rev < rev)
		rev = h->pend[w->phead].rev;
	w_enter_unsynced(h, w, rev);
	h->stats.fell_behind++;
}

/* Every synced watcher into the unsynced queue (store swapped, or this
 * revision's matches were lost): they re-read what they miss from history. */
static void hub_all_behind(struct watch_hub *h, int64_t next_rev)
{
	struct watch_w *w;
	while ((w = RB_ROOT(&h->keys)) != NULL)
		w_fall_behind(h, w, next_rev);
	while ((w = RB_ROOT(&h->ranges)) != NULL)
		w_fall_behind(h, w, next_rev);
}

static void hub_revision_reset(struct watch_hub *h)
{
	for (size_t i = 0; i < h->ntouched; i++)
		h->touched[i]->touched = false;
	h->nev = h->nmt = h->ntouched = 0;
	h->oom = false;
	arena_reset(&h->arena);
}

/* Protobuf wire format of what send_events queues (rpc.proto): the
 * WatchResponse fields header = 1, watch_id = 2 and events = 11. */
#define WATCH_TAG_HEADER 0x0a   /* field 1, length-delimited */
#define WATCH_TAG_WATCH_ID 0x10 /* field 2, varint */
#define WATCH_TAG_EVENTS 0x5a   /* field 11, length-delimited */

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t watch_head_encode(uint8_t *out, const uint8_t *hdr, size_t hdr_len, int64_t watch_id)
{
	size_t n = 0;

	out[n++] = WATCH_TAG_HEADER;
	n += varint_put(out + n, hdr_len);
	memcpy(out + n, hdr, hdr_len);
	n += hdr_len;
	/* proto3: a zero scalar is left out, as protobuf-c does. */
	if (watch_id != 0) {
		out[n++] = WATCH_TAG_WATCH_ID;
		n += varint_put(out + n, (uint64_t)watch_id);
	}
	return n;
}

/* Is the stream of w below its high water for revision rev?  Measured once
 * per stream and revision: the transport may have to walk its queue to
 * answer, and a revision can touch many of its watchers. */
static bool w_room(struct watch_hub *h, struct watch_w *w, int64_t rev)
{
	struct watch_stream *st = w->st;

	if (st->pend_rev != rev) {
		st->pend_val = stream_pending(st);
		st->pend_rev = rev;
	}
	return st->pend_val <= h->cfg.high_water;
}

/* Room for `more` bytes at the end of h->win[k]. */
static bool win_reserve(struct watch_hub *h, int k, size_t more)
{
	struct blob *b = h->win[k];
	size_t used = b ? b->len : 0, cap = h->win_cap[k];

	if (more <= cap - used)
		return true;
	if (more > SIZE_MAX / 4 - used)
		return false;
	cap = cap ? cap : 4096;
	while (cap < used + more)
		cap *= 2;
	/* Nobody else holds the batch's buffers until it is sent. */
	b = realloc(b, sizeof(*b) + cap);
	if (b == NULL)
		return false;
	if (h->win[k] == NULL) {
		b->refs = 1;
		b->len = 0;
	}
	h->win[k] = b;
	h->win_cap[k] = cap;
	return true;
}

/*
 * Appends every event of this revision that some fast-path watcher needs to
 * the batch, once per prev_kv choice: "events" fields, in event order, at
 * the end of h->win[0] (for watchers without prev_kv) or h->win[1] (with
 * it).  A watcher matching consecutive events, over consecutive revisions,
 * thus finds its events in one contiguous slice.  false when out of memory.
 */
static bool hub_encode(struct watch_hub *h)
{
	for (int k = 0; k < 2; k++) {
		size_t total = 0, size;
		uint8_t *p;

		for (size_t i = 0; i < h->nev; i++) {
			struct watch_ev *e = &h->evs[i];
			Mvccpb__Event *pb;
			if (!e->need[k])
				continue;
			pb = ev_pb(&h->arena, e, k);
			if (pb == NULL)
				return false;
			size = protobuf_c_message_get_packed_size(&pb->base);
			e->msize[k] = size;
			e->len[k] = 1 + varint_len(size) + size;
			total += e->len[k];
		}
		if (total == 0)
			continue;
		if (!win_reserve(h, k, total))
			return false;
		p = h->win[k]->data + h->win[k]->len;
		for (size_t i = 0; i < h->nev; i++) {
			struct watch_ev *e = &h->evs[i];
			if (!e->need[k])
				continue;
			e->off[k] = (size_t)(p - h->win[k]->data);
			*p++ = WATCH_TAG_EVENTS;
			p += varint_put(p, e->msize[k]);
			p += protobuf_c_message_pack(&e->pb[k && e->has_prev]->base, p);
		}
		h->win[k]->len = (size_t)(p - h->win[k]->data);
	}
	return true;
}

/* Adds w's events of revision rev to the batch: appended to its last piece
 * where they follow it in the buffer.  false when out of memory. */
static bool w_hold(struct watch_hub *h, struct watch_w *w, int64_t rev)
{
	int k = w->prev_kv;

	if (!w->pending && !grow((void **)&h->pw, &h->cap_pw, h->npw + 1, sizeof(*h->pw)))
		return false;
	for (int32_t i = w->bhead; i >= 0; i = h->mt[i].next) {
		const struct watch_ev *e = &h->evs[h->mt[i].ev];
		struct watch_piece *pc;

		if (w->pending) {
			pc = &h->pend[w->ptail];
			if (pc->off + pc->len == e->off[k]) {
				pc->len += e->len[k];
				pc->nev++;
				continue;
			}
		}
		if (h->npend >= INT32_MAX ||
		    !grow((void **)&h->pend, &h->cap_pend, h->npend + 1, sizeof(*h->pend)))
			return false;
		pc = &h->pend[h->npend];
		pc->rev = rev;
		pc->off = e->off[k];
		pc->len = e->len[k];
		pc->nev = 1;
		pc->next = -1;
		if (w->pending) {
			h->pend[w->ptail].next = (int32_t)h->npend;
		} else {
			w->pending = true;
			w->phead = (int32_t)h->npend;
			h->pw[h->npw++] = w;
		}
		w->ptail = (int32_t)h->npend;
		h->npend++;
	}
	return true;
}

/* Sends w what the batch holds for it, in one response at the hub's
 * revision: one slice of the shared buffer, or a copy when its pieces are
 * not contiguous. */
static void w_send_held(struct watch_hub *h, struct watch_w *w)
{
	struct watch_stream *st = w->st;
	struct blob *win = h->win[w->prev_kv], *b = win;
	const struct watch_piece *pc = &h->pend[w->phead];
	size_t off = pc->off, len = pc->len, nev = pc->nev;
	int rv;

	w->pending = false;
	if (pc->next >= 0) {
		/* Events with others' in between: put them together. */
		len = 0;
		nev = 0;
		for (int32_t i = w->phead; i >= 0; i = h->pend[i].next)
			len += h->pend[i].len;
		b = blob_new(len);
		if (b == NULL) {
			w->pending = true;
			w_fall_behind(h, w, h->last_rev);
			return;
		}
		len = 0;
		for (int32_t i = w->phead; i >= 0; i = h->pend[i].next) {
			pc = &h->pend[i];
			memcpy(b->data + len, win->data + pc->off, pc->len);
			len += pc->len;
			nev += pc->nev;
		}
		off = 0;
	}
	rv = st->ops->send_events(st->sink, h->last_rev, w->id, b, off, len);
	if (b != win)
		blob_unref(b);
	if (rv != 0) {
		stream_kill(st);
		return;
	}
	h->stats.responses++;
	h->stats.events += nev;
	if (w->next_rev <= h->last_rev)
		w->next_rev = h->last_rev + 1;
	w->progress_due = false;
}

/* Sends the batch: every watcher with held events gets them, in one
 * response each. */
static void hub_flush(struct watch_hub *h)
{
	for (int k = 0; k < 2; k++) {
		struct blob *b = h->win[k];
		/* The transport judges what a reference keeps alive by b->len
		 * (rpc_call_send_raw): give back the doubling's slack first. */
		if (b != NULL && b->len > 0 && h->win_cap[k] > b->len) {
			b = realloc(b, sizeof(*b) + b->len);
			if (b != NULL) {
				h->win[k] = b;
				h->win_cap[k] = b->len;
			}
		}
	}
	for (size_t i = 0; i < h->npw; i++) {
		struct watch_w *w = h->pw[i];
		/* Not pending: it left the synced set since (its next_rev
		 * was kept where the held events begin). */
		if (w->pending && !w->st->dead)
			w_send_held(h, w);
		w->pending = false;
	}
	h->npw = h->npend = 0;
	for (int k = 0; k < 2; k++) {
		/* The transports hold their own references. */
		blob_unref(h->win[k]);
		h->win[k] = NULL;
		h->win_cap[k] = 0;
	}
	if (h->idle_on) {
		uv_idle_stop(&h->idle);
		h->idle_on = false;
	}
}

static void hub_idle_cb(uv_idle_t *i)
{
	hub_flush(i->data);
}

/* Sends one matched watcher its events of revision rev as protobuf structs
 * (a sink without send_events). */
static void hub_deliver(struct watch_hub *h, struct watch_w *w, int64_t rev)
{
	struct watch_stream *st = w->st;
	Etcdserverpb__WatchResponse r;
	Etcdserverpb__ResponseHeader hdr;
	Mvccpb__Event **evs;
	size_t n = 0;
	int32_t i;

	for (i = w->bhead; i >= 0; i = h->mt[i].next)
		n++;
	evs = arena_alloc(&h->arena, n * sizeof(*evs));
	if (evs == NULL) {
		w_fall_behind(h, w, rev);
		return;
	}
	n = 0;
	for (i = w->bhead; i >= 0; i = h->mt[i].next) {
		evs[n] = ev_pb(&h->arena, &h->evs[h->mt[i].ev], w->prev_kv);
		if (evs[n] == NULL) {
			w_fall_behind(h, w, rev);
			return;
		}
		n++;
	}
	resp_init(&r, &hdr, rev, w->id);
	r.n_events = n;
	r.events = evs;
	if (stream_send(st, &r) != 0)
		return;
	w->next_rev = rev + 1;
	w->progress_due = false;
}

/*
 * Every watcher matched by revision rev: those whose stream is above its
 * high water fall behind; the events the fast-path watchers need are
 * encoded once into the batch and held for them; the others are sent their
 * response now.  The batch goes out at the end of the loop turn (cfg.batch;
 * at once otherwise) or once it is large, so that a watcher gets one
 * response for all the revisions of a turn: fan-out costs per watcher and
 * turn, not per watcher and revision, and each response still holds whole
 * revisions only, in order, as etcd's catch-up responses do.
 */
static void hub_fan_out(struct watch_hub *h, int64_t rev)
{
	bool fast = false, encoded;
	size_t i;

	for (i = 0; i < h->ntouched; i++) {
		struct watch_w *w = h->touched[i];
		if (w->state != W_SYNCED || w->st->dead)
			continue;
		if (!w_room(h, w, rev)) {
			w_fall_behind(h, w, rev);
			continue;
		}
		if (w->st->ops->send_events == NULL)
			continue;
		for (int32_t j = w->bhead; j >= 0; j = h->mt[j].next)
			h->evs[h->mt[j].ev].need[w->prev_kv] = true;
		fast = true;
	}
	encoded = fast && hub_encode(h);
	for (i = 0; i < h->ntouched; i++) {
		struct watch_w *w = h->touched[i];
		if (w->state != W_SYNCED || w->st->dead)
			continue;
		if (w->st->ops->send_events == NULL)
			hub_deliver(h, w, rev);
		else if (!encoded || !w_hold(h, w, rev))
			w_fall_behind(h, w, rev);
	}
	if (h->npw == 0)
		return;
	if (!h->cfg.batch || (h->win[0] ? h->win[0]->len : 0) + (h->win[1] ? h->win[1]->len : 0) >=
				     WATCH_BATCH_BYTES) {
		hub_flush(h);
	} else if (h->idle_init && !h->idle_on) {
		uv_idle_start(&h->idle, hub_idle_cb);
		h->idle_on = true;
	}
}

static void hub_commit(void *arg, int64_t rev)
{
	struct watch_hub *h = arg;

	h->last_rev = rev;
	if (h->oom)
		hub_all_behind(h, rev);
	else
		hub_fan_out(h, rev);
	if (h->ntouched || h->nev || h->oom)
		hub_revision_reset(h);
}

/* --- the store ----------------------------------------------------------- */

static void hub_attach(struct watch_hub *h)
{
	struct mvcc *m = h->srv->mvcc;
	bool swapped = h->store != NULL;

	h->store = m;
	if (m == NULL)
		return;
	mvcc_set_observer(m, hub_observe, h);
	mvcc_set_commit_hook(m, hub_commit, h);
	/* Whatever the old store had, the synced watchers have seen; what the
	 * new one holds beyond, they will read from its history. */
	if (swapped)
		hub_all_behind(h, h->last_rev + 1);
	h->last_rev = mvcc_rev(m);
}

/* Every entry point but the commit hook starts here: the batch goes out
 * before anything else the hub sends or changes, so that no response
 * overtakes events held for the same watcher. */
static void hub_check_store(struct watch_hub *h)
{
	hub_flush(h);
	if (h->srv->mvcc != h->store)
		hub_attach(h);
}

void watch_hub_flush(struct watch_hub *h)
{
	hub_flush(h);
}

void watch_hub_store_changed(struct watch_hub *h)
{
	hub_check_store(h);
}

/* --- catching up from history ------------------------------------------- */

static void chg_collect(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev,
			uint32_t sub)
{
	struct watch_hub *h = arg;
	struct watch_w *w = h->chg_w;
	bool del = kv->version == 0;
	struct watch_chg *c;

	if ((del && w->nodelete) || (!del && w->noput) || h->chg_oom)
		return;
	if (!grow((void **)&h->chg, &h->cap_chg, h->nchg + 1, sizeof(*h->chg))) {
		h->chg_oom = true;
		return;
	}
	c = &h->chg[h->nchg++];
	c->e.kv = *kv;
	c->e.has_prev = prev != NULL;
	if (prev != NULL)
		c->e.prev = *prev;
	c->e.pb[0] = c->e.pb[1] = NULL;
	c->sub = sub;
}

static int chg_order(const void *a, const void *b)
{
	const struct watch_chg *x = a, *y = b;
	if (x->e.kv.mod_rev != y->e.kv.mod_rev)
		return x->e.kv.mod_rev < y->e.kv.mod_rev ? -1 : 1;
	return x->sub < y->sub ? -1 : x->sub > y->sub;
}

/* Roughly what an event adds to a response. */
static size_t chg_size(const struct watch_chg *c, bool prev_kv)
{
	size_t n = 32 + c->e.kv.key_len + c->e.kv.value_len;
	if (prev_kv && c->e.has_prev)
		n += 32 + c->e.prev.key_len + c->e.prev.value_len;
	return n;
}

/* Sends h->chg[from, to) (whole revisions) to w, header at rev cur.
 * Returns 0 or the send error. */
static int chg_send(struct watch_hub *h, struct watch_w *w, size_t from, size_t to, int64_t cur)
{
	Etcdserverpb__WatchResponse r;
	Etcdserverpb__ResponseHeader hdr;
	Mvccpb__Event **evs = arena_alloc(&h->arena, (to - from) * sizeof(*evs));
	int rv;

	if (evs == NULL)
		return -KV_ENOMEM;
	for (size_t i = from; i < to; i++) {
		evs[i - from] = ev_pb(&h->arena, &h->chg[i].e, w->prev_kv);
		if (evs[i - from] == NULL) {
			arena_reset(&h->arena);
			return -KV_ENOMEM;
		}
	}
	resp_init(&r, &hdr, cur, w->id);
	r.n_events = to - from;
	r.events = evs;
	rv = stream_send(w->st, &r);
	arena_reset(&h->arena);
	return rv;
}

/* Sends the compacted cancel: header without revision, as etcd's. */
static void w_compacted(struct watch_hub *h, struct watch_w *w, int64_t compact_rev)
{
	Etcdserverpb__WatchResponse r;
	Etcdserverpb__ResponseHeader hdr;
	resp_init(&r, &hdr, 0, w->id);
	r.canceled = true;
	r.compact_revision = compact_rev;
	if (stream_send(w->st, &r) == 0) {
		w_idle(h, w);
		stream_maybe_progress(w->st);
	}
}

/*
 * Moves an unsynced watcher forward from history, one window of revisions
 * at a time, while its stream has room and the tick's budget lasts.  A
 * window costs one pass over the watcher's key range whatever its length,
 * so it starts at max_sync_revs and grows while windows come back sparse:
 * a broad watcher far behind needs few passes.  The budget counts keys
 * visited as well as events.  Each response holds whole revisions only.
 */
static void w_catch_up(struct watch_hub *h, struct watch_w *w, size_t *budget)
{
	struct watch_stream *st = w->st;
	size_t limit = h->cfg.low_water;

	while (w->state == W_UNSYNCED) {
		int64_t cur = h->last_rev, comp = mvcc_compact_rev(h->store), to;
		int64_t win = (h->cfg.max_sync_revs > 0 ? h->cfg.max_sync_revs : 1) << w->win_shift;
		size_t i, j, bytes, cost;

		if (w->next_rev < comp) {
			w_compacted(h, w, comp);
			break;
		}
		if (w->next_rev > cur) {
			w_enter_synced(h, w);
			stream_maybe_progress(st);
			break;
		}
		if (*budget == 0 || stream_pending(st) > limit)
			break;
		limit = h->cfg.high_water;
		to = cur - w->next_rev >= win ? w->next_rev + win - 1 : cur;
		h->nchg = 0;
		h->chg_oom = false;
		h->chg_w = w;
		cost = (size_t)mvcc_changes(h->store, w->key, w->klen, w_end(w), w->elen,
					    w->next_rev, to, chg_collect, h);
		if (h->chg_oom)
			break;
		if (w->ranged && h->nchg > 1)
			qsort(h->chg, h->nchg, sizeof(*h->chg), chg_order);
		cost += h->nchg;
		*budget -= cost < *budget ? cost : *budget;
		if (h->nchg < WATCH_SPARSE_WINDOW && w->win_shift < 40)
			w->win_shift += 2;
		else if (h->nchg > 16 * WATCH_SPARSE_WINDOW && w->win_shift > 0)
			w->win_shift--;
		for (i = 0; i < h->nchg; i = j) {
			bytes = 0;
			j = i;
			while (j < h->nchg && (j == i || bytes < h->cfg.max_resp_bytes ||
					       h->chg[j].e.kv.mod_rev == h->chg[j - 1].e.kv.mod_rev)) {
				bytes += chg_size(&h->chg[j], w->prev_kv);
				j++;
			}
			if (chg_send(h, w, i, j, cur) != 0)
				return;
			w->next_rev = h->chg[j - 1].e.kv.mod_rev + 1;
			w->progress_due = false;
			if (j < h->nchg && stream_pending(st) > h->cfg.high_water)
				return;
		}
		w->next_rev = to + 1;
	}
}

static void hub_sync(struct watch_hub *h)
{
	size_t budget = WATCH_SYNC_BUDGET;
	uint64_t n = h->stats.unsynced;
	struct watch_w *w;

	if (n > h->cfg.max_sync_watchers)
		n = h->cfg.max_sync_watchers;
	while (n-- > 0 && budget > 0 && (w = TAILQ_FIRST(&h->unsynced)) != NULL) {
		w_catch_up(h, w, &budget);
		if (w->state == W_UNSYNCED) {
			/* Round robin: the others go first next time. */
			TAILQ_REMOVE(&h->unsynced, w, uq);
			TAILQ_INSERT_TAIL(&h->unsynced, w, uq);
		}
	}
}

/* --- progress ------------------------------------------------------------ */

static void stream_maybe_progress(struct watch_stream *st)
{
	if (!st->progress_deferred || st->n_unsynced > 0 || st->dead)
		return;
	st->progress_deferred = false;
	stream_send_simple(st, st->hub->last_rev, -1);
}

/* etcd's progress ticker: a synced watcher that asked for it and was sent
 * nothing during the last interval gets an empty response. */
static void hub_progress(struct watch_hub *h)
{
	struct watch_stream *st, *next;
	struct watch_w *w;

	for (st = LIST_FIRST(&h->streams); st != NULL; st = next) {
		next = LIST_NEXT(st, link);
		if (st->dead)
			continue;
		RB_FOREACH(w, watch_ids, &st->ids)
		{
			if (!w->progress)
				continue;
			if (w->progress_due && w->state == W_SYNCED && !st->dead &&
			    stream_pending(st) <= h->cfg.high_water)
				stream_send_simple(st, h->last_rev, w->id);
			w->progress_due = true;
		}
	}
}

static void hub_check_streams(struct watch_hub *h)
{
	struct watch_stream *st, *next;
	for (st = LIST_FIRST(&h->streams); st != NULL; st = next) {
		next = LIST_NEXT(st, link);
		if (st->ops->check != NULL)
			st->ops->check(st->sink);
	}
}

void watch_hub_tick(struct watch_hub *h, uint64_t now_ms)
{
	hub_check_store(h);
	if (h->store == NULL)
		return;
	if (!TAILQ_EMPTY(&h->unsynced))
		hub_sync(h);
	if (h->next_progress == 0)
		h->next_progress = now_ms + (uint64_t)h->cfg.progress_ms;
	if (h->cfg.progress_ms > 0 && now_ms >= h->next_progress) {
		hub_progress(h);
		h->next_progress = now_ms + (uint64_t)h->cfg.progress_ms;
	}
	if (h->next_check == 0)
		h->next_check = now_ms + (uint64_t)h->cfg.check_ms;
	if (now_ms >= h->next_check) {
		hub_check_streams(h);
		h->next_check = now_ms + (uint64_t)h->cfg.check_ms;
	}
}

static void hub_timer_cb(uv_timer_t *t)
{
	struct watch_hub *h = t->data;
	watch_hub_tick(h, uv_now(t->loop));
}

static void hub_timer_update(struct watch_hub *h)
{
	bool want = !LIST_EMPTY(&h->streams);
	if (!h->timer_init || want == h->timer_on)
		return;
	if (want)
		uv_timer_start(&h->timer, hub_timer_cb, WATCH_TICK_MS, WATCH_TICK_MS);
	else
		uv_timer_stop(&h->timer);
	h->timer_on = want;
}

/* --- the hub ------------------------------------------------------------- */

int watch_hub_new(struct server *srv, struct watch_hub **out)
{
	struct watch_hub *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (h == NULL)
		return -KV_ENOMEM;
	h->srv = srv;
	h->cfg.progress_ms = WATCH_PROGRESS_MS_DEFAULT;
	h->cfg.check_ms = 1000;
	if (srv->cfg != NULL) {
		if (srv->cfg->watch_progress_notify_ms > 0)
			h->cfg.progress_ms = srv->cfg->watch_progress_notify_ms;
		if (srv->cfg->election_ms > 0)
			h->cfg.check_ms = srv->cfg->election_ms;
	}
	h->cfg.high_water = 4u << 20;
	h->cfg.low_water = 1u << 20;
	h->cfg.max_sync_revs = 1000;
	h->cfg.max_resp_bytes = 1u << 20;
	h->cfg.max_sync_watchers = 512;
	h->cfg.batch = srv->loop != NULL;
	RB_INIT(&h->keys);
	RB_INIT(&h->ranges);
	TAILQ_INIT(&h->unsynced);
	LIST_INIT(&h->streams);
	arena_init(&h->arena);
	if (srv->loop != NULL) {
		uv_timer_init(srv->loop, &h->timer);
		h->timer.data = h;
		/* Idle watch streams alone must not keep the loop running. */
		uv_unref((uv_handle_t *)&h->timer);
		h->timer_init = true;
		uv_idle_init(srv->loop, &h->idle);
		h->idle.data = h;
		uv_unref((uv_handle_t *)&h->idle);
		h->idle_init = true;
	}
	hub_attach(h);
	*out = h;
	return 0;
}

static void hub_handle_closed(uv_handle_t *t)
{
	struct watch_hub *h = t->data;
	if (--h->closing == 0)
		free(h);
}

void watch_hub_free(struct watch_hub *h)
{
	struct watch_stream *st;

	if (h == NULL)
		return;
	/* Nothing is sent from here on: the batch is dropped. */
	for (size_t i = 0; i < h->npw; i++)
		h->pw[i]->pending = false;
	h->npw = 0;
	hub_flush(h);
	while ((st = LIST_FIRST(&h->streams)) != NULL)
		watch_stream_free(st);
	if (h->store != NULL && h->store == h->srv->mvcc) {
		mvcc_set_observer(h->store, NULL, NULL);
		mvcc_set_commit_hook(h->store, NULL, NULL);
	}
	free(h->evs);
	free(h->mt);
	free(h->touched);
	free(h->chg);
	free(h->pend);
	free(h->pw);
	arena_close(&h->arena);
	if (h->timer_init && !uv_is_closing((uv_handle_t *)&h->timer)) {
		h->closing++;
		uv_close((uv_handle_t *)&h->timer, hub_handle_closed);
	}
	if (h->idle_init && !uv_is_closing((uv_handle_t *)&h->idle)) {
		h->closing++;
		uv_close((uv_handle_t *)&h->idle, hub_handle_closed);
	}
	if (h->closing == 0)
		free(h);
}

struct watch_config *watch_hub_config(struct watch_hub *h)
{
	return &h->cfg;
}

void watch_hub_stats(struct watch_hub *h, struct watch_stats *st)
{
	*st = h->stats;
}

/* --- streams ------------------------------------------------------------- */

int watch_stream_new(struct watch_hub *h, const struct watch_sink_ops *ops, void *sink,
		     struct watch_stream **out)
{
	struct watch_stream *st = calloc(1, sizeof(*st));

	*out = NULL;
	if (st == NULL)
		return -KV_ENOMEM;
	hub_check_store(h);
	st->hub = h;
	st->ops = ops;
	st->sink = sink;
	RB_INIT(&st->ids);
	LIST_INSERT_HEAD(&h->streams, st, link);
	h->stats.streams++;
	hub_timer_update(h);
	*out = st;
	return 0;
}

static void w_free(struct watch_stream *st, struct watch_w *w)
{
	w_leave(st->hub, w);
	RB_REMOVE(watch_ids, &st->ids, w);
	st->hub->stats.watchers--;
	free(w);
}

void watch_stream_free(struct watch_stream *st)
{
	struct watch_hub *h;
	struct watch_w *w;

	if (st == NULL)
		return;
	h = st->hub;
	/* The batch may point at its watchers. */
	hub_flush(h);
	while ((w = RB_ROOT(&st->ids)) != NULL)
		w_free(st, w);
	LIST_REMOVE(st, link);
	h->stats.streams--;
	hub_timer_update(h);
	free(st);
}

static struct watch_w *stream_find(struct watch_stream *st, int64_t id)
{
	struct watch_w probe;
	probe.id = id;
	return RB_FIND(watch_ids, &st->ids, &probe);
}

/* created + canceled with watch_id -1: etcd's answer to a refused create. */
static int stream_refuse(struct watch_stream *st, const char *reason)
{
	Etcdserverpb__WatchResponse r;
	Etcdserverpb__ResponseHeader hdr;
	resp_init(&r, &hdr, st->hub->last_rev, -1);
	r.created = true;
	r.canceled = true;
	r.cancel_reason = (char *)reason;
	return stream_send(st, &r);
}

int watch_stream_create(struct watch_stream *st, const Etcdserverpb__WatchCreateRequest *req)
{
	static const uint8_t zero = 0;
	struct watch_hub *h = st->hub;
	const uint8_t *key = req->key.data, *end = req->range_end.data;
	size_t klen = req->key.len, elen = req->range_end.len;
	int64_t cur, start = req->start_revision, id = req->watch_id;
	struct watch_w *w;
	int rv;

	hub_check_store(h);
	if (st->dead)
		return -KV_ECANCELED;
	if (h->store == NULL)
		return -KV_EINTERNAL;
	cur = h->last_rev;
	if (klen == 0) {
		/* etcd: "\0" is the smallest key. */
		key = &zero;
		klen = 1;
	}
	if (klen > UINT32_MAX || elen > UINT32_MAX || klen + elen > UINT32_MAX)
		return stream_refuse(st, watch_reason_empty);
	if (elen > 0 && !(elen == 1 && end[0] == 0) && key_cmp(key, klen, end, elen) >= 0)
		return stream_refuse(st, watch_reason_empty);
	if (id != 0 && stream_find(st, id) != NULL)
		return stream_refuse(st, watch_reason_dup);
	if (id == 0) {
		while (stream_find(st, st->next_id) != NULL)
			st->next_id++;
		id = st->next_id++;
	}

	w = calloc(1, sizeof(*w) + klen + elen);
	if (w == NULL)
		return -KV_ENOMEM;
	w->st = st;
	w->id = id;
	w->klen = (uint32_t)klen;
	w->elen = (uint32_t)elen;
	memcpy(w->key, key, klen);
	if (elen)
		memcpy(w->key + klen, end, elen);
	w->ranged = elen > 0;
	w->unbounded = elen == 1 && end[0] == 0;
	w->prev_kv = req->prev_kv;
	w->progress = req->progress_notify;
	w->progress_due = true;
	for (size_t i = 0; i < req->n_filters; i++) {
		if (req->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
			w->noput = true;
		else if (req->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
			w->nodelete = true;
	}
	w->state = W_IDLE;
	RB_INSERT(watch_ids, &st->ids, w);
	h->stats.watchers++;

	{
		Etcdserverpb__WatchResponse r;
		Etcdserverpb__ResponseHeader hdr;
		resp_init(&r, &hdr, cur, id);
		r.created = true;
		rv = stream_send(st, &r);
		if (rv != 0)
			return rv;
	}
	/* etcd: 0 or a future revision is synced at once (events from
	 * max(start, cur+1)); anything else replays history first. */
	if (start == 0 || start > cur) {
		w->next_rev = start > cur + 1 ? start : cur + 1;
		w_enter_synced(h, w);
	} else {
		size_t budget = WATCH_SYNC_BUDGET;
		w->next_rev = start;
		w_enter_unsynced(h, w, start);
		w_catch_up(h, w, &budget);
	}
	return st->dead ? -KV_ECANCELED : 0;
}

int watch_stream_cancel(struct watch_stream *st, int64_t watch_id)
{
	struct watch_hub *h = st->hub;
	struct watch_w *w;
	int rv;

	hub_check_store(h);
	if (st->dead)
		return -KV_ECANCELED;
	w = stream_find(st, watch_id);
	if (w == NULL)
		return 0; /* etcd answers nothing */
	w_free(st, w);
	{
		Etcdserverpb__WatchResponse r;
		Etcdserverpb__ResponseHeader hdr;
		resp_init(&r, &hdr, h->last_rev, watch_id);
		r.canceled = true;
		rv = stream_send(st, &r);
	}
	if (rv == 0)
		stream_maybe_progress(st);
	return rv;
}

int watch_stream_progress(struct watch_stream *st)
{
	hub_check_store(st->hub);
	if (st->dead)
		return -KV_ECANCELED;
	if (st->n_unsynced > 0) {
		st->progress_deferred = true;
		return 0;
	}
	return stream_send_simple(st, st->hub->last_rev, -1);
}
