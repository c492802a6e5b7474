"""
cluster_forwarding: any member serves, three members.

Clients talk to a FOLLOWER only; it must relay writes, linearizable reads
and lease requests to the leader and hand back the leader's answers, as
etcd does (issue 3, "Any member serves"):
  * etcdctl put/get/del/txn/compaction, lease grant/keep-alive --once/
    timetolive/revoke, and python3-etcd3 put/get/transaction/lease refresh
    through a follower; serializable reads there see the writes once applied;
  * writes through every member, then `endpoint hashkv` equal on all three;
  * kill -9 of the leader while a client writes through a follower: every
    acknowledged write is there afterwards (linearizable get of each key),
    and writes through the same follower resume once a new leader exists.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, ctl_json, eq, log, wait_until  # noqa: E402


def leader_of(c, members=None):
    """The running member that leads, per endpoint status; None if none."""
    members = [m for m in (members or c.members) if m.running()]
    eps = ",".join(m.endpoint for m in members)
    r = members[0].ctl("endpoint", "status", "-w", "json", endpoints=eps, check_rc=False,
                       timeout=15)
    if r.returncode != 0 and not r.stdout.strip():
        return None
    import json
    try:
        st = json.loads(r.stdout)
    except ValueError:
        return None
    ids = {}
    lead = None
    for e in st:
        s = e.get("Status", {})
        mid = s.get("header", {}).get("member_id")
        ids[mid] = e.get("Endpoint")
        if s.get("leader"):
            lead = s["leader"]
    if not lead or lead not in ids:
        return None
    for m in members:
        if m.endpoint == ids[lead]:
            return m
    return None


def check_kv(c, f):
    eq(f.ctl("put", "fk1", "v1").stdout, "OK\n", "put through a follower")
    eq(f.ctl("get", "fk1").stdout, "fk1\nv1\n", "linearizable get through a follower")
    r = f.ctl("get", "fk1", "-w", "json")
    check('"kvs"' in r.stdout, "get -w json has kvs: %s" % r.stdout)
    wait_until(lambda: f.ctl("get", "fk1", "--consistency=s").stdout == "fk1\nv1\n", 5,
               "serializable get on the follower")
    f.ctl("put", "fk2", "v2")
    eq(f.ctl("del", "fk2").stdout, "1\n", "del through a follower")
    eq(f.ctl("get", "fk2").stdout, "", "deleted key gone")
    txn = 'value("fk1") = "v1"\n\nput fk3 yes\n\nput fk3 no\n\n'
    out = f.ctl("txn", input=txn).stdout
    check(out.startswith("SUCCESS"), "txn through a follower: %r" % out)
    eq(f.ctl("get", "fk3", "--print-value-only").stdout, "yes\n", "txn's put")
    # A read-only txn (linearizable) through the follower.
    out = f.ctl("txn", input='value("fk3") = "yes"\n\nget fk1\n\n\n').stdout
    check(out.startswith("SUCCESS") and "v1" in out, "read-only txn: %r" % out)
    rev = ctl_json(f, "get", "fk1")["header"]["revision"]
    out = f.ctl("compaction", str(rev)).stdout
    check("compacted revision %d" % rev in out, "compaction through a follower: %r" % out)
    # A compacted revision: the leader's error comes back unchanged.
    r = f.ctl("get", "fk1", "--rev=1", check_rc=False)
    check(r.returncode != 0 and "required revision has been compacted" in r.stderr,
          "compacted read error relayed: %r" % r.stderr)


def check_leases(c, f):
    out = f.ctl("lease", "grant", "30").stdout
    check(out.startswith("lease ") and "granted with TTL(30s)" in out, "grant: %r" % out)
    lid = out.split()[1]
    f.ctl("put", "lk", "lv", "--lease=" + lid)
    out = f.ctl("lease", "keep-alive", "--once", lid).stdout
    check("keepalived with TTL(30)" in out, "keep-alive --once through a follower: %r" % out)
    out = f.ctl("lease", "timetolive", "--keys", lid).stdout
    check("granted with TTL(30s)" in out and "lk" in out, "timetolive: %r" % out)
    out = f.ctl("lease", "revoke", lid).stdout
    check("revoked" in out, "revoke: %r" % out)
    eq(f.ctl("get", "lk").stdout, "", "revoked lease's key gone")
    out = f.ctl("lease", "timetolive", lid).stdout
    check("already expired" in out, "timetolive of a revoked lease: %r" % out)


def check_python(c, f):
    cluster.require_python_etcd3()
    cl = f.client()
    cl.put("pk1", "pv1")
    v, _ = cl.get("pk1")
    eq(v, b"pv1", "python get through a follower")
    ok, _ = cl.transaction(compare=[cl.transactions.value("pk1") == "pv1"],
                           success=[cl.transactions.put("pk2", "yes")],
                           failure=[cl.transactions.put("pk2", "no")])
    check(ok, "python transaction took the success branch")
    eq(cl.get("pk2")[0], b"yes", "python transaction's put")
    lease = cl.lease(20)
    cl.put("pk3", "x", lease=lease)
    resp = list(cl.refresh_lease(lease.id))
    check(resp and resp[0].TTL == 20, "python refresh_lease: %r" % resp)
    check(lease.remaining_ttl > 0, "python lease remaining_ttl")
    lease.revoke()
    eq(cl.get("pk3")[0], None, "python revoke removed the key")


def check_hashkv(c):
    for i, m in enumerate(c.members):
        for j in range(20):
            m.ctl("put", "h/%d/%d" % (i, j), "v%d" % j)
    # Every member must apply the last write before hashes compare.
    last = ctl_json(c.members[0], "get", "h/2/19")["header"]["revision"]

    def hashes():
        r = c.members[0].ctl("endpoint", "hashkv", "-w", "json", endpoints=c.endpoints)
        import json
        st = json.loads(r.stdout)
        revs = set(e["HashKV"]["header"]["revision"] for e in st)
        hs = set(e["HashKV"]["hash"] for e in st)
        return (len(st) == 3 and revs == {last} and len(hs) == 1) and hs
    wait_until(hashes, 10, "one hashkv on every member at revision %d" % last, 0.2)


def check_failover(c, t):
    lead = leader_of(c)
    check(lead is not None, "a leader")
    f = [m for m in c.members if m is not lead][0]
    cl = cluster.py_client(f.client_port, timeout=5)
    t.closers.append(cl.close)
    acked, failed = [], []
    stop = threading.Event()
    killed_at = [None]
    resumed_at = [None]

    def writer():
        i = 0
        while not stop.is_set():
            k = "fo/%06d" % i
            i += 1
            try:
                cl.put(k, "v")
                acked.append(k)
                if killed_at[0] and not resumed_at[0]:
                    resumed_at[0] = time.monotonic()
            except Exception as e:  # noqa: BLE001
                failed.append((k, str(e)[:200]))
                time.sleep(0.05)
    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(1.5)
    n_before = len(acked)
    check(n_before > 10, "writes through the follower before the kill (%d)" % n_before)
    log("killing leader %s after %d writes" % (lead.name, n_before))
    lead.kill()
    killed_at[0] = time.monotonic()
    wait_until(lambda: resumed_at[0], 30, "writes through the follower to resume", 0.1)
    log("writes resumed %.2fs after the kill (%d failed meanwhile)"
        % (resumed_at[0] - killed_at[0], len(failed)))
    time.sleep(1.0)
    stop.set()
    th.join(15)
    check(len(acked) > n_before, "writes acknowledged after the failover")
    lead.start()
    c.wait_ready(30)
    # Every acknowledged write, read linearizably through every member.
    for m in c.members:
        got = set()
        r = m.ctl("get", "fo/", "--prefix", "--keys-only")
        for line in r.stdout.splitlines():
            if line:
                got.add(line)
        lost = [k for k in acked if k not in got]
        check(not lost, "%s lost %d acknowledged writes, e.g. %s" % (m.name, len(lost), lost[:5]))
    log("%d acknowledged writes all present on every member" % len(acked))


def main(t):
    c = t.cluster(size=3)
    lead = wait_until(lambda: leader_of(c), 15, "a leader")
    f = [m for m in c.members if m is not lead][0]
    log("leader %s, testing through follower %s" % (lead.name, f.name))
    check_kv(c, f)
    check_leases(c, f)
    check_python(c, f)
    check_hashkv(c)
    check_failover(c, t)


cluster.run(main)
