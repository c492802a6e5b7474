/*
 * gw: the JSON gateway (see gw.h).  One struct gw_call per HTTP request:
 *
 *   gw_handle   route, decode the body (pbjson: Go's json.Decoder, so a body
 *               may hold several values for a bidi stream), pack each
 *               message and hand it to the method's on_message, exactly as
 *               grpc.c does with a gRPC message; then on_half_close.
 *   send        unary: keep the message's JSON for the answer; streams:
 *               the first message sends the chunked head, each message one
 *               {"result":...} line.
 *   finish      unary: the HTTP answer (Content-Length up to Go's 2048-byte
 *               buffer, chunked beyond; errors chunked with the gRPC
 *               trailer as grpc-gateway writes them); streams: the last
 *               chunk, after an {"error":{...}} one on failure.
 *   gone        http1 tells us the client left: sends become no-ops and the
 *               service's on_close runs.
 *
 * on_close runs once per call whose service saw it: when the client leaves,
 * or on the loop turn after finish (a service may still be inside its own
 * code when it finishes, as with grpc.c, whose stream closes later).
 */
#include "server/gw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/pbjson.h"
#include "rpc.pb-c.h"
#include "server/config.h"
#include "server/grpc.h"
#include "server/rpc.h"
#include "server/server.h"

/* Go's ResponseWriter buffers this much; a bigger body goes out chunked. */
#define GW_GO_BUFFER 2048
#define GW_DEFAULT_MAX_REQUEST 1572864u

static const char gw_ok_headers[] =
	"Content-Type: application/json\r\nGrpc-Metadata-Content-Type: application/grpc\r\n";

/* etcd 3.4's google.api.http bindings (rpc.proto), after the prefix.
 * HashKV is bound to maintenance/hash too, where Hash shadows it. */
struct gw_route {
	const char *path;
	const ProtobufCServiceDescriptor *svc;
	const char *method;
};

static const struct gw_route gw_routes[] = {
	{"kv/range", &etcdserverpb__kv__descriptor, "Range"},
	{"kv/put", &etcdserverpb__kv__descriptor, "Put"},
	{"kv/deleterange", &etcdserverpb__kv__descriptor, "DeleteRange"},
	{"kv/txn", &etcdserverpb__kv__descriptor, "Txn"},
	{"kv/compaction", &etcdserverpb__kv__descriptor, "Compact"},
	{"watch", &etcdserverpb__watch__descriptor, "Watch"},
	{"lease/grant", &etcdserverpb__lease__descriptor, "LeaseGrant"},
	{"lease/revoke", &etcdserverpb__lease__descriptor, "LeaseRevoke"},
	{"kv/lease/revoke", &etcdserverpb__lease__descriptor, "LeaseRevoke"},
	{"lease/keepalive", &etcdserverpb__lease__descriptor, "LeaseKeepAlive"},
	{"lease/timetolive", &etcdserverpb__lease__descriptor, "LeaseTimeToLive"},
	{"kv/lease/timetolive", &etcdserverpb__lease__descriptor, "LeaseTimeToLive"},
	{"lease/leases", &etcdserverpb__lease__descriptor, "LeaseLeases"},
	{"kv/lease/leases", &etcdserverpb__lease__descriptor, "LeaseLeases"},
	{"cluster/member/add", &etcdserverpb__cluster__descriptor, "MemberAdd"},
	{"cluster/member/remove", &etcdserverpb__cluster__descriptor, "MemberRemove"},
	{"cluster/member/update", &etcdserverpb__cluster__descriptor, "MemberUpdate"},
	{"cluster/member/list", &etcdserverpb__cluster__descriptor, "MemberList"},
	{"cluster/member/promote", &etcdserverpb__cluster__descriptor, "MemberPromote"},
	{"maintenance/alarm", &etcdserverpb__maintenance__descriptor, "Alarm"},
	{"maintenance/status", &etcdserverpb__maintenance__descriptor, "Status"},
	{"maintenance/defragment", &etcdserverpb__maintenance__descriptor, "Defragment"},
	{"maintenance/hash", &etcdserverpb__maintenance__descriptor, "Hash"},
	{"maintenance/snapshot", &etcdserverpb__maintenance__descriptor, "Snapshot"},
	{"maintenance/transfer-leadership", &etcdserverpb__maintenance__descriptor, "MoveLeader"},
	{"auth/enable", &etcdserverpb__auth__descriptor, "AuthEnable"},
	{"auth/disable", &etcdserverpb__auth__descriptor, "AuthDisable"},
	{"auth/authenticate", &etcdserverpb__auth__descriptor, "Authenticate"},
	{"auth/user/add", &etcdserverpb__auth__descriptor, "UserAdd"},
	{"auth/user/get", &etcdserverpb__auth__descriptor, "UserGet"},
	{"auth/user/list", &etcdserverpb__auth__descriptor, "UserList"},
	{"auth/user/delete", &etcdserverpb__auth__descriptor, "UserDelete"},
	{"auth/user/changepw", &etcdserverpb__auth__descriptor, "UserChangePassword"},
	{"auth/user/grant", &etcdserverpb__auth__descriptor, "UserGrantRole"},
	{"auth/user/revoke", &etcdserverpb__auth__descriptor, "UserRevokeRole"},
	{"auth/role/add", &etcdserverpb__auth__descriptor, "RoleAdd"},
	{"auth/role/get", &etcdserverpb__auth__descriptor, "RoleGet"},
	{"auth/role/list", &etcdserverpb__auth__descriptor, "RoleList"},
	{"auth/role/delete", &etcdserverpb__auth__descriptor, "RoleDelete"},
	{"auth/role/grant", &etcdserverpb__auth__descriptor, "RoleGrantPermission"},
	{"auth/role/revoke", &etcdserverpb__auth__descriptor, "RoleRevokePermission"},
};

/* What etcd 3.4 serves.  /v3alpha/ (etcd3gw's default) answers 404 there,
 * and a drop-in replacement must answer as etcd does: etcd3gw users pass
 * api_path='/v3/' against etcd 3.4 too. */
static const char *const gw_prefixes[] = {"/v3/", "/v3beta/"};

struct gw_call {
	struct rpc_call_head head;       /* first: rpc.c dispatches through it */
	struct server *srv;
	struct http1_req *req;           /* NULL once answered or gone */
	const struct rpc_method *method; /* NULL: not served here */
	enum rpc_kind kind;
	void *data;
	char *md;                        /* "name\0value\0" request metadata */
	size_t md_len;
	struct pbjson_buf out;           /* unary: the response's JSON */
	uv_timer_t close_timer;
	uint32_t refs;
	bool gone;
	bool finished;
	bool seen;                       /* the service was given the call */
	bool closed;                     /* on_close ran or is scheduled */
	bool have_out;
	bool sent_request;               /* a request message went in */
};

static struct gw_call *gw_of(struct rpc_call *call)
{
	return (struct gw_call *)(void *)call;
}

static const struct gw_call *gw_of_const(const struct rpc_call *call)
{
	return (const struct gw_call *)(const void *)call;
}

static struct rpc_call *gw_rpc(struct gw_call *gc)
{
	return (struct rpc_call *)(void *)gc;
}

/* grpc-gateway v1's HTTPStatusFromCode. */
static int gw_http_status(enum grpc_code code)
{
	switch (code) {
	case GRPC_OK: return 200;
	case GRPC_CANCELLED: return 408;
	case GRPC_UNKNOWN: return 500;
	case GRPC_INVALID_ARGUMENT: return 400;
	case GRPC_DEADLINE_EXCEEDED: return 504;
	case GRPC_NOT_FOUND: return 404;
	case GRPC_ALREADY_EXISTS: return 409;
	case GRPC_PERMISSION_DENIED: return 403;
	case GRPC_UNAUTHENTICATED: return 401;
	case GRPC_RESOURCE_EXHAUSTED: return 429;
	case GRPC_FAILED_PRECONDITION: return 412;
	case GRPC_ABORTED: return 409;
	case GRPC_OUT_OF_RANGE: return 400;
	case GRPC_UNIMPLEMENTED: return 501;
	case GRPC_INTERNAL: return 500;
	case GRPC_UNAVAILABLE: return 503;
	case GRPC_DATA_LOSS: return 500;
	}
	return 500;
}

static const char *gw_status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 429: return "Too Many Requests";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Internal Server Error";
	}
}

/* {"error":msg,"message":msg,"code":n}, jsonpb leaving out what is empty. */
static int gw_error_json(struct pbjson_buf *b, enum grpc_code code, const char *msg)
{
	char num[16];
	size_t n = msg ? strlen(msg) : 0;
	int rv = pbjson_buf_append(b, "{", 1);

	if (rv == 0 && n)
		rv = pbjson_buf_append(b, "\"error\":", 8) || pbjson_buf_string(b, msg, n) ||
		     pbjson_buf_append(b, ",\"message\":", 11) || pbjson_buf_string(b, msg, n);
	if (rv == 0 && code != GRPC_OK) {
		snprintf(num, sizeof(num), "%d", (int)code);
		rv = (n && pbjson_buf_append(b, ",", 1)) || pbjson_buf_append(b, "\"code\":", 7) ||
		     pbjson_buf_append(b, num, strlen(num));
	}
	if (rv == 0)
		rv = pbjson_buf_append(b, "}", 1);
	return rv ? -KV_ENOMEM : 0;
}

/* A stream's failure: {"error":{grpc_code,http_code,message,http_status}}. */
static int gw_stream_error_json(struct pbjson_buf *b, enum grpc_code code, const char *msg)
{
	int status = gw_http_status(code);
	const char *text = gw_status_text(status);
	char num[48];
	int rv;

	snprintf(num, sizeof(num), "{\"error\":{\"grpc_code\":%d,\"http_code\":%d", (int)code, status);
	rv = pbjson_buf_append(b, num, strlen(num));
	if (rv == 0 && msg && *msg)
		rv = pbjson_buf_append(b, ",\"message\":", 11) || pbjson_buf_string(b, msg, strlen(msg));
	if (rv == 0)
		rv = pbjson_buf_append(b, ",\"http_status\":", 15) || pbjson_buf_string(b, text, strlen(text)) ||
		     pbjson_buf_append(b, "}}", 2);
	return rv ? -KV_ENOMEM : 0;
}

/* --- call lifetime ------------------------------------------------------ */

static void gw_call_free(struct gw_call *gc)
{
	pbjson_buf_close(&gc->out);
	free(gc->md);
	free(gc);
}

static void gw_call_hold(struct rpc_call *call)
{
	gw_of(call)->refs++;
}

static void gw_call_release(struct rpc_call *call)
{
	struct gw_call *gc = gw_of(call);
	if (--gc->refs == 0)
		gw_call_free(gc);
}

static void gw_close_timer_closed(uv_handle_t *h)
{
	gw_call_release(h->data);
}

static void gw_close_timer_cb(uv_timer_t *t)
{
	struct gw_call *gc = t->data;
	gc->method->on_close(gw_rpc(gc));
	uv_close((uv_handle_t *)t, gw_close_timer_closed);
}

/* The HTTP side is done with the call: answered, or the client left. */
static void gw_detach(struct gw_call *gc)
{
	struct http1_req *req = gc->req;

	if (!req)
		return;
	gc->req = NULL;
	http1_req_on_gone(req, NULL, NULL);
	http1_req_release(req);
	gw_call_release(gw_rpc(gc)); /* the request's reference */
}

/* finish: the answer is written; on_close on the next loop turn. */
static void gw_finished(struct gw_call *gc)
{
	if (!gc->closed && gc->seen && gc->method && gc->method->on_close) {
		gc->closed = true;
		gc->refs++; /* dropped when the timer is closed */
		uv_timer_init(gc->srv->loop, &gc->close_timer);
		gc->close_timer.data = gc;
		uv_timer_start(&gc->close_timer, gw_close_timer_cb, 0, 0);
	}
	gc->closed = true;
	gw_detach(gc);
}

static void gw_req_gone(struct http1_req *req, void *arg)
{
	struct gw_call *gc = arg;

	/* the request's reference keeps gc alive through on_close */
	gc->gone = true;
	if (!gc->closed && gc->seen && gc->method && gc->method->on_close) {
		gc->closed = true;
		gc->method->on_close(gw_rpc(gc));
	}
	gc->closed = true;
	gc->req = NULL;
	http1_req_release(req);
	gw_call_release(gw_rpc(gc));
}

/* --- rpc_call_ops ----------------------------------------------------- */

static struct server *gw_call_server(const struct rpc_call *call)
{
	return gw_of_const(call)->srv;
}

static void *gw_call_data(const struct rpc_call *call)
{
	return gw_of_const(call)->data;
}

static void gw_call_set_data(struct rpc_call *call, void *data)
{
	gw_of(call)->data = data;
}

static const char *gw_call_header(const struct rpc_call *call, const char *name)
{
	const struct gw_call *gc = gw_of_const(call);
	const char *p = gc->md, *end = gc->md + gc->md_len, *v;

	while (p && p < end) {
		v = p + strlen(p) + 1;
		if (strcmp(p, name) == 0)
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}

static bool gw_call_gone(const struct rpc_call *call)
{
	return gw_of_const(call)->gone;
}

/* The head of a streamed answer; a stream that was sent a request carries
 * the gRPC response header grpc-gateway fetched for it. */
static int gw_stream_begin(struct gw_call *gc, int status)
{
	return http1_stream_begin(gc->req, status,
				  gc->sent_request ? gw_ok_headers : "Content-Type: application/json\r\n");
}

static int gw_call_send(struct rpc_call *call, const ProtobufCMessage *msg)
{
	struct gw_call *gc = gw_of(call);
	struct pbjson_buf b;
	int rv;

	if (gc->gone || gc->finished || !gc->req)
		return -KV_ECANCELED;
	if (gc->kind == RPC_UNARY) {
		gc->out.len = 0;
		rv = pbjson_encode(&gc->out, msg, 0);
		gc->have_out = rv == 0;
		return rv;
	}
	if (!gc->req->streaming) {
		rv = gw_stream_begin(gc, 200);
		if (rv)
			return rv;
	}
	pbjson_buf_init(&b);
	rv = pbjson_buf_append(&b, "{\"result\":", 10);
	if (rv == 0)
		rv = pbjson_encode(&b, msg, 0);
	if (rv == 0)
		rv = pbjson_buf_append(&b, "}\n", 2);
	if (rv == 0)
		rv = http1_stream_write(gc->req, b.data, b.len);
	pbjson_buf_close(&b);
	return rv;
}

static int gw_answer_unary(struct gw_call *gc, enum grpc_code code, const char *message)
{
	struct http1_req *req = gc->req;
	struct pbjson_buf b;
	int rv;

	if (code == GRPC_OK && !gc->have_out) {
		code = GRPC_INTERNAL;
		message = "server closed the stream without sending a response";
	}
	if (code == GRPC_OK) {
		if (gc->out.len <= GW_GO_BUFFER)
			return http1_respond(req, 200, NULL, gw_ok_headers, gc->out.data, gc->out.len);
		rv = http1_stream_begin(req, 200, gw_ok_headers);
		if (rv == 0)
			rv = http1_stream_write(req, gc->out.data, gc->out.len);
		if (rv == 0)
			rv = http1_stream_end(req, NULL);
		return rv;
	}
	pbjson_buf_init(&b);
	rv = gw_error_json(&b, code, message);
	if (rv == 0)
		rv = http1_stream_begin(req, gw_http_status(code),
					"Content-Type: application/json\r\nTrailer: Grpc-Trailer-Content-Type\r\n");
	if (rv == 0)
		rv = http1_stream_write(req, b.data, b.len);
	if (rv == 0)
		rv = http1_stream_end(req, "Grpc-Trailer-Content-Type: application/grpc\r\n");
	pbjson_buf_close(&b);
	return rv;
}

static int gw_answer_stream(struct gw_call *gc, enum grpc_code code, const char *message)
{
	struct http1_req *req = gc->req;
	struct pbjson_buf b;
	int rv = 0;

	if (!req->streaming)
		rv = gw_stream_begin(gc, gw_http_status(code));
	if (rv == 0 && code != GRPC_OK) {
		pbjson_buf_init(&b);
		rv = gw_stream_error_json(&b, code, message);
		if (rv == 0)
			rv = http1_stream_write(req, b.data, b.len);
		pbjson_buf_close(&b);
	}
	if (rv == 0)
		rv = http1_stream_end(req, NULL);
	return rv;
}

static int gw_call_finish_status(struct rpc_call *call, enum grpc_code code, const char *message)
{
	struct gw_call *gc = gw_of(call);
	int rv;

	if (gc->gone || gc->finished || !gc->req)
		return 0;
	gc->finished = true;
	if (gc->kind == RPC_UNARY)
		rv = gw_answer_unary(gc, code, message);
	else
		rv = gw_answer_stream(gc, code, message);
	gw_finished(gc);
	return rv == -KV_ECANCELED ? 0 : rv;
}

static const struct rpc_call_ops gw_call_ops = {
	.server = gw_call_server,
	.data = gw_call_data,
	.set_data = gw_call_set_data,
	.header = gw_call_header,
	.gone = gw_call_gone,
	.hold = gw_call_hold,
	.release = gw_call_release,
	.send = gw_call_send,
	.finish_status = gw_call_finish_status,
};

/* --- requests ----------------------------------------------------------- */

/* A failure of the gateway itself, before any service saw the request:
 * plain Content-Length, no gRPC metadata, as grpc-gateway answers it. */
static void gw_reject(struct gw_call *gc, enum grpc_code code, const char *message)
{
	struct pbjson_buf b;

	gc->finished = true;
	pbjson_buf_init(&b);
	if (gw_error_json(&b, code, message) == 0)
		http1_respond(gc->req, gw_http_status(code), NULL, "Content-Type: application/json\r\n", b.data,
			      b.len);
	else
		http1_error(gc->req, 500, "Internal Server Error", NULL);
	pbjson_buf_close(&b);
	gw_finished(gc);
}

/* grpc-gateway forwards Authorization (as "authorization") and every
 * Grpc-Metadata-<Name> header (as "<name>") to the gRPC call. */
static int gw_copy_metadata(struct gw_call *gc, const struct http1_req *req)
{
	static const char pfx[] = "Grpc-Metadata-";
	size_t pl = sizeof(pfx) - 1, need = 0, i, w = 0;
	uint32_t k;

	for (k = 0; k < req->n_fields; k++)
		need += req->fields[k].name_len + req->fields[k].value_len + 2;
	if (need == 0)
		return 0;
	gc->md = malloc(need);
	if (!gc->md)
		return -KV_ENOMEM;
	for (k = 0; k < req->n_fields; k++) {
		const struct http1_field *f = &req->fields[k];
		const char *name;
		size_t nl;
		if (f->name_len == 13 && strncasecmp(f->name, "Authorization", 13) == 0) {
			name = "authorization";
			nl = 13;
		} else if (f->name_len > pl && strncasecmp(f->name, pfx, pl) == 0) {
			name = f->name + pl;
			nl = f->name_len - pl;
		} else {
			continue;
		}
		for (i = 0; i < nl; i++)
			gc->md[w + i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
		w += nl;
		gc->md[w++] = '\0';
		memcpy(gc->md + w, f->value, f->value_len);
		w += f->value_len;
		gc->md[w++] = '\0';
	}
	gc->md_len = w;
	return 0;
}

static uint32_t gw_max_recv(const struct server *s)
{
	uint64_t max = (s->cfg && s->cfg->max_request_bytes ? s->cfg->max_request_bytes : GW_DEFAULT_MAX_REQUEST) +
		       (uint64_t)GRPC_RECV_EXTRA;
	return max > INT32_MAX ? INT32_MAX : (uint32_t)max;
}

/* One request message into the service, as the gRPC server would take it. */
static void gw_deliver(struct gw_call *gc, const ProtobufCMessage *msg, const char *rpc_path, bool service_known)
{
	struct rpc_call *call = gw_rpc(gc);
	size_t size = protobuf_c_message_get_packed_size(msg);
	char text[200];
	uint8_t *buf;

	if (!gc->method) {
		const char *svc = rpc_path + 1, *slash = strrchr(rpc_path, '/');
		if (service_known)
			snprintf(text, sizeof(text), "unknown method %s for service %.*s", slash + 1,
				 (int)(slash - svc), svc);
		else
			snprintf(text, sizeof(text), "unknown service %.*s", (int)(slash - svc), svc);
		gw_call_finish_status(call, GRPC_UNIMPLEMENTED, text);
		return;
	}
	if (size > gw_max_recv(gc->srv)) {
		snprintf(text, sizeof(text), "grpc: received message larger than max (%zu vs. %" PRIu32 ")", size,
			 gw_max_recv(gc->srv));
		gw_call_finish_status(call, GRPC_RESOURCE_EXHAUSTED, text);
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		gw_call_finish_status(call, GRPC_RESOURCE_EXHAUSTED, kv_err_message(KV_ENOMEM));
		return;
	}
	protobuf_c_message_pack(msg, buf);
	gc->seen = true;
	gc->sent_request = true;
	gc->method->on_message(call, buf, size);
	free(buf);
}

static void gw_half_close(struct gw_call *gc)
{
	if (gc->method && gc->method->on_half_close && !gc->finished && !gc->gone) {
		gc->seen = true;
		gc->method->on_half_close(gw_rpc(gc));
	}
}

/* Go's json.Decoder meets a broken chunked body's read error where it
 * wants bytes past the data read before it: no value left, or a value cut
 * short. */
static bool gw_body_broke(const struct http1_req *req, int rv, const char *err)
{
	return req->body_err[0] && (rv == 1 || (rv == -KV_EINVAL && strcmp(err, "unexpected EOF") == 0));
}

/* Unary and server-streaming: the first JSON value is the request; an
 * empty body is an empty request. */
static void gw_feed_one(struct gw_call *gc, const ProtobufCMessageDescriptor *desc, const struct http1_req *req,
			const char *rpc_path, bool known)
{
	char err[PBJSON_ERR_MAX];
	ProtobufCMessage *msg = NULL;
	struct arena a;
	size_t off = 0;
	int rv;

	arena_init(&a);
	rv = pbjson_decode_next(desc, (const char *)req->body, req->body_len, &off, arena_pb_allocator(&a), &msg,
				err);
	if (gw_body_broke(req, rv, err)) {
		snprintf(err, sizeof(err), "%s", req->body_err);
		rv = -KV_EINVAL;
	} else if (rv == 1) {
		msg = arena_alloc(&a, desc->sizeof_message);
		if (msg)
			desc->message_init(msg);
		rv = msg ? 0 : -KV_ENOMEM;
		if (rv)
			snprintf(err, sizeof(err), "out of memory");
	}
	if (rv) {
		gw_reject(gc, rv == -KV_ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INVALID_ARGUMENT, err);
	} else {
		gw_deliver(gc, msg, rpc_path, known);
		gw_half_close(gc);
	}
	arena_close(&a);
}

/* Bidi: every JSON value of the body is one request message.  A bad first
 * one fails the call (grpc-gateway returns it as a plain error, hence
 * Unknown); after that, a bad one just ends the requests. */
static void gw_feed_stream(struct gw_call *gc, const ProtobufCMessageDescriptor *desc,
			   const struct http1_req *req, const char *rpc_path, bool known)
{
	char err[PBJSON_ERR_MAX];
	size_t off = 0;
	unsigned n = 0;
	int rv;

	while (!gc->finished && !gc->gone) {
		ProtobufCMessage *msg = NULL;
		struct arena a;
		arena_init(&a);
		rv = pbjson_decode_next(desc, (const char *)req->body, req->body_len, &off, arena_pb_allocator(&a),
					&msg, err);
		if (rv == 0)
			gw_deliver(gc, msg, rpc_path, known);
		arena_close(&a);
		if (gw_body_broke(req, rv, err)) {
			snprintf(err, sizeof(err), "%s", req->body_err);
			rv = -KV_EINVAL;
		}
		if (rv == 1)
			break;
		if (rv < 0) {
			if (n == 0) {
				gw_reject(gc, rv == -KV_ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_UNKNOWN, err);
				return;
			}
			break;
		}
		n++;
	}
	gw_half_close(gc);
}

static const struct gw_route *gw_route_find(const char *path, size_t len)
{
	size_t i, n;

	for (i = 0; i < sizeof(gw_routes) / sizeof(gw_routes[0]); i++) {
		n = strlen(gw_routes[i].path);
		if (n == len && memcmp(gw_routes[i].path, path, n) == 0)
			return &gw_routes[i];
	}
	return NULL;
}

void gw_handle(struct http1_req *req)
{
	struct server *s = req->srv;
	const struct gw_route *r = NULL;
	const ProtobufCMethodDescriptor *md;
	struct gw_call *gc;
	char rpc_path[128];
	bool known = false;
	size_t i, pl;

	if (s->cfg && !s->cfg->enable_grpc_gateway) {
		http1_error(req, 404, "404 page not found", NULL);
		return;
	}
	for (i = 0; i < sizeof(gw_prefixes) / sizeof(gw_prefixes[0]) && !r; i++) {
		pl = strlen(gw_prefixes[i]);
		if (req->path_len >= pl && memcmp(req->path, gw_prefixes[i], pl) == 0)
			r = gw_route_find(req->path + pl, req->path_len - pl);
	}
	if (!r) {
		http1_error(req, 404, "Not Found", NULL);
		return;
	}
	if (!http1_method_is(req, "POST")) {
		http1_error(req, 405, "Method Not Allowed", NULL);
		return;
	}
	md = protobuf_c_service_descriptor_get_method_by_name(r->svc, r->method);
	gc = calloc(1, sizeof(*gc));
	if (!md || !gc) {
		free(gc);
		http1_error(req, 500, "Internal Server Error", NULL);
		return;
	}
	snprintf(rpc_path, sizeof(rpc_path), "/%s/%s", r->svc->name, r->method);
	gc->head.ops = &gw_call_ops;
	gc->srv = s;
	gc->method = rpc_method_find(rpc_path, strlen(rpc_path), &known);
	gc->kind = gc->method ? gc->method->kind : RPC_UNARY;
	gc->refs = 2; /* the request's, and ours until this returns */
	pbjson_buf_init(&gc->out);
	http1_req_hold(req);
	gc->req = req;
	http1_req_on_gone(req, gw_req_gone, gc);
	if (gw_copy_metadata(gc, req)) {
		gw_reject(gc, GRPC_RESOURCE_EXHAUSTED, kv_err_message(KV_ENOMEM));
	} else if (gc->kind == RPC_BIDI_STREAM) {
		gw_feed_stream(gc, md->input, req, rpc_path, known);
	} else {
		gw_feed_one(gc, md->input, req, rpc_path, known);
	}
	gw_call_release(gw_rpc(gc));
}
