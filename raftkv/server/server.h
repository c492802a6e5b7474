/*
 * server: the one object that ties a raftkv member together.
 *
 * Data path (all on one libuv loop):
 *   listener ─► grpc (nghttp2) / http1 ─► rpc method table ─► svc_* handlers
 *   write: svc ─► prop (batch into one entry) ─► node (libraft) ─► fsm apply
 *          ─► kvs/mvcc ─► prop completes the waiting call ─► response
 *   linearizable read: svc ─► prop_read (one raft barrier for many reads)
 *          ─► kvs_range ─► response
 * main.c owns a struct server and initialises the modules in this order:
 * config, mvcc, fsm, node, prop, listener.
 */
#ifndef RAFTKV_SERVER_H
#define RAFTKV_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/alarm.h"
#include "server/config.h"
#include "server/fsm.h"
#include "server/kvs.h"
#include "server/members.h"
#include "server/node.h"
#include "server/prop.h"

struct mvcc;
struct listener;
struct watch_hub;
struct lease_table;
struct svc_lease;
struct svc_cluster;
struct forward;

#define RAFTKV_VERSION "0.1.0"
/* What we report as etcd's version: clients (and kube-apiserver) parse it. */
#define RAFTKV_ETCD_VERSION "3.4.23"
#define RAFTKV_ETCD_CLUSTER_VERSION "3.4.0"

struct server {
	uv_loop_t *loop;
	struct config *cfg;
	uint64_t cluster_id;
	uint64_t member_id; /* also our raft server id */
	struct mvcc *mvcc;
	struct kvs kvs; /* request semantics over mvcc */
	struct fsm_ctx fsm_ctx; /* what the fsm works on: fields of this struct */
	struct node node;
	struct prop prop;
	struct listener *listener;
	struct watch_hub *watch; /* watchers (watch.c), fed by mvcc's hooks */
	struct lease_table *leases;  /* leases (lease.c): replicated, changed by fsm */
	struct svc_lease *lease_svc; /* the leader's expiry timer (svc_lease.c) */
	struct alarm_table alarms;   /* replicated: NOSPACE/CORRUPT (alarm.c) */
	struct members members;      /* replicated: the member table (members.c) */
	struct svc_cluster *cluster_svc; /* membership reconciler, publish (svc_cluster.c) */
	struct forward *forward;     /* a follower's relay to the leader (forward.c) */
	bool stopping;
};

/* server.c: points srv->fsm_ctx at srv's fields with the server's hooks
 * and initialises fsm on it; 0 or a raft error code from fsm_init. */
int server_fsm_init(struct server *srv, struct raft_fsm *fsm);

#endif
