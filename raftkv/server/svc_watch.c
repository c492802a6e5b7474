/*
 * svc_watch: etcd's Watch service, /etcdserverpb.Watch/Watch (a bidi stream).
 *
 * Each gRPC stream becomes one watch_stream in the server's hub (watch.c),
 * which does everything etcd's watch server and watchable store do; this
 * file is the glue to the transport: it decodes each WatchRequest, fills
 * the response headers (cluster, member, raft term) and queues responses on
 * the call, tells the hub how much output the transport still holds for the
 * stream (backpressure), and ends `hasleader` streams with "etcdserver: no
 * leader" when this member has had no leader for 3 election timeouts, as
 * etcd's monitorLeader does, and every stream with "etcdserver: storage
 * failure" once this member cannot persist while others can serve (its
 * store would stop moving; svc_unfit).  A client half-close does not end
 * the stream (etcd keeps sending events until the client cancels it).
 *
 * Live events take the hub's shared-encoding path (send_events) when the
 * transport can queue raw bytes (gRPC): the stream packs only its header,
 * once per revision and term, and its watch ids.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/node.h"
#include "server/server.h"
#include "server/svc.h"
#include "server/watch.h"

/* etcd's maxNoLeaderCnt. */
#define SVC_WATCH_MAX_NO_LEADER 3

/* A packed ResponseHeader: four varint fields. */
#define SVC_WATCH_HDR_MAX 48

struct svc_watch {
	struct rpc_call *call;
	struct watch_stream *st;
	bool require_leader; /* "hasleader: true" metadata (clientv3 WithRequireLeader) */
	unsigned no_leader;  /* consecutive checks without a leader */
	/* the last header packed for send_events */
	Etcdserverpb__ResponseHeader hdr;
	size_t hdr_len;
	uint8_t hdr_bytes[SVC_WATCH_HDR_MAX];
};

static int svc_watch_send(void *sink, Etcdserverpb__WatchResponse *resp)
{
	struct svc_watch *sw = sink;
	int rv;

	svc_header_fill(rpc_call_server(sw->call), resp->header);
	rv = rpc_call_send(sw->call, &resp->base);
	/* A response the client will never see breaks its stream: end it. */
	if (rv != 0 && rv != -KV_ECANCELED)
		rpc_call_finish(sw->call, rv);
	return rv;
}

static int svc_watch_send_events(void *sink, int64_t rev, int64_t watch_id, struct blob *blob,
				 size_t off, size_t len)
{
	struct svc_watch *sw = sink;
	Etcdserverpb__ResponseHeader now = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	uint8_t head[SVC_WATCH_HDR_MAX + WATCH_HEAD_MAX];
	size_t n;
	int rv;

	svc_header_fill(rpc_call_server(sw->call), &now);
	now.revision = rev;
	if (sw->hdr_len == 0 || now.revision != sw->hdr.revision || now.raft_term != sw->hdr.raft_term ||
	    now.cluster_id != sw->hdr.cluster_id || now.member_id != sw->hdr.member_id) {
		if (protobuf_c_message_get_packed_size(&now.base) > sizeof(sw->hdr_bytes))
			return -KV_EINTERNAL;
		sw->hdr = now;
		sw->hdr_len = protobuf_c_message_pack(&now.base, sw->hdr_bytes);
	}
	n = watch_head_encode(head, sw->hdr_bytes, sw->hdr_len, watch_id);
	rv = rpc_call_send_raw(sw->call, head, n, blob, off, len);
	if (rv != 0 && rv != -KV_ECANCELED)
		rpc_call_finish(sw->call, rv);
	return rv;
}

static size_t svc_watch_pending(void *sink)
{
	struct svc_watch *sw = sink;
	return rpc_call_pending_bytes(sw->call);
}

static void svc_watch_check(void *sink)
{
	struct svc_watch *sw = sink;
	struct server *s = rpc_call_server(sw->call);

	if (rpc_call_gone(sw->call))
		return;
	/* This member cannot persist, so its store falls behind: its
	 * watchers would wait for events forever.  Ending the stream sends
	 * them to another member, where they resume from their revision. */
	if (svc_unfit(sw->call))
		return;
	if (!sw->require_leader)
		return;
	if (node_leader(&s->node) != 0) {
		sw->no_leader = 0;
		return;
	}
	if (++sw->no_leader >= SVC_WATCH_MAX_NO_LEADER)
		rpc_call_finish(sw->call, -KV_ENOLEADER);
}

static const struct watch_sink_ops svc_watch_ops = {
	.send = svc_watch_send,
	.pending = svc_watch_pending,
	.check = svc_watch_check,
};

/* For transports that take raw bytes (gRPC). */
static const struct watch_sink_ops svc_watch_raw_ops = {
	.send = svc_watch_send,
	.pending = svc_watch_pending,
	.check = svc_watch_check,
	.send_events = svc_watch_send_events,
};

/* The stream's state, made on its first message. */
static struct svc_watch *svc_watch_open(struct rpc_call *call)
{
	struct server *s = rpc_call_server(call);
	const char *hl = rpc_call_header(call, "hasleader");
	struct svc_watch *sw;
	int rv;

	if (svc_unfit(call))
		return NULL;
	if (s->watch == NULL && (rv = watch_hub_new(s, &s->watch)) != 0) {
		rpc_call_finish(call, rv);
		return NULL;
	}
	/* etcd's stream interceptor refuses a require-leader stream at once. */
	if (hl != NULL && strcmp(hl, "true") == 0 && node_leader(&s->node) == 0) {
		rpc_call_finish(call, -KV_ENOLEADER);
		return NULL;
	}
	sw = calloc(1, sizeof(*sw));
	if (sw == NULL) {
		rpc_call_finish(call, -KV_ENOMEM);
		return NULL;
	}
	sw->call = call;
	sw->require_leader = hl != NULL && strcmp(hl, "true") == 0;
	rv = watch_stream_new(s->watch, rpc_call_can_send_raw(call) ? &svc_watch_raw_ops : &svc_watch_ops,
			      sw, &sw->st);
	if (rv != 0) {
		free(sw);
		rpc_call_finish(call, rv);
		return NULL;
	}
	rpc_call_set_data(call, sw);
	return sw;
}

void svc_watch_on_message(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct svc_watch *sw = rpc_call_data(call);
	Etcdserverpb__WatchRequest *req;
	struct arena a;
	int rv = 0;

	if (rpc_call_gone(call))
		return;
	if (sw == NULL && (sw = svc_watch_open(call)) == NULL)
		return;
	arena_init(&a);
	req = etcdserverpb__watch_request__unpack(arena_pb_allocator(&a), len, msg);
	if (req == NULL) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	switch (req->request_union_case) {
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
		rv = watch_stream_create(sw->st, req->create_request);
		break;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
		rv = watch_stream_cancel(sw->st, req->cancel_request->watch_id);
		break;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
		rv = watch_stream_progress(sw->st);
		break;
	default:
		/* etcd ignores a request with nothing set. */
		break;
	}
	arena_close(&a);
	if (rv != 0 && rv != -KV_ECANCELED)
		rpc_call_finish(call, rv);
}

void svc_watch_on_half_close(struct rpc_call *call)
{
	/* etcd's recvLoop ends on EOF but the stream keeps sending events
	 * until the client cancels it. */
	(void)call;
}

void svc_watch_on_close(struct rpc_call *call)
{
	struct svc_watch *sw = rpc_call_data(call);

	if (sw == NULL)
		return;
	rpc_call_set_data(call, NULL);
	watch_stream_free(sw->st);
	free(sw);
}
