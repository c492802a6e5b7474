/*
 * blob: reference-counted byte buffers (see blob.h).
 */
#include "lib/blob.h"

#include <stdlib.h>

struct blob *blob_new(size_t len)
{
	struct blob *b;

	if (len > SIZE_MAX - sizeof(*b))
		return NULL;
	b = malloc(sizeof(*b) + len);
	if (b == NULL)
		return NULL;
	b->refs = 1;
	b->len = len;
	return b;
}

void blob_unref(struct blob *b)
{
	if (b != NULL && --b->refs == 0)
		free(b);
}
