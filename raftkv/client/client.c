/*
 * client: the kvc_client object.  It holds the endpoint list and chooses an
 * endpoint for every attempt of a call (sticky or round-robin, skipping
 * endpoints in back-off after a failure), keeps one deadline heap and one
 * uv timer for all calls (no handle per call), and flushes every
 * connection that has something to send once per loop turn: a prepare
 * handle covers work queued by timers and before the loop polls, a check
 * handle work queued by I/O callbacks, so each connection issues at most
 * one write per turn with everything nghttp2 has queued.
 */
#include "client/kvc_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

void kvc_options_init(struct kvc_options *o)
{
	memset(o, 0, sizeof(*o));
	o->dial_timeout_ms = 2000;
	o->call_timeout_ms = 5000;
	o->keepalive_ms = 0;
	o->keepalive_timeout_ms = 6000;
	o->max_recv_bytes = INT32_MAX;
	o->max_attempts = 0;
	o->balance = KVC_STICKY;
}

/* --- endpoints ------------------------------------------------------------- */

static bool kvc_port_ok(const char *p)
{
	unsigned long v;
	char *end;

	if (!*p || strlen(p) > 5)
		return false;
	for (const char *q = p; *q; q++)
		if (!isdigit((unsigned char)*q))
			return false;
	v = strtoul(p, &end, 10);
	return v >= 1 && v <= 65535;
}

static void kvc_endpoint_clear(struct kvc_endpoint *ep)
{
	free(ep->host);
	free(ep->port);
	free(ep->authority);
	ep->host = ep->port = ep->authority = NULL;
}

/* One endpoint: [http://]host[:port][/], host may be [v6].  etcd's default
 * client port when none is given. */
static int kvc_endpoint_parse(struct kvc_endpoint *ep, const char *s, size_t len)
{
	char host[256], port[8] = "2379";
	const char *hs, *he, *p, *end = s + len;
	size_t n;

	memset(ep, 0, sizeof(*ep));
	if (len >= 7 && strncasecmp(s, "http://", 7) == 0)
		s += 7;
	else if (memmem(s, len, "://", 3))
		return -KV_EINVAL; /* https, unix: not supported */
	while (end > s && end[-1] == '/')
		end--;
	if (s == end)
		return -KV_EINVAL;
	if (*s == '[') {
		hs = s + 1;
		he = memchr(hs, ']', (size_t)(end - hs));
		if (!he)
			return -KV_EINVAL;
		p = he + 1;
		if (p < end && *p != ':')
			return -KV_EINVAL;
	} else {
		hs = s;
		he = memchr(s, ':', (size_t)(end - s));
		if (!he)
			he = end;
		p = he;
		if (p < end && memchr(p + 1, ':', (size_t)(end - p - 1)))
			return -KV_EINVAL; /* a bare IPv6 address needs brackets */
	}
	n = (size_t)(he - hs);
	if (n == 0 || n >= sizeof(host))
		return -KV_EINVAL;
	memcpy(host, hs, n);
	host[n] = '\0';
	if (p < end) {
		n = (size_t)(end - p - 1);
		if (n == 0 || n >= sizeof(port))
			return -KV_EINVAL;
		memcpy(port, p + 1, n);
		port[n] = '\0';
	}
	if (!kvc_port_ok(port))
		return -KV_EINVAL;

	ep->host = strdup(host);
	ep->port = strdup(port);
	ep->authority = malloc(strlen(host) + strlen(port) + 4);
	if (!ep->host || !ep->port || !ep->authority) {
		kvc_endpoint_clear(ep);
		return -KV_ENOMEM;
	}
	if (strchr(host, ':'))
		sprintf(ep->authority, "[%s]:%s", host, port);
	else
		sprintf(ep->authority, "%s:%s", host, port);

	if (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&ep->addr) == 0 ||
	    uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&ep->addr) == 0)
		ep->numeric = true;
	return 0;
}

static int kvc_endpoints_parse(struct kvc_client *c, const char *list)
{
	const char *s = list;
	size_t n = 1, i = 0;
	int rv;

	for (const char *q = list; *q; q++)
		n += *q == ',';
	if (n > KVC_MAX_ENDPOINTS)
		return -KV_EINVAL;
	c->eps = calloc(n, sizeof(*c->eps));
	if (!c->eps)
		return -KV_ENOMEM;
	while (*s) {
		const char *e = strchr(s, ',');
		const char *b = s;
		size_t len;

		if (!e)
			e = s + strlen(s);
		while (b < e && isspace((unsigned char)*b))
			b++;
		len = (size_t)(e - b);
		while (len && isspace((unsigned char)b[len - 1]))
			len--;
		if (len) {
			rv = kvc_endpoint_parse(&c->eps[i], b, len);
			if (rv)
				return rv;
			i++;
			c->n_eps = i;
		}
		s = *e ? e + 1 : e;
	}
	return c->n_eps ? 0 : -KV_EINVAL;
}

/* The endpoint for the next attempt of call: not tried by this call,
 * preferably not in back-off; -1 if every endpoint was tried. */
static int kvc_pick(struct kvc_client *c, struct kvc_call *call)
{
	uint64_t now = uv_now(c->loop);
	size_t start, i;
	int fallback = -1;

	if (c->opts.balance == KVC_ROUND_ROBIN) {
		start = c->cur;
		c->cur = (c->cur + 1) % c->n_eps;
	} else {
		start = c->cur;
	}
	for (i = 0; i < c->n_eps; i++) {
		size_t idx = (start + i) % c->n_eps;
		struct kvc_endpoint *ep = &c->eps[idx];

		if (call->s.tried & (UINT64_C(1) << idx))
			continue;
		if (ep->down_until > now && !(ep->conn && ep->conn->state == KVC_CONN_READY)) {
			if (fallback < 0)
				fallback = (int)idx;
			continue;
		}
		if (c->opts.balance == KVC_STICKY)
			c->cur = idx;
		return (int)idx;
	}
	return fallback;
}

void kvc__client_endpoint_failed(struct kvc_client *c, int ep)
{
	struct kvc_endpoint *e = &c->eps[ep];

	e->backoff_ms = e->backoff_ms ? e->backoff_ms * 2 : KVC_BACKOFF_MIN_MS;
	if (e->backoff_ms > KVC_BACKOFF_MAX_MS)
		e->backoff_ms = KVC_BACKOFF_MAX_MS;
	e->down_until = uv_now(c->loop) + e->backoff_ms;
	if (c->opts.balance == KVC_STICKY && c->cur == (size_t)ep)
		c->cur = (c->cur + 1) % c->n_eps;
}

void kvc__client_endpoint_ok(struct kvc_client *c, int ep)
{
	c->eps[ep].backoff_ms = 0;
	c->eps[ep].down_until = 0;
}

static unsigned kvc_popcount(uint64_t v)
{
	return (unsigned)__builtin_popcountll(v);
}

int kvc__client_dispatch(struct kvc_call *call)
{
	struct kvc_client *c = call->s.client;
	unsigned max = c->opts.max_attempts ? c->opts.max_attempts : (unsigned)c->n_eps;

	for (;;) {
		struct kvc_conn *conn;
		int ep = -1, rv;

		if (kvc_popcount(call->s.tried) < max)
			ep = kvc_pick(c, call);
		if (ep < 0)
			return -KV_EUNAVAILABLE;
		conn = c->eps[ep].conn;
		if (!conn) {
			conn = kvc__conn_new(c, ep);
			if (!conn)
				return -KV_ENOMEM;
		}
		call->s.ep = ep;
		call->s.attempts++;
		rv = kvc__conn_submit(conn, call);
		if (rv != -KV_EUNAVAILABLE)
			return rv;
		/* Stream ids used up or GOAWAY: that connection drains and
		 * the endpoint gets a new one. */
	}
}

/* --- deadlines -------------------------------------------------------------- */

static void kvc_heap_swap(struct kvc_client *c, size_t i, size_t j)
{
	struct kvc_call *t = c->heap[i];

	c->heap[i] = c->heap[j];
	c->heap[j] = t;
	c->heap[i]->s.heap_idx = i;
	c->heap[j]->s.heap_idx = j;
}

static void kvc_heap_up(struct kvc_client *c, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (c->heap[p]->s.deadline <= c->heap[i]->s.deadline)
			break;
		kvc_heap_swap(c, i, p);
		i = p;
	}
}

static void kvc_heap_down(struct kvc_client *c, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < c->heap_n && c->heap[l]->s.deadline < c->heap[m]->s.deadline)
			m = l;
		if (r < c->heap_n && c->heap[r]->s.deadline < c->heap[m]->s.deadline)
			m = r;
		if (m == i)
			return;
		kvc_heap_swap(c, i, m);
		i = m;
	}
}

static void kvc_timer_cb(uv_timer_t *t);

static void kvc_timer_arm(struct kvc_client *c)
{
	uint64_t due, now;

	if (c->heap_n == 0 || c->closing) {
		if (c->timer_due) {
			uv_timer_stop(&c->timer);
			c->timer_due = 0;
		}
		return;
	}
	due = c->heap[0]->s.deadline;
	if (c->timer_due && c->timer_due <= due)
		return; /* fires early at worst, and re-arms */
	now = uv_now(c->loop);
	uv_timer_start(&c->timer, kvc_timer_cb, due > now ? due - now : 0, 0);
	c->timer_due = due;
}

static void kvc_timer_cb(uv_timer_t *t)
{
	struct kvc_client *c = t->data;
	uint64_t now = uv_now(c->loop);

	c->timer_due = 0;
	while (c->heap_n && c->heap[0]->s.deadline <= now)
		kvc__call_finish(c->heap[0], -KV_EDEADLINE, GRPC_DEADLINE_EXCEEDED,
				 kv_err_message(KV_EDEADLINE));
	kvc_timer_arm(c);
}

void kvc__heap_add(struct kvc_client *c, struct kvc_call *call)
{
	if (c->heap_n == c->heap_cap) {
		size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
		struct kvc_call **h = realloc(c->heap, cap * sizeof(*h));

		if (!h) {
			/* Without room the call simply has no local deadline;
			 * the server still sees grpc-timeout. */
			call->s.deadline = 0;
			return;
		}
		c->heap = h;
		c->heap_cap = cap;
	}
	call->s.heap_idx = c->heap_n;
	c->heap[c->heap_n++] = call;
	kvc_heap_up(c, call->s.heap_idx);
	kvc_timer_arm(c);
}

void kvc__heap_remove(struct kvc_client *c, struct kvc_call *call)
{
	size_t i = call->s.heap_idx;

	if (!call->s.deadline || i >= c->heap_n || c->heap[i] != call)
		return;
	c->heap_n--;
	if (i != c->heap_n) {
		c->heap[i] = c->heap[c->heap_n];
		c->heap[i]->s.heap_idx = i;
		kvc_heap_down(c, i);
		kvc_heap_up(c, i);
	}
	call->s.heap_idx = SIZE_MAX;
	if (c->heap_n == 0)
		kvc_timer_arm(c);
}

/* --- once-per-turn flush ----------------------------------------------------- */

static void kvc_flush_all(struct kvc_client *c)
{
	struct kvc_conn *conn = c->conns;

	while (conn) {
		struct kvc_conn *next = conn->next;

		if (conn->want_write) {
			conn->want_write = false;
			c->n_dirty--;
			kvc__conn_flush(conn);
		}
		conn = next;
	}
	if (c->n_dirty == 0 && !c->closing) {
		uv_prepare_stop(&c->prepare);
		uv_check_stop(&c->check);
	}
}

static void kvc_prepare_cb(uv_prepare_t *h)
{
	kvc_flush_all(h->data);
}

static void kvc_check_cb(uv_check_t *h)
{
	kvc_flush_all(h->data);
}

void kvc__client_want_write(struct kvc_conn *conn)
{
	struct kvc_client *c = conn->client;

	if (conn->want_write || conn->state == KVC_CONN_DEAD || c->closing)
		return;
	conn->want_write = true;
	if (c->n_dirty++ == 0) {
		uv_prepare_start(&c->prepare, kvc_prepare_cb);
		uv_check_start(&c->check, kvc_check_cb);
	}
}

/* --- life cycle ------------------------------------------------------------- */

static void kvc_client_release(struct kvc_client *c)
{
	size_t i;

	for (i = 0; i < c->n_eps; i++)
		kvc_endpoint_clear(&c->eps[i]);
	for (i = 0; i < c->n_headers; i++) {
		free((char *)c->headers[i].name);
		free((char *)c->headers[i].value);
	}
	free(c->eps);
	free(c->heap);
	free(c);
}

static void kvc_client_maybe_free(struct kvc_client *c)
{
	void (*cb)(void *) = c->free_cb;
	void *data = c->free_data;

	if (!c->closing || c->handles || c->n_conns)
		return;
	kvc_client_release(c);
	if (cb)
		cb(data);
}

static void kvc_handle_closed(uv_handle_t *h)
{
	struct kvc_client *c = h->data;

	c->handles--;
	kvc_client_maybe_free(c);
}

void kvc__client_conn_freed(struct kvc_client *c, struct kvc_conn *conn)
{
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		c->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	c->n_conns--;
	kvc_client_maybe_free(c);
}

int kvc_client_new(uv_loop_t *loop, const char *endpoints, const struct kvc_options *opts,
		   struct kvc_client **out)
{
	struct kvc_client *c;
	struct sigaction sa;
	int rv;

	*out = NULL;
	if (!loop || !endpoints)
		return -KV_EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -KV_ENOMEM;
	c->loop = loop;
	if (opts)
		c->opts = *opts;
	else
		kvc_options_init(&c->opts);
	if (!c->opts.max_recv_bytes)
		c->opts.max_recv_bytes = INT32_MAX;
	rv = kvc_endpoints_parse(c, endpoints);
	if (rv) {
		kvc_client_release(c);
		return rv;
	}
	uv_timer_init(loop, &c->timer);
	uv_prepare_init(loop, &c->prepare);
	uv_check_init(loop, &c->check);
	c->timer.data = c->prepare.data = c->check.data = c;
	c->handles = 3;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	*out = c;
	return 0;
}

void kvc_client_free(struct kvc_client *c, void (*cb)(void *data), void *data)
{
	struct kvc_conn *conn;

	if (!c || c->closing)
		return;
	c->closing = true;
	c->free_cb = cb;
	c->free_data = data;
	for (conn = c->conns; conn; conn = conn->next)
		while (conn->calls)
			kvc__call_finish(conn->calls, -KV_ECANCELED, GRPC_CANCELLED,
					 "client closed");
	for (conn = c->conns; conn; conn = conn->next)
		kvc__conn_close(conn);
	c->n_dirty = 0;
	uv_close((uv_handle_t *)&c->timer, kvc_handle_closed);
	uv_close((uv_handle_t *)&c->prepare, kvc_handle_closed);
	uv_close((uv_handle_t *)&c->check, kvc_handle_closed);
}

int kvc_client_set_header(struct kvc_client *c, const char *name, const char *value)
{
	size_t i;
	char *n, *v;

	if (!name || !*name)
		return -KV_EINVAL;
	for (const char *p = name; *p; p++)
		if (isupper((unsigned char)*p) || *p == ':')
			return -KV_EINVAL;
	for (i = 0; i < c->n_headers; i++)
		if (strcmp(c->headers[i].name, name) == 0)
			break;
	if (!value) {
		if (i == c->n_headers)
			return 0;
		free((char *)c->headers[i].name);
		free((char *)c->headers[i].value);
		c->headers[i] = c->headers[--c->n_headers];
		return 0;
	}
	if (i == KVC_MAX_HEADERS)
		return -KV_EINVAL;
	v = strdup(value);
	n = i < c->n_headers ? NULL : strdup(name);
	if (!v || (i == c->n_headers && !n)) {
		free(v);
		free(n);
		return -KV_ENOMEM;
	}
	if (i < c->n_headers) {
		free((char *)c->headers[i].value);
		c->headers[i].value = v;
	} else {
		c->headers[i].name = n;
		c->headers[i].value = v;
		c->n_headers++;
	}
	return 0;
}

uv_loop_t *kvc_client_loop(const struct kvc_client *c)
{
	return c->loop;
}

size_t kvc_client_endpoint_count(const struct kvc_client *c)
{
	return c->n_eps;
}

const char *kvc_client_endpoint(const struct kvc_client *c, size_t i)
{
	return i < c->n_eps ? c->eps[i].authority : NULL;
}
