/*
 * grpc: the gRPC transport (see grpc.h).  Bytes from the listener go into
 * nghttp2_session_mem_recv; nghttp2 calls back per stream:
 *
 *   HEADERS   -> a struct rpc_call: :path routed through rpc_method_find,
 *                grpc-timeout armed as a uv timer, metadata kept for
 *                rpc_call_header(); unknown paths end trailers-only.
 *   DATA      -> length-prefixed messages reassembled.  A streaming call's
 *                message that sits whole in one chunk is handed over in place
 *                (no copy); otherwise it is copied into a buffer of the
 *                announced size, allocated only after the size passed the
 *                receive limit and the buffer budget (over it, the call
 *                parks: grpc_call_park).  Streaming calls get each message as it
 *                completes.  A unary call completes at END_STREAM and waits
 *                in the session's ready queue until nghttp2 has taken the
 *                whole read: a stream the client reset in the same read
 *                (rapid reset) is dropped without any work started.
 *   close     -> the call is detached: gone if unfinished, on_close once,
 *                freed when the last rpc_call_release() drops it.
 *
 * Responses: rpc_call_send queues packed messages behind the response
 * HEADERS and a deferred nghttp2 data provider (so the client's flow-control
 * windows are honoured); rpc_call_finish ends with trailers, or with one
 * trailers-only HEADERS frame when nothing was sent.  After our END_STREAM, a
 * stream the client has not half-closed is reset with NO_ERROR, as grpc-go
 * does, so clients stop uploading to a call that is over.  The listener's
 * flush pulls frames out with nghttp2_session_mem_send.
 *
 * Keepalive, as grpc-go with etcd's flags: with no frame in and no DATA out
 * for --grpc-keepalive-interval the server PINGs, and closes the connection
 * if nothing comes in for --grpc-keepalive-timeout more (a client that
 * stopped reading is found this way).  A client that PINGs more often than
 * --grpc-keepalive-min-time (every 2 h with no stream open), without our
 * HEADERS or DATA in between, gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
 * at the third time, and the connection closes.  The client's SETTINGS
 * must come within LISTENER_HANDSHAKE_MS of the preface.
 */
#include "server/grpc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nghttp2/nghttp2.h>

#include "lib/blob.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/rpc.h"
#include "server/server.h"

/* A stream's window until its call has the buffer of a larger message:
 * then it opens to the whole message (grpc_call_input), so a call that
 * waits for a buffer (grpc_call_park) holds at most this much. */
#define GRPC_STREAM_WINDOW (64 * 1024)
#define GRPC_CONN_WINDOW (16 << 20)
/* Bytes that parked calls of one connection may hold. */
#define GRPC_CONN_PARK_MAX (8u << 20)
#define GRPC_DEFAULT_MAX_REQUEST 1572864u
/* Longest grpc-message text we send (before percent-encoding). */
#define GRPC_MESSAGE_MAX 1024

struct grpc_session {
	nghttp2_session *h2;
	struct conn *conn;
	LIST_HEAD(, rpc_call) calls;   /* streams open */
	LIST_HEAD(, rpc_call) zombies; /* streams closed, call still held */
	TAILQ_HEAD(, rpc_call) ready;  /* unary requests complete, not started */
	TAILQ_HEAD(, rpc_call) waiting; /* answers computed late, waiting for room */
	uint32_t n_calls;  /* on both lists */
	uint32_t max_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS we sent */
	uint32_t n_open;   /* calls on the calls list */
	size_t out_all;    /* queued response bytes of every call */
	size_t out_unary;  /* ... of unary calls */
	bool out_full;     /* out_unary went over GRPC_OUT_HIGH, not yet under LOW */
	size_t buffered;  /* bytes allocated for partly received messages */
	size_t parked;    /* bytes held unconsumed by parked calls (grpc_call_park) */
	uint32_t n_parked;
	uint32_t max_recv; /* receive limit per message */
	/* keepalive and ping policy (loop times in ms) */
	uint64_t t_start;
	uint64_t ka_interval; /* 0: no keepalive */
	uint64_t ka_timeout;
	uint64_t ka_next;     /* next check */
	uint64_t ping_min;    /* client PINGs closer than this strike */
	uint64_t last_ping;
	uint8_t ping_strikes;
	bool settings_seen;   /* the client's first SETTINGS came */
	bool activity;        /* frame in or DATA out since the last check */
	bool ka_ping_out;     /* our PING is out, nothing came since */
	bool pinged;          /* last_ping is set */
	bool reset_strikes;   /* HEADERS or DATA went out since the last PING */
	bool calm;            /* GOAWAY too_many_pings submitted */
	bool over;            /* ... and sent: close */
};

/* grpc-go: at most 2 strikes; without streams a client should not PING
 * more often than every 2 hours (its keepalive needs a stream). */
#define GRPC_MAX_PING_STRIKES 2
#define GRPC_PING_IDLE_MS (2 * 3600 * 1000ull)
/* grpc-go's enforcement MinTime when none is configured. */
#define GRPC_PING_MIN_DEFAULT_MS (5 * 60 * 1000ull)

/* One queued response message: the length prefix and the first ilen bytes
 * inline (a whole packed protobuf, or the per-call head of a raw send), the
 * rest, if any, in a blob shared with other calls (rpc_call_send_raw). */
struct grpc_out {
	struct grpc_out *next;
	size_t len;          /* whole message, prefix included */
	size_t off;          /* bytes already given to nghttp2 */
	size_t ilen;         /* bytes in data[] */
	struct blob *blob;   /* holds tail[0, len - ilen); NULL if none */
	const uint8_t *tail;
	uint8_t data[];
};

struct rpc_call {
	struct rpc_call_head head; /* first: rpc.c dispatches through it */
	struct grpc_session *sess; /* NULL once detached */
	struct grpc_session *owner; /* counts the call until it is freed */
	struct server *srv;
	const struct rpc_method *method;
	void *data;
	LIST_ENTRY(rpc_call) link;
	TAILQ_ENTRY(rpc_call) ready_link; /* ready or waiting */
	void (*room_fn)(void *arg);
	void *room_arg;
	int32_t stream_id;
	uint32_t refs;
	/* request headers: "name\0value\0" pairs, bounded by hdr_bytes */
	char *md;
	uint32_t md_len;
	uint32_t md_cap;
	uint32_t hdr_bytes;
	uint64_t timeout_ms;
	char *reject_msg;          /* unroutable :path, answered at END_HEADERS */
	enum grpc_code reject_code;
	/* receiving */
	uint8_t prefix[5];
	uint8_t prefix_len;
	uint8_t *rbuf;             /* message being reassembled */
	uint32_t rlen;
	uint32_t rhave;
	uint64_t t_msg;            /* its first bytes came (loop time, ms) */
	uint8_t *pending;          /* unary: complete message awaiting END_STREAM */
	uint32_t pending_len;
	uint8_t *park;             /* DATA received while parked, not yet consumed */
	uint32_t park_len;
	/* sending */
	struct grpc_out *out_head;
	struct grpc_out *out_tail;
	size_t out_bytes; /* queued bytes not yet given to nghttp2 */
	char *fin_msg;             /* percent-encoded, for the trailers */
	enum grpc_code fin_code;
	uv_timer_t timer;
	bool has_timeout : 1;
	bool timer_on : 1;
	bool ct_ok : 1;            /* content-type application/grpc[+-;]... */
	bool ct_proto : 1;         /* ... exactly application/grpc+proto */
	bool bad_timeout : 1;
	bool ready : 1;            /* on the session's ready queue */
	bool waiting : 1;          /* on the session's waiting queue */
	bool has_pending : 1;
	bool delivered : 1;        /* unary: the message went to the service */
	bool headers_sent : 1;
	bool finished : 1;
	bool gone : 1;
	bool closed : 1;           /* on_close ran */
	bool deferred : 1;         /* the data provider waits for output */
	bool parked : 1;           /* its next message waits for buffer budget */
	bool park_eos : 1;         /* END_STREAM came while parked */
};

static nghttp2_session_callbacks *grpc_callbacks;
static nghttp2_option *grpc_option;

#define GRPC_NV(n, v)                                                                   \
	{                                                                               \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,           \
			NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE    \
	}

static const nghttp2_nv grpc_response_nva[] = {
	GRPC_NV(":status", "200"),
	GRPC_NV("content-type", "application/grpc"),
};

/* grpc-go answers in the subtype it was asked in. */
static const nghttp2_nv grpc_response_proto_nva[] = {
	GRPC_NV(":status", "200"),
	GRPC_NV("content-type", "application/grpc+proto"),
};

static const uint8_t grpc_empty[1];

static void grpc_call_detach(struct rpc_call *call);

/* --- small helpers ---------------------------------------------------- */

static uint32_t grpc_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool grpc_streaming_in(const struct rpc_call *call)
{
	return call->method->kind == RPC_BIDI_STREAM;
}

/* gRPC: grpc-message is percent-encoded outside printable ASCII, and '%'. */
static char *grpc_percent_encode(const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strnlen(msg, GRPC_MESSAGE_MAX), i;
	char *out = malloc(len * 3 + 1), *q = out;

	if (!out)
		return NULL;
	for (i = 0; i < len; i++) {
		uint8_t ch = (uint8_t)msg[i];
		if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
			*q++ = (char)ch;
		} else {
			*q++ = '%';
			*q++ = hex[ch >> 4];
			*q++ = hex[ch & 15];
		}
	}
	*q = '\0';
	return out;
}

/* grpc-timeout: 1-8 digits and a unit (H M S m u n), as grpc-go decodes it. */
static int grpc_timeout_parse(const uint8_t *v, size_t len, uint64_t *ms)
{
	uint64_t n = 0;
	size_t i;

	if (len < 2 || len > 9)
		return -1;
	for (i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H': *ms = n * 3600000; break;
	case 'M': *ms = n * 60000; break;
	case 'S': *ms = n * 1000; break;
	case 'm': *ms = n; break;
	case 'u': *ms = (n + 999) / 1000; break;
	case 'n': *ms = (n + 999999) / 1000000; break;
	default: return -1;
	}
	return 0;
}

/* grpc-go accepts "application/grpc" optionally followed by "+sub" or ";...". */
static bool grpc_content_type_ok(const uint8_t *v, size_t len)
{
	static const char base[] = "application/grpc";
	size_t n = sizeof(base) - 1;
	if (len < n || memcmp(v, base, n) != 0)
		return false;
	return len == n || v[n] == '+' || v[n] == ';';
}

static bool grpc_name_is(const uint8_t *name, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

/* Headers the transport consumes or that no service needs to see. */
static bool grpc_header_skipped(const uint8_t *name, size_t len)
{
	return grpc_name_is(name, len, "te") || grpc_name_is(name, len, "user-agent") ||
	       grpc_name_is(name, len, "grpc-accept-encoding") ||
	       grpc_name_is(name, len, "accept-encoding");
}

static int grpc_md_add(struct rpc_call *call, const uint8_t *name, size_t nlen, const uint8_t *value,
		       size_t vlen)
{
	size_t need = call->md_len + nlen + vlen + 2;
	if (need > call->md_cap) {
		size_t cap = call->md_cap ? call->md_cap : 64;
		char *md;
		while (cap < need)
			cap *= 2;
		md = realloc(call->md, cap);
		if (!md)
			return -KV_ENOMEM;
		call->md = md;
		call->md_cap = (uint32_t)cap;
	}
	memcpy(call->md + call->md_len, name, nlen);
	call->md[call->md_len + nlen] = '\0';
	memcpy(call->md + call->md_len + nlen + 1, value, vlen);
	call->md[call->md_len + nlen + 1 + vlen] = '\0';
	call->md_len = (uint32_t)need;
	return 0;
}

/* --- call lifetime ------------------------------------------------------ */

/* Reading from the client stops while more of its calls are alive than it
 * may have streams open.  The surplus are streams it reset while a service
 * still works on them (a read waiting for its barrier, a write in raft):
 * without this, HEADERS + RST_STREAM in a loop (CVE-2023-44487, "rapid
 * reset") starts unbounded work while never having a stream open.  grpc-go
 * bounds running handlers the same way since its fix for that CVE. */
static void grpc_update_pause(struct grpc_session *gs)
{
	if (gs->n_calls > gs->max_streams)
		conn_pause(gs->conn, CONN_PAUSE_PROTO);
	else
		conn_resume(gs->conn, CONN_PAUSE_PROTO);
}

static bool grpc_call_unary(const struct rpc_call *call)
{
	return call->method && call->method->kind == RPC_UNARY;
}

/* Response bytes queued on a call (before nghttp2 pulls them). */
static void grpc_out_add(struct rpc_call *call, size_t n)
{
	struct grpc_session *gs = call->sess;

	call->out_bytes += n;
	gs->out_all += n;
	if (!grpc_call_unary(call))
		return;
	gs->out_unary += n;
	if (!gs->out_full && gs->out_unary >= GRPC_OUT_HIGH) {
		gs->out_full = true;
		grpc_update_pause(gs);
	}
}

static void grpc_out_sub(struct rpc_call *call, size_t n)
{
	struct grpc_session *gs = call->sess;

	call->out_bytes -= n;
	gs->out_all -= n;
	if (!grpc_call_unary(call))
		return;
	gs->out_unary -= n;
	if (gs->out_full && gs->out_unary < GRPC_OUT_LOW) {
		gs->out_full = false;
		/* the queues move again at the next flush */
		if (!TAILQ_EMPTY(&gs->ready) || !TAILQ_EMPTY(&gs->waiting))
			conn_want_flush(gs->conn);
	}
}

static void grpc_out_free(struct grpc_out *o)
{
	blob_unref(o->blob);
	free(o);
}

static void grpc_call_free(struct rpc_call *call)
{
	struct grpc_session *gs = call->owner;
	struct grpc_out *o;

	if (gs) {
		LIST_REMOVE(call, link);
		gs->n_calls--;
		grpc_update_pause(gs);
	}
	while ((o = call->out_head)) {
		call->out_head = o->next;
		grpc_out_free(o);
	}
	free(call->rbuf);
	free(call->pending);
	free(call->park);
	free(call->md);
	free(call->reject_msg);
	free(call->fin_msg);
	free(call);
}

static void grpc_call_hold(struct rpc_call *call)
{
	call->refs++;
}

static void grpc_call_release(struct rpc_call *call)
{
	if (--call->refs == 0)
		grpc_call_free(call);
}

static void grpc_timer_close_cb(uv_handle_t *h)
{
	rpc_call_release(h->data);
}

static void grpc_timer_stop(struct rpc_call *call)
{
	if (!call->timer_on)
		return;
	call->timer_on = false;
	uv_close((uv_handle_t *)&call->timer, grpc_timer_close_cb);
}

/* A message buffer of len bytes: counted per connection and, when large,
 * against the listener's budget for requests still arriving. */
static int grpc_buf_take(struct grpc_session *gs, size_t len)
{
	if (gs->buffered + len > GRPC_CONN_BUFFER_MAX)
		return -KV_ETOOMANYREQUESTS;
	if (len > LISTENER_IN_SMALL && conn_in_charge(gs->conn, len))
		return -KV_ETOOMANYREQUESTS;
	gs->buffered += len;
	return 0;
}

static void grpc_buf_give(struct grpc_session *gs, size_t len)
{
	gs->buffered -= len;
	if (len > LISTENER_IN_SMALL)
		conn_in_refund(gs->conn, len);
}

/* A call that will not resume: its parked bytes are consumed (the stream
 * is over for us) and freed. */
static void grpc_call_unpark(struct rpc_call *call)
{
	struct grpc_session *gs = call->sess;

	if (!call->parked)
		return;
	if (gs) {
		gs->parked -= call->park_len;
		gs->n_parked--;
		if (call->park_len)
			nghttp2_session_consume_stream(gs->h2, call->stream_id, call->park_len);
	}
	free(call->park);
	call->park = NULL;
	call->park_len = 0;
	call->parked = false;
	call->park_eos = false;
}

/* Frees input buffers; keeps the accounting of the session right. */
static void grpc_call_drop_input(struct rpc_call *call)
{
	struct grpc_session *gs = call->sess;
	if (call->rbuf) {
		if (gs)
			grpc_buf_give(gs, call->rlen);
		free(call->rbuf);
		call->rbuf = NULL;
	}
	if (call->pending) {
		if (gs)
			grpc_buf_give(gs, call->pending_len);
		free(call->pending);
		call->pending = NULL;
	}
	grpc_call_unpark(call);
	call->prefix_len = 0;
}

/* Drops queued output, except a message nghttp2 has begun to send (cutting
 * it would break the framing of the stream). */
static void grpc_call_drop_output(struct rpc_call *call, bool keep_started)
{
	struct grpc_out *o = call->out_head, *next;
	if (keep_started && o && o->off > 0) {
		next = o->next;
		o->next = NULL;
		call->out_tail = o;
		grpc_out_sub(call, call->out_bytes - (o->len - o->off));
		o = next;
	} else {
		call->out_head = call->out_tail = NULL;
		grpc_out_sub(call, call->out_bytes);
	}
	while (o) {
		next = o->next;
		grpc_out_free(o);
		o = next;
	}
}

/* The stream is over (closed, reset, connection gone). */
static void grpc_call_detach(struct rpc_call *call)
{
	struct grpc_session *gs = call->sess;

	if (!gs)
		return;
	call->gone = true;
	grpc_call_drop_input(call);
	grpc_call_drop_output(call, false);
	grpc_timer_stop(call);
	if (call->ready) {
		TAILQ_REMOVE(&gs->ready, call, ready_link);
		call->ready = false;
	}
	gs->n_open--;
	if (call->waiting) {
		/* gone now: the service learns it from its wait */
		TAILQ_REMOVE(&gs->waiting, call, ready_link);
		call->waiting = false;
		call->room_fn(call->room_arg);
	}
	/* Still counted against the connection while a service holds it. */
	LIST_REMOVE(call, link);
	LIST_INSERT_HEAD(&gs->zombies, call, link);
	call->sess = NULL;
	if (call->method && !call->closed) {
		call->closed = true;
		if (call->method->on_close)
			call->method->on_close(call);
	}
	rpc_call_release(call);
}

/* --- sending ------------------------------------------------------------ */

static int grpc_submit_trailers(struct rpc_call *call)
{
	char status[12];
	const char *msg = call->fin_msg ? call->fin_msg : "";
	nghttp2_nv nva[2] = {
		GRPC_NV("grpc-status", ""),
		GRPC_NV("grpc-message", ""),
	};
	int rv;

	snprintf(status, sizeof(status), "%d", (int)call->fin_code);
	nva[0].value = (uint8_t *)status;
	nva[0].valuelen = strlen(status);
	nva[0].flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
	nva[1].value = (uint8_t *)msg;
	nva[1].valuelen = strlen(msg);
	nva[1].flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
	rv = nghttp2_submit_trailer(call->sess->h2, call->stream_id, nva, 2);
	free(call->fin_msg);
	call->fin_msg = NULL;
	return rv;
}

static ssize_t grpc_data_read(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
			      uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct rpc_call *call = source->ptr;
	struct grpc_out *o;
	const uint8_t *src;
	size_t n = 0, take;

	while (n < length && (o = call->out_head)) {
		if (o->off < o->ilen) {
			src = o->data + o->off;
			take = o->ilen - o->off;
		} else {
			src = o->tail + (o->off - o->ilen);
			take = o->len - o->off;
		}
		if (take > length - n)
			take = length - n;
		memcpy(buf + n, src, take);
		o->off += take;
		n += take;
		grpc_out_sub(call, take);
		if (o->off == o->len) {
			call->out_head = o->next;
			if (!call->out_head)
				call->out_tail = NULL;
			grpc_out_free(o);
		}
	}
	if (!call->out_head && call->finished) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (grpc_submit_trailers(call))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return (ssize_t)n;
	}
	if (n == 0) {
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* Makes nghttp2 pull the call's output: response HEADERS first, then the
 * data provider, woken up if it was waiting. */
static int grpc_call_kick(struct rpc_call *call)
{
	struct grpc_session *gs = call->sess;
	int rv;

	if (!call->headers_sent) {
		nghttp2_data_provider prd;
		prd.source.ptr = call;
		prd.read_callback = grpc_data_read;
		rv = nghttp2_submit_response(gs->h2, call->stream_id,
					     call->ct_proto ? grpc_response_proto_nva : grpc_response_nva, 2, &prd);
		if (rv) {
			LOGD("stream %d: submit response: %s", call->stream_id, nghttp2_strerror(rv));
			return -KV_EINTERNAL;
		}
		call->headers_sent = true;
	} else if (call->deferred) {
		call->deferred = false;
		nghttp2_session_resume_data(gs->h2, call->stream_id);
	}
	conn_want_flush(gs->conn);
	return 0;
}

/* Ends the call with a status.  by_transport: the transport ended it
 * (deadline, bad input), so the service's later sends become no-ops. */
static int grpc_call_end(struct rpc_call *call, enum grpc_code code, const char *message, bool by_transport)
{
	struct grpc_session *gs = call->sess;
	char *msg;
	int rv;

	if (!gs || call->finished)
		return 0;
	call->finished = true;
	if (by_transport)
		call->gone = true;
	if (call->method)
		metrics_grpc_handled(rpc_method_index(call->method), code);
	grpc_timer_stop(call);
	grpc_call_drop_input(call);
	if (by_transport)
		grpc_call_drop_output(call, true);
	msg = grpc_percent_encode(message ? message : "");
	if (!msg)
		return -KV_ENOMEM;
	if (!call->headers_sent) {
		char status[12];
		nghttp2_nv nva[4] = {
			GRPC_NV(":status", "200"),
			GRPC_NV("content-type", "application/grpc"),
			GRPC_NV("grpc-status", ""),
			GRPC_NV("grpc-message", ""),
		};
		snprintf(status, sizeof(status), "%d", (int)code);
		if (call->ct_proto)
			nva[1] = grpc_response_proto_nva[1];
		nva[2].value = (uint8_t *)status;
		nva[2].valuelen = strlen(status);
		nva[2].flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
		nva[3].value = (uint8_t *)msg;
		nva[3].valuelen = strlen(msg);
		nva[3].flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
		/* No data provider: one HEADERS frame with END_STREAM. */
		rv = nghttp2_submit_response(gs->h2, call->stream_id, nva, 4, NULL);
		free(msg);
		call->headers_sent = true;
		if (rv) {
			LOGD("stream %d: submit trailers-only: %s", call->stream_id, nghttp2_strerror(rv));
			return -KV_EINTERNAL;
		}
		conn_want_flush(gs->conn);
		return 0;
	}
	call->fin_code = code;
	call->fin_msg = msg;
	return grpc_call_kick(call);
}

static struct server *grpc_call_server(const struct rpc_call *call)
{
	return call->srv;
}

static void *grpc_call_data(const struct rpc_call *call)
{
	return call->data;
}

static void grpc_call_set_data(struct rpc_call *call, void *data)
{
	call->data = data;
}

static const char *grpc_call_header(const struct rpc_call *call, const char *name)
{
	const char *p = call->md, *end, *v;

	if (!p)
		return NULL; /* no metadata: NULL + 0 would be undefined */
	end = p + call->md_len;
	while (p < end) {
		v = p + strlen(p) + 1;
		if (strcmp(p, name) == 0)
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}

static bool grpc_call_gone(const struct rpc_call *call)
{
	return call->gone;
}

/* A message of size bytes with ilen of them inline, prefix written. */
static struct grpc_out *grpc_out_new(size_t size, size_t ilen)
{
	struct grpc_out *o = malloc(sizeof(*o) + 5 + ilen);

	if (!o)
		return NULL;
	o->next = NULL;
	o->len = 5 + size;
	o->off = 0;
	o->ilen = 5 + ilen;
	o->blob = NULL;
	o->tail = NULL;
	o->data[0] = 0;
	o->data[1] = (uint8_t)(size >> 24);
	o->data[2] = (uint8_t)(size >> 16);
	o->data[3] = (uint8_t)(size >> 8);
	o->data[4] = (uint8_t)size;
	return o;
}

static int grpc_call_queue(struct rpc_call *call, struct grpc_out *o)
{
	if (call->out_tail)
		call->out_tail->next = o;
	else
		call->out_head = o;
	call->out_tail = o;
	grpc_out_add(call, o->len);
	metrics.grpc_sent_bytes += o->len - 5;
	if (call->method)
		metrics_grpc_msg_sent(rpc_method_index(call->method));
	return grpc_call_kick(call);
}

/* Whether a message of size bytes may be queued on the call: 0, or the call
 * is ended and -KV_ECANCELED.  Shared bytes (send_raw) count in full, as
 * on every call that refers to them: the budget bounds what a client leaves
 * unread, whoever else holds the same bytes. */
static int grpc_call_room(struct rpc_call *call, size_t size)
{
	struct grpc_session *gs = call->sess;

	if (grpc_call_unary(call) && gs->out_unary > 0 && gs->out_unary + 5 + size > GRPC_OUT_MAX) {
		/* The client leaves its answers unread (or asked for more at
		 * once than it can take): refuse instead of queueing more. */
		grpc_call_end(call, GRPC_RESOURCE_EXHAUSTED, kv_err_message(KV_ETOOMANYREQUESTS), true);
		return -KV_ECANCELED;
	}
	return 0;
}

static int grpc_call_send(struct rpc_call *call, const ProtobufCMessage *msg)
{
	struct grpc_out *o;
	int rv;
	size_t size;

	if (call->gone || call->finished || !call->sess)
		return -KV_ECANCELED;
	size = protobuf_c_message_get_packed_size(msg);
	if (size > INT32_MAX)
		return -KV_EINTERNAL;
	if ((rv = grpc_call_room(call, size)) != 0)
		return rv;
	o = grpc_out_new(size, size);
	if (!o)
		return -KV_ENOMEM;
	protobuf_c_message_pack(msg, o->data + 5);
	return grpc_call_queue(call, o);
}

static int grpc_call_send_raw(struct rpc_call *call, const uint8_t *head, size_t head_len,
			      struct blob *blob, size_t off, size_t len)
{
	struct grpc_out *o;
	int rv;

	if (call->gone || call->finished || !call->sess)
		return -KV_ECANCELED;
	if (head_len > INT32_MAX || len > INT32_MAX - head_len)
		return -KV_EINTERNAL;
	if (len && (!blob || off > blob->len || len > blob->len - off))
		return -KV_EINTERNAL;
	if ((rv = grpc_call_room(call, head_len + len)) != 0)
		return rv;
	/* A reference keeps the whole blob alive as long as the message
	 * waits, and the budget counts only the slice: a watcher of one small
	 * key that never reads would hold every big value encoded beside its
	 * events.  A slice under half the blob is copied instead, so that a
	 * queue never keeps alive more than twice what it counts. */
	if (len && len < blob->len / 2) {
		o = grpc_out_new(head_len + len, head_len + len);
		if (!o)
			return -KV_ENOMEM;
		memcpy(o->data + 5, head, head_len);
		memcpy(o->data + 5 + head_len, blob->data + off, len);
		return grpc_call_queue(call, o);
	}
	o = grpc_out_new(head_len + len, head_len);
	if (!o)
		return -KV_ENOMEM;
	memcpy(o->data + 5, head, head_len);
	if (len) {
		o->blob = blob_ref(blob);
		o->tail = blob->data + off;
	}
	return grpc_call_queue(call, o);
}

static int grpc_call_finish_status(struct rpc_call *call, enum grpc_code code, const char *message)
{
	if (call->gone || call->finished || !call->sess)
		return 0;
	return grpc_call_end(call, code, message, false);
}

/* Queued messages nghttp2 has not pulled yet: it pulls only what the
 * client's flow-control windows and the socket's write queue allow. */
static size_t grpc_call_pending_bytes(const struct rpc_call *call)
{
	/* A running count: watch asks once per stream per revision, and
	 * walking a queue of thousands of small messages each time made fan-out
	 * quadratic under load.  Over the connection's budget every stream of
	 * it reads as full, so watch and snapshot streams hold back (watchers
	 * go unsynced and catch up later) however many there are. */
	if (call->sess && call->sess->out_all >= GRPC_OUT_MAX && call->out_bytes < GRPC_OUT_MAX)
		return GRPC_OUT_MAX;
	return call->out_bytes;
}

static int grpc_call_wait_room(struct rpc_call *call, void (*fn)(void *arg), void *arg)
{
	struct grpc_session *gs = call->sess;

	if (!gs || !gs->out_full || call->gone || call->finished || call->waiting)
		return 0;
	call->room_fn = fn;
	call->room_arg = arg;
	call->waiting = true;
	TAILQ_INSERT_TAIL(&gs->waiting, call, ready_link);
	return 1;
}

static const struct rpc_call_ops grpc_call_ops = {
	.server = grpc_call_server,
	.data = grpc_call_data,
	.set_data = grpc_call_set_data,
	.header = grpc_call_header,
	.gone = grpc_call_gone,
	.hold = grpc_call_hold,
	.release = grpc_call_release,
	.send = grpc_call_send,
	.finish_status = grpc_call_finish_status,
	.pending_bytes = grpc_call_pending_bytes,
	.wait_room = grpc_call_wait_room,
	.send_raw = grpc_call_send_raw,
};

/* --- receiving ---------------------------------------------------------- */

static void grpc_timer_cb(uv_timer_t *t)
{
	struct rpc_call *call = t->data;
	if (call->finished || !call->sess)
		return;
	grpc_call_end(call, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded", true);
}

static void grpc_call_deliver(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	if (!grpc_streaming_in(call))
		call->delivered = true;
	metrics.grpc_received_bytes += len;
	metrics_grpc_msg_received(rpc_method_index(call->method));
	rpc_call_hold(call);
	call->method->on_message(call, msg ? msg : grpc_empty, len);
	rpc_call_release(call);
}

/* Checks a message prefix.  Returns 0 to go on, -1 when the call was ended. */
static int grpc_call_check_prefix(struct rpc_call *call, uint8_t flag, uint32_t len)
{
	struct grpc_session *gs = call->sess;
	char msg[160];

	if (flag > 1) {
		snprintf(msg, sizeof(msg), "grpc: received unexpected payload format %d", flag);
		grpc_call_end(call, GRPC_INTERNAL, msg, true);
		return -1;
	}
	if (flag == 1) {
		/* Unknown encodings were refused at HEADERS, so this one
		 * claims compression without naming any. */
		grpc_call_end(call, GRPC_INTERNAL, "grpc: compressed flag set with identity or empty encoding",
			      true);
		return -1;
	}
	if (len > gs->max_recv) {
		snprintf(msg, sizeof(msg), "grpc: received message larger than max (%" PRIu32 " vs. %" PRIu32 ")",
			 len, gs->max_recv);
		grpc_call_end(call, GRPC_RESOURCE_EXHAUSTED, msg, true);
		return -1;
	}
	return 0;
}

/* Feeds DATA payload bytes of one stream through the message reassembly.
 * Returns how many it took: fewer than len only when the call parked (the
 * rest is the caller's to park) or ignores the rest. */
static size_t grpc_call_input(struct rpc_call *call, const uint8_t *p, size_t len)
{
	struct grpc_session *gs = call->sess;
	size_t take, all = len;
	uint32_t mlen;

	while (len > 0 && !call->finished && call->sess) {
		/* Unary: grpc-go reads one message and ignores the rest. */
		if (!grpc_streaming_in(call) && (call->delivered || call->has_pending))
			return all;
		if (!call->rbuf) {
			take = 5 - call->prefix_len;
			if (take > len)
				take = len;
			memcpy(call->prefix + call->prefix_len, p, take);
			call->prefix_len = (uint8_t)(call->prefix_len + take);
			p += take;
			len -= take;
			if (call->prefix_len < 5)
				return all;
			mlen = grpc_be32(call->prefix + 1);
			if (grpc_call_check_prefix(call, call->prefix[0], mlen))
				return all;
			if (grpc_streaming_in(call) && mlen <= len) {
				/* Whole in this chunk: hand it over in place. */
				call->prefix_len = 0;
				grpc_call_deliver(call, p, mlen);
				p += mlen;
				len -= mlen;
				continue;
			}
			if (mlen == 0) {
				call->prefix_len = 0;
				call->has_pending = true; /* unary, empty */
				call->pending_len = 0;
				continue;
			}
			if (grpc_buf_take(gs, mlen)) {
				/* Over budget: the message waits, its bytes
				 * unconsumed, so the stream's flow-control
				 * window stops the client (grpc_call_park). */
				if (!call->parked) {
					call->parked = true;
					gs->n_parked++;
				}
				return all - len;
			}
			call->prefix_len = 0;
			if (mlen > len && (int64_t)mlen + 5 > nghttp2_session_get_stream_local_window_size(gs->h2, call->stream_id))
				nghttp2_session_set_local_window_size(gs->h2, NGHTTP2_FLAG_NONE, call->stream_id,
								      (int32_t)mlen + 5);
			call->rbuf = malloc(mlen);
			if (!call->rbuf) {
				grpc_buf_give(gs, mlen);
				grpc_call_end(call, GRPC_RESOURCE_EXHAUSTED, kv_err_message(KV_ENOMEM), true);
				return all;
			}
			call->rlen = mlen;
			call->rhave = 0;
			call->t_msg = uv_now(gs->conn->srv->loop);
		}
		take = call->rlen - call->rhave;
		if (take > len)
			take = len;
		memcpy(call->rbuf + call->rhave, p, take);
		call->rhave += (uint32_t)take;
		p += take;
		len -= take;
		if (call->rhave < call->rlen)
			return all;
		if (grpc_streaming_in(call)) {
			uint8_t *m = call->rbuf;
			call->rbuf = NULL;
			grpc_buf_give(gs, call->rlen);
			grpc_call_deliver(call, m, call->rlen);
			free(m);
		} else {
			call->pending = call->rbuf;
			call->pending_len = call->rlen;
			call->has_pending = true;
			call->rbuf = NULL;
		}
	}
	return all;
}

/* Keeps DATA of a parked call without consuming it: the stream's window
 * (GRPC_STREAM_WINDOW, unless an earlier message opened it wider) bounds
 * what the client sends meanwhile, GRPC_CONN_PARK_MAX the connection's.  -1: the call
 * is ended instead ("too many requests"), and len is the caller's to
 * consume. */
static int grpc_call_park(struct rpc_call *call, const uint8_t *p, size_t len)
{
	struct grpc_session *gs = call->sess;
	uint8_t *np;

	if (len == 0)
		return 0;
	if (gs->parked + len > GRPC_CONN_PARK_MAX ||
	    !(np = realloc(call->park, call->park_len + len))) {
		grpc_call_end(call, GRPC_RESOURCE_EXHAUSTED, kv_err_message(KV_ETOOMANYREQUESTS), true);
		return -1;
	}
	memcpy(np + call->park_len, p, len);
	call->park = np;
	call->park_len += (uint32_t)len;
	gs->parked += len;
	return 0;
}

static void grpc_call_eos(struct rpc_call *call);

/* A parked call tries again for its buffer: its parked bytes go through
 * the reassembly (and are consumed, reopening its window) as far as it
 * now gets.  Returns whether it is still parked; *moved whether it took
 * anything. */
static bool grpc_call_resume(struct rpc_call *call, bool *moved)
{
	struct grpc_session *gs = call->sess;
	uint8_t *park = call->park;
	uint32_t plen = call->park_len;
	bool eos = call->park_eos, still = false;
	size_t took;

	call->park = NULL;
	call->park_len = 0;
	call->park_eos = false;
	call->parked = false;
	gs->n_parked--;
	gs->parked -= plen;
	rpc_call_hold(call);
	took = grpc_call_input(call, park ? park : (const uint8_t *)"", plen);
	*moved = took > 0 || !call->parked;
	if (call->sess) {
		if (took)
			nghttp2_session_consume_stream(gs->h2, call->stream_id, took);
		if (call->parked && !call->finished) {
			/* still over budget: keep the rest */
			call->park = park;
			memmove(park, park + took, plen - took);
			call->park_len = (uint32_t)(plen - took);
			gs->parked += plen - took;
			call->park_eos = eos;
			park = NULL;
			still = true;
		} else {
			if (plen > took)
				nghttp2_session_consume_stream(gs->h2, call->stream_id, plen - took);
			if (eos)
				grpc_call_eos(call);
		}
	}
	free(park);
	rpc_call_release(call);
	return still;
}

/* Parked calls of this connection, oldest stream first, while budget lasts. */
static void grpc_resume_parked(struct grpc_session *gs)
{
	struct rpc_call *call, *next;
	bool any = false, moved;

	if (!gs->n_parked)
		return;
	/* calls is a LIST with the newest first: find the oldest each time,
	 * so that the streams that asked first get the budget first. */
	for (;;) {
		struct rpc_call *oldest = NULL;
		for (call = LIST_FIRST(&gs->calls); call; call = next) {
			next = LIST_NEXT(call, link);
			if (call->parked && (!oldest || call->stream_id < oldest->stream_id))
				oldest = call;
		}
		if (!oldest)
			break;
		if (grpc_call_resume(oldest, &moved)) {
			any |= moved;
			break;
		}
		any = true;
		if (!gs->n_parked)
			break;
	}
	/* Window updates to send, or calls to run; not when nothing moved
	 * (the flush would resume and flush again, never polling). */
	if (any)
		conn_want_flush(gs->conn);
}

/* The client half-closed the stream. */
static void grpc_call_eos(struct rpc_call *call)
{
	struct grpc_session *gs = call->sess;

	if (call->finished || !gs || !call->method)
		return;
	if (call->parked) {
		call->park_eos = true; /* seen once its message is in */
		return;
	}
	if (call->rbuf || call->prefix_len) {
		grpc_call_end(call, GRPC_UNKNOWN, "unexpected EOF", true);
		return;
	}
	if (grpc_streaming_in(call)) {
		if (call->method->on_half_close) {
			rpc_call_hold(call);
			call->method->on_half_close(call);
			rpc_call_release(call);
		}
		return;
	}
	TAILQ_INSERT_TAIL(&gs->ready, call, ready_link);
	call->ready = true;
}

/* A unary call off the ready queue: its one message goes to the service. */
static void grpc_call_run(struct rpc_call *call)
{
	if (call->finished || !call->sess)
		return;
	if (call->has_pending) {
		uint8_t *m = call->pending;
		uint32_t mlen = call->pending_len;
		call->pending = NULL;
		call->has_pending = false;
		if (m)
			grpc_buf_give(call->sess, mlen);
		grpc_call_deliver(call, m, mlen);
		free(m);
	} else if (!call->delivered) {
		/* grpc-go: the request stream ended before any message. */
		grpc_call_end(call, GRPC_UNKNOWN, "EOF", true);
	}
	if (call->method->on_half_close && call->sess && !call->finished) {
		rpc_call_hold(call);
		call->method->on_half_close(call);
		rpc_call_release(call);
	}
}

/* Starts the unary calls that completed in the read just processed (or
 * that waited for the client to take its answers). */
static void grpc_dispatch(struct grpc_session *gs)
{
	struct rpc_call *call;

	grpc_resume_parked(gs);

	/* Not while the client leaves answers unread: answers computed late
	 * wait for room first, and requests wait here (as requests, small)
	 * instead of being answered into memory. */
	while (!gs->out_full && (call = TAILQ_FIRST(&gs->waiting))) {
		TAILQ_REMOVE(&gs->waiting, call, ready_link);
		call->waiting = false;
		rpc_call_hold(call);
		call->room_fn(call->room_arg);
		rpc_call_release(call);
	}
	while (!gs->out_full && (call = TAILQ_FIRST(&gs->ready))) {
		TAILQ_REMOVE(&gs->ready, call, ready_link);
		call->ready = false;
		rpc_call_hold(call);
		grpc_call_run(call);
		rpc_call_release(call);
	}
	/* ... with the buffers those calls gave back */
	grpc_resume_parked(gs);
}

/* END_HEADERS of the request: route, check, arm the deadline. */
static void grpc_call_start(struct rpc_call *call)
{
	struct grpc_session *gs = call->sess;
	const char *enc;
	char msg[200];

	if (!call->ct_ok || call->bad_timeout) {
		/* etcd (grpc-go behind cmux) resets non-gRPC h2c requests, and
		 * requests with a malformed grpc-timeout. */
		call->finished = true;
		nghttp2_submit_rst_stream(gs->h2, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_PROTOCOL_ERROR);
		return;
	}
	if (call->reject_msg || !call->method) {
		grpc_call_end(call, call->reject_msg ? call->reject_code : GRPC_UNIMPLEMENTED,
			      call->reject_msg ? call->reject_msg : "malformed method name: \"\"", true);
		return;
	}
	enc = rpc_call_header(call, "grpc-encoding");
	if (enc && *enc && strcmp(enc, "identity") != 0) {
		snprintf(msg, sizeof(msg), "grpc: Decompressor is not installed for grpc-encoding \"%.100s\"", enc);
		grpc_call_end(call, GRPC_UNIMPLEMENTED, msg, true);
		return;
	}
	if (call->has_timeout) {
		uv_timer_init(gs->conn->srv->loop, &call->timer);
		call->timer.data = call;
		call->timer_on = true;
		call->refs++; /* dropped by the timer's close callback */
		uv_timer_start(&call->timer, grpc_timer_cb, call->timeout_ms, 0);
	}
}

/* :path -> method, or the exact grpc-go refusal for later. */
static int grpc_call_route(struct rpc_call *call, const uint8_t *path, size_t len)
{
	const char *sm = (const char *)path, *slash;
	size_t smlen = len, svclen;
	bool known = false;

	call->method = rpc_method_find((const char *)path, len, &known);
	if (call->method) {
		metrics_grpc_started(rpc_method_index(call->method), call->method->kind != RPC_UNARY);
		return 0;
	}
	if (smlen > 0 && sm[0] == '/') {
		sm++;
		smlen--;
	}
	slash = NULL;
	for (size_t i = smlen; i > 0; i--) {
		if (sm[i - 1] == '/') {
			slash = sm + i - 1;
			break;
		}
	}
	call->reject_msg = malloc(len + 64);
	if (!call->reject_msg)
		return -KV_ENOMEM;
	if (!slash) {
		call->reject_code = GRPC_RESOURCE_EXHAUSTED; /* sic, grpc-go */
		snprintf(call->reject_msg, len + 64, "malformed method name: \"%.*s\"", (int)len, (const char *)path);
		return 0;
	}
	call->reject_code = GRPC_UNIMPLEMENTED;
	svclen = (size_t)(slash - sm);
	if (!known)
		snprintf(call->reject_msg, len + 64, "unknown service %.*s", (int)svclen, sm);
	else
		snprintf(call->reject_msg, len + 64, "unknown method %.*s for service %.*s",
			 (int)(smlen - svclen - 1), slash + 1, (int)svclen, sm);
	return 0;
}

/* --- nghttp2 callbacks ---------------------------------------------------- */

static int grpc_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_session *gs = user_data;
	struct rpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = calloc(1, sizeof(*call));
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	call->head.ops = &grpc_call_ops;
	call->sess = gs;
	call->srv = gs->conn->srv;
	call->stream_id = frame->hd.stream_id;
	call->refs = 1; /* the stream's */
	if (nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, call)) {
		free(call);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	call->owner = gs;
	LIST_INSERT_HEAD(&gs->calls, call, link);
	gs->n_calls++;
	gs->n_open++;
	grpc_update_pause(gs);
	return 0;
}

/* RFC 9113 8.2.1: a name or value with a character HTTP does not allow
 * (NUL, CR, LF, other controls; upper case in a name) makes the request
 * malformed, and grpc-go resets such a stream with PROTOCOL_ERROR.
 * nghttp2 checks this only with its HTTP messaging rules, which are off
 * (grpc_setup), so it is checked here, before anything is kept as a C
 * string: an embedded NUL would split a metadata entry in two. */
static bool grpc_header_valid(const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen)
{
	if (namelen > 0 && name[0] == ':') {
		name++;
		namelen--;
	}
	return namelen > 0 && nghttp2_check_header_name(name, namelen) &&
	       nghttp2_check_header_value(value, valuelen);
}

static int grpc_on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
			  const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
	struct rpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* trailers from the client carry nothing we use */
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!call)
		return 0;
	if (!grpc_header_valid(name, namelen, value, valuelen)) {
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	call->hdr_bytes += (uint32_t)(namelen + valuelen + 32);
	if (call->hdr_bytes > GRPC_MAX_HEADER_LIST)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (namelen > 0 && name[0] == ':') {
		if (grpc_name_is(name, namelen, ":path") && !call->method && !call->reject_msg &&
		    grpc_call_route(call, value, valuelen))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return 0;
	}
	if (grpc_name_is(name, namelen, "content-type")) {
		call->ct_ok = grpc_content_type_ok(value, valuelen);
		call->ct_proto = grpc_name_is(value, valuelen, "application/grpc+proto");
		return 0;
	}
	if (grpc_name_is(name, namelen, "grpc-timeout")) {
		if (grpc_timeout_parse(value, valuelen, &call->timeout_ms))
			call->bad_timeout = true;
		else
			call->has_timeout = true;
		return 0;
	}
	if (grpc_header_skipped(name, namelen))
		return 0;
	if (grpc_md_add(call, name, namelen, value, valuelen))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static int grpc_on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
			      size_t len, void *user_data)
{
	struct rpc_call *call = nghttp2_session_get_stream_user_data(h2, stream_id);
	size_t took = len;

	/* Window updates are ours (grpc_init): the connection's always at
	 * once, a stream's for what it took, so that a parked call stops
	 * only its own stream. */
	nghttp2_session_consume_connection(h2, len);
	if (call && !call->finished && call->method && call->sess) {
		rpc_call_hold(call);
		if (call->parked) {
			took = 0;
			if (grpc_call_park(call, data, len))
				took = len;
		} else {
			took = grpc_call_input(call, data, len);
			if (took < len && call->parked && !call->finished && call->sess &&
			    grpc_call_park(call, data + took, len - took))
				took = len;
			else if (!call->parked)
				took = len;
		}
		rpc_call_release(call);
	}
	if (took)
		nghttp2_session_consume_stream(h2, stream_id, took);
	return 0;
}

/* grpc-go's keepalive enforcement (http2_server.go handlePing). */
static void grpc_on_client_ping(struct grpc_session *gs)
{
	uint64_t now = uv_now(gs->conn->srv->loop);
	bool strike;

	if (gs->reset_strikes) {
		gs->reset_strikes = false;
		gs->ping_strikes = 0;
	} else {
		strike = gs->pinged && now - gs->last_ping < (gs->n_open ? gs->ping_min : GRPC_PING_IDLE_MS);
		if (strike && ++gs->ping_strikes > GRPC_MAX_PING_STRIKES && !gs->calm) {
			LOGD("conn %p: too many pings", (void *)gs->conn);
			nghttp2_submit_goaway(gs->h2, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(gs->h2),
					      NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)"too_many_pings", 14);
			gs->calm = true;
		}
	}
	gs->last_ping = now;
	gs->pinged = true;
}

static int grpc_on_begin_frame(nghttp2_session *h2, const nghttp2_frame_hd *hd, void *user_data)
{
	struct grpc_session *gs = user_data;
	gs->activity = true;
	return 0;
}

static int grpc_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_session *gs = user_data;
	struct rpc_call *call;

	if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
		gs->settings_seen = true;
	if (frame->hd.type == NGHTTP2_PING && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
		grpc_on_client_ping(gs);
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!call)
		return 0;
	rpc_call_hold(call);
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		grpc_call_start(call);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		grpc_call_eos(call);
	rpc_call_release(call);
	return 0;
}

static int grpc_on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_session *gs = user_data;

	if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)
		gs->reset_strikes = true;
	if (frame->hd.type == NGHTTP2_DATA)
		gs->activity = true; /* the client takes our output */
	if (frame->hd.type == NGHTTP2_GOAWAY && gs->calm)
		gs->over = true;
	/* Our END_STREAM went out while the client is still sending: tell it
	 * to stop, as grpc-go does after writing the status. */
	if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(h2, frame->hd.stream_id) == 0)
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

static int grpc_on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct rpc_call *call = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (call)
		grpc_call_detach(call);
	return 0;
}

static int grpc_on_error(nghttp2_session *h2, int lib_error_code, const char *msg, size_t len, void *user_data)
{
	struct grpc_session *gs = user_data;
	LOGD("conn %p: http2: %.*s", (void *)gs->conn, (int)len, msg);
	return 0;
}

static int grpc_setup(void)
{
	nghttp2_session_callbacks *cb;

	if (grpc_callbacks)
		return 0;
	if (nghttp2_session_callbacks_new(&cb))
		return -KV_ENOMEM;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, grpc_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, grpc_on_header);
	nghttp2_session_callbacks_set_on_begin_frame_callback(cb, grpc_on_begin_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, grpc_on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, grpc_on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, grpc_on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, grpc_on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(cb, grpc_on_error);
	if (nghttp2_option_new(&grpc_option)) {
		nghttp2_session_callbacks_del(cb);
		return -KV_ENOMEM;
	}
	/* Nothing here uses priorities: keep no state for closed streams. */
	nghttp2_option_set_no_closed_streams(grpc_option, 1);
	/* Stream windows open as the calls take their data: a message over
	 * the buffer budget waits (grpc_call_park) instead of failing. */
	nghttp2_option_set_no_auto_window_update(grpc_option, 1);
	/* grpc-go's passthrough resolver sends the whole endpoint URL as
	 * :authority ("http://127.0.0.1:2379") when etcdctl dials the client
	 * URLs of `--cluster` commands.  nghttp2's HTTP messaging rules reject
	 * that and reset the stream; grpc-go servers accept it.  gRPC needs
	 * none of those rules (grpc.c checks :path, content-type and the
	 * message framing itself), so they are off. */
	nghttp2_option_set_no_http_messaging(grpc_option, 1);
	/* Flood limits, spelled out (these are nghttp2's defaults): a peer
	 * that makes nghttp2 queue more than this many SETTINGS/PING ACKs
	 * (we stop flushing while its socket is full), sends more SETTINGS
	 * entries in one frame, more CONTINUATIONs after one HEADERS (16 KiB
	 * frames: 144 KiB, above our 64 KiB header list) or resets streams
	 * faster than the token bucket is closed with GOAWAY. */
	nghttp2_option_set_max_outbound_ack(grpc_option, 1000);
	nghttp2_option_set_max_settings(grpc_option, 32);
#ifdef HAVE_NGHTTP2_OPTION_SET_MAX_CONTINUATIONS
	nghttp2_option_set_max_continuations(grpc_option, 8);
#endif
#ifdef HAVE_NGHTTP2_OPTION_SET_STREAM_RESET_RATE_LIMIT
	nghttp2_option_set_stream_reset_rate_limit(grpc_option, 1000, 33);
#endif
	grpc_callbacks = cb;
	return 0;
}

/* --- conn_proto ------------------------------------------------------- */

static int grpc_start(struct conn *c)
{
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, GRPC_MAX_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GRPC_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GRPC_MAX_HEADER_LIST},
	};
	const struct config *cfg = c->srv->cfg;
	struct grpc_session *gs;
	uint64_t max;
	int rv;

	/* --max-concurrent-streams (etcd's default is 2^32-1), capped so one
	 * connection cannot pin unbounded call state. */
	if (cfg && cfg->max_concurrent_streams && cfg->max_concurrent_streams < GRPC_MAX_STREAMS)
		iv[0].value = cfg->max_concurrent_streams;

	rv = grpc_setup();
	if (rv)
		return rv;
	gs = calloc(1, sizeof(*gs));
	if (!gs)
		return -KV_ENOMEM;
	gs->conn = c;
	LIST_INIT(&gs->calls);
	LIST_INIT(&gs->zombies);
	TAILQ_INIT(&gs->ready);
	TAILQ_INIT(&gs->waiting);
	gs->max_streams = iv[0].value;
	gs->t_start = uv_now(c->srv->loop);
	gs->ka_interval = 2 * 3600 * 1000ull; /* etcd's defaults */
	gs->ka_timeout = 20 * 1000;
	gs->ping_min = 5 * 1000;
	if (cfg) {
		/* etcd turns keepalive on only with both set */
		gs->ka_interval = cfg->grpc_keepalive_interval_ms > 0 && cfg->grpc_keepalive_timeout_ms > 0
					  ? (uint64_t)cfg->grpc_keepalive_interval_ms
					  : 0;
		gs->ka_timeout = (uint64_t)cfg->grpc_keepalive_timeout_ms;
		gs->ping_min = cfg->grpc_keepalive_min_time_ms > 0 ? (uint64_t)cfg->grpc_keepalive_min_time_ms
								     : GRPC_PING_MIN_DEFAULT_MS;
	}
	gs->ka_next = gs->t_start + gs->ka_interval;
	max = cfg && cfg->max_request_bytes ? cfg->max_request_bytes : GRPC_DEFAULT_MAX_REQUEST;
	max += GRPC_RECV_EXTRA;
	gs->max_recv = max > INT32_MAX ? INT32_MAX : (uint32_t)max;
	if (nghttp2_session_server_new2(&gs->h2, grpc_callbacks, gs, grpc_option)) {
		free(gs);
		return -KV_ENOMEM;
	}
	/* Our SETTINGS go out with the first flush, right after the preface
	 * arrives: grpc-go waits for them before using the connection. */
	rv = nghttp2_submit_settings(gs->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(gs->h2, NGHTTP2_FLAG_NONE, 0, GRPC_CONN_WINDOW);
	if (rv) {
		nghttp2_session_del(gs->h2);
		free(gs);
		return -KV_ENOMEM;
	}
	c->proto_data = gs;
	return 0;
}

static int grpc_recv(struct conn *c, const uint8_t *buf, size_t len)
{
	struct grpc_session *gs = c->proto_data;
	ssize_t rv;

	if (len == 0)
		return -KV_ECANCELED; /* peer closed: nothing left to answer to */
	rv = nghttp2_session_mem_recv(gs->h2, buf, len);
	if (rv < 0) {
		LOGD("conn %p: http2 recv: %s", (void *)c, nghttp2_strerror((int)rv));
		return -KV_EMALFORMED;
	}
	grpc_dispatch(gs);
	return 0;
}

static int grpc_flush(struct conn *c)
{
	struct grpc_session *gs = c->proto_data;
	const uint8_t *data;
	ssize_t n;
	int rv;

	grpc_dispatch(gs);
	for (;;) {
		if (conn_out_full(c))
			return nghttp2_session_want_write(gs->h2) ? 1 : 0;
		n = nghttp2_session_mem_send(gs->h2, &data);
		if (n < 0) {
			LOGD("conn %p: http2 send: %s", (void *)c, nghttp2_strerror((int)n));
			return -KV_EINTERNAL;
		}
		if (n == 0)
			break;
		rv = conn_out(c, data, (size_t)n);
		if (rv)
			return rv;
	}
	return 0;
}

static bool grpc_done(struct conn *c)
{
	struct grpc_session *gs = c->proto_data;
	return gs->over || (!nghttp2_session_want_read(gs->h2) && !nghttp2_session_want_write(gs->h2));
}

static int grpc_tick(struct conn *c, uint64_t now)
{
	struct grpc_session *gs = c->proto_data;
	struct rpc_call *call, *next;

	if (!gs->settings_seen)
		return now - gs->t_start >= LISTENER_HANDSHAKE_MS ? -KV_ETIMEOUT : 0;
	/* The listener's budget may have come back on another connection. */
	grpc_resume_parked(gs);
	/* A message that comes slower than GRPC_MSG_MIN_RATE (after the first
	 * GRPC_MSG_READ_MS) gives its buffer, and the listener's budget, back. */
	for (call = LIST_FIRST(&gs->calls); gs->buffered && call; call = next) {
		next = LIST_NEXT(call, link);
		if (call->rbuf && now - call->t_msg >= GRPC_MSG_READ_MS + (uint64_t)call->rlen * 1000 / GRPC_MSG_MIN_RATE)
			grpc_call_end(call, GRPC_DEADLINE_EXCEEDED, "grpc: request message not received in time", true);
	}
	if (!gs->ka_interval || now < gs->ka_next)
		return 0;
	if (gs->activity) {
		gs->activity = false;
		gs->ka_ping_out = false;
		gs->ka_next = now + gs->ka_interval;
		return 0;
	}
	if (gs->ka_ping_out)
		return -KV_ETIMEOUT; /* grpc-go: "closing server transport due to idleness" */
	if (nghttp2_submit_ping(gs->h2, NGHTTP2_FLAG_NONE, NULL))
		return -KV_ENOMEM;
	gs->ka_ping_out = true;
	gs->ka_next = now + gs->ka_timeout;
	conn_want_flush(c);
	return 0;
}

static void grpc_shutdown(struct conn *c)
{
	struct grpc_session *gs = c->proto_data;
	/* Streams already seen may finish; clients retry the rest elsewhere. */
	nghttp2_submit_goaway(gs->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(gs->h2),
			      NGHTTP2_NO_ERROR, NULL, 0);
}

static void grpc_free(struct conn *c)
{
	struct grpc_session *gs = c->proto_data;
	struct rpc_call *call;

	while ((call = LIST_FIRST(&gs->calls)))
		grpc_call_detach(call);
	/* Calls services still hold outlive the session. */
	while ((call = LIST_FIRST(&gs->zombies))) {
		LIST_REMOVE(call, link);
		call->owner = NULL;
	}
	nghttp2_session_del(gs->h2);
	free(gs);
	c->proto_data = NULL;
}

const struct conn_proto grpc_proto = {
	.name = "grpc",
	.start = grpc_start,
	.recv = grpc_recv,
	.flush = grpc_flush,
	.done = grpc_done,
	.shutdown = grpc_shutdown,
	.free = grpc_free,
	.tick = grpc_tick,
};
