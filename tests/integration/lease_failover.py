"""
lease_failover: leases across a SIGKILL of the leader, on three members.

Leases granted through the leader, two keys attached to each:
  kept     kept alive every second for the whole test, through the failover,
           with keep-alives sent to the leader of the moment;
  relayed  the same, but with keep-alives sent to a member that is not the
           killed one (a follower when the test starts), which must pass
           them on to the leader;
  stopped  kept alive until the kill, then left alone;
  idle     never renewed after the grant;
  late     granted through the new leader after the failover, never renewed.
The leader is killed (SIGKILL) a few seconds in, and restarted once a new
leader is known.  A watcher (prefix, prev_kv) on each of the two other
members records every event.

Expected, as etcd 3.4 behaves:
  * kept leases never expire: their keys are still there on every member
    more than 2 x TTL after the failover, and no DELETE event touches them;
  * every other lease expires, and no earlier than TTL after its last
    renewal (grant or keep-alive) was sent;
  * and no later than TTL + election timeout (+ slack for the leader's
    expiry check, the revoke's round through Raft and the watch delivery)
    after its last renewal, where the new leader's promotion counts as a
    renewal: without lease checkpointing (off by default in 3.4) a new
    leader cannot know how much TTL was left and gives every lease its full
    TTL plus an election timeout (lessor.Promote), which is what prevents a
    mass expiry after a failover;
  * all keys of one lease vanish in ONE revision, seen by both watchers as
    DELETE events in one reply, with prev_kv carrying the lease ID; then
    the lease is gone (TimeToLive answers TTL -1) and a range finds no key.

Grants, puts and the `kept` keep-alives go to the leader's endpoint,
re-found with endpoint status after the kill.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, eq, log  # noqa: E402

TTL = 5
ELECTION = 1.0          # --election-timeout default, in seconds
SLACK = 2.5
RENEW_EVERY = 1.0
KILL_AFTER = 2.5        # seconds after the grants
GRPC_OPTS = [("grpc.use_local_subchannel_pool", 1)]
GROUPS = (("kept", 3), ("relayed", 2), ("stopped", 2), ("idle", 3))
KEPT = ("kept", "relayed")


class Conns:
    """One gRPC channel per endpoint, replaced after a failure (a channel to
    a killed member would otherwise sit in reconnect backoff)."""

    def __init__(self):
        import grpc
        self.grpc = grpc
        self.chans = {}
        self.lock = threading.Lock()

    def get(self, ep):
        with self.lock:
            if ep not in self.chans:
                self.chans[ep] = self.grpc.insecure_channel(ep, options=GRPC_OPTS)
            return self.chans[ep]

    def drop(self, ep):
        with self.lock:
            ch = self.chans.pop(ep, None)
        if ch is not None:
            ch.close()

    def close(self):
        with self.lock:
            chans, self.chans = list(self.chans.values()), {}
        for ch in chans:
            ch.close()


def status(conns, m):
    import grpc
    from etcd3 import etcdrpc
    try:
        return etcdrpc.MaintenanceStub(conns.get(m.endpoint)).Status(etcdrpc.StatusRequest(), timeout=1)
    except grpc.RpcError:
        conns.drop(m.endpoint)
        return None


def leader_of(cl, conns, timeout=20.0):
    def find():
        for m in cl.members:
            if m.running():
                st = status(conns, m)
                if st is not None and st.leader and st.leader == st.header.member_id:
                    return m
        return None
    return cluster.wait_until(find, timeout, "a leader", 0.05)


def serializable_get(conns, m, key, end=b""):
    """(revision, kvs) from the member's own state, or None."""
    import grpc
    from etcd3 import etcdrpc
    try:
        r = etcdrpc.KVStub(conns.get(m.endpoint)).Range(
            etcdrpc.RangeRequest(key=key, range_end=end, serializable=True), timeout=2)
        return r.header.revision, list(r.kvs)
    except grpc.RpcError:
        conns.drop(m.endpoint)
        return None


class Watcher:
    """One Watch stream on prefix l/ with prev_kv; keeps (arrival time,
    reply) for every reply with events."""

    def __init__(self, member, conns):
        from etcd3 import etcdrpc
        self.member = member
        self.replies = []
        self.problems = []
        self.created = threading.Event()
        self.stop = threading.Event()
        req = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=b"l/", range_end=b"l0", prev_kv=True))
        self.call = etcdrpc.WatchStub(conns.get(member.endpoint)).Watch(self._requests(req))
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()

    def _requests(self, req):
        yield req
        self.stop.wait()

    def _consume(self):
        import grpc
        try:
            for r in self.call:
                if r.created:
                    self.created.set()
                elif r.canceled:
                    self.problems.append("watch on %s canceled: %r" % (self.member.name, r.cancel_reason))
                elif r.events:
                    self.replies.append((time.monotonic(), r))
        except grpc.RpcError as e:
            if not self.stop.is_set():
                self.problems.append("watch on %s ended: %s %s" % (self.member.name, e.code(), e.details()))

    def deletes(self):
        """key -> (arrival, mod_revision, reply index, prev_kv) of DELETE events."""
        out = {}
        for n, (at, r) in enumerate(list(self.replies)):
            for ev in r.events:
                if ev.type == 1:
                    if ev.kv.key in out:
                        self.problems.append("%s: two DELETE events for %s" % (self.member.name, ev.kv.key))
                    out[ev.kv.key] = (at, ev.kv.mod_revision, n, ev.prev_kv if ev.HasField("prev_kv") else None)
        return out

    def close(self):
        self.stop.set()
        self.call.cancel()
        self.thread.join(10)


class Lease:
    def __init__(self, group, n, lid, sent, recv):
        self.name = "%s%d" % (group, n)
        self.group = group
        self.id = lid
        self.keys = [("l/%s/%s" % (self.name, x)).encode() for x in "ab"]
        self.renew_sent = sent      # last renewal (grant or keep-alive) sent...
        self.renew_recv = recv      # ...and answered
        self.renewals = 0
        self.lost = None            # a keep-alive answered TTL 0


class Leases:
    """Grants, puts and keep-alives, always through the current leader."""

    def __init__(self, cl, conns):
        self.cl = cl
        self.conns = conns
        self.leader = leader_of(cl, conns)
        self.all = []
        self.via = None             # where the `relayed` keep-alives go
        self.renew = set()          # names still being kept alive
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors = 0
        self.noreply = 0
        self.problems = []
        self.thread = None

    def member_of(self, ep):
        return next(m for m in self.cl.members if m.endpoint == ep)

    def call(self, fn):
        """fn(channel) against the leader; on failure re-find it and retry."""
        import grpc
        deadline = time.monotonic() + 20
        while True:
            ep = self.leader.endpoint
            try:
                return fn(self.conns.get(ep))
            except grpc.RpcError:
                self.conns.drop(ep)
                self.errors += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                self.leader = leader_of(self.cl, self.conns)

    def grant(self, group, n):
        from etcd3 import etcdrpc
        sent = time.monotonic()
        r = self.call(lambda ch: etcdrpc.LeaseStub(ch).LeaseGrant(
            etcdrpc.LeaseGrantRequest(TTL=TTL), timeout=3))
        eq(r.TTL, TTL, "granted TTL")
        le = Lease(group, n, r.ID, sent, time.monotonic())
        for k in le.keys:
            self.call(lambda ch: etcdrpc.KVStub(ch).Put(
                etcdrpc.PutRequest(key=k, value=b"v-" + k, lease=le.id), timeout=3))
        with self.lock:
            self.all.append(le)
        return le

    def keepalive_once(self, ch, le):
        from etcd3 import etcdrpc
        sent = time.monotonic()
        # One request, then half-close, as python3-etcd3's refresh_lease:
        # etcd answers before it ends the stream.
        call = etcdrpc.LeaseStub(ch).LeaseKeepAlive(
            iter([etcdrpc.LeaseKeepAliveRequest(ID=le.id)]), timeout=2)
        for r in call:
            return sent, r.TTL
        return sent, None

    def run(self):
        try:
            self._run()
        except Exception as e:   # noqa: BLE001 (reported by main)
            self.problems.append("keep-alive thread crashed: %r" % e)

    def _run(self):
        import grpc
        while not self.stop.is_set():
            t0 = time.monotonic()
            with self.lock:
                todo = [le for le in self.all if le.name in self.renew]
            for le in todo:
                ep = (self.via if le.group == "relayed" else self.leader).endpoint
                try:
                    sent, ttl = self.keepalive_once(self.conns.get(ep), le)
                except grpc.RpcError:
                    # The leader is gone (or the relay has none for now):
                    # find the new one and retry soon.
                    self.conns.drop(ep)
                    self.errors += 1
                    if le.group != "relayed":
                        try:
                            self.leader = leader_of(self.cl, self.conns, 5)
                        except Failure:
                            pass
                    break
                if ttl is None:
                    if len(self.problems) < 5:
                        self.problems.append(
                            "a keep-alive of %s sent to %s: the stream ended (status OK) "
                            "without a reply" % (le.name, self.member_of(ep).name))
                    self.noreply += 1
                    continue
                with self.lock:
                    if ttl <= 0:
                        le.lost = time.monotonic()
                        self.renew.discard(le.name)
                        continue
                    # Recorded even if renewing stopped meanwhile: it still
                    # counts as this lease's last renewal.
                    le.renew_sent, le.renew_recv = sent, time.monotonic()
                    le.renewals += 1
            else:
                self.stop.wait(max(0.0, RENEW_EVERY - (time.monotonic() - t0)))
                continue
            self.stop.wait(0.1)

    def start(self, names, via):
        self.renew = set(names)
        self.via = via
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def stop_renewing(self, group):
        with self.lock:
            self.renew -= {le.name for le in self.all if le.group == group}

    def close(self):
        self.stop.set()
        if self.thread:
            self.thread.join(10)


def main(t):
    cluster.require_python_etcd3()
    from etcd3 import etcdrpc
    conns = Conns()
    t.closers.append(conns.close)
    cl = t.cluster(size=3)
    leases = Leases(cl, conns)
    t.closers.append(leases.close)
    old = leases.leader
    others = [m for m in cl.members if m is not old]
    watchers = [Watcher(m, conns) for m in others]
    for w in watchers:
        t.closers.append(w.close)
        check(w.created.wait(10), "watch on %s not created" % w.member.name)
    log("leader %s; watchers on %s" % (old.name, ", ".join(m.name for m in others)))

    leases.call(lambda ch: etcdrpc.KVStub(ch).Put(etcdrpc.PutRequest(key=b"l/plain", value=b"p"),
                                                  timeout=3))
    for group, n in GROUPS:
        for i in range(n):
            leases.grant(group, i)
    leases.start([le.name for le in leases.all if le.group in KEPT + ("stopped",)], others[0])
    t_grants = time.monotonic()
    log("granted %d leases of %ds with 2 keys each; relayed keep-alives go to %s"
        % (len(leases.all), TTL, others[0].name))

    time.sleep(KILL_AFTER)
    leases.stop_renewing("stopped")
    check(leader_of(cl, conns) is old, "leadership moved before the kill")
    old.kill()
    t_kill = time.monotonic()
    new = leader_of(cl, conns)
    t_elect = time.monotonic()
    log("killed leader %s %.1fs after the grants; new leader %s %.1fs later"
        % (old.name, t_kill - t_grants, new.name, t_elect - t_kill))
    for i in range(2):
        leases.grant("late", i)
    time.sleep(1.0)
    old.start()
    log("restarted %s" % old.name)

    expiring = [le for le in leases.all if le.group not in KEPT]
    kept = [le for le in leases.all if le.group in KEPT]

    def all_deleted():
        for w in watchers:
            if w.problems:
                return True
            d = w.deletes()
            if not all(k in d for le in expiring for k in le.keys):
                return False
        return True
    latest = max(max(le.renew_recv, t_elect) for le in expiring) + TTL + ELECTION + SLACK
    try:
        cluster.wait_until(all_deleted, latest - time.monotonic() + 1.0,
                           "every key of the expiring leases deleted")
    except Failure:
        pass    # described per lease below

    problems = [p for w in watchers for p in w.problems]
    for w in watchers:
        d = w.deletes()
        for le in expiring:
            evs = [d.get(k) for k in le.keys]
            if None in evs:
                problems.append("%s: %s (last renewal %.1fs after the grants) still has keys %s"
                                % (w.member.name, le.name, le.renew_sent - t_grants,
                                   [k.decode() for k, e in zip(le.keys, evs) if e is None]))
                continue
            at = max(e[0] for e in evs)
            lo = le.renew_sent + TTL - 0.1
            hi = max(le.renew_recv, t_elect) + TTL + ELECTION + SLACK
            if not lo <= at <= hi:
                problems.append("%s: %s expired %.2fs after its last renewal, %.2fs after the new "
                                "leader: outside [TTL, max(renewal, election) + TTL + %.0fs + %.0fs]"
                                % (w.member.name, le.name, at - le.renew_sent, at - t_elect,
                                   ELECTION, SLACK))
            if len({e[1] for e in evs}) != 1 or len({e[2] for e in evs}) != 1:
                problems.append("%s: keys of %s deleted at revisions %s in replies %s: not one "
                                "revision in one reply" % (w.member.name, le.name,
                                                           [e[1] for e in evs], [e[2] for e in evs]))
            for k, e in zip(le.keys, evs):
                p = e[3]
                if p is None or (p.key, p.value, p.lease) != (k, b"v-" + k, le.id):
                    problems.append("%s: DELETE %s: prev_kv %s, want value %r lease %d"
                                    % (w.member.name, k.decode(), p, b"v-" + k, le.id))
        gone = {k for le in expiring for k in le.keys}
        stray = sorted(k.decode() for k in d if k not in gone)
        if stray:
            problems.append("%s: DELETE events for keys of no expired lease: %s" % (w.member.name, stray))
    if problems:
        raise Failure("expiry:\n  " + "\n  ".join(problems + leases.problems))
    for le in expiring:
        at = max(watchers[0].deletes()[k][0] for k in le.keys)
        log("%-9s expired %.2fs after its last renewal (%.2fs after the new leader)"
            % (le.name, at - le.renew_sent, at - t_elect))

    # Kept leases: alive 2 x TTL after the failover, renewed by the leader.
    until = t_elect + 2 * TTL + 0.5
    time.sleep(max(0.0, until - time.monotonic()))
    check(not leases.problems, "keep-alives (%d without a reply):\n  %s"
          % (leases.noreply, "\n  ".join(leases.problems)))
    for le in kept:
        check(le.lost is None, "kept lease %s answered TTL 0 to a keep-alive %.1fs after the grants"
              % (le.name, (le.lost or 0) - t_grants))
        check(le.renew_recv > t_elect, "kept lease %s not renewed since the failover" % le.name)
        r = leases.call(lambda ch: etcdrpc.LeaseStub(ch).LeaseTimeToLive(
            etcdrpc.LeaseTimeToLiveRequest(ID=le.id, keys=True), timeout=3))
        check(0 < r.TTL <= TTL, "kept lease %s: TimeToLive TTL %d" % (le.name, r.TTL))
        eq(sorted(r.keys), le.keys, "keys of kept lease %s" % le.name)
    for le in expiring:
        r = leases.call(lambda ch: etcdrpc.LeaseStub(ch).LeaseTimeToLive(
            etcdrpc.LeaseTimeToLiveRequest(ID=le.id), timeout=3))
        eq(r.TTL, -1, "TimeToLive TTL of expired lease %s" % le.name)

    # Every member, the restarted one included, converges on the same keys.
    want = sorted([b"l/plain"] + [k for le in kept for k in le.keys])
    leader_rev = leases.call(lambda ch: etcdrpc.KVStub(ch).Range(
        etcdrpc.RangeRequest(key=b"l/", range_end=b"l0", count_only=True), timeout=3)).header.revision
    for m in cl.members:
        def at_rev():
            r = serializable_get(conns, m, b"l/", b"l0")
            return r if r is not None and r[0] >= leader_rev else None
        rev, kvs = cluster.wait_until(at_rev, 20, "%s at revision %d" % (m.name, leader_rev), 0.1)
        eq(sorted(kv.key for kv in kvs), want, "keys on %s" % m.name)
        for kv in kvs:
            if kv.key != b"l/plain":
                check(kv.lease in {le.id for le in kept}, "%s: %s has lease %d"
                      % (m.name, kv.key, kv.lease))
    for w in watchers:
        check(not w.problems, "; ".join(w.problems))
    log("kept leases alive %.1fs after the failover (%s renewals), their keys on every member; "
        "%d keep-alive/grant failures during the failover"
        % (time.monotonic() - t_elect, ",".join(str(le.renewals) for le in kept), leases.errors))
    leases.close()


if __name__ == "__main__":
    cluster.run(main)
