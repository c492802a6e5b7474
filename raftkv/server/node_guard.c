/*
 * node_guard: see node_guard.h.  Every callback runs on the loop thread,
 * like libraft's own, so the state needs no locking.
 */
#include "server/node_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

/* There is one raft_io per member and libraft gives its callbacks only the
 * io; the guards are found by it in this short list. */
#define NODE_GUARD_MAX 8
static struct node_guard *node_guards[NODE_GUARD_MAX];

static struct node_guard *node_guard_of(const struct raft_io *io)
{
	int i;

	for (i = 0; i < NODE_GUARD_MAX; i++)
		if (node_guards[i] && node_guards[i]->io == io)
			return node_guards[i];
	return NULL;
}

static void node_guard_drop(struct raft_message *m)
{
	raft_configuration_close(&m->install_snapshot.conf);
	raft_free(m->install_snapshot.data.base);
	m->install_snapshot.data.base = NULL;
}

/* Whether libraft 0.22.1 will drop msg without freeing it: a follower
 * already persisting an install ignores one of the same term
 * (replicationInstallSnapshot returns early; recvInstallSnapshot frees
 * nothing).  Read from raft's public fields; io->data is the raft. */
static bool node_guard_ignored(const struct raft *r, const struct raft_message *msg)
{
	return r && r->state == RAFT_FOLLOWER && r->snapshot.installing &&
	       msg->install_snapshot.term == r->current_term;
}

static void node_guard_release(struct node_guard *g)
{
	struct raft_message m;

	if (!g->held)
		return;
	m = g->install;
	g->held = false;
	LOGI("raft: handing over the snapshot at index %llu from %016llx, held during our own "
	     "snapshot",
	     (unsigned long long)m.install_snapshot.last_index, (unsigned long long)m.server_id);
	g->recv(g->io, &m);
	free(g->install_address);
	g->install_address = NULL;
}

static void node_guard_recv(struct raft_io *io, struct raft_message *msg)
{
	struct node_guard *g = node_guard_of(io);

	if (!g)
		return; /* cannot happen: start installed us */
	if (msg->type == RAFT_INSTALL_SNAPSHOT && node_guard_ignored(io->data, msg)) {
		/* libraft ignores a copy that comes while it persists another
		 * (a leader sends one per heartbeat we reject) and frees neither
		 * its data nor its configuration: with a large store each copy
		 * leaked a store-sized buffer.  It still takes the message for its
		 * leader and election-timer bookkeeping; we free what it left. */
		struct raft_buffer data = msg->install_snapshot.data;
		struct raft_configuration conf = msg->install_snapshot.conf;

		g->recv(io, msg);
		raft_configuration_close(&conf);
		raft_free(data.base);
		g->ignored_total++;
		return;
	}
	if (msg->type != RAFT_INSTALL_SNAPSHOT || !g->taking) {
		g->recv(io, msg);
		return;
	}
	if (g->held) /* a newer one supersedes it, as a resend would */
		node_guard_drop(&g->install);
	free(g->install_address);
	g->install_address = msg->server_address ? strdup(msg->server_address) : NULL;
	if (msg->server_address && !g->install_address) {
		/* out of memory: lose it, as the network may; the leader resends */
		node_guard_drop(msg);
		return;
	}
	g->install = *msg;
	g->install.server_address = g->install_address;
	g->held = true;
	g->held_total++;
	LOGI("raft: holding the snapshot at index %llu from %016llx until our own snapshot is "
	     "written",
	     (unsigned long long)msg->install_snapshot.last_index, (unsigned long long)msg->server_id);
}

static int node_guard_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
			    raft_io_recv_cb recv)
{
	struct node_guard *g = node_guard_of(io);

	g->recv = recv;
	return g->start(io, msecs, tick, node_guard_recv);
}

static void node_guard_take_done(struct raft_io_snapshot_put *req, int status)
{
	struct node_guard *g = NULL;
	raft_io_snapshot_put_cb cb;
	int i;

	/* The io is not passed: find the guard by its request. */
	for (i = 0; i < NODE_GUARD_MAX; i++)
		if (node_guards[i] && node_guards[i]->taking && node_guards[i]->take_req == req) {
			g = node_guards[i];
			break;
		}
	if (!g)
		return;
	cb = g->take_cb;
	g->take_cb = NULL;
	g->take_req = NULL;
	g->taking = false;
	cb(req, status);
	/* libraft is done with its take: the install goes in as if it had just
	 * arrived (when raft is closing its recv frees it). */
	node_guard_release(g);
}

static int node_guard_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
				   const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	struct node_guard *g = node_guard_of(io);
	int rv;

	if (trailing == 0) /* an install being persisted: not ours to guard */
		return g->snapshot_put(io, trailing, req, snapshot, cb);
	g->take_cb = cb;
	g->take_req = req;
	g->taking = true;
	rv = g->snapshot_put(io, trailing, req, snapshot, node_guard_take_done);
	if (rv) {
		g->take_cb = NULL;
		g->take_req = NULL;
		g->taking = false;
	}
	return rv;
}

static void node_guard_exit(struct node_guard *g, const char *what, int rv)
{
	LOGE("raft: cannot persist the %s (%s: %s): exiting, so that this member never acts on "
	     "a term or vote it would forget on restart; the data dir keeps the last one written",
	     what, raft_strerror(rv), g->io->errmsg);
	fflush(NULL);
	/* Not exit(): the loop's threads may be mid-write; nothing more may run. */
	_exit(EXIT_FAILURE);
}

static int node_guard_set_term(struct raft_io *io, raft_term term)
{
	struct node_guard *g = node_guard_of(io);
	int rv = g->set_term(io, term);

	if (rv)
		g->state_lost(g, "term", rv);
	return rv;
}

static int node_guard_set_vote(struct raft_io *io, raft_id server_id)
{
	struct node_guard *g = node_guard_of(io);
	int rv = g->set_vote(io, server_id);

	if (rv)
		g->state_lost(g, "vote", rv);
	return rv;
}

void node_guard_init(struct node_guard *g, struct raft_io *io)
{
	int i;

	memset(g, 0, sizeof(*g));
	g->io = io;
	g->start = io->start;
	g->snapshot_put = io->snapshot_put;
	g->set_term = io->set_term;
	g->set_vote = io->set_vote;
	g->state_lost = node_guard_exit;
	io->start = node_guard_start;
	io->snapshot_put = node_guard_snapshot_put;
	io->set_term = node_guard_set_term;
	io->set_vote = node_guard_set_vote;
	for (i = 0; i < NODE_GUARD_MAX; i++)
		if (!node_guards[i]) {
			node_guards[i] = g;
			return;
		}
	/* More members in one process than slots: unguarded, as before. */
	io->start = g->start;
	io->snapshot_put = g->snapshot_put;
	io->set_term = g->set_term;
	io->set_vote = g->set_vote;
	LOGW("raft: more than %d members in one process: InstallSnapshot guard off", NODE_GUARD_MAX);
}

void node_guard_close(struct node_guard *g)
{
	int i;

	if (g->held) {
		node_guard_drop(&g->install);
		g->held = false;
	}
	free(g->install_address);
	g->install_address = NULL;
	for (i = 0; i < NODE_GUARD_MAX; i++)
		if (node_guards[i] == g)
			node_guards[i] = NULL;
}
