/*
 * svc: the gRPC services (svc_kv.c, svc_maint.c).  Each handler decodes the
 * request in a per-call arena, validates it as etcd's API layer does, and
 * either answers from the local store (serializable reads, status), waits
 * for a raft barrier (linearizable reads) or proposes the request through
 * prop (writes).  rpc.c maps gRPC paths to these handlers.
 */
#ifndef RAFTKV_SVC_H
#define RAFTKV_SVC_H

#include <stdbool.h>
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
/* When this member cannot persist and another voter can serve its clients
 * (node_storage_refuse): finishes call with "etcdserver: storage failure"
 * (UNAVAILABLE, so that clients try another member) and returns true.  The
 * KV, Lease and Watch handlers ask first; Maintenance and Cluster calls are
 * still served (status, hashes, member list: what an operator needs). */
bool svc_unfit(struct rpc_call *call);

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
/* Server stream: the fsm image in chunks, then its SHA-256 (svc_maint.c). */
void svc_maint_snapshot(struct rpc_call *call, const uint8_t *msg, size_t len);
/* The space quota in front of KV/Put, KV/Txn and Lease/LeaseGrant (etcd's
 * quotaKVServer/quotaLeaseServer): -KV_ENOSPACE over the quota, else the
 * wrapped handler. */
void svc_quota_put(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_quota_txn(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_quota_lease_grant(struct rpc_call *call, const uint8_t *msg, size_t len);

/* Cluster (svc_cluster.c): the member table and libraft's configuration.
 * svc_cluster_init empties srv->members (before fsm and node: a snapshot
 * restore fills it); svc_cluster_start arms the timer that reconciles
 * raft's configuration, publishes and watches the table (after
 * node_start); svc_cluster_stop closes it (shutdown); svc_cluster_free
 * frees everything once the loop has ended.  0 or -KV_ENOMEM. */
int svc_cluster_init(struct server *s);
int svc_cluster_start(struct server *s);
void svc_cluster_stop(struct server *s);
void svc_cluster_free(struct server *s);
void svc_cluster_member_list(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_cluster_member_add(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_cluster_member_remove(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_cluster_member_update(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_cluster_member_promote(struct rpc_call *call, const uint8_t *msg, size_t len);
/* Not etcd's: "/raftkv.Internal/MemberPublish" (an etcdserverpb.Member with
 * ID, name, clientURLs): a follower asks the leader to publish it (see
 * svc_cluster.c); a follower receiving it relays it to the leader. */
void svc_cluster_member_publish(struct rpc_call *call, const uint8_t *msg, size_t len);

/* Watch (svc_watch.c): a bidi stream over the server's watch hub. */
void svc_watch_on_message(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_watch_on_half_close(struct rpc_call *call);
void svc_watch_on_close(struct rpc_call *call);

/* Lease (svc_lease.c).  svc_lease_init makes srv->leases and hooks it into
 * kvs (before fsm and node: a snapshot restore fills it); svc_lease_start
 * arms the leader's expiry timer (after node_start); svc_lease_stop closes
 * the timer (shutdown); svc_lease_free frees everything once the loop has
 * ended.  0 or -KV_ENOMEM. */
int svc_lease_init(struct server *s);
int svc_lease_start(struct server *s);
void svc_lease_stop(struct server *s);
void svc_lease_free(struct server *s);
void svc_lease_grant(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_lease_revoke(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_lease_keep_alive(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_lease_keep_alive_half_close(struct rpc_call *call);
/* forward.c: a renewal relayed to the leader starts / got its answer. */
void svc_lease_keep_alive_relay_begin(struct rpc_call *call);
void svc_lease_keep_alive_relay_end(struct rpc_call *call);
void svc_lease_time_to_live(struct rpc_call *call, const uint8_t *msg, size_t len);
void svc_lease_leases(struct rpc_call *call, const uint8_t *msg, size_t len);

#endif
