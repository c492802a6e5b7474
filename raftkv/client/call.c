/*
 * call: one gRPC call of the client library, unary or streaming.
 *
 * Request side: a unary call sends the caller's packed message straight
 * from the caller's memory (the 5-byte prefix is generated on the fly), so
 * it can be sent again, unchanged, to another endpoint; a streaming call
 * sends a queue of copies.  Response side: the 5-byte prefix is checked
 * against the receive limit before any allocation; a streamed message that
 * sits whole in one DATA chunk goes to the callback without a copy, others
 * are reassembled (a unary response up to KVC_CALL_INLINE bytes inside the
 * call itself).  The trailers' grpc-status and percent-decoded
 * grpc-message become 0 or -KV_E* through err.h's table of etcd's texts.
 *
 * A call ends exactly once, in kvc__call_finish(): it leaves its
 * connection (the stream is reset if still open) and the deadline heap,
 * then done_cb runs; buffers the callback may look at are freed after it
 * returns, by pointers saved beforehand, because the callback may free or
 * restart the call.
 */
#include "client/kvc_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

#ifdef PACKAGE_VERSION
#define KVC_USER_AGENT "raftkv-kvc/" PACKAGE_VERSION
#else
#define KVC_USER_AGENT "raftkv-kvc"
#endif
#define KVC_REASSEMBLY_START (16u << 20)

/* --- status ------------------------------------------------------------------- */

static int kvc_err_from_status(enum grpc_code code, const char *msg)
{
	static const char toolarge[] = "grpc: received message larger than max";
	int e;

	if (code == GRPC_OK)
		return 0;
	if (msg && (e = kv_err_from_message(msg)) != 0)
		return e;
	switch (code) {
	case GRPC_DEADLINE_EXCEEDED:
		return -KV_EDEADLINE;
	case GRPC_CANCELLED:
		return -KV_ECANCELED;
	case GRPC_UNIMPLEMENTED:
		return -KV_EUNIMPLEMENTED;
	case GRPC_UNAVAILABLE:
		return -KV_EUNAVAILABLE;
	case GRPC_RESOURCE_EXHAUSTED:
		if (msg && strncmp(msg, toolarge, sizeof(toolarge) - 1) == 0)
			return -KV_EMSGTOOLARGE;
		return -KV_EREMOTE;
	default:
		return -KV_EREMOTE;
	}
}

/* gRPC's mapping of an HTTP status that came without grpc-status. */
static enum grpc_code kvc_code_from_http(int status)
{
	switch (status) {
	case 400:
		return GRPC_INTERNAL;
	case 401:
		return GRPC_UNAUTHENTICATED;
	case 403:
		return GRPC_PERMISSION_DENIED;
	case 404:
		return GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return GRPC_UNAVAILABLE;
	default:
		return GRPC_UNKNOWN;
	}
}

static int kvc_hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* grpc-message is percent-encoded; a malformed escape stays as it is. */
static char *kvc_percent_decode(const uint8_t *v, size_t len)
{
	char *out = malloc(len + 1);
	size_t i, o = 0;

	if (!out)
		return NULL;
	for (i = 0; i < len; i++) {
		int hi, lo;

		if (v[i] == '%' && i + 2 < len && (hi = kvc_hexval(v[i + 1])) >= 0 &&
		    (lo = kvc_hexval(v[i + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = (char)v[i];
		}
	}
	out[o] = '\0';
	return out;
}

static void kvc_call_set_msg(struct kvc_call *call, const char *msg)
{
	char *m = strdup(msg);

	if (!m)
		return; /* keep the old text rather than none */
	free(call->s.grpc_msg);
	call->s.grpc_msg = m;
}

/* --- ending and resending ---------------------------------------------------- */

static void kvc_sendq_free(struct kvc_call *call)
{
	struct kvc_sendbuf *b = call->s.sq_head;

	while (b) {
		struct kvc_sendbuf *next = b->next;

		free(b);
		b = next;
	}
	call->s.sq_head = call->s.sq_tail = NULL;
}

void kvc__call_finish(struct kvc_call *call, int err, enum grpc_code code, const char *msg)
{
	struct kvc__call_state *s = &call->s;
	kvc_done_cb done = s->done_cb;
	uint8_t *resp, *buf;
	char *gmsg;

	if (s->phase != KVC_PH_ACTIVE)
		return;
	s->phase = KVC_PH_FINISHING;
	if (s->conn)
		kvc__conn_detach(s->conn, call, true);
	kvc__heap_remove(s->client, call);
	kvc_sendq_free(call);
	if (msg)
		kvc_call_set_msg(call, msg);
	s->grpc_status = code;
	if (err && !s->grpc_msg)
		kvc_call_set_msg(call, kv_err_message(err));
	if (err)
		LOGD("%s on %s: %s (%s)", s->method->path,
		     s->ep >= 0 ? s->client->eps[s->ep].authority : "-", kv_err_name(err),
		     s->grpc_msg ? s->grpc_msg : "");

	/* done may free or restart the call: keep what to free. */
	resp = s->resp != s->inl ? s->resp : NULL;
	buf = s->buf != s->inl ? s->buf : NULL;
	gmsg = s->grpc_msg;
	if (err) {
		s->resp = NULL; /* no response to show with an error */
		s->resp_len = 0;
	}
	s->phase = KVC_PH_IDLE;
	done(call, err);
	free(resp);
	free(buf);
	free(gmsg);
}

/* A resend needs the request again: a unary body always is; a stream's
 * queue only until nghttp2 took bytes from it. */
static bool kvc_call_resendable(const struct kvc_call *call)
{
	const struct kvc__call_state *s = &call->s;

	return s->req || !s->body_taken;
}

static bool kvc_call_may_resend(const struct kvc_call *call)
{
	if (call->flags & KVC_CALL_NO_RETRY)
		return false;
	if (!(call->flags & KVC_CALL_RETRY) && !call->s.method->idempotent)
		return false;
	if (call->s.msg_cb && call->s.got_msg)
		return false; /* the caller saw part of the answer */
	return kvc_call_resendable(call);
}

/* The call is detached; try another attempt.  If no endpoint is left, the
 * call ends with the failure that caused the resend (err, code, and why or
 * the server's text). */
static void kvc_call_resend(struct kvc_call *call, bool same_endpoint_ok, const char *why,
			    int err, enum grpc_code code)
{
	struct kvc__call_state *s = &call->s;
	int rv;

	if (same_endpoint_ok && s->goaway_retries < KVC_GOAWAY_RETRIES)
		s->goaway_retries++;
	else if (s->ep >= 0)
		s->tried |= UINT64_C(1) << s->ep;
	if (why)
		kvc_call_set_msg(call, why);
	if (s->buf && s->buf != s->inl)
		free(s->buf);
	if (s->resp && s->resp != s->inl)
		free(s->resp);
	s->buf = s->resp = NULL;
	s->have = s->cap = s->resp_len = 0;
	s->hdr_have = 0;
	s->got_msg = s->got_status = false;
	s->headers_sent = s->body_taken = s->eof_read = s->remote_end = false;
	s->http_status = 0;
	s->grpc_status = GRPC_OK;
	s->req_off = 0;
	s->stream_id = 0;
	rv = kvc__client_dispatch(call);
	if (rv == -KV_EUNAVAILABLE)
		kvc__call_finish(call, err, code, NULL);
	else if (rv)
		kvc__call_finish(call, rv, kv_err_grpc_code(rv), NULL);
}

void kvc__call_conn_lost(struct kvc_call *call, bool unprocessed, bool same_endpoint_ok,
			 const char *why)
{
	if (call->s.phase != KVC_PH_ACTIVE)
		return;
	if (call->s.conn)
		kvc__conn_detach(call->s.conn, call, false);
	if (call->s.client->closing) {
		kvc__call_finish(call, -KV_ECANCELED, GRPC_CANCELLED, "client closed");
		return;
	}
	if ((unprocessed && kvc_call_resendable(call)) || (!unprocessed && kvc_call_may_resend(call))) {
		kvc_call_resend(call, unprocessed && same_endpoint_ok, why, -KV_EUNAVAILABLE,
				GRPC_UNAVAILABLE);
		return;
	}
	kvc__call_finish(call, -KV_EUNAVAILABLE, GRPC_UNAVAILABLE, why);
}

/* --- request ------------------------------------------------------------------- */

size_t kvc__call_headers(struct kvc_call *call, nghttp2_nv *nva, char *tbuf, size_t tlen)
{
	struct kvc_client *c = call->s.client;
	const char *authority = c->eps[call->s.ep].authority;
	size_t n = 0, i;

#define KVC_NV(nm, val, vlen, fl)                                                   \
	do {                                                                        \
		nva[n].name = (uint8_t *)(nm);                                      \
		nva[n].namelen = strlen(nm);                                        \
		nva[n].value = (uint8_t *)(val);                                    \
		nva[n].valuelen = (vlen);                                           \
		nva[n].flags = (fl);                                                \
		n++;                                                                \
	} while (0)
#define KVC_NV_STATIC(nm, val) \
	KVC_NV(nm, val, sizeof(val) - 1, NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)

	KVC_NV_STATIC(":method", "POST");
	KVC_NV_STATIC(":scheme", "http");
	KVC_NV(":path", call->s.method->path, strlen(call->s.method->path),
	       NGHTTP2_NV_FLAG_NO_COPY_NAME);
	KVC_NV(":authority", authority, strlen(authority), NGHTTP2_NV_FLAG_NO_COPY_NAME);
	KVC_NV_STATIC("content-type", "application/grpc");
	KVC_NV_STATIC("te", "trailers");
	KVC_NV_STATIC("user-agent", KVC_USER_AGENT);
	if (call->s.deadline) {
		uint64_t now = uv_now(c->loop);
		uint64_t left = call->s.deadline > now ? call->s.deadline - now : 1;
		int len;

		/* At most 8 digits: switch to seconds past ~27 hours. */
		if (left < 100000000)
			len = snprintf(tbuf, tlen, "%llum", (unsigned long long)left);
		else
			len = snprintf(tbuf, tlen, "%lluS", (unsigned long long)(left / 1000));
		KVC_NV("grpc-timeout", tbuf, (size_t)len, NGHTTP2_NV_FLAG_NO_COPY_NAME);
	}
	for (i = 0; i < c->n_headers; i++)
		KVC_NV(c->headers[i].name, c->headers[i].value, strlen(c->headers[i].value),
		       NGHTTP2_NV_FLAG_NONE);
	for (i = 0; i < call->n_md; i++)
		KVC_NV(call->md[i].name, call->md[i].value, strlen(call->md[i].value),
		       NGHTTP2_NV_FLAG_NONE);
#undef KVC_NV_STATIC
#undef KVC_NV
	return n;
}

ssize_t kvc__call_read_body(struct kvc_call *call, uint8_t *buf, size_t length,
			    uint32_t *data_flags)
{
	struct kvc__call_state *s = &call->s;
	size_t n = 0;

	if (s->req) {
		size_t total = 5 + s->req_len;

		while (n < length && s->req_off < total) {
			size_t k;

			if (s->req_off < 5) {
				uint8_t prefix[5] = {0, (uint8_t)(s->req_len >> 24),
						     (uint8_t)(s->req_len >> 16),
						     (uint8_t)(s->req_len >> 8), (uint8_t)s->req_len};

				k = 5 - s->req_off;
				if (k > length - n)
					k = length - n;
				memcpy(buf + n, prefix + s->req_off, k);
			} else {
				k = total - s->req_off;
				if (k > length - n)
					k = length - n;
				memcpy(buf + n, s->req + (s->req_off - 5), k);
			}
			n += k;
			s->req_off += k;
		}
		s->body_taken = true;
		if (s->req_off == total) {
			*data_flags |= NGHTTP2_DATA_FLAG_EOF;
			s->eof_read = true;
		}
		return (ssize_t)n;
	}

	while (n < length && s->sq_head) {
		struct kvc_sendbuf *b = s->sq_head;
		size_t k = b->len - b->off;

		if (k > length - n)
			k = length - n;
		memcpy(buf + n, b->data + b->off, k);
		b->off += k;
		n += k;
		if (b->off == b->len) {
			s->sq_head = b->next;
			if (!s->sq_head)
				s->sq_tail = NULL;
			free(b);
		}
	}
	if (n)
		s->body_taken = true;
	if (!s->sq_head && s->close_send) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		s->eof_read = true;
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* --- response ------------------------------------------------------------------ */

static bool kvc_name_is(const uint8_t *name, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

void kvc__call_on_header(struct kvc_call *call, const uint8_t *name, size_t namelen,
			 const uint8_t *value, size_t valuelen)
{
	struct kvc__call_state *s = &call->s;

	if (kvc_name_is(name, namelen, ":status")) {
		s->http_status = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			s->http_status = s->http_status * 10 + (value[i] - '0');
	} else if (kvc_name_is(name, namelen, "grpc-status")) {
		int v = 0;

		for (size_t i = 0; i < valuelen && i < 4; i++) {
			if (value[i] < '0' || value[i] > '9') {
				v = GRPC_UNKNOWN;
				break;
			}
			v = v * 10 + (value[i] - '0');
		}
		if (valuelen == 0 || v > GRPC_UNAUTHENTICATED)
			v = GRPC_UNKNOWN;
		s->grpc_status = v;
		s->got_status = true;
	} else if (kvc_name_is(name, namelen, "grpc-message")) {
		char *m = kvc_percent_decode(value, valuelen);

		if (m) {
			free(s->grpc_msg);
			s->grpc_msg = m;
		}
	}
}

void kvc__call_on_end(struct kvc_call *call)
{
	struct kvc__call_state *s = &call->s;
	enum grpc_code code;
	char why[80];
	int err;

	if (!s->got_status) {
		if (s->http_status && s->http_status != 200) {
			code = kvc_code_from_http(s->http_status);
			snprintf(why, sizeof(why), "unexpected HTTP status %d", s->http_status);
		} else {
			code = GRPC_INTERNAL;
			snprintf(why, sizeof(why), "server closed the stream without sending trailers");
		}
		kvc__call_finish(call, code == GRPC_INTERNAL ? -KV_EINTERNAL
							      : kvc_err_from_status(code, NULL),
				 code, why);
		return;
	}
	code = (enum grpc_code)s->grpc_status;
	if (code == GRPC_OK) {
		if (s->req && !s->got_msg && !s->msg_cb) {
			kvc__call_finish(call, -KV_EINTERNAL, GRPC_INTERNAL,
					 "no response message in a unary call");
			return;
		}
		kvc__call_finish(call, 0, GRPC_OK, NULL);
		return;
	}
	err = kvc_err_from_status(code, s->grpc_msg);
	if (code == GRPC_UNAVAILABLE && kvc_call_may_resend(call) && !s->client->closing) {
		kvc__conn_detach(s->conn, call, true);
		kvc_call_resend(call, false, NULL, err, code);
		return;
	}
	kvc__call_finish(call, err, code, NULL);
}

void kvc__call_on_reset(struct kvc_call *call, uint32_t h2_error)
{
	enum grpc_code code;
	char why[96];

	if (h2_error == NGHTTP2_REFUSED_STREAM) {
		kvc__call_conn_lost(call, true, true, "stream refused by server");
		return;
	}
	switch (h2_error) {
	case NGHTTP2_CANCEL:
		code = GRPC_CANCELLED;
		break;
	case NGHTTP2_ENHANCE_YOUR_CALM:
		code = GRPC_RESOURCE_EXHAUSTED;
		break;
	case NGHTTP2_INADEQUATE_SECURITY:
		code = GRPC_PERMISSION_DENIED;
		break;
	default:
		code = GRPC_INTERNAL;
		break;
	}
	snprintf(why, sizeof(why), "stream reset by server (%s)", nghttp2_http2_strerror(h2_error));
	kvc__call_finish(call, code == GRPC_CANCELLED ? -KV_ECANCELED
			 : code == GRPC_INTERNAL      ? -KV_EINTERNAL
						      : -KV_EREMOTE,
			 code, why);
}

/* Hands one message to a streaming call's callback; false if the call
 * ended or moved meanwhile (then it must not be touched: it may be gone). */
static bool kvc_call_deliver(struct kvc_conn *conn, int32_t sid, struct kvc_call *call,
			     const uint8_t *msg, size_t len)
{
	struct kvc__call_state *s = &call->s;
	uint8_t *owned = NULL;
	size_t cap = 0;
	bool alive;

	/* The callback may end the call, which frees s->buf: take it out
	 * while msg points into it. */
	if (s->buf && msg == s->buf) {
		owned = s->buf;
		cap = s->cap;
		s->buf = NULL;
		s->cap = 0;
	}
	s->got_msg = true;
	s->msg_cb(call, msg, len);
	alive = conn->state != KVC_CONN_DEAD &&
		nghttp2_session_get_stream_user_data(conn->h2, sid) == call;
	if (alive && owned && !s->buf) {
		s->buf = owned;
		s->cap = cap;
	} else {
		free(owned);
	}
	return alive;
}

/* The 5-byte prefix is complete: check it, and find room for the body. */
static int kvc_call_msg_begin(struct kvc_call *call, size_t avail)
{
	struct kvc__call_state *s = &call->s;
	uint32_t max = s->client->opts.max_recv_bytes;
	size_t want;
	char why[96];

	s->msg_len = (uint32_t)s->hdr[1] << 24 | (uint32_t)s->hdr[2] << 16 |
		     (uint32_t)s->hdr[3] << 8 | s->hdr[4];
	s->have = 0;
	if (s->hdr[0] != 0) {
		kvc__call_finish(call, -KV_EINTERNAL, GRPC_INTERNAL,
				 "compressed response message (not requested)");
		return -1;
	}
	if (s->msg_len > max) {
		snprintf(why, sizeof(why), "grpc: received message larger than max (%u vs. %u)",
			 s->msg_len, max);
		kvc__call_finish(call, -KV_EMSGTOOLARGE, GRPC_RESOURCE_EXHAUSTED, why);
		return -1;
	}
	if (!s->msg_cb && s->got_msg) {
		kvc__call_finish(call, -KV_EINTERNAL, GRPC_INTERNAL,
				 "more than one response message in a unary call");
		return -1;
	}
	if (s->msg_cb && avail >= s->msg_len)
		return 0; /* delivered from the chunk itself */
	if (!s->msg_cb && s->msg_len <= KVC_CALL_INLINE) {
		s->buf = s->inl;
		s->cap = KVC_CALL_INLINE;
		return 0;
	}
	/* Grow with the data rather than trust a huge length up front. */
	want = s->msg_len < KVC_REASSEMBLY_START ? s->msg_len : KVC_REASSEMBLY_START;
	if (want == 0)
		want = 1;
	if (!s->buf || s->cap < want) {
		uint8_t *b = realloc(s->buf == s->inl ? NULL : s->buf, want);

		if (!b) {
			kvc__call_finish(call, -KV_ENOMEM, GRPC_RESOURCE_EXHAUSTED, NULL);
			return -1;
		}
		s->buf = b;
		s->cap = want;
	}
	return 0;
}

bool kvc__call_on_data(struct kvc_conn *conn, int32_t sid, struct kvc_call *call,
		       const uint8_t *data, size_t len)
{
	struct kvc__call_state *s = &call->s;

	for (;;) {
		size_t k;

		if (s->hdr_have < 5) {
			if (!len)
				return true;
			k = 5 - s->hdr_have;
			if (k > len)
				k = len;
			memcpy(s->hdr + s->hdr_have, data, k);
			s->hdr_have += (uint8_t)k;
			data += k;
			len -= k;
			if (s->hdr_have < 5)
				return true;
			if (kvc_call_msg_begin(call, len))
				return false;
			if (s->msg_cb && len >= s->msg_len) {
				size_t m = s->msg_len;

				s->hdr_have = 0;
				if (!kvc_call_deliver(conn, sid, call, data, m))
					return false;
				data += m;
				len -= m;
				continue;
			}
		}
		k = s->msg_len - s->have;
		if (k > len)
			k = len;
		if (s->have + k > s->cap) {
			size_t cap = s->cap * 2;
			uint8_t *b;

			if (cap < s->have + k)
				cap = s->have + k;
			if (cap > s->msg_len)
				cap = s->msg_len;
			b = realloc(s->buf, cap);
			if (!b) {
				kvc__call_finish(call, -KV_ENOMEM, GRPC_RESOURCE_EXHAUSTED, NULL);
				return false;
			}
			s->buf = b;
			s->cap = cap;
		}
		if (k)
			memcpy(s->buf + s->have, data, k);
		s->have += k;
		data += k;
		len -= k;
		if (s->have < s->msg_len)
			return true;
		s->hdr_have = 0;
		if (s->msg_cb) {
			if (!kvc_call_deliver(conn, sid, call, s->buf, s->msg_len))
				return false;
		} else {
			s->resp = s->buf;
			s->resp_len = s->msg_len;
			s->buf = NULL;
			s->cap = 0;
			s->got_msg = true;
		}
	}
}

/* --- starting ---------------------------------------------------------------------- */

void kvc_call_init(struct kvc_call *call)
{
	memset(call, 0, sizeof(*call));
	call->s.heap_idx = SIZE_MAX;
	call->s.ep = -1;
}

static int kvc_call_begin(struct kvc_client *c, struct kvc_call *call, const struct kvc_method *m,
			  kvc_done_cb done)
{
	struct kvc__call_state *s = &call->s;
	uint32_t t;

	if (!c || !call || !m || !m->path || m->path[0] != '/' || !done)
		return -KV_EINVAL;
	if (c->closing)
		return -KV_ECANCELED;
	if (s->phase != KVC_PH_IDLE || call->n_md > KVC_MAX_CALL_MD)
		return -KV_EINVAL;
	memset(s, 0, offsetof(struct kvc__call_state, inl));
	s->client = c;
	s->method = m;
	s->done_cb = done;
	s->heap_idx = SIZE_MAX;
	s->ep = -1;
	s->grpc_status = GRPC_OK;
	t = call->timeout_ms;
	if (t == 0)
		t = m->kind == KVC_UNARY ? c->opts.call_timeout_ms : KVC_NO_TIMEOUT;
	if (t != 0 && t != KVC_NO_TIMEOUT)
		s->deadline = uv_now(c->loop) + t;
	return 0;
}

/* The first dispatch: on failure the call never started (no callback). */
static int kvc_call_launch(struct kvc_call *call)
{
	struct kvc__call_state *s = &call->s;
	int rv;

	s->phase = KVC_PH_ACTIVE;
	rv = kvc__client_dispatch(call);
	if (rv) {
		s->phase = KVC_PH_IDLE;
		kvc_sendq_free(call);
		free(s->grpc_msg);
		s->grpc_msg = NULL;
		return rv;
	}
	if (s->deadline && s->phase == KVC_PH_ACTIVE)
		kvc__heap_add(s->client, call);
	return 0;
}

int kvc_call_unary(struct kvc_client *c, struct kvc_call *call, const struct kvc_method *m,
		   const uint8_t *req, size_t len, kvc_done_cb done)
{
	int rv;

	if ((!req && len) || len > UINT32_MAX - 5)
		return -KV_EINVAL;
	rv = kvc_call_begin(c, call, m, done);
	if (rv)
		return rv;
	call->s.req = req ? req : (const uint8_t *)"";
	call->s.req_len = len;
	return kvc_call_launch(call);
}

const uint8_t *kvc_call_response(const struct kvc_call *call, size_t *len)
{
	*len = call->s.resp_len;
	return call->s.resp;
}

static void kvc_call_pb_done(struct kvc_call *call, int err)
{
	kvc_pb_cb cb = call->s.pb_cb;
	struct arena *arena = call->s.arena;
	const ProtobufCMessageDescriptor *desc = call->s.method->resp_desc;
	ProtobufCMessage *resp = NULL;

	if (err == 0) {
		size_t len;
		const uint8_t *data = kvc_call_response(call, &len);

		resp = protobuf_c_message_unpack(desc, arena_pb_allocator(arena), len,
						 data ? data : (const uint8_t *)"");
		if (!resp) {
			err = -KV_EMALFORMED;
			kvc_call_set_msg(call, "response message did not decode");
		}
	}
	cb(call, err, resp);
}

int kvc_call_unary_pb(struct kvc_client *c, struct kvc_call *call, const struct kvc_method *m,
		      const ProtobufCMessage *req, struct arena *arena, kvc_pb_cb cb)
{
	size_t len;
	uint8_t *buf;
	int rv;

	if (!req || !arena || !cb || !m || !m->resp_desc ||
	    (m->req_desc && req->descriptor != m->req_desc))
		return -KV_EINVAL;
	len = protobuf_c_message_get_packed_size(req);
	buf = arena_alloc(arena, len ? len : 1);
	if (!buf)
		return -KV_ENOMEM;
	protobuf_c_message_pack(req, buf);
	rv = kvc_call_begin(c, call, m, kvc_call_pb_done);
	if (rv)
		return rv;
	call->s.req = buf;
	call->s.req_len = len;
	call->s.pb_cb = cb;
	call->s.arena = arena;
	return kvc_call_launch(call);
}

int kvc_call_stream(struct kvc_client *c, struct kvc_call *call, const struct kvc_method *m,
		    kvc_msg_cb on_msg, kvc_done_cb done)
{
	int rv;

	if (!on_msg)
		return -KV_EINVAL;
	rv = kvc_call_begin(c, call, m, done);
	if (rv)
		return rv;
	call->s.msg_cb = on_msg;
	return kvc_call_launch(call);
}

static int kvc_call_enqueue(struct kvc_call *call, struct kvc_sendbuf *b)
{
	struct kvc__call_state *s = &call->s;

	b->next = NULL;
	b->off = 0;
	if (s->sq_tail)
		s->sq_tail->next = b;
	else
		s->sq_head = b;
	s->sq_tail = b;
	if (s->conn)
		kvc__conn_resume(s->conn, call);
	return 0;
}

static bool kvc_call_can_send(const struct kvc_call *call)
{
	return call->s.phase == KVC_PH_ACTIVE && !call->s.req && !call->s.close_send;
}

int kvc_call_send(struct kvc_call *call, const uint8_t *msg, size_t len)
{
	struct kvc_sendbuf *b;

	if (!kvc_call_can_send(call) || len > UINT32_MAX - 5 || (!msg && len))
		return -KV_EINVAL;
	b = malloc(sizeof(*b) + 5 + len);
	if (!b)
		return -KV_ENOMEM;
	b->len = 5 + len;
	b->data[0] = 0;
	b->data[1] = (uint8_t)(len >> 24);
	b->data[2] = (uint8_t)(len >> 16);
	b->data[3] = (uint8_t)(len >> 8);
	b->data[4] = (uint8_t)len;
	if (len)
		memcpy(b->data + 5, msg, len);
	return kvc_call_enqueue(call, b);
}

int kvc_call_send_pb(struct kvc_call *call, const ProtobufCMessage *msg)
{
	struct kvc_sendbuf *b;
	size_t len;

	if (!kvc_call_can_send(call) || !msg)
		return -KV_EINVAL;
	len = protobuf_c_message_get_packed_size(msg);
	if (len > UINT32_MAX - 5)
		return -KV_EINVAL;
	b = malloc(sizeof(*b) + 5 + len);
	if (!b)
		return -KV_ENOMEM;
	b->len = 5 + len;
	b->data[0] = 0;
	b->data[1] = (uint8_t)(len >> 24);
	b->data[2] = (uint8_t)(len >> 16);
	b->data[3] = (uint8_t)(len >> 8);
	b->data[4] = (uint8_t)len;
	protobuf_c_message_pack(msg, b->data + 5);
	return kvc_call_enqueue(call, b);
}

int kvc_call_close_send(struct kvc_call *call)
{
	if (!kvc_call_can_send(call))
		return -KV_EINVAL;
	call->s.close_send = true;
	if (call->s.conn)
		kvc__conn_resume(call->s.conn, call);
	return 0;
}

void kvc_call_cancel(struct kvc_call *call)
{
	if (call && call->s.phase == KVC_PH_ACTIVE)
		kvc__call_finish(call, -KV_ECANCELED, GRPC_CANCELLED, kv_err_message(KV_ECANCELED));
}

enum grpc_code kvc_call_grpc_status(const struct kvc_call *call)
{
	return (enum grpc_code)call->s.grpc_status;
}

const char *kvc_call_grpc_message(const struct kvc_call *call)
{
	return call->s.grpc_msg ? call->s.grpc_msg : "";
}

const char *kvc_call_endpoint(const struct kvc_call *call)
{
	const struct kvc__call_state *s = &call->s;

	if (!s->client || s->ep < 0 || (size_t)s->ep >= s->client->n_eps)
		return NULL;
	return s->client->eps[s->ep].authority;
}

bool kvc_call_active(const struct kvc_call *call)
{
	return call->s.phase == KVC_PH_ACTIVE;
}
