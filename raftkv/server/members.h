/*
 * members: the replicated member table, etcd's membership store.
 *
 * One entry per member: its id, name and client URLs (empty until the
 * member published them, which is what etcdctl calls "started"), peer URLs
 * and whether it is a learner.  Like the store, the table is replicated
 * state: it changes only when the fsm applies a CMD_MEMBER_* command
 * (members_apply) and travels in raft snapshots (members_encode/decode), so
 * every member lists the same members.  It is the source of truth for
 * membership: libraft's own configuration (ids, raft addresses, roles)
 * follows it, changed one step at a time by the leader (svc_cluster.c).
 *
 * The table starts empty and uninitialised.  The first leader of a new
 * cluster proposes CMD_MEMBER_INIT with the table its --initial-cluster
 * describes (cluster id, --initial-cluster-token, the members and their
 * peer URLs); an INIT applied to an initialised table changes nothing, so a
 * repeated one is harmless.  Because INIT is an ordinary entry, a member
 * that joins later gets the table from the log or a snapshot like any
 * other state.
 *
 * Member ids are etcd's derivation without the time: sha1 of the sorted
 * peer URLs followed by the cluster token, first 8 bytes big-endian.  The
 * bootstrap members get the ids etcd would give them, and a member added
 * later gets an id its own process can compute from its peer URLs and the
 * token before it has heard from anyone (libraft needs the id at start).
 *
 * Pure: no I/O, no libuv, deterministic (the same commands give the same
 * table on every member).
 */
#ifndef RAFTKV_MEMBERS_H
#define RAFTKV_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/arena.h"
#include "server/cmd.h"
#include "rpc.pb-c.h"

struct member {
	uint64_t id;
	char *name;          /* "" until the member published itself */
	char **peer_urls;    /* sorted, as etcd's types.URLs */
	size_t n_peer_urls;
	char **client_urls;  /* as published (sorted by the publisher) */
	size_t n_client_urls;
	bool is_learner;
};

/* Embedded in struct server; members_init() makes an empty table. */
struct members {
	bool initialized;    /* an INIT was applied */
	uint64_t cluster_id;
	char *token;         /* --initial-cluster-token of the bootstrap */
	struct member *v;    /* sorted by id */
	size_t n;

	/* Not replicated: this member's view. */
	uint64_t self_id;
	bool self_removed;   /* applied the removal of self_id (not re-added since) */
};

/* Limits on what a request or image may carry (checked before allocating). */
#define MEMBERS_MAX_URLS 64
#define MEMBERS_MAX_URL_BYTES 1024
#define MEMBERS_MAX_NAME_BYTES 4096 /* names and the token */

void members_init(struct members *t);
void members_close(struct members *t);

/* etcd's membership.NewMember(name, peerURLs, token, nil) id: sha1 over the
 * sorted peer URLs then the token, first 8 bytes big-endian.  urls need not
 * be sorted.  0 when it cannot be computed (out of memory). */
uint64_t members_id(char *const *urls, size_t n, const char *token);

const struct member *members_find(const struct members *t, uint64_t id);
/* The member one of whose peer URLs is url (exact string), or NULL. */
const struct member *members_find_peer_url(const struct members *t, const char *url);
static inline bool members_is_started(const struct member *m)
{
	return m->name && m->name[0];
}
size_t members_learners(const struct members *t);
size_t members_voters(const struct members *t);

/* etcd's strict reconfiguration checks (membership/cluster.go): whether a
 * voter may be added, removed (id) or promoted (id) without the started
 * voters falling below a quorum. */
bool members_ready_to_add_voter(const struct members *t);
bool members_ready_to_remove_voter(const struct members *t, uint64_t id);
bool members_ready_to_promote(const struct members *t, uint64_t id);

/* etcd's connectivity checks before a reconfiguration (server.go
 * mayAddMember, mayRemoveMember; util.go numConnectedSince), as seen from
 * member self: up_since(arg, id) is when self's connection to id came up
 * (any clock), 0 while it is down; a voter counts as connected when it is
 * self or up since before `before` (now minus etcd's 5 s HealthInterval).
 * Add (voter or learner): every voter is connected.  Remove voter id: a
 * peer that is down now may always go; otherwise the connected voters but
 * id must stay a quorum of the voters.  false means "unhealthy cluster". */
typedef uint64_t (*members_up_since_fn)(void *arg, uint64_t id);
bool members_connected_fully(const struct members *t, uint64_t self, uint64_t before,
			     members_up_since_fn up_since, void *arg);
bool members_remove_keeps_quorum(const struct members *t, uint64_t self, uint64_t id,
				 uint64_t before, members_up_since_fn up_since, void *arg);

/* --- building the INIT table (not replicated until proposed) ------------ */

/* Sets the header of an uninitialised table; copies token.  0,
 * -KV_EINVAL (token above MEMBERS_MAX_NAME_BYTES) or -KV_ENOMEM. */
int members_set_cluster(struct members *t, uint64_t cluster_id, const char *token);
/* Adds a member with no name and no client URLs; copies urls (sorted here).
 * -KV_EMEMBEREXIST, -KV_EPEERURLEXIST, -KV_EMEMBERBADURLS or -KV_ENOMEM. */
int members_insert(struct members *t, uint64_t id, char *const *urls, size_t n, bool learner);

/* --- replicated changes --------------------------------------------------- */

/* Applies one CMD_MEMBER_* command (payloads in cmd.h), as etcd validates
 * a configuration change when it applies it:
 *   INIT     adopt the encoded table, unless initialised already (no-op);
 *   ADD      id from the peer URLs and the token; -KV_EMEMBERBADURLS (none
 *            or too many), -KV_EPEERURLEXIST, -KV_EMEMBEREXIST,
 *            -KV_ETOOMANYLEARNERS (etcd 3.4 allows one learner);
 *   REMOVE   -KV_EMEMBERNOTFOUND;
 *   UPDATE   peer URLs: -KV_EMEMBERNOTFOUND, -KV_EPEERURLEXIST (another
 *            member's), -KV_EMEMBERBADURLS;
 *   PROMOTE  -KV_EMEMBERNOTFOUND, -KV_EMEMBERNOTLEARNER;
 *   PUBLISH  name and client URLs of a member: -KV_EMEMBERNOTFOUND.
 * Every command but INIT fails with -KV_EINTERNAL on an uninitialised
 * table; a payload that does not decode is -KV_EMALFORMED.  On success *out
 * is the etcd response (MemberAdd/Remove/Update/PromoteResponse, a
 * MemberListResponse for INIT and PUBLISH) with an empty header for the
 * caller to fill and the members after the change; it lives in a.
 * -KV_ENOMEM may leave the table half changed (fatal at apply time). */
int members_apply(struct members *t, const struct cmd *c, struct arena *a,
		  const ProtobufCMessage **out);

/* The members as etcd's API lists them (sorted by id); pointers into t and
 * a: valid until the table changes or a is closed. */
int members_to_pb(const struct members *t, struct arena *a, Etcdserverpb__Member ***out,
		  size_t *n);

/* Image (snapshot section and CMD_MEMBER_INIT payload), little-endian:
 *   flags u32 (1: initialised) | cluster id u64 | token str | count u32 |
 *   count x (id u64 | flags u32 (1: learner) | name str |
 *            n u32 | n x str (peer URLs) | n u32 | n x str (client URLs))
 *   str := len u32 | bytes
 * encode: malloc'd image (free()).  decode: replaces the replicated part of
 * t only when the image is whole and canonical (ids ascending, counts and
 * lengths within the limits above); -KV_ECORRUPT or -KV_ENOMEM otherwise. */
int members_encode(const struct members *t, uint8_t **data, size_t *len);
int members_decode(struct members *t, const uint8_t *data, size_t len);

#endif
