/*
 * fz: the in-process member behind every fuzz target (see fz.h).
 *
 * Three seams, all outside the server's own code:
 *   raft I/O   raft_uv_init, which node.c calls, is defined here (the
 *              executable's definition wins over libraft.so's): it calls
 *              libraft's own, then replaces every method that would touch
 *              the disk or the network, so node.c runs libraft's real core
 *              on fz_io: log and term in memory, every request completed
 *              from an idle handle on a later loop turn, as libraft's own
 *              I/O completes them;
 *   sockets    conn_out, conn_want_flush, conn_pause... (listener.h's side
 *              for the protocol modules) are defined here over buffers; the
 *              listener itself is not linked;
 *   the loop   fz_drive runs it with UV_RUN_NOWAIT until a few turns in a
 *              row change nothing: no I/O completed, no byte written.
 */
#include "fz.h"

#include <dlfcn.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4frame.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/cmd.h"
#include "server/config.h"
#include "server/forward.h"
#include "server/fsm.h"
#include "server/members.h"
#include "server/mvcc.h"
#include "server/node.h"
#include "server/prop.h"
#include "server/server.h"
#include "server/svc.h"
#include "server/watch.h"
#include "rpc.pb-c.h"

#define FZ_DRIVE_MAX_TURNS 2000
#define FZ_IDLE_TURNS 3
#define FZ_START_TIMEOUT_MS 10000

static void fz_die(const char *what, int rv)
{
	fprintf(stderr, "fz: %s failed (%d)\n", what, rv);
	abort();
}

/* --- the in-memory raft_io ------------------------------------------------ */

enum fz_io_kind { FZ_IO_APPEND, FZ_IO_SNAPSHOT_PUT, FZ_IO_SEND };

struct fz_io_req {
	struct fz_io_req *next;
	enum fz_io_kind kind;
	void *req;
	void *cb;
	int status;
};

static struct {
	uv_loop_t *loop;
	uv_idle_t idle;
	struct fz_io_req *head, *tail;
	raft_term term;
	raft_id vote;
	struct raft_buffer boot; /* bootstrap configuration entry, until load */
	bool bootstrapped;
	uint64_t completed; /* requests completed: progress for fz_drive */
	const char *dump_entries;
} fz_io;

static void fz_io_idle_cb(uv_idle_t *h)
{
	struct fz_io_req *r = fz_io.head, *next;

	/* Requests queued by the callbacks below wait for the next turn. */
	fz_io.head = fz_io.tail = NULL;
	uv_idle_stop(h);
	for (; r; r = next) {
		next = r->next;
		fz_io.completed++;
		switch (r->kind) {
		case FZ_IO_APPEND:
			((raft_io_append_cb)r->cb)(r->req, r->status);
			break;
		case FZ_IO_SNAPSHOT_PUT:
			((raft_io_snapshot_put_cb)r->cb)(r->req, r->status);
			break;
		case FZ_IO_SEND:
			((raft_io_send_cb)r->cb)(r->req, r->status);
			break;
		}
		free(r);
	}
}

static int fz_io_queue(enum fz_io_kind kind, void *req, void *cb, int status)
{
	struct fz_io_req *r = calloc(1, sizeof(*r));
	if (!r)
		return RAFT_NOMEM;
	r->kind = kind;
	r->req = req;
	r->cb = cb;
	r->status = status;
	if (fz_io.tail)
		fz_io.tail->next = r;
	else
		fz_io.head = r;
	fz_io.tail = r;
	uv_idle_start(&fz_io.idle, fz_io_idle_cb);
	return 0;
}

static int fz_io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
		      struct raft_snapshot **snapshot, raft_index *start_index,
		      struct raft_entry *entries[], size_t *n_entries)
{
	(void)io;
	*term = fz_io.term;
	*voted_for = fz_io.vote;
	*snapshot = NULL;
	*start_index = 1;
	*entries = NULL;
	*n_entries = 0;
	if (!fz_io.bootstrapped || !fz_io.boot.base)
		return 0;
	/* libraft frees the array and, through batch, the entry's data. */
	*entries = raft_malloc(sizeof(**entries));
	if (!*entries)
		return RAFT_NOMEM;
	(*entries)[0].term = 1;
	(*entries)[0].type = RAFT_CHANGE;
	(*entries)[0].buf = fz_io.boot;
	(*entries)[0].batch = fz_io.boot.base;
	*n_entries = 1;
	fz_io.boot.base = NULL;
	fz_io.boot.len = 0;
	return 0;
}

static int fz_io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	int rv;
	(void)io;
	if (fz_io.bootstrapped)
		return RAFT_CANTBOOTSTRAP;
	rv = raft_configuration_encode(conf, &fz_io.boot);
	if (rv)
		return rv;
	fz_io.term = 1;
	fz_io.bootstrapped = true;
	return 0;
}

static int fz_io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
	(void)io;
	(void)conf;
	return RAFT_IOERR;
}

static int fz_io_set_term(struct raft_io *io, raft_term term)
{
	(void)io;
	fz_io.term = term;
	fz_io.vote = 0;
	return 0;
}

static int fz_io_set_vote(struct raft_io *io, raft_id id)
{
	(void)io;
	fz_io.vote = id;
	return 0;
}

static int fz_io_send(struct raft_io *io, struct raft_io_send *req,
		      const struct raft_message *message, raft_io_send_cb cb)
{
	(void)io;
	(void)message;
	/* A member added by a fuzzed MemberAdd is never reachable. */
	return fz_io_queue(FZ_IO_SEND, req, (void *)cb, RAFT_NOCONNECTION);
}

static int fz_io_append(struct raft_io *io, struct raft_io_append *req,
			const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	unsigned i;
	(void)io;
	if (fz_io.dump_entries)
		for (i = 0; i < n; i++)
			if (entries[i].type == RAFT_COMMAND)
				fz_dump(fz_io.dump_entries, "entry-", entries[i].buf.base,
					entries[i].buf.len);
	return fz_io_queue(FZ_IO_APPEND, req, (void *)cb, 0);
}

static int fz_io_truncate(struct raft_io *io, raft_index index)
{
	(void)io;
	(void)index;
	return 0;
}

static int fz_io_snapshot_put(struct raft_io *io, unsigned trailing,
			      struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
			      raft_io_snapshot_put_cb cb)
{
	(void)io;
	(void)trailing;
	(void)snapshot; /* never read back: this member never restarts */
	return fz_io_queue(FZ_IO_SNAPSHOT_PUT, req, (void *)cb, 0);
}

static int fz_io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
			      raft_io_snapshot_get_cb cb)
{
	(void)io;
	(void)req;
	(void)cb;
	return RAFT_IOERR; /* only for sending a snapshot to a follower */
}

static raft_time fz_io_time(struct raft_io *io)
{
	(void)io;
	return uv_now(fz_io.loop);
}

static int fz_io_random(struct raft_io *io, int min, int max)
{
	(void)io;
	return max > min ? min + rand() % (max - min) : min;
}

static int fz_transport_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
	(void)t;
	(void)cb;
	return 0;
}

static int fz_transport_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
				raft_id id, const char *address, raft_uv_connect_cb cb)
{
	(void)t;
	(void)req;
	(void)id;
	(void)address;
	(void)cb;
	return RAFT_NOCONNECTION;
}

/* libraft's uv backend, as node.c calls it: libraft's own, so that its
 * init method sets up the loop handles through which libraft completes
 * requests (apply and barrier callbacks run from its uv_check handle), with
 * every method that would touch the disk or the network replaced. */
typedef int (*fz_uv_init_fn)(struct raft_io *, struct uv_loop_s *, const char *,
			     struct raft_uv_transport *);

int raft_uv_init(struct raft_io *io, struct uv_loop_s *loop, const char *dir,
		 struct raft_uv_transport *transport)
{
	fz_uv_init_fn real = (fz_uv_init_fn)dlsym(RTLD_NEXT, "raft_uv_init");
	int rv;

	if (!real)
		return RAFT_IOERR;
	/* The peer port is never opened. */
	transport->listen = fz_transport_listen;
	transport->connect = fz_transport_connect;
	rv = real(io, loop, dir, transport);
	if (rv)
		return rv;
	/* Free disk in MiB as libraft's uv backend reports it: plenty (0
	 * would make every submission RAFT_NOSPACE). */
	io->capacity = UINT16_MAX;
	io->load = fz_io_load;
	io->bootstrap = fz_io_bootstrap;
	io->recover = fz_io_recover;
	io->set_term = fz_io_set_term;
	io->set_vote = fz_io_set_vote;
	io->send = fz_io_send;
	io->append = fz_io_append;
	io->truncate = fz_io_truncate;
	io->snapshot_put = fz_io_snapshot_put;
	io->snapshot_get = fz_io_snapshot_get;
	io->time = fz_io_time;
	io->random = fz_io_random;
	fz_io.loop = loop;
	uv_idle_init(loop, &fz_io.idle);
	return 0;
}

/* --- connections: listener.h's side for the protocol modules ------------ */

struct fz_conn {
	struct conn pub; /* first: the protocol modules see this */
	fz_out_fn on_out;
	void *out_arg;
	bool open;       /* proto started and not yet freed */
	bool want_flush;
	struct fz_conn *next;
};

static struct fz_conn *fz_conns; /* open ones */
static uint64_t fz_out_bytes;    /* progress for fz_drive */

#define FZ_CONN(c) ((struct fz_conn *)(c))

int conn_out(struct conn *c, const void *p, size_t n)
{
	struct fz_conn *fc = FZ_CONN(c);
	fz_out_bytes += n;
	if (fc->on_out && n)
		fc->on_out(fc->out_arg, p, n);
	return 0;
}

bool conn_out_full(const struct conn *c)
{
	(void)c;
	return false; /* the client reads everything at once */
}

void conn_want_flush(struct conn *c)
{
	FZ_CONN(c)->want_flush = true;
}

void conn_pause(struct conn *c, uint8_t why)
{
	c->pause |= why;
}

void conn_resume(struct conn *c, uint8_t why)
{
	c->pause &= (uint8_t)~why;
}

bool conn_stopping(const struct conn *c)
{
	return c->srv->stopping;
}

/* One input at a time: the listener's budget for requests still arriving
 * (listener.c) is never spent here; the protocols' own limits still apply. */
int conn_in_charge(struct conn *c, size_t n)
{
	(void)c;
	(void)n;
	return 0;
}

void conn_in_refund(struct conn *c, size_t n)
{
	(void)c;
	(void)n;
}

/* What the listener's conn_destroy / graceful close do to the protocol. */
static void fz_conn_release(struct fz_conn *fc)
{
	struct fz_conn **pp;
	if (!fc->open)
		return;
	fc->open = false;
	for (pp = &fz_conns; *pp; pp = &(*pp)->next) {
		if (*pp == fc) {
			*pp = fc->next;
			break;
		}
	}
	fc->pub.proto->free(&fc->pub);
	fc->pub.proto_data = NULL;
}

static void fz_conn_flush(struct fz_conn *fc)
{
	int rv, rounds;

	for (rounds = 0; rounds < 16 && fc->open && fc->want_flush; rounds++) {
		fc->want_flush = false;
		rv = fc->pub.proto->flush(&fc->pub);
		if (rv < 0) {
			fz_conn_release(fc);
			return;
		}
		if (rv == 1)
			fc->want_flush = true;
	}
	if (fc->open && fc->pub.proto->done(&fc->pub))
		fz_conn_release(fc);
}

static void fz_flush_all(void)
{
	struct fz_conn *fc, *next;
	for (fc = fz_conns; fc; fc = next) {
		next = fc->next;
		fz_conn_flush(fc);
	}
}

/* One loop turn; true if anything happened. */
static bool fz_turn(void)
{
	uint64_t done = fz_io.completed, out = fz_out_bytes;
	uv_run(fz_io.loop, UV_RUN_NOWAIT);
	fz_flush_all();
	return fz_io.completed != done || fz_out_bytes != out || fz_io.head != NULL;
}

void fz_drive(void)
{
	int turns, idle = 0;
	for (turns = 0; turns < FZ_DRIVE_MAX_TURNS && idle < FZ_IDLE_TURNS; turns++)
		idle = fz_turn() ? 0 : idle + 1;
}

struct conn *fz_conn_open(const struct conn_proto *proto, fz_out_fn on_out, void *arg)
{
	struct fz_conn *fc = calloc(1, sizeof(*fc));
	int rv;

	if (!fc)
		fz_die("fz_conn_open", -KV_ENOMEM);
	fc->pub.srv = fz_server();
	fc->pub.proto = proto;
	fc->on_out = on_out;
	fc->out_arg = arg;
	rv = proto->start(&fc->pub);
	if (rv)
		fz_die("proto start", rv);
	fc->open = true;
	fc->next = fz_conns;
	fz_conns = fc;
	return &fc->pub;
}

bool fz_conn_feed(struct conn *c, const uint8_t *p, size_t n, size_t chunk)
{
	struct fz_conn *fc = FZ_CONN(c);
	size_t take;
	int turns, rv;

	while (n > 0 && fc->open) {
		/* Paused: the listener would not read; the loop may resume it. */
		for (turns = 0; c->pause && fc->open && turns < FZ_DRIVE_MAX_TURNS; turns++)
			if (!fz_turn() && turns > FZ_IDLE_TURNS)
				break;
		if (c->pause || !fc->open)
			break;
		take = chunk && chunk < n ? chunk : n;
		rv = c->proto->recv(c, p, take);
		if (rv < 0) {
			fz_conn_release(fc);
			break;
		}
		fc->want_flush = true;
		p += take;
		n -= take;
		fz_turn();
	}
	return fc->open;
}

bool fz_conn_eof(struct conn *c)
{
	struct fz_conn *fc = FZ_CONN(c);
	if (!fc->open || c->peer_eof)
		return fc->open;
	c->peer_eof = true;
	if (c->proto->recv(c, NULL, 0) < 0)
		fz_conn_release(fc);
	else
		fc->want_flush = true;
	fz_turn();
	return fc->open;
}

void fz_conn_close(struct conn *c)
{
	struct fz_conn *fc = FZ_CONN(c);
	fz_drive();
	fz_conn_release(fc);
	fz_drive();
	free(fc);
}

/* --- the member ----------------------------------------------------------- */

static struct config fz_cfg;
static struct server fz_srv;
static struct raft_fsm fz_fsm_s;
static bool fz_up;
static uint8_t *fz_base;   /* the baseline image (fsm_image) */
static size_t fz_base_len;
static const char *fz_dump_snapshots;

static int fz_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

struct fz_wait {
	bool done;
	int err;
};

static void fz_apply_cb(struct raft_apply *req, int status, void *result)
{
	struct fz_wait *w = req->data;
	(void)result;
	w->done = true;
	w->err = status;
	free(req);
}

void fz_apply_entry(const uint8_t *p, size_t n)
{
	struct raft_apply *req = calloc(1, sizeof(*req));
	struct raft_buffer buf;
	struct fz_wait w = {false, 0};
	int turns, rv;

	buf.len = n;
	buf.base = raft_malloc(n ? n : 1);
	if (!req || !buf.base)
		fz_die("fz_apply_entry", -KV_ENOMEM);
	if (n)
		memcpy(buf.base, p, n);
	req->data = &w;
	/* Straight to libraft: these are the bytes a log entry holds, padding
	 * and all, which node_apply would add itself. */
	rv = raft_apply(&fz_srv.node.raft, req, &buf, 1, fz_apply_cb);
	if (rv) {
		raft_free(buf.base);
		free(req);
		return;
	}
	for (turns = 0; !w.done && turns < FZ_DRIVE_MAX_TURNS; turns++)
		fz_turn();
	if (!w.done)
		fz_die("waiting for a raft entry to apply", -KV_ETIMEOUT);
	fz_drive();
}

void fz_cmd_add(struct cmd_batch *b, enum cmd_type type, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *payload = malloc(len ? len : 1);
	struct cmd c;

	if (!payload)
		fz_die("fz_cmd_add", -KV_ENOMEM);
	protobuf_c_message_pack(m, payload);
	memset(&c, 0, sizeof(c));
	c.type = (uint8_t)type;
	c.payload = payload;
	c.len = (uint32_t)len;
	if (cmd_batch_add(b, &c))
		fz_die("cmd_batch_add", -KV_ENOMEM);
	free(payload);
}

uint8_t *fz_entry_take(struct cmd_batch *b, size_t *len)
{
	uint8_t *data, *p;
	size_t n, padded;
	if (cmd_batch_take(b, &data, &n))
		fz_die("cmd_batch_take", -KV_ENOMEM);
	/* As node_apply pads: 1 to 8 bytes, the last one their count. */
	padded = (n + 8) & ~(size_t)7;
	p = realloc(data, padded);
	if (!p)
		fz_die("fz_entry_take", -KV_ENOMEM);
	memset(p + n, 0, padded - n);
	p[padded - 1] = (uint8_t)(padded - n);
	*len = padded;
	return p;
}

static void fz_base_entry(struct cmd_batch *b)
{
	size_t len;
	uint8_t *p = fz_entry_take(b, &len);
	fz_apply_entry(p, len);
	free(p);
}

static void fz_put(struct cmd_batch *b, const char *k, const char *v, int64_t lease)
{
	Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
	r.key.data = (uint8_t *)k;
	r.key.len = strlen(k);
	r.value.data = (uint8_t *)v;
	r.value.len = strlen(v);
	r.lease = lease;
	fz_cmd_add(b, CMD_PUT, &r.base);
}

/* A little history: versions, a lease with a key, a tombstone, a
 * compaction, so that ranges, txns, watches and compactions find
 * something. */
static void fz_baseline(void)
{
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__CompactionRequest cp = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	struct cmd_batch b;

	cmd_batch_init(&b);
	g.id = 0x1234;
	g.ttl = 3600;
	fz_cmd_add(&b, CMD_LEASE_GRANT, &g.base);
	fz_put(&b, "foo", "bar", 0);
	fz_put(&b, "foo", "bar2", 0);
	fz_put(&b, "foo1", "v1", 0);
	fz_base_entry(&b);
	fz_put(&b, "foo2", "v2", 0x1234);
	fz_put(&b, "zoo", "z", 0);
	d.key.data = (uint8_t *)"zoo";
	d.key.len = 3;
	fz_cmd_add(&b, CMD_DELETE_RANGE, &d.base);
	fz_put(&b, "a", "", 0);
	cp.revision = 3;
	fz_cmd_add(&b, CMD_COMPACT, &cp.base);
	fz_put(&b, "foo", "bar3", 0);
	fz_base_entry(&b);
	cmd_batch_close(&b);
	if (fsm_image(&fz_srv.fsm_ctx, &fz_base, &fz_base_len))
		fz_die("baseline image", -KV_EINTERNAL);
}

static bool fz_published(void)
{
	const struct member *m = members_find(&fz_srv.members, fz_srv.member_id);
	return node_is_leader(&fz_srv.node) && m && members_is_started(m);
}

static void fz_start(void)
{
	static char dir[] = "/tmp/raftkv-fz-XXXXXX";
	static char data_dir[sizeof(dir) + 8];
	char *argv[] = {
		"raftkv", "--name", "fz", "--data-dir", data_dir,
		"--listen-client-urls", "http://127.0.0.1:2379",
		"--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380",
		"--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "fz=http://127.0.0.1:2380",
		"--heartbeat-interval", "10", "--election-timeout", "50",
		"--snapshot-count", "2000", NULL,
	};
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
	struct server *srv = &fz_srv;
	const char *v;
	uint64_t t0;
	int rv;

	v = getenv("FZ_VERBOSE");
	log_threshold = !v ? LOG_FATAL : strcmp(v, "2") == 0 ? LOG_DEBUG : LOG_INFO;
	fz_io.dump_entries = getenv("FZ_DUMP_ENTRIES");
	fz_dump_snapshots = getenv("FZ_DUMP_SNAPSHOTS");
	if (!mkdtemp(dir))
		fz_die("mkdtemp", -KV_EIO);
	snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
	if ((rv = config_parse(&fz_cfg, argc, argv)) != CONFIG_RUN)
		fz_die("config_parse", rv);

	/* main.c's order, without the listener and the signals. */
	srv->loop = uv_default_loop();
	srv->cfg = &fz_cfg;
	if ((rv = node_identity(&fz_cfg, &srv->cluster_id, &srv->member_id)))
		fz_die("node_identity", rv);
	srv->mvcc = mvcc_new();
	if (!srv->mvcc)
		fz_die("mvcc_new", -KV_ENOMEM);
	srv->kvs.mvcc = srv->mvcc;
	if ((rv = svc_lease_init(srv)) || (rv = svc_cluster_init(srv)))
		fz_die("svc init", rv);
	srv->kvs.max_txn_ops = fz_cfg.max_txn_ops;
	if ((rv = watch_hub_new(srv, &srv->watch)))
		fz_die("watch_hub_new", rv);
	if ((rv = server_fsm_init(srv, &fz_fsm_s)))
		fz_die("fsm_init", rv);
	if ((rv = node_init(&srv->node, srv, &fz_fsm_s)))
		fz_die("node_init", rv);
	if ((rv = prop_init(&srv->prop, srv)))
		fz_die("prop_init", rv);
	if ((rv = forward_init(srv)))
		fz_die("forward_init", rv);
	if ((rv = node_start(&srv->node)))
		fz_die("node_start", rv);
	if ((rv = svc_lease_start(srv)) || (rv = svc_cluster_start(srv)))
		fz_die("svc start", rv);
	/* The data dir held only the identity file; raft keeps nothing there. */
	nftw(dir, fz_rm_cb, 8, FTW_DEPTH | FTW_PHYS);

	/* Leader at once (one voter); then svc_cluster's timer proposes the
	 * member table and publishes us. */
	t0 = uv_now(srv->loop);
	while (!fz_published()) {
		uv_run(srv->loop, UV_RUN_ONCE);
		if (uv_now(srv->loop) - t0 > FZ_START_TIMEOUT_MS)
			fz_die("waiting to be leader and published", -KV_ETIMEOUT);
	}
	fz_drive();
	fz_baseline();
	fz_up = true;
}

struct server *fz_server(void)
{
	if (!fz_up && !fz_srv.loop)
		fz_start();
	return &fz_srv;
}

struct raft_fsm *fz_fsm(void)
{
	fz_server();
	return &fz_fsm_s;
}

/* The store image as raft would hold it ("snap-"), and its uncompressed
 * content ("img-"), for the two input modes of fuzz_snapshot. */
static void fz_dump_snapshot(void)
{
	LZ4F_decompressionContext_t dctx;
	uint8_t *img, *raw;
	size_t len, raw_len, in, out;

	if (fsm_image(&fz_srv.fsm_ctx, &img, &len) != 0)
		return;
	fz_dump(fz_dump_snapshots, "snap-", img, len);
	raw_len = 0;
	for (int i = 0; i < 8; i++)
		raw_len |= (size_t)img[8 + i] << (8 * i);
	raw = malloc(raw_len ? raw_len : 1);
	if (raw && !LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
		in = len - 16;
		out = raw_len;
		if (LZ4F_decompress(dctx, raw, &out, img + 16, &in, NULL) == 0 && out == raw_len)
			fz_dump(fz_dump_snapshots, "img-", raw, raw_len);
		LZ4F_freeDecompressionContext(dctx);
	}
	free(raw);
	raft_free(img);
}

void fz_reset(void)
{
	struct raft_buffer buf;
	int rv;

	fz_server();
	if (fz_dump_snapshots)
		fz_dump_snapshot();
	buf.len = fz_base_len;
	buf.base = raft_malloc(fz_base_len);
	if (!buf.base)
		fz_die("fz_reset", -KV_ENOMEM);
	memcpy(buf.base, fz_base, fz_base_len);
	rv = fz_fsm_s.restore(&fz_fsm_s, &buf);
	if (rv) {
		raft_free(buf.base);
		fz_die("restoring the baseline image", rv);
	}
	/* A request that leaves this member unable to serve is a finding too. */
	if (!fz_published())
		fz_die("the member is no longer a published leader", -KV_ENOLEADER);
}

void fz_dump(const char *dir, const char *prefix, const uint8_t *p, size_t n)
{
	char path[4096];
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	size_t i;
	FILE *f;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	snprintf(path, sizeof(path), "%s/%s%016" PRIx64, dir, prefix, h);
	f = fopen(path, "wb");
	if (!f)
		return;
	if (n)
		fwrite(p, 1, n, f);
	fclose(f);
}
