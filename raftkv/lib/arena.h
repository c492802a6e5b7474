/*
 * arena: a per-request bump allocator.
 *
 * A request decodes into, and builds its response in, one arena; everything
 * is released at once with arena_close().  arena_pb_allocator() adapts it to
 * protobuf-c so unpacking a request costs no individual frees.
 */
#ifndef RAFTKV_ARENA_H
#define RAFTKV_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head;
	size_t used;       /* bytes used in head */
	size_t total;      /* bytes handed out, for accounting */
	ProtobufCAllocator pb;
};

void arena_init(struct arena *a);
void arena_close(struct arena *a);
/* 16-byte aligned; NULL only when malloc fails. */
void *arena_alloc(struct arena *a, size_t n);
void *arena_memdup(struct arena *a, const void *p, size_t n);
/* A ProtobufCAllocator whose frees are no-ops; valid until arena_close(). */
ProtobufCAllocator *arena_pb_allocator(struct arena *a);

#endif
