/*
 * fsm: raftkv's libraft state machine (fsm v2: snapshot + snapshot_finalize).
 *
 * apply decodes an entry (cmd.h), runs each command through kvs against the
 * mvcc store, and reports every command's result through a hook (the server
 * hands its own commands' results to prop).  It works on a small context
 * (struct fsm_ctx), not on the server, so that tests/sim can run it over
 * libraft's in-memory fixture.
 * snapshot encodes the mvcc state and compresses it with lz4 (libraft 0.22.1
 * no longer compresses); restore verifies and decodes it, refusing a corrupt
 * or unknown-version snapshot with a clear error rather than starting empty.
 */
#ifndef RAFTKV_FSM_H
#define RAFTKV_FSM_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include <raft.h>

struct alarm_table;
struct cmd;
struct kvs;
struct lease_table;
struct members;
struct mvcc;

/* How the fsm reports to its owner.  Any of them may be NULL (not called). */
struct fsm_hooks {
	/* raft_last_applied() of the raft instance this fsm belongs to. */
	uint64_t (*last_applied)(void *arg);
	/* A monotonic clock in µs: lease deadlines on a primary lease table,
	 * and the timings in log lines. */
	uint64_t (*now_us)(void *arg);
	/* Every applied command, whoever proposed it, with its result (resp
	 * only when err == 0; both valid during the call only).  The server
	 * completes its own proposals here (c->origin == its member id). */
	void (*applied)(void *arg, const struct cmd *c, int err, const ProtobufCMessage *resp);
	/* Bytes of each applied entry, and the size of every store image
	 * taken or restored (node's early-snapshot accounting). */
	void (*note_applied)(void *arg, size_t entry_bytes);
	void (*note_snapshot)(void *arg, size_t image_bytes);
	/* Whether the restore running now installs a snapshot sent by the
	 * leader (true once raft runs: at start-up restore reads our own), and
	 * from whom at which index, for the log. */
	bool (*installed)(void *arg, uint64_t *leader, uint64_t *index);
};

/* What the fsm reads and changes: the replicated state of one member, held
 * by its owner.  The server points it at its own fields (main.c), the
 * restore tool at a scratch server, and the deterministic simulator
 * (tests/sim) at one plain set per simulated member: the fsm needs neither
 * struct server nor libuv. */
struct fsm_ctx {
	struct mvcc **mvcc;          /* the store; restore swaps in a new one */
	struct kvs *kvs;             /* kvs->mvcc follows *mvcc */
	struct lease_table **leases; /* *leases NULL: lease commands fail */
	struct alarm_table *alarms;
	struct members *members;
	const char *data_dir;        /* in messages only; may be NULL */
	const struct fsm_hooks *hooks; /* may be NULL */
	void *arg;                   /* passed to the hooks */
};

/* Copies ctx (the state it points to must outlive the fsm). */
int fsm_init(struct raft_fsm *fsm, const struct fsm_ctx *ctx);
void fsm_close(struct raft_fsm *fsm);
/* Raft index of the entry being (or last) applied: raft_last_applied() + 1
 * during apply, since libraft 0.22.1 does not pass the index to the fsm. */
uint64_t fsm_applied_index(const struct raft_fsm *fsm);

/* The snapshot image of ctx's state right now, exactly the bytes a raft
 * snapshot holds (our header, then one LZ4 frame of the store, lease and
 * alarm sections): Maintenance/Snapshot streams it and raftkv-restore
 * installs it.  *data is raft_malloc'd (raft_free it).  Runs on the loop;
 * 0, -KV_ENOMEM or -KV_EINTERNAL. */
int fsm_image(const struct fsm_ctx *ctx, uint8_t **data, size_t *len);

#endif
