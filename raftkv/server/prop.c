/*
 * prop: turns client writes into raft entries and client reads into
 * barriers, and routes each applied result back to the call waiting for it.
 *
 * Writes.  prop_submit() gives each command the next sequence number of this
 * member and appends it to the open batch (cmd.h); a uv_check handler closes
 * the batch once per loop iteration and hands it to node_apply() as ONE
 * entry, so every write that arrived in the same iteration shares one disk
 * write and one replication round.  A batch is also closed early before it
 * would grow past PROP_BATCH_BYTES (one huge request still goes alone).
 * The waiting callbacks live in a ring indexed by sequence number: numbers
 * are handed out in order and mostly complete in order, so the ring is a
 * deque whose head advances past finished slots.  When the fsm applies a
 * command whose origin is this member it calls prop_complete() with the
 * response; when a whole entry fails (leadership lost, shutdown) node's
 * callback fails every command of it that is still waiting.  A failed entry
 * may still commit later under a new leader: its commands then find no slot
 * and are ignored (the client saw "leader changed": outcome unknown, as
 * with etcd).
 *
 * Sequence numbers start at node_seq_base(): the data dir's boot counter
 * sits in the high bits, so commands of an earlier run that are replayed
 * from the log never match a slot of this run.
 *
 * Reads.  prop_read() queues a read; the check handler issues one barrier
 * for all reads queued so far, and only when no barrier is in flight: a
 * read that arrives while one is in flight waits for the next barrier,
 * because a barrier proves leadership and applies everything committed only
 * as of its own submission, which must come after the read arrived.
 *
 * An idle handle runs while work is queued so the loop does not sleep in
 * poll with a batch still open (the check phase of the iteration may
 * already have passed when a submission arrives from a later phase).
 */
#include "server/prop.h"

#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/metrics.h"
#include "server/node.h"
#include "server/server.h"

/* Close a batch before it would pass this size; a single bigger request
 * (up to --max-request-bytes) still makes an entry of its own. */
#define PROP_BATCH_BYTES (1u << 20)
#define PROP_RING_MIN 64u

struct prop_slot {
	prop_done_cb cb; /* NULL: finished (or never ours) */
	void *arg;
};

struct prop_read_wait {
	prop_read_cb cb;
	void *arg;
	struct prop_read_wait *next;
};

/* One barrier in flight and the reads it serves.  p is NULL once the reads
 * were failed by prop_fail_all()/prop_close(): the callback then only frees. */
struct prop_barrier {
	struct prop *p;
	struct prop_read_wait *reads;
};

/* One entry in flight: the commands [first, end) it carries. */
struct prop_entry {
	struct prop *p;
	uint64_t first, end;
};

struct prop_impl {
	uv_idle_t idle;
	bool idle_on;
	int handles_open;

	/* Waiting writes: slots[seq & mask] for head_seq <= seq < p->next_seq. */
	struct prop_slot *slots;
	size_t mask;
	uint64_t head_seq;
	uint64_t batch_first; /* first seq of the open batch */

	/* Reads not yet behind a barrier, in arrival order. */
	struct prop_read_wait *rq_head, *rq_tail;
	struct prop_barrier *inflight;
};

static struct prop_impl *prop_impl(const struct prop *p)
{
	return p->impl;
}

static void prop_noop_idle(uv_idle_t *h)
{
	(void)h;
}

static void prop_wake(struct prop *p)
{
	struct prop_impl *im = prop_impl(p);
	if (!im->idle_on) {
		uv_idle_start(&im->idle, prop_noop_idle);
		im->idle_on = true;
	}
}

/* --- the ring of waiting writes ------------------------------------------ */

uint64_t prop_pending(const struct prop *p)
{
	const struct prop_impl *im = prop_impl(p);

	return im ? p->next_seq - im->head_seq : 0;
}

static int prop_ring_reserve(struct prop *p)
{
	struct prop_impl *im = prop_impl(p);
	size_t cap = im->mask + 1, ncap;
	struct prop_slot *ns;
	uint64_t s;
	if (p->next_seq - im->head_seq < cap)
		return 0;
	ncap = cap * 2;
	ns = calloc(ncap, sizeof(*ns));
	if (!ns)
		return -KV_ENOMEM;
	for (s = im->head_seq; s < p->next_seq; s++)
		ns[s & (ncap - 1)] = im->slots[s & im->mask];
	free(im->slots);
	im->slots = ns;
	im->mask = ncap - 1;
	return 0;
}

static void prop_ring_advance(struct prop *p)
{
	struct prop_impl *im = prop_impl(p);
	while (im->head_seq < p->next_seq && !im->slots[im->head_seq & im->mask].cb)
		im->head_seq++;
}

/* Takes the callback of seq out of the ring, if it still waits. */
static struct prop_slot prop_ring_take(struct prop *p, uint64_t seq)
{
	struct prop_impl *im = prop_impl(p);
	struct prop_slot none = {NULL, NULL}, s;
	if (seq < im->head_seq || seq >= p->next_seq)
		return none;
	s = im->slots[seq & im->mask];
	im->slots[seq & im->mask] = none;
	return s;
}

/* Fails every still-waiting command in [first, end).  Each slot is cleared
 * before its callback runs, so a callback may submit again safely. */
static void prop_fail_range(struct prop *p, uint64_t first, uint64_t end, int err)
{
	uint64_t s;
	for (s = first; s < end; s++) {
		struct prop_slot slot;
		if (!p->impl)
			return; /* a callback closed us */
		slot = prop_ring_take(p, s);
		if (slot.cb)
			slot.cb(slot.arg, err, NULL);
	}
	if (p->impl)
		prop_ring_advance(p);
}

/* --- writes --------------------------------------------------------------- */

static void prop_entry_done(void *arg, int err)
{
	struct prop_entry *e = arg;
	struct prop *p = e->p;
	if (p->impl) {
		/* On success the fsm completed our commands already; any left
		 * were dropped by it (a malformed entry): never leave a call
		 * hanging. */
		if (err) {
			LOGD("entry of %llu command(s) failed: %s",
			     (unsigned long long)(e->end - e->first), kv_err_name(err));
			metrics.proposals_failed += e->end - e->first;
		}
		prop_fail_range(p, e->first, e->end, err ? err : -KV_EINTERNAL);
	}
	free(e);
}

/* Hands the open batch to raft as one entry. */
static void prop_flush_batch(struct prop *p)
{
	struct prop_impl *im = prop_impl(p);
	struct prop_entry *e;
	uint8_t *data;
	size_t len;
	uint64_t first = im->batch_first, end = p->next_seq;
	int rv;

	if (p->batch.count == 0)
		return;
	im->batch_first = end;
	rv = cmd_batch_take(&p->batch, &data, &len);
	if (rv) {
		cmd_batch_close(&p->batch);
		cmd_batch_init(&p->batch);
		prop_fail_range(p, first, end, rv);
		return;
	}
	e = malloc(sizeof(*e));
	if (!e) {
		free(data);
		prop_fail_range(p, first, end, -KV_ENOMEM);
		return;
	}
	e->p = p;
	e->first = first;
	e->end = end;
	rv = node_apply(&p->srv->node, data, len, prop_entry_done, e);
	if (rv) {
		free(e);
		prop_fail_range(p, first, end, rv);
	}
}

int prop_submit(struct prop *p, enum cmd_type type, const uint8_t *payload, size_t len,
		prop_done_cb cb, void *arg)
{
	struct prop_impl *im = prop_impl(p);
	struct cmd c;
	int rv;

	if (!im || p->srv->stopping)
		return -KV_ESTOPPED;
	/* etcd compares the marshalled request with --max-request-bytes. */
	if (len > p->srv->cfg->max_request_bytes || len > UINT32_MAX)
		return -KV_EREQUESTTOOLARGE;
	/* A single member without a leader is in an election; forwarding to
	 * another member's leader comes with multi-member support. */
	if (!node_is_leader(&p->srv->node))
		return -KV_ENOLEADER;
	if ((rv = node_storage_error(&p->srv->node)))
		return rv;
	if (p->batch.count > 0 && p->batch.len + CMD_HEADER + len > PROP_BATCH_BYTES)
		prop_flush_batch(p);
	if (!p->impl)
		return -KV_ESTOPPED;
	if ((rv = prop_ring_reserve(p)))
		return rv;

	c.type = (uint8_t)type;
	c.origin = p->srv->member_id;
	c.seq = p->next_seq;
	c.payload = payload;
	c.len = (uint32_t)len;
	if ((rv = cmd_batch_add(&p->batch, &c)))
		return rv;
	im->slots[c.seq & im->mask].cb = cb;
	im->slots[c.seq & im->mask].arg = arg;
	p->next_seq++;
	prop_wake(p);
	return 0;
}

void prop_complete(struct prop *p, uint64_t seq, int err, const ProtobufCMessage *resp)
{
	struct prop_slot slot;
	if (!p->impl)
		return;
	slot = prop_ring_take(p, seq);
	prop_ring_advance(p);
	if (slot.cb)
		slot.cb(slot.arg, err, err ? NULL : resp);
}

/* --- reads ------------------------------------------------------------------ */

static void prop_reads_finish(struct prop_read_wait *w, int err)
{
	while (w) {
		struct prop_read_wait *next = w->next;
		prop_read_cb cb = w->cb;
		void *arg = w->arg;
		free(w);
		cb(arg, err);
		w = next;
	}
}

static void prop_barrier_done(void *arg, int err)
{
	struct prop_barrier *b = arg;
	struct prop *p = b->p;
	struct prop_read_wait *reads = b->reads;
	free(b);
	if (!p)
		return;
	prop_impl(p)->inflight = NULL;
	if (err)
		metrics.read_indexes_failed++;
	/* Reads that queued meanwhile get the next barrier. */
	if (prop_impl(p)->rq_head)
		prop_wake(p);
	prop_reads_finish(reads, err);
}

static void prop_flush_reads(struct prop *p)
{
	struct prop_impl *im = prop_impl(p);
	struct prop_barrier *b;
	int rv;

	if (!im->rq_head || im->inflight)
		return;
	b = malloc(sizeof(*b));
	if (!b)
		return; /* stays queued: the next iteration retries */
	b->p = p;
	b->reads = im->rq_head;
	im->rq_head = im->rq_tail = NULL;
	rv = node_barrier(&p->srv->node, prop_barrier_done, b);
	if (rv) {
		struct prop_read_wait *reads = b->reads;
		free(b);
		prop_reads_finish(reads, rv);
		return;
	}
	im->inflight = b;
}

int prop_read(struct prop *p, prop_read_cb cb, void *arg)
{
	struct prop_impl *im = prop_impl(p);
	struct prop_read_wait *w;
	int rv;

	if (!im || p->srv->stopping)
		return -KV_ESTOPPED;
	if (!node_is_leader(&p->srv->node))
		return -KV_ENOLEADER;
	if ((rv = node_storage_error(&p->srv->node)))
		return rv;
	w = malloc(sizeof(*w));
	if (!w)
		return -KV_ENOMEM;
	w->cb = cb;
	w->arg = arg;
	w->next = NULL;
	if (im->rq_tail)
		im->rq_tail->next = w;
	else
		im->rq_head = w;
	im->rq_tail = w;
	prop_wake(p);
	return 0;
}

/* --- the loop hook ------------------------------------------------------------ */

static void prop_check_cb(uv_check_t *h)
{
	struct prop *p = h->data;
	struct prop_impl *im = prop_impl(p);
	if (!im)
		return;
	/* Writes first: a read queued after a write in this iteration then
	 * sits behind it in the log as well. */
	prop_flush_batch(p);
	if (!p->impl)
		return;
	prop_flush_reads(p);
	if (!p->impl)
		return;
	im = prop_impl(p);
	if (im->idle_on && p->batch.count == 0 && (!im->rq_head || im->inflight)) {
		uv_idle_stop(&im->idle);
		im->idle_on = false;
	}
}

int prop_init(struct prop *p, struct server *srv)
{
	struct prop_impl *im;

	memset(p, 0, sizeof(*p));
	p->srv = srv;
	im = calloc(1, sizeof(*im));
	if (!im)
		return -KV_ENOMEM;
	im->slots = calloc(PROP_RING_MIN, sizeof(*im->slots));
	if (!im->slots) {
		free(im);
		return -KV_ENOMEM;
	}
	im->mask = PROP_RING_MIN - 1;
	p->next_seq = node_seq_base(&srv->node) + 1;
	im->head_seq = im->batch_first = p->next_seq;
	cmd_batch_init(&p->batch);
	p->impl = im;

	uv_check_init(srv->loop, &p->flush);
	p->flush.data = p;
	uv_check_start(&p->flush, prop_check_cb);
	uv_unref((uv_handle_t *)&p->flush);
	uv_idle_init(srv->loop, &im->idle);
	im->idle.data = p;
	uv_unref((uv_handle_t *)&im->idle);
	return 0;
}

void prop_fail_all(struct prop *p, int err)
{
	struct prop_impl *im = prop_impl(p);
	struct prop_read_wait *reads;
	uint64_t first, end;

	if (!im)
		return;
	/* The open batch never reaches raft. */
	cmd_batch_close(&p->batch);
	cmd_batch_init(&p->batch);
	im->batch_first = p->next_seq;

	reads = im->rq_head;
	im->rq_head = im->rq_tail = NULL;
	if (im->inflight) {
		struct prop_read_wait *w = im->inflight->reads;
		im->inflight->p = NULL;
		im->inflight->reads = NULL;
		im->inflight = NULL;
		if (w) {
			struct prop_read_wait *t = w;
			while (t->next)
				t = t->next;
			t->next = reads;
			reads = w;
		}
	}
	first = im->head_seq;
	end = p->next_seq;
	prop_fail_range(p, first, end, err);
	prop_reads_finish(reads, err);
}

static void prop_handle_closed(uv_handle_t *h)
{
	struct prop_impl *im = h->data;
	if (--im->handles_open == 0)
		free(im);
}

void prop_close(struct prop *p)
{
	struct prop_impl *im = prop_impl(p);
	if (!im)
		return;
	prop_fail_all(p, -KV_ESTOPPED);
	if (!p->impl)
		return; /* a failed callback closed us already */
	/* In-flight entries and barriers see p->impl == NULL and only free
	 * their own memory when node finally calls them back. */
	p->impl = NULL;
	cmd_batch_close(&p->batch);
	free(im->slots);
	im->slots = NULL;
	im->handles_open = 2;
	p->flush.data = im;
	im->idle.data = im;
	uv_close((uv_handle_t *)&p->flush, prop_handle_closed);
	uv_close((uv_handle_t *)&im->idle, prop_handle_closed);
}
