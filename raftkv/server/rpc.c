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
	UNARY("/etcdserverpb.KV/Put", svc_kv_put),
	UNARY("/etcdserverpb.KV/DeleteRange", svc_kv_delete_range),
	UNARY("/etcdserverpb.KV/Txn", svc_kv_txn),
	UNARY("/etcdserverpb.KV/Compact", svc_kv_compact),
	UNARY("/etcdserverpb.Maintenance/Status", svc_maint_status),
	UNARY("/etcdserverpb.Maintenance/Hash", svc_maint_hash),
	UNARY("/etcdserverpb.Maintenance/HashKV", svc_maint_hash_kv),
	UNARY("/etcdserverpb.Maintenance/Alarm", svc_maint_alarm),
	UNARY("/etcdserverpb.Maintenance/Defragment", svc_maint_defragment),
	UNARY("/etcdserverpb.Maintenance/MoveLeader", svc_maint_move_leader),
	UNARY("/etcdserverpb.Cluster/MemberList", svc_cluster_member_list),
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
