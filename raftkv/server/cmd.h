/*
 * cmd: the Raft entry format.
 *
 * libraft 0.22.1 replicates only the first buffer of raft_apply, so many
 * client writes are packed into ONE entry:
 *
 *   entry   := magic "RKV1" (4) | count u32 | count × command
 *   command := type u8 | origin u64 | seq u64 | len u32 | payload[len]
 *
 * All integers little-endian.  origin is the proposing member id and seq its
 * proposal counter: together they identify the waiting client call (and, in
 * a cluster, let the state machine drop a retried duplicate).  The payload is
 * the etcd request protobuf exactly as the client sent it.  Decoding checks
 * every length against the bytes present before using it.
 */
#ifndef RAFTKV_CMD_H
#define RAFTKV_CMD_H

#include <stddef.h>
#include <stdint.h>

enum cmd_type {
	CMD_PUT = 1,          /* etcdserverpb.PutRequest */
	CMD_DELETE_RANGE = 2, /* etcdserverpb.DeleteRangeRequest */
	CMD_TXN = 3,          /* etcdserverpb.TxnRequest */
	CMD_COMPACT = 4,      /* etcdserverpb.CompactionRequest */
	CMD_LEASE_GRANT = 5,  /* etcdserverpb.LeaseGrantRequest (TTL already raised
			       * to the minimum; ID 0: chosen at apply, lease.h) */
	CMD_LEASE_REVOKE = 6, /* etcdserverpb.LeaseRevokeRequest (client or expiry) */
	CMD_ALARM = 7,        /* etcdserverpb.AlarmRequest: ACTIVATE or DEACTIVATE (alarm.h) */
	/* Membership (members.h): the replicated member table. */
	CMD_MEMBER_INIT = 8,    /* members_encode() image of the bootstrap table */
	CMD_MEMBER_ADD = 9,     /* etcdserverpb.MemberAddRequest (id derived at apply) */
	CMD_MEMBER_REMOVE = 10, /* etcdserverpb.MemberRemoveRequest */
	CMD_MEMBER_UPDATE = 11, /* etcdserverpb.MemberUpdateRequest */
	CMD_MEMBER_PROMOTE = 12, /* etcdserverpb.MemberPromoteRequest */
	CMD_MEMBER_PUBLISH = 13, /* etcdserverpb.Member: ID, name, clientURLs */
	CMD__MAX
};

struct cmd {
	uint8_t type;
	uint64_t origin;
	uint64_t seq;
	const uint8_t *payload; /* points into the entry being decoded */
	uint32_t len;
};

#define CMD_ENTRY_HEADER 8u
#define CMD_HEADER 21u

/* Builder: a growable buffer that becomes one raft entry. */
struct cmd_batch {
	uint8_t *data;
	size_t len, cap;
	uint32_t count;
};

void cmd_batch_init(struct cmd_batch *b);
void cmd_batch_close(struct cmd_batch *b);
int cmd_batch_add(struct cmd_batch *b, const struct cmd *c);
/* Hands the finished entry to the caller (malloc'd: raft_malloc-compatible
 * since libraft uses malloc by default); resets b to empty. */
int cmd_batch_take(struct cmd_batch *b, uint8_t **data, size_t *len);

/* Padding: libraft's uv backend refuses entries whose length is not a
 * multiple of 8 (and frees them on the way), so node pads every entry with
 * 1 to 8 bytes, the last holding the pad length, and the fsm strips them.
 * cmd_entry_padded_len: the padded size of a len-byte entry; cmd_entry_pad
 * writes the padding into p[len .. padded - 1]; cmd_entry_len gives the
 * unpadded length of a padded entry, or -KV_ECORRUPT. */
size_t cmd_entry_padded_len(size_t len);
void cmd_entry_pad(uint8_t *p, size_t len, size_t padded);
int cmd_entry_len(const void *data, size_t padded_len, size_t *len);

/* Reader over a received entry. */
struct cmd_iter {
	const uint8_t *p, *end;
	uint32_t remaining;
};

/* 0, or -KV_ECORRUPT if the header is malformed. */
int cmd_iter_init(struct cmd_iter *it, const uint8_t *data, size_t len);
/* 1 with *c filled, 0 at the end, -KV_ECORRUPT on a truncated command. */
int cmd_iter_next(struct cmd_iter *it, struct cmd *c);

#endif
