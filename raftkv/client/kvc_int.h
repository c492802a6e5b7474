/*
 * kvc_int: what the client library's files share and nobody else sees.
 *
 *   client.c     the client: endpoints, choosing one, failover, the deadline
 *                heap, the once-per-loop-turn flush of every connection
 *   conn.c       one TCP connection + nghttp2 client session
 *   call.c       calls: request framing, response reassembly, status
 *   methods.c    the etcd method table
 *
 * Object graph: a client owns its endpoints and connections; a connection
 * lists the calls whose streams it carries; a call is caller memory,
 * attached to at most one connection at a time.  nghttp2's stream user data
 * is the call while it is attached and NULL once detached, so nghttp2
 * never hands back a call the caller may already have freed.
 */
#ifndef RAFTKV_KVC_INT_H
#define RAFTKV_KVC_INT_H

#include <sys/socket.h>
#include <nghttp2/nghttp2.h>

#include "client/kvc.h"

#define KVC_MAX_ENDPOINTS 64    /* a call's tried-endpoints set is a uint64_t */
#define KVC_MAX_HEADERS 8       /* client-wide metadata */
#define KVC_MAX_CALL_MD 16      /* per-call metadata */
#define KVC_STREAM_WINDOW (16 << 20)
#define KVC_CONN_WINDOW (64 << 20)
#define KVC_READ_BUF (64 * 1024)
#define KVC_WRITE_HIWAT (256 * 1024)
#define KVC_BACKOFF_MIN_MS 200
#define KVC_BACKOFF_MAX_MS 5000
#define KVC_GOAWAY_RETRIES 3

enum kvc__phase {
	KVC_PH_IDLE = 0,  /* never started, or done */
	KVC_PH_ACTIVE,    /* attached to a connection */
	KVC_PH_FINISHING, /* between the decision to end and done_cb */
};

struct kvc_sendbuf {
	struct kvc_sendbuf *next;
	size_t len, off;          /* len includes the 5-byte prefix */
	uint8_t data[];
};

enum kvc_conn_state {
	KVC_CONN_CONNECTING, /* resolving or connecting; calls queue in nghttp2 */
	KVC_CONN_READY,
	KVC_CONN_DRAINING,   /* GOAWAY received or stream ids used up: no new calls */
	KVC_CONN_DEAD,       /* handles closing */
};

struct kvc_endpoint {
	char *host;               /* without brackets */
	char *port;
	char *authority;          /* "host:port" ([v6]:port) */
	struct sockaddr_storage addr;
	bool numeric;             /* addr is valid without a lookup */
	struct kvc_conn *conn;    /* current connection, NULL if none */
	uint64_t down_until;      /* uv_now(); skipped until then */
	uint32_t backoff_ms;
};

struct kvc_wbuf {
	uint8_t *data;
	size_t len, cap;
};

struct kvc_conn {
	struct kvc_client *client;
	int ep;                        /* endpoint index */
	enum kvc_conn_state state;
	nghttp2_session *h2;
	uv_tcp_t tcp;
	uv_timer_t timer;              /* dial timeout, then keepalive */
	uv_connect_t connect_req;
	uv_getaddrinfo_t gai_req;
	uv_write_t write_req;
	int pending;                   /* handles and requests not yet called back */
	struct kvc_call *calls;        /* attached calls */
	size_t n_calls;
	struct kvc_conn *next, *prev;  /* in client->conns */
	struct kvc_wbuf wbuf;          /* being filled */
	struct kvc_wbuf inflight;      /* handed to uv_write */
	size_t inflight_off;
	bool writing : 1;
	bool want_write : 1;
	bool gai_active : 1;
	bool ping_out : 1;
	uint64_t last_recv;
	uint64_t ping_sent;
	char errmsg[160];              /* why the connection failed */
	uint8_t rbuf[KVC_READ_BUF];
};

struct kvc_client {
	uv_loop_t *loop;
	struct kvc_options opts;
	struct kvc_endpoint *eps;
	size_t n_eps;
	size_t cur;                    /* sticky endpoint / round-robin cursor */
	struct kvc_conn *conns;        /* every connection not yet freed */
	size_t n_conns;
	size_t n_dirty;                /* connections with want_write */
	uv_timer_t timer;              /* the earliest deadline */
	uv_prepare_t prepare;          /* flush before the loop polls */
	uv_check_t check;              /* flush after the loop polled */
	struct kvc_call **heap;        /* deadline min-heap */
	size_t heap_n, heap_cap;
	uint64_t timer_due;            /* when timer fires; 0: stopped */
	struct kvc_md headers[KVC_MAX_HEADERS];
	size_t n_headers;
	bool closing;
	int handles;                   /* own handles not yet closed */
	void (*free_cb)(void *data);
	void *free_data;
};

/* client.c */
/* Attaches call to a connection of an endpoint it has not tried.
 * Returns 0, or -KV_EUNAVAILABLE (none left) / -KV_ENOMEM; never ends it. */
int kvc__client_dispatch(struct kvc_call *call);
void kvc__client_want_write(struct kvc_conn *conn);
void kvc__client_endpoint_failed(struct kvc_client *c, int ep);
void kvc__client_endpoint_ok(struct kvc_client *c, int ep);
void kvc__client_conn_freed(struct kvc_client *c, struct kvc_conn *conn);
void kvc__heap_add(struct kvc_client *c, struct kvc_call *call);
void kvc__heap_remove(struct kvc_client *c, struct kvc_call *call);

/* conn.c */
struct kvc_conn *kvc__conn_new(struct kvc_client *c, int ep);
/* Submits call's stream.  Returns 0, or -KV_ENOMEM / -KV_EUNAVAILABLE
 * (stream ids used up: the connection drains; dispatch again). */
int kvc__conn_submit(struct kvc_conn *conn, struct kvc_call *call);
/* Takes call off conn: its stream gets no more callbacks; rst resets it. */
void kvc__conn_detach(struct kvc_conn *conn, struct kvc_call *call, bool rst);
void kvc__conn_flush(struct kvc_conn *conn);
/* Fails the connection: every call on it is resent or ended; the handles
 * close and the memory goes when they have. */
void kvc__conn_fail(struct kvc_conn *conn, const char *why);
void kvc__conn_close(struct kvc_conn *conn);
int kvc__conn_resume(struct kvc_conn *conn, struct kvc_call *call);

/* call.c: nghttp2 events of an attached call */
void kvc__call_on_header(struct kvc_call *call, const uint8_t *name, size_t namelen,
			 const uint8_t *value, size_t valuelen);
/* Returns false if the call ended or moved (stop using it). */
bool kvc__call_on_data(struct kvc_conn *conn, int32_t stream_id, struct kvc_call *call,
		       const uint8_t *data, size_t len);
void kvc__call_on_end(struct kvc_call *call);
void kvc__call_on_reset(struct kvc_call *call, uint32_t h2_error);
ssize_t kvc__call_read_body(struct kvc_call *call, uint8_t *buf, size_t length,
			    uint32_t *data_flags);
/* The connection under call failed: resend if safe, else end with
 * -KV_EUNAVAILABLE.  unprocessed: the server provably ignored the request. */
void kvc__call_conn_lost(struct kvc_call *call, bool unprocessed, bool same_endpoint_ok,
			 const char *why);
/* Ends the call: detach, done_cb.  msg (may be NULL) becomes its text. */
void kvc__call_finish(struct kvc_call *call, int err, enum grpc_code code, const char *msg);
/* Builds the request header block into nva (at least KVC_NV_MAX). */
#define KVC_NV_MAX (8 + KVC_MAX_HEADERS + KVC_MAX_CALL_MD)
size_t kvc__call_headers(struct kvc_call *call, nghttp2_nv *nva, char *timeout_buf,
			 size_t timeout_len);

#endif
