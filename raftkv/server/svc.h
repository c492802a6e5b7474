/*
 * svc: the gRPC services (svc_kv.c, svc_maint.c).  Each handler decodes the
 * request in a per-call arena, validates it as etcd's API layer does, and
 * either answers from the local store (serializable reads, status), waits
 * for a raft barrier (linearizable reads) or proposes the request through
 * prop (writes).  rpc.c maps gRPC paths to these handlers.
 */
#ifndef RAFTKV_SVC_H
#define RAFTKV_SVC_H

#include <stdint.h>

#include "server/rpc.h"
#include "rpc.pb-c.h"

struct server;

/* Every etcd response starts with its header right after the base. */
struct svc_response {
	ProtobufCMessage base;
	Etcdserverpb__ResponseHeader *header;
};

/* Fills cluster_id, member_id and raft_term (revision is the store's). */
void svc_header_fill(struct server *s, Etcdserverpb__ResponseHeader *h);
/* /health: 1 when this member has a leader and no alarm is raised. */
int svc_health(struct server *s);

/* KV */
void svc_kv_range(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_kv_put(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_kv_delete_range(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_kv_txn(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_kv_compact(struct rpc_call *call, const uint8_t *msg, size_t len);

/* Maintenance and Cluster */
void svc_maint_status(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_maint_hash(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_maint_hash_kv(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_maint_alarm(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_maint_defragment(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_maint_move_leader(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_cluster_member_list(struct rpc_call *call, const uint8_t *msg, size_t len);

#endif
