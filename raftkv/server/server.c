/*
 * server: the wiring of a member's parts that main.c and the in-process
 * fuzz harness (tests/fuzz/fz.c) share: the fsm's view of the server.  The
 * fsm (fsm.h) never sees struct server; these hooks give it what it needs
 * (raft's applied index, a clock, the results of our own proposals, node's
 * snapshot accounting, whether a restore is an install from the leader).
 */
#include "server/server.h"

#include <uv.h>

#include "server/fsm.h"
#include "server/node.h"
#include "server/prop.h"

static uint64_t server_fsm_last_applied(void *arg)
{
	struct server *srv = arg;
	return raft_last_applied(&srv->node.raft);
}

static uint64_t server_fsm_now_us(void *arg)
{
	(void)arg;
	return uv_hrtime() / 1000;
}

/* Our own proposals' results go to the calls waiting in prop. */
static void server_fsm_applied(void *arg, const struct cmd *c, int err, const ProtobufCMessage *resp)
{
	struct server *srv = arg;
	if (c->origin == srv->member_id)
		prop_complete(&srv->prop, c->seq, err, resp);
}

static void server_fsm_note_applied(void *arg, size_t entry_bytes)
{
	struct server *srv = arg;
	node_note_applied(&srv->node, entry_bytes);
}

static void server_fsm_note_snapshot(void *arg, size_t image_bytes)
{
	struct server *srv = arg;
	node_note_snapshot(&srv->node, image_bytes);
}

/* libraft restores at start-up (our own snapshot) and, once running, only
 * for an InstallSnapshot, when the commit index reaches the installed one. */
static bool server_fsm_installed(void *arg, uint64_t *leader, uint64_t *index)
{
	struct server *srv = arg;

	if (!srv->node.started)
		return false;
	*leader = node_leader(&srv->node);
	*index = node_commit_index(&srv->node);
	return true;
}

static const struct fsm_hooks server_fsm_hooks = {
	.last_applied = server_fsm_last_applied,
	.now_us = server_fsm_now_us,
	.applied = server_fsm_applied,
	.note_applied = server_fsm_note_applied,
	.note_snapshot = server_fsm_note_snapshot,
	.installed = server_fsm_installed,
};

int server_fsm_init(struct server *srv, struct raft_fsm *fsm)
{
	srv->fsm_ctx = (struct fsm_ctx){
		.mvcc = &srv->mvcc,
		.kvs = &srv->kvs,
		.leases = &srv->leases,
		.alarms = &srv->alarms,
		.members = &srv->members,
		.data_dir = srv->cfg->data_dir,
		.hooks = &server_fsm_hooks,
		.arg = srv,
	};
	return fsm_init(fsm, &srv->fsm_ctx);
}
