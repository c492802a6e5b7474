/*
 * bench: what the files of raftkv-benchmark share.  The tool is etcd's
 * tools/benchmark (v3.4) in C, built on the one client library: one libuv
 * loop, --conns kvc clients (one HTTP/2 connection each, to one endpoint
 * each, as etcd's tool dials one gRPC connection per --conns), and
 * --clients request slots multiplexed over them (slot i on connection
 * i mod conns), each with one call in flight at a time.
 *
 *   main.c          global flags, the subcommand table, exit status
 *   flags.c         table-driven --flag parsing (ints, strings, durations)
 *   conns.c         the connections: --target-leader, dialling, warm-up
 *   keys.c          etcd's key encoding, random bytes, request templates
 *   rate.c          the --rate token bucket
 *   report.c        latencies → etcd's summary text and the --json file
 *   progress.c      the progress bar (only when stdout is a terminal)
 *   unary.c         the closed loop of unary calls (put, range, txn-put)
 *   watchers.c      the Watch streams of watch and watch-latency
 *   pbscan.c        top-level protobuf fields of streamed responses
 *   cmd_*.c         one subcommand each
 *
 * Cost per request is kept small so that the figures are the server's:
 * requests are encoded once into a template and only the key bytes are
 * rewritten per request, responses of unary calls are not decoded (the
 * gRPC status says whether they succeeded), streamed responses are
 * scanned, not unpacked, and timestamps come from uv_hrtime().
 */
#ifndef RAFTKV_BENCH_H
#define RAFTKV_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "client/kvc.h"

#define BENCH_EXIT_OK 0    /* every request succeeded */
#define BENCH_EXIT_FAIL 1  /* some requests failed, or the run could not be set up */
#define BENCH_EXIT_USAGE 2 /* command-line syntax */

/* --- flags.c --------------------------------------------------------------- */

enum flag_type {
	FLAG_BOOL,     /* bool *; --x, --x=true|false */
	FLAG_INT,      /* int64_t *, within [min, max] */
	FLAG_STRING,   /* const char ** (points into argv) */
	FLAG_DURATION, /* uint64_t * milliseconds; Go syntax: 500ms, 2s, 1m30s */
};

struct flag {
	const char *name; /* without the leading "--" */
	enum flag_type type;
	void *ptr;
	int64_t min, max; /* FLAG_INT */
	const char *help;
};

/* Consumes argv[*i] (and the next word for "--name value"), a flag of one
 * of the NULL-name-terminated tables.  Returns 0, or -1 with err set. */
int flags_parse_one(const struct flag *const *tables, size_t n_tables, int argc, char **argv,
		    int *i, char *err, size_t errlen);
void flags_usage(FILE *f, const struct flag *table);

/* --- the run ------------------------------------------------------------------ */

struct bench {
	uv_loop_t *loop;
	/* global flags */
	const char *endpoints;
	int64_t conns;
	int64_t clients;
	bool target_leader;
	bool precise;            /* full precision in the summary ("%g") */
	bool sample;             /* per-second samples in the summary */
	uint64_t dial_timeout_ms;
	const char *json_path;
	/* conns.c */
	struct kvc_client **kc;
	size_t n_kc;
	char **kc_ep;            /* the endpoint of each */
	bool tty;                /* stdout is a terminal: progress bar */
};

struct bench_cmd {
	const char *name;
	const char *args;        /* positional arguments, for the usage text */
	const char *summary;
	int min_args, max_args;
	const struct flag *flags;
	/* Runs the workload; returns a BENCH_EXIT_* status. */
	int (*run)(struct bench *b, int argc, char **argv);
};

extern const struct bench_cmd bench_cmd_put, bench_cmd_range, bench_cmd_txn_put, bench_cmd_watch,
	bench_cmd_watch_latency, bench_cmd_lease_keepalive;

/* Prints "raftkv-benchmark: ..." to stderr. */
void bench_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- conns.c --------------------------------------------------------------------- */

/* Creates the --conns clients (each on one endpoint, round-robin, or all on
 * the leader's with --target-leader) and opens every connection with one
 * Status call, so that dialling is not part of any measurement.
 * Returns 0, or -1 after printing why. */
int bench_conns_open(struct bench *b);
/* One more connection of its own to the first connection's endpoint (as
 * etcd's watch-latency puts on a connection of their own).
 * Returns 0, or -1 after printing why. */
int bench_conn_extra(struct bench *b, struct kvc_client **out);
/* Frees every client; the loop must then run to let them close. */
void bench_conns_close(struct bench *b);
/* The connection of request slot i. */
static inline struct kvc_client *bench_conn(const struct bench *b, size_t i)
{
	return b->kc[i % b->n_kc];
}
/* Runs the loop until *flag becomes true; false if the loop ran out of
 * work first (a bug, reported by the caller). */
bool bench_run_until(struct bench *b, const bool *flag);
/* Closes h and runs the loop until it is closed, so that a handle in a
 * stack frame or a struct about to be freed is really gone. */
void bench_close(struct bench *b, uv_handle_t *h);

/* --- keys.c ------------------------------------------------------------------------ */

/* etcd's benchmark keys: binary.PutVarint(key, n) (zig-zag varint) in a
 * key of key_size bytes, the rest zero. */
size_t key_varint_len(uint64_t n);
/* Returns 0, or -1 if n does not fit in key_size bytes. */
int key_encode(uint8_t *key, size_t key_size, uint64_t n);
/* Checks that every index below space fits; prints the error. */
int key_check_space(size_t key_size, uint64_t space, const char *what);

/* A small fast generator (xorshift64*); not for secrets. */
uint64_t rnd_next(void);
void rnd_bytes(uint8_t *p, size_t n);

/* A packed request whose key bytes sit at known offsets ("slots"), found by
 * packing the message twice with its key buffer all 0x00, then all 0xff. */
struct tmpl {
	uint8_t *enc;
	size_t len;
	size_t *slot;    /* offset of each key, in the order they were packed */
	size_t n_slots;
	size_t key_size;
};

/* msg's key fields all point to keybuf (key_size bytes).
 * Returns 0, or -1 (no memory, or the layout depends on the key). */
int tmpl_build(struct tmpl *t, const ProtobufCMessage *msg, uint8_t *keybuf, size_t key_size);
void tmpl_free(struct tmpl *t);

/* --- rate.c ------------------------------------------------------------------------- */

struct rate_waiter {
	struct rate_waiter *next;
	void (*cb)(struct rate_waiter *w); /* the waiter may go now */
};

/* A token bucket: per_sec tokens a second, holding at most 10 ms worth (at
 * least two), so a slow moment does not turn into a burst; 0: unlimited. */
struct rate {
	uv_timer_t timer;
	uint64_t per_sec;
	double tokens, burst;
	uint64_t last;               /* uv_hrtime() of the last refill */
	struct rate_waiter *head, *tail;
	bool armed, open;
};

void rate_init(struct rate *r, uv_loop_t *loop, uint64_t per_sec);
/* true: go now.  false: w->cb runs from the loop when a token is there. */
bool rate_take(struct rate *r, struct rate_waiter *w);
void rate_close(struct rate *r, struct bench *b);

/* --- report.c ----------------------------------------------------------------------- */

#define REPORT_ERR_KINDS 8

struct report_second {
	uint64_t count, sum_ns, min_ns, max_ns;
};

struct report {
	uint64_t *lat;           /* ns of every successful request */
	size_t n, cap;
	uint64_t errors;
	struct {
		char *msg;
		uint64_t count;
	} errs[REPORT_ERR_KINDS];  /* the first kinds of error, by text */
	size_t n_errs;
	uint64_t t_begin, t_end;   /* uv_hrtime() of the run */
	bool sample;
	int64_t unix_begin;        /* time(NULL) at t_begin */
	struct report_second *sec;
	size_t n_sec;
	bool sorted;
};

void report_init(struct report *r, size_t expected, bool sample);
void report_free(struct report *r);
void report_begin(struct report *r);
void report_end(struct report *r);
void report_ok(struct report *r, uint64_t start_ns, uint64_t end_ns);
void report_error(struct report *r, const char *msg);
void report_errors(struct report *r, const char *msg, uint64_t n);
/* etcd's summary text (and, with errors, its "Error distribution"). */
void report_print(struct report *r, FILE *f, bool precise);
double report_seconds(const struct report *r);
double report_rps(const struct report *r);

/* Writes --json FILE: the report plus extra (may be NULL; a jansson
 * object whose members are added).  Returns 0, or -1 after printing why. */
struct json_t;
int report_json(struct report *r, const struct bench *b, const char *workload,
		struct json_t *extra);
/* The "latency_ms" object of r: min, mean, stddev, p50, p90, p99, p999, max. */
struct json_t *report_latency_json(struct report *r);

/* --- progress.c ---------------------------------------------------------------------- */

struct progress {
	uv_timer_t timer;
	const uint64_t *done;
	uint64_t total;
	bool on;
};

/* A bar of *done / total on stdout every 200 ms, only if b->tty. */
void progress_start(struct progress *p, struct bench *b, const uint64_t *done, uint64_t total);
void progress_stop(struct progress *p, struct bench *b);

/* --- unary.c ----------------------------------------------------------------------------- */

struct unary_spec {
	const struct kvc_method *method;
	uint64_t total;
	uint64_t rate;                 /* per second; 0: unlimited */
	const struct tmpl *tmpl;       /* the request; its slots get keys */
	/* The key index for slot s of request i (NULL when the template has no
	 * slots). */
	uint64_t (*key_index)(void *ud, uint64_t i, size_t s);
	void *ud;
	bool quiet;                    /* no progress bar */
};

/* Runs spec->total calls with b->clients in flight, recording each into r
 * (which it begins and ends).  Returns 0, or -1 if it could not start. */
int unary_run(struct bench *b, const struct unary_spec *spec, struct report *r);

/* --- watchers.c --------------------------------------------------------------------------- */

struct watchers;

/* Opens streams Watch streams (stream i on connection i) of per_stream
 * watchers each; watcher g (0 ..) watches the key key(ud, g) gives.  Runs
 * the loop until every watcher is created, each creation's latency going
 * to create_rep (which it begins and ends).  From then on, on_events (may
 * be NULL) hears of every batch of events as it arrives.  Returns NULL only
 * without memory; check watchers_failed() (the reason was printed). */
struct watchers *watchers_open(struct bench *b, size_t streams, size_t per_stream,
			       const uint8_t *(*key)(void *ud, size_t g, size_t *len),
			       void (*on_events)(void *ud, uint64_t n, uint64_t now), void *ud,
			       struct report *create_rep);
/* A watcher was canceled, a stream ended or could not be opened. */
bool watchers_failed(const struct watchers *ws);
uint64_t watchers_events(const struct watchers *ws);
/* Cancels every stream and frees ws (may be NULL). */
void watchers_close(struct watchers *ws);

/* --- pbscan.c ------------------------------------------------------------------------------ */

/* One top-level field of a protobuf message. */
struct pb_field {
	uint32_t num;
	uint8_t wire;        /* 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
	uint64_t v;          /* varint and fixed values */
	const uint8_t *p;    /* length-delimited bytes */
	size_t len;
};

/* The next field at *pos (before end).  Returns 1 (a field), 0 (the end) or
 * -1 (malformed). */
int pbscan_next(const uint8_t **pos, const uint8_t *end, struct pb_field *f);
/* The number of the field called name in desc (it must exist). */
uint32_t pbscan_field(const ProtobufCMessageDescriptor *desc, const char *name);

#endif
