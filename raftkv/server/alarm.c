/*
 * alarm: etcd's alarms and the backend quota (see alarm.h for the rules).
 *
 * The table is a sorted array: a cluster has at most one alarm of each type
 * per member, so it holds a handful of entries and every operation is a
 * linear scan.  alarm_gate is on the apply path of every command; it only
 * decodes a Txn while NOSPACE is raised.  alarm_quota_check is on the
 * proposal path of every Put/Txn/LeaseGrant; it decodes nothing unless the
 * store is within a request's worst-case cost of the quota.
 */
#include "server/alarm.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/config.h"
#include "server/kvs.h"
#include "server/mvcc.h"
#include "server/prop.h"
#include "server/server.h"

/* etcd's quota.go. */
#define ALARM_DEFAULT_QUOTA (2ll << 30)
#define ALARM_KV_OVERHEAD 256u
#define ALARM_LEASE_OVERHEAD 64u
/* The smallest RequestOp holding a put: op tag+len, put tag+len, key
 * tag+len+1 byte.  Bounds how many puts a Txn of n bytes can carry. */
#define ALARM_MIN_PUT_OP_BYTES 7u
#define ALARM_IMAGE_ENTRY 12u

void alarm_table_close(struct alarm_table *t)
{
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static int alarm_cmp(const struct alarm_member *a, uint32_t type, uint64_t member_id)
{
	if (a->type != type)
		return a->type < type ? -1 : 1;
	if (a->member_id != member_id)
		return a->member_id < member_id ? -1 : 1;
	return 0;
}

/* Index of (type, member) or of where it would go; *found says which. */
static size_t alarm_find(const struct alarm_table *t, uint32_t type, uint64_t member_id, bool *found)
{
	size_t i;
	int c = 1;
	for (i = 0; i < t->n; i++) {
		c = alarm_cmp(&t->v[i], type, member_id);
		if (c >= 0)
			break;
	}
	*found = i < t->n && c == 0;
	return i;
}

bool alarm_active(const struct alarm_table *t, uint32_t type)
{
	size_t i;
	if (type == ETCDSERVERPB__ALARM_TYPE__NONE)
		return t->n > 0;
	for (i = 0; i < t->n; i++)
		if (t->v[i].type == type)
			return true;
	return false;
}

static const char *alarm_type_name(uint32_t type)
{
	switch (type) {
	case ETCDSERVERPB__ALARM_TYPE__NONE:
		return "NONE";
	case ETCDSERVERPB__ALARM_TYPE__NOSPACE:
		return "NOSPACE";
	case ETCDSERVERPB__ALARM_TYPE__CORRUPT:
		return "CORRUPT";
	default:
		return "?";
	}
}

void alarm_describe(const struct alarm_member *m, char *buf, size_t size)
{
	/* gogoproto's CompactTextString; an unnamed enum value prints as its
	 * number there too. */
	if (m->type <= ETCDSERVERPB__ALARM_TYPE__CORRUPT)
		snprintf(buf, size, "memberID:%" PRIu64 " alarm:%s ", m->member_id,
			 alarm_type_name(m->type));
	else
		snprintf(buf, size, "memberID:%" PRIu64 " alarm:%" PRIu32 " ", m->member_id, m->type);
}

/* --- replicated state ------------------------------------------------------ */

static int alarm_out_add(struct arena *a, Etcdserverpb__AlarmResponse *out, size_t cap,
			 const struct alarm_member *m)
{
	Etcdserverpb__AlarmMember *am;
	if (!out->alarms) {
		out->alarms = arena_alloc(a, sizeof(*out->alarms) * (cap ? cap : 1));
		if (!out->alarms)
			return -KV_ENOMEM;
	}
	am = arena_alloc(a, sizeof(*am));
	if (!am)
		return -KV_ENOMEM;
	etcdserverpb__alarm_member__init(am);
	am->memberid = m->member_id;
	am->alarm = (Etcdserverpb__AlarmType)m->type;
	out->alarms[out->n_alarms++] = am;
	return 0;
}

int alarm_list(const struct alarm_table *t, uint32_t type, struct arena *a,
	       Etcdserverpb__AlarmResponse *out)
{
	size_t i;
	int rv;
	etcdserverpb__alarm_response__init(out);
	for (i = 0; i < t->n; i++) {
		if (type != ETCDSERVERPB__ALARM_TYPE__NONE && t->v[i].type != type)
			continue;
		if ((rv = alarm_out_add(a, out, t->n, &t->v[i])))
			return rv;
	}
	return 0;
}

int alarm_apply(struct alarm_table *t, const Etcdserverpb__AlarmRequest *r, struct arena *a,
		Etcdserverpb__AlarmResponse *out)
{
	struct alarm_member m = {.member_id = r->memberid, .type = (uint32_t)r->alarm};
	char what[96];
	bool found;
	size_t i;

	switch (r->action) {
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET:
		return alarm_list(t, m.type, a, out);
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
		etcdserverpb__alarm_response__init(out);
		/* etcd stores any type but only acts on these two. */
		if (m.type != ETCDSERVERPB__ALARM_TYPE__NOSPACE &&
		    m.type != ETCDSERVERPB__ALARM_TYPE__CORRUPT) {
			LOGW("alarm: activation of unknown alarm type %" PRIu32 " ignored", m.type);
			return 0;
		}
		i = alarm_find(t, m.type, m.member_id, &found);
		if (!found) {
			if (t->n == t->cap) {
				size_t cap = t->cap ? 2 * t->cap : 4;
				struct alarm_member *v = realloc(t->v, cap * sizeof(*v));
				if (!v)
					return -KV_ENOMEM;
				t->v = v;
				t->cap = cap;
			}
			memmove(t->v + i + 1, t->v + i, (t->n - i) * sizeof(*t->v));
			t->v[i] = m;
			t->n++;
			alarm_describe(&m, what, sizeof(what));
			LOGW("alarm raised: %s", what);
		}
		return alarm_out_add(a, out, 1, &m);
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE:
		etcdserverpb__alarm_response__init(out);
		i = alarm_find(t, m.type, m.member_id, &found);
		if (!found)
			return 0;
		memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof(*t->v));
		t->n--;
		alarm_describe(&m, what, sizeof(what));
		LOGI("alarm disarmed: %s", what);
		return alarm_out_add(a, out, 1, &m);
	default:
		/* etcd answers an unknown action with an empty response. */
		etcdserverpb__alarm_response__init(out);
		return 0;
	}
}

/* --- costs (etcd's quota.go) -------------------------------------------------- */

static uint64_t alarm_cost_put(const Etcdserverpb__PutRequest *p)
{
	return ALARM_KV_OVERHEAD + p->key.len + p->value.len;
}

static uint64_t alarm_cost_ops(Etcdserverpb__RequestOp **ops, size_t n);

/* The larger branch, as etcd's costTxn.  Unlike etcd 3.4, whose costTxnReq
 * sees only top-level puts, a nested Txn's puts count too: they grow the
 * store just the same. */
static uint64_t alarm_cost_txn(const Etcdserverpb__TxnRequest *r)
{
	uint64_t s = alarm_cost_ops(r->success, r->n_success);
	uint64_t f = alarm_cost_ops(r->failure, r->n_failure);
	return s > f ? s : f;
}

static uint64_t alarm_cost_ops(Etcdserverpb__RequestOp **ops, size_t n)
{
	uint64_t c = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
			c += alarm_cost_put(ops[i]->request_put);
		else if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
			c += alarm_cost_txn(ops[i]->request_txn);
	}
	return c;
}

/* Exact cost of a request; -1 when the payload does not decode. */
static int64_t alarm_cost(enum cmd_type type, const uint8_t *payload, size_t len)
{
	struct arena a;
	int64_t cost = -1;

	switch (type) {
	case CMD_LEASE_GRANT:
		return ALARM_LEASE_OVERHEAD;
	case CMD_PUT:
	case CMD_TXN:
		break;
	default:
		return 0;
	}
	arena_init(&a);
	if (type == CMD_PUT) {
		Etcdserverpb__PutRequest *p =
			etcdserverpb__put_request__unpack(arena_pb_allocator(&a), len, payload);
		if (p)
			cost = (int64_t)alarm_cost_put(p);
	} else if (kvs_check_txn_wire(payload, len) == 0) {
		/* The wire check first: nesting must not overflow unpack. */
		Etcdserverpb__TxnRequest *r =
			etcdserverpb__txn_request__unpack(arena_pb_allocator(&a), len, payload);
		if (r)
			cost = (int64_t)alarm_cost_txn(r);
	}
	arena_close(&a);
	return cost;
}

/* An upper bound of alarm_cost() from the length alone. */
static uint64_t alarm_cost_bound(enum cmd_type type, size_t len)
{
	switch (type) {
	case CMD_PUT:
		return ALARM_KV_OVERHEAD + (uint64_t)len;
	case CMD_TXN:
		return ALARM_KV_OVERHEAD * ((uint64_t)len / ALARM_MIN_PUT_OP_BYTES + 1) + (uint64_t)len;
	case CMD_LEASE_GRANT:
		return ALARM_LEASE_OVERHEAD;
	default:
		return 0;
	}
}

int alarm_gate(const struct alarm_table *t, const struct cmd *c)
{
	if (t->n == 0 || c->type == CMD_ALARM)
		return 0;
	if (alarm_active(t, ETCDSERVERPB__ALARM_TYPE__CORRUPT)) {
		switch (c->type) {
		case CMD_PUT:
		case CMD_DELETE_RANGE:
		case CMD_TXN:
		case CMD_COMPACT:
		case CMD_LEASE_GRANT:
		case CMD_LEASE_REVOKE:
			return -KV_ECORRUPT;
		default:
			break;
		}
	}
	if (alarm_active(t, ETCDSERVERPB__ALARM_TYPE__NOSPACE)) {
		switch (c->type) {
		case CMD_PUT:
		case CMD_LEASE_GRANT:
			return -KV_ENOSPACE;
		case CMD_TXN:
			/* A Txn that does not decode fails in the fsm anyway. */
			return alarm_cost(CMD_TXN, c->payload, c->len) > 0 ? -KV_ENOSPACE : 0;
		default:
			break;
		}
	}
	return 0;
}

/* --- snapshot section ------------------------------------------------------------ */

static void alarm_put_u32(uint8_t *p, uint32_t v)
{
	int i;
	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t alarm_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int alarm_table_encode(const struct alarm_table *t, uint8_t **data, size_t *len)
{
	size_t n = 4 + t->n * ALARM_IMAGE_ENTRY, i;
	uint8_t *p = malloc(n);
	if (!p)
		return -KV_ENOMEM;
	alarm_put_u32(p, (uint32_t)t->n);
	for (i = 0; i < t->n; i++) {
		uint8_t *e = p + 4 + i * ALARM_IMAGE_ENTRY;
		alarm_put_u32(e, (uint32_t)t->v[i].member_id);
		alarm_put_u32(e + 4, (uint32_t)(t->v[i].member_id >> 32));
		alarm_put_u32(e + 8, t->v[i].type);
	}
	*data = p;
	*len = n;
	return 0;
}

int alarm_table_decode(struct alarm_table *t, const uint8_t *data, size_t len)
{
	struct alarm_member *v = NULL;
	uint32_t n, i;

	if (len < 4)
		return -KV_ECORRUPT;
	n = alarm_get_u32(data);
	/* The count is checked against the bytes present before allocating. */
	if ((len - 4) % ALARM_IMAGE_ENTRY || (len - 4) / ALARM_IMAGE_ENTRY != n)
		return -KV_ECORRUPT;
	if (n && !(v = malloc((size_t)n * sizeof(*v))))
		return -KV_ENOMEM;
	for (i = 0; i < n; i++) {
		const uint8_t *e = data + 4 + (size_t)i * ALARM_IMAGE_ENTRY;
		v[i].member_id = (uint64_t)alarm_get_u32(e) | (uint64_t)alarm_get_u32(e + 4) << 32;
		v[i].type = alarm_get_u32(e + 8);
		/* Canonical order, no duplicates: what encode writes. */
		if ((v[i].type != ETCDSERVERPB__ALARM_TYPE__NOSPACE &&
		     v[i].type != ETCDSERVERPB__ALARM_TYPE__CORRUPT) ||
		    (i > 0 && alarm_cmp(&v[i - 1], v[i].type, v[i].member_id) >= 0)) {
			free(v);
			return -KV_ECORRUPT;
		}
	}
	free(t->v);
	t->v = v;
	t->n = t->cap = n;
	return 0;
}

/* --- the quota ----------------------------------------------------------------------- */

int64_t alarm_quota_bytes(const struct config *cfg)
{
	if (cfg->quota_backend_bytes < 0)
		return INT64_MAX;
	return cfg->quota_backend_bytes ? cfg->quota_backend_bytes : ALARM_DEFAULT_QUOTA;
}

static bool alarm_available(uint64_t size, uint64_t cost, int64_t quota)
{
	/* etcd: Size() + Cost(req) < maxBackendBytes. */
	return quota == INT64_MAX || (cost < (uint64_t)quota && size < (uint64_t)quota - cost);
}

/* One ACTIVATE of ours in flight, and the request waiting for it. */
struct alarm_raise {
	struct server *s;
	prop_done_cb cb;
	void *arg;
};

static void alarm_raise_done(void *arg, int err, const ProtobufCMessage *resp)
{
	struct alarm_raise *r = arg;
	struct server *s = r->s;
	s->alarms.raising--;
	if (err && !s->stopping)
		LOGW("alarm: proposing NOSPACE failed (%s); the next write over the quota "
		     "tries again",
		     kv_err_name(err));
	r->cb(r->arg, err, resp);
	free(r);
}

int alarm_quota_check(struct server *s, enum cmd_type type, const uint8_t *payload, size_t len,
		      prop_done_cb cb, void *arg)
{
	Etcdserverpb__AlarmRequest req = ETCDSERVERPB__ALARM_REQUEST__INIT;
	int64_t quota = alarm_quota_bytes(s->cfg), cost;
	uint64_t size = mvcc_bytes(s->mvcc);
	struct alarm_raise *r;
	uint8_t buf[32];
	size_t n;
	bool found;

	if (alarm_available(size, alarm_cost_bound(type, len), quota))
		return 0;
	cost = alarm_cost(type, payload, len);
	if (cost < 0 || alarm_available(size, (uint64_t)cost, quota))
		return 0;
	alarm_find(&s->alarms, ETCDSERVERPB__ALARM_TYPE__NOSPACE, s->member_id, &found);
	if (found)
		return -KV_ENOSPACE;
	/* etcd's quotaAlarmer: every refused request asks for this member's
	 * alarm (a repeated ACTIVATE changes nothing) and answers after. */
	req.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
	req.memberid = s->member_id;
	req.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
	n = etcdserverpb__alarm_request__pack(&req, buf);
	if (!(r = malloc(sizeof(*r))))
		return -KV_ENOSPACE;
	r->s = s;
	r->cb = cb;
	r->arg = arg;
	if (prop_submit(&s->prop, CMD_ALARM, buf, n, alarm_raise_done, r) != 0) {
		free(r);
		return -KV_ENOSPACE;
	}
	if (s->alarms.raising++ == 0)
		LOGW("store size %" PRIu64 " + request cost %" PRId64 " reaches the backend quota "
		     "%" PRId64 ": raising the NOSPACE alarm",
		     size, cost, quota);
	return 1;
}
