/*
 * listener: the client port.  Opens every --listen-client-urls address,
 * accepts TCP connections and sniffs each one's first bytes: the HTTP/2
 * client preface means gRPC (grpc.c, h2c with prior knowledge), anything
 * else is HTTP/1.1 (http1.c: /health, /version, later /metrics and the JSON
 * gateway), as etcd serves both on one port.
 *
 * The listener owns the sockets and all buffering: one shared read buffer
 * (every read is consumed before the callback returns), and per connection a
 * chain of write buffers.  Protocol modules append their output with
 * conn_out() and ask for a flush with conn_want_flush(); flushes run once per
 * loop iteration, just before the loop polls, so every response produced in
 * one iteration leaves in one write per connection.  A connection whose
 * unwritten output grows past a high-water mark stops being read (and stops
 * producing HTTP/2 output) until its writes drain.  A connection is read at
 * most once (one buffer) per loop turn, so a client flooding frames gets
 * its turn like every other and no more.
 *
 * Deadlines (checked by one listener timer, once a second): a connection
 * must tell its protocol (the preface, or a first byte that is not the
 * preface) within LISTENER_HANDSHAKE_MS of being accepted, and a closing
 * connection must get its last output taken within LISTENER_CLOSE_MS, or it
 * is closed at once.  The protocols' own timeouts run from the same timer
 * (conn_proto.tick).
 *
 * File descriptors: listener_new raises the soft RLIMIT_NOFILE to the hard
 * one, as Go's runtime does for etcd, and the listener keeps the last
 * sixteenth of it (at least LISTENER_FD_RESERVE) for raft, peers and files:
 * a connection accepted above that is closed at once, so thousands of idle
 * clients cannot make a snapshot or a new log segment fail with EMFILE.
 *
 * Requests not complete yet: the buffers that gRPC messages and HTTP/1
 * bodies larger than LISTENER_IN_SMALL fill while they arrive are charged
 * to one budget for the whole listener, max(LISTENER_IN_MIN, 64 requests of
 * the largest size); a request that does not fit is refused.  So clients
 * that start big requests and never finish them (each protocol also
 * bounds how slowly one may arrive) hold a bounded amount of memory
 * together, however many connections they use.
 */
#ifndef RAFTKV_LISTENER_H
#define RAFTKV_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

struct server;
struct listener;
struct conn;

/* Opens and starts listening on every client URL of srv->cfg.  Host names
 * are resolved synchronously, so call this before the loop runs.  Only
 * http:// is served: https:// (TLS) fails with a clear message.  Returns 0,
 * or -KV_EINVAL (bad or unsupported URL) / -KV_EIO (bind/listen failed) /
 * -KV_ENOMEM, after logging why. */
int listener_new(struct server *srv, struct listener **out);

/* Shutdown, step 1: stops accepting, sends GOAWAY on HTTP/2 connections
 * (calls in flight may finish) and closes idle HTTP/1 connections. */
void listener_stop(struct listener *l);

/* Shutdown, step 2: closes every connection at once (calls still in flight
 * become gone, see rpc.h) and frees the listener.  done(arg) runs on the loop
 * once all of the listener's handles are closed; l is invalid after that. */
void listener_free(struct listener *l, void (*done)(void *arg), void *arg);

/* Number of open client connections (for metrics and tests). */
size_t listener_conn_count(const struct listener *l);

/* --- for the protocol modules (grpc.c, http1.c) ---------------------- */

/* What a protocol module plugs into a connection.  All hooks run on the loop
 * and never from inside another hook of the same connection. */
struct conn_proto {
	const char *name;
	/* Creates c->proto_data.  Returns 0 or -KV_ENOMEM. */
	int (*start)(struct conn *c);
	/* Bytes received (len 0: the peer sent EOF).  Returns 0, or a
	 * negative code to close the connection at once. */
	int (*recv)(struct conn *c, const uint8_t *buf, size_t len);
	/* Moves pending output into conn_out(), stopping early when
	 * conn_out_full().  Returns 0 when all went, 1 when it stopped early
	 * (flush is called again once the socket drains), or a negative code
	 * to close at once. */
	int (*flush)(struct conn *c);
	/* True when the protocol is finished with the connection: the
	 * listener then closes it once the queued output is written. */
	bool (*done)(struct conn *c);
	/* listener_stop(): say goodbye (GOAWAY, Connection: close). */
	void (*shutdown)(struct conn *c);
	/* The connection is closing: release everything in proto_data. */
	void (*free)(struct conn *c);
	/* Optional, once every LISTENER_TICK_MS with the loop's time (ms):
	 * the protocol's timeouts.  Returns 0, or a negative code to close
	 * at once. */
	int (*tick)(struct conn *c, uint64_t now);
};

#define LISTENER_TICK_MS 1000
#define LISTENER_HANDSHAKE_MS 10000
#define LISTENER_CLOSE_MS 10000
#define LISTENER_FD_RESERVE 64
#define LISTENER_IN_SMALL (64 * 1024)
#define LISTENER_IN_MIN (256u << 20)

struct conn_wbuf;

struct conn {
	uv_tcp_t tcp;
	struct listener *lis;
	struct server *srv;
	const struct conn_proto *proto; /* NULL while sniffing */
	void *proto_data;
	LIST_ENTRY(conn) link;           /* listener's connections */
	TAILQ_ENTRY(conn) dirty_link;    /* listener's flush queue */
	TAILQ_ENTRY(conn) turn_link;     /* listener's paused-for-this-turn list */
	struct conn_wbuf *wb;            /* output not yet handed to uv_write */
	uint64_t t_open;                 /* accepted, loop time in ms */
	uint8_t pause;                   /* CONN_PAUSE_* bits; reading iff 0 */
	bool dirty;
	bool closing;                    /* shutdown/close under way */
	bool peer_eof;
	uint8_t sniff_len;
	uint8_t sniff[24];               /* preface bytes seen so far */
};

enum {
	CONN_PAUSE_OUTPUT = 1, /* too much unwritten output */
	CONN_PAUSE_PROTO = 2,  /* protocol busy (HTTP/1 request in progress) */
	CONN_PAUSE_TURN = 4,   /* listener: read its share of this loop turn */
};

/* Appends n bytes to the connection's output (copied).  Returns 0 or
 * -KV_ENOMEM. */
int conn_out(struct conn *c, const void *p, size_t n);
/* True when the unwritten output is above the high-water mark. */
bool conn_out_full(const struct conn *c);
/* Schedules flush() for this iteration (coalesces repeated calls). */
void conn_want_flush(struct conn *c);
/* Protocol-driven read pausing (CONN_PAUSE_PROTO). */
void conn_pause(struct conn *c, uint8_t why);
void conn_resume(struct conn *c, uint8_t why);
/* The listener is stopping (protocols stop accepting new requests). */
bool conn_stopping(const struct conn *c);
/* Charges n bytes of a request still arriving to the listener's budget:
 * 0, or -KV_ETOOMANYREQUESTS when it is spent.  conn_in_refund gives them
 * back once the buffer is freed or the request complete. */
int conn_in_charge(struct conn *c, size_t n);
void conn_in_refund(struct conn *c, size_t n);

#endif
