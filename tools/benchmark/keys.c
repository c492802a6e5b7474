/*
 * keys: the bytes the workloads send.  Keys are etcd's benchmark keys
 * (binary.PutVarint of the key index into a zeroed buffer of --key-size
 * bytes), so a run leaves the same key space in raftkv as in etcd.  Values
 * are random bytes, as etcd's mustRandBytes.
 *
 * A template is a request packed once; since every key has the same
 * length, only the key bytes change from one request to the next, and the
 * offsets of those bytes are found by packing the message twice with
 * different key bytes and comparing.  Per request, a workload then writes
 * key_size bytes per key instead of packing a protobuf message.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

size_t key_varint_len(uint64_t n)
{
	size_t len = 1;

	while (n >= 0x80) {
		n >>= 7;
		len++;
	}
	return len;
}

int key_encode(uint8_t *key, size_t key_size, uint64_t n)
{
	/* Zig-zag, as binary.PutVarint; indexes are never negative. */
	uint64_t z = n << 1;
	size_t i = 0;

	if (key_varint_len(z) > key_size)
		return -1;
	while (z >= 0x80) {
		key[i++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	key[i++] = (uint8_t)z;
	memset(key + i, 0, key_size - i);
	return 0;
}

int key_check_space(size_t key_size, uint64_t space, const char *what)
{
	size_t need = key_varint_len((space ? space - 1 : 0) << 1);

	if (need > key_size) {
		bench_err("--key-size %zu is too small for %s %llu (keys need %zu bytes)", key_size,
			  what, (unsigned long long)space, need);
		return -1;
	}
	return 0;
}

static uint64_t rnd_state;

uint64_t rnd_next(void)
{
	uint64_t x = rnd_state;

	if (!x) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ 1;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rnd_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

void rnd_bytes(uint8_t *p, size_t n)
{
	while (n) {
		uint64_t v = rnd_next();
		size_t k = n < 8 ? n : 8;

		memcpy(p, &v, k);
		p += k;
		n -= k;
	}
}

static uint8_t *tmpl_pack(const ProtobufCMessage *msg, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(msg);
	buf = malloc(*len ? *len : 1);
	if (buf)
		protobuf_c_message_pack(msg, buf);
	return buf;
}

int tmpl_build(struct tmpl *t, const ProtobufCMessage *msg, uint8_t *keybuf, size_t key_size)
{
	uint8_t *a, *ff;
	size_t la, lf, i, n = 0;

	memset(t, 0, sizeof(*t));
	t->key_size = key_size;
	if (key_size)
		memset(keybuf, 0, key_size);
	a = tmpl_pack(msg, &la);
	if (key_size)
		memset(keybuf, 0xff, key_size);
	ff = tmpl_pack(msg, &lf);
	if (!a || !ff || la != lf)
		goto fail;
	if (key_size) {
		for (i = 0; i < la; i++)
			n += a[i] != ff[i];
		if (n % key_size)
			goto fail;
		t->n_slots = n / key_size;
		t->slot = calloc(t->n_slots ? t->n_slots : 1, sizeof(*t->slot));
		if (!t->slot)
			goto fail;
		/* Each key is one run of key_size differing bytes. */
		for (i = 0, n = 0; i < la; i++) {
			if (a[i] == ff[i])
				continue;
			if (i + key_size > la)
				goto fail;
			for (size_t k = 0; k < key_size; k++)
				if (a[i + k] == ff[i + k])
					goto fail;
			t->slot[n++] = i;
			i += key_size - 1;
		}
	}
	free(ff);
	t->enc = a;
	t->len = la;
	return 0;
fail:
	free(a);
	free(ff);
	free(t->slot);
	t->slot = NULL;
	return -1;
}

void tmpl_free(struct tmpl *t)
{
	free(t->enc);
	free(t->slot);
	memset(t, 0, sizeof(*t));
}
