/*
 * svc_maint: etcd's Maintenance service (Status, Hash, HashKV, Alarm,
 * Defragment, MoveLeader, Snapshot) and the quota
 * check in front of the writes that grow the store.  Reads answer from this
 * member's own state, as etcd does, without going through raft; alarm
 * changes are proposed (CMD_ALARM) and answered once applied.
 *
 * Snapshot streams fsm_image(), the very bytes of a raft snapshot, taken in
 * one piece on the loop (so it is one point in time), zero-padded to a
 * multiple of 512 bytes and followed by its SHA-256 as a last 32-byte chunk:
 * etcd's stream shape, whose trailer etcdctl and raftkv-restore check (a
 * saved file of size 32 mod 512 has a trailer).  Chunks go out a burst per
 * loop turn while the transport holds less than SVC_SNAP_HIGH bytes for
 * the call; above that the stream waits on a timer for the client to read,
 * so a big image never sits whole in the transport's queue.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sha2.h>
#include <raft.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/alarm.h"
#include "server/config.h"
#include "server/forward.h"
#include "server/fsm.h"
#include "server/mvcc.h"
#include "server/node.h"
#include "server/prop.h"
#include "server/server.h"
#include "server/svc.h"

/* etcd sends 32 KiB chunks; bigger ones cost fewer messages and clients
 * accept up to 4 MiB. */
#define SVC_SNAP_CHUNK (256u << 10)
#ifndef SVC_SNAP_HIGH
#define SVC_SNAP_HIGH (2u << 20)
#endif
#define SVC_SNAP_BURST 16
#define SVC_SNAP_WAIT_MS 5
/* etcd's hasChecksum: a file of size 32 mod 512 carries the SHA-256. */
#define SVC_SNAP_ALIGN 512u

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

/* etcd 3.4's Status.errors: "etcdserver: no leader", then every alarm;
 * ours add why this member cannot persist, if it cannot. */
static int svc_status_errors(struct server *s, struct arena *a, Etcdserverpb__StatusResponse *resp)
{
	size_t i, n = s->alarms.n + 2;
	char buf[160], why[128];
	resp->errors = arena_alloc(a, n * sizeof(*resp->errors));
	if (!resp->errors)
		return -KV_ENOMEM;
	if (node_leader(&s->node) == 0)
		resp->errors[resp->n_errors++] = (char *)kv_err_message(-KV_ENOLEADER);
	if (node_storage_reason(&s->node, why, sizeof(why))) {
		snprintf(buf, sizeof(buf), "%s: %s", kv_err_message(-KV_EIO), why);
		if (!(resp->errors[resp->n_errors++] = arena_memdup(a, buf, strlen(buf) + 1)))
			return -KV_ENOMEM;
	}
	for (i = 0; i < s->alarms.n; i++) {
		alarm_describe(&s->alarms.v[i], buf, sizeof(buf));
		resp->errors[resp->n_errors] = arena_memdup(a, buf, strlen(buf) + 1);
		if (!resp->errors[resp->n_errors++])
			return -KV_ENOMEM;
	}
	return 0;
}

void svc_maint_status(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__StatusResponse resp;
	const struct member *self;
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
	self = members_find(&s->members, s->member_id);
	resp.islearner = self && self->is_learner;
	if (svc_status_errors(s, &a, &resp)) {
		arena_close(&a);
		rpc_call_finish(call, -KV_ENOMEM);
		return;
	}
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

static void svc_alarm_done(void *arg, int err, const ProtobufCMessage *resp)
{
	struct rpc_call *call = arg;
	/* No header: etcd 3.4 answers the applier's response as it is. */
	if (err)
		rpc_call_finish(call, err);
	else if (rpc_call_send(call, resp) == 0)
		rpc_call_finish(call, 0);
	else
		rpc_call_finish(call, -KV_ENOMEM);
	rpc_call_release(call);
}

void svc_maint_alarm(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__AlarmResponse resp;
	Etcdserverpb__AlarmRequest *req;
	struct arena a;
	int rv;
	arena_init(&a);
	req = etcdserverpb__alarm_request__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	if (req->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
		/* ACTIVATE/DEACTIVATE change replicated state: through raft,
		 * relayed to the leader by a follower (forward.h). */
		arena_close(&a);
		if (forward_try(call, "/etcdserverpb.Maintenance/Alarm", msg, len))
			return;
		rpc_call_hold(call);
		rv = prop_submit(&s->prop, CMD_ALARM, msg, len, svc_alarm_done, call);
		if (rv) {
			rpc_call_finish(call, rv);
			rpc_call_release(call);
		}
		return;
	}
	/* GET: the applied table, which every member holds.  No header, as
	 * etcd (the gateway shows "{}" when no alarm is raised). */
	rv = alarm_list(&s->alarms, (uint32_t)req->alarm, &a, &resp);
	if (rv == 0 && rpc_call_send(call, &resp.base) != 0)
		rv = -KV_ENOMEM;
	rpc_call_finish(call, rv);
	arena_close(&a);
}

/* --- the quota, in front of the writes that grow the store --------------- */

static void svc_quota_raised(void *arg, int err, const ProtobufCMessage *resp)
{
	struct rpc_call *call = arg;
	(void)err; /* etcd answers NOSPACE whatever became of the alarm */
	(void)resp;
	rpc_call_finish(call, -KV_ENOSPACE);
	rpc_call_release(call);
}

/* etcd's quotaKVServer / quotaLeaseServer: checked before the request is
 * even validated.  Over the quota, the answer waits for this member's
 * NOSPACE alarm to be applied, so a client that sees the error then lists
 * the alarm. */
static bool svc_quota_ok(struct rpc_call *call, enum cmd_type type, const uint8_t *msg, size_t len)
{
	int rv;
	rpc_call_hold(call);
	rv = alarm_quota_check(rpc_call_server(call), type, msg, len, svc_quota_raised, call);
	if (rv == 1)
		return false;
	rpc_call_release(call);
	if (rv)
		rpc_call_finish(call, rv);
	return rv == 0;
}

void svc_quota_put(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	if (svc_quota_ok(call, CMD_PUT, msg, len))
		svc_kv_put(call, msg, len);
}

void svc_quota_txn(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	if (svc_quota_ok(call, CMD_TXN, msg, len))
		svc_kv_txn(call, msg, len);
}

void svc_quota_lease_grant(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	if (svc_quota_ok(call, CMD_LEASE_GRANT, msg, len))
		svc_lease_grant(call, msg, len);
}

/* --- Snapshot ----------------------------------------------------------------- */

struct svc_snap {
	struct rpc_call *call;
	struct server *srv;
	uint8_t *img; /* fsm_image (raft_malloc), zero-padded to SVC_SNAP_ALIGN */
	size_t len, off;
	SHA2_CTX sha;
	uv_timer_t timer;
	uint64_t t0;
};

static void svc_snap_closed(uv_handle_t *h)
{
	struct svc_snap *ss = h->data;
	raft_free(ss->img);
	rpc_call_release(ss->call);
	free(ss);
}

static void svc_snap_end(struct svc_snap *ss, int err)
{
	rpc_call_finish(ss->call, err);
	uv_close((uv_handle_t *)&ss->timer, svc_snap_closed);
}

static int svc_snap_send(struct svc_snap *ss, const uint8_t *blob, size_t n, uint64_t remaining)
{
	Etcdserverpb__SnapshotResponse resp = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
	resp.remaining_bytes = remaining;
	resp.blob.data = (uint8_t *)blob;
	resp.blob.len = n;
	return rpc_call_send(ss->call, &resp.base);
}

static void svc_snap_pump_cb(uv_timer_t *t);

/* Sends what the transport has room for, then waits for the next turn. */
static void svc_snap_pump(struct svc_snap *ss)
{
	uint8_t sha[SHA256_DIGEST_LENGTH];
	size_t n;
	int i, rv;

	if (rpc_call_gone(ss->call) || ss->srv->stopping) {
		svc_snap_end(ss, -KV_ESTOPPED); /* a no-op on a gone call */
		return;
	}
	for (i = 0; i < SVC_SNAP_BURST; i++) {
		if (rpc_call_pending_bytes(ss->call) >= SVC_SNAP_HIGH) {
			uv_timer_start(&ss->timer, svc_snap_pump_cb, SVC_SNAP_WAIT_MS, 0);
			return;
		}
		if (ss->off == ss->len) {
			SHA256Final(sha, &ss->sha);
			rv = svc_snap_send(ss, sha, sizeof(sha), 0);
			LOGI("snapshot: sent %zu bytes + sha256 in %.1f ms", ss->len,
			     (double)(uv_hrtime() - ss->t0) / 1e6);
			svc_snap_end(ss, rv);
			return;
		}
		n = ss->len - ss->off;
		if (n > SVC_SNAP_CHUNK)
			n = SVC_SNAP_CHUNK;
		SHA256Update(&ss->sha, ss->img + ss->off, n);
		rv = svc_snap_send(ss, ss->img + ss->off, n, ss->len - ss->off - n);
		if (rv) {
			svc_snap_end(ss, rv);
			return;
		}
		ss->off += n;
	}
	/* Let the loop flush and serve others before the next burst. */
	uv_timer_start(&ss->timer, svc_snap_pump_cb, 0, 0);
}

static void svc_snap_pump_cb(uv_timer_t *t)
{
	svc_snap_pump(t->data);
}

void svc_maint_snapshot(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__SnapshotRequest *req;
	struct svc_snap *ss;
	uint8_t *img = NULL, *grown;
	size_t ilen = 0, padded;
	int rv;

	req = etcdserverpb__snapshot_request__unpack(NULL, len, msg);
	if (!req) {
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	etcdserverpb__snapshot_request__free_unpacked(req, NULL);
	ss = calloc(1, sizeof(*ss));
	if (!ss) {
		rpc_call_finish(call, -KV_ENOMEM);
		return;
	}
	ss->t0 = uv_hrtime();
	rv = fsm_image(&s->fsm_ctx, &img, &ilen);
	if (rv) {
		free(ss);
		rpc_call_finish(call, rv);
		return;
	}
	padded = (ilen + SVC_SNAP_ALIGN - 1) / SVC_SNAP_ALIGN * SVC_SNAP_ALIGN;
	grown = raft_realloc(img, padded);
	if (!grown) {
		raft_free(img);
		free(ss);
		rpc_call_finish(call, -KV_ENOMEM);
		return;
	}
	memset(grown + ilen, 0, padded - ilen);
	SHA256Init(&ss->sha);
	ss->img = grown;
	ss->len = padded;
	ss->call = call;
	ss->srv = s;
	uv_timer_init(s->loop, &ss->timer);
	ss->timer.data = ss;
	rpc_call_hold(call);
	LOGI("snapshot: streaming a %zu byte image of revision %" PRId64 " (%.1f ms to take)", ilen,
	     mvcc_rev(s->mvcc), (double)(uv_hrtime() - ss->t0) / 1e6);
	svc_snap_pump(ss);
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

static void svc_move_done(void *arg, int err)
{
	struct rpc_call *call = arg;
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MoveLeaderResponse resp;
	struct arena a;
	if (err) {
		rpc_call_finish(call, err);
	} else {
		arena_init(&a);
		etcdserverpb__move_leader_response__init(&resp);
		resp.header = svc_header_new(s, &a);
		svc_send(call, &resp.base, &a);
	}
	rpc_call_release(call);
}

/* Served by the leader only, as etcd (etcdctl sends it there). */
void svc_maint_move_leader(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MoveLeaderRequest *req;
	struct arena a;
	uint64_t target;
	int rv;
	arena_init(&a);
	req = etcdserverpb__move_leader_request__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	target = req->targetid;
	arena_close(&a);
	rpc_call_hold(call);
	rv = node_move_leader(&s->node, target, svc_move_done, call);
	if (rv) {
		rpc_call_finish(call, rv);
		rpc_call_release(call);
	}
}

bool svc_unfit(struct rpc_call *call)
{
	int err = node_storage_refuse(&rpc_call_server(call)->node);
	if (err)
		rpc_call_finish(call, err);
	return err != 0;
}

int svc_health(struct server *s)
{
	/* etcd 3.4's checkHealth: any raised alarm, or no leader, is unhealthy;
	 * so is a member that cannot persist (etcd's QGET would fail). */
	return node_leader(&s->node) != 0 && !alarm_active(&s->alarms, ETCDSERVERPB__ALARM_TYPE__NONE) &&
	       node_storage_error(&s->node) == 0;
}
