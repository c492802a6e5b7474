/*
 * fuzz_entry: one raft log entry, as libraft hands it to the state machine:
 * node_entry_len (padding), the entry decoder (cmd.c) and fsm.c's apply of
 * every command in it (protobuf decoding of the payload, alarm gate, kvs,
 * mvcc, leases, members, watch notification, prop_complete for commands
 * that claim to be ours), through libraft's real commit path on the
 * in-process member (fz.h).  Followers apply whatever the log holds, so an
 * entry must never crash, whatever its bytes.
 *
 * Input: the entry's bytes.  Seeds are entries the server itself proposed
 * for real etcdctl and python3-etcd3 requests (FZ_DUMP_ENTRIES, see
 * tests/fuzz/make_corpus.py).
 */
#include <stddef.h>
#include <stdint.h>

#include "fz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_reset();
	fz_apply_entry(data, size);
	return 0;
}
