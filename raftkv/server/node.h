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
struct config;

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

/* The member and cluster ids, etcd's way (sha1 of the sorted peer URLs +
 * --initial-cluster-token; cluster id = sha1 of the sorted member ids), so
 * they match what etcd would print for the same flags.  When the data dir
 * already has an identity file, its ids win and the flags must agree with
 * them (a data dir of another cluster is refused).  Reads only; call it
 * before the listeners start.  0 or -KV_E* after logging the reason. */
int node_identity(const struct config *cfg, uint64_t *cluster_id, uint64_t *member_id);

/* The raft configuration a new cluster starts with: every --initial-cluster
 * member a voter, with the member id node_identity derives and its first
 * peer URL as raft address.  Used by the bootstrap and by raftkv-restore,
 * so both write the same one.  0 with conf to raft_configuration_close(),
 * or -KV_E* after logging the reason. */
int node_initial_configuration(const struct config *cfg, struct raft_configuration *conf);

/* Creates the data dir (0700) and records the identity in it (fills
 * srv->cluster_id/member_id first if still 0), then sets libraft up. */
int node_init(struct node *n, struct server *srv, struct raft_fsm *fsm);
/* Bootstraps when the data dir is new, then starts raft. */
int node_start(struct node *n);
/* Takes ownership of data (malloc'd), also on failure.  On 0 the callback
 * runs once, later: after the entry was applied (err 0), or when it failed.
 * On an error return the callback never runs.
 * libraft's uv backend refuses entries whose length is not a multiple of 8
 * (and frees them on the way), so the entry is padded (cmd_entry_pad); the
 * fsm strips it with cmd_entry_len(). */
int node_apply(struct node *n, void *data, size_t len, node_apply_cb cb, void *arg);
int node_barrier(struct node *n, node_barrier_cb cb, void *arg);
void node_close(struct node *n, node_close_cb cb);

bool node_is_leader(const struct node *n);
uint64_t node_leader(const struct node *n); /* 0 when none known */
uint64_t node_term(const struct node *n);
uint64_t node_commit_index(const struct node *n);
uint64_t node_applied_index(const struct node *n);
uint64_t node_last_index(const struct node *n);
/* fsm -> node: bytes of each applied entry, and the size of every store
 * image taken or restored.  Node asks libraft for an early snapshot once the
 * log since the last one outweighs the state (libraft counts only entries,
 * and it keeps them all in memory). */
void node_note_applied(struct node *n, size_t entry_bytes);
void node_note_snapshot(struct node *n, size_t image_bytes);
/* First proposal sequence number of this process: the data dir's boot
 * counter in the high bits, so a command replayed from an earlier run is
 * never mistaken for one of ours (see prop.c). */
uint64_t node_seq_base(const struct node *n);
/* 0 while this member can persist raft entries; -KV_ENOSPACE when the log
 * cannot grow (disk full) or -KV_EIO when accepted entries stopped being
 * written: /health is false and prop refuses requests meanwhile; a leader
 * hands leadership to another voter and a follower does not campaign. */
int node_storage_error(const struct node *n);
/* -KV_EIO when this member cannot persist and another voter can serve its
 * clients instead (they should go there, as from an etcd member that died
 * of a full disk); 0 otherwise, also for a lone voter, which keeps serving
 * reads. */
int node_storage_refuse(const struct node *n);
/* When node_storage_error: a short reason for /health and Status ("disk
 * full: ..."), without the data dir's path; returns the error, or 0 and
 * leaves buf alone. */
int node_storage_reason(const struct node *n, char *buf, size_t len);

/* --- membership (leader only; svc_cluster.c drives them) -----------------
 * One libraft configuration change at a time: while one is in flight the
 * next returns -KV_ETOOMANYREQUESTS (libraft's RAFT_CANTCHANGE).  On 0 the
 * callback runs once, when the new configuration is committed (err 0) or
 * the change failed; never on an error return.  add makes id a spare (no
 * log, no vote) at the raft address of peer_url; assign gives it
 * RAFT_STANDBY (replicates, no vote: an etcd learner) or RAFT_VOTER (libraft
 * first lets it catch up); a leader that removes itself steps down once the
 * change commits. */
typedef void (*node_change_cb)(void *arg, int err);
int node_change_add(struct node *n, uint64_t id, const char *peer_url, node_change_cb cb,
		    void *arg);
int node_change_assign(struct node *n, uint64_t id, int role, node_change_cb cb, void *arg);
int node_change_remove(struct node *n, uint64_t id, node_change_cb cb, void *arg);

/* MoveLeader: hands leadership to voter target, retrying a transfer that
 * libraft lets time out.  -KV_ENOTLEADER when not leader,
 * -KV_EBADTRANSFEREE when target is not a voter; otherwise cb runs once
 * with 0 when target leads, or an error. */
typedef void (*node_move_cb)(void *arg, int err);
int node_move_leader(struct node *n, uint64_t target, node_move_cb cb, void *arg);
/* The latest configuration this member knows (on a leader: the last one it
 * appended, committed or not).  Valid until the next loop turn. */
const struct raft_configuration *node_configuration(const struct node *n);
/* host:port of a peer URL, as libraft addresses members.  0 or -KV_EINVAL. */
int node_peer_addr(const char *peer_url, char *out, size_t outlen);
/* Leader only: the highest log index known to be replicated on id; 0 when
 * unknown. */
uint64_t node_match_index(const struct node *n, uint64_t id);
/* Since when (loop time, ms) this member's raft connection to peer id has
 * been up; 0 while it is down or was never made.  libraft connects only to
 * the peers it sends to: on a leader, every member of its configuration. */
uint64_t node_peer_up_since(const struct node *n, uint64_t id);
/* A member that joined (--initial-cluster-state existing) learns the
 * cluster id from the replicated member table: this records it in the
 * identity file (written off the loop). */
void node_learn_cluster_id(struct node *n, uint64_t cluster_id);

#endif
