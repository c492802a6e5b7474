/*
 * mvcc: etcd's multi-version keyspace, in memory.
 *
 * The fsm applies every write here (through kvs); reads, watches, HashKV,
 * the space quota and raft snapshots all look at the same store.  It is pure
 * and deterministic: the same sequence of calls gives the same state, the
 * same hash and the same snapshot bytes on every member.
 *
 * Invariants (etcd's, see mvcc/kvstore.go and mvcc/key_index.go):
 *  - one global revision; an empty store is at revision 1, so the first
 *    write gets revision 2.  A write transaction gives all its changes one
 *    main revision (ordered inside it by a sub-revision) and bumps the
 *    revision only if it changed something.
 *  - per key: create_rev (revision of the put that (re)created it), mod_rev,
 *    version (1 on creation, +1 per put, back to 1 after a delete), lease.
 *    A delete leaves a tombstone (version 0) in the key's history.
 *  - old revisions stay readable until a compaction at C drops, for every
 *    key, all but the latest revision <= C (and that one too when it is a
 *    tombstone).  The compact revision starts at -1 (never compacted).
 *
 * Memory: one allocation per key, holding the key bytes and one revision
 * (the key's first; after a snapshot load or a compaction, its latest) with
 * its value inline, and one per further revision, all carved from slabs of
 * the store's own; a key with one revision needs nothing else (8 bytes
 * besides its key and value, typically).  Fields that take their usual
 * value (create = mod, version 1, lease 0) are not stored.  The keys are
 * indexed by a B+tree (~8.5 bytes a key); a key with more revisions has a
 * malloc'd list of them.  Only a compaction gives memory back.
 *
 * Error returns: 0 or a negative KV_E* code (lib/err.h).  -KV_ENOMEM from a
 * write inside a transaction leaves that transaction partly applied: the
 * caller must treat it as fatal for the state machine.
 */
#ifndef RAFTKV_MVCC_H
#define RAFTKV_MVCC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mvcc;
struct mvcc_key;

/* One revision of a key as seen by readers.  The pointers refer to store
 * memory and stay valid until the next compaction (or mvcc_free): writes
 * never move existing revisions. */
struct mvcc_kv {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
	int64_t create_rev;
	int64_t mod_rev;
	int64_t version; /* 0: a tombstone (the key was deleted at mod_rev) */
	int64_t lease;
};

/* Called for every change, in order: kv is the new state (a tombstone with
 * only key and mod_rev set for a delete), prev the state it replaced or NULL
 * when the key did not exist.  Runs inside the write: it must not modify
 * the store. */
typedef void (*mvcc_observer_fn)(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev);

/* Returns NULL when out of memory. */
struct mvcc *mvcc_new(void);
void mvcc_free(struct mvcc *m);

void mvcc_set_observer(struct mvcc *m, mvcc_observer_fn fn, void *arg);

/* Called once at the end of every write transaction that changed something,
 * after every observer call of that revision: rev is the new mvcc_rev().
 * Lets watchers send all the events of one revision together.  Runs inside
 * the write: it must not modify the store. */
typedef void (*mvcc_commit_fn)(void *arg, int64_t rev);
void mvcc_set_commit_hook(struct mvcc *m, mvcc_commit_fn fn, void *arg);

/* The committed revision (does not include an open transaction). */
int64_t mvcc_rev(const struct mvcc *m);
/* The revision reads see: inside a transaction that already changed
 * something this is mvcc_rev()+1, as etcd's write txn Range. */
int64_t mvcc_read_rev(const struct mvcc *m);
/* -1 until the first compaction. */
int64_t mvcc_compact_rev(const struct mvcc *m);
/* Approximate logical size of everything retained (keys, values and a fixed
 * per-revision overhead): reported as dbSize and used for the quota. */
uint64_t mvcc_bytes(const struct mvcc *m);
/* Keys that currently exist (not deleted). */
uint64_t mvcc_live_keys(const struct mvcc *m);
/* Bytes of memory mapped for keys and values (the index and history arrays
 * aside). */
uint64_t mvcc_mem_bytes(const struct mvcc *m);

/*
 * Write transactions.  Every write between begin and end shares the main
 * revision mvcc_rev()+1; end commits it (bumping the revision only if
 * something changed) and returns the resulting mvcc_rev().  A write called
 * outside begin/end is its own transaction.  Transactions do not nest.
 */
void mvcc_txn_begin(struct mvcc *m);
int64_t mvcc_txn_end(struct mvcc *m);

/* Longest value a record holds (256 MiB - 1: its length shares a word with
 * flags).  etcd's requests are 1.5 MiB by default and it warns above 10. */
#define MVCC_VALUE_MAX ((1u << 28) - 1)

/* Puts key=value with the lease (0 = none).  Returns 0 or -KV_ENOMEM /
 * -KV_EINVAL (empty key, a key over 4 GiB or a value over MVCC_VALUE_MAX). */
int mvcc_put(struct mvcc *m, const uint8_t *key, size_t key_len, const uint8_t *value,
	     size_t value_len, int64_t lease);

/*
 * Range forms, as on the wire (etcd RangeRequest): end_len == 0 means the
 * single key; end == "\0" (one zero byte) means every key >= key; otherwise
 * [key, end).  So key "\0" with end "\0" is the whole keyspace.
 */

/* Deletes every existing key in the range; *deleted (may be NULL) gets how
 * many.  Deleting nothing changes nothing (no revision bump). */
int mvcc_delete_range(struct mvcc *m, const uint8_t *key, size_t key_len, const uint8_t *end,
		      size_t end_len, int64_t *deleted);

/* Iteration over the keys that exist at a revision, in key order.  The store
 * must not be written while an iterator is in use. */
struct mvcc_iter {
	const struct mvcc *m;
	void *leaf;     /* the next key: index leaf and position in it */
	uint32_t pos;
	const uint8_t *end;
	size_t end_len;
	bool single;    /* one key only */
	bool unbounded; /* end was "\0" */
	int64_t rev;
};

/* rev <= 0 means mvcc_read_rev().  Returns 0, -KV_EFUTUREREV when rev is
 * above mvcc_read_rev(), or -KV_ECOMPACTED when rev is below the compact
 * revision (rev == compact revision is still readable, as in etcd). */
int mvcc_iter_init(struct mvcc_iter *it, const struct mvcc *m, const uint8_t *key, size_t key_len,
		   const uint8_t *end, size_t end_len, int64_t rev);
/* true with *kv filled, false at the end. */
bool mvcc_iter_next(struct mvcc_iter *it, struct mvcc_kv *kv);

/*
 * History of a range (forms as above), for watchers catching up: calls fn
 * for every retained change with from_rev <= mod_rev <= to_rev, key by key
 * in key order and oldest first within a key.  kv and prev are as for the
 * observer (prev NULL when the key did not exist before, or when the
 * revision before was compacted away); sub orders the changes of one
 * revision.  Callers that want revision order sort by (mod_rev, sub).
 * Costs one lookup per key of the range that has any history: returns how
 * many keys it looked at, so callers can bound their work.
 */
typedef void (*mvcc_change_fn)(void *arg, const struct mvcc_kv *kv, const struct mvcc_kv *prev,
			       uint32_t sub);
uint64_t mvcc_changes(const struct mvcc *m, const uint8_t *key, size_t key_len, const uint8_t *end,
		  size_t end_len, int64_t from_rev, int64_t to_rev, mvcc_change_fn fn, void *arg);

/* The current state of one key: true with *kv filled if it exists. */
bool mvcc_get(const struct mvcc *m, const uint8_t *key, size_t key_len, struct mvcc_kv *kv);

/* Compacts at rev.  Returns 0, -KV_ECOMPACTED if rev <= the compact revision,
 * -KV_EFUTUREREV if rev > mvcc_rev().  Invalidates mvcc_kv pointers. */
int mvcc_compact(struct mvcc *m, int64_t rev);

/*
 * Hashes (CRC-32C), equal on members with equal state.  mvcc_hash_kv is
 * etcd's HashKV: every key revision in (compact_rev, rev] plus, for each key,
 * its latest revision <= rev when that is older and not a tombstone.  rev 0
 * means the current revision.  *compact_rev is always set.  Returns 0,
 * -KV_ECOMPACTED (0 < rev <= compact revision) or -KV_EFUTUREREV.
 * mvcc_hash covers everything, revision counters included.
 */
int mvcc_hash_kv(struct mvcc *m, int64_t rev, uint32_t *hash, int64_t *compact_rev);
int mvcc_hash(struct mvcc *m, uint32_t *hash);

/*
 * Snapshots.  mvcc_encode writes a self-checking binary image (magic,
 * format version, revision, compact revision, every key with its retained
 * history, CRC-32C trailer) into a malloc'd buffer the caller frees; the
 * image of a given state is canonical (byte-identical on every member).
 * mvcc_decode loads one into an empty store (-KV_EINVAL if not empty); it
 * checks every length against the bytes present before allocating and every
 * field for consistency, and returns -KV_ECORRUPT on anything malformed,
 * leaving the store empty.  Returns 0, -KV_ENOMEM, -KV_EINVAL, -KV_ECORRUPT.
 */
int mvcc_encode(const struct mvcc *m, uint8_t **data, size_t *len);
int mvcc_decode(struct mvcc *into_empty, const uint8_t *data, size_t len);

/* CRC-32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t mvcc_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
