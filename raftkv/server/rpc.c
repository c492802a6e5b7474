/*
 * rpc: the table of gRPC methods we serve.  The transport looks a request's
 * :path up here; a path whose service we know but whose method we do not
 * serve gets "unknown method", any other "unknown service", as grpc-go.
 */
#include "server/rpc.h"

#include <string.h>

#include "server/svc.h"

#define UNARY(p, fn) {p, RPC_UNARY, fn, NULL, NULL}

static const struct rpc_method rpc_methods[] = {
	UNARY("/etcdserverpb.KV/Range", svc_kv_range),
	UNARY("/etcdserverpb.KV/Put", svc_quota_put),
	UNARY("/etcdserverpb.KV/DeleteRange", svc_kv_delete_range),
	UNARY("/etcdserverpb.KV/Txn", svc_quota_txn),
	UNARY("/etcdserverpb.KV/Compact", svc_kv_compact),
	UNARY("/etcdserverpb.Maintenance/Status", svc_maint_status),
	UNARY("/etcdserverpb.Maintenance/Hash", svc_maint_hash),
	UNARY("/etcdserverpb.Maintenance/HashKV", svc_maint_hash_kv),
	UNARY("/etcdserverpb.Maintenance/Alarm", svc_maint_alarm),
	UNARY("/etcdserverpb.Maintenance/Defragment", svc_maint_defragment),
	UNARY("/etcdserverpb.Maintenance/MoveLeader", svc_maint_move_leader),
	{"/etcdserverpb.Maintenance/Snapshot", RPC_SERVER_STREAM, svc_maint_snapshot, NULL, NULL},
	UNARY("/etcdserverpb.Cluster/MemberList", svc_cluster_member_list),
	UNARY("/etcdserverpb.Cluster/MemberAdd", svc_cluster_member_add),
	UNARY("/etcdserverpb.Cluster/MemberRemove", svc_cluster_member_remove),
	UNARY("/etcdserverpb.Cluster/MemberUpdate", svc_cluster_member_update),
	UNARY("/etcdserverpb.Cluster/MemberPromote", svc_cluster_member_promote),
	UNARY("/raftkv.Internal/MemberPublish", svc_cluster_member_publish),
	UNARY("/etcdserverpb.Lease/LeaseGrant", svc_quota_lease_grant),
	UNARY("/etcdserverpb.Lease/LeaseRevoke", svc_lease_revoke),
	{"/etcdserverpb.Lease/LeaseKeepAlive", RPC_BIDI_STREAM, svc_lease_keep_alive,
	 svc_lease_keep_alive_half_close, NULL},
	UNARY("/etcdserverpb.Lease/LeaseTimeToLive", svc_lease_time_to_live),
	UNARY("/etcdserverpb.Lease/LeaseLeases", svc_lease_leases),
	{"/etcdserverpb.Watch/Watch", RPC_BIDI_STREAM, svc_watch_on_message, svc_watch_on_half_close,
	 svc_watch_on_close},
};

/* Services whose other methods exist in etcd's API but are not served yet. */
static const char *const rpc_services[] = {
	"etcdserverpb.KV",      "etcdserverpb.Watch",       "etcdserverpb.Lease",
	"etcdserverpb.Cluster", "etcdserverpb.Maintenance", "etcdserverpb.Auth",
};

const struct rpc_method *rpc_method_find(const char *path, size_t len, bool *service_known)
{
	size_t i, svc_len;
	const char *slash;

	*service_known = false;
	for (i = 0; i < sizeof(rpc_methods) / sizeof(rpc_methods[0]); i++) {
		if (strlen(rpc_methods[i].path) == len && memcmp(rpc_methods[i].path, path, len) == 0) {
			*service_known = true;
			return &rpc_methods[i];
		}
	}
	/* "/service/method": is the service one of ours? */
	if (len < 2 || path[0] != '/')
		return NULL;
	slash = memchr(path + 1, '/', len - 1);
	if (!slash)
		return NULL;
	svc_len = (size_t)(slash - (path + 1));
	for (i = 0; i < sizeof(rpc_services) / sizeof(rpc_services[0]); i++) {
		if (strlen(rpc_services[i]) == svc_len && memcmp(rpc_services[i], path + 1, svc_len) == 0) {
			*service_known = true;
			break;
		}
	}
	return NULL;
}

size_t rpc_method_count(void)
{
	return sizeof(rpc_methods) / sizeof(rpc_methods[0]);
}

const struct rpc_method *rpc_method_at(size_t i)
{
	return i < rpc_method_count() ? &rpc_methods[i] : NULL;
}

size_t rpc_method_index(const struct rpc_method *m)
{
	return (size_t)(m - rpc_methods);
}

/* --- calls: dispatch to the call's transport (see rpc.h) ------------------ */

static const struct rpc_call_ops *rpc_ops(const struct rpc_call *call)
{
	return ((const struct rpc_call_head *)(const void *)call)->ops;
}

struct server *rpc_call_server(const struct rpc_call *call)
{
	return rpc_ops(call)->server(call);
}

void *rpc_call_data(const struct rpc_call *call)
{
	return rpc_ops(call)->data(call);
}

void rpc_call_set_data(struct rpc_call *call, void *data)
{
	rpc_ops(call)->set_data(call, data);
}

const char *rpc_call_header(const struct rpc_call *call, const char *name)
{
	return rpc_ops(call)->header(call, name);
}

bool rpc_call_gone(const struct rpc_call *call)
{
	return rpc_ops(call)->gone(call);
}

void rpc_call_hold(struct rpc_call *call)
{
	rpc_ops(call)->hold(call);
}

void rpc_call_release(struct rpc_call *call)
{
	rpc_ops(call)->release(call);
}

int rpc_call_send(struct rpc_call *call, const ProtobufCMessage *msg)
{
	return rpc_ops(call)->send(call, msg);
}

int rpc_call_send_raw(struct rpc_call *call, const uint8_t *head, size_t head_len,
		      struct blob *blob, size_t off, size_t len)
{
	const struct rpc_call_ops *ops = rpc_ops(call);
	if (!ops->send_raw)
		return -KV_EUNIMPLEMENTED;
	return ops->send_raw(call, head, head_len, blob, off, len);
}

bool rpc_call_can_send_raw(const struct rpc_call *call)
{
	return rpc_ops(call)->send_raw != NULL;
}

size_t rpc_call_pending_bytes(const struct rpc_call *call)
{
	const struct rpc_call_ops *ops = rpc_ops(call);
	return ops->pending_bytes ? ops->pending_bytes(call) : 0;
}

int rpc_call_wait_room(struct rpc_call *call, void (*fn)(void *arg), void *arg)
{
	const struct rpc_call_ops *ops = rpc_ops(call);
	return ops->wait_room ? ops->wait_room(call, fn, arg) : 0;
}

int rpc_call_finish_status(struct rpc_call *call, enum grpc_code code, const char *message)
{
	return rpc_ops(call)->finish_status(call, code, message);
}

int rpc_call_finish(struct rpc_call *call, int err)
{
	return rpc_call_finish_status(call, kv_err_grpc_code(err), kv_err_message(err));
}
