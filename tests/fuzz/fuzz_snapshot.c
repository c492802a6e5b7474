/*
 * fuzz_snapshot: the raft snapshot decoder, i.e. what a member reads from a
 * snapshot file at start-up or receives from its leader (InstallSnapshot):
 * fsm.c's restore (header, declared size, LZ4 frame and checksum, member,
 * alarm and lease sections, mvcc_decode, lease_table_restore).
 *
 * Input: byte 0 even: the rest is the snapshot as raft stores it (seeds are
 * images the server made, FZ_DUMP_SNAPSHOTS and `etcdctl snapshot save`);
 * odd: the rest is the uncompressed image, which the harness puts behind a
 * valid header (format 1 + (byte 0 >> 1) % 4) and LZ4 frame, so the fuzzer
 * reaches the section decoders past the checksum.
 * Whatever restores must then behave: its own image (fsm_image) restores
 * again to the byte-identical image, hashes and a full range work, and an
 * entry that writes, deletes everything and compacts applies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>
#include <raft.h>

#include "fz.h"
#include "lib/arena.h"
#include "server/fsm.h"
#include "server/kvs.h"
#include "server/mvcc.h"
#include "server/server.h"
#include "rpc.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *fuzz_entry;
static size_t fuzz_entry_len;

/* Put, delete everything, compact to the head: touches every key. */
static void fuzz_make_entry(void)
{
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__DeleteRangeRequest del = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__CompactionRequest cp = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	struct cmd_batch b;

	cmd_batch_init(&b);
	put.key.data = (uint8_t *)"foo";
	put.key.len = 3;
	put.value.data = (uint8_t *)"new";
	put.value.len = 3;
	put.prev_kv = 1;
	fz_cmd_add(&b, CMD_PUT, &put.base);
	del.key.data = (uint8_t *)"\0";
	del.key.len = 1;
	del.range_end.data = (uint8_t *)"\0";
	del.range_end.len = 1;
	del.prev_kv = 1;
	fz_cmd_add(&b, CMD_DELETE_RANGE, &del.base);
	cp.revision = INT64_MAX; /* "required revision is a future revision" */
	fz_cmd_add(&b, CMD_COMPACT, &cp.base);
	fuzz_entry = fz_entry_take(&b, &fuzz_entry_len);
	cmd_batch_close(&b);
}

static int fuzz_restore(const uint8_t *p, size_t n)
{
	struct raft_fsm *fsm = fz_fsm();
	struct raft_buffer buf;
	int rv;

	buf.len = n;
	buf.base = raft_malloc(n ? n : 1);
	if (!buf.base)
		abort();
	if (n)
		memcpy(buf.base, p, n);
	rv = fsm->restore(fsm, &buf);
	if (rv)
		raft_free(buf.base); /* on success restore took it */
	return rv;
}

/* Header and LZ4 frame around a raw image, as fsm_image writes them. */
static uint8_t *fuzz_wrap(const uint8_t *img, size_t n, unsigned format, size_t *out_len)
{
	LZ4F_preferences_t prefs;
	size_t bound, clen;
	uint8_t *out;
	int i;

	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	prefs.frameInfo.contentSize = n;
	bound = LZ4F_compressFrameBound(n, &prefs);
	out = malloc(16 + bound);
	if (!out)
		abort();
	clen = LZ4F_compressFrame(out + 16, bound, img, n, &prefs);
	if (LZ4F_isError(clen))
		abort();
	memcpy(out, "RKVS", 4);
	for (i = 0; i < 4; i++)
		out[4 + i] = (uint8_t)(format >> (8 * i));
	for (i = 0; i < 8; i++)
		out[8 + i] = (uint8_t)((uint64_t)n >> (8 * i));
	*out_len = 16 + clen;
	return out;
}

static void fuzz_exercise(struct server *srv)
{
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse resp;
	struct raft_fsm *fsm = fz_fsm();
	struct raft_buffer buf;
	struct arena a;
	uint8_t *img1, *img2;
	size_t len1, len2;
	uint32_t hash;
	int64_t crev;
	void *result;

	/* Our own image of it must restore to the same image. */
	if (fsm_image(&srv->fsm_ctx, &img1, &len1))
		abort();
	if (fuzz_restore(img1, len1)) {
		fprintf(stderr, "a restored snapshot's own image does not restore\n");
		abort();
	}
	if (fsm_image(&srv->fsm_ctx, &img2, &len2))
		abort();
	if (len1 != len2 || memcmp(img1, img2, len1) != 0) {
		fprintf(stderr, "a restored snapshot's image changes when restored again\n");
		abort();
	}
	raft_free(img1);
	raft_free(img2);

	mvcc_hash(srv->mvcc, &hash);
	mvcc_hash_kv(srv->mvcc, 0, &hash, &crev);
	arena_init(&a);
	rr.key.data = (uint8_t *)"\0";
	rr.key.len = 1;
	rr.range_end.data = (uint8_t *)"\0";
	rr.range_end.len = 1;
	kvs_range(&srv->kvs, &rr, &a, &resp);
	rr.revision = crev + 1;
	kvs_range(&srv->kvs, &rr, &a, &resp);
	arena_close(&a);

	/* Applied as a follower applies it (the fsm alone: no loop turn, so
	 * the member's timers never see this foreign state). */
	buf.base = fuzz_entry;
	buf.len = fuzz_entry_len;
	fsm->apply(fsm, &buf, &result);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct server *srv;
	uint8_t *wrapped;
	size_t wlen;

	if (size < 1)
		return 0;
	srv = fz_server();
	if (!fuzz_entry)
		fuzz_make_entry();
	fz_reset();
	if (data[0] & 1) {
		wrapped = fuzz_wrap(data + 1, size - 1, 1 + (data[0] >> 1) % 4, &wlen);
		if (fuzz_restore(wrapped, wlen) == 0)
			fuzz_exercise(srv);
		free(wrapped);
	} else if (fuzz_restore(data + 1, size - 1) == 0) {
		fuzz_exercise(srv);
	}
	return 0;
}
