/*
 * cmd: packs client writes into one raft entry and reads them back (format
 * in cmd.h).  The proposer builds a batch per raft_apply; every member's
 * fsm iterates the same bytes, so decoding validates the whole entry before
 * handing out the first command: a malformed entry is refused as a whole
 * instead of being applied half-way.
 */
#include "server/cmd.h"

#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

static const uint8_t cmd_magic[4] = {'R', 'K', 'V', '1'};

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

size_t cmd_entry_padded_len(size_t len)
{
	return (len + 8) & ~(size_t)7;
}

void cmd_entry_pad(uint8_t *p, size_t len, size_t padded)
{
	memset(p + len, 0, padded - len - 1);
	p[padded - 1] = (uint8_t)(padded - len);
}

int cmd_entry_len(const void *data, size_t padded_len, size_t *len)
{
	unsigned pad;
	if (padded_len == 0 || padded_len % 8)
		return -KV_ECORRUPT;
	pad = ((const uint8_t *)data)[padded_len - 1];
	if (pad < 1 || pad > 8)
		return -KV_ECORRUPT;
	*len = padded_len - pad;
	return 0;
}

void cmd_batch_init(struct cmd_batch *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->count = 0;
}

void cmd_batch_close(struct cmd_batch *b)
{
	free(b->data);
	cmd_batch_init(b);
}

static int batch_reserve(struct cmd_batch *b, size_t more)
{
	size_t need, cap;
	uint8_t *d;

	if (b->len == 0)
		more += CMD_ENTRY_HEADER;
	if (more > SIZE_MAX - b->len)
		return -KV_ENOMEM;
	need = b->len + more;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	d = realloc(b->data, cap);
	if (d == NULL)
		return -KV_ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

int cmd_batch_add(struct cmd_batch *b, const struct cmd *c)
{
	uint8_t *p;
	int rv;

	if (c->type == 0 || c->type >= CMD__MAX || b->count == UINT32_MAX ||
	    (c->len > 0 && c->payload == NULL))
		return -KV_EINVAL;
	if ((rv = batch_reserve(b, CMD_HEADER + (size_t)c->len)) != 0)
		return rv;
	if (b->len == 0) {
		/* The header is written by cmd_batch_take, once count is final. */
		b->len = CMD_ENTRY_HEADER;
	}
	p = b->data + b->len;
	p[0] = c->type;
	put_u64(p + 1, c->origin);
	put_u64(p + 9, c->seq);
	put_u32(p + 17, c->len);
	if (c->len > 0)
		memcpy(p + CMD_HEADER, c->payload, c->len);
	b->len += CMD_HEADER + (size_t)c->len;
	b->count++;
	return 0;
}

int cmd_batch_take(struct cmd_batch *b, uint8_t **data, size_t *len)
{
	int rv;
	if (b->len == 0 && (rv = batch_reserve(b, 0)) != 0)
		return rv;
	if (b->len == 0)
		b->len = CMD_ENTRY_HEADER;
	memcpy(b->data, cmd_magic, sizeof(cmd_magic));
	put_u32(b->data + 4, b->count);
	*data = b->data;
	*len = b->len;
	cmd_batch_init(b);
	return 0;
}

int cmd_iter_init(struct cmd_iter *it, const uint8_t *data, size_t len)
{
	const uint8_t *p, *end;
	uint32_t count;

	it->p = it->end = NULL;
	it->remaining = 0;
	if (data == NULL || len < CMD_ENTRY_HEADER || memcmp(data, cmd_magic, sizeof(cmd_magic)) != 0)
		return -KV_ECORRUPT;
	count = get_u32(data + 4);
	p = data + CMD_ENTRY_HEADER;
	end = data + len;
	if (count > (size_t)(end - p) / CMD_HEADER)
		return -KV_ECORRUPT;
	/* Walk every command first: the entry must be exactly count commands. */
	for (uint32_t i = 0; i < count; i++) {
		uint32_t clen;
		if ((size_t)(end - p) < CMD_HEADER)
			return -KV_ECORRUPT;
		clen = get_u32(p + 17);
		if ((size_t)(end - p) - CMD_HEADER < clen)
			return -KV_ECORRUPT;
		p += CMD_HEADER + (size_t)clen;
	}
	if (p != end)
		return -KV_ECORRUPT;
	it->p = data + CMD_ENTRY_HEADER;
	it->end = end;
	it->remaining = count;
	return 0;
}

int cmd_iter_next(struct cmd_iter *it, struct cmd *c)
{
	uint32_t clen;

	if (it->remaining == 0)
		return 0;
	if (it->p == NULL || (size_t)(it->end - it->p) < CMD_HEADER)
		return -KV_ECORRUPT;
	clen = get_u32(it->p + 17);
	if ((size_t)(it->end - it->p) - CMD_HEADER < clen)
		return -KV_ECORRUPT;
	c->type = it->p[0];
	c->origin = get_u64(it->p + 1);
	c->seq = get_u64(it->p + 9);
	c->len = clen;
	c->payload = it->p + CMD_HEADER;
	it->p += CMD_HEADER + (size_t)clen;
	it->remaining--;
	return 1;
}
