/*
 * http1: see http1.h.  Received bytes are appended to a per-connection
 * buffer; once a complete request (header block, then Content-Length body)
 * is there it is parsed in place, routed through http1_routes[] and
 * answered.  Malformed requests get Go's bare error responses and the
 * connection closes after them, as net/http does.
 */
#include "server/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/config.h"
#include "server/gw.h"
#include "server/metrics.h"
#include "server/server.h"
#include "server/svc.h"

#define HTTP1_DEFAULT_MAX_REQUEST 1572864u
#define HTTP1_BODY_EXTRA (512 * 1024)
struct http1_conn {
	struct conn *conn;
	char *buf;
	size_t len;
	size_t cap;
	size_t scan;            /* header terminator searched up to here */
	size_t want;            /* the buffered request's full size, once known */
	size_t charged;         /* of cap, to the listener's input budget */
	uint64_t t_req;         /* its first byte came (loop time, ms) */
	size_t max_body;
	struct http1_req *req;  /* in progress (answered asynchronously) */
	bool in_dispatch;       /* a handler is running right now */
	bool closing;           /* no more requests: close after output */
	bool continue_sent;     /* "100 Continue" sent for the current request */
	size_t chunk_off;       /* chunked body: next chunk-size line, 0 if none yet */
	size_t chunk_body;      /* chunked body: data bytes before chunk_off */
};

static void http1_not_found(struct http1_req *req);
static void http1_health(struct http1_req *req);
static void http1_version(struct http1_req *req);
static void http1_metrics(struct http1_req *req);

/* Exact paths as Go's ServeMux patterns. */
static const struct http1_route http1_routes[] = {
	{"/health", false, http1_health},
	{"/version", false, http1_version},
	{"/metrics", false, http1_metrics},
	{"/v3/", true, gw_handle},
	{"/v3beta/", true, gw_handle},
};

/* etcd wraps every handler with these (cors.go). */
static const char http1_cors[] =
	"Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
	"Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
	"Access-Control-Allow-Origin: *\r\n";

static const char *http1_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 413: return "Request Entity Too Large";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* "Date: Wed, 25 Nov 2026 22:10:38 GMT\r\n", formatted once per second. */
static const char *http1_date(void)
{
	static char line[64];
	static time_t last;
	time_t now = time(NULL);
	struct tm tm;

	if (now != last || !line[0]) {
		gmtime_r(&now, &tm);
		strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
		last = now;
	}
	return line;
}

/* --- request object ------------------------------------------------------ */

void http1_req_hold(struct http1_req *req)
{
	req->refs++;
}

void http1_req_release(struct http1_req *req)
{
	if (--req->refs == 0)
		free(req);
}

bool http1_req_gone(const struct http1_req *req)
{
	return req->hc == NULL;
}

void http1_req_on_gone(struct http1_req *req, http1_gone_fn fn, void *arg)
{
	req->gone_fn = fn;
	req->gone_arg = arg;
}

/* The connection goes away (or the client left a streamed response) while
 * hc->req is unanswered: tell its handler, drop the connection's ref. */
static void http1_req_abandon(struct http1_conn *hc)
{
	struct http1_req *req = hc->req;
	http1_gone_fn fn = req->gone_fn;

	hc->req = NULL;
	hc->closing = true;
	req->hc = NULL;
	req->gone_fn = NULL;
	if (fn)
		fn(req, req->gone_arg);
	http1_req_release(req);
}

bool http1_method_is(const struct http1_req *req, const char *method)
{
	return strlen(method) == req->method_len && memcmp(req->method, method, req->method_len) == 0;
}

bool http1_path_is(const struct http1_req *req, const char *path)
{
	return strlen(path) == req->path_len && memcmp(req->path, path, req->path_len) == 0;
}

const char *http1_header(const struct http1_req *req, const char *name, size_t *len)
{
	size_t n = strlen(name);
	uint32_t i;

	for (i = 0; i < req->n_fields; i++) {
		const struct http1_field *f = &req->fields[i];
		if (f->name_len == n && strncasecmp(f->name, name, n) == 0) {
			if (len)
				*len = f->value_len;
			return f->value;
		}
	}
	return NULL;
}

/* Comma-separated, case-insensitive token list contains tok. */
static bool http1_list_has(const char *v, size_t len, const char *tok)
{
	size_t n = strlen(tok), i = 0, start, end;

	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		start = i;
		while (i < len && v[i] != ',')
			i++;
		end = i;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (end - start == n && strncasecmp(v + start, tok, n) == 0)
			return true;
	}
	return false;
}

/* --- responses -------------------------------------------------------- */

static void http1_req_done(struct http1_conn *hc, struct http1_req *req);
static void http1_process(struct http1_conn *hc);

/* Go writes explicitly set headers sorted, then Date and Content-Length,
 * then a Content-Type it sniffed from the body (ct_sniffed). */
static int http1_respond_go(struct http1_req *req, int status, const char *content_type, bool ct_sniffed,
			    const char *extra_headers, const void *body, size_t len)
{
	struct http1_conn *hc = req->hc;
	const char *ct1 = content_type && !ct_sniffed ? content_type : NULL;
	const char *ct2 = content_type && ct_sniffed ? content_type : NULL;
	char head[1024];
	int n, rv;

	if (!hc || req->responded || req->streaming)
		return -KV_ECANCELED;
	req->responded = true;
	if (!req->keep_alive || conn_stopping(hc->conn))
		hc->closing = true;
	n = snprintf(head, sizeof(head),
		     "HTTP/1.%u %d %s\r\n%s%s%s%s%s%sContent-Length: %zu\r\n%s%s%s%s\r\n", req->minor, status,
		     http1_reason(status), http1_cors, extra_headers ? extra_headers : "",
		     ct1 ? "Content-Type: " : "", ct1 ? ct1 : "", ct1 ? "\r\n" : "", http1_date(), len,
		     ct2 ? "Content-Type: " : "", ct2 ? ct2 : "", ct2 ? "\r\n" : "",
		     hc->closing && req->minor >= 1    ? "Connection: close\r\n"
		     : !hc->closing && req->minor == 0 ? "Connection: keep-alive\r\n"
						       : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return -KV_EINTERNAL;
	rv = conn_out(hc->conn, head, (size_t)n);
	/* Go sends the headers of a HEAD response, never its body. */
	if (rv == 0 && !http1_method_is(req, "HEAD"))
		rv = conn_out(hc->conn, body, len);
	if (rv)
		hc->closing = true;
	conn_want_flush(hc->conn);
	if (!hc->in_dispatch && hc->req == req)
		http1_req_done(hc, req);
	return rv;
}

int http1_respond(struct http1_req *req, int status, const char *content_type, const char *extra_headers,
		  const void *body, size_t len)
{
	return http1_respond_go(req, status, content_type, false, extra_headers, body, len);
}

/* extra_headers must sort before "Content-Type" (e.g. "Allow: GET\r\n"). */
int http1_error(struct http1_req *req, int status, const char *text, const char *extra_headers)
{
	char hdrs[256], body[512];
	int n = snprintf(body, sizeof(body), "%s\n", text);

	if (n < 0 || (size_t)n >= sizeof(body))
		n = (int)sizeof(body) - 1;
	snprintf(hdrs, sizeof(hdrs),
		 "%sContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n",
		 extra_headers ? extra_headers : "");
	return http1_respond(req, status, NULL, hdrs, body, (size_t)n);
}

/* Go's head for a body it did not buffer: the set headers (sorted), Date,
 * then Connection and Transfer-Encoding (net/http's extraHeader order); an
 * HTTP/1.0 body ends when the connection does. */
int http1_stream_begin(struct http1_req *req, int status, const char *headers)
{
	struct http1_conn *hc = req->hc;
	char head[1024];
	int n, rv;

	if (!hc || req->responded || req->streaming)
		return -KV_ECANCELED;
	req->streaming = true;
	if (!req->keep_alive || conn_stopping(hc->conn) || req->minor == 0)
		hc->closing = true;
	n = snprintf(head, sizeof(head), "HTTP/1.%u %d %s\r\n%s%s%s%s%s\r\n", req->minor, status,
		     http1_reason(status), http1_cors, headers ? headers : "", http1_date(),
		     hc->closing && req->minor >= 1 ? "Connection: close\r\n" : "",
		     req->minor >= 1 ? "Transfer-Encoding: chunked\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return -KV_EINTERNAL;
	rv = conn_out(hc->conn, head, (size_t)n);
	if (rv)
		hc->closing = true;
	/* read again, to notice the client leaving (http1_recv) */
	conn_resume(hc->conn, CONN_PAUSE_PROTO);
	conn_want_flush(hc->conn);
	return rv;
}

int http1_stream_write(struct http1_req *req, const void *p, size_t len)
{
	struct http1_conn *hc = req->hc;
	char size[24];
	int n, rv;

	if (!hc || !req->streaming || req->responded)
		return -KV_ECANCELED;
	if (len == 0)
		return 0; /* an empty chunk would end the body */
	if (req->minor >= 1) {
		n = snprintf(size, sizeof(size), "%zx\r\n", len);
		rv = conn_out(hc->conn, size, (size_t)n);
		if (rv == 0)
			rv = conn_out(hc->conn, p, len);
		if (rv == 0)
			rv = conn_out(hc->conn, "\r\n", 2);
	} else {
		rv = conn_out(hc->conn, p, len);
	}
	if (rv)
		hc->closing = true;
	conn_want_flush(hc->conn);
	return rv;
}

int http1_stream_end(struct http1_req *req, const char *trailers)
{
	struct http1_conn *hc = req->hc;
	int rv = 0;

	if (!hc || !req->streaming || req->responded)
		return -KV_ECANCELED;
	if (req->minor >= 1) {
		rv = conn_out(hc->conn, "0\r\n", 3);
		if (rv == 0 && trailers)
			rv = conn_out(hc->conn, trailers, strlen(trailers));
		if (rv == 0)
			rv = conn_out(hc->conn, "\r\n", 2);
	}
	if (rv)
		hc->closing = true;
	req->responded = true;
	conn_want_flush(hc->conn);
	if (!hc->in_dispatch && hc->req == req)
		http1_req_done(hc, req);
	return rv;
}

/* A request that cannot be parsed: Go's bare reply, then close. */
static void http1_fail(struct http1_conn *hc, int status, const char *detail)
{
	char out[512];
	int n;

	if (status == 501)
		n = snprintf(out, sizeof(out),
			     "HTTP/1.1 501 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			     "Connection: close\r\n\r\nUnsupported transfer encoding",
			     http1_reason(status));
	else if (detail)
		n = snprintf(out, sizeof(out),
			     "HTTP/1.1 %d %s: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			     "Connection: close\r\n\r\n%d %s: %s",
			     status, http1_reason(status), detail, status, http1_reason(status), detail);
	else
		n = snprintf(out, sizeof(out),
			     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			     "Connection: close\r\n\r\n%d %s",
			     status, http1_reason(status), status, http1_reason(status));
	if (n > 0 && (size_t)n < sizeof(out))
		conn_out(hc->conn, out, (size_t)n);
	hc->closing = true;
	conn_want_flush(hc->conn);
}

/* --- handlers ------------------------------------------------------------ */

static void http1_not_found(struct http1_req *req)
{
	http1_error(req, 404, "404 page not found", NULL);
}

/* etcd 3.4 etcdhttp.NewHealthHandler: health is a string, and an unhealthy
 * member answers 503 through http.Error.  A member that cannot persist also
 * says why, in etcd 3.5's "reason" field (3.4 has none; its member would
 * have exited). */
static void http1_health(struct http1_req *req)
{
	static const char ok[] = "{\"health\":\"true\"}";
	char why[128], body[192];

	if (!http1_method_is(req, "GET")) {
		http1_error(req, 405, "Method Not Allowed", "Allow: GET\r\n");
		return;
	}
	if (svc_health(req->srv)) {
		metrics.health_success++;
		http1_respond_go(req, 200, "text/plain; charset=utf-8", true, NULL, ok, sizeof(ok) - 1);
		return;
	}
	metrics.health_failures++;
	/* The reason is plain ASCII without quotes or backslashes. */
	if (node_storage_reason(&req->srv->node, why, sizeof(why)))
		snprintf(body, sizeof(body), "{\"health\":\"false\",\"reason\":\"%s\"}", why);
	else
		snprintf(body, sizeof(body), "{\"health\":\"false\"}");
	http1_error(req, 503, body, NULL);
}

/* promhttp answers every method, uncompressed unless asked: we never
 * compress, which Prometheus accepts. */
static void http1_metrics(struct http1_req *req)
{
	char *text;
	size_t len;

	if (metrics_render(req->srv, &text, &len)) {
		http1_error(req, 500, "out of memory", NULL);
		return;
	}
	http1_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
	free(text);
}

static void http1_version(struct http1_req *req)
{
	static const char body[] =
		"{\"etcdserver\":\"" RAFTKV_ETCD_VERSION "\",\"etcdcluster\":\"" RAFTKV_ETCD_CLUSTER_VERSION "\"}";

	if (!http1_method_is(req, "GET")) {
		http1_error(req, 405, "Method Not Allowed", "Allow: GET\r\n");
		return;
	}
	http1_respond(req, 200, "application/json", NULL, body, sizeof(body) - 1);
}

static void http1_dispatch(struct http1_req *req)
{
	size_t i;

	/* etcd's CORS wrapper answers every preflight itself. */
	if (http1_method_is(req, "OPTIONS")) {
		http1_respond(req, 200, NULL, NULL, "", 0);
		return;
	}
	for (i = 0; i < sizeof(http1_routes) / sizeof(http1_routes[0]); i++) {
		const struct http1_route *r = &http1_routes[i];
		size_t n = strlen(r->path);
		if (r->prefix ? (req->path_len >= n && memcmp(req->path, r->path, n) == 0)
			      : http1_path_is(req, r->path)) {
			r->fn(req);
			return;
		}
	}
	http1_not_found(req);
}

/* --- parsing ------------------------------------------------------------- */

static bool http1_is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Finds the end of the header block: returns its size (through the blank
 * line) or 0 when it has not arrived. */
static size_t http1_header_end(struct http1_conn *hc)
{
	size_t i = hc->scan;

	for (; i < hc->len; i++) {
		if (hc->buf[i] != '\n')
			continue;
		if (i >= 1 && hc->buf[i - 1] == '\n')
			return i + 1;
		if (i >= 2 && hc->buf[i - 1] == '\r' && hc->buf[i - 2] == '\n')
			return i + 1;
	}
	hc->scan = i;
	return 0;
}

/* Next line in [p, end): returns its length without CR LF, sets *next. */
static size_t http1_line(const char *p, const char *end, const char **next)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	size_t len;

	if (!nl) {
		*next = end;
		return (size_t)(end - p);
	}
	*next = nl + 1;
	len = (size_t)(nl - p);
	if (len > 0 && p[len - 1] == '\r')
		len--;
	return len;
}

static int http1_parse_request_line(struct http1_req *req, const char *p, size_t len)
{
	const char *sp1, *sp2, *target, *end = p + len, *q;
	size_t tlen;

	sp1 = memchr(p, ' ', len);
	if (!sp1 || sp1 == p)
		return 400;
	for (q = p; q < sp1; q++)
		if (!http1_is_tchar((unsigned char)*q))
			return 400;
	target = sp1 + 1;
	sp2 = memchr(target, ' ', (size_t)(end - target));
	if (!sp2 || sp2 == target)
		return 400;
	tlen = (size_t)(sp2 - target);
	for (q = target; q < sp2; q++)
		if ((unsigned char)*q <= 0x20 || *q == 0x7f)
			return 400;
	if ((size_t)(end - sp2 - 1) != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0 || sp2[7] != '.' ||
	    sp2[6] < '0' || sp2[6] > '9' || sp2[8] < '0' || sp2[8] > '9')
		return 400;
	if (sp2[6] != '1')
		return 505;
	req->minor = (uint8_t)(sp2[8] - '0');
	req->method = p;
	req->method_len = (uint32_t)(sp1 - p);
	/* absolute-form (a proxy's "GET http://host/path"): keep the path */
	if (tlen > 7 && strncasecmp(target, "http://", 7) == 0) {
		const char *slash = memchr(target + 7, '/', tlen - 7);
		if (!slash) {
			target = "/";
			tlen = 1;
		} else {
			tlen -= (size_t)(slash - target);
			target = slash;
		}
	} else if (target[0] != '/' && !(tlen == 1 && target[0] == '*')) {
		return 400;
	}
	q = memchr(target, '?', tlen);
	req->path = target;
	req->path_len = (uint32_t)(q ? (size_t)(q - target) : tlen);
	req->query = q ? q + 1 : "";
	req->query_len = q ? (uint32_t)(tlen - (size_t)(q - target) - 1) : 0;
	return 0;
}

/* Parses the header block [buf, buf + hlen) into req.  Returns 0, or the
 * HTTP status to fail with; *content_length is -1 when absent (and when
 * the body is chunked, *chunked, as Go ignores Content-Length then). */
static int http1_parse_head(struct http1_req *req, const char *buf, size_t hlen, long long *content_length,
			    bool *chunked, const char **detail)
{
	const char *p = buf, *end = buf + hlen, *next, *colon, *v, *ve;
	size_t len, i;
	int rv;

	*content_length = -1;
	*chunked = false;
	*detail = NULL;
	len = http1_line(p, end, &next);
	rv = http1_parse_request_line(req, p, len);
	if (rv)
		return rv;
	req->keep_alive = req->minor >= 1;
	for (p = next; p < end; p = next) {
		struct http1_field *f;
		len = http1_line(p, end, &next);
		if (len == 0)
			break; /* the blank line */
		if (p[0] == ' ' || p[0] == '\t')
			return 400; /* obsolete line folding */
		colon = memchr(p, ':', len);
		if (!colon || colon == p)
			return 400;
		for (v = p; v < colon; v++)
			if (!http1_is_tchar((unsigned char)*v))
				return 400;
		v = colon + 1;
		ve = p + len;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (i = 0; i < (size_t)(ve - v); i++)
			if ((unsigned char)v[i] < 0x20 && v[i] != '\t')
				return 400;
		if (req->n_fields == HTTP1_MAX_HEADERS)
			return 431;
		f = &req->fields[req->n_fields++];
		f->name = p;
		f->name_len = (uint32_t)(colon - p);
		f->value = v;
		f->value_len = (uint32_t)(ve - v);
		if (f->name_len == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			long long n = 0;
			if (f->value_len == 0 || f->value_len > 18)
				return 400;
			for (i = 0; i < f->value_len; i++) {
				if (v[i] < '0' || v[i] > '9')
					return 400;
				n = n * 10 + (v[i] - '0');
			}
			if (*content_length >= 0 && *content_length != n)
				return 400;
			*content_length = n;
		} else if (f->name_len == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
			/* Go reads Transfer-Encoding from HTTP/1.1 on only */
			if (req->minor == 0)
				continue;
			if (f->value_len == 7 && strncasecmp(v, "chunked", 7) == 0)
				*chunked = true;
			else if (!(f->value_len == 8 && strncasecmp(v, "identity", 8) == 0))
				return 501;
		} else if (f->name_len == 10 && strncasecmp(p, "Connection", 10) == 0) {
			if (http1_list_has(v, f->value_len, "close"))
				req->keep_alive = false;
			else if (http1_list_has(v, f->value_len, "keep-alive"))
				req->keep_alive = true;
		}
	}
	if (req->minor >= 1 && !http1_header(req, "Host", NULL)) {
		*detail = "missing required Host header";
		return 400;
	}
	if (*chunked)
		*content_length = -1;
	return 0;
}

/* A chunk-size line without its '\n', as Go 1.19's chunked reader takes
 * it: trailing whitespace trimmed, an extension after ';' dropped, then up
 * to 16 hex digits (none reads as 0).  Returns NULL, or Go's error text. */
static const char *http1_chunk_size(const char *p, size_t len, uint64_t *n)
{
	const char *semi;
	size_t i;

	while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r' || p[len - 1] == '\n'))
		len--;
	semi = memchr(p, ';', len);
	if (semi)
		len = (size_t)(semi - p);
	*n = 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return "invalid byte in chunk length";
		if (i == 16)
			return "http chunk length too large";
		*n = *n << 4 | d;
	}
	return NULL;
}

/* A trailer line as Go 1.19.8's textproto.ReadMIMEHeader checks it;
 * false with Go's error text in err. */
static bool http1_trailer_ok(const char *p, size_t len, bool first, char *err, size_t size)
{
	size_t i, w;

	if (first && (p[0] == ' ' || p[0] == '\t')) {
		snprintf(err, size, "malformed MIME header initial line: %.*s", (int)len, p);
		return false;
	}
	if (p[0] == ' ' || p[0] == '\t')
		return true; /* a continuation */
	if (!memchr(p, ':', len)) {
		/* strconv.Quote, near enough */
		w = (size_t)snprintf(err, size, "malformed MIME header: missing colon: \"");
		for (i = 0; i < len && w + 6 < size; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c == '"' || c == '\\')
				w += (size_t)snprintf(err + w, size - w, "\\%c", c);
			else if (c < 0x20 || c >= 0x7f)
				w += (size_t)snprintf(err + w, size - w, "\\x%02x", c);
			else
				err[w++] = (char)c;
		}
		snprintf(err + w, size - w, "\"");
		return false;
	}
	return true; /* Go lets any key through in trailers */
}

/* The chunked body that starts at hc->buf[start]: 1 once the last chunk
 * and the trailers are in (*raw_len bytes in all, *body_len of data), 0
 * while more must come, 413 when the data exceed max_body.  A malformed
 * body is 1 too, with Go's read error in err, *raw_len all there is and
 * *body_len the data Go's reader returned before failing.  Progress is
 * kept in hc, so a big body is scanned once. */
static int http1_chunked_scan(struct http1_conn *hc, size_t start, size_t *raw_len, size_t *body_len,
			      char *err, size_t err_size)
{
	size_t off = hc->chunk_off ? hc->chunk_off : start, body = hc->chunk_body;
	const char *end = hc->buf + hc->len, *e;

	err[0] = '\0';
	for (;;) {
		const char *p = hc->buf + off, *nl, *data;
		uint64_t n;

		/* Go's maxLineLength counts the '\n' */
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl ? nl - p >= 4095 : end - p >= 4096)
			e = "header line too long";
		else if (!nl)
			return 0;
		else
			e = http1_chunk_size(p, (size_t)(nl - p), &n);
		if (e) {
			snprintf(err, err_size, "%s", e);
			goto broken;
		}
		data = nl + 1;
		if (n == 0) {
			/* trailers (checked, not kept), then a blank line */
			const char *t = data, *tn;
			size_t tl;
			bool first = true;
			for (;;) {
				tn = memchr(t, '\n', (size_t)(end - t));
				if (!tn)
					return end - data > HTTP1_MAX_HEADER_BYTES ? 431 : 0;
				tl = (size_t)(tn - t);
				if (tl > 0 && t[tl - 1] == '\r')
					tl--;
				if (tl == 0) {
					t = tn + 1;
					break;
				}
				if (!err[0] && !http1_trailer_ok(t, tl, first, err, err_size)) {
					/* Go stops reading here, yet the
					 * connection closes anyway */
					t = end;
					break;
				}
				first = false;
				t = tn + 1;
			}
			*raw_len = (size_t)(t - (hc->buf + start));
			*body_len = body;
			return 1;
		}
		if (n > hc->max_body - body)
			return 413;
		if ((size_t)(end - data) < n + 2)
			return 0;
		if (data[n] != '\r' || data[n + 1] != '\n') {
			/* the chunk's data was read before its end was not */
			snprintf(err, err_size, "malformed chunked encoding");
			body += n;
			goto broken;
		}
		body += n;
		off = (size_t)(data + n + 2 - hc->buf);
		hc->chunk_off = off;
		hc->chunk_body = body;
	}
broken:
	*raw_len = hc->len - start;
	*body_len = body;
	return 1;
}

/* Moves the data of the chunked body at hc->buf[start] (checked by
 * http1_chunked_scan) together, in place, from hc->buf[start] on. */
static void http1_chunked_join(struct http1_conn *hc, size_t start, size_t body_len)
{
	char *buf = hc->buf;
	size_t r = start, w = start;
	uint64_t n = 0;

	while (w - start < body_len) {
		const char *nl = memchr(buf + r, '\n', hc->len - r);
		if (!nl || http1_chunk_size(buf + r, (size_t)(nl - (buf + r)), &n))
			return; /* cannot be: scanned already */
		if (n > body_len - (w - start))
			return;
		r = (size_t)(nl + 1 - buf);
		memmove(buf + w, buf + r, (size_t)n);
		w += (size_t)n;
		r += (size_t)n + 2;
	}
}

/* Body still on its way: curl waits for "100 Continue" before sending a
 * large one. */
static void http1_continue(struct http1_conn *hc, const struct http1_req *req)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	size_t ev_len;
	const char *ev = http1_header(req, "Expect", &ev_len);

	if (ev && !hc->continue_sent && ev_len == 12 && strncasecmp(ev, "100-continue", 12) == 0) {
		conn_out(hc->conn, cont, sizeof(cont) - 1);
		conn_want_flush(hc->conn);
		hc->continue_sent = true;
	}
}

/* Drops the bytes of the request just answered. */
static void http1_consume(struct http1_conn *hc, size_t n)
{
	memmove(hc->buf, hc->buf + n, hc->len - n);
	hc->len -= n;
	hc->scan = 0;
	hc->continue_sent = false;
	hc->chunk_off = 0;
	hc->chunk_body = 0;
	hc->want = 0;
	/* the next request's clock starts now (pipelined) or at its first byte */
	hc->t_req = uv_now(hc->conn->srv->loop);
	if (hc->len == 0) {
		/* thousands of idle keep-alive connections cost no buffers */
		free(hc->buf);
		hc->buf = NULL;
		hc->cap = 0;
		conn_in_refund(hc->conn, hc->charged);
		hc->charged = 0;
	}
}

/* Kept as a size: the buffer may move while a response streams. */
static size_t http1_req_size(const struct http1_req *req, const struct http1_conn *hc)
{
	return req->size;
}

/* The current request is answered: drop it and go on with the next. */
static void http1_req_done(struct http1_conn *hc, struct http1_req *req)
{
	http1_consume(hc, http1_req_size(req, hc));
	hc->req = NULL;
	req->hc = NULL;
	http1_req_release(req);
	conn_resume(hc->conn, CONN_PAUSE_PROTO);
	http1_process(hc);
	conn_want_flush(hc->conn);
}

/* Parses and answers the complete requests in the buffer, one at a time. */
static void http1_process(struct http1_conn *hc)
{
	struct http1_req *req;
	const char *detail;
	long long clen;
	size_t hlen, raw_len = 0, body_len = 0;
	bool chunked;
	int status;

	while (!hc->req && !hc->closing && hc->len > 0) {
		hlen = http1_header_end(hc);
		if (hlen == 0) {
			if (hc->len > HTTP1_MAX_HEADER_BYTES)
				http1_fail(hc, 431, NULL);
			return;
		}
		if (hlen > HTTP1_MAX_HEADER_BYTES) {
			http1_fail(hc, 431, NULL);
			return;
		}
		req = malloc(sizeof(*req));
		if (!req) {
			http1_fail(hc, 500, NULL);
			return;
		}
		memset(req, 0, offsetof(struct http1_req, fields));
		status = http1_parse_head(req, hc->buf, hlen, &clen, &chunked, &detail);
		if (status == 0 && clen > (long long)hc->max_body)
			status = 413;
		if (status == 0 && chunked) {
			status = http1_chunked_scan(hc, hlen, &raw_len, &body_len, req->body_err,
						    sizeof(req->body_err));
			if (status == 1) {
				status = 0;
				http1_chunked_join(hc, hlen, body_len);
				/* Go gives up on a connection whose body it
				 * could not read to the end */
				if (req->body_err[0])
					hc->closing = true;
			} else if (status == 0) {
				http1_continue(hc, req);
				free(req);
				return;
			}
		} else if (status == 0) {
			body_len = clen > 0 ? (size_t)clen : 0;
			raw_len = body_len;
			hc->want = hlen + body_len;
			if (hc->len < hlen + body_len) {
				http1_continue(hc, req);
				free(req);
				return;
			}
		}
		if (status) {
			free(req);
			http1_fail(hc, status, detail);
			return;
		}
		req->hc = hc;
		req->srv = hc->conn->srv;
		req->refs = 1; /* the connection's, until answered */
		req->body = (const uint8_t *)hc->buf + hlen;
		req->body_len = body_len;
		req->size = hlen + raw_len;
		hc->req = req;
		hc->in_dispatch = true;
		http1_dispatch(req);
		hc->in_dispatch = false;
		if (!req->responded) {
			if (!req->streaming)
				conn_pause(hc->conn, CONN_PAUSE_PROTO);
			return;
		}
		http1_consume(hc, http1_req_size(req, hc));
		hc->req = NULL;
		req->hc = NULL;
		http1_req_release(req);
	}
}

/* --- conn_proto ------------------------------------------------------- */

static int http1_start(struct conn *c)
{
	struct http1_conn *hc = calloc(1, sizeof(*hc));
	size_t max_req = c->srv->cfg && c->srv->cfg->max_request_bytes ? c->srv->cfg->max_request_bytes
								       : HTTP1_DEFAULT_MAX_REQUEST;

	if (!hc)
		return -KV_ENOMEM;
	hc->conn = c;
	/* The gateway's JSON spells bytes in base64 (4/3 of the protobuf
	 * size) around field names: a body whose message the gRPC side would
	 * take (max-request-bytes + the gRPC overhead) must get in, for the
	 * service, not the transport, to refuse it as etcd does. */
	hc->max_body = 2 * (max_req + HTTP1_BODY_EXTRA);
	c->proto_data = hc;
	return 0;
}

static int http1_recv(struct conn *c, const uint8_t *buf, size_t len)
{
	struct http1_conn *hc = c->proto_data;
	size_t need;

	if (len == 0 && hc->req && hc->req->streaming) {
		/* Go cancels the request when its client leaves */
		http1_req_abandon(hc);
		return 0;
	}
	if (len == 0 || hc->closing)
		return 0; /* EOF: answer what is complete, then close (done) */
	need = hc->len + len;
	if (need > HTTP1_MAX_HEADER_BYTES + hc->max_body + 64 * 1024) {
		if (hc->req && hc->req->streaming) {
			/* no 413 in the middle of a streamed body: Go reads
			 * nothing more until the handler returns; we end it */
			http1_req_abandon(hc);
			return 0;
		}
		http1_fail(hc, 413, NULL);
		return 0;
	}
	if (hc->len == 0)
		hc->t_req = uv_now(c->srv->loop);
	if (need > hc->cap) {
		size_t cap = hc->cap ? hc->cap : 4096, charge;
		char *nb;
		while (cap < need)
			cap *= 2;
		/* big bodies count against the listener's budget */
		charge = (cap > LISTENER_IN_SMALL ? cap - LISTENER_IN_SMALL : 0) - hc->charged;
		if (charge && conn_in_charge(c, charge)) {
			http1_fail(hc, 503, NULL);
			return 0;
		}
		nb = realloc(hc->buf, cap);
		if (!nb) {
			conn_in_refund(c, charge);
			return -KV_ENOMEM;
		}
		hc->charged += charge;
		hc->buf = nb;
		hc->cap = cap;
	}
	memcpy(hc->buf + hc->len, buf, len);
	hc->len += len;
	if (!hc->req)
		http1_process(hc);
	return 0;
}

static int http1_flush(struct conn *c)
{
	return 0; /* responses go to conn_out() as they are made */
}

static bool http1_done(struct conn *c)
{
	struct http1_conn *hc = c->proto_data;
	return !hc->req && (hc->closing || c->peer_eof);
}

static void http1_shutdown(struct conn *c)
{
	struct http1_conn *hc = c->proto_data;
	/* An idle connection closes now; a busy one after its answer. */
	hc->closing = true;
}

/* Slowloris: a request that comes slower than HTTP1_MIN_RATE (after the
 * first HTTP1_READ_MS) is refused; its buffer is freed with the connection. */
static int http1_tick(struct conn *c, uint64_t now)
{
	struct http1_conn *hc = c->proto_data;
	size_t n = hc->want > hc->len ? hc->want : hc->len;

	if (hc->req || hc->closing || hc->len == 0)
		return 0;
	if (now - hc->t_req >= HTTP1_READ_MS + (uint64_t)n * 1000 / HTTP1_MIN_RATE)
		http1_fail(hc, 408, NULL);
	return 0;
}

static void http1_free(struct conn *c)
{
	struct http1_conn *hc = c->proto_data;
	if (hc->req)
		http1_req_abandon(hc);
	free(hc->buf);
	conn_in_refund(c, hc->charged);
	free(hc);
	c->proto_data = NULL;
}

const struct conn_proto http1_proto = {
	.name = "http1",
	.start = http1_start,
	.recv = http1_recv,
	.flush = http1_flush,
	.done = http1_done,
	.shutdown = http1_shutdown,
	.free = http1_free,
	.tick = http1_tick,
};
