"""
benchmark_tool: tools/raftkv-benchmark, every workload briefly, against a
single member of the server under test ($RAFTKV) and of the real etcd
(/usr/bin/etcd), each started here on free ports.  For each run it checks
the exit status, the text summary (etcd's layout) and the --json figures
(counts, no errors, ordered percentiles, a histogram that adds up, a rate
that matches count / seconds), and then that the data is really in the
store, read back through etcdctl and python3-etcd3, not through the tool:

  put           N sequential keys -> exactly N keys, with the tool's key
                encoding (etcd's binary.PutVarint) and value size
  put --rate    the rate is kept
  range l / s   a key put by etcdctl; END with --count-only and --limit;
                an empty key: every request fails, is counted and printed
  txn-put       --txn-ops keys per txn -> that many new keys
  watch         every expected event arrives (watchers counted per key)
  watch-latency every watcher sees every put
  lease-keepalive  all round trips succeed; the leases are revoked after
  errors        an unreachable endpoint, a bad flag
"""
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, Skip, check, eq, log  # noqa: E402

ETCD = "/usr/bin/etcd"


def tool_binary():
    b = os.environ.get("RAFTKV_BENCHMARK")
    if b:
        return b
    cands = [os.path.join(os.getcwd(), "tools", "raftkv-benchmark")]
    top = os.environ.get("TOP_SRCDIR")
    if top:
        cands.append(os.path.join(top, "tools", "raftkv-benchmark"))
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    raise Skip("tools/raftkv-benchmark is not built (`make` builds it)")


class Bench:
    def __init__(self, t, prog, name, ep):
        self.prog = prog
        self.name = name
        self.ep = ep
        self.dir = tempfile.mkdtemp(prefix="bench-", dir=t.tmp)
        self.n = 0

    def run(self, *args, want_rc=0, glob=(), timeout=120):
        """Runs the tool; returns (stdout, json or None)."""
        self.n += 1
        jpath = os.path.join(self.dir, "r%d.json" % self.n)
        argv = [self.prog, "--endpoints", self.ep, "--json", jpath] + list(glob) + \
            [str(a) for a in args]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               env=cluster.clean_env())
        except subprocess.TimeoutExpired:
            raise Failure("%s: %s: no result within %ds" % (self.name, " ".join(argv), timeout))
        log("%s: %s -> exit %d" % (self.name, " ".join(argv[5:]), r.returncode))
        if r.returncode != want_rc:
            raise Failure("%s: %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s"
                          % (self.name, " ".join(argv), r.returncode, want_rc, r.stdout,
                             r.stderr))
        j = None
        if os.path.exists(jpath):
            with open(jpath) as f:
                j = json.load(f)
        return r.stdout, j


def check_summary(name, out, j, total, errors=0, workload=None):
    """The text has etcd's sections; the JSON figures are consistent."""
    what = "%s %s" % (name, j and j.get("workload"))
    check(j is not None, "%s: no --json file" % what)
    if workload:
        eq(j["workload"], workload, "%s: workload" % what)
    eq((j["total"], j["errors"]), (total, errors), "%s: total and errors" % what)
    ok = total - errors
    if ok == 0:
        return
    for section in ("Summary:", "  Total:", "  Slowest:", "  Fastest:", "  Average:",
                    "  Stddev:", "  Requests/sec:", "Response time histogram:",
                    "Latency distribution:", "% in "):
        check(section in out, "%s: %r missing from the summary:\n%s" % (what, section, out))
    lat = j["latency_ms"]
    order = [lat[k] for k in ("min", "p50", "p90", "p99", "p999", "max")]
    check(order == sorted(order) and order[0] >= 0, "%s: percentiles out of order: %s"
          % (what, lat))
    check(lat["min"] <= lat["mean"] <= lat["max"], "%s: mean outside min..max: %s" % (what, lat))
    check(lat["max"] < 60000, "%s: a latency of %s ms" % (what, lat["max"]))
    check(j["seconds"] > 0, "%s: seconds %s" % (what, j["seconds"]))
    check(abs(j["rps"] * j["seconds"] - ok) <= max(1, ok * 0.01),
          "%s: rps %s x seconds %s is not %d" % (what, j["rps"], j["seconds"], ok))
    h = j["histogram"]
    eq(len(h), 11, "%s: histogram rows" % what)
    eq(sum(c for _, c in h), ok, "%s: histogram count" % what)
    check([u for u, _ in h] == sorted(u for u, _ in h), "%s: histogram bounds" % what)
    check(abs(h[0][0] - lat["min"]) < 1e-6 and abs(h[-1][0] - lat["max"]) < 1e-6,
          "%s: histogram spans %s..%s, latencies %s..%s" % (what, h[0][0], h[-1][0],
                                                           lat["min"], lat["max"]))


def key_count(m):
    r = m.ctl("get", "", "--from-key", "--limit", "1", "-w", "json")
    return json.loads(r.stdout).get("count", 0)


def bench_key(i, size):
    """The tool's key for index i: etcd's binary.PutVarint (zig-zag)."""
    z, out = i << 1, bytearray()
    while z >= 0x80:
        out.append((z & 0x7f) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out) + b"\0" * (size - len(out))


def suite(t, prog, name, binary):
    log("--- %s (%s)" % (name, binary))
    m = cluster.Cluster(t, 1, binary=binary).start().members[0]
    b = Bench(t, prog, name, m.endpoint)
    c = m.client()
    n = 2000

    # put: N sequential keys on 4 connections, 50 in flight, to the leader.
    out, j = b.run("put", "--total", n, "--sequential-keys", "--key-space-size", n,
                   "--val-size", 16, glob=("--conns", "4", "--clients", "50", "--target-leader"))
    check_summary(name, out, j, n, workload="put")
    eq((j["clients"], j["conns"], j["key_space_size"]), (50, 4, n), "%s put: json flags" % name)
    eq(key_count(m), n, "%s: keys after put of %d sequential keys" % (name, n))
    for i in (0, 1, 63, 64, n - 1):
        val, meta = c.get(bench_key(i, 8))
        check(val is not None, "%s: key %d (%r) missing" % (name, i, bench_key(i, 8)))
        eq(len(val), 16, "%s: value size of key %d" % (name, i))
    check(c.get(bench_key(n, 8))[0] is None, "%s: key %d should not exist" % (name, n))

    # --rate: 100 puts at 200/s take about half a second.
    out, j = b.run("put", "--total", 100, "--rate", 200, glob=("--clients", "10"))
    check_summary(name, out, j, 100)
    check(0.4 <= j["seconds"] and j["rps"] <= 230,
          "%s: --rate 200 gave %s/s in %s s" % (name, j["rps"], j["seconds"]))

    # range: linearizable and serializable reads of a key etcdctl wrote.
    m.ctl("put", "bench-range", "v")
    for cons in ("l", "s"):
        out, j = b.run("range", "bench-range", "--consistency", cons, "--total", 500,
                       glob=("--conns", "2", "--clients", "20"))
        check_summary(name, out, j, 500, workload="range")
        check(("bench with %s range" % ("linearizable" if cons == "l" else "serializable"))
              in out, "%s range: first line:\n%s" % (name, out))
        eq(j["consistency"], cons, "%s range: consistency" % name)
    out, j = b.run("range", "a", "z", "--count-only", "--limit", 1, "--total", 100)
    check_summary(name, out, j, 100)
    # Every request fails: counted, printed, exit 1.
    out, j = b.run("range", "", "--total", 50, glob=("--clients", "5"), want_rc=1)
    check_summary(name, out, j, 50, errors=50)
    check("Error distribution:" in out and "[50]\tetcdserver: key is not provided" in out,
          "%s: errors not printed:\n%s" % (name, out))
    eq(j["error_messages"], [[50, "etcdserver: key is not provided"]],
       "%s: error messages" % name)

    # txn-put: 9-byte keys (none of the put's), 3 puts per txn.
    before = key_count(m)
    out, j = b.run("txn-put", "--total", 300, "--txn-ops", 3, "--key-size", 9,
                   "--key-space-size", 900, glob=("--clients", "30", "--conns", "3"))
    check_summary(name, out, j, 300, workload="txn-put")
    eq(key_count(m), before + 900, "%s: keys after txn-put" % name)
    check(c.get(bench_key(899, 9))[0] is not None, "%s: txn-put key 899 missing" % name)

    # watch: 20 watchers in 3 slots (7, 7, 6) on 2 distinct keys (slot i
    # watches key i mod 2): key 0 has 13 watchers, key 1 has 7; 300 puts go
    # round-robin over the slots, so each put reaches its key's watchers.
    per_slot = [7, 7, 6]
    per_key = [per_slot[0] + per_slot[2], per_slot[1]]
    want = sum(per_key[(i % 3) % 2] for i in range(300))
    out, j = b.run("watch", "--streams", 2, "--watch-per-stream", 10, "--watched-key-total", 3,
                   "--put-total", 300, "--key-size", 8, "--sequential-keys",
                   "--key-space-size", 2, glob=("--clients", "10", "--conns", "2"))
    check_summary(name, out, j, 300, workload="watch")
    eq((j["events"], j["events_expected"], j["watchers"]), (want, want, 20),
       "%s: watch events" % name)
    check(j["events_per_sec"] > 0 and "Watch events received summary:" in out
          and "Watch creation summary:" in out, "%s: watch summary:\n%s" % (name, out))

    # watch-latency: 6 watchers, 50 puts: 300 samples.
    out, j = b.run("watch-latency", "--streams", 2, "--watchers-per-stream", 3,
                   "--put-total", 50, "--put-rate", 500, glob=("--conns", "2"))
    check_summary(name, out, j, 300, workload="watch-latency")
    eq((j["puts"], j["watchers"]), (50, 6), "%s: watch-latency puts" % name)
    check(j["from_request_ms"]["min"] > 0, "%s: from_request_ms %s" % (name, j["from_request_ms"]))

    # lease-keepalive: 5 leases, 500 round trips, revoked at the end.
    out, j = b.run("lease-keepalive", "--total", 500, glob=("--clients", "5"))
    check_summary(name, out, j, 500, workload="lease-keepalive")
    eq(j["leases"], 5, "%s: leases" % name)
    eq(json.loads(m.ctl("lease", "list", "-w", "json").stdout).get("leases") or [], [],
       "%s: leases left after lease-keepalive" % name)

    # Failures that stop a run before it starts.
    dead = cluster.free_port()
    r = subprocess.run([prog, "--endpoints", "127.0.0.1:%d" % dead, "put", "--total", "10"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "cannot reach 127.0.0.1:%d" % dead in r.stderr,
          "%s: unreachable endpoint: exit %d, stderr %r" % (name, r.returncode, r.stderr))
    r = subprocess.run([prog, "--endpoints", m.endpoint, "put", "--no-such-flag"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "unknown flag: --no-such-flag" in r.stderr,
          "%s: bad flag: exit %d, stderr %r" % (name, r.returncode, r.stderr))
    r = subprocess.run([prog, "--endpoints", m.endpoint, "put", "--key-size", "1",
                        "--key-space-size", "1000"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "too small" in r.stderr,
          "%s: key space larger than the keys: exit %d, stderr %r"
          % (name, r.returncode, r.stderr))


def main(t):
    cluster.require_python_etcd3()
    prog = tool_binary()
    servers = [("server-under-test", t.binary)]
    if os.path.realpath(t.binary) != os.path.realpath(ETCD):
        if os.access(ETCD, os.X_OK):
            servers.append(("etcd", ETCD))
        else:
            log("%s not found: the real-etcd half is skipped" % ETCD)
    for name, binary in servers:
        suite(t, prog, name, binary)


cluster.run(main)
