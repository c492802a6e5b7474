/*
 * sync: the blocking face of the client library (see sync.h): a private
 * loop per struct kvc_sync, run with UV_RUN_ONCE until the one call in
 * flight ends.
 */
#include "client/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvc_sync {
	uv_loop_t loop;
	struct kvc_client *client;
	struct kvc_call call;
	bool done;
	int err;
	enum grpc_code status;
	char errmsg[256];
	char endpoint[300];
	/* the call in flight */
	ProtobufCMessage *resp;
	uint8_t *raw;
	size_t raw_len;
	kvc_sync_msg_fn fn;
	void *fn_ud;
	int fn_rv;
};

int kvc_sync_new(const char *endpoints, const struct kvc_options *opts, struct kvc_sync **out)
{
	struct kvc_sync *s = calloc(1, sizeof(*s));
	int rv;

	*out = NULL;
	if (!s)
		return -KV_ENOMEM;
	if (uv_loop_init(&s->loop)) {
		free(s);
		return -KV_ENOMEM;
	}
	rv = kvc_client_new(&s->loop, endpoints, opts, &s->client);
	if (rv) {
		uv_loop_close(&s->loop);
		free(s);
		return rv;
	}
	kvc_call_init(&s->call);
	s->call.data = s;
	*out = s;
	return 0;
}

static void kvc_sync_freed(void *data)
{
	*(bool *)data = true;
}

void kvc_sync_free(struct kvc_sync *s)
{
	bool freed = false;

	if (!s)
		return;
	kvc_client_free(s->client, kvc_sync_freed, &freed);
	while (!freed && uv_run(&s->loop, UV_RUN_ONCE))
		;
	/* Let every remaining close callback run before closing the loop. */
	uv_run(&s->loop, UV_RUN_DEFAULT);
	uv_loop_close(&s->loop);
	free(s);
}

static void kvc_sync_tick(uv_timer_t *t)
{
	(void)t; /* only wakes the loop so the deadline is seen */
}

int kvc_sync_run(struct kvc_sync *s, const bool *flag, uint32_t timeout_ms)
{
	uint64_t end = timeout_ms ? uv_now(&s->loop) + timeout_ms : 0;
	uv_timer_t t;
	int rv = 0;

	if (end) {
		uv_timer_init(&s->loop, &t);
		uv_timer_start(&t, kvc_sync_tick, timeout_ms, 0);
	}
	while (!*flag) {
		if (end && uv_now(&s->loop) >= end) {
			rv = -KV_EDEADLINE;
			break;
		}
		if (!uv_run(&s->loop, UV_RUN_ONCE) && !*flag) {
			rv = -KV_EINTERNAL; /* nothing left that could set it */
			break;
		}
	}
	if (end) {
		uv_close((uv_handle_t *)&t, NULL);
		uv_run(&s->loop, UV_RUN_NOWAIT);
	}
	return rv;
}

static void kvc_sync_note(struct kvc_sync *s, int err)
{
	const char *ep = kvc_call_endpoint(&s->call);

	s->done = true;
	s->err = err;
	s->status = kvc_call_grpc_status(&s->call);
	snprintf(s->errmsg, sizeof(s->errmsg), "%s",
		 err ? kvc_call_grpc_message(&s->call) : "");
	snprintf(s->endpoint, sizeof(s->endpoint), "%s", ep ? ep : "");
}

/* Between calls nobody runs the loop: first take in what arrived
 * meanwhile (a GOAWAY or EOF from a server that went away), so a new call
 * does not go out on a connection that is already dead. */
static void kvc_sync_catch_up(struct kvc_sync *s)
{
	uv_run(&s->loop, UV_RUN_NOWAIT);
}

static int kvc_sync_wait(struct kvc_sync *s, int start_rv)
{
	if (start_rv) {
		s->err = start_rv;
		s->status = kv_err_grpc_code(start_rv);
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", kv_err_message(start_rv));
		return start_rv;
	}
	while (!s->done)
		if (!uv_run(&s->loop, UV_RUN_ONCE) && !s->done)
			return -KV_EINTERNAL;
	return s->err;
}

static void kvc_sync_pb_cb(struct kvc_call *call, int err, ProtobufCMessage *resp)
{
	struct kvc_sync *s = call->data;

	s->resp = resp;
	kvc_sync_note(s, err);
}

int kvc_sync_call(struct kvc_sync *s, const struct kvc_method *m, const ProtobufCMessage *req,
		  struct arena *arena, ProtobufCMessage **resp, uint32_t timeout_ms)
{
	int rv;

	*resp = NULL;
	s->done = false;
	s->resp = NULL;
	s->call.timeout_ms = timeout_ms;
	kvc_sync_catch_up(s);
	rv = kvc_sync_wait(s, kvc_call_unary_pb(s->client, &s->call, m, req, arena,
						kvc_sync_pb_cb));
	*resp = rv ? NULL : s->resp;
	return rv;
}

int kvc_sync_unary(struct kvc_sync *s, const char *path, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_desc, struct arena *arena,
		   ProtobufCMessage **resp, uint32_t timeout_ms)
{
	const struct kvc_method *m = kvc_method_find(path);
	struct kvc_method local;

	if (!m || m->resp_desc != resp_desc) {
		local.path = path;
		local.kind = KVC_UNARY;
		local.idempotent = m ? m->idempotent : false;
		local.req_desc = req ? req->descriptor : NULL;
		local.resp_desc = resp_desc;
		m = &local;
	}
	return kvc_sync_call(s, m, req, arena, resp, timeout_ms);
}

static void kvc_sync_raw_cb(struct kvc_call *call, int err)
{
	struct kvc_sync *s = call->data;
	size_t len;
	const uint8_t *r = kvc_call_response(call, &len);

	if (!err && r) {
		s->raw = malloc(len ? len : 1);
		if (s->raw) {
			memcpy(s->raw, r, len);
			s->raw_len = len;
		} else {
			err = -KV_ENOMEM;
		}
	}
	kvc_sync_note(s, err);
}

int kvc_sync_unary_raw(struct kvc_sync *s, const struct kvc_method *m, const uint8_t *req,
		       size_t len, uint8_t **resp, size_t *resp_len, uint32_t timeout_ms)
{
	int rv;

	s->done = false;
	s->raw = NULL;
	s->raw_len = 0;
	s->call.timeout_ms = timeout_ms;
	kvc_sync_catch_up(s);
	rv = kvc_sync_wait(s, kvc_call_unary(s->client, &s->call, m, req, len, kvc_sync_raw_cb));
	*resp = s->raw;
	*resp_len = s->raw_len;
	s->raw = NULL;
	return rv;
}

static void kvc_sync_stream_msg(struct kvc_call *call, const uint8_t *msg, size_t len)
{
	struct kvc_sync *s = call->data;
	int rv = s->fn(s->fn_ud, msg, len);

	if (rv) {
		s->fn_rv = rv;
		kvc_call_cancel(call);
	}
}

static void kvc_sync_stream_done(struct kvc_call *call, int err)
{
	kvc_sync_note(call->data, err);
}

int kvc_sync_stream(struct kvc_sync *s, const struct kvc_method *m, const ProtobufCMessage *req,
		    kvc_sync_msg_fn fn, void *ud, uint32_t timeout_ms)
{
	int rv;

	if (!fn || !req)
		return -KV_EINVAL;
	s->done = false;
	s->fn = fn;
	s->fn_ud = ud;
	s->fn_rv = 0;
	s->call.timeout_ms = timeout_ms ? timeout_ms : KVC_NO_TIMEOUT;
	kvc_sync_catch_up(s);
	rv = kvc_call_stream(s->client, &s->call, m, kvc_sync_stream_msg, kvc_sync_stream_done);
	if (rv == 0) {
		rv = kvc_call_send_pb(&s->call, req);
		if (rv == 0)
			rv = kvc_call_close_send(&s->call);
		if (rv)
			kvc_call_cancel(&s->call);
	}
	rv = kvc_sync_wait(s, rv);
	return s->fn_rv ? s->fn_rv : rv;
}

const char *kvc_sync_errmsg(const struct kvc_sync *s)
{
	return s->errmsg;
}

enum grpc_code kvc_sync_grpc_status(const struct kvc_sync *s)
{
	return s->status;
}

const char *kvc_sync_endpoint(const struct kvc_sync *s)
{
	return s->endpoint;
}

struct kvc_client *kvc_sync_client(struct kvc_sync *s)
{
	return s->client;
}

uv_loop_t *kvc_sync_loop(struct kvc_sync *s)
{
	return &s->loop;
}
