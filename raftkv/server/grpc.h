/*
 * grpc: gRPC over HTTP/2 (h2c, prior knowledge) on a client connection.
 * One nghttp2 server session per connection; each request stream becomes a
 * struct rpc_call routed through rpc_method_find() and served by the
 * services through the rpc.h contract (grpc.c implements every rpc_call_*).
 *
 * Limits (as etcd/grpc-go where they exist):
 *   receive: --max-request-bytes + 512 KiB per message, checked from the
 *     5-byte prefix before anything is allocated (RESOURCE_EXHAUSTED
 *     "grpc: received message larger than max (N vs. M)");
 *   64 KiB of request headers per stream; concurrent streams per
 *     connection: --max-concurrent-streams, at most GRPC_MAX_STREAMS (etcd
 *     advertises 2^32-1; clients queue above the limit, so only abusive
 *     ones notice; each live call can hold a 4 KiB arena, so the cap is
 *     what a connection can pin); GRPC_CONN_BUFFER_MAX bytes of partly received messages
 *     per connection, and large ones within the listener's budget for
 *     requests still arriving.  A message that would go beyond waits:
 *     stream windows are opened only for data taken (nghttp2's automatic
 *     WINDOW_UPDATE is off; the connection's opens at once), so its
 *     stream stops at its initial 64 KiB window (opened to the whole message
 *     once its buffer is granted) until buffers are given back, as
 *     grpc-go's flow control holds clients (etcd takes a burst of a
 *     hundred 1.4 MB puts on one connection).  Only what waiting streams
 *     hold past 8 MiB more is refused (RESOURCE_EXHAUSTED
 *     "etcdserver: too many requests"); a message must arrive whole within GRPC_MSG_READ_MS
 *     plus a second per GRPC_MSG_MIN_RATE bytes of it (else
 *     DEADLINE_EXCEEDED), as HTTP/1 requests must.
 *   send: while a connection's unary answers wait unread (socket full or
 *     flow-control windows shut) above GRPC_OUT_HIGH, its completed unary
 *     requests are not started and answers computed late (reads after
 *     their barrier, rpc_call_wait_room) wait, until they drain under
 *     GRPC_OUT_LOW; reading goes on (the client's WINDOW_UPDATEs are what
 *     drains them).  An answer that would still take them over
 *     GRPC_OUT_MAX fails with RESOURCE_EXHAUSTED "etcdserver: too many
 *     requests" (one answer alone always goes, whatever its size).
 *     Streaming calls bound their own queues (watch, snapshot) and all read
 *     as full while the whole connection holds GRPC_OUT_MAX.
 */
#ifndef RAFTKV_GRPC_H
#define RAFTKV_GRPC_H

#include "server/listener.h"

#define GRPC_MAX_STREAMS 1000
#define GRPC_MAX_HEADER_LIST (64 * 1024)
#define GRPC_CONN_BUFFER_MAX (64u << 20)
#define GRPC_MSG_READ_MS 10000
#define GRPC_MSG_MIN_RATE (64 * 1024)
#define GRPC_OUT_HIGH (4u << 20)
#define GRPC_OUT_LOW (1u << 20)
#define GRPC_OUT_MAX (64u << 20)
/* etcd: the gRPC receive limit is --max-request-bytes plus this. */
#define GRPC_RECV_EXTRA (512 * 1024)

extern const struct conn_proto grpc_proto;

#endif
