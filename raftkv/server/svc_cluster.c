/*
 * svc_cluster: etcd's Cluster service (MemberList, MemberAdd, MemberRemove,
 * MemberUpdate, MemberPromote) and the leader's side of membership.
 *
 * The member table (members.h) is replicated state and the source of truth:
 *
 *   MemberList   answered from this member's table, as etcd 3.4 does (a
 *                learner refuses it, as etcd's learners do);
 *   MemberAdd/Remove/Update/Promote
 *                on the leader: checked here as etcd's server checks them
 *                before proposing (URLs, strict reconfiguration checks,
 *                learner in sync), then proposed unchanged (CMD_MEMBER_*);
 *                the fsm validates again and applies; the answer is the
 *                applied result.  A follower cannot propose (libraft): it
 *                relays the call to the leader (forward.h: the leader's
 *                client URLs from this table, through the client library)
 *                and its answer back; with no leader known, "etcdserver:
 *                no leader".
 *
 * libraft's configuration follows the table, one change at a time, driven
 * by the leader from a timer (svc_cluster_reconcile): a member the table
 * has and raft has not is raft_add'ed (spare) then assigned RAFT_STANDBY,
 * which replicates without voting; a learner stays there, a voter is
 * assigned RAFT_VOTER once its log has (almost) caught up, so a member that
 * was added but not started never counts towards the quorum (etcd counts
 * it at once); a member raft has and the table has not is raft_remove'd
 * (the leader removing itself steps down once that commits); a member whose
 * peer URL moved is removed and added again.  The leader reconciles only
 * after a barrier of its own term completed, i.e. once its fsm has applied
 * everything committed before it took over: a lagging table would
 * otherwise undo changes.
 *
 * Also on the timer: the first leader of a new cluster proposes the
 * bootstrap table (CMD_MEMBER_INIT, from --initial-cluster); the leader
 * publishes its own name and client URLs (CMD_MEMBER_PUBLISH, etcd's
 * publish) when the table disagrees with its flags; a member that joined
 * learns the cluster id from the table; a member whose removal was applied
 * shuts down, as etcd's does, once it no longer leads.
 *
 * A follower publishes through the same relay: it asks the leader (not
 * etcd's API: /raftkv.Internal/MemberPublish, an etcdserverpb.Member) to
 * propose CMD_MEMBER_PUBLISH for it, every second until its table shows
 * the change.  The leader publishes itself first, so that followers find
 * its client URLs in the table.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <raft.h>
#include <uv.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/cmd.h"
#include "server/config.h"
#include "server/forward.h"
#include "server/members.h"
#include "server/node.h"
#include "server/prop.h"
#include "server/server.h"
#include "server/svc.h"

/* Reconcile and publish this often (and right after a change completes);
 * until this member is published, faster: it serves writes only from then
 * on, and a new cluster's start waits on a chain of table entries (INIT,
 * the leader's publish, ours) that slow ticks would each delay. */
#define SVC_CLUSTER_TICK_MS 100
#define SVC_CLUSTER_TICK_FAST_MS 10
/* How long our own removal must stand before this member shuts down. */
#define SVC_CLUSTER_REMOVED_GRACE_MS 3000
/* After a failed raft change, wait this long before the next. */
#define SVC_CLUSTER_BACKOFF_MS 1000
/* A follower asks the leader to publish it, then looks at its table again
 * this much later (a heartbeat or two brings the entry).  A member serves
 * writes only once published, so this is part of a new cluster's start. */
#define SVC_CLUSTER_PUBLISH_RETRY_MS 250
/* A standby becomes a voter once its log is within this many entries of
 * the leader's: libraft's catch-up round then closes the gap quickly. */
#define SVC_CLUSTER_CATCHUP_SLACK 64
/* etcd's readyPercent: a learner may be promoted once its log has 90% of
 * the leader's entries. */
#define SVC_CLUSTER_READY_PERCENT 90
/* etcd's HealthInterval: with --strict-reconfig-check, a reconfiguration
 * needs this member connected to the voters for at least this long. */
#define SVC_CLUSTER_HEALTH_INTERVAL_MS 5000

struct svc_cluster {
	struct server *srv;
	uv_timer_t timer;
	bool timer_started;

	uint64_t ready_term;   /* term whose barrier completed: the fsm caught up */
	uint64_t barrier_term; /* term of the barrier in flight, 0 if none */
	bool init_busy;        /* CMD_MEMBER_INIT in flight */
	bool publish_busy;     /* CMD_MEMBER_PUBLISH (ours) in flight */
	bool change_busy;      /* a raft configuration change in flight */
	uint64_t next_change;  /* loop time before which no change is tried */
	uint64_t next_publish;
	uint64_t next_warn;
	bool leaving;          /* shutting down because we were removed */
	uint64_t removed_since; /* loop time our removal was first seen, or 0 */

	/* A member about to leave raft is given the chance to apply its own
	 * removal first (so that it stops, as etcd's does): once it is out
	 * of the configuration the leader sends it nothing more. */
	uint64_t drain_id;       /* the member being waited for, 0: none */
	uint64_t drain_index;    /* our commit index when the wait began */
	uint64_t drain_deadline; /* loop time when we stop waiting */
};

/* Not etcd's: how a follower publishes itself through the leader. */
#define SVC_CLUSTER_PUBLISH_PATH "/raftkv.Internal/MemberPublish"

static struct svc_cluster *svc_cluster_of(struct server *s)
{
	return s->cluster_svc;
}

/* --- replies ---------------------------------------------------------------- */

/* Sends resp with its header filled (no revision: etcd's cluster header has
 * none) and ends the call. */
static void svc_cluster_reply(struct rpc_call *call, const ProtobufCMessage *resp)
{
	struct svc_response *r = (struct svc_response *)resp;
	if (!r->header) {
		rpc_call_finish(call, -KV_ENOMEM);
		return;
	}
	svc_header_fill(rpc_call_server(call), r->header);
	r->header->revision = 0;
	if (rpc_call_send(call, resp) == 0)
		rpc_call_finish(call, 0);
	else
		rpc_call_finish(call, -KV_ENOMEM);
}

/* --- MemberList ------------------------------------------------------------- */

static bool svc_cluster_self_is_learner(const struct server *s)
{
	const struct member *m = members_find(&s->members, s->member_id);
	return m && m->is_learner;
}

/* Before the bootstrap table is applied, what our flags say: the members of
 * --initial-cluster, unstarted but for ourselves. */
static int svc_cluster_flags_table(const struct server *s, struct members *t)
{
	const struct config *cfg = s->cfg;
	const char *token = cfg->initial_cluster_token ? cfg->initial_cluster_token : "etcd-cluster";
	int i, rv = 0;

	members_init(t);
	for (i = 0; rv == 0 && i < cfg->n_initial_cluster; i++) {
		const struct config_member *cm = &cfg->initial_cluster[i];
		size_t n = cm->n_peer_urls > 0 ? (size_t)cm->n_peer_urls : 0;
		uint64_t id = strcmp(cm->name, cfg->name) == 0 ? s->member_id
							       : members_id(cm->peer_urls, n, token);
		rv = members_insert(t, id, cm->peer_urls, n, false);
		if (rv == -KV_EMEMBEREXIST || rv == -KV_EPEERURLEXIST || rv == -KV_EMEMBERBADURLS)
			rv = 0; /* config.c reported these; show what we can */
	}
	return rv;
}

void svc_cluster_member_list(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MemberListResponse resp;
	Etcdserverpb__ResponseHeader h;
	struct members tmp;
	const struct members *t = &s->members;
	struct arena a;
	size_t i;
	int rv;

	(void)msg;
	(void)len; /* MemberListRequest has no field in 3.4 */
	if (svc_cluster_self_is_learner(s)) {
		rpc_call_finish(call, -KV_ELEARNERRPC);
		return;
	}
	arena_init(&a);
	members_init(&tmp);
	if (!t->initialized) {
		if ((rv = svc_cluster_flags_table(s, &tmp)))
			goto fail;
		t = &tmp;
	}
	etcdserverpb__member_list_response__init(&resp);
	etcdserverpb__response_header__init(&h);
	resp.header = &h;
	if ((rv = members_to_pb(t, &a, &resp.members, &resp.n_members)))
		goto fail;
	if (t == &tmp) {
		for (i = 0; i < resp.n_members; i++) {
			if (resp.members[i]->id != s->member_id)
				continue;
			resp.members[i]->name = s->cfg->name;
			resp.members[i]->clienturls = s->cfg->advertise_client_urls;
			resp.members[i]->n_clienturls = (size_t)s->cfg->n_advertise_client_urls;
		}
	}
	svc_cluster_reply(call, &resp.base);
	members_close(&tmp);
	arena_close(&a);
	return;
fail:
	members_close(&tmp);
	arena_close(&a);
	rpc_call_finish(call, rv);
}

/* --- changes: checks, then a proposal ------------------------------------------ */

/* 0 when this member may propose a membership change now: it leads, its
 * fsm has caught up in this term and the table exists.  Otherwise the call
 * is relayed to the leader (forward.h) or finished with the reason;
 * returns 1 then. */
static int svc_cluster_leader_only(struct rpc_call *call, const char *path, const uint8_t *msg,
				   size_t len)
{
	struct server *s = rpc_call_server(call);
	struct svc_cluster *c = svc_cluster_of(s);

	if (s->stopping || !c) {
		rpc_call_finish(call, -KV_ESTOPPED);
		return 1;
	}
	if (!node_is_leader(&s->node)) {
		if (!forward_try(call, path, msg, len))
			rpc_call_finish(call, -KV_ENOLEADER);
		return 1;
	}
	if (c->ready_term != node_term(&s->node) || !s->members.initialized) {
		/* Just elected: the table may still lag what was committed. */
		rpc_call_finish(call, -KV_ENOLEADER);
		return 1;
	}
	return 0;
}

static void svc_cluster_tick(uv_timer_t *timer);

/* Runs the timer now: a change completed, the next step may follow. */
static void svc_cluster_kick(struct svc_cluster *c)
{
	if (c && c->timer_started && !uv_is_closing((uv_handle_t *)&c->timer))
		uv_timer_start(&c->timer, svc_cluster_tick, 0, SVC_CLUSTER_TICK_MS);
}

static void svc_cluster_change_applied(void *arg, int err, const ProtobufCMessage *resp)
{
	struct rpc_call *call = arg;
	struct server *s = rpc_call_server(call);
	if (err)
		rpc_call_finish(call, err);
	else
		svc_cluster_reply(call, resp);
	svc_cluster_kick(svc_cluster_of(s));
	rpc_call_release(call);
}

static void svc_cluster_propose(struct rpc_call *call, enum cmd_type type, const uint8_t *msg,
				size_t len)
{
	struct server *s = rpc_call_server(call);
	int rv;
	rpc_call_hold(call);
	rv = prop_submit(&s->prop, type, msg, len, svc_cluster_change_applied, call);
	if (rv) {
		rpc_call_finish(call, rv);
		rpc_call_release(call);
	}
}

/* etcd's types.NewURLs, restricted to what a raft address can be made of:
 * http or https, host:port, no path. */
static int svc_cluster_check_urls(char *const *urls, size_t n)
{
	char addr[320];
	size_t i;
	if (n == 0 || n > MEMBERS_MAX_URLS)
		return -KV_EMEMBERBADURLS;
	for (i = 0; i < n; i++) {
		struct config_url u;
		char err[256];
		bool ok;
		if (!urls[i] || strlen(urls[i]) > MEMBERS_MAX_URL_BYTES ||
		    config_url_parse(urls[i], &u, err, sizeof(err)) != 0)
			return -KV_EMEMBERBADURLS;
		ok = u.host[0] != '\0' && u.port != 0;
		config_url_close(&u);
		if (!ok || node_peer_addr(urls[i], addr, sizeof(addr)) != 0)
			return -KV_EMEMBERBADURLS;
	}
	return 0;
}

/* --- strict reconfiguration checks -------------------------------------------
 * etcd 3.4 (--strict-reconfig-check, default true) refuses, before
 * proposing:
 *   MemberAdd of a voter that the started voters would not make a quorum
 *     with ("not enough started members"); then any MemberAdd, learners
 *     too, unless this member has been connected to every voter for 5 s
 *     ("unhealthy cluster");
 *   MemberRemove of a voter that would leave the started voters short of a
 *     quorum ("not enough started members"); then, unless the member is
 *     down right now, one that would leave fewer connected voters than a
 *     quorum ("unhealthy cluster");
 *   MemberPromote that the started voters would not make a quorum with.
 * "Started" is the member table's (a member publishes its name once it
 * runs); "connected" is the leader's raft connections (node.h), which
 * libraft keeps to every member it replicates to.  etcd checks on the
 * member that got the call; ours relay to the leader, which checks. */

static uint64_t svc_cluster_up_since(void *arg, uint64_t id)
{
	return node_peer_up_since(&((struct server *)arg)->node, id);
}

/* Loop time before which a connection must have come up to count. */
static uint64_t svc_cluster_health_since(const struct server *s)
{
	uint64_t now = uv_now(s->loop);
	return now > SVC_CLUSTER_HEALTH_INTERVAL_MS ? now - SVC_CLUSTER_HEALTH_INTERVAL_MS : 0;
}

/* Member ids come from the peer URLs and the token, so a member removed
 * and added again at the same URLs gets its old id.  Until the removal has
 * left the raft configuration, the leader still tracks that id's old
 * progress: re-added then, a member with a wiped log was stranded for good
 * (libraft ignores rejections below the match index it remembers).  So the
 * add waits for the removal to finish: "unhealthy cluster", which clients
 * retry. */
static int svc_cluster_may_reuse_id(struct server *s, char **urls, size_t n)
{
	const struct raft_configuration *conf = node_configuration(&s->node);
	uint64_t id = members_id(urls, n, s->members.token ? s->members.token : "");
	unsigned i;

	if (!conf || members_find(&s->members, id))
		return 0;
	for (i = 0; i < conf->n; i++)
		if (conf->servers[i].id == id) {
			LOGW("cluster: refusing to add member %016" PRIx64 " again before its removal "
			     "has left the raft configuration",
			     id);
			return -KV_EUNHEALTHY;
		}
	return 0;
}

static int svc_cluster_may_add(struct server *s, bool learner)
{
	if (!s->cfg->strict_reconfig_check)
		return 0;
	if (!learner && !members_ready_to_add_voter(&s->members))
		return -KV_EMEMBERNOTENOUGHSTARTED;
	if (!members_connected_fully(&s->members, s->member_id, svc_cluster_health_since(s),
				     svc_cluster_up_since, s)) {
		LOGW("cluster: refusing to add a member: this member has not been connected "
		     "to every voter for %d s",
		     SVC_CLUSTER_HEALTH_INTERVAL_MS / 1000);
		return -KV_EUNHEALTHY;
	}
	return 0;
}

static int svc_cluster_may_remove(struct server *s, const struct member *m)
{
	if (!s->cfg->strict_reconfig_check || m->is_learner)
		return 0;
	if (!members_ready_to_remove_voter(&s->members, m->id))
		return -KV_EMEMBERNOTENOUGHSTARTED;
	if (!members_remove_keeps_quorum(&s->members, s->member_id, m->id,
					 svc_cluster_health_since(s), svc_cluster_up_since, s)) {
		LOGW("cluster: refusing to remove member %016" PRIx64 ": the voters connected "
		     "to this member would no longer make a quorum",
		     m->id);
		return -KV_EUNHEALTHY;
	}
	return 0;
}

void svc_cluster_member_add(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MemberAddRequest *req;
	struct arena a;
	size_t i;
	int rv;

	arena_init(&a);
	req = etcdserverpb__member_add_request__unpack(arena_pb_allocator(&a), len, msg);
	rv = req ? svc_cluster_check_urls(req->peerurls, req->n_peerurls) : -KV_EMALFORMED;
	if (rv == 0 && svc_cluster_leader_only(call, "/etcdserverpb.Cluster/MemberAdd", msg, len)) {
		arena_close(&a);
		return;
	}
	/* etcd's mayAddMember, then what its apply would refuse. */
	if (rv == 0)
		rv = svc_cluster_may_add(s, req->islearner);
	for (i = 0; rv == 0 && i < req->n_peerurls; i++)
		if (members_find_peer_url(&s->members, req->peerurls[i]))
			rv = -KV_EPEERURLEXIST;
	if (rv == 0 && req->islearner && members_learners(&s->members) >= 1)
		rv = -KV_ETOOMANYLEARNERS;
	if (rv == 0)
		rv = svc_cluster_may_reuse_id(s, req->peerurls, req->n_peerurls);
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_cluster_propose(call, CMD_MEMBER_ADD, msg, len);
}

void svc_cluster_member_remove(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MemberRemoveRequest *req;
	const struct member *m;
	struct arena a;
	int rv = 0;

	arena_init(&a);
	req = etcdserverpb__member_remove_request__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	if (svc_cluster_leader_only(call, "/etcdserverpb.Cluster/MemberRemove", msg, len)) {
		arena_close(&a);
		return;
	}
	m = members_find(&s->members, req->id);
	if (!m)
		rv = -KV_EMEMBERNOTFOUND;
	else
		rv = svc_cluster_may_remove(s, m);
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_cluster_propose(call, CMD_MEMBER_REMOVE, msg, len);
}

void svc_cluster_member_update(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MemberUpdateRequest *req;
	const struct member *m;
	struct arena a;
	size_t i;
	int rv;

	arena_init(&a);
	req = etcdserverpb__member_update_request__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	if (svc_cluster_leader_only(call, "/etcdserverpb.Cluster/MemberUpdate", msg, len)) {
		arena_close(&a);
		return;
	}
	/* etcd 3.4 checks existence first and the URLs only when applying. */
	rv = members_find(&s->members, req->id) ? 0 : -KV_EMEMBERNOTFOUND;
	if (rv == 0)
		rv = svc_cluster_check_urls(req->peerurls, req->n_peerurls);
	for (i = 0; rv == 0 && i < req->n_peerurls; i++) {
		m = members_find_peer_url(&s->members, req->peerurls[i]);
		if (m && m->id != req->id)
			rv = -KV_EPEERURLEXIST;
	}
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_cluster_propose(call, CMD_MEMBER_UPDATE, msg, len);
}

/* etcd's isLearnerReady: the learner's log holds 90% of the leader's. */
static bool svc_cluster_learner_ready(struct server *s, uint64_t id)
{
	uint64_t match = node_match_index(&s->node, id);
	uint64_t last = node_last_index(&s->node);
	return match > 0 && match * 100 >= last * SVC_CLUSTER_READY_PERCENT;
}

void svc_cluster_member_promote(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__MemberPromoteRequest *req;
	const struct member *m;
	struct arena a;
	int rv = 0;

	arena_init(&a);
	req = etcdserverpb__member_promote_request__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	if (svc_cluster_leader_only(call, "/etcdserverpb.Cluster/MemberPromote", msg, len)) {
		arena_close(&a);
		return;
	}
	m = members_find(&s->members, req->id);
	if (!m)
		rv = -KV_EMEMBERNOTFOUND;
	else if (!m->is_learner)
		rv = -KV_EMEMBERNOTLEARNER;
	else if (!svc_cluster_learner_ready(s, m->id))
		rv = -KV_ELEARNERNOTREADY;
	else if (s->cfg->strict_reconfig_check && !members_ready_to_promote(&s->members, m->id))
		rv = -KV_EMEMBERNOTENOUGHSTARTED;
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_cluster_propose(call, CMD_MEMBER_PROMOTE, msg, len);
}

/* --- publish, init ------------------------------------------------------------- */

static bool svc_cluster_strv_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
	size_t i;
	if (na != nb)
		return false;
	for (i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* Whether the table shows our name and client URLs as our flags have them. */
static bool svc_cluster_published(const struct server *s)
{
	const struct member *m = members_find(&s->members, s->member_id);
	const struct config *cfg = s->cfg;
	return !m || (strcmp(m->name, cfg->name) == 0 &&
		      svc_cluster_strv_eq(m->client_urls, m->n_client_urls, cfg->advertise_client_urls,
					  (size_t)cfg->n_advertise_client_urls));
}

static void svc_cluster_published_cb(void *arg, int err, const ProtobufCMessage *resp)
{
	struct svc_cluster *c = arg;
	struct server *s = c->srv;
	char urls[1024];
	int i;

	(void)resp;
	c->publish_busy = false;
	/* Also after a success: a follower's table shows it a heartbeat later. */
	c->next_publish = uv_now(s->loop) + SVC_CLUSTER_PUBLISH_RETRY_MS;
	if (err) {
		LOGW("cluster: publishing this member's name and client URLs failed (%s); "
		     "retrying",
		     kv_err_message(err));
		return;
	}
	urls[0] = '\0';
	for (i = 0; i < s->cfg->n_advertise_client_urls; i++)
		snprintf(urls + strlen(urls), sizeof(urls) - strlen(urls), "%s%s", i ? " " : "",
			 s->cfg->advertise_client_urls[i]);
	/* etcd's wording. */
	LOGI("published {Name:%s ClientURLs:[%s]} to cluster %016" PRIx64, s->cfg->name, urls,
	     s->cluster_id);
}

static int svc_cluster_publish_payload(const struct server *s, uint8_t **out, size_t *len)
{
	Etcdserverpb__Member m;
	uint8_t *buf;
	etcdserverpb__member__init(&m);
	m.id = s->member_id;
	m.name = s->cfg->name;
	m.clienturls = s->cfg->advertise_client_urls;
	m.n_clienturls = (size_t)s->cfg->n_advertise_client_urls;
	*len = etcdserverpb__member__get_packed_size(&m);
	if (!(buf = malloc(*len ? *len : 1)))
		return -KV_ENOMEM;
	etcdserverpb__member__pack(&m, buf);
	*out = buf;
	return 0;
}

/* etcd's publish: once a leader is known, put our name and client URLs in
 * the table through raft, and retry until it is there. */
static void svc_cluster_publish(struct svc_cluster *c)
{
	struct server *s = c->srv;
	uint8_t *payload;
	size_t len;
	int rv;

	if (c->publish_busy || svc_cluster_published(s) || uv_now(s->loop) < c->next_publish ||
	    !s->members.initialized)
		return;
	if ((rv = svc_cluster_publish_payload(s, &payload, &len)))
		return;
	if (node_is_leader(&s->node)) {
		rv = prop_submit(&s->prop, CMD_MEMBER_PUBLISH, payload, len, svc_cluster_published_cb,
				 c);
		c->publish_busy = rv == 0;
	} else {
		/* Fire and forget: our table shows whether it took, and we ask
		 * again a little later until it does. */
		rv = forward_path(s, SVC_CLUSTER_PUBLISH_PATH, payload, len, NULL);
		if (rv == 0)
			LOGD("cluster: asked the leader to publish this member's name and client URLs");
	}
	free(payload);
	/* Not sent (e.g. the leader's client URLs are not in our table yet):
	 * try again on the next (fast, until published) tick. */
	if (!c->publish_busy)
		c->next_publish =
			uv_now(s->loop) + (rv ? SVC_CLUSTER_TICK_FAST_MS : SVC_CLUSTER_PUBLISH_RETRY_MS);
}

void svc_cluster_member_publish(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct server *s = rpc_call_server(call);
	Etcdserverpb__Member *req;
	struct arena a;
	int rv = 0;

	arena_init(&a);
	req = etcdserverpb__member__unpack(arena_pb_allocator(&a), len, msg);
	if (!req) {
		arena_close(&a);
		rpc_call_finish(call, -KV_EMALFORMED);
		return;
	}
	if (svc_cluster_leader_only(call, SVC_CLUSTER_PUBLISH_PATH, msg, len)) {
		arena_close(&a);
		return;
	}
	if (!members_find(&s->members, req->id))
		rv = -KV_EMEMBERNOTFOUND;
	arena_close(&a);
	if (rv)
		rpc_call_finish(call, rv);
	else
		svc_cluster_propose(call, CMD_MEMBER_PUBLISH, msg, len);
}

static void svc_cluster_init_cb(void *arg, int err, const ProtobufCMessage *resp)
{
	struct svc_cluster *c = arg;
	(void)resp;
	c->init_busy = false;
	if (err)
		LOGW("cluster: proposing the bootstrap member table failed (%s); retrying",
		     kv_err_message(err));
	else
		LOGI("cluster: member table of cluster %016" PRIx64 " initialised with %zu member(s)",
		     c->srv->members.cluster_id, c->srv->members.n);
}

/* The first leader of a new cluster: the table --initial-cluster describes
 * (every bootstrap member has the same flags, as etcd requires). */
static void svc_cluster_propose_init(struct svc_cluster *c)
{
	struct server *s = c->srv;
	const struct config *cfg = s->cfg;
	const char *token = cfg->initial_cluster_token ? cfg->initial_cluster_token : "etcd-cluster";
	struct members t;
	uint8_t *img = NULL;
	size_t len = 0;
	int i, rv;

	if (c->init_busy || !cfg->initial_cluster_new || s->cluster_id == 0)
		return;
	members_init(&t);
	rv = members_set_cluster(&t, s->cluster_id, token);
	for (i = 0; rv == 0 && i < cfg->n_initial_cluster; i++) {
		const struct config_member *cm = &cfg->initial_cluster[i];
		size_t n = cm->n_peer_urls > 0 ? (size_t)cm->n_peer_urls : 0;
		rv = members_insert(&t, members_id(cm->peer_urls, n, token), cm->peer_urls, n, false);
	}
	t.initialized = true;
	if (rv == 0)
		rv = members_encode(&t, &img, &len);
	members_close(&t);
	if (rv == 0)
		rv = prop_submit(&s->prop, CMD_MEMBER_INIT, img, len, svc_cluster_init_cb, c);
	free(img);
	if (rv == 0)
		c->init_busy = true;
	else
		LOGW("cluster: cannot propose the bootstrap member table: %s", kv_err_message(rv));
}

/* --- reconciling libraft's configuration with the table ------------------------ */

struct svc_cluster_change {
	struct svc_cluster *c;
	uint64_t id;
	const char *what;
};

static void svc_cluster_change_done(void *arg, int err)
{
	struct svc_cluster_change *ch = arg;
	struct svc_cluster *c = ch->c;
	c->change_busy = false;
	if (err) {
		LOGW("cluster: raft configuration change (%s %016" PRIx64 ") failed: %s; retrying",
		     ch->what, ch->id, kv_err_message(err));
		if (c->timer_started)
			c->next_change = uv_now(c->srv->loop) + SVC_CLUSTER_BACKOFF_MS;
	} else {
		LOGI("cluster: raft configuration change done: %s %016" PRIx64, ch->what, ch->id);
	}
	free(ch);
	svc_cluster_kick(c);
}

enum svc_cluster_op { SVC_OP_ADD, SVC_OP_ASSIGN, SVC_OP_REMOVE };

static void svc_cluster_change(struct svc_cluster *c, enum svc_cluster_op op, uint64_t id,
			       const char *url, int role, const char *what)
{
	struct node *n = &c->srv->node;
	struct svc_cluster_change *ch = malloc(sizeof(*ch));
	int rv;
	if (!ch)
		return;
	ch->c = c;
	ch->id = id;
	ch->what = what;
	LOGI("cluster: raft configuration change: %s %016" PRIx64 "%s%s", what, id, url ? " at " : "",
	     url ? url : "");
	switch (op) {
	case SVC_OP_ADD:
		rv = node_change_add(n, id, url, svc_cluster_change_done, ch);
		break;
	case SVC_OP_ASSIGN:
		rv = node_change_assign(n, id, role, svc_cluster_change_done, ch);
		break;
	default:
		rv = node_change_remove(n, id, svc_cluster_change_done, ch);
		break;
	}
	if (rv) {
		LOGW("cluster: raft configuration change (%s %016" PRIx64 ") refused: %s", what, id,
		     kv_err_message(rv));
		c->next_change = uv_now(c->srv->loop) + SVC_CLUSTER_BACKOFF_MS;
		free(ch);
		return;
	}
	c->change_busy = true;
}

static unsigned svc_cluster_raft_voters(const struct raft_configuration *conf)
{
	unsigned i, v = 0;
	for (i = 0; i < conf->n; i++)
		v += conf->servers[i].role == RAFT_VOTER;
	return v;
}

static const struct raft_server *svc_cluster_raft_server(const struct raft_configuration *conf,
							 uint64_t id)
{
	unsigned i;
	for (i = 0; i < conf->n; i++)
		if (conf->servers[i].id == id)
			return &conf->servers[i];
	return NULL;
}

static void svc_cluster_warn(struct svc_cluster *c, const char *what, uint64_t id)
{
	uint64_t now = uv_now(c->srv->loop);
	if (now < c->next_warn)
		return;
	c->next_warn = now + 30000;
	LOGW("cluster: %s (member %016" PRIx64 ")", what, id);
}

/* Whether the member id, which the table no longer has, may be taken out
 * of raft now: once its log holds our commit index of when we first looked
 * and a few heartbeats have told it that index is committed, or after an
 * election timeout (it may be down).  Ourselves: at once. */
static bool svc_cluster_drained(struct svc_cluster *c, uint64_t id)
{
	struct server *s = c->srv;
	uint64_t now = uv_now(s->loop), hb = s->cfg->heartbeat_ms;
	if (id == s->member_id)
		return true;
	if (c->drain_id != id) {
		c->drain_id = id;
		c->drain_index = node_commit_index(&s->node);
		c->drain_deadline = now + s->cfg->election_ms;
		return false;
	}
	if (now >= c->drain_deadline)
		return true;
	if (node_match_index(&s->node, id) < c->drain_index)
		return false;
	/* Caught up: two more heartbeats carry the commit index. */
	if (c->drain_deadline > now + 3 * hb)
		c->drain_deadline = now + 3 * hb;
	return false;
}

/* One step towards the table, if one is needed; leader only. */
static void svc_cluster_reconcile(struct svc_cluster *c)
{
	struct server *s = c->srv;
	const struct members *t = &s->members;
	const struct raft_configuration *conf = node_configuration(&s->node);
	char addr[320];
	unsigned i;
	size_t j;

	if (c->change_busy || uv_now(s->loop) < c->next_change)
		return;
	/* Removals first: members the table no longer has. */
	for (i = 0; i < conf->n; i++) {
		const struct raft_server *rs = &conf->servers[i];
		if (members_find(t, rs->id))
			continue;
		if (rs->role == RAFT_VOTER && svc_cluster_raft_voters(conf) <= 1) {
			svc_cluster_warn(c, "not removing the last raft voter", rs->id);
			continue;
		}
		if (!svc_cluster_drained(c, rs->id))
			return;
		svc_cluster_change(c, SVC_OP_REMOVE, rs->id, NULL, 0, "remove");
		return;
	}
	for (j = 0; j < t->n; j++) {
		const struct member *m = &t->v[j];
		const struct raft_server *rs = svc_cluster_raft_server(conf, m->id);
		if (!rs) {
			svc_cluster_change(c, SVC_OP_ADD, m->id, m->peer_urls[0], 0, "add (spare)");
			return;
		}
		/* MemberUpdate moved it: libraft cannot change an address in
		 * place, so it leaves and comes back (as a standby first). */
		if (node_peer_addr(m->peer_urls[0], addr, sizeof(addr)) == 0 &&
		    strcmp(addr, rs->address) != 0) {
			if (rs->role == RAFT_VOTER && svc_cluster_raft_voters(conf) <= 1) {
				svc_cluster_warn(c, "cannot move the only raft voter to its new peer URL",
						 m->id);
				continue;
			}
			svc_cluster_change(c, SVC_OP_REMOVE, m->id, NULL, 0, "remove (peer URL moved)");
			return;
		}
		if (rs->role == RAFT_SPARE) {
			svc_cluster_change(c, SVC_OP_ASSIGN, m->id, NULL, RAFT_STANDBY, "assign standby");
			return;
		}
		if (!m->is_learner && rs->role == RAFT_STANDBY) {
			uint64_t match = node_match_index(&s->node, m->id);
			if (match > 0 && match + SVC_CLUSTER_CATCHUP_SLACK >= node_last_index(&s->node)) {
				svc_cluster_change(c, SVC_OP_ASSIGN, m->id, NULL, RAFT_VOTER,
						   "assign voter");
				return;
			}
		}
	}
}

/* --- the timer -------------------------------------------------------------------- */

static void svc_cluster_barrier_done(void *arg, int err)
{
	struct svc_cluster *c = arg;
	uint64_t term = c->barrier_term;
	c->barrier_term = 0;
	if (err == 0 && node_is_leader(&c->srv->node) && node_term(&c->srv->node) == term)
		c->ready_term = term;
	svc_cluster_kick(c);
}

/* What every member watches in its table. */
static void svc_cluster_observe(struct svc_cluster *c)
{
	struct server *s = c->srv;
	const struct members *t = &s->members;
	size_t i;

	if (!t->initialized)
		return;
	if (s->cluster_id == 0 && t->cluster_id)
		node_learn_cluster_id(&s->node, t->cluster_id);
	if (s->cluster_id && t->cluster_id && s->cluster_id != t->cluster_id) {
		LOGE("this member's data dir belongs to cluster %016" PRIx64 ", but the raft log it "
		     "received is of cluster %016" PRIx64 ": two clusters share peer URLs; "
		     "refusing to go on",
		     s->cluster_id, t->cluster_id);
		_exit(1);
	}
	if (members_find(t, s->member_id))
		return;
	/* Our peer URL under another id: we computed our id with another
	 * token than the cluster's. */
	for (i = 0; i < (size_t)s->cfg->n_initial_advertise_peer_urls; i++) {
		const struct member *m =
			members_find_peer_url(t, s->cfg->initial_advertise_peer_urls[i]);
		if (m && node_applied_index(&s->node) >= node_commit_index(&s->node)) {
			svc_cluster_warn(c, "the cluster knows this member's peer URL under another id "
					 "than ours: start it with the cluster's "
					 "--initial-cluster-token",
					 m->id);
			return;
		}
	}
	/* etcd stops a member once it applied its own removal; a leader first
	 * takes itself out of raft (reconcile), which makes it step down.
	 * Our ids come from the peer URLs, so a member removed and added back
	 * at the same URLs replays the removal of its former self on its way
	 * to the re-add: the removal must hold for a while (the re-add, when
	 * there is one, follows in the log we are catching up on). */
	if (!t->self_removed || c->leaving || node_is_leader(&s->node) ||
	    node_applied_index(&s->node) < node_commit_index(&s->node)) {
		c->removed_since = 0;
		return;
	}
	if (!c->removed_since)
		c->removed_since = uv_now(s->loop);
	if (uv_now(s->loop) - c->removed_since >= SVC_CLUSTER_REMOVED_GRACE_MS) {
		c->leaving = true;
		LOGW("the member has been permanently removed from the cluster; shutting down");
		kill(getpid(), SIGTERM);
	}
}

static void svc_cluster_pace(struct svc_cluster *c)
{
	bool settled = c->srv->members.initialized && svc_cluster_published(c->srv);
	uint64_t want = settled ? SVC_CLUSTER_TICK_MS : SVC_CLUSTER_TICK_FAST_MS;

	if (uv_timer_get_repeat(&c->timer) != want)
		uv_timer_set_repeat(&c->timer, want);
}

static void svc_cluster_tick(uv_timer_t *timer)
{
	struct svc_cluster *c = timer->data;
	struct server *s = c->srv;
	uint64_t term;
	int rv;

	if (s->stopping)
		return;
	svc_cluster_pace(c);
	svc_cluster_observe(c);
	if (!node_is_leader(&s->node)) {
		c->ready_term = 0;
		svc_cluster_publish(c);
		return;
	}
	term = node_term(&s->node);
	if (c->ready_term != term) {
		if (c->barrier_term == 0) {
			c->barrier_term = term;
			rv = prop_read(&s->prop, svc_cluster_barrier_done, c);
			if (rv)
				c->barrier_term = 0;
		}
		return;
	}
	if (!s->members.initialized) {
		svc_cluster_propose_init(c);
		return;
	}
	svc_cluster_publish(c);
	svc_cluster_reconcile(c);
}

/* --- lifecycle ---------------------------------------------------------------------- */

int svc_cluster_init(struct server *s)
{
	struct svc_cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return -KV_ENOMEM;
	c->srv = s;
	members_init(&s->members);
	s->members.self_id = s->member_id;
	s->cluster_svc = c;
	return 0;
}

int svc_cluster_start(struct server *s)
{
	struct svc_cluster *c = svc_cluster_of(s);
	if (!c)
		return -KV_EINVAL;
	uv_timer_init(s->loop, &c->timer);
	c->timer.data = c;
	c->timer_started = true;
	uv_timer_start(&c->timer, svc_cluster_tick, SVC_CLUSTER_TICK_MS, SVC_CLUSTER_TICK_MS);
	return 0;
}

void svc_cluster_stop(struct server *s)
{
	struct svc_cluster *c = svc_cluster_of(s);
	if (!c || !c->timer_started || uv_is_closing((uv_handle_t *)&c->timer))
		return;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, NULL);
}

void svc_cluster_free(struct server *s)
{
	free(s->cluster_svc);
	s->cluster_svc = NULL;
	members_close(&s->members);
}
