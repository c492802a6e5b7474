/*
 * node: the only module that speaks to libraft (0.22.1, legacy v0 API).
 *
 * It owns struct raft, its uv I/O (data dir) and its TCP transport (peer
 * URL, even for one member, so a cluster only adds members), bootstraps a
 * new data dir from --initial-cluster, and exposes apply / barrier / state.
 * Rules from the libraft notes enforced here: exactly one buffer per
 * raft_apply, transport.version = 1, raised in-flight limit, generous
 * snapshot trailing, and the shutdown order (stop writes, wait for
 * callbacks, transfer leadership, close).
 */
#ifndef RAFTKV_NODE_H
#define RAFTKV_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

struct server;
struct node;

/* err is 0 or -KV_E* (raft errors are mapped: LEADERSHIPLOST →
 * KV_ELEADERCHANGED, NOTLEADER → KV_ENOLEADER, SHUTDOWN → KV_ESTOPPED). */
typedef void (*node_apply_cb)(void *arg, int err);
typedef void (*node_barrier_cb)(void *arg, int err);
typedef void (*node_close_cb)(struct node *n);

struct node {
	struct server *srv;
	struct raft raft;
	struct raft_io io;
	struct raft_uv_transport transport;
	struct raft_fsm *fsm;
	uv_timer_t tick; /* polls raft_state(): libraft 0.22.1 has no state callback */
	uint64_t leader_id;
	bool started;
	node_close_cb close_cb;
	void *impl;
};

int node_init(struct node *n, struct server *srv, struct raft_fsm *fsm);
/* Bootstraps when the data dir is new, then starts raft. */
int node_start(struct node *n);
/* Takes ownership of data (malloc'd).  The callback runs once: after the
 * entry was applied (err 0), or when it failed. */
int node_apply(struct node *n, void *data, size_t len, node_apply_cb cb, void *arg);
int node_barrier(struct node *n, node_barrier_cb cb, void *arg);
void node_close(struct node *n, node_close_cb cb);

bool node_is_leader(const struct node *n);
uint64_t node_leader(const struct node *n); /* 0 when none known */
uint64_t node_term(const struct node *n);
uint64_t node_commit_index(const struct node *n);
uint64_t node_applied_index(const struct node *n);
uint64_t node_last_index(const struct node *n);

#endif
