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

#include <stdint.h>
#include <raft.h>

struct server;

int fsm_init(struct raft_fsm *fsm, struct server *srv);
void fsm_close(struct raft_fsm *fsm);
/* Raft index of the entry being (or last) applied: raft_last_applied() + 1
 * during apply, since libraft 0.22.1 does not pass the index to the fsm. */
uint64_t fsm_applied_index(const struct raft_fsm *fsm);

#endif
