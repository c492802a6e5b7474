"""
cluster: start and stop etcd-compatible servers for raftkv's integration tests.

Every integration test is a /usr/bin/python3 script run by automake's parallel
test harness.  It drives a real server binary (RAFTKV: the built raftkv/raftkv
by default, or any etcd-compatible binary such as /usr/bin/etcd) through real,
unmodified clients (etcdctl, python3-etcd3, curl-like HTTP).  This module gives
those tests one way to:

  * pick free 127.0.0.1 ports and a fresh temp dir,
  * start a 1- or N-member cluster with etcd's own flags, wait until a
    linearizable `etcdctl get` works, stop it (SIGTERM), kill it (SIGKILL) and
    restart it on the same data dir and ports,
  * always stop every process it started (by pid, on exit, failure, SIGTERM);
    after a passing test every server still running gets SIGTERM and must
    shut down cleanly (exit 0, or by the re-raised SIGTERM as etcd does),
  * report failures with the tail of each server's log, and fail a test whose
    server printed a sanitizer report (ASan/UBSan, LSan at shutdown),
  * exit 0 (pass), 1 (fail) or 77 (skip), as automake expects.

Usage:

    import cluster
    from cluster import check, eq

    def main(t):
        c = t.cluster()              # started and ready
        m = c.members[0]
        eq(m.ctl("put", "k", "v").stdout, "OK\\n", "put")

    cluster.run(main)
"""
import atexit
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

PASS, FAIL, SKIP = 0, 1, 77

ETCDCTL = os.environ.get("ETCDCTL", "/usr/bin/etcdctl")
PYTHON = "/usr/bin/python3"

# Ports below the kernel's ephemeral range (32768+), so that client sockets of
# concurrently running tests never take a port we just found free.
PORT_LO, PORT_HI = 20000, 32000

_LIVE = {}          # pid -> Popen of every server started by this process
_USED_PORTS = set()


class Failure(Exception):
    """A test expectation did not hold."""


class Skip(Exception):
    """The test cannot run here (missing tool, unsupported server)."""


def check(cond, what):
    if not cond:
        raise Failure(what)


def eq(got, want, what):
    if got != want:
        raise Failure("%s:\n  want %r\n  got  %r" % (what, want, got))


def log(*args):
    print("[%7.2fs]" % (time.monotonic() - _T0), *args, flush=True)


_T0 = time.monotonic()


def server_binary():
    b = os.environ.get("RAFTKV")
    if not b:
        top = os.environ.get("TOP_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
        b = os.path.join(top, "raftkv", "raftkv")
    return os.path.abspath(b)


def free_port():
    for _ in range(1000):
        p = random.randint(PORT_LO, PORT_HI)
        if p in _USED_PORTS:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        _USED_PORTS.add(p)
        return p
    raise Failure("no free port in %d-%d" % (PORT_LO, PORT_HI))


def clean_env():
    """The environment for servers and clients: no ETCD_* / ETCDCTL_* settings
    leaking in from the caller (both etcd and raftkv read ETCD_* variables)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ETCD_") and not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    return env


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "UndefinedBehaviorSanitizer", "ThreadSanitizer")


def py_client(port, timeout=10):
    """A python3-etcd3 client with its own TCP connection: by default grpcio
    shares connections between channels, so a new client could inherit a
    connection to a server that was killed and fail its first call."""
    import etcd3
    return etcd3.client(host="127.0.0.1", port=port, timeout=timeout,
                        grpc_options=[("grpc.use_local_subchannel_pool", 1)])


class ServerLog:
    """What a server process wrote to self.log_path: shared by these tests'
    members and the fault driver's (tests/fault/members.py)."""
    LOG_TAIL_LINES = 40

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=None):
        return "\n".join(self.log_text().splitlines()[-(n or self.LOG_TAIL_LINES):])

    def sanitizer_report(self):
        text = self.log_text()
        for mark in SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                return text[max(0, i - 200):i + 3000]
        return None


class Member(ServerLog):
    def __init__(self, cl, index, name, client_port, peer_port, data_dir):
        self.cl = cl
        self.index = index
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.log_path = os.path.join(cl.workdir, "%s.log" % name)
        self.proc = None
        self.starts = 0
        self.initial_cluster = None  # --initial-cluster if not the cluster's

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def argv(self, state):
        return [self.cl.binary,
                "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.initial_cluster or self.cl.initial_cluster(),
                "--initial-cluster-state", state,
                "--initial-cluster-token", self.cl.token] + list(self.cl.extra_args)

    def start(self):
        """Starts the process (same ports and data dir on every start)."""
        check(self.proc is None or self.proc.poll() is not None,
              "%s already running" % self.name)
        argv = self.argv("new")
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(("\n==== start #%d: %s\n" % (self.starts, " ".join(argv))).encode())
            f.flush()
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=clean_env(),
                                         cwd=self.cl.workdir, start_new_session=True)
        _LIVE[self.proc.pid] = self.proc
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig):
        if self.running():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL: a crash, nothing flushed beyond what the server already synced."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            _LIVE.pop(self.proc.pid, None)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; SIGKILL after timeout.  Returns the exit status."""
        if self.proc is None:
            return None
        self._signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
            _LIVE.pop(self.proc.pid, None)
            raise Failure("%s did not exit within %.0fs of SIGTERM" % (self.name, timeout))
        _LIVE.pop(self.proc.pid, None)
        return rc

    def ctl(self, *args, input=None, check_rc=True, endpoints=None, timeout=30):
        """Runs etcdctl against this member.  Returns the CompletedProcess;
        with check_rc, a non-zero exit is a test failure."""
        argv = [ETCDCTL, "--endpoints", endpoints or self.endpoint] + [str(a) for a in args]
        try:
            stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
            r = subprocess.run(argv, capture_output=True, text=True, env=clean_env(),
                               timeout=timeout, **stdin)
        except subprocess.TimeoutExpired:
            raise Failure("etcdctl %s: no answer within %ss" % (" ".join(argv[3:]), timeout))
        if check_rc and r.returncode != 0:
            raise Failure("etcdctl %s: exit %d\nstdout: %s\nstderr: %s"
                          % (" ".join(argv[3:]), r.returncode, r.stdout, r.stderr))
        return r

    def client(self, timeout=10):
        """A python3-etcd3 client of this member (closed at test end)."""
        c = py_client(self.client_port, timeout)
        self.cl.t.closers.append(c.close)
        return c

    def health(self, timeout=5):
        """(HTTP status, body) of GET /health; (None, why) when unreachable."""
        try:
            with urllib.request.urlopen("http://%s/health" % self.endpoint, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)



class Cluster:
    def __init__(self, t, size=1, extra_args=(), binary=None):
        self.t = t
        self.binary = binary or server_binary()
        if not os.access(self.binary, os.X_OK):
            raise Failure("server binary %s is missing or not executable" % self.binary)
        self.size = size
        self.extra_args = list(extra_args)
        self.workdir = tempfile.mkdtemp(prefix="cluster-", dir=t.tmp)
        self.token = "itest-%d" % random.randint(1, 10 ** 9)
        self.members = []
        for i in range(size):
            name = "m%d" % (i + 1)
            self.members.append(Member(self, i, name, free_port(), free_port(),
                                       os.path.join(self.workdir, name + ".data")))
        t.clusters.append(self)

    def initial_cluster(self):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def start(self, timeout=30.0):
        for m in self.members:
            if not m.running():
                m.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.0):
        """Waits until a linearizable `etcdctl get` succeeds on every member
        (which needs a leader and an applied read barrier)."""
        deadline = time.monotonic() + timeout
        for m in self.members:
            last = None
            while True:
                if m.proc is not None and m.proc.poll() is not None:
                    raise Failure("%s exited with status %s while starting\n--- log tail ---\n%s"
                                  % (m.name, m.proc.returncode, m.log_tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure("%s not ready within %.0fs (last: %s)\n--- log tail ---\n%s"
                                  % (m.name, timeout, last, m.log_tail()))
                try:
                    r = m.ctl("--dial-timeout=1s", "--command-timeout=%ds" % max(1, min(3, int(left))),
                              "get", "ready-probe", check_rc=False, timeout=max(2, left))
                    if r.returncode == 0:
                        break
                    last = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
                except Failure as e:
                    last = str(e)
                time.sleep(0.05)
        return self

    def stop(self):
        return [m.stop() for m in self.members]

    def kill(self):
        for m in self.members:
            m.kill()

    def restart(self, timeout=30.0):
        self.stop()
        return self.start(timeout)


class Test:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="raftkv-itest-")
        self.clusters = []
        self.closers = []
        self.binary = server_binary()

    def cluster(self, size=1, extra_args=(), start=True, timeout=30.0):
        c = Cluster(self, size, extra_args)
        if start:
            c.start(timeout)
        return c

    def graceful_stop(self):
        """SIGTERM to every member still running; a clean shutdown exits 0 (or
        dies by the SIGTERM it re-raised, as etcd does).  Returns problems.
        This is also where a sanitizer build reports leaks."""
        problems = []
        self.close_clients()
        for c in self.clusters:
            for m in c.members:
                if not m.running():
                    continue
                try:
                    rc = m.stop()
                except Failure as e:
                    problems.append(str(e))
                    continue
                if rc not in (0, -signal.SIGTERM):
                    problems.append("%s exited with status %s on SIGTERM" % (m.name, rc))
        return problems

    def close_clients(self):
        for f in self.closers:
            try:
                f()
            except Exception:
                pass
        self.closers = []

    def cleanup(self):
        for f in self.closers:
            try:
                f()
            except Exception:
                pass
        self.closers = []
        for c in self.clusters:
            for m in c.members:
                try:
                    m.kill()
                except Exception:
                    pass
        _kill_live()

    def remove_tmp(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sanitizer_reports(self):
        out = []
        for c in self.clusters:
            for m in c.members:
                r = m.sanitizer_report()
                if r:
                    out.append("%s (%s):\n%s" % (m.name, m.log_path, r))
        return out

    def dump_logs(self):
        for c in self.clusters:
            for m in c.members:
                print("--- %s log tail (%s) ---" % (m.name, m.log_path))
                print(m.log_tail())


def _kill_live():
    for pid, p in list(_LIVE.items()):
        try:
            if p.poll() is None:
                os.killpg(pid, signal.SIGKILL)
                p.wait(10)
        except Exception:
            pass
        _LIVE.pop(pid, None)


class _Terminated(BaseException):
    pass


def _on_signal(signum, frame):
    raise _Terminated("signal %d" % signum)


def require_python_etcd3():
    try:
        import etcd3  # noqa: F401
        import grpc  # noqa: F401
    except ImportError as e:
        raise Skip("python3-etcd3 not importable (%s): apt-get install python3-etcd3" % e)


def run(main):
    """Runs main(t) as one automake test and exits 0/1/77."""
    atexit.register(_kill_live)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    if not os.access(ETCDCTL, os.X_OK):
        print("SKIP: %s not found (apt-get install etcd-client)" % ETCDCTL)
        sys.exit(SKIP)
    t = Test()
    log("server under test:", t.binary)
    status = FAIL
    try:
        main(t)
        problems = t.graceful_stop()
        if problems:
            raise Failure("unclean shutdown: " + "; ".join(problems))
        status = PASS
    except Skip as e:
        print("SKIP: %s" % e)
        status = SKIP
    except Failure as e:
        print("FAIL: %s" % e)
    except _Terminated as e:
        print("FAIL: interrupted by %s" % e)
    except Exception:
        print("FAIL: unexpected exception")
        traceback.print_exc(file=sys.stdout)
    t.cleanup()
    reports = t.sanitizer_reports()
    if reports:
        print("FAIL: sanitizer report in server log:")
        for r in reports:
            print(r)
        status = FAIL
    if status == FAIL:
        t.dump_logs()
        keep = os.environ.get("KEEP_TMP")
        if keep:
            print("kept temp dir %s" % t.tmp)
    if status != FAIL or not os.environ.get("KEEP_TMP"):
        t.remove_tmp()
    log({PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP"}[status])
    sys.stdout.flush()
    os._exit(status)


def wait_until(pred, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Failure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)



# ---- cluster state as etcdctl reports it (the multi-member tests)

def endpoint_status(m):
    """m's own `endpoint status` (the Status object), or None."""
    r = m.ctl("endpoint", "status", "-w", "json", check_rc=False, timeout=10)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)[0]["Status"]
    except (ValueError, IndexError, KeyError, TypeError):
        return None


def leader_of(members):
    """The running member that says it leads, or None."""
    for m in members:
        if not m.running():
            continue
        st = endpoint_status(m)
        if st and st.get("leader") and st["leader"] == st["header"]["member_id"]:
            return m
    return None


def wait_leader(members, timeout=30, interval=0.1):
    return wait_until(lambda: leader_of(members), timeout, "a leader among %s"
                      % [m.name for m in members], interval)


def member_id(m):
    st = endpoint_status(m)
    check(st is not None, "endpoint status of %s" % m.name)
    return st["header"]["member_id"]


def retry_unhealthy(m, *args, timeout=30):
    """etcd refuses a reconfiguration until every voter has been connected
    for 5 s ("unhealthy cluster"); retry that error only."""
    deadline = time.monotonic() + timeout
    while True:
        r = m.ctl(*args, check_rc=False)
        if r.returncode == 0 or "unhealthy cluster" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def move_leader(members, frm, to):
    """etcdctl move-leader from frm to to (retried while refused), then
    waits until every member of members follows to; returns the output."""
    tid = member_id(to)

    def moved():
        r = frm.ctl("move-leader", "%x" % tid, check_rc=False)
        if r.returncode == 0:
            return r
        log("move-leader: %s" % r.stderr.strip()[-200:])
        return None
    r = wait_until(moved, 30, "move-leader to %s" % to.name, 0.5)
    wait_until(lambda: leader_of(members) is to, 10, "%s to lead" % to.name, 0.1)
    for m in members:
        wait_until(lambda: (endpoint_status(m) or {}).get("leader") == tid, 10,
                   "%s to see %s as leader" % (m.name, to.name), 0.1)
    return r

def ctl_json(member, *args, input=None):
    r = member.ctl(*args, "-w", "json", input=input)
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise Failure("etcdctl %s -w json: not JSON: %r" % (" ".join(args), r.stdout[:500]))


def find_files(root, patterns):
    out = []
    for pat in patterns:
        out += glob.glob(os.path.join(root, "**", pat), recursive=True)
    return sorted(set(out))
