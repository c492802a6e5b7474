/*
 * svc_lease: etcd's Lease service (etcdserver/api/v3rpc/lease.go and
 * v3_server.go, 3.4) over the lease table (lease.c).
 *
 *   LeaseGrant, LeaseRevoke  writes: proposed through prop like KV writes
 *                   (CMD_LEASE_GRANT / CMD_LEASE_REVOKE); the fsm applies
 *                   them on every member.  Grant raises the TTL to etcd's
 *                   minimum here, before proposing, so apply stays free of
 *                   member configuration.
 *   LeaseKeepAlive  bidi stream; each request renews on the leader without
 *                   raft (etcd 3.4: deadlines are leader-local state) and is
 *                   answered {ID, TTL}; an unknown or expired lease gets
 *                   TTL 0, not an error.
 *   LeaseTimeToLive remaining TTL from the leader's deadlines; an unknown
 *                   lease gets TTL -1, not an error.
 *   LeaseLeases     the local table (etcd answers it on any member).
 *
 * Expiry: a repeating uv timer, on every member, first follows leadership
 * (node has no state callback): on becoming leader the table is promoted
 * (every lease gets its full TTL plus an election timeout from now, so a
 * failover or a restart expires nothing early), on losing it demoted.
 * Then, on the leader only, it takes the leases whose deadline passed,
 * earliest first and at most SVC_LEASE_REVOKES_PER_TICK at a time (etcd's
 * revoke rate), and proposes a revoke for each: keys are deleted only
 * when that entry is applied, on every member alike.
 *
 * Followers: keep-alive and time-to-live need the leader's deadlines, and
 * grant/revoke are writes: a follower that knows its leader relays them
 * (forward.h); without a leader they answer "no leader", as prop does.
 */
#include <stdint.h>
#include <inttypes.h>
#include <stdlib.h>

#include <uv.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/config.h"
#include "server/forward.h"
#include "server/lease.h"
#include "server/metrics.h"
#include "server/mvcc.h"
#include "server/node.h"
#include "server/prop.h"
#include "server/server.h"
#include "server/svc.h"

#define SVC_LEASE_TICK_MS 100u
/* etcd revokes at most leaseRevokeRate (1000) leases per second. */
#define SVC_LEASE_REVOKES_PER_TICK 100u

struct svc_lease {
	struct server *srv;
	uv_timer_t timer;
	bool timer_open;
	int64_t min_ttl;    /* etcd's minLeaseTTL for our timings */
	uint64_t extend_us; /* added on promotion: one election timeout */
};

/* Deadlines in microseconds of the monotonic clock: etcd computes the
 * remaining TTL from nanoseconds, so a lease asked about just after its
 * grant shows TTL - 1, not TTL. */
static uint64_t svc_lease_now(const struct server *s)
{
	(void)s;
	return uv_hrtime() / 1000;
}

/* Follows leadership: promote on gaining it, demote on losing it. */
static void svc_lease_sync(struct server *s)
{
	struct svc_lease *sl = s->lease_svc;
	bool lead = node_is_leader(&s->node);

	if (lead == lease_table_is_primary(s->leases))
		return;
	if (lead) {
		lease_table_promote(s->leases, svc_lease_now(s), sl->extend_us);
		LOGI("leader: %" PRIu64 " leases restart with their full TTL + %" PRIu64 " ms",
		     lease_table_count(s->leases), sl->extend_us / 1000);
	} else {
		lease_table_demote(s->leases);
		LOGI("no longer leader: lease expiry is up to the new leader");
	}
}

/* --- expiry ------------------------------------------------------------- */

static void svc_lease_expire_done(void *arg, int err, const ProtobufCMessage *resp)
{
	(void)arg;
	(void)resp;
	/* Lost revokes are proposed again LEASE_RETRY_US later (lease.h);
	 * "not found" means a client revoked it first. */
	if (err && err != -KV_ELEASENOTFOUND)
		LOGD("revoking an expired lease failed: %s", kv_err_name(err));
}

static int svc_lease_propose_revoke(struct server *s, int64_t id)
{
	Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	uint8_t buf[16];
	size_t n;

	req.id = id;
	n = etcdserverpb__lease_revoke_request__pack(&req, buf);
	return prop_submit(&s->prop, CMD_LEASE_REVOKE, buf, n, svc_lease_expire_done, NULL);
}

static void svc_lease_tick(uv_timer_t *h)
{
	struct svc_lease *sl = h->data;
	struct server *s = sl->srv;
	uint64_t now = svc_lease_now(s);
	unsigned n = 0;
	int64_t id;
	int rv;

	if (s->stopping)
		return;
	svc_lease_sync(s);
	while (n < SVC_LEASE_REVOKES_PER_TICK && lease_table_next_expired(s->leases, now, &id)) {
		n++;
		metrics.lease_expired++;
		rv = svc_lease_propose_revoke(s, id);
		LOGD("lease %016" PRIx64 " expired: %s", (uint64_t)id,
		     rv ? kv_err_name(rv) : "revoke proposed");
		if (rv == -KV_ENOLEADER || rv == -KV_ESTOPPED)
			break;
	}
}

/* --- lifecycle ---------------------------------------------------------- */

int svc_lease_init(struct server *s)
{
	struct svc_lease *sl = calloc(1, sizeof(*sl));
	unsigned hb = s->cfg ? s->cfg->heartbeat_ms : 100, el = s->cfg ? s->cfg->election_ms : 1000;

	if (sl == NULL)
		return -KV_ENOMEM;
	s->leases = lease_table_new();
	if (s->leases == NULL) {
		free(sl);
		return -KV_ENOMEM;
	}
	lease_table_set_id_salt(s->leases, s->cluster_id);
	sl->srv = s;
	sl->min_ttl = lease_min_ttl(hb, el);
	sl->extend_us = (uint64_t)el * 1000;
	s->lease_svc = sl;
	s->kvs.lease = lease_table_kvs_ops(s->leases);
	return 0;
}

int svc_lease_start(struct server *s)
{
	struct svc_lease *sl = s->lease_svc;
	int rv;

	if ((rv = uv_timer_init(s->loop, &sl->timer)) != 0)
		return -KV_ENOMEM;
	sl->timer.data = sl;
	sl->timer_open = true;
	uv_timer_start(&sl->timer, svc_lease_tick, SVC_LEASE_TICK_MS, SVC_LEASE_TICK_MS);
	return 0;
}

void svc_lease_stop(struct server *s)
{
	struct svc_lease *sl = s->lease_svc;
	if (sl && sl->timer_open && !uv_is_closing((uv_handle_t *)&sl->timer))
		uv_close((uv_handle_t *)&sl->timer, NULL);
}

void svc_lease_free(struct server *s)
{
	/* The loop has ended: the timer, if any, is closed. */
	if (s->kvs.lease && s->leases && s->kvs.lease == lease_table_kvs_ops(s->leases))
		s->kvs.lease = NULL;
	lease_table_free(s->leases);
	s->leases = NULL;
	free(s->lease_svc);
	s->lease_svc = NULL;
}

/* --- helpers ------------------------------------------------------------ */

static Etcdserverpb__ResponseHeader *svc_lease_header(struct server *s, struct arena *a)
{
	Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof(*h));
	if (h == NULL)
		return NULL;
	etcdserverpb__response_header__init(h);
	svc_header_fill(s, h);
	h->revision = mvcc_rev(s->mvcc);
	return h;
}

static void svc_lease_reply(struct rpc_call *call, const ProtobufCMessage *resp)
{
	rpc_call_send(call, resp);
	rpc_call_finish(call, 0);
}

static void svc_lease_write_done(void *arg, int err, const ProtobufCMessage *resp)
{
	struct rpc_call *call = arg;
	struct svc_response *r = (struct svc_response *)resp;

	if (err) {
		rpc_call_finish(call, err);
	} else {
		if (r->header)
			svc_header_fill(rpc_call_server(call), r->header);
		svc_lease_reply(call, resp);
	}
	rpc_call_release(call);
}

static void svc_lease_propose(struct rpc_call *call, enum cmd_type type, const uint8_t *msg,
			      size_t len)
{
	struct server *s = rpc_call_server(call);
	int rv;

	if (svc_unfit(call))
		return;
	/* A follower relays the request to the leader (forward.h). */
	if (forward_try(call,
			type == CMD_LEASE_GRANT ? "/etcdserverpb.Lease/LeaseGrant"
						: "/etcdserverpb.Lease/LeaseRevoke",
			msg, len))
		return;
	rpc_call_hold(call);
	rv = prop_submit(&s->prop, type, msg, len, svc_lease_write_done, call);
	if (rv) {
		rpc_call_finish(call, rv);
		rpc_call_release(call);
	}
}

/*
 * The renewal itself.  On the leader: the table's deadline moves to now +
 * TTL.  Elsewhere the leader must do it: that is where a follower will
 * forward the keep-alive (issue 3); until then it fails like a write on a
 * follower.  0 with *ttl, -KV_ELEASENOTFOUND, or another error for the
 * stream.
 */
static int svc_lease_renew(struct server *s, int64_t id, int64_t *ttl)
{
	int rv;

	svc_lease_sync(s);
	rv = lease_table_renew(s->leases, id, svc_lease_now(s), ttl);
	metrics.lease_renewed += rv == 0;
	if (rv == -KV_ENOTLEADER)
		rv = -KV_ENOLEADER;
	return rv;
}

/* --- handlers ----------------------------------------------------------- */

void svc_lease_grant(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__LeaseGrantRequest *req;
	uint8_t buf[32]; /* two int64 varints with their tags: at most 22 bytes */
	struct arena a;
	size_t n;

	arena_init(&a);
	req = etcdserverpb__lease_grant_request__unpack(arena_pb_allocator(&a), len, msg);
	if (req == NULL) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	if (req->ttl > LEASE_MAX_TTL) {
		arena_close(&a);
		rpc_call_finish(call, -KV_ELEASETTLTOOLARGE);
		return;
	}
	/* etcd's lessor raises any shorter TTL (0 and negative included). */
	if (req->ttl < s->lease_svc->min_ttl)
		req->ttl = s->lease_svc->min_ttl;
	/* Only the two fields go into the log. */
	req->base.n_unknown_fields = 0;
	if (etcdserverpb__lease_grant_request__get_packed_size(req) > sizeof(buf)) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EINTERNAL);
		return;
	}
	n = etcdserverpb__lease_grant_request__pack(req, buf);
	arena_close(&a);
	svc_lease_propose(call, CMD_LEASE_GRANT, buf, n);
}

void svc_lease_revoke(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct arena a;
	Etcdserverpb__LeaseRevokeRequest *req;

	arena_init(&a);
	req = etcdserverpb__lease_revoke_request__unpack(arena_pb_allocator(&a), len, msg);
	arena_close(&a);
	if (req == NULL)
		rpc_call_finish(call, -KV_EMALFORMED);
	else
		svc_lease_propose(call, CMD_LEASE_REVOKE, msg, len);
}

void svc_lease_keep_alive(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	Etcdserverpb__LeaseKeepAliveRequest *req;
	struct arena a;
	int64_t ttl = 0;
	int rv;

	if (rpc_call_gone(call) || svc_unfit(call))
		return;
	arena_init(&a);
	req = etcdserverpb__lease_keep_alive_request__unpack(arena_pb_allocator(&a), len, msg);
	if (req == NULL) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	/* The header is taken before the renewal (etcd does the same): its
	 * revision is never past the point where the lease was alive. */
	/* Only the leader knows the deadlines: a follower relays the renewal
	 * and its answer (forward.h). */
	svc_lease_sync(s);
	if (!lease_table_is_primary(s->leases) && forward_try_keep_alive(call, msg, len)) {
		arena_close(&a);
		return;
	}
	svc_header_fill(s, &hdr);
	hdr.revision = mvcc_rev(s->mvcc);
	resp.header = &hdr;
	resp.id = req->id;
	rv = svc_lease_renew(s, req->id, &ttl);
	arena_close(&a);
	if (rv == -KV_ELEASENOTFOUND) {
		rv = 0;
		ttl = 0;
	}
	if (rv) {
		rpc_call_finish(call, rv);
		return;
	}
	resp.ttl = ttl;
	rv = rpc_call_send(call, &resp.base);
	if (rv != 0 && rv != -KV_ECANCELED)
		rpc_call_finish(call, rv);
}

/* A keep-alive stream's data word counts the renewals relayed to the
 * leader and not yet answered (in steps of 2) and records the client's
 * half-close (bit 0): no allocation, nothing to free. */
#define SVC_KA_HALF_CLOSED ((uintptr_t)1)

void svc_lease_keep_alive_relay_begin(struct rpc_call *call)
{
	rpc_call_set_data(call, (void *)((uintptr_t)rpc_call_data(call) + 2));
}

void svc_lease_keep_alive_relay_end(struct rpc_call *call)
{
	uintptr_t st = (uintptr_t)rpc_call_data(call) - 2;
	rpc_call_set_data(call, (void *)st);
	if (st == SVC_KA_HALF_CLOSED)
		rpc_call_finish(call, 0);
}

void svc_lease_keep_alive_half_close(struct rpc_call *call)
{
	uintptr_t st = (uintptr_t)rpc_call_data(call) | SVC_KA_HALF_CLOSED;
	rpc_call_set_data(call, (void *)st);
	/* etcd's leaseKeepAlive returns nil on io.EOF: status OK.  Clients
	 * such as python3-etcd3 wait for that end before returning, so the
	 * answers to renewals still with the leader must go out first. */
	if (st == SVC_KA_HALF_CLOSED)
		rpc_call_finish(call, 0);
}

struct svc_lease_keys {
	struct arena *a;
	ProtobufCBinaryData *v;
	size_t n;
};

static void svc_lease_key(void *arg, const uint8_t *key, size_t len)
{
	struct svc_lease_keys *k = arg;
	k->v[k->n].data = (uint8_t *)key; /* packed before the table changes */
	k->v[k->n].len = len;
	k->n++;
}

void svc_lease_time_to_live(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__LeaseTimeToLiveResponse resp = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
	Etcdserverpb__LeaseTimeToLiveRequest *req;
	struct lease_info info;
	struct arena a;

	if (svc_unfit(call))
		return;
	arena_init(&a);
	req = etcdserverpb__lease_time_to_live_request__unpack(arena_pb_allocator(&a), len, msg);
	if (req == NULL) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	/* Remaining time is the leader's to tell: a follower relays the
	 * query (forward.h), or fails as a write would without a leader. */
	svc_lease_sync(s);
	if (!lease_table_is_primary(s->leases)) {
		arena_close(&a);
		if (!forward_try(call, "/etcdserverpb.Lease/LeaseTimeToLive", msg, len))
			rpc_call_finish(call, -KV_ENOLEADER);
		return;
	}
	resp.header = svc_lease_header(s, &a);
	if (resp.header == NULL)
		goto nomem;
	resp.id = req->id;
	if (!lease_table_get(s->leases, req->id, &info)) {
		resp.ttl = -1;
	} else {
		resp.ttl = lease_remaining_seconds(&info, svc_lease_now(s));
		resp.grantedttl = info.ttl;
		if (req->keys && info.nkeys > 0) {
			struct svc_lease_keys k = {&a, NULL, 0};
			if (info.nkeys > SIZE_MAX / sizeof(*k.v) ||
			    !(k.v = arena_alloc(&a, (size_t)info.nkeys * sizeof(*k.v))))
				goto nomem;
			lease_table_keys(s->leases, req->id, svc_lease_key, &k);
			resp.keys = k.v;
			resp.n_keys = k.n;
		}
	}
	svc_lease_reply(call, &resp.base);
	arena_close(&a);
	return;
nomem:
	arena_close(&a);
	rpc_call_finish(call, -KV_ENOMEM);
}

struct svc_lease_list {
	Etcdserverpb__LeaseStatus **v;
	Etcdserverpb__LeaseStatus *st;
	size_t n;
};

static void svc_lease_list_one(void *arg, const struct lease_info *info)
{
	struct svc_lease_list *l = arg;
	Etcdserverpb__LeaseStatus *st = &l->st[l->n];
	etcdserverpb__lease_status__init(st);
	st->id = info->id;
	l->v[l->n++] = st;
}

void svc_lease_leases(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
	Etcdserverpb__LeaseLeasesRequest *req;
	struct svc_lease_list l = {NULL, NULL, 0};
	uint64_t count;
	struct arena a;

	if (svc_unfit(call))
		return;
	arena_init(&a);
	req = etcdserverpb__lease_leases_request__unpack(arena_pb_allocator(&a), len, msg);
	if (req == NULL) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	svc_lease_sync(s); /* the leader lists by deadline, as etcd */
	resp.header = svc_lease_header(s, &a);
	count = lease_table_count(s->leases);
	if (resp.header == NULL)
		goto nomem;
	if (count > 0) {
		if (count > SIZE_MAX / (sizeof(*l.v) + sizeof(*l.st)))
			goto nomem;
		l.v = arena_alloc(&a, (size_t)count * sizeof(*l.v));
		l.st = arena_alloc(&a, (size_t)count * sizeof(*l.st));
		if (l.v == NULL || l.st == NULL)
			goto nomem;
		lease_table_each(s->leases, svc_lease_list_one, &l);
		resp.leases = l.v;
		resp.n_leases = l.n;
	}
	svc_lease_reply(call, &resp.base);
	arena_close(&a);
	return;
nomem:
	arena_close(&a);
	rpc_call_finish(call, -KV_ENOMEM);
}
