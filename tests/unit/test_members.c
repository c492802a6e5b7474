/*
 * Unit tests for the replicated member table (members.c): etcd's member id
 * derivation, INIT and its idempotence, the apply of every CMD_MEMBER_*
 * command with etcd's errors, the strict reconfiguration checks (started
 * quorum, and connectivity against a fake of the leader's links), and
 * the image (round trip, truncated and crafted images refused, the table
 * left alone on failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "rpc.pb-c.h"
#include "server/cmd.h"
#include "server/members.h"

#define TOKEN "tok-1"

struct fx {
	struct members t;
	struct arena a;
	uint8_t buf[4096];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	members_init(&f->t);
	arena_init(&f->a);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	members_close(&f->t);
	arena_close(&f->a);
	free(f);
	return 0;
}

static struct cmd mkcmd(uint8_t type, const uint8_t *payload, size_t len)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = type;
	c.payload = payload;
	c.len = (uint32_t)len;
	return c;
}

/* Applies an INIT of a table with members at the given peer URLs. */
static void init_table(struct fx *f, const char *const *urls, size_t n)
{
	struct members t;
	const ProtobufCMessage *out;
	struct cmd c;
	uint8_t *img;
	size_t len, i;

	members_init(&t);
	assert_int_equal(members_set_cluster(&t, 0x1234, TOKEN), 0);
	for (i = 0; i < n; i++) {
		char *u = (char *)urls[i];
		assert_int_equal(members_insert(&t, members_id(&u, 1, TOKEN), &u, 1, false), 0);
	}
	t.initialized = true;
	assert_int_equal(members_encode(&t, &img, &len), 0);
	members_close(&t);
	c = mkcmd(CMD_MEMBER_INIT, img, len);
	assert_int_equal(members_apply(&f->t, &c, &f->a, &out), 0);
	assert_non_null(out);
	free(img);
}

static int apply_add(struct fx *f, const char *url, bool learner, uint64_t *id)
{
	Etcdserverpb__MemberAddRequest r;
	const ProtobufCMessage *out;
	char *u = (char *)url;
	struct cmd c;
	size_t len;
	int rv;
	etcdserverpb__member_add_request__init(&r);
	r.peerurls = &u;
	r.n_peerurls = url ? 1 : 0;
	r.islearner = learner;
	len = etcdserverpb__member_add_request__pack(&r, f->buf);
	c = mkcmd(CMD_MEMBER_ADD, f->buf, len);
	rv = members_apply(&f->t, &c, &f->a, &out);
	if (rv == 0 && id)
		*id = ((const Etcdserverpb__MemberAddResponse *)out)->member->id;
	return rv;
}

static int apply_id(struct fx *f, uint8_t type, uint64_t id)
{
	const ProtobufCMessage *out;
	struct cmd c;
	size_t len;
	if (type == CMD_MEMBER_REMOVE) {
		Etcdserverpb__MemberRemoveRequest r;
		etcdserverpb__member_remove_request__init(&r);
		r.id = id;
		len = etcdserverpb__member_remove_request__pack(&r, f->buf);
	} else {
		Etcdserverpb__MemberPromoteRequest r;
		etcdserverpb__member_promote_request__init(&r);
		r.id = id;
		len = etcdserverpb__member_promote_request__pack(&r, f->buf);
	}
	c = mkcmd(type, f->buf, len);
	return members_apply(&f->t, &c, &f->a, &out);
}

static int apply_publish(struct fx *f, uint64_t id, const char *name, const char *curl)
{
	Etcdserverpb__Member m;
	const ProtobufCMessage *out;
	char *u = (char *)curl;
	struct cmd c;
	size_t len;
	etcdserverpb__member__init(&m);
	m.id = id;
	m.name = (char *)name;
	m.clienturls = &u;
	m.n_clienturls = 1;
	len = etcdserverpb__member__pack(&m, f->buf);
	c = mkcmd(CMD_MEMBER_PUBLISH, f->buf, len);
	return members_apply(&f->t, &c, &f->a, &out);
}

/* The id etcd 3.4 printed for --initial-cluster-token tok-1 and these two
 * peer URLs (given unsorted): sorting and concatenation match etcd's. */
static void test_id_matches_etcd(void **state)
{
	char *urls[] = {"http://127.0.0.1:29381", "http://127.0.0.1:29380"};
	(void)state;
	assert_true(members_id(urls, 2, TOKEN) == 0xe83faeacc19a73a3ull);
}

/* Nothing but INIT applies to an uninitialised table; a second INIT is a
 * no-op (the first leader's table wins). */
static void test_init(void **state)
{
	struct fx *f = *state;
	const char *a[] = {"http://a:1", "http://b:2", "http://c:3"};
	const char *b[] = {"http://x:1"};
	assert_int_equal(apply_add(f, "http://d:4", false, NULL), -KV_EINTERNAL);
	init_table(f, a, 3);
	assert_true(f->t.initialized);
	assert_true(f->t.cluster_id == 0x1234);
	assert_int_equal(f->t.n, 3);
	init_table(f, b, 1);
	assert_int_equal(f->t.n, 3);
	assert_non_null(members_find_peer_url(&f->t, "http://b:2"));
}

/* MemberAdd: the id derives from the URLs and the token; etcd's errors. */
static void test_add(void **state)
{
	struct fx *f = *state;
	const char *a[] = {"http://a:1", "http://b:2", "http://c:3"};
	char *d = "http://d:4";
	uint64_t id = 0, lid = 0;
	const struct member *m;

	init_table(f, a, 3);
	assert_int_equal(apply_add(f, "http://d:4", false, &id), 0);
	assert_true(id == members_id(&d, 1, TOKEN));
	m = members_find(&f->t, id);
	assert_non_null(m);
	assert_false(members_is_started(m));
	assert_int_equal(m->n_client_urls, 0);
	assert_int_equal(apply_add(f, "http://d:4", false, NULL), -KV_EPEERURLEXIST);
	assert_int_equal(apply_add(f, "http://a:1", true, NULL), -KV_EPEERURLEXIST);
	assert_int_equal(apply_add(f, NULL, false, NULL), -KV_EMEMBERBADURLS);
	assert_int_equal(apply_add(f, "", false, NULL), -KV_EMEMBERBADURLS);
	assert_int_equal(apply_add(f, "http://l:1", true, &lid), 0);
	assert_true(members_find(&f->t, lid)->is_learner);
	/* etcd 3.4 allows one learner. */
	assert_int_equal(apply_add(f, "http://l:2", true, NULL), -KV_ETOOMANYLEARNERS);
	assert_int_equal(members_learners(&f->t), 1);
	assert_int_equal(members_voters(&f->t), 4);
}

/* Remove, promote and publish, and what they refuse. */
static void test_remove_promote_publish(void **state)
{
	struct fx *f = *state;
	const char *a[] = {"http://a:1", "http://b:2"};
	uint64_t lid = 0;
	const struct member *m;

	init_table(f, a, 2);
	f->t.self_id = f->t.v[0].id;
	assert_int_equal(apply_add(f, "http://l:1", true, &lid), 0);
	assert_int_equal(apply_id(f, CMD_MEMBER_PROMOTE, f->t.v[0].id), -KV_EMEMBERNOTLEARNER);
	assert_int_equal(apply_id(f, CMD_MEMBER_PROMOTE, 42), -KV_EMEMBERNOTFOUND);
	assert_int_equal(apply_id(f, CMD_MEMBER_PROMOTE, lid), 0);
	assert_false(members_find(&f->t, lid)->is_learner);
	assert_int_equal(apply_publish(f, lid, "m3", "http://c:9"), 0);
	m = members_find(&f->t, lid);
	assert_true(members_is_started(m));
	assert_string_equal(m->name, "m3");
	assert_string_equal(m->client_urls[0], "http://c:9");
	assert_int_equal(apply_publish(f, 42, "x", "http://x:1"), -KV_EMEMBERNOTFOUND);
	assert_int_equal(apply_id(f, CMD_MEMBER_REMOVE, 42), -KV_EMEMBERNOTFOUND);
	assert_false(f->t.self_removed);
	assert_int_equal(apply_id(f, CMD_MEMBER_REMOVE, f->t.self_id), 0);
	assert_true(f->t.self_removed);
	assert_null(members_find(&f->t, f->t.self_id));
	assert_int_equal(apply_id(f, CMD_MEMBER_REMOVE, f->t.self_id), -KV_EMEMBERNOTFOUND);
}

/* MemberUpdate: peer URLs of an existing member, not another's. */
static void test_update(void **state)
{
	struct fx *f = *state;
	const char *a[] = {"http://a:1", "http://b:2"};
	Etcdserverpb__MemberUpdateRequest r;
	const ProtobufCMessage *out;
	char *urls[] = {"http://z:2", "http://y:1"};
	struct cmd c;
	size_t len;
	uint64_t id;

	init_table(f, a, 2);
	id = f->t.v[0].id;
	etcdserverpb__member_update_request__init(&r);
	r.id = id;
	r.peerurls = urls;
	r.n_peerurls = 2;
	len = etcdserverpb__member_update_request__pack(&r, f->buf);
	c = mkcmd(CMD_MEMBER_UPDATE, f->buf, len);
	assert_int_equal(members_apply(&f->t, &c, &f->a, &out), 0);
	/* Sorted, as etcd's types.URLs; the id stays. */
	assert_string_equal(members_find(&f->t, id)->peer_urls[0], "http://y:1");
	assert_string_equal(members_find(&f->t, id)->peer_urls[1], "http://z:2");
	r.id = f->t.v[1].id;
	len = etcdserverpb__member_update_request__pack(&r, f->buf);
	c = mkcmd(CMD_MEMBER_UPDATE, f->buf, len);
	assert_int_equal(members_apply(&f->t, &c, &f->a, &out), -KV_EPEERURLEXIST);
	r.id = 7;
	len = etcdserverpb__member_update_request__pack(&r, f->buf);
	c = mkcmd(CMD_MEMBER_UPDATE, f->buf, len);
	assert_int_equal(members_apply(&f->t, &c, &f->a, &out), -KV_EMEMBERNOTFOUND);
	c = mkcmd(CMD_MEMBER_UPDATE, (const uint8_t *)"\xff\xff\xff", 3);
	assert_int_equal(members_apply(&f->t, &c, &f->a, &out), -KV_EMALFORMED);
}

/* etcd's IsReadyToAddVotingMember / RemoveVotingMember / PromoteMember. */
static void test_quorum_checks(void **state)
{
	struct fx *f = *state;
	const char *a[] = {"http://a:1", "http://b:2", "http://c:3"};
	uint64_t lid;

	init_table(f, a, 1);
	assert_false(members_ready_to_add_voter(&f->t));
	assert_int_equal(apply_publish(f, f->t.v[0].id, "m1", "http://x:1"), 0);
	/* One started member may add a second; nobody may remove the last. */
	assert_true(members_ready_to_add_voter(&f->t));
	assert_false(members_ready_to_remove_voter(&f->t, f->t.v[0].id));
	members_close(&f->t);

	init_table(f, a, 3);
	/* None started: 0 of 4 cannot make a quorum of 3. */
	assert_false(members_ready_to_add_voter(&f->t));
	assert_int_equal(apply_publish(f, f->t.v[0].id, "m1", "http://x:1"), 0);
	assert_int_equal(apply_publish(f, f->t.v[1].id, "m2", "http://x:2"), 0);
	assert_false(members_ready_to_add_voter(&f->t)); /* 2 < 3 */
	assert_int_equal(apply_publish(f, f->t.v[2].id, "m3", "http://x:3"), 0);
	assert_true(members_ready_to_add_voter(&f->t)); /* 3 >= 3 */
	/* Removing one of three started leaves 2 of 2. */
	assert_true(members_ready_to_remove_voter(&f->t, f->t.v[0].id));
	assert_int_equal(apply_add(f, "http://l:1", true, &lid), 0);
	assert_true(members_ready_to_promote(&f->t, lid));
	assert_int_equal(apply_add(f, "http://d:4", false, NULL), 0);
	assert_int_equal(apply_add(f, "http://e:5", false, NULL), 0);
	/* 3 started of 5 voters (+1 to be) is below a quorum of 4. */
	assert_false(members_ready_to_promote(&f->t, lid));
}

/* A fake of the leader's connections: when each member's came up. */
struct fake_links {
	uint64_t id[8], since[8];
	size_t n;
};

static void fake_set(struct fake_links *l, uint64_t id, uint64_t since)
{
	size_t i;
	for (i = 0; i < l->n && l->id[i] != id; i++)
		;
	if (i == l->n)
		l->n++;
	l->id[i] = id;
	l->since[i] = since;
}

static uint64_t fake_up_since(void *arg, uint64_t id)
{
	struct fake_links *l = arg;
	size_t i;
	for (i = 0; i < l->n; i++)
		if (l->id[i] == id)
			return l->since[i];
	return 0;
}

/* etcd's isConnectedFullySince and mayRemoveMember's active quorum, with
 * the health interval ending at time 100 (connected before 100 counts). */
static void test_connectivity_checks(void **state)
{
	struct fx *f = *state;
	const char *a[] = {"http://a:1", "http://b:2", "http://c:3"};
	struct fake_links l;
	uint64_t self, b, c, d, lid;

	init_table(f, a, 3);
	memset(&l, 0, sizeof(l));
	self = f->t.v[0].id;
	b = f->t.v[1].id;
	c = f->t.v[2].id;
	/* Nobody connected yet, or only lately: not healthy. */
	assert_false(members_connected_fully(&f->t, self, 100, fake_up_since, &l));
	fake_set(&l, b, 50);
	fake_set(&l, c, 100);
	assert_false(members_connected_fully(&f->t, self, 100, fake_up_since, &l));
	fake_set(&l, c, 99);
	assert_true(members_connected_fully(&f->t, self, 100, fake_up_since, &l));
	/* All three connected: any one of them may go, self included. */
	assert_true(members_remove_keeps_quorum(&f->t, self, b, 100, fake_up_since, &l));
	assert_true(members_remove_keeps_quorum(&f->t, self, self, 100, fake_up_since, &l));

	/* c down: removing it is fine, removing b would leave self alone of
	 * three, and so would removing self. */
	fake_set(&l, c, 0);
	assert_true(members_remove_keeps_quorum(&f->t, self, c, 100, fake_up_since, &l));
	assert_false(members_remove_keeps_quorum(&f->t, self, b, 100, fake_up_since, &l));
	assert_false(members_remove_keeps_quorum(&f->t, self, self, 100, fake_up_since, &l));
	/* b up but only lately: it does not count, c still down. */
	fake_set(&l, b, 150);
	assert_false(members_remove_keeps_quorum(&f->t, self, b, 100, fake_up_since, &l));

	/* A learner never counts, connected or not; an unstarted voter does. */
	fake_set(&l, b, 10);
	fake_set(&l, c, 10);
	assert_int_equal(apply_add(f, "http://l:9", true, &lid), 0);
	assert_true(members_connected_fully(&f->t, self, 100, fake_up_since, &l));
	assert_int_equal(apply_add(f, "http://d:4", false, &d), 0);
	assert_false(members_connected_fully(&f->t, self, 100, fake_up_since, &l));
	/* Four voters, three connected: removing b leaves self and c of three,
	 * a quorum; with c down too it leaves self alone.  The unconnected d
	 * may always go. */
	assert_true(members_remove_keeps_quorum(&f->t, self, b, 100, fake_up_since, &l));
	fake_set(&l, c, 0);
	assert_false(members_remove_keeps_quorum(&f->t, self, b, 100, fake_up_since, &l));
	assert_true(members_remove_keeps_quorum(&f->t, self, d, 100, fake_up_since, &l));
}

/* The image: a round trip is exact, and a damaged image is refused
 * without touching the table. */
static void test_image(void **state)
{
	struct fx *f = *state;
	const char *a[] = {"http://a:1", "http://b:2", "http://c:3"};
	struct members t2;
	uint8_t *img, *img2, *bad;
	size_t len, len2, i;

	init_table(f, a, 3);
	assert_int_equal(apply_publish(f, f->t.v[1].id, "m2", "http://x:2"), 0);
	assert_int_equal(apply_add(f, "http://l:1", true, NULL), 0);
	assert_int_equal(members_encode(&f->t, &img, &len), 0);
	members_init(&t2);
	assert_int_equal(members_decode(&t2, img, len), 0);
	assert_int_equal(members_encode(&t2, &img2, &len2), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(img, img2, len);
	assert_true(t2.initialized);
	assert_true(t2.cluster_id == 0x1234);
	assert_string_equal(t2.token, TOKEN);
	assert_int_equal(t2.n, 4);
	free(img2);

	/* Every truncation fails and leaves t2 whole. */
	for (i = 0; i < len; i++)
		assert_int_equal(members_decode(&t2, img, i), -KV_ECORRUPT);
	assert_int_equal(t2.n, 4);
	/* Trailing bytes, a huge count, an unknown flag. */
	bad = malloc(len + 1);
	memcpy(bad, img, len);
	bad[len] = 0;
	assert_int_equal(members_decode(&t2, bad, len + 1), -KV_ECORRUPT);
	memcpy(bad, img, len);
	bad[0] |= 2;
	assert_int_equal(members_decode(&t2, bad, len), -KV_ECORRUPT);
	memcpy(bad, img, len);
	/* flags(4) cluster(8) token len(4)+5: the member count follows. */
	bad[21] = 0xff;
	bad[22] = 0xff;
	bad[23] = 0xff;
	bad[24] = 0x7f;
	assert_int_equal(members_decode(&t2, bad, len), -KV_ECORRUPT);
	assert_int_equal(t2.n, 4);
	free(bad);
	free(img);
	members_close(&t2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_matches_etcd),
		cmocka_unit_test_setup_teardown(test_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_promote_publish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quorum_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connectivity_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
