/*
 * lease: etcd's lessor (lease/lessor.go, 3.4), as a table that is pure and
 * deterministic: no sockets, no raft, no clock of its own (callers pass a
 * monotonic now in microseconds), so unit tests need nothing else.
 *
 * Two kinds of state live here:
 *  - replicated: each lease's ID and granted TTL, and the keys attached to
 *    it.  Grant and revoke change it only when the fsm applies a raft entry
 *    (lease_apply_grant, lease_apply_revoke); attach/detach follow the
 *    store's writes through kvs (lease_table_kvs_ops).  Every member holds
 *    the same leases; snapshots carry ID and TTL, and the keys are rebuilt
 *    from the store (each key records its lease), as etcd recovers them.
 *  - leader-only: expiry times.  Only the primary (the raft leader, once
 *    svc_lease promoted the table) tracks them, in a tree ordered by
 *    deadline, so the next expiry is found in O(log n).  A promoted table
 *    gives every lease its full TTL plus `extend` from now (etcd's Promote):
 *    no mass expiry after a failover or a restart.  A demoted table forgets
 *    all deadlines.  Expiry is only ever a proposal (svc_lease proposes
 *    CMD_LEASE_REVOKE); nothing is deleted here without a raft entry.
 *
 * Errors: 0 or a negative KV_E* code (lib/err.h).
 */
#ifndef RAFTKV_LEASE_H
#define RAFTKV_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/arena.h"
#include "rpc.pb-c.h"

struct mvcc;
struct kvs_lease_ops;
struct lease_table;

/* etcd's MaxLeaseTTL: a larger TTL is "etcdserver: too large lease TTL". */
#define LEASE_MAX_TTL 9000000000LL
/* How long an expired lease waits before its revoke is proposed again
 * (etcd's expiredLeaseRetryInterval). */
#define LEASE_RETRY_US 3000000u
/* A deadline that never comes: what every lease has on a non-primary. */
#define LEASE_FOREVER UINT64_MAX

/* NULL when out of memory. */
struct lease_table *lease_table_new(void);
void lease_table_free(struct lease_table *t);

/* Server-chosen IDs also depend on this (the cluster id, the same on every
 * member), so that two clusters do not hand out the same IDs. */
void lease_table_set_id_salt(struct lease_table *t, uint64_t cluster_id);

/* What kvs calls on every Put/DeleteRange (exists, attach, detach).  The
 * pointer stays valid for the table's life, across lease_table_restore. */
const struct kvs_lease_ops *lease_table_kvs_ops(struct lease_table *t);

/* etcd's minimum TTL for a heartbeat and an election timeout: with
 * electionTicks = election / heartbeat, ceil((3 * ticks / 2) * heartbeat),
 * in seconds (2 with the default 100 ms / 1000 ms). */
int64_t lease_min_ttl(unsigned heartbeat_ms, unsigned election_ms);

/* --- replicated state, changed at apply time ---------------------------- */

/*
 * Grants a lease.  id 0 asks for a server-chosen ID: derived from the raft
 * index of the entry (and the grant's rank in it) and the cluster's salt,
 * so it is the same on every member and never repeats during the cluster's
 * life; a clash with a client-chosen ID moves to the next free value.
 * origin (the proposing member) is not used today.  ttl is taken as
 * proposed (svc_lease raised it to the minimum beforehand), except that it
 * is at least 1.  On a primary table the lease expires at now + ttl.
 * Returns 0 with *out_id / *out_ttl set, -KV_ELEASETTLTOOLARGE,
 * -KV_ELEASEEXIST or -KV_ENOMEM.
 */
int lease_table_grant(struct lease_table *t, int64_t id, int64_t ttl, uint64_t origin,
		      uint64_t index, uint64_t now_us, int64_t *out_id, int64_t *out_ttl);
/* Revokes a lease: deletes its keys from m in ONE write transaction (one
 * revision; in key order, as etcd, so sub-revisions and hashes agree on
 * every member), then forgets the lease.  A lease without keys changes no
 * revision.  0, -KV_ELEASENOTFOUND, or -KV_ENOMEM (fatal: the store may be
 * half written). */
int lease_table_revoke(struct lease_table *t, struct mvcc *m, int64_t id);

/* The same with the etcd protobufs, for the fsm.  out->header is allocated
 * from a with only `revision` set (the store's revision after the write);
 * the service fills cluster_id, member_id and raft_term. */
int lease_apply_grant(struct lease_table *t, const Etcdserverpb__LeaseGrantRequest *r,
		      uint64_t origin, uint64_t index, uint64_t now_us, int64_t rev,
		      struct arena *a, Etcdserverpb__LeaseGrantResponse *out);
int lease_apply_revoke(struct lease_table *t, struct mvcc *m,
		       const Etcdserverpb__LeaseRevokeRequest *r, struct arena *a,
		       Etcdserverpb__LeaseRevokeResponse *out);

/* Key tracking (what kvs_lease_ops does).  attach: -KV_ELEASENOTFOUND or
 * -KV_ENOMEM; attaching a key twice is harmless.  detach of a key or lease
 * not known is a no-op. */
int lease_table_attach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len);
void lease_table_detach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len);

/* --- queries ------------------------------------------------------------ */

struct lease_info {
	int64_t id;
	int64_t ttl;        /* granted TTL, seconds */
	uint64_t expiry_us; /* LEASE_FOREVER unless the table is primary */
	uint64_t nkeys;
};

bool lease_table_exists(const struct lease_table *t, int64_t id);
/* true with *info filled when the lease exists. */
bool lease_table_get(const struct lease_table *t, int64_t id, struct lease_info *info);
uint64_t lease_table_count(const struct lease_table *t);
/* Keys attached to any lease. */
uint64_t lease_table_attached_keys(const struct lease_table *t);
/* Calls fn for each key of the lease, in key order; the key bytes are
 * valid until the table changes.  Returns how many keys were visited. */
typedef void (*lease_key_fn)(void *arg, const uint8_t *key, size_t len);
uint64_t lease_table_keys(const struct lease_table *t, int64_t id, lease_key_fn fn, void *arg);
/* Calls fn for each lease: by deadline on a primary (etcd's Leases()
 * order), by ID otherwise. */
typedef void (*lease_fn)(void *arg, const struct lease_info *info);
void lease_table_each(const struct lease_table *t, lease_fn fn, void *arg);

/* etcd's LeaseTimeToLive TTL: whole seconds left, truncated toward zero
 * (Go's int64(d.Seconds())); negative once past the deadline, and
 * INT64_MAX / 1e9 on a table that is not primary. */
int64_t lease_remaining_seconds(const struct lease_info *info, uint64_t now_us);

/* --- leader-only expiry ------------------------------------------------- */

bool lease_table_is_primary(const struct lease_table *t);
/* Becomes primary: every lease expires at now + extend + its TTL. */
void lease_table_promote(struct lease_table *t, uint64_t now_us, uint64_t extend_us);
/* Stops tracking deadlines (every lease lives forever here). */
void lease_table_demote(struct lease_table *t);
/*
 * A keep-alive on the primary: the lease expires at now + TTL again.
 * Returns 0 with *ttl = the granted TTL, -KV_ELEASENOTFOUND when the lease
 * does not exist or is already past its deadline (its revoke is on the way:
 * etcd waits for it and then answers "not found" too), or -KV_ENOTLEADER
 * on a table that is not primary (the caller forwards to the leader).
 */
int lease_table_renew(struct lease_table *t, int64_t id, uint64_t now_us, int64_t *ttl);
/*
 * The lease with the earliest deadline, if that deadline is <= now: returns
 * true with *id set and puts the lease back LEASE_RETRY_US later, so the
 * revoke is proposed again if this one is lost (leader change), and the
 * next call moves on to the next expired lease.  false when none is due
 * (or the table is not primary).
 */
bool lease_table_next_expired(struct lease_table *t, uint64_t now_us, int64_t *id);
/* The earliest deadline or retry time to look at; LEASE_FOREVER if none. */
uint64_t lease_table_next_deadline(const struct lease_table *t);

/* --- snapshots ---------------------------------------------------------- */

/*
 * lease_table_encode writes the replicated part (format version, every
 * lease's ID and TTL in ID order, CRC-32C trailer; no keys, no deadlines)
 * into a malloc'd buffer the caller frees.  The image of a state is
 * canonical, byte-identical on every member.
 *
 * lease_table_restore replaces the table's leases with the image's and
 * reattaches every key of m that has a lease (etcd's recovery); keys
 * naming a lease that is absent are logged and left alone.  It checks
 * every count against the bytes present before allocating, and on any
 * error leaves the table unchanged: -KV_ECORRUPT, -KV_ENOMEM.  img NULL
 * (len 0) means "no lease section" (an older snapshot): no leases.  The
 * table comes out demoted; the caller promotes it again if it leads.
 */
int lease_table_encode(const struct lease_table *t, uint8_t **data, size_t *len);
int lease_table_restore(struct lease_table *t, const uint8_t *img, size_t len,
			const struct mvcc *m);

#endif
