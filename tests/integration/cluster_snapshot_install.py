"""
cluster_snapshot_install: members that are too far behind catch up by an
InstallSnapshot from the leader, not from its log, and end with the same
state (issue 3, "Tests").

The leader keeps TRAILING (5000) entries behind each snapshot (raftkv's
NODE_SNAPSHOT_TRAILING, etcd's SnapshotCatchUpEntries), so a member needs a
snapshot only when its log ends before the oldest entry the leader still
has.  With --snapshot-count 1000 the test writes, one raft entry per put
(python3-etcd3 clients, each waiting on its put), until the leader's newest
snapshot is more than STALE + TRAILING + MARGIN entries past where the
member stopped (STALE: see below):

  1. a follower, killed with SIGKILL.  Meanwhile through the leader: a lease
     with a key attached, a txn, deletes (single keys and a range), the bulk
     puts with deletes among them, and a compaction; all of it before the
     snapshot the follower will get.  The follower restarts with the same
     flags and must:
       (a) [raftkv] log that it installed a snapshot from the leader at an
           index past its pre-kill index + TRAILING, and hold that snapshot
           in its data dir;
       (b) answer a serializable read of the whole keyspace with exactly the
           leader's keys, values, create/mod revisions, versions and leases
           (and the bulk keys the writers expect);
       (c) agree on `etcdctl endpoint hashkv --cluster`: one hash, and the
           compaction revision on every member;
       (d) keep the lease (lease list; after move-leader, time-to-live with
           its key) and the compaction (an older revision reads "required
           revision has been compacted");
       (e) then serve writes (relayed to the leader) and reads, and list the
           same members as the leader.
  2. a new member, added as a learner once the leader's log starts more
     than TRAILING entries past index 1 (after a second lease and a second
     compaction, again inside a snapshot): it starts with
     --initial-cluster-state existing and an empty data dir, must install a
     snapshot (a), read back the same state (b), be promoted, then agree on
     hashkv (c), keep lease and compaction (d) and serve (e), including as
     leader: the lease is revoked through it and its key disappears
     everywhere.

The leader's transport keeps the last messages it could not deliver to the
killed follower, and those carry up to STALE (2048) of the entries it
misses: delivered on restart, they push it past its own snapshot threshold
right before the install arrives, the window of libraft 0.22.1's
takeSnapshotCb NULL dereference (libraft notes §3.3; node_guard.c holds such an
install back).  Here the follower restarts only once those messages are
dropped, so it gets the install first; cluster_install_race.py restarts it
inside the window on purpose.  A crash of any member fails the test with its
log.

Run against etcd with RAFTKV=/usr/bin/etcd to check the test itself: the
install detection (a) is raftkv's log line and data-dir layout and is
skipped there; every state check runs.
"""
import base64
import glob
import json
import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, eq, log, wait_until  # noqa: E402
from cluster import endpoint_status as status_of  # noqa: E402
from cluster import move_leader, retry_unhealthy, wait_leader  # noqa: E402

SNAPSHOT_COUNT = 1000
TRAILING = 5000          # entries the leader keeps behind a snapshot
MARGIN = 300             # past TRAILING, so that the log surely cannot serve
# libraft sends a member it cannot reach its missing entries again on every
# heartbeat, up to max_inflight_entries (node.c: 2048) at a time, and its
# transport holds the undelivered messages until a connection attempt fails
# (once a second), then keeps the newest 3: a follower restarted within
# that second first gets up to STALE stale entries, then needs the rest.
STALE = 2048
STALE_DROP_S = 2.0       # after which only heartbeats are left queued
WRITERS = 4              # concurrent clients, each waiting on its own put
ROUND = 1000             # puts between two checks of the leader's snapshot
MAX_WRITE_S = 60.0       # bound on the bulk writing of one phase
LEASE_TTL = 600
IS_ETCD = os.path.basename(cluster.server_binary()) == "etcd"
INSTALL_RE = re.compile(r"installed a raft snapshot from leader ([0-9a-f]{16}) at index (\d+)")


# ---- cluster state helpers
def snapshot_indexes(m):
    """Indexes of the raft snapshots in m's data dir: raftkv (libraft)
    writes snapshot-TERM-INDEX-MS, etcd member/snap/TERM-INDEX.snap (hex)."""
    out = []
    for p in glob.glob(os.path.join(m.data_dir, "snapshot-*-*-*")):
        parts = os.path.basename(p).split("-")
        if len(parts) == 4 and not p.endswith(".meta") and parts[2].isdigit():
            out.append(int(parts[2]))
    for p in glob.glob(os.path.join(m.data_dir, "member", "snap", "*.snap")):
        mo = re.fullmatch(r"([0-9a-f]{16})-([0-9a-f]{16})\.snap", os.path.basename(p))
        if mo:
            out.append(int(mo.group(2), 16))
    return sorted(out)


def newest_snapshot(m):
    idx = snapshot_indexes(m)
    return idx[-1] if idx else 0


def revision(m):
    """m's own current revision (a serializable read: no raft round)."""
    r = m.ctl("get", "--consistency=s", "revision-probe", "-w", "json", check_rc=False,
              timeout=10)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)["header"]["revision"]


def dump(m):
    """(revision, every key with value, revisions, version, lease), read
    serializably on m alone."""
    r = m.ctl("get", "", "--from-key", "--consistency=s", "-w", "json", timeout=60)
    j = json.loads(r.stdout)
    kvs = [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")).decode(),
            kv.get("create_revision", 0), kv.get("mod_revision", 0), kv.get("version", 0),
            kv.get("lease", 0)) for kv in j.get("kvs", [])]
    return j["header"]["revision"], kvs


class Joiner(cluster.Member):
    """A member started with --initial-cluster-state existing and the
    --initial-cluster that `etcdctl member add` printed."""

    def __init__(self, cl, name):
        super().__init__(cl, len(cl.members), name, cluster.free_port(), cluster.free_port(),
                         os.path.join(cl.workdir, name + ".data"))
        self.initial = ""

    def argv(self, state):
        a = super().argv(state)
        a[a.index("--initial-cluster") + 1] = self.initial
        a[a.index("--initial-cluster-state") + 1] = "existing"
        return a


def freeze_flags(m):
    """Every later start of m uses the flags of its first start (the
    harness would rebuild --initial-cluster from the members known now)."""
    argv = m.argv("new")
    m.argv = lambda state: list(argv)


# ---- load
class Bulk:
    """The expected content of bulk/: WRITERS threads put keys through the
    leader, one put in flight each, and every 10th operation deletes the
    key put 5 operations before."""

    def __init__(self, ldr):
        self.ldr = ldr
        self.want = {}
        self.ops = 0
        self.seq = 0

    def round(self, tag, n):
        errs, results = [], [None] * WRITERS

        def run(w):
            cl = cluster.py_client(self.ldr.client_port, timeout=10)
            got, ops = {}, 0
            keys = []
            try:
                for i in range(n // WRITERS):
                    k = "bulk/%s/%d/%05d" % (tag, w, i)
                    cl.put(k, "v-%s-%d-%d" % (tag, w, i))
                    got[k] = "v-%s-%d-%d" % (tag, w, i)
                    keys.append(k)
                    ops += 1
                    if i % 10 == 9:
                        cl.delete(keys[-6])
                        got.pop(keys[-6], None)
                        ops += 1
            except Exception as e:  # noqa: BLE001
                errs.append("%s: %s" % (type(e).__name__, str(e)[:300]))
            finally:
                cl.close()
            results[w] = (got, ops)
        ths = [threading.Thread(target=run, args=(w,)) for w in range(WRITERS)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(120)
        check(not any(th.is_alive() for th in ths), "a writer is stuck")
        eq(errs, [], "bulk writes through the leader")
        for got, ops in results:
            self.want.update(got)
            self.ops += ops

    def until_snapshot_past(self, index, what):
        """Writes rounds until the leader holds a snapshot past index."""
        t0 = time.monotonic()
        i0 = status_of(self.ldr)["raftIndex"]
        while newest_snapshot(self.ldr) <= index:
            check(time.monotonic() - t0 < MAX_WRITE_S,
                  "the leader has no snapshot past %d after %.0fs of writes (newest %d)"
                  % (index, MAX_WRITE_S, newest_snapshot(self.ldr)))
            self.seq += 1
            self.round(str(self.seq), ROUND)
        dt = time.monotonic() - t0
        i1 = status_of(self.ldr)["raftIndex"]
        log("%s: %d raft entries in %.1fs (%.0f/s); leader's newest snapshot at %d, past %d"
            % (what, i1 - i0, dt, (i1 - i0) / max(dt, 1e-3), newest_snapshot(self.ldr), index))


def put_lease_key(ldr, key):
    r = ldr.ctl("lease", "grant", LEASE_TTL)
    mo = re.match(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\)", r.stdout)
    check(mo, "lease grant output: %r" % r.stdout)
    lid = int(mo.group(1), 16)
    eq(ldr.ctl("put", key, "leased", "--lease", "%x" % lid).stdout, "OK\n", "put with a lease")
    return lid


def compact(ldr):
    """Compacts at the leader's current revision; returns it."""
    rev = json.loads(ldr.ctl("get", "x", "-w", "json").stdout)["header"]["revision"]
    r = ldr.ctl("compact", rev)
    eq(r.stdout.strip(), "compacted revision %d" % rev, "compact output")
    return rev


def wait_caught_up(m, ldr, timeout=60):
    """Until m (serializably) is at the leader's revision; no writes run."""
    want = revision(ldr)

    def there():
        if not m.running():
            raise Failure("%s exited with status %s while catching up"
                          % (m.name, m.proc.returncode))
        return revision(m) == want
    wait_until(there, timeout, "%s to reach revision %d" % (m.name, want), 0.1)
    return want


# ---- checks
def check_install(m, before_index, what):
    """(a) raftkv: m logged an install past before_index + TRAILING, and its
    data dir holds that snapshot.  Returns (installed index, snapshots m
    took of its own before, installs m held back during one of those), or
    None against etcd."""
    text = m.log_text()
    start = text.rfind("==== start #%d:" % m.starts)
    if IS_ETCD:
        # Not asserted: etcd's log lines are not an interface.
        mo = re.search(r"applied incoming snapshot at index (\d+)", text[start:])
        log("%s: install detection skipped (etcd; its log says: %s)"
            % (what, mo.group(0) if mo else "nothing about an incoming snapshot"))
        return None
    hits = INSTALL_RE.findall(text[start:])
    check(hits, "%s: no 'installed a raft snapshot from leader' line in %s's log" % (what, m.name))
    idx = int(hits[0][1])
    check(idx > before_index + TRAILING,
          "%s: installed index %d is past %d + %d" % (what, idx, before_index, TRAILING))
    check(idx in snapshot_indexes(m), "%s: the installed snapshot %d is in %s (has %s)"
          % (what, idx, m.data_dir, snapshot_indexes(m)))
    # Whether the install landed while m wrote a snapshot of its own (the
    # window node_guard.c guards, see cluster_install_race.py).
    own = text.count("fsm_snapshot: snapshot at index", start,
                     INSTALL_RE.search(text, start).start())
    held = text.count("raft: holding the snapshot", start)
    log("%s: %s installed the leader's snapshot at index %d (it had %d), %d install(s) logged; "
        "%d snapshot(s) of its own before, install held back %d time(s) during one"
        % (what, m.name, idx, before_index, len(hits), own, held))
    return idx, own, held


def check_same_state(m, ldr, bulk, what):
    """(b) the whole keyspace on m equals the leader's, serializably, at the
    same revision, and bulk/ is what the writers expect."""
    rev_l, kv_l = dump(ldr)
    rev_m, kv_m = dump(m)
    eq(rev_m, rev_l, "%s: %s's revision vs the leader's" % (what, m.name))
    if kv_m != kv_l:
        dl, dm = dict((k[0], k) for k in kv_l), dict((k[0], k) for k in kv_m)
        diff = [(k, dl.get(k), dm.get(k)) for k in sorted(set(dl) | set(dm))
                if dl.get(k) != dm.get(k)]
        raise Failure("%s: %s differs from the leader on %d keys, e.g. %s"
                      % (what, m.name, len(diff), diff[:5]))
    got = {k[0]: k[1] for k in kv_m if k[0].startswith("bulk/")}
    eq(len(got), len(bulk.want), "%s: number of bulk keys on %s" % (what, m.name))
    check(got == bulk.want, "%s: bulk keys on %s are the ones written" % (what, m.name))
    log("%s: %s has the leader's %d keys at revision %d" % (what, m.name, len(kv_m), rev_m))


def check_hashkv(members, ldr, compact_rev, what):
    """(c) `endpoint hashkv --cluster`: one hash, the compaction everywhere."""
    r = ldr.ctl("endpoint", "hashkv", "--cluster", "-w", "json")
    hs = json.loads(r.stdout)
    eq(len(hs), len(members), "%s: hashkv answers" % what)
    hashes = {h["Endpoint"]: h["HashKV"]["hash"] for h in hs}
    eq(len(set(hashes.values())), 1, "%s: one hashkv: %s" % (what, hashes))
    comps = {h["Endpoint"]: h["HashKV"].get("compact_revision", 0) for h in hs}
    eq(set(comps.values()), {compact_rev}, "%s: compact revision on every member" % what)


def check_compacted(m, compact_rev, what):
    """(d) the compaction is m's: one revision before it is gone, it is not."""
    r = m.ctl("get", "--consistency=s", "--rev", compact_rev - 1, "bulk/", "--prefix",
              "--limit", "1", check_rc=False)
    check(r.returncode != 0 and "required revision has been compacted" in r.stderr,
          "%s: read at %d on %s: %s%s" % (what, compact_rev - 1, m.name, r.stdout, r.stderr))
    m.ctl("get", "--consistency=s", "--rev", compact_rev, "bulk/", "--prefix", "--limit", "1")


def lease_ids(m):
    """The leases in m's own table (LeaseLeases is answered locally)."""
    r = m.ctl("lease", "list", "-w", "json")
    return {x["id"] for x in json.loads(r.stdout).get("leases") or []}


def check_lease_as_leader(m, lid, key, what):
    """(d) m leads: its time-to-live of lid (from its own lease table) has
    the key attached and a TTL left."""
    r = m.ctl("lease", "timetolive", "%x" % lid, "--keys")
    mo = re.search(r"remaining\((-?\d+)s\)", r.stdout)
    check(mo and int(mo.group(1)) > 0, "%s: lease %x alive on %s: %r" % (what, lid, m.name, r.stdout))
    check(key in r.stdout, "%s: lease %x has key %s: %r" % (what, lid, key, r.stdout))


def check_serves(m, members, ldr, tag, what):
    """(e) a write through m (relayed unless m leads), read back through m
    linearizably and serializably and on every member; same member list."""
    key = "serve/" + tag
    eq(m.ctl("put", key, "ok-" + tag).stdout, "OK\n", "%s: put through %s" % (what, m.name))
    eq(m.ctl("get", key, "--print-value-only").stdout.strip(), "ok-" + tag,
       "%s: linearizable get through %s" % (what, m.name))
    for x in members:
        wait_until(lambda: x.ctl("get", "--consistency=s", key, "--print-value-only",
                                 check_rc=False).stdout.strip() == "ok-" + tag, 20,
                   "%s: %s to apply %s" % (what, x.name, key), 0.1)
    ml = lambda x: sorted(x.ctl("member", "list").stdout.strip().splitlines())  # noqa: E731
    eq(ml(m), ml(ldr), "%s: member list through %s vs the leader" % (what, m.name))


# ---- the two phases
def follower_phase(t, c, bulk):
    members = c.members
    ldr = wait_leader(members)
    bulk.ldr = ldr
    f = [m for m in members if m is not ldr][0]
    for i in range(10):
        ldr.ctl("put", "pre/%d" % i, "v%d" % i)
    wait_caught_up(f, ldr)
    before = status_of(f)["raftIndex"]
    log("leader %s; killing follower %s at raft index %d (its snapshots: %s)"
        % (ldr.name, f.name, before, snapshot_indexes(f)))
    f.kill()

    lid = put_lease_key(ldr, "lease/one")
    r = ldr.ctl("txn", input='value("pre/0") = "v0"\n\nput txn/ok yes\nput pre/0 v0-txn\n\n'
                "put txn/failed yes\n\n")
    check(r.stdout.startswith("SUCCESS"), "txn: %r" % r.stdout)
    eq(ldr.ctl("del", "pre/1").stdout.strip(), "1", "delete one key")
    eq(ldr.ctl("del", "pre/5", "pre/8").stdout.strip(), "3", "delete a range")
    bulk.seq += 1
    bulk.round(str(bulk.seq), ROUND)
    crev = compact(ldr)
    after_ops = status_of(ldr)["raftIndex"]
    bulk.until_snapshot_past(max(before + STALE + TRAILING + MARGIN, after_ops),
                             "follower down")

    # The leader kept sending the follower its missing entries (STALE) and
    # its transport holds the last of those messages until a connection
    # attempt fails, once a second, and keeps only the newest 3 then: after
    # 2 s only heartbeats are left, so the follower gets the install first
    # and is not writing a snapshot of its own when it lands.  (Restarting
    # at once is cluster_install_race.py.)
    time.sleep(STALE_DROP_S)
    t0 = time.monotonic()
    f.start()
    rev = wait_caught_up(f, ldr)
    log("%s caught up to revision %d %.1fs after its restart" % (f.name, rev, time.monotonic() - t0))
    check_install(f, before, "follower")
    check_same_state(f, ldr, bulk, "follower")
    check_hashkv(members, ldr, crev, "follower")
    check_compacted(f, crev, "follower")
    check(lid in lease_ids(f), "follower: lease %x listed by %s" % (lid, f.name))
    check_serves(f, members, ldr, "follower", "follower")
    move_leader(members, ldr, f)
    check_lease_as_leader(f, lid, "lease/one", "follower")
    check_serves(f, members, f, "follower-leads", "follower as leader")
    return f, lid


def new_member_phase(t, c, bulk, lid1):
    members = list(c.members)
    ldr = wait_leader(members)
    bulk.ldr = ldr
    lid2 = put_lease_key(ldr, "lease/two")
    crev = compact(ldr)
    after_ops = status_of(ldr)["raftIndex"]
    # Its log must start past index 1 by more than the trailing window: a
    # new member could not be served from it.
    bulk.until_snapshot_past(max(TRAILING + MARGIN, after_ops), "before member add")

    m4 = Joiner(c, "m4")
    r = retry_unhealthy(ldr, "member", "add", "m4", "--learner", "--peer-urls", m4.peer_url)
    check(r.returncode == 0, "member add --learner m4: %s" % r.stderr)
    mo = re.match(r"Member +([0-9a-f]+) added to cluster", r.stdout)
    check(mo, "member add output: %r" % r.stdout)
    m4_id = int(mo.group(1), 16)
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', r.stdout, re.M))
    m4.initial = env["ETCD_INITIAL_CLUSTER"]
    freeze_flags(m4)
    c.members.append(m4)
    t0 = time.monotonic()
    m4.start()
    rev = wait_caught_up(m4, ldr)
    log("m4 caught up to revision %d %.1fs after its start" % (rev, time.monotonic() - t0))
    check_install(m4, 0, "new member")
    check_same_state(m4, ldr, bulk, "new member")
    check_compacted(m4, crev, "new member")

    def promote():
        r = ldr.ctl("member", "promote", "%x" % m4_id, check_rc=False)
        if r.returncode == 0:
            return r
        check("in sync with leader" in r.stderr or "unhealthy" in r.stderr,
              "promote: %s" % r.stderr)
        return None
    wait_until(promote, 30, "m4's promotion", interval=0.5)
    members = list(c.members)
    wait_until(lambda: not (status_of(m4) or {"isLearner": True}).get("isLearner"), 20,
               "m4 a voter", 0.2)
    check_hashkv(members, ldr, crev, "new member")
    # (etcd 3.4 answers a learner's LeaseLeases with "not supported")
    check({lid1, lid2} <= lease_ids(m4), "new member: both leases listed by m4")
    check_serves(m4, members, ldr, "m4", "new member")
    move_leader(members, ldr, m4)
    check_lease_as_leader(m4, lid2, "lease/two", "new member")
    check_lease_as_leader(m4, lid1, "lease/one", "new member")
    r = m4.ctl("lease", "revoke", "%x" % lid1)
    check("revoked" in r.stdout, "lease revoke: %r" % r.stdout)
    for m in members:
        wait_until(lambda: m.ctl("get", "--consistency=s", "lease/one", "--print-value-only",
                                 check_rc=False).stdout.strip() == "", 20,
                   "lease/one gone on %s" % m.name, 0.1)
    check_serves(m4, members, m4, "m4-leads", "new member as leader")


def main(t):
    cluster.require_python_etcd3()
    t0 = time.monotonic()
    c = t.cluster(size=3, extra_args=["--snapshot-count", str(SNAPSHOT_COUNT)], start=False)
    for m in c.members:
        m.start()
        freeze_flags(m)
    c.wait_ready(30)
    bulk = Bulk(None)
    _, lid = follower_phase(t, c, bulk)
    log("follower phase done at %.1fs" % (time.monotonic() - t0))
    new_member_phase(t, c, bulk, lid)
    for m in c.members:
        check(m.running(), "%s still running" % m.name)
    log("done in %.1fs" % (time.monotonic() - t0))


if __name__ == "__main__":
    cluster.run(main)
