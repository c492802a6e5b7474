/*
 * prop: proposals in flight and linearizable reads.
 *
 * Writes: prop_submit() queues a command; once per loop iteration (uv_check)
 * all queued commands become ONE raft entry (cmd.h) and one node_apply().
 * When the fsm applies a command whose origin is this member, it calls
 * prop_complete() with the result; the waiting callback gets the response
 * while it is still valid (it must pack or copy it before returning).  If the
 * entry fails (leadership lost, shutdown), every command of it still waiting
 * gets KV_ELEADERCHANGED / KV_ESTOPPED / KV_ENOLEADER.
 *
 * Reads: prop_read() queues a linearizable read; all reads queued in one loop
 * iteration wait behind one raft barrier, then their callbacks run.
 */
#ifndef RAFTKV_PROP_H
#define RAFTKV_PROP_H

#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "server/cmd.h"

struct server;

/* resp is valid only during the callback; NULL when err != 0. */
typedef void (*prop_done_cb)(void *arg, int err, const ProtobufCMessage *resp);
typedef void (*prop_read_cb)(void *arg, int err);

struct prop {
	struct server *srv;
	uv_check_t flush;
	uint64_t next_seq;
	struct cmd_batch batch;            /* commands not yet handed to raft */
	void *impl;                        /* private state of prop.c: the waiting
					    * writes (a ring by seq) and reads */
};

int prop_init(struct prop *p, struct server *srv);
void prop_close(struct prop *p);

/* Copies payload.  0 or -KV_E*: -KV_ENOLEADER when this member is not the
 * leader (no forwarding yet), -KV_EREQUESTTOOLARGE above
 * --max-request-bytes, -KV_ESTOPPED once stopping.  On 0 the callback runs
 * exactly once, never from inside this prop_submit call (which may run
 * other calls' callbacks when it flushes a full batch); on an error never. */
int prop_submit(struct prop *p, enum cmd_type type, const uint8_t *payload, size_t len,
		prop_done_cb cb, void *arg);
/* Same contract for the callback; -KV_ENOLEADER when not the leader. */
int prop_read(struct prop *p, prop_read_cb cb, void *arg);

/* Called by the fsm for each applied command of this member. */
void prop_complete(struct prop *p, uint64_t seq, int err, const ProtobufCMessage *resp);
/* Writes waiting for their entry to be applied. */
uint64_t prop_pending(const struct prop *p);
/* Fail everything waiting (shutdown): err for every callback. */
void prop_fail_all(struct prop *p, int err);

#endif
