/*
 * fsm: raftkv's libraft state machine (fsm v2: snapshot + snapshot_finalize).
 *
 * apply decodes an entry (cmd.h), runs each command through kvs against the
 * mvcc store, and hands results of this member's own commands to prop.
 * snapshot encodes the mvcc state and compresses it with lz4 (libraft 0.22.1
 * no longer compresses); restore verifies and decodes it, refusing a corrupt
 * or unknown-version snapshot with a clear error rather than starting empty.
 */
#ifndef RAFTKV_FSM_H
#define RAFTKV_FSM_H

#include <stddef.h>
#include <stdint.h>
#include <raft.h>

struct server;

int fsm_init(struct raft_fsm *fsm, struct server *srv);
void fsm_close(struct raft_fsm *fsm);
/* Raft index of the entry being (or last) applied: raft_last_applied() + 1
 * during apply, since libraft 0.22.1 does not pass the index to the fsm. */
uint64_t fsm_applied_index(const struct raft_fsm *fsm);

/* The snapshot image of srv's state right now, exactly the bytes a raft
 * snapshot holds (our header, then one LZ4 frame of the store, lease and
 * alarm sections): Maintenance/Snapshot streams it and raftkv-restore
 * installs it.  *data is raft_malloc'd (raft_free it).  Runs on the loop;
 * 0, -KV_ENOMEM or -KV_EINTERNAL. */
int fsm_image(struct server *srv, uint8_t **data, size_t *len);

#endif
