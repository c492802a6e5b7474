/*
 * fuzz_grpc: raw client bytes on the gRPC side of the client port: the
 * HTTP/2 connection (nghttp2 server session), grpc.c's stream handling,
 * header checks, message framing and reassembly, the method table, every
 * service's decoding and validation and, for what passes, proposal, raft,
 * apply and the answer, all in the in-process member of fz.h.
 *
 * Input: one byte choosing how the bytes arrive (0: in one read, n: reads
 * of 4n bytes, the loop running in between), then everything the client
 * sends after the 24-byte connection preface, which the harness sends
 * first (the listener has matched it before grpc.c sees the connection).
 * Seeds are whole client sides of etcdctl and python3-etcd3 connections
 * (tests/fuzz/make_corpus.py).
 */
#include <stddef.h>
#include <stdint.h>

#include "fz.h"
#include "server/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn *c;
	size_t chunk;

	if (size < 1)
		return 0;
	chunk = (size_t)data[0] * 4;
	fz_reset();
	c = fz_conn_open(&grpc_proto, NULL, NULL);
	if (fz_conn_feed(c, fuzz_preface, sizeof(fuzz_preface) - 1, 0))
		fz_conn_feed(c, data + 1, size - 1, chunk);
	fz_conn_close(c);
	return 0;
}
