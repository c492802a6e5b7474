/*
 * arena: chunks of growing size; big requests get a chunk of their own so a
 * single large value never wastes a standard chunk.
 */
#include "lib/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK 4096

struct arena_chunk {
	struct arena_chunk *next;
	size_t size;
	_Alignas(16) unsigned char data[];
};

static void *arena_pb_alloc(void *ud, size_t n)
{
	return arena_alloc(ud, n);
}

static void arena_pb_free(void *ud, void *p)
{
	(void)ud;
	(void)p;
}

void arena_init(struct arena *a)
{
	a->head = NULL;
	a->used = 0;
	a->total = 0;
	a->pb.alloc = arena_pb_alloc;
	a->pb.free = arena_pb_free;
	a->pb.allocator_data = a;
}

void arena_close(struct arena *a)
{
	struct arena_chunk *c = a->head;
	while (c) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used = 0;
	a->total = 0;
}

void *arena_alloc(struct arena *a, size_t n)
{
	size_t need = (n + 15) & ~(size_t)15;
	struct arena_chunk *c;
	if (need < n)
		return NULL;
	if (a->head && a->head->size - a->used >= need) {
		void *p = a->head->data + a->used;
		a->used += need;
		a->total += need;
		return p;
	}
	if (need > ARENA_CHUNK / 2) {
		/* Oversized: its own chunk, linked behind head so head keeps filling. */
		c = malloc(sizeof(*c) + need);
		if (!c)
			return NULL;
		c->size = need;
		if (a->head) {
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = NULL;
			a->head = c;
			a->used = need;
		}
		a->total += need;
		return c->data;
	}
	c = malloc(sizeof(*c) + ARENA_CHUNK);
	if (!c)
		return NULL;
	c->size = ARENA_CHUNK;
	c->next = a->head;
	a->head = c;
	a->used = need;
	a->total += need;
	return c->data;
}

void *arena_memdup(struct arena *a, const void *p, size_t n)
{
	void *q = arena_alloc(a, n ? n : 1);
	if (q && n)
		memcpy(q, p, n);
	return q;
}

ProtobufCAllocator *arena_pb_allocator(struct arena *a)
{
	return &a->pb;
}
