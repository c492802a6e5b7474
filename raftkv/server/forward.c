/*
 * forward: a follower relays writes, linearizable reads and the leader's
 * lease queries to the leader over its client URL (forward.h says what and
 * why).  Path of a forwarded unary call:
 *   svc handler ─► forward_try ─► the leader's kvc_client (recreated when
 *   the leader or its URLs change) ─► kvc_call_unary(request bytes) ─►
 *   forward_unary_done ─► response unpacked with the method's type, header
 *   ids made ours ─► rpc_call_send/finish; or the leader's status relayed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client/kvc.h"
#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/forward.h"
#include "server/members.h"
#include "server/node.h"
#include "server/server.h"
#include "server/svc.h"

struct forward {
	struct server *srv;
	struct kvc_client *client; /* to leader_id at endpoints; NULL: none yet */
	uint64_t leader_id;
	char *endpoints;           /* the leader's client URLs, comma-separated */
	uint32_t timeout_ms;
};

/* One forwarded request.  The kvc_call is embedded: it must stay put until
 * its done callback, which frees the whole thing. */
struct forward_req {
	struct kvc_call kc;
	struct forward *fw;
	struct rpc_call *call;       /* NULL: fire and forget */
	const struct kvc_method *m;
	struct kvc_method custom;    /* for paths kvc does not know */
	char *path;                  /* custom.path, malloc'd */
	struct kvc_md md[2];
	char *token;
	uint8_t *req;
	size_t len;
	bool write;                  /* outcome unknown ⇒ "request timed out" */
};

static struct forward *forward_of(struct server *s)
{
	return s->forward;
}

int forward_init(struct server *s)
{
	struct forward *fw = calloc(1, sizeof(*fw));
	unsigned el = s->cfg ? s->cfg->election_ms : 1000;

	if (!fw)
		return -KV_ENOMEM;
	fw->srv = s;
	/* etcd's ReqTimeout: 5 s plus two election timeouts. */
	fw->timeout_ms = 5000 + 2 * el;
	s->forward = fw;
	return 0;
}

static void forward_drop_client(struct forward *fw)
{
	struct kvc_client *c = fw->client;

	fw->client = NULL;
	fw->leader_id = 0;
	free(fw->endpoints);
	fw->endpoints = NULL;
	/* Ends its calls now (done with -KV_ECANCELED), frees it later. */
	if (c)
		kvc_client_free(c, NULL, NULL);
}

void forward_stop(struct server *s)
{
	struct forward *fw = forward_of(s);
	if (fw)
		forward_drop_client(fw);
}

void forward_free(struct server *s)
{
	struct forward *fw = forward_of(s);
	if (!fw)
		return;
	free(fw->endpoints);
	free(fw);
	s->forward = NULL;
}

/* The leader's client URLs joined with commas; NULL when unknown (not in
 * the table yet, or it has not published them) or out of memory. */
static char *forward_leader_endpoints(struct server *s, uint64_t id)
{
	const struct member *m = members_find(&s->members, id);
	size_t i, n = 0;
	char *out, *p;

	if (!m || m->n_client_urls == 0)
		return NULL;
	for (i = 0; i < m->n_client_urls; i++)
		n += strlen(m->client_urls[i]) + 1;
	if (!(out = malloc(n)))
		return NULL;
	p = out;
	for (i = 0; i < m->n_client_urls; i++) {
		size_t k = strlen(m->client_urls[i]);
		if (i)
			*p++ = ',';
		memcpy(p, m->client_urls[i], k);
		p += k;
	}
	*p = '\0';
	return out;
}

/* The client of the current leader, made or remade as needed; NULL when no
 * leader is known or it cannot be dialled yet. */
static struct kvc_client *forward_client(struct forward *fw)
{
	struct server *s = fw->srv;
	uint64_t leader = node_leader(&s->node);
	struct kvc_options o;
	char *eps;

	if (s->stopping || leader == 0 || leader == s->member_id)
		return NULL;
	if (fw->client && fw->leader_id == leader)
		return fw->client;
	eps = forward_leader_endpoints(s, leader);
	if (!eps)
		return NULL;
	if (fw->client)
		LOGI("leader is now %" PRIx64 " (%s): forwarding there", leader, eps);
	forward_drop_client(fw);
	kvc_options_init(&o);
	o.call_timeout_ms = fw->timeout_ms;
	o.dial_timeout_ms = fw->timeout_ms < 2000 ? fw->timeout_ms : 2000;
	o.max_attempts = 1;
	if (kvc_client_new(s->loop, eps, &o, &fw->client) != 0) {
		LOGW("cannot make a client for the leader at %s", eps);
		fw->client = NULL;
		free(eps);
		return NULL;
	}
	fw->leader_id = leader;
	fw->endpoints = eps;
	return fw->client;
}

int forward_wanted(struct server *s, struct rpc_call *call)
{
	if (!forward_of(s) || s->stopping || node_is_leader(&s->node) || node_leader(&s->node) == 0)
		return 0;
	if (call && rpc_call_header(call, FORWARD_HEADER))
		return 0;
	return 1;
}

static void forward_req_free(struct forward_req *r)
{
	free(r->req);
	free(r->token);
	free(r->path);
	free(r);
}

static struct forward_req *forward_req_new(struct forward *fw, struct rpc_call *call,
					   const char *path, const uint8_t *msg, size_t len)
{
	struct forward_req *r = calloc(1, sizeof(*r));
	const char *tok;

	if (!r)
		return NULL;
	kvc_call_init(&r->kc);
	r->kc.data = r;
	r->fw = fw;
	r->call = call;
	r->m = kvc_method_find(path);
	if (!r->m) {
		if (!(r->path = strdup(path)))
			goto nomem;
		r->custom.path = r->path;
		r->custom.kind = KVC_UNARY;
		r->m = &r->custom;
	}
	r->write = !r->m->idempotent;
	r->len = len;
	if (!(r->req = malloc(len ? len : 1)))
		goto nomem;
	if (len)
		memcpy(r->req, msg, len);
	r->md[0].name = FORWARD_HEADER;
	r->md[0].value = "1";
	r->kc.n_md = 1;
	if (call && (tok = rpc_call_header(call, "token"))) {
		if (!(r->token = strdup(tok)))
			goto nomem;
		r->md[1].name = "token";
		r->md[1].value = r->token;
		r->kc.n_md = 2;
	}
	r->kc.md = r->md;
	r->kc.timeout_ms = fw->timeout_ms;
	/* Never resend a write: its first copy may have been applied. */
	if (r->write)
		r->kc.flags = KVC_CALL_NO_RETRY;
	return r;
nomem:
	forward_req_free(r);
	return NULL;
}

/* The error a failed forwarded call ends with on our side. */
static void forward_finish_error(struct forward_req *r, int err)
{
	const struct kvc__call_state *st = &r->kc.s;

	if (!r->call)
		return;
	/* The leader answered with a status: relay it as it is. */
	if (st->got_status && kvc_call_grpc_status(&r->kc) != GRPC_OK) {
		rpc_call_finish_status(r->call, kvc_call_grpc_status(&r->kc),
				       kvc_call_grpc_message(&r->kc));
		return;
	}
	/* Ours: unreachable, connection lost, deadline, client closed.  A
	 * write that may have left has an unknown outcome. */
	if (r->write && st->headers_sent)
		rpc_call_finish(r->call, -KV_ETIMEOUT);
	else
		rpc_call_finish(r->call, -KV_ELEADERCHANGED);
	LOGD("forwarding %s to the leader failed: %s (%s)", r->m->path, kv_err_name(err),
	     kvc_call_grpc_message(&r->kc));
}

/* Sends the leader's response message on call with our header ids. */
static int forward_relay(struct forward_req *r, const uint8_t *msg, size_t len, bool last)
{
	struct server *s = r->fw->srv;
	ProtobufCMessage *resp;
	struct arena a;
	int rv;

	if (!r->m->resp_desc)
		return -KV_EINTERNAL;
	arena_init(&a);
	resp = protobuf_c_message_unpack(r->m->resp_desc, arena_pb_allocator(&a), len, msg);
	if (!resp) {
		arena_close(&a);
		return -KV_EINTERNAL;
	}
	/* Every etcd response has its header first (svc.h). */
	if (((struct svc_response *)resp)->header)
		svc_header_fill(s, ((struct svc_response *)resp)->header);
	rv = rpc_call_send(r->call, resp);
	if (last)
		rpc_call_finish(r->call, 0);
	arena_close(&a);
	return rv;
}

static void forward_unary_done(struct kvc_call *kc, int err)
{
	struct forward_req *r = kc->data;
	const uint8_t *resp;
	size_t len = 0;

	if (r->call) {
		if (err) {
			forward_finish_error(r, err);
		} else {
			resp = kvc_call_response(kc, &len);
			if (forward_relay(r, resp ? resp : (const uint8_t *)"", len, true) != 0 &&
			    !rpc_call_gone(r->call))
				rpc_call_finish(r->call, -KV_EINTERNAL);
		}
		rpc_call_release(r->call);
	} else if (err) {
		LOGD("forwarding %s to the leader failed: %s", r->m->path, kv_err_name(err));
	}
	forward_req_free(r);
}

/* Starts r on the leader's client; 0, or -KV_ENOLEADER / -KV_ENOMEM (r is
 * the caller's to free then). */
static int forward_start(struct forward_req *r)
{
	struct kvc_client *c = forward_client(r->fw);
	int rv;

	if (!c)
		return -KV_ENOLEADER;
	if (r->call)
		rpc_call_hold(r->call);
	rv = kvc_call_unary(c, &r->kc, r->m, r->req, r->len, forward_unary_done);
	if (rv) {
		if (r->call)
			rpc_call_release(r->call);
		return rv == -KV_ENOMEM ? rv : -KV_ENOLEADER;
	}
	return 0;
}

int forward_path(struct server *s, const char *path, const uint8_t *msg, size_t len,
		 struct rpc_call *call)
{
	struct forward *fw = forward_of(s);
	struct forward_req *r;
	int rv;

	if (!fw || s->stopping)
		return -KV_ESTOPPED;
	if (node_is_leader(&s->node) || node_leader(&s->node) == 0)
		return -KV_ENOLEADER;
	if (call && rpc_call_header(call, FORWARD_HEADER))
		return -KV_ENOLEADER;
	if (!(r = forward_req_new(fw, call, path, msg, len)))
		return -KV_ENOMEM;
	rv = forward_start(r);
	if (rv)
		forward_req_free(r);
	return rv;
}

int forward_try(struct rpc_call *call, const char *path, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	int rv;

	if (!forward_wanted(s, call))
		return 0;
	rv = forward_path(s, path, msg, len, call);
	if (rv)
		/* A leader we cannot dial yet (its URLs are not published):
		 * as good as none for the client, which retries. */
		rpc_call_finish(call, rv);
	return 1;
}

/* --- LeaseKeepAlive ----------------------------------------------------- */

static void forward_ka_msg(struct kvc_call *kc, const uint8_t *msg, size_t len)
{
	struct forward_req *r = kc->data;
	int rv = forward_relay(r, msg, len, false);

	if (rv != 0 && rv != -KV_ECANCELED && !rpc_call_gone(r->call))
		rpc_call_finish(r->call, rv);
}

static void forward_ka_done(struct kvc_call *kc, int err)
{
	struct forward_req *r = kc->data;

	/* The stream of this one keep-alive ended: OK once the leader
	 * answered and half-closed.  Otherwise the client's stream ends, as
	 * etcd's does when its forward to the leader fails. */
	if (err && !rpc_call_gone(r->call))
		forward_finish_error(r, err);
	svc_lease_keep_alive_relay_end(r->call);
	rpc_call_release(r->call);
	forward_req_free(r);
}

int forward_try_keep_alive(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	struct forward *fw = forward_of(s);
	struct forward_req *r;
	struct kvc_client *c;
	int rv;

	if (!forward_wanted(s, call))
		return 0;
	c = forward_client(fw);
	if (!c) {
		rpc_call_finish(call, -KV_ENOLEADER);
		return 1;
	}
	/* The request is sent from the stream's own copy. */
	if (!(r = forward_req_new(fw, call, "/etcdserverpb.Lease/LeaseKeepAlive", NULL, 0))) {
		rpc_call_finish(call, -KV_ENOMEM);
		return 1;
	}
	r->write = false; /* a renewal twice is harmless */
	r->kc.flags = 0;
	rpc_call_hold(call);
	rv = kvc_call_stream(c, &r->kc, r->m, forward_ka_msg, forward_ka_done);
	if (rv) {
		rpc_call_release(call);
		forward_req_free(r);
		rpc_call_finish(call, rv == -KV_ENOMEM ? rv : -KV_ENOLEADER);
		return 1;
	}
	svc_lease_keep_alive_relay_begin(call);
	if ((rv = kvc_call_send(&r->kc, msg, len)) == 0)
		rv = kvc_call_close_send(&r->kc);
	if (rv)
		kvc_call_cancel(&r->kc); /* done runs: the stream ends */
	return 1;
}
