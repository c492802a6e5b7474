/*
 * segcheck: a read-only check of libraft's open log segments, made by node.c
 * before raft_start.
 *
 * libraft 0.22.1 loads an open segment (one a crash left behind: open-N)
 * batch by batch and, at the first batch whose checksum fails, keeps what
 * came before and silently drops the rest of the segment: it takes every
 * damaged batch for the torn last write of a crash.  That is right for a
 * torn tail, and wrong for a batch damaged on disk with intact batches
 * after it: those entries were written, synced and acknowledged, and a
 * single-member cluster would come back without them (a member of a larger
 * one would have forgotten entries it voted for).  segcheck tells the two
 * apart as etcd's WAL reader does: a torn write leaves whole sectors that
 * were never written, i.e. still zero from the preallocation, so a damaged
 * batch followed by an intact one, with no zeroed 512-byte sector between
 * them, is damage; so is a last batch whose header checks and none of whose
 * sectors was left unwritten (zero) but whose data does not.  What it
 * cannot tell apart (a last batch with a damaged header) is left to
 * libraft.
 *
 * Format (libraft's uv backend, little-endian): u64 format version (1),
 * then batches: u32 header CRC, u32 data CRC, header (u64 n, then n x
 * {u64 term, u8 type, 3 pad, u32 len}), data (the n entries, lengths
 * multiples of 8).  CRCs are libraft's byteCrc32: CRC-32 polynomial
 * 0x04C11DB7, MSB first, initial value 0, no final xor.
 */
#ifndef RAFTKV_SEGCHECK_H
#define RAFTKV_SEGCHECK_H

#include <stddef.h>

/* Checks every open-N file of dir.  0 when libraft may load them, or
 * -KV_ECORRUPT with why filled (file, offsets; libraft would drop every
 * entry from the damaged batch on), -KV_EIO when a file cannot be read. */
int segcheck_open_segments(const char *dir, char *why, size_t whylen);

#endif
