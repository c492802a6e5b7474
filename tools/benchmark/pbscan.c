/*
 * pbscan: walks the top-level fields of a protobuf message without
 * unpacking it.  Streamed responses (a WatchResponse with its events, a
 * LeaseKeepAliveResponse) arrive far more often than anything else the
 * tool receives, and all it needs from them is a flag, a number or how many
 * times a repeated field occurs: unpacking each into a fresh object tree
 * would make the tool, not the server, the bottleneck.  Field numbers come
 * from protoc-c's descriptors, never from literals.
 */
#include "bench.h"

#include <assert.h>

static int pbscan_varint(const uint8_t **pos, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pos;
	uint64_t x = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (p == end)
			return -1;
		x |= (uint64_t)(*p & 0x7f) << shift;
		if (!(*p++ & 0x80)) {
			*v = x;
			*pos = p;
			return 0;
		}
	}
	return -1;
}

int pbscan_next(const uint8_t **pos, const uint8_t *end, struct pb_field *f)
{
	uint64_t tag, len;

	if (*pos == end)
		return 0;
	if (pbscan_varint(pos, end, &tag) || tag >> 3 == 0 || tag >> 3 > UINT32_MAX)
		return -1;
	f->num = (uint32_t)(tag >> 3);
	f->wire = tag & 7;
	f->p = NULL;
	f->len = 0;
	f->v = 0;
	switch (f->wire) {
	case 0:
		return pbscan_varint(pos, end, &f->v) ? -1 : 1;
	case 1:
	case 5:
		len = f->wire == 1 ? 8 : 4;
		if ((uint64_t)(end - *pos) < len)
			return -1;
		for (unsigned i = 0; i < len; i++)
			f->v |= (uint64_t)(*pos)[i] << (8 * i);
		*pos += len;
		return 1;
	case 2:
		if (pbscan_varint(pos, end, &len) || len > (uint64_t)(end - *pos))
			return -1;
		f->p = *pos;
		f->len = (size_t)len;
		*pos += len;
		return 1;
	default:
		return -1; /* groups are not in etcd's API */
	}
}

uint32_t pbscan_field(const ProtobufCMessageDescriptor *desc, const char *name)
{
	const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(desc, name);

	assert(fd);
	return fd->id;
}
