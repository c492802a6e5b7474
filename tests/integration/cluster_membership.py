"""
cluster_membership: the Cluster service on a real 3-member cluster.

Three members bootstrap from --initial-cluster; `etcdctl member list` through
each of them shows the same three started members (name, peer and client
URLs, not learners) and its header carries no revision.  Then, with the
membership calls sent to the leader (a follower may not forward yet):

  * member add m4 (a voter): m4 is listed "unstarted" with no name and no
    client URLs; it is started with --initial-cluster-state existing and the
    ETCD_INITIAL_CLUSTER that etcdctl printed, catches up (1000 keys written
    before, read back with a serializable get through m4 itself) and is then
    listed as started;
  * etcd's errors: Peer URLs already exists, given member URLs are invalid,
    member not found (remove, update, promote), can only promote a learner
    member;
  * member update of m4's peer URLs, then member remove m4;
  * member remove of the leader while a writer keeps putting keys (through
    any member that answers): a new leader takes over, every acknowledged put
    is readable afterwards;
  * member add --learner m5 through a follower: promote before it started
    fails ("in sync"),
    m5 starts and replicates (a serializable get through it sees a key
    written after it joined), promote then succeeds and it is a voter;
  * restart of a bootstrap member and of the joined member on their data
    dirs with unchanged flags: both rejoin and see new writes;
  * (raftkv only) a data dir started with the flags of another cluster is
    refused with a clear message.

Run against etcd with RAFTKV=/usr/bin/etcd to check the test itself.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, eq, log, wait_until  # noqa: E402
from cluster import retry_unhealthy, wait_leader  # noqa: E402

KEYS = 1000
IS_ETCD = os.path.basename(cluster.server_binary()) == "etcd"


class Joiner(cluster.Member):
    """A member started with --initial-cluster-state existing and the
    --initial-cluster that `etcdctl member add` printed.  Every start uses
    the same flags, as an operator restarting it would."""

    def __init__(self, cl, name, initial_cluster=""):
        super().__init__(cl, len(cl.members), name, cluster.free_port(), cluster.free_port(),
                         os.path.join(cl.workdir, name + ".data"))
        self.initial = initial_cluster

    def argv(self, state):
        a = super().argv(state)
        a[a.index("--initial-cluster") + 1] = self.initial
        a[a.index("--initial-cluster-state") + 1] = "existing"
        return a


def err_line(r):
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def members_json(m):
    r = m.ctl("member", "list", "-w", "json")
    return json.loads(r.stdout)


def member_rows(m):
    """`etcdctl member list` lines, split on ", " (etcdctl's simple format)."""
    r = m.ctl("member", "list")
    return sorted(tuple(line.split(", ")) for line in r.stdout.strip().splitlines())


def expect_rows(m, want):
    """want: {name: (peer_url, client_url, is_learner)}; the unstarted are
    keyed by their peer URL with name ""."""
    rows = member_rows(m)
    got = {}
    for row in rows:
        check(len(row) == 6, "member list row %r has 6 fields" % (row,))
        mid, status, name, peers, clients, learner = row
        check(re.fullmatch(r"[0-9a-f]{1,16}", mid), "member id %r is hex" % mid)
        eq(status, "started" if name else "unstarted", "status of %r" % (row,))
        got[name or peers] = (peers, clients, learner)
    eq(got, want, "member list through %s" % m.name)


def status(m):
    return json.loads(m.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]


def wait_started(members, names, timeout=30):
    """Until every member lists exactly `names`, all started."""
    def ok():
        for m in members:
            r = m.ctl("member", "list", check_rc=False, timeout=10)
            if r.returncode != 0:
                return False
            rows = [line.split(", ") for line in r.stdout.strip().splitlines()]
            if sorted(row[2] for row in rows) != sorted(names):
                return False
            if any(row[1] != "started" for row in rows):
                return False
        return True
    try:
        wait_until(ok, timeout, "members %s started, as seen by %s"
                   % (names, [m.name for m in members]), interval=0.2)
    except Failure:
        for m in members:
            r = m.ctl("member", "list", check_rc=False, timeout=10)
            log("member list through %s: %s%s" % (m.name, r.stdout, r.stderr))
        raise


def serializable_count(m, prefix):
    r = m.ctl("get", "--consistency=s", "--prefix", prefix, "--limit", "1", "-w", "json",
              check_rc=False, timeout=10)
    if r.returncode != 0:
        return -1
    return json.loads(r.stdout).get("count", 0)


def serializable_value(m, key):
    r = m.ctl("get", "--consistency=s", key, "--print-value-only", check_rc=False, timeout=10)
    return r.stdout.strip() if r.returncode == 0 else None


def grpc_error(fn):
    """Runs fn (a gRPC stub call); returns (code name, details) of its error."""
    import grpc
    try:
        fn()
    except grpc.RpcError as e:
        return e.code().name, e.details()
    raise Failure("the call should have failed")


class Writer:
    """One thread putting w/NNNNN keys through whichever member answers,
    recording the acknowledged ones (light load: one put in flight)."""

    def __init__(self, members):
        self.members = list(members)
        self.acked = {}
        self.errors = 0
        self.stop = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)

    def run(self):
        clients = {}
        seq, i = 0, 0
        while not self.stop.is_set():
            m = self.members[i % len(self.members)]
            key, value = "w/%05d" % seq, "v%d" % seq
            try:
                c = clients.get(m.name)
                if c is None:
                    c = clients[m.name] = cluster.py_client(m.client_port, timeout=3)
                c.put(key, value)
                self.acked[key] = value
                seq += 1
                time.sleep(0.01)
            except Exception:
                self.errors += 1
                i += 1           # try the next member
                seq += 1         # never reuse a key whose put may have landed
                time.sleep(0.05)
        for c in clients.values():
            try:
                c.close()
            except Exception:
                pass

    def start(self):
        self.th.start()

    def count(self):
        return len(self.acked)

    def join(self):
        self.stop.set()
        self.th.join(30)
        check(not self.th.is_alive(), "writer thread stuck")


def freeze_flags(m):
    """Every later start of m uses the flags of its first start: the
    harness would otherwise rebuild --initial-cluster from the members the
    test knows now, and a restart must not change flags."""
    argv = m.argv("new")
    m.argv = lambda state: list(argv)


def main(t):
    from etcd3 import etcdrpc

    c = t.cluster(3, start=False)
    for m in c.members:
        m.start()
        freeze_flags(m)
    m1, m2, m3 = c.members
    live = list(c.members)   # the members of the cluster now
    wait_leader(live)
    wait_started(live, ["m1", "m2", "m3"])

    # ---- member list through each member
    want = {m.name: (m.peer_url, m.client_url, "false") for m in live}
    for m in live:
        expect_rows(m, want)
    js = [members_json(m) for m in live]
    check(all("revision" not in j["header"] for j in js), "member list header has no revision")
    eq(len({j["header"]["cluster_id"] for j in js}), 1, "one cluster id")
    eq(len({tuple(sorted(x["ID"] for x in j["members"])) for j in js}), 1, "same ids everywhere")
    eq({j["header"]["member_id"] for j in js}, {x["ID"] for x in js[0]["members"]},
       "each member's header id is listed")
    ids = {x["name"]: x["ID"] for x in js[0]["members"]}
    cluster_id = js[0]["header"]["cluster_id"]

    leader = wait_leader(live)
    log("leader", leader.name)
    lc = leader.client(timeout=30)
    for i in range(KEYS):
        lc.put("k/%04d" % i, "value-%d" % i)

    # ---- member add m4 (voter), start it with what etcdctl printed
    m4 = Joiner(c, "m4")
    r = retry_unhealthy(leader, "member", "add", "m4", "--peer-urls", m4.peer_url)
    check(r.returncode == 0, "member add m4: %s" % r.stderr)
    mo = re.match(r"Member +([0-9a-f]+) added to cluster +([0-9a-f]+)\n", r.stdout)
    check(mo, "member add output: %r" % r.stdout)
    m4_id = int(mo.group(1), 16)
    eq(int(mo.group(2), 16), cluster_id, "cluster id printed by member add")
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', r.stdout, re.M))
    eq(env.get("ETCD_NAME"), "m4", "ETCD_NAME")
    eq(env.get("ETCD_INITIAL_ADVERTISE_PEER_URLS"), m4.peer_url, "ETCD_INITIAL_ADVERTISE_PEER_URLS")
    eq(env.get("ETCD_INITIAL_CLUSTER_STATE"), "existing", "ETCD_INITIAL_CLUSTER_STATE")
    eq(sorted(env.get("ETCD_INITIAL_CLUSTER", "").split(",")),
       sorted(["%s=%s" % (m.name, m.peer_url) for m in live] + ["m4=" + m4.peer_url]),
       "ETCD_INITIAL_CLUSTER")
    m4.initial = env["ETCD_INITIAL_CLUSTER"]
    freeze_flags(m4)
    want[m4.peer_url] = (m4.peer_url, "", "false")
    for m in live:
        expect_rows(m, want)
    j = members_json(leader)
    new = [x for x in j["members"] if x["ID"] == m4_id]
    eq(len(new), 1, "the new member is listed with the id member add printed")
    check(not new[0].get("name") and not new[0].get("clientURLs"), "unstarted: no name, no URLs")

    live.append(m4)
    c.members.append(m4)  # for the harness: logs, cleanup
    m4.start()
    wait_until(lambda: serializable_count(m4, "k/") == KEYS, 60,
               "m4 to catch up on %d keys" % KEYS, interval=0.2)
    eq(serializable_value(m4, "k/0999"), "value-999", "a key read through m4")
    del want[m4.peer_url]
    want["m4"] = (m4.peer_url, m4.client_url, "false")
    wait_started(live, ["m1", "m2", "m3", "m4"])
    for m in live:
        expect_rows(m, want)
    eq(status(m4)["header"]["cluster_id"], cluster_id, "m4 reports the cluster id")
    eq(status(m4)["header"]["member_id"], m4_id, "m4 reports the id member add gave it")

    # ---- etcd's errors
    leader = wait_leader(live)
    cs = leader.client(timeout=10).clusterstub
    r = retry_unhealthy(leader, "member", "add", "dup", "--peer-urls", m2.peer_url)
    check(r.returncode != 0, "adding an existing peer URL must fail")
    eq(err_line(r), "Error: etcdserver: Peer URLs already exists", "duplicate peer URL")
    eq(grpc_error(lambda: cs.MemberAdd(etcdrpc.MemberAddRequest(peerURLs=[m3.peer_url]), 10)),
       ("FAILED_PRECONDITION", "etcdserver: Peer URLs already exists"), "duplicate peer URL code")
    for bad in (["foo://127.0.0.1:1"], ["http://127.0.0.1"], []):
        eq(grpc_error(lambda: cs.MemberAdd(etcdrpc.MemberAddRequest(peerURLs=bad), 10)),
           ("INVALID_ARGUMENT", "etcdserver: given member URLs are invalid"),
           "member add %r" % bad)
    r = leader.ctl("member", "remove", "1234abcd", check_rc=False)
    eq(err_line(r), "Error: etcdserver: member not found", "remove unknown")
    eq(grpc_error(lambda: cs.MemberRemove(etcdrpc.MemberRemoveRequest(ID=0x1234abcd), 10)),
       ("NOT_FOUND", "etcdserver: member not found"), "remove unknown code")
    r = leader.ctl("member", "update", "1234abcd", "--peer-urls", "http://127.0.0.1:9", check_rc=False)
    eq(err_line(r), "Error: etcdserver: member not found", "update unknown")
    r = leader.ctl("member", "promote", "%x" % ids["m2"], check_rc=False)
    eq(err_line(r), "Error: etcdserver: can only promote a learner member", "promote a voter")
    # (python3-etcd3's protos predate MemberPromote: etcdctl only)
    r = leader.ctl("member", "promote", "1234abcd", check_rc=False)
    eq(err_line(r), "Error: etcdserver: member not found", "promote unknown")

    # ---- update m4's peer URLs (to the same port under another spelling is
    # not portable; use a second URL list equal to the first: a no-op change
    # that must still answer with the full list)
    r = retry_unhealthy(leader, "member", "update", "%x" % m4_id, "--peer-urls", m4.peer_url)
    check(r.returncode == 0, "member update m4: %s" % r.stderr)
    check(("Member %16x updated in cluster %16x" % (m4_id, cluster_id)) in r.stdout,
          "member update output: %r" % r.stdout)

    # ---- remove m4
    r = retry_unhealthy(leader, "member", "remove", "%x" % m4_id)
    check(r.returncode == 0, "member remove m4: %s" % r.stderr)
    eq(r.stdout.strip(), "Member %16x removed from cluster %16x" % (m4_id, cluster_id),
       "member remove output")
    del want["m4"]
    live.remove(m4)
    wait_until(lambda: all(len(member_rows(m)) == 3 for m in live), 20,
               "m4 gone from every member list", interval=0.2)
    for m in live:
        expect_rows(m, want)
    # etcd stops a member once it learns it was removed; ours may or may not
    # have learnt it (the leader stops talking to it): stop it either way.
    if m4.running():
        m4.kill()

    # ---- remove the leader under light load
    writer = Writer(live)
    writer.start()
    wait_until(lambda: writer.count() >= 20, 20, "writes before the removal")
    leader = wait_leader(live)
    old = leader
    before = writer.count()
    r = retry_unhealthy(old, "member", "remove", "%x" % ids[old.name])
    check(r.returncode == 0, "member remove of the leader: %s" % r.stderr)
    log("removed the leader", old.name)
    live.remove(old)
    del want[old.name]
    writer.members = list(live)
    new_leader = wait_leader(live)
    check(new_leader is not old, "a new leader")
    wait_until(lambda: writer.count() >= before + 50, 30, "writes after the leader's removal")
    writer.join()
    log("writer: %d acknowledged, %d errors" % (writer.count(), writer.errors))
    wait_until(lambda: all(len(member_rows(m)) == 2 for m in live), 20,
               "the old leader gone from every member list", interval=0.2)
    for m in live:
        expect_rows(m, want)
    if old.running():
        old.kill()
    rc = new_leader.client(timeout=30)
    got = {kv[1].key.decode(): kv[0].decode() for kv in rc.get_prefix("w/")}
    lost = [k for k in writer.acked if got.get(k) != writer.acked[k]]
    eq(lost, [], "acknowledged writes missing after the leader's removal")

    # ---- add a learner (through a follower: it relays to the leader), promote it
    leader = new_leader
    follower = [m for m in live if m is not leader][0]
    m5 = Joiner(c, "m5")
    r = retry_unhealthy(follower, "member", "add", "m5", "--learner", "--peer-urls", m5.peer_url)
    check(r.returncode == 0, "member add --learner: %s" % r.stderr)
    mo = re.match(r"Member +([0-9a-f]+) added to cluster +([0-9a-f]+)\n", r.stdout)
    check(mo, "member add output: %r" % r.stdout)
    m5_id = int(mo.group(1), 16)
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', r.stdout, re.M))
    m5.initial = env["ETCD_INITIAL_CLUSTER"]
    freeze_flags(m5)
    want[m5.peer_url] = (m5.peer_url, "", "true")
    for m in live:
        expect_rows(m, want)
    r = leader.ctl("member", "promote", "%x" % m5_id, check_rc=False)
    eq(err_line(r), "Error: etcdserver: can only promote a learner member which is in sync "
       "with leader", "promote of a learner that never started")
    live.append(m5)
    c.members.append(m5)
    m5.start()
    leader.ctl("put", "after-learner", "yes")
    wait_until(lambda: serializable_value(m5, "after-learner") == "yes", 60,
               "the learner to replicate", interval=0.2)
    del want[m5.peer_url]
    want["m5"] = (m5.peer_url, m5.client_url, "true")
    voters = [m for m in live if m is not m5]
    wait_started(voters, sorted(want))
    for m in voters:
        expect_rows(m, want)
    eq(status(m5).get("isLearner"), True, "endpoint status of the learner")
    # etcd 3.4 serves a learner's clients serializable reads and Status only.
    r = m5.ctl("member", "list", check_rc=False)
    eq(err_line(r), "Error: etcdserver: rpc not supported for learner", "member list on a learner")

    def promote():
        r = leader.ctl("member", "promote", "%x" % m5_id, check_rc=False)
        if r.returncode == 0:
            return r
        check("in sync with leader" in r.stderr or "unhealthy" in r.stderr,
              "promote: %s" % r.stderr)
        return None
    r = wait_until(promote, 30, "the learner's promotion", interval=0.5)
    eq(r.stdout.strip(), "Member %16x promoted in cluster %16x" % (m5_id, cluster_id),
       "member promote output")
    want["m5"] = (m5.peer_url, m5.client_url, "false")
    wait_until(lambda: all(dict((row[2], row[5]) for row in member_rows(m)).get("m5") == "false"
                           for m in live), 20, "m5 a voter everywhere", interval=0.2)
    for m in live:
        expect_rows(m, want)
    check(not status(m5).get("isLearner"), "endpoint status after promotion")

    # ---- restart a bootstrap member and the joined one with unchanged flags
    boot = [m for m in live if m is not m5][0]
    for m in (boot, m5):
        rc = m.stop()
        check(rc in (0, -15), "%s stopped cleanly (status %s)" % (m.name, rc))
        m.start()
        wait_leader(live, 60)
        wait_started(live, sorted(want), 60)
        ldr = wait_leader(live)
        key = "restart-" + m.name
        wait_until(lambda: ldr.ctl("put", key, "ok", check_rc=False).returncode == 0, 30,
                   "a write after restarting %s" % m.name, interval=0.3)
        wait_until(lambda: serializable_value(m, key) == "ok", 30,
                   "%s to see a write after its restart" % m.name, interval=0.2)
        eq(serializable_count(m, "k/"), KEYS, "%s keeps its keys" % m.name)
    for m in live:
        expect_rows(m, want)

    # ---- a restart whose --initial-cluster lists today's members (not the
    # bootstrap's), as an operator's updated unit file would: the data dir
    # decides, the member starts and serves
    boot.stop()
    boot.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in live)
    boot.start()
    wait_started(live, sorted(want), 60)
    wait_until(lambda: boot.ctl("put", "updated-flags", "ok", check_rc=False).returncode == 0, 30,
               "a write through %s after a restart with today's --initial-cluster" % boot.name,
               interval=0.3)
    boot.initial_cluster = None

    # ---- a data dir of another cluster is refused (raftkv only: etcd
    # ignores --initial-cluster* once its data dir exists)
    if not IS_ETCD:
        victim = boot
        victim.stop()
        argv = victim.argv("new")
        argv[argv.index("--initial-cluster-token") + 1] = "another-cluster"
        p = subprocess.run(argv, capture_output=True, text=True, env=cluster.clean_env(),
                           timeout=30)
        check(p.returncode != 0, "a data dir of another cluster must be refused")
        check("refusing to start" in p.stdout + p.stderr,
              "clear message for a foreign data dir: %r" % (p.stdout + p.stderr)[-600:])
        victim.start()
        wait_started(live, sorted(want), 60)

    # ---- every member applied the same entries
    leader = wait_leader(live)
    leader.ctl("put", "final", "1")
    for m in live:
        wait_until(lambda: serializable_value(m, "final") == "1", 30, "final write on " + m.name)
    hashes = set()
    rev = json.loads(leader.ctl("get", "final", "-w", "json").stdout)["header"]["revision"]
    for m in live:
        h = json.loads(m.ctl("endpoint", "hashkv", "--rev", rev, "-w", "json").stdout)
        hashes.add(h[0]["HashKV"]["hash"])
    eq(len(hashes), 1, "one hashkv at revision %d" % rev)


if __name__ == "__main__":
    cluster.run(main)
