/*
 * fz: the in-process raftkv member that the fuzz targets (tests/fuzz/fuzz_*.c)
 * feed their inputs to.
 *
 * It is the real server minus the sockets and the disk: main.c's start-up
 * order (config_parse, mvcc, leases, members, watch hub, fsm, node, prop,
 * forward, svc timers) on one libuv loop, with
 *   - libraft's real consensus core on an in-memory raft_io (fz.c wraps
 *     raft_uv_init, which node.c calls: one voter, so it elects itself,
 *     every append "persists" on the next loop turn, nothing is sent);
 *   - connections that are buffers: the protocol modules (grpc.c, http1.c)
 *     run behind the conn_* calls of listener.h that fz.c implements, so a
 *     target hands raw client bytes to grpc_proto or http1_proto exactly as
 *     the listener would after sniffing, and gets the server's bytes back.
 * Everything from the protocol parsers to the services, prop, node, libraft,
 * the fsm apply and the store is the production code.
 *
 * State between inputs: fz_reset() restores a baseline image (a few keys,
 * a tombstone, a compaction, a lease; taken once with fsm_image()) through
 * the fsm's own restore, so every input starts from the same store.
 *
 * Environment: FZ_VERBOSE=1 keeps the server's log (2: debug too; default:
 * fatal only); FZ_DUMP_ENTRIES=DIR writes every raft entry the server
 * proposes to DIR (seeds of fuzz_entry, see tests/fuzz/make_corpus.py);
 * FZ_DUMP_SNAPSHOTS=DIR writes, after each input, the store image as raft
 * holds it (snap-*) and uncompressed (img-*), seeds of fuzz_snapshot.
 *
 * Leaks: libraft keeps its log in memory between inputs, so most inputs
 * allocate more than they free; scripts/fuzz.sh turns libFuzzer's
 * per-input leak check off for these targets while fuzzing (LeakSanitizer
 * still checks at exit) and on when replaying corpora.
 */
#ifndef RAFTKV_FZ_H
#define RAFTKV_FZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "server/cmd.h"
#include "server/listener.h"

struct server;
struct raft_fsm;

/* Brings the member up on first use (aborts if it cannot: a harness bug). */
struct server *fz_server(void);
struct raft_fsm *fz_fsm(void);
/* Back to the baseline state; call at the start of every input. */
void fz_reset(void);
/* Runs the loop until nothing is left to do (bounded): appends persisted,
 * entries applied, answers flushed. */
void fz_drive(void);

/* A connection speaking proto (grpc_proto or http1_proto).  on_out, when
 * not NULL, gets every byte the server writes to it. */
typedef void (*fz_out_fn)(void *arg, const uint8_t *p, size_t n);
struct conn *fz_conn_open(const struct conn_proto *proto, fz_out_fn on_out, void *arg);
/* Client bytes, in reads of at most chunk bytes (0: all at once); the loop
 * runs between reads, and reading waits while the protocol paused it, as
 * the listener's would.  false once the server closed the connection. */
bool fz_conn_feed(struct conn *c, const uint8_t *p, size_t n, size_t chunk);
/* The client closed its side (EOF).  false once the connection is closed. */
bool fz_conn_eof(struct conn *c);
/* Closes it (what the listener does on error or client reset), then runs
 * the loop until the calls it had in flight are over. */
void fz_conn_close(struct conn *c);

/* A raw raft entry through node_apply (padding, libraft, fsm apply), as the
 * log would deliver it; runs the loop until it is applied. */
void fz_apply_entry(const uint8_t *p, size_t n);

/* Entries as the server builds them: commands of origin 0 (nobody waits
 * for them) added to b, then taken as one padded entry (malloc'd). */
void fz_cmd_add(struct cmd_batch *b, enum cmd_type type, const ProtobufCMessage *m);
uint8_t *fz_entry_take(struct cmd_batch *b, size_t *len);

/* Writes buf to DIR/<prefix><hash of buf> (corpus generation helpers). */
void fz_dump(const char *dir, const char *prefix, const uint8_t *p, size_t n);

#endif
