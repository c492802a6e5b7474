/*
 * Unit tests for the client library (raftkv/client) that need no server:
 * endpoint parsing, the method table, metadata, argument checks, and the
 * call life cycle on a real loop against a refused port and a listener that
 * never accepts (connect refused, dial timeout, deadline while connecting,
 * cancel, kvc_client_free with calls in flight, restarting a call from its
 * own done_cb).  tests/integration/client_lib.py covers live servers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/kvc.h"

/* A put request, packed once. */
static const uint8_t put_req[] = {0x0a, 0x01, 'k', 0x12, 0x01, 'v'};

struct done {
	int calls;
	int err;
	enum grpc_code code;
	char msg[160];
	struct kvc_client *client;
	int restarts; /* test_restart_in_done */
};

static void done_cb(struct kvc_call *call, int err)
{
	struct done *d = call->data;

	d->calls++;
	d->err = err;
	d->code = kvc_call_grpc_status(call);
	snprintf(d->msg, sizeof(d->msg), "%s", kvc_call_grpc_message(call));
}

static void run_until(uv_loop_t *loop, const int *calls, int want)
{
	for (int i = 0; i < 100000 && *calls < want; i++)
		uv_run(loop, UV_RUN_ONCE);
	assert_int_equal(*calls, want);
}

static void freed_cb(void *data)
{
	*(int *)data += 1;
}

static void client_free_and_close(struct kvc_client *c, uv_loop_t *loop)
{
	int freed = 0;

	kvc_client_free(c, freed_cb, &freed);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(freed, 1);
	assert_int_equal(uv_loop_close(loop), 0); /* every handle closed */
}

/* A port nobody listens on. */
static int closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	close(s);
	return ntohs(sa.sin_port);
}

/* A listener whose accept queue is full: connects hang until the dial
 * timeout.  fds[0] is the listener, the rest fill its queue. */
static int hung_listener(int fds[5])
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(fds[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fds[0], 0), 0);
	assert_int_equal(getsockname(fds[0], (struct sockaddr *)&sa, &sl), 0);
	for (int i = 1; i < 5; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fds[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(50000);
	return ntohs(sa.sin_port);
}

static void close_fds(int fds[5])
{
	for (int i = 0; i < 5; i++)
		close(fds[i]);
}

/* Endpoints in etcd's forms; authority is what goes in :authority. */
static void test_endpoints_parse(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;

	(void)state;
	uv_loop_init(&loop);
	assert_int_equal(kvc_client_new(&loop, " 127.0.0.1:2379 , http://host.example:12/,"
					       "[::1]:3,localhost",
					NULL, &c),
			 0);
	assert_int_equal(kvc_client_endpoint_count(c), 4);
	assert_string_equal(kvc_client_endpoint(c, 0), "127.0.0.1:2379");
	assert_string_equal(kvc_client_endpoint(c, 1), "host.example:12");
	assert_string_equal(kvc_client_endpoint(c, 2), "[::1]:3");
	assert_string_equal(kvc_client_endpoint(c, 3), "localhost:2379");
	assert_null(kvc_client_endpoint(c, 4));
	assert_ptr_equal(kvc_client_loop(c), &loop);
	client_free_and_close(c, &loop);
}

/* Bad endpoints are refused up front, with nothing to free. */
static void test_endpoints_invalid(void **state)
{
	static const char *const bad[] = {
		"", " , ", "https://127.0.0.1:2379", "unix:///tmp/x", "h:0", "h:65536",
		"h:12x", "h:", "::1:2379", "[::1", "[::1]x", ":2379",
	};
	uv_loop_t loop;
	struct kvc_client *c;

	(void)state;
	uv_loop_init(&loop);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = (struct kvc_client *)1;
		assert_int_equal(kvc_client_new(&loop, bad[i], NULL, &c), -KV_EINVAL);
		assert_null(c);
	}
	assert_int_equal(kvc_client_new(NULL, "h:1", NULL, &c), -KV_EINVAL);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* The method table: paths, kinds, resend policy and message types. */
static void test_methods(void **state)
{
	(void)state;
	assert_ptr_equal(kvc_method_find("/etcdserverpb.KV/Range"), &kvc_kv_range);
	assert_ptr_equal(kvc_method_find("/etcdserverpb.Maintenance/Snapshot"), &kvc_maint_snapshot);
	assert_null(kvc_method_find("/etcdserverpb.KV/Nope"));
	assert_true(kvc_kv_range.idempotent);
	assert_false(kvc_kv_put.idempotent);
	assert_false(kvc_kv_txn.idempotent);
	assert_int_equal(kvc_watch_watch.kind, KVC_BIDI_STREAM);
	assert_int_equal(kvc_lease_keep_alive.kind, KVC_BIDI_STREAM);
	assert_int_equal(kvc_maint_snapshot.kind, KVC_SERVER_STREAM);
	assert_int_equal(kvc_kv_put.kind, KVC_UNARY);
	assert_ptr_equal(kvc_kv_put.req_desc, &etcdserverpb__put_request__descriptor);
	assert_ptr_equal(kvc_maint_hash_kv.resp_desc, &etcdserverpb__hash_kvresponse__descriptor);
}

/* Client-wide metadata: lower-case names only, replace and remove. */
static void test_headers(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	char name[16];

	(void)state;
	uv_loop_init(&loop);
	assert_int_equal(kvc_client_new(&loop, "127.0.0.1:1", NULL, &c), 0);
	assert_int_equal(kvc_client_set_header(c, "Token", "x"), -KV_EINVAL);
	assert_int_equal(kvc_client_set_header(c, ":path", "x"), -KV_EINVAL);
	assert_int_equal(kvc_client_set_header(c, "token", "a"), 0);
	assert_int_equal(kvc_client_set_header(c, "token", "b"), 0);
	assert_int_equal(kvc_client_set_header(c, "token", NULL), 0);
	assert_int_equal(kvc_client_set_header(c, "absent", NULL), 0);
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "h%d", i);
		assert_int_equal(kvc_client_set_header(c, name, "v"), 0);
	}
	assert_int_equal(kvc_client_set_header(c, "one-too-many", "v"), -KV_EINVAL);
	client_free_and_close(c, &loop);
}

/* A refused connection ends the call from the loop (never inside the
 * start) with -KV_EUNAVAILABLE and says why. */
static void test_refused(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	struct kvc_call call;
	struct done d = {0};
	char ep[32];

	(void)state;
	uv_loop_init(&loop);
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", closed_port());
	assert_int_equal(kvc_client_new(&loop, ep, NULL, &c), 0);
	kvc_call_init(&call);
	call.data = &d;
	assert_int_equal(kvc_call_unary(c, &call, &kvc_kv_put, put_req, sizeof(put_req), done_cb), 0);
	assert_true(kvc_call_active(&call));
	assert_int_equal(d.calls, 0);
	/* A call in progress cannot be started again, nor sent to. */
	assert_int_equal(kvc_call_unary(c, &call, &kvc_kv_put, put_req, sizeof(put_req), done_cb),
			 -KV_EINVAL);
	assert_int_equal(kvc_call_send(&call, put_req, sizeof(put_req)), -KV_EINVAL);
	run_until(&loop, &d.calls, 1);
	assert_int_equal(d.err, -KV_EUNAVAILABLE);
	assert_int_equal(d.code, GRPC_UNAVAILABLE);
	assert_non_null(strstr(d.msg, "refused"));
	assert_false(kvc_call_active(&call));
	client_free_and_close(c, &loop);
}

/* Bad arguments fail the start, with no callback. */
static void test_start_errors(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	struct kvc_call call;
	struct kvc_method nopath = {"relative", KVC_UNARY, false, NULL, NULL};
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	struct arena a;

	(void)state;
	uv_loop_init(&loop);
	arena_init(&a);
	assert_int_equal(kvc_client_new(&loop, "127.0.0.1:1", NULL, &c), 0);
	kvc_call_init(&call);
	assert_int_equal(kvc_call_unary(c, &call, &kvc_kv_put, put_req, sizeof(put_req), NULL),
			 -KV_EINVAL);
	assert_int_equal(kvc_call_unary(c, &call, &nopath, put_req, sizeof(put_req), done_cb),
			 -KV_EINVAL);
	assert_int_equal(kvc_call_unary(c, &call, &kvc_kv_put, NULL, 3, done_cb), -KV_EINVAL);
	/* A RangeRequest for Put: the typed form checks the type. */
	assert_int_equal(kvc_call_unary_pb(c, &call, &kvc_kv_put, &rr.base, &a, NULL), -KV_EINVAL);
	assert_int_equal(kvc_call_stream(c, &call, &kvc_watch_watch, NULL, done_cb), -KV_EINVAL);
	assert_int_equal(kvc_call_close_send(&call), -KV_EINVAL);
	assert_false(kvc_call_active(&call));
	kvc_call_cancel(&call); /* harmless when idle */
	arena_close(&a);
	client_free_and_close(c, &loop);
}

/* No SYN-ACK: the dial timeout ends the attempt. */
static void test_dial_timeout(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	struct kvc_options o;
	struct kvc_call call;
	struct done d = {0};
	int fds[5];
	char ep[32];
	uint64_t t0;

	(void)state;
	uv_loop_init(&loop);
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", hung_listener(fds));
	kvc_options_init(&o);
	o.dial_timeout_ms = 100;
	assert_int_equal(kvc_client_new(&loop, ep, &o, &c), 0);
	kvc_call_init(&call);
	call.data = &d;
	t0 = uv_now(&loop);
	assert_int_equal(kvc_call_unary(c, &call, &kvc_kv_range, put_req, sizeof(put_req), done_cb), 0);
	run_until(&loop, &d.calls, 1);
	assert_int_equal(d.err, -KV_EUNAVAILABLE);
	assert_non_null(strstr(d.msg, "dial timeout"));
	assert_true(uv_now(&loop) - t0 >= 100);
	client_free_and_close(c, &loop);
	close_fds(fds);
}

/* The deadline wins over a longer dial timeout; the queued request is
 * cancelled inside nghttp2 without reaching the wire. */
static void test_deadline_connecting(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	struct kvc_options o;
	struct kvc_call calls[50];
	struct done d = {0};
	int fds[5];
	char ep[32];

	(void)state;
	uv_loop_init(&loop);
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", hung_listener(fds));
	kvc_options_init(&o);
	o.dial_timeout_ms = 10000;
	o.call_timeout_ms = 50;
	assert_int_equal(kvc_client_new(&loop, ep, &o, &c), 0);
	for (int i = 0; i < 50; i++) {
		kvc_call_init(&calls[i]);
		calls[i].data = &d;
		if (i % 2)
			calls[i].timeout_ms = 80;
		assert_int_equal(kvc_call_unary(c, &calls[i], &kvc_kv_put, put_req, sizeof(put_req),
						done_cb),
				 0);
	}
	run_until(&loop, &d.calls, 50);
	assert_int_equal(d.err, -KV_EDEADLINE);
	assert_int_equal(d.code, GRPC_DEADLINE_EXCEEDED);
	assert_string_equal(d.msg, "context deadline exceeded");
	client_free_and_close(c, &loop);
	close_fds(fds);
}

static void no_msg_cb(struct kvc_call *call, const uint8_t *msg, size_t len)
{
	(void)call;
	(void)msg;
	(void)len;
	fail();
}

/* kvc_call_cancel ends the call at once, with its callback. */
static void test_cancel(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	struct kvc_call call;
	struct done d = {0};
	int fds[5];
	char ep[32];

	(void)state;
	uv_loop_init(&loop);
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", hung_listener(fds));
	assert_int_equal(kvc_client_new(&loop, ep, NULL, &c), 0);
	kvc_call_init(&call);
	call.data = &d;
	assert_int_equal(kvc_call_stream(c, &call, &kvc_watch_watch, no_msg_cb, done_cb), 0);
	assert_int_equal(kvc_call_send(&call, put_req, sizeof(put_req)), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	kvc_call_cancel(&call);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.err, -KV_ECANCELED);
	assert_false(kvc_call_active(&call));
	kvc_call_cancel(&call);
	assert_int_equal(d.calls, 1);
	client_free_and_close(c, &loop);
	close_fds(fds);
}

/* Freeing the client ends every call before returning; later starts from
 * a callback are refused. */
static void free_done_cb(struct kvc_call *call, int err)
{
	struct done *d = call->data;

	done_cb(call, err);
	assert_int_equal(kvc_call_unary(d->client, call, &kvc_kv_put, put_req, sizeof(put_req),
					free_done_cb),
			 -KV_ECANCELED);
}

static void test_free_with_calls(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	struct kvc_call calls[3];
	struct done d = {0};
	int fds[5], freed = 0;
	char ep[32];

	(void)state;
	uv_loop_init(&loop);
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", hung_listener(fds));
	assert_int_equal(kvc_client_new(&loop, ep, NULL, &c), 0);
	d.client = c;
	for (int i = 0; i < 3; i++) {
		kvc_call_init(&calls[i]);
		calls[i].data = &d;
		assert_int_equal(kvc_call_unary(c, &calls[i], &kvc_kv_put, put_req, sizeof(put_req),
						free_done_cb),
				 0);
	}
	uv_run(&loop, UV_RUN_NOWAIT);
	kvc_client_free(c, freed_cb, &freed);
	assert_int_equal(d.calls, 3);
	assert_int_equal(d.err, -KV_ECANCELED);
	assert_int_equal(freed, 0); /* from the loop, once handles closed */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(freed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	close_fds(fds);
}

/* A done_cb may start the same call again: no recursion, no leak. */
static void restart_cb(struct kvc_call *call, int err)
{
	struct done *d = call->data;

	done_cb(call, err);
	if (d->restarts++ < 4)
		assert_int_equal(kvc_call_unary(d->client, call, &kvc_kv_put, put_req,
						sizeof(put_req), restart_cb),
				 0);
}

static void test_restart_in_done(void **state)
{
	uv_loop_t loop;
	struct kvc_client *c;
	struct kvc_call call;
	struct done d = {0};
	char ep[64];
	int port = closed_port();

	(void)state;
	uv_loop_init(&loop);
	/* Two dead endpoints: each attempt fails over, then ends. */
	snprintf(ep, sizeof(ep), "127.0.0.1:%d,127.0.0.1:%d", port, port);
	assert_int_equal(kvc_client_new(&loop, ep, NULL, &c), 0);
	d.client = c;
	kvc_call_init(&call);
	call.data = &d;
	assert_int_equal(kvc_call_unary(c, &call, &kvc_kv_put, put_req, sizeof(put_req), restart_cb),
			 0);
	run_until(&loop, &d.calls, 5);
	assert_int_equal(d.err, -KV_EUNAVAILABLE);
	assert_false(kvc_call_active(&call));
	client_free_and_close(c, &loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoints_parse),
		cmocka_unit_test(test_endpoints_invalid),
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_start_errors),
		cmocka_unit_test(test_dial_timeout),
		cmocka_unit_test(test_deadline_connecting),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_free_with_calls),
		cmocka_unit_test(test_restart_in_done),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
