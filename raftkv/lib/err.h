/*
 * err: the one error table of raftkv.
 *
 * Every failure a request can meet is a KV_E* code.  Functions return 0 or a
 * negative KV_E* code; the table maps each code to the gRPC status and the
 * exact etcd message text that clients match on (clientv3 keys its typed
 * errors by this text), so the server and, later, the client library share
 * one mapping in both directions.
 */
#ifndef RAFTKV_ERR_H
#define RAFTKV_ERR_H

/* gRPC status codes (grpc/status.h numbering). */
enum grpc_code {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

/* X(name, grpc code, message).  Order is the numbering: append only. */
#define KV_ERRORS(X)                                                                      \
	X(KV_ENOMEM, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory")                \
	X(KV_EINTERNAL, GRPC_INTERNAL, "etcdserver: internal error")                      \
	X(KV_EMALFORMED, GRPC_INVALID_ARGUMENT, "grpc: error unmarshalling request")      \
	X(KV_EKEYNOTPROVIDED, GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided")   \
	X(KV_EKEYNOTFOUND, GRPC_INVALID_ARGUMENT, "etcdserver: key not found")            \
	X(KV_EVALUEPROVIDED, GRPC_INVALID_ARGUMENT, "etcdserver: value is provided")      \
	X(KV_ELEASEPROVIDED, GRPC_INVALID_ARGUMENT, "etcdserver: lease is provided")      \
	X(KV_ETOOMANYOPS, GRPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request") \
	X(KV_EDUPLICATEKEY, GRPC_INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request") \
	X(KV_EREQUESTTOOLARGE, GRPC_INVALID_ARGUMENT, "etcdserver: request is too large") \
	X(KV_ECOMPACTED, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted") \
	X(KV_EFUTUREREV, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision") \
	X(KV_ELEASENOTFOUND, GRPC_NOT_FOUND, "etcdserver: requested lease not found")     \
	X(KV_ELEASEEXIST, GRPC_FAILED_PRECONDITION, "etcdserver: lease already exists")   \
	X(KV_ELEASETTLTOOLARGE, GRPC_OUT_OF_RANGE, "etcdserver: too large lease TTL")     \
	X(KV_EMEMBERNOTFOUND, GRPC_NOT_FOUND, "etcdserver: member not found")             \
	X(KV_ENOSPACE, GRPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded") \
	X(KV_ETOOMANYREQUESTS, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests")  \
	X(KV_ENOLEADER, GRPC_UNAVAILABLE, "etcdserver: no leader")                        \
	X(KV_ELEADERCHANGED, GRPC_UNAVAILABLE, "etcdserver: leader changed")              \
	X(KV_ESTOPPED, GRPC_UNAVAILABLE, "etcdserver: server stopped")                    \
	X(KV_ETIMEOUT, GRPC_UNAVAILABLE, "etcdserver: request timed out")                 \
	X(KV_ENOTLEADER, GRPC_FAILED_PRECONDITION, "etcdserver: not leader")              \
	X(KV_EBADTRANSFEREE, GRPC_FAILED_PRECONDITION, "etcdserver: bad leader transferee") \
	X(KV_EDEADLINE, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded")              \
	X(KV_ECANCELED, GRPC_CANCELLED, "context canceled")                               \
	X(KV_EUNIMPLEMENTED, GRPC_UNIMPLEMENTED, "etcdserver: not implemented")           \
	X(KV_EMSGTOOLARGE, GRPC_RESOURCE_EXHAUSTED, "grpc: received message larger than max") \
	X(KV_EIO, GRPC_UNAVAILABLE, "etcdserver: storage failure")                        \
	X(KV_EINVAL, GRPC_INVALID_ARGUMENT, "etcdserver: invalid argument")               \
	X(KV_ECORRUPT, GRPC_DATA_LOSS, "etcdserver: corrupt cluster")                     \
	X(KV_EMEMBEREXIST, GRPC_FAILED_PRECONDITION, "etcdserver: member ID already exist") \
	X(KV_EPEERURLEXIST, GRPC_FAILED_PRECONDITION, "etcdserver: Peer URLs already exists") \
	X(KV_EMEMBERNOTENOUGHSTARTED, GRPC_FAILED_PRECONDITION,                            \
	  "etcdserver: re-configuration failed due to not enough started members")         \
	X(KV_EMEMBERBADURLS, GRPC_INVALID_ARGUMENT, "etcdserver: given member URLs are invalid") \
	X(KV_EMEMBERNOTLEARNER, GRPC_FAILED_PRECONDITION,                                  \
	  "etcdserver: can only promote a learner member")                                 \
	X(KV_ELEARNERNOTREADY, GRPC_FAILED_PRECONDITION,                                   \
	  "etcdserver: can only promote a learner member which is in sync with leader")    \
	X(KV_ETOOMANYLEARNERS, GRPC_FAILED_PRECONDITION,                                   \
	  "etcdserver: too many learner members in cluster")                               \
	X(KV_ELEARNERRPC, GRPC_UNAVAILABLE, "etcdserver: rpc not supported for learner") \
	/* Client library (kvc): no server reachable, or the connection was lost. */  \
	X(KV_EUNAVAILABLE, GRPC_UNAVAILABLE, "grpc: connection unavailable")              \
	/* Client library (kvc): a server status whose message is not in this       \
	 * table; the call keeps the server's code and text. */                      \
	X(KV_EREMOTE, GRPC_UNKNOWN, "grpc: unrecognized error from server")              \
	X(KV_EUNHEALTHY, GRPC_UNAVAILABLE, "etcdserver: unhealthy cluster")

enum kv_err {
	KV_OK = 0,
	KV_E__FIRST = 1000, /* keep clear of -errno values */
#define KV_ERR_ENUM(name, code, msg) name,
	KV_ERRORS(KV_ERR_ENUM)
#undef KV_ERR_ENUM
	KV_E__LAST
};

/* Functions return 0 or -KV_E*; these accept either sign. */
const char *kv_err_message(int err);
enum grpc_code kv_err_grpc_code(int err);
/* Short symbolic name ("KV_ECOMPACTED") for logs. */
const char *kv_err_name(int err);
/* The code whose etcd message is exactly msg (client side); 0 if none. */
int kv_err_from_message(const char *msg);

#endif
