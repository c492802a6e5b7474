/*
 * forward: a follower relays what only the leader may do.
 *
 * A write (KV Put/DeleteRange/Txn with writes/Compact, LeaseGrant/Revoke,
 * Alarm), a linearizable read (Range, read-only Txn) and the leader-local
 * lease queries (LeaseKeepAlive, LeaseTimeToLive) reaching a follower that
 * knows its leader go, as the client's request bytes, to the same gRPC path
 * on the leader's client URL (from the member table), through the
 * project's client library (one kvc_client per leader, every forwarded
 * call multiplexed on it).  The leader's answer comes back unchanged but
 * for the response header's cluster/member id and term, which are ours, as
 * they would be had we served it.  Linearizable reads are relayed rather
 * than served here after a ReadIndex step: the leader's barrier batching
 * already makes them cheap, and it is correct with no more machinery.
 *
 * Errors: whatever status the leader answered is relayed verbatim.  When
 * the leader cannot be reached: "etcdserver: leader changed" (UNAVAILABLE),
 * so clients retry; but a write that may have reached it (the connection
 * dropped, or the deadline passed, after the request left) is answered
 * "etcdserver: request timed out" and never resent by us, so it cannot be
 * applied twice.  Every forwarded call is bounded by etcd's request timeout
 * (5 s + 2 election timeouts).  A forwarded request carries the metadata
 * "raftkv-forwarded": a member receiving one never forwards it again (no
 * loops while members disagree on the leader); it answers as a follower
 * with no leader would.
 */
#ifndef RAFTKV_FORWARD_H
#define RAFTKV_FORWARD_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct rpc_call;

/* The metadata that marks a forwarded request. */
#define FORWARD_HEADER "raftkv-forwarded"

int forward_init(struct server *s);  /* 0 or -KV_ENOMEM; before the listener */
void forward_stop(struct server *s); /* shutdown: ends forwarded calls, closes the client */
void forward_free(struct server *s); /* after the loop ended */

/* Whether a request on call must go to the leader: this member is a
 * follower, a leader is known, and call was not itself forwarded.  When
 * false the caller serves it locally (which fails with "no leader" for a
 * write during an election, as before). */
int forward_wanted(struct server *s, struct rpc_call *call);

/* Unary: when forward_wanted, relays msg (copied) to path on the leader and
 * answers call later; returns 1: the call is taken care of (answered or
 * will be).  Returns 0 when the caller should serve it locally. */
int forward_try(struct rpc_call *call, const char *path, const uint8_t *msg, size_t len);

/* One LeaseKeepAlive request of a client stream: relayed on a stream of
 * its own to the leader; the answer is sent on call (which stays open).
 * 1 if taken care of, 0 to serve locally. */
int forward_try_keep_alive(struct rpc_call *call, const uint8_t *msg, size_t len);

/* For svc_cluster's internal calls: msg to path on the leader; call may be
 * NULL (fire and forget: nobody waits for the answer).  0 when started (or
 * for a call: answered), -KV_ENOLEADER when no leader is known or
 * reachable yet, -KV_ENOMEM. */
int forward_path(struct server *s, const char *path, const uint8_t *msg, size_t len,
		 struct rpc_call *call);

#endif
