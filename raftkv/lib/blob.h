/*
 * blob: a reference-counted byte buffer.
 *
 * Lets one encoding be queued on many outputs and freed by the last one done
 * with it: watch fan-out encodes a revision's events once (watch.c), and
 * every watcher's response refers to those bytes until the transport has
 * written them (grpc.c).  Loop-thread only: the count is not atomic.
 */
#ifndef RAFTKV_BLOB_H
#define RAFTKV_BLOB_H

#include <stddef.h>
#include <stdint.h>

struct blob {
	uint32_t refs;
	size_t len;       /* bytes of data[]: all there is once shared (rpc_call_send_raw) */
	uint8_t data[];
};

/* len bytes (uninitialised), one reference; NULL when out of memory. */
struct blob *blob_new(size_t len);

static inline struct blob *blob_ref(struct blob *b)
{
	b->refs++;
	return b;
}

/* Drops one reference; the last frees it.  NULL is a no-op. */
void blob_unref(struct blob *b);

#endif
