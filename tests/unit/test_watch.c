/*
 * Unit tests for watch: the registry and its matching (random single-key,
 * range, prefix and from-key watchers against a brute-force model, live and
 * from history), revision grouping, slow consumers falling behind and
 * catching up, compaction, etcd's create/cancel/progress answers, a store
 * swap (raft snapshot install), and the memory an idle watcher costs.
 *
 * The hub runs without a libuv loop here: the tests drive watch_hub_tick.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <malloc.h>

#include <cmocka.h>

#include "lib/blob.h"
#include "lib/err.h"
#include "server/mvcc.h"
#include "server/server.h"
#include "server/watch.h"

/* --- a recording sink --------------------------------------------------- */

struct tev {
	bool del;
	uint8_t key[32];
	size_t klen;
	char val[24];
	int64_t mod, create, ver;
	bool has_prev;
	char pval[24];
	int64_t pmod, pver;
};

struct tresp {
	int64_t watch_id, rev, compact;
	bool created, canceled;
	char reason[96];
	size_t nev;
	struct tev *ev;
};

struct tsink {
	struct watch_stream *st;
	size_t pending;
	size_t encoded; /* responses that came through send_events */
	bool fail;
	struct tresp *r;
	size_t n, cap;
};

static void copy_str(char *dst, size_t cap, const uint8_t *p, size_t n)
{
	assert_true(n < cap);
	if (n > 0)
		memcpy(dst, p, n);
	dst[n] = 0;
}

static int tsink_send(void *sink, Etcdserverpb__WatchResponse *resp)
{
	struct tsink *s = sink;
	struct tresp *r;

	if (s->fail)
		return -KV_ECANCELED;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->r = realloc(s->r, s->cap * sizeof(*s->r));
		assert_non_null(s->r);
	}
	r = &s->r[s->n++];
	memset(r, 0, sizeof(*r));
	assert_non_null(resp->header);
	r->watch_id = resp->watch_id;
	r->rev = resp->header->revision;
	r->compact = resp->compact_revision;
	r->created = resp->created;
	r->canceled = resp->canceled;
	snprintf(r->reason, sizeof(r->reason), "%s", resp->cancel_reason);
	r->nev = resp->n_events;
	r->ev = calloc(r->nev ? r->nev : 1, sizeof(*r->ev));
	for (size_t i = 0; i < r->nev; i++) {
		Mvccpb__Event *e = resp->events[i];
		struct tev *t = &r->ev[i];
		t->del = e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
		assert_true(e->kv->key.len <= sizeof(t->key));
		memcpy(t->key, e->kv->key.data, e->kv->key.len);
		t->klen = e->kv->key.len;
		copy_str(t->val, sizeof(t->val), e->kv->value.data, e->kv->value.len);
		t->mod = e->kv->mod_revision;
		t->create = e->kv->create_revision;
		t->ver = e->kv->version;
		if (t->del) /* etcd: key and mod_revision only */
			assert_true(t->create == 0 && t->ver == 0 && e->kv->value.len == 0);
		if (e->prev_kv != NULL) {
			t->has_prev = true;
			copy_str(t->pval, sizeof(t->pval), e->prev_kv->value.data, e->prev_kv->value.len);
			t->pmod = e->prev_kv->mod_revision;
			t->pver = e->prev_kv->version;
		}
	}
	s->pending += 0;
	return 0;
}

/* The shared-encoding path: the bytes are put together as a transport
 * would send them and decoded again, so every test below checks them. */
static int tsink_send_events(void *sink, int64_t rev, int64_t watch_id, struct blob *b, size_t off,
			     size_t len)
{
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	Etcdserverpb__WatchResponse *resp;
	uint8_t hb[64], *msg;
	size_t hlen, n;
	int rv;

	hdr.revision = rev;
	hdr.cluster_id = 0x1234567890abcdefull; /* a long varint, as a real one */
	hlen = protobuf_c_message_pack(&hdr.base, hb);
	assert_true(off <= b->len && len <= b->len - off);
	msg = malloc(hlen + WATCH_HEAD_MAX + len);
	assert_non_null(msg);
	n = watch_head_encode(msg, hb, hlen, watch_id);
	assert_true(n <= hlen + WATCH_HEAD_MAX);
	memcpy(msg + n, b->data + off, len);
	resp = etcdserverpb__watch_response__unpack(NULL, n + len, msg);
	free(msg);
	assert_non_null(resp);
	assert_int_equal(resp->watch_id, watch_id);
	assert_int_equal(resp->header->cluster_id, hdr.cluster_id);
	assert_true(resp->n_events > 0);
	rv = tsink_send(sink, resp);
	etcdserverpb__watch_response__free_unpacked(resp, NULL);
	if (rv == 0)
		((struct tsink *)sink)->encoded++;
	return rv;
}

static size_t tsink_pending(void *sink)
{
	return ((struct tsink *)sink)->pending;
}

static const struct watch_sink_ops tsink_ops = {
	.send = tsink_send,
	.pending = tsink_pending,
	.send_events = tsink_send_events,
};

/* A sink without the shared-encoding path (as the JSON gateway's). */
static const struct watch_sink_ops tsink_pb_ops = {
	.send = tsink_send,
	.pending = tsink_pending,
};

/* Tests open their streams with this; NULL: the two kinds in turn. */
static const struct watch_sink_ops *tsink_ops_used = &tsink_ops;
static unsigned tsink_opened;

static void tsink_clear(struct tsink *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->r[i].ev);
	s->n = 0;
}

static void tsink_close(struct tsink *s)
{
	tsink_clear(s);
	free(s->r);
	s->r = NULL;
	s->cap = 0;
}

/* --- fixture ------------------------------------------------------------- */

struct fx {
	struct server srv;
	struct watch_hub *h;
	uint64_t now;
};

static void fx_init(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	f->srv.mvcc = mvcc_new();
	assert_non_null(f->srv.mvcc);
	assert_int_equal(watch_hub_new(&f->srv, &f->h), 0);
}

static void fx_close(struct fx *f)
{
	watch_hub_free(f->h);
	mvcc_free(f->srv.mvcc);
}

static void fx_tick(struct fx *f)
{
	f->now += WATCH_TICK_MS;
	watch_hub_tick(f->h, f->now);
}

static void open_stream(struct fx *f, struct tsink *s)
{
	memset(s, 0, sizeof(*s));
	const struct watch_sink_ops *ops = tsink_ops_used;
	if (ops == NULL)
		ops = tsink_opened % 2 ? &tsink_pb_ops : &tsink_ops;
	tsink_opened++;
	assert_int_equal(watch_stream_new(f->h, ops, s, &s->st), 0);
}

struct wopt {
	const char *key;
	size_t klen;
	const char *end;
	size_t elen;
	int64_t start;
	int64_t id;
	bool prev_kv, noput, nodelete, progress;
};

static int create(struct tsink *s, const struct wopt *o)
{
	Etcdserverpb__WatchCreateRequest req = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest__FilterType filters[2];
	req.key.data = (uint8_t *)o->key;
	req.key.len = o->key ? (o->klen ? o->klen : strlen(o->key)) : 0;
	req.range_end.data = (uint8_t *)o->end;
	req.range_end.len = o->end ? (o->elen ? o->elen : strlen(o->end)) : 0;
	req.start_revision = o->start;
	req.watch_id = o->id;
	req.prev_kv = o->prev_kv;
	req.progress_notify = o->progress;
	if (o->noput)
		filters[req.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
	if (o->nodelete)
		filters[req.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
	req.filters = filters;
	return watch_stream_create(s->st, &req);
}

/* Creates and returns the assigned id, checking the created reply. */
static int64_t watch(struct tsink *s, const struct wopt *o)
{
	size_t before = s->n;
	assert_int_equal(create(s, o), 0);
	assert_true(s->n > before);
	/* events held for the stream's other watchers go out first */
	while (before < s->n - 1 && !s->r[before].created)
		before++;
	assert_true(s->r[before].created);
	assert_false(s->r[before].canceled);
	return s->r[before].watch_id;
}

#define S(x) (const uint8_t *)(x), strlen(x)

static void put(struct fx *f, const char *k, const char *v)
{
	assert_int_equal(mvcc_put(f->srv.mvcc, S(k), S(v), 0), 0);
}

/* --- protocol details ---------------------------------------------------- */

static void test_create_cancel_ids(void **state)
{
	struct fx f;
	struct tsink s;
	struct wopt o = {.key = "a"};
	(void)state;

	fx_init(&f);
	put(&f, "x", "1"); /* rev 2 */
	open_stream(&f, &s);
	/* server-assigned ids 0, 1, ...; created reply at the current revision */
	assert_int_equal(watch(&s, &o), 0);
	assert_int_equal(s.r[0].rev, 2);
	assert_int_equal(watch(&s, &o), 1);
	/* a client id is honoured; auto ids then skip the ones in use */
	o.id = 3;
	assert_int_equal(watch(&s, &o), 3);
	o.id = 0;
	assert_int_equal(watch(&s, &o), 2);
	assert_int_equal(watch(&s, &o), 4);
	/* duplicate id: created + canceled, watch_id -1, etcd's reason */
	o.id = 3;
	tsink_clear(&s);
	assert_int_equal(create(&s, &o), 0);
	assert_int_equal(s.n, 1);
	assert_true(s.r[0].created && s.r[0].canceled);
	assert_int_equal(s.r[0].watch_id, -1);
	assert_string_equal(s.r[0].reason, "mvcc: duplicate watch ID provided on the WatchStream");
	/* key >= range_end: refused the same way */
	tsink_clear(&s);
	o = (struct wopt){.key = "b", .end = "a"};
	assert_int_equal(create(&s, &o), 0);
	assert_true(s.r[0].created && s.r[0].canceled);
	assert_int_equal(s.r[0].watch_id, -1);
	assert_string_equal(s.r[0].reason, "mvcc: watcher range is empty");
	/* cancel: reply canceled with the id; unknown id: no reply at all */
	tsink_clear(&s);
	assert_int_equal(watch_stream_cancel(s.st, 1), 0);
	assert_int_equal(s.n, 1);
	assert_true(s.r[0].canceled && !s.r[0].created);
	assert_int_equal(s.r[0].watch_id, 1);
	assert_int_equal(s.r[0].rev, 2);
	assert_int_equal(watch_stream_cancel(s.st, 1), 0);
	assert_int_equal(watch_stream_cancel(s.st, 77), 0);
	assert_int_equal(s.n, 1);
	/* the freed id is reused by the next auto id only after the others */
	tsink_clear(&s);
	o = (struct wopt){.key = "a"};
	assert_int_equal(watch(&s, &o), 5);
	/* events only to the canceled watcher's siblings */
	tsink_clear(&s);
	put(&f, "a", "v");
	assert_int_equal(s.n, 5); /* ids 0, 2, 3, 4, 5 */
	for (size_t i = 0; i < s.n; i++) {
		assert_int_not_equal(s.r[i].watch_id, 1);
		assert_int_equal(s.r[i].nev, 1);
		assert_int_equal(s.r[i].rev, 3);
	}
	watch_stream_free(s.st);
	tsink_close(&s);
	fx_close(&f);
}

/* All the events of one revision reach a watcher in one response, in the
 * order they were made; DELETE events carry key and mod_revision. */
static void test_revision_grouping(void **state)
{
	struct fx f;
	struct tsink s;
	struct wopt o = {.key = "k", .end = "l", .prev_kv = true};
	int64_t deleted;
	(void)state;

	fx_init(&f);
	open_stream(&f, &s);
	put(&f, "k1", "old"); /* rev 2, before the watch */
	watch(&s, &o);
	/* wants "z", between the others' events in the shared encoding */
	watch(&s, &(struct wopt){.key = "z", .prev_kv = true});
	tsink_clear(&s);
	mvcc_txn_begin(f.srv.mvcc);
	assert_int_equal(mvcc_put(f.srv.mvcc, S("k3"), S("c"), 0), 0);
	assert_int_equal(mvcc_put(f.srv.mvcc, S("z"), S("no"), 0), 0);
	assert_int_equal(mvcc_put(f.srv.mvcc, S("k2"), S("b"), 0), 0);
	assert_int_equal(mvcc_delete_range(f.srv.mvcc, S("k1"), NULL, 0, &deleted), 0);
	assert_int_equal(s.n, 0); /* nothing before the revision is complete */
	assert_int_equal(mvcc_txn_end(f.srv.mvcc), 3);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.encoded, 2);
	assert_int_equal(s.r[1].watch_id, 1);
	assert_int_equal(s.r[1].nev, 1);
	assert_memory_equal(s.r[1].ev[0].key, "z", 1);
	assert_int_equal(s.r[0].watch_id, 0);
	assert_int_equal(s.r[0].rev, 3);
	assert_int_equal(s.r[0].nev, 3);
	assert_memory_equal(s.r[0].ev[0].key, "k3", 2);
	assert_memory_equal(s.r[0].ev[1].key, "k2", 2);
	assert_true(s.r[0].ev[2].del);
	assert_int_equal(s.r[0].ev[2].mod, 3);
	assert_true(s.r[0].ev[2].has_prev);
	assert_string_equal(s.r[0].ev[2].pval, "old");
	assert_false(s.r[0].ev[0].has_prev); /* a create has no prev_kv */
	/* a range delete is one revision too */
	tsink_clear(&s);
	assert_int_equal(mvcc_delete_range(f.srv.mvcc, S("a"), S("zz"), &deleted), 0);
	assert_int_equal(deleted, 3);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.r[0].nev, 2);
	assert_int_equal(s.r[1].nev, 1);
	assert_true(s.r[0].ev[0].del && s.r[0].ev[1].del);
	/* a write that changes nothing sends nothing */
	tsink_clear(&s);
	assert_int_equal(mvcc_delete_range(f.srv.mvcc, S("k"), S("l"), &deleted), 0);
	assert_int_equal(s.n, 0);
	watch_stream_free(s.st);
	tsink_close(&s);
	fx_close(&f);
}

static void test_filters_future_start(void **state)
{
	struct fx f;
	struct tsink s;
	int64_t a, b, c;
	(void)state;

	fx_init(&f);
	open_stream(&f, &s);
	a = watch(&s, &(struct wopt){.key = "k", .noput = true});
	b = watch(&s, &(struct wopt){.key = "k", .nodelete = true});
	c = watch(&s, &(struct wopt){.key = "k", .start = 4}); /* future: from rev 4 */
	tsink_clear(&s);
	put(&f, "k", "1");                       /* 2 */
	put(&f, "k", "2");                       /* 3 */
	mvcc_delete_range(f.srv.mvcc, S("k"), NULL, 0, NULL); /* 4 */
	put(&f, "k", "3");                       /* 5 */
	{
		int na = 0, nb = 0, nc = 0;
		for (size_t i = 0; i < s.n; i++) {
			if (s.r[i].watch_id == a) {
				assert_true(s.r[i].ev[0].del);
				na++;
			} else if (s.r[i].watch_id == b) {
				assert_false(s.r[i].ev[0].del);
				nb++;
			} else if (s.r[i].watch_id == c) {
				assert_true(s.r[i].ev[0].mod >= 4);
				nc++;
			}
		}
		assert_int_equal(na, 1);
		assert_int_equal(nb, 3);
		assert_int_equal(nc, 2);
	}
	watch_stream_free(s.st);
	tsink_close(&s);
	fx_close(&f);
}

/* progress_request: answered at once when every watcher is synced, else
 * deferred until they are; progress_notify: periodic, only when idle. */
static void test_progress(void **state)
{
	struct fx f;
	struct tsink s;
	int64_t w1, w2;
	(void)state;

	fx_init(&f);
	watch_hub_config(f.h)->progress_ms = 1000;
	open_stream(&f, &s);
	/* no watcher at all: answered */
	assert_int_equal(watch_stream_progress(s.st), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.r[0].watch_id, -1);
	assert_int_equal(s.r[0].rev, 1);
	for (int i = 0; i < 5; i++)
		put(&f, "h", "x"); /* revs 2..6 */
	w1 = watch(&s, &(struct wopt){.key = "p", .progress = true});
	/* a stream that cannot take more: the history watcher waits */
	s.pending = 100u << 20;
	w2 = watch(&s, &(struct wopt){.key = "h", .start = 2});
	tsink_clear(&s);
	assert_int_equal(watch_stream_progress(s.st), 0);
	assert_int_equal(watch_stream_progress(s.st), 0);
	assert_int_equal(s.n, 0);
	fx_tick(&f);
	assert_int_equal(s.n, 0);
	s.pending = 0;
	fx_tick(&f);
	/* history (5 events, one response), then ONE progress at rev 6 */
	assert_int_equal(s.n, 2);
	assert_int_equal(s.r[0].watch_id, w2);
	assert_int_equal(s.r[0].nev, 5);
	assert_int_equal(s.r[0].rev, 6);
	assert_int_equal(s.r[1].watch_id, -1);
	assert_int_equal(s.r[1].rev, 6);
	assert_int_equal(s.r[1].nev, 0);
	/* periodic notify: w1 only (w2 did not ask) */
	tsink_clear(&s);
	for (int i = 0; i < 10; i++)
		fx_tick(&f);
	assert_true(s.n >= 1);
	for (size_t i = 0; i < s.n; i++) {
		assert_int_equal(s.r[i].watch_id, w1);
		assert_int_equal(s.r[i].nev, 0);
		assert_false(s.r[i].created || s.r[i].canceled);
		assert_int_equal(s.r[i].rev, 6);
	}
	/* events in an interval replace the next notification */
	tsink_clear(&s);
	for (int i = 0; i < 10; i++)
		fx_tick(&f); /* a notification went out; the next is due */
	tsink_clear(&s);
	put(&f, "p", "1");
	assert_int_equal(s.n, 1);
	for (int i = 0; i < 10; i++)
		fx_tick(&f);
	assert_int_equal(s.n, 1);
	for (int i = 0; i < 10; i++)
		fx_tick(&f);
	assert_int_equal(s.n, 2);
	watch_stream_free(s.st);
	tsink_close(&s);
	fx_close(&f);
}

static void test_compacted(void **state)
{
	struct fx f;
	struct tsink s;
	int64_t id;
	(void)state;

	fx_init(&f);
	open_stream(&f, &s);
	for (int i = 0; i < 9; i++)
		put(&f, "c", "x"); /* revs 2..10 */
	assert_int_equal(mvcc_compact(f.srv.mvcc, 5), 0);
	/* start below the compaction: created, then canceled with it */
	tsink_clear(&s);
	id = watch(&s, &(struct wopt){.key = "c", .start = 3});
	assert_int_equal(s.n, 2);
	assert_true(s.r[1].canceled);
	assert_int_equal(s.r[1].watch_id, id);
	assert_int_equal(s.r[1].compact, 5);
	assert_int_equal(s.r[1].rev, 0);
	assert_string_equal(s.r[1].reason, "");
	/* at the compaction revision: still readable */
	tsink_clear(&s);
	watch(&s, &(struct wopt){.key = "c", .start = 5});
	assert_int_equal(s.n, 2);
	assert_int_equal(s.r[1].nev, 6);
	/* a synced watcher that falls behind and then behind compaction */
	tsink_clear(&s);
	id = watch(&s, &(struct wopt){.key = "c"});
	s.pending = 100u << 20;
	put(&f, "c", "y"); /* 11: not sent */
	put(&f, "c", "z"); /* 12 */
	assert_int_equal(mvcc_compact(f.srv.mvcc, 12), 0);
	s.pending = 0;
	tsink_clear(&s);
	fx_tick(&f);
	assert_int_equal(s.n, 2); /* it and the start-5 watcher */
	for (size_t i = 0; i < s.n; i++) {
		assert_true(s.r[i].canceled);
		assert_int_equal(s.r[i].compact, 12);
		assert_int_equal(s.r[i].nev, 0);
	}
	assert_true(s.r[0].watch_id == id || s.r[1].watch_id == id);
	/* it is gone from matching, but its id stays taken until canceled */
	tsink_clear(&s);
	put(&f, "c", "w");
	for (size_t i = 0; i < s.n; i++)
		assert_int_not_equal(s.r[i].watch_id, id);
	tsink_clear(&s);
	assert_int_equal(watch_stream_cancel(s.st, id), 0);
	assert_int_equal(s.n, 1);
	watch_stream_free(s.st);
	tsink_close(&s);
	fx_close(&f);
}

/* Batching: a fast-path watcher gets the revisions of one batch in one
 * response (header at the last), a protobuf-path one a response per
 * revision at once; a watcher whose stream fills up with events held falls
 * behind to the first of them and gets them all from history. */
static void test_batch(void **state)
{
	struct fx f;
	struct tsink fast, pb, slow;
	int64_t deleted;
	(void)state;

	fx_init(&f);
	watch_hub_config(f.h)->batch = true;
	watch_hub_config(f.h)->high_water = 10;
	watch_hub_config(f.h)->low_water = 5;
	open_stream(&f, &fast);
	tsink_ops_used = &tsink_pb_ops;
	open_stream(&f, &pb);
	tsink_ops_used = &tsink_ops;
	open_stream(&f, &slow);
	watch(&fast, &(struct wopt){.key = "a", .end = "b"});
	watch(&fast, &(struct wopt){.key = "a1", .prev_kv = true});
	watch(&pb, &(struct wopt){.key = "a", .end = "b"});
	watch(&slow, &(struct wopt){.key = "a1"});
	tsink_clear(&fast);
	tsink_clear(&pb);
	tsink_clear(&slow);
	put(&f, "a1", "x"); /* 2 */
	put(&f, "zz", "x"); /* 3: nobody's */
	put(&f, "a2", "y"); /* 4 */
	slow.pending = 1000; /* full from here on */
	put(&f, "a1", "z"); /* 5 */
	assert_int_equal(mvcc_delete_range(f.srv.mvcc, S("a2"), NULL, 0, &deleted), 0); /* 6 */
	assert_int_equal(fast.n, 0);
	assert_int_equal(slow.n, 0);
	assert_int_equal(pb.n, 4);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(pb.r[i].nev, 1);
	watch_hub_flush(f.h);
	assert_int_equal(fast.n, 2);
	assert_int_equal(fast.encoded, 2);
	{
		/* in the order they were first matched: the key watcher first */
		const struct tresp *r0 = &fast.r[1], *r1 = &fast.r[0];
		assert_int_equal(r0->watch_id, 0);
		assert_int_equal(r0->rev, 6);
		assert_int_equal(r0->nev, 4);
		assert_int_equal(r0->ev[0].mod, 2);
		assert_memory_equal(r0->ev[1].key, "a2", 2);
		assert_int_equal(r0->ev[2].mod, 5);
		assert_true(r0->ev[3].del);
		assert_int_equal(r1->watch_id, 1);
		assert_int_equal(r1->rev, 6);
		assert_int_equal(r1->nev, 2);
		assert_false(r1->ev[0].has_prev);
		assert_true(r1->ev[1].has_prev);
		assert_string_equal(r1->ev[1].pval, "x");
	}
	/* the full stream got nothing, and lost nothing */
	assert_int_equal(slow.n, 0);
	slow.pending = 0;
	fx_tick(&f);
	assert_int_equal(slow.n, 1);
	assert_int_equal(slow.r[0].nev, 2);
	assert_int_equal(slow.r[0].ev[0].mod, 2);
	assert_int_equal(slow.r[0].ev[1].mod, 5);
	/* any other request flushes first: nothing overtakes held events */
	tsink_clear(&fast);
	put(&f, "a3", "w"); /* 7 */
	assert_int_equal(fast.n, 0);
	assert_int_equal(watch_stream_progress(fast.st), 0);
	assert_int_equal(fast.n, 2);
	assert_int_equal(fast.r[0].nev, 1);
	assert_int_equal(fast.r[1].watch_id, -1);
	assert_int_equal(fast.r[1].rev, 7);
	/* a batch of WATCH_BATCH_BYTES goes out by itself */
	tsink_clear(&fast);
	for (int i = 0; i < 10000 && fast.n == 0; i++)
		put(&f, "a4", "twenty bytes value..");
	assert_int_equal(fast.n, 1);
	assert_true(fast.r[0].nev > 1000);
	watch_stream_free(fast.st);
	watch_stream_free(pb.st);
	watch_stream_free(slow.st);
	tsink_close(&fast);
	tsink_close(&pb);
	tsink_close(&slow);
	fx_close(&f);
}

/* A failed send kills the stream quietly: no more sends, no crash. */
static void test_dead_stream(void **state)
{
	struct fx f;
	struct tsink s, t;
	(void)state;

	fx_init(&f);
	open_stream(&f, &s);
	open_stream(&f, &t);
	watch(&s, &(struct wopt){.key = "d"});
	watch(&t, &(struct wopt){.key = "d"});
	s.fail = true;
	put(&f, "d", "1");
	put(&f, "d", "2");
	fx_tick(&f);
	assert_int_equal(t.n, 3);
	assert_int_equal(create(&s, &(struct wopt){.key = "d"}), -KV_ECANCELED);
	watch_stream_free(s.st);
	watch_stream_free(t.st);
	tsink_close(&s);
	tsink_close(&t);
	fx_close(&f);
}

/* --- random: the registry against a brute-force model ------------------- */

/* Keys over {00, 'a', 'b', ff}, 1 to 3 bytes: small enough to collide. */
static const uint8_t alpha[] = {0x00, 'a', 'b', 0xff};

static size_t rnd_key(uint8_t *k)
{
	size_t n = 1 + (size_t)(rand() % 3);
	for (size_t i = 0; i < n; i++)
		k[i] = alpha[rand() % 4];
	return n;
}

static int bcmp_(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

/* The model: every key's current state and the log of every event. */
struct mkey {
	uint8_t k[4];
	size_t klen;
	bool live;
	char val[24];
	int64_t create, mod, ver;
};

struct mev {
	bool del;
	uint8_t k[4];
	size_t klen;
	char val[24];
	int64_t mod, create, ver;
	bool has_prev;
	char pval[24];
	int64_t pmod;
};

struct model {
	struct mkey keys[128];
	size_t nkeys;
	struct mev *log;
	size_t nlog, cap;
	int64_t rev;
	bool in_txn;
	bool txn_changed;
};

static struct mkey *m_key(struct model *m, const uint8_t *k, size_t klen)
{
	for (size_t i = 0; i < m->nkeys; i++)
		if (bcmp_(m->keys[i].k, m->keys[i].klen, k, klen) == 0)
			return &m->keys[i];
	assert_true(m->nkeys < 128);
	memset(&m->keys[m->nkeys], 0, sizeof(m->keys[0]));
	memcpy(m->keys[m->nkeys].k, k, klen);
	m->keys[m->nkeys].klen = klen;
	return &m->keys[m->nkeys++];
}

static struct mev *m_log(struct model *m)
{
	if (m->nlog == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 256;
		m->log = realloc(m->log, m->cap * sizeof(*m->log));
		assert_non_null(m->log);
	}
	memset(&m->log[m->nlog], 0, sizeof(m->log[0]));
	return &m->log[m->nlog++];
}

static void m_put(struct model *m, struct mvcc *st, const uint8_t *k, size_t klen, const char *v)
{
	struct mkey *mk = m_key(m, k, klen);
	struct mev *e;
	int64_t rev = m->rev + 1;

	assert_int_equal(mvcc_put(st, k, klen, S(v), 0), 0);
	e = m_log(m);
	e->klen = klen;
	memcpy(e->k, k, klen);
	snprintf(e->val, sizeof(e->val), "%s", v);
	e->mod = rev;
	if (mk->live) {
		e->has_prev = true;
		snprintf(e->pval, sizeof(e->pval), "%s", mk->val);
		e->pmod = mk->mod;
		mk->ver++;
	} else {
		mk->create = rev;
		mk->ver = 1;
	}
	mk->live = true;
	mk->mod = rev;
	snprintf(mk->val, sizeof(mk->val), "%s", v);
	e->create = mk->create;
	e->ver = mk->ver;
	if (m->in_txn)
		m->txn_changed = true;
	else
		m->rev++;
}

static int mkey_order(const void *a, const void *b)
{
	const struct mkey *x = *(const struct mkey *const *)a, *y = *(const struct mkey *const *)b;
	return bcmp_(x->k, x->klen, y->k, y->klen);
}

static bool in_range(const uint8_t *k, size_t kl, const uint8_t *key, size_t klen,
		     const uint8_t *end, size_t elen)
{
	if (klen == 0) {
		key = (const uint8_t *)"";
		klen = 1; /* "\0" */
	}
	if (elen == 0)
		return bcmp_(k, kl, key, klen) == 0;
	if (bcmp_(k, kl, key, klen) < 0)
		return false;
	if (elen == 1 && end[0] == 0)
		return true;
	return bcmp_(k, kl, end, elen) < 0;
}

static void m_del(struct model *m, struct mvcc *st, const uint8_t *k, size_t klen, const uint8_t *end,
		  size_t elen)
{
	struct mkey *sorted[128];
	size_t n = 0;
	int64_t deleted, rev = m->rev + 1;

	assert_int_equal(mvcc_delete_range(st, k, klen, end, elen, &deleted), 0);
	for (size_t i = 0; i < m->nkeys; i++)
		if (m->keys[i].live && in_range(m->keys[i].k, m->keys[i].klen, k, klen, end, elen))
			sorted[n++] = &m->keys[i];
	assert_int_equal((int64_t)n, deleted);
	qsort(sorted, n, sizeof(sorted[0]), mkey_order);
	for (size_t i = 0; i < n; i++) {
		struct mev *e = m_log(m);
		e->del = true;
		e->klen = sorted[i]->klen;
		memcpy(e->k, sorted[i]->k, e->klen);
		e->mod = rev;
		e->has_prev = true;
		snprintf(e->pval, sizeof(e->pval), "%s", sorted[i]->val);
		e->pmod = sorted[i]->mod;
		sorted[i]->live = false;
	}
	if (n > 0) {
		if (m->in_txn)
			m->txn_changed = true;
		else
			m->rev++;
	}
}

/* A random range: single key, [a,b), prefix, from-key or everything. */
struct rwatch {
	uint8_t key[4], end[4];
	size_t klen, elen;
	struct wopt o;
	int64_t id;
	int64_t from;      /* first revision it must see */
	struct tsink *s;
	size_t got;        /* events checked so far */
	bool canceled;
};

static void rnd_range(struct rwatch *w)
{
	int kind = rand() % 6;
	w->klen = rnd_key(w->key);
	w->elen = 0;
	switch (kind) {
	case 0:
	case 1:
		break; /* single key */
	case 2: /* [a, b) with a < b (none above ff ff ff: from-key then) */
		for (int i = 0; i < 20 && w->elen == 0; i++) {
			w->elen = rnd_key(w->end);
			if (bcmp_(w->key, w->klen, w->end, w->elen) >= 0)
				w->elen = 0;
		}
		if (w->elen == 0) {
			w->end[0] = 0;
			w->elen = 1;
		}
		break;
	case 3: /* prefix: etcd's prefix end (0xff bytes stripped, last + 1) */
		memcpy(w->end, w->key, w->klen);
		w->elen = w->klen;
		while (w->elen > 0 && w->end[w->elen - 1] == 0xff)
			w->elen--;
		if (w->elen == 0) {
			w->end[0] = 0;
			w->elen = 1; /* all keys >= key */
		} else {
			w->end[w->elen - 1]++;
		}
		break;
	case 4: /* from key */
		w->end[0] = 0;
		w->elen = 1;
		break;
	case 5: /* everything: key "\0" (or empty), end "\0" */
		w->klen = rand() % 2;
		w->key[0] = 0;
		w->end[0] = 0;
		w->elen = 1;
		break;
	}
	w->o.key = (const char *)w->key;
	w->o.klen = w->klen;
	w->o.end = w->elen ? (const char *)w->end : NULL;
	w->o.elen = w->elen;
	if (w->klen == 0)
		w->o.key = NULL;
}

/* Checks every event w received since the last check against the model
 * log, response by response. */
static void check_watcher(struct model *m, struct rwatch *w, bool live_only)
{
	size_t li = 0, seen = 0;
	struct tsink *s = w->s;
	int64_t prev_last = 0;

	/* the model events this watcher must see, in order */
	for (size_t ri = 0; ri < s->n; ri++) {
		struct tresp *r = &s->r[ri];
		int64_t last = 0;
		if (r->watch_id != w->id || r->created || r->canceled || r->nev == 0)
			continue;
		if (live_only) {
			/* live: one revision per response, header at it */
			assert_int_equal(r->ev[0].mod, r->ev[r->nev - 1].mod);
			assert_int_equal(r->rev, r->ev[0].mod);
		}
		assert_true(r->rev >= r->ev[r->nev - 1].mod);
		/* a revision is never split across responses */
		assert_true(r->ev[0].mod > prev_last);
		prev_last = r->ev[r->nev - 1].mod;
		for (size_t i = 0; i < r->nev; i++) {
			const struct tev *t = &r->ev[i];
			const struct mev *e = NULL;
			assert_true(t->mod >= last);
			last = t->mod;
			for (; li < m->nlog; li++) {
				const struct mev *c = &m->log[li];
				if (c->mod < w->from)
					continue;
				if ((c->del && w->o.nodelete) || (!c->del && w->o.noput))
					continue;
				if (!in_range(c->k, c->klen, w->key, w->klen,
					      w->elen ? w->end : NULL, w->elen))
					continue;
				e = c;
				li++;
				break;
			}
			assert_non_null(e);
			seen++;
			if (seen <= w->got)
				continue;
			assert_int_equal(t->del, e->del);
			assert_int_equal(t->klen, e->klen);
			assert_memory_equal(t->key, e->k, e->klen);
			assert_int_equal(t->mod, e->mod);
			if (!e->del) {
				assert_string_equal(t->val, e->val);
				assert_int_equal(t->create, e->create);
				assert_int_equal(t->ver, e->ver);
			}
			assert_int_equal(t->has_prev, w->o.prev_kv && e->has_prev);
			if (t->has_prev) {
				assert_string_equal(t->pval, e->pval);
				assert_int_equal(t->pmod, e->pmod);
			}
		}
	}
	w->got = seen;
	if (w->canceled)
		return;
	/* nothing of the model log missing */
	for (; li < m->nlog; li++) {
		const struct mev *c = &m->log[li];
		if (c->mod < w->from || (c->del && w->o.nodelete) || (!c->del && w->o.noput))
			continue;
		assert_false(in_range(c->k, c->klen, w->key, w->klen, w->elen ? w->end : NULL,
				      w->elen));
	}
}

static void rnd_write(struct fx *f, struct model *m)
{
	uint8_t k[4], e[4];
	size_t kl, el;
	char v[24];
	int op = rand() % 10;

	snprintf(v, sizeof(v), "v%lld", (long long)m->rev + 1);
	if (op < 6) {
		kl = rnd_key(k);
		m_put(m, f->srv.mvcc, k, kl, v);
	} else if (op < 8) {
		kl = rnd_key(k);
		if (rand() % 2) {
			m_del(m, f->srv.mvcc, k, kl, NULL, 0);
		} else {
			el = rnd_key(e);
			if (bcmp_(k, kl, e, el) < 0)
				m_del(m, f->srv.mvcc, k, kl, e, el);
			else
				m_del(m, f->srv.mvcc, e, el, k, kl);
		}
	} else {
		/* a txn of distinct keys: one revision */
		uint8_t used[8][4];
		size_t ul[8], nu = 0, n = 1 + (size_t)(rand() % 5);
		mvcc_txn_begin(f->srv.mvcc);
		m->in_txn = true;
		m->txn_changed = false;
		for (size_t i = 0; i < n; i++) {
			bool dup = false;
			kl = rnd_key(k);
			for (size_t j = 0; j < nu; j++)
				dup |= bcmp_(used[j], ul[j], k, kl) == 0;
			if (dup)
				continue;
			memcpy(used[nu], k, kl);
			ul[nu++] = kl;
			if (rand() % 3)
				m_put(m, f->srv.mvcc, k, kl, v);
			else
				m_del(m, f->srv.mvcc, k, kl, NULL, 0);
		}
		mvcc_txn_end(f->srv.mvcc);
		m->in_txn = false;
		if (m->txn_changed)
			m->rev++;
	}
	assert_int_equal(mvcc_rev(f->srv.mvcc), m->rev);
}

/*
 * One random scenario: streams of random watchers (some from history),
 * random writes, random stalls of the streams, ticks; at the end every
 * watcher has exactly its events, in order, once.
 */
/* Scenarios with the hub batching (flushed at random points, as loop
 * turns would): responses may then hold several revisions. */
static bool scenario_batch;

static void scenario(unsigned seed, int nstreams, int nwatch, int nops, bool stalls,
		     bool history, size_t *checked)
{
	bool live_only = !stalls && !history && !scenario_batch;
	struct fx f;
	struct model m;
	struct tsink *s = calloc((size_t)nstreams, sizeof(*s));
	struct rwatch *w = calloc((size_t)nwatch, sizeof(*w));
	int made = 0;

	srand(seed);
	fx_init(&f);
	memset(&m, 0, sizeof(m));
	m.rev = 1;
	watch_hub_config(f.h)->max_sync_revs = 1 + rand() % 4;
	watch_hub_config(f.h)->max_resp_bytes = (size_t)(rand() % 200);
	watch_hub_config(f.h)->high_water = 10;
	watch_hub_config(f.h)->low_water = 5;
	watch_hub_config(f.h)->batch = scenario_batch;
	for (int i = 0; i < nstreams; i++)
		open_stream(&f, &s[i]);
	if (history)
		for (int i = 0; i < nops / 2; i++)
			rnd_write(&f, &m);
	for (int step = 0; step < nops; step++) {
		if (made < nwatch && (step == 0 || rand() % 4 == 0)) {
			int burst = 1 + rand() % (nwatch / 4 + 1);
			for (int b = 0; b < burst && made < nwatch; b++) {
				struct rwatch *x = &w[made++];
				rnd_range(x);
				x->s = &s[rand() % nstreams];
				x->o.prev_kv = rand() % 2;
				x->o.noput = rand() % 8 == 0;
				x->o.nodelete = !x->o.noput && rand() % 8 == 0;
				x->o.start = history && rand() % 2 ? 1 + rand() % (int)m.rev : 0;
				if (rand() % 10 == 0)
					x->o.start = m.rev + 1 + rand() % 3; /* future */
				x->from = x->o.start ? x->o.start : m.rev + 1;
				if (x->from < m.rev + 1 && x->o.start == 0)
					x->from = m.rev + 1;
				x->id = watch(x->s, &x->o);
			}
		}
		if (stalls && rand() % 5 == 0) {
			struct tsink *t = &s[rand() % nstreams];
			t->pending = t->pending ? 0 : 1000;
		}
		rnd_write(&f, &m);
		if (rand() % 3 == 0)
			fx_tick(&f);
		else if (scenario_batch && rand() % 3 == 0)
			watch_hub_flush(f.h);
		if (rand() % 50 == 0 && made > 0) {
			struct rwatch *x = &w[rand() % made];
			if (!x->canceled) {
				x->canceled = true;
				watch_hub_flush(f.h);
				check_watcher(&m, x, live_only);
				assert_int_equal(watch_stream_cancel(x->s->st, x->id), 0);
			}
		}
	}
	for (int i = 0; i < nstreams; i++)
		s[i].pending = 0;
	/* drain: everyone catches up */
	for (int i = 0; i < 2000; i++) {
		struct watch_stats st;
		watch_hub_stats(f.h, &st);
		if (st.unsynced == 0)
			break;
		fx_tick(&f);
	}
	{
		struct watch_stats st;
		watch_hub_stats(f.h, &st);
		assert_int_equal(st.unsynced, 0);
	}
	watch_hub_flush(f.h);
	for (int i = 0; i < made; i++) {
		check_watcher(&m, &w[i], live_only);
		*checked += w[i].got;
	}
	for (int i = 0; i < nstreams; i++) {
		watch_stream_free(s[i].st);
		tsink_close(&s[i]);
	}
	free(s);
	free(w);
	free(m.log);
	fx_close(&f);
}

static void test_random_live(void **state)
{
	size_t checked = 0;
	(void)state;
	for (unsigned seed = 1; seed <= 300; seed++)
		scenario(seed, 1 + (int)(seed % 4), 40, 120, false, false, &checked);
	printf("random live: %zu events checked\n", checked);
	assert_true(checked > 10000);
}

/* Streams with and without the shared-encoding path side by side, and
 * without it alone: same events either way. */
static void test_random_live_sinks(void **state)
{
	size_t checked = 0;
	(void)state;
	tsink_ops_used = NULL;
	for (unsigned seed = 300; seed < 400; seed++)
		scenario(seed, 2 + (int)(seed % 3), 40, 120, seed % 3 == 0, false, &checked);
	tsink_ops_used = &tsink_pb_ops;
	for (unsigned seed = 400; seed < 450; seed++)
		scenario(seed, 1 + (int)(seed % 3), 40, 120, false, false, &checked);
	tsink_ops_used = &tsink_ops;
	printf("random live, mixed sinks: %zu events checked\n", checked);
	assert_true(checked > 5000);
}

/* The same with the hub batching, mixed sinks. */
static void test_random_batch(void **state)
{
	size_t checked = 0;
	(void)state;
	scenario_batch = true;
	tsink_ops_used = NULL;
	for (unsigned seed = 500; seed < 700; seed++)
		scenario(seed, 1 + (int)(seed % 4), 40, 120, seed % 3 == 0, seed % 4 == 0, &checked);
	tsink_ops_used = &tsink_ops;
	for (unsigned seed = 700; seed < 800; seed++)
		scenario(seed, 1 + (int)(seed % 4), 40, 120, seed % 2 == 0, false, &checked);
	scenario_batch = false;
	printf("random batched: %zu events checked\n", checked);
	assert_true(checked > 10000);
}

static void test_random_history(void **state)
{
	size_t checked = 0;
	(void)state;
	for (unsigned seed = 1000; seed < 1300; seed++)
		scenario(seed, 1 + (int)(seed % 3), 30, 120, false, true, &checked);
	printf("random history: %zu events checked\n", checked);
	assert_true(checked > 10000);
}

static void test_random_slow_consumers(void **state)
{
	size_t checked = 0;
	(void)state;
	for (unsigned seed = 2000; seed < 2300; seed++)
		scenario(seed, 2 + (int)(seed % 3), 30, 150, true, seed % 2 == 0, &checked);
	printf("random slow consumers: %zu events checked\n", checked);
	assert_true(checked > 10000);
}

/* Matching alone: random watchers against brute force, one event each. */
static void test_random_matching(void **state)
{
	size_t cases = 0;
	(void)state;
	srand(42);
	for (int round = 0; round < 50; round++) {
		struct fx f;
		struct tsink s;
		struct rwatch w[200];
		fx_init(&f);
		open_stream(&f, &s);
		for (int i = 0; i < 200; i++) {
			memset(&w[i], 0, sizeof(w[i]));
			rnd_range(&w[i]);
			w[i].id = watch(&s, &w[i].o);
			assert_int_equal(w[i].id, i);
		}
		/* and remove a third again: the tree must stay exact */
		for (int i = 0; i < 200; i += 3) {
			assert_int_equal(watch_stream_cancel(s.st, i), 0);
			w[i].canceled = true;
		}
		for (int k = 0; k < 100; k++) {
			uint8_t key[4];
			size_t kl = rnd_key(key);
			bool hit[200] = {0};
			tsink_clear(&s);
			assert_int_equal(mvcc_put(f.srv.mvcc, key, kl, S("v"), 0), 0);
			for (size_t r = 0; r < s.n; r++) {
				assert_int_equal(s.r[r].nev, 1);
				assert_false(hit[s.r[r].watch_id]);
				hit[s.r[r].watch_id] = true;
			}
			for (int i = 0; i < 200; i++) {
				bool want = !w[i].canceled &&
					    in_range(key, kl, w[i].key, w[i].klen,
						     w[i].elen ? w[i].end : NULL, w[i].elen);
				assert_int_equal(hit[i], want);
				cases++;
			}
		}
		watch_stream_free(s.st);
		tsink_close(&s);
		fx_close(&f);
	}
	printf("matching: %zu (watcher, key) cases\n", cases);
}

/* fsm installs a snapshot: srv->mvcc is replaced under the hub.  Watchers
 * get what the new store holds beyond what they had, exactly once. */
static void test_store_swap(void **state)
{
	struct fx f;
	struct tsink s;
	struct mvcc *fresh;
	uint8_t *img;
	size_t len;
	int64_t a, b;
	(void)state;

	fx_init(&f);
	open_stream(&f, &s);
	a = watch(&s, &(struct wopt){.key = "s"});
	b = watch(&s, &(struct wopt){.key = "s", .end = "t"});
	put(&f, "s", "1"); /* 2: seen live */
	/* the leader's state: two more revisions */
	assert_int_equal(mvcc_encode(f.srv.mvcc, &img, &len), 0);
	fresh = mvcc_new();
	assert_int_equal(mvcc_decode(fresh, img, len), 0);
	free(img);
	assert_int_equal(mvcc_put(fresh, S("s"), S("2"), 0), 0);  /* 3 */
	assert_int_equal(mvcc_put(fresh, S("s9"), S("3"), 0), 0); /* 4 */
	mvcc_free(f.srv.mvcc);
	f.srv.mvcc = fresh;
	tsink_clear(&s);
	fx_tick(&f);
	put(&f, "s", "4"); /* 5: live again */
	{
		int na = 0, nb = 0;
		int64_t la = 0, lb = 0;
		for (size_t i = 0; i < s.n; i++)
			for (size_t j = 0; j < s.r[i].nev; j++) {
				int64_t mod = s.r[i].ev[j].mod;
				if (s.r[i].watch_id == a) {
					assert_true(mod > la);
					la = mod;
					na++;
				} else if (s.r[i].watch_id == b) {
					assert_true(mod > lb);
					lb = mod;
					nb++;
				}
			}
		assert_int_equal(na, 2); /* 3, 5 */
		assert_int_equal(nb, 3); /* 3, 4, 5 */
	}
	watch_stream_free(s.st);
	tsink_close(&s);
	fx_close(&f);
}

/* Memory of an idle watcher, and matching cost that does not grow with
 * the number of watchers that do not match. */
static void test_scale(void **state)
{
	struct fx f;
	struct tsink s;
	struct mallinfo2 m0, m1;
	char key[32];
	int n = 100000;
	struct timespec t0, t1;
	double per;
	(void)state;

	fx_init(&f);
	open_stream(&f, &s);
	m0 = mallinfo2();
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "/registry/pods/ns/p%07d", i);
		if (i % 10 == 0) {
			char end[32];
			snprintf(end, sizeof(end), "/registry/pods/ns/p%07d", i + 5);
			assert_int_equal(create(&s, &(struct wopt){.key = key, .end = end}), 0);
		} else {
			assert_int_equal(create(&s, &(struct wopt){.key = key}), 0);
		}
		if (s.n > 1000)
			tsink_clear(&s);
	}
	tsink_clear(&s);
	m1 = mallinfo2();
	per = (double)(m1.uordblks - m0.uordblks) / n;
	printf("memory per idle watcher (24-byte keys, 10%% ranges): %.0f bytes\n", per);
	assert_true(per < 300);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "/registry/pods/ns/p%07d", (i * 7919) % n);
		put(&f, key, "v");
		if (s.n > 1000)
			tsink_clear(&s);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("20000 puts with %d watchers: %.1f us per put (match + send)\n", n,
	       ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 /
		       20000);
	watch_stream_free(s.st);
	tsink_close(&s);
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_cancel_ids),
		cmocka_unit_test(test_revision_grouping),
		cmocka_unit_test(test_filters_future_start),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_compacted),
		cmocka_unit_test(test_dead_stream),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_random_matching),
		cmocka_unit_test(test_random_live),
		cmocka_unit_test(test_random_live_sinks),
		cmocka_unit_test(test_random_batch),
		cmocka_unit_test(test_random_history),
		cmocka_unit_test(test_random_slow_consumers),
		cmocka_unit_test(test_store_swap),
		cmocka_unit_test(test_scale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
