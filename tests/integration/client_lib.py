"""
client_lib: the client library (raftkv/client) against live servers: the
server under test ($RAFTKV) and the real etcd (/usr/bin/etcd), each started
here on free ports.  The scenarios themselves are C, in
tests/client/kvc_check.c; this script starts, stops, freezes and kills the
servers around them:

  basic       put/get/txn/delete, raw and typed calls, error mapping
  big         1.5 MB put, multi-MB range, receive limit, Snapshot stream
  watch       Watch and LeaseKeepAlive streams (skipped if not served)
  concurrent  10,000 unary calls at once on one connection
  deadline    the server is SIGSTOPped: calls end with -KV_EDEADLINE
  failover    a dead first endpoint; all endpoints dead
  failover2   the first of two servers dies between and during calls
  graceful    the first of two servers shuts down (GOAWAY) between calls
"""
import os
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, Skip, check, log, wait_until  # noqa: E402

ETCD = "/usr/bin/etcd"
SKIP = 77


def kvc_check_binary():
    b = os.environ.get("KVC_CHECK")
    if b:
        return b
    # automake runs tests from the build directory.
    cands = [os.path.join(os.getcwd(), "tests", "client", "kvc_check")]
    top = os.environ.get("TOP_SRCDIR")
    if top:
        cands.append(os.path.join(top, "tests", "client", "kvc_check"))
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    raise Skip("tests/client/kvc_check is not built (`make check` builds it)")


def run(prog, name, scenario, eps, *extra, may_skip=False, timeout=300):
    argv = [prog, scenario, eps] + [str(e) for e in extra]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure("%s: kvc_check %s: no result within %ds" % (name, scenario, timeout))
    for line in r.stdout.splitlines():
        log("%s %s: %s" % (name, scenario, line))
    if r.returncode == SKIP and may_skip:
        log("%s %s: skipped (server lacks the feature)" % (name, scenario))
        return
    if r.returncode != 0:
        raise Failure("%s: kvc_check %s %s: exit %d\n%s%s"
                      % (name, scenario, eps, r.returncode, r.stdout, r.stderr))


def signal_member(m, sig):
    # Servers run in their own session; SIGSTOP/SIGCONT the process itself.
    os.kill(m.proc.pid, sig)
    if sig == signal.SIGSTOP:
        # kill() returns before every thread has stopped; on a loaded box a
        # Go server (etcd) can still answer the next request meanwhile.
        wait_until(lambda: all_threads_stopped(m.proc.pid), 10, "%s stopped" % m.name,
                   interval=0.005)


def all_threads_stopped(pid):
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                    return False
    except (FileNotFoundError, ProcessLookupError):
        return False
    return True


def expect_line(p, want, name):
    line = p.stdout.readline().strip()
    if line != want:
        rest = p.stdout.read() if p.poll() is not None else ""
        raise Failure("%s: expected %r, got %r\n%s%s"
                      % (name, want, line, rest, p.stderr.read() if p.poll() is not None else ""))


def failover2(t, prog, name, binary, a):
    """a dies twice: between calls (SIGSTOP then SIGKILL around calls in
    flight) while b, a separate single-member cluster, stays up."""
    b = cluster.Cluster(t, 1, binary=binary).start().members[0]
    eps = "%s,%s" % (a.endpoint, b.endpoint)
    p = subprocess.Popen([prog, "failover2", eps], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        expect_line(p, "ready1", name)
        signal_member(a, signal.SIGSTOP)
        p.stdin.write("go\n")
        p.stdin.flush()
        expect_line(p, "inflight", name)
        a.kill()
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Failure("%s failover2: no result within 60s" % name)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for line in out.splitlines():
        log("%s failover2: %s" % (name, line))
    if p.returncode != 0:
        raise Failure("%s: kvc_check failover2: exit %d\n%s%s" % (name, p.returncode, out, err))


def graceful(t, prog, name, binary):
    """a shuts down on SIGTERM (GOAWAY, close) while the client is idle."""
    a = cluster.Cluster(t, 1, binary=binary).start().members[0]
    b = cluster.Cluster(t, 1, binary=binary).start().members[0]
    p = subprocess.Popen([prog, "graceful", "%s,%s" % (a.endpoint, b.endpoint)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        expect_line(p, "ready", name)
        rc = a.stop()
        check(rc in (0, -signal.SIGTERM), "%s exited with %s on SIGTERM" % (name, rc))
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        raise Failure("%s graceful: no result within 60s" % name)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for line in out.splitlines():
        log("%s graceful: %s" % (name, line))
    if p.returncode != 0:
        raise Failure("%s: kvc_check graceful: exit %d\n%s%s" % (name, p.returncode, out, err))


def suite(t, prog, name, binary):
    log("--- %s (%s)" % (name, binary))
    m = cluster.Cluster(t, 1, binary=binary).start().members[0]
    ep = m.endpoint
    run(prog, name, "basic", ep)
    run(prog, name, "big", ep)
    run(prog, name, "watch", ep, may_skip=True)
    run(prog, name, "concurrent", ep, 10000)

    signal_member(m, signal.SIGSTOP)
    try:
        run(prog, name, "deadline", ep)
    finally:
        signal_member(m, signal.SIGCONT)

    dead1, dead2 = cluster.free_port(), cluster.free_port()
    run(prog, name, "failover", "127.0.0.1:%d,%s" % (dead1, ep))
    run(prog, name, "dead", "127.0.0.1:%d,127.0.0.1:%d" % (dead1, dead2))
    failover2(t, prog, name, binary, m)
    graceful(t, prog, name, binary)


def main(t):
    prog = kvc_check_binary()
    servers = [("server-under-test", t.binary)]
    if os.path.realpath(t.binary) != os.path.realpath(ETCD):
        if os.access(ETCD, os.X_OK):
            servers.append(("etcd", ETCD))
        else:
            log("%s not found: the real-etcd half is skipped" % ETCD)
    for name, binary in servers:
        suite(t, prog, name, binary)
    check(True, "done")


cluster.run(main)
