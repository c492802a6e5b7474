/*
 * kvs: etcd's KV service semantics over the mvcc store, pure and
 * deterministic (no sockets, no raft, no clock), so every member computes
 * the same state from the same entries and the unit tests need nothing else.
 *
 * kvs_check_* are the API-layer validations etcd does before proposing (bad
 * requests never reach the log).  kvs_range serves reads.  kvs_put,
 * kvs_delete_range, kvs_txn and kvs_compact are called by the fsm when an
 * entry is applied.  Each fills *out (already allocated by the caller,
 * initialised here) using arena memory and, where zero-copy is safe, pointers
 * into the mvcc store: the caller must pack the response before the store
 * changes again.  out->header is allocated here with only `revision` set;
 * the service fills cluster_id, member_id and raft_term.
 */
#ifndef RAFTKV_KVS_H
#define RAFTKV_KVS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/arena.h"
#include "rpc.pb-c.h"

struct mvcc;

/* Lease lookups for Put.lease; NULL ops (no lease module yet) means every
 * non-zero lease is unknown → KV_ELEASENOTFOUND.  attach and detach
 * (optional; lease.c) keep each lease's key set in step with the store, as
 * etcd's mvcc does with its lessor: after a Put, the key leaves its previous
 * lease and joins the new one; a DeleteRange detaches every leased key it
 * deletes.  attached() (optional) says whether any key has a lease at all,
 * so that kvs skips the lookups while nobody uses leases.  attach fails only
 * with -KV_ENOMEM. */
struct kvs_lease_ops {
	int (*exists)(void *arg, int64_t lease_id);
	int (*attach)(void *arg, int64_t lease_id, const uint8_t *key, size_t key_len);
	void (*detach)(void *arg, int64_t lease_id, const uint8_t *key, size_t key_len);
	uint64_t (*attached)(void *arg);
	void *arg;
};

struct kvs {
	struct mvcc *mvcc;
	const struct kvs_lease_ops *lease;
	unsigned max_txn_ops; /* --max-txn-ops */
};

int kvs_check_range(const struct kvs *k, const Etcdserverpb__RangeRequest *r);
int kvs_check_put(const struct kvs *k, const Etcdserverpb__PutRequest *r);
int kvs_check_delete_range(const struct kvs *k, const Etcdserverpb__DeleteRangeRequest *r);
int kvs_check_txn(const struct kvs *k, const Etcdserverpb__TxnRequest *r);
int kvs_check_compact(const struct kvs *k, const Etcdserverpb__CompactionRequest *r);

/* Nesting limit of Txn inside Txn (etcd's --max-txn-ops bounds it lower). */
#define KVS_MAX_TXN_DEPTH 256

/* Scans a serialized TxnRequest without decoding it: protobuf-c unpacks
 * nested messages recursively, so a small request nested thousands deep
 * overflows the stack.  Call before etcdserverpb__txn_request__unpack.
 * Returns 0, -KV_ETOOMANYOPS (nested deeper than KVS_MAX_TXN_DEPTH) or
 * -KV_EMALFORMED (not a valid protobuf encoding). */
int kvs_check_txn_wire(const uint8_t *data, size_t len);

int kvs_range(struct kvs *k, const Etcdserverpb__RangeRequest *r, struct arena *a,
	      Etcdserverpb__RangeResponse *out);
int kvs_put(struct kvs *k, const Etcdserverpb__PutRequest *r, struct arena *a,
	    Etcdserverpb__PutResponse *out);
int kvs_delete_range(struct kvs *k, const Etcdserverpb__DeleteRangeRequest *r, struct arena *a,
		     Etcdserverpb__DeleteRangeResponse *out);
int kvs_txn(struct kvs *k, const Etcdserverpb__TxnRequest *r, struct arena *a,
	    Etcdserverpb__TxnResponse *out);
int kvs_compact(struct kvs *k, const Etcdserverpb__CompactionRequest *r, struct arena *a,
		Etcdserverpb__CompactionResponse *out);

#endif
