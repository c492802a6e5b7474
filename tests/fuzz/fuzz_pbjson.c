/*
 * fuzz_pbjson: the JSON -> protobuf decoder of the gateway (lib/pbjson.c)
 * for every message of etcd's v3 services, alone, so that it runs at
 * hundreds of thousands of inputs a second (fuzz_http1 reaches it too,
 * through http1 and gw).
 *
 * Input: one byte choosing the message type (every request and response
 * type of the KV, Watch, Lease, Cluster, Maintenance and Auth services),
 * then JSON text.  What decodes must survive the round trip: encoding it
 * (default flags, and numbers + defaults as etcdctl -w json prints) and
 * decoding that again gives the same message, byte for byte once packed.
 * The text is also read as a stream of values, as gw.c reads stream bodies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/arena.h"
#include "lib/pbjson.h"
#include "rpc.pb-c.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_TYPES 128

static const ProtobufCServiceDescriptor *const fuzz_services[] = {
	&etcdserverpb__kv__descriptor,      &etcdserverpb__watch__descriptor,
	&etcdserverpb__lease__descriptor,   &etcdserverpb__cluster__descriptor,
	&etcdserverpb__maintenance__descriptor, &etcdserverpb__auth__descriptor,
};

static const ProtobufCMessageDescriptor *fuzz_types[FUZZ_MAX_TYPES];
static size_t fuzz_n_types;

static void fuzz_add_type(const ProtobufCMessageDescriptor *d)
{
	size_t i;
	for (i = 0; i < fuzz_n_types; i++)
		if (fuzz_types[i] == d)
			return;
	if (fuzz_n_types < FUZZ_MAX_TYPES)
		fuzz_types[fuzz_n_types++] = d;
}

static void fuzz_init_types(void)
{
	size_t s;
	unsigned m;
	for (s = 0; s < sizeof(fuzz_services) / sizeof(fuzz_services[0]); s++) {
		for (m = 0; m < fuzz_services[s]->n_methods; m++) {
			fuzz_add_type(fuzz_services[s]->methods[m].input);
			fuzz_add_type(fuzz_services[s]->methods[m].output);
		}
	}
}

static uint8_t *fuzz_pack(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *p;
	*len = protobuf_c_message_get_packed_size(m);
	p = malloc(*len ? *len : 1);
	if (!p)
		abort();
	protobuf_c_message_pack(m, p);
	return p;
}

/* encode(m) with flags must decode to m again. */
static void fuzz_round_trip(const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m,
			    const uint8_t *packed, size_t plen, unsigned flags)
{
	struct pbjson_buf b;
	struct arena a;
	ProtobufCMessage *again = NULL;
	char err[PBJSON_ERR_MAX];
	uint8_t *p2;
	size_t len2;
	int rv;

	pbjson_buf_init(&b);
	arena_init(&a);
	if (pbjson_encode(&b, m, flags))
		abort();
	rv = pbjson_decode(d, b.data ? b.data : "", b.len, arena_pb_allocator(&a), &again, err);
	if (rv) {
		fprintf(stderr, "%s: own output %.*s does not decode (flags %u): %s\n", d->name,
			(int)b.len, b.data, flags, err);
		abort();
	}
	p2 = fuzz_pack(again, &len2);
	if (len2 != plen || memcmp(p2, packed, plen) != 0) {
		fprintf(stderr, "%s: %.*s (flags %u) decodes to another message\n", d->name,
			(int)b.len, b.data, flags);
		abort();
	}
	free(p2);
	arena_close(&a);
	pbjson_buf_close(&b);
}

/* FZ_LIST_TYPES=1: prints "index full.name" per type, for make_corpus.py. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t i;
	(void)argc;
	(void)argv;
	fuzz_init_types();
	if (getenv("FZ_LIST_TYPES"))
		for (i = 0; i < fuzz_n_types; i++)
			printf("%zu %s\n", i, fuzz_types[i]->name);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const ProtobufCMessageDescriptor *d;
	ProtobufCMessage *m = NULL;
	char err[PBJSON_ERR_MAX];
	struct arena a;
	size_t off = 0, plen;
	uint8_t *packed;
	const char *text;
	int rv, n;

	if (size < 1)
		return 0;
	d = fuzz_types[data[0] % fuzz_n_types];
	text = (const char *)data + 1;
	size--;

	arena_init(&a);
	rv = pbjson_decode(d, text, size, arena_pb_allocator(&a), &m, err);
	if (rv == 0) {
		packed = fuzz_pack(m, &plen);
		fuzz_round_trip(d, m, packed, plen, 0);
		fuzz_round_trip(d, m, packed, plen,
				PBJSON_INT64_NUMBERS | PBJSON_ENUM_NUMBERS | PBJSON_EMIT_DEFAULTS);
		free(packed);
	}
	arena_close(&a);

	/* As a stream body: value after value until the end or an error. */
	arena_init(&a);
	for (n = 0; n < 64; n++) {
		m = NULL;
		if (pbjson_decode_next(d, text, size, &off, arena_pb_allocator(&a), &m, err) != 0)
			break;
	}
	arena_close(&a);
	return 0;
}
