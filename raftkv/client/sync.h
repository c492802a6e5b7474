/*
 * sync: blocking wrappers over the client library for command-line tools
 * and tests.  A struct kvc_sync owns a private libuv loop and a kvc_client
 * on it; each call runs that loop until the call ends, so it must never be
 * used from inside another loop's callback (the server and other async
 * programs use kvc.h directly).
 *
 *	struct kvc_sync *s;
 *	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
 *	ProtobufCMessage *resp;
 *	struct arena a;
 *
 *	kvc_sync_new("127.0.0.1:2379", NULL, &s);
 *	arena_init(&a);
 *	rv = kvc_sync_unary(s, "/etcdserverpb.KV/Put", &req.base,
 *			    &etcdserverpb__put_response__descriptor, &a, &resp, 0);
 *	... ((Etcdserverpb__PutResponse *)resp)->header->revision ...
 *	arena_close(&a);
 *	kvc_sync_free(s);
 *
 * Errors are those of kvc.h; kvc_sync_errmsg() keeps the text of the last
 * failure (the server's grpc-message, or what went wrong locally).
 */
#ifndef RAFTKV_KVC_SYNC_H
#define RAFTKV_KVC_SYNC_H

#include "client/kvc.h"

struct kvc_sync;

/* endpoints and opts as kvc_client_new().  Returns 0, or -KV_EINVAL / -KV_ENOMEM. */
int kvc_sync_new(const char *endpoints, const struct kvc_options *opts, struct kvc_sync **out);
void kvc_sync_free(struct kvc_sync *s);

/* Typed unary call by method path (any path; etcd's get their retry
 * policy from the method table).  The response is unpacked into arena.
 * timeout_ms 0: the client's default.  Returns 0 or -KV_E*. */
int kvc_sync_unary(struct kvc_sync *s, const char *path, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_desc, struct arena *arena,
		   ProtobufCMessage **resp, uint32_t timeout_ms);
/* The same with a method (e.g. &kvc_kv_range). */
int kvc_sync_call(struct kvc_sync *s, const struct kvc_method *m, const ProtobufCMessage *req,
		  struct arena *arena, ProtobufCMessage **resp, uint32_t timeout_ms);
/* Raw unary: *resp is malloc'd (free() it), NULL when there is none. */
int kvc_sync_unary_raw(struct kvc_sync *s, const struct kvc_method *m, const uint8_t *req,
		       size_t len, uint8_t **resp, size_t *resp_len, uint32_t timeout_ms);

/* A server-streaming call (Snapshot): sends req, half-closes, and gives
 * each response message to fn until the server ends the stream.  fn
 * returning non-zero cancels the call; that value is then returned.
 * timeout_ms 0: none.  Returns 0, fn's value, or -KV_E*. */
typedef int (*kvc_sync_msg_fn)(void *ud, const uint8_t *msg, size_t len);
int kvc_sync_stream(struct kvc_sync *s, const struct kvc_method *m, const ProtobufCMessage *req,
		    kvc_sync_msg_fn fn, void *ud, uint32_t timeout_ms);

/* Runs the private loop until *flag becomes true or timeout_ms passes (0:
 * no limit), for tests that drive async calls on kvc_sync_client().
 * Returns 0, or -KV_EDEADLINE. */
int kvc_sync_run(struct kvc_sync *s, const bool *flag, uint32_t timeout_ms);

const char *kvc_sync_errmsg(const struct kvc_sync *s);
enum grpc_code kvc_sync_grpc_status(const struct kvc_sync *s);
/* The endpoint that answered the last call. */
const char *kvc_sync_endpoint(const struct kvc_sync *s);
struct kvc_client *kvc_sync_client(struct kvc_sync *s);
uv_loop_t *kvc_sync_loop(struct kvc_sync *s);

#endif
