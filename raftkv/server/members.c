/*
 * members: the replicated member table (see members.h).
 *
 * The table is a small array sorted by id (clusters have a handful of
 * members).  Every change made by members_apply builds the new entry
 * completely before touching the table, so a failed allocation leaves the
 * table as it was, except where noted.  Decoding checks every count and
 * length against the bytes present before allocating anything.
 */
#include "server/members.h"

#include <stdlib.h>
#include <string.h>

#include <sha1.h>

#include "lib/err.h"

void members_init(struct members *t)
{
	memset(t, 0, sizeof(*t));
}

static void members_strv_free(char **v, size_t n)
{
	size_t i;
	if (!v)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void member_close(struct member *m)
{
	free(m->name);
	members_strv_free(m->peer_urls, m->n_peer_urls);
	members_strv_free(m->client_urls, m->n_client_urls);
	memset(m, 0, sizeof(*m));
}

/* The replicated part only: self_id and self_removed stay. */
static void members_clear(struct members *t)
{
	size_t i;
	for (i = 0; i < t->n; i++)
		member_close(&t->v[i]);
	free(t->v);
	free(t->token);
	t->v = NULL;
	t->n = 0;
	t->token = NULL;
	t->initialized = false;
	t->cluster_id = 0;
}

void members_close(struct members *t)
{
	members_clear(t);
	members_init(t);
}

static int members_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

uint64_t members_id(char *const *urls, size_t n, const char *token)
{
	uint8_t md[SHA1_DIGEST_LENGTH];
	SHA1_CTX ctx;
	char **sorted;
	uint64_t id = 0;
	size_t i;

	sorted = malloc(sizeof(*sorted) * (n ? n : 1));
	if (!sorted)
		return 0;
	memcpy(sorted, urls, sizeof(*sorted) * n);
	qsort(sorted, n, sizeof(*sorted), members_cmp_str);
	SHA1Init(&ctx);
	for (i = 0; i < n; i++)
		SHA1Update(&ctx, (const uint8_t *)sorted[i], strlen(sorted[i]));
	SHA1Update(&ctx, (const uint8_t *)token, strlen(token));
	SHA1Final(md, &ctx);
	for (i = 0; i < 8; i++)
		id = (id << 8) | md[i];
	free(sorted);
	return id;
}

/* Index of id, or of where it would go (*found false). */
static size_t members_index(const struct members *t, uint64_t id, bool *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < t->n && t->v[lo].id == id;
	return lo;
}

const struct member *members_find(const struct members *t, uint64_t id)
{
	bool found;
	size_t i = members_index(t, id, &found);
	return found ? &t->v[i] : NULL;
}

const struct member *members_find_peer_url(const struct members *t, const char *url)
{
	size_t i, j;
	for (i = 0; i < t->n; i++)
		for (j = 0; j < t->v[i].n_peer_urls; j++)
			if (strcmp(t->v[i].peer_urls[j], url) == 0)
				return &t->v[i];
	return NULL;
}

size_t members_learners(const struct members *t)
{
	size_t i, n = 0;
	for (i = 0; i < t->n; i++)
		n += t->v[i].is_learner;
	return n;
}

size_t members_voters(const struct members *t)
{
	return t->n - members_learners(t);
}

/* Started voters, and voters, leaving out skip (0: none). */
static void members_count_voters(const struct members *t, uint64_t skip, size_t *started,
				 size_t *voters)
{
	size_t i;
	*started = *voters = 0;
	for (i = 0; i < t->n; i++) {
		if (t->v[i].is_learner || t->v[i].id == skip)
			continue;
		(*voters)++;
		*started += members_is_started(&t->v[i]);
	}
}

/* etcd's IsReadyToAddVotingMember: the started voters stay a quorum of the
 * voters plus the new one; one started member may always add a second
 * (restoring a cluster from one member). */
bool members_ready_to_add_voter(const struct members *t)
{
	size_t started, voters;
	members_count_voters(t, 0, &started, &voters);
	if (started == 1 && voters + 1 == 2)
		return true;
	return started >= (voters + 1) / 2 + 1;
}

/* etcd's IsReadyToRemoveVotingMember. */
bool members_ready_to_remove_voter(const struct members *t, uint64_t id)
{
	size_t started, voters;
	members_count_voters(t, id, &started, &voters);
	return started >= voters / 2 + 1;
}

/* etcd's IsReadyToPromoteMember: the learner counts as a voter to be. */
bool members_ready_to_promote(const struct members *t, uint64_t id)
{
	size_t started, voters;
	members_count_voters(t, id, &started, &voters);
	return started >= (voters + 1) / 2 + 1;
}

/* Voters, and those of them connected to self since before `before`. */
static void members_count_connected(const struct members *t, uint64_t self, uint64_t before,
				    members_up_since_fn up_since, void *arg, size_t *connected,
				    size_t *voters)
{
	size_t i;
	*connected = *voters = 0;
	for (i = 0; i < t->n; i++) {
		uint64_t id = t->v[i].id, since;
		if (t->v[i].is_learner)
			continue;
		(*voters)++;
		since = id == self ? 0 : up_since(arg, id);
		*connected += id == self || (since != 0 && since < before);
	}
}

bool members_connected_fully(const struct members *t, uint64_t self, uint64_t before,
			     members_up_since_fn up_since, void *arg)
{
	size_t connected, voters;
	members_count_connected(t, self, before, up_since, arg, &connected, &voters);
	return connected == voters;
}

bool members_remove_keeps_quorum(const struct members *t, uint64_t self, uint64_t id,
				 uint64_t before, members_up_since_fn up_since, void *arg)
{
	size_t connected, voters;
	/* A member that is down is not part of the active quorum. */
	if (id != self && up_since(arg, id) == 0)
		return true;
	members_count_connected(t, self, before, up_since, arg, &connected, &voters);
	/* etcd counts id among the connected (it is up) and takes it away. */
	return connected >= 1 && connected - 1 >= 1 + (voters ? voters - 1 : 0) / 2;
}

/* --- building entries ---------------------------------------------------- */

static char **members_strv_dup(char *const *v, size_t n, bool sort)
{
	char **out = calloc(n ? n : 1, sizeof(*out));
	size_t i;
	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		if (!(out[i] = strdup(v[i]))) {
			members_strv_free(out, i);
			return NULL;
		}
	}
	if (sort)
		qsort(out, n, sizeof(*out), members_cmp_str);
	return out;
}

static bool members_urls_ok(char *const *urls, size_t n)
{
	size_t i;
	if (n == 0 || n > MEMBERS_MAX_URLS)
		return false;
	for (i = 0; i < n; i++)
		if (!urls[i] || !urls[i][0] || strlen(urls[i]) > MEMBERS_MAX_URL_BYTES)
			return false;
	return true;
}

/* Whether any of urls belongs to a member other than except (0: any). */
static bool members_urls_taken(const struct members *t, char *const *urls, size_t n,
			       uint64_t except)
{
	size_t i;
	for (i = 0; i < n; i++) {
		const struct member *m = members_find_peer_url(t, urls[i]);
		if (m && m->id != except)
			return true;
	}
	return false;
}

/* Takes ownership of m's contents on success. */
static int members_put(struct members *t, struct member *m)
{
	struct member *v;
	bool found;
	size_t i = members_index(t, m->id, &found);
	if (found)
		return -KV_EMEMBEREXIST;
	v = realloc(t->v, (t->n + 1) * sizeof(*v));
	if (!v)
		return -KV_ENOMEM;
	t->v = v;
	memmove(&v[i + 1], &v[i], (t->n - i) * sizeof(*v));
	v[i] = *m;
	t->n++;
	return 0;
}

int members_set_cluster(struct members *t, uint64_t cluster_id, const char *token)
{
	char *tok;
	if (strlen(token) > MEMBERS_MAX_NAME_BYTES)
		return -KV_EINVAL; /* members_decode would refuse the image */
	tok = strdup(token);
	if (!tok)
		return -KV_ENOMEM;
	free(t->token);
	t->token = tok;
	t->cluster_id = cluster_id;
	return 0;
}

int members_insert(struct members *t, uint64_t id, char *const *urls, size_t n, bool learner)
{
	struct member m;
	int rv;
	if (!members_urls_ok(urls, n))
		return -KV_EMEMBERBADURLS;
	if (members_urls_taken(t, urls, n, 0))
		return -KV_EPEERURLEXIST;
	if (members_find(t, id))
		return -KV_EMEMBEREXIST;
	memset(&m, 0, sizeof(m));
	m.id = id;
	m.is_learner = learner;
	m.n_peer_urls = n;
	m.name = strdup("");
	m.peer_urls = members_strv_dup(urls, n, true);
	m.client_urls = calloc(1, sizeof(char *));
	if (!m.name || !m.peer_urls || !m.client_urls) {
		member_close(&m);
		return -KV_ENOMEM;
	}
	if ((rv = members_put(t, &m)))
		member_close(&m);
	return rv;
}

static void members_remove_at(struct members *t, size_t i)
{
	member_close(&t->v[i]);
	memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(t->v[0]));
	t->n--;
}

/* --- protobuf views --------------------------------------------------------- */

int members_to_pb(const struct members *t, struct arena *a, Etcdserverpb__Member ***out,
		  size_t *n)
{
	Etcdserverpb__Member **v = arena_alloc(a, (t->n ? t->n : 1) * sizeof(*v));
	Etcdserverpb__Member *ms = arena_alloc(a, (t->n ? t->n : 1) * sizeof(*ms));
	size_t i;
	if (!v || !ms)
		return -KV_ENOMEM;
	for (i = 0; i < t->n; i++) {
		const struct member *m = &t->v[i];
		etcdserverpb__member__init(&ms[i]);
		ms[i].id = m->id;
		ms[i].name = m->name;
		ms[i].peerurls = m->peer_urls;
		ms[i].n_peerurls = m->n_peer_urls;
		ms[i].clienturls = m->client_urls;
		ms[i].n_clienturls = m->n_client_urls;
		ms[i].islearner = m->is_learner;
		v[i] = &ms[i];
	}
	*out = v;
	*n = t->n;
	return 0;
}

static Etcdserverpb__ResponseHeader *members_header(struct arena *a)
{
	Etcdserverpb__ResponseHeader *h = arena_alloc(a, sizeof(*h));
	if (h)
		etcdserverpb__response_header__init(h);
	return h;
}

/* The response of a command: header (empty) and the members after it.
 * The five response messages differ only in type (and Add's `member`), so
 * one descriptor-driven body fills them all. */
static const ProtobufCMessageDescriptor *members_reply_descriptor(uint8_t type)
{
	switch (type) {
	case CMD_MEMBER_ADD:
		return &etcdserverpb__member_add_response__descriptor;
	case CMD_MEMBER_REMOVE:
		return &etcdserverpb__member_remove_response__descriptor;
	case CMD_MEMBER_UPDATE:
		return &etcdserverpb__member_update_response__descriptor;
	case CMD_MEMBER_PROMOTE:
		return &etcdserverpb__member_promote_response__descriptor;
	default:
		return &etcdserverpb__member_list_response__descriptor;
	}
}

/* Where a field of message m lives (fields looked up by their proto name). */
static void *members_field(ProtobufCMessage *m, const char *name, size_t **count)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
	if (count)
		*count = (size_t *)((char *)m + f->quantifier_offset);
	return (char *)m + f->offset;
}

static int members_reply(const struct members *t, const struct cmd *c, uint64_t id,
			 struct arena *a, const ProtobufCMessage **out)
{
	const ProtobufCMessageDescriptor *d = members_reply_descriptor(c->type);
	Etcdserverpb__ResponseHeader *h = members_header(a);
	Etcdserverpb__Member **list;
	ProtobufCMessage *r;
	size_t n, i, *count;
	int rv;

	if (!h)
		return -KV_ENOMEM;
	if ((rv = members_to_pb(t, a, &list, &n)))
		return rv;
	if (!(r = arena_alloc(a, d->sizeof_message)))
		return -KV_ENOMEM;
	protobuf_c_message_init(d, r);
	*(Etcdserverpb__ResponseHeader **)members_field(r, "header", NULL) = h;
	*(Etcdserverpb__Member ***)members_field(r, "members", &count) = list;
	*count = n;
	/* etcd answers the new member with its id and peer URLs only. */
	if (c->type == CMD_MEMBER_ADD)
		for (i = 0; i < n; i++)
			if (list[i]->id == id)
				*(Etcdserverpb__Member **)members_field(r, "member", NULL) = list[i];
	*out = r;
	return 0;
}

/* --- apply ------------------------------------------------------------------ */

static int members_apply_init(struct members *t, const struct cmd *c)
{
	if (t->initialized)
		return 0; /* a second first leader: the first INIT won */
	return members_decode(t, c->payload, c->len);
}

static int members_apply_add(struct members *t, const struct cmd *c, struct arena *a,
			     uint64_t *id)
{
	Etcdserverpb__MemberAddRequest *r =
		etcdserverpb__member_add_request__unpack(arena_pb_allocator(a), c->len, c->payload);
	int rv;
	if (!r)
		return -KV_EMALFORMED;
	if (!members_urls_ok(r->peerurls, r->n_peerurls))
		return -KV_EMEMBERBADURLS;
	/* etcd checks the URLs before the id; ours derives from them, so an
	 * exact duplicate is reported as the URLs it is. */
	if (members_urls_taken(t, r->peerurls, r->n_peerurls, 0))
		return -KV_EPEERURLEXIST;
	*id = members_id(r->peerurls, r->n_peerurls, t->token ? t->token : "");
	if (*id == 0)
		return -KV_ENOMEM;
	if (members_find(t, *id))
		return -KV_EMEMBEREXIST;
	if (r->islearner && members_learners(t) >= 1)
		return -KV_ETOOMANYLEARNERS;
	rv = members_insert(t, *id, r->peerurls, r->n_peerurls, r->islearner);
	if (rv == 0 && *id == t->self_id)
		t->self_removed = false;
	return rv;
}

static int members_apply_remove(struct members *t, const struct cmd *c, struct arena *a,
				uint64_t *id)
{
	Etcdserverpb__MemberRemoveRequest *r =
		etcdserverpb__member_remove_request__unpack(arena_pb_allocator(a), c->len, c->payload);
	bool found;
	size_t i;
	if (!r)
		return -KV_EMALFORMED;
	*id = r->id;
	i = members_index(t, r->id, &found);
	if (!found)
		return -KV_EMEMBERNOTFOUND;
	members_remove_at(t, i);
	if (r->id == t->self_id)
		t->self_removed = true;
	return 0;
}

static int members_apply_update(struct members *t, const struct cmd *c, struct arena *a,
				uint64_t *id)
{
	Etcdserverpb__MemberUpdateRequest *r =
		etcdserverpb__member_update_request__unpack(arena_pb_allocator(a), c->len, c->payload);
	struct member *m;
	char **urls;
	bool found;
	size_t i;
	if (!r)
		return -KV_EMALFORMED;
	*id = r->id;
	i = members_index(t, r->id, &found);
	if (!found)
		return -KV_EMEMBERNOTFOUND;
	if (!members_urls_ok(r->peerurls, r->n_peerurls))
		return -KV_EMEMBERBADURLS;
	if (members_urls_taken(t, r->peerurls, r->n_peerurls, r->id))
		return -KV_EPEERURLEXIST;
	if (!(urls = members_strv_dup(r->peerurls, r->n_peerurls, true)))
		return -KV_ENOMEM;
	m = &t->v[i];
	members_strv_free(m->peer_urls, m->n_peer_urls);
	m->peer_urls = urls;
	m->n_peer_urls = r->n_peerurls;
	return 0;
}

static int members_apply_promote(struct members *t, const struct cmd *c, struct arena *a,
				 uint64_t *id)
{
	Etcdserverpb__MemberPromoteRequest *r =
		etcdserverpb__member_promote_request__unpack(arena_pb_allocator(a), c->len, c->payload);
	bool found;
	size_t i;
	if (!r)
		return -KV_EMALFORMED;
	*id = r->id;
	i = members_index(t, r->id, &found);
	if (!found)
		return -KV_EMEMBERNOTFOUND;
	if (!t->v[i].is_learner)
		return -KV_EMEMBERNOTLEARNER;
	t->v[i].is_learner = false;
	return 0;
}

static int members_apply_publish(struct members *t, const struct cmd *c, struct arena *a,
				 uint64_t *id)
{
	Etcdserverpb__Member *r =
		etcdserverpb__member__unpack(arena_pb_allocator(a), c->len, c->payload);
	struct member *m;
	char *name, **urls;
	bool found;
	size_t i;
	if (!r || !r->name || strlen(r->name) > MEMBERS_MAX_NAME_BYTES ||
	    r->n_clienturls > MEMBERS_MAX_URLS)
		return -KV_EMALFORMED;
	*id = r->id;
	i = members_index(t, r->id, &found);
	if (!found)
		return -KV_EMEMBERNOTFOUND;
	name = strdup(r->name);
	urls = members_strv_dup(r->clienturls, r->n_clienturls, false);
	if (!name || !urls) {
		free(name);
		members_strv_free(urls, urls ? r->n_clienturls : 0);
		return -KV_ENOMEM;
	}
	m = &t->v[i];
	free(m->name);
	members_strv_free(m->client_urls, m->n_client_urls);
	m->name = name;
	m->client_urls = urls;
	m->n_client_urls = r->n_clienturls;
	return 0;
}

int members_apply(struct members *t, const struct cmd *c, struct arena *a,
		  const ProtobufCMessage **out)
{
	uint64_t id = 0;
	int rv;

	*out = NULL;
	if (c->type != CMD_MEMBER_INIT && !t->initialized)
		return -KV_EINTERNAL;
	switch (c->type) {
	case CMD_MEMBER_INIT:
		rv = members_apply_init(t, c);
		break;
	case CMD_MEMBER_ADD:
		rv = members_apply_add(t, c, a, &id);
		break;
	case CMD_MEMBER_REMOVE:
		rv = members_apply_remove(t, c, a, &id);
		break;
	case CMD_MEMBER_UPDATE:
		rv = members_apply_update(t, c, a, &id);
		break;
	case CMD_MEMBER_PROMOTE:
		rv = members_apply_promote(t, c, a, &id);
		break;
	case CMD_MEMBER_PUBLISH:
		rv = members_apply_publish(t, c, a, &id);
		break;
	default:
		return -KV_EINTERNAL;
	}
	if (rv)
		return rv;
	return members_reply(t, c, id, a, out);
}

/* --- image ------------------------------------------------------------------ */

struct members_buf {
	uint8_t *p;
	size_t len, cap;
	bool failed;
};

static void mb_put(struct members_buf *b, const void *src, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		uint8_t *p;
		while (cap < b->len + n)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	if (n) /* src may be NULL for an empty string */
		memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void mb_u32(struct members_buf *b, uint32_t v)
{
	uint8_t x[4];
	int i;
	for (i = 0; i < 4; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	mb_put(b, x, 4);
}

static void mb_u64(struct members_buf *b, uint64_t v)
{
	mb_u32(b, (uint32_t)v);
	mb_u32(b, (uint32_t)(v >> 32));
}

static void mb_str(struct members_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	mb_u32(b, (uint32_t)n);
	mb_put(b, s, n);
}

static void mb_strv(struct members_buf *b, char *const *v, size_t n)
{
	size_t i;
	mb_u32(b, (uint32_t)n);
	for (i = 0; i < n; i++)
		mb_str(b, v[i]);
}

int members_encode(const struct members *t, uint8_t **data, size_t *len)
{
	struct members_buf b = {0};
	size_t i;

	mb_u32(&b, t->initialized ? 1u : 0u);
	mb_u64(&b, t->cluster_id);
	mb_str(&b, t->token);
	mb_u32(&b, (uint32_t)t->n);
	for (i = 0; i < t->n; i++) {
		const struct member *m = &t->v[i];
		mb_u64(&b, m->id);
		mb_u32(&b, m->is_learner ? 1u : 0u);
		mb_str(&b, m->name);
		mb_strv(&b, m->peer_urls, m->n_peer_urls);
		mb_strv(&b, m->client_urls, m->n_client_urls);
	}
	if (b.failed) {
		free(b.p);
		return -KV_ENOMEM;
	}
	*data = b.p;
	*len = b.len;
	return 0;
}

struct members_rd {
	const uint8_t *p, *end;
	int err; /* first error: -KV_ECORRUPT or -KV_ENOMEM */
};

static uint32_t rd_u32(struct members_rd *r)
{
	uint32_t v;
	if (r->err || r->end - r->p < 4) {
		if (!r->err)
			r->err = -KV_ECORRUPT;
		return 0;
	}
	v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
	    (uint32_t)r->p[3] << 24;
	r->p += 4;
	return v;
}

static uint64_t rd_u64(struct members_rd *r)
{
	uint64_t lo = rd_u32(r);
	return lo | (uint64_t)rd_u32(r) << 32;
}

/* A NUL-terminated copy; NULL on error (r->err set). */
static char *rd_str(struct members_rd *r, size_t max)
{
	uint32_t n = rd_u32(r);
	char *s;
	if (r->err)
		return NULL;
	if (n > max || (size_t)(r->end - r->p) < n || memchr(r->p, '\0', n)) {
		r->err = -KV_ECORRUPT;
		return NULL;
	}
	if (!(s = malloc((size_t)n + 1))) {
		r->err = -KV_ENOMEM;
		return NULL;
	}
	memcpy(s, r->p, n);
	s[n] = '\0';
	r->p += n;
	return s;
}

static char **rd_strv(struct members_rd *r, size_t *n_out)
{
	uint32_t n = rd_u32(r), i;
	char **v;
	*n_out = 0;
	if (r->err)
		return NULL;
	/* Each string costs at least its 4-byte length. */
	if (n > MEMBERS_MAX_URLS || (size_t)(r->end - r->p) / 4 < n) {
		r->err = -KV_ECORRUPT;
		return NULL;
	}
	if (!(v = calloc(n ? n : 1, sizeof(*v)))) {
		r->err = -KV_ENOMEM;
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (!(v[i] = rd_str(r, MEMBERS_MAX_URL_BYTES))) {
			members_strv_free(v, i);
			return NULL;
		}
	}
	*n_out = n;
	return v;
}

int members_decode(struct members *t, const uint8_t *data, size_t len)
{
	struct members_rd r = {data, data + len, 0};
	struct members fresh;
	uint32_t flags, n, i;

	members_init(&fresh);
	flags = rd_u32(&r);
	fresh.initialized = flags & 1u;
	fresh.cluster_id = rd_u64(&r);
	fresh.token = rd_str(&r, MEMBERS_MAX_NAME_BYTES);
	n = rd_u32(&r);
	/* A member is at least 24 bytes (id, flags, three counts). */
	if (!r.err && (flags & ~1u || (size_t)(r.end - r.p) / 24 < n))
		r.err = -KV_ECORRUPT;
	if (!r.err && n && !(fresh.v = calloc(n, sizeof(*fresh.v))))
		r.err = -KV_ENOMEM;
	for (i = 0; !r.err && i < n; i++) {
		struct member *m = &fresh.v[i];
		fresh.n = i + 1; /* so that members_clear frees what was read */
		m->id = rd_u64(&r);
		flags = rd_u32(&r);
		m->is_learner = flags & 1u;
		m->name = rd_str(&r, MEMBERS_MAX_NAME_BYTES);
		m->peer_urls = rd_strv(&r, &m->n_peer_urls);
		m->client_urls = rd_strv(&r, &m->n_client_urls);
		if (!r.err && (flags & ~1u || m->id == 0 || m->n_peer_urls == 0 ||
			       (i > 0 && fresh.v[i - 1].id >= m->id)))
			r.err = -KV_ECORRUPT;
	}
	if (!r.err && r.p != r.end)
		r.err = -KV_ECORRUPT;
	if (r.err) {
		members_clear(&fresh);
		return r.err;
	}
	members_clear(t);
	t->initialized = fresh.initialized;
	t->cluster_id = fresh.cluster_id;
	t->token = fresh.token;
	t->v = fresh.v;
	t->n = n;
	return 0;
}
