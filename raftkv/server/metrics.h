/*
 * metrics: the member's Prometheus exposition, served as GET /metrics on the
 * client port (http1.c) with etcd 3.4's metric names, types and HELP texts,
 * so etcd dashboards and alerts work unchanged.
 *
 * Two kinds of figures: counters that the data path bumps as it goes (the
 * process-wide `metrics` object below: one member per process, and a global
 * keeps the hot paths free of plumbing), and gauges read from the modules
 * when a scrape renders (raft state, store sizes, watchers, process stats).
 * Bumping is a plain increment on the loop thread; rendering (metrics_text.c)
 * allocates one text buffer per scrape.
 */
#ifndef RAFTKV_METRICS_H
#define RAFTKV_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct server;

/* grpc-go's status codes: 0 OK .. 16 UNAUTHENTICATED. */
#define METRICS_GRPC_CODES 17

struct metrics_grpc_method {
	uint64_t started;
	uint64_t msg_received;
	uint64_t msg_sent;
	uint64_t handled[METRICS_GRPC_CODES];
};

struct metrics {
	uint64_t grpc_received_bytes;
	uint64_t grpc_sent_bytes;
	uint64_t client_requests_unary;
	uint64_t client_requests_stream;
	uint64_t leader_changes;
	uint64_t proposals_failed;
	uint64_t read_indexes_failed;
	uint64_t health_success;
	uint64_t health_failures;
	uint64_t mvcc_put;
	uint64_t mvcc_delete;
	uint64_t mvcc_range;
	uint64_t mvcc_txn;
	uint64_t lease_granted;
	uint64_t lease_revoked;
	uint64_t lease_renewed;
	uint64_t lease_expired;
	uint64_t snapshots_saved;   /* raft snapshots this member took */
	uint64_t snapshots_restored; /* at start-up, or installed from the leader */
	uint64_t snapshot_apply_in_progress;
	struct metrics_grpc_method *grpc; /* one per rpc_method_count() */
};

extern struct metrics metrics;
extern size_t metrics_n_methods;

/* Allocates the per-method table for n methods (rpc_method_count());
 * 0 or -KV_ENOMEM.  Without it (tools, tests) the per-method hooks do
 * nothing and the plain counters still count. */
int metrics_init(size_t n);
void metrics_close(void);

/* Per-method gRPC counters, as go-grpc-prometheus counts them; m is the
 * method's rpc_method_index(). */
void metrics_grpc_started(size_t m, bool streaming);
void metrics_grpc_msg_received(size_t m);
void metrics_grpc_msg_sent(size_t m);
void metrics_grpc_handled(size_t m, enum grpc_code code);

/* metrics_text.c: the text exposition (format 0.0.4) of srv; *out is
 * malloc'ed, the caller frees it.  0 or -KV_ENOMEM. */
int metrics_render(struct server *srv, char **out, size_t *len);

#endif
