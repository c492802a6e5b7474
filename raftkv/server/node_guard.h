/*
 * node_guard: shields libraft 0.22.1 from an InstallSnapshot that arrives
 * while this member writes a snapshot of its own.
 *
 * libraft's legacy layer parks such an install (snapshot_pending) and, when
 * its own snapshot is written, clears the pointer before reading it and
 * dereferences NULL (src/legacy.c, takeSnapshotCb; still at upstream HEAD).
 * We cannot patch the packaged library, so node.c wraps two methods of the
 * raft_io it hands to raft_init: snapshot_put (a put with trailing > 0 is a
 * snapshot being taken) and start (to see every received message).  While
 * a take is being written, an arriving InstallSnapshot is held here and
 * handed to libraft right after the take completes: to Raft that is a
 * message delayed on the network, which it tolerates by design.  libraft
 * never sees the install during the take, so it never parks it.
 *
 * It also frees the copies of an install that libraft ignores while it
 * persists another (it keeps neither their data nor their configuration).
 *
 * With the crash out of the way the trailing window behind snapshots can be
 * sized in bytes (node.c), so the in-memory log stays small.
 *
 * And it stops the member when its term or vote cannot be written
 * (set_term, set_vote: the uv backend writes them synchronously).  libraft
 * 0.22.1's legacy layer only returns such an error to its callers, which
 * ignore it, and goes on with a term or vote that is not on disk: after a
 * restart the member could vote a second time in a term.  etcd exits when
 * its WAL cannot be written; so do we (state_lost, default: exit 1), and
 * the data dir keeps the last term and vote that were written.
 */
#ifndef RAFTKV_NODE_GUARD_H
#define RAFTKV_NODE_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <raft.h>

struct node_guard {
	struct raft_io *io;
	raft_io_recv_cb recv;                /* libraft's, saved by start */
	int (*start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
	int (*snapshot_put)(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
			    const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb);
	int (*set_term)(struct raft_io *io, raft_term term);
	int (*set_vote)(struct raft_io *io, raft_id server_id);
	/* Called when a term or vote could not be persisted; must not return
	 * to libraft in production (tests replace it). */
	void (*state_lost)(struct node_guard *g, const char *what, int rv);
	raft_io_snapshot_put_cb take_cb;     /* libraft's, for the take in flight */
	struct raft_io_snapshot_put *take_req;
	bool taking;
	bool held;                           /* an install waits in `install` */
	struct raft_message install;
	char *install_address;               /* our copy: the sender's string
					      * may go with its connection */
	uint64_t held_total;                 /* installs held so far (logs, tests) */
	uint64_t ignored_total;              /* copies libraft ignored, freed by us */
};

/* Wraps io's start, snapshot_put, set_term and set_vote; call after raft_uv_init and before
 * raft_init.  g must stay at a fixed address until node_guard_close. */
void node_guard_init(struct node_guard *g, struct raft_io *io);
/* Frees an install still held (the take never completed: raft closed). */
void node_guard_close(struct node_guard *g);

#endif
