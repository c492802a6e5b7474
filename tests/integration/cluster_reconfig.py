"""
cluster_reconfig: etcd 3.4's strict reconfiguration checks
(--strict-reconfig-check, on by default), on real clusters.

(a) three members, strict:
  * member add m4 (a voter that is never started) succeeds once the leader
    has been connected to every voter for 5 s (retried until then);
  * member add m5 is then refused with "etcdserver: unhealthy cluster"
    (gRPC UNAVAILABLE): nobody is connected to m4.  A learner too: etcd 3.4
    spares learners the started-members count only, not this check;
  * member remove m4 (down) succeeds;
  * with m3 killed, removing the live m2 is refused "unhealthy cluster"
    (one connected voter would be left of the three), while removing the
    dead m3 succeeds.
(b) one member, strict:
  * member add m2 succeeds (one started member may add a second: etcd's
    way of restoring a cluster from one member);
  * member add m3 is refused with "etcdserver: re-configuration failed due
    to not enough started members" (FAILED_PRECONDITION), a learner m3
    with "unhealthy cluster", and member remove m1 (m2 alone never
    started) with "not enough started members".
(c) three members with --strict-reconfig-check=false: m4 and m5 are added
    back to back (refused with the check on).  The ETCD_INITIAL_CLUSTER
    printed for m5 lists m4, not started yet, with an empty name
    ("=http://..."); m5 starts with exactly that line and joins.  m4's own
    line, printed before m5 existed, no longer lists every member, which
    etcd refuses ("member count is unequal"; raftkv does not compare), so
    m4 is removed, added again, and starts with its new line.  All five
    then apply the same writes (hashkv equal).

Run against etcd with RAFTKV=/usr/bin/etcd to check the test itself.
"""
import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import check, eq, log, wait_until  # noqa: E402
from cluster import retry_unhealthy, wait_leader  # noqa: E402
from cluster_membership import Joiner, err_line, freeze_flags, grpc_error  # noqa: E402

UNHEALTHY = "etcdserver: unhealthy cluster"
NOT_STARTED = "etcdserver: re-configuration failed due to not enough started members"


def ids_by_name(m):
    """{name or, for an unstarted member, peer URL: hex id} from member list."""
    out = {}
    for line in m.ctl("member", "list").stdout.strip().splitlines():
        f = line.split(", ")
        out[f[2] or f[3]] = f[0]
    return out


def settle(members):
    """A leader that has applied a write of its term: ready for changes."""
    ldr = wait_leader(members)
    wait_until(lambda: ldr.ctl("put", "settle", "1", check_rc=False).returncode == 0, 30,
               "a write through the leader", interval=0.2)
    return ldr


def refused(m, args, want, what):
    r = m.ctl(*args, check_rc=False)
    check(r.returncode != 0, "%s must be refused; got %r" % (what, r.stdout))
    eq(err_line(r), "Error: " + want, what)


def added(m, joiner, *flags):
    r = m.ctl("member", "add", joiner.name, "--peer-urls", joiner.peer_url, *flags,
              check_rc=False)
    check(r.returncode == 0, "member add %s: %s" % (joiner.name, r.stderr))
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', r.stdout, re.M))
    joiner.initial = env["ETCD_INITIAL_CLUSTER"]
    freeze_flags(joiner)
    return r


def start_frozen(t, n, extra_args=()):
    c = t.cluster(n, extra_args=extra_args, start=False)
    for m in c.members:
        m.start()
        freeze_flags(m)
    c.wait_ready()
    return c


# ---- (a) three members, strict
def three_strict(t):
    from etcd3 import etcdrpc
    c = start_frozen(t, 3)
    m1, m2, m3 = c.members
    ldr = settle(c.members)
    m4, m5 = Joiner(c, "m4"), Joiner(c, "m5")
    r = retry_unhealthy(ldr, "member", "add", "m4", "--peer-urls", m4.peer_url)
    check(r.returncode == 0, "member add m4: %s" % r.stderr)
    refused(ldr, ("member", "add", "m5", "--peer-urls", m5.peer_url), UNHEALTHY,
            "adding a voter while m4 never started")
    refused(ldr, ("member", "add", "m5", "--learner", "--peer-urls", m5.peer_url), UNHEALTHY,
            "adding a learner while m4 never started")
    cs = ldr.client(timeout=10).clusterstub
    eq(grpc_error(lambda: cs.MemberAdd(etcdrpc.MemberAddRequest(peerURLs=[m5.peer_url]), 10)),
       ("UNAVAILABLE", UNHEALTHY), "gRPC status of an unhealthy member add")
    # Through a follower as well (raftkv relays it to the leader).
    f = [m for m in c.members if m is not ldr][0]
    refused(f, ("member", "add", "m5", "--peer-urls", m5.peer_url), UNHEALTHY,
            "adding a voter through a follower while m4 never started")
    eq(len(ids_by_name(ldr)), 4, "members after the refused adds")
    ids = ids_by_name(ldr)
    r = ldr.ctl("member", "remove", ids[m4.peer_url], check_rc=False)
    check(r.returncode == 0, "removing the unstarted m4: %s" % r.stderr)
    log("(a) added m4, m5 refused (unhealthy), m4 removed")

    # One voter down: a live one may not go, the dead one may.
    victim, other = m3, m2
    victim.kill()
    live = [m1, m2]
    settle(live)
    time.sleep(1)  # the survivors notice the lost connection well within this
    refused(m1, ("member", "remove", ids[other.name]), UNHEALTHY,
            "removing live %s while %s is down" % (other.name, victim.name))
    r = m1.ctl("member", "remove", ids[victim.name], check_rc=False)
    check(r.returncode == 0, "removing the dead %s: %s" % (victim.name, r.stderr))
    wait_until(lambda: sorted(ids_by_name(m1)) == ["m1", "m2"], 20, "m3 gone", interval=0.2)
    settle(live)
    log("(a) with %s down: removing %s refused, removing %s done"
        % (victim.name, other.name, victim.name))
    for m in live:
        rc = m.stop()
        check(rc in (0, -15), "%s stopped cleanly (status %s)" % (m.name, rc))


# ---- (b) one member, strict
def one_strict(t):
    c = start_frozen(t, 1)
    m1 = c.members[0]
    settle(c.members)
    m2, m3 = Joiner(c, "m2"), Joiner(c, "m3")
    added(m1, m2)
    refused(m1, ("member", "add", "m3", "--peer-urls", m3.peer_url), NOT_STARTED,
            "adding a second unstarted voter")
    refused(m1, ("member", "add", "m3", "--learner", "--peer-urls", m3.peer_url), UNHEALTHY,
            "adding a learner while m2 never started")
    ids = ids_by_name(m1)
    refused(m1, ("member", "remove", ids["m1"]), NOT_STARTED,
            "removing the only started member")
    eq(sorted(ids), sorted(["m1", m2.peer_url]), "members after the refused changes")
    log("(b) one member: m2 added, m3 refused (not enough started), m1 stays")
    # etcd has no quorum any more (m2 is a voter that never started); ours
    # makes m2 a voter only once it has caught up.  Either way: done.
    m1.kill()


# ---- (c) three members, no strict check; joining with empty names
def member_started(m, name):
    rows = [line.split(", ") for line in m.ctl("member", "list").stdout.strip().splitlines()]
    return any(row[1] == "started" and row[2] == name for row in rows)


def three_loose(t):
    c = start_frozen(t, 3, extra_args=["--strict-reconfig-check=false"])
    ldr = settle(c.members)
    ldr.ctl("put", "before-joins", "yes")
    m4, m5 = Joiner(c, "m4"), Joiner(c, "m5")
    added(ldr, m4)
    added(ldr, m5)
    ids = ids_by_name(ldr)
    eq(sorted(ids), sorted(["m1", "m2", "m3", m4.peer_url, m5.peer_url]),
       "members after two back-to-back adds")
    log("(c) --strict-reconfig-check=false: two unstarted voters added back to back")
    # etcdctl names a member that has not started "": m5's line has "=<m4>".
    entries = m5.initial.split(",")
    check("=" + m4.peer_url in entries and "m5=" + m5.peer_url in entries,
          "ETCD_INITIAL_CLUSTER printed for m5 lists the unstarted m4 without a name: %r"
          % m5.initial)
    c.members.append(m5)
    m5.start()
    wait_until(lambda: member_started(ldr, "m5"), 30, "m5 to join and publish", interval=0.2)
    wait_until(lambda: m5.ctl("get", "--consistency=s", "before-joins", "--print-value-only",
                              check_rc=False).stdout.strip() == "yes", 30,
               "m5 to replicate", interval=0.2)
    log("(c) m5 joined with %s" % m5.initial)
    # m4's own line, printed before m5 was added, no longer lists every
    # member, which etcd refuses ("member count is unequal"): add it again
    # for a current one, as an operator would.
    r = ldr.ctl("member", "remove", ids[m4.peer_url], check_rc=False)
    check(r.returncode == 0, "removing m4 before adding it again: %s" % r.stderr)
    m4 = Joiner(c, "m4")
    added(ldr, m4)
    c.members.append(m4)
    m4.start()
    wait_until(lambda: member_started(ldr, "m4"), 30, "m4 to join and publish", interval=0.2)
    log("(c) m4 joined with %s" % m4.initial)
    ldr = settle(c.members)
    ldr.ctl("put", "after-joins", "yes")
    for m in c.members:
        wait_until(lambda: m.ctl("get", "--consistency=s", "after-joins", "--print-value-only",
                                 check_rc=False).stdout.strip() == "yes", 30,
                   "%s to apply the last write" % m.name, interval=0.2)
    rev = json.loads(ldr.ctl("get", "after-joins", "-w", "json").stdout)["header"]["revision"]
    hashes = {m.name: json.loads(m.ctl("endpoint", "hashkv", "--rev", rev, "-w", "json").stdout)
              [0]["HashKV"]["hash"] for m in c.members}
    eq(len(set(hashes.values())), 1, "one hashkv at revision %d: %s" % (rev, hashes))
    log("(c) five members, hashkv equal at revision %d" % rev)


def main(t):
    cluster.require_python_etcd3()
    t0 = time.monotonic()
    three_strict(t)
    one_strict(t)
    three_loose(t)
    log("done in %.1fs" % (time.monotonic() - t0))


if __name__ == "__main__":
    cluster.run(main)
