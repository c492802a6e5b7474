/*
 * fuzz_grpc_msg: request messages of every gRPC method the server answers,
 * in well-formed HTTP/2 and gRPC framing, so that the fuzzer spends its
 * time on what the services do with the protobuf bodies: decoding,
 * validation (etcd's limits and errors), proposal, raft, apply, the answer;
 * and on the metadata the services read.
 *
 * Input:  byte 0   the method (index into fuzz_methods, modulo)
 *         byte 1   flags: 1 content-type application/grpc+proto,
 *                  2 a grpc-timeout, 4 leave the request stream open,
 *                  8 "hasleader: true" metadata, 16 a second stream with
 *                  the same messages, 32 grpc-encoding identity
 *         then     messages: u16 LE length and that many bytes, again and
 *                  again; a length beyond the input takes the rest.
 * A real nghttp2 client session frames the request and reads the answer:
 * a frame it finds invalid (the server broke HTTP/2) aborts the input.
 * Seeds are the requests of etcdctl and python3-etcd3
 * (tests/fuzz/make_corpus.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nghttp2/nghttp2.h>

#include "fz.h"
#include "server/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every method of rpc.c, and two it does not serve. */
static const char *const fuzz_methods[] = {
	"/etcdserverpb.KV/Range",
	"/etcdserverpb.KV/Put",
	"/etcdserverpb.KV/DeleteRange",
	"/etcdserverpb.KV/Txn",
	"/etcdserverpb.KV/Compact",
	"/etcdserverpb.Maintenance/Status",
	"/etcdserverpb.Maintenance/Hash",
	"/etcdserverpb.Maintenance/HashKV",
	"/etcdserverpb.Maintenance/Alarm",
	"/etcdserverpb.Maintenance/Defragment",
	"/etcdserverpb.Maintenance/MoveLeader",
	"/etcdserverpb.Maintenance/Snapshot",
	"/etcdserverpb.Cluster/MemberList",
	"/etcdserverpb.Cluster/MemberAdd",
	"/etcdserverpb.Cluster/MemberRemove",
	"/etcdserverpb.Cluster/MemberUpdate",
	"/etcdserverpb.Cluster/MemberPromote",
	"/raftkv.Internal/MemberPublish",
	"/etcdserverpb.Lease/LeaseGrant",
	"/etcdserverpb.Lease/LeaseRevoke",
	"/etcdserverpb.Lease/LeaseKeepAlive",
	"/etcdserverpb.Lease/LeaseTimeToLive",
	"/etcdserverpb.Lease/LeaseLeases",
	"/etcdserverpb.Watch/Watch",
	"/etcdserverpb.Auth/Authenticate",
	"/etcdserverpb.Nope/Nope",
};
#define FUZZ_N_METHODS (sizeof(fuzz_methods) / sizeof(fuzz_methods[0]))

enum {
	FUZZ_CT_PROTO = 1,
	FUZZ_TIMEOUT = 2,
	FUZZ_OPEN = 4,
	FUZZ_HASLEADER = 8,
	FUZZ_TWICE = 16,
	FUZZ_IDENTITY = 32,
};

struct fuzz_client {
	nghttp2_session *h2;
	const uint8_t *body; /* gRPC-framed messages */
	size_t body_len;
	unsigned flags;
	int invalid;
};

struct fuzz_stream {
	struct fuzz_client *fc;
	size_t off;
};

static ssize_t fuzz_read(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
			 uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct fuzz_stream *st = source->ptr;
	size_t n = st->fc->body_len - st->off;
	(void)h2;
	(void)stream_id;
	(void)user_data;
	if (n > length)
		n = length;
	memcpy(buf, st->fc->body + st->off, n);
	st->off += n;
	if (st->off == st->fc->body_len) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->fc->flags & FUZZ_OPEN)
			*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	return (ssize_t)n;
}

static int fuzz_invalid_frame(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error_code,
			      void *user_data)
{
	struct fuzz_client *fc = user_data;
	(void)h2;
	fprintf(stderr, "server sent an invalid frame (type %u, stream %d): %s\n",
		(unsigned)frame->hd.type, frame->hd.stream_id, nghttp2_strerror(lib_error_code));
	fc->invalid++;
	return 0;
}

/* The server's bytes go to the client session. */
static void fuzz_on_out(void *arg, const uint8_t *p, size_t n)
{
	struct fuzz_client *fc = arg;
	ssize_t rv = nghttp2_session_mem_recv(fc->h2, p, n);
	if (rv < 0 || fc->invalid) {
		fprintf(stderr, "client session: %s\n", rv < 0 ? nghttp2_strerror((int)rv) : "invalid frame");
		abort();
	}
}

/* Whatever the client session has to say, to the server. */
static void fuzz_send(struct fuzz_client *fc, struct conn *c)
{
	const uint8_t *p;
	ssize_t n;
	while ((n = nghttp2_session_mem_send(fc->h2, &p)) > 0)
		if (!fz_conn_feed(c, p, (size_t)n, 0))
			return;
}

/* Splits the input into messages and frames each: flag 0, u32 BE length. */
static uint8_t *fuzz_frame(const uint8_t *p, size_t n, size_t *out_len)
{
	uint8_t *out = malloc(n + 5 * (n / 2 + 1)), *q = out;
	if (!out)
		abort();
	while (n > 0) {
		size_t len = n >= 2 ? (size_t)(p[0] | p[1] << 8) : 0;
		size_t skip = n >= 2 ? 2 : n;
		p += skip;
		n -= skip;
		if (len > n)
			len = n;
		q[0] = 0;
		q[1] = (uint8_t)(len >> 24);
		q[2] = (uint8_t)(len >> 16);
		q[3] = (uint8_t)(len >> 8);
		q[4] = (uint8_t)len;
		memcpy(q + 5, p, len);
		q += 5 + len;
		p += len;
		n -= len;
	}
	*out_len = (size_t)(q - out);
	return out;
}

#define NV(n, v)                                                                          \
	{                                                                                 \
		(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE \
	}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static nghttp2_session_callbacks *cb;
	struct fuzz_client fc;
	struct fuzz_stream st[2];
	nghttp2_data_provider prd;
	nghttp2_nv nva[10];
	size_t n_nv = 0;
	struct conn *c;
	int i, n_streams;

	if (size < 2)
		return 0;
	if (!cb) {
		if (nghttp2_session_callbacks_new(&cb))
			abort();
		nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, fuzz_invalid_frame);
	}
	memset(&fc, 0, sizeof(fc));
	fc.flags = data[1];
	fc.body = fuzz_frame(data + 2, size - 2, &fc.body_len);
	if (nghttp2_session_client_new(&fc.h2, cb, &fc))
		abort();
	nghttp2_submit_settings(fc.h2, NGHTTP2_FLAG_NONE, NULL, 0);

	nva[n_nv++] = (nghttp2_nv)NV(":method", "POST");
	nva[n_nv++] = (nghttp2_nv)NV(":scheme", "http");
	nva[n_nv++] = (nghttp2_nv)NV(":path", fuzz_methods[data[0] % FUZZ_N_METHODS]);
	nva[n_nv++] = (nghttp2_nv)NV(":authority", "127.0.0.1:2379");
	nva[n_nv++] = (nghttp2_nv)NV("content-type",
				     fc.flags & FUZZ_CT_PROTO ? "application/grpc+proto" : "application/grpc");
	nva[n_nv++] = (nghttp2_nv)NV("te", "trailers");
	if (fc.flags & FUZZ_TIMEOUT)
		nva[n_nv++] = (nghttp2_nv)NV("grpc-timeout", "4999m");
	if (fc.flags & FUZZ_HASLEADER)
		nva[n_nv++] = (nghttp2_nv)NV("hasleader", "true");
	if (fc.flags & FUZZ_IDENTITY)
		nva[n_nv++] = (nghttp2_nv)NV("grpc-encoding", "identity");

	n_streams = fc.flags & FUZZ_TWICE ? 2 : 1;
	for (i = 0; i < n_streams; i++) {
		st[i].fc = &fc;
		st[i].off = 0;
		prd.source.ptr = &st[i];
		prd.read_callback = fuzz_read;
		if (nghttp2_submit_request(fc.h2, NULL, nva, n_nv, &prd, &st[i]) < 0)
			abort();
	}

	fz_reset();
	c = fz_conn_open(&grpc_proto, fuzz_on_out, &fc);
	fuzz_send(&fc, c);
	fz_drive();
	/* WINDOW_UPDATEs, SETTINGS and PING acks the answers called for. */
	fuzz_send(&fc, c);
	fz_drive();
	fz_conn_close(c);
	nghttp2_session_del(fc.h2);
	free((void *)fc.body);
	return 0;
}
