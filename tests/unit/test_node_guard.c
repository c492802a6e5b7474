/*
 * Unit tests for node_guard (node_guard.c): against a scripted raft_io,
 * an InstallSnapshot received while a snapshot of our own is being written
 * reaches libraft only after that write completes, with its data, config
 * and sender address intact; a second one replaces the first; installs
 * outside a take, other messages and installs being persisted pass
 * straight through; a guard closed with an install held frees it; a copy
 * that libraft ignores while it persists another install is freed by the
 * guard after libraft has seen it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/node_guard.h"

/* --- a scripted raft_io ------------------------------------------------- */

static raft_io_recv_cb io_recv;             /* what the guard handed to start */
static raft_io_snapshot_put_cb io_put_cb;   /* the pending put's callback */
static struct raft_io_snapshot_put *io_put_req;
static unsigned io_put_trailing;
static int io_put_result;

static int fake_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	(void)io;
	(void)msecs;
	(void)tick;
	io_recv = recv;
	return 0;
}

static int fake_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
			     const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	(void)io;
	(void)snapshot;
	if (io_put_result)
		return io_put_result;
	io_put_trailing = trailing;
	io_put_req = req;
	io_put_cb = cb;
	return 0;
}

/* --- what "libraft" saw ---------------------------------------------------- */

struct seen {
	int type;
	raft_index last_index;
	char address[64];
	char data[16];
	unsigned conf_n;
	int order; /* when, counting take completions and receptions */
};

static struct seen seen[8];
static int n_seen;
static int clock_;
static int take_done_at;
static int take_status;
static bool raft_frees = true; /* libraft takes what it receives */

static void raft_recv(struct raft_io *io, struct raft_message *m)
{
	struct seen *s = &seen[n_seen++];

	(void)io;
	s->type = m->type;
	s->order = ++clock_;
	snprintf(s->address, sizeof(s->address), "%s", m->server_address ? m->server_address : "");
	if (m->type == RAFT_INSTALL_SNAPSHOT) {
		s->last_index = m->install_snapshot.last_index;
		snprintf(s->data, sizeof(s->data), "%.*s", (int)m->install_snapshot.data.len,
			 (const char *)m->install_snapshot.data.base);
		s->conf_n = m->install_snapshot.conf.n;
		/* libraft owns them now (unless it ignores the message) */
		if (raft_frees) {
			raft_configuration_close(&m->install_snapshot.conf);
			raft_free(m->install_snapshot.data.base);
		}
	}
}

static void raft_take_cb(struct raft_io_snapshot_put *req, int status)
{
	(void)req;
	take_done_at = ++clock_;
	take_status = status;
}

static struct raft_message install_msg(raft_index idx, const char *data, char *addr_buf)
{
	struct raft_message m;
	size_t len = strlen(data);

	memset(&m, 0, sizeof(m));
	m.type = RAFT_INSTALL_SNAPSHOT;
	m.server_id = 2;
	m.server_address = addr_buf;
	m.install_snapshot.last_index = idx;
	m.install_snapshot.data.base = raft_malloc(len);
	memcpy(m.install_snapshot.data.base, data, len);
	m.install_snapshot.data.len = len;
	raft_configuration_init(&m.install_snapshot.conf);
	assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 1, "127.0.0.1:1", RAFT_VOTER), 0);
	assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 2, "127.0.0.1:2", RAFT_VOTER), 0);
	return m;
}

struct fx {
	struct raft raft;
	struct raft_io io;
	struct node_guard g;
	struct raft_io_snapshot_put put;
	struct raft_snapshot snap;
};

static int io_set_result;
static raft_term io_term;
static raft_id io_vote;
static int lost_calls;
static const char *lost_what;

static int fake_set_term(struct raft_io *io, raft_term term)
{
	(void)io;
	if (!io_set_result)
		io_term = term;
	return io_set_result;
}

static int fake_set_vote(struct raft_io *io, raft_id id)
{
	(void)io;
	if (!io_set_result)
		io_vote = id;
	return io_set_result;
}

static void record_lost(struct node_guard *g, const char *what, int rv)
{
	(void)g;
	assert_int_not_equal(rv, 0);
	lost_calls++;
	lost_what = what;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->io.data = &f->raft; /* as raft_init sets it */
	raft_frees = true;
	f->io.start = fake_start;
	f->io.snapshot_put = fake_snapshot_put;
	f->io.set_term = fake_set_term;
	f->io.set_vote = fake_set_vote;
	io_set_result = 0;
	io_term = 0;
	io_vote = 0;
	lost_calls = 0;
	lost_what = NULL;
	io_recv = NULL;
	io_put_cb = NULL;
	io_put_req = NULL;
	io_put_result = 0;
	n_seen = 0;
	clock_ = 0;
	take_done_at = 0;
	memset(seen, 0, sizeof(seen));
	node_guard_init(&f->g, &f->io);
	assert_int_equal(f->io.start(&f->io, 100, NULL, raft_recv), 0);
	assert_non_null(io_recv);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	node_guard_close(&f->g);
	free(f);
	return 0;
}

static void begin_take(struct fx *f)
{
	assert_int_equal(f->io.snapshot_put(&f->io, 64, &f->put, &f->snap, raft_take_cb), 0);
	assert_int_equal(io_put_trailing, 64);
	assert_ptr_equal(io_put_req, &f->put);
}

static void test_install_outside_take_passes(void **state)
{
	struct fx *f = *state;
	char addr[] = "127.0.0.1:2";
	struct raft_message m = install_msg(7, "abc", addr);

	io_recv(&f->io, &m);
	assert_int_equal(n_seen, 1);
	assert_int_equal(seen[0].last_index, 7);
	assert_string_equal(seen[0].data, "abc");
}

static void test_install_during_take_waits(void **state)
{
	struct fx *f = *state;
	char addr[] = "127.0.0.1:2";
	struct raft_message m = install_msg(9, "snapdata", addr);
	struct raft_message other;

	begin_take(f);
	io_recv(&f->io, &m);
	assert_int_equal(n_seen, 0); /* held */
	assert_int_equal(f->g.held_total, 1);
	/* the sender's connection may go and take its address string along */
	memset(addr, 'X', sizeof(addr) - 1);
	/* anything else passes meanwhile */
	memset(&other, 0, sizeof(other));
	other.type = RAFT_APPEND_ENTRIES;
	io_recv(&f->io, &other);
	assert_int_equal(n_seen, 1);
	assert_int_equal(seen[0].type, RAFT_APPEND_ENTRIES);
	/* the take completes: libraft hears of it first, then of the install */
	io_put_cb(io_put_req, 0);
	assert_int_equal(take_status, 0);
	assert_int_equal(n_seen, 2);
	assert_int_equal(seen[1].type, RAFT_INSTALL_SNAPSHOT);
	assert_true(take_done_at < seen[1].order);
	assert_int_equal(seen[1].last_index, 9);
	assert_string_equal(seen[1].data, "snapdata");
	assert_string_equal(seen[1].address, "127.0.0.1:2");
	assert_int_equal(seen[1].conf_n, 2);
	assert_false(f->g.held);
}

static void test_newer_install_replaces_held(void **state)
{
	struct fx *f = *state;
	char addr[] = "127.0.0.1:2";
	struct raft_message a = install_msg(10, "old", addr);
	struct raft_message b = install_msg(12, "new", addr);

	begin_take(f);
	io_recv(&f->io, &a);
	io_recv(&f->io, &b); /* the first is freed (ASan/LSan would tell) */
	assert_int_equal(n_seen, 0);
	io_put_cb(io_put_req, 0);
	assert_int_equal(n_seen, 1);
	assert_int_equal(seen[0].last_index, 12);
	assert_string_equal(seen[0].data, "new");
}

static void test_install_persist_not_guarded(void **state)
{
	struct fx *f = *state;

	/* trailing 0: libraft persisting an install, not a take */
	assert_int_equal(f->io.snapshot_put(&f->io, 0, &f->put, &f->snap, raft_take_cb), 0);
	assert_ptr_equal(io_put_cb, raft_take_cb);
	assert_false(f->g.taking);
}

static void test_failed_put_clears_take(void **state)
{
	struct fx *f = *state;
	char addr[] = "127.0.0.1:2";
	struct raft_message m = install_msg(3, "x", addr);

	io_put_result = RAFT_IOERR;
	assert_int_equal(f->io.snapshot_put(&f->io, 64, &f->put, &f->snap, raft_take_cb), RAFT_IOERR);
	assert_false(f->g.taking);
	io_recv(&f->io, &m);
	assert_int_equal(n_seen, 1); /* not held: no take in flight */
}

static void test_close_frees_held(void **state)
{
	struct fx *f = *state;
	char addr[] = "127.0.0.1:2";
	struct raft_message m = install_msg(5, "leak?", addr);

	begin_take(f);
	io_recv(&f->io, &m);
	assert_true(f->g.held);
	/* teardown closes the guard with the install still held: LSan checks */
}

static void test_copy_ignored_while_installing_is_freed(void **state)
{
	struct fx *f = *state;
	char addr[] = "127.0.0.1:2";
	struct raft_message m = install_msg(20, "copy", addr);

	/* a follower persisting an install of this term: libraft ignores the
	 * copy and frees nothing (LSan would report a leak otherwise) */
	f->raft.state = RAFT_FOLLOWER;
	f->raft.current_term = 4;
	f->raft.snapshot.installing = true;
	m.install_snapshot.term = 4;
	raft_frees = false;
	io_recv(&f->io, &m);
	assert_int_equal(n_seen, 1); /* libraft still saw it */
	assert_int_equal(f->g.ignored_total, 1);

	/* another term: libraft handles it (and owns it) */
	m = install_msg(21, "newer", addr);
	m.install_snapshot.term = 5;
	raft_frees = true;
	io_recv(&f->io, &m);
	assert_int_equal(n_seen, 2);
	assert_int_equal(f->g.ignored_total, 1);
}

/* A term or vote that reaches the disk passes through; one that does not
 * stops the member (production exits) instead of returning to libraft. */
static void test_unpersisted_term_or_vote_stops(void **state)
{
	struct fx *f = *state;

	f->g.state_lost = record_lost;
	assert_int_equal(f->io.set_term(&f->io, 7), 0);
	assert_int_equal(f->io.set_vote(&f->io, 3), 0);
	assert_int_equal(io_term, 7);
	assert_int_equal(io_vote, 3);
	assert_int_equal(lost_calls, 0);

	io_set_result = RAFT_IOERR;
	f->io.set_term(&f->io, 8);
	assert_int_equal(lost_calls, 1);
	assert_string_equal(lost_what, "term");
	f->io.set_vote(&f->io, 2);
	assert_int_equal(lost_calls, 2);
	assert_string_equal(lost_what, "vote");
	assert_int_equal(io_term, 7);
	assert_int_equal(io_vote, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_outside_take_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_during_take_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_install_replaces_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_persist_not_guarded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_put_clears_take, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_frees_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_ignored_while_installing_is_freed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unpersisted_term_or_vote_stops, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
