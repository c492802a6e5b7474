"""
metrics_http: GET /metrics on the client port, as Prometheus scrapes it.
Run with RAFTKV=/usr/bin/etcd to check the test itself: every assertion
holds for etcd 3.4.23 too.

  * the answer is the Prometheus text format (0.0.4): every sample line
    parses, every family has HELP and TYPE lines before its samples;
  * etcd's names and types for the figures dashboards use (has_leader,
    is_leader, leader changes, proposals, mvcc totals, db size, gRPC
    per-method counters, process figures);
  * counters count: N puts raise etcd_mvcc_put_total and the gRPC Put
    handled{OK} by N, a range raises etcd_mvcc_range_total, a lease grant
    raises etcd_debugging_lease_granted_total; /health counts successes;
  * in a 3-member cluster exactly one member has is_leader 1, all have
    has_leader 1 and the same current revision after a write, and each
    reports its own member id (as `etcdctl endpoint status` prints it).
"""
import json
import os
import re
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import check, eq, log  # noqa: E402

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')

WANT_TYPES = {
    "etcd_server_has_leader": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_leader_changes_seen_total": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_proposals_failed_total": "counter",
    "etcd_server_id": "gauge",
    "etcd_server_version": "gauge",
    "etcd_server_quota_backend_bytes": "gauge",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_mvcc_put_total": "counter",
    "etcd_mvcc_range_total": "counter",
    "etcd_mvcc_delete_total": "counter",
    "etcd_mvcc_txn_total": "counter",
    "etcd_debugging_mvcc_keys_total": "gauge",
    "etcd_debugging_mvcc_current_revision": "gauge",
    "etcd_debugging_lease_granted_total": "counter",
    "etcd_network_client_grpc_received_bytes_total": "counter",
    "etcd_network_client_grpc_sent_bytes_total": "counter",
    "etcd_server_health_success": "counter",
    "grpc_server_started_total": "counter",
    "grpc_server_handled_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def scrape(m):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % m.client_port, timeout=10) as r:
        eq(r.status, 200, "/metrics status")
        ctype = r.headers.get("Content-Type", "")
        check(ctype.startswith("text/plain") and "version=0.0.4" in ctype,
              "/metrics Content-Type is the text format 0.0.4, got %r" % ctype)
        text = r.read().decode()
    types, samples = {}, {}
    helped = set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            check(name in helped, "family %s has HELP before TYPE" % name)
            types[name] = typ
            continue
        check(not line.startswith("#"), "unexpected comment line %r" % line)
        mo = SAMPLE.match(line)
        check(mo is not None, "sample line parses: %r" % line)
        name, labels, value = mo.group(1), mo.group(3) or "", mo.group(4)
        fam = re.sub(r"_(bucket|sum|count)$", "", name)
        check(fam in types or name in types, "sample %s comes after its TYPE line" % name)
        lab = tuple(sorted((k, v) for k, v, _ in LABEL.findall(labels)))
        samples[(name, lab)] = float(value)  # Go's float formats parse in Python
    for name, typ in WANT_TYPES.items():
        eq(types.get(name), typ, "type of %s" % name)
    return types, samples


def value(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    check(key in samples, "sample %s%s present" % (name, labels or ""))
    return samples[key]


def grpc(samples, fam, method, code=None):
    svc = {"Put": "etcdserverpb.KV", "Range": "etcdserverpb.KV"}[method]
    labels = dict(grpc_method=method, grpc_service=svc, grpc_type="unary")
    if code:
        labels["grpc_code"] = code
    return value(samples, fam, **labels)


def single(t):
    c = t.cluster()
    m = c.members[0]
    _, s0 = scrape(m)
    eq(value(s0, "etcd_server_has_leader"), 1.0, "has_leader")
    eq(value(s0, "etcd_server_is_leader"), 1.0, "is_leader")
    check(value(s0, "etcd_server_leader_changes_seen_total") >= 1, "a leader change was seen")
    check(value(s0, "process_resident_memory_bytes") > 1e6, "RSS is reported")
    check(value(s0, "process_open_fds") >= 3, "open fds are reported")

    n = 7
    for i in range(n):
        m.ctl("put", "metrics/k%d" % i, "v%d" % i)
    m.ctl("get", "metrics/", "--prefix")
    m.ctl("lease", "grant", "60")
    with urllib.request.urlopen("http://127.0.0.1:%d/health" % m.client_port, timeout=10) as r:
        r.read()
    _, s1 = scrape(m)
    eq(value(s1, "etcd_mvcc_put_total") - value(s0, "etcd_mvcc_put_total"), float(n), "puts counted")
    eq(grpc(s1, "grpc_server_handled_total", "Put", "OK") - grpc(s0, "grpc_server_handled_total", "Put", "OK"),
       float(n), "gRPC Put handled OK counted")
    eq(grpc(s1, "grpc_server_started_total", "Put") - grpc(s0, "grpc_server_started_total", "Put"),
       float(n), "gRPC Put started counted")
    check(value(s1, "etcd_mvcc_range_total") > value(s0, "etcd_mvcc_range_total"), "range counted")
    eq(value(s1, "etcd_debugging_lease_granted_total") - value(s0, "etcd_debugging_lease_granted_total"),
       1.0, "lease grant counted")
    check(value(s1, "etcd_server_health_success") > value(s0, "etcd_server_health_success"),
          "health check counted")
    check(value(s1, "etcd_network_client_grpc_received_bytes_total") >
          value(s0, "etcd_network_client_grpc_received_bytes_total"), "received bytes counted")
    check(value(s1, "etcd_server_proposals_applied_total") >
          value(s0, "etcd_server_proposals_applied_total"), "applied index advanced")
    eq(value(s1, "etcd_debugging_mvcc_keys_total") - value(s0, "etcd_debugging_mvcc_keys_total"),
       float(n), "keys total")
    status = json.loads(m.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
    rev = status["header"]["revision"]
    eq(value(s1, "etcd_debugging_mvcc_current_revision"), float(rev), "current revision")
    eq(value(s1, "etcd_server_id", server_id="%x" % status["header"]["member_id"]), 1.0, "server id")
    c.stop()


def three(t):
    c = t.cluster(size=3)
    c.members[0].ctl("put", "metrics/three", "x")
    status = {}
    for m in c.members:
        st = json.loads(m.ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
        status[m] = st["header"]["member_id"]
    revs = set()
    leaders = 0

    def settled():
        nonlocal revs, leaders
        revs, leaders = set(), 0
        for m in c.members:
            _, s = scrape(m)
            if value(s, "etcd_server_has_leader") != 1.0:
                return False
            leaders += int(value(s, "etcd_server_is_leader"))
            revs.add(value(s, "etcd_debugging_mvcc_current_revision"))
            value(s, "etcd_server_id", server_id="%x" % status[m])
        return leaders == 1 and len(revs) == 1

    cluster.wait_until(settled, 10, "one leader, same revision on every member's /metrics")
    log("3 members: one leader, revision %s everywhere" % revs)


def main(t):
    single(t)
    three(t)


cluster.run(main)
