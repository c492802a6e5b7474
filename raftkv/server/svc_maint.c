/*
 * svc_maint: etcd's Maintenance service (Status, Hash, HashKV, Alarm,
 * Defragment, MoveLeader) and Cluster/MemberList.  All of them answer from
 * this member's own state, as etcd does, without going through raft.
 */
#include <string.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "server/config.h"
#include "server/mvcc.h"
#include "server/node.h"
#include "server/server.h"
#include "server/svc.h"

static Etcdserverpb__ResponseHeader *svc_header_new(struct server *s, struct arena *a)
{
	Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof(*h));
	if (!h)
		return NULL;
	etcdserverpb__response_header__init(h);
	svc_header_fill(s, h);
	h->revision = mvcc_rev(s->mvcc);
	return h;
}

/* Sends resp (whose header is set) and finishes; frees the arena. */
static void svc_send(struct rpc_call *call, const ProtobufCMessage *resp, struct arena *a)
{
	const struct svc_response *r = (const struct svc_response *)resp;
	if (!r->header)
		rpc_call_finish(call, -KV_ENOMEM);
	else if (rpc_call_send(call, resp) == 0)
		rpc_call_finish(call, 0);
	else
		rpc_call_finish(call, -KV_ENOMEM);
	arena_close(a);
}

void svc_maint_status(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__StatusResponse resp;
	struct arena a;
	arena_init(&a);
	etcdserverpb__status_response__init(&resp);
	resp.header = svc_header_new(s, &a);
	resp.version = (char *)RAFTKV_ETCD_VERSION;
	resp.dbsize = (int64_t)mvcc_bytes(s->mvcc);
	resp.dbsizeinuse = resp.dbsize;
	resp.leader = node_leader(&s->node);
	resp.raftindex = node_commit_index(&s->node);
	resp.raftterm = node_term(&s->node);
	resp.raftappliedindex = node_applied_index(&s->node);
	svc_send(call, &resp.base, &a);
}

void svc_maint_hash(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__HashResponse resp;
	struct arena a;
	int rv;
	arena_init(&a);
	etcdserverpb__hash_response__init(&resp);
	rv = mvcc_hash(s->mvcc, &resp.hash);
	if (rv) {
		arena_close(&a);
		rpc_call_finish(call, rv);
		return;
	}
	resp.header = svc_header_new(s, &a);
	svc_send(call, &resp.base, &a);
}

void svc_maint_hash_kv(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__HashKVResponse resp;
	Etcdserverpb__HashKVRequest *req;
	struct arena a;
	int rv;
	arena_init(&a);
	req = etcdserverpb__hash_kvrequest__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	etcdserverpb__hash_kvresponse__init(&resp);
	rv = mvcc_hash_kv(s->mvcc, req->revision, &resp.hash, &resp.compact_revision);
	if (rv) {
		arena_close(&a);
		rpc_call_finish(call, rv);
		return;
	}
	resp.header = svc_header_new(s, &a);
	svc_send(call, &resp.base, &a);
}

void svc_maint_alarm(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__AlarmResponse resp;
	Etcdserverpb__AlarmRequest *req;
	struct arena a;
	arena_init(&a);
	req = etcdserverpb__alarm_request__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	/* No alarm can be raised yet (the space quota alarm comes with the
	 * cluster work), so GET lists none and (DE)ACTIVATE changes nothing. */
	etcdserverpb__alarm_response__init(&resp);
	/* etcd answers a GET that finds no alarm with an empty message,
	 * not even a header (the gateway shows "{}"). */
	if (req->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
		rpc_call_send(call, &resp.base);
		rpc_call_finish(call, 0);
		arena_close(&a);
		return;
	}
	resp.header = svc_header_new(s, &a);
	svc_send(call, &resp.base, &a);
}

void svc_maint_defragment(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__DefragmentResponse resp;
	struct arena a;
	/* The store lives in memory and the log is compacted by snapshots:
	 * there is no file to defragment. */
	arena_init(&a);
	etcdserverpb__defragment_response__init(&resp);
	resp.header = svc_header_new(s, &a);
	svc_send(call, &resp.base, &a);
}

void svc_maint_move_leader(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MoveLeaderResponse resp;
	Etcdserverpb__MoveLeaderRequest *req;
	struct arena a;
	arena_init(&a);
	req = etcdserverpb__move_leader_request__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	if (!node_is_leader(&s->node)) {
		arena_close(&a);
		rpc_call_finish(call, -KV_ENOTLEADER);
		return;
	}
	/* A single member can only "move" leadership to itself. */
	if (req->targetid != s->member_id) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EBADTRANSFEREE);
		return;
	}
	etcdserverpb__move_leader_response__init(&resp);
	resp.header = svc_header_new(s, &a);
	svc_send(call, &resp.base, &a);
}

void svc_cluster_member_list(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	const struct config *cfg = s->cfg;
	Etcdserverpb__MemberListResponse resp;
	Etcdserverpb__Member *m, **members;
	struct arena a;
	arena_init(&a);
	etcdserverpb__member_list_response__init(&resp);
	resp.header = svc_header_new(s, &a);
	if (resp.header)
		resp.header->revision = 0; /* etcd sends no revision here */
	m = arena_alloc(&a, sizeof(*m));
	members = arena_alloc(&a, sizeof(*members));
	if (!m || !members) {
		arena_close(&a);
		rpc_call_finish(call, -KV_ENOMEM);
		return;
	}
	etcdserverpb__member__init(m);
	m->id = s->member_id;
	m->name = cfg->name;
	m->n_peerurls = (size_t)cfg->n_initial_advertise_peer_urls;
	m->peerurls = cfg->initial_advertise_peer_urls;
	m->n_clienturls = (size_t)cfg->n_advertise_client_urls;
	m->clienturls = cfg->advertise_client_urls;
	members[0] = m;
	resp.n_members = 1;
	resp.members = members;
	svc_send(call, &resp.base, &a);
}

int svc_health(struct server *s)
{
	return node_leader(&s->node) != 0;
}
