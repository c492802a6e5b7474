/*
 * conn: one HTTP/2 connection of the client library: a uv_tcp handle and an
 * nghttp2 client session speaking h2c with prior knowledge.
 *
 * Happy path: kvc__conn_new() creates the session at once (calls submitted
 * while the socket connects simply queue inside nghttp2), looks the host up
 * if it is not numeric, connects with a dial timeout, and on connect sends
 * the preface, our SETTINGS (large stream and connection windows, no push)
 * and every queued request in one write.  Reads go straight into
 * nghttp2_session_mem_recv(); data is consumed as it arrives, so nghttp2
 * returns window credit (WINDOW_UPDATE) by itself and multi-megabyte
 * responses never stall.  Writes: kvc__conn_flush() (called once per loop
 * turn by the client) drains nghttp2 into one buffer and writes it with
 * uv_try_write(); only what the socket does not take at once goes through a
 * uv_write, while the next turn's output collects in a second buffer.
 *
 * Failure modes: connect refused, lookup failure or dial timeout; EOF or a
 * read/write error; an nghttp2 protocol error; no answer to a keepalive
 * PING.  kvc__conn_fail() then hands every call to kvc__call_conn_lost()
 * (resend elsewhere when safe), marks the endpoint for back-off, and
 * closes.  A GOAWAY drains the connection: calls above its last stream id
 * are resent, the others finish, then it closes.  Memory goes only after
 * every handle and request has called back, so a connection may be closed
 * from inside any callback, even one nghttp2 is running.
 */
#include "client/kvc_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

static void kvc_conn_maybe_free(struct kvc_conn *conn)
{
	if (conn->state != KVC_CONN_DEAD || conn->pending)
		return;
	nghttp2_session_del(conn->h2);
	free(conn->wbuf.data);
	free(conn->inflight.data);
	kvc__client_conn_freed(conn->client, conn);
	free(conn);
}

static void kvc_conn_closed_cb(uv_handle_t *h)
{
	struct kvc_conn *conn = h->data;

	conn->pending--;
	kvc_conn_maybe_free(conn);
}

static void kvc_conn_close_handles(struct kvc_conn *conn)
{
	struct kvc_client *c = conn->client;

	conn->state = KVC_CONN_DEAD;
	if (c->eps[conn->ep].conn == conn)
		c->eps[conn->ep].conn = NULL;
	if (conn->want_write) {
		conn->want_write = false;
		c->n_dirty--;
	}
	if (conn->gai_active)
		uv_cancel((uv_req_t *)&conn->gai_req);
	uv_close((uv_handle_t *)&conn->tcp, kvc_conn_closed_cb);
	uv_close((uv_handle_t *)&conn->timer, kvc_conn_closed_cb);
}

void kvc__conn_fail(struct kvc_conn *conn, const char *why)
{
	struct kvc_client *c = conn->client;

	if (conn->state == KVC_CONN_DEAD)
		return;
	snprintf(conn->errmsg, sizeof(conn->errmsg), "%s: %s", c->eps[conn->ep].authority, why);
	LOGD("connection to %s failed: %s", c->eps[conn->ep].authority, why);
	kvc_conn_close_handles(conn);
	if (!c->closing)
		kvc__client_endpoint_failed(c, conn->ep);
	/* Head each time: a resend or a done_cb may end other calls too. */
	while (conn->calls) {
		struct kvc_call *call = conn->calls;

		kvc__conn_detach(conn, call, false);
		kvc__call_conn_lost(call, !call->s.headers_sent, false, conn->errmsg);
	}
}

void kvc__conn_close(struct kvc_conn *conn)
{
	if (conn->state == KVC_CONN_DEAD)
		return;
	if (conn->calls) {
		kvc__conn_fail(conn, "connection closed");
		return;
	}
	kvc_conn_close_handles(conn);
}

/* A draining connection closes once its last call is gone. */
static void kvc_conn_check_idle(struct kvc_conn *conn)
{
	if (conn->state == KVC_CONN_DRAINING && !conn->calls && !conn->writing) {
		LOGD("%s: drained", conn->client->eps[conn->ep].authority);
		kvc__conn_close(conn);
	}
}

static void kvc_conn_drain(struct kvc_conn *conn)
{
	struct kvc_client *c = conn->client;

	if (conn->state == KVC_CONN_DEAD || conn->state == KVC_CONN_DRAINING)
		return;
	LOGD("%s: draining", c->eps[conn->ep].authority);
	conn->state = KVC_CONN_DRAINING;
	if (c->eps[conn->ep].conn == conn)
		c->eps[conn->ep].conn = NULL;
}

/* --- writing ---------------------------------------------------------------- */

static int kvc_wbuf_append(struct kvc_wbuf *b, const uint8_t *p, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 16384;
		uint8_t *d;

		while (cap - b->len < n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return -KV_ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static void kvc_conn_write_cb(uv_write_t *req, int status)
{
	struct kvc_conn *conn = req->data;

	conn->pending--;
	conn->writing = false;
	conn->inflight.len = 0;
	if (conn->state == KVC_CONN_DEAD) {
		kvc_conn_maybe_free(conn);
		return;
	}
	if (status < 0) {
		kvc__conn_fail(conn, uv_strerror(status));
		return;
	}
	kvc__conn_flush(conn);
}

void kvc__conn_flush(struct kvc_conn *conn)
{
	for (;;) {
		struct kvc_wbuf t;
		uv_buf_t b;
		int n;

		if (conn->state != KVC_CONN_READY && conn->state != KVC_CONN_DRAINING)
			return;
		while (conn->wbuf.len < KVC_WRITE_HIWAT) {
			const uint8_t *data;
			ssize_t len = nghttp2_session_mem_send(conn->h2, &data);

			if (conn->state == KVC_CONN_DEAD)
				return; /* a callback closed it */
			if (len < 0) {
				kvc__conn_fail(conn, nghttp2_strerror((int)len));
				return;
			}
			if (len == 0)
				break;
			if (kvc_wbuf_append(&conn->wbuf, data, (size_t)len)) {
				kvc__conn_fail(conn, "out of memory");
				return;
			}
		}
		if (conn->writing || conn->wbuf.len == 0)
			break;
		b = uv_buf_init((char *)conn->wbuf.data, (unsigned)conn->wbuf.len);
		n = uv_try_write((uv_stream_t *)&conn->tcp, &b, 1);
		if (n == UV_EAGAIN)
			n = 0;
		if (n < 0) {
			kvc__conn_fail(conn, uv_strerror(n));
			return;
		}
		if ((size_t)n == conn->wbuf.len) {
			conn->wbuf.len = 0;
			continue;
		}
		/* The socket is full: the rest goes through uv_write while
		 * the other buffer collects what comes next. */
		t = conn->inflight;
		conn->inflight = conn->wbuf;
		conn->wbuf = t;
		conn->wbuf.len = 0;
		b = uv_buf_init((char *)conn->inflight.data + n, (unsigned)(conn->inflight.len - (size_t)n));
		conn->write_req.data = conn;
		n = uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &b, 1, kvc_conn_write_cb);
		if (n < 0) {
			conn->inflight.len = 0;
			kvc__conn_fail(conn, uv_strerror(n));
			return;
		}
		conn->writing = true;
		conn->pending++;
	}
	kvc_conn_check_idle(conn);
}

/* --- reading ---------------------------------------------------------------- */

static void kvc_conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct kvc_conn *conn = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)conn->rbuf, sizeof(conn->rbuf));
}

static void kvc_conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct kvc_conn *conn = s->data;
	ssize_t rv;

	if (conn->state == KVC_CONN_DEAD)
		return;
	if (nread < 0) {
		kvc__conn_fail(conn, nread == UV_EOF ? "connection closed by server"
						     : uv_strerror((int)nread));
		return;
	}
	if (nread == 0)
		return;
	conn->last_recv = uv_now(conn->client->loop);
	conn->ping_out = false;
	rv = nghttp2_session_mem_recv(conn->h2, (const uint8_t *)buf->base, (size_t)nread);
	if (conn->state == KVC_CONN_DEAD)
		return;
	if (rv < 0) {
		kvc__conn_fail(conn, nghttp2_strerror((int)rv));
		return;
	}
	if (nghttp2_session_want_write(conn->h2)) {
		kvc__client_want_write(conn);
	} else if (!nghttp2_session_want_read(conn->h2)) {
		LOGD("%s: session over", conn->client->eps[conn->ep].authority);
		kvc__conn_close(conn);
	}
}

/* --- nghttp2 callbacks -------------------------------------------------------- */

static struct kvc_call *kvc_conn_call(struct kvc_conn *conn, int32_t stream_id)
{
	if (conn->state == KVC_CONN_DEAD)
		return NULL;
	return nghttp2_session_get_stream_user_data(conn->h2, stream_id);
}

static int kvc_on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
			 size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			 void *ud)
{
	struct kvc_call *call;

	(void)h2;
	(void)flags;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call = kvc_conn_call(ud, frame->hd.stream_id);
	if (call)
		kvc__call_on_header(call, name, namelen, value, valuelen);
	return 0;
}

static int kvc_on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id,
			     const uint8_t *data, size_t len, void *ud)
{
	struct kvc_conn *conn = ud;
	struct kvc_call *call = kvc_conn_call(conn, stream_id);

	(void)h2;
	(void)flags;
	if (call)
		kvc__call_on_data(conn, stream_id, call, data, len);
	return conn->state == KVC_CONN_DEAD ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* GOAWAY: requests above last_stream_id were never processed; resend
 * them (a new connection to the same endpoint is fine: the server may only
 * be rotating connections).  The list is in stream id order, so they are
 * its tail; take the tail each time, as a resend can end other calls. */
static void kvc_conn_on_goaway(struct kvc_conn *conn, const nghttp2_goaway *ga)
{
	char why[96];

	snprintf(why, sizeof(why), "GOAWAY from server (%s)",
		 nghttp2_http2_strerror(ga->error_code));
	LOGD("%s: %s, last stream %d", conn->client->eps[conn->ep].authority, why,
	     ga->last_stream_id);
	kvc_conn_drain(conn);
	while (conn->state != KVC_CONN_DEAD && conn->calls) {
		struct kvc_call *tail = conn->calls->s.prev;

		if (tail->s.stream_id <= ga->last_stream_id)
			break;
		kvc__conn_detach(conn, tail, false);
		kvc__call_conn_lost(tail, true, ga->error_code == NGHTTP2_NO_ERROR, why);
	}
	if (conn->state != KVC_CONN_DEAD)
		kvc_conn_check_idle(conn);
}

static int kvc_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct kvc_conn *conn = ud;
	struct kvc_call *call;

	(void)h2;
	if (conn->state == KVC_CONN_DEAD)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	switch (frame->hd.type) {
	case NGHTTP2_GOAWAY:
		kvc_conn_on_goaway(conn, &frame->goaway);
		break;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			break;
		call = kvc_conn_call(conn, frame->hd.stream_id);
		if (call) {
			/* nghttp2 marks the stream closed for reading only
			 * after this callback: note it, so ending the call
			 * does not reset a stream that is over. */
			call->s.remote_end = true;
			kvc__call_on_end(call);
		}
		break;
	default:
		break;
	}
	return conn->state == KVC_CONN_DEAD ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int kvc_on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
			       void *ud)
{
	struct kvc_conn *conn = ud;
	struct kvc_call *call = kvc_conn_call(conn, stream_id);

	(void)h2;
	if (call) {
		kvc__conn_detach(conn, call, false);
		kvc__call_on_reset(call, error_code);
	}
	return 0;
}

static int kvc_on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct kvc_call *call;

	(void)h2;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call = kvc_conn_call(ud, frame->hd.stream_id);
	if (call)
		call->s.headers_sent = true;
	return 0;
}

/* A request HEADERS nghttp2 would not send (GOAWAY came first, ids used
 * up): the request never left, so it may go anywhere.  The stream does
 * not exist, so find the call in the list (id order: walk back from the
 * end and stop at smaller ids). */
static int kvc_on_frame_not_send(nghttp2_session *h2, const nghttp2_frame *frame,
				 int lib_error_code, void *ud)
{
	struct kvc_conn *conn = ud;
	struct kvc_call *call;

	(void)h2;
	LOGD("%s: frame type %u on stream %d not sent: %s", conn->client->eps[conn->ep].authority,
	     frame->hd.type, frame->hd.stream_id, nghttp2_strerror(lib_error_code));
	if (frame->hd.type != NGHTTP2_HEADERS || conn->state == KVC_CONN_DEAD || !conn->calls)
		return 0;
	call = conn->calls->s.prev; /* the tail */
	for (;;) {
		if (call->s.stream_id == frame->hd.stream_id)
			break;
		if (call->s.stream_id < frame->hd.stream_id || call == conn->calls)
			return 0;
		call = call->s.prev;
	}
	kvc_conn_drain(conn);
	kvc__conn_detach(conn, call, false);
	kvc__call_conn_lost(call, true, true, nghttp2_strerror(lib_error_code));
	return 0;
}

static ssize_t kvc_data_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *buf,
				size_t length, uint32_t *data_flags, nghttp2_data_source *src,
				void *ud)
{
	struct kvc_call *call = kvc_conn_call(ud, stream_id);

	(void)h2;
	(void)src;
	if (!call)
		return NGHTTP2_ERR_DEFERRED; /* detached: an RST_STREAM follows */
	return kvc__call_read_body(call, buf, length, data_flags);
}

static int kvc_on_error(nghttp2_session *h2, int code, const char *msg, size_t len, void *ud)
{
	(void)h2;
	(void)ud;
	LOGD("nghttp2: %.*s (%d)", (int)len, msg, code);
	return 0;
}

/* --- connecting --------------------------------------------------------------- */

static void kvc_conn_timer_cb(uv_timer_t *t)
{
	struct kvc_conn *conn = t->data;
	struct kvc_options *o = &conn->client->opts;
	uint64_t now = uv_now(conn->client->loop);

	if (conn->state == KVC_CONN_CONNECTING) {
		kvc__conn_fail(conn, conn->errmsg[0] ? conn->errmsg : "dial timeout");
		return;
	}
	if (conn->ping_out) {
		if (now - conn->ping_sent >= o->keepalive_timeout_ms)
			kvc__conn_fail(conn, "keepalive timeout");
		return;
	}
	if (now - conn->last_recv >= o->keepalive_ms) {
		if (nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_NONE, NULL) == 0) {
			conn->ping_out = true;
			conn->ping_sent = now;
			kvc__client_want_write(conn);
		}
	}
}

static void kvc_conn_connect_cb(uv_connect_t *req, int status)
{
	struct kvc_conn *conn = req->data;
	struct kvc_options *o = &conn->client->opts;
	int rv;

	conn->pending--;
	if (conn->state == KVC_CONN_DEAD) {
		kvc_conn_maybe_free(conn);
		return;
	}
	if (status < 0) {
		kvc__conn_fail(conn, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&conn->tcp, 1);
	rv = uv_read_start((uv_stream_t *)&conn->tcp, kvc_conn_alloc_cb, kvc_conn_read_cb);
	if (rv < 0) {
		kvc__conn_fail(conn, uv_strerror(rv));
		return;
	}
	kvc__client_endpoint_ok(conn->client, conn->ep);
	uv_timer_stop(&conn->timer);
	conn->last_recv = uv_now(conn->client->loop);
	if (o->keepalive_ms) {
		uint64_t every = o->keepalive_ms;

		if (o->keepalive_timeout_ms && o->keepalive_timeout_ms < every)
			every = o->keepalive_timeout_ms;
		uv_timer_start(&conn->timer, kvc_conn_timer_cb, every, every);
	}
	if (conn->state == KVC_CONN_CONNECTING)
		conn->state = KVC_CONN_READY;
	kvc__client_want_write(conn);
}

static void kvc_conn_connect(struct kvc_conn *conn, const struct sockaddr *sa)
{
	int rv;

	conn->connect_req.data = conn;
	rv = uv_tcp_connect(&conn->connect_req, &conn->tcp, sa, kvc_conn_connect_cb);
	if (rv < 0) {
		/* Fail from the loop, never inside the caller's start. */
		snprintf(conn->errmsg, sizeof(conn->errmsg), "%s", uv_strerror(rv));
		uv_timer_start(&conn->timer, kvc_conn_timer_cb, 0, 0);
		return;
	}
	conn->pending++;
}

static void kvc_conn_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct kvc_conn *conn = req->data;
	struct addrinfo *ai;
	char why[128];

	conn->pending--;
	conn->gai_active = false;
	if (conn->state == KVC_CONN_DEAD) {
		uv_freeaddrinfo(res);
		kvc_conn_maybe_free(conn);
		return;
	}
	if (status < 0 || !res) {
		snprintf(why, sizeof(why), "lookup of %s: %s", conn->client->eps[conn->ep].host,
			 uv_strerror(status));
		uv_freeaddrinfo(res);
		kvc__conn_fail(conn, why);
		return;
	}
	/* Only one address is tried: prefer IPv4, as etcd members usually
	 * listen on 127.0.0.1 or a v4 address while "localhost" may list
	 * ::1 first. */
	for (ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET)
			break;
	kvc_conn_connect(conn, (ai ? ai : res)->ai_addr);
	uv_freeaddrinfo(res);
}

/* One callback table for every session; clients on loops of different
 * threads may create their first connections at the same time. */
static nghttp2_session_callbacks *kvc_cbs;
static pthread_once_t kvc_cbs_once = PTHREAD_ONCE_INIT;

static void kvc_callbacks_init(void)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&cbs))
		return;
	nghttp2_session_callbacks_set_on_header_callback(cbs, kvc_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, kvc_on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, kvc_on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, kvc_on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, kvc_on_frame_send);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, kvc_on_frame_not_send);
	nghttp2_session_callbacks_set_error_callback2(cbs, kvc_on_error);
	kvc_cbs = cbs;
}

static nghttp2_session_callbacks *kvc_callbacks(void)
{
	pthread_once(&kvc_cbs_once, kvc_callbacks_init);
	return kvc_cbs;
}

static int kvc_conn_session(struct kvc_conn *conn)
{
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, KVC_STREAM_WINDOW},
	};
	nghttp2_session_callbacks *cbs = kvc_callbacks();
	int rv;

	if (!cbs)
		return -KV_ENOMEM;
	rv = nghttp2_session_client_new(&conn->h2, cbs, conn);
	if (rv)
		return -KV_ENOMEM;
	rv = nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0,
							   KVC_CONN_WINDOW);
	if (rv) {
		nghttp2_session_del(conn->h2);
		conn->h2 = NULL;
		return -KV_ENOMEM;
	}
	return 0;
}

struct kvc_conn *kvc__conn_new(struct kvc_client *c, int ep)
{
	struct kvc_endpoint *e = &c->eps[ep];
	struct kvc_conn *conn = calloc(1, sizeof(*conn));
	int rv;

	if (!conn)
		return NULL;
	conn->client = c;
	conn->ep = ep;
	conn->state = KVC_CONN_CONNECTING;
	if (kvc_conn_session(conn)) {
		free(conn);
		return NULL;
	}
	uv_tcp_init(c->loop, &conn->tcp);
	uv_timer_init(c->loop, &conn->timer);
	conn->tcp.data = conn->timer.data = conn;
	conn->pending = 2;
	conn->next = c->conns;
	if (c->conns)
		c->conns->prev = conn;
	c->conns = conn;
	c->n_conns++;
	e->conn = conn;

	uv_timer_start(&conn->timer, kvc_conn_timer_cb, c->opts.dial_timeout_ms, 0);
	if (e->numeric) {
		kvc_conn_connect(conn, (const struct sockaddr *)&e->addr);
	} else {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

		conn->gai_req.data = conn;
		rv = uv_getaddrinfo(c->loop, &conn->gai_req, kvc_conn_gai_cb, e->host, e->port,
				    &hints);
		if (rv < 0) {
			snprintf(conn->errmsg, sizeof(conn->errmsg), "lookup of %s: %s", e->host,
				 uv_strerror(rv));
			uv_timer_start(&conn->timer, kvc_conn_timer_cb, 0, 0);
		} else {
			conn->gai_active = true;
			conn->pending++;
		}
	}
	return conn;
}

/* --- calls on the connection -------------------------------------------------- */

int kvc__conn_submit(struct kvc_conn *conn, struct kvc_call *call)
{
	nghttp2_nv nva[KVC_NV_MAX];
	nghttp2_data_provider prd;
	char tbuf[24];
	size_t n;
	int32_t id;

	if (conn->state == KVC_CONN_DEAD || conn->state == KVC_CONN_DRAINING ||
	    !nghttp2_session_check_request_allowed(conn->h2)) {
		kvc_conn_drain(conn);
		kvc_conn_check_idle(conn);
		return -KV_EUNAVAILABLE;
	}
	n = kvc__call_headers(call, nva, tbuf, sizeof(tbuf));
	memset(&prd, 0, sizeof(prd));
	prd.read_callback = kvc_data_read_cb;
	id = nghttp2_submit_request(conn->h2, NULL, nva, n, &prd, call);
	if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
		kvc_conn_drain(conn);
		kvc_conn_check_idle(conn);
		return -KV_EUNAVAILABLE;
	}
	if (id < 0)
		return -KV_ENOMEM;
	call->s.stream_id = id;
	call->s.conn = conn;
	/* Append: the list stays in stream id order (see GOAWAY). */
	call->s.next = NULL;
	if (conn->calls) {
		struct kvc_call *last = conn->calls->s.prev;

		last->s.next = call;
		call->s.prev = last;
		conn->calls->s.prev = call;
	} else {
		conn->calls = call;
		call->s.prev = call;
	}
	conn->n_calls++;
	if (conn->state == KVC_CONN_READY)
		kvc__client_want_write(conn);
	return 0;
}

void kvc__conn_detach(struct kvc_conn *conn, struct kvc_call *call, bool rst)
{
	int32_t id = call->s.stream_id;

	if (call->s.conn != conn)
		return;
	/* Unlink; the head's prev points to the tail. */
	if (call == conn->calls) {
		conn->calls = call->s.next;
		if (conn->calls)
			conn->calls->s.prev = call->s.prev;
	} else {
		call->s.prev->s.next = call->s.next;
		if (call->s.next)
			call->s.next->s.prev = call->s.prev;
		else
			conn->calls->s.prev = call->s.prev;
	}
	call->s.next = call->s.prev = NULL;
	call->s.conn = NULL;
	conn->n_calls--;

	/* Even on a dead connection: nghttp2 may still be delivering frames
	 * of this stream from the buffer being parsed. */
	nghttp2_session_set_stream_user_data(conn->h2, id, NULL);
	if (rst && conn->state != KVC_CONN_DEAD) {
		int lc = nghttp2_session_get_stream_local_close(conn->h2, id);
		int rc = call->s.remote_end ? 1 : nghttp2_session_get_stream_remote_close(conn->h2, id);

		/* No stream yet (HEADERS still queued: the RST cancels it), or
		 * a stream still open in either direction. */
		if ((lc < 0 && !call->s.headers_sent) || (lc == 0 || rc == 0)) {
			nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
			kvc__client_want_write(conn);
		}
	}
	kvc_conn_check_idle(conn);
}

int kvc__conn_resume(struct kvc_conn *conn, struct kvc_call *call)
{
	if (conn->state == KVC_CONN_DEAD)
		return 0;
	nghttp2_session_resume_data(conn->h2, call->s.stream_id);
	if (conn->state != KVC_CONN_CONNECTING)
		kvc__client_want_write(conn);
	return 0;
}
