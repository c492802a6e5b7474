/*
 * conns: the connections of a run.  As etcd's benchmark (mustCreateConn),
 * --conns clients are made, connection i on endpoint i mod the number of
 * endpoints, or all of them on the leader's endpoint with --target-leader
 * (the member whose Status says it is the leader; failing that, the client
 * URL the member list gives for the leader's id).  Each is a kvc client of
 * its own with a single endpoint: one HTTP/2 connection, no failover, so
 * that the load really goes where the flags say.
 *
 * Before anything is measured every connection makes one Status call: the
 * TCP handshake and HTTP/2 SETTINGS exchange are then behind us, and an
 * unreachable endpoint stops the run at once with a clear message instead
 * of turning every request into an error.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#include "client/sync.h"

#define CONNS_STATUS_TIMEOUT_MS 5000

static void conns_options(const struct bench *b, struct kvc_options *o)
{
	kvc_options_init(o);
	if (b->dial_timeout_ms)
		o->dial_timeout_ms = b->dial_timeout_ms > UINT32_MAX ? UINT32_MAX
								     : (uint32_t)b->dial_timeout_ms;
	/* Benchmark calls have no deadline, as etcd's (context.Background()). */
	o->call_timeout_ms = KVC_NO_TIMEOUT;
	o->max_attempts = 1;
}

/* The comma-separated endpoints, split; *n is how many. */
static char **conns_split(const char *list, size_t *n)
{
	char *copy = strdup(list), *save = NULL, *tok;
	char **v = calloc(strlen(list) + 1, sizeof(*v));

	*n = 0;
	if (!copy || !v) {
		free(copy);
		free(v);
		return NULL;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (*tok)
			v[(*n)++] = strdup(tok);
	}
	free(copy);
	return v;
}

static void conns_free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Status of one endpoint: its own id and the leader it believes in.
 * Returns 0 or -KV_E*. */
static int conns_status(const struct bench *b, const char *ep, uint64_t *self, uint64_t *leader,
			char *why, size_t whylen)
{
	Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
	Etcdserverpb__StatusResponse *resp;
	struct kvc_options o;
	struct kvc_sync *s;
	ProtobufCMessage *m;
	struct arena a;
	int rv;

	conns_options(b, &o);
	rv = kvc_sync_new(ep, &o, &s);
	if (rv) {
		snprintf(why, whylen, "%s", kv_err_message(rv));
		return rv;
	}
	arena_init(&a);
	rv = kvc_sync_call(s, &kvc_maint_status, &req.base, &a, &m, CONNS_STATUS_TIMEOUT_MS);
	if (rv == 0) {
		resp = (Etcdserverpb__StatusResponse *)m;
		*self = resp->header ? resp->header->member_id : 0;
		*leader = resp->leader;
	} else {
		snprintf(why, whylen, "%s", kvc_sync_errmsg(s));
	}
	arena_close(&a);
	kvc_sync_free(s);
	return rv;
}

/* The leader's client URL from the member list of ep; NULL if not there. */
static char *conns_leader_url(const struct bench *b, const char *ep, uint64_t leader)
{
	Etcdserverpb__MemberListRequest req = ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
	Etcdserverpb__MemberListResponse *resp;
	struct kvc_options o;
	struct kvc_sync *s;
	ProtobufCMessage *m;
	struct arena a;
	char *url = NULL;

	conns_options(b, &o);
	if (kvc_sync_new(ep, &o, &s))
		return NULL;
	arena_init(&a);
	if (kvc_sync_call(s, &kvc_cluster_member_list, &req.base, &a, &m,
			  CONNS_STATUS_TIMEOUT_MS) == 0) {
		resp = (Etcdserverpb__MemberListResponse *)m;
		for (size_t i = 0; i < resp->n_members; i++)
			if (resp->members[i]->id == leader && resp->members[i]->n_clienturls)
				url = strdup(resp->members[i]->clienturls[0]);
	}
	arena_close(&a);
	kvc_sync_free(s);
	return url;
}

static char *conns_find_leader(const struct bench *b, char **eps, size_t n)
{
	uint64_t leader = 0, self, l;
	const char *asked = NULL;
	char why[256];

	for (size_t i = 0; i < n; i++) {
		if (conns_status(b, eps[i], &self, &l, why, sizeof(why))) {
			bench_err("status of %s: %s", eps[i], why);
			continue;
		}
		if (l && self == l)
			return strdup(eps[i]);
		if (l && !leader) {
			leader = l;
			asked = eps[i];
		}
	}
	if (leader) {
		char *url = conns_leader_url(b, asked, leader);

		if (url)
			return url;
	}
	bench_err("failed to find a leader endpoint");
	return NULL;
}

struct conns_warm {
	struct kvc_call call;
	const char *ep;
	size_t *left;
	bool *done;
	int *failed;
};

static void conns_warm_done(struct kvc_call *call, int err)
{
	struct conns_warm *w = call->data;

	if (err) {
		bench_err("cannot reach %s: %s", w->ep, kvc_call_grpc_message(call));
		(*w->failed)++;
	}
	if (--*w->left == 0)
		*w->done = true;
}

/* One Status call on each of the n clients kc (endpoints ep). */
static int conns_warm_up(struct bench *b, struct kvc_client **kc, char **ep, size_t n)
{
	struct conns_warm *w = calloc(n, sizeof(*w));
	size_t left = 0;
	bool done = false;
	int failed = 0, rv;

	if (!w)
		return -1;
	for (size_t i = 0; i < n; i++) {
		kvc_call_init(&w[i].call);
		w[i].call.data = &w[i];
		w[i].call.timeout_ms = CONNS_STATUS_TIMEOUT_MS;
		w[i].ep = ep[i];
		w[i].left = &left;
		w[i].done = &done;
		w[i].failed = &failed;
		rv = kvc_call_unary(kc[i], &w[i].call, &kvc_maint_status, NULL, 0, conns_warm_done);
		if (rv) {
			bench_err("cannot reach %s: %s", ep[i], kv_err_message(rv));
			failed++;
			continue;
		}
		left++;
	}
	if (left && !bench_run_until(b, &done))
		failed++;
	free(w);
	return failed ? -1 : 0;
}

static int conns_new_client(struct bench *b, const char *ep, struct kvc_client **out)
{
	struct kvc_options o;
	int rv;

	conns_options(b, &o);
	rv = kvc_client_new(b->loop, ep, &o, out);
	if (rv) {
		bench_err("endpoint %s: %s", ep, kv_err_message(rv));
		return -1;
	}
	return 0;
}

int bench_conns_open(struct bench *b)
{
	size_t n_eps = 0;
	char **eps = conns_split(b->endpoints, &n_eps);
	char *leader = NULL;
	int rv = -1;

	if (!eps || !n_eps) {
		bench_err("no endpoints in --endpoints %s", b->endpoints);
		goto out;
	}
	if (b->target_leader) {
		leader = conns_find_leader(b, eps, n_eps);
		if (!leader)
			goto out;
	}
	b->kc = calloc((size_t)b->conns, sizeof(*b->kc));
	b->kc_ep = calloc((size_t)b->conns, sizeof(*b->kc_ep));
	if (!b->kc || !b->kc_ep)
		goto out;
	for (size_t i = 0; i < (size_t)b->conns; i++) {
		b->kc_ep[i] = strdup(leader ? leader : eps[i % n_eps]);
		if (!b->kc_ep[i] || conns_new_client(b, b->kc_ep[i], &b->kc[i]))
			goto out;
		b->n_kc++;
	}
	rv = conns_warm_up(b, b->kc, b->kc_ep, b->n_kc);
out:
	free(leader);
	if (eps)
		conns_free_list(eps, n_eps);
	return rv;
}

int bench_conn_extra(struct bench *b, struct kvc_client **out)
{
	if (conns_new_client(b, b->kc_ep[0], out))
		return -1;
	return conns_warm_up(b, out, b->kc_ep, 1);
}

void bench_conns_close(struct bench *b)
{
	for (size_t i = 0; i < b->n_kc; i++)
		kvc_client_free(b->kc[i], NULL, NULL);
	if (b->kc_ep)
		for (size_t i = 0; i < (size_t)b->conns; i++)
			free(b->kc_ep[i]);
	free(b->kc);
	free(b->kc_ep);
	b->kc = NULL;
	b->kc_ep = NULL;
	b->n_kc = 0;
}

bool bench_run_until(struct bench *b, const bool *flag)
{
	while (!*flag)
		if (!uv_run(b->loop, UV_RUN_ONCE) && !*flag)
			return false;
	return true;
}

static void bench_closed_cb(uv_handle_t *h)
{
	*(bool *)h->data = true;
}

void bench_close(struct bench *b, uv_handle_t *h)
{
	bool closed = false;

	h->data = &closed;
	uv_close(h, bench_closed_cb);
	bench_run_until(b, &closed);
}
