/*
 * rpc: the contract between the transports (grpc.c, and gw.c for the JSON
 * gateway) and the services (svc_*.c).
 *
 * The transport owns every struct rpc_call: it routes the request path
 * through rpc_method_find(), reassembles length-prefixed messages (checking
 * each length against the receive limit before allocating anything) and hands
 * each complete message to method->on_message.  A service answers, now or
 * later, with rpc_call_send() and ends the call with rpc_call_finish().
 *
 * Lifetime: a call lives until it is finished AND released.  A service that
 * answers asynchronously takes rpc_call_hold() before returning and calls
 * rpc_call_release() when its async work completes.  If the client resets the
 * stream, the connection drops or the grpc-timeout deadline passes first, the
 * transport marks the call gone (and answers DEADLINE_EXCEEDED itself on a
 * deadline); sends and finishes on a gone call are harmless no-ops.
 */
#ifndef RAFTKV_RPC_H
#define RAFTKV_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/err.h"

struct server;
struct rpc_call;

enum rpc_kind {
	RPC_UNARY,         /* one request, one response */
	RPC_SERVER_STREAM, /* one request, many responses (Snapshot) */
	RPC_BIDI_STREAM,   /* many requests, many responses (Watch, LeaseKeepAlive) */
};

struct rpc_method {
	const char *path; /* "/etcdserverpb.KV/Range" */
	enum rpc_kind kind;
	/* Once per complete request message; msg is valid only during the call. */
	void (*on_message)(struct rpc_call *call, const uint8_t *msg, size_t len);
	/* Optional: the client half-closed a streaming call (no more messages). */
	void (*on_half_close)(struct rpc_call *call);
	/* Optional: the call is gone (reset, connection closed, finished); free
	 * per-call service state here.  Called exactly once. */
	void (*on_close)(struct rpc_call *call);
};

/* The service table (rpc.c): NULL when the path names no method we serve.
 * *service_known tells UNIMPLEMENTED "unknown method" from "unknown service". */
const struct rpc_method *rpc_method_find(const char *path, size_t len, bool *service_known);
/* The table by position, for per-method counters (metrics.c). */
size_t rpc_method_count(void);
const struct rpc_method *rpc_method_at(size_t i);
size_t rpc_method_index(const struct rpc_method *m);

/* --- calls: the services' side ------------------------------------------
 * Two transports make calls: grpc.c (gRPC over HTTP/2) and gw.c (etcd's
 * JSON gateway over HTTP/1.1).  These functions (rpc.c) dispatch through the
 * call's rpc_call_ops, so a service never knows which one it is serving. */
struct server *rpc_call_server(const struct rpc_call *call);
void *rpc_call_data(const struct rpc_call *call);
void rpc_call_set_data(struct rpc_call *call, void *data);
/* Request metadata (lower-case name, e.g. "token", "hasleader"); NULL if absent. */
const char *rpc_call_header(const struct rpc_call *call, const char *name);
bool rpc_call_gone(const struct rpc_call *call);
void rpc_call_hold(struct rpc_call *call);
void rpc_call_release(struct rpc_call *call);
/* Packs msg and queues it as one gRPC message (response HEADERS go first). */
int rpc_call_send(struct rpc_call *call, const ProtobufCMessage *msg);
/* Queues one message already encoded: head[0, head_len) (copied) followed
 * by blob[off, off + len) (referenced until written, never copied here).
 * Lets a fan-out share one encoding between many calls.  The message counts
 * in full against the call's output (rpc_call_pending_bytes) and the
 * transport's bounds, exactly as rpc_call_send would; a slice under half of
 * blob->len is copied, so a queue keeps alive at most twice what it counts
 * (blob->len must be what the blob holds allocated).  -KV_EUNIMPLEMENTED
 * when the transport cannot (the JSON gateway re-encodes every message):
 * rpc_call_can_send_raw() tells beforehand. */
struct blob;
int rpc_call_send_raw(struct rpc_call *call, const uint8_t *head, size_t head_len,
		      struct blob *blob, size_t off, size_t len);
bool rpc_call_can_send_raw(const struct rpc_call *call);
/* Bytes sent on the call that the transport still holds because the client
 * has not taken them yet (flow control, slow socket): a streaming service
 * pauses while this is high instead of queueing without bound.  0 for a
 * transport that does not tell. */
size_t rpc_call_pending_bytes(const struct rpc_call *call);
/* Backpressure for an answer computed late (a read after its barrier): 0
 * when the client can take it now; 1 when the transport already holds too
 * much the client has not read, and then fn(arg) runs once there is room
 * again or the call is gone (check rpc_call_gone).  One wait per call at a
 * time.  0 for a transport that does not tell. */
int rpc_call_wait_room(struct rpc_call *call, void (*fn)(void *arg), void *arg);
/* Ends the call: err 0 is grpc-status 0, otherwise a KV_E* code mapped
 * through err.h.  Trailers-only when nothing was sent. Idempotent. */
int rpc_call_finish(struct rpc_call *call, int err);
int rpc_call_finish_status(struct rpc_call *call, enum grpc_code code, const char *message);

/* --- calls: the transports' side ----------------------------------------
 * Each transport defines its own struct rpc_call (opaque to everyone else)
 * whose FIRST member is a struct rpc_call_head pointing to its ops; the
 * functions above call the same-named op.  rpc_call_finish maps err through
 * err.h and calls finish_status. */
struct rpc_call_ops {
	struct server *(*server)(const struct rpc_call *call);
	void *(*data)(const struct rpc_call *call);
	void (*set_data)(struct rpc_call *call, void *data);
	const char *(*header)(const struct rpc_call *call, const char *name);
	bool (*gone)(const struct rpc_call *call);
	void (*hold)(struct rpc_call *call);
	void (*release)(struct rpc_call *call);
	int (*send)(struct rpc_call *call, const ProtobufCMessage *msg);
	int (*finish_status)(struct rpc_call *call, enum grpc_code code, const char *message);
	size_t (*pending_bytes)(const struct rpc_call *call); /* optional */
	int (*wait_room)(struct rpc_call *call, void (*fn)(void *arg), void *arg); /* optional */
	int (*send_raw)(struct rpc_call *call, const uint8_t *head, size_t head_len,
			struct blob *blob, size_t off, size_t len); /* optional */
};

struct rpc_call_head {
	const struct rpc_call_ops *ops;
};

#endif
