/*
 * listener: client sockets, protocol sniffing and output buffering (see
 * listener.h for the model).
 *
 * Connection life: accept -> sniff (first 24 bytes, may span reads) ->
 * grpc or http1 -> (protocol done, or listener_stop) graceful close: reads
 * stop, queued output drains, FIN, close.  Errors and listener_free close at
 * once (pending writes are cancelled).
 *
 * Output of one flush goes to a staging buffer shared by the whole listener
 * and is written with uv_try_write; only what the socket does not take at
 * once is copied to a heap buffer for uv_write.  So the common case (small
 * responses, a socket with room) allocates nothing per response.
 */
#include "server/listener.h"

#include <malloc.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/config.h"
#include "server/grpc.h"
#include "server/http1.h"
#include "server/server.h"

#define LISTENER_RBUF_SIZE (64 * 1024)
#define LISTENER_STAGE_SIZE (64 * 1024)
#define LISTENER_BACKLOG 1024
#define CONN_WBUF_MIN (16 * 1024)
/* Unwritten output above HIGH pauses the connection, below LOW resumes it. */
#define CONN_OUT_HIGH (512 * 1024)
#define CONN_OUT_LOW (128 * 1024)
#define CONN_KEEPALIVE_S 30
/* Free heap above this is given back to the kernel, checked every
 * LISTENER_TRIM_MS. */
#define LISTENER_TRIM_FREE (16u << 20)
#define LISTENER_TRIM_MS 5000

static const char conn_h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum conn_state { CONN_OPEN = 0, CONN_SHUTTING, CONN_CLOSING };

/* Output that the socket did not take at once; owned by its write request
 * once submitted. */
struct conn_wbuf {
	uv_write_t req;
	struct conn *c;
	size_t len;
	size_t cap;
	uint8_t data[];
};

struct listener_sock {
	uv_tcp_t tcp;
	struct listener *lis;
	struct listener_sock *next;
	char addr[INET6_ADDRSTRLEN + 16];
};

struct listener {
	struct server *srv;
	uv_loop_t *loop;
	struct listener_sock *socks;
	LIST_HEAD(, conn) conns;
	LIST_HEAD(, conn) shutting; /* closing gracefully, output draining */
	size_t n_conns;
	size_t max_handles; /* connection cap, see listener_fd_budget */
	uint64_t refused;   /* connections closed at the cap, for the log */
	uint64_t refused_logged_at;
	uint64_t trimmed_at;
	size_t in_used;     /* conn_in_charge budget */
	size_t in_max;
	TAILQ_HEAD(, conn) dirty;
	TAILQ_HEAD(, conn) turn; /* CONN_PAUSE_TURN: read again next turn */
	uv_prepare_t prepare;
	uv_timer_t tick;
	int handles; /* open uv handles: sockets, connections, prepare, tick */
	bool stopping;
	bool freeing;
	void (*done)(void *arg);
	void *done_arg;
	struct conn *cur;   /* connection being flushed (owns the stage) */
	size_t stage_len;
	uint8_t stage[LISTENER_STAGE_SIZE];
	uint8_t rbuf[LISTENER_RBUF_SIZE];
};

/* Per-connection state beyond what protocol modules see. */
struct conn_priv {
	struct conn pub;
	uv_shutdown_t shut;
	uint64_t t_close; /* graceful close began (loop time, ms) */
	enum conn_state state;
	bool more; /* the protocol has output it could not queue yet */
};

#define CONN_PRIV(c) ((struct conn_priv *)(c))

static void conn_destroy(struct conn *c);

/* --- handle bookkeeping --------------------------------------------- */

static void listener_handle_closed(struct listener *l)
{
	struct listener_sock *s;
	if (--l->handles > 0 || !l->freeing)
		return;
	while ((s = l->socks)) {
		l->socks = s->next;
		free(s);
	}
	if (l->done)
		l->done(l->done_arg);
	free(l);
}

static void listener_sock_close_cb(uv_handle_t *h)
{
	struct listener_sock *s = h->data;
	listener_handle_closed(s->lis);
}

static void listener_prepare_close_cb(uv_handle_t *h)
{
	listener_handle_closed(h->data);
}

static void listener_tick_close_cb(uv_handle_t *h)
{
	listener_handle_closed(h->data);
}

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct listener *l = c->lis;
	free(c);
	listener_handle_closed(l);
}

/* --- output ------------------------------------------------------------ */

static size_t conn_unwritten(const struct conn *c)
{
	size_t n = c->tcp.write_queue_size;
	if (c->wb)
		n += c->wb->len;
	if (c->lis->cur == c)
		n += c->lis->stage_len;
	return n;
}

bool conn_out_full(const struct conn *c)
{
	return conn_unwritten(c) >= CONN_OUT_HIGH;
}

/* Makes room for n more bytes in c->wb, moving staged bytes there first. */
static int conn_wb_reserve(struct conn *c, size_t n)
{
	struct listener *l = c->lis;
	size_t have = c->wb ? c->wb->len : 0;
	size_t staged = l->cur == c ? l->stage_len : 0;
	size_t need = have + staged + n, cap;
	struct conn_wbuf *wb;

	if (c->wb && c->wb->cap >= need && staged == 0)
		return 0;
	cap = c->wb ? c->wb->cap : CONN_WBUF_MIN;
	while (cap < need)
		cap *= 2;
	wb = realloc(c->wb, sizeof(*wb) + cap);
	if (!wb)
		return -KV_ENOMEM;
	if (!c->wb)
		wb->len = 0;
	wb->cap = cap;
	wb->c = c;
	c->wb = wb;
	if (staged) {
		memcpy(wb->data + wb->len, l->stage, staged);
		wb->len += staged;
		l->stage_len = 0;
	}
	return 0;
}

int conn_out(struct conn *c, const void *p, size_t n)
{
	struct listener *l = c->lis;
	int rv;

	if (n == 0)
		return 0;
	if (l->cur == c && !c->wb && l->stage_len + n <= sizeof(l->stage)) {
		memcpy(l->stage + l->stage_len, p, n);
		l->stage_len += n;
		return 0;
	}
	rv = conn_wb_reserve(c, n);
	if (rv)
		return rv;
	memcpy(c->wb->data + c->wb->len, p, n);
	c->wb->len += n;
	return 0;
}

static void conn_write_cb(uv_write_t *req, int status)
{
	struct conn_wbuf *wb = (struct conn_wbuf *)req;
	struct conn *c = wb->c;

	free(wb);
	if (CONN_PRIV(c)->state == CONN_CLOSING)
		return;
	if (status < 0) {
		LOGD("conn %p: write: %s", (void *)c, uv_strerror(status));
		conn_destroy(c);
		return;
	}
	if (c->tcp.write_queue_size < CONN_OUT_LOW &&
	    ((c->pause & CONN_PAUSE_OUTPUT) || CONN_PRIV(c)->more)) {
		conn_resume(c, CONN_PAUSE_OUTPUT);
		conn_want_flush(c);
	}
}

/* Writes what flush produced: try the socket directly, queue the rest. */
static int conn_write_out(struct conn *c)
{
	struct listener *l = c->lis;
	struct conn_wbuf *wb;
	const uint8_t *p;
	size_t len, rest;
	uv_buf_t buf;
	int n, rv;

	if (c->wb) {
		p = c->wb->data;
		len = c->wb->len;
	} else if (l->cur == c) {
		p = l->stage;
		len = l->stage_len;
	} else {
		return 0;
	}
	if (len == 0)
		return 0;
	buf = uv_buf_init((char *)p, (unsigned)len);
	n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
	if (n == UV_EAGAIN)
		n = 0;
	else if (n < 0)
		return n;
	rest = len - (size_t)n;
	if (c->wb) {
		wb = c->wb;
		c->wb = NULL;
		if (rest == 0) {
			free(wb);
			return 0;
		}
		memmove(wb->data, wb->data + n, rest);
		wb->len = rest;
	} else {
		l->stage_len = 0;
		if (rest == 0)
			return 0;
		wb = malloc(sizeof(*wb) + rest);
		if (!wb)
			return -KV_ENOMEM;
		memcpy(wb->data, p + n, rest);
		wb->len = wb->cap = rest;
		wb->c = c;
	}
	buf = uv_buf_init((char *)wb->data, (unsigned)wb->len);
	rv = uv_write(&wb->req, (uv_stream_t *)&c->tcp, &buf, 1, conn_write_cb);
	if (rv) {
		free(wb);
		return rv;
	}
	return 0;
}

/* --- closing ----------------------------------------------------------- */

static void conn_release_proto(struct conn *c)
{
	const struct conn_proto *proto = c->proto;
	if (proto && c->proto_data)
		proto->free(c);
	c->proto_data = NULL;
}

static void conn_unlink(struct conn *c)
{
	struct listener *l = c->lis;
	if (c->dirty) {
		TAILQ_REMOVE(&l->dirty, c, dirty_link);
		c->dirty = false;
	}
	if (c->pause & CONN_PAUSE_TURN) {
		TAILQ_REMOVE(&l->turn, c, turn_link);
		c->pause &= (uint8_t)~CONN_PAUSE_TURN;
	}
	if (l->cur == c)
		l->stage_len = 0;
}

/* Closes at once; pending writes are cancelled. */
static void conn_destroy(struct conn *c)
{
	struct conn_priv *cp = CONN_PRIV(c);
	struct listener *l = c->lis;

	if (cp->state == CONN_CLOSING)
		return;
	if (cp->state == CONN_OPEN)
		l->n_conns--;
	LIST_REMOVE(c, link);
	cp->state = CONN_CLOSING;
	conn_unlink(c);
	conn_release_proto(c);
	free(c->wb);
	c->wb = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;
	conn_destroy(c);
}

/* Closes once the queued output is written. */
static void conn_close_graceful(struct conn *c)
{
	struct conn_priv *cp = CONN_PRIV(c);
	struct listener *l = c->lis;

	if (cp->state != CONN_OPEN)
		return;
	LIST_REMOVE(c, link);
	l->n_conns--;
	LIST_INSERT_HEAD(&l->shutting, c, link);
	cp->t_close = uv_now(l->loop);
	cp->state = CONN_SHUTTING;
	uv_read_stop((uv_stream_t *)&c->tcp);
	conn_unlink(c);
	conn_release_proto(c);
	cp->shut.data = c;
	if (uv_shutdown(&cp->shut, (uv_stream_t *)&c->tcp, conn_shutdown_cb))
		conn_destroy(c);
}

/* --- flushing ------------------------------------------------------- */

/* Rounds of flush + write per turn: a fast reader must not starve the other
 * connections of the loop. */
#define CONN_FLUSH_ROUNDS 4

static void conn_flush(struct conn *c)
{
	struct conn_priv *cp = CONN_PRIV(c);
	struct listener *l = c->lis;
	int rounds, rv = 0;

	for (rounds = 0; rounds < CONN_FLUSH_ROUNDS; rounds++) {
		if (cp->state != CONN_OPEN)
			return;
		l->cur = c;
		l->stage_len = 0;
		rv = 0;
		if (c->proto && c->proto_data)
			rv = c->proto->flush(c);
		cp->more = rv == 1;
		if (rv >= 0)
			rv = conn_write_out(c);
		l->cur = NULL;
		l->stage_len = 0;
		if (rv < 0) {
			LOGD("conn %p: flush: %s", (void *)c,
			     rv <= -KV_E__FIRST ? kv_err_name(rv) : uv_strerror(rv));
			conn_destroy(c);
			return;
		}
		/* Output left in libuv: the write callback flushes again. */
		if (!cp->more || c->tcp.write_queue_size > 0)
			break;
	}
	if (c->tcp.write_queue_size >= CONN_OUT_HIGH)
		conn_pause(c, CONN_PAUSE_OUTPUT);
	else if (cp->more && c->tcp.write_queue_size == 0)
		conn_want_flush(c); /* again, after the other connections */
	if (!c->proto) {
		if (c->peer_eof)
			conn_destroy(c);
		return;
	}
	if (!cp->more && c->proto->done(c))
		conn_close_graceful(c);
}

static void listener_prepare_cb(uv_prepare_t *h)
{
	struct listener *l = h->data;
	struct conn *c;

	/* Flushing can make other connections dirty (a call closing on one
	 * connection may complete work for another): drain until empty. */
	while ((c = TAILQ_FIRST(&l->dirty))) {
		TAILQ_REMOVE(&l->dirty, c, dirty_link);
		c->dirty = false;
		conn_flush(c);
	}
	/* Connections that had a full buffer to read last turn: next poll. */
	while ((c = TAILQ_FIRST(&l->turn))) {
		TAILQ_REMOVE(&l->turn, c, turn_link);
		conn_resume(c, CONN_PAUSE_TURN);
	}
	uv_prepare_stop(h);
}

void conn_want_flush(struct conn *c)
{
	struct listener *l = c->lis;
	if (c->dirty || CONN_PRIV(c)->state != CONN_OPEN)
		return;
	c->dirty = true;
	TAILQ_INSERT_TAIL(&l->dirty, c, dirty_link);
	if (!uv_is_active((uv_handle_t *)&l->prepare))
		uv_prepare_start(&l->prepare, listener_prepare_cb);
}

/* --- deadlines ----------------------------------------------------------- */

/* A burst of connections or answers leaves the heap fragmented: glibc only
 * returns its top, so one live allocation high up kept a flood's worth of
 * RSS after the flood.  malloc_trim releases the free pages inside it. */
static void listener_trim(struct listener *l, uint64_t now)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
	if (now - l->trimmed_at < LISTENER_TRIM_MS)
		return;
	l->trimmed_at = now;
	if (mallinfo2().fordblks >= LISTENER_TRIM_FREE)
		malloc_trim(1 << 20);
#endif
}

static void listener_tick_cb(uv_timer_t *t)
{
	struct listener *l = t->data;
	uint64_t now = uv_now(l->loop);
	struct conn *c, *next;
	int rv;

	for (c = LIST_FIRST(&l->conns); c; c = next) {
		next = LIST_NEXT(c, link);
		if (!c->proto) {
			/* Slowloris: the preface one byte at a time, or nothing. */
			if (now - c->t_open >= LISTENER_HANDSHAKE_MS) {
				LOGD("conn %p: no protocol after %d ms: closing", (void *)c, LISTENER_HANDSHAKE_MS);
				conn_destroy(c);
			}
			continue;
		}
		if (!c->proto->tick || !c->proto_data)
			continue;
		rv = c->proto->tick(c, now);
		if (rv < 0) {
			LOGD("conn %p: %s: closing: %s", (void *)c, c->proto->name, kv_err_name(rv));
			conn_destroy(c);
		}
	}
	/* A client that never reads would keep a closing connection, its
	 * socket and its unsent output forever. */
	for (c = LIST_FIRST(&l->shutting); c; c = next) {
		next = LIST_NEXT(c, link);
		if (now - CONN_PRIV(c)->t_close >= LISTENER_CLOSE_MS)
			conn_destroy(c);
	}
	listener_trim(l, now);
}

/* --- reading ------------------------------------------------------------ */

static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = h->data;
	/* Every read is consumed before the read callback returns, so one
	 * buffer serves all connections of the loop. */
	*buf = uv_buf_init((char *)c->lis->rbuf, sizeof(c->lis->rbuf));
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

void conn_pause(struct conn *c, uint8_t why)
{
	if (!c->pause && CONN_PRIV(c)->state == CONN_OPEN && !c->peer_eof)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->pause |= why;
}

void conn_resume(struct conn *c, uint8_t why)
{
	if (!(c->pause & why))
		return;
	c->pause &= (uint8_t)~why;
	if (!c->pause && CONN_PRIV(c)->state == CONN_OPEN && !c->peer_eof)
		uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
}

bool conn_stopping(const struct conn *c)
{
	return c->lis->stopping;
}

int conn_in_charge(struct conn *c, size_t n)
{
	struct listener *l = c->lis;
	if (n > l->in_max - l->in_used)
		return -KV_ETOOMANYREQUESTS;
	l->in_used += n;
	return 0;
}

void conn_in_refund(struct conn *c, size_t n)
{
	c->lis->in_used -= n;
}

/* Picks the protocol once the first bytes tell: the full HTTP/2 preface
 * means gRPC, the first byte that differs from it means HTTP/1.1.  Bytes held
 * back from earlier reads are fed to the protocol before buf. */
static int conn_sniff(struct conn *c, const uint8_t *buf, size_t len)
{
	size_t i = 0, prev;
	bool h2 = true;
	int rv;

	while (c->sniff_len < sizeof(c->sniff) && i < len) {
		if (buf[i] != (uint8_t)conn_h2_preface[c->sniff_len]) {
			h2 = false;
			break;
		}
		c->sniff[c->sniff_len++] = buf[i++];
	}
	if (h2 && c->sniff_len < sizeof(c->sniff))
		return 0;
	prev = c->sniff_len - i;
	c->proto = h2 ? &grpc_proto : &http1_proto;
	rv = c->proto->start(c);
	if (rv)
		return rv;
	if (prev) {
		rv = c->proto->recv(c, c->sniff, prev);
		if (rv)
			return rv;
	}
	return c->proto->recv(c, buf, len);
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	int rv;

	if (nread == 0 || CONN_PRIV(c)->state != CONN_OPEN)
		return;
	if (nread < 0) {
		if (nread != UV_EOF) {
			LOGD("conn %p: read: %s", (void *)c, uv_strerror((int)nread));
			conn_destroy(c);
			return;
		}
		uv_read_stop(s);
		c->peer_eof = true;
		if (!c->proto) {
			conn_destroy(c);
			return;
		}
		rv = c->proto->recv(c, NULL, 0);
	} else if (!c->proto) {
		rv = conn_sniff(c, (const uint8_t *)buf->base, (size_t)nread);
	} else {
		rv = c->proto->recv(c, (const uint8_t *)buf->base, (size_t)nread);
	}
	if (rv < 0) {
		LOGD("conn %p: %s: closing: %s", (void *)c, c->proto ? c->proto->name : "sniff",
		     kv_err_name(rv));
		conn_destroy(c);
		return;
	}
	/* A full buffer: there is probably more.  libuv would read on up to
	 * 32 times before polling the other sockets; let them go first. */
	if ((size_t)nread == sizeof(c->lis->rbuf) && !(c->pause & CONN_PAUSE_TURN) &&
	    CONN_PRIV(c)->state == CONN_OPEN) {
		conn_pause(c, CONN_PAUSE_TURN);
		TAILQ_INSERT_TAIL(&c->lis->turn, c, turn_link);
	}
	conn_want_flush(c);
}

/* --- accepting ---------------------------------------------------------- */

static void listener_conn_cb(uv_stream_t *server, int status)
{
	struct listener_sock *s = server->data;
	struct listener *l = s->lis;
	struct conn_priv *cp;
	struct conn *c;

	if (status < 0) {
		/* EMFILE repeats for every connection libuv turns away */
		if (status != UV_EMFILE || uv_now(l->loop) - l->refused_logged_at >= 10000) {
			LOGW("accept on %s: %s", s->addr, uv_strerror(status));
			l->refused_logged_at = uv_now(l->loop);
		}
		return;
	}
	cp = calloc(1, sizeof(*cp));
	if (!cp) {
		LOGW("accept on %s: out of memory", s->addr);
		return;
	}
	c = &cp->pub;
	c->lis = l;
	c->srv = l->srv;
	c->t_open = uv_now(l->loop);
	c->tcp.data = c;
	uv_tcp_init(l->loop, &c->tcp);
	l->handles++;
	LIST_INSERT_HEAD(&l->conns, c, link);
	l->n_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
		conn_destroy(c);
		return;
	}
	if ((size_t)l->handles > l->max_handles) {
		l->refused++;
		if (uv_now(l->loop) - l->refused_logged_at >= 10000) {
			LOGW("%zu client connections: at the limit set by RLIMIT_NOFILE, refusing new ones "
			     "(%llu so far)", l->n_conns, (unsigned long long)l->refused);
			l->refused_logged_at = uv_now(l->loop);
		}
		conn_destroy(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, CONN_KEEPALIVE_S);
	if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb))
		conn_destroy(c);
}

static int listener_bind(struct listener *l, const struct sockaddr *sa, bool first, const char *url)
{
	struct listener_sock *s;
	char host[INET6_ADDRSTRLEN];
	int port, rv;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -KV_ENOMEM;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		uv_ip6_name(in6, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(s->addr, sizeof(s->addr), "[%s]:%d", host, port);
	} else {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
		uv_ip4_name(in4, host, sizeof(host));
		port = ntohs(in4->sin_port);
		snprintf(s->addr, sizeof(s->addr), "%s:%d", host, port);
	}
	s->lis = l;
	s->tcp.data = s;
	uv_tcp_init(l->loop, &s->tcp);
	l->handles++;
	s->next = l->socks;
	l->socks = s;
	/* v6 sockets are v6-only so "0.0.0.0" and "::" can both be bound. */
	rv = uv_tcp_bind(&s->tcp, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&s->tcp, LISTENER_BACKLOG, listener_conn_cb);
	if (rv) {
		/* A name may resolve to an address family this host lacks
		 * (localhost -> ::1 without IPv6): skip it if another worked. */
		if (!first && (rv == UV_EADDRNOTAVAIL || rv == UV_EAFNOSUPPORT)) {
			LOGW("%s: skipping %s: %s", url, s->addr, uv_strerror(rv));
			uv_close((uv_handle_t *)&s->tcp, listener_sock_close_cb);
			return 0;
		}
		LOGE("listen tcp %s: %s", s->addr, uv_strerror(rv));
		return -KV_EIO;
	}
	LOGI("serving insecure client requests on %s (gRPC and HTTP/1.1)", s->addr);
	return 0;
}

static int listener_open_url(struct listener *l, const char *url)
{
	struct config_url u;
	struct addrinfo hints, *ai;
	uv_getaddrinfo_t req;
	char err[256], port[8];
	bool first = true;
	int rv;

	if (config_url_parse(url, &u, err, sizeof(err))) {
		LOGE("invalid --listen-client-urls %s: %s", url, err);
		return -KV_EINVAL;
	}
	if (strcmp(u.scheme, "http") != 0) {
		if (strcmp(u.scheme, "https") == 0)
			LOGE("--listen-client-urls %s: TLS (https) client URLs are not supported yet; use http://", url);
		else
			LOGE("--listen-client-urls %s: unsupported scheme \"%s\" (only http:// is served)", url,
			     u.scheme);
		config_url_close(&u);
		return -KV_EINVAL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%u", (unsigned)u.port);
	/* No callback: resolved synchronously, before the loop runs. */
	rv = uv_getaddrinfo(l->loop, &req, NULL, u.host && u.host[0] ? u.host : NULL, port, &hints);
	if (rv) {
		LOGE("--listen-client-urls %s: cannot resolve \"%s\": %s", url, u.host ? u.host : "",
		     uv_strerror(rv));
		config_url_close(&u);
		return -KV_EINVAL;
	}
	for (ai = req.addrinfo; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		rv = listener_bind(l, ai->ai_addr, first, url);
		if (rv)
			break;
		first = false;
	}
	uv_freeaddrinfo(req.addrinfo);
	config_url_close(&u);
	if (rv == 0 && first) {
		LOGE("--listen-client-urls %s: no usable address", url);
		rv = -KV_EINVAL;
	}
	return rv;
}

/* Handles (one descriptor each, nearly all client connections) the
 * listener may hold: the soft RLIMIT_NOFILE, first raised to the hard one
 * (Go does this at start-up, so etcd gets it too), less a reserve. */
static size_t listener_fd_budget(void)
{
	struct rlimit rl;
	rlim_t reserve;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return SIZE_MAX;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = {rl.rlim_max, rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl.rlim_cur = rl.rlim_max;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= SIZE_MAX)
		return SIZE_MAX;
	reserve = rl.rlim_cur / 16;
	if (reserve < LISTENER_FD_RESERVE)
		reserve = LISTENER_FD_RESERVE;
	if (rl.rlim_cur <= 2 * reserve)
		return (size_t)rl.rlim_cur / 2;
	return (size_t)(rl.rlim_cur - reserve);
}

int listener_new(struct server *srv, struct listener **out)
{
	struct listener *l;
	unsigned max_req;
	int i, rv = 0;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -KV_ENOMEM;
	l->srv = srv;
	l->loop = srv->loop;
	l->max_handles = listener_fd_budget();
	max_req = srv->cfg && srv->cfg->max_request_bytes ? srv->cfg->max_request_bytes : 1572864;
	/* room for 64 of the largest requests the transports take (gRPC adds
	 * 512 KiB to --max-request-bytes; HTTP/1 doubles that for base64):
	 * 100 clients putting 1.4 MB at once got refusals at 8 */
	l->in_max = 64 * 2 * ((size_t)max_req + 512 * 1024);
	if (l->in_max < LISTENER_IN_MIN)
		l->in_max = LISTENER_IN_MIN;
	LIST_INIT(&l->conns);
	LIST_INIT(&l->shutting);
	TAILQ_INIT(&l->dirty);
	TAILQ_INIT(&l->turn);
	uv_prepare_init(l->loop, &l->prepare);
	l->prepare.data = l;
	uv_timer_init(l->loop, &l->tick);
	l->tick.data = l;
	uv_timer_start(&l->tick, listener_tick_cb, LISTENER_TICK_MS, LISTENER_TICK_MS);
	uv_unref((uv_handle_t *)&l->tick);
	l->handles = 2;
	for (i = 0; i < srv->cfg->n_listen_client_urls && rv == 0; i++)
		rv = listener_open_url(l, srv->cfg->listen_client_urls[i]);
	if (rv == 0 && !l->socks) {
		LOGE("no --listen-client-urls given");
		rv = -KV_EINVAL;
	}
	if (rv) {
		/* Handles are freed once the loop runs their close callbacks. */
		listener_free(l, NULL, NULL);
		return rv;
	}
	*out = l;
	return 0;
}

static void listener_close_socks(struct listener *l)
{
	struct listener_sock *s;
	for (s = l->socks; s; s = s->next)
		if (!uv_is_closing((uv_handle_t *)&s->tcp))
			uv_close((uv_handle_t *)&s->tcp, listener_sock_close_cb);
}

void listener_stop(struct listener *l)
{
	struct conn *c, *next;

	if (l->stopping)
		return;
	l->stopping = true;
	listener_close_socks(l);
	for (c = LIST_FIRST(&l->conns); c; c = next) {
		next = LIST_NEXT(c, link);
		if (!c->proto) {
			conn_destroy(c);
			continue;
		}
		c->proto->shutdown(c);
		conn_want_flush(c);
	}
}

void listener_free(struct listener *l, void (*done)(void *arg), void *arg)
{
	struct conn *c;

	l->stopping = true;
	l->freeing = true;
	l->done = done;
	l->done_arg = arg;
	listener_close_socks(l);
	while ((c = LIST_FIRST(&l->conns)))
		conn_destroy(c);
	while ((c = LIST_FIRST(&l->shutting)))
		conn_destroy(c);
	uv_close((uv_handle_t *)&l->prepare, listener_prepare_close_cb);
	uv_close((uv_handle_t *)&l->tick, listener_tick_close_cb);
}

size_t listener_conn_count(const struct listener *l)
{
	return l->n_conns;
}
