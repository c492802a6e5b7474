/*
 * http1: a small, strict HTTP/1.1 server for the client port's non-gRPC
 * side: /health, /version and the JSON gateway (/v3/..., gw.c) now,
 * /metrics later, each one row of the route table in http1.c.  Responses match
 * etcd 3.4 (Go net/http) byte for byte where clients could care: status,
 * Content-Type, body, the CORS headers etcd adds, Go's 404 and 405 texts.
 *
 * Bounds: 64 KiB of request line and headers, 100 header fields, bodies
 * (Content-Length or chunked, read whole before the handler runs) up to
 * twice (--max-request-bytes + 512 KiB), room for the gateway's base64.
 * One request at a time per connection: pipelined requests wait in the
 * buffer, and reading pauses while a handler answers asynchronously (a
 * streamed answer reads on, to notice the client leaving).
 *
 * Timeouts (etcd's Go server has none; these stop slowloris): a request
 * must arrive whole within HTTP1_READ_MS of its first byte plus one second
 * per HTTP1_MIN_RATE bytes of it (its Content-Length once the head is in),
 * else 408 and close.  A connection between requests has no timeout and
 * keeps no buffer.  Buffers above LISTENER_IN_SMALL are charged to the
 * listener's budget for requests still arriving (over it: 503 and close).
 */
#ifndef RAFTKV_HTTP1_H
#define RAFTKV_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/listener.h"

#define HTTP1_MAX_HEADER_BYTES (64 * 1024)
#define HTTP1_MAX_HEADERS 100
#define HTTP1_READ_MS 10000
#define HTTP1_MIN_RATE (64 * 1024)

struct http1_conn;
struct http1_req;

typedef void (*http1_gone_fn)(struct http1_req *req, void *arg);

struct http1_field {
	const char *name;
	const char *value;
	uint32_t name_len;
	uint32_t value_len;
};

/* One request.  The strings point into the connection's buffer and are
 * valid only while the handler runs: a handler that answers later copies
 * what it needs and takes http1_req_hold(). */
struct http1_req {
	struct http1_conn *hc;  /* NULL once the connection is gone */
	struct server *srv;
	const char *method;
	const char *path;       /* without the query */
	const char *query;      /* after '?', "" if none */
	const uint8_t *body;
	size_t body_len;
	char body_err[160];     /* a chunked body broke off: Go's read error
				 * (body holds the data before it), or "" */
	size_t size;            /* request line, headers and body, in bytes */
	uint32_t method_len;
	uint32_t path_len;
	uint32_t query_len;
	uint32_t refs;
	uint8_t minor;          /* HTTP/1.<minor> */
	bool keep_alive;
	bool responded;
	bool streaming;         /* http1_stream_begin() sent the head */
	http1_gone_fn gone_fn;  /* see http1_req_on_gone() */
	void *gone_arg;
	uint32_t n_fields;
	struct http1_field fields[HTTP1_MAX_HEADERS];
};

typedef void (*http1_handler_fn)(struct http1_req *req);

struct http1_route {
	const char *path;
	bool prefix;            /* matches every path starting with path */
	http1_handler_fn fn;
};

extern const struct conn_proto http1_proto;

bool http1_method_is(const struct http1_req *req, const char *method);
bool http1_path_is(const struct http1_req *req, const char *path);
/* Case-insensitive lookup; the value is not NUL-terminated. */
const char *http1_header(const struct http1_req *req, const char *name, size_t *len);

/* Sends a complete response (Content-Length framing).  content_type may be
 * NULL; extra_headers is NULL or "Name: value\r\n" lines.  The body is
 * copied.  Returns 0, -KV_ECANCELED (connection gone, or already answered)
 * or -KV_ENOMEM. */
int http1_respond(struct http1_req *req, int status, const char *content_type, const char *extra_headers,
		  const void *body, size_t len);
/* Go's http.Error: text/plain, nosniff, body text + "\n".  extra_headers
 * (e.g. "Allow: GET\r\n") go before Content-Type, as Go sorts them. */
int http1_error(struct http1_req *req, int status, const char *text, const char *extra_headers);

/* A streamed response (Go's chunked replies): the head goes out now with
 * "Transfer-Encoding: chunked"; each write is one chunk; end sends the last
 * chunk, then trailers ("Name: value\r\n" lines, or NULL).  headers are
 * sorted "Name: value\r\n" lines, as for http1_respond.  HTTP/1.0 clients
 * get the bare body and the connection closes after it.  While a response
 * streams, the connection is read again so that the client closing it is
 * noticed (see http1_req_on_gone).  Return 0, -KV_ECANCELED or -KV_ENOMEM. */
int http1_stream_begin(struct http1_req *req, int status, const char *headers);
int http1_stream_write(struct http1_req *req, const void *p, size_t len);
int http1_stream_end(struct http1_req *req, const char *trailers);

void http1_req_hold(struct http1_req *req);
void http1_req_release(struct http1_req *req);
bool http1_req_gone(const struct http1_req *req);
/* fn(req, arg) runs once if the connection goes away (closed, or the client
 * closed it during a streamed response) before req is answered; req->hc is
 * NULL by then.  A handler answering asynchronously uses it to stop its
 * work. */
void http1_req_on_gone(struct http1_req *req, http1_gone_fn fn, void *arg);

#endif
