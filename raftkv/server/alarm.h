/*
 * alarm: etcd's alarms (NOSPACE, CORRUPT) and the backend space quota.
 *
 * The alarm table is replicated state: it changes only when the fsm applies
 * a CMD_ALARM entry (alarm_apply), travels in raft snapshots
 * (alarm_table_encode/decode, called by fsm.c) and is therefore the same on
 * every member, as etcd's alarm bucket is.  Three things read it:
 *   - the fsm, before applying each command (alarm_gate): with NOSPACE
 *     raised, writes that would grow the store fail with "etcdserver: mvcc:
 *     database space exceeded" (etcd's applierV3Capped: Put, Txn with a Put,
 *     LeaseGrant), while deletes, compaction and lease revokes go through so
 *     that space can be freed; with CORRUPT raised every write fails (etcd's
 *     applierV3Corrupt).  Being applied, the rejection is the same on every
 *     member;
 *   - Maintenance/Alarm GET and Status.errors, and /health (false while any
 *     alarm is raised, as etcd 3.4);
 *   - the quota check (alarm_quota_check), made where a write enters this
 *     member, before it is proposed: etcd's quotaKVServer/quotaLeaseServer.
 *     When the store size plus the request's cost would reach
 *     --quota-backend-bytes, the request fails with the same error and this
 *     member proposes (through raft) the NOSPACE alarm in its own name.
 *
 * Sizes are mvcc_bytes() (the store's logical size, which also shrinks on
 * compaction) instead of etcd's bbolt file size; costs are etcd's (quota.go):
 * 256 + key + value per put, 64 per lease grant.
 */
#ifndef RAFTKV_ALARM_H
#define RAFTKV_ALARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/arena.h"
#include "server/cmd.h"
#include "server/prop.h"
#include "rpc.pb-c.h"

struct server;
struct config;

struct alarm_member {
	uint64_t member_id;
	uint32_t type; /* Etcdserverpb__AlarmType: NOSPACE or CORRUPT */
};

/* Embedded in struct server; all zeroes is an empty table. */
struct alarm_table {
	struct alarm_member *v; /* sorted by (type, member_id), no duplicates */
	size_t n, cap;
	/* Not replicated: activations of ours in flight (to log once). */
	unsigned raising;
};

void alarm_table_close(struct alarm_table *t);

/* Whether an alarm of this type is raised (ETCDSERVERPB__ALARM_TYPE__NONE:
 * any alarm at all). */
bool alarm_active(const struct alarm_table *t, uint32_t type);

/* --- replicated state, changed at apply time ------------------------------ */

/* Applies a CMD_ALARM request as etcd's applier does: ACTIVATE adds
 * (member, alarm) and answers it (also when it was raised already);
 * DEACTIVATE removes it and answers it, or answers nothing when it was not
 * raised; GET lists the alarms of a type (NONE: all).  out has no header,
 * as in etcd 3.4.  Pointers in out live in a.  0 or -KV_ENOMEM (fatal at
 * apply time, like any out-of-memory there). */
int alarm_apply(struct alarm_table *t, const Etcdserverpb__AlarmRequest *r, struct arena *a,
		Etcdserverpb__AlarmResponse *out);
/* GET from the local table (Maintenance/Alarm and Status). */
int alarm_list(const struct alarm_table *t, uint32_t type, struct arena *a,
	       Etcdserverpb__AlarmResponse *out);

/* The applier gate for one command about to be applied: 0 (apply it),
 * -KV_ENOSPACE or -KV_ECORRUPT.  Deterministic: it depends only on the
 * table and the command. */
int alarm_gate(const struct alarm_table *t, const struct cmd *c);

/* Snapshot section: count u32 LE | count x (member u64 LE, type u32 LE).
 * encode: malloc'd image (free()).  decode: replaces t's alarms only when
 * the image is whole; -KV_ECORRUPT (malformed) or -KV_ENOMEM otherwise. */
int alarm_table_encode(const struct alarm_table *t, uint8_t **data, size_t *len);
int alarm_table_decode(struct alarm_table *t, const uint8_t *data, size_t len);

/* etcd's proto text of an alarm, as Status.errors lists it:
 * "memberID:<decimal> alarm:NOSPACE " (with the trailing space). */
void alarm_describe(const struct alarm_member *m, char *buf, size_t size);

/* --- the quota --------------------------------------------------------------- */

/* --quota-backend-bytes as etcd reads it: 0 is the 2 GiB default, a
 * negative value turns the quota off (INT64_MAX). */
int64_t alarm_quota_bytes(const struct config *cfg);

/* etcd's quota check for a write about to be proposed (type CMD_PUT,
 * CMD_TXN or CMD_LEASE_GRANT; other types cost nothing).  Returns
 *   0             the store size plus the request's cost stays below the
 *                 quota (a payload that does not decode passes: the
 *                 service reports it);
 *   1             it does not, and this member's NOSPACE alarm is being
 *                 proposed: cb(arg, ...) runs once, when that proposal is
 *                 applied or failed, and the request then fails with
 *                 -KV_ENOSPACE (etcd's quotaAlarmer answers only after its
 *                 Alarm request returned, so the alarm is listed by then);
 *   -KV_ENOSPACE  it does not and the alarm is raised already, or cannot be
 *                 proposed: fail the request now; cb never runs. */
int alarm_quota_check(struct server *s, enum cmd_type type, const uint8_t *payload, size_t len,
		      prop_done_cb cb, void *arg);

#endif
