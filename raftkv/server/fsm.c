/*
 * fsm: the libraft state machine (fsm version 2) of raftkv.
 *
 * apply: one raft entry is a batch of commands (cmd.h), padded by node to a
 * multiple of 8 bytes (cmd_entry_len() strips that).  The entry is first
 * walked once to check its framing, then each command's payload (the etcd
 * request protobuf as the client sent it) is decoded into a per-command
 * arena and applied through kvs to the mvcc store.  Every command's result
 * goes to the applied hook at once, while the response still points into the
 * arena and the store (the server completes its own proposals there).
 * Everything the fsm touches comes through struct fsm_ctx (fsm.h): the
 * server's fields in raftkv, plain per-member state in tests/sim.  Everything here is
 * deterministic, so every member reaches the same state:
 *   - a malformed entry (bad framing) is skipped as a whole, loudly: all
 *     members see the same bytes (libraft checksums its log), so all skip
 *     it; stopping the state machine instead would stall the cluster for
 *     good (libraft retries a failed apply forever);
 *   - a payload that does not decode, or an unknown command type, becomes
 *     an error result for that command only;
 *   - request-level failures (compacted, lease not found...) are results,
 *     never a non-zero return to raft;
 *   - out of memory inside a write leaves it half applied (mvcc.h): that
 *     member aborts and rebuilds from snapshot + log on restart rather than
 *     diverge.
 * The raft index being applied is raft_last_applied() + 1: libraft applies
 * entries in order and only advances last_applied after apply returns.
 *
 * snapshot / snapshot_finalize: the store's canonical image (mvcc_encode)
 * followed by the lease section (lease_table_encode's image, then its
 * length as u64 LE), the alarm section (alarm_table_encode, then its
 * length) and the member section (members_encode, then its length): format
 * 4.  Format 3 had no member section (read as an uninitialised table, which
 * the leader fills again), format 2 no alarm section and format 1 the store
 * image alone; all are still read.  The whole is compressed as one LZ4
 * frame with a content checksum, behind our own header (magic, format
 * version, uncompressed size).  libraft 0.22.1 calls this inline on the loop
 * and writes the bytes raw, so the encode and the compression cost loop
 * time (measured in the report, logged each time).  fsm_image() makes these
 * same bytes for Maintenance/Snapshot, and tools/raftkv-restore installs
 * them as a raft snapshot: one encoder for all three.
 *
 * restore: checks the header, bounds the declared size before allocating,
 * decompresses, decodes into a fresh store and swaps it in only once it is
 * whole.  A corrupt or unknown-format snapshot makes restore fail, which
 * makes raft_start fail: the server refuses to start instead of serving an
 * empty or partial store.
 */
#include "server/fsm.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/log.h"
#include "server/alarm.h"
#include "server/cmd.h"
#include "server/kvs.h"
#include "server/lease.h"
#include "server/members.h"
#include "server/metrics.h"
#include "server/mvcc.h"
#include "rpc.pb-c.h"

/* Snapshot header: magic | format u32 LE | uncompressed length u64 LE. */
#define FSM_SNAP_MAGIC "RKVS"
#define FSM_SNAP_FORMAT 4u
/* Format 3: no member section.  Format 2: no alarm section either.  Format
 * 1: the store image alone. */
#define FSM_SNAP_FORMAT_V3 3u
#define FSM_SNAP_FORMAT_V2 2u
#define FSM_SNAP_FORMAT_V1 1u
#define FSM_SNAP_HEADER 16u
/* LZ4 cannot expand more than 255:1; anything beyond is a lie. */
#define FSM_SNAP_MAX_RATIO 255u
#define FSM_SNAP_MAX_RAW (64ull << 30)

struct fsm_state {
	struct fsm_ctx ctx;
	uint64_t applied_index;
};

static uint64_t fsm_now_us(const struct fsm_ctx *ctx)
{
	return ctx->hooks && ctx->hooks->now_us ? ctx->hooks->now_us(ctx->arg) : 0;
}

static void fsm_note_snapshot(const struct fsm_ctx *ctx, size_t image_bytes)
{
	if (ctx->hooks && ctx->hooks->note_snapshot)
		ctx->hooks->note_snapshot(ctx->arg, image_bytes);
}

static void fsm_note_applied(const struct fsm_ctx *ctx, size_t entry_bytes)
{
	if (ctx->hooks && ctx->hooks->note_applied)
		ctx->hooks->note_applied(ctx->arg, entry_bytes);
}

static uint64_t fsm_last_applied(const struct fsm_state *st)
{
	const struct fsm_hooks *h = st->ctx.hooks;
	return h && h->last_applied ? h->last_applied(st->ctx.arg) : st->applied_index;
}

static const char *fsm_where(const struct fsm_ctx *ctx)
{
	return ctx->data_dir ? ctx->data_dir : "(no data dir)";
}

static void fsm_put_u32(uint8_t *p, uint32_t v)
{
	int i;
	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fsm_put_u64(uint8_t *p, uint64_t v)
{
	int i;
	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t fsm_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t fsm_get_u64(const uint8_t *p)
{
	return (uint64_t)fsm_get_u32(p) | (uint64_t)fsm_get_u32(p + 4) << 32;
}

/* --- apply -------------------------------------------------------------- */

/* The whole entry's framing, before anything of it is applied. */
static int fsm_check_entry(const struct raft_buffer *buf, size_t len, uint32_t *count)
{
	struct cmd_iter it;
	struct cmd c;
	int rv;
	*count = 0;
	if ((rv = cmd_iter_init(&it, buf->base, len)))
		return rv;
	while ((rv = cmd_iter_next(&it, &c)) == 1)
		(*count)++;
	return rv;
}

static void fsm_fatal_nomem(const struct fsm_state *st, const struct cmd *c)
{
	/* A write may be half applied: continuing would diverge from the other
	 * members.  Restarting replays the entry from the log. */
	LOGE("out of memory while applying raft entry %" PRIu64 " (command type %u): "
	     "aborting so that the restart rebuilds the store from snapshot and log",
	     st->applied_index, (unsigned)c->type);
	abort();
}

static void fsm_apply_cmd(struct fsm_state *st, const struct cmd *c)
{
	const struct fsm_ctx *ctx = &st->ctx;
	struct mvcc *m = *ctx->mvcc;
	struct lease_table *leases = *ctx->leases;
	ProtobufCAllocator *pa;
	struct arena a;
	union {
		Etcdserverpb__PutResponse put;
		Etcdserverpb__DeleteRangeResponse del;
		Etcdserverpb__TxnResponse txn;
		Etcdserverpb__CompactionResponse compact;
		Etcdserverpb__LeaseGrantResponse grant;
		Etcdserverpb__LeaseRevokeResponse revoke;
		Etcdserverpb__AlarmResponse alarm;
	} resp;
	const ProtobufCMessage *out = NULL;
	int err;

	arena_init(&a);
	pa = arena_pb_allocator(&a);
	/* Raised alarms refuse some writes (alarm.h), the same on every member. */
	if ((err = alarm_gate(ctx->alarms, c)))
		goto done;
	switch (c->type) {
	case CMD_PUT: {
		Etcdserverpb__PutRequest *r =
			etcdserverpb__put_request__unpack(pa, c->len, c->payload);
		err = r ? kvs_put(ctx->kvs, r, &a, &resp.put) : -KV_EMALFORMED;
		metrics.mvcc_put += !err;
		out = &resp.put.base;
		break;
	}
	case CMD_DELETE_RANGE: {
		Etcdserverpb__DeleteRangeRequest *r =
			etcdserverpb__delete_range_request__unpack(pa, c->len, c->payload);
		err = r ? kvs_delete_range(ctx->kvs, r, &a, &resp.del) : -KV_EMALFORMED;
		metrics.mvcc_delete += !err;
		out = &resp.del.base;
		break;
	}
	case CMD_TXN: {
		/* Depth check first: protobuf-c recursion must not overflow. */
		Etcdserverpb__TxnRequest *r =
			kvs_check_txn_wire(c->payload, c->len) == 0
				? etcdserverpb__txn_request__unpack(pa, c->len, c->payload)
				: NULL;
		err = r ? kvs_txn(ctx->kvs, r, &a, &resp.txn) : -KV_EMALFORMED;
		metrics.mvcc_txn += !err;
		out = &resp.txn.base;
		break;
	}
	case CMD_COMPACT: {
		Etcdserverpb__CompactionRequest *r =
			etcdserverpb__compaction_request__unpack(pa, c->len, c->payload);
		err = r ? kvs_compact(ctx->kvs, r, &a, &resp.compact) : -KV_EMALFORMED;
		out = &resp.compact.base;
		break;
	}
	case CMD_LEASE_GRANT: {
		/* The server-chosen ID comes from the raft index: the same on
		 * every member.  The deadline (monotonic µs, as svc_lease) matters
		 * on the leader only and is not replicated state. */
		Etcdserverpb__LeaseGrantRequest *r =
			etcdserverpb__lease_grant_request__unpack(pa, c->len, c->payload);
		err = !r ? -KV_EMALFORMED
			 : !leases
			 ? -KV_EINTERNAL
			 : lease_apply_grant(leases, r, c->origin, st->applied_index,
					     fsm_now_us(ctx), mvcc_rev(m), &a, &resp.grant);
		metrics.lease_granted += !err;
		out = &resp.grant.base;
		break;
	}
	case CMD_LEASE_REVOKE: {
		Etcdserverpb__LeaseRevokeRequest *r =
			etcdserverpb__lease_revoke_request__unpack(pa, c->len, c->payload);
		err = !r ? -KV_EMALFORMED
			 : !leases ? -KV_EINTERNAL
				   : lease_apply_revoke(leases, m, r, &a, &resp.revoke);
		metrics.lease_revoked += !err;
		out = &resp.revoke.base;
		break;
	}
	case CMD_ALARM: {
		Etcdserverpb__AlarmRequest *r =
			etcdserverpb__alarm_request__unpack(pa, c->len, c->payload);
		err = r ? alarm_apply(ctx->alarms, r, &a, &resp.alarm) : -KV_EMALFORMED;
		out = &resp.alarm.base;
		break;
	}
	case CMD_MEMBER_INIT:
	case CMD_MEMBER_ADD:
	case CMD_MEMBER_REMOVE:
	case CMD_MEMBER_UPDATE:
	case CMD_MEMBER_PROMOTE:
	case CMD_MEMBER_PUBLISH:
		/* The member table; libraft's configuration follows it
		 * (svc_cluster.c). */
		err = members_apply(ctx->members, c, &a, &out);
		break;
	default:
		err = -KV_EINTERNAL;
		break;
	}
done:
	if (err == -KV_ENOMEM)
		fsm_fatal_nomem(st, c);
	if (err == -KV_EMALFORMED || (c->type == 0 || c->type >= CMD__MAX))
		LOGE("raft entry %" PRIu64 ": command type %u of %u bytes does not decode; "
		     "answered with an error on every member",
		     st->applied_index, (unsigned)c->type, (unsigned)c->len);
	if (ctx->hooks && ctx->hooks->applied)
		ctx->hooks->applied(ctx->arg, c, err, err ? NULL : out);
	arena_close(&a);
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct fsm_state *st = fsm->data;
	struct cmd_iter it;
	struct cmd c;
	uint32_t count;
	size_t len = 0;
	int rv;

	/* Results go to prop_complete(); libraft would drop this on followers
	 * and replays anyway. */
	*result = NULL;
	st->applied_index = fsm_last_applied(st) + 1;
	rv = cmd_entry_len(buf->base, buf->len, &len);
	if (rv == 0)
		rv = fsm_check_entry(buf, len, &count);
	if (rv) {
		LOGE("raft entry %" PRIu64 " (%zu bytes) is malformed (%s): skipped on every "
		     "member; commands waiting for it fail",
		     st->applied_index, buf->len, kv_err_name(rv));
		fsm_note_applied(&st->ctx, buf->len);
		return 0;
	}
	cmd_iter_init(&it, buf->base, len);
	while (cmd_iter_next(&it, &c) == 1)
		fsm_apply_cmd(st, &c);
	fsm_note_applied(&st->ctx, buf->len);
	return 0;
}

/* --- snapshots --------------------------------------------------------------- */

/* Appends the lease section to the store image: lease image | its length. */
static int fsm_append_leases(const struct fsm_ctx *ctx, uint8_t **img, size_t *img_len)
{
	struct lease_table *empty = NULL;
	uint8_t *limg = NULL, *grown;
	size_t llen = 0;
	int rv;

	struct lease_table *leases = *ctx->leases;

	if (!leases && !(empty = lease_table_new())) {
		free(*img);
		return -KV_ENOMEM;
	}
	rv = lease_table_encode(leases ? leases : empty, &limg, &llen);
	lease_table_free(empty);
	if (rv == 0 && !(grown = realloc(*img, *img_len + llen + 8)))
		rv = -KV_ENOMEM;
	if (rv) {
		free(limg);
		free(*img);
		return rv;
	}
	memcpy(grown + *img_len, limg, llen);
	fsm_put_u64(grown + *img_len + llen, llen);
	free(limg);
	*img = grown;
	*img_len += llen + 8;
	return 0;
}

/* Appends the alarm section: alarm image | its length. */
static int fsm_append_alarms(const struct fsm_ctx *ctx, uint8_t **img, size_t *img_len)
{
	uint8_t *aimg = NULL, *grown = NULL;
	size_t alen = 0;
	int rv;

	rv = alarm_table_encode(ctx->alarms, &aimg, &alen);
	if (rv == 0 && !(grown = realloc(*img, *img_len + alen + 8)))
		rv = -KV_ENOMEM;
	if (rv) {
		free(aimg);
		free(*img);
		return rv;
	}
	memcpy(grown + *img_len, aimg, alen);
	fsm_put_u64(grown + *img_len + alen, alen);
	free(aimg);
	*img = grown;
	*img_len += alen + 8;
	return 0;
}

/* Appends the member section: member table image | its length. */
static int fsm_append_members(const struct fsm_ctx *ctx, uint8_t **img, size_t *img_len)
{
	uint8_t *mimg = NULL, *grown = NULL;
	size_t mlen = 0;
	int rv;

	rv = members_encode(ctx->members, &mimg, &mlen);
	if (rv == 0 && !(grown = realloc(*img, *img_len + mlen + 8)))
		rv = -KV_ENOMEM;
	if (rv) {
		free(mimg);
		free(*img);
		return rv;
	}
	memcpy(grown + *img_len, mimg, mlen);
	fsm_put_u64(grown + *img_len + mlen, mlen);
	free(mimg);
	*img = grown;
	*img_len += mlen + 8;
	return 0;
}

int fsm_image(const struct fsm_ctx *ctx, uint8_t **data, size_t *len)
{
	LZ4F_preferences_t prefs;
	uint8_t *img = NULL, *out, *shrunk;
	size_t img_len = 0, bound, clen;
	uint64_t t0 = fsm_now_us(ctx), t1;
	int rv;

	rv = mvcc_encode(*ctx->mvcc, &img, &img_len);
	if (rv == 0)
		rv = fsm_append_leases(ctx, &img, &img_len);
	if (rv == 0)
		rv = fsm_append_alarms(ctx, &img, &img_len);
	if (rv == 0)
		rv = fsm_append_members(ctx, &img, &img_len);
	if (rv) {
		LOGE("snapshot: cannot encode the store: %s", kv_err_name(rv));
		return rv;
	}
	t1 = fsm_now_us(ctx);
	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.blockSizeID = LZ4F_max4MB;
	prefs.frameInfo.blockMode = LZ4F_blockIndependent;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	prefs.frameInfo.contentSize = img_len;
	prefs.compressionLevel = 0; /* fast: this runs on the loop */
	bound = LZ4F_compressFrameBound(img_len, &prefs);
	out = raft_malloc(FSM_SNAP_HEADER + bound);
	if (!out) {
		free(img);
		return -KV_ENOMEM;
	}
	clen = LZ4F_compressFrame(out + FSM_SNAP_HEADER, bound, img, img_len, &prefs);
	free(img);
	if (LZ4F_isError(clen)) {
		LOGE("snapshot: lz4: %s", LZ4F_getErrorName(clen));
		raft_free(out);
		return -KV_EINTERNAL;
	}
	memcpy(out, FSM_SNAP_MAGIC, 4);
	fsm_put_u32(out + 4, FSM_SNAP_FORMAT);
	fsm_put_u64(out + 8, img_len);
	shrunk = raft_realloc(out, FSM_SNAP_HEADER + clen);
	if (shrunk)
		out = shrunk;
	*data = out;
	*len = FSM_SNAP_HEADER + clen;
	LOGD("store image of revision %" PRId64 ": %zu bytes, %zu compressed; encode %.1f ms + "
	     "lz4 %.1f ms on the loop",
	     mvcc_rev(*ctx->mvcc), img_len, *len, (double)(t1 - t0) / 1e3,
	     (double)(fsm_now_us(ctx) - t1) / 1e3);
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct fsm_state *st = fsm->data;
	const struct fsm_ctx *ctx = &st->ctx;
	struct raft_buffer *b;
	uint8_t *out = NULL;
	size_t len = 0;
	uint64_t t0 = fsm_now_us(ctx), raw_len;
	int rv;

	b = raft_malloc(sizeof(*b));
	if (!b)
		return RAFT_NOMEM;
	rv = fsm_image(ctx, &out, &len);
	if (rv) {
		raft_free(b);
		return rv == -KV_ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
	}
	raw_len = fsm_get_u64(out + 8);
	b->base = out;
	b->len = len;
	*bufs = b;
	*n_bufs = 1;
	fsm_note_snapshot(ctx, (size_t)raw_len);
	metrics.snapshots_saved++;
	LOGI("snapshot at index %" PRIu64 " (revision %" PRId64 ", %" PRIu64 " keys): "
	     "%" PRIu64 " bytes, %zu compressed; encode + lz4 %.1f ms on the loop",
	     fsm_last_applied(st), mvcc_rev(*ctx->mvcc), mvcc_live_keys(*ctx->mvcc), raw_len,
	     b->len, (double)(fsm_now_us(ctx) - t0) / 1e3);
	return 0;
}

/* v2: we own the buffers; libraft is done with them (written or not). */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[],
				 unsigned *n_bufs)
{
	unsigned i;
	(void)fsm;
	if (*bufs) {
		for (i = 0; i < *n_bufs; i++)
			raft_free((*bufs)[i].base);
		raft_free(*bufs);
	}
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

/* The uncompressed image, or NULL with *why set. */
static uint8_t *fsm_decompress(const uint8_t *src, size_t clen, uint64_t raw_len,
			       const char **why)
{
	LZ4F_decompressionContext_t dctx;
	LZ4F_frameInfo_t info;
	uint8_t *out;
	size_t ipos, opos = 0, r, consumed = clen;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
		*why = "out of memory";
		return NULL;
	}
	r = LZ4F_getFrameInfo(dctx, &info, src, &consumed);
	if (LZ4F_isError(r)) {
		*why = "bad lz4 frame header";
		LZ4F_freeDecompressionContext(dctx);
		return NULL;
	}
	if (info.contentSize != raw_len || info.contentChecksumFlag != LZ4F_contentChecksumEnabled) {
		*why = "lz4 frame size or checksum flag disagrees with the header";
		LZ4F_freeDecompressionContext(dctx);
		return NULL;
	}
	out = malloc(raw_len ? raw_len : 1);
	if (!out) {
		*why = "out of memory";
		LZ4F_freeDecompressionContext(dctx);
		return NULL;
	}
	ipos = consumed;
	r = 1;
	while (r != 0) {
		size_t in = clen - ipos, o = raw_len - opos;
		if (in == 0) {
			*why = "truncated lz4 frame";
			goto fail;
		}
		r = LZ4F_decompress(dctx, out + opos, &o, src + ipos, &in, NULL);
		if (LZ4F_isError(r)) {
			*why = LZ4F_getErrorName(r); /* includes checksum mismatch */
			goto fail;
		}
		if (in == 0 && o == 0) {
			*why = "lz4 frame makes no progress";
			goto fail;
		}
		ipos += in;
		opos += o;
	}
	if (opos != raw_len || ipos != clen) {
		*why = "lz4 frame size mismatch or trailing bytes";
		goto fail;
	}
	LZ4F_freeDecompressionContext(dctx);
	return out;
fail:
	LZ4F_freeDecompressionContext(dctx);
	free(out);
	return NULL;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct fsm_state *st = fsm->data;
	const struct fsm_ctx *ctx = &st->ctx;
	const uint8_t *p = buf->base;
	const char *why = NULL;
	struct mvcc *fresh, *old;
	struct alarm_table alarms;
	struct members members;
	uint64_t raw_len, body_len, store_len, lease_len, alarm_len = 0, t0 = fsm_now_us(ctx), t1, t2;
	uint64_t members_len = 0, leader = 0, index = 0;
	uint32_t format;
	uint8_t *img;
	int rv;

	if (buf->len < FSM_SNAP_HEADER || memcmp(p, FSM_SNAP_MAGIC, 4) != 0) {
		why = "not a raftkv snapshot (bad magic)";
		goto corrupt;
	}
	format = fsm_get_u32(p + 4);
	if (format != FSM_SNAP_FORMAT && format != FSM_SNAP_FORMAT_V3 &&
	    format != FSM_SNAP_FORMAT_V2 && format != FSM_SNAP_FORMAT_V1) {
		LOGE("the raft snapshot in %s has format version %u; this raftkv reads "
		     "version %u only (written by a newer raftkv?): refusing to load it",
		     fsm_where(ctx), format, FSM_SNAP_FORMAT);
		return RAFT_CORRUPT;
	}
	raw_len = fsm_get_u64(p + 8);
	if (raw_len > FSM_SNAP_MAX_RAW ||
	    raw_len > (uint64_t)(buf->len - FSM_SNAP_HEADER) * FSM_SNAP_MAX_RATIO + 65536) {
		why = "declared size is impossible for its compressed size";
		goto corrupt;
	}
	img = fsm_decompress(p + FSM_SNAP_HEADER, buf->len - FSM_SNAP_HEADER, raw_len, &why);
	t1 = fsm_now_us(ctx);
	if (!img)
		goto corrupt;
	fresh = mvcc_new();
	if (!fresh) {
		free(img);
		LOGE("restoring the raft snapshot: out of memory");
		return RAFT_NOMEM;
	}
	/* Sections are peeled off the end, newest first; body_len is what is
	 * left.  Since format 3 the alarm section: alarm image | its length.
	 * Decoded into a table of its own, so that nothing is changed when
	 * the image turns out corrupt. */
	memset(&alarms, 0, sizeof(alarms));
	members_init(&members);
	members.self_id = ctx->members->self_id;
	body_len = raw_len;
	/* Since format 4 the member section: member image | its length. */
	if (format >= 4u) {
		if (body_len < 8 ||
		    (members_len = fsm_get_u64(img + body_len - 8)) > body_len - 8) {
			free(img);
			mvcc_free(fresh);
			why = "bad member section length";
			goto corrupt;
		}
		body_len -= 8 + members_len;
		rv = members_decode(&members, img + body_len, members_len);
		if (rv) {
			free(img);
			mvcc_free(fresh);
			if (rv == -KV_ENOMEM) {
				LOGE("restoring the raft snapshot: out of memory");
				return RAFT_NOMEM;
			}
			why = "the member section inside does not decode";
			goto corrupt;
		}
	}
	if (format >= 3u) {
		if (body_len < 8 || (alarm_len = fsm_get_u64(img + body_len - 8)) > body_len - 8) {
			free(img);
			mvcc_free(fresh);
			members_close(&members);
			why = "bad alarm section length";
			goto corrupt;
		}
		body_len -= 8 + alarm_len;
		rv = alarm_table_decode(&alarms, img + body_len, alarm_len);
		if (rv) {
			free(img);
			mvcc_free(fresh);
			members_close(&members);
			if (rv == -KV_ENOMEM) {
				LOGE("restoring the raft snapshot: out of memory");
				return RAFT_NOMEM;
			}
			why = "the alarm section inside does not decode";
			goto corrupt;
		}
	}
	/* Format 2: store image | lease image | lease image length. */
	store_len = body_len;
	lease_len = 0;
	if (format != FSM_SNAP_FORMAT_V1) {
		if (body_len < 8 || (lease_len = fsm_get_u64(img + body_len - 8)) > body_len - 8) {
			free(img);
			mvcc_free(fresh);
			alarm_table_close(&alarms);
			members_close(&members);
			why = "bad lease section length";
			goto corrupt;
		}
		store_len = body_len - 8 - lease_len;
	}
	rv = mvcc_decode(fresh, img, store_len);
	t2 = fsm_now_us(ctx);
	if (rv == 0 && *ctx->leases) {
		/* Keys are reattached from the fresh store; on failure the
		 * table is left as it was. */
		rv = lease_table_restore(*ctx->leases, format == FSM_SNAP_FORMAT_V1 ? NULL : img + store_len,
					 lease_len, fresh);
		if (rv && rv != -KV_ENOMEM)
			why = "the lease section inside does not decode";
	} else if (rv) {
		why = "the store image inside does not decode";
	}
	free(img);
	if (rv) {
		mvcc_free(fresh);
		alarm_table_close(&alarms);
		members_close(&members);
		if (rv == -KV_ENOMEM) {
			LOGE("restoring the raft snapshot: out of memory");
			return RAFT_NOMEM;
		}
		goto corrupt;
	}
	/* Whole: swap it in.  Nobody may keep pointers into the old store. */
	old = *ctx->mvcc;
	*ctx->mvcc = fresh;
	ctx->kvs->mvcc = fresh;
	if (old)
		mvcc_free(old);
	alarms.raising = ctx->alarms->raising; /* ours, not replicated */
	alarm_table_close(ctx->alarms);
	*ctx->alarms = alarms;
	members.self_removed = ctx->members->self_removed; /* ours, not replicated */
	members_close(ctx->members);
	*ctx->members = members;
	fsm_note_snapshot(ctx, raw_len);
	metrics.snapshots_restored++;
	if (ctx->hooks && ctx->hooks->installed && ctx->hooks->installed(ctx->arg, &leader, &index))
		/* After start-up, restore only ever runs for an InstallSnapshot.
		 * Said apart from the start-up restore so that operators (and
		 * the tests) can tell a catch-up by snapshot from one by log. */
		LOGI("installed a raft snapshot from leader %016" PRIx64 " at index %" PRIu64
		     ": revision %" PRId64 ", %" PRIu64 " keys, %" PRIu64 " leases, %zu alarms, "
		     "%zu bytes (%" PRIu64 " uncompressed) in %.1f ms",
		     leader, index, mvcc_rev(fresh), mvcc_live_keys(fresh),
		     *ctx->leases ? lease_table_count(*ctx->leases) : 0, ctx->alarms->n, buf->len,
		     raw_len, (double)(fsm_now_us(ctx) - t0) / 1e3);
	else
		LOGI("restored the store from a raft snapshot at start-up: revision %" PRId64
		     ", %" PRIu64 " keys, %" PRIu64 " leases, %zu alarms, %zu bytes (%" PRIu64
		     " uncompressed) in %.1f ms (lz4 %.1f, store %.1f)",
		     mvcc_rev(fresh), mvcc_live_keys(fresh),
		     *ctx->leases ? lease_table_count(*ctx->leases) : 0, ctx->alarms->n, buf->len,
		     raw_len, (double)(fsm_now_us(ctx) - t0) / 1e3, (double)(t1 - t0) / 1e3,
		     (double)(t2 - t1) / 1e3);
	/* Success only: libraft then expects us to own and free the data. */
	raft_free(buf->base);
	buf->base = NULL;
	return 0;

corrupt:
	LOGE("the raft snapshot in %s is corrupt (%s): refusing to load it", fsm_where(ctx),
	     why);
	return RAFT_CORRUPT;
}

/* --- lifecycle ------------------------------------------------------------------ */

int fsm_init(struct raft_fsm *fsm, const struct fsm_ctx *ctx)
{
	struct fsm_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -KV_ENOMEM;
	st->ctx = *ctx;
	memset(fsm, 0, sizeof(*fsm));
	fsm->version = 2;
	fsm->data = st;
	fsm->apply = fsm_apply;
	fsm->snapshot = fsm_snapshot;
	fsm->restore = fsm_restore;
	fsm->snapshot_finalize = fsm_snapshot_finalize;
	fsm->snapshot_async = NULL; /* 0.22.1 runs it on the loop anyway */
	return 0;
}

void fsm_close(struct raft_fsm *fsm)
{
	free(fsm->data);
	fsm->data = NULL;
}

uint64_t fsm_applied_index(const struct raft_fsm *fsm)
{
	const struct fsm_state *st = fsm->data;
	return st ? st->applied_index : 0;
}
