/*
 * fuzz_http1: raw client bytes on the HTTP/1.1 side of the client port:
 * http1.c's request line, header and body parsing (Content-Length and
 * chunked, pipelining, keep-alive), its routes (/health, /version), and the
 * JSON gateway (gw.c): pbjson decoding of every /v3/ route's body into the
 * request message, then the same service handlers gRPC uses, streams
 * (watch, keepalive, snapshot) included.
 *
 * Input: one byte choosing how the bytes arrive (0: in one read, n: reads
 * of 4n bytes), then the bytes; the client then closes its side.  Seeds
 * are curl and etcd3gw requests (tests/fuzz/make_corpus.py).
 */
#include <stddef.h>
#include <stdint.h>

#include "fz.h"
#include "server/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn *c;

	if (size < 1)
		return 0;
	fz_reset();
	c = fz_conn_open(&http1_proto, NULL, NULL);
	if (fz_conn_feed(c, data + 1, size - 1, (size_t)data[0] * 4))
		fz_conn_eof(c);
	fz_conn_close(c);
	return 0;
}
