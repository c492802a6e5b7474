#!/usr/bin/python3
"""
compare: raftkv beside the real etcd, in one sitting, with the same flags
on the same ports, driven by the same lean C client (tools/raftkv-benchmark).

For each server and each cluster size (1 and 3 members by default) it
  * starts the members with etcd's flags and times start -> first write,
  * runs the workloads of issue #6 (put with 1 and 1000 clients, range
    linearizable and serializable with 1000 clients, txn-put, watch),
    recording requests/s, latency percentiles and the servers' CPU per
    request (utime+stime of every member from /proc, before and after),
  * loads 100,000 keys x 256 B into a fresh cluster and records the
    leader's RSS 1 s and 3 s after the load (the table shows the latter)
    and the data dir size, then restarts every member and times
    restart -> first write,
  * and prints one side-by-side table with raftkv/etcd ratios and the
    targets, writes results.json and (with matplotlib or gnuplot) a PNG of
    the latency percentiles.

Not part of the test suite: a run takes several minutes.  Usage:
    tools/bench/compare.py [--quick] [--members 1,3] [--out DIR]
        [--raftkv raftkv/raftkv] [--etcd /usr/bin/etcd]
        [--benchmark tools/raftkv-benchmark] [--base-port 23790]
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def log(*a):
    print("[compare %6.1fs]" % (time.monotonic() - T0), *a, file=sys.stderr, flush=True)


T0 = time.monotonic()


# --- processes ---------------------------------------------------------------

def proc_cpu_seconds(pid):
    """utime + stime of pid from /proc (seconds), 0 if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return 0.0
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def dir_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


class Member:
    def __init__(self, binary, name, client_port, peer_port, data_dir, log_path):
        self.binary, self.name = binary, name
        self.client_port, self.peer_port = client_port, peer_port
        self.data_dir, self.log_path = data_dir, log_path
        self.proc = None

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def start(self, initial_cluster):
        argv = [self.binary, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "compare"]
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Cluster:
    def __init__(self, binary, kind, size, base_port, workdir):
        self.kind, self.size = kind, size
        self.dir = os.path.join(workdir, "%s-%d" % (kind, size))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.members = [Member(binary, "m%d" % i, base_port + 2 * i, base_port + 2 * i + 1,
                               os.path.join(self.dir, "m%d.data" % i), os.path.join(self.dir, "m%d.log" % i))
                        for i in range(size)]
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    @property
    def endpoints(self):
        return ",".join("127.0.0.1:%d" % m.client_port for m in self.members)

    def start(self, timeout=60.0):
        """Starts every member; returns seconds from the first spawn to the
        first acknowledged write (a gateway put through member 0)."""
        t0 = time.monotonic()
        for m in self.members:
            m.start(self.initial_cluster)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.try_put(self.members[0]):
                return time.monotonic() - t0
            for m in self.members:
                if m.proc.poll() is not None:
                    raise RuntimeError("%s %s exited (%s): see %s" % (self.kind, m.name, m.proc.returncode,
                                                                       m.log_path))
            time.sleep(0.005)
        raise RuntimeError("%s-%d did not serve a write within %.0f s" % (self.kind, self.size, timeout))

    @staticmethod
    def try_put(m, key="compare", value="x"):
        body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                           "value": base64.b64encode(value.encode()).decode()})
        try:
            c = http.client.HTTPConnection("127.0.0.1", m.client_port, timeout=2)
            c.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.status == 200 and b"header" in body
        except (OSError, http.client.HTTPException):
            return False

    def stop(self):
        for m in self.members:
            m.stop()

    def pids(self):
        return [m.proc.pid for m in self.members if m.proc]

    def cpu(self):
        return sum(proc_cpu_seconds(p) for p in self.pids())

    def leader(self):
        """The member whose /metrics says etcd_server_is_leader 1 (both
        servers export it), else member 0."""
        for m in self.members:
            try:
                c = http.client.HTTPConnection("127.0.0.1", m.client_port, timeout=5)
                c.request("GET", "/metrics")
                text = c.getresponse().read().decode()
                c.close()
                if "\netcd_server_is_leader 1\n" in "\n" + text:
                    return m
            except (OSError, http.client.HTTPException):
                pass
        return self.members[0]


# --- workloads ---------------------------------------------------------------

def workloads(quick, size):
    n = 1 if quick else 5
    w = [
        ("put, 1 client", ["put", "--clients", "1", "--conns", "1", "--total", str(1000 * n),
                           "--val-size", "256", "--key-space-size", "100000"]),
        ("put, 1000 clients", ["put", "--clients", "1000", "--conns", "100", "--total", str(20000 * n),
                               "--val-size", "256", "--key-space-size", "100000"]),
        ("range l, 1000 clients", ["range", "compare/r", "--consistency", "l", "--clients", "1000",
                                   "--conns", "100", "--total", str(20000 * n)]),
        ("range s, 1000 clients", ["range", "compare/r", "--consistency", "s", "--clients", "1000",
                                   "--conns", "100", "--total", str(20000 * n)]),
        ("txn-put, 100 clients", ["txn-put", "--clients", "100", "--conns", "10", "--total", str(4000 * n),
                                  "--val-size", "256", "--key-space-size", "100000"]),
        # Puts from 100 clients in flight, so that the figure is the fan-out
        # to the 1000 watchers and not one client's put latency.
        ("watch, 1000 watchers", ["watch", "--streams", "10", "--watch-per-stream", "100",
                                  "--conns", "10", "--clients", "100",
                                  "--put-total", str(2000 * n), "--val-size", "256"]),
    ]
    return w


def run_benchmark(args, cl, label, wargs, outdir):
    js = os.path.join(outdir, "%s-%d-%s.json" % (cl.kind, cl.size, label.replace(" ", "_").replace(",", "")))
    argv = [args.benchmark, "--endpoints", cl.endpoints, "--json", js] + wargs
    if wargs[0] in ("put", "txn-put", "watch") and cl.size > 1:
        argv.insert(1, "--target-leader")
    cpu0, t0 = cl.cpu(), time.monotonic()
    tool = subprocess.run(["/usr/bin/time", "-f", "%U %S"] + argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=1800)
    wall = time.monotonic() - t0
    cpu = cl.cpu() - cpu0
    if tool.returncode != 0 or not os.path.exists(js):
        log("%s-%d %s: benchmark failed (%d): %s" % (cl.kind, cl.size, label, tool.returncode,
                                                     tool.stderr.strip()[-400:]))
        return None
    with open(js) as f:
        res = json.load(f)
    tool_cpu = sum(float(x) for x in tool.stderr.strip().splitlines()[-1].split())
    res.update(label=label, wall=wall, server_cpu_s=cpu, tool_cpu_s=tool_cpu,
               server_cpu_us_per_req=1e6 * cpu / max(1, res.get("total", 1)),
               rss_leader=proc_rss_bytes(cl.leader().proc.pid))
    log("%s-%d %-22s %10.0f req/s  p50 %.3f ms  p99 %.3f ms  server CPU %.1f us/req  errors %d" % (
        cl.kind, cl.size, label, res.get("rps", 0), res["latency_ms"]["p50"], res["latency_ms"]["p99"],
        res["server_cpu_us_per_req"], res.get("errors", 0)))
    return res


def settled_rss(pid, wait):
    """RSS after wait more seconds without requests."""
    time.sleep(wait)
    return proc_rss_bytes(pid)


def measure(args, kind, binary, size, outdir):
    cl = Cluster(binary, kind, size, args.base_port, args.workdir)
    r = {"kind": kind, "size": size, "workloads": {}}
    try:
        r["start_s"] = cl.start()
        time.sleep(0.5)
        r["idle_rss"] = proc_rss_bytes(cl.leader().proc.pid)
        # the range workloads read this one key
        if not Cluster.try_put(cl.members[0], "compare/r", "v" * 256):
            raise RuntimeError("%s-%d: cannot put the key the range workloads read" % (kind, size))
        for label, wargs in workloads(args.quick, size):
            res = run_benchmark(args, cl, label, wargs, outdir)
            if res:
                r["workloads"][label] = res
        # 100,000 keys x 256 B into a fresh cluster (the workloads above
        # leave keys and connection residue of their own), then RSS once
        # the load has settled (the same wait for both servers), data dir
        # size, restart -> serving.
        cl.stop()
        cl = Cluster(binary, kind, size, args.base_port, args.workdir)
        cl.start()
        load = ["put", "--clients", "100", "--conns", "10", "--total", "100000", "--sequential-keys",
                "--key-space-size", "100000", "--val-size", "256", "--key-size", "16"]
        run_benchmark(args, cl, "load 100k x 256 B", load, outdir)
        leader = cl.leader()
        r["rss_100k_1s"] = settled_rss(leader.proc.pid, 1.0)
        r["rss_100k"] = settled_rss(leader.proc.pid, 2.0)
        r["datadir_100k"] = dir_bytes(leader.data_dir)
        cl.stop()
        r["restart_s"] = cl.start(timeout=120)
        r["rss_after_restart"] = proc_rss_bytes(cl.leader().proc.pid)
    finally:
        cl.stop()
    return r


# --- report ------------------------------------------------------------------

def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "MB":
        return "%.1f MB" % (v / 1e6)
    if unit == "s":
        return "%.3f s" % v
    if unit == "ms":
        return "%.3f ms" % v
    if unit == "us":
        return "%.1f us" % v
    return "{:,.0f}".format(v)


def table(results, sizes):
    rows = []

    def get(kind, size, path):
        r = results.get((kind, size))
        for p in path:
            if r is None:
                return None
            r = r.get(p) if isinstance(r, dict) else None
        return r

    metrics = [
        ("put, 1 client: req/s", ("workloads", "put, 1 client", "rps"), "n", "higher"),
        ("put, 1 client: p50", ("workloads", "put, 1 client", "latency_ms", "p50"), "ms", "<= 0.5x (3 members)"),
        ("put, 1000 clients: req/s", ("workloads", "put, 1000 clients", "rps"), "n", ">= 3x"),
        ("put, 1000 clients: p99", ("workloads", "put, 1000 clients", "latency_ms", "p99"), "ms", ""),
        ("put, 1000 clients: server CPU/req", ("workloads", "put, 1000 clients", "server_cpu_us_per_req"), "us", ""),
        ("range l, 1000 clients: req/s", ("workloads", "range l, 1000 clients", "rps"), "n", ">= 5x (3 members)"),
        ("range s, 1000 clients: req/s", ("workloads", "range s, 1000 clients", "rps"), "n", ">= 5x (3 members)"),
        ("range l: server CPU/req", ("workloads", "range l, 1000 clients", "server_cpu_us_per_req"), "us", ""),
        ("txn-put, 100 clients: req/s", ("workloads", "txn-put, 100 clients", "rps"), "n", ""),
        ("watch: events/s to 1000 watchers", ("workloads", "watch, 1000 watchers", "events_per_sec"), "n", ">= 2x"),
        ("watch: leader RSS", ("workloads", "watch, 1000 watchers", "rss_leader"), "MB", "lower"),
        ("start -> first write", ("start_s",), "s", ""),
        ("idle RSS (leader)", ("idle_rss",), "MB", "<= 5 MB"),
        ("RSS after 100k x 256 B", ("rss_100k",), "MB", "<= 0.25x, <= 40 MB"),
        ("data dir after 100k x 256 B", ("datadir_100k",), "MB", ""),
        ("restart -> first write, 100k keys", ("restart_s",), "s", "<= 0.2 s"),
    ]
    out = []
    for size in sizes:
        out.append("")
        out.append("%d member%s" % (size, "" if size == 1 else "s"))
        out.append("%-38s %14s %14s %9s   %s" % ("", "etcd", "raftkv", "ratio", "target"))
        for name, path, unit, target in metrics:
            e, k = get("etcd", size, path), get("raftkv", size, path)
            ratio = "%.2fx" % (k / e) if isinstance(e, (int, float)) and isinstance(k, (int, float)) and e else "-"
            out.append("%-38s %14s %14s %9s   %s" % (name, fmt(e, unit), fmt(k, unit), ratio, target))
            rows.append((size, name, e, k))
    return "\n".join(out)


def plot(results, path):
    """Latency percentiles (p50..max) per workload, one line per server."""
    series = []
    for (kind, size), r in sorted(results.items()):
        for label, w in r["workloads"].items():
            lat = w.get("latency_ms")
            if not lat or label.startswith("watch"):
                continue
            pts = [(50, lat["p50"]), (90, lat["p90"]), (99, lat["p99"]), (99.9, lat["p999"]),
                   (100, lat["max"])]
            series.append(("%s %d: %s" % (kind, size, label), pts))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt:
        labels = sorted({s[0].split(": ", 1)[1] for s in series})
        fig, axes = plt.subplots(len(labels), 1, figsize=(8, 3 * len(labels)), squeeze=False)
        for ax, label in zip(axes[:, 0], labels):
            for name, pts in series:
                if name.endswith(": " + label):
                    ax.plot([str(p) for p, _ in pts], [v for _, v in pts], marker="o", label=name.split(":")[0])
            ax.set_title(label)
            ax.set_ylabel("latency (ms)")
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        axes[-1, 0].set_xlabel("percentile")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        return True
    if shutil.which("gnuplot"):
        dat = path + ".dat"
        with open(dat, "w") as f:
            for name, pts in series:
                f.write('"%s"\n' % name)
                for i, (p, v) in enumerate(pts):
                    f.write("%d %g\n" % (i, v))
                f.write("\n\n")
        script = ('set terminal png size 1000,700; set output "%s"; set logscale y; set ylabel "ms";'
                  'set xtics ("p50" 0, "p90" 1, "p99" 2, "p99.9" 3, "max" 4); set key outside;'
                  'plot for [i=0:%d] "%s" index i with linespoints title columnheader(1)' %
                  (path, len(series) - 1, dat))
        return subprocess.run(["gnuplot", "-e", script]).returncode == 0
    log("no matplotlib or gnuplot (apt-get install python3-matplotlib): no plot")
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raftkv", default=os.path.join(ROOT, "raftkv", "raftkv"))
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--benchmark", default=os.path.join(ROOT, "tools", "raftkv-benchmark"))
    ap.add_argument("--members", default="1,3")
    ap.add_argument("--quick", action="store_true", help="fewer requests per workload (about 5x shorter)")
    ap.add_argument("--base-port", type=int, default=23790)
    ap.add_argument("--out", default=None, help="where results.json, table.txt and latency.png go")
    args = ap.parse_args()
    for b in (args.raftkv, args.etcd, args.benchmark):
        if not os.access(b, os.X_OK):
            sys.exit("compare: %s is not an executable (build with make; apt-get install etcd-server)" % b)
    if not os.access("/usr/bin/time", os.X_OK):
        sys.exit("compare: needs /usr/bin/time (apt-get install time)")
    sizes = [int(x) for x in args.members.split(",")]
    args.workdir = tempfile.mkdtemp(prefix="raftkv-compare-")
    outdir = args.out or os.path.join(args.workdir, "out")
    os.makedirs(outdir, exist_ok=True)
    results = {}
    try:
        for size in sizes:
            for kind, binary in (("etcd", args.etcd), ("raftkv", args.raftkv)):
                log("%s, %d member(s)" % (kind, size))
                results[(kind, size)] = measure(args, kind, binary, size, outdir)
    except BaseException:
        log("failed: logs and data dirs are kept in %s" % args.workdir)
        raise
    text = table(results, sizes)
    print(text)
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"%s-%d" % k: v for k, v in results.items()}, f, indent=1)
    png = os.path.join(outdir, "latency.png")
    if plot(results, png):
        print("\nlatency plot: %s" % png)
    print("results: %s" % os.path.join(outdir, "results.json"))
    for size in sizes:  # the data dirs of 100k keys are big; logs stay
        for kind in ("etcd", "raftkv"):
            d = os.path.join(args.workdir, "%s-%d" % (kind, size))
            for m in range(size):
                shutil.rmtree(os.path.join(d, "m%d.data" % m), ignore_errors=True)
    log("server logs in %s" % args.workdir)


if __name__ == "__main__":
    main()
