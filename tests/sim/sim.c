/*
 * raftkv-sim: deterministic simulation of raftkv's replicated state machine
 * (issue #5).
 *
 * Several members run in one process on libraft 0.22.1's in-memory fixture
 * (raft/fixture.h: simulated network, disk and clock; legacy v0 API), each
 * with raftkv's REAL fsm (raftkv/server/fsm.c over mvcc, kvs, lease, alarm
 * and members) built on a plain struct fsm_ctx: no server, no libuv loop,
 * no wall clock.  Entries are exactly what the server proposes: commands
 * packed with cmd.h, padded with cmd_entry_pad, one buffer per raft_apply.
 *
 * Per seed: 3 or 5 members, a random snapshot threshold, then --steps
 * fixture steps with random partitions (two-way disconnects and one-way
 * saturation), pauses (raft_fixture_kill/revive: the member keeps its
 * memory, like SIGSTOP/SIGCONT), network and disk latencies that change at
 * any time, election timeouts, stormy and calm spells, and a workload of
 * puts, deletes, txns, compactions, lease grants and revokes, alarms and the
 * odd malformed entry (proposed to leaders, and sometimes to non-leaders).
 * Then everything is healed and every member must catch up.
 *
 * I/O faults are those libraft's uv backend (what the server runs) can
 * show its core, injected by wrappers around each member's raft_io (see
 * "I/O as production sees it" below): slow disks and disk stalls (uv
 * retries a failed log or snapshot write forever, so a failing disk is a
 * write that completes late, in order), often on the leader; sends that
 * fail (RAFT_NOCONNECTION, message lost) for a while on one link or now and
 * then on a flaky member.  Appends must complete in the order issued.
 *
 * Not in the default run (HACKING.md, "Deterministic simulation", has the
 * details): --faults (raft_fixture_io_fault: failed appends, term/vote
 * writes and sends reach libraft 0.22.1's legacy layer as errors it does
 * not handle: uninitialised reads and double frees follow), --installs
 * (InstallSnapshot: the fixture's in-memory log truncation overran its
 * array, which the truncate wrapper now avoids, but a double free inside
 * raft_fixture_step still follows in about 1 seed in 30), and --reorder
 * (messages overtaking each other on a link, which TCP never does: libraft
 * can then stall a follower for good).  Crash-restarts are not simulated:
 * the fixture cannot close and re-open a member (double free inside
 * libraft) nor reload its "disk" faithfully.
 *
 * Checked on every apply and after every step (the fixture's hook):
 *  (a) equal state at equal index: the state hash (mvcc_hash plus the lease,
 *      alarm and member images) after applying index i is recorded by the
 *      first member there; every other member must match it, also after a
 *      snapshot install (restored state vs. the hash at the snapshot's
 *      index); every snapshot taken decodes (fsm restore) to exactly the
 *      state it came from; every command's result (error and response
 *      bytes) is the same on every member;
 *  (b) committed entries never change: the term and content hash of the
 *      entry applied at each index (known from the proposal: term and index
 *      at raft_apply) must be the same for every member and every replay;
 *      one leader per term over the whole run (the fixture itself only
 *      checks leaders alive at the same time); what any member ever saw
 *      committed is applied everywhere at the end;
 *  (c) exactly once: an entry applies at the index it was appended at and
 *      nowhere else, each command of it reports exactly one result per
 *      apply, an acknowledged proposal (raft_apply callback 0) was applied by
 *      its proposer, is the committed entry at its index and is applied by
 *      every member once healed.
 * All randomness comes from one PRNG seeded by the seed (xoshiro256**), and
 * the fixture is deterministic, so a seed replays bit for bit: each seed
 * prints a digest of its whole run, and the first seed is run twice.  Two
 * things in libraft work against that: an AppendEntries rejection that
 * carries stack garbage (sim_io_send replaces it), and a rarer dependence
 * on heap addresses not found yet; so the program runs itself without
 * address randomisation (main): one command line in one environment is
 * one run.
 */
#include <inttypes.h>
#include <signal.h>
#include <sys/personality.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>
#include <raft/fixture.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/alarm.h"
#include "server/cmd.h"
#include "server/fsm.h"
#include "server/kvs.h"
#include "server/lease.h"
#include "server/members.h"
#include "server/mvcc.h"
#include "server/prop.h"
#include "rpc.pb-c.h"

#define SIM_MAX_NODES 5
#define SIM_KEYS 16
#define SIM_MAX_CMDS 4
#define SIM_LEASES 16
#define SIM_SETTLE_MS 60000u
#define SIM_DEFAULT_SEEDS 1000u
/* The sanitizer build (.ci/run) runs about 5x slower: fewer steps there
 * keep the default 1000 seeds well under two minutes in both suites. */
#if defined(__SANITIZE_ADDRESS__)
#define SIM_DEFAULT_STEPS 700u
#else
#define SIM_DEFAULT_STEPS 3000u
#endif
#define SIM_MSG 1024
#define SIM_APPENDS 4096 /* appends in flight per member (max_inflight_entries is 2048) */
#define SIM_NO_COMPACTION (1u << 30)

#define SIM_CONTAINER(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

/* --- options ---------------------------------------------------------------- */

/* Planted bugs (--plant): each must make every seed that reaches it fail,
 * which shows that the checks still see what they are meant to. */
enum sim_plant {
	PLANT_NONE,
	PLANT_APPLY,      /* member 2 skips applying one entry: states differ */
	PLANT_DISK_ORDER, /* the disk queue is not kept in order */
};

struct sim_opts {
	uint64_t seeds, start;
	unsigned steps;
	unsigned nodes;     /* 0: 3 or 5, chosen by the seed */
	unsigned threshold; /* snapshot threshold; 0: chosen by the seed */
	int trailing;       /* snapshot trailing; -1: chosen by the seed */
	bool faults;        /* raft_fixture_io_fault on (--faults) */
	bool installs;      /* small trailing: InstallSnapshot (--installs) */
	bool reorder;       /* latency changes may reorder a link (--reorder) */
	bool twice;         /* every seed twice, digests compared */
	int plant;          /* a planted bug the checks must catch (--plant) */
	int verbose;
	bool quiet;
	const char *argv0;
};

/* --- one PRNG for everything ------------------------------------------------ */

struct sim_rng {
	uint64_t s[4];
};

static uint64_t sim_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = sim_splitmix(&x);
}

static uint64_t sim_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t sim_rand(struct sim_rng *r)
{
	uint64_t *s = r->s, res = sim_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = sim_rotl(s[3], 45);
	return res;
}

/* Uniform in [0, n); n > 0. */
static unsigned sim_below(struct sim_rng *r, unsigned n)
{
	return (unsigned)(sim_rand(r) % n);
}

/* true with probability permille / 1000. */
static bool sim_chance(struct sim_rng *r, unsigned permille)
{
	return sim_below(r, 1000) < permille;
}

static uint64_t sim_fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	if (h == 0)
		h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t sim_mix(uint64_t h, uint64_t v)
{
	return sim_fnv(h, &v, sizeof(v));
}

/* --- records --------------------------------------------------------------------- */

/* What happened at one raft index (command entries only: barriers and
 * configuration changes never reach the fsm). */
struct sim_index {
	bool committed;    /* applied by someone: term/content/sub are set */
	uint64_t term, content, sub;
	unsigned by;       /* the member that applied it first */
	uint32_t state;    /* state hash after applying it */
};

/* One command, by its seq (global across members). */
struct sim_cmd {
	uint64_t sub;
	uint8_t type;
	bool has_result;
	int err;
	uint64_t resp;     /* hash of the packed response, 0 without one */
	uint64_t index;    /* where it was first applied */
	unsigned at_origin; /* results seen on the member that proposed it */
};

/* One raft_apply.  Allocated one by one: libraft holds &req. */
struct sim_sub {
	struct raft_apply req;
	struct sim *sim;
	uint64_t id;
	unsigned origin;   /* fixture index of the proposer */
	uint64_t first_seq;
	unsigned ncmds;
	bool malformed;
	bool refused;      /* raft_apply returned NOTLEADER/NOSPACE: never appended */
	uint64_t index, term, content;
	bool done, acked;
	int status;
};

enum sim_link { LINK_OK, LINK_SAT, LINK_DISC };

struct sim_member {
	struct sim *sim;
	unsigned i;
	uint64_t id;
	char addr[16];
	/* The replicated state, as struct server holds it. */
	struct mvcc *mvcc;
	struct kvs kvs;
	struct lease_table *leases;
	struct alarm_table alarms;
	struct members members;
	struct fsm_ctx ctx;
	struct raft_fsm fsm;
	bool fsm_inited;
	int (*real_apply)(struct raft_fsm *, const struct raft_buffer *, void **);
	int (*real_snapshot)(struct raft_fsm *, struct raft_buffer *[], unsigned *);
	int (*real_restore)(struct raft_fsm *, struct raft_buffer *);
	uint64_t applied;       /* last index applied or restored */
	bool restore_pending;   /* restored: index known once raft updates it */
	uint64_t cur_index;
	uint64_t expect[SIM_MAX_CMDS];
	unsigned n_expect, n_seen;
	uint64_t last_activity; /* fixture time of its last disk/network event */
	/* The I/O wrappers (sim_io_*) around the fixture's raft_io methods. */
	struct raft_io *io;
	int (*real_send)(struct raft_io *, struct raft_io_send *, const struct raft_message *,
			 raft_io_send_cb);
	int (*real_append)(struct raft_io *, struct raft_io_append *, const struct raft_entry[],
			   unsigned, raft_io_append_cb);
	int (*real_snapshot_put)(struct raft_io *, unsigned, struct raft_io_snapshot_put *,
				 const struct raft_snapshot *, raft_io_snapshot_put_cb);
	int (*real_snapshot_get)(struct raft_io *, struct raft_io_snapshot_get *,
				 raft_io_snapshot_get_cb);
	int (*real_start)(struct raft_io *, unsigned, raft_io_tick_cb, raft_io_recv_cb);
	raft_io_recv_cb real_recv;
	raft_id stale_from;     /* receiving an AppendEntries of an older term from it */
	unsigned disk_target;   /* wanted disk latency (ms) */
	raft_time disk_due;     /* completion time of its latest disk request */
	raft_time stall_until;  /* a failing disk: writes retried until then */
	unsigned net_target;    /* wanted network latency (ms) */
	raft_time net_due;      /* delivery time of its latest message */
	unsigned send_fail;     /* permille of its sends that fail */
	raft_time link_down[SIM_MAX_NODES]; /* sends to j fail until then */
	/* Appends in flight, oldest first: each must complete in turn. */
	struct sim_append {
		struct raft_io_append *req;
		raft_io_append_cb cb;
	} appends[SIM_APPENDS];
	unsigned append_head, n_appends;
};

struct sim {
	const struct sim_opts *o;
	uint64_t seed;
	struct sim_rng rng;
	struct raft_fixture f;
	bool fixture_up;
	unsigned n;
	struct sim_member m[SIM_MAX_NODES];
	struct sim_member scratch; /* decodes every snapshot taken */
	enum sim_link want[SIM_MAX_NODES][SIM_MAX_NODES], have[SIM_MAX_NODES][SIM_MAX_NODES];
	bool alive[SIM_MAX_NODES];
	bool down[SIM_MAX_NODES]; /* unavailable at the end (I/O fault) */
	unsigned disk_latency[SIM_MAX_NODES], net_latency[SIM_MAX_NODES];
	unsigned max_latency;
	unsigned threshold, trailing;
	bool calm;
	bool settling;     /* healed: only election timeouts still change */

	struct sim_index *idx;
	size_t n_idx;
	struct sim_cmd *cmds;
	size_t n_cmds, cap_cmds;
	struct sim_sub **subs;
	size_t n_subs, cap_subs;
	uint64_t *term_leader;
	size_t n_terms;
	uint64_t max_commit;
	uint32_t empty_state;
	int64_t leases[SIM_LEASES];
	unsigned n_leases;
	bool alarm_on;

	uint64_t digest, steps;
	bool failed;
	char msg[SIM_MSG];

	struct {
		uint64_t proposed, refused, acked, applied, snapshots, restores, unavailable,
			kills, partitions, faults, leaders, stalls, send_fails;
	} st;
};

static struct sim *sim_current; /* for the crash handler */
static int sim_trace_level;

/* libraft's diagnostics (the fixture prints them all): with -v -v only. */
static void sim_trace(struct raft_tracer *t, int type, const void *data)
{
	(void)t;
	(void)type;
	(void)data;
}

static struct raft_tracer sim_quiet_tracer = {.impl = NULL, .version = 2, .emit = sim_trace};
static char sim_repro[512];

static void sim_log(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sim_log(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	if (s->o->verbose < 1)
		return;
	fprintf(stderr, "[seed %" PRIu64 " step %" PRIu64 " t=%llu] ", s->seed, s->steps,
		(unsigned long long)s->f.time);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Records the first violation; the run stops after the current step. */
static void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sim_fail(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	int k;
	if (s->failed)
		return;
	s->failed = true;
	k = snprintf(s->msg, sizeof(s->msg), "step %" PRIu64 ", simulated time %llu ms: ", s->steps,
		     (unsigned long long)s->f.time);
	va_start(ap, fmt);
	vsnprintf(s->msg + k, sizeof(s->msg) - (size_t)k, fmt, ap);
	va_end(ap);
	sim_log(s, "VIOLATION %s", s->msg);
}

static struct sim_index *sim_idx(struct sim *s, uint64_t index)
{
	if (index >= s->n_idx) {
		size_t n = s->n_idx ? s->n_idx : 256;
		while (n <= index)
			n *= 2;
		s->idx = realloc(s->idx, n * sizeof(*s->idx));
		if (!s->idx)
			abort();
		memset(s->idx + s->n_idx, 0, (n - s->n_idx) * sizeof(*s->idx));
		s->n_idx = n;
	}
	return &s->idx[index];
}

static struct sim_cmd *sim_cmd_get(struct sim *s, uint64_t seq)
{
	return seq >= 1 && seq <= s->n_cmds ? &s->cmds[seq - 1] : NULL;
}

static struct sim_sub *sim_sub_get(struct sim *s, uint64_t id)
{
	return id >= 1 && id <= s->n_subs ? s->subs[id - 1] : NULL;
}

/* --- the state of a member --------------------------------------------------- */

static uint32_t sim_state_hash(struct sim_member *m)
{
	uint8_t *img = NULL;
	size_t len = 0;
	uint32_t h = 0;

	if (mvcc_hash(m->mvcc, &h) != 0)
		abort();
	if (lease_table_encode(m->leases, &img, &len) != 0)
		abort();
	h = mvcc_crc32c(h, img, len);
	free(img);
	if (alarm_table_encode(&m->alarms, &img, &len) != 0)
		abort();
	h = mvcc_crc32c(h, img, len);
	free(img);
	if (members_encode(&m->members, &img, &len) != 0)
		abort();
	h = mvcc_crc32c(h, img, len);
	free(img);
	return h;
}

static struct raft *sim_raft(struct sim *s, unsigned i)
{
	return raft_fixture_get(&s->f, i);
}

/* The state at raft index `index`: that of the last command entry at or
 * below it (barriers and configuration entries change nothing). */
static bool sim_state_at(struct sim *s, uint64_t index, uint32_t *h)
{
	for (uint64_t j = index; j >= 1; j--) {
		if (j < s->n_idx && s->idx[j].committed) {
			*h = s->idx[j].state;
			return true;
		}
	}
	*h = s->empty_state;
	return true;
}

static void sim_resolve_restore(struct sim_member *m)
{
	struct sim *s = m->sim;
	uint64_t index;
	uint32_t want, got;

	if (!m->restore_pending)
		return;
	m->restore_pending = false;
	index = raft_last_applied(sim_raft(s, m->i));
	got = sim_state_hash(m);
	sim_state_at(s, index, &want);
	got |= 1;
	if (got != want)
		sim_fail(s,
			 "member %" PRIu64 " restored a snapshot at index %" PRIu64
			 " whose state (hash %08x) differs from the state members had there (%08x)",
			 m->id, index, got, want);
	m->applied = index;
	s->digest = sim_mix(s->digest, index ^ ((uint64_t)got << 32) ^ m->id);
	sim_log(s, "member %" PRIu64 " restored a snapshot at index %" PRIu64, m->id, index);
}

/* --- fsm hooks and wrappers ------------------------------------------------------ */

static uint64_t sim_hook_last_applied(void *arg)
{
	struct sim_member *m = arg;
	return raft_last_applied(sim_raft(m->sim, m->i));
}

static uint64_t sim_hook_now_us(void *arg)
{
	struct sim_member *m = arg;
	return (uint64_t)raft_fixture_time(&m->sim->f) * 1000;
}

static uint64_t sim_resp_hash(const ProtobufCMessage *resp)
{
	uint8_t stack[1024], *buf = stack;
	size_t len;
	uint64_t h;

	if (!resp)
		return 0;
	len = protobuf_c_message_get_packed_size(resp);
	if (len > sizeof(stack) && !(buf = malloc(len)))
		abort();
	protobuf_c_message_pack(resp, buf);
	h = sim_fnv(0, buf, len) | 1; /* never 0: 0 means "no response" */
	if (buf != stack)
		free(buf);
	return h;
}

static void sim_hook_applied(void *arg, const struct cmd *c, int err, const ProtobufCMessage *resp)
{
	struct sim_member *m = arg;
	struct sim *s = m->sim;
	struct sim_cmd *sc = sim_cmd_get(s, c->seq);
	uint64_t rh = sim_resp_hash(resp);

	if (m->n_seen >= m->n_expect || m->expect[m->n_seen] != c->seq || !sc) {
		if (m->n_seen < m->n_expect)
			sim_fail(s,
				 "member %" PRIu64 ", entry %" PRIu64 ": command %" PRIu64
				 " produced no result (the next one was command %" PRIu64
				 "): skipped or reordered",
				 m->id, m->cur_index, m->expect[m->n_seen], c->seq);
		else
			sim_fail(s,
				 "member %" PRIu64 ", entry %" PRIu64 ": a result for command %" PRIu64
				 " that the entry does not hold",
				 m->id, m->cur_index, c->seq);
		return;
	}
	m->n_seen++;
	if (!sc->has_result) {
		sc->has_result = true;
		sc->err = err;
		sc->resp = rh;
		sc->index = m->cur_index;
		if (c->type == CMD_LEASE_GRANT && err == 0 && resp) {
			const Etcdserverpb__LeaseGrantResponse *g = (const void *)resp;
			s->leases[s->n_leases++ % SIM_LEASES] = g->id;
		}
	} else if (sc->err != err || sc->resp != rh) {
		sim_fail(s,
			 "member %" PRIu64 " computed a different result for command %" PRIu64
			 " (type %u) at index %" PRIu64 ": %s, response hash %016" PRIx64
			 "; member %u had %s, %016" PRIx64,
			 m->id, c->seq, (unsigned)c->type, m->cur_index, err ? kv_err_name(err) : "ok", rh,
			 s->idx[sc->index].by + 1, sc->err ? kv_err_name(sc->err) : "ok", sc->resp);
	} else if (sc->index != m->cur_index) {
		sim_fail(s,
			 "command %" PRIu64 " applied at index %" PRIu64 " on member %" PRIu64
			 " but at index %" PRIu64 " before: applied twice",
			 c->seq, m->cur_index, m->id, sc->index);
	}
	if (c->origin == m->id)
		sc->at_origin++;
}

static const struct fsm_hooks sim_hooks = {
	.last_applied = sim_hook_last_applied,
	.now_us = sim_hook_now_us,
	.applied = sim_hook_applied,
};

/* Which proposal an entry is, from its bytes: the first command's seq, or
 * the marker of a deliberately malformed entry. */
static struct sim_sub *sim_entry_sub(struct sim_member *m, const struct raft_buffer *buf)
{
	struct sim *s = m->sim;
	struct cmd_iter it;
	struct cmd c;
	size_t len;
	int rv;

	m->n_expect = 0;
	if (cmd_entry_len(buf->base, buf->len, &len) != 0)
		return NULL;
	if (cmd_iter_init(&it, buf->base, len) != 0) {
		uint64_t id;
		if (len != 12 || memcmp(buf->base, "BAD!", 4) != 0)
			return NULL;
		memcpy(&id, (const uint8_t *)buf->base + 4, 8);
		return sim_sub_get(s, id);
	}
	while ((rv = cmd_iter_next(&it, &c)) == 1) {
		if (m->n_expect == SIM_MAX_CMDS)
			return NULL;
		m->expect[m->n_expect++] = c.seq;
	}
	if (rv != 0 || m->n_expect == 0)
		return NULL;
	{
		struct sim_cmd *sc = sim_cmd_get(s, m->expect[0]);
		return sc ? sim_sub_get(s, sc->sub) : NULL;
	}
}

static int sim_fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct sim_member *m = SIM_CONTAINER(fsm, struct sim_member, fsm);
	struct sim *s = m->sim;
	uint64_t index = raft_last_applied(sim_raft(s, m->i)) + 1, content;
	struct sim_index *rec;
	struct sim_sub *sub;
	uint32_t h;
	int rv;

	sim_resolve_restore(m);
	if (index <= m->applied)
		sim_fail(s, "member %" PRIu64 " applies index %" PRIu64 " after index %" PRIu64,
			 m->id, index, m->applied);
	content = sim_fnv(0, buf->base, buf->len);
	sub = sim_entry_sub(m, buf);
	if (!sub) {
		sim_fail(s, "member %" PRIu64 " applies at index %" PRIu64
			    " an entry of %zu bytes that nobody proposed",
			 m->id, index, buf->len);
	} else if (sub->refused || (sub->index && sub->index != index) || sub->content != content) {
		sim_fail(s,
			 "member %" PRIu64 " applies at index %" PRIu64 " proposal %" PRIu64
			 " that was %s at index %" PRIu64 " (content %s)",
			 m->id, index, sub->id, sub->refused ? "refused" : "appended", sub->index,
			 sub->content == content ? "same" : "DIFFERENT");
	} else {
		rec = sim_idx(s, index);
		if (!rec->committed) {
			rec->committed = true;
			rec->term = sub->term;
			rec->content = content;
			rec->sub = sub->id;
			rec->by = m->i;
		} else if (rec->term != sub->term || rec->content != content ||
			   rec->sub != sub->id) {
			sim_fail(s,
				 "committed entry %" PRIu64 " changed: member %u applied proposal %" PRIu64
				 " (term %" PRIu64 ", content %016" PRIx64 "), member %" PRIu64
				 " now applies proposal %" PRIu64 " (term %" PRIu64 ", content %016" PRIx64
				 ")",
				 index, rec->by + 1, rec->sub, rec->term, rec->content, m->id, sub->id,
				 sub->term, content);
		}
	}
	m->cur_index = index;
	m->n_seen = 0;
	if (s->o->plant == PLANT_APPLY && m->id == 2 && index >= 40 && index % 8 == 0 &&
	    m->n_expect > 0) {
		/* The planted bug: the entry is skipped but reports results. */
		*result = NULL;
		m->n_seen = m->n_expect;
		rv = 0;
	} else {
		rv = m->real_apply(fsm, buf, result);
	}
	if (rv != 0)
		sim_fail(s, "member %" PRIu64 ": fsm apply of index %" PRIu64 " returned %d", m->id,
			 index, rv);
	if (m->n_seen != m->n_expect && !s->failed)
		sim_fail(s,
			 "member %" PRIu64 " applied entry %" PRIu64 " of %u commands but only %u "
			 "produced a result",
			 m->id, index, m->n_expect, m->n_seen);
	m->applied = index;
	h = sim_state_hash(m);
	rec = sim_idx(s, index);
	if (rec->committed && rec->state == 0) {
		rec->state = h | 1;
	} else if (rec->committed && rec->state != (h | 1)) {
		sim_fail(s,
			 "state differs at index %" PRIu64 ": member %" PRIu64
			 " has hash %08x, member %u had %08x",
			 index, m->id, h | 1, rec->by + 1, rec->state);
	}
	s->st.applied++;
	s->digest = sim_mix(s->digest, index ^ ((uint64_t)h << 32) ^ (m->id << 56));
	return rv;
}

/* Decodes every snapshot image into a scratch state: it must be the state
 * it was taken from. */
static void sim_check_image(struct sim *s, struct sim_member *m, const struct raft_buffer *b);

static int sim_fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
	struct sim_member *m = SIM_CONTAINER(fsm, struct sim_member, fsm);
	struct sim *s = m->sim;
	int rv;

	sim_resolve_restore(m);
	rv = m->real_snapshot(fsm, bufs, n);
	if (rv != 0) {
		sim_fail(s, "member %" PRIu64 " could not take a snapshot: %s", m->id,
			 raft_strerror(rv));
		return rv;
	}
	s->st.snapshots++;
	if (*n != 1)
		sim_fail(s, "member %" PRIu64 ": a snapshot of %u buffers", m->id, *n);
	else
		sim_check_image(s, m, &(*bufs)[0]);
	return rv;
}

static int sim_fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct sim_member *m = SIM_CONTAINER(fsm, struct sim_member, fsm);
	struct sim *s = m->sim;
	int rv = m->real_restore(fsm, buf);
	if (rv != 0) {
		sim_fail(s, "member %" PRIu64 " refused a snapshot its peers made: %s", m->id,
			 raft_strerror(rv));
		return rv;
	}
	s->st.restores++;
	m->restore_pending = true;
	return 0;
}

static int sim_member_state_init(struct sim_member *m)
{
	m->mvcc = mvcc_new();
	m->leases = lease_table_new();
	if (!m->mvcc || !m->leases)
		return -KV_ENOMEM;
	lease_table_set_id_salt(m->leases, 0x5eed);
	m->kvs.mvcc = m->mvcc;
	m->kvs.lease = lease_table_kvs_ops(m->leases);
	m->kvs.max_txn_ops = 128;
	memset(&m->alarms, 0, sizeof(m->alarms));
	members_init(&m->members);
	m->members.self_id = m->id;
	m->ctx = (struct fsm_ctx){
		.mvcc = &m->mvcc,
		.kvs = &m->kvs,
		.leases = &m->leases,
		.alarms = &m->alarms,
		.members = &m->members,
		.data_dir = m->addr,
		.hooks = &sim_hooks,
		.arg = m,
	};
	if (fsm_init(&m->fsm, &m->ctx) != 0)
		return -KV_ENOMEM;
	m->fsm_inited = true;
	m->real_apply = m->fsm.apply;
	m->real_snapshot = m->fsm.snapshot;
	m->real_restore = m->fsm.restore;
	m->fsm.apply = sim_fsm_apply;
	m->fsm.snapshot = sim_fsm_snapshot;
	m->fsm.restore = sim_fsm_restore;
	m->applied = 0;
	m->restore_pending = false;
	return 0;
}

static void sim_member_state_close(struct sim_member *m)
{
	if (m->fsm_inited)
		fsm_close(&m->fsm);
	m->fsm_inited = false;
	mvcc_free(m->mvcc);
	m->mvcc = NULL;
	lease_table_free(m->leases);
	m->leases = NULL;
	alarm_table_close(&m->alarms);
	members_close(&m->members);
}

static void sim_check_image(struct sim *s, struct sim_member *m, const struct raft_buffer *b)
{
	struct sim_member *x = &s->scratch;
	struct raft_buffer copy;
	uint32_t want = sim_state_hash(m), got;

	x->sim = s;
	x->id = m->id;
	if (sim_member_state_init(x) != 0)
		abort();
	copy.len = b->len;
	copy.base = raft_malloc(b->len);
	if (!copy.base)
		abort();
	memcpy(copy.base, b->base, b->len);
	if (x->real_restore(&x->fsm, &copy) != 0) {
		raft_free(copy.base);
		sim_fail(s, "member %" PRIu64 " took a snapshot that does not restore", m->id);
	} else if ((got = sim_state_hash(x)) != want) {
		sim_fail(s,
			 "member %" PRIu64 " took a snapshot at index %" PRIu64
			 " that restores to state %08x instead of %08x",
			 m->id, (uint64_t)raft_last_applied(sim_raft(s, m->i)), got, want);
	}
	sim_member_state_close(x);
}

/* --- the network model -------------------------------------------------------- */

static void sim_set_link(struct sim *s, unsigned i, unsigned j, enum sim_link w)
{
	enum sim_link *h = &s->have[i][j];
	if (*h == w)
		return;
	if (*h == LINK_SAT)
		raft_fixture_desaturate(&s->f, i, j);
	else if (*h == LINK_DISC)
		raft_fixture_reconnect(&s->f, i, j);
	*h = LINK_OK;
	if (w == LINK_SAT)
		raft_fixture_saturate(&s->f, i, j);
	else if (w == LINK_DISC)
		raft_fixture_disconnect(&s->f, i, j);
	*h = w;
}

/* Makes the links between live members what the partition wants. */
static void sim_apply_links(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++)
		for (unsigned j = 0; j < s->n; j++)
			if (i != j && s->alive[i] && s->alive[j])
				sim_set_link(s, i, j, s->want[i][j]);
}

static void sim_kill(struct sim *s, unsigned i)
{
	/* The fixture saturates every link of a dead member (and asserts they
	 * are connected); revive desaturates those to live members. */
	for (unsigned j = 0; j < s->n; j++) {
		if (j == i)
			continue;
		sim_set_link(s, i, j, LINK_OK);
		sim_set_link(s, j, i, LINK_OK);
	}
	raft_fixture_kill(&s->f, i);
	s->alive[i] = false;
	for (unsigned j = 0; j < s->n; j++)
		if (j != i)
			s->have[i][j] = s->have[j][i] = LINK_SAT;
}

static void sim_revive(struct sim *s, unsigned i)
{
	raft_fixture_revive(&s->f, i);
	s->alive[i] = true;
	for (unsigned j = 0; j < s->n; j++)
		if (j != i && s->alive[j])
			s->have[i][j] = s->have[j][i] = LINK_OK;
	sim_apply_links(s);
}

static void sim_heal_links(struct sim *s)
{
	for (unsigned i = 0; i < s->n; i++)
		for (unsigned j = 0; j < s->n; j++)
			s->want[i][j] = LINK_OK;
	sim_apply_links(s);
}

/* --- I/O as production sees it: wrappers around the fixture's raft_io ----------
 *
 * libraft's uv backend (what the server runs) writes the log in order and
 * retries a failed write forever, every raft_uv_set_disk_retry ms; a failed
 * append therefore reaches libraft's core only as a write that takes longer.
 * The fixture instead completes each disk request after the latency set when
 * it was issued, so lowering the latency would let a later write complete
 * before an earlier one; and its fault injection fails requests in a way
 * libraft 0.22.1's legacy layer cannot take (HACKING.md).  These wrappers
 * give every member a disk queue: each request completes no earlier than the
 * one before it, after the member's current latency or, while its disk is
 * "failing", once the stall is over.  The same holds for messages per
 * sender (a TCP stream per link), and a send can fail: libraft's uv transport
 * completes sends with an error when a connection breaks or cannot be made,
 * and the message is lost.  The fixture does the same for a peer it does not
 * know, so a failing send is passed on addressed to no one. */

static struct sim_member *sim_member_of(struct raft_io *io)
{
	struct sim *s = sim_current;
	for (unsigned i = 0; i < s->n; i++)
		if (s->m[i].io == io)
			return &s->m[i];
	abort();
}

/* The latency that keeps m's disk queue in order: its target, but never
 * completing before the request ahead of it, nor before a stall ends. */
static void sim_disk_next(struct sim_member *m)
{
	struct sim *s = m->sim;
	raft_time now = s->f.time, due = now + m->disk_target;

	if (due < m->disk_due && s->o->plant != PLANT_DISK_ORDER)
		due = m->disk_due;
	if (due < m->stall_until)
		due = m->stall_until;
	raft_fixture_set_disk_latency(&s->f, m->i, (unsigned)(due - now));
	m->disk_due = due;
	m->last_activity = now;
}

/* Checks that appends complete in the order they were issued, as the uv
 * backend's do (libraft's core counts on it), then passes the completion on. */
static void sim_io_append_done(struct raft_io_append *req, int status)
{
	struct sim_member *m = NULL;
	struct sim *s = sim_current;
	struct sim_append *a;

	for (unsigned i = 0; i < s->n && !m; i++)
		for (unsigned k = 0; k < s->m[i].n_appends && !m; k++)
			if (s->m[i].appends[(s->m[i].append_head + k) % SIM_APPENDS].req == req)
				m = &s->m[i];
	if (!m)
		abort();
	a = &m->appends[m->append_head];
	if (a->req != req) {
		sim_fail(s, "member %" PRIu64 ": a disk write completed before one issued earlier",
			 m->id);
		for (unsigned k = 1; k < m->n_appends; k++) {
			struct sim_append *b = &m->appends[(m->append_head + k) % SIM_APPENDS];
			if (b->req == req) {
				struct sim_append t = *a;
				*a = *b;
				*b = t;
				break;
			}
		}
	}
	m->append_head = (m->append_head + 1) % SIM_APPENDS;
	m->n_appends--;
	if (status != 0)
		sim_fail(s, "member %" PRIu64 ": a disk write failed (%s) outside --faults", m->id,
			 raft_strerror(status));
	a->cb(req, status);
}

static int sim_io_append(struct raft_io *io, struct raft_io_append *req,
			 const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct sim_member *m = sim_member_of(io);
	struct sim_append *a;
	int rv;

	if (m->sim->o->faults)
		return m->real_append(io, req, entries, n, cb);
	if (m->n_appends == SIM_APPENDS)
		abort();
	sim_disk_next(m);
	a = &m->appends[(m->append_head + m->n_appends) % SIM_APPENDS];
	a->req = req;
	a->cb = cb;
	rv = m->real_append(io, req, entries, n, sim_io_append_done);
	if (rv == 0)
		m->n_appends++;
	return rv;
}

static int sim_io_snapshot_put(struct raft_io *io, unsigned trailing,
			       struct raft_io_snapshot_put *req, const struct raft_snapshot *snap,
			       raft_io_snapshot_put_cb cb)
{
	struct sim_member *m = sim_member_of(io);
	sim_disk_next(m);
	return m->real_snapshot_put(io, trailing, req, snap, cb);
}

static int sim_io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
			       raft_io_snapshot_get_cb cb)
{
	struct sim_member *m = sim_member_of(io);
	sim_disk_next(m);
	return m->real_snapshot_get(io, req, cb);
}

static int sim_io_send_checked(struct sim_member *m, struct raft_io *io, struct raft_io_send *req,
			       const struct raft_message *msg, raft_io_send_cb cb);

static int sim_io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
		       raft_io_send_cb cb)
{
	struct sim_member *m = sim_member_of(io);

	m->last_activity = m->sim->f.time;
	if (msg->type == RAFT_APPEND_ENTRIES_RESULT && msg->server_id == m->stale_from) {
		/* libraft 0.22.1's recvAppendEntries rejects an AppendEntries
		 * of an older term without setting the result's
		 * last_log_index: the reply carries stack garbage (often a
		 * pointer, so runs would depend on address layout; valgrind
		 * shows it), and the leader uses it as a hint.  Later
		 * versions send 0; so does the simulation. */
		struct raft_message fixed = *msg;
		fixed.append_entries_result.last_log_index = 0;
		return sim_io_send_checked(m, io, req, &fixed, cb);
	}
	return sim_io_send_checked(m, io, req, msg, cb);
}

static int sim_io_send_checked(struct sim_member *m, struct raft_io *io, struct raft_io_send *req,
			       const struct raft_message *msg, raft_io_send_cb cb)
{
	struct sim *s = m->sim;
	raft_time now = s->f.time;
	unsigned to = (unsigned)msg->server_id - 1;

	if (to < s->n && (m->link_down[to] > now || (m->send_fail && sim_chance(&s->rng, m->send_fail)))) {
		/* The fixture completes a send to an unknown peer with
		 * RAFT_NOCONNECTION on its next step, as the uv transport
		 * completes one whose connection failed; nothing is delivered. */
		struct raft_message lost = *msg;
		lost.server_id = 0;
		s->st.send_fails++;
		s->digest = sim_mix(s->digest, 0xfa11ull ^ ((uint64_t)m->i << 8) ^ to);
		return m->real_send(io, req, &lost, cb);
	}
	/* The fixture stamps a message with the sender's latency when it
	 * flushes the send, at this same simulated time: keep the link FIFO
	 * unless --reorder. */
	if (!s->o->reorder) {
		raft_time due = now + m->net_target;
		if (due < m->net_due)
			due = m->net_due;
		raft_fixture_set_network_latency(&s->f, m->i, (unsigned)(due - now));
		m->net_due = due;
	}
	return m->real_send(io, req, msg, cb);
}

/* libraft truncates its own in-memory log; the fixture's copy of the log
 * is only read by raft_start's load, and its truncation ignores the log's
 * start index after an install (it overruns its array).  A run never
 * reloads, so the fixture's copy is left alone. */
/* Receives for m: notes when the reply will be a stale-term rejection
 * (see sim_io_send); libraft replies from within the receive. */
static void sim_io_recv(struct raft_io *io, struct raft_message *msg)
{
	struct sim_member *m = sim_member_of(io);
	struct raft *r = sim_raft(m->sim, m->i);

	m->stale_from = 0;
	if (msg->type == RAFT_APPEND_ENTRIES && msg->append_entries.term < raft_current_term(r))
		m->stale_from = msg->server_id;
	m->real_recv(io, msg);
	m->stale_from = 0;
}

static int sim_io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
			raft_io_recv_cb recv)
{
	struct sim_member *m = sim_member_of(io);
	m->real_recv = recv;
	return m->real_start(io, msecs, tick, sim_io_recv);
}

static int sim_io_truncate(struct raft_io *io, raft_index index)
{
	(void)io;
	(void)index;
	return 0;
}

static void sim_io_wrap(struct sim_member *m)
{
	struct raft_io *io = sim_raft(m->sim, m->i)->io;
	m->io = io;
	m->real_send = io->send;
	m->real_append = io->append;
	m->real_snapshot_put = io->snapshot_put;
	m->real_snapshot_get = io->snapshot_get;
	io->send = sim_io_send;
	io->append = sim_io_append;
	io->snapshot_put = sim_io_snapshot_put;
	io->snapshot_get = sim_io_snapshot_get;
	io->truncate = sim_io_truncate;
	m->real_start = io->start;
	io->start = sim_io_start;
}

/* --- the fixture hook: runs after every step ------------------------------------ */

static void sim_after_step(struct raft_fixture *f, struct raft_fixture_event *ev)
{
	struct sim *s = SIM_CONTAINER(f, struct sim, f);
	unsigned who = raft_fixture_event_server_index(ev);
	int type = raft_fixture_event_type(ev);

	s->steps++;
	s->digest = sim_mix(s->digest, ((uint64_t)type << 56) ^ ((uint64_t)who << 48) ^ f->time);
	if (s->settling && type == RAFT_FIXTURE_TICK && sim_chance(&s->rng, 100)) {
		/* libraft draws a new election timeout for every election; the
		 * fixture pins it, so members whose timeouts coincide (a
		 * stale candidate bumping the term each time the others start
		 * a pre-vote) would keep colliding forever. */
		raft_fixture_set_randomized_election_timeout(f, sim_below(&s->rng, s->n),
							     1000 + sim_below(&s->rng, 1000));
	}
	if (type != RAFT_FIXTURE_TICK && who < s->n)
		s->m[who].last_activity = f->time;
	for (unsigned i = 0; i < s->n; i++) {
		struct raft *r = sim_raft(s, i);
		uint64_t term, c;
		sim_resolve_restore(&s->m[i]);
		c = raft_commit_index(r);
		if (c > s->max_commit)
			s->max_commit = c;
		if (raft_state(r) != RAFT_LEADER)
			continue;
		term = raft_current_term(r);
		if (term >= s->n_terms) {
			size_t n = s->n_terms ? s->n_terms : 64;
			while (n <= term)
				n *= 2;
			s->term_leader = realloc(s->term_leader, n * sizeof(*s->term_leader));
			if (!s->term_leader)
				abort();
			memset(s->term_leader + s->n_terms, 0, (n - s->n_terms) * sizeof(uint64_t));
			s->n_terms = n;
		}
		if (s->term_leader[term] == 0) {
			s->term_leader[term] = s->m[i].id;
			s->st.leaders++;
			sim_log(s, "member %" PRIu64 " leads term %" PRIu64, s->m[i].id, term);
		} else if (s->term_leader[term] != s->m[i].id) {
			sim_fail(s, "members %" PRIu64 " and %" PRIu64 " both led term %" PRIu64,
				 s->term_leader[term], s->m[i].id, term);
		}
	}
}

/* --- the workload --------------------------------------------------------------- */

static void sim_key(struct sim *s, char *buf, ProtobufCBinaryData *out)
{
	unsigned k = sim_below(&s->rng, SIM_KEYS);
	snprintf(buf, 8, "k%02u", k);
	out->data = (uint8_t *)buf;
	out->len = 3;
}

static int64_t sim_some_lease(struct sim *s)
{
	if (s->n_leases == 0 || sim_chance(&s->rng, 100))
		return 1 + (int64_t)sim_below(&s->rng, 1000); /* most likely unknown */
	return s->leases[sim_below(&s->rng, s->n_leases < SIM_LEASES ? s->n_leases : SIM_LEASES)];
}

/* One random command for member li's leader: its type and packed payload
 * (at most 512 bytes). */
static enum cmd_type sim_gen(struct sim *s, unsigned li, uint8_t *out, size_t *len)
{
	char k1[8], k2[8], k3[8], val[24];
	unsigned r = sim_below(&s->rng, 100);

	snprintf(val, sizeof(val), "v%" PRIu64, s->n_cmds + 1);
	if (r < 40) {
		Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
		sim_key(s, k1, &p.key);
		p.value.data = (uint8_t *)val;
		p.value.len = strlen(val);
		p.prev_kv = sim_chance(&s->rng, 300);
		if (sim_chance(&s->rng, 200))
			p.lease = sim_some_lease(s);
		*len = etcdserverpb__put_request__pack(&p, out);
		return CMD_PUT;
	}
	if (r < 52) {
		Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
		sim_key(s, k1, &d.key);
		if (sim_chance(&s->rng, 300)) {
			/* k0x .. k1x: a prefix range */
			k1[2] = 0;
			d.key.len = 2;
			snprintf(k2, sizeof(k2), "k%c", k1[1] + 1);
			d.range_end.data = (uint8_t *)k2;
			d.range_end.len = 2;
		}
		d.prev_kv = sim_chance(&s->rng, 500);
		*len = etcdserverpb__delete_range_request__pack(&d, out);
		return CMD_DELETE_RANGE;
	}
	if (r < 75) {
		Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
		Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT, *cmps[1] = {&cmp};
		Etcdserverpb__RequestOp op1 = ETCDSERVERPB__REQUEST_OP__INIT,
					op2 = ETCDSERVERPB__REQUEST_OP__INIT, *succ[1] = {&op1},
					*fail[1] = {&op2};
		Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
		Etcdserverpb__DeleteRangeRequest del = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
		Etcdserverpb__RangeRequest rng = ETCDSERVERPB__RANGE_REQUEST__INIT;

		sim_key(s, k1, &cmp.key);
		switch (sim_below(&s->rng, 3)) {
		case 0:
			cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
			cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
			cmp.version = sim_below(&s->rng, 3);
			break;
		case 1:
			cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
			cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
			cmp.mod_revision = (int64_t)sim_below(&s->rng, 50);
			break;
		default:
			cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
			cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
			cmp.value.data = (uint8_t *)val;
			cmp.value.len = 2;
			break;
		}
		cmp.result = (Etcdserverpb__Compare__CompareResult)sim_below(&s->rng, 4);
		sim_key(s, k2, &put.key);
		put.value.data = (uint8_t *)val;
		put.value.len = strlen(val);
		put.prev_kv = sim_chance(&s->rng, 500);
		op1.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		op1.request_put = &put;
		if (sim_chance(&s->rng, 500)) {
			sim_key(s, k3, &del.key);
			op2.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
			op2.request_delete_range = &del;
		} else {
			sim_key(s, k3, &rng.key);
			op2.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
			op2.request_range = &rng;
		}
		t.n_compare = 1;
		t.compare = cmps;
		t.n_success = 1;
		t.success = succ;
		t.n_failure = 1;
		t.failure = fail;
		*len = etcdserverpb__txn_request__pack(&t, out);
		return CMD_TXN;
	}
	if (r < 81) {
		Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
		int64_t rev = mvcc_rev(s->m[li].mvcc);
		/* Mostly a few revisions back; sometimes compacted or future. */
		c.revision = rev - 8 + (int64_t)sim_below(&s->rng, 10);
		*len = etcdserverpb__compaction_request__pack(&c, out);
		return CMD_COMPACT;
	}
	if (r < 89) {
		Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
		g.ttl = 5 + (int64_t)sim_below(&s->rng, 60);
		if (sim_chance(&s->rng, 100))
			g.id = 1 + (int64_t)sim_below(&s->rng, 1000);
		*len = etcdserverpb__lease_grant_request__pack(&g, out);
		return CMD_LEASE_GRANT;
	}
	if (r < 96) {
		Etcdserverpb__LeaseRevokeRequest v = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
		v.id = sim_some_lease(s);
		*len = etcdserverpb__lease_revoke_request__pack(&v, out);
		return CMD_LEASE_REVOKE;
	}
	{
		/* NOSPACE raised now and then (puts then fail on every member),
		 * lowered more often. */
		Etcdserverpb__AlarmRequest a = ETCDSERVERPB__ALARM_REQUEST__INIT;
		bool up = !s->alarm_on && sim_chance(&s->rng, 300);
		a.action = up ? ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE
			      : ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE;
		a.memberid = s->m[li].id;
		a.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
		s->alarm_on = up ? true : (s->alarm_on && !sim_chance(&s->rng, 500));
		*len = etcdserverpb__alarm_request__pack(&a, out);
		return CMD_ALARM;
	}
}

static void sim_apply_cb(struct raft_apply *req, int status, void *result)
{
	struct sim_sub *sub = req->data;
	struct sim *s = sub->sim;
	(void)result;

	if (sub->done) {
		sim_fail(s, "proposal %" PRIu64 " completed twice", sub->id);
		return;
	}
	sub->done = true;
	sub->status = status;
	if (status != 0)
		return;
	sub->acked = true;
	s->st.acked++;
	for (unsigned k = 0; k < sub->ncmds; k++) {
		struct sim_cmd *sc = sim_cmd_get(s, sub->first_seq + k);
		if (!sc->at_origin)
			sim_fail(s,
				 "command %" PRIu64 " acknowledged but never applied on member %u that "
				 "proposed it",
				 sub->first_seq + k, sub->origin + 1);
	}
	if (!sub->index || sub->index >= s->n_idx || !s->idx[sub->index].committed ||
	    s->idx[sub->index].sub != sub->id)
		sim_fail(s, "proposal %" PRIu64 " acknowledged but not the entry applied at index %" PRIu64,
			 sub->id, sub->index);
}

static struct sim_sub *sim_new_sub(struct sim *s, unsigned origin)
{
	struct sim_sub *sub = calloc(1, sizeof(*sub));
	if (!sub)
		abort();
	if (s->n_subs == s->cap_subs) {
		s->cap_subs = s->cap_subs ? 2 * s->cap_subs : 256;
		s->subs = realloc(s->subs, s->cap_subs * sizeof(*s->subs));
		if (!s->subs)
			abort();
	}
	s->subs[s->n_subs++] = sub;
	sub->sim = s;
	sub->id = s->n_subs;
	sub->origin = origin;
	sub->req.data = sub;
	return sub;
}

static uint64_t sim_new_cmd(struct sim *s, uint64_t sub, uint8_t type)
{
	if (s->n_cmds == s->cap_cmds) {
		s->cap_cmds = s->cap_cmds ? 2 * s->cap_cmds : 1024;
		s->cmds = realloc(s->cmds, s->cap_cmds * sizeof(*s->cmds));
		if (!s->cmds)
			abort();
	}
	memset(&s->cmds[s->n_cmds], 0, sizeof(s->cmds[0]));
	s->cmds[s->n_cmds].sub = sub;
	s->cmds[s->n_cmds].type = type;
	return ++s->n_cmds;
}

/* Proposes one entry on member li (usually a leader), as node_apply does:
 * one buffer, padded, NOTLEADER/NOSPACE leave the buffer ours. */
static uint64_t sim_propose(struct sim *s, unsigned li, bool malformed)
{
	struct raft *r = sim_raft(s, li);
	struct sim_sub *sub = sim_new_sub(s, li);
	struct cmd_batch b;
	struct raft_buffer buf;
	uint8_t payload[512], *data = NULL;
	size_t len = 0, padded;
	uint64_t before = raft_last_index(r);
	int rv;

	if (malformed) {
		data = malloc(12);
		if (!data)
			abort();
		memcpy(data, "BAD!", 4);
		memcpy(data + 4, &sub->id, 8);
		len = 12;
		sub->malformed = true;
	} else {
		cmd_batch_init(&b);
		sub->ncmds = 1 + sim_below(&s->rng, SIM_MAX_CMDS);
		for (unsigned k = 0; k < sub->ncmds; k++) {
			struct cmd c;
			size_t plen = 0;
			c.type = (uint8_t)sim_gen(s, li, payload, &plen);
			c.origin = s->m[li].id;
			c.seq = sim_new_cmd(s, sub->id, c.type);
			c.payload = payload;
			c.len = (uint32_t)plen;
			if (k == 0)
				sub->first_seq = c.seq;
			if (cmd_batch_add(&b, &c) != 0)
				abort();
		}
		if (cmd_batch_take(&b, &data, &len) != 0)
			abort();
		cmd_batch_close(&b);
	}
	padded = cmd_entry_padded_len(len);
	data = realloc(data, padded);
	if (!data)
		abort();
	cmd_entry_pad(data, len, padded);
	sub->content = sim_fnv(0, data, padded);
	sub->term = raft_current_term(r);
	buf.base = data;
	buf.len = padded;
	s->st.proposed++;
	s->m[li].last_activity = s->f.time; /* it may write now */
	rv = raft_apply(r, &sub->req, &buf, 1, sim_apply_cb);
	if (raft_last_index(r) > before)
		sub->index = raft_last_index(r);
	if (rv != 0) {
		sub->done = true;
		sub->status = rv;
		s->st.refused++;
		if (rv == RAFT_NOTLEADER || rv == RAFT_NOSPACE) {
			sub->refused = true;
			free(data);
		}
	}
	sim_log(s, "member %u proposes #%" PRIu64 " (%u commands%s) at index %" PRIu64 ": %s",
		li + 1, sub->id, sub->ncmds, malformed ? ", malformed" : "", sub->index,
		rv ? raft_strerror(rv) : "ok");
	return rv ? 0 : sub->index;
}

/* --- faults --------------------------------------------------------------------- */

static unsigned sim_pick(struct sim *s, bool alive)
{
	unsigned c[SIM_MAX_NODES], n = 0;
	for (unsigned i = 0; i < s->n; i++)
		if (s->alive[i] == alive)
			c[n++] = i;
	return n ? c[sim_below(&s->rng, n)] : s->n;
}

static void sim_partition(struct sim *s)
{
	unsigned kind = sim_below(&s->rng, 4), x = sim_below(&s->rng, s->n);
	s->st.partitions++;
	switch (kind) {
	case 0: /* isolate one member */
		for (unsigned j = 0; j < s->n; j++)
			if (j != x)
				s->want[x][j] = s->want[j][x] = LINK_DISC;
		sim_log(s, "partition: member %u isolated", x + 1);
		break;
	case 1: { /* a random split into two sides */
		unsigned side = (unsigned)sim_below(&s->rng, 1u << s->n);
		for (unsigned i = 0; i < s->n; i++)
			for (unsigned j = 0; j < s->n; j++)
				s->want[i][j] = ((side >> i) & 1) == ((side >> j) & 1) ? LINK_OK : LINK_DISC;
		sim_log(s, "partition: split %#x", side);
		break;
	}
	case 2: { /* one way: x's messages to y vanish */
		unsigned y = (x + 1 + sim_below(&s->rng, s->n - 1)) % s->n;
		s->want[x][y] = LINK_SAT;
		sim_log(s, "partition: %u -> %u dropped", x + 1, y + 1);
		break;
	}
	default:
		for (unsigned i = 0; i < s->n; i++)
			for (unsigned j = 0; j < s->n; j++)
				s->want[i][j] = LINK_OK;
		sim_log(s, "partition healed");
		break;
	}
	sim_apply_links(s);
}

/* A leader (the member whose faults hurt most) two times in three,
 * otherwise any member. */
static unsigned sim_leader_or_any(struct sim *s)
{
	unsigned n = sim_below(&s->rng, 3);
	for (unsigned i = 0; n && i < s->n; i++)
		if (raft_state(sim_raft(s, i)) == RAFT_LEADER)
			return i;
	return sim_below(&s->rng, s->n);
}

/* Disk and network faults as production meets them (see sim_io_send). */
static void sim_io_chaos(struct sim *s, unsigned scale)
{
	struct sim_rng *g = &s->rng;
	raft_time now = s->f.time;
	unsigned i;

	if (sim_chance(g, scale)) {
		/* A disk that fails for a while: libraft's uv backend retries
		 * the write (every raft_uv_set_disk_retry ms, 1 s by default)
		 * until it succeeds; often the leader's. */
		unsigned ms = 100 + sim_below(g, sim_chance(g, 200) ? 5000 : 1500);
		i = sim_leader_or_any(s);
		s->m[i].stall_until = now + ms;
		s->st.stalls++;
		sim_log(s, "member %u: disk fails for %u ms (writes retried)", i + 1, ms);
	}
	if (sim_chance(g, scale)) {
		/* A slow disk (slow fsync) for a while: latencies far above
		 * the network's, now and then above the heartbeat interval. */
		i = sim_leader_or_any(s);
		s->m[i].disk_target = 40 + sim_below(g, sim_chance(g, 300) ? 400 : 120);
		s->disk_latency[i] = s->m[i].disk_target;
		sim_log(s, "member %u: slow disk, %u ms", i + 1, s->m[i].disk_target);
	}
	if (sim_chance(g, 2 * scale)) {
		/* A broken connection: sends on one link fail until the
		 * transport reconnects. */
		unsigned ms = 10 + sim_below(g, 1500);
		unsigned j;
		i = sim_leader_or_any(s);
		j = (i + 1 + sim_below(g, s->n - 1)) % s->n;
		s->m[i].link_down[j] = now + ms;
		sim_log(s, "member %u: sends to %u fail for %u ms", i + 1, j + 1, ms);
	}
	if (sim_chance(g, scale)) {
		/* A flaky network on one member: some of its sends fail. */
		i = sim_below(g, s->n);
		s->m[i].send_fail = sim_chance(g, 500) ? 0 : 1 + sim_below(g, 100);
		sim_log(s, "member %u: %u permille of sends fail", i + 1, s->m[i].send_fail);
	}
}

static void sim_chaos(struct sim *s)
{
	struct sim_rng *g = &s->rng;
	unsigned scale = s->calm ? 1 : 10, i;

	if (sim_chance(g, 3)) {
		s->calm = !s->calm;
		sim_log(s, "%s", s->calm ? "calm" : "storm");
	}
	if (sim_chance(g, 2 * scale))
		sim_partition(s);
	if (sim_chance(g, scale) && (i = sim_pick(s, true)) < s->n) {
		sim_log(s, "member %u paused", i + 1);
		sim_kill(s, i);
		s->st.kills++;
	}
	if (sim_chance(g, 10 + scale) && (i = sim_pick(s, false)) < s->n) {
		sim_log(s, "member %u resumed", i + 1);
		sim_revive(s, i);
	}
	if (sim_chance(g, 2 * scale)) {
		unsigned net = 1 + sim_below(g, sim_chance(g, 100) ? 400 : 60),
			 disk = 1 + sim_below(g, sim_chance(g, 100) ? 200 : 30);
		i = sim_below(g, s->n);
		/* The wrappers keep links and disks in order whatever the
		 * latency does (sim_io_send, sim_disk_next); --reorder sets
		 * the fixture's latency directly, so a message sent after a
		 * shorter latency was set overtakes earlier ones on its link,
		 * which libraft's TCP transport never does (HACKING.md). */
		if (!s->o->reorder) {
			s->m[i].net_target = net;
		} else if (s->f.time - s->m[i].last_activity > s->net_latency[i] + 1) {
			raft_fixture_set_network_latency(&s->f, i, net);
		}
		s->net_latency[i] = net;
		s->m[i].disk_target = disk;
		s->disk_latency[i] = disk;
		if (net > s->max_latency)
			s->max_latency = net;
		if (disk > s->max_latency)
			s->max_latency = disk;
		sim_log(s, "member %u: network %u ms, disk %u ms", i + 1, net, disk);
	}
	sim_io_chaos(s, scale);
	if (s->o->faults && sim_chance(g, scale)) {
		int delay = (int)sim_below(g, 30), repeat = 1 + (int)sim_below(g, 3);
		i = sim_below(g, s->n);
		raft_fixture_io_fault(&s->f, i, delay, repeat);
		s->st.faults++;
		sim_log(s, "member %u: %d I/O faults after %d requests", i + 1, repeat, delay);
	}
	if (sim_chance(g, 3 * scale)) {
		i = sim_below(g, s->n);
		raft_fixture_set_randomized_election_timeout(&s->f, i, 1000 + sim_below(g, 1000));
	}
	if (sim_chance(g, 100)) {
		/* Mostly to a leader; sometimes to whoever (NOTLEADER). */
		unsigned c[SIM_MAX_NODES], n = 0;
		for (i = 0; i < s->n; i++)
			if (raft_state(sim_raft(s, i)) == RAFT_LEADER)
				c[n++] = i;
		if (n && !sim_chance(g, 30))
			sim_propose(s, c[sim_below(g, n)], sim_chance(g, 10));
		else if (sim_chance(g, 100))
			sim_propose(s, sim_below(g, s->n), false);
	}
}

/* --- one seed --------------------------------------------------------------------- */

static int sim_setup(struct sim *s)
{
	struct raft_configuration conf;
	int rv;

	s->n = s->o->nodes ? s->o->nodes : (sim_chance(&s->rng, 700) ? 3 : 5);
	s->threshold = s->o->threshold ? s->o->threshold : 4 + sim_below(&s->rng, 60);
	/* Without --installs the log is never compacted, so no follower
	 * needs InstallSnapshot: libraft 0.22.1's fixture corrupts its
	 * in-memory log when it truncates after an install (HACKING.md). */
	s->trailing = s->o->trailing >= 0 ? (unsigned)s->o->trailing
		      : s->o->installs	  ? sim_below(&s->rng, s->threshold + 1)
					  : SIM_NO_COMPACTION;
	s->max_latency = 15;
	if ((rv = raft_fixture_initialize(&s->f)) != 0)
		return rv;
	s->fixture_up = true;
	for (unsigned i = 0; i < s->n; i++) {
		struct sim_member *m = &s->m[i];
		m->sim = s;
		m->i = i;
		m->id = i + 1;
		snprintf(m->addr, sizeof(m->addr), "%u", i + 1);
		if (sim_member_state_init(m) != 0)
			return RAFT_NOMEM;
		if ((rv = raft_fixture_grow(&s->f, &m->fsm)) != 0)
			return rv;
		sim_io_wrap(m);
		s->alive[i] = true;
		s->disk_latency[i] = m->disk_target = 10; /* the fixture's defaults */
		s->net_latency[i] = m->net_target = 15;
	}
	s->empty_state = sim_state_hash(&s->m[0]) | 1;
	for (unsigned i = 0; i < s->n; i++) {
		struct raft *r = sim_raft(s, i);
		if (s->o->verbose < 2)
			r->tracer = &sim_quiet_tracer;
		raft_set_pre_vote(r, true);
		raft_set_max_inflight_entries(r, 2048);
		raft_set_snapshot_threshold(r, s->threshold);
		raft_set_snapshot_trailing(r, s->trailing);
		raft_fixture_set_randomized_election_timeout(&s->f, i, 1000 + sim_below(&s->rng, 1000));
	}
	if ((rv = raft_fixture_configuration(&s->f, s->n, &conf)) != 0)
		return rv;
	rv = raft_fixture_bootstrap(&s->f, &conf);
	raft_configuration_close(&conf);
	if (rv != 0)
		return rv;
	raft_fixture_hook(&s->f, sim_after_step);
	return raft_fixture_start(&s->f);
}

static bool sim_all_applied(struct raft_fixture *f, void *arg)
{
	struct sim *s = SIM_CONTAINER(f, struct sim, f);
	uint64_t index = *(uint64_t *)arg;
	if (s->failed)
		return true;
	for (unsigned i = 0; i < s->n; i++)
		if (!s->down[i] && raft_last_applied(sim_raft(s, i)) < index)
			return false;
	return true;
}

/* Heals everything and checks that every member catches up with all that
 * was ever committed and with one new entry, then that every acknowledged
 * proposal is the committed entry at its index. */
static void sim_settle(struct sim *s)
{
	uint64_t final = 0;

	s->calm = true;
	for (unsigned i = 0; i < s->n; i++) {
		struct sim_member *m = &s->m[i];
		raft_fixture_io_fault(&s->f, i, -1, 0);
		/* Disks recover and connections come back; requests already
		 * queued keep their completion times. */
		m->stall_until = 0;
		m->send_fail = 0;
		memset(m->link_down, 0, sizeof(m->link_down));
	}
	sim_heal_links(s);
	for (unsigned i = 0; i < s->n; i++) {
		/* An I/O fault can leave a member unavailable for good (libraft
		 * stops on a failed term or vote write): a restarted process
		 * would come back, a fixture member cannot.  It is left out of
		 * the catch-up checks below. */
		if (raft_state(sim_raft(s, i)) == RAFT_UNAVAILABLE) {
			sim_log(s, "member %u is unavailable", i + 1);
			s->down[i] = true;
			s->st.unavailable++;
		}
		if (!s->alive[i]) {
			sim_revive(s, i);
		}
	}
	s->settling = true;
	sim_log(s, "healed");
	for (int attempt = 0; attempt < 10 && !final && !s->failed; attempt++) {
		unsigned l;
		if (!raft_fixture_step_until_has_leader(&s->f, SIM_SETTLE_MS))
			break;
		l = raft_fixture_leader_index(&s->f);
		final = sim_propose(s, l, false);
		if (final && !raft_fixture_step_until(&s->f, sim_all_applied, &final, SIM_SETTLE_MS))
			final = 0;
		else if (final && s->subs[s->n_subs - 1]->status != 0)
			final = 0;
	}
	if (s->failed)
		return;
	if (!final) {
		sim_fail(s, "no progress within %u simulated seconds after healing (leader %llu)",
			 SIM_SETTLE_MS / 1000, (unsigned long long)s->f.leader_id);
		return;
	}
	/* A leader may have committed more (a barrier after an election)
	 * than its followers know of yet: give them the time to hear it. */
	for (uint64_t want = 0; want != s->max_commit && !s->failed;) {
		want = s->max_commit;
		if (!raft_fixture_step_until(&s->f, sim_all_applied, &want, SIM_SETTLE_MS))
			break;
	}
	for (unsigned i = 0; i < s->n; i++) {
		uint64_t a = raft_last_applied(sim_raft(s, i));
		if (s->down[i])
			continue;
		uint32_t want, got = sim_state_hash(&s->m[i]) | 1;
		if (a < s->max_commit)
			sim_fail(s, "member %u applied up to %" PRIu64 " but index %" PRIu64
				    " was committed",
				 i + 1, a, s->max_commit);
		sim_state_at(s, a, &want);
		if ((want | 1) != got)
			sim_fail(s, "member %u ends with state %08x, %08x expected at index %" PRIu64,
				 i + 1, got, want | 1, a);
	}
	for (size_t k = 0; k < s->n_subs; k++) {
		struct sim_sub *sub = s->subs[k];
		if (!sub->acked)
			continue;
		if (sub->index >= s->n_idx || !s->idx[sub->index].committed ||
		    s->idx[sub->index].sub != sub->id)
			sim_fail(s, "acknowledged proposal %" PRIu64 " is not the entry at index %" PRIu64,
				 sub->id, sub->index);
	}
}

static void sim_teardown(struct sim *s)
{
	if (s->fixture_up)
		raft_fixture_close(&s->f);
	for (unsigned i = 0; i < s->n; i++)
		sim_member_state_close(&s->m[i]);
	for (size_t k = 0; k < s->n_subs; k++)
		free(s->subs[k]);
	free(s->subs);
	free(s->cmds);
	free(s->idx);
	free(s->term_leader);
}

/* Runs one seed: 0 passed, 1 violation (s->msg says which). */
static int sim_run(const struct sim_opts *o, uint64_t seed, uint64_t *digest, struct sim *s)
{
	int rv;

	memset(s, 0, sizeof(*s));
	s->o = o;
	s->seed = seed;
	sim_rng_seed(&s->rng, seed);
	sim_current = s;
	rv = sim_setup(s);
	if (rv != 0) {
		snprintf(s->msg, sizeof(s->msg), "fixture setup failed: %s", raft_strerror(rv));
		s->failed = true;
	}
	for (unsigned k = 0; k < o->steps && !s->failed; k++) {
		sim_chaos(s);
		if (!s->failed)
			raft_fixture_step(&s->f);
	}
	if (!s->failed)
		sim_settle(s);
	*digest = s->digest;
	sim_teardown(s);
	sim_current = NULL;
	return s->failed ? 1 : 0;
}

/* --- main -------------------------------------------------------------------------- */

static void sim_put_str(const char *p)
{
	ssize_t w = write(2, p, strlen(p));
	(void)w;
}

/* A crash inside libraft (its own checks abort; a NULL dereference) ends
 * the process: say which seed, and how to replay it. */
static void sim_crash(int sig)
{
	char num[32];
	int k = (int)sizeof(num) - 1;
	uint64_t v = sim_current ? sim_current->seed : 0;
	num[k] = 0;
	do {
		num[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v && k > 0);
	sim_put_str("\nraftkv-sim: CRASH (signal ");
	sim_put_str(sig == SIGSEGV ? "SEGV" : sig == SIGABRT ? "ABRT" : sig == SIGBUS ? "BUS" : "FPE");
	sim_put_str(") in seed ");
	sim_put_str(num + k);
	sim_put_str("\nreproduce: ");
	sim_put_str(sim_repro);
	sim_put_str("\n");
	signal(sig, SIG_DFL);
	raise(sig);
}

static void sim_make_repro(const struct sim_opts *o, uint64_t seed)
{
	int k = snprintf(sim_repro, sizeof(sim_repro), "%s --seeds 1 --start %" PRIu64 " --steps %u",
			 o->argv0, seed, o->steps);
	if (o->nodes)
		k += snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " --nodes %u", o->nodes);
	if (o->threshold)
		k += snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " --threshold %u",
			      o->threshold);
	if (o->trailing >= 0)
		k += snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " --trailing %d",
			      o->trailing);
	if (o->faults)
		k += snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " --faults");
	if (o->installs)
		k += snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " --installs");
	if (o->reorder)
		k += snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " --reorder");
	if (o->plant)
		k += snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " --plant %s",
			      o->plant == PLANT_APPLY ? "apply" : "disk-order");
	snprintf(sim_repro + k, sizeof(sim_repro) - (size_t)k, " -v");
}

static void sim_usage(FILE *out)
{
	fprintf(out,
		"usage: raftkv-sim [--seeds N] [--start S] [--steps N] [--nodes 3|5]\n"
		"                  [--threshold N] [--trailing N] [--faults] [--installs]\n"
		"                  [--reorder] [--plant apply|disk-order]\n"
		"                  [--twice] [-q] [-v [-v]]\n"
		"Runs raftkv's state machine on libraft's in-memory fixture for seeds S..S+N-1\n"
		"(default: %u seeds from 1, %u steps each) and checks, on every step, equal state\n"
		"at equal index, that committed entries never change and that acknowledged\n"
		"commands apply exactly once.  Exit 0: all passed; 1: a violation (the failing\n"
		"seeds and a command line replaying each are printed); 2: bad usage.\n"
		"  --threshold  snapshot threshold (default: 4..63, by seed)\n"
		"  --trailing   snapshot trailing (default: never compact the log)\n"
		"  --installs   small trailing, so lagging followers get InstallSnapshot;\n"
		"               hits libraft 0.22.1 fixture bugs (HACKING.md), not in CI\n"
		"  --faults     raft_fixture_io_fault on random members; hits libraft\n"
		"               0.22.1 failed-I/O bugs (HACKING.md), not in CI\n"
		"  --reorder    latency changes may reorder messages on a link (TCP does\n"
		"               not); libraft 0.22.1 can then stall a follower, not in CI\n"
		"  --plant      a planted bug every seed should fail on: apply (member 2\n"
		"               skips entries) or disk-order (writes may overtake each\n"
		"               other); shows the checks still catch what they must\n"
		"  --twice      run every seed twice and compare digests (determinism)\n"
		"  -q           print failures and the summary only\n"
		"  -v           trace faults, proposals and violations to stderr; -v -v adds\n"
		"               libraft's and the fsm's own log lines\n"
		"Runs without address randomisation (re-executes itself) unless\n"
		"RAFTKV_SIM_ASLR is set (needed under valgrind).\n",
		SIM_DEFAULT_SEEDS, SIM_DEFAULT_STEPS);
}

static bool sim_num(const char *a, uint64_t *out)
{
	char *end;
	unsigned long long v;
	if (!a || !*a)
		return false;
	v = strtoull(a, &end, 10);
	if (*end)
		return false;
	*out = v;
	return true;
}

static int sim_parse(struct sim_opts *o, int argc, char **argv)
{
	o->seeds = SIM_DEFAULT_SEEDS;
	o->start = 1;
	o->steps = SIM_DEFAULT_STEPS;
	o->trailing = -1;
	o->argv0 = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n = 0;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			sim_usage(stdout);
			exit(0);
		} else if (!strcmp(a, "-q")) {
			o->quiet = true;
		} else if (!strcmp(a, "-v")) {
			o->verbose++;
		} else if (!strcmp(a, "--twice")) {
			o->twice = true;
		} else if (!strcmp(a, "--faults")) {
			o->faults = true;
		} else if (!strcmp(a, "--installs")) {
			o->installs = true;
		} else if (!strcmp(a, "--reorder")) {
			o->reorder = true;
		} else if (!strcmp(a, "--plant") && v && !strcmp(v, "apply")) {
			o->plant = PLANT_APPLY;
			i++;
		} else if (!strcmp(a, "--plant") && v && !strcmp(v, "disk-order")) {
			o->plant = PLANT_DISK_ORDER;
			i++;
		} else if (!strcmp(a, "--seeds") && sim_num(v, &n) && n > 0) {
			o->seeds = n;
			i++;
		} else if ((!strcmp(a, "--start") || !strcmp(a, "--seed")) && sim_num(v, &n)) {
			o->start = n;
			if (!strcmp(a, "--seed"))
				o->seeds = 1;
			i++;
		} else if (!strcmp(a, "--steps") && sim_num(v, &n) && n <= 100000000) {
			o->steps = (unsigned)n;
			i++;
		} else if (!strcmp(a, "--nodes") && sim_num(v, &n) && n >= 1 && n <= SIM_MAX_NODES) {
			o->nodes = (unsigned)n;
			i++;
		} else if (!strcmp(a, "--threshold") && sim_num(v, &n) && n >= 1 && n <= 1000000) {
			o->threshold = (unsigned)n;
			i++;
		} else if (!strcmp(a, "--trailing") && sim_num(v, &n) && n <= 1000000) {
			o->trailing = (int)n;
			i++;
		} else {
			fprintf(stderr, "raftkv-sim: bad argument '%s'%s%s\n", a, v ? " " : "",
				v ? "(or its value)" : "");
			sim_usage(stderr);
			return -1;
		}
	}
	return 0;
}

/* alarm.c's quota half (alarm_quota_check) proposes through prop, which the simulation does not link: it proposes
 * with raft_apply itself and never calls alarm_quota_check.  Reaching this
 * would be a bug of the simulator. */
int prop_submit(struct prop *p, enum cmd_type type, const uint8_t *payload, size_t len,
		prop_done_cb cb, void *arg)
{
	(void)p, (void)type, (void)payload, (void)len, (void)cb, (void)arg;
	fprintf(stderr, "raftkv-sim: prop_submit called: the simulator has no prop\n");
	abort();
}

int main(int argc, char **argv)
{
	static struct sim s; /* large: keep it off the stack */
	struct sim_opts o;
	uint64_t passed = 0, failed = 0, steps = 0, sim_ms = 0, first_digest = 0;
	uint64_t totals[13] = {0};
	struct timespec t0, t1;
	double secs;

	/* Runs depend on heap addresses in rare cases (a seed rerun in the
	 * same process, or in another process, can differ: HACKING.md), so
	 * the simulation runs without address randomisation; the same command
	 * line is then the same run.  Re-executing once is enough; if it
	 * cannot be done, the run goes on randomised. */
	{
		int pers = personality(0xffffffff);
		if (pers != -1 && !(pers & ADDR_NO_RANDOMIZE) && !getenv("RAFTKV_SIM_ASLR") &&
		    personality((unsigned long)pers | ADDR_NO_RANDOMIZE) != -1) {
			execv("/proc/self/exe", argv);
			personality((unsigned long)pers);
		}
	}
	memset(&o, 0, sizeof(o));
	if (sim_parse(&o, argc, argv) != 0)
		return 2;
	log_threshold = o.verbose >= 2 ? LOG_DEBUG : LOG_FATAL;
	sim_trace_level = o.verbose;
	signal(SIGSEGV, sim_crash);
	signal(SIGABRT, sim_crash);
	signal(SIGBUS, sim_crash);
	signal(SIGFPE, sim_crash);
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Wall time for the summary only: nothing simulated reads it. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t k = 0; k < o.seeds; k++) {
		uint64_t seed = o.start + k, digest = 0, again = 0;
		int bad;

		sim_make_repro(&o, seed);
		bad = sim_run(&o, seed, &digest, &s);
		if (!bad && (o.twice || k == 0)) {
			/* The same seed again must be the same run, bit for bit. */
			struct sim_opts q = o;
			static struct sim s2;
			q.verbose = 0;
			sim_run(&q, seed, &again, &s2);
			if (again != digest) {
				bad = 1;
				snprintf(s.msg, sizeof(s.msg),
					 "not deterministic: digest %016" PRIx64 " then %016" PRIx64,
					 digest, again);
			}
		}
		if (k == 0)
			first_digest = digest;
		steps += s.steps;
		sim_ms += (uint64_t)s.f.time;
		{
			uint64_t *v = &s.st.proposed;
			for (int j = 0; j < 13; j++)
				totals[j] += v[j];
		}
		if (bad) {
			failed++;
			printf("seed %" PRIu64 ": FAIL: %s\n  reproduce: %s\n", seed, s.msg, sim_repro);
		} else {
			passed++;
			if (!o.quiet)
				printf("seed %" PRIu64 ": ok  n=%u snap=%u/%u steps=%" PRIu64
				       " t=%.1fs proposed=%" PRIu64 " acked=%" PRIu64 " applied=%" PRIu64
				       " snapshots=%" PRIu64 " restores=%" PRIu64 " unavailable=%" PRIu64
				       " leaders=%" PRIu64 " digest=%016" PRIx64 "\n",
				       seed, s.n, s.threshold, s.trailing, s.steps, (double)s.f.time / 1e3,
				       s.st.proposed, s.st.acked, s.st.applied, s.st.snapshots,
				       s.st.restores, s.st.unavailable, s.st.leaders, digest);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("raftkv-sim: seeds %" PRIu64 "..%" PRIu64 ", %u steps each: %" PRIu64 " steps, %.0f s "
	       "simulated, %.1f s wall; proposed %" PRIu64 " (refused %" PRIu64 "), acked %" PRIu64
	       ", applies %" PRIu64 ", snapshots %" PRIu64 ", installs/restores %" PRIu64
	       ", left unavailable %" PRIu64 ", pauses %" PRIu64 ", partitions %" PRIu64
	       ", --faults %" PRIu64 ", leaders %" PRIu64 ", disk stalls %" PRIu64
	       ", failed sends %" PRIu64 "; first seed digest %016" PRIx64 "\n",
	       o.start, o.start + o.seeds - 1, o.steps, steps, (double)sim_ms / 1e3, secs, totals[0],
	       totals[1], totals[2], totals[3], totals[4], totals[5], totals[6], totals[7],
	       totals[8], totals[9], totals[10], totals[11], totals[12], first_digest);
	printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
	return failed ? 1 : 0;
}
