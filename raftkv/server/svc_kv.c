/*
 * svc_kv: etcd's KV service.
 *
 *   Range        serializable: answered from the local store at once;
 *                linearizable: queued behind the next raft barrier (prop_read),
 *                so one barrier serves every read that arrived meanwhile.
 *   Put, DeleteRange, Compact, and Txn with writes: validated here, then the
 *                client's request bytes are proposed unchanged (prop_submit);
 *                the fsm applies them through kvs and prop hands us the result.
 *   Txn without writes: a read, served like a linearizable Range.
 * On a follower that knows its leader, writes and linearizable reads are
 * relayed to the leader instead (forward.h); serializable reads stay here.
 */
#include <stdlib.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/forward.h"
#include "server/kvs.h"
#include "server/metrics.h"
#include "server/node.h"
#include "server/prop.h"
#include "server/server.h"
#include "server/svc.h"

void svc_header_fill(struct server *s, Etcdserverpb__ResponseHeader *h)
{
	h->cluster_id = s->cluster_id;
	h->member_id = s->member_id;
	h->raft_term = node_term(&s->node);
}

/* Sends the response (header completed) and ends the call. */
static void svc_reply(struct rpc_call *call, const ProtobufCMessage *resp)
{
	struct svc_response *r = (struct svc_response *)resp;
	struct server *s = rpc_call_server(call);
	if (r->header)
		svc_header_fill(s, r->header);
	rpc_call_send(call, resp);
	rpc_call_finish(call, 0);
}

/* --- writes ------------------------------------------------------------ */

static void svc_write_done(void *arg, int err, const ProtobufCMessage *resp)
{
	struct rpc_call *call = arg;
	if (err)
		rpc_call_finish(call, err);
	else
		svc_reply(call, resp);
	rpc_call_release(call);
}

static const char *svc_kv_path(enum cmd_type type)
{
	switch (type) {
	case CMD_PUT:
		return "/etcdserverpb.KV/Put";
	case CMD_DELETE_RANGE:
		return "/etcdserverpb.KV/DeleteRange";
	case CMD_TXN:
		return "/etcdserverpb.KV/Txn";
	default:
		return "/etcdserverpb.KV/Compact";
	}
}

/* Like etcd, a member serves writes and linearizable reads only once its
 * own name and client URLs are in the replicated member table: until then
 * `--cluster` commands could not find it.  Clients retry "no leader". */
static bool svc_not_published(struct rpc_call *call)
{
	struct server *s = rpc_call_server(call);
	const struct member *m = members_find(&s->members, s->member_id);
	if (m && members_is_started(m))
		return false;
	rpc_call_finish(call, -KV_ENOLEADER);
	return true;
}

static void svc_propose(struct rpc_call *call, enum cmd_type type, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	int rv;
	if (svc_unfit(call) || svc_not_published(call))
		return;
	/* A follower relays the client's bytes to the leader (forward.h). */
	if (forward_try(call, svc_kv_path(type), msg, len))
		return;
	rpc_call_hold(call);
	rv = prop_submit(&s->prop, type, msg, len, svc_write_done, call);
	if (rv) {
		rpc_call_finish(call, rv);
		rpc_call_release(call);
	}
}

#define SVC_DECODE(var, type, lower, a, msg, len)                                  \
	type *var = lower##__unpack(arena_pb_allocator(a), len, msg)

void svc_kv_put(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	struct arena a;
	int rv;
	arena_init(&a);
	SVC_DECODE(req, Etcdserverpb__PutRequest, etcdserverpb__put_request, &a, msg, len);
	rv = req ? kvs_check_put(&s->kvs, req) : -KV_EMALFORMED;
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_propose(call, CMD_PUT, msg, len);
}

void svc_kv_delete_range(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	struct arena a;
	int rv;
	arena_init(&a);
	SVC_DECODE(req, Etcdserverpb__DeleteRangeRequest, etcdserverpb__delete_range_request, &a,
		   msg, len);
	rv = req ? kvs_check_delete_range(&s->kvs, req) : -KV_EMALFORMED;
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_propose(call, CMD_DELETE_RANGE, msg, len);
}

void svc_kv_compact(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	struct arena a;
	int rv;
	arena_init(&a);
	SVC_DECODE(req, Etcdserverpb__CompactionRequest, etcdserverpb__compaction_request, &a, msg,
		   len);
	rv = req ? kvs_check_compact(&s->kvs, req) : -KV_EMALFORMED;
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_propose(call, CMD_COMPACT, msg, len);
}

/* --- reads ------------------------------------------------------------- */

/* A read parked until the barrier that makes it linearizable completes.
 * The arena must not move once initialised (its allocator points to it). */
struct svc_read {
	struct rpc_call *call;
	struct arena arena;
	ProtobufCMessage *req;
};

static void svc_serve_read(struct rpc_call *call, struct arena *a, ProtobufCMessage *req)
{
	struct server *s = rpc_call_server(call);
	int rv;
	if (req->descriptor == &etcdserverpb__range_request__descriptor) {
		Etcdserverpb__RangeResponse resp;
		rv = kvs_range(&s->kvs, (Etcdserverpb__RangeRequest *)req, a, &resp);
		if (rv)
			rpc_call_finish(call, rv);
		else
			svc_reply(call, &resp.base);
	} else {
		Etcdserverpb__TxnResponse resp;
		rv = kvs_txn(&s->kvs, (Etcdserverpb__TxnRequest *)req, a, &resp);
		if (rv)
			rpc_call_finish(call, rv);
		else
			svc_reply(call, &resp.base);
	}
}

static void svc_read_room(void *arg);

static void svc_read_ready(void *arg, int err)
{
	struct svc_read *r = arg;
	if (err) {
		rpc_call_finish(r->call, err);
	} else if (!rpc_call_gone(r->call)) {
		/* Many reads complete at one barrier: a client that does not
		 * take their answers gets them one budget at a time. */
		if (rpc_call_wait_room(r->call, svc_read_room, r))
			return;
		svc_serve_read(r->call, &r->arena, r->req);
	}
	rpc_call_release(r->call);
	arena_close(&r->arena);
	free(r);
}

static void svc_read_room(void *arg)
{
	svc_read_ready(arg, 0);
}

/* Decodes into a heap-allocated read so it can wait for a barrier. */
static struct svc_read *svc_read_new(struct rpc_call *call, const ProtobufCMessageDescriptor *d,
				     const uint8_t *msg, size_t len)
{
	struct svc_read *r = malloc(sizeof(*r));
	if (!r)
		return NULL;
	r->call = call;
	arena_init(&r->arena);
	r->req = protobuf_c_message_unpack(d, arena_pb_allocator(&r->arena), len, msg);
	return r;
}

static void svc_read_free(struct svc_read *r)
{
	arena_close(&r->arena);
	free(r);
}

static void svc_read_start(struct rpc_call *call, struct svc_read *r, int serializable)
{
	struct server *s = rpc_call_server(call);
	int rv;
	if (serializable) {
		svc_serve_read(call, &r->arena, r->req);
		svc_read_free(r);
		return;
	}
	rpc_call_hold(call);
	rv = prop_read(&s->prop, svc_read_ready, r);
	if (rv) {
		rpc_call_finish(call, rv);
		rpc_call_release(call);
		svc_read_free(r);
	}
}

void svc_kv_range(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	struct svc_read *r;
	Etcdserverpb__RangeRequest *req;
	int rv;
	if (svc_unfit(call))
		return;
	r = svc_read_new(call, &etcdserverpb__range_request__descriptor, msg, len);
	if (!r) {
		rpc_call_finish(call, -KV_ENOMEM);
		return;
	}
	req = (Etcdserverpb__RangeRequest *)r->req;
	rv = req ? kvs_check_range(&s->kvs, req) : -KV_EMALFORMED;
	if (rv) {
		rpc_call_finish(call, rv);
		svc_read_free(r);
		return;
	}
	if (!req->serializable &&
	    (svc_not_published(call) || forward_try(call, "/etcdserverpb.KV/Range", msg, len))) {
		svc_read_free(r);
		return;
	}
	metrics.mvcc_range++;
	svc_read_start(call, r, req->serializable);
}

static int svc_txn_has_writes(const Etcdserverpb__TxnRequest *t);

static int svc_ops_have_writes(Etcdserverpb__RequestOp **ops, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		switch (ops[i]->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
			if (svc_txn_has_writes(ops[i]->request_txn))
				return 1;
			break;
		default:
			return 1;
		}
	}
	return 0;
}

static int svc_txn_has_writes(const Etcdserverpb__TxnRequest *t)
{
	return svc_ops_have_writes(t->success, t->n_success) ||
	       svc_ops_have_writes(t->failure, t->n_failure);
}

/* A read-only txn is linearizable unless every range in it is serializable
 * (etcd's isTxnSerializable). */
static int svc_txn_serializable(const Etcdserverpb__TxnRequest *t);

static int svc_ops_serializable(Etcdserverpb__RequestOp **ops, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE) {
			if (!ops[i]->request_range->serializable)
				return 0;
		} else if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN) {
			if (!svc_txn_serializable(ops[i]->request_txn))
				return 0;
		}
	}
	return 1;
}

static int svc_txn_serializable(const Etcdserverpb__TxnRequest *t)
{
	return svc_ops_serializable(t->success, t->n_success) &&
	       svc_ops_serializable(t->failure, t->n_failure);
}

void svc_kv_txn(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	struct svc_read *r;
	Etcdserverpb__TxnRequest *req;
	int rv;
	if (svc_unfit(call))
		return;
	/* protobuf-c recurses once per nesting level: refuse deep nesting
	 * before unpacking, or a small request could overflow the stack. */
	rv = kvs_check_txn_wire(msg, len);
	if (rv) {
		rpc_call_finish(call, rv);
		return;
	}
	r = svc_read_new(call, &etcdserverpb__txn_request__descriptor, msg, len);
	if (!r) {
		rpc_call_finish(call, -KV_ENOMEM);
		return;
	}
	req = (Etcdserverpb__TxnRequest *)r->req;
	rv = req ? kvs_check_txn(&s->kvs, req) : -KV_EMALFORMED;
	if (rv) {
		rpc_call_finish(call, rv);
		svc_read_free(r);
		return;
	}
	if (svc_txn_has_writes(req)) {
		svc_read_free(r);
		svc_propose(call, CMD_TXN, msg, len);
		return;
	}
	if (!svc_txn_serializable(req) &&
	    (svc_not_published(call) || forward_try(call, "/etcdserverpb.KV/Txn", msg, len))) {
		svc_read_free(r);
		return;
	}
	svc_read_start(call, r, svc_txn_serializable(req));
}
