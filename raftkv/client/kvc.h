/*
 * kvc: the one client library of raftkv: etcd's v3 gRPC API over h2c
 * (HTTP/2 with prior knowledge), asynchronous, on the caller's libuv loop.
 * Everything that talks to a member uses it: the server (a follower
 * forwards writes and linearizable reads to the leader), the tools, the
 * orchestrator, the node agent and the tests.  sync.h adds blocking
 * wrappers for command-line tools and tests.
 *
 * Path of a call:
 *   kvc_call_unary() ─► an endpoint (sticky or round-robin; endpoints that
 *   failed recently are skipped) ─► its one HTTP/2 connection (opened on
 *   demand; every call is a stream multiplexed on it; everything queued in
 *   one loop turn leaves in one write) ─► HEADERS (+ grpc-timeout) and the
 *   5-byte-prefixed message ─► response message reassembled up to the
 *   receive limit ─► trailers: grpc-status/grpc-message ─► 0 or -KV_E*
 *   (err.h, by etcd's exact message text) ─► done_cb.
 *
 * Failover: a call whose request provably never reached a server (connect
 * failure, stream refused, above a GOAWAY's last stream) moves to the next
 * endpoint; an idempotent call (kvc_method.idempotent, or KVC_CALL_RETRY)
 * also moves on UNAVAILABLE or a connection lost mid-call.  Each endpoint
 * is tried at most once per call (after a graceful GOAWAY, up to three
 * fresh connections to the same endpoint too).  Endpoints that failed are
 * skipped for a back-off of 200 ms doubling to 5 s, unless all have.
 *
 * Rules:
 *  - Everything runs on the loop given to kvc_client_new(), in its thread;
 *    nothing blocks it.  Callbacks run from the loop; the library is not
 *    thread-safe.
 *  - A call is caller memory (struct kvc_call, typically embedded in the
 *    caller's own per-request state), like a libuv request.  It must stay
 *    valid from a successful start until its done_cb, and may be freed or
 *    started again from inside done_cb.  Every successful start gets
 *    exactly one done_cb; a start that fails returns the error and never
 *    calls back.
 *  - Unary request bytes are not copied: they must stay valid until
 *    done_cb (the call may be sent again to another endpoint).  Streamed
 *    messages (kvc_call_send) are copied.
 *  - Response bytes handed to a callback are valid only during it.
 *
 * Errors seen by done_cb: 0; a server's status, mapped by its grpc-message
 * through err.h (e.g. -KV_ECOMPACTED); -KV_EDEADLINE (the call's deadline
 * passed, locally or at the server); -KV_ECANCELED (kvc_call_cancel,
 * kvc_client_free); -KV_EUNAVAILABLE (no endpoint answered, or the
 * connection was lost and the call was not safe to resend);
 * -KV_EMSGTOOLARGE (a response above the receive limit); -KV_EUNIMPLEMENTED;
 * -KV_EREMOTE (a status whose text is not in err.h); -KV_EINTERNAL (the
 * server broke the protocol); -KV_EMALFORMED (typed calls: the response
 * did not decode).  kvc_call_grpc_status/kvc_call_grpc_message give the
 * exact status and text in every case.
 */
#ifndef RAFTKV_KVC_H
#define RAFTKV_KVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "rpc.pb-c.h"

struct kvc_client;
struct kvc_call;
struct kvc_conn;

/* --- methods -------------------------------------------------------------- */

enum kvc_kind {
	KVC_UNARY,         /* one request, one response */
	KVC_SERVER_STREAM, /* one request, many responses (Snapshot) */
	KVC_BIDI_STREAM,   /* many requests, many responses (Watch, LeaseKeepAlive) */
};

struct kvc_method {
	const char *path;                             /* "/etcdserverpb.KV/Range" */
	enum kvc_kind kind;
	bool idempotent;                              /* safe to resend after UNAVAILABLE */
	const ProtobufCMessageDescriptor *req_desc;   /* may be NULL for raw use */
	const ProtobufCMessageDescriptor *resp_desc;  /* may be NULL for raw use */
};

/* X(name, path, kind, idempotent, request type, response type): the etcd
 * v3 methods.  Idempotent as clientv3's retry interceptor treats them
 * ("repeatable"): reads and queries, never a mutation. */
#define KVC_METHODS(X)                                                                    \
	X(kv_range, "/etcdserverpb.KV/Range", KVC_UNARY, true, range_request, range_response) \
	X(kv_put, "/etcdserverpb.KV/Put", KVC_UNARY, false, put_request, put_response)      \
	X(kv_delete_range, "/etcdserverpb.KV/DeleteRange", KVC_UNARY, false,                \
	  delete_range_request, delete_range_response)                                      \
	X(kv_txn, "/etcdserverpb.KV/Txn", KVC_UNARY, false, txn_request, txn_response)      \
	X(kv_compact, "/etcdserverpb.KV/Compact", KVC_UNARY, false, compaction_request,     \
	  compaction_response)                                                              \
	X(watch_watch, "/etcdserverpb.Watch/Watch", KVC_BIDI_STREAM, false, watch_request,  \
	  watch_response)                                                                   \
	X(lease_grant, "/etcdserverpb.Lease/LeaseGrant", KVC_UNARY, false,                  \
	  lease_grant_request, lease_grant_response)                                        \
	X(lease_revoke, "/etcdserverpb.Lease/LeaseRevoke", KVC_UNARY, false,                \
	  lease_revoke_request, lease_revoke_response)                                      \
	X(lease_keep_alive, "/etcdserverpb.Lease/LeaseKeepAlive", KVC_BIDI_STREAM, false,   \
	  lease_keep_alive_request, lease_keep_alive_response)                              \
	X(lease_time_to_live, "/etcdserverpb.Lease/LeaseTimeToLive", KVC_UNARY, true,       \
	  lease_time_to_live_request, lease_time_to_live_response)                          \
	X(lease_leases, "/etcdserverpb.Lease/LeaseLeases", KVC_UNARY, true,                 \
	  lease_leases_request, lease_leases_response)                                      \
	X(cluster_member_add, "/etcdserverpb.Cluster/MemberAdd", KVC_UNARY, false,          \
	  member_add_request, member_add_response)                                          \
	X(cluster_member_remove, "/etcdserverpb.Cluster/MemberRemove", KVC_UNARY, false,    \
	  member_remove_request, member_remove_response)                                    \
	X(cluster_member_update, "/etcdserverpb.Cluster/MemberUpdate", KVC_UNARY, false,    \
	  member_update_request, member_update_response)                                    \
	X(cluster_member_list, "/etcdserverpb.Cluster/MemberList", KVC_UNARY, true,         \
	  member_list_request, member_list_response)                                        \
	X(cluster_member_promote, "/etcdserverpb.Cluster/MemberPromote", KVC_UNARY, false,  \
	  member_promote_request, member_promote_response)                                  \
	X(maint_alarm, "/etcdserverpb.Maintenance/Alarm", KVC_UNARY, false, alarm_request,  \
	  alarm_response)                                                                   \
	X(maint_status, "/etcdserverpb.Maintenance/Status", KVC_UNARY, true, status_request, \
	  status_response)                                                                  \
	X(maint_defragment, "/etcdserverpb.Maintenance/Defragment", KVC_UNARY, false,       \
	  defragment_request, defragment_response)                                          \
	X(maint_hash, "/etcdserverpb.Maintenance/Hash", KVC_UNARY, true, hash_request,      \
	  hash_response)                                                                    \
	X(maint_hash_kv, "/etcdserverpb.Maintenance/HashKV", KVC_UNARY, true,               \
	  hash_kvrequest, hash_kvresponse)                                                  \
	X(maint_snapshot, "/etcdserverpb.Maintenance/Snapshot", KVC_SERVER_STREAM, true,    \
	  snapshot_request, snapshot_response)                                              \
	X(maint_move_leader, "/etcdserverpb.Maintenance/MoveLeader", KVC_UNARY, false,      \
	  move_leader_request, move_leader_response)                                        \
	X(auth_enable, "/etcdserverpb.Auth/AuthEnable", KVC_UNARY, false,                   \
	  auth_enable_request, auth_enable_response)                                        \
	X(auth_disable, "/etcdserverpb.Auth/AuthDisable", KVC_UNARY, false,                 \
	  auth_disable_request, auth_disable_response)                                      \
	X(auth_authenticate, "/etcdserverpb.Auth/Authenticate", KVC_UNARY, true,            \
	  authenticate_request, authenticate_response)                                      \
	X(auth_user_add, "/etcdserverpb.Auth/UserAdd", KVC_UNARY, false,                    \
	  auth_user_add_request, auth_user_add_response)                                    \
	X(auth_user_get, "/etcdserverpb.Auth/UserGet", KVC_UNARY, true,                     \
	  auth_user_get_request, auth_user_get_response)                                    \
	X(auth_user_list, "/etcdserverpb.Auth/UserList", KVC_UNARY, true,                   \
	  auth_user_list_request, auth_user_list_response)                                  \
	X(auth_user_delete, "/etcdserverpb.Auth/UserDelete", KVC_UNARY, false,              \
	  auth_user_delete_request, auth_user_delete_response)                              \
	X(auth_user_change_password, "/etcdserverpb.Auth/UserChangePassword", KVC_UNARY,    \
	  false, auth_user_change_password_request, auth_user_change_password_response)     \
	X(auth_user_grant_role, "/etcdserverpb.Auth/UserGrantRole", KVC_UNARY, false,       \
	  auth_user_grant_role_request, auth_user_grant_role_response)                      \
	X(auth_user_revoke_role, "/etcdserverpb.Auth/UserRevokeRole", KVC_UNARY, false,     \
	  auth_user_revoke_role_request, auth_user_revoke_role_response)                    \
	X(auth_role_add, "/etcdserverpb.Auth/RoleAdd", KVC_UNARY, false,                    \
	  auth_role_add_request, auth_role_add_response)                                    \
	X(auth_role_get, "/etcdserverpb.Auth/RoleGet", KVC_UNARY, true,                     \
	  auth_role_get_request, auth_role_get_response)                                    \
	X(auth_role_list, "/etcdserverpb.Auth/RoleList", KVC_UNARY, true,                   \
	  auth_role_list_request, auth_role_list_response)                                  \
	X(auth_role_delete, "/etcdserverpb.Auth/RoleDelete", KVC_UNARY, false,              \
	  auth_role_delete_request, auth_role_delete_response)                              \
	X(auth_role_grant_permission, "/etcdserverpb.Auth/RoleGrantPermission", KVC_UNARY,  \
	  false, auth_role_grant_permission_request, auth_role_grant_permission_response)   \
	X(auth_role_revoke_permission, "/etcdserverpb.Auth/RoleRevokePermission", KVC_UNARY, \
	  false, auth_role_revoke_permission_request, auth_role_revoke_permission_response)

/* kvc_kv_range, kvc_kv_put, ..., kvc_maint_snapshot: one per row above. */
#define KVC_METHOD_DECL(name, path, kind, idem, req, resp) \
	extern const struct kvc_method kvc_##name;
KVC_METHODS(KVC_METHOD_DECL)
#undef KVC_METHOD_DECL

/* The etcd method whose path is exactly path; NULL if none (a caller may
 * still fill a struct kvc_method of its own for any path). */
const struct kvc_method *kvc_method_find(const char *path);

/* --- client ------------------------------------------------------------- */

enum kvc_balance {
	KVC_STICKY,      /* one endpoint until it fails, then the next */
	KVC_ROUND_ROBIN, /* each call on the next endpoint */
};

#define KVC_NO_TIMEOUT UINT32_MAX

struct kvc_options {
	uint32_t dial_timeout_ms;      /* TCP connect (and name lookup) */
	uint32_t call_timeout_ms;      /* default deadline of unary calls; KVC_NO_TIMEOUT: none */
	uint32_t keepalive_ms;         /* PING an idle connection this often; 0: never */
	uint32_t keepalive_timeout_ms; /* no answer to a PING this long: connection dead */
	uint32_t max_recv_bytes;       /* largest response message accepted */
	uint32_t max_attempts;         /* endpoints tried per call; 0: all of them */
	enum kvc_balance balance;
};

/* Defaults: dial 2 s, unary calls 5 s (etcdctl's --command-timeout),
 * no keepalive (timeout 6 s once enabled), receive limit INT32_MAX (as
 * clientv3), sticky. */
void kvc_options_init(struct kvc_options *o);

/* Creates a client of the comma-separated endpoints ("127.0.0.1:2379",
 * "http://host:2379", "[::1]:2379"; https is refused) on loop; opts may be
 * NULL for the defaults.  No connection is made until the first call.
 * Ignores SIGPIPE if it still has its default action (a write to a reset
 * connection must be an error, not the death of the process).
 * Returns 0, or -KV_EINVAL (no or bad endpoint) / -KV_ENOMEM. */
int kvc_client_new(uv_loop_t *loop, const char *endpoints, const struct kvc_options *opts,
		   struct kvc_client **out);

/* Ends every call (done_cb with -KV_ECANCELED, before this returns),
 * closes connections and handles, then frees the client and calls cb (may
 * be NULL) from the loop.  The client must not be used after this call. */
void kvc_client_free(struct kvc_client *c, void (*cb)(void *data), void *data);

/* Metadata sent with every call of the client (e.g. "token" after
 * Authenticate).  Copies both; value NULL removes name.
 * Returns 0, or -KV_EINVAL (name not lower-case, too many) / -KV_ENOMEM. */
int kvc_client_set_header(struct kvc_client *c, const char *name, const char *value);

uv_loop_t *kvc_client_loop(const struct kvc_client *c);
size_t kvc_client_endpoint_count(const struct kvc_client *c);
const char *kvc_client_endpoint(const struct kvc_client *c, size_t i); /* "host:port" */

/* --- calls ---------------------------------------------------------------- */

typedef void (*kvc_done_cb)(struct kvc_call *call, int err);
/* One complete response message of a streaming call. */
typedef void (*kvc_msg_cb)(struct kvc_call *call, const uint8_t *msg, size_t len);
/* Typed unary: resp (NULL unless err is 0) lives in the call's arena. */
typedef void (*kvc_pb_cb)(struct kvc_call *call, int err, ProtobufCMessage *resp);

/* Flags of struct kvc_call. */
#define KVC_CALL_RETRY 0x1u    /* resend on UNAVAILABLE even if the method is not idempotent */
#define KVC_CALL_NO_RETRY 0x2u /* never resend after the request may have left */

struct kvc_md {
	const char *name; /* lower case */
	const char *value;
};

#define KVC_CALL_INLINE 128 /* unary responses up to this size need no allocation */

struct kvc_sendbuf;

/* Private state of a call; reset by every start. */
struct kvc__call_state {
	struct kvc_client *client;
	struct kvc_conn *conn;           /* the connection the call is on */
	struct kvc_call *next, *prev;    /* in conn's list */
	const struct kvc_method *method;
	int32_t stream_id;
	uint8_t phase;                   /* enum kvc__phase (kvc_int.h) */
	bool headers_sent : 1;           /* the request may have reached a server */
	bool body_taken : 1;             /* nghttp2 read some request bytes */
	bool got_msg : 1;                /* a response message arrived */
	bool got_status : 1;
	bool close_send : 1;             /* caller half-closed (streams) */
	bool eof_read : 1;               /* nghttp2 was told EOF */
	bool remote_end : 1;             /* END_STREAM received */
	uint8_t goaway_retries;
	uint16_t attempts;
	int ep;                          /* endpoint index of the current attempt */
	uint64_t tried;                  /* endpoint bitmask */
	uint64_t deadline;               /* uv_now() ms; 0: none */
	size_t heap_idx;                 /* in the client's deadline heap */
	/* request: a unary body (caller memory) or a queue of copies */
	const uint8_t *req;
	size_t req_len, req_off;         /* req_off counts the 5-byte prefix too */
	struct kvc_sendbuf *sq_head, *sq_tail;
	/* response reassembly */
	uint8_t hdr[5];
	uint8_t hdr_have;
	uint32_t msg_len;
	uint8_t *buf;                    /* message being reassembled */
	size_t have, cap;
	uint8_t *resp;                   /* the unary response */
	size_t resp_len;
	int http_status;
	int grpc_status;
	char *grpc_msg;                  /* malloc'd, decoded; NULL: "" */
	/* callbacks */
	kvc_done_cb done_cb;
	kvc_msg_cb msg_cb;
	kvc_pb_cb pb_cb;
	struct arena *arena;
	uint8_t inl[KVC_CALL_INLINE];
};

struct kvc_call {
	/* public: set by the caller before a start; kvc_call_init zeroes them */
	void *data;                /* the caller's */
	uint32_t timeout_ms;       /* 0: the client's default for unary calls, none for
	                            * streams; KVC_NO_TIMEOUT: none */
	unsigned flags;            /* KVC_CALL_* */
	const struct kvc_md *md;   /* extra request metadata, valid until done_cb */
	size_t n_md;
	/* private */
	struct kvc__call_state s;
};

/* Zeroes the public fields (and the rest); once per call object. */
void kvc_call_init(struct kvc_call *call);

/* Raw unary: sends req (a packed request message, not copied, valid until
 * done_cb) and calls done once; inside done, kvc_call_response() gives the
 * response message bytes.  This is the primitive the server's forwarding
 * uses: bytes in, bytes out, nothing decoded.
 * Returns 0, or -KV_EINVAL / -KV_ENOMEM / -KV_ECANCELED (client closing). */
int kvc_call_unary(struct kvc_client *c, struct kvc_call *call, const struct kvc_method *m,
		   const uint8_t *req, size_t len, kvc_done_cb done);
/* Inside done_cb of a unary call: the response message (NULL if none). */
const uint8_t *kvc_call_response(const struct kvc_call *call, size_t *len);

/* Typed unary: packs req into arena (its storage must outlive the call,
 * which it does when the arena is closed after the callback), and unpacks
 * the response with m->resp_desc into the same arena.
 * Returns as kvc_call_unary. */
int kvc_call_unary_pb(struct kvc_client *c, struct kvc_call *call, const struct kvc_method *m,
		      const ProtobufCMessage *req, struct arena *arena, kvc_pb_cb cb);

/* Streaming (any kind): opens the call; each response message goes to
 * on_msg (which may cancel the call), the status to done.  Send requests
 * with kvc_call_send*(), and half-close with kvc_call_close_send() (a
 * server-streaming call sends exactly one message, then half-closes).
 * Returns as kvc_call_unary. */
int kvc_call_stream(struct kvc_client *c, struct kvc_call *call, const struct kvc_method *m,
		    kvc_msg_cb on_msg, kvc_done_cb done);
/* Queues one request message (copied).  Returns 0, or -KV_EINVAL (not a
 * streaming call in progress, or already half-closed) / -KV_ENOMEM. */
int kvc_call_send(struct kvc_call *call, const uint8_t *msg, size_t len);
int kvc_call_send_pb(struct kvc_call *call, const ProtobufCMessage *msg);
/* No more requests: the server sees end of stream after the queued ones. */
int kvc_call_close_send(struct kvc_call *call);

/* Ends a call in progress at once: done_cb runs with -KV_ECANCELED before
 * this returns, and the server sees RST_STREAM(CANCEL).  Harmless on a
 * call that is not in progress. */
void kvc_call_cancel(struct kvc_call *call);

/* The call's status, inside its callbacks: the gRPC code (GRPC_OK while
 * running) and text ("" if none; for local failures, what happened). */
enum grpc_code kvc_call_grpc_status(const struct kvc_call *call);
const char *kvc_call_grpc_message(const struct kvc_call *call);
/* The endpoint ("host:port") of the current or last attempt; NULL if none. */
const char *kvc_call_endpoint(const struct kvc_call *call);
/* True from a successful start until done_cb. */
bool kvc_call_active(const struct kvc_call *call);

#endif
